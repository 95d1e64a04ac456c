//! Skiff's controller manager: level-triggered control loops that are ordinary API clients
//! (`kube`), as kube-controller-manager's. See `docs/controllers.md`.

pub mod control;
pub mod cronjob;
pub mod cronjob_schedule;
pub mod daemonset;
pub mod deployment;
pub mod disruption;
pub mod endpoints;
pub mod endpointslice;
pub mod expectations;
pub mod gc;
pub mod history;
#[cfg(test)]
pub mod history_fake;
pub mod history_pods;
pub mod informer;
pub mod job;
pub mod job_control;
pub mod jobs;
pub mod nodeipam;
pub mod nodelifecycle;
pub mod owner;
pub mod pod_state;
pub mod queue;
pub mod replicaset;
pub mod replicationcontroller;
pub mod serviceaccount;
pub mod servicelb;
pub mod slow_start;
pub mod statefulset;
pub mod ttl;
pub mod volume;
pub mod writes;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::core::SelectorExt;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::control::ClientControl;
use crate::informer::Informer;
use crate::queue::{Key, WorkQueue};

/// The wall clock, injected so tests can fix "now" (minReadySeconds, progress deadlines).
pub type Clock = Arc<dyn Fn() -> jiff::Timestamp + Send + Sync>;

/// The real wall clock.
pub fn system_clock() -> Clock {
    Arc::new(jiff::Timestamp::now)
}

/// Every object is synced again this often even without events: level-triggered safety net.
pub const RESYNC_PERIOD: Duration = Duration::from_secs(30);

/// Workers per controller (concurrent syncs of different keys).
pub const WORKERS: usize = 4;

/// Run `sync` for keys from `queue` on `WORKERS` tasks until `shutdown`.
pub(crate) fn spawn_workers<F, Fut, E>(
    tasks: &TaskTracker,
    name: &'static str,
    queue: WorkQueue,
    shutdown: CancellationToken,
    sync: F,
) where
    F: Fn(Key) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Option<Duration>, E>> + Send,
    E: std::fmt::Display,
{
    for _ in 0..WORKERS {
        let queue = queue.clone();
        let shutdown = shutdown.clone();
        let sync = sync.clone();
        tasks.spawn(async move {
            while let Some(key) = queue.next(&shutdown).await {
                match sync(key.clone()).await {
                    Ok(requeue) => {
                        queue.forget(&key);
                        if let Some(after) = requeue {
                            queue.add_after(key.clone(), after);
                        }
                    }
                    Err(e) => {
                        tracing::info!(controller = name, key = %key, error = %e, "sync failed; retrying");
                        queue.add_rate_limited(key.clone());
                    }
                }
                queue.done(&key);
            }
        });
    }
}

/// Add every key of `store` to `queue` every `RESYNC_PERIOD`.
pub(crate) fn spawn_resync<K>(
    tasks: &TaskTracker,
    store: kube::runtime::reflector::Store<K>,
    queue: WorkQueue,
    shutdown: CancellationToken,
) where
    K: kube::Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    tasks.spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(RESYNC_PERIOD) => {}
                _ = shutdown.cancelled() => return,
            }
            for obj in store.state() {
                queue.add(Key::of(obj.meta()));
            }
        }
    });
}

/// Controller manager settings, with upstream kube-controller-manager's defaults.
#[derive(Clone, Debug)]
pub struct Options {
    /// Pod CIDR of the cluster (`--cluster-cidr`); node blocks are carved from it.
    pub cluster_cidr: String,
    /// Prefix length of each node's block (`--node-cidr-mask-size`).
    pub node_cidr_mask_size: u8,
    /// Whether nodes get pod CIDRs at all (`--allocate-node-cidrs`; on here, as in k3s).
    pub allocate_node_cidrs: bool,
    /// Heartbeat silence after which a node is Unknown (`--node-monitor-grace-period`).
    pub node_monitor_grace_period: Duration,
    /// Grace for nodes that never posted status (`--node-startup-grace-period`).
    pub node_startup_grace_period: Duration,
    /// How often every node's health is checked (`--node-monitor-period`).
    pub node_monitor_period: Duration,
    /// Per-zone NoExecute tainting rates and disruption thresholds (`--node-eviction-rate`, …).
    pub eviction_rates: nodelifecycle::zones::EvictionRates,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            cluster_cidr: "10.244.0.0/16".into(),
            node_cidr_mask_size: 24,
            allocate_node_cidrs: true,
            node_monitor_grace_period: Duration::from_secs(40),
            node_startup_grace_period: Duration::from_secs(60),
            node_monitor_period: Duration::from_secs(5),
            eviction_rates: nodelifecycle::zones::EvictionRates::default(),
        }
    }
}

/// Run every controller against `client` until `shutdown` fires, then wait for their tasks.
pub async fn run(client: kube::Client, shutdown: CancellationToken) {
    run_with(client, Options::default(), shutdown).await;
}

/// [`run`] with explicit settings.
pub async fn run_with(client: kube::Client, options: Options, shutdown: CancellationToken) {
    let tasks = TaskTracker::new();
    start_with(client, &options, shutdown.clone(), &tasks).await;
    shutdown.cancelled().await;
    tasks.close();
    tasks.wait().await;
}

/// Spawn every controller on `tasks`; returns once their caches synced (or on shutdown).
pub async fn start(client: kube::Client, shutdown: CancellationToken, tasks: &TaskTracker) {
    start_with(client, &Options::default(), shutdown, tasks).await;
}

/// [`start`] with explicit settings.
pub async fn start_with(
    client: kube::Client,
    options: &Options,
    shutdown: CancellationToken,
    tasks: &TaskTracker,
) {
    let mut pods: Informer<Pod> = Informer::new(client.clone());
    let mut sets: Informer<ReplicaSet> = Informer::new(client.clone());

    // ReplicaSet controller.
    let rs_queue = WorkQueue::new();
    let rsc = Arc::new(replicaset::ReplicaSetController {
        control: Arc::new(ClientControl::new(client.clone(), replicaset::NAME)),
        pods: pods.store(),
        sets: sets.store(),
        expectations: expectations::Expectations::new(),
        clock: system_clock(),
    });
    {
        let q = rs_queue.clone();
        sets.on_change(Arc::new(move |_old, new| {
            if let Some(rs) = new {
                q.add(Key::of(&rs.metadata));
            }
        }));
        let q = rs_queue.clone();
        let c = rsc.clone();
        let set_store = sets.store();
        pods.on_change(Arc::new(move |old, new| {
            let pod = new.or(old);
            if let Some(k) = new.and_then(replicaset::owning_set)
                && old.is_none()
            {
                c.expectations.creation_observed(&k);
            }
            if let Some(p) = pod
                && (new.is_none() || p.metadata.deletion_timestamp.is_some())
                && let Some(k) = replicaset::owning_set(p)
            {
                c.expectations
                    .deletion_observed(&k, p.metadata.name.as_deref().unwrap_or(""));
            }
            for p in [old, new].into_iter().flatten() {
                if let Some(k) = replicaset::owning_set(p) {
                    q.add(k);
                }
            }
            // An orphan may be adopted by any set whose selector matches it.
            if let Some(p) = new
                && owner::controller_of(&p.metadata).is_none()
            {
                let labels = p.metadata.labels.clone().unwrap_or_default();
                for rs in set_store.state() {
                    if rs.metadata.namespace == p.metadata.namespace
                        && replicaset::selector_of(&rs)
                            .is_ok_and(|s| !s.selects_all() && s.matches(&labels))
                    {
                        q.add(Key::of(&rs.metadata));
                    }
                }
            }
        }));
    }

    // Deployment controller.
    let mut deployments: Informer<Deployment> = Informer::new(client.clone());
    let d_queue = WorkQueue::new();
    let dc = Arc::new(deployment::DeploymentController {
        control: Arc::new(ClientControl::new(client.clone(), deployment::NAME)),
        deployments: deployments.store(),
        sets: sets.store(),
        pods: pods.store(),
        clock: system_clock(),
    });
    {
        let q = d_queue.clone();
        deployments.on_change(Arc::new(move |_old, new| {
            if let Some(d) = new {
                q.add(Key::of(&d.metadata));
            }
        }));
        let q = d_queue.clone();
        let d_store = deployments.store();
        sets.on_change(Arc::new(move |old, new| {
            for rs in [old, new].into_iter().flatten() {
                if let Some(k) = deployment::owning_deployment(rs) {
                    q.add(k);
                }
            }
            if let Some(rs) = new
                && owner::controller_of(&rs.metadata).is_none()
            {
                let labels = rs.metadata.labels.clone().unwrap_or_default();
                for d in d_store.state() {
                    if d.metadata.namespace == rs.metadata.namespace
                        && deployment::selector_of(&d)
                            .is_ok_and(|s| !s.selects_all() && s.matches(&labels))
                    {
                        q.add(Key::of(&d.metadata));
                    }
                }
            }
        }));
        // Recreate waits for old pods to go: a pod deletion may unblock its Deployment.
        let q = d_queue.clone();
        let set_store = sets.store();
        pods.on_change(Arc::new(move |old, new| {
            if new.is_some() {
                return;
            }
            if let Some(k) = old.and_then(replicaset::owning_set)
                && let Some(rs) = set_store
                    .get(&kube::runtime::reflector::ObjectRef::new(&k.name).within(&k.namespace))
                && let Some(dk) = deployment::owning_deployment(&rs)
            {
                q.add(dk);
            }
        }));
    }

    // Controllers below register handlers on the shared pod and node informers (before those
    // run), start informers of their own, and start their workers once every cache they read
    // has synced.
    let mut nodes: Informer<Node> = Informer::new(client.clone());
    jobs::register(&client, &mut pods, tasks, shutdown.clone());
    let mut revisions: Informer<k8s_openapi::api::apps::v1::ControllerRevision> =
        Informer::new(client.clone());
    statefulset::register(&client, &mut pods, &mut revisions, tasks, shutdown.clone());
    daemonset::register(
        &client,
        &mut pods,
        &mut nodes,
        &mut revisions,
        tasks,
        shutdown.clone(),
    );
    replicationcontroller::register(&client, &mut pods, tasks, shutdown.clone());
    tasks.spawn(revisions.run(shutdown.clone()));
    endpoints::register(&client, &mut pods, &shutdown, tasks);
    endpointslice::register(&client, &mut pods, &nodes, &shutdown, tasks);
    nodeipam::register(&client, options, &mut nodes, &shutdown, tasks);
    nodelifecycle::register(&client, options, &mut pods, &mut nodes, &shutdown, tasks);
    serviceaccount::register(&client, &shutdown, tasks);
    servicelb::register(&client, &mut nodes, &shutdown, tasks);
    disruption::register(&client, &mut pods, &shutdown, tasks);
    volume::register(&client, &mut pods, tasks, shutdown.clone());
    tasks.spawn(nodes.run(shutdown.clone()));

    let set_store = sets.store();
    let d_store = deployments.store();
    // Not `Store::wait_until_ready`: other controllers wait on the same caches, and kube's
    // readiness wakes only one waiter.
    let ready = futures::future::join3(
        pods.synced().wait(),
        sets.synced().wait(),
        deployments.synced().wait(),
    );
    tasks.spawn(pods.run(shutdown.clone()));
    tasks.spawn(sets.run(shutdown.clone()));
    tasks.spawn(deployments.run(shutdown.clone()));

    // Workers start once the caches hold a full list, so a sync never acts on a partial view.
    tokio::select! {
        r = ready => {
            if !(r.0 && r.1 && r.2) {
                tracing::error!("an informer stopped before it synced");
                return;
            }
        }
        _ = shutdown.cancelled() => return,
    }
    tracing::info!("controller caches synced; starting controllers");

    spawn_resync(tasks, set_store, rs_queue.clone(), shutdown.clone());
    spawn_workers(
        tasks,
        replicaset::NAME,
        rs_queue,
        shutdown.clone(),
        move |key| {
            let rsc = rsc.clone();
            async move { rsc.reconcile(&key).await }
        },
    );
    let gc_client = client.clone();
    let gc_shutdown = shutdown.clone();
    let gc_tasks = tasks.clone();
    tasks.spawn(async move {
        if let Err(e) = gc::start(gc_client, gc_shutdown, &gc_tasks).await {
            tracing::error!(controller = gc::NAME, error = %e, "garbage collector not started");
        }
    });
    spawn_resync(tasks, d_store, d_queue.clone(), shutdown.clone());
    spawn_workers(
        tasks,
        deployment::NAME,
        d_queue,
        shutdown.clone(),
        move |key| {
            let dc = dc.clone();
            async move { dc.reconcile(&key).await }
        },
    );
}
