//! PodTopologySpread: hard constraints (DoNotSchedule) filter by skew; soft ones (ScheduleAnyway,
//! and the system default constraints) score.

use std::collections::HashMap;
use std::sync::Arc;

use crate::framework::{ClusterEvent, CycleState, MAX_NODE_SCORE, Plugin, QueueingHint, Status};
use crate::plugins::node_affinity::required_matches;
use crate::plugins::taint_toleration::untolerated_taint;
use crate::selector::Selector;
use crate::snapshot::{MatchCounts, NodeInfo, PodInfo, Snapshot, SpreadConstraint};

pub const NAME: &str = "PodTopologySpread";
pub const ERR_REASON_CONSTRAINTS_NOT_MATCH: &str =
    "node(s) didn't match pod topology spread constraints";
pub const ERR_REASON_NODE_LABEL_NOT_MATCH: &str =
    "node(s) didn't match pod topology spread constraints (missing required label)";
pub const LABEL_HOSTNAME: &str = "kubernetes.io/hostname";
pub const LABEL_ZONE: &str = "topology.kubernetes.io/zone";

/// The system default constraints (`defaultingType: System`) for a pod without its own, with the
/// selector of the Services/ReplicaSets/StatefulSets it belongs to.
pub fn system_default_constraints(selector: &Selector) -> Vec<SpreadConstraint> {
    [(LABEL_HOSTNAME, 3), (LABEL_ZONE, 5)]
        .into_iter()
        .map(|(key, skew)| SpreadConstraint {
            max_skew: skew,
            topology_key: key.into(),
            hard: false,
            selector: selector.clone(),
            min_domains: None,
            honor_node_affinity: true,
            honor_node_taints: false,
        })
        .collect()
}

/// Matching, non-terminating pods of the namespace on a node (`countPodsMatchSelector`).
fn count_matching(node: &NodeInfo, sel: &Selector, ns: &str) -> i64 {
    if sel.is_empty() {
        return 0;
    }
    node.pods
        .iter()
        .filter(|p| !p.terminating && p.namespace == ns && sel.matches(&p.labels))
        .count() as i64
}

fn has_all_keys(node: &NodeInfo, cs: &[SpreadConstraint]) -> bool {
    cs.iter().all(|c| node.labels.contains_key(&c.topology_key))
}

/// nodeAffinityPolicy / nodeTaintsPolicy.
fn inclusion_matches(c: &SpreadConstraint, pod: &PodInfo, node: &NodeInfo) -> bool {
    if c.honor_node_affinity && !required_matches(pod, node) {
        return false;
    }
    if c.honor_node_taints && untolerated_taint(&node.taints, &pod.tolerations).is_some() {
        return false;
    }
    true
}

/// Per constraint: topology value → matching pods, either the snapshot's kept-current counts
/// or counted for this cycle.
enum Counts {
    Shared(Arc<MatchCounts>),
    Own(HashMap<String, i64>),
}

impl Counts {
    fn get(&self, value: &str) -> i64 {
        match self {
            Counts::Shared(c) => c.get(value),
            Counts::Own(m) => m.get(value).copied().unwrap_or(0),
        }
    }
}

struct FilterState {
    constraints: Vec<SpreadConstraint>,
    counts: Vec<Counts>,
    /// Per constraint: the global minimum (0 when fewer domains than minDomains).
    min: Vec<i64>,
}

struct ScoreState {
    constraints: Vec<SpreadConstraint>,
    counts: Vec<HashMap<String, i64>>,
    weights: Vec<f64>,
    /// Per node passed to PreScore: ignored (missing topology labels).
    ignored: Vec<bool>,
    /// Node name → position in the PreScore list.
    position: HashMap<String, usize>,
}

/// PreFilter from the snapshot's indexes when every node with the topology label counts (one
/// constraint, no node-affinity or taint policy narrowing the nodes): the domains are the
/// label's values and the matching pods are kept counted, so no pod is walked.
fn pre_filter_from_index(
    constraints: &[SpreadConstraint],
    pod: &PodInfo,
    snap: &Snapshot,
) -> Option<FilterState> {
    let [c] = constraints else {
        return None;
    };
    let narrows_by_affinity = c.honor_node_affinity
        && (!pod.node_selector.is_empty() || pod.required_node_terms.is_some());
    if narrows_by_affinity || c.honor_node_taints || c.selector.is_empty() {
        return None;
    }
    let namespaces = [pod.namespace.clone()];
    let counts = snap.match_counts(&namespaces, &c.selector, &c.topology_key, true);
    let domains = snap.label_values(&c.topology_key);
    let num_domains = domains.map_or(0, |d| d.len());
    let min = if c
        .min_domains
        .is_some_and(|d| (num_domains as i64) < i64::from(d))
    {
        0
    } else {
        domains
            .into_iter()
            .flat_map(|d| d.keys())
            .map(|v| counts.get(v))
            .min()
            .unwrap_or(0)
    };
    Some(FilterState {
        constraints: constraints.to_vec(),
        counts: vec![Counts::Shared(counts)],
        min: vec![min],
    })
}

pub struct PodTopologySpread;

impl Plugin for PodTopologySpread {
    fn name(&self) -> &'static str {
        NAME
    }

    fn pre_filter(&self, cx: &mut CycleState, pod: &PodInfo, snap: &Snapshot) -> Status {
        // System defaults are ScheduleAnyway, so only the pod's own hard constraints filter.
        let constraints: Vec<SpreadConstraint> =
            pod.spread.iter().filter(|c| c.hard).cloned().collect();
        if constraints.is_empty() {
            return Status::skip();
        }
        if let Some(st) = pre_filter_from_index(&constraints, pod, snap) {
            cx.write(NAME, st);
            return Status::success();
        }
        let mut counts = vec![HashMap::<String, i64>::new(); constraints.len()];
        for node in &snap.nodes {
            if !has_all_keys(node, &constraints) {
                continue;
            }
            for (i, c) in constraints.iter().enumerate() {
                if !inclusion_matches(c, pod, node) {
                    continue;
                }
                let v = &node.labels[&c.topology_key];
                *counts[i].entry(v.clone()).or_insert(0) +=
                    count_matching(node, &c.selector, &pod.namespace);
            }
        }
        let min = constraints
            .iter()
            .zip(&counts)
            .map(|(c, m)| {
                if c.min_domains
                    .is_some_and(|d| (m.len() as i64) < i64::from(d))
                {
                    0
                } else {
                    m.values().copied().min().unwrap_or(0)
                }
            })
            .collect();
        cx.write(
            NAME,
            FilterState {
                constraints,
                counts: counts.into_iter().map(Counts::Own).collect(),
                min,
            },
        );
        Status::success()
    }

    fn filter(&self, cx: &CycleState, pod: &PodInfo, node: &NodeInfo, _s: &Snapshot) -> Status {
        let Some(st) = cx.read::<FilterState>(NAME) else {
            return Status::success();
        };
        for (i, c) in st.constraints.iter().enumerate() {
            let Some(v) = node.labels.get(&c.topology_key) else {
                return Status::unresolvable(ERR_REASON_NODE_LABEL_NOT_MATCH);
            };
            let self_match = i64::from(c.selector.matches(&pod.labels));
            let matching = st.counts[i].get(v);
            if matching + self_match - st.min[i] > i64::from(c.max_skew) {
                return Status::unschedulable(ERR_REASON_CONSTRAINTS_NOT_MATCH);
            }
        }
        Status::success()
    }

    /// Upstream's `isSchedulableAfterPodChange` / `isSchedulableAfterNodeChange`: a placed pod
    /// the constraints count came or went, or a node with (or changing) their topology labels.
    fn queueing_hint(&self, pod: &PodInfo, event: &ClusterEvent, _s: &Snapshot) -> QueueingHint {
        let counted = |p: &PodInfo| {
            p.namespace == pod.namespace && pod.spread.iter().any(|c| c.selector.matches(&p.labels))
        };
        QueueingHint::queue_if(match event {
            ClusterEvent::AssignedPodAdd(p) | ClusterEvent::AssignedPodDelete(p) => counted(p),
            ClusterEvent::AssignedPodUpdate { old, new } => {
                old.labels != new.labels && (counted(old) || counted(new))
            }
            ClusterEvent::NodeAdd(n) => pod
                .spread
                .iter()
                .any(|c| n.labels.contains_key(&c.topology_key)),
            ClusterEvent::NodeUpdate { old, new } => {
                pod.spread.iter().any(|c| {
                    old.labels.get(&c.topology_key) != new.labels.get(&c.topology_key)
                        || (c.honor_node_taints && old.taints != new.taints)
                }) || (old.labels != new.labels
                    && (!pod.node_selector.is_empty() || pod.required_node_terms.is_some()))
            }
            ClusterEvent::Other(_) => false,
        })
    }

    fn pre_score(
        &self,
        cx: &mut CycleState,
        pod: &PodInfo,
        nodes: &[&NodeInfo],
        snap: &Snapshot,
    ) -> Status {
        let own = !pod.spread.is_empty();
        let constraints: Vec<SpreadConstraint> = if own {
            pod.spread.iter().filter(|c| !c.hard).cloned().collect()
        } else {
            match &pod.default_spread_selector {
                Some(sel) if !sel.is_empty() => system_default_constraints(sel),
                _ => Vec::new(),
            }
        };
        if constraints.is_empty() {
            return Status::skip();
        }
        // System defaults do not require every topology label (nodes without a zone still get
        // hostname spreading); explicit constraints do.
        let require_all = own;
        let mut ignored = vec![false; nodes.len()];
        let mut counts = vec![HashMap::<String, i64>::new(); constraints.len()];
        let mut ignored_count = 0;
        for (k, node) in nodes.iter().enumerate() {
            if require_all && !has_all_keys(node, &constraints) {
                ignored[k] = true;
                ignored_count += 1;
                continue;
            }
            for (i, c) in constraints.iter().enumerate() {
                if c.topology_key == LABEL_HOSTNAME {
                    continue;
                }
                if let Some(v) = node.labels.get(&c.topology_key) {
                    counts[i].entry(v.clone()).or_insert(0);
                }
            }
        }
        let weights = constraints
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let size = if c.topology_key == LABEL_HOSTNAME {
                    nodes.len() - ignored_count
                } else {
                    counts[i].len()
                };
                ((size + 2) as f64).ln()
            })
            .collect();
        for node in &snap.nodes {
            if require_all && !has_all_keys(node, &constraints) {
                continue;
            }
            for (i, c) in constraints.iter().enumerate() {
                if c.topology_key == LABEL_HOSTNAME || !inclusion_matches(c, pod, node) {
                    continue;
                }
                let Some(v) = node.labels.get(&c.topology_key) else {
                    continue;
                };
                if let Some(slot) = counts[i].get_mut(v) {
                    *slot += count_matching(node, &c.selector, &pod.namespace);
                }
            }
        }
        let position = nodes
            .iter()
            .enumerate()
            .map(|(k, n)| (n.name.clone(), k))
            .collect();
        cx.write(
            NAME,
            ScoreState {
                constraints,
                counts,
                weights,
                ignored,
                position,
            },
        );
        Status::success()
    }

    fn score(&self, cx: &CycleState, pod: &PodInfo, node: &NodeInfo, _s: &Snapshot) -> i64 {
        let Some(st) = cx.read::<ScoreState>(NAME) else {
            return 0;
        };
        if st.position.get(&node.name).is_some_and(|&k| st.ignored[k]) {
            return 0;
        }
        let mut score = 0.0;
        for (i, c) in st.constraints.iter().enumerate() {
            let Some(v) = node.labels.get(&c.topology_key) else {
                continue;
            };
            let cnt = if c.topology_key == LABEL_HOSTNAME {
                count_matching(node, &c.selector, &pod.namespace)
            } else {
                st.counts[i].get(v).copied().unwrap_or(0)
            };
            score += cnt as f64 * st.weights[i] + f64::from(c.max_skew - 1);
        }
        score.round() as i64
    }

    fn normalize_score(&self, cx: &CycleState, _pod: &PodInfo, scores: &mut [i64]) {
        let Some(st) = cx.read::<ScoreState>(NAME) else {
            return;
        };
        let live = || {
            scores
                .iter()
                .enumerate()
                .filter(|(k, _)| !st.ignored.get(*k).copied().unwrap_or(false))
                .map(|(_, s)| *s)
        };
        let min = live().min().unwrap_or(0);
        let max = live().max().unwrap_or(0);
        for (k, s) in scores.iter_mut().enumerate() {
            if st.ignored.get(k).copied().unwrap_or(false) {
                *s = 0;
            } else if max == 0 {
                *s = MAX_NODE_SCORE;
            } else {
                *s = MAX_NODE_SCORE * (max + min - *s) / max;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testutil::*;
    use std::sync::Arc;

    fn zoned(name: &str, zone: &str) -> NodeInfo {
        labeled(node(name), &[("zone", zone), (LABEL_HOSTNAME, name)])
    }

    fn place(snap: &mut Snapshot, name: &str, node: &str, app: &str) {
        let mut p = pod_info(name);
        p.node_name = Some(node.into());
        p.labels.insert("app".into(), app.into());
        snap.add_pod(Arc::new(p));
    }

    fn spreading_pod(hard: bool, key: &str, skew: i32) -> PodInfo {
        let mut pod = pod_info("new");
        pod.labels.insert("app".into(), "web".into());
        let mut labels = crate::selector::Labels::new();
        labels.insert("app".into(), "web".into());
        pod.spread.push(SpreadConstraint {
            max_skew: skew,
            topology_key: key.into(),
            hard,
            selector: Selector::from_map(&labels),
            min_domains: None,
            honor_node_affinity: true,
            honor_node_taints: false,
        });
        pod
    }

    #[test]
    fn hard_constraint_filters_by_skew() {
        let mut snap = snapshot(vec![zoned("a", "z1"), zoned("b", "z2"), node("nolabel")]);
        place(&mut snap, "p1", "a", "web");
        place(&mut snap, "p2", "a", "web");
        place(&mut snap, "p3", "b", "web");
        let pod = spreading_pod(true, "zone", 1);
        let mut cx = CycleState::default();
        assert!(
            PodTopologySpread
                .pre_filter(&mut cx, &pod, &snap)
                .is_success()
        );
        // z1 has 2, z2 has 1, min 1: z1 → 2+1-1 = 2 > 1; z2 → 1+1-1 = 1.
        assert_eq!(
            PodTopologySpread.filter(&cx, &pod, &snap.nodes[0], &snap),
            Status::unschedulable(ERR_REASON_CONSTRAINTS_NOT_MATCH)
        );
        assert!(
            PodTopologySpread
                .filter(&cx, &pod, &snap.nodes[1], &snap)
                .is_success()
        );
        assert_eq!(
            PodTopologySpread.filter(&cx, &pod, &snap.nodes[2], &snap),
            Status::unresolvable(ERR_REASON_NODE_LABEL_NOT_MATCH)
        );
    }

    #[test]
    fn min_domains_forces_zero_minimum() {
        let mut snap = snapshot(vec![zoned("a", "z1"), zoned("b", "z2")]);
        place(&mut snap, "p1", "a", "web");
        place(&mut snap, "p2", "b", "web");
        let mut pod = spreading_pod(true, "zone", 1);
        pod.spread[0].min_domains = Some(3);
        let mut cx = CycleState::default();
        PodTopologySpread.pre_filter(&mut cx, &pod, &snap);
        // 1 + 1 - 0 = 2 > 1 on both: a third zone is needed.
        assert!(
            !PodTopologySpread
                .filter(&cx, &pod, &snap.nodes[0], &snap)
                .is_success()
        );
        assert!(
            !PodTopologySpread
                .filter(&cx, &pod, &snap.nodes[1], &snap)
                .is_success()
        );
    }

    #[test]
    fn soft_constraint_scores_emptier_zone_higher() {
        let mut snap = snapshot(vec![zoned("a", "z1"), zoned("b", "z2"), zoned("c", "z2")]);
        place(&mut snap, "p1", "a", "web");
        place(&mut snap, "p2", "a", "web");
        place(&mut snap, "p3", "b", "web");
        let pod = spreading_pod(false, "zone", 1);
        // weight ln(2+2) = 1.386: z1 → round(2.77) = 3, z2 → round(1.39) = 1.
        // normalised: 100*(3+1-s)/3 → a: 33, b and c: 100.
        assert_eq!(
            score_all(&PodTopologySpread, &pod, &snap),
            vec![33, 100, 100]
        );
    }

    #[test]
    fn system_defaults_apply_with_a_selector() {
        let mut snap = snapshot(vec![zoned("a", "z1"), zoned("b", "z2")]);
        place(&mut snap, "p1", "a", "web");
        let mut pod = pod_info("new");
        let mut labels = crate::selector::Labels::new();
        labels.insert("app".into(), "web".into());
        pod.default_spread_selector = Some(Selector::from_map(&labels));
        let scores = score_all(&PodTopologySpread, &pod, &snap);
        assert!(scores[1] > scores[0], "{scores:?}");
        pod.default_spread_selector = None;
        let mut cx = CycleState::default();
        let nodes: Vec<&NodeInfo> = snap.nodes.iter().collect();
        assert_eq!(
            PodTopologySpread.pre_score(&mut cx, &pod, &nodes, &snap),
            Status::skip()
        );
    }
}
