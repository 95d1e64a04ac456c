//! A local cluster (`skiff cluster up`) for host tests, taken down when dropped (also on
//! failure). Root only: `skip_reason` says why a test cannot run here.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{KUBECTL_133, Kubectl};

pub fn skip_reason() -> Option<&'static str> {
    let root = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"));
    if !root {
        return Some("needs root");
    }
    if !Path::new("/usr/lib/cni/bridge").exists() || !Path::new("/bin/busybox").exists() {
        return Some("needs containernetworking-plugins and busybox-static");
    }
    None
}

/// A cluster built by `skiff cluster up`, taken down when dropped.
pub struct Cluster {
    /// Held for the cluster's lifetime: host tests build one cluster at a time, so several
    /// 3-node clusters (12 processes each) never compete for the machine's two cores at once.
    _one_at_a_time: std::sync::MutexGuard<'static, ()>,
    pub name: String,
    pub dir: PathBuf,
    pub kubectl: Kubectl,
    /// Scratch space the cluster dir and images live in; removed after the cluster.
    pub scratch: tempfile::TempDir,
}

pub fn skiff(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args(args)
        .output()
        .expect("run skiff")
}

impl Cluster {
    pub fn up(name: &str, nodes: usize, pod_network: &str) -> Cluster {
        Cluster::up_with(name, nodes, pod_network, &[])
    }

    /// As `up`, with extra `skiff cluster up` flags (e.g. `--server-arg=...`).
    pub fn up_with(name: &str, nodes: usize, pod_network: &str, extra: &[&str]) -> Cluster {
        static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
        // A test that failed while holding it poisons it; the next one may still run.
        let guard = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let scratch = tempfile::tempdir().expect("tempdir");
        let images = scratch.path().join("images");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/busybox-image.sh");
        let out = Command::new(script)
            .arg(&images)
            .output()
            .expect("busybox-image.sh");
        assert!(out.status.success(), "busybox-image.sh: {out:?}");
        let dir = scratch.path().join("cluster");
        let dir_s = dir.display().to_string();
        let nodes_s = nodes.to_string();
        let images_s = images.display().to_string();
        let mut args = vec![
            "cluster",
            "up",
            "--name",
            name,
            "--dir",
            &dir_s,
            "--nodes",
            &nodes_s,
            "--pod-network",
            pod_network,
            "--images",
            &images_s,
        ];
        args.extend_from_slice(extra);
        let cluster = Cluster {
            _one_at_a_time: guard,
            name: name.into(),
            kubectl: Kubectl {
                binary: KUBECTL_133.into(),
                kubeconfig: dir.join("server/kubeconfig.yaml"),
                cache: scratch.path().join("kcache"),
            },
            dir,
            scratch,
        };
        let out = skiff(&args);
        assert!(
            out.status.success(),
            "cluster up: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("kubeconfig="), "{stdout}");
        cluster
    }

    pub fn node(&self, i: usize) -> String {
        format!("{}-node-{i}", self.name)
    }

    pub fn dir_arg(&self) -> String {
        self.dir.display().to_string()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let out = skiff(&[
            "cluster",
            "down",
            "--name",
            &self.name,
            "--dir",
            &self.dir_arg(),
        ]);
        if !out.status.success() {
            eprintln!("cluster down: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
}
