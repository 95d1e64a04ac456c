//! The EndpointSlice controller: for every Service with a selector, `discovery.k8s.io/v1`
//! EndpointSlices named `<service>-<5 random>` (server-generated) holding at most 100
//! endpoints each, with ready/serving/terminating conditions, node names, zones and pod
//! references, owned by the Service, as upstream's pkg/controller/endpointslice.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::runtime::reflector::{ObjectRef, Store};
use serde_json::json;

use crate::control;
use crate::endpoints::{
    self, HEADLESS_LABEL, TRIGGER_TIME_ANNOTATION, is_headless, is_terminal, pod_hostname, pod_ip,
    pod_reference, publish_not_ready, resolve_target_port, rfc3339_nano, selected_pods,
    service_ports, service_selector,
};
use crate::pod_state;
use crate::queue::Key;
use crate::writes::{Kind, Writes};

/// Name in logs and events, as upstream's component.
pub const NAME: &str = "endpointslice-controller";

/// The label naming the Service a slice belongs to.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// The label naming the slice's manager.
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
/// This controller's value of the managed-by label.
pub const MANAGED_BY: &str = "endpointslice-controller.k8s.io";
/// Upstream's default `--max-endpoints-per-slice`.
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;
/// The node label carrying its zone.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// Errors of one sync.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A write failed; the sync is retried with backoff.
    #[error(transparent)]
    Control(#[from] control::Error),
}

/// Everything an EndpointSlice sync needs.
pub struct EndpointSliceController<W> {
    /// Side effects.
    pub writes: Arc<W>,
    /// Service cache.
    pub services: Store<Service>,
    /// Pod cache (shared).
    pub pods: Store<Pod>,
    /// Node cache (shared), for zones.
    pub nodes: Store<Node>,
    /// EndpointSlice cache.
    pub slices: Store<EndpointSlice>,
    /// Slices created per Service that the cache has not shown yet (as upstream's
    /// endpointSliceTracker): a sync on a stale cache would create them twice.
    pub pending:
        std::sync::Mutex<std::collections::HashMap<Key, (Vec<String>, std::time::Instant)>>,
}

/// The Service key a slice belongs to, when this controller manages it.
pub fn owning_service(slice: &EndpointSlice) -> Option<Key> {
    let labels = slice.metadata.labels.as_ref()?;
    if labels.get(MANAGED_BY_LABEL).map(String::as_str) != Some(MANAGED_BY) {
        return None;
    }
    Some(Key::new(
        slice.metadata.namespace.clone().unwrap_or_default(),
        labels.get(SERVICE_NAME_LABEL)?.clone(),
    ))
}

type PortKey = Vec<(String, i32, String)>;

impl<W: Writes> EndpointSliceController<W> {
    fn zone_of(&self, node: Option<&str>) -> Option<String> {
        let node = self.nodes.get(&ObjectRef::new(node?))?;
        node.metadata.labels.as_ref()?.get(ZONE_LABEL).cloned()
    }

    /// Endpoints grouped by their resolved port list, each group sorted by address.
    fn desired(&self, svc: &Service, pods: &[Arc<Pod>]) -> BTreeMap<PortKey, Vec<Endpoint>> {
        let publish = publish_not_ready(svc);
        let ports = service_ports(svc);
        let mut groups: BTreeMap<PortKey, Vec<Endpoint>> = BTreeMap::new();
        for pod in pods {
            let Some(ip) = pod_ip(pod) else { continue };
            if is_terminal(pod) {
                continue;
            }
            let mut key: PortKey = ports
                .iter()
                .filter_map(|sp| {
                    Some((
                        sp.name.clone().unwrap_or_default(),
                        resolve_target_port(sp, pod)?,
                        sp.protocol.clone().unwrap_or_else(|| "TCP".into()),
                    ))
                })
                .collect();
            if key.is_empty() && !ports.is_empty() {
                continue;
            }
            key.sort();
            let terminating = pod.metadata.deletion_timestamp.is_some();
            let ready = pod_state::is_ready(pod);
            let node_name = pod.spec.as_ref().and_then(|s| s.node_name.clone());
            groups.entry(key).or_default().push(Endpoint {
                addresses: vec![ip],
                conditions: Some(EndpointConditions {
                    // A terminating pod is never ready unless not-ready pods are published.
                    ready: Some(publish || (ready && !terminating)),
                    serving: Some(publish || ready),
                    terminating: Some(terminating),
                }),
                hostname: pod_hostname(pod, svc),
                zone: self.zone_of(node_name.as_deref()),
                node_name,
                target_ref: Some(pod_reference(pod)),
                ..Endpoint::default()
            });
        }
        for eps in groups.values_mut() {
            eps.sort_by(|a, b| a.addresses.cmp(&b.addresses));
        }
        groups
    }

    /// Bring the slices of Service `key` in line with its pods.
    pub async fn reconcile(&self, key: &Key) -> Result<Option<Duration>, Error> {
        let Some(svc) = self
            .services
            .get(&ObjectRef::new(&key.name).within(&key.namespace))
        else {
            // Slices of a deleted Service go with it through their ownerReference (GC).
            return Ok(None);
        };
        if service_selector(&svc).is_none() || svc.metadata.deletion_timestamp.is_some() {
            return Ok(None);
        }
        let pods = selected_pods(&self.pods, &svc);
        let mut desired = self.desired(&svc, &pods);
        if desired.is_empty() {
            // Upstream keeps one empty placeholder slice per Service.
            desired.insert(Vec::new(), Vec::new());
        }
        let mut existing: Vec<Arc<EndpointSlice>> = self
            .slices
            .state()
            .into_iter()
            .filter(|s| owning_service(s).as_ref() == Some(key))
            .collect();
        existing.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((names, since)) = pending.get(key) {
                let seen = names
                    .iter()
                    .all(|n| existing.iter().any(|s| s.metadata.name.as_ref() == Some(n)));
                if !seen && since.elapsed() < Duration::from_secs(30) {
                    return Ok(Some(Duration::from_millis(200)));
                }
                pending.remove(key);
            }
        }
        let mut created: Vec<String> = Vec::new();
        let trigger = endpoints::last_change(&svc, &pods).map(rfc3339_nano);
        let mut labels = svc.metadata.labels.clone().unwrap_or_default();
        labels.insert(SERVICE_NAME_LABEL.into(), key.name.clone());
        labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
        if is_headless(&svc) {
            labels.insert(HEADLESS_LABEL.into(), String::new());
        }
        let owner = OwnerReference {
            api_version: "v1".into(),
            kind: "Service".into(),
            name: key.name.clone(),
            uid: svc.metadata.uid.clone().unwrap_or_default(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        };
        let app_protocol = |name: &str| {
            service_ports(&svc)
                .into_iter()
                .find(|p| p.name.as_deref().unwrap_or("") == name)
                .and_then(|p| p.app_protocol)
        };

        let mut used: Vec<bool> = vec![false; existing.len()];
        for (ports, eps) in desired {
            let slice_ports: Option<Vec<EndpointPort>> = (!ports.is_empty()).then(|| {
                ports
                    .iter()
                    .map(|(name, port, protocol)| EndpointPort {
                        app_protocol: app_protocol(name),
                        name: Some(name.clone()),
                        port: Some(*port),
                        protocol: Some(protocol.clone()),
                    })
                    .collect()
            });
            let chunks: Vec<Vec<Endpoint>> = if eps.is_empty() {
                vec![Vec::new()]
            } else {
                eps.chunks(MAX_ENDPOINTS_PER_SLICE)
                    .map(<[Endpoint]>::to_vec)
                    .collect()
            };
            for chunk in chunks {
                // Reuse a slice that already carries these ports: unchanged ones stay untouched.
                let same_ports = |s: &EndpointSlice| {
                    s.ports.clone().unwrap_or_default() == slice_ports.clone().unwrap_or_default()
                };
                let exact = existing
                    .iter()
                    .enumerate()
                    .position(|(i, s)| !used[i] && same_ports(s) && s.endpoints == chunk);
                let reuse = exact
                    .or_else(|| {
                        existing
                            .iter()
                            .enumerate()
                            .position(|(i, s)| !used[i] && same_ports(s))
                    })
                    // As upstream's finalize: update a slice that would be deleted rather than
                    // create one and delete another.
                    .or_else(|| (0..existing.len()).find(|i| !used[*i]));
                let mut meta = ObjectMeta {
                    namespace: Some(key.namespace.clone()),
                    labels: Some(labels.clone()),
                    owner_references: Some(vec![owner.clone()]),
                    ..ObjectMeta::default()
                };
                if let Some(t) = &trigger {
                    meta.annotations =
                        Some([(TRIGGER_TIME_ANNOTATION.to_string(), t.clone())].into());
                }
                match reuse {
                    Some(i) => {
                        used[i] = true;
                        let cur = &existing[i];
                        if cur.endpoints == chunk && cur.metadata.labels.as_ref() == Some(&labels) {
                            continue;
                        }
                        meta.name = cur.metadata.name.clone();
                        meta.resource_version = cur.metadata.resource_version.clone();
                        let name = meta.name.clone().unwrap_or_default();
                        let slice = EndpointSlice {
                            metadata: meta,
                            address_type: "IPv4".into(),
                            endpoints: chunk,
                            ports: slice_ports.clone(),
                        };
                        self.writes
                            .replace(
                                Kind::EndpointSlice,
                                &key.namespace,
                                &name,
                                slice_json(&slice),
                            )
                            .await?;
                    }
                    None => {
                        meta.generate_name = Some(format!("{}-", key.name));
                        let slice = EndpointSlice {
                            metadata: meta,
                            address_type: "IPv4".into(),
                            endpoints: chunk,
                            ports: slice_ports.clone(),
                        };
                        let stored = self
                            .writes
                            .create(Kind::EndpointSlice, &key.namespace, slice_json(&slice))
                            .await;
                        let stored = match stored {
                            Ok(v) => v,
                            Err(e) => {
                                self.remember(key, created);
                                return Err(e.into());
                            }
                        };
                        if let Some(n) = stored["metadata"]["name"].as_str() {
                            created.push(n.to_string());
                        }
                    }
                }
            }
        }
        for (i, s) in existing.iter().enumerate() {
            if used[i] {
                continue;
            }
            let name = s.metadata.name.clone().unwrap_or_default();
            if let Err(e) = self
                .writes
                .delete(
                    Kind::EndpointSlice,
                    &key.namespace,
                    &name,
                    s.metadata.uid.as_deref(),
                )
                .await
                && !e.is_not_found()
            {
                return Err(e.into());
            }
        }
        self.remember(key, created);
        Ok(None)
    }

    fn remember(&self, key: &Key, created: Vec<String>) {
        if !created.is_empty() {
            self.pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key.clone(), (created, std::time::Instant::now()));
        }
    }
}

fn slice_json(slice: &EndpointSlice) -> serde_json::Value {
    let mut v = serde_json::to_value(slice).unwrap_or_default();
    v["apiVersion"] = json!("discovery.k8s.io/v1");
    v["kind"] = json!("EndpointSlice");
    v
}

/// Wire the controller: handlers on the shared pod informer, its own Service and
/// EndpointSlice informers, workers once the caches synced.
pub(crate) fn register(
    client: &kube::Client,
    pods: &mut crate::informer::Informer<Pod>,
    nodes: &crate::informer::Informer<Node>,
    shutdown: &tokio_util::sync::CancellationToken,
    tasks: &tokio_util::task::TaskTracker,
) {
    use crate::informer::Informer;
    let mut services: Informer<Service> = Informer::new(client.clone());
    let mut slices: Informer<EndpointSlice> = Informer::new(client.clone());
    let queue = crate::queue::WorkQueue::new();
    let c = Arc::new(EndpointSliceController {
        writes: Arc::new(crate::writes::ClientWrites::new(client.clone(), NAME)),
        services: services.store(),
        pods: pods.store(),
        nodes: nodes.store(),
        slices: slices.store(),
        pending: Default::default(),
    });
    let q = queue.clone();
    services.on_change(Arc::new(move |old, new| {
        if let Some(s) = new.or(old) {
            q.add(Key::of(&s.metadata));
        }
    }));
    let q = queue.clone();
    slices.on_change(Arc::new(move |old, new| {
        for s in [old, new].into_iter().flatten() {
            if let Some(k) = owning_service(s) {
                q.add(k);
            }
        }
    }));
    let q = queue.clone();
    let svc_store = services.store();
    pods.on_change(Arc::new(move |old, new| {
        for p in [old, new].into_iter().flatten() {
            for k in endpoints::services_selecting(&svc_store, p) {
                q.add(k);
            }
        }
    }));
    let (ps, ss, es, ns) = (
        pods.synced(),
        services.synced(),
        slices.synced(),
        nodes.synced(),
    );
    let ready =
        async move { ps.wait().await && ss.wait().await && es.wait().await && ns.wait().await };
    let resync = services.store();
    tasks.spawn(services.run(shutdown.clone()));
    tasks.spawn(slices.run(shutdown.clone()));
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
mod tests;
