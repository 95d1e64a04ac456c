//! The Container Runtime Interface client: CRI v1 over gRPC on a unix socket.

use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::{Channel, Endpoint, Uri};

pub use k8s_cri::v1 as api;

/// Errors of connecting to the runtime.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("connecting to the CRI socket {socket}: {source}")]
    Connect {
        socket: PathBuf,
        source: tonic::transport::Error,
    },
    #[error("CRI {call}: {source}")]
    Call {
        call: &'static str,
        source: tonic::Status,
    },
}

/// The runtime and image services on one channel; cheap to clone.
#[derive(Clone)]
pub struct Cri {
    pub rt: RuntimeServiceClient<Channel>,
    pub img: ImageServiceClient<Channel>,
}

/// The socket path of a `unix:///…` endpoint (a bare path is accepted too).
pub fn socket_of(endpoint: &str) -> PathBuf {
    PathBuf::from(endpoint.strip_prefix("unix://").unwrap_or(endpoint))
}

impl Cri {
    /// Connect to the CRI socket. The channel reconnects by itself when containerd restarts.
    pub async fn connect(socket: &Path) -> Result<Cri, Error> {
        let path = socket.to_path_buf();
        // The URI is required by tonic but unused: the connector dials the socket.
        let channel = Endpoint::from_static("http://[::]:50051")
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let p = path.clone();
                async move {
                    Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(p).await?))
                }
            }))
            .await
            .map_err(|source| Error::Connect {
                socket: socket.to_path_buf(),
                source,
            })?;
        Ok(Cri {
            rt: RuntimeServiceClient::new(channel.clone()),
            img: ImageServiceClient::new(channel),
        })
    }

    /// The runtime's name and version, e.g. `containerd://1.6.20~ds1`.
    pub async fn version(&self) -> Result<String, Error> {
        let v = self
            .rt
            .clone()
            .version(api::VersionRequest {
                version: "v1".into(),
            })
            .await
            .map_err(|source| Error::Call {
                call: "Version",
                source,
            })?
            .into_inner();
        Ok(format!("{}://{}", v.runtime_name, v.runtime_version))
    }
}
