//! Binder and provisioner unit tests: caches seeded by hand, writes go to the in-memory fake
//! API (which enforces resourceVersions), events to the recording fake.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{
    ObjectReference, PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PersistentVolumeClaimVolumeSource, PersistentVolumeSpec, PersistentVolumeStatus, Pod, PodSpec,
    Volume, VolumeResourceRequirements,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
use kube::runtime::reflector::store::{Store, Writer};
use kube::runtime::watcher::Event;

use super::binder::Binder;
use super::control::FakeVolumeControl;
use super::provisioner::{self, Created, CsiController, Provisioner};
use super::*;
use crate::control::Recorder;
use crate::queue::Key;

fn store<K>(items: Vec<K>) -> Store<K>
where
    K: kube::Resource<DynamicType = ()> + Clone + 'static,
{
    let mut w: Writer<K> = Writer::default();
    w.apply_watcher_event(&Event::Init);
    for i in items {
        w.apply_watcher_event(&Event::InitApply(i));
    }
    w.apply_watcher_event(&Event::InitDone);
    w.as_reader()
}

fn pv(name: &str, size: &str, modes: &[&str], class: &str) -> PersistentVolume {
    PersistentVolume {
        metadata: ObjectMeta {
            name: Some(name.into()),
            uid: Some(format!("uid-{name}")),
            finalizers: Some(vec![PV_PROTECTION.into()]),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeSpec {
            capacity: Some([("storage".into(), Quantity(size.into()))].into()),
            access_modes: Some(modes.iter().map(|m| m.to_string()).collect()),
            storage_class_name: (!class.is_empty()).then(|| class.into()),
            persistent_volume_reclaim_policy: Some("Retain".into()),
            ..PersistentVolumeSpec::default()
        }),
        status: Some(PersistentVolumeStatus {
            phase: Some("Available".into()),
            ..PersistentVolumeStatus::default()
        }),
    }
}

fn pvc(name: &str, size: &str, modes: &[&str], class: Option<&str>) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            uid: Some(format!("uid-{name}")),
            finalizers: Some(vec![PVC_PROTECTION.into()]),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(modes.iter().map(|m| m.to_string()).collect()),
            resources: Some(VolumeResourceRequirements {
                requests: Some([("storage".into(), Quantity(size.into()))].into()),
                limits: None,
            }),
            storage_class_name: class.map(str::to_string),
            ..PersistentVolumeClaimSpec::default()
        }),
        status: None,
    }
}

fn class(name: &str, provisioner: &str, wffc: bool) -> StorageClass {
    StorageClass {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        provisioner: provisioner.into(),
        volume_binding_mode: Some(
            if wffc {
                "WaitForFirstConsumer"
            } else {
                "Immediate"
            }
            .into(),
        ),
        reclaim_policy: Some("Delete".into()),
        allow_volume_expansion: Some(true),
        ..StorageClass::default()
    }
}

fn pod_using(name: &str, claim: &str, node: Option<&str>) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            node_name: node.map(str::to_string),
            volumes: Some(vec![Volume {
                name: "data".into(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: claim.into(),
                    read_only: None,
                }),
                ..Volume::default()
            }]),
            ..PodSpec::default()
        }),
        status: None,
    }
}

struct World {
    api: Arc<FakeVolumeControl>,
    events: Arc<Recorder>,
    classes: Vec<StorageClass>,
    pods: Vec<Pod>,
}

impl World {
    fn new() -> World {
        World {
            api: Arc::new(FakeVolumeControl::new()),
            events: Arc::new(Recorder::new()),
            classes: vec![],
            pods: vec![],
        }
    }

    /// A binder whose caches show the fake API's current state.
    fn binder(&self) -> Binder {
        self.binder_with(self.api.pvs(), self.claims())
    }

    fn claims(&self) -> Vec<PersistentVolumeClaim> {
        ["a", "b", "c", "claim"]
            .iter()
            .filter_map(|n| self.api.pvc("default", n))
            .collect()
    }

    fn binder_with(&self, pvs: Vec<PersistentVolume>, pvcs: Vec<PersistentVolumeClaim>) -> Binder {
        Binder {
            control: self.api.clone(),
            events: self.events.clone(),
            pvs: store(pvs),
            pvcs: store(pvcs),
            classes: store(self.classes.clone()),
            pods: store(self.pods.clone()),
            clock: Arc::new(|| jiff::Timestamp::from_second(1_700_000_000).expect("time")),
            assumed: Mutex::new(Default::default()),
            recent_events: Mutex::new(Default::default()),
        }
    }

    /// Sync claims and volumes with fresh caches until nothing changes.
    async fn settle(&self) {
        for _ in 0..10 {
            let before = self.api.log().len();
            let b = self.binder();
            for c in self.claims() {
                let _ = b.sync_claim(&Key::of(&c.metadata)).await;
            }
            let b = self.binder();
            for v in self.api.pvs() {
                let _ = b
                    .sync_volume(v.metadata.name.as_deref().unwrap_or(""))
                    .await;
            }
            if self.api.log().len() == before {
                return;
            }
        }
    }
}

fn phase_of_claim(w: &World, name: &str) -> String {
    w.api
        .pvc("default", name)
        .and_then(|c| c.status.and_then(|s| s.phase))
        .unwrap_or_default()
}

fn volume_of_claim(w: &World, name: &str) -> Option<String> {
    w.api
        .pvc("default", name)
        .and_then(|c| c.spec.and_then(|s| s.volume_name))
}

fn phase_of_pv(w: &World, name: &str) -> String {
    w.api
        .pv(name)
        .and_then(|v| v.status.and_then(|s| s.phase))
        .unwrap_or_default()
}

#[tokio::test]
async fn binds_the_smallest_volume_that_fits_with_annotations_and_status() {
    let w = World::new();
    w.api.seed_pv(pv("big", "10Gi", &["ReadWriteOnce"], ""));
    w.api.seed_pv(pv("small", "1Gi", &["ReadWriteOnce"], ""));
    w.api.seed_pv(pv("fits", "2Gi", &["ReadWriteOnce"], ""));
    w.api
        .seed_pv(pv("wrong-class", "2Gi", &["ReadWriteOnce"], "fast"));
    w.api
        .seed_pv(pv("wrong-mode", "2Gi", &["ReadOnlyMany"], ""));
    w.api
        .seed_pvc(pvc("claim", "1500Mi", &["ReadWriteOnce"], Some("")));
    w.settle().await;
    assert_eq!(volume_of_claim(&w, "claim").as_deref(), Some("fits"));
    let c = w.api.pvc("default", "claim").expect("claim");
    let ann = c.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(ann.get(ANN_BIND_COMPLETED).map(String::as_str), Some("yes"));
    assert_eq!(
        ann.get(ANN_BOUND_BY_CONTROLLER).map(String::as_str),
        Some("yes")
    );
    let st = c.status.expect("status");
    assert_eq!(st.phase.as_deref(), Some("Bound"));
    assert_eq!(st.capacity.expect("capacity")["storage"].0, "2Gi");
    assert_eq!(st.access_modes, Some(vec!["ReadWriteOnce".to_string()]));
    let v = w.api.pv("fits").expect("pv");
    let r = v
        .spec
        .as_ref()
        .and_then(|s| s.claim_ref.clone())
        .expect("claimRef");
    assert_eq!(r.uid.as_deref(), Some("uid-claim"));
    assert_eq!(phase_of_pv(&w, "fits"), "Bound");
    assert_eq!(phase_of_pv(&w, "big"), "Available");
}

#[tokio::test]
async fn fewer_access_modes_win_before_capacity() {
    let w = World::new();
    w.api
        .seed_pv(pv("rwo-rox", "1Gi", &["ReadWriteOnce", "ReadOnlyMany"], ""));
    w.api.seed_pv(pv("rwo", "5Gi", &["ReadWriteOnce"], ""));
    w.api
        .seed_pvc(pvc("claim", "1Gi", &["ReadWriteOnce"], Some("")));
    w.settle().await;
    assert_eq!(volume_of_claim(&w, "claim").as_deref(), Some("rwo"));
}

#[tokio::test]
async fn label_selector_and_volume_mode_filter_volumes() {
    let w = World::new();
    let mut labelled = pv("labelled", "5Gi", &["ReadWriteOnce"], "");
    labelled.metadata.labels = Some([("tier".to_string(), "gold".to_string())].into());
    w.api.seed_pv(labelled);
    let mut block = pv("block", "1Gi", &["ReadWriteOnce"], "");
    block.spec.as_mut().expect("spec").volume_mode = Some("Block".into());
    w.api.seed_pv(block);
    w.api.seed_pv(pv("plain", "1Gi", &["ReadWriteOnce"], ""));
    let mut c = pvc("claim", "1Gi", &["ReadWriteOnce"], Some(""));
    c.spec.as_mut().expect("spec").selector = Some(LabelSelector {
        match_labels: Some([("tier".to_string(), "gold".to_string())].into()),
        ..LabelSelector::default()
    });
    w.api.seed_pvc(c);
    let mut b = pvc("b", "1Gi", &["ReadWriteOnce"], Some(""));
    b.spec.as_mut().expect("spec").volume_mode = Some("Block".into());
    w.api.seed_pvc(b);
    w.settle().await;
    assert_eq!(volume_of_claim(&w, "claim").as_deref(), Some("labelled"));
    assert_eq!(volume_of_claim(&w, "b").as_deref(), Some("block"));
    assert_eq!(phase_of_pv(&w, "plain"), "Available");
}

#[tokio::test]
async fn two_claims_racing_for_one_volume_only_one_wins() {
    let w = World::new();
    w.api.seed_pv(pv("only", "1Gi", &["ReadWriteOnce"], ""));
    w.api
        .seed_pvc(pvc("a", "1Gi", &["ReadWriteOnce"], Some("")));
    w.api
        .seed_pvc(pvc("b", "1Gi", &["ReadWriteOnce"], Some("")));
    // Two binders with the same stale caches (two workers, or a cache behind the server).
    let b1 = w.binder();
    let b2 = w.binder();
    let r1 = b1.sync_claim(&Key::new("default", "a")).await;
    let r2 = b2.sync_claim(&Key::new("default", "b")).await;
    assert!(r1.is_ok(), "first claim binds: {r1:?}");
    let e = r2.expect_err("second claim loses at the server");
    assert!(e.is_conflict(), "{e}");
    // The loser retries from fresh caches and finds nothing.
    w.settle().await;
    assert_eq!(volume_of_claim(&w, "a").as_deref(), Some("only"));
    assert_eq!(volume_of_claim(&w, "b"), None);
    assert_eq!(phase_of_claim(&w, "b"), "Pending");
    assert!(
        w.events
            .events()
            .iter()
            .any(|e| e == "FailedBinding: no persistent volumes available for this claim and no storage class is set"),
        "{:?}",
        w.events.events()
    );
}

#[tokio::test]
async fn one_binder_does_not_hand_its_just_bound_volume_to_a_second_claim() {
    let w = World::new();
    w.api.seed_pv(pv("only", "1Gi", &["ReadWriteOnce"], ""));
    w.api
        .seed_pvc(pvc("a", "1Gi", &["ReadWriteOnce"], Some("")));
    w.api
        .seed_pvc(pvc("b", "1Gi", &["ReadWriteOnce"], Some("")));
    let b = w.binder();
    b.sync_claim(&Key::new("default", "a"))
        .await
        .expect("a binds");
    // The cache still shows the volume free; the assume cache knows better.
    b.sync_claim(&Key::new("default", "b"))
        .await
        .expect("b waits");
    assert_eq!(volume_of_claim(&w, "b"), None);
    let updates = w
        .api
        .log()
        .iter()
        .filter(|l| *l == "update pv only")
        .count();
    assert_eq!(updates, 1, "{:?}", w.api.log());
}

#[tokio::test]
async fn prebinding_by_volume_name_and_by_claim_ref() {
    let w = World::new();
    w.api.seed_pv(pv("bigger", "1Gi", &["ReadWriteOnce"], ""));
    w.api.seed_pv(pv("named", "5Gi", &["ReadWriteOnce"], ""));
    let mut reserved = pv("reserved", "9Gi", &["ReadWriteOnce"], "");
    reserved.spec.as_mut().expect("spec").claim_ref = Some(ObjectReference {
        namespace: Some("default".into()),
        name: Some("b".into()),
        ..ObjectReference::default()
    });
    w.api.seed_pv(reserved);
    let mut a = pvc("a", "1Gi", &["ReadWriteOnce"], Some(""));
    a.spec.as_mut().expect("spec").volume_name = Some("named".into());
    w.api.seed_pvc(a);
    w.api
        .seed_pvc(pvc("b", "1Gi", &["ReadWriteOnce"], Some("")));
    // "c" would fit "reserved" best by modes but it is reserved for "b".
    w.api
        .seed_pvc(pvc("c", "2Gi", &["ReadWriteOnce"], Some("")));
    w.settle().await;
    assert_eq!(volume_of_claim(&w, "a").as_deref(), Some("named"));
    let a = w.api.pvc("default", "a").expect("a");
    let ann = a.metadata.annotations.unwrap_or_default();
    assert_eq!(ann.get(ANN_BIND_COMPLETED).map(String::as_str), Some("yes"));
    assert!(
        !ann.contains_key(ANN_BOUND_BY_CONTROLLER),
        "the user named the volume"
    );
    assert_eq!(volume_of_claim(&w, "b").as_deref(), Some("reserved"));
    let r = w.api.pv("reserved").expect("pv");
    assert!(
        !r.metadata
            .annotations
            .unwrap_or_default()
            .contains_key(ANN_BOUND_BY_CONTROLLER),
        "the admin reserved it"
    );
    assert_eq!(volume_of_claim(&w, "c"), None);
    assert_eq!(phase_of_claim(&w, "c"), "Pending");
}

#[tokio::test]
async fn volume_name_that_does_not_fit_is_a_mismatch() {
    let w = World::new();
    w.api.seed_pv(pv("tiny", "1Gi", &["ReadWriteOnce"], ""));
    let mut a = pvc("a", "5Gi", &["ReadWriteOnce"], Some(""));
    a.spec.as_mut().expect("spec").volume_name = Some("tiny".into());
    w.api.seed_pvc(a);
    w.settle().await;
    assert_eq!(phase_of_claim(&w, "a"), "Pending");
    assert!(w.events.events().iter().any(|e| e
        == "VolumeMismatch: Cannot bind to requested volume \"tiny\": requested PV is too small"));
}

#[tokio::test]
async fn retain_releases_and_delete_without_plugin_fails() {
    let w = World::new();
    w.api.seed_pv(pv("kept", "1Gi", &["ReadWriteOnce"], ""));
    let mut del = pv("gone", "1Gi", &["ReadWriteOnce"], "x");
    del.spec
        .as_mut()
        .expect("spec")
        .persistent_volume_reclaim_policy = Some("Delete".into());
    w.api.seed_pv(del);
    w.api
        .seed_pvc(pvc("a", "1Gi", &["ReadWriteOnce"], Some("")));
    w.api
        .seed_pvc(pvc("b", "1Gi", &["ReadWriteOnce"], Some("x")));
    w.settle().await;
    assert_eq!(volume_of_claim(&w, "a").as_deref(), Some("kept"));
    assert_eq!(volume_of_claim(&w, "b").as_deref(), Some("gone"));
    // Claims deleted: the volumes' syncs see their claims gone.
    let b = w.binder_with(w.api.pvs(), vec![]);
    b.sync_volume("kept").await.expect("sync");
    b.sync_volume("gone").await.expect("sync");
    assert_eq!(phase_of_pv(&w, "kept"), "Released");
    assert!(w.api.pv("kept").is_some());
    assert_eq!(phase_of_pv(&w, "gone"), "Failed");
    assert!(w.events.events().iter().any(|e| e.starts_with(
        "VolumeFailedDelete: error getting deleter volume plugin for volume \"gone\""
    )));
    // A Released volume is not offered to a new claim.
    w.api
        .seed_pvc(pvc("c", "1Gi", &["ReadWriteOnce"], Some("")));
    w.settle().await;
    assert_eq!(volume_of_claim(&w, "c"), None);
}

#[tokio::test]
async fn claim_recreated_with_same_name_does_not_inherit_the_volume() {
    let w = World::new();
    w.api.seed_pv(pv("v", "1Gi", &["ReadWriteOnce"], ""));
    w.api
        .seed_pvc(pvc("a", "1Gi", &["ReadWriteOnce"], Some("")));
    w.settle().await;
    let mut again = pvc("a", "1Gi", &["ReadWriteOnce"], Some(""));
    again.metadata.uid = Some("uid-a-2".into());
    let b = w.binder_with(w.api.pvs(), vec![again]);
    b.sync_volume("v").await.expect("sync");
    assert_eq!(phase_of_pv(&w, "v"), "Released");
}

#[tokio::test]
async fn wait_for_first_consumer_waits_then_uses_the_pods_node() {
    let mut w = World::new();
    w.classes
        .push(class("local-path", "local.csi.skiff.dev", true));
    w.api.seed_node(
        "n1",
        [("kubernetes.io/hostname".to_string(), "n1".to_string())].into(),
    );
    w.api
        .seed_pvc(pvc("claim", "1Gi", &["ReadWriteOnce"], Some("local-path")));
    w.settle().await;
    assert_eq!(phase_of_claim(&w, "claim"), "Pending");
    assert!(
        w.events.events().iter().any(|e| e
            == "WaitForFirstConsumer: waiting for first consumer to be created before binding")
    );
    let ann = |w: &World| {
        w.api
            .pvc("default", "claim")
            .and_then(|c| c.metadata.annotations)
            .unwrap_or_default()
    };
    assert!(!ann(&w).contains_key(ANN_STORAGE_PROVISIONER));
    // An unscheduled consumer is not enough.
    w.pods.push(pod_using("p", "claim", None));
    w.settle().await;
    // One binder syncing again and again records the waiting event once (not aggregated).
    let waits = |w: &World| {
        w.events
            .events()
            .iter()
            .filter(|e| e.starts_with("WaitForFirstConsumer"))
            .count()
    };
    let before = waits(&w);
    let b = w.binder();
    for _ in 0..3 {
        b.sync_claim(&Key::new("default", "claim"))
            .await
            .expect("sync");
    }
    assert_eq!(waits(&w) - before, 1);
    assert!(!ann(&w).contains_key(ANN_SELECTED_NODE));
    w.pods = vec![pod_using("p", "claim", Some("n1"))];
    w.settle().await;
    let a = ann(&w);
    assert_eq!(a.get(ANN_SELECTED_NODE).map(String::as_str), Some("n1"));
    assert_eq!(
        a.get(ANN_STORAGE_PROVISIONER).map(String::as_str),
        Some("local.csi.skiff.dev")
    );
    assert_eq!(
        a.get(ANN_BETA_STORAGE_PROVISIONER).map(String::as_str),
        Some("local.csi.skiff.dev")
    );
    assert!(w.events.events().iter().any(|e| e.starts_with("ExternalProvisioning: Waiting for a volume to be created either by the external provisioner 'local.csi.skiff.dev'")));
}

#[tokio::test]
async fn pvc_protection_holds_a_deleted_claim_until_no_pod_uses_it() {
    let mut w = World::new();
    let mut c = pvc("claim", "1Gi", &["ReadWriteOnce"], Some(""));
    c.metadata.finalizers = None;
    w.api.seed_pvc(c);
    w.settle().await;
    let fins = |w: &World| {
        w.api
            .pvc("default", "claim")
            .and_then(|c| c.metadata.finalizers)
            .unwrap_or_default()
    };
    assert_eq!(fins(&w), vec![PVC_PROTECTION.to_string()]);
    // Deleted while a pod uses it.
    let mut deleting = w.api.pvc("default", "claim").expect("claim");
    deleting.metadata.deletion_timestamp = Some(Time(
        jiff::Timestamp::from_second(1_700_000_000).expect("time"),
    ));
    w.api.seed_pvc(deleting);
    w.api.seed_pod(pod_using("p", "claim", Some("n1")));
    w.pods.push(pod_using("p", "claim", Some("n1")));
    w.settle().await;
    assert_eq!(fins(&w), vec![PVC_PROTECTION.to_string()]);
    // The pod finished: the claim may go.
    let mut done = pod_using("p", "claim", Some("n1"));
    done.status = Some(k8s_openapi::api::core::v1::PodStatus {
        phase: Some("Succeeded".into()),
        ..Default::default()
    });
    w.pods = vec![done];
    // The live list still shows the running pod: protection holds.
    w.settle().await;
    assert_eq!(fins(&w), vec![PVC_PROTECTION.to_string()]);
}

#[tokio::test]
async fn pvc_protection_releases_when_the_pod_is_gone() {
    let w = World::new();
    let mut c = pvc("claim", "1Gi", &["ReadWriteOnce"], Some(""));
    c.metadata.deletion_timestamp = Some(Time(
        jiff::Timestamp::from_second(1_700_000_000).expect("time"),
    ));
    w.api.seed_pvc(c);
    w.settle().await;
    assert_eq!(
        w.api
            .pvc("default", "claim")
            .and_then(|c| c.metadata.finalizers),
        None
    );
}

#[tokio::test]
async fn pv_protection_is_added_and_kept_while_bound() {
    let w = World::new();
    let mut v = pv("v", "1Gi", &["ReadWriteOnce"], "");
    v.metadata.finalizers = None;
    w.api.seed_pv(v);
    w.api
        .seed_pvc(pvc("a", "1Gi", &["ReadWriteOnce"], Some("")));
    w.settle().await;
    assert_eq!(
        w.api.pv("v").and_then(|v| v.metadata.finalizers),
        Some(vec![PV_PROTECTION.to_string()])
    );
    let mut deleting = w.api.pv("v").expect("pv");
    deleting.metadata.deletion_timestamp = Some(Time(
        jiff::Timestamp::from_second(1_700_000_000).expect("time"),
    ));
    w.api.seed_pv(deleting);
    w.settle().await;
    assert_eq!(phase_of_pv(&w, "v"), "Bound");
    assert_eq!(
        w.api.pv("v").and_then(|v| v.metadata.finalizers),
        Some(vec![PV_PROTECTION.to_string()])
    );
    // Claim gone → Released → protection lifts.
    let b = w.binder_with(w.api.pvs(), vec![]);
    b.sync_volume("v").await.expect("release");
    let b = w.binder_with(w.api.pvs(), vec![]);
    b.sync_volume("v").await.expect("unprotect");
    assert_eq!(w.api.pv("v").and_then(|v| v.metadata.finalizers), None);
}

/// A CSI controller fake: remembers calls, names volumes after the request.
#[derive(Default)]
struct FakeCsi {
    calls: Mutex<Vec<String>>,
}

#[async_trait]
impl CsiController for FakeCsi {
    fn driver(&self) -> &str {
        "local.csi.skiff.dev"
    }

    async fn create_volume(
        &self,
        name: &str,
        bytes: i64,
        _parameters: BTreeMap<String, String>,
        _access_modes: &[String],
        node: Option<&str>,
    ) -> Result<Created, provisioner::Error> {
        self.calls
            .lock()
            .expect("lock")
            .push(format!("create {name} {bytes} {node:?}"));
        Ok(Created {
            volume_id: name.to_string(),
            capacity: bytes,
            context: BTreeMap::new(),
            topology: node
                .map(|n| {
                    vec![
                        [(
                            "topology.local.csi.skiff.dev/node".to_string(),
                            n.to_string(),
                        )]
                        .into(),
                    ]
                })
                .unwrap_or_default(),
        })
    }

    async fn delete_volume(&self, volume_id: &str) -> Result<(), provisioner::Error> {
        self.calls
            .lock()
            .expect("lock")
            .push(format!("delete {volume_id}"));
        Ok(())
    }

    async fn expand_volume(&self, volume_id: &str, bytes: i64) -> Result<i64, provisioner::Error> {
        self.calls
            .lock()
            .expect("lock")
            .push(format!("expand {volume_id} {bytes}"));
        Ok(bytes)
    }
}

#[tokio::test]
async fn provisioner_creates_a_prebound_pv_on_the_selected_node_and_deletes_it_on_release() {
    let mut w = World::new();
    w.classes
        .push(class("local-path", "local.csi.skiff.dev", true));
    w.api.seed_node("n1", BTreeMap::new());
    w.api
        .seed_pvc(pvc("claim", "2Gi", &["ReadWriteOnce"], Some("local-path")));
    w.pods.push(pod_using("p", "claim", Some("n1")));
    w.settle().await;
    let csi = Arc::new(FakeCsi::default());
    let prov = |w: &World, claims: Vec<PersistentVolumeClaim>| Provisioner {
        control: w.api.clone(),
        events: w.events.clone(),
        csi: csi.clone(),
        pvcs: store(claims),
        pvs: store(w.api.pvs()),
        classes: store(w.classes.clone()),
    };
    prov(&w, w.claims())
        .sync_claim(&Key::new("default", "claim"))
        .await
        .expect("provision");
    let calls = csi.calls.lock().expect("lock").clone();
    assert_eq!(
        calls,
        vec![format!("create pvc-uid-claim {} Some(\"n1\")", 2i64 << 30)]
    );
    let v = w.api.pv("pvc-uid-claim").expect("pv created");
    let spec = v.spec.clone().expect("spec");
    assert_eq!(
        spec.csi.as_ref().map(|c| c.driver.as_str()),
        Some("local.csi.skiff.dev")
    );
    assert_eq!(
        spec.csi.as_ref().map(|c| c.volume_handle.as_str()),
        Some("pvc-uid-claim")
    );
    assert_eq!(spec.capacity.expect("cap")["storage"].0, "2Gi");
    assert_eq!(
        spec.persistent_volume_reclaim_policy.as_deref(),
        Some("Delete")
    );
    assert_eq!(
        spec.claim_ref.and_then(|r| r.uid).as_deref(),
        Some("uid-claim")
    );
    let term = &spec
        .node_affinity
        .and_then(|a| a.required)
        .expect("affinity")
        .node_selector_terms[0];
    let expr = &term.match_expressions.as_ref().expect("exprs")[0];
    assert_eq!(expr.key, "topology.local.csi.skiff.dev/node");
    assert_eq!(expr.values, Some(vec!["n1".to_string()]));
    assert!(
        w.events
            .events()
            .iter()
            .any(|e| e == "ProvisioningSucceeded: Successfully provisioned volume pvc-uid-claim")
    );
    // Provisioning again is a no-op once the PV exists.
    prov(&w, w.claims())
        .sync_claim(&Key::new("default", "claim"))
        .await
        .expect("again");
    assert_eq!(csi.calls.lock().expect("lock").len(), 1);
    // The binder binds the pre-bound volume.
    w.settle().await;
    assert_eq!(
        volume_of_claim(&w, "claim").as_deref(),
        Some("pvc-uid-claim")
    );
    assert_eq!(phase_of_pv(&w, "pvc-uid-claim"), "Bound");
    // Claim deleted: binder releases, the binder leaves deletion to the provisioner, which
    // deletes the storage and the object.
    let b = w.binder_with(w.api.pvs(), vec![]);
    b.sync_volume("pvc-uid-claim").await.expect("release");
    assert_eq!(phase_of_pv(&w, "pvc-uid-claim"), "Released");
    prov(&w, vec![])
        .sync_volume("pvc-uid-claim")
        .await
        .expect("delete");
    assert_eq!(
        csi.calls.lock().expect("lock").last().map(String::as_str),
        Some("delete pvc-uid-claim")
    );
    assert!(w.api.pv("pvc-uid-claim").is_none());
}

#[tokio::test]
async fn provisioner_waits_for_the_selected_node_and_expands_bound_claims() {
    let mut w = World::new();
    w.classes
        .push(class("local-path", "local.csi.skiff.dev", true));
    let mut c = pvc("claim", "1Gi", &["ReadWriteOnce"], Some("local-path"));
    c.metadata.annotations = Some(
        [(
            ANN_STORAGE_PROVISIONER.to_string(),
            "local.csi.skiff.dev".to_string(),
        )]
        .into(),
    );
    w.api.seed_pvc(c);
    let csi = Arc::new(FakeCsi::default());
    let p = Provisioner {
        control: w.api.clone(),
        events: w.events.clone(),
        csi: csi.clone(),
        pvcs: store(w.claims()),
        pvs: store(vec![]),
        classes: store(w.classes.clone()),
    };
    p.sync_claim(&Key::new("default", "claim"))
        .await
        .expect("sync");
    assert!(
        csi.calls.lock().expect("lock").is_empty(),
        "no node selected yet"
    );
    // A bound claim asking for more.
    let mut v = pv("pvc-uid-claim", "1Gi", &["ReadWriteOnce"], "local-path");
    v.metadata.annotations = Some(
        [(
            ANN_PROVISIONED_BY.to_string(),
            "local.csi.skiff.dev".to_string(),
        )]
        .into(),
    );
    v.spec.as_mut().expect("spec").csi =
        Some(k8s_openapi::api::core::v1::CSIPersistentVolumeSource {
            driver: "local.csi.skiff.dev".into(),
            volume_handle: "pvc-uid-claim".into(),
            ..Default::default()
        });
    w.api.seed_pv(v);
    let mut bound = w.api.pvc("default", "claim").expect("claim");
    bound.spec.as_mut().expect("spec").volume_name = Some("pvc-uid-claim".into());
    bound.spec.as_mut().expect("spec").resources = Some(VolumeResourceRequirements {
        requests: Some([("storage".into(), Quantity("3Gi".into()))].into()),
        limits: None,
    });
    bound.status = Some(k8s_openapi::api::core::v1::PersistentVolumeClaimStatus {
        phase: Some("Bound".into()),
        capacity: Some([("storage".into(), Quantity("1Gi".into()))].into()),
        ..Default::default()
    });
    w.api.seed_pvc(bound);
    let p = Provisioner {
        control: w.api.clone(),
        events: w.events.clone(),
        csi: csi.clone(),
        pvcs: store(w.claims()),
        pvs: store(w.api.pvs()),
        classes: store(w.classes.clone()),
    };
    p.sync_claim(&Key::new("default", "claim"))
        .await
        .expect("expand");
    assert_eq!(
        csi.calls.lock().expect("lock").clone(),
        vec![format!("expand pvc-uid-claim {}", 3i64 << 30)]
    );
    let pv_cap = w
        .api
        .pv("pvc-uid-claim")
        .and_then(|v| v.spec)
        .and_then(|s| s.capacity)
        .expect("cap");
    assert_eq!(pv_cap["storage"].0, "3Gi");
    let st = w
        .api
        .pvc("default", "claim")
        .and_then(|c| c.status)
        .expect("status");
    assert_eq!(st.capacity.expect("cap")["storage"].0, "3Gi");
}
