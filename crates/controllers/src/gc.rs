//! The garbage collector: a graph of ownerReferences across every listable kind, which deletes
//! dependents whose owners are gone (Background), deletes dependents before their owner
//! (Foreground, the `foregroundDeletion` finalizer) or strips the owner from them (Orphan, the
//! `orphan` finalizer), and removes references to owners that no longer exist.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{
    DeleteParams, DynamicObject, Patch, PatchParams, Preconditions, PropagationPolicy,
};
use kube::core::ApiResource;
use kube::discovery::{Discovery, Scope, verbs};
use kube::{Api, ResourceExt};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::informer::Informer;
use crate::queue::{Key, WorkQueue};

/// Name in logs, as upstream's component.
pub const NAME: &str = "garbage-collector-controller";

/// The finalizer that makes an owner wait for its dependents' deletion.
pub const FOREGROUND: &str = "foregroundDeletion";
/// The finalizer that makes an owner release its dependents first.
pub const ORPHAN: &str = "orphan";

/// Errors of one GC step.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API request failed; the step is retried with backoff.
    #[error("API request failed: {0}")]
    Api(#[from] kube::Error),
    /// Discovery failed at start.
    #[error("discovery failed: {0}")]
    Discovery(String),
}

/// Result of a GC step.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What the graph remembers of one object.
#[derive(Clone, Debug)]
pub struct Node {
    /// Its kind's resource.
    pub resource: ApiResource,
    /// Whether the kind is namespaced.
    pub namespaced: bool,
    /// Namespace (empty when cluster-scoped).
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Its ownerReferences.
    pub owners: Vec<OwnerReference>,
    /// Whether it has a deletionTimestamp.
    pub deleting: bool,
    /// Its finalizers.
    pub finalizers: Vec<String>,
}

/// Objects by uid, and who depends on whom.
#[derive(Default)]
pub struct Graph {
    nodes: HashMap<String, Node>,
    // owner uid -> dependent uids; bounded by the objects in the cluster.
    dependents: HashMap<String, HashSet<String>>,
}

impl Graph {
    /// Insert or refresh an object.
    pub fn upsert(&mut self, uid: &str, node: Node) {
        self.remove(uid);
        for o in &node.owners {
            self.dependents
                .entry(o.uid.clone())
                .or_default()
                .insert(uid.to_string());
        }
        self.nodes.insert(uid.to_string(), node);
    }

    /// Forget an object.
    pub fn remove(&mut self, uid: &str) -> Option<Node> {
        let old = self.nodes.remove(uid)?;
        for o in &old.owners {
            if let Some(set) = self.dependents.get_mut(&o.uid) {
                set.remove(uid);
                if set.is_empty() {
                    self.dependents.remove(&o.uid);
                }
            }
        }
        Some(old)
    }

    /// The object with `uid`.
    pub fn get(&self, uid: &str) -> Option<&Node> {
        self.nodes.get(uid)
    }

    /// uids of the objects that name `uid` as an owner and still exist.
    pub fn dependents_of(&self, uid: &str) -> Vec<String> {
        self.dependents
            .get(uid)
            .map(|s| {
                s.iter()
                    .filter(|d| self.nodes.contains_key(*d))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The collector's side effects, and its one live read.
#[async_trait::async_trait]
pub trait GcControl: Send + Sync {
    /// Delete the object (only if it still has `uid`) with `policy`.
    async fn delete(&self, uid: &str, node: &Node, policy: PropagationPolicy) -> Result<()>;
    /// Replace the object's ownerReferences.
    async fn set_owners(&self, uid: &str, node: &Node, owners: Vec<OwnerReference>) -> Result<()>;
    /// Drop one finalizer from the object.
    async fn remove_finalizer(&self, uid: &str, node: &Node, finalizer: &str) -> Result<()>;
    /// Whether the owner `r` of `dependent` exists, read from the server (an unknown kind
    /// counts as existing: never delete on a guess).
    async fn owner_exists(&self, dependent: &Node, r: &OwnerReference) -> Result<bool>;
}

/// The real side effects through the API.
pub struct ClientGc {
    client: kube::Client,
    // (apiVersion, kind) -> (resource, namespaced), from discovery.
    kinds: HashMap<(String, String), (ApiResource, bool)>,
}

/// The collector: graph, queue, side effects.
pub struct GarbageCollector<W> {
    control: Arc<W>,
    graph: Mutex<Graph>,
    queue: WorkQueue,
}

fn uid_key(uid: &str) -> Key {
    // The GC's queue is keyed by uid (names can be reused, uids cannot).
    Key::new("", uid)
}

impl<W: GcControl> GarbageCollector<W> {
    /// A collector with an empty graph.
    pub fn new(control: Arc<W>) -> Self {
        GarbageCollector {
            control,
            graph: Mutex::new(Graph::default()),
            queue: WorkQueue::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Graph> {
        self.graph.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn observe(
        &self,
        resource: &ApiResource,
        namespaced: bool,
        old: Option<&DynamicObject>,
        new: Option<&DynamicObject>,
    ) {
        let mut g = self.lock();
        let mut touched: Vec<String> = Vec::new();
        for o in [old, new].into_iter().flatten() {
            touched.extend(o.owner_references().iter().map(|r| r.uid.clone()));
        }
        match new {
            Some(obj) => {
                let Some(uid) = obj.uid() else { return };
                let node = Node {
                    resource: resource.clone(),
                    namespaced,
                    namespace: obj.namespace().unwrap_or_default(),
                    name: obj.name_any(),
                    owners: obj.owner_references().to_vec(),
                    deleting: obj.metadata.deletion_timestamp.is_some(),
                    finalizers: obj.finalizers().to_vec(),
                };
                g.upsert(&uid, node);
                touched.push(uid);
            }
            None => {
                if let Some(uid) = old.and_then(|o| o.uid()) {
                    g.remove(&uid);
                    // Its dependents may now point at nothing.
                    touched.extend(g.dependents_of(&uid));
                }
            }
        }
        drop(g);
        for uid in touched {
            self.queue.add(uid_key(&uid));
        }
    }

    async fn delete(&self, uid: &str, node: &Node, policy: PropagationPolicy) -> Result<()> {
        tracing::info!(controller = NAME, kind = %node.resource.kind, namespace = %node.namespace, name = %node.name, ?policy, "deleting dependent");
        self.control.delete(uid, node, policy).await
    }

    async fn set_owners(&self, uid: &str, node: &Node, owners: Vec<OwnerReference>) -> Result<()> {
        self.control.set_owners(uid, node, owners).await
    }

    async fn remove_finalizer(&self, uid: &str, node: &Node, finalizer: &str) -> Result<()> {
        tracing::info!(controller = NAME, kind = %node.resource.kind, name = %node.name, finalizer, "removing finalizer");
        self.control.remove_finalizer(uid, node, finalizer).await
    }

    /// Whether the owner a reference names exists (cache first, then a live read).
    async fn owner_exists(&self, dependent: &Node, r: &OwnerReference) -> Result<bool> {
        if self.lock().get(&r.uid).is_some() {
            return Ok(true);
        }
        self.control.owner_exists(dependent, r).await
    }

    /// One level-triggered step for the object `uid`.
    pub async fn process(&self, uid: &str) -> Result<()> {
        let Some(node) = self.lock().get(uid).cloned() else {
            return Ok(());
        };
        let has = |f: &str| node.finalizers.iter().any(|x| x == f);
        if node.deleting && has(ORPHAN) {
            let deps = self.lock().dependents_of(uid);
            for dep in deps {
                let Some(d) = self.lock().get(&dep).cloned() else {
                    continue;
                };
                let owners: Vec<OwnerReference> =
                    d.owners.iter().filter(|o| o.uid != uid).cloned().collect();
                self.set_owners(&dep, &d, owners).await?;
            }
            return self.remove_finalizer(uid, &node, ORPHAN).await;
        }
        if node.deleting && has(FOREGROUND) {
            let deps = self.lock().dependents_of(uid);
            let mut blocking = 0;
            for dep in deps {
                let Some(d) = self.lock().get(&dep).cloned() else {
                    continue;
                };
                if d.owners
                    .iter()
                    .any(|o| o.uid == uid && o.block_owner_deletion == Some(true))
                {
                    blocking += 1;
                }
                if !d.deleting {
                    let has_own = !self.lock().dependents_of(&dep).is_empty();
                    let policy = if has_own {
                        PropagationPolicy::Foreground
                    } else {
                        PropagationPolicy::Background
                    };
                    self.delete(&dep, &d, policy).await?;
                }
            }
            if blocking == 0 {
                return self.remove_finalizer(uid, &node, FOREGROUND).await;
            }
            return Ok(());
        }
        if node.owners.is_empty() {
            return Ok(());
        }
        let (mut solid, mut dangling, mut waiting) = (Vec::new(), Vec::new(), Vec::new());
        for r in &node.owners {
            let owner = self.lock().get(&r.uid).cloned();
            match owner {
                Some(o) if o.deleting && o.finalizers.iter().any(|f| f == FOREGROUND) => {
                    waiting.push(r.clone())
                }
                Some(_) => solid.push(r.clone()),
                None => {
                    if self.owner_exists(&node, r).await? {
                        solid.push(r.clone());
                    } else {
                        dangling.push(r.clone());
                    }
                }
            }
        }
        if !solid.is_empty() {
            if !dangling.is_empty() || !waiting.is_empty() {
                // Keep only the live owners.
                return self.set_owners(uid, &node, solid).await;
            }
            return Ok(());
        }
        if !waiting.is_empty() && !self.lock().dependents_of(uid).is_empty() {
            return self.delete(uid, &node, PropagationPolicy::Foreground).await;
        }
        if node.deleting {
            return Ok(());
        }
        let policy = if has(ORPHAN) {
            PropagationPolicy::Orphan
        } else if has(FOREGROUND) {
            PropagationPolicy::Foreground
        } else {
            PropagationPolicy::Background
        };
        self.delete(uid, &node, policy).await
    }
}

impl ClientGc {
    fn api(&self, node: &Node) -> Api<DynamicObject> {
        if node.namespaced {
            Api::namespaced_with(self.client.clone(), &node.namespace, &node.resource)
        } else {
            Api::all_with(self.client.clone(), &node.resource)
        }
    }
}

#[async_trait::async_trait]
impl GcControl for ClientGc {
    async fn delete(&self, uid: &str, node: &Node, policy: PropagationPolicy) -> Result<()> {
        let dp = DeleteParams {
            propagation_policy: Some(policy.clone()),
            preconditions: Some(Preconditions {
                uid: Some(uid.to_string()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match self.api(node).delete(&node.name, &dp).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn set_owners(&self, uid: &str, node: &Node, owners: Vec<OwnerReference>) -> Result<()> {
        let patch = json!({"metadata": {"uid": uid, "ownerReferences": owners}});
        match self
            .api(node)
            .patch(&node.name, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn remove_finalizer(&self, uid: &str, node: &Node, finalizer: &str) -> Result<()> {
        let rest: Vec<&String> = node.finalizers.iter().filter(|f| *f != finalizer).collect();
        let patch = json!({"metadata": {"uid": uid, "finalizers": rest}});
        match self
            .api(node)
            .patch(&node.name, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn owner_exists(&self, dependent: &Node, r: &OwnerReference) -> Result<bool> {
        let Some((ar, namespaced)) = self.kinds.get(&(r.api_version.clone(), r.kind.clone()))
        else {
            // An unknown kind cannot be checked; never delete on a guess.
            return Ok(true);
        };
        let api: Api<DynamicObject> = if *namespaced {
            Api::namespaced_with(self.client.clone(), &dependent.namespace, ar)
        } else {
            Api::all_with(self.client.clone(), ar)
        };
        Ok(api
            .get_opt(&r.name)
            .await?
            .is_some_and(|o| o.uid().as_deref() == Some(r.uid.as_str())))
    }
}

/// Discover every listable, watchable, deletable kind (but events) and run the collector.
pub async fn start(
    client: kube::Client,
    shutdown: CancellationToken,
    tasks: &TaskTracker,
) -> Result<()> {
    let discovery = Discovery::new(client.clone())
        .run()
        .await
        .map_err(|e| Error::Discovery(e.to_string()))?;
    let mut kinds = HashMap::new();
    let mut watched = Vec::new();
    for group in discovery.groups() {
        for (ar, caps) in group.recommended_resources() {
            if !(caps.supports_operation(verbs::LIST)
                && caps.supports_operation(verbs::WATCH)
                && caps.supports_operation(verbs::DELETE))
            {
                continue;
            }
            let namespaced = matches!(caps.scope, Scope::Namespaced);
            kinds.insert(
                (ar.api_version.clone(), ar.kind.clone()),
                (ar.clone(), namespaced),
            );
            // Events are never owners nor owned in practice; upstream ignores them too.
            if ar.plural == "events" {
                continue;
            }
            watched.push((ar, namespaced));
        }
    }
    let gc = Arc::new(GarbageCollector::new(Arc::new(ClientGc {
        client: client.clone(),
        kinds,
    })));
    let mut stores = Vec::new();
    for (ar, namespaced) in watched {
        let mut inf: Informer<DynamicObject> =
            Informer::with_api(Api::all_with(client.clone(), &ar), ar.clone());
        let g = gc.clone();
        let ar2 = ar.clone();
        inf.on_change(Arc::new(move |old, new| {
            g.observe(&ar2, namespaced, old, new)
        }));
        stores.push(inf.store());
        tasks.spawn(inf.run(shutdown.clone()));
    }
    tracing::info!(controller = NAME, kinds = stores.len(), "watching kinds");
    for s in &stores {
        tokio::select! {
            r = s.wait_until_ready() => {
                if r.is_err() {
                    return Ok(());
                }
            }
            _ = shutdown.cancelled() => return Ok(()),
        }
    }
    let queue = gc.queue.clone();
    crate::spawn_workers(tasks, NAME, queue, shutdown, move |key| {
        let gc = gc.clone();
        async move { gc.process(&key.name).await.map(|()| None) }
    });
    Ok(())
}

#[cfg(test)]
mod tests;
