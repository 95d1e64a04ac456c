//! Host test (root): `skiff cluster up` builds a server and agents in network namespaces of
//! their own; pods on different nodes reach each other without NAT (host-gw and VXLAN), a node
//! can be stopped and started, and `skiff cluster down` leaves no namespace, link, mount,
//! cgroup or process behind. The cluster is taken down also when the test fails.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::{KUBECTL_133, Kubectl, eventually};

fn skip_reason() -> Option<&'static str> {
    let root = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"));
    if !root {
        return Some("needs root");
    }
    if !Path::new("/usr/lib/cni/bridge").exists() || !Path::new("/bin/busybox").exists() {
        return Some("needs containernetworking-plugins and busybox-static");
    }
    None
}

/// A cluster built by `skiff cluster up`, taken down when dropped.
struct Cluster {
    name: String,
    dir: PathBuf,
    kubectl: Kubectl,
    _scratch: tempfile::TempDir,
}

fn skiff(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args(args)
        .output()
        .expect("run skiff")
}

impl Cluster {
    fn up(name: &str, nodes: usize, pod_network: &str) -> Cluster {
        let scratch = tempfile::tempdir().expect("tempdir");
        let images = scratch.path().join("images");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/busybox-image.sh");
        let out = Command::new(script)
            .arg(&images)
            .output()
            .expect("busybox-image.sh");
        assert!(out.status.success(), "busybox-image.sh: {out:?}");
        let dir = scratch.path().join("cluster");
        let dir_s = dir.display().to_string();
        let nodes_s = nodes.to_string();
        let images_s = images.display().to_string();
        let args = [
            "cluster",
            "up",
            "--name",
            name,
            "--dir",
            &dir_s,
            "--nodes",
            &nodes_s,
            "--pod-network",
            pod_network,
            "--images",
            &images_s,
        ];
        let cluster = Cluster {
            name: name.into(),
            kubectl: Kubectl {
                binary: KUBECTL_133.into(),
                kubeconfig: dir.join("server/kubeconfig.yaml"),
                cache: scratch.path().join("kcache"),
            },
            dir,
            _scratch: scratch,
        };
        let out = skiff(&args);
        assert!(
            out.status.success(),
            "cluster up: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("kubeconfig="), "{stdout}");
        cluster
    }

    fn node(&self, i: usize) -> String {
        format!("{}-node-{i}", self.name)
    }

    fn dir_arg(&self) -> String {
        self.dir.display().to_string()
    }

    /// A pod on node `node` running `script`, waited for until it ran to completion; its exit
    /// code.
    fn run_to_completion(&self, pod: &str, node: &str, script: &str) -> i64 {
        let overrides = format!(r#"{{"spec":{{"nodeName":"{node}"}}}}"#);
        self.kubectl.ok(&[
            "run",
            pod,
            "--image=busybox:1.36",
            "--restart=Never",
            &format!("--overrides={overrides}"),
            "--",
            "sh",
            "-c",
            script,
        ]);
        eventually(Duration::from_secs(60), "the pod finished", || {
            let code = self.kubectl.ok(&[
                "get",
                "pod",
                pod,
                "-o",
                "jsonpath={.status.containerStatuses[0].state.terminated.exitCode}",
            ]);
            code.trim().parse().ok()
        })
    }

    fn pod_ip(&self, pod: &str) -> String {
        eventually(Duration::from_secs(60), "the pod runs with an IP", || {
            let out = self.kubectl.ok(&[
                "get",
                "pod",
                pod,
                "-o",
                "jsonpath={.status.phase} {.status.podIP}",
            ]);
            let (phase, ip) = out.trim().split_once(' ')?;
            (phase == "Running" && !ip.is_empty()).then(|| ip.to_string())
        })
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let out = skiff(&[
            "cluster",
            "down",
            "--name",
            &self.name,
            "--dir",
            &self.dir_arg(),
        ]);
        if !out.status.success() {
            eprintln!("cluster down: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
}

/// What a cluster named `name` could leave behind: namespaces, links, cgroups, mounts.
fn leftovers(name: &str, dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let netns = String::from_utf8_lossy(
        &Command::new("ip")
            .args(["netns", "list"])
            .output()
            .expect("ip netns")
            .stdout,
    )
    .into_owned();
    found.extend(
        netns
            .lines()
            .filter(|l| l.starts_with(&format!("skiff-{name}-")))
            .map(|l| format!("netns {l}")),
    );
    let links = String::from_utf8_lossy(
        &Command::new("ip")
            .args(["-o", "link"])
            .output()
            .expect("ip link")
            .stdout,
    )
    .into_owned();
    if links.contains(&format!("sk-{name}")) {
        found.push(format!("link sk-{name}"));
    }
    for h in std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
    {
        for e in std::fs::read_dir(h.path()).into_iter().flatten().flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with(&format!("skiff-{name}-")) {
                found.push(format!("cgroup {}", e.path().display()));
            }
        }
    }
    let base = dir.display().to_string();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    found.extend(
        mounts
            .lines()
            .filter_map(|l| l.split_whitespace().nth(4))
            .filter(|m| m.starts_with(&base))
            .map(|m| format!("mount {m}")),
    );
    if dir.exists() {
        found.push(format!("dir {}", dir.display()));
    }
    found
}

fn pods_reach_each_other_across_nodes(name: &str, pod_network: &str) {
    let cluster = Cluster::up(name, 2, pod_network);
    let k = &cluster.kubectl;
    let nodes = k.ok(&["get", "nodes", "-o", "name"]);
    assert_eq!(nodes.lines().count(), 2, "{nodes}");
    for i in 1..=2 {
        eventually(Duration::from_secs(60), "nodes are Ready", || {
            let ready = k.ok(&[
                "get",
                "node",
                &cluster.node(i),
                "-o",
                r#"jsonpath={.status.conditions[?(@.type=="Ready")].status}"#,
            ]);
            (ready == "True").then_some(())
        });
    }
    // A web server on node 2 that answers with the address the request came from...
    let overrides = format!(r#"{{"spec":{{"nodeName":"{}"}}}}"#, cluster.node(2));
    k.ok(&[
        "run",
        "web",
        "--image=busybox:1.36",
        "--restart=Never",
        &format!("--overrides={overrides}"),
        "--",
        "sh",
        "-c",
        "mkdir -p /www/cgi-bin && printf '#!/bin/sh\\necho Content-Type: text/plain\\necho\\necho $REMOTE_ADDR\\n' > /www/cgi-bin/ip && chmod +x /www/cgi-bin/ip && httpd -f -p 8080 -h /www",
    ]);
    let web_ip = cluster.pod_ip("web");
    // ...and a client pod on node 1 that checks the answer is its own pod IP (no NAT; httpd
    // reports IPv4 peers as `[::ffff:a.b.c.d]`).
    // busybox 1.35's `wget -T` crashes; `timeout` bounds the request instead.
    let code = cluster.run_to_completion(
        "client",
        &cluster.node(1),
        &format!(
            "me=$(ip -4 -o addr show eth0 | awk '{{print $4}}' | cut -d/ -f1); seen=$(timeout 5 wget -qO- http://{web_ip}:8080/cgi-bin/ip | sed 's/^\\[::ffff://; s/\\]$//'); echo \"me=$me seen=$seen\"; [ \"$seen\" = \"$me\" ]"
        ),
    );
    assert_eq!(code, 0, "the client did not see its own address echoed");

    // A stopped node's agent comes back and the node is Ready again.
    let node1 = cluster.node(1);
    let dir = cluster.dir_arg();
    let out = skiff(&[
        "cluster",
        "stop-node",
        "--name",
        name,
        "--dir",
        &dir,
        &node1,
    ]);
    assert!(out.status.success(), "{out:?}");
    let out = skiff(&[
        "cluster",
        "start-node",
        "--name",
        name,
        "--dir",
        &dir,
        &node1,
    ]);
    assert!(out.status.success(), "{out:?}");
    let code = cluster.run_to_completion(
        "client-again",
        &node1,
        &format!("timeout 5 wget -qO- http://{web_ip}:8080/cgi-bin/ip"),
    );
    assert_eq!(code, 0, "pod traffic after the node's agent restarted");

    let dir = cluster.dir.clone();
    drop(cluster);
    let left = leftovers(name, &dir);
    assert!(left.is_empty(), "cluster down left: {left:#?}");
}

#[test]
fn host_gw_pods_reach_each_other_across_nodes_and_down_leaves_nothing() {
    if let Some(why) = skip_reason() {
        eprintln!("skipping: {why}");
        return;
    }
    pods_reach_each_other_across_nodes("hgw", "host-gw");
}

#[test]
fn vxlan_pods_reach_each_other_across_nodes_and_down_leaves_nothing() {
    if let Some(why) = skip_reason() {
        eprintln!("skipping: {why}");
        return;
    }
    pods_reach_each_other_across_nodes("vxl", "vxlan");
}

/// `kubectl exec` in `pod`: `script`'s stdout.
fn exec(k: &Kubectl, pod: &str, script: &str) -> String {
    k.ok(&["exec", pod, "--", "sh", "-c", script])
}

#[test]
fn services_nodeports_and_dns_on_a_three_node_cluster() {
    if let Some(why) = skip_reason() {
        eprintln!("skipping: {why}");
        return;
    }
    let cluster = Cluster::up("svc", 3, "host-gw");
    let k = &cluster.kubectl;
    // Three web pods (one per node by default spreading) serving their own hostname.
    k.ok(&[
        "create",
        "deployment",
        "web",
        "--image=busybox:1.36",
        "--replicas=3",
        "--",
        "httpd",
        "-f",
        "-p",
        "8080",
        "-h",
        "/etc",
    ]);
    k.ok(&[
        "expose",
        "deployment",
        "web",
        "--port=80",
        "--target-port=8080",
    ]);
    k.ok(&[
        "expose",
        "deployment",
        "web",
        "--name=web-np",
        "--type=NodePort",
        "--port=80",
        "--target-port=8080",
    ]);
    let pods: Vec<String> = eventually(Duration::from_secs(90), "three web pods run", || {
        let out = k.ok(&[
            "get",
            "pods",
            "-l",
            "app=web",
            "--field-selector=status.phase=Running",
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ]);
        let names: Vec<String> = out.split_whitespace().map(str::to_string).collect();
        (names.len() == 3).then_some(names)
    });
    eventually(Duration::from_secs(30), "three endpoints", || {
        let out = k.ok(&[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=web",
            "-o",
            "jsonpath={.items[*].endpoints[*].addresses[0]}",
        ]);
        (out.split_whitespace().count() == 3).then_some(())
    });

    // DNS: the Service's name resolves to its ClusterIP from a pod.
    let cluster_ip = k.ok(&["get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}"]);
    let lookup = exec(k, &pods[0], "nslookup web.default.svc.cluster.local");
    assert!(lookup.contains(&cluster_ip), "{lookup}");

    // ClusterIP by short name, from a pod, balanced over the backends.
    let answers = exec(
        k,
        &pods[0],
        "for i in $(seq 1 30); do timeout 3 wget -qO- http://web/hostname; done",
    );
    let seen: std::collections::BTreeSet<&str> = answers.lines().collect();
    assert!(
        seen.len() >= 2,
        "one backend answered every request: {answers}"
    );
    assert!(seen.iter().all(|h| pods.iter().any(|p| p == h)), "{seen:?}");

    // NodePort from outside the cluster (this process, in the root namespace) on every node.
    let node_port = k.ok(&[
        "get",
        "svc",
        "web-np",
        "-o",
        "jsonpath={.spec.ports[0].nodePort}",
    ]);
    let node_ips = k.ok(&[
        "get",
        "nodes",
        "-o",
        r#"jsonpath={.items[*].status.addresses[?(@.type=="InternalIP")].address}"#,
    ]);
    assert_eq!(node_ips.split_whitespace().count(), 3, "{node_ips}");
    for ip in node_ips.split_whitespace() {
        let out = Command::new("curl")
            .args([
                "-s",
                "-m",
                "5",
                &format!("http://{ip}:{node_port}/hostname"),
            ])
            .output()
            .expect("curl");
        let host = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(pods.contains(&host), "NodePort on {ip}: {out:?}");
    }

    // Scaling changes the backends: one pod left, every answer comes from it.
    k.ok(&["scale", "deployment", "web", "--replicas=1"]);
    let left = eventually(Duration::from_secs(60), "one web pod left", || {
        let out = k.ok(&[
            "get",
            "pods",
            "-l",
            "app=web",
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ]);
        let names: Vec<&str> = out.split_whitespace().collect();
        (names.len() == 1).then(|| names[0].to_string())
    });
    let first_ip = node_ips
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string();
    let ask = || {
        Command::new("curl")
            .args([
                "-s",
                "-m",
                "3",
                &format!("http://{first_ip}:{node_port}/hostname"),
            ])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    eventually(
        Duration::from_secs(30),
        "only the remaining pod answers",
        || (0..10).all(|_| ask() == left).then_some(()),
    );
}
