//! InterPodAffinity: required pod affinity / anti-affinity (the incoming pod's and the existing
//! pods' symmetric anti-affinity) filter; preferred terms and existing pods' terms score.

use std::collections::HashMap;
use std::sync::Arc;

use crate::framework::{ClusterEvent, CycleState, MAX_NODE_SCORE, Plugin, QueueingHint, Status};
use crate::snapshot::{AffinityTerm, MatchCounts, NodeInfo, PodInfo, Snapshot};

pub const NAME: &str = "InterPodAffinity";
pub const ERR_REASON_EXISTING_ANTI_AFFINITY: &str =
    "node(s) didn't satisfy existing pods anti-affinity rules";
pub const ERR_REASON_AFFINITY: &str = "node(s) didn't match pod affinity rules";
pub const ERR_REASON_ANTI_AFFINITY: &str = "node(s) didn't match pod anti-affinity rules";
/// `hardPodAffinityWeight` default.
pub const HARD_POD_AFFINITY_WEIGHT: i64 = 1;

/// Topology value → matching pods, for one topology key.
type ValueCounts = HashMap<String, i64>;

/// What Filter needs, gathered once per cycle in PreFilter.
struct FilterState {
    /// (topology key, counts) of the placed pods' anti-affinity term groups that match the pod.
    existing_anti: Vec<(String, Arc<ValueCounts>)>,
    /// Per required affinity term: pods matching all the pod's affinity terms, per value.
    affinity: Vec<ValueCounts>,
    /// Whether any placed pod matches all the affinity terms (upstream's empty-counts test).
    affinity_matched: bool,
    /// Per required anti-affinity term: the placed pods it selects, per value.
    anti: Vec<Arc<MatchCounts>>,
}

fn matches_all(terms: &[AffinityTerm], pod: &PodInfo, snap: &Snapshot) -> bool {
    !terms.is_empty() && terms.iter().all(|t| t.matches(pod, &snap.namespace_labels))
}

/// Counts for one term through the snapshot's kept-current cache, when the term names its
/// namespaces (a namespace selector depends on namespace labels, which the cache does not
/// follow).
fn term_counts(t: &AffinityTerm, snap: &Snapshot) -> Option<Arc<MatchCounts>> {
    t.namespace_selector
        .is_none()
        .then(|| snap.match_counts(&t.namespaces, &t.selector, &t.topology_key, false))
}

/// Counts for one term by walking every placed pod.
fn term_counts_walk(t: &AffinityTerm, snap: &Snapshot) -> MatchCounts {
    let mut by_value = HashMap::new();
    for node in &snap.nodes {
        let Some(v) = node.labels.get(&t.topology_key) else {
            continue;
        };
        let n = node
            .pods
            .iter()
            .filter(|p| t.matches(p, &snap.namespace_labels))
            .count() as i64;
        if n > 0 {
            *by_value.entry(v.clone()).or_insert(0) += n;
        }
    }
    MatchCounts {
        namespaces: t.namespaces.clone(),
        selector: t.selector.clone(),
        topology_key: t.topology_key.clone(),
        skip_terminating: false,
        by_value,
    }
}

pub struct InterPodAffinity;

impl Plugin for InterPodAffinity {
    fn name(&self) -> &'static str {
        NAME
    }

    fn pre_filter(&self, cx: &mut CycleState, pod: &PodInfo, snap: &Snapshot) -> Status {
        if snap.pods_with_required_anti_affinity == 0
            && pod.required_affinity.is_empty()
            && pod.required_anti_affinity.is_empty()
        {
            return Status::skip();
        }
        // Existing pods' anti-affinity: one match per distinct term, not per pod.
        let existing_anti: Vec<(String, Arc<ValueCounts>)> = snap
            .anti_affinity_groups()
            .filter(|g| g.term.matches(pod, &snap.namespace_labels))
            .map(|g| (g.term.topology_key.clone(), g.by_value.clone()))
            .collect();
        let anti = pod
            .required_anti_affinity
            .iter()
            .map(|t| term_counts(t, snap).unwrap_or_else(|| Arc::new(term_counts_walk(t, snap))))
            .collect();
        // Affinity counts pods matching every term; with one term that is the term's count.
        let affinity: Vec<ValueCounts> = match pod.required_affinity.as_slice() {
            [] => Vec::new(),
            [t] => vec![match term_counts(t, snap) {
                Some(c) => c.by_value.clone(),
                None => term_counts_walk(t, snap).by_value,
            }],
            terms => {
                let mut per_term = vec![ValueCounts::new(); terms.len()];
                for node in &snap.nodes {
                    for p in &node.pods {
                        if matches_all(terms, p, snap) {
                            for (i, t) in terms.iter().enumerate() {
                                if let Some(v) = node.labels.get(&t.topology_key) {
                                    *per_term[i].entry(v.clone()).or_insert(0) += 1;
                                }
                            }
                        }
                    }
                }
                per_term
            }
        };
        let affinity_matched = affinity.iter().any(|m| !m.is_empty());
        if existing_anti.is_empty()
            && pod.required_affinity.is_empty()
            && pod.required_anti_affinity.is_empty()
        {
            return Status::skip();
        }
        cx.write(
            NAME,
            FilterState {
                existing_anti,
                affinity,
                affinity_matched,
                anti,
            },
        );
        Status::success()
    }

    fn filter(&self, cx: &CycleState, pod: &PodInfo, node: &NodeInfo, snap: &Snapshot) -> Status {
        let Some(st) = cx.read::<FilterState>(NAME) else {
            return Status::success();
        };
        // Required affinity: every term's topology must exist and hold a matching pod, unless
        // no pod anywhere matches and the pod matches its own terms (the first of a group).
        let mut pods_exist = true;
        for (t, counts) in pod.required_affinity.iter().zip(&st.affinity) {
            let Some(v) = node.labels.get(&t.topology_key) else {
                return Status::unresolvable(ERR_REASON_AFFINITY);
            };
            if counts.get(v.as_str()).copied().unwrap_or(0) <= 0 {
                pods_exist = false;
            }
        }
        if !pods_exist && (st.affinity_matched || !matches_all(&pod.required_affinity, pod, snap)) {
            return Status::unresolvable(ERR_REASON_AFFINITY);
        }
        for (t, counts) in pod.required_anti_affinity.iter().zip(&st.anti) {
            if let Some(v) = node.labels.get(&t.topology_key)
                && counts.get(v) > 0
            {
                return Status::unschedulable(ERR_REASON_ANTI_AFFINITY);
            }
        }
        for (key, counts) in &st.existing_anti {
            if let Some(v) = node.labels.get(key)
                && counts.get(v.as_str()).is_some_and(|c| *c > 0)
            {
                return Status::unschedulable(ERR_REASON_EXISTING_ANTI_AFFINITY);
            }
        }
        Status::success()
    }

    /// Upstream's `isSchedulableAfterPodChange`: a placed pod matching the pod's affinity
    /// arrived, or one matching its anti-affinity (or whose own anti-affinity excluded the pod)
    /// left; any node arriving or changing labels.
    fn queueing_hint(&self, pod: &PodInfo, event: &ClusterEvent, snap: &Snapshot) -> QueueingHint {
        let ns = &snap.namespace_labels;
        let wanted = |p: &PodInfo| pod.required_affinity.iter().any(|t| t.matches(p, ns));
        let blocking = |p: &PodInfo| {
            pod.required_anti_affinity.iter().any(|t| t.matches(p, ns))
                || p.required_anti_affinity.iter().any(|t| t.matches(pod, ns))
        };
        QueueingHint::queue_if(match event {
            ClusterEvent::AssignedPodAdd(p) => wanted(p),
            ClusterEvent::AssignedPodDelete(p) => blocking(p),
            ClusterEvent::AssignedPodUpdate { old, new } => {
                old.labels != new.labels && (wanted(new) || blocking(old))
            }
            ClusterEvent::NodeAdd(_) => true,
            ClusterEvent::NodeUpdate { old, new } => old.labels != new.labels,
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
        if nodes.is_empty() {
            return Status::skip();
        }
        let has_constraints =
            !pod.preferred_affinity.is_empty() || !pod.preferred_anti_affinity.is_empty();
        // Existing pods count only through required affinity and preferred terms, so a
        // cluster of pods with required anti-affinity alone has nothing to score.
        if !has_constraints && snap.pods_with_scoring_affinity == 0 {
            return Status::skip();
        }
        // topology key → value → score
        let mut topo: HashMap<String, HashMap<String, i64>> = HashMap::new();
        let ns = &snap.namespace_labels;
        let mut add = |node: &NodeInfo, key: &str, by: i64| {
            if let Some(v) = node.labels.get(key) {
                *topo
                    .entry(key.to_string())
                    .or_default()
                    .entry(v.clone())
                    .or_insert(0) += by;
            }
        };
        for node in &snap.nodes {
            if node.labels.is_empty() || (!has_constraints && node.pods_with_affinity == 0) {
                continue;
            }
            for existing in &node.pods {
                if !has_constraints && !existing.has_scoring_affinity_terms() {
                    continue;
                }
                for (w, t) in &pod.preferred_affinity {
                    if t.matches(existing, ns) {
                        add(node, &t.topology_key, i64::from(*w));
                    }
                }
                for (w, t) in &pod.preferred_anti_affinity {
                    if t.matches(existing, ns) {
                        add(node, &t.topology_key, -i64::from(*w));
                    }
                }
                for t in &existing.required_affinity {
                    if t.matches(pod, ns) {
                        add(node, &t.topology_key, HARD_POD_AFFINITY_WEIGHT);
                    }
                }
                for (w, t) in &existing.preferred_affinity {
                    if t.matches(pod, ns) {
                        add(node, &t.topology_key, i64::from(*w));
                    }
                }
                for (w, t) in &existing.preferred_anti_affinity {
                    if t.matches(pod, ns) {
                        add(node, &t.topology_key, -i64::from(*w));
                    }
                }
            }
        }
        if topo.is_empty() {
            return Status::skip();
        }
        cx.write(NAME, topo);
        Status::success()
    }

    fn score(&self, cx: &CycleState, _pod: &PodInfo, node: &NodeInfo, _s: &Snapshot) -> i64 {
        let Some(topo) = cx.read::<HashMap<String, HashMap<String, i64>>>(NAME) else {
            return 0;
        };
        topo.iter()
            .filter_map(|(k, vals)| node.labels.get(k).and_then(|v| vals.get(v)))
            .sum()
    }

    fn normalize_score(&self, _cx: &CycleState, _pod: &PodInfo, scores: &mut [i64]) {
        let min = scores.iter().copied().min().unwrap_or(0);
        let max = scores.iter().copied().max().unwrap_or(0);
        let diff = max - min;
        for s in scores.iter_mut() {
            *s = if diff > 0 {
                (MAX_NODE_SCORE as f64 * ((*s - min) as f64 / diff as f64)) as i64
            } else {
                0
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testutil::*;
    use crate::selector::{Labels, Selector};
    use std::sync::Arc;

    fn term(app: &str, key: &str) -> AffinityTerm {
        let mut l = Labels::new();
        l.insert("app".into(), app.into());
        AffinityTerm {
            selector: Selector::from_map(&l),
            namespaces: vec!["default".into()],
            namespace_selector: None,
            topology_key: key.into(),
        }
    }

    fn host(name: &str, zone: &str) -> NodeInfo {
        labeled(
            node(name),
            &[("kubernetes.io/hostname", name), ("zone", zone)],
        )
    }

    fn place(snap: &mut Snapshot, mut p: PodInfo, node: &str) {
        p.node_name = Some(node.into());
        snap.add_pod(Arc::new(p));
    }

    fn with_app(name: &str, app: &str) -> PodInfo {
        let mut p = pod_info(name);
        p.labels.insert("app".into(), app.into());
        p
    }

    fn verdicts(pod: &PodInfo, snap: &Snapshot) -> Vec<Status> {
        let mut cx = CycleState::default();
        let s = InterPodAffinity.pre_filter(&mut cx, pod, snap);
        snap.nodes
            .iter()
            .map(|n| {
                if s.code == crate::framework::Code::Skip {
                    Status::success()
                } else {
                    InterPodAffinity.filter(&cx, pod, n, snap)
                }
            })
            .collect()
    }

    #[test]
    fn required_anti_affinity_per_host() {
        let mut snap = snapshot(vec![host("a", "z1"), host("b", "z1")]);
        place(&mut snap, with_app("db-0", "db"), "a");
        let mut pod = with_app("db-1", "db");
        pod.required_anti_affinity
            .push(term("db", "kubernetes.io/hostname"));
        let v = verdicts(&pod, &snap);
        assert_eq!(v[0], Status::unschedulable(ERR_REASON_ANTI_AFFINITY));
        assert!(v[1].is_success());
    }

    #[test]
    fn existing_pods_anti_affinity_is_symmetric() {
        let mut snap = snapshot(vec![host("a", "z1"), host("b", "z2")]);
        let mut guard = with_app("guard", "guard");
        guard.required_anti_affinity.push(term("web", "zone"));
        place(&mut snap, guard, "a");
        let v = verdicts(&with_app("w", "web"), &snap);
        assert_eq!(
            v[0],
            Status::unschedulable(ERR_REASON_EXISTING_ANTI_AFFINITY)
        );
        assert!(v[1].is_success());
    }

    #[test]
    fn required_affinity_and_first_pod_exception() {
        let mut snap = snapshot(vec![host("a", "z1"), host("b", "z2")]);
        // First pod of a self-affine group fits anywhere.
        let mut pod = with_app("web-0", "web");
        pod.required_affinity.push(term("web", "zone"));
        assert!(verdicts(&pod, &snap).iter().all(Status::is_success));
        place(&mut snap, with_app("cache", "cache"), "b");
        let mut pod = with_app("web-1", "web");
        pod.required_affinity.push(term("cache", "zone"));
        let v = verdicts(&pod, &snap);
        assert_eq!(v[0], Status::unresolvable(ERR_REASON_AFFINITY));
        assert!(v[1].is_success());
    }

    #[test]
    fn preferred_terms_score_min_max_normalised() {
        let mut snap = snapshot(vec![host("a", "z1"), host("b", "z2"), host("c", "z3")]);
        place(&mut snap, with_app("cache", "cache"), "a");
        place(&mut snap, with_app("noisy", "noisy"), "b");
        let mut pod = with_app("web", "web");
        pod.preferred_affinity.push((10, term("cache", "zone")));
        pod.preferred_anti_affinity
            .push((10, term("noisy", "zone")));
        // raw: a=10, b=-10, c=0 → (s-min)/(max-min)*100.
        assert_eq!(score_all(&InterPodAffinity, &pod, &snap), vec![100, 0, 50]);
    }
}
