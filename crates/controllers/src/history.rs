//! Controller history: the ControllerRevisions StatefulSets and DaemonSets keep of their pod
//! templates, as upstream's `pkg/controller/history`. A revision is named `<owner>-<hash>`,
//! labelled `controller.kubernetes.io/hash`, numbered by `revision`, and holds the patch that
//! turns its owner back into that template (what `kubectl rollout undo` applies).

use std::collections::BTreeMap;

use async_trait::async_trait;
use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::control::{ClientControl, Result};
use crate::deployment::hash::safe_encode;

/// The label every revision carries with its hash.
pub const HASH_LABEL: &str = "controller.kubernetes.io/hash";

/// The label StatefulSet and DaemonSet pods carry with the name of their revision's hash.
pub const POD_REVISION_LABEL: &str = "controller-revision-hash";

/// Default `revisionHistoryLimit` (the API server defaults it too).
pub const DEFAULT_HISTORY_LIMIT: i32 = 10;

/// Names longer than this are truncated so `<prefix>-<hash>` stays a valid name.
const MAX_PREFIX: usize = 223;

/// Writing ControllerRevisions.
#[async_trait]
pub trait RevisionControl: Send + Sync {
    /// Create a revision; an `AlreadyExists` error means a name (hash) collision or a lagging cache.
    async fn create_revision(&self, rev: &ControllerRevision) -> Result<ControllerRevision>;
    /// Give an existing revision a new `revision` number (a rollback to an older template).
    async fn set_revision_number(
        &self,
        rev: &ControllerRevision,
        revision: i64,
    ) -> Result<ControllerRevision>;
    /// Delete a revision, only if it still has `uid`.
    async fn delete_revision(&self, namespace: &str, name: &str, uid: &str) -> Result<()>;
}

fn fnv32a(h: u32, bytes: &[u8]) -> u32 {
    bytes
        .iter()
        .fold(h, |h, b| (h ^ u32::from(*b)).wrapping_mul(0x0100_0193))
}

/// Upstream's HashControllerRevision: FNV-32a of the data, then the collision count's decimal.
pub fn hash_data(data: &Value, collision_count: Option<i32>) -> String {
    let mut h = fnv32a(0x811c_9dc5, data.to_string().as_bytes());
    if let Some(c) = collision_count.filter(|c| *c != 0) {
        h = fnv32a(h, c.to_string().as_bytes());
    }
    safe_encode(&h.to_string())
}

/// `<prefix>-<hash>` with the prefix cut so the name stays valid.
pub fn revision_name(prefix: &str, hash: &str) -> String {
    let prefix: String = prefix.chars().take(MAX_PREFIX).collect();
    format!("{prefix}-{hash}")
}

/// The patch a revision stores for `template`: `{"spec":{"template":{...,"$patch":"replace"}}}`,
/// so applying it as a strategic merge patch replaces the owner's whole template.
pub fn template_patch(template: &PodTemplateSpec) -> Value {
    let mut t = serde_json::to_value(template).unwrap_or_else(|_| json!({}));
    if let Some(obj) = t.as_object_mut() {
        obj.insert("$patch".into(), json!("replace"));
    }
    json!({"spec": {"template": t}})
}

/// The template stored in a revision made by `template_patch`.
pub fn template_of(rev: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut t = rev.data.as_ref()?.0.pointer("/spec/template")?.clone();
    if let Some(obj) = t.as_object_mut() {
        obj.remove("$patch");
    }
    serde_json::from_value(t).ok()
}

/// A new (unsaved) revision of `owner`'s `template`, numbered `revision`.
pub fn new_revision(
    owner_meta: &ObjectMeta,
    owner_ref: OwnerReference,
    template: &PodTemplateSpec,
    revision: i64,
    collision_count: Option<i32>,
) -> ControllerRevision {
    let data = template_patch(template);
    let hash = hash_data(&data, collision_count);
    let mut labels: BTreeMap<String, String> = template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    labels.insert(HASH_LABEL.into(), hash.clone());
    let name = revision_name(owner_meta.name.as_deref().unwrap_or_default(), &hash);
    ControllerRevision {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: owner_meta.namespace.clone(),
            labels: Some(labels),
            // Upstream copies the owner's annotations (kubernetes.io/change-cause for history).
            annotations: owner_meta.annotations.clone().filter(|a| !a.is_empty()),
            owner_references: Some(vec![owner_ref]),
            ..ObjectMeta::default()
        },
        data: Some(RawExtension(data)),
        revision,
    }
}

/// Revisions with the same data as `needle`, oldest first.
pub fn equal_revisions<'a>(
    revisions: &'a [ControllerRevision],
    needle: &ControllerRevision,
) -> Vec<&'a ControllerRevision> {
    revisions.iter().filter(|r| r.data == needle.data).collect()
}

/// One more than the highest revision number (1 for an empty history).
pub fn next_revision(revisions: &[ControllerRevision]) -> i64 {
    revisions.iter().map(|r| r.revision).max().unwrap_or(0) + 1
}

/// Revisions controlled by the owner with `uid` in `namespace`, sorted by revision number.
pub fn owned_revisions<'a>(
    all: impl IntoIterator<Item = &'a ControllerRevision>,
    namespace: &str,
    uid: &str,
) -> Vec<ControllerRevision> {
    let mut v: Vec<ControllerRevision> = all
        .into_iter()
        .filter(|r| r.metadata.namespace.as_deref() == Some(namespace))
        .filter(|r| crate::owner::controller_of(&r.metadata).is_some_and(|c| c.uid == uid))
        .cloned()
        .collect();
    v.sort_by(|a, b| {
        a.revision
            .cmp(&b.revision)
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
    v
}

/// What `sync_revisions` decided: the current and update revisions, and a new collision count.
pub struct Revisions {
    /// The revision pods are being moved away from (the update one when nothing rolls).
    pub current: ControllerRevision,
    /// The revision of the owner's present template.
    pub update: ControllerRevision,
    /// Every revision of the owner after this sync, sorted by number.
    pub all: Vec<ControllerRevision>,
    /// The collision count to report in status.
    pub collision_count: i32,
}

/// Errors while finding or creating revisions.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A revision with our name but other data exists; the collision count was bumped.
    #[error("hash collision on revision {0}; collision count is now {1}")]
    Collision(String, i32),
    /// A write failed.
    #[error(transparent)]
    Control(#[from] crate::control::Error),
}

/// Upstream's getStatefulSetRevisions / constructHistory: the revision for the owner's present
/// template is the newest one if unchanged, an older equal one renumbered to the top (rollback),
/// or a newly created one. `current_name` is the owner's `status.currentRevision` (StatefulSet).
#[allow(clippy::too_many_arguments)]
pub async fn sync_revisions<C: RevisionControl + ?Sized>(
    control: &C,
    owner_meta: &ObjectMeta,
    owner_ref: OwnerReference,
    template: &PodTemplateSpec,
    mut revisions: Vec<ControllerRevision>,
    collision_count: i32,
    current_name: Option<&str>,
) -> std::result::Result<Revisions, Error> {
    let next = next_revision(&revisions);
    let probe = new_revision(owner_meta, owner_ref, template, next, Some(collision_count));
    let equal: Vec<ControllerRevision> = equal_revisions(&revisions, &probe)
        .into_iter()
        .cloned()
        .collect();
    let update = match equal.last() {
        Some(last) if Some(last) == revisions.last() => last.clone(),
        Some(last) => {
            let renumbered = control.set_revision_number(last, next).await?;
            for r in &mut revisions {
                if r.metadata.name == renumbered.metadata.name {
                    *r = renumbered.clone();
                }
            }
            revisions.sort_by_key(|r| r.revision);
            renumbered
        }
        None => match control.create_revision(&probe).await {
            Ok(created) => {
                revisions.push(created.clone());
                created
            }
            Err(e) if e.is_already_exists() => {
                // Same name, other data (equal data would have been found above) → collision.
                let bumped = collision_count.saturating_add(1);
                return Err(Error::Collision(
                    probe.metadata.name.clone().unwrap_or_default(),
                    bumped,
                ));
            }
            Err(e) => return Err(e.into()),
        },
    };
    let current = current_name
        .and_then(|n| {
            revisions
                .iter()
                .find(|r| r.metadata.name.as_deref() == Some(n))
        })
        .cloned()
        .unwrap_or_else(|| update.clone());
    Ok(Revisions {
        current,
        update,
        all: revisions,
        collision_count,
    })
}

/// Delete the oldest revisions beyond `limit` that no live pod (`live_hashes`: their
/// `controller-revision-hash` labels) and neither the current nor the update revision uses.
pub async fn truncate_history<C: RevisionControl + ?Sized>(
    control: &C,
    revisions: &[ControllerRevision],
    live_names: &[&str],
    limit: i32,
) -> Result<()> {
    let limit = usize::try_from(limit.max(0)).unwrap_or(0);
    let unused: Vec<&ControllerRevision> = revisions
        .iter()
        .filter(|r| {
            let name = r.metadata.name.as_deref().unwrap_or_default();
            let hash = r
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(HASH_LABEL))
                .map(String::as_str)
                .unwrap_or_default();
            !live_names.iter().any(|l| *l == name || *l == hash)
        })
        .collect();
    if unused.len() <= limit {
        return Ok(());
    }
    for r in &unused[..unused.len() - limit] {
        let ns = r.metadata.namespace.as_deref().unwrap_or("default");
        let name = r.metadata.name.as_deref().unwrap_or_default();
        let uid = r.metadata.uid.as_deref().unwrap_or_default();
        match control.delete_revision(ns, name, uid).await {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[async_trait]
impl RevisionControl for ClientControl {
    async fn create_revision(&self, rev: &ControllerRevision) -> Result<ControllerRevision> {
        let api: Api<ControllerRevision> = Api::namespaced(
            self.client(),
            rev.metadata.namespace.as_deref().unwrap_or("default"),
        );
        Ok(api.create(&PostParams::default(), rev).await?)
    }

    async fn set_revision_number(
        &self,
        rev: &ControllerRevision,
        revision: i64,
    ) -> Result<ControllerRevision> {
        let api: Api<ControllerRevision> = Api::namespaced(
            self.client(),
            rev.metadata.namespace.as_deref().unwrap_or("default"),
        );
        let name = rev.metadata.name.as_deref().unwrap_or_default();
        Ok(api
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"revision": revision})),
            )
            .await?)
    }

    async fn delete_revision(&self, namespace: &str, name: &str, uid: &str) -> Result<()> {
        self.delete_uid::<ControllerRevision>(namespace, name, uid)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history_fake::SetsRecorder;

    fn template(image: &str) -> PodTemplateSpec {
        serde_json::from_value(json!({
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": image}]}
        }))
        .expect("test value")
    }

    fn owner() -> (ObjectMeta, OwnerReference) {
        let meta = ObjectMeta {
            name: Some("web".into()),
            namespace: Some("default".into()),
            uid: Some("u1".into()),
            ..ObjectMeta::default()
        };
        let r = OwnerReference {
            api_version: "apps/v1".into(),
            kind: "StatefulSet".into(),
            name: "web".into(),
            uid: "u1".into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        };
        (meta, r)
    }

    #[test]
    fn revisions_are_named_by_hash_and_store_a_replace_patch() {
        let (meta, r) = owner();
        let rev = new_revision(&meta, r, &template("a"), 1, None);
        let hash = rev.metadata.labels.as_ref().expect("test value")[HASH_LABEL].clone();
        assert_eq!(rev.metadata.name.as_deref(), Some(&*format!("web-{hash}")));
        assert_eq!(
            rev.metadata.labels.as_ref().expect("test value")["app"],
            "web"
        );
        let data = &rev.data.as_ref().expect("test value").0;
        assert_eq!(data["spec"]["template"]["$patch"], "replace");
        assert_eq!(template_of(&rev), Some(template("a")));
        let other = new_revision(&owner().0, owner().1, &template("b"), 1, None);
        assert_ne!(other.metadata.name, rev.metadata.name);
        let bumped = new_revision(&owner().0, owner().1, &template("a"), 1, Some(1));
        assert_ne!(
            bumped.metadata.name, rev.metadata.name,
            "collision count changes the hash"
        );
    }

    #[tokio::test]
    async fn unchanged_template_reuses_and_rollback_renumbers() {
        let (meta, r) = owner();
        let fake = SetsRecorder::new();
        let r1 = new_revision(&meta, r.clone(), &template("a"), 1, Some(0));
        let r2 = new_revision(&meta, r.clone(), &template("b"), 2, Some(0));
        // Unchanged: the newest revision is the update revision, nothing is written.
        let got = sync_revisions(
            &fake,
            &meta,
            r.clone(),
            &template("b"),
            vec![r1.clone(), r2.clone()],
            0,
            None,
        )
        .await
        .expect("test value");
        assert_eq!(got.update.metadata.name, r2.metadata.name);
        assert!(fake.writes().is_empty());
        // Back to "a": the old revision is renumbered to 3 instead of duplicated.
        let got = sync_revisions(
            &fake,
            &meta,
            r.clone(),
            &template("a"),
            vec![r1.clone(), r2.clone()],
            0,
            Some(r2.metadata.name.as_deref().expect("test value")),
        )
        .await
        .expect("test value");
        assert_eq!(got.update.metadata.name, r1.metadata.name);
        assert_eq!(got.update.revision, 3);
        assert_eq!(got.current.metadata.name, r2.metadata.name);
        assert_eq!(fake.writes().len(), 1);
        // New template: a new revision numbered 3.
        let got = sync_revisions(&fake, &meta, r, &template("c"), vec![r1, r2], 0, None)
            .await
            .expect("test value");
        assert_eq!(got.update.revision, 3);
        assert_eq!(got.all.len(), 3);
    }

    #[tokio::test]
    async fn history_keeps_limit_unused_revisions_and_every_live_one() {
        let (meta, r) = owner();
        let fake = SetsRecorder::new();
        let revs: Vec<ControllerRevision> = (1..=5)
            .map(|i| new_revision(&meta, r.clone(), &template(&format!("i{i}")), i, None))
            .collect();
        let live1 = revs[0].metadata.name.clone().expect("test value");
        let live5 = revs[4].metadata.name.clone().expect("test value");
        truncate_history(&fake, &revs, &[&live1, &live5], 2)
            .await
            .expect("test value");
        let deleted = fake.deleted_revisions();
        assert_eq!(
            deleted,
            vec![revs[1].metadata.name.clone().expect("test value")],
            "oldest unused beyond the limit goes; live ones stay"
        );
    }
}
