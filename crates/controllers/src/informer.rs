//! Shared informers: one watch per resource kind feeds a local cache (a kube reflector store) and
//! calls every registered handler with the old and new object, as client-go's SharedInformer.
//! Several controllers read the same cache, so the API server serves one watch per kind.

use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;

use futures::StreamExt;
use kube::Resource;
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, Event};
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

/// Called with `(old, new)`: `old` is what the cache held before, `new` is `None` on deletion.
pub type Handler<K> = Arc<dyn Fn(Option<&K>, Option<&K>) + Send + Sync>;

/// One watched kind: its cache and its handlers.
pub struct Informer<K>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + Hash + Clone,
{
    api: kube::Api<K>,
    dyntype: K::DynamicType,
    reader: Store<K>,
    writer: Option<reflector::store::Writer<K>>,
    handlers: Vec<Handler<K>>,
    synced: tokio::sync::watch::Sender<bool>,
}

/// Resolves once an informer's first list completed. Any number of tasks may wait on clones,
/// unlike `Store::wait_until_ready`, whose oneshot wakes only the task that polled it last.
#[derive(Clone)]
pub struct Synced(tokio::sync::watch::Receiver<bool>);

impl Synced {
    /// Wait for the first full list; `false` if the informer stopped before it.
    pub async fn wait(mut self) -> bool {
        self.0.wait_for(|s| *s).await.is_ok()
    }
}

impl<K> Informer<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone + Default + Send + Sync,
{
    /// An informer over all namespaces of a typed kind.
    pub fn new(client: kube::Client) -> Informer<K> {
        Informer::with_api(kube::Api::all(client), K::DynamicType::default())
    }
}

impl<K> Informer<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone + Send + Sync,
{
    /// An informer over `api` (for dynamic kinds, with their type information).
    pub fn with_api(api: kube::Api<K>, dyntype: K::DynamicType) -> Informer<K> {
        let writer = reflector::store::Writer::new(dyntype.clone());
        Informer {
            api,
            dyntype,
            reader: writer.as_reader(),
            writer: Some(writer),
            handlers: Vec::new(),
            synced: tokio::sync::watch::Sender::new(false),
        }
    }

    /// The cache; empty until the first list completes (`wait_until_ready`).
    pub fn store(&self) -> Store<K> {
        self.reader.clone()
    }

    /// A waiter for the first full list (safe to share between controllers).
    pub fn synced(&self) -> Synced {
        Synced(self.synced.subscribe())
    }

    /// Register a handler; only before `run`.
    pub fn on_change(&mut self, handler: Handler<K>) {
        self.handlers.push(handler);
    }

    /// Watch until `shutdown`, keeping the cache and calling handlers. The watcher relists and
    /// backs off on errors by itself, so this only ends on shutdown.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let Some(mut writer) = self.writer.take() else {
            return;
        };
        let kind = K::kind(&self.dyntype).to_string();
        let stream =
            watcher::watcher(self.api.clone(), watcher::Config::default()).default_backoff();
        let mut stream = std::pin::pin!(stream);
        let mut before_relist: HashMap<ObjectRef<K>, Arc<K>> = HashMap::new();
        loop {
            let event = tokio::select! {
                e = stream.next() => e,
                _ = shutdown.cancelled() => return,
            };
            let Some(event) = event else { return };
            let event = match event {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!(kind = %kind, error = %e, "watch failed; retrying");
                    continue;
                }
            };
            match &event {
                Event::Init => {
                    before_relist = self
                        .reader
                        .state()
                        .into_iter()
                        .map(|o| {
                            (
                                ObjectRef::from_obj_with(o.as_ref(), self.dyntype.clone()),
                                o,
                            )
                        })
                        .collect();
                }
                Event::InitApply(obj) | Event::Apply(obj) => {
                    let r = ObjectRef::from_obj_with(obj, self.dyntype.clone());
                    let old = self.reader.get(&r);
                    before_relist.remove(&r);
                    writer.apply_watcher_event(&event);
                    for h in &self.handlers {
                        h(old.as_deref(), Some(obj));
                    }
                    continue;
                }
                Event::Delete(obj) => {
                    let r = ObjectRef::from_obj_with(obj, self.dyntype.clone());
                    let old = self.reader.get(&r);
                    writer.apply_watcher_event(&event);
                    for h in &self.handlers {
                        h(old.as_deref().or(Some(obj)), None);
                    }
                    continue;
                }
                Event::InitDone => {}
            }
            writer.apply_watcher_event(&event);
            if matches!(event, Event::InitDone) {
                // Objects deleted while the watch was down vanish in the relist: tell handlers.
                for (_, old) in before_relist.drain() {
                    for h in &self.handlers {
                        h(Some(old.as_ref()), None);
                    }
                }
                self.synced.send_replace(true);
                tracing::debug!(kind = %kind, objects = self.reader.len(), "informer synced");
            }
        }
    }
}
