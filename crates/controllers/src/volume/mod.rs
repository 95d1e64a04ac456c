//! Persistent storage controllers: the PV/PVC binder with pvc-/pv-protection (`binder`) and the
//! CSI provisioner (`provisioner`). See `docs/storage.md`.

pub mod binder;
pub mod control;
pub mod matching;
pub mod provisioner;
pub mod quantity;

#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::control::ClientControl;
use crate::informer::Informer;
use crate::queue::{Key, WorkQueue};

/// Set on a claim once the binder finished binding it.
pub const ANN_BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
/// Set on whichever side the binder (not the user) pointed at the other.
pub const ANN_BOUND_BY_CONTROLLER: &str = "pv.kubernetes.io/bound-by-controller";
/// The node a delayed-binding claim is to be provisioned/bound for.
pub const ANN_SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
/// The provisioner expected to create a volume for the claim.
pub const ANN_STORAGE_PROVISIONER: &str = "volume.kubernetes.io/storage-provisioner";
/// The same, under its deprecated beta name (older provisioners read only this one).
pub const ANN_BETA_STORAGE_PROVISIONER: &str = "volume.beta.kubernetes.io/storage-provisioner";
/// Which provisioner created a volume (it also deletes it).
pub const ANN_PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
/// Holds a claim while a pod uses it.
pub const PVC_PROTECTION: &str = "kubernetes.io/pvc-protection";
/// Holds a volume while it is bound.
pub const PV_PROTECTION: &str = "kubernetes.io/pv-protection";

/// A lost optimistic-concurrency race is routine here (claim and volume workers, and the
/// provisioner, write the same PVs): retry soon from the fresher cache, without the error
/// backoff and its log line.
fn retry_conflicts(
    r: crate::control::Result<Option<std::time::Duration>>,
    key: &Key,
) -> crate::control::Result<Option<std::time::Duration>> {
    match r {
        Err(e) if e.is_conflict() => {
            tracing::debug!(key = %key, error = %e, "write conflict; retrying");
            Ok(Some(std::time::Duration::from_millis(20)))
        }
        r => r,
    }
}

/// Start the binder: its own PV, claim and StorageClass informers, handlers on the shared pod
/// informer (which the caller runs), and workers once every cache synced.
pub fn register(
    client: &kube::Client,
    pods: &mut Informer<Pod>,
    tasks: &TaskTracker,
    shutdown: CancellationToken,
) {
    let mut pvs: Informer<PersistentVolume> = Informer::new(client.clone());
    let mut pvcs: Informer<PersistentVolumeClaim> = Informer::new(client.clone());
    let classes: Informer<StorageClass> = Informer::new(client.clone());
    let claim_q = WorkQueue::new();
    let volume_q = WorkQueue::new();
    let b = Arc::new(binder::Binder {
        control: Arc::new(control::ClientVolumeControl::new(client.clone())),
        events: Arc::new(ClientControl::new(client.clone(), binder::NAME)),
        pvs: pvs.store(),
        pvcs: pvcs.store(),
        classes: classes.store(),
        pods: pods.store(),
        clock: crate::system_clock(),
        assumed: Mutex::new(Default::default()),
        recent_events: Mutex::new(Default::default()),
    });
    {
        let (cq, vq) = (claim_q.clone(), volume_q.clone());
        pvcs.on_change(Arc::new(move |old, new| {
            for c in [old, new].into_iter().flatten() {
                cq.add(Key::of(&c.metadata));
                if let Some(v) = c.spec.as_ref().and_then(|s| s.volume_name.as_ref()) {
                    vq.add(Key::new("", v.clone()));
                }
            }
        }));
        let (cq, vq) = (claim_q.clone(), volume_q.clone());
        let claim_store = pvcs.store();
        pvs.on_change(Arc::new(move |old, new| {
            // Only a volume that just became free (new, or its claimRef dropped) can serve a
            // waiting claim; fanning out on every binding write re-synced every waiting claim.
            let claimed =
                |pv: &PersistentVolume| pv.spec.as_ref().is_some_and(|s| s.claim_ref.is_some());
            let freed = new.is_some_and(|n| !claimed(n) && old.is_none_or(claimed));
            for pv in [old, new].into_iter().flatten() {
                let name = pv.metadata.name.clone().unwrap_or_default();
                vq.add(Key::new("", name.clone()));
                if let Some(r) = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) {
                    cq.add(Key::new(
                        r.namespace.clone().unwrap_or_default(),
                        r.name.clone().unwrap_or_default(),
                    ));
                }
                if !freed {
                    continue;
                }
                // A newly free volume may serve any waiting claim.
                for c in claim_store.state() {
                    let vn = c.spec.as_ref().and_then(|s| s.volume_name.as_deref());
                    if vn.is_none_or(|v| v.is_empty() || v == name) {
                        cq.add(Key::of(&c.metadata));
                    }
                }
            }
        }));
        let cq = claim_q.clone();
        pods.on_change(Arc::new(move |old, new| {
            for p in [old, new].into_iter().flatten() {
                let ns = p.metadata.namespace.clone().unwrap_or_default();
                for c in binder::claims_of_pod(p) {
                    cq.add(Key::new(ns.clone(), c));
                }
            }
        }));
    }
    let pod_store = pods.store();
    let (pv_store, pvc_store, class_store) = (pvs.store(), pvcs.store(), classes.store());
    tasks.spawn(pvs.run(shutdown.clone()));
    tasks.spawn(pvcs.run(shutdown.clone()));
    tasks.spawn(classes.run(shutdown.clone()));
    let tasks2 = tasks.clone();
    tasks.spawn(async move {
        let ready = futures::future::join4(
            pod_store.wait_until_ready(),
            pv_store.wait_until_ready(),
            pvc_store.wait_until_ready(),
            class_store.wait_until_ready(),
        );
        tokio::select! {
            r = ready => if r.0.is_err() || r.1.is_err() || r.2.is_err() || r.3.is_err() {
                tracing::error!(controller = binder::NAME, "an informer stopped before it synced");
                return;
            },
            _ = shutdown.cancelled() => return,
        }
        tracing::info!(controller = binder::NAME, "caches synced; starting");
        crate::spawn_resync(&tasks2, pvc_store, claim_q.clone(), shutdown.clone());
        crate::spawn_resync(&tasks2, pv_store, volume_q.clone(), shutdown.clone());
        let bc = b.clone();
        crate::spawn_workers(
            &tasks2,
            binder::NAME,
            claim_q,
            shutdown.clone(),
            move |key| {
                let b = bc.clone();
                async move { retry_conflicts(b.sync_claim(&key).await, &key) }
            },
        );
        crate::spawn_workers(&tasks2, binder::NAME, volume_q, shutdown, move |key| {
            let b = b.clone();
            async move { retry_conflicts(b.sync_volume(&key.name).await, &key) }
        });
    });
}

/// The built-in driver's socket under the server's data dir.
pub fn local_socket(server_dir: &std::path::Path) -> std::path::PathBuf {
    server_dir.join("csi").join("local.sock")
}

/// Run the controller half of the built-in CSI driver `local.csi.skiff.dev` on
/// `<server_dir>/csi/local.sock` (its ledger in `<server_dir>/csi/local/volumes.json`, each
/// node accounted up to this filesystem's size, volumes on the node the topology names) and
/// the provisioner for it, until `shutdown`.
pub async fn run_local_storage(
    client: kube::Client,
    server_dir: std::path::PathBuf,
    shutdown: CancellationToken,
) {
    let root = server_dir.join("csi").join("local");
    let socket = local_socket(&server_dir);
    let node = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    let total = match std::fs::create_dir_all(&root)
        .and_then(|()| rustix::fs::statvfs(&root).map_err(std::io::Error::from))
    {
        Ok(fs) => i64::try_from(fs.f_blocks.saturating_mul(fs.f_frsize)).unwrap_or(i64::MAX),
        Err(e) => {
            tracing::error!(dir = %root.display(), error = %e, "local CSI driver not started");
            return;
        }
    };
    // The control-plane half only: volume directories live on the nodes, made by each
    // agent's node plugin at stage time and removed by it once the PV is gone.
    let driver = match skiff_csi::LocalDriver::controller(&root, &node, total) {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(dir = %root.display(), error = %e, "local CSI driver not started");
            return;
        }
    };
    let serve_shutdown = shutdown.clone();
    let serving = tokio::spawn(async move {
        if let Err(e) = skiff_csi::serve(&socket, driver, serve_shutdown).await {
            tracing::error!(error = %e, "local CSI driver stopped");
        }
    });
    provisioner::run(client, local_socket(&server_dir), shutdown).await;
    let _ = serving.await;
}
