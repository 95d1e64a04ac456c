//! Host test (root): `skiff server` and `skiff agent` (with its own containerd) run inside a
//! network namespace the test creates; a busybox pod goes to Running with a pod IP and is torn
//! down on delete. Everything the test creates (namespace, processes, mounts, cgroups, files) is
//! removed at the end, also when it fails.

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::{KUBECTL_132, KUBECTL_133};

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
}

fn have(program: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {program}"))
        .output()
        .is_ok_and(|o| o.status.success())
}

fn run(cmd: &mut Command) -> std::process::Output {
    cmd.output().expect("run command")
}

/// Everything the test started or created; torn down in Drop, in dependency order.
struct Host {
    netns: String,
    cgroup_root: String,
    dir: tempfile::TempDir,
    server: Option<Child>,
    agent: Option<Child>,
}

impl Host {
    fn new() -> Host {
        let suffix = format!("{:08x}", rand_u32());
        let netns = format!("skiff-test-{suffix}");
        let dir = tempfile::tempdir().expect("tempdir");
        let host = Host {
            cgroup_root: format!("/skiff-test-{suffix}"),
            netns,
            dir,
            server: None,
            agent: None,
        };
        let out = run(Command::new("ip").args(["netns", "add", &host.netns]));
        assert!(out.status.success(), "ip netns add: {out:?}");
        let out = run(Command::new("ip").args(["-n", &host.netns, "link", "set", "lo", "up"]));
        assert!(out.status.success(), "lo up: {out:?}");
        host
    }

    fn netns_path(&self) -> String {
        format!("/var/run/netns/{}", self.netns)
    }

    /// A command run inside the test's network namespace (`nsenter --net`, never
    /// `ip netns exec`, which hides the cgroup mounts from runc).
    fn inside(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.netns_path())).arg(program);
        c
    }

    fn kubectl(&self, args: &[&str]) -> std::process::Output {
        run(&mut self.kubectl_cmd(KUBECTL_133, args))
    }

    fn kubectl_cmd(&self, binary: &str, args: &[&str]) -> Command {
        let mut c = self.inside(binary);
        c.arg("--kubeconfig")
            .arg(self.kubeconfig())
            .arg("--cache-dir")
            .arg(self.dir.path().join(format!(
                "kcache-{}",
                binary.rsplit('.').next().unwrap_or("x")
            )))
            .args(args);
        c
    }

    /// `kubectl args` with `input` on stdin.
    fn kubectl_stdin(&self, binary: &str, args: &[&str], input: &[u8]) -> std::process::Output {
        use std::io::Write;
        let mut child = self
            .kubectl_cmd(binary, args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn kubectl");
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(input).expect("write stdin");
        drop(stdin);
        child.wait_with_output().expect("kubectl output")
    }

    fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("server").join("kubeconfig.yaml")
    }

    fn node_dir(&self) -> PathBuf {
        self.dir.path().join("node")
    }

    fn socket(&self) -> PathBuf {
        self.node_dir().join("agent/containerd/containerd.sock")
    }

    fn ctr(&self, args: &[&str]) -> String {
        let out = run(Command::new("ctr")
            .arg("--address")
            .arg(self.socket())
            .args(["-n", "k8s.io"])
            .args(args));
        assert!(out.status.success(), "ctr {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn start_server(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("server.log")).expect("log");
        let mut child = self
            .inside(env!("CARGO_BIN_EXE_skiff"))
            .args([
                "server",
                "--disable-agent",
                "--https-listen-port",
                "0",
                "--log",
                "info,skiff_apiserver::proxy=debug,skiff_apiserver::translate=debug",
                "--data-dir",
            ])
            .arg(self.dir.path().join("server"))
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
            self.log("server.log")
        );
    }

    fn start_agent(&mut self, node: &str) {
        let log = std::fs::File::create(self.dir.path().join("agent.log")).expect("log");
        let child = self
            .inside(env!("CARGO_BIN_EXE_skiff"))
            .arg("agent")
            .arg("--data-dir")
            .arg(self.node_dir())
            .arg("--kubeconfig")
            .arg(self.kubeconfig())
            .args(["--node-name", node, "--pod-cidr", "10.244.7.0/24"])
            .arg("--cgroup-root")
            .arg(format!("{}/kubepods", self.cgroup_root))
            .args(["--log", "info,skiff_agent=debug"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn agent");
        self.agent = Some(child);
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }

    /// The network namespace paths of every container our containerd knows.
    fn pod_netns(&self) -> Vec<String> {
        let ctr = |args: &[&str]| {
            run(Command::new("ctr")
                .arg("--address")
                .arg(self.socket())
                .args(["-n", "k8s.io"])
                .args(args))
        };
        let ids = ctr(&["containers", "ls", "-q"]);
        let mut paths = Vec::new();
        for id in String::from_utf8_lossy(&ids.stdout).split_whitespace() {
            let info = ctr(&["containers", "info", id]);
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&info.stdout) {
                network_paths(&v, &mut paths);
            }
        }
        paths.sort();
        paths.dedup();
        paths.retain(|p| p.starts_with("/var/run/netns/cni-") || p.starts_with("/run/netns/cni-"));
        paths
    }

    /// containerd shims outlive containerd by design; the ones serving our socket are ours.
    fn kill_our_shims(&self) {
        let socket = self.socket().display().to_string();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains("containerd-shim") && cmdline.contains(&socket) {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).output();
            }
        }
    }
}

fn stop(child: &mut Child, grace: Duration) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .output();
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

impl Drop for Host {
    fn drop(&mut self) {
        // SKIFF_KEEP_LOGS=DIR keeps the agent, server and containerd logs for a post-mortem.
        if let Some(keep) = std::env::var_os("SKIFF_KEEP_LOGS") {
            let keep = PathBuf::from(keep);
            let _ = std::fs::create_dir_all(&keep);
            for (from, to) in [
                (self.dir.path().join("agent.log"), "agent.log"),
                (self.dir.path().join("server.log"), "server.log"),
                (
                    self.node_dir().join("agent/containerd/containerd.log"),
                    "containerd.log",
                ),
            ] {
                let _ = std::fs::copy(from, keep.join(to));
            }
        }
        // The pod network namespaces our containerd made (under the host's /var/run/netns); a
        // teardown cut short leaves them behind, so they are removed at the end by name.
        let pod_netns = if self.socket().exists() {
            self.pod_netns()
        } else {
            Vec::new()
        };
        // While the agent and containerd still run, let them remove what the test left.
        if self.agent.is_some() && self.socket().exists() {
            let _ = self.kubectl(&[
                "delete",
                "pods",
                "--all",
                "-A",
                "--force",
                "--grace-period=0",
                "--wait=false",
            ]);
            poll(Duration::from_secs(20), || {
                let out = run(Command::new("ctr")
                    .arg("--address")
                    .arg(self.socket())
                    .args(["-n", "k8s.io", "containers", "ls", "-q"]));
                (!out.status.success() || out.stdout.iter().all(u8::is_ascii_whitespace))
                    .then_some(())
            });
        }
        // Whatever still runs in the test's cgroup tree is the test's; its shim reaps it.
        kill_cgroup_tree(&self.cgroup_root);
        self.kill_our_shims();
        if let Some(mut a) = self.agent.take() {
            // The agent is the shims' subreaper: give it a moment to reap what was killed.
            std::thread::sleep(Duration::from_millis(2500));
            stop(&mut a, Duration::from_secs(20));
        }
        if let Some(mut s) = self.server.take() {
            stop(&mut s, Duration::from_secs(5));
        }
        // Mounts containerd left under our dir (rootfs, shm), deepest first.
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
        remove_cgroup_tree(&self.cgroup_root);
        // Host-wide dirs libcni and the shims create; removed only when empty (others may use them).
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
        for path in pod_netns {
            if let Some(name) = Path::new(&path).file_name().and_then(|n| n.to_str())
                && Path::new(&path).exists()
            {
                let _ = Command::new("ip").args(["netns", "del", name]).output();
            }
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .output();
    }
}

/// Every `{"type": "network", "path": …}` in an OCI spec.
fn network_paths(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            if m.get("type").and_then(|t| t.as_str()) == Some("network")
                && let Some(p) = m.get("path").and_then(|p| p.as_str())
                && !p.is_empty()
            {
                out.push(p.to_string());
            }
            m.values().for_each(|x| network_paths(x, out));
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| network_paths(x, out)),
        _ => {}
    }
}

/// SIGKILL every process in the cgroup tree `root` (memory hierarchy).
fn kill_cgroup_tree(root: &str) {
    fn walk(dir: &Path) {
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        for pid in procs.split_whitespace() {
            let _ = Command::new("kill").args(["-9", pid]).output();
        }
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                walk(&e.path());
            }
        }
    }
    walk(&Path::new("/sys/fs/cgroup/memory").join(root.trim_start_matches('/')));
}

/// Remove the cgroup tree `root` from every hierarchy, retrying while killed tasks exit.
fn remove_cgroup_tree(root: &str) {
    for _ in 0..50 {
        remove_cgroup_tree_once(root);
        if !cgroup_exists(root) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn remove_cgroup_tree_once(root: &str) {
    fn rm(dir: &Path) {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    rm(&e.path());
                }
            }
        }
        let _ = std::fs::remove_dir(dir);
    }
    for h in std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
    {
        if h.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            rm(&h.path().join(root.trim_start_matches('/')));
        }
    }
}

fn cgroup_exists(path: &str) -> bool {
    Path::new("/sys/fs/cgroup/memory")
        .join(path.trim_start_matches('/'))
        .exists()
}

/// Poll `f` every 100 ms until it yields or `timeout` passes.
fn poll<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if let Some(v) = f() {
            return Some(v);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

fn rand_u32() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    nanos ^ std::process::id().rotate_left(16)
}

fn skip_reason() -> Option<&'static str> {
    if !is_root() {
        return Some("needs root");
    }
    for p in ["containerd", "runc", "ctr", "nsenter", "ip"] {
        if !have(p) {
            return Some("needs containerd, runc, ctr, nsenter and ip (scripts/install-deps.sh)");
        }
    }
    if !Path::new("/usr/lib/cni/bridge").exists() || !Path::new("/bin/busybox").exists() {
        return Some("needs containernetworking-plugins and busybox-static");
    }
    if !Path::new(KUBECTL_133).exists() {
        return Some("needs the real kubectl");
    }
    None
}

#[test]
fn busybox_pod_runs_with_an_ip_and_is_torn_down_on_delete() {
    if let Some(why) = skip_reason() {
        eprintln!("skipping: {why}");
        return;
    }
    let node = "skiff-test-node";
    let (host, node_ready) = booted(node);
    let lease = host.kubectl(&[
        "get",
        "lease",
        "-n",
        "kube-node-lease",
        node,
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ]);
    assert_eq!(String::from_utf8_lossy(&lease.stdout), node, "{lease:?}");
    let node_json = host.kubectl(&["get", "node", node, "-o", "json"]);
    let node_obj: serde_json::Value = serde_json::from_slice(&node_json.stdout).expect("node json");
    assert_eq!(node_obj["status"]["capacity"]["pods"], "110");
    assert!(
        node_obj["status"]["nodeInfo"]["containerRuntimeVersion"]
            .as_str()
            .is_some_and(|v| v.starts_with("containerd://")),
        "{}",
        node_obj["status"]["nodeInfo"]
    );

    // Watch the pod's phase through the API, as upstream's pod startup SLI does.
    let mut watch = host
        .inside(KUBECTL_133)
        .arg("--kubeconfig")
        .arg(host.kubeconfig())
        .arg("--cache-dir")
        .arg(host.dir.path().join("kcache-watch"))
        .args([
            "get",
            "pods",
            "-w",
            "--field-selector",
            "metadata.name=sleeper",
            "-o",
            r#"jsonpath={.metadata.name} {.status.phase} {.status.podIP}{"\n"}"#,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl watch");
    let (tx, rx) = mpsc::channel::<(Instant, String)>();
    let stdout = watch.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send((Instant::now(), line)).is_err() {
                break;
            }
        }
    });
    std::thread::sleep(Duration::from_millis(500)); // let the watch establish (not an assertion)

    let manifest = host.dir.path().join("pod.json");
    std::fs::write(
        &manifest,
        serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "sleeper", "namespace": "default"},
            "spec": {
                "nodeName": node,
                // Long grace: a quick delete proves the agent's SIGTERM and final DELETE did
                // it, not the API server's reaper at the end of the grace period.
                "terminationGracePeriodSeconds": 30,
                "containers": [{
                    "name": "main",
                    "image": "docker.io/library/busybox:1.36",
                    "imagePullPolicy": "IfNotPresent",
                    // `sleep 3600` that exits on SIGTERM (PID 1 ignores signals it has no
                    // handler for).
                    "command": ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"],
                }],
            },
        })
        .to_string(),
    )
    .expect("write manifest");
    let before_create = Instant::now();
    let out = host.kubectl(&["create", "-f", &manifest.display().to_string()]);
    assert!(out.status.success(), "create: {out:?}");

    let mut seen_at = None;
    let mut running = None;
    let deadline = Instant::now() + Duration::from_secs(90);
    while running.is_none() && Instant::now() < deadline {
        if let Ok((at, line)) = rx.recv_timeout(Duration::from_millis(200)) {
            let parts: Vec<&str> = line.split_whitespace().collect();
            if parts.first() == Some(&"sleeper") {
                seen_at.get_or_insert(at);
                if parts.get(1) == Some(&"Running") && parts.len() > 2 {
                    running = Some((at, parts[2].to_string()));
                }
            }
        }
    }
    let _ = watch.kill();
    let _ = watch.wait();
    let (running_at, ip) = running.unwrap_or_else(|| {
        let pod = host.kubectl(&["get", "pod", "sleeper", "-o", "yaml"]);
        panic!(
            "pod never Running\n{}\n{}",
            String::from_utf8_lossy(&pod.stdout),
            host.log("agent.log")
        )
    });
    let watch_latency = running_at - seen_at.unwrap_or(before_create);
    let create_latency = running_at - before_create;
    assert!(
        ip.starts_with("10.244.7."),
        "pod IP {ip} outside the podCIDR"
    );

    // The pod really runs: its container is a running task, and its IP answers from the node.
    let tasks = host.ctr(&["tasks", "ls"]);
    assert!(
        tasks.lines().filter(|l| l.contains("RUNNING")).count() >= 2,
        "{tasks}"
    );
    let ping = run(host
        .inside("busybox")
        .args(["ping", "-c", "1", "-W", "2", &ip]));
    assert!(ping.status.success(), "ping {ip} from the node: {ping:?}");
    let pod = host.kubectl(&["get", "pod", "sleeper", "-o", "json"]);
    let pod: serde_json::Value = serde_json::from_slice(&pod.stdout).expect("pod json");
    let cs = &pod["status"]["containerStatuses"][0];
    assert_eq!(cs["ready"], true, "{cs}");
    assert!(cs["state"]["running"]["startedAt"].is_string(), "{cs}");
    assert!(
        cs["containerID"]
            .as_str()
            .is_some_and(|c| c.starts_with("containerd://"))
    );
    let conds: Vec<String> = pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["status"] == "True")
        .filter_map(|c| c["type"].as_str().map(str::to_string))
        .collect();
    for t in ["Ready", "ContainersReady", "Initialized", "PodScheduled"] {
        assert!(conds.iter().any(|c| c == t), "{t} not True: {conds:?}");
    }
    let uid = pod["metadata"]["uid"].as_str().expect("uid").to_string();
    let pod_cgroup = format!("{}/kubepods/besteffort/pod{uid}", host.cgroup_root);
    assert!(cgroup_exists(&pod_cgroup), "no pod cgroup {pod_cgroup}");

    let delete_started = Instant::now();
    let out = host.kubectl(&["delete", "pod", "sleeper", "--timeout=60s"]);
    assert!(
        out.status.success(),
        "delete: {out:?}\n{}",
        host.log("agent.log")
    );
    let deleted = delete_started.elapsed();
    assert!(
        deleted < Duration::from_secs(20),
        "delete took {deleted:?}: the agent did not stop the pod gracefully\n{}",
        host.log("agent.log")
    );
    let gone = host.kubectl(&["get", "pod", "sleeper"]);
    assert!(!gone.status.success(), "pod still there: {gone:?}");
    // The agent tears down on the deletion (or the watch's DELETED event): wait for it.
    let containers = poll(Duration::from_secs(30), || {
        let c = host.ctr(&["containers", "ls", "-q"]);
        c.trim().is_empty().then_some(c)
    })
    .unwrap_or_else(|| host.ctr(&["containers", "ls", "-q"]));
    let teardown = delete_started.elapsed();
    assert!(
        containers.trim().is_empty(),
        "containers left: {containers}\n{}",
        host.log("agent.log")
    );
    let sandboxes = host.ctr(&["tasks", "ls"]);
    assert!(sandboxes.lines().count() <= 1, "tasks left: {sandboxes}");
    assert!(!cgroup_exists(&pod_cgroup), "pod cgroup {pod_cgroup} left");

    eprintln!(
        "agent: node Ready {:?} after start; pod create→Running {:?} (watch ADDED→Running {:?}); \
         delete→API gone {:?}, →runtime clean {:?}; agent log: {}",
        node_ready,
        create_latency,
        watch_latency,
        deleted,
        teardown,
        host.log("agent.log")
            .lines()
            .filter(|l| l.contains("pod running")
                || l.contains("containerd ready")
                || l.contains("torn down")
                || l.contains("stopped and deleted"))
            .collect::<Vec<_>>()
            .join(" | ")
    );
}

/// A host with the server and an agent for `node` running and the node Ready, and how long the
/// node took from agent start to Ready.
fn booted(node: &str) -> (Host, Duration) {
    let mut host = Host::new();
    host.start_server();
    let images = host.node_dir().join("agent/images");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/busybox-image.sh");
    let out = run(Command::new(script).arg(&images));
    assert!(out.status.success(), "busybox-image.sh: {out:?}");
    let agent_started = Instant::now();
    host.start_agent(node);
    poll(Duration::from_secs(90), || {
        let out = host.kubectl(&[
            "get",
            "node",
            node,
            "-o",
            r#"jsonpath={.status.conditions[?(@.type=="Ready")].status}"#,
        ]);
        (String::from_utf8_lossy(&out.stdout) == "True").then_some(())
    })
    .unwrap_or_else(|| panic!("node never Ready\n{}", host.log("agent.log")));
    let ready = agent_started.elapsed();
    (host, ready)
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn text(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ok(host: &Host, binary: &str, args: &[&str]) -> String {
    let out = run(&mut host.kubectl_cmd(binary, args));
    assert!(
        out.status.success(),
        "kubectl {args:?}: {out:?}\nagent: {}\nserver: {}",
        host.log("agent.log"),
        host.log("server.log")
    );
    text(&out)
}

fn wait_running(host: &Host, pod: &str) {
    poll(Duration::from_secs(90), || {
        let out = host.kubectl(&["get", "pod", pod, "-o", "jsonpath={.status.phase}"]);
        (text(&out) == "Running").then_some(())
    })
    .unwrap_or_else(|| {
        let pod = host.kubectl(&["get", "pod", pod, "-o", "yaml"]);
        panic!(
            "{} never Running\n{}\n{}",
            text(&pod).len(),
            text(&pod),
            host.log("agent.log")
        )
    });
}

/// A raw WebSocket request (the official Python client's forms) through the API server, with
/// `openssl s_client` inside the namespace: the handshake, then `frames` (masked client
/// frames); returns the response head and the server's messages as (first byte, rest).
fn websocket(
    host: &Host,
    path: &str,
    protocol: &str,
    frames: &[u8],
) -> (String, Vec<(u8, Vec<u8>)>) {
    use std::io::{Read, Write};
    let config = std::fs::read_to_string(host.kubeconfig()).expect("kubeconfig");
    let field = |name: &str| -> String {
        config
            .lines()
            .find_map(|l| l.trim().strip_prefix(&format!("{name}:")))
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    let server = field("server").trim_start_matches("https://").to_string();
    let creds = host.dir.path().join("creds");
    std::fs::create_dir_all(&creds).expect("creds dir");
    for (name, file) in [
        ("client-certificate-data", "cert.pem"),
        ("client-key-data", "key.pem"),
    ] {
        let out = run(Command::new("sh").arg("-c").arg(format!(
            "echo '{}' | base64 -d > {}",
            field(name),
            creds.join(file).display()
        )));
        assert!(out.status.success(), "{out:?}");
    }
    let mut child = host
        .inside("openssl")
        .args(["s_client", "-quiet", "-connect", &server, "-cert"])
        .arg(creds.join("cert.pem"))
        .arg("-key")
        .arg(creds.join("key.pem"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl s_client");
    let mut stdin = child.stdin.take().expect("stdin");
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {server}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Protocol: {protocol}\r\n\r\n"
    );
    stdin.write_all(request.as_bytes()).expect("handshake");
    stdin.write_all(frames).expect("frames");
    stdin.flush().expect("flush");
    let mut stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut all = Vec::new();
        let _ = stdout.read_to_end(&mut all);
        let _ = tx.send(all);
    });
    // The server closes the connection when the stream ends; a hung stream fails the test.
    let all = rx.recv_timeout(Duration::from_secs(30));
    let _ = child.kill();
    let _ = child.wait();
    drop(stdin);
    let all = all.expect("the WebSocket stream did not end");
    let split = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
        .unwrap_or(all.len());
    let head = String::from_utf8_lossy(&all[..split]).into_owned();
    let mut messages = Vec::new();
    let mut rest = &all[split..];
    while rest.len() >= 2 {
        let opcode = rest[0] & 0x0f;
        let (len, hdr) = match rest[1] & 0x7f {
            126 => (u16::from_be_bytes([rest[2], rest[3]]) as usize, 4),
            127 => (
                u64::from_be_bytes(rest[2..10].try_into().expect("len")) as usize,
                10,
            ),
            n => (n as usize, 2),
        };
        let Some(payload) = rest.get(hdr..hdr + len) else {
            break;
        };
        if (opcode == 1 || opcode == 2) && !payload.is_empty() {
            messages.push((payload[0], payload[1..].to_vec()));
        }
        rest = &rest[hdr + len..];
    }
    (head, messages)
}

/// One masked client frame carrying `payload`.
fn client_frame(payload: &[u8]) -> Vec<u8> {
    let mask = [0x11u8, 0x22, 0x33, 0x44];
    let mut f = vec![0x82];
    if payload.len() < 126 {
        f.push(0x80 | payload.len() as u8);
    } else {
        f.push(0x80 | 126);
        f.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    }
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

fn channel(messages: &[(u8, Vec<u8>)], ch: u8) -> String {
    messages
        .iter()
        .filter(|(c, _)| *c == ch)
        .map(|(_, d)| String::from_utf8_lossy(d).into_owned())
        .collect()
}

/// Milliseconds of `n` runs of `f`, sorted.
fn timed(n: usize, mut f: impl FnMut()) -> Vec<u128> {
    let mut v: Vec<u128> = (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_millis()
        })
        .collect();
    v.sort();
    v
}

#[test]
fn logs_exec_attach_port_forward_and_cp_through_the_api_server() {
    if let Some(why) = skip_reason() {
        eprintln!("skipping: {why}");
        return;
    }
    let node = "skiff-stream-node";
    let (host, _) = booted(node);
    let manifest = host.dir.path().join("web.json");
    std::fs::write(
        &manifest,
        serde_json::json!({
            "apiVersion": "v1", "kind": "List", "items": [
            {
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "web", "namespace": "default"},
                "spec": {
                    "nodeName": node,
                    "terminationGracePeriodSeconds": 1,
                    "containers": [
                        {
                            "name": "main",
                            "image": "docker.io/library/busybox:1.36",
                            "imagePullPolicy": "IfNotPresent",
                            "command": ["sh", "-c",
                                "echo line1; echo line2; echo line3; echo line4; \
                                 mkdir -p /tmp/www; echo hello-from-pod > /tmp/www/index.html; \
                                 exec httpd -f -p 8080 -h /tmp/www"],
                        },
                        {
                            "name": "crasher",
                            "image": "docker.io/library/busybox:1.36",
                            "imagePullPolicy": "IfNotPresent",
                            "command": ["sh", "-c", "echo started-$(cat /proc/sys/kernel/random/uuid); sleep 1; exit 1"],
                        },
                        {
                            "name": "echoer",
                            "image": "docker.io/library/busybox:1.36",
                            "imagePullPolicy": "IfNotPresent",
                            "stdin": true,
                            "command": ["sh", "-c", "while read l; do echo got-$l; done; sleep 3600"],
                        },
                    ],
                },
            },
            {
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "ticker", "namespace": "default"},
                "spec": {
                    "nodeName": node,
                    "restartPolicy": "Never",
                    "containers": [{
                        "name": "tick",
                        "image": "docker.io/library/busybox:1.36",
                        "imagePullPolicy": "IfNotPresent",
                        // stderr too; the 2 s gaps keep the order (containerd copies the two pipes separately).
                        "command": ["sh", "-c", "sleep 1; echo tick 1; sleep 2; echo tick 2 >&2; sleep 2; echo tick 3"],
                    }],
                },
            }]
        })
        .to_string(),
    )
    .expect("manifest");
    ok(
        &host,
        KUBECTL_133,
        &[
            "create",
            "--validate=false",
            "-f",
            &manifest.display().to_string(),
        ],
    );
    wait_running(&host, "ticker");

    // logs -f follows the running container and ends when it exits.
    let mut follow = host
        .kubectl_cmd(KUBECTL_133, &["logs", "-f", "ticker"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("logs -f");
    let mut lines = BufReader::new(follow.stdout.take().expect("stdout")).lines();
    let first = lines.next().and_then(Result::ok).unwrap_or_default();
    assert_eq!(first, "tick 1");
    assert!(
        follow.try_wait().expect("try_wait").is_none(),
        "logs -f ended before the container did"
    );
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert_eq!(rest, ["tick 2", "tick 3"]);
    let status = follow.wait().expect("wait");
    assert!(status.success(), "logs -f: {status:?}");

    wait_running(&host, "web");
    let logs = poll(Duration::from_secs(20), || {
        let l = ok(&host, KUBECTL_133, &["logs", "web", "-c", "main"]);
        (l.lines().count() >= 4).then_some(l)
    })
    .unwrap_or_default();
    assert_eq!(logs, "line1\nline2\nline3\nline4\n");
    for kubectl in [KUBECTL_132, KUBECTL_133] {
        assert_eq!(
            ok(&host, kubectl, &["logs", "web", "-c", "main", "--tail=2"]),
            "line3\nline4\n"
        );
    }
    assert_eq!(
        ok(
            &host,
            KUBECTL_133,
            &["logs", "web", "-c", "main", "--limit-bytes=8"]
        ),
        "line1\nli"
    );
    assert_eq!(
        ok(
            &host,
            KUBECTL_133,
            &["logs", "web", "-c", "main", "--since=1h"]
        ),
        logs
    );
    let stamped = ok(
        &host,
        KUBECTL_133,
        &["logs", "web", "-c", "main", "--timestamps"],
    );
    for (l, want) in stamped.lines().zip(logs.lines()) {
        let (ts, rest) = l.split_once(' ').expect("timestamp");
        assert!(
            ts.len() >= 20 && ts.as_bytes()[10] == b'T' && ts.ends_with('Z'),
            "{l}"
        );
        assert_eq!(rest, want);
    }
    let all = ok(
        &host,
        KUBECTL_133,
        &["logs", "web", "--all-containers", "--prefix"],
    );
    assert!(all.contains("[pod/web/main] line1"), "{all}");
    assert!(all.contains("[pod/web/crasher] started-"), "{all}");
    let no_prev =
        run(&mut host.kubectl_cmd(KUBECTL_133, &["logs", "web", "-c", "main", "--previous"]));
    assert!(!no_prev.status.success());
    assert!(
        String::from_utf8_lossy(&no_prev.stderr)
            .contains("previous terminated container \"main\" in pod \"web\" not found"),
        "{no_prev:?}"
    );
    // kubectl picks a default container itself; the raw subresource shows the server's check.
    let bad = run(&mut host.kubectl_cmd(
        KUBECTL_133,
        &["get", "--raw", "/api/v1/namespaces/default/pods/web/log"],
    ));
    assert!(
        String::from_utf8_lossy(&bad.stderr)
            .contains("a container name must be specified for pod web"),
        "{bad:?}"
    );

    // exec: output, exit codes, stdin; with both kubectl versions.
    for kubectl in [KUBECTL_132, KUBECTL_133] {
        assert_eq!(
            ok(
                &host,
                kubectl,
                &[
                    "exec",
                    "web",
                    "-c",
                    "main",
                    "--",
                    "cat",
                    "/tmp/www/index.html"
                ]
            ),
            "hello-from-pod\n"
        );
        let three = run(&mut host.kubectl_cmd(
            kubectl,
            &["exec", "web", "-c", "main", "--", "sh", "-c", "exit 3"],
        ));
        assert_eq!(three.status.code(), Some(3), "{three:?}");
        let piped = host.kubectl_stdin(
            kubectl,
            &[
                "exec",
                "-i",
                "web",
                "-c",
                "main",
                "--",
                "sh",
                "-c",
                "cat; echo done",
            ],
            b"from stdin\n",
        );
        assert!(piped.status.success(), "{piped:?}");
        assert_eq!(text(&piped), "from stdin\ndone\n");
        let five = host.kubectl_stdin(
            kubectl,
            &[
                "exec",
                "-i",
                "web",
                "-c",
                "main",
                "--",
                "sh",
                "-c",
                "cat >/dev/null; exit 5",
            ],
            b"ignored\n",
        );
        assert_eq!(five.status.code(), Some(5), "{five:?}");
        let stderr = run(&mut host.kubectl_cmd(
            kubectl,
            &[
                "exec",
                "web",
                "-c",
                "main",
                "--",
                "sh",
                "-c",
                "echo to-err >&2",
            ],
        ));
        assert_eq!(String::from_utf8_lossy(&stderr.stderr), "to-err\n");
    }

    // Plain SPDY, as kubectl before 1.30 (or with WebSockets switched off) speaks it.
    let spdy = host
        .kubectl_cmd(
            KUBECTL_133,
            &[
                "exec",
                "-i",
                "web",
                "-c",
                "main",
                "--",
                "sh",
                "-c",
                "cat; exit 4",
            ],
        )
        .env("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            let mut stdin = c.stdin.take().expect("stdin");
            stdin.write_all(b"over spdy\n")?;
            drop(stdin);
            c.wait_with_output()
        })
        .expect("kubectl exec over SPDY");
    assert_eq!(text(&spdy), "over spdy\n", "{spdy:?}");
    assert_eq!(spdy.status.code(), Some(4), "{spdy:?}");

    // cp both ways (tar in the container over exec's stdin and stdout).
    let local = host.dir.path().join("upload.txt");
    std::fs::write(&local, "uploaded bytes\n").expect("write");
    ok(
        &host,
        KUBECTL_133,
        &[
            "cp",
            &local.display().to_string(),
            "web:/tmp/upload.txt",
            "-c",
            "main",
        ],
    );
    assert_eq!(
        ok(
            &host,
            KUBECTL_133,
            &["exec", "web", "-c", "main", "--", "cat", "/tmp/upload.txt"]
        ),
        "uploaded bytes\n"
    );
    let download = host.dir.path().join("download.html");
    ok(
        &host,
        KUBECTL_133,
        &[
            "cp",
            "web:/tmp/www/index.html",
            &download.display().to_string(),
            "-c",
            "main",
        ],
    );
    assert_eq!(
        std::fs::read_to_string(&download).unwrap_or_default(),
        "hello-from-pod\n"
    );

    // port-forward to busybox httpd, fetched with curl inside the test's namespace.
    // The last run is plain SPDY, as kubectl before 1.31 speaks it.
    for (kubectl, port, websockets) in [
        (KUBECTL_132, "18080", "true"),
        (KUBECTL_133, "18081", "true"),
        (KUBECTL_133, "18082", "false"),
    ] {
        let mut pf = host
            .kubectl_cmd(
                kubectl,
                &["port-forward", "pod/web", &format!("{port}:8080")],
            )
            .env("KUBECTL_PORT_FORWARD_WEBSOCKETS", websockets)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("port-forward");
        let mut out = BufReader::new(pf.stdout.take().expect("stdout"));
        let mut line = String::new();
        let _ = out.read_line(&mut line);
        assert!(line.contains("Forwarding from"), "{line}");
        for _ in 0..2 {
            let curl = run(host.inside("curl").args([
                "-sS",
                "--max-time",
                "10",
                &format!("http://127.0.0.1:{port}/"),
            ]));
            assert_eq!(text(&curl), "hello-from-pod\n", "{curl:?}");
        }
        let _ = pf.kill();
        let _ = pf.wait();
    }

    // attach to a container reading its stdin.
    let mut attach = host
        .kubectl_cmd(KUBECTL_133, &["attach", "-i", "web", "-c", "echoer"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("attach");
    {
        use std::io::Write;
        let mut stdin = attach.stdin.take().expect("stdin");
        let (tx, rx) = mpsc::channel();
        let stdout = attach.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for l in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let got = poll(Duration::from_secs(20), || {
            let _ = stdin.write_all(b"ping\n");
            let _ = stdin.flush();
            rx.recv_timeout(Duration::from_millis(400)).ok()
        });
        assert_eq!(got.as_deref(), Some("got-ping"));
    }
    let _ = attach.kill();
    let _ = attach.wait();

    // The Python client's forms: exec and port-forward over WebSocket v4.channel.k8s.io.
    let (head, msgs) = websocket(
        &host,
        "/api/v1/namespaces/default/pods/web/exec?container=main&command=sh&command=-c&command=echo%20out%3B%20echo%20err%20%3E%262%3B%20exit%207&stdout=true&stderr=true",
        "v4.channel.k8s.io",
        &[],
    );
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("sec-websocket-protocol: v4.channel.k8s.io"),
        "{head}"
    );
    assert_eq!(channel(&msgs, 1), "out\n");
    assert_eq!(channel(&msgs, 2), "err\n");
    let status: serde_json::Value = serde_json::from_str(&channel(&msgs, 3)).expect("status");
    assert_eq!(status["reason"], "NonZeroExitCode", "{status}");
    assert_eq!(status["details"]["causes"][0]["message"], "7", "{status}");
    let mut data = vec![0u8];
    data.extend_from_slice(b"GET / HTTP/1.0\r\n\r\n");
    let (head, msgs) = websocket(
        &host,
        "/api/v1/namespaces/default/pods/web/portforward?ports=8080",
        "v4.channel.k8s.io",
        &client_frame(&data),
    );
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    // Each channel's first message is the port (2 bytes, little endian), then the data.
    let reply: Vec<u8> = msgs
        .iter()
        .filter(|(c, _)| *c == 0)
        .flat_map(|(_, d)| d.clone())
        .collect();
    let reply = String::from_utf8_lossy(&reply);
    assert!(
        reply.contains("200 OK") && reply.ends_with("hello-from-pod\n"),
        "{reply:?}"
    );

    // --previous after a restart shows the earlier instance's log.
    poll(Duration::from_secs(60), || {
        let out = host.kubectl(&[
            "get",
            "pod",
            "web",
            "-o",
            r#"jsonpath={.status.containerStatuses[?(@.name=="crasher")].restartCount}"#,
        ]);
        (text(&out).parse::<u32>().unwrap_or(0) >= 1).then_some(())
    })
    .unwrap_or_else(|| panic!("crasher never restarted\n{}", host.log("agent.log")));
    let current = ok(&host, KUBECTL_133, &["logs", "web", "-c", "crasher"]);
    let previous = ok(
        &host,
        KUBECTL_133,
        &["logs", "web", "-c", "crasher", "--previous"],
    );
    assert!(previous.starts_with("started-"), "{previous}");
    assert!(current.starts_with("started-"), "{current}");
    assert_ne!(previous, current);

    let logs_ms = timed(5, || {
        ok(&host, KUBECTL_133, &["logs", "web", "-c", "main"]);
    });
    let exec_ms = timed(5, || {
        ok(
            &host,
            KUBECTL_133,
            &["exec", "web", "-c", "main", "--", "true"],
        );
    });
    let exec_i_ms = timed(5, || {
        let out = host.kubectl_stdin(
            KUBECTL_133,
            &["exec", "-i", "web", "-c", "main", "--", "true"],
            b"",
        );
        assert!(out.status.success(), "{out:?}");
    });
    let get_ms = timed(5, || {
        ok(&host, KUBECTL_133, &["get", "pod", "web", "-o", "name"]);
    });
    eprintln!(
        "streaming (ms, 5 runs sorted): kubectl logs {logs_ms:?}; kubectl exec -- true \
         {exec_ms:?}; kubectl exec -i -- true (WebSocket v5 translated to SPDY) {exec_i_ms:?}; \
         baseline kubectl get pod {get_ms:?}"
    );
    // Which protocol each request really used, from the API server's proxy log: kubectl's
    // first choice everywhere (WebSocket v5 for exec/attach, SPDY tunnelled in WebSocket for
    // port-forward), never a refused upgrade; plain SPDY only when kubectl is told to use it.
    let mut seen = std::collections::BTreeMap::new();
    for l in strip_ansi(&host.log("server.log"))
        .lines()
        .filter(|l| l.contains("proxied to node agent"))
    {
        let field = |k: &str| {
            l.split(&format!(" {k}="))
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .unwrap_or("")
                .trim_matches('"')
                .to_string()
        };
        *seen
            .entry(format!(
                "{} {} {} -> {}",
                field("sub"),
                field("upgrade"),
                field("protocols"),
                field("status")
            ))
            .or_insert(0) += 1;
    }
    eprintln!("proxied: {seen:#?}");
    for want in [
        "exec websocket v5.channel.k8s.io -> 101",
        "attach websocket v5.channel.k8s.io -> 101",
        "portforward websocket SPDY/3.1+portforward.k8s.io -> 101",
        "exec websocket v4.channel.k8s.io -> 101",
        "portforward websocket v4.channel.k8s.io -> 101",
        "exec SPDY/3.1 v5.channel.k8s.io -> 101",
        "portforward SPDY/3.1 portforward.k8s.io -> 101",
    ] {
        assert!(seen.contains_key(want), "no {want:?} in {seen:#?}");
    }
    assert!(
        !seen
            .keys()
            .any(|k| k.contains("websocket") && !k.ends_with("101")),
        "a WebSocket upgrade was refused: {seen:#?}"
    );
}
