//! The in-tree plugins of the default profile, each in its own module, and their weights.

pub mod balanced_allocation;
pub mod image_locality;
pub mod inter_pod_affinity;
pub mod node_affinity;
pub mod node_name;
pub mod node_ports;
pub mod node_resources_fit;
pub mod node_unschedulable;
pub mod pod_topology_spread;
pub mod taint_toleration;
pub mod volume_binding;

#[cfg(test)]
pub(crate) mod testutil;

use crate::framework::Plugin;

/// The default profile in upstream's MultiPoint order, with upstream's score weights
/// (`default_plugins.go`): TaintToleration 3, NodeAffinity 2, PodTopologySpread 2,
/// InterPodAffinity 2, NodeResourcesFit 1, BalancedAllocation 1, ImageLocality 1.
/// PrioritySort lives in the queue, DefaultPreemption in `preemption`, DefaultBinder in the loop.
pub fn default_plugins() -> Vec<(Box<dyn Plugin>, i64)> {
    vec![
        (Box::new(node_unschedulable::NodeUnschedulable), 0),
        (Box::new(node_name::NodeName), 0),
        (Box::new(taint_toleration::TaintToleration), 3),
        (Box::new(node_affinity::NodeAffinity), 2),
        (Box::new(node_ports::NodePorts), 0),
        (Box::new(node_resources_fit::NodeResourcesFit), 1),
        (Box::new(volume_binding::VolumeBinding), 0),
        (Box::new(pod_topology_spread::PodTopologySpread), 2),
        (Box::new(inter_pod_affinity::InterPodAffinity), 2),
        (Box::new(balanced_allocation::BalancedAllocation), 1),
        (Box::new(image_locality::ImageLocality), 1),
    ]
}
