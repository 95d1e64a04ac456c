//! Watches on etcd: one etcd watch stream per store watch, re-established from the last
//! delivered revision when the member serving it dies, so the caller sees no gap and no
//! duplicate.

use std::time::Duration;

use etcd_client::{EventType, WatchOptions, WatchRequestSender, WatchResponseStream};
use futures::StreamExt;
use tokio::sync::mpsc;

use super::{EtcdStore, MAX_MESSAGE_BYTES};
use crate::error::{Error, Result};
use crate::types::{EventKind, KeyValue, Revision, WatchEvent};
use crate::watch::{ProgressRequester, WatchResponse, WatchStream};

/// How long a watch may stay disconnected (all members down, no leader) before the stream fails
/// with [`Error::Unavailable`] and the caller re-lists.
const RECONNECT_FOR: Duration = Duration::from_secs(30);

/// Responses buffered between the etcd stream and the consumer; beyond it the task stops reading,
/// gRPC flow control pushes back, and etcd keeps the events for the watcher (it never drops them).
const BUFFER: usize = 64;

/// Starts a watch (see [`crate::Store::watch`]).
pub(super) async fn watch(
    store: &EtcdStore,
    prefix: &str,
    from_revision: Revision,
) -> Result<WatchStream> {
    let (key, end) = store.prefix_range(prefix);
    let start = if from_revision <= 0 {
        // etcd's "start from now" is the revision when the server gets the request, which may be
        // later than writes acknowledged after this call returns; name the revision instead.
        store.current_revision_inner().await? + 1
    } else {
        // etcd creates a watcher below the compacted revision and cancels it a little later;
        // the caller expects the error from this call, so read at that revision first.
        if store.is_compacted(from_revision).await? {
            return Err(store.compacted_error(from_revision).await);
        }
        from_revision
    };
    let target = Target {
        store: store.clone(),
        key,
        end,
    };
    let (sender, responses) = match target.open(start).await? {
        Opened::Watching(sender, responses) => (sender, responses),
        Opened::Compacted(compacted) => {
            return Err(Error::Compacted {
                requested: start,
                compacted,
            });
        }
    };
    let (tx, rx) = mpsc::channel(BUFFER);
    let progress = ProgressRequester::new();
    tokio::spawn(run(target, start, sender, responses, tx, progress.clone()));
    let stream = tokio_stream_from(rx);
    Ok(WatchStream::new(stream, progress))
}

fn tokio_stream_from(
    mut rx: mpsc::Receiver<Result<WatchResponse>>,
) -> futures::stream::BoxStream<'static, Result<WatchResponse>> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).boxed()
}

/// Learns etcd's compacted revision from the cancel of a watch from revision 1. The caller has
/// checked that revision 1 is compacted, so the cancel comes (etcd checks unsynced watchers
/// every 100 ms).
pub(super) async fn probe_compacted(store: &EtcdStore) -> Result<Revision> {
    let target = Target {
        store: store.clone(),
        key: format!("{}\0compaction-probe", store.inner.prefix).into_bytes(),
        end: Vec::new(),
    };
    match target.open(1).await? {
        Opened::Compacted(revision) => Ok(revision),
        Opened::Watching(..) => Err(store
            .unavailable("etcd did not report its compacted revision to a watch from revision 1")),
    }
}

/// What a watch is on.
struct Target {
    store: EtcdStore,
    key: Vec<u8>,
    end: Vec<u8>,
}

enum Opened {
    Watching(WatchRequestSender, Box<WatchResponseStream>),
    Compacted(Revision),
}

impl Target {
    /// Opens an etcd watch from `start` and waits until etcd confirms or refuses it. Without a
    /// range end (a probe), also waits briefly for a compaction cancel after the confirmation.
    async fn open(&self, start: Revision) -> Result<Opened> {
        let mut options = WatchOptions::new()
            .with_start_revision(start)
            .with_prev_key()
            .with_progress_notify();
        if !self.end.is_empty() {
            options = options.with_range(self.end.clone());
        }
        let probe = self.end.is_empty();
        let timeout = self.store.inner.timeout;
        let opened = tokio::time::timeout(timeout, async {
            let mut client = self
                .store
                .inner
                .client
                .watch_client()
                .max_decoding_message_size(MAX_MESSAGE_BYTES);
            let stream = client
                .watch(self.key.clone(), Some(options))
                .await
                .map_err(|e| self.store.unavailable(e))?;
            let (sender, mut responses) = stream.split();
            let mut created = false;
            loop {
                let message = if created && probe {
                    // The compaction cancel follows the confirmation within etcd's 100 ms sync
                    // period; give it a generous bound.
                    match tokio::time::timeout(Duration::from_secs(3), responses.message()).await {
                        Ok(message) => message,
                        Err(_) => return Ok(Opened::Watching(sender, Box::new(responses))),
                    }
                } else {
                    responses.message().await
                };
                let response = match message {
                    Ok(Some(response)) => response,
                    Ok(None) => return Err(self.store.unavailable("etcd closed the watch")),
                    Err(e) => return Err(self.store.unavailable(e)),
                };
                if response.canceled() {
                    if response.compact_revision() > 0 {
                        return Ok(Opened::Compacted(response.compact_revision()));
                    }
                    return Err(self.store.unavailable(format_args!(
                        "etcd cancelled the watch: {}",
                        response.cancel_reason()
                    )));
                }
                if response.created() {
                    created = true;
                    if !probe {
                        return Ok(Opened::Watching(sender, Box::new(responses)));
                    }
                }
            }
        })
        .await;
        opened.unwrap_or_else(|_| {
            Err(self
                .store
                .unavailable(format_args!("no watch confirmation within {timeout:?}")))
        })
    }

    fn event(&self, event: &etcd_client::Event) -> Result<WatchEvent> {
        let kv = event
            .kv()
            .ok_or_else(|| self.store.unexpected("a watch event without a key"))?;
        let prev_kv = event
            .prev_kv()
            .map(|kv| self.store.convert(kv))
            .transpose()?;
        match event.event_type() {
            EventType::Put => Ok(WatchEvent {
                kind: EventKind::Put,
                kv: self.store.convert(kv)?,
                prev_kv,
            }),
            EventType::Delete => {
                // etcd's delete event carries only the key and the delete's revision; the trait
                // promises the deleted value stamped with that revision.
                let revision = kv.mod_revision();
                let kv = match &prev_kv {
                    Some(prev) => KeyValue {
                        mod_revision: revision,
                        ..prev.clone()
                    },
                    None => self.store.convert(kv)?,
                };
                Ok(WatchEvent {
                    kind: EventKind::Delete,
                    kv,
                    prev_kv,
                })
            }
        }
    }
}

/// What one etcd response means for the stream.
enum Step {
    Send(WatchResponse),
    Skip,
    End(Error),
    Reconnect(String),
}

/// Turns one etcd response into a step; `next` is the first revision not delivered yet.
fn step(target: &Target, response: &etcd_client::WatchResponse, next: &mut Revision) -> Step {
    if response.canceled() {
        if response.compact_revision() > 0 {
            return Step::End(Error::Compacted {
                requested: *next,
                compacted: response.compact_revision(),
            });
        }
        return Step::Reconnect(format!(
            "etcd cancelled the watch: {}",
            response.cancel_reason()
        ));
    }
    if response.created() {
        return Step::Skip;
    }
    if response.events().is_empty() {
        // A progress notification: etcd's revision, never below what was already delivered.
        let revision = response.header().map_or(0, |h| h.revision());
        return Step::Send(WatchResponse::Progress(revision.max(*next - 1)));
    }
    let mut events = Vec::with_capacity(response.events().len());
    for event in response.events() {
        match target.event(event) {
            // After a reconnect etcd replays from `next`; anything older would be a duplicate.
            Ok(event) if event.revision() >= *next => events.push(event),
            Ok(_) => {}
            Err(e) => return Step::End(e),
        }
    }
    match events.last() {
        Some(last) => {
            *next = last.revision() + 1;
            Step::Send(WatchResponse::Events(events))
        }
        None => Step::Skip,
    }
}

/// Forwards one etcd watch to the consumer until the consumer goes away, re-opening it from the
/// first undelivered revision whenever the etcd stream breaks.
async fn run(
    target: Target,
    mut next: Revision,
    mut sender: WatchRequestSender,
    mut responses: Box<WatchResponseStream>,
    tx: mpsc::Sender<Result<WatchResponse>>,
    progress: ProgressRequester,
) {
    loop {
        let broken = loop {
            tokio::select! {
                () = tx.closed() => return,
                () = progress.requested() => {
                    if let Err(e) = sender.request_progress().await {
                        break e.to_string();
                    }
                }
                message = responses.message() => match message {
                    Ok(Some(response)) => match step(&target, &response, &mut next) {
                        Step::Send(item) => {
                            if tx.send(Ok(item)).await.is_err() {
                                return;
                            }
                        }
                        Step::Skip => {}
                        Step::End(e) => {
                            let _ = tx.send(Err(e)).await;
                            return;
                        }
                        Step::Reconnect(why) => break why,
                    },
                    Ok(None) => break "etcd closed the watch stream".to_owned(),
                    Err(e) => break e.to_string(),
                },
            }
        };
        tracing::info!(error = %broken, from = next, "etcd watch broke, re-watching");
        let deadline = tokio::time::Instant::now() + RECONNECT_FOR;
        let mut backoff = Duration::from_millis(100);
        let reopened = loop {
            if tx.is_closed() {
                return;
            }
            match target.open(next).await {
                Ok(Opened::Watching(s, r)) => break Ok((s, r)),
                Ok(Opened::Compacted(compacted)) => {
                    break Err(Error::Compacted {
                        requested: next,
                        compacted,
                    });
                }
                Err(e) if tokio::time::Instant::now() + backoff >= deadline => break Err(e),
                Err(e) => {
                    tracing::debug!(error = %e, "re-watch failed, retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        };
        match reopened {
            Ok((s, r)) => {
                sender = s;
                responses = r;
                // A progress request sent to the broken stream may be lost; ask again.
                progress.request();
            }
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        }
    }
}
