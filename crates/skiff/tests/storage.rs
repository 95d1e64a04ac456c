//! Storage scenarios with the real kubectl against `skiff server` (binder, default class,
//! built-in CSI driver and provisioner) and `skiff hollow` nodes: static binding, waiting
//! claims, dynamic `local-path` provisioning on the consumer's node, reclaim policies and
//! pvc-protection.

mod support;

use std::time::Duration;

use support::{Hollow, KUBECTL_133, Kubectl, Server, eventually};

const WAIT: Duration = Duration::from_secs(60);

fn jsonpath(k: &Kubectl, what: &[&str], path: &str) -> String {
    let arg = format!("jsonpath={path}");
    let mut args = vec!["get"];
    args.extend_from_slice(what);
    args.extend_from_slice(&["-o", &arg]);
    k.run(&args).stdout
}

/// `(reason, message)` of the events about `name`.
fn events_about(k: &Kubectl, name: &str) -> Vec<(String, String)> {
    let out = k.ok(&["get", "events", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("events json");
    v["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter(|e| e["involvedObject"]["name"] == name)
                .map(|e| {
                    (
                        e["reason"].as_str().unwrap_or("").to_string(),
                        e["message"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

const STATIC: &str = r#"apiVersion: v1
kind: PersistentVolume
metadata:
  name: pv-static
spec:
  capacity: {storage: 2Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: manual
  hostPath: {path: /tmp/skiff-pv-static}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: data
spec:
  storageClassName: manual
  accessModes: [ReadWriteOnce]
  resources:
    requests: {storage: 1Gi}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: nomatch
spec:
  storageClassName: ""
  accessModes: [ReadWriteOnce]
  resources:
    requests: {storage: 100Gi}
"#;

#[test]
fn static_volume_binds_unmatched_claim_waits_and_retain_releases() {
    let server = Server::start();
    let k = server.kubectl(KUBECTL_133);
    k.ok_stdin(&["apply", "-f", "-"], STATIC);
    eventually(WAIT, "claim data Bound", || {
        (jsonpath(&k, &["pvc", "data"], "{.status.phase}") == "Bound").then_some(())
    });
    let table = k.ok(&["get", "pv,pvc"]);
    let header = table.lines().next().unwrap_or("");
    for col in [
        "CAPACITY",
        "ACCESS MODES",
        "RECLAIM POLICY",
        "STATUS",
        "CLAIM",
        "STORAGECLASS",
    ] {
        assert!(header.contains(col), "{col} missing in:\n{table}");
    }
    let pv_row = table
        .lines()
        .find(|l| l.starts_with("persistentvolume/pv-static"))
        .unwrap_or_else(|| panic!("pv row in:\n{table}"));
    for cell in ["2Gi", "RWO", "Retain", "Bound", "default/data", "manual"] {
        assert!(
            pv_row.split_whitespace().any(|c| c == cell),
            "{cell} in {pv_row}"
        );
    }
    let pvc_row = table
        .lines()
        .find(|l| l.starts_with("persistentvolumeclaim/data"))
        .unwrap_or_else(|| panic!("pvc row in:\n{table}"));
    for cell in ["Bound", "pv-static", "2Gi", "RWO", "manual"] {
        assert!(
            pvc_row.split_whitespace().any(|c| c == cell),
            "{cell} in {pvc_row}"
        );
    }
    assert_eq!(
        jsonpath(
            &k,
            &["pvc", "data"],
            "{.metadata.annotations.pv\\.kubernetes\\.io/bind-completed}"
        ),
        "yes"
    );
    assert_eq!(
        jsonpath(&k, &["pvc", "data"], "{.metadata.finalizers[0]}"),
        "kubernetes.io/pvc-protection"
    );
    assert_eq!(
        jsonpath(&k, &["pv", "pv-static"], "{.metadata.finalizers[0]}"),
        "kubernetes.io/pv-protection"
    );

    // No volume fits and no class: Pending, with upstream's event.
    eventually(WAIT, "FailedBinding event on nomatch", || {
        events_about(&k, "nomatch")
            .iter()
            .any(|(r, m)| {
                r == "FailedBinding"
                    && m == "no persistent volumes available for this claim and no storage class is set"
            })
            .then_some(())
    });
    assert_eq!(
        jsonpath(&k, &["pvc", "nomatch"], "{.status.phase}"),
        "Pending"
    );
    let described = k.ok(&["describe", "pvc", "nomatch"]);
    assert!(described.contains("Pending"), "{described}");
    assert!(described.contains("FailedBinding"), "{described}");

    // Retain: the claim goes, the volume stays Released.
    k.ok(&["delete", "pvc", "data"]);
    eventually(WAIT, "pv-static Released", || {
        (jsonpath(&k, &["pv", "pv-static"], "{.status.phase}") == "Released").then_some(())
    });
    assert!(k.ok(&["get", "pv", "pv-static"]).contains("Released"));

    // A claim without a class gets the default class, local-path.
    k.ok_stdin(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: defaulted}\nspec:\n  accessModes: [ReadWriteOnce]\n  resources: {requests: {storage: 1Gi}}\n",
    );
    assert_eq!(
        jsonpath(&k, &["pvc", "defaulted"], "{.spec.storageClassName}"),
        "local-path"
    );
    let sc = k.ok(&["get", "storageclass", "local-path"]);
    assert!(sc.contains("(default)"), "{sc}");
    assert!(sc.contains("local.csi.skiff.dev"), "{sc}");
    assert!(sc.contains("WaitForFirstConsumer"), "{sc}");
}

fn pod_with_claim(name: &str, claim: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  containers:
  - name: app
    image: registry.k8s.io/pause:3.10
    volumeMounts: [{{name: data, mountPath: /data}}]
  volumes:
  - name: data
    persistentVolumeClaim: {{claimName: {claim}}}
"#
    )
}

#[test]
fn local_path_provisions_on_the_consumers_node_and_delete_removes_the_volume() {
    let server = Server::start();
    let k = server.kubectl(KUBECTL_133);
    let _nodes = Hollow::start(&server, &["--nodes", "1"]);
    k.ok_stdin(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: dyn}\nspec:\n  accessModes: [ReadWriteOnce]\n  resources: {requests: {storage: 1Gi}}\n",
    );
    eventually(WAIT, "WaitForFirstConsumer event", || {
        events_about(&k, "dyn")
            .iter()
            .any(|(r, m)| {
                r == "WaitForFirstConsumer"
                    && m == "waiting for first consumer to be created before binding"
            })
            .then_some(())
    });
    assert_eq!(jsonpath(&k, &["pvc", "dyn"], "{.status.phase}"), "Pending");

    k.ok_stdin(&["apply", "-f", "-"], &pod_with_claim("user", "dyn"));
    let node = eventually(WAIT, "pod scheduled", || {
        let n = jsonpath(&k, &["pod", "user"], "{.spec.nodeName}");
        (!n.is_empty()).then_some(n)
    });
    eventually(WAIT, "claim dyn Bound", || {
        (jsonpath(&k, &["pvc", "dyn"], "{.status.phase}") == "Bound").then_some(())
    });
    let uid = jsonpath(&k, &["pvc", "dyn"], "{.metadata.uid}");
    let pv = format!("pvc-{uid}");
    assert_eq!(jsonpath(&k, &["pvc", "dyn"], "{.spec.volumeName}"), pv);
    assert_eq!(
        jsonpath(
            &k,
            &["pvc", "dyn"],
            "{.metadata.annotations.volume\\.kubernetes\\.io/selected-node}"
        ),
        node
    );
    assert_eq!(
        jsonpath(
            &k,
            &["pv", &pv],
            "{.spec.nodeAffinity.required.nodeSelectorTerms[0].matchExpressions[0].values[0]}"
        ),
        node
    );
    assert_eq!(
        jsonpath(&k, &["pv", &pv], "{.spec.csi.driver}"),
        "local.csi.skiff.dev"
    );
    assert_eq!(
        jsonpath(&k, &["pv", &pv], "{.spec.persistentVolumeReclaimPolicy}"),
        "Delete"
    );
    let events = events_about(&k, "dyn");
    assert!(
        events.iter().any(|(r, m)| r == "ProvisioningSucceeded"
            && *m == format!("Successfully provisioned volume {pv}")),
        "{events:?}"
    );
    // The server keeps only the controller's ledger; the directory is made on the node
    // (a hollow node has none; tests/csi_node.rs covers real nodes).
    let ledger = server.dir.path().join("server/csi/local/volumes.json");
    let recorded = || std::fs::read_to_string(&ledger).unwrap_or_default();
    assert!(
        recorded().contains(&pv),
        "{pv} in the ledger: {}",
        recorded()
    );
    assert!(
        !server
            .dir
            .path()
            .join("server/csi/local")
            .join(&pv)
            .exists()
    );
    let pvc_row = k.ok(&["get", "pvc", "dyn", "--no-headers"]);
    for cell in ["Bound", pv.as_str(), "1Gi", "RWO", "local-path"] {
        assert!(
            pvc_row.split_whitespace().any(|c| c == cell),
            "{cell} in {pvc_row}"
        );
    }

    // Expansion (local-path allows it): the driver grows the volume, the claim follows.
    k.ok(&[
        "patch",
        "pvc",
        "dyn",
        "-p",
        r#"{"spec":{"resources":{"requests":{"storage":"2Gi"}}}}"#,
    ]);
    eventually(WAIT, "claim capacity 2Gi", || {
        (jsonpath(&k, &["pvc", "dyn"], "{.status.capacity.storage}") == "2Gi").then_some(())
    });
    assert_eq!(
        jsonpath(&k, &["pv", &pv], "{.spec.capacity.storage}"),
        "2Gi"
    );

    // pvc-protection: the claim in use stays Terminating until its pod is gone.
    k.ok(&["delete", "pvc", "dyn", "--wait=false"]);
    eventually(WAIT, "claim Terminating", || {
        k.ok(&["get", "pvc", "dyn"])
            .contains("Terminating")
            .then_some(())
    });
    assert!(
        !jsonpath(&k, &["pvc", "dyn"], "{.metadata.deletionTimestamp}").is_empty(),
        "claim is being deleted"
    );
    assert_eq!(jsonpath(&k, &["pv", &pv], "{.status.phase}"), "Bound");
    k.ok(&["delete", "pod", "user", "--grace-period=0", "--force"]);
    eventually(WAIT, "claim gone", || {
        k.run(&["get", "pvc", "dyn"])
            .stderr
            .contains("NotFound")
            .then_some(())
    });
    // Delete policy: the provisioner deletes the storage, then the volume object.
    eventually(WAIT, "volume deleted", || {
        k.run(&["get", "pv", &pv])
            .stderr
            .contains("NotFound")
            .then_some(())
    });
    assert!(!recorded().contains(&pv), "{pv} left the ledger");
}

const LOCAL_PVS: &str = r#"apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: local-storage
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: WaitForFirstConsumer
---
apiVersion: v1
kind: PersistentVolume
metadata:
  name: local-b
spec:
  capacity: {storage: 5Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: local-storage
  local: {path: /mnt/disks/b}
  nodeAffinity:
    required:
      nodeSelectorTerms:
      - matchExpressions:
        - {key: kubernetes.io/hostname, operator: In, values: [hollow-node-1]}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: local-claim
spec:
  storageClassName: local-storage
  accessModes: [ReadWriteOnce]
  resources:
    requests: {storage: 1Gi}
---
apiVersion: v1
kind: PersistentVolume
metadata:
  name: far
spec:
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: ""
  local: {path: /mnt/disks/far}
  nodeAffinity:
    required:
      nodeSelectorTerms:
      - matchExpressions:
        - {key: kubernetes.io/hostname, operator: In, values: [nowhere]}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: far-claim
spec:
  storageClassName: ""
  volumeName: far
  accessModes: [ReadWriteOnce]
  resources:
    requests: {storage: 1Gi}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: unbound-immediate
spec:
  storageClassName: ""
  accessModes: [ReadWriteOnce]
  resources:
    requests: {storage: 50Gi}
"#;

/// The `FailedScheduling` messages of a pod.
fn failed_scheduling(k: &Kubectl, pod: &str) -> Vec<String> {
    events_about(k, pod)
        .into_iter()
        .filter(|(r, _)| r == "FailedScheduling")
        .map(|(_, m)| m)
        .collect()
}

#[test]
fn volume_binding_places_pods_by_their_volumes_and_reports_conflicts() {
    let server = Server::start();
    let k = server.kubectl(KUBECTL_133);
    let _nodes = Hollow::start(&server, &["--nodes", "2"]);
    k.ok_stdin(&["apply", "-f", "-"], LOCAL_PVS);
    eventually(WAIT, "far-claim Bound", || {
        (jsonpath(&k, &["pvc", "far-claim"], "{.status.phase}") == "Bound").then_some(())
    });

    // A WaitForFirstConsumer claim whose only volume lives on hollow-node-1: the scheduler
    // pre-binds the volume and places the pod there.
    k.ok_stdin(
        &["apply", "-f", "-"],
        &pod_with_claim("local-user", "local-claim"),
    );
    let node = eventually(WAIT, "local-user scheduled", || {
        let n = jsonpath(&k, &["pod", "local-user"], "{.spec.nodeName}");
        (!n.is_empty()).then_some(n)
    });
    assert_eq!(node, "hollow-node-1");
    // PreBind waited for the PV controller to finish the binding before the pod was bound.
    assert_eq!(
        jsonpath(
            &k,
            &["pvc", "local-claim"],
            "{.metadata.annotations.pv\\.kubernetes\\.io/bind-completed}"
        ),
        "yes",
        "the claim is bound before the pod is"
    );
    assert_eq!(
        jsonpath(&k, &["pvc", "local-claim"], "{.spec.volumeName}"),
        "local-b"
    );
    assert_eq!(
        jsonpath(&k, &["pv", "local-b"], "{.spec.claimRef.name}"),
        "local-claim"
    );
    assert_eq!(
        jsonpath(
            &k,
            &["pv", "local-b"],
            "{.metadata.annotations.pv\\.kubernetes\\.io/bound-by-controller}"
        ),
        "yes"
    );
    // A second pod of the same claim follows its volume.
    k.ok_stdin(
        &["apply", "-f", "-"],
        &pod_with_claim("local-user-2", "local-claim"),
    );
    let node2 = eventually(WAIT, "local-user-2 scheduled", || {
        let n = jsonpath(&k, &["pod", "local-user-2"], "{.spec.nodeName}");
        (!n.is_empty()).then_some(n)
    });
    assert_eq!(node2, "hollow-node-1");

    // A bound volume that fits no node: upstream's FailedScheduling, in `describe pod`.
    k.ok_stdin(
        &["apply", "-f", "-"],
        &pod_with_claim("far-user", "far-claim"),
    );
    let want = "0/2 nodes are available: 2 node(s) had volume node affinity conflict.";
    eventually(WAIT, "volume node affinity conflict", || {
        failed_scheduling(&k, "far-user")
            .iter()
            .any(|m| m.starts_with(want))
            .then_some(())
    });
    let described = k.ok(&["describe", "pod", "far-user"]);
    assert!(described.contains("FailedScheduling"), "{described}");
    assert!(
        described.contains("2 node(s) had volume node affinity conflict"),
        "{described}"
    );
    assert!(
        jsonpath(&k, &["pod", "far-user"], "{.spec.nodeName}").is_empty(),
        "not scheduled"
    );

    // An Immediate claim nobody bound, and a claim that does not exist.
    k.ok_stdin(
        &["apply", "-f", "-"],
        &pod_with_claim("imm-user", "unbound-immediate"),
    );
    k.ok_stdin(
        &["apply", "-f", "-"],
        &pod_with_claim("ghost-user", "ghost"),
    );
    eventually(WAIT, "unbound immediate message", || {
        failed_scheduling(&k, "imm-user")
            .iter()
            .any(|m| {
                m.starts_with(
                    "0/2 nodes are available: pod has unbound immediate PersistentVolumeClaims.",
                )
            })
            .then_some(())
    });
    eventually(WAIT, "claim not found message", || {
        failed_scheduling(&k, "ghost-user")
            .iter()
            .any(|m| {
                m.starts_with("0/2 nodes are available: persistentvolumeclaim \"ghost\" not found.")
            })
            .then_some(())
    });
    // The claim appears (bound by the PV controller to a new volume): the pod is scheduled.
    k.ok_stdin(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: PersistentVolume\nmetadata: {name: ghost-pv}\nspec:\n  capacity: {storage: 1Gi}\n  accessModes: [ReadWriteOnce]\n  storageClassName: \"\"\n  hostPath: {path: /tmp/skiff-ghost}\n---\napiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: ghost}\nspec:\n  storageClassName: \"\"\n  accessModes: [ReadWriteOnce]\n  resources: {requests: {storage: 1Gi}}\n",
    );
    eventually(WAIT, "ghost-user scheduled", || {
        let n = jsonpath(&k, &["pod", "ghost-user"], "{.spec.nodeName}");
        (!n.is_empty()).then_some(n)
    });
}

#[test]
fn wait_for_first_consumer_provisions_on_the_node_the_scheduler_picks() {
    let server = Server::start();
    let k = server.kubectl(KUBECTL_133);
    let _nodes = Hollow::start(&server, &["--nodes", "3"]);
    k.ok_stdin(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: wffc}\nspec:\n  storageClassName: local-path\n  accessModes: [ReadWriteOnce]\n  resources: {requests: {storage: 1Gi}}\n",
    );
    // The pod may only run on hollow-node-2, so that is where the volume must be made.
    let pod = pod_with_claim("pinned", "wffc").replace(
        "spec:\n  containers:",
        "spec:\n  nodeSelector: {kubernetes.io/hostname: hollow-node-2}\n  containers:",
    );
    k.ok_stdin(&["apply", "-f", "-"], &pod);
    eventually(WAIT, "pinned scheduled", || {
        (jsonpath(&k, &["pod", "pinned"], "{.spec.nodeName}") == "hollow-node-2").then_some(())
    });
    assert_eq!(
        jsonpath(
            &k,
            &["pvc", "wffc"],
            "{.metadata.annotations.volume\\.kubernetes\\.io/selected-node}"
        ),
        "hollow-node-2"
    );
    let pv = jsonpath(&k, &["pvc", "wffc"], "{.spec.volumeName}");
    assert!(
        !pv.is_empty(),
        "the claim has its volume before the pod is bound"
    );
    assert_eq!(
        jsonpath(
            &k,
            &["pv", &pv],
            "{.spec.nodeAffinity.required.nodeSelectorTerms[0].matchExpressions[0].values[0]}"
        ),
        "hollow-node-2"
    );
    // Pods scheduled with their volume show no scheduling failure.
    assert!(failed_scheduling(&k, "pinned").is_empty());

    // A provisioner that gives up clears selected-node: PreBind fails with upstream's
    // message, the pod is not bound, and the next attempt selects a node again.
    k.ok_stdin(
        &["apply", "-f", "-"],
        "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {name: absent}\nprovisioner: example.com/absent\nvolumeBindingMode: WaitForFirstConsumer\n---\napiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: stuck}\nspec:\n  storageClassName: absent\n  accessModes: [ReadWriteOnce]\n  resources: {requests: {storage: 1Gi}}\n",
    );
    k.ok_stdin(
        &["apply", "-f", "-"],
        &pod_with_claim("stuck-user", "stuck"),
    );
    let selected = "{.metadata.annotations.volume\\.kubernetes\\.io/selected-node}";
    let first = eventually(WAIT, "stuck claim gets a selected node", || {
        let n = jsonpath(&k, &["pvc", "stuck"], selected);
        (!n.is_empty()).then_some(n)
    });
    assert!(first.starts_with("hollow-node-"), "{first}");
    k.ok(&[
        "annotate",
        "pvc",
        "stuck",
        "volume.kubernetes.io/selected-node-",
    ]);
    eventually(WAIT, "PreBind failure reported", || {
        failed_scheduling(&k, "stuck-user")
            .iter()
            .any(|m| {
                m == "running PreBind plugin \"VolumeBinding\": binding volumes: provisioning failed for PVC \"stuck\""
            })
            .then_some(())
    });
    assert!(
        jsonpath(&k, &["pod", "stuck-user"], "{.spec.nodeName}").is_empty(),
        "a pod whose claims are not bound is not bound"
    );
    eventually(WAIT, "a node selected again", || {
        (!jsonpath(&k, &["pvc", "stuck"], selected).is_empty()).then_some(())
    });
}
