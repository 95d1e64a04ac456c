//! Pods bound to this node: a `spec.nodeName` field-selector watch feeds one worker per pod,
//! and each worker runs a level-triggered sync of the pod's spec against the sandboxes and
//! containers the runtime actually has, then writes what it observed to `pods/status`.
//! Nothing is remembered that the runtime cannot tell again: restart counts are container
//! attempts and pods found running after an agent restart are adopted, not restarted.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Container, Node, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::cri::api;
use crate::events::{self, Recorder};
use crate::{Agent, admission, probes, util};

/// CRI labels that tie runtime objects to their pod and container (the kubelet's names).
pub const LABEL_POD_UID: &str = "io.kubernetes.pod.uid";
pub const LABEL_POD_NAME: &str = "io.kubernetes.pod.name";
pub const LABEL_POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
pub const LABEL_CONTAINER_NAME: &str = "io.kubernetes.container.name";

/// How often a running pod is re-read from the runtime (upstream's PLEG relists every 1 s).
const RESYNC_RUNNING: Duration = Duration::from_secs(1);
/// How often a worker retries after an error.
const RETRY: Duration = Duration::from_secs(2);
/// CrashLoopBackOff: 10 s doubling to 5 min, reset after 10 min of running.
const BACKOFF_INITIAL: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(300);
const BACKOFF_RESET: Duration = Duration::from_secs(600);
/// Longest a postStart hook may run before it counts as failed.
const POST_START_LIMIT: Duration = Duration::from_secs(120);

/// Errors of one sync; the worker logs them and retries.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("CRI {call}: {status}")]
    Cri {
        call: &'static str,
        status: tonic::Status,
    },
    #[error("API: {0}")]
    Api(#[from] kube::Error),
    #[error("pod has no spec")]
    NoSpec,
    /// The container cannot be created yet; shown as its waiting reason and message.
    #[error("{reason}: {message}")]
    Waiting { reason: String, message: String },
}

fn cri(call: &'static str) -> impl FnOnce(tonic::Status) -> SyncError {
    move |status| SyncError::Cri { call, status }
}

mod relist;

struct Worker {
    tx: watch::Sender<Option<Arc<Pod>>>,
    handle: tokio::task::JoinHandle<()>,
}

/// Watch the pods bound to this node and run one worker per pod until `shutdown`. Pods keep
/// running when the agent stops.
pub async fn run(agent: Arc<Agent>, shutdown: CancellationToken) {
    let api: Api<Pod> = Api::all(agent.client.clone());
    let cfg = watcher::Config::default().fields(&format!("spec.nodeName={}", agent.node_name));
    let mut events = watcher::watcher(api, cfg).default_backoff().boxed();
    let mut workers: HashMap<String, Worker> = HashMap::new();
    let mut listing: Option<HashSet<String>> = None;
    let mut synced = false;
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    let nodes: Api<Node> = Api::all(agent.client.clone());
    let mut allocatable = node_allocatable(&nodes, &agent.node_name).await;
    // New pods seen during a (re)list wait for its end, then are admitted oldest first, so the
    // pods already running are counted before them.
    let mut deferred: Vec<Pod> = Vec::new();
    let relist = Arc::new(relist::Relist::default());
    let (changed_tx, mut changed_rx) = tokio::sync::mpsc::channel::<HashSet<String>>(4);
    tokio::spawn(relist_loop(
        agent.clone(),
        relist.clone(),
        changed_tx,
        shutdown.clone(),
    ));
    let ctx = WorkerCtx {
        relist,
        shutdown: shutdown.clone(),
    };
    loop {
        tokio::select! {
            Some(uids) = changed_rx.recv() => {
                // The runtime changed under these pods: their workers sync now.
                for uid in uids {
                    if let Some(w) = workers.get(&uid) {
                        w.tx.send_modify(|_| {});
                    }
                }
            }
            ev = events.next() => match ev {
                Some(Ok(Event::Apply(pod))) => {
                    if needs_admission(&workers, &pod)
                        && !admit(&agent, &workers, allocatable.as_ref(), &pod)
                    {
                        continue;
                    }
                    upsert(&agent, &mut workers, pod, &ctx)
                }
                Some(Ok(Event::InitApply(pod))) => {
                    if let (Some(seen), Some(uid)) = (listing.as_mut(), pod.metadata.uid.clone()) {
                        seen.insert(uid);
                    }
                    if needs_admission(&workers, &pod) {
                        deferred.push(pod);
                    } else {
                        upsert(&agent, &mut workers, pod, &ctx);
                    }
                }
                Some(Ok(Event::Delete(pod))) => {
                    if let Some(w) = pod.metadata.uid.as_ref().and_then(|u| workers.get(u)) {
                        w.tx.send_replace(None);
                    }
                }
                Some(Ok(Event::Init)) => listing = Some(HashSet::new()),
                Some(Ok(Event::InitDone)) => {
                    deferred.sort_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0));
                    for pod in std::mem::take(&mut deferred) {
                        if admit(&agent, &workers, allocatable.as_ref(), &pod) {
                            upsert(&agent, &mut workers, pod, &ctx);
                        }
                    }
                    // Pods that vanished while the watch was down are torn down.
                    if let Some(seen) = listing.take() {
                        for (uid, w) in &workers {
                            if !seen.contains(uid) {
                                w.tx.send_replace(None);
                            }
                        }
                    }
                    synced = true;
                    sweep_orphans(&agent, &workers).await;
                }
                Some(Err(e)) => tracing::warn!(error = %e, "pod watch error"),
                None => break,
            },
            _ = tick.tick() => {
                workers.retain(|_, w| !w.handle.is_finished());
                if let Some(a) = node_allocatable(&nodes, &agent.node_name).await {
                    allocatable = Some(a);
                }
                let active: Vec<Arc<Pod>> =
                    workers.values().filter_map(|w| w.tx.borrow().clone()).collect();
                agent
                    .cgroups
                    .resync(active.iter().map(|p| p.as_ref()).filter(|p| admission::is_active(p)));
                if synced {
                    sweep_orphans(&agent, &workers).await;
                }
            }
            _ = shutdown.cancelled() => break,
        }
    }
    for (_, w) in workers {
        let _ = w.handle.await;
    }
}

async fn node_allocatable(nodes: &Api<Node>, name: &str) -> Option<admission::Allocatable> {
    match nodes.get_opt(name).await {
        Ok(n) => n.as_ref().and_then(admission::Allocatable::of),
        Err(e) => {
            tracing::warn!(error = %e, "reading this node's allocatable");
            None
        }
    }
}

/// A pod new to this agent that it has not started anything of and that is not finished.
fn needs_admission(workers: &HashMap<String, Worker>, pod: &Pod) -> bool {
    let known = pod
        .metadata
        .uid
        .as_ref()
        .and_then(|u| workers.get(u))
        .is_some_and(|w| !w.handle.is_finished());
    !known
        && pod.metadata.deletion_timestamp.is_none()
        && admission::is_active(pod)
        && !admission::already_running(pod)
}

/// Admit `pod` against the pods the workers hold, or reject it as the kubelet does: phase
/// Failed, reason `OutOf<resource>`, message `Pod was rejected: …`, and a Warning event.
fn admit(
    agent: &Arc<Agent>,
    workers: &HashMap<String, Worker>,
    allocatable: Option<&admission::Allocatable>,
    pod: &Pod,
) -> bool {
    let Some(node) = allocatable else {
        return true;
    };
    let admitted: Vec<Arc<Pod>> = workers
        .values()
        .filter(|w| !w.handle.is_finished())
        .filter_map(|w| w.tx.borrow().clone())
        .filter(|p| admission::is_active(p) && p.metadata.uid != pod.metadata.uid)
        .collect();
    let Err(rejection) = admission::admit(node, admitted.iter().map(|p| p.as_ref()), pod) else {
        return true;
    };
    tracing::info!(
        pod = %full_name(pod),
        reason = %rejection.reason,
        message = %rejection.message,
        "pod rejected by node admission"
    );
    let recorder = Recorder::new(agent.client.clone(), agent.node_name.clone());
    recorder.pod(
        pod,
        None,
        events::WARNING,
        &rejection.reason,
        rejection.message.clone(),
    );
    let pods: Api<Pod> = Api::namespaced(
        agent.client.clone(),
        pod.metadata.namespace.as_deref().unwrap_or("default"),
    );
    let name = pod.metadata.name.clone().unwrap_or_default();
    let status = json!({"status": {
        "phase": "Failed",
        "reason": rejection.reason,
        "message": format!("Pod was rejected: {}", rejection.message),
        "hostIP": agent.node_ip.to_string(),
        "hostIPs": [{"ip": agent.node_ip.to_string()}],
        "startTime": util::now_time(),
    }});
    tokio::spawn(async move {
        if let Err(e) = pods
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
            .await
        {
            tracing::warn!(pod = %name, error = %e, "writing the rejection");
        }
    });
    false
}

fn upsert(agent: &Arc<Agent>, workers: &mut HashMap<String, Worker>, pod: Pod, ctx: &WorkerCtx) {
    let Some(uid) = pod.metadata.uid.clone() else {
        return;
    };
    tracing::debug!(
        pod = %full_name(&pod),
        rv = pod.metadata.resource_version.as_deref().unwrap_or(""),
        deleting = pod.metadata.deletion_timestamp.is_some(),
        "pod event"
    );
    let pod = Arc::new(pod);
    if let Some(w) = workers.get(&uid)
        && !w.handle.is_finished()
    {
        // The newest object is kept either way; a status-only change waits for the next sync.
        w.tx.send_if_modified(|current| {
            let wake = current
                .as_ref()
                .is_none_or(|old| differs_beyond_status(old, &pod));
            *current = Some(pod);
            wake
        });
        return;
    }
    let (tx, rx) = watch::channel(Some(pod));
    let handle = tokio::spawn(worker(
        agent.clone(),
        uid.clone(),
        rx,
        ctx.relist.clone(),
        ctx.shutdown.clone(),
    ));
    workers.insert(uid, Worker { tx, handle });
}

/// What every worker shares.
struct WorkerCtx {
    relist: Arc<relist::Relist>,
    shutdown: CancellationToken,
}

/// Relist the runtime every period for all pods and report the pods whose record changed.
async fn relist_loop(
    agent: Arc<Agent>,
    relist: Arc<relist::Relist>,
    changed: tokio::sync::mpsc::Sender<HashSet<String>>,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(relist::PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        match relist.relist(&agent.cri).await {
            Ok(uids) if !uids.is_empty() => {
                if changed.send(uids).await.is_err() {
                    return;
                }
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "runtime relist failed"),
        }
    }
}

/// Whether `new` differs from `old` in more than its status and bookkeeping: only then does
/// the worker have to sync at once (the agent's own status writes come back as watch events;
/// upstream's kubelet likewise only reconciles status-only updates).
fn differs_beyond_status(old: &Pod, new: &Pod) -> bool {
    let meta = |p: &Pod| k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        resource_version: None,
        managed_fields: None,
        ..p.metadata.clone()
    };
    old.spec != new.spec || meta(old) != meta(new)
}

/// Sandboxes whose pod this agent does not know are torn down (pods deleted while it was away).
async fn sweep_orphans(agent: &Agent, workers: &HashMap<String, Worker>) {
    if !agent.owns_runtime {
        return;
    }
    let Ok(list) = agent
        .cri
        .rt
        .clone()
        .list_pod_sandbox(api::ListPodSandboxRequest { filter: None })
        .await
    else {
        return;
    };
    let orphans: HashSet<String> = list
        .into_inner()
        .items
        .into_iter()
        .filter_map(|s| s.labels.get(LABEL_POD_UID).cloned())
        .filter(|uid| !workers.contains_key(uid))
        .collect();
    for uid in orphans {
        tracing::info!(%uid, "tearing down an orphaned pod sandbox");
        if let Err(e) = teardown(agent, &uid, 2, None).await {
            tracing::warn!(%uid, error = %e, "orphan teardown failed");
        }
    }
}

/// What a worker keeps between syncs. Everything here can be lost without harm.
#[derive(Default)]
struct PodState {
    /// The status last written, to write only changes.
    last_written: Option<Value>,
    /// Condition type -> (status, lastTransitionTime).
    transitions: HashMap<String, (String, String)>,
    /// Container name -> why it is waiting (image pull or create errors) and until when.
    waiting: HashMap<String, (String, String, Instant)>,
    /// When the worker first saw the pod, for the startup latency log.
    first_seen: Option<Instant>,
    reported_running: bool,
    last_pod: Option<Arc<Pod>>,
    /// Probe workers of the running containers (`probes.rs`).
    prober: probes::Prober,
    events: Option<Recorder>,
    /// Dead containers whose BackOff event was written.
    backoff_reported: HashSet<String>,
    /// Sidecars being stopped because the app containers finished.
    stopping: HashSet<String>,
    /// Container name -> failed image pulls in a row and when the last one failed.
    pull_failures: HashMap<String, (u32, Instant)>,
    /// The shared runtime snapshot; without it every sync asks the runtime itself.
    relist: Option<Arc<relist::Relist>>,
    /// When this worker's last change to the runtime finished: older snapshots are not used.
    mutated_at: Option<Instant>,
}

async fn worker(
    agent: Arc<Agent>,
    uid: String,
    mut rx: watch::Receiver<Option<Arc<Pod>>>,
    relist: Arc<relist::Relist>,
    shutdown: CancellationToken,
) {
    let mut st = PodState {
        first_seen: Some(Instant::now()),
        events: Some(Recorder::new(agent.client.clone(), agent.node_name.clone())),
        relist: Some(relist),
        ..PodState::default()
    };
    loop {
        let pod = rx.borrow_and_update().clone();
        let delay = match pod {
            None => {
                // Gone from the API (force-deleted or deleted while we were away).
                let grace = st
                    .last_pod
                    .as_ref()
                    .and_then(|p| p.metadata.deletion_grace_period_seconds)
                    .unwrap_or(2);
                match teardown(&agent, &uid, grace, st.last_pod.as_deref()).await {
                    Ok(()) => return,
                    Err(e) => {
                        tracing::warn!(%uid, error = %e, "teardown failed; retrying");
                        RETRY
                    }
                }
            }
            Some(pod) => {
                st.last_pod = Some(pod.clone());
                match sync(&agent, &pod, &mut st).await {
                    Ok(d) => d,
                    Err(e) => {
                        tracing::warn!(pod = %full_name(&pod), error = %e, "sync failed");
                        RETRY
                    }
                }
            }
        };
        tokio::select! {
            changed = rx.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

fn full_name(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod.metadata.name.as_deref().unwrap_or("")
    )
}

/// The runtime's view of one pod.
struct Observed {
    sandbox_id: String,
    sandbox_config: api::PodSandboxConfig,
    ip: String,
    /// Container name -> its containers, newest attempt first.
    containers: HashMap<String, Vec<api::ContainerStatus>>,
    /// The pod's volumes as this sync prepared them, or why they are not ready.
    volumes: Result<HashMap<String, crate::volumes::Prepared>, String>,
    /// Whether observing changed the runtime (a dead sandbox replaced, a new one started).
    mutated: bool,
}

async fn sync(agent: &Agent, pod: &Pod, st: &mut PodState) -> Result<Duration, SyncError> {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let spec = pod.spec.as_ref().ok_or(SyncError::NoSpec)?;
    if pod.metadata.deletion_timestamp.is_some() {
        let grace = pod.metadata.deletion_grace_period_seconds.unwrap_or(30);
        teardown(agent, &uid, grace, Some(pod)).await?;
        let pods: Api<Pod> = Api::namespaced(
            agent.client.clone(),
            pod.metadata.namespace.as_deref().unwrap_or("default"),
        );
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(uid.clone()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match pods
            .delete(pod.metadata.name.as_deref().unwrap_or(""), &params)
            .await
        {
            Ok(_) => tracing::info!(pod = %full_name(pod), "pod stopped and deleted"),
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
        // The watch's DELETED event ends the worker.
        return Ok(RETRY);
    }
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    if matches!(phase, Some("Succeeded") | Some("Failed")) {
        // A finished pod keeps its containers (for logs) but gives back its sandbox and IP.
        stop_sandboxes(agent, &uid).await?;
        return Ok(Duration::from_secs(30));
    }

    let cached = st
        .relist
        .as_ref()
        .and_then(|r| r.record(&uid, st.mutated_at));
    let mut obs = match cached {
        Some(r) => Observed {
            sandbox_config: sandbox_config(agent, pod, r.attempt),
            sandbox_id: r.sandbox_id,
            ip: r.ip,
            containers: r.containers,
            volumes: Ok(HashMap::new()),
            mutated: false,
        },
        None => observe(agent, pod, &uid).await?,
    };
    if obs.mutated {
        st.mutated_at = Some(Instant::now());
    }
    obs.volumes = crate::volumes::prepare(
        &agent.client,
        &agent.pods_dir,
        pod,
        &node_facts(agent),
        &obs.ip,
    )
    .await
    .map_err(|e| {
        tracing::warn!(pod = %full_name(pod), error = %e, "volumes not ready");
        e.to_string()
    });
    let restart_policy = spec.restart_policy.as_deref().unwrap_or("Always");
    let mut next = RESYNC_RUNNING;
    let mut changed = false;

    // Init containers strictly in order, each to completion; a sidecar (an init container with
    // restartPolicy Always) only has to be started (startupProbe passed) before the next one.
    let inits: Vec<&Container> = spec.init_containers.iter().flatten().collect();
    let mut init_done = true;
    let mut init_failed = false;
    for (i, c) in inits.iter().enumerate() {
        let c = *c;
        let latest = obs.containers.get(&c.name).and_then(|v| v.first());
        if is_sidecar(c) {
            // Once anything after it ran, the sidecar's own restarts no longer gate the pod.
            let later_ran = inits[i + 1..]
                .iter()
                .map(|l| &l.name)
                .chain(spec.containers.iter().map(|a| &a.name))
                .any(|n| obs.containers.contains_key(n));
            match latest {
                None => {
                    if !waiting_blocks(st, &c.name) {
                        start(agent, pod, c, 0, &obs, st).await;
                        changed = true;
                        // Started without a startupProbe counts as started on the next pass.
                        next = Duration::from_millis(50);
                    }
                    init_done = false;
                    break;
                }
                Some(s)
                    if s.state() == api::ContainerState::ContainerRunning
                        && st.prober.started(&s.id) =>
                {
                    continue;
                }
                Some(_) if later_ran => continue,
                Some(_) => {
                    init_done = false;
                    break;
                }
            }
        }
        match latest {
            None => {
                if !waiting_blocks(st, &c.name) {
                    start(agent, pod, c, 0, &obs, st).await;
                    changed = true;
                }
                init_done = false;
                break;
            }
            Some(s) if s.state() != api::ContainerState::ContainerExited => {
                init_done = false;
                break;
            }
            Some(s) if s.exit_code == 0 => continue,
            Some(s) => {
                init_done = false;
                if restart_policy == "Never" {
                    init_failed = true;
                } else {
                    match backoff_remaining(s) {
                        None => {
                            start(agent, pod, c, attempt_of(s) + 1, &obs, st).await;
                            changed = true;
                        }
                        Some(d) => next = next.min(d),
                    }
                }
                break;
            }
        }
    }
    // The regular containers are finished for good: sidecars are stopped, not restarted.
    let main_done = init_failed
        || (init_done
            && spec.containers.iter().all(|c| {
                obs.containers
                    .get(&c.name)
                    .and_then(|v| v.first())
                    .is_some_and(|s| {
                        s.state() == api::ContainerState::ContainerExited
                            && !should_restart(restart_policy, s.exit_code)
                    })
            }));
    let sidecars: Vec<&Container> = inits.iter().copied().filter(|c| is_sidecar(c)).collect();
    if main_done {
        stop_sidecars(agent, pod, &obs, st, &sidecars);
    } else {
        // Sidecars are restarted whenever they exit, whatever the pod's restartPolicy.
        for c in &sidecars {
            let Some(s) = obs.containers.get(&c.name).and_then(|v| v.first()) else {
                continue;
            };
            if s.state() == api::ContainerState::ContainerExited {
                restart_after_backoff(agent, pod, c, s, &obs, st, &mut next, &mut changed).await;
            }
        }
    }
    if init_done {
        for c in &spec.containers {
            let latest = obs.containers.get(&c.name).and_then(|v| v.first());
            match latest {
                None => {
                    if waiting_blocks(st, &c.name) {
                        continue;
                    }
                    start(agent, pod, c, 0, &obs, st).await;
                    changed = true;
                }
                Some(s) if s.state() == api::ContainerState::ContainerExited => {
                    if should_restart(restart_policy, s.exit_code) {
                        restart_after_backoff(agent, pod, c, s, &obs, st, &mut next, &mut changed)
                            .await;
                    }
                }
                Some(_) => {}
            }
        }
    }
    if changed {
        st.mutated_at = Some(Instant::now());
        obs.containers = containers_of(agent, &obs.sandbox_id).await?;
    }
    run_probes(agent, pod, &obs, st);
    let status = build_status(agent, pod, &obs, st, init_done, init_failed, restart_policy);
    if st.last_written.as_ref() != Some(&status) {
        let pods: Api<Pod> = Api::namespaced(
            agent.client.clone(),
            pod.metadata.namespace.as_deref().unwrap_or("default"),
        );
        pods.patch_status(
            pod.metadata.name.as_deref().unwrap_or(""),
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": status})),
        )
        .await?;
        if status["phase"] == "Running"
            && !st.reported_running
            && let Some(t0) = st.first_seen
        {
            st.reported_running = true;
            tracing::info!(
                pod = %full_name(pod),
                ip = %obs.ip,
                elapsed_ms = t0.elapsed().as_millis() as u64,
                "pod running"
            );
        }
        st.last_written = Some(status);
    }
    Ok(next)
}

fn attempt_of(s: &api::ContainerStatus) -> u32 {
    s.metadata.as_ref().map(|m| m.attempt).unwrap_or(0)
}

fn should_restart(policy: &str, exit_code: i32) -> bool {
    match policy {
        "Never" => false,
        "OnFailure" => exit_code != 0,
        _ => true,
    }
}

/// An init container that keeps running beside the app containers (KEP-753 sidecar).
pub fn is_sidecar(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

/// Restart the dead container `s` of `c` once its back-off has passed; until then note when
/// to look again and write the `BackOff` event once.
#[allow(clippy::too_many_arguments)]
async fn restart_after_backoff(
    agent: &Agent,
    pod: &Pod,
    c: &Container,
    s: &api::ContainerStatus,
    obs: &Observed,
    st: &mut PodState,
    next: &mut Duration,
    changed: &mut bool,
) {
    match backoff_remaining(s) {
        None => {
            start(agent, pod, c, attempt_of(s) + 1, obs, st).await;
            *changed = true;
        }
        Some(d) => {
            *next = (*next).min(d.max(Duration::from_millis(100)));
            if st.backoff_reported.insert(s.id.clone())
                && let Some(ev) = &st.events
            {
                ev.pod(
                    pod,
                    Some(&c.name),
                    events::WARNING,
                    "BackOff",
                    format!(
                        "Back-off restarting failed container {} in pod {}_{}({})",
                        c.name,
                        pod.metadata.name.as_deref().unwrap_or(""),
                        pod.metadata.namespace.as_deref().unwrap_or("default"),
                        pod.metadata.uid.as_deref().unwrap_or(""),
                    ),
                );
            }
        }
    }
}

/// Stop the running sidecars once the app containers are done, last-started first.
fn stop_sidecars(
    agent: &Agent,
    pod: &Pod,
    obs: &Observed,
    st: &mut PodState,
    sidecars: &[&Container],
) {
    let running: Vec<(String, String)> = sidecars
        .iter()
        .rev()
        .filter_map(|c| {
            let s = obs.containers.get(&c.name)?.first()?;
            (s.state() == api::ContainerState::ContainerRunning && st.stopping.insert(s.id.clone()))
                .then(|| (s.id.clone(), c.name.clone()))
        })
        .collect();
    let (Some(ev), false) = (st.events.clone(), running.is_empty()) else {
        return;
    };
    let grace = pod
        .spec
        .as_ref()
        .and_then(|s| s.termination_grace_period_seconds)
        .unwrap_or(30);
    let (rt, pod) = (agent.cri.rt.clone(), pod.clone());
    tokio::spawn(async move {
        for (id, name) in running {
            ev.pod(
                &pod,
                Some(&name),
                events::NORMAL,
                "Killing",
                format!("Stopping container {name}"),
            );
            if let Err(e) = probes::stop_container(&rt, &ev, Some(&pod), &id, &name, grace).await {
                tracing::warn!(container = %name, error = %e, "stopping a sidecar");
            }
        }
    });
}

/// How long a dead container still waits before its restart (None: restart now). Computed from
/// the runtime's own record, so it survives agent restarts.
fn backoff_remaining(s: &api::ContainerStatus) -> Option<Duration> {
    let ran = Duration::from_nanos((s.finished_at - s.started_at).max(0) as u64);
    if ran >= BACKOFF_RESET {
        return None;
    }
    let delay = backoff_for(attempt_of(s));
    let finished = Duration::from_nanos(s.finished_at.max(0) as u64);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let since = now.saturating_sub(finished);
    (since < delay).then(|| delay - since)
}

/// The back-off before restart number `attempt + 1`: 10 s, 20 s, 40 s … capped at 5 min.
pub fn backoff_for(attempt: u32) -> Duration {
    BACKOFF_INITIAL
        .saturating_mul(1u32 << attempt.min(10))
        .min(BACKOFF_MAX)
}

fn waiting_blocks(st: &PodState, name: &str) -> bool {
    st.waiting
        .get(name)
        .is_some_and(|(_, _, until)| Instant::now() < *until)
}

/// Start probe workers for the running app containers and restart those whose liveness or
/// startup probe failed (preStop, then stop within the grace period; the sync restarts them
/// under the pod's restartPolicy).
fn run_probes(agent: &Agent, pod: &Pod, obs: &Observed, st: &mut PodState) {
    let (Some(spec), Some(arc), Some(ev)) =
        (pod.spec.as_ref(), st.last_pod.clone(), st.events.clone())
    else {
        return;
    };
    let mut running = HashSet::new();
    let sidecars = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| is_sidecar(c));
    for c in spec.containers.iter().chain(sidecars) {
        let Some(s) = obs.containers.get(&c.name).and_then(|v| v.first()) else {
            continue;
        };
        if s.state() != api::ContainerState::ContainerRunning {
            continue;
        }
        running.insert(s.id.clone());
        st.prober.ensure(
            &ev,
            &arc,
            probes::Target {
                rt: agent.cri.rt.clone(),
                container_id: s.id.clone(),
                pod_ip: obs.ip.clone(),
                container: c.clone(),
            },
        );
        if let Some(kind) = st.prober.take_failed(&s.id) {
            let probe = match kind {
                probes::Kind::Startup => c.startup_probe.as_ref(),
                _ => c.liveness_probe.as_ref(),
            };
            let grace = probe
                .and_then(|p| p.termination_grace_period_seconds)
                .or(spec.termination_grace_period_seconds)
                .unwrap_or(30);
            ev.pod(
                pod,
                Some(&c.name),
                events::NORMAL,
                "Killing",
                format!(
                    "Container {} failed {} probe, will be restarted",
                    c.name,
                    kind.name().to_ascii_lowercase()
                ),
            );
            let (rt, id, name, ev, arc) = (
                agent.cri.rt.clone(),
                s.id.clone(),
                c.name.clone(),
                ev.clone(),
                arc.clone(),
            );
            tokio::spawn(async move {
                if let Err(e) =
                    probes::stop_container(&rt, &ev, Some(&arc), &id, &name, grace).await
                {
                    tracing::warn!(container = %name, error = %e, "stopping an unhealthy container");
                }
            });
        }
    }
    st.prober.retain(&running);
}

/// Find (or create) the pod's ready sandbox and read its containers.
async fn observe(agent: &Agent, pod: &Pod, uid: &str) -> Result<Observed, SyncError> {
    let mut rt = agent.cri.rt.clone();
    let mut sandboxes = rt
        .list_pod_sandbox(api::ListPodSandboxRequest {
            filter: Some(api::PodSandboxFilter {
                label_selector: [(LABEL_POD_UID.to_string(), uid.to_string())].into(),
                ..Default::default()
            }),
        })
        .await
        .map_err(cri("ListPodSandbox"))?
        .into_inner()
        .items;
    sandboxes.sort_by_key(|s| std::cmp::Reverse(s.created_at));
    let ready = sandboxes
        .iter()
        .find(|s| s.state() == api::PodSandboxState::SandboxReady)
        .cloned();
    let mutated = ready.is_none();
    let sandbox = match ready {
        Some(s) => s,
        None => {
            // A dead sandbox takes its containers with it: remove it and start over.
            let attempt = sandboxes
                .iter()
                .filter_map(|s| s.metadata.as_ref().map(|m| m.attempt + 1))
                .max()
                .unwrap_or(0);
            for s in &sandboxes {
                remove_sandbox(agent, &s.id).await?;
            }
            let config = sandbox_config(agent, pod, attempt);
            let _ = std::fs::create_dir_all(&config.log_directory);
            agent.cgroups.ensure_pod(pod);
            let id = rt
                .run_pod_sandbox(api::RunPodSandboxRequest {
                    config: Some(config),
                    runtime_handler: String::new(),
                })
                .await
                .map_err(cri("RunPodSandbox"))?
                .into_inner()
                .pod_sandbox_id;
            tracing::debug!(pod = %full_name(pod), sandbox = %id, "sandbox started");
            api::PodSandbox {
                id,
                metadata: Some(api::PodSandboxMetadata {
                    attempt,
                    ..Default::default()
                }),
                ..Default::default()
            }
        }
    };
    let attempt = sandbox.metadata.as_ref().map(|m| m.attempt).unwrap_or(0);
    let status = rt
        .pod_sandbox_status(api::PodSandboxStatusRequest {
            pod_sandbox_id: sandbox.id.clone(),
            verbose: false,
        })
        .await
        .map_err(cri("PodSandboxStatus"))?
        .into_inner();
    let ip = status
        .status
        .and_then(|s| s.network)
        .map(|n| n.ip)
        .unwrap_or_default();
    let containers = containers_of(agent, &sandbox.id).await?;
    Ok(Observed {
        sandbox_config: sandbox_config(agent, pod, attempt),
        sandbox_id: sandbox.id,
        ip,
        containers,
        volumes: Ok(HashMap::new()),
        mutated,
    })
}

/// A listed container's status; None when it was removed between the list and this call.
async fn runtime_container_status(
    rt: &mut k8s_cri::v1::runtime_service_client::RuntimeServiceClient<tonic::transport::Channel>,
    id: &str,
) -> Result<Option<api::ContainerStatus>, SyncError> {
    let request = api::ContainerStatusRequest {
        container_id: id.to_string(),
        verbose: false,
    };
    match rt.container_status(request).await {
        Ok(s) => Ok(s.into_inner().status),
        Err(s) if s.code() == tonic::Code::NotFound => Ok(None),
        Err(s) => Err(cri("ContainerStatus")(s)),
    }
}

/// A container's name in its pod: the agent's label, else the CRI metadata name.
fn container_name(c: &api::Container) -> String {
    c.labels
        .get(LABEL_CONTAINER_NAME)
        .cloned()
        .or_else(|| c.metadata.as_ref().map(|m| m.name.clone()))
        .unwrap_or_default()
}

/// Each name's containers, newest attempt first.
fn sort_newest_first(by_name: &mut HashMap<String, Vec<api::ContainerStatus>>) {
    for v in by_name.values_mut() {
        v.sort_by_key(|s| std::cmp::Reverse(attempt_of(s)));
    }
}

async fn containers_of(
    agent: &Agent,
    sandbox_id: &str,
) -> Result<HashMap<String, Vec<api::ContainerStatus>>, SyncError> {
    let mut rt = agent.cri.rt.clone();
    let list = rt
        .list_containers(api::ListContainersRequest {
            filter: Some(api::ContainerFilter {
                pod_sandbox_id: sandbox_id.to_string(),
                ..Default::default()
            }),
        })
        .await
        .map_err(cri("ListContainers"))?
        .into_inner()
        .containers;
    let mut by_name: HashMap<String, Vec<api::ContainerStatus>> = HashMap::new();
    for c in list {
        if let Some(status) = runtime_container_status(&mut rt, &c.id).await? {
            by_name.entry(container_name(&c)).or_default().push(status);
        }
    }
    sort_newest_first(&mut by_name);
    Ok(by_name)
}

fn pod_labels(pod: &Pod) -> BTreeMap<String, String> {
    [
        (LABEL_POD_UID, pod.metadata.uid.clone().unwrap_or_default()),
        (
            LABEL_POD_NAME,
            pod.metadata.name.clone().unwrap_or_default(),
        ),
        (
            LABEL_POD_NAMESPACE,
            pod.metadata.namespace.clone().unwrap_or_default(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn namespace_options(pod: &Pod) -> api::NamespaceOption {
    let spec = pod.spec.as_ref();
    let node_if = |b: Option<bool>, otherwise: api::NamespaceMode| {
        if b == Some(true) {
            api::NamespaceMode::Node as i32
        } else {
            otherwise as i32
        }
    };
    api::NamespaceOption {
        network: node_if(spec.and_then(|s| s.host_network), api::NamespaceMode::Pod),
        pid: node_if(spec.and_then(|s| s.host_pid), api::NamespaceMode::Container),
        ipc: node_if(spec.and_then(|s| s.host_ipc), api::NamespaceMode::Pod),
        ..Default::default()
    }
}

/// The sandbox config of `pod`: metadata, hostname, logs, DNS, host ports, cgroup parent.
pub fn sandbox_config(agent: &Agent, pod: &Pod, attempt: u32) -> api::PodSandboxConfig {
    let spec = pod.spec.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let ns = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let mut hostname = spec.hostname.clone().unwrap_or_else(|| name.clone());
    hostname.truncate(63);
    // A pod on the node's network keeps the node's hostname, as the kubelet leaves it unset
    // there (runc cannot set one without a private UTS namespace).
    if spec.host_network == Some(true) {
        hostname.clear();
    }
    let dns_config = match spec.dns_policy.as_deref() {
        // Default: the node's resolv.conf, which the runtime copies when given none.
        Some("Default") => None,
        Some("None") => spec.dns_config.as_ref().map(|d| api::DnsConfig {
            servers: d.nameservers.clone().unwrap_or_default(),
            searches: d.searches.clone().unwrap_or_default(),
            options: d
                .options
                .iter()
                .flatten()
                .map(|o| match &o.value {
                    Some(v) => format!("{}:{v}", o.name.clone().unwrap_or_default()),
                    None => o.name.clone().unwrap_or_default(),
                })
                .collect(),
        }),
        _ if spec.host_network == Some(true) => None,
        _ => Some(api::DnsConfig {
            servers: vec![agent.cluster_dns.clone()],
            searches: vec![
                format!("{ns}.svc.{}", agent.cluster_domain),
                format!("svc.{}", agent.cluster_domain),
                agent.cluster_domain.clone(),
            ],
            options: vec!["ndots:5".into()],
        }),
    };
    let port_mappings = spec
        .containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .filter(|p| p.host_port.unwrap_or(0) > 0)
        .map(|p| api::PortMapping {
            protocol: match p.protocol.as_deref() {
                Some("UDP") => api::Protocol::Udp as i32,
                Some("SCTP") => api::Protocol::Sctp as i32,
                _ => api::Protocol::Tcp as i32,
            },
            container_port: p.container_port,
            host_port: p.host_port.unwrap_or(0),
            host_ip: p.host_ip.clone().unwrap_or_default(),
        })
        .collect();
    let mut labels: std::collections::HashMap<String, String> = pod
        .metadata
        .labels
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    labels.extend(pod_labels(pod));
    let privileged = spec.containers.iter().any(|c| {
        c.security_context
            .as_ref()
            .and_then(|s| s.privileged)
            .unwrap_or(false)
    });
    api::PodSandboxConfig {
        metadata: Some(api::PodSandboxMetadata {
            name,
            uid: uid.clone(),
            namespace: ns.clone(),
            attempt,
        }),
        hostname,
        log_directory: agent
            .pods_dir
            .join(format!(
                "{ns}_{}_{uid}",
                pod.metadata.name.as_deref().unwrap_or("")
            ))
            .display()
            .to_string(),
        dns_config,
        port_mappings,
        labels,
        annotations: pod
            .metadata
            .annotations
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
        linux: Some(api::LinuxPodSandboxConfig {
            cgroup_parent: agent.cgroups.pod_path(pod),
            security_context: Some(api::LinuxSandboxSecurityContext {
                namespace_options: Some(namespace_options(pod)),
                privileged,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// `$(VAR)` references expanded from `env`; `$$` escapes; unknown references stay as written.
pub fn expand(s: &str, env: &HashMap<String, String>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(a) = after.strip_prefix('$') {
            out.push('$');
            rest = a;
        } else if let Some(inner) = after.strip_prefix('(')
            && let Some(end) = inner.find(')')
        {
            let name = &inner[..end];
            match env.get(name) {
                Some(v) => out.push_str(v),
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

fn node_facts(agent: &Agent) -> crate::env::NodeFacts {
    crate::env::NodeFacts::of_host(&agent.node_name, &agent.node_ip.to_string())
}

/// Pull (as the pull policy says), create and start one container; failures are recorded as
/// the container's waiting reason, as the kubelet reports them.
async fn start(
    agent: &Agent,
    pod: &Pod,
    c: &Container,
    attempt: u32,
    obs: &Observed,
    st: &mut PodState,
) {
    let image = c.image.clone().unwrap_or_default();
    let ev = st.events.clone();
    let event = |type_: &str, reason: &str, message: String| {
        if let Some(ev) = &ev {
            ev.pod(pod, Some(&c.name), type_, reason, message);
        }
    };
    if let Err((reason, message)) = ensure_image(agent, pod, &image, c, &event).await {
        tracing::warn!(pod = %full_name(pod), container = %c.name, %reason, %message, "image");
        event(events::WARNING, "Failed", format!("Error: {reason}"));
        // Failed pulls of a container back off as upstream's image back-off: 10 s doubling to
        // 5 min, reset by a pull that works.
        let backoff = if reason == "ErrImagePull" {
            let entry = st
                .pull_failures
                .entry(c.name.clone())
                .or_insert((0, Instant::now()));
            *entry = (entry.0 + 1, Instant::now());
            backoff_for(entry.0 - 1)
        } else {
            RETRY
        };
        st.waiting
            .insert(c.name.clone(), (reason, message, Instant::now() + backoff));
        return;
    }
    st.pull_failures.remove(&c.name);
    match create_and_start(agent, pod, c, attempt, obs).await {
        Ok(id) => {
            st.waiting.remove(&c.name);
            event(
                events::NORMAL,
                "Created",
                format!("Created container: {}", c.name),
            );
            event(
                events::NORMAL,
                "Started",
                format!("Started container {}", c.name),
            );
            tracing::debug!(pod = %full_name(pod), container = %c.name, %id, attempt, "container started");
            post_start(agent, pod, c, &id, obs, ev.as_ref()).await;
        }
        Err(e) => {
            tracing::warn!(pod = %full_name(pod), container = %c.name, error = %e, "container start failed");
            let (reason, message) = match e {
                SyncError::Waiting { reason, message } => (reason, message),
                e => ("CreateContainerError".into(), e.to_string()),
            };
            event(events::WARNING, "Failed", format!("Error: {message}"));
            st.waiting
                .insert(c.name.clone(), (reason, message, Instant::now() + RETRY));
        }
    }
}

/// The postStart hook runs right after StartContainer, as upstream; a failure kills the
/// container (the sync then restarts it under the restartPolicy).
async fn post_start(
    agent: &Agent,
    pod: &Pod,
    c: &Container,
    id: &str,
    obs: &Observed,
    ev: Option<&Recorder>,
) {
    let Some(hook) = c.lifecycle.as_ref().and_then(|l| l.post_start.as_ref()) else {
        return;
    };
    let target = probes::Target {
        rt: agent.cri.rt.clone(),
        container_id: id.to_string(),
        pod_ip: obs.ip.clone(),
        container: c.clone(),
    };
    let Err(f) = probes::run_hook(&target, hook, POST_START_LIMIT).await else {
        return;
    };
    tracing::info!(pod = %full_name(pod), container = %c.name, error = %f, "postStart hook failed");
    let Some(ev) = ev else { return };
    ev.pod(
        pod,
        Some(&c.name),
        events::WARNING,
        "FailedPostStartHook",
        format!("PostStartHook failed: {f}"),
    );
    ev.pod(
        pod,
        Some(&c.name),
        events::NORMAL,
        "Killing",
        "FailedPostStartHook".to_string(),
    );
    let grace = pod
        .spec
        .as_ref()
        .and_then(|s| s.termination_grace_period_seconds)
        .unwrap_or(30);
    // No preStop: upstream skips it for a container killed by its failed postStart hook.
    if let Err(e) = probes::stop_container(&agent.cri.rt, ev, None, id, &c.name, grace).await {
        tracing::warn!(container = %c.name, error = %e, "stopping after a failed postStart hook");
    }
}

fn pull_policy(c: &Container, image: &str) -> String {
    if let Some(p) = &c.image_pull_policy {
        return p.clone();
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    let tagged = last.contains(':') && !last.ends_with(":latest");
    if tagged || image.contains('@') {
        "IfNotPresent".into()
    } else {
        "Always".into()
    }
}

async fn ensure_image(
    agent: &Agent,
    pod: &Pod,
    image: &str,
    c: &Container,
    event: &(dyn Fn(&str, &str, String) + Sync),
) -> Result<(), (String, String)> {
    let mut img = agent.cri.img.clone();
    let spec = api::ImageSpec {
        image: image.to_string(),
        ..Default::default()
    };
    let present = img
        .image_status(api::ImageStatusRequest {
            image: Some(spec.clone()),
            verbose: false,
        })
        .await
        .map(|r| r.into_inner().image.is_some())
        .unwrap_or(false);
    let already = || {
        event(
            events::NORMAL,
            "Pulled",
            format!("Container image \"{image}\" already present on machine"),
        )
    };
    match pull_policy(c, image).as_str() {
        "Never" if present => {
            already();
            Ok(())
        }
        "Never" => {
            let msg =
                format!("Container image \"{image}\" is not present with pull policy of Never");
            event(events::WARNING, "ErrImageNeverPull", msg.clone());
            Err(("ErrImageNeverPull".into(), msg))
        }
        "IfNotPresent" if present => {
            already();
            Ok(())
        }
        _ => {
            event(
                events::NORMAL,
                "Pulling",
                format!("Pulling image \"{image}\""),
            );
            let t0 = Instant::now();
            let (entries, missing) = crate::pull_secrets::of_pod(&agent.client, pod).await;
            if !missing.is_empty() {
                event(
                    events::WARNING,
                    "FailedToRetrieveImagePullSecret",
                    format!(
                        "Unable to retrieve some image pull secrets ({}); attempting to pull the image may not succeed.",
                        missing.join(", ")
                    ),
                );
            }
            // Every matching credential is tried in turn; without any the pull is anonymous.
            let mut auths: Vec<Option<api::AuthConfig>> =
                crate::pull_secrets::matching(&entries, image)
                    .iter()
                    .map(|e| Some(e.auth_config()))
                    .collect();
            if auths.is_empty() {
                auths.push(None);
            }
            let mut result = Err(tonic::Status::unknown("no pull attempted"));
            for auth in auths {
                result = img
                    .pull_image(api::PullImageRequest {
                        image: Some(spec.clone()),
                        auth,
                        sandbox_config: None,
                    })
                    .await;
                if result.is_ok() {
                    break;
                }
            }
            match result {
                Ok(_) => {
                    let secs = t0.elapsed().as_secs_f64();
                    event(
                        events::NORMAL,
                        "Pulled",
                        format!(
                            "Successfully pulled image \"{image}\" in {secs:.3}s ({secs:.3}s including waiting)"
                        ),
                    );
                    Ok(())
                }
                Err(s) => {
                    event(
                        events::WARNING,
                        "Failed",
                        format!("Failed to pull image \"{image}\": {}", s.message()),
                    );
                    Err(("ErrImagePull".into(), s.message().to_string()))
                }
            }
        }
    }
}

async fn create_and_start(
    agent: &Agent,
    pod: &Pod,
    c: &Container,
    attempt: u32,
    obs: &Observed,
) -> Result<String, SyncError> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let (cms, secrets) = crate::env::referenced(c);
    let sources = crate::env::fetch(&agent.client, ns, &cms, &secrets).await?;
    let env = crate::env::resolve(pod, c, &node_facts(agent), &obs.ip, &sources).map_err(|e| {
        SyncError::Waiting {
            reason: "CreateContainerConfigError".into(),
            message: e.0,
        }
    })?;
    let env_map: HashMap<String, String> = env.iter().cloned().collect();
    // Volumes not ready keep the container in ContainerCreating, as upstream.
    let vols = obs.volumes.as_ref().map_err(|_| SyncError::Waiting {
        reason: "ContainerCreating".into(),
        message: String::new(),
    })?;
    let mounts =
        crate::volumes::mounts(c, vols, &env_map).map_err(|message| SyncError::Waiting {
            reason: "CreateContainerConfigError".into(),
            message,
        })?;
    let log_dir = std::path::Path::new(&obs.sandbox_config.log_directory).join(&c.name);
    let _ = std::fs::create_dir_all(&log_dir);
    let mut labels: HashMap<String, String> = pod_labels(pod).into_iter().collect();
    labels.insert(LABEL_CONTAINER_NAME.into(), c.name.clone());
    let res = c.resources.as_ref();
    let cpu_request = util::resource(res.and_then(|r| r.requests.as_ref()), "cpu");
    let cpu_limit = util::resource(res.and_then(|r| r.limits.as_ref()), "cpu");
    let memory_limit = util::resource(res.and_then(|r| r.limits.as_ref()), "memory");
    let qos = util::qos_class(pod);
    let resources = api::LinuxContainerResources {
        // Shares from the request (the limit when no request), at least 2, as the kubelet.
        cpu_shares: cpu_request
            .or(cpu_limit)
            .map(|m| (m * 1024 / 1000).max(2))
            .unwrap_or(2),
        cpu_period: cpu_limit.map(|_| 100_000).unwrap_or(0),
        cpu_quota: cpu_limit.map(|m| (m * 100).max(1000)).unwrap_or(0),
        memory_limit_in_bytes: memory_limit.unwrap_or(0),
        // Never negative: these machines lack CAP_SYS_RESOURCE (containerd restricts it too).
        oom_score_adj: if qos == "BestEffort" { 1000 } else { 0 },
        ..Default::default()
    };
    let sc = c.security_context.as_ref();
    let pod_sc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let security = api::LinuxContainerSecurityContext {
        privileged: sc.and_then(|s| s.privileged).unwrap_or(false),
        run_as_user: sc
            .and_then(|s| s.run_as_user)
            .or(pod_sc.and_then(|s| s.run_as_user))
            .map(|value| api::Int64Value { value }),
        run_as_group: sc
            .and_then(|s| s.run_as_group)
            .or(pod_sc.and_then(|s| s.run_as_group))
            .map(|value| api::Int64Value { value }),
        readonly_rootfs: sc
            .and_then(|s| s.read_only_root_filesystem)
            .unwrap_or(false),
        capabilities: sc
            .and_then(|s| s.capabilities.as_ref())
            .map(|caps| api::Capability {
                add_capabilities: caps.add.clone().unwrap_or_default(),
                drop_capabilities: caps.drop.clone().unwrap_or_default(),
                ..Default::default()
            }),
        namespace_options: Some(namespace_options(pod)),
        ..Default::default()
    };
    let config = api::ContainerConfig {
        metadata: Some(api::ContainerMetadata {
            name: c.name.clone(),
            attempt,
        }),
        image: Some(api::ImageSpec {
            image: c.image.clone().unwrap_or_default(),
            ..Default::default()
        }),
        command: c
            .command
            .iter()
            .flatten()
            .map(|s| expand(s, &env_map))
            .collect(),
        args: c
            .args
            .iter()
            .flatten()
            .map(|s| expand(s, &env_map))
            .collect(),
        working_dir: c.working_dir.clone().unwrap_or_default(),
        mounts,
        envs: env
            .into_iter()
            .map(|(key, value)| api::KeyValue { key, value })
            .collect(),
        labels,
        annotations: [(
            "io.kubernetes.container.restartCount".to_string(),
            attempt.to_string(),
        )]
        .into(),
        log_path: format!("{}/{attempt}.log", c.name),
        stdin: c.stdin.unwrap_or(false),
        stdin_once: c.stdin_once.unwrap_or(false),
        tty: c.tty.unwrap_or(false),
        linux: Some(api::LinuxContainerConfig {
            resources: Some(resources),
            security_context: Some(security),
        }),
        ..Default::default()
    };
    let mut rt = agent.cri.rt.clone();
    let id = rt
        .create_container(api::CreateContainerRequest {
            pod_sandbox_id: obs.sandbox_id.clone(),
            config: Some(config),
            sandbox_config: Some(obs.sandbox_config.clone()),
        })
        .await
        .map_err(cri("CreateContainer"))?
        .into_inner()
        .container_id;
    rt.start_container(api::StartContainerRequest {
        container_id: id.clone(),
    })
    .await
    .map_err(cri("StartContainer"))?;
    Ok(id)
}

fn terminated(s: &api::ContainerStatus) -> Value {
    let reason = if !s.reason.is_empty() {
        s.reason.clone()
    } else if s.exit_code == 0 {
        "Completed".into()
    } else {
        "Error".into()
    };
    let mut t = json!({
        "exitCode": s.exit_code,
        "reason": reason,
        "startedAt": util::time_of_nanos(s.started_at),
        "finishedAt": util::time_of_nanos(s.finished_at),
        "containerID": format!("containerd://{}", s.id),
    });
    if !s.message.is_empty() {
        t["message"] = json!(s.message);
    }
    t
}

/// One entry of containerStatuses / initContainerStatuses.
/// Which list a container is in, which decides how its state reads.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    App,
    Init,
    Sidecar,
}

fn container_status(
    c: &Container,
    list: Option<&Vec<api::ContainerStatus>>,
    st: &PodState,
    restart_policy: &str,
    role: Role,
) -> (Value, &'static str) {
    let init = role == Role::Init;
    let latest = list.and_then(|v| v.first());
    let previous = list.and_then(|v| v.get(1));
    let image = c.image.clone().unwrap_or_default();
    let mut out = json!({
        "name": c.name,
        "image": image,
        "imageID": "",
        "ready": false,
        "started": false,
        "restartCount": latest.map(attempt_of).unwrap_or(0),
        "lastState": {},
    });
    if let Some(p) = previous {
        out["lastState"] = json!({"terminated": terminated(p)});
    }
    let kind;
    match latest {
        None => {
            let (reason, message) = st
                .waiting
                .get(&c.name)
                .map(|(r, m, _)| {
                    // ErrImagePull right after the failure, ImagePullBackOff while waiting.
                    let waited = st
                        .pull_failures
                        .get(&c.name)
                        .is_some_and(|(_, at)| at.elapsed() > Duration::from_secs(2));
                    let r = if r == "ErrImagePull" && waited {
                        "ImagePullBackOff".to_string()
                    } else {
                        r.clone()
                    };
                    (r, m.clone())
                })
                .unwrap_or_else(|| ("ContainerCreating".into(), String::new()));
            out["state"] = json!({"waiting": {"reason": reason, "message": message}});
            if message.is_empty() {
                out["state"]["waiting"]
                    .as_object_mut()
                    .map(|m| m.remove("message"));
            }
            kind = "waiting";
        }
        Some(s) => {
            out["containerID"] = json!(format!("containerd://{}", s.id));
            out["imageID"] = json!(s.image_ref);
            match s.state() {
                api::ContainerState::ContainerRunning => {
                    out["state"] =
                        json!({"running": {"startedAt": util::time_of_nanos(s.started_at)}});
                    out["started"] = json!(init || st.prober.started(&s.id));
                    // A running init container is not ready; a sidecar is once its probes say.
                    out["ready"] = json!(!init && st.prober.ready(&s.id));
                    kind = "running";
                }
                api::ContainerState::ContainerExited => {
                    if !init && should_restart(restart_policy, s.exit_code) {
                        out["state"] = json!({"waiting": {
                            "reason": "CrashLoopBackOff",
                            "message": format!(
                                "back-off {}s restarting failed container={} pod",
                                backoff_for(attempt_of(s)).as_secs(),
                                c.name
                            ),
                        }});
                        out["lastState"] = json!({"terminated": terminated(s)});
                        kind = "backoff";
                    } else {
                        out["state"] = json!({"terminated": terminated(s)});
                        // A finished init container is "ready" in upstream's status.
                        out["ready"] = json!(init && s.exit_code == 0);
                        kind = if s.exit_code == 0 {
                            "succeeded"
                        } else {
                            "failed"
                        };
                    }
                }
                _ => {
                    out["state"] = json!({"waiting": {"reason": "ContainerCreating"}});
                    kind = "waiting";
                }
            }
        }
    }
    (out, kind)
}

fn build_status(
    agent: &Agent,
    pod: &Pod,
    obs: &Observed,
    st: &mut PodState,
    init_done: bool,
    init_failed: bool,
    restart_policy: &str,
) -> Value {
    let spec = pod.spec.clone().unwrap_or_default();
    let mut statuses = Vec::new();
    let (mut running, mut waiting, mut succeeded, mut failed, mut stopped) = (0, 0, 0, 0, 0);
    for c in &spec.containers {
        let (s, kind) = container_status(
            c,
            obs.containers.get(&c.name),
            st,
            restart_policy,
            Role::App,
        );
        match kind {
            "running" => running += 1,
            "succeeded" => {
                succeeded += 1;
                stopped += 1
            }
            "failed" => {
                failed += 1;
                stopped += 1
            }
            // In back-off with a last termination: counted as stopped, as upstream.
            "backoff" => stopped += 1,
            _ => waiting += 1,
        }
        statuses.push(s);
    }
    let main_done = init_done && waiting == 0 && running == 0 && stopped > 0 && {
        let restarting = statuses
            .iter()
            .any(|s| s["state"]["waiting"]["reason"] == "CrashLoopBackOff");
        !restarting
    };
    let mut sidecars_ready = true;
    let mut init_statuses = Vec::new();
    for c in spec.init_containers.iter().flatten() {
        let (mut s, _) = if is_sidecar(c) {
            // Sidecars restart whatever the pod's policy, until the app containers are done.
            let policy = if main_done { "Never" } else { "Always" };
            container_status(c, obs.containers.get(&c.name), st, policy, Role::Sidecar)
        } else {
            container_status(
                c,
                obs.containers.get(&c.name),
                st,
                restart_policy,
                Role::Init,
            )
        };
        if is_sidecar(c) {
            sidecars_ready &= s["ready"] == true;
        }
        if s["state"]["waiting"]["reason"] == "ContainerCreating" && !init_done {
            s["state"]["waiting"]["reason"] = json!("PodInitializing");
        }
        init_statuses.push(s);
    }
    if !init_done {
        for s in &mut statuses {
            if s["state"]["waiting"]["reason"] == "ContainerCreating" {
                s["state"]["waiting"]["reason"] = json!("PodInitializing");
            }
        }
    }
    let phase = if init_failed {
        "Failed"
    } else if !init_done || waiting > 0 {
        "Pending"
    } else if running > 0 {
        "Running"
    } else if stopped > 0 {
        match restart_policy {
            "Always" => "Running",
            _ if failed == 0 && succeeded == stopped => "Succeeded",
            "OnFailure" => "Running",
            _ => "Failed",
        }
    } else {
        "Pending"
    };
    // Terminal only once every container stopped, as the kubelet (a sidecar being stopped
    // keeps the pod in its last non-terminal phase, so the final status shows it terminated).
    let sidecar_running = init_statuses
        .iter()
        .any(|s| s["state"]["running"].is_object());
    let phase = match phase {
        "Succeeded" | "Failed" if sidecar_running && init_done => "Running",
        "Succeeded" | "Failed" if sidecar_running => "Pending",
        p => p,
    };
    let all_ready =
        !statuses.is_empty() && statuses.iter().all(|s| s["ready"] == true) && sidecars_ready;
    let ready_to_start = !obs.ip.is_empty() || spec.host_network == Some(true);
    let cond = |st: &mut PodState, t: &str, ok: bool, reason: Option<&str>| {
        let status = if ok { "True" } else { "False" };
        let entry = st
            .transitions
            .entry(t.to_string())
            .or_insert_with(|| (status.to_string(), util::now_time()));
        if entry.0 != status {
            *entry = (status.to_string(), util::now_time());
        }
        let mut c = json!({"type": t, "status": status, "lastProbeTime": null,
                           "lastTransitionTime": entry.1});
        if let Some(r) = reason.filter(|_| !ok) {
            c["reason"] = json!(r);
        }
        c
    };
    let scheduled_since = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled"))
        .and_then(|c| c.last_transition_time.as_ref())
        .map(|t| util::time_of_seconds(t.0.as_second()));
    if let Some(since) = scheduled_since {
        st.transitions
            .entry("PodScheduled".into())
            .or_insert(("True".into(), since));
    }
    let not_ready_reason = if phase == "Succeeded" || phase == "Failed" {
        "PodCompleted"
    } else {
        "ContainersNotReady"
    };
    let conditions = vec![
        cond(st, "PodReadyToStartContainers", ready_to_start, None),
        cond(
            st,
            "Initialized",
            init_done,
            Some("ContainersNotInitialized"),
        ),
        cond(st, "Ready", all_ready, Some(not_ready_reason)),
        cond(st, "ContainersReady", all_ready, Some(not_ready_reason)),
        cond(st, "PodScheduled", true, None),
    ];
    let start_time = pod
        .status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .map(|t| util::time_of_seconds(t.0.as_second()))
        .unwrap_or_else(util::now_time);
    let host_ip = agent.node_ip.to_string();
    let mut status = json!({
        "phase": phase,
        "conditions": conditions,
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "startTime": start_time,
        "qosClass": util::qos_class(pod),
        "containerStatuses": statuses,
    });
    if !obs.ip.is_empty() {
        status["podIP"] = json!(obs.ip);
        status["podIPs"] = json!([{"ip": obs.ip}]);
    }
    if !init_statuses.is_empty() {
        status["initContainerStatuses"] = json!(init_statuses);
    }
    status
}

/// Stop every container of the pod (SIGTERM, `grace` seconds, SIGKILL), then stop and remove
/// its sandboxes, its cgroups and its log directory.
pub async fn teardown(
    agent: &Agent,
    uid: &str,
    grace: i64,
    pod: Option<&Pod>,
) -> Result<(), SyncError> {
    let mut rt = agent.cri.rt.clone();
    let sandboxes = rt
        .list_pod_sandbox(api::ListPodSandboxRequest {
            filter: Some(api::PodSandboxFilter {
                label_selector: [(LABEL_POD_UID.to_string(), uid.to_string())].into(),
                ..Default::default()
            }),
        })
        .await
        .map_err(cri("ListPodSandbox"))?
        .into_inner()
        .items;
    let containers = rt
        .list_containers(api::ListContainersRequest {
            filter: Some(api::ContainerFilter {
                label_selector: [(LABEL_POD_UID.to_string(), uid.to_string())].into(),
                ..Default::default()
            }),
        })
        .await
        .map_err(cri("ListContainers"))?
        .into_inner()
        .containers;
    // App containers stop first, together; then the sidecars, last-started first, so they
    // serve the app containers until those are gone (as upstream).
    let sidecars: Vec<String> = pod
        .and_then(|p| p.spec.as_ref())
        .map(|s| {
            s.init_containers
                .iter()
                .flatten()
                .filter(|c| is_sidecar(c))
                .map(|c| c.name.clone())
                .rev()
                .collect()
        })
        .unwrap_or_default();
    let name_of = |c: &api::Container| {
        c.labels
            .get(LABEL_CONTAINER_NAME)
            .cloned()
            .unwrap_or_default()
    };
    let running: Vec<&api::Container> = containers
        .iter()
        .filter(|c| c.state() == api::ContainerState::ContainerRunning)
        .collect();
    let stop = |c: &api::Container| {
        let rt = rt.clone();
        let id = c.id.clone();
        let name = name_of(c);
        let ev = Recorder::new(agent.client.clone(), agent.node_name.clone());
        async move {
            if let Some(p) = pod {
                ev.pod(
                    p,
                    Some(&name),
                    events::NORMAL,
                    "Killing",
                    format!("Stopping container {name}"),
                );
            }
            probes::stop_container(&rt, &ev, pod, &id, &name, grace).await
        }
    };
    let mut results = futures::future::join_all(
        running
            .iter()
            .filter(|c| !sidecars.contains(&name_of(c)))
            .map(|c| stop(c)),
    )
    .await;
    for name in &sidecars {
        for c in running.iter().filter(|c| &name_of(c) == name) {
            results.push(stop(c).await);
        }
    }
    for r in results {
        if let Err(s) = r
            && s.code() != tonic::Code::NotFound
        {
            return Err(cri("StopContainer")(s));
        }
    }
    let mut log_dirs = Vec::new();
    for s in &sandboxes {
        remove_sandbox(agent, &s.id).await?;
        if let Some(m) = &s.metadata {
            log_dirs.push(
                agent
                    .pods_dir
                    .join(format!("{}_{}_{uid}", m.namespace, m.name)),
            );
        }
    }
    // Containers left without a sandbox (should not happen) go too.
    for c in &containers {
        if let Err(s) = rt
            .remove_container(api::RemoveContainerRequest {
                container_id: c.id.clone(),
            })
            .await
            && s.code() != tonic::Code::NotFound
        {
            tracing::debug!(id = %c.id, error = %s, "remove container");
        }
    }
    agent.cgroups.remove_pod(uid);
    for d in log_dirs {
        let _ = std::fs::remove_dir_all(d);
    }
    crate::volumes::cleanup(&agent.pods_dir, uid).await;
    if !sandboxes.is_empty() || !containers.is_empty() {
        tracing::info!(
            %uid,
            pod = pod.map(full_name).unwrap_or_default(),
            sandboxes = sandboxes.len(),
            containers = containers.len(),
            "pod torn down"
        );
    }
    Ok(())
}

async fn remove_sandbox(agent: &Agent, id: &str) -> Result<(), SyncError> {
    let mut rt = agent.cri.rt.clone();
    for r in [
        rt.stop_pod_sandbox(api::StopPodSandboxRequest {
            pod_sandbox_id: id.to_string(),
        })
        .await
        .map(|_| ()),
        rt.remove_pod_sandbox(api::RemovePodSandboxRequest {
            pod_sandbox_id: id.to_string(),
        })
        .await
        .map(|_| ()),
    ] {
        if let Err(s) = r
            && s.code() != tonic::Code::NotFound
        {
            return Err(cri("RemovePodSandbox")(s));
        }
    }
    Ok(())
}

async fn stop_sandboxes(agent: &Agent, uid: &str) -> Result<(), SyncError> {
    let mut rt = agent.cri.rt.clone();
    let sandboxes = rt
        .list_pod_sandbox(api::ListPodSandboxRequest {
            filter: Some(api::PodSandboxFilter {
                label_selector: [(LABEL_POD_UID.to_string(), uid.to_string())].into(),
                state: Some(api::PodSandboxStateValue {
                    state: api::PodSandboxState::SandboxReady as i32,
                }),
                ..Default::default()
            }),
        })
        .await
        .map_err(cri("ListPodSandbox"))?
        .into_inner()
        .items;
    for s in sandboxes {
        rt.stop_pod_sandbox(api::StopPodSandboxRequest {
            pod_sandbox_id: s.id,
        })
        .await
        .map_err(cri("StopPodSandbox"))?;
    }
    Ok(())
}

#[cfg(test)]
mod sync_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expansion_follows_upstream() {
        let env: HashMap<String, String> = [("A".to_string(), "x".to_string())].into();
        assert_eq!(expand("$(A)-$(B)", &env), "x-$(B)");
        assert_eq!(expand("$$(A)", &env), "$(A)");
        assert_eq!(expand("cost $5", &env), "cost $5");
        assert_eq!(expand("$(A", &env), "$(A");
    }

    #[tokio::test]
    async fn a_host_network_sandbox_keeps_the_nodes_hostname() {
        let h = crate::testing::Harness::new().await;
        let mut pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "default", "uid": "u"},
            "spec": {"containers": [{"name": "a", "image": "busybox"}]},
        }))
        .expect("pod");
        assert_eq!(sandbox_config(&h.agent, &pod, 0).hostname, "p");
        if let Some(spec) = pod.spec.as_mut() {
            spec.host_network = Some(true);
        }
        assert_eq!(sandbox_config(&h.agent, &pod, 0).hostname, "");
    }

    #[test]
    fn only_changes_beyond_status_wake_a_worker() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "uid": "u", "resourceVersion": "1"},
            "spec": {"containers": [{"name": "a", "image": "busybox"}]},
        }))
        .expect("pod");
        let mut written = pod.clone();
        written.metadata.resource_version = Some("2".into());
        written.status = Some(serde_json::from_value(json!({"phase": "Running"})).expect("status"));
        assert!(!differs_beyond_status(&pod, &written));
        let mut deleting = written.clone();
        deleting.metadata.deletion_timestamp = written
            .metadata
            .creation_timestamp
            .clone()
            .or_else(|| serde_json::from_value(json!("2026-11-30T00:00:00Z")).ok());
        assert!(differs_beyond_status(&written, &deleting));
        let mut relabeled = written.clone();
        relabeled.metadata.labels = Some([("a".to_string(), "b".to_string())].into());
        assert!(differs_beyond_status(&written, &relabeled));
    }

    #[test]
    fn backoff_doubles_to_five_minutes() {
        assert_eq!(backoff_for(0), Duration::from_secs(10));
        assert_eq!(backoff_for(1), Duration::from_secs(20));
        assert_eq!(backoff_for(4), Duration::from_secs(160));
        assert_eq!(backoff_for(5), Duration::from_secs(300));
        assert_eq!(backoff_for(30), Duration::from_secs(300));
    }

    #[test]
    fn restart_policy() {
        assert!(should_restart("Always", 0));
        assert!(!should_restart("OnFailure", 0));
        assert!(should_restart("OnFailure", 1));
        assert!(!should_restart("Never", 1));
    }

    #[test]
    fn default_pull_policy() {
        let c = |image: &str| Container {
            name: "c".into(),
            image: Some(image.into()),
            ..Default::default()
        };
        assert_eq!(pull_policy(&c("busybox"), "busybox"), "Always");
        assert_eq!(
            pull_policy(&c("busybox:latest"), "busybox:latest"),
            "Always"
        );
        assert_eq!(
            pull_policy(&c("busybox:1.36"), "busybox:1.36"),
            "IfNotPresent"
        );
        assert_eq!(
            pull_policy(&c("localhost:5000/busybox"), "localhost:5000/busybox"),
            "Always"
        );
    }
}
