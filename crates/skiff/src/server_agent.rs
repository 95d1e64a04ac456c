//! The node agent `skiff server` runs for its own host (as k3s does): it joins its own API
//! server with `system:node:<name>` credentials minted from the cluster CA in process, keeps its
//! state under `<data-dir>/agent`, and stops with the server (pods keep running).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::Context;
use base64::Engine;
use tokio_util::sync::CancellationToken;

/// What the server's flags say about its agent.
pub struct Options {
    /// The server's data dir; the agent's state goes to `<data-dir>/agent`.
    pub data_dir: PathBuf,
    /// The node agent flags the server was given.
    pub node: crate::NodeFlags,
    /// The cluster's pod network.
    pub cluster_cidr: String,
    /// The address the API server listens on.
    pub bind_address: IpAddr,
}

/// The node IP the server's agent registers: `--node-ip`, a specific bind address, or the
/// host's first non-loopback address (the agent's own default, the source address towards the
/// API server, would be loopback here).
fn node_ip(options: &Options) -> IpAddr {
    if let Some(ip) = options.node.node_ip {
        return ip;
    }
    let bind = options.bind_address;
    if !bind.is_unspecified() && !bind.is_loopback() {
        return bind;
    }
    skiff_agent::host_address().unwrap_or_else(|| {
        tracing::warn!("no non-loopback address on this host; the node registers 127.0.0.1");
        IpAddr::from([127, 0, 0, 1])
    })
}

/// Write the node's kubeconfig (the same file `skiff agent --token-file` keeps) and load it.
async fn node_client_config(
    server: &skiff_apiserver::Server,
    options: &Options,
    node: &str,
) -> anyhow::Result<kube::Config> {
    let (cert, key) = server
        .app
        .join
        .node_credentials(node)
        .with_context(|| format!("minting credentials for node {node}"))?;
    // The API server's certificate always covers 127.0.0.1 and ::1; a specific bind address is
    // covered because it is the one the server listens on.
    let host = if options.bind_address.is_unspecified() {
        if options.bind_address.is_ipv4() {
            IpAddr::from([127, 0, 0, 1])
        } else {
            IpAddr::from(std::net::Ipv6Addr::LOCALHOST)
        }
    } else {
        options.bind_address
    };
    let url = format!(
        "https://{}",
        SocketAddr::new(host, server.local_addr.port())
    );
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    let kubeconfig = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    certificate-authority-data: {}\n    server: {url}\n  name: skiff\ncontexts:\n- context:\n    cluster: skiff\n    user: system:node:{node}\n  name: skiff\ncurrent-context: skiff\npreferences: {{}}\nusers:\n- name: system:node:{node}\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\n",
        b64(server.app.join.ca_cert_pem()),
        b64(&cert),
        b64(&key),
    );
    let path = options.data_dir.join("agent").join("kubeconfig.yaml");
    write_kubeconfig(&path, &kubeconfig)?;
    skiff_agent::client_config(Some(&path), None, None)
        .await
        .map_err(anyhow::Error::msg)
}

fn write_kubeconfig(path: &Path, contents: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    skiff_apiserver::pki::write_secret_file(path, contents)
        .with_context(|| format!("writing {}", path.display()))
}

/// Start the agent; the returned task ends when `shutdown` is cancelled (or the agent fails).
pub async fn start(
    server: &skiff_apiserver::Server,
    options: Options,
    shutdown: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<anyhow::Result<()>>> {
    let name = options.node.name();
    let kube = node_client_config(server, &options, &name).await?;
    let mut config = skiff_agent::Config::new(options.data_dir.clone(), name.clone(), kube);
    options.node.apply(&mut config);
    config.node_ip = Some(node_ip(&options));
    config.cluster_cidr = options.cluster_cidr.clone();
    tracing::info!(node = %name, ip = ?config.node_ip, "starting the node agent for this host");
    Ok(tokio::spawn(async move {
        skiff_agent::run(config, shutdown)
            .await
            .context("node agent (run `skiff server --disable-agent` for a control plane only)")
    }))
}
