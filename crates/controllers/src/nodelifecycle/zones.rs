//! Per-zone disruption handling of the node lifecycle controller, as upstream's
//! handleDisruption: each zone's share of not-Ready nodes sets its state (Normal,
//! PartialDisruption, FullDisruption), the state sets how fast the zone's nodes may get
//! NoExecute taints, and when every zone is fully disrupted (the control plane more likely
//! lost the nodes than the nodes died) no node is tainted at all.

use std::collections::HashMap;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Node;

/// Zone label of a node.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
/// Region label of a node.
pub const REGION_LABEL: &str = "topology.kubernetes.io/region";
/// The deprecated beta zone label, still read when the GA one is missing.
const BETA_ZONE_LABEL: &str = "failure-domain.beta.kubernetes.io/zone";
/// The deprecated beta region label.
const BETA_REGION_LABEL: &str = "failure-domain.beta.kubernetes.io/region";
/// Nodes with this label do not count toward their zone's state.
pub const EXCLUDE_DISRUPTION_LABEL: &str = "node.kubernetes.io/exclude-disruption";

/// Upstream's eviction flags (kube-controller-manager defaults).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EvictionRates {
    /// Nodes per second that may be tainted in a healthy zone (`--node-eviction-rate`).
    pub node_eviction_rate: f64,
    /// Nodes per second in a partially disrupted large zone (`--secondary-node-eviction-rate`).
    pub secondary_node_eviction_rate: f64,
    /// Share of not-Ready nodes (with more than 2 of them) at which a zone is partially
    /// disrupted (`--unhealthy-zone-threshold`).
    pub unhealthy_zone_threshold: f64,
    /// A zone with at most this many nodes stops tainting when partially disrupted
    /// (`--large-cluster-size-threshold`).
    pub large_cluster_size_threshold: usize,
}

impl Default for EvictionRates {
    fn default() -> EvictionRates {
        EvictionRates {
            node_eviction_rate: 0.1,
            secondary_node_eviction_rate: 0.01,
            unhealthy_zone_threshold: 0.55,
            large_cluster_size_threshold: 50,
        }
    }
}

/// A zone's state, as upstream's ZoneState.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ZoneState {
    /// Seen, not yet judged.
    Initial,
    /// Few nodes not Ready.
    Normal,
    /// At least the threshold share (and more than 2) not Ready.
    PartialDisruption,
    /// No node Ready.
    FullDisruption,
}

/// The zone key of a node as upstream's GetZoneKey (`region:\0:zone`), empty without labels.
pub fn zone_key(node: &Node) -> String {
    let labels = node.metadata.labels.as_ref();
    let get = |ga: &str, beta: &str| {
        labels
            .and_then(|l| l.get(ga).or_else(|| l.get(beta)))
            .cloned()
            .unwrap_or_default()
    };
    let region = get(REGION_LABEL, BETA_REGION_LABEL);
    let zone = get(ZONE_LABEL, BETA_ZONE_LABEL);
    if region.is_empty() && zone.is_empty() {
        return String::new();
    }
    format!("{region}:\x00:{zone}")
}

/// Whether the node is left out of its zone's state.
pub fn excluded(node: &Node) -> bool {
    node.metadata
        .labels
        .as_ref()
        .is_some_and(|l| l.contains_key(EXCLUDE_DISRUPTION_LABEL))
}

/// The state of a zone with `ready` and `not_ready` nodes (upstream's ComputeZoneState).
pub fn zone_state(ready: usize, not_ready: usize, threshold: f64) -> ZoneState {
    if ready == 0 && not_ready > 0 {
        ZoneState::FullDisruption
    } else if not_ready > 2 && not_ready as f64 / (ready + not_ready) as f64 >= threshold {
        ZoneState::PartialDisruption
    } else {
        ZoneState::Normal
    }
}

/// What a disruption pass changed that the controller has to act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    /// Nothing cluster-wide.
    None,
    /// Every zone just became fully disrupted: NoExecute taints go, none are added.
    EnterMasterDisruption,
    /// Some node is Ready again: every node gets a fresh grace period.
    ExitMasterDisruption,
}

#[derive(Clone, Debug)]
struct NodeEntry {
    zone: String,
    ready: bool,
    excluded: bool,
}

/// A token bucket holding one token (upstream's limiter with burst 1).
#[derive(Clone, Debug)]
struct Zone {
    state: ZoneState,
    qps: f64,
    tokens: f64,
    refilled: Option<Timestamp>,
}

impl Zone {
    fn new(qps: f64) -> Zone {
        Zone {
            state: ZoneState::Initial,
            qps,
            tokens: 1.0,
            refilled: None,
        }
    }

    /// A new rate starts with a full bucket, as upstream's SwapLimiter.
    fn set_rate(&mut self, qps: f64) {
        self.qps = qps;
        self.tokens = 1.0;
        self.refilled = None;
    }

    fn refill(&mut self, now: Timestamp) {
        if let Some(last) = self.refilled {
            let secs = now.duration_since(last).as_secs_f64().max(0.0);
            self.tokens = (self.tokens + secs * self.qps).min(1.0);
        }
        self.refilled = Some(now);
    }
}

/// Every node's zone and readiness as last reconciled, and every zone's state and limiter.
#[derive(Debug)]
pub struct Zones {
    rates: EvictionRates,
    nodes: HashMap<String, NodeEntry>,
    zones: HashMap<String, Zone>,
    master_disruption: bool,
}

impl Zones {
    /// No nodes yet.
    pub fn new(rates: EvictionRates) -> Zones {
        Zones {
            rates,
            nodes: HashMap::new(),
            zones: HashMap::new(),
            master_disruption: false,
        }
    }

    /// Record a node's zone and whether its Ready condition is True.
    pub fn observe(&mut self, name: &str, zone: String, ready: bool, excluded: bool) {
        let rate = self.rates.node_eviction_rate;
        self.zones
            .entry(zone.clone())
            .or_insert_with(|| Zone::new(rate));
        self.nodes.insert(
            name.to_string(),
            NodeEntry {
                zone,
                ready,
                excluded,
            },
        );
    }

    /// A node is gone.
    pub fn forget(&mut self, name: &str) {
        self.nodes.remove(name);
    }

    /// Every zone is fully disrupted: no NoExecute taint may be added, existing ones go.
    pub fn in_master_disruption(&self) -> bool {
        self.master_disruption
    }

    /// The zone's current state (`Initial` for a zone not yet judged or unknown).
    pub fn state(&self, zone: &str) -> ZoneState {
        self.zones.get(zone).map_or(ZoneState::Initial, |z| z.state)
    }

    /// The zone's tainting rate in nodes per second.
    pub fn rate(&self, zone: &str) -> f64 {
        self.zones
            .get(zone)
            .map_or(self.rates.node_eviction_rate, |z| z.qps)
    }

    /// The rate for a zone of `size` nodes entering `state` (upstream's setLimiterInZone).
    fn rate_for(&self, size: usize, state: ZoneState) -> f64 {
        match state {
            ZoneState::PartialDisruption if size > self.rates.large_cluster_size_threshold => {
                self.rates.secondary_node_eviction_rate
            }
            ZoneState::PartialDisruption => 0.0,
            // A zone down alone looks like a zone failure: evict at the normal pace.
            ZoneState::Normal | ZoneState::FullDisruption | ZoneState::Initial => {
                self.rates.node_eviction_rate
            }
        }
    }

    /// Judge every zone from the recorded nodes and move the limiters (upstream's
    /// handleDisruption, run once per monitor period).
    pub fn handle_disruption(&mut self) -> Transition {
        let mut counts: HashMap<String, (usize, usize, usize)> = HashMap::new();
        for n in self.nodes.values() {
            let c = counts.entry(n.zone.clone()).or_default();
            c.2 += 1;
            if n.excluded {
                continue;
            }
            if n.ready {
                c.0 += 1;
            } else {
                c.1 += 1;
            }
        }
        // Zones without nodes are forgotten.
        self.zones.retain(|k, _| counts.contains_key(k));
        if self.zones.is_empty() {
            self.master_disruption = false;
            return Transition::None;
        }
        let threshold = self.rates.unhealthy_zone_threshold;
        let new_states: HashMap<String, (ZoneState, usize)> = counts
            .iter()
            .map(|(k, (r, nr, size))| (k.clone(), (zone_state(*r, *nr, threshold), *size)))
            .collect();
        let all_are = new_states
            .values()
            .all(|(s, _)| *s == ZoneState::FullDisruption);
        let all_were = self
            .zones
            .values()
            .all(|z| z.state == ZoneState::FullDisruption);
        if all_are && all_were {
            return Transition::None;
        }
        if all_are {
            tracing::info!("all nodes are not Ready: entering master disruption mode");
            for z in self.zones.values_mut() {
                z.set_rate(0.0);
                z.state = ZoneState::FullDisruption;
            }
            self.master_disruption = true;
            return Transition::EnterMasterDisruption;
        }
        let mut changes: Vec<(String, ZoneState, f64)> = Vec::new();
        for (k, z) in &self.zones {
            let (state, size) = new_states.get(k).copied().unwrap_or((ZoneState::Normal, 0));
            if all_were || z.state != state {
                changes.push((k.clone(), state, self.rate_for(size, state)));
            }
        }
        for (k, state, rate) in changes {
            if let Some(z) = self.zones.get_mut(&k) {
                if z.state != state {
                    tracing::info!(zone = %k.replace('\0', ""), ?state, rate, "zone changed state");
                }
                z.state = state;
                z.set_rate(rate);
            }
        }
        if all_were {
            tracing::info!("some nodes are Ready: exiting master disruption mode");
            self.master_disruption = false;
            return Transition::ExitMasterDisruption;
        }
        Transition::None
    }

    /// Take the zone's token to add a NoExecute taint now; otherwise how long until one may be
    /// available (`None` while tainting is stopped: master disruption or a zero rate).
    pub fn try_taint(&mut self, zone: &str, now: Timestamp) -> Result<(), Option<Duration>> {
        if self.master_disruption {
            return Err(None);
        }
        let rate = self.rates.node_eviction_rate;
        let z = self
            .zones
            .entry(zone.to_string())
            .or_insert_with(|| Zone::new(rate));
        if z.qps <= 0.0 {
            return Err(None);
        }
        z.refill(now);
        if z.tokens >= 1.0 {
            z.tokens -= 1.0;
            return Ok(());
        }
        let wait = (1.0 - z.tokens) / z.qps;
        Err(Some(Duration::from_secs_f64(wait.clamp(0.001, 86_400.0))))
    }
}
