//! The volume controllers' writes (PVs, claims, finalizers) and live reads (pods using a claim,
//! node labels) behind `VolumeControl`, with the kube implementation and an in-memory fake that
//! enforces resourceVersions, so tests see the optimistic-concurrency races the real server has.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions};
use serde_json::json;

use crate::control::{Error, Result};

/// Writes and live reads of the PV/PVC controllers.
#[async_trait]
pub trait VolumeControl: Send + Sync {
    /// Replace a PV (spec and metadata), guarded by its resourceVersion.
    async fn update_pv(&self, pv: &PersistentVolume) -> Result<PersistentVolume>;
    /// Replace a PV's status, guarded by its resourceVersion.
    async fn update_pv_status(&self, pv: &PersistentVolume) -> Result<PersistentVolume>;
    /// Create a PV.
    async fn create_pv(&self, pv: &PersistentVolume) -> Result<PersistentVolume>;
    /// Delete a PV, only if it still has `uid`.
    async fn delete_pv(&self, name: &str, uid: &str) -> Result<()>;
    /// Replace a claim (spec and metadata), guarded by its resourceVersion.
    async fn update_pvc(&self, pvc: &PersistentVolumeClaim) -> Result<PersistentVolumeClaim>;
    /// Replace a claim's status, guarded by its resourceVersion.
    async fn update_pvc_status(&self, pvc: &PersistentVolumeClaim)
    -> Result<PersistentVolumeClaim>;
    /// Set the finalizers of a PV (`None` namespace) or claim, guarded by its resourceVersion.
    async fn set_finalizers(
        &self,
        namespace: Option<&str>,
        name: &str,
        resource_version: &str,
        finalizers: &[String],
    ) -> Result<()>;
    /// Pods of `namespace`, read live (a cache may miss a pod created a moment ago).
    async fn list_pods(&self, namespace: &str) -> Result<Vec<Pod>>;
    /// A node's labels (`None` when the node does not exist).
    async fn node_labels(&self, name: &str) -> Result<Option<BTreeMap<String, String>>>;
}

/// Volume writes through the API server.
#[derive(Clone)]
pub struct ClientVolumeControl {
    client: kube::Client,
}

impl ClientVolumeControl {
    /// Writes through `client`.
    pub fn new(client: kube::Client) -> ClientVolumeControl {
        ClientVolumeControl { client }
    }

    fn pvs(&self) -> Api<PersistentVolume> {
        Api::all(self.client.clone())
    }

    fn pvcs(&self, ns: &str) -> Api<PersistentVolumeClaim> {
        Api::namespaced(self.client.clone(), ns)
    }
}

fn name_of<K: kube::Resource>(k: &K) -> Result<String> {
    k.meta()
        .name
        .clone()
        .ok_or_else(|| Error::NotFound("object without a name".into()))
}

#[async_trait]
impl VolumeControl for ClientVolumeControl {
    async fn update_pv(&self, pv: &PersistentVolume) -> Result<PersistentVolume> {
        Ok(self
            .pvs()
            .replace(&name_of(pv)?, &PostParams::default(), pv)
            .await?)
    }

    async fn update_pv_status(&self, pv: &PersistentVolume) -> Result<PersistentVolume> {
        Ok(self
            .pvs()
            .replace_status(&name_of(pv)?, &PostParams::default(), pv)
            .await?)
    }

    async fn create_pv(&self, pv: &PersistentVolume) -> Result<PersistentVolume> {
        Ok(self.pvs().create(&PostParams::default(), pv).await?)
    }

    async fn delete_pv(&self, name: &str, uid: &str) -> Result<()> {
        let dp = DeleteParams {
            preconditions: Some(Preconditions {
                uid: Some(uid.to_string()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        self.pvs().delete(name, &dp).await?;
        Ok(())
    }

    async fn update_pvc(&self, pvc: &PersistentVolumeClaim) -> Result<PersistentVolumeClaim> {
        let ns = pvc.metadata.namespace.clone().unwrap_or_default();
        Ok(self
            .pvcs(&ns)
            .replace(&name_of(pvc)?, &PostParams::default(), pvc)
            .await?)
    }

    async fn update_pvc_status(
        &self,
        pvc: &PersistentVolumeClaim,
    ) -> Result<PersistentVolumeClaim> {
        let ns = pvc.metadata.namespace.clone().unwrap_or_default();
        Ok(self
            .pvcs(&ns)
            .replace_status(&name_of(pvc)?, &PostParams::default(), pvc)
            .await?)
    }

    async fn set_finalizers(
        &self,
        namespace: Option<&str>,
        name: &str,
        resource_version: &str,
        finalizers: &[String],
    ) -> Result<()> {
        // A merge patch carrying the resourceVersion fails on conflict instead of clobbering
        // finalizers another component added meanwhile.
        let patch = Patch::Merge(json!({"metadata": {
            "resourceVersion": resource_version, "finalizers": finalizers}}));
        let pp = PatchParams::default();
        match namespace {
            Some(ns) => {
                self.pvcs(ns).patch(name, &pp, &patch).await?;
            }
            None => {
                self.pvs().patch(name, &pp, &patch).await?;
            }
        }
        Ok(())
    }

    async fn list_pods(&self, namespace: &str) -> Result<Vec<Pod>> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        Ok(api.list(&ListParams::default()).await?.items)
    }

    async fn node_labels(&self, name: &str) -> Result<Option<BTreeMap<String, String>>> {
        let api: Api<Node> = Api::all(self.client.clone());
        Ok(api
            .get_opt(name)
            .await?
            .map(|n| n.metadata.labels.unwrap_or_default()))
    }
}

/// An in-memory API for unit tests: objects keyed by name (claims by `ns/name`), every write
/// checked against and bumping the resourceVersion, every write logged.
#[derive(Default)]
pub struct FakeVolumeControl {
    state: Mutex<FakeState>,
}

#[derive(Default)]
struct FakeState {
    pvs: HashMap<String, PersistentVolume>,
    pvcs: HashMap<String, PersistentVolumeClaim>,
    pods: Vec<Pod>,
    nodes: HashMap<String, BTreeMap<String, String>>,
    rv: u64,
    log: Vec<String>,
}

fn conflict(what: &str) -> Error {
    Error::Api(kube::Error::Api(
        kube::core::Status::failure(&format!("conflict on {what}"), "Conflict")
            .with_code(409)
            .boxed(),
    ))
}

fn claim_key(pvc: &PersistentVolumeClaim) -> String {
    format!(
        "{}/{}",
        pvc.metadata.namespace.as_deref().unwrap_or(""),
        pvc.metadata.name.as_deref().unwrap_or("")
    )
}

impl FakeVolumeControl {
    /// An empty fake.
    pub fn new() -> FakeVolumeControl {
        FakeVolumeControl::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Store a PV as the server would have it (assigns a resourceVersion); returns it.
    pub fn seed_pv(&self, mut pv: PersistentVolume) -> PersistentVolume {
        let mut s = self.lock();
        s.rv += 1;
        pv.metadata.resource_version = Some(s.rv.to_string());
        s.pvs
            .insert(pv.metadata.name.clone().unwrap_or_default(), pv.clone());
        pv
    }

    /// Store a claim as the server would have it; returns it.
    pub fn seed_pvc(&self, mut pvc: PersistentVolumeClaim) -> PersistentVolumeClaim {
        let mut s = self.lock();
        s.rv += 1;
        pvc.metadata.resource_version = Some(s.rv.to_string());
        s.pvcs.insert(claim_key(&pvc), pvc.clone());
        pvc
    }

    /// Add a pod the live pod list returns.
    pub fn seed_pod(&self, pod: Pod) {
        self.lock().pods.push(pod);
    }

    /// Add a node with labels.
    pub fn seed_node(&self, name: &str, labels: BTreeMap<String, String>) {
        self.lock().nodes.insert(name.to_string(), labels);
    }

    /// The stored PV named `name`.
    pub fn pv(&self, name: &str) -> Option<PersistentVolume> {
        self.lock().pvs.get(name).cloned()
    }

    /// Every stored PV.
    pub fn pvs(&self) -> Vec<PersistentVolume> {
        self.lock().pvs.values().cloned().collect()
    }

    /// The stored claim `ns/name`.
    pub fn pvc(&self, ns: &str, name: &str) -> Option<PersistentVolumeClaim> {
        self.lock().pvcs.get(&format!("{ns}/{name}")).cloned()
    }

    /// The writes so far, as `verb kind name` lines.
    pub fn log(&self) -> Vec<String> {
        self.lock().log.clone()
    }

    fn write_pv(
        &self,
        verb: &str,
        pv: &PersistentVolume,
        status: bool,
    ) -> Result<PersistentVolume> {
        let mut s = self.lock();
        let name = pv.metadata.name.clone().unwrap_or_default();
        let Some(cur) = s.pvs.get(&name).cloned() else {
            return Err(Error::NotFound(format!("persistentvolume {name}")));
        };
        if cur.metadata.resource_version != pv.metadata.resource_version {
            return Err(conflict(&name));
        }
        s.rv += 1;
        let mut next = if status {
            PersistentVolume {
                status: pv.status.clone(),
                ..cur
            }
        } else {
            PersistentVolume {
                status: cur.status,
                ..pv.clone()
            }
        };
        next.metadata.resource_version = Some(s.rv.to_string());
        s.pvs.insert(name.clone(), next.clone());
        s.log.push(format!("{verb} pv {name}"));
        Ok(next)
    }

    fn write_pvc(
        &self,
        verb: &str,
        pvc: &PersistentVolumeClaim,
        status: bool,
    ) -> Result<PersistentVolumeClaim> {
        let mut s = self.lock();
        let key = claim_key(pvc);
        let Some(cur) = s.pvcs.get(&key).cloned() else {
            return Err(Error::NotFound(format!("persistentvolumeclaim {key}")));
        };
        if cur.metadata.resource_version != pvc.metadata.resource_version {
            return Err(conflict(&key));
        }
        s.rv += 1;
        let mut next = if status {
            PersistentVolumeClaim {
                status: pvc.status.clone(),
                ..cur
            }
        } else {
            PersistentVolumeClaim {
                status: cur.status,
                ..pvc.clone()
            }
        };
        next.metadata.resource_version = Some(s.rv.to_string());
        s.pvcs.insert(key.clone(), next.clone());
        s.log.push(format!("{verb} pvc {key}"));
        Ok(next)
    }
}

#[async_trait]
impl VolumeControl for FakeVolumeControl {
    async fn update_pv(&self, pv: &PersistentVolume) -> Result<PersistentVolume> {
        self.write_pv("update", pv, false)
    }

    async fn update_pv_status(&self, pv: &PersistentVolume) -> Result<PersistentVolume> {
        self.write_pv("status", pv, true)
    }

    async fn create_pv(&self, pv: &PersistentVolume) -> Result<PersistentVolume> {
        let name = pv.metadata.name.clone().unwrap_or_default();
        if self.lock().pvs.contains_key(&name) {
            return Err(Error::Api(kube::Error::Api(
                kube::core::Status::failure("exists", "AlreadyExists")
                    .with_code(409)
                    .boxed(),
            )));
        }
        let out = self.seed_pv(pv.clone());
        self.lock().log.push(format!("create pv {name}"));
        Ok(out)
    }

    async fn delete_pv(&self, name: &str, _uid: &str) -> Result<()> {
        let mut s = self.lock();
        if s.pvs.remove(name).is_none() {
            return Err(Error::NotFound(format!("persistentvolume {name}")));
        }
        s.log.push(format!("delete pv {name}"));
        Ok(())
    }

    async fn update_pvc(&self, pvc: &PersistentVolumeClaim) -> Result<PersistentVolumeClaim> {
        self.write_pvc("update", pvc, false)
    }

    async fn update_pvc_status(
        &self,
        pvc: &PersistentVolumeClaim,
    ) -> Result<PersistentVolumeClaim> {
        self.write_pvc("status", pvc, true)
    }

    async fn set_finalizers(
        &self,
        namespace: Option<&str>,
        name: &str,
        resource_version: &str,
        finalizers: &[String],
    ) -> Result<()> {
        let mut s = self.lock();
        s.rv += 1;
        let rv = s.rv.to_string();
        let fin = (!finalizers.is_empty()).then(|| finalizers.to_vec());
        let line = match namespace {
            Some(ns) => {
                let key = format!("{ns}/{name}");
                let Some(c) = s.pvcs.get_mut(&key) else {
                    return Err(Error::NotFound(key));
                };
                if c.metadata.resource_version.as_deref() != Some(resource_version) {
                    return Err(conflict(&key));
                }
                c.metadata.finalizers = fin;
                c.metadata.resource_version = Some(rv);
                format!("finalizers pvc {key} {finalizers:?}")
            }
            None => {
                let Some(p) = s.pvs.get_mut(name) else {
                    return Err(Error::NotFound(name.to_string()));
                };
                if p.metadata.resource_version.as_deref() != Some(resource_version) {
                    return Err(conflict(name));
                }
                p.metadata.finalizers = fin;
                p.metadata.resource_version = Some(rv);
                format!("finalizers pv {name} {finalizers:?}")
            }
        };
        s.log.push(line);
        Ok(())
    }

    async fn list_pods(&self, namespace: &str) -> Result<Vec<Pod>> {
        Ok(self
            .lock()
            .pods
            .iter()
            .filter(|p| p.metadata.namespace.as_deref() == Some(namespace))
            .cloned()
            .collect())
    }

    async fn node_labels(&self, name: &str) -> Result<Option<BTreeMap<String, String>>> {
        Ok(self.lock().nodes.get(name).cloned())
    }
}
