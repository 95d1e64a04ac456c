//! Workloads of `skiff bench scheduler`, mirroring upstream scheduler_perf (SchedulingBasic,
//! SchedulingNodeAffinity, TopologySpreading, SchedulingPodAntiAffinity, PreemptionBasic,
//! PreemptionAsync), and
//! the IO-free core run over the same snapshot so the API overhead is visible beside it.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{
    Affinity, Container, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement,
    NodeSelectorTerm, NodeStatus, Pod, PodAffinityTerm, PodAntiAffinity, PodSpec,
    ResourceRequirements, TopologySpreadConstraint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use crate::framework::{Framework, ScheduleError};
use crate::hollow::{self, HollowConfig};
use crate::preemption::{self, Outcome};
use crate::snapshot::{NodeInfo, PodInfo, Snapshot};

/// Namespace of every pod the benchmark creates.
pub const NAMESPACE: &str = "bench";
/// Zone label values of the benchmark's nodes (upstream labels 3 zones too).
pub const ZONES: usize = 3;
const ZONE_KEY: &str = "topology.kubernetes.io/zone";
const LOW_PRIORITY: i32 = 1;
const HIGH_PRIORITY: i32 = 10;

/// Which scheduler_perf workload to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// SchedulingBasic: no constraints.
    Basic,
    /// SchedulingNodeAffinity: required node affinity on the zone label.
    Affinity,
    /// TopologySpreading: `maxSkew: 1` across zones, DoNotSchedule.
    Spread,
    /// SchedulingPodAntiAffinity: required anti-affinity per hostname among the pods.
    AntiAffinity,
    /// PreemptionBasic: low-priority pods fill the nodes; high-priority pods preempt.
    Preemption,
    /// PreemptionAsync (upstream's 570 pods/s floor): low-priority pods fill the nodes as for
    /// PreemptionBasic, high-priority preemptors arrive at 5/s (`PREEMPTOR_INTERVAL`), and the
    /// measured pods are plain 100m pods, which still fit beside the low-priority ones.
    PreemptionAsync,
}

/// How often PreemptionAsync creates a preemptor while the measured pods are scheduled
/// (upstream's churn op, `intervalMilliseconds: 200`).
pub const PREEMPTOR_INTERVAL: Duration = Duration::from_millis(200);

impl FromStr for Workload {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "basic" => Ok(Workload::Basic),
            "affinity" | "node-affinity" => Ok(Workload::Affinity),
            "spread" | "topology-spreading" => Ok(Workload::Spread),
            "anti-affinity" | "pod-anti-affinity" => Ok(Workload::AntiAffinity),
            "preemption" => Ok(Workload::Preemption),
            "preemption-async" => Ok(Workload::PreemptionAsync),
            other => Err(format!(
                "unknown workload {other:?} (basic, affinity, spread, anti-affinity, preemption, preemption-async)"
            )),
        }
    }
}

impl Workload {
    pub fn name(self) -> &'static str {
        match self {
            Workload::Basic => "basic",
            Workload::Affinity => "affinity",
            Workload::Spread => "spread",
            Workload::AntiAffinity => "anti-affinity",
            Workload::Preemption => "preemption",
            Workload::PreemptionAsync => "preemption-async",
        }
    }

    /// How many of `wanted` measured pods can be placed at all on `nodes` nodes: one per node
    /// for hostname anti-affinity and for the 3-CPU preemptors.
    pub fn placeable(self, nodes: usize, wanted: usize) -> usize {
        match self {
            Workload::AntiAffinity | Workload::Preemption => wanted.min(nodes),
            _ => wanted,
        }
    }

    /// The default number of pods present before measuring: upstream fills every node with four
    /// low-priority pods for preemption.
    pub fn default_existing(self, nodes: usize) -> usize {
        match self {
            Workload::Preemption | Workload::PreemptionAsync => nodes * 4,
            _ => 1000,
        }
    }
}

/// The hollow-sized node `i` (4 CPU, 16Gi, 110 pods) with a zone label, status included.
pub fn node(i: usize) -> Node {
    let cfg = HollowConfig::default();
    let mut node = hollow::node_object(&cfg, i);
    if let Some(labels) = node.metadata.labels.as_mut() {
        labels.insert(ZONE_KEY.into(), zone(i));
    }
    let status = hollow::node_status_patch(&cfg, i);
    node.status = serde_json::from_value::<NodeStatus>(status["status"].clone()).ok();
    node
}

fn zone(i: usize) -> String {
    format!("zone-{}", i % ZONES)
}

fn quantity(s: &str) -> Quantity {
    Quantity(s.into())
}

fn pod_with(name: String, labels: BTreeMap<String, String>, cpu: &str, memory: &str) -> Pod {
    let requests = BTreeMap::from([
        ("cpu".to_string(), quantity(cpu)),
        ("memory".to_string(), quantity(memory)),
    ]);
    Pod {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(NAMESPACE.into()),
            labels: Some(labels),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "pause".into(),
                image: Some("registry.k8s.io/pause:3.10".into()),
                resources: Some(ResourceRequirements {
                    requests: Some(requests.clone()),
                    limits: Some(requests),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            termination_grace_period_seconds: Some(0),
            ..Default::default()
        }),
        status: None,
    }
}

/// A pod already running on `node` before the measurement starts.
pub fn existing_pod(w: Workload, i: usize, node: &str) -> Pod {
    let mut pod = match w {
        Workload::Preemption | Workload::PreemptionAsync => {
            let mut p = pod_with(
                format!("existing-{i}"),
                BTreeMap::from([("bench".to_string(), "existing".to_string())]),
                "900m",
                "500Mi",
            );
            if let Some(s) = p.spec.as_mut() {
                s.priority = Some(LOW_PRIORITY);
            }
            p
        }
        // Existing pods carry the measured pods' labels so spread and anti-affinity count them.
        _ => {
            let mut p = measured_pod(w, i);
            p.metadata.name = Some(format!("existing-{i}"));
            if let Some(l) = p.metadata.labels.as_mut() {
                l.insert("bench".into(), "existing".into());
            }
            p
        }
    };
    if let Some(s) = pod.spec.as_mut() {
        s.node_name = Some(node.to_string());
    }
    pod
}

/// Measured pod `i` of workload `w` (unbound).
pub fn measured_pod(w: Workload, i: usize) -> Pod {
    let labels = BTreeMap::from([
        ("bench".to_string(), "measured".to_string()),
        ("app".to_string(), w.name().to_string()),
    ]);
    let app_selector = || LabelSelector {
        match_labels: Some(BTreeMap::from([("app".to_string(), w.name().to_string())])),
        ..Default::default()
    };
    let name = format!("pod-{i}");
    match w {
        Workload::Basic | Workload::PreemptionAsync => pod_with(name, labels, "100m", "500Mi"),
        Workload::Affinity => {
            let mut p = pod_with(name, labels, "100m", "500Mi");
            if let Some(s) = p.spec.as_mut() {
                s.affinity = Some(Affinity {
                    node_affinity: Some(NodeAffinity {
                        required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                            node_selector_terms: vec![NodeSelectorTerm {
                                match_expressions: Some(vec![NodeSelectorRequirement {
                                    key: ZONE_KEY.into(),
                                    operator: "In".into(),
                                    values: Some(vec![zone(0), zone(1)]),
                                }]),
                                ..Default::default()
                            }],
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                });
            }
            p
        }
        Workload::Spread => {
            let mut p = pod_with(name, labels, "100m", "500Mi");
            if let Some(s) = p.spec.as_mut() {
                s.topology_spread_constraints = Some(vec![TopologySpreadConstraint {
                    max_skew: 1,
                    topology_key: ZONE_KEY.into(),
                    when_unsatisfiable: "DoNotSchedule".into(),
                    label_selector: Some(app_selector()),
                    ..Default::default()
                }]);
            }
            p
        }
        Workload::AntiAffinity => {
            let mut p = pod_with(name, labels, "100m", "500Mi");
            if let Some(s) = p.spec.as_mut() {
                s.affinity = Some(Affinity {
                    pod_anti_affinity: Some(PodAntiAffinity {
                        required_during_scheduling_ignored_during_execution: Some(vec![
                            PodAffinityTerm {
                                label_selector: Some(app_selector()),
                                topology_key: "kubernetes.io/hostname".into(),
                                ..Default::default()
                            },
                        ]),
                        ..Default::default()
                    }),
                    ..Default::default()
                });
            }
            p
        }
        Workload::Preemption => {
            let mut p = pod_with(name, labels, "3", "500Mi");
            if let Some(s) = p.spec.as_mut() {
                s.priority = Some(HIGH_PRIORITY);
            }
            p
        }
    }
}

/// Preemptor `i` of PreemptionAsync's churn (upstream's pod-high-priority: 3 CPU, priority 10),
/// not measured.
pub fn preemptor(i: usize) -> Pod {
    let mut p = measured_pod(Workload::Preemption, i);
    p.metadata.name = Some(format!("preemptor-{i}"));
    if let Some(l) = p.metadata.labels.as_mut() {
        l.insert("bench".into(), "preemptor".into());
    }
    p
}

/// The node existing pod `i` goes to: round robin, so every node gets its share.
pub fn existing_node(i: usize, nodes: usize) -> usize {
    i % nodes.max(1)
}

/// Result of the IO-free core run.
#[derive(Debug, Clone)]
pub struct CoreResult {
    pub placed: usize,
    pub preemptions: usize,
    pub failed: usize,
    pub seconds: f64,
    pub p50: Duration,
    pub p99: Duration,
}

impl CoreResult {
    pub fn decisions_per_s(&self) -> f64 {
        (self.placed + self.failed) as f64 / self.seconds.max(1e-9)
    }
}

/// Nearest-rank percentile of sorted samples.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn info_of(pod: &Pod, uid: String) -> PodInfo {
    let mut info = PodInfo::from_pod(pod);
    info.uid = uid;
    info.priority = pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0);
    info
}

/// Runs the decision core alone on the benchmark's snapshot: every measured pod is scheduled
/// and assumed one after another; for preemption the victims leave the snapshot and the pod is
/// placed on the nominated node, as the loop would end up doing.
pub fn run_core(w: Workload, nodes: usize, existing: usize, pods: usize) -> CoreResult {
    let mut snap = Snapshot::new();
    for i in 0..nodes {
        snap.upsert_node(NodeInfo::from_node(&node(i)));
    }
    let names: Vec<String> = (0..nodes)
        .map(|i| format!("{}{i}", HollowConfig::default().name_prefix))
        .collect();
    for i in 0..existing {
        let pod = existing_pod(w, i, &names[existing_node(i, nodes)]);
        snap.add_pod(Arc::new(info_of(&pod, format!("existing-uid-{i}"))));
    }
    let mut fw = Framework::with_defaults();
    let mut latencies = Vec::with_capacity(pods);
    let (mut placed, mut preemptions, mut failed) = (0, 0, 0);
    let start = Instant::now();
    // PreemptionAsync's preemptors interleaved at their share of upstream's floor rate: 5/s
    // beside 570 measured pods/s is about one per 100 measured pods.
    let preemptor_every = (w == Workload::PreemptionAsync).then_some(100);
    for k in 0..pods + preemptor_every.map_or(0, |e| pods.div_ceil(e)) {
        let pod = match preemptor_every {
            Some(e) if k % (e + 1) == 0 => preemptor(k / (e + 1)),
            Some(e) => measured_pod(w, k - k / (e + 1) - 1),
            None => measured_pod(w, k),
        };
        let i = k;
        let t = Instant::now();
        let mut info = info_of(&pod, format!("uid-{i}"));
        match fw.schedule(&snap, &info) {
            Ok(d) => {
                info.node_name = Some(d.node);
                snap.add_pod(Arc::new(info));
                placed += 1;
            }
            Err(ScheduleError::Unfit(fit)) => {
                match preemption::preempt(&fw, &snap, &info, &fit, &[]) {
                    Outcome::Nominate(c) => {
                        for v in &c.victims {
                            snap.remove_pod(&v.uid);
                        }
                        info.node_name = Some(c.node);
                        snap.add_pod(Arc::new(info));
                        preemptions += 1;
                        placed += 1;
                    }
                    Outcome::Unschedulable(_) => failed += 1,
                }
            }
            Err(_) => failed += 1,
        }
        latencies.push(t.elapsed());
    }
    let seconds = start.elapsed().as_secs_f64();
    latencies.sort_unstable();
    CoreResult {
        placed,
        preemptions,
        failed,
        seconds,
        p50: percentile(&latencies, 0.5),
        p99: percentile(&latencies, 0.99),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_places_every_workload_on_a_small_cluster() {
        for w in [
            Workload::Basic,
            Workload::Affinity,
            Workload::Spread,
            Workload::AntiAffinity,
        ] {
            let r = run_core(w, 30, 9, 21);
            assert_eq!((r.placed, r.failed), (21, 0), "{w:?}");
        }
        let r = run_core(Workload::Preemption, 10, 40, 10);
        assert_eq!((r.placed, r.preemptions, r.failed), (10, 10, 0));
        // 20 measured pods fit beside the low-priority ones; the one preemptor preempts.
        let r = run_core(Workload::PreemptionAsync, 10, 40, 20);
        assert_eq!((r.placed, r.preemptions, r.failed), (21, 1, 0));
    }
}
