//! Running nft scripts: `nft -f -`, optionally inside another network namespace through
//! `nsenter --net=PATH` (which, unlike `ip netns exec`, takes any netns path and needs no
//! mount namespace of its own).

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// A failed nft run.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    /// nft rejected the script; `line` is the script line it named, when it named one.
    #[error("nft failed ({status}): {stderr}{}", line.as_ref().map(|(n, l)| format!(" [script line {n}: {l}]")).unwrap_or_default())]
    Nft {
        status: String,
        stderr: String,
        line: Option<(usize, String)>,
    },
}

/// Where and how scripts are applied.
#[derive(Debug, Clone)]
pub struct Applier {
    /// The nft binary.
    pub nft: PathBuf,
    /// A network namespace file (`/run/netns/NAME`, `/proc/PID/ns/net`); `None`: our own.
    pub netns: Option<PathBuf>,
}

impl Default for Applier {
    fn default() -> Applier {
        Applier {
            nft: PathBuf::from("nft"),
            netns: None,
        }
    }
}

impl Applier {
    /// An applier for the network namespace at `path`.
    pub fn in_netns(path: impl Into<PathBuf>) -> Applier {
        Applier {
            netns: Some(path.into()),
            ..Applier::default()
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        match &self.netns {
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net={}", ns.display())).arg(&self.nft);
                c.args(args);
                c
            }
            None => {
                let mut c = Command::new(&self.nft);
                c.args(args);
                c
            }
        }
    }

    /// Apply `script` as one transaction. Blocking: async callers use `spawn_blocking`.
    pub fn apply(&self, script: &str) -> Result<(), ApplyError> {
        if script.is_empty() {
            return Ok(());
        }
        let mut cmd = self.command(&["-f", "-"]);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let program = format!("{:?}", cmd.get_program());
        let mut child = cmd.spawn().map_err(|source| ApplyError::Spawn {
            program: program.clone(),
            source,
        })?;
        if let Some(mut stdin) = child.stdin.take() {
            // A write error means nft exited early; its status and stderr say why.
            let _ = stdin.write_all(script.as_bytes());
        }
        let out = child
            .wait_with_output()
            .map_err(|source| ApplyError::Spawn { program, source })?;
        if out.status.success() {
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        let line = error_line(&stderr).and_then(|n| {
            script
                .lines()
                .nth(n.saturating_sub(1))
                .map(|l| (n, l.to_string()))
        });
        Err(ApplyError::Nft {
            status: out.status.to_string(),
            stderr,
            line,
        })
    }

    /// `nft list table ip skiff-proxy` (for tests and debugging); `None` when it does not exist.
    pub fn list_table(&self) -> Option<String> {
        let out = self
            .command(&["list", "table", "ip", crate::script::TABLE])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// The line nft's error names: `/dev/stdin:12:5-9: Error: …` (or `-:12:…`).
pub fn error_line(stderr: &str) -> Option<usize> {
    stderr.lines().find_map(|l| {
        let rest = l
            .strip_prefix("/dev/stdin:")
            .or_else(|| l.strip_prefix("-:"))?;
        rest.split(':').next()?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_line_is_read_from_nft_stderr() {
        let e = "/dev/stdin:3:1-4: Error: syntax error, unexpected junk\njunk\n^^^^";
        assert_eq!(error_line(e), Some(3));
        assert_eq!(error_line("Error: Could not process rule"), None);
    }
}
