//! Cluster DNS on every node (DESIGN.md §7): the agent serves `skiff-dns` on its node address
//! and publishes that address as an EndpointSlice of the `kube-system/kube-dns` Service, owned
//! by its Node (so the garbage collector removes it with the node). The Service's Local internal
//! traffic policy sends each pod's queries to its own node's server.

use std::net::{IpAddr, SocketAddr};

use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// The Service the slices belong to.
const SERVICE: &str = "kube-dns";
const NAMESPACE: &str = "kube-system";

/// Serve DNS on `node_ip:53` and publish it, until `shutdown`.
pub async fn run(
    client: kube::Client,
    node_name: String,
    node_uid: String,
    node_ip: IpAddr,
    domain: String,
    shutdown: CancellationToken,
) {
    let upstreams = skiff_dns::resolv::upstreams_from_host().unwrap_or_else(|e| {
        tracing::warn!(error = %e, "no upstream resolvers from /etc/resolv.conf; only cluster names resolve");
        Vec::new()
    });
    let config = skiff_dns::DnsConfig::new(vec![SocketAddr::new(node_ip, 53)], &domain, upstreams);
    if let Err(e) = publish(&client, &node_name, &node_uid, node_ip).await {
        tracing::error!(error = %e, "publishing this node's DNS endpoint");
    }
    if let Err(e) = skiff_dns::run(client, config, shutdown).await {
        tracing::error!(error = %e, %node_ip, "cluster DNS on this node stopped");
    }
}

/// The EndpointSlice `kube-dns-<node>`: this node's DNS address, applied server-side-free with a
/// merge patch after a create attempt (it may exist from an earlier run).
async fn publish(
    client: &kube::Client,
    node: &str,
    node_uid: &str,
    ip: IpAddr,
) -> Result<(), kube::Error> {
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), NAMESPACE);
    let name = format!("{SERVICE}-{node}");
    let body = json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "labels": {
                "kubernetes.io/service-name": SERVICE,
                "endpointslice.kubernetes.io/managed-by": "skiff-agent",
            },
            "ownerReferences": [{
                "apiVersion": "v1", "kind": "Node", "name": node, "uid": node_uid,
            }],
        },
        "addressType": "IPv4",
        "endpoints": [{
            "addresses": [ip.to_string()],
            "nodeName": node,
            "conditions": {"ready": true, "serving": true, "terminating": false},
        }],
        "ports": [
            {"name": "dns", "port": 53, "protocol": "UDP"},
            {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
        ],
    });
    let slice: EndpointSlice =
        serde_json::from_value(body.clone()).map_err(kube::Error::SerdeError)?;
    match slices.create(&Default::default(), &slice).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => slices
            .patch(&name, &PatchParams::default(), &Patch::Merge(&body))
            .await
            .map(|_| ()),
        Err(e) => Err(e),
    }
}
