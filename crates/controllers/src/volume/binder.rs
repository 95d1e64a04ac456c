//! The PersistentVolume binder (upstream's `persistentvolume-binder`): binds claims to volumes,
//! keeps both phases, releases volumes whose claim is gone and applies their reclaim policy, and
//! runs pvc-protection / pv-protection (finalizers that hold a claim in use by a pod, or a bound
//! volume, until it is free).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    ObjectReference, PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimStatus,
    PersistentVolumeStatus, Pod,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::reflector::{ObjectRef, Store};

use super::matching::{self, NodeInfo};
use super::{
    ANN_BETA_STORAGE_PROVISIONER, ANN_BIND_COMPLETED, ANN_BOUND_BY_CONTROLLER, ANN_PROVISIONED_BY,
    ANN_SELECTED_NODE, ANN_STORAGE_PROVISIONER, PV_PROTECTION, PVC_PROTECTION,
};
use crate::Clock;
use crate::control::{EventRecorder, Result, object_reference};
use crate::queue::Key;
use crate::volume::control::VolumeControl;

/// The controller's name (events' source component).
pub const NAME: &str = "persistentvolume-binder";

/// The binder's state: caches, side effects and the volumes it wrote that the cache may not
/// show yet.
pub struct Binder {
    /// Writes and live reads.
    pub control: Arc<dyn VolumeControl>,
    /// Events on claims and volumes.
    pub events: Arc<dyn EventRecorder>,
    /// PersistentVolume cache.
    pub pvs: Store<PersistentVolume>,
    /// PersistentVolumeClaim cache.
    pub pvcs: Store<PersistentVolumeClaim>,
    /// StorageClass cache.
    pub classes: Store<StorageClass>,
    /// Pod cache (consumers of claims).
    pub pods: Store<Pod>,
    /// Wall clock (phase transition times).
    pub clock: Clock,
    /// Volumes this binder updated, newer than the cache may be (upstream's assume cache):
    /// without it a second claim synced before the watch catches up would pick the same PV
    /// and only lose at the server.
    pub assumed: Mutex<HashMap<String, PersistentVolume>>,
    /// When each (object uid, reason) event was last recorded: a waiting claim is synced on
    /// every resync and every related change, and our events are not aggregated, so a repeat
    /// within `EVENT_REPEAT` is dropped.
    pub recent_events: Mutex<HashMap<(String, String), jiff::Timestamp>>,
}

/// How long an identical waiting-claim event is not repeated.
pub const EVENT_REPEAT: Duration = Duration::from_secs(300);

fn rv_num(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> u64 {
    meta.resource_version
        .as_deref()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

fn annotation<'a>(
    meta: &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    key: &str,
) -> Option<&'a str> {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

fn set_annotation(
    meta: &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    key: &str,
    value: &str,
) {
    meta.annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(key.to_string(), value.to_string());
}

fn has_finalizer(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    f: &str,
) -> bool {
    meta.finalizers
        .as_ref()
        .is_some_and(|v| v.iter().any(|x| x == f))
}

/// The claim names a pod's volumes refer to.
pub fn claims_of_pod(pod: &Pod) -> Vec<String> {
    pod.spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .map(|vs| {
            vs.iter()
                .filter_map(|v| v.persistent_volume_claim.as_ref())
                .map(|c| c.claim_name.clone())
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `pod` still needs the claim `ns/name` (terminated pods do not).
pub fn pod_uses_claim(pod: &Pod, ns: &str, name: &str) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    pod.metadata.namespace.as_deref() == Some(ns)
        && !matches!(phase, Some("Succeeded" | "Failed"))
        && claims_of_pod(pod).iter().any(|c| c == name)
}

fn pv_phase(pv: &PersistentVolume) -> &str {
    pv.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn claim_phase(c: &PersistentVolumeClaim) -> &str {
    c.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn claim_key(c: &PersistentVolumeClaim) -> String {
    format!(
        "{}/{}",
        c.metadata.namespace.as_deref().unwrap_or(""),
        c.metadata.name.as_deref().unwrap_or("")
    )
}

impl Binder {
    /// The volumes as this binder knows them: the cache, overlaid with its own newer writes.
    pub fn volumes(&self) -> Vec<PersistentVolume> {
        let mut assumed = self.assumed.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<PersistentVolume> = Vec::new();
        for pv in self.pvs.state() {
            let name = pv.metadata.name.clone().unwrap_or_default();
            match assumed.get(&name) {
                Some(a) if rv_num(&a.metadata) > rv_num(&pv.metadata) => out.push(a.clone()),
                Some(_) => {
                    assumed.remove(&name);
                    out.push((*pv).clone());
                }
                None => out.push((*pv).clone()),
            }
        }
        out
    }

    fn volume(&self, name: &str) -> Option<PersistentVolume> {
        self.volumes()
            .into_iter()
            .find(|v| v.metadata.name.as_deref() == Some(name))
    }

    fn assume(&self, pv: &PersistentVolume) {
        if let Some(name) = &pv.metadata.name {
            self.assumed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(name.clone(), pv.clone());
        }
    }

    fn event_claim(&self, c: &PersistentVolumeClaim, type_: &str, reason: &str, msg: String) {
        let now = (self.clock)();
        let key = (
            c.metadata.uid.clone().unwrap_or_default(),
            reason.to_string(),
        );
        {
            let mut recent = self.recent_events.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(last) = recent.get(&key)
                && now.duration_since(*last).unsigned_abs() < EVENT_REPEAT
            {
                return;
            }
            // Forget claims long quiet, so the map does not grow without bound.
            recent.retain(|_, t| now.duration_since(*t).unsigned_abs() < EVENT_REPEAT);
            recent.insert(key, now);
        }
        self.events.record(&object_reference(c), type_, reason, msg);
    }

    fn event_volume(&self, pv: &PersistentVolume, type_: &str, reason: &str, msg: String) {
        self.events
            .record(&object_reference(pv), type_, reason, msg);
    }

    /// Sync one claim. Returns when to look again, if time alone can change the outcome.
    pub async fn sync_claim(&self, key: &Key) -> Result<Option<Duration>> {
        let Some(claim) = self
            .pvcs
            .get(&ObjectRef::new(&key.name).within(&key.namespace))
        else {
            return Ok(None);
        };
        let claim = (*claim).clone();
        if self.protect_claim(&claim).await? {
            return Ok(None);
        }
        if claim.metadata.deletion_timestamp.is_some() {
            return Ok(None);
        }
        let volume_name = claim
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.clone())
            .unwrap_or_default();
        if volume_name.is_empty() {
            self.sync_unbound_claim(claim).await
        } else if annotation(&claim.metadata, ANN_BIND_COMPLETED).is_none() {
            self.sync_prebound_claim(claim, &volume_name).await
        } else {
            self.sync_bound_claim(claim, &volume_name).await
        }
    }

    /// pvc-protection: add the finalizer to live claims; drop it from deleted claims no pod
    /// uses. Returns whether it wrote (the write's watch event syncs the claim again).
    async fn protect_claim(&self, claim: &PersistentVolumeClaim) -> Result<bool> {
        let meta = &claim.metadata;
        let rv = meta.resource_version.clone().unwrap_or_default();
        let ns = meta.namespace.clone().unwrap_or_default();
        let name = meta.name.clone().unwrap_or_default();
        let mut fins = meta.finalizers.clone().unwrap_or_default();
        if meta.deletion_timestamp.is_none() {
            if has_finalizer(meta, PVC_PROTECTION) {
                return Ok(false);
            }
            fins.push(PVC_PROTECTION.to_string());
            self.control
                .set_finalizers(Some(&ns), &name, &rv, &fins)
                .await?;
            return Ok(true);
        }
        if !has_finalizer(meta, PVC_PROTECTION) {
            return Ok(false);
        }
        // The cache may lag a pod created a moment ago; upstream asks the server too.
        let cached = self
            .pods
            .state()
            .iter()
            .any(|p| pod_uses_claim(p, &ns, &name));
        let in_use = cached
            || self
                .control
                .list_pods(&ns)
                .await?
                .iter()
                .any(|p| pod_uses_claim(p, &ns, &name));
        if in_use {
            tracing::debug!(claim = %format!("{ns}/{name}"), "claim in use; keeping pvc-protection");
            return Ok(true);
        }
        fins.retain(|f| f != PVC_PROTECTION);
        self.control
            .set_finalizers(Some(&ns), &name, &rv, &fins)
            .await?;
        Ok(true)
    }

    fn consumer_node(&self, claim: &PersistentVolumeClaim) -> Option<String> {
        let ns = claim.metadata.namespace.as_deref().unwrap_or("");
        let name = claim.metadata.name.as_deref().unwrap_or("");
        self.pods
            .state()
            .iter()
            .filter(|p| pod_uses_claim(p, ns, name))
            .find_map(|p| p.spec.as_ref().and_then(|s| s.node_name.clone()))
            .filter(|n| !n.is_empty())
    }

    async fn sync_unbound_claim(
        &self,
        mut claim: PersistentVolumeClaim,
    ) -> Result<Option<Duration>> {
        let class_name = matching::claim_class(&claim).to_string();
        let class = (!class_name.is_empty())
            .then(|| self.classes.get(&ObjectRef::new(&class_name)))
            .flatten();
        let delay = class
            .as_ref()
            .and_then(|c| c.volume_binding_mode.as_deref())
            == Some("WaitForFirstConsumer");
        let mut selected = annotation(&claim.metadata, ANN_SELECTED_NODE).map(str::to_string);
        if delay
            && selected.is_none()
            && let Some(node) = self.consumer_node(&claim)
        {
            // The scheduler's VolumeBinding sets this before it binds the pod, so this only
            // fires for a pod placed without it (spec.nodeName at creation), which upstream
            // leaves Pending. An annotation already set (by the scheduler) is never replaced.
            set_annotation(&mut claim.metadata, ANN_SELECTED_NODE, &node);
            claim = self.control.update_pvc(&claim).await?;
            selected = Some(node);
        }
        let labels = match &selected {
            Some(n) => {
                let mut l = self.control.node_labels(n).await?.unwrap_or_default();
                // Every kubelet sets it; simulated nodes may not.
                l.entry("kubernetes.io/hostname".into())
                    .or_insert_with(|| n.clone());
                l
            }
            None => BTreeMap::new(),
        };
        let node = selected.as_deref().map(|name| NodeInfo {
            name,
            labels: &labels,
        });
        let volumes = self.volumes();
        if let Some(pv) = matching::find_best_match(&claim, &volumes, delay, node.as_ref()) {
            let pv = pv.clone();
            return self.bind(claim, pv).await;
        }
        if delay && selected.is_none() {
            self.event_claim(
                &claim,
                "Normal",
                "WaitForFirstConsumer",
                "waiting for first consumer to be created before binding".into(),
            );
        } else if !class_name.is_empty() {
            match class {
                None => self.event_claim(
                    &claim,
                    "Warning",
                    "ProvisioningFailed",
                    format!("storageclass.storage.k8s.io \"{class_name}\" not found"),
                ),
                Some(sc) => {
                    let prov = sc.provisioner.clone();
                    if annotation(&claim.metadata, ANN_STORAGE_PROVISIONER) != Some(&prov) {
                        set_annotation(&mut claim.metadata, ANN_STORAGE_PROVISIONER, &prov);
                        set_annotation(&mut claim.metadata, ANN_BETA_STORAGE_PROVISIONER, &prov);
                        claim = self.control.update_pvc(&claim).await?;
                    }
                    self.event_claim(
                        &claim,
                        "Normal",
                        "ExternalProvisioning",
                        format!(
                            "Waiting for a volume to be created either by the external provisioner '{prov}' or manually by the system administrator. If volume creation is delayed, please verify that your external provisioner is running and correctly registered."
                        ),
                    );
                }
            }
        } else {
            self.event_claim(
                &claim,
                "Normal",
                "FailedBinding",
                "no persistent volumes available for this claim and no storage class is set".into(),
            );
        }
        self.set_claim_phase(claim, "Pending", None).await?;
        Ok(None)
    }

    async fn sync_prebound_claim(
        &self,
        claim: PersistentVolumeClaim,
        volume_name: &str,
    ) -> Result<Option<Duration>> {
        let Some(pv) = self.volume(volume_name) else {
            // Pre-bound to a volume that does not exist (yet): the volume's arrival re-queues.
            self.set_claim_phase(claim, "Pending", None).await?;
            return Ok(None);
        };
        let free = pv.spec.as_ref().is_none_or(|s| s.claim_ref.is_none());
        if free {
            if let Some(why) = matching::volume_mismatch(&claim, &pv) {
                self.event_claim(
                    &claim,
                    "Warning",
                    "VolumeMismatch",
                    format!("Cannot bind to requested volume \"{volume_name}\": {why}"),
                );
                self.set_claim_phase(claim, "Pending", None).await?;
                return Ok(None);
            }
            return self.bind(claim, pv).await;
        }
        if matching::is_bound_to_claim(&pv, &claim) {
            return self.bind(claim, pv).await;
        }
        self.event_claim(
            &claim,
            "Warning",
            "FailedBinding",
            format!("volume \"{volume_name}\" already bound to a different claim."),
        );
        self.set_claim_phase(claim, "Pending", None).await?;
        Ok(None)
    }

    async fn sync_bound_claim(
        &self,
        claim: PersistentVolumeClaim,
        volume_name: &str,
    ) -> Result<Option<Duration>> {
        let Some(pv) = self.volume(volume_name) else {
            if claim_phase(&claim) != "Lost" {
                self.event_claim(
                    &claim,
                    "Warning",
                    "ClaimLost",
                    "Bound claim has lost reference to PersistentVolume. Data on the volume is lost!"
                        .into(),
                );
            }
            self.set_claim_phase(claim, "Lost", None).await?;
            return Ok(None);
        };
        let claim_ref_uid = pv
            .spec
            .as_ref()
            .and_then(|s| s.claim_ref.as_ref())
            .map(|r| r.uid.clone().unwrap_or_default());
        match claim_ref_uid {
            None => self.bind(claim, pv).await,
            Some(uid) if Some(uid.as_str()) == claim.metadata.uid.as_deref() => {
                self.bind(claim, pv).await
            }
            Some(_) => {
                if claim_phase(&claim) != "Lost" {
                    self.event_claim(
                        &claim,
                        "Warning",
                        "ClaimMisbound",
                        "Two claims are bound to the same volume, this one is bound incorrectly"
                            .into(),
                    );
                }
                self.set_claim_phase(claim, "Lost", None).await?;
                Ok(None)
            }
        }
    }

    /// Bind both sides, each step only if not yet done, in upstream's order: volume claimRef,
    /// volume phase, claim volumeName and annotations, claim status. A lost race (conflict)
    /// surfaces as an error and the claim is retried from fresh caches.
    async fn bind(
        &self,
        mut claim: PersistentVolumeClaim,
        mut pv: PersistentVolume,
    ) -> Result<Option<Duration>> {
        let pv_name = pv.metadata.name.clone().unwrap_or_default();
        let ref_ok = pv
            .spec
            .as_ref()
            .and_then(|s| s.claim_ref.as_ref())
            .is_some_and(|r| {
                matching::is_bound_to_claim(&pv, &claim)
                    && r.uid.as_deref() == claim.metadata.uid.as_deref()
            });
        if !ref_ok {
            let spec = pv.spec.get_or_insert_with(Default::default);
            if spec.claim_ref.is_none() {
                set_annotation(&mut pv.metadata, ANN_BOUND_BY_CONTROLLER, "yes");
            }
            let spec = pv.spec.get_or_insert_with(Default::default);
            spec.claim_ref = Some(ObjectReference {
                kind: Some("PersistentVolumeClaim".into()),
                api_version: Some("v1".into()),
                namespace: claim.metadata.namespace.clone(),
                name: claim.metadata.name.clone(),
                uid: claim.metadata.uid.clone(),
                resource_version: claim.metadata.resource_version.clone(),
                field_path: None,
            });
            pv = self.control.update_pv(&pv).await?;
            self.assume(&pv);
            tracing::info!(volume = %pv_name, claim = %claim_key(&claim), "bound volume to claim");
        }
        if pv_phase(&pv) != "Bound" {
            pv = self.set_volume_phase(pv, "Bound", None).await?;
        }
        let completed = annotation(&claim.metadata, ANN_BIND_COMPLETED).is_some();
        let named = claim.spec.as_ref().and_then(|s| s.volume_name.as_deref()) == Some(&pv_name);
        if !completed || !named {
            if !named {
                set_annotation(&mut claim.metadata, ANN_BOUND_BY_CONTROLLER, "yes");
            }
            set_annotation(&mut claim.metadata, ANN_BIND_COMPLETED, "yes");
            claim.spec.get_or_insert_with(Default::default).volume_name = Some(pv_name.clone());
            claim = self.control.update_pvc(&claim).await?;
        }
        let spec = pv.spec.clone().unwrap_or_default();
        let want = PersistentVolumeClaimStatus {
            phase: Some("Bound".into()),
            capacity: spec.capacity.clone(),
            access_modes: spec.access_modes.clone(),
            ..claim.status.clone().unwrap_or_default()
        };
        if claim.status.as_ref() != Some(&want) {
            claim.status = Some(want);
            self.control.update_pvc_status(&claim).await?;
        }
        Ok(None)
    }

    async fn set_claim_phase(
        &self,
        mut claim: PersistentVolumeClaim,
        phase: &str,
        _message: Option<String>,
    ) -> Result<()> {
        if claim_phase(&claim) == phase {
            return Ok(());
        }
        let status = claim.status.get_or_insert_with(Default::default);
        status.phase = Some(phase.to_string());
        if phase != "Bound" {
            // Upstream clears what only a bound claim has.
            status.capacity = None;
            status.access_modes = None;
        }
        self.control.update_pvc_status(&claim).await?;
        Ok(())
    }

    async fn set_volume_phase(
        &self,
        mut pv: PersistentVolume,
        phase: &str,
        message: Option<String>,
    ) -> Result<PersistentVolume> {
        if pv_phase(&pv) == phase && pv.status.as_ref().and_then(|s| s.message.clone()) == message {
            return Ok(pv);
        }
        pv.status = Some(PersistentVolumeStatus {
            phase: Some(phase.to_string()),
            message,
            reason: None,
            last_phase_transition_time: Some(Time((self.clock)())),
        });
        let pv = self.control.update_pv_status(&pv).await?;
        self.assume(&pv);
        Ok(pv)
    }

    /// Sync one volume.
    pub async fn sync_volume(&self, name: &str) -> Result<Option<Duration>> {
        let Some(pv) = self.volume(name) else {
            return Ok(None);
        };
        if self.protect_volume(&pv).await? {
            return Ok(None);
        }
        let Some(claim_ref) = pv.spec.as_ref().and_then(|s| s.claim_ref.clone()) else {
            self.set_volume_phase(pv, "Available", None).await?;
            return Ok(None);
        };
        let ns = claim_ref.namespace.clone().unwrap_or_default();
        let cname = claim_ref.name.clone().unwrap_or_default();
        let ref_uid = claim_ref.uid.clone().unwrap_or_default();
        let claim = self
            .pvcs
            .get(&ObjectRef::new(&cname).within(&ns))
            .map(|c| (*c).clone());
        if ref_uid.is_empty() {
            // Reserved for a claim (pre-bound by an admin or a provisioner) that has not bound.
            if pv_phase(&pv) != "Bound" {
                self.set_volume_phase(pv, "Available", None).await?;
            }
            return Ok(None);
        }
        let claim = claim.filter(|c| c.metadata.uid.as_deref() == Some(ref_uid.as_str()));
        let Some(claim) = claim else {
            return self.release(pv).await;
        };
        let claim_volume = claim
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.clone())
            .unwrap_or_default();
        if claim_volume.is_empty() || claim_volume == name {
            // Bound, or bound from this side and the claim's sync finishes the other.
            self.set_volume_phase(pv, "Bound", None).await?;
            return Ok(None);
        }
        // The claim went to another volume: undo this side.
        let mut pv = pv;
        if annotation(&pv.metadata, ANN_BOUND_BY_CONTROLLER).is_some() {
            if let Some(s) = pv.spec.as_mut() {
                s.claim_ref = None;
            }
            if let Some(a) = pv.metadata.annotations.as_mut() {
                a.remove(ANN_BOUND_BY_CONTROLLER);
            }
        } else if let Some(r) = pv.spec.as_mut().and_then(|s| s.claim_ref.as_mut()) {
            r.uid = None;
            r.resource_version = None;
        }
        let pv = self.control.update_pv(&pv).await?;
        self.assume(&pv);
        self.set_volume_phase(pv, "Available", None).await?;
        Ok(None)
    }

    /// The claim is gone: Released, then the reclaim policy.
    async fn release(&self, pv: PersistentVolume) -> Result<Option<Duration>> {
        let name = pv.metadata.name.clone().unwrap_or_default();
        let pv = if matches!(pv_phase(&pv), "Released" | "Failed") {
            pv
        } else {
            tracing::info!(volume = %name, "claim gone; volume released");
            self.set_volume_phase(pv, "Released", None).await?
        };
        if pv_phase(&pv) == "Failed" {
            return Ok(None);
        }
        let policy = pv
            .spec
            .as_ref()
            .and_then(|s| s.persistent_volume_reclaim_policy.clone())
            .unwrap_or_else(|| "Retain".into());
        match policy.as_str() {
            "Delete" => {
                if annotation(&pv.metadata, ANN_PROVISIONED_BY).is_some()
                    || pv.spec.as_ref().is_some_and(|s| s.csi.is_some())
                {
                    // The volume's provisioner deletes the storage, then the object.
                    return Ok(None);
                }
                let msg = format!(
                    "error getting deleter volume plugin for volume \"{name}\": no deletable volume plugin matched"
                );
                self.event_volume(&pv, "Warning", "VolumeFailedDelete", msg.clone());
                self.set_volume_phase(pv, "Failed", Some(msg)).await?;
            }
            "Recycle" => {
                let msg = "No recycler plugin found for the volume!".to_string();
                self.event_volume(&pv, "Warning", "VolumeFailedRecycle", msg.clone());
                self.set_volume_phase(pv, "Failed", Some(msg)).await?;
            }
            _ => {}
        }
        Ok(None)
    }

    /// pv-protection: add the finalizer to live volumes; drop it from deleted volumes that are
    /// not Bound. Returns whether it wrote.
    async fn protect_volume(&self, pv: &PersistentVolume) -> Result<bool> {
        let meta = &pv.metadata;
        let rv = meta.resource_version.clone().unwrap_or_default();
        let name = meta.name.clone().unwrap_or_default();
        let mut fins = meta.finalizers.clone().unwrap_or_default();
        if meta.deletion_timestamp.is_none() {
            if has_finalizer(meta, PV_PROTECTION) {
                return Ok(false);
            }
            fins.push(PV_PROTECTION.to_string());
        } else {
            if !has_finalizer(meta, PV_PROTECTION) || pv_phase(pv) == "Bound" {
                return Ok(false);
            }
            fins.retain(|f| f != PV_PROTECTION);
        }
        self.control.set_finalizers(None, &name, &rv, &fins).await?;
        Ok(true)
    }
}
