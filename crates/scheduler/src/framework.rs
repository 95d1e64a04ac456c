//! The scheduling framework: extension points, statuses, cycle state, and one scheduling cycle
//! (PreFilter → Filter over an adaptive share of nodes → PreScore → Score → NormalizeScore →
//! select host). IO-free: a snapshot and a pod in, a decision or a `FitError` out.

use std::any::Any;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use crate::snapshot::{NodeInfo, PodInfo, Snapshot};

/// The highest score a plugin gives a node (`framework.MaxNodeScore`).
pub const MAX_NODE_SCORE: i64 = 100;
/// Below this many nodes every node is evaluated (`minFeasibleNodesToFind`).
pub const MIN_FEASIBLE_NODES_TO_FIND: usize = 100;
/// The adaptive percentage never goes below this (`minFeasibleNodesPercentageToFind`).
pub const MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND: usize = 5;

/// Filter plugins whose verdict depends on the node alone, not on its pods: removing victims
/// or counting nominated pods cannot change it.
pub const NODE_ONLY_FILTERS: [&str; 4] = [
    crate::plugins::node_unschedulable::NAME,
    crate::plugins::node_name::NAME,
    crate::plugins::taint_toleration::NAME,
    crate::plugins::node_affinity::NAME,
];

/// Status codes of upstream's framework.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Code {
    Success,
    Error,
    /// The pod does not fit now; preemption may help.
    Unschedulable,
    /// The pod does not fit and preemption on this node cannot change that.
    UnschedulableAndUnresolvable,
    Wait,
    /// The plugin has nothing to do for this pod (its later extension points are skipped).
    Skip,
}

/// A plugin's verdict with its reasons (the strings counted in `FailedScheduling`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub code: Code,
    /// Static where the reason is a constant, so a rejection on thousands of nodes does not
    /// format thousands of strings.
    pub reasons: Vec<Cow<'static, str>>,
    pub plugin: &'static str,
}

impl Status {
    pub fn success() -> Status {
        Status {
            code: Code::Success,
            reasons: Vec::new(),
            plugin: "",
        }
    }
    pub fn skip() -> Status {
        Status {
            code: Code::Skip,
            reasons: Vec::new(),
            plugin: "",
        }
    }
    pub fn new(code: Code, reason: impl Into<Cow<'static, str>>) -> Status {
        Status {
            code,
            reasons: vec![reason.into()],
            plugin: "",
        }
    }
    pub fn unschedulable(reason: impl Into<Cow<'static, str>>) -> Status {
        Status::new(Code::Unschedulable, reason)
    }
    pub fn unresolvable(reason: impl Into<Cow<'static, str>>) -> Status {
        Status::new(Code::UnschedulableAndUnresolvable, reason)
    }
    pub fn error(reason: impl Into<Cow<'static, str>>) -> Status {
        Status::new(Code::Error, reason)
    }
    pub fn is_success(&self) -> bool {
        self.code == Code::Success
    }
    pub fn is_rejection(&self) -> bool {
        matches!(
            self.code,
            Code::Unschedulable | Code::UnschedulableAndUnresolvable
        )
    }
    /// The reasons joined as upstream's `Status.Message()`.
    pub fn message(&self) -> String {
        self.reasons.join(", ")
    }
    fn with_plugin(mut self, plugin: &'static str) -> Status {
        self.plugin = plugin;
        self
    }
}

/// Per-cycle scratch data of the plugins (upstream's `CycleState`), keyed by plugin name.
#[derive(Default)]
pub struct CycleState {
    entries: Vec<(&'static str, Box<dyn Any + Send + Sync>)>,
}

impl CycleState {
    pub fn write<T: Any + Send + Sync>(&mut self, key: &'static str, value: T) {
        if let Some(e) = self.entries.iter_mut().find(|(k, _)| *k == key) {
            e.1 = Box::new(value);
        } else {
            self.entries.push((key, Box::new(value)));
        }
    }
    pub fn read<T: Any + Send + Sync>(&self, key: &'static str) -> Option<&T> {
        self.entries
            .iter()
            .find(|(k, _)| *k == key)
            .and_then(|(_, v)| v.downcast_ref::<T>())
    }
}

/// A change of the cluster that may let pods waiting in the unschedulable queue fit (upstream's
/// `ClusterEvent` with the objects involved). The snapshot already reflects the change when the
/// queueing hints look at it.
#[derive(Debug, Clone, Copy)]
pub enum ClusterEvent<'a> {
    NodeAdd(&'a NodeInfo),
    /// `old` is the previous description of the node (its pods are not carried).
    NodeUpdate {
        old: &'a NodeInfo,
        new: &'a NodeInfo,
    },
    /// A pod was placed on `node_name` (seen bound, not merely assumed by this scheduler).
    AssignedPodAdd(&'a PodInfo),
    /// A placed pod changed its labels or requests.
    AssignedPodUpdate {
        old: &'a PodInfo,
        new: &'a PodInfo,
    },
    /// A pod left the node in `node_name`: deleted, finished, its binding rolled back, or a
    /// pending pod nominated to that node deleted (upstream treats those as assigned).
    AssignedPodDelete(&'a PodInfo),
    /// Any other kind of object changed (storage objects, …), by upstream resource name. The
    /// built-in plugins ignore these; a plugin without its own hints reacts to them.
    Other(&'static str),
}

/// A plugin's answer to "could this event make the pod I rejected schedulable?"
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueingHint {
    Queue,
    QueueSkip,
}

impl QueueingHint {
    pub fn queue_if(yes: bool) -> QueueingHint {
        if yes {
            QueueingHint::Queue
        } else {
            QueueingHint::QueueSkip
        }
    }
}

/// A scheduling plugin. Every extension point has a default: `pre_filter` and `pre_score`
/// default to `Skip`, which (as upstream) means the plugin's `filter` / `score` are not run for
/// this pod; a plugin with a filter but no pre-computation returns `Success` from `pre_filter`.
pub trait Plugin: Send + Sync {
    fn name(&self) -> &'static str;

    /// PreFilter: checks the pod once and prepares cycle state.
    fn pre_filter(&self, _cx: &mut CycleState, _pod: &PodInfo, _snap: &Snapshot) -> Status {
        Status::skip()
    }
    /// Filter: whether the pod may run on the node.
    fn filter(
        &self,
        _cx: &CycleState,
        _pod: &PodInfo,
        _node: &NodeInfo,
        _snap: &Snapshot,
    ) -> Status {
        Status::success()
    }
    /// PreScore: prepares scoring over the feasible nodes.
    fn pre_score(
        &self,
        _cx: &mut CycleState,
        _pod: &PodInfo,
        _nodes: &[&NodeInfo],
        _snap: &Snapshot,
    ) -> Status {
        Status::skip()
    }
    /// Score: 0..=100 for the node (before NormalizeScore, any range).
    fn score(&self, _cx: &CycleState, _pod: &PodInfo, _node: &NodeInfo, _snap: &Snapshot) -> i64 {
        0
    }
    /// NormalizeScore: rescales the raw scores of every feasible node to 0..=100.
    fn normalize_score(&self, _cx: &CycleState, _pod: &PodInfo, _scores: &mut [i64]) {}
    /// Reserve: the pod is assumed on the node (the snapshot already counts it).
    fn reserve(&self, _cx: &mut CycleState, _pod: &PodInfo, _node: &str) -> Status {
        Status::success()
    }
    /// Unreserve: undoes `reserve` after a later failure.
    fn unreserve(&self, _cx: &mut CycleState, _pod: &PodInfo, _node: &str) {}
    /// Permit: approve (Success), deny, or Wait.
    fn permit(&self, _cx: &mut CycleState, _pod: &PodInfo, _node: &str) -> Status {
        Status::success()
    }
    /// PreBind: work before the binding is written (volume binding belongs here).
    fn pre_bind(&self, _cx: &mut CycleState, _pod: &PodInfo, _node: &str) -> Status {
        Status::success()
    }
    /// QueueingHint (upstream's `EnqueueExtensions`): whether `event` may make `pod`, which this
    /// plugin rejected, schedulable. The default reacts to every event, as upstream does for a
    /// plugin that registers no events.
    fn queueing_hint(
        &self,
        _pod: &PodInfo,
        _event: &ClusterEvent,
        _snap: &Snapshot,
    ) -> QueueingHint {
        QueueingHint::Queue
    }
}

/// The node with the pods nominated to it that have priority at least the pod's (the pod itself
/// left out) counted as placed, or `None` when there are none (upstream's
/// `addGENominatedPods`).
pub fn with_nominated_pods(pod: &PodInfo, node: &NodeInfo, snap: &Snapshot) -> Option<NodeInfo> {
    let nominated = snap.nominated_pods(&node.name);
    let counts = |p: &&Arc<PodInfo>| p.uid != pod.uid && p.priority >= pod.priority;
    if !nominated.iter().any(|p| counts(&p)) {
        return None;
    }
    let mut with = node.clone();
    for p in nominated.iter().filter(counts) {
        let mut placed = (**p).clone();
        placed.node_name = Some(node.name.clone());
        with.add_pod(Arc::new(placed));
    }
    Some(with)
}

/// Upstream's `DefaultNormalizeScore`: scales to 0..=max by the highest score, optionally reversed.
pub fn default_normalize_score(max: i64, reverse: bool, scores: &mut [i64]) {
    let highest = scores.iter().copied().max().unwrap_or(0);
    if highest == 0 {
        if reverse {
            scores.iter_mut().for_each(|s| *s = max);
        }
        return;
    }
    for s in scores.iter_mut() {
        let v = max * *s / highest;
        *s = if reverse { max - v } else { v };
    }
}

/// Upstream's `numFeasibleNodesToFind` with `percentageOfNodesToScore` (0 = adaptive).
pub fn num_feasible_nodes_to_find(percentage: usize, all: usize) -> usize {
    if all < MIN_FEASIBLE_NODES_TO_FIND {
        return all;
    }
    let pct = if percentage == 0 {
        50usize
            .saturating_sub(all / 125)
            .max(MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND)
    } else {
        percentage.min(100)
    };
    (all * pct / 100).max(MIN_FEASIBLE_NODES_TO_FIND)
}

/// Why a pod could not be placed; `message()` is the `FailedScheduling` text.
#[derive(Debug, Clone, Default)]
pub struct FitError {
    pub num_all_nodes: usize,
    /// Set when a PreFilter plugin rejected the pod (every node then shares its status).
    pub pre_filter_msg: Option<String>,
    /// Rejection status per node, by index in the snapshot the cycle ran on (`None`: not
    /// rejected, or not evaluated). Indexed rather than keyed by name so a pod rejected by
    /// every node of a large cluster costs no name copies.
    pub node_statuses: Vec<Option<Status>>,
    /// The status given to nodes absent from `node_statuses`, if any.
    pub absent_status: Option<Status>,
    /// The PostFilter (preemption) outcome, already prefixed `preemption: `.
    pub post_filter_msg: Option<String>,
}

impl FitError {
    /// The plugins that rejected the pod on some node (upstream's `UnschedulablePlugins`).
    pub fn rejector_plugins(&self) -> Vec<&'static str> {
        let mut out: Vec<&'static str> = Vec::new();
        let statuses = self
            .node_statuses
            .iter()
            .flatten()
            .chain(&self.absent_status);
        for s in statuses {
            if !s.plugin.is_empty() && !out.contains(&s.plugin) {
                out.push(s.plugin);
            }
        }
        out
    }

    /// Upstream's `FitError.Error()`: `0/N nodes are available: <count reason, …sorted>.` then
    /// the PostFilter message.
    pub fn message(&self) -> String {
        let mut msg = format!("0/{} nodes are available:", self.num_all_nodes);
        if let Some(pre) = &self.pre_filter_msg {
            msg.push_str(&format!(" {pre}."));
        } else {
            let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
            let mut rejected = 0;
            for s in self.node_statuses.iter().flatten() {
                rejected += 1;
                for r in &s.reasons {
                    *counts.entry(r.as_ref()).or_insert(0) += 1;
                }
            }
            let absent = self.num_all_nodes.saturating_sub(rejected);
            if absent > 0
                && let Some(s) = &self.absent_status
            {
                for r in &s.reasons {
                    *counts.entry(r.as_ref()).or_insert(0) += absent;
                }
            }
            // Sorted as strings, count first, exactly as `sort.Strings` on "N reason".
            let mut parts: Vec<String> = counts.iter().map(|(r, n)| format!("{n} {r}")).collect();
            parts.sort();
            if !parts.is_empty() {
                msg.push_str(&format!(" {}.", parts.join(", ")));
            }
        }
        if let Some(post) = &self.post_filter_msg {
            msg.push_str(&format!(" {post}."));
        }
        msg
    }
}

/// The result of one successful scheduling cycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub node: String,
    /// Nodes evaluated by Filter and nodes found feasible.
    pub evaluated: usize,
    pub feasible: usize,
}

/// The failure of one scheduling cycle.
#[derive(Debug, Clone)]
pub enum ScheduleError {
    /// No node exists at all (upstream `ErrNoNodesAvailable`).
    NoNodes,
    /// The pod fits nowhere.
    Unfit(Box<FitError>),
    /// A plugin failed internally.
    Internal(String),
}

impl std::fmt::Display for ScheduleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScheduleError::NoNodes => f.write_str("no nodes available to schedule pods"),
            ScheduleError::Unfit(e) => f.write_str(&e.message()),
            ScheduleError::Internal(e) => f.write_str(e),
        }
    }
}

/// A configured profile: plugins with score weights, plus the node-sampling state.
pub struct Framework {
    pub plugins: Vec<(Box<dyn Plugin>, i64)>,
    /// 0 = adaptive (upstream default).
    pub percentage_of_nodes_to_score: usize,
    /// Threads used by Filter (1 = sequential).
    pub parallelism: usize,
    next_start_node_index: usize,
    rng: u64,
}

impl Framework {
    pub fn new(plugins: Vec<(Box<dyn Plugin>, i64)>) -> Framework {
        Framework {
            plugins,
            percentage_of_nodes_to_score: 0,
            parallelism: 1,
            next_start_node_index: 0,
            rng: 0x9E37_79B9_7F4A_7C15,
        }
    }

    /// The default profile with upstream's plugins and weights.
    pub fn with_defaults() -> Framework {
        Framework::new(crate::plugins::default_plugins())
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64*: deterministic, so decisions are reproducible in tests and benchmarks.
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Runs the PreFilter plugins; returns the indices of plugins whose Filter must run.
    pub fn run_pre_filter(
        &self,
        cx: &mut CycleState,
        pod: &PodInfo,
        snap: &Snapshot,
    ) -> Result<Vec<usize>, Status> {
        let mut active = Vec::with_capacity(self.plugins.len());
        for (i, (p, _)) in self.plugins.iter().enumerate() {
            let s = p.pre_filter(cx, pod, snap);
            match s.code {
                Code::Success => active.push(i),
                Code::Skip => {}
                _ => return Err(s.with_plugin(p.name())),
            }
        }
        Ok(active)
    }

    /// Filter on one node as upstream's `RunFilterPluginsWithNominatedPods`: when pods of
    /// higher or equal priority are nominated to the node, the pod must fit both with them
    /// counted (so it does not take the room preemption freed for them) and without them (so
    /// it does not depend on pods that may never arrive, e.g. for anti-affinity).
    pub fn run_filter(
        &self,
        active: &[usize],
        cx: &CycleState,
        pod: &PodInfo,
        node: &NodeInfo,
        snap: &Snapshot,
    ) -> Status {
        let (load, count) =
            crate::plugins::node_resources_fit::nominated_load(pod, &node.name, snap);
        if count == 0 {
            return self.run_filter_plugins(active, cx, pod, node, snap);
        }
        if self.filters_by_resources_only(active) {
            return self.run_filter_with_nominated_load(active, cx, pod, node, snap, (load, count));
        }
        if let Some(with) = with_nominated_pods(pod, node, snap) {
            let s = self.run_filter_plugins(active, cx, pod, &with, snap);
            if !s.is_success() {
                return s;
            }
        }
        self.run_filter_plugins(active, cx, pod, node, snap)
    }

    /// Whether NodeResourcesFit is the only Filter of `active` that looks at a node's pods:
    /// then nominated pods matter only through their requests.
    pub fn filters_by_resources_only(&self, active: &[usize]) -> bool {
        active.iter().all(|&i| {
            let name = self.plugins[i].0.name();
            name == crate::plugins::node_resources_fit::NAME || NODE_ONLY_FILTERS.contains(&name)
        })
    }

    /// `run_filter` when `filters_by_resources_only`: the pass with the nominated pods counted
    /// adds their requests to NodeResourcesFit's sums instead of cloning the node, and the
    /// pass without them cannot fail where this one passed (the other filters ignore pods,
    /// and fewer pods never fit worse), so one pass decides.
    fn run_filter_with_nominated_load(
        &self,
        active: &[usize],
        cx: &CycleState,
        pod: &PodInfo,
        node: &NodeInfo,
        snap: &Snapshot,
        (load, count): (crate::resources::Resources, i64),
    ) -> Status {
        use crate::plugins::node_resources_fit as fit;
        self.run_filters_with(active, |p| {
            if p.name() != fit::NAME {
                return p.filter(cx, pod, node, snap);
            }
            let mut used = node.requested.clone();
            used.add(&load);
            let pods = node.pods.len() as i64 + count;
            fit::status_of(fit::fits_request_used(pod, &node.allocatable, &used, pods))
        })
    }

    /// PreFilter and Filter (nominated pods counted) of `pod` on one node.
    pub fn fits_on(&self, pod: &PodInfo, node: &NodeInfo, snap: &Snapshot) -> bool {
        let mut cx = CycleState::default();
        match self.run_pre_filter(&mut cx, pod, snap) {
            Ok(active) => self.run_filter(&active, &cx, pod, node, snap).is_success(),
            Err(_) => false,
        }
    }

    /// Whether a preemptor fits on the node it is nominated to now (its victims gone): then it
    /// is activated at once instead of waiting out its backoff (upstream's `Activate`).
    pub fn fits_nominated_node(&self, pod: &PodInfo, snap: &Snapshot) -> bool {
        pod.nominated_node_name
            .as_deref()
            .and_then(|n| snap.node(n))
            .is_some_and(|node| self.fits_on(pod, node, snap))
    }

    /// Upstream's queueing-hint check for a pod in the unschedulable queue: whether `event`
    /// may make it schedulable, asking the plugins in `rejectors` (those that rejected it in
    /// its last cycle).
    pub fn queueing_hint(
        &self,
        pod: &PodInfo,
        rejectors: &[&'static str],
        event: &ClusterEvent,
        snap: &Snapshot,
    ) -> bool {
        let mut known = false;
        for (p, _) in &self.plugins {
            if !rejectors.contains(&p.name()) {
                continue;
            }
            known = true;
            if p.queueing_hint(pod, event, snap) == QueueingHint::Queue {
                return true;
            }
        }
        // Rejected by nothing we know (no plugin recorded): every event may help.
        !known
    }

    /// Runs the Filter plugins of `active` on one node; the first rejection wins.
    pub fn run_filter_plugins(
        &self,
        active: &[usize],
        cx: &CycleState,
        pod: &PodInfo,
        node: &NodeInfo,
        snap: &Snapshot,
    ) -> Status {
        self.run_filters_with(active, |p| p.filter(cx, pod, node, snap))
    }

    /// The Filter plugins of `active` in order, each verdict from `filter`; the first
    /// rejection wins, named after its plugin.
    fn run_filters_with(
        &self,
        active: &[usize],
        mut filter: impl FnMut(&dyn Plugin) -> Status,
    ) -> Status {
        for &i in active {
            let p = &self.plugins[i].0;
            let s = filter(p.as_ref());
            if !s.is_success() {
                return s.with_plugin(p.name());
            }
        }
        Status::success()
    }

    /// One scheduling cycle. The caller reserves (assumes) the pod on the chosen node.
    pub fn schedule(&mut self, snap: &Snapshot, pod: &PodInfo) -> Result<Decision, ScheduleError> {
        let n = snap.len();
        if n == 0 {
            return Err(ScheduleError::NoNodes);
        }
        let mut cx = CycleState::default();
        let active = match self.run_pre_filter(&mut cx, pod, snap) {
            Ok(a) => a,
            Err(s) if s.code == Code::Error => return Err(ScheduleError::Internal(s.message())),
            Err(s) => {
                // Every node shares the PreFilter's verdict.
                return Err(ScheduleError::Unfit(Box::new(FitError {
                    num_all_nodes: n,
                    pre_filter_msg: Some(s.message()),
                    absent_status: Some(s),
                    ..Default::default()
                })));
            }
        };

        // A nominated node (set by preemption) is tried first, as upstream.
        if let Some(nominated) = &pod.nominated_node_name
            && let Some(node) = snap.node(nominated)
            && self.run_filter(&active, &cx, pod, node, snap).is_success()
        {
            return Ok(Decision {
                node: nominated.clone(),
                evaluated: 1,
                feasible: 1,
            });
        }

        let to_find = num_feasible_nodes_to_find(self.percentage_of_nodes_to_score, n);
        let (feasible, statuses, processed) = self.find_feasible(&active, &cx, pod, snap, to_find);
        self.next_start_node_index = (self.next_start_node_index + processed) % n;

        if feasible.is_empty() {
            let mut node_statuses = vec![None; n];
            for (i, s) in statuses {
                if s.code == Code::Error {
                    return Err(ScheduleError::Internal(s.message()));
                }
                node_statuses[i] = Some(s);
            }
            return Err(ScheduleError::Unfit(Box::new(FitError {
                num_all_nodes: n,
                node_statuses,
                ..Default::default()
            })));
        }
        if feasible.len() == 1 {
            return Ok(Decision {
                node: snap.nodes[feasible[0]].name.clone(),
                evaluated: processed,
                feasible: 1,
            });
        }
        let totals = self.score_nodes(&mut cx, pod, snap, &feasible);
        let best = self.select_host(&totals);
        Ok(Decision {
            node: snap.nodes[feasible[best]].name.clone(),
            evaluated: processed,
            feasible: feasible.len(),
        })
    }

    /// Filters nodes round-robin from `next_start_node_index` until `to_find` are feasible.
    /// Returns feasible node indices, rejections, and how many nodes were processed.
    #[allow(clippy::type_complexity)]
    fn find_feasible(
        &self,
        active: &[usize],
        cx: &CycleState,
        pod: &PodInfo,
        snap: &Snapshot,
        to_find: usize,
    ) -> (Vec<usize>, Vec<(usize, Status)>, usize) {
        let n = snap.len();
        let start = self.next_start_node_index % n;
        if active.is_empty() {
            // Nothing filters: the first `to_find` nodes are all feasible.
            let feasible = (0..to_find).map(|k| (start + k) % n).collect();
            return (feasible, Vec::new(), to_find);
        }
        if self.parallelism > 1 && n >= 2 * MIN_FEASIBLE_NODES_TO_FIND {
            return self.find_feasible_parallel(active, cx, pod, snap, to_find, start);
        }
        let mut feasible = Vec::with_capacity(to_find);
        let mut statuses = Vec::new();
        let mut processed = 0;
        for k in 0..n {
            let i = (start + k) % n;
            processed += 1;
            let s = self.run_filter(active, cx, pod, &snap.nodes[i], snap);
            if s.is_success() {
                feasible.push(i);
                if feasible.len() >= to_find {
                    break;
                }
            } else {
                statuses.push((i, s));
            }
        }
        (feasible, statuses, processed)
    }

    /// Parallel Filter: the rotated node order is cut into chunks handed out to scoped threads;
    /// everyone stops once enough feasible nodes are found (as upstream's parallelizer).
    #[allow(clippy::type_complexity)]
    fn find_feasible_parallel(
        &self,
        active: &[usize],
        cx: &CycleState,
        pod: &PodInfo,
        snap: &Snapshot,
        to_find: usize,
        start: usize,
    ) -> (Vec<usize>, Vec<(usize, Status)>, usize) {
        use std::sync::Mutex;
        use std::sync::atomic::{AtomicUsize, Ordering};
        let n = snap.len();
        const CHUNK: usize = 64;
        let next_chunk = AtomicUsize::new(0);
        let found = AtomicUsize::new(0);
        let processed = AtomicUsize::new(0);
        let feasible = Mutex::new(Vec::with_capacity(to_find));
        let statuses = Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            for _ in 0..self.parallelism {
                scope.spawn(|| {
                    let mut local_ok = Vec::new();
                    let mut local_bad = Vec::new();
                    loop {
                        if found.load(Ordering::Relaxed) >= to_find {
                            break;
                        }
                        let c = next_chunk.fetch_add(1, Ordering::Relaxed);
                        let lo = c * CHUNK;
                        if lo >= n {
                            break;
                        }
                        let hi = (lo + CHUNK).min(n);
                        for k in lo..hi {
                            let i = (start + k) % n;
                            let s = self.run_filter(active, cx, pod, &snap.nodes[i], snap);
                            if s.is_success() {
                                local_ok.push((k, i));
                                found.fetch_add(1, Ordering::Relaxed);
                            } else {
                                local_bad.push((i, s));
                            }
                        }
                        processed.fetch_add(hi - lo, Ordering::Relaxed);
                    }
                    if let Ok(mut f) = feasible.lock() {
                        f.extend(local_ok);
                    }
                    if let Ok(mut s) = statuses.lock() {
                        s.extend(local_bad);
                    }
                });
            }
        });
        let mut feasible: Vec<(usize, usize)> = feasible.into_inner().unwrap_or_default();
        // Keep the round-robin order and cut at `to_find`, so results do not depend on timing
        // more than necessary.
        feasible.sort_unstable();
        feasible.truncate(to_find);
        let statuses = statuses.into_inner().unwrap_or_default();
        let processed = processed.load(Ordering::Relaxed).min(n);
        (
            feasible.into_iter().map(|(_, i)| i).collect(),
            statuses,
            processed,
        )
    }

    /// PreScore, Score, NormalizeScore and weights; returns the weighted total per feasible node.
    pub fn score_nodes(
        &self,
        cx: &mut CycleState,
        pod: &PodInfo,
        snap: &Snapshot,
        feasible: &[usize],
    ) -> Vec<i64> {
        let nodes: Vec<&NodeInfo> = feasible.iter().map(|&i| &snap.nodes[i]).collect();
        let mut totals = vec![0i64; nodes.len()];
        let mut scores = vec![0i64; nodes.len()];
        for (p, weight) in &self.plugins {
            if *weight == 0 {
                continue;
            }
            if p.pre_score(cx, pod, &nodes, snap).code != Code::Success {
                continue;
            }
            for (k, node) in nodes.iter().enumerate() {
                scores[k] = p.score(cx, pod, node, snap);
            }
            p.normalize_score(cx, pod, &mut scores);
            for (t, s) in totals.iter_mut().zip(&scores) {
                *t += s * weight;
            }
        }
        totals
    }

    /// The highest total wins; ties are broken uniformly at random (reservoir sampling).
    fn select_host(&mut self, totals: &[i64]) -> usize {
        let mut best = 0;
        let mut ties = 1u64;
        for (i, &t) in totals.iter().enumerate().skip(1) {
            if t > totals[best] {
                best = i;
                ties = 1;
            } else if t == totals[best] {
                ties += 1;
                if self.next_random().is_multiple_of(ties) {
                    best = i;
                }
            }
        }
        best
    }

    /// Reserve then Permit for the chosen node; on failure, every plugin is unreserved.
    pub fn reserve_and_permit(&self, pod: &PodInfo, node: &str) -> Status {
        let mut cx = CycleState::default();
        for (p, _) in &self.plugins {
            let s = p.reserve(&mut cx, pod, node);
            if !s.is_success() {
                self.unreserve(&mut cx, pod, node);
                return s.with_plugin(p.name());
            }
        }
        for (p, _) in &self.plugins {
            let s = p.permit(&mut cx, pod, node);
            if !s.is_success() {
                self.unreserve(&mut cx, pod, node);
                return s.with_plugin(p.name());
            }
        }
        for (p, _) in &self.plugins {
            let s = p.pre_bind(&mut cx, pod, node);
            if !s.is_success() {
                self.unreserve(&mut cx, pod, node);
                return s.with_plugin(p.name());
            }
        }
        Status::success()
    }

    fn unreserve(&self, cx: &mut CycleState, pod: &PodInfo, node: &str) {
        for (p, _) in self.plugins.iter().rev() {
            p.unreserve(cx, pod, node);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adaptive_percentage_matches_upstream() {
        assert_eq!(num_feasible_nodes_to_find(0, 50), 50);
        assert_eq!(num_feasible_nodes_to_find(0, 100), 100);
        assert_eq!(num_feasible_nodes_to_find(0, 1000), 420);
        assert_eq!(num_feasible_nodes_to_find(0, 5000), 500);
        assert_eq!(num_feasible_nodes_to_find(0, 6000), 300);
        assert_eq!(num_feasible_nodes_to_find(0, 10_000), 500);
        assert_eq!(num_feasible_nodes_to_find(30, 1000), 300);
        assert_eq!(num_feasible_nodes_to_find(1, 1000), 100);
    }

    #[test]
    fn normalize_reverse_and_forward() {
        let mut s = vec![0, 5, 10];
        default_normalize_score(100, false, &mut s);
        assert_eq!(s, vec![0, 50, 100]);
        let mut s = vec![0, 5, 10];
        default_normalize_score(100, true, &mut s);
        assert_eq!(s, vec![100, 50, 0]);
        let mut s = vec![0, 0];
        default_normalize_score(100, true, &mut s);
        assert_eq!(s, vec![100, 100]);
    }

    // Upstream appends " %v." after a PostFilter message that already ends in a period, so real
    // events end in "..": kept, since users and tools match on the exact text.
    #[test]
    fn fit_error_message_is_sorted_histogram() {
        let mut e = FitError {
            num_all_nodes: 5,
            ..Default::default()
        };
        for _ in ["a", "b"] {
            e.node_statuses
                .push(Some(Status::unschedulable("Insufficient cpu")));
        }
        for _ in ["c", "d", "e"] {
            e.node_statuses.push(Some(Status::unresolvable(
                "node(s) had untolerated taint {dedicated: gpu}",
            )));
        }
        e.post_filter_msg = Some(
            "preemption: 0/5 nodes are available: 5 Preemption is not helpful for scheduling."
                .into(),
        );
        assert_eq!(
            e.message(),
            "0/5 nodes are available: 2 Insufficient cpu, 3 node(s) had untolerated taint \
             {dedicated: gpu}. preemption: 0/5 nodes are available: 5 Preemption is not \
             helpful for scheduling.."
        );
    }
}

#[cfg(test)]
mod nominated_tests {
    use super::*;
    use crate::plugins::testutil::*;

    fn nominated(name: &str, node: &str, priority: i32, milli_cpu: i64) -> Arc<PodInfo> {
        let mut p = pod_info(name);
        p.priority = priority;
        p.requests.milli_cpu = milli_cpu;
        p.nominated_node_name = Some(node.into());
        Arc::new(p)
    }

    #[test]
    fn room_nominated_to_a_higher_or_equal_priority_pod_is_not_taken() {
        let mut snap = snapshot(vec![sized(node("a"), 2000, 1 << 30, 110)]);
        snap.nominate(nominated("vip", "a", 100, 1500));
        let mut fw = Framework::with_defaults();
        let mut low = pod_info("low");
        low.priority = 10;
        low.requests.milli_cpu = 1000;
        match fw.schedule(&snap, &low) {
            Err(ScheduleError::Unfit(e)) => {
                assert_eq!(e.message(), "0/1 nodes are available: 1 Insufficient cpu.")
            }
            other => panic!("expected unfit, got {other:?}"),
        }
        // Equal priority counts too; the nominated pod itself is not counted against itself.
        low.priority = 100;
        assert!(fw.schedule(&snap, &low).is_err());
        let vip = nominated("vip", "a", 100, 1500);
        assert_eq!(
            fw.schedule(&snap, &vip).map(|d| d.node).ok(),
            Some("a".into())
        );
    }

    #[test]
    fn lower_priority_or_cleared_nominations_do_not_block() {
        let mut snap = snapshot(vec![sized(node("a"), 2000, 1 << 30, 110)]);
        snap.nominate(nominated("minor", "a", 1, 1500));
        let mut fw = Framework::with_defaults();
        let mut pod = pod_info("p");
        pod.priority = 10;
        pod.requests.milli_cpu = 1000;
        assert!(fw.schedule(&snap, &pod).is_ok());
        snap.nominate(nominated("vip", "a", 100, 1500));
        assert!(fw.schedule(&snap, &pod).is_err());
        snap.clear_nomination(&nominated("vip", "a", 0, 0).uid);
        assert!(fw.schedule(&snap, &pod).is_ok());
    }
}

#[cfg(test)]
mod hint_tests {
    use super::*;
    use crate::plugins::testutil::*;
    use crate::plugins::{inter_pod_affinity, node_resources_fit, taint_toleration};
    use crate::selector::{Labels, Selector};
    use crate::snapshot::AffinityTerm;

    fn placed(name: &str, node: &str, priority: i32, milli_cpu: i64) -> Arc<PodInfo> {
        let mut p = pod_info(name);
        p.node_name = Some(node.into());
        p.priority = priority;
        p.requests.milli_cpu = milli_cpu;
        Arc::new(p)
    }

    fn wanting(name: &str, priority: i32, milli_cpu: i64) -> PodInfo {
        let mut p = pod_info(name);
        p.priority = priority;
        p.requests.milli_cpu = milli_cpu;
        p
    }

    const FIT: &[&str] = &[node_resources_fit::NAME];

    /// Two 4-CPU nodes with four 900m pods each; a 3-CPU preemptor nominated to `a` (three
    /// victims there).
    fn preempting() -> (Snapshot, PodInfo) {
        let mut snap = snapshot(vec![node("a"), node("b")]);
        for n in ["a", "b"] {
            for i in 0..4 {
                snap.add_pod(placed(&format!("{n}{i}"), n, 1, 900));
            }
        }
        let mut vip = wanting("vip", 10, 3000);
        vip.nominated_node_name = Some("a".into());
        snap.nominate(Arc::new(vip.clone()));
        (snap, vip)
    }

    #[test]
    fn a_preemptor_is_requeued_only_when_its_last_victim_is_gone() {
        let (mut snap, vip) = preempting();
        let fw = Framework::with_defaults();
        // As the scheduler's requeue: the pods nominated to the node the pod left, activated
        // once they fit there.
        let hint = |snap: &Snapshot, gone: &PodInfo| {
            gone.node_name.as_deref().is_some_and(|n| {
                snap.nominated_pods(n)
                    .iter()
                    .any(|p| p.uid == vip.uid && fw.fits_nominated_node(p, snap))
            })
        };
        let a0 = snap.remove_pod("uid-a0").expect("a0");
        assert!(!hint(&snap, &a0), "only 1300m free on a");
        let a1 = snap.remove_pod("uid-a1").expect("a1");
        assert!(!hint(&snap, &a1), "only 2200m free on a");
        // A pod leaving another node does not help a pod that fits nowhere but on its node.
        let b0 = snap.remove_pod("uid-b0").expect("b0");
        assert!(!hint(&snap, &b0));
        let a2 = snap.remove_pod("uid-a2").expect("a2");
        assert!(hint(&snap, &a2), "a is free for the preemptor now");
    }

    #[test]
    fn room_held_for_a_nominated_pod_does_not_requeue_others() {
        let (mut snap, _vip) = preempting();
        let fw = Framework::with_defaults();
        let other = wanting("other", 10, 3000);
        for i in 0..3 {
            snap.remove_pod(&format!("uid-a{i}"));
        }
        let gone = placed("a2", "a", 1, 900);
        let event = ClusterEvent::AssignedPodDelete(&gone);
        // a has 3100m free but 3000m of it belong to the nominated preemptor.
        assert!(!fw.queueing_hint(&other, FIT, &event, &snap));
        // Without the nomination the same event would help.
        snap.clear_nomination("uid-vip");
        assert!(fw.queueing_hint(&other, FIT, &event, &snap));
        // A pod rejected by no known plugin moves on any event.
        assert!(fw.queueing_hint(&other, &[], &event, &snap));
    }

    #[test]
    fn resource_fit_ignores_pod_additions_and_needs_room() {
        let (snap, _) = preempting();
        let fit = node_resources_fit::NodeResourcesFit;
        let small = wanting("small", 0, 100);
        let added = placed("x", "b", 0, 100);
        assert_eq!(
            fit.queueing_hint(&small, &ClusterEvent::AssignedPodAdd(&added), &snap),
            QueueingHint::QueueSkip
        );
        let gone = placed("b0", "b", 1, 900);
        assert_eq!(
            fit.queueing_hint(&small, &ClusterEvent::AssignedPodDelete(&gone), &snap),
            QueueingHint::Queue
        );
        let big = wanting("big", 0, 2000);
        assert_eq!(
            fit.queueing_hint(&big, &ClusterEvent::AssignedPodDelete(&gone), &snap),
            QueueingHint::QueueSkip
        );
        assert_eq!(
            fit.queueing_hint(&big, &ClusterEvent::Other("persistentvolumeclaims"), &snap),
            QueueingHint::QueueSkip
        );
    }

    #[test]
    fn anti_affinity_is_requeued_by_the_blocking_pod_leaving() {
        let snap = snapshot(vec![node("a")]);
        let mut l = Labels::new();
        l.insert("app".into(), "db".into());
        let mut pod = pod_info("db-1");
        pod.labels = l.clone();
        pod.required_anti_affinity.push(AffinityTerm {
            selector: Selector::from_map(&l),
            namespaces: vec!["default".into()],
            namespace_selector: None,
            topology_key: "kubernetes.io/hostname".into(),
        });
        let mut db0 = (*placed("db-0", "a", 0, 0)).clone();
        db0.labels = l;
        let web = placed("web", "a", 0, 0);
        let ipa = inter_pod_affinity::InterPodAffinity;
        assert_eq!(
            ipa.queueing_hint(&pod, &ClusterEvent::AssignedPodDelete(&db0), &snap),
            QueueingHint::Queue
        );
        assert_eq!(
            ipa.queueing_hint(&pod, &ClusterEvent::AssignedPodDelete(&web), &snap),
            QueueingHint::QueueSkip
        );
        assert_eq!(
            ipa.queueing_hint(&pod, &ClusterEvent::AssignedPodAdd(&db0), &snap),
            QueueingHint::QueueSkip
        );
    }

    #[test]
    fn taint_removal_requeues_and_heartbeats_do_not() {
        let pod = pod_info("p");
        let mut old = node("a");
        old.taints.push(k8s_openapi::api::core::v1::Taint {
            key: "dedicated".into(),
            value: Some("gpu".into()),
            effect: "NoSchedule".into(),
            ..Default::default()
        });
        let new = node("a");
        let snap = snapshot(vec![new.clone()]);
        let tt = taint_toleration::TaintToleration;
        let ev = ClusterEvent::NodeUpdate {
            old: &old,
            new: &new,
        };
        assert_eq!(tt.queueing_hint(&pod, &ev, &snap), QueueingHint::Queue);
        let same = ClusterEvent::NodeUpdate {
            old: &old,
            new: &old,
        };
        assert_eq!(
            tt.queueing_hint(&pod, &same, &snap),
            QueueingHint::QueueSkip
        );
    }
}
