//! The API server's own objects and lifecycles: the built-in namespaces and the `kubernetes`
//! Service, pods whose grace period ran out, and namespaces being terminated (everything in
//! them is deleted, then the namespace goes).

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use skiff_api::registry::{self, ResourceSpec};
use tokio_util::sync::CancellationToken;

use crate::error::{ApiError, Result};
use crate::objects::{DeleteOptions, ListQuery, UpdateScope, WriteOptions};
use crate::{App, spec_of};

/// Namespaces every cluster has.
pub const SYSTEM_NAMESPACES: &[&str] =
    &["default", "kube-system", "kube-public", "kube-node-lease"];

/// How often the lifecycle loop looks for work when nothing wakes it.
const RESYNC: Duration = Duration::from_secs(2);

async fn ensure(app: &App, spec: &ResourceSpec, ns: Option<&str>, obj: Value) -> Result<()> {
    let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
    match app.objects.get(spec, ns, &name).await {
        Ok(_) => Ok(()),
        Err(ApiError::NotFound { .. }) => {
            let mut obj = obj;
            crate::admission::admit_create(app, spec, ns, &mut obj).await?;
            match app
                .objects
                .create(spec, ns, obj, WriteOptions::default())
                .await
            {
                Ok(_) | Err(ApiError::AlreadyExists { .. }) => Ok(()),
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

/// Create the objects every cluster has, if missing.
pub async fn bootstrap(app: &App, host: &str, port: u16) -> Result<()> {
    let namespaces = spec_of("", "namespaces");
    for ns in SYSTEM_NAMESPACES {
        ensure(
            app,
            namespaces,
            None,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        )
        .await?;
    }
    let ip = if host.parse::<std::net::Ipv4Addr>().is_ok() {
        host.to_string()
    } else {
        "127.0.0.1".to_string()
    };
    ensure(
        app,
        spec_of("", "services"),
        Some("default"),
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {
                "type": "ClusterIP",
                "clusterIP": crate::admission::KUBERNETES_SERVICE_IP,
                "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}],
                "sessionAffinity": "None",
            },
        }),
    )
    .await?;
    let endpoints = json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": [{"addresses": [{"ip": ip}], "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}],
    });
    reconcile(app, spec_of("", "endpoints"), Some("default"), endpoints).await?;
    let slice = json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"kubernetes.io/service-name": "kubernetes"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [ip], "conditions": {"ready": true}}],
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
    });
    reconcile(
        app,
        spec_of("discovery.k8s.io", "endpointslices"),
        Some("default"),
        slice,
    )
    .await?;
    // Cluster DNS at the address pods' resolv.conf names. Every node agent serves DNS on its
    // own address and publishes that as an EndpointSlice of this Service; the Local internal
    // traffic policy keeps each node's queries on the node.
    ensure(
        app,
        spec_of("", "services"),
        Some("kube-system"),
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "kube-dns", "namespace": "kube-system", "labels": {
                "k8s-app": "kube-dns", "kubernetes.io/cluster-service": "true",
                "kubernetes.io/name": "SkiffDNS",
            }},
            "spec": {
                "type": "ClusterIP",
                "clusterIP": crate::admission::DNS_SERVICE_IP,
                "ports": [
                    {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                    {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                ],
                "internalTrafficPolicy": "Local",
                "sessionAffinity": "None",
            },
        }),
    )
    .await?;
    // The built-in CSI driver's class, default as k3s's local-path (docs/storage.md). Only
    // created when missing: an admin may have edited or replaced it.
    ensure(
        app,
        spec_of("storage.k8s.io", "storageclasses"),
        None,
        json!({
            "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": "local-path", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
            "provisioner": "local.csi.skiff.dev",
            "reclaimPolicy": "Delete",
            "volumeBindingMode": "WaitForFirstConsumer",
            "allowVolumeExpansion": true,
        }),
    )
    .await?;
    Ok(())
}

/// Create `desired`, or overwrite the fields it sets when it already exists (the server's
/// address may change between starts).
async fn reconcile(app: &App, spec: &ResourceSpec, ns: Option<&str>, desired: Value) -> Result<()> {
    let name = desired["metadata"]["name"]
        .as_str()
        .unwrap_or("")
        .to_string();
    match app.objects.get(spec, ns, &name).await {
        Err(ApiError::NotFound { .. }) => ensure(app, spec, ns, desired).await,
        Err(e) => Err(e),
        Ok(_) => app
            .objects
            .update_with(
                spec,
                ns,
                &name,
                UpdateScope::All,
                WriteOptions::default(),
                None,
                |old| {
                    let mut new = old.clone();
                    if let (Some(n), Some(d)) = (new.as_object_mut(), desired.as_object()) {
                        for (k, v) in d {
                            if k != "metadata" {
                                n.insert(k.clone(), v.clone());
                            }
                        }
                    }
                    Ok(new)
                },
            )
            .await
            .map(|_| ()),
    }
}

/// The lifecycle loops: graceful pod deletions and namespace termination, until `shutdown`.
pub async fn run(app: Arc<App>, shutdown: CancellationToken) {
    tokio::spawn(reap_pods(app.clone(), shutdown.clone()));
    loop {
        if let Err(e) = sweep_namespaces(&app).await {
            tracing::warn!(error = %e, "namespace sweep failed; retrying");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = app.reaper.notified() => {}
            _ = tokio::time::sleep(RESYNC) => {}
        }
    }
}

fn is_deleting(obj: &Value) -> bool {
    obj["metadata"]["deletionTimestamp"].is_string()
}

type PodKey = (Option<String>, String);

fn pod_key(pod: &Value) -> PodKey {
    (
        pod["metadata"]["namespace"].as_str().map(str::to_string),
        pod["metadata"]["name"].as_str().unwrap_or("").to_string(),
    )
}

/// The key of a pod from its store key (`<prefix><namespace>/<name>`), as [`pod_key`] reads it
/// from the object.
fn pod_key_of_store_key(prefix: &str, key: &str) -> PodKey {
    let rest = key.strip_prefix(prefix).unwrap_or(key);
    match rest.split_once('/') {
        Some((ns, name)) => (Some(ns.to_string()), name.to_string()),
        None => (None, rest.to_string()),
    }
}

fn deadline_of(pod: &Value) -> Option<jiff::Timestamp> {
    pod["metadata"]["deletionTimestamp"]
        .as_str()
        .and_then(|t| t.parse().ok())
}

/// Removes pods whose grace period has ended. It follows pods through the watch cache and keeps
/// only the ones being deleted, so its cost does not grow with the number of pods.
async fn reap_pods(app: Arc<App>, shutdown: CancellationToken) {
    let pods = spec_of("", "pods");
    loop {
        if let Err(e) = follow_pods(&app, pods, &shutdown).await {
            tracing::warn!(error = %e, "pod reaper lost its watch; restarting");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(RESYNC) => {}
        }
    }
}

async fn follow_pods(
    app: &App,
    pods: &'static ResourceSpec,
    shutdown: &CancellationToken,
) -> Result<()> {
    use futures::StreamExt;
    let page = app
        .objects
        .list(pods, &ListQuery::default(), &is_deleting)
        .await?;
    let mut pending: std::collections::BTreeMap<PodKey, jiff::Timestamp> = page
        .items
        .iter()
        .filter_map(|p| deadline_of(p).map(|d| (pod_key(p), d)))
        .collect();
    let pods_prefix = pods.key_prefix();
    let mut events = app.watch.watch(&pods_prefix, page.revision).await?;
    loop {
        let now = jiff::Timestamp::now();
        let due: Vec<PodKey> = pending
            .iter()
            .filter(|(_, d)| **d <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            pending.remove(&key);
            app.objects
                .finish_deletion(pods, key.0.as_deref(), &key.1)
                .await?;
        }
        let next = pending
            .values()
            .min()
            .map(|d| {
                let wait = d.as_millisecond() - jiff::Timestamp::now().as_millisecond();
                Duration::from_millis(wait.clamp(0, 60_000) as u64 + 10)
            })
            .unwrap_or(Duration::from_secs(60));
        let item = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(next) => continue,
            item = events.next() => item,
        };
        match item {
            None => return Ok(()),
            Some(Err(e)) => return Err(e),
            Some(Ok(crate::watch_cache::CacheItem::Progress(_))) => {}
            Some(Ok(crate::watch_cache::CacheItem::Event(ev))) => {
                // Most pod events are not deletions: their bytes say so without a decode.
                let deleting = ev.kind == skiff_store::EventKind::Put
                    && crate::rawjson::mentions_key(ev.raw(), "deletionTimestamp");
                let key = if deleting {
                    pod_key(ev.object())
                } else {
                    pod_key_of_store_key(&pods_prefix, &ev.key)
                };
                let deadline = if deleting {
                    deadline_of(ev.object())
                } else {
                    None
                };
                match (ev.kind, deadline) {
                    (skiff_store::EventKind::Put, Some(deadline)) => {
                        pending.insert(key, deadline);
                    }
                    _ => {
                        pending.remove(&key);
                    }
                }
            }
        }
    }
}

async fn sweep_namespaces(app: &App) -> Result<()> {
    let namespaces = spec_of("", "namespaces");
    let page = app
        .objects
        .list(namespaces, &ListQuery::default(), &is_deleting)
        .await?;
    for ns in page.items {
        let name = ns["metadata"]["name"].as_str().unwrap_or("").to_string();
        terminate_namespace(app, &name).await?;
    }
    Ok(())
}

async fn terminate_namespace(app: &App, ns: &str) -> Result<()> {
    let mut remaining = 0usize;
    for spec in registry::RESOURCES
        .iter()
        .filter(|s| s.namespaced && s.is_stored())
    {
        let lq = ListQuery {
            namespace: Some(ns.to_string()),
            ..ListQuery::default()
        };
        let page = app.objects.list(spec, &lq, &|_| true).await?;
        for obj in page.items {
            remaining += 1;
            if is_deleting(&obj) {
                continue;
            }
            let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
            let opts = DeleteOptions {
                propagation_policy: Some("Background".into()),
                ..DeleteOptions::default()
            };
            match app.objects.delete(spec, Some(ns), &name, &opts).await {
                Ok(_) | Err(ApiError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
    }
    if remaining > 0 {
        return Ok(());
    }
    let namespaces = spec_of("", "namespaces");
    // Content is gone: drop the `kubernetes` finalizer; the update deletes the namespace once no
    // finalizer is left.
    let result = app
        .objects
        .update_with(
            namespaces,
            None,
            ns,
            UpdateScope::All,
            WriteOptions::default(),
            None,
            |old| {
                let mut new = old.clone();
                new["spec"]["finalizers"] = json!([]);
                Ok(new)
            },
        )
        .await;
    match result {
        Ok(_) | Err(ApiError::NotFound { .. }) => {}
        Err(e) => return Err(e),
    }
    app.objects.finish_deletion(namespaces, None, ns).await?;
    Ok(())
}
