//! The node's share of the network model beyond its own pods (DESIGN.md §7): the Service proxy
//! (`skiff-proxy`, kube-proxy's nftables mode) for ClusterIP, NodePort and LoadBalancer
//! addresses, and masquerade of pod traffic leaving the cluster network, in a table of its own.
//! Everything here lives in the agent's network namespace and survives an agent restart; the
//! next run replaces it in one transaction.

use std::net::{IpAddr, Ipv4Addr};

use tokio::process::Command;
use tokio_util::sync::CancellationToken;

/// The table holding the pod egress masquerade.
const EGRESS_TABLE: &str = "skiff-egress";

/// Forwarding and bridge settings the proxy relies on, in this network namespace only.
async fn sysctls() {
    for (key, value) in [
        ("net/ipv4/ip_forward", "1"),
        // Without this the kernel answers a pod's packet to a Service with no endpoints with an
        // ICMP redirect, which exhausts the ICMP rate limit before the proxy's reject is seen.
        ("net/ipv4/conf/all/send_redirects", "0"),
    ] {
        let path = format!("/proc/sys/{key}");
        if let Err(e) = tokio::fs::write(&path, value).await {
            tracing::warn!(%path, error = %e, "sysctl");
        }
    }
}

/// The Service CIDR (DESIGN.md §11).
const SERVICE_CIDR: &str = "10.96.0.0/12";

/// Processes on the node (host-network pods, the agent's probes) reach ClusterIPs only if the
/// kernel finds a route before the proxy's output hook rewrites the destination. A host with a
/// default route has one; a node namespace without one (as in `skiff cluster`) gets a route for
/// the Service CIDR on the interface carrying the node's address.
async fn service_route(node_ip: Ipv4Addr) {
    let routed = Command::new("ip")
        .args(["route", "get", "10.96.0.1"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .await
        .is_ok_and(|s| s.success());
    if routed {
        return;
    }
    let Ok(out) = Command::new("ip")
        .args(["-o", "-4", "addr", "show"])
        .output()
        .await
    else {
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let needle = format!("inet {node_ip}/");
    let Some(dev) = text
        .lines()
        .find(|l| l.contains(&needle))
        .and_then(|l| l.split_whitespace().nth(1))
    else {
        tracing::warn!(%node_ip, "no interface carries the node address; no Service route added");
        return;
    };
    let added = Command::new("ip")
        .args(["route", "replace", SERVICE_CIDR, "dev", dev])
        .status()
        .await
        .is_ok_and(|s| s.success());
    if !added {
        tracing::warn!(dev, "adding the Service CIDR route failed");
    }
}

/// Masquerade what pods send outside the cluster CIDR (pod-to-external, rule 4).
async fn egress_masquerade(cluster_cidr: &str) {
    let script = format!(
        "table ip {EGRESS_TABLE}\ndelete table ip {EGRESS_TABLE}\ntable ip {EGRESS_TABLE} {{\n  chain postrouting {{\n    type nat hook postrouting priority srcnat; policy accept;\n    ip saddr {cluster_cidr} ip daddr != {cluster_cidr} masquerade\n  }}\n}}\n"
    );
    let child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let Ok(mut child) = child else {
        tracing::error!("nft is not installed: pods cannot reach outside the cluster");
        return;
    };
    if let Some(mut stdin) = child.stdin.take() {
        use tokio::io::AsyncWriteExt;
        let _ = stdin.write_all(script.as_bytes()).await;
    }
    match child.wait_with_output().await {
        Ok(out) if out.status.success() => {}
        Ok(out) => tracing::error!(
            error = %String::from_utf8_lossy(&out.stderr).trim(),
            "pod egress masquerade"
        ),
        Err(e) => tracing::error!(error = %e, "pod egress masquerade"),
    }
}

/// Program Services and pod egress for node `node_name` at `node_ip` until `shutdown`.
pub async fn run(
    client: kube::Client,
    node_name: String,
    node_ip: IpAddr,
    cluster_cidr: String,
    shutdown: CancellationToken,
) {
    sysctls().await;
    egress_masquerade(&cluster_cidr).await;
    let IpAddr::V4(ip) = node_ip else {
        tracing::error!(%node_ip, "the Service proxy needs an IPv4 node address");
        return;
    };
    service_route(ip).await;
    let node = skiff_proxy::NodeInfo {
        node_name,
        node_ips: vec![ip, Ipv4Addr::LOCALHOST]
            .into_iter()
            .filter(|a| !a.is_loopback())
            .collect(),
        cluster_cidr: cluster_cidr.parse().ok(),
    };
    if let Err(e) = skiff_proxy::run(client, skiff_proxy::ProxyConfig::new(node), shutdown).await {
        tracing::error!(error = %e, "Service proxy stopped");
    }
}
