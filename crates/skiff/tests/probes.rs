//! Host test (root): probes, lifecycle hooks and pod events on a one-node `skiff cluster`:
//! readiness (exec and httpGet) drives `ready` and the Ready condition, a failing liveness probe
//! restarts the container with `Unhealthy`/`Killing` events, a startup probe holds back
//! `started` and readiness, a postStart hook runs in the container, and the usual
//! Pulled/Created/Started events are in `kubectl describe pod`.

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

/// `phase ready started restartCount Ready-condition` of a one-container pod.
fn state(k: &Kubectl, pod: &str) -> String {
    get(
        k,
        pod,
        "{.status.phase} {.status.containerStatuses[0].ready} {.status.containerStatuses[0].started} {.status.containerStatuses[0].restartCount} {.status.conditions[?(@.type==\"Ready\")].status}",
    )
}

fn wait_state(k: &Kubectl, pod: &str, want: &str, what: &str) {
    eventually(Duration::from_secs(90), what, || {
        (state(k, pod) == want).then_some(())
    });
}

fn exec(k: &Kubectl, pod: &str, script: &str) -> String {
    k.ok(&["exec", pod, "--", "sh", "-c", script])
}

const PODS: &str = r#"
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Pod
  metadata: {name: ready-exec}
  spec:
    terminationGracePeriodSeconds: 1
    containers:
    - name: c
      image: busybox:1.36
      command: [sleep, "3600"]
      readinessProbe:
        exec: {command: [cat, /tmp/ready]}
        periodSeconds: 1
        failureThreshold: 1
      lifecycle:
        postStart:
          exec: {command: [sh, -c, "echo hook-ran > /tmp/poststart"]}
- apiVersion: v1
  kind: Pod
  metadata: {name: live}
  spec:
    terminationGracePeriodSeconds: 1
    containers:
    - name: c
      image: busybox:1.36
      command: [sleep, "3600"]
      livenessProbe:
        exec: {command: [sh, -c, "test ! -e /tmp/die"]}
        periodSeconds: 1
        failureThreshold: 2
- apiVersion: v1
  kind: Pod
  metadata: {name: web}
  spec:
    terminationGracePeriodSeconds: 1
    containers:
    - name: c
      image: busybox:1.36
      command: [sh, -c, "mkdir -p /www && exec httpd -f -p 8080 -h /www"]
      ports: [{name: http, containerPort: 8080}]
      lifecycle:
        preStop:
          exec: {command: [sh, -c, "echo prestop-ran; exit 1"]}
      readinessProbe:
        httpGet: {path: /ready.html, port: http, httpHeaders: [{name: X-Test, value: "1"}]}
        periodSeconds: 1
        failureThreshold: 1
- apiVersion: v1
  kind: Pod
  metadata: {name: slow-start}
  spec:
    terminationGracePeriodSeconds: 1
    containers:
    - name: c
      image: busybox:1.36
      command: [sleep, "3600"]
      startupProbe:
        exec: {command: [test, -e, /tmp/started]}
        periodSeconds: 1
        failureThreshold: 1000
      readinessProbe:
        exec: {command: ["true"]}
        periodSeconds: 1
- apiVersion: v1
  kind: Pod
  metadata: {name: bad-hook}
  spec:
    terminationGracePeriodSeconds: 1
    containers:
    - name: c
      image: busybox:1.36
      command: [sleep, "3600"]
      lifecycle:
        postStart:
          exec: {command: [sh, -c, "echo hook-broke; exit 3"]}
"#;

#[test]
fn probes_hooks_and_events_on_a_one_node_cluster() {
    if let Some(why) = skip_reason() {
        eprintln!("skipping: {why}");
        return;
    }
    let cluster = Cluster::up("probes", 1, "host-gw");
    let k = &cluster.kubectl;
    k.ok_stdin(&["create", "--validate=false", "-f", "-"], PODS);

    // Readiness (exec): running but not ready until the file exists, then ready, then not.
    wait_state(
        k,
        "ready-exec",
        "Running false true 0 False",
        "ready-exec runs, not ready",
    );
    assert_eq!(
        get(
            k,
            "ready-exec",
            "{.status.conditions[?(@.type==\"ContainersReady\")].status}"
        ),
        "False"
    );
    // The postStart hook ran inside the container.
    assert_eq!(
        exec(k, "ready-exec", "cat /tmp/poststart").trim(),
        "hook-ran"
    );
    exec(k, "ready-exec", "touch /tmp/ready");
    wait_state(
        k,
        "ready-exec",
        "Running true true 0 True",
        "ready-exec becomes ready",
    );
    exec(k, "ready-exec", "rm /tmp/ready");
    wait_state(
        k,
        "ready-exec",
        "Running false true 0 False",
        "ready-exec becomes unready again",
    );

    // Readiness (httpGet on a named port, with a header): 404 until the page exists.
    wait_state(
        k,
        "web",
        "Running false true 0 False",
        "web runs, not ready",
    );
    exec(k, "web", "echo ok > /www/ready.html");
    wait_state(k, "web", "Running true true 0 True", "web becomes ready");

    // Startup: not started and not ready (though readiness would pass) until it succeeds.
    wait_state(
        k,
        "slow-start",
        "Running false false 0 False",
        "slow-start runs, not started",
    );
    exec(k, "slow-start", "touch /tmp/started");
    wait_state(
        k,
        "slow-start",
        "Running true true 0 True",
        "slow-start starts and becomes ready",
    );

    // Liveness: failing twice in a row restarts the container (a new one, without the file).
    wait_state(
        k,
        "live",
        "Running true true 0 True",
        "live runs and is ready",
    );
    exec(k, "live", "touch /tmp/die");
    eventually(Duration::from_secs(90), "live restarted", || {
        let n: i64 = get(k, "live", "{.status.containerStatuses[0].restartCount}")
            .parse()
            .ok()?;
        (n >= 1).then_some(())
    });
    wait_state(
        k,
        "live",
        "Running true true 1 True",
        "live runs again after its restart",
    );
    let events = eventually(Duration::from_secs(30), "liveness events", || {
        let out = k.ok(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=live",
            "-o",
            "jsonpath={range .items[*]}{.reason}|{.source.component}|{.involvedObject.fieldPath}|{.message}{\"\\n\"}{end}",
        ]);
        (out.contains("Unhealthy|kubelet|spec.containers{c}|Liveness probe failed")
            && out.contains(
                "Killing|kubelet|spec.containers{c}|Container c failed liveness probe, will be restarted",
            ))
        .then_some(out)
    });
    // Two failures in a row: one event with count 2, not two events.
    assert_eq!(
        events.matches("Unhealthy|").count(),
        1,
        "repeats are aggregated: {events}"
    );
    let describe = k.ok(&["describe", "pod", "live"]);
    assert!(describe.contains("Unhealthy"), "{describe}");
    assert!(
        describe.contains("(x2 over"),
        "aggregated count shown: {describe}"
    );

    // The usual events, from the kubelet of the node.
    let describe = k.ok(&["describe", "pod", "ready-exec"]);
    for want in [
        "Scheduled",
        "Pulled",
        "Created container: c",
        "Started container c",
        "Readiness probe failed",
    ] {
        assert!(describe.contains(want), "{want} in:\n{describe}");
    }
    let host = get(k, "ready-exec", "{.spec.nodeName}");
    let sources = k.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=ready-exec,reason=Started",
        "-o",
        "jsonpath={.items[0].source.component}/{.items[0].source.host}",
    ]);
    assert_eq!(sources, format!("kubelet/{host}"));

    // A failing postStart hook kills the container, which is restarted.
    eventually(Duration::from_secs(60), "FailedPostStartHook", || {
        let out = k.ok(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=bad-hook,reason=FailedPostStartHook",
            "-o",
            "jsonpath={.items[*].message}",
        ]);
        out.contains("hook-broke").then_some(())
    });
    eventually(Duration::from_secs(60), "bad-hook restarted", || {
        let n: i64 = get(k, "bad-hook", "{.status.containerStatuses[0].restartCount}")
            .parse()
            .ok()?;
        (n >= 1).then_some(())
    });

    // Deleting a pod runs its preStop hook (this one fails: FailedPreStopHook with its
    // output) and stops its containers with a Killing event.
    k.ok(&["delete", "pod", "web", "--wait=false"]);
    eventually(Duration::from_secs(30), "Killing event on delete", || {
        k.ok(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=web,reason=Killing",
            "-o",
            "jsonpath={.items[*].message}",
        ])
        .contains("Stopping container c")
        .then_some(())
    });
    eventually(
        Duration::from_secs(30),
        "FailedPreStopHook on delete",
        || {
            k.ok(&[
                "get",
                "events",
                "--field-selector",
                "involvedObject.name=web,reason=FailedPreStopHook",
                "-o",
                "jsonpath={.items[*].message}",
            ])
            .contains("prestop-ran")
            .then_some(())
        },
    );
}
