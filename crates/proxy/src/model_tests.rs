//! Unit tests of the rule model and the scripts rendered from it.

use super::*;
use crate::script;
use k8s_openapi::api::core::v1::{
    ClientIPConfig, LoadBalancerIngress, LoadBalancerStatus, ServicePort, ServiceSpec,
    ServiceStatus, SessionAffinityConfig,
};
use k8s_openapi::api::discovery::v1::{
    Endpoint as SliceEndpoint, EndpointConditions, EndpointPort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

pub(crate) fn node() -> NodeInfo {
    NodeInfo {
        node_name: "node-a".into(),
        node_ips: vec!["192.168.77.1".parse().expect("valid literal")],
        cluster_cidr: Some("10.244.0.0/16".parse().expect("valid literal")),
    }
}

/// A Service `ns/name` with ClusterIP `ip` and ports (name, port, protocol, nodePort).
pub(crate) fn svc(name: &str, ip: &str, ports: &[(&str, i32, &str, i32)]) -> Service {
    Service {
        metadata: ObjectMeta {
            namespace: Some("default".into()),
            name: Some(name.into()),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            cluster_ip: Some(ip.into()),
            type_: Some(
                if ports.iter().any(|p| p.3 > 0) {
                    "NodePort"
                } else {
                    "ClusterIP"
                }
                .into(),
            ),
            ports: Some(
                ports
                    .iter()
                    .map(|(n, p, proto, np)| ServicePort {
                        name: (!n.is_empty()).then(|| n.to_string()),
                        port: *p,
                        protocol: Some(proto.to_string()),
                        node_port: (*np > 0).then_some(*np),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        status: None,
    }
}

#[derive(Clone, Copy)]
pub(crate) struct Ep {
    ip: &'static str,
    node: &'static str,
    ready: bool,
    serving: bool,
    terminating: bool,
}

pub(crate) fn ready(ip: &'static str, node: &'static str) -> Ep {
    Ep {
        ip,
        node,
        ready: true,
        serving: true,
        terminating: false,
    }
}

/// A slice of service `svc` with ports (name, port, protocol).
pub(crate) fn slice(
    name: &str,
    svc: &str,
    ports: &[(&str, i32, &str)],
    eps: &[Ep],
) -> EndpointSlice {
    EndpointSlice {
        metadata: ObjectMeta {
            namespace: Some("default".into()),
            name: Some(name.into()),
            labels: Some([(SERVICE_NAME_LABEL.to_string(), svc.to_string())].into()),
            ..Default::default()
        },
        address_type: "IPv4".into(),
        ports: Some(
            ports
                .iter()
                .map(|(n, p, proto)| EndpointPort {
                    name: (!n.is_empty()).then(|| n.to_string()),
                    port: Some(*p),
                    protocol: Some(proto.to_string()),
                    ..Default::default()
                })
                .collect(),
        ),
        endpoints: eps
            .iter()
            .map(|e| SliceEndpoint {
                addresses: vec![e.ip.into()],
                node_name: Some(e.node.into()),
                conditions: Some(EndpointConditions {
                    ready: Some(e.ready),
                    serving: Some(e.serving),
                    terminating: Some(e.terminating),
                }),
                ..Default::default()
            })
            .collect(),
    }
}

pub(crate) fn web() -> (Service, EndpointSlice) {
    (
        svc("web", "10.96.0.20", &[("http", 80, "TCP", 0)]),
        slice(
            "web-1",
            "web",
            &[("http", 8080, "TCP")],
            &[
                ready("10.244.1.10", "node-a"),
                ready("10.244.2.10", "node-b"),
            ],
        ),
    )
}

fn chain_named<'a>(rs: &'a Ruleset, prefix: &str) -> Vec<(&'a String, &'a Vec<String>)> {
    rs.chains
        .iter()
        .filter(|(n, _)| n.starts_with(prefix))
        .collect()
}

fn only_chain<'a>(rs: &'a Ruleset, prefix: &str) -> (&'a String, &'a Vec<String>) {
    let c = chain_named(rs, prefix);
    assert_eq!(c.len(), 1, "one chain {prefix}*: {:#?}", rs.chains);
    c[0]
}

fn map<'a>(rs: &'a Ruleset, name: &str) -> Vec<(&'a str, &'a str)> {
    rs.maps
        .get(name)
        .map(|m| m.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect())
        .unwrap_or_default()
}

#[test]
fn cluster_ip_balances_over_endpoint_chains_and_masquerades_outside_traffic() {
    let (s, e) = web();
    let rs = build(&[s], &[e], &node());
    let (svc_chain, rules) = only_chain(&rs, "service-");
    assert!(svc_chain.ends_with("-default/web/tcp/http"), "{svc_chain}");
    assert_eq!(
        rules[0],
        "ip daddr 10.96.0.20 tcp dport 80 ip saddr != 10.244.0.0/16 jump mark-for-masquerade"
    );
    let eps = chain_named(&rs, "endpoint-");
    assert_eq!(eps.len(), 2);
    let ep_a = eps
        .iter()
        .find(|e| e.0.ends_with("__10.244.1.10/8080"))
        .expect("present")
        .0;
    let ep_b = eps
        .iter()
        .find(|e| e.0.ends_with("__10.244.2.10/8080"))
        .expect("present")
        .0;
    assert_eq!(
        rules[1],
        format!("numgen random mod 2 vmap {{ 0 : goto {ep_a}, 1 : goto {ep_b} }}")
    );
    let ep = eps
        .iter()
        .find(|e| e.0.ends_with("__10.244.1.10/8080"))
        .expect("present");
    // Hairpin: a backend reaching its own service is masqueraded so the reply comes back to it.
    assert_eq!(
        ep.1,
        &vec![
            "ip saddr 10.244.1.10 jump mark-for-masquerade".to_string(),
            "meta l4proto tcp dnat to 10.244.1.10:8080".to_string(),
        ]
    );
    assert_eq!(
        map(&rs, SERVICE_IPS),
        vec![(
            "10.96.0.20 . tcp . 80",
            format!("goto {svc_chain}").as_str()
        )]
    );
    assert!(map(&rs, NO_ENDPOINT_SERVICES).is_empty());
}

#[test]
fn no_cluster_cidr_means_no_masquerade_rule_for_cluster_ip() {
    let (s, e) = web();
    let mut n = node();
    n.cluster_cidr = None;
    let rs = build(&[s], &[e], &n);
    let (_, rules) = only_chain(&rs, "service-");
    assert_eq!(rules.len(), 1);
    assert!(rules[0].starts_with("numgen random mod 2"));
}

#[test]
fn service_without_endpoints_is_rejected() {
    let s = svc("empty", "10.96.0.30", &[("", 80, "TCP", 30081)]);
    let rs = build(&[s], &[] as &[EndpointSlice], &node());
    assert!(rs.chains.is_empty(), "{:#?}", rs.chains);
    assert_eq!(
        map(&rs, NO_ENDPOINT_SERVICES),
        vec![("10.96.0.30 . tcp . 80", "goto reject-chain")]
    );
    assert_eq!(
        map(&rs, NO_ENDPOINT_NODEPORTS),
        vec![("tcp . 30081", "goto reject-chain")]
    );
    assert!(map(&rs, SERVICE_IPS).is_empty());
}

#[test]
fn only_ready_endpoints_are_used_and_terminating_serving_ones_only_when_none_is_ready() {
    let s = svc("web", "10.96.0.20", &[("", 80, "TCP", 0)]);
    let not_ready = Ep {
        ip: "10.244.1.12",
        node: "node-a",
        ready: false,
        serving: false,
        terminating: false,
    };
    let draining = Ep {
        ip: "10.244.1.13",
        node: "node-a",
        ready: false,
        serving: true,
        terminating: true,
    };
    let e = slice(
        "w",
        "web",
        &[("", 8080, "TCP")],
        &[ready("10.244.1.10", "node-a"), not_ready, draining],
    );
    let rs = build(std::slice::from_ref(&s), &[e], &node());
    let eps: Vec<&String> = chain_named(&rs, "endpoint-")
        .into_iter()
        .map(|c| c.0)
        .collect();
    assert_eq!(eps.len(), 1);
    assert!(eps[0].ends_with("10.244.1.10/8080"));

    let e = slice("w", "web", &[("", 8080, "TCP")], &[not_ready, draining]);
    let rs = build(&[s], &[e], &node());
    let eps: Vec<&String> = chain_named(&rs, "endpoint-")
        .into_iter()
        .map(|c| c.0)
        .collect();
    assert_eq!(eps.len(), 1);
    assert!(eps[0].ends_with("10.244.1.13/8080"), "{eps:?}");
}

#[test]
fn headless_and_external_name_services_are_skipped() {
    let headless = svc("db", "None", &[("", 5432, "TCP", 0)]);
    let mut ext = svc("ext", "", &[("", 80, "TCP", 0)]);
    if let Some(spec) = ext.spec.as_mut() {
        spec.type_ = Some("ExternalName".into());
        spec.external_name = Some("example.com".into());
    }
    let e = slice(
        "db",
        "db",
        &[("", 5432, "TCP")],
        &[ready("10.244.1.10", "node-a")],
    );
    let rs = build(&[headless, ext], &[e], &node());
    assert!(rs.chains.is_empty());
    assert!(rs.maps.values().all(|m| m.is_empty()));
}

#[test]
fn service_without_selector_uses_its_manual_slices_and_named_ports() {
    // The model never reads selectors: a selector-less Service with a hand-written slice is
    // served like any other. Ports match by name and protocol.
    let s = svc(
        "manual",
        "10.96.0.40",
        &[("dns", 53, "UDP", 0), ("dns-tcp", 53, "TCP", 0)],
    );
    let e = slice(
        "manual-x",
        "manual",
        &[("dns", 5353, "UDP"), ("dns-tcp", 5354, "TCP")],
        &[ready("192.168.5.5", "")],
    );
    let rs = build(&[s], &[e], &node());
    let eps = chain_named(&rs, "endpoint-");
    assert_eq!(eps.len(), 2);
    let udp = eps
        .iter()
        .find(|c| c.0.contains("/udp/dns__"))
        .expect("present");
    assert_eq!(udp.1[1], "meta l4proto udp dnat to 192.168.5.5:5353");
    let tcp = eps
        .iter()
        .find(|c| c.0.contains("/tcp/dns-tcp__"))
        .expect("present");
    assert_eq!(tcp.1[1], "meta l4proto tcp dnat to 192.168.5.5:5354");
    let keys: Vec<&str> = map(&rs, SERVICE_IPS).into_iter().map(|k| k.0).collect();
    assert_eq!(keys, vec!["10.96.0.40 . tcp . 53", "10.96.0.40 . udp . 53"]);
}

#[test]
fn node_port_goes_through_an_external_chain_that_masquerades() {
    let s = svc("web", "10.96.0.20", &[("http", 80, "TCP", 30080)]);
    let (_, e) = web();
    let rs = build(&[s], &[e], &node());
    let (ext, rules) = only_chain(&rs, "external-");
    let (svc_chain, _) = only_chain(&rs, "service-");
    assert_eq!(
        rules,
        &vec![
            "jump mark-for-masquerade".to_string(),
            format!("goto {svc_chain}")
        ]
    );
    assert_eq!(
        map(&rs, SERVICE_NODEPORTS),
        vec![("tcp . 30080", format!("goto {ext}").as_str())]
    );
    assert!(
        rs.nodeport_ips
            .contains(&"192.168.77.1".parse().expect("valid literal"))
    );
    let full = script::full(&rs);
    assert!(full.contains(
        "add rule ip skiff-proxy services ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports"
    ));
    assert!(full.contains("add element ip skiff-proxy nodeport-ips { 192.168.77.1 }"));
}

#[test]
fn external_traffic_policy_local_uses_only_local_endpoints_without_snat() {
    let mut s = svc("web", "10.96.0.20", &[("http", 80, "TCP", 30080)]);
    if let Some(spec) = s.spec.as_mut() {
        spec.external_traffic_policy = Some("Local".into());
    }
    let (_, e) = web();
    let rs = build(&[s.clone()], &[e], &node());
    let (_, ext_rules) = only_chain(&rs, "external-");
    let (svc_chain, _) = only_chain(&rs, "service-");
    let (local_chain, local_rules) = only_chain(&rs, "local-");
    assert_eq!(
        ext_rules,
        &vec![
            format!("ip saddr 10.244.0.0/16 goto {svc_chain}"),
            "fib saddr type local jump mark-for-masquerade".to_string(),
            format!("fib saddr type local goto {svc_chain}"),
            format!("goto {local_chain}"),
        ]
    );
    // Outside clients are not marked, so they keep their source IP.
    assert!(!ext_rules.iter().any(|r| r == "jump mark-for-masquerade"));
    assert_eq!(local_rules.len(), 1);
    assert!(local_rules[0].starts_with("numgen random mod 1 vmap { 0 : goto endpoint-"));
    assert!(local_rules[0].ends_with("__10.244.1.10/8080 }"));

    // No endpoint on this node: the NodePort drops (endpoints exist elsewhere), ClusterIP works.
    let e = slice(
        "w",
        "web",
        &[("http", 8080, "TCP")],
        &[ready("10.244.2.10", "node-b")],
    );
    let rs = build(&[s], &[e], &node());
    assert_eq!(
        map(&rs, NO_ENDPOINT_NODEPORTS),
        vec![("tcp . 30080", "drop")]
    );
    assert_eq!(map(&rs, SERVICE_IPS).len(), 1);
}

#[test]
fn internal_traffic_policy_local_sends_cluster_ip_to_local_endpoints_only() {
    let (mut s, e) = web();
    if let Some(spec) = s.spec.as_mut() {
        spec.internal_traffic_policy = Some("Local".into());
    }
    let rs = build(&[s.clone()], &[e], &node());
    let (local_chain, rules) = only_chain(&rs, "local-");
    assert!(rules[0].ends_with("__10.244.1.10/8080 }"), "{rules:?}");
    assert_eq!(
        map(&rs, SERVICE_IPS),
        vec![(
            "10.96.0.20 . tcp . 80",
            format!("goto {local_chain}").as_str()
        )]
    );
    let e = slice(
        "w",
        "web",
        &[("http", 8080, "TCP")],
        &[ready("10.244.2.10", "node-b")],
    );
    let rs = build(&[s], &[e], &node());
    assert_eq!(
        map(&rs, NO_ENDPOINT_SERVICES),
        vec![("10.96.0.20 . tcp . 80", "drop")]
    );
}

#[test]
fn client_ip_affinity_remembers_the_client_in_a_set_with_timeout() {
    let (mut s, e) = web();
    if let Some(spec) = s.spec.as_mut() {
        spec.session_affinity = Some("ClientIP".into());
        spec.session_affinity_config = Some(SessionAffinityConfig {
            client_ip: Some(ClientIPConfig {
                timeout_seconds: Some(600),
            }),
        });
    }
    let rs = build(&[s], &[e], &node());
    assert_eq!(rs.affinity_sets.len(), 2);
    assert!(rs.affinity_sets.values().all(|t| *t == 600));
    let (set, _) = rs
        .affinity_sets
        .iter()
        .find(|(n, _)| n.ends_with("__10.244.1.10/8080"))
        .expect("present");
    let (ep_chain, ep_rules) = chain_named(&rs, "endpoint-")
        .into_iter()
        .find(|c| c.0.ends_with("__10.244.1.10/8080"))
        .expect("present");
    assert_eq!(ep_rules[1], format!("update @{set} {{ ip saddr }}"));
    let (_, svc_rules) = only_chain(&rs, "service-");
    assert!(svc_rules.contains(&format!("ip saddr @{set} goto {ep_chain}")));
    assert!(svc_rules.last().expect("present").starts_with("numgen"));
    let full = script::full(&rs);
    assert!(full.contains(&format!(
        "add set ip skiff-proxy {set} {{ type ipv4_addr; flags dynamic,timeout; timeout 600s; }}"
    )));
}

#[test]
fn load_balancer_ingress_ips_are_served_like_cluster_ips_through_the_external_chain() {
    let mut s = svc("lb", "10.96.0.50", &[("http", 80, "TCP", 31000)]);
    if let Some(spec) = s.spec.as_mut() {
        spec.type_ = Some("LoadBalancer".into());
    }
    s.status = Some(ServiceStatus {
        load_balancer: Some(LoadBalancerStatus {
            ingress: Some(vec![LoadBalancerIngress {
                ip: Some("192.168.77.1".into()),
                ..Default::default()
            }]),
        }),
        ..Default::default()
    });
    let e = slice(
        "lb",
        "lb",
        &[("http", 8080, "TCP")],
        &[ready("10.244.1.10", "node-a")],
    );
    let rs = build(&[s], &[e], &node());
    let (ext, _) = only_chain(&rs, "external-");
    let goto_ext = format!("goto {ext}");
    let ips = map(&rs, SERVICE_IPS);
    assert!(
        ips.contains(&("192.168.77.1 . tcp . 80", goto_ext.as_str())),
        "{ips:?}"
    );
    assert_eq!(
        map(&rs, SERVICE_NODEPORTS),
        vec![("tcp . 31000", goto_ext.as_str())]
    );
}

#[test]
fn endpoints_are_merged_across_slices_and_other_namespaces_ignored() {
    let (s, e1) = web();
    let e2 = slice(
        "web-2",
        "web",
        &[("http", 8080, "TCP")],
        &[
            ready("10.244.3.10", "node-c"),
            ready("10.244.1.10", "node-a"),
        ],
    );
    let mut other = slice(
        "web-3",
        "web",
        &[("http", 8080, "TCP")],
        &[ready("10.244.9.9", "node-c")],
    );
    other.metadata.namespace = Some("other".into());
    let rs = build(&[s], &[e1, e2, other], &node());
    assert_eq!(chain_named(&rs, "endpoint-").len(), 3);
    let (_, rules) = only_chain(&rs, "service-");
    assert!(rules[1].starts_with("numgen random mod 3 "));
}

#[test]
fn full_script_rebuilds_the_table_atomically() {
    let (s, e) = web();
    let rs = build(&[s], &[e], &node());
    let full = script::full(&rs);
    let lines: Vec<&str> = full.lines().collect();
    assert_eq!(
        &lines[..3],
        &[
            "add table ip skiff-proxy",
            "delete table ip skiff-proxy",
            "add table ip skiff-proxy"
        ]
    );
    assert!(full.contains(
        "add chain ip skiff-proxy nat-output { type nat hook output priority -100; policy accept; }"
    ));
    assert!(full.contains("add rule ip skiff-proxy reject-chain reject"));
    // Chains are created before any rule refers to them, rules before map elements.
    let first_rule = lines
        .iter()
        .position(|l| l.contains(" endpoint-") && l.starts_with("add rule"))
        .expect("present");
    let last_chain = lines
        .iter()
        .rposition(|l| l.starts_with("add chain"))
        .expect("present");
    let first_elem = lines
        .iter()
        .position(|l| l.starts_with("add element ip skiff-proxy service-ips"))
        .expect("present");
    assert!(last_chain < first_rule && first_rule < first_elem);
}

#[test]
fn diff_of_equal_models_is_empty() {
    let (s, e) = web();
    let rs = build(&[s], &[e], &node());
    assert_eq!(script::diff(&rs, &rs.clone()), "");
}

#[test]
fn diff_removing_an_endpoint_rewrites_one_chain_and_deletes_one() {
    let (s, e) = web();
    let (s2, e2) = svc_pair("api", "10.96.0.21");
    let before = build(&[s.clone(), s2.clone()], &[e.clone(), e2.clone()], &node());
    let mut e_less = e.clone();
    e_less.endpoints.truncate(1);
    let after = build(&[s, s2], &[e_less, e2], &node());
    let d = script::diff(&before, &after);
    let web_svc = after
        .chains
        .keys()
        .find(|k| k.starts_with("service-") && k.ends_with("/web/tcp/http"))
        .expect("present");
    let gone = before
        .chains
        .keys()
        .find(|k| k.ends_with("__10.244.2.10/8080"))
        .expect("present");
    let expected = format!(
        "flush chain ip skiff-proxy {web_svc}\n\
         add rule ip skiff-proxy {web_svc} ip daddr 10.96.0.20 tcp dport 80 ip saddr != 10.244.0.0/16 jump mark-for-masquerade\n\
         add rule ip skiff-proxy {web_svc} {}\n\
         flush chain ip skiff-proxy {gone}\n\
         delete chain ip skiff-proxy {gone}\n",
        after.chains[web_svc][1]
    );
    assert_eq!(d, expected);
    assert!(!d.contains("/api/"), "the other service is untouched");
}

fn svc_pair(name: &'static str, ip: &str) -> (Service, EndpointSlice) {
    (
        svc(name, ip, &[("http", 80, "TCP", 0)]),
        slice(
            name,
            name,
            &[("http", 8080, "TCP")],
            &[ready("10.244.1.20", "node-a")],
        ),
    )
}

#[test]
fn diff_moves_a_service_between_reject_and_service_maps_before_deleting_chains() {
    let (s, e) = web();
    let with = build(std::slice::from_ref(&s), &[e], &node());
    let without = build(&[s], &[] as &[EndpointSlice], &node());
    let d = script::diff(&with, &without);
    let lines: Vec<&str> = d.lines().collect();
    let del_elem = lines
        .iter()
        .position(|l| *l == "delete element ip skiff-proxy service-ips { 10.96.0.20 . tcp . 80 }")
        .expect("present");
    let add_reject = lines
        .iter()
        .position(|l| *l == "add element ip skiff-proxy no-endpoint-services { 10.96.0.20 . tcp . 80 : goto reject-chain }")
        .expect("present");
    let first_delete_chain = lines
        .iter()
        .position(|l| l.starts_with("delete chain"))
        .expect("present");
    assert!(
        del_elem < add_reject && add_reject < first_delete_chain,
        "{d}"
    );
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.starts_with("delete chain"))
            .count(),
        3
    );
    // and back
    let d = script::diff(&without, &with);
    assert!(
        d.contains("delete element ip skiff-proxy no-endpoint-services { 10.96.0.20 . tcp . 80 }")
    );
    assert!(d.contains(
        "add element ip skiff-proxy service-ips { 10.96.0.20 . tcp . 80 : goto service-"
    ));
    assert_eq!(d.lines().filter(|l| l.starts_with("add chain")).count(), 3);
}

#[test]
fn diff_turning_affinity_off_deletes_sets_after_flushing_their_users() {
    let (mut s, e) = web();
    let plain = build(&[s.clone()], std::slice::from_ref(&e), &node());
    if let Some(spec) = s.spec.as_mut() {
        spec.session_affinity = Some("ClientIP".into());
    }
    let sticky = build(&[s], &[e], &node());
    assert!(
        sticky
            .affinity_sets
            .values()
            .all(|t| *t == DEFAULT_AFFINITY_TIMEOUT_SECONDS)
    );
    let on = script::diff(&plain, &sticky);
    let lines: Vec<&str> = on.lines().collect();
    let add_set = lines
        .iter()
        .position(|l| l.starts_with("add set"))
        .expect("present");
    let first_flush = lines
        .iter()
        .position(|l| l.starts_with("flush chain"))
        .expect("present");
    assert!(add_set < first_flush);
    let off = script::diff(&sticky, &plain);
    let lines: Vec<&str> = off.lines().collect();
    let last_flush = lines
        .iter()
        .rposition(|l| l.starts_with("flush chain"))
        .expect("present");
    let first_del = lines
        .iter()
        .position(|l| l.starts_with("delete set"))
        .expect("present");
    assert!(last_flush < first_del);
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("delete set")).count(),
        2
    );
}

#[test]
fn cidr_parses_and_prints() {
    let c: Cidr = "10.244.0.0/16".parse().expect("valid literal");
    assert_eq!(c.to_string(), "10.244.0.0/16");
    assert!("10.244.0.0".parse::<Cidr>().is_err());
    assert!("10.244.0.0/33".parse::<Cidr>().is_err());
}

#[test]
fn long_names_are_cut_but_stay_unique() {
    let long = "a".repeat(63);
    let a = hashed(
        "endpoint",
        &format!("{long}/{long}/tcp/{long}__10.0.0.1/80"),
    );
    let b = hashed(
        "endpoint",
        &format!("{long}/{long}/tcp/{long}__10.0.0.2/80"),
    );
    assert_eq!(a.len(), MAX_NAME);
    assert_ne!(a, b, "the hash covers the part that was cut");
    assert_eq!(
        hashed("service", "ns/web/tcp/http").len(),
        "service-12345678-ns/web/tcp/http".len()
    );
}

#[test]
fn services_of_another_proxy_are_skipped() {
    let (mut s, e) = web();
    s.metadata.labels = Some([(SERVICE_PROXY_NAME_LABEL.to_string(), "other".to_string())].into());
    let rs = build(&[s], &[e], &node());
    assert!(rs.chains.is_empty());
    assert!(rs.maps.values().all(|m| m.is_empty()));
}
