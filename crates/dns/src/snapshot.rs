//! An immutable, indexed view of the Services, EndpointSlices and Pods the DNS answers from.
//!
//! The watch caches are turned into one `Snapshot` per change so a query never scans the caches
//! and never waits on a writer; unit tests seed a `Snapshot` from plain objects.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// The label an EndpointSlice carries to name its Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// One port as DNS publishes it: `_<name>._<protocol>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortRecord {
    /// The port's name; unnamed ports get no SRV name of their own.
    pub name: String,
    /// Lowercase protocol (`tcp`, `udp`, `sctp`).
    pub protocol: String,
    pub port: u16,
}

/// One ready endpoint address of a headless Service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointRecord {
    pub ip: IpAddr,
    /// `endpoints[].hostname` (set for StatefulSet pods and pods with hostname + subdomain).
    pub hostname: Option<String>,
    /// The ports of the slice the endpoint came from (target ports, not service ports).
    pub ports: Vec<PortRecord>,
}

impl EndpointRecord {
    /// The first label of the endpoint's own name: its hostname, else its dashed IP (CoreDNS).
    pub fn label(&self) -> String {
        self.hostname.clone().unwrap_or_else(|| dashed(self.ip))
    }
}

/// How a Service is published.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServiceKind {
    /// A virtual IP per family: the name resolves to it.
    ClusterIp(Vec<IpAddr>),
    /// `clusterIP: None`: the name resolves to the ready endpoints.
    Headless,
    /// `type: ExternalName`: the name is a CNAME.
    ExternalName(String),
}

/// A Service with everything DNS needs of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceRecord {
    pub kind: ServiceKind,
    pub ports: Vec<PortRecord>,
    /// Ready endpoints (all of them with `publishNotReadyAddresses`), deduplicated by IP.
    pub endpoints: Vec<EndpointRecord>,
}

/// Everything the authority answers from.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// (namespace, name) → Service.
    pub services: HashMap<(String, String), ServiceRecord>,
    /// Namespaces that have at least one Service (their `<ns>.svc` name exists).
    pub service_namespaces: HashSet<String>,
    /// (namespace, pod IP) of every pod that has an IP and is not on the host network.
    pub pods: HashSet<(String, IpAddr)>,
    /// IP → the owner name of its PTR record (relative to the cluster domain, no trailing dot).
    pub reverse: HashMap<IpAddr, String>,
    /// The SOA serial: bumped by the caller per rebuild.
    pub serial: u32,
}

/// `10.0.0.1` → `10-0-0-1`; IPv6 colons become dashes as in CoreDNS.
pub fn dashed(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string().replace('.', "-"),
        IpAddr::V6(v6) => v6.to_string().replace(':', "-"),
    }
}

/// The inverse of [`dashed`].
pub fn undashed(label: &str) -> Option<IpAddr> {
    if label.matches('-').count() == 3 && !label.contains("--") {
        label.replace('-', ".").parse().ok()
    } else {
        label.replace('-', ":").parse().ok()
    }
}

fn protocol(p: Option<&String>) -> String {
    p.map(|s| s.to_ascii_lowercase())
        .unwrap_or_else(|| "tcp".to_string())
}

fn port_u16(p: i32) -> Option<u16> {
    u16::try_from(p).ok().filter(|p| *p != 0)
}

impl Snapshot {
    /// Index the given objects. Objects without a name or namespace are skipped.
    pub fn build<'a>(
        services: impl IntoIterator<Item = &'a Service>,
        slices: impl IntoIterator<Item = &'a EndpointSlice>,
        pods: impl IntoIterator<Item = &'a Pod>,
        serial: u32,
    ) -> Snapshot {
        let mut snap = Snapshot {
            serial,
            ..Snapshot::default()
        };
        let mut publish_not_ready: HashSet<(String, String)> = HashSet::new();
        for svc in services {
            let (Some(ns), Some(name)) = (&svc.metadata.namespace, &svc.metadata.name) else {
                continue;
            };
            let Some(spec) = &svc.spec else { continue };
            let kind = if spec.type_.as_deref() == Some("ExternalName") {
                match &spec.external_name {
                    Some(target) if !target.is_empty() => {
                        ServiceKind::ExternalName(target.trim_end_matches('.').to_ascii_lowercase())
                    }
                    _ => continue,
                }
            } else if spec.cluster_ip.as_deref() == Some("None") {
                ServiceKind::Headless
            } else {
                let mut ips: Vec<IpAddr> = spec
                    .cluster_ips
                    .iter()
                    .flatten()
                    .filter_map(|s| s.parse().ok())
                    .collect();
                if ips.is_empty() {
                    ips.extend(
                        spec.cluster_ip
                            .as_deref()
                            .and_then(|s| s.parse::<IpAddr>().ok()),
                    );
                }
                if ips.is_empty() {
                    // Not allocated yet: no record rather than an empty answer for a "service".
                    continue;
                }
                ServiceKind::ClusterIp(ips)
            };
            let ports = spec
                .ports
                .iter()
                .flatten()
                .filter_map(|p| {
                    Some(PortRecord {
                        name: p.name.clone().unwrap_or_default(),
                        protocol: protocol(p.protocol.as_ref()),
                        port: port_u16(p.port)?,
                    })
                })
                .collect();
            if spec.publish_not_ready_addresses == Some(true) {
                publish_not_ready.insert((ns.clone(), name.clone()));
            }
            if let ServiceKind::ClusterIp(ips) = &kind {
                for ip in ips {
                    snap.reverse.insert(*ip, format!("{name}.{ns}.svc"));
                }
            }
            snap.service_namespaces.insert(ns.clone());
            snap.services.insert(
                (ns.clone(), name.clone()),
                ServiceRecord {
                    kind,
                    ports,
                    endpoints: Vec::new(),
                },
            );
        }

        // Slices sorted by name so the answer order is stable across rebuilds.
        let mut by_service: BTreeMap<(String, String, String), &EndpointSlice> = BTreeMap::new();
        for slice in slices {
            let (Some(ns), Some(name)) = (&slice.metadata.namespace, &slice.metadata.name) else {
                continue;
            };
            let Some(svc) = slice
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SERVICE_NAME_LABEL))
            else {
                continue;
            };
            by_service.insert((ns.clone(), svc.clone(), name.clone()), slice);
        }
        for ((ns, svc_name, _), slice) in by_service {
            let key = (ns.clone(), svc_name.clone());
            let all = publish_not_ready.contains(&key);
            let Some(svc) = snap.services.get_mut(&key) else {
                continue;
            };
            let ports: Vec<PortRecord> = slice
                .ports
                .iter()
                .flatten()
                .filter_map(|p| {
                    Some(PortRecord {
                        name: p.name.clone().unwrap_or_default(),
                        protocol: protocol(p.protocol.as_ref()),
                        port: port_u16(p.port?)?,
                    })
                })
                .collect();
            for ep in &slice.endpoints {
                // Unknown readiness counts as ready (EndpointSlice API semantics).
                let ready = ep.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
                if !ready && !all {
                    continue;
                }
                for addr in &ep.addresses {
                    let Ok(ip) = addr.parse::<IpAddr>() else {
                        continue;
                    };
                    if svc.endpoints.iter().any(|e| e.ip == ip) {
                        continue;
                    }
                    let hostname = ep.hostname.clone().filter(|h| !h.is_empty());
                    if svc.kind == ServiceKind::Headless {
                        let label = hostname.clone().unwrap_or_else(|| dashed(ip));
                        snap.reverse
                            .entry(ip)
                            .or_insert_with(|| format!("{label}.{svc_name}.{ns}.svc"));
                    }
                    svc.endpoints.push(EndpointRecord {
                        ip,
                        hostname,
                        ports: ports.clone(),
                    });
                }
            }
        }

        for pod in pods {
            let Some(ns) = &pod.metadata.namespace else {
                continue;
            };
            if pod.spec.as_ref().and_then(|s| s.host_network) == Some(true) {
                continue;
            }
            let Some(status) = &pod.status else { continue };
            // A finished pod's IP may already belong to another pod.
            if matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) {
                continue;
            }
            let ips = status
                .pod_ips
                .iter()
                .flatten()
                .map(|p| p.ip.as_str())
                .chain(status.pod_ip.as_deref())
                .filter_map(|s| s.parse::<IpAddr>().ok());
            for ip in ips {
                snap.reverse
                    .entry(ip)
                    .or_insert_with(|| format!("{}.{ns}.pod", dashed(ip)));
                snap.pods.insert((ns.clone(), ip));
            }
        }
        snap
    }
}
