//! The side effects controllers have on the cluster, behind small traits (`PodControl`,
//! `ReplicaSetControl`, `DeploymentControl`, `EventRecorder`), with the kube-client
//! implementation and a recording fake for unit tests.

use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Event, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use serde_json::json;

/// Errors from a side effect.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server refused or failed the request.
    #[error("API request failed: {0}")]
    Api(#[from] kube::Error),
    /// The object to change was not found.
    #[error("not found: {0}")]
    NotFound(String),
    /// An injected failure (fakes only).
    #[error("injected failure: {0}")]
    Injected(String),
}

/// Results of side effects.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Whether the target is already gone (a delete that raced another deleter).
    pub fn is_not_found(&self) -> bool {
        match self {
            Error::Api(kube::Error::Api(s)) => s.code == 404,
            Error::Api(_) => false,
            Error::NotFound(_) => true,
            Error::Injected(_) => false,
        }
    }

    /// Whether the write lost an optimistic-concurrency race (retry from fresh state).
    pub fn is_conflict(&self) -> bool {
        match self {
            Error::Api(kube::Error::Api(s)) => s.code == 409,
            Error::Api(_) => false,
            Error::NotFound(_) => false,
            Error::Injected(_) => false,
        }
    }

    /// Whether a create found the name taken.
    pub fn is_already_exists(&self) -> bool {
        match self {
            Error::Api(kube::Error::Api(s)) => s.code == 409 && s.reason == "AlreadyExists",
            Error::Api(_) => false,
            Error::NotFound(_) => false,
            Error::Injected(_) => false,
        }
    }
}

/// Creating, deleting and re-owning pods.
#[async_trait]
pub trait PodControl: Send + Sync {
    /// Create `pod` (it carries `generateName`); returns the stored pod with its name.
    async fn create_pod(&self, namespace: &str, pod: &Pod) -> Result<Pod>;
    /// Delete a pod, only if it still has `uid`.
    async fn delete_pod(&self, namespace: &str, name: &str, uid: &str) -> Result<()>;
    /// Replace a pod's ownerReferences (adopt or release), only if it still has `uid`.
    async fn set_pod_owners(
        &self,
        namespace: &str,
        name: &str,
        uid: &str,
        owners: &[OwnerReference],
    ) -> Result<()>;
}

/// Writing ReplicaSets.
#[async_trait]
pub trait ReplicaSetControl: Send + Sync {
    /// Create a ReplicaSet.
    async fn create_replica_set(&self, rs: &ReplicaSet) -> Result<ReplicaSet>;
    /// Replace a ReplicaSet (optimistic: carries its resourceVersion).
    async fn update_replica_set(&self, rs: &ReplicaSet) -> Result<ReplicaSet>;
    /// Replace a ReplicaSet's status.
    async fn update_replica_set_status(&self, rs: &ReplicaSet) -> Result<ReplicaSet>;
    /// Delete a ReplicaSet, only if it still has `uid`.
    async fn delete_replica_set(&self, namespace: &str, name: &str, uid: &str) -> Result<()>;
    /// Replace a ReplicaSet's ownerReferences (adopt or release).
    async fn set_replica_set_owners(
        &self,
        namespace: &str,
        name: &str,
        uid: &str,
        owners: &[OwnerReference],
    ) -> Result<()>;
}

/// Writing Deployment status.
#[async_trait]
pub trait DeploymentControl: Send + Sync {
    /// Replace a Deployment's status.
    async fn update_deployment_status(&self, d: &Deployment) -> Result<Deployment>;
    /// Set one annotation on a Deployment (status writes cannot change metadata here).
    async fn set_deployment_annotation(
        &self,
        d: &Deployment,
        key: &str,
        value: &str,
    ) -> Result<Deployment>;
}

/// Recording Events about objects, for `kubectl describe` and `kubectl get events`.
pub trait EventRecorder: Send + Sync {
    /// Record an event (best effort: failures are logged, never returned).
    fn record(&self, about: &ObjectReference, type_: &str, reason: &str, message: String);
}

/// A reference to `obj` for events and owner lookups.
pub fn object_reference<K: kube::Resource<DynamicType = ()>>(obj: &K) -> ObjectReference {
    let meta = obj.meta();
    ObjectReference {
        api_version: Some(K::api_version(&()).to_string()),
        kind: Some(K::kind(&()).to_string()),
        namespace: meta.namespace.clone(),
        name: meta.name.clone(),
        uid: meta.uid.clone(),
        resource_version: meta.resource_version.clone(),
        field_path: None,
    }
}

fn owners_patch(uid: &str, owners: &[OwnerReference]) -> serde_json::Value {
    // The uid in the patch makes the server refuse it if the object was replaced meanwhile.
    json!({"metadata": {"uid": uid, "ownerReferences": owners}})
}

/// The real thing: every side effect is an API request through `kube`.
#[derive(Clone)]
pub struct ClientControl {
    client: kube::Client,
    component: &'static str,
}

impl ClientControl {
    /// Side effects through `client`; events say they come from `component`.
    pub fn new(client: kube::Client, component: &'static str) -> ClientControl {
        ClientControl { client, component }
    }

    fn delete_params(uid: &str) -> DeleteParams {
        DeleteParams {
            preconditions: Some(Preconditions {
                uid: Some(uid.to_string()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        }
    }

    /// The client side effects go through.
    pub(crate) fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// Delete `namespace/name` of kind `K`, only if it still has `uid`.
    pub(crate) async fn delete_uid<K>(&self, namespace: &str, name: &str, uid: &str) -> Result<()>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let api: Api<K> = Api::namespaced(self.client.clone(), namespace);
        api.delete(name, &Self::delete_params(uid)).await?;
        Ok(())
    }

    /// Replace the ownerReferences of `namespace/name` of kind `K` (guarded by its uid).
    async fn patch_owners<K>(
        &self,
        namespace: &str,
        name: &str,
        uid: &str,
        owners: &[OwnerReference],
    ) -> Result<()>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let api: Api<K> = Api::namespaced(self.client.clone(), namespace);
        api.patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(owners_patch(uid, owners)),
        )
        .await?;
        Ok(())
    }
}

fn ns_of(meta: &ObjectMeta) -> &str {
    meta.namespace.as_deref().unwrap_or("default")
}

#[async_trait]
impl PodControl for ClientControl {
    async fn create_pod(&self, namespace: &str, pod: &Pod) -> Result<Pod> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        Ok(api.create(&PostParams::default(), pod).await?)
    }

    async fn delete_pod(&self, namespace: &str, name: &str, uid: &str) -> Result<()> {
        self.delete_uid::<Pod>(namespace, name, uid).await
    }

    async fn set_pod_owners(
        &self,
        namespace: &str,
        name: &str,
        uid: &str,
        owners: &[OwnerReference],
    ) -> Result<()> {
        self.patch_owners::<Pod>(namespace, name, uid, owners).await
    }
}

#[async_trait]
impl ReplicaSetControl for ClientControl {
    async fn create_replica_set(&self, rs: &ReplicaSet) -> Result<ReplicaSet> {
        let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), ns_of(&rs.metadata));
        Ok(api.create(&PostParams::default(), rs).await?)
    }

    async fn update_replica_set(&self, rs: &ReplicaSet) -> Result<ReplicaSet> {
        let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), ns_of(&rs.metadata));
        let name = rs.metadata.name.as_deref().unwrap_or_default();
        Ok(api.replace(name, &PostParams::default(), rs).await?)
    }

    async fn update_replica_set_status(&self, rs: &ReplicaSet) -> Result<ReplicaSet> {
        let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), ns_of(&rs.metadata));
        let name = rs.metadata.name.as_deref().unwrap_or_default();
        Ok(api.replace_status(name, &PostParams::default(), rs).await?)
    }

    async fn delete_replica_set(&self, namespace: &str, name: &str, uid: &str) -> Result<()> {
        self.delete_uid::<ReplicaSet>(namespace, name, uid).await
    }

    async fn set_replica_set_owners(
        &self,
        namespace: &str,
        name: &str,
        uid: &str,
        owners: &[OwnerReference],
    ) -> Result<()> {
        self.patch_owners::<ReplicaSet>(namespace, name, uid, owners)
            .await
    }
}

#[async_trait]
impl DeploymentControl for ClientControl {
    async fn update_deployment_status(&self, d: &Deployment) -> Result<Deployment> {
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), ns_of(&d.metadata));
        let name = d.metadata.name.as_deref().unwrap_or_default();
        Ok(api.replace_status(name, &PostParams::default(), d).await?)
    }

    async fn set_deployment_annotation(
        &self,
        d: &Deployment,
        key: &str,
        value: &str,
    ) -> Result<Deployment> {
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), ns_of(&d.metadata));
        let name = d.metadata.name.as_deref().unwrap_or_default();
        let patch = json!({"metadata": {"annotations": {key: value}}});
        Ok(api
            .patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await?)
    }
}

static EVENT_SEQ: AtomicU64 = AtomicU64::new(0);

/// Identical events within this window are folded into one with a count (client-go's
/// EventCorrelator: 10 minutes).
const EVENT_AGGREGATION_WINDOW: jiff::SignedDuration = jiff::SignedDuration::from_secs(600);
/// At most this many distinct events are remembered (client-go's LRU holds 4096).
const EVENT_CACHE_SIZE: usize = 4096;

/// Event identity → (event namespace, name, count, firstTimestamp, lastTimestamp).
type EventCache =
    std::collections::HashMap<String, (String, String, i32, jiff::Timestamp, jiff::Timestamp)>;
static EVENT_CACHE: std::sync::LazyLock<std::sync::Mutex<EventCache>> =
    std::sync::LazyLock::new(Default::default);

impl EventRecorder for ClientControl {
    fn record(&self, about: &ObjectReference, type_: &str, reason: &str, message: String) {
        let namespace = about.namespace.clone().unwrap_or_else(|| "default".into());
        let now = jiff::Timestamp::now();
        // Same involved object, reason, message, type and source: the same event, counted.
        let identity = serde_json::to_string(&json!([
            about.api_version,
            about.kind,
            about.namespace,
            about.name,
            about.uid,
            about.field_path,
            type_,
            reason,
            message,
            self.component
        ]))
        .unwrap_or_default();
        let (name, count, first) = {
            let mut cache = EVENT_CACHE.lock().unwrap_or_else(|e| e.into_inner());
            if cache.len() >= EVENT_CACHE_SIZE {
                cache.retain(|_, e| now.duration_since(e.4) < EVENT_AGGREGATION_WINDOW);
                if cache.len() >= EVENT_CACHE_SIZE {
                    cache.clear();
                }
            }
            match cache.get_mut(&identity) {
                Some(e) if now.duration_since(e.4) < EVENT_AGGREGATION_WINDOW => {
                    e.2 = e.2.saturating_add(1);
                    e.4 = now;
                    (e.1.clone(), e.2, e.3)
                }
                _ => {
                    // Upstream names events `<object>.<unique hex>`; nanoseconds plus a counter.
                    let seq = EVENT_SEQ.fetch_add(1, Ordering::Relaxed);
                    let name = format!(
                        "{}.{:x}",
                        about.name.as_deref().unwrap_or("object"),
                        (now.as_nanosecond() as u64).wrapping_add(seq)
                    );
                    cache.insert(identity, (namespace.clone(), name.clone(), 1, now, now));
                    (name, 1, now)
                }
            }
        };
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.clone()),
                ..ObjectMeta::default()
            },
            involved_object: about.clone(),
            reason: Some(reason.to_string()),
            message: Some(message),
            type_: Some(type_.to_string()),
            count: Some(count),
            first_timestamp: Some(Time(first)),
            last_timestamp: Some(Time(now)),
            source: Some(k8s_openapi::api::core::v1::EventSource {
                component: Some(self.component.to_string()),
                host: None,
            }),
            reporting_component: Some(self.component.to_string()),
            reporting_instance: Some(self.component.to_string()),
            ..Event::default()
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        let reason = reason.to_string();
        // Fire and forget: a controller never waits on, or fails because of, an event.
        tokio::spawn(async move {
            let patch = Patch::Merge(json!({"count": count, "lastTimestamp": Time(now)}));
            let pp = PatchParams::default();
            let patch_it = || api.patch(&name, &pp, &patch);
            let result = if count == 1 {
                match api.create(&PostParams::default(), &event).await {
                    // A later repeat's create won the race: count this one in.
                    Err(kube::Error::Api(s)) if s.code == 409 => patch_it().await.map(|_| ()),
                    r => r.map(|_| ()),
                }
            } else {
                match patch_it().await {
                    // The first occurrence is not stored (yet, or any more): write it whole.
                    Err(kube::Error::Api(s)) if s.code == 404 => {
                        api.create(&PostParams::default(), &event).await.map(|_| ())
                    }
                    r => r.map(|_| ()),
                }
            };
            if let Err(e) = result {
                tracing::debug!(reason = %reason, error = %e, "event not recorded");
            }
        });
    }
}

/// One side effect a controller asked for, as the fake records it.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// A pod created from a template (its generateName, as names are server-made).
    CreatePod {
        namespace: String,
        generate_name: String,
    },
    /// A pod deleted.
    DeletePod { namespace: String, name: String },
    /// A pod's owners replaced (adopt/release).
    SetPodOwners { name: String, owners: Vec<String> },
    /// A ReplicaSet created.
    CreateReplicaSet { name: String, replicas: i32 },
    /// A ReplicaSet's spec/metadata replaced.
    UpdateReplicaSet { name: String, replicas: i32 },
    /// A ReplicaSet's status replaced.
    UpdateReplicaSetStatus { name: String },
    /// A ReplicaSet deleted.
    DeleteReplicaSet { name: String },
    /// A ReplicaSet's owners replaced.
    SetReplicaSetOwners { name: String, owners: Vec<String> },
    /// A Deployment's status replaced.
    UpdateDeploymentStatus { name: String },
    /// A Deployment annotation set.
    SetDeploymentAnnotation { key: String, value: String },
    /// An event recorded.
    Event { reason: String, message: String },
}

/// A recording fake of every control trait: it remembers what was asked, echoes objects back
/// and names created pods `<generateName><n>`.
#[derive(Default)]
pub struct Recorder {
    actions: std::sync::Mutex<Vec<Action>>,
    created_pods: std::sync::Mutex<Vec<Pod>>,
    statuses: std::sync::Mutex<Vec<serde_json::Value>>,
    seq: AtomicU64,
    /// Fail every pod create after this many successes (for slow-start tests).
    pub fail_pod_creates_after: Option<u64>,
}

impl Recorder {
    /// A fresh recorder.
    pub fn new() -> Recorder {
        Recorder::default()
    }

    /// A recorder whose pod creates fail after `n` successes.
    pub fn failing_pod_creates_after(n: u64) -> Recorder {
        Recorder {
            fail_pod_creates_after: Some(n),
            ..Recorder::default()
        }
    }

    fn push(&self, a: Action) {
        self.actions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(a);
    }

    /// Everything recorded so far.
    pub fn actions(&self) -> Vec<Action> {
        self.actions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Only the non-event actions.
    pub fn writes(&self) -> Vec<Action> {
        self.actions()
            .into_iter()
            .filter(|a| !matches!(a, Action::Event { .. }))
            .collect()
    }

    /// Only the events, as `reason: message`.
    pub fn events(&self) -> Vec<String> {
        self.actions()
            .into_iter()
            .filter_map(|a| match a {
                Action::Event { reason, message } => Some(format!("{reason}: {message}")),
                _ => None,
            })
            .collect()
    }

    /// Pods created so far.
    pub fn created_pods(&self) -> Vec<Pod> {
        self.created_pods
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Status objects written so far (ReplicaSet or Deployment status as JSON).
    pub fn statuses(&self) -> Vec<serde_json::Value> {
        self.statuses
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

fn owner_names(owners: &[OwnerReference]) -> Vec<String> {
    owners.iter().map(|o| o.name.clone()).collect()
}

#[async_trait]
impl PodControl for Recorder {
    async fn create_pod(&self, namespace: &str, pod: &Pod) -> Result<Pod> {
        let n = self.seq.fetch_add(1, Ordering::SeqCst);
        if self.fail_pod_creates_after.is_some_and(|limit| n >= limit) {
            return Err(Error::Injected("pod create refused".into()));
        }
        let generate_name = pod.metadata.generate_name.clone().unwrap_or_default();
        self.push(Action::CreatePod {
            namespace: namespace.to_string(),
            generate_name: generate_name.clone(),
        });
        let mut created = pod.clone();
        created.metadata.name = Some(format!("{generate_name}{n}"));
        created.metadata.namespace = Some(namespace.to_string());
        created.metadata.uid = Some(format!("uid-{generate_name}{n}"));
        self.created_pods
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(created.clone());
        Ok(created)
    }

    async fn delete_pod(&self, namespace: &str, name: &str, _uid: &str) -> Result<()> {
        self.push(Action::DeletePod {
            namespace: namespace.to_string(),
            name: name.to_string(),
        });
        Ok(())
    }

    async fn set_pod_owners(
        &self,
        _namespace: &str,
        name: &str,
        _uid: &str,
        owners: &[OwnerReference],
    ) -> Result<()> {
        self.push(Action::SetPodOwners {
            name: name.to_string(),
            owners: owner_names(owners),
        });
        Ok(())
    }
}

#[async_trait]
impl ReplicaSetControl for Recorder {
    async fn create_replica_set(&self, rs: &ReplicaSet) -> Result<ReplicaSet> {
        self.push(Action::CreateReplicaSet {
            name: rs.metadata.name.clone().unwrap_or_default(),
            replicas: rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
        });
        let mut created = rs.clone();
        created.metadata.uid = Some(format!(
            "uid-{}",
            rs.metadata.name.as_deref().unwrap_or_default()
        ));
        Ok(created)
    }

    async fn update_replica_set(&self, rs: &ReplicaSet) -> Result<ReplicaSet> {
        self.push(Action::UpdateReplicaSet {
            name: rs.metadata.name.clone().unwrap_or_default(),
            replicas: rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
        });
        Ok(rs.clone())
    }

    async fn update_replica_set_status(&self, rs: &ReplicaSet) -> Result<ReplicaSet> {
        self.push(Action::UpdateReplicaSetStatus {
            name: rs.metadata.name.clone().unwrap_or_default(),
        });
        self.statuses
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(serde_json::to_value(&rs.status).unwrap_or_default());
        Ok(rs.clone())
    }

    async fn delete_replica_set(&self, _namespace: &str, name: &str, _uid: &str) -> Result<()> {
        self.push(Action::DeleteReplicaSet {
            name: name.to_string(),
        });
        Ok(())
    }

    async fn set_replica_set_owners(
        &self,
        _namespace: &str,
        name: &str,
        _uid: &str,
        owners: &[OwnerReference],
    ) -> Result<()> {
        self.push(Action::SetReplicaSetOwners {
            name: name.to_string(),
            owners: owner_names(owners),
        });
        Ok(())
    }
}

#[async_trait]
impl DeploymentControl for Recorder {
    async fn update_deployment_status(&self, d: &Deployment) -> Result<Deployment> {
        self.push(Action::UpdateDeploymentStatus {
            name: d.metadata.name.clone().unwrap_or_default(),
        });
        self.statuses
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(serde_json::to_value(&d.status).unwrap_or_default());
        Ok(d.clone())
    }

    async fn set_deployment_annotation(
        &self,
        d: &Deployment,
        key: &str,
        value: &str,
    ) -> Result<Deployment> {
        self.push(Action::SetDeploymentAnnotation {
            key: key.to_string(),
            value: value.to_string(),
        });
        let mut d = d.clone();
        d.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(key.to_string(), value.to_string());
        Ok(d)
    }
}

impl EventRecorder for Recorder {
    fn record(&self, _about: &ObjectReference, _type: &str, reason: &str, message: String) {
        self.push(Action::Event {
            reason: reason.to_string(),
            message,
        });
    }
}
