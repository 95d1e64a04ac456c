//! Per-Service rule fragments kept between syncs, so that a change rebuilds and diffs only the
//! Services it touched (found by their and their EndpointSlices' resourceVersions) instead of
//! the whole cluster's rules.

use std::borrow::Borrow;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::model::{NodeInfo, Ruleset, add_service, slices_by_service};
use crate::script;

struct Fragment {
    /// What the rules were built from; `None` (objects without resourceVersions) never matches,
    /// so such Services are rebuilt every time.
    fingerprint: Option<String>,
    rules: Ruleset,
}

/// The rules last generated, one fragment per Service.
#[derive(Default)]
pub struct Tracker {
    node_ips: BTreeSet<Ipv4Addr>,
    fragments: HashMap<(String, String), Fragment>,
}

fn fingerprint(svc: &Service, slices: &[&EndpointSlice], node: &NodeInfo) -> Option<String> {
    let mut parts = vec![format!(
        "{}/{}",
        svc.metadata.uid.as_deref().unwrap_or(""),
        svc.metadata.resource_version.as_deref()?
    )];
    let mut slice_parts = Vec::with_capacity(slices.len());
    for s in slices {
        slice_parts.push(format!(
            "{}/{}",
            s.metadata.name.as_deref().unwrap_or(""),
            s.metadata.resource_version.as_deref()?
        ));
    }
    // The store hands slices out in no particular order.
    slice_parts.sort();
    parts.extend(slice_parts);
    parts.push(node.node_name.clone());
    parts.push(node.cluster_cidr.map(|c| c.to_string()).unwrap_or_default());
    Some(parts.join("|"))
}

impl Tracker {
    /// Bring the fragments up to date with these objects and return the nft script that turns
    /// the previous rules into the new ones (empty when nothing changed).
    pub fn update<S: Borrow<Service>, E: Borrow<EndpointSlice>>(
        &mut self,
        services: &[S],
        slices: &[E],
        node: &NodeInfo,
    ) -> String {
        let mut out = String::new();
        let ips: BTreeSet<Ipv4Addr> = node.node_ips.iter().copied().collect();
        if ips != self.node_ips {
            let old = Ruleset {
                nodeport_ips: std::mem::take(&mut self.node_ips),
                ..Ruleset::default()
            };
            let new = Ruleset {
                nodeport_ips: ips.clone(),
                ..Ruleset::default()
            };
            out.push_str(&script::diff(&old, &new));
            self.node_ips = ips;
        }
        let by_service = slices_by_service(slices);
        let mut seen = HashSet::with_capacity(services.len());
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
            let fp = fingerprint(svc, slices, node);
            seen.insert(key.clone());
            if let Some(f) = self.fragments.get(&key)
                && fp.is_some()
                && f.fingerprint == fp
            {
                continue;
            }
            let mut rules = Ruleset::default();
            add_service(&mut rules, svc, slices, node);
            let old = self
                .fragments
                .remove(&key)
                .map(|f| f.rules)
                .unwrap_or_default();
            out.push_str(&script::diff(&old, &rules));
            self.fragments.insert(
                key,
                Fragment {
                    fingerprint: fp,
                    rules,
                },
            );
        }
        let gone: Vec<(String, String)> = self
            .fragments
            .keys()
            .filter(|k| !seen.contains(*k))
            .cloned()
            .collect();
        for key in gone {
            if let Some(f) = self.fragments.remove(&key) {
                out.push_str(&script::diff(&f.rules, &Ruleset::default()));
            }
        }
        out
    }

    /// All fragments as one rule model (for a full sync).
    pub fn ruleset(&self) -> Ruleset {
        let mut rs = Ruleset {
            nodeport_ips: self.node_ips.clone(),
            ..Ruleset::default()
        };
        for f in self.fragments.values() {
            rs.chains
                .extend(f.rules.chains.iter().map(|(k, v)| (k.clone(), v.clone())));
            rs.affinity_sets
                .extend(f.rules.affinity_sets.iter().map(|(k, v)| (k.clone(), *v)));
            for (map, elems) in &f.rules.maps {
                rs.maps
                    .entry(map)
                    .or_default()
                    .extend(elems.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
        }
        rs
    }

    /// How many per-service chains the rules hold.
    pub fn chain_count(&self) -> usize {
        self.fragments.values().map(|f| f.rules.chains.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::build;
    use crate::model::tests::{node, ready, slice, svc, web};

    fn versioned(mut s: Service, rv: &str) -> Service {
        s.metadata.resource_version = Some(rv.into());
        s
    }

    fn versioned_slice(mut s: EndpointSlice, rv: &str) -> EndpointSlice {
        s.metadata.resource_version = Some(rv.into());
        s
    }

    #[test]
    fn a_change_rebuilds_and_diffs_only_the_service_it_touches() {
        let (web_svc, web_slice) = web();
        let api = svc("api", "10.96.0.21", &[("http", 80, "TCP", 0)]);
        let api_slice = slice(
            "api-1",
            "api",
            &[("http", 8080, "TCP")],
            &[ready("10.244.1.20", "node-a")],
        );
        let services = [versioned(web_svc, "1"), versioned(api, "2")];
        let mut slices = vec![
            versioned_slice(web_slice.clone(), "3"),
            versioned_slice(api_slice, "4"),
        ];

        let mut t = Tracker::default();
        let first = t.update(&services, &slices, &node());
        assert_eq!(t.ruleset(), build(&services, &slices, &node()));
        assert!(first.contains("/web/") && first.contains("/api/"));
        assert_eq!(t.update(&services, &slices, &node()), "", "nothing changed");

        let before = t.ruleset();
        let mut fewer = web_slice;
        fewer.endpoints.truncate(1);
        slices[0] = versioned_slice(fewer, "5");
        let d = t.update(&services, &slices, &node());
        assert!(d.contains("/web/") && !d.contains("/api/"), "{d}");
        assert_eq!(
            d,
            script::diff(&before, &build(&services, &slices, &node()))
        );
        assert_eq!(t.ruleset(), build(&services, &slices, &node()));
    }

    #[test]
    fn unchanged_resource_versions_are_not_rebuilt_and_missing_ones_always_are() {
        let (web_svc, web_slice) = web();
        let mut t = Tracker::default();
        let services = [versioned(web_svc.clone(), "1")];
        t.update(
            &services,
            &[versioned_slice(web_slice.clone(), "2")],
            &node(),
        );
        // Same versions, different content: the cache trusts the versions.
        let mut changed = web_slice.clone();
        changed.endpoints.truncate(1);
        assert_eq!(
            t.update(&services, &[versioned_slice(changed.clone(), "2")], &node()),
            ""
        );
        // Without versions the Service is rebuilt and the change shows.
        let d = t.update(&[web_svc], &[changed], &node());
        assert!(d.contains("delete chain"), "{d}");
    }

    #[test]
    fn removed_services_and_node_ip_changes_are_diffed() {
        let (web_svc, web_slice) = web();
        let mut t = Tracker::default();
        t.update(
            &[versioned(web_svc, "1")],
            &[versioned_slice(web_slice, "2")],
            &node(),
        );
        let mut n = node();
        n.node_ips = vec!["192.168.77.2".parse().expect("ip")];
        let d = t.update(&[] as &[Service], &[] as &[EndpointSlice], &n);
        assert!(d.starts_with(
            "delete element ip skiff-proxy nodeport-ips { 192.168.77.1 }\nadd element ip skiff-proxy nodeport-ips { 192.168.77.2 }\n"
        ), "{d}");
        assert_eq!(
            d.lines().filter(|l| l.starts_with("delete chain")).count(),
            3
        );
        assert_eq!(t.chain_count(), 0);
        assert_eq!(
            t.ruleset(),
            build(&[] as &[Service], &[] as &[EndpointSlice], &n)
        );
    }
}
