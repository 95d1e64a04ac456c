//! Host test (root): `skiff server` without `--disable-agent` runs a node agent for its own host.
//! The server runs inside a network namespace the test creates (a veth pair carrying the
//! node's address, loopback up), never in the root namespace. Its node becomes Ready with that
//! address, a scheduled busybox pod runs and its logs come through kubectl, SIGTERM stops the
//! server but leaves the container running, and a restarted server adopts the pod. Everything
//! the test created is removed at the end, also on failure.

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{KUBECTL_133, eventually};

/// The node's address on the test namespace's veth.
const NODE_IP: &str = "10.213.7.2";
const NODE: &str = "skiff-sa-node";

fn run(cmd: &mut Command) -> std::process::Output {
    cmd.output().expect("run command")
}

fn text(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Everything the test started or created; torn down in Drop.
struct Host {
    netns: String,
    cgroup_root: String,
    dir: tempfile::TempDir,
    server: Option<Child>,
}

impl Host {
    fn new() -> Host {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let suffix = format!("{:08x}", nanos ^ std::process::id().rotate_left(16));
        let host = Host {
            netns: format!("skiff-sa-{suffix}"),
            cgroup_root: format!("/skiff-sa-{suffix}"),
            dir: tempfile::tempdir().expect("tempdir"),
            server: None,
        };
        let ns = host.netns.clone();
        let ip = |args: &[&str]| {
            let out = run(Command::new("ip").args(args));
            assert!(out.status.success(), "ip {args:?}: {out:?}");
        };
        ip(&["netns", "add", &ns]);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        // Both ends of the veth stay inside the namespace: the node gets a real non-loopback
        // address and the root namespace gains nothing.
        ip(&[
            "-n",
            &ns,
            "link",
            "add",
            "eth0",
            "type",
            "veth",
            "peer",
            "name",
            "eth0-peer",
        ]);
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{NODE_IP}/24"),
            "dev",
            "eth0",
        ]);
        ip(&["-n", &ns, "link", "set", "eth0-peer", "up"]);
        ip(&["-n", &ns, "link", "set", "eth0", "up"]);
        host
    }

    /// A command inside the namespace (`nsenter --net`, not `ip netns exec`, which hides the
    /// cgroup mounts from runc).
    fn inside(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/var/run/netns/{}", self.netns))
            .arg(program);
        c
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn socket(&self) -> PathBuf {
        self.data_dir().join("agent/containerd/containerd.sock")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    fn kubectl(&self, args: &[&str]) -> std::process::Output {
        run(self
            .inside(KUBECTL_133)
            .arg("--kubeconfig")
            .arg(self.data_dir().join("kubeconfig.yaml"))
            .arg("--cache-dir")
            .arg(self.dir.path().join("kcache"))
            .args(args))
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?}: {out:?}\n{}",
            self.log()
        );
        text(&out)
    }

    /// `skiff server` with its agent (no `--disable-agent`, no `--node-ip`: the address comes
    /// from the namespace's eth0).
    fn start_server(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))
            .expect("log");
        let mut child = self
            .inside(env!("CARGO_BIN_EXE_skiff"))
            .args(["server", "--https-listen-port", "0", "--node-name", NODE])
            .arg("--cgroup-root")
            .arg(format!("{}/kubepods", self.cgroup_root))
            .args(["--log", "info,skiff_agent=debug"])
            .arg("--data-dir")
            .arg(self.data_dir())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawn server");
        let stdout = child.stdout.take().expect("stdout");
        self.server = Some(child);
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("ready line");
        assert!(
            line.contains("skiff server ready"),
            "server not ready: {line:?}\n{}",
            self.log()
        );
    }

    /// SIGTERM the server and wait (bounded) for it to exit; its exit status.
    fn stop_server(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.server.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .output();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    fn node_ready(&self) -> bool {
        let out = self.kubectl(&[
            "get",
            "node",
            NODE,
            "-o",
            r#"jsonpath={.status.conditions[?(@.type=="Ready")].status}"#,
        ]);
        text(&out) == "True"
    }

    /// Processes in the test's pod cgroups (memory hierarchy).
    fn pod_processes(&self) -> Vec<String> {
        fn walk(dir: &Path, out: &mut Vec<String>) {
            let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
            out.extend(procs.split_whitespace().map(str::to_string));
            for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    walk(&e.path(), out);
                }
            }
        }
        let mut out = Vec::new();
        walk(
            &Path::new("/sys/fs/cgroup/memory").join(self.cgroup_root.trim_start_matches('/')),
            &mut out,
        );
        out
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Some(keep) = std::env::var_os("SKIFF_KEEP_LOGS") {
            let _ = std::fs::create_dir_all(&keep);
            let _ = std::fs::copy(
                self.dir.path().join("server.log"),
                Path::new(&keep).join("server.log"),
            );
        }
        // While the server still runs, let the agent remove the pods the test left.
        if self.server.is_some() {
            let _ = self.kubectl(&[
                "delete",
                "pods",
                "--all",
                "-A",
                "--force",
                "--grace-period=0",
                "--wait=false",
            ]);
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline && !self.pod_processes().is_empty() {
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        // Whatever still runs in the test's cgroup tree is the test's.
        for pid in self.pod_processes() {
            let _ = Command::new("kill").args(["-9", &pid]).output();
        }
        // containerd shims outlive containerd by design; those serving our socket are ours.
        let socket = self.socket().display().to_string();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains("containerd-shim") && cmdline.contains(&socket) {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).output();
            }
        }
        if self.server.is_some() {
            // The server is the shims' subreaper: give it a moment to reap what was killed.
            std::thread::sleep(Duration::from_millis(1500));
        }
        let _ = self.stop_server();
        // Mounts containerd left under our dir (rootfs, shm, pod netns), deepest first.
        let base = self.dir.path().display().to_string();
        let mut mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_whitespace().nth(4).map(str::to_string))
            .filter(|m| m.starts_with(&base))
            .collect();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            let _ = Command::new("umount").args(["-l", &m]).output();
        }
        // The test's cgroup tree, in every hierarchy, retried while killed tasks exit.
        fn rm(dir: &Path) {
            for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    rm(&e.path());
                }
            }
            let _ = std::fs::remove_dir(dir);
        }
        let root = self.cgroup_root.trim_start_matches('/').to_string();
        for _ in 0..50 {
            let mut left = false;
            for h in std::fs::read_dir("/sys/fs/cgroup")
                .into_iter()
                .flatten()
                .flatten()
            {
                let path = h.path().join(&root);
                rm(&path);
                left |= path.exists();
            }
            if !left {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // Host-wide dirs libcni and the shims create; removed only when empty.
        for d in [
            "/var/lib/cni/results",
            "/var/lib/cni",
            "/run/containerd/s",
            "/run/containerd/runc/k8s.io",
            "/run/containerd/runc",
            "/run/containerd",
        ] {
            let _ = std::fs::remove_dir(d);
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .output();
    }
}

fn skip_reason() -> Option<&'static str> {
    if let Some(why) = support::cluster::skip_reason() {
        return Some(why);
    }
    for p in ["containerd", "runc", "nsenter", "ip"] {
        let found = Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {p}"))
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            return Some("needs containerd, runc, nsenter and ip (scripts/install-deps.sh)");
        }
    }
    if !Path::new(KUBECTL_133).exists() {
        return Some("needs the real kubectl");
    }
    None
}

#[test]
fn the_servers_own_node_runs_a_pod_and_keeps_it_across_a_server_restart() {
    if let Some(why) = skip_reason() {
        eprintln!("skipping: {why}");
        return;
    }
    let mut host = Host::new();
    let images = host.data_dir().join("agent/images");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/busybox-image.sh");
    let out = run(Command::new(script).arg(&images));
    assert!(out.status.success(), "busybox-image.sh: {out:?}");
    host.start_server();

    eventually(
        Duration::from_secs(120),
        "the server's node is Ready",
        || host.node_ready().then_some(()),
    );
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
    host.start_server();
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
