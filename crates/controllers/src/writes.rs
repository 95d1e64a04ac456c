//! Side effects of the network and node controllers (Endpoints, EndpointSlice, node IPAM, node
//! lifecycle, ServiceAccount, disruption) behind one small JSON-level trait, with the kube-client
//! implementation and a recording fake. JSON keeps the trait object-safe across kinds.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::Api;
use kube::api::{ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::Value;

use crate::control::{ClientControl, Error, EventRecorder, Result};

/// A workload's `spec.replicas` and its controller (kind, name), as [`Writes::workload`] says.
pub type Workload = (i32, Option<(String, String)>);

/// The kinds these controllers write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// core/v1 Endpoints.
    Endpoints,
    /// discovery.k8s.io/v1 EndpointSlice.
    EndpointSlice,
    /// core/v1 Node (cluster-scoped: namespace "").
    Node,
    /// core/v1 Pod.
    Pod,
    /// core/v1 ServiceAccount.
    ServiceAccount,
    /// policy/v1 PodDisruptionBudget.
    PodDisruptionBudget,
}

impl Kind {
    fn resource(self) -> ApiResource {
        use k8s_openapi::api as a;
        match self {
            Kind::Endpoints => ApiResource::erase::<a::core::v1::Endpoints>(&()),
            Kind::EndpointSlice => ApiResource::erase::<a::discovery::v1::EndpointSlice>(&()),
            Kind::Node => ApiResource::erase::<a::core::v1::Node>(&()),
            Kind::Pod => ApiResource::erase::<a::core::v1::Pod>(&()),
            Kind::ServiceAccount => ApiResource::erase::<a::core::v1::ServiceAccount>(&()),
            Kind::PodDisruptionBudget => {
                ApiResource::erase::<a::policy::v1::PodDisruptionBudget>(&())
            }
        }
    }
}

/// Writes and the few reads (scale of a pod's controller) these controllers need.
#[async_trait]
pub trait Writes: EventRecorder + Send + Sync {
    /// Create an object (it may carry `generateName`); returns the stored object.
    async fn create(&self, kind: Kind, namespace: &str, obj: Value) -> Result<Value>;
    /// Replace an object (optimistic when it carries a resourceVersion).
    async fn replace(&self, kind: Kind, namespace: &str, name: &str, obj: Value) -> Result<()>;
    /// JSON merge patch of the object, or of its status subresource when `status`.
    async fn merge_patch(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
        patch: Value,
        status: bool,
    ) -> Result<()>;
    /// Delete an object, only if it still has `uid` when one is given.
    async fn delete(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
        uid: Option<&str>,
    ) -> Result<()>;
    /// Delete a pod at once (grace period 0), as the pod GC does for pods of vanished nodes.
    async fn force_delete_pod(&self, namespace: &str, name: &str, uid: Option<&str>) -> Result<()>;
    /// `spec.replicas` and the controller reference (kind, name) of a workload object
    /// (`apps/v1` ReplicaSet, Deployment, StatefulSet, `v1` ReplicationController).
    async fn workload(&self, kind: &str, namespace: &str, name: &str) -> Result<Option<Workload>>;
}

/// The real writer: API requests through `kube`; events through [`ClientControl`].
#[derive(Clone)]
pub struct ClientWrites {
    client: kube::Client,
    events: ClientControl,
}

impl ClientWrites {
    /// Writes through `client`; events say they come from `component`.
    pub fn new(client: kube::Client, component: &'static str) -> ClientWrites {
        ClientWrites {
            events: ClientControl::new(client.clone(), component),
            client,
        }
    }

    fn api(&self, kind: Kind, namespace: &str) -> Api<DynamicObject> {
        let ar = kind.resource();
        if namespace.is_empty() {
            Api::all_with(self.client.clone(), &ar)
        } else {
            Api::namespaced_with(self.client.clone(), namespace, &ar)
        }
    }
}

fn to_dynamic(obj: Value) -> Result<DynamicObject> {
    serde_json::from_value(obj).map_err(|e| Error::Injected(format!("bad object: {e}")))
}

impl EventRecorder for ClientWrites {
    fn record(&self, about: &ObjectReference, type_: &str, reason: &str, message: String) {
        self.events.record(about, type_, reason, message);
    }
}

#[async_trait]
impl Writes for ClientWrites {
    async fn create(&self, kind: Kind, namespace: &str, obj: Value) -> Result<Value> {
        let created = self
            .api(kind, namespace)
            .create(&PostParams::default(), &to_dynamic(obj)?)
            .await?;
        serde_json::to_value(created).map_err(|e| Error::Injected(e.to_string()))
    }

    async fn replace(&self, kind: Kind, namespace: &str, name: &str, obj: Value) -> Result<()> {
        self.api(kind, namespace)
            .replace(name, &PostParams::default(), &to_dynamic(obj)?)
            .await?;
        Ok(())
    }

    async fn merge_patch(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
        patch: Value,
        status: bool,
    ) -> Result<()> {
        let api = self.api(kind, namespace);
        let pp = PatchParams::default();
        if status {
            api.patch_status(name, &pp, &Patch::Merge(patch)).await?;
        } else {
            api.patch(name, &pp, &Patch::Merge(patch)).await?;
        }
        Ok(())
    }

    async fn delete(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
        uid: Option<&str>,
    ) -> Result<()> {
        let dp = DeleteParams {
            preconditions: uid.map(|u| kube::api::Preconditions {
                uid: Some(u.to_string()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        self.api(kind, namespace).delete(name, &dp).await?;
        Ok(())
    }

    async fn force_delete_pod(&self, namespace: &str, name: &str, uid: Option<&str>) -> Result<()> {
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: uid.map(|u| kube::api::Preconditions {
                uid: Some(u.to_string()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        self.api(Kind::Pod, namespace).delete(name, &dp).await?;
        Ok(())
    }

    async fn workload(&self, kind: &str, namespace: &str, name: &str) -> Result<Option<Workload>> {
        let ar = match kind {
            "ReplicaSet" => ApiResource::erase::<k8s_openapi::api::apps::v1::ReplicaSet>(&()),
            "Deployment" => ApiResource::erase::<k8s_openapi::api::apps::v1::Deployment>(&()),
            "StatefulSet" => ApiResource::erase::<k8s_openapi::api::apps::v1::StatefulSet>(&()),
            "ReplicationController" => {
                ApiResource::erase::<k8s_openapi::api::core::v1::ReplicationController>(&())
            }
            _ => return Ok(None),
        };
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), namespace, &ar);
        let Some(obj) = api.get_opt(name).await? else {
            return Ok(None);
        };
        let replicas = obj
            .data
            .pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .unwrap_or(1) as i32;
        let owner = obj
            .metadata
            .owner_references
            .unwrap_or_default()
            .into_iter()
            .find(|o| o.controller == Some(true))
            .map(|o| (o.kind, o.name));
        Ok(Some((replicas, owner)))
    }
}

/// One write as the fake records it.
#[derive(Clone, Debug, PartialEq)]
pub struct Write {
    /// `create`, `replace`, `patch`, `patch-status`, `delete` or `event`.
    pub verb: &'static str,
    /// Kind written (None for events).
    pub kind: Option<Kind>,
    /// Namespace ("" for cluster-scoped).
    pub namespace: String,
    /// Name (for creates: the generated or given name).
    pub name: String,
    /// Body, patch, or for events `{"type", "reason", "message", "object"}`.
    pub body: Value,
}

/// A recording fake: remembers every write; `workloads` answers [`Writes::workload`].
#[derive(Default)]
pub struct RecordingWrites {
    writes: Mutex<Vec<Write>>,
    seq: AtomicU64,
    /// `(kind, namespace, name)` → (replicas, controller).
    pub workloads: HashMap<(String, String, String), Workload>,
}

impl RecordingWrites {
    /// A fresh recorder.
    pub fn new() -> RecordingWrites {
        RecordingWrites::default()
    }

    fn push(&self, w: Write) {
        self.writes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(w);
    }

    /// Everything written so far.
    pub fn writes(&self) -> Vec<Write> {
        self.writes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Writes except events.
    pub fn objects(&self) -> Vec<Write> {
        self.writes()
            .into_iter()
            .filter(|w| w.verb != "event")
            .collect()
    }

    /// Events as `reason: message`.
    pub fn events(&self) -> Vec<String> {
        self.writes()
            .into_iter()
            .filter(|w| w.verb == "event")
            .map(|w| {
                format!(
                    "{}: {}",
                    w.body["reason"].as_str().unwrap_or(""),
                    w.body["message"].as_str().unwrap_or("")
                )
            })
            .collect()
    }
}

impl EventRecorder for RecordingWrites {
    fn record(&self, about: &ObjectReference, type_: &str, reason: &str, message: String) {
        self.push(Write {
            verb: "event",
            kind: None,
            namespace: about.namespace.clone().unwrap_or_default(),
            name: about.name.clone().unwrap_or_default(),
            body: serde_json::json!({"type": type_, "reason": reason, "message": message,
                "object": about.kind}),
        });
    }
}

#[async_trait]
impl Writes for RecordingWrites {
    async fn create(&self, kind: Kind, namespace: &str, mut obj: Value) -> Result<Value> {
        if obj["metadata"]["name"].as_str().is_none_or(str::is_empty) {
            let n = self.seq.fetch_add(1, Ordering::SeqCst);
            let base = obj["metadata"]["generateName"].as_str().unwrap_or("obj-");
            obj["metadata"]["name"] = Value::String(format!("{base}{n:05}"));
        }
        self.push(Write {
            verb: "create",
            kind: Some(kind),
            namespace: namespace.to_string(),
            name: obj["metadata"]["name"].as_str().unwrap_or("").to_string(),
            body: obj.clone(),
        });
        Ok(obj)
    }

    async fn replace(&self, kind: Kind, namespace: &str, name: &str, obj: Value) -> Result<()> {
        self.push(Write {
            verb: "replace",
            kind: Some(kind),
            namespace: namespace.to_string(),
            name: name.to_string(),
            body: obj,
        });
        Ok(())
    }

    async fn merge_patch(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
        patch: Value,
        status: bool,
    ) -> Result<()> {
        self.push(Write {
            verb: if status { "patch-status" } else { "patch" },
            kind: Some(kind),
            namespace: namespace.to_string(),
            name: name.to_string(),
            body: patch,
        });
        Ok(())
    }

    async fn delete(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
        _uid: Option<&str>,
    ) -> Result<()> {
        self.push(Write {
            verb: "delete",
            kind: Some(kind),
            namespace: namespace.to_string(),
            name: name.to_string(),
            body: Value::Null,
        });
        Ok(())
    }

    async fn force_delete_pod(
        &self,
        namespace: &str,
        name: &str,
        _uid: Option<&str>,
    ) -> Result<()> {
        self.push(Write {
            verb: "force-delete",
            kind: Some(Kind::Pod),
            namespace: namespace.to_string(),
            name: name.to_string(),
            body: Value::Null,
        });
        Ok(())
    }

    async fn workload(&self, kind: &str, namespace: &str, name: &str) -> Result<Option<Workload>> {
        Ok(self
            .workloads
            .get(&(kind.to_string(), namespace.to_string(), name.to_string()))
            .cloned())
    }
}

/// A cache seeded with `objs`, for unit tests.
#[cfg(test)]
pub(crate) fn store_of<K>(objs: Vec<K>) -> kube::runtime::reflector::Store<K>
where
    K: kube::Resource<DynamicType = ()> + Clone + 'static,
{
    let mut w: kube::runtime::reflector::store::Writer<K> = Default::default();
    for o in objs {
        w.apply_watcher_event(&kube::runtime::watcher::Event::Apply(o));
    }
    w.as_reader()
}

/// Start `sync` workers on `queue` (and the periodic resync over `resync`) once `ready`
/// says every cache the controller reads has listed once.
pub(crate) fn start_after<K, R, F, Fut, E>(
    tasks: &tokio_util::task::TaskTracker,
    name: &'static str,
    queue: crate::queue::WorkQueue,
    shutdown: tokio_util::sync::CancellationToken,
    ready: R,
    resync: kube::runtime::reflector::Store<K>,
    sync: F,
) where
    K: kube::Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
    R: std::future::Future<Output = bool> + Send + 'static,
    F: Fn(crate::queue::Key) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = std::result::Result<Option<std::time::Duration>, E>>
        + Send
        + 'static,
    E: std::fmt::Display + 'static,
{
    let t = tasks.clone();
    tasks.spawn(async move {
        tokio::select! {
            ok = ready => if !ok {
                tracing::error!(controller = name, "an informer stopped before it synced");
                return;
            },
            _ = shutdown.cancelled() => return,
        }
        tracing::debug!(controller = name, "caches synced; starting workers");
        crate::spawn_resync(&t, resync, queue.clone(), shutdown.clone());
        crate::spawn_workers(&t, name, queue, shutdown, sync);
    });
}
