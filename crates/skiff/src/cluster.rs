//! `skiff cluster up|down|stop-node|start-node`: a real multi-node cluster on one machine, with
//! no Docker. The server runs in the root network namespace on a private /24; every node is a
//! `skiff agent` (with its own containerd) in a network namespace of its own, its `eth0` plugged
//! into a bridge that lives in one more namespace (the cluster's "switch"). The only thing the
//! root namespace gains is one veth with the /24's first address: nothing is routed out of the
//! machine's real interface and the root namespace's forwarding setting is never changed.
//! Everything a cluster creates is recorded in `<dir>/cluster.json`, and `down` removes all of
//! it (processes, pods, mounts, cgroups, namespaces, links, files).

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use serde::{Deserialize, Serialize};

/// How long `up` waits for the server and for every node to become Ready.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// What `up` created, so `down` can remove exactly that.
#[derive(Debug, Serialize, Deserialize)]
pub struct State {
    /// The cluster's name.
    pub name: String,
    /// The first three octets of the cluster's /24 (`10.199.N`).
    pub subnet: String,
    /// The veth in the root namespace.
    pub root_link: String,
    /// The namespace holding the bridge.
    pub switch_netns: String,
    /// The server process and its data dir.
    pub server_pid: u32,
    /// The admin kubeconfig.
    pub kubeconfig: PathBuf,
    /// `https://<address>:<port>` of the server.
    pub server_url: String,
    /// The nodes.
    pub nodes: Vec<NodeState>,
    /// Pod network mode the nodes were started with.
    pub pod_network: String,
}

/// One node of a local cluster.
#[derive(Debug, Serialize, Deserialize)]
pub struct NodeState {
    /// Node name (`<cluster>-node-<i>`).
    pub name: String,
    /// Its network namespace.
    pub netns: String,
    /// Its address on the cluster's /24.
    pub ip: String,
    /// Its agent's data dir.
    pub data_dir: PathBuf,
    /// Parent cgroup of its pods.
    pub cgroup_root: String,
    /// The agent's pid, or 0 while the node is stopped.
    pub agent_pid: u32,
}

/// The directory of cluster `name` unless `--dir` says otherwise.
pub fn default_dir(name: &str) -> PathBuf {
    PathBuf::from("/var/lib/skiff/clusters").join(name)
}

fn check_name(name: &str) -> anyhow::Result<()> {
    ensure!(
        !name.is_empty()
            && name.len() <= 12
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !name.starts_with('-'),
        "cluster name {name:?} must be 1-12 characters of a-z, 0-9 and '-' (it names network \
         interfaces, which the kernel limits to 15 characters)"
    );
    Ok(())
}

/// Run a command, failing with its stderr.
fn sh(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program}"))?;
    ensure!(
        out.status.success(),
        "{program} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Run a command whose failure does not matter (cleanup of what may already be gone).
pub(crate) fn quietly(program: &str, args: &[&str]) {
    let _ = Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// A third octet for the cluster's `10.199.X.0/24` that no address of this machine uses.
fn pick_subnet(name: &str) -> anyhow::Result<String> {
    let used = sh("ip", &["-4", "-o", "addr", "show"])?;
    let seed = name
        .bytes()
        .fold(17u32, |h, b| h.wrapping_mul(31).wrapping_add(b.into()));
    for k in 0..200 {
        let octet = 20 + (seed + k) % 200;
        let prefix = format!("10.199.{octet}");
        if !used.contains(&format!("{prefix}.")) {
            return Ok(prefix);
        }
    }
    bail!("no free 10.199.X.0/24 for the cluster")
}

fn netns_path(netns: &str) -> String {
    format!("/var/run/netns/{netns}")
}

/// A detached child: own process group (Ctrl-C of `up` does not reach it), output to `log`.
fn spawn_detached(mut command: Command, log: &Path) -> anyhow::Result<u32> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    let child = command
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .process_group(0)
        .spawn()
        .context("starting a cluster process")?;
    Ok(child.id())
}

/// Wait (bounded) for `pattern` in `log`; returns the matching line.
fn wait_for_line(log: &Path, pattern: &str, pid: u32) -> anyhow::Result<String> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains(pattern)) {
            return Ok(line.to_string());
        }
        ensure!(
            alive(pid),
            "the process exited before it was ready; its log ({}):\n{text}",
            log.display()
        );
        ensure!(
            Instant::now() < deadline,
            "not ready within {READY_TIMEOUT:?}; see {}",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether `pid` is a live `skiff` process (not a recycled pid of something else).
fn alive(pid: u32) -> bool {
    if pid == 0 {
        return false;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // A zombie (state Z after the command name) has exited.
    let running = stat
        .rsplit_once(')')
        .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'));
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    running && String::from_utf8_lossy(&cmdline).contains("skiff")
}

/// SIGTERM `pid`, wait up to `grace`, then SIGKILL.
fn stop(pid: u32, grace: Duration) {
    if !alive(pid) {
        return;
    }
    quietly("kill", &["-TERM", &pid.to_string()]);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if !alive(pid) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    quietly("kill", &["-KILL", &pid.to_string()]);
}

impl State {
    fn path(dir: &Path) -> PathBuf {
        dir.join("cluster.json")
    }

    fn save(&self, dir: &Path) -> anyhow::Result<()> {
        let tmp = dir.join("cluster.json.tmp");
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(serde_json::to_string_pretty(self)?.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, Self::path(dir))?;
        Ok(())
    }

    fn load(dir: &Path) -> anyhow::Result<State> {
        let path = Self::path(dir);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("no cluster recorded at {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))
    }
}

/// How `up` was asked to build the cluster.
pub struct UpOptions {
    /// Cluster name.
    pub name: String,
    /// Number of nodes (agents).
    pub nodes: usize,
    /// `host-gw` or `vxlan`.
    pub pod_network: String,
    /// State directory.
    pub dir: PathBuf,
    /// Image archives (`*.tar`) every node imports at start (air-gapped images).
    pub images: Option<PathBuf>,
    /// Extra flags for `skiff server` (e.g. `--node-monitor-grace-period=10s`).
    pub server_args: Vec<String>,
}

/// Build the cluster; returns its state (kubeconfig path in it). On failure, whatever was
/// created is removed again.
pub fn up(options: &UpOptions) -> anyhow::Result<State> {
    check_name(&options.name)?;
    ensure!((1..=50).contains(&options.nodes), "--nodes must be 1 to 50");
    ensure!(
        matches!(options.pod_network.as_str(), "host-gw" | "vxlan"),
        "--pod-network must be host-gw or vxlan"
    );
    let dir = &options.dir;
    if State::path(dir).exists() {
        bail!(
            "cluster {} is already up (state in {}); `skiff cluster down --name {}` first",
            options.name,
            dir.display(),
            options.name
        );
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let subnet = pick_subnet(&options.name)?;
    let mut state = State {
        name: options.name.clone(),
        subnet: subnet.clone(),
        root_link: format!("sk-{}", options.name),
        switch_netns: format!("skiff-{}-sw", options.name),
        server_pid: 0,
        kubeconfig: dir.join("server").join("kubeconfig.yaml"),
        server_url: String::new(),
        nodes: Vec::new(),
        pod_network: options.pod_network.clone(),
    };
    // Recorded before anything exists, so a failure half-way is cleaned by `down`.
    state.save(dir)?;
    match build(&mut state, options) {
        Ok(()) => {
            state.save(dir)?;
            Ok(state)
        }
        Err(e) => {
            let _ = state.save(dir);
            down_state(&state, dir);
            Err(e.context("building the cluster failed; everything it created was removed"))
        }
    }
}

fn build(state: &mut State, options: &UpOptions) -> anyhow::Result<()> {
    let dir = &options.dir;
    let sw = state.switch_netns.clone();
    let subnet = state.subnet.clone();
    // The switch: a namespace holding the bridge every node and the host plug into.
    sh("ip", &["netns", "add", &sw])?;
    sh("ip", &["-n", &sw, "link", "set", "lo", "up"])?;
    sh("ip", &["-n", &sw, "link", "add", "br0", "type", "bridge"])?;
    sh("ip", &["-n", &sw, "link", "set", "br0", "up"])?;
    // The host's port: one veth in the root namespace with the /24's first address.
    sh(
        "ip",
        &[
            "link",
            "add",
            &state.root_link,
            "type",
            "veth",
            "peer",
            "name",
            "host",
            "netns",
            &sw,
        ],
    )?;
    sh(
        "ip",
        &["-n", &sw, "link", "set", "host", "master", "br0", "up"],
    )?;
    let host_ip = format!("{subnet}.1");
    sh(
        "ip",
        &[
            "addr",
            "add",
            &format!("{host_ip}/24"),
            "dev",
            &state.root_link,
        ],
    )?;
    sh("ip", &["link", "set", &state.root_link, "up"])?;

    // The control plane, in the root namespace, reachable on the host's port only.
    let exe = std::env::current_exe().context("locating the skiff binary")?;
    let server_dir = dir.join("server");
    std::fs::create_dir_all(&server_dir)?;
    let server_log = dir.join("server.log");
    let mut server = Command::new(&exe);
    server
        .args(["server", "--disable-agent", "--https-listen-port", "0"])
        .args(["--bind-address", &host_ip, "--tls-san", &host_ip])
        .arg("--data-dir")
        .arg(&server_dir)
        .args(&options.server_args);
    state.server_pid = spawn_detached(server, &server_log)?;
    state.save(dir)?;
    let ready = wait_for_line(&server_log, "skiff server ready:", state.server_pid)?;
    state.server_url = ready
        .split_whitespace()
        .find(|w| w.starts_with("https://"))
        .context("the server's ready line has no URL")?
        .to_string();
    let token_file = server_dir.join("server").join("node-token");

    for i in 1..=options.nodes {
        let node = NodeState {
            name: format!("{}-node-{i}", options.name),
            netns: format!("skiff-{}-n{i}", options.name),
            ip: format!("{subnet}.{}", 10 + i),
            data_dir: dir.join("nodes").join(format!("node-{i}")),
            cgroup_root: format!("/skiff-{}-n{i}", options.name),
            agent_pid: 0,
        };
        let ns = node.netns.clone();
        sh("ip", &["netns", "add", &ns])?;
        state.nodes.push(node);
        state.save(dir)?;
        sh("ip", &["-n", &ns, "link", "set", "lo", "up"])?;
        let port = format!("n{i}");
        sh(
            "ip",
            &[
                "-n", &sw, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
                &ns,
            ],
        )?;
        sh(
            "ip",
            &["-n", &sw, "link", "set", &port, "master", "br0", "up"],
        )?;
        let ip = format!("{subnet}.{}", 10 + i);
        sh(
            "ip",
            &["-n", &ns, "addr", "add", &format!("{ip}/24"), "dev", "eth0"],
        )?;
        sh("ip", &["-n", &ns, "link", "set", "eth0", "up"])?;
        // Forwarding inside the node's namespace only: pods on its bridge reach other nodes.
        sh(
            "nsenter",
            &[
                &format!("--net={}", netns_path(&ns)),
                "sysctl",
                "-qw",
                "net.ipv4.ip_forward=1",
            ],
        )?;
        let node = state.nodes.last().context("node just added")?;
        let images_dir = node.data_dir.join("agent").join("images");
        std::fs::create_dir_all(&images_dir)?;
        if let Some(images) = &options.images {
            for entry in std::fs::read_dir(images)
                .with_context(|| format!("reading --images {}", images.display()))?
            {
                let path = entry?.path();
                if path.extension().is_some_and(|e| e == "tar")
                    && let Some(file) = path.file_name()
                {
                    let target = images_dir.join(file);
                    if std::fs::hard_link(&path, &target).is_err() {
                        std::fs::copy(&path, &target).with_context(|| {
                            format!("copying {} to {}", path.display(), target.display())
                        })?;
                    }
                }
            }
        }
        let pid = start_agent(state, state.nodes.len() - 1, &exe, &token_file)?;
        if let Some(n) = state.nodes.last_mut() {
            n.agent_pid = pid;
        }
        state.save(dir)?;
    }
    for node in &state.nodes {
        wait_for_line(
            &node.data_dir.join("agent.log"),
            "node agent ready",
            node.agent_pid,
        )?;
    }
    Ok(())
}

/// Start node `index`'s agent inside its namespace, joining with the cluster's token.
fn start_agent(state: &State, index: usize, exe: &Path, token_file: &Path) -> anyhow::Result<u32> {
    let node = &state.nodes[index];
    std::fs::create_dir_all(&node.data_dir)?;
    let mut agent = Command::new("nsenter");
    agent
        .arg(format!("--net={}", netns_path(&node.netns)))
        .arg(exe)
        .arg("agent")
        .arg("--data-dir")
        .arg(&node.data_dir)
        .args(["--server", &state.server_url])
        .arg("--token-file")
        .arg(token_file)
        .args(["--node-name", &node.name, "--node-ip", &node.ip])
        .args(["--pod-cidr", &format!("10.244.{}.0/24", index + 1)])
        .args(["--pod-network", &state.pod_network])
        .arg("--cgroup-root")
        .arg(format!("{}/kubepods", node.cgroup_root));
    spawn_detached(agent, &node.data_dir.join("agent.log"))
}

/// Stop node `node`'s agent (its pods keep running, as when a kubelet stops).
pub fn stop_node(dir: &Path, node: &str) -> anyhow::Result<()> {
    let mut state = State::load(dir)?;
    let n = state
        .nodes
        .iter_mut()
        .find(|n| n.name == node)
        .with_context(|| format!("no node {node} in this cluster"))?;
    stop(n.agent_pid, Duration::from_secs(20));
    n.agent_pid = 0;
    state.save(dir)
}

/// Start node `node`'s agent again.
pub fn start_node(dir: &Path, node: &str) -> anyhow::Result<()> {
    let mut state = State::load(dir)?;
    let index = state
        .nodes
        .iter()
        .position(|n| n.name == node)
        .with_context(|| format!("no node {node} in this cluster"))?;
    ensure!(
        !alive(state.nodes[index].agent_pid),
        "node {node}'s agent is running"
    );
    let exe = std::env::current_exe().context("locating the skiff binary")?;
    let token_file = dir.join("server").join("server").join("node-token");
    let log = state.nodes[index].data_dir.join("agent.log");
    let before = std::fs::read_to_string(&log).unwrap_or_default().len();
    let pid = start_agent(&state, index, &exe, &token_file)?;
    state.nodes[index].agent_pid = pid;
    state.save(dir)?;
    // Ready once a new "node agent ready" line follows what the log held before.
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text
            .get(before..)
            .is_some_and(|t| t.contains("node agent ready"))
        {
            return Ok(());
        }
        if !alive(pid) {
            let tail: Vec<&str> = text
                .get(before..)
                .unwrap_or("")
                .lines()
                .rev()
                .take(15)
                .collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            bail!(
                "the agent exited; see {}; its last lines:\n{}",
                log.display(),
                tail.join("\n")
            );
        }
        ensure!(
            Instant::now() < deadline,
            "agent not ready; see {}",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Remove cluster state at `dir`; every step is tried even when an earlier one failed.
pub fn down(dir: &Path) -> anyhow::Result<()> {
    let state = State::load(dir)?;
    down_state(&state, dir);
    Ok(())
}

fn down_state(state: &State, dir: &Path) {
    for node in &state.nodes {
        // Pods first: whatever runs in the node's cgroup tree is its pods'.
        kill_cgroup_tree(&node.cgroup_root);
        kill_shims_under(&node.data_dir);
        stop(node.agent_pid, Duration::from_secs(20));
    }
    stop(state.server_pid, Duration::from_secs(10));
    unmount_under(dir);
    for node in &state.nodes {
        remove_cgroup_tree(&node.cgroup_root);
        quietly("ip", &["netns", "del", &node.netns]);
    }
    quietly("ip", &["netns", "del", &state.switch_netns]);
    // The root veth goes with its peer; delete it explicitly in case the peer never existed.
    quietly("ip", &["link", "del", &state.root_link]);
    if let Err(e) = std::fs::remove_dir_all(dir) {
        tracing::warn!(dir = %dir.display(), error = %e, "removing the cluster directory");
    }
}

/// containerd shims outlive containerd by design; those serving a socket under `dir` are ours.
fn kill_shims_under(dir: &Path) {
    let dir = dir.display().to_string();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains("containerd-shim") && cmdline.contains(&dir) {
            quietly("kill", &["-KILL", &pid.to_string()]);
        }
    }
}

/// Lazily unmount every mount point under `dir` (containerd's rootfs and shm mounts, CSI
/// publishes), deepest first.
fn unmount_under(dir: &Path) {
    let base = dir.display().to_string();
    let mut mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4).map(str::to_string))
        .filter(|m| m.starts_with(&base))
        .collect();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in mounts {
        quietly("umount", &["-l", &m]);
    }
}

/// The cgroup hierarchies (v1: one per controller; v2: the unified root).
pub(crate) fn cgroup_hierarchies() -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    if root.join("cgroup.controllers").exists() {
        return vec![root.to_path_buf()];
    }
    std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect()
}

/// SIGKILL every process in the cgroup tree `root`, in every hierarchy.
pub(crate) fn kill_cgroup_tree(root: &str) {
    fn walk(dir: &Path) {
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        for pid in procs.split_whitespace() {
            quietly("kill", &["-KILL", pid]);
        }
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                walk(&e.path());
            }
        }
    }
    for h in cgroup_hierarchies() {
        walk(&h.join(root.trim_start_matches('/')));
    }
}

/// Remove the cgroup tree `root` from every hierarchy, retrying while killed tasks exit.
fn remove_cgroup_tree(root: &str) {
    fn rm(dir: &Path) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                rm(&e.path());
            }
        }
        let _ = std::fs::remove_dir(dir);
    }
    for _ in 0..50 {
        let mut left = false;
        for h in cgroup_hierarchies() {
            let path = h.join(root.trim_start_matches('/'));
            rm(&path);
            left |= path.exists();
        }
        if !left {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_cannot_name_interfaces_are_refused() {
        assert!(check_name("dev").is_ok());
        assert!(check_name("a-1").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("thirteen-char").is_err());
        assert!(check_name("Upper").is_err());
        assert!(check_name("-x").is_err());
        assert!(check_name("a_b").is_err());
    }
}
