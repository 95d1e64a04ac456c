//! The DaemonSet controller: one pod per eligible node (nodeSelector, required node affinity,
//! taints against tolerations plus the daemon defaults), pinned to its node by a required
//! `matchFields metadata.name` affinity so the ordinary scheduler places it, rolled with
//! maxUnavailable/maxSurge, as upstream's `pkg/controller/daemon`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    PodTemplateSpec, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Api;
use kube::api::PostParams;
use kube::core::Selector;
use kube::runtime::reflector::{ObjectRef, Store};
use skiff_scheduler::plugins::taint_toleration::tolerates;
use skiff_scheduler::selector::{NodeTerm, node_terms_match};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::control::{self, ClientControl, EventRecorder, PodControl, object_reference};
use crate::expectations::Expectations;
use crate::history::{self, HASH_LABEL, POD_REVISION_LABEL, RevisionControl};
use crate::history_pods;
use crate::informer::Informer;
use crate::owner::{controller_of, controller_ref};
use crate::pod_state;
use crate::queue::{Key, WorkQueue};
use crate::{Clock, spawn_resync, spawn_workers, system_clock};

/// Name in logs and events, as upstream's component.
pub const NAME: &str = "daemonset-controller";

/// The deprecated label with the DaemonSet generation a pod was made from (upstream still sets it).
pub const TEMPLATE_GENERATION_LABEL: &str = "pod-template-generation";

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

/// DaemonSet-specific writes.
#[async_trait]
pub trait DaemonSetControl: Send + Sync {
    /// Replace a DaemonSet's status.
    async fn update_daemon_set_status(&self, ds: &DaemonSet) -> control::Result<DaemonSet>;
}

/// Everything a DaemonSet sync needs.
pub struct DaemonSetController<C> {
    /// Side effects.
    pub control: Arc<C>,
    /// DaemonSet cache.
    pub sets: Store<DaemonSet>,
    /// Pod cache.
    pub pods: Store<Pod>,
    /// Node cache (shared).
    pub nodes: Store<Node>,
    /// ControllerRevision cache.
    pub revisions: Store<ControllerRevision>,
    /// Pending creates per set.
    pub creations: Expectations,
    /// Pending deletes per set.
    pub deletions: Expectations,
    /// Wall clock for minReadySeconds.
    pub clock: Clock,
}

/// The selector of a set, parsed.
pub fn selector_of(ds: &DaemonSet) -> Result<Selector> {
    let sel = ds
        .spec
        .as_ref()
        .map(|s| s.selector.clone())
        .unwrap_or_default();
    Selector::try_from(sel).map_err(|e| Error::Selector(e.to_string()))
}

/// The set that controls `pod`, if a DaemonSet does.
pub fn owning_set(pod: &Pod) -> Option<Key> {
    let c = controller_of(&pod.metadata)?;
    (c.kind == "DaemonSet" && c.api_version == "apps/v1").then(|| {
        Key::new(
            pod.metadata.namespace.clone().unwrap_or_default(),
            c.name.clone(),
        )
    })
}

fn toleration(key: &str, effect: &str) -> Toleration {
    Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        effect: Some(effect.into()),
        ..Toleration::default()
    }
}

/// Upstream's AddOrUpdateDaemonPodTolerations: daemons survive node conditions that evict or
/// repel ordinary pods.
pub fn add_default_tolerations(spec: &mut k8s_openapi::api::core::v1::PodSpec) {
    let mut wanted = vec![
        toleration("node.kubernetes.io/not-ready", "NoExecute"),
        toleration("node.kubernetes.io/unreachable", "NoExecute"),
        toleration("node.kubernetes.io/disk-pressure", "NoSchedule"),
        toleration("node.kubernetes.io/memory-pressure", "NoSchedule"),
        toleration("node.kubernetes.io/pid-pressure", "NoSchedule"),
        toleration("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if spec.host_network == Some(true) {
        wanted.push(toleration(
            "node.kubernetes.io/network-unavailable",
            "NoSchedule",
        ));
    }
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    for t in wanted {
        tolerations.retain(|x| !(x.key == t.key && x.effect == t.effect));
        tolerations.push(t);
    }
}

/// The pod for `node` (or the node-less template pod when `node` is `None`).
pub fn new_pod(ds: &DaemonSet, template: &PodTemplateSpec, hash: &str, node: Option<&str>) -> Pod {
    let name = ds.metadata.name.clone().unwrap_or_default();
    let tmeta = template.metadata.clone().unwrap_or_default();
    let mut labels = tmeta.labels.unwrap_or_default();
    labels.insert(POD_REVISION_LABEL.into(), hash.to_string());
    if let Some(g) = ds.metadata.generation {
        labels.insert(TEMPLATE_GENERATION_LABEL.into(), g.to_string());
    }
    let mut spec = template.spec.clone().unwrap_or_default();
    add_default_tolerations(&mut spec);
    if let Some(node) = node {
        // Upstream's ReplaceDaemonSetPodNodeNameNodeAffinity: the label terms were already
        // checked here, so the scheduler only needs to honour the node name.
        let affinity = spec.affinity.get_or_insert_with(Affinity::default);
        let na = affinity
            .node_affinity
            .get_or_insert_with(NodeAffinity::default);
        na.required_during_scheduling_ignored_during_execution = Some(NodeSelector {
            node_selector_terms: vec![NodeSelectorTerm {
                match_expressions: None,
                match_fields: Some(vec![NodeSelectorRequirement {
                    key: "metadata.name".into(),
                    operator: "In".into(),
                    values: Some(vec![node.to_string()]),
                }]),
            }],
        });
    }
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{name}-")),
            namespace: ds.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: tmeta.annotations,
            finalizers: tmeta.finalizers,
            owner_references: Some(vec![controller_ref(ds)]),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: None,
    }
}

/// Upstream's NodeShouldRunDaemonPod: (should run a daemon pod, may keep running one).
pub fn node_should_run(node: &Node, template: &PodTemplateSpec) -> (bool, bool) {
    let node_name = node.metadata.name.as_deref().unwrap_or_default();
    let mut spec = template.spec.clone().unwrap_or_default();
    add_default_tolerations(&mut spec);
    if spec
        .node_name
        .as_deref()
        .is_some_and(|n| !n.is_empty() && n != node_name)
    {
        return (false, false);
    }
    let labels: BTreeMap<String, String> = node.metadata.labels.clone().unwrap_or_default();
    if let Some(sel) = &spec.node_selector
        && !sel.iter().all(|(k, v)| labels.get(k) == Some(v))
    {
        return (false, false);
    }
    if let Some(required) = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| {
            na.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
    {
        let terms: Vec<NodeTerm> = required
            .node_selector_terms
            .iter()
            .map(NodeTerm::from_term)
            .collect();
        if !node_terms_match(&terms, node_name, &labels) {
            return (false, false);
        }
    }
    let tolerations = spec.tolerations.unwrap_or_default();
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let untolerated = |effect: &str| {
        taints
            .iter()
            .filter(|t| t.effect == effect)
            .any(|t| !tolerations.iter().any(|x| tolerates(x, t)))
    };
    if untolerated("NoExecute") {
        return (false, false);
    }
    if untolerated("NoSchedule") {
        return (false, true);
    }
    (true, true)
}

/// The node a daemon pod is on or pinned to.
pub fn target_node(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(n) = spec.node_name.as_ref().filter(|n| !n.is_empty()) {
        return Some(n.clone());
    }
    spec.affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms
        .iter()
        .find_map(|t| {
            t.match_fields
                .as_ref()?
                .iter()
                .find(|f| f.key == "metadata.name" && f.operator == "In")
                .and_then(|f| f.values.as_ref().filter(|v| v.len() == 1)?.first().cloned())
        })
}

fn is_updated(pod: &Pod, hash: &str) -> bool {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(POD_REVISION_LABEL))
        .is_some_and(|h| h == hash)
}

fn is_failed(pod: &Pod) -> bool {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed")
}

fn created(pod: &Pod) -> Option<jiff::Timestamp> {
    pod.metadata.creation_timestamp.as_ref().map(|t| t.0)
}

fn oldest_first(pods: &mut [&Pod]) {
    pods.sort_by(|a, b| {
        created(a)
            .cmp(&created(b))
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
}

fn scaled(v: Option<&IntOrString>, total: i32, default: i32) -> i32 {
    match v {
        None => default,
        Some(IntOrString::Int(i)) => *i,
        Some(IntOrString::String(s)) => {
            let pct: i64 = s.trim_end_matches('%').parse().unwrap_or(0);
            // Upstream rounds both up for DaemonSets.
            i32::try_from((pct * i64::from(total) + 99) / 100).unwrap_or(i32::MAX)
        }
    }
}

/// maxSurge and maxUnavailable for `desired` nodes (both 0 means one unavailable at a time).
pub fn surge_and_unavailable(ds: &DaemonSet, desired: i32) -> (i32, i32) {
    let ru = ds
        .spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.rolling_update.as_ref());
    let surge = scaled(ru.and_then(|r| r.max_surge.as_ref()), desired, 0);
    let mut unavailable = scaled(ru.and_then(|r| r.max_unavailable.as_ref()), desired, 1);
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    (surge, unavailable)
}

/// What one sync decided.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// Nodes to create a daemon pod on.
    pub create_on: Vec<String>,
    /// Pods to delete, with the reason (for the events log).
    pub delete: Vec<Pod>,
    /// Failed pods found (a warning event each).
    pub failed: Vec<Pod>,
}

/// Upstream's manage + rollingUpdate as a pure function of the nodes and the set's pods.
pub fn plan(
    ds: &DaemonSet,
    nodes: &[&Node],
    pods: &[Pod],
    hash: &str,
    now: jiff::Timestamp,
) -> Plan {
    let template = ds
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let min_ready = ds
        .spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0);
    let rolling = ds
        .spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.type_.as_deref())
        .unwrap_or("RollingUpdate")
        == "RollingUpdate";
    let mut by_node: HashMap<String, Vec<&Pod>> = HashMap::new();
    let mut plan = Plan::default();
    for pod in pods {
        if let Some(n) = target_node(pod) {
            by_node.entry(n).or_default().push(pod);
        }
    }
    let node_names: Vec<&str> = nodes
        .iter()
        .map(|n| n.metadata.name.as_deref().unwrap_or_default())
        .collect();
    // Pods pinned to nodes that no longer exist.
    for (node, pods) in &by_node {
        if !node_names.contains(&node.as_str()) {
            plan.delete.extend(
                pods.iter()
                    .filter(|p| p.metadata.deletion_timestamp.is_none())
                    .map(|p| (*p).clone()),
            );
        }
    }
    let desired = nodes
        .iter()
        .filter(|n| node_should_run(n, &template).0)
        .count();
    let (max_surge, max_unavailable) =
        surge_and_unavailable(ds, i32::try_from(desired).unwrap_or(i32::MAX));
    let surging = rolling && max_surge > 0;
    let mut eligible: Vec<(&str, Option<&Pod>, Option<&Pod>)> = Vec::new();
    for node in nodes {
        let name = node.metadata.name.as_deref().unwrap_or_default();
        let (should_run, should_continue) = node_should_run(node, &template);
        let on_node = by_node.get(name).cloned().unwrap_or_default();
        let terminating = on_node
            .iter()
            .any(|p| p.metadata.deletion_timestamp.is_some());
        let mut running: Vec<&Pod> = Vec::new();
        for p in &on_node {
            if p.metadata.deletion_timestamp.is_some() {
                continue;
            }
            if is_failed(p) {
                plan.failed.push((*p).clone());
                plan.delete.push((*p).clone());
                continue;
            }
            running.push(p);
        }
        if should_run {
            oldest_first(&mut running);
            if running.is_empty() {
                // Wait for a terminating pod to go before its replacement is made.
                if !terminating && !on_node.iter().any(|p| is_failed(p)) {
                    plan.create_on.push(name.to_string());
                }
            } else if surging {
                // One old and one new pod may run side by side while surging.
                let new = running.iter().find(|p| is_updated(p, hash)).copied();
                let old = running.iter().find(|p| !is_updated(p, hash)).copied();
                for p in &running {
                    if Some(*p) != new && Some(*p) != old {
                        plan.delete.push((*p).clone());
                    }
                }
            } else {
                plan.delete
                    .extend(running.iter().skip(1).map(|p| (*p).clone()));
            }
            let new = running.iter().find(|p| is_updated(p, hash)).copied();
            let old = running.iter().find(|p| !is_updated(p, hash)).copied();
            let unique = running.len() <= 2 && (surging || running.len() <= 1);
            if unique {
                eligible.push((name, new, old));
            }
        } else if !should_continue {
            plan.delete.extend(running.iter().map(|p| (*p).clone()));
        }
    }
    if !rolling {
        return plan;
    }
    let available = |p: &Pod| pod_state::is_available(p, min_ready, now);
    if !surging {
        let mut unavailable = 0;
        let mut allowed: Vec<&Pod> = Vec::new();
        let mut candidates: Vec<&Pod> = Vec::new();
        for (_, new, old) in &eligible {
            match (new, old) {
                (None, None) | (Some(_), Some(_)) => unavailable += 1,
                (Some(n), None) => {
                    if !available(n) {
                        unavailable += 1;
                    }
                }
                (None, Some(o)) => {
                    if !available(o) {
                        allowed.push(o);
                    } else if unavailable < max_unavailable {
                        candidates.push(o);
                    }
                }
            }
        }
        let remaining = usize::try_from((max_unavailable - unavailable).max(0)).unwrap_or(0);
        let take = remaining.min(candidates.len());
        for p in allowed.into_iter().chain(candidates.into_iter().take(take)) {
            if !plan
                .delete
                .iter()
                .any(|d| d.metadata.name == p.metadata.name)
            {
                plan.delete.push(p.clone());
            }
        }
    } else {
        let mut surge = 0;
        let mut allowed: Vec<&str> = Vec::new();
        let mut candidates: Vec<&str> = Vec::new();
        for (node, new, old) in &eligible {
            match (new, old) {
                (_, None) => {}
                (None, Some(o)) => {
                    if !available(o) {
                        allowed.push(node);
                    } else {
                        candidates.push(node);
                    }
                }
                (Some(n), Some(o)) => {
                    surge += 1;
                    if available(n)
                        && !plan
                            .delete
                            .iter()
                            .any(|d| d.metadata.name == o.metadata.name)
                    {
                        plan.delete.push((*o).clone());
                    }
                }
            }
        }
        let remaining = usize::try_from((max_surge - surge).max(0)).unwrap_or(0);
        let take = remaining.min(candidates.len());
        for node in allowed.into_iter().chain(candidates.into_iter().take(take)) {
            plan.create_on.push(node.to_string());
        }
    }
    plan
}

/// The status for `nodes` and the set's `pods`.
pub fn calculate_status(
    ds: &DaemonSet,
    nodes: &[&Node],
    pods: &[Pod],
    hash: &str,
    collision_count: i32,
    now: jiff::Timestamp,
) -> DaemonSetStatus {
    let template = ds
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let min_ready = ds
        .spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0);
    let mut by_node: HashMap<String, Vec<&Pod>> = HashMap::new();
    for pod in pods {
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        if let Some(n) = target_node(pod) {
            by_node.entry(n).or_default().push(pod);
        }
    }
    let (mut desired, mut current, mut misscheduled) = (0, 0, 0);
    let (mut ready, mut available, mut updated) = (0, 0, 0);
    for node in nodes {
        let name = node.metadata.name.as_deref().unwrap_or_default();
        let (should_run, _) = node_should_run(node, &template);
        let mut on_node = by_node.get(name).cloned().unwrap_or_default();
        oldest_first(&mut on_node);
        if should_run {
            desired += 1;
            if let Some(p) = on_node.first() {
                current += 1;
                if pod_state::is_ready(p) {
                    ready += 1;
                    if pod_state::is_available(p, min_ready, now) {
                        available += 1;
                    }
                }
                if is_updated(p, hash) {
                    updated += 1;
                }
            }
        } else if !on_node.is_empty() {
            misscheduled += 1;
        }
    }
    let old = ds.status.clone().unwrap_or_default();
    let nz = |n: i32| (n != 0).then_some(n);
    DaemonSetStatus {
        desired_number_scheduled: desired,
        current_number_scheduled: current,
        number_misscheduled: misscheduled,
        number_ready: ready,
        number_available: nz(available),
        number_unavailable: nz(desired - available),
        updated_number_scheduled: nz(updated),
        observed_generation: ds.metadata.generation.or(old.observed_generation),
        collision_count: nz(collision_count),
        conditions: old.conditions,
    }
}

impl<C> DaemonSetController<C>
where
    C: PodControl + RevisionControl + DaemonSetControl + EventRecorder + 'static,
{
    /// Sync one DaemonSet; returns when to look again (minReadySeconds), if needed.
    pub async fn reconcile(&self, key: &Key) -> Result<Option<Duration>> {
        let Some(ds) = self
            .sets
            .get(&ObjectRef::new(&key.name).within(&key.namespace))
        else {
            self.creations.forget(key);
            self.deletions.forget(key);
            return Ok(None);
        };
        let ds = ds.as_ref();
        let selector = selector_of(ds)?;
        let me = controller_ref(ds);
        let deleting = ds.metadata.deletion_timestamp.is_some();
        let pods = history_pods::claim_pods(
            self.control.as_ref(),
            &key.namespace,
            &me,
            deleting,
            &selector,
            self.pods.state(),
        )
        .await?;
        let template = ds
            .spec
            .as_ref()
            .map(|s| s.template.clone())
            .unwrap_or_default();
        let old_status = ds.status.clone().unwrap_or_default();
        let collision_count = old_status.collision_count.unwrap_or(0);
        let owned = history::owned_revisions(
            self.revisions.state().iter().map(|r| r.as_ref()),
            &key.namespace,
            me.uid.as_str(),
        );
        let revs = match history::sync_revisions(
            self.control.as_ref(),
            &ds.metadata,
            me.clone(),
            &template,
            owned,
            collision_count,
            None,
        )
        .await
        {
            Ok(r) => r,
            Err(history::Error::Collision(rev, bumped)) => {
                let mut updated = ds.clone();
                let mut st = old_status.clone();
                st.collision_count = Some(bumped);
                updated.status = Some(st);
                self.control.update_daemon_set_status(&updated).await?;
                return Err(history::Error::Collision(rev, bumped).into());
            }
            Err(e) => return Err(e.into()),
        };
        let hash = revs
            .update
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(HASH_LABEL))
            .cloned()
            .unwrap_or_default();
        let nodes_state = self.nodes.state();
        let mut nodes: Vec<&Node> = nodes_state.iter().map(|n| n.as_ref()).collect();
        nodes.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        let now = (self.clock)();
        let mut result = Ok(());
        if !deleting && self.creations.satisfied(key) && self.deletions.satisfied(key) {
            let plan = plan(ds, &nodes, &pods, &hash, now);
            result = self.execute(key, ds, &template, &hash, plan).await;
        }
        let status = calculate_status(ds, &nodes, &pods, &hash, revs.collision_count, now);
        if ds.status.as_ref() != Some(&status) {
            let mut updated = ds.clone();
            updated.status = Some(status);
            self.control.update_daemon_set_status(&updated).await?;
        }
        let mut live: Vec<&str> = pods
            .iter()
            .filter_map(|p| {
                p.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(POD_REVISION_LABEL))
                    .map(String::as_str)
            })
            .collect();
        live.push(&hash);
        let limit = ds
            .spec
            .as_ref()
            .and_then(|s| s.revision_history_limit)
            .unwrap_or(history::DEFAULT_HISTORY_LIMIT);
        history::truncate_history(self.control.as_ref(), &revs.all, &live, limit).await?;
        result?;
        let min_ready = ds
            .spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0);
        Ok(history_pods::next_availability_check(&pods, min_ready, now))
    }

    async fn execute(
        &self,
        key: &Key,
        ds: &DaemonSet,
        template: &PodTemplateSpec,
        hash: &str,
        plan: Plan,
    ) -> Result<()> {
        let about = object_reference(ds);
        for p in &plan.failed {
            self.control.record(
                &about,
                "Warning",
                "FailedDaemonPod",
                format!(
                    "Found failed daemon pod {}/{} on node {}, will try to kill it",
                    key.namespace,
                    p.metadata.name.as_deref().unwrap_or_default(),
                    target_node(p).unwrap_or_default()
                ),
            );
        }
        if !plan.create_on.is_empty() {
            self.creations.expect_creations(key, plan.create_on.len());
        }
        if !plan.delete.is_empty() {
            self.deletions.expect_deletions(
                key,
                plan.delete.iter().filter_map(|p| p.metadata.name.clone()),
            );
        }
        let mut result = Ok(());
        for p in &plan.delete {
            let pname = p.metadata.name.clone().unwrap_or_default();
            let uid = p.metadata.uid.clone().unwrap_or_default();
            match self.control.delete_pod(&key.namespace, &pname, &uid).await {
                Ok(()) => self.control.record(
                    &about,
                    "Normal",
                    "SuccessfulDelete",
                    format!("Deleted pod: {pname}"),
                ),
                Err(e) if e.is_not_found() => self.deletions.deletion_observed(key, &pname),
                Err(e) => {
                    self.deletions.deletion_observed(key, &pname);
                    self.control.record(
                        &about,
                        "Warning",
                        "FailedDelete",
                        format!("Error deleting: {e}"),
                    );
                    result = Err(e.into());
                }
            }
        }
        for node in &plan.create_on {
            let pod = new_pod(ds, template, hash, Some(node));
            match self.control.create_pod(&key.namespace, &pod).await {
                Ok(created) => self.control.record(
                    &about,
                    "Normal",
                    "SuccessfulCreate",
                    format!(
                        "Created pod: {}",
                        created.metadata.name.as_deref().unwrap_or_default()
                    ),
                ),
                Err(e) => {
                    self.creations.creation_observed(key);
                    self.control.record(
                        &about,
                        "Warning",
                        "FailedCreate",
                        format!("Error creating: {e}"),
                    );
                    result = Err(e.into());
                }
            }
        }
        result
    }
}

#[async_trait]
impl DaemonSetControl for ClientControl {
    async fn update_daemon_set_status(&self, ds: &DaemonSet) -> control::Result<DaemonSet> {
        let api: Api<DaemonSet> = Api::namespaced(
            self.client(),
            ds.metadata.namespace.as_deref().unwrap_or("default"),
        );
        let name = ds.metadata.name.as_deref().unwrap_or_default();
        Ok(api.replace_status(name, &PostParams::default(), ds).await?)
    }
}

fn node_placement_changed(old: Option<&Node>, new: Option<&Node>) -> bool {
    match (old, new) {
        (Some(o), Some(n)) => {
            o.metadata.labels != n.metadata.labels
                || o.spec.as_ref().and_then(|s| s.taints.as_ref())
                    != n.spec.as_ref().and_then(|s| s.taints.as_ref())
        }
        _ => true,
    }
}

/// Start the DaemonSet controller: handlers on the shared pod, node and revision informers, its
/// own DaemonSet informer, and workers once every cache it reads has synced.
pub fn register(
    client: &kube::Client,
    pods: &mut Informer<Pod>,
    nodes: &mut Informer<Node>,
    revisions: &mut Informer<ControllerRevision>,
    tasks: &TaskTracker,
    shutdown: CancellationToken,
) {
    let mut sets: Informer<DaemonSet> = Informer::new(client.clone());
    let queue = WorkQueue::new();
    let ctl = Arc::new(DaemonSetController {
        control: Arc::new(ClientControl::new(client.clone(), NAME)),
        sets: sets.store(),
        pods: pods.store(),
        nodes: nodes.store(),
        revisions: revisions.store(),
        creations: Expectations::new(),
        deletions: Expectations::new(),
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
        created: Box::new(move |k| c1.creations.creation_observed(k)),
        deleted: Box::new(move |k, name| c2.deletions.deletion_observed(k, name)),
        owners: sets.store(),
        selector: |s| selector_of(s).ok(),
    }));
    let q = queue.clone();
    let set_store = sets.store();
    nodes.on_change(Arc::new(move |old, new| {
        if node_placement_changed(old, new) {
            for s in set_store.state() {
                q.add(Key::of(&s.metadata));
            }
        }
    }));
    let q = queue.clone();
    revisions.on_change(Arc::new(move |old, new| {
        for r in [old, new].into_iter().flatten() {
            if let Some(c) = controller_of(&r.metadata)
                && c.kind == "DaemonSet"
            {
                q.add(Key::new(
                    r.metadata.namespace.clone().unwrap_or_default(),
                    c.name.clone(),
                ));
            }
        }
    }));
    let set_store = sets.store();
    let synced = [
        sets.synced(),
        pods.synced(),
        nodes.synced(),
        revisions.synced(),
    ];
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
#[path = "daemonset_tests.rs"]
mod tests;
