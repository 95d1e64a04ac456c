//! The scheduler's view of the cluster: nodes with what is requested on them, and the pods
//! placed there, pre-digested from the API objects once so that every scheduling cycle is cheap.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{Node, Pod, Taint, Toleration};

use crate::resources::{Resources, pod_non_zero_requests, pod_requests};
use crate::selector::{Labels, NodeTerm, Selector};

/// A host port a pod asks for (NodePorts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    pub ip: String,
    pub protocol: String,
    pub port: i32,
}

impl HostPort {
    /// Two host ports conflict when protocol and port are equal and the addresses overlap
    /// (`0.0.0.0` overlaps every address), as upstream's `HostPortInfo`.
    pub fn conflicts(&self, other: &HostPort) -> bool {
        self.port == other.port
            && self.protocol == other.protocol
            && (self.ip == other.ip || self.ip == "0.0.0.0" || other.ip == "0.0.0.0")
    }
}

/// A pod (anti-)affinity term, parsed.
#[derive(Debug, Clone)]
pub struct AffinityTerm {
    pub selector: Selector,
    pub namespaces: Vec<String>,
    /// `Some(empty)` selects every namespace.
    pub namespace_selector: Option<Selector>,
    pub topology_key: String,
}

impl AffinityTerm {
    /// Whether `pod` is selected by this term (namespace and labels).
    pub fn matches(&self, pod: &PodInfo, ns_labels: &HashMap<String, Labels>) -> bool {
        let ns_ok = self.namespaces.contains(&pod.namespace)
            || self.namespace_selector.as_ref().is_some_and(|s| {
                s.is_empty() || ns_labels.get(&pod.namespace).is_some_and(|l| s.matches(l))
            });
        ns_ok && self.selector.matches(&pod.labels)
    }
}

/// A topology spread constraint, parsed, with the defaults of the API applied.
#[derive(Debug, Clone)]
pub struct SpreadConstraint {
    pub max_skew: i32,
    pub topology_key: String,
    /// `DoNotSchedule` (a filter) versus `ScheduleAnyway` (a score).
    pub hard: bool,
    pub selector: Selector,
    pub min_domains: Option<i32>,
    /// nodeAffinityPolicy: Honor (default) counts only nodes the pod's node affinity admits.
    pub honor_node_affinity: bool,
    /// nodeTaintsPolicy: Ignore (default) counts tainted nodes too.
    pub honor_node_taints: bool,
}

/// Everything the plugins need to know about one pod.
#[derive(Debug, Clone, Default)]
pub struct PodInfo {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub labels: Labels,
    pub priority: i32,
    pub requests: Resources,
    /// CPU (millicores) and memory with the scoring defaults for missing requests.
    pub non_zero: (i64, i64),
    pub node_name: Option<String>,
    pub nominated_node_name: Option<String>,
    pub scheduler_name: String,
    pub host_ports: Vec<HostPort>,
    pub node_selector: Labels,
    /// `None`: no required node affinity.
    pub required_node_terms: Option<Vec<NodeTerm>>,
    pub preferred_node_terms: Vec<(i32, NodeTerm)>,
    pub tolerations: Vec<Toleration>,
    pub required_affinity: Vec<AffinityTerm>,
    pub required_anti_affinity: Vec<AffinityTerm>,
    pub preferred_affinity: Vec<(i32, AffinityTerm)>,
    pub preferred_anti_affinity: Vec<(i32, AffinityTerm)>,
    pub spread: Vec<SpreadConstraint>,
    /// The selector of the Services/ReplicaSets/StatefulSets owning the pod, for the system
    /// default spread constraints; filled by the scheduler's cache, `None` when unknown.
    pub default_spread_selector: Option<Selector>,
    /// Normalised image names of init and regular containers, and the container count.
    pub images: Vec<String>,
    pub container_count: usize,
    pub pvc_names: Vec<String>,
    pub preempt_never: bool,
    pub terminating: bool,
    /// RFC 3339 creation or start time, used to order preemption victims.
    pub start_time: String,
    /// Whether the pod sets no requests at all (BalancedAllocation skips such pods).
    pub best_effort: bool,
}

/// Appends `:latest` when a reference has no tag, as upstream's `normalizedImageName`.
pub fn normalized_image_name(name: &str) -> String {
    let colon = name.rfind(':');
    let slash = name.rfind('/');
    if name.contains('@') || colon.is_some_and(|c| slash.is_none_or(|s| c > s)) {
        name.to_string()
    } else {
        format!("{name}:latest")
    }
}

fn parse_term(
    t: &k8s_openapi::api::core::v1::PodAffinityTerm,
    own_namespace: &str,
) -> AffinityTerm {
    let selector = t
        .label_selector
        .as_ref()
        .map(Selector::from_label_selector)
        // A nil label selector matches no pod.
        .unwrap_or(Selector {
            reqs: vec![crate::selector::Requirement::Never],
        });
    let mut namespaces = t.namespaces.clone().unwrap_or_default();
    let namespace_selector = t
        .namespace_selector
        .as_ref()
        .map(Selector::from_label_selector);
    if namespaces.is_empty() && namespace_selector.is_none() {
        namespaces.push(own_namespace.to_string());
    }
    AffinityTerm {
        selector,
        namespaces,
        namespace_selector,
        topology_key: t.topology_key.clone(),
    }
}

impl PodInfo {
    pub fn from_pod(pod: &Pod) -> PodInfo {
        let meta = &pod.metadata;
        let namespace = meta.namespace.clone().unwrap_or_else(|| "default".into());
        let labels: Labels = meta.labels.clone().unwrap_or_default();
        let mut info = PodInfo {
            uid: meta.uid.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
            labels: labels.clone(),
            terminating: meta.deletion_timestamp.is_some(),
            start_time: pod
                .status
                .as_ref()
                .and_then(|s| s.start_time.as_ref())
                .or(meta.creation_timestamp.as_ref())
                .map(|t| t.0.to_string())
                .unwrap_or_default(),
            nominated_node_name: pod
                .status
                .as_ref()
                .and_then(|s| s.nominated_node_name.clone())
                .filter(|n| !n.is_empty()),
            ..Default::default()
        };
        let Some(spec) = &pod.spec else {
            info.namespace = namespace;
            return info;
        };
        info.priority = spec.priority.unwrap_or(0);
        info.requests = pod_requests(spec);
        info.best_effort = info.requests.is_zero();
        info.non_zero = pod_non_zero_requests(spec);
        info.node_name = spec.node_name.clone().filter(|n| !n.is_empty());
        info.scheduler_name = spec
            .scheduler_name
            .clone()
            .unwrap_or_else(|| crate::DEFAULT_SCHEDULER_NAME.to_string());
        info.preempt_never = spec.preemption_policy.as_deref() == Some("Never");
        info.node_selector = spec.node_selector.clone().unwrap_or_default();
        info.tolerations = spec.tolerations.clone().unwrap_or_default();
        for c in spec
            .init_containers
            .iter()
            .flatten()
            .chain(&spec.containers)
        {
            if let Some(img) = &c.image {
                info.images.push(normalized_image_name(img));
            }
            info.container_count += 1;
            for p in c.ports.iter().flatten() {
                if let Some(hp) = p.host_port.filter(|p| *p > 0) {
                    info.host_ports.push(HostPort {
                        ip: p
                            .host_ip
                            .clone()
                            .filter(|i| !i.is_empty())
                            .unwrap_or_else(|| "0.0.0.0".into()),
                        protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                        port: hp,
                    });
                }
            }
        }
        info.pvc_names = spec
            .volumes
            .iter()
            .flatten()
            .filter_map(|v| {
                v.persistent_volume_claim
                    .as_ref()
                    .map(|c| c.claim_name.clone())
            })
            .collect();
        if let Some(aff) = &spec.affinity {
            if let Some(na) = &aff.node_affinity {
                if let Some(req) = &na.required_during_scheduling_ignored_during_execution {
                    info.required_node_terms = Some(
                        req.node_selector_terms
                            .iter()
                            .map(NodeTerm::from_term)
                            .collect(),
                    );
                }
                for p in na
                    .preferred_during_scheduling_ignored_during_execution
                    .iter()
                    .flatten()
                {
                    info.preferred_node_terms
                        .push((p.weight, NodeTerm::from_term(&p.preference)));
                }
            }
            if let Some(pa) = &aff.pod_affinity {
                for t in pa
                    .required_during_scheduling_ignored_during_execution
                    .iter()
                    .flatten()
                {
                    info.required_affinity.push(parse_term(t, &namespace));
                }
                for w in pa
                    .preferred_during_scheduling_ignored_during_execution
                    .iter()
                    .flatten()
                {
                    info.preferred_affinity
                        .push((w.weight, parse_term(&w.pod_affinity_term, &namespace)));
                }
            }
            if let Some(pa) = &aff.pod_anti_affinity {
                for t in pa
                    .required_during_scheduling_ignored_during_execution
                    .iter()
                    .flatten()
                {
                    info.required_anti_affinity.push(parse_term(t, &namespace));
                }
                for w in pa
                    .preferred_during_scheduling_ignored_during_execution
                    .iter()
                    .flatten()
                {
                    info.preferred_anti_affinity
                        .push((w.weight, parse_term(&w.pod_affinity_term, &namespace)));
                }
            }
        }
        for c in spec.topology_spread_constraints.iter().flatten() {
            let mut selector = c
                .label_selector
                .as_ref()
                .map(Selector::from_label_selector)
                .unwrap_or(Selector {
                    reqs: vec![crate::selector::Requirement::Never],
                });
            // matchLabelKeys: the pod's own values for those keys join the selector.
            for k in c.match_label_keys.iter().flatten() {
                if let Some(v) = labels.get(k) {
                    selector
                        .reqs
                        .push(crate::selector::Requirement::In(k.clone(), vec![v.clone()]));
                }
            }
            info.spread.push(SpreadConstraint {
                max_skew: c.max_skew,
                topology_key: c.topology_key.clone(),
                hard: c.when_unsatisfiable != "ScheduleAnyway",
                selector,
                min_domains: c.min_domains,
                honor_node_affinity: c.node_affinity_policy.as_deref() != Some("Ignore"),
                honor_node_taints: c.node_taints_policy.as_deref() == Some("Honor"),
            });
        }
        info.namespace = namespace;
        info
    }

    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// Terms that make an existing pod count in another pod's InterPodAffinity score (its
    /// required anti-affinity does not).
    pub fn has_scoring_affinity_terms(&self) -> bool {
        !self.required_affinity.is_empty()
            || !self.preferred_affinity.is_empty()
            || !self.preferred_anti_affinity.is_empty()
    }

    pub fn has_affinity_terms(&self) -> bool {
        !self.required_affinity.is_empty()
            || !self.required_anti_affinity.is_empty()
            || !self.preferred_affinity.is_empty()
            || !self.preferred_anti_affinity.is_empty()
    }
}

/// One node and what the scheduler has placed (or seen placed) on it.
#[derive(Debug, Clone, Default)]
pub struct NodeInfo {
    pub name: String,
    pub labels: Labels,
    pub taints: Vec<Taint>,
    pub unschedulable: bool,
    pub allocatable: Resources,
    pub requested: Resources,
    pub non_zero_requested: (i64, i64),
    pub pods: Vec<Arc<PodInfo>>,
    pub used_ports: Vec<HostPort>,
    /// Normalised image name → size in bytes.
    pub images: HashMap<String, i64>,
    /// Pods on this node with any (anti-)affinity term, and with required anti-affinity.
    pub pods_with_affinity: usize,
    pub pods_with_required_anti_affinity: usize,
}

impl NodeInfo {
    pub fn from_node(node: &Node) -> NodeInfo {
        let spec = node.spec.as_ref();
        let status = node.status.as_ref();
        let mut images = HashMap::new();
        for img in status.and_then(|s| s.images.as_ref()).into_iter().flatten() {
            for n in img.names.iter().flatten() {
                images.insert(normalized_image_name(n), img.size_bytes.unwrap_or(0));
            }
        }
        NodeInfo {
            name: node.metadata.name.clone().unwrap_or_default(),
            labels: node.metadata.labels.clone().unwrap_or_default(),
            taints: spec.and_then(|s| s.taints.clone()).unwrap_or_default(),
            unschedulable: spec.and_then(|s| s.unschedulable).unwrap_or(false),
            allocatable: status
                .and_then(|s| s.allocatable.as_ref().or(s.capacity.as_ref()))
                .map(Resources::from_list)
                .unwrap_or_default(),
            images,
            ..Default::default()
        }
    }

    pub fn add_pod(&mut self, pod: Arc<PodInfo>) {
        self.requested.add(&pod.requests);
        self.non_zero_requested.0 += pod.non_zero.0;
        self.non_zero_requested.1 += pod.non_zero.1;
        self.used_ports.extend(pod.host_ports.iter().cloned());
        if pod.has_affinity_terms() {
            self.pods_with_affinity += 1;
        }
        if !pod.required_anti_affinity.is_empty() {
            self.pods_with_required_anti_affinity += 1;
        }
        self.pods.push(pod);
    }

    /// Removes the pod with `uid`; returns whether it was here.
    pub fn remove_pod(&mut self, uid: &str) -> Option<Arc<PodInfo>> {
        let idx = self.pods.iter().position(|p| p.uid == uid)?;
        let pod = self.pods.swap_remove(idx);
        self.requested.sub(&pod.requests);
        self.non_zero_requested.0 -= pod.non_zero.0;
        self.non_zero_requested.1 -= pod.non_zero.1;
        for hp in &pod.host_ports {
            if let Some(i) = self.used_ports.iter().position(|u| u == hp) {
                self.used_ports.swap_remove(i);
            }
        }
        if pod.has_affinity_terms() {
            self.pods_with_affinity -= 1;
        }
        if !pod.required_anti_affinity.is_empty() {
            self.pods_with_required_anti_affinity -= 1;
        }
        Some(pod)
    }
}

/// Placed pods matching one selector, counted per value of a topology label and kept current
/// as pods come and go, so InterPodAffinity and PodTopologySpread look counts up instead of
/// walking every pod each cycle (upstream recounts them in PreFilter).
#[derive(Debug, Clone)]
pub struct MatchCounts {
    pub namespaces: Vec<String>,
    pub selector: Selector,
    pub topology_key: String,
    /// PodTopologySpread leaves terminating pods out; affinity counts them.
    pub skip_terminating: bool,
    /// Topology value → matching pods (only values with at least one).
    pub by_value: HashMap<String, i64>,
}

impl MatchCounts {
    fn selects(&self, p: &PodInfo) -> bool {
        (!self.skip_terminating || !p.terminating)
            && self.namespaces.contains(&p.namespace)
            && self.selector.matches(&p.labels)
    }

    pub fn get(&self, value: &str) -> i64 {
        self.by_value.get(value).copied().unwrap_or(0)
    }
}

fn bump(by_value: &mut HashMap<String, i64>, value: &str, by: i64) {
    match by_value.get_mut(value) {
        Some(c) => {
            *c += by;
            if *c == 0 {
                by_value.remove(value);
            }
        }
        None if by > 0 => {
            by_value.insert(value.to_string(), by);
        }
        None => {}
    }
}

/// The required anti-affinity terms of placed pods, identical terms grouped, with how many
/// pods carry them per topology value: PreFilter matches the incoming pod once per group.
#[derive(Debug, Clone)]
pub struct AntiAffinityGroup {
    pub term: AffinityTerm,
    pub by_value: Arc<HashMap<String, i64>>,
}

/// Most selectors cached at once; the cache restarts when full.
const MAX_CACHED_SELECTORS: usize = 64;

/// Indexes kept beside the nodes, updated with every placed pod.
#[derive(Debug, Default)]
struct Indexes {
    anti_affinity: HashMap<String, AntiAffinityGroup>,
    /// Built on first use by a cycle (hence the lock: cycles see `&Snapshot`).
    match_counts: Mutex<HashMap<String, Arc<MatchCounts>>>,
    /// Node label key → value → number of nodes with it.
    label_values: HashMap<String, HashMap<String, usize>>,
}

impl Clone for Indexes {
    fn clone(&self) -> Self {
        let cache = match self.match_counts.lock() {
            Ok(m) => m.clone(),
            Err(_) => HashMap::new(),
        };
        Indexes {
            anti_affinity: self.anti_affinity.clone(),
            match_counts: Mutex::new(cache),
            label_values: self.label_values.clone(),
        }
    }
}

fn term_key(t: &AffinityTerm) -> String {
    format!(
        "{:?}|{:?}|{:?}|{}",
        t.namespaces, t.namespace_selector, t.selector, t.topology_key
    )
}

impl Indexes {
    /// Counts (`by` = 1) or uncounts (-1) a pod placed on `node`.
    fn account(&mut self, node: &NodeInfo, pod: &PodInfo, by: i64) {
        for t in &pod.required_anti_affinity {
            let Some(v) = node.labels.get(&t.topology_key) else {
                continue;
            };
            let key = term_key(t);
            let group =
                self.anti_affinity
                    .entry(key.clone())
                    .or_insert_with(|| AntiAffinityGroup {
                        term: t.clone(),
                        by_value: Arc::new(HashMap::new()),
                    });
            bump(Arc::make_mut(&mut group.by_value), v, by);
            if group.by_value.is_empty() {
                self.anti_affinity.remove(&key);
            }
        }
        let cache = match self.match_counts.get_mut() {
            Ok(c) => c,
            Err(p) => p.into_inner(),
        };
        for counts in cache.values_mut() {
            if let Some(v) = node.labels.get(&counts.topology_key)
                && counts.selects(pod)
            {
                bump(&mut Arc::make_mut(counts).by_value, v, by);
            }
        }
    }

    fn account_labels(&mut self, node: &NodeInfo, by: i64) {
        for (k, v) in &node.labels {
            let values = self.label_values.entry(k.clone()).or_default();
            match values.get_mut(v) {
                Some(c) => {
                    *c = c.saturating_add_signed(by as isize);
                    if *c == 0 {
                        values.remove(v);
                    }
                }
                None if by > 0 => {
                    values.insert(v.clone(), 1);
                }
                None => {}
            }
            if values.is_empty() {
                self.label_values.remove(k);
            }
        }
    }

    fn account_node(&mut self, node: &NodeInfo, by: i64) {
        self.account_labels(node, by);
        for p in &node.pods {
            self.account(node, p, by);
        }
    }
}

/// The whole cluster as the scheduler sees it. Updated incrementally by the scheduler's cache
/// (informer events and assumed pods) and read by each scheduling cycle.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub nodes: Vec<NodeInfo>,
    index: HashMap<String, usize>,
    /// Normalised image name → number of nodes that have it (ImageLocality's spread).
    pub image_nodes: HashMap<String, usize>,
    pub namespace_labels: HashMap<String, Labels>,
    /// Pods whose node is not (yet) known, by node name.
    orphans: BTreeMap<String, Vec<Arc<PodInfo>>>,
    /// uid → node name of every placed pod.
    placed: HashMap<String, String>,
    /// Number of placed pods with affinity / required anti-affinity terms (fast paths).
    pub pods_with_affinity: usize,
    pub pods_with_required_anti_affinity: usize,
    /// Placed pods whose terms weigh in other pods' InterPodAffinity scores.
    pub pods_with_scoring_affinity: usize,
    /// Pending pods nominated to a node by preemption, by node name (upstream's nominator):
    /// Filter counts the higher-or-equal-priority ones as if they were already there.
    nominated: HashMap<String, Vec<Arc<PodInfo>>>,
    /// uid → nominated node name.
    nominated_uids: HashMap<String, String>,
    /// PersistentVolumes, claims and StorageClasses for VolumeBinding; shared (not copied) by
    /// clones, since PreBind tasks wait on it outside the loop.
    pub volumes: Arc<crate::plugins::volume_binding::VolumeCache>,
    indexes: Indexes,
}

impl Snapshot {
    pub fn new() -> Snapshot {
        Snapshot::default()
    }

    /// Builds a snapshot from API objects: every node, and every pod that has a node.
    pub fn from_objects<'a>(
        nodes: impl IntoIterator<Item = &'a Node>,
        pods: impl IntoIterator<Item = &'a Pod>,
    ) -> Snapshot {
        let mut s = Snapshot::new();
        for n in nodes {
            s.upsert_node(NodeInfo::from_node(n));
        }
        for p in pods {
            let info = PodInfo::from_pod(p);
            if info.node_name.is_some() {
                s.add_pod(Arc::new(info));
            }
        }
        s
    }

    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.index.get(name).map(|i| &self.nodes[*i])
    }

    pub fn node_index(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Adds a node or replaces its description, keeping the pods placed on it; returns the
    /// previous description (without its pods) when the node was known.
    pub fn upsert_node(&mut self, mut info: NodeInfo) -> Option<NodeInfo> {
        if let Some(&i) = self.index.get(&info.name) {
            let mut old = std::mem::take(&mut self.nodes[i]);
            self.forget_images(&old);
            let relabeled = old.labels != info.labels;
            if relabeled {
                self.indexes.account_node(&old, -1);
            }
            let mut fresh = info;
            for p in std::mem::take(&mut old.pods) {
                fresh.add_pod(p);
            }
            if relabeled {
                self.indexes.account_node(&fresh, 1);
            }
            self.remember_images(&fresh);
            self.nodes[i] = fresh;
            return Some(old);
        }
        for p in self.orphans.remove(&info.name).unwrap_or_default() {
            info.add_pod(p);
        }
        self.indexes.account_node(&info, 1);
        self.remember_images(&info);
        self.index.insert(info.name.clone(), self.nodes.len());
        self.nodes.push(info);
        None
    }

    pub fn remove_node(&mut self, name: &str) {
        let Some(i) = self.index.remove(name) else {
            return;
        };
        let old = self.nodes.swap_remove(i);
        self.indexes.account_node(&old, -1);
        if i < self.nodes.len() {
            let moved = self.nodes[i].name.clone();
            self.index.insert(moved, i);
        }
        self.forget_images(&old);
        // Pods of a deleted node stay accounted until they are deleted themselves.
        self.orphans.insert(old.name.clone(), old.pods);
    }

    fn remember_images(&mut self, n: &NodeInfo) {
        for k in n.images.keys() {
            *self.image_nodes.entry(k.clone()).or_insert(0) += 1;
        }
    }

    fn forget_images(&mut self, n: &NodeInfo) {
        for k in n.images.keys() {
            if let Some(c) = self.image_nodes.get_mut(k) {
                *c -= 1;
                if *c == 0 {
                    self.image_nodes.remove(k);
                }
            }
        }
    }

    /// Places a pod (it must have `node_name`); an existing entry with the same uid is replaced.
    pub fn add_pod(&mut self, pod: Arc<PodInfo>) {
        let Some(node) = pod.node_name.clone() else {
            return;
        };
        self.remove_pod(&pod.uid);
        if pod.has_affinity_terms() {
            self.pods_with_affinity += 1;
        }
        if pod.has_scoring_affinity_terms() {
            self.pods_with_scoring_affinity += 1;
        }
        if !pod.required_anti_affinity.is_empty() {
            self.pods_with_required_anti_affinity += 1;
        }
        self.placed.insert(pod.uid.clone(), node.clone());
        match self.index.get(&node) {
            Some(&i) => {
                self.indexes.account(&self.nodes[i], &pod, 1);
                self.nodes[i].add_pod(pod);
            }
            None => self.orphans.entry(node).or_default().push(pod),
        }
    }

    pub fn remove_pod(&mut self, uid: &str) -> Option<Arc<PodInfo>> {
        let node = self.placed.remove(uid)?;
        let removed = match self.index.get(&node) {
            Some(&i) => {
                let p = self.nodes[i].remove_pod(uid);
                if let Some(p) = &p {
                    self.indexes.account(&self.nodes[i], p, -1);
                }
                p
            }
            None => {
                let list = self.orphans.get_mut(&node)?;
                let idx = list.iter().position(|p| p.uid == uid)?;
                let p = list.swap_remove(idx);
                if list.is_empty() {
                    self.orphans.remove(&node);
                }
                Some(p)
            }
        };
        if let Some(p) = &removed {
            if p.has_affinity_terms() {
                self.pods_with_affinity -= 1;
            }
            if p.has_scoring_affinity_terms() {
                self.pods_with_scoring_affinity -= 1;
            }
            if !p.required_anti_affinity.is_empty() {
                self.pods_with_required_anti_affinity -= 1;
            }
        }
        removed
    }

    /// Records `pod` (pending, with `nominated_node_name`) as nominated to that node, replacing
    /// an earlier nomination of the same uid; a pod without a nominated node is forgotten.
    pub fn nominate(&mut self, pod: Arc<PodInfo>) {
        self.clear_nomination(&pod.uid);
        let Some(node) = pod.nominated_node_name.clone() else {
            return;
        };
        self.nominated_uids.insert(pod.uid.clone(), node.clone());
        self.nominated.entry(node).or_default().push(pod);
    }

    /// Forgets the nomination of `uid` (bound, deleted, or no longer nominated); returns the
    /// pod as it was nominated.
    pub fn clear_nomination(&mut self, uid: &str) -> Option<Arc<PodInfo>> {
        let node = self.nominated_uids.remove(uid)?;
        let list = self.nominated.get_mut(&node)?;
        let idx = list.iter().position(|p| p.uid == uid)?;
        let pod = list.swap_remove(idx);
        if list.is_empty() {
            self.nominated.remove(&node);
        }
        Some(pod)
    }

    /// Pods nominated to `node`.
    pub fn nominated_pods(&self, node: &str) -> &[Arc<PodInfo>] {
        self.nominated.get(node).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The node `uid` is nominated to, if any.
    pub fn nomination(&self, uid: &str) -> Option<&str> {
        self.nominated_uids.get(uid).map(String::as_str)
    }

    /// The required anti-affinity terms of placed pods, grouped (InterPodAffinity's
    /// symmetric check).
    pub fn anti_affinity_groups(&self) -> impl Iterator<Item = &AntiAffinityGroup> {
        self.indexes.anti_affinity.values()
    }

    /// The values of node label `key` with how many nodes carry each.
    pub fn label_values(&self, key: &str) -> Option<&HashMap<String, usize>> {
        self.indexes.label_values.get(key)
    }

    /// Placed pods in `namespaces` matching `selector`, per value of `topology_key`: counted
    /// once, then kept current by every placement and removal.
    pub fn match_counts(
        &self,
        namespaces: &[String],
        selector: &Selector,
        topology_key: &str,
        skip_terminating: bool,
    ) -> Arc<MatchCounts> {
        let key = format!("{skip_terminating}|{topology_key}|{namespaces:?}|{selector:?}");
        let mut cache = self.indexes.match_counts.lock().ok();
        if let Some(c) = cache.as_ref().and_then(|c| c.get(&key)) {
            return c.clone();
        }
        let mut counts = MatchCounts {
            namespaces: namespaces.to_vec(),
            selector: selector.clone(),
            topology_key: topology_key.to_string(),
            skip_terminating,
            by_value: HashMap::new(),
        };
        for node in &self.nodes {
            let Some(v) = node.labels.get(topology_key) else {
                continue;
            };
            for p in &node.pods {
                if counts.selects(p) {
                    bump(&mut counts.by_value, v, 1);
                }
            }
        }
        let counts = Arc::new(counts);
        if let Some(cache) = cache.as_mut() {
            if cache.len() >= MAX_CACHED_SELECTORS {
                cache.clear();
            }
            cache.insert(key, counts.clone());
        }
        counts
    }

    /// The node a pod is placed on, if any.
    pub fn placement(&self, uid: &str) -> Option<&str> {
        self.placed.get(uid).map(String::as_str)
    }
}

#[cfg(test)]
mod index_tests {
    use super::*;
    use crate::plugins::testutil::*;

    fn app(name: &str, node: &str, app: &str) -> Arc<PodInfo> {
        let mut p = pod_info(name);
        p.node_name = Some(node.into());
        p.labels.insert("app".into(), app.into());
        Arc::new(p)
    }

    fn web() -> Selector {
        let mut l = Labels::new();
        l.insert("app".into(), "web".into());
        Selector::from_map(&l)
    }

    #[test]
    fn match_counts_follow_placements_removals_and_relabels() {
        let mut snap = snapshot(vec![
            labeled(node("a"), &[("zone", "z1")]),
            labeled(node("b"), &[("zone", "z2")]),
        ]);
        snap.add_pod(app("w1", "a", "web"));
        snap.add_pod(app("d1", "a", "db"));
        let ns = ["default".to_string()];
        let counts = snap.match_counts(&ns, &web(), "zone", true);
        assert_eq!((counts.get("z1"), counts.get("z2")), (1, 0));
        drop(counts);
        // Kept current after the first use: an assumed pod, a pod on a node not known yet.
        snap.add_pod(app("w2", "b", "web"));
        snap.add_pod(app("w3", "c", "web"));
        let counts = snap.match_counts(&ns, &web(), "zone", true);
        assert_eq!(
            (counts.get("z1"), counts.get("z2"), counts.get("z3")),
            (1, 1, 0)
        );
        drop(counts);
        snap.upsert_node(labeled(node("c"), &[("zone", "z3")]));
        snap.remove_pod("uid-w1");
        // Relabeling a node moves its pods to the new domain.
        snap.upsert_node(labeled(node("b"), &[("zone", "z3")]));
        let counts = snap.match_counts(&ns, &web(), "zone", true);
        assert_eq!(counts.get("z1"), 0);
        assert_eq!(counts.get("z2"), 0);
        assert_eq!(counts.get("z3"), 2);
        assert!(!counts.by_value.contains_key("z1"));
        let zones = snap.label_values("zone").expect("zones");
        assert_eq!(zones.get("z3"), Some(&2));
        assert_eq!(zones.get("z2"), None);
        // Terminating pods leave spreading counts.
        let mut t = (*app("w4", "a", "web")).clone();
        t.terminating = true;
        snap.add_pod(Arc::new(t));
        assert_eq!(snap.match_counts(&ns, &web(), "zone", true).get("z1"), 0);
        assert_eq!(snap.match_counts(&ns, &web(), "zone", false).get("z1"), 1);
    }

    #[test]
    fn anti_affinity_groups_merge_identical_terms() {
        let mut snap = snapshot(vec![
            labeled(node("a"), &[("kubernetes.io/hostname", "a")]),
            labeled(node("b"), &[("kubernetes.io/hostname", "b")]),
        ]);
        let term = AffinityTerm {
            selector: web(),
            namespaces: vec!["default".into()],
            namespace_selector: None,
            topology_key: "kubernetes.io/hostname".into(),
        };
        for (name, node) in [("w1", "a"), ("w2", "b"), ("w3", "b")] {
            let mut p = (*app(name, node, "web")).clone();
            p.required_anti_affinity.push(term.clone());
            snap.add_pod(Arc::new(p));
        }
        let groups: Vec<_> = snap.anti_affinity_groups().collect();
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].by_value.get("a"), Some(&1));
        assert_eq!(groups[0].by_value.get("b"), Some(&2));
        snap.remove_pod("uid-w1");
        let groups: Vec<_> = snap.anti_affinity_groups().collect();
        assert_eq!(groups[0].by_value.get("a"), None);
        snap.remove_node("b");
        assert_eq!(snap.anti_affinity_groups().count(), 0);
    }
}
