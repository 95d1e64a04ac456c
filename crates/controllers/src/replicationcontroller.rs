//! The ReplicationController controller: upstream runs the ReplicaSet controller over RCs
//! converted to ReplicaSets, and so do we. RCs are mirrored into an in-memory ReplicaSet cache
//! (selector map → matchLabels), and an adapter turns the ReplicaSet controller's writes back
//! into RC terms: controller ownerReferences `v1/ReplicationController`, RC status, events about
//! the RC.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use k8s_openapi::api::apps::v1::{
    ReplicaSet, ReplicaSetCondition, ReplicaSetSpec, ReplicaSetStatus,
};
use k8s_openapi::api::core::v1::{
    ObjectReference, Pod, ReplicationController, ReplicationControllerCondition,
    ReplicationControllerStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, OwnerReference};
use kube::Api;
use kube::api::PostParams;
use kube::runtime::reflector::store::Writer;
use kube::runtime::watcher;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::control::{self, ClientControl, EventRecorder, PodControl, ReplicaSetControl, Result};
use crate::expectations::Expectations;
use crate::history_pods;
use crate::informer::Informer;
use crate::owner::controller_of;
use crate::queue::{Key, WorkQueue};
use crate::replicaset::{self, ReplicaSetController};
use crate::{spawn_resync, spawn_workers, system_clock};

/// Name in logs and events, as upstream's component.
pub const NAME: &str = "replication-controller";

/// The RC as the ReplicaSet it is equivalent to (same metadata, uid and status).
pub fn to_replica_set(rc: &ReplicationController) -> ReplicaSet {
    let spec = rc.spec.clone().unwrap_or_default();
    let template_labels = spec
        .template
        .as_ref()
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone());
    // The API server defaults an empty selector to the template labels; do the same here.
    let selector = spec
        .selector
        .clone()
        .filter(|s| !s.is_empty())
        .or(template_labels);
    let status = rc.status.clone().map(|s| ReplicaSetStatus {
        replicas: s.replicas,
        fully_labeled_replicas: s.fully_labeled_replicas,
        ready_replicas: s.ready_replicas,
        available_replicas: s.available_replicas,
        observed_generation: s.observed_generation,
        conditions: s.conditions.map(|cs| {
            cs.into_iter()
                .map(|c| ReplicaSetCondition {
                    type_: c.type_,
                    status: c.status,
                    reason: c.reason,
                    message: c.message,
                    last_transition_time: c.last_transition_time,
                })
                .collect()
        }),
        terminating_replicas: None,
    });
    ReplicaSet {
        metadata: rc.metadata.clone(),
        spec: Some(ReplicaSetSpec {
            replicas: spec.replicas,
            min_ready_seconds: spec.min_ready_seconds,
            selector: LabelSelector {
                match_labels: selector,
                match_expressions: None,
            },
            template: spec.template,
        }),
        status,
    }
}

/// The status a ReplicaSet status means for an RC.
pub fn to_rc_status(s: &ReplicaSetStatus) -> ReplicationControllerStatus {
    ReplicationControllerStatus {
        replicas: s.replicas,
        fully_labeled_replicas: s.fully_labeled_replicas,
        ready_replicas: s.ready_replicas,
        available_replicas: s.available_replicas,
        observed_generation: s.observed_generation,
        conditions: s.conditions.clone().map(|cs| {
            cs.into_iter()
                .map(|c| ReplicationControllerCondition {
                    type_: c.type_,
                    status: c.status,
                    reason: c.reason,
                    message: c.message,
                    last_transition_time: c.last_transition_time,
                })
                .collect()
        }),
    }
}

/// The RC that controls `pod`, if one does.
pub fn owning_rc(pod: &Pod) -> Option<Key> {
    let c = controller_of(&pod.metadata)?;
    (c.kind == "ReplicationController" && c.api_version == "v1").then(|| {
        Key::new(
            pod.metadata.namespace.clone().unwrap_or_default(),
            c.name.clone(),
        )
    })
}

fn as_rc_ref(mut r: OwnerReference) -> OwnerReference {
    if r.controller == Some(true) && r.kind == "ReplicaSet" && r.api_version == "apps/v1" {
        r.kind = "ReplicationController".into();
        r.api_version = "v1".into();
    }
    r
}

/// Writing RC status.
#[async_trait]
pub trait ReplicationControllerControl: Send + Sync {
    /// Replace the status of the RC `rc` names (its metadata carries the resourceVersion).
    async fn update_rc_status(&self, rc: &ReplicationController) -> Result<ReplicationController>;
}

#[async_trait]
impl ReplicationControllerControl for ClientControl {
    async fn update_rc_status(&self, rc: &ReplicationController) -> Result<ReplicationController> {
        let api: Api<ReplicationController> = Api::namespaced(
            self.client(),
            rc.metadata.namespace.as_deref().unwrap_or("default"),
        );
        let name = rc.metadata.name.as_deref().unwrap_or_default();
        Ok(api.replace_status(name, &PostParams::default(), rc).await?)
    }
}

/// Presents RC side effects as the ReplicaSet controller's: the ReplicaSet controller runs
/// unchanged on top of it.
pub struct AsReplicaSet<C> {
    /// The real side effects.
    pub inner: Arc<C>,
}

#[async_trait]
impl<C: PodControl + 'static> PodControl for AsReplicaSet<C> {
    async fn create_pod(&self, namespace: &str, pod: &Pod) -> Result<Pod> {
        let mut pod = pod.clone();
        if let Some(refs) = pod.metadata.owner_references.take() {
            pod.metadata.owner_references = Some(refs.into_iter().map(as_rc_ref).collect());
        }
        self.inner.create_pod(namespace, &pod).await
    }

    async fn delete_pod(&self, namespace: &str, name: &str, uid: &str) -> Result<()> {
        self.inner.delete_pod(namespace, name, uid).await
    }

    async fn set_pod_owners(
        &self,
        namespace: &str,
        name: &str,
        uid: &str,
        owners: &[OwnerReference],
    ) -> Result<()> {
        let owners: Vec<OwnerReference> = owners.iter().cloned().map(as_rc_ref).collect();
        self.inner
            .set_pod_owners(namespace, name, uid, &owners)
            .await
    }
}

fn unsupported(what: &str) -> control::Error {
    control::Error::NotFound(format!("{what}: ReplicationControllers own no ReplicaSets"))
}

// The ReplicaSet controller only ever writes its own status through this trait; the other
// methods exist for the Deployment controller and are never reached for an RC.
#[async_trait]
impl<C: ReplicationControllerControl + 'static> ReplicaSetControl for AsReplicaSet<C> {
    async fn create_replica_set(&self, _rs: &ReplicaSet) -> Result<ReplicaSet> {
        Err(unsupported("create"))
    }

    async fn update_replica_set(&self, _rs: &ReplicaSet) -> Result<ReplicaSet> {
        Err(unsupported("update"))
    }

    async fn update_replica_set_status(&self, rs: &ReplicaSet) -> Result<ReplicaSet> {
        let rc = ReplicationController {
            metadata: rs.metadata.clone(),
            spec: None,
            status: rs.status.as_ref().map(to_rc_status),
        };
        let stored = self.inner.update_rc_status(&rc).await?;
        Ok(to_replica_set(&stored))
    }

    async fn delete_replica_set(&self, _namespace: &str, _name: &str, _uid: &str) -> Result<()> {
        Err(unsupported("delete"))
    }

    async fn set_replica_set_owners(
        &self,
        _namespace: &str,
        _name: &str,
        _uid: &str,
        _owners: &[OwnerReference],
    ) -> Result<()> {
        Err(unsupported("adopt"))
    }
}

impl<C: EventRecorder> EventRecorder for AsReplicaSet<C> {
    fn record(&self, about: &ObjectReference, type_: &str, reason: &str, message: String) {
        let mut about = about.clone();
        about.kind = Some("ReplicationController".into());
        about.api_version = Some("v1".into());
        self.inner.record(&about, type_, reason, message);
    }
}

/// Start the RC controller: its own RC informer mirrored into a ReplicaSet cache, a handler on
/// the shared pod informer, and ReplicaSet-controller workers once the caches synced.
pub fn register(
    client: &kube::Client,
    pods: &mut Informer<Pod>,
    tasks: &TaskTracker,
    shutdown: CancellationToken,
) {
    let mut rcs: Informer<ReplicationController> = Informer::new(client.clone());
    let writer = Arc::new(Mutex::new(Writer::<ReplicaSet>::new(())));
    let as_sets = writer.lock().unwrap_or_else(|e| e.into_inner()).as_reader();
    let queue = WorkQueue::new();
    let ctl = Arc::new(ReplicaSetController {
        control: Arc::new(AsReplicaSet {
            inner: Arc::new(ClientControl::new(client.clone(), NAME)),
        }),
        pods: pods.store(),
        sets: as_sets.clone(),
        expectations: Expectations::new(),
        clock: system_clock(),
    });
    let q = queue.clone();
    rcs.on_change(Arc::new(move |old, new| {
        let mut w = writer.lock().unwrap_or_else(|e| e.into_inner());
        match (old, new) {
            (_, Some(rc)) => {
                w.apply_watcher_event(&watcher::Event::Apply(to_replica_set(rc)));
                q.add(Key::of(&rc.metadata));
            }
            (Some(rc), None) => {
                w.apply_watcher_event(&watcher::Event::Delete(to_replica_set(rc)));
                q.add(Key::of(&rc.metadata));
            }
            (None, None) => {}
        }
    }));
    let (c1, c2) = (ctl.clone(), ctl.clone());
    pods.on_change(history_pods::pod_handler(history_pods::PodHandlerSpec {
        queue: queue.clone(),
        owning: owning_rc,
        created: Box::new(move |k| c1.expectations.creation_observed(k)),
        deleted: Box::new(move |k, name| c2.expectations.deletion_observed(k, name)),
        owners: as_sets.clone(),
        selector: |rs| replicaset::selector_of(rs).ok(),
    }));
    let synced = [rcs.synced(), pods.synced()];
    tasks.spawn(rcs.run(shutdown.clone()));
    let tasks2 = tasks.clone();
    tasks.spawn(async move {
        let ready = futures::future::join_all(synced.map(|s| s.wait()));
        tokio::select! {
            r = ready => if r.contains(&false) { return },
            _ = shutdown.cancelled() => return,
        }
        // The mirror is filled by the handler before the RC cache reports ready.
        spawn_resync(&tasks2, as_sets, queue.clone(), shutdown.clone());
        spawn_workers(&tasks2, NAME, queue, shutdown, move |key| {
            let ctl = ctl.clone();
            async move { ctl.reconcile(&key).await }
        });
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::{Action, Recorder};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use kube::core::SelectorExt;
    use serde_json::json;

    #[async_trait]
    impl ReplicationControllerControl for Recorder {
        async fn update_rc_status(
            &self,
            rc: &ReplicationController,
        ) -> Result<ReplicationController> {
            // Recorded through the ReplicaSet fake's status log.
            let rs = ReplicaSet {
                metadata: rc.metadata.clone(),
                spec: None,
                status: None,
            };
            ReplicaSetControl::update_replica_set_status(self, &rs).await?;
            Ok(rc.clone())
        }
    }

    fn rc(replicas: i32) -> ReplicationController {
        serde_json::from_value(json!({
            "metadata": {"name": "frontend", "namespace": "default", "uid": "rc-uid", "generation": 1},
            "spec": {
                "replicas": replicas,
                "selector": {"app": "fe"},
                "template": {
                    "metadata": {"labels": {"app": "fe"}},
                    "spec": {"containers": [{"name": "c", "image": "nginx"}]}
                }
            }
        }))
        .expect("test value")
    }

    #[test]
    fn selector_map_becomes_match_labels_and_defaults_to_template_labels() {
        let rs = to_replica_set(&rc(2));
        let sel = replicaset::selector_of(&rs).expect("test value");
        assert!(sel.matches(&[("app".to_string(), "fe".to_string())].into()));
        let mut no_sel = rc(2);
        no_sel.spec.as_mut().expect("test value").selector = None;
        let rs = to_replica_set(&no_sel);
        assert_eq!(
            rs.spec
                .expect("test value")
                .selector
                .match_labels
                .expect("test value")["app"],
            "fe"
        );
    }

    #[tokio::test]
    async fn the_replica_set_controller_creates_rc_owned_pods_and_writes_rc_status() {
        let writer_rc = rc(3);
        let mut w = Writer::<ReplicaSet>::new(());
        w.apply_watcher_event(&watcher::Event::Apply(to_replica_set(&writer_rc)));
        let pods_w = Writer::<Pod>::new(());
        let fake = Arc::new(Recorder::new());
        let ctl = ReplicaSetController {
            control: Arc::new(AsReplicaSet {
                inner: fake.clone(),
            }),
            pods: pods_w.as_reader(),
            sets: w.as_reader(),
            expectations: Expectations::new(),
            clock: system_clock(),
        };
        ctl.reconcile(&Key::new("default", "frontend"))
            .await
            .expect("test value");
        let created = fake.created_pods();
        assert_eq!(created.len(), 3);
        let owner = &created[0]
            .metadata
            .owner_references
            .as_ref()
            .expect("test value")[0];
        assert_eq!(owner.kind, "ReplicationController");
        assert_eq!(owner.api_version, "v1");
        assert_eq!(owner.uid, "rc-uid");
        assert_eq!(
            created[0].metadata.generate_name.as_deref(),
            Some("frontend-")
        );
        assert!(
            fake.actions().contains(&Action::UpdateReplicaSetStatus {
                name: "frontend".into()
            }),
            "status written back to the RC"
        );
        assert_eq!(
            fake.events()
                .iter()
                .filter(|e| e.starts_with("SuccessfulCreate: Created pod: frontend-"))
                .count(),
            3
        );
    }

    #[test]
    fn rc_status_round_trips() {
        let s = ReplicaSetStatus {
            replicas: 2,
            ready_replicas: Some(1),
            observed_generation: Some(4),
            ..ReplicaSetStatus::default()
        };
        let rc_status = to_rc_status(&s);
        let back = to_replica_set(&ReplicationController {
            metadata: ObjectMeta::default(),
            spec: None,
            status: Some(rc_status),
        });
        assert_eq!(back.status, Some(s));
    }
}
