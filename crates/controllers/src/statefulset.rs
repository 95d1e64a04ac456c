//! The StatefulSet controller: pods with stable identities `<set>-<ordinal>` (hostname,
//! subdomain, per-ordinal PersistentVolumeClaims), created in order (OrderedReady) or all at
//! once (Parallel), scaled down from the highest ordinal, and rolled from the highest ordinal
//! down to `partition` one pod at a time, as upstream's `pkg/controller/statefulset`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use kube::core::Selector;
use kube::runtime::reflector::{ObjectRef, Store};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::control::{self, ClientControl, EventRecorder, PodControl, object_reference};
use crate::expectations::Expectations;
use crate::history::{self, POD_REVISION_LABEL, RevisionControl};
use crate::history_pods;
use crate::informer::Informer;
use crate::owner::{controller_of, controller_ref};
use crate::pod_state;
use crate::queue::{Key, WorkQueue};
use crate::{Clock, spawn_resync, spawn_workers, system_clock};

/// Name in logs and events, as upstream's component.
pub const NAME: &str = "statefulset-controller";

/// The label with the pod's name (so a Service can select one member).
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";

/// The label with the pod's ordinal.
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

/// Errors of one sync.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The selector cannot be parsed.
    #[error("invalid selector: {0}")]
    Selector(String),
    /// A write failed; the sync is retried with backoff.
    #[error(transparent)]
    Control(#[from] control::Error),
    /// Revisions could not be found or made.
    #[error(transparent)]
    History(#[from] history::Error),
}

/// Result of a sync.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// StatefulSet-specific writes: status and claims.
#[async_trait]
pub trait StatefulSetControl: Send + Sync {
    /// Replace a StatefulSet's status.
    async fn update_stateful_set_status(&self, set: &StatefulSet) -> control::Result<StatefulSet>;
    /// Create a claim; one that already exists is fine.
    async fn create_claim(
        &self,
        namespace: &str,
        claim: &PersistentVolumeClaim,
    ) -> control::Result<()>;
    /// Delete a claim (scale-down with `whenScaled: Delete`).
    async fn delete_claim(&self, namespace: &str, name: &str) -> control::Result<()>;
}

/// Everything a StatefulSet sync needs.
pub struct StatefulSetController<C> {
    /// Side effects.
    pub control: Arc<C>,
    /// StatefulSet cache.
    pub sets: Store<StatefulSet>,
    /// Pod cache.
    pub pods: Store<Pod>,
    /// ControllerRevision cache.
    pub revisions: Store<ControllerRevision>,
    /// Pending creates/deletes per set (a lagging cache must not cause a second create).
    pub expectations: Expectations,
    /// Wall clock for minReadySeconds.
    pub clock: Clock,
}

/// The selector of a set, parsed.
pub fn selector_of(set: &StatefulSet) -> Result<Selector> {
    let sel = set
        .spec
        .as_ref()
        .map(|s| s.selector.clone())
        .unwrap_or_default();
    Selector::try_from(sel).map_err(|e| Error::Selector(e.to_string()))
}

/// The ordinal of a pod named `<set>-<n>`, if it is a member of `set_name`.
pub fn ordinal_of(set_name: &str, pod_name: &str) -> Option<i32> {
    let (parent, n) = pod_name.rsplit_once('-')?;
    if parent != set_name || n.is_empty() || (n.len() > 1 && n.starts_with('0')) {
        return None;
    }
    n.parse::<i32>().ok().filter(|n| *n >= 0)
}

/// The set that controls `pod`, if a StatefulSet does.
pub fn owning_set(pod: &Pod) -> Option<Key> {
    let c = controller_of(&pod.metadata)?;
    (c.kind == "StatefulSet" && c.api_version == "apps/v1").then(|| {
        Key::new(
            pod.metadata.namespace.clone().unwrap_or_default(),
            c.name.clone(),
        )
    })
}

fn set_name(set: &StatefulSet) -> &str {
    set.metadata.name.as_deref().unwrap_or_default()
}

fn replicas_of(set: &StatefulSet) -> i32 {
    set.spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1)
        .max(0)
}

fn start_ordinal(set: &StatefulSet) -> i32 {
    set.spec
        .as_ref()
        .and_then(|s| s.ordinals.as_ref())
        .and_then(|o| o.start)
        .unwrap_or(0)
        .max(0)
}

fn is_parallel(set: &StatefulSet) -> bool {
    set.spec
        .as_ref()
        .and_then(|s| s.pod_management_policy.as_deref())
        == Some("Parallel")
}

fn strategy(set: &StatefulSet) -> &str {
    set.spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.type_.as_deref())
        .unwrap_or("RollingUpdate")
}

fn partition(set: &StatefulSet) -> Option<i32> {
    set.spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.rolling_update.as_ref())
        .and_then(|r| r.partition)
}

fn min_ready(set: &StatefulSet) -> i32 {
    set.spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0)
}

fn retention(set: &StatefulSet, which: &str) -> String {
    let p = set
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_claim_retention_policy.as_ref());
    let v = match which {
        "whenDeleted" => p.and_then(|p| p.when_deleted.clone()),
        _ => p.and_then(|p| p.when_scaled.clone()),
    };
    v.unwrap_or_else(|| "Retain".into())
}

/// `<template>-<set>-<ordinal>`: the claim a pod of `set` mounts for `template`.
pub fn claim_name(template: &str, set: &str, ordinal: i32) -> String {
    format!("{template}-{set}-{ordinal}")
}

/// The claims of the pod with `ordinal`, from the set's `volumeClaimTemplates`.
pub fn claims_for(set: &StatefulSet, ordinal: i32) -> Vec<PersistentVolumeClaim> {
    let name = set_name(set);
    let match_labels = set
        .spec
        .as_ref()
        .and_then(|s| s.selector.match_labels.clone())
        .unwrap_or_default();
    let delete_with_set = retention(set, "whenDeleted") == "Delete";
    set.spec
        .as_ref()
        .and_then(|s| s.volume_claim_templates.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|mut claim| {
            let tname = claim.metadata.name.clone().unwrap_or_default();
            let mut labels = claim.metadata.labels.clone().unwrap_or_default();
            labels.extend(match_labels.clone());
            claim.metadata = ObjectMeta {
                name: Some(claim_name(&tname, name, ordinal)),
                namespace: set.metadata.namespace.clone(),
                labels: (!labels.is_empty()).then_some(labels),
                annotations: claim.metadata.annotations.clone(),
                owner_references: delete_with_set.then(|| vec![controller_ref(set)]),
                ..ObjectMeta::default()
            };
            claim.status = None;
            claim
        })
        .collect()
}

/// The pod with `ordinal` made from `template` at revision `revision` (its name).
pub fn new_pod(set: &StatefulSet, template: &PodTemplateSpec, ordinal: i32, revision: &str) -> Pod {
    let set_name = set_name(set);
    let name = format!("{set_name}-{ordinal}");
    let tmeta = template.metadata.clone().unwrap_or_default();
    let mut labels = tmeta.labels.unwrap_or_default();
    labels.insert(POD_NAME_LABEL.into(), name.clone());
    labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
    labels.insert(POD_REVISION_LABEL.into(), revision.to_string());
    let mut spec = template.spec.clone().unwrap_or_default();
    spec.hostname = Some(name.clone());
    if let Some(svc) = set
        .spec
        .as_ref()
        .and_then(|s| s.service_name.clone())
        .filter(|s| !s.is_empty())
    {
        spec.subdomain = Some(svc);
    }
    for claim in set
        .spec
        .as_ref()
        .and_then(|s| s.volume_claim_templates.as_ref())
        .into_iter()
        .flatten()
    {
        let tname = claim.metadata.name.clone().unwrap_or_default();
        let volume = Volume {
            name: tname.clone(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim_name(&tname, set_name, ordinal),
                read_only: None,
            }),
            ..Volume::default()
        };
        let volumes = spec.volumes.get_or_insert_with(Vec::new);
        volumes.retain(|v| v.name != tname);
        volumes.push(volume);
    }
    Pod {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: set.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: tmeta.annotations,
            finalizers: tmeta.finalizers,
            owner_references: Some(vec![controller_ref(set)]),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: None,
    }
}

fn revision_of(pod: &Pod) -> &str {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(POD_REVISION_LABEL))
        .map(String::as_str)
        .unwrap_or_default()
}

fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

fn is_failed(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Failed") | Some("Succeeded")
    )
}

fn is_running_and_ready(pod: &Pod) -> bool {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
        && pod_state::is_ready(pod)
}

fn is_healthy(pod: &Pod, min_ready: i32, now: jiff::Timestamp) -> bool {
    is_running_and_ready(pod)
        && !is_terminating(pod)
        && pod_state::is_available(pod, min_ready, now)
}

/// One step the controller decided on.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// Create this pod (and its claims first).
    Create(Pod),
    /// Delete this pod (the bool: also delete its claims, `whenScaled: Delete`).
    Delete(Pod, bool),
}

/// Upstream's updateStatefulSet, as a pure function: the steps to take this sync, given the
/// claimed pods, the current/update revisions and their templates.
pub fn plan(
    set: &StatefulSet,
    pods: &[Pod],
    current: (&str, &PodTemplateSpec),
    update: (&str, &PodTemplateSpec),
    now: jiff::Timestamp,
) -> Vec<Step> {
    let name = set_name(set);
    let start = start_ordinal(set);
    let replicas = replicas_of(set);
    let end = start.saturating_add(replicas);
    let min_ready = min_ready(set);
    let monotonic = !is_parallel(set);
    let current_replicas = set
        .status
        .as_ref()
        .and_then(|s| s.current_replicas)
        .unwrap_or(0);
    let rolling = strategy(set) == "RollingUpdate";
    let partition = partition(set);
    let mut slots: Vec<Option<&Pod>> = vec![None; usize::try_from(replicas).unwrap_or(0)];
    let mut condemned: Vec<(i32, &Pod)> = Vec::new();
    for pod in pods {
        let Some(ord) = ordinal_of(name, pod.metadata.name.as_deref().unwrap_or_default()) else {
            continue;
        };
        if ord >= start && ord < end {
            if let Some(slot) = usize::try_from(ord - start)
                .ok()
                .and_then(|i| slots.get_mut(i))
            {
                *slot = Some(pod);
            }
        } else {
            condemned.push((ord, pod));
        }
    }
    condemned.sort_by_key(|c| std::cmp::Reverse(c.0));
    let mut steps = Vec::new();
    // Replicas in ordinal order: replace failed pods, create missing ones, wait on unhealthy
    // ones when ordered.
    for (i, slot) in slots.iter().enumerate() {
        let ord = start + i32::try_from(i).unwrap_or(0);
        match slot {
            None => {
                // newVersionedStatefulSetPod: ordinals below the partition (or, without one,
                // below currentReplicas) stay at the current revision.
                let at_current = rolling
                    && match partition {
                        Some(p) => ord < start + p,
                        None => ord < start + current_replicas,
                    };
                let (rev, template) = if at_current { current } else { update };
                steps.push(Step::Create(new_pod(set, template, ord, rev)));
                if monotonic {
                    return steps;
                }
            }
            Some(pod) if is_failed(pod) && !is_terminating(pod) => {
                steps.push(Step::Delete((*pod).clone(), false));
                if monotonic {
                    return steps;
                }
            }
            Some(pod) => {
                if monotonic && !is_healthy(pod, min_ready, now) {
                    return steps;
                }
            }
        }
    }
    if monotonic && !steps.is_empty() {
        return steps;
    }
    // Condemned pods, highest ordinal first; ordered sets delete one at a time and only once
    // every remaining pod is healthy.
    let delete_claims = retention(set, "whenScaled") == "Delete";
    for (_, pod) in &condemned {
        if is_terminating(pod) {
            if monotonic {
                return steps;
            }
            continue;
        }
        steps.push(Step::Delete((*pod).clone(), delete_claims));
        if monotonic {
            return steps;
        }
    }
    if !steps.is_empty() || !rolling {
        return steps;
    }
    // RollingUpdate: from the highest ordinal down to the partition, one pod at a time, each
    // replaced pod healthy before the next goes.
    let floor = partition.unwrap_or(0).max(0);
    for i in (0..slots.len()).rev() {
        if i32::try_from(i).unwrap_or(0) < floor {
            break;
        }
        let Some(pod) = slots[i] else { return steps };
        if revision_of(pod) != update.0 && !is_terminating(pod) {
            steps.push(Step::Delete(pod.clone(), false));
            return steps;
        }
        if !is_healthy(pod, min_ready, now) {
            return steps;
        }
    }
    steps
}

/// The status for the claimed `pods` (upstream's computeReplicaStatus plus completion of a
/// finished rolling update).
pub fn calculate_status(
    set: &StatefulSet,
    pods: &[Pod],
    current: &str,
    update: &str,
    collision_count: i32,
    now: jiff::Timestamp,
) -> StatefulSetStatus {
    let name = set_name(set);
    let min_ready = min_ready(set);
    let members: Vec<&Pod> = pods
        .iter()
        .filter(|p| ordinal_of(name, p.metadata.name.as_deref().unwrap_or_default()).is_some())
        .collect();
    let count = |f: &dyn Fn(&Pod) -> bool| {
        i32::try_from(members.iter().filter(|p| f(p)).count()).unwrap_or(i32::MAX)
    };
    let replicas = count(&|_| true);
    let ready = count(&is_running_and_ready);
    let available =
        count(&|p| is_running_and_ready(p) && pod_state::is_available(p, min_ready, now));
    let mut current_replicas = count(&|p| !is_terminating(p) && revision_of(p) == current);
    let updated = count(&|p| !is_terminating(p) && revision_of(p) == update);
    let mut current_revision = current.to_string();
    if strategy(set) == "RollingUpdate" && updated == replicas && ready == replicas {
        current_replicas = updated;
        current_revision = update.to_string();
    }
    let old = set.status.clone().unwrap_or_default();
    StatefulSetStatus {
        replicas,
        ready_replicas: Some(ready),
        available_replicas: Some(available),
        current_replicas: Some(current_replicas),
        updated_replicas: Some(updated),
        current_revision: Some(current_revision),
        update_revision: Some(update.to_string()),
        observed_generation: set.metadata.generation.or(old.observed_generation),
        collision_count: Some(collision_count),
        conditions: old.conditions,
    }
}

impl<C> StatefulSetController<C>
where
    C: PodControl + RevisionControl + StatefulSetControl + EventRecorder + 'static,
{
    /// Sync one set; returns when to look again (minReadySeconds), if needed.
    pub async fn reconcile(&self, key: &Key) -> Result<Option<Duration>> {
        let Some(set) = self
            .sets
            .get(&ObjectRef::new(&key.name).within(&key.namespace))
        else {
            self.expectations.forget(key);
            return Ok(None);
        };
        let set = set.as_ref();
        let selector = selector_of(set)?;
        let me = controller_ref(set);
        let deleting = set.metadata.deletion_timestamp.is_some();
        let name = set_name(set).to_string();
        let candidates = self.pods.state().into_iter().filter(|p| {
            ordinal_of(&name, p.metadata.name.as_deref().unwrap_or_default()).is_some()
        });
        let pods = history_pods::claim_pods(
            self.control.as_ref(),
            &key.namespace,
            &me,
            deleting,
            &selector,
            candidates,
        )
        .await?;
        let template = set
            .spec
            .as_ref()
            .map(|s| s.template.clone())
            .unwrap_or_default();
        let old_status = set.status.clone().unwrap_or_default();
        let collision_count = old_status.collision_count.unwrap_or(0);
        let owned = history::owned_revisions(
            self.revisions.state().iter().map(|r| r.as_ref()),
            &key.namespace,
            me.uid.as_str(),
        );
        let revs = match history::sync_revisions(
            self.control.as_ref(),
            &set.metadata,
            me.clone(),
            &template,
            owned,
            collision_count,
            old_status.current_revision.as_deref(),
        )
        .await
        {
            Ok(r) => r,
            Err(history::Error::Collision(rev, bumped)) => {
                let mut updated = set.clone();
                let mut st = old_status.clone();
                st.collision_count = Some(bumped);
                updated.status = Some(st);
                self.control.update_stateful_set_status(&updated).await?;
                return Err(history::Error::Collision(rev, bumped).into());
            }
            Err(e) => return Err(e.into()),
        };
        let current_name = revs.current.metadata.name.clone().unwrap_or_default();
        let update_name = revs.update.metadata.name.clone().unwrap_or_default();
        let current_template = history::template_of(&revs.current).unwrap_or(template.clone());
        let now = (self.clock)();
        let mut result = Ok(());
        if !deleting && self.expectations.satisfied(key) {
            let steps = plan(
                set,
                &pods,
                (&current_name, &current_template),
                (&update_name, &template),
                now,
            );
            result = self.execute(key, set, steps).await;
        }
        let status = calculate_status(
            set,
            &pods,
            &current_name,
            &update_name,
            revs.collision_count,
            now,
        );
        if set.status.as_ref() != Some(&status) {
            let mut updated = set.clone();
            updated.status = Some(status);
            self.control.update_stateful_set_status(&updated).await?;
        }
        let mut live: Vec<&str> = pods.iter().map(revision_of).collect();
        live.push(&current_name);
        live.push(&update_name);
        let limit = set
            .spec
            .as_ref()
            .and_then(|s| s.revision_history_limit)
            .unwrap_or(history::DEFAULT_HISTORY_LIMIT);
        history::truncate_history(self.control.as_ref(), &revs.all, &live, limit).await?;
        result?;
        Ok(history_pods::next_availability_check(
            &pods,
            min_ready(set),
            now,
        ))
    }

    async fn execute(&self, key: &Key, set: &StatefulSet, steps: Vec<Step>) -> Result<()> {
        let about = object_reference(set);
        let set_name = set_name(set);
        let creates = steps
            .iter()
            .filter(|s| matches!(s, Step::Create(_)))
            .count();
        if creates > 0 {
            self.expectations.expect_creations(key, creates);
        } else {
            self.expectations.expect_deletions(
                key,
                steps.iter().filter_map(|s| match s {
                    Step::Delete(p, _) => p.metadata.name.clone(),
                    Step::Create(_) => None,
                }),
            );
        }
        for step in steps {
            match step {
                Step::Create(pod) => {
                    let pname = pod.metadata.name.clone().unwrap_or_default();
                    let ord = ordinal_of(set_name, &pname).unwrap_or(0);
                    for claim in claims_for(set, ord) {
                        let cname = claim.metadata.name.clone().unwrap_or_default();
                        if let Err(e) = self.control.create_claim(&key.namespace, &claim).await {
                            self.expectations.creation_observed(key);
                            self.control.record(
                                &about,
                                "Warning",
                                "FailedCreate",
                                format!(
                                    "create Claim {cname} for Pod {pname} in StatefulSet {set_name} failed error: {e}"
                                ),
                            );
                            return Err(e.into());
                        }
                    }
                    match self.control.create_pod(&key.namespace, &pod).await {
                        Ok(_) => self.control.record(
                            &about,
                            "Normal",
                            "SuccessfulCreate",
                            format!("create Pod {pname} in StatefulSet {set_name} successful"),
                        ),
                        // The cache lags behind our own earlier create: the watch will catch up.
                        Err(e) if e.is_already_exists() => {
                            self.expectations.creation_observed(key);
                        }
                        Err(e) => {
                            self.expectations.creation_observed(key);
                            self.control.record(
                                &about,
                                "Warning",
                                "FailedCreate",
                                format!(
                                    "create Pod {pname} in StatefulSet {set_name} failed error: {e}"
                                ),
                            );
                            return Err(e.into());
                        }
                    }
                }
                Step::Delete(pod, delete_claims) => {
                    let pname = pod.metadata.name.clone().unwrap_or_default();
                    let uid = pod.metadata.uid.clone().unwrap_or_default();
                    match self.control.delete_pod(&key.namespace, &pname, &uid).await {
                        Ok(()) => self.control.record(
                            &about,
                            "Normal",
                            "SuccessfulDelete",
                            format!("delete Pod {pname} in StatefulSet {set_name} successful"),
                        ),
                        Err(e) if e.is_not_found() => {
                            self.expectations.deletion_observed(key, &pname)
                        }
                        Err(e) => {
                            self.expectations.deletion_observed(key, &pname);
                            self.control.record(
                                &about,
                                "Warning",
                                "FailedDelete",
                                format!(
                                    "delete Pod {pname} in StatefulSet {set_name} failed error: {e}"
                                ),
                            );
                            return Err(e.into());
                        }
                    }
                    if delete_claims {
                        let ord = ordinal_of(set_name, &pname).unwrap_or(0);
                        for claim in claims_for(set, ord) {
                            let cname = claim.metadata.name.unwrap_or_default();
                            match self.control.delete_claim(&key.namespace, &cname).await {
                                Ok(()) => {}
                                Err(e) if e.is_not_found() => {}
                                Err(e) => return Err(e.into()),
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

#[async_trait]
impl StatefulSetControl for ClientControl {
    async fn update_stateful_set_status(&self, set: &StatefulSet) -> control::Result<StatefulSet> {
        let api: Api<StatefulSet> = Api::namespaced(
            self.client(),
            set.metadata.namespace.as_deref().unwrap_or("default"),
        );
        let name = set.metadata.name.as_deref().unwrap_or_default();
        Ok(api
            .replace_status(name, &PostParams::default(), set)
            .await?)
    }

    async fn create_claim(
        &self,
        namespace: &str,
        claim: &PersistentVolumeClaim,
    ) -> control::Result<()> {
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client(), namespace);
        match api.create(&PostParams::default(), claim).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn delete_claim(&self, namespace: &str, name: &str) -> control::Result<()> {
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client(), namespace);
        api.delete(name, &DeleteParams::default()).await?;
        Ok(())
    }
}

/// Start the StatefulSet controller: handlers on the shared pod and revision informers, its own
/// StatefulSet informer, and workers once every cache it reads has synced.
pub fn register(
    client: &kube::Client,
    pods: &mut Informer<Pod>,
    revisions: &mut Informer<ControllerRevision>,
    tasks: &TaskTracker,
    shutdown: CancellationToken,
) {
    let mut sets: Informer<StatefulSet> = Informer::new(client.clone());
    let queue = WorkQueue::new();
    let ctl = Arc::new(StatefulSetController {
        control: Arc::new(ClientControl::new(client.clone(), NAME)),
        sets: sets.store(),
        pods: pods.store(),
        revisions: revisions.store(),
        expectations: Expectations::new(),
        clock: system_clock(),
    });
    let q = queue.clone();
    sets.on_change(Arc::new(move |_old, new| {
        if let Some(s) = new {
            q.add(Key::of(&s.metadata));
        }
    }));
    let (c1, c2) = (ctl.clone(), ctl.clone());
    pods.on_change(history_pods::pod_handler(history_pods::PodHandlerSpec {
        queue: queue.clone(),
        owning: owning_set,
        created: Box::new(move |k| c1.expectations.creation_observed(k)),
        deleted: Box::new(move |k, name| c2.expectations.deletion_observed(k, name)),
        owners: sets.store(),
        selector: |s| selector_of(s).ok(),
    }));
    let q = queue.clone();
    revisions.on_change(Arc::new(move |old, new| {
        for r in [old, new].into_iter().flatten() {
            if let Some(c) = controller_of(&r.metadata)
                && c.kind == "StatefulSet"
            {
                q.add(Key::new(
                    r.metadata.namespace.clone().unwrap_or_default(),
                    c.name.clone(),
                ));
            }
        }
    }));
    let set_store = sets.store();
    let synced = [sets.synced(), pods.synced(), revisions.synced()];
    tasks.spawn(sets.run(shutdown.clone()));
    let tasks2 = tasks.clone();
    tasks.spawn(async move {
        let ready = futures::future::join_all(synced.map(|s| s.wait()));
        tokio::select! {
            r = ready => if r.contains(&false) { return },
            _ = shutdown.cancelled() => return,
        }
        spawn_resync(&tasks2, set_store, queue.clone(), shutdown.clone());
        spawn_workers(&tasks2, NAME, queue, shutdown, move |key| {
            let ctl = ctl.clone();
            async move { ctl.reconcile(&key).await }
        });
    });
}

#[cfg(test)]
#[path = "statefulset_tests.rs"]
mod tests;
