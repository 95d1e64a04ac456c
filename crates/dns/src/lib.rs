//! Cluster DNS served by Skiff: the `kube-dns` Service's answers from watch caches of Services,
//! EndpointSlices and Pods, other names forwarded to the node's resolvers (DESIGN.md §7).

pub mod authority;
pub mod forward;
pub mod resolv;
pub mod server;
pub mod snapshot;
mod watch;

use std::net::SocketAddr;
use std::time::Duration;

pub use server::{DnsServer, SnapshotHandle};
pub use snapshot::Snapshot;
use tokio_util::sync::CancellationToken;

/// The `kube-dns` Service IP (DESIGN.md §11).
pub const CLUSTER_DNS_IP: std::net::Ipv4Addr = std::net::Ipv4Addr::new(10, 96, 0, 10);
/// The cluster domain (DESIGN.md §11).
pub const CLUSTER_DOMAIN: &str = "cluster.local";
/// CoreDNS's `kubernetes` plugin default TTL.
pub const DEFAULT_TTL: u32 = 5;

/// What the DNS server serves and where.
#[derive(Clone, Debug)]
pub struct DnsConfig {
    /// UDP and TCP are both bound on each address (port 0: UDP picks, TCP follows).
    pub listen: Vec<SocketAddr>,
    /// The cluster domain, `cluster.local`.
    pub domain: String,
    /// Where names outside the cluster domain go; see [`resolv::upstreams_from_host`].
    pub upstreams: Vec<SocketAddr>,
    /// TTL of cluster records and of the SOA's negative-caching minimum.
    pub ttl: u32,
    /// How long to wait for one upstream before trying the next.
    pub upstream_timeout: Duration,
}

impl DnsConfig {
    pub fn new(listen: Vec<SocketAddr>, domain: &str, upstreams: Vec<SocketAddr>) -> DnsConfig {
        DnsConfig {
            listen,
            domain: domain.to_string(),
            upstreams,
            ttl: DEFAULT_TTL,
            upstream_timeout: Duration::from_secs(2),
        }
    }
}

/// Errors of the DNS server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no DNS listen addresses were given")]
    NoListen,
    #[error("binding DNS listener {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Serve cluster DNS until `shutdown` is cancelled: bind the listeners, watch Services,
/// EndpointSlices and Pods through `client`, answer from the caches, forward the rest.
pub async fn run(
    client: kube::Client,
    config: DnsConfig,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    if config.listen.is_empty() {
        return Err(Error::NoListen);
    }
    let server = DnsServer::bind(&config).await?;
    let handle = server.snapshot_handle();
    tokio::select! {
        () = watch::watch(client, handle) => {}
        () = shutdown.cancelled() => {}
    }
    server.shutdown().await;
    Ok(())
}
