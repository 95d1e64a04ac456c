//! NodeResourcesFit: the pod's requests (init containers, sidecars and overhead counted as
//! upstream) must fit the node's free allocatable; LeastAllocated scoring (cpu=1, memory=1).

use crate::framework::{Code, CycleState, MAX_NODE_SCORE, Plugin, Status};
use crate::snapshot::{NodeInfo, PodInfo, Snapshot};

pub const NAME: &str = "NodeResourcesFit";

/// One insufficient resource: its reason and whether even an empty node could not hold the pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Insufficient {
    pub reason: String,
    pub unresolvable: bool,
}

/// Upstream's `fitsRequest`.
pub fn fits_request(pod: &PodInfo, node: &NodeInfo) -> Vec<Insufficient> {
    let mut out = Vec::new();
    let alloc = &node.allocatable;
    let used = &node.requested;
    if node.pods.len() as i64 + 1 > alloc.allowed_pods {
        out.push(Insufficient {
            reason: "Too many pods".into(),
            unresolvable: false,
        });
    }
    let req = &pod.requests;
    if req.is_zero() {
        return out;
    }
    let mut check = |name: &str, want: i64, have: i64, taken: i64| {
        if want > 0 && want > have - taken {
            out.push(Insufficient {
                reason: format!("Insufficient {name}"),
                unresolvable: want > have,
            });
        }
    };
    check("cpu", req.milli_cpu, alloc.milli_cpu, used.milli_cpu);
    check("memory", req.memory, alloc.memory, used.memory);
    check(
        "ephemeral-storage",
        req.ephemeral_storage,
        alloc.ephemeral_storage,
        used.ephemeral_storage,
    );
    for (name, want) in &req.scalar {
        check(name, *want, alloc.scalar(name), used.scalar(name));
    }
    out
}

/// `(capacity - requested) * 100 / capacity`, 0 when over-requested (upstream `leastRequestedScore`).
pub fn least_requested_score(requested: i64, capacity: i64) -> i64 {
    if capacity == 0 || requested > capacity {
        return 0;
    }
    (capacity - requested) * MAX_NODE_SCORE / capacity
}

pub struct NodeResourcesFit;

impl Plugin for NodeResourcesFit {
    fn name(&self) -> &'static str {
        NAME
    }
    fn pre_filter(&self, _cx: &mut CycleState, _pod: &PodInfo, _snap: &Snapshot) -> Status {
        Status::success()
    }
    fn filter(&self, _cx: &CycleState, pod: &PodInfo, node: &NodeInfo, _s: &Snapshot) -> Status {
        let insufficient = fits_request(pod, node);
        if insufficient.is_empty() {
            return Status::success();
        }
        let code = if insufficient.iter().any(|i| i.unresolvable) {
            Code::UnschedulableAndUnresolvable
        } else {
            Code::Unschedulable
        };
        Status {
            code,
            reasons: insufficient.into_iter().map(|i| i.reason).collect(),
            plugin: NAME,
        }
    }
    fn pre_score(
        &self,
        _cx: &mut CycleState,
        _pod: &PodInfo,
        _nodes: &[&NodeInfo],
        _snap: &Snapshot,
    ) -> Status {
        Status::success()
    }
    /// LeastAllocated over cpu and memory (weight 1 each), with the non-zero request defaults.
    fn score(&self, _cx: &CycleState, pod: &PodInfo, node: &NodeInfo, _s: &Snapshot) -> i64 {
        let mut total = 0;
        let mut weights = 0;
        let pairs = [
            (
                node.non_zero_requested.0 + pod.non_zero.0,
                node.allocatable.milli_cpu,
            ),
            (
                node.non_zero_requested.1 + pod.non_zero.1,
                node.allocatable.memory,
            ),
        ];
        for (req, alloc) in pairs {
            if alloc == 0 {
                continue;
            }
            total += least_requested_score(req, alloc);
            weights += 1;
        }
        if weights == 0 { 0 } else { total / weights }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testutil::*;
    use crate::resources::Resources;
    use std::sync::Arc;

    #[test]
    fn insufficient_reasons_in_upstream_words() {
        let snap = snapshot(vec![sized(node("a"), 1000, 1 << 30, 1)]);
        let mut pod = pod_info("p");
        pod.requests = Resources {
            milli_cpu: 2000,
            memory: 1 << 20,
            ..Default::default()
        };
        let s = NodeResourcesFit.filter(&CycleState::default(), &pod, &snap.nodes[0], &snap);
        assert_eq!(s.code, Code::UnschedulableAndUnresolvable);
        assert_eq!(s.reasons, vec!["Insufficient cpu".to_string()]);
    }

    #[test]
    fn too_many_pods_and_used_capacity() {
        let mut snap = snapshot(vec![sized(node("a"), 1000, 1 << 30, 1)]);
        let mut existing = pod_info("e");
        existing.node_name = Some("a".into());
        existing.requests.milli_cpu = 600;
        snap.add_pod(Arc::new(existing));
        let mut pod = pod_info("p");
        pod.requests.milli_cpu = 500;
        let s = NodeResourcesFit.filter(&CycleState::default(), &pod, &snap.nodes[0], &snap);
        assert_eq!(s.code, Code::Unschedulable);
        assert_eq!(
            s.reasons,
            vec!["Too many pods".to_string(), "Insufficient cpu".to_string()]
        );
    }

    #[test]
    fn extended_resources_are_checked() {
        let mut n = sized(node("a"), 4000, 1 << 30, 10);
        n.allocatable.scalar.insert("nvidia.com/gpu".into(), 1);
        let snap = snapshot(vec![n]);
        let mut pod = pod_info("p");
        pod.requests.scalar.insert("nvidia.com/gpu".into(), 2);
        let s = NodeResourcesFit.filter(&CycleState::default(), &pod, &snap.nodes[0], &snap);
        assert_eq!(s.reasons, vec!["Insufficient nvidia.com/gpu".to_string()]);
    }

    #[test]
    fn least_allocated_formula() {
        // cpu: (4000-1000)*100/4000 = 75; memory: (8Gi-2Gi)*100/8Gi = 75 → 75.
        let snap = snapshot(vec![sized(node("a"), 4000, 8 << 30, 110)]);
        let mut pod = pod_info("p");
        pod.non_zero = (1000, 2 << 30);
        assert_eq!(
            NodeResourcesFit.score(&CycleState::default(), &pod, &snap.nodes[0], &snap),
            75
        );
        // cpu 3000/4000 → 25, memory (default 200Mi of 8Gi) → 97; mean 61.
        pod.non_zero = (3000, 200 << 20);
        assert_eq!(
            NodeResourcesFit.score(&CycleState::default(), &pod, &snap.nodes[0], &snap),
            61
        );
        assert_eq!(least_requested_score(5, 4), 0);
    }
}
