//! The embedded backend: [`RedbStore`], the store on one redb file (layout in `codec`, writes in
//! `writer`, watches in `watcher`).

mod codec;
mod watcher;
mod writer;

use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::thread::JoinHandle;

use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use redb::{Database, Durability, ReadableDatabase, ReadableTable};
use tokio::sync::{broadcast, mpsc, oneshot};

use self::codec::{HISTORY, KV, LOG, META, META_COMPACTED, META_CURRENT};
use self::writer::{Commit, Op, WriteRequest};
use crate::error::{Error, Result};
use crate::types::{KeyValue, RangeOptions, RangeResult, Revision};
use crate::watch::WatchStream;
use crate::{FIRST_REVISION, Store};

/// Queued writes waiting for the writer; a full queue makes writers wait (backpressure).
const WRITE_QUEUE: usize = 8 * 1024;
/// Commits kept for watchers; a watcher further behind catches up from the log table.
const EVENT_BUFFER: usize = 1024;

/// Counters of the redb backend, for tests and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Durable transactions committed (each one fsync).
    pub commits: u64,
    /// Operations acknowledged as successful (writes and compactions).
    pub writes: u64,
    /// Times a watcher fell behind the in-memory event buffer and caught up from the log.
    pub watch_catch_ups: u64,
}

#[derive(Debug, Default)]
struct Counters {
    commits: AtomicU64,
    writes: AtomicU64,
    watch_catch_ups: AtomicU64,
}

/// State shared by the store handle, the writer thread and the watchers.
struct Shared {
    db: Database,
    /// The file, for its size in `status`.
    path: std::path::PathBuf,
    /// Revision of the last commit, published after the commit and before its events.
    current: AtomicI64,
    compacted: AtomicI64,
    stats: Counters,
}

/// The embedded store: one redb file, one writer thread doing group commit, in-process watch
/// fan-out. See `docs/store.md`.
pub struct RedbStore {
    shared: Arc<Shared>,
    writes: mpsc::Sender<WriteRequest>,
    events: broadcast::Sender<Arc<Commit>>,
    writer: JoinHandle<()>,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore")
            .field("current", &self.shared.current.load(Ordering::Relaxed))
            .field("compacted", &self.shared.compacted.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl RedbStore {
    /// Opens (or creates) the store file at `path` and starts its writer thread.
    ///
    /// Every write acknowledged before a crash is present after reopening, and the revision never
    /// goes backwards. The file can be open in one process at a time.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let db = Database::create(path.as_ref()).map_err(Error::storage)?;
        let (current, compacted) = init(&db)?;
        let shared = Arc::new(Shared {
            db,
            path: path.as_ref().to_path_buf(),
            current: AtomicI64::new(current),
            compacted: AtomicI64::new(compacted),
            stats: Counters::default(),
        });
        let (writes, requests) = mpsc::channel(WRITE_QUEUE);
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let writer = {
            let shared = Arc::clone(&shared);
            let events = events.clone();
            std::thread::Builder::new()
                .name("skiff-store-writer".to_owned())
                .spawn(move || writer::run(shared, requests, events))
                .map_err(|err| Error::storage(redb::Error::Io(err)))?
        };
        tracing::debug!(path = %path.as_ref().display(), current, compacted, "store opened");
        Ok(Self {
            shared,
            writes,
            events,
            writer,
        })
    }

    /// Commit and write counters.
    pub fn stats(&self) -> Stats {
        Stats {
            commits: self.shared.stats.commits.load(Ordering::Relaxed),
            writes: self.shared.stats.writes.load(Ordering::Relaxed),
            watch_catch_ups: self.shared.stats.watch_catch_ups.load(Ordering::Relaxed),
        }
    }

    /// Stops the writer after the queued writes and waits for it. The file is released once the
    /// last watch stream of this store is dropped too.
    pub async fn close(self) -> Result<()> {
        let Self {
            shared,
            writes,
            events,
            writer,
        } = self;
        drop((shared, writes, events));
        tokio::task::spawn_blocking(move || writer.join())
            .await
            .map_err(|_| Error::Closed)?
            .map_err(|_| Error::Closed)
    }

    async fn write(&self, op: Op) -> Result<Option<KeyValue>> {
        let (reply, outcome) = oneshot::channel();
        self.writes
            .send(WriteRequest { op, reply })
            .await
            .map_err(|_| Error::Closed)?;
        outcome.await.map_err(|_| Error::Closed)?
    }

    async fn write_kv(&self, op: Op) -> Result<KeyValue> {
        self.write(op).await?.ok_or_else(|| Error::Corrupt {
            detail: "writer answered a key write without a key-value".to_owned(),
        })
    }
}

/// Creates the tables on first open and reads `(current, compacted)`.
fn init(db: &Database) -> Result<(Revision, Revision)> {
    let mut txn = db.begin_write().map_err(Error::storage)?;
    txn.set_durability(Durability::Immediate)
        .map_err(Error::storage)?;
    let revisions = {
        txn.open_table(KV).map_err(Error::storage)?;
        txn.open_table(HISTORY).map_err(Error::storage)?;
        txn.open_table(LOG).map_err(Error::storage)?;
        let mut meta = txn.open_table(META).map_err(Error::storage)?;
        let current = meta
            .get(META_CURRENT)
            .map_err(Error::storage)?
            .map(|guard| guard.value());
        let compacted = meta
            .get(META_COMPACTED)
            .map_err(Error::storage)?
            .map_or(0, |guard| guard.value());
        match current {
            Some(current) => (current, compacted),
            None => {
                meta.insert(META_CURRENT, FIRST_REVISION)
                    .map_err(Error::storage)?;
                meta.insert(META_COMPACTED, 0).map_err(Error::storage)?;
                (FIRST_REVISION, 0)
            }
        }
    };
    txn.commit().map_err(Error::storage)?;
    Ok(revisions)
}

impl Shared {
    fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let txn = self.db.begin_read().map_err(Error::storage)?;
        let kv = txn.open_table(KV).map_err(Error::storage)?;
        match kv.get(key).map_err(Error::storage)? {
            Some(guard) => Ok(Some(codec::decode_live(key, guard.value())?)),
            None => Ok(None),
        }
    }

    fn range(&self, prefix: &str, options: &RangeOptions) -> Result<RangeResult> {
        let txn = self.db.begin_read().map_err(Error::storage)?;
        let (current, compacted) = read_meta(&txn)?;
        let revision = match options.revision {
            Some(revision) if revision > 0 => revision,
            _ => current,
        };
        if revision > current {
            return Err(Error::FutureRevision {
                requested: revision,
                current,
            });
        }
        if revision < compacted {
            return Err(Error::Compacted {
                requested: revision,
                compacted,
            });
        }
        let limit = options
            .limit
            .filter(|limit| *limit > 0)
            .unwrap_or(usize::MAX);
        let start = match &options.start_after {
            Some(after) if after.as_str() >= prefix => Bound::Excluded(after.as_str()),
            _ => Bound::Included(prefix),
        };
        let mut page = Page {
            result: RangeResult {
                kvs: Vec::new(),
                revision,
                more: false,
            },
            limit,
        };
        if revision == current {
            let kv = txn.open_table(KV).map_err(Error::storage)?;
            for entry in kv
                .range::<&str>((start, Bound::Unbounded))
                .map_err(Error::storage)?
            {
                let (key, value) = entry.map_err(Error::storage)?;
                let key = key.value();
                if !key.starts_with(prefix) {
                    break;
                }
                if !page.push(codec::decode_live(key, value.value())?) {
                    break;
                }
            }
        } else {
            let history = txn.open_table(HISTORY).map_err(Error::storage)?;
            let lower = match start {
                Bound::Excluded(after) => Bound::Excluded((after, i64::MAX)),
                _ => Bound::Included((prefix, i64::MIN)),
            };
            // Versions of one key are adjacent and ascending; the last one at or below
            // `revision` is what the key looked like then (absent if it was a delete).
            let mut group: Option<(String, Option<KeyValue>)> = None;
            for entry in history
                .range::<(&str, i64)>((lower, Bound::Unbounded))
                .map_err(Error::storage)?
            {
                let (key, value) = entry.map_err(Error::storage)?;
                let (key, rev) = key.value();
                if !key.starts_with(prefix) {
                    break;
                }
                if group.as_ref().is_none_or(|(k, _)| k != key) {
                    if let Some((_, Some(kv))) = group.take()
                        && !page.push(kv)
                    {
                        return Ok(page.result);
                    }
                    group = Some((key.to_owned(), None));
                }
                if rev <= revision
                    && let Some((_, seen)) = group.as_mut()
                {
                    let record = codec::decode_history(key, value.value())?;
                    *seen = match record.kind {
                        crate::EventKind::Put => Some(codec::history_kv(key, rev, &record)),
                        crate::EventKind::Delete => None,
                    };
                }
            }
            if let Some((_, Some(kv))) = group {
                page.push(kv);
            }
        }
        Ok(page.result)
    }
}

/// A range answer being filled up to its limit.
struct Page {
    result: RangeResult,
    limit: usize,
}

impl Page {
    /// Adds `kv`, or marks `more` when the page is full; returns whether to keep scanning.
    fn push(&mut self, kv: KeyValue) -> bool {
        if self.result.kvs.len() >= self.limit {
            self.result.more = true;
            return false;
        }
        self.result.kvs.push(kv);
        true
    }
}

/// Reads `(current, compacted)` in a read transaction.
fn read_meta(txn: &redb::ReadTransaction) -> Result<(Revision, Revision)> {
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

/// Runs a blocking read off the async workers.
async fn blocking<T: Send + 'static>(
    read: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(read)
        .await
        .map_err(|_| Error::Closed)?
}

impl Store for RedbStore {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<KeyValue>>> {
        // A point read is a few B-tree page lookups in memory: cheaper inline than a
        // thread hop.
        let result = self.shared.get(key);
        async move { result }.boxed()
    }

    fn range<'a>(
        &'a self,
        prefix: &'a str,
        options: RangeOptions,
    ) -> BoxFuture<'a, Result<RangeResult>> {
        let shared = Arc::clone(&self.shared);
        let prefix = prefix.to_owned();
        blocking(move || shared.range(&prefix, &options)).boxed()
    }

    fn create<'a>(&'a self, key: &'a str, value: Bytes) -> BoxFuture<'a, Result<KeyValue>> {
        self.write_kv(Op::Create {
            key: key.to_owned(),
            value,
        })
        .boxed()
    }

    fn update<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        expected_mod_revision: Option<Revision>,
    ) -> BoxFuture<'a, Result<KeyValue>> {
        self.write_kv(Op::Update {
            key: key.to_owned(),
            value,
            expected: expected_mod_revision,
        })
        .boxed()
    }

    fn delete<'a>(
        &'a self,
        key: &'a str,
        expected_mod_revision: Option<Revision>,
    ) -> BoxFuture<'a, Result<KeyValue>> {
        self.write_kv(Op::Delete {
            key: key.to_owned(),
            expected: expected_mod_revision,
        })
        .boxed()
    }

    fn watch<'a>(
        &'a self,
        prefix: &'a str,
        from_revision: Revision,
    ) -> BoxFuture<'a, Result<WatchStream>> {
        let result = watcher::start(
            Arc::clone(&self.shared),
            &self.events,
            prefix.to_owned(),
            from_revision,
        );
        async move { result }.boxed()
    }

    fn current_revision(&self) -> BoxFuture<'_, Result<Revision>> {
        let current = self.shared.current.load(Ordering::SeqCst);
        async move { Ok(current) }.boxed()
    }

    fn compact(&self, revision: Revision) -> BoxFuture<'_, Result<()>> {
        async move {
            self.write(Op::Compact { revision }).await?;
            Ok(())
        }
        .boxed()
    }

    fn compacted_revision(&self) -> BoxFuture<'_, Result<Revision>> {
        let compacted = self.shared.compacted.load(Ordering::SeqCst);
        async move { Ok(compacted) }.boxed()
    }

    fn status(&self) -> BoxFuture<'_, Result<crate::StoreStatus>> {
        let shared = Arc::clone(&self.shared);
        blocking(move || {
            use redb::ReadableTableMetadata;
            let txn = shared.db.begin_read().map_err(Error::storage)?;
            let keys = txn
                .open_table(codec::KV)
                .map_err(Error::storage)?
                .len()
                .map_err(Error::storage)?;
            Ok(crate::StoreStatus {
                backend: "embedded".into(),
                revision: shared.current.load(Ordering::SeqCst),
                compacted_revision: shared.compacted.load(Ordering::SeqCst),
                size_bytes: std::fs::metadata(&shared.path).map(|m| m.len()).ok(),
                keys: Some(keys),
                members: Vec::new(),
            })
        })
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::ReadableTableMetadata;

    fn table_sizes(store: &RedbStore) -> (u64, u64, u64) {
        let txn = store.shared.db.begin_read().expect("read txn");
        let kv = txn.open_table(KV).expect("kv").len().expect("len");
        let history = txn
            .open_table(HISTORY)
            .expect("history")
            .len()
            .expect("len");
        let log = txn.open_table(LOG).expect("log").len().expect("len");
        (kv, history, log)
    }

    #[tokio::test]
    async fn compaction_reclaims_superseded_versions_and_tombstones() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = RedbStore::open(dir.path().join("s.redb")).expect("open");
        store
            .create("/a", Bytes::from_static(b"1"))
            .await
            .expect("create");
        store
            .update("/a", Bytes::from_static(b"2"), None)
            .await
            .expect("update");
        store
            .update("/a", Bytes::from_static(b"3"), None)
            .await
            .expect("update");
        store
            .create("/b", Bytes::from_static(b"1"))
            .await
            .expect("create");
        store.delete("/b", None).await.expect("delete");
        let c = store
            .create("/c", Bytes::from_static(b"1"))
            .await
            .expect("create");
        assert_eq!(table_sizes(&store), (2, 6, 6));

        store.compact(c.mod_revision).await.expect("compact");
        // /a keeps its newest version, /b (deleted) nothing, /c its write at the compacted
        // revision; the log keeps only the compacted revision itself.
        assert_eq!(table_sizes(&store), (2, 2, 1));
        let listed = store
            .range("/", RangeOptions::default())
            .await
            .expect("range");
        let values: Vec<(&str, &[u8])> = listed
            .kvs
            .iter()
            .map(|kv| (kv.key.as_str(), &kv.value[..]))
            .collect();
        assert_eq!(values, [("/a", &b"3"[..]), ("/c", &b"1"[..])]);
    }

    #[tokio::test]
    async fn failed_writes_in_a_batch_do_not_commit_or_consume_revisions() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = RedbStore::open(dir.path().join("s.redb")).expect("open");
        let a = store
            .create("/a", Bytes::from_static(b"1"))
            .await
            .expect("create");
        let commits = store.stats().commits;
        let (conflict, missing, exists) = futures::join!(
            store.update("/a", Bytes::from_static(b"2"), Some(a.mod_revision + 5)),
            store.delete("/nope", None),
            store.create("/a", Bytes::from_static(b"3")),
        );
        assert!(matches!(conflict, Err(Error::Conflict { .. })));
        assert!(matches!(missing, Err(Error::NotFound { .. })));
        assert!(matches!(exists, Err(Error::AlreadyExists { .. })));
        assert_eq!(store.stats().commits, commits, "nothing to commit");
        assert_eq!(
            store.current_revision().await.expect("revision"),
            a.mod_revision
        );
    }
}
