//! Storage latency end to end: a `skiff server` (binder, provisioner with the built-in CSI
//! driver, scheduler with VolumeBinding) and `skiff hollow` nodes, driven through the API.
//!
//! ```text
//! cargo build --release -p skiff
//! cargo run --release -p skiff --example storage_bench [-- --claims 200 --nodes 10]
//! ```
//!
//! Workloads, each on the same server, one after another:
//! - `static`: N hostPath PVs exist; N claims (Immediate, class `bench-static`) are created
//!   `--concurrency` at a time; latency = claim create → `status.phase` Bound (PV controller).
//! - `wffc-local`: N `local` PVs of a WaitForFirstConsumer no-provisioner class, spread over
//!   the nodes by node affinity; per sample a claim and a pod using it are created; latency =
//!   create → pod Running (scheduler picks the PV's node, pre-binds the PV, waits for the PV
//!   controller, binds the pod, a hollow node reports Running).
//! - `wffc-provision`: per sample a `local-path` claim and a pod; latency = create → pod
//!   Running (scheduler sets selected-node, the provisioner calls CreateVolume and creates the
//!   PV, the PV controller binds, the pod is bound and reported Running). Hollow nodes mount
//!   nothing: the agent's NodePublishVolume is not in this number.
//!
//! The output is a table for people and `name=value` lines for scripts.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::Api;
use kube::api::PostParams;
use kube::runtime::{WatchStreamExt, watcher};

/// Storage benchmark (not a test).
#[derive(Debug, Parser)]
struct Args {
    /// Samples per workload.
    #[arg(long, default_value_t = 200)]
    claims: usize,
    /// Hollow nodes.
    #[arg(long, default_value_t = 10)]
    nodes: usize,
    /// Samples created at once.
    #[arg(long, default_value_t = 10)]
    concurrency: usize,
    /// Give up on a workload after this many seconds.
    #[arg(long, default_value_t = 300)]
    timeout_secs: u64,
    /// The `skiff` binary (default: next to this example's target dir).
    #[arg(long)]
    skiff_bin: Option<PathBuf>,
    /// Keep the server's data dir and logs here instead of a temporary directory.
    #[arg(long)]
    keep_dir: Option<PathBuf>,
    /// Workloads to run (comma separated): static, wffc-local, wffc-provision.
    #[arg(long, default_value = "static,wffc-local,wffc-provision")]
    workloads: String,
}

/// A child process killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn default_skiff_bin() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .context("locating the target directory")?;
    Ok(profile_dir.join("skiff"))
}

fn start_server(bin: &Path, dir: &Path) -> anyhow::Result<(Proc, PathBuf)> {
    let mut child = Command::new(bin)
        .args([
            "server",
            "--disable-agent",
            "--https-listen-port",
            "0",
            "--data-dir",
        ])
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join("server.log"))?)
        .spawn()
        .with_context(|| format!("spawning {}", bin.display()))?;
    let stdout = child.stdout.take().context("server stdout")?;
    let server = Proc(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    if !line.starts_with("skiff server ready") {
        bail!(
            "server did not start: {line:?}; log: {}",
            std::fs::read_to_string(dir.join("server.log")).unwrap_or_default()
        );
    }
    Ok((server, dir.join("kubeconfig.yaml")))
}

fn start_hollow(bin: &Path, kubeconfig: &Path, nodes: usize, dir: &Path) -> anyhow::Result<Proc> {
    let mut child = Command::new(bin)
        .arg("hollow")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["--nodes", &nodes.to_string()])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join("hollow.log"))?)
        .spawn()?;
    let stdout = child.stdout.take().context("hollow stdout")?;
    let hollow = Proc(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    if !line.starts_with("skiff hollow ready") {
        bail!("hollow nodes did not start: {line:?}");
    }
    Ok(hollow)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[idx]
}

fn from_yaml<T: serde::de::DeserializeOwned>(json: serde_json::Value) -> anyhow::Result<T> {
    Ok(serde_json::from_value(json)?)
}

fn claim(name: &str, class: &str) -> anyhow::Result<PersistentVolumeClaim> {
    from_yaml(serde_json::json!({
        "metadata": {"name": name, "labels": {"bench": "storage"}},
        "spec": {
            "storageClassName": class,
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "1Gi"}},
        }
    }))
}

fn pod(name: &str, claim: &str) -> anyhow::Result<Pod> {
    from_yaml(serde_json::json!({
        "metadata": {"name": name, "labels": {"bench": "storage"}},
        "spec": {
            "containers": [{
                "name": "app",
                "image": "registry.k8s.io/pause:3.10",
                "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
            }],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}],
        }
    }))
}

fn volume(name: &str, class: &str, node: Option<&str>) -> anyhow::Result<PersistentVolume> {
    let mut spec = serde_json::json!({
        "capacity": {"storage": "1Gi"},
        "accessModes": ["ReadWriteOnce"],
        "persistentVolumeReclaimPolicy": "Retain",
        "storageClassName": class,
    });
    match node {
        Some(n) => {
            spec["local"] = serde_json::json!({"path": format!("/mnt/bench/{name}")});
            spec["nodeAffinity"] = serde_json::json!({"required": {"nodeSelectorTerms": [{
                "matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": [n]}]
            }]}});
        }
        None => spec["hostPath"] = serde_json::json!({"path": format!("/tmp/bench/{name}")}),
    }
    from_yaml(serde_json::json!({"metadata": {"name": name}, "spec": spec}))
}

/// When each named object first reached its goal, filled by a watch.
type Seen = Arc<Mutex<HashMap<String, Instant>>>;

fn watch_claims_bound(client: &kube::Client, seen: Seen) -> tokio::task::JoinHandle<()> {
    let api: Api<PersistentVolumeClaim> = Api::default_namespaced(client.clone());
    tokio::spawn(async move {
        let mut s = watcher(api, watcher::Config::default().labels("bench=storage"))
            .applied_objects()
            .boxed();
        while let Ok(Some(c)) = s.try_next().await {
            if c.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound")
                && let Some(n) = c.metadata.name
                && let Ok(mut m) = seen.lock()
            {
                m.entry(n).or_insert_with(Instant::now);
            }
        }
    })
}

fn watch_pods_running(client: &kube::Client, seen: Seen) -> tokio::task::JoinHandle<()> {
    let api: Api<Pod> = Api::default_namespaced(client.clone());
    tokio::spawn(async move {
        let mut s = watcher(api, watcher::Config::default().labels("bench=storage"))
            .applied_objects()
            .boxed();
        while let Ok(Some(p)) = s.try_next().await {
            if p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
                && let Some(n) = p.metadata.name
                && let Ok(mut m) = seen.lock()
            {
                m.entry(n).or_insert_with(Instant::now);
            }
        }
    })
}

struct Outcome {
    name: &'static str,
    samples: Vec<Duration>,
    missing: usize,
    wall: Duration,
}

/// Creates `n` samples `concurrency` at a time with `create(i)` and waits until `seen` holds
/// every `key(i)`; returns the per-sample latencies.
async fn run_samples<F, Fut>(
    name: &'static str,
    n: usize,
    concurrency: usize,
    timeout: Duration,
    seen: Seen,
    key: impl Fn(usize) -> String,
    create: F,
) -> anyhow::Result<Outcome>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let started = Instant::now();
    let mut starts: Vec<Option<Instant>> = vec![None; n];
    let mut creates = futures::stream::iter(0..n)
        .map(|i| {
            let t = Instant::now();
            let f = create(i);
            async move { f.await.map(|()| (i, t)) }
        })
        .buffer_unordered(concurrency.max(1));
    while let Some(r) = creates.next().await {
        let (i, t) = r?;
        starts[i] = Some(t);
    }
    let deadline = started + timeout;
    loop {
        let done = seen
            .lock()
            .map(|m| (0..n).all(|i| m.contains_key(&key(i))))
            .unwrap_or(false);
        if done || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let wall = started.elapsed();
    let m = seen.lock().map(|m| m.clone()).unwrap_or_default();
    let mut samples = Vec::new();
    let mut missing = 0;
    for (i, start) in starts.iter().enumerate() {
        match (start, m.get(&key(i))) {
            (Some(s), Some(t)) => samples.push(t.saturating_duration_since(*s)),
            _ => missing += 1,
        }
    }
    samples.sort();
    Ok(Outcome {
        name,
        samples,
        missing,
        wall,
    })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let bin = match &args.skiff_bin {
        Some(b) => b.clone(),
        None => default_skiff_bin()?,
    };
    if !bin.exists() {
        bail!(
            "{} does not exist: cargo build --release -p skiff",
            bin.display()
        );
    }
    let temp = tempfile::tempdir()?;
    let dir = match &args.keep_dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d.clone()
        }
        None => temp.path().to_path_buf(),
    };
    let load_before = load_average();
    let (_server, kubeconfig) = start_server(&bin, &dir)?;
    let _hollow = start_hollow(&bin, &kubeconfig, args.nodes, &dir)?;
    let client = skiff_scheduler::client_from_kubeconfig(&kubeconfig).await?;
    let timeout = Duration::from_secs(args.timeout_secs);
    let workloads: Vec<&str> = args.workloads.split(',').map(str::trim).collect();
    let n = args.claims;
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let pvcs: Api<PersistentVolumeClaim> = Api::default_namespaced(client.clone());
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let classes: Api<StorageClass> = Api::all(client.clone());
    let pp = PostParams::default();
    let mut outcomes = Vec::new();

    if workloads.contains(&"static") {
        for i in 0..n {
            pvs.create(
                &pp,
                &volume(&format!("static-pv-{i}"), "bench-static", None)?,
            )
            .await?;
        }
        let seen: Seen = Arc::default();
        let w = watch_claims_bound(&client, seen.clone());
        let o = run_samples(
            "static claim->Bound",
            n,
            args.concurrency,
            timeout,
            seen,
            |i| format!("static-{i}"),
            |i| {
                let pvcs = pvcs.clone();
                let pp = pp.clone();
                async move {
                    pvcs.create(&pp, &claim(&format!("static-{i}"), "bench-static")?)
                        .await?;
                    Ok(())
                }
            },
        )
        .await?;
        w.abort();
        outcomes.push(o);
    }

    if workloads.contains(&"wffc-local") {
        classes
            .create(
                &pp,
                &from_yaml(serde_json::json!({
                    "metadata": {"name": "bench-local"},
                    "provisioner": "kubernetes.io/no-provisioner",
                    "volumeBindingMode": "WaitForFirstConsumer",
                }))?,
            )
            .await?;
        for i in 0..n {
            let node = format!("hollow-node-{}", i % args.nodes.max(1));
            pvs.create(
                &pp,
                &volume(&format!("local-pv-{i}"), "bench-local", Some(&node))?,
            )
            .await?;
        }
        let seen: Seen = Arc::default();
        let w = watch_pods_running(&client, seen.clone());
        let o = run_samples(
            "wffc-local claim+pod->Running",
            n,
            args.concurrency,
            timeout,
            seen,
            |i| format!("local-user-{i}"),
            |i| {
                let (pvcs, pods, pp) = (pvcs.clone(), pods.clone(), pp.clone());
                async move {
                    pvcs.create(&pp, &claim(&format!("local-{i}"), "bench-local")?)
                        .await?;
                    pods.create(
                        &pp,
                        &pod(&format!("local-user-{i}"), &format!("local-{i}"))?,
                    )
                    .await?;
                    Ok(())
                }
            },
        )
        .await?;
        w.abort();
        outcomes.push(o);
    }

    if workloads.contains(&"wffc-provision") {
        let seen: Seen = Arc::default();
        let w = watch_pods_running(&client, seen.clone());
        let o = run_samples(
            "wffc-provision claim+pod->Running",
            n,
            args.concurrency,
            timeout,
            seen,
            |i| format!("dyn-user-{i}"),
            |i| {
                let (pvcs, pods, pp) = (pvcs.clone(), pods.clone(), pp.clone());
                async move {
                    pvcs.create(&pp, &claim(&format!("dyn-{i}"), "local-path")?)
                        .await?;
                    pods.create(&pp, &pod(&format!("dyn-user-{i}"), &format!("dyn-{i}"))?)
                        .await?;
                    Ok(())
                }
            },
        )
        .await?;
        w.abort();
        outcomes.push(o);
    }

    let load_after = load_average();
    println!(
        "{:<40} {:>6} {:>8} {:>9} {:>9} {:>9} {:>8}",
        "workload", "n", "missing", "p50", "p99", "max", "wall"
    );
    for o in &outcomes {
        println!(
            "{:<40} {:>6} {:>8} {:>8.0}ms {:>8.0}ms {:>8.0}ms {:>7.1}s",
            o.name,
            o.samples.len(),
            o.missing,
            percentile(&o.samples, 0.50).as_secs_f64() * 1e3,
            percentile(&o.samples, 0.99).as_secs_f64() * 1e3,
            o.samples.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
            o.wall.as_secs_f64(),
        );
    }
    println!(
        "claims={n} nodes={} concurrency={}",
        args.nodes, args.concurrency
    );
    println!("loadavg_before={load_before}");
    println!("loadavg_after={load_after}");
    for o in &outcomes {
        let key = o.name.split_whitespace().next().unwrap_or("");
        println!(
            "{key}.p50_ms={:.1} {key}.p99_ms={:.1} {key}.missing={}",
            percentile(&o.samples, 0.50).as_secs_f64() * 1e3,
            percentile(&o.samples, 0.99).as_secs_f64() * 1e3,
            o.missing
        );
    }
    Ok(())
}
