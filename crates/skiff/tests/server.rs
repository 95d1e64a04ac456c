//! The `skiff server` process itself: its help, its kubeconfig, and a clean exit on SIGTERM.

mod support;

use std::process::Command;
use std::time::Duration;

use support::{KUBECTL_133, Server, eventually};

#[test]
fn help_documents_every_server_flag() {
    let out = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args(["server", "--help"])
        .output()
        .expect("run skiff");
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--data-dir",
        "--bind-address",
        "--https-listen-port",
        "--disable-agent",
        "--tls-san",
        "--compaction-interval",
    ] {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
    }
    assert!(
        help.contains("/var/lib/skiff") && help.contains("6443"),
        "{help}"
    );
}

#[test]
fn sigterm_stops_the_server_cleanly_and_state_survives() {
    let mut server = Server::start();
    let k = server.kubectl(KUBECTL_133);
    k.ok(&["create", "namespace", "kept"]);
    let pid = server.child.id().to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
    let exit = eventually(Duration::from_secs(15), "the server to exit", || {
        server.child.try_wait().expect("try_wait")
    });
    assert!(exit.success(), "exit status {exit:?}\n{}", server.log());
    let dir = server.kill();
    let server = Server::start_in(dir);
    let k = server.kubectl(KUBECTL_133);
    k.ok(&["get", "namespace", "kept"]);
}

#[test]
fn requests_without_credentials_are_unauthorized() {
    let server = Server::start();
    let url = format!("https://127.0.0.1:{}/api/v1/namespaces", server.port);
    let out = Command::new("curl")
        .args(["-sk", "-o", "/dev/null", "-w", "%{http_code}", &url])
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "401");
    let version = format!("https://127.0.0.1:{}/version", server.port);
    let out = Command::new("curl")
        .args(["-sk", &version])
        .output()
        .expect("curl");
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"gitVersion\""));
}

#[test]
fn aggregated_discovery_has_an_etag_and_answers_304_to_it() {
    let server = Server::start();
    let c = server.credentials();
    let accept = "Accept: application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";
    let curl = |extra: &[&str]| -> String {
        let out = Command::new("curl")
            .args(["-s", "--http1.1", "-D", "-", "-o", "/dev/null", "--cacert"])
            .arg(&c.ca)
            .arg("--cert")
            .arg(&c.cert)
            .arg("--key")
            .arg(&c.key)
            .args(["-H", accept])
            .args(extra)
            .arg(format!("{}/apis", c.base))
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let first = curl(&[]);
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    let etag = first
        .lines()
        .find_map(|l| l.strip_prefix("etag: "))
        .map(str::trim)
        .expect("an ETag header")
        .to_string();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
    let again = curl(&["-H", &format!("If-None-Match: {etag}")]);
    assert!(again.starts_with("HTTP/1.1 304"), "{again}");
}
