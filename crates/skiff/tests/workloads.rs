//! Workload controller scenarios with the real kubectl 1.33: StatefulSet (ordered pods, claims,
//! scale down in reverse, partitioned rolling update, history and undo), DaemonSet (one pod per
//! eligible node, taints, rolling update) and ReplicationController (`kubectl scale rc`), on
//! `skiff server` plus `skiff hollow` nodes that move bound pods to Running/Ready.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use support::{Hollow, KUBECTL_133, Kubectl, Server, eventually};

const WAIT: Duration = Duration::from_secs(90);

/// Pods matching `selector`: name → (phase, ready, node, image, revision hash, deleting).
#[derive(Debug, Clone, PartialEq)]
struct PodView {
    phase: String,
    ready: bool,
    node: String,
    image: String,
    revision: String,
    deleting: bool,
}

fn pods(k: &Kubectl, selector: &str) -> BTreeMap<String, PodView> {
    let out = k.ok(&["get", "pods", "-l", selector, "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("pod list json");
    v["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|p| {
            let name = p["metadata"]["name"].as_str().unwrap_or("").to_string();
            let ready = p["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True");
            let view = PodView {
                phase: p["status"]["phase"].as_str().unwrap_or("").to_string(),
                ready,
                node: p["spec"]["nodeName"].as_str().unwrap_or("").to_string(),
                image: p["spec"]["containers"][0]["image"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
                revision: p["metadata"]["labels"]["controller-revision-hash"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
                deleting: p["metadata"]["deletionTimestamp"].is_string(),
            };
            (name, view)
        })
        .collect()
}

/// On a failing test, prints what the cluster looked like and the server log's tail.
struct Diagnose<'a>(&'a Server, &'a Kubectl);

impl Drop for Diagnose<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let state = self
                .1
                .run(&["get", "all,controllerrevisions,events", "-o", "wide"]);
            let log = self.0.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!(
                "--- cluster ---\n{}{}\n--- server log (tail, newest first) ---\n{}",
                state.stdout,
                state.stderr,
                tail.join("\n")
            );
        }
    }
}

fn running_ready(p: &PodView) -> bool {
    p.phase == "Running" && p.ready && !p.deleting
}

fn jsonpath(k: &Kubectl, what: &[&str], path: &str) -> String {
    let jp = format!("jsonpath={path}");
    let mut args: Vec<&str> = vec!["get"];
    args.extend_from_slice(what);
    args.extend_from_slice(&["-o", &jp]);
    k.ok(&args)
}

const STS: &str = r#"apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: web
spec:
  serviceName: web
  replicas: 3
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: app
        image: registry.k8s.io/pause:3.9
  volumeClaimTemplates:
  - metadata:
      name: www
    spec:
      accessModes: [ReadWriteOnce]
      resources:
        requests: {storage: 1Gi}
"#;

#[test]
fn statefulset_orders_pods_scales_down_in_reverse_and_rolls_with_partition() {
    let server = Server::start();
    let k = server.kubectl(KUBECTL_133);
    let _diag = Diagnose(&server, &k);
    let _nodes = Hollow::start(&server, &["--nodes", "3"]);
    k.ok_stdin(&["apply", "-f", "-"], STS);

    let all = eventually(WAIT, "web-0..2 Running and Ready", || {
        let p = pods(&k, "app=web");
        (p.len() == 3 && p.values().all(running_ready)).then_some(p)
    });
    assert_eq!(
        all.keys().cloned().collect::<Vec<_>>(),
        ["web-0", "web-1", "web-2"]
    );
    // OrderedReady: each pod was created only once its predecessor was Ready.
    for (prev, next) in [("web-0", "web-1"), ("web-1", "web-2")] {
        let ready_at = jsonpath(
            &k,
            &["pod", prev],
            "{.status.conditions[?(@.type==\"Ready\")].lastTransitionTime}",
        );
        let created = jsonpath(&k, &["pod", next], "{.metadata.creationTimestamp}");
        assert!(
            created >= ready_at,
            "{next} created at {created}, before {prev} was ready at {ready_at}"
        );
    }
    let events = k.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=web",
    ]);
    assert!(
        events.contains("create Pod web-0 in StatefulSet web successful"),
        "{events}"
    );

    // Stable identity: labels, hostname/subdomain, one claim per ordinal.
    let labels = jsonpath(&k, &["pod", "web-1"], "{.metadata.labels}");
    assert!(
        labels.contains(r#""statefulset.kubernetes.io/pod-name":"web-1""#),
        "{labels}"
    );
    assert!(
        labels.contains(r#""apps.kubernetes.io/pod-index":"1""#),
        "{labels}"
    );
    let host = jsonpath(&k, &["pod", "web-1"], "{.spec.hostname}.{.spec.subdomain}");
    assert_eq!(host, "web-1.web");
    let claim = jsonpath(
        &k,
        &["pod", "web-1"],
        "{.spec.volumes[?(@.name==\"www\")].persistentVolumeClaim.claimName}",
    );
    assert_eq!(claim, "www-web-1");
    let pvcs = k.ok(&["get", "pvc", "-o", "name"]);
    for n in ["www-web-0", "www-web-1", "www-web-2"] {
        assert!(pvcs.contains(n), "{pvcs}");
    }

    // The API server defaults partition to 0, so kubectl reports every set as partitioned.
    let status = k.ok(&["rollout", "status", "sts/web", "--timeout=60s"]);
    assert!(
        status.contains("partitioned roll out complete: 3 new pods have been updated"),
        "{status}"
    );
    let st = jsonpath(
        &k,
        &["sts", "web"],
        "{.status.replicas} {.status.readyReplicas} {.status.currentReplicas} {.status.updatedReplicas} {.status.availableReplicas}",
    );
    assert_eq!(st, "3 3 3 3 3");

    // Scale down 3 → 1: web-2 goes completely before web-1 is touched.
    k.ok(&["scale", "sts/web", "--replicas=1"]);
    eventually(WAIT, "web-1 and web-2 gone", || {
        let p = pods(&k, "app=web");
        let (has1, has2) = (p.contains_key("web-1"), p.contains_key("web-2"));
        let web1_deleting = p.get("web-1").is_some_and(|v| v.deleting);
        assert!(
            !(has2 && (!has1 || web1_deleting)),
            "web-1 went before web-2: {p:?}"
        );
        (!has1 && !has2 && p.contains_key("web-0")).then_some(())
    });
    k.ok(&["scale", "sts/web", "--replicas=3"]);
    eventually(WAIT, "back to 3 ready", || {
        let p = pods(&k, "app=web");
        (p.len() == 3 && p.values().all(running_ready)).then_some(())
    });
    k.ok(&["rollout", "status", "sts/web", "--timeout=60s"]);
    let old_rev = jsonpath(&k, &["sts", "web"], "{.status.currentRevision}");

    // Partitioned rolling update: only ordinals >= 2 move to the new template.
    k.ok(&[
        "patch",
        "sts/web",
        "-p",
        r#"{"spec":{"updateStrategy":{"type":"RollingUpdate","rollingUpdate":{"partition":2}}}}"#,
    ]);
    k.ok(&["set", "image", "sts/web", "app=registry.k8s.io/pause:3.10"]);
    let status = k.ok(&["rollout", "status", "sts/web", "--timeout=60s"]);
    assert!(status.contains("partitioned roll out complete"), "{status}");
    let p = pods(&k, "app=web");
    assert_eq!(p["web-2"].image, "registry.k8s.io/pause:3.10", "{p:?}");
    assert_eq!(p["web-1"].image, "registry.k8s.io/pause:3.9", "{p:?}");
    assert_eq!(p["web-0"].image, "registry.k8s.io/pause:3.9", "{p:?}");
    assert_eq!(p["web-0"].revision, old_rev);
    let new_rev = jsonpath(&k, &["sts", "web"], "{.status.updateRevision}");
    assert_ne!(new_rev, old_rev);
    assert_eq!(p["web-2"].revision, new_rev);

    // Partition 0: the rest roll, highest ordinal first, to completion.
    k.ok(&[
        "patch",
        "sts/web",
        "-p",
        r#"{"spec":{"updateStrategy":{"rollingUpdate":{"partition":0}}}}"#,
    ]);
    // Every snapshot: updated ordinals form a suffix (highest first) and at most one pod is
    // down at a time.
    eventually(WAIT, "web-0..2 on the new image", || {
        let p = pods(&k, "app=web");
        let new: Vec<bool> = ["web-0", "web-1", "web-2"]
            .iter()
            .map(|n| p.get(*n).is_some_and(|v| v.image.ends_with("3.10")))
            .collect();
        assert!(
            new.windows(2).all(|w| !w[0] || w[1]),
            "a lower ordinal was updated before a higher one: {p:?}"
        );
        let down = ["web-0", "web-1", "web-2"]
            .iter()
            .filter(|n| !p.get(**n).is_some_and(running_ready))
            .count();
        assert!(down <= 1, "more than one pod down at once: {p:?}");
        (new.iter().all(|b| *b) && down == 0).then_some(())
    });
    let status = k.ok(&["rollout", "status", "sts/web", "--timeout=90s"]);
    assert!(
        status.contains("partitioned roll out complete: 3 new pods have been updated"),
        "{status}"
    );
    let p = pods(&k, "app=web");
    assert!(
        p.values().all(|v| v.image == "registry.k8s.io/pause:3.10"),
        "{p:?}"
    );
    let cur = jsonpath(&k, &["sts", "web"], "{.status.currentRevision}");
    assert_eq!(cur, new_rev);

    // History lists both revisions; undo goes back to the first template.
    let history = k.ok(&["rollout", "history", "sts/web"]);
    assert!(
        history.contains("1 ") && history.contains("2 "),
        "{history}"
    );
    let revs = k.ok(&["get", "controllerrevisions", "-o", "name"]);
    assert_eq!(revs.lines().count(), 2, "{revs}");
    k.ok(&["rollout", "undo", "sts/web"]);
    k.ok(&["rollout", "status", "sts/web", "--timeout=90s"]);
    let p = pods(&k, "app=web");
    assert!(
        p.values().all(|v| v.image == "registry.k8s.io/pause:3.9"),
        "{p:?}"
    );
    assert_eq!(
        jsonpath(&k, &["sts", "web"], "{.status.currentRevision}"),
        old_rev,
        "undo reuses the old revision"
    );
    let revs = k.ok(&["get", "controllerrevisions", "-o", "name"]);
    assert_eq!(revs.lines().count(), 2, "no duplicate revision: {revs}");
    let history = k.ok(&["rollout", "history", "sts/web"]);
    assert!(
        history.contains("3 "),
        "the old revision was renumbered: {history}"
    );
}

const DS: &str = r#"apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: agent
spec:
  selector:
    matchLabels: {app: agent}
  template:
    metadata:
      labels: {app: agent}
    spec:
      containers:
      - name: agent
        image: registry.k8s.io/pause:3.9
"#;

#[test]
fn daemonset_runs_one_pod_per_eligible_node_and_rolls_updates() {
    let server = Server::start();
    let k = server.kubectl(KUBECTL_133);
    let _diag = Diagnose(&server, &k);
    let _nodes = Hollow::start(&server, &["--nodes", "3"]);
    let _tainted = Hollow::start(
        &server,
        &[
            "--nodes",
            "1",
            "--name-prefix",
            "gpu-",
            "--taints",
            "dedicated=gpu:NoSchedule",
        ],
    );
    k.ok_stdin(&["apply", "-f", "-"], DS);
    let status = k.ok(&["rollout", "status", "ds/agent", "--timeout=60s"]);
    assert!(status.contains("successfully rolled out"), "{status}");
    let p = pods(&k, "app=agent");
    assert_eq!(p.len(), 3, "{p:?}");
    let mut nodes: Vec<&str> = p.values().map(|v| v.node.as_str()).collect();
    nodes.sort();
    nodes.dedup();
    assert_eq!(nodes.len(), 3, "one pod per node: {p:?}");
    assert!(!nodes.iter().any(|n| n.starts_with("gpu-")), "{p:?}");
    let st = jsonpath(
        &k,
        &["ds", "agent"],
        "{.status.desiredNumberScheduled} {.status.currentNumberScheduled} {.status.numberReady} {.status.numberAvailable} {.status.updatedNumberScheduled}",
    );
    assert_eq!(st, "3 3 3 3 3");
    // The daemon defaults and the node pin are on every pod.
    let any = p.keys().next().expect("a pod").clone();
    let tolerations = jsonpath(&k, &["pod", &any], "{.spec.tolerations[*].key}");
    for t in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
        "node.kubernetes.io/unschedulable",
    ] {
        assert!(tolerations.contains(t), "{tolerations}");
    }
    let pinned = jsonpath(
        &k,
        &["pod", &any],
        "{.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchFields[0].values[0]}",
    );
    assert_eq!(pinned, p[&any].node);

    // Tolerating the taint adds the fourth node; the template change rolls every pod.
    k.ok(&[
        "patch",
        "ds/agent",
        "-p",
        r#"{"spec":{"template":{"spec":{"tolerations":[{"key":"dedicated","operator":"Exists","effect":"NoSchedule"}]}}}}"#,
    ]);
    k.ok(&["rollout", "status", "ds/agent", "--timeout=90s"]);
    let p = eventually(WAIT, "4 updated agents", || {
        let p = pods(&k, "app=agent");
        (p.len() == 4 && p.values().all(running_ready)).then_some(p)
    });
    assert!(p.values().any(|v| v.node.starts_with("gpu-")), "{p:?}");
    let revisions: Vec<&str> = p.values().map(|v| v.revision.as_str()).collect();
    assert!(revisions.windows(2).all(|w| w[0] == w[1]), "{p:?}");

    // An image update rolls one node at a time (maxUnavailable 1) to completion.
    k.ok(&[
        "set",
        "image",
        "ds/agent",
        "agent=registry.k8s.io/pause:3.10",
    ]);
    let all_nodes: Vec<String> = k
        .ok(&["get", "nodes", "-o", "name"])
        .lines()
        .map(|l| l.trim_start_matches("node/").to_string())
        .collect();
    assert_eq!(all_nodes.len(), 4);
    eventually(WAIT, "every node on the new image", || {
        let p = pods(&k, "app=agent");
        let serving = |n: &String| p.values().any(|v| &v.node == n && running_ready(v));
        let down = all_nodes.iter().filter(|n| !serving(n)).count();
        assert!(down <= 1, "maxUnavailable 1 exceeded: {p:?}");
        let updated = all_nodes.iter().all(|n| {
            p.values()
                .any(|v| &v.node == n && running_ready(v) && v.image.ends_with("3.10"))
        });
        (updated && p.len() == 4).then_some(())
    });
    k.ok(&["rollout", "status", "ds/agent", "--timeout=120s"]);
    let p = eventually(WAIT, "agents on the new image", || {
        let p = pods(&k, "app=agent");
        (p.len() == 4
            && p.values()
                .all(|v| running_ready(v) && v.image.ends_with("3.10")))
        .then_some(p)
    });
    assert_eq!(p.len(), 4);
    let history = k.ok(&["rollout", "history", "ds/agent"]);
    assert!(history.contains("3 "), "{history}");
}

const RC: &str = r#"apiVersion: v1
kind: ReplicationController
metadata:
  name: frontend
spec:
  replicas: 2
  selector: {app: frontend}
  template:
    metadata:
      labels: {app: frontend}
    spec:
      containers:
      - name: app
        image: registry.k8s.io/pause:3.10
"#;

#[test]
fn replication_controller_keeps_replicas_and_scales() {
    let server = Server::start();
    let k = server.kubectl(KUBECTL_133);
    let _diag = Diagnose(&server, &k);
    let _nodes = Hollow::start(&server, &["--nodes", "3"]);
    k.ok_stdin(&["apply", "-f", "-"], RC);
    eventually(WAIT, "2 frontends ready", || {
        let p = pods(&k, "app=frontend");
        (p.len() == 2 && p.values().all(running_ready)).then_some(())
    });
    let any = pods(&k, "app=frontend")
        .keys()
        .next()
        .expect("a pod")
        .clone();
    assert!(any.starts_with("frontend-"), "{any}");
    let owner = jsonpath(
        &k,
        &["pod", &any],
        "{.metadata.ownerReferences[0].apiVersion}/{.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name}",
    );
    assert_eq!(owner, "v1/ReplicationController/frontend");

    k.ok(&["scale", "rc/frontend", "--replicas=4"]);
    eventually(WAIT, "4 ready replicas in status", || {
        let st = jsonpath(
            &k,
            &["rc", "frontend"],
            "{.status.replicas} {.status.readyReplicas} {.status.availableReplicas}",
        );
        (st == "4 4 4").then_some(())
    });
    let get = k.ok(&["get", "rc", "frontend", "--no-headers"]);
    let cols: Vec<&str> = get.split_whitespace().collect();
    assert_eq!(&cols[..4], ["frontend", "4", "4", "4"], "{get}");

    // A deleted pod is replaced; scaling down removes pods.
    k.ok(&["delete", "pod", &any, "--wait=false"]);
    eventually(WAIT, "replacement", || {
        let p = pods(&k, "app=frontend");
        (!p.contains_key(&any) && p.values().filter(|v| running_ready(v)).count() == 4)
            .then_some(())
    });
    k.ok(&["scale", "rc/frontend", "--replicas=1"]);
    eventually(WAIT, "1 frontend", || {
        (pods(&k, "app=frontend").len() == 1).then_some(())
    });
    let events = k.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.kind=ReplicationController",
    ]);
    assert!(events.contains("Created pod: frontend-"), "{events}");
    assert!(events.contains("Deleted pod: frontend-"), "{events}");
}
