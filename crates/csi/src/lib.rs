//! Container Storage Interface for Skiff: the CSI v1 gRPC types compiled from the spec's
//! `csi.proto`, a client over a unix socket, the kubelet plugin registration API, and the
//! built-in driver `local.csi.skiff.dev`. See `docs/storage.md`.

pub mod client;
pub mod local;
pub mod registration;

/// The CSI v1 messages and services, generated at build time from `proto/csi.proto`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("csi.v1");
}

/// The kubelet plugin registration API (`pluginregistration.Registration`), generated at
/// build time from `proto/pluginregistration.proto`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod pluginregistration {
    tonic::include_proto!("pluginregistration");
}

use std::path::Path;

use futures::Stream;
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

pub use client::CsiClient;
pub use local::LocalDriver;
pub use tonic;

/// The built-in driver's name (the StorageClass `provisioner`).
pub const LOCAL_DRIVER: &str = "local.csi.skiff.dev";
/// The topology key of the built-in driver: a volume lives on one node.
pub const TOPOLOGY_NODE_KEY: &str = "topology.local.csi.skiff.dev/node";

/// Errors of the CSI client and server plumbing.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The socket could not be dialled.
    #[error("connecting to CSI socket {socket}: {source}")]
    Connect {
        /// The socket path.
        socket: std::path::PathBuf,
        /// Why.
        source: tonic::transport::Error,
    },
    /// A CSI call failed.
    #[error("CSI {call}: {status}")]
    Call {
        /// The RPC.
        call: &'static str,
        /// The gRPC status.
        status: tonic::Status,
    },
    /// Socket or file IO failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The server stopped with an error.
    #[error("serving CSI: {0}")]
    Serve(#[from] tonic::transport::Error),
}

pub(crate) fn incoming(listener: UnixListener) -> impl Stream<Item = std::io::Result<UnixStream>> {
    futures::stream::unfold(listener, |l| async move {
        let r = l.accept().await.map(|(s, _)| s);
        Some((r, l))
    })
}

/// Bind a unix socket at `socket`, creating its directory and replacing a stale socket file.
pub fn bind(socket: &Path) -> Result<UnixListener, Error> {
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            what: format!("creating {}", dir.display()),
            source,
        })?;
    }
    match std::fs::remove_file(socket) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(Error::Io {
                what: format!("removing stale socket {}", socket.display()),
                source,
            });
        }
    }
    UnixListener::bind(socket).map_err(|source| Error::Io {
        what: format!("binding {}", socket.display()),
        source,
    })
}

/// Serve `driver`'s Identity, Controller and Node services on the unix socket `socket`
/// (replacing a stale socket file) until `shutdown`.
pub async fn serve(
    socket: &Path,
    driver: LocalDriver,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let listener = bind(socket)?;
    tracing::info!(socket = %socket.display(), driver = LOCAL_DRIVER, "CSI driver serving");
    tonic::transport::Server::builder()
        .add_service(v1::identity_server::IdentityServer::new(driver.clone()))
        .add_service(v1::controller_server::ControllerServer::new(driver.clone()))
        .add_service(v1::node_server::NodeServer::new(driver))
        .serve_with_incoming_shutdown(incoming(listener), shutdown.cancelled_owned())
        .await?;
    Ok(())
}

/// Serve `driver` as a node plugin (Identity and Node, as a CSI node DaemonSet does) on
/// `socket` until `shutdown`; the socket file is removed when it stops.
pub async fn serve_node(
    socket: &Path,
    driver: LocalDriver,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let listener = bind(socket)?;
    tracing::info!(socket = %socket.display(), driver = LOCAL_DRIVER, "CSI node plugin serving");
    let r = tonic::transport::Server::builder()
        .add_service(v1::identity_server::IdentityServer::new(driver.clone()))
        .add_service(v1::node_server::NodeServer::new(driver))
        .serve_with_incoming_shutdown(incoming(listener), shutdown.cancelled_owned())
        .await;
    let _ = std::fs::remove_file(socket);
    r?;
    Ok(())
}
