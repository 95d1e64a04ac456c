//! TaintToleration: NoSchedule/NoExecute taints must be tolerated; untolerated PreferNoSchedule
//! taints lower the score.

use k8s_openapi::api::core::v1::{Taint, Toleration};

use crate::framework::{CycleState, MAX_NODE_SCORE, Plugin, Status, default_normalize_score};
use crate::snapshot::{NodeInfo, PodInfo, Snapshot};

pub const NAME: &str = "TaintToleration";

/// Upstream's `Toleration.ToleratesTaint`.
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if let Some(e) = t.effect.as_deref().filter(|e| !e.is_empty())
        && e != taint.effect
    {
        return false;
    }
    if let Some(k) = t.key.as_deref().filter(|k| !k.is_empty())
        && k != taint.key
    {
        return false;
    }
    match t.operator.as_deref() {
        None | Some("") | Some("Equal") => {
            t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
        Some("Exists") => true,
        _ => false,
    }
}

/// The first NoSchedule/NoExecute taint no toleration covers, as upstream's
/// `FindMatchingUntoleratedTaint` with the DoNotSchedule filter.
pub fn untolerated_taint<'a>(taints: &'a [Taint], tolerations: &[Toleration]) -> Option<&'a Taint> {
    taints.iter().find(|taint| {
        (taint.effect == "NoSchedule" || taint.effect == "NoExecute")
            && !tolerations.iter().any(|t| tolerates(t, taint))
    })
}

pub struct TaintToleration;

impl Plugin for TaintToleration {
    fn name(&self) -> &'static str {
        NAME
    }
    fn pre_filter(&self, _cx: &mut CycleState, _pod: &PodInfo, _snap: &Snapshot) -> Status {
        Status::success()
    }
    fn filter(&self, _cx: &CycleState, pod: &PodInfo, node: &NodeInfo, _s: &Snapshot) -> Status {
        match untolerated_taint(&node.taints, &pod.tolerations) {
            None => Status::success(),
            Some(t) => Status::unresolvable(format!(
                "node(s) had untolerated taint {{{}: {}}}",
                t.key,
                t.value.as_deref().unwrap_or("")
            )),
        }
    }
    /// A node arriving, or changing its taints, that the pod now tolerates.
    fn queueing_hint(
        &self,
        pod: &PodInfo,
        event: &crate::framework::ClusterEvent,
        _s: &Snapshot,
    ) -> crate::framework::QueueingHint {
        use crate::framework::ClusterEvent;
        crate::framework::QueueingHint::queue_if(match event {
            ClusterEvent::NodeAdd(n) => untolerated_taint(&n.taints, &pod.tolerations).is_none(),
            ClusterEvent::NodeUpdate { old, new } => {
                old.taints != new.taints
                    && untolerated_taint(&new.taints, &pod.tolerations).is_none()
            }
            _ => false,
        })
    }
    fn pre_score(
        &self,
        cx: &mut CycleState,
        pod: &PodInfo,
        _nodes: &[&NodeInfo],
        _snap: &Snapshot,
    ) -> Status {
        // Only tolerations that apply to PreferNoSchedule count for scoring.
        let prefer: Vec<Toleration> = pod
            .tolerations
            .iter()
            .filter(|t| {
                matches!(
                    t.effect.as_deref(),
                    None | Some("") | Some("PreferNoSchedule")
                )
            })
            .cloned()
            .collect();
        cx.write(NAME, prefer);
        Status::success()
    }
    fn score(&self, cx: &CycleState, _pod: &PodInfo, node: &NodeInfo, _s: &Snapshot) -> i64 {
        let empty = Vec::new();
        let tolerations = cx.read::<Vec<Toleration>>(NAME).unwrap_or(&empty);
        node.taints
            .iter()
            .filter(|taint| {
                taint.effect == "PreferNoSchedule"
                    && !tolerations.iter().any(|t| tolerates(t, taint))
            })
            .count() as i64
    }
    fn normalize_score(&self, _cx: &CycleState, _pod: &PodInfo, scores: &mut [i64]) {
        default_normalize_score(MAX_NODE_SCORE, true, scores);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testutil::*;

    fn taint(k: &str, v: &str, e: &str) -> Taint {
        Taint {
            key: k.into(),
            value: Some(v.into()),
            effect: e.into(),
            ..Default::default()
        }
    }

    #[test]
    fn toleration_semantics() {
        let t = taint("dedicated", "gpu", "NoSchedule");
        let eq = Toleration {
            key: Some("dedicated".into()),
            value: Some("gpu".into()),
            effect: Some("NoSchedule".into()),
            ..Default::default()
        };
        assert!(tolerates(&eq, &t));
        let wrong_value = Toleration {
            value: Some("cpu".into()),
            ..eq.clone()
        };
        assert!(!tolerates(&wrong_value, &t));
        let exists_all = Toleration {
            operator: Some("Exists".into()),
            ..Default::default()
        };
        assert!(tolerates(&exists_all, &t));
        let other_effect = Toleration {
            effect: Some("NoExecute".into()),
            ..eq
        };
        assert!(!tolerates(&other_effect, &t));
    }

    #[test]
    fn filter_message_names_the_taint() {
        let mut n = node("n1");
        n.taints.push(taint("dedicated", "gpu", "NoSchedule"));
        let snap = snapshot(vec![n]);
        let s = TaintToleration.filter(
            &CycleState::default(),
            &pod_info("p"),
            &snap.nodes[0],
            &snap,
        );
        assert_eq!(
            s,
            Status::unresolvable("node(s) had untolerated taint {dedicated: gpu}")
        );
    }

    #[test]
    fn prefer_no_schedule_scores_reversed() {
        let mut a = node("a");
        a.taints.push(taint("x", "1", "PreferNoSchedule"));
        a.taints.push(taint("y", "1", "PreferNoSchedule"));
        let mut b = node("b");
        b.taints.push(taint("x", "1", "PreferNoSchedule"));
        let c = node("c");
        let snap = snapshot(vec![a, b, c]);
        let pod = pod_info("p");
        assert_eq!(score_all(&TaintToleration, &pod, &snap), vec![0, 50, 100]);
    }
}
