//! Garbage collector unit tests: seed the graph, process one object, assert the recorded
//! deletes, ownerReference rewrites and finalizer removals.

use super::*;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

#[derive(Clone, Debug, PartialEq)]
enum Did {
    Delete { name: String, policy: String },
    SetOwners { name: String, owners: Vec<String> },
    RemoveFinalizer { name: String, finalizer: String },
}

/// Records side effects; `live` are the uids a live read finds.
#[derive(Default)]
struct Recording {
    did: Mutex<Vec<Did>>,
    live: HashSet<String>,
}

impl Recording {
    fn did(&self) -> Vec<Did> {
        self.did.lock().map(|d| d.clone()).unwrap_or_default()
    }
    fn push(&self, d: Did) {
        if let Ok(mut v) = self.did.lock() {
            v.push(d);
        }
    }
}

#[async_trait::async_trait]
impl GcControl for Recording {
    async fn delete(&self, _uid: &str, node: &Node, policy: PropagationPolicy) -> Result<()> {
        self.push(Did::Delete {
            name: node.name.clone(),
            policy: format!("{policy:?}"),
        });
        Ok(())
    }
    async fn set_owners(&self, _uid: &str, node: &Node, owners: Vec<OwnerReference>) -> Result<()> {
        self.push(Did::SetOwners {
            name: node.name.clone(),
            owners: owners.into_iter().map(|o| o.uid).collect(),
        });
        Ok(())
    }
    async fn remove_finalizer(&self, _uid: &str, node: &Node, finalizer: &str) -> Result<()> {
        self.push(Did::RemoveFinalizer {
            name: node.name.clone(),
            finalizer: finalizer.into(),
        });
        Ok(())
    }
    async fn owner_exists(&self, _dependent: &Node, r: &OwnerReference) -> Result<bool> {
        Ok(self.live.contains(&r.uid))
    }
}

fn owner_ref(uid: &str, block: bool) -> OwnerReference {
    OwnerReference {
        api_version: "apps/v1".into(),
        kind: "ReplicaSet".into(),
        name: format!("name-of-{uid}"),
        uid: uid.into(),
        controller: Some(true),
        block_owner_deletion: block.then_some(true),
    }
}

fn obj(name: &str, owners: Vec<OwnerReference>, deleting: bool, finalizers: &[&str]) -> Node {
    Node {
        resource: ApiResource {
            group: String::new(),
            version: "v1".into(),
            api_version: "v1".into(),
            kind: "Pod".into(),
            plural: "pods".into(),
        },
        namespaced: true,
        namespace: "default".into(),
        name: name.into(),
        owners,
        deleting,
        finalizers: finalizers.iter().map(|f| f.to_string()).collect(),
    }
}

fn gc(objects: Vec<(&str, Node)>, live: &[&str]) -> GarbageCollector<Recording> {
    let control = Recording {
        live: live.iter().map(|s| s.to_string()).collect(),
        ..Recording::default()
    };
    let gc = GarbageCollector::new(Arc::new(control));
    for (uid, n) in objects {
        gc.lock().upsert(uid, n);
    }
    gc
}

#[tokio::test]
async fn background_a_dependent_whose_owner_is_gone_is_deleted() {
    let gc = gc(
        vec![("p1", obj("p1", vec![owner_ref("rs", true)], false, &[]))],
        &[],
    );
    gc.process("p1").await.expect("process");
    assert_eq!(
        gc.control.did(),
        [Did::Delete {
            name: "p1".into(),
            policy: "Background".into()
        }]
    );
}

#[tokio::test]
async fn an_owner_missing_from_the_graph_but_live_on_the_server_keeps_its_dependent() {
    let gc = gc(
        vec![("p1", obj("p1", vec![owner_ref("rs", true)], false, &[]))],
        &["rs"],
    );
    gc.process("p1").await.expect("process");
    assert!(gc.control.did().is_empty());
}

#[tokio::test]
async fn a_dangling_reference_next_to_a_live_owner_is_removed() {
    let gc = gc(
        vec![
            ("rs", obj("rs", vec![], false, &[])),
            (
                "p1",
                obj(
                    "p1",
                    vec![owner_ref("rs", true), owner_ref("gone", false)],
                    false,
                    &[],
                ),
            ),
        ],
        &[],
    );
    gc.process("p1").await.expect("process");
    assert_eq!(
        gc.control.did(),
        [Did::SetOwners {
            name: "p1".into(),
            owners: vec!["rs".into()]
        }]
    );
}

#[tokio::test]
async fn orphan_strips_the_owner_from_dependents_then_drops_the_finalizer() {
    let gc = gc(
        vec![
            ("rs", obj("rs", vec![], true, &[ORPHAN])),
            ("p1", obj("p1", vec![owner_ref("rs", true)], false, &[])),
            (
                "p2",
                obj(
                    "p2",
                    vec![owner_ref("rs", true), owner_ref("other", false)],
                    false,
                    &[],
                ),
            ),
        ],
        &[],
    );
    gc.process("rs").await.expect("process");
    let did = gc.control.did();
    assert_eq!(did.len(), 3, "{did:?}");
    assert!(did.contains(&Did::SetOwners {
        name: "p1".into(),
        owners: vec![]
    }));
    assert!(did.contains(&Did::SetOwners {
        name: "p2".into(),
        owners: vec!["other".into()]
    }));
    assert_eq!(
        did[2],
        Did::RemoveFinalizer {
            name: "rs".into(),
            finalizer: ORPHAN.into()
        },
        "the finalizer goes last"
    );
    assert!(
        !did.iter().any(|d| matches!(d, Did::Delete { .. })),
        "orphaned dependents are kept"
    );
}

#[tokio::test]
async fn foreground_deletes_dependents_and_keeps_the_owner_while_one_blocks() {
    let gc = gc(
        vec![
            ("d", obj("d", vec![], true, &[FOREGROUND])),
            ("rs", obj("rs", vec![owner_ref("d", true)], false, &[])),
            ("pod", obj("pod", vec![owner_ref("rs", true)], false, &[])),
            ("cm", obj("cm", vec![owner_ref("d", false)], false, &[])),
        ],
        &[],
    );
    gc.process("d").await.expect("process");
    let did = gc.control.did();
    // A dependent with dependents of its own is deleted in the foreground too.
    assert!(did.contains(&Did::Delete {
        name: "rs".into(),
        policy: "Foreground".into()
    }));
    assert!(did.contains(&Did::Delete {
        name: "cm".into(),
        policy: "Background".into()
    }));
    assert!(
        !did.iter().any(|d| matches!(d, Did::RemoveFinalizer { .. })),
        "rs blocks the owner's deletion: {did:?}"
    );
}

#[tokio::test]
async fn foreground_drops_the_finalizer_once_no_blocking_dependent_is_left() {
    let gc = gc(
        vec![
            ("d", obj("d", vec![], true, &[FOREGROUND])),
            ("cm", obj("cm", vec![owner_ref("d", false)], true, &[])),
        ],
        &[],
    );
    gc.process("d").await.expect("process");
    assert_eq!(
        gc.control.did(),
        [Did::RemoveFinalizer {
            name: "d".into(),
            finalizer: FOREGROUND.into()
        }],
        "a deleting, non-blocking dependent does not hold the owner"
    );
}

#[tokio::test]
async fn a_dependent_of_a_foreground_deleting_owner_with_dependents_goes_foreground() {
    let gc = gc(
        vec![
            ("d", obj("d", vec![], true, &[FOREGROUND])),
            ("rs", obj("rs", vec![owner_ref("d", true)], false, &[])),
            ("pod", obj("pod", vec![owner_ref("rs", true)], false, &[])),
        ],
        &[],
    );
    gc.process("rs").await.expect("process");
    assert_eq!(
        gc.control.did(),
        [Did::Delete {
            name: "rs".into(),
            policy: "Foreground".into()
        }]
    );
}
