//! The Skiff node agent (the kubelet, DESIGN.md §6): supervises its own containerd, writes the
//! CNI config for its podCIDR, registers its Node with a heartbeat Lease, and runs the pods bound
//! to it through the Container Runtime Interface.

pub mod admission;
pub mod cgroups;
pub mod cni;
pub mod containerd;
pub mod cri;
pub mod csi_node;
pub mod dns;
pub mod env;
pub mod events;
pub mod images;
pub mod logs;
pub mod node;
pub mod podnet;
pub mod pods;
pub mod probe_net;
pub mod probes;
pub mod pull_secrets;
pub mod service_proxy;
pub mod streaming;
#[cfg(test)]
pub mod testing;
pub mod util;
pub mod volumes;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use tokio_util::sync::CancellationToken;

/// Errors that stop the agent from starting.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("creating {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("API client: {0}")]
    Client(#[source] kube::Error),
    #[error("reading node {name}: {source}")]
    Node { name: String, source: kube::Error },
    #[error(transparent)]
    Containerd(#[from] containerd::Error),
    #[error(transparent)]
    Images(#[from] images::Error),
    #[error(transparent)]
    Cri(#[from] cri::Error),
    #[error(transparent)]
    Register(#[from] node::Error),
    #[error("writing the CNI config: {0}")]
    Cni(std::io::Error),
    #[error("streaming port: {0}")]
    Streaming(#[from] streaming::Error),
}

/// Kubelet's port for logs, exec, attach and port-forward.
pub const DEFAULT_PORT: u16 = 10250;

/// How the agent runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// The data dir; the agent keeps its state under `<data-dir>/agent/`.
    pub data_dir: PathBuf,
    pub node_name: String,
    /// How to reach the API server.
    pub kube: kube::Config,
    /// An existing CRI socket (`unix:///…`); when unset the agent runs its own containerd.
    pub runtime_endpoint: Option<String>,
    /// The podCIDR to register a new Node with; without it the node IPAM controller assigns one.
    pub pod_cidr: Option<String>,
    /// The node's address; by default the source address of the route to the API server.
    pub node_ip: Option<IpAddr>,
    /// The cgroup all pods go under (`<root>/<qos>/pod<uid>`).
    pub cgroup_root: String,
    /// The pids limit of each pod's cgroup; ≤ 0 for none (the kubelet's `--pod-max-pids`).
    pub pod_max_pids: i64,
    /// The static busybox the pause image is built from.
    pub busybox: PathBuf,
    pub cluster_dns: String,
    pub cluster_domain: String,
    /// How pods reach pods on other nodes.
    pub pod_network: podnet::Mode,
    /// The cluster's pod network (every node's podCIDR is inside it).
    pub cluster_cidr: String,
    /// The streaming port (logs, exec, attach, port-forward), on every address.
    pub port: u16,
}

impl Config {
    /// Defaults for everything but the data dir, node name and API access.
    pub fn new(data_dir: PathBuf, node_name: String, kube: kube::Config) -> Config {
        Config {
            data_dir,
            node_name,
            kube,
            runtime_endpoint: None,
            pod_cidr: None,
            node_ip: None,
            cgroup_root: "/kubepods".into(),
            pod_max_pids: -1,
            busybox: PathBuf::from("/bin/busybox"),
            cluster_dns: "10.96.0.10".into(),
            cluster_domain: "cluster.local".into(),
            pod_network: podnet::Mode::HostGw,
            cluster_cidr: "10.244.0.0/16".into(),
            port: DEFAULT_PORT,
        }
    }
}

/// What every pod worker shares.
pub struct Agent {
    pub client: kube::Client,
    pub cri: cri::Cri,
    pub node_name: String,
    pub node_ip: IpAddr,
    /// `<data-dir>/agent/pods`: one log directory per pod.
    pub pods_dir: PathBuf,
    /// Node, QoS and pod cgroups under the configured cgroup root.
    pub cgroups: cgroups::PodCgroups,
    pub cluster_dns: String,
    pub cluster_domain: String,
    /// Whether the runtime is the agent's own containerd: only then are sandboxes of unknown
    /// pods torn down as orphans (a shared runtime may run another kubelet's pods).
    pub owns_runtime: bool,
}

/// How long a new node waits for the node IPAM controller to assign its podCIDR.
const POD_CIDR_WAIT: std::time::Duration = std::time::Duration::from_secs(30);
/// The podCIDR of a node nobody assigned one to (a server without controllers).
const FALLBACK_POD_CIDR: &str = "10.244.0.0/24";

/// Poll our Node for the podCIDR the node IPAM controller assigns; fall back after a while.
async fn wait_for_pod_cidr(nodes: &Api<Node>, name: &str, shutdown: &CancellationToken) -> String {
    let deadline = std::time::Instant::now() + POD_CIDR_WAIT;
    while std::time::Instant::now() < deadline && !shutdown.is_cancelled() {
        if let Ok(Some(cidr)) = nodes
            .get_opt(name)
            .await
            .map(|n| n.and_then(|n| n.spec).and_then(|s| s.pod_cidr))
        {
            return cidr;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    tracing::warn!(
        fallback = FALLBACK_POD_CIDR,
        "no podCIDR was assigned to this node (is the controller manager running?); using the fallback"
    );
    FALLBACK_POD_CIDR.to_string()
}

/// Create the VXLAN device and publish its MAC on our Node for the other nodes' routes.
/// Failures are logged: pods on this node still run, only cross-node traffic is affected.
async fn vxlan_device(nodes: &Api<Node>, name: &str, node_ip: IpAddr, pod_cidr: &str) {
    let IpAddr::V4(local) = node_ip else {
        tracing::error!(%node_ip, "VXLAN needs an IPv4 node address");
        return;
    };
    match podnet::ensure_vxlan(local, pod_cidr).await {
        Ok(mac) => {
            let patch = serde_json::json!({
                "metadata": {"annotations": {podnet::VTEP_MAC_ANNOTATION: mac}}
            });
            if let Err(e) = nodes
                .patch(
                    name,
                    &kube::api::PatchParams::default(),
                    &kube::api::Patch::Merge(&patch),
                )
                .await
            {
                tracing::error!(error = %e, "publishing the VXLAN MAC on the node");
            }
        }
        Err(e) => tracing::error!(error = %e, "creating the VXLAN device"),
    }
}

/// The source address the kernel picks to reach `url`'s host (no packet is sent).
fn route_source(url: &http::Uri) -> Option<IpAddr> {
    use std::net::ToSocketAddrs;
    let host = url.host()?.trim_start_matches('[').trim_end_matches(']');
    let port = url.port_u16().unwrap_or(443);
    let target = (host, port).to_socket_addrs().ok()?.next()?;
    let bind = if target.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let socket = std::net::UdpSocket::bind(bind).ok()?;
    socket.connect(target).ok()?;
    socket.local_addr().ok().map(|a| a.ip())
}

fn mkdir(path: &std::path::Path) -> Result<(), Error> {
    std::fs::create_dir_all(path).map_err(|source| Error::Dir {
        path: path.to_path_buf(),
        source,
    })
}

/// Run the agent until `shutdown`. Pods keep running after it returns; containerd is stopped.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), Error> {
    let agent_dir = config.data_dir.join("agent");
    let images_dir = agent_dir.join("images");
    let pods_dir = agent_dir.join("pods");
    for d in [&agent_dir, &images_dir, &pods_dir] {
        mkdir(d)?;
    }
    let node_ip = config
        .node_ip
        .or_else(|| route_source(&config.kube.cluster_url))
        .unwrap_or(IpAddr::from([127, 0, 0, 1]));
    let client = kube::Client::try_from(config.kube.clone()).map_err(Error::Client)?;
    let nodes: Api<Node> = Api::all(client.clone());
    let existing = nodes
        .get_opt(&config.node_name)
        .await
        .map_err(|source| Error::Node {
            name: config.node_name.clone(),
            source,
        })?;
    // The podCIDR the Node already has wins; else the one asked for on the command line; else
    // the node IPAM controller assigns one after registration.
    let requested_cidr = existing
        .and_then(|n| n.spec)
        .and_then(|s| s.pod_cidr)
        .or_else(|| config.pod_cidr.clone());

    let mut supervisor = None;
    let socket = match &config.runtime_endpoint {
        Some(endpoint) => cri::socket_of(endpoint),
        None => {
            let paths = containerd::Paths::new(&agent_dir);
            // The CNI config follows once the podCIDR is known (containerd picks it up then).
            mkdir(&paths.cni_conf_dir)?;
            mkdir(&paths.dir)?;
            let pause = paths.dir.join("pause.tar");
            std::fs::write(&pause, images::pause_archive(&config.busybox)?).map_err(|source| {
                Error::Dir {
                    path: pause.clone(),
                    source,
                }
            })?;
            let sup = containerd::start(
                paths.clone(),
                images::PAUSE_IMAGE,
                None,
                shutdown.child_token(),
            )
            .await?;
            let mut archives = vec![pause];
            archives.extend(containerd::archives(&images_dir));
            for a in archives {
                let started = std::time::Instant::now();
                match containerd::import(&paths.socket, &a).await {
                    Ok(names) => tracing::info!(
                        archive = %a.display(),
                        images = ?names,
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "images imported"
                    ),
                    Err(e) => tracing::error!(error = %e, "image import failed"),
                }
            }
            supervisor = Some(sup);
            paths.socket
        }
    };
    let cri = cri::Cri::connect(&socket).await?;
    // The port is bound before the Node advertises it.
    let stream_tls = streaming::tls_config(
        config.kube.root_cert.as_deref().unwrap_or_default(),
        vec![
            config.node_name.clone(),
            node_ip.to_string(),
            "localhost".into(),
        ],
    )?;
    let stream_listener = streaming::bind(std::net::SocketAddr::new(
        IpAddr::from([0, 0, 0, 0]),
        config.port,
    ))
    .await?;
    let mut facts = node::facts(&config.node_name, node_ip, &config.data_dir, &cri).await;
    facts.port = config.port;
    let node = node::register(&nodes, &facts, requested_cidr.as_deref()).await?;
    // Allocatable is the capacity (no reservations), so kubepods is capped at the capacity.
    let cgroups = cgroups::PodCgroups::new(&config.cgroup_root, config.pod_max_pids);
    let amount = |name: &str, scale: f64| {
        facts.capacity[name]
            .as_str()
            .and_then(|q| util::quantity(q, scale))
            .unwrap_or(0)
    };
    cgroups.setup_node(amount("cpu", 1000.0), amount("memory", 1.0));
    let pod_cidr = match node.spec.as_ref().and_then(|s| s.pod_cidr.clone()) {
        Some(c) => c,
        None => wait_for_pod_cidr(&nodes, &config.node_name, &shutdown).await,
    };
    if config.runtime_endpoint.is_none() {
        let paths = containerd::Paths::new(&agent_dir);
        cni::write(
            &paths.cni_conf_dir,
            &pod_cidr,
            &agent_dir.join("cni").join("ipam"),
        )
        .map_err(Error::Cni)?;
    }
    tracing::info!(
        node = %config.node_name,
        ip = %node_ip,
        pod_cidr = %pod_cidr,
        runtime = %facts.node_info["containerRuntimeVersion"],
        "node agent ready"
    );
    if config.pod_network == podnet::Mode::Vxlan {
        vxlan_device(&nodes, &config.node_name, node_ip, &pod_cidr).await;
    }
    tokio::spawn(dns::run(
        client.clone(),
        config.node_name.clone(),
        node.metadata.uid.clone().unwrap_or_default(),
        node_ip,
        config.cluster_domain.clone(),
        shutdown.clone(),
    ));
    tokio::spawn(service_proxy::run(
        client.clone(),
        config.node_name.clone(),
        node_ip,
        config.cluster_cidr.clone(),
        shutdown.clone(),
    ));
    tokio::spawn(podnet::run(
        client.clone(),
        config.node_name.clone(),
        config.pod_network,
        shutdown.clone(),
    ));
    tokio::spawn(csi_node::run(
        client.clone(),
        config.node_name.clone(),
        agent_dir.clone(),
        shutdown.clone(),
    ));
    tokio::spawn(node::heartbeat(
        client.clone(),
        facts,
        node.metadata.uid.clone().unwrap_or_default(),
        cri.clone(),
        shutdown.clone(),
    ));
    let agent = Arc::new(Agent {
        client,
        cri,
        node_name: config.node_name.clone(),
        node_ip,
        pods_dir,
        cgroups,
        cluster_dns: config.cluster_dns.clone(),
        cluster_domain: config.cluster_domain.clone(),
        owns_runtime: config.runtime_endpoint.is_none(),
    });
    tokio::spawn(streaming::serve(
        agent.clone(),
        stream_listener,
        Arc::new(stream_tls),
        shutdown.clone(),
    ));
    pods::run(agent, shutdown.clone()).await;
    if let Some(mut s) = supervisor {
        s.stopped().await;
    }
    Ok(())
}

/// The API access of `skiff agent`: a kubeconfig (for now the server's admin kubeconfig), its
/// server URL optionally replaced by `server`. Join tokens (`token_file`) are not handed out by
/// the server yet, so a token file alone is refused with a message saying so.
pub async fn client_config(
    kubeconfig: Option<&std::path::Path>,
    server: Option<&str>,
    token_file: Option<&std::path::Path>,
) -> Result<kube::Config, String> {
    let Some(path) = kubeconfig else {
        return Err(match token_file {
            Some(t) => format!(
                "join tokens are not supported yet (got --token-file {}); pass --kubeconfig \
                 with the server's admin kubeconfig",
                t.display()
            ),
            None => "pass --kubeconfig (the server's admin kubeconfig)".into(),
        });
    };
    let raw = kube::config::Kubeconfig::read_from(path)
        .map_err(|e| format!("reading {}: {e}", path.display()))?;
    let mut config = kube::Config::from_custom_kubeconfig(raw, &Default::default())
        .await
        .map_err(|e| format!("loading {}: {e}", path.display()))?;
    if let Some(url) = server {
        config.cluster_url = url.parse().map_err(|e| format!("--server {url}: {e}"))?;
    }
    Ok(config)
}

/// The default node name: the host name, lowercased.
pub fn default_node_name() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .to_lowercase()
}

/// The node IP of an agent that reaches its API server over loopback (the one inside
/// `skiff server`): the first global address of this host's interfaces, IPv4 before IPv6,
/// skipping the pod bridge and the VXLAN device the agent makes itself (after a restart they
/// carry pod-network addresses).
pub fn host_address() -> Option<IpAddr> {
    let out = std::process::Command::new("ip")
        .args(["-o", "addr", "show", "scope", "global"])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    first_host_address(&String::from_utf8_lossy(&out.stdout))
}

/// Parses `ip -o addr show scope global` (`2: eth0    inet 10.0.0.2/24 brd … scope global eth0`).
fn first_host_address(text: &str) -> Option<IpAddr> {
    let ours = ["cni0", podnet::VXLAN_DEVICE];
    let addrs: Vec<IpAddr> = text
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let ifname = words.nth(1)?.split('@').next()?;
            let _family = words.next()?;
            let addr = words.next()?.split('/').next()?.parse().ok()?;
            (!ours.contains(&ifname)).then_some(addr)
        })
        .filter(|a: &IpAddr| !a.is_loopback())
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
}

#[cfg(test)]
mod host_address_tests {
    use super::*;

    #[test]
    fn the_first_global_ipv4_address_wins_and_the_agents_own_devices_are_skipped() {
        let text = "\
3: cni0    inet 10.244.0.1/24 brd 10.244.0.255 scope global cni0\\       valid_lft forever preferred_lft forever
4: eth0    inet6 fd00::2/64 scope global \\       valid_lft forever preferred_lft forever
4: eth0    inet 10.123.0.2/24 scope global eth0\\       valid_lft forever preferred_lft forever
5: eth1    inet 192.168.1.9/24 scope global eth1\\       valid_lft forever preferred_lft forever
";
        assert_eq!(first_host_address(text), Some([10, 123, 0, 2].into()));
        let v6_only = "4: eth0    inet6 fd00::2/64 scope global \\       valid_lft forever\n";
        assert_eq!(
            first_host_address(v6_only),
            "fd00::2".parse::<IpAddr>().ok()
        );
        assert_eq!(
            first_host_address("3: cni0    inet 10.244.0.1/24 scope global cni0\n"),
            None
        );
    }
}
