//! Host test (root): pod lifecycle details on a one-node `skiff cluster`: sidecar init
//! containers (`restartPolicy: Always`) start in order between the regular init containers, keep
//! running beside the app container and do not keep a finished pod from succeeding; a pod bound
//! straight to the node that asks for more cpu than the node has is rejected as `OutOfcpu`.

mod support;

use std::time::Duration;

use support::cluster::{Cluster, skip_reason};
use support::{Kubectl, eventually};

fn get(k: &Kubectl, pod: &str, path: &str) -> String {
    k.run(&["get", "pod", pod, "-o", &format!("jsonpath={path}")])
        .stdout
        .trim()
        .to_string()
}

const SIDECAR_PODS: &str = r#"
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Pod
  metadata: {name: sidecar}
  spec:
    terminationGracePeriodSeconds: 1
    volumes: [{name: shared, emptyDir: {}}]
    initContainers:
    - name: init1
      image: busybox:1.36
      command: [sh, -c, "echo init1 >> /shared/order"]
      volumeMounts: [{name: shared, mountPath: /shared}]
    - name: side
      image: busybox:1.36
      restartPolicy: Always
      command: [sh, -c, "echo side >> /shared/order; touch /shared/side-up; exec sleep 3600"]
      volumeMounts: [{name: shared, mountPath: /shared}]
      startupProbe:
        exec: {command: [test, -e, /shared/side-up]}
        periodSeconds: 1
    - name: init2
      image: busybox:1.36
      command: [sh, -c, "echo init2 >> /shared/order"]
      volumeMounts: [{name: shared, mountPath: /shared}]
    containers:
    - name: app
      image: busybox:1.36
      command: [sh, -c, "echo app >> /shared/order; exec sleep 3600"]
      volumeMounts: [{name: shared, mountPath: /shared}]
- apiVersion: v1
  kind: Pod
  metadata: {name: sidecar-job}
  spec:
    restartPolicy: Never
    terminationGracePeriodSeconds: 1
    initContainers:
    - name: side
      image: busybox:1.36
      restartPolicy: Always
      command: [sleep, "3600"]
    containers:
    - name: work
      image: busybox:1.36
      command: [sh, -c, "sleep 1; echo done"]
"#;

#[test]
fn sidecars_and_node_admission_on_a_one_node_cluster() {
    if let Some(why) = skip_reason() {
        eprintln!("skipping: {why}");
        return;
    }
    let cluster = Cluster::up("lifecycle", 1, "host-gw");
    let k = &cluster.kubectl;
    k.ok_stdin(&["create", "--validate=false", "-f", "-"], SIDECAR_PODS);

    // Order: init1 ran to completion, the sidecar started (its startupProbe passed), then
    // init2, then the app container, while the sidecar keeps running.
    eventually(Duration::from_secs(120), "sidecar pod ready", || {
        (get(
            k,
            "sidecar",
            "{.status.phase} {.status.conditions[?(@.type==\"Ready\")].status}",
        ) == "Running True")
            .then_some(())
    });
    let order = k.ok(&["exec", "sidecar", "-c", "app", "--", "cat", "/shared/order"]);
    assert_eq!(
        order.split_whitespace().collect::<Vec<_>>(),
        ["init1", "side", "init2", "app"]
    );
    assert_eq!(
        get(
            k,
            "sidecar",
            "{.status.initContainerStatuses[1].name} {.status.initContainerStatuses[1].started} {.status.initContainerStatuses[1].ready} {.status.conditions[?(@.type==\"Initialized\")].status}"
        ),
        "side true true True"
    );
    assert!(
        get(
            k,
            "sidecar",
            "{.status.initContainerStatuses[1].state.running.startedAt}"
        )
        .contains('T')
    );

    // A still-running sidecar does not keep a finished pod from succeeding.
    eventually(Duration::from_secs(120), "sidecar-job succeeds", || {
        (get(k, "sidecar-job", "{.status.phase}") == "Succeeded").then_some(())
    });
    eventually(Duration::from_secs(60), "the job's sidecar stops", || {
        let s = get(
            k,
            "sidecar-job",
            "{.status.initContainerStatuses[0].state.terminated.exitCode}",
        );
        (!s.is_empty()).then_some(())
    });

    // A pod bound to the node without the scheduler that does not fit: rejected, not run.
    let node = get(k, "sidecar", "{.spec.nodeName}");
    assert!(!node.is_empty());
    let big = format!(
        r#"{{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "too-big"}},
            "spec": {{"nodeName": "{node}", "containers": [{{"name": "c", "image": "busybox:1.36",
            "command": ["sleep", "3600"], "resources": {{"requests": {{"cpu": "1000"}}}}}}]}}}}"#
    );
    k.ok_stdin(&["create", "-f", "-"], &big);
    eventually(Duration::from_secs(60), "too-big rejected", || {
        (get(k, "too-big", "{.status.phase} {.status.reason}") == "Failed OutOfcpu").then_some(())
    });
    let message = get(k, "too-big", "{.status.message}");
    assert!(
        message.starts_with(
            "Pod was rejected: Node didn't have enough resource: cpu, requested: 1000000, used: "
        ),
        "{message}"
    );
    let events = k.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=too-big",
    ]);
    assert!(events.contains("OutOfcpu"), "{events}");
    // It never ran: no container status.
    assert_eq!(get(k, "too-big", "{.status.containerStatuses}"), "");
}
