//! The Endpoints controller: for every Service with a selector, an Endpoints object of the same
//! name listing the selected pods' addresses (ready and not ready) and resolved ports, as
//! upstream's pkg/controller/endpoint. Services without a selector are left alone (their
//! Endpoints belong to someone else, e.g. the API server's own `kubernetes` Service).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Pod, Service,
    ServicePort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::runtime::reflector::{ObjectRef, Store};
use serde_json::json;

use crate::control;
use crate::pod_state;
use crate::queue::Key;
use crate::writes::{Kind, Writes};

/// Name in logs and events, as upstream's component.
pub const NAME: &str = "endpoint-controller";

/// Upstream's annotation with the time of the last pod or service change behind a write.
pub const TRIGGER_TIME_ANNOTATION: &str = "endpoints.kubernetes.io/last-change-trigger-time";

/// Label on endpoints of headless services.
pub const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";

/// Errors of one sync.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A write failed; the sync is retried with backoff.
    #[error(transparent)]
    Control(#[from] control::Error),
}

/// Everything an Endpoints sync needs.
pub struct EndpointsController<W> {
    /// Side effects.
    pub writes: Arc<W>,
    /// Service cache.
    pub services: Store<Service>,
    /// Pod cache (shared).
    pub pods: Store<Pod>,
    /// Endpoints cache.
    pub endpoints: Store<Endpoints>,
}

/// The parsed selector of a Service, `None` when it has none (the controller leaves it alone).
pub fn service_selector(svc: &Service) -> Option<&BTreeMap<String, String>> {
    svc.spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .filter(|s| !s.is_empty())
}

/// Whether `pod` carries every label of `selector`.
pub fn selects(selector: &BTreeMap<String, String>, pod: &Pod) -> bool {
    let labels = pod.metadata.labels.as_ref();
    selector
        .iter()
        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

/// Keys of the Services in the pod's namespace that select it.
pub fn services_selecting(services: &Store<Service>, pod: &Pod) -> Vec<Key> {
    services
        .state()
        .iter()
        .filter(|s| s.metadata.namespace == pod.metadata.namespace)
        .filter(|s| service_selector(s).is_some_and(|sel| selects(sel, pod)))
        .map(|s| Key::of(&s.metadata))
        .collect()
}

/// The pods of the Service's namespace that it selects, sorted by name.
pub fn selected_pods(pods: &Store<Pod>, svc: &Service) -> Vec<Arc<Pod>> {
    let Some(sel) = service_selector(svc) else {
        return Vec::new();
    };
    let mut out: Vec<Arc<Pod>> = pods
        .state()
        .into_iter()
        .filter(|p| p.metadata.namespace == svc.metadata.namespace && selects(sel, p))
        .collect();
    out.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    out
}

/// The pod's IPv4 address, if it has one.
pub fn pod_ip(pod: &Pod) -> Option<String> {
    pod.status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .filter(|ip| !ip.is_empty() && !ip.contains(':'))
}

/// Whether the pod has finished for good (it will never serve again).
pub fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// The container port a service port targets on this pod: numbers as they are, names looked up
/// in the pod's containers (with the same protocol); `None` when the pod lacks the name.
pub fn resolve_target_port(sp: &ServicePort, pod: &Pod) -> Option<i32> {
    match &sp.target_port {
        None => Some(sp.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => {
            if let Ok(n) = name.parse::<i32>() {
                return Some(n);
            }
            let proto = sp.protocol.as_deref().unwrap_or("TCP");
            pod.spec
                .as_ref()?
                .containers
                .iter()
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| {
                    p.name.as_deref() == Some(name.as_str())
                        && p.protocol.as_deref().unwrap_or("TCP") == proto
                })
                .map(|p| p.container_port)
        }
    }
}

/// The pod's hostname for DNS, set when its subdomain is this (headless) service.
pub fn pod_hostname(pod: &Pod, svc: &Service) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let hostname = spec.hostname.clone().filter(|h| !h.is_empty())?;
    (spec.subdomain.as_deref() == svc.metadata.name.as_deref()).then_some(hostname)
}

/// Whether the service is headless (`clusterIP: None`).
pub fn is_headless(svc: &Service) -> bool {
    svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None")
}

/// Whether not-ready pods are published as ready.
pub fn publish_not_ready(svc: &Service) -> bool {
    svc.spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false)
}

/// The service's ports.
pub fn service_ports(svc: &Service) -> Vec<ServicePort> {
    svc.spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .unwrap_or_default()
}

/// The latest change among the service and its pods (creation, ready transitions, deletion):
/// what upstream's trigger-time tracker reports.
pub fn last_change(svc: &Service, pods: &[Arc<Pod>]) -> Option<jiff::Timestamp> {
    let mut times: Vec<jiff::Timestamp> = Vec::new();
    times.extend(svc.metadata.creation_timestamp.as_ref().map(|t| t.0));
    for p in pods {
        times.extend(p.metadata.creation_timestamp.as_ref().map(|t| t.0));
        times.extend(p.metadata.deletion_timestamp.as_ref().map(|t| t.0));
        for c in p
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
        {
            times.extend(c.last_transition_time.as_ref().map(|t| t.0));
        }
    }
    times.into_iter().max()
}

/// A reference to a pod, as endpoints carry it.
pub fn pod_reference(pod: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".into()),
        namespace: pod.metadata.namespace.clone(),
        name: pod.metadata.name.clone(),
        uid: pod.metadata.uid.clone(),
        ..ObjectReference::default()
    }
}

/// A pod's resolved ports: (service port name, container port, protocol), sorted.
type PortList = Vec<(String, i32, String)>;
/// Ready and not-ready addresses of the pods sharing one port list.
type AddressGroups = BTreeMap<PortList, (Vec<EndpointAddress>, Vec<EndpointAddress>)>;

/// The subsets upstream would compute: one per distinct port list, addresses sorted by IP.
pub fn desired_subsets(svc: &Service, pods: &[Arc<Pod>]) -> Vec<EndpointSubset> {
    let tolerate_unready = publish_not_ready(svc);
    let ports = service_ports(svc);
    // Port list → (ready, not ready) addresses.
    let mut groups: AddressGroups = BTreeMap::new();
    for pod in pods {
        let Some(ip) = pod_ip(pod) else { continue };
        if is_terminal(pod) || (!tolerate_unready && pod.metadata.deletion_timestamp.is_some()) {
            continue;
        }
        let addr = EndpointAddress {
            ip,
            hostname: pod_hostname(pod, svc),
            node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            target_ref: Some(pod_reference(pod)),
        };
        let mut pod_ports: PortList = Vec::new();
        for sp in &ports {
            if let Some(port) = resolve_target_port(sp, pod) {
                pod_ports.push((
                    sp.name.clone().unwrap_or_default(),
                    port,
                    sp.protocol.clone().unwrap_or_else(|| "TCP".into()),
                ));
            } else {
                tracing::debug!(pod = ?pod.metadata.name, port = ?sp.name, "named port not found on pod");
            }
        }
        // A pod none of whose ports resolve serves nothing (headless portless services aside).
        if pod_ports.is_empty() && !(ports.is_empty() && is_headless(svc)) {
            continue;
        }
        pod_ports.sort();
        let entry = groups.entry(pod_ports).or_default();
        if tolerate_unready || pod_state::is_ready(pod) {
            entry.0.push(addr);
        } else {
            entry.1.push(addr);
        }
    }
    let app_protocol = |name: &str| {
        ports
            .iter()
            .find(|p| p.name.as_deref().unwrap_or("") == name)
            .and_then(|p| p.app_protocol.clone())
    };
    groups
        .into_iter()
        .map(|(ports, (mut ready, mut not_ready))| {
            ready.sort_by(|a, b| a.ip.cmp(&b.ip));
            not_ready.sort_by(|a, b| a.ip.cmp(&b.ip));
            EndpointSubset {
                addresses: (!ready.is_empty()).then_some(ready),
                not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
                ports: (!ports.is_empty()).then(|| {
                    ports
                        .into_iter()
                        .map(|(name, port, protocol)| EndpointPort {
                            app_protocol: app_protocol(&name),
                            name: (!name.is_empty()).then_some(name),
                            port,
                            protocol: Some(protocol),
                        })
                        .collect()
                }),
            }
        })
        .collect()
}

fn desired_labels(svc: &Service) -> BTreeMap<String, String> {
    let mut labels = svc.metadata.labels.clone().unwrap_or_default();
    if is_headless(svc) {
        labels.insert(HEADLESS_LABEL.into(), String::new());
    } else {
        labels.remove(HEADLESS_LABEL);
    }
    labels
}

/// RFC 3339 with nanoseconds, as Go's time.RFC3339Nano in UTC.
pub fn rfc3339_nano(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%S%.fZ").to_string()
}

impl<W: Writes> EndpointsController<W> {
    /// Bring the Endpoints of Service `key` in line with its pods.
    pub async fn reconcile(&self, key: &Key) -> Result<Option<Duration>, Error> {
        let r = ObjectRef::new(&key.name).within(&key.namespace);
        let existing = self
            .endpoints
            .get(&ObjectRef::new(&key.name).within(&key.namespace));
        let Some(svc) = self.services.get(&r) else {
            // The Service is gone: so are its Endpoints.
            if let Some(ep) = existing {
                match self
                    .writes
                    .delete(
                        Kind::Endpoints,
                        &key.namespace,
                        &key.name,
                        ep.metadata.uid.as_deref(),
                    )
                    .await
                {
                    Err(e) if !e.is_not_found() => return Err(e.into()),
                    _ => {}
                }
            }
            return Ok(None);
        };
        if service_selector(&svc).is_none() || svc.metadata.deletion_timestamp.is_some() {
            return Ok(None);
        }
        let pods = selected_pods(&self.pods, &svc);
        let subsets = desired_subsets(&svc, &pods);
        let labels = desired_labels(&svc);
        if let Some(ep) = &existing {
            let current = ep.subsets.clone().unwrap_or_default();
            if current == subsets && ep.metadata.labels.clone().unwrap_or_default() == labels {
                return Ok(None);
            }
        }
        let mut annotations = existing
            .as_ref()
            .and_then(|e| e.metadata.annotations.clone())
            .unwrap_or_default();
        match last_change(&svc, &pods) {
            Some(t) => {
                annotations.insert(TRIGGER_TIME_ANNOTATION.into(), rfc3339_nano(t));
            }
            None => {
                annotations.remove(TRIGGER_TIME_ANNOTATION);
            }
        }
        let ep = Endpoints {
            metadata: ObjectMeta {
                name: Some(key.name.clone()),
                namespace: Some(key.namespace.clone()),
                labels: Some(labels),
                annotations: Some(annotations),
                resource_version: existing
                    .as_ref()
                    .and_then(|e| e.metadata.resource_version.clone()),
                ..ObjectMeta::default()
            },
            subsets: Some(subsets),
        };
        let mut body = serde_json::to_value(&ep).unwrap_or_default();
        body["apiVersion"] = json!("v1");
        body["kind"] = json!("Endpoints");
        let result = if existing.is_some() {
            self.writes
                .replace(Kind::Endpoints, &key.namespace, &key.name, body)
                .await
        } else {
            self.writes
                .create(Kind::Endpoints, &key.namespace, body)
                .await
                .map(|_| ())
        };
        // A conflict means someone wrote first: the retry starts from the newer cache.
        result?;
        Ok(None)
    }
}

/// Wire the controller: handlers on the shared pod informer, its own Service and Endpoints
/// informers, workers once the caches synced.
pub(crate) fn register(
    client: &kube::Client,
    pods: &mut crate::informer::Informer<Pod>,
    shutdown: &tokio_util::sync::CancellationToken,
    tasks: &tokio_util::task::TaskTracker,
) {
    use crate::informer::Informer;
    let mut services: Informer<Service> = Informer::new(client.clone());
    let mut endpoints: Informer<Endpoints> = Informer::new(client.clone());
    let queue = crate::queue::WorkQueue::new();
    let c = Arc::new(EndpointsController {
        writes: Arc::new(crate::writes::ClientWrites::new(client.clone(), NAME)),
        services: services.store(),
        pods: pods.store(),
        endpoints: endpoints.store(),
    });
    let q = queue.clone();
    services.on_change(Arc::new(move |old, new| {
        if let Some(s) = new.or(old) {
            q.add(Key::of(&s.metadata));
        }
    }));
    let q = queue.clone();
    endpoints.on_change(Arc::new(move |old, new| {
        // Someone deleted or rewrote our Endpoints: recompute them.
        if let Some(e) = new.or(old) {
            q.add(Key::of(&e.metadata));
        }
    }));
    let q = queue.clone();
    let svc_store = services.store();
    pods.on_change(Arc::new(move |old, new| {
        for p in [old, new].into_iter().flatten() {
            for k in services_selecting(&svc_store, p) {
                q.add(k);
            }
        }
    }));
    let (ps, ss, es) = (pods.synced(), services.synced(), endpoints.synced());
    let ready = async move { ps.wait().await && ss.wait().await && es.wait().await };
    let resync = services.store();
    tasks.spawn(services.run(shutdown.clone()));
    tasks.spawn(endpoints.run(shutdown.clone()));
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
pub(crate) mod tests;
