//! DaemonSet controller unit tests: seed nodes, pods and revisions, reconcile once, assert the
//! pods created per node, the pods deleted by a rolling update, and status.

use super::*;
use crate::history_fake::{SetAction, SetsRecorder};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::reflector::store::Writer;
use kube::runtime::watcher;
use serde_json::json;

fn now() -> jiff::Timestamp {
    jiff::Timestamp::from_second(1_800_000_000).expect("timestamp")
}

fn ds(image: &str, extra_spec: serde_json::Value) -> DaemonSet {
    let mut spec = json!({
        "selector": {"matchLabels": {"app": "agent"}},
        "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}},
        "revisionHistoryLimit": 10,
        "template": {
            "metadata": {"labels": {"app": "agent"}},
            "spec": {"containers": [{"name": "c", "image": image}]}
        }
    });
    if let (Some(s), Some(extra)) = (spec.as_object_mut(), extra_spec.as_object()) {
        for (k, v) in extra {
            s.insert(k.clone(), v.clone());
        }
    }
    serde_json::from_value(json!({
        "metadata": {"name": "agent", "namespace": "default", "uid": "ds-uid", "generation": 1},
        "spec": spec
    }))
    .expect("daemonset")
}

fn node(name: &str, labels: serde_json::Value, taints: serde_json::Value) -> Node {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
        "spec": {"taints": taints}
    }))
    .expect("node")
}

fn template(d: &DaemonSet) -> PodTemplateSpec {
    d.spec.as_ref().expect("spec").template.clone()
}

fn revision(d: &DaemonSet) -> (ControllerRevision, String) {
    let rev = history::new_revision(&d.metadata, controller_ref(d), &template(d), 1, Some(0));
    let hash = rev.metadata.labels.as_ref().expect("labels")[HASH_LABEL].clone();
    (rev, hash)
}

/// A Running, Ready daemon pod of `d` at `hash` on `node`.
fn pod(d: &DaemonSet, hash: &str, node: &str, n: u32) -> Pod {
    let mut p = new_pod(d, &template(d), hash, Some(node));
    p.metadata.name = Some(format!("agent-{node}-{n}"));
    p.metadata.uid = Some(format!("uid-{node}-{n}"));
    p.metadata.creation_timestamp = Some(Time(
        jiff::Timestamp::from_second(1_700_000_000 + i64::from(n)).expect("ts"),
    ));
    if let Some(spec) = p.spec.as_mut() {
        spec.node_name = Some(node.to_string());
    }
    p.status = Some(
        serde_json::from_value(json!({
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2020-01-01T00:00:00Z"}]
        }))
        .expect("status"),
    );
    p
}

struct Fixture {
    ctl: DaemonSetController<SetsRecorder>,
    fake: Arc<SetsRecorder>,
}

fn fixture(
    d: &DaemonSet,
    nodes: Vec<Node>,
    pods: Vec<Pod>,
    revs: Vec<ControllerRevision>,
) -> Fixture {
    let mut sw = Writer::<DaemonSet>::new(());
    sw.apply_watcher_event(&watcher::Event::Apply(d.clone()));
    let mut nw = Writer::<Node>::new(());
    for n in nodes {
        nw.apply_watcher_event(&watcher::Event::Apply(n));
    }
    let mut pw = Writer::<Pod>::new(());
    for p in pods {
        pw.apply_watcher_event(&watcher::Event::Apply(p));
    }
    let mut rw = Writer::<ControllerRevision>::new(());
    for r in revs {
        rw.apply_watcher_event(&watcher::Event::Apply(r));
    }
    let fake = Arc::new(SetsRecorder::new());
    Fixture {
        ctl: DaemonSetController {
            control: fake.clone(),
            sets: sw.as_reader(),
            pods: pw.as_reader(),
            nodes: nw.as_reader(),
            revisions: rw.as_reader(),
            creations: Expectations::new(),
            deletions: Expectations::new(),
            clock: Arc::new(now),
        },
        fake,
    }
}

fn key() -> Key {
    Key::new("default", "agent")
}

fn created_nodes(fake: &SetsRecorder) -> Vec<String> {
    let mut v: Vec<String> = fake
        .actions()
        .into_iter()
        .filter_map(|a| match a {
            SetAction::CreatePod { node, .. } => node,
            _ => None,
        })
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn one_pod_per_eligible_node_honouring_selector_and_taints() {
    let d = ds(
        "v1",
        json!({"template": {
            "metadata": {"labels": {"app": "agent"}},
            "spec": {"nodeSelector": {"role": "worker"}, "containers": [{"name": "c", "image": "v1"}]}
        }}),
    );
    let nodes = vec![
        node("a", json!({"role": "worker"}), json!([])),
        node("b", json!({"role": "worker"}), json!([])),
        node("c", json!({"role": "db"}), json!([])),
        node(
            "d",
            json!({"role": "worker"}),
            json!([{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]),
        ),
        // The daemon defaults tolerate cordoned nodes.
        node(
            "e",
            json!({"role": "worker"}),
            json!([{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]),
        ),
    ];
    let f = fixture(&d, nodes, vec![], vec![]);
    f.ctl.reconcile(&key()).await.expect("sync");
    assert_eq!(created_nodes(&f.fake), ["a", "b", "e"]);
    let p = &f.fake.created_pods()[0];
    assert_eq!(p.metadata.generate_name.as_deref(), Some("agent-"));
    let tolerations: Vec<String> = p
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.clone())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|t| t.key)
        .collect();
    for t in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
        "node.kubernetes.io/disk-pressure",
        "node.kubernetes.io/memory-pressure",
        "node.kubernetes.io/pid-pressure",
        "node.kubernetes.io/unschedulable",
    ] {
        assert!(
            tolerations.iter().any(|k| k == t),
            "{t} missing: {tolerations:?}"
        );
    }
    let st = f.fake.last_status().expect("status");
    assert_eq!(st["desiredNumberScheduled"], 3);
    assert_eq!(st["currentNumberScheduled"], 0);
    assert_eq!(st["observedGeneration"], 1);
    assert!(
        f.fake
            .events()
            .iter()
            .all(|e| e.starts_with("SuccessfulCreate: Created pod: agent-"))
    );
}

#[tokio::test]
async fn a_no_execute_taint_evicts_and_a_new_no_schedule_taint_keeps_the_pod() {
    let d = ds("v1", json!({}));
    let (rev, hash) = revision(&d);
    let nodes = vec![
        node("a", json!({}), json!([{"key": "k", "effect": "NoExecute"}])),
        node(
            "b",
            json!({}),
            json!([{"key": "k", "effect": "NoSchedule"}]),
        ),
    ];
    let pods = vec![pod(&d, &hash, "a", 1), pod(&d, &hash, "b", 2)];
    let f = fixture(&d, nodes, pods, vec![rev]);
    f.ctl.reconcile(&key()).await.expect("sync");
    assert_eq!(f.fake.deleted_pod_names(), ["agent-a-1"]);
    assert!(f.fake.created_pod_names().is_empty());
    let st = f.fake.last_status().expect("status");
    assert_eq!(st["desiredNumberScheduled"], 0);
    assert_eq!(st["numberMisscheduled"], 2);
}

#[tokio::test]
async fn extra_pods_on_a_node_and_pods_on_vanished_nodes_are_deleted() {
    let d = ds("v1", json!({}));
    let (rev, hash) = revision(&d);
    let pods = vec![
        pod(&d, &hash, "a", 1),
        pod(&d, &hash, "a", 2),
        pod(&d, &hash, "gone", 3),
    ];
    let f = fixture(&d, vec![node("a", json!({}), json!([]))], pods, vec![rev]);
    f.ctl.reconcile(&key()).await.expect("sync");
    let mut deleted = f.fake.deleted_pod_names();
    deleted.sort();
    assert_eq!(
        deleted,
        ["agent-a-2", "agent-gone-3"],
        "the oldest pod stays"
    );
}

#[tokio::test]
async fn rolling_update_replaces_at_most_max_unavailable_pods() {
    let old = ds("v1", json!({}));
    let (old_rev, old_hash) = revision(&old);
    let d = ds(
        "v2",
        json!({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 2, "maxSurge": 0}}}),
    );
    let nodes: Vec<Node> = ["a", "b", "c", "d"]
        .iter()
        .map(|n| node(n, json!({}), json!([])))
        .collect();
    let pods: Vec<Pod> = ["a", "b", "c", "d"]
        .iter()
        .enumerate()
        .map(|(i, n)| pod(&old, &old_hash, n, u32::try_from(i).expect("small")))
        .collect();
    let f = fixture(&d, nodes.clone(), pods.clone(), vec![old_rev.clone()]);
    f.ctl.reconcile(&key()).await.expect("sync");
    assert!(
        f.fake
            .writes()
            .iter()
            .any(|w| matches!(w, SetAction::CreateRevision { revision: 2, .. })),
        "{:?}",
        f.fake.writes()
    );
    assert_eq!(f.fake.deleted_pod_names().len(), 2, "maxUnavailable 2");
    assert!(f.fake.created_pod_names().is_empty());

    // One old pod already gone (its node counts as unavailable): only one more goes.
    let f = fixture(&d, nodes, pods[1..].to_vec(), vec![old_rev]);
    f.ctl.reconcile(&key()).await.expect("sync");
    assert_eq!(f.fake.deleted_pod_names().len(), 1);
    assert_eq!(created_nodes(&f.fake), ["a"]);
    let created = &f.fake.created_pods()[0];
    assert_eq!(
        created.spec.as_ref().expect("spec").containers[0]
            .image
            .as_deref(),
        Some("v2")
    );
}

#[tokio::test]
async fn surge_starts_the_new_pod_before_the_old_one_goes() {
    let old = ds("v1", json!({}));
    let (old_rev, old_hash) = revision(&old);
    let d = ds(
        "v2",
        json!({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}}),
    );
    let (new_rev_probe, new_hash) = revision(&d);
    let mut new_rev = new_rev_probe;
    new_rev.revision = 2;
    let nodes: Vec<Node> = ["a", "b"]
        .iter()
        .map(|n| node(n, json!({}), json!([])))
        .collect();
    let pods = vec![pod(&old, &old_hash, "a", 1), pod(&old, &old_hash, "b", 2)];
    let f = fixture(
        &d,
        nodes.clone(),
        pods.clone(),
        vec![old_rev.clone(), new_rev.clone()],
    );
    f.ctl.reconcile(&key()).await.expect("sync");
    assert_eq!(
        created_nodes(&f.fake),
        ["a"],
        "maxSurge 1: one node at a time"
    );
    assert!(
        f.fake.deleted_pod_names().is_empty(),
        "no old pod goes before its successor is up"
    );

    // The new pod on a is available: a's old pod goes; b waits, a still uses the surge.
    let mut with_new = pods.clone();
    with_new.push(pod(&d, &new_hash, "a", 3));
    let f = fixture(&d, nodes, with_new, vec![old_rev, new_rev]);
    f.ctl.reconcile(&key()).await.expect("sync");
    assert_eq!(f.fake.deleted_pod_names(), ["agent-a-1"]);
    assert!(created_nodes(&f.fake).is_empty());
}

#[tokio::test]
async fn on_delete_leaves_outdated_pods_and_status_counts_updated() {
    let old = ds("v1", json!({}));
    let (old_rev, old_hash) = revision(&old);
    let d = ds("v2", json!({"updateStrategy": {"type": "OnDelete"}}));
    let nodes = vec![
        node("a", json!({}), json!([])),
        node("b", json!({}), json!([])),
    ];
    let pods = vec![pod(&old, &old_hash, "a", 1), pod(&old, &old_hash, "b", 2)];
    let f = fixture(&d, nodes, pods, vec![old_rev]);
    f.ctl.reconcile(&key()).await.expect("sync");
    assert!(f.fake.deleted_pod_names().is_empty());
    let st = f.fake.last_status().expect("status");
    assert_eq!(st["desiredNumberScheduled"], 2);
    assert_eq!(st["currentNumberScheduled"], 2);
    assert_eq!(st["numberReady"], 2);
    assert_eq!(st["numberAvailable"], 2);
    assert!(
        st.get("updatedNumberScheduled")
            .is_none_or(|v| v.is_null() || v == 0)
    );
}

#[test]
fn percentages_round_up_and_both_zero_means_one_unavailable() {
    let d = ds(
        "v1",
        json!({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": 0}}}),
    );
    assert_eq!(surge_and_unavailable(&d, 10), (0, 3));
    let d = ds(
        "v1",
        json!({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 0}}}),
    );
    assert_eq!(surge_and_unavailable(&d, 10), (0, 1));
}

#[tokio::test]
async fn a_lagging_cache_does_not_create_a_second_pod_per_node() {
    let d = ds("v1", json!({}));
    let nodes = vec![
        node("a", json!({}), json!([])),
        node("b", json!({}), json!([])),
    ];
    let f = fixture(&d, nodes, vec![], vec![]);
    f.ctl.reconcile(&key()).await.expect("sync");
    f.ctl.reconcile(&key()).await.expect("sync");
    assert_eq!(created_nodes(&f.fake), ["a", "b"]);
}
