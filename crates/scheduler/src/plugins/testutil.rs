//! Builders shared by the plugin unit tests.

use crate::framework::{CycleState, Plugin};
use crate::snapshot::{NodeInfo, PodInfo, Snapshot};

pub fn node(name: &str) -> NodeInfo {
    sized(
        NodeInfo {
            name: name.into(),
            ..Default::default()
        },
        4000,
        16 << 30,
        110,
    )
}

pub fn sized(mut n: NodeInfo, milli_cpu: i64, memory: i64, pods: i64) -> NodeInfo {
    n.allocatable.milli_cpu = milli_cpu;
    n.allocatable.memory = memory;
    n.allocatable.allowed_pods = pods;
    n
}

pub fn labeled(mut n: NodeInfo, kv: &[(&str, &str)]) -> NodeInfo {
    for (k, v) in kv {
        n.labels.insert(k.to_string(), v.to_string());
    }
    n
}

pub fn snapshot(nodes: Vec<NodeInfo>) -> Snapshot {
    let mut s = Snapshot::new();
    for n in nodes {
        s.upsert_node(n);
    }
    s
}

pub fn pod_info(name: &str) -> PodInfo {
    PodInfo {
        uid: format!("uid-{name}"),
        namespace: "default".into(),
        name: name.into(),
        scheduler_name: crate::DEFAULT_SCHEDULER_NAME.into(),
        ..Default::default()
    }
}

/// Runs PreScore, Score on every node, and NormalizeScore, as the framework does.
pub fn score_all(p: &dyn Plugin, pod: &PodInfo, snap: &Snapshot) -> Vec<i64> {
    let mut cx = CycleState::default();
    let nodes: Vec<&NodeInfo> = snap.nodes.iter().collect();
    p.pre_score(&mut cx, pod, &nodes, snap);
    let mut scores: Vec<i64> = nodes.iter().map(|n| p.score(&cx, pod, n, snap)).collect();
    p.normalize_score(&cx, pod, &mut scores);
    scores
}
