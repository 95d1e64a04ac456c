//! Deployment arithmetic, as upstream's deployment/util: maxSurge/maxUnavailable fenceposts,
//! revisions and their annotations, how big the new ReplicaSet may grow, proportional scaling.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// The revision annotation on Deployments and their ReplicaSets.
pub const REVISION: &str = "deployment.kubernetes.io/revision";
/// Earlier revisions a reused ReplicaSet had (comma-separated).
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
/// The Deployment's replicas when the ReplicaSet was last scaled.
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
/// Replicas plus maxSurge when the ReplicaSet was last scaled.
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
/// Upstream caps revision-history at this many characters.
pub const MAX_REVISION_HISTORY_CHARS: usize = 2000;

/// Deployment annotations never copied onto ReplicaSets.
const NOT_COPIED: [&str; 6] = [
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    REVISION_HISTORY,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "deprecated.deployment.rollback.to",
];

/// `spec.replicas` (default 1).
pub fn replicas(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

/// A ReplicaSet's `spec.replicas` (default 1).
pub fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

/// A ReplicaSet's `status.replicas`.
pub fn rs_actual(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().map(|s| s.replicas).unwrap_or(0)
}

/// A ReplicaSet's `status.availableReplicas`.
pub fn rs_available(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0)
}

/// Available replicas the set can still have once it reaches `spec.replicas`: the status
/// count, but no more than the spec. A set just scaled down keeps reporting the pods it had
/// until the ReplicaSet controller has deleted the surplus (its status is computed from the
/// pods seen before the deletes), and it deletes not-ready pods first, so at most `spec`
/// of the available ones survive. Trusting the raw count lets the rollout scale old sets
/// down twice for the same availability and exceed maxUnavailable.
pub fn rs_available_bounded(rs: &ReplicaSet) -> i32 {
    rs_available(rs).min(rs_replicas(rs).max(0))
}

/// A ReplicaSet's `status.readyReplicas`.
pub fn rs_ready(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0)
}

/// Whether the Deployment rolls (rather than recreates).
pub fn is_rolling(d: &Deployment) -> bool {
    d.spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        .is_none_or(|t| t == "RollingUpdate")
}

/// An int-or-percent against `total`: percentages round up or down as asked.
pub fn scaled_value(v: &IntOrString, total: i32, round_up: bool) -> i32 {
    match v {
        IntOrString::Int(i) => *i,
        IntOrString::String(s) => {
            let Some(pct) = s
                .strip_suffix('%')
                .and_then(|p| p.trim().parse::<i64>().ok())
            else {
                // Validation rejects this; treat as zero rather than guess.
                return 0;
            };
            let product = pct * i64::from(total);
            let v = if round_up {
                (product + 99).div_euclid(100)
            } else {
                product.div_euclid(100)
            };
            i32::try_from(v).unwrap_or(i32::MAX)
        }
    }
}

/// (maxSurge, maxUnavailable) resolved against `spec.replicas`; never both zero.
pub fn fenceposts(d: &Deployment) -> (i32, i32) {
    let ru = d
        .spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref());
    let pct25 = IntOrString::String("25%".into());
    let surge = ru
        .and_then(|r| r.max_surge.clone())
        .unwrap_or_else(|| pct25.clone());
    let unavailable = ru.and_then(|r| r.max_unavailable.clone()).unwrap_or(pct25);
    let desired = replicas(d);
    let s = scaled_value(&surge, desired, true);
    let u = scaled_value(&unavailable, desired, false);
    if s == 0 && u == 0 { (0, 1) } else { (s, u) }
}

/// maxSurge as a count (0 for Recreate).
pub fn max_surge(d: &Deployment) -> i32 {
    if !is_rolling(d) {
        return 0;
    }
    fenceposts(d).0
}

/// maxUnavailable as a count, at most `spec.replicas` (0 for Recreate).
pub fn max_unavailable(d: &Deployment) -> i32 {
    if !is_rolling(d) || replicas(d) == 0 {
        return 0;
    }
    fenceposts(d).1.min(replicas(d))
}

/// The revision a ReplicaSet carries (0 if none).
pub fn revision(rs: &ReplicaSet) -> i64 {
    annotation(rs, REVISION)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn annotation<'a>(rs: &'a ReplicaSet, key: &str) -> Option<&'a str> {
    rs.metadata
        .annotations
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

/// The highest revision among `sets`.
pub fn max_revision<'a>(sets: impl IntoIterator<Item = &'a ReplicaSet>) -> i64 {
    sets.into_iter().map(revision).max().unwrap_or(0)
}

/// The `desired-replicas` annotation, if it parses.
pub fn desired_annotation(rs: &ReplicaSet) -> Option<i32> {
    annotation(rs, DESIRED_REPLICAS).and_then(|v| v.parse().ok())
}

fn max_annotation(rs: &ReplicaSet) -> Option<i32> {
    annotation(rs, MAX_REPLICAS).and_then(|v| v.parse().ok())
}

/// Whether the replica annotations differ from `desired`/`max`.
pub fn replicas_annotations_need_update(rs: &ReplicaSet, desired: i32, max: i32) -> bool {
    annotation(rs, DESIRED_REPLICAS) != Some(desired.to_string().as_str())
        || annotation(rs, MAX_REPLICAS) != Some(max.to_string().as_str())
}

/// Set `desired-replicas`/`max-replicas`; true if anything changed.
pub fn set_replicas_annotations(rs: &mut ReplicaSet, desired: i32, max: i32) -> bool {
    if !replicas_annotations_need_update(rs, desired, max) {
        return false;
    }
    let a = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    a.insert(DESIRED_REPLICAS.into(), desired.to_string());
    a.insert(MAX_REPLICAS.into(), max.to_string());
    true
}

/// Copy the Deployment's own annotations and set the new revision on its new ReplicaSet,
/// remembering a reused set's earlier revision in `revision-history`; true if changed.
pub fn set_new_replica_set_annotations(
    d: &Deployment,
    rs: &mut ReplicaSet,
    new_revision: i64,
    exists: bool,
) -> bool {
    let mut changed = false;
    let d_ann = d.metadata.annotations.clone().unwrap_or_default();
    let a = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    for (k, v) in d_ann {
        if NOT_COPIED.contains(&k.as_str()) || a.get(&k) == Some(&v) {
            continue;
        }
        a.insert(k, v);
        changed = true;
    }
    let old_revision = a.get(REVISION).cloned().unwrap_or_default();
    let old_int: i64 = old_revision.parse().unwrap_or(0);
    if old_int < new_revision {
        a.insert(REVISION.into(), new_revision.to_string());
        changed = true;
        if !old_revision.is_empty() {
            let mut history: Vec<String> = a
                .get(REVISION_HISTORY)
                .map(|h| {
                    h.split(',')
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default();
            history.push(old_revision);
            // Keep the newest revisions within the length cap.
            while history.join(",").len() > MAX_REVISION_HISTORY_CHARS && history.len() > 1 {
                history.remove(0);
            }
            a.insert(REVISION_HISTORY.into(), history.join(","));
        }
    }
    if !exists && set_replicas_annotations(rs, replicas(d), replicas(d) + max_surge(d)) {
        changed = true;
    }
    changed
}

/// How many replicas the new ReplicaSet may have now.
pub fn new_rs_new_replicas(d: &Deployment, all: &[&ReplicaSet], new_rs: &ReplicaSet) -> i32 {
    if !is_rolling(d) {
        return replicas(d);
    }
    let current: i32 = all.iter().map(|rs| rs_replicas(rs)).sum();
    let max_total = replicas(d) + max_surge(d);
    if current >= max_total {
        return rs_replicas(new_rs);
    }
    let up = (max_total - current).min(replicas(d) - rs_replicas(new_rs));
    rs_replicas(new_rs) + up
}

/// Whether the set is active (wants or has pods).
pub fn is_active(rs: &ReplicaSet) -> bool {
    rs_replicas(rs) > 0
}

/// The new set is at full size and fully available.
pub fn is_saturated(d: &Deployment, rs: &ReplicaSet) -> bool {
    rs_replicas(rs) == replicas(d)
        && desired_annotation(rs) == Some(replicas(d))
        && rs_available(rs) == replicas(d)
}

/// How many replicas proportional scaling adds to (or takes from) `rs`.
pub fn proportion(d: &Deployment, rs: &ReplicaSet, to_add: i32, added: i32) -> i32 {
    if rs_replicas(rs) == 0 || to_add == 0 || to_add == added {
        return 0;
    }
    let fraction = if replicas(d) == 0 {
        -rs_replicas(rs)
    } else {
        let deployment_replicas = replicas(d) + max_surge(d);
        let annotated = max_annotation(rs)
            .unwrap_or_else(|| d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0));
        if annotated == 0 {
            0
        } else {
            let size =
                f64::from(rs_replicas(rs)) * f64::from(deployment_replicas) / f64::from(annotated);
            size.round() as i32 - rs_replicas(rs)
        }
    };
    let allowed = to_add - added;
    if to_add > 0 {
        fraction.min(allowed)
    } else {
        fraction.max(allowed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment};

    fn d(replicas: i32, surge: IntOrString, unavailable: IntOrString) -> Deployment {
        Deployment {
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                strategy: Some(DeploymentStrategy {
                    type_: Some("RollingUpdate".into()),
                    rolling_update: Some(RollingUpdateDeployment {
                        max_surge: Some(surge),
                        max_unavailable: Some(unavailable),
                    }),
                }),
                ..DeploymentSpec::default()
            }),
            ..Deployment::default()
        }
    }

    fn pct(s: &str) -> IntOrString {
        IntOrString::String(s.into())
    }

    #[test]
    fn percentages_round_surge_up_and_unavailable_down() {
        assert_eq!(fenceposts(&d(10, pct("25%"), pct("25%"))), (3, 2));
        assert_eq!(fenceposts(&d(3, pct("25%"), pct("25%"))), (1, 0));
        assert_eq!(
            fenceposts(&d(1, IntOrString::Int(0), IntOrString::Int(0))),
            (0, 1)
        );
        assert_eq!(fenceposts(&d(5, IntOrString::Int(2), pct("50%"))), (2, 2));
        assert_eq!(
            max_unavailable(&d(2, IntOrString::Int(0), IntOrString::Int(5))),
            2
        );
    }

    #[test]
    fn a_reused_set_gets_the_new_revision_and_remembers_the_old_one() {
        let dep = d(3, pct("25%"), pct("25%"));
        let mut rs = ReplicaSet::default();
        rs.metadata.annotations = Some(
            [(REVISION.to_string(), "1".to_string())]
                .into_iter()
                .collect(),
        );
        assert!(set_new_replica_set_annotations(&dep, &mut rs, 3, true));
        assert_eq!(revision(&rs), 3);
        assert_eq!(annotation(&rs, REVISION_HISTORY), Some("1"));
        assert!(set_new_replica_set_annotations(&dep, &mut rs, 5, true));
        assert_eq!(annotation(&rs, REVISION_HISTORY), Some("1,3"));
    }
}
