//! One host for root tests: a network namespace the test creates (loopback up, a veth pair
//! whose both ends stay inside, carrying the node's address) and `skiff server` with its own
//! node agent running in it through `nsenter --net`, never in the root namespace. The test's
//! pods live under a cgroup root of its own. Everything is removed in `Drop`, also on failure:
//! the pods, shims, mounts, the cgroup tree and the namespace.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use super::KUBECTL_133;

pub fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run command")
}

pub fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether the host runs the unified cgroup hierarchy.
pub fn v2() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// Why a host test cannot run here, if it cannot.
pub fn skip_reason() -> Option<&'static str> {
    if let Some(why) = super::cluster::skip_reason() {
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

/// Everything the test started or created; torn down in Drop.
pub struct NetnsHost {
    pub netns: String,
    pub cgroup_root: String,
    pub dir: tempfile::TempDir,
    pub server: Option<Child>,
    prefix: String,
    node: String,
}

impl NetnsHost {
    /// A namespace `<prefix>-<suffix>` whose eth0 has `node_ip`/24; the server's node is `node`.
    pub fn new(prefix: &str, node_ip: &str, node: &str) -> NetnsHost {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let suffix = format!("{:08x}", nanos ^ std::process::id().rotate_left(16));
        let host = NetnsHost {
            netns: format!("{prefix}-{suffix}"),
            cgroup_root: format!("/{prefix}-{suffix}"),
            dir: tempfile::tempdir().expect("tempdir"),
            server: None,
            prefix: prefix.to_string(),
            node: node.to_string(),
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
        let veth = [
            "link",
            "add",
            "eth0",
            "type",
            "veth",
            "peer",
            "name",
            "eth0-peer",
        ];
        ip(&[&["-n", ns.as_str()][..], &veth[..]].concat());
        let addr = format!("{node_ip}/24");
        ip(&["-n", &ns, "addr", "add", &addr, "dev", "eth0"]);
        ip(&["-n", &ns, "link", "set", "eth0-peer", "up"]);
        ip(&["-n", &ns, "link", "set", "eth0", "up"]);
        host
    }

    /// The busybox image archive in the agent's import dir, so pods start without a registry.
    pub fn import_busybox(&self) {
        let images = self.data_dir().join("agent/images");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/busybox-image.sh");
        let out = run(Command::new(script).arg(&images));
        assert!(out.status.success(), "busybox-image.sh: {out:?}");
    }

    /// A command inside the namespace (`nsenter --net`, not `ip netns exec`, which hides the
    /// cgroup mounts from runc).
    pub fn inside(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/var/run/netns/{}", self.netns))
            .arg(program);
        c
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn socket(&self) -> PathBuf {
        self.data_dir().join("agent/containerd/containerd.sock")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    pub fn kubectl(&self, args: &[&str]) -> Output {
        run(self
            .inside(KUBECTL_133)
            .arg("--kubeconfig")
            .arg(self.data_dir().join("kubeconfig.yaml"))
            .arg("--cache-dir")
            .arg(self.dir.path().join("kcache"))
            .args(args))
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?}: {out:?}\n{}",
            self.log()
        );
        text(&out)
    }

    /// The server's node reports Ready.
    pub fn node_ready(&self) -> bool {
        let out = self.kubectl(&[
            "get",
            "node",
            &self.node,
            "-o",
            r#"jsonpath={.status.conditions[?(@.type=="Ready")].status}"#,
        ]);
        text(&out) == "True"
    }

    /// Waits until the node is Ready and pods can be created: its Lease exists and the
    /// `default` ServiceAccount the admission of every pod looks up has been made.
    pub fn wait_until_usable(&self) {
        let wait = Duration::from_secs(120);
        super::eventually(wait, "the server's node is Ready", || {
            self.node_ready().then_some(())
        });
        super::eventually(wait, "the node's Lease", || {
            let lease = ["get", "lease", "-n", "kube-node-lease", &self.node];
            self.kubectl(&lease).status.success().then_some(())
        });
        super::eventually(wait, "the default ServiceAccount", || {
            let sa = ["get", "serviceaccount", "default", "-n", "default"];
            self.kubectl(&sa).status.success().then_some(())
        });
    }

    /// `skiff server` with its agent (no `--disable-agent`; without `--node-ip` the address
    /// comes from the namespace's eth0), plus `flags`; returns once it says it is ready.
    pub fn start_server(&mut self, flags: &[&str]) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))
            .expect("log");
        let mut child = self
            .inside(env!("CARGO_BIN_EXE_skiff"))
            .args([
                "server",
                "--https-listen-port",
                "0",
                "--node-name",
                &self.node,
            ])
            .arg("--cgroup-root")
            .arg(format!("{}/kubepods", self.cgroup_root))
            .args(flags)
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
    pub fn stop_server(&mut self) -> Option<ExitStatus> {
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

    /// The hierarchy holding every cgroup of the test's tree: the unified one (v2) or the
    /// memory controller's (v1).
    pub fn cgroup_base(&self) -> PathBuf {
        let base = if v2() {
            "/sys/fs/cgroup"
        } else {
            "/sys/fs/cgroup/memory"
        };
        Path::new(base).join(self.cgroup_root.trim_start_matches('/'))
    }

    /// Processes in the test's cgroup tree.
    pub fn pod_processes(&self) -> Vec<String> {
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
        walk(&self.cgroup_base(), &mut out);
        out
    }
}

impl Drop for NetnsHost {
    fn drop(&mut self) {
        if let Some(keep) = std::env::var_os("SKIFF_KEEP_LOGS") {
            let _ = std::fs::create_dir_all(&keep);
            let _ = std::fs::copy(
                self.dir.path().join("server.log"),
                Path::new(&keep).join(format!("{}-server.log", self.prefix)),
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
        let hierarchies: Vec<PathBuf> = if v2() {
            vec![PathBuf::from("/sys/fs/cgroup")]
        } else {
            std::fs::read_dir("/sys/fs/cgroup")
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .collect()
        };
        for _ in 0..50 {
            let mut left = false;
            for h in &hierarchies {
                let path = h.join(&root);
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
