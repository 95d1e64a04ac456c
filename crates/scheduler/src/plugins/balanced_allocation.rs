//! NodeResourcesBalancedAllocation: favours nodes whose cpu and memory fractions stay close.

use crate::framework::{CycleState, MAX_NODE_SCORE, Plugin, Status};
use crate::snapshot::{NodeInfo, PodInfo, Snapshot};

pub const NAME: &str = "NodeResourcesBalancedAllocation";

/// Upstream's `balancedResourceScorer`: `(1 - std) * 100` over the requested fractions.
pub fn balanced_score(requested: &[i64], allocatable: &[i64]) -> i64 {
    let fractions: Vec<f64> = requested
        .iter()
        .zip(allocatable)
        .filter(|(_, a)| **a != 0)
        .map(|(r, a)| (*r as f64 / *a as f64).min(1.0))
        .collect();
    let std = match fractions.len() {
        0 | 1 => 0.0,
        2 => ((fractions[0] - fractions[1]) / 2.0).abs(),
        n => {
            let mean = fractions.iter().sum::<f64>() / n as f64;
            (fractions
                .iter()
                .map(|f| (f - mean) * (f - mean))
                .sum::<f64>()
                / n as f64)
                .sqrt()
        }
    };
    ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
}

pub struct BalancedAllocation;

impl Plugin for BalancedAllocation {
    fn name(&self) -> &'static str {
        NAME
    }
    fn pre_score(
        &self,
        _cx: &mut CycleState,
        pod: &PodInfo,
        _nodes: &[&NodeInfo],
        _snap: &Snapshot,
    ) -> Status {
        // Best-effort pods are not scored, so they do not pile onto one node (kubernetes#129138).
        if pod.requests.milli_cpu == 0 && pod.requests.memory == 0 {
            Status::skip()
        } else {
            Status::success()
        }
    }
    /// Uses actual requests (not the non-zero defaults), as upstream's `useRequested: true`.
    fn score(&self, _cx: &CycleState, pod: &PodInfo, node: &NodeInfo, _s: &Snapshot) -> i64 {
        balanced_score(
            &[
                node.requested.milli_cpu + pod.requests.milli_cpu,
                node.requested.memory + pod.requests.memory,
            ],
            &[node.allocatable.milli_cpu, node.allocatable.memory],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_resources_use_half_the_difference() {
        // cpu 3000/4000 = 0.75, memory 5000/10000 = 0.5 → std 0.125 → 87.
        assert_eq!(balanced_score(&[3000, 5000], &[4000, 10000]), 87);
        assert_eq!(balanced_score(&[1000, 2500], &[4000, 10000]), 100);
        // Fractions are capped at 1.
        assert_eq!(balanced_score(&[8000, 0], &[4000, 10000]), 50);
    }

    #[test]
    fn three_resources_use_population_std() {
        // 0.2, 0.5, 0.8 → mean 0.5, std sqrt(0.06) = 0.2449 → 75.
        assert_eq!(balanced_score(&[2, 5, 8], &[10, 10, 10]), 75);
    }
}
