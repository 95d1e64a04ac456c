//! NodeAffinity: nodeSelector and required node affinity filter; preferred terms score.

use crate::framework::{CycleState, MAX_NODE_SCORE, Plugin, Status, default_normalize_score};
use crate::selector::node_terms_match;
use crate::snapshot::{NodeInfo, PodInfo, Snapshot};

pub const NAME: &str = "NodeAffinity";
pub const ERR_REASON: &str = "node(s) didn't match Pod's node affinity/selector";

/// Whether the node satisfies the pod's nodeSelector and required node affinity (upstream's
/// `GetRequiredNodeAffinity(pod).Match(node)`), also used by PodTopologySpread.
pub fn required_matches(pod: &PodInfo, node: &NodeInfo) -> bool {
    if !pod
        .node_selector
        .iter()
        .all(|(k, v)| node.labels.get(k) == Some(v))
    {
        return false;
    }
    match &pod.required_node_terms {
        None => true,
        Some(terms) => node_terms_match(terms, &node.name, &node.labels),
    }
}

pub struct NodeAffinity;

impl Plugin for NodeAffinity {
    fn name(&self) -> &'static str {
        NAME
    }
    fn pre_filter(&self, _cx: &mut CycleState, pod: &PodInfo, _snap: &Snapshot) -> Status {
        if pod.node_selector.is_empty() && pod.required_node_terms.is_none() {
            return Status::skip();
        }
        Status::success()
    }
    fn filter(&self, _cx: &CycleState, pod: &PodInfo, node: &NodeInfo, _s: &Snapshot) -> Status {
        if required_matches(pod, node) {
            Status::success()
        } else {
            Status::unresolvable(ERR_REASON)
        }
    }
    /// A node that now matches and did not before.
    fn queueing_hint(
        &self,
        pod: &PodInfo,
        event: &crate::framework::ClusterEvent,
        _s: &Snapshot,
    ) -> crate::framework::QueueingHint {
        use crate::framework::ClusterEvent;
        crate::framework::QueueingHint::queue_if(match event {
            ClusterEvent::NodeAdd(n) => required_matches(pod, n),
            ClusterEvent::NodeUpdate { old, new } => {
                required_matches(pod, new) && !required_matches(pod, old)
            }
            _ => false,
        })
    }
    fn pre_score(
        &self,
        _cx: &mut CycleState,
        pod: &PodInfo,
        _nodes: &[&NodeInfo],
        _snap: &Snapshot,
    ) -> Status {
        if pod.preferred_node_terms.is_empty() {
            Status::skip()
        } else {
            Status::success()
        }
    }
    fn score(&self, _cx: &CycleState, pod: &PodInfo, node: &NodeInfo, _s: &Snapshot) -> i64 {
        pod.preferred_node_terms
            .iter()
            .filter(|(_, t)| t.matches(&node.name, &node.labels))
            .map(|(w, _)| i64::from(*w))
            .sum()
    }
    fn normalize_score(&self, _cx: &CycleState, _pod: &PodInfo, scores: &mut [i64]) {
        default_normalize_score(MAX_NODE_SCORE, false, scores);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testutil::*;
    use crate::selector::{NodeTerm, Requirement};

    #[test]
    fn node_selector_and_required_terms() {
        let snap = snapshot(vec![
            labeled(node("a"), &[("disk", "ssd"), ("zone", "z1")]),
            labeled(node("b"), &[("disk", "hdd")]),
        ]);
        let mut pod = pod_info("p");
        pod.node_selector.insert("disk".into(), "ssd".into());
        let cx = CycleState::default();
        assert!(
            NodeAffinity
                .filter(&cx, &pod, &snap.nodes[0], &snap)
                .is_success()
        );
        assert_eq!(
            NodeAffinity.filter(&cx, &pod, &snap.nodes[1], &snap),
            Status::unresolvable(ERR_REASON)
        );
        pod.node_selector.clear();
        pod.required_node_terms = Some(vec![NodeTerm {
            labels: vec![Requirement::In("disk".into(), vec!["hdd".into()])],
            fields: vec![],
        }]);
        assert!(
            !NodeAffinity
                .filter(&cx, &pod, &snap.nodes[0], &snap)
                .is_success()
        );
        assert!(
            NodeAffinity
                .filter(&cx, &pod, &snap.nodes[1], &snap)
                .is_success()
        );
    }

    #[test]
    fn preferred_weights_normalised() {
        let snap = snapshot(vec![
            labeled(node("a"), &[("disk", "ssd"), ("zone", "z1")]),
            labeled(node("b"), &[("disk", "ssd")]),
            node("c"),
        ]);
        let mut pod = pod_info("p");
        pod.preferred_node_terms = vec![
            (
                80,
                NodeTerm {
                    labels: vec![Requirement::Exists("disk".into())],
                    fields: vec![],
                },
            ),
            (
                20,
                NodeTerm {
                    labels: vec![Requirement::In("zone".into(), vec!["z1".into()])],
                    fields: vec![],
                },
            ),
        ];
        assert_eq!(score_all(&NodeAffinity, &pod, &snap), vec![100, 80, 0]);
    }
}
