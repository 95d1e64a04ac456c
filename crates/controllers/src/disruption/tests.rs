//! Disruption controller unit tests: seed a budget, pods and workload scales, reconcile once,
//! assert the status patch.

use super::*;
use crate::writes::{RecordingWrites, store_of};
use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
use k8s_openapi::api::policy::v1::{PodDisruptionBudgetSpec, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};

fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + secs).expect("valid time")
}

fn pdb(min: Option<IntOrString>, max: Option<IntOrString>) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("default".into()),
            generation: Some(3),
            resource_version: Some("11".into()),
            ..ObjectMeta::default()
        },
        spec: Some(PodDisruptionBudgetSpec {
            min_available: min,
            max_unavailable: max,
            selector: Some(LabelSelector {
                match_labels: Some([("app".to_string(), "web".to_string())].into()),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        status: None,
    }
}

fn pod(name: &str, ready: bool) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            labels: Some([("app".to_string(), "web".to_string())].into()),
            owner_references: Some(vec![OwnerReference {
                api_version: "apps/v1".into(),
                kind: "ReplicaSet".into(),
                name: "web-abc".into(),
                uid: "rs-uid".into(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..ObjectMeta::default()
        },
        spec: None,
        status: Some(PodStatus {
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                ..PodCondition::default()
            }]),
            ..PodStatus::default()
        }),
    }
}

fn controller(
    budget: PodDisruptionBudget,
    pods: Vec<Pod>,
) -> DisruptionController<RecordingWrites> {
    let mut writes = RecordingWrites::new();
    // The pods' ReplicaSet belongs to a Deployment of 4 replicas.
    writes.workloads.insert(
        ("ReplicaSet".into(), "default".into(), "web-abc".into()),
        (3, Some(("Deployment".into(), "web".into()))),
    );
    writes.workloads.insert(
        ("Deployment".into(), "default".into(), "web".into()),
        (4, None),
    );
    DisruptionController {
        writes: Arc::new(writes),
        budgets: store_of(vec![budget]),
        pods: store_of(pods),
        clock: Arc::new(|| at(100)),
    }
}

fn key() -> Key {
    Key::new("default", "web")
}

async fn status_of(c: &DisruptionController<RecordingWrites>) -> serde_json::Value {
    c.reconcile(&key()).await.expect("sync");
    let w = c.writes.objects();
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!(
        (w[0].verb, w[0].kind),
        ("patch-status", Some(Kind::PodDisruptionBudget))
    );
    w[0].body["status"].clone()
}

fn three_ready_one_not() -> Vec<Pod> {
    vec![
        pod("a", true),
        pod("b", true),
        pod("c", true),
        pod("d", false),
    ]
}

#[tokio::test]
async fn min_available_int_counts_selected_pods() {
    let c = controller(pdb(Some(IntOrString::Int(2)), None), three_ready_one_not());
    let s = status_of(&c).await;
    assert_eq!(s["currentHealthy"], 3);
    assert_eq!(s["desiredHealthy"], 2);
    assert_eq!(s["expectedPods"], 4);
    assert_eq!(s["disruptionsAllowed"], 1);
    assert_eq!(s["observedGeneration"], 3);
    let cond = &s["conditions"][0];
    assert_eq!(
        (&cond["type"], &cond["status"], &cond["reason"]),
        (
            &json!("DisruptionAllowed"),
            &json!("True"),
            &json!("SufficientPods")
        )
    );
}

#[tokio::test]
async fn max_unavailable_uses_the_deployment_scale_and_rounds_percentages_up() {
    // 4 replicas (the Deployment's, not the ReplicaSet's 3), 30% → 2 may be unavailable.
    let c = controller(
        pdb(None, Some(IntOrString::String("30%".into()))),
        three_ready_one_not(),
    );
    let s = status_of(&c).await;
    assert_eq!(s["expectedPods"], 4);
    assert_eq!(s["desiredHealthy"], 2);
    assert_eq!(s["disruptionsAllowed"], 1);

    // minAvailable 100% of 4 with 3 healthy: nothing allowed.
    let c = controller(
        pdb(Some(IntOrString::String("100%".into())), None),
        three_ready_one_not(),
    );
    let s = status_of(&c).await;
    assert_eq!(s["desiredHealthy"], 4);
    assert_eq!(s["disruptionsAllowed"], 0);
    assert_eq!(s["conditions"][0]["reason"], "InsufficientPods");
    assert_eq!(s["conditions"][0]["status"], "False");
}

#[tokio::test]
async fn recently_evicted_pods_do_not_count_as_healthy_until_they_expire() {
    let mut budget = pdb(Some(IntOrString::Int(1)), None);
    budget.status = Some(PodDisruptionBudgetStatus {
        disrupted_pods: Some(
            [
                ("a".to_string(), Time(at(90))),
                ("b".to_string(), Time(at(-100))),
            ]
            .into(),
        ),
        ..PodDisruptionBudgetStatus::default()
    });
    let c = controller(budget, three_ready_one_not());
    c.reconcile(&key()).await.expect("sync");
    let body = &c.writes.objects()[0].body;
    let s = &body["status"];
    assert_eq!(s["currentHealthy"], 2, "a still counts as disrupted");
    assert!(s["disruptedPods"]["a"].is_string());
    assert!(s["disruptedPods"]["b"].is_null(), "b expired: removed");
    assert_eq!(body["metadata"]["resourceVersion"], "11");
}

#[tokio::test]
async fn pods_without_a_controller_fail_percentage_budgets() {
    let mut orphan = pod("x", true);
    orphan.metadata.owner_references = None;
    let c = controller(pdb(None, Some(IntOrString::Int(1))), vec![orphan]);
    let s = status_of(&c).await;
    assert_eq!(s["disruptionsAllowed"], 0);
    assert_eq!(s["conditions"][0]["reason"], "SyncFailed");
}
