//! Scheduler scenarios: `skiff server` (which runs the scheduler) plus `skiff hollow` nodes,
//! observed with the real kubectl: placement, refusals in upstream's words, Running pods.

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::{KUBECTL_133, Kubectl, Server, eventually};

const WAIT: Duration = Duration::from_secs(60);

/// A `skiff hollow` process, killed when dropped.
struct Hollow(Child);

impl Hollow {
    fn start(server: &Server, args: &[&str]) -> Hollow {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(server.dir.path().join("hollow.log"))
            .expect("log file");
        let mut child = Command::new(env!("CARGO_BIN_EXE_skiff"))
            .arg("hollow")
            .arg("--kubeconfig")
            .arg(&server.kubeconfig)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawn skiff hollow");
        let stdout = child.stdout.take().expect("stdout");
        let mut guard = Hollow(child);
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read ready line");
        if !line.starts_with("skiff hollow ready") {
            let log =
                std::fs::read_to_string(server.dir.path().join("hollow.log")).unwrap_or_default();
            let _ = guard.0.kill();
            panic!("hollow nodes did not become ready: {line:?}\n{log}");
        }
        guard
    }
}

impl Drop for Hollow {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn pod_yaml(name: &str, extra_spec: &str, cpu: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels: {{app: {name}}}
spec:
{extra_spec}
  containers:
  - name: app
    image: registry.k8s.io/pause:3.10
    resources:
      requests: {{cpu: "{cpu}"}}
"#
    )
}

/// `kubectl get pods -o wide` parsed into name → (status, node).
fn pods_wide(k: &Kubectl) -> BTreeMap<String, (String, String)> {
    let out = k.ok(&["get", "pods", "-o", "wide", "--no-headers"]);
    out.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // NAME READY STATUS RESTARTS AGE IP NODE NOMINATED READINESS
            (f.len() >= 7).then(|| (f[0].to_string(), (f[2].to_string(), f[6].to_string())))
        })
        .collect()
}

fn running_on(k: &Kubectl, pod: &str) -> Option<String> {
    pods_wide(k)
        .get(pod)
        .filter(|(status, node)| status == "Running" && node != "<none>")
        .map(|(_, node)| node.clone())
}

#[test]
fn pods_reach_running_on_hollow_nodes_and_honour_node_selector() {
    let server = Server::start();
    let k = server.kubectl(KUBECTL_133);
    let _ssd = Hollow::start(
        &server,
        &[
            "--nodes",
            "2",
            "--name-prefix",
            "ssd-",
            "--labels",
            "disk=ssd",
        ],
    );
    let _hdd = Hollow::start(
        &server,
        &[
            "--nodes",
            "2",
            "--name-prefix",
            "hdd-",
            "--labels",
            "disk=hdd",
        ],
    );
    let nodes = k.ok(&["get", "nodes", "--no-headers"]);
    assert_eq!(
        nodes.lines().filter(|l| l.contains(" Ready ")).count(),
        4,
        "{nodes}"
    );

    k.ok_stdin(&["apply", "-f", "-"], &pod_yaml("plain", "", "100m"));
    k.ok_stdin(
        &["apply", "-f", "-"],
        &pod_yaml("fast", "  nodeSelector: {disk: ssd}", "100m"),
    );
    let plain = eventually(WAIT, "plain Running", || running_on(&k, "plain"));
    assert!(
        plain.starts_with("ssd-") || plain.starts_with("hdd-"),
        "{plain}"
    );
    let fast = eventually(WAIT, "fast Running", || running_on(&k, "fast"));
    assert!(fast.starts_with("ssd-"), "nodeSelector ignored: {fast}");

    // The hollow node filled in what a kubelet reports.
    let ip = k.ok(&["get", "pod", "fast", "-o", "jsonpath={.status.podIP}"]);
    assert!(ip.starts_with("10."), "{ip}");
    let ready = k.ok(&[
        "get",
        "pod",
        "fast",
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
    ]);
    assert_eq!(ready, "True");
    let scheduled = k.ok(&["describe", "pod", "fast"]);
    assert!(scheduled.contains("PodScheduled"), "{scheduled}");

    // Deletion completes through the hollow node.
    k.ok(&["delete", "pod", "fast", "--wait=false"]);
    eventually(WAIT, "fast deleted", || {
        (!pods_wide(&k).contains_key("fast")).then_some(())
    });

    // Pods for another scheduler are left alone.
    k.ok_stdin(
        &["apply", "-f", "-"],
        &pod_yaml("other", "  schedulerName: my-scheduler", "100m"),
    );
    // A later default-scheduler pod getting placed shows the scheduler has seen "other".
    k.ok_stdin(&["apply", "-f", "-"], &pod_yaml("later", "", "100m"));
    eventually(WAIT, "later Running", || running_on(&k, "later"));
    let node = k.ok(&["get", "pod", "other", "-o", "jsonpath={.spec.nodeName}"]);
    assert_eq!(node, "", "a pod of another scheduler was bound");
}

#[test]
fn taints_and_insufficient_cpu_are_explained_like_upstream() {
    let server = Server::start();
    let k = server.kubectl(KUBECTL_133);
    let _gpu = Hollow::start(
        &server,
        &[
            "--nodes",
            "3",
            "--name-prefix",
            "gpu-",
            "--cpu",
            "8",
            "--taints",
            "dedicated=gpu:NoSchedule",
        ],
    );
    let _small = Hollow::start(
        &server,
        &["--nodes", "2", "--name-prefix", "small-", "--cpu", "1"],
    );

    k.ok_stdin(&["apply", "-f", "-"], &pod_yaml("big", "", "2"));
    let expected = "0/5 nodes are available: 2 Insufficient cpu, 3 node(s) had untolerated \
                    taint {dedicated: gpu}. preemption: 0/5 nodes are available: 5 Preemption \
                    is not helpful for scheduling.";
    let events = eventually(WAIT, "FailedScheduling event", || {
        let out = k.ok(&["get", "events"]);
        out.contains("FailedScheduling").then_some(out)
    });
    assert!(events.contains(expected), "{events}");
    let describe = k.ok(&["describe", "pod", "big"]);
    assert!(describe.contains("FailedScheduling"), "{describe}");
    assert!(describe.contains("default-scheduler"), "{describe}");
    assert!(describe.contains(expected), "{describe}");
    let cond = k.ok(&[
        "get",
        "pod",
        "big",
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"PodScheduled\")].reason}",
    ]);
    assert_eq!(cond, "Unschedulable");

    // With a toleration the same request fits on the tainted, larger nodes.
    k.ok_stdin(
        &["apply", "-f", "-"],
        &pod_yaml(
            "tolerant",
            "  tolerations: [{key: dedicated, operator: Equal, value: gpu, effect: NoSchedule}]",
            "2",
        ),
    );
    let node = eventually(WAIT, "tolerant Running", || running_on(&k, "tolerant"));
    assert!(node.starts_with("gpu-"), "{node}");
}

#[test]
fn a_burst_never_overcommits_a_node() {
    let server = Server::start();
    let k = server.kubectl(KUBECTL_133);
    let _nodes = Hollow::start(&server, &["--nodes", "10", "--cpu", "1"]);
    // 50 pods of 300m on 10 nodes of 1 CPU: 3 fit per node, 30 in all.
    let list: String = (0..50)
        .map(|i| format!("---\n{}", pod_yaml(&format!("burst-{i}"), "", "300m")))
        .collect();
    k.ok_stdin(&["apply", "-f", "-"], &list);
    let placed = eventually(WAIT, "30 pods Running", || {
        let pods = pods_wide(&k);
        let running: Vec<&String> = pods
            .values()
            .filter(|(s, _)| s == "Running")
            .map(|(_, n)| n)
            .collect();
        (running.len() == 30).then_some(pods)
    });
    let mut per_node: BTreeMap<&str, usize> = BTreeMap::new();
    for (status, node) in placed.values() {
        if status == "Running" {
            *per_node.entry(node.as_str()).or_insert(0) += 1;
        }
    }
    assert_eq!(per_node.len(), 10, "{per_node:?}");
    assert!(per_node.values().all(|n| *n == 3), "{per_node:?}");
    // The rest stay Pending with the reason, and nothing more gets bound.
    std::thread::sleep(Duration::from_secs(2));
    let pods = pods_wide(&k);
    assert_eq!(pods.values().filter(|(s, _)| s == "Pending").count(), 20);
    let describe = k.ok(&["describe", "pod", "burst-49"]);
    let pending_names: Vec<&String> = pods
        .iter()
        .filter(|(_, (s, _))| s == "Pending")
        .map(|(n, _)| n)
        .collect();
    let one = k.ok(&["describe", "pod", pending_names[0]]);
    assert!(
        one.contains("0/10 nodes are available: 10 Insufficient cpu."),
        "{one}\n{describe}"
    );
}
