//! Host test (root): pod, QoS and node cgroups as the kubelet writes them, on a real node —
//! `skiff server` with its own agent inside a network namespace the test creates (never the
//! root namespace), started with the agent flags the server passes through (`--pod-cidr`,
//! `--pod-network`, `--pod-max-pids`, `--kubelet-port`). A Guaranteed pod's cgroup carries its
//! CFS quota, memory limit and shares; a BestEffort pod gets the minimum shares; a Burstable
//! pod's request raises the Burstable class's shares until it is deleted; the pids limit holds;
//! a container allocating past its memory limit is reported `OOMKilled`. Everything the test
//! created is removed at the end, also on failure.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::eventually;
use support::netns_host::{NetnsHost as Host, skip_reason, text, v2};

const NODE_IP: &str = "10.213.9.2";
const NODE: &str = "skiff-cg-node";
const POD_CIDR: &str = "10.244.77.0/24";
const KUBELET_PORT: &str = "10299";
const POD_MAX_PIDS: i64 = 40;

/// Starts the server with the agent flags it passes through.
fn start(host: &mut Host) {
    let pids = POD_MAX_PIDS.to_string();
    host.start_server(&[
        "--pod-cidr",
        POD_CIDR,
        "--pod-network",
        "host-gw",
        "--pod-max-pids",
        &pids,
        "--kubelet-port",
        KUBELET_PORT,
    ]);
}

/// What this test reads of the host beyond the shared harness.
impl Host {
    /// The value of `file` in the cgroup `rel` (below the test's root) of `controller`'s
    /// hierarchy (v1) or the unified one (v2); None when missing.
    fn cgroup_file(&self, controller: &str, rel: &str, file: &str) -> Option<String> {
        let base = if v2() {
            PathBuf::from("/sys/fs/cgroup")
        } else {
            Path::new("/sys/fs/cgroup").join(controller)
        };
        let path = base
            .join(self.cgroup_root.trim_start_matches('/'))
            .join(rel)
            .join(file);
        std::fs::read_to_string(path)
            .ok()
            .map(|s| s.trim().to_string())
    }

    fn cgroup_exists(&self, rel: &str) -> bool {
        self.cgroup_base().join(rel).exists()
    }

    fn create(&self, name: &str, manifest: serde_json::Value) {
        let path = self.dir.path().join(format!("{name}.json"));
        std::fs::write(&path, manifest.to_string()).expect("manifest");
        self.ok(&["create", "-f", &path.display().to_string()]);
    }

    fn field(&self, pod: &str, jsonpath: &str) -> String {
        text(&self.kubectl(&["get", "pod", pod, "-o", &format!("jsonpath={jsonpath}")]))
    }

    fn wait_running(&self, pod: &str) {
        eventually(Duration::from_secs(90), &format!("{pod} runs"), || {
            (self.field(pod, "{.status.phase}") == "Running").then_some(())
        });
    }
}

fn pod(
    name: &str,
    command: &str,
    resources: serde_json::Value,
    restart: &str,
) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "restartPolicy": restart,
            "containers": [{
                "name": "main",
                "image": "docker.io/library/busybox:1.36",
                "imagePullPolicy": "IfNotPresent",
                "command": ["sh", "-c", command],
                "resources": resources,
            }],
        },
    })
}

const SLEEP: &str = "trap 'exit 0' TERM; sleep 3600 & wait";

/// cpu shares (v1) or cpu.weight (v2) of cgroup `rel`, and what `shares` reads as there.
fn shares_of(host: &Host, rel: &str, shares: u64) -> (Option<String>, String) {
    if v2() {
        let weight = if shares == 0 {
            0
        } else {
            1 + ((shares - 2) * 9999) / 262_142
        };
        (
            host.cgroup_file("cpu", rel, "cpu.weight"),
            weight.to_string(),
        )
    } else {
        (
            host.cgroup_file("cpu", rel, "cpu.shares"),
            shares.to_string(),
        )
    }
}

/// cpu shares (v1) or cpu.weight (v2) of cgroup `rel` are the shares the kubelet computed.
fn expect_shares(host: &Host, rel: &str, shares: u64) {
    let (got, want) = shares_of(host, rel, shares);
    assert_eq!(got, Some(want), "{rel}");
}

/// The CFS limit of `rel`: `Some(quota)` or None for no limit, with the 100 ms period.
fn expect_cpu_max(host: &Host, rel: &str, quota: Option<i64>) {
    if v2() {
        let q = quota.map_or("max".to_string(), |q| q.to_string());
        assert_eq!(
            host.cgroup_file("cpu", rel, "cpu.max"),
            Some(format!("{q} 100000")),
            "{rel}"
        );
    } else {
        assert_eq!(
            host.cgroup_file("cpu", rel, "cpu.cfs_quota_us"),
            Some(quota.unwrap_or(-1).to_string()),
            "{rel}"
        );
        assert_eq!(
            host.cgroup_file("cpu", rel, "cpu.cfs_period_us"),
            Some("100000".into()),
            "{rel}"
        );
    }
}

/// The memory limit of `rel` in bytes, None when unlimited.
fn memory_limit(host: &Host, rel: &str) -> Option<i64> {
    let (file, unlimited_above) = if v2() {
        ("memory.max", i64::MAX)
    } else {
        // v1 reports "unlimited" as the largest page-aligned value.
        ("memory.limit_in_bytes", i64::MAX / 2)
    };
    let v = host.cgroup_file("memory", rel, file).expect(file);
    match v.parse::<i64>() {
        Ok(n) if n < unlimited_above => Some(n),
        _ => None,
    }
}

#[test]
fn pod_qos_and_node_cgroups_carry_the_kubelets_values() {
    if let Some(why) = skip_reason() {
        eprintln!("skipping: {why}");
        return;
    }
    let mut host = Host::new("skiff-cg", NODE_IP, NODE);
    host.import_busybox();
    start(&mut host);
    host.wait_until_usable();

    // The flags `skiff server` passed to its agent.
    let node: serde_json::Value =
        serde_json::from_str(&host.ok(&["get", "node", NODE, "-o", "json"])).expect("node");
    assert_eq!(node["spec"]["podCIDR"], POD_CIDR, "{}", node["spec"]);
    assert_eq!(
        node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"].to_string(),
        KUBELET_PORT
    );

    // Node and QoS cgroups: kubepods at the node's allocatable, BestEffort at the minimum.
    let cpus: u64 = node["status"]["allocatable"]["cpu"]
        .as_str()
        .and_then(|c| c.parse().ok())
        .expect("whole cpus");
    expect_shares(&host, "kubepods", cpus * 1024);
    let mem_kib: i64 = node["status"]["allocatable"]["memory"]
        .as_str()
        .and_then(|m| m.strip_suffix("Ki"))
        .and_then(|m| m.parse().ok())
        .expect("memory in Ki");
    assert_eq!(memory_limit(&host, "kubepods"), Some(mem_kib * 1024));
    expect_shares(&host, "kubepods/besteffort", 2);
    expect_shares(&host, "kubepods/burstable", 2);

    // Guaranteed: 250m/250m and 64Mi/64Mi.
    let guaranteed = serde_json::json!({
        "requests": {"cpu": "250m", "memory": "64Mi"},
        "limits": {"cpu": "250m", "memory": "64Mi"},
    });
    host.create("g", pod("g", SLEEP, guaranteed, "Always"));
    host.create("be", pod("be", SLEEP, serde_json::json!({}), "Always"));
    let burstable = serde_json::json!({"requests": {"cpu": "500m"}});
    host.create("b", pod("b", SLEEP, burstable, "Always"));
    for p in ["g", "be", "b"] {
        host.wait_running(p);
    }
    assert_eq!(host.field("g", "{.status.qosClass}"), "Guaranteed");
    let g = format!("kubepods/pod{}", host.field("g", "{.metadata.uid}"));
    expect_cpu_max(&host, &g, Some(25_000));
    expect_shares(&host, &g, 256);
    assert_eq!(memory_limit(&host, &g), Some(67_108_864));
    assert_eq!(
        host.cgroup_file("pids", &g, "pids.max"),
        Some(POD_MAX_PIDS.to_string())
    );
    // The sandbox and the container run inside the pod cgroup (below it).
    let procs_below = |rel: &str| {
        std::fs::read_dir(host.cgroup_base().join(rel))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .count()
    };
    assert!(
        procs_below(&g) >= 2,
        "sandbox and container cgroups under {g}"
    );

    let be = format!(
        "kubepods/besteffort/pod{}",
        host.field("be", "{.metadata.uid}")
    );
    expect_shares(&host, &be, 2);
    expect_cpu_max(&host, &be, None);
    assert_eq!(memory_limit(&host, &be), None);

    let b = format!(
        "kubepods/burstable/pod{}",
        host.field("b", "{.metadata.uid}")
    );
    expect_shares(&host, &b, 512);
    expect_cpu_max(&host, &b, None);
    assert_eq!(memory_limit(&host, &b), None);
    // The Burstable class carries the requests of its pods, and drops them when they go.
    expect_shares(&host, "kubepods/burstable", 512);
    // A restarted agent sets the classes up afresh and recounts the pods it adopts.
    host.stop_server();
    start(&mut host);
    // The agent resets the classes before it logs ready; 512 after that is a recount.
    eventually(Duration::from_secs(60), "the agent is ready again", || {
        (host.log().matches("node agent ready").count() == 2).then_some(())
    });
    eventually(
        Duration::from_secs(60),
        "the burstable class recounted after a restart",
        || {
            let (got, want) = shares_of(&host, "kubepods/burstable", 512);
            (got == Some(want)).then_some(())
        },
    );
    expect_cpu_max(&host, &g, Some(25_000));
    assert_eq!(memory_limit(&host, &g), Some(67_108_864));
    host.ok(&["delete", "pod", "b", "--wait=false"]);
    eventually(
        Duration::from_secs(60),
        "the burstable pod cgroup is gone",
        || (!host.cgroup_exists(&b)).then_some(()),
    );
    expect_shares(&host, "kubepods/burstable", 2);

    // The pods limit holds: a shell starting 60 sleeps in a pod limited to 40 processes (the
    // sandbox's pause and the shell count too) is refused a fork and exits.
    host.create(
        "forks",
        pod(
            "forks",
            "i=0; while [ $i -lt 60 ]; do sleep 3600 & i=$((i+1)); echo $i; done; echo all started",
            serde_json::json!({}),
            "Never",
        ),
    );
    let forks = eventually(Duration::from_secs(60), "the pod is assigned a uid", || {
        let uid = host.field("forks", "{.metadata.uid}");
        (!uid.is_empty()).then(|| format!("kubepods/besteffort/pod{uid}"))
    });
    eventually(Duration::from_secs(90), "the fork loop fails", || {
        (host.field("forks", "{.status.phase}") == "Failed").then_some(())
    });
    assert_eq!(
        host.cgroup_file("pids", &forks, "pids.max"),
        Some(POD_MAX_PIDS.to_string())
    );
    let logs = host.ok(&["logs", "forks"]);
    assert!(logs.contains("can't fork"), "{logs}");
    assert!(!logs.contains("all started"), "{logs}");
    let started: i64 = logs
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .max()
        .unwrap_or(0);
    assert!(
        started > 0 && started < POD_MAX_PIDS,
        "{started} sleeps started in a pod limited to {POD_MAX_PIDS} processes"
    );

    // A container allocating past its memory limit is OOM-killed and reported so.
    let oom = serde_json::json!({
        "requests": {"cpu": "100m", "memory": "32Mi"},
        "limits": {"cpu": "100m", "memory": "32Mi"},
    });
    host.create(
        "oom",
        pod(
            "oom",
            r#"awk 'BEGIN { s = "x"; for (i = 0; i < 28; i++) s = s s }'"#,
            oom,
            "Never",
        ),
    );
    let terminated = eventually(
        Duration::from_secs(90),
        "the container is OOMKilled",
        || {
            let t = host.field(
            "oom",
            "{.status.phase} {.status.containerStatuses[0].state.terminated.reason} {.status.containerStatuses[0].state.terminated.exitCode}",
        );
            t.starts_with("Failed ").then_some(t)
        },
    );
    assert_eq!(terminated, "Failed OOMKilled 137");

    // Deleted pods take their cgroups with them.
    host.ok(&["delete", "pod", "g", "be", "forks", "oom", "--wait=false"]);
    eventually(Duration::from_secs(60), "the pod cgroups are gone", || {
        (!host.cgroup_exists(&g) && !host.cgroup_exists(&be) && !host.cgroup_exists(&forks))
            .then_some(())
    });
}
