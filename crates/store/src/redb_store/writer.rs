//! The single writer of the redb backend: group commit and revision sequencing.
//!
//! One OS thread owns every write transaction. It takes all queued requests (up to
//! [`MAX_BATCH`]), applies them in order in one transaction — each successful write gets the next
//! revision, each compare-and-swap sees the writes before it — commits once with
//! `Durability::Immediate`, then publishes the watch events and only then acknowledges. So an
//! acknowledged write is on disk, a watcher never sees an uncommitted write, and throughput is
//! not capped at one write per fsync.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use redb::{Durability, ReadableTable, Table, WriteTransaction};
use tokio::sync::{broadcast, mpsc, oneshot};

use super::Shared;
use super::codec::{self, HISTORY, HistoryRecord, KV, LOG, META, META_COMPACTED, META_CURRENT};
use crate::error::{Error, Result};
use crate::types::{EventKind, KeyValue, Revision, WatchEvent};

/// Most requests folded into one transaction; bounds the latency of the first of them.
pub(super) const MAX_BATCH: usize = 1024;

/// A write the writer thread performs.
#[derive(Debug)]
pub(super) enum Op {
    Create {
        key: String,
        value: Bytes,
    },
    Update {
        key: String,
        value: Bytes,
        expected: Option<Revision>,
    },
    Delete {
        key: String,
        expected: Option<Revision>,
    },
    Compact {
        revision: Revision,
    },
}

/// A queued write and where its outcome goes: the written key-value, or `None` for a compaction.
pub(super) struct WriteRequest {
    pub op: Op,
    pub reply: oneshot::Sender<Result<Option<KeyValue>>>,
}

/// The events of one committed transaction, broadcast to watchers after the commit.
#[derive(Debug)]
pub(super) struct Commit {
    /// The last revision of the transaction; watchers have seen everything up to it.
    pub last: Revision,
    /// One event per write, in revision order.
    pub events: Vec<WatchEvent>,
}

/// Runs until every sender of `requests` is dropped.
pub(super) fn run(
    shared: Arc<Shared>,
    mut requests: mpsc::Receiver<WriteRequest>,
    events: broadcast::Sender<Arc<Commit>>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = requests.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match requests.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        process(&shared, &mut batch, &events);
    }
}

/// What one transaction did.
struct Applied {
    outcomes: Vec<Result<Option<KeyValue>>>,
    events: Vec<WatchEvent>,
    current: Revision,
    compacted: Revision,
    changed: bool,
}

fn process(
    shared: &Shared,
    batch: &mut Vec<WriteRequest>,
    events: &broadcast::Sender<Arc<Commit>>,
) {
    let result = apply_batch(shared, batch.iter().map(|request| &request.op));
    let outcomes = match result {
        Ok(applied) => {
            if applied.changed {
                shared.stats.commits.fetch_add(1, Ordering::Relaxed);
                // Order matters for watchers: a watcher subscribes to `events` and then reads
                // the current revision, so the revision is published first — any commit newer
                // than what a watcher read is broadcast after it subscribed.
                shared.current.store(applied.current, Ordering::SeqCst);
                shared.compacted.store(applied.compacted, Ordering::SeqCst);
                if !applied.events.is_empty() {
                    tracing::trace!(
                        revision = applied.current,
                        events = applied.events.len(),
                        "store commit"
                    );
                    // No receiver is fine: nobody watches.
                    let _ = events.send(Arc::new(Commit {
                        last: applied.current,
                        events: applied.events,
                    }));
                }
            }
            applied.outcomes
        }
        Err(err) => {
            tracing::error!(error = %err, writes = batch.len(), "store commit failed");
            vec![Err(err); batch.len()]
        }
    };
    for (request, outcome) in batch.drain(..).zip(outcomes) {
        if outcome.is_ok() {
            shared.stats.writes.fetch_add(1, Ordering::Relaxed);
        }
        // The caller may have gone away; the write stands regardless.
        let _ = request.reply.send(outcome);
    }
}

/// The tables of one write transaction.
struct Tables<'t> {
    kv: Table<'t, &'static str, &'static [u8]>,
    history: Table<'t, (&'static str, i64), &'static [u8]>,
    log: Table<'t, i64, &'static str>,
}

/// Applies `ops` in one durable transaction. The outer error fails the whole batch (nothing was
/// committed); the inner results are per operation.
fn apply_batch<'o>(shared: &Shared, ops: impl Iterator<Item = &'o Op>) -> Result<Applied> {
    let mut txn = shared.db.begin_write().map_err(Error::storage)?;
    txn.set_durability(Durability::Immediate)
        .map_err(Error::storage)?;
    let (start_current, start_compacted) = read_meta(&txn)?;
    let mut applied = Applied {
        outcomes: Vec::new(),
        events: Vec::new(),
        current: start_current,
        compacted: start_compacted,
        changed: false,
    };
    {
        let mut tables = Tables {
            kv: txn.open_table(KV).map_err(Error::storage)?,
            history: txn.open_table(HISTORY).map_err(Error::storage)?,
            log: txn.open_table(LOG).map_err(Error::storage)?,
        };
        for op in ops {
            let outcome = apply_op(&mut tables, &mut applied, op)?;
            applied.outcomes.push(outcome);
        }
    }
    if !applied.changed {
        txn.abort().map_err(Error::storage)?;
        return Ok(applied);
    }
    {
        let mut meta = txn.open_table(META).map_err(Error::storage)?;
        meta.insert(META_CURRENT, applied.current)
            .map_err(Error::storage)?;
        meta.insert(META_COMPACTED, applied.compacted)
            .map_err(Error::storage)?;
    }
    txn.commit().map_err(Error::storage)?;
    Ok(applied)
}

/// Reads `(current, compacted)` from the meta table.
fn read_meta(txn: &WriteTransaction) -> Result<(Revision, Revision)> {
    let meta = txn.open_table(META).map_err(Error::storage)?;
    let current = meta
        .get(META_CURRENT)
        .map_err(Error::storage)?
        .map(|guard| guard.value())
        .ok_or_else(|| Error::Corrupt {
            detail: "missing current revision".to_owned(),
        })?;
    let compacted = meta
        .get(META_COMPACTED)
        .map_err(Error::storage)?
        .map_or(0, |guard| guard.value());
    Ok((current, compacted))
}

/// Applies one op. `Err` is a storage failure that aborts the batch; `Ok(Err)` is this op's own
/// failure (conflict, not found, ...), which leaves the transaction untouched.
fn apply_op(
    tables: &mut Tables<'_>,
    applied: &mut Applied,
    op: &Op,
) -> Result<Result<Option<KeyValue>>> {
    match op {
        Op::Create { key, value } => {
            if key.is_empty() {
                return Ok(Err(Error::EmptyKey));
            }
            if tables
                .kv
                .get(key.as_str())
                .map_err(Error::storage)?
                .is_some()
            {
                return Ok(Err(Error::AlreadyExists { key: key.clone() }));
            }
            let revision = applied.current + 1;
            let kv = KeyValue {
                key: key.clone(),
                value: value.clone(),
                create_revision: revision,
                mod_revision: revision,
                version: 1,
            };
            write_put(tables, &kv, 0)?;
            record(applied, EventKind::Put, kv.clone(), None);
            Ok(Ok(Some(kv)))
        }
        Op::Update {
            key,
            value,
            expected,
        } => {
            let existing = match check_existing(tables, key, *expected)? {
                Ok(existing) => existing,
                Err(err) => return Ok(Err(err)),
            };
            let kv = KeyValue {
                key: key.clone(),
                value: value.clone(),
                create_revision: existing.create_revision,
                mod_revision: applied.current + 1,
                version: existing.version + 1,
            };
            write_put(tables, &kv, existing.mod_revision)?;
            record(applied, EventKind::Put, kv.clone(), Some(existing));
            Ok(Ok(Some(kv)))
        }
        Op::Delete { key, expected } => {
            let existing = match check_existing(tables, key, *expected)? {
                Ok(existing) => existing,
                Err(err) => return Ok(Err(err)),
            };
            let revision = applied.current + 1;
            tables.kv.remove(key.as_str()).map_err(Error::storage)?;
            let tombstone = HistoryRecord {
                kind: EventKind::Delete,
                create_revision: 0,
                version: 0,
                prev_mod_revision: existing.mod_revision,
                value: &[],
            };
            tables
                .history
                .insert(
                    (key.as_str(), revision),
                    codec::encode_history(&tombstone).as_slice(),
                )
                .map_err(Error::storage)?;
            tables
                .log
                .insert(revision, key.as_str())
                .map_err(Error::storage)?;
            let deleted = KeyValue {
                mod_revision: revision,
                ..existing.clone()
            };
            record(applied, EventKind::Delete, deleted.clone(), Some(existing));
            Ok(Ok(Some(deleted)))
        }
        Op::Compact { revision } => {
            let revision = *revision;
            if revision <= applied.compacted {
                return Ok(Err(Error::Compacted {
                    requested: revision,
                    compacted: applied.compacted,
                }));
            }
            if revision > applied.current {
                return Ok(Err(Error::FutureRevision {
                    requested: revision,
                    current: applied.current,
                }));
            }
            compact(tables, applied.compacted, revision)?;
            applied.compacted = revision;
            applied.changed = true;
            Ok(Ok(None))
        }
    }
}

/// Loads the live value of `key` and checks the caller's expected `mod_revision`.
fn check_existing(
    tables: &Tables<'_>,
    key: &str,
    expected: Option<Revision>,
) -> Result<Result<KeyValue>> {
    let existing = match tables.kv.get(key).map_err(Error::storage)? {
        Some(guard) => codec::decode_live(key, guard.value())?,
        None => {
            return Ok(Err(Error::NotFound {
                key: key.to_owned(),
            }));
        }
    };
    if let Some(expected) = expected
        && expected != existing.mod_revision
    {
        return Ok(Err(Error::Conflict {
            key: key.to_owned(),
            expected,
            current: Some(existing),
        }));
    }
    Ok(Ok(existing))
}

/// Writes the live record, the history record and the log entry of a put.
fn write_put(tables: &mut Tables<'_>, kv: &KeyValue, prev_mod_revision: Revision) -> Result<()> {
    let live = codec::encode_live(kv.create_revision, kv.mod_revision, kv.version, &kv.value);
    tables
        .kv
        .insert(kv.key.as_str(), live.as_slice())
        .map_err(Error::storage)?;
    let history = codec::encode_history(&HistoryRecord {
        kind: EventKind::Put,
        create_revision: kv.create_revision,
        version: kv.version,
        prev_mod_revision,
        value: &kv.value,
    });
    tables
        .history
        .insert((kv.key.as_str(), kv.mod_revision), history.as_slice())
        .map_err(Error::storage)?;
    tables
        .log
        .insert(kv.mod_revision, kv.key.as_str())
        .map_err(Error::storage)?;
    Ok(())
}

fn record(applied: &mut Applied, kind: EventKind, kv: KeyValue, prev_kv: Option<KeyValue>) {
    applied.current = kv.mod_revision;
    applied.changed = true;
    applied.events.push(WatchEvent { kind, kv, prev_kv });
}

/// Drops history no read at a revision `>= revision` can need.
///
/// For each key written in `[previous, revision)`, the newest version older than `revision` is
/// kept (a read at `revision` sees it, and it is the `prev_kv` of the key's next event) unless it
/// is a delete; every older version goes. Keys not written in that range already hold at most one
/// version older than `previous`, so they need no work.
fn compact(tables: &mut Tables<'_>, previous: Revision, revision: Revision) -> Result<()> {
    let mut keys = BTreeSet::new();
    for entry in tables
        .log
        .range(previous.max(0)..revision)
        .map_err(Error::storage)?
    {
        let (_, key) = entry.map_err(Error::storage)?;
        keys.insert(key.value().to_owned());
    }
    let mut doomed: Vec<Revision> = Vec::new();
    for key in &keys {
        doomed.clear();
        let mut newest: Option<(Revision, EventKind)> = None;
        for entry in tables
            .history
            .range((key.as_str(), i64::MIN)..(key.as_str(), revision))
            .map_err(Error::storage)?
        {
            let (k, v) = entry.map_err(Error::storage)?;
            let (_, rev) = k.value();
            let kind = codec::decode_history(key, v.value())?.kind;
            if let Some((older, _)) = newest.replace((rev, kind)) {
                doomed.push(older);
            }
        }
        if let Some((rev, EventKind::Delete)) = newest {
            doomed.push(rev);
        }
        for rev in &doomed {
            tables
                .history
                .remove((key.as_str(), *rev))
                .map_err(Error::storage)?;
        }
    }
    tables
        .log
        .retain_in(..revision, |_, _| false)
        .map_err(Error::storage)?;
    Ok(())
}
