//! The backend-neutral conformance suite: every [`Store`] backend must pass these checks.
//!
//! Each check takes a fresh, empty store and panics when the backend misbehaves. [`CASES`] lists
//! them by name so a backend's test file can generate one test per check. The watch guarantees
//! are checked by name, after etcd's robustness suite: ordered, unique, atomic, reliable,
//! resumable, bookmarkable.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::future::BoxFuture;

mod watch;

pub use self::watch::*;

use crate::{
    Error, EventKind, KeyValue, RangeOptions, Revision, Store, WatchEvent, WatchResponse,
    WatchStream,
};

/// A conformance check: gets a fresh empty store, panics on failure.
pub type Case = fn(Arc<dyn Store>) -> BoxFuture<'static, ()>;

/// Every check, by name.
pub const CASES: &[(&str, Case)] = &[
    ("create_then_update_tracks_versions", |s| {
        Box::pin(create_then_update_tracks_versions(s))
    }),
    ("create_existing_key_fails_already_exists", |s| {
        Box::pin(create_existing_key_fails_already_exists(s))
    }),
    ("write_missing_key_fails_not_found", |s| {
        Box::pin(write_missing_key_fails_not_found(s))
    }),
    ("stale_mod_revision_conflicts", |s| {
        Box::pin(stale_mod_revision_conflicts(s))
    }),
    ("concurrent_cas_has_one_winner", |s| {
        Box::pin(concurrent_cas_has_one_winner(s))
    }),
    ("delete_returns_value_at_delete_revision", |s| {
        Box::pin(delete_returns_value_at_delete_revision(s))
    }),
    ("range_lists_prefix_in_key_order", |s| {
        Box::pin(range_lists_prefix_in_key_order(s))
    }),
    ("range_pages_are_one_snapshot_during_writes", |s| {
        Box::pin(range_pages_are_one_snapshot_during_writes(s))
    }),
    ("range_at_old_revision_sees_old_state", |s| {
        Box::pin(range_at_old_revision_sees_old_state(s))
    }),
    ("range_at_future_revision_fails", |s| {
        Box::pin(range_at_future_revision_fails(s))
    }),
    ("compaction_fails_old_ranges_and_watches", |s| {
        Box::pin(compaction_fails_old_ranges_and_watches(s))
    }),
    ("watch_ordered", |s| Box::pin(watch_ordered(s))),
    ("watch_unique", |s| Box::pin(watch_unique(s))),
    ("watch_atomic", |s| Box::pin(watch_atomic(s))),
    ("watch_reliable", |s| Box::pin(watch_reliable(s))),
    ("watch_resumable", |s| Box::pin(watch_resumable(s))),
    ("watch_bookmarkable", |s| Box::pin(watch_bookmarkable(s))),
    ("watch_slow_consumer_loses_nothing_silently", |s| {
        Box::pin(watch_slow_consumer_loses_nothing_silently(s))
    }),
];

/// How long a check waits for a watch response before failing.
const WATCH_TIMEOUT: Duration = Duration::from_secs(20);

fn value(text: &str) -> Bytes {
    Bytes::from(text.to_owned())
}

fn latest() -> RangeOptions {
    RangeOptions::default()
}

/// A write as acknowledged to its caller.
#[derive(Debug, Clone)]
struct Ack {
    kind: EventKind,
    kv: KeyValue,
}

/// Runs `tasks` concurrent writers under `prefix`; each creates, updates and (every third key)
/// deletes `keys_per_task` keys. Returns every acknowledgement.
async fn concurrent_writes(
    store: &Arc<dyn Store>,
    prefix: &str,
    tasks: usize,
    keys_per_task: usize,
) -> Vec<Ack> {
    let mut handles = Vec::new();
    for task in 0..tasks {
        let store = Arc::clone(store);
        let prefix = prefix.to_owned();
        handles.push(tokio::spawn(async move {
            let mut acks = Vec::new();
            for i in 0..keys_per_task {
                let key = format!("{prefix}{task}/{i}");
                let created = store
                    .create(&key, value(&format!("{{\"v\":{i}}}")))
                    .await
                    .expect("create succeeds");
                acks.push(Ack {
                    kind: EventKind::Put,
                    kv: created.clone(),
                });
                let updated = store
                    .update(
                        &key,
                        value(&format!("{{\"v\":{i},\"u\":1}}")),
                        Some(created.mod_revision),
                    )
                    .await
                    .expect("update succeeds");
                acks.push(Ack {
                    kind: EventKind::Put,
                    kv: updated.clone(),
                });
                if i % 3 == 0 {
                    let deleted = store
                        .delete(&key, Some(updated.mod_revision))
                        .await
                        .expect("delete succeeds");
                    acks.push(Ack {
                        kind: EventKind::Delete,
                        kv: deleted,
                    });
                }
            }
            acks
        }));
    }
    let mut acks = Vec::new();
    for handle in handles {
        acks.extend(handle.await.expect("writer task"));
    }
    acks.sort_by_key(|ack| ack.kv.mod_revision);
    acks
}

/// Reads responses until an event at or past `until` arrives; returns the events grouped by
/// response.
async fn collect_until(stream: &mut WatchStream, until: Revision) -> Vec<Vec<WatchEvent>> {
    let mut responses = Vec::new();
    let mut last = 0;
    while last < until {
        let response = tokio::time::timeout(WATCH_TIMEOUT, stream.next())
            .await
            .unwrap_or_else(|_| {
                panic!("no watch response within {WATCH_TIMEOUT:?} (last {last}, want {until})")
            })
            .expect("watch stream ended early")
            .expect("watch stream failed");
        if let WatchResponse::Events(events) = response {
            assert!(!events.is_empty(), "an Events response is never empty");
            last = events.last().map_or(last, WatchEvent::revision);
            responses.push(events);
        }
    }
    responses
}

fn flatten(responses: &[Vec<WatchEvent>]) -> Vec<WatchEvent> {
    responses.iter().flatten().cloned().collect()
}

/// Asserts that `events` are exactly the acknowledged writes at or after `from` under `prefix`.
fn assert_matches_acks(events: &[WatchEvent], acks: &[Ack], from: Revision, prefix: &str) {
    let expected: Vec<(Revision, EventKind, &str, &[u8])> = acks
        .iter()
        .filter(|ack| ack.kv.mod_revision >= from && ack.kv.key.starts_with(prefix))
        .map(|ack| {
            (
                ack.kv.mod_revision,
                ack.kind,
                ack.kv.key.as_str(),
                &ack.kv.value[..],
            )
        })
        .collect();
    let seen: Vec<(Revision, EventKind, &str, &[u8])> = events
        .iter()
        .map(|event| {
            (
                event.revision(),
                event.kind,
                event.kv.key.as_str(),
                &event.kv.value[..],
            )
        })
        .collect();
    assert_eq!(seen, expected, "watch from {from} under {prefix:?}");
}

/// Create sets create = mod revision and version 1; update bumps mod revision and version.
pub async fn create_then_update_tracks_versions(store: Arc<dyn Store>) {
    let before = store.current_revision().await.expect("revision");
    let created = store
        .create("/registry/pods/default/a", value("one"))
        .await
        .expect("create");
    assert_eq!(created.mod_revision, before + 1);
    assert_eq!(created.create_revision, created.mod_revision);
    assert_eq!(created.version, 1);
    assert_eq!(
        store.current_revision().await.expect("revision"),
        before + 1
    );

    let updated = store
        .update("/registry/pods/default/a", value("two"), None)
        .await
        .expect("update");
    assert_eq!(updated.mod_revision, before + 2);
    assert_eq!(updated.create_revision, created.create_revision);
    assert_eq!(updated.version, 2);

    let got = store
        .get("/registry/pods/default/a")
        .await
        .expect("get")
        .expect("key exists");
    assert_eq!(got, updated);
    assert_eq!(&got.value[..], b"two");
    assert_eq!(
        store.get("/registry/pods/default/b").await.expect("get"),
        None
    );
}

/// Creating an existing key fails and consumes no revision.
pub async fn create_existing_key_fails_already_exists(store: Arc<dyn Store>) {
    store.create("/k", value("1")).await.expect("create");
    let revision = store.current_revision().await.expect("revision");
    let err = store
        .create("/k", value("2"))
        .await
        .expect_err("second create");
    assert!(
        matches!(&err, Error::AlreadyExists { key } if key == "/k"),
        "got {err:?}"
    );
    assert_eq!(store.current_revision().await.expect("revision"), revision);
    let kv = store.get("/k").await.expect("get").expect("exists");
    assert_eq!(&kv.value[..], b"1");
}

/// Updating or deleting a missing key fails with NotFound.
pub async fn write_missing_key_fails_not_found(store: Arc<dyn Store>) {
    let err = store
        .update("/missing", value("x"), None)
        .await
        .expect_err("update of missing key");
    assert!(
        matches!(&err, Error::NotFound { key } if key == "/missing"),
        "got {err:?}"
    );
    let err = store
        .delete("/missing", Some(5))
        .await
        .expect_err("delete of missing key");
    assert!(
        matches!(&err, Error::NotFound { key } if key == "/missing"),
        "got {err:?}"
    );
    assert_eq!(store.get("/missing").await.expect("get"), None);
}

/// Compare-and-swap on `mod_revision`: a stale expectation conflicts and reports the current
/// value; the right one succeeds.
pub async fn stale_mod_revision_conflicts(store: Arc<dyn Store>) {
    let first = store.create("/cas", value("a")).await.expect("create");
    let second = store
        .update("/cas", value("b"), Some(first.mod_revision))
        .await
        .expect("update with current mod_revision");
    let err = store
        .update("/cas", value("c"), Some(first.mod_revision))
        .await
        .expect_err("update with stale mod_revision");
    match &err {
        Error::Conflict {
            key,
            expected,
            current,
        } => {
            assert_eq!(key, "/cas");
            assert_eq!(*expected, first.mod_revision);
            assert_eq!(current.as_ref(), Some(&second));
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
    let err = store
        .delete("/cas", Some(first.mod_revision))
        .await
        .expect_err("delete with stale mod_revision");
    assert!(matches!(err, Error::Conflict { .. }), "got {err:?}");
    let kv = store.get("/cas").await.expect("get").expect("still there");
    assert_eq!(kv, second);
    store
        .delete("/cas", Some(second.mod_revision))
        .await
        .expect("delete with current mod_revision");
}

/// Many concurrent compare-and-swaps against the same `mod_revision`: exactly one wins, the
/// others conflict, and the key ends with the winner's value.
pub async fn concurrent_cas_has_one_winner(store: Arc<dyn Store>) {
    let base = store.create("/race", value("base")).await.expect("create");
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                store
                    .update("/race", value(&format!("w{i}")), Some(base.mod_revision))
                    .await
            })
        })
        .collect();
    let mut winners = Vec::new();
    for task in tasks {
        match task.await.expect("task") {
            Ok(kv) => winners.push(kv),
            Err(Error::Conflict { current, .. }) => {
                assert!(current.is_some_and(|kv| kv.mod_revision > base.mod_revision));
            }
            Err(other) => panic!("expected success or Conflict, got {other:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one compare-and-swap wins");
    let now = store.get("/race").await.expect("get").expect("exists");
    assert_eq!(now, winners[0]);
    assert_eq!(now.version, 2);
}

/// Delete returns the deleted value stamped with the delete's revision; a re-create starts a new
/// life (version 1, new create revision).
pub async fn delete_returns_value_at_delete_revision(store: Arc<dyn Store>) {
    let created = store.create("/d", value("payload")).await.expect("create");
    let deleted = store.delete("/d", None).await.expect("delete");
    assert_eq!(deleted.mod_revision, created.mod_revision + 1);
    assert_eq!(&deleted.value[..], b"payload");
    assert_eq!(deleted.create_revision, created.create_revision);
    assert_eq!(store.get("/d").await.expect("get"), None);
    assert_eq!(
        store.current_revision().await.expect("revision"),
        deleted.mod_revision
    );

    let again = store.create("/d", value("new")).await.expect("re-create");
    assert_eq!(again.version, 1);
    assert_eq!(again.create_revision, deleted.mod_revision + 1);
}

/// A range returns exactly the keys under the prefix, sorted, at the current revision.
pub async fn range_lists_prefix_in_key_order(store: Arc<dyn Store>) {
    for key in [
        "/registry/pods/ns/c",
        "/registry/pods/ns/a",
        "/registry/podsx/ns/a",
        "/registry/pod",
        "/registry/pods/other/b",
    ] {
        store.create(key, value(key)).await.expect("create");
    }
    let result = store
        .range("/registry/pods/", latest())
        .await
        .expect("range");
    let keys: Vec<&str> = result.kvs.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "/registry/pods/ns/a",
            "/registry/pods/ns/c",
            "/registry/pods/other/b"
        ]
    );
    assert!(!result.more);
    assert_eq!(
        result.revision,
        store.current_revision().await.expect("revision")
    );
    let all = store.range("", latest()).await.expect("range all");
    assert_eq!(all.kvs.len(), 5);
}

/// Pages read with limit + continue at the first page's revision form one consistent snapshot,
/// whatever is written between pages.
pub async fn range_pages_are_one_snapshot_during_writes(store: Arc<dyn Store>) {
    let prefix = "/registry/configmaps/default/";
    let mut snapshot = Vec::new();
    for i in 0..40 {
        let kv = store
            .create(&format!("{prefix}cm-{i:02}"), value(&format!("v{i}")))
            .await
            .expect("create");
        snapshot.push(kv);
    }
    let options = RangeOptions {
        limit: Some(7),
        ..RangeOptions::default()
    };
    let first = store
        .range(prefix, options.clone())
        .await
        .expect("first page");
    assert_eq!(first.kvs.len(), 7);
    assert!(first.more);
    let revision = first.revision;
    let mut listed = first.kvs;
    let mut more = first.more;
    let mut round = 0;
    while more {
        // Writes between pages: update and delete keys not listed yet, add new ones.
        let victim = format!("{prefix}cm-{:02}", 39 - round);
        store
            .update(&victim, value("changed"), None)
            .await
            .expect("update between pages");
        store
            .delete(&format!("{prefix}cm-{:02}", 20 + round), None)
            .await
            .expect("delete between pages");
        store
            .create(&format!("{prefix}cm-{:02}x", 30 + round), value("new"))
            .await
            .expect("create between pages");
        round += 1;
        let page = store
            .range(
                prefix,
                RangeOptions {
                    revision: Some(revision),
                    start_after: listed.last().map(|kv| kv.key.clone()),
                    ..options.clone()
                },
            )
            .await
            .expect("next page");
        assert_eq!(
            page.revision, revision,
            "pages are served at the first page's revision"
        );
        assert!(page.kvs.len() <= 7);
        more = page.more;
        listed.extend(page.kvs);
    }
    assert_eq!(
        listed, snapshot,
        "the pages add up to the snapshot at revision {revision}"
    );
    let now = store.range(prefix, latest()).await.expect("latest range");
    assert_ne!(now.kvs, snapshot, "the writes between pages did happen");
}

/// A range at an old revision shows keys as they were: old values, deleted keys present, keys
/// created later absent.
pub async fn range_at_old_revision_sees_old_state(store: Arc<dyn Store>) {
    let a1 = store.create("/r/a", value("a1")).await.expect("create a");
    let b1 = store.create("/r/b", value("b1")).await.expect("create b");
    let at_two = b1.mod_revision;
    let a2 = store
        .update("/r/a", value("a2"), None)
        .await
        .expect("update a");
    store.delete("/r/b", None).await.expect("delete b");
    let c1 = store.create("/r/c", value("c1")).await.expect("create c");

    let old = store
        .range(
            "/r/",
            RangeOptions {
                revision: Some(at_two),
                ..RangeOptions::default()
            },
        )
        .await
        .expect("range at old revision");
    assert_eq!(old.revision, at_two);
    assert_eq!(old.kvs, vec![a1.clone(), b1.clone()]);

    let mid = store
        .range(
            "/r/",
            RangeOptions {
                revision: Some(a2.mod_revision),
                ..RangeOptions::default()
            },
        )
        .await
        .expect("range at middle revision");
    assert_eq!(mid.kvs, vec![a2.clone(), b1]);

    let before_all = store
        .range(
            "/r/",
            RangeOptions {
                revision: Some(a1.mod_revision - 1),
                ..RangeOptions::default()
            },
        )
        .await
        .expect("range before the first write");
    assert!(before_all.kvs.is_empty());

    let now = store.range("/r/", latest()).await.expect("latest");
    assert_eq!(now.kvs, vec![a2, c1]);

    let limited = store
        .range(
            "/r/",
            RangeOptions {
                revision: Some(at_two),
                limit: Some(1),
                start_after: None,
            },
        )
        .await
        .expect("limited old range");
    assert_eq!(limited.kvs, vec![a1]);
    assert!(limited.more);
}

/// A range at a revision newer than the current one fails with FutureRevision.
pub async fn range_at_future_revision_fails(store: Arc<dyn Store>) {
    store.create("/f", value("x")).await.expect("create");
    let current = store.current_revision().await.expect("revision");
    let err = store
        .range(
            "/",
            RangeOptions {
                revision: Some(current + 1),
                ..RangeOptions::default()
            },
        )
        .await
        .expect_err("future revision");
    assert!(
        matches!(err, Error::FutureRevision { requested, current: c } if requested == current + 1 && c == current),
        "got {err:?}"
    );
}

/// After compaction at R: ranges and watches before R fail with Compacted, at R they still work
/// and see the right state.
pub async fn compaction_fails_old_ranges_and_watches(store: Arc<dyn Store>) {
    let a1 = store.create("/c/a", value("a1")).await.expect("create a");
    store.create("/c/b", value("b1")).await.expect("create b");
    let a2 = store
        .update("/c/a", value("a2"), None)
        .await
        .expect("update a");
    store.delete("/c/b", None).await.expect("delete b");
    let d1 = store.create("/c/d", value("d1")).await.expect("create d");
    let compact_at = d1.mod_revision;
    let a3 = store
        .update("/c/a", value("a3"), None)
        .await
        .expect("update a");
    let d2 = store.delete("/c/d", None).await.expect("delete d");

    assert_eq!(store.compacted_revision().await.expect("compacted"), 0);
    store.compact(compact_at).await.expect("compact");
    assert_eq!(
        store.compacted_revision().await.expect("compacted"),
        compact_at
    );

    let err = store
        .range(
            "/c/",
            RangeOptions {
                revision: Some(a1.mod_revision),
                ..RangeOptions::default()
            },
        )
        .await
        .expect_err("range before compaction");
    assert!(
        matches!(err, Error::Compacted { requested, compacted } if requested == a1.mod_revision && compacted == compact_at),
        "got {err:?}"
    );
    let at = store
        .range(
            "/c/",
            RangeOptions {
                revision: Some(compact_at),
                ..RangeOptions::default()
            },
        )
        .await
        .expect("range at the compacted revision");
    assert_eq!(at.kvs, vec![a2.clone(), d1.clone()]);

    let err = store
        .watch("/c/", compact_at - 1)
        .await
        .expect_err("watch before compaction");
    assert!(matches!(err, Error::Compacted { .. }), "got {err:?}");

    let mut watch = store
        .watch("/c/", compact_at)
        .await
        .expect("watch at compaction");
    let events = flatten(&collect_until(&mut watch, d2.mod_revision).await);
    let revisions: Vec<Revision> = events.iter().map(WatchEvent::revision).collect();
    assert_eq!(
        revisions,
        vec![d1.mod_revision, a3.mod_revision, d2.mod_revision]
    );
    assert_eq!(
        events[1].prev_kv.as_ref(),
        Some(&a2),
        "prev_kv survives compaction"
    );
    assert_eq!(events[2].kind, EventKind::Delete);
    assert_eq!(events[2].prev_kv.as_ref(), Some(&d1));

    let err = store.compact(compact_at).await.expect_err("compact again");
    assert!(matches!(err, Error::Compacted { .. }), "got {err:?}");
    let current = store.current_revision().await.expect("revision");
    let err = store
        .compact(current + 1)
        .await
        .expect_err("compact the future");
    assert!(matches!(err, Error::FutureRevision { .. }), "got {err:?}");

    store.compact(current).await.expect("compact everything");
    let now = store
        .range("/c/", latest())
        .await
        .expect("latest after full compaction");
    assert_eq!(now.kvs, vec![a3]);
}

/// One `#[tokio::test]` per conformance case, each calling `$run(case_name)`, plus a test that
/// fails when a case of [`CASES`] has no test. A backend's test file calls it once with its own
/// `async fn run(name: &str)` that builds a fresh store and runs the named case.
#[macro_export]
macro_rules! conformance_tests {
    ($run:path) => {
        $crate::conformance_tests!(@cases $run;
            create_then_update_tracks_versions,
            create_existing_key_fails_already_exists,
            write_missing_key_fails_not_found,
            stale_mod_revision_conflicts,
            concurrent_cas_has_one_winner,
            delete_returns_value_at_delete_revision,
            range_lists_prefix_in_key_order,
            range_pages_are_one_snapshot_during_writes,
            range_at_old_revision_sees_old_state,
            range_at_future_revision_fails,
            compaction_fails_old_ranges_and_watches,
            watch_ordered,
            watch_unique,
            watch_atomic,
            watch_reliable,
            watch_resumable,
            watch_bookmarkable,
            watch_slow_consumer_loses_nothing_silently,
        );
    };
    (@cases $run:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                $run(stringify!($name)).await;
            }
        )*

        #[test]
        fn every_conformance_case_has_a_test() {
            let here = [$(stringify!($name)),*];
            for (name, _) in $crate::conformance::CASES {
                assert!(here.contains(name), "conformance case {name} is not run");
            }
        }
    };
}
