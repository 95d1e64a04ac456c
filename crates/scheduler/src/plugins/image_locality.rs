//! ImageLocality: favours nodes that already hold the pod's images, scaled by how widely the
//! image is spread (so one node with a popular image is not flooded).

use crate::framework::{CycleState, MAX_NODE_SCORE, Plugin, Status};
use crate::snapshot::{NodeInfo, PodInfo, Snapshot};

pub const NAME: &str = "ImageLocality";
const MB: i64 = 1024 * 1024;
const MIN_THRESHOLD: i64 = 23 * MB;
const MAX_CONTAINER_THRESHOLD: i64 = 1000 * MB;

/// Upstream's `calculatePriority`.
pub fn calculate_priority(sum_scores: i64, num_containers: usize) -> i64 {
    let max_threshold = MAX_CONTAINER_THRESHOLD * num_containers.max(1) as i64;
    let s = sum_scores.clamp(MIN_THRESHOLD, max_threshold.max(MIN_THRESHOLD));
    if max_threshold <= MIN_THRESHOLD {
        return 0;
    }
    MAX_NODE_SCORE * (s - MIN_THRESHOLD) / (max_threshold - MIN_THRESHOLD)
}

pub struct ImageLocality;

impl Plugin for ImageLocality {
    fn name(&self) -> &'static str {
        NAME
    }
    fn pre_score(
        &self,
        _cx: &mut CycleState,
        _pod: &PodInfo,
        _nodes: &[&NodeInfo],
        _snap: &Snapshot,
    ) -> Status {
        Status::success()
    }
    fn score(&self, _cx: &CycleState, pod: &PodInfo, node: &NodeInfo, snap: &Snapshot) -> i64 {
        if node.images.is_empty() {
            return 0;
        }
        let total = snap.len().max(1) as f64;
        let sum: i64 = pod
            .images
            .iter()
            .filter_map(|img| {
                let size = node.images.get(img)?;
                let spread = *snap.image_nodes.get(img).unwrap_or(&0) as f64 / total;
                Some((*size as f64 * spread) as i64)
            })
            .sum();
        calculate_priority(sum, pod.container_count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testutil::*;

    #[test]
    fn scaled_by_spread_and_clamped() {
        let mut a = node("a");
        a.images.insert("nginx:latest".into(), 500 * MB);
        let b = node("b");
        let snap = snapshot(vec![a, b]);
        let mut pod = pod_info("p");
        pod.images = vec!["nginx:latest".into()];
        pod.container_count = 1;
        // 500MB * (1/2) = 250MB → 100 * (250-23)/(1000-23) = 23.
        assert_eq!(
            ImageLocality.score(&CycleState::default(), &pod, &snap.nodes[0], &snap),
            23
        );
        assert_eq!(
            ImageLocality.score(&CycleState::default(), &pod, &snap.nodes[1], &snap),
            0
        );
        assert_eq!(calculate_priority(10 * MB, 1), 0);
        assert_eq!(calculate_priority(5000 * MB, 1), 100);
    }
}
