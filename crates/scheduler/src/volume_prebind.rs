//! VolumeBinding's PreBind (upstream `BindPodVolumes`): writes the assumed bindings — static
//! volumes' `claimRef` (a replace at the resourceVersion they were read at), claims'
//! `volume.kubernetes.io/selected-node` (a merge patch) — then waits (bounded) until the PV controller and the provisioner have
//! bound every claim of the pod, woken by the volume informers rather than polling the server.

use std::time::Duration;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::api::{Api, Patch, PatchParams, PostParams};

use crate::plugins::volume_binding::{ANN_SELECTED_NODE, PodVolumes, VolumeCache, check_bindings};
use crate::selector::Labels;

/// Writes the bindings and waits for them; the error is the PreBind status message.
pub async fn pre_bind(
    client: &kube::Client,
    cache: &VolumeCache,
    plan: &PodVolumes,
    node_labels: &Labels,
    timeout: Duration,
) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut written_pvs: Vec<PersistentVolume> = Vec::new();
    let mut written_pvcs: Vec<PersistentVolumeClaim> = Vec::new();
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    for pv in &plan.bindings {
        let name = pv.metadata.name.clone().unwrap_or_default();
        let new = pvs
            .replace(&name, &PostParams::default(), pv)
            .await
            .map_err(|e| format!("binding volumes: {}", api_message(e)))?;
        let claim = pv
            .spec
            .as_ref()
            .and_then(|s| s.claim_ref.as_ref())
            .and_then(|r| r.name.clone())
            .unwrap_or_default();
        tracing::debug!(volume = %name, %claim, node = %plan.node, "pre-bound volume");
        written_pvs.push(new);
    }
    for c in &plan.provisions {
        let ns = c.metadata.namespace.clone().unwrap_or_default();
        let name = c.metadata.name.clone().unwrap_or_default();
        let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
        // Only the annotation, as a merge patch: the PV controller writes the fresh claim
        // (finalizer, phase, events) at the same moment, and a full replace would lose that
        // race for nothing. Volumes keep the conditional replace: two claims may want one.
        let node = c
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(ANN_SELECTED_NODE))
            .cloned()
            .unwrap_or_default();
        let patch = serde_json::json!({"metadata": {"annotations": {ANN_SELECTED_NODE: node}}});
        let new = api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| format!("binding volumes: {}", api_message(e)))?;
        tracing::debug!(claim = %format!("{ns}/{name}"), node = %plan.node, "selected node");
        written_pvcs.push(new);
    }
    loop {
        // Registered before the check, so an event between the check and the await still
        // wakes us.
        let changed = cache.changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        let verdict = check_bindings(
            &cache.read(),
            plan,
            node_labels,
            &written_pvs,
            &written_pvcs,
        );
        match verdict {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => return Err(format!("binding volumes: {e}")),
        }
        tokio::select! {
            _ = &mut changed => {}
            // Upstream polls every second; events make that a fallback here.
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = tokio::time::sleep_until(deadline) => {
                return Err("binding volumes: context deadline exceeded".into());
            }
        }
    }
}

fn api_message(e: kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message,
        other => other.to_string(),
    }
}
