//! The CNI network config for this node's podCIDR: Debian's containernetworking-plugins bridge
//! (hairpin on) with host-local IPAM, plus portmap for hostPorts. containerd's CRI plugin adds
//! the loopback plugin itself, from the same bin dir.

use std::path::{Path, PathBuf};

use serde_json::json;

/// The file the config is written to; containerd's conf syncer picks it up live.
pub const CONF_FILE: &str = "10-skiff.conflist";

/// The network name; libcni keys its result cache by it.
pub const NETWORK: &str = "skiff";

/// The conflist for `pod_cidr`, keeping host-local's allocations in `ipam_dir`.
pub fn conflist(pod_cidr: &str, ipam_dir: &Path) -> serde_json::Value {
    json!({
        "cniVersion": "1.0.0",
        "name": NETWORK,
        "plugins": [
            {
                "type": "bridge",
                "bridge": "cni0",
                "isGateway": true,
                // Pod-to-external SNAT belongs to the agent's nftables rules (DESIGN.md §7),
                // not to per-pod iptables chains.
                "ipMasq": false,
                // Without hairpin a pod cannot reach itself through its own Service.
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "dataDir": ipam_dir.display().to_string(),
                    "ranges": [[{"subnet": pod_cidr}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true},
        ],
    })
}

/// Write the conflist into `conf_dir` (only when it changed, so containerd does not reload).
pub fn write(conf_dir: &Path, pod_cidr: &str, ipam_dir: &Path) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(conf_dir)?;
    std::fs::create_dir_all(ipam_dir)?;
    let path = conf_dir.join(CONF_FILE);
    let text = serde_json::to_string_pretty(&conflist(pod_cidr, ipam_dir))
        .map_err(std::io::Error::other)?;
    if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
        // Write then rename: the conf syncer must never read half a file.
        let tmp = conf_dir.join(format!(".{CONF_FILE}.tmp"));
        std::fs::write(&tmp, &text)?;
        std::fs::rename(&tmp, &path)?;
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflist_uses_the_pod_cidr_and_hairpin() {
        let c = conflist("10.244.3.0/24", Path::new("/d/ipam"));
        assert_eq!(c["plugins"][0]["type"], "bridge");
        assert_eq!(c["plugins"][0]["hairpinMode"], true);
        assert_eq!(
            c["plugins"][0]["ipam"]["ranges"][0][0]["subnet"],
            "10.244.3.0/24"
        );
        assert_eq!(c["plugins"][0]["ipam"]["dataDir"], "/d/ipam");
        assert_eq!(c["plugins"][1]["type"], "portmap");
    }

    #[test]
    fn write_is_idempotent() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = write(&dir.path().join("net.d"), "10.244.0.0/24", dir.path()).expect("write");
        let before = std::fs::metadata(&p)
            .expect("meta")
            .modified()
            .expect("mtime");
        std::thread::sleep(std::time::Duration::from_millis(20));
        write(&dir.path().join("net.d"), "10.244.0.0/24", dir.path()).expect("write");
        let after = std::fs::metadata(&p)
            .expect("meta")
            .modified()
            .expect("mtime");
        assert_eq!(before, after);
    }
}
