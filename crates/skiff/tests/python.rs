//! The official Kubernetes Python client (pinned `kubernetes==32.0.1`) against a real
//! `skiff server`: CRUD, selectors, watches from a resourceVersion, errors, patches, and 410
//! after compaction. Each script lives in `tests/python/` and exits non-zero on a failed check.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::Server;

/// The virtualenv python with the pinned client: `SKIFF_TEST_PYTHON` (set by scripts/test.sh),
/// or locally `target/py-venv/bin/python`. Under CI the variable is required, so a missing
/// client fails the run instead of silently skipping it.
fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("SKIFF_TEST_PYTHON").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    assert!(
        !ci,
        "SKIFF_TEST_PYTHON is not set: under CI the Python client tests must run (scripts/test.sh sets it)"
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let venv = root.join("target/py-venv/bin/python");
    assert!(
        venv.exists(),
        "no Python client: set SKIFF_TEST_PYTHON or create the venv with \
         `python3 -m venv target/py-venv && target/py-venv/bin/pip install kubernetes==32.0.1`"
    );
    venv
}

/// Run one script against `server`; fail with its output unless it exits 0.
fn run_script(server: &Server, script: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python");
    let out = Command::new(python())
        .arg(dir.join(script))
        .arg(&server.kubeconfig)
        .current_dir(&dir)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "{script} failed ({}):\n--- stdout\n{}\n--- stderr\n{}\n--- server log (tail)\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        tail(&server.log(), 40),
    );
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[test]
fn python_crud_on_several_kinds() {
    run_script(&Server::start(), "crud.py");
}

#[test]
fn python_list_with_label_and_field_selectors() {
    run_script(&Server::start(), "list_select.py");
}

#[test]
fn python_watch_from_resource_version_is_ordered() {
    run_script(&Server::start(), "watch_from_rv.py");
}

#[test]
fn python_errors_conflict_already_exists_not_found_invalid() {
    run_script(&Server::start(), "errors.py");
}

#[test]
fn python_patches_strategic_json_and_merge() {
    run_script(&Server::start(), "patch.py");
}

/// COMPACTION: needs the server's `--compaction-interval` flag (compacts every interval to the
/// revision seen one interval earlier).
#[test]
fn python_compaction_watch_from_compacted_rv_gets_410() {
    run_script(
        &Server::start_with(&["--compaction-interval", "1"]),
        "compaction_410.py",
    );
}
