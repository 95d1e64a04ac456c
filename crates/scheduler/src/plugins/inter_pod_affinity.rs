//! InterPodAffinity: required pod affinity / anti-affinity (the incoming pod's and the existing
//! pods' symmetric anti-affinity) filter; preferred terms and existing pods' terms score.

use std::collections::HashMap;

use crate::framework::{ClusterEvent, CycleState, MAX_NODE_SCORE, Plugin, QueueingHint, Status};
use crate::snapshot::{AffinityTerm, NodeInfo, PodInfo, Snapshot};

pub const NAME: &str = "InterPodAffinity";
pub const ERR_REASON_EXISTING_ANTI_AFFINITY: &str =
    "node(s) didn't satisfy existing pods anti-affinity rules";
pub const ERR_REASON_AFFINITY: &str = "node(s) didn't match pod affinity rules";
pub const ERR_REASON_ANTI_AFFINITY: &str = "node(s) didn't match pod anti-affinity rules";
/// `hardPodAffinityWeight` default.
pub const HARD_POD_AFFINITY_WEIGHT: i64 = 1;

type Pair = (String, String);

struct FilterState {
    existing_anti: HashMap<Pair, i64>,
    affinity: HashMap<Pair, i64>,
    anti: HashMap<Pair, i64>,
}

fn matches_all(terms: &[AffinityTerm], pod: &PodInfo, snap: &Snapshot) -> bool {
    !terms.is_empty() && terms.iter().all(|t| t.matches(pod, &snap.namespace_labels))
}

fn bump(m: &mut HashMap<Pair, i64>, node: &NodeInfo, key: &str, by: i64) {
    if let Some(v) = node.labels.get(key) {
        *m.entry((key.to_string(), v.clone())).or_insert(0) += by;
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
        let mut existing_anti = HashMap::new();
        if snap.pods_with_required_anti_affinity > 0 {
            for node in snap
                .nodes
                .iter()
                .filter(|n| n.pods_with_required_anti_affinity > 0)
            {
                for p in &node.pods {
                    for t in &p.required_anti_affinity {
                        if t.matches(pod, &snap.namespace_labels) {
                            bump(&mut existing_anti, node, &t.topology_key, 1);
                        }
                    }
                }
            }
        }
        let mut affinity = HashMap::new();
        let mut anti = HashMap::new();
        if !pod.required_affinity.is_empty() || !pod.required_anti_affinity.is_empty() {
            for node in &snap.nodes {
                for p in &node.pods {
                    if matches_all(&pod.required_affinity, p, snap) {
                        for t in &pod.required_affinity {
                            bump(&mut affinity, node, &t.topology_key, 1);
                        }
                    }
                    for t in &pod.required_anti_affinity {
                        if t.matches(p, &snap.namespace_labels) {
                            bump(&mut anti, node, &t.topology_key, 1);
                        }
                    }
                }
            }
        }
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
        for t in &pod.required_affinity {
            let Some(v) = node.labels.get(&t.topology_key) else {
                return Status::unresolvable(ERR_REASON_AFFINITY);
            };
            if st
                .affinity
                .get(&(t.topology_key.clone(), v.clone()))
                .copied()
                .unwrap_or(0)
                <= 0
            {
                pods_exist = false;
            }
        }
        let first_of_group =
            st.affinity.is_empty() && matches_all(&pod.required_affinity, pod, snap);
        if !pods_exist && !first_of_group {
            return Status::unresolvable(ERR_REASON_AFFINITY);
        }
        if !st.anti.is_empty() {
            for t in &pod.required_anti_affinity {
                if let Some(v) = node.labels.get(&t.topology_key)
                    && st
                        .anti
                        .get(&(t.topology_key.clone(), v.clone()))
                        .is_some_and(|c| *c > 0)
                {
                    return Status::unschedulable(ERR_REASON_ANTI_AFFINITY);
                }
            }
        }
        if !st.existing_anti.is_empty() {
            for (k, v) in &node.labels {
                if st
                    .existing_anti
                    .get(&(k.clone(), v.clone()))
                    .is_some_and(|c| *c > 0)
                {
                    return Status::unschedulable(ERR_REASON_EXISTING_ANTI_AFFINITY);
                }
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
        if !has_constraints && snap.pods_with_affinity == 0 {
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
                if !has_constraints && !existing.has_affinity_terms() {
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
