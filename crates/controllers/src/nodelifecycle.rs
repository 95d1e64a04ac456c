//! The node lifecycle controller, as upstream's pkg/controller/nodelifecycle: watches node
//! heartbeats (Lease renewals in `kube-node-lease` and the Ready condition's heartbeat); a node
//! silent for longer than the grace period gets its conditions set `Unknown` and the
//! `node.kubernetes.io/unreachable` taints (`not-ready` when Ready=False), its pods are marked
//! not ready, and the NoExecute taint manager evicts pods that do not tolerate the taints (after
//! their `tolerationSeconds`). Taints go when the node reports Ready again. NoExecute taints are
//! added at a per-zone rate that follows the zone's disruption state (see `zones`).

pub mod zones;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::reflector::{ObjectRef, Store};
use serde_json::json;

use crate::Clock;
use crate::control::{self, object_reference};
use crate::queue::Key;
use crate::writes::{Kind, Writes};
use zones::{EvictionRates, Transition, Zones};

/// Name in logs and events, as upstream's component.
pub const NAME: &str = "node-controller";
/// The namespace of node heartbeat Leases.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";
/// Taint of a node whose Ready condition is Unknown.
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
/// Taint of a node whose Ready condition is False.
pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
/// Condition types the controller sets Unknown on a silent node.
const WATCHED_CONDITIONS: &[&str] = &["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

/// Errors of one sync.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A write failed; the sync is retried with backoff.
    #[error(transparent)]
    Control(#[from] control::Error),
}

/// Timing of the controller (upstream's flags).
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// Silence after which a node is Unknown (`--node-monitor-grace-period`, 40 s).
    pub grace: Duration,
    /// Grace for a node that never posted status (`--node-startup-grace-period`, 60 s).
    pub startup_grace: Duration,
    /// How often every node is checked (`--node-monitor-period`, 5 s).
    pub monitor_period: Duration,
}

#[derive(Clone, Debug)]
struct Health {
    // Local time of the last observed heartbeat change (upstream's probeTimestamp): comparing
    // against our own clock avoids trusting the kubelet's.
    probe: Timestamp,
    heartbeat: Option<Timestamp>,
    lease_renew: Option<Timestamp>,
}

/// Everything a node lifecycle sync needs.
pub struct NodeLifecycleController<W> {
    /// Side effects.
    pub writes: Arc<W>,
    /// Node cache (shared).
    pub nodes: Store<Node>,
    /// Lease cache (`kube-node-lease`).
    pub leases: Store<Lease>,
    /// Pod cache (shared).
    pub pods: Store<Pod>,
    /// Wall clock.
    pub clock: Clock,
    /// Grace periods.
    pub timing: Timing,
    health: Mutex<HashMap<String, Health>>,
    // When the taint manager first saw a pod under a taint without timeAdded.
    first_seen: Mutex<HashMap<String, Timestamp>>,
    zones: Mutex<Zones>,
}

fn is_our_no_execute(t: &Taint) -> bool {
    t.effect == "NoExecute" && (t.key == UNREACHABLE || t.key == NOT_READY)
}

fn condition<'a>(node: &'a Node, type_: &str) -> Option<&'a NodeCondition> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

/// Whether `toleration` tolerates `taint` (upstream's ToleratesTaint).
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    let effect = toleration.effect.as_deref().unwrap_or("");
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" => {
            !key.is_empty()
                && toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
        _ => false,
    }
}

/// How long a pod may stay under `taints` (NoExecute): `None` if some taint is not tolerated
/// (evict now), `Some(None)` forever, `Some(Some(d))` for the shortest tolerationSeconds.
pub fn toleration_time(pod: &Pod, taints: &[&Taint]) -> Option<Option<Duration>> {
    let tolerations = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.clone())
        .unwrap_or_default();
    let mut min: Option<Duration> = None;
    for taint in taints {
        let matching: Vec<&Toleration> =
            tolerations.iter().filter(|t| tolerates(t, taint)).collect();
        if matching.is_empty() {
            return None;
        }
        for t in matching {
            if let Some(s) = t.toleration_seconds {
                let d = Duration::from_secs(s.max(0) as u64);
                min = Some(min.map_or(d, |m| m.min(d)));
            }
        }
    }
    Some(min)
}

fn to_duration(d: jiff::SignedDuration) -> Duration {
    Duration::try_from(d).unwrap_or(Duration::ZERO)
}

impl<W: Writes> NodeLifecycleController<W> {
    /// A controller over the given caches.
    pub fn new(
        writes: Arc<W>,
        nodes: Store<Node>,
        leases: Store<Lease>,
        pods: Store<Pod>,
        clock: Clock,
        timing: Timing,
    ) -> NodeLifecycleController<W> {
        NodeLifecycleController {
            writes,
            nodes,
            leases,
            pods,
            clock,
            timing,
            health: Mutex::new(HashMap::new()),
            first_seen: Mutex::new(HashMap::new()),
            zones: Mutex::new(Zones::new(EvictionRates::default())),
        }
    }

    /// The same controller with other eviction rates and zone thresholds.
    pub fn with_eviction_rates(mut self, rates: EvictionRates) -> Self {
        self.zones = Mutex::new(Zones::new(rates));
        self
    }

    fn zones(&self) -> std::sync::MutexGuard<'_, Zones> {
        self.zones.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Judge every zone from the nodes reconciled so far and move their tainting rates
    /// (upstream's handleDisruption, once per monitor period). Leaving master disruption
    /// gives every node a fresh grace period, as upstream.
    pub fn handle_disruption(&self) -> Transition {
        let t = self.zones().handle_disruption();
        if t == Transition::ExitMasterDisruption {
            let now = (self.clock)();
            let mut health = self.health.lock().unwrap_or_else(|e| e.into_inner());
            for h in health.values_mut() {
                h.probe = now;
            }
        }
        t
    }

    /// Update our record of the node's heartbeats; returns the last probe time.
    fn observe(&self, node: &Node, now: Timestamp) -> Timestamp {
        let name = node.metadata.name.clone().unwrap_or_default();
        let heartbeat = condition(node, "Ready")
            .and_then(|c| c.last_heartbeat_time.as_ref())
            .map(|t| t.0);
        let lease_renew = self
            .leases
            .get(&ObjectRef::new(&name).within(LEASE_NAMESPACE))
            .and_then(|l| l.spec.as_ref()?.renew_time.as_ref().map(|t| t.0));
        let mut health = self.health.lock().unwrap_or_else(|e| e.into_inner());
        let h = health.entry(name).or_insert_with(|| Health {
            probe: now,
            heartbeat,
            lease_renew,
        });
        if h.heartbeat != heartbeat || h.lease_renew != lease_renew {
            h.probe = now;
            h.heartbeat = heartbeat;
            h.lease_renew = lease_renew;
        }
        h.probe
    }

    /// Check node `key`: health, conditions, taints, its pods.
    pub async fn reconcile(&self, key: &Key) -> Result<Option<Duration>, Error> {
        let Some(node) = self.nodes.get(&ObjectRef::new(&key.name)) else {
            self.health
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&key.name);
            self.zones().forget(&key.name);
            self.collect_orphans(&key.name).await?;
            return Ok(None);
        };
        let now = (self.clock)();
        let probe = self.observe(&node, now);
        let ready = condition(&node, "Ready");
        let grace = if ready.is_none() {
            self.timing.startup_grace
        } else {
            self.timing.grace
        };
        let deadline = probe + jiff::SignedDuration::try_from(grace).unwrap_or_default();
        let mut requeue: Option<Duration> = None;
        let mut ready_status = ready.map(|c| c.status.clone());

        if now > deadline {
            if let Some(conditions) = unknown_conditions(&node, now) {
                let was_ready = ready_status.as_deref() == Some("True");
                let patch = json!({
                    "metadata": {"resourceVersion": node.metadata.resource_version},
                    "status": {"conditions": conditions},
                });
                match self
                    .writes
                    .merge_patch(Kind::Node, "", &key.name, patch, true)
                    .await
                {
                    Ok(()) => {}
                    Err(e) if e.is_not_found() => return Ok(None),
                    Err(e) => return Err(e.into()),
                }
                tracing::info!(node = %key.name, "node stopped posting status; conditions Unknown");
                if was_ready {
                    self.writes.record(
                        &object_reference(node.as_ref()),
                        "Normal",
                        "NodeNotReady",
                        format!("Node {} status is now: NodeNotReady", key.name),
                    );
                }
            }
            ready_status = Some("Unknown".into());
        } else {
            requeue = Some(to_duration(deadline.duration_since(now)) + Duration::from_millis(100));
        }

        let zone = zones::zone_key(&node);
        self.zones().observe(
            &key.name,
            zone.clone(),
            ready_status.as_deref() == Some("True"),
            zones::excluded(&node),
        );

        // Taints follow the Ready condition; a new NoExecute one waits for its zone's limiter.
        let mut taints = desired_taints(&node, ready_status.as_deref(), now);
        let current = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default();
        let adding = taints.iter().any(is_our_no_execute) && !current.iter().any(is_our_no_execute);
        let verdict = {
            let mut z = self.zones();
            if z.in_master_disruption() {
                Err(None)
            } else if adding {
                z.try_taint(&zone, now)
            } else {
                Ok(())
            }
        };
        if let Err(wait) = verdict {
            taints.retain(|t| !is_our_no_execute(t));
            if adding {
                let w = wait.unwrap_or(self.timing.monitor_period);
                tracing::debug!(node = %key.name, wait_ms = w.as_millis() as u64, "NoExecute taint held back by the zone's eviction rate");
                requeue = Some(requeue.map_or(w, |r| r.min(w)));
            }
        }
        if taints != current {
            let patch = json!({"spec": {"taints": taints}});
            match self
                .writes
                .merge_patch(Kind::Node, "", &key.name, patch, false)
                .await
            {
                Ok(()) => {}
                Err(e) if e.is_not_found() => return Ok(None),
                Err(e) => return Err(e.into()),
            }
        }

        let unhealthy = ready_status.as_deref() != Some("True") && ready_status.is_some();
        // A healthy, untainted node (the common case) needs no look at the pod cache.
        if !unhealthy && !taints.iter().any(|t| t.effect == "NoExecute") {
            return Ok(requeue);
        }
        let pods: Vec<Arc<Pod>> = self
            .pods
            .state()
            .into_iter()
            .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(&key.name))
            .collect();
        if unhealthy {
            self.mark_pods_not_ready(&pods, now).await?;
        }
        let next = self.evict_intolerant(&taints, &pods, now).await?;
        Ok(match (requeue, next) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        })
    }

    /// Pods bound to a node that no longer exists can never be finished by a kubelet: delete
    /// them at once (upstream's pod GC, gcOrphaned). Only reached for a node the cache saw
    /// deleted, since keys come from node events and the node list.
    async fn collect_orphans(&self, node: &str) -> Result<(), Error> {
        let now = (self.clock)();
        for pod in self.pods.state() {
            if pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) != Some(node) {
                continue;
            }
            let ns = pod.metadata.namespace.clone().unwrap_or_default();
            let name = pod.metadata.name.clone().unwrap_or_default();
            let mut conditions = pod
                .status
                .as_ref()
                .and_then(|s| s.conditions.clone())
                .unwrap_or_default();
            conditions.retain(|c| c.type_ != "DisruptionTarget");
            conditions.push(k8s_openapi::api::core::v1::PodCondition {
                type_: "DisruptionTarget".into(),
                status: "True".into(),
                reason: Some("DeletionByPodGC".into()),
                message: Some("PodGC: node no longer exists".into()),
                last_transition_time: Some(Time(now)),
                ..Default::default()
            });
            let patch = json!({"status": {"conditions": conditions}});
            let result = self
                .writes
                .merge_patch(Kind::Pod, &ns, &name, patch, true)
                .await;
            if let Err(e) = result
                && !e.is_not_found()
            {
                return Err(e.into());
            }
            tracing::info!(pod = %format!("{ns}/{name}"), node, "deleting pod of a vanished node");
            match self
                .writes
                .force_delete_pod(&ns, &name, pod.metadata.uid.as_deref())
                .await
            {
                Ok(()) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    async fn mark_pods_not_ready(&self, pods: &[Arc<Pod>], now: Timestamp) -> Result<(), Error> {
        for pod in pods {
            let Some(conditions) = pod.status.as_ref().and_then(|s| s.conditions.clone()) else {
                continue;
            };
            if !conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status != "False")
            {
                continue;
            }
            let conditions: Vec<_> = conditions
                .into_iter()
                .map(|mut c| {
                    if c.type_ == "Ready" {
                        c.status = "False".into();
                        c.last_transition_time = Some(Time(now));
                    }
                    c
                })
                .collect();
            let ns = pod.metadata.namespace.clone().unwrap_or_default();
            let name = pod.metadata.name.clone().unwrap_or_default();
            let patch = json!({"status": {"conditions": conditions}});
            match self
                .writes
                .merge_patch(Kind::Pod, &ns, &name, patch, true)
                .await
            {
                Ok(()) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// The NoExecute taint manager for one node: evict what is due, say when the next is due.
    async fn evict_intolerant(
        &self,
        taints: &[Taint],
        pods: &[Arc<Pod>],
        now: Timestamp,
    ) -> Result<Option<Duration>, Error> {
        let no_execute: Vec<&Taint> = taints.iter().filter(|t| t.effect == "NoExecute").collect();
        if no_execute.is_empty() {
            return Ok(None);
        }
        // Tolerations count from when the taint was added (the latest of them).
        let since = no_execute
            .iter()
            .filter_map(|t| t.time_added.as_ref().map(|t| t.0))
            .max();
        let mut next: Option<Duration> = None;
        for pod in pods {
            if pod.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            let start = since.unwrap_or_else(|| {
                *self
                    .first_seen
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry(uid.clone())
                    .or_insert(now)
            });
            let due = match toleration_time(pod, &no_execute) {
                None => true,
                Some(None) => false,
                Some(Some(d)) => {
                    let at = start + jiff::SignedDuration::try_from(d).unwrap_or_default();
                    if at <= now {
                        true
                    } else {
                        let wait = to_duration(at.duration_since(now));
                        next = Some(next.map_or(wait, |n| n.min(wait)));
                        false
                    }
                }
            };
            if due {
                self.evict(pod, now).await?;
            }
        }
        Ok(next)
    }

    async fn evict(&self, pod: &Pod, now: Timestamp) -> Result<(), Error> {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let mut conditions = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        conditions.retain(|c| c.type_ != "DisruptionTarget");
        conditions.push(k8s_openapi::api::core::v1::PodCondition {
            type_: "DisruptionTarget".into(),
            status: "True".into(),
            reason: Some("DeletionByTaintManager".into()),
            message: Some("Taint manager: deleting due to NoExecute taint".into()),
            last_transition_time: Some(Time(now)),
            ..Default::default()
        });
        let patch = json!({"status": {"conditions": conditions}});
        match self
            .writes
            .merge_patch(Kind::Pod, &ns, &name, patch, true)
            .await
        {
            Ok(()) => {}
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        self.writes.record(
            &object_reference(pod),
            "Normal",
            "TaintManagerEviction",
            format!("Marking for deletion Pod {ns}/{name}"),
        );
        tracing::info!(pod = %format!("{ns}/{name}"), "taint manager evicting pod");
        match self
            .writes
            .delete(Kind::Pod, &ns, &name, pod.metadata.uid.as_deref())
            .await
        {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
        if let Some(uid) = &pod.metadata.uid {
            self.first_seen
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(uid);
        }
        Ok(())
    }
}

/// The node's conditions with the watched ones set Unknown; `None` if nothing changes.
fn unknown_conditions(node: &Node, now: Timestamp) -> Option<Vec<NodeCondition>> {
    let mut conditions = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let mut changed = false;
    if !conditions.iter().any(|c| c.type_ == "Ready") {
        conditions.push(NodeCondition {
            type_: "Ready".into(),
            status: "Unknown".into(),
            reason: Some("NodeStatusNeverUpdated".into()),
            message: Some("Kubelet never posted node status.".into()),
            last_heartbeat_time: node.metadata.creation_timestamp.clone(),
            last_transition_time: Some(Time(now)),
        });
        changed = true;
    }
    for c in conditions.iter_mut() {
        if WATCHED_CONDITIONS.contains(&c.type_.as_str()) && c.status != "Unknown" {
            c.status = "Unknown".into();
            c.reason = Some("NodeStatusUnknown".into());
            c.message = Some("Kubelet stopped posting node status.".into());
            c.last_transition_time = Some(Time(now));
            changed = true;
        }
    }
    changed.then_some(conditions)
}

/// The node's taints with the not-ready/unreachable ones matching `ready`.
fn desired_taints(node: &Node, ready: Option<&str>, now: Timestamp) -> Vec<Taint> {
    let current = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let wanted: &[(&str, &str)] = match ready {
        Some("False") => &[(NOT_READY, "NoSchedule"), (NOT_READY, "NoExecute")],
        Some("Unknown") => &[(UNREACHABLE, "NoSchedule"), (UNREACHABLE, "NoExecute")],
        _ => &[],
    };
    let ours = |t: &Taint| t.key == UNREACHABLE || t.key == NOT_READY;
    let mut out: Vec<Taint> = current
        .iter()
        .filter(|t| !ours(t) || wanted.contains(&(t.key.as_str(), t.effect.as_str())))
        .cloned()
        .collect();
    for (key, effect) in wanted {
        if !out.iter().any(|t| t.key == *key && t.effect == *effect) {
            out.push(Taint {
                key: key.to_string(),
                effect: effect.to_string(),
                value: None,
                // Only NoExecute taints carry the time; tolerationSeconds count from it.
                time_added: (*effect == "NoExecute").then_some(Time(now)),
            });
        }
    }
    out
}

/// Wire the controller: handlers on the shared node and pod informers, its own Lease informer
/// (`kube-node-lease`), a monitor tick over every node, workers once the caches synced.
pub(crate) fn register(
    client: &kube::Client,
    options: &crate::Options,
    pods: &mut crate::informer::Informer<Pod>,
    nodes: &mut crate::informer::Informer<Node>,
    shutdown: &tokio_util::sync::CancellationToken,
    tasks: &tokio_util::task::TaskTracker,
) {
    use crate::informer::Informer;
    let mut leases: Informer<Lease> =
        Informer::with_api(kube::Api::namespaced(client.clone(), LEASE_NAMESPACE), ());
    let queue = crate::queue::WorkQueue::new();
    let timing = Timing {
        grace: options.node_monitor_grace_period,
        startup_grace: options.node_startup_grace_period,
        monitor_period: options.node_monitor_period,
    };
    let c = Arc::new(
        NodeLifecycleController::new(
            Arc::new(crate::writes::ClientWrites::new(client.clone(), NAME)),
            nodes.store(),
            leases.store(),
            pods.store(),
            crate::system_clock(),
            timing,
        )
        .with_eviction_rates(options.eviction_rates),
    );
    let q = queue.clone();
    nodes.on_change(Arc::new(move |old, new| {
        if let Some(n) = new.or(old) {
            q.add(Key::of(&n.metadata));
        }
    }));
    let q = queue.clone();
    leases.on_change(Arc::new(move |_old, new| {
        if let Some(l) = new {
            q.add(Key::new("", l.metadata.name.clone().unwrap_or_default()));
        }
    }));
    let q = queue.clone();
    let node_store = nodes.store();
    pods.on_change(Arc::new(move |_old, new| {
        // A pod landing on a NoExecute-tainted node is for the taint manager to judge.
        if let Some(node) = new.and_then(|p| p.spec.as_ref()?.node_name.clone())
            && node_store.get(&ObjectRef::new(&node)).is_some_and(|n| {
                n.spec
                    .as_ref()
                    .and_then(|s| s.taints.as_ref())
                    .is_some_and(|t| t.iter().any(|t| t.effect == "NoExecute"))
            })
        {
            q.add(Key::new("", node));
        }
    }));
    // Silence produces no events: a tick looks at every node (upstream's monitorNodeHealth).
    {
        let q = queue.clone();
        let node_store = nodes.store();
        let shutdown = shutdown.clone();
        let c = c.clone();
        tasks.spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(timing.monitor_period) => {}
                    _ = shutdown.cancelled() => return,
                }
                c.handle_disruption();
                for n in node_store.state() {
                    q.add(Key::of(&n.metadata));
                }
            }
        });
    }
    let (ps, ns, ls) = (pods.synced(), nodes.synced(), leases.synced());
    let ready = async move { ps.wait().await && ns.wait().await && ls.wait().await };
    tasks.spawn(leases.run(shutdown.clone()));
    crate::writes::start_after(
        tasks,
        NAME,
        queue,
        shutdown.clone(),
        ready,
        nodes.store(),
        move |key| {
            let c = c.clone();
            async move { c.reconcile(&key).await }
        },
    );
}

#[cfg(test)]
mod tests;
