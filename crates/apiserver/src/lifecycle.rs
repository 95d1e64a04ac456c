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

/// The lifecycle loop: runs until `shutdown`.
pub async fn run(app: Arc<App>, shutdown: CancellationToken) {
    loop {
        if let Err(e) = sweep(&app).await {
            tracing::warn!(error = %e, "lifecycle sweep failed; retrying");
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

async fn sweep(app: &App) -> Result<()> {
    // Pods whose grace period is over.
    let pods = spec_of("", "pods");
    let page = app
        .objects
        .list(pods, &ListQuery::default(), &is_deleting)
        .await?;
    for pod in page.items {
        let ns = pod["metadata"]["namespace"].as_str().map(str::to_string);
        let name = pod["metadata"]["name"].as_str().unwrap_or("").to_string();
        app.objects
            .finish_deletion(pods, ns.as_deref(), &name)
            .await?;
    }
    // Namespaces being terminated.
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
