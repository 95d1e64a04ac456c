//! The locally built pause image: a docker-archive whose one layer holds Debian's static busybox
//! and whose entrypoint is `busybox sleep inf`, so no sandbox ever needs a registry.

use std::path::Path;

use sha2::{Digest, Sha256};

/// The sandbox image name the agent configures containerd with.
pub const PAUSE_IMAGE: &str = "registry.k8s.io/pause:3.6";

/// Errors of building the pause image.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading {path}: {source} (install busybox-static)")]
    Busybox {
        path: String,
        source: std::io::Error,
    },
}

/// Build the pause image archive from the static busybox at `busybox`.
pub fn pause_archive(busybox: &Path) -> Result<Vec<u8>, Error> {
    let binary = std::fs::read(busybox).map_err(|source| Error::Busybox {
        path: busybox.display().to_string(),
        source,
    })?;
    let mut layer = Vec::new();
    entry(&mut layer, "bin/", 0o755, b'5', &[]);
    entry(&mut layer, "bin/busybox", 0o755, b'0', &binary);
    finish(&mut layer);
    let diff_id = format!("sha256:{:x}", Sha256::digest(&layer));
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": ["/bin/busybox", "sleep", "inf"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    });
    let manifest = serde_json::json!([{
        "Config": "config.json",
        "RepoTags": [PAUSE_IMAGE],
        "Layers": ["layer.tar"],
    }]);
    let mut archive = Vec::new();
    entry(
        &mut archive,
        "manifest.json",
        0o644,
        b'0',
        manifest.to_string().as_bytes(),
    );
    entry(
        &mut archive,
        "config.json",
        0o644,
        b'0',
        config.to_string().as_bytes(),
    );
    entry(&mut archive, "layer.tar", 0o644, b'0', &layer);
    finish(&mut archive);
    Ok(archive)
}

/// Append one ustar entry (a regular file `0` or a directory `5`) owned by root, mtime 0.
fn entry(out: &mut Vec<u8>, name: &str, mode: u32, kind: u8, data: &[u8]) {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    let octal = |h: &mut [u8; 512], at: usize, width: usize, value: u64| {
        let s = format!("{value:0w$o}", w = width - 1);
        h[at..at + width - 1].copy_from_slice(s.as_bytes());
    };
    octal(&mut h, 100, 8, u64::from(mode));
    octal(&mut h, 108, 8, 0);
    octal(&mut h, 116, 8, 0);
    octal(&mut h, 124, 12, data.len() as u64);
    octal(&mut h, 136, 12, 0);
    h[156] = kind;
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    // The checksum is computed with its own field read as spaces.
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(data);
    let pad = (512 - data.len() % 512) % 512;
    out.extend(std::iter::repeat_n(0u8, pad));
}

fn finish(out: &mut Vec<u8>) {
    out.extend(std::iter::repeat_n(0u8, 1024));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pause_archive_is_a_docker_archive_tar_understands() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fake = dir.path().join("busybox");
        std::fs::write(&fake, b"#!fake busybox\n").expect("write");
        let bytes = pause_archive(&fake).expect("archive");
        let tar = dir.path().join("pause.tar");
        std::fs::write(&tar, &bytes).expect("write");
        let out = std::process::Command::new("tar")
            .arg("tf")
            .arg(&tar)
            .output()
            .expect("run tar");
        assert!(out.status.success(), "{out:?}");
        let names = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            names.lines().collect::<Vec<_>>(),
            ["manifest.json", "config.json", "layer.tar"]
        );
        let x = std::process::Command::new("tar")
            .arg("xf")
            .arg(&tar)
            .arg("-C")
            .arg(dir.path())
            .output()
            .expect("extract");
        assert!(x.status.success());
        let layer = std::process::Command::new("tar")
            .arg("tvf")
            .arg(dir.path().join("layer.tar"))
            .output()
            .expect("list layer");
        let listing = String::from_utf8_lossy(&layer.stdout);
        assert!(listing.contains("bin/busybox"), "{listing}");
        assert!(listing.contains("-rwxr-xr-x"), "{listing}");
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("manifest.json")).expect("read"))
                .expect("json");
        assert_eq!(manifest[0]["RepoTags"][0], PAUSE_IMAGE);
    }
}
