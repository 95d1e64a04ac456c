//! The IO-free core: Services and EndpointSlices in, the desired nftables rule model out.
//!
//! The model mirrors kube-proxy's nftables mode: one verdict map from `IP . proto . port` to a
//! per-service-port chain, `numgen random mod N` over per-endpoint chains, a mark for masquerade,
//! and maps that reject (or drop) traffic to service ports without usable endpoints.

use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use sha2::{Digest, Sha256};

/// The label an EndpointSlice carries naming its Service (as upstream).
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// Services with this label belong to another proxy; kube-proxy skips them, and so do we.
pub const SERVICE_PROXY_NAME_LABEL: &str = "service.kubernetes.io/service-proxy-name";
/// The default `sessionAffinityConfig.clientIP.timeoutSeconds` (3 hours, as upstream).
pub const DEFAULT_AFFINITY_TIMEOUT_SECONDS: i32 = 10800;

/// The verdict-map names of the table; their keys and values are what incremental syncs change.
pub const SERVICE_IPS: &str = "service-ips";
pub const SERVICE_NODEPORTS: &str = "service-nodeports";
pub const NO_ENDPOINT_SERVICES: &str = "no-endpoint-services";
pub const NO_ENDPOINT_NODEPORTS: &str = "no-endpoint-nodeports";

/// An IPv4 CIDR such as the cluster (pod) CIDR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

/// A CIDR string that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("invalid IPv4 CIDR {0:?}")]
pub struct CidrError(String);

impl FromStr for Cidr {
    type Err = CidrError;
    fn from_str(s: &str) -> Result<Cidr, CidrError> {
        let bad = || CidrError(s.to_string());
        let (addr, prefix) = s.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        if prefix > 32 {
            return Err(bad());
        }
        Ok(Cidr { addr, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// What the core needs to know about the node it programs.
#[derive(Debug, Clone, Default)]
pub struct NodeInfo {
    /// The node's name: endpoints whose `nodeName` equals it are local.
    pub node_name: String,
    /// The addresses that accept NodePort traffic (all of the node's addresses).
    pub node_ips: Vec<Ipv4Addr>,
    /// Traffic from outside this CIDR to a ClusterIP is masqueraded (kube-proxy's
    /// `--cluster-cidr` local-traffic detector). `None`: no such masquerade.
    pub cluster_cidr: Option<Cidr>,
}

/// The desired contents of the table's dynamic part. The base chains are fixed (see `script`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ruleset {
    /// Elements of the `nodeport-ips` set.
    pub nodeport_ips: BTreeSet<Ipv4Addr>,
    /// Per-service-port and per-endpoint chains: name → rules, in order.
    pub chains: BTreeMap<String, Vec<String>>,
    /// Session-affinity sets: name → timeout in seconds.
    pub affinity_sets: BTreeMap<String, i32>,
    /// Verdict maps (`SERVICE_IPS`, ...): name → (key → verdict).
    pub maps: BTreeMap<&'static str, BTreeMap<String, String>>,
}

impl Ruleset {
    fn element(&mut self, map: &'static str, key: String, verdict: String) {
        self.maps.entry(map).or_default().insert(key, verdict);
    }
}

/// One endpoint of one service port, as read from the EndpointSlices.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Endpoint {
    ip: Ipv4Addr,
    port: i32,
    ready: bool,
    serving: bool,
    terminating: bool,
    local: bool,
}

/// Upstream's choice of usable endpoints: the ready ones; when none is ready, the ones that are
/// still serving while terminating (so connections drain during a rolling update).
fn usable<'a>(eps: impl Iterator<Item = &'a Endpoint> + Clone) -> Vec<&'a Endpoint> {
    let ready: Vec<&Endpoint> = eps.clone().filter(|e| e.ready).collect();
    if !ready.is_empty() {
        return ready;
    }
    eps.filter(|e| e.serving && e.terminating).collect()
}

/// Longest chain or set name we make: nft allows 255 bytes; upstream stays well below.
const MAX_NAME: usize = 200;

/// Chain names as upstream: a short hash of the full name for uniqueness, then the readable
/// name, cut to `MAX_NAME` (long namespace, service and port names would not fit otherwise).
fn hashed(prefix: &str, readable: &str) -> String {
    let digest = Sha256::digest(readable.as_bytes());
    let hash: String = digest.iter().take(4).map(|b| format!("{b:02X}")).collect();
    let mut name = format!("{prefix}-{hash}-{readable}");
    // Kubernetes names are ASCII, so any byte index is a char boundary; the loop keeps it safe anyway.
    let mut cut = MAX_NAME.min(name.len());
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    name.truncate(cut);
    name
}

fn protocol(p: Option<&str>) -> Option<&'static str> {
    match p.unwrap_or("TCP") {
        "TCP" => Some("tcp"),
        "UDP" => Some("udp"),
        "SCTP" => Some("sctp"),
        _ => None,
    }
}

/// Index the slices by (namespace, service name) so each service port finds its endpoints.
pub(crate) fn slices_by_service<E: Borrow<EndpointSlice>>(
    slices: &[E],
) -> BTreeMap<(String, String), Vec<&EndpointSlice>> {
    let mut out: BTreeMap<(String, String), Vec<&EndpointSlice>> = BTreeMap::new();
    for s in slices {
        let s: &EndpointSlice = s.borrow();
        if s.address_type != "IPv4" {
            continue;
        }
        let Some(svc) = s
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(SERVICE_NAME_LABEL))
        else {
            continue;
        };
        let ns = s.metadata.namespace.clone().unwrap_or_default();
        out.entry((ns, svc.clone())).or_default().push(s);
    }
    out
}

/// The endpoints of the service port named `port_name` with `proto`, deduplicated across slices.
fn endpoints_for(
    slices: &[&EndpointSlice],
    port_name: &str,
    proto: &str,
    node_name: &str,
) -> Vec<Endpoint> {
    let mut out: BTreeMap<(Ipv4Addr, i32), Endpoint> = BTreeMap::new();
    for slice in slices {
        let Some(port) = slice.ports.iter().flatten().find(|p| {
            p.name.as_deref().unwrap_or("") == port_name
                && protocol(p.protocol.as_deref()) == Some(proto)
        }) else {
            continue;
        };
        let Some(port) = port.port else { continue };
        for ep in &slice.endpoints {
            let Some(ip) = ep
                .addresses
                .first()
                .and_then(|a| a.parse::<Ipv4Addr>().ok())
            else {
                continue;
            };
            let c = ep.conditions.as_ref();
            // Upstream reads an unset `ready` as ready and an unset `serving` as `ready`.
            let ready = c.and_then(|c| c.ready).unwrap_or(true);
            let serving = c.and_then(|c| c.serving).unwrap_or(ready);
            let terminating = c.and_then(|c| c.terminating).unwrap_or(false);
            let local = !node_name.is_empty() && ep.node_name.as_deref() == Some(node_name);
            let e = Endpoint {
                ip,
                port,
                ready,
                serving,
                terminating,
                local,
            };
            // A duplicate across slices (mid-update) keeps the most usable copy.
            out.entry((ip, port))
                .and_modify(|old| {
                    if e.ready && !old.ready {
                        *old = e.clone();
                    }
                })
                .or_insert(e);
        }
    }
    out.into_values().collect()
}

/// The rules of a load-balancing chain (`service-…` or `local-…`): affinity lookups first, so a
/// remembered client skips the random pick among endpoint chains.
fn balance_rules(
    eps: &[&Endpoint],
    ep_chain: &dyn Fn(&Endpoint) -> String,
    affinity: Option<&dyn Fn(&Endpoint) -> String>,
) -> Vec<String> {
    let mut rules = Vec::new();
    if let Some(aff) = affinity {
        for e in eps {
            rules.push(format!("ip saddr @{} goto {}", aff(e), ep_chain(e)));
        }
    }
    let arms: Vec<String> = eps
        .iter()
        .enumerate()
        .map(|(i, e)| format!("{i} : goto {}", ep_chain(e)))
        .collect();
    rules.push(format!(
        "numgen random mod {} vmap {{ {} }}",
        eps.len(),
        arms.join(", ")
    ));
    rules
}

/// Build the desired rule model for `node` from all Services and EndpointSlices.
pub fn build<S: Borrow<Service>, E: Borrow<EndpointSlice>>(
    services: &[S],
    slices: &[E],
    node: &NodeInfo,
) -> Ruleset {
    let mut rs = Ruleset {
        nodeport_ips: node.node_ips.iter().copied().collect(),
        ..Ruleset::default()
    };
    let by_service = slices_by_service(slices);
    for svc in services {
        let svc: &Service = svc.borrow();
        let key = (
            svc.metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into()),
            svc.metadata.name.clone().unwrap_or_default(),
        );
        let slices = by_service.get(&key).map(Vec::as_slice).unwrap_or(&[]);
        add_service(&mut rs, svc, slices, node);
    }
    rs
}

/// Add the chains, sets and map elements of one Service (with its slices) to `rs`.
pub(crate) fn add_service(
    rs: &mut Ruleset,
    svc: &Service,
    slices: &[&EndpointSlice],
    node: &NodeInfo,
) {
    let Some(spec) = &svc.spec else { return };
    let ns = svc.metadata.namespace.as_deref().unwrap_or("default");
    let Some(name) = svc.metadata.name.as_deref() else {
        return;
    };
    if spec.type_.as_deref() == Some("ExternalName") {
        return;
    }
    if svc
        .metadata
        .labels
        .as_ref()
        .is_some_and(|l| l.contains_key(SERVICE_PROXY_NAME_LABEL))
    {
        return;
    }
    // Headless services (and dual-stack's IPv6 ClusterIPs) get no proxying.
    let Some(cluster_ip) = spec
        .cluster_ip
        .as_deref()
        .and_then(|ip| ip.parse::<Ipv4Addr>().ok())
    else {
        return;
    };
    let svc_type = spec.type_.as_deref().unwrap_or("ClusterIP");
    let external_type = svc_type == "NodePort" || svc_type == "LoadBalancer";
    let etp_local = external_type && spec.external_traffic_policy.as_deref() == Some("Local");
    let itp_local = spec.internal_traffic_policy.as_deref() == Some("Local");
    let affinity_timeout = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
        spec.session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds)
            .unwrap_or(DEFAULT_AFFINITY_TIMEOUT_SECONDS)
    });
    let mut external_ips: Vec<Ipv4Addr> = spec
        .external_ips
        .iter()
        .flatten()
        .filter_map(|ip| ip.parse().ok())
        .collect();
    if svc_type == "LoadBalancer" {
        let ingress = svc
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref());
        external_ips.extend(
            ingress
                .into_iter()
                .flatten()
                .filter_map(|i| i.ip.as_deref())
                .filter_map(|ip| ip.parse::<Ipv4Addr>().ok()),
        );
    }
    for port in spec.ports.iter().flatten() {
        let Some(proto) = protocol(port.protocol.as_deref()) else {
            continue;
        };
        let port_name = port.name.as_deref().unwrap_or("");
        let spn = format!("{ns}/{name}/{proto}/{port_name}");
        let all = endpoints_for(slices, port_name, proto, &node.node_name);
        let cluster_eps = usable(all.iter());
        let local_eps = usable(all.iter().filter(|e| e.local));

        let ep_chain = |e: &Endpoint| hashed("endpoint", &format!("{spn}__{}/{}", e.ip, e.port));
        let aff_set = |e: &Endpoint| hashed("affinity", &format!("{spn}__{}/{}", e.ip, e.port));
        let affinity: Option<&dyn Fn(&Endpoint) -> String> =
            affinity_timeout.map(|_| &aff_set as &dyn Fn(&Endpoint) -> String);

        // Endpoint chains for every endpoint some policy chain may pick.
        let mut chosen: BTreeSet<&Endpoint> = cluster_eps.iter().copied().collect();
        if etp_local || itp_local {
            chosen.extend(local_eps.iter().copied());
        }
        for e in &chosen {
            let mut rules = vec![format!("ip saddr {} jump mark-for-masquerade", e.ip)];
            if let Some(timeout) = affinity_timeout {
                let set = aff_set(e);
                rules.push(format!("update @{set} {{ ip saddr }}"));
                rs.affinity_sets.insert(set, timeout);
            }
            rules.push(format!("meta l4proto {proto} dnat to {}:{}", e.ip, e.port));
            rs.chains.insert(ep_chain(e), rules);
        }

        let cluster_chain = hashed("service", &spn);
        let local_chain = hashed("local", &spn);
        if !cluster_eps.is_empty() {
            let mut rules = Vec::new();
            if let Some(cidr) = node.cluster_cidr {
                rules.push(format!(
                    "ip daddr {cluster_ip} {proto} dport {} ip saddr != {cidr} jump mark-for-masquerade",
                    port.port
                ));
            }
            rules.extend(balance_rules(&cluster_eps, &ep_chain, affinity));
            rs.chains.insert(cluster_chain.clone(), rules);
        }
        if (etp_local || itp_local) && !local_eps.is_empty() {
            rs.chains.insert(
                local_chain.clone(),
                balance_rules(&local_eps, &ep_chain, affinity),
            );
        }

        // With endpoints elsewhere but none here, a Local policy drops (the client may retry
        // another node); with no endpoints at all the client is told at once (reject).
        let empty_verdict = if cluster_eps.is_empty() {
            "goto reject-chain".to_string()
        } else {
            "drop".to_string()
        };

        let key = format!("{cluster_ip} . {proto} . {}", port.port);
        let (internal_chain, internal_eps) = if itp_local {
            (&local_chain, &local_eps)
        } else {
            (&cluster_chain, &cluster_eps)
        };
        if internal_eps.is_empty() {
            rs.element(NO_ENDPOINT_SERVICES, key, empty_verdict.clone());
        } else {
            rs.element(SERVICE_IPS, key, format!("goto {internal_chain}"));
        }

        let node_port = port.node_port.filter(|p| external_type && *p > 0);
        if external_ips.is_empty() && node_port.is_none() {
            continue;
        }
        let external_eps = if etp_local { &local_eps } else { &cluster_eps };
        let external_chain = hashed("external", &spn);
        if !external_eps.is_empty() {
            let mut rules = Vec::new();
            if etp_local {
                // Pods and the node itself are not "external": they may use any endpoint,
                // and only the node's own traffic needs masquerading to get replies back.
                if let Some(cidr) = node.cluster_cidr {
                    rules.push(format!("ip saddr {cidr} goto {cluster_chain}"));
                }
                rules.push("fib saddr type local jump mark-for-masquerade".to_string());
                rules.push(format!("fib saddr type local goto {cluster_chain}"));
                rules.push(format!("goto {local_chain}"));
            } else {
                rules.push("jump mark-for-masquerade".to_string());
                rules.push(format!("goto {cluster_chain}"));
            }
            rs.chains.insert(external_chain.clone(), rules);
        }
        for ip in &external_ips {
            let key = format!("{ip} . {proto} . {}", port.port);
            if external_eps.is_empty() {
                rs.element(NO_ENDPOINT_SERVICES, key, empty_verdict.clone());
            } else {
                rs.element(SERVICE_IPS, key, format!("goto {external_chain}"));
            }
        }
        if let Some(np) = node_port {
            let key = format!("{proto} . {np}");
            if external_eps.is_empty() {
                rs.element(NO_ENDPOINT_NODEPORTS, key, empty_verdict.clone());
            } else {
                rs.element(SERVICE_NODEPORTS, key, format!("goto {external_chain}"));
            }
        }
    }
}

#[cfg(test)]
#[path = "model_tests.rs"]
pub(crate) mod tests;
