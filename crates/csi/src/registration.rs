//! The kubelet plugin registration API: a plugin serves `pluginregistration.Registration` on a
//! socket in the node's `plugins_registry` directory; the node agent (as the kubelet's plugin
//! watcher) asks it who it is (`GetInfo`) and tells it the outcome (`NotifyRegistrationStatus`).

use std::path::{Path, PathBuf};

use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::Error;
use crate::pluginregistration::registration_client::RegistrationClient;
use crate::pluginregistration::registration_server::{Registration, RegistrationServer};
use crate::pluginregistration::{
    InfoRequest, PluginInfo, RegistrationStatus, RegistrationStatusResponse,
};

/// The plugin type of a CSI driver.
pub const CSI_PLUGIN: &str = "CSIPlugin";

/// What a CSI driver's registration socket answers.
#[derive(Clone, Debug)]
pub struct Registrar {
    /// The driver's name.
    pub name: String,
    /// The driver's CSI socket.
    pub endpoint: PathBuf,
}

#[tonic::async_trait]
impl Registration for Registrar {
    async fn get_info(&self, _: Request<InfoRequest>) -> Result<Response<PluginInfo>, Status> {
        Ok(Response::new(PluginInfo {
            r#type: CSI_PLUGIN.to_string(),
            name: self.name.clone(),
            endpoint: self.endpoint.display().to_string(),
            supported_versions: vec!["1.0.0".to_string()],
        }))
    }

    async fn notify_registration_status(
        &self,
        req: Request<RegistrationStatus>,
    ) -> Result<Response<RegistrationStatusResponse>, Status> {
        let st = req.into_inner();
        if st.plugin_registered {
            tracing::info!(driver = %self.name, "registered with the node agent");
        } else {
            tracing::warn!(driver = %self.name, error = %st.error, "node agent refused the registration");
        }
        Ok(Response::new(RegistrationStatusResponse {}))
    }
}

/// Serve `registrar` on `socket` (as node-driver-registrar does) until `shutdown`; the socket
/// file is removed when it stops, which the watcher takes as deregistration.
pub async fn serve(
    socket: &Path,
    registrar: Registrar,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let listener = crate::bind(socket)?;
    let r = tonic::transport::Server::builder()
        .add_service(RegistrationServer::new(registrar))
        .serve_with_incoming_shutdown(crate::incoming(listener), shutdown.cancelled_owned())
        .await;
    let _ = std::fs::remove_file(socket);
    r?;
    Ok(())
}

/// Ask the plugin on `socket` who it is.
pub async fn get_info(socket: &Path) -> Result<PluginInfo, Error> {
    let mut c = RegistrationClient::new(crate::client::channel(socket).await?);
    c.get_info(InfoRequest {})
        .await
        .map(tonic::Response::into_inner)
        .map_err(|status| Error::Call {
            call: "GetInfo",
            status,
        })
}

/// Tell the plugin on `socket` whether it was registered (and why not).
pub async fn notify(socket: &Path, registered: bool, error: &str) -> Result<(), Error> {
    let mut c = RegistrationClient::new(crate::client::channel(socket).await?);
    c.notify_registration_status(RegistrationStatus {
        plugin_registered: registered,
        error: error.to_string(),
    })
    .await
    .map(|_| ())
    .map_err(|status| Error::Call {
        call: "NotifyRegistrationStatus",
        status,
    })
}
