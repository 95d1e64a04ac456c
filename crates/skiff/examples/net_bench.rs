//! Network programming latency and the Service proxy's request overhead, on a real local
//! cluster built by `skiff cluster up` (root; it is taken down at the end, also on failure).
//!
//! ```text
//! cargo build -p skiff && sudo target/debug/examples/net_bench [--nodes 3] [--changes 30]
//! ```
//!
//! 1. Network programming latency: from the API call that changes a Service's endpoints to the
//!    rule being in every node's nftables table (one poller per node running
//!    `nsenter --net=/var/run/netns/skiff-<name>-n<i> nft list …` in a loop). Half the changes
//!    create a Service selecting three ready pods (time until `clusterIP . tcp . 80` is in the
//!    `service-ips` map, i.e. with endpoints, on every node: includes the EndpointSlice
//!    controller); half add an endpoint to a selector-less Service by creating an EndpointSlice
//!    (time until `dnat to <ip>:8080` is in every node's table: the proxies alone).
//! 2. Requests/s from a busybox pod (`wget` in a shell loop, measured inside the pod) to the
//!    ClusterIP against the same requests sent straight to the three pod IPs in turn.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, PostParams};

#[derive(Parser)]
struct Args {
    /// Nodes of the cluster.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Endpoint changes to time (half Service creates, half EndpointSlice creates).
    #[arg(long, default_value_t = 30)]
    changes: usize,
    /// Requests per throughput run.
    #[arg(long, default_value_t = 300)]
    requests: usize,
    /// The skiff binary (default: next to this example, `target/<profile>/skiff`).
    #[arg(long)]
    skiff: Option<PathBuf>,
    /// kubectl.
    #[arg(long, default_value = "/usr/lib/google-cloud-sdk/bin/kubectl.1.33")]
    kubectl: PathBuf,
}

const NAME: &str = "nbench";

struct Cluster {
    skiff: PathBuf,
    dir: PathBuf,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let out = Command::new(&self.skiff)
            .args(["cluster", "down", "--name", NAME, "--dir"])
            .arg(&self.dir)
            .output();
        if let Ok(o) = out
            && !o.status.success()
        {
            eprintln!("cluster down: {}", String::from_utf8_lossy(&o.stderr));
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Poll every node's nft output (`what`: arguments after `nft list`) until it contains
/// `needle`; the time from `t0` until the last node had it.
async fn until_on_every_node(
    nodes: usize,
    what: &'static [&'static str],
    needle: String,
    t0: Instant,
) -> anyhow::Result<Duration> {
    let mut handles = Vec::new();
    for i in 1..=nodes {
        let needle = needle.clone();
        handles.push(tokio::task::spawn_blocking(move || {
            let netns = format!("--net=/var/run/netns/skiff-{NAME}-n{i}");
            loop {
                let out = Command::new("nsenter")
                    .arg(&netns)
                    .args(["nft", "list"])
                    .args(what)
                    .output();
                if let Ok(o) = out
                    && String::from_utf8_lossy(&o.stdout).contains(&needle)
                {
                    return Ok(t0.elapsed());
                }
                if t0.elapsed() > Duration::from_secs(60) {
                    bail!("node {i}: {needle:?} not programmed after 60 s");
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }));
    }
    let mut worst = Duration::ZERO;
    for h in handles {
        worst = worst.max(h.await??);
    }
    Ok(worst)
}

fn from_json<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> anyhow::Result<T> {
    Ok(serde_json::from_value(v)?)
}

async fn wait_pods(pods: &Api<Pod>, selector: &str, want: usize) -> anyhow::Result<Vec<String>> {
    let start = Instant::now();
    loop {
        let list = pods
            .list(&kube::api::ListParams::default().labels(selector))
            .await?;
        let ips: Vec<String> = list
            .items
            .iter()
            .filter(|p| {
                p.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            })
            .filter_map(|p| p.status.as_ref()?.pod_ip.clone())
            .collect();
        if ips.len() == want {
            return Ok(ips);
        }
        if start.elapsed() > Duration::from_secs(180) {
            bail!("{want} ready pods {selector} not there after 180 s");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let skiff = match args.skiff {
        Some(s) => s,
        None => std::env::current_exe()?
            .parent()
            .and_then(Path::parent)
            .context("locating target dir")?
            .join("skiff"),
    };
    let scratch = tempfile::tempdir()?;
    let images = scratch.path().join("images");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/busybox-image.sh");
    let out = Command::new(script).arg(&images).output()?;
    if !out.status.success() {
        bail!("busybox-image.sh: {}", String::from_utf8_lossy(&out.stderr));
    }
    let dir = scratch.path().join("cluster");
    let cluster = Cluster {
        skiff: skiff.clone(),
        dir: dir.clone(),
    };
    let t = Instant::now();
    let out = Command::new(&skiff)
        .args(["cluster", "up", "--name", NAME, "--nodes"])
        .arg(args.nodes.to_string())
        .arg("--images")
        .arg(&images)
        .arg("--dir")
        .arg(&dir)
        .output()?;
    if !out.status.success() {
        bail!("cluster up: {}", String::from_utf8_lossy(&out.stderr));
    }
    println!(
        "cluster up ({} nodes): {:.1} s",
        args.nodes,
        t.elapsed().as_secs_f64()
    );
    let kubeconfig = dir.join("server/kubeconfig.yaml");
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(&kubeconfig)?,
        &kube::config::KubeConfigOptions::default(),
    )
    .await?;
    let client = kube::Client::try_from(config)?;
    let ns = "default";
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), ns);
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client.clone(), ns);
    let pp = PostParams::default();

    deployments
        .create(
            &pp,
            &from_json(serde_json::json!({
                "metadata": {"name": "web"},
                "spec": {
                    "replicas": 3,
                    "selector": {"matchLabels": {"app": "web"}},
                    "template": {
                        "metadata": {"labels": {"app": "web"}},
                        "spec": {"containers": [{
                            "name": "web", "image": "busybox:1.36",
                            "command": ["sh", "-c", "mkdir -p /www && echo ok > /www/x && exec httpd -f -p 8080 -h /www"]
                        }]}
                    }
                }
            }))?,
        )
        .await?;
    pods.create(
        &pp,
        &from_json(serde_json::json!({
            "metadata": {"name": "client", "labels": {"app": "client"}},
            "spec": {"containers": [{"name": "c", "image": "busybox:1.36", "command": ["sleep", "3600"]}]}
        }))?,
    )
    .await?;
    let web_ips = wait_pods(&pods, "app=web", 3).await?;
    wait_pods(&pods, "app=client", 1).await?;
    let web = services
        .create(
            &pp,
            &from_json(serde_json::json!({
                "metadata": {"name": "web"},
                "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}
            }))?,
        )
        .await?;
    let web_ip = web
        .spec
        .and_then(|s| s.cluster_ip)
        .context("no clusterIP")?;
    until_on_every_node(
        args.nodes,
        &["map", "ip", "skiff-proxy", "service-ips"],
        format!("{web_ip} . tcp . 80 "),
        Instant::now(),
    )
    .await?;

    // 1. Network programming latency.
    services
        .create(
            &pp,
            &from_json(serde_json::json!({
                "metadata": {"name": "manual"},
                "spec": {"ports": [{"port": 80, "targetPort": 8080}]}
            }))?,
        )
        .await?;
    let mut svc_lat = Vec::new();
    let mut ep_lat = Vec::new();
    for i in 0..args.changes {
        if i % 2 == 0 {
            let body = from_json(serde_json::json!({
                "metadata": {"name": format!("bench-{i}")},
                "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}
            }))?;
            let t0 = Instant::now();
            let s = services.create(&pp, &body).await?;
            let ip = s.spec.and_then(|s| s.cluster_ip).context("no clusterIP")?;
            let d = until_on_every_node(
                args.nodes,
                &["map", "ip", "skiff-proxy", "service-ips"],
                format!("{ip} . tcp . 80 "),
                t0,
            )
            .await?;
            svc_lat.push(d.as_secs_f64() * 1000.0);
        } else {
            let addr = format!("10.244.250.{}", i + 1);
            let body = from_json(serde_json::json!({
                "metadata": {
                    "name": format!("manual-{i}"),
                    "labels": {"kubernetes.io/service-name": "manual",
                               "endpointslice.kubernetes.io/managed-by": "net-bench"}
                },
                "addressType": "IPv4",
                "endpoints": [{"addresses": [addr], "conditions": {"ready": true}}],
                "ports": [{"port": 8080, "protocol": "TCP", "name": ""}]
            }))?;
            let t0 = Instant::now();
            slices.create(&pp, &body).await?;
            let d = until_on_every_node(
                args.nodes,
                &["table", "ip", "skiff-proxy"],
                format!("dnat to {addr}:8080"),
                t0,
            )
            .await?;
            ep_lat.push(d.as_secs_f64() * 1000.0);
        }
    }
    let mut all: Vec<f64> = svc_lat.iter().chain(&ep_lat).copied().collect();
    for v in [&mut svc_lat, &mut ep_lat, &mut all] {
        v.sort_by(f64::total_cmp);
    }
    println!(
        "network programming latency (API call -> rule on all {} nodes), ms:",
        args.nodes
    );
    for (what, v) in [
        ("service create", &svc_lat),
        ("endpointslice create", &ep_lat),
        ("all", &all),
    ] {
        println!(
            "  {what:<22} n={:<3} p50={:>6.0} p99={:>6.0} max={:>6.0}",
            v.len(),
            percentile(v, 0.5),
            percentile(v, 0.99),
            percentile(v, 1.0)
        );
    }

    // 2. ClusterIP against direct pod IPs, from the client pod.
    let n = args.requests;
    let loop_over = |targets: &[String]| {
        let urls: Vec<String> = targets.iter().map(|t| format!("http://{t}/x")).collect();
        format!(
            "s=$(cut -d' ' -f1 /proc/uptime); i=0; while [ $i -lt {n} ]; do for u in {}; do wget -qO- $u >/dev/null || echo FAIL >&2; i=$((i+1)); done; done; e=$(cut -d' ' -f1 /proc/uptime); echo $s $e $i",
            urls.join(" ")
        )
    };
    let direct: Vec<String> = web_ips.iter().map(|ip| format!("{ip}:8080")).collect();
    let cluster_ip = vec![web_ip.clone()];
    let mut rates: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for _ in 0..3 {
        for (k, targets) in [&cluster_ip, &direct].into_iter().enumerate() {
            let out = Command::new(&args.kubectl)
                .arg("--kubeconfig")
                .arg(&kubeconfig)
                .args(["exec", "client", "--", "sh", "-c", &loop_over(targets)])
                .output()?;
            let text = String::from_utf8_lossy(&out.stdout);
            let w: Vec<f64> = text
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            if w.len() != 3 || !out.stderr.is_empty() {
                bail!(
                    "throughput run: {text} {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            rates[k].push(w[2] / (w[1] - w[0]));
        }
    }
    for r in &mut rates {
        r.sort_by(f64::total_cmp);
    }
    println!(
        "requests/s from a pod (busybox wget loop, {n} requests, median of 3): clusterIP {:.0}  direct pod IPs {:.0}  (runs: {:?} / {:?})",
        rates[0][1], rates[1][1], rates[0], rates[1]
    );
    drop(cluster);
    Ok(())
}
