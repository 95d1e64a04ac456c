//! NodeUnschedulable: cordoned nodes take only pods tolerating `node.kubernetes.io/unschedulable`.

use k8s_openapi::api::core::v1::Taint;

use crate::framework::{ClusterEvent, CycleState, Plugin, QueueingHint, Status};
use crate::plugins::taint_toleration::tolerates;
use crate::snapshot::{NodeInfo, PodInfo, Snapshot};

pub const NAME: &str = "NodeUnschedulable";
pub const ERR_REASON: &str = "node(s) were unschedulable";
pub const TAINT_KEY: &str = "node.kubernetes.io/unschedulable";

pub struct NodeUnschedulable;

impl Plugin for NodeUnschedulable {
    fn name(&self) -> &'static str {
        NAME
    }
    fn pre_filter(&self, _cx: &mut CycleState, _pod: &PodInfo, _snap: &Snapshot) -> Status {
        Status::success()
    }
    fn filter(&self, _cx: &CycleState, pod: &PodInfo, node: &NodeInfo, _s: &Snapshot) -> Status {
        if !node.unschedulable {
            return Status::success();
        }
        let taint = Taint {
            key: TAINT_KEY.into(),
            effect: "NoSchedule".into(),
            ..Default::default()
        };
        if pod.tolerations.iter().any(|t| tolerates(t, &taint)) {
            Status::success()
        } else {
            Status::unresolvable(ERR_REASON)
        }
    }
    /// Only a schedulable node arriving, or a node being uncordoned, helps.
    fn queueing_hint(&self, _pod: &PodInfo, event: &ClusterEvent, _s: &Snapshot) -> QueueingHint {
        QueueingHint::queue_if(match event {
            ClusterEvent::NodeAdd(n) => !n.unschedulable,
            ClusterEvent::NodeUpdate { old, new } => old.unschedulable && !new.unschedulable,
            _ => false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testutil::*;
    use k8s_openapi::api::core::v1::Toleration;

    #[test]
    fn cordoned_node_rejects_unless_tolerated() {
        let mut n = node("n1");
        n.unschedulable = true;
        let snap = snapshot(vec![n]);
        let cx = CycleState::default();
        let mut pod = pod_info("p");
        assert_eq!(
            NodeUnschedulable.filter(&cx, &pod, &snap.nodes[0], &snap),
            Status::unresolvable(ERR_REASON)
        );
        pod.tolerations.push(Toleration {
            key: Some(TAINT_KEY.into()),
            operator: Some("Exists".into()),
            effect: Some("NoSchedule".into()),
            ..Default::default()
        });
        assert!(
            NodeUnschedulable
                .filter(&cx, &pod, &snap.nodes[0], &snap)
                .is_success()
        );
    }
}
