//! Deployment controller unit tests: seed caches, reconcile once, assert intended writes.

use super::*;
use crate::control::{Action, Recorder};
use k8s_openapi::api::apps::v1::{
    DeploymentCondition, DeploymentSpec, DeploymentStrategy, ReplicaSetStatus,
    RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::runtime::reflector::store::Writer;
use kube::runtime::watcher::Event;

fn at(secs: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_second(1_700_000_000 + secs).expect("valid time")
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn template(image: &str) -> PodTemplateSpec {
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels(&[("app", "web")])),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "app".into(),
                image: Some(image.into()),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
    }
}

fn deployment(replicas: i32, image: &str) -> Deployment {
    Deployment {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("default".into()),
            uid: Some("d-uid".into()),
            generation: Some(2),
            ..ObjectMeta::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(labels(&[("app", "web")])),
                ..LabelSelector::default()
            },
            template: template(image),
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::Int(1)),
                    max_unavailable: Some(IntOrString::Int(1)),
                }),
            }),
            progress_deadline_seconds: Some(600),
            revision_history_limit: Some(10),
            ..DeploymentSpec::default()
        }),
        status: None,
    }
}

/// A set owned by `d` for `image`, at `replicas`, all available, created at `created`.
fn set(d: &Deployment, image: &str, replicas: i32, revision: i64, created: i64) -> ReplicaSet {
    let mut t = template(image);
    let h = compute_hash(&t, None);
    t.metadata
        .get_or_insert_with(Default::default)
        .labels
        .get_or_insert_with(BTreeMap::new)
        .insert(POD_TEMPLATE_HASH.into(), h.clone());
    ReplicaSet {
        metadata: ObjectMeta {
            name: Some(format!("web-{h}")),
            namespace: Some("default".into()),
            uid: Some(format!("uid-{h}")),
            labels: Some(labels(&[("app", "web"), (POD_TEMPLATE_HASH, &h)])),
            owner_references: Some(vec![controller_ref(d)]),
            creation_timestamp: Some(Time(at(created))),
            annotations: Some(labels(&[
                (REVISION, &revision.to_string()),
                (
                    replicas::DESIRED_REPLICAS,
                    &replicas::replicas(d).to_string(),
                ),
                (
                    replicas::MAX_REPLICAS,
                    &(replicas::replicas(d) + max_surge(d)).to_string(),
                ),
            ])),
            generation: Some(1),
            ..ObjectMeta::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(labels(&[("app", "web"), (POD_TEMPLATE_HASH, &h)])),
                ..LabelSelector::default()
            },
            template: Some(t),
            min_ready_seconds: None,
        }),
        status: Some(ReplicaSetStatus {
            replicas,
            ready_replicas: Some(replicas),
            available_replicas: Some(replicas),
            observed_generation: Some(1),
            ..ReplicaSetStatus::default()
        }),
    }
}

fn controller(d: Deployment, sets: Vec<ReplicaSet>, now: i64) -> DeploymentController<Recorder> {
    let mut dw: Writer<Deployment> = Writer::default();
    dw.apply_watcher_event(&Event::Apply(d));
    let mut sw: Writer<ReplicaSet> = Writer::default();
    for s in sets {
        sw.apply_watcher_event(&Event::Apply(s));
    }
    let pw: Writer<Pod> = Writer::default();
    DeploymentController {
        control: Arc::new(Recorder::new()),
        deployments: dw.as_reader(),
        sets: sw.as_reader(),
        pods: pw.as_reader(),
        clock: Arc::new(move || at(now)),
    }
}

fn key() -> Key {
    Key::new("default", "web")
}

#[tokio::test]
async fn a_new_deployment_creates_its_replica_set_at_full_size() {
    let d = deployment(3, "nginx:1");
    let c = controller(d.clone(), vec![], 0);
    c.reconcile(&key()).await.expect("sync");
    let writes = c.control.writes();
    let h = compute_hash(&template("nginx:1"), None);
    assert_eq!(
        writes[0],
        Action::CreateReplicaSet {
            name: format!("web-{h}"),
            replicas: 3
        }
    );
    assert!(writes.contains(&Action::SetDeploymentAnnotation {
        key: REVISION.into(),
        value: "1".into()
    }));
    assert_eq!(
        c.control.events(),
        [format!(
            "ScalingReplicaSet: Scaled up replica set web-{h} from 0 to 3"
        )]
    );
    let status = c.control.statuses().pop().expect("status");
    let reasons: Vec<&str> = status["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .filter_map(|c| c["reason"].as_str())
        .collect();
    assert!(reasons.contains(&"NewReplicaSetCreated"), "{status}");
    assert!(reasons.contains(&"MinimumReplicasUnavailable"), "{status}");
}

#[tokio::test]
async fn a_rolling_update_surges_by_max_surge_and_scales_old_down_by_max_unavailable() {
    let d = deployment(4, "nginx:2");
    let old = set(&d, "nginx:1", 4, 1, 0);
    let c = controller(d, vec![old.clone()], 100);
    c.reconcile(&key()).await.expect("sync");
    let writes: Vec<Action> = c
        .control
        .writes()
        .into_iter()
        .filter(|a| {
            matches!(
                a,
                Action::CreateReplicaSet { .. } | Action::UpdateReplicaSet { .. }
            )
        })
        .collect();
    let h2 = compute_hash(&template("nginx:2"), None);
    assert_eq!(
        writes,
        [
            // 4 desired + 1 surge - 4 existing = 1 new pod.
            Action::CreateReplicaSet {
                name: format!("web-{h2}"),
                replicas: 1
            },
            // 5 pods, 3 must stay available, 1 new one unavailable: 1 old pod may go.
            Action::UpdateReplicaSet {
                name: old.metadata.name.clone().unwrap_or_default(),
                replicas: 3
            },
        ]
    );
}

#[tokio::test]
async fn recreate_scales_old_sets_to_zero_before_creating_the_new_one() {
    let mut d = deployment(2, "nginx:2");
    d.spec.as_mut().expect("spec").strategy = Some(DeploymentStrategy {
        type_: Some("Recreate".into()),
        rolling_update: None,
    });
    let old = set(&d, "nginx:1", 2, 1, 0);
    let c = controller(d, vec![old.clone()], 100);
    c.reconcile(&key()).await.expect("sync");
    let writes = c.control.writes();
    assert!(writes.contains(&Action::UpdateReplicaSet {
        name: old.metadata.name.clone().unwrap_or_default(),
        replicas: 0
    }));
    assert!(
        !writes
            .iter()
            .any(|a| matches!(a, Action::CreateReplicaSet { .. })),
        "no new set while old pods run: {writes:?}"
    );
}

#[tokio::test]
async fn rollback_reuses_the_matching_set_with_a_new_revision() {
    // The template went back to nginx:1 (what `rollout undo` patches in).
    let d = deployment(2, "nginx:1");
    let first = set(&d, "nginx:1", 0, 1, 0);
    let second = set(&d, "nginx:2", 2, 2, 50);
    let c = controller(d, vec![first.clone(), second], 100);
    c.reconcile(&key()).await.expect("sync");
    let writes = c.control.writes();
    assert!(
        !writes
            .iter()
            .any(|a| matches!(a, Action::CreateReplicaSet { .. }))
    );
    assert!(writes.contains(&Action::SetDeploymentAnnotation {
        key: REVISION.into(),
        value: "3".into()
    }));
    let first_name = first.metadata.name.clone().unwrap_or_default();
    assert!(
        writes.contains(&Action::UpdateReplicaSet {
            name: first_name.clone(),
            replicas: 0
        }),
        "revision bump on the reused set: {writes:?}"
    );
    assert!(
        writes.contains(&Action::UpdateReplicaSet {
            name: first_name,
            replicas: 1
        }),
        "then it grows by maxSurge: {writes:?}"
    );
}

#[tokio::test]
async fn no_progress_within_the_deadline_is_progress_deadline_exceeded() {
    let mut d = deployment(2, "nginx:2");
    let old = set(&d, "nginx:1", 2, 1, 0);
    let mut new = set(&d, "nginx:2", 1, 2, 10);
    new.status = Some(ReplicaSetStatus {
        replicas: 1,
        observed_generation: Some(1),
        ..ReplicaSetStatus::default()
    });
    d.status = Some(DeploymentStatus {
        observed_generation: Some(2),
        replicas: Some(3),
        updated_replicas: Some(1),
        ready_replicas: Some(2),
        available_replicas: Some(2),
        unavailable_replicas: Some(1),
        conditions: Some(vec![DeploymentCondition {
            type_: "Progressing".into(),
            status: "True".into(),
            reason: Some(RS_UPDATED.into()),
            message: Some("ReplicaSet is progressing.".into()),
            last_update_time: Some(Time(at(0))),
            last_transition_time: Some(Time(at(0))),
        }]),
        ..DeploymentStatus::default()
    });
    let c = controller(d, vec![old, new], 700);
    c.reconcile(&key()).await.expect("sync");
    let status = c.control.statuses().pop().expect("status");
    let progressing = status["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Progressing").cloned())
        .expect("Progressing");
    assert_eq!(progressing["reason"], "ProgressDeadlineExceeded");
    assert_eq!(progressing["status"], "False");
}

#[tokio::test]
async fn a_complete_deployment_deletes_sets_beyond_the_history_limit_oldest_first() {
    let mut d = deployment(1, "nginx:4");
    d.spec.as_mut().expect("spec").revision_history_limit = Some(1);
    let sets = vec![
        set(&d, "nginx:1", 0, 1, 0),
        set(&d, "nginx:2", 0, 2, 10),
        set(&d, "nginx:3", 0, 3, 20),
        set(&d, "nginx:4", 1, 4, 30),
    ];
    d.status = Some(DeploymentStatus {
        observed_generation: Some(2),
        replicas: Some(1),
        updated_replicas: Some(1),
        available_replicas: Some(1),
        ..DeploymentStatus::default()
    });
    let names: Vec<String> = sets
        .iter()
        .map(|s| s.metadata.name.clone().unwrap_or_default())
        .collect();
    let c = controller(d, sets, 100);
    c.reconcile(&key()).await.expect("sync");
    let deleted: Vec<String> = c
        .control
        .writes()
        .into_iter()
        .filter_map(|a| match a {
            Action::DeleteReplicaSet { name } => Some(name),
            _ => None,
        })
        .collect();
    assert_eq!(deleted, [names[0].clone(), names[1].clone()]);
}

#[tokio::test]
async fn old_sets_scale_down_on_availability_no_higher_than_their_spec() {
    // The old set was just scaled 4 → 3, but its status still reports the 4 pods it had
    // before the ReplicaSet controller deleted one: only 3 of them can still be available.
    let d = deployment(4, "nginx:2");
    let mut old = set(&d, "nginx:1", 3, 1, 0);
    old.metadata.generation = Some(2);
    old.status = Some(ReplicaSetStatus {
        replicas: 4,
        ready_replicas: Some(4),
        available_replicas: Some(4),
        observed_generation: Some(2),
        ..ReplicaSetStatus::default()
    });
    let mut new = set(&d, "nginx:2", 2, 2, 10);
    new.status = Some(ReplicaSetStatus {
        replicas: 2,
        ready_replicas: Some(1),
        available_replicas: Some(1),
        observed_generation: Some(1),
        ..ReplicaSetStatus::default()
    });
    let old_name = old.metadata.name.clone().unwrap_or_default();
    let c = controller(d, vec![old, new], 100);
    c.reconcile(&key()).await.expect("sync");
    let scaled: Vec<i32> = c
        .control
        .writes()
        .into_iter()
        .filter_map(|a| match a {
            Action::UpdateReplicaSet { name, replicas } if name == old_name => Some(replicas),
            _ => None,
        })
        .collect();
    // 3 old + 1 new available at most; 3 must stay available: one old pod may go, not two.
    assert_eq!(scaled, [2]);
}
