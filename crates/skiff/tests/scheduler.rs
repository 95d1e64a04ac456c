//! Scheduler scenarios: `skiff server` (which runs the scheduler) plus `skiff hollow` nodes,
//! observed with the real kubectl: placement, refusals in upstream's words, Running pods.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use support::{Hollow, KUBECTL_133, Kubectl, Server, eventually};

const WAIT: Duration = Duration::from_secs(60);

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

/// The status and node of one pod, from `kubectl get pods -o wide`.
fn status_of(k: &Kubectl, pod: &str) -> Option<(String, String)> {
    pods_wide(k).get(pod).cloned()
}

/// Creates every pod of `yaml` (a multi-document stream) with one `kubectl create`.
fn create(k: &Kubectl, yaml: &str) {
    k.ok_stdin(&["create", "-f", "-"], yaml);
}

/// The FailedScheduling message the scheduler wrote in the pod's PodScheduled condition.
fn unschedulable_message(k: &Kubectl, pod: &str) -> Option<String> {
    let m = k.ok(&[
        "get",
        "pod",
        pod,
        "-o",
        "jsonpath={.status.conditions[?(@.reason==\"Unschedulable\")].message}",
    ]);
    (!m.is_empty()).then_some(m)
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
fn required_and_preferred_node_affinity() {
    let server = Server::start();
    let k = server.kubectl(KUBECTL_133);
    let zone = |z: &str| format!("topology.kubernetes.io/zone={z}");
    let _a = Hollow::start(
        &server,
        &[
            "--nodes",
            "2",
            "--name-prefix",
            "a-",
            "--labels",
            &zone("a"),
        ],
    );
    let _b = Hollow::start(
        &server,
        &[
            "--nodes",
            "2",
            "--name-prefix",
            "b-",
            "--labels",
            &zone("b"),
        ],
    );
    let required = |values: &str| {
        format!(
            "  affinity:\n    nodeAffinity:\n      requiredDuringSchedulingIgnoredDuringExecution:\n        \
             nodeSelectorTerms:\n        - matchExpressions:\n          - {{key: topology.kubernetes.io/zone, operator: In, values: [{values}]}}"
        )
    };
    let preferred = "  affinity:\n    nodeAffinity:\n      preferredDuringSchedulingIgnoredDuringExecution:\n      \
                     - weight: 100\n        preference:\n          matchExpressions:\n          \
                     - {key: topology.kubernetes.io/zone, operator: In, values: [a]}";
    create(
        &k,
        &[
            pod_yaml("must-b", &required("b"), "100m"),
            pod_yaml("likes-a", preferred, "100m"),
            pod_yaml("must-c", &required("c"), "100m"),
        ]
        .join("---\n"),
    );
    let b = eventually(WAIT, "must-b Running", || running_on(&k, "must-b"));
    assert!(b.starts_with("b-"), "required affinity ignored: {b}");
    let a = eventually(WAIT, "likes-a Running", || running_on(&k, "likes-a"));
    assert!(a.starts_with("a-"), "preferred affinity ignored: {a}");
    let msg = eventually(WAIT, "must-c refused", || {
        unschedulable_message(&k, "must-c")
    });
    assert!(
        msg.starts_with(
            "0/4 nodes are available: 4 node(s) didn't match Pod's node affinity/selector. preemption: "
        ),
        "{msg}"
    );
    let describe = k.ok(&["describe", "pod", "must-c"]);
    assert!(describe.contains("FailedScheduling"), "{describe}");
    assert_eq!(status_of(&k, "must-c").map(|s| s.0), Some("Pending".into()));
}

#[test]
fn topology_spread_balances_zones_and_refuses_skew() {
    let server = Server::start();
    let k = server.kubectl(KUBECTL_133);
    let mut zones = Vec::new();
    for z in ["z1", "z2", "z3"] {
        zones.push(Hollow::start(
            &server,
            &[
                "--nodes",
                "2",
                "--name-prefix",
                &format!("{z}-"),
                "--labels",
                &format!("topology.kubernetes.io/zone={z}"),
            ],
        ));
    }
    let spread = "  topologySpreadConstraints:\n  - maxSkew: 1\n    topologyKey: topology.kubernetes.io/zone\n    \
                  whenUnsatisfiable: DoNotSchedule\n    labelSelector: {matchLabels: {group: web}}";
    let web = |i: usize| {
        pod_yaml(&format!("web-{i}"), spread, "100m")
            .replace(&format!("labels: {{app: web-{i}}}"), "labels: {group: web}")
    };
    create(&k, &(0..6).map(web).collect::<Vec<_>>().join("---\n"));
    let placed = eventually(WAIT, "6 web pods Running", || {
        let pods = pods_wide(&k);
        let nodes: Vec<String> = (0..6)
            .filter_map(|i| pods.get(&format!("web-{i}")))
            .filter(|(s, _)| s == "Running")
            .map(|(_, n)| n.clone())
            .collect();
        (nodes.len() == 6).then_some(nodes)
    });
    let mut per_zone: BTreeMap<String, usize> = BTreeMap::new();
    for n in &placed {
        *per_zone.entry(n[..2].to_string()).or_insert(0) += 1;
    }
    assert_eq!(
        per_zone,
        BTreeMap::from([("z1".into(), 2), ("z2".into(), 2), ("z3".into(), 2)]),
        "{placed:?}"
    );

    // Pods that may only go to z1, counting every zone (nodeAffinityPolicy: Ignore): the first
    // makes z1 one ahead (skew 1, allowed), the second would make it two ahead: refused.
    let only_z1 = format!(
        "{spread}\n    nodeAffinityPolicy: Ignore\n  nodeSelector: {{topology.kubernetes.io/zone: z1}}"
    );
    let z1_pod = |name: &str| {
        pod_yaml(name, &only_z1, "100m")
            .replace(&format!("labels: {{app: {name}}}"), "labels: {group: web}")
    };
    create(&k, &z1_pod("web-z1a"));
    let node = eventually(WAIT, "web-z1a Running", || running_on(&k, "web-z1a"));
    assert!(node.starts_with("z1-"), "{node}");
    create(&k, &z1_pod("web-z1b"));
    let msg = eventually(WAIT, "web-z1b refused", || {
        unschedulable_message(&k, "web-z1b")
    });
    assert!(
        msg.starts_with(
            "0/6 nodes are available: 2 node(s) didn't match pod topology spread constraints, \
             4 node(s) didn't match Pod's node affinity/selector. preemption: "
        ),
        "{msg}"
    );
}

#[test]
fn pod_anti_affinity_keeps_replicas_apart() {
    let server = Server::start();
    let k = server.kubectl(KUBECTL_133);
    let _nodes = Hollow::start(&server, &["--nodes", "3"]);
    let anti = "  affinity:\n    podAntiAffinity:\n      requiredDuringSchedulingIgnoredDuringExecution:\n      \
                - labelSelector: {matchLabels: {group: db}}\n        topologyKey: kubernetes.io/hostname";
    let db = |i: usize| {
        pod_yaml(&format!("db-{i}"), anti, "100m")
            .replace(&format!("labels: {{app: db-{i}}}"), "labels: {group: db}")
    };
    create(&k, &(0..3).map(db).collect::<Vec<_>>().join("---\n"));
    let nodes = eventually(WAIT, "3 db pods Running", || {
        let v: Vec<String> = (0..3)
            .filter_map(|i| running_on(&k, &format!("db-{i}")))
            .collect();
        (v.len() == 3).then_some(v)
    });
    let distinct: std::collections::BTreeSet<&String> = nodes.iter().collect();
    assert_eq!(distinct.len(), 3, "two replicas share a node: {nodes:?}");

    create(&k, &db(3));
    let msg = eventually(WAIT, "db-3 refused", || unschedulable_message(&k, "db-3"));
    assert!(
        msg.starts_with(
            "0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules. preemption: "
        ),
        "{msg}"
    );
    let events = k.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=db-3",
    ]);
    assert!(events.contains("FailedScheduling"), "{events}");
}

#[test]
fn preemption_by_priority_evicts_a_victim_and_nominates_the_node() {
    let server = Server::start();
    let k = server.kubectl(KUBECTL_133);
    let _node = Hollow::start(&server, &["--nodes", "1", "--cpu", "2"]);
    k.ok_stdin(
        &["apply", "-f", "-"],
        "apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata: {name: low}\nvalue: 100\n---\n\
         apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata: {name: high}\nvalue: 1000\n",
    );
    // Two 900m pods fill the 2-CPU node; a 1-CPU high-priority pod needs one of them gone.
    create(
        &k,
        &[
            pod_yaml("low-0", "  priorityClassName: low", "900m"),
            pod_yaml("low-1", "  priorityClassName: low", "900m"),
        ]
        .join("---\n"),
    );
    eventually(WAIT, "low pods Running", || {
        (running_on(&k, "low-0").is_some() && running_on(&k, "low-1").is_some()).then_some(())
    });
    create(&k, &pod_yaml("vip", "  priorityClassName: high", "1"));
    let node = eventually(WAIT, "vip Running", || running_on(&k, "vip"));
    assert_eq!(node, "hollow-node-0");
    // Exactly one victim is gone, the other low pod still runs.
    let pods = pods_wide(&k);
    let lows: Vec<&String> = pods.keys().filter(|n| n.starts_with("low-")).collect();
    assert_eq!(lows.len(), 1, "{pods:?}");
    let nominated = k.ok(&[
        "get",
        "pod",
        "vip",
        "-o",
        "jsonpath={.status.nominatedNodeName}",
    ]);
    assert_eq!(nominated, "hollow-node-0");
    let wide = k.ok(&["get", "pod", "vip", "-o", "wide"]);
    assert!(wide.contains("NOMINATED NODE"), "{wide}");
    let events = k.ok(&["get", "events"]);
    let uid = k.ok(&["get", "pod", "vip", "-o", "jsonpath={.metadata.uid}"]);
    assert!(
        events.contains(&format!("Preempted by pod {uid} on node hollow-node-0")),
        "{events}"
    );
    assert!(events.contains("Preempted"), "{events}");
    let describe = k.ok(&["describe", "pod", "vip"]);
    assert!(describe.contains("Insufficient cpu"), "{describe}");
}

#[test]
fn a_burst_of_a_thousand_pods_never_overcommits_ten_nodes() {
    let server = Server::start();
    let k = server.kubectl(KUBECTL_133);
    // 10 nodes of 4 CPU; pods of 150m: 26 fit per node (3,900m), 260 in all.
    let _nodes = Hollow::start(&server, &["--nodes", "10"]);
    let list: String = (0..1000)
        .map(|i| format!("---\n{}", pod_yaml(&format!("burst-{i}"), "", "150m")))
        .collect();
    create(&k, &list);
    let placed = eventually(Duration::from_secs(180), "260 bound, 740 refused", || {
        let out = k.ok(&[
            "get",
            "pods",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name} {.spec.nodeName} \
             {.status.conditions[?(@.type==\"PodScheduled\")].reason}{\"\\n\"}{end}",
        ]);
        let mut bound: BTreeMap<String, usize> = BTreeMap::new();
        let mut refused = 0;
        for l in out.lines() {
            let f: Vec<&str> = l.split_whitespace().collect();
            match f.as_slice() {
                [_, node] | [_, node, _] if node.starts_with("hollow-node-") => {
                    *bound.entry(node.to_string()).or_insert(0) += 1;
                }
                [_, "Unschedulable"] => refused += 1,
                _ => {}
            }
        }
        let total: usize = bound.values().sum();
        (total == 260 && refused == 740).then_some(bound)
    });
    // Sum of requests per node <= allocatable (4,000m): at most 26 pods of 150m each.
    assert_eq!(placed.len(), 10, "{placed:?}");
    assert!(placed.values().all(|n| *n * 150 <= 4000), "{placed:?}");
    let pending = k.ok(&[
        "get",
        "pods",
        "--field-selector",
        "status.phase=Pending",
        "--no-headers",
    ]);
    assert_eq!(pending.lines().count(), 740);
    let first_pending = pending
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string();
    let msg = unschedulable_message(&k, &first_pending).unwrap_or_default();
    assert_eq!(
        msg,
        "0/10 nodes are available: 10 Insufficient cpu. preemption: 0/10 nodes are available: \
         10 No preemption victims found for incoming pod.."
    );
    let events = k.ok(&[
        "get",
        "events",
        "--field-selector",
        "reason=FailedScheduling",
    ]);
    assert!(events.lines().count() > 1, "{events}");
}
