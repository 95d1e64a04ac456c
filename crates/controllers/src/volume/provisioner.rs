//! The CSI provisioner (upstream's external-provisioner, in process): for claims the binder
//! handed to a CSI driver (`volume.kubernetes.io/storage-provisioner`), calls CreateVolume
//! (after `selected-node` for WaitForFirstConsumer) and creates a PV pre-bound to the claim;
//! for released volumes with reclaim policy Delete calls DeleteVolume and deletes the PV; for
//! claims asking for more than they have (classes with `allowVolumeExpansion`) calls
//! ControllerExpandVolume.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{
    CSIPersistentVolumeSource, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
    ObjectReference, PersistentVolume, PersistentVolumeClaim, PersistentVolumeSpec,
    VolumeNodeAffinity,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};
use skiff_csi::v1 as csi;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::control::{ClientVolumeControl, VolumeControl};
use super::{ANN_PROVISIONED_BY, ANN_SELECTED_NODE, ANN_STORAGE_PROVISIONER, matching};
use crate::control::{ClientControl, EventRecorder, object_reference};
use crate::informer::Informer;
use crate::queue::{Key, WorkQueue};

/// The component name on the provisioner's events.
pub const NAME: &str = "external-provisioner";
/// Held by provisioned volumes until their storage is deleted.
pub const FINALIZER: &str = "external-provisioner.volume.kubernetes.io/finalizer";

/// Errors of a provisioning or deletion step.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The driver refused or failed.
    #[error("{0}")]
    Csi(String),
    /// An API write failed.
    #[error(transparent)]
    Api(#[from] crate::control::Error),
}

/// A volume the driver created.
#[derive(Debug, Clone, PartialEq)]
pub struct Created {
    /// The driver's id (the PV's `volumeHandle`).
    pub volume_id: String,
    /// Bytes actually provisioned.
    pub capacity: i64,
    /// Attributes the node side needs (`volumeAttributes`).
    pub context: BTreeMap<String, String>,
    /// Where the volume can be used: topology segments, ORed.
    pub topology: Vec<BTreeMap<String, String>>,
}

/// The controller service of one CSI driver.
#[async_trait]
pub trait CsiController: Send + Sync {
    /// The driver's name (StorageClass `provisioner`).
    fn driver(&self) -> &str;
    /// CreateVolume.
    async fn create_volume(
        &self,
        name: &str,
        bytes: i64,
        parameters: BTreeMap<String, String>,
        access_modes: &[String],
        node: Option<&str>,
    ) -> Result<Created, Error>;
    /// DeleteVolume.
    async fn delete_volume(&self, volume_id: &str) -> Result<(), Error>;
    /// ControllerExpandVolume; returns the new capacity.
    async fn expand_volume(&self, volume_id: &str, bytes: i64) -> Result<i64, Error>;
}

/// The CSI controller service over the driver's socket.
pub struct SocketController {
    client: skiff_csi::CsiClient,
    driver: String,
}

impl SocketController {
    /// Connect to the socket and learn the driver's name.
    pub async fn connect(socket: &std::path::Path) -> Result<SocketController, skiff_csi::Error> {
        let mut client = skiff_csi::CsiClient::connect(socket).await?;
        let driver = client.driver_name().await?;
        Ok(SocketController { client, driver })
    }
}

fn access_mode(mode: &str) -> csi::volume_capability::access_mode::Mode {
    use csi::volume_capability::access_mode::Mode;
    match mode {
        "ReadWriteOnce" => Mode::SingleNodeWriter,
        "ReadOnlyMany" => Mode::MultiNodeReaderOnly,
        "ReadWriteMany" => Mode::MultiNodeMultiWriter,
        "ReadWriteOncePod" => Mode::SingleNodeSingleWriter,
        _ => Mode::Unknown,
    }
}

fn status_err(call: &str, s: skiff_csi::tonic::Status) -> Error {
    Error::Csi(format!(
        "rpc error: code = {:?} desc = {} ({call})",
        s.code(),
        s.message()
    ))
}

#[async_trait]
impl CsiController for SocketController {
    fn driver(&self) -> &str {
        &self.driver
    }

    async fn create_volume(
        &self,
        name: &str,
        bytes: i64,
        parameters: BTreeMap<String, String>,
        access_modes: &[String],
        node: Option<&str>,
    ) -> Result<Created, Error> {
        let caps = access_modes
            .iter()
            .map(|m| csi::VolumeCapability {
                access_mode: Some(csi::volume_capability::AccessMode {
                    mode: access_mode(m) as i32,
                }),
                access_type: Some(csi::volume_capability::AccessType::Mount(
                    csi::volume_capability::MountVolume::default(),
                )),
            })
            .collect();
        let topology = node.map(|n| {
            let t = csi::Topology {
                segments: [(skiff_csi::TOPOLOGY_NODE_KEY.to_string(), n.to_string())]
                    .into_iter()
                    .collect(),
            };
            csi::TopologyRequirement {
                requisite: vec![t.clone()],
                preferred: vec![t],
            }
        });
        let req = csi::CreateVolumeRequest {
            name: name.to_string(),
            capacity_range: Some(csi::CapacityRange {
                required_bytes: bytes,
                limit_bytes: 0,
            }),
            volume_capabilities: caps,
            parameters: parameters.into_iter().collect(),
            accessibility_requirements: topology,
            ..Default::default()
        };
        let v = self
            .client
            .controller
            .clone()
            .create_volume(req)
            .await
            .map_err(|s| status_err("CreateVolume", s))?
            .into_inner()
            .volume
            .ok_or_else(|| Error::Csi("CreateVolume returned no volume".into()))?;
        Ok(Created {
            volume_id: v.volume_id,
            capacity: v.capacity_bytes,
            context: v.volume_context.into_iter().collect(),
            topology: v
                .accessible_topology
                .into_iter()
                .map(|t| t.segments.into_iter().collect())
                .collect(),
        })
    }

    async fn delete_volume(&self, volume_id: &str) -> Result<(), Error> {
        self.client
            .controller
            .clone()
            .delete_volume(csi::DeleteVolumeRequest {
                volume_id: volume_id.to_string(),
                secrets: Default::default(),
            })
            .await
            .map_err(|s| status_err("DeleteVolume", s))?;
        Ok(())
    }

    async fn expand_volume(&self, volume_id: &str, bytes: i64) -> Result<i64, Error> {
        let r = self
            .client
            .controller
            .clone()
            .controller_expand_volume(csi::ControllerExpandVolumeRequest {
                volume_id: volume_id.to_string(),
                capacity_range: Some(csi::CapacityRange {
                    required_bytes: bytes,
                    limit_bytes: 0,
                }),
                ..Default::default()
            })
            .await
            .map_err(|s| status_err("ControllerExpandVolume", s))?;
        Ok(r.into_inner().capacity_bytes)
    }
}

/// A byte count as a quantity, in the largest binary unit that divides it (as Go's BinarySI).
pub fn quantity_of(bytes: i64) -> Quantity {
    for (unit, size) in [
        ("Ti", 1i64 << 40),
        ("Gi", 1 << 30),
        ("Mi", 1 << 20),
        ("Ki", 1 << 10),
    ] {
        if bytes >= size && bytes % size == 0 {
            return Quantity(format!("{}{unit}", bytes / size));
        }
    }
    Quantity(bytes.to_string())
}

/// The provisioner's state.
pub struct Provisioner {
    /// Writes.
    pub control: Arc<dyn VolumeControl>,
    /// Events on claims and volumes.
    pub events: Arc<dyn EventRecorder>,
    /// The driver's controller service.
    pub csi: Arc<dyn CsiController>,
    /// Claim cache.
    pub pvcs: Store<PersistentVolumeClaim>,
    /// Volume cache.
    pub pvs: Store<PersistentVolume>,
    /// StorageClass cache.
    pub classes: Store<StorageClass>,
}

fn annotation<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

/// The PV name of a claim's provisioned volume (upstream: `pvc-<claim uid>`).
pub fn volume_name_for(claim: &PersistentVolumeClaim) -> String {
    format!("pvc-{}", claim.metadata.uid.as_deref().unwrap_or(""))
}

impl Provisioner {
    fn class_of(&self, claim: &PersistentVolumeClaim) -> Option<Arc<StorageClass>> {
        let name = matching::claim_class(claim);
        (!name.is_empty())
            .then(|| self.classes.get(&ObjectRef::new(name)))
            .flatten()
    }

    /// Provision for, or expand, one claim.
    pub async fn sync_claim(&self, key: &Key) -> Result<Option<Duration>, Error> {
        let Some(claim) = self
            .pvcs
            .get(&ObjectRef::new(&key.name).within(&key.namespace))
        else {
            return Ok(None);
        };
        if claim.metadata.deletion_timestamp.is_some() {
            return Ok(None);
        }
        let Some(class) = self.class_of(&claim) else {
            return Ok(None);
        };
        if class.provisioner != self.csi.driver() {
            return Ok(None);
        }
        let volume_name = claim.spec.as_ref().and_then(|s| s.volume_name.clone());
        match volume_name.filter(|v| !v.is_empty()) {
            None => self.provision(&claim, &class).await,
            Some(v) => self.expand(&claim, &class, &v).await,
        }
    }

    async fn provision(
        &self,
        claim: &PersistentVolumeClaim,
        class: &StorageClass,
    ) -> Result<Option<Duration>, Error> {
        if annotation(&claim.metadata, ANN_STORAGE_PROVISIONER) != Some(self.csi.driver()) {
            return Ok(None);
        }
        let node = annotation(&claim.metadata, ANN_SELECTED_NODE);
        if class.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer") && node.is_none() {
            return Ok(None);
        }
        let pv_name = volume_name_for(claim);
        if self.pvs.get(&ObjectRef::new(&pv_name)).is_some() {
            return Ok(None);
        }
        let claim_key = format!(
            "{}/{}",
            claim.metadata.namespace.as_deref().unwrap_or(""),
            claim.metadata.name.as_deref().unwrap_or("")
        );
        let about = object_reference(claim);
        self.events.record(
            &about,
            "Normal",
            "Provisioning",
            format!("External provisioner is provisioning volume for claim \"{claim_key}\""),
        );
        let spec = claim.spec.clone().unwrap_or_default();
        let modes = spec.access_modes.clone().unwrap_or_default();
        let bytes = i64::try_from(matching::requested_bytes(claim)).unwrap_or(i64::MAX);
        let params = class.parameters.clone().unwrap_or_default();
        let created = match self
            .csi
            .create_volume(&pv_name, bytes, params, &modes, node)
            .await
        {
            Ok(c) => c,
            Err(e) => {
                self.events.record(
                    &about,
                    "Warning",
                    "ProvisioningFailed",
                    format!(
                        "failed to provision volume with StorageClass \"{}\": {e}",
                        class.metadata.name.as_deref().unwrap_or("")
                    ),
                );
                return Err(e);
            }
        };
        let node_affinity = (!created.topology.is_empty()).then(|| VolumeNodeAffinity {
            required: Some(NodeSelector {
                node_selector_terms: created
                    .topology
                    .iter()
                    .map(|segs| NodeSelectorTerm {
                        match_expressions: Some(
                            segs.iter()
                                .map(|(k, v)| NodeSelectorRequirement {
                                    key: k.clone(),
                                    operator: "In".into(),
                                    values: Some(vec![v.clone()]),
                                })
                                .collect(),
                        ),
                        match_fields: None,
                    })
                    .collect(),
            }),
        });
        let pv = PersistentVolume {
            metadata: ObjectMeta {
                name: Some(pv_name.clone()),
                annotations: Some(
                    [(
                        ANN_PROVISIONED_BY.to_string(),
                        self.csi.driver().to_string(),
                    )]
                    .into_iter()
                    .collect(),
                ),
                finalizers: Some(vec![FINALIZER.to_string()]),
                ..ObjectMeta::default()
            },
            spec: Some(PersistentVolumeSpec {
                access_modes: Some(modes),
                capacity: Some(
                    [("storage".to_string(), quantity_of(created.capacity))]
                        .into_iter()
                        .collect(),
                ),
                claim_ref: Some(ObjectReference {
                    kind: Some("PersistentVolumeClaim".into()),
                    api_version: Some("v1".into()),
                    namespace: claim.metadata.namespace.clone(),
                    name: claim.metadata.name.clone(),
                    uid: claim.metadata.uid.clone(),
                    resource_version: claim.metadata.resource_version.clone(),
                    field_path: None,
                }),
                csi: Some(CSIPersistentVolumeSource {
                    driver: self.csi.driver().to_string(),
                    volume_handle: created.volume_id.clone(),
                    volume_attributes: Some(created.context.clone()),
                    fs_type: None,
                    ..Default::default()
                }),
                mount_options: class.mount_options.clone(),
                node_affinity,
                persistent_volume_reclaim_policy: Some(
                    class
                        .reclaim_policy
                        .clone()
                        .unwrap_or_else(|| "Delete".into()),
                ),
                storage_class_name: class.metadata.name.clone(),
                volume_mode: Some(spec.volume_mode.unwrap_or_else(|| "Filesystem".into())),
                ..PersistentVolumeSpec::default()
            }),
            status: None,
        };
        match self.control.create_pv(&pv).await {
            Ok(_) => {}
            Err(e) if e.is_already_exists() => {}
            Err(e) => {
                // Do not leak the storage the object would have tracked.
                if let Err(de) = self.csi.delete_volume(&created.volume_id).await {
                    tracing::warn!(volume = %created.volume_id, error = %de, "cleanup after failed PV create failed");
                }
                return Err(e.into());
            }
        }
        tracing::info!(volume = %pv_name, claim = %claim_key, "provisioned volume");
        self.events.record(
            &about,
            "Normal",
            "ProvisioningSucceeded",
            format!("Successfully provisioned volume {pv_name}"),
        );
        Ok(None)
    }

    async fn expand(
        &self,
        claim: &PersistentVolumeClaim,
        class: &StorageClass,
        volume: &str,
    ) -> Result<Option<Duration>, Error> {
        if class.allow_volume_expansion != Some(true) {
            return Ok(None);
        }
        let Some(pv) = self.pvs.get(&ObjectRef::new(volume)) else {
            return Ok(None);
        };
        let Some(handle) = pv
            .spec
            .as_ref()
            .and_then(|s| s.csi.as_ref())
            .filter(|c| c.driver == self.csi.driver())
            .map(|c| c.volume_handle.clone())
        else {
            return Ok(None);
        };
        let want = matching::requested_bytes(claim);
        if want <= matching::capacity_bytes(&pv) {
            return self.finish_expansion(claim, &pv).await;
        }
        let about = object_reference(claim);
        let want = i64::try_from(want).unwrap_or(i64::MAX);
        self.events.record(
            &about,
            "Normal",
            "Resizing",
            format!("External resizer is resizing volume {volume}"),
        );
        let got = match self.csi.expand_volume(&handle, want).await {
            Ok(g) => g,
            Err(e) => {
                self.events.record(
                    &about,
                    "Warning",
                    "VolumeResizeFailed",
                    format!(
                        "resize volume \"{volume}\" by resizer \"{}\" failed: {e}",
                        self.csi.driver()
                    ),
                );
                return Err(e);
            }
        };
        let mut pv = (*pv).clone();
        if let Some(s) = pv.spec.as_mut() {
            s.capacity
                .get_or_insert_with(BTreeMap::new)
                .insert("storage".into(), quantity_of(got));
        }
        let pv = self.control.update_pv(&pv).await?;
        self.events.record(
            &about,
            "Normal",
            "VolumeResizeSuccessful",
            "Resize volume succeeded".into(),
        );
        self.finish_expansion(claim, &pv).await
    }

    /// The claim reports the volume's capacity once the volume has grown.
    async fn finish_expansion(
        &self,
        claim: &PersistentVolumeClaim,
        pv: &PersistentVolume,
    ) -> Result<Option<Duration>, Error> {
        let Some(cap) = pv.spec.as_ref().and_then(|s| s.capacity.clone()) else {
            return Ok(None);
        };
        let status = claim.status.clone().unwrap_or_default();
        if status.phase.as_deref() != Some("Bound") || status.capacity.as_ref() == Some(&cap) {
            return Ok(None);
        }
        let mut c = claim.clone();
        if let Some(s) = c.status.as_mut() {
            s.capacity = Some(cap);
        }
        self.control.update_pvc_status(&c).await?;
        Ok(None)
    }

    /// Delete the storage of a released volume with reclaim policy Delete, then the object;
    /// drop the finalizer of a deleted volume whose storage is gone.
    pub async fn sync_volume(&self, name: &str) -> Result<Option<Duration>, Error> {
        let Some(pv) = self.pvs.get(&ObjectRef::new(name)) else {
            return Ok(None);
        };
        if annotation(&pv.metadata, ANN_PROVISIONED_BY) != Some(self.csi.driver()) {
            return Ok(None);
        }
        let Some(spec) = pv.spec.as_ref() else {
            return Ok(None);
        };
        let handle = spec
            .csi
            .as_ref()
            .map(|c| c.volume_handle.clone())
            .unwrap_or_default();
        let delete = spec.persistent_volume_reclaim_policy.as_deref() == Some("Delete");
        let phase = pv
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .unwrap_or("");
        let deleting = pv.metadata.deletion_timestamp.is_some();
        let ours = pv
            .metadata
            .finalizers
            .as_ref()
            .is_some_and(|f| f.iter().any(|x| x == FINALIZER));
        if deleting {
            if !ours || phase == "Bound" {
                return Ok(None);
            }
            if delete && !handle.is_empty() {
                self.csi.delete_volume(&handle).await?;
            }
            let fins: Vec<String> = pv
                .metadata
                .finalizers
                .clone()
                .unwrap_or_default()
                .into_iter()
                .filter(|f| f != FINALIZER)
                .collect();
            self.control
                .set_finalizers(
                    None,
                    name,
                    pv.metadata.resource_version.as_deref().unwrap_or(""),
                    &fins,
                )
                .await?;
            return Ok(None);
        }
        if phase != "Released" || !delete {
            return Ok(None);
        }
        if let Err(e) = self.csi.delete_volume(&handle).await {
            self.events.record(
                &object_reference(&*pv),
                "Warning",
                "VolumeFailedDelete",
                e.to_string(),
            );
            return Err(e);
        }
        tracing::info!(volume = %name, "deleted released volume's storage");
        match self
            .control
            .delete_pv(name, pv.metadata.uid.as_deref().unwrap_or(""))
            .await
        {
            Ok(()) => Ok(None),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

/// Run the provisioner for the CSI driver on `socket` until `shutdown`: waits for the socket,
/// starts its informers and workers.
pub async fn run(client: kube::Client, socket: PathBuf, shutdown: CancellationToken) {
    let csi = loop {
        match SocketController::connect(&socket).await {
            Ok(c) => break c,
            Err(e) => {
                tracing::debug!(socket = %socket.display(), error = %e, "CSI driver not reachable yet");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                    _ = shutdown.cancelled() => return,
                }
            }
        }
    };
    tracing::info!(driver = csi.driver(), "CSI provisioner starting");
    let tasks = TaskTracker::new();
    let mut pvcs: Informer<PersistentVolumeClaim> = Informer::new(client.clone());
    let mut pvs: Informer<PersistentVolume> = Informer::new(client.clone());
    let classes: Informer<StorageClass> = Informer::new(client.clone());
    let (claim_q, volume_q) = (WorkQueue::new(), WorkQueue::new());
    let p = Arc::new(Provisioner {
        control: Arc::new(ClientVolumeControl::new(client.clone())),
        events: Arc::new(ClientControl::new(client.clone(), NAME)),
        csi: Arc::new(csi),
        pvcs: pvcs.store(),
        pvs: pvs.store(),
        classes: classes.store(),
    });
    let q = claim_q.clone();
    pvcs.on_change(Arc::new(move |_old, new| {
        if let Some(c) = new {
            q.add(Key::of(&c.metadata));
        }
    }));
    let q = volume_q.clone();
    pvs.on_change(Arc::new(move |_old, new| {
        if let Some(v) = new {
            q.add(Key::new("", v.metadata.name.clone().unwrap_or_default()));
        }
    }));
    let (pvc_store, pv_store, class_store) = (pvcs.store(), pvs.store(), classes.store());
    tasks.spawn(pvcs.run(shutdown.clone()));
    tasks.spawn(pvs.run(shutdown.clone()));
    tasks.spawn(classes.run(shutdown.clone()));
    let ready = futures::future::join3(
        pvc_store.wait_until_ready(),
        pv_store.wait_until_ready(),
        class_store.wait_until_ready(),
    );
    tokio::select! {
        r = ready => if r.0.is_err() || r.1.is_err() || r.2.is_err() {
            tracing::error!(controller = NAME, "an informer stopped before it synced");
            return;
        },
        _ = shutdown.cancelled() => return,
    }
    crate::spawn_resync(&tasks, pvc_store, claim_q.clone(), shutdown.clone());
    crate::spawn_resync(&tasks, pv_store, volume_q.clone(), shutdown.clone());
    let pc = p.clone();
    crate::spawn_workers(&tasks, NAME, claim_q, shutdown.clone(), move |key| {
        let p = pc.clone();
        async move { p.sync_claim(&key).await }
    });
    crate::spawn_workers(&tasks, NAME, volume_q, shutdown.clone(), move |key| {
        let p = p.clone();
        async move { p.sync_volume(&key.name).await }
    });
    shutdown.cancelled().await;
    tasks.close();
    tasks.wait().await;
}
