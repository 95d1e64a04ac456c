//! The watch checks of the conformance suite, one per named guarantee.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use futures::StreamExt;

use super::{
    Ack, WATCH_TIMEOUT, assert_matches_acks, collect_until, concurrent_writes, flatten, value,
};
use crate::{EventKind, Revision, Store, WatchEvent, WatchResponse, WatchStream};

/// Ordered: a watcher's event revisions strictly increase, across responses and across the
/// switch from replay to live events.
pub async fn watch_ordered(store: Arc<dyn Store>) {
    let start = store.current_revision().await.expect("revision") + 1;
    let mut live = store.watch("/o/", 0).await.expect("watch from now");
    let writers = {
        let store = Arc::clone(&store);
        tokio::spawn(async move { concurrent_writes(&store, "/o/", 8, 10).await })
    };
    // Start a replaying watcher while writes are in flight.
    tokio::task::yield_now().await;
    let mut replaying = store.watch("/o/", start).await.expect("watch from start");
    let acks = writers.await.expect("writers");
    let last = acks.last().expect("acks").kv.mod_revision;
    for stream in [&mut live, &mut replaying] {
        let events = flatten(&collect_until(stream, last).await);
        for pair in events.windows(2) {
            assert!(
                pair[0].revision() < pair[1].revision(),
                "revisions must strictly increase: {} then {}",
                pair[0].revision(),
                pair[1].revision()
            );
        }
    }
}

/// Unique: no event is delivered twice, even when a watcher starts in the past while writes
/// are being committed.
pub async fn watch_unique(store: Arc<dyn Store>) {
    let start = store.current_revision().await.expect("revision") + 1;
    let writers = {
        let store = Arc::clone(&store);
        tokio::spawn(async move { concurrent_writes(&store, "/u/", 8, 10).await })
    };
    let mut watchers = Vec::new();
    for _ in 0..4 {
        tokio::task::yield_now().await;
        watchers.push(store.watch("/u/", start).await.expect("watch"));
    }
    let acks = writers.await.expect("writers");
    let last = acks.last().expect("acks").kv.mod_revision;
    for watcher in &mut watchers {
        let events = flatten(&collect_until(watcher, last).await);
        let mut seen = HashSet::new();
        for event in &events {
            assert!(
                seen.insert(event.revision()),
                "revision {} delivered twice",
                event.revision()
            );
        }
    }
}

/// Atomic: every acknowledged write is exactly one event at the acknowledged revision, carrying
/// the acknowledged key, kind and value, never split across responses.
pub async fn watch_atomic(store: Arc<dyn Store>) {
    let mut watch = store.watch("/a/", 0).await.expect("watch");
    let acks = concurrent_writes(&store, "/a/", 6, 6).await;
    let last = acks.last().expect("acks").kv.mod_revision;
    let responses = collect_until(&mut watch, last).await;
    let mut response_of: HashMap<Revision, usize> = HashMap::new();
    for (index, response) in responses.iter().enumerate() {
        for event in response {
            let earlier = response_of.insert(event.revision(), index);
            assert!(
                earlier.is_none(),
                "the events of revision {} are split",
                event.revision()
            );
        }
    }
    let by_revision: BTreeMap<Revision, &WatchEvent> = responses
        .iter()
        .flatten()
        .map(|event| (event.revision(), event))
        .collect();
    for ack in &acks {
        let event = by_revision.get(&ack.kv.mod_revision).unwrap_or_else(|| {
            panic!("no event for acknowledged revision {}", ack.kv.mod_revision)
        });
        assert_eq!(event.kind, ack.kind);
        assert_eq!(event.kv, ack.kv);
    }
    assert_eq!(by_revision.len(), acks.len(), "one event per write");
}

/// Reliable: a watcher sees every event at or after its start revision under its prefix, with
/// no gap, whether it starts in the past (replay), now, or while writes are in flight.
pub async fn watch_reliable(store: Arc<dyn Store>) {
    // History before the watchers start, partly under another prefix.
    let early = concurrent_writes(&store, "/rel/", 3, 4).await;
    concurrent_writes(&store, "/other/", 2, 4).await;
    let from_past = early[early.len() / 2].kv.mod_revision;
    let mut past = store
        .watch("/rel/", from_past)
        .await
        .expect("watch from the past");
    let now = store.current_revision().await.expect("revision") + 1;
    let mut live = store.watch("/rel/", 0).await.expect("watch from now");
    let late = {
        let a = concurrent_writes(&store, "/rel/x", 4, 5);
        let b = concurrent_writes(&store, "/other/x", 4, 5);
        let (mut a, b) = futures::join!(a, b);
        a.extend(b);
        a.sort_by_key(|ack| ack.kv.mod_revision);
        a
    };
    let last = late
        .iter()
        .rev()
        .find(|ack| ack.kv.key.starts_with("/rel/"))
        .expect("a late write under /rel/")
        .kv
        .mod_revision;
    let all: Vec<Ack> = early.iter().chain(late.iter()).cloned().collect();
    let past_events = flatten(&collect_until(&mut past, last).await);
    assert_matches_acks(&past_events, &all, from_past, "/rel/");
    let live_events = flatten(&collect_until(&mut live, last).await);
    assert_matches_acks(&live_events, &all, now, "/rel/");
}

/// Resumable: after a disconnect, a watch from revision N delivers exactly the events at or after
/// N, with prev_kv for updates and deletes.
pub async fn watch_resumable(store: Arc<dyn Store>) {
    let mut watch = store.watch("/res/", 0).await.expect("watch");
    let first = concurrent_writes(&store, "/res/", 2, 3).await;
    let first_last = first.last().expect("acks").kv.mod_revision;
    let seen = flatten(&collect_until(&mut watch, first_last).await);
    drop(watch);
    let resume_from = seen.last().expect("events").revision() + 1;

    let second = concurrent_writes(&store, "/res/more", 2, 3).await;
    let second_last = second.last().expect("acks").kv.mod_revision;
    let mut resumed = store.watch("/res/", resume_from).await.expect("resume");
    let events = flatten(&collect_until(&mut resumed, second_last).await);
    assert_matches_acks(&events, &second, resume_from, "/res/");

    // Resuming from the middle of the first batch replays exactly its tail, then the rest.
    let middle = first[first.len() / 2].kv.mod_revision;
    let mut from_middle = store
        .watch("/res/", middle)
        .await
        .expect("resume from middle");
    let events = flatten(&collect_until(&mut from_middle, second_last).await);
    let all: Vec<Ack> = first.iter().chain(second.iter()).cloned().collect();
    assert_matches_acks(&events, &all, middle, "/res/");
    for event in &events {
        let is_create = event.kind == EventKind::Put && event.kv.version == 1;
        assert_eq!(
            event.prev_kv.is_some(),
            !is_create,
            "prev_kv on update/delete only: {event:?}"
        );
        if let Some(prev) = &event.prev_kv {
            assert!(prev.mod_revision < event.revision());
            assert_eq!(prev.key, event.kv.key);
        }
    }
}

/// Bookmarkable: a progress notification reports a revision at or past the last delivered event
/// and past every write acknowledged before the request, also when those writes are outside the
/// watched prefix.
pub async fn watch_bookmarkable(store: Arc<dyn Store>) {
    let mut watch = store.watch("/b/", 0).await.expect("watch");
    watch.request_progress();
    let current = store.current_revision().await.expect("revision");
    match next_response(&mut watch).await {
        WatchResponse::Progress(revision) => assert!(revision >= current, "{revision} < {current}"),
        other => panic!("expected progress, got {other:?}"),
    }

    let put = store.create("/b/x", value("1")).await.expect("create");
    let other = store
        .create("/elsewhere", value("1"))
        .await
        .expect("create elsewhere");
    watch.progress_requester().request();
    let mut last_event = 0;
    loop {
        match next_response(&mut watch).await {
            WatchResponse::Events(events) => {
                last_event = events.last().map_or(last_event, WatchEvent::revision);
            }
            WatchResponse::Progress(revision) => {
                assert_eq!(
                    last_event, put.mod_revision,
                    "the event precedes the progress"
                );
                assert!(
                    revision >= last_event,
                    "progress {revision} behind event {last_event}"
                );
                assert!(
                    revision >= other.mod_revision,
                    "progress {revision} behind acknowledged write {}",
                    other.mod_revision
                );
                break;
            }
        }
    }
}

async fn next_response(stream: &mut WatchStream) -> WatchResponse {
    tokio::time::timeout(WATCH_TIMEOUT, stream.next())
        .await
        .expect("watch response in time")
        .expect("stream open")
        .expect("no error")
}

/// A consumer that does not read while many commits happen either gets every event afterwards or
/// sees the stream fail; it never misses events silently.
pub async fn watch_slow_consumer_loses_nothing_silently(store: Arc<dyn Store>) {
    let mut watch = store.watch("/slow/", 0).await.expect("watch");
    let mut acks = Vec::new();
    // Sequential writes: one commit each, more than an in-memory buffer is likely to hold.
    for i in 0..1500 {
        let kv = store
            .create(&format!("/slow/{i:05}"), value("x"))
            .await
            .expect("create");
        acks.push(Ack {
            kind: EventKind::Put,
            kv,
        });
    }
    let last = acks.last().expect("acks").kv.mod_revision;
    let mut events = Vec::new();
    let mut failed = false;
    while events
        .last()
        .is_none_or(|event: &WatchEvent| event.revision() < last)
    {
        match tokio::time::timeout(WATCH_TIMEOUT, watch.next())
            .await
            .expect("watch response in time")
        {
            Some(Ok(WatchResponse::Events(batch))) => events.extend(batch),
            Some(Ok(WatchResponse::Progress(_))) => {}
            Some(Err(_)) => {
                failed = true;
                break;
            }
            None => panic!("stream ended without an error"),
        }
    }
    let first = acks.first().expect("acks").kv.mod_revision;
    let delivered: Vec<Revision> = events.iter().map(WatchEvent::revision).collect();
    let expected: Vec<Revision> = (first..first + delivered.len() as i64).collect();
    assert_eq!(delivered, expected, "delivered events have no gap");
    if !failed {
        assert_eq!(delivered.len(), acks.len());
    }
}
