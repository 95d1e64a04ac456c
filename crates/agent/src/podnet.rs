//! Pod-to-pod traffic across nodes without NAT (DESIGN.md §7, rule 1): every other node's
//! podCIDR is routed to that node. `host-gw` routes it via the node's address (nodes on one L2
//! segment); `vxlan` sends it through a VXLAN device (VNI 1, UDP 8472, as flannel) whose MAC each
//! node publishes in the annotation `skiff.dev/vtep-mac`, with static neighbour and FDB entries,
//! so nodes need only reach each other by IP. Routes follow Nodes joining, changing and leaving.
//! Our routes carry their own protocol number, so a restarted agent finds and replaces the
//! routes of its previous run instead of leaving stale ones.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::process::Stdio;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::runtime::watcher;
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

/// The routing protocol number marking our routes (`ip route show proto 158`).
pub const ROUTE_PROTO: &str = "158";
/// The VXLAN device.
pub const VXLAN_DEVICE: &str = "skiff.vxlan";
/// The annotation carrying a node's VXLAN device MAC.
pub const VTEP_MAC_ANNOTATION: &str = "skiff.dev/vtep-mac";
const VXLAN_ID: &str = "1";
const VXLAN_PORT: &str = "8472";

/// How pods on different nodes reach each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Route each podCIDR via its node's address.
    HostGw,
    /// Route each podCIDR through a VXLAN overlay.
    Vxlan,
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Mode, String> {
        match s {
            "host-gw" => Ok(Mode::HostGw),
            "vxlan" => Ok(Mode::Vxlan),
            other => Err(format!("pod network {other:?}: use host-gw or vxlan")),
        }
    }
}

/// What we know of another node: its podCIDR, address, and (for VXLAN) device MAC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// `10.244.3.0/24`.
    pub pod_cidr: String,
    /// InternalIP.
    pub ip: Ipv4Addr,
    /// The VXLAN device's MAC, when the node published one.
    pub vtep_mac: Option<String>,
}

/// Peers by node name: every node but `me` with a podCIDR and an IPv4 InternalIP.
pub fn peers<'a>(nodes: impl IntoIterator<Item = &'a Node>, me: &str) -> BTreeMap<String, Peer> {
    nodes
        .into_iter()
        .filter(|n| n.metadata.name.as_deref() != Some(me))
        .filter(|n| n.metadata.deletion_timestamp.is_none())
        .filter_map(|n| {
            let name = n.metadata.name.clone()?;
            let pod_cidr = n.spec.as_ref()?.pod_cidr.clone()?;
            let ip = n
                .status
                .as_ref()?
                .addresses
                .as_ref()?
                .iter()
                .find(|a| a.type_ == "InternalIP")
                .and_then(|a| a.address.parse().ok())?;
            let vtep_mac = n
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(VTEP_MAC_ANNOTATION))
                .cloned();
            Some((
                name,
                Peer {
                    pod_cidr,
                    ip,
                    vtep_mac,
                },
            ))
        })
        .collect()
}

/// The first address of a CIDR (`10.244.3.0/24` → `10.244.3.0`): the VXLAN gateway name of a
/// node, as flannel uses it.
fn network_address(cidr: &str) -> Option<Ipv4Addr> {
    cidr.split('/').next()?.parse().ok()
}

/// The `ip` commands (arguments only) that make this node's routes match `peers`, given the
/// podCIDRs our routes currently cover (`installed`).
pub fn commands(
    mode: Mode,
    peers: &BTreeMap<String, Peer>,
    installed: &[String],
) -> Vec<Vec<String>> {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let mut out = Vec::new();
    for peer in peers.values() {
        match mode {
            Mode::HostGw => out.push(s(&[
                "route",
                "replace",
                &peer.pod_cidr,
                "via",
                &peer.ip.to_string(),
                "proto",
                ROUTE_PROTO,
            ])),
            Mode::Vxlan => {
                let (Some(mac), Some(gw)) = (&peer.vtep_mac, network_address(&peer.pod_cidr))
                else {
                    continue;
                };
                let gw = gw.to_string();
                out.push(s(&[
                    "neigh",
                    "replace",
                    &gw,
                    "lladdr",
                    mac,
                    "dev",
                    VXLAN_DEVICE,
                    "nud",
                    "permanent",
                ]));
                out.push(s(&[
                    "bridge",
                    "fdb",
                    "replace",
                    mac,
                    "dev",
                    VXLAN_DEVICE,
                    "dst",
                    &peer.ip.to_string(),
                    "self",
                    "permanent",
                ]));
                out.push(s(&[
                    "route",
                    "replace",
                    &peer.pod_cidr,
                    "via",
                    &gw,
                    "dev",
                    VXLAN_DEVICE,
                    "onlink",
                    "proto",
                    ROUTE_PROTO,
                ]));
            }
        }
    }
    for cidr in installed {
        if !peers.values().any(|p| &p.pod_cidr == cidr) {
            out.push(s(&["route", "del", cidr, "proto", ROUTE_PROTO]));
        }
    }
    out
}

/// Run `ip <args>` (or `bridge …` when the first word is `bridge`).
async fn ip(args: &[String]) -> Result<(), String> {
    let (program, rest) = match args.first().map(String::as_str) {
        Some("bridge") => ("bridge", &args[1..]),
        _ => ("ip", args),
    };
    let out = Command::new(program)
        .args(rest)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {}: {}",
            rest.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The podCIDRs our routes cover now.
async fn installed() -> Vec<String> {
    let out = Command::new("ip")
        .args(["-4", "route", "show", "proto", ROUTE_PROTO])
        .output()
        .await;
    let Ok(out) = out else { return Vec::new() };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// Create (or keep) the VXLAN device bound to `local`, with `pod_cidr`'s first address, and
/// return its MAC for the Node annotation.
pub async fn ensure_vxlan(local: Ipv4Addr, pod_cidr: &str) -> Result<String, String> {
    let exists = Command::new("ip")
        .args(["link", "show", VXLAN_DEVICE])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .is_ok_and(|s| s.success());
    if !exists {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        ip(&s(&[
            "link",
            "add",
            VXLAN_DEVICE,
            "type",
            "vxlan",
            "id",
            VXLAN_ID,
            "local",
            &local.to_string(),
            "dstport",
            VXLAN_PORT,
            "nolearning",
        ]))
        .await?;
    }
    let gw = network_address(pod_cidr).ok_or_else(|| format!("bad podCIDR {pod_cidr}"))?;
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    ip(&s(&[
        "addr",
        "replace",
        &format!("{gw}/32"),
        "dev",
        VXLAN_DEVICE,
    ]))
    .await?;
    ip(&s(&["link", "set", VXLAN_DEVICE, "up"])).await?;
    // Not /sys/class/net: an agent started with `nsenter --net` still sees the sysfs of the
    // namespace it came from; `ip` asks the kernel over netlink in our own namespace.
    let out = Command::new("ip")
        .args(["-o", "link", "show", VXLAN_DEVICE])
        .output()
        .await
        .map_err(|e| format!("ip link show: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .map(str::to_string)
        .ok_or_else(|| format!("no MAC on {VXLAN_DEVICE}: {text}"))
}

/// Keep this node's routes to every other node's pods until `shutdown`. The routes stay when
/// the agent stops (pods keep talking), and are replaced by the next run.
pub async fn run(client: kube::Client, me: String, mode: Mode, shutdown: CancellationToken) {
    let nodes: Api<Node> = Api::all(client);
    let mut known: BTreeMap<String, Node> = BTreeMap::new();
    let mut applied: Option<BTreeMap<String, Peer>> = None;
    let stream = watcher::watcher(nodes, watcher::Config::default());
    let mut stream = std::pin::pin!(stream);
    let mut listing: BTreeMap<String, Node> = BTreeMap::new();
    loop {
        let event = tokio::select! {
            e = stream.next() => e,
            _ = shutdown.cancelled() => return,
        };
        let Some(event) = event else { return };
        match event {
            Ok(watcher::Event::Apply(n)) => {
                known.insert(n.metadata.name.clone().unwrap_or_default(), n);
            }
            Ok(watcher::Event::Delete(n)) => {
                known.remove(n.metadata.name.as_deref().unwrap_or_default());
            }
            Ok(watcher::Event::Init) => {
                listing.clear();
                continue;
            }
            Ok(watcher::Event::InitApply(n)) => {
                listing.insert(n.metadata.name.clone().unwrap_or_default(), n);
                continue;
            }
            Ok(watcher::Event::InitDone) => {
                known = std::mem::take(&mut listing);
            }
            Err(e) => {
                tracing::warn!(error = %e, "node watch failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                    _ = shutdown.cancelled() => return,
                }
                continue;
            }
        }
        let desired = peers(known.values(), &me);
        if applied.as_ref() == Some(&desired) {
            continue;
        }
        let started = std::time::Instant::now();
        let mut failed = false;
        for cmd in commands(mode, &desired, &installed().await) {
            if let Err(e) = ip(&cmd).await {
                tracing::warn!(error = %e, "pod network route");
                failed = true;
            }
        }
        tracing::info!(
            peers = desired.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "pod network routes synced"
        );
        // After a failure the next node event retries everything.
        applied = (!failed).then_some(desired);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, cidr: Option<&str>, ip: &str, mac: Option<&str>) -> Node {
        let mut annotations = serde_json::Map::new();
        if let Some(m) = mac {
            annotations.insert(VTEP_MAC_ANNOTATION.into(), json!(m));
        }
        serde_json::from_value(json!({
            "metadata": {"name": name, "annotations": annotations},
            "spec": {"podCIDR": cidr},
            "status": {"addresses": [
                {"type": "Hostname", "address": name},
                {"type": "InternalIP", "address": ip},
            ]},
        }))
        .expect("node")
    }

    #[test]
    fn every_other_node_with_a_pod_cidr_is_a_peer() {
        let nodes = [
            node("a", Some("10.244.1.0/24"), "10.0.0.11", None),
            node("b", Some("10.244.2.0/24"), "10.0.0.12", None),
            node("c", None, "10.0.0.13", None),
        ];
        let p = peers(&nodes, "a");
        assert_eq!(p.keys().collect::<Vec<_>>(), ["b"]);
        assert_eq!(p["b"].ip, Ipv4Addr::new(10, 0, 0, 12));
    }

    #[test]
    fn host_gw_routes_each_pod_cidr_via_its_node_and_removes_departed_ones() {
        let nodes = [node("b", Some("10.244.2.0/24"), "10.0.0.12", None)];
        let cmds = commands(
            Mode::HostGw,
            &peers(&nodes, "a"),
            &["10.244.2.0/24".into(), "10.244.9.0/24".into()],
        );
        let text: Vec<String> = cmds.iter().map(|c| c.join(" ")).collect();
        assert_eq!(
            text,
            [
                "route replace 10.244.2.0/24 via 10.0.0.12 proto 158",
                "route del 10.244.9.0/24 proto 158",
            ]
        );
    }

    #[test]
    fn vxlan_programs_neighbour_fdb_and_onlink_route_once_the_peer_published_its_mac() {
        let nodes = [
            node(
                "b",
                Some("10.244.2.0/24"),
                "10.0.0.12",
                Some("aa:bb:cc:dd:ee:02"),
            ),
            node("c", Some("10.244.3.0/24"), "10.0.0.13", None),
        ];
        let text: Vec<String> = commands(Mode::Vxlan, &peers(&nodes, "a"), &[])
            .iter()
            .map(|c| c.join(" "))
            .collect();
        assert_eq!(
            text,
            [
                "neigh replace 10.244.2.0 lladdr aa:bb:cc:dd:ee:02 dev skiff.vxlan nud permanent",
                "bridge fdb replace aa:bb:cc:dd:ee:02 dev skiff.vxlan dst 10.0.0.12 self permanent",
                "route replace 10.244.2.0/24 via 10.244.2.0 dev skiff.vxlan onlink proto 158",
            ]
        );
    }
}
