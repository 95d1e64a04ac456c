//! Which PersistentVolume fits a claim, as upstream's `findMatchingVolume`: pre-bound volumes
//! first, then the volume with the fewest access modes covering the claim's and, among those,
//! the smallest capacity that fits.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    NodeSelector, NodeSelectorRequirement, PersistentVolume, PersistentVolumeClaim,
};
use kube::core::{Selector, SelectorExt};

use super::quantity;

/// The claim's class (`""` for none).
pub fn claim_class(claim: &PersistentVolumeClaim) -> &str {
    claim
        .spec
        .as_ref()
        .and_then(|s| s.storage_class_name.as_deref())
        .unwrap_or("")
}

/// The volume's class (`""` for none).
pub fn volume_class(pv: &PersistentVolume) -> &str {
    pv.spec
        .as_ref()
        .and_then(|s| s.storage_class_name.as_deref())
        .unwrap_or("")
}

/// Requested bytes (`spec.resources.requests.storage`), 0 when absent.
pub fn requested_bytes(claim: &PersistentVolumeClaim) -> u128 {
    claim
        .spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .and_then(|q| quantity::bytes(&q.0))
        .unwrap_or(0)
}

/// The volume's capacity in bytes, 0 when absent.
pub fn capacity_bytes(pv: &PersistentVolume) -> u128 {
    pv.spec
        .as_ref()
        .and_then(|s| s.capacity.as_ref())
        .and_then(|c| c.get("storage"))
        .and_then(|q| quantity::bytes(&q.0))
        .unwrap_or(0)
}

fn claim_modes(claim: &PersistentVolumeClaim) -> Vec<String> {
    claim
        .spec
        .as_ref()
        .and_then(|s| s.access_modes.clone())
        .unwrap_or_default()
}

fn volume_modes(pv: &PersistentVolume) -> Vec<String> {
    pv.spec
        .as_ref()
        .and_then(|s| s.access_modes.clone())
        .unwrap_or_default()
}

/// Whether the claim's and the volume's `volumeMode` agree (both default to Filesystem).
pub fn volume_mode_matches(claim: &PersistentVolumeClaim, pv: &PersistentVolume) -> bool {
    let c = claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_mode.as_deref())
        .unwrap_or("Filesystem");
    let v = pv
        .spec
        .as_ref()
        .and_then(|s| s.volume_mode.as_deref())
        .unwrap_or("Filesystem");
    c == v
}

/// Whether `pv.spec.claimRef` names this claim (and, when it carries a uid, this very claim).
pub fn is_bound_to_claim(pv: &PersistentVolume, claim: &PersistentVolumeClaim) -> bool {
    let Some(r) = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else {
        return false;
    };
    r.name == claim.metadata.name
        && r.namespace == claim.metadata.namespace
        && r.uid
            .as_deref()
            .is_none_or(|u| u.is_empty() || Some(u) == claim.metadata.uid.as_deref())
}

fn requirement_matches(req: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = req.values.as_deref().unwrap_or_default();
    match req.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), Some(bound)) = (
                value.and_then(|v| v.parse::<i64>().ok()),
                values.first().and_then(|b| b.parse::<i64>().ok()),
            ) else {
                return false;
            };
            if req.operator == "Gt" {
                v > bound
            } else {
                v < bound
            }
        }
        _ => false,
    }
}

/// Whether a node (its name and labels) satisfies a required node selector: terms are ORed,
/// the requirements of one term ANDed, and an empty term matches nothing.
pub fn node_selector_matches(
    selector: &NodeSelector,
    node: &str,
    labels: &BTreeMap<String, String>,
) -> bool {
    selector.node_selector_terms.iter().any(|term| {
        let exprs = term.match_expressions.as_deref().unwrap_or_default();
        let fields = term.match_fields.as_deref().unwrap_or_default();
        if exprs.is_empty() && fields.is_empty() {
            return false;
        }
        exprs
            .iter()
            .all(|r| requirement_matches(r, labels.get(&r.key).map(String::as_str)))
            && fields.iter().all(|r| {
                let v = (r.key == "metadata.name").then_some(node);
                requirement_matches(r, v)
            })
    })
}

/// Whether the volume may be used on `node` (no node affinity means anywhere).
pub fn volume_fits_node(
    pv: &PersistentVolume,
    node: &str,
    labels: &BTreeMap<String, String>,
) -> bool {
    match pv
        .spec
        .as_ref()
        .and_then(|s| s.node_affinity.as_ref())
        .and_then(|a| a.required.as_ref())
    {
        Some(sel) => node_selector_matches(sel, node, labels),
        None => true,
    }
}

fn selector_matches(claim: &PersistentVolumeClaim, pv: &PersistentVolume) -> bool {
    let Some(ls) = claim.spec.as_ref().and_then(|s| s.selector.clone()) else {
        return true;
    };
    match Selector::try_from(ls) {
        Ok(sel) => sel.matches(&pv.metadata.labels.clone().unwrap_or_default()),
        // An invalid selector selects nothing (the claim stays Pending).
        Err(_) => false,
    }
}

/// The node a delayed-binding claim must bind on: its name and labels.
pub struct NodeInfo<'a> {
    /// The node's name.
    pub name: &'a str,
    /// The node's labels.
    pub labels: &'a BTreeMap<String, String>,
}

/// The best volume for `claim` among `volumes`, or `None`. With `delay_binding` and no node,
/// only volumes pre-bound to the claim qualify (the pod's node decides the rest).
pub fn find_best_match<'a>(
    claim: &PersistentVolumeClaim,
    volumes: &'a [PersistentVolume],
    delay_binding: bool,
    node: Option<&NodeInfo<'_>>,
) -> Option<&'a PersistentVolume> {
    let requested = requested_bytes(claim);
    let class = claim_class(claim);
    let wanted = claim_modes(claim);
    let fits_node =
        |pv: &PersistentVolume| node.is_none_or(|n| volume_fits_node(pv, n.name, n.labels));
    let mut best: Option<(&PersistentVolume, usize, u128)> = None;
    for pv in volumes {
        if pv.metadata.deletion_timestamp.is_some() || !volume_mode_matches(claim, pv) {
            continue;
        }
        let cap = capacity_bytes(pv);
        if is_bound_to_claim(pv, claim) {
            // As upstream, node affinity of a pre-bound volume is the scheduler's business:
            // a provisioner created it for the selected node.
            if cap >= requested && volume_class(pv) == class {
                return Some(pv);
            }
            continue;
        }
        if delay_binding && node.is_none() {
            continue;
        }
        if pv.spec.as_ref().is_some_and(|s| s.claim_ref.is_some()) {
            continue;
        }
        let phase = pv.status.as_ref().and_then(|s| s.phase.as_deref());
        if matches!(phase, Some("Released" | "Failed" | "Bound")) {
            continue;
        }
        let modes = volume_modes(pv);
        if !wanted.iter().all(|m| modes.contains(m))
            || !selector_matches(claim, pv)
            || volume_class(pv) != class
            || !fits_node(pv)
            || cap < requested
        {
            continue;
        }
        let better = match best {
            None => true,
            Some((_, n, c)) => (modes.len(), cap) < (n, c),
        };
        if better {
            best = Some((pv, modes.len(), cap));
        }
    }
    best.map(|(pv, _, _)| pv)
}

/// Why a volume named by `claim.spec.volumeName` cannot serve the claim (upstream's
/// `checkVolumeSatisfyClaim`), or `None` when it can.
pub fn volume_mismatch(claim: &PersistentVolumeClaim, pv: &PersistentVolume) -> Option<String> {
    if capacity_bytes(pv) < requested_bytes(claim) {
        return Some("requested PV is too small".into());
    }
    if volume_class(pv) != claim_class(claim) {
        return Some("storageClassName does not match".into());
    }
    if !volume_mode_matches(claim, pv) {
        return Some("incompatible volumeMode".into());
    }
    let modes = volume_modes(pv);
    if !claim_modes(claim).iter().all(|m| modes.contains(m)) {
        return Some("incompatible accessMode".into());
    }
    None
}
