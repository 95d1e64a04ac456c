//! Events about pods, as the kubelet writes them (source `kubelet`, host = node name): repeats
//! of the same event (object, field path, type, reason, message) within ten minutes are folded
//! into one by patching `count` and `lastTimestamp`, as client-go's EventCorrelator does.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

/// Identical events within this window are one event with a count (client-go: 10 minutes).
const AGGREGATION_WINDOW: jiff::SignedDuration = jiff::SignedDuration::from_secs(600);
/// At most this many distinct events are remembered (client-go's LRU holds 4096).
const CACHE_SIZE: usize = 4096;

pub const NORMAL: &str = "Normal";
pub const WARNING: &str = "Warning";

static SEQ: AtomicU64 = AtomicU64::new(0);

/// One remembered event: its name, count, first and last time.
#[derive(Clone, Debug)]
struct Seen {
    name: String,
    count: i32,
    first: jiff::Timestamp,
    last: jiff::Timestamp,
}

/// Folds repeats; kept apart from the API so it can be tested without a server.
#[derive(Default, Debug)]
pub struct Correlator {
    seen: HashMap<String, Seen>,
}

impl Correlator {
    /// The name, count and first time the event with this identity gets at `now`.
    fn observe(
        &mut self,
        identity: String,
        object: &str,
        now: jiff::Timestamp,
    ) -> (String, i32, jiff::Timestamp) {
        if self.seen.len() >= CACHE_SIZE {
            self.seen
                .retain(|_, e| now.duration_since(e.last) < AGGREGATION_WINDOW);
            if self.seen.len() >= CACHE_SIZE {
                self.seen.clear();
            }
        }
        match self.seen.get_mut(&identity) {
            Some(e) if now.duration_since(e.last) < AGGREGATION_WINDOW => {
                e.count = e.count.saturating_add(1);
                e.last = now;
                (e.name.clone(), e.count, e.first)
            }
            _ => {
                // Upstream names events `<object>.<unique hex>`.
                let seq = SEQ.fetch_add(1, Ordering::Relaxed);
                let name = format!(
                    "{object}.{:x}",
                    (now.as_nanosecond() as u64).wrapping_add(seq)
                );
                self.seen.insert(
                    identity,
                    Seen {
                        name: name.clone(),
                        count: 1,
                        first: now,
                        last: now,
                    },
                );
                (name, 1, now)
            }
        }
    }
}

/// Writes pod events for one node; cheap to clone, shared by every pod worker.
#[derive(Clone)]
pub struct Recorder {
    client: kube::Client,
    host: String,
    cache: Arc<Mutex<Correlator>>,
}

/// The reference to a pod, or to one of its containers (`spec.containers{name}`).
pub fn pod_ref(pod: &Pod, container: Option<&str>) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        namespace: pod.metadata.namespace.clone(),
        name: pod.metadata.name.clone(),
        uid: pod.metadata.uid.clone(),
        resource_version: pod.metadata.resource_version.clone(),
        field_path: container.map(|c| {
            let init = pod
                .spec
                .as_ref()
                .and_then(|s| s.init_containers.as_ref())
                .is_some_and(|ics| ics.iter().any(|i| i.name == c));
            if init {
                format!("spec.initContainers{{{c}}}")
            } else {
                format!("spec.containers{{{c}}}")
            }
        }),
    }
}

impl Recorder {
    pub fn new(client: kube::Client, host: String) -> Recorder {
        Recorder {
            client,
            host,
            cache: Arc::new(Mutex::new(Correlator::default())),
        }
    }

    /// Record an event about `pod` (or one of its containers). Fire and forget: a pod sync
    /// never waits on, or fails because of, an event.
    pub fn pod(
        &self,
        pod: &Pod,
        container: Option<&str>,
        type_: &str,
        reason: &str,
        message: String,
    ) {
        self.record(pod_ref(pod, container), type_, reason, message);
    }

    pub fn record(&self, about: ObjectReference, type_: &str, reason: &str, message: String) {
        tracing::debug!(object = ?about.name, %reason, %message, "event");
        let namespace = about.namespace.clone().unwrap_or_else(|| "default".into());
        let now = jiff::Timestamp::now();
        let identity = serde_json::to_string(&json!([
            about.kind,
            about.namespace,
            about.name,
            about.uid,
            about.field_path,
            type_,
            reason,
            message,
            self.host
        ]))
        .unwrap_or_default();
        let object = about.name.clone().unwrap_or_else(|| "object".into());
        let (name, count, first) = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .observe(identity, &object, now);
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.clone()),
                ..ObjectMeta::default()
            },
            involved_object: about,
            reason: Some(reason.to_string()),
            message: Some(message),
            type_: Some(type_.to_string()),
            count: Some(count),
            first_timestamp: Some(Time(first)),
            last_timestamp: Some(Time(now)),
            source: Some(EventSource {
                component: Some("kubelet".into()),
                host: Some(self.host.clone()),
            }),
            reporting_component: Some("kubelet".into()),
            reporting_instance: Some(self.host.clone()),
            ..Event::default()
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        let reason = reason.to_string();
        tokio::spawn(async move {
            let patch = Patch::Merge(json!({"count": count, "lastTimestamp": Time(now)}));
            let pp = PatchParams::default();
            let patch_it = || api.patch(&name, &pp, &patch);
            let result = if count == 1 {
                match api.create(&PostParams::default(), &event).await {
                    Err(kube::Error::Api(s)) if s.code == 409 => patch_it().await.map(|_| ()),
                    r => r.map(|_| ()),
                }
            } else {
                match patch_it().await {
                    // The first occurrence is not stored (yet, or any more): write it whole.
                    Err(kube::Error::Api(s)) if s.code == 404 => {
                        api.create(&PostParams::default(), &event).await.map(|_| ())
                    }
                    r => r.map(|_| ()),
                }
            };
            if let Err(e) = result {
                tracing::debug!(%reason, error = %e, "event not recorded");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_are_counted_within_the_window_and_restart_after_it() {
        let mut c = Correlator::default();
        let t0 = jiff::Timestamp::from_second(1_000_000).expect("test setup");
        let (n1, c1, f1) = c.observe("a".into(), "p", t0);
        assert_eq!(c1, 1);
        assert_eq!(f1, t0);
        let t1 = t0 + jiff::SignedDuration::from_secs(5);
        let (n2, c2, f2) = c.observe("a".into(), "p", t1);
        assert_eq!((n2.as_str(), c2, f2), (n1.as_str(), 2, t0));
        let (n3, c3, _) = c.observe("b".into(), "p", t1);
        assert_ne!(n3, n1);
        assert_eq!(c3, 1);
        assert!(n3.starts_with("p."));
        let late = t1 + jiff::SignedDuration::from_secs(601);
        let (n4, c4, _) = c.observe("a".into(), "p", late);
        assert_ne!(n4, n1);
        assert_eq!(c4, 1);
    }
}
