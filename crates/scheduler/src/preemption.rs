//! DefaultPreemption (the PostFilter): when a pod fits nowhere, find the node where evicting the
//! fewest, least important lower-priority pods makes it fit, respecting PodDisruptionBudgets.

use std::sync::Arc;

use crate::framework::{Code, CycleState, FitError, Framework, Status};
use crate::plugins::node_resources_fit::{fits_request_used, fits_used, nominated_load, status_of};
use crate::snapshot::{NodeInfo, PodInfo, Snapshot};

pub const NAME: &str = "DefaultPreemption";
pub const NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";
/// Upstream's DefaultPreemptionArgs defaults.
const MIN_CANDIDATE_NODES_PERCENTAGE: usize = 10;
const MIN_CANDIDATE_NODES_ABSOLUTE: usize = 100;
/// Why a pod whose victims are still terminating does not preempt again.
pub const WAITING_FOR_VICTIMS: &str = "not eligible due to a terminating pod on the nominated node";
pub const NO_VICTIMS: &str = "No preemption victims found for incoming pod";

/// A PodDisruptionBudget as preemption needs it.
#[derive(Debug, Clone)]
pub struct Pdb {
    pub namespace: String,
    pub selector: crate::selector::Selector,
    pub disruptions_allowed: i32,
}

/// A node where preemption would make the pod fit, with the pods to evict.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub node: String,
    pub victims: Vec<Arc<PodInfo>>,
    pub pdb_violations: usize,
}

/// The PostFilter result.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Evict `victims` and nominate `node` for the pod.
    Nominate(Candidate),
    /// Preemption cannot help; the message goes after the filter reasons (`preemption: …`).
    Unschedulable(String),
}

fn importance_order(a: &Arc<PodInfo>, b: &Arc<PodInfo>) -> std::cmp::Ordering {
    // More important first: higher priority, then earlier start.
    b.priority
        .cmp(&a.priority)
        .then_with(|| a.start_time.cmp(&b.start_time))
}

fn violates(pdbs: &mut [Pdb], pod: &PodInfo) -> bool {
    let mut violating = false;
    for pdb in pdbs.iter_mut() {
        if pdb.namespace != pod.namespace || pdb.selector.is_empty() {
            continue;
        }
        if pdb.selector.matches(&pod.labels) {
            pdb.disruptions_allowed -= 1;
            if pdb.disruptions_allowed < 0 {
                violating = true;
            }
        }
    }
    violating
}

fn fits(
    fw: &Framework,
    active: &[usize],
    cx: &CycleState,
    pod: &PodInfo,
    node: &NodeInfo,
    snap: &Snapshot,
) -> Status {
    fw.run_filter(active, cx, pod, node, snap)
}

/// Upstream's `SelectVictimsOnNode`: remove every lower-priority pod; if the pod then fits, add
/// them back most important first (PDB-violating ones first), keeping only what must go.
fn select_victims(
    fw: &Framework,
    active: &[usize],
    cx: &CycleState,
    pod: &PodInfo,
    node: &NodeInfo,
    snap: &Snapshot,
    pdbs: &[Pdb],
) -> Result<Candidate, Status> {
    let mut trial = node.clone();
    let mut lower: Vec<Arc<PodInfo>> = node
        .pods
        .iter()
        .filter(|p| p.priority < pod.priority)
        .cloned()
        .collect();
    if lower.is_empty() {
        return Err(Status::unresolvable(NO_VICTIMS));
    }
    for p in &lower {
        trial.remove_pod(&p.uid);
    }
    let s = fits(fw, active, cx, pod, &trial, snap);
    if !s.is_success() {
        return Err(s);
    }
    lower.sort_by(importance_order);
    let mut budget = pdbs.to_vec();
    let (violating, other): (Vec<_>, Vec<_>) =
        lower.into_iter().partition(|p| violates(&mut budget, p));
    let mut victims = Vec::new();
    let mut pdb_violations = 0;
    for (group, is_violating) in [(violating, true), (other, false)] {
        for p in group {
            trial.add_pod(p.clone());
            if !fits(fw, active, cx, pod, &trial, snap).is_success() {
                trial.remove_pod(&p.uid);
                if is_violating {
                    pdb_violations += 1;
                }
                victims.push(p);
            }
        }
    }
    victims.sort_by(importance_order);
    Ok(Candidate {
        node: node.name.clone(),
        victims,
        pdb_violations,
    })
}

/// `select_victims` when NodeResourcesFit is the only filter that looks at the node's pods:
/// the same removal and reprieve, done on the request sums instead of a copy of the node, so
/// the dry-run over hundreds of nodes stays cheap.
fn select_victims_by_resources(
    pod: &PodInfo,
    node: &NodeInfo,
    snap: &Snapshot,
    pdbs: &[Pdb],
) -> Result<Candidate, Status> {
    let mut lower: Vec<Arc<PodInfo>> = node
        .pods
        .iter()
        .filter(|p| p.priority < pod.priority)
        .cloned()
        .collect();
    if lower.is_empty() {
        return Err(Status::unresolvable(NO_VICTIMS));
    }
    // Nominated pods of at least the pod's priority hold their room, as in Filter.
    let (extra, extra_pods) = nominated_load(pod, &node.name, snap);
    let mut used = node.requested.clone();
    used.add(&extra);
    for p in &lower {
        used.sub(&p.requests);
    }
    let mut pods = (node.pods.len() + extra_pods as usize - lower.len()) as i64;
    if !fits_used(pod, &node.allocatable, &used, pods) {
        return Err(status_of(fits_request_used(
            pod,
            &node.allocatable,
            &used,
            pods,
        )));
    }
    lower.sort_by(importance_order);
    let mut budget = pdbs.to_vec();
    let (violating, other): (Vec<_>, Vec<_>) =
        lower.into_iter().partition(|p| violates(&mut budget, p));
    let mut victims = Vec::new();
    let mut pdb_violations = 0;
    for (group, is_violating) in [(violating, true), (other, false)] {
        for p in group {
            used.add(&p.requests);
            pods += 1;
            if !fits_used(pod, &node.allocatable, &used, pods) {
                used.sub(&p.requests);
                pods -= 1;
                if is_violating {
                    pdb_violations += 1;
                }
                victims.push(p);
            }
        }
    }
    victims.sort_by(importance_order);
    Ok(Candidate {
        node: node.name.clone(),
        victims,
        pdb_violations,
    })
}

/// Upstream's `pickOneNodeForPreemption`: fewest PDB violations, then the lowest highest-victim
/// priority, the lowest priority sum, the fewest victims, the latest start of the top victims.
fn pick(candidates: Vec<Candidate>) -> Option<Candidate> {
    // Each candidate's key is computed once: hundreds of candidates are compared per pod.
    let key = |c: &Candidate| {
        let top = c.victims.first().map_or(i32::MIN, |v| v.priority);
        let sum: i64 = c
            .victims
            .iter()
            .map(|v| i64::from(v.priority) + i64::from(i32::MAX) + 1)
            .sum();
        let earliest_top_start = c
            .victims
            .iter()
            .filter(|v| v.priority == top)
            .map(|v| v.start_time.as_str())
            .min()
            .unwrap_or_default()
            .to_string();
        (
            c.pdb_violations,
            top,
            sum,
            c.victims.len(),
            std::cmp::Reverse(earliest_top_start),
        )
    };
    let best = candidates
        .iter()
        .enumerate()
        .map(|(i, c)| (key(c), i))
        .min()
        .map(|(_, i)| i)?;
    candidates.into_iter().nth(best)
}

/// Runs DefaultPreemption for `pod` after `fit` (the failed cycle's diagnosis).
pub fn preempt(
    fw: &Framework,
    snap: &Snapshot,
    pod: &PodInfo,
    fit: &FitError,
    pdbs: &[Pdb],
) -> Outcome {
    if pod.preempt_never {
        return Outcome::Unschedulable(
            "preemption: not eligible due to preemptionPolicy=Never.".into(),
        );
    }
    let status_at = |i: usize| {
        fit.node_statuses
            .get(i)
            .and_then(Option::as_ref)
            .or(fit.absent_status.as_ref())
    };
    if let Some(nominated) = &pod.nominated_node_name
        && snap
            .node_index(nominated)
            .and_then(status_at)
            .is_none_or(|s| s.code != Code::UnschedulableAndUnresolvable)
        && let Some(node) = snap.node(nominated)
        && node
            .pods
            .iter()
            .any(|p| p.terminating && p.priority < pod.priority)
    {
        // Victims of an earlier preemption are still terminating: wait for them.
        return Outcome::Unschedulable(format!("preemption: {WAITING_FOR_VICTIMS}."));
    }
    let mut cx = CycleState::default();
    let Ok(active) = fw.run_pre_filter(&mut cx, pod, snap) else {
        return not_helpful(snap.len(), Default::default());
    };
    // Node-only filters' rejections are unresolvable, so such nodes are never candidates.
    let by_resources = fw.filters_by_resources_only(&active);
    let mut statuses = Vec::new();
    let mut candidates = Vec::new();
    // Upstream's GetOffsetAndNumCandidates: dry-run from an offset until 10% of the nodes (at
    // least 100) produced candidates, instead of every node of a large cluster.
    let n = snap.nodes.len();
    let wanted = (n * MIN_CANDIDATE_NODES_PERCENTAGE / 100)
        .max(MIN_CANDIDATE_NODES_ABSOLUTE)
        .min(n);
    let offset = if n == 0 {
        0
    } else {
        pod.uid.bytes().fold(0usize, |h, b| {
            h.wrapping_mul(31).wrapping_add(usize::from(b))
        }) % n
    };
    for k in 0..n {
        if candidates.len() >= wanted {
            break;
        }
        let i = (offset + k) % n;
        let node = &snap.nodes[i];
        let Some(s) = status_at(i) else {
            continue;
        };
        if s.code != Code::Unschedulable {
            continue;
        }
        let selected = if by_resources {
            select_victims_by_resources(pod, node, snap, pdbs)
        } else {
            select_victims(fw, &active, &cx, pod, node, snap, pdbs)
        };
        match selected {
            Ok(c) if !c.victims.is_empty() => candidates.push(c),
            Ok(_) => {}
            Err(s) => statuses.push((i, s)),
        }
    }
    match pick(candidates) {
        Some(c) => Outcome::Nominate(c),
        None => not_helpful(snap.len(), statuses),
    }
}

fn not_helpful(n: usize, statuses: Vec<(usize, Status)>) -> Outcome {
    let mut node_statuses = vec![None; n];
    for (i, s) in statuses {
        node_statuses[i] = Some(s);
    }
    let e = FitError {
        num_all_nodes: n,
        node_statuses,
        absent_status: Some(Status::unresolvable(NOT_HELPFUL)),
        ..Default::default()
    };
    Outcome::Unschedulable(format!("preemption: {}", e.message()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::ScheduleError;
    use crate::plugins::testutil::*;

    fn placed(name: &str, node: &str, prio: i32, cpu: i64) -> Arc<PodInfo> {
        let mut p = pod_info(name);
        p.node_name = Some(node.into());
        p.priority = prio;
        p.requests.milli_cpu = cpu;
        Arc::new(p)
    }

    fn fail(fw: &mut Framework, snap: &Snapshot, pod: &PodInfo) -> FitError {
        match fw.schedule(snap, pod) {
            Err(ScheduleError::Unfit(e)) => *e,
            other => panic!("expected unfit, got {other:?}"),
        }
    }

    #[test]
    fn evicts_the_fewest_lowest_priority_pods() {
        let mut snap = snapshot(vec![
            sized(node("a"), 2000, 1 << 30, 110),
            sized(node("b"), 2000, 1 << 30, 110),
        ]);
        snap.add_pod(placed("a1", "a", 10, 1000));
        snap.add_pod(placed("a2", "a", 10, 1000));
        snap.add_pod(placed("b1", "b", 5, 2000));
        let mut fw = Framework::with_defaults();
        let mut pod = pod_info("vip");
        pod.priority = 100;
        pod.requests.milli_cpu = 1500;
        let fit = fail(&mut fw, &snap, &pod);
        assert_eq!(
            fit.message(),
            "0/2 nodes are available: 2 Insufficient cpu."
        );
        match preempt(&fw, &snap, &pod, &fit, &[]) {
            Outcome::Nominate(c) => {
                // Node b: one victim of priority 5 beats node a's two of priority 10.
                assert_eq!(c.node, "b");
                assert_eq!(c.victims.len(), 1);
                assert_eq!(c.victims[0].name, "b1");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn equal_priority_is_not_helpful() {
        let mut snap = snapshot(vec![sized(node("a"), 1000, 1 << 30, 110)]);
        snap.add_pod(placed("a1", "a", 0, 1000));
        let mut fw = Framework::with_defaults();
        let mut pod = pod_info("p");
        pod.requests.milli_cpu = 500;
        let mut fit = fail(&mut fw, &snap, &pod);
        let Outcome::Unschedulable(msg) = preempt(&fw, &snap, &pod, &fit, &[]) else {
            panic!("expected no preemption");
        };
        fit.post_filter_msg = Some(msg);
        assert_eq!(
            fit.message(),
            "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are \
             available: 1 No preemption victims found for incoming pod.."
        );
    }

    #[test]
    fn pdb_protected_pods_are_avoided() {
        let mut snap = snapshot(vec![
            sized(node("a"), 1000, 1 << 30, 110),
            sized(node("b"), 1000, 1 << 30, 110),
        ]);
        let mut guarded = (*placed("a1", "a", 0, 1000)).clone();
        guarded.labels.insert("app".into(), "db".into());
        snap.add_pod(Arc::new(guarded));
        snap.add_pod(placed("b1", "b", 0, 1000));
        let mut fw = Framework::with_defaults();
        let mut pod = pod_info("p");
        pod.priority = 1000;
        pod.requests.milli_cpu = 1000;
        let fit = fail(&mut fw, &snap, &pod);
        let mut l = crate::selector::Labels::new();
        l.insert("app".into(), "db".into());
        let pdbs = vec![Pdb {
            namespace: "default".into(),
            selector: crate::selector::Selector::from_map(&l),
            disruptions_allowed: 0,
        }];
        let Outcome::Nominate(c) = preempt(&fw, &snap, &pod, &fit, &pdbs) else {
            panic!("expected a candidate");
        };
        assert_eq!(c.node, "b");
        assert_eq!(c.pdb_violations, 0);
    }
}
