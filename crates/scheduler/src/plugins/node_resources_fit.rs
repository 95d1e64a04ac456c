//! NodeResourcesFit: the pod's requests (init containers, sidecars and overhead counted as
//! upstream) must fit the node's free allocatable; LeastAllocated scoring (cpu=1, memory=1).

use crate::framework::{
    ClusterEvent, Code, CycleState, MAX_NODE_SCORE, Plugin, QueueingHint, Status,
};
use crate::resources::Resources;
use crate::snapshot::{NodeInfo, PodInfo, Snapshot};

pub const NAME: &str = "NodeResourcesFit";

/// One insufficient resource: its reason and whether even an empty node could not hold the pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Insufficient {
    pub reason: std::borrow::Cow<'static, str>,
    pub unresolvable: bool,
}

/// Upstream's `fitsRequest`.
pub fn fits_request(pod: &PodInfo, node: &NodeInfo) -> Vec<Insufficient> {
    fits_request_used(
        pod,
        &node.allocatable,
        &node.requested,
        node.pods.len() as i64,
    )
}

/// Whether the pod fits beside `used` and `pods` already on a node with `alloc`: the verdict
/// of `fits_request_used` without building reasons, for hot loops.
pub fn fits_used(pod: &PodInfo, alloc: &Resources, used: &Resources, pods: i64) -> bool {
    if pods + 1 > alloc.allowed_pods {
        return false;
    }
    let req = &pod.requests;
    let ok = |want: i64, have: i64, taken: i64| want <= 0 || want <= have - taken;
    ok(req.milli_cpu, alloc.milli_cpu, used.milli_cpu)
        && ok(req.memory, alloc.memory, used.memory)
        && ok(
            req.ephemeral_storage,
            alloc.ephemeral_storage,
            used.ephemeral_storage,
        )
        && req
            .scalar
            .iter()
            .all(|(name, want)| ok(*want, alloc.scalar(name), used.scalar(name)))
}

/// What the pods nominated to `node` with priority at least the pod's (the pod left out) add
/// to it: their requests and their number.
pub fn nominated_load(pod: &PodInfo, node: &str, snap: &Snapshot) -> (Resources, i64) {
    let mut extra = Resources::default();
    let mut count = 0;
    for p in snap.nominated_pods(node) {
        if p.uid != pod.uid && p.priority >= pod.priority {
            extra.add(&p.requests);
            count += 1;
        }
    }
    (extra, count)
}

/// Whether the pod's requests fit what is free on the node, nominated pods counted.
pub fn fits_free(pod: &PodInfo, node: &NodeInfo, snap: &Snapshot) -> bool {
    let pods = node.pods.len() as i64;
    if !fits_used(pod, &node.allocatable, &node.requested, pods) {
        return false;
    }
    let (extra, count) = nominated_load(pod, &node.name, snap);
    if count == 0 {
        return true;
    }
    let mut used = node.requested.clone();
    used.add(&extra);
    fits_used(pod, &node.allocatable, &used, pods + count)
}

/// `fits_request` against explicit usage: `used` requests and `pods` pods on a node with `alloc`.
pub fn fits_request_used(
    pod: &PodInfo,
    alloc: &Resources,
    used: &Resources,
    pods: i64,
) -> Vec<Insufficient> {
    let mut out = Vec::new();
    if pods + 1 > alloc.allowed_pods {
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
            let reason = match name {
                "cpu" => "Insufficient cpu".into(),
                "memory" => "Insufficient memory".into(),
                "ephemeral-storage" => "Insufficient ephemeral-storage".into(),
                other => format!("Insufficient {other}").into(),
            };
            out.push(Insufficient {
                reason,
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

/// The Filter verdict for the insufficient resources found.
pub fn status_of(insufficient: Vec<Insufficient>) -> Status {
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
        status_of(fits_request(pod, node))
    }
    /// Upstream's `isSchedulableAfterPodEvent` / `isSchedulableAfterNodeChange`, narrowed to
    /// the node that changed: an event helps only if the pod now fits what is free there.
    fn queueing_hint(&self, pod: &PodInfo, event: &ClusterEvent, snap: &Snapshot) -> QueueingHint {
        let fits_on = |name: Option<&str>| {
            name.and_then(|n| snap.node(n))
                .is_some_and(|n| fits_free(pod, n, snap))
        };
        let queue = match event {
            ClusterEvent::NodeAdd(n) => fits_on(Some(&n.name)),
            ClusterEvent::NodeUpdate { old, new } => {
                old.allocatable != new.allocatable && fits_on(Some(&new.name))
            }
            ClusterEvent::AssignedPodDelete(gone) => fits_on(gone.node_name.as_deref()),
            ClusterEvent::AssignedPodUpdate { old, new } => {
                old.requests != new.requests && fits_on(new.node_name.as_deref())
            }
            ClusterEvent::AssignedPodAdd(_) | ClusterEvent::Other(_) => false,
        };
        QueueingHint::queue_if(queue)
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
        assert_eq!(s.reasons, vec!["Insufficient cpu"]);
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
        assert_eq!(s.reasons, vec!["Too many pods", "Insufficient cpu"]);
    }

    #[test]
    fn extended_resources_are_checked() {
        let mut n = sized(node("a"), 4000, 1 << 30, 10);
        n.allocatable.scalar.insert("nvidia.com/gpu".into(), 1);
        let snap = snapshot(vec![n]);
        let mut pod = pod_info("p");
        pod.requests.scalar.insert("nvidia.com/gpu".into(), 2);
        let s = NodeResourcesFit.filter(&CycleState::default(), &pod, &snap.nodes[0], &snap);
        assert_eq!(s.reasons, vec!["Insufficient nvidia.com/gpu"]);
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
