//! The ReplicaSet controller: keeps `spec.replicas` active pods matching the selector, owned
//! through a controller ownerReference, and reports what it sees in `status`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::core::{Selector, SelectorExt};
use kube::runtime::reflector::{ObjectRef, Store};

use crate::Clock;
use crate::control::{self, EventRecorder, PodControl, ReplicaSetControl, object_reference};
use crate::expectations::Expectations;
use crate::owner::{self, Claim, controller_of, controller_ref};
use crate::pod_state;
use crate::queue::Key;

/// Name in logs and events, as upstream's component.
pub const NAME: &str = "replicaset-controller";

/// At most this many creates or deletes per sync (upstream's burstReplicas).
pub const BURST_REPLICAS: usize = 500;

/// Errors of one sync.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The selector cannot be parsed.
    #[error("invalid selector: {0}")]
    Selector(String),
    /// A write failed; the sync is retried with backoff.
    #[error(transparent)]
    Control(#[from] control::Error),
}

/// Result of a sync.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything a ReplicaSet sync needs: caches, side effects, expectations, clock.
pub struct ReplicaSetController<C> {
    /// Side effects.
    pub control: Arc<C>,
    /// Pod cache.
    pub pods: Store<Pod>,
    /// ReplicaSet cache.
    pub sets: Store<ReplicaSet>,
    /// Pending creates/deletes per set.
    pub expectations: Expectations,
    /// Wall clock for minReadySeconds.
    pub clock: Clock,
}

/// The selector of a set, parsed.
pub fn selector_of(rs: &ReplicaSet) -> Result<Selector> {
    let sel = rs
        .spec
        .as_ref()
        .map(|s| s.selector.clone())
        .unwrap_or_default();
    Selector::try_from(sel).map_err(|e| Error::Selector(e.to_string()))
}

/// The pod a set creates from its template.
pub fn pod_from_template(rs: &ReplicaSet) -> Pod {
    let template = rs
        .spec
        .as_ref()
        .and_then(|s| s.template.clone())
        .unwrap_or_default();
    let tmeta = template.metadata.unwrap_or_default();
    let name = rs.metadata.name.clone().unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{name}-")),
            namespace: rs.metadata.namespace.clone(),
            labels: tmeta.labels,
            annotations: tmeta.annotations,
            finalizers: tmeta.finalizers,
            owner_references: Some(vec![controller_ref(rs)]),
            ..ObjectMeta::default()
        },
        spec: template.spec,
        status: None,
    }
}

fn nz(n: usize) -> Option<i32> {
    let n = i32::try_from(n).unwrap_or(i32::MAX);
    (n != 0).then_some(n)
}

impl<C> ReplicaSetController<C>
where
    C: PodControl + ReplicaSetControl + EventRecorder + 'static,
{
    /// Sync one set; returns when to look again (minReadySeconds), if the set asks for it.
    pub async fn reconcile(&self, key: &Key) -> Result<Option<Duration>> {
        let Some(rs) = self
            .sets
            .get(&ObjectRef::new(&key.name).within(&key.namespace))
        else {
            self.expectations.forget(key);
            return Ok(None);
        };
        let rs = rs.as_ref();
        let selector = selector_of(rs)?;
        let needs_sync = self.expectations.satisfied(key);
        let me = controller_ref(rs);
        let deleting = rs.metadata.deletion_timestamp.is_some();
        let mut pods: Vec<Pod> = Vec::new();
        for pod in self.pods.state() {
            if pod.metadata.namespace.as_deref() != Some(key.namespace.as_str())
                || !pod_state::is_active(&pod)
            {
                continue;
            }
            let name = pod.metadata.name.clone().unwrap_or_default();
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            match owner::claim(&me, deleting, &selector, &pod.metadata) {
                Claim::Owned => pods.push(pod.as_ref().clone()),
                Claim::Adopt(owners) => {
                    match self
                        .control
                        .set_pod_owners(&key.namespace, &name, &uid, &owners)
                        .await
                    {
                        Ok(()) => {
                            tracing::info!(replicaset = %key, pod = %name, "adopted pod");
                            let mut p = pod.as_ref().clone();
                            p.metadata.owner_references = Some(owners);
                            pods.push(p);
                        }
                        Err(e) if e.is_not_found() => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                Claim::Release(owners) => {
                    match self
                        .control
                        .set_pod_owners(&key.namespace, &name, &uid, &owners)
                        .await
                    {
                        Ok(()) => tracing::info!(replicaset = %key, pod = %name, "released pod"),
                        Err(e) if e.is_not_found() => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                Claim::Ignore => {}
            }
        }
        let manage_err = if needs_sync && !deleting {
            self.manage_replicas(key, rs, &pods).await.err()
        } else {
            None
        };
        let now = (self.clock)();
        let status = calculate_status(rs, &pods, manage_err.as_ref(), now);
        if status_changed(rs, &status) {
            let mut updated = rs.clone();
            updated.status = Some(status.clone());
            self.control.update_replica_set_status(&updated).await?;
        }
        if let Some(e) = manage_err {
            return Err(e);
        }
        // Pods that are ready but not yet available become available by time alone.
        let min_ready = rs
            .spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0);
        let requeue = if min_ready > 0 {
            pods.iter()
                .filter(|p| !pod_state::is_available(p, min_ready, now))
                .filter_map(|p| pod_state::until_available(p, min_ready, now))
                .min()
                .map(|d| d + Duration::from_millis(100))
        } else {
            None
        };
        Ok(requeue)
    }

    async fn manage_replicas(&self, key: &Key, rs: &ReplicaSet, pods: &[Pod]) -> Result<()> {
        let want = usize::try_from(
            rs.spec
                .as_ref()
                .and_then(|s| s.replicas)
                .unwrap_or(1)
                .max(0),
        )
        .unwrap_or(0);
        let about = object_reference(rs);
        if pods.len() < want {
            let diff = (want - pods.len()).min(BURST_REPLICAS);
            self.expectations.expect_creations(key, diff);
            let template = pod_from_template(rs);
            tracing::debug!(replicaset = %key, need = want, creating = diff, "too few replicas");
            let templates = vec![template; diff];
            let (_, error) = crate::slow_start::create_pods(
                self.control.as_ref(),
                &self.expectations,
                key,
                &about,
                &templates,
            )
            .await;
            return error.map_or(Ok(()), |e| Err(Error::from(e)));
        }
        if pods.len() > want {
            let diff = (pods.len() - want).min(BURST_REPLICAS);
            let victims = pods_to_delete(pods, diff);
            let names: Vec<String> = victims
                .iter()
                .map(|p| p.metadata.name.clone().unwrap_or_default())
                .collect();
            tracing::debug!(replicaset = %key, need = want, deleting = diff, "too many replicas");
            self.expectations
                .expect_deletions(key, names.iter().cloned());
            let deletes = victims.iter().map(|p| {
                let name = p.metadata.name.clone().unwrap_or_default();
                let uid = p.metadata.uid.clone().unwrap_or_default();
                async move {
                    let r = self.control.delete_pod(&key.namespace, &name, &uid).await;
                    (name, r)
                }
            });
            let mut result = Ok(());
            for (name, outcome) in join_all(deletes).await {
                match outcome {
                    Ok(()) => self.control.record(
                        &about,
                        "Normal",
                        "SuccessfulDelete",
                        format!("Deleted pod: {name}"),
                    ),
                    Err(e) if e.is_not_found() => self.expectations.deletion_observed(key, &name),
                    Err(e) => {
                        self.expectations.deletion_observed(key, &name);
                        self.control.record(
                            &about,
                            "Warning",
                            "FailedDelete",
                            format!("Error deleting: {e}"),
                        );
                        result = Err(e);
                    }
                }
            }
            return result.map_err(Error::from);
        }
        Ok(())
    }
}

/// The `n` pods to delete first, in upstream's preference order.
pub fn pods_to_delete(pods: &[Pod], n: usize) -> Vec<Pod> {
    let node_of = |p: &Pod| {
        p.spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default()
    };
    let mut per_node: HashMap<String, usize> = HashMap::new();
    for p in pods {
        let node = node_of(p);
        if !node.is_empty() {
            *per_node.entry(node).or_insert(0) += 1;
        }
    }
    let rank = |p: &Pod| per_node.get(&node_of(p)).copied().unwrap_or(0);
    let mut ranked: Vec<&Pod> = pods.iter().collect();
    ranked.sort_by(|a, b| pod_state::deletion_order(a, rank(a), b, rank(b)));
    ranked.into_iter().take(n).cloned().collect()
}

/// The status the set should report for `pods` (its claimed active pods).
pub fn calculate_status(
    rs: &ReplicaSet,
    pods: &[Pod],
    manage_err: Option<&Error>,
    now: jiff::Timestamp,
) -> ReplicaSetStatus {
    let template_labels = rs
        .spec
        .as_ref()
        .and_then(|s| s.template.as_ref())
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let template_selector: Selector = template_labels.into_iter().collect();
    let min_ready = rs
        .spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0);
    let fully_labeled = pods
        .iter()
        .filter(|p| template_selector.matches(&p.metadata.labels.clone().unwrap_or_default()))
        .count();
    let ready = pods.iter().filter(|p| pod_state::is_ready(p)).count();
    let available = pods
        .iter()
        .filter(|p| pod_state::is_available(p, min_ready, now))
        .count();
    let old = rs.status.clone().unwrap_or_default();
    let mut conditions: Vec<ReplicaSetCondition> = old
        .conditions
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c.type_ != "ReplicaFailure")
        .collect();
    let had_failure = old
        .conditions
        .as_ref()
        .and_then(|cs| cs.iter().find(|c| c.type_ == "ReplicaFailure").cloned());
    match (manage_err, had_failure) {
        (Some(e), None) => {
            let want = rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            let reason = if usize::try_from(want).unwrap_or(0) > pods.len() {
                "FailedCreate"
            } else {
                "FailedDelete"
            };
            conditions.push(ReplicaSetCondition {
                type_: "ReplicaFailure".into(),
                status: "True".into(),
                reason: Some(reason.into()),
                message: Some(e.to_string()),
                last_transition_time: Some(Time(now)),
            });
        }
        (Some(_), Some(existing)) => conditions.push(existing),
        (None, _) => {}
    }
    ReplicaSetStatus {
        replicas: i32::try_from(pods.len()).unwrap_or(i32::MAX),
        fully_labeled_replicas: nz(fully_labeled),
        ready_replicas: nz(ready),
        available_replicas: nz(available),
        observed_generation: rs.metadata.generation.or(old.observed_generation),
        conditions: (!conditions.is_empty()).then_some(conditions),
        terminating_replicas: old.terminating_replicas,
    }
}

fn status_changed(rs: &ReplicaSet, new: &ReplicaSetStatus) -> bool {
    rs.status.as_ref() != Some(new)
}

/// The set that controls `pod`, if a ReplicaSet does.
pub fn owning_set(pod: &Pod) -> Option<Key> {
    let c = controller_of(&pod.metadata)?;
    (c.kind == "ReplicaSet" && c.api_version == "apps/v1").then(|| {
        Key::new(
            pod.metadata.namespace.clone().unwrap_or_default(),
            c.name.clone(),
        )
    })
}

#[cfg(test)]
mod tests;
