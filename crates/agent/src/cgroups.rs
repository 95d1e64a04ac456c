//! Pod cgroups on cgroupfs (v1 hybrid on these machines): the parent path a pod's sandbox and
//! containers go under, and removal of what containerd leaves behind.

use std::path::{Path, PathBuf};

/// Where the cgroup hierarchies are mounted.
const CGROUP_FS: &str = "/sys/fs/cgroup";

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

/// Every hierarchy directory a cgroup `path` has (one per v1 controller mount and the unified
/// one), whether or not it exists.
fn hierarchy_dirs(path: &str) -> Vec<PathBuf> {
    let rel = path.trim_start_matches('/');
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
