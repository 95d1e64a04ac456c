//! Host test (root): on a one-node `skiff cluster`, a busybox pod gets its environment from a
//! ConfigMap and a Secret, mounts configMap (updated in place after `kubectl apply`), secret
//! (mode 0400), emptyDir (shared by two containers), hostPath and downwardAPI volumes; a pod
//! referring to a missing ConfigMap waits in `CreateContainerConfigError`.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::cluster::{Cluster, skip_reason};
use support::eventually;

impl Cluster {
    fn exec(&self, pod: &str, container: &str, cmd: &str) -> String {
        self.kubectl
            .ok(&["exec", pod, "-c", container, "--", "sh", "-c", cmd])
            .trim()
            .to_string()
    }
}

fn config_map(value: &str) -> String {
    format!(
        r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"cm1"}},
            "data":{{"greeting":"{value}"}}}}"#
    )
}

#[test]
fn pod_volumes_and_env_sources() {
    if let Some(why) = skip_reason() {
        eprintln!("skipped: {why}");
        return;
    }
    let c = Cluster::up("skvol", 1, "host-gw");
    let k = &c.kubectl;
    let host_file = c.scratch.path().join("hostfile");
    std::fs::write(&host_file, "from the host\n").expect("host file");
    k.ok_stdin(&["apply", "-f", "-"], &config_map("hello"));
    k.ok_stdin(
        &["apply", "-f", "-"],
        r#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"s1"},
            "data":{"password":"aHVudGVyMg=="}}"#,
    );
    let pod = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "vols", "labels": {"app": "vols"}},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {"name": "a", "image": "busybox:1.36",
                 "command": ["sh", "-c", "echo shared > /cache/x; sleep 3600"],
                 "env": [{"name": "GREETING", "valueFrom":
                            {"configMapKeyRef": {"name": "cm1", "key": "greeting"}}}],
                 "envFrom": [{"secretRef": {"name": "s1"}, "prefix": "S_"}],
                 "volumeMounts": [
                    {"name": "cfg", "mountPath": "/etc/cfg"},
                    {"name": "sec", "mountPath": "/etc/sec"},
                    {"name": "cache", "mountPath": "/cache"},
                    {"name": "host", "mountPath": "/hostfile"},
                    {"name": "info", "mountPath": "/etc/info"},
                    {"name": "mem", "mountPath": "/mem"},
                    {"name": "cfg", "mountPath": "/greeting-file", "subPath": "greeting"}]},
                {"name": "b", "image": "busybox:1.36", "command": ["sleep", "3600"],
                 "volumeMounts": [{"name": "cache", "mountPath": "/cache", "readOnly": true}]}
            ],
            "volumes": [
                {"name": "cfg", "configMap": {"name": "cm1"}},
                {"name": "sec", "secret": {"secretName": "s1", "defaultMode": 256}},
                {"name": "cache", "emptyDir": {}},
                {"name": "mem", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
                {"name": "host", "hostPath": {"path": host_file.display().to_string(),
                                              "type": "File"}},
                {"name": "info", "downwardAPI": {"items": [
                    {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}}
            ]
        }
    });
    k.ok_stdin(&["apply", "-f", "-"], &pod.to_string());
    eventually(Duration::from_secs(120), "the pod runs", || {
        let phase = k.ok(&["get", "pod", "vols", "-o", "jsonpath={.status.phase}"]);
        (phase.trim() == "Running").then_some(())
    });

    let env = c.exec("vols", "a", "env");
    assert!(env.lines().any(|l| l == "GREETING=hello"), "{env}");
    assert!(env.lines().any(|l| l == "S_password=hunter2"), "{env}");
    assert_eq!(c.exec("vols", "a", "cat /etc/cfg/greeting"), "hello");
    assert_eq!(c.exec("vols", "a", "cat /etc/sec/password"), "hunter2");
    assert_eq!(
        c.exec("vols", "a", "stat -L -c %a /etc/sec/password"),
        "400"
    );
    assert_eq!(c.exec("vols", "a", "cat /hostfile"), "from the host");
    assert_eq!(c.exec("vols", "a", "cat /etc/info/labels"), "app=\"vols\"");
    eventually(Duration::from_secs(30), "b sees a's emptyDir file", || {
        (c.exec("vols", "b", "cat /cache/x 2>/dev/null || true") == "shared").then_some(())
    });
    // readOnly: b cannot write the shared volume.
    assert_eq!(
        c.exec(
            "vols",
            "b",
            "touch /cache/y 2>/dev/null && echo rw || echo ro"
        ),
        "ro"
    );

    // medium: Memory is a tmpfs of sizeLimit; subPath mounts one file of the volume.
    let mem = c.exec("vols", "a", "grep ' /mem ' /proc/mounts");
    assert!(
        mem.starts_with("tmpfs /mem tmpfs") && mem.contains("size=1024k"),
        "{mem}"
    );
    assert_eq!(c.exec("vols", "a", "cat /greeting-file"), "hello");

    k.ok_stdin(&["apply", "-f", "-"], &config_map("changed"));
    eventually(
        Duration::from_secs(60),
        "the configMap file is updated",
        || (c.exec("vols", "a", "cat /etc/cfg/greeting") == "changed").then_some(()),
    );

    let missing = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "missing"},
        "spec": {"containers": [{"name": "c", "image": "busybox:1.36",
            "command": ["sleep", "3600"],
            "env": [{"name": "X", "valueFrom":
                {"configMapKeyRef": {"name": "nope", "key": "k"}}}]}]}
    });
    k.ok_stdin(&["apply", "-f", "-"], &missing.to_string());
    eventually(
        Duration::from_secs(60),
        "CreateContainerConfigError",
        || {
            let w = k.ok(&[
            "get",
            "pod",
            "missing",
            "-o",
            "jsonpath={.status.containerStatuses[0].state.waiting.reason}|{.status.containerStatuses[0].state.waiting.message}",
        ]);
            (w.trim() == "CreateContainerConfigError|configmap \"nope\" not found").then_some(())
        },
    );
    let table = k.ok(&["get", "pod", "missing"]);
    assert!(table.contains("CreateContainerConfigError"), "{table}");

    // A claim bound to a hostPath PV mounts the PV's directory.
    let pv_dir = c.scratch.path().join("pvdir");
    let pv = serde_json::json!({
        "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "pv1"},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                 "storageClassName": "",
                 "hostPath": {"path": pv_dir.display().to_string(), "type": "DirectoryOrCreate"}}
    });
    let pvc = serde_json::json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "pvc1"},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "", "volumeName": "pv1",
                 "resources": {"requests": {"storage": "1Gi"}}}
    });
    let claim_pod = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "claim"},
        "spec": {"terminationGracePeriodSeconds": 1,
            "containers": [{"name": "c", "image": "busybox:1.36",
                "command": ["sh", "-c", "echo persisted > /data/f; sleep 3600"],
                "volumeMounts": [{"name": "d", "mountPath": "/data"}]}],
            "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "pvc1"}}]}
    });
    for obj in [pv, pvc, claim_pod] {
        k.ok_stdin(&["apply", "-f", "-"], &obj.to_string());
    }
    eventually(Duration::from_secs(60), "the pod wrote into the PV", || {
        std::fs::read_to_string(pv_dir.join("f"))
            .ok()
            .filter(|s| s == "persisted\n")
    });

    // A claim bound to a `local` PV (node affinity to this node) mounts the prepared path.
    let local_dir = c.scratch.path().join("localpv");
    std::fs::create_dir_all(&local_dir).expect("local PV dir");
    let node = k.ok(&["get", "nodes", "-o", "jsonpath={.items[0].metadata.name}"]);
    let local_pv = serde_json::json!({
        "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "local1"},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                 "storageClassName": "", "local": {"path": local_dir.display().to_string()},
                 "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                     {"key": "kubernetes.io/hostname", "operator": "In", "values": [node.trim()]}]}]}}}
    });
    let local_pvc = serde_json::json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "local1"},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "", "volumeName": "local1",
                 "resources": {"requests": {"storage": "1Gi"}}}
    });
    let local_pod = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "localclaim"},
        "spec": {"terminationGracePeriodSeconds": 1,
            "containers": [{"name": "c", "image": "busybox:1.36",
                "command": ["sh", "-c", "echo local > /data/f; sleep 3600"],
                "volumeMounts": [{"name": "d", "mountPath": "/data"}]}],
            "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "local1"}}]}
    });
    for obj in [local_pv, local_pvc, local_pod] {
        k.ok_stdin(&["apply", "-f", "-"], &obj.to_string());
    }
    eventually(
        Duration::from_secs(60),
        "the pod wrote into the local PV",
        || {
            std::fs::read_to_string(local_dir.join("f"))
                .ok()
                .filter(|s| s == "local\n")
        },
    );

    // Deleting the pod unmounts its tmpfs and removes its volume directory.
    let uid = k.ok(&["get", "pod", "vols", "-o", "jsonpath={.metadata.uid}"]);
    let uid = uid.trim();
    let mounted = || {
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .any(|l| l.contains(uid) && l.contains("kubernetes.io~empty-dir"))
    };
    assert!(mounted(), "the tmpfs emptyDir is mounted on the host");
    let found = String::from_utf8_lossy(
        &Command::new("find")
            .arg(&c.dir)
            .args(["-maxdepth", "6", "-type", "d", "-name", uid])
            .output()
            .expect("find")
            .stdout,
    )
    .trim()
    .to_string();
    assert!(!found.is_empty(), "the pod's volume directory exists");
    k.ok(&["delete", "pod", "vols", "--wait=false"]);
    eventually(
        Duration::from_secs(60),
        "the pod's volumes are gone",
        || (!mounted() && !Path::new(&found).exists()).then_some(()),
    );
}
