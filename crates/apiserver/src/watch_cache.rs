//! The watch cache: one store watch per resource fans out to every client watch of that
//! resource, with a window of recent events so clients can resume from a recent
//! resourceVersion without touching the store.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use serde_json::Value;
use skiff_store::{EventKind, Revision, Store, WatchResponse};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::error::{ApiError, Result};

/// Events kept per resource for resuming watches.
const WINDOW: usize = 2048;
/// Events a slow client watch may fall behind before it is closed (it then resumes).
const FANOUT_CAPACITY: usize = 4096;
/// How long a watch from a resourceVersion the store has not reached yet waits for it.
const FUTURE_REVISION_WAIT: Duration = Duration::from_secs(3);
/// How often the cache asks the store for a progress notification (bookmarks).
const PROGRESS_INTERVAL: Duration = Duration::from_secs(5);

/// One change to an object, shared by every watcher. The stored bytes are decoded only when a
/// watcher needs the value (a selector, a Table, the server's own loops), and at most once.
#[derive(Debug)]
pub struct CachedEvent {
    /// Put or delete.
    pub kind: EventKind,
    /// The store key.
    pub key: String,
    /// The revision of the write.
    pub revision: Revision,
    /// The stored object after the change (for a delete: its last state).
    raw: Bytes,
    /// The stored object before the change, if it existed.
    prev_raw: Option<(Bytes, Revision)>,
    object: OnceLock<Value>,
    prev: OnceLock<Option<Value>>,
    /// `object` as JSON, encoded once for all watchers that want it.
    json: OnceLock<String>,
}

impl CachedEvent {
    fn new(kind: EventKind, key: String, revision: Revision, raw: Bytes) -> Self {
        Self {
            kind,
            key,
            revision,
            raw,
            prev_raw: None,
            object: OnceLock::new(),
            prev: OnceLock::new(),
            json: OnceLock::new(),
        }
    }

    /// The object after the change, with its resourceVersion (the event's revision).
    pub fn object(&self) -> &Value {
        self.object.get_or_init(|| {
            decode_raw(&self.key, &self.raw, self.revision).unwrap_or_else(|e| {
                tracing::error!(key = %self.key, error = %e, "watch cache cannot decode an event");
                Value::Null
            })
        })
    }

    /// The object before the change, if it existed.
    pub fn prev(&self) -> Option<&Value> {
        self.prev
            .get_or_init(|| {
                self.prev_raw
                    .as_ref()
                    .and_then(|(raw, rev)| decode_raw(&self.key, raw, *rev).ok())
            })
            .as_ref()
    }

    /// Whether the object existed before the change.
    pub fn has_prev(&self) -> bool {
        self.prev_raw.is_some()
    }

    /// The stored bytes of the object after the change (no resourceVersion).
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }

    /// The object as JSON text: the stored bytes with the resourceVersion added, without a
    /// decode when they have the usual shape.
    pub fn json(&self) -> &str {
        self.json.get_or_init(|| {
            crate::rawjson::with_resource_version(&self.raw, self.revision)
                .unwrap_or_else(|| self.object().to_string())
        })
    }
}

fn decode_raw(key: &str, raw: &[u8], revision: Revision) -> Result<Value> {
    let mut obj: Value = serde_json::from_slice(raw)
        .map_err(|e| ApiError::Internal(format!("stored object {key} is corrupt: {e}")))?;
    crate::objects::set_resource_version(&mut obj, revision);
    Ok(obj)
}

/// What a client watch receives.
#[derive(Debug, Clone)]
pub enum CacheItem {
    /// A change.
    Event(Arc<CachedEvent>),
    /// Everything up to this revision has been delivered.
    Progress(Revision),
}

struct Window {
    events: VecDeque<Arc<CachedEvent>>,
    /// Every event after this revision is in `events`.
    oldest: Revision,
    /// The newest revision the cache has seen (event or progress).
    latest: Revision,
}

struct ResourceCache {
    window: Mutex<Window>,
    tx: broadcast::Sender<CacheItem>,
}

/// The watch caches of all resources.
#[derive(Clone)]
pub struct WatchCache {
    store: Arc<dyn Store>,
    caches: Arc<Mutex<HashMap<String, Arc<ResourceCache>>>>,
    shutdown: CancellationToken,
}

fn to_cached(ev: &skiff_store::WatchEvent) -> Result<CachedEvent> {
    let mut cached = CachedEvent::new(
        ev.kind,
        ev.kv.key.clone(),
        ev.revision(),
        ev.kv.value.clone(),
    );
    // A delete's object is the last state, stamped with the delete's revision (as decode did).
    cached.prev_raw = ev
        .prev_kv
        .as_ref()
        .map(|p| (p.value.clone(), p.mod_revision));
    Ok(cached)
}

impl WatchCache {
    /// A watch cache over `store`; its tasks stop when `shutdown` is cancelled.
    pub fn new(store: Arc<dyn Store>, shutdown: CancellationToken) -> Self {
        Self {
            store,
            caches: Arc::new(Mutex::new(HashMap::new())),
            shutdown,
        }
    }

    async fn cache_for(&self, prefix: &str) -> Result<Arc<ResourceCache>> {
        if let Some(c) = self.lock().get(prefix) {
            return Ok(c.clone());
        }
        let start = self.store.current_revision().await?;
        let stream = self.store.watch(prefix, start + 1).await?;
        let (tx, _) = broadcast::channel(FANOUT_CAPACITY);
        let cache = Arc::new(ResourceCache {
            window: Mutex::new(Window {
                events: VecDeque::new(),
                oldest: start,
                latest: start,
            }),
            tx,
        });
        {
            let mut caches = self.lock();
            if let Some(existing) = caches.get(prefix) {
                return Ok(existing.clone());
            }
            caches.insert(prefix.to_string(), cache.clone());
        }
        let this = self.clone();
        let prefix = prefix.to_string();
        let task_cache = cache.clone();
        tokio::spawn(async move {
            this.feed(&prefix, task_cache, stream).await;
            this.lock().remove(&prefix);
        });
        Ok(cache)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<ResourceCache>>> {
        self.caches.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn feed(
        &self,
        prefix: &str,
        cache: Arc<ResourceCache>,
        mut stream: skiff_store::WatchStream,
    ) {
        let mut ticker = tokio::time::interval(PROGRESS_INTERVAL);
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = ticker.tick() => stream.request_progress(),
                item = stream.next() => {
                    let Some(item) = item else { return };
                    match item {
                        Ok(WatchResponse::Events(events)) => {
                            let mut window = cache.window.lock().unwrap_or_else(|e| e.into_inner());
                            for ev in &events {
                                let cached = match to_cached(ev) {
                                    Ok(c) => Arc::new(c),
                                    Err(e) => {
                                        tracing::error!(prefix, error = %e, "watch cache cannot decode an event");
                                        continue;
                                    }
                                };
                                window.latest = window.latest.max(cached.revision);
                                window.events.push_back(cached.clone());
                                while window.events.len() > WINDOW {
                                    if let Some(old) = window.events.pop_front() {
                                        window.oldest = old.revision;
                                    }
                                }
                                let _ = cache.tx.send(CacheItem::Event(cached));
                            }
                        }
                        Ok(WatchResponse::Progress(rev)) => {
                            let mut window = cache.window.lock().unwrap_or_else(|e| e.into_inner());
                            if rev > window.latest {
                                window.latest = rev;
                            }
                            let _ = cache.tx.send(CacheItem::Progress(window.latest));
                        }
                        Err(e) => {
                            tracing::warn!(prefix, error = %e, "store watch ended; the watch cache restarts on demand");
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Every change under `prefix` after revision `after`, in order, then live changes.
    ///
    /// Served from the cache's window when it reaches back far enough, else straight from the
    /// store (which answers 410 for compacted revisions).
    pub async fn watch(
        &self,
        prefix: &str,
        after: Revision,
    ) -> Result<BoxStream<'static, Result<CacheItem>>> {
        // History the store no longer has is gone for the cache too: the client must re-list.
        let compacted = self.store.compacted_revision().await?;
        if after < compacted {
            return Err(ApiError::Expired(format!(
                "too old resource version: {after} ({compacted})"
            )));
        }
        // One cache per resource; client watches of one namespace filter by key.
        let resource_prefix = resource_prefix(prefix);
        let cache = self.cache_for(&resource_prefix).await?;
        let snapshot = {
            let window = cache.window.lock().unwrap_or_else(|e| e.into_inner());
            if after < window.oldest {
                None
            } else {
                let replay: Vec<Arc<CachedEvent>> = window
                    .events
                    .iter()
                    .filter(|e| e.revision > after)
                    .cloned()
                    .collect();
                Some((replay, cache.tx.subscribe(), window.latest))
            }
        };
        let Some((replay, rx, latest)) = snapshot else {
            return self.watch_store(prefix, after).await;
        };
        if after > latest {
            // As upstream's cacher: wait a little for a revision the store may be about to
            // reach, then give up with 504.
            let deadline = tokio::time::Instant::now() + FUTURE_REVISION_WAIT;
            loop {
                let current = self.store.current_revision().await?;
                if after <= current {
                    break;
                }
                if tokio::time::Instant::now() >= deadline {
                    return Err(ApiError::TooLargeResourceVersion {
                        requested: after,
                        current,
                    });
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let prefix = prefix.to_string();
        let replay = futures::stream::iter(replay.into_iter().map(|e| Ok(CacheItem::Event(e))));
        let live = futures::stream::unfold(rx, |mut rx| async move {
            match rx.recv().await {
                Ok(item) => Some((Ok(item), rx)),
                Err(broadcast::error::RecvError::Lagged(_)) => None,
                Err(broadcast::error::RecvError::Closed) => None,
            }
        });
        let filtered = replay.chain(live).filter(move |item| {
            let keep = match item {
                Ok(CacheItem::Event(e)) => e.key.starts_with(&prefix) && e.revision > after,
                _ => true,
            };
            futures::future::ready(keep)
        });
        Ok(filtered.boxed())
    }

    async fn watch_store(
        &self,
        prefix: &str,
        after: Revision,
    ) -> Result<BoxStream<'static, Result<CacheItem>>> {
        let stream = self.store.watch(prefix, after + 1).await?;
        let mapped = stream.flat_map(|item| {
            let out: Vec<Result<CacheItem>> = match item {
                Ok(WatchResponse::Events(events)) => events
                    .iter()
                    .map(|ev| to_cached(ev).map(|c| CacheItem::Event(Arc::new(c))))
                    .collect(),
                Ok(WatchResponse::Progress(rev)) => vec![Ok(CacheItem::Progress(rev))],
                Err(e) => vec![Err(e.into())],
            };
            futures::stream::iter(out)
        });
        Ok(mapped.boxed())
    }
}

/// `/registry/<group>/<resource>/` of any key prefix below it.
fn resource_prefix(prefix: &str) -> String {
    let parts: Vec<&str> = prefix.trim_start_matches('/').splitn(4, '/').collect();
    if parts.len() >= 3 {
        format!("/{}/{}/{}/", parts[0], parts[1], parts[2])
    } else {
        prefix.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use bytes::Bytes;
    use futures::future::BoxFuture;
    use skiff_store::{KeyValue, RangeOptions, RangeResult, RedbStore, WatchStream};

    /// The real store, counting the watches opened on it.
    struct Counting {
        inner: RedbStore,
        watches: AtomicUsize,
    }

    impl Store for Counting {
        fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, skiff_store::Result<Option<KeyValue>>> {
            self.inner.get(key)
        }
        fn range<'a>(
            &'a self,
            prefix: &'a str,
            options: RangeOptions,
        ) -> BoxFuture<'a, skiff_store::Result<RangeResult>> {
            self.inner.range(prefix, options)
        }
        fn create<'a>(
            &'a self,
            key: &'a str,
            value: Bytes,
        ) -> BoxFuture<'a, skiff_store::Result<KeyValue>> {
            self.inner.create(key, value)
        }
        fn update<'a>(
            &'a self,
            key: &'a str,
            value: Bytes,
            expected: Option<Revision>,
        ) -> BoxFuture<'a, skiff_store::Result<KeyValue>> {
            self.inner.update(key, value, expected)
        }
        fn delete<'a>(
            &'a self,
            key: &'a str,
            expected: Option<Revision>,
        ) -> BoxFuture<'a, skiff_store::Result<KeyValue>> {
            self.inner.delete(key, expected)
        }
        fn watch<'a>(
            &'a self,
            prefix: &'a str,
            from: Revision,
        ) -> BoxFuture<'a, skiff_store::Result<WatchStream>> {
            self.watches.fetch_add(1, Ordering::SeqCst);
            self.inner.watch(prefix, from)
        }
        fn current_revision(&self) -> BoxFuture<'_, skiff_store::Result<Revision>> {
            self.inner.current_revision()
        }
        fn compact(&self, revision: Revision) -> BoxFuture<'_, skiff_store::Result<()>> {
            self.inner.compact(revision)
        }
        fn compacted_revision(&self) -> BoxFuture<'_, skiff_store::Result<Revision>> {
            self.inner.compacted_revision()
        }
    }

    fn object(name: &str) -> Bytes {
        Bytes::from(serde_json::json!({"metadata": {"name": name}}).to_string())
    }

    async fn next_event(stream: &mut BoxStream<'static, Result<CacheItem>>) -> Arc<CachedEvent> {
        loop {
            let item = tokio::time::timeout(Duration::from_secs(5), stream.next())
                .await
                .expect("an event within 5s")
                .expect("stream open")
                .expect("no error");
            if let CacheItem::Event(e) = item {
                return e;
            }
        }
    }

    #[tokio::test]
    async fn one_store_watch_fans_out_to_every_client_watch_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Counting {
            inner: RedbStore::open(dir.path().join("db")).expect("open"),
            watches: AtomicUsize::new(0),
        });
        let cache = WatchCache::new(store.clone(), CancellationToken::new());
        let start = store.current_revision().await.expect("rev");
        let mut watchers = Vec::new();
        for ns in ["a", "a", "b"] {
            watchers.push(
                cache
                    .watch(&format!("/registry/core/configmaps/{ns}/"), start)
                    .await
                    .expect("watch"),
            );
        }
        let mut all = cache
            .watch("/registry/core/configmaps/", start)
            .await
            .expect("watch");
        for i in 0..5 {
            store
                .create(&format!("/registry/core/configmaps/a/cm{i}"), object("x"))
                .await
                .expect("create");
            store
                .create(&format!("/registry/core/configmaps/b/cm{i}"), object("y"))
                .await
                .expect("create");
        }
        assert_eq!(
            store.watches.load(Ordering::SeqCst),
            1,
            "one store watch for the resource"
        );
        for w in watchers.iter_mut().take(2) {
            let mut last = start;
            for i in 0..5 {
                let e = next_event(w).await;
                assert_eq!(e.key, format!("/registry/core/configmaps/a/cm{i}"));
                assert!(e.revision > last, "ordered");
                last = e.revision;
            }
        }
        let e = next_event(&mut watchers[2]).await;
        assert_eq!(e.key, "/registry/core/configmaps/b/cm0");
        let mut revisions = Vec::new();
        for _ in 0..10 {
            revisions.push(next_event(&mut all).await.revision);
        }
        assert!(
            revisions.windows(2).all(|w| w[0] < w[1]),
            "unique and ordered: {revisions:?}"
        );
    }

    #[tokio::test]
    async fn a_watch_resumes_from_the_window_without_gaps_or_duplicates() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Arc<dyn Store> = Arc::new(RedbStore::open(dir.path().join("db")).expect("open"));
        let cache = WatchCache::new(store.clone(), CancellationToken::new());
        let start = store.current_revision().await.expect("rev");
        let mut first = cache
            .watch("/registry/core/pods/", start)
            .await
            .expect("watch");
        let mut revs = Vec::new();
        for i in 0..6 {
            revs.push(
                store
                    .create(&format!("/registry/core/pods/ns/p{i}"), object("p"))
                    .await
                    .expect("create")
                    .mod_revision,
            );
        }
        for _ in 0..6 {
            next_event(&mut first).await;
        }
        // Resume after the third event: exactly the last three, in order.
        let mut resumed = cache
            .watch("/registry/core/pods/", revs[2])
            .await
            .expect("resume");
        for expected in &revs[3..] {
            assert_eq!(next_event(&mut resumed).await.revision, *expected);
        }
        store.compact(revs[4]).await.expect("compact");
        let err = cache
            .watch("/registry/core/pods/", revs[1])
            .await
            .err()
            .expect("compacted");
        assert!(matches!(err, ApiError::Expired(_)), "{err:?}");
    }

    #[test]
    fn resource_prefix_strips_the_namespace() {
        assert_eq!(
            resource_prefix("/registry/core/pods/default/"),
            "/registry/core/pods/"
        );
        assert_eq!(
            resource_prefix("/registry/core/pods/"),
            "/registry/core/pods/"
        );
        assert_eq!(
            resource_prefix("/registry/apps/deployments/"),
            "/registry/apps/deployments/"
        );
    }
}
