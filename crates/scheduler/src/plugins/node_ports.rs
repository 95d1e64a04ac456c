//! NodePorts: host ports requested by the pod must be free on the node.

use crate::framework::{CycleState, Plugin, Status};
use crate::snapshot::{NodeInfo, PodInfo, Snapshot};

pub const NAME: &str = "NodePorts";
pub const ERR_REASON: &str = "node(s) didn't have free ports for the requested pod ports";

pub struct NodePorts;

impl Plugin for NodePorts {
    fn name(&self) -> &'static str {
        NAME
    }
    fn pre_filter(&self, _cx: &mut CycleState, pod: &PodInfo, _snap: &Snapshot) -> Status {
        if pod.host_ports.is_empty() {
            Status::skip()
        } else {
            Status::success()
        }
    }
    fn filter(&self, _cx: &CycleState, pod: &PodInfo, node: &NodeInfo, _s: &Snapshot) -> Status {
        let conflict = pod
            .host_ports
            .iter()
            .any(|want| node.used_ports.iter().any(|used| used.conflicts(want)));
        if conflict {
            Status::unschedulable(ERR_REASON)
        } else {
            Status::success()
        }
    }
    /// A new node, or a pod leaving that held a conflicting host port.
    fn queueing_hint(
        &self,
        pod: &PodInfo,
        event: &crate::framework::ClusterEvent,
        _s: &Snapshot,
    ) -> crate::framework::QueueingHint {
        use crate::framework::ClusterEvent;
        crate::framework::QueueingHint::queue_if(match event {
            ClusterEvent::NodeAdd(_) => true,
            ClusterEvent::AssignedPodDelete(gone) => gone
                .host_ports
                .iter()
                .any(|used| pod.host_ports.iter().any(|want| used.conflicts(want))),
            _ => false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testutil::*;
    use crate::snapshot::HostPort;
    use std::sync::Arc;

    fn hp(ip: &str, port: i32) -> HostPort {
        HostPort {
            ip: ip.into(),
            protocol: "TCP".into(),
            port,
        }
    }

    #[test]
    fn wildcard_address_conflicts_with_any() {
        let mut snap = snapshot(vec![node("a")]);
        let mut existing = pod_info("e");
        existing.node_name = Some("a".into());
        existing.host_ports.push(hp("127.0.0.1", 8080));
        snap.add_pod(Arc::new(existing));
        let cx = CycleState::default();
        let mut pod = pod_info("p");
        pod.host_ports.push(hp("0.0.0.0", 8080));
        assert_eq!(
            NodePorts.filter(&cx, &pod, &snap.nodes[0], &snap),
            Status::unschedulable(ERR_REASON)
        );
        pod.host_ports = vec![hp("10.0.0.1", 8080)];
        assert!(
            NodePorts
                .filter(&cx, &pod, &snap.nodes[0], &snap)
                .is_success()
        );
        pod.host_ports = vec![hp("0.0.0.0", 8081)];
        assert!(
            NodePorts
                .filter(&cx, &pod, &snap.nodes[0], &snap)
                .is_success()
        );
    }
}
