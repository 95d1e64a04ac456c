//! Node lifecycle unit tests: seed nodes, leases and pods, move the injected clock, reconcile,
//! assert the status, taint and eviction writes.

use super::*;
use crate::writes::{RecordingWrites, Write, store_of};
use k8s_openapi::api::coordination::v1::LeaseSpec;
use k8s_openapi::api::core::v1::{NodeSpec, NodeStatus, PodCondition, PodSpec, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use std::sync::atomic::{AtomicI64, Ordering};

fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + secs).expect("valid time")
}

fn node(ready: &str, taints: Vec<Taint>) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some("n1".into()),
            resource_version: Some("5".into()),
            ..ObjectMeta::default()
        },
        spec: Some(NodeSpec {
            taints: (!taints.is_empty()).then_some(taints),
            ..NodeSpec::default()
        }),
        status: Some(NodeStatus {
            conditions: Some(vec![
                NodeCondition {
                    type_: "Ready".into(),
                    status: ready.into(),
                    reason: Some("KubeletReady".into()),
                    last_heartbeat_time: Some(Time(at(0))),
                    last_transition_time: Some(Time(at(0))),
                    message: None,
                },
                NodeCondition {
                    type_: "MemoryPressure".into(),
                    status: "False".into(),
                    ..NodeCondition::default()
                },
            ]),
            ..NodeStatus::default()
        }),
    }
}

fn lease(renew: i64) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some("n1".into()),
            namespace: Some(LEASE_NAMESPACE.into()),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            renew_time: Some(MicroTime(at(renew))),
            ..LeaseSpec::default()
        }),
    }
}

fn pod(name: &str, tolerations: Vec<Toleration>) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            uid: Some(format!("uid-{name}")),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            node_name: Some("n1".into()),
            tolerations: Some(tolerations),
            ..PodSpec::default()
        }),
        status: Some(PodStatus {
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: "True".into(),
                ..PodCondition::default()
            }]),
            ..PodStatus::default()
        }),
    }
}

fn unreachable_for(seconds: Option<i64>) -> Toleration {
    Toleration {
        key: Some(UNREACHABLE.into()),
        operator: Some("Exists".into()),
        effect: Some("NoExecute".into()),
        toleration_seconds: seconds,
        value: None,
    }
}

struct Fixture {
    c: NodeLifecycleController<RecordingWrites>,
    now: Arc<AtomicI64>,
}

fn fixture(node: Node, leases: Vec<Lease>, pods: Vec<Pod>) -> Fixture {
    let now = Arc::new(AtomicI64::new(0));
    let n = now.clone();
    let c = NodeLifecycleController::new(
        Arc::new(RecordingWrites::new()),
        store_of(vec![node]),
        store_of(leases),
        store_of(pods),
        Arc::new(move || at(n.load(Ordering::SeqCst))),
        Timing {
            grace: Duration::from_secs(40),
            startup_grace: Duration::from_secs(60),
            monitor_period: Duration::from_secs(5),
        },
    );
    Fixture { c, now }
}

fn key() -> Key {
    Key::new("", "n1")
}

fn node_writes(w: &[Write]) -> Vec<&Write> {
    w.iter().filter(|w| w.kind == Some(Kind::Node)).collect()
}

#[tokio::test]
async fn a_node_silent_past_the_grace_period_goes_unknown_and_gets_unreachable_taints() {
    let f = fixture(node("True", vec![]), vec![lease(0)], vec![]);
    let requeue = f.c.reconcile(&key()).await.expect("sync");
    assert!(
        f.c.writes.objects().is_empty(),
        "fresh heartbeat: nothing to do"
    );
    assert!(
        requeue.is_some_and(|d| d > Duration::from_secs(39)),
        "rechecked at the deadline"
    );

    f.now.store(41, Ordering::SeqCst);
    f.c.reconcile(&key()).await.expect("sync");
    let w = f.c.writes.objects();
    let nw = node_writes(&w);
    assert_eq!(nw.len(), 2, "{w:?}");
    assert_eq!(nw[0].verb, "patch-status");
    let conds = nw[0].body["status"]["conditions"]
        .as_array()
        .expect("conditions");
    for c in conds {
        assert_eq!(c["status"], "Unknown", "{c}");
        assert_eq!(c["reason"], "NodeStatusUnknown");
        assert_eq!(c["message"], "Kubelet stopped posting node status.");
    }
    assert_eq!(nw[0].body["metadata"]["resourceVersion"], "5");
    assert_eq!(nw[1].verb, "patch");
    let taints = &nw[1].body["spec"]["taints"];
    assert_eq!(taints[0]["key"], UNREACHABLE);
    assert_eq!(taints[0]["effect"], "NoSchedule");
    assert!(taints[0]["timeAdded"].is_null());
    assert_eq!(taints[1]["key"], UNREACHABLE);
    assert_eq!(taints[1]["effect"], "NoExecute");
    assert!(taints[1]["timeAdded"].is_string());
    assert_eq!(
        f.c.writes.events(),
        ["NodeNotReady: Node n1 status is now: NodeNotReady"]
    );
}

#[tokio::test]
async fn lease_renewals_keep_a_node_healthy_without_status_updates() {
    let mut f = fixture(node("True", vec![]), vec![lease(0)], vec![]);
    f.c.reconcile(&key()).await.expect("sync");
    // The lease renews at 30 s; at 60 s the node's status is 60 s old but the lease is not.
    f.c.leases = store_of(vec![lease(30)]);
    f.now.store(30, Ordering::SeqCst);
    f.c.reconcile(&key()).await.expect("sync");
    f.now.store(60, Ordering::SeqCst);
    f.c.reconcile(&key()).await.expect("sync");
    assert!(f.c.writes.objects().is_empty());
    f.now.store(71, Ordering::SeqCst);
    f.c.reconcile(&key()).await.expect("sync");
    assert!(
        !f.c.writes.objects().is_empty(),
        "41 s after the last renewal"
    );
}

#[tokio::test]
async fn ready_false_gets_not_ready_taints_and_recovery_removes_them() {
    let f = fixture(node("False", vec![]), vec![lease(0)], vec![]);
    f.c.reconcile(&key()).await.expect("sync");
    let w = f.c.writes.objects();
    let taints = &w[0].body["spec"]["taints"];
    assert_eq!(taints.as_array().map(Vec::len), Some(2));
    assert!(
        taints
            .as_array()
            .into_iter()
            .flatten()
            .all(|t| t["key"] == NOT_READY)
    );

    let other = Taint {
        key: "dedicated".into(),
        value: Some("gpu".into()),
        effect: "NoSchedule".into(),
        time_added: None,
    };
    let tainted = vec![
        other.clone(),
        Taint {
            key: UNREACHABLE.into(),
            effect: "NoExecute".into(),
            value: None,
            time_added: Some(Time(at(0))),
        },
    ];
    let f = fixture(node("True", tainted), vec![lease(0)], vec![]);
    f.c.reconcile(&key()).await.expect("sync");
    let w = f.c.writes.objects();
    assert_eq!(w.len(), 1);
    assert_eq!(
        w[0].body["spec"]["taints"],
        json!([{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]),
        "ours removed, others kept"
    );
}

#[tokio::test]
async fn the_taint_manager_evicts_intolerant_pods_now_and_tolerating_ones_after_their_seconds() {
    let taints = vec![Taint {
        key: UNREACHABLE.into(),
        effect: "NoExecute".into(),
        value: None,
        time_added: Some(Time(at(0))),
    }];
    let mut n = node("Unknown", taints);
    // The node is already Unknown: only the pods are at stake.
    for c in n
        .status
        .as_mut()
        .and_then(|s| s.conditions.as_mut())
        .into_iter()
        .flatten()
    {
        c.status = "Unknown".into();
    }
    let f = fixture(
        n,
        vec![lease(0)],
        vec![
            pod("plain", vec![]),
            pod("patient", vec![unreachable_for(Some(2))]),
            pod("forever", vec![unreachable_for(None)]),
        ],
    );
    f.now.store(1, Ordering::SeqCst);
    let requeue = f.c.reconcile(&key()).await.expect("sync");
    let deleted = |f: &Fixture| -> Vec<String> {
        f.c.writes
            .objects()
            .into_iter()
            .filter(|w| w.verb == "delete")
            .map(|w| w.name)
            .collect()
    };
    assert_eq!(deleted(&f), ["plain"]);
    assert_eq!(
        requeue,
        Some(Duration::from_secs(1)),
        "patient is due 2 s after the taint"
    );
    assert!(
        f.c.writes
            .events()
            .contains(&"TaintManagerEviction: Marking for deletion Pod default/plain".to_string())
    );
    let disruption =
        f.c.writes
            .objects()
            .into_iter()
            .find(|w| {
                w.name == "plain"
                    && w.verb == "patch-status"
                    && w.body["status"]["conditions"]
                        .as_array()
                        .is_some_and(|cs| cs.iter().any(|c| c["type"] == "DisruptionTarget"))
            })
            .expect("DisruptionTarget condition");
    let cond = disruption.body["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "DisruptionTarget").cloned())
        .expect("condition");
    assert_eq!(cond["reason"], "DeletionByTaintManager");

    f.now.store(2, Ordering::SeqCst);
    f.c.reconcile(&key()).await.expect("sync");
    // (The fake cache still holds `plain`, so it is asked again; a real one shows it deleting.)
    let mut all = deleted(&f);
    all.sort();
    assert_eq!(all, ["patient", "plain", "plain"]);
    assert!(!deleted(&f).contains(&"forever".to_string()));
}

#[tokio::test]
async fn pods_on_an_unknown_node_are_marked_not_ready() {
    let f = fixture(
        node("True", vec![]),
        vec![lease(0)],
        vec![pod("p", vec![unreachable_for(None)])],
    );
    f.c.reconcile(&key()).await.expect("sync");
    f.now.store(41, Ordering::SeqCst);
    f.c.reconcile(&key()).await.expect("sync");
    let w = f.c.writes.objects();
    let pod_status = w
        .iter()
        .find(|w| w.kind == Some(Kind::Pod) && w.verb == "patch-status")
        .expect("pod status written");
    assert_eq!(pod_status.name, "p");
    assert_eq!(pod_status.body["status"]["conditions"][0]["type"], "Ready");
    assert_eq!(
        pod_status.body["status"]["conditions"][0]["status"],
        "False"
    );
}

#[test]
fn tolerations_match_as_upstream() {
    let taint = Taint {
        key: UNREACHABLE.into(),
        effect: "NoExecute".into(),
        value: None,
        time_added: None,
    };
    let exists_all = Toleration {
        operator: Some("Exists".into()),
        ..Toleration::default()
    };
    let wrong_effect = Toleration {
        key: Some(UNREACHABLE.into()),
        operator: Some("Exists".into()),
        effect: Some("NoSchedule".into()),
        ..Toleration::default()
    };
    assert!(tolerates(&exists_all, &taint));
    assert!(!tolerates(&wrong_effect, &taint));
    assert!(tolerates(&unreachable_for(Some(5)), &taint));
    let p = pod(
        "p",
        vec![unreachable_for(Some(30)), unreachable_for(Some(5))],
    );
    assert_eq!(
        toleration_time(&p, &[&taint]),
        Some(Some(Duration::from_secs(5)))
    );
    assert_eq!(toleration_time(&pod("q", vec![]), &[&taint]), None);
}

#[tokio::test]
async fn pods_of_a_vanished_node_are_deleted_at_once() {
    let mut f = fixture(node("True", vec![]), vec![], vec![pod("p", vec![])]);
    f.c.nodes = store_of(vec![]);
    f.c.reconcile(&key()).await.expect("sync");
    let w = f.c.writes.objects();
    let verbs: Vec<(&str, &str)> = w.iter().map(|w| (w.verb, w.name.as_str())).collect();
    assert_eq!(verbs, [("patch-status", "p"), ("force-delete", "p")]);
    let cond = &w[0].body["status"]["conditions"][1];
    assert_eq!(cond["type"], "DisruptionTarget");
    assert_eq!(cond["reason"], "DeletionByPodGC");
}
