//! Behaviour specific to the redb backend: group commit, reopen, lagging watchers.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use skiff_store::{FIRST_REVISION, RangeOptions, RedbStore, Store, WatchResponse};

fn open(dir: &tempfile::TempDir) -> RedbStore {
    RedbStore::open(dir.path().join("store.redb")).expect("open store")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_share_commits_and_are_all_readable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(open(&dir));
    let before = store.stats();
    let start = store.current_revision().await.expect("revision");
    let writers = 200;
    let handles: Vec<_> = (0..writers)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                store
                    .create(
                        &format!("/registry/pods/default/pod-{i:03}"),
                        Bytes::from(format!("{{\"name\":\"pod-{i:03}\"}}")),
                    )
                    .await
                    .expect("create")
            })
        })
        .collect();
    let mut revisions = BTreeSet::new();
    for handle in handles {
        revisions.insert(handle.await.expect("task").mod_revision);
    }
    let after = store.stats();
    let commits = after.commits - before.commits;
    assert_eq!(after.writes - before.writes, writers);
    assert!(
        commits * 4 <= writers,
        "{writers} concurrent writes took {commits} commits; group commit should share them"
    );
    let expected: BTreeSet<i64> = (start + 1..=start + writers as i64).collect();
    assert_eq!(
        revisions, expected,
        "each write got its own revision, none skipped"
    );
    for i in 0..writers {
        let kv = store
            .get(&format!("/registry/pods/default/pod-{i:03}"))
            .await
            .expect("get")
            .expect("written key is readable");
        assert_eq!(
            kv.value,
            Bytes::from(format!("{{\"name\":\"pod-{i:03}\"}}"))
        );
    }
    let listed = store
        .range("/registry/pods/", RangeOptions::default())
        .await
        .expect("range");
    assert_eq!(listed.kvs.len(), writers as usize);
}

#[tokio::test]
async fn fresh_store_starts_at_revision_one_like_etcd() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    assert_eq!(
        store.current_revision().await.expect("revision"),
        FIRST_REVISION
    );
    assert_eq!(store.compacted_revision().await.expect("compacted"), 0);
    let kv = store
        .create("/a", Bytes::from_static(b"1"))
        .await
        .expect("create");
    assert_eq!(kv.mod_revision, FIRST_REVISION + 1);
}

#[tokio::test]
async fn reopen_keeps_data_revision_and_compaction() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    store
        .create("/a", Bytes::from_static(b"1"))
        .await
        .expect("create");
    let b = store
        .create("/b", Bytes::from_static(b"2"))
        .await
        .expect("create");
    store
        .update("/a", Bytes::from_static(b"3"), None)
        .await
        .expect("update");
    store.compact(b.mod_revision).await.expect("compact");
    let last = store.delete("/b", None).await.expect("delete");
    store.close().await.expect("close");

    let store = open(&dir);
    assert_eq!(
        store.current_revision().await.expect("revision"),
        last.mod_revision
    );
    assert_eq!(
        store.compacted_revision().await.expect("compacted"),
        b.mod_revision
    );
    let a = store.get("/a").await.expect("get").expect("a survives");
    assert_eq!((&a.value[..], a.version), (&b"3"[..], 2));
    assert_eq!(store.get("/b").await.expect("get"), None);
    let next = store
        .create("/c", Bytes::from_static(b"4"))
        .await
        .expect("create");
    assert_eq!(
        next.mod_revision,
        last.mod_revision + 1,
        "revisions continue"
    );
    // History kept across the reopen: the delete of /b is replayed with its value.
    let mut watch = store.watch("/b", last.mod_revision).await.expect("watch");
    match tokio::time::timeout(Duration::from_secs(10), watch.next()).await {
        Ok(Some(Ok(WatchResponse::Events(events)))) => {
            assert_eq!(events.len(), 1);
            assert_eq!(&events[0].kv.value[..], b"2");
        }
        other => panic!("expected the delete event, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_watcher_catches_up_from_the_log_without_gaps() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    let mut watch = store.watch("/lag/", 0).await.expect("watch");
    // More single-write commits than the in-memory buffer holds, none read meanwhile.
    let mut last = 0;
    for i in 0..1300 {
        last = store
            .create(&format!("/lag/{i:05}"), Bytes::from_static(b"x"))
            .await
            .expect("create")
            .mod_revision;
    }
    let mut next = FIRST_REVISION + 1;
    while next <= last {
        match tokio::time::timeout(Duration::from_secs(10), watch.next()).await {
            Ok(Some(Ok(WatchResponse::Events(events)))) => {
                for event in events {
                    assert_eq!(event.kv.mod_revision, next, "no gap, no duplicate");
                    next += 1;
                }
            }
            other => panic!("unexpected watch item {other:?}"),
        }
    }
    assert!(
        store.stats().watch_catch_ups > 0,
        "the watcher should have lagged and caught up from the log"
    );
}

#[tokio::test]
async fn lagging_watcher_fails_with_compacted_when_its_history_is_gone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    let mut watch = store.watch("/gone/", 0).await.expect("watch");
    let mut last = 0;
    for i in 0..1100 {
        last = store
            .create(&format!("/gone/{i:05}"), Bytes::from_static(b"x"))
            .await
            .expect("create")
            .mod_revision;
    }
    store.compact(last).await.expect("compact");
    let item = tokio::time::timeout(Duration::from_secs(10), watch.next())
        .await
        .expect("in time");
    match item {
        Some(Err(skiff_store::Error::Compacted { compacted, .. })) => assert_eq!(compacted, last),
        other => panic!("expected Compacted, got {other:?}"),
    }
    assert!(
        watch.next().await.is_none(),
        "the stream ends after its error"
    );
}

#[tokio::test]
async fn watch_from_future_revision_waits_for_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    let current = store.current_revision().await.expect("revision");
    let mut watch = store.watch("/", current + 2).await.expect("watch");
    store
        .create("/one", Bytes::from_static(b"1"))
        .await
        .expect("create");
    let two = store
        .create("/two", Bytes::from_static(b"2"))
        .await
        .expect("create");
    match tokio::time::timeout(Duration::from_secs(10), watch.next()).await {
        Ok(Some(Ok(WatchResponse::Events(events)))) => {
            assert_eq!(events.len(), 1);
            assert_eq!(events[0].kv, two);
        }
        other => panic!("expected the second write, got {other:?}"),
    }
}

#[tokio::test]
async fn empty_key_is_rejected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    let err = store.create("", Bytes::new()).await.expect_err("empty key");
    assert!(matches!(err, skiff_store::Error::EmptyKey), "got {err:?}");
}

#[tokio::test]
async fn closed_store_ends_its_watches() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    let mut watch = store.watch("/", 0).await.expect("watch");
    store.close().await.expect("close");
    match tokio::time::timeout(Duration::from_secs(10), watch.next()).await {
        Ok(Some(Err(skiff_store::Error::Closed))) => {}
        other => panic!("expected Closed, got {other:?}"),
    }
}
