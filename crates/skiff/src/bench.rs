//! `skiff bench scheduler`: the real scheduler loop against an in-process API server on an
//! embedded store, with scheduler_perf's workloads; prints pods/s and create→bound latency, then
//! the IO-free core alone on the same workload so the API overhead is visible.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use skiff_scheduler::bench::{self as workloads, NAMESPACE, Workload, percentile};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

mod controllers;
mod startup;

/// What to benchmark.
#[derive(Debug, clap::Subcommand)]
pub enum Bench {
    /// The scheduler loop through an in-process API server (scheduler_perf workloads).
    Scheduler(SchedulerBenchArgs),
    /// The controller manager rolling out a Deployment onto hollow nodes (in-process API server,
    /// scheduler and hollow nodes; per-component CPU time).
    Controllers(controllers::ControllersBenchArgs),
    /// Pod startup on one real node (root; in a network namespace it creates and removes).
    Startup(startup::StartupBenchArgs),
}

#[derive(Debug, clap::Args)]
pub struct SchedulerBenchArgs {
    /// Nodes (Ready, 4 CPU / 16Gi / 110 pods, 3 zones).
    #[arg(long, default_value_t = 5000)]
    nodes: usize,
    /// Pods scheduled and measured.
    #[arg(long, default_value_t = 10_000)]
    pods: usize,
    /// Pods bound before the measurement (default 1000; 4 per node for preemption).
    #[arg(long)]
    existing_pods: Option<usize>,
    /// basic | affinity | spread | anti-affinity | preemption | preemption-async.
    #[arg(long, default_value = "basic")]
    workload: Workload,
    /// Pod creations in flight at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Parent of the temporary data directory (default: the system temp dir).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Create every measured pod before the scheduler starts and time the scheduler alone
    /// draining that backlog (first to last binding), instead of creating them while it runs.
    #[arg(long)]
    backlog: bool,
    /// Give up when no pod was bound for this many seconds.
    #[arg(long, default_value_t = 60)]
    stall_secs: u64,
    /// Log filter, as `RUST_LOG`.
    #[arg(long, env = "SKIFF_LOG", default_value = "warn")]
    pub log: String,
}

impl Bench {
    pub fn log(&self) -> &str {
        match self {
            Bench::Scheduler(a) => &a.log,
            Bench::Controllers(a) => &a.log,
            Bench::Startup(a) => &a.log,
        }
    }
}

/// Runs the chosen benchmark.
pub async fn run(bench: Bench) -> anyhow::Result<()> {
    match bench {
        Bench::Scheduler(args) => scheduler(args).await,
        Bench::Controllers(args) => controllers::run(args).await,
        Bench::Startup(args) => startup::run(args).await,
    }
}

/// Removes the temporary data directory however the benchmark ends.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

async fn scheduler(args: SchedulerBenchArgs) -> anyhow::Result<()> {
    let w = args.workload;
    let existing = args
        .existing_pods
        .unwrap_or_else(|| w.default_existing(args.nodes));
    let free_nodes = match w {
        // Existing pods already hold one slot on as many nodes as there are of them.
        Workload::AntiAffinity => args.nodes.saturating_sub(existing),
        _ => args.nodes,
    };
    let pods = w.placeable(free_nodes, args.pods);
    if pods < args.pods {
        println!(
            "note: {} pods requested, {pods} can be placed on {} nodes for this workload",
            args.pods, args.nodes
        );
    }
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(std::env::temp_dir)
        .join(format!("skiff-bench-scheduler-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let _cleanup = TempDir(dir.clone());

    let shutdown = CancellationToken::new();
    let tasks = TaskTracker::new();
    let result = measure(&args, w, existing, pods, &dir, &shutdown, &tasks).await;
    shutdown.cancel();
    tasks.close();
    let _ = tokio::time::timeout(Duration::from_secs(10), tasks.wait()).await;
    if let Err(e) = &result {
        println!("end to end failed: {e:#}");
    }

    // The decision core alone, after the API server is gone so both do not share the CPUs.
    let nodes = args.nodes;
    let core = tokio::task::spawn_blocking(move || workloads::run_core(w, nodes, existing, pods))
        .await
        .context("core run")?;
    println!(
        "core (IO-free, same snapshot and pods): {:.0} decisions/s, p50 {:?}, p99 {:?}, placed {}, preemptions {}, unschedulable {}",
        core.decisions_per_s(),
        core.p50,
        core.p99,
        core.placed,
        core.preemptions,
        core.failed
    );
    println!("core_decisions_per_s={:.0}", core.decisions_per_s());
    let e2e = result?;
    println!("scheduler_throughput_pods_per_s={e2e:.1}");
    Ok(())
}

/// Sets up the cluster, runs the scheduler, creates the measured pods and returns pods/s.
async fn measure(
    args: &SchedulerBenchArgs,
    w: Workload,
    existing: usize,
    pods: usize,
    dir: &std::path::Path,
    shutdown: &CancellationToken,
    tasks: &TaskTracker,
) -> anyhow::Result<f64> {
    let kubeconfig = dir.join("kubeconfig.yaml");
    let (local_addr, client) = in_process_api(dir, shutdown, tasks).await?;
    println!(
        "workload={} nodes={} existing_pods={existing} pods={pods} concurrency={} api=https://{}",
        w.name(),
        args.nodes,
        args.concurrency,
        local_addr
    );

    let setup = Instant::now();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(NAMESPACE.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    match namespaces.create(&PostParams::default(), &ns).await {
        Ok(_) => {}
        Err(e) if is_conflict(&e) => {}
        Err(e) => return Err(e.into()),
    }
    create_nodes(&client, args.nodes, args.concurrency).await?;
    let node_names: Vec<String> = (0..args.nodes)
        .map(|i| workloads::node(i).metadata.name.unwrap_or_default())
        .collect();
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    futures::stream::iter(0..existing)
        .map(|i| {
            let api = pod_api.clone();
            let pod =
                workloads::existing_pod(w, i, &node_names[workloads::existing_node(i, args.nodes)]);
            async move { api.create(&PostParams::default(), &pod).await }
        })
        .buffer_unordered(args.concurrency)
        .try_for_each(|_| futures::future::ready(Ok(())))
        .await
        .context("creating the existing pods")?;
    println!(
        "setup: {} nodes and {existing} bound pods in {:.1}s",
        args.nodes,
        setup.elapsed().as_secs_f64()
    );

    if matches!(w, Workload::Preemption | Workload::PreemptionAsync) {
        // Plays kubelet for preemption victims: their graceful deletion completes at once.
        tasks.spawn(finish_deletions(
            Api::namespaced(client.clone(), NAMESPACE),
            pod_api.clone(),
            shutdown.clone(),
        ));
    }
    // Bind times of the measured pods, from a watch opened before any of them exists.
    let (ready_tx, ready_rx) = oneshot::channel();
    let (bound_tx, mut bound_rx) = mpsc::unbounded_channel();
    let preemptors = Arc::new(Preemptors::default());
    tasks.spawn(watch_bindings(
        Api::namespaced(client.clone(), NAMESPACE),
        ready_tx,
        bound_tx,
        preemptors.clone(),
        shutdown.clone(),
    ));
    ready_rx.await.context("the measuring watch ended")?;

    let sched_client = skiff_scheduler::client_from_kubeconfig(&kubeconfig).await?;
    let start_scheduler = move |sched_shutdown: CancellationToken| async move {
        if let Err(e) = skiff_scheduler::run(sched_client, sched_shutdown).await {
            tracing::error!(error = %e, "scheduler stopped");
        }
    };
    if args.backlog {
        return backlog(
            args,
            w,
            pods,
            &pod_api,
            &mut bound_rx,
            tasks,
            start_scheduler(shutdown.clone()),
        )
        .await;
    }
    tasks.spawn(start_scheduler(shutdown.clone()));
    warm_up(&pod_api).await?;
    let churn = shutdown.child_token();
    if w == Workload::PreemptionAsync {
        tasks.spawn(create_preemptors(
            pod_api.clone(),
            preemptors.clone(),
            churn.clone(),
        ));
    }

    let created: Arc<std::sync::Mutex<Vec<Option<Instant>>>> =
        Arc::new(std::sync::Mutex::new(vec![None; pods]));
    // The load generator shares the CPUs with the system under test: the bodies are encoded
    // before the clock starts and the created pods are not decoded (kube's `Api::create` would
    // decode each into a `Pod`), as a remote client's work would not count either.
    let bodies: Vec<Vec<u8>> = (0..pods)
        .map(|i| serde_json::to_vec(&workloads::measured_pod(w, i)))
        .collect::<Result<_, _>>()
        .context("encoding the measured pods")?;
    let cpu0 = process_cpu_secs();
    let t0 = Instant::now();
    let creator = {
        let client = client.clone();
        let created = created.clone();
        let concurrency = args.concurrency;
        let pods_url = format!("/api/v1/namespaces/{NAMESPACE}/pods");
        tokio::spawn(async move {
            futures::stream::iter(bodies.into_iter().enumerate())
                .map(|(i, body)| {
                    let client = client.clone();
                    let created = created.clone();
                    let request = kube::core::Request::new(pods_url.as_str())
                        .create(&PostParams::default(), body);
                    async move {
                        let request = request.map_err(kube::Error::BuildRequest)?;
                        let t = Instant::now();
                        client.request_text(request).await?;
                        if let Ok(mut c) = created.lock() {
                            c[i] = Some(t);
                        }
                        Ok::<(), kube::Error>(())
                    }
                })
                .buffer_unordered(concurrency)
                .try_for_each(|_| futures::future::ready(Ok(())))
                .await?;
            Ok::<Instant, kube::Error>(Instant::now())
        })
    };

    let mut bound: HashMap<usize, Instant> = HashMap::with_capacity(pods);
    let stall = Duration::from_secs(args.stall_secs);
    while bound.len() < pods {
        match tokio::time::timeout(stall, bound_rx.recv()).await {
            Ok(Some((i, t))) => {
                bound.entry(i).or_insert(t);
            }
            Ok(None) => break,
            Err(_) => {
                println!(
                    "stalled: no binding for {}s, {} of {pods} bound",
                    args.stall_secs,
                    bound.len()
                );
                break;
            }
        }
    }
    churn.cancel();
    if w == Workload::PreemptionAsync {
        println!(
            "preemptors (one per {:?}, not measured): {} created, {} bound",
            workloads::PREEMPTOR_INTERVAL,
            preemptors.created.load(Ordering::Relaxed),
            preemptors.bound.load(Ordering::Relaxed),
        );
    }
    let created_done = creator.await.context("creating pods")?;
    let created_at = created_done.context("creating the measured pods")?;
    println!(
        "creates: {pods} pods created in {:.2}s ({:.0}/s)",
        created_at.duration_since(t0).as_secs_f64(),
        pods as f64 / created_at.duration_since(t0).as_secs_f64().max(1e-9)
    );
    let cpu = process_cpu_secs() - cpu0;
    let last = bound.values().max().copied().unwrap_or(t0);
    let wall = last.duration_since(t0).as_secs_f64().max(1e-9);
    println!(
        "cpu: {cpu:.1} s of process CPU (server, scheduler, load generator) while measuring: {:.2} ms per pod, {:.2} cores busy",
        cpu * 1000.0 / pods.max(1) as f64,
        cpu / t0.elapsed().as_secs_f64().max(1e-9),
    );
    let created = created
        .lock()
        .map_err(|_| anyhow::anyhow!("creation times poisoned"))?
        .clone();
    let mut latencies: Vec<Duration> = bound
        .iter()
        .filter_map(|(i, b)| {
            created
                .get(*i)
                .copied()
                .flatten()
                .map(|c| b.duration_since(c))
        })
        .collect();
    latencies.sort_unstable();
    let throughput = bound.len() as f64 / wall;
    println!(
        "end to end: {} of {pods} pods bound in {wall:.2}s: {throughput:.0} pods/s, create->bound p50 {:?}, p99 {:?}, max {:?}",
        bound.len(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or_default(),
    );
    if bound.is_empty() {
        bail!("no pod was bound");
    }
    Ok(throughput)
}

/// Backlog mode: all measured pods exist before the scheduler starts; throughput is counted
/// from the first to the last binding, so neither the creates nor the initial list count.
async fn backlog(
    args: &SchedulerBenchArgs,
    w: Workload,
    pods: usize,
    pod_api: &Api<Pod>,
    bound_rx: &mut mpsc::UnboundedReceiver<(usize, Instant)>,
    tasks: &TaskTracker,
    scheduler: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<f64> {
    let t = Instant::now();
    futures::stream::iter(0..pods)
        .map(|i| {
            let api = pod_api.clone();
            async move {
                api.create(&PostParams::default(), &workloads::measured_pod(w, i))
                    .await
            }
        })
        .buffer_unordered(args.concurrency)
        .try_for_each(|_| futures::future::ready(Ok(())))
        .await
        .context("creating the measured pods")?;
    println!(
        "backlog: {pods} pending pods created in {:.1}s; starting the scheduler",
        t.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    let cpu0 = process_cpu_secs();
    tasks.spawn(scheduler);
    let mut times: Vec<Instant> = Vec::with_capacity(pods);
    let mut seen = std::collections::HashSet::with_capacity(pods);
    let stall = Duration::from_secs(args.stall_secs);
    while seen.len() < pods {
        match tokio::time::timeout(stall, bound_rx.recv()).await {
            Ok(Some((i, t))) => {
                if seen.insert(i) {
                    times.push(t);
                }
            }
            Ok(None) => break,
            Err(_) => {
                println!("stalled: {} of {pods} bound", seen.len());
                break;
            }
        }
    }
    times.sort_unstable();
    let (Some(first), Some(last)) = (times.first(), times.last()) else {
        bail!("no pod was bound");
    };
    let cpu = process_cpu_secs() - cpu0;
    println!(
        "cpu: {cpu:.1} s of process CPU while draining: {:.2} ms per pod",
        cpu * 1000.0 / times.len().max(1) as f64
    );
    let wall = last.duration_since(*first).as_secs_f64().max(1e-9);
    let throughput = (times.len().saturating_sub(1)) as f64 / wall;
    println!(
        "backlog drained: {} of {pods} pods bound, first binding {:.2}s after scheduler start, first to last {wall:.2}s: {throughput:.0} pods/s",
        times.len(),
        first.duration_since(started).as_secs_f64(),
    );
    Ok(throughput)
}

async fn create_nodes(client: &kube::Client, n: usize, concurrency: usize) -> anyhow::Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    futures::stream::iter(0..n)
        .map(|i| {
            let nodes = nodes.clone();
            async move {
                let node = workloads::node(i);
                let name = node.metadata.name.clone().unwrap_or_default();
                let created = nodes.create(&PostParams::default(), &node).await?;
                // Registration as the kubelet does it: status comes with the create, but an
                // API server that resets status on create gets it again through the subresource.
                let has_status = created
                    .status
                    .as_ref()
                    .is_some_and(|s| s.allocatable.is_some());
                if !has_status {
                    let status = serde_json::json!({"status": node.status});
                    nodes
                        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                        .await?;
                }
                Ok::<(), kube::Error>(())
            }
        })
        .buffer_unordered(concurrency)
        .try_for_each(|_| futures::future::ready(Ok(())))
        .await
        .context("creating the nodes")
}

/// One unmeasured pod, scheduled before the clock starts: the scheduler's caches are filled
/// and its connections open.
async fn warm_up(api: &Api<Pod>) -> anyhow::Result<()> {
    let mut pod = workloads::measured_pod(Workload::Basic, 0);
    pod.metadata.name = Some("warmup".into());
    pod.metadata.labels = Some([("bench".to_string(), "warmup".to_string())].into());
    api.create(&PostParams::default(), &pod).await?;
    let deadline = Instant::now() + Duration::from_secs(300);
    while Instant::now() < deadline {
        let p = api.get("warmup").await?;
        if p.spec
            .and_then(|s| s.node_name)
            .is_some_and(|n| !n.is_empty())
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("the warm-up pod was not scheduled within 300s")
}

/// utime + stime of this process in seconds (USER_HZ is 100 on every Linux ABI).
fn process_cpu_secs() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    let Some(after) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
        return 0.0;
    };
    // Fields 14 and 15 of proc(5); `after` starts at field 3.
    let f: Vec<&str> = after.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    (tick(11) + tick(12)) as f64 / 100.0
}

/// The part of a Pod the measuring watch reads. Decoding just this keeps the benchmark's own
/// watch cheap next to the system under test; a watch without a selector, as scheduler_perf's
/// informer, costs the server no decoding either.
#[derive(Clone, Debug, Default, serde::Deserialize)]
struct PodBinding {
    metadata: ObjectMeta,
    #[serde(default)]
    spec: Option<BindingSpec>,
}

#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct BindingSpec {
    #[serde(default)]
    node_name: Option<String>,
}

impl k8s_openapi::Resource for PodBinding {
    const API_VERSION: &'static str = "v1";
    const GROUP: &'static str = "";
    const KIND: &'static str = "Pod";
    const VERSION: &'static str = "v1";
    const URL_PATH_SEGMENT: &'static str = "pods";
    type Scope = k8s_openapi::NamespaceResourceScope;
}

impl k8s_openapi::Metadata for PodBinding {
    type Ty = ObjectMeta;
    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// PreemptionAsync's churn counters.
#[derive(Debug, Default)]
struct Preemptors {
    created: AtomicUsize,
    /// Distinct preemptors seen bound.
    bound: AtomicUsize,
}

/// PreemptionAsync's churn (upstream's `churn` op in create mode): one high-priority preemptor
/// every `PREEMPTOR_INTERVAL` until `stop`.
async fn create_preemptors(api: Api<Pod>, counts: Arc<Preemptors>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(workloads::PREEMPTOR_INTERVAL);
    let mut i = 0;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let pod = workloads::preemptor(i);
        i += 1;
        let api = api.clone();
        let counts = counts.clone();
        tokio::spawn(async move {
            match api.create(&PostParams::default(), &pod).await {
                Ok(_) => {
                    counts.created.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => tracing::warn!(error = %e, "creating a preemptor failed"),
            }
        });
    }
}

/// Sends (index, time) the first time measured pod `pod-<index>` is seen bound; counts bound
/// preemptors.
async fn watch_bindings(
    api: Api<PodBinding>,
    ready: oneshot::Sender<()>,
    bound: mpsc::UnboundedSender<(usize, Instant)>,
    preemptors: Arc<Preemptors>,
    shutdown: CancellationToken,
) {
    let mut stream = watcher(api, watcher::Config::default()).boxed();
    let mut ready = Some(ready);
    let mut bound_preemptors = std::collections::HashSet::new();
    loop {
        let ev = tokio::select! {
            _ = shutdown.cancelled() => return,
            ev = stream.next() => ev,
        };
        let pod = match ev {
            Some(Ok(watcher::Event::InitDone)) => {
                if let Some(r) = ready.take() {
                    let _ = r.send(());
                }
                continue;
            }
            Some(Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p))) => p,
            Some(Ok(_)) => continue,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "measuring watch failed; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            None => return,
        };
        let now = Instant::now();
        let is_bound = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_some_and(|n| !n.is_empty());
        let name = pod.metadata.name.as_deref().unwrap_or("");
        if is_bound && name.starts_with("preemptor-") && bound_preemptors.insert(name.to_string()) {
            preemptors.bound.fetch_add(1, Ordering::Relaxed);
        }
        let index = name.strip_prefix("pod-").and_then(|i| i.parse().ok());
        if let (true, Some(i)) = (is_bound, index) {
            let _ = bound.send((i, now));
        }
    }
}

/// Deletes with grace period 0 every pod whose deletion was requested (the kubelet's last step).
/// It watches through `PodBinding` (metadata is all it reads) so the load generator does not
/// decode every pod in full.
async fn finish_deletions(watch: Api<PodBinding>, api: Api<Pod>, shutdown: CancellationToken) {
    let mut stream = watcher(watch, watcher::Config::default()).boxed();
    loop {
        let ev = tokio::select! {
            _ = shutdown.cancelled() => return,
            ev = stream.next() => ev,
        };
        let pod = match ev {
            Some(Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p))) => p,
            Some(Ok(_)) => continue,
            Some(Err(_)) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            None => return,
        };
        if pod.metadata.deletion_timestamp.is_none() {
            continue;
        }
        let name = pod.metadata.name.unwrap_or_default();
        let api = api.clone();
        tokio::spawn(async move {
            let _ = api
                .delete(&name, &DeleteParams::default().grace_period(0))
                .await;
        });
    }
}

/// An API server on its own redb store under `dir`, on a loopback port, and an admin client.
async fn in_process_api(
    dir: &std::path::Path,
    shutdown: &CancellationToken,
    tasks: &TaskTracker,
) -> anyhow::Result<(std::net::SocketAddr, kube::Client)> {
    let store: Arc<dyn skiff_store::Store> = Arc::new(
        skiff_store::RedbStore::open(dir.join("state.redb")).context("opening the store")?,
    );
    let kubeconfig = dir.join("kubeconfig.yaml");
    let config = skiff_apiserver::Config {
        data_dir: dir.join("server"),
        bind_address: std::net::IpAddr::from([127, 0, 0, 1]),
        port: 0,
        kubeconfig_path: kubeconfig.clone(),
        tls_sans: Vec::new(),
        compaction_interval: Duration::from_secs(300),
    };
    let server = skiff_apiserver::start(config, store, shutdown.clone(), tasks)
        .await
        .context("starting the API server")?;
    let client = skiff_scheduler::client_from_kubeconfig(&kubeconfig).await?;
    Ok((server.local_addr, client))
}
