//! ReplicaSet controller unit tests: seed caches, reconcile once, assert intended writes.

use super::*;
use crate::control::{Action, Recorder};
use k8s_openapi::api::apps::v1::ReplicaSetSpec;
use k8s_openapi::api::core::v1::{PodCondition, PodSpec, PodStatus, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::runtime::reflector::store::Writer;
use kube::runtime::watcher::Event;

pub(crate) fn at(secs: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_second(1_700_000_000 + secs).expect("valid time")
}

fn labels(app: &str) -> Option<std::collections::BTreeMap<String, String>> {
    Some([("app".to_string(), app.to_string())].into_iter().collect())
}

fn rs(replicas: i32) -> ReplicaSet {
    ReplicaSet {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("default".into()),
            uid: Some("rs-uid".into()),
            generation: Some(2),
            ..ObjectMeta::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: labels("web"),
                ..LabelSelector::default()
            },
            template: Some(PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: labels("web"),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec::default()),
            }),
            min_ready_seconds: None,
        }),
        status: None,
    }
}

fn pod(name: &str, created: i64, owned: bool) -> Pod {
    let mut p = pod_from_template(&rs(1));
    p.metadata.generate_name = None;
    p.metadata.name = Some(name.into());
    p.metadata.uid = Some(format!("uid-{name}"));
    p.metadata.creation_timestamp = Some(Time(at(created)));
    if !owned {
        p.metadata.owner_references = None;
    }
    p
}

fn ready(mut p: Pod, since: i64) -> Pod {
    p.spec.get_or_insert_with(Default::default).node_name = Some("n1".into());
    p.status = Some(PodStatus {
        phase: Some("Running".into()),
        conditions: Some(vec![PodCondition {
            type_: "Ready".into(),
            status: "True".into(),
            last_transition_time: Some(Time(at(since))),
            ..PodCondition::default()
        }]),
        ..PodStatus::default()
    });
    p
}

fn controller(sets: Vec<ReplicaSet>, pods: Vec<Pod>, now: i64) -> ReplicaSetController<Recorder> {
    let mut pw: Writer<Pod> = Writer::default();
    for p in pods {
        pw.apply_watcher_event(&Event::Apply(p));
    }
    let mut sw: Writer<ReplicaSet> = Writer::default();
    for s in sets {
        sw.apply_watcher_event(&Event::Apply(s));
    }
    ReplicaSetController {
        control: Arc::new(Recorder::new()),
        pods: pw.as_reader(),
        sets: sw.as_reader(),
        expectations: Expectations::new(),
        clock: Arc::new(move || at(now)),
    }
}

fn key() -> Key {
    Key::new("default", "web")
}

#[tokio::test]
async fn too_few_replicas_creates_owned_pods_from_the_template_in_slow_start_batches() {
    let c = controller(vec![rs(3)], vec![], 0);
    c.reconcile(&key()).await.expect("sync");
    let created = c.control.created_pods();
    assert_eq!(created.len(), 3);
    let p = &created[0];
    assert_eq!(p.metadata.generate_name.as_deref(), Some("web-"));
    let owner = &p.metadata.owner_references.as_ref().expect("owners")[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str()),
        ("ReplicaSet", "rs-uid")
    );
    assert_eq!(owner.controller, Some(true));
    assert_eq!(owner.block_owner_deletion, Some(true));
    assert_eq!(p.metadata.labels, labels("web"));
    assert_eq!(c.control.events().len(), 3);
    assert!(c.control.events()[0].starts_with("SuccessfulCreate: Created pod: web-"));
    // Expectations: a second sync before the cache sees the pods creates nothing.
    c.reconcile(&key()).await.expect("sync");
    assert_eq!(c.control.created_pods().len(), 3, "no double create");
}

#[tokio::test]
async fn a_refused_create_stops_the_slow_start_after_the_first_batch() {
    let mut c = controller(vec![rs(10)], vec![], 0);
    c.control = Arc::new(Recorder::failing_pod_creates_after(3));
    assert!(c.reconcile(&key()).await.is_err());
    // Batches 1 and 2 succeed (3 pods); the batch of 4 fails as a whole; 3 are never tried.
    assert_eq!(c.control.created_pods().len(), 3);
    let failed = c
        .control
        .events()
        .iter()
        .filter(|e| e.starts_with("FailedCreate"))
        .count();
    assert_eq!(failed, 4);
    assert!(
        !c.expectations.satisfied(&key()),
        "the 3 real creates are still expected"
    );
    for _ in 0..3 {
        c.expectations.creation_observed(&key());
    }
    assert!(
        c.expectations.satisfied(&key()),
        "failed and untried creates are not expected"
    );
}

#[tokio::test]
async fn scale_down_prefers_unscheduled_then_not_ready_then_newer() {
    let pods = vec![
        ready(pod("old-ready", 0, true), 10),
        ready(pod("new-ready", 50, true), 60),
        pod("pending", 30, true),
        {
            let mut p = ready(pod("scheduled-not-ready", 40, true), 0);
            p.status = Some(PodStatus {
                phase: Some("Running".into()),
                ..PodStatus::default()
            });
            p
        },
    ];
    let c = controller(vec![rs(1)], pods, 100);
    c.reconcile(&key()).await.expect("sync");
    let deleted: Vec<String> = c
        .control
        .writes()
        .into_iter()
        .filter_map(|a| match a {
            Action::DeletePod { name, .. } => Some(name),
            _ => None,
        })
        .collect();
    assert_eq!(deleted, ["pending", "scheduled-not-ready", "new-ready"]);
}

#[tokio::test]
async fn orphans_matching_the_selector_are_adopted_and_counted() {
    let c = controller(
        vec![rs(2)],
        vec![pod("orphan", 0, false), pod("mine", 0, true)],
        0,
    );
    c.reconcile(&key()).await.expect("sync");
    assert!(c.control.writes().contains(&Action::SetPodOwners {
        name: "orphan".into(),
        owners: vec!["web".into()],
    }));
    assert!(
        c.control.created_pods().is_empty(),
        "the adopted orphan fills a replica"
    );
}

#[tokio::test]
async fn status_counts_ready_and_available_with_min_ready_seconds() {
    let mut set = rs(3);
    set.spec.as_mut().expect("spec").min_ready_seconds = Some(30);
    let pods = vec![
        ready(pod("a", 0, true), 0),  // ready 100 s: available
        ready(pod("b", 0, true), 90), // ready 10 s: not yet available
        pod("c", 0, true),            // not ready
    ];
    let c = controller(vec![set], pods, 100);
    let requeue = c.reconcile(&key()).await.expect("sync");
    let status = c.control.statuses().pop().expect("status written");
    assert_eq!(status["replicas"], 3);
    assert_eq!(status["fullyLabeledReplicas"], 3);
    assert_eq!(status["readyReplicas"], 2);
    assert_eq!(status["availableReplicas"], 1);
    assert_eq!(status["observedGeneration"], 2);
    let after = requeue.expect("requeued for b to become available");
    assert!(
        after >= Duration::from_secs(20) && after <= Duration::from_secs(21),
        "{after:?}"
    );
}
