//! Rendering rule models as nft scripts: a full sync that rebuilds the table, and a diff that
//! changes only what changed. Each script is one `nft -f -` transaction, so packets see either
//! the old rules or the new ones.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use crate::model::{
    NO_ENDPOINT_NODEPORTS, NO_ENDPOINT_SERVICES, Ruleset, SERVICE_IPS, SERVICE_NODEPORTS,
};

/// The table every rule lives in (family `ip`: IPv4 only).
pub const TABLE: &str = "skiff-proxy";

/// The mark that asks `masquerading` to SNAT a packet (the same bit as upstream's 0x4000).
const MASQ_MARK: &str = "0x00004000";

const MAPS: [(&str, &str); 4] = [
    (
        SERVICE_IPS,
        "ipv4_addr . inet_proto . inet_service : verdict",
    ),
    (SERVICE_NODEPORTS, "inet_proto . inet_service : verdict"),
    (
        NO_ENDPOINT_SERVICES,
        "ipv4_addr . inet_proto . inet_service : verdict",
    ),
    (NO_ENDPOINT_NODEPORTS, "inet_proto . inet_service : verdict"),
];

/// The fixed part of the table: hooks, dispatch chains, maps and helpers.
fn base(out: &mut String) {
    let t = format!("ip {TABLE}");
    // Numeric priorities: nft 1.0.6 rejects `dstnat` in an output chain.
    let hooks = [
        ("nat-prerouting", "nat", "prerouting", -100),
        ("nat-output", "nat", "output", -100),
        ("nat-postrouting", "nat", "postrouting", 100),
        ("filter-input", "filter", "input", -110),
        ("filter-forward", "filter", "forward", -110),
        ("filter-output", "filter", "output", -110),
    ];
    for (name, ty, hook, prio) in hooks {
        let _ = writeln!(
            out,
            "add chain {t} {name} {{ type {ty} hook {hook} priority {prio}; policy accept; }}"
        );
    }
    for name in [
        "services",
        "service-endpoints-check",
        "nodeport-endpoints-check",
        "mark-for-masquerade",
        "masquerading",
        "reject-chain",
    ] {
        let _ = writeln!(out, "add chain {t} {name}");
    }
    let _ = writeln!(out, "add set {t} nodeport-ips {{ type ipv4_addr; }}");
    for (name, ty) in MAPS {
        let _ = writeln!(out, "add map {t} {name} {{ type {ty}; }}");
    }
    let rules = [
        ("nat-prerouting", "jump services".to_string()),
        ("nat-output", "jump services".to_string()),
        ("nat-postrouting", "jump masquerading".to_string()),
        (
            "filter-input",
            "ct state new jump nodeport-endpoints-check".to_string(),
        ),
        (
            "filter-input",
            "ct state new jump service-endpoints-check".to_string(),
        ),
        (
            "filter-forward",
            "ct state new jump service-endpoints-check".to_string(),
        ),
        (
            "filter-output",
            "ct state new jump service-endpoints-check".to_string(),
        ),
        (
            "services",
            "ip daddr . meta l4proto . th dport vmap @service-ips".to_string(),
        ),
        (
            "services",
            "ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports".to_string(),
        ),
        (
            "service-endpoints-check",
            "ip daddr . meta l4proto . th dport vmap @no-endpoint-services".to_string(),
        ),
        (
            "nodeport-endpoints-check",
            "ip daddr @nodeport-ips meta l4proto . th dport vmap @no-endpoint-nodeports"
                .to_string(),
        ),
        (
            "mark-for-masquerade",
            format!("meta mark set meta mark | {MASQ_MARK}"),
        ),
        (
            "masquerading",
            format!("meta mark & {MASQ_MARK} == 0 return"),
        ),
        // Clear the bit so a packet that is routed on (another table, another hop) is not
        // masqueraded twice.
        (
            "masquerading",
            format!("meta mark set meta mark ^ {MASQ_MARK}"),
        ),
        ("masquerading", "masquerade fully-random".to_string()),
        ("reject-chain", "reject".to_string()),
    ];
    for (chain, rule) in rules {
        let _ = writeln!(out, "add rule {t} {chain} {rule}");
    }
}

fn add_chain_rules(out: &mut String, chain: &str, rules: &[String]) {
    for r in rules {
        let _ = writeln!(out, "add rule ip {TABLE} {chain} {r}");
    }
}

fn add_set(out: &mut String, name: &str, timeout: i32) {
    let _ = writeln!(
        out,
        "add set ip {TABLE} {name} {{ type ipv4_addr; flags dynamic,timeout; timeout {timeout}s; }}"
    );
}

/// A script that replaces the whole table with `rs`. Deleting and recreating the table in the
/// same transaction removes chains left by an earlier run (an agent restart converges) without
/// a moment with no rules.
pub fn full(rs: &Ruleset) -> String {
    let mut out = String::with_capacity(256 + rs.chains.len() * 200);
    // `delete` fails on a missing table; `add` first makes it exist either way.
    let _ = writeln!(out, "add table ip {TABLE}");
    let _ = writeln!(out, "delete table ip {TABLE}");
    let _ = writeln!(out, "add table ip {TABLE}");
    base(&mut out);
    if !rs.nodeport_ips.is_empty() {
        let ips: Vec<String> = rs.nodeport_ips.iter().map(|ip| ip.to_string()).collect();
        let _ = writeln!(
            out,
            "add element ip {TABLE} nodeport-ips {{ {} }}",
            ips.join(", ")
        );
    }
    for (name, timeout) in &rs.affinity_sets {
        add_set(&mut out, name, *timeout);
    }
    for name in rs.chains.keys() {
        let _ = writeln!(out, "add chain ip {TABLE} {name}");
    }
    for (name, rules) in &rs.chains {
        add_chain_rules(&mut out, name, rules);
    }
    for (map, elems) in &rs.maps {
        for (k, v) in elems {
            let _ = writeln!(out, "add element ip {TABLE} {map} {{ {k} : {v} }}");
        }
    }
    out
}

/// A script that turns `prev` (what the table holds) into `next`, touching only what differs.
/// Empty when nothing changed.
///
/// Order matters inside the transaction: objects are created before anything refers to them,
/// and a chain or set is deleted only after every rule and map element that refers to it is
/// gone (the kernel refuses to delete something still in use).
pub fn diff(prev: &Ruleset, next: &Ruleset) -> String {
    let mut out = String::new();
    for ip in prev.nodeport_ips.difference(&next.nodeport_ips) {
        let _ = writeln!(out, "delete element ip {TABLE} nodeport-ips {{ {ip} }}");
    }
    for ip in next.nodeport_ips.difference(&prev.nodeport_ips) {
        let _ = writeln!(out, "add element ip {TABLE} nodeport-ips {{ {ip} }}");
    }
    // A set whose timeout changed keeps the old timeout until the next full sync: a set cannot
    // be redefined while rules use it.
    for (name, timeout) in &next.affinity_sets {
        if !prev.affinity_sets.contains_key(name) {
            add_set(&mut out, name, *timeout);
        }
    }
    for name in next.chains.keys() {
        if !prev.chains.contains_key(name) {
            let _ = writeln!(out, "add chain ip {TABLE} {name}");
        }
    }
    for (name, rules) in &next.chains {
        match prev.chains.get(name) {
            Some(old) if old == rules => {}
            Some(_) => {
                let _ = writeln!(out, "flush chain ip {TABLE} {name}");
                add_chain_rules(&mut out, name, rules);
            }
            None => add_chain_rules(&mut out, name, rules),
        }
    }
    let empty = Default::default();
    let map_names: BTreeSet<&str> = prev.maps.keys().chain(next.maps.keys()).copied().collect();
    // All deletions before all additions: a key may move from one map to another (a service
    // losing its last endpoint moves from service-ips to no-endpoint-services).
    for map in &map_names {
        let old = prev.maps.get(map).unwrap_or(&empty);
        let new = next.maps.get(map).unwrap_or(&empty);
        for (k, v) in old {
            if new.get(k) != Some(v) {
                let _ = writeln!(out, "delete element ip {TABLE} {map} {{ {k} }}");
            }
        }
    }
    for map in &map_names {
        let old = prev.maps.get(map).unwrap_or(&empty);
        let new = next.maps.get(map).unwrap_or(&empty);
        for (k, v) in new {
            if old.get(k) != Some(v) {
                let _ = writeln!(out, "add element ip {TABLE} {map} {{ {k} : {v} }}");
            }
        }
    }
    let stale: Vec<&String> = prev
        .chains
        .keys()
        .filter(|c| !next.chains.contains_key(*c))
        .collect();
    // Stale chains may jump to each other (service → endpoint): empty them all first.
    for name in &stale {
        let _ = writeln!(out, "flush chain ip {TABLE} {name}");
    }
    for name in &stale {
        let _ = writeln!(out, "delete chain ip {TABLE} {name}");
    }
    for name in prev.affinity_sets.keys() {
        if !next.affinity_sets.contains_key(name) {
            let _ = writeln!(out, "delete set ip {TABLE} {name}");
        }
    }
    out
}

/// The script that removes everything the proxy programmed.
pub fn cleanup() -> String {
    format!("add table ip {TABLE}\ndelete table ip {TABLE}\n")
}
