//! Pod and QoS cgroups on cgroupfs, as the kubelet's cgroup manager lays them out: the parent
//! path a pod's sandbox and containers go under (`<root>/<qos>/pod<uid>`, Guaranteed pods
//! directly under `<root>`), the values written to pod, QoS and node (`<root>`) cgroups, and the
//! removal of what is left when a pod is gone. Works on cgroup v1 (these machines: one hierarchy
//! per controller) and on the unified v2 hierarchy.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use k8s_openapi::api::core::v1::{Container, Pod};

use crate::{admission, util};

/// Where the cgroup hierarchies are mounted.
const CGROUP_FS: &str = "/sys/fs/cgroup";

/// The kernel's minimum cpu shares; what a pod or QoS class without cpu requests gets.
pub const MIN_SHARES: u64 = 2;
/// The kernel's maximum cpu shares.
pub const MAX_SHARES: u64 = 262_144;
const SHARES_PER_CPU: u64 = 1024;
/// The CFS period the kubelet uses by default (100 ms, its `--cpu-cfs-quota-period`).
pub const QUOTA_PERIOD: u64 = 100_000;
/// The smallest CFS quota the kernel accepts (1 ms).
const MIN_QUOTA: i64 = 1000;

/// The pod's cgroup parent: `<root>/<qos>/pod<uid>`, Guaranteed pods directly under `<root>`,
/// as the kubelet lays them out.
pub fn pod_parent(root: &str, qos: &str, uid: &str) -> String {
    let root = root.trim_end_matches('/');
    match qos {
        "Guaranteed" => format!("{root}/pod{uid}"),
        "Burstable" => format!("{root}/burstable/pod{uid}"),
        _ => format!("{root}/besteffort/pod{uid}"),
    }
}

/// Cpu shares for `milli` millicores of requests, as the kubelet's `MilliCPUToShares`: 1024
/// per cpu, never below 2 (no request gives 2, the kernel's minimum, not its default 1024).
pub fn milli_cpu_to_shares(milli: i64) -> u64 {
    if milli <= 0 {
        return MIN_SHARES;
    }
    let shares = (milli as u64).saturating_mul(SHARES_PER_CPU) / 1000;
    shares.clamp(MIN_SHARES, MAX_SHARES)
}

/// The CFS quota (µs per `period`) for a limit of `milli` millicores, at least 1 ms, as the
/// kubelet's `MilliCPUToQuota`.
pub fn milli_cpu_to_quota(milli: i64, period: u64) -> i64 {
    if milli <= 0 {
        return 0;
    }
    (milli.saturating_mul(period as i64) / 1000).max(MIN_QUOTA)
}

/// cgroup v1 cpu shares as a v2 `cpu.weight`, the way runc and the kubelet convert them:
/// shares 2..262144 map linearly onto weights 1..10000.
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    let shares = shares.clamp(MIN_SHARES, MAX_SHARES);
    1 + ((shares - 2) * 9999) / 262_142
}

/// One value a cgroup gets, independent of the cgroup version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Setting {
    /// Relative cpu weight (v1 `cpu.shares`; v2 `cpu.weight` after conversion).
    CpuShares(u64),
    /// CFS bandwidth: `quota` µs per `period` µs, `None` for no limit.
    CpuMax { quota: Option<i64>, period: u64 },
    /// Memory limit in bytes, `None` for no limit.
    MemoryMax(Option<i64>),
    /// Process limit, `None` for no limit.
    PidsMax(Option<i64>),
}

/// The file a setting goes to: the v1 controller hierarchy (empty on v2), file name, value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileWrite {
    pub controller: &'static str,
    pub file: &'static str,
    pub value: String,
}

fn write(controller: &'static str, file: &'static str, value: impl ToString) -> FileWrite {
    FileWrite {
        controller,
        file,
        value: value.to_string(),
    }
}

/// Which cgroup interface the host has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// One hierarchy per controller under `/sys/fs/cgroup/<controller>` (also "hybrid" hosts,
    /// where the v2 mount at `unified` holds no controller the kubelet uses).
    V1,
    /// The unified hierarchy mounted at `/sys/fs/cgroup`.
    V2,
}

impl Version {
    /// The host's, from what is mounted at `/sys/fs/cgroup`.
    pub fn detect() -> Version {
        if Path::new(CGROUP_FS).join("cgroup.controllers").exists() {
            Version::V2
        } else {
            Version::V1
        }
    }

    /// The files and values `setting` is written as, in writing order.
    pub fn files(self, setting: &Setting) -> Vec<FileWrite> {
        match (self, setting) {
            (Version::V1, Setting::CpuShares(s)) => vec![write("cpu", "cpu.shares", s)],
            // The period first: a quota is judged against the period in force.
            (Version::V1, Setting::CpuMax { quota, period }) => vec![
                write("cpu", "cpu.cfs_period_us", period),
                write("cpu", "cpu.cfs_quota_us", quota.unwrap_or(-1)),
            ],
            (Version::V1, Setting::MemoryMax(m)) => {
                vec![write("memory", "memory.limit_in_bytes", m.unwrap_or(-1))]
            }
            (Version::V1, Setting::PidsMax(p)) => vec![write("pids", "pids.max", or_max(*p))],
            (Version::V2, Setting::CpuShares(s)) => {
                vec![write("", "cpu.weight", shares_to_weight(*s))]
            }
            (Version::V2, Setting::CpuMax { quota, period }) => {
                vec![write("", "cpu.max", format!("{} {period}", or_max(*quota)))]
            }
            (Version::V2, Setting::MemoryMax(m)) => vec![write("", "memory.max", or_max(*m))],
            (Version::V2, Setting::PidsMax(p)) => vec![write("", "pids.max", or_max(*p))],
        }
    }
}

fn or_max(v: Option<i64>) -> String {
    v.map_or_else(|| "max".to_string(), |v| v.to_string())
}

/// Per-resource sums of limits the way upstream's `PodLimits` adds them, and whether every
/// container (init containers included) declares each.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PodLimits {
    /// Millicores.
    pub cpu: i64,
    /// Bytes.
    pub memory: i64,
    pub all_have_cpu: bool,
    pub all_have_memory: bool,
}

fn container_limits(c: &Container) -> (i64, i64) {
    let limits = c.resources.as_ref().and_then(|r| r.limits.as_ref());
    (
        util::resource(limits, "cpu").unwrap_or(0),
        util::resource(limits, "memory").unwrap_or(0),
    )
}

/// The pod's limits: app containers and sidecars summed, or the largest init step (an init
/// container next to the sidecars started before it) when larger, plus the pod overhead for
/// resources some container limits.
pub fn pod_limits(pod: &Pod) -> PodLimits {
    let Some(spec) = pod.spec.as_ref() else {
        return PodLimits::default();
    };
    let mut out = PodLimits {
        all_have_cpu: true,
        all_have_memory: true,
        ..PodLimits::default()
    };
    let mut note = |(cpu, memory): (i64, i64)| {
        out.all_have_cpu &= cpu > 0;
        out.all_have_memory &= memory > 0;
    };
    let (mut cpu, mut memory) = (0i64, 0i64);
    for c in &spec.containers {
        let l = container_limits(c);
        note(l);
        cpu += l.0;
        memory += l.1;
    }
    let (mut side_cpu, mut side_mem, mut peak_cpu, mut peak_mem) = (0i64, 0i64, 0i64, 0i64);
    for c in spec.init_containers.iter().flatten() {
        let l = container_limits(c);
        note(l);
        if crate::pods::is_sidecar(c) {
            cpu += l.0;
            memory += l.1;
            side_cpu += l.0;
            side_mem += l.1;
            peak_cpu = peak_cpu.max(side_cpu);
            peak_mem = peak_mem.max(side_mem);
        } else {
            peak_cpu = peak_cpu.max(l.0 + side_cpu);
            peak_mem = peak_mem.max(l.1 + side_mem);
        }
    }
    out.cpu = cpu.max(peak_cpu);
    out.memory = memory.max(peak_mem);
    let overhead = spec.overhead.as_ref();
    if out.cpu > 0 {
        out.cpu += util::resource(overhead, "cpu").unwrap_or(0);
    }
    if out.memory > 0 {
        out.memory += util::resource(overhead, "memory").unwrap_or(0);
    }
    out
}

/// What the pod's own cgroup gets, as the kubelet's `ResourceConfigForPod` (cfs quota on) plus
/// its pod pids limit: shares from the summed requests; a CFS quota and a memory limit for
/// Guaranteed pods, and for Burstable pods whose every container declares that limit; shares 2
/// and nothing else for BestEffort pods. `pod_max_pids` ≤ 0 means no pids limit.
pub fn pod_settings(pod: &Pod, pod_max_pids: i64) -> Vec<Setting> {
    let qos = util::qos_class(pod);
    let requests = admission::pod_requests(pod);
    let limits = pod_limits(pod);
    let cpu_max = |limited: bool| Setting::CpuMax {
        quota: limited.then(|| milli_cpu_to_quota(limits.cpu, QUOTA_PERIOD)),
        period: QUOTA_PERIOD,
    };
    let (shares, cpu, memory) = match qos {
        "Guaranteed" => (
            milli_cpu_to_shares(requests.cpu),
            cpu_max(true),
            Some(limits.memory),
        ),
        "Burstable" => (
            milli_cpu_to_shares(requests.cpu),
            cpu_max(limits.all_have_cpu),
            limits.all_have_memory.then_some(limits.memory),
        ),
        _ => (MIN_SHARES, cpu_max(false), None),
    };
    vec![
        Setting::CpuShares(shares),
        cpu,
        Setting::MemoryMax(memory),
        Setting::PidsMax((pod_max_pids > 0).then_some(pod_max_pids)),
    ]
}

/// What `<root>` (kubepods) gets: shares for the node's allocatable cpu, and the allocatable
/// memory and pids as limits (upstream's `enforce-node-allocatable=pods` default; no cpu quota).
pub fn node_settings(
    allocatable_milli_cpu: i64,
    allocatable_memory: i64,
    pids: Option<i64>,
) -> Vec<Setting> {
    let mut out = vec![Setting::CpuShares(milli_cpu_to_shares(
        allocatable_milli_cpu,
    ))];
    if allocatable_memory > 0 {
        out.push(Setting::MemoryMax(Some(allocatable_memory)));
    }
    if let Some(p) = pids {
        out.push(Setting::PidsMax(Some(p)));
    }
    out
}

/// The host's process limit (the smaller of `pid_max` and `threads-max`), the pids part of the
/// node's capacity upstream caps kubepods at.
pub fn host_pid_limit() -> Option<i64> {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .ok()
            .and_then(|s| s.trim().parse::<i64>().ok())
    };
    match (
        read("/proc/sys/kernel/pid_max"),
        read("/proc/sys/kernel/threads-max"),
    ) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Why a cgroup value could not be written.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("creating cgroup {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing {value:?} to {path}: {source}")]
    Write {
        path: PathBuf,
        value: String,
        source: std::io::Error,
    },
}

/// Create the cgroup `path` (absolute within the hierarchy, e.g. `/kubepods/burstable`) where
/// `settings` need it and write them. Every write is tried; the first failure is returned.
pub fn apply(version: Version, path: &str, settings: &[Setting]) -> Result<(), Error> {
    apply_at(Path::new(CGROUP_FS), version, path, settings)
}

fn apply_at(fs: &Path, version: Version, path: &str, settings: &[Setting]) -> Result<(), Error> {
    let rel = path.trim_matches('/');
    let mut first: Option<Error> = None;
    if version == Version::V2 {
        enable_v2_controllers(fs, rel);
    }
    for w in settings.iter().flat_map(|s| version.files(s)) {
        let dir = fs.join(w.controller).join(rel);
        if let Err(source) = std::fs::create_dir_all(&dir) {
            first.get_or_insert(Error::Create { path: dir, source });
            continue;
        }
        let file = dir.join(w.file);
        if let Err(source) = std::fs::write(&file, &w.value) {
            first.get_or_insert(Error::Write {
                path: file,
                value: w.value,
                source,
            });
        }
    }
    first.map_or(Ok(()), Err)
}

/// On v2 a controller's files exist in a cgroup only when every ancestor delegates it: enable
/// cpu, memory and pids in `subtree_control` from the root down to the parent of `rel`, creating
/// the ancestors. Failures are left for the writes to report.
fn enable_v2_controllers(fs: &Path, rel: &str) {
    let mut dir = fs.to_path_buf();
    let parts: Vec<&str> = rel.split('/').filter(|p| !p.is_empty()).collect();
    for (i, part) in parts.iter().enumerate() {
        for c in ["+cpu", "+memory", "+pids"] {
            let _ = std::fs::write(dir.join("cgroup.subtree_control"), c);
        }
        dir.push(part);
        if i + 1 < parts.len() {
            let _ = std::fs::create_dir_all(&dir);
        }
    }
}

/// Every hierarchy directory a cgroup `path` has (one per v1 controller mount and the unified
/// one), whether or not it exists.
fn hierarchy_dirs(path: &str) -> Vec<PathBuf> {
    let rel = path.trim_start_matches('/');
    if Version::detect() == Version::V2 {
        return vec![Path::new(CGROUP_FS).join(rel)];
    }
    let mut dirs = Vec::new();
    for entry in std::fs::read_dir(CGROUP_FS).into_iter().flatten().flatten() {
        // Combined mounts (cpu,cpuacct) appear once as a directory and again as symlinks.
        let is_link = entry.file_type().map(|t| t.is_symlink()).unwrap_or(true);
        if !is_link {
            dirs.push(entry.path().join(rel));
        }
    }
    dirs
}

/// Remove the cgroup `path` and everything below it, in every hierarchy (children first, since
/// a cgroup directory is removed with rmdir). Missing directories are fine.
pub fn remove_tree(path: &str) {
    if path.trim_matches('/').is_empty() {
        return;
    }
    for dir in hierarchy_dirs(path) {
        remove_dir_depth_first(&dir);
    }
}

fn remove_dir_depth_first(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            remove_dir_depth_first(&e.path());
        }
    }
    if let Err(e) = std::fs::remove_dir(dir) {
        tracing::debug!(dir = %dir.display(), error = %e, "cgroup not removed");
    }
}

/// The agent's cgroup manager: node and QoS cgroups at start, each pod's cgroup before its
/// sandbox, the Burstable class's shares kept at the sum of its pods' cpu requests (upstream's
/// QoS container manager), and removal of a pod's cgroup when it is gone.
pub struct PodCgroups {
    root: String,
    version: Version,
    pod_max_pids: i64,
    /// Off in unit tests with a fake runtime: nothing is written to the host.
    enabled: bool,
    state: Mutex<QosState>,
}

#[derive(Default)]
struct QosState {
    /// Pod UID → cpu request (millicores) of the active Burstable pods.
    burstable: HashMap<String, i64>,
    /// The shares last written to the Burstable cgroup.
    written: Option<u64>,
}

impl PodCgroups {
    /// The manager for pods under `root` (e.g. `/kubepods`); `pod_max_pids` ≤ 0: unlimited.
    pub fn new(root: &str, pod_max_pids: i64) -> PodCgroups {
        PodCgroups {
            root: root.trim_end_matches('/').to_string(),
            version: Version::detect(),
            pod_max_pids,
            enabled: true,
            state: Mutex::default(),
        }
    }

    /// A manager that touches nothing (for unit tests against a fake runtime).
    pub fn disabled(root: &str) -> PodCgroups {
        PodCgroups {
            enabled: false,
            ..PodCgroups::new(root, -1)
        }
    }

    pub fn root(&self) -> &str {
        &self.root
    }

    /// The pod's cgroup (`<root>/<qos>/pod<uid>`), the parent of its sandbox and containers.
    pub fn pod_path(&self, pod: &Pod) -> String {
        let uid = pod.metadata.uid.as_deref().unwrap_or_default();
        pod_parent(&self.root, util::qos_class(pod), uid)
    }

    fn apply_logged(&self, path: &str, settings: &[Setting]) -> bool {
        if !self.enabled {
            return true;
        }
        match apply(self.version, path, settings) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(cgroup = %path, error = %e, "cgroup values not written");
                false
            }
        }
    }

    /// The node cgroup capped at the node's allocatable, and the QoS cgroups: BestEffort at the
    /// minimum shares, Burstable at its pods' requests (none yet).
    pub fn setup_node(&self, allocatable_milli_cpu: i64, allocatable_memory: i64) {
        self.apply_logged(
            &self.root,
            &node_settings(allocatable_milli_cpu, allocatable_memory, host_pid_limit()),
        );
        self.apply_logged(
            &format!("{}/besteffort", self.root),
            &[Setting::CpuShares(MIN_SHARES)],
        );
        self.update_burstable();
        tracing::info!(root = %self.root, version = ?self.version, "node and QoS cgroups ready");
    }

    /// Before the pod's sandbox starts: count it in its QoS class, then create its cgroup with
    /// the pod's values, so the sandbox and containers start under limits already in force.
    pub fn ensure_pod(&self, pod: &Pod) {
        let started = std::time::Instant::now();
        let uid = pod.metadata.uid.as_deref().unwrap_or_default();
        let qos = util::qos_class(pod);
        if qos == "Burstable" {
            self.lock()
                .burstable
                .insert(uid.to_string(), admission::pod_requests(pod).cpu);
            self.update_burstable();
        }
        let path = self.pod_path(pod);
        let settings = pod_settings(pod, self.pod_max_pids);
        if self.apply_logged(&path, &settings) {
            tracing::debug!(
                cgroup = %path,
                ?settings,
                elapsed_us = started.elapsed().as_micros() as u64,
                "pod cgroup ready"
            );
        }
    }

    /// The pod is gone: remove its cgroup (whichever QoS class it was in) and its share of the
    /// Burstable class.
    pub fn remove_pod(&self, uid: &str) {
        if self.enabled {
            for qos in ["Guaranteed", "Burstable", "BestEffort"] {
                remove_tree(&pod_parent(&self.root, qos, uid));
            }
        }
        if self.lock().burstable.remove(uid).is_some() {
            self.update_burstable();
        }
    }

    /// Recount the Burstable class from the node's active pods (upstream does so every minute):
    /// pods adopted after a restart join, finished pods leave.
    pub fn resync<'a>(&self, active: impl IntoIterator<Item = &'a Pod>) {
        let burstable: HashMap<String, i64> = active
            .into_iter()
            .filter(|p| util::qos_class(p) == "Burstable")
            .filter_map(|p| {
                let uid = p.metadata.uid.clone()?;
                Some((uid, admission::pod_requests(p).cpu))
            })
            .collect();
        self.lock().burstable = burstable;
        self.update_burstable();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, QosState> {
        // The state is plain data, valid even if a holder panicked.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Write the Burstable class's shares when they changed.
    fn update_burstable(&self) {
        let mut st = self.lock();
        let shares = milli_cpu_to_shares(st.burstable.values().sum());
        if st.written == Some(shares) {
            return;
        }
        if self.apply_logged(
            &format!("{}/burstable", self.root),
            &[Setting::CpuShares(shares)],
        ) {
            st.written = Some(shares);
        }
    }

    /// The Burstable class's shares as last computed (for tests).
    pub fn burstable_shares(&self) -> u64 {
        milli_cpu_to_shares(self.lock().burstable.values().sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p", "uid": "u1"}, "spec": spec}))
            .expect("pod")
    }

    fn c(name: &str, resources: serde_json::Value) -> serde_json::Value {
        json!({"name": name, "image": "busybox", "resources": resources})
    }

    fn rl(cpu: &str, mem: &str) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        if !cpu.is_empty() {
            m.insert("cpu".into(), json!(cpu));
        }
        if !mem.is_empty() {
            m.insert("memory".into(), json!(mem));
        }
        serde_json::Value::Object(m)
    }

    const MI: i64 = 1024 * 1024;

    #[test]
    fn pod_parents_follow_qos() {
        assert_eq!(
            pod_parent("/kubepods", "Guaranteed", "u1"),
            "/kubepods/podu1"
        );
        assert_eq!(
            pod_parent("/kubepods/", "Burstable", "u1"),
            "/kubepods/burstable/podu1"
        );
        assert_eq!(
            pod_parent("/x/kubepods", "BestEffort", "u1"),
            "/x/kubepods/besteffort/podu1"
        );
    }

    #[test]
    fn shares_quota_and_weight_conversions_match_the_kubelet_and_runc() {
        assert_eq!(milli_cpu_to_shares(0), 2);
        assert_eq!(milli_cpu_to_shares(1), 2);
        assert_eq!(milli_cpu_to_shares(250), 256);
        assert_eq!(milli_cpu_to_shares(1000), 1024);
        assert_eq!(milli_cpu_to_shares(10_000_000), MAX_SHARES);
        assert_eq!(milli_cpu_to_quota(0, QUOTA_PERIOD), 0);
        assert_eq!(milli_cpu_to_quota(250, QUOTA_PERIOD), 25_000);
        assert_eq!(milli_cpu_to_quota(5, QUOTA_PERIOD), 1000, "at least 1 ms");
        assert_eq!(milli_cpu_to_quota(2000, QUOTA_PERIOD), 200_000);
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(256), 10);
        assert_eq!(shares_to_weight(MAX_SHARES), 10_000);
        assert_eq!(shares_to_weight(0), 0);
    }

    #[test]
    fn guaranteed_pod_gets_shares_quota_and_memory_limit() {
        let p = pod(json!({"containers": [
            c("a", json!({"requests": rl("250m", "64Mi"), "limits": rl("250m", "64Mi")})),
            c("b", json!({"limits": rl("500m", "32Mi")})),
        ]}));
        assert_eq!(util::qos_class(&p), "Guaranteed");
        assert_eq!(
            pod_settings(&p, -1),
            vec![
                Setting::CpuShares(768),
                Setting::CpuMax {
                    quota: Some(75_000),
                    period: QUOTA_PERIOD
                },
                Setting::MemoryMax(Some(96 * MI)),
                Setting::PidsMax(None),
            ]
        );
    }

    #[test]
    fn burstable_pod_with_every_limit_is_capped_like_guaranteed() {
        let p = pod(json!({"containers": [
            c("a", json!({"requests": rl("100m", "16Mi"), "limits": rl("200m", "64Mi")})),
            c("b", json!({"requests": rl("50m", ""), "limits": rl("100m", "32Mi")})),
        ]}));
        assert_eq!(util::qos_class(&p), "Burstable");
        assert_eq!(
            pod_settings(&p, 1024),
            vec![
                Setting::CpuShares(153),
                Setting::CpuMax {
                    quota: Some(30_000),
                    period: QUOTA_PERIOD
                },
                Setting::MemoryMax(Some(96 * MI)),
                Setting::PidsMax(Some(1024)),
            ]
        );
    }

    #[test]
    fn burstable_pod_missing_a_limit_is_not_capped_on_that_resource() {
        // Container b has no cpu limit: no pod quota. Both have memory limits: a pod limit.
        let p = pod(json!({"containers": [
            c("a", json!({"requests": rl("100m", ""), "limits": rl("200m", "64Mi")})),
            c("b", json!({"requests": rl("100m", ""), "limits": rl("", "64Mi")})),
        ]}));
        let s = pod_settings(&p, -1);
        assert_eq!(s[0], Setting::CpuShares(204));
        assert_eq!(
            s[1],
            Setting::CpuMax {
                quota: None,
                period: QUOTA_PERIOD
            }
        );
        assert_eq!(s[2], Setting::MemoryMax(Some(128 * MI)));
        // An init container without a memory limit lifts the pod's memory limit too.
        let p = pod(json!({
            "initContainers": [c("i", json!({"requests": rl("10m", "")}))],
            "containers": [c("a", json!({"requests": rl("100m", ""), "limits": rl("200m", "64Mi")}))],
        }));
        let s = pod_settings(&p, -1);
        assert_eq!(
            s[1],
            Setting::CpuMax {
                quota: None,
                period: QUOTA_PERIOD
            }
        );
        assert_eq!(s[2], Setting::MemoryMax(None));
    }

    #[test]
    fn best_effort_pod_gets_minimum_shares_and_no_limits() {
        let p = pod(json!({"containers": [c("a", json!({}))]}));
        assert_eq!(util::qos_class(&p), "BestEffort");
        assert_eq!(
            pod_settings(&p, -1),
            vec![
                Setting::CpuShares(2),
                Setting::CpuMax {
                    quota: None,
                    period: QUOTA_PERIOD
                },
                Setting::MemoryMax(None),
                Setting::PidsMax(None),
            ]
        );
        // The pods limit applies to every class.
        assert_eq!(pod_settings(&p, 50)[3], Setting::PidsMax(Some(50)));
    }

    #[test]
    fn init_container_larger_than_the_app_containers_sets_the_pod_values() {
        let p = pod(json!({
            "initContainers": [c("init", json!({"requests": rl("1", "256Mi"), "limits": rl("1", "256Mi")}))],
            "containers": [
                c("a", json!({"requests": rl("100m", "32Mi"), "limits": rl("100m", "32Mi")})),
                c("b", json!({"requests": rl("100m", "32Mi"), "limits": rl("100m", "32Mi")})),
            ],
        }));
        assert_eq!(util::qos_class(&p), "Guaranteed");
        assert_eq!(
            pod_settings(&p, -1)[..3],
            [
                Setting::CpuShares(1024),
                Setting::CpuMax {
                    quota: Some(100_000),
                    period: QUOTA_PERIOD
                },
                Setting::MemoryMax(Some(256 * MI)),
            ]
        );
        // A sidecar counts next to the app containers and under each later init container.
        let p = pod(json!({
            "initContainers": [
                {"name": "side", "image": "busybox", "restartPolicy": "Always",
                 "resources": {"requests": rl("100m", "16Mi"), "limits": rl("100m", "16Mi")}},
                c("init", json!({"requests": rl("300m", "64Mi"), "limits": rl("300m", "64Mi")})),
            ],
            "containers": [c("a", json!({"requests": rl("100m", "32Mi"), "limits": rl("100m", "32Mi")}))],
        }));
        let limits = pod_limits(&p);
        assert_eq!((limits.cpu, limits.memory), (400, 80 * MI));
        assert!(limits.all_have_cpu && limits.all_have_memory);
    }

    #[test]
    fn overhead_adds_to_requests_and_to_declared_limits() {
        let p = pod(json!({
            "overhead": {"cpu": "50m", "memory": "10Mi"},
            "containers": [c("a", json!({"requests": rl("200m", "64Mi"), "limits": rl("200m", "64Mi")}))],
        }));
        assert_eq!(
            pod_settings(&p, -1)[..3],
            [
                Setting::CpuShares(256),
                Setting::CpuMax {
                    quota: Some(25_000),
                    period: QUOTA_PERIOD
                },
                Setting::MemoryMax(Some(74 * MI)),
            ]
        );
        // No limit to add to: the overhead does not make one.
        let p = pod(json!({
            "overhead": {"cpu": "50m", "memory": "10Mi"},
            "containers": [c("a", json!({"requests": rl("200m", "")}))],
        }));
        let limits = pod_limits(&p);
        assert_eq!((limits.cpu, limits.memory), (0, 0));
        assert_eq!(pod_settings(&p, -1)[0], Setting::CpuShares(256));
    }

    #[test]
    fn settings_map_to_v1_and_v2_files() {
        let files = |v: Version, s: Setting| -> Vec<(String, String, String)> {
            v.files(&s)
                .into_iter()
                .map(|w| (w.controller.into(), w.file.into(), w.value))
                .collect()
        };
        let t = |a: &str, b: &str, c: &str| (a.to_string(), b.to_string(), c.to_string());
        let quota = Setting::CpuMax {
            quota: Some(25_000),
            period: QUOTA_PERIOD,
        };
        let unlimited = Setting::CpuMax {
            quota: None,
            period: QUOTA_PERIOD,
        };
        assert_eq!(
            files(Version::V1, quota.clone()),
            vec![
                t("cpu", "cpu.cfs_period_us", "100000"),
                t("cpu", "cpu.cfs_quota_us", "25000")
            ]
        );
        assert_eq!(
            files(Version::V1, unlimited.clone())[1],
            t("cpu", "cpu.cfs_quota_us", "-1")
        );
        assert_eq!(
            files(Version::V2, quota),
            vec![t("", "cpu.max", "25000 100000")]
        );
        assert_eq!(
            files(Version::V2, unlimited),
            vec![t("", "cpu.max", "max 100000")]
        );
        assert_eq!(
            files(Version::V1, Setting::CpuShares(256)),
            vec![t("cpu", "cpu.shares", "256")]
        );
        assert_eq!(
            files(Version::V2, Setting::CpuShares(2)),
            vec![t("", "cpu.weight", "1")]
        );
        assert_eq!(
            files(Version::V1, Setting::MemoryMax(Some(67_108_864))),
            vec![t("memory", "memory.limit_in_bytes", "67108864")]
        );
        assert_eq!(
            files(Version::V1, Setting::MemoryMax(None)),
            vec![t("memory", "memory.limit_in_bytes", "-1")]
        );
        assert_eq!(
            files(Version::V2, Setting::MemoryMax(None)),
            vec![t("", "memory.max", "max")]
        );
        assert_eq!(
            files(Version::V1, Setting::PidsMax(None)),
            vec![t("pids", "pids.max", "max")]
        );
        assert_eq!(
            files(Version::V2, Setting::PidsMax(Some(100))),
            vec![t("", "pids.max", "100")]
        );
    }

    #[test]
    fn apply_writes_each_hierarchys_files_and_v2_delegates_controllers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let settings = [
            Setting::CpuShares(256),
            Setting::CpuMax {
                quota: Some(25_000),
                period: QUOTA_PERIOD,
            },
            Setting::MemoryMax(Some(64 * MI)),
            Setting::PidsMax(None),
        ];
        apply_at(dir.path(), Version::V1, "/kubepods/podu1", &settings).expect("v1");
        let read = |p: &str| std::fs::read_to_string(dir.path().join(p)).expect(p);
        assert_eq!(read("cpu/kubepods/podu1/cpu.shares"), "256");
        assert_eq!(read("cpu/kubepods/podu1/cpu.cfs_quota_us"), "25000");
        assert_eq!(
            read("memory/kubepods/podu1/memory.limit_in_bytes"),
            "67108864"
        );
        assert_eq!(read("pids/kubepods/podu1/pids.max"), "max");

        let v2 = dir.path().join("v2");
        std::fs::create_dir_all(&v2).expect("v2");
        apply_at(&v2, Version::V2, "/kubepods/burstable/podu2", &settings).expect("v2");
        let read = |p: &str| std::fs::read_to_string(v2.join(p)).expect(p);
        assert_eq!(read("kubepods/burstable/podu2/cpu.weight"), "10");
        assert_eq!(read("kubepods/burstable/podu2/cpu.max"), "25000 100000");
        assert_eq!(read("kubepods/burstable/podu2/memory.max"), "67108864");
        // A plain directory keeps only the last write; the kernel takes each "+controller".
        assert_eq!(read("kubepods/burstable/cgroup.subtree_control"), "+pids");
        assert!(v2.join("cgroup.subtree_control").exists());
    }

    #[test]
    fn burstable_class_shares_follow_its_pods() {
        let cg = PodCgroups::disabled("/kubepods");
        let burstable = |uid: &str, cpu: &str| -> Pod {
            serde_json::from_value(json!({
                "metadata": {"name": uid, "uid": uid},
                "spec": {"containers": [c("a", json!({"requests": rl(cpu, "")}))]},
            }))
            .expect("pod")
        };
        assert_eq!(cg.burstable_shares(), 2);
        cg.ensure_pod(&burstable("a", "500m"));
        cg.ensure_pod(&burstable("b", "250m"));
        // Other classes do not count.
        cg.ensure_pod(&pod(json!({"containers": [c("x", json!({}))]})));
        assert_eq!(cg.burstable_shares(), 768);
        cg.remove_pod("a");
        assert_eq!(cg.burstable_shares(), 256);
        let (a, b) = (burstable("a", "1"), burstable("c", "2"));
        cg.resync([&a, &b]);
        assert_eq!(cg.burstable_shares(), 3072);
    }
}
