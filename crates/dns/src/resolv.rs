//! resolv.conf: reading the node's, picking upstream resolvers from it, and rendering a pod's
//! per `dnsPolicy` and `dnsConfig` as the kubelet does (pkg/kubelet/network/dns).

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use k8s_openapi::api::core::v1::Pod;

/// The node's resolver configuration.
pub const HOST_RESOLV_CONF: &str = "/etc/resolv.conf";
/// systemd-resolved's list of the real upstreams, behind its 127.0.0.53 stub.
pub const SYSTEMD_RESOLV_CONF: &str = "/run/systemd/resolve/resolv.conf";

/// At most this many nameservers are written (glibc reads three).
const MAX_NAMESERVERS: usize = 3;
/// Search path limits of the kubelet (MaxDNSSearchPaths, MaxDNSSearchListChars).
const MAX_SEARCHES: usize = 32;
const MAX_SEARCH_CHARS: usize = 2048;

/// The parts of a resolv.conf Kubernetes cares about.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResolvConf {
    pub nameservers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

impl ResolvConf {
    /// Parse resolv.conf text; `domain` counts as a search list, the last `search` wins.
    pub fn parse(text: &str) -> ResolvConf {
        let mut conf = ResolvConf::default();
        for line in text.lines() {
            let line = line.split(['#', ';']).next().unwrap_or("");
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => conf.nameservers.extend(words.next().map(str::to_string)),
                Some("search") | Some("domain") => {
                    conf.searches = words.map(str::to_string).collect();
                }
                Some("options") => conf.options.extend(words.map(str::to_string)),
                _ => {}
            }
        }
        conf
    }

    /// The node's configuration: `/etc/resolv.conf`, or systemd-resolved's upstream list when
    /// the former only names the local stub (which pods and other namespaces cannot reach).
    pub fn read_node() -> std::io::Result<ResolvConf> {
        let primary = ResolvConf::parse(&std::fs::read_to_string(HOST_RESOLV_CONF)?);
        if primary.only_stub() && Path::new(SYSTEMD_RESOLV_CONF).exists() {
            let real = ResolvConf::parse(&std::fs::read_to_string(SYSTEMD_RESOLV_CONF)?);
            if !real.nameservers.is_empty() {
                return Ok(ResolvConf {
                    nameservers: real.nameservers,
                    ..primary
                });
            }
        }
        Ok(primary)
    }

    fn only_stub(&self) -> bool {
        !self.nameservers.is_empty() && self.nameservers.iter().all(|n| is_stub(n))
    }

    /// The nameservers as port-53 socket addresses (unparseable entries skipped).
    pub fn upstreams(&self) -> Vec<SocketAddr> {
        self.nameservers
            .iter()
            .filter_map(|n| n.parse::<IpAddr>().ok())
            .map(|ip| SocketAddr::new(ip, 53))
            .collect()
    }

    /// Render in the order containerd's CRI plugin writes it.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if !self.searches.is_empty() {
            out.push_str(&format!("search {}\n", self.searches.join(" ")));
        }
        for ns in &self.nameservers {
            out.push_str(&format!("nameserver {ns}\n"));
        }
        if !self.options.is_empty() {
            out.push_str(&format!("options {}\n", self.options.join(" ")));
        }
        out
    }
}

/// systemd-resolved's stub listeners.
fn is_stub(nameserver: &str) -> bool {
    matches!(nameserver, "127.0.0.53" | "127.0.0.54")
}

/// Upstreams for the cluster DNS from the node's resolv.conf (see [`ResolvConf::read_node`]).
pub fn upstreams_from_host() -> std::io::Result<Vec<SocketAddr>> {
    Ok(ResolvConf::read_node()?.upstreams())
}

/// The cluster side of pod DNS: the kubelet's `clusterDNS` and `clusterDomain`.
#[derive(Clone, Debug)]
pub struct ClusterDns {
    pub nameservers: Vec<IpAddr>,
    pub domain: String,
}

/// Which configuration a pod gets (kubelet `podDNSType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PodDnsType {
    Cluster,
    Host,
    None,
}

/// The kubelet's choice: ClusterFirst on the host network means Default, and ClusterFirst
/// without a cluster DNS configured also falls back to the node's.
pub fn pod_dns_type(policy: Option<&str>, host_network: bool, cluster_dns: bool) -> PodDnsType {
    let kind = match policy.unwrap_or("ClusterFirst") {
        "None" => PodDnsType::None,
        "ClusterFirstWithHostNet" => PodDnsType::Cluster,
        "Default" => PodDnsType::Host,
        // "ClusterFirst" and anything unknown (validation rejects those).
        _ if host_network => PodDnsType::Host,
        _ => PodDnsType::Cluster,
    };
    if kind == PodDnsType::Cluster && !cluster_dns {
        PodDnsType::Host
    } else {
        kind
    }
}

fn push_unique(list: &mut Vec<String>, item: String) {
    if !list.contains(&item) {
        list.push(item);
    }
}

/// A pod's resolv.conf, as the kubelet computes it from `dnsPolicy`, `hostNetwork` and
/// `dnsConfig`, the cluster's DNS, and the node's resolv.conf.
pub fn pod_resolv_conf(pod: &Pod, cluster: &ClusterDns, host: &ResolvConf) -> ResolvConf {
    let spec = pod.spec.as_ref();
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let kind = pod_dns_type(
        spec.and_then(|s| s.dns_policy.as_deref()),
        spec.and_then(|s| s.host_network).unwrap_or(false),
        !cluster.nameservers.is_empty(),
    );
    let mut conf = match kind {
        PodDnsType::None => ResolvConf::default(),
        PodDnsType::Host => host.clone(),
        PodDnsType::Cluster => {
            let domain = cluster.domain.trim_end_matches('.');
            let mut searches = vec![
                format!("{namespace}.svc.{domain}"),
                format!("svc.{domain}"),
                domain.to_string(),
            ];
            for s in &host.searches {
                push_unique(&mut searches, s.clone());
            }
            ResolvConf {
                nameservers: cluster
                    .nameservers
                    .iter()
                    .map(|ip| ip.to_string())
                    .collect(),
                searches,
                options: vec!["ndots:5".to_string()],
            }
        }
    };
    if let Some(extra) = spec.and_then(|s| s.dns_config.as_ref()) {
        for ns in extra.nameservers.iter().flatten() {
            push_unique(&mut conf.nameservers, ns.clone());
        }
        for s in extra.searches.iter().flatten() {
            push_unique(&mut conf.searches, s.clone());
        }
        for opt in extra.options.iter().flatten() {
            let Some(name) = opt.name.as_deref() else {
                continue;
            };
            let rendered = match opt.value.as_deref() {
                Some(v) if !v.is_empty() => format!("{name}:{v}"),
                _ => name.to_string(),
            };
            // Same name: the pod's value replaces the inherited one in place.
            match conf
                .options
                .iter_mut()
                .find(|o| o.split(':').next() == Some(name))
            {
                Some(existing) => *existing = rendered,
                None => conf.options.push(rendered),
            }
        }
    }
    conf.nameservers.truncate(MAX_NAMESERVERS);
    conf.searches.truncate(MAX_SEARCHES);
    while conf.searches.iter().map(|s| s.len() + 1).sum::<usize>() > MAX_SEARCH_CHARS {
        conf.searches.pop();
    }
    conf
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(
            json!({"metadata": {"name": "p", "namespace": "team"}, "spec": spec}),
        )
        .expect("pod")
    }

    fn cluster() -> ClusterDns {
        ClusterDns {
            nameservers: vec!["10.96.0.10".parse().expect("ip")],
            domain: "cluster.local".into(),
        }
    }

    fn host() -> ResolvConf {
        ResolvConf::parse(
            "# generated\nnameserver 192.168.1.1\nnameserver 192.168.1.2\nsearch corp.example lab.example\noptions edns0 timeout:2\n",
        )
    }

    #[test]
    fn cluster_first_uses_cluster_dns_search_paths_and_ndots_5() {
        let conf = pod_resolv_conf(&pod(json!({"containers": []})), &cluster(), &host());
        assert_eq!(
            conf.render(),
            "search team.svc.cluster.local svc.cluster.local cluster.local corp.example lab.example\n\
             nameserver 10.96.0.10\noptions ndots:5\n"
        );
    }

    #[test]
    fn cluster_first_on_host_network_is_default_unless_with_host_net() {
        let hostnet = pod(json!({"containers": [], "hostNetwork": true}));
        assert_eq!(pod_resolv_conf(&hostnet, &cluster(), &host()), host());
        let with = pod(json!({"containers": [], "hostNetwork": true,
                               "dnsPolicy": "ClusterFirstWithHostNet"}));
        assert_eq!(
            pod_resolv_conf(&with, &cluster(), &host()).nameservers,
            ["10.96.0.10"]
        );
    }

    #[test]
    fn default_policy_is_the_nodes_resolv_conf() {
        let p = pod(json!({"containers": [], "dnsPolicy": "Default"}));
        let conf = pod_resolv_conf(&p, &cluster(), &host());
        assert_eq!(
            conf.render(),
            "search corp.example lab.example\nnameserver 192.168.1.1\nnameserver 192.168.1.2\noptions edns0 timeout:2\n"
        );
    }

    #[test]
    fn no_cluster_dns_falls_back_to_the_node() {
        let none = ClusterDns {
            nameservers: vec![],
            domain: "cluster.local".into(),
        };
        assert_eq!(
            pod_resolv_conf(&pod(json!({"containers": []})), &none, &host()),
            host()
        );
    }

    #[test]
    fn none_policy_takes_only_dns_config() {
        let p = pod(json!({"containers": [], "dnsPolicy": "None", "dnsConfig": {
            "nameservers": ["1.1.1.1"], "searches": ["a.example"],
            "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]}}));
        assert_eq!(
            pod_resolv_conf(&p, &cluster(), &host()).render(),
            "search a.example\nnameserver 1.1.1.1\noptions ndots:2 edns0\n"
        );
    }

    #[test]
    fn dns_config_merges_deduplicates_and_overrides_options() {
        let p = pod(json!({"containers": [], "dnsConfig": {
            "nameservers": ["10.96.0.10", "1.1.1.1", "8.8.8.8", "9.9.9.9"],
            "searches": ["svc.cluster.local", "extra.example"],
            "options": [{"name": "ndots", "value": "1"}, {"name": "single-request-reopen"}]}}));
        let conf = pod_resolv_conf(&p, &cluster(), &host());
        // Duplicates dropped, then at most three nameservers.
        assert_eq!(conf.nameservers, ["10.96.0.10", "1.1.1.1", "8.8.8.8"]);
        assert_eq!(
            conf.searches,
            [
                "team.svc.cluster.local",
                "svc.cluster.local",
                "cluster.local",
                "corp.example",
                "lab.example",
                "extra.example"
            ]
        );
        assert_eq!(conf.options, ["ndots:1", "single-request-reopen"]);
    }

    #[test]
    fn search_list_is_capped_at_32_domains() {
        let many: Vec<String> = (0..40).map(|i| format!("d{i}.example")).collect();
        let p = pod(json!({"containers": [], "dnsPolicy": "None",
                            "dnsConfig": {"searches": many}}));
        assert_eq!(pod_resolv_conf(&p, &cluster(), &host()).searches.len(), 32);
    }

    #[test]
    fn upstreams_skip_comments_and_use_port_53() {
        let conf = ResolvConf::parse("nameserver 10.0.0.2 # office\nnameserver bogus\n");
        assert_eq!(
            conf.upstreams(),
            ["10.0.0.2:53".parse::<SocketAddr>().expect("addr")]
        );
        assert!(ResolvConf::parse("nameserver 127.0.0.53\n").only_stub());
        assert!(!ResolvConf::parse("nameserver 127.0.0.53\nnameserver 1.1.1.1\n").only_stub());
    }
}
