//! A CSI client over a unix socket: the Identity, Controller and Node services of one driver.

use std::path::Path;

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::Error;
use crate::v1::controller_client::ControllerClient;
use crate::v1::identity_client::IdentityClient;
use crate::v1::node_client::NodeClient;

/// A connection to one CSI driver; cheap to clone (one HTTP/2 channel underneath).
#[derive(Clone)]
pub struct CsiClient {
    /// Identity service (plugin name, capabilities, probe).
    pub identity: IdentityClient<Channel>,
    /// Controller service (create, delete, expand volumes).
    pub controller: ControllerClient<Channel>,
    /// Node service (publish into pods, node info, stats).
    pub node: NodeClient<Channel>,
}

/// A gRPC channel to the unix socket `socket`.
pub async fn channel(socket: &Path) -> Result<Channel, Error> {
    let path = socket.to_path_buf();
    // tonic wants a URI; the connector ignores it and dials the socket.
    Endpoint::from_static("http://[::]:50051")
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
        })
}

impl CsiClient {
    /// Dial the driver's socket.
    pub async fn connect(socket: &Path) -> Result<CsiClient, Error> {
        let channel = channel(socket).await?;
        Ok(CsiClient {
            identity: IdentityClient::new(channel.clone()),
            controller: ControllerClient::new(channel.clone()),
            node: NodeClient::new(channel),
        })
    }

    /// The driver's name (`GetPluginInfo`).
    pub async fn driver_name(&mut self) -> Result<String, Error> {
        let r = self
            .identity
            .get_plugin_info(crate::v1::GetPluginInfoRequest {})
            .await
            .map_err(|status| Error::Call {
                call: "GetPluginInfo",
                status,
            })?;
        Ok(r.into_inner().name)
    }
}
