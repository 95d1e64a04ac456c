//! Crash safety: a writer process killed with SIGKILL loses no acknowledged write.
//!
//! The parent test re-executes this test binary to run `crash_child_writer` (ignored in normal
//! runs), which writes in a loop and prints `ACK <key> <revision> <value>` after each
//! acknowledged write. The parent kills it mid-stream, reopens the store and checks every line.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;

use bytes::Bytes;
use skiff_store::{RedbStore, Store};

const DIR_VAR: &str = "SKIFF_STORE_CRASH_DIR";
const ROUND_VAR: &str = "SKIFF_STORE_CRASH_ROUND";
/// Acknowledgements to wait for before killing the child.
const ACKS_BEFORE_KILL: usize = 400;
const ROUNDS: usize = 3;

#[derive(Debug)]
struct AckLine {
    key: String,
    revision: i64,
    value: u64,
}

fn parse(line: &str) -> Option<AckLine> {
    let mut parts = line.strip_prefix("ACK ")?.split(' ');
    Some(AckLine {
        key: parts.next()?.to_owned(),
        revision: parts.next()?.parse().ok()?,
        value: parts.next()?.parse().ok()?,
    })
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut last_acked_revision = 0;
    for round in 0..ROUNDS {
        let mut child = Command::new(std::env::current_exe().expect("test binary"))
            .args(["crash_child_writer", "--exact", "--ignored", "--nocapture"])
            .env(DIR_VAR, dir.path())
            .env(ROUND_VAR, round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child writer");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut acks = Vec::new();
        let mut lines = BufReader::new(stdout).lines();
        for line in lines.by_ref() {
            let line = line.expect("child output");
            if let Some(ack) = parse(&line) {
                acks.push(ack);
                if acks.len() == ACKS_BEFORE_KILL {
                    break;
                }
            }
        }
        assert_eq!(
            acks.len(),
            ACKS_BEFORE_KILL,
            "child stopped before writing enough"
        );
        child.kill().expect("SIGKILL the child");
        // Lines already printed were acknowledged too.
        acks.extend(
            lines
                .map_while(|line| line.ok())
                .filter_map(|line| parse(&line)),
        );
        child.wait().expect("reap child");

        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        runtime.block_on(async {
            let store = RedbStore::open(dir.path().join("store.redb")).expect("reopen");
            let max_acked = acks.iter().map(|ack| ack.revision).max().expect("acks");
            let current = store.current_revision().await.expect("revision");
            assert!(
                current >= max_acked,
                "round {round}: revision went back: {current} < acknowledged {max_acked}"
            );
            assert!(
                max_acked > last_acked_revision,
                "round {round} wrote new revisions"
            );
            last_acked_revision = max_acked;
            let mut newest: HashMap<&str, &AckLine> = HashMap::new();
            for ack in &acks {
                let entry = newest.entry(ack.key.as_str()).or_insert(ack);
                if ack.revision > entry.revision {
                    *entry = ack;
                }
            }
            for (key, ack) in newest {
                let kv = store
                    .get(key)
                    .await
                    .expect("get")
                    .unwrap_or_else(|| panic!("round {round}: acknowledged key {key} lost"));
                assert!(
                    kv.mod_revision >= ack.revision,
                    "round {round}: {key} at {} older than acknowledged {}",
                    kv.mod_revision,
                    ack.revision
                );
                let stored: u64 = std::str::from_utf8(&kv.value)
                    .expect("utf-8")
                    .parse()
                    .expect("number");
                assert!(stored >= ack.value, "round {round}: {key} lost an update");
            }
            let next = store
                .create(&format!("/crash/after-{round}"), Bytes::from_static(b"0"))
                .await
                .expect("write after reopen");
            assert!(next.mod_revision > max_acked);
            store.close().await.expect("close");
        });
    }
}

/// The child side of `acknowledged_writes_survive_sigkill`; does nothing useful on its own.
#[test]
#[ignore = "helper process spawned by acknowledged_writes_survive_sigkill"]
fn crash_child_writer() {
    let Some(dir) = std::env::var_os(DIR_VAR) else {
        return;
    };
    let round = std::env::var(ROUND_VAR).expect("round");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async move {
        let store =
            Arc::new(RedbStore::open(std::path::Path::new(&dir).join("store.redb")).expect("open"));
        let tasks: Vec<_> = (0..16)
            .map(|task| {
                let store = Arc::clone(&store);
                let round = round.clone();
                tokio::spawn(async move {
                    let counter = format!("/crash/{round}/counter-{task}");
                    store
                        .create(&counter, Bytes::from_static(b"0"))
                        .await
                        .expect("create counter");
                    for i in 1u64.. {
                        let key = format!("/crash/{round}/{task}/{i}");
                        let kv = store
                            .create(&key, Bytes::from(i.to_string()))
                            .await
                            .expect("create");
                        println!("ACK {key} {} {i}", kv.mod_revision);
                        let kv = store
                            .update(&counter, Bytes::from(i.to_string()), None)
                            .await
                            .expect("update counter");
                        println!("ACK {counter} {} {i}", kv.mod_revision);
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("writer task");
        }
    });
}
