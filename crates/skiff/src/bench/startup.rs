//! `skiff bench startup` (root): pod startup latency on one real node, as upstream's pod startup
//! SLI measures it (pod create → Running and Ready, observed through a watch), for sequential and
//! concurrent busybox pods; in the same run the same container through raw CRI calls on the
//! agent's containerd and through raw `runc run`, and the agent's RSS with the concurrent pods
//! running. Everything runs in a network namespace the benchmark creates and removes: the outer
//! process builds the namespace and cleans up whatever is left, an inner `skiff bench startup`
//! started in it with `nsenter --net` measures.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};

use crate::cluster::{cgroup_hierarchies, kill_cgroup_tree, quietly};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::watcher;
use skiff_agent::cri::{Cri, api};
use skiff_scheduler::bench::percentile;

/// The node's address on the namespace's veth.
const NODE_IP: &str = "10.213.9.2";
const NODE: &str = "bench-node";
const IMAGE: &str = "docker.io/library/busybox:1.36";
const COMMAND: &str = "trap 'exit 0' TERM; sleep 3600 & wait";
const WAIT: Duration = Duration::from_secs(120);
/// Where the agent's containerd serves its Prometheus metrics (inside the namespace).
const METRICS_ADDR: &str = "127.0.0.1:1338";
/// /proc/stat and /proc/<pid>/stat count in USER_HZ, fixed at 100 by the kernel ABI.
const USER_HZ: f64 = 100.0;

#[derive(Debug, clap::Args)]
pub struct StartupBenchArgs {
    /// Pods created one after another (each deleted before the next).
    #[arg(long, default_value_t = 100)]
    sequential: usize,
    /// Pods created at once (kept running for the RSS reading).
    #[arg(long, default_value_t = 30)]
    concurrent: usize,
    /// Containers started through raw CRI calls and through raw `runc run`, each.
    #[arg(long, default_value_t = 30)]
    raw: usize,
    /// Parent of the temporary work directory (default: the system temp dir).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Log filter, as `RUST_LOG` (the server and agent log at `warn` to their files).
    #[arg(long, env = "SKIFF_LOG", default_value = "warn")]
    pub log: String,
    /// Internal: measure inside the namespace, in this work directory.
    #[arg(long, hide = true)]
    inside: Option<PathBuf>,
    /// Internal: the cgroup everything goes under.
    #[arg(long, hide = true, default_value = "")]
    cgroup_root: String,
}

/// Runs the benchmark (outer part unless `--inside`).
pub async fn run(args: StartupBenchArgs) -> anyhow::Result<()> {
    if let Some(dir) = args.inside.clone() {
        return inside(&args, &dir).await;
    }
    let root = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"));
    ensure!(
        root,
        "skiff bench startup needs root (network namespace, containerd)"
    );
    let id = std::process::id();
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(std::env::temp_dir)
        .join(format!("skiff-bench-startup-{id}"));
    let guard = Guard {
        netns: format!("skiff-bench-{id}"),
        cgroup_root: format!("/skiff-bench-{id}"),
        dir: dir.clone(),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    guard.network()?;
    let images = dir.join("node/agent/images");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/busybox-image.sh");
    let out = Command::new(&script)
        .arg(&images)
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    ensure!(
        out.status.success(),
        "{}: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let exe = std::env::current_exe().context("locating the skiff binary")?;
    let mut child = tokio::process::Command::new("nsenter")
        .arg(format!("--net=/var/run/netns/{}", guard.netns))
        .arg(exe)
        .args(["bench", "startup", "--log", &args.log])
        .args(["--sequential", &args.sequential.to_string()])
        .args(["--concurrent", &args.concurrent.to_string()])
        .args(["--raw", &args.raw.to_string()])
        .args(["--cgroup-root", &guard.cgroup_root])
        .arg("--inside")
        .arg(&dir)
        .spawn()
        .context("starting the measurement in the namespace")?;
    let status = tokio::select! {
        s = child.wait() => s.context("waiting for the measurement")?,
        _ = tokio::signal::ctrl_c() => {
            let _ = child.kill().await;
            bail!("interrupted; everything the benchmark created was removed");
        }
    };
    drop(guard);
    ensure!(status.success(), "the measurement failed ({status})");
    Ok(())
}

/// What the benchmark creates outside its own processes; removed on drop, however it ends.
struct Guard {
    netns: String,
    cgroup_root: String,
    dir: PathBuf,
}

impl Guard {
    fn network(&self) -> anyhow::Result<()> {
        let ns = self.netns.as_str();
        let addr = format!("{NODE_IP}/24");
        for args in [
            vec!["netns", "add", ns],
            vec!["-n", ns, "link", "set", "lo", "up"],
            // Both veth ends stay inside: the node gets an address, the root namespace nothing.
            vec![
                "-n",
                ns,
                "link",
                "add",
                "eth0",
                "type",
                "veth",
                "peer",
                "name",
                "eth0-peer",
            ],
            vec!["-n", ns, "addr", "add", &addr, "dev", "eth0"],
            vec!["-n", ns, "link", "set", "eth0-peer", "up"],
            vec!["-n", ns, "link", "set", "eth0", "up"],
        ] {
            let out = Command::new("ip").args(&args).output()?;
            ensure!(
                out.status.success(),
                "ip {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        // Pods and raw containers: every process in the benchmark's cgroup tree.
        kill_cgroup_tree(&self.cgroup_root);
        // The server, the agent, containerd and its shims: their command lines name our dir.
        let dir = self.dir.display().to_string();
        let me = std::process::id().to_string();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let pid = entry.file_name().to_string_lossy().to_string();
            if pid.parse::<u32>().is_err() || pid == me {
                continue;
            }
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(&dir) {
                quietly("kill", &["-KILL", &pid]);
            }
        }
        std::thread::sleep(Duration::from_millis(300));
        let mut mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_whitespace().nth(4).map(str::to_string))
            .filter(|m| m.starts_with(&dir))
            .collect();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            quietly("umount", &["-l", &m]);
        }
        fn rm(dir: &Path) {
            for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    rm(&e.path());
                }
            }
            let _ = std::fs::remove_dir(dir);
        }
        let root = self.cgroup_root.trim_start_matches('/');
        for _ in 0..50 {
            let mut left = false;
            for h in cgroup_hierarchies() {
                let path = h.join(root);
                rm(&path);
                left |= path.exists();
            }
            if !left {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        quietly("ip", &["netns", "del", &self.netns]);
        let _ = std::fs::remove_dir_all(&self.dir);
        for d in ["/var/lib/cni/results", "/var/lib/cni"] {
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// One pod's milestones as the watch saw them.
#[derive(Debug, Default, Clone, Copy)]
struct Seen {
    bound: Option<Instant>,
    running: Option<Instant>,
    ready: Option<Instant>,
}

type Milestones = tokio::sync::watch::Sender<HashMap<String, Seen>>;

fn record(milestones: &Milestones, pod: &Pod) {
    let Some(name) = pod.metadata.name.clone() else {
        return;
    };
    let now = Instant::now();
    let status = pod.status.clone().unwrap_or_default();
    let bound = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_ref())
        .is_some();
    let running = status.phase.as_deref() == Some("Running");
    let ready = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    milestones.send_modify(|m| {
        let seen = m.entry(name).or_default();
        if bound {
            seen.bound.get_or_insert(now);
        }
        if running {
            seen.running.get_or_insert(now);
        }
        if running && ready {
            seen.ready.get_or_insert(now);
        }
    });
}

fn pod(name: &str) -> anyhow::Result<Pod> {
    Ok(serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"bench": "startup"}},
        "spec": {
            "terminationGracePeriodSeconds": 2,
            "containers": [{
                "name": "main",
                "image": IMAGE,
                "imagePullPolicy": "IfNotPresent",
                "command": ["sh", "-c", COMMAND],
            }],
        },
    }))?)
}

/// Latency of each pod from just before its create call; split at the watch's milestones.
#[derive(Debug, Default)]
struct Phases {
    total: Vec<Duration>,
    to_bound: Vec<Duration>,
    bound_to_running: Vec<Duration>,
    running_to_ready: Vec<Duration>,
}

impl Phases {
    fn add(&mut self, created: Instant, seen: Seen) {
        let (Some(b), Some(r), Some(ready)) = (seen.bound, seen.running, seen.ready) else {
            return;
        };
        self.total.push(ready - created);
        self.to_bound.push(b.saturating_duration_since(created));
        self.bound_to_running.push(r.saturating_duration_since(b));
        self.running_to_ready
            .push(ready.saturating_duration_since(r));
    }
}

fn stats(label: &str, v: &[Duration]) -> String {
    let mut v = v.to_vec();
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mean = if v.is_empty() {
        0.0
    } else {
        v.iter().map(|d| ms(*d)).sum::<f64>() / v.len() as f64
    };
    format!(
        "{label:<44} n={:<4} p50 {:>7.1} ms  p99 {:>7.1} ms  mean {:>7.1} ms  max {:>7.1} ms",
        v.len(),
        ms(percentile(&v, 0.5)),
        ms(percentile(&v, 0.99)),
        mean,
        ms(v.last().copied().unwrap_or_default()),
    )
}

async fn wait_ready(
    rx: &mut tokio::sync::watch::Receiver<HashMap<String, Seen>>,
    name: &str,
) -> anyhow::Result<Seen> {
    let seen = tokio::time::timeout(
        WAIT,
        rx.wait_for(|m| m.get(name).is_some_and(|s| s.ready.is_some())),
    )
    .await
    .with_context(|| format!("pod {name} not Ready within {WAIT:?}"))?
    .context("the watch ended")?;
    Ok(seen.get(name).copied().unwrap_or_default())
}

async fn wait_gone(pods: &Api<Pod>, names: &[String]) -> anyhow::Result<()> {
    let deadline = Instant::now() + WAIT;
    for name in names {
        while pods.get_opt(name).await?.is_some() {
            ensure!(Instant::now() < deadline, "pod {name} not deleted in time");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}

/// VmRSS of `pid` in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Processes whose command line contains `needle`, with their RSS in KiB.
fn processes(needle: &str, under: &str) -> Vec<(u32, u64)> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_string_lossy().parse().ok()?;
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            (cmdline.contains(needle) && cmdline.contains(under)).then(|| (pid, rss_kib(pid)))
        })
        .collect()
}

/// A child process (server or agent), stopped with SIGTERM when dropped.
struct Daemon(std::process::Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        quietly("kill", &["-TERM", &self.0.id().to_string()]);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn inside(args: &StartupBenchArgs, dir: &Path) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("locating the skiff binary")?;
    let server_dir = dir.join("server");
    let node_dir = dir.join("node");
    let mut server = Command::new(&exe)
        .args(["server", "--disable-agent", "--https-listen-port", "0"])
        .args(["--log", "warn", "--data-dir"])
        .arg(&server_dir)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join("server.log"))?)
        .spawn()
        .context("starting the server")?;
    let stdout = server.stdout.take().context("server stdout")?;
    let server = Daemon(server);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("https://"))
        .with_context(|| format!("the server did not start: {line:?}"))?
        .to_string();
    let agent_log = dir.join("agent.log");
    let agent = Daemon(
        Command::new(&exe)
            .arg("agent")
            .arg("--data-dir")
            .arg(&node_dir)
            .args(["--server", &url, "--token-file"])
            .arg(server_dir.join("server/node-token"))
            .args(["--node-name", NODE, "--node-ip", NODE_IP])
            .args(["--pod-cidr", "10.244.0.0/24", "--cgroup-root"])
            .arg(format!("{}/kubepods", args.cgroup_root))
            .args(["--log", "warn"])
            // containerd's own per-phase timers (CNI setup, pause container, create, start).
            .env(skiff_agent::containerd::METRICS_ENV, METRICS_ADDR)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&agent_log)?)
            .spawn()
            .context("starting the agent")?,
    );
    let client = skiff_scheduler::client_from_kubeconfig(&server_dir.join("kubeconfig.yaml"))
        .await
        .context("admin client")?;
    let nodes: Api<Node> = Api::all(client.clone());
    let started = Instant::now();
    loop {
        let ready = nodes.get_opt(NODE).await?.is_some_and(|n| {
            n.status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        });
        if ready {
            break;
        }
        ensure!(
            started.elapsed() < WAIT,
            "the node never became Ready; agent log:\n{}",
            std::fs::read_to_string(&agent_log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let agent_pid = agent.0.id();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "skiff bench startup: node Ready {:.1} s after start; load average {}",
        started.elapsed().as_secs_f64(),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );

    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let (tx, mut rx) = tokio::sync::watch::channel(HashMap::<String, Seen>::new());
    let watch_api = pods.clone();
    let watch_task = tokio::spawn(async move {
        let cfg = watcher::Config::default().labels("bench=startup");
        let mut events = watcher::watcher(watch_api, cfg).boxed();
        while let Ok(Some(ev)) = events.try_next().await {
            match ev {
                watcher::Event::Apply(p) | watcher::Event::InitApply(p) => record(&tx, &p),
                _ => {}
            }
        }
    });
    // Let the watch establish before the first create.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pp = PostParams::default();
    let dp = DeleteParams::default();

    // Warm-up: the first pod on a fresh node pays one-time costs (image unpack, CNI bridge).
    pods.create(&pp, &pod("warmup")?).await?;
    wait_ready(&mut rx, "warmup").await?;
    pods.delete("warmup", &dp).await?;
    wait_gone(&pods, &["warmup".to_string()]).await?;

    let mut sequential = Phases::default();
    for i in 0..args.sequential {
        let name = format!("seq-{i}");
        let created = Instant::now();
        pods.create(&pp, &pod(&name)?).await?;
        let seen = wait_ready(&mut rx, &name).await?;
        sequential.add(created, seen);
        pods.delete(&name, &dp).await?;
        wait_gone(&pods, std::slice::from_ref(&name)).await?;
    }

    let mut concurrent = Phases::default();
    let names: Vec<String> = (0..args.concurrent).map(|i| format!("par-{i}")).collect();
    let procs = NodeProcs {
        node_dir: node_dir.display().to_string(),
        agent: agent.0.id(),
        server: server.0.id(),
    };
    let cpu0 = procs.cpu();
    let metrics0 = scrape_metrics();
    let phase_start = Instant::now();
    let creates = names.iter().map(|name| {
        let pods = pods.clone();
        let pp = pp.clone();
        let name = name.clone();
        async move {
            let created = Instant::now();
            pods.create(&pp, &pod(&name)?).await?;
            anyhow::Ok((name, created))
        }
    });
    let created: Vec<(String, Instant)> = futures::future::try_join_all(creates).await?;
    for (name, at) in &created {
        let seen = wait_ready(&mut rx, name).await?;
        concurrent.add(*at, seen);
    }
    let pods_cpu = procs.cpu().since(&cpu0, phase_start.elapsed());
    let pods_metrics = metrics_delta(&metrics0, &scrape_metrics());
    // RSS once the pods have been running for a few status rounds.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let agent_rss = rss_kib(agent_pid);
    let containerd: u64 = processes("containerd --config", &node_dir.display().to_string())
        .iter()
        .map(|p| p.1)
        .sum();
    let shims = processes("containerd-shim", &node_dir.display().to_string());
    let server_rss = rss_kib(server.0.id());
    for name in &names {
        pods.delete(name, &dp).await?;
    }
    wait_gone(&pods, &names).await?;
    watch_task.abort();

    // The same container through raw CRI calls on the agent's containerd.
    let cri = Cri::connect(&node_dir.join("agent/containerd/containerd.sock")).await?;
    let raw_cri = raw_cri(&cri, args, dir, &procs).await?;
    // And through raw runc.
    let raw_runc = raw_runc(args, dir)?;

    println!(
        "\npod startup (create → Running and Ready, observed through a watch; scheduler included)"
    );
    for (label, p) in [
        (format!("{} sequential pods", args.sequential), &sequential),
        (format!("{} concurrent pods", args.concurrent), &concurrent),
    ] {
        println!("{}", stats(&format!("{label}: total"), &p.total));
        println!("{}", stats("  create → bound (scheduler)", &p.to_bound));
        println!(
            "{}",
            stats("  bound → Running (agent, CRI)", &p.bound_to_running)
        );
        println!("{}", stats("  Running → Ready", &p.running_to_ready));
    }
    println!(
        "\nraw CRI on the agent's containerd (RunPodSandbox + CreateContainer + StartContainer)"
    );
    raw_cri
        .sequential
        .print(&format!("{} sequential", args.raw));
    raw_cri
        .concurrent
        .print(&format!("{} concurrent", args.concurrent));
    raw_cri.host_network.print(&format!(
        "{} concurrent, hostNetwork (no CNI)",
        args.concurrent
    ));
    println!(
        "\nwhere the time went with {} pods at once (CPU seconds used during the phase)",
        args.concurrent
    );
    pods_cpu.print("pods through the agent");
    print_metrics(&pods_metrics);
    raw_cri.concurrent_cpu.print("raw CRI");
    print_metrics(&raw_cri.concurrent_metrics);
    raw_cri.host_network_cpu.print("raw CRI, hostNetwork");
    print_metrics(&raw_cri.host_network_metrics);
    println!("\nraw runc (`runc run -d`, busybox bundle, new empty netns, no CNI, no containerd)");
    println!("{}", stats("total", &raw_runc));
    let mib = |k: u64| k as f64 / 1024.0;
    println!(
        "\nRSS with {} pods running: skiff agent process {:.1} MiB; not counted: containerd {:.1} MiB, \
         {} shims {:.1} MiB, API server+controllers+scheduler {:.1} MiB",
        args.concurrent,
        mib(agent_rss),
        mib(containerd),
        shims.len(),
        mib(shims.iter().map(|s| s.1).sum()),
        mib(server_rss),
    );
    let mut seq = sequential.total.clone();
    seq.sort();
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    println!(
        "targets: p50 < 400 ms {} ({:.0} ms), p99 < 1 s {} ({:.0} ms), agent RSS < 50 MiB {} ({:.1} MiB)",
        verdict(percentile(&seq, 0.5) < Duration::from_millis(400)),
        percentile(&seq, 0.5).as_secs_f64() * 1000.0,
        verdict(percentile(&seq, 0.99) < Duration::from_secs(1)),
        percentile(&seq, 0.99).as_secs_f64() * 1000.0,
        verdict(agent_rss < 50 * 1024),
        mib(agent_rss),
    );
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "load average at the end: {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    drop(agent);
    drop(server);
    Ok(())
}

#[derive(Default)]
struct RawCri {
    total: Vec<Duration>,
    sandbox: Vec<Duration>,
    create: Vec<Duration>,
    start: Vec<Duration>,
}

impl RawCri {
    fn add(&mut self, t: [Duration; 3]) {
        self.total.push(t[0] + t[1] + t[2]);
        self.sandbox.push(t[0]);
        self.create.push(t[1]);
        self.start.push(t[2]);
    }

    fn print(&self, label: &str) {
        println!("{}", stats(&format!("{label}: total"), &self.total));
        println!("{}", stats("  RunPodSandbox (incl. CNI)", &self.sandbox));
        println!("{}", stats("  CreateContainer", &self.create));
        println!("{}", stats("  StartContainer", &self.start));
    }
}

/// One sandbox and its busybox container through raw CRI calls: the time of each call and the
/// sandbox's ID.
async fn raw_cri_one(
    cri: &Cri,
    cgroup_root: &str,
    dir: &Path,
    name: &str,
    host_network: bool,
) -> anyhow::Result<([Duration; 3], String)> {
    let mut rt = cri.rt.clone();
    let uid = format!("{name}-{}", std::process::id());
    let logs = dir.join("raw-cri").join(&uid);
    std::fs::create_dir_all(&logs)?;
    // No io.kubernetes.pod.uid label: the agent's orphan sweep leaves these alone.
    let config = api::PodSandboxConfig {
        metadata: Some(api::PodSandboxMetadata {
            name: name.into(),
            uid: uid.clone(),
            namespace: "bench-raw".into(),
            attempt: 0,
        }),
        // As the kubelet: a pod on the node's network has the node's hostname (runc refuses
        // to set one without a private UTS namespace).
        hostname: if host_network {
            String::new()
        } else {
            name.into()
        },
        log_directory: logs.display().to_string(),
        linux: Some(api::LinuxPodSandboxConfig {
            cgroup_parent: format!("{cgroup_root}/raw/pod{uid}"),
            // The node's network namespace: no netns and no CNI ADD, the rest unchanged.
            security_context: host_network.then(|| api::LinuxSandboxSecurityContext {
                namespace_options: Some(api::NamespaceOption {
                    network: api::NamespaceMode::Node as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let t0 = Instant::now();
    let sandbox = rt
        .run_pod_sandbox(api::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        })
        .await
        .context("RunPodSandbox")?
        .into_inner()
        .pod_sandbox_id;
    let t1 = Instant::now();
    let container = rt
        .create_container(api::CreateContainerRequest {
            pod_sandbox_id: sandbox.clone(),
            config: Some(api::ContainerConfig {
                metadata: Some(api::ContainerMetadata {
                    name: "main".into(),
                    attempt: 0,
                }),
                image: Some(api::ImageSpec {
                    image: IMAGE.into(),
                    ..Default::default()
                }),
                command: vec!["sh".into(), "-c".into(), COMMAND.into()],
                log_path: "main/0.log".into(),
                ..Default::default()
            }),
            sandbox_config: Some(config),
        })
        .await
        .context("CreateContainer")?
        .into_inner()
        .container_id;
    let t2 = Instant::now();
    rt.start_container(api::StartContainerRequest {
        container_id: container,
    })
    .await
    .context("StartContainer")?;
    let t3 = Instant::now();
    Ok(([t1 - t0, t2 - t1, t3 - t2], sandbox))
}

async fn raw_cri_remove(cri: &Cri, sandbox: String) -> anyhow::Result<()> {
    let mut rt = cri.rt.clone();
    rt.stop_pod_sandbox(api::StopPodSandboxRequest {
        pod_sandbox_id: sandbox.clone(),
    })
    .await
    .context("StopPodSandbox")?;
    rt.remove_pod_sandbox(api::RemovePodSandboxRequest {
        pod_sandbox_id: sandbox,
    })
    .await
    .context("RemovePodSandbox")?;
    Ok(())
}

/// What the raw CRI runs measured.
struct RawCriRuns {
    sequential: RawCri,
    concurrent: RawCri,
    concurrent_cpu: CpuUse,
    concurrent_metrics: Vec<(String, f64, f64)>,
    host_network: RawCri,
    host_network_cpu: CpuUse,
    host_network_metrics: Vec<(String, f64, f64)>,
}

/// Raw CRI, one after another (each torn down untimed before the next, as the pods were), then
/// as many at once as the concurrent pods, then as many at once on the node's network.
async fn raw_cri(
    cri: &Cri,
    args: &StartupBenchArgs,
    dir: &Path,
    procs: &NodeProcs,
) -> anyhow::Result<RawCriRuns> {
    let mut sequential = RawCri::default();
    for i in 0..args.raw {
        let (t, sandbox) =
            raw_cri_one(cri, &args.cgroup_root, dir, &format!("raw-{i}"), false).await?;
        sequential.add(t);
        raw_cri_remove(cri, sandbox).await?;
    }
    let (concurrent, concurrent_cpu, concurrent_metrics) =
        raw_cri_concurrent(cri, args, dir, procs, "raw-par", false).await?;
    let (host_network, host_network_cpu, host_network_metrics) =
        raw_cri_concurrent(cri, args, dir, procs, "raw-host", true).await?;
    Ok(RawCriRuns {
        sequential,
        concurrent,
        concurrent_cpu,
        concurrent_metrics,
        host_network,
        host_network_cpu,
        host_network_metrics,
    })
}

async fn raw_cri_concurrent(
    cri: &Cri,
    args: &StartupBenchArgs,
    dir: &Path,
    procs: &NodeProcs,
    prefix: &str,
    host_network: bool,
) -> anyhow::Result<(RawCri, CpuUse, Vec<(String, f64, f64)>)> {
    let mut concurrent = RawCri::default();
    let cpu0 = procs.cpu();
    let metrics0 = scrape_metrics();
    let started = Instant::now();
    let runs = (0..args.concurrent).map(|i| {
        let name = format!("{prefix}-{i}");
        async move { raw_cri_one(cri, &args.cgroup_root, dir, &name, host_network).await }
    });
    let results = futures::future::join_all(runs).await;
    let cpu = procs.cpu().since(&cpu0, started.elapsed());
    let metrics = metrics_delta(&metrics0, &scrape_metrics());
    let mut failed = None;
    for r in results {
        match r {
            Ok((t, sandbox)) => {
                concurrent.add(t);
                raw_cri_remove(cri, sandbox).await?;
            }
            Err(e) => failed = Some(e),
        }
    }
    if let Some(e) = failed {
        return Err(e);
    }
    Ok((concurrent, cpu, metrics))
}

/// The node's processes whose CPU time the benchmark splits.
struct NodeProcs {
    node_dir: String,
    agent: u32,
    server: u32,
}

/// CPU seconds used so far, by whom.
#[derive(Debug, Default, Clone)]
struct CpuTimes {
    machine_busy: f64,
    containerd: f64,
    /// Reaped children of containerd: the CNI plugins and `containerd-shim-runc-v2 start`.
    containerd_children: f64,
    /// Per shim PID: (own, reaped children = runc).
    shims: HashMap<u32, (f64, f64)>,
    agent: f64,
    server: f64,
}

/// CPU seconds used during one phase.
#[derive(Debug, Default, Clone)]
struct CpuUse {
    wall: Duration,
    machine_busy: f64,
    containerd: f64,
    containerd_children: f64,
    shims: usize,
    shim_own: f64,
    shim_children: f64,
    agent: f64,
    server: f64,
}

/// (own, reaped children) CPU seconds of `pid`.
fn proc_cpu(pid: u32) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after "pid (comm)": state is field 3, utime 14, stime 15, cutime 16, cstime 17.
    let tail = stat.rsplit_once(')').map(|(_, t)| t).unwrap_or("");
    let f: Vec<f64> = tail
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    let get = |i: usize| f.get(i - 3).copied().unwrap_or(0.0) / USER_HZ;
    (get(14) + get(15), get(16) + get(17))
}

impl NodeProcs {
    fn cpu(&self) -> CpuTimes {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let cpu: Vec<f64> = stat
            .lines()
            .next()
            .unwrap_or("")
            .split_whitespace()
            .skip(1)
            .map(|x| x.parse().unwrap_or(0.0))
            .collect();
        // user nice system idle iowait irq softirq steal: busy is all but idle and iowait.
        let total: f64 = cpu.iter().take(8).sum();
        let idle = cpu.get(3).copied().unwrap_or(0.0) + cpu.get(4).copied().unwrap_or(0.0);
        let (containerd, containerd_children) = processes("containerd --config", &self.node_dir)
            .first()
            .map(|p| proc_cpu(p.0))
            .unwrap_or_default();
        CpuTimes {
            machine_busy: (total - idle) / USER_HZ,
            containerd,
            containerd_children,
            shims: processes("containerd-shim", &self.node_dir)
                .iter()
                .map(|p| (p.0, proc_cpu(p.0)))
                .collect(),
            agent: proc_cpu(self.agent).0,
            server: proc_cpu(self.server).0,
        }
    }
}

impl CpuTimes {
    fn since(&self, before: &CpuTimes, wall: Duration) -> CpuUse {
        let (mut shim_own, mut shim_children) = (0.0, 0.0);
        for (pid, (own, children)) in &self.shims {
            let (own0, children0) = before.shims.get(pid).copied().unwrap_or_default();
            shim_own += own - own0;
            shim_children += children - children0;
        }
        CpuUse {
            wall,
            machine_busy: self.machine_busy - before.machine_busy,
            containerd: self.containerd - before.containerd,
            containerd_children: self.containerd_children - before.containerd_children,
            shims: self.shims.len(),
            shim_own,
            shim_children,
            agent: self.agent - before.agent,
            server: self.server - before.server,
        }
    }
}

impl CpuUse {
    fn print(&self, label: &str) {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let ours = self.containerd
            + self.containerd_children
            + self.shim_own
            + self.shim_children
            + self.agent
            + self.server;
        println!(
            "{label}: {:.2} s wall = {:.2} core-s; machine busy {:.2} core-s: containerd {:.2} + its \
             children (CNI plugins, shim start) {:.2}; {} shims {:.2} + their children (runc) {:.2}; \
             agent {:.2}; API server+controllers+scheduler {:.2}; everything else on the machine {:.2}",
            self.wall.as_secs_f64(),
            self.wall.as_secs_f64() * cores,
            self.machine_busy,
            self.containerd,
            self.containerd_children,
            self.shims,
            self.shim_own,
            self.shim_children,
            self.agent,
            self.server,
            (self.machine_busy - ours).max(0.0),
        );
    }
}

/// containerd's Prometheus text: `name{labels}` -> value, for its `_sum` and `_count` series.
fn scrape_metrics() -> HashMap<String, f64> {
    use std::io::{Read, Write};
    let mut out = HashMap::new();
    let Ok(mut conn) = std::net::TcpStream::connect(METRICS_ADDR) else {
        return out;
    };
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let req = format!("GET /v1/metrics HTTP/1.0\r\nHost: {METRICS_ADDR}\r\n\r\n");
    if conn.write_all(req.as_bytes()).is_err() {
        return out;
    }
    let mut body = String::new();
    let _ = conn.read_to_string(&mut body);
    for line in body.lines().filter(|l| !l.starts_with('#')) {
        let Some((name, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let base = name.split('{').next().unwrap_or("");
        if (base.ends_with("_sum") || base.ends_with("_count"))
            && let Ok(v) = value.parse::<f64>()
        {
            out.insert(name.to_string(), v);
        }
    }
    out
}

/// Per series that moved: (name{labels}, operations, mean seconds), the busiest first.
fn metrics_delta(
    before: &HashMap<String, f64>,
    after: &HashMap<String, f64>,
) -> Vec<(String, f64, f64)> {
    let mut rows = Vec::new();
    for (name, count) in after {
        let (base, labels) = match name.split_once('{') {
            Some((b, l)) => (b, format!("{{{l}")),
            None => (name.as_str(), String::new()),
        };
        let Some(series) = base.strip_suffix("_count") else {
            continue;
        };
        let sum_name = format!("{series}_sum{labels}");
        let n = count - before.get(name).copied().unwrap_or(0.0);
        let sum = after.get(&sum_name).copied().unwrap_or(0.0)
            - before.get(&sum_name).copied().unwrap_or(0.0);
        // grpc histograms are off; the CRI timers are what remains.
        if n > 0.0 && series.starts_with("containerd_cri") {
            rows.push((format!("{series}{labels}"), n, sum / n));
        }
    }
    rows.sort_by(|a, b| (b.1 * b.2).total_cmp(&(a.1 * a.2)));
    rows
}

fn print_metrics(rows: &[(String, f64, f64)]) {
    if rows.is_empty() {
        println!("  (no containerd metrics at {METRICS_ADDR})");
    }
    for (name, n, mean) in rows {
        println!("  {name:<70} n={n:<4} mean {:>8.1} ms", mean * 1000.0);
    }
}

fn raw_runc(args: &StartupBenchArgs, dir: &Path) -> anyhow::Result<Vec<Duration>> {
    let bundle = dir.join("runc-bundle");
    let rootfs = bundle.join("rootfs");
    for d in ["bin", "proc", "sys", "dev", "tmp", "etc"] {
        std::fs::create_dir_all(rootfs.join(d))?;
    }
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).context("copying /bin/busybox")?;
    for applet in ["sh", "sleep"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet))?;
    }
    let spec = Command::new("runc")
        .args(["spec", "--bundle"])
        .arg(&bundle)
        .output()
        .context("runc spec")?;
    ensure!(
        spec.status.success(),
        "runc spec: {}",
        String::from_utf8_lossy(&spec.stderr)
    );
    let config_path = bundle.join("config.json");
    let mut config: serde_json::Value = serde_json::from_slice(&std::fs::read(&config_path)?)?;
    config["process"]["terminal"] = false.into();
    config["process"]["args"] = serde_json::json!(["sh", "-c", COMMAND]);
    let state = dir.join("runc-state");
    let mut out = Vec::new();
    for i in 0..args.raw {
        let id = format!("raw-runc-{i}");
        config["linux"]["cgroupsPath"] = format!("{}/runc/{id}", args.cgroup_root).into();
        std::fs::write(&config_path, serde_json::to_vec(&config)?)?;
        let t0 = Instant::now();
        let status = Command::new("runc")
            .arg("--root")
            .arg(&state)
            .args(["run", "-d", "--bundle"])
            .arg(&bundle)
            .arg(&id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .context("runc run")?;
        out.push(t0.elapsed());
        ensure!(status.success(), "runc run -d {id} failed");
        let deleted = Command::new("runc")
            .arg("--root")
            .arg(&state)
            .args(["delete", "-f", &id])
            .output()?;
        ensure!(
            deleted.status.success(),
            "runc delete: {}",
            String::from_utf8_lossy(&deleted.stderr)
        );
    }
    Ok(out)
}
