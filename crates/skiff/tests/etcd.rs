//! `skiff server --datastore-endpoint` on a real etcd: kubectl create/get/watch/delete through
//! one server, a second server on the same etcd sees the objects and its writes reach the first
//! server's watchers, a dead etcd gives kubectl a clear 503 rather than a hang, and killing the
//! etcd leader (SIGKILL) during writes through the API loses no acknowledged write.

mod support;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::etcd_support::Etcd;
use support::{KUBECTL_133, Kubectl, eventually};

/// A `skiff server` on etcd, killed when dropped.
struct EtcdServer {
    child: Child,
    dir: tempfile::TempDir,
    log: PathBuf,
}

impl EtcdServer {
    fn start(endpoints: &[String]) -> EtcdServer {
        EtcdServer::start_with(endpoints, &[])
    }

    fn start_with(endpoints: &[String], extra: &[&str]) -> EtcdServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("server.log");
        let log_file = std::fs::File::create(&log).expect("log file");
        let mut child = Command::new(env!("CARGO_BIN_EXE_skiff"))
            .args([
                "server",
                "--disable-agent",
                "--https-listen-port",
                "0",
                "--datastore-endpoint",
                &endpoints.join(","),
                "--data-dir",
            ])
            .arg(dir.path())
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .expect("spawn skiff server");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read ready line");
        assert!(
            line.starts_with("skiff server ready:"),
            "server on etcd did not start: {line:?}\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        EtcdServer { child, dir, log }
    }

    fn kubectl(&self) -> Kubectl {
        Kubectl {
            binary: KUBECTL_133.to_owned(),
            kubeconfig: self.dir.path().join("kubeconfig.yaml"),
            cache: self.dir.path().join("cache"),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Kills a spawned kubectl when dropped.
struct Spawned(Child);

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn two_servers_share_objects_and_watches_through_etcd() {
    let etcd = Etcd::single();
    let a = EtcdServer::start(&etcd.endpoints());
    let ka = a.kubectl();
    ka.ok(&["create", "configmap", "one", "--from-literal=k=v1"]);
    let got = ka.ok(&["get", "configmap", "one", "-o", "jsonpath={.data.k}"]);
    assert_eq!(got, "v1");

    let watch_out = a.dir.path().join("watch.txt");
    let _watch = Spawned(ka.spawn(&["get", "configmaps", "--watch", "-o", "name"], &watch_out));
    let seen = |name: &str| {
        std::fs::read_to_string(&watch_out)
            .unwrap_or_default()
            .lines()
            .any(|l| l.trim() == format!("configmap/{name}"))
    };
    eventually(Duration::from_secs(20), "the watch lists `one`", || {
        seen("one").then_some(())
    });
    ka.ok(&["create", "configmap", "two", "--from-literal=k=v2"]);
    eventually(Duration::from_secs(20), "the watch sees `two`", || {
        seen("two").then_some(())
    });
    ka.ok(&["delete", "configmap", "one"]);
    let stderr = ka.fails(&["get", "configmap", "one"]);
    assert!(
        stderr.contains("NotFound") || stderr.contains("not found"),
        "{stderr}"
    );

    // A second server with its own data dir on the same etcd sees the same objects...
    let b = EtcdServer::start(&etcd.endpoints());
    let kb = b.kubectl();
    let names = kb.ok(&["get", "configmaps", "-o", "name"]);
    assert!(names.contains("configmap/two"), "{names}\n{}", b.log());
    assert!(!names.contains("configmap/one"), "{names}");
    let rv_a = ka.ok(&[
        "get",
        "configmap",
        "two",
        "-o",
        "jsonpath={.metadata.resourceVersion}",
    ]);
    let rv_b = kb.ok(&[
        "get",
        "configmap",
        "two",
        "-o",
        "jsonpath={.metadata.resourceVersion}",
    ]);
    assert_eq!(rv_a, rv_b, "both servers report etcd's revision");
    // ...and its writes reach the first server's watchers.
    kb.ok(&["create", "configmap", "three", "--from-literal=k=v3"]);
    eventually(
        Duration::from_secs(20),
        "server A's watch sees a write through server B",
        || seen("three").then_some(()),
    );
    // Both servers issue certificates from the one cluster CA kept in etcd: A's admin
    // kubeconfig is accepted by B, and B's serving certificate verifies against A's CA.
    let b_config =
        std::fs::read_to_string(b.dir.path().join("kubeconfig.yaml")).expect("kubeconfig");
    let b_url = b_config
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: "))
        .expect("server URL")
        .to_string();
    let through_b = ka.ok(&[
        "--server",
        &b_url,
        "get",
        "configmap",
        "three",
        "-o",
        "name",
    ]);
    assert_eq!(through_b.trim(), "configmap/three");
    // The join token is the cluster's too: nodes may join through either server.
    let token = |s: &EtcdServer| {
        std::fs::read_to_string(s.dir.path().join("server/node-token")).expect("node-token")
    };
    assert_eq!(token(&a), token(&b));
    assert!(token(&a).starts_with("K10"), "{}", token(&a));
    drop(b);
    drop(a);
    drop(etcd);
}

#[test]
fn dead_etcd_gives_a_503_naming_the_datastore_not_a_hang() {
    let etcd = Etcd::single();
    let server = EtcdServer::start(&etcd.endpoints());
    let kubectl = server.kubectl();
    kubectl.ok(&["create", "configmap", "before", "--from-literal=k=v"]);
    drop(etcd);
    let started = Instant::now();
    let run = kubectl.run(&["create", "configmap", "after", "--from-literal=k=v"]);
    let took = started.elapsed();
    assert_ne!(run.status, 0, "a write without etcd cannot succeed");
    assert!(
        run.stderr.contains("datastore") && run.stderr.contains("unavailable"),
        "stderr: {}\n{}",
        run.stderr,
        server.log()
    );
    // kubectl retries 503s a few times itself; each try is bounded by the store's 10 s.
    assert!(took < Duration::from_secs(60), "took {took:?}");
    eprintln!("kubectl failed after {took:?}: {}", run.stderr.trim());
}

/// The `cm-NNN` names in the ADDED events of a `kubectl get --watch --output-watch-events -o
/// json` output, in the order they arrived.
fn watched_additions(path: &std::path::Path) -> Vec<usize> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    serde_json::Deserializer::from_str(&text)
        .into_iter::<serde_json::Value>()
        .map_while(Result::ok)
        .filter(|e| e["type"] == "ADDED")
        .filter_map(|e| {
            e["object"]["metadata"]["name"]
                .as_str()
                .and_then(|n| n.strip_prefix("cm-"))
                .and_then(|n| n.parse().ok())
        })
        .collect()
}

#[test]
fn killing_the_etcd_leader_during_api_writes_loses_no_acknowledged_write() {
    let mut etcd = Etcd::cluster(3);
    let a = EtcdServer::start(&etcd.all_endpoints());
    let b = EtcdServer::start(&etcd.all_endpoints());
    let (ka, kb) = (a.kubectl(), b.kubectl());
    // A watch on each server, recorded from before the first write.
    let watch_args = [
        "get",
        "configmaps",
        "--watch",
        "--output-watch-events",
        "-o",
        "json",
    ];
    let (wa, wb) = (
        a.dir.path().join("watch.json"),
        b.dir.path().join("watch.json"),
    );
    let _watch_a = Spawned(ka.spawn(&watch_args, &wa));
    let _watch_b = Spawned(kb.spawn(&watch_args, &wb));
    ka.ok(&["create", "configmap", "cm-000", "--from-literal=k=v"]);
    for w in [&wa, &wb] {
        eventually(Duration::from_secs(20), "both watches are running", || {
            (watched_additions(w) == [0]).then_some(())
        });
    }
    let mut acked = vec![0];
    let mut failed = Vec::new();
    let mut killed_at = None;
    let mut resumed_after = None;
    for i in 1..40 {
        if i == 15 {
            let leader = etcd.leader().expect("the cluster has a leader");
            etcd.kill9(leader);
            killed_at = Some(Instant::now());
        }
        // Writes alternate between the two API servers.
        let kubectl = if i % 2 == 0 { &ka } else { &kb };
        let name = format!("cm-{i:03}");
        let run = kubectl.run(&["create", "configmap", &name, "--from-literal=k=v"]);
        if run.status == 0 {
            if let (Some(at), None) = (killed_at, resumed_after) {
                resumed_after = Some(at.elapsed());
            }
            acked.push(i);
        } else {
            failed.push((name, run.stderr));
        }
    }
    let listed = kb.ok(&["get", "configmaps", "-o", "name"]);
    for i in &acked {
        assert!(
            listed
                .lines()
                .any(|l| l.trim() == format!("configmap/cm-{i:03}")),
            "acknowledged cm-{i:03} is missing\n{listed}\n{}",
            a.log()
        );
    }
    // Every watch sees every acknowledged write once, in the order the writes happened; a write
    // whose outcome was unknown to its client may appear, also at most once and in order.
    let last = *acked.last().expect("writes were acknowledged");
    for (w, server) in [(&wa, &a), (&wb, &b)] {
        let seen = eventually(Duration::from_secs(30), "the watch catches up", || {
            let seen = watched_additions(w);
            seen.contains(&last).then_some(seen)
        });
        assert!(
            seen.windows(2).all(|p| p[0] < p[1]),
            "out of order or repeated: {seen:?}\n{}",
            server.log()
        );
        for i in &acked {
            assert!(
                seen.contains(i),
                "cm-{i:03} never reached a watch: {seen:?}"
            );
        }
    }
    let resumed_after = resumed_after.expect("writes resumed after the leader died");
    assert!(
        resumed_after < Duration::from_secs(10),
        "writes resumed only after {resumed_after:?}"
    );
    eprintln!(
        "{} writes acknowledged, {} failed {:?}; first success {resumed_after:?} after the kill",
        acked.len(),
        failed.len(),
        failed
    );
    drop((a, b));
    drop(etcd);
}

/// The holder of a Lease in kube-system, as kubectl shows it.
fn lease_holder(k: &Kubectl, name: &str) -> Option<String> {
    let run = k.run(&[
        "get",
        "lease",
        "-n",
        "kube-system",
        name,
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ]);
    (run.status == 0 && !run.stdout.trim().is_empty()).then(|| run.stdout.trim().to_string())
}

#[test]
fn controllers_and_scheduler_run_in_one_server_and_move_when_it_dies() {
    let etcd = Etcd::single();
    // Short leases so the takeover after a SIGKILL fits a test.
    let fast = [
        "--leader-elect-lease-duration",
        "4s",
        "--leader-elect-renew-deadline",
        "3s",
        "--leader-elect-retry-period",
        "500ms",
    ];
    let a = EtcdServer::start_with(&etcd.endpoints(), &fast);
    let ka = a.kubectl();
    let first = eventually(Duration::from_secs(30), "server A leads", || {
        lease_holder(&ka, "kube-controller-manager")
    });
    eventually(Duration::from_secs(30), "the scheduler's lease", || {
        lease_holder(&ka, "kube-scheduler")
    });
    let b = EtcdServer::start_with(&etcd.endpoints(), &fast);
    let kb = b.kubectl();
    // B is a candidate only: its log never says it leads while A renews.
    ka.ok(&[
        "create",
        "deployment",
        "web",
        "--image=busybox",
        "--replicas=2",
    ]);
    let pods = |k: &Kubectl| {
        k.ok(&["get", "pods", "-l", "app=web", "-o", "name"])
            .lines()
            .count()
    };
    eventually(Duration::from_secs(30), "two pods", || {
        (pods(&kb) == 2).then_some(())
    });
    // One controller manager acted: one ReplicaSet, and no surplus pods after a while of both
    // servers running.
    let watched = Instant::now();
    while watched.elapsed() < Duration::from_secs(2) {
        assert_eq!(pods(&kb), 2, "a second controller manager doubled the pods");
    }
    let sets = kb.ok(&["get", "replicasets", "-o", "name"]);
    assert_eq!(sets.lines().count(), 1, "{sets}");
    assert_eq!(
        lease_holder(&kb, "kube-controller-manager").as_deref(),
        Some(first.as_str())
    );
    assert!(
        !b.log().contains("became leader"),
        "server B led while A held the lease:\n{}",
        b.log()
    );

    // SIGKILL the leader: B takes over once the lease expires, and its controllers act.
    drop(a);
    let second = eventually(Duration::from_secs(30), "B takes the lease", || {
        lease_holder(&kb, "kube-controller-manager").filter(|h| *h != first)
    });
    eventually(Duration::from_secs(30), "B's scheduler leads too", || {
        lease_holder(&kb, "kube-scheduler").filter(|h| *h != first)
    });
    assert!(b.log().contains("became leader"), "{}", b.log());
    kb.ok(&["scale", "deployment", "web", "--replicas=3"]);
    eventually(
        Duration::from_secs(30),
        "the new leader scales to three",
        || (pods(&kb) == 3).then_some(()),
    );
    let transitions = kb.ok(&[
        "get",
        "lease",
        "-n",
        "kube-system",
        "kube-controller-manager",
        "-o",
        "jsonpath={.spec.leaseTransitions}",
    ]);
    assert_eq!(transitions.trim(), "1", "holder {second}");
    drop(b);
    drop(etcd);
}

#[test]
fn an_embedded_data_dir_moves_into_an_empty_etcd_and_reports_its_health_and_size() {
    let etcd = Etcd::single();
    let embedded = support::Server::start();
    let k = embedded.kubectl(KUBECTL_133);
    k.ok(&["create", "namespace", "team"]);
    k.ok(&[
        "create",
        "configmap",
        "kept",
        "-n",
        "team",
        "--from-literal=k=v",
    ]);
    let dir = embedded.kill();

    let endpoints = etcd.endpoints().join(",");
    let server = support::Server::start_in_with(dir, &["--datastore-endpoint", &endpoints]);
    let k = server.kubectl(KUBECTL_133);
    let value = k.ok(&[
        "get",
        "configmap",
        "kept",
        "-n",
        "team",
        "-o",
        "jsonpath={.data.k}",
    ]);
    assert_eq!(value, "v", "{}", server.log());
    let server_dir = server.dir.path().join("server");
    assert!(server_dir.join("state.redb.migrated").exists());
    assert!(!server_dir.join("state.redb").exists());

    let status = |output: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_skiff"))
            .args(["datastore", "status", "-o", output, "--kubeconfig"])
            .arg(&server.kubeconfig)
            .output()
            .expect("skiff datastore status");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let json: serde_json::Value = serde_json::from_str(&status("json")).expect("json");
    assert_eq!(json["backend"], "etcd", "{json}");
    assert!(json["keys"].as_u64().unwrap_or(0) >= 2, "{json}");
    assert!(json["sizeBytes"].as_u64().unwrap_or(0) > 0, "{json}");
    assert_eq!(json["members"][0]["healthy"], true, "{json}");
    assert_eq!(json["members"][0]["leader"], true, "{json}");
    let text = status("text");
    assert!(text.contains("healthy, leader"), "{text}");
    assert_eq!(k.ok(&["get", "--raw", "/readyz/etcd"]).trim(), "ok");

    // Readiness follows the datastore: with etcd gone, /readyz names the failed check.
    drop(etcd);
    let failed = k.fails(&["get", "--raw", "/readyz"]);
    assert!(failed.contains("etcd failed"), "{failed}");
}

#[test]
fn tls_to_etcd_with_client_certificates() {
    let etcd = Etcd::single_tls();
    let tls = etcd.tls().expect("tls files").clone();
    let endpoints = etcd.endpoints().join(",");
    let (ca, cert, key) = (
        tls.ca.display().to_string(),
        tls.cert.display().to_string(),
        tls.key.display().to_string(),
    );
    let server = support::Server::start_with(&[
        "--datastore-endpoint",
        &endpoints,
        "--datastore-cafile",
        &ca,
        "--datastore-certfile",
        &cert,
        "--datastore-keyfile",
        &key,
    ]);
    let k = server.kubectl(KUBECTL_133);
    k.ok(&["create", "configmap", "secure", "--from-literal=k=v"]);
    assert_eq!(
        k.ok(&["get", "configmap", "secure", "-o", "jsonpath={.data.k}"]),
        "v"
    );

    // Without a client certificate etcd refuses the connection and the server says so at
    // startup instead of serving errors later.
    let dir = tempfile::tempdir().expect("dir");
    let out = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args(["server", "--disable-agent", "--https-listen-port", "0"])
        .args([
            "--datastore-endpoint",
            &endpoints,
            "--datastore-cafile",
            &ca,
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .expect("run skiff server");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("connecting to the datastore") && stderr.contains(&endpoints),
        "{stderr}"
    );
}
