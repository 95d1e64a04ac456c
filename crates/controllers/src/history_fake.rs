//! A recording fake of the side effects of the StatefulSet and DaemonSet controllers (pods,
//! revisions, claims, status, events) for unit tests: it remembers what was asked and echoes
//! objects back. Pods keep their given name (StatefulSet) or get `<generateName><n>`.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, StatefulSet};
use k8s_openapi::api::core::v1::{ObjectReference, PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use crate::control::{EventRecorder, PodControl, Result};
use crate::daemonset::DaemonSetControl;
use crate::history::RevisionControl;
use crate::statefulset::StatefulSetControl;

/// One recorded side effect.
#[derive(Clone, Debug, PartialEq)]
pub enum SetAction {
    /// A pod created (its name, and the node its affinity pins it to, if any).
    CreatePod { name: String, node: Option<String> },
    /// A pod deleted.
    DeletePod { name: String },
    /// A pod's owners replaced.
    SetPodOwners { name: String },
    /// A revision created.
    CreateRevision { name: String, revision: i64 },
    /// A revision renumbered.
    RenumberRevision { name: String, revision: i64 },
    /// A revision deleted.
    DeleteRevision { name: String },
    /// A PersistentVolumeClaim created.
    CreateClaim { name: String },
    /// A PersistentVolumeClaim deleted.
    DeleteClaim { name: String },
    /// A status written (as JSON).
    Status(serde_json::Value),
    /// An event.
    Event { reason: String, message: String },
}

/// The fake.
#[derive(Default)]
pub struct SetsRecorder {
    actions: Mutex<Vec<SetAction>>,
    created: Mutex<Vec<Pod>>,
    seq: AtomicU64,
}

impl SetsRecorder {
    /// A fresh fake.
    pub fn new() -> SetsRecorder {
        SetsRecorder::default()
    }

    fn push(&self, a: SetAction) {
        self.actions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(a);
    }

    /// Everything recorded.
    pub fn actions(&self) -> Vec<SetAction> {
        self.actions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Everything but events and status writes.
    pub fn writes(&self) -> Vec<SetAction> {
        self.actions()
            .into_iter()
            .filter(|a| !matches!(a, SetAction::Event { .. } | SetAction::Status(_)))
            .collect()
    }

    /// Names of created pods, in order.
    pub fn created_pod_names(&self) -> Vec<String> {
        self.actions()
            .into_iter()
            .filter_map(|a| match a {
                SetAction::CreatePod { name, .. } => Some(name),
                _ => None,
            })
            .collect()
    }

    /// Pods created, as sent.
    pub fn created_pods(&self) -> Vec<Pod> {
        self.created
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Names of deleted pods, in order.
    pub fn deleted_pod_names(&self) -> Vec<String> {
        self.actions()
            .into_iter()
            .filter_map(|a| match a {
                SetAction::DeletePod { name } => Some(name),
                _ => None,
            })
            .collect()
    }

    /// Names of deleted revisions.
    pub fn deleted_revisions(&self) -> Vec<String> {
        self.actions()
            .into_iter()
            .filter_map(|a| match a {
                SetAction::DeleteRevision { name } => Some(name),
                _ => None,
            })
            .collect()
    }

    /// The last status written.
    pub fn last_status(&self) -> Option<serde_json::Value> {
        self.actions().into_iter().rev().find_map(|a| match a {
            SetAction::Status(s) => Some(s),
            _ => None,
        })
    }

    /// Events as `reason: message`.
    pub fn events(&self) -> Vec<String> {
        self.actions()
            .into_iter()
            .filter_map(|a| match a {
                SetAction::Event { reason, message } => Some(format!("{reason}: {message}")),
                _ => None,
            })
            .collect()
    }
}

fn pinned_node(pod: &Pod) -> Option<String> {
    let terms = &pod
        .spec
        .as_ref()?
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    terms.iter().find_map(|t| {
        t.match_fields
            .as_ref()?
            .iter()
            .find(|f| f.key == "metadata.name")
            .and_then(|f| f.values.as_ref()?.first().cloned())
    })
}

#[async_trait]
impl PodControl for SetsRecorder {
    async fn create_pod(&self, namespace: &str, pod: &Pod) -> Result<Pod> {
        let n = self.seq.fetch_add(1, Ordering::SeqCst);
        let mut created = pod.clone();
        let name = pod.metadata.name.clone().unwrap_or_else(|| {
            format!(
                "{}{n}",
                pod.metadata.generate_name.as_deref().unwrap_or_default()
            )
        });
        created.metadata.name = Some(name.clone());
        created.metadata.namespace = Some(namespace.to_string());
        created.metadata.uid = Some(format!("uid-{name}"));
        self.push(SetAction::CreatePod {
            name,
            node: pinned_node(pod),
        });
        self.created
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(created.clone());
        Ok(created)
    }

    async fn delete_pod(&self, _namespace: &str, name: &str, _uid: &str) -> Result<()> {
        self.push(SetAction::DeletePod {
            name: name.to_string(),
        });
        Ok(())
    }

    async fn set_pod_owners(
        &self,
        _namespace: &str,
        name: &str,
        _uid: &str,
        _owners: &[OwnerReference],
    ) -> Result<()> {
        self.push(SetAction::SetPodOwners {
            name: name.to_string(),
        });
        Ok(())
    }
}

#[async_trait]
impl RevisionControl for SetsRecorder {
    async fn create_revision(&self, rev: &ControllerRevision) -> Result<ControllerRevision> {
        self.push(SetAction::CreateRevision {
            name: rev.metadata.name.clone().unwrap_or_default(),
            revision: rev.revision,
        });
        let mut r = rev.clone();
        r.metadata.uid = Some(format!(
            "uid-{}",
            rev.metadata.name.as_deref().unwrap_or_default()
        ));
        Ok(r)
    }

    async fn set_revision_number(
        &self,
        rev: &ControllerRevision,
        revision: i64,
    ) -> Result<ControllerRevision> {
        self.push(SetAction::RenumberRevision {
            name: rev.metadata.name.clone().unwrap_or_default(),
            revision,
        });
        let mut r = rev.clone();
        r.revision = revision;
        Ok(r)
    }

    async fn delete_revision(&self, _namespace: &str, name: &str, _uid: &str) -> Result<()> {
        self.push(SetAction::DeleteRevision {
            name: name.to_string(),
        });
        Ok(())
    }
}

#[async_trait]
impl StatefulSetControl for SetsRecorder {
    async fn update_stateful_set_status(&self, set: &StatefulSet) -> Result<StatefulSet> {
        self.push(SetAction::Status(
            serde_json::to_value(&set.status).unwrap_or_default(),
        ));
        Ok(set.clone())
    }

    async fn create_claim(&self, _namespace: &str, claim: &PersistentVolumeClaim) -> Result<()> {
        self.push(SetAction::CreateClaim {
            name: claim.metadata.name.clone().unwrap_or_default(),
        });
        Ok(())
    }

    async fn delete_claim(&self, _namespace: &str, name: &str) -> Result<()> {
        self.push(SetAction::DeleteClaim {
            name: name.to_string(),
        });
        Ok(())
    }
}

#[async_trait]
impl DaemonSetControl for SetsRecorder {
    async fn update_daemon_set_status(&self, ds: &DaemonSet) -> Result<DaemonSet> {
        self.push(SetAction::Status(
            serde_json::to_value(&ds.status).unwrap_or_default(),
        ));
        Ok(ds.clone())
    }
}

impl EventRecorder for SetsRecorder {
    fn record(&self, _about: &ObjectReference, _type: &str, reason: &str, message: String) {
        self.push(SetAction::Event {
            reason: reason.to_string(),
            message,
        });
    }
}
