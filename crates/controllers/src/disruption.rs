//! The disruption controller: PodDisruptionBudget status (`currentHealthy`, `desiredHealthy`,
//! `disruptionsAllowed`, `expectedPods`, `observedGeneration`, the `DisruptionAllowed`
//! condition) from the pods a budget selects, with the expected count taken from the pods'
//! controllers' scale, as upstream's pkg/controller/disruption. The eviction subresource reads
//! `disruptionsAllowed` and records evicted pods in `disruptedPods`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::core::{Selector, SelectorExt};
use kube::runtime::reflector::{ObjectRef, Store};
use serde_json::json;

use crate::Clock;
use crate::control;
use crate::owner::controller_of;
use crate::pod_state;
use crate::queue::Key;
use crate::writes::{Kind, Writes};

/// Name in logs and events, as upstream's component.
pub const NAME: &str = "disruption-controller";

/// How long an evicted pod counts as disrupted without being deleted (upstream's
/// DeletionTimeout).
pub const DELETION_TIMEOUT: Duration = Duration::from_secs(120);

/// Errors of one sync.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A write failed; the sync is retried with backoff.
    #[error(transparent)]
    Control(#[from] control::Error),
}

/// Everything a disruption sync needs.
pub struct DisruptionController<W> {
    /// Side effects (and workload scale reads).
    pub writes: Arc<W>,
    /// Budget cache.
    pub budgets: Store<PodDisruptionBudget>,
    /// Pod cache (shared).
    pub pods: Store<Pod>,
    /// Wall clock.
    pub clock: Clock,
}

/// The parsed selector of a budget; `None` (a nil selector) selects nothing.
pub fn budget_selector(pdb: &PodDisruptionBudget) -> Option<Selector> {
    let sel = pdb.spec.as_ref()?.selector.clone()?;
    Selector::try_from(sel).ok()
}

/// Keys of the budgets in the pod's namespace that select it.
pub fn budgets_selecting(budgets: &Store<PodDisruptionBudget>, pod: &Pod) -> Vec<Key> {
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    budgets
        .state()
        .iter()
        .filter(|b| b.metadata.namespace == pod.metadata.namespace)
        .filter(|b| budget_selector(b).is_some_and(|s| s.matches(&labels)))
        .map(|b| Key::of(&b.metadata))
        .collect()
}

fn scaled(v: &IntOrString, total: i32, round_up: bool) -> Result<i32, String> {
    match v {
        IntOrString::Int(n) => Ok(*n),
        IntOrString::String(s) => {
            let pct: i64 = s
                .strip_suffix('%')
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| format!("invalid value for IntOrString: invalid value {s:?}"))?;
            let x = pct * total as i64;
            Ok(if round_up { (x + 99) / 100 } else { x / 100 } as i32)
        }
    }
}

impl<W: Writes> DisruptionController<W> {
    /// The sum of the scales of the pods' controllers (upstream's getExpectedScale).
    async fn expected_scale(&self, pods: &[Arc<Pod>]) -> Result<i32, String> {
        let mut seen: BTreeSet<(String, String)> = BTreeSet::new();
        let mut total = 0;
        for pod in pods {
            let ns = pod.metadata.namespace.clone().unwrap_or_default();
            let Some(owner) = controller_of(&pod.metadata) else {
                return Err(format!(
                    "found no controller ref for pod {:?}",
                    pod.metadata.name.as_deref().unwrap_or("")
                ));
            };
            let mut kind = owner.kind.clone();
            let mut name = owner.name.clone();
            let mut found = self
                .writes
                .workload(&kind, &ns, &name)
                .await
                .map_err(|e| e.to_string())?;
            // A ReplicaSet managed by a Deployment scales with the Deployment.
            if kind == "ReplicaSet"
                && let Some((_, Some((okind, oname)))) = &found
                && okind == "Deployment"
            {
                kind = okind.clone();
                name = oname.clone();
                found = self
                    .writes
                    .workload(&kind, &ns, &name)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            let Some((replicas, _)) = found else {
                return Err(format!(
                    "found no controllers for pod {:?}",
                    pod.metadata.name.as_deref().unwrap_or("")
                ));
            };
            if seen.insert((kind, name)) {
                total += replicas;
            }
        }
        Ok(total)
    }

    /// (expectedPods, desiredHealthy) as upstream's getExpectedPodCount.
    async fn expected(
        &self,
        pdb: &PodDisruptionBudget,
        pods: &[Arc<Pod>],
    ) -> Result<(i32, i32), String> {
        let spec = pdb.spec.clone().unwrap_or_default();
        if let Some(max_unavailable) = &spec.max_unavailable {
            let expected = self.expected_scale(pods).await?;
            let max = scaled(max_unavailable, expected, true)?;
            return Ok((expected, (expected - max).max(0)));
        }
        match &spec.min_available {
            Some(IntOrString::Int(n)) => Ok((pods.len() as i32, *n)),
            Some(v @ IntOrString::String(_)) => {
                let expected = self.expected_scale(pods).await?;
                Ok((expected, scaled(v, expected, true)?))
            }
            None => Ok((0, 0)),
        }
    }

    /// Recompute the status of budget `key`.
    pub async fn reconcile(&self, key: &Key) -> Result<Option<Duration>, Error> {
        let Some(pdb) = self
            .budgets
            .get(&ObjectRef::new(&key.name).within(&key.namespace))
        else {
            return Ok(None);
        };
        let now = (self.clock)();
        let pods: Vec<Arc<Pod>> = match budget_selector(&pdb) {
            Some(sel) => {
                let mut v: Vec<Arc<Pod>> = self
                    .pods
                    .state()
                    .into_iter()
                    .filter(|p| p.metadata.namespace.as_deref() == Some(key.namespace.as_str()))
                    .filter(|p| sel.matches(&p.metadata.labels.clone().unwrap_or_default()))
                    .collect();
                v.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
                v
            }
            None => Vec::new(),
        };
        let old = pdb.status.clone().unwrap_or_default();
        let (disrupted, recheck) = self.disrupted_pods(&old.disrupted_pods, &pods, now);
        let generation = pdb.metadata.generation;
        let status = match self.expected(&pdb, &pods).await {
            Ok((expected, desired)) => {
                let healthy = pods
                    .iter()
                    .filter(|p| p.metadata.deletion_timestamp.is_none())
                    .filter(|p| !disrupted.contains_key(p.metadata.name.as_deref().unwrap_or("")))
                    .filter(|p| pod_state::is_ready(p))
                    .count() as i32;
                let allowed = (healthy - desired).max(0);
                let (cstatus, reason) = if allowed > 0 {
                    ("True", "SufficientPods")
                } else {
                    ("False", "InsufficientPods")
                };
                json!({
                    "currentHealthy": healthy,
                    "desiredHealthy": desired,
                    "expectedPods": expected,
                    "disruptionsAllowed": allowed,
                    "observedGeneration": generation,
                    "disruptedPods": disrupted,
                    "conditions": [condition(&old.conditions, cstatus, reason, "", generation, now)],
                })
            }
            Err(why) => {
                tracing::info!(pdb = %key, error = %why, "budget sync failed");
                json!({
                    "currentHealthy": old.current_healthy,
                    "desiredHealthy": old.desired_healthy,
                    "expectedPods": old.expected_pods,
                    "disruptionsAllowed": 0,
                    "observedGeneration": generation,
                    "disruptedPods": disrupted,
                    "conditions": [condition(&old.conditions, "False", "SyncFailed", &why, generation, now)],
                })
            }
        };
        let current = serde_json::to_value(&old).unwrap_or_default();
        let same = [
            "currentHealthy",
            "desiredHealthy",
            "expectedPods",
            "disruptionsAllowed",
            "observedGeneration",
        ]
        .iter()
        .all(|f| current.get(*f).unwrap_or(&json!(0)) == status.get(*f).unwrap_or(&json!(0)))
            && current.get("disruptedPods").cloned().unwrap_or(json!({}))
                == status["disruptedPods"]
            && current["conditions"][0]["status"] == status["conditions"][0]["status"]
            && current["conditions"][0]["reason"] == status["conditions"][0]["reason"];
        if !same {
            let mut status = status;
            // Merge patch of a map: entries absent from the new map must be nulled to go.
            if let Some(old_map) = &old.disrupted_pods {
                for name in old_map.keys() {
                    if !disrupted.contains_key(name) {
                        status["disruptedPods"][name] = serde_json::Value::Null;
                    }
                }
            }
            let patch = json!({
                "metadata": {"resourceVersion": pdb.metadata.resource_version},
                "status": status,
            });
            self.writes
                .merge_patch(
                    Kind::PodDisruptionBudget,
                    &key.namespace,
                    &key.name,
                    patch,
                    true,
                )
                .await?;
        }
        Ok(recheck)
    }

    /// Entries of `disruptedPods` still in force, and when the oldest expires.
    fn disrupted_pods(
        &self,
        old: &Option<BTreeMap<String, Time>>,
        pods: &[Arc<Pod>],
        now: Timestamp,
    ) -> (BTreeMap<String, Time>, Option<Duration>) {
        let mut keep = BTreeMap::new();
        let mut recheck: Option<Duration> = None;
        let timeout = jiff::SignedDuration::try_from(DELETION_TIMEOUT).unwrap_or_default();
        for (name, at) in old.iter().flatten() {
            let Some(pod) = pods
                .iter()
                .find(|p| p.metadata.name.as_deref() == Some(name))
            else {
                continue;
            };
            if pod.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let expires = at.0 + timeout;
            if expires <= now {
                continue;
            }
            let wait = Duration::try_from(expires.duration_since(now)).unwrap_or_default();
            recheck = Some(recheck.map_or(wait, |r| r.min(wait)));
            keep.insert(name.clone(), at.clone());
        }
        (keep, recheck)
    }
}

fn condition(
    old: &Option<Vec<Condition>>,
    status: &str,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: Timestamp,
) -> Condition {
    let prev = old
        .iter()
        .flatten()
        .find(|c| c.type_ == "DisruptionAllowed");
    let transition = match prev {
        Some(p) if p.status == status => p.last_transition_time.clone(),
        _ => Time(now),
    };
    Condition {
        type_: "DisruptionAllowed".into(),
        status: status.into(),
        reason: reason.into(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time: transition,
    }
}

/// Wire the controller: handlers on the shared pod informer, its own budget informer,
/// workers once the caches synced.
pub(crate) fn register(
    client: &kube::Client,
    pods: &mut crate::informer::Informer<Pod>,
    shutdown: &tokio_util::sync::CancellationToken,
    tasks: &tokio_util::task::TaskTracker,
) {
    use crate::informer::Informer;
    let mut budgets: Informer<PodDisruptionBudget> = Informer::new(client.clone());
    let queue = crate::queue::WorkQueue::new();
    let c = Arc::new(DisruptionController {
        writes: Arc::new(crate::writes::ClientWrites::new(client.clone(), NAME)),
        budgets: budgets.store(),
        pods: pods.store(),
        clock: crate::system_clock(),
    });
    let q = queue.clone();
    budgets.on_change(Arc::new(move |_old, new| {
        if let Some(b) = new {
            q.add(Key::of(&b.metadata));
        }
    }));
    let q = queue.clone();
    let store = budgets.store();
    pods.on_change(Arc::new(move |old, new| {
        for p in [old, new].into_iter().flatten() {
            for k in budgets_selecting(&store, p) {
                q.add(k);
            }
        }
    }));
    let (ps, bs) = (pods.synced(), budgets.synced());
    let ready = async move { ps.wait().await && bs.wait().await };
    let resync = budgets.store();
    tasks.spawn(budgets.run(shutdown.clone()));
    crate::writes::start_after(
        tasks,
        NAME,
        queue,
        shutdown.clone(),
        ready,
        resync,
        move |key| {
            let c = c.clone();
            async move { c.reconcile(&key).await }
        },
    );
}

#[cfg(test)]
mod tests;
