//! Crash safety through the API: kill -9 the server during a write loop, restart it on the same
//! data dir, and every write that was acknowledged is there and the resourceVersion never goes
//! backwards.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::{KUBECTL_133, Server, eventually};

#[test]
fn acknowledged_writes_survive_kill_9() {
    let server = Server::start();
    let k = Arc::new(server.kubectl(KUBECTL_133));
    let acked: Arc<Mutex<Vec<(String, i64)>>> = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (k, acked, stop) = (k.clone(), acked.clone(), stop.clone());
            std::thread::spawn(move || {
                for i in 0.. {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let name = format!("w{w}-{i}");
                    let r = k.run(&[
                        "create",
                        "configmap",
                        &name,
                        "--from-literal=k=v",
                        "-o",
                        "jsonpath={.metadata.resourceVersion}",
                    ]);
                    if r.status != 0 {
                        return; // the server is gone
                    }
                    let rv: i64 = r
                        .stdout
                        .trim()
                        .parse()
                        .expect("resourceVersion is a number");
                    acked.lock().expect("lock").push((name, rv));
                }
            })
        })
        .collect();
    eventually(Duration::from_secs(60), "40 acknowledged writes", || {
        (acked.lock().expect("lock").len() >= 40).then_some(())
    });
    let dir = server.kill();
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.join().expect("writer");
    }
    let acked = acked.lock().expect("lock").clone();
    let max_rv = acked.iter().map(|(_, rv)| *rv).max().expect("some writes");

    let server = Server::start_in(dir);
    let k = server.kubectl(KUBECTL_133);
    let names = k.ok(&[
        "get",
        "configmaps",
        "-o",
        "jsonpath={.items[*].metadata.name}",
    ]);
    let present: std::collections::HashSet<&str> = names.split_whitespace().collect();
    for (name, _) in &acked {
        assert!(
            present.contains(name.as_str()),
            "acknowledged configmap {name} is missing after kill -9"
        );
    }
    let list: serde_json::Value = serde_json::from_str(&k.ok(&[
        "get",
        "--raw",
        "/api/v1/namespaces/default/configmaps?limit=1",
    ]))
    .expect("list JSON");
    let list_rv: i64 = list["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("list resourceVersion");
    assert!(
        list_rv >= max_rv,
        "revision went backwards: {list_rv} < {max_rv}"
    );
    // New writes continue after the old revisions.
    let rv: i64 = k
        .ok(&[
            "create",
            "configmap",
            "after",
            "-o",
            "jsonpath={.metadata.resourceVersion}",
        ])
        .trim()
        .parse()
        .expect("rv");
    assert!(rv > max_rv);
}
