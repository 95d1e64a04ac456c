//! StatefulSet controller unit tests: seed caches, reconcile once, assert creates, deletes,
//! claims, revisions and status.

use super::*;
use crate::history_fake::{SetAction, SetsRecorder};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::reflector::store::Writer;
use kube::runtime::watcher;
use serde_json::json;

fn now() -> jiff::Timestamp {
    jiff::Timestamp::from_second(1_800_000_000).expect("timestamp")
}

fn set(replicas: i32, extra_spec: serde_json::Value) -> StatefulSet {
    let mut spec = json!({
        "replicas": replicas,
        "serviceName": "web",
        "podManagementPolicy": "OrderedReady",
        "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
        "revisionHistoryLimit": 10,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "v1"}]}
        },
        "volumeClaimTemplates": [{
            "metadata": {"name": "www"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
        }]
    });
    if let (Some(s), Some(extra)) = (spec.as_object_mut(), extra_spec.as_object()) {
        for (k, v) in extra {
            s.insert(k.clone(), v.clone());
        }
    }
    serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "default", "uid": "sts-uid", "generation": 2},
        "spec": spec
    }))
    .expect("statefulset")
}

fn template_of_set(s: &StatefulSet) -> PodTemplateSpec {
    s.spec.as_ref().expect("spec").template.clone()
}

/// A pod of `s` with `ordinal` at `revision`, Running and Ready unless `ready` is false.
fn pod(s: &StatefulSet, ordinal: i32, revision: &str, ready: bool) -> Pod {
    let mut p = new_pod(s, &template_of_set(s), ordinal, revision);
    p.metadata.uid = Some(format!("uid-{ordinal}"));
    p.status = Some(
        serde_json::from_value(json!({
            "phase": if ready { "Running" } else { "Pending" },
            "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" },
                            "lastTransitionTime": "2020-01-01T00:00:00Z"}]
        }))
        .expect("status"),
    );
    p
}

struct Fixture {
    ctl: StatefulSetController<SetsRecorder>,
    fake: Arc<SetsRecorder>,
    revision: String,
}

/// Caches holding `s`, `pods`, and the revision of `s`'s present template (so it is current).
fn fixture(s: &StatefulSet, pods: Vec<Pod>, extra_revisions: Vec<ControllerRevision>) -> Fixture {
    let rev = history::new_revision(
        &s.metadata,
        controller_ref(s),
        &template_of_set(s),
        1,
        Some(0),
    );
    fixture_with(s, pods, [extra_revisions, vec![rev]].concat())
}

fn fixture_with(s: &StatefulSet, pods: Vec<Pod>, revisions: Vec<ControllerRevision>) -> Fixture {
    let mut sets = Writer::<StatefulSet>::new(());
    sets.apply_watcher_event(&watcher::Event::Apply(s.clone()));
    let mut pw = Writer::<Pod>::new(());
    for p in pods {
        pw.apply_watcher_event(&watcher::Event::Apply(p));
    }
    let mut rw = Writer::<ControllerRevision>::new(());
    let mut revision = String::new();
    for r in revisions {
        revision = r.metadata.name.clone().unwrap_or_default();
        rw.apply_watcher_event(&watcher::Event::Apply(r));
    }
    let fake = Arc::new(SetsRecorder::new());
    Fixture {
        ctl: StatefulSetController {
            control: fake.clone(),
            sets: sets.as_reader(),
            pods: pw.as_reader(),
            revisions: rw.as_reader(),
            expectations: Expectations::new(),
            clock: Arc::new(now),
        },
        fake,
        revision,
    }
}

fn key() -> Key {
    Key::new("default", "web")
}

#[tokio::test]
async fn ordered_ready_creates_only_the_first_missing_ordinal_with_its_claim() {
    let s = set(3, json!({}));
    let f = fixture(&s, vec![], vec![]);
    f.ctl.reconcile(&key()).await.expect("sync");
    assert_eq!(f.fake.created_pod_names(), ["web-0"]);
    assert!(f.fake.writes().contains(&SetAction::CreateClaim {
        name: "www-web-0".into()
    }));
    let created = &f.fake.created_pods()[0];
    let labels = created.metadata.labels.as_ref().expect("labels");
    assert_eq!(labels[POD_NAME_LABEL], "web-0");
    assert_eq!(labels[POD_INDEX_LABEL], "0");
    assert_eq!(labels[POD_REVISION_LABEL], f.revision);
    let spec = created.spec.as_ref().expect("spec");
    assert_eq!(spec.hostname.as_deref(), Some("web-0"));
    assert_eq!(spec.subdomain.as_deref(), Some("web"));
    let vol = spec
        .volumes
        .as_ref()
        .and_then(|v| v.iter().find(|v| v.name == "www"))
        .expect("www volume");
    assert_eq!(
        vol.persistent_volume_claim
            .as_ref()
            .map(|c| c.claim_name.as_str()),
        Some("www-web-0")
    );
    assert_eq!(
        f.fake.events(),
        ["SuccessfulCreate: create Pod web-0 in StatefulSet web successful"]
    );
}

#[tokio::test]
async fn ordered_ready_waits_for_the_previous_pod_to_be_ready() {
    let s = set(3, json!({}));
    let rev = history::new_revision(
        &s.metadata,
        controller_ref(&s),
        &template_of_set(&s),
        1,
        Some(0),
    );
    let name = rev.metadata.name.clone().expect("name");
    let f = fixture_with(&s, vec![pod(&s, 0, &name, false)], vec![rev.clone()]);
    f.ctl.reconcile(&key()).await.expect("sync");
    assert!(
        f.fake.created_pod_names().is_empty(),
        "web-1 before web-0 is ready"
    );
    let f = fixture_with(&s, vec![pod(&s, 0, &name, true)], vec![rev]);
    f.ctl.reconcile(&key()).await.expect("sync");
    assert_eq!(f.fake.created_pod_names(), ["web-1"]);
}

#[tokio::test]
async fn parallel_creates_every_missing_pod_at_once() {
    let s = set(3, json!({"podManagementPolicy": "Parallel"}));
    let f = fixture(&s, vec![], vec![]);
    f.ctl.reconcile(&key()).await.expect("sync");
    assert_eq!(f.fake.created_pod_names(), ["web-0", "web-1", "web-2"]);
}

#[tokio::test]
async fn scale_down_deletes_the_highest_ordinal_first_one_at_a_time() {
    let s = set(1, json!({}));
    let rev = history::new_revision(
        &s.metadata,
        controller_ref(&s),
        &template_of_set(&s),
        1,
        Some(0),
    );
    let name = rev.metadata.name.clone().expect("name");
    let pods = (0..3).map(|i| pod(&s, i, &name, true)).collect();
    let f = fixture_with(&s, pods, vec![rev.clone()]);
    f.ctl.reconcile(&key()).await.expect("sync");
    assert_eq!(f.fake.deleted_pod_names(), ["web-2"]);
    assert_eq!(
        f.fake.events(),
        ["SuccessfulDelete: delete Pod web-2 in StatefulSet web successful"]
    );
    // While web-2 terminates, web-1 stays.
    let mut terminating = pod(&s, 2, &name, true);
    terminating.metadata.deletion_timestamp = Some(Time(now()));
    let pods = vec![
        pod(&s, 0, &name, true),
        pod(&s, 1, &name, true),
        terminating,
    ];
    let f = fixture_with(&s, pods, vec![rev]);
    f.ctl.reconcile(&key()).await.expect("sync");
    assert!(f.fake.deleted_pod_names().is_empty());
}

#[tokio::test]
async fn rolling_update_replaces_from_the_highest_ordinal_down_to_the_partition() {
    let old = set(3, json!({}));
    let old_rev = history::new_revision(
        &old.metadata,
        controller_ref(&old),
        &template_of_set(&old),
        1,
        Some(0),
    );
    let old_name = old_rev.metadata.name.clone().expect("name");
    let mut s = set(
        3,
        json!({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 1}}}),
    );
    s.spec.as_mut().expect("spec").template = serde_json::from_value(json!({
        "metadata": {"labels": {"app": "web"}},
        "spec": {"containers": [{"name": "c", "image": "v2"}]}
    }))
    .expect("template");
    s.status = Some(StatefulSetStatus {
        current_revision: Some(old_name.clone()),
        current_replicas: Some(3),
        ..StatefulSetStatus::default()
    });
    let pods: Vec<Pod> = (0..3).map(|i| pod(&old, i, &old_name, true)).collect();
    let f = fixture_with(&s, pods.clone(), vec![old_rev.clone()]);
    f.ctl.reconcile(&key()).await.expect("sync");
    let writes = f.fake.writes();
    let new_rev = writes
        .iter()
        .find_map(|w| match w {
            SetAction::CreateRevision { name, revision } => Some((name.clone(), *revision)),
            _ => None,
        })
        .expect("a new revision");
    assert_eq!(new_rev.1, 2);
    assert_eq!(
        f.fake.deleted_pod_names(),
        ["web-2"],
        "highest ordinal first"
    );
    let status = f.fake.last_status().expect("status");
    assert_eq!(status["currentRevision"], old_name.as_str());
    assert_eq!(status["updateRevision"], new_rev.0.as_str());
    assert_eq!(status["observedGeneration"], 2);

    // web-2 recreated at the update revision; web-1 (>= partition 1) is next, web-0 never.
    let mut revs = vec![old_rev.clone()];
    let mut r2 = history::new_revision(
        &s.metadata,
        controller_ref(&s),
        &template_of_set(&s),
        2,
        Some(0),
    );
    r2.metadata.name = Some(new_rev.0.clone());
    revs.push(r2);
    let mut p2 = new_pod(&s, &template_of_set(&s), 2, &new_rev.0);
    p2.status = pods[2].status.clone();
    let f = fixture_with(
        &s,
        vec![pods[0].clone(), pods[1].clone(), p2.clone()],
        revs.clone(),
    );
    f.ctl.reconcile(&key()).await.expect("sync");
    assert_eq!(f.fake.deleted_pod_names(), ["web-1"]);
    let mut p1 = new_pod(&s, &template_of_set(&s), 1, &new_rev.0);
    p1.status = pods[1].status.clone();
    let f = fixture_with(&s, vec![pods[0].clone(), p1, p2], revs);
    f.ctl.reconcile(&key()).await.expect("sync");
    assert!(
        f.fake.deleted_pod_names().is_empty(),
        "web-0 is below the partition"
    );
    let status = f.fake.last_status().expect("status");
    assert_eq!(status["updatedReplicas"], 2);
    assert_eq!(status["currentReplicas"], 1);
}

#[tokio::test]
async fn a_missing_pod_below_the_partition_is_recreated_at_the_current_revision() {
    let old = set(2, json!({}));
    let old_rev = history::new_revision(
        &old.metadata,
        controller_ref(&old),
        &template_of_set(&old),
        1,
        Some(0),
    );
    let old_name = old_rev.metadata.name.clone().expect("name");
    let mut s = set(
        2,
        json!({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 2}}}),
    );
    s.spec.as_mut().expect("spec").template.spec = serde_json::from_value(json!({
        "containers": [{"name": "c", "image": "v2"}]
    }))
    .expect("spec");
    s.status = Some(StatefulSetStatus {
        current_revision: Some(old_name.clone()),
        ..StatefulSetStatus::default()
    });
    let f = fixture_with(&s, vec![], vec![old_rev]);
    f.ctl.reconcile(&key()).await.expect("sync");
    let created = &f.fake.created_pods()[0];
    assert_eq!(
        created.metadata.labels.as_ref().expect("labels")[POD_REVISION_LABEL],
        old_name
    );
    assert_eq!(
        created.spec.as_ref().expect("spec").containers[0]
            .image
            .as_deref(),
        Some("v1"),
        "made from the current revision's template"
    );
}

#[tokio::test]
async fn on_delete_never_deletes_outdated_pods() {
    let old = set(2, json!({}));
    let old_rev = history::new_revision(
        &old.metadata,
        controller_ref(&old),
        &template_of_set(&old),
        1,
        Some(0),
    );
    let old_name = old_rev.metadata.name.clone().expect("name");
    let mut s = set(2, json!({"updateStrategy": {"type": "OnDelete"}}));
    s.spec.as_mut().expect("spec").template.spec = serde_json::from_value(json!({
        "containers": [{"name": "c", "image": "v2"}]
    }))
    .expect("spec");
    let pods = (0..2).map(|i| pod(&old, i, &old_name, true)).collect();
    let f = fixture_with(&s, pods, vec![old_rev]);
    f.ctl.reconcile(&key()).await.expect("sync");
    assert!(f.fake.deleted_pod_names().is_empty());
    assert!(f.fake.created_pod_names().is_empty());
}

#[tokio::test]
async fn status_counts_and_completes_the_rollout_when_every_pod_is_updated_and_ready() {
    let s = set(2, json!({}));
    let rev = history::new_revision(
        &s.metadata,
        controller_ref(&s),
        &template_of_set(&s),
        1,
        Some(0),
    );
    let name = rev.metadata.name.clone().expect("name");
    let pods = (0..2).map(|i| pod(&s, i, &name, true)).collect();
    let f = fixture_with(&s, pods, vec![rev]);
    f.ctl.reconcile(&key()).await.expect("sync");
    let st = f.fake.last_status().expect("status");
    assert_eq!(st["replicas"], 2);
    assert_eq!(st["readyReplicas"], 2);
    assert_eq!(st["availableReplicas"], 2);
    assert_eq!(st["currentReplicas"], 2);
    assert_eq!(st["updatedReplicas"], 2);
    assert_eq!(st["currentRevision"], name.as_str());
    assert_eq!(st["updateRevision"], name.as_str());
    assert_eq!(st["collisionCount"], 0);
    assert!(f.fake.writes().is_empty(), "nothing to create or delete");
}

#[test]
fn ordinals_parse_only_for_members() {
    assert_eq!(ordinal_of("web", "web-0"), Some(0));
    assert_eq!(ordinal_of("web", "web-12"), Some(12));
    assert_eq!(ordinal_of("web", "web-x"), None);
    assert_eq!(ordinal_of("web", "webby-1"), None);
    assert_eq!(ordinal_of("my-web", "my-web-3"), Some(3));
    assert_eq!(ordinal_of("web", "web-01"), None);
}

#[test]
fn claims_get_the_selector_labels_and_an_owner_only_when_deleted_with_the_set() {
    let s = set(1, json!({}));
    let c = &claims_for(&s, 4)[0];
    assert_eq!(c.metadata.name.as_deref(), Some("www-web-4"));
    assert_eq!(c.metadata.labels.as_ref().expect("labels")["app"], "web");
    assert!(c.metadata.owner_references.is_none());
    let s = set(
        1,
        json!({"persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Delete", "whenScaled": "Retain"}}),
    );
    let c = &claims_for(&s, 0)[0];
    assert_eq!(
        c.metadata.owner_references.as_ref().expect("owner")[0].kind,
        "StatefulSet"
    );
}

#[tokio::test]
async fn a_lagging_cache_does_not_create_the_same_pod_twice() {
    let s = set(3, json!({"podManagementPolicy": "Parallel"}));
    let f = fixture(&s, vec![], vec![]);
    f.ctl.reconcile(&key()).await.expect("sync");
    // The cache has not seen the three creates yet: the next sync must wait for them.
    f.ctl.reconcile(&key()).await.expect("sync");
    assert_eq!(f.fake.created_pod_names(), ["web-0", "web-1", "web-2"]);
    for _ in 0..3 {
        f.ctl.expectations.creation_observed(&key());
    }
    f.ctl.reconcile(&key()).await.expect("sync");
    assert_eq!(
        f.fake.created_pod_names().len(),
        6,
        "once observed (here: never in the cache) the set acts again"
    );
}
