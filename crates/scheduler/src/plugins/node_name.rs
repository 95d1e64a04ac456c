//! NodeName: a pod that names a node fits only there.

use crate::framework::{CycleState, Plugin, Status};
use crate::snapshot::{NodeInfo, PodInfo, Snapshot};

pub const NAME: &str = "NodeName";
pub const ERR_REASON: &str = "node(s) didn't match the requested node name";

pub struct NodeName;

impl Plugin for NodeName {
    fn name(&self) -> &'static str {
        NAME
    }
    fn pre_filter(&self, _cx: &mut CycleState, pod: &PodInfo, _snap: &Snapshot) -> Status {
        if pod.node_name.is_some() {
            Status::success()
        } else {
            Status::skip()
        }
    }
    fn filter(&self, _cx: &CycleState, pod: &PodInfo, node: &NodeInfo, _s: &Snapshot) -> Status {
        match &pod.node_name {
            Some(n) if *n != node.name => Status::unresolvable(ERR_REASON),
            _ => Status::success(),
        }
    }
    fn queueing_hint(
        &self,
        pod: &PodInfo,
        event: &crate::framework::ClusterEvent,
        _s: &Snapshot,
    ) -> crate::framework::QueueingHint {
        crate::framework::QueueingHint::queue_if(matches!(
            event,
            crate::framework::ClusterEvent::NodeAdd(n) if pod.node_name.as_deref() == Some(n.name.as_str())
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testutil::*;

    #[test]
    fn only_the_named_node_fits() {
        let mut pod = pod_info("p");
        pod.node_name = Some("n1".into());
        let snap = snapshot(vec![node("n1"), node("n2")]);
        let cx = CycleState::default();
        assert!(
            NodeName
                .filter(&cx, &pod, &snap.nodes[0], &snap)
                .is_success()
        );
        assert_eq!(
            NodeName.filter(&cx, &pod, &snap.nodes[1], &snap),
            Status::unresolvable(ERR_REASON)
        );
    }
}
