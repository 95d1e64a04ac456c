//! Watch caches (kube-runtime reflectors) of Services, EndpointSlices and Pods, folded into a
//! fresh [`Snapshot`] after every burst of changes.

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{Pod, PodSpec, PodStatus, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::reflector::{self, Store, reflector};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};

use crate::server::SnapshotHandle;
use crate::snapshot::Snapshot;

/// Pods are the largest kind watched; keep only what DNS reads of them.
fn slim_pod(pod: &mut Pod) {
    pod.metadata.managed_fields = None;
    pod.metadata.annotations = None;
    pod.metadata.labels = None;
    pod.metadata.owner_references = None;
    if let Some(spec) = pod.spec.as_mut() {
        *spec = PodSpec {
            host_network: spec.host_network,
            ..PodSpec::default()
        };
    }
    if let Some(status) = pod.status.as_mut() {
        *status = PodStatus {
            pod_ip: status.pod_ip.take(),
            pod_ips: status.pod_ips.take(),
            phase: status.phase.take(),
            ..PodStatus::default()
        };
    }
}

fn is_ready<K: kube::Resource + Clone>(store: &Store<K>) -> bool
where
    K::DynamicType: std::hash::Hash + Eq + Clone,
{
    store.wait_until_ready().now_or_never().is_some()
}

fn serial() -> u32 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    u32::try_from(secs % u64::from(u32::MAX)).unwrap_or(0)
}

/// Run until the watch streams end (they do not; the caller cancels this future).
pub(crate) async fn watch(client: Client, handle: SnapshotHandle) {
    let config = watcher::Config::default();
    let (services, services_w) = reflector::store::<Service>();
    let (slices, slices_w) = reflector::store::<EndpointSlice>();
    let (pods, pods_w) = reflector::store::<Pod>();
    let svc_stream = reflector(
        services_w,
        watcher(Api::<Service>::all(client.clone()), config.clone()).default_backoff(),
    )
    .map(|r| r.map(|_| ()))
    .boxed();
    let slice_stream = reflector(
        slices_w,
        watcher(Api::<EndpointSlice>::all(client.clone()), config.clone()).default_backoff(),
    )
    .map(|r| r.map(|_| ()))
    .boxed();
    let pod_stream = reflector(
        pods_w,
        watcher(Api::<Pod>::all(client), config)
            .default_backoff()
            .modify(slim_pod),
    )
    .map(|r| r.map(|_| ()))
    .boxed();
    let mut events = futures::stream::select_all([svc_stream, slice_stream, pod_stream]);
    let mut synced = false;
    while let Some(event) = events.next().await {
        if let Err(error) = event {
            tracing::warn!(%error, "cluster DNS watch error (retrying with backoff)");
            continue;
        }
        // Fold whatever else is already queued into the same rebuild.
        while let Some(Some(more)) = events.next().now_or_never() {
            if let Err(error) = more {
                tracing::warn!(%error, "cluster DNS watch error (retrying with backoff)");
            }
        }
        if !synced {
            synced = is_ready(&services) && is_ready(&slices) && is_ready(&pods);
            if !synced {
                continue;
            }
            tracing::info!("cluster DNS caches synced");
        }
        let (s, e, p) = (services.state(), slices.state(), pods.state());
        let snapshot = Snapshot::build(
            s.iter().map(|o| o.as_ref()),
            e.iter().map(|o| o.as_ref()),
            p.iter().map(|o| o.as_ref()),
            serial(),
        );
        handle.set(snapshot);
    }
}
