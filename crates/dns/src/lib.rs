//! Cluster DNS served by Skiff: the `kube-dns` Service's answers from watch caches of Services,
//! EndpointSlices and Pods, other names forwarded to the node's resolvers (DESIGN.md §7).

pub mod authority;
pub mod snapshot;
