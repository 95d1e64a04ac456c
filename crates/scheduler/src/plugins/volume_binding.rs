//! VolumeBinding as upstream: PreFilter collects the pod's PersistentVolumeClaims (rejecting
//! missing, terminating and unbound Immediate claims), Filter checks bound volumes' node
//! affinity and whether every unbound WaitForFirstConsumer claim can be served on the node by a
//! free static volume or by dynamic provisioning, `reserve` assumes the chosen bindings in the
//! shared volume cache, `check_bindings` is PreBind's wait condition and `unreserve` rolls the
//! assumptions back. The API writes and the wait itself live in `volume_prebind`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ObjectReference, PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;

use crate::framework::{Code, CycleState, Plugin, Status};
use crate::resources::parse_value;
use crate::selector::{Labels, NodeTerm, Selector, node_terms_match};
use crate::snapshot::{NodeInfo, PodInfo, Snapshot};

pub const NAME: &str = "VolumeBinding";

/// Filter reasons (upstream `ErrReason*` of the plugin).
pub const ERR_REASON_NODE_CONFLICT: &str = "node(s) had volume node affinity conflict";
pub const ERR_REASON_BIND_CONFLICT: &str =
    "node(s) didn't find available persistent volumes to bind";
pub const ERR_REASON_PV_NOT_EXIST: &str =
    "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)";
/// PreFilter reason for claims the PV controller should already have bound.
pub const ERR_UNBOUND_IMMEDIATE: &str = "pod has unbound immediate PersistentVolumeClaims";

/// The node a delayed-binding claim is provisioned for; set by this plugin.
pub const ANN_SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
/// Set on a claim once the PV controller finished binding it.
pub const ANN_BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
/// Set on a volume whose `claimRef` a controller (or this plugin) chose.
pub const ANN_BOUND_BY_CONTROLLER: &str = "pv.kubernetes.io/bound-by-controller";
/// The provisioner name of classes that cannot provision dynamically.
pub const NOT_SUPPORTED_PROVISIONER: &str = "kubernetes.io/no-provisioner";
/// How long PreBind waits for the claims to be bound (upstream `bindTimeoutSeconds`).
pub const BIND_TIMEOUT: Duration = Duration::from_secs(600);

fn claim_key(ns: &str, name: &str) -> String {
    format!("{ns}/{name}")
}

fn rv(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> u64 {
    meta.resource_version
        .as_deref()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

fn annotation<'a>(
    meta: &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    key: &str,
) -> Option<&'a str> {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

/// Which informer an event came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Volume,
    Claim,
    Class,
}

/// PersistentVolumes, claims and StorageClasses as the informers last reported them, overlaid
/// with the scheduler's own assumed writes (upstream's assume caches): an assumed object wins
/// until the informer delivers a newer resourceVersion of it.
#[derive(Debug, Default)]
pub struct VolumeState {
    pvs: HashMap<String, Arc<PersistentVolume>>,
    pvcs: HashMap<String, Arc<PersistentVolumeClaim>>,
    classes: HashMap<String, Arc<StorageClass>>,
    assumed_pvs: HashMap<String, Arc<PersistentVolume>>,
    assumed_pvcs: HashMap<String, Arc<PersistentVolumeClaim>>,
    /// Keys seen since the informer's last `Init`, per kind (relist reconciliation).
    relisting: HashMap<Kind, HashSet<String>>,
    synced: HashSet<Kind>,
}

impl VolumeState {
    /// The volume, assumed version first.
    pub fn pv(&self, name: &str) -> Option<&Arc<PersistentVolume>> {
        self.assumed_pvs.get(name).or_else(|| self.pvs.get(name))
    }
    /// The claim `ns/name`, assumed version first.
    pub fn pvc(&self, ns: &str, name: &str) -> Option<&Arc<PersistentVolumeClaim>> {
        let k = claim_key(ns, name);
        self.assumed_pvcs.get(&k).or_else(|| self.pvcs.get(&k))
    }
    /// The volume as the API server last reported it.
    pub fn api_pv(&self, name: &str) -> Option<&Arc<PersistentVolume>> {
        self.pvs.get(name)
    }
    /// The claim as the API server last reported it.
    pub fn api_pvc(&self, ns: &str, name: &str) -> Option<&Arc<PersistentVolumeClaim>> {
        self.pvcs.get(&claim_key(ns, name))
    }
    pub fn class(&self, name: &str) -> Option<&Arc<StorageClass>> {
        self.classes.get(name)
    }
    /// Every volume, assumed versions overlaid.
    pub fn volumes(&self) -> impl Iterator<Item = &Arc<PersistentVolume>> {
        self.pvs
            .iter()
            .map(|(k, v)| self.assumed_pvs.get(k).unwrap_or(v))
    }

    /// Whether all three informers finished their first list.
    pub fn synced(&self) -> bool {
        self.synced.len() == 3
    }

    pub fn begin_relist(&mut self, kind: Kind) {
        self.relisting.insert(kind, HashSet::new());
    }

    /// Ends a relist: objects not seen in it are gone.
    pub fn end_relist(&mut self, kind: Kind) {
        self.synced.insert(kind);
        let Some(seen) = self.relisting.remove(&kind) else {
            return;
        };
        match kind {
            Kind::Volume => {
                self.pvs.retain(|k, _| seen.contains(k));
                self.assumed_pvs.retain(|k, _| seen.contains(k));
            }
            Kind::Claim => {
                self.pvcs.retain(|k, _| seen.contains(k));
                self.assumed_pvcs.retain(|k, _| seen.contains(k));
            }
            Kind::Class => self.classes.retain(|k, _| seen.contains(k)),
        }
    }

    fn seen(&mut self, kind: Kind, key: &str) {
        if let Some(s) = self.relisting.get_mut(&kind) {
            s.insert(key.to_string());
        }
    }

    pub fn apply_pv(&mut self, pv: PersistentVolume) {
        let name = pv.metadata.name.clone().unwrap_or_default();
        self.seen(Kind::Volume, &name);
        if self
            .assumed_pvs
            .get(&name)
            .is_some_and(|a| rv(&pv.metadata) > rv(&a.metadata))
        {
            self.assumed_pvs.remove(&name);
        }
        self.pvs.insert(name, Arc::new(pv));
    }
    pub fn delete_pv(&mut self, name: &str) {
        self.pvs.remove(name);
        self.assumed_pvs.remove(name);
    }
    pub fn apply_pvc(&mut self, pvc: PersistentVolumeClaim) {
        let k = claim_key(
            pvc.metadata.namespace.as_deref().unwrap_or(""),
            pvc.metadata.name.as_deref().unwrap_or(""),
        );
        self.seen(Kind::Claim, &k);
        if self
            .assumed_pvcs
            .get(&k)
            .is_some_and(|a| rv(&pvc.metadata) > rv(&a.metadata))
        {
            self.assumed_pvcs.remove(&k);
        }
        self.pvcs.insert(k, Arc::new(pvc));
    }
    pub fn delete_pvc(&mut self, ns: &str, name: &str) {
        let k = claim_key(ns, name);
        self.pvcs.remove(&k);
        self.assumed_pvcs.remove(&k);
    }
    pub fn apply_class(&mut self, sc: StorageClass) {
        let name = sc.metadata.name.clone().unwrap_or_default();
        self.seen(Kind::Class, &name);
        self.classes.insert(name, Arc::new(sc));
    }
    pub fn delete_class(&mut self, name: &str) {
        self.classes.remove(name);
    }
}

/// The volume cache shared by the loop (informer events, Reserve), the plugin (PreFilter) and
/// PreBind tasks (waiting for bindings); `changed` wakes the waiters on every claim or volume
/// event.
#[derive(Debug, Default)]
pub struct VolumeCache {
    state: RwLock<VolumeState>,
    pub changed: tokio::sync::Notify,
}

impl VolumeCache {
    pub fn read(&self) -> RwLockReadGuard<'_, VolumeState> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }
    pub fn write(&self) -> RwLockWriteGuard<'_, VolumeState> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }
}

fn claim_class(c: &PersistentVolumeClaim) -> &str {
    c.spec
        .as_ref()
        .and_then(|s| s.storage_class_name.as_deref())
        .unwrap_or("")
}

fn volume_class(pv: &PersistentVolume) -> &str {
    pv.spec
        .as_ref()
        .and_then(|s| s.storage_class_name.as_deref())
        .unwrap_or("")
}

fn requested_bytes(c: &PersistentVolumeClaim) -> i64 {
    c.spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .and_then(|q| parse_value(&q.0))
        .unwrap_or(0)
}

fn capacity_bytes(pv: &PersistentVolume) -> i64 {
    pv.spec
        .as_ref()
        .and_then(|s| s.capacity.as_ref())
        .and_then(|c| c.get("storage"))
        .and_then(|q| parse_value(&q.0))
        .unwrap_or(0)
}

fn volume_name(c: &PersistentVolumeClaim) -> Option<&str> {
    c.spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .filter(|v| !v.is_empty())
}

/// Upstream `isPVCFullyBound`: a volume name and the PV controller's bind-completed mark.
fn fully_bound(c: &PersistentVolumeClaim) -> bool {
    volume_name(c).is_some() && annotation(&c.metadata, ANN_BIND_COMPLETED).is_some()
}

/// Upstream `IsDelayBindingMode`: the claim's class exists and says WaitForFirstConsumer (no
/// class, or a missing one, is Immediate).
fn delay_binding(state: &VolumeState, c: &PersistentVolumeClaim) -> bool {
    let class = claim_class(c);
    !class.is_empty()
        && state
            .class(class)
            .is_some_and(|sc| sc.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer"))
}

/// Whether `pv.spec.claimRef` names this claim (and, when it carries a uid, this very claim).
fn bound_to_claim(pv: &PersistentVolume, c: &PersistentVolumeClaim) -> bool {
    let Some(r) = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else {
        return false;
    };
    r.name == c.metadata.name
        && r.namespace == c.metadata.namespace
        && r.uid
            .as_deref()
            .is_none_or(|u| u.is_empty() || Some(u) == c.metadata.uid.as_deref())
}

/// Upstream `CheckNodeAffinity`: no required node affinity fits every node.
pub fn volume_fits_node(pv: &PersistentVolume, node: &str, labels: &Labels) -> bool {
    match pv
        .spec
        .as_ref()
        .and_then(|s| s.node_affinity.as_ref())
        .and_then(|a| a.required.as_ref())
    {
        Some(sel) => {
            let terms: Vec<NodeTerm> = sel
                .node_selector_terms
                .iter()
                .map(NodeTerm::from_term)
                .collect();
            node_terms_match(&terms, node, labels)
        }
        None => true,
    }
}

/// Upstream `MatchTopologySelectorTerms` on a class's `allowedTopologies`: none allows every
/// node; terms are ORed, an empty term selects nothing, each expression is `key In values`.
fn topology_allows(sc: &StorageClass, labels: &Labels) -> bool {
    let Some(terms) = sc.allowed_topologies.as_ref().filter(|t| !t.is_empty()) else {
        return true;
    };
    terms.iter().any(|t| {
        let exprs = t.match_label_expressions.as_deref().unwrap_or_default();
        !exprs.is_empty()
            && exprs
                .iter()
                .all(|e| labels.get(&e.key).is_some_and(|v| e.values.contains(v)))
    })
}

/// Whether a free (or pre-bound) volume can serve `c` on `node`: upstream `FindMatchingVolume`
/// on the scheduler path (delay binding with a node).
fn volume_matches(pv: &PersistentVolume, c: &PersistentVolumeClaim, node: &NodeInfo) -> bool {
    if pv.metadata.deletion_timestamp.is_some() {
        return false;
    }
    let spec = pv.spec.as_ref();
    let claim_spec = c.spec.as_ref();
    let mode = |m: Option<&String>| m.map(String::as_str).unwrap_or("Filesystem").to_string();
    if mode(spec.and_then(|s| s.volume_mode.as_ref()))
        != mode(claim_spec.and_then(|s| s.volume_mode.as_ref()))
    {
        return false;
    }
    if capacity_bytes(pv) < requested_bytes(c) || volume_class(pv) != claim_class(c) {
        return false;
    }
    let fits = volume_fits_node(pv, &node.name, &node.labels);
    if bound_to_claim(pv, c) {
        // A volume pre-bound to the claim is its only candidate, usable only where it fits.
        return fits;
    }
    if spec.is_some_and(|s| s.claim_ref.is_some()) || !fits {
        return false;
    }
    let phase = pv.status.as_ref().and_then(|s| s.phase.as_deref());
    if matches!(phase, Some("Released" | "Failed" | "Bound")) {
        return false;
    }
    let modes = spec.and_then(|s| s.access_modes.as_deref()).unwrap_or(&[]);
    let wanted = claim_spec
        .and_then(|s| s.access_modes.as_deref())
        .unwrap_or(&[]);
    if !wanted.iter().all(|m| modes.contains(m)) {
        return false;
    }
    match claim_spec.and_then(|s| s.selector.as_ref()) {
        Some(ls) => Selector::from_label_selector(ls)
            .matches(&pv.metadata.labels.clone().unwrap_or_default()),
        None => true,
    }
}

/// The pod's claims sorted by what they need (upstream `PodVolumeClaims`), written by
/// PreFilter into the cycle state.
#[derive(Debug, Clone, Default)]
pub struct PodClaims {
    /// Fully bound claims with their volume (`None`: the volume does not exist).
    bound: Vec<(Arc<PersistentVolumeClaim>, Option<Arc<PersistentVolume>>)>,
    /// Unbound WaitForFirstConsumer claims, smallest request first.
    delayed: Vec<Arc<PersistentVolumeClaim>>,
    /// Volumes of the delayed claims' classes that are free or pre-bound to one of them.
    candidates: HashMap<String, Vec<Arc<PersistentVolume>>>,
    classes: HashMap<String, Arc<StorageClass>>,
}

/// Upstream's `podHasPVCs` + `GetPodVolumeClaims` + the PreFilter verdict.
pub fn collect(state: &VolumeState, pod: &PodInfo) -> Result<PodClaims, Status> {
    let mut out = PodClaims::default();
    let mut immediate = 0;
    for name in &pod.pvc_names {
        let Some(c) = state.pvc(&pod.namespace, name) else {
            return Err(Status::unresolvable(format!(
                "persistentvolumeclaim \"{name}\" not found"
            )));
        };
        if c.metadata.deletion_timestamp.is_some() {
            return Err(Status::unresolvable(format!(
                "persistentvolumeclaim \"{name}\" is being deleted"
            )));
        }
        if fully_bound(c) {
            let pv = volume_name(c).and_then(|v| state.pv(v)).cloned();
            out.bound.push((c.clone(), pv));
        } else if delay_binding(state, c) && volume_name(c).is_none() {
            out.delayed.push(c.clone());
        } else {
            // Immediate claims (and claims pre-bound by volumeName) are the PV controller's.
            immediate += 1;
        }
    }
    if immediate > 0 {
        return Err(Status::unresolvable(ERR_UNBOUND_IMMEDIATE));
    }
    out.delayed.sort_by_key(|c| requested_bytes(c));
    let wanted: HashSet<&str> = out.delayed.iter().map(|c| claim_class(c)).collect();
    for class in &wanted {
        if let Some(sc) = state.class(class) {
            out.classes.insert(class.to_string(), sc.clone());
        }
    }
    if !out.delayed.is_empty() {
        for pv in state.volumes() {
            let class = volume_class(pv);
            if !wanted.contains(class) {
                continue;
            }
            let free = pv.spec.as_ref().is_none_or(|s| s.claim_ref.is_none());
            if free || out.delayed.iter().any(|c| bound_to_claim(pv, c)) {
                out.candidates
                    .entry(class.to_string())
                    .or_default()
                    .push(pv.clone());
            }
        }
        // Deterministic choice among equal capacities.
        for list in out.candidates.values_mut() {
            list.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        }
    }
    Ok(out)
}

/// What binding the pod's claims on one node takes (upstream `PodVolumes`).
#[derive(Debug, Clone, Default)]
pub struct NodeVolumes {
    /// (claim, static volume) pairs to pre-bind.
    pub bindings: Vec<(Arc<PersistentVolumeClaim>, Arc<PersistentVolume>)>,
    /// Claims to provision dynamically on the node.
    pub provisions: Vec<Arc<PersistentVolumeClaim>>,
}

/// Upstream `FindPodVolumes`: the bindings for `node`, or the Filter reasons.
pub fn find(claims: &PodClaims, node: &NodeInfo) -> Result<NodeVolumes, Vec<String>> {
    let mut bound_ok = true;
    let mut pvs_found = true;
    for (_, pv) in &claims.bound {
        match pv {
            None => {
                bound_ok = false;
                pvs_found = false;
                break;
            }
            Some(pv) if !volume_fits_node(pv, &node.name, &node.labels) => {
                bound_ok = false;
                break;
            }
            Some(_) => {}
        }
    }
    let mut out = NodeVolumes::default();
    let mut unbound_ok = true;
    let mut to_match = Vec::new();
    for c in &claims.delayed {
        match annotation(&c.metadata, ANN_SELECTED_NODE) {
            Some(n) if n != node.name => {
                unbound_ok = false;
                break;
            }
            Some(_) => out.provisions.push(c.clone()),
            None => to_match.push(c.clone()),
        }
    }
    if unbound_ok {
        let mut chosen: HashSet<&str> = HashSet::new();
        for c in to_match {
            let best = claims
                .candidates
                .get(claim_class(&c))
                .into_iter()
                .flatten()
                .filter(|pv| !chosen.contains(pv.metadata.name.as_deref().unwrap_or("")))
                .filter(|pv| volume_matches(pv, &c, node))
                // Pre-bound first, then the smallest that fits.
                .min_by_key(|pv| (!bound_to_claim(pv, &c), capacity_bytes(pv)));
            match best {
                Some(pv) => {
                    chosen.insert(pv.metadata.name.as_deref().unwrap_or(""));
                    out.bindings.push((c, pv.clone()));
                }
                None => out.provisions.push(c),
            }
        }
        // Upstream `checkVolumeProvisions`: a provisioner that can create volumes this node
        // may use.
        for c in &out.provisions {
            let ok = claims.classes.get(claim_class(c)).is_some_and(|sc| {
                !sc.provisioner.is_empty()
                    && sc.provisioner != NOT_SUPPORTED_PROVISIONER
                    && topology_allows(sc, &node.labels)
            });
            if !ok {
                unbound_ok = false;
                break;
            }
        }
    }
    let mut reasons = Vec::new();
    if !bound_ok {
        reasons.push(ERR_REASON_NODE_CONFLICT.to_string());
    }
    if !unbound_ok {
        reasons.push(ERR_REASON_BIND_CONFLICT.to_string());
    }
    if !pvs_found {
        reasons.push(ERR_REASON_PV_NOT_EXIST.to_string());
    }
    if reasons.is_empty() {
        Ok(out)
    } else {
        Err(reasons)
    }
}

/// The API writes and the wait condition of one pod's PreBind (upstream's assumed bindings).
#[derive(Debug, Clone, Default)]
pub struct PodVolumes {
    pub node: String,
    /// Volumes with `claimRef` set to their claim, to write with `replace`.
    pub bindings: Vec<PersistentVolume>,
    /// Claims with `selected-node` set, to write with `replace`.
    pub provisions: Vec<PersistentVolumeClaim>,
    /// `(namespace, name)` of every claim of the pod, fully bound before the pod is bound.
    pub claims: Vec<(String, String)>,
}

impl PodVolumes {
    /// Whether PreBind has nothing to do (every claim was fully bound already).
    pub fn all_bound(&self) -> bool {
        self.bindings.is_empty() && self.provisions.is_empty()
    }
}

fn claim_reference(c: &PersistentVolumeClaim) -> ObjectReference {
    ObjectReference {
        kind: Some("PersistentVolumeClaim".into()),
        api_version: Some("v1".into()),
        namespace: c.metadata.namespace.clone(),
        name: c.metadata.name.clone(),
        uid: c.metadata.uid.clone(),
        resource_version: c.metadata.resource_version.clone(),
        field_path: None,
    }
}

/// Reserve (upstream `AssumePodVolumes`): recomputes the bindings for the chosen node,
/// records them as assumed in the cache (so the next cycle does not hand the same volume to
/// another claim) and returns PreBind's work. `None` when the pod has no claims.
pub fn reserve(
    cache: &VolumeCache,
    pod: &PodInfo,
    node: &NodeInfo,
) -> Result<Option<PodVolumes>, Status> {
    if pod.pvc_names.is_empty() {
        return Ok(None);
    }
    let mut state = cache.write();
    let claims = collect(&state, pod)?;
    let found = find(&claims, node).map_err(|reasons| Status {
        code: Code::UnschedulableAndUnresolvable,
        reasons: reasons.into_iter().map(Into::into).collect(),
        plugin: NAME,
    })?;
    let mut plan = PodVolumes {
        node: node.name.clone(),
        claims: pod
            .pvc_names
            .iter()
            .map(|n| (pod.namespace.clone(), n.clone()))
            .collect(),
        ..Default::default()
    };
    for (c, pv) in found.bindings {
        if bound_to_claim(&pv, &c)
            && pv
                .spec
                .as_ref()
                .and_then(|s| s.claim_ref.as_ref())
                .is_some_and(|r| r.uid.is_some())
        {
            // Already pre-bound (by an admin, a provisioner or an earlier cycle): the PV
            // controller finishes it, PreBind only waits.
            continue;
        }
        let mut pv = (*pv).clone();
        pv.metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(ANN_BOUND_BY_CONTROLLER.into(), "yes".into());
        pv.spec.get_or_insert_with(Default::default).claim_ref = Some(claim_reference(&c));
        state.assumed_pvs.insert(
            pv.metadata.name.clone().unwrap_or_default(),
            Arc::new(pv.clone()),
        );
        plan.bindings.push(pv);
    }
    for c in found.provisions {
        let mut c = (*c).clone();
        c.metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(ANN_SELECTED_NODE.into(), node.name.clone());
        let k = claim_key(
            c.metadata.namespace.as_deref().unwrap_or(""),
            c.metadata.name.as_deref().unwrap_or(""),
        );
        state.assumed_pvcs.insert(k, Arc::new(c.clone()));
        plan.provisions.push(c);
    }
    // Claims waiting on a binding that is not ours still make PreBind wait.
    let pending = claims.delayed.len();
    if plan.all_bound() && pending == 0 {
        plan.claims.clear();
    }
    Ok(Some(plan))
}

/// Unreserve (upstream `RevertAssumedPodVolumes`): the cache shows the informers' versions again.
pub fn unreserve(cache: &VolumeCache, plan: &PodVolumes) {
    let mut state = cache.write();
    for pv in &plan.bindings {
        if let Some(n) = &pv.metadata.name {
            state.assumed_pvs.remove(n);
        }
    }
    for c in &plan.provisions {
        let k = claim_key(
            c.metadata.namespace.as_deref().unwrap_or(""),
            c.metadata.name.as_deref().unwrap_or(""),
        );
        state.assumed_pvcs.remove(&k);
    }
}

/// PreBind's wait condition (upstream `checkBindings`) against the informers' versions, after
/// PreBind wrote `written_pvs` / `written_pvcs` (the objects the API server returned):
/// `Ok(true)` when every claim of the pod is fully bound to a volume that fits the node,
/// `Ok(false)` to keep waiting, `Err` when the binding cannot complete any more.
pub fn check_bindings(
    state: &VolumeState,
    plan: &PodVolumes,
    node_labels: &Labels,
    written_pvs: &[PersistentVolume],
    written_pvcs: &[PersistentVolumeClaim],
) -> Result<bool, String> {
    for w in written_pvs {
        let name = w.metadata.name.as_deref().unwrap_or("");
        let Some(pv) = state.api_pv(name) else {
            return Err(format!("failed to get pv {name:?} from cache"));
        };
        if rv(&w.metadata) > rv(&pv.metadata) {
            // The informer has not caught up with our own write yet.
            return Ok(false);
        }
        let wanted = w.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
        let have = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
        match (wanted, have) {
            (Some(want), Some(r)) if r.uid.is_some() && r.uid == want.uid => {}
            _ => return Err(format!("ClaimRef got reset for pv {name:?}")),
        }
    }
    for w in written_pvcs {
        let ns = w.metadata.namespace.as_deref().unwrap_or("");
        let name = w.metadata.name.as_deref().unwrap_or("");
        let Some(c) = state.api_pvc(ns, name) else {
            return Err(format!("failed to get pvc \"{ns}/{name}\" from cache"));
        };
        if rv(&w.metadata) > rv(&c.metadata) {
            return Ok(false);
        }
        if annotation(&c.metadata, ANN_SELECTED_NODE) != Some(plan.node.as_str()) {
            // A provisioner that gave up clears the annotation to ask for another node.
            return Err(format!("provisioning failed for PVC {name:?}"));
        }
    }
    for (ns, name) in &plan.claims {
        let Some(c) = state.api_pvc(ns, name) else {
            return Err(format!("failed to get pvc \"{ns}/{name}\" from cache"));
        };
        if !fully_bound(c) {
            return Ok(false);
        }
        let vn = volume_name(c).unwrap_or("");
        let Some(pv) = state.api_pv(vn) else {
            // Bound to a volume the informer has not delivered yet.
            return Ok(false);
        };
        if !volume_fits_node(pv, &plan.node, node_labels) {
            return Err(format!(
                "pv {vn:?} node affinity doesn't match node {:?}: no matching NodeSelectorTerms",
                plan.node
            ));
        }
    }
    Ok(true)
}

pub struct VolumeBinding;

impl Plugin for VolumeBinding {
    fn name(&self) -> &'static str {
        NAME
    }
    fn pre_filter(&self, cx: &mut CycleState, pod: &PodInfo, snap: &Snapshot) -> Status {
        if pod.pvc_names.is_empty() {
            return Status::skip();
        }
        let claims = {
            let state = snap.volumes.read();
            collect(&state, pod)
        };
        match claims {
            Ok(c) => {
                cx.write(NAME, c);
                Status::success()
            }
            Err(s) => s,
        }
    }
    fn filter(&self, cx: &CycleState, _pod: &PodInfo, node: &NodeInfo, _s: &Snapshot) -> Status {
        let Some(claims) = cx.read::<PodClaims>(NAME) else {
            return Status::error("VolumeBinding: no PreFilter state");
        };
        match find(claims, node) {
            Ok(_) => Status::success(),
            Err(reasons) => Status {
                code: Code::UnschedulableAndUnresolvable,
                reasons: reasons.into_iter().map(Into::into).collect(),
                plugin: "",
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::{FitError, Framework, ScheduleError};
    use crate::plugins::testutil::*;
    use k8s_openapi::api::core::v1::{
        NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, PersistentVolumeClaimSpec,
        PersistentVolumeSpec, TopologySelectorLabelRequirement, TopologySelectorTerm,
        VolumeNodeAffinity, VolumeResourceRequirements,
    };
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn class(name: &str, mode: &str, provisioner: &str) -> StorageClass {
        StorageClass {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            provisioner: provisioner.into(),
            volume_binding_mode: Some(mode.into()),
            ..Default::default()
        }
    }

    fn claim(name: &str, class: &str, size: &str) -> PersistentVolumeClaim {
        PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                uid: Some(format!("uid-{name}")),
                resource_version: Some("10".into()),
                ..Default::default()
            },
            spec: Some(PersistentVolumeClaimSpec {
                storage_class_name: Some(class.into()),
                access_modes: Some(vec!["ReadWriteOnce".into()]),
                resources: Some(VolumeResourceRequirements {
                    requests: Some(BTreeMap::from([("storage".into(), Quantity(size.into()))])),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn bound_claim(name: &str, class: &str, pv: &str) -> PersistentVolumeClaim {
        let mut c = claim(name, class, "1Gi");
        c.spec
            .iter_mut()
            .for_each(|s| s.volume_name = Some(pv.into()));
        c.metadata.annotations = Some(BTreeMap::from([(
            ANN_BIND_COMPLETED.to_string(),
            "yes".to_string(),
        )]));
        c
    }

    /// A volume with node affinity `kubernetes.io/hostname In [host]` when `host` is given.
    fn volume(name: &str, class: &str, size: &str, host: Option<&str>) -> PersistentVolume {
        PersistentVolume {
            metadata: ObjectMeta {
                name: Some(name.into()),
                resource_version: Some("5".into()),
                ..Default::default()
            },
            spec: Some(PersistentVolumeSpec {
                storage_class_name: Some(class.into()),
                access_modes: Some(vec!["ReadWriteOnce".into()]),
                capacity: Some(BTreeMap::from([("storage".into(), Quantity(size.into()))])),
                node_affinity: host.map(|h| VolumeNodeAffinity {
                    required: Some(NodeSelector {
                        node_selector_terms: vec![NodeSelectorTerm {
                            match_expressions: Some(vec![NodeSelectorRequirement {
                                key: "kubernetes.io/hostname".into(),
                                operator: "In".into(),
                                values: Some(vec![h.into()]),
                            }]),
                            ..Default::default()
                        }],
                    }),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn host(name: &str) -> NodeInfo {
        labeled(node(name), &[("kubernetes.io/hostname", name)])
    }

    fn setup(
        classes: Vec<StorageClass>,
        claims: Vec<PersistentVolumeClaim>,
        pvs: Vec<PersistentVolume>,
    ) -> Snapshot {
        let snap = snapshot(vec![host("a"), host("b")]);
        {
            let mut s = snap.volumes.write();
            for c in classes {
                s.apply_class(c);
            }
            for c in claims {
                s.apply_pvc(c);
            }
            for p in pvs {
                s.apply_pv(p);
            }
        }
        snap
    }

    fn pod_with(claims: &[&str]) -> PodInfo {
        let mut p = pod_info("p");
        p.pvc_names = claims.iter().map(|c| c.to_string()).collect();
        p
    }

    fn unfit(snap: &Snapshot, pod: &PodInfo) -> Box<FitError> {
        match Framework::with_defaults().schedule(snap, pod) {
            Err(ScheduleError::Unfit(e)) => e,
            other => panic!("expected unfit, got {other:?}"),
        }
    }

    fn placed(snap: &Snapshot, pod: &PodInfo) -> String {
        match Framework::with_defaults().schedule(snap, pod) {
            Ok(d) => d.node,
            other => panic!("expected a node, got {other:?}"),
        }
    }

    #[test]
    fn pods_without_claims_are_skipped() {
        let snap = setup(vec![], vec![], vec![]);
        let mut cx = CycleState::default();
        assert_eq!(
            VolumeBinding
                .pre_filter(&mut cx, &pod_info("p"), &snap)
                .code,
            Code::Skip
        );
    }

    #[test]
    fn missing_and_terminating_claims_are_unresolvable() {
        let mut gone = claim("gone", "", "1Gi");
        gone.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::UNIX_EPOCH),
        );
        let snap = setup(vec![], vec![gone], vec![]);
        let e = unfit(&snap, &pod_with(&["x"]));
        assert_eq!(
            e.message(),
            "0/2 nodes are available: persistentvolumeclaim \"x\" not found."
        );
        let e = unfit(&snap, &pod_with(&["gone"]));
        assert_eq!(
            e.message(),
            "0/2 nodes are available: persistentvolumeclaim \"gone\" is being deleted."
        );
    }

    #[test]
    fn unbound_immediate_claims_reject_the_pod() {
        let snap = setup(
            vec![class("fast", "Immediate", "x.csi")],
            vec![
                claim("imm", "fast", "1Gi"),
                claim("noclass", "", "1Gi"),
                claim("missingclass", "nope", "1Gi"),
            ],
            vec![],
        );
        for c in ["imm", "noclass", "missingclass"] {
            let e = unfit(&snap, &pod_with(&[c]));
            assert_eq!(
                e.message(),
                "0/2 nodes are available: pod has unbound immediate PersistentVolumeClaims."
            );
        }
    }

    #[test]
    fn bound_volume_node_affinity_picks_its_node() {
        let snap = setup(
            vec![],
            vec![bound_claim("data", "local", "pv-b")],
            vec![volume("pv-b", "local", "1Gi", Some("b"))],
        );
        let pod = pod_with(&["data"]);
        for _ in 0..5 {
            assert_eq!(placed(&snap, &pod), "b");
        }
        let cx = {
            let mut cx = CycleState::default();
            assert!(VolumeBinding.pre_filter(&mut cx, &pod, &snap).is_success());
            cx
        };
        assert_eq!(
            VolumeBinding.filter(&cx, &pod, &snap.nodes[0], &snap),
            Status {
                code: Code::UnschedulableAndUnresolvable,
                reasons: vec![ERR_REASON_NODE_CONFLICT.into()],
                plugin: "",
            }
        );
    }

    #[test]
    fn volume_node_affinity_conflict_message() {
        let snap = setup(
            vec![],
            vec![bound_claim("data", "local", "pv-c")],
            vec![volume("pv-c", "local", "1Gi", Some("c"))],
        );
        let e = unfit(&snap, &pod_with(&["data"]));
        assert_eq!(
            e.message(),
            "0/2 nodes are available: 2 node(s) had volume node affinity conflict."
        );
    }

    #[test]
    fn bound_to_a_missing_volume() {
        let snap = setup(vec![], vec![bound_claim("data", "local", "nope")], vec![]);
        let e = unfit(&snap, &pod_with(&["data"]));
        assert_eq!(
            e.message(),
            "0/2 nodes are available: 2 node(s) had volume node affinity conflict, 2 node(s) \
             unavailable due to one or more pvc(s) bound to non-existent pv(s)."
        );
    }

    #[test]
    fn wffc_static_volume_chooses_the_node_and_the_smallest_fit() {
        let snap = setup(
            vec![class(
                "local",
                "WaitForFirstConsumer",
                NOT_SUPPORTED_PROVISIONER,
            )],
            vec![claim("data", "local", "1Gi")],
            vec![
                volume("big-b", "local", "10Gi", Some("b")),
                volume("small-b", "local", "2Gi", Some("b")),
                volume("tiny-a", "local", "500Mi", Some("a")),
            ],
        );
        let pod = pod_with(&["data"]);
        assert_eq!(placed(&snap, &pod), "b");
        let plan = reserve(&snap.volumes, &pod, &snap.nodes[1])
            .expect("reserve")
            .expect("a plan");
        assert_eq!(plan.bindings.len(), 1);
        let pv = &plan.bindings[0];
        assert_eq!(pv.metadata.name.as_deref(), Some("small-b"));
        let r = pv
            .spec
            .as_ref()
            .and_then(|s| s.claim_ref.as_ref())
            .expect("claimRef");
        assert_eq!(r.uid.as_deref(), Some("uid-data"));
        assert_eq!(r.name.as_deref(), Some("data"));
        assert_eq!(
            annotation(&pv.metadata, ANN_BOUND_BY_CONTROLLER),
            Some("yes")
        );
        assert!(plan.provisions.is_empty());
        // The assumed volume is taken: another claim of the class sees only big-b.
        {
            let mut s = snap.volumes.write();
            s.apply_pvc(claim("other", "local", "1Gi"));
        }
        let other = pod_with(&["other"]);
        let plan2 = reserve(&snap.volumes, &other, &snap.nodes[1])
            .expect("reserve")
            .expect("plan");
        assert_eq!(plan2.bindings[0].metadata.name.as_deref(), Some("big-b"));
        // Unreserve gives small-b back.
        unreserve(&snap.volumes, &plan);
        unreserve(&snap.volumes, &plan2);
        let plan3 = reserve(&snap.volumes, &other, &snap.nodes[1])
            .expect("reserve")
            .expect("plan");
        assert_eq!(plan3.bindings[0].metadata.name.as_deref(), Some("small-b"));
    }

    #[test]
    fn wffc_without_volume_or_provisioner_is_a_bind_conflict() {
        let mut ro = volume("ro-a", "local", "5Gi", Some("a"));
        ro.spec
            .iter_mut()
            .for_each(|s| s.access_modes = Some(vec!["ReadOnlyMany".into()]));
        let mut labeled_pv = volume("lab-b", "local", "5Gi", Some("b"));
        labeled_pv.metadata.labels = Some(BTreeMap::from([("tier".into(), "gold".into())]));
        let mut c = claim("data", "local", "1Gi");
        c.spec.iter_mut().for_each(|s| {
            s.selector = Some(
                k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector {
                    match_labels: Some(BTreeMap::from([("tier".into(), "silver".into())])),
                    ..Default::default()
                },
            )
        });
        let snap = setup(
            vec![class(
                "local",
                "WaitForFirstConsumer",
                NOT_SUPPORTED_PROVISIONER,
            )],
            vec![c],
            vec![
                ro,
                labeled_pv,
                volume("small-a", "local", "100Mi", Some("a")),
            ],
        );
        let e = unfit(&snap, &pod_with(&["data"]));
        assert_eq!(
            e.message(),
            "0/2 nodes are available: 2 node(s) didn't find available persistent volumes to bind."
        );
    }

    #[test]
    fn wffc_provisioning_follows_allowed_topologies() {
        let mut sc = class("zonal", "WaitForFirstConsumer", "local.csi.skiff.dev");
        sc.allowed_topologies = Some(vec![TopologySelectorTerm {
            match_label_expressions: Some(vec![TopologySelectorLabelRequirement {
                key: "kubernetes.io/hostname".into(),
                values: vec!["a".into()],
            }]),
        }]);
        let snap = setup(vec![sc], vec![claim("dyn", "zonal", "1Gi")], vec![]);
        let pod = pod_with(&["dyn"]);
        assert_eq!(placed(&snap, &pod), "a");
        let plan = reserve(&snap.volumes, &pod, &snap.nodes[0])
            .expect("reserve")
            .expect("plan");
        assert!(plan.bindings.is_empty());
        assert_eq!(plan.provisions.len(), 1);
        assert_eq!(
            annotation(&plan.provisions[0].metadata, ANN_SELECTED_NODE),
            Some("a")
        );
        // Assumed: a second pod sharing the claim follows it to node a.
        let s = snap.volumes.read();
        let c = s.pvc("default", "dyn").expect("claim");
        assert_eq!(annotation(&c.metadata, ANN_SELECTED_NODE), Some("a"));
        drop(s);
        // Refused on b.
        let mut cx = CycleState::default();
        let _ = VolumeBinding.pre_filter(&mut cx, &pod, &snap);
        assert_eq!(
            VolumeBinding
                .filter(&cx, &pod, &snap.nodes[1], &snap)
                .reasons,
            vec![ERR_REASON_BIND_CONFLICT.to_string()]
        );
    }

    #[test]
    fn selected_node_pins_the_claim() {
        let mut c = claim("dyn", "lp", "1Gi");
        c.metadata.annotations = Some(BTreeMap::from([(
            ANN_SELECTED_NODE.to_string(),
            "b".to_string(),
        )]));
        let snap = setup(
            vec![class("lp", "WaitForFirstConsumer", "local.csi.skiff.dev")],
            vec![c],
            vec![],
        );
        assert_eq!(placed(&snap, &pod_with(&["dyn"])), "b");
    }

    #[test]
    fn informer_versions_replace_assumptions_and_check_bindings_waits() {
        let snap = setup(
            vec![class("lp", "WaitForFirstConsumer", "local.csi.skiff.dev")],
            vec![claim("dyn", "lp", "1Gi")],
            vec![],
        );
        let pod = pod_with(&["dyn"]);
        let plan = reserve(&snap.volumes, &pod, &snap.nodes[0])
            .expect("reserve")
            .expect("plan");
        let labels = snap.nodes[0].labels.clone();
        // PreBind wrote the claim: the server answered with resourceVersion 11.
        let mut written = plan.provisions[0].clone();
        written.metadata.resource_version = Some("11".into());
        let written = vec![written];
        let check = |s: &VolumeState| check_bindings(s, &plan, &labels, &[], &written);
        assert_eq!(check(&snap.volumes.read()), Ok(false), "informer behind");
        snap.volumes.write().apply_pvc(written[0].clone());
        assert_eq!(check(&snap.volumes.read()), Ok(false), "not bound yet");
        // The provisioner made a volume for node a and the PV controller bound it.
        let mut bound = bound_claim("dyn", "lp", "pvc-1");
        bound.metadata.annotations.iter_mut().for_each(|a| {
            a.insert(ANN_SELECTED_NODE.into(), "a".into());
        });
        bound.metadata.resource_version = Some("12".into());
        snap.volumes.write().apply_pvc(bound.clone());
        assert_eq!(check(&snap.volumes.read()), Ok(false), "volume not seen");
        snap.volumes
            .write()
            .apply_pv(volume("pvc-1", "lp", "1Gi", Some("a")));
        assert_eq!(check(&snap.volumes.read()), Ok(true));
        // A provisioner that gives up clears selected-node: PreBind fails.
        let mut reset = claim("dyn", "lp", "1Gi");
        reset.metadata.resource_version = Some("13".into());
        snap.volumes.write().apply_pvc(reset);
        assert_eq!(
            check(&snap.volumes.read()),
            Err("provisioning failed for PVC \"dyn\"".into())
        );
    }

    #[test]
    fn prebound_volume_only_where_it_fits() {
        let mut pv = volume("mine", "local", "1Gi", Some("b"));
        pv.spec.iter_mut().for_each(|s| {
            s.claim_ref = Some(ObjectReference {
                name: Some("data".into()),
                namespace: Some("default".into()),
                ..Default::default()
            })
        });
        let snap = setup(
            vec![class(
                "local",
                "WaitForFirstConsumer",
                NOT_SUPPORTED_PROVISIONER,
            )],
            vec![claim("data", "local", "1Gi")],
            vec![pv, volume("free-a", "local", "1Gi", Some("a"))],
        );
        let pod = pod_with(&["data"]);
        // On b the claim's own pre-bound volume wins over any free one.
        let plan = reserve(&snap.volumes, &pod, &snap.nodes[1])
            .expect("reserve")
            .expect("plan");
        assert_eq!(plan.bindings[0].metadata.name.as_deref(), Some("mine"));
    }
}
