//! Pod plumbing shared by the StatefulSet, DaemonSet and ReplicationController controllers:
//! claiming pods for an owner, the pod-informer handler that feeds expectations and the work
//! queue, and the minReadySeconds re-check.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::core::{Selector, SelectorExt};
use kube::runtime::reflector::Store;

use crate::control::{self, PodControl};
use crate::informer::Handler;
use crate::owner::{self, Claim, controller_of};
use crate::pod_state;
use crate::queue::{Key, WorkQueue};

/// Claim `candidates` (pods of `namespace`) for the owner `me`: keep owned matching pods, adopt
/// matching orphans, release owned pods that stopped matching. Returns the owner's pods.
pub async fn claim_pods<C: PodControl + ?Sized>(
    control: &C,
    namespace: &str,
    me: &OwnerReference,
    owner_deleting: bool,
    selector: &Selector,
    candidates: impl IntoIterator<Item = Arc<Pod>>,
) -> control::Result<Vec<Pod>> {
    let mut pods = Vec::new();
    for pod in candidates {
        if pod.metadata.namespace.as_deref() != Some(namespace) {
            continue;
        }
        let name = pod.metadata.name.clone().unwrap_or_default();
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        match owner::claim(me, owner_deleting, selector, &pod.metadata) {
            Claim::Owned => pods.push(pod.as_ref().clone()),
            Claim::Adopt(owners) | Claim::Release(owners) => {
                let adopt = owners.iter().any(|o| o.uid == me.uid);
                match control
                    .set_pod_owners(namespace, &name, &uid, &owners)
                    .await
                {
                    Ok(()) if adopt => {
                        tracing::info!(owner = %me.name, pod = %name, "adopted pod");
                        let mut p = pod.as_ref().clone();
                        p.metadata.owner_references = Some(owners);
                        pods.push(p);
                    }
                    Ok(()) => tracing::info!(owner = %me.name, pod = %name, "released pod"),
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(e),
                }
            }
            Claim::Ignore => {}
        }
    }
    Ok(pods)
}

/// Called with an owner's key when one of its pods is seen created.
pub type OnCreated = Box<dyn Fn(&Key) + Send + Sync>;

/// Called with an owner's key and a pod name when that pod is seen deleted or terminating.
pub type OnDeleted = Box<dyn Fn(&Key, &str) + Send + Sync>;

/// How the pod handler reaches one controller.
pub struct PodHandlerSpec<S: kube::Resource<DynamicType = ()> + Clone + 'static> {
    /// The work queue of the controller.
    pub queue: WorkQueue,
    /// The key of the owner that controls a pod, if it is this controller's kind.
    pub owning: fn(&Pod) -> Option<Key>,
    /// A new pod of `key` was seen.
    pub created: OnCreated,
    /// Pod `name` of `key` was seen deleted or terminating.
    pub deleted: OnDeleted,
    /// The owners, to find one that may adopt an orphan.
    pub owners: Store<S>,
    /// An owner's selector, if it parses.
    pub selector: fn(&S) -> Option<Selector>,
}

/// The pod-informer handler: observe expectations, queue the owners of changed pods, and queue
/// every owner whose selector matches a new orphan (it may adopt it).
pub fn pod_handler<S>(spec: PodHandlerSpec<S>) -> Handler<Pod>
where
    S: kube::Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    Arc::new(move |old: Option<&Pod>, new: Option<&Pod>| {
        if let Some(k) = new.and_then(spec.owning)
            && old.is_none()
        {
            (spec.created)(&k);
        }
        if let Some(p) = new.or(old)
            && (new.is_none() || p.metadata.deletion_timestamp.is_some())
            && let Some(k) = (spec.owning)(p)
        {
            (spec.deleted)(&k, p.metadata.name.as_deref().unwrap_or(""));
        }
        for p in [old, new].into_iter().flatten() {
            if let Some(k) = (spec.owning)(p) {
                spec.queue.add(k);
            }
        }
        if let Some(p) = new
            && controller_of(&p.metadata).is_none()
        {
            let labels = p.metadata.labels.clone().unwrap_or_default();
            for s in spec.owners.state() {
                if s.meta().namespace == p.metadata.namespace
                    && (spec.selector)(&s)
                        .is_some_and(|sel| !sel.selects_all() && sel.matches(&labels))
                {
                    spec.queue.add(Key::of(s.meta()));
                }
            }
        }
    })
}

/// When the first ready-but-not-yet-available pod becomes available (minReadySeconds), so the
/// owner can look again then.
pub fn next_availability_check(
    pods: &[Pod],
    min_ready_seconds: i32,
    now: jiff::Timestamp,
) -> Option<Duration> {
    if min_ready_seconds <= 0 {
        return None;
    }
    pods.iter()
        .filter(|p| !pod_state::is_available(p, min_ready_seconds, now))
        .filter_map(|p| pod_state::until_available(p, min_ready_seconds, now))
        .min()
        .map(|d| d + Duration::from_millis(100))
}
