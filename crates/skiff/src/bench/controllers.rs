//! `skiff bench controllers`: the real controller manager rolling out a Deployment onto hollow
//! nodes, with the API server and scheduler in the same process. Each component runs on its own
//! named tokio runtime so its CPU time can be read per thread from `/proc/self/task`.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Node, Pod, ServiceAccount};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::TempDir;

const NAMESPACE: &str = "default";
const NAME: &str = "bench";
const APP: &str = "bench-controllers";
const IMAGE_V1: &str = "registry.k8s.io/pause:3.10";
const IMAGE_V2: &str = "registry.k8s.io/pause:3.9";

/// Thread names (at most 15 bytes: the kernel's `comm`) of the component runtimes.
const CTRL: &str = "skiff-ctrl";
const SCHED: &str = "skiff-sched";
const HOLLOW: &str = "skiff-hollow";

#[derive(Debug, clap::Args)]
pub struct ControllersBenchArgs {
    /// Hollow nodes (4 CPU / 16Gi / 110 pods each).
    #[arg(long, default_value_t = 100)]
    nodes: usize,
    /// Replicas of the Deployment.
    #[arg(long, default_value_t = 1000)]
    replicas: i32,
    /// The Deployment's `spec.strategy.rollingUpdate.maxSurge` (count or percentage).
    #[arg(long, default_value = "25%")]
    max_surge: String,
    /// The Deployment's `spec.strategy.rollingUpdate.maxUnavailable` (count or percentage).
    #[arg(long, default_value = "25%")]
    max_unavailable: String,
    /// Worker threads of the controller manager's own runtime.
    #[arg(long, default_value_t = 2)]
    controller_threads: usize,
    /// Parent of the temporary data directory (default: the system temp dir).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Give up on a phase after this many seconds.
    #[arg(long, default_value_t = 900)]
    timeout_secs: u64,
    /// Log filter, as `RUST_LOG`.
    #[arg(long, env = "SKIFF_LOG", default_value = "warn")]
    pub log: String,
}

/// Parses an IntOrString the way the API does: `N` or `N%`.
fn int_or_percent(s: &str) -> anyhow::Result<serde_json::Value> {
    let s = s.trim();
    if let Some(p) = s.strip_suffix('%') {
        let _: u32 = p.parse().with_context(|| format!("bad percentage {s:?}"))?;
        Ok(serde_json::json!(s))
    } else {
        let n: u32 = s.parse().with_context(|| format!("bad count {s:?}"))?;
        Ok(serde_json::json!(n))
    }
}

/// Resolves maxSurge (rounded up) and maxUnavailable (rounded down) against `replicas`, as
/// upstream's `ResolveFenceposts`: both zero means one may be unavailable.
fn fenceposts(surge: &str, unavailable: &str, replicas: i32) -> anyhow::Result<(i32, i32)> {
    let resolve = |s: &str, up: bool| -> anyhow::Result<i32> {
        let s = s.trim();
        match s.strip_suffix('%') {
            Some(p) => {
                let p: i64 = p.parse()?;
                let v = i64::from(replicas) * p;
                let r = if up { (v + 99) / 100 } else { v / 100 };
                Ok(i32::try_from(r)?)
            }
            None => Ok(s.parse()?),
        }
    };
    let s = resolve(surge, true)?;
    let u = resolve(unavailable, false)?;
    Ok(if s == 0 && u == 0 { (0, 1) } else { (s, u) })
}

fn deployment(args: &ControllersBenchArgs) -> anyhow::Result<Deployment> {
    let d = serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": NAME, "namespace": NAMESPACE},
        "spec": {
            "replicas": args.replicas,
            "selector": {"matchLabels": {"app": APP}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {
                "maxSurge": int_or_percent(&args.max_surge)?,
                "maxUnavailable": int_or_percent(&args.max_unavailable)?,
            }},
            "template": {
                "metadata": {"labels": {"app": APP}},
                "spec": {
                    "terminationGracePeriodSeconds": 0,
                    "containers": [{
                        "name": "app",
                        "image": IMAGE_V1,
                        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
                    }],
                },
            },
        },
    });
    Ok(serde_json::from_value(d)?)
}

/// Runs `f` on a new multi-thread runtime whose threads (workers, blocking pool, and the
/// thread driving it) all carry `name`, so their CPU time can be told apart.
fn spawn_runtime<F, Fut>(
    name: &'static str,
    workers: usize,
    f: F,
) -> anyhow::Result<std::thread::JoinHandle<()>>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers.max(1))
        .thread_name(name)
        // Exited blocking threads would take their CPU time out of the per-thread sums.
        .thread_keep_alive(Duration::from_secs(24 * 3600))
        .enable_all()
        .build()
        .with_context(|| format!("starting the {name} runtime"))?;
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || rt.block_on(f()))
        .with_context(|| format!("starting the {name} thread"))
}

/// CPU seconds per component, from `/proc/self/task/*/stat`, and of the whole process.
#[derive(Clone, Copy, Debug, Default)]
struct Cpu {
    ctrl: f64,
    sched: f64,
    hollow: f64,
    process: f64,
}

impl Cpu {
    /// The API server, the benchmark's own watches, and threads that already exited.
    fn rest(&self) -> f64 {
        self.process - self.ctrl - self.sched - self.hollow
    }

    fn minus(&self, o: &Cpu) -> Cpu {
        Cpu {
            ctrl: self.ctrl - o.ctrl,
            sched: self.sched - o.sched,
            hollow: self.hollow - o.hollow,
            process: self.process - o.process,
        }
    }
}

/// utime + stime of a `stat` file, in seconds. USER_HZ is 100 on every Linux ABI.
fn stat_cpu(stat: &str) -> Option<f64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of proc(5); `after` starts at field 3.
    let u: u64 = f.get(11)?.parse().ok()?;
    let s: u64 = f.get(12)?.parse().ok()?;
    Some((u + s) as f64 / 100.0)
}

fn read_cpu() -> Cpu {
    let mut c = Cpu {
        process: std::fs::read_to_string("/proc/self/stat")
            .ok()
            .as_deref()
            .and_then(stat_cpu)
            .unwrap_or(0.0),
        ..Default::default()
    };
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return c;
    };
    for t in tasks.flatten() {
        let p = t.path();
        let comm = std::fs::read_to_string(p.join("comm")).unwrap_or_default();
        let Some(cpu) = std::fs::read_to_string(p.join("stat"))
            .ok()
            .as_deref()
            .and_then(stat_cpu)
        else {
            continue;
        };
        let comm = comm.trim();
        if comm.starts_with(CTRL) {
            c.ctrl += cpu;
        } else if comm.starts_with(SCHED) {
            c.sched += cpu;
        } else if comm.starts_with(HOLLOW) {
            c.hollow += cpu;
        }
    }
    c
}

/// (VmRSS, VmHWM) of the process in MiB.
fn read_rss() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// What the measuring watches report, in the order each watch delivers it.
enum Seen {
    Pod(Box<Pod>),
    PodGone(String),
    Deployment(Box<Deployment>),
}

async fn watch_into<K>(
    api: Api<K>,
    cfg: watcher::Config,
    tx: mpsc::UnboundedSender<Seen>,
    ready: tokio::sync::oneshot::Sender<()>,
    shutdown: CancellationToken,
    wrap: fn(watcher::Event<K>) -> Option<Seen>,
) where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + 'static,
{
    let mut stream = watcher(api, cfg).boxed();
    let mut ready = Some(ready);
    loop {
        let ev = tokio::select! {
            _ = shutdown.cancelled() => return,
            ev = stream.next() => ev,
        };
        match ev {
            Some(Ok(watcher::Event::InitDone)) => {
                if let Some(r) = ready.take() {
                    let _ = r.send(());
                }
            }
            Some(Ok(e)) => {
                if let Some(s) = wrap(e)
                    && tx.send(s).is_err()
                {
                    return;
                }
            }
            Some(Err(e)) => {
                tracing::warn!(error = %e, "measuring watch failed; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            None => return,
        }
    }
}

fn pod_event(e: watcher::Event<Pod>) -> Option<Seen> {
    match e {
        watcher::Event::Apply(p) | watcher::Event::InitApply(p) => Some(Seen::Pod(Box::new(p))),
        watcher::Event::Delete(p) => Some(Seen::PodGone(p.metadata.name.unwrap_or_default())),
        _ => None,
    }
}

fn deployment_event(e: watcher::Event<Deployment>) -> Option<Seen> {
    match e {
        watcher::Event::Apply(d) | watcher::Event::InitApply(d) => {
            Some(Seen::Deployment(Box::new(d)))
        }
        _ => None,
    }
}

/// One pod as the benchmark tracks it.
#[derive(Clone, Debug)]
struct PodView {
    image: String,
    bound: bool,
    ready: bool,
    terminating: bool,
}

impl PodView {
    fn of(p: &Pod) -> PodView {
        let spec = p.spec.as_ref();
        PodView {
            image: spec
                .and_then(|s| s.containers.first())
                .and_then(|c| c.image.clone())
                .unwrap_or_default(),
            bound: spec
                .and_then(|s| s.node_name.as_deref())
                .is_some_and(|n| !n.is_empty()),
            ready: p
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True")),
            terminating: p.metadata.deletion_timestamp.is_some(),
        }
    }
}

/// Counts over the tracked pods.
#[derive(Clone, Copy, Debug, Default)]
struct Counts {
    /// Not terminating (what the ReplicaSet controller and `status.replicas` count).
    active: i32,
    bound: i32,
    /// Ready and not terminating: available, as minReadySeconds is 0.
    available: i32,
    terminating: i32,
    /// Any state, with the old image.
    old: i32,
    /// Not terminating, with the new image.
    new_active: i32,
    new_bound: i32,
    /// Available with the new image.
    new_available: i32,
}

fn counts(pods: &HashMap<String, PodView>, new_image: &str) -> Counts {
    let mut c = Counts::default();
    for p in pods.values() {
        if p.terminating {
            c.terminating += 1;
        } else {
            c.active += 1;
            c.bound += i32::from(p.bound);
            c.available += i32::from(p.ready);
            let new = p.image == new_image;
            c.new_active += i32::from(new);
            c.new_bound += i32::from(new && p.bound);
            c.new_available += i32::from(new && p.ready);
        }
        c.old += i32::from(p.image != new_image);
    }
    c
}

/// Whether the Deployment's status says generation `gen` is fully rolled out and available.
fn deployment_done(d: &Deployment, replicas: i32, generation: i64) -> bool {
    let Some(s) = d.status.as_ref() else {
        return false;
    };
    s.observed_generation.unwrap_or(0) >= generation
        && s.updated_replicas.unwrap_or(0) == replicas
        && s.available_replicas.unwrap_or(0) == replicas
        && s.replicas.unwrap_or(0) == replicas
}

/// What one phase measured.
#[derive(Debug, Default)]
struct Phase {
    /// Seconds from the write to: every pod created, every pod bound, every pod Ready
    /// (seen on pods), and the Deployment status reporting all of it.
    all_created: Option<f64>,
    all_bound: Option<f64>,
    all_ready: Option<f64>,
    done: f64,
    /// Worst moments observed on pods during the phase.
    max_surge: i32,
    max_unavailable: i32,
    max_terminating: i32,
    /// Worst moments in the Deployment's status during the phase.
    status_max_surge: i32,
    status_max_unavailable: i32,
    cpu: Cpu,
}

struct Tracker {
    rx: mpsc::UnboundedReceiver<Seen>,
    pods: HashMap<String, PodView>,
    deployment: Option<Deployment>,
}

impl Tracker {
    /// Follows events until the Deployment reaches `generation` with every pod on `image` and
    /// none of another left, recording the phase's extremes.
    async fn follow(
        &mut self,
        replicas: i32,
        generation: i64,
        image: &str,
        started: Instant,
        timeout: Duration,
    ) -> anyhow::Result<Phase> {
        let mut ph = Phase::default();
        let deadline = started + timeout;
        loop {
            let c = counts(&self.pods, image);
            let secs = started.elapsed().as_secs_f64();
            if ph.all_created.is_none() && c.new_active >= replicas {
                ph.all_created = Some(secs);
            }
            if ph.all_bound.is_none() && c.new_bound >= replicas {
                ph.all_bound = Some(secs);
            }
            if ph.all_ready.is_none() && c.new_available >= replicas {
                ph.all_ready = Some(secs);
            }
            ph.max_surge = ph.max_surge.max(c.active - replicas);
            ph.max_terminating = ph.max_terminating.max(c.terminating);
            if generation > 1 {
                ph.max_unavailable = ph.max_unavailable.max(replicas - c.available);
            }
            if let Some(d) = &self.deployment {
                let s = d.status.clone().unwrap_or_default();
                if generation > 1 && s.observed_generation.unwrap_or(0) >= generation {
                    ph.status_max_surge =
                        ph.status_max_surge.max(s.replicas.unwrap_or(0) - replicas);
                    ph.status_max_unavailable = ph
                        .status_max_unavailable
                        .max(replicas - s.available_replicas.unwrap_or(0));
                }
                if deployment_done(d, replicas, generation) && c.old == 0 {
                    ph.done = secs;
                    return Ok(ph);
                }
            }
            let ev = tokio::time::timeout_at(deadline.into(), self.rx.recv()).await;
            match ev {
                Ok(Some(Seen::Pod(p))) => {
                    let name = p.metadata.name.clone().unwrap_or_default();
                    self.pods.insert(name, PodView::of(&p));
                }
                Ok(Some(Seen::PodGone(name))) => {
                    self.pods.remove(&name);
                }
                Ok(Some(Seen::Deployment(d))) => self.deployment = Some(*d),
                Ok(None) => bail!("the measuring watches ended"),
                Err(_) => {
                    let s = self.deployment.as_ref().and_then(|d| d.status.clone());
                    bail!(
                        "not done after {}s: pods {c:?}; deployment status {s:?}",
                        timeout.as_secs()
                    )
                }
            }
        }
    }
}

/// Runs the benchmark; prints a table and `name=value` lines.
pub async fn run(args: ControllersBenchArgs) -> anyhow::Result<()> {
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(std::env::temp_dir)
        .join(format!("skiff-bench-controllers-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let _cleanup = TempDir(dir.clone());
    let shutdown = CancellationToken::new();
    let tasks = TaskTracker::new();
    let mut threads = Vec::new();
    let result = measure(&args, &dir, &shutdown, &tasks, &mut threads).await;
    shutdown.cancel();
    tasks.close();
    let _ = tokio::time::timeout(Duration::from_secs(10), tasks.wait()).await;
    let join = tokio::task::spawn_blocking(move || {
        for t in threads {
            let _ = t.join();
        }
    });
    let _ = tokio::time::timeout(Duration::from_secs(10), join).await;
    result
}

async fn measure(
    args: &ControllersBenchArgs,
    dir: &std::path::Path,
    shutdown: &CancellationToken,
    tasks: &TaskTracker,
    threads: &mut Vec<std::thread::JoinHandle<()>>,
) -> anyhow::Result<()> {
    let replicas = args.replicas;
    let (surge, unavailable) = fenceposts(&args.max_surge, &args.max_unavailable, replicas)?;
    let timeout = Duration::from_secs(args.timeout_secs);
    let kubeconfig = dir.join("kubeconfig.yaml");
    let (local_addr, client) = super::in_process_api(dir, shutdown, tasks).await?;
    println!(
        "nodes={} replicas={replicas} maxSurge={} ({surge}) maxUnavailable={} ({unavailable}) controller_threads={} api=https://{}",
        args.nodes, args.max_surge, args.max_unavailable, args.controller_threads, local_addr
    );

    // Hollow nodes and the scheduler, each on its own runtime with its own client.
    let setup = Instant::now();
    {
        let kc = kubeconfig.clone();
        let stop = shutdown.clone();
        let cfg = skiff_scheduler::hollow::HollowConfig {
            nodes: args.nodes,
            start_delay: Duration::ZERO,
            ..Default::default()
        };
        threads.push(spawn_runtime(HOLLOW, 1, move || async move {
            match skiff_scheduler::client_from_kubeconfig(&kc).await {
                Ok(c) => {
                    if let Err(e) = skiff_scheduler::hollow::run(c, cfg, stop).await {
                        tracing::error!(error = %e, "hollow nodes stopped");
                    }
                }
                Err(e) => tracing::error!(error = %e, "hollow nodes: no client"),
            }
        })?);
    }
    {
        let kc = kubeconfig.clone();
        let stop = shutdown.clone();
        threads.push(spawn_runtime(SCHED, 1, move || async move {
            match skiff_scheduler::client_from_kubeconfig(&kc).await {
                Ok(c) => {
                    if let Err(e) = skiff_scheduler::run(c, stop).await {
                        tracing::error!(error = %e, "scheduler stopped");
                    }
                }
                Err(e) => tracing::error!(error = %e, "scheduler: no client"),
            }
        })?);
    }
    let nodes: Api<Node> = Api::all(client.clone());
    let deadline = Instant::now() + timeout;
    loop {
        let n = nodes
            .list_metadata(&ListParams::default())
            .await?
            .items
            .len();
        if n >= args.nodes {
            break;
        }
        if Instant::now() > deadline {
            bail!("only {n} of {} hollow nodes registered", args.nodes);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let rss_before_ctrl = read_rss();

    // The controller manager on its own runtime: its threads' CPU time is the controllers'.
    {
        let kc = kubeconfig.clone();
        let stop = shutdown.clone();
        threads.push(spawn_runtime(
            CTRL,
            args.controller_threads,
            move || async move {
                match skiff_scheduler::client_from_kubeconfig(&kc).await {
                    Ok(c) => skiff_controllers::run(c, stop).await,
                    Err(e) => tracing::error!(error = %e, "controllers: no client"),
                }
            },
        )?);
    }
    // The ServiceAccount controller's first write: the controller manager is up.
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), NAMESPACE);
    let sa_deadline = Instant::now() + Duration::from_secs(60);
    while sas.get_opt("default").await?.is_none() {
        if Instant::now() > sa_deadline {
            println!("note: no default ServiceAccount after 60s; going on");
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rss_ctrl_up = read_rss();
    println!(
        "setup: {} hollow nodes, scheduler and controllers up in {:.1}s",
        args.nodes,
        setup.elapsed().as_secs_f64()
    );

    // Watches opened before the Deployment exists, so nothing is missed.
    let (tx, rx) = mpsc::unbounded_channel();
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NAMESPACE);
    let (r1, w1) = tokio::sync::oneshot::channel();
    let (r2, w2) = tokio::sync::oneshot::channel();
    tasks.spawn(watch_into(
        pods.clone(),
        watcher::Config::default().labels(&format!("app={APP}")),
        tx.clone(),
        r1,
        shutdown.clone(),
        pod_event,
    ));
    tasks.spawn(watch_into(
        deployments.clone(),
        watcher::Config::default().fields(&format!("metadata.name={NAME}")),
        tx,
        r2,
        shutdown.clone(),
        deployment_event,
    ));
    w1.await.context("the pod watch ended")?;
    w2.await.context("the deployment watch ended")?;
    let mut tracker = Tracker {
        rx,
        pods: HashMap::new(),
        deployment: None,
    };

    // (a) create → fully available.
    let cpu0 = read_cpu();
    let t0 = Instant::now();
    deployments
        .create(&PostParams::default(), &deployment(args)?)
        .await
        .context("creating the Deployment")?;
    let mut create = tracker.follow(replicas, 1, IMAGE_V1, t0, timeout).await?;
    let cpu1 = read_cpu();
    create.cpu = cpu1.minus(&cpu0);
    let rss_available = read_rss();

    // (b) rolling update: a new template image.
    let t1 = Instant::now();
    let patch = serde_json::json!({"spec": {"template": {"spec": {"containers": [
        {"name": "app", "image": IMAGE_V2}
    ]}}}});
    let patched = deployments
        .patch(NAME, &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .context("updating the template")?;
    let generation = patched.metadata.generation.unwrap_or(2);
    let mut rollout = tracker
        .follow(replicas, generation, IMAGE_V2, t1, timeout)
        .await?;
    // The old ReplicaSet scaled to zero (status included) ends the rollout.
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), NAMESPACE);
    let image_of = |rs: &ReplicaSet| {
        rs.spec
            .as_ref()
            .and_then(|s| s.template.as_ref())
            .and_then(|t| t.spec.as_ref())
            .and_then(|s| s.containers.first())
            .and_then(|c| c.image.clone())
            .unwrap_or_default()
    };
    let old_rs = loop {
        let list = sets.list(&ListParams::default()).await?;
        let old: Vec<&ReplicaSet> = list
            .items
            .iter()
            .filter(|r| image_of(r) != IMAGE_V2)
            .collect();
        let zero = old.iter().all(|r| {
            r.spec.as_ref().and_then(|s| s.replicas) == Some(0)
                && r.status.as_ref().is_some_and(|s| s.replicas == 0)
        });
        if zero {
            break old.len();
        }
        if t1.elapsed() > timeout {
            bail!("old ReplicaSets not at 0 after {}s", timeout.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    rollout.done = rollout.done.max(t1.elapsed().as_secs_f64());
    let cpu2 = read_cpu();
    rollout.cpu = cpu2.minus(&cpu1);
    let rss_rolled = read_rss();

    report(
        args,
        surge,
        unavailable,
        &create,
        &rollout,
        old_rs,
        [rss_before_ctrl, rss_ctrl_up, rss_available, rss_rolled],
    );
    Ok(())
}

fn report(
    args: &ControllersBenchArgs,
    surge: i32,
    unavailable: i32,
    create: &Phase,
    rollout: &Phase,
    old_sets: usize,
    rss: [(f64, f64); 4],
) {
    let opt = |v: Option<f64>| v.map_or("-".to_string(), |s| format!("{s:.2}"));
    println!();
    println!(
        "| phase | all pods created s | all bound s | all Ready s | Deployment done s | controllers CPU s | scheduler CPU s | hollow CPU s | API server + rest CPU s |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (name, p) in [("create", create), ("rolling update", rollout)] {
        println!(
            "| {name} | {} | {} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
            opt(p.all_created),
            opt(p.all_bound),
            opt(p.all_ready),
            p.done,
            p.cpu.ctrl,
            p.cpu.sched,
            p.cpu.hollow,
            p.cpu.rest()
        );
    }
    println!();
    println!(
        "rolling update extremes (pods): surge {} (allowed {surge}), unavailable {} (allowed {unavailable}), terminating at once {}",
        rollout.max_surge, rollout.max_unavailable, rollout.max_terminating
    );
    println!(
        "rolling update extremes (Deployment status): surge {}, unavailable {}",
        rollout.status_max_surge, rollout.status_max_unavailable
    );
    let [before, up, avail, rolled] = rss;
    println!(
        "process RSS MiB: before controllers {:.0}, controllers up {:.0}, Deployment available {:.0}, after rollout {:.0}; peak {:.0}",
        before.0, up.0, avail.0, rolled.0, rolled.1
    );
    println!();
    println!("nodes={}", args.nodes);
    println!("replicas={}", args.replicas);
    println!("max_surge_allowed={surge}");
    println!("max_unavailable_allowed={unavailable}");
    println!("create.all_pods_created_s={}", opt(create.all_created));
    println!("create.all_pods_ready_s={}", opt(create.all_ready));
    println!("create.controllers_cpu_s={:.2}", create.cpu.ctrl);
    println!("create.scheduler_cpu_s={:.2}", create.cpu.sched);
    println!("create.hollow_cpu_s={:.2}", create.cpu.hollow);
    println!("create.rest_cpu_s={:.2}", create.cpu.rest());
    println!("rollout.s={:.2}", rollout.done);
    println!("rollout.controllers_cpu_s={:.2}", rollout.cpu.ctrl);
    println!("rollout.scheduler_cpu_s={:.2}", rollout.cpu.sched);
    println!("rollout.hollow_cpu_s={:.2}", rollout.cpu.hollow);
    println!("rollout.rest_cpu_s={:.2}", rollout.cpu.rest());
    println!("rollout.max_surge_observed={}", rollout.max_surge);
    println!(
        "rollout.max_unavailable_observed={}",
        rollout.max_unavailable
    );
    println!(
        "rollout.max_terminating_observed={}",
        rollout.max_terminating
    );
    println!("rollout.status_max_surge={}", rollout.status_max_surge);
    println!(
        "rollout.status_max_unavailable={}",
        rollout.status_max_unavailable
    );
    println!("rollout.old_replicasets_at_zero={old_sets}");
    println!("rss_before_controllers_mib={:.0}", before.0);
    println!("rss_controllers_up_mib={:.0}", up.0);
    println!("rss_available_mib={:.0}", avail.0);
    println!("rss_after_rollout_mib={:.0}", rolled.0);
    println!("rss_peak_mib={:.0}", rolled.1);
    println!("rollout_s={:.2}", rollout.done);
    println!("deployment_available_s={:.2}", create.done);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fenceposts_round_as_upstream() {
        assert_eq!(fenceposts("25%", "25%", 1000).ok(), Some((250, 250)));
        // Surge rounds up, unavailable down.
        assert_eq!(fenceposts("25%", "25%", 10).ok(), Some((3, 2)));
        assert_eq!(fenceposts("0", "0", 10).ok(), Some((0, 1)));
        assert_eq!(fenceposts("5", "0%", 10).ok(), Some((5, 0)));
    }

    #[test]
    fn stat_cpu_reads_utime_and_stime() {
        let stat = "42 (skiff ctrl) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 4 0";
        assert_eq!(stat_cpu(stat), Some(3.0));
    }
}
