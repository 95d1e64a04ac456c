//! Controller ownerReferences: making them, finding an object's controller, and claiming
//! objects for an owner (adopt matching orphans, release owned objects that stopped matching),
//! as upstream's ControllerRefManager.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::core::{Selector, SelectorExt};

/// The controller ownerReference `owner` puts on what it creates.
pub fn controller_ref<K: kube::Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    let meta = owner.meta();
    OwnerReference {
        api_version: K::api_version(&()).to_string(),
        kind: K::kind(&()).to_string(),
        name: meta.name.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The object's controller reference, if any.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .as_ref()?
        .iter()
        .find(|r| r.controller == Some(true))
}

/// What claiming decided for one candidate object.
#[derive(Clone, Debug, PartialEq)]
pub enum Claim {
    /// Already ours and still matching.
    Owned,
    /// An orphan that matches: set these ownerReferences to adopt it.
    Adopt(Vec<OwnerReference>),
    /// Ours but no longer matching: set these ownerReferences to release it.
    Release(Vec<OwnerReference>),
    /// Not ours to touch.
    Ignore,
}

/// Decide whether `owner` (uid `owner_uid`, being deleted or not) claims an object with
/// metadata `meta` under `selector`.
pub fn claim(
    owner_ref: &OwnerReference,
    owner_deleting: bool,
    selector: &Selector,
    meta: &ObjectMeta,
) -> Claim {
    let labels = meta.labels.clone().unwrap_or_default();
    let matches = selector.matches(&labels);
    let refs = meta.owner_references.clone().unwrap_or_default();
    match controller_of(meta) {
        Some(c) if c.uid != owner_ref.uid => Claim::Ignore,
        Some(_) => {
            if matches {
                Claim::Owned
            } else if owner_deleting {
                Claim::Ignore
            } else {
                Claim::Release(
                    refs.into_iter()
                        .filter(|r| r.uid != owner_ref.uid)
                        .collect(),
                )
            }
        }
        None => {
            // An empty selector selects everything; upstream never adopts with one.
            if owner_deleting
                || !matches
                || selector.selects_all()
                || meta.deletion_timestamp.is_some()
            {
                return Claim::Ignore;
            }
            let mut refs: Vec<OwnerReference> = refs
                .into_iter()
                .filter(|r| r.uid != owner_ref.uid)
                .collect();
            refs.push(owner_ref.clone());
            Claim::Adopt(refs)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner() -> OwnerReference {
        OwnerReference {
            api_version: "apps/v1".into(),
            kind: "ReplicaSet".into(),
            name: "rs".into(),
            uid: "u1".into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }

    fn meta(labels: &[(&str, &str)], owners: Vec<OwnerReference>) -> ObjectMeta {
        ObjectMeta {
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            owner_references: Some(owners),
            ..ObjectMeta::default()
        }
    }

    fn app_web() -> Selector {
        [("app", "web")].into_iter().collect()
    }

    #[test]
    fn orphans_that_match_are_adopted_and_owned_non_matching_released() {
        let sel = app_web();
        assert_eq!(
            claim(&owner(), false, &sel, &meta(&[("app", "web")], vec![])),
            Claim::Adopt(vec![owner()])
        );
        assert_eq!(
            claim(
                &owner(),
                false,
                &sel,
                &meta(&[("app", "db")], vec![owner()])
            ),
            Claim::Release(vec![])
        );
        assert_eq!(
            claim(
                &owner(),
                false,
                &sel,
                &meta(&[("app", "web")], vec![owner()])
            ),
            Claim::Owned
        );
        let mut other = owner();
        other.uid = "u2".into();
        assert_eq!(
            claim(&owner(), false, &sel, &meta(&[("app", "web")], vec![other])),
            Claim::Ignore
        );
        assert_eq!(
            claim(&owner(), true, &sel, &meta(&[("app", "web")], vec![])),
            Claim::Ignore,
            "an owner being deleted adopts nothing"
        );
    }
}
