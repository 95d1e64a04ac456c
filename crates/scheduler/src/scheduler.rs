//! The scheduling loop: informers (kube watchers) feed the cache (snapshot) and the queue; each
//! popped pod runs one IO-free cycle; the pod is assumed on its node at once and bound through
//! `pods/binding` in the background, rolled back if the bind fails. Pods that fit nowhere get
//! `PodScheduled=False` and a `FailedScheduling` event; DefaultPreemption evicts victims.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{
    Binding, Event, EventSource, Node, ObjectReference, PersistentVolume, PersistentVolumeClaim,
    Pod, ReplicationController, Service,
};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::scheduling::v1::PriorityClass;
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher;
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::DEFAULT_SCHEDULER_NAME;
use crate::framework::{ClusterEvent, FitError, Framework, ScheduleError};
use crate::plugins::volume_binding::{self, PodVolumes};
use crate::preemption::{self, Outcome, Pdb};
use crate::queue::SchedulingQueue;
use crate::selector::{Labels, Selector};
use crate::snapshot::{NodeInfo, PodInfo, Snapshot};

/// Errors of the scheduler's setup (the loop itself logs and retries).
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error("reading kubeconfig {path}: {source}")]
    Kubeconfig {
        path: String,
        source: kube::config::KubeconfigError,
    },
    #[error("building the client: {0}")]
    Client(#[from] kube::Error),
}

/// Builds a `kube` client from a kubeconfig file (the one `skiff server` writes).
pub async fn client_from_kubeconfig(
    path: &std::path::Path,
) -> Result<kube::Client, SchedulerError> {
    let kc =
        kube::config::Kubeconfig::read_from(path).map_err(|source| SchedulerError::Kubeconfig {
            path: path.display().to_string(),
            source,
        })?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await
        .map_err(|source| SchedulerError::Kubeconfig {
            path: path.display().to_string(),
            source,
        })?;
    Ok(kube::Client::try_from(cfg)?)
}

/// Concurrent `pods/binding` requests.
const MAX_BINDS_IN_FLIGHT: usize = 32;

/// A pending pod in the queue.
struct Queued {
    pod: Arc<Pod>,
    /// The pod as its last failed cycle saw it, for the queueing hints (`None` before the first
    /// failure or after a change that re-queued it: any event then moves it).
    info: Option<Arc<PodInfo>>,
}

/// Moves the unschedulable pods whose queueing hints say `event` may help them.
fn requeue(
    queue: &mut SchedulingQueue<Queued>,
    framework: &Framework,
    snapshot: &Snapshot,
    event: ClusterEvent,
) {
    // A preemptor nominated to the node a pod left waited for its victims; once it fits
    // there it goes straight to active (upstream activates the preemptor when its victims
    // are gone), not through backoff. Those few pods are looked up once per event, not once
    // per waiting pod: thousands of waiting preemptors times thousands of victim deletions
    // dominated a preemption burst.
    if let ClusterEvent::AssignedPodDelete(gone) = &event
        && let Some(name) = gone.node_name.as_deref()
    {
        for p in snapshot.nominated_pods(name) {
            if framework.fits_nominated_node(p, snapshot) && queue.activate(&p.key()) {
                tracing::debug!(pod = %p.key(), node = %name, "preemptor activated");
            }
        }
    }
    let moved = queue.move_if(Instant::now(), |q, rejectors| match &q.info {
        Some(info) => framework.queueing_hint(info, rejectors, &event, snapshot),
        None => true,
    });
    if moved > 0 {
        tracing::debug!(moved, ?event, "unschedulable pods re-queued");
    }
}

/// A pending pod's nomination seen as a pod placed on the nominated node: deleting it frees
/// room there for pods of lower or equal priority (upstream's `getLEPriorityPreCheck`).
fn as_placed_on_nomination(p: &PodInfo) -> Option<PodInfo> {
    let node = p.nominated_node_name.clone()?;
    let mut placed = p.clone();
    placed.node_name = Some(node);
    Some(placed)
}

/// Whether a node update changes anything a Filter looks at (heartbeats do not).
fn node_changed(old: &NodeInfo, new: &NodeInfo) -> bool {
    old.labels != new.labels
        || old.taints != new.taints
        || old.allocatable != new.allocatable
        || old.unschedulable != new.unschedulable
        || old.images != new.images
}

/// What a failed cycle does to `status.nominatedNodeName`.
enum Nomination {
    /// Leave it as it is.
    Keep,
    /// Preemption chose this node and its victims.
    Set(preemption::Candidate),
    /// Preemption was tried and cannot help: clear it.
    Clear,
}

/// What background IO reports back to the loop.
enum Feedback {
    Bound {
        key: String,
    },
    BindFailed {
        key: String,
        uid: String,
        error: String,
    },
    /// A preemptor's victims were evicted (`deleted`: the uids whose delete went through).
    PreemptionDone {
        key: String,
        uid: String,
        node: String,
        deleted: Vec<String>,
    },
    /// VolumeBinding's PreBind failed (write refused, provisioning failed, timeout).
    PreBindFailed {
        key: String,
        uid: String,
        pod: Arc<Pod>,
        error: String,
    },
}

/// The well-known system classes exist even before anyone creates them (upstream creates them
/// at API server start).
fn builtin_priority(name: &str) -> Option<i32> {
    match name {
        "system-node-critical" => Some(2_000_001_000),
        "system-cluster-critical" => Some(2_000_000_000),
        _ => None,
    }
}

/// Pod-independent cluster state the loop keeps beside the snapshot.
#[derive(Default)]
struct Cluster {
    priority_classes: HashMap<String, (i32, bool)>,
    pdbs: HashMap<String, Pdb>,
    /// namespace → service name → `spec.selector` (services without a selector left out).
    services: HashMap<String, HashMap<String, Labels>>,
    /// (kind, namespace, name) of ReplicaSets, StatefulSets, ReplicationControllers → selector.
    controllers: HashMap<(&'static str, String, String), Selector>,
}

/// Which informer a spreading-selector source came from.
#[derive(Debug, Clone, Copy)]
enum SelectorSource {
    ReplicaSet,
    StatefulSet,
    ReplicationController,
}

impl SelectorSource {
    fn kind(self) -> &'static str {
        match self {
            SelectorSource::ReplicaSet => "ReplicaSet",
            SelectorSource::StatefulSet => "StatefulSet",
            SelectorSource::ReplicationController => "ReplicationController",
        }
    }
}

impl Cluster {
    /// `spec.priority` if admission set it, else the PriorityClass's value, else the global
    /// default class, else 0.
    fn priority_of(&self, pod: &Pod) -> i32 {
        let spec = pod.spec.as_ref();
        if let Some(p) = spec.and_then(|s| s.priority) {
            return p;
        }
        if let Some(name) = spec.and_then(|s| s.priority_class_name.as_deref()) {
            if let Some((v, _)) = self.priority_classes.get(name) {
                return *v;
            }
            if let Some(v) = builtin_priority(name) {
                return v;
            }
        }
        self.priority_classes
            .values()
            .filter(|(_, global)| *global)
            .map(|(v, _)| *v)
            .max()
            .unwrap_or(0)
    }

    fn pod_info(&self, pod: &Pod) -> PodInfo {
        let mut info = PodInfo::from_pod(pod);
        info.priority = self.priority_of(pod);
        info
    }

    /// Upstream's `helper.DefaultSelector`: the selectors of the Services selecting the pod,
    /// merged, plus the selector of its controlling ReplicationController, ReplicaSet or
    /// StatefulSet. `None` when that is empty (system default spreading then does nothing).
    fn default_spread_selector(&self, pod: &Pod) -> Option<Selector> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let empty = Labels::new();
        let labels = pod.metadata.labels.as_ref().unwrap_or(&empty);
        let mut merged = Labels::new();
        if let Some(services) = self.services.get(ns) {
            for sel in services.values() {
                if sel.iter().all(|(k, v)| labels.get(k) == Some(v)) {
                    merged.extend(sel.iter().map(|(k, v)| (k.clone(), v.clone())));
                }
            }
        }
        let mut selector = Selector::from_map(&merged);
        let owner = pod
            .metadata
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true));
        if let Some(o) = owner {
            let group = o.api_version.rsplit_once('/').map_or("", |(g, _)| g);
            let kind = match (group, o.kind.as_str()) {
                ("", "ReplicationController") => Some("ReplicationController"),
                ("apps", "ReplicaSet") => Some("ReplicaSet"),
                ("apps", "StatefulSet") => Some("StatefulSet"),
                _ => None,
            };
            if let Some(kind) = kind
                && let Some(sel) = self
                    .controllers
                    .get(&(kind, ns.to_string(), o.name.clone()))
            {
                selector.reqs.extend(sel.reqs.iter().cloned());
            }
        }
        (!selector.is_empty()).then_some(selector)
    }

    fn on_service_event(&mut self, ev: watcher::Event<Service>) {
        match ev {
            watcher::Event::Apply(svc) | watcher::Event::InitApply(svc) => {
                let ns = svc.metadata.namespace.clone().unwrap_or_default();
                let name = svc.metadata.name.clone().unwrap_or_default();
                let selector = svc.spec.and_then(|s| s.selector).filter(|s| !s.is_empty());
                let entry = self.services.entry(ns).or_default();
                match selector {
                    Some(sel) => {
                        entry.insert(name, sel);
                    }
                    None => {
                        entry.remove(&name);
                    }
                }
            }
            watcher::Event::Delete(svc) => {
                let ns = svc.metadata.namespace.unwrap_or_default();
                if let Some(m) = self.services.get_mut(&ns) {
                    m.remove(svc.metadata.name.as_deref().unwrap_or(""));
                }
            }
            watcher::Event::Init | watcher::Event::InitDone => {}
        }
    }

    fn on_controller(
        &mut self,
        source: SelectorSource,
        meta: &ObjectMeta,
        selector: Option<Selector>,
    ) {
        let key = (
            source.kind(),
            meta.namespace.clone().unwrap_or_default(),
            meta.name.clone().unwrap_or_default(),
        );
        match selector {
            Some(sel) => {
                self.controllers.insert(key, sel);
            }
            None => {
                self.controllers.remove(&key);
            }
        }
    }
}

/// A watcher event of a workload controller reduced to its metadata and selector (`None` on
/// delete).
fn controller_event<K>(
    ev: watcher::Event<K>,
    selector: impl Fn(&K) -> Selector,
) -> Option<(ObjectMeta, Option<Selector>)>
where
    K: kube::Resource,
{
    match ev {
        watcher::Event::Apply(o) | watcher::Event::InitApply(o) => {
            let sel = selector(&o);
            Some((o.meta().clone(), Some(sel)))
        }
        watcher::Event::Delete(o) => Some((o.meta().clone(), None)),
        watcher::Event::Init | watcher::Event::InitDone => None,
    }
}

fn key_of(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod.metadata.name.as_deref().unwrap_or("")
    )
}

fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded") | Some("Failed")
    )
}

/// A pod this scheduler should place: unbound, ours, not being deleted, not gated.
fn wants_scheduling(pod: &Pod) -> bool {
    let Some(spec) = &pod.spec else {
        return false;
    };
    spec.node_name.as_deref().unwrap_or("").is_empty()
        && spec
            .scheduler_name
            .as_deref()
            .unwrap_or(DEFAULT_SCHEDULER_NAME)
            == DEFAULT_SCHEDULER_NAME
        && pod.metadata.deletion_timestamp.is_none()
        && spec.scheduling_gates.as_ref().is_none_or(Vec::is_empty)
        && !is_terminal(pod)
}

/// Whether an update of a pending pod could change the decision (status-only updates, such as
/// our own PodScheduled condition, must not re-trigger scheduling).
fn meaningfully_changed(old: &Pod, new: &Pod) -> bool {
    old.spec != new.spec || old.metadata.labels != new.metadata.labels
}

/// Runs the scheduler until `shutdown` is cancelled.
pub async fn run(client: kube::Client, shutdown: CancellationToken) -> Result<(), SchedulerError> {
    let mut sched = Loop::new(client);
    sched.run(shutdown).await;
    Ok(())
}

struct Loop {
    client: kube::Client,
    framework: Framework,
    snapshot: Snapshot,
    queue: SchedulingQueue<Queued>,
    cluster: Cluster,
    /// uid → key of pods assumed on a node whose binding is still in flight.
    assumed: HashMap<String, String>,
    /// uid → (event name, count, message) of the last FailedScheduling event per pod.
    last_event: HashMap<String, (String, i32, String)>,
    feedback_tx: mpsc::UnboundedSender<Feedback>,
    feedback_rx: mpsc::UnboundedReceiver<Feedback>,
    /// Initial-list bookkeeping: names seen since the watcher's last `Init`.
    pods_seen: Option<HashSet<String>>,
    nodes_seen: Option<HashSet<String>>,
    /// uid of every pod in the snapshot → key, to reconcile relists.
    placed_keys: HashMap<String, String>,
    instance: String,
    /// Bindings in flight at once: each is one request on the client's connection pool, and
    /// an unbounded burst would open (and TLS-handshake) a connection per pod.
    bind_permits: Arc<tokio::sync::Semaphore>,
    /// Whether the pod and node watchers finished their first list: as upstream's
    /// WaitForCacheSync, no cycle runs on a partial cluster view.
    pods_synced: bool,
    nodes_synced: bool,
    /// uid → the volume bindings assumed for a pod whose PreBind/bind is in flight, rolled
    /// back (Unreserve) if it fails.
    volume_plans: HashMap<String, PodVolumes>,
    /// uids of preemptors whose victims' eviction is still in flight: they do not preempt
    /// again meanwhile (the victims, deleted at once with no grace period, never show as
    /// terminating, so the nominated-node check alone would not hold them back).
    preempting: HashSet<String>,
}

impl Loop {
    fn new(client: kube::Client) -> Loop {
        let (feedback_tx, feedback_rx) = mpsc::unbounded_channel();
        // Sequential Filter: scoped threads per cycle cost more than filtering the few hundred
        // nodes a cycle needs (core_bench: 10.5k decisions/s sequential vs 3.8k with 2 threads
        // at 5,000 nodes on a 2-core machine).
        let framework = Framework::with_defaults();
        Loop {
            client,
            framework,
            snapshot: Snapshot::new(),
            queue: SchedulingQueue::new(),
            cluster: Cluster::default(),
            assumed: HashMap::new(),
            last_event: HashMap::new(),
            feedback_tx,
            feedback_rx,
            pods_seen: None,
            nodes_seen: None,
            placed_keys: HashMap::new(),
            instance: format!("{DEFAULT_SCHEDULER_NAME}-{}", std::process::id()),
            pods_synced: false,
            nodes_synced: false,
            bind_permits: Arc::new(tokio::sync::Semaphore::new(MAX_BINDS_IN_FLIGHT)),
            volume_plans: HashMap::new(),
            preempting: HashSet::new(),
        }
    }

    async fn run(&mut self, shutdown: CancellationToken) {
        let cfg = watcher::Config::default();
        let mut pods = watcher(Api::<Pod>::all(self.client.clone()), cfg.clone())
            .default_backoff()
            .boxed();
        let mut nodes = watcher(Api::<Node>::all(self.client.clone()), cfg.clone())
            .default_backoff()
            .boxed();
        let mut classes = watcher(Api::<PriorityClass>::all(self.client.clone()), cfg.clone())
            .default_backoff()
            .boxed();
        let mut pdbs = watcher(
            Api::<PodDisruptionBudget>::all(self.client.clone()),
            cfg.clone(),
        )
        .default_backoff()
        .boxed();
        // The sources of system default topology spreading (upstream's DefaultSelector).
        let mut services = watcher(Api::<Service>::all(self.client.clone()), cfg.clone())
            .default_backoff()
            .boxed();
        let mut replica_sets = watcher(Api::<ReplicaSet>::all(self.client.clone()), cfg.clone())
            .default_backoff()
            .boxed();
        let mut stateful_sets = watcher(Api::<StatefulSet>::all(self.client.clone()), cfg.clone())
            .default_backoff()
            .boxed();
        let mut rcs = watcher(
            Api::<ReplicationController>::all(self.client.clone()),
            cfg.clone(),
        )
        .default_backoff()
        .boxed();
        // VolumeBinding's view of storage.
        let mut volumes = watcher(
            Api::<PersistentVolume>::all(self.client.clone()),
            cfg.clone(),
        )
        .default_backoff()
        .boxed();
        let mut claims = watcher(
            Api::<PersistentVolumeClaim>::all(self.client.clone()),
            cfg.clone(),
        )
        .default_backoff()
        .boxed();
        let mut storage_classes = watcher(Api::<StorageClass>::all(self.client.clone()), cfg)
            .default_backoff()
            .boxed();
        let mut flush = tokio::time::interval(Duration::from_secs(30));
        tracing::info!("scheduler started");
        loop {
            // Drain every ready pod before waiting: a burst is scheduled back to back.
            self.schedule_ready();
            let deadline = self
                .queue
                .next_backoff_deadline()
                .map(tokio::time::Instant::from_std)
                .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(ev) = pods.next() => match ev {
                    Ok(ev) => self.on_pod_event(ev),
                    Err(e) => tracing::warn!(error = %e, "pod watch failed; retrying"),
                },
                Some(ev) = nodes.next() => match ev {
                    Ok(ev) => self.on_node_event(ev),
                    Err(e) => tracing::warn!(error = %e, "node watch failed; retrying"),
                },
                Some(ev) = classes.next() => {
                    if let Ok(ev) = ev {
                        self.on_priority_class_event(ev);
                    }
                },
                Some(ev) = pdbs.next() => {
                    if let Ok(ev) = ev {
                        self.on_pdb_event(ev);
                    }
                },
                Some(ev) = services.next() => {
                    if let Ok(ev) = ev {
                        self.cluster.on_service_event(ev);
                    }
                },
                Some(ev) = replica_sets.next() => {
                    if let Ok(ev) = ev
                        && let Some((meta, sel)) = controller_event(ev, |rs: &ReplicaSet| {
                            rs.spec.as_ref().map(|s| Selector::from_label_selector(&s.selector)).unwrap_or_default()
                        })
                    {
                        self.cluster.on_controller(SelectorSource::ReplicaSet, &meta, sel);
                    }
                },
                Some(ev) = stateful_sets.next() => {
                    if let Ok(ev) = ev
                        && let Some((meta, sel)) = controller_event(ev, |ss: &StatefulSet| {
                            ss.spec.as_ref().map(|s| Selector::from_label_selector(&s.selector)).unwrap_or_default()
                        })
                    {
                        self.cluster.on_controller(SelectorSource::StatefulSet, &meta, sel);
                    }
                },
                Some(ev) = rcs.next() => {
                    if let Ok(ev) = ev
                        && let Some((meta, sel)) = controller_event(ev, |rc: &ReplicationController| {
                            rc.spec.as_ref().and_then(|s| s.selector.as_ref()).map(Selector::from_map).unwrap_or_default()
                        })
                    {
                        self.cluster.on_controller(SelectorSource::ReplicationController, &meta, sel);
                    }
                },
                Some(Ok(ev)) = volumes.next() => self.on_volume_event(ev),
                Some(Ok(ev)) = claims.next() => self.on_claim_event(ev),
                Some(Ok(ev)) = storage_classes.next() => self.on_storage_class_event(ev),
                Some(fb) = self.feedback_rx.recv() => self.on_feedback(fb),
                _ = tokio::time::sleep_until(deadline) => {},
                _ = flush.tick() => self.queue.flush_unschedulable_leftover(Instant::now()),
            }
        }
        tracing::info!("scheduler stopped");
    }

    /// A volume, claim or class changed: PreBind waiters re-check, and pods rejected for
    /// their volumes may fit now (upstream's VolumeBinding queueing events).
    fn on_storage_changed(&mut self) {
        self.snapshot.volumes.changed.notify_waiters();
        self.queue.move_all_to_active_or_backoff(Instant::now());
    }

    fn on_volume_event(&mut self, ev: watcher::Event<PersistentVolume>) {
        {
            let mut s = self.snapshot.volumes.write();
            match ev {
                watcher::Event::Init => s.begin_relist(volume_binding::Kind::Volume),
                watcher::Event::InitDone => s.end_relist(volume_binding::Kind::Volume),
                watcher::Event::InitApply(pv) | watcher::Event::Apply(pv) => s.apply_pv(pv),
                watcher::Event::Delete(pv) => {
                    s.delete_pv(pv.metadata.name.as_deref().unwrap_or(""));
                }
            }
        }
        self.on_storage_changed();
    }

    fn on_claim_event(&mut self, ev: watcher::Event<PersistentVolumeClaim>) {
        {
            let mut s = self.snapshot.volumes.write();
            match ev {
                watcher::Event::Init => s.begin_relist(volume_binding::Kind::Claim),
                watcher::Event::InitDone => s.end_relist(volume_binding::Kind::Claim),
                watcher::Event::InitApply(c) | watcher::Event::Apply(c) => s.apply_pvc(c),
                watcher::Event::Delete(c) => s.delete_pvc(
                    c.metadata.namespace.as_deref().unwrap_or(""),
                    c.metadata.name.as_deref().unwrap_or(""),
                ),
            }
        }
        self.on_storage_changed();
    }

    fn on_storage_class_event(&mut self, ev: watcher::Event<StorageClass>) {
        {
            let mut s = self.snapshot.volumes.write();
            match ev {
                watcher::Event::Init => s.begin_relist(volume_binding::Kind::Class),
                watcher::Event::InitDone => s.end_relist(volume_binding::Kind::Class),
                watcher::Event::InitApply(c) | watcher::Event::Apply(c) => s.apply_class(c),
                watcher::Event::Delete(c) => {
                    s.delete_class(c.metadata.name.as_deref().unwrap_or(""));
                }
            }
        }
        self.on_storage_changed();
    }

    fn on_priority_class_event(&mut self, ev: watcher::Event<PriorityClass>) {
        match ev {
            watcher::Event::Apply(pc) | watcher::Event::InitApply(pc) => {
                if let Some(name) = pc.metadata.name.clone() {
                    self.cluster
                        .priority_classes
                        .insert(name, (pc.value, pc.global_default.unwrap_or(false)));
                }
            }
            watcher::Event::Delete(pc) => {
                if let Some(name) = &pc.metadata.name {
                    self.cluster.priority_classes.remove(name);
                }
            }
            watcher::Event::Init | watcher::Event::InitDone => {}
        }
    }

    fn on_pdb_event(&mut self, ev: watcher::Event<PodDisruptionBudget>) {
        match ev {
            watcher::Event::Apply(p) | watcher::Event::InitApply(p) => {
                let key = format!(
                    "{}/{}",
                    p.metadata.namespace.as_deref().unwrap_or(""),
                    p.metadata.name.as_deref().unwrap_or("")
                );
                let selector = p
                    .spec
                    .as_ref()
                    .and_then(|s| s.selector.as_ref())
                    .map(Selector::from_label_selector)
                    .unwrap_or_default();
                self.cluster.pdbs.insert(
                    key,
                    Pdb {
                        namespace: p.metadata.namespace.clone().unwrap_or_default(),
                        selector,
                        disruptions_allowed: p
                            .status
                            .as_ref()
                            .map(|s| s.disruptions_allowed)
                            .unwrap_or(0),
                    },
                );
            }
            watcher::Event::Delete(p) => {
                let key = format!(
                    "{}/{}",
                    p.metadata.namespace.as_deref().unwrap_or(""),
                    p.metadata.name.as_deref().unwrap_or("")
                );
                self.cluster.pdbs.remove(&key);
            }
            watcher::Event::Init | watcher::Event::InitDone => {}
        }
    }

    fn on_node_event(&mut self, ev: watcher::Event<Node>) {
        let now = Instant::now();
        match ev {
            watcher::Event::Init => self.nodes_seen = Some(HashSet::new()),
            watcher::Event::InitApply(n) | watcher::Event::Apply(n) => {
                let info = NodeInfo::from_node(&n);
                let name = info.name.clone();
                if let Some(seen) = &mut self.nodes_seen {
                    seen.insert(name.clone());
                }
                let old = self.snapshot.upsert_node(info);
                let Some(new) = self.snapshot.node(&name) else {
                    return;
                };
                let event = match &old {
                    None => ClusterEvent::NodeAdd(new),
                    Some(old) if node_changed(old, new) => ClusterEvent::NodeUpdate { old, new },
                    Some(_) => return,
                };
                requeue(&mut self.queue, &self.framework, &self.snapshot, event);
            }
            watcher::Event::Delete(n) => {
                if let Some(name) = &n.metadata.name {
                    self.snapshot.remove_node(name);
                }
            }
            watcher::Event::InitDone => {
                self.nodes_synced = true;
                if let Some(seen) = self.nodes_seen.take() {
                    let gone: Vec<String> = self
                        .snapshot
                        .nodes
                        .iter()
                        .filter(|n| !seen.contains(&n.name))
                        .map(|n| n.name.clone())
                        .collect();
                    for name in gone {
                        self.snapshot.remove_node(&name);
                    }
                }
                self.queue.move_all_to_active_or_backoff(now);
            }
        }
    }

    fn on_pod_event(&mut self, ev: watcher::Event<Pod>) {
        match ev {
            watcher::Event::Init => self.pods_seen = Some(HashSet::new()),
            watcher::Event::InitApply(p) | watcher::Event::Apply(p) => {
                if let Some(seen) = &mut self.pods_seen {
                    seen.insert(p.metadata.uid.clone().unwrap_or_default());
                }
                self.on_pod_apply(p);
            }
            watcher::Event::Delete(p) => self.on_pod_delete(&p),
            watcher::Event::InitDone => {
                self.pods_synced = true;
                if let Some(seen) = self.pods_seen.take() {
                    let gone: Vec<String> = self
                        .placed_keys
                        .keys()
                        .filter(|uid| !seen.contains(*uid) && !self.assumed.contains_key(*uid))
                        .cloned()
                        .collect();
                    for uid in gone {
                        self.snapshot.remove_pod(&uid);
                        self.placed_keys.remove(&uid);
                    }
                    self.queue.move_all_to_active_or_backoff(Instant::now());
                }
            }
        }
    }

    fn on_pod_apply(&mut self, pod: Pod) {
        let now = Instant::now();
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let key = key_of(&pod);
        let bound = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_some_and(|n| !n.is_empty());
        if bound {
            // Bound: its volume assumptions age out as the informers catch up.
            self.volume_plans.remove(&uid);
            let nomination = self.snapshot.clear_nomination(&uid);
            let was_assumed = self.assumed.remove(&uid).is_some();
            self.queue.done(&key);
            if is_terminal(&pod) {
                // Finished pods hold no resources.
                if let Some(gone) = self.snapshot.remove_pod(&uid) {
                    self.placed_keys.remove(&uid);
                    let event = ClusterEvent::AssignedPodDelete(&gone);
                    requeue(&mut self.queue, &self.framework, &self.snapshot, event);
                }
                return;
            }
            let info = Arc::new(self.cluster.pod_info(&pod));
            self.placed_keys.insert(uid.clone(), key);
            let old = self.snapshot.remove_pod(&uid);
            self.snapshot.add_pod(info.clone());
            let event = match &old {
                None => Some(ClusterEvent::AssignedPodAdd(&info)),
                // The binding of a pod this scheduler assumed is now confirmed.
                Some(_) if was_assumed => Some(ClusterEvent::AssignedPodAdd(&info)),
                Some(old)
                    if old.labels != info.labels
                        || old.requests != info.requests
                        || old.node_name != info.node_name =>
                {
                    Some(ClusterEvent::AssignedPodUpdate { old, new: &info })
                }
                Some(_) => None,
            };
            if let Some(event) = event {
                requeue(&mut self.queue, &self.framework, &self.snapshot, event);
            }
            // Bound somewhere else than it was nominated to: the room held there is free.
            if let Some(nominated) = nomination.as_deref().and_then(as_placed_on_nomination)
                && nominated.node_name != info.node_name
            {
                let event = ClusterEvent::AssignedPodDelete(&nominated);
                requeue(&mut self.queue, &self.framework, &self.snapshot, event);
            }
            return;
        }
        if self.assumed.contains_key(&uid) {
            // Our binding is in flight; the bound version will follow.
            return;
        }
        if !wants_scheduling(&pod) {
            self.snapshot.clear_nomination(&uid);
            self.queue.delete(&key);
            return;
        }
        let priority = self.cluster.priority_of(&pod);
        self.track_nomination(&pod);
        let (changed, info) = match self.queue.get(&key) {
            Some(old) => (meaningfully_changed(&old.pod, &pod), old.info.clone()),
            None => (true, None),
        };
        let pod = Arc::new(pod);
        if changed {
            self.queue
                .add(key, Queued { pod, info: None }, priority, now);
        } else {
            self.queue.replace_item(&key, Queued { pod, info });
        }
    }

    /// Keeps the nominator in step with a pending pod: its `status.nominatedNodeName`, or the
    /// node this scheduler nominated it to when the update does not carry it yet (our status
    /// patch may still be in flight), as upstream's `updateNominatedPod`.
    fn track_nomination(&mut self, pod: &Pod) {
        let uid = pod.metadata.uid.as_deref().unwrap_or("");
        let in_status = pod
            .status
            .as_ref()
            .and_then(|s| s.nominated_node_name.as_deref())
            .is_some_and(|n| !n.is_empty());
        if !in_status && self.snapshot.nomination(uid).is_none() {
            // The common case, a pod nobody nominated: no PodInfo to build.
            return;
        }
        let mut info = self.cluster.pod_info(pod);
        if info.nominated_node_name.is_none() {
            match self.snapshot.nomination(&info.uid) {
                Some(node) => info.nominated_node_name = Some(node.to_string()),
                None => return,
            }
        }
        self.snapshot.nominate(Arc::new(info));
    }

    fn on_pod_delete(&mut self, pod: &Pod) {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        self.preempting.remove(&uid);
        let nomination = self.snapshot.clear_nomination(&uid);
        let key = key_of(pod);
        self.queue.delete(&key);
        self.assumed.remove(&uid);
        self.last_event.remove(&uid);
        self.placed_keys.remove(&uid);
        // Freed resources (or room held for a nominated pod) may let waiting pods fit.
        let gone = match self.snapshot.remove_pod(&uid) {
            Some(p) => Some((*p).clone()),
            None => nomination.as_deref().and_then(as_placed_on_nomination),
        };
        if let Some(gone) = gone {
            let event = ClusterEvent::AssignedPodDelete(&gone);
            requeue(&mut self.queue, &self.framework, &self.snapshot, event);
        }
    }

    fn on_feedback(&mut self, fb: Feedback) {
        let now = Instant::now();
        match fb {
            Feedback::Bound { key } => self.queue.done(&key),
            Feedback::PreemptionDone {
                key,
                uid,
                node,
                deleted,
            } => self.on_preemption_done(&key, &uid, &node, &deleted),
            Feedback::PreBindFailed {
                key,
                uid,
                pod,
                error,
            } => {
                tracing::warn!(pod = %key, %error, "PreBind failed; forgetting the assumed pod");
                if let Some(plan) = self.volume_plans.remove(&uid) {
                    volume_binding::unreserve(&self.snapshot.volumes, &plan);
                }
                if self.assumed.remove(&uid).is_some() {
                    self.snapshot.remove_pod(&uid);
                    self.placed_keys.remove(&uid);
                }
                self.queue.errored(&key, now);
                self.queue.move_all_to_active_or_backoff(now);
                self.report_message(&pod, error, Nomination::Keep, &FitError::default());
            }
            Feedback::BindFailed { key, uid, error } => {
                if let Some(plan) = self.volume_plans.remove(&uid) {
                    volume_binding::unreserve(&self.snapshot.volumes, &plan);
                }
                tracing::warn!(pod = %key, %error, "binding failed; forgetting the assumed pod");
                if self.assumed.remove(&uid).is_some()
                    && let Some(gone) = self.snapshot.remove_pod(&uid)
                {
                    self.placed_keys.remove(&uid);
                    let event = ClusterEvent::AssignedPodDelete(&gone);
                    requeue(&mut self.queue, &self.framework, &self.snapshot, event);
                }
                self.queue.errored(&key, now);
            }
        }
    }

    /// A preemptor's evictions finished. Victims whose delete went through but whose deletion
    /// the watch has not shown yet count as terminating, so the preemptor waits for them
    /// instead of preempting again; if its node already has room it is retried at once.
    fn on_preemption_done(&mut self, key: &str, uid: &str, node: &str, deleted: &[String]) {
        self.preempting.remove(uid);
        for v in deleted {
            if let Some(p) = self.snapshot.remove_pod(v) {
                let mut t = (*p).clone();
                t.terminating = true;
                self.snapshot.add_pod(Arc::new(t));
            }
        }
        let fits = self
            .snapshot
            .nominated_pods(node)
            .iter()
            .find(|p| p.uid == uid)
            .is_some_and(|p| self.framework.fits_nominated_node(p, &self.snapshot));
        if fits && self.queue.activate(key) {
            tracing::debug!(pod = %key, %node, "preemptor activated after its evictions");
        }
    }

    /// Runs scheduling cycles for every pod ready now.
    fn schedule_ready(&mut self) {
        if !(self.pods_synced && self.nodes_synced && self.snapshot.volumes.read().synced()) {
            return;
        }
        let now = Instant::now();
        while let Some((key, q)) = self.queue.pop(now) {
            let pod = q.pod.clone();
            self.schedule_one(key, pod, now);
        }
    }

    fn schedule_one(&mut self, key: String, pod: Arc<Pod>, now: Instant) {
        let mut info = self.cluster.pod_info(&pod);
        if info.nominated_node_name.is_none() {
            // Nominated by this scheduler a moment ago; the status update is not back yet.
            info.nominated_node_name = self.snapshot.nomination(&info.uid).map(str::to_string);
        }
        if info.spread.is_empty() {
            info.default_spread_selector = self.cluster.default_spread_selector(&pod);
        }
        let started = Instant::now();
        match self.framework.schedule(&self.snapshot, &info) {
            Ok(decision) => {
                let status = self.framework.reserve_and_permit(&info, &decision.node);
                if !status.is_success() {
                    tracing::warn!(pod = %key, status = %status.message(), "reserve/permit rejected");
                    self.queue.errored(&key, now);
                    return;
                }
                // VolumeBinding's Reserve: assume the claims' bindings on the node.
                let volumes = match self
                    .snapshot
                    .node(&decision.node)
                    .map(|n| volume_binding::reserve(&self.snapshot.volumes, &info, n))
                {
                    Some(Ok(v)) => v,
                    Some(Err(status)) => {
                        tracing::info!(pod = %key, status = %status.message(), "volume reserve rejected");
                        self.queue.errored(&key, now);
                        return;
                    }
                    None => None,
                };
                let node_labels = self
                    .snapshot
                    .node(&decision.node)
                    .map(|n| n.labels.clone())
                    .unwrap_or_default();
                // Assume: count the pod on its node now, so the next cycle sees it; it no
                // longer holds a nomination.
                if let Some(nominated) = self
                    .snapshot
                    .clear_nomination(&info.uid)
                    .as_deref()
                    .and_then(as_placed_on_nomination)
                    && nominated.node_name.as_deref() != Some(decision.node.as_str())
                {
                    let event = ClusterEvent::AssignedPodDelete(&nominated);
                    requeue(&mut self.queue, &self.framework, &self.snapshot, event);
                }
                let mut assumed = info;
                assumed.node_name = Some(decision.node.clone());
                let uid = assumed.uid.clone();
                self.snapshot.add_pod(Arc::new(assumed));
                self.assumed.insert(uid.clone(), key.clone());
                self.placed_keys.insert(uid.clone(), key.clone());
                tracing::debug!(
                    pod = %key,
                    node = %decision.node,
                    evaluated = decision.evaluated,
                    feasible = decision.feasible,
                    micros = started.elapsed().as_micros() as u64,
                    "scheduled"
                );
                let volumes = volumes.filter(|v| !v.claims.is_empty()).map(|v| {
                    self.volume_plans.insert(uid.clone(), v.clone());
                    (v, node_labels)
                });
                self.spawn_bind(key, uid, pod, decision.node, volumes);
            }
            Err(ScheduleError::Unfit(mut fit)) => {
                let pdbs: Vec<Pdb> = self.cluster.pdbs.values().cloned().collect();
                let rejectors = fit.rejector_plugins();
                let mut waiting = info.clone();
                let outcome = if self.preempting.contains(&info.uid) {
                    Outcome::Unschedulable(format!(
                        "preemption: {}.",
                        preemption::WAITING_FOR_VICTIMS
                    ))
                } else {
                    preemption::preempt(&self.framework, &self.snapshot, &info, &fit, &pdbs)
                };
                let nominate = match outcome {
                    Outcome::Nominate(c) => {
                        waiting.nominated_node_name = Some(c.node.clone());
                        self.snapshot.nominate(Arc::new(waiting.clone()));
                        self.preempting.insert(info.uid.clone());
                        Nomination::Set(c)
                    }
                    Outcome::Unschedulable(msg) => {
                        // Upstream's PostFilter result clears the nomination when preemption
                        // was tried and failed; a pod still waiting for its victims keeps it.
                        let keep = msg.contains(preemption::WAITING_FOR_VICTIMS);
                        fit.post_filter_msg = Some(msg);
                        if keep || info.nominated_node_name.is_none() {
                            Nomination::Keep
                        } else {
                            waiting.nominated_node_name = None;
                            if let Some(nominated) = self
                                .snapshot
                                .clear_nomination(&info.uid)
                                .as_deref()
                                .and_then(as_placed_on_nomination)
                            {
                                let event = ClusterEvent::AssignedPodDelete(&nominated);
                                requeue(&mut self.queue, &self.framework, &self.snapshot, event);
                            }
                            Nomination::Clear
                        }
                    }
                };
                if let Some(q) = self.queue.item_mut(&key) {
                    q.info = Some(Arc::new(waiting));
                }
                self.queue.failed(&key, now, rejectors);
                self.report_unschedulable(&pod, &fit, nominate);
            }
            Err(ScheduleError::NoNodes) => {
                self.queue.failed(&key, now, Vec::new());
                let fit = FitError::default();
                self.report_message(
                    &pod,
                    ScheduleError::NoNodes.to_string(),
                    Nomination::Keep,
                    &fit,
                );
            }
            Err(ScheduleError::Internal(e)) => {
                tracing::error!(pod = %key, error = %e, "scheduling cycle failed");
                self.queue.errored(&key, now);
            }
        }
    }

    fn spawn_bind(
        &self,
        key: String,
        uid: String,
        pod: Arc<Pod>,
        node: String,
        volumes: Option<(PodVolumes, Labels)>,
    ) {
        let client = self.client.clone();
        let tx = self.feedback_tx.clone();
        let permits = self.bind_permits.clone();
        let cache = self.snapshot.volumes.clone();
        tokio::spawn(async move {
            // PreBind (VolumeBinding) waits for the claims before a bind permit is taken.
            if let Some((plan, labels)) = volumes
                && let Err(error) = crate::volume_prebind::pre_bind(
                    &client,
                    &cache,
                    &plan,
                    &labels,
                    volume_binding::BIND_TIMEOUT,
                )
                .await
            {
                let _ = tx.send(Feedback::PreBindFailed {
                    key,
                    uid,
                    pod,
                    error: format!(
                        "running PreBind plugin \"{}\": {error}",
                        volume_binding::NAME
                    ),
                });
                return;
            }
            // The semaphore is never closed, so acquiring only fails if it were.
            let _permit = permits.acquire_owned().await.ok();
            let ns = pod
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into());
            let name = pod.metadata.name.clone().unwrap_or_default();
            let api: Api<Pod> = Api::namespaced(client, &ns);
            let binding = Binding {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(ns.clone()),
                    uid: pod.metadata.uid.clone(),
                    ..Default::default()
                },
                target: ObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Node".into()),
                    name: Some(node.clone()),
                    ..Default::default()
                },
            };
            let res: Result<serde_json::Value, kube::Error> = api
                .create_subresource("binding", &name, &PostParams::default(), &binding)
                .await;
            let fb = match res {
                Ok(_) => {
                    tracing::info!(pod = %key, %node, "bound");
                    Feedback::Bound { key }
                }
                Err(e) => Feedback::BindFailed {
                    key,
                    uid,
                    error: e.to_string(),
                },
            };
            let _ = tx.send(fb);
        });
    }

    fn report_unschedulable(&mut self, pod: &Pod, fit: &FitError, nominate: Nomination) {
        let msg = fit.message();
        self.report_message(pod, msg, nominate, fit);
    }

    /// Writes PodScheduled=False (and nominatedNodeName), records the FailedScheduling event,
    /// and evicts preemption victims, all in the background.
    fn report_message(
        &mut self,
        pod: &Pod,
        message: String,
        nominate: Nomination,
        _fit: &FitError,
    ) {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let prev = self.last_event.get(&uid).cloned();
        let (event_name, count, repeat) = match prev {
            Some((name, count, m)) if m == message => (name, count + 1, true),
            _ => (
                format!(
                    "{}.{:x}",
                    pod.metadata.name.as_deref().unwrap_or(""),
                    (jiff::Timestamp::now().as_nanosecond() as u64) ^ u64::from(std::process::id())
                ),
                1,
                false,
            ),
        };
        self.last_event
            .insert(uid, (event_name.clone(), count, message.clone()));
        tracing::info!(pod = %key_of(pod), %message, "unschedulable");
        let client = self.client.clone();
        let pod = pod.clone();
        let instance = self.instance.clone();
        let feedback = self.feedback_tx.clone();
        tokio::spawn(async move {
            let ns = pod
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into());
            let name = pod.metadata.name.clone().unwrap_or_default();
            let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
            let now = jiff::Timestamp::now();
            let mut status = json!({
                "conditions": [{
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": message,
                    "lastTransitionTime": now.to_string(),
                    "lastProbeTime": null,
                }]
            });
            match &nominate {
                Nomination::Set(c) => status["nominatedNodeName"] = json!(c.node),
                Nomination::Clear => status["nominatedNodeName"] = serde_json::Value::Null,
                Nomination::Keep => {}
            }
            let patch = json!({ "status": status });
            // As upstream's updatePod: no write when the condition (same message) and the
            // nomination are what the last report already set.
            let unchanged = repeat && matches!(nominate, Nomination::Keep);
            if !unchanged
                && let Err(e) = pods
                    .patch_status(&name, &PatchParams::default(), &Patch::Strategic(&patch))
                    .await
            {
                tracing::warn!(pod = %name, error = %e, "updating PodScheduled failed");
            }
            let events: Api<Event> = Api::namespaced(client.clone(), &ns);
            if repeat {
                let p = json!({"count": count, "lastTimestamp": now.to_string()});
                if let Err(e) = events
                    .patch(&event_name, &PatchParams::default(), &Patch::Merge(&p))
                    .await
                {
                    tracing::debug!(error = %e, "updating event count failed");
                }
            } else {
                let ev = failed_scheduling_event(&pod, &event_name, &message, &instance, now);
                if let Err(e) = events.create(&PostParams::default(), &ev).await {
                    tracing::warn!(pod = %name, error = %e, "recording FailedScheduling failed");
                }
            }
            if let Nomination::Set(c) = nominate {
                let deleted = evict_victims(&client, &pod, &c, &instance).await;
                let _ = feedback.send(Feedback::PreemptionDone {
                    key: key_of(&pod),
                    uid: pod.metadata.uid.clone().unwrap_or_default(),
                    node: c.node,
                    deleted,
                });
            }
        });
    }
}

fn object_ref(pod: &Pod) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: pod.metadata.name.clone(),
        namespace: pod.metadata.namespace.clone(),
        uid: pod.metadata.uid.clone(),
        resource_version: pod.metadata.resource_version.clone(),
        ..Default::default()
    }
}

#[allow(clippy::too_many_arguments)]
fn new_event(
    pod: &Pod,
    name: &str,
    type_: &str,
    reason: &str,
    action: &str,
    message: &str,
    instance: &str,
    now: jiff::Timestamp,
) -> Event {
    let t = Time(now);
    Event {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: pod.metadata.namespace.clone(),
            ..Default::default()
        },
        involved_object: object_ref(pod),
        reason: Some(reason.into()),
        message: Some(message.into()),
        type_: Some(type_.into()),
        action: Some(action.into()),
        count: Some(1),
        first_timestamp: Some(t.clone()),
        last_timestamp: Some(t),
        event_time: Some(MicroTime(now)),
        source: Some(EventSource {
            component: Some(DEFAULT_SCHEDULER_NAME.into()),
            host: None,
        }),
        reporting_component: Some(DEFAULT_SCHEDULER_NAME.into()),
        reporting_instance: Some(instance.into()),
        ..Default::default()
    }
}

fn failed_scheduling_event(
    pod: &Pod,
    name: &str,
    message: &str,
    instance: &str,
    now: jiff::Timestamp,
) -> Event {
    new_event(
        pod,
        name,
        "Warning",
        "FailedScheduling",
        "Scheduling",
        message,
        instance,
        now,
    )
}

/// Deletes the victims (gracefully) with a `Preempted` event each, as upstream's `PreemptPod`:
/// from the scheduler's own view of them (no read first), all victims at once. Returns the
/// uids whose delete went through.
async fn evict_victims(
    client: &kube::Client,
    preemptor: &Pod,
    c: &preemption::Candidate,
    instance: &str,
) -> Vec<String> {
    let uid = preemptor.metadata.uid.clone().unwrap_or_default();
    let evictions = c.victims.iter().filter(|v| !v.terminating).map(|v| async {
        evict_one(client, preemptor, &uid, &c.node, v, instance)
            .await
            .then(|| v.uid.clone())
    });
    futures::future::join_all(evictions)
        .await
        .into_iter()
        .flatten()
        .collect()
}

async fn evict_one(
    client: &kube::Client,
    preemptor: &Pod,
    preemptor_uid: &str,
    node: &str,
    v: &PodInfo,
    instance: &str,
) -> bool {
    let pods: Api<Pod> = Api::namespaced(client.clone(), &v.namespace);
    let cond = json!({"status": {"conditions": [{
        "type": "DisruptionTarget",
        "status": "True",
        "reason": "PreemptionByScheduler",
        "message": format!("{DEFAULT_SCHEDULER_NAME}: preempting to accommodate a higher priority pod"),
        "lastTransitionTime": jiff::Timestamp::now().to_string(),
    }]}});
    let _ = pods
        .patch_status(&v.name, &PatchParams::default(), &Patch::Strategic(&cond))
        .await;
    // Only this very pod: a new pod of the same name is not a victim.
    let dp = DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            uid: Some(v.uid.clone()),
            resource_version: None,
        }),
        ..Default::default()
    };
    if let Err(e) = pods.delete(&v.name, &dp).await {
        tracing::warn!(victim = %v.key(), error = %e, "preemption delete failed");
        return false;
    }
    let victim = Pod {
        metadata: ObjectMeta {
            name: Some(v.name.clone()),
            namespace: Some(v.namespace.clone()),
            uid: Some(v.uid.clone()),
            ..Default::default()
        },
        ..Default::default()
    };
    let now = jiff::Timestamp::now();
    let ev = new_event(
        &victim,
        &format!("{}.{:x}", v.name, now.as_nanosecond() as u64),
        "Normal",
        "Preempted",
        "Preempting",
        &format!("Preempted by pod {preemptor_uid} on node {node}"),
        instance,
        now,
    );
    let events: Api<Event> = Api::namespaced(client.clone(), &v.namespace);
    let _ = events.create(&PostParams::default(), &ev).await;
    tracing::info!(victim = %v.key(), preemptor = %key_of(preemptor), %node, "preempted");
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    fn pod(labels: &[(&str, &str)], owner: Option<(&str, &str, &str)>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("p".into()),
                namespace: Some("ns".into()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                owner_references: owner.map(|(api_version, kind, name)| {
                    vec![OwnerReference {
                        api_version: api_version.into(),
                        kind: kind.into(),
                        name: name.into(),
                        controller: Some(true),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn labels(kv: &[(&str, &str)]) -> Labels {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn default_spread_selector_merges_services_and_the_controller() {
        let mut c = Cluster::default();
        let svc = |sel: &[(&str, &str)]| labels(sel);
        c.services.entry("ns".into()).or_default().extend([
            ("web".to_string(), svc(&[("app", "web")])),
            ("other".to_string(), svc(&[("app", "db")])),
        ]);
        c.services
            .entry("elsewhere".into())
            .or_default()
            .insert("web".into(), svc(&[("tier", "front")]));
        let rs_sel = Selector::from_map(&labels(&[("pod-template-hash", "abc")]));
        c.on_controller(
            SelectorSource::ReplicaSet,
            &ObjectMeta {
                name: Some("web-abc".into()),
                namespace: Some("ns".into()),
                ..Default::default()
            },
            Some(rs_sel),
        );
        let p = pod(
            &[
                ("app", "web"),
                ("tier", "front"),
                ("pod-template-hash", "abc"),
            ],
            Some(("apps/v1", "ReplicaSet", "web-abc")),
        );
        let sel = c.default_spread_selector(&p).expect("a selector");
        assert!(sel.matches(&labels(&[("app", "web"), ("pod-template-hash", "abc")])));
        assert!(!sel.matches(&labels(&[("app", "web")])));
        assert!(!sel.matches(&labels(&[("pod-template-hash", "abc")])));

        // Without a matching service or a known controller there is nothing to spread by.
        let lone = pod(
            &[("app", "none")],
            Some(("apps/v1", "ReplicaSet", "unknown")),
        );
        assert_eq!(c.default_spread_selector(&lone), None);
        // A wrong group for the kind is not the controller upstream looks up.
        let wrong = pod(&[], Some(("v1", "ReplicaSet", "web-abc")));
        assert_eq!(c.default_spread_selector(&wrong), None);
    }
}
