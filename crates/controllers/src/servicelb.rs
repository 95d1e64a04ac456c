//! ServiceLB, as k3s's: a `type: LoadBalancer` Service without `spec.loadBalancerClass` gets
//! the InternalIPs of the Ready nodes in `status.loadBalancer.ingress` (`ipMode: VIP`); the
//! node proxy serves those addresses like ClusterIPs on every node. The list follows nodes
//! joining, leaving and turning NotReady.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Service};
use kube::api::{Patch, PatchParams};
use kube::runtime::reflector::{ObjectRef, Store};
use serde_json::{Value, json};

use crate::queue::Key;

/// Name in logs and as field manager.
pub const NAME: &str = "servicelb-controller";

/// Nodes with this label are not load-balancer targets, as upstream's service controller.
pub const EXCLUDE_LABEL: &str = "node.kubernetes.io/exclude-from-external-load-balancers";

/// Errors of a ServiceLB sync.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Writing the Service's status failed; the queue retries with backoff.
    #[error("updating the load balancer status of {0}: {1}")]
    Patch(String, #[source] kube::Error),
}

/// Whether this controller owns the Service's load balancer.
pub fn is_ours(svc: &Service) -> bool {
    svc.spec.as_ref().is_some_and(|s| {
        s.type_.as_deref() == Some("LoadBalancer") && s.load_balancer_class.is_none()
    })
}

fn node_ready(node: &Node) -> bool {
    node.metadata.deletion_timestamp.is_none()
        && node
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The ingress entries a Service of ours should carry: one per Ready, not excluded node's
/// InternalIP, sorted so the status does not churn with informer order.
pub fn desired_ingress<'a>(nodes: impl IntoIterator<Item = &'a Node>) -> Vec<Value> {
    let mut ips: Vec<String> = nodes
        .into_iter()
        .filter(|n| node_ready(n))
        .filter(|n| {
            !n.metadata
                .labels
                .as_ref()
                .is_some_and(|l| l.contains_key(EXCLUDE_LABEL))
        })
        .filter_map(|n| {
            n.status
                .as_ref()?
                .addresses
                .as_ref()?
                .iter()
                .find(|a| a.type_ == "InternalIP")
                .map(|a| a.address.clone())
        })
        .collect();
    ips.sort_by_key(|ip| ip.parse::<std::net::IpAddr>().ok());
    ips.dedup();
    ips.into_iter()
        .map(|ip| json!({"ip": ip, "ipMode": "VIP"}))
        .collect()
}

fn current_ingress(svc: &Service) -> Vec<Value> {
    svc.status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .map(|ing| {
            ing.iter()
                .filter_map(|i| serde_json::to_value(i).ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The status patch a Service needs, if any: our ingress list for our Services; an empty one
/// for a Service that stopped being a LoadBalancer (upstream's service controller clears it
/// too), `None` when the status is already right or the Service belongs to another class.
pub fn status_patch(svc: &Service, nodes: &[Arc<Node>]) -> Option<Value> {
    let current = current_ingress(svc);
    let want = if is_ours(svc) {
        desired_ingress(nodes.iter().map(|n| n.as_ref()))
    } else if svc.spec.as_ref().and_then(|s| s.type_.as_deref()) != Some("LoadBalancer")
        && !current.is_empty()
    {
        Vec::new()
    } else {
        return None;
    };
    (want != current).then(|| json!({"status": {"loadBalancer": {"ingress": want}}}))
}

struct ServiceLb {
    client: kube::Client,
    services: Store<Service>,
    nodes: Store<Node>,
}

impl ServiceLb {
    async fn reconcile(&self, key: &Key) -> Result<Option<Duration>, Error> {
        let Some(svc) = self
            .services
            .get(&ObjectRef::new(&key.name).within(&key.namespace))
        else {
            return Ok(None);
        };
        let Some(patch) = status_patch(&svc, &self.nodes.state()) else {
            return Ok(None);
        };
        let api: kube::Api<Service> = kube::Api::namespaced(self.client.clone(), &key.namespace);
        match api
            .patch_status(&key.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {
                tracing::info!(controller = NAME, service = %format!("{}/{}", key.namespace, key.name), ingress = %patch["status"]["loadBalancer"]["ingress"], "load balancer status updated");
                Ok(None)
            }
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(None),
            Err(e) => Err(Error::Patch(format!("{}/{}", key.namespace, key.name), e)),
        }
    }
}

/// Wire the controller: its own Service informer, the shared node informer, workers once both
/// synced.
pub(crate) fn register(
    client: &kube::Client,
    nodes: &mut crate::informer::Informer<Node>,
    shutdown: &tokio_util::sync::CancellationToken,
    tasks: &tokio_util::task::TaskTracker,
) {
    use crate::informer::Informer;
    let mut services: Informer<Service> = Informer::new(client.clone());
    let queue = crate::queue::WorkQueue::new();
    let c = Arc::new(ServiceLb {
        client: client.clone(),
        services: services.store(),
        nodes: nodes.store(),
    });
    let q = queue.clone();
    services.on_change(Arc::new(move |_, new| {
        if let Some(s) = new {
            q.add(Key::of(&s.metadata));
        }
    }));
    // Any node change may change every LoadBalancer's ingress list; the status patch is
    // skipped when nothing changed, so heartbeats cost a comparison per Service.
    let q = queue.clone();
    let svc_store = services.store();
    nodes.on_change(Arc::new(move |old, new| {
        let relevant = match (old, new) {
            (Some(o), Some(n)) => {
                node_ready(o) != node_ready(n) || desired_ingress([o]) != desired_ingress([n])
            }
            _ => true,
        };
        if relevant {
            for s in svc_store.state().iter().filter(|s| is_ours(s)) {
                q.add(Key::of(&s.metadata));
            }
        }
    }));
    let (ns, ss) = (nodes.synced(), services.synced());
    let ready = async move { ns.wait().await && ss.wait().await };
    let resync = services.store();
    tasks.spawn(services.run(shutdown.clone()));
    crate::writes::start_after(
        tasks,
        NAME,
        queue,
        shutdown.clone(),
        ready,
        resync,
        move |key| {
            let c = c.clone();
            async move { c.reconcile(&key).await }
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        LoadBalancerIngress, LoadBalancerStatus, NodeAddress, NodeCondition, NodeStatus,
        ServiceSpec, ServiceStatus,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn node(name: &str, ip: &str, ready: &str) -> Arc<Node> {
        Arc::new(Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            spec: None,
            status: Some(NodeStatus {
                addresses: Some(vec![
                    NodeAddress {
                        type_: "Hostname".into(),
                        address: name.into(),
                    },
                    NodeAddress {
                        type_: "InternalIP".into(),
                        address: ip.into(),
                    },
                ]),
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: ready.into(),
                    ..NodeCondition::default()
                }]),
                ..NodeStatus::default()
            }),
        })
    }

    fn svc(type_: &str, class: Option<&str>, ingress: &[&str]) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("default".into()),
                ..ObjectMeta::default()
            },
            spec: Some(ServiceSpec {
                type_: Some(type_.into()),
                load_balancer_class: class.map(str::to_string),
                ..ServiceSpec::default()
            }),
            status: Some(ServiceStatus {
                load_balancer: Some(LoadBalancerStatus {
                    ingress: Some(
                        ingress
                            .iter()
                            .map(|ip| LoadBalancerIngress {
                                ip: Some(ip.to_string()),
                                ip_mode: Some("VIP".into()),
                                ..LoadBalancerIngress::default()
                            })
                            .collect(),
                    ),
                }),
                conditions: None,
            }),
        }
    }

    #[test]
    fn a_load_balancer_gets_the_internal_ips_of_ready_nodes_sorted_as_vip_entries() {
        let nodes = vec![
            node("c", "10.0.0.12", "True"),
            node("a", "10.0.0.9", "True"),
            node("b", "10.0.0.11", "Unknown"),
        ];
        let patch = status_patch(&svc("LoadBalancer", None, &[]), &nodes).expect("a patch");
        assert_eq!(
            patch,
            json!({"status": {"loadBalancer": {"ingress": [
                {"ip": "10.0.0.9", "ipMode": "VIP"},
                {"ip": "10.0.0.12", "ipMode": "VIP"},
            ]}}})
        );
    }

    #[test]
    fn an_up_to_date_status_is_not_patched_and_a_node_going_away_is() {
        let nodes = vec![
            node("a", "10.0.0.9", "True"),
            node("b", "10.0.0.11", "True"),
        ];
        let s = svc("LoadBalancer", None, &["10.0.0.9", "10.0.0.11"]);
        assert_eq!(status_patch(&s, &nodes), None);
        let patch = status_patch(&s, &nodes[..1]).expect("a patch");
        assert_eq!(
            patch["status"]["loadBalancer"]["ingress"],
            json!([{"ip": "10.0.0.9", "ipMode": "VIP"}])
        );
    }

    #[test]
    fn another_class_is_left_alone_and_a_former_load_balancer_is_cleared() {
        let nodes = vec![node("a", "10.0.0.9", "True")];
        assert_eq!(
            status_patch(&svc("LoadBalancer", Some("example.com/lb"), &[]), &nodes),
            None
        );
        assert_eq!(
            status_patch(
                &svc("LoadBalancer", Some("example.com/lb"), &["1.2.3.4"]),
                &nodes
            ),
            None
        );
        assert_eq!(
            status_patch(&svc("ClusterIP", None, &["10.0.0.9"]), &nodes),
            Some(json!({"status": {"loadBalancer": {"ingress": []}}}))
        );
        assert_eq!(status_patch(&svc("ClusterIP", None, &[]), &nodes), None);
    }

    #[test]
    fn excluded_nodes_are_not_targets() {
        let mut n = (*node("a", "10.0.0.9", "True")).clone();
        n.metadata.labels = Some([(EXCLUDE_LABEL.to_string(), String::new())].into());
        assert!(desired_ingress([&n]).is_empty());
    }
}
