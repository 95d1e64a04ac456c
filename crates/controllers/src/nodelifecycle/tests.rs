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

use zones::{EvictionRates, Transition, ZoneState, Zones, zone_state};

fn zoned(name: &str, zone: &str, ready: &str, taints: Vec<Taint>) -> Node {
    let mut n = node(ready, taints);
    n.metadata.name = Some(name.into());
    n.metadata.labels = Some(
        [(zones::ZONE_LABEL.to_string(), zone.to_string())]
            .into_iter()
            .collect(),
    );
    n
}

fn lease_of(name: &str, renew: i64) -> Lease {
    let mut l = lease(renew);
    l.metadata.name = Some(name.into());
    l
}

fn zoned_fixture(nodes: Vec<Node>, pods: Vec<Pod>) -> Fixture {
    let leases: Vec<Lease> = nodes
        .iter()
        .map(|n| lease_of(n.metadata.name.as_deref().unwrap_or_default(), 0))
        .collect();
    let f = fixture(node("True", vec![]), leases, pods);
    let mut c = f.c;
    c.nodes = store_of(nodes);
    Fixture { c, now: f.now }
}

fn no_execute_added(w: &Write) -> bool {
    w.verb == "patch"
        && w.body["spec"]["taints"]
            .as_array()
            .is_some_and(|ts| ts.iter().any(|t| t["effect"] == "NoExecute"))
}

fn unreachable_taints(since: i64) -> Vec<Taint> {
    ["NoSchedule", "NoExecute"]
        .into_iter()
        .map(|effect| Taint {
            key: UNREACHABLE.into(),
            effect: effect.into(),
            value: None,
            time_added: (effect == "NoExecute").then_some(Time(at(since))),
        })
        .collect()
}

#[test]
fn zone_states_follow_upstreams_thresholds() {
    assert_eq!(zone_state(0, 1, 0.55), ZoneState::FullDisruption);
    // 3 of 5 not Ready: 60 % is past 55 %.
    assert_eq!(zone_state(2, 3, 0.55), ZoneState::PartialDisruption);
    // More than two must be down, whatever the share.
    assert_eq!(zone_state(1, 2, 0.55), ZoneState::Normal);
    assert_eq!(zone_state(5, 3, 0.55), ZoneState::Normal);
    assert_eq!(zone_state(0, 0, 0.55), ZoneState::Normal);
}

#[test]
fn partial_disruption_slows_large_zones_and_stops_small_ones() {
    let mut z = Zones::new(EvictionRates::default());
    let mut add = |zone: &str, ready: usize, down: usize| {
        for i in 0..ready + down {
            z.observe(&format!("{zone}-{i}"), zone.into(), i < ready, false);
        }
    };
    add("large", 20, 40);
    add("small", 4, 6);
    add("down", 0, 3);
    add("fine", 10, 0);
    assert_eq!(z.handle_disruption(), Transition::None);
    assert_eq!(z.state("large"), ZoneState::PartialDisruption);
    assert_eq!(z.rate("large"), 0.01, "secondary rate above 50 nodes");
    assert_eq!(z.state("small"), ZoneState::PartialDisruption);
    assert_eq!(z.rate("small"), 0.0, "no tainting in a small zone");
    assert_eq!(z.state("down"), ZoneState::FullDisruption);
    assert_eq!(z.rate("down"), 0.1, "one zone down alone: the normal rate");
    assert_eq!(z.state("fine"), ZoneState::Normal);
    assert_eq!(z.rate("fine"), 0.1);
    assert_eq!(z.try_taint("small", at(0)), Err(None));
}

#[test]
fn the_zone_limiter_lets_one_node_through_per_interval() {
    let mut z = Zones::new(EvictionRates::default());
    z.observe("n1", "a".into(), false, false);
    z.observe("n2", "b".into(), true, false);
    assert_eq!(z.try_taint("a", at(0)), Ok(()));
    assert_eq!(z.try_taint("a", at(0)), Err(Some(Duration::from_secs(10))));
    assert_eq!(z.try_taint("a", at(5)), Err(Some(Duration::from_secs(5))));
    // Zones have their own buckets.
    assert_eq!(z.try_taint("b", at(5)), Ok(()));
    assert_eq!(z.try_taint("a", at(10)), Ok(()));
}

#[tokio::test]
async fn no_execute_taints_in_a_zone_are_added_at_the_eviction_rate() {
    let nodes = vec![
        zoned("a1", "a", "True", vec![]),
        zoned("a2", "a", "True", vec![]),
        zoned("b1", "b", "True", vec![]),
    ];
    let f = zoned_fixture(nodes, vec![]);
    for n in ["a1", "a2", "b1"] {
        f.c.reconcile(&Key::new("", n)).await.expect("sync");
    }
    f.now.store(41, Ordering::SeqCst);
    f.c.reconcile(&Key::new("", "a1")).await.expect("sync");
    let requeue = f.c.reconcile(&Key::new("", "a2")).await.expect("sync");
    let tainted = |f: &Fixture, n: &str| {
        f.c.writes
            .objects()
            .iter()
            .any(|w| w.name == n && no_execute_added(w))
    };
    assert!(tainted(&f, "a1"));
    assert!(!tainted(&f, "a2"), "one node per 10 s in zone a");
    let noschedule = f.c.writes.objects().into_iter().any(|w| {
        w.name == "a2" && w.verb == "patch" && w.body["spec"]["taints"][0]["effect"] == "NoSchedule"
    });
    assert!(noschedule, "NoSchedule is not rate limited");
    assert_eq!(requeue, Some(Duration::from_secs(10)));
    f.now.store(51, Ordering::SeqCst);
    f.c.reconcile(&Key::new("", "a2")).await.expect("sync");
    assert!(tainted(&f, "a2"));
}

#[tokio::test]
async fn when_every_zone_is_down_no_node_is_tainted_and_recovery_restarts_the_grace() {
    let nodes = vec![
        zoned("a1", "a", "True", unreachable_taints(0)),
        zoned("b1", "b", "True", vec![]),
    ];
    let mut f = zoned_fixture(nodes, vec![]);
    f.c.pods = store_of(vec![{
        let mut p = pod("plain", vec![]);
        p.spec.as_mut().expect("spec").node_name = Some("a1".into());
        p
    }]);
    for n in ["a1", "b1"] {
        f.c.reconcile(&Key::new("", n)).await.expect("sync");
    }
    f.now.store(41, Ordering::SeqCst);
    for n in ["a1", "b1"] {
        f.c.reconcile(&Key::new("", n)).await.expect("sync");
    }
    assert_eq!(f.c.handle_disruption(), Transition::EnterMasterDisruption);
    let before = f.c.writes.objects().len();
    f.c.reconcile(&Key::new("", "a1")).await.expect("sync");
    f.c.reconcile(&Key::new("", "b1")).await.expect("sync");
    let after: Vec<Write> = f.c.writes.objects().into_iter().skip(before).collect();
    let a1 = after
        .iter()
        .find(|w| w.name == "a1" && w.verb == "patch")
        .expect("a1's NoExecute taint removed");
    assert_eq!(
        a1.body["spec"]["taints"],
        json!([{"key": UNREACHABLE, "effect": "NoSchedule"}])
    );
    assert!(!after.iter().any(no_execute_added), "{after:?}");
    assert!(
        !after.iter().any(|w| w.verb == "delete"),
        "no eviction while every zone is down"
    );

    // b1 is back: master disruption ends and every node gets a fresh grace period.
    f.c.leases = store_of(vec![lease_of("a1", 0), lease_of("b1", 45)]);
    f.now.store(45, Ordering::SeqCst);
    f.c.reconcile(&Key::new("", "b1")).await.expect("sync");
    assert_eq!(f.c.handle_disruption(), Transition::ExitMasterDisruption);
    let requeue = f.c.reconcile(&Key::new("", "a1")).await.expect("sync");
    assert!(
        requeue.is_some_and(|d| d > Duration::from_secs(39)),
        "a1's grace restarted at 45 s: {requeue:?}"
    );
}
