//! Host test (root): the generated rules, loaded by nft into a "node" network namespace, carry
//! real traffic between namespaces the test builds. Nothing in the root namespace is touched.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use skiff_proxy::model::{self, NodeInfo, SERVICE_NAME_LABEL};
use skiff_proxy::{Applier, script};

const POD_A: &str = "10.244.1.10";
const POD_B: &str = "10.244.1.11";
const NODE_IP: &str = "192.168.77.1";
const CLIENT_IP: &str = "192.168.77.100";
const WEB_IP: &str = "10.96.0.20";
const EMPTY_IP: &str = "10.96.0.30";
const NODE_PORT: i32 = 30080;

/// Why the host test cannot run here, if it cannot.
fn skip_reason() -> Option<String> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some("not root: network namespaces and nftables need root".into());
    }
    for bin in ["nft", "nsenter", "busybox", "ip"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {bin}")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !found {
            return Some(format!(
                "{bin} is not installed (Debian: nftables, util-linux, busybox-static, iproute2)"
            ));
        }
    }
    None
}

fn run(args: &[&str]) -> Output {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("run {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The namespaces, processes and files of one test; all removed on drop, also on failure.
/// Deleting a namespace deletes its links and its nft tables with it.
struct Topology {
    node: String,
    pod_a: String,
    pod_b: String,
    client: String,
    namespaces: Vec<String>,
    servers: Vec<Child>,
    www: PathBuf,
}

impl Drop for Topology {
    fn drop(&mut self) {
        for c in &mut self.servers {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in self.namespaces.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        let _ = std::fs::remove_dir_all(&self.www);
    }
}

impl Topology {
    /// node (bridge br0 10.244.1.1/24, eth-c 192.168.77.1/24) with pods a and b on the bridge
    /// and a client namespace outside the cluster CIDR behind eth-c.
    fn up() -> Topology {
        let p = format!("skp{}", std::process::id());
        let mut t = Topology {
            node: format!("{p}-node"),
            pod_a: format!("{p}-a"),
            pod_b: format!("{p}-b"),
            client: format!("{p}-c"),
            namespaces: Vec::new(),
            servers: Vec::new(),
            www: std::env::temp_dir().join(format!("{p}-www")),
        };
        for ns in [&t.node, &t.pod_a, &t.pod_b, &t.client] {
            run(&["ip", "netns", "add", ns]);
            t.namespaces.push(ns.clone());
            run(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        let node = t.node.clone();
        let n = |args: &[&str]| {
            let mut v = vec!["ip", "-n", node.as_str()];
            v.extend_from_slice(args);
            run(&v);
        };
        n(&["link", "add", "br0", "type", "bridge"]);
        n(&["addr", "add", "10.244.1.1/24", "dev", "br0"]);
        n(&["link", "set", "br0", "up"]);
        // Per-namespace sysctls: the root namespace's settings stay as they are.
        run(&[
            "ip",
            "netns",
            "exec",
            &node,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ]);
        // The service range is routed back out of br0 (below), so a pod's packet to a ClusterIP
        // without endpoints leaves by the interface it came in on: the ICMP redirect the kernel
        // would send uses up the per-host ICMP rate limit and swallows our reject.
        for conf in ["all", "br0"] {
            let key = format!("net.ipv4.conf.{conf}.send_redirects=0");
            run(&["ip", "netns", "exec", &node, "sysctl", "-qw", &key]);
        }
        let brnf = Command::new("ip")
            .args([
                "netns",
                "exec",
                &node,
                "sysctl",
                "-qw",
                "net.bridge.bridge-nf-call-iptables=1",
            ])
            .status();
        let _ = brnf;
        for (pod, host_if, ip) in [(&t.pod_a, "veth-a", POD_A), (&t.pod_b, "veth-b", POD_B)] {
            n(&[
                "link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns", pod,
            ]);
            n(&["link", "set", host_if, "master", "br0", "up"]);
            // Without hairpin the bridge never sends a pod's own DNATed packet back to it.
            n(&[
                "link",
                "set",
                host_if,
                "type",
                "bridge_slave",
                "hairpin",
                "on",
            ]);
            run(&[
                "ip",
                "-n",
                pod,
                "addr",
                "add",
                &format!("{ip}/24"),
                "dev",
                "eth0",
            ]);
            run(&["ip", "-n", pod, "link", "set", "eth0", "up"]);
            run(&[
                "ip",
                "-n",
                pod,
                "route",
                "add",
                "default",
                "via",
                "10.244.1.1",
            ]);
        }
        n(&[
            "link", "add", "eth-c", "type", "veth", "peer", "name", "eth0", "netns", &t.client,
        ]);
        n(&["addr", "add", &format!("{NODE_IP}/24"), "dev", "eth-c"]);
        n(&["link", "set", "eth-c", "up"]);
        run(&[
            "ip",
            "-n",
            &t.client,
            "addr",
            "add",
            &format!("{CLIENT_IP}/24"),
            "dev",
            "eth0",
        ]);
        run(&["ip", "-n", &t.client, "link", "set", "eth0", "up"]);
        run(&[
            "ip", "-n", &t.client, "route", "add", "default", "via", NODE_IP,
        ]);
        // The service range is routed into the pod network, so a ClusterIP without endpoints
        // reaches the forward hook (and our reject) instead of failing in routing.
        n(&[
            "route",
            "add",
            "10.96.0.0/12",
            "dev",
            "br0",
            "src",
            "10.244.1.1",
        ]);

        for (pod, text) in [(t.pod_a.clone(), "pod-a"), (t.pod_b.clone(), "pod-b")] {
            let dir = t.www.join(text);
            std::fs::create_dir_all(&dir).expect("www dir");
            std::fs::write(dir.join("index.html"), format!("{text}\n")).expect("index.html");
            // A CGI that answers with the client address the backend sees (SNAT or not).
            let cgi = dir.join("cgi-bin");
            std::fs::create_dir_all(&cgi).expect("cgi-bin");
            let script = "#!/usr/bin/env -S busybox sh\necho 'Content-Type: text/plain'\necho\necho \"$REMOTE_ADDR\"\n";
            std::fs::write(cgi.join("ip"), script).expect("cgi script");
            run(&["chmod", "755", &cgi.join("ip").to_string_lossy()]);
            let child = Command::new("ip")
                .args([
                    "netns", "exec", &pod, "busybox", "httpd", "-f", "-p", "8080", "-h",
                ])
                .arg(&dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn busybox httpd");
            t.servers.push(child);
        }
        for (ip, text) in [(POD_A, "pod-a"), (POD_B, "pod-b")] {
            let url = format!("http://{ip}:8080/");
            eventually(&format!("{text} serves"), || {
                t.get(&t.pod_b, &url).ok().as_deref() == Some(text)
            });
        }
        t
    }

    fn applier(&self) -> Applier {
        Applier::in_netns(format!("/run/netns/{}", self.node))
    }

    /// One HTTP GET from namespace `ns`: the body (trimmed) or wget's error.
    fn get(&self, ns: &str, url: &str) -> Result<String, String> {
        // `busybox wget -T` crashes in Debian's busybox 1.35; `timeout` bounds the request.
        let out = Command::new("ip")
            .args([
                "netns", "exec", ns, "timeout", "5", "busybox", "wget", "-q", "-O", "-", url,
            ])
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }

    /// Which backends answer `url` from `ns` over up to `n` requests; panics on a failure.
    fn backends(&self, ns: &str, url: &str, n: usize, want_both: bool) -> Vec<String> {
        let mut seen: Vec<String> = Vec::new();
        for _ in 0..n {
            let body = self
                .get(ns, url)
                .unwrap_or_else(|e| panic!("GET {url} from {ns}: {e}"));
            if !seen.contains(&body) {
                seen.push(body);
            }
            if want_both && seen.len() == 2 {
                break;
            }
        }
        seen.sort();
        seen
    }
}

fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for: {what}");
}

fn service(name: &str, ip: &str, node_port: Option<i32>) -> Service {
    Service {
        metadata: ObjectMeta {
            namespace: Some("default".into()),
            name: Some(name.into()),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            cluster_ip: Some(ip.into()),
            type_: Some(
                if node_port.is_some() {
                    "NodePort"
                } else {
                    "ClusterIP"
                }
                .into(),
            ),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: 80,
                protocol: Some("TCP".into()),
                node_port,
                ..Default::default()
            }]),
            ..Default::default()
        }),
        status: None,
    }
}

fn slice(svc: &str, ips: &[&str]) -> EndpointSlice {
    EndpointSlice {
        metadata: ObjectMeta {
            namespace: Some("default".into()),
            name: Some(format!("{svc}-abc")),
            labels: Some([(SERVICE_NAME_LABEL.to_string(), svc.to_string())].into()),
            ..Default::default()
        },
        address_type: "IPv4".into(),
        ports: Some(vec![EndpointPort {
            name: Some("http".into()),
            port: Some(8080),
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
        endpoints: ips
            .iter()
            .map(|ip| Endpoint {
                addresses: vec![ip.to_string()],
                node_name: Some("node-a".into()),
                conditions: Some(EndpointConditions {
                    ready: Some(true),
                    serving: Some(true),
                    terminating: Some(false),
                }),
                ..Default::default()
            })
            .collect(),
    }
}

fn node_info() -> NodeInfo {
    NodeInfo {
        node_name: "node-a".into(),
        node_ips: vec![NODE_IP.parse::<Ipv4Addr>().expect("valid literal")],
        cluster_cidr: Some("10.244.0.0/16".parse().expect("valid literal")),
    }
}

#[test]
fn cluster_ip_node_port_hairpin_updates_and_reject_in_network_namespaces() {
    if let Some(why) = skip_reason() {
        eprintln!(
            "SKIPPED cluster_ip_node_port_hairpin_updates_and_reject_in_network_namespaces: {why}"
        );
        return;
    }
    let t = Topology::up();
    let applier = t.applier();
    let services = [
        service("web", WEB_IP, Some(NODE_PORT)),
        service("empty", EMPTY_IP, None),
    ];
    let both = model::build(&services, &[slice("web", &[POD_A, POD_B])], &node_info());
    applier
        .apply(&script::full(&both))
        .unwrap_or_else(|e| panic!("full sync: {e}"));

    let cluster_url = format!("http://{WEB_IP}/");
    let node_port_url = format!("http://{NODE_IP}:{NODE_PORT}/");
    // ClusterIP from outside the cluster CIDR and from a pod: both backends answer.
    assert_eq!(
        t.backends(&t.client, &cluster_url, 60, true),
        ["pod-a", "pod-b"]
    );
    assert_eq!(
        t.backends(&t.pod_b, &cluster_url, 60, true),
        ["pod-a", "pod-b"]
    );
    // NodePort from the outside namespace.
    assert_eq!(
        t.backends(&t.client, &node_port_url, 60, true),
        ["pod-a", "pod-b"]
    );
    // Hairpin: pod a reaches itself through its own service (and pod b too).
    assert_eq!(
        t.backends(&t.pod_a, &cluster_url, 60, true),
        ["pod-a", "pod-b"]
    );

    // A service with no endpoints is refused at once, not left to time out.
    let err = t
        .get(&t.client, &format!("http://{EMPTY_IP}/"))
        .expect_err("a service without endpoints must not answer");
    assert!(err.contains("refused"), "expected a reject, got: {err}");
    let err = t
        .get(&t.pod_a, &format!("http://{EMPTY_IP}/"))
        .expect_err("a service without endpoints must not answer");
    assert!(err.contains("refused"), "expected a reject, got: {err}");

    // ClientIP affinity (added incrementally): one client keeps one backend; then removed again.
    let mut sticky = service("sticky", "10.96.0.21", None);
    if let Some(spec) = sticky.spec.as_mut() {
        spec.session_affinity = Some("ClientIP".into());
    }
    let with_sticky = model::build(
        &[services[0].clone(), services[1].clone(), sticky],
        &[
            slice("web", &[POD_A, POD_B]),
            slice("sticky", &[POD_A, POD_B]),
        ],
        &node_info(),
    );
    applier
        .apply(&script::diff(&both, &with_sticky))
        .unwrap_or_else(|e| panic!("incremental sync: {e}"));
    // Without affinity, 12 requests all landing on one of two backends has odds of 1 in 2,048.
    let seen = t.backends(&t.client, "http://10.96.0.21/", 12, false);
    assert_eq!(seen.len(), 1, "affinity broken: {seen:?}");
    assert_eq!(
        t.backends(&t.pod_b, &cluster_url, 60, true),
        ["pod-a", "pod-b"]
    );
    applier
        .apply(&script::diff(&with_sticky, &both))
        .unwrap_or_else(|e| panic!("incremental sync: {e}"));

    // Incremental update: pod b leaves the service; only its chains change.
    let only_a = model::build(&services, &[slice("web", &[POD_A])], &node_info());
    let diff = script::diff(&both, &only_a);
    assert!(!diff.contains("delete table"), "{diff}");
    applier
        .apply(&diff)
        .unwrap_or_else(|e| panic!("incremental sync: {e}\n{diff}"));
    assert_eq!(t.backends(&t.client, &cluster_url, 20, false), ["pod-a"]);
    assert_eq!(t.backends(&t.client, &node_port_url, 20, false), ["pod-a"]);

    // Source addresses the backend sees: a pod's ClusterIP traffic keeps its IP; traffic from
    // outside the cluster CIDR and NodePort traffic are masqueraded (to the node's bridge IP).
    // busybox httpd listens on IPv6 and reports IPv4 clients as `[::ffff:a.b.c.d]`.
    let ip_of = |ns: &str, url: &str| {
        let seen = t.get(ns, url).unwrap_or_else(|e| panic!("GET {url}: {e}"));
        seen.trim_start_matches("[::ffff:")
            .trim_end_matches(']')
            .to_string()
    };
    assert_eq!(
        ip_of(&t.pod_b, &format!("http://{WEB_IP}/cgi-bin/ip")),
        POD_B
    );
    assert_eq!(
        ip_of(&t.client, &format!("http://{WEB_IP}/cgi-bin/ip")),
        "10.244.1.1"
    );
    assert_eq!(
        ip_of(
            &t.client,
            &format!("http://{NODE_IP}:{NODE_PORT}/cgi-bin/ip")
        ),
        "10.244.1.1"
    );
    // externalTrafficPolicy: Local keeps the outside client's address on a NodePort.
    let mut local = service("local", "10.96.0.22", Some(30081));
    if let Some(spec) = local.spec.as_mut() {
        spec.external_traffic_policy = Some("Local".into());
    }
    let with_local = model::build(
        &[services[0].clone(), services[1].clone(), local],
        &[slice("web", &[POD_A]), slice("local", &[POD_A])],
        &node_info(),
    );
    applier
        .apply(&script::diff(&only_a, &with_local))
        .unwrap_or_else(|e| panic!("incremental sync: {e}"));
    assert_eq!(
        ip_of(&t.client, &format!("http://{NODE_IP}:30081/cgi-bin/ip")),
        CLIENT_IP
    );
    applier
        .apply(&script::diff(&with_local, &only_a))
        .unwrap_or_else(|e| panic!("incremental sync: {e}"));

    // The empty service gains pod b: it now answers (so the reject above was our rule).
    let filled = model::build(
        &services,
        &[slice("web", &[POD_A]), slice("empty", &[POD_B])],
        &node_info(),
    );
    applier
        .apply(&script::diff(&only_a, &filled))
        .unwrap_or_else(|e| panic!("incremental sync: {e}"));
    assert_eq!(
        t.backends(&t.client, &format!("http://{EMPTY_IP}/"), 5, false),
        ["pod-b"]
    );

    // A later full sync (an agent restart) converges: chains the new model lacks are gone.
    let table = applier.list_table().expect("table exists");
    assert!(table.contains("/empty/tcp/http__10.244.1.11/8080"));
    applier
        .apply(&script::full(&only_a))
        .unwrap_or_else(|e| panic!("second full sync: {e}"));
    let table = applier.list_table().expect("table exists");
    assert!(
        !table.contains("/empty/tcp/http__"),
        "stale chain left:\n{table}"
    );
    assert_eq!(t.backends(&t.client, &cluster_url, 5, false), ["pod-a"]);

    // nft errors name the script line.
    let err = applier
        .apply("add table ip skiff-proxy\nadd chain ip skiff-proxy bogus { junk }\n")
        .expect_err("bad script");
    assert!(err.to_string().contains("script line 2"), "{err}");

    applier
        .apply(&script::cleanup())
        .unwrap_or_else(|e| panic!("cleanup: {e}"));
    assert!(applier.list_table().is_none());
}

/// Every kind of rule the model makes is accepted by nft, in a full sync and in diffs both ways.
#[test]
fn nft_accepts_every_rule_kind_in_full_and_incremental_syncs() {
    if let Some(why) = skip_reason() {
        eprintln!("SKIPPED nft_accepts_every_rule_kind_in_full_and_incremental_syncs: {why}");
        return;
    }
    let ns = format!("skp{}-all", std::process::id());
    run(&["ip", "netns", "add", &ns]);
    struct Del(String);
    impl Drop for Del {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
        }
    }
    let _guard = Del(ns.clone());
    let applier = Applier::in_netns(format!("/run/netns/{ns}"));

    let mut sticky = service("sticky", "10.96.0.41", None);
    let mut local = service("local", "10.96.0.42", Some(30090));
    let mut lb = service("lb", "10.96.0.43", Some(30091));
    let mut internal = service("internal", "10.96.0.44", None);
    let mut udp = service("dns", "10.96.0.45", None);
    if let Some(spec) = sticky.spec.as_mut() {
        spec.session_affinity = Some("ClientIP".into());
    }
    if let Some(spec) = local.spec.as_mut() {
        spec.external_traffic_policy = Some("Local".into());
    }
    if let Some(spec) = lb.spec.as_mut() {
        spec.type_ = Some("LoadBalancer".into());
        spec.external_ips = Some(vec!["192.168.77.50".into()]);
    }
    lb.status = Some(k8s_openapi::api::core::v1::ServiceStatus {
        load_balancer: Some(k8s_openapi::api::core::v1::LoadBalancerStatus {
            ingress: Some(vec![k8s_openapi::api::core::v1::LoadBalancerIngress {
                ip: Some("192.168.77.60".into()),
                ..Default::default()
            }]),
        }),
        ..Default::default()
    });
    if let Some(spec) = internal.spec.as_mut() {
        spec.internal_traffic_policy = Some("Local".into());
    }
    if let Some(port) = udp
        .spec
        .as_mut()
        .and_then(|s| s.ports.as_mut())
        .and_then(|p| p.first_mut())
    {
        port.protocol = Some("UDP".into());
    }
    let mut udp_slice = slice("dns", &[POD_A, POD_B]);
    if let Some(p) = udp_slice.ports.as_mut().and_then(|p| p.first_mut()) {
        p.protocol = Some("UDP".into());
    }
    let mut elsewhere = slice("internal", &[POD_B]);
    elsewhere.endpoints[0].node_name = Some("node-b".into());
    let services = [
        sticky,
        local,
        lb,
        internal,
        udp,
        service("empty", EMPTY_IP, Some(30092)),
    ];
    let slices = vec![
        slice("sticky", &[POD_A, POD_B]),
        slice("local", &[POD_A, POD_B]),
        slice("lb", &[POD_A]),
        elsewhere,
        udp_slice,
    ];
    let all = model::build(&services, &slices, &node_info());
    // Every map gets elements, including drop and reject verdicts.
    for m in [
        model::SERVICE_IPS,
        model::SERVICE_NODEPORTS,
        model::NO_ENDPOINT_SERVICES,
        model::NO_ENDPOINT_NODEPORTS,
    ] {
        assert!(
            all.maps.get(m).is_some_and(|e| !e.is_empty()),
            "map {m} is empty"
        );
    }
    assert!(!all.affinity_sets.is_empty());
    applier
        .apply(&script::full(&all))
        .unwrap_or_else(|e| panic!("full sync: {e}"));

    // Everything loses its endpoints, then gets them back: diffs in both directions apply.
    let none = model::build(&services, &[] as &[EndpointSlice], &node_info());
    for (from, to) in [
        (&all, &none),
        (&none, &all),
        (&all, &model::Ruleset::default()),
    ] {
        let d = script::diff(from, to);
        applier
            .apply(&d)
            .unwrap_or_else(|e| panic!("incremental sync: {e}\n{d}"));
    }
    let table = applier.list_table().expect("table");
    assert!(!table.contains("chain endpoint-"), "{table}");
    assert!(!table.contains("set affinity-"), "{table}");
}
