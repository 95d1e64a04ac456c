//! Host test (root): `skiff server` without `--disable-agent` runs a node agent for its own host.
//! The server runs inside a network namespace the test creates (a veth pair carrying the
//! node's address, loopback up), never in the root namespace. Its node becomes Ready with that
//! address, a scheduled busybox pod runs and its logs come through kubectl, SIGTERM stops the
//! server but leaves the container running, and a restarted server adopts the pod. Everything
//! the test created is removed at the end, also on failure.

mod support;

use std::path::Path;
use std::time::Duration;

use support::eventually;
use support::netns_host::{NetnsHost as Host, skip_reason, text};

/// The node's address on the test namespace's veth.
const NODE_IP: &str = "10.213.7.2";
const NODE: &str = "skiff-sa-node";

#[test]
fn the_servers_own_node_runs_a_pod_and_keeps_it_across_a_server_restart() {
    if let Some(why) = skip_reason() {
        eprintln!("skipping: {why}");
        return;
    }
    let mut host = Host::new("skiff-sa", NODE_IP, NODE);
    host.import_busybox();
    host.start_server(&[]);

    host.wait_until_usable();
    let node: serde_json::Value =
        serde_json::from_str(&host.ok(&["get", "node", NODE, "-o", "json"])).expect("node json");
    let addresses = node["status"]["addresses"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        addresses
            .iter()
            .any(|a| a["type"] == "InternalIP" && a["address"] == NODE_IP),
        "the node's InternalIP is the namespace's first non-loopback address: {addresses:?}"
    );
    assert!(
        node["spec"]["podCIDR"]
            .as_str()
            .is_some_and(|c| c.starts_with("10.244.")),
        "{}",
        node["spec"]
    );
    // The agent signs in as the node, not as the admin.
    let kubeconfig =
        std::fs::read_to_string(host.data_dir().join("agent/kubeconfig.yaml")).expect("kubeconfig");
    assert!(
        kubeconfig.contains(&format!("system:node:{NODE}")),
        "{kubeconfig}"
    );
    let holder = host.ok(&[
        "get",
        "lease",
        "-n",
        "kube-node-lease",
        NODE,
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ]);
    assert_eq!(holder, NODE);

    // No nodeName: the server's scheduler places the pod on the server's own node.
    let manifest = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "hello", "namespace": "default"},
        "spec": {
            "terminationGracePeriodSeconds": 5,
            "containers": [{
                "name": "main",
                "image": "docker.io/library/busybox:1.36",
                "imagePullPolicy": "IfNotPresent",
                "command": ["sh", "-c", "echo hello from the server node; trap 'exit 0' TERM; sleep 3600 & wait"],
            }],
        },
    });
    let path = host.dir.path().join("pod.json");
    std::fs::write(&path, manifest.to_string()).expect("manifest");
    host.ok(&["create", "-f", &path.display().to_string()]);
    let running = |host: &Host| {
        let out = host.kubectl(&[
            "get",
            "pod",
            "hello",
            "-o",
            "jsonpath={.status.phase} {.spec.nodeName} {.status.containerStatuses[0].containerID} {.status.containerStatuses[0].restartCount}",
        ]);
        let t = text(&out);
        t.starts_with("Running ").then_some(t)
    };
    let before = eventually(Duration::from_secs(90), "the pod runs", || running(&host));
    let fields: Vec<&str> = before.split_whitespace().collect();
    assert_eq!(fields.get(1), Some(&NODE), "{before}");
    let logs = eventually(Duration::from_secs(30), "the pod's logs", || {
        let out = host.kubectl(&["logs", "hello"]);
        let t = text(&out);
        t.contains("hello from the server node").then_some(t)
    });
    assert_eq!(logs.trim(), "hello from the server node");

    // Node shutdown: SIGTERM stops the server and its agent (and containerd), not the pod.
    let status = host
        .stop_server()
        .expect("the server exits within 30 s of SIGTERM");
    assert!(status.success(), "server exit: {status:?}\n{}", host.log());
    let log = host.log();
    assert!(log.contains("node agent ready"), "{log}");
    let alive: Vec<String> = host
        .pod_processes()
        .into_iter()
        .filter(|p| Path::new("/proc").join(p).exists())
        .collect();
    assert!(
        !alive.is_empty(),
        "the pod's processes kept running after the server stopped"
    );

    // The restarted server's agent adopts the running container instead of restarting it.
    host.start_server(&[]);
    // The Node still says Ready from before; the agent's own line says it is back.
    eventually(Duration::from_secs(120), "the agent is ready again", || {
        (host.log().matches("node agent ready").count() == 2 && host.node_ready()).then_some(())
    });
    let after = eventually(Duration::from_secs(60), "the pod still runs", || {
        running(&host)
    });
    assert_eq!(after, before, "same container, no restart");
    let logs = eventually(Duration::from_secs(30), "the pod's logs again", || {
        let out = host.kubectl(&["logs", "hello"]);
        out.status.success().then(|| text(&out))
    });
    assert_eq!(logs.trim(), "hello from the server node");

    host.ok(&["delete", "pod", "hello", "--wait=false"]);
    eventually(Duration::from_secs(60), "the pod is gone", || {
        let out = host.kubectl(&["get", "pod", "hello"]);
        (!out.status.success()).then_some(())
    });
    eventually(
        Duration::from_secs(10),
        "no process left in the pod cgroups",
        || host.pod_processes().is_empty().then_some(()),
    );
}
