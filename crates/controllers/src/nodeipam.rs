//! Node IPAM: every node without `spec.podCIDR` gets the next free block of the cluster CIDR
//! (`spec.podCIDR` and `spec.podCIDRs`), released when the node is deleted, as upstream's
//! range allocator (pkg/controller/nodeipam/ipam/range_allocator.go).

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::runtime::reflector::{ObjectRef, Store};
use serde_json::json;

use crate::control::{self, object_reference};
use crate::queue::Key;
use crate::writes::{Kind, Writes};

/// Name in logs and events, as upstream's component.
pub const NAME: &str = "node-ipam-controller";

/// Errors of IPAM.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The cluster CIDR or mask size is unusable.
    #[error("invalid cluster CIDR {cidr:?} with node mask /{mask}: {why}")]
    Config {
        /// The CIDR as given.
        cidr: String,
        /// Node mask size.
        mask: u8,
        /// Why.
        why: &'static str,
    },
    /// Every block of the cluster CIDR is taken.
    #[error(
        "failed to allocate cidr for node {0}: CIDR allocation failed; there are no remaining CIDRs left to allocate in the accepted range"
    )]
    Exhausted(String),
    /// A write failed; the sync is retried with backoff.
    #[error(transparent)]
    Control(#[from] control::Error),
}

/// The blocks of a cluster CIDR and which node holds each (upstream's CidrSet).
#[derive(Debug)]
pub struct CidrSet {
    base: u32,
    mask: u8,
    count: u32,
    state: Mutex<SetState>,
}

#[derive(Debug, Default)]
struct SetState {
    used: HashMap<u32, String>,
    // Allocation continues after the last block handed out, as upstream's nextCandidate.
    next: u32,
}

impl CidrSet {
    /// Parse `10.244.0.0/16` with node blocks of `/mask`.
    pub fn new(cidr: &str, mask: u8) -> Result<CidrSet, Error> {
        let err = |why| Error::Config {
            cidr: cidr.to_string(),
            mask,
            why,
        };
        let (ip, len) = cidr.split_once('/').ok_or_else(|| err("not ip/len"))?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| err("not an IPv4 address"))?;
        let len: u8 = len.parse().map_err(|_| err("bad prefix length"))?;
        if len > 32 || mask > 32 || mask < len {
            return Err(err("the node mask must be at least the cluster prefix"));
        }
        if mask - len > 24 {
            return Err(err("too many node blocks (more than 2^24)"));
        }
        let net_mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
        Ok(CidrSet {
            base: u32::from(ip) & net_mask,
            mask,
            count: 1u32 << (mask - len),
            state: Mutex::new(SetState::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SetState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn block(&self, i: u32) -> String {
        let size = if self.mask == 32 {
            1
        } else {
            1u64 << (32 - self.mask)
        };
        let ip = Ipv4Addr::from((self.base as u64 + i as u64 * size) as u32);
        format!("{ip}/{}", self.mask)
    }

    fn index_of(&self, cidr: &str) -> Option<u32> {
        let (ip, len) = cidr.split_once('/')?;
        let ip: Ipv4Addr = ip.parse().ok()?;
        if len.parse::<u8>().ok()? != self.mask {
            return None;
        }
        let off = u32::from(ip).checked_sub(self.base)?;
        let i = if self.mask == 32 {
            off
        } else {
            off >> (32 - self.mask)
        };
        (i < self.count).then_some(i)
    }

    /// Record that `node` holds `cidr` (seen on a node); blocks outside the set are ignored.
    pub fn occupy(&self, cidr: &str, node: &str) {
        if let Some(i) = self.index_of(cidr) {
            self.lock().used.insert(i, node.to_string());
        }
    }

    /// Free `cidr` if `node` holds it.
    pub fn release(&self, cidr: &str, node: &str) {
        if let Some(i) = self.index_of(cidr) {
            let mut s = self.lock();
            if s.used.get(&i).map(String::as_str) == Some(node) {
                s.used.remove(&i);
            }
        }
    }

    /// The next free block for `node`, or `None` when every block is taken.
    pub fn allocate(&self, node: &str) -> Option<String> {
        let mut s = self.lock();
        if let Some((i, _)) = s.used.iter().find(|(_, n)| n.as_str() == node) {
            return Some(self.block(*i));
        }
        for step in 0..self.count {
            let i = (s.next + step) % self.count;
            if let std::collections::hash_map::Entry::Vacant(slot) = s.used.entry(i) {
                slot.insert(node.to_string());
                s.next = (i + 1) % self.count;
                return Some(self.block(i));
            }
        }
        None
    }
}

/// Everything an IPAM sync needs.
pub struct NodeIpamController<W> {
    /// Side effects.
    pub writes: Arc<W>,
    /// Node cache (shared).
    pub nodes: Store<Node>,
    /// The allocator.
    pub cidrs: Arc<CidrSet>,
}

/// The node's pod CIDRs.
pub fn pod_cidrs(node: &Node) -> Vec<String> {
    let spec = node.spec.as_ref();
    let mut out: Vec<String> = spec.and_then(|s| s.pod_cidrs.clone()).unwrap_or_default();
    if let Some(c) = spec.and_then(|s| s.pod_cidr.clone())
        && !out.contains(&c)
    {
        out.push(c);
    }
    out
}

/// Keep the allocator in step with what nodes hold (call from the node informer's handler).
pub fn observe(cidrs: &CidrSet, old: Option<&Node>, new: Option<&Node>) {
    match (old, new) {
        (Some(old), None) => {
            let name = old.metadata.name.as_deref().unwrap_or("");
            for c in pod_cidrs(old) {
                cidrs.release(&c, name);
            }
        }
        (_, Some(new)) => {
            let name = new.metadata.name.as_deref().unwrap_or("");
            for c in pod_cidrs(new) {
                cidrs.occupy(&c, name);
            }
        }
        (None, None) => {}
    }
}

impl<W: Writes> NodeIpamController<W> {
    /// Give node `key` a pod CIDR if it has none.
    pub async fn reconcile(&self, key: &Key) -> Result<Option<Duration>, Error> {
        let Some(node) = self.nodes.get(&ObjectRef::new(&key.name)) else {
            return Ok(None);
        };
        if !pod_cidrs(&node).is_empty() || node.metadata.deletion_timestamp.is_some() {
            return Ok(None);
        }
        let Some(cidr) = self.cidrs.allocate(&key.name) else {
            self.writes.record(
                &object_reference(node.as_ref()),
                "Normal",
                "CIDRNotAvailable",
                format!("Node {} status is now: CIDRNotAvailable", key.name),
            );
            // An error: the queue retries with backoff, as upstream's, and a deleted node may
            // free a block meanwhile. Repeats aggregate into one Event with a count.
            return Err(Error::Exhausted(key.name.clone()));
        };
        let patch = json!({"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}});
        if let Err(e) = self
            .writes
            .merge_patch(Kind::Node, "", &key.name, patch, false)
            .await
        {
            self.cidrs.release(&cidr, &key.name);
            if e.is_not_found() {
                return Ok(None);
            }
            return Err(e.into());
        }
        tracing::info!(node = %key.name, cidr = %cidr, "allocated pod CIDR");
        Ok(None)
    }
}

/// Wire the allocator to the shared node informer; workers once it synced.
pub(crate) fn register(
    client: &kube::Client,
    options: &crate::Options,
    nodes: &mut crate::informer::Informer<Node>,
    shutdown: &tokio_util::sync::CancellationToken,
    tasks: &tokio_util::task::TaskTracker,
) {
    if !options.allocate_node_cidrs {
        return;
    }
    let cidrs = match CidrSet::new(&options.cluster_cidr, options.node_cidr_mask_size) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            tracing::error!(controller = NAME, error = %e, "node IPAM disabled");
            return;
        }
    };
    let queue = crate::queue::WorkQueue::new();
    let c = Arc::new(NodeIpamController {
        writes: Arc::new(crate::writes::ClientWrites::new(client.clone(), NAME)),
        nodes: nodes.store(),
        cidrs: cidrs.clone(),
    });
    let q = queue.clone();
    nodes.on_change(Arc::new(move |old, new| {
        observe(&cidrs, old, new);
        if let Some(n) = new {
            q.add(Key::of(&n.metadata));
        }
    }));
    let ns = nodes.synced();
    let ready = async move { ns.wait().await };
    crate::writes::start_after(
        tasks,
        NAME,
        queue,
        shutdown.clone(),
        ready,
        nodes.store(),
        move |key| {
            let c = c.clone();
            async move { c.reconcile(&key).await }
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::writes::{RecordingWrites, store_of};
    use k8s_openapi::api::core::v1::NodeSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn node(name: &str, cidr: Option<&str>) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            spec: Some(NodeSpec {
                pod_cidr: cidr.map(str::to_string),
                pod_cidrs: cidr.map(|c| vec![c.to_string()]),
                ..NodeSpec::default()
            }),
            status: None,
        }
    }

    fn controller(nodes: Vec<Node>, cidr: &str, mask: u8) -> NodeIpamController<RecordingWrites> {
        let cidrs = Arc::new(CidrSet::new(cidr, mask).expect("cidr"));
        for n in &nodes {
            observe(&cidrs, None, Some(n));
        }
        NodeIpamController {
            writes: Arc::new(RecordingWrites::new()),
            nodes: store_of(nodes),
            cidrs,
        }
    }

    #[tokio::test]
    async fn a_node_without_a_pod_cidr_gets_the_next_free_block_in_both_fields() {
        let c = controller(
            vec![node("a", Some("10.244.0.0/24")), node("b", None)],
            "10.244.0.0/16",
            24,
        );
        c.reconcile(&Key::new("", "b")).await.expect("sync");
        let w = c.writes.objects();
        assert_eq!(w.len(), 1);
        assert_eq!((w[0].verb, w[0].name.as_str()), ("patch", "b"));
        assert_eq!(
            w[0].body,
            json!({"spec": {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24"]}})
        );
        // A node that has one is left alone.
        c.reconcile(&Key::new("", "a")).await.expect("sync");
        assert_eq!(c.writes.objects().len(), 1);
    }

    #[tokio::test]
    async fn an_exhausted_range_records_cidr_not_available_and_a_deleted_node_frees_its_block() {
        let held = node("a", Some("10.0.0.0/25"));
        let other = node("b", Some("10.0.0.128/25"));
        let c = controller(
            vec![held.clone(), other, node("c", None)],
            "10.0.0.0/24",
            25,
        );
        assert!(matches!(
            c.reconcile(&Key::new("", "c")).await,
            Err(Error::Exhausted(_))
        ));
        assert!(c.writes.objects().is_empty());
        assert_eq!(
            c.writes.events(),
            vec!["CIDRNotAvailable: Node c status is now: CIDRNotAvailable"]
        );
        observe(&c.cidrs, Some(&held), None);
        c.reconcile(&Key::new("", "c")).await.expect("sync");
        assert_eq!(
            c.writes.objects()[0].body["spec"]["podCIDR"],
            json!("10.0.0.0/25")
        );
    }

    #[test]
    fn the_mask_size_is_configurable_and_bad_ranges_are_refused() {
        let set = CidrSet::new("10.1.0.0/16", 26).expect("valid");
        assert_eq!(set.allocate("x").as_deref(), Some("10.1.0.0/26"));
        assert_eq!(set.allocate("y").as_deref(), Some("10.1.0.64/26"));
        assert_eq!(
            set.allocate("x").as_deref(),
            Some("10.1.0.0/26"),
            "idempotent"
        );
        assert!(CidrSet::new("10.1.0.0/16", 8).is_err());
        assert!(CidrSet::new("nonsense", 24).is_err());
    }
}
