//! Skiff scheduler: the Kubernetes scheduling framework over an IO-free decision core
//! (`framework`, `plugins`, `snapshot`), the scheduling loop on the `kube` client, and hollow
//! nodes for scale tests.

pub mod bench;
pub mod framework;
pub mod hollow;
pub mod plugins;
pub mod preemption;
pub mod queue;
pub mod resources;
pub mod scheduler;
pub mod selector;
pub mod snapshot;
pub mod volume_prebind;

/// The `spec.schedulerName` this scheduler serves.
pub const DEFAULT_SCHEDULER_NAME: &str = "default-scheduler";

pub use scheduler::{SchedulerError, client_from_kubeconfig, run};
