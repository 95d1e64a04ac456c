//! Host test (root): `skiff cluster up` builds a server and agents in network namespaces of
//! their own; pods on different nodes reach each other without NAT (host-gw and VXLAN), a node
//! can be stopped and started, and `skiff cluster down` leaves no namespace, link, mount,
//! cgroup or process behind. The cluster is taken down also when the test fails.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::cluster::{Cluster, skiff, skip_reason};
use support::{Kubectl, eventually};

impl Cluster {
    /// A pod on node `node` running `script`, waited for until it ran to completion; its exit
    /// code.
    fn run_to_completion(&self, pod: &str, node: &str, script: &str) -> i64 {
        let overrides = format!(r#"{{"spec":{{"nodeName":"{node}"}}}}"#);
        self.kubectl.ok(&[
            "run",
            pod,
            "--image=busybox:1.36",
            "--restart=Never",
            &format!("--overrides={overrides}"),
            "--",
            "sh",
            "-c",
            script,
        ]);
        eventually(Duration::from_secs(60), "the pod finished", || {
            let code = self.kubectl.ok(&[
                "get",
                "pod",
                pod,
                "-o",
                "jsonpath={.status.containerStatuses[0].state.terminated.exitCode}",
            ]);
            code.trim().parse().ok()
        })
    }

    fn pod_ip(&self, pod: &str) -> String {
        eventually(Duration::from_secs(60), "the pod runs with an IP", || {
            let out = self.kubectl.ok(&[
                "get",
                "pod",
                pod,
                "-o",
                "jsonpath={.status.phase} {.status.podIP}",
            ]);
            let (phase, ip) = out.trim().split_once(' ')?;
            (phase == "Running" && !ip.is_empty()).then(|| ip.to_string())
        })
    }
}

/// What a cluster named `name` could leave behind: namespaces, links, cgroups, mounts.
fn leftovers(name: &str, dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let netns = String::from_utf8_lossy(
        &Command::new("ip")
            .args(["netns", "list"])
            .output()
            .expect("ip netns")
            .stdout,
    )
    .into_owned();
    found.extend(
        netns
            .lines()
            .filter(|l| l.starts_with(&format!("skiff-{name}-")))
            .map(|l| format!("netns {l}")),
    );
    let links = String::from_utf8_lossy(
        &Command::new("ip")
            .args(["-o", "link"])
            .output()
            .expect("ip link")
            .stdout,
    )
    .into_owned();
    if links.contains(&format!("sk-{name}")) {
        found.push(format!("link sk-{name}"));
    }
    for h in std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
    {
        for e in std::fs::read_dir(h.path()).into_iter().flatten().flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with(&format!("skiff-{name}-")) {
                found.push(format!("cgroup {}", e.path().display()));
            }
        }
    }
    let base = dir.display().to_string();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    found.extend(
        mounts
            .lines()
            .filter_map(|l| l.split_whitespace().nth(4))
            .filter(|m| m.starts_with(&base))
            .map(|m| format!("mount {m}")),
    );
    if dir.exists() {
        found.push(format!("dir {}", dir.display()));
    }
    found
}

fn pods_reach_each_other_across_nodes(name: &str, pod_network: &str) {
    let cluster = Cluster::up(name, 2, pod_network);
    let k = &cluster.kubectl;
    let nodes = k.ok(&["get", "nodes", "-o", "name"]);
    assert_eq!(nodes.lines().count(), 2, "{nodes}");
    for i in 1..=2 {
        eventually(Duration::from_secs(60), "nodes are Ready", || {
            let ready = k.ok(&[
                "get",
                "node",
                &cluster.node(i),
                "-o",
                r#"jsonpath={.status.conditions[?(@.type=="Ready")].status}"#,
            ]);
            (ready == "True").then_some(())
        });
    }
    // A web server on node 2 that answers with the address the request came from...
    let overrides = format!(r#"{{"spec":{{"nodeName":"{}"}}}}"#, cluster.node(2));
    k.ok(&[
        "run",
        "web",
        "--image=busybox:1.36",
        "--restart=Never",
        &format!("--overrides={overrides}"),
        "--",
        "sh",
        "-c",
        "mkdir -p /www/cgi-bin && printf '#!/bin/sh\\necho Content-Type: text/plain\\necho\\necho $REMOTE_ADDR\\n' > /www/cgi-bin/ip && chmod +x /www/cgi-bin/ip && httpd -f -p 8080 -h /www",
    ]);
    let web_ip = cluster.pod_ip("web");
    // ...and a client pod on node 1 that checks the answer is its own pod IP (no NAT; httpd
    // reports IPv4 peers as `[::ffff:a.b.c.d]`).
    // busybox 1.35's `wget -T` crashes; `timeout` bounds the request instead.
    let code = cluster.run_to_completion(
        "client",
        &cluster.node(1),
        &format!(
            "me=$(ip -4 -o addr show eth0 | awk '{{print $4}}' | cut -d/ -f1); seen=$(timeout 5 wget -qO- http://{web_ip}:8080/cgi-bin/ip | sed 's/^\\[::ffff://; s/\\]$//'); echo \"me=$me seen=$seen\"; [ \"$seen\" = \"$me\" ]"
        ),
    );
    assert_eq!(code, 0, "the client did not see its own address echoed");

    // A stopped node's agent comes back and the node is Ready again.
    let node1 = cluster.node(1);
    let dir = cluster.dir_arg();
    let out = skiff(&[
        "cluster",
        "stop-node",
        "--name",
        name,
        "--dir",
        &dir,
        &node1,
    ]);
    assert!(out.status.success(), "{out:?}");
    let out = skiff(&[
        "cluster",
        "start-node",
        "--name",
        name,
        "--dir",
        &dir,
        &node1,
    ]);
    assert!(out.status.success(), "{out:?}");
    let code = cluster.run_to_completion(
        "client-again",
        &node1,
        &format!("timeout 5 wget -qO- http://{web_ip}:8080/cgi-bin/ip"),
    );
    assert_eq!(code, 0, "pod traffic after the node's agent restarted");

    let dir = cluster.dir.clone();
    drop(cluster);
    let left = leftovers(name, &dir);
    assert!(left.is_empty(), "cluster down left: {left:#?}");
}

#[test]
fn host_gw_pods_reach_each_other_across_nodes_and_down_leaves_nothing() {
    if let Some(why) = skip_reason() {
        eprintln!("skipping: {why}");
        return;
    }
    pods_reach_each_other_across_nodes("hgw", "host-gw");
}

#[test]
fn vxlan_pods_reach_each_other_across_nodes_and_down_leaves_nothing() {
    if let Some(why) = skip_reason() {
        eprintln!("skipping: {why}");
        return;
    }
    pods_reach_each_other_across_nodes("vxl", "vxlan");
}

/// `kubectl exec` in `pod`: `script`'s stdout.
fn exec(k: &Kubectl, pod: &str, script: &str) -> String {
    k.ok(&["exec", pod, "--", "sh", "-c", script])
}

/// `curl` from this process (the root namespace, outside the cluster): the body, trimmed;
/// empty on failure.
fn curl(url: &str) -> String {
    Command::new("curl")
        .args(["-s", "-m", "3", url])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// httpd reports IPv4 peers as `[::ffff:a.b.c.d]`.
fn peer(remote_addr: &str) -> &str {
    remote_addr
        .trim()
        .trim_start_matches("[::ffff:")
        .trim_end_matches(']')
}

/// The running web pods: (name, node, pod IP).
fn web_pods(k: &Kubectl, want: usize) -> Vec<(String, String, String)> {
    eventually(Duration::from_secs(90), "the web pods run", || {
        let out = k.ok(&[
            "get",
            "pods",
            "-l",
            "app=web",
            "--field-selector=status.phase=Running",
            "-o",
            r#"jsonpath={range .items[*]}{.metadata.name} {.spec.nodeName} {.status.podIP}{"\n"}{end}"#,
        ]);
        let pods: Vec<(String, String, String)> = out
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                Some((w.next()?.into(), w.next()?.into(), w.next()?.into()))
            })
            .collect();
        (pods.len() == want).then_some(pods)
    })
}

/// The addresses of the Service's ready endpoints, sorted.
fn ready_endpoints(k: &Kubectl, svc: &str) -> Vec<String> {
    let out = k.ok(&[
        "get",
        "endpointslices",
        "-l",
        &format!("kubernetes.io/service-name={svc}"),
        "-o",
        "jsonpath={.items[*].endpoints[?(@.conditions.ready==true)].addresses[0]}",
    ]);
    let mut v: Vec<String> = out.split_whitespace().map(str::to_string).collect();
    v.sort();
    v
}

/// A Deployment `web` of three busybox httpd pods serving `/hostname` (the pod's name) and
/// `/cgi-bin/ip` (the peer address the request came from), and its ClusterIP Service `web`.
fn deploy_web(k: &Kubectl) -> Vec<(String, String, String)> {
    k.ok(&[
        "create",
        "deployment",
        "web",
        "--image=busybox:1.36",
        "--replicas=3",
        "--",
        "sh",
        "-c",
        "mkdir -p /www/cgi-bin && hostname > /www/hostname && printf '#!/bin/sh\\necho Content-Type: text/plain\\necho\\necho $REMOTE_ADDR\\n' > /www/cgi-bin/ip && chmod +x /www/cgi-bin/ip && exec httpd -f -p 8080 -h /www",
    ]);
    k.ok(&[
        "expose",
        "deployment",
        "web",
        "--port=80",
        "--target-port=8080",
    ]);
    let pods = web_pods(k, 3);
    eventually(Duration::from_secs(30), "three ready endpoints", || {
        (ready_endpoints(k, "web").len() == 3).then_some(())
    });
    pods
}

/// From `client` (a pod), `n` requests to the `web` Service by its short name: the answering
/// pods' names.
fn ask_web_from(k: &Kubectl, client: &str, n: usize) -> Vec<String> {
    exec(
        k,
        client,
        &format!("for i in $(seq 1 {n}); do timeout 3 wget -qO- http://web/hostname; done"),
    )
    .lines()
    .map(str::to_string)
    .collect()
}

/// DNS and ClusterIP from a pod, balanced over backends on other nodes too.
fn dns_and_cluster_ip_across_nodes(k: &Kubectl, pods: &[(String, String, String)]) {
    let cluster_ip = k.ok(&["get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}"]);
    let (client, client_node, _) = &pods[0];
    let lookup = exec(k, client, "nslookup web.default.svc.cluster.local");
    assert!(lookup.contains(&cluster_ip), "{lookup}");
    let answers = ask_web_from(k, client, 30);
    let seen: std::collections::BTreeSet<&str> = answers.iter().map(String::as_str).collect();
    assert!(
        seen.len() >= 2,
        "one backend answered every request: {answers:?}"
    );
    assert!(
        seen.iter().all(|h| pods.iter().any(|p| p.0 == *h)),
        "{seen:?}"
    );
    let remote: Vec<&str> = pods
        .iter()
        .filter(|p| p.1 != *client_node)
        .map(|p| p.0.as_str())
        .collect();
    if !remote.is_empty() {
        assert!(
            seen.iter().any(|h| remote.contains(h)),
            "no backend on another node answered: {seen:?}, remote {remote:?}"
        );
    }
    // Hairpin: the client is itself a backend, and its requests through the Service reach it
    // too (30 tries over 3 backends miss it with probability (2/3)^30).
    assert!(
        seen.contains(client.as_str()),
        "the client never reached itself: {seen:?}"
    );
    // From every node's own network namespace (host-network clients), the ClusterIP works.
    let nodes: std::collections::BTreeSet<&str> = pods.iter().map(|p| p.1.as_str()).collect();
    for node in nodes {
        let (cluster, index) = node.rsplit_once("-node-").expect("node name");
        let out = Command::new("nsenter")
            .arg(format!("--net=/var/run/netns/skiff-{cluster}-n{index}"))
            .args(["timeout", "5", "/bin/busybox", "wget", "-qO-"])
            .arg(format!("http://{cluster_ip}/hostname"))
            .output()
            .expect("nsenter");
        let host = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(
            pods.iter().any(|p| p.0 == host),
            "ClusterIP from node {node}: {out:?}"
        );
    }
}

fn node_ip(k: &Kubectl, node: &str) -> String {
    k.ok(&[
        "get",
        "node",
        node,
        "-o",
        r#"jsonpath={.status.addresses[?(@.type=="InternalIP")].address}"#,
    ])
}

fn node_ready(k: &Kubectl, node: &str) -> String {
    k.ok(&[
        "get",
        "node",
        node,
        "-o",
        r#"jsonpath={.status.conditions[?(@.type=="Ready")].status}"#,
    ])
}

/// LoadBalancer ingress IPs of a Service, sorted.
fn ingress_ips(k: &Kubectl, svc: &str) -> Vec<String> {
    let out = k.ok(&[
        "get",
        "svc",
        svc,
        "-o",
        "jsonpath={.status.loadBalancer.ingress[*].ip}",
    ]);
    let mut v: Vec<String> = out.split_whitespace().map(str::to_string).collect();
    v.sort();
    v
}

#[test]
fn services_nodeports_load_balancers_and_dns_on_a_three_node_cluster() {
    if let Some(why) = skip_reason() {
        eprintln!("skipping: {why}");
        return;
    }
    // A short grace, so a stopped node turns Unknown within the test (leases renew every 10 s).
    let cluster = Cluster::up_with(
        "svc",
        3,
        "host-gw",
        &["--server-arg=--node-monitor-grace-period=20s"],
    );
    let k = &cluster.kubectl;
    let pods = deploy_web(k);
    pod_egress_is_masqueraded(&cluster, &pods[0]);
    for (name, type_, extra) in [
        ("web-np", "NodePort", None),
        ("web-local", "NodePort", Some("Local")),
        ("web-lb", "LoadBalancer", None),
    ] {
        k.ok(&[
            "expose",
            "deployment",
            "web",
            &format!("--name={name}"),
            &format!("--type={type_}"),
            "--port=80",
            "--target-port=8080",
        ]);
        if let Some(policy) = extra {
            k.ok(&[
                "patch",
                "svc",
                name,
                "-p",
                &format!(r#"{{"spec":{{"externalTrafficPolicy":"{policy}"}}}}"#),
            ]);
        }
    }

    dns_and_cluster_ip_across_nodes(k, &pods);

    // NodePort from outside the cluster (this process, in the root namespace) on every node.
    let node_port = |svc: &str| {
        k.ok(&[
            "get",
            "svc",
            svc,
            "-o",
            "jsonpath={.spec.ports[0].nodePort}",
        ])
    };
    let np = node_port("web-np");
    let node_ips = k.ok(&[
        "get",
        "nodes",
        "-o",
        r#"jsonpath={.items[*].status.addresses[?(@.type=="InternalIP")].address}"#,
    ]);
    assert_eq!(node_ips.split_whitespace().count(), 3, "{node_ips}");
    for ip in node_ips.split_whitespace() {
        let host = eventually(Duration::from_secs(10), "NodePort answers", || {
            let h = curl(&format!("http://{ip}:{np}/hostname"));
            (!h.is_empty()).then_some(h)
        });
        assert!(
            pods.iter().any(|p| p.0 == host),
            "NodePort on {ip}: {host:?}"
        );
    }

    // externalTrafficPolicy: this process is the client, at the switch's host address.
    let first_ip = node_ips
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string();
    let client_ip = format!(
        "{}.1",
        first_ip
            .rsplit_once('.')
            .map(|(p, _)| p)
            .unwrap_or_default()
    );
    // Cluster: masqueraded, the backend sees a node address, not ours.
    for _ in 0..5 {
        let seen = curl(&format!("http://{first_ip}:{np}/cgi-bin/ip"));
        assert!(!seen.is_empty(), "NodePort (Cluster) did not answer");
        assert_ne!(peer(&seen), client_ip, "Cluster policy did not masquerade");
    }
    // Local: on a node with a backend, the backend sees the real client address.
    let lp = node_port("web-local");
    let (local_pod, local_node, _) = &pods[0];
    let local_node_ip = node_ip(k, local_node);
    let seen = eventually(Duration::from_secs(10), "NodePort (Local) answers", || {
        let s = curl(&format!("http://{local_node_ip}:{lp}/cgi-bin/ip"));
        (!s.is_empty()).then_some(s)
    });
    assert_eq!(
        peer(&seen),
        client_ip,
        "Local policy lost the client IP (pod {local_pod})"
    );

    // LoadBalancer: ServiceLB fills the ingress with every Ready node's address; kubectl shows
    // them as EXTERNAL-IP; the service answers on them from outside.
    let mut all_ips: Vec<String> = node_ips.split_whitespace().map(str::to_string).collect();
    all_ips.sort();
    eventually(Duration::from_secs(30), "LoadBalancer ingress", || {
        (ingress_ips(k, "web-lb") == all_ips).then_some(())
    });
    let table = k.ok(&["get", "svc", "web-lb"]);
    let external = table
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().nth(3))
        .unwrap_or_default()
        .to_string();
    // Upstream's printer shortens a long list (`a.b.c.d...`): the first address shows.
    assert!(table.contains("EXTERNAL-IP"), "{table}");
    assert!(external.starts_with(all_ips[0].as_str()), "{table}");
    for ip in &all_ips {
        let host = eventually(Duration::from_secs(10), "LoadBalancer answers", || {
            let h = curl(&format!("http://{ip}:80/hostname"));
            (!h.is_empty()).then_some(h)
        });
        assert!(pods.iter().any(|p| p.0 == host), "LB on {ip}: {host:?}");
    }

    // A stopped node: Unknown after the grace period, its pod not ready, its address out of
    // the ready endpoints and out of the load balancer; the ClusterIP reaches only live pods.
    let (client, client_node, _) = &pods[0];
    let (gone_pod, gone_node, gone_ip) = pods
        .iter()
        .find(|p| p.1 != *client_node)
        .cloned()
        .unwrap_or_else(|| pods[2].clone());
    let dir = cluster.dir_arg();
    let out = skiff(&[
        "cluster",
        "stop-node",
        "--name",
        "svc",
        "--dir",
        &dir,
        &gone_node,
    ]);
    assert!(out.status.success(), "{out:?}");
    eventually(
        Duration::from_secs(60),
        "the stopped node is Unknown",
        || (node_ready(k, &gone_node) == "Unknown").then_some(()),
    );
    eventually(Duration::from_secs(30), "its pod is not ready", || {
        let ready = k.ok(&[
            "get",
            "pod",
            &gone_pod,
            "-o",
            r#"jsonpath={.status.conditions[?(@.type=="Ready")].status}"#,
        ]);
        (ready == "False").then_some(())
    });
    let mut live_ips: Vec<String> = pods
        .iter()
        .filter(|p| p.1 != gone_node)
        .map(|p| p.2.clone())
        .collect();
    live_ips.sort();
    eventually(
        Duration::from_secs(30),
        "its address leaves the endpoints",
        || {
            let ready = ready_endpoints(k, "web");
            (!ready.contains(&gone_ip) && ready == live_ips).then_some(())
        },
    );
    let gone_node_ip = node_ip(k, &gone_node);
    eventually(
        Duration::from_secs(30),
        "the node leaves the LB ingress",
        || {
            let ips = ingress_ips(k, "web-lb");
            (ips.len() == 2 && !ips.contains(&gone_node_ip)).then_some(())
        },
    );
    let answers = eventually(Duration::from_secs(15), "only live pods answer", || {
        let a = ask_web_from(k, client, 20);
        (a.len() == 20 && a.iter().all(|h| *h != gone_pod)).then_some(a)
    });
    assert!(
        answers.iter().all(|h| pods.iter().any(|p| p.0 == *h)),
        "{answers:?}"
    );

    // The node comes back: Ready, its pod ready and in the endpoints again.
    let out = skiff(&[
        "cluster",
        "start-node",
        "--name",
        "svc",
        "--dir",
        &dir,
        &gone_node,
    ]);
    assert!(out.status.success(), "{out:?}");
    eventually(Duration::from_secs(60), "the node is Ready again", || {
        (node_ready(k, &gone_node) == "True").then_some(())
    });
    eventually(
        Duration::from_secs(60),
        "its pod is back in the endpoints",
        || ready_endpoints(k, "web").contains(&gone_ip).then_some(()),
    );

    // Scaling changes the backends: one pod left, every answer comes from it.
    k.ok(&["scale", "deployment", "web", "--replicas=1"]);
    let left = eventually(Duration::from_secs(60), "one web pod left", || {
        let out = k.ok(&[
            "get",
            "pods",
            "-l",
            "app=web",
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ]);
        let names: Vec<&str> = out.split_whitespace().collect();
        (names.len() == 1).then(|| names[0].to_string())
    });
    eventually(
        Duration::from_secs(30),
        "only the remaining pod answers",
        || {
            (0..10)
                .all(|_| curl(&format!("http://{first_ip}:{np}/hostname")) == left)
                .then_some(())
        },
    );
}

#[test]
fn vxlan_cluster_ip_and_dns_across_three_nodes() {
    if let Some(why) = skip_reason() {
        eprintln!("skipping: {why}");
        return;
    }
    let cluster = Cluster::up("svx", 3, "vxlan");
    let k = &cluster.kubectl;
    let pods = deploy_web(k);
    dns_and_cluster_ip_across_nodes(k, &pods);
}

/// Pod-to-external: a pod reaching an address outside the cluster (the host's end of the
/// cluster's /24, where this test listens) arrives from its node's address, not its pod IP.
fn pod_egress_is_masqueraded(cluster: &Cluster, pod: &(String, String, String)) {
    let config = std::fs::read_to_string(&cluster.kubectl.kubeconfig).expect("kubeconfig");
    let host_ip = config
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: https://"))
        .and_then(|a| a.rsplit_once(':'))
        .map(|(ip, _)| ip.to_string())
        .expect("server address");
    let listener = std::net::TcpListener::bind((host_ip.as_str(), 0)).expect("listen");
    let port = listener.local_addr().expect("addr").port();
    let accepted = std::thread::spawn(move || {
        let (mut conn, peer) = listener.accept().expect("accept");
        use std::io::Write;
        let _ = conn.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok");
        peer.ip().to_string()
    });
    let got = exec(
        &cluster.kubectl,
        &pod.0,
        &format!("timeout 5 wget -qO- http://{host_ip}:{port}/"),
    );
    assert_eq!(got.trim(), "ok");
    let peer = accepted.join().expect("listener thread");
    assert_eq!(
        peer,
        node_ip(&cluster.kubectl, &pod.1),
        "pod {} reached the outside from {peer}",
        pod.2
    );
}
