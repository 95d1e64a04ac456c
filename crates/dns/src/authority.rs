//! The cluster zone: answers for `<domain>` (and PTRs) computed from a [`Snapshot`], following
//! the Kubernetes DNS-Based Service Discovery specification (schema 1.1.0) and CoreDNS's
//! `kubernetes` plugin where the specification leaves room.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use crate::snapshot::{EndpointRecord, ServiceKind, ServiceRecord, Snapshot, undashed};

/// The schema version `dns-version.<domain>` reports.
const SCHEMA_VERSION: &str = "1.1.0";

/// What to do with a query.
#[derive(Debug)]
pub enum Outcome {
    /// The cluster zone answers it.
    Answer(Response),
    /// Not ours (or a PTR we do not know): ask the upstream resolvers.
    Forward,
}

/// An authoritative answer.
#[derive(Debug)]
pub struct Response {
    pub code: ResponseCode,
    pub answers: Vec<Record>,
    /// The zone's SOA for negative answers (RFC 2308), empty otherwise.
    pub authority: Vec<Record>,
    pub additionals: Vec<Record>,
    /// An ExternalName target outside the cluster the server should resolve and append.
    pub chase: Option<Name>,
}

/// The cluster zone's answering logic (pure: no IO).
#[derive(Clone, Debug)]
pub struct Authority {
    /// Lowercase, without the trailing dot.
    domain: String,
    ttl: u32,
}

fn wants(qtype: RecordType, rtype: RecordType) -> bool {
    qtype == rtype || qtype == RecordType::ANY
}

fn address_record(owner: &Name, ttl: u32, ip: IpAddr) -> Record {
    let data = match ip {
        IpAddr::V4(v4) => RData::A(A(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
    };
    Record::from_rdata(owner.clone(), ttl, data)
}

fn address_type(ip: IpAddr) -> RecordType {
    if ip.is_ipv4() {
        RecordType::A
    } else {
        RecordType::AAAA
    }
}

/// `d.c.b.a.in-addr.arpa` / 32 nibbles of `ip6.arpa` → the address.
pub fn reverse_ip(name: &str) -> Option<IpAddr> {
    if let Some(rest) = name.strip_suffix(".in-addr.arpa") {
        let mut octets: Vec<u8> = rest
            .split('.')
            .map(|l| l.parse().ok())
            .collect::<Option<_>>()?;
        if octets.len() != 4 {
            return None;
        }
        octets.reverse();
        return Some(IpAddr::V4(Ipv4Addr::new(
            octets[0], octets[1], octets[2], octets[3],
        )));
    }
    let rest = name.strip_suffix(".ip6.arpa")?;
    let nibbles: Vec<u8> = rest
        .split('.')
        .map(|l| {
            if l.len() == 1 {
                u8::from_str_radix(l, 16).ok()
            } else {
                None
            }
        })
        .collect::<Option<_>>()?;
    if nibbles.len() != 32 {
        return None;
    }
    let mut bytes = [0u8; 16];
    for (i, pair) in nibbles.rchunks(2).enumerate() {
        // rchunks walks from the end: the last two labels are the address's first byte.
        bytes[i] = (pair[1] << 4) | pair[0];
    }
    Some(IpAddr::V6(Ipv6Addr::from(bytes)))
}

impl Authority {
    /// `domain` such as `cluster.local` (a trailing dot and case are ignored).
    pub fn new(domain: &str, ttl: u32) -> Authority {
        Authority {
            domain: domain.trim_end_matches('.').to_ascii_lowercase(),
            ttl,
        }
    }

    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// `rel` + the cluster domain as a DNS name (None if a label is not a valid DNS label).
    fn name(&self, rel: &str) -> Option<Name> {
        let full = if rel.is_empty() {
            format!("{}.", self.domain)
        } else {
            format!("{rel}.{}.", self.domain)
        };
        Name::from_ascii(full).ok()
    }

    /// The zone's SOA record (CoreDNS's shape: `ns.dns.<zone>` / `hostmaster.<zone>`).
    pub fn soa(&self, serial: u32) -> Option<Record> {
        let soa = SOA::new(
            self.name("ns.dns")?,
            self.name("hostmaster")?,
            serial,
            7200,
            1800,
            86400,
            self.ttl,
        );
        Some(Record::from_rdata(
            self.name("")?,
            self.ttl,
            RData::SOA(soa),
        ))
    }

    fn negative(&self, snap: &Snapshot, code: ResponseCode) -> Outcome {
        Outcome::Answer(Response {
            code,
            answers: Vec::new(),
            authority: self.soa(snap.serial).into_iter().collect(),
            additionals: Vec::new(),
            chase: None,
        })
    }

    fn nxdomain(&self, snap: &Snapshot) -> Outcome {
        self.negative(snap, ResponseCode::NXDomain)
    }

    fn nodata(&self, snap: &Snapshot) -> Outcome {
        self.negative(snap, ResponseCode::NoError)
    }

    /// Records found, or NODATA when the name exists but holds none of `qtype`.
    fn records(&self, snap: &Snapshot, answers: Vec<Record>, additionals: Vec<Record>) -> Outcome {
        if answers.is_empty() {
            return self.nodata(snap);
        }
        Outcome::Answer(Response {
            code: ResponseCode::NoError,
            answers,
            authority: Vec::new(),
            additionals,
            chase: None,
        })
    }

    /// Answer `qname`/`qtype` from `snap`.
    pub fn lookup(&self, snap: &Snapshot, qname: &Name, qtype: RecordType) -> Outcome {
        let lower = qname.to_lowercase().to_ascii();
        let lower = lower.trim_end_matches('.');
        if lower.ends_with(".in-addr.arpa") || lower.ends_with(".ip6.arpa") {
            return self.reverse(snap, qname, qtype, lower);
        }
        let rel = if lower == self.domain {
            ""
        } else if let Some(rel) = lower
            .strip_suffix(self.domain.as_str())
            .and_then(|r| r.strip_suffix('.'))
        {
            rel
        } else {
            return Outcome::Forward;
        };
        let labels: Vec<&str> = if rel.is_empty() {
            Vec::new()
        } else {
            rel.split('.').collect()
        };
        let ttl = self.ttl;
        match labels.as_slice() {
            [] => {
                let mut answers = Vec::new();
                if wants(qtype, RecordType::SOA) {
                    answers.extend(self.soa(snap.serial));
                }
                if wants(qtype, RecordType::NS)
                    && let Some(ns) = self.name("ns.dns")
                {
                    answers.push(Record::from_rdata(qname.clone(), ttl, RData::NS(NS(ns))));
                }
                self.records(snap, answers, Vec::new())
            }
            ["dns-version"] => {
                let mut answers = Vec::new();
                if wants(qtype, RecordType::TXT) {
                    let txt = TXT::new(vec![SCHEMA_VERSION.to_string()]);
                    answers.push(Record::from_rdata(qname.clone(), ttl, RData::TXT(txt)));
                }
                self.records(snap, answers, Vec::new())
            }
            ["svc"] | ["pod"] => self.nodata(snap),
            [ns, "svc"] => {
                if snap.service_namespaces.contains(*ns) {
                    self.nodata(snap)
                } else {
                    self.nxdomain(snap)
                }
            }
            [svc, ns, "svc"] => match snap.services.get(&(ns.to_string(), svc.to_string())) {
                Some(rec) => self.service(snap, qname, qtype, svc, ns, rec),
                None => self.nxdomain(snap),
            },
            [proto, svc, ns, "svc"] if proto.starts_with('_') => {
                // The `_<proto>` level exists when some port of the service uses it.
                let proto = &proto[1..];
                match snap.services.get(&(ns.to_string(), svc.to_string())) {
                    Some(rec) if rec.ports.iter().any(|p| p.protocol == proto) => self.nodata(snap),
                    _ => self.nxdomain(snap),
                }
            }
            [host, svc, ns, "svc"] => match snap.services.get(&(ns.to_string(), svc.to_string())) {
                Some(rec) if rec.kind == ServiceKind::Headless => {
                    let found: Vec<&EndpointRecord> = rec
                        .endpoints
                        .iter()
                        .filter(|e| e.label() == *host)
                        .collect();
                    if found.is_empty() {
                        return self.nxdomain(snap);
                    }
                    let answers = found
                        .iter()
                        .filter(|e| wants(qtype, address_type(e.ip)))
                        .map(|e| address_record(qname, ttl, e.ip))
                        .collect();
                    self.records(snap, answers, Vec::new())
                }
                _ => self.nxdomain(snap),
            },
            [port, proto, svc, ns, "svc"] if port.starts_with('_') && proto.starts_with('_') => {
                match snap.services.get(&(ns.to_string(), svc.to_string())) {
                    Some(rec) => {
                        self.srv(snap, qname, qtype, &port[1..], &proto[1..], svc, ns, rec)
                    }
                    None => self.nxdomain(snap),
                }
            }
            [ip, ns, "pod"] => match undashed(ip) {
                Some(ip) if snap.pods.contains(&(ns.to_string(), ip)) => {
                    let answers = if wants(qtype, address_type(ip)) {
                        vec![address_record(qname, ttl, ip)]
                    } else {
                        Vec::new()
                    };
                    self.records(snap, answers, Vec::new())
                }
                _ => self.nxdomain(snap),
            },
            _ => self.nxdomain(snap),
        }
    }

    fn service(
        &self,
        snap: &Snapshot,
        qname: &Name,
        qtype: RecordType,
        svc: &str,
        ns: &str,
        rec: &ServiceRecord,
    ) -> Outcome {
        let ttl = self.ttl;
        match &rec.kind {
            ServiceKind::ExternalName(target) => {
                let Ok(target) = Name::from_ascii(format!("{target}.")) else {
                    return self.nxdomain(snap);
                };
                let cname =
                    Record::from_rdata(qname.clone(), ttl, RData::CNAME(CNAME(target.clone())));
                let inside = target
                    .to_lowercase()
                    .to_ascii()
                    .trim_end_matches('.')
                    .ends_with(&self.domain);
                let mut answers = vec![cname];
                let mut chase = None;
                if qtype != RecordType::CNAME {
                    if inside {
                        // In-zone targets are resolved here, one level deep (no loops).
                        if let Outcome::Answer(r) = self.lookup(snap, &target, qtype)
                            && r.answers
                                .iter()
                                .all(|a| a.record_type() != RecordType::CNAME)
                        {
                            answers.extend(r.answers);
                        }
                    } else {
                        chase = Some(target);
                    }
                }
                Outcome::Answer(Response {
                    code: ResponseCode::NoError,
                    answers,
                    authority: Vec::new(),
                    additionals: Vec::new(),
                    chase,
                })
            }
            ServiceKind::ClusterIp(ips) => {
                let mut answers: Vec<Record> = ips
                    .iter()
                    .filter(|ip| wants(qtype, address_type(**ip)))
                    .map(|ip| address_record(qname, ttl, *ip))
                    .collect();
                let mut additionals = Vec::new();
                if wants(qtype, RecordType::SRV) {
                    // CoreDNS answers SRV on the bare service name with every port.
                    let n = rec.ports.len().max(1);
                    for p in &rec.ports {
                        answers.push(srv_record(qname, ttl, n, p.port, qname.clone()));
                    }
                    if !rec.ports.is_empty() {
                        additionals.extend(ips.iter().map(|ip| address_record(qname, ttl, *ip)));
                    }
                }
                self.records(snap, answers, additionals)
            }
            ServiceKind::Headless => {
                if rec.endpoints.is_empty() {
                    return self.nxdomain(snap);
                }
                let mut answers: Vec<Record> = rec
                    .endpoints
                    .iter()
                    .filter(|e| wants(qtype, address_type(e.ip)))
                    .map(|e| address_record(qname, ttl, e.ip))
                    .collect();
                let mut additionals = Vec::new();
                if wants(qtype, RecordType::SRV) {
                    let n: usize = rec.endpoints.iter().map(|e| e.ports.len()).sum();
                    for e in &rec.endpoints {
                        let Some(target) = self.name(&format!("{}.{svc}.{ns}.svc", e.label()))
                        else {
                            continue;
                        };
                        for p in &e.ports {
                            answers.push(srv_record(qname, ttl, n, p.port, target.clone()));
                        }
                        if !e.ports.is_empty() {
                            additionals.push(address_record(&target, ttl, e.ip));
                        }
                    }
                }
                self.records(snap, answers, additionals)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn srv(
        &self,
        snap: &Snapshot,
        qname: &Name,
        qtype: RecordType,
        port: &str,
        proto: &str,
        svc: &str,
        ns: &str,
        rec: &ServiceRecord,
    ) -> Outcome {
        let ttl = self.ttl;
        let matches = |p: &&crate::snapshot::PortRecord| p.name == port && p.protocol == proto;
        let mut found: Vec<(u16, Name, IpAddr)> = Vec::new();
        match &rec.kind {
            ServiceKind::ClusterIp(ips) => {
                if let Some(target) = self.name(&format!("{svc}.{ns}.svc")) {
                    for p in rec.ports.iter().filter(matches) {
                        for ip in ips {
                            found.push((p.port, target.clone(), *ip));
                        }
                    }
                }
            }
            ServiceKind::Headless => {
                for e in &rec.endpoints {
                    let Some(target) = self.name(&format!("{}.{svc}.{ns}.svc", e.label())) else {
                        continue;
                    };
                    for p in e.ports.iter().filter(matches) {
                        found.push((p.port, target.clone(), e.ip));
                    }
                }
            }
            ServiceKind::ExternalName(_) => {}
        }
        if found.is_empty() {
            return self.nxdomain(snap);
        }
        if !wants(qtype, RecordType::SRV) {
            return self.nodata(snap);
        }
        let mut answers: Vec<Record> = Vec::new();
        let mut additionals: Vec<Record> = Vec::new();
        let mut seen: Vec<(u16, Name)> = Vec::new();
        let n = found.len();
        for (port, target, ip) in found {
            if !seen.contains(&(port, target.clone())) {
                answers.push(srv_record(qname, ttl, n, port, target.clone()));
                seen.push((port, target.clone()));
            }
            let additional = address_record(&target, ttl, ip);
            if !additionals.contains(&additional) {
                additionals.push(additional);
            }
        }
        self.records(snap, answers, additionals)
    }

    fn reverse(&self, snap: &Snapshot, qname: &Name, qtype: RecordType, lower: &str) -> Outcome {
        let Some(ip) = reverse_ip(lower) else {
            return Outcome::Forward;
        };
        // Addresses we do not know fall through to upstream (CoreDNS `fallthrough in-addr.arpa`).
        let Some(owner) = snap.reverse.get(&ip) else {
            return Outcome::Forward;
        };
        let answers = match self.name(owner) {
            Some(target) if wants(qtype, RecordType::PTR) => {
                vec![Record::from_rdata(
                    qname.clone(),
                    self.ttl,
                    RData::PTR(PTR(target)),
                )]
            }
            _ => Vec::new(),
        };
        self.records(snap, answers, Vec::new())
    }
}

/// Priority 0 and an equal share of weight 100, as CoreDNS does for one priority class.
fn srv_record(owner: &Name, ttl: u32, count: usize, port: u16, target: Name) -> Record {
    let weight = u16::try_from(100 / count.max(1)).unwrap_or(100).max(1);
    Record::from_rdata(
        owner.clone(),
        ttl,
        RData::SRV(SRV::new(0, weight, port, target)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Pod, Service};
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    use serde_json::json;

    fn svc(v: serde_json::Value) -> Service {
        serde_json::from_value(v).expect("service")
    }

    fn snapshot() -> Snapshot {
        let services = vec![
            svc(json!({"metadata": {"name": "web", "namespace": "default"},
                "spec": {"clusterIP": "10.96.1.5", "clusterIPs": ["10.96.1.5"],
                         "ports": [{"name": "http", "port": 80, "protocol": "TCP"},
                                   {"name": "dns", "port": 53, "protocol": "UDP"}]}})),
            svc(json!({"metadata": {"name": "db", "namespace": "prod"},
                "spec": {"clusterIP": "None",
                         "ports": [{"name": "pg", "port": 5432}]}})),
            svc(json!({"metadata": {"name": "empty", "namespace": "prod"},
                "spec": {"clusterIP": "None"}})),
            svc(json!({"metadata": {"name": "ext", "namespace": "default"},
                "spec": {"type": "ExternalName", "externalName": "example.com"}})),
            svc(
                json!({"metadata": {"name": "alias", "namespace": "default"},
                "spec": {"type": "ExternalName", "externalName": "web.default.svc.cluster.local"}}),
            ),
            svc(json!({"metadata": {"name": "v6", "namespace": "default"},
                "spec": {"clusterIP": "fd00::5", "clusterIPs": ["fd00::5"]}})),
        ];
        let slices: Vec<EndpointSlice> = vec![serde_json::from_value(json!({
            "metadata": {"name": "db-abc", "namespace": "prod",
                         "labels": {"kubernetes.io/service-name": "db"}},
            "addressType": "IPv4",
            "ports": [{"name": "pg", "port": 15432, "protocol": "TCP"}],
            "endpoints": [
                {"addresses": ["10.244.1.10"], "hostname": "db-0", "conditions": {"ready": true}},
                {"addresses": ["10.244.2.11"], "conditions": {}},
                {"addresses": ["10.244.3.12"], "hostname": "db-2", "conditions": {"ready": false}}
            ]
        }))
        .expect("slice")];
        let pods: Vec<Pod> = vec![
            serde_json::from_value(json!({
                "metadata": {"name": "p", "namespace": "default"},
                "spec": {"containers": []},
                "status": {"podIP": "10.244.1.7", "podIPs": [{"ip": "10.244.1.7"}]}
            }))
            .expect("pod"),
            serde_json::from_value(json!({
                "metadata": {"name": "done", "namespace": "default"},
                "spec": {"containers": []},
                "status": {"phase": "Succeeded", "podIP": "10.244.1.8"}
            }))
            .expect("pod"),
            serde_json::from_value(json!({
                "metadata": {"name": "host", "namespace": "default"},
                "spec": {"containers": [], "hostNetwork": true},
                "status": {"podIP": "192.168.0.5"}
            }))
            .expect("pod"),
        ];
        Snapshot::build(&services, &slices, &pods, 42)
    }

    fn auth() -> Authority {
        Authority::new("cluster.local", 5)
    }

    fn ask(name: &str, qtype: RecordType) -> Response {
        let name = Name::from_ascii(name).expect("name");
        match auth().lookup(&snapshot(), &name, qtype) {
            Outcome::Answer(r) => r,
            Outcome::Forward => panic!("{name} {qtype} was forwarded"),
        }
    }

    fn rdata(r: &Response) -> Vec<String> {
        let mut v: Vec<String> = r.answers.iter().map(|a| a.data.to_string()).collect();
        v.sort();
        v
    }

    fn is_nodata(r: &Response) {
        assert_eq!(r.code, ResponseCode::NoError);
        assert!(r.answers.is_empty(), "{:?}", r.answers);
        assert_eq!(r.authority.len(), 1);
        assert_eq!(r.authority[0].record_type(), RecordType::SOA);
    }

    fn is_nxdomain(r: &Response) {
        assert_eq!(r.code, ResponseCode::NXDomain);
        assert!(r.answers.is_empty());
        assert_eq!(r.authority[0].record_type(), RecordType::SOA);
    }

    #[test]
    fn cluster_ip_service_a_with_ttl_5() {
        let r = ask("web.default.svc.cluster.local.", RecordType::A);
        assert_eq!(r.code, ResponseCode::NoError);
        assert_eq!(rdata(&r), ["10.96.1.5"]);
        assert_eq!(r.answers[0].ttl, 5);
        assert!(r.authority.is_empty());
        // Case does not matter.
        assert_eq!(
            rdata(&ask("WEB.Default.SVC.cluster.local.", RecordType::A)),
            ["10.96.1.5"]
        );
    }

    #[test]
    fn ipv4_service_aaaa_is_nodata_and_ipv6_service_has_aaaa() {
        is_nodata(&ask("web.default.svc.cluster.local.", RecordType::AAAA));
        assert_eq!(
            rdata(&ask("v6.default.svc.cluster.local.", RecordType::AAAA)),
            ["fd00::5"]
        );
        is_nodata(&ask("v6.default.svc.cluster.local.", RecordType::A));
    }

    #[test]
    fn missing_service_and_namespace_are_nxdomain() {
        is_nxdomain(&ask("nope.default.svc.cluster.local.", RecordType::A));
        is_nxdomain(&ask("web.nope.svc.cluster.local.", RecordType::A));
        is_nxdomain(&ask("nope.cluster.local.", RecordType::A));
        // Existing intermediate names are NODATA, not NXDOMAIN.
        is_nodata(&ask("default.svc.cluster.local.", RecordType::A));
        is_nodata(&ask("svc.cluster.local.", RecordType::A));
        is_nxdomain(&ask("nons.svc.cluster.local.", RecordType::A));
    }

    #[test]
    fn headless_service_is_the_ready_endpoints() {
        let r = ask("db.prod.svc.cluster.local.", RecordType::A);
        // db-2 is not ready; unknown readiness counts as ready.
        assert_eq!(rdata(&r), ["10.244.1.10", "10.244.2.11"]);
        is_nxdomain(&ask("empty.prod.svc.cluster.local.", RecordType::A));
    }

    #[test]
    fn endpoint_hostname_records() {
        assert_eq!(
            rdata(&ask("db-0.db.prod.svc.cluster.local.", RecordType::A)),
            ["10.244.1.10"]
        );
        // Without a hostname the endpoint is named by its dashed IP.
        assert_eq!(
            rdata(&ask(
                "10-244-2-11.db.prod.svc.cluster.local.",
                RecordType::A
            )),
            ["10.244.2.11"]
        );
        is_nxdomain(&ask("db-2.db.prod.svc.cluster.local.", RecordType::A));
        is_nodata(&ask("db-0.db.prod.svc.cluster.local.", RecordType::AAAA));
        // Non-headless services have no endpoint names.
        is_nxdomain(&ask("x.web.default.svc.cluster.local.", RecordType::A));
    }

    #[test]
    fn srv_for_named_ports_of_cluster_ip_service() {
        let r = ask("_http._tcp.web.default.svc.cluster.local.", RecordType::SRV);
        assert_eq!(rdata(&r), ["0 100 80 web.default.svc.cluster.local."]);
        assert_eq!(r.additionals.len(), 1);
        let r = ask("_dns._udp.web.default.svc.cluster.local.", RecordType::SRV);
        assert_eq!(rdata(&r), ["0 100 53 web.default.svc.cluster.local."]);
        is_nxdomain(&ask(
            "_http._udp.web.default.svc.cluster.local.",
            RecordType::SRV,
        ));
        is_nxdomain(&ask(
            "_nope._tcp.web.default.svc.cluster.local.",
            RecordType::SRV,
        ));
        is_nodata(&ask(
            "_http._tcp.web.default.svc.cluster.local.",
            RecordType::A,
        ));
        is_nodata(&ask("_tcp.web.default.svc.cluster.local.", RecordType::SRV));
    }

    #[test]
    fn srv_for_headless_is_one_per_endpoint_with_endpoint_ports() {
        let r = ask("_pg._tcp.db.prod.svc.cluster.local.", RecordType::SRV);
        assert_eq!(
            rdata(&r),
            [
                "0 50 15432 10-244-2-11.db.prod.svc.cluster.local.",
                "0 50 15432 db-0.db.prod.svc.cluster.local."
            ]
        );
        let mut extra: Vec<String> = r
            .additionals
            .iter()
            .map(|a| format!("{} {}", a.name, a.data))
            .collect();
        extra.sort();
        assert_eq!(
            extra,
            [
                "10-244-2-11.db.prod.svc.cluster.local. 10.244.2.11",
                "db-0.db.prod.svc.cluster.local. 10.244.1.10"
            ]
        );
    }

    #[test]
    fn external_name_is_a_cname() {
        let r = ask("ext.default.svc.cluster.local.", RecordType::A);
        assert_eq!(r.code, ResponseCode::NoError);
        assert_eq!(rdata(&r), ["example.com."]);
        assert_eq!(r.answers[0].record_type(), RecordType::CNAME);
        assert_eq!(r.chase, Name::from_ascii("example.com.").ok());
        // An in-cluster target is followed here.
        let r = ask("alias.default.svc.cluster.local.", RecordType::A);
        assert_eq!(rdata(&r), ["10.96.1.5", "web.default.svc.cluster.local."]);
        assert!(r.chase.is_none());
    }

    #[test]
    fn pod_a_records_are_verified_against_pods() {
        assert_eq!(
            rdata(&ask("10-244-1-7.default.pod.cluster.local.", RecordType::A)),
            ["10.244.1.7"]
        );
        is_nxdomain(&ask("10-244-1-7.other.pod.cluster.local.", RecordType::A));
        is_nxdomain(&ask("10-244-9-9.default.pod.cluster.local.", RecordType::A));
        // Finished pods and host-network pods have no pod record.
        is_nxdomain(&ask("10-244-1-8.default.pod.cluster.local.", RecordType::A));
        is_nxdomain(&ask(
            "192-168-0-5.default.pod.cluster.local.",
            RecordType::A,
        ));
        is_nodata(&ask(
            "10-244-1-7.default.pod.cluster.local.",
            RecordType::AAAA,
        ));
    }

    #[test]
    fn ptr_for_service_endpoint_and_pod_ips() {
        let r = ask("5.1.96.10.in-addr.arpa.", RecordType::PTR);
        assert_eq!(rdata(&r), ["web.default.svc.cluster.local."]);
        let r = ask("10.1.244.10.in-addr.arpa.", RecordType::PTR);
        assert_eq!(rdata(&r), ["db-0.db.prod.svc.cluster.local."]);
        let r = ask("7.1.244.10.in-addr.arpa.", RecordType::PTR);
        assert_eq!(rdata(&r), ["10-244-1-7.default.pod.cluster.local."]);
        let v6 = "5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.";
        assert_eq!(
            rdata(&ask(v6, RecordType::PTR)),
            ["v6.default.svc.cluster.local."]
        );
        // Unknown addresses fall through to upstream.
        let unknown = Name::from_ascii("8.8.8.8.in-addr.arpa.").expect("name");
        assert!(matches!(
            auth().lookup(&snapshot(), &unknown, RecordType::PTR),
            Outcome::Forward
        ));
    }

    #[test]
    fn negative_answers_carry_the_zone_soa() {
        let r = ask("nope.default.svc.cluster.local.", RecordType::A);
        let soa = &r.authority[0];
        assert_eq!(soa.name.to_ascii(), "cluster.local.");
        assert_eq!(
            soa.data.to_string(),
            "ns.dns.cluster.local. hostmaster.cluster.local. 42 7200 1800 86400 5"
        );
        let apex = ask("cluster.local.", RecordType::SOA);
        assert_eq!(apex.answers.len(), 1);
    }

    #[test]
    fn dns_version_txt() {
        let r = ask("dns-version.cluster.local.", RecordType::TXT);
        assert_eq!(rdata(&r), ["1.1.0"]);
    }

    #[test]
    fn names_outside_the_domain_are_forwarded() {
        for n in [
            "example.com.",
            "cluster.local.example.com.",
            "xcluster.local.",
        ] {
            let name = Name::from_ascii(n).expect("name");
            assert!(
                matches!(
                    auth().lookup(&snapshot(), &name, RecordType::A),
                    Outcome::Forward
                ),
                "{n}"
            );
        }
    }

    #[test]
    fn srv_on_the_bare_cluster_ip_service_name_lists_every_port() {
        let r = ask("web.default.svc.cluster.local.", RecordType::SRV);
        assert_eq!(
            rdata(&r),
            [
                "0 50 53 web.default.svc.cluster.local.",
                "0 50 80 web.default.svc.cluster.local."
            ]
        );
    }
}
