//! Runs the backend-neutral conformance suite against the etcd backend, one test per check, each
//! on its own fresh single-node etcd (Debian's `etcd-server`) started by the harness.

mod etcd_support;

use std::sync::Arc;

use skiff_store::conformance;
use skiff_store::{EtcdOptions, EtcdStore, Store};

use etcd_support::Etcd;

async fn run(name: &str) {
    let (_, case) = conformance::CASES
        .iter()
        .find(|(case, _)| *case == name)
        .unwrap_or_else(|| panic!("no conformance case {name}"));
    let etcd = tokio::task::spawn_blocking(Etcd::single)
        .await
        .expect("start etcd");
    let store: Arc<dyn Store> = Arc::new(
        EtcdStore::connect(EtcdOptions::new(etcd.endpoints()))
            .await
            .expect("connect to etcd"),
    );
    case(store).await;
    drop(etcd);
}

skiff_store::conformance_tests!(run);

// Beyond the shared suite: what only the etcd backend has to show.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use skiff_store::{Error, EventKind, Revision, WatchResponse};

fn options(endpoints: Vec<String>, prefix: &str) -> EtcdOptions {
    let mut options = EtcdOptions::new(endpoints);
    options.key_prefix = prefix.to_owned();
    options
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_prefixes_isolate_stores_and_compaction_is_seen_by_every_client() {
    let etcd = tokio::task::spawn_blocking(Etcd::single)
        .await
        .expect("start etcd");
    let a = EtcdStore::connect(options(etcd.endpoints(), "/a"))
        .await
        .expect("connect a");
    let b = EtcdStore::connect(options(etcd.endpoints(), "/b"))
        .await
        .expect("connect b");
    let kv = a
        .create("/registry/x", Bytes::from_static(b"1"))
        .await
        .expect("create in a");
    assert_eq!(
        kv.key, "/registry/x",
        "the prefix is not visible to callers"
    );
    b.create("/registry/y", Bytes::from_static(b"2"))
        .await
        .expect("create in b");
    let in_a = a
        .range("/registry/", Default::default())
        .await
        .expect("range a");
    let keys: Vec<&str> = in_a.kvs.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, ["/registry/x"]);
    let everything = a
        .range("", Default::default())
        .await
        .expect("range all of a");
    assert_eq!(everything.kvs.len(), 1);

    // `b` never compacted, yet learns the compacted revision `a` set, exactly.
    assert_eq!(b.compacted_revision().await.expect("compacted"), 0);
    let current = a.current_revision().await.expect("revision");
    a.compact(current).await.expect("compact through a");
    assert_eq!(b.compacted_revision().await.expect("compacted"), current);
    let err = b
        .range(
            "/registry/",
            skiff_store::RangeOptions {
                revision: Some(current - 1),
                ..Default::default()
            },
        )
        .await
        .expect_err("range below the compaction");
    assert!(
        matches!(err, Error::Compacted { requested, compacted } if requested == current - 1 && compacted == current),
        "got {err:?}"
    );
    drop(etcd);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_etcd_fails_calls_with_unavailable_within_the_bound() {
    let etcd = tokio::task::spawn_blocking(Etcd::single)
        .await
        .expect("start etcd");
    let mut opts = options(etcd.endpoints(), "");
    opts.request_timeout = Duration::from_secs(3);
    let store = EtcdStore::connect(opts).await.expect("connect");
    store
        .create("/k", Bytes::from_static(b"v"))
        .await
        .expect("create");
    let mut watch = store.watch("/", 0).await.expect("watch");
    tokio::task::spawn_blocking(move || drop(etcd))
        .await
        .expect("stop etcd");
    for (what, result) in [
        ("get", store.get("/k").await.map(|_| ())),
        (
            "create",
            store
                .create("/k2", Bytes::from_static(b"v"))
                .await
                .map(|_| ()),
        ),
    ] {
        let started = Instant::now();
        let err = result.expect_err("etcd is gone");
        assert!(
            matches!(&err, Error::Unavailable { detail } if detail.contains("etcd at http://127.0.0.1:")),
            "{what}: {err:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(10), "{what} hung");
    }
    let started = Instant::now();
    connect_fails(&store).await;
    // The watch keeps re-watching for 30 s, then fails rather than going silent.
    let end = tokio::time::timeout(Duration::from_secs(60), watch.next())
        .await
        .expect("the watch ends in time");
    assert!(
        matches!(end, Some(Err(Error::Unavailable { .. }))),
        "got {end:?} after {:?}",
        started.elapsed()
    );
}

async fn connect_fails(store: &EtcdStore) {
    let err = EtcdStore::connect(EtcdOptions {
        request_timeout: Duration::from_secs(2),
        ..options(vec![store.endpoints().to_owned()], "")
    })
    .await
    .expect_err("connect to a dead etcd");
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
}

/// Every acknowledged write, by revision: (key, kind).
type History = BTreeMap<Revision, (String, EventKind)>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_survives_each_member_dying_without_gap_or_duplicate() {
    let mut etcd = tokio::task::spawn_blocking(|| Etcd::cluster(3))
        .await
        .expect("start cluster");
    let store = EtcdStore::connect(options(etcd.all_endpoints(), ""))
        .await
        .expect("connect");
    let start = store.current_revision().await.expect("revision") + 1;
    let mut watch = store.watch("/w/", start).await.expect("watch");

    // A writer that keeps writing through every failure and records what was acknowledged.
    let stop = tokio_util_stop();
    let writer = {
        let store = store.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut acked = History::new();
            let mut failed = 0;
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let key = format!("/w/{i:05}");
                match store.create(&key, Bytes::from_static(b"v")).await {
                    Ok(kv) => {
                        acked.insert(kv.mod_revision, (key, EventKind::Put));
                    }
                    Err(Error::Unavailable { .. }) => failed += 1,
                    Err(e) => panic!("unexpected error {e:?}"),
                }
                i += 1;
            }
            (acked, failed)
        })
    };
    // Every member dies once (one of them serves the watch), killed with SIGKILL and restarted.
    for member in 0..3 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        etcd.kill9(member);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        etcd = tokio::task::spawn_blocking(move || {
            etcd.restart(member);
            etcd
        })
        .await
        .expect("restart member");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (acked, failed) = writer.await.expect("writer");
    let last = *acked.keys().last().expect("some writes were acknowledged");

    let mut seen: Vec<(Revision, String, EventKind)> = Vec::new();
    while seen.last().is_none_or(|(r, _, _)| *r < last) {
        match tokio::time::timeout(Duration::from_secs(30), watch.next())
            .await
            .expect("watch response in time")
        {
            Some(Ok(WatchResponse::Events(events))) => seen.extend(
                events
                    .into_iter()
                    .map(|e| (e.revision(), e.kv.key.clone(), e.kind)),
            ),
            Some(Ok(WatchResponse::Progress(_))) => {}
            other => panic!("watch failed: {other:?}"),
        }
    }
    for pair in seen.windows(2) {
        assert!(pair[0].0 < pair[1].0, "out of order or duplicate: {pair:?}");
    }
    let seen: History = seen
        .into_iter()
        .map(|(r, k, kind)| (r, (k, kind)))
        .collect();
    // Writes whose outcome was unknown (503) may have committed: they may appear in the watch,
    // but every acknowledged one must.
    for (revision, write) in &acked {
        assert_eq!(
            seen.get(revision),
            Some(write),
            "acknowledged write at {revision}"
        );
    }
    let present = store.range("/w/", Default::default()).await.expect("range");
    assert!(present.kvs.len() >= acked.len());
    eprintln!(
        "acknowledged {} writes, {failed} failed as unavailable, watch saw {} events",
        acked.len(),
        seen.len()
    );
    drop(etcd);
}

fn tokio_util_stop() -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false))
}
