//! Watches on the redb backend: replay from the log table, then live commits, with no gap and no
//! duplicate.
//!
//! A watcher subscribes to the commit broadcast *before* it reads anything, and tracks `next`, the
//! lowest revision it has not delivered. While catching up it reads the log in chunks from `next`
//! up to the revision of its read snapshot; every commit after that snapshot is broadcast after
//! the subscription, so it arrives on the channel, and commits already replayed are skipped by
//! revision. A watcher too slow for the bounded broadcast buffer (it reports `Lagged`) does not
//! lose events: it goes back to catching up from the log, and only fails with
//! [`Error::Compacted`] if the history it needs was compacted meanwhile.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures::StreamExt;
use redb::ReadableDatabase;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

use super::codec::{self, HISTORY, LOG};
use super::writer::Commit;
use super::{Shared, blocking, read_meta};
use crate::error::{Error, Result};
use crate::types::{Revision, WatchEvent};
use crate::watch::{ProgressRequester, WatchResponse, WatchStream};

/// Revisions read from the log per catch-up step; bounds the size of one response.
const CATCH_UP_CHUNK: i64 = 1000;

/// Starts a watch of `prefix` from `from_revision` (0 = after the current revision).
pub(super) fn start(
    shared: Arc<Shared>,
    events: &broadcast::Sender<Arc<Commit>>,
    prefix: String,
    from_revision: Revision,
) -> Result<WatchStream> {
    // Subscribe first, then read the revision: see the module docs.
    let live = events.subscribe();
    let current = shared.current.load(Ordering::SeqCst);
    let compacted = shared.compacted.load(Ordering::SeqCst);
    let progress = ProgressRequester::new();
    let mut state = Watcher {
        shared,
        prefix,
        live,
        progress: progress.clone(),
        next: current + 1,
        seen: current,
        catching_up: false,
        done: false,
    };
    if from_revision > 0 {
        if from_revision < compacted {
            return Err(Error::Compacted {
                requested: from_revision,
                compacted,
            });
        }
        state.next = from_revision;
        state.seen = current.min(from_revision - 1);
        state.catching_up = true;
    }
    let stream = futures::stream::unfold(state, |mut state| async move {
        let response = state.next_response().await?;
        Some((response, state))
    });
    Ok(WatchStream::new(stream.boxed(), progress))
}

struct Watcher {
    shared: Arc<Shared>,
    prefix: String,
    live: broadcast::Receiver<Arc<Commit>>,
    progress: ProgressRequester,
    /// Lowest revision not yet delivered.
    next: Revision,
    /// Every revision up to this one has been looked at (for progress notifications).
    seen: Revision,
    catching_up: bool,
    done: bool,
}

/// One chunk of history read from the log.
struct Replay {
    events: Vec<WatchEvent>,
    /// The last revision the chunk covers.
    upto: Revision,
    /// Whether `upto` was the current revision of the snapshot read.
    complete: bool,
}

impl Watcher {
    async fn next_response(&mut self) -> Option<Result<WatchResponse>> {
        if self.done {
            return None;
        }
        loop {
            if self.catching_up {
                let shared = Arc::clone(&self.shared);
                let prefix = self.prefix.clone();
                let next = self.next;
                match blocking(move || replay(&shared, &prefix, next)).await {
                    Ok(replay) => {
                        self.seen = self.seen.max(replay.upto);
                        self.next = self.next.max(replay.upto + 1);
                        self.catching_up = !replay.complete;
                        if !replay.events.is_empty() {
                            return Some(Ok(WatchResponse::Events(replay.events)));
                        }
                    }
                    Err(err) => return Some(self.fail(err)),
                }
                continue;
            }
            tokio::select! {
                // Commits first: a progress notification must not overtake an event that
                // was already broadcast.
                biased;
                received = self.live.recv() => match received {
                    Ok(commit) => {
                        if let Some(response) = self.accept(&commit) {
                            return Some(Ok(response));
                        }
                    }
                    Err(RecvError::Lagged(skipped)) => {
                        tracing::debug!(prefix = %self.prefix, skipped, next = self.next,
                            "watcher lagged; catching up from the log");
                        self.shared.stats.watch_catch_ups.fetch_add(1, Ordering::Relaxed);
                        self.catching_up = true;
                    }
                    Err(RecvError::Closed) => return Some(self.fail(Error::Closed)),
                },
                () = self.progress.requested() => {
                    return Some(Ok(WatchResponse::Progress(self.seen)));
                }
            }
        }
    }

    /// Filters a live commit down to this watcher's new events.
    fn accept(&mut self, commit: &Commit) -> Option<WatchResponse> {
        if commit.last < self.next {
            return None;
        }
        let events: Vec<WatchEvent> = commit
            .events
            .iter()
            .filter(|event| event.revision() >= self.next && event.kv.key.starts_with(&self.prefix))
            .cloned()
            .collect();
        self.seen = self.seen.max(commit.last);
        self.next = commit.last + 1;
        (!events.is_empty()).then_some(WatchResponse::Events(events))
    }

    fn fail(&mut self, err: Error) -> Result<WatchResponse> {
        self.done = true;
        Err(err)
    }
}

/// Reads the events of revisions `[next, next + CATCH_UP_CHUNK)` (capped at the current
/// revision) under `prefix`, in one snapshot.
fn replay(shared: &Shared, prefix: &str, next: Revision) -> Result<Replay> {
    let txn = shared.db.begin_read().map_err(Error::storage)?;
    let (current, compacted) = read_meta(&txn)?;
    if next < compacted {
        return Err(Error::Compacted {
            requested: next,
            compacted,
        });
    }
    if next > current {
        return Ok(Replay {
            events: Vec::new(),
            upto: current,
            complete: true,
        });
    }
    let upto = current.min(next.saturating_add(CATCH_UP_CHUNK - 1));
    let log = txn.open_table(LOG).map_err(Error::storage)?;
    let history = txn.open_table(HISTORY).map_err(Error::storage)?;
    let mut events = Vec::new();
    for entry in log.range(next..=upto).map_err(Error::storage)? {
        let (revision, key) = entry.map_err(Error::storage)?;
        let key = key.value();
        if key.starts_with(prefix) {
            events.push(codec::history_event(&history, key, revision.value())?);
        }
    }
    Ok(Replay {
        events,
        upto,
        complete: upto == current,
    })
}
