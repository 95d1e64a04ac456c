//! The `skiff` binary: one executable for every role (DESIGN.md §2).

mod bench;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

mod cluster;
mod join;
mod leader;
mod server_agent;

/// Skiff: a Kubernetes-compatible container orchestrator in one binary.
#[derive(Debug, Parser)]
#[command(name = "skiff", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the control plane (API server on an embedded store) and write an admin kubeconfig.
    Server(ServerArgs),
    /// Run the scheduler alone against an API server.
    Scheduler(SchedulerArgs),
    /// Register simulated (hollow) nodes that run pods instantly, for scale tests.
    Hollow(HollowArgs),
    /// Run a node agent: register this host as a Node and run the pods bound to it.
    Agent(AgentArgs),
    /// Report the health and size of the server's datastore.
    Datastore(DatastoreArgs),
    /// A local multi-node cluster: one server and agents in network namespaces (as root).
    Cluster(ClusterArgs),
    /// Benchmarks (`skiff bench scheduler …`).
    #[command(subcommand)]
    Bench(bench::Bench),
}

#[derive(Debug, clap::Args)]
struct ClusterArgs {
    #[command(subcommand)]
    command: ClusterCommand,
}

#[derive(Debug, clap::Args)]
struct ClusterTarget {
    /// The cluster's name (1-12 characters of a-z, 0-9, '-').
    #[arg(long)]
    name: String,
    /// Its state directory (default: /var/lib/skiff/clusters/<name>).
    #[arg(long)]
    dir: Option<PathBuf>,
}

impl ClusterTarget {
    fn dir(&self) -> PathBuf {
        self.dir
            .clone()
            .unwrap_or_else(|| cluster::default_dir(&self.name))
    }
}

#[derive(Debug, Subcommand)]
enum ClusterCommand {
    /// Build the cluster and print its kubeconfig path.
    Up {
        #[command(flatten)]
        target: ClusterTarget,
        /// How many nodes (agents, each with its own containerd and network namespace).
        #[arg(long, default_value_t = 1)]
        nodes: usize,
        /// How nodes reach each other's pods: `host-gw` (routes) or `vxlan`.
        #[arg(long, default_value = "host-gw")]
        pod_network: String,
        /// A directory of image archives (`*.tar`) every node imports at start.
        #[arg(long)]
        images: Option<PathBuf>,
        /// A flag passed to `skiff server` (repeatable), e.g. `--server-arg=--node-monitor-grace-period=10s`.
        #[arg(long = "server-arg", allow_hyphen_values = true)]
        server_args: Vec<String>,
    },
    /// Remove every namespace, link, cgroup, mount, process and file the cluster created.
    Down {
        #[command(flatten)]
        target: ClusterTarget,
    },
    /// Stop a node's agent (its pods keep running, as when a kubelet dies).
    StopNode {
        #[command(flatten)]
        target: ClusterTarget,
        /// The node (`<name>-node-<i>`).
        node: String,
    },
    /// Start a stopped node's agent again.
    StartNode {
        #[command(flatten)]
        target: ClusterTarget,
        /// The node (`<name>-node-<i>`).
        node: String,
    },
}

#[derive(Debug, clap::Args)]
struct DatastoreArgs {
    #[command(subcommand)]
    command: DatastoreCommand,
}

#[derive(Debug, Subcommand)]
enum DatastoreCommand {
    /// Backend, revision, compaction, size, keys and each etcd member's health, as the API
    /// server sees them (`GET /skiff/datastore`).
    Status {
        /// Kubeconfig of the API server.
        #[arg(long, env = "KUBECONFIG")]
        kubeconfig: PathBuf,
        /// `text` or `json`.
        #[arg(long, short = 'o', default_value = "text")]
        output: String,
    },
}

/// The node agent's flags, the same on `skiff agent` and on `skiff server` (for its own host).
#[derive(Debug, Clone, clap::Args)]
pub struct NodeFlags {
    /// Node name (default: the host name).
    #[arg(long)]
    pub node_name: Option<String>,
    /// The node's address (default: `skiff agent` takes the source address of the route to the
    /// API server; `skiff server` its bind address if that is a specific non-loopback one, else
    /// the host's first non-loopback address).
    #[arg(long)]
    pub node_ip: Option<IpAddr>,
    /// An existing CRI socket (`unix:///...`); without it the agent runs its own containerd
    /// under `<data-dir>/agent`.
    #[arg(long)]
    pub container_runtime_endpoint: Option<String>,
    /// Parent cgroup of every pod.
    #[arg(long, default_value = "/kubepods")]
    pub cgroup_root: String,
    /// podCIDR to register a new Node with (default: the node IPAM controller assigns one).
    #[arg(long)]
    pub pod_cidr: Option<String>,
    /// How pods reach pods on other nodes: `host-gw` (routes via node addresses, nodes on one
    /// L2 segment) or `vxlan` (an overlay over the node addresses).
    #[arg(long, default_value = "host-gw")]
    pub pod_network: skiff_agent::podnet::Mode,
    /// Pid limit of each pod's cgroup (-1: unlimited), as the kubelet's `--pod-max-pids`.
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub pod_max_pids: i64,
    /// Port of the node's streaming server (logs, exec, attach, port-forward), as the kubelet's
    /// `--port`.
    #[arg(long, default_value_t = skiff_agent::DEFAULT_PORT)]
    pub kubelet_port: u16,
}

impl NodeFlags {
    /// The node's name: `--node-name` or the host name.
    pub fn name(&self) -> String {
        self.node_name
            .clone()
            .unwrap_or_else(skiff_agent::default_node_name)
    }

    /// Writes these flags into the agent's config (`node_ip` only when given).
    pub fn apply(&self, config: &mut skiff_agent::Config) {
        config.runtime_endpoint = self.container_runtime_endpoint.clone();
        if self.node_ip.is_some() {
            config.node_ip = self.node_ip;
        }
        config.cgroup_root = self.cgroup_root.clone();
        config.pod_cidr = self.pod_cidr.clone();
        config.pod_network = self.pod_network;
        config.pod_max_pids = self.pod_max_pids;
        config.port = self.kubelet_port;
    }
}

#[derive(Debug, clap::Args)]
struct AgentArgs {
    /// Directory for the agent's state (`agent/`: containerd, CNI, pod logs, `images/*.tar`).
    #[arg(long, env = "SKIFF_DATA_DIR", default_value = "/var/lib/skiff")]
    data_dir: PathBuf,
    /// API server URL (default: the kubeconfig's).
    #[arg(long)]
    server: Option<String>,
    /// Join token file (the server's `<data-dir>/server/node-token`); with --server, the agent
    /// trades it for node credentials kept in `<data-dir>/agent/kubeconfig.yaml`.
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Join token itself (instead of --token-file).
    #[arg(long, env = "SKIFF_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Kubeconfig to reach the API server with, instead of joining with a token.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    #[command(flatten)]
    node: NodeFlags,
    /// The cluster's pod network (every node's podCIDR is inside it); the server's
    /// `--cluster-cidr`.
    #[arg(long, default_value = "10.244.0.0/16")]
    cluster_cidr: String,
    /// Log filter, as `RUST_LOG`.
    #[arg(long, env = "SKIFF_LOG", default_value = "info")]
    log: String,
}

/// Lease-based leader election of the scheduler and the controllers (upstream's flags).
#[derive(Debug, clap::Args)]
struct LeaderElectArgs {
    /// Run the scheduler and controllers only while holding their Lease in `kube-system`.
    /// `skiff server` elects by default only with `--datastore-endpoint` (an embedded store has
    /// exactly one server); `skiff scheduler` elects by default.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    leader_elect: Option<bool>,
    /// How long other candidates wait after the last renewal they saw before taking over.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    leader_elect_lease_duration: Duration,
    /// How long the leader keeps trying to renew before it stops leading.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    leader_elect_renew_deadline: Duration,
    /// How often candidates try to acquire and the leader renews.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    leader_elect_retry_period: Duration,
}

impl LeaderElectArgs {
    fn timing(&self) -> anyhow::Result<leader::Timing> {
        let t = leader::Timing {
            lease_duration: self.leader_elect_lease_duration,
            renew_deadline: self.leader_elect_renew_deadline,
            retry_period: self.leader_elect_retry_period,
        };
        anyhow::ensure!(
            t.lease_duration > t.renew_deadline && t.renew_deadline > t.retry_period,
            "--leader-elect-lease-duration must exceed --leader-elect-renew-deadline, which must \
             exceed --leader-elect-retry-period"
        );
        Ok(t)
    }
}

/// A duration as upstream's flags write it: `15s`, `500ms`, `2m`, or plain seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let (number, unit) = match s.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 15s, 500ms or 2m"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (use ms, s, m or h)")),
    };
    Ok(Duration::from_secs_f64(secs))
}

#[derive(Debug, clap::Args)]
struct SchedulerArgs {
    /// Kubeconfig of the API server.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: PathBuf,
    #[command(flatten)]
    election: LeaderElectArgs,
    /// Log filter, as `RUST_LOG`.
    #[arg(long, env = "SKIFF_LOG", default_value = "info")]
    log: String,
}

#[derive(Debug, clap::Args)]
struct HollowArgs {
    /// Kubeconfig of the API server.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: PathBuf,
    /// How many nodes to simulate.
    #[arg(long, default_value_t = 1)]
    nodes: usize,
    /// Node names are `<prefix><index>`.
    #[arg(long, default_value = "hollow-node-")]
    name_prefix: String,
    /// CPU capacity of each node (a quantity).
    #[arg(long, default_value = "4")]
    cpu: String,
    /// Memory capacity of each node (a quantity).
    #[arg(long, default_value = "16Gi")]
    memory: String,
    /// Pod capacity of each node.
    #[arg(long, default_value_t = 110)]
    pods: u32,
    /// Extra node labels: `k=v,k2=v2`.
    #[arg(long, default_value = "")]
    labels: String,
    /// Node taints: `k=v:NoSchedule,k2:PreferNoSchedule`.
    #[arg(long, default_value = "")]
    taints: String,
    /// Milliseconds before a bound pod is reported Running.
    #[arg(long, default_value_t = 0)]
    start_delay_ms: u64,
    /// Log filter, as `RUST_LOG`.
    #[arg(long, env = "SKIFF_LOG", default_value = "info")]
    log: String,
}

#[derive(Debug, clap::Args)]
struct ServerArgs {
    /// Directory for all state: the store under `server/`, certificates under `server/tls/`,
    /// and the admin kubeconfig at `kubeconfig.yaml`.
    #[arg(long, env = "SKIFF_DATA_DIR", default_value = "/var/lib/skiff")]
    data_dir: PathBuf,
    /// Address the API server listens on.
    #[arg(long, default_value = "127.0.0.1")]
    bind_address: IpAddr,
    /// HTTPS port of the API server (0 picks a free port).
    #[arg(long, default_value_t = 6443)]
    https_listen_port: u16,
    /// Do not run a node agent on this host (control plane only).
    #[arg(long)]
    disable_agent: bool,
    #[command(flatten)]
    node: NodeFlags,
    /// Do not run the scheduler in this server (as k3s's `--disable-scheduler`).
    #[arg(long)]
    disable_scheduler: bool,
    /// Do not run the controllers in this server (as k3s's `--disable-controller-manager`).
    #[arg(long)]
    disable_controller_manager: bool,
    /// Extra host names or IP addresses for the API server's certificate (repeatable).
    #[arg(long = "tls-san")]
    tls_sans: Vec<String>,
    /// Where to write the admin kubeconfig (default: `<data-dir>/kubeconfig.yaml`).
    #[arg(long)]
    write_kubeconfig: Option<PathBuf>,
    /// Seconds between compactions of the store's history (resourceVersions older than one to
    /// two intervals answer 410 Gone).
    #[arg(long, default_value_t = 300)]
    compaction_interval: u64,
    /// Keep the state in etcd at these comma-separated client URLs instead of the embedded store.
    #[arg(long, env = "SKIFF_DATASTORE_ENDPOINT", value_delimiter = ',')]
    datastore_endpoint: Vec<String>,
    /// CA certificate (PEM) of the etcd servers; use with `https://` endpoints.
    #[arg(long)]
    datastore_cafile: Option<PathBuf>,
    /// Client certificate (PEM) for etcd.
    #[arg(long)]
    datastore_certfile: Option<PathBuf>,
    /// Key of the etcd client certificate (PEM).
    #[arg(long)]
    datastore_keyfile: Option<PathBuf>,
    /// Pod CIDR of the cluster; each node gets a block of it as `spec.podCIDR`.
    #[arg(long, default_value = "10.244.0.0/16")]
    cluster_cidr: String,
    /// Prefix length of each node's pod CIDR block.
    #[arg(long, default_value_t = 24)]
    node_cidr_mask_size: u8,
    /// Heartbeat silence after which a node is marked Unknown (Go duration: `40s`, `1m30s`).
    #[arg(long, default_value = "40s", value_parser = parse_go_duration)]
    node_monitor_grace_period: std::time::Duration,
    /// Nodes per second that get NoExecute taints in a healthy zone.
    #[arg(long, default_value_t = 0.1)]
    node_eviction_rate: f64,
    /// Nodes per second in a partially disrupted zone larger than the large-cluster threshold.
    #[arg(long, default_value_t = 0.01)]
    secondary_node_eviction_rate: f64,
    /// Share of not-Ready nodes (more than 2) at which a zone is partially disrupted.
    #[arg(long, default_value_t = 0.55)]
    unhealthy_zone_threshold: f64,
    /// Zones with at most this many nodes stop tainting when partially disrupted.
    #[arg(long, default_value_t = 50)]
    large_cluster_size_threshold: usize,
    #[command(flatten)]
    election: LeaderElectArgs,
    /// Log filter, as `RUST_LOG` (e.g. `info`, `skiff_apiserver=debug`).
    #[arg(long, env = "SKIFF_LOG", default_value = "info")]
    log: String,
}

/// A Go-style duration (`300ms`, `40s`, `2m`, `1h30m`), as kube-controller-manager's flags take.
fn parse_go_duration(s: &str) -> Result<std::time::Duration, String> {
    let mut total = 0f64;
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err("empty duration".into());
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("missing unit in duration {s:?}"))?;
        let n: f64 = rest[..num_len]
            .parse()
            .map_err(|_| format!("invalid duration {s:?}"))?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            u => return Err(format!("unknown unit {u:?} in duration {s:?}")),
        };
        total += n * scale;
        rest = &rest[unit_len..];
    }
    Ok(std::time::Duration::from_secs_f64(total))
}

/// mimalloc instead of glibc malloc: malloc/free were about a fifth of the samples of a
/// scheduler benchmark run.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Server(args) => {
            tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(&args.log))
                .with_writer(std::io::stderr)
                .init();
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            runtime.block_on(server(args))
        }
        Command::Scheduler(args) => {
            let runtime = runtime_with_logs(&args.log)?;
            runtime.block_on(async move {
                let timing = args.election.timing()?;
                let client = skiff_scheduler::client_from_kubeconfig(&args.kubeconfig).await?;
                let shutdown = CancellationToken::new();
                let stop = shutdown.clone();
                tokio::spawn(async move {
                    wait_for_signal().await;
                    stop.cancel();
                });
                if args.election.leader_elect.unwrap_or(true) {
                    let config = leader::Config::new("kube-scheduler", timing);
                    leader::run(client.clone(), config, shutdown, scheduler_work(client)).await;
                } else {
                    skiff_scheduler::run(client, shutdown).await?;
                }
                Ok(())
            })
        }
        Command::Hollow(args) => {
            let runtime = runtime_with_logs(&args.log)?;
            runtime.block_on(async move {
                let cfg = skiff_scheduler::hollow::HollowConfig {
                    nodes: args.nodes,
                    name_prefix: args.name_prefix,
                    cpu: args.cpu,
                    memory: args.memory,
                    pods: args.pods,
                    labels: skiff_scheduler::hollow::parse_labels(&args.labels)?,
                    taints: skiff_scheduler::hollow::parse_taints(&args.taints)?,
                    start_delay: Duration::from_millis(args.start_delay_ms),
                };
                let client = skiff_scheduler::client_from_kubeconfig(&args.kubeconfig).await?;
                let shutdown = CancellationToken::new();
                let stop = shutdown.clone();
                tokio::spawn(async move {
                    wait_for_signal().await;
                    stop.cancel();
                });
                skiff_scheduler::hollow::run(client, cfg, shutdown).await?;
                Ok(())
            })
        }
        Command::Agent(args) => runtime_with_logs(&args.log)?.block_on(agent(args)),
        Command::Cluster(ClusterArgs { command }) => {
            tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
                .with_writer(std::io::stderr)
                .init();
            match command {
                ClusterCommand::Up {
                    target,
                    nodes,
                    pod_network,
                    images,
                    server_args,
                } => {
                    let state = cluster::up(&cluster::UpOptions {
                        name: target.name.clone(),
                        nodes,
                        pod_network,
                        dir: target.dir(),
                        images,
                        server_args,
                    })?;
                    println!(
                        "skiff cluster {} is up: {} node(s), server {}\nkubeconfig={}",
                        state.name,
                        state.nodes.len(),
                        state.server_url,
                        state.kubeconfig.display()
                    );
                    Ok(())
                }
                ClusterCommand::Down { target } => cluster::down(&target.dir()),
                ClusterCommand::StopNode { target, node } => {
                    cluster::stop_node(&target.dir(), &node)
                }
                ClusterCommand::StartNode { target, node } => {
                    cluster::start_node(&target.dir(), &node)
                }
            }
        }
        Command::Datastore(DatastoreArgs {
            command: DatastoreCommand::Status { kubeconfig, output },
        }) => runtime_with_logs("warn")?.block_on(datastore_status(&kubeconfig, &output)),
        Command::Bench(b) => runtime_with_logs(b.log())?.block_on(bench::run(b)),
    }
}

async fn agent(args: AgentArgs) -> anyhow::Result<()> {
    let name = args.node.name();
    let token = match (&args.token, &args.token_file) {
        (Some(t), _) => Some(t.clone()),
        (None, Some(f)) => Some(
            std::fs::read_to_string(f)
                .with_context(|| format!("reading the join token {}", f.display()))?,
        ),
        (None, None) => None,
    };
    let kubeconfig = match (token, &args.kubeconfig) {
        (Some(token), None) => {
            let server = args
                .server
                .as_deref()
                .context("joining with a token needs --server https://<server>:6443")?;
            Some(join::node_kubeconfig(server, &token, &name, &args.data_dir).await?)
        }
        (_, k) => k.clone(),
    };
    let kube = skiff_agent::client_config(kubeconfig.as_deref(), args.server.as_deref(), None)
        .await
        .map_err(anyhow::Error::msg)?;
    let mut config = skiff_agent::Config::new(args.data_dir, name, kube);
    args.node.apply(&mut config);
    config.cluster_cidr = args.cluster_cidr;
    let shutdown = CancellationToken::new();
    let mut run = tokio::spawn(skiff_agent::run(config, shutdown.clone()));
    tokio::select! {
        r = &mut run => return r.context("agent task")?.context("node agent"),
        _ = wait_for_signal() => {}
    }
    tracing::info!("agent shutting down; pods keep running");
    shutdown.cancel();
    // containerd gets its SIGTERM (and SIGKILL after 10 s) before the process exits.
    match tokio::time::timeout(Duration::from_secs(15), run).await {
        Ok(r) => r.context("agent task")?.context("node agent"),
        Err(_) => {
            tracing::warn!("agent did not stop within 15s");
            Ok(())
        }
    }
}

/// A data dir that ran on the embedded store moves to etcd: its state is copied into an empty
/// etcd once, and the file is renamed so it is not mistaken for current state later.
async fn migrate_embedded_state(
    server_dir: &std::path::Path,
    etcd: &skiff_store::EtcdStore,
) -> anyhow::Result<()> {
    let file = server_dir.join("state.redb");
    if !file.exists() {
        return Ok(());
    }
    let embedded = skiff_store::RedbStore::open(&file)
        .with_context(|| format!("opening {} to migrate it", file.display()))?;
    match skiff_store::copy_all(&embedded, etcd).await {
        Ok(keys) => {
            embedded
                .close()
                .await
                .context("closing the embedded store")?;
            let moved = server_dir.join("state.redb.migrated");
            std::fs::rename(&file, &moved)
                .with_context(|| format!("renaming {} after migrating it", file.display()))?;
            tracing::info!(keys, from = %moved.display(), to = %etcd.endpoints(), "migrated the embedded store into etcd");
            Ok(())
        }
        Err(skiff_store::Error::AlreadyExists { key }) => {
            tracing::warn!(
                file = %file.display(),
                example_key = %key,
                "etcd already holds data, so the embedded store was not migrated into it and is not used"
            );
            Ok(())
        }
        Err(e) => Err(e).context("migrating the embedded store into etcd"),
    }
}

/// `skiff datastore status`: ask the API server and print what it says.
async fn datastore_status(kubeconfig: &std::path::Path, output: &str) -> anyhow::Result<()> {
    let client = skiff_scheduler::client_from_kubeconfig(kubeconfig).await?;
    let request = http::Request::get("/skiff/datastore")
        .body(Vec::new())
        .context("building the request")?;
    let body = client
        .request_text(request)
        .await
        .context("asking the API server for /skiff/datastore")?;
    let status: serde_json::Value =
        serde_json::from_str(&body).context("the API server's answer is not JSON")?;
    if output == "json" {
        println!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(());
    }
    anyhow::ensure!(
        output == "text",
        "--output must be text or json, not {output:?}"
    );
    let mib = |v: &serde_json::Value| {
        v.as_u64()
            .map(|b| format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0)))
            .unwrap_or_else(|| "-".into())
    };
    println!("backend:    {}", status["backend"].as_str().unwrap_or("?"));
    println!(
        "revision:   {} (compacted up to {})",
        status["revision"], status["compactedRevision"]
    );
    println!("size:       {}", mib(&status["sizeBytes"]));
    println!("keys:       {}", status["keys"]);
    let members = status["members"].as_array().cloned().unwrap_or_default();
    if !members.is_empty() {
        println!("members:");
    }
    for m in members {
        let state = if m["healthy"].as_bool() == Some(true) {
            if m["leader"].as_bool() == Some(true) {
                "healthy, leader"
            } else {
                "healthy"
            }
        } else {
            "UNHEALTHY"
        };
        println!(
            "  {}  {state}  etcd {}  {}{}",
            m["endpoint"].as_str().unwrap_or("?"),
            m["version"].as_str().unwrap_or("?"),
            mib(&m["sizeBytes"]),
            m["error"]
                .as_str()
                .map(|e| format!("  ({e})"))
                .unwrap_or_default(),
        );
    }
    Ok(())
}

/// Logs to stderr and a multi-threaded runtime, for the scheduler, hollow and agent subcommands.
fn runtime_with_logs(log: &str) -> anyhow::Result<tokio::runtime::Runtime> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(log))
        .with_writer(std::io::stderr)
        .init();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// The scheduler loop as leader work: runs until its token is cancelled.
fn scheduler_work(client: kube::Client) -> leader::Work {
    Box::new(move |stop| {
        let client = client.clone();
        Box::pin(async move {
            if let Err(e) = skiff_scheduler::run(client, stop).await {
                tracing::error!(error = %e, "scheduler stopped");
            }
        })
    })
}

async fn server(args: ServerArgs) -> anyhow::Result<()> {
    let timing = args.election.timing()?;
    let server_dir = args.data_dir.join("server");
    std::fs::create_dir_all(&server_dir)
        .with_context(|| format!("creating data directory {}", server_dir.display()))?;
    let store: Arc<dyn skiff_store::Store> = if args.datastore_endpoint.is_empty() {
        Arc::new(
            skiff_store::RedbStore::open(server_dir.join("state.redb"))
                .with_context(|| format!("opening the store in {}", server_dir.display()))?,
        )
    } else {
        let mut options = skiff_store::EtcdOptions::new(args.datastore_endpoint.clone());
        options.ca_file = args.datastore_cafile.clone();
        options.cert_file = args.datastore_certfile.clone();
        options.key_file = args.datastore_keyfile.clone();
        let etcd = skiff_store::EtcdStore::connect(options)
            .await
            .context("connecting to the datastore")?;
        migrate_embedded_state(&server_dir, &etcd).await?;
        Arc::new(etcd)
    };
    let shutdown = CancellationToken::new();
    let tasks = TaskTracker::new();
    let kubeconfig = args
        .write_kubeconfig
        .clone()
        .unwrap_or_else(|| args.data_dir.join("kubeconfig.yaml"));
    let config = skiff_apiserver::Config {
        data_dir: server_dir,
        bind_address: args.bind_address,
        port: args.https_listen_port,
        kubeconfig_path: kubeconfig.clone(),
        tls_sans: args.tls_sans.clone(),
        compaction_interval: Duration::from_secs(args.compaction_interval.max(1)),
    };
    let server = skiff_apiserver::start(config, store, shutdown.clone(), &tasks)
        .await
        .context("starting the API server")?;
    // With several servers on one datastore, the scheduler and the controllers run in the one
    // holding their Lease; an embedded store has only this server, so it need not elect.
    let elect = args
        .election
        .leader_elect
        .unwrap_or(!args.datastore_endpoint.is_empty());
    // The scheduler (DESIGN.md §5) talks to the API server like any client, through the
    // admin kubeconfig just written.
    if !args.disable_scheduler {
        let client = skiff_scheduler::client_from_kubeconfig(&kubeconfig)
            .await
            .context("building the scheduler's client")?;
        let work = scheduler_work(client.clone());
        if elect {
            let config = leader::Config::new("kube-scheduler", timing);
            tasks.spawn(leader::run(client, config, shutdown.clone(), work));
        } else {
            tasks.spawn(work(shutdown.clone()));
        }
    }
    // The controllers are API clients of the server that just started (DESIGN.md §1).
    if !args.disable_controller_manager {
        let client = skiff_scheduler::client_from_kubeconfig(&kubeconfig)
            .await
            .context("building the controllers' client")?;
        let options = skiff_controllers::Options {
            cluster_cidr: args.cluster_cidr.clone(),
            node_cidr_mask_size: args.node_cidr_mask_size,
            node_monitor_grace_period: args.node_monitor_grace_period,
            eviction_rates: skiff_controllers::nodelifecycle::zones::EvictionRates {
                node_eviction_rate: args.node_eviction_rate,
                secondary_node_eviction_rate: args.secondary_node_eviction_rate,
                unhealthy_zone_threshold: args.unhealthy_zone_threshold,
                large_cluster_size_threshold: args.large_cluster_size_threshold,
            },
            ..skiff_controllers::Options::default()
        };
        let c = client.clone();
        let work: leader::Work = Box::new(move |stop| {
            Box::pin(skiff_controllers::run_with(
                c.clone(),
                options.clone(),
                stop,
            ))
        });
        if elect {
            let config = leader::Config::new("kube-controller-manager", timing);
            tasks.spawn(leader::run(client, config, shutdown.clone(), work));
        } else {
            tasks.spawn(work(shutdown.clone()));
        }
    }
    // Storage (docs/storage.md): the built-in CSI driver and its provisioner.
    if !args.disable_controller_manager {
        let client = skiff_scheduler::client_from_kubeconfig(&kubeconfig)
            .await
            .context("building the provisioner's client")?;
        let dir = args.data_dir.join("server");
        tasks.spawn(skiff_controllers::volume::run_local_storage(
            client,
            dir,
            shutdown.clone(),
        ));
    }
    // This host's node agent (k3s's default); it stops with the server, its pods keep running.
    let agent_shutdown = shutdown.child_token();
    let mut agent = if args.disable_agent {
        None
    } else {
        let options = server_agent::Options {
            data_dir: args.data_dir.clone(),
            node: args.node.clone(),
            cluster_cidr: args.cluster_cidr.clone(),
            bind_address: args.bind_address,
        };
        Some(server_agent::start(&server, options, agent_shutdown.clone()).await?)
    };
    // One line on stdout that scripts can wait for.
    println!(
        "skiff server ready: https://{} kubeconfig={}",
        server.local_addr,
        kubeconfig.display()
    );
    let failed = match agent.as_mut() {
        Some(run) => tokio::select! {
            r = run => {
                agent = None;
                Some(r.context("agent task").and_then(|r| r))
            }
            _ = wait_for_signal() => None,
        },
        None => {
            wait_for_signal().await;
            None
        }
    };
    tracing::info!("shutting down");
    // The agent stops first, while the API server still takes its last writes; containerd gets
    // SIGTERM (SIGKILL after 10 s), shims and so containers keep running.
    agent_shutdown.cancel();
    if let Some(run) = agent {
        match tokio::time::timeout(Duration::from_secs(15), run).await {
            Ok(Ok(Err(e))) => tracing::error!(error = format!("{e:#}"), "node agent"),
            Ok(_) => {}
            Err(_) => tracing::warn!("the node agent did not stop within 15s"),
        }
    }
    shutdown.cancel();
    tasks.close();
    if tokio::time::timeout(Duration::from_secs(10), tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!("some tasks did not stop within 10s");
    }
    match failed {
        Some(Err(e)) => Err(e),
        Some(Ok(())) => anyhow::bail!("the node agent stopped by itself"),
        None => Ok(()),
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
