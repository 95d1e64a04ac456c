//! Host test (root): CSI on a real two-node cluster. Every agent registers the built-in
//! driver `local.csi.skiff.dev` through its plugin registration socket and publishes a
//! CSINode; a `local-path` claim's directory lives in the data dir of the node its pod runs
//! on, keeps data from one pod to the next and across a StatefulSet pod's deletion; deleting
//! the claim removes the directory on the node (reclaim policy Delete) or keeps it (Retain).

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::cluster::{Cluster, skip_reason};
use support::{Kubectl, eventually};

const WAIT: Duration = Duration::from_secs(90);

fn jsonpath(k: &Kubectl, what: &[&str], path: &str) -> String {
    let mut args = vec!["get"];
    args.extend_from_slice(what);
    let jp = format!("jsonpath={path}");
    args.extend_from_slice(&["-o", &jp]);
    k.run(&args).stdout.trim().to_string()
}

fn gone(k: &Kubectl, what: &[&str]) -> bool {
    let mut args = vec!["get"];
    args.extend_from_slice(what);
    k.run(&args).stderr.contains("NotFound")
}

/// A pod on `node` running `script` with claim `claim` at /data, run to completion; its
/// exit code.
fn run_with_claim(k: &Kubectl, pod: &str, node: &str, claim: &str, script: &str) -> i64 {
    k.ok_stdin(
        &["apply", "-f", "-"],
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata: {{name: {pod}}}
spec:
  restartPolicy: Never
  nodeSelector: {{kubernetes.io/hostname: {node}}}
  containers:
  - name: app
    image: busybox:1.36
    command: [sh, -c, {script:?}]
    volumeMounts: [{{name: data, mountPath: /data}}]
  volumes:
  - name: data
    persistentVolumeClaim: {{claimName: {claim}}}
"#
        ),
    );
    eventually(WAIT, &format!("pod {pod} finished"), || {
        jsonpath(
            k,
            &["pod", pod],
            "{.status.containerStatuses[0].state.terminated.exitCode}",
        )
        .parse()
        .ok()
    })
}

fn claim(k: &Kubectl, name: &str, class: &str) {
    k.ok_stdin(
        &["apply", "-f", "-"],
        &format!(
            "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {{name: {name}}}\nspec:\n  storageClassName: {class}\n  accessModes: [ReadWriteOnce]\n  resources: {{requests: {{storage: 64Mi}}}}\n"
        ),
    );
}

fn delete_pod(k: &Kubectl, pod: &str) {
    k.ok(&["delete", "pod", pod, "--wait=false"]);
    eventually(WAIT, &format!("pod {pod} gone"), || {
        gone(k, &["pod", pod]).then_some(())
    });
}

/// Mount points whose path or source directory mentions `needle`.
fn mounts_of(needle: &str) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(needle))
        .filter_map(|l| l.split(' ').nth(4))
        .map(str::to_string)
        .collect()
}

/// `<cluster>/nodes/node-<i>/agent/csi/local/<volume>`: where node i (from 1) keeps a local
/// volume.
fn volume_dir(cluster: &Cluster, i: usize, volume: &str) -> PathBuf {
    cluster
        .dir
        .join("nodes")
        .join(format!("node-{i}"))
        .join("agent/csi/local")
        .join(volume)
}

fn agent_log(cluster: &Cluster, i: usize) -> String {
    std::fs::read_to_string(
        cluster
            .dir
            .join("nodes")
            .join(format!("node-{i}"))
            .join("agent.log"),
    )
    .unwrap_or_default()
}

#[test]
fn csi_volumes_live_on_their_node_and_follow_the_reclaim_policy() {
    if let Some(why) = skip_reason() {
        eprintln!("skipping: {why}");
        return;
    }
    let cluster = Cluster::up("csi", 2, "host-gw");
    let k = &cluster.kubectl;
    // Nodes are numbered from 1: n0 is node 1, n1 node 2.
    let (n0, n1) = (cluster.node(1), cluster.node(2));

    // Registration: every node's CSINode lists the built-in driver with its topology key.
    for node in [&n0, &n1] {
        eventually(WAIT, "CSINode with the built-in driver", || {
            (jsonpath(k, &["csinode", node], "{.spec.drivers[0].name}") == "local.csi.skiff.dev")
                .then_some(())
        });
        assert_eq!(
            jsonpath(k, &["csinode", node], "{.spec.drivers[0].nodeID}"),
            *node
        );
        assert_eq!(
            jsonpath(k, &["csinode", node], "{.spec.drivers[0].topologyKeys[0]}"),
            "topology.local.csi.skiff.dev/node"
        );
        assert_eq!(
            jsonpath(k, &["csinode", node], "{.metadata.ownerReferences[0].kind}"),
            "Node"
        );
        assert_eq!(
            jsonpath(
                k,
                &["node", node],
                "{.metadata.annotations.csi\\.volume\\.kubernetes\\.io/nodeid}"
            ),
            format!(r#"{{"local.csi.skiff.dev":"{node}"}}"#)
        );
        assert_eq!(
            jsonpath(
                k,
                &["node", node],
                "{.metadata.labels.topology\\.local\\.csi\\.skiff\\.dev/node}"
            ),
            *node
        );
    }
    let table = k.ok(&["get", "csinode"]);
    for node in [&n0, &n1] {
        assert!(
            table
                .lines()
                .any(|l| l.split_whitespace().take(2).eq([node.as_str(), "1"])),
            "{table}"
        );
    }

    // A local-path claim: written by one pod on node 1, read by the next.
    claim(k, "data", "local-path");
    assert_eq!(
        run_with_claim(k, "writer", &n1, "data", "echo hello > /data/f"),
        0
    );
    let pv = jsonpath(k, &["pvc", "data"], "{.spec.volumeName}");
    assert!(pv.starts_with("pvc-"), "{pv}");
    assert_eq!(
        jsonpath(
            k,
            &["pv", &pv],
            "{.spec.nodeAffinity.required.nodeSelectorTerms[0].matchExpressions[0].values[0]}"
        ),
        n1
    );
    let dir = volume_dir(&cluster, 2, &pv);
    assert_eq!(
        std::fs::read_to_string(dir.join("f")).expect("the volume's file on node 1"),
        "hello\n"
    );
    assert!(!volume_dir(&cluster, 1, &pv).exists());
    let staged = mounts_of(&pv);
    assert!(
        !staged.is_empty(),
        "the volume is mounted while its pod exists"
    );
    delete_pod(k, "writer");
    // Unpublish and unstage leave no mount of the volume behind.
    eventually(WAIT, "volume unmounted", || {
        mounts_of(&pv).is_empty().then_some(())
    });
    assert_eq!(
        run_with_claim(k, "reader", &n1, "data", "test \"$(cat /data/f)\" = hello"),
        0
    );
    delete_pod(k, "reader");
    // Delete policy: the claim goes, the PV goes, and node 1 removes the directory.
    k.ok(&["delete", "pvc", "data"]);
    eventually(WAIT, "PV deleted", || gone(k, &["pv", &pv]).then_some(()));
    eventually(WAIT, "directory removed on the node", || {
        (!dir.exists()).then_some(())
    });

    // A StatefulSet's pod keeps its data across `kubectl delete pod`.
    k.ok_stdin(
        &["apply", "-f", "-"],
        &r#"apiVersion: apps/v1
kind: StatefulSet
metadata: {name: st}
spec:
  serviceName: st
  replicas: 1
  selector: {matchLabels: {app: st}}
  template:
    metadata: {labels: {app: st}}
    spec:
      terminationGracePeriodSeconds: 1
      nodeSelector: {kubernetes.io/hostname: NODE}
      containers:
      - name: app
        image: busybox:1.36
        command: [sh, -c, "test -f /data/first || hostname > /data/first; sleep 3600"]
        volumeMounts: [{name: data, mountPath: /data}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 32Mi}}
"#
        .replace("NODE", &n1),
    );
    let running = |uid_before: &str| {
        eventually(WAIT, "st-0 Running", || {
            let out = jsonpath(k, &["pod", "st-0"], "{.status.phase} {.metadata.uid}");
            let (phase, uid) = out.split_once(' ')?;
            (phase == "Running" && uid != uid_before).then(|| uid.to_string())
        })
    };
    let first_uid = running("");
    let st_pv = eventually(WAIT, "data-st-0 Bound", || {
        let v = jsonpath(k, &["pvc", "data-st-0"], "{.spec.volumeName}");
        (!v.is_empty()).then_some(v)
    });
    let first = volume_dir(&cluster, 2, &st_pv).join("first");
    eventually(WAIT, "the first pod wrote its file", || {
        std::fs::read_to_string(&first)
            .ok()
            .filter(|s| s.trim() == "st-0")
    });
    let stamp = std::fs::metadata(&first)
        .and_then(|m| m.modified())
        .expect("mtime");
    k.ok(&["delete", "pod", "st-0"]);
    running(&first_uid);
    assert_eq!(
        jsonpath(k, &["pvc", "data-st-0"], "{.spec.volumeName}"),
        st_pv
    );
    // The new pod found the file and did not rewrite it.
    assert_eq!(
        std::fs::metadata(&first)
            .and_then(|m| m.modified())
            .expect("mtime"),
        stamp
    );
    assert_eq!(
        k.ok(&["exec", "st-0", "--", "cat", "/data/first"]).trim(),
        "st-0"
    );
    k.ok(&["delete", "statefulset", "st"]);

    // Retain: the directory outlives the claim and the PV.
    k.ok_stdin(
        &["apply", "-f", "-"],
        "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {name: keep}\nprovisioner: local.csi.skiff.dev\nreclaimPolicy: Retain\nvolumeBindingMode: WaitForFirstConsumer\n",
    );
    claim(k, "kept", "keep");
    assert_eq!(
        run_with_claim(k, "keeper", &n0, "kept", "echo kept > /data/f"),
        0
    );
    let kept_pv = jsonpath(k, &["pvc", "kept"], "{.spec.volumeName}");
    let kept_dir = volume_dir(&cluster, 1, &kept_pv);
    assert!(kept_dir.join("f").is_file(), "{}", kept_dir.display());
    delete_pod(k, "keeper");
    k.ok(&["delete", "pvc", "kept"]);
    eventually(WAIT, "kept PV Released", || {
        (jsonpath(k, &["pv", &kept_pv], "{.status.phase}") == "Released").then_some(())
    });
    k.ok(&["delete", "pv", &kept_pv]);
    eventually(WAIT, "the node saw the PV go", || {
        agent_log(&cluster, 1)
            .lines()
            .any(|l| l.contains("directory kept") && l.contains(&kept_pv))
            .then_some(())
    });
    assert_eq!(
        std::fs::read_to_string(kept_dir.join("f")).expect("kept file"),
        "kept\n"
    );
    assert!(Path::new(&kept_dir).is_dir());
}
