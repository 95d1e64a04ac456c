//! The Deployment controller: one ReplicaSet per pod template, rolled from old to new with
//! RollingUpdate (maxSurge/maxUnavailable) or Recreate, revisions for `rollout history/undo`,
//! proportional scaling, pause, cleanup and the Progressing/Available conditions — following
//! upstream's pkg/controller/deployment step by step.

pub mod hash;
pub mod replicas;
pub mod status;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::core::Selector;
use kube::runtime::reflector::{ObjectRef, Store};

use crate::Clock;
use crate::control::{self, DeploymentControl, EventRecorder, ReplicaSetControl, object_reference};
use crate::owner::{self, Claim, controller_of, controller_ref};
use crate::queue::Key;
use hash::{POD_TEMPLATE_HASH, compute_hash, equal_ignore_hash};
use replicas::{
    REVISION, desired_annotation, is_active, is_rolling, is_saturated, max_revision, max_surge,
    max_unavailable, new_rs_new_replicas, proportion, replicas as want_replicas,
    replicas_annotations_need_update, revision, rs_actual, rs_available_bounded, rs_replicas,
    set_new_replica_set_annotations, set_replicas_annotations,
};
use status::{
    FOUND_NEW_RS, NEW_RS_AVAILABLE, NEW_RS_CREATED, PAUSED, RESUMED, RS_UPDATED, TIMED_OUT,
    calculate_status, condition, deadline_at, get_condition, is_complete, is_progressing,
    is_timed_out, progress_deadline, remove_condition, set_condition,
};

/// Name in logs and events, as upstream's component.
pub const NAME: &str = "deployment-controller";

/// Errors of one sync.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The selector cannot be parsed.
    #[error("invalid selector: {0}")]
    Selector(String),
    /// A ReplicaSet with the new set's name exists but holds another template.
    #[error("hash collision on replica set {0}; collisionCount bumped")]
    HashCollision(String),
    /// The created ReplicaSet's name is taken but not yet in the cache: retry.
    #[error("replica set {0} exists but is not cached yet")]
    NotCachedYet(String),
    /// A write failed; the sync is retried with backoff.
    #[error(transparent)]
    Control(#[from] control::Error),
}

/// Result of a sync.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Side effects a Deployment sync has.
pub trait Control: ReplicaSetControl + DeploymentControl + EventRecorder {}
impl<T: ReplicaSetControl + DeploymentControl + EventRecorder> Control for T {}

/// Everything a Deployment sync needs.
pub struct DeploymentController<C> {
    /// Side effects.
    pub control: Arc<C>,
    /// Deployment cache.
    pub deployments: Store<Deployment>,
    /// ReplicaSet cache.
    pub sets: Store<ReplicaSet>,
    /// Pod cache (Recreate waits for old pods to stop).
    pub pods: Store<Pod>,
    /// Wall clock for conditions and deadlines.
    pub clock: Clock,
}

/// The Deployment that controls `rs`, if one does.
pub fn owning_deployment(rs: &ReplicaSet) -> Option<Key> {
    let c = controller_of(&rs.metadata)?;
    (c.kind == "Deployment" && c.api_version == "apps/v1").then(|| {
        Key::new(
            rs.metadata.namespace.clone().unwrap_or_default(),
            c.name.clone(),
        )
    })
}

/// The parsed selector of a Deployment.
pub fn selector_of(d: &Deployment) -> Result<Selector> {
    let sel = d
        .spec
        .as_ref()
        .map(|s| s.selector.clone())
        .unwrap_or_default();
    Selector::try_from(sel).map_err(|e| Error::Selector(e.to_string()))
}

fn created(rs: &ReplicaSet) -> (Option<jiff::Timestamp>, String) {
    (
        rs.metadata.creation_timestamp.as_ref().map(|t| t.0),
        rs.metadata.name.clone().unwrap_or_default(),
    )
}

impl<C: Control + 'static> DeploymentController<C> {
    /// Sync one Deployment; returns when to look again (progress deadline), if needed.
    pub async fn reconcile(&self, key: &Key) -> Result<Option<Duration>> {
        let Some(d) = self
            .deployments
            .get(&ObjectRef::new(&key.name).within(&key.namespace))
        else {
            return Ok(None);
        };
        let d = d.as_ref().clone();
        let about = object_reference(&d);
        let selector = selector_of(&d)?;
        let mut sync = Sync {
            control: self.control.as_ref(),
            pods: &self.pods,
            now: (self.clock)(),
            about,
            sets: Vec::new(),
            d,
        };
        if selector.selects_all() {
            sync.control.record(
                &sync.about,
                "Warning",
                "SelectingAll",
                "This deployment is selecting all pods. A non-empty selector is required.".into(),
            );
            let d = &sync.d;
            if d.status.as_ref().and_then(|s| s.observed_generation) < d.metadata.generation {
                let mut s = d.status.clone().unwrap_or_default();
                s.observed_generation = d.metadata.generation;
                sync.update_status(s).await?;
            }
            return Ok(None);
        }
        sync.sets = self.claim_sets(&sync.d, &selector).await?;
        if sync.d.metadata.deletion_timestamp.is_some() {
            let new = sync.new_replica_set(false).await?;
            sync.sync_status(new).await?;
            return Ok(None);
        }
        sync.check_paused_conditions().await?;
        let paused = sync.d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false);
        if paused || sync.is_scaling_event().await? {
            return sync.sync_scale().await;
        }
        if is_rolling(&sync.d) {
            sync.rollout_rolling().await
        } else {
            sync.rollout_recreate().await
        }
    }

    async fn claim_sets(&self, d: &Deployment, selector: &Selector) -> Result<Vec<ReplicaSet>> {
        let ns = d.metadata.namespace.clone().unwrap_or_default();
        let me = controller_ref(d);
        let deleting = d.metadata.deletion_timestamp.is_some();
        let mut owned = Vec::new();
        for rs in self.sets.state() {
            if rs.metadata.namespace.as_deref() != Some(ns.as_str()) {
                continue;
            }
            let name = rs.metadata.name.clone().unwrap_or_default();
            let uid = rs.metadata.uid.clone().unwrap_or_default();
            match owner::claim(&me, deleting, selector, &rs.metadata) {
                Claim::Owned => owned.push(rs.as_ref().clone()),
                Claim::Adopt(owners) => {
                    match self
                        .control
                        .set_replica_set_owners(&ns, &name, &uid, &owners)
                        .await
                    {
                        Ok(()) => {
                            let mut rs = rs.as_ref().clone();
                            rs.metadata.owner_references = Some(owners);
                            owned.push(rs);
                        }
                        Err(e) if e.is_not_found() => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                Claim::Release(owners) => {
                    match self
                        .control
                        .set_replica_set_owners(&ns, &name, &uid, &owners)
                        .await
                    {
                        Ok(()) => tracing::info!(replicaset = %name, "released replica set"),
                        Err(e) if e.is_not_found() => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                Claim::Ignore => {}
            }
        }
        Ok(owned)
    }
}

/// One sync's working state: the Deployment and its sets, updated as writes return.
struct Sync<'a, C> {
    control: &'a C,
    pods: &'a Store<Pod>,
    now: jiff::Timestamp,
    about: ObjectReference,
    d: Deployment,
    sets: Vec<ReplicaSet>,
}

impl<C: Control> Sync<'_, C> {
    fn name(&self, i: usize) -> String {
        self.sets[i].metadata.name.clone().unwrap_or_default()
    }

    fn template(&self) -> k8s_openapi::api::core::v1::PodTemplateSpec {
        self.d
            .spec
            .as_ref()
            .map(|s| s.template.clone())
            .unwrap_or_default()
    }

    /// The oldest set whose template equals the Deployment's (ignoring the hash).
    fn find_new(&self) -> Option<usize> {
        let t = self.template();
        let mut idx: Vec<usize> = (0..self.sets.len()).collect();
        idx.sort_by_key(|i| created(&self.sets[*i]));
        idx.into_iter().find(|i| {
            self.sets[*i]
                .spec
                .as_ref()
                .and_then(|s| s.template.as_ref())
                .is_some_and(|rt| equal_ignore_hash(rt, &t))
        })
    }

    fn olds(&self, new: Option<usize>) -> Vec<usize> {
        let mut v: Vec<usize> = (0..self.sets.len()).filter(|i| Some(*i) != new).collect();
        v.sort_by_key(|i| created(&self.sets[*i]));
        v
    }

    fn all(&self) -> Vec<&ReplicaSet> {
        self.sets.iter().collect()
    }

    async fn update_status(&mut self, s: DeploymentStatus) -> Result<()> {
        let mut d = self.d.clone();
        d.status = Some(s);
        self.d = self.control.update_deployment_status(&d).await?;
        Ok(())
    }

    /// Record the revision on the Deployment itself (`kubectl describe` shows it).
    async fn set_deployment_revision(&mut self, rev: &str) -> Result<()> {
        let current = self
            .d
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(REVISION))
            .map(String::as_str);
        if current == Some(rev) || rev.is_empty() {
            return Ok(());
        }
        self.d = self
            .control
            .set_deployment_annotation(&self.d, REVISION, rev)
            .await?;
        Ok(())
    }

    /// Upstream's getNewReplicaSet: find (and bring up to date) or create the new set.
    async fn new_replica_set(&mut self, create: bool) -> Result<Option<usize>> {
        let existing = self.find_new();
        let max_old = max_revision(
            self.sets
                .iter()
                .enumerate()
                .filter(|(i, _)| Some(*i) != existing)
                .map(|(_, rs)| rs),
        );
        let new_revision = max_old + 1;
        let min_ready = self.d.spec.as_ref().and_then(|s| s.min_ready_seconds);
        if let Some(i) = existing {
            let mut rs = self.sets[i].clone();
            let annotated = set_new_replica_set_annotations(&self.d, &mut rs, new_revision, true);
            let spec = rs.spec.get_or_insert_with(ReplicaSetSpec::default);
            let min_ready_changed = spec.min_ready_seconds != min_ready;
            if annotated || min_ready_changed {
                spec.min_ready_seconds = min_ready;
                self.sets[i] = self.control.update_replica_set(&rs).await?;
            }
            let rev = revision(&self.sets[i]).to_string();
            self.set_deployment_revision(&rev).await?;
            let status = self.d.status.clone().unwrap_or_default();
            if progress_deadline(&self.d).is_some()
                && get_condition(&status, "Progressing").is_none()
            {
                let mut s = status;
                let msg = format!("Found new replica set \"{}\"", self.name(i));
                set_condition(
                    &mut s,
                    condition("Progressing", "True", FOUND_NEW_RS, msg, self.now),
                );
                self.update_status(s).await?;
            }
            return Ok(Some(i));
        }
        if !create {
            return Ok(None);
        }
        let collision = self.d.status.as_ref().and_then(|s| s.collision_count);
        let mut template = self.template();
        let h = compute_hash(&template, collision);
        template
            .metadata
            .get_or_insert_with(ObjectMeta::default)
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(POD_TEMPLATE_HASH.into(), h.clone());
        let mut selector: LabelSelector = self
            .d
            .spec
            .as_ref()
            .map(|s| s.selector.clone())
            .unwrap_or_default();
        selector
            .match_labels
            .get_or_insert_with(BTreeMap::new)
            .insert(POD_TEMPLATE_HASH.into(), h.clone());
        let name = format!(
            "{}-{}",
            self.d.metadata.name.as_deref().unwrap_or_default(),
            h
        );
        let mut rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: self.d.metadata.namespace.clone(),
                owner_references: Some(vec![controller_ref(&self.d)]),
                labels: template.metadata.as_ref().and_then(|m| m.labels.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(0),
                min_ready_seconds: min_ready,
                selector,
                template: Some(template),
            }),
            status: None,
        };
        let mut all = self.all();
        all.push(&rs);
        let n = new_rs_new_replicas(&self.d, &all, &rs);
        if let Some(spec) = rs.spec.as_mut() {
            spec.replicas = Some(n);
        }
        set_new_replica_set_annotations(&self.d, &mut rs, new_revision, false);
        let created = match self.control.create_replica_set(&rs).await {
            Ok(c) => c,
            Err(e) if e.is_already_exists() => {
                // Ours from an earlier sync the cache has not shown yet, or a real collision.
                return Err(self.on_name_taken(&name).await);
            }
            Err(e) => {
                let msg = format!("Failed to create new replica set \"{name}\": {e}");
                self.control
                    .record(&self.about, "Warning", "FailedCreate", msg);
                return Err(e.into());
            }
        };
        tracing::info!(deployment = %self.about.name.as_deref().unwrap_or(""), replicaset = %name, replicas = n, "created replica set");
        if n > 0 {
            self.control.record(
                &self.about,
                "Normal",
                "ScalingReplicaSet",
                format!("Scaled up replica set {name} from 0 to {n}"),
            );
        }
        self.sets.push(created);
        let i = self.sets.len() - 1;
        self.set_deployment_revision(&new_revision.to_string())
            .await?;
        if progress_deadline(&self.d).is_some() {
            let mut s = self.d.status.clone().unwrap_or_default();
            let msg = format!("Created new replica set \"{name}\"");
            set_condition(
                &mut s,
                condition("Progressing", "True", NEW_RS_CREATED, msg, self.now),
            );
            self.update_status(s).await?;
        }
        Ok(Some(i))
    }

    async fn on_name_taken(&mut self, name: &str) -> Error {
        // The cache has no such set of ours (else find_new would have found it): if the taken
        // name holds a different template, bump collisionCount so the next hash differs.
        let mut s = self.d.status.clone().unwrap_or_default();
        s.collision_count = Some(s.collision_count.unwrap_or(0) + 1);
        if let Err(e) = self.update_status(s).await {
            return e;
        }
        Error::HashCollision(name.to_string())
    }

    /// Resize set `i` (and refresh its replica annotations); records the event on a size change.
    async fn scale(&mut self, i: usize, to: i32) -> Result<bool> {
        let (want, surge) = (want_replicas(&self.d), max_surge(&self.d));
        let rs = &self.sets[i];
        let from = rs_replicas(rs);
        let resize = from != to;
        if !resize && !replicas_annotations_need_update(rs, want, want + surge) {
            return Ok(false);
        }
        let mut rs = rs.clone();
        rs.spec.get_or_insert_with(ReplicaSetSpec::default).replicas = Some(to);
        set_replicas_annotations(&mut rs, want, want + surge);
        self.sets[i] = self.control.update_replica_set(&rs).await?;
        if resize {
            let op = if to > from { "up" } else { "down" };
            let msg = format!(
                "Scaled {op} replica set {} from {from} to {to}",
                self.name(i)
            );
            self.control
                .record(&self.about, "Normal", "ScalingReplicaSet", msg);
        }
        Ok(resize)
    }

    async fn scale_and_record(&mut self, i: usize, to: i32) -> Result<bool> {
        if rs_replicas(&self.sets[i]) == to {
            return Ok(false);
        }
        self.scale(i, to).await
    }

    async fn check_paused_conditions(&mut self) -> Result<()> {
        if progress_deadline(&self.d).is_none() {
            return Ok(());
        }
        let mut s = self.d.status.clone().unwrap_or_default();
        let reason = get_condition(&s, "Progressing").and_then(|c| c.reason.clone());
        if reason.as_deref() == Some(TIMED_OUT) {
            return Ok(());
        }
        let paused = self.d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false);
        let marked = reason.as_deref() == Some(PAUSED);
        let c = if paused && !marked {
            condition(
                "Progressing",
                "Unknown",
                PAUSED,
                "Deployment is paused".into(),
                self.now,
            )
        } else if !paused && marked {
            condition(
                "Progressing",
                "Unknown",
                RESUMED,
                "Deployment is resumed".into(),
                self.now,
            )
        } else {
            return Ok(());
        };
        set_condition(&mut s, c);
        self.update_status(s).await
    }

    /// Any active set was last sized for another replica count.
    async fn is_scaling_event(&mut self) -> Result<bool> {
        self.new_replica_set(false).await?;
        let want = want_replicas(&self.d);
        Ok(self
            .sets
            .iter()
            .filter(|rs| is_active(rs))
            .any(|rs| desired_annotation(rs).is_some_and(|d| d != want)))
    }

    /// Paused or scaling: resize proportionally, no rollout step.
    async fn sync_scale(&mut self) -> Result<Option<Duration>> {
        let new = self.new_replica_set(false).await?;
        self.proportional_scale(new).await?;
        if self.d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false) {
            self.cleanup(new).await?;
        }
        self.sync_status(new).await?;
        Ok(None)
    }

    fn active_or_latest(&self, new: Option<usize>) -> Option<usize> {
        let mut olds = self.olds(new);
        olds.reverse();
        if new.is_none() && olds.is_empty() {
            return None;
        }
        let active: Vec<usize> = olds
            .iter()
            .copied()
            .chain(new)
            .filter(|i| is_active(&self.sets[*i]))
            .collect();
        match active.len() {
            0 => new.or(olds.first().copied()),
            1 => Some(active[0]),
            _ => None,
        }
    }

    async fn proportional_scale(&mut self, new: Option<usize>) -> Result<()> {
        let want = want_replicas(&self.d);
        if let Some(i) = self.active_or_latest(new) {
            if rs_replicas(&self.sets[i]) != want {
                self.scale_and_record(i, want).await?;
            }
            return Ok(());
        }
        if new.is_some_and(|i| is_saturated(&self.d, &self.sets[i])) {
            for i in self.olds(new) {
                if is_active(&self.sets[i]) {
                    self.scale_and_record(i, 0).await?;
                }
            }
            return Ok(());
        }
        if !is_rolling(&self.d) {
            return Ok(());
        }
        let mut active: Vec<usize> = (0..self.sets.len())
            .filter(|i| is_active(&self.sets[*i]))
            .collect();
        let total: i32 = active.iter().map(|i| rs_replicas(&self.sets[*i])).sum();
        let allowed = if want > 0 {
            want + max_surge(&self.d)
        } else {
            0
        };
        let to_add = allowed - total;
        // Bigger sets first; on ties the newer first when growing, the older first when shrinking.
        active.sort_by(|a, b| {
            let (ra, rb) = (&self.sets[*a], &self.sets[*b]);
            rs_replicas(rb).cmp(&rs_replicas(ra)).then_with(|| {
                if to_add > 0 {
                    created(rb).cmp(&created(ra))
                } else {
                    created(ra).cmp(&created(rb))
                }
            })
        });
        let mut added = 0;
        let mut sizes: HashMap<usize, i32> = HashMap::new();
        for &i in &active {
            let rs = &self.sets[i];
            let size = if to_add != 0 {
                let p = proportion(&self.d, rs, to_add, added);
                added += p;
                rs_replicas(rs) + p
            } else {
                rs_replicas(rs)
            };
            sizes.insert(i, size);
        }
        if to_add != 0
            && added != to_add
            && let Some(first) = active.first()
        {
            let s = sizes.entry(*first).or_insert(0);
            *s = (*s + to_add - added).max(0);
        }
        for i in active {
            let size = sizes.get(&i).copied().unwrap_or(0);
            self.scale(i, size).await?;
        }
        Ok(())
    }

    async fn rollout_rolling(&mut self) -> Result<Option<Duration>> {
        let new = self.new_replica_set(true).await?;
        if self.reconcile_new(new).await? {
            return self.sync_rollout_status(new).await;
        }
        if self.reconcile_old(new).await? {
            return self.sync_rollout_status(new).await;
        }
        if is_complete(&self.d, &self.d.status.clone().unwrap_or_default()) {
            self.cleanup(new).await?;
        }
        self.sync_rollout_status(new).await
    }

    async fn reconcile_new(&mut self, new: Option<usize>) -> Result<bool> {
        let Some(i) = new else { return Ok(false) };
        let want = want_replicas(&self.d);
        let have = rs_replicas(&self.sets[i]);
        if have == want {
            return Ok(false);
        }
        if have > want {
            return self.scale_and_record(i, want).await;
        }
        let n = new_rs_new_replicas(&self.d, &self.all(), &self.sets[i]);
        self.scale_and_record(i, n).await
    }

    async fn reconcile_old(&mut self, new: Option<usize>) -> Result<bool> {
        let olds: Vec<usize> = self
            .olds(new)
            .into_iter()
            .filter(|i| is_active(&self.sets[*i]))
            .collect();
        let old_pods: i32 = olds.iter().map(|i| rs_replicas(&self.sets[*i])).sum();
        if old_pods == 0 {
            return Ok(false);
        }
        let all_pods: i32 = self.sets.iter().map(rs_replicas).sum();
        let min_available = want_replicas(&self.d) - max_unavailable(&self.d);
        let new_unavailable = new
            .map(|i| rs_replicas(&self.sets[i]) - rs_available_bounded(&self.sets[i]))
            .unwrap_or(0);
        let max_scaled_down = all_pods - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return Ok(false);
        }
        // First drop old pods that are not available anyway; they cost no availability.
        let mut cleaned = 0;
        for &i in &olds {
            if cleaned >= max_scaled_down {
                break;
            }
            let r = rs_replicas(&self.sets[i]);
            let unhealthy = r - rs_available_bounded(&self.sets[i]);
            if r == 0 || unhealthy <= 0 {
                continue;
            }
            let n = (max_scaled_down - cleaned).min(unhealthy);
            self.scale_and_record(i, r - n).await?;
            cleaned += n;
        }
        // Then scale old sets down as far as availability allows.
        let available: i32 = self.sets.iter().map(rs_available_bounded).sum();
        let mut scaled = 0;
        if available > min_available {
            let total = available - min_available;
            for &i in &olds {
                if scaled >= total {
                    break;
                }
                let r = rs_replicas(&self.sets[i]);
                if r == 0 {
                    continue;
                }
                let n = r.min(total - scaled);
                self.scale_and_record(i, r - n).await?;
                scaled += n;
            }
        }
        Ok(cleaned + scaled > 0)
    }

    async fn rollout_recreate(&mut self) -> Result<Option<Duration>> {
        let mut new = self.new_replica_set(false).await?;
        let mut scaled_down = false;
        for i in self.olds(new) {
            if is_active(&self.sets[i]) && self.scale_and_record(i, 0).await? {
                scaled_down = true;
            }
        }
        if scaled_down || self.old_pods_running(new) {
            return self.sync_rollout_status(new).await;
        }
        if new.is_none() {
            new = self.new_replica_set(true).await?;
        }
        if let Some(i) = new {
            let want = want_replicas(&self.d);
            self.scale_and_record(i, want).await?;
        }
        if is_complete(&self.d, &self.d.status.clone().unwrap_or_default()) {
            self.cleanup(new).await?;
        }
        self.sync_rollout_status(new).await
    }

    /// Old sets still report pods, or pods they own have not finished.
    fn old_pods_running(&self, new: Option<usize>) -> bool {
        let olds = self.olds(new);
        if olds.iter().map(|i| rs_actual(&self.sets[*i])).sum::<i32>() > 0 {
            return true;
        }
        let old_uids: Vec<&str> = olds
            .iter()
            .filter_map(|i| self.sets[*i].metadata.uid.as_deref())
            .collect();
        self.pods.state().iter().any(|p| {
            let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
            !matches!(phase, Some("Failed") | Some("Succeeded"))
                && controller_of(&p.metadata).is_some_and(|c| old_uids.contains(&c.uid.as_str()))
        })
    }

    /// Delete the oldest unused sets beyond revisionHistoryLimit.
    async fn cleanup(&mut self, new: Option<usize>) -> Result<()> {
        let Some(limit) = self.d.spec.as_ref().and_then(|s| s.revision_history_limit) else {
            return Ok(());
        };
        let mut alive: Vec<usize> = self
            .olds(new)
            .into_iter()
            .filter(|i| self.sets[*i].metadata.deletion_timestamp.is_none())
            .collect();
        let diff = i32::try_from(alive.len()).unwrap_or(i32::MAX) - limit;
        if diff <= 0 {
            return Ok(());
        }
        alive.sort_by_key(|i| (revision(&self.sets[*i]), created(&self.sets[*i])));
        for &i in alive.iter().take(usize::try_from(diff).unwrap_or(0)) {
            let rs = &self.sets[i];
            let observed = rs
                .status
                .as_ref()
                .and_then(|s| s.observed_generation)
                .unwrap_or(0);
            if rs_actual(rs) != 0
                || rs_replicas(rs) != 0
                || rs.metadata.generation.unwrap_or(0) > observed
            {
                continue;
            }
            let ns = rs.metadata.namespace.clone().unwrap_or_default();
            let uid = rs.metadata.uid.clone().unwrap_or_default();
            let name = self.name(i);
            tracing::info!(replicaset = %name, "cleaning up old replica set");
            match self.control.delete_replica_set(&ns, &name, &uid).await {
                Ok(()) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Counters and Available only (paused, scaling, deleting).
    async fn sync_status(&mut self, new: Option<usize>) -> Result<()> {
        let s = calculate_status(&self.d, &self.all(), new.map(|i| &self.sets[i]), self.now);
        if self.d.status.as_ref() != Some(&s) {
            self.update_status(s).await?;
        }
        Ok(())
    }

    /// Counters, Available and Progressing (with its deadline) after a rollout step.
    async fn sync_rollout_status(&mut self, new: Option<usize>) -> Result<Option<Duration>> {
        let new_rs = new.map(|i| &self.sets[i]);
        let mut s = calculate_status(&self.d, &self.all(), new_rs, self.now);
        let new_name = new_rs.and_then(|rs| rs.metadata.name.clone());
        if progress_deadline(&self.d).is_none() {
            remove_condition(&mut s, "Progressing");
        }
        let current = get_condition(&s, "Progressing").cloned();
        let complete_already = s.replicas == s.updated_replicas
            && current.as_ref().and_then(|c| c.reason.as_deref()) == Some(NEW_RS_AVAILABLE);
        if progress_deadline(&self.d).is_some() && !complete_already {
            let subject = match &new_name {
                Some(n) => format!("ReplicaSet \"{n}\""),
                None => format!(
                    "Deployment \"{}\"",
                    self.d.metadata.name.as_deref().unwrap_or("")
                ),
            };
            if is_complete(&self.d, &s) {
                let msg = format!("{subject} has successfully progressed.");
                set_condition(
                    &mut s,
                    condition("Progressing", "True", NEW_RS_AVAILABLE, msg, self.now),
                );
            } else if is_progressing(&self.d, &s) {
                let msg = format!("{subject} is progressing.");
                let mut c = condition("Progressing", "True", RS_UPDATED, msg, self.now);
                // Progress refreshes lastUpdateTime (the deadline's start), not the transition.
                if let Some(cur) = &current
                    && cur.status == "True"
                {
                    c.last_transition_time = cur.last_transition_time.clone();
                }
                remove_condition(&mut s, "Progressing");
                s.conditions.get_or_insert_with(Vec::new).push(c);
            } else if is_timed_out(&self.d, &s, self.now) {
                let msg = format!("{subject} has timed out progressing.");
                set_condition(
                    &mut s,
                    condition("Progressing", "False", TIMED_OUT, msg, self.now),
                );
            }
        }
        if self.d.status.as_ref() != Some(&s) {
            self.update_status(s.clone()).await?;
        }
        // Look again when the deadline would pass, to report ProgressDeadlineExceeded.
        let requeue = if is_complete(&self.d, &s) {
            None
        } else {
            deadline_at(&self.d, &s).map(|at| {
                let left = self.now.duration_until(at);
                Duration::try_from(left).unwrap_or(Duration::ZERO) + Duration::from_secs(1)
            })
        };
        Ok(requeue)
    }
}
