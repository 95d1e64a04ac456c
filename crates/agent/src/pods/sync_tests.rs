//! The pod sync against the recording fake CRI runtime (`testing.rs`): every transition of the
//! lifecycle, with back-off time passed by moving the runtime's records into the past.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};

use super::*;
use crate::testing::Harness;

const IMAGE: &str = "docker.io/library/busybox:1.36";

fn pod(spec: Value) -> Pod {
    let mut spec = spec;
    for list in ["containers", "initContainers"] {
        for c in spec[list].as_array_mut().into_iter().flatten() {
            if c.get("image").is_none() {
                c["image"] = json!(IMAGE);
            }
        }
    }
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "default", "uid": "uid-1"},
        "spec": spec,
    }))
    .expect("pod")
}

fn state_for(h: &Harness, pod: &Pod) -> PodState {
    PodState {
        events: Some(Recorder::new(h.agent.client.clone(), "node-1".into())),
        last_pod: Some(Arc::new(pod.clone())),
        ..PodState::default()
    }
}

async fn harness() -> Harness {
    let h = Harness::new().await;
    h.cri.state().images.insert(IMAGE.into());
    h
}

/// One sync; returns the status the agent last wrote.
async fn sync_once(h: &Harness, pod: &Pod, st: &mut PodState) -> Value {
    sync(&h.agent, pod, st).await.expect("sync");
    st.last_written.clone().expect("a status was written")
}

fn container<'a>(status: &'a Value, list: &str, name: &str) -> &'a Value {
    status[list]
        .as_array()
        .and_then(|l| l.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no {list} entry {name} in {status}"))
}

fn condition(status: &Value, type_: &str) -> String {
    status["conditions"]
        .as_array()
        .and_then(|l| l.iter().find(|c| c["type"] == type_))
        .and_then(|c| c["status"].as_str())
        .unwrap_or("")
        .to_string()
}

fn mutating(calls: Vec<String>) -> Vec<String> {
    calls
        .into_iter()
        .filter(|c| !c.starts_with("ExecSync"))
        .collect()
}

#[tokio::test]
async fn sandbox_then_containers_in_spec_order() {
    let h = harness().await;
    let p = pod(json!({"containers": [{"name": "a"}, {"name": "b"}]}));
    let mut st = state_for(&h, &p);
    let status = sync_once(&h, &p, &mut st).await;
    assert_eq!(
        mutating(h.cri.calls()),
        [
            "RunPodSandbox p",
            "CreateContainer a",
            "StartContainer a",
            "CreateContainer b",
            "StartContainer b"
        ]
    );
    assert_eq!(status["phase"], "Running");
    assert_eq!(status["podIP"], "10.244.0.7");
    assert_eq!(status["hostIP"], "192.0.2.10");
    assert_eq!(status["qosClass"], "BestEffort");
    assert_eq!(condition(&status, "Ready"), "True");
    assert_eq!(condition(&status, "Initialized"), "True");
    assert_eq!(condition(&status, "PodReadyToStartContainers"), "True");
    let a = container(&status, "containerStatuses", "a");
    assert!(a["state"]["running"]["startedAt"].is_string(), "{a}");
    assert_eq!(a["restartCount"], 0);
    assert_eq!(a["ready"], true);
    // The sandbox carries the pod's identity, DNS and cgroup parent.
    let sb = h.cri.state().sandboxes[0].config.clone();
    assert_eq!(sb.hostname, "p");
    assert_eq!(
        sb.dns_config.map(|d| d.searches),
        Some(vec![
            "default.svc.cluster.local".to_string(),
            "svc.cluster.local".into(),
            "cluster.local".into()
        ])
    );
    assert!(
        sb.linux
            .map(|l| l.cgroup_parent)
            .unwrap_or_default()
            .ends_with("/besteffort/poduid-1")
    );
    // The status went to the API as a merge patch of pods/status.
    let patches = h.status_patches();
    assert_eq!(patches.len(), 1);
    assert_eq!(patches[0]["phase"], "Running");
}

#[tokio::test]
async fn init_containers_run_strictly_in_order_each_to_completion() {
    let h = harness().await;
    let p = pod(json!({
        "initContainers": [{"name": "i1"}, {"name": "i2"}],
        "containers": [{"name": "app"}],
    }));
    let mut st = state_for(&h, &p);
    let status = sync_once(&h, &p, &mut st).await;
    assert_eq!(
        mutating(h.cri.calls()),
        ["RunPodSandbox p", "CreateContainer i1", "StartContainer i1"]
    );
    assert_eq!(status["phase"], "Pending");
    assert_eq!(condition(&status, "Initialized"), "False");
    assert_eq!(
        container(&status, "containerStatuses", "app")["state"]["waiting"]["reason"],
        "PodInitializing"
    );

    // Still running: nothing new starts.
    h.cri.clear_calls();
    sync_once(&h, &p, &mut st).await;
    assert!(mutating(h.cri.calls()).is_empty());

    h.cri.exit("i1", 0, "");
    let status = sync_once(&h, &p, &mut st).await;
    assert_eq!(
        mutating(h.cri.calls()),
        ["CreateContainer i2", "StartContainer i2"]
    );
    let i1 = container(&status, "initContainerStatuses", "i1");
    assert_eq!(i1["state"]["terminated"]["reason"], "Completed");
    assert_eq!(i1["ready"], true);

    h.cri.clear_calls();
    h.cri.exit("i2", 0, "");
    let status = sync_once(&h, &p, &mut st).await;
    assert_eq!(
        mutating(h.cri.calls()),
        ["CreateContainer app", "StartContainer app"]
    );
    assert_eq!(status["phase"], "Running");
    assert_eq!(condition(&status, "Initialized"), "True");
}

#[tokio::test]
async fn failed_init_container_fails_a_never_pod_and_backs_off_otherwise() {
    let h = harness().await;
    let never = pod(json!({
        "restartPolicy": "Never",
        "initContainers": [{"name": "i1"}],
        "containers": [{"name": "app"}],
    }));
    let mut st = state_for(&h, &never);
    sync_once(&h, &never, &mut st).await;
    h.cri.exit("i1", 3, "");
    let status = sync_once(&h, &never, &mut st).await;
    assert_eq!(status["phase"], "Failed");
    let i1 = container(&status, "initContainerStatuses", "i1");
    assert_eq!(i1["state"]["terminated"]["exitCode"], 3);
    assert_eq!(i1["state"]["terminated"]["reason"], "Error");
    assert!(!h.container_names().contains(&"app".to_string()));

    let h = harness().await;
    let always = pod(json!({
        "initContainers": [{"name": "i1"}],
        "containers": [{"name": "app"}],
    }));
    let mut st = state_for(&h, &always);
    sync_once(&h, &always, &mut st).await;
    h.cri.exit("i1", 1, "");
    h.cri.clear_calls();
    let status = sync_once(&h, &always, &mut st).await;
    assert_eq!(status["phase"], "Pending");
    assert!(
        mutating(h.cri.calls()).is_empty(),
        "restarted inside back-off"
    );
    h.cri.advance(Duration::from_secs(11));
    sync_once(&h, &always, &mut st).await;
    assert_eq!(
        mutating(h.cri.calls()),
        ["CreateContainer i1", "StartContainer i1"]
    );
    assert_eq!(h.cri.latest("i1").map(|c| c.attempt), Some(1));
    assert!(!h.container_names().contains(&"app".to_string()));
}

/// Run `app` to exit `code` under `policy`; returns the status after the exit and whether the
/// container was restarted once its back-off passed.
async fn exit_under(policy: &str, code: i32, reason: &str) -> (Value, bool) {
    let h = harness().await;
    let p = pod(json!({"restartPolicy": policy, "containers": [{"name": "app"}]}));
    let mut st = state_for(&h, &p);
    sync_once(&h, &p, &mut st).await;
    h.cri.exit("app", code, reason);
    let status = sync_once(&h, &p, &mut st).await;
    h.cri.advance(Duration::from_secs(301));
    h.cri.clear_calls();
    sync_once(&h, &p, &mut st).await;
    let restarted = mutating(h.cri.calls()).contains(&"StartContainer app".to_string());
    (status, restarted)
}

#[tokio::test]
async fn restart_policy_always_restarts_every_exit() {
    let (status, restarted) = exit_under("Always", 0, "").await;
    assert!(restarted);
    assert_eq!(status["phase"], "Running");
    let app = container(&status, "containerStatuses", "app");
    assert_eq!(app["state"]["waiting"]["reason"], "CrashLoopBackOff");
    assert_eq!(app["lastState"]["terminated"]["reason"], "Completed");
    assert_eq!(condition(&status, "Ready"), "False");
}

#[tokio::test]
async fn restart_policy_on_failure_restarts_only_failures() {
    let (status, restarted) = exit_under("OnFailure", 0, "").await;
    assert!(!restarted);
    assert_eq!(status["phase"], "Succeeded");
    let app = container(&status, "containerStatuses", "app");
    assert_eq!(app["state"]["terminated"]["reason"], "Completed");
    assert_eq!(app["state"]["terminated"]["exitCode"], 0);

    let (status, restarted) = exit_under("OnFailure", 2, "").await;
    assert!(restarted);
    assert_eq!(status["phase"], "Running");
    let app = container(&status, "containerStatuses", "app");
    assert_eq!(app["state"]["waiting"]["reason"], "CrashLoopBackOff");
    assert_eq!(app["lastState"]["terminated"]["reason"], "Error");
    assert_eq!(app["lastState"]["terminated"]["exitCode"], 2);
}

#[tokio::test]
async fn restart_policy_never_keeps_the_exit() {
    let (status, restarted) = exit_under("Never", 1, "").await;
    assert!(!restarted);
    assert_eq!(status["phase"], "Failed");
    let app = container(&status, "containerStatuses", "app");
    assert_eq!(app["state"]["terminated"]["reason"], "Error");
    assert_eq!(app["state"]["terminated"]["exitCode"], 1);
    assert_eq!(condition(&status, "Ready"), "False");

    let (status, _) = exit_under("Never", 0, "").await;
    assert_eq!(status["phase"], "Succeeded");
}

#[tokio::test]
async fn oom_kill_is_reported_as_oomkilled() {
    let (status, _) = exit_under("Never", 137, "OOMKilled").await;
    let app = container(&status, "containerStatuses", "app");
    assert_eq!(app["state"]["terminated"]["reason"], "OOMKilled");
    assert_eq!(app["state"]["terminated"]["exitCode"], 137);
    assert_eq!(status["phase"], "Failed");
}

#[tokio::test]
async fn crash_loop_backoff_doubles_caps_and_resets() {
    let h = harness().await;
    let p = pod(json!({"containers": [{"name": "app"}]}));
    let mut st = state_for(&h, &p);
    sync_once(&h, &p, &mut st).await;

    // Restart n waits 10 s × 2^(n-1): not a moment before.
    for (attempt, wait) in [(0u32, 10u64), (1, 20), (2, 40)] {
        h.cri.exit("app", 1, "");
        h.cri.clear_calls();
        let status = sync_once(&h, &p, &mut st).await;
        let app = container(&status, "containerStatuses", "app");
        assert_eq!(app["state"]["waiting"]["reason"], "CrashLoopBackOff");
        assert_eq!(
            app["state"]["waiting"]["message"],
            format!("back-off {wait}s restarting failed container=app pod")
        );
        assert_eq!(app["restartCount"], attempt);
        h.cri.advance(Duration::from_secs(wait - 2));
        sync_once(&h, &p, &mut st).await;
        assert!(
            mutating(h.cri.calls()).is_empty(),
            "restart {attempt} came early"
        );
        h.cri.advance(Duration::from_secs(3));
        sync_once(&h, &p, &mut st).await;
        assert_eq!(
            mutating(h.cri.calls()),
            ["CreateContainer app", "StartContainer app"]
        );
        assert_eq!(h.cri.latest("app").map(|c| c.attempt), Some(attempt + 1));
    }

    // After many restarts the delay stays at 5 minutes.
    for c in h.cri.state().containers.iter_mut() {
        if c.state == api::ContainerState::ContainerRunning {
            c.attempt = 9;
        }
    }
    h.cri.exit("app", 1, "");
    h.cri.clear_calls();
    h.cri.advance(Duration::from_secs(298));
    sync_once(&h, &p, &mut st).await;
    assert!(mutating(h.cri.calls()).is_empty());
    h.cri.advance(Duration::from_secs(3));
    sync_once(&h, &p, &mut st).await;
    assert_eq!(mutating(h.cri.calls()).len(), 2);

    // A container that ran ten minutes before failing restarts at once.
    h.cri.advance(Duration::from_secs(601));
    h.cri.exit("app", 1, "");
    h.cri.clear_calls();
    sync_once(&h, &p, &mut st).await;
    assert_eq!(
        mutating(h.cri.calls()),
        ["CreateContainer app", "StartContainer app"]
    );
}

#[tokio::test]
async fn backoff_event_is_written_once_per_dead_container() {
    let h = harness().await;
    let p = pod(json!({"containers": [{"name": "app"}]}));
    let mut st = state_for(&h, &p);
    sync_once(&h, &p, &mut st).await;
    h.cri.exit("app", 1, "");
    sync_once(&h, &p, &mut st).await;
    sync_once(&h, &p, &mut st).await;
    assert_eq!(st.backoff_reported.len(), 1);
}

#[tokio::test]
async fn missing_config_map_is_create_container_config_error() {
    let h = harness().await;
    let p = pod(
        json!({"containers": [{"name": "app", "env": [{"name": "X", "valueFrom":
        {"configMapKeyRef": {"name": "cfg", "key": "k"}}}]}]}),
    );
    let mut st = state_for(&h, &p);
    let status = sync_once(&h, &p, &mut st).await;
    let app = container(&status, "containerStatuses", "app");
    assert_eq!(
        app["state"]["waiting"]["reason"],
        "CreateContainerConfigError"
    );
    assert_eq!(
        app["state"]["waiting"]["message"],
        "configmap \"cfg\" not found"
    );
    assert_eq!(status["phase"], "Pending");
    assert!(!h.container_names().contains(&"app".to_string()));

    // Once the ConfigMap exists the container starts with the value.
    h.api.put(
        "/api/v1/namespaces/default/configmaps/cfg",
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"},
               "data": {"k": "v"}}),
    );
    st.waiting.clear();
    let status = sync_once(&h, &p, &mut st).await;
    assert_eq!(status["phase"], "Running");
    let envs = h
        .cri
        .latest("app")
        .map(|c| c.config.envs)
        .unwrap_or_default();
    assert!(envs.iter().any(|e| e.key == "X" && e.value == "v"));
}

#[tokio::test]
async fn failed_pull_is_err_image_pull_then_image_pull_backoff() {
    let h = harness().await;
    let image = "registry.example/missing:1";
    h.cri
        .state()
        .pull_failures
        .insert(image.into(), "failed to resolve reference".into());
    let p = pod(json!({"containers": [{"name": "app", "image": image}]}));
    let mut st = state_for(&h, &p);
    let status = sync_once(&h, &p, &mut st).await;
    let app = container(&status, "containerStatuses", "app");
    assert_eq!(app["state"]["waiting"]["reason"], "ErrImagePull");
    assert_eq!(
        app["state"]["waiting"]["message"],
        "failed to resolve reference"
    );

    let left = |st: &PodState| {
        st.waiting
            .get("app")
            .map(|w| w.2.saturating_duration_since(Instant::now()))
            .unwrap_or_default()
    };
    assert!(left(&st) > Duration::from_secs(9) && left(&st) <= Duration::from_secs(10));

    // Inside the back-off: no pull, and the reason turns to ImagePullBackOff.
    h.cri.clear_calls();
    if let Some(f) = st.pull_failures.get_mut("app") {
        f.1 = Instant::now()
            .checked_sub(Duration::from_secs(5))
            .unwrap_or(f.1);
    }
    let status = sync_once(&h, &p, &mut st).await;
    assert!(h.cri.calls().is_empty());
    let app = container(&status, "containerStatuses", "app");
    assert_eq!(app["state"]["waiting"]["reason"], "ImagePullBackOff");

    // The next failure doubles the wait.
    if let Some(w) = st.waiting.get_mut("app") {
        w.2 = Instant::now();
    }
    sync_once(&h, &p, &mut st).await;
    assert_eq!(h.cri.calls(), [format!("PullImage {image}")]);
    assert!(left(&st) > Duration::from_secs(19) && left(&st) <= Duration::from_secs(20));
    h.cri.clear_calls();

    // After it the pull is retried and, now that it works, the container starts.
    h.cri.state().pull_failures.clear();
    if let Some(w) = st.waiting.get_mut("app") {
        w.2 = Instant::now();
    }
    let status = sync_once(&h, &p, &mut st).await;
    assert_eq!(
        mutating(h.cri.calls()),
        [
            format!("PullImage {image}"),
            "CreateContainer app".into(),
            "StartContainer app".into()
        ]
    );
    assert_eq!(status["phase"], "Running");
}

#[tokio::test]
async fn pull_policy_never_without_the_image_is_err_image_never_pull() {
    let h = harness().await;
    let p = pod(json!({"containers": [{"name": "app", "image": "absent:1",
                                        "imagePullPolicy": "Never"}]}));
    let mut st = state_for(&h, &p);
    let status = sync_once(&h, &p, &mut st).await;
    let app = container(&status, "containerStatuses", "app");
    assert_eq!(app["state"]["waiting"]["reason"], "ErrImageNeverPull");
    assert!(h.cri.state().pulls.is_empty());
}

#[tokio::test]
async fn running_containers_are_adopted_after_an_agent_restart() {
    let h = harness().await;
    let p = pod(json!({
        "initContainers": [{"name": "init"}],
        "containers": [{"name": "a"}, {"name": "b"}],
    }));
    let mut st = state_for(&h, &p);
    sync_once(&h, &p, &mut st).await;
    h.cri.exit("init", 0, "");
    sync_once(&h, &p, &mut st).await;
    let ids: Vec<String> = h
        .cri
        .state()
        .containers
        .iter()
        .map(|c| c.id.clone())
        .collect();

    // A new agent: nothing remembered but what the runtime tells.
    h.cri.clear_calls();
    let mut fresh = state_for(&h, &p);
    let status = sync_once(&h, &p, &mut fresh).await;
    assert!(
        mutating(h.cri.calls()).is_empty(),
        "adoption touched the runtime: {:?}",
        h.cri.calls()
    );
    let after: Vec<String> = h
        .cri
        .state()
        .containers
        .iter()
        .map(|c| c.id.clone())
        .collect();
    assert_eq!(ids, after);
    assert_eq!(status["phase"], "Running");
    assert_eq!(condition(&status, "Initialized"), "True");
    for name in ["a", "b"] {
        let c = container(&status, "containerStatuses", name);
        assert_eq!(c["restartCount"], 0);
        assert!(c["state"]["running"].is_object());
    }
}

#[tokio::test]
async fn dead_sandbox_is_replaced_and_containers_recreated() {
    let h = harness().await;
    let p = pod(json!({"containers": [{"name": "app"}]}));
    let mut st = state_for(&h, &p);
    sync_once(&h, &p, &mut st).await;
    for s in h.cri.state().sandboxes.iter_mut() {
        s.ready = false;
    }
    h.cri.clear_calls();
    sync_once(&h, &p, &mut st).await;
    let calls = mutating(h.cri.calls());
    assert_eq!(calls.first().map(String::as_str), Some("StopPodSandbox"));
    assert!(calls.contains(&"RunPodSandbox p".to_string()));
    assert!(calls.ends_with(&["CreateContainer app".into(), "StartContainer app".into()]));
    let attempt = h.cri.state().sandboxes[0]
        .config
        .metadata
        .as_ref()
        .map(|m| m.attempt);
    assert_eq!(attempt, Some(1));
}

#[tokio::test]
async fn deletion_stops_containers_removes_the_sandbox_and_deletes_the_pod() {
    let h = harness().await;
    let p = pod(json!({"containers": [{"name": "app"}]}));
    let mut st = state_for(&h, &p);
    sync_once(&h, &p, &mut st).await;
    let mut deleting = p.clone();
    deleting.metadata.deletion_timestamp = Some(
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now()),
    );
    deleting.metadata.deletion_grace_period_seconds = Some(5);
    h.cri.clear_calls();
    sync(&h.agent, &deleting, &mut st).await.expect("sync");
    let calls = mutating(h.cri.calls());
    assert_eq!(calls.first().map(String::as_str), Some("StopContainer app"));
    assert!(calls.contains(&"RemovePodSandbox".to_string()));
    assert!(h.sandbox_uids().is_empty());
    let delete = h
        .api
        .calls()
        .into_iter()
        .find(|c| c.method == "DELETE")
        .expect("the final DELETE");
    assert_eq!(delete.path, "/api/v1/namespaces/default/pods/p");
    assert_eq!(delete.body["gracePeriodSeconds"], 0);
    assert_eq!(delete.body["preconditions"]["uid"], "uid-1");
}

#[tokio::test]
async fn finished_pod_gives_back_its_sandbox_but_keeps_containers() {
    let h = harness().await;
    let p = pod(json!({"restartPolicy": "Never", "containers": [{"name": "app"}]}));
    let mut st = state_for(&h, &p);
    sync_once(&h, &p, &mut st).await;
    h.cri.exit("app", 0, "");
    let status = sync_once(&h, &p, &mut st).await;
    assert_eq!(status["phase"], "Succeeded");
    let mut done = p.clone();
    done.status = serde_json::from_value(status).ok();
    h.cri.clear_calls();
    sync(&h.agent, &done, &mut st).await.expect("sync");
    assert_eq!(mutating(h.cri.calls()), ["StopPodSandbox"]);
    assert_eq!(h.container_names(), ["app"]);
}

fn sidecar(name: &str) -> Value {
    json!({"name": name, "restartPolicy": "Always"})
}

fn created(h: &Harness, name: &str) -> bool {
    h.container_names().iter().any(|n| n == name)
}

#[tokio::test]
async fn sidecar_starts_in_order_and_does_not_block_initialized() {
    let h = harness().await;
    let p = pod(json!({
        "restartPolicy": "Never",
        "initContainers": [{"name": "i1"}, sidecar("side"), {"name": "i2"}],
        "containers": [{"name": "app"}],
    }));
    let mut st = state_for(&h, &p);
    sync_once(&h, &p, &mut st).await;
    assert!(created(&h, "i1") && !created(&h, "side"));
    h.cri.exit("i1", 0, "");
    h.cri.clear_calls();
    sync_once(&h, &p, &mut st).await;
    assert_eq!(
        mutating(h.cri.calls()),
        ["CreateContainer side", "StartContainer side"]
    );
    // Started (no startupProbe): the next init container follows.
    h.cri.clear_calls();
    let status = sync_once(&h, &p, &mut st).await;
    assert_eq!(
        mutating(h.cri.calls()),
        ["CreateContainer i2", "StartContainer i2"]
    );
    assert_eq!(condition(&status, "Initialized"), "False");
    h.cri.exit("i2", 0, "");
    h.cri.clear_calls();
    let status = sync_once(&h, &p, &mut st).await;
    assert_eq!(
        mutating(h.cri.calls()),
        ["CreateContainer app", "StartContainer app"]
    );
    // The still-running sidecar does not hold Initialized back.
    assert_eq!(condition(&status, "Initialized"), "True");
    assert_eq!(status["phase"], "Running");
    let side = container(&status, "initContainerStatuses", "side");
    assert!(side["state"]["running"].is_object(), "{side}");
    assert_eq!(side["started"], true);
    assert_eq!(side["ready"], true);
    assert_eq!(condition(&status, "Ready"), "True");
}

#[tokio::test]
async fn sidecar_startup_probe_gates_the_next_init_container() {
    let h = harness().await;
    let p = pod(json!({
        "initContainers": [
            {"name": "side", "restartPolicy": "Always",
             "startupProbe": {"exec": {"command": ["false"]}, "periodSeconds": 1}},
            {"name": "i2"},
        ],
        "containers": [{"name": "app"}],
    }));
    let mut st = state_for(&h, &p);
    for _ in 0..4 {
        sync_once(&h, &p, &mut st).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(
        h.cri.calls().iter().any(|c| c == "ExecSync false"),
        "probe never ran"
    );
    assert!(
        !created(&h, "i2"),
        "i2 started before the sidecar's startupProbe passed"
    );
    let status = st.last_written.clone().unwrap_or_default();
    let side = container(&status, "initContainerStatuses", "side");
    assert_eq!(side["started"], false);

    // The same pod with a passing probe: i2 follows once the probe has passed.
    let h = harness().await;
    let p = pod(json!({
        "initContainers": [
            {"name": "side", "restartPolicy": "Always",
             "startupProbe": {"exec": {"command": ["true"]}, "periodSeconds": 1}},
            {"name": "i2"},
        ],
        "containers": [{"name": "app"}],
    }));
    let mut st = state_for(&h, &p);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !created(&h, "i2") && Instant::now() < deadline {
        sync_once(&h, &p, &mut st).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(created(&h, "i2"));
}

#[tokio::test]
async fn sidecar_is_restarted_when_it_exits_even_under_never() {
    let h = harness().await;
    let p = pod(json!({
        "restartPolicy": "Never",
        "initContainers": [sidecar("side")],
        "containers": [{"name": "app"}],
    }));
    let mut st = state_for(&h, &p);
    for _ in 0..2 {
        sync_once(&h, &p, &mut st).await;
    }
    assert!(created(&h, "app"));
    h.cri.exit("side", 1, "");
    h.cri.clear_calls();
    let status = sync_once(&h, &p, &mut st).await;
    let side = container(&status, "initContainerStatuses", "side");
    assert_eq!(side["state"]["waiting"]["reason"], "CrashLoopBackOff");
    assert_eq!(condition(&status, "Ready"), "False");
    assert!(mutating(h.cri.calls()).is_empty());
    h.cri.advance(Duration::from_secs(11));
    sync_once(&h, &p, &mut st).await;
    assert_eq!(
        mutating(h.cri.calls()),
        ["CreateContainer side", "StartContainer side"]
    );
    assert_eq!(h.cri.latest("side").map(|c| c.attempt), Some(1));
}

#[tokio::test]
async fn sidecar_not_ready_keeps_the_pod_not_ready() {
    let h = harness().await;
    let p = pod(json!({
        "initContainers": [{"name": "side", "restartPolicy": "Always",
                            "readinessProbe": {"exec": {"command": ["false"]}}}],
        "containers": [{"name": "app"}],
    }));
    let mut st = state_for(&h, &p);
    let mut status = Value::Null;
    for _ in 0..3 {
        status = sync_once(&h, &p, &mut st).await;
    }
    assert!(created(&h, "app"));
    assert_eq!(
        container(&status, "containerStatuses", "app")["ready"],
        true
    );
    let side = container(&status, "initContainerStatuses", "side");
    assert_eq!(side["ready"], false);
    assert_eq!(side["started"], true);
    assert_eq!(condition(&status, "Ready"), "False");
    assert_eq!(condition(&status, "ContainersReady"), "False");
}

#[tokio::test]
async fn sidecars_stop_once_the_app_containers_finish() {
    let h = harness().await;
    let p = pod(json!({
        "restartPolicy": "Never",
        "initContainers": [sidecar("side")],
        "containers": [{"name": "app"}],
    }));
    let mut st = state_for(&h, &p);
    for _ in 0..2 {
        sync_once(&h, &p, &mut st).await;
    }
    h.cri.exit("app", 0, "");
    let status = sync_once(&h, &p, &mut st).await;
    // Not terminal while the sidecar still runs.
    assert_eq!(status["phase"], "Running");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !h.cri.calls().contains(&"StopContainer side".to_string()) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(h.cri.calls().contains(&"StopContainer side".to_string()));
    let status = sync_once(&h, &p, &mut st).await;
    assert_eq!(status["phase"], "Succeeded");
    let side = container(&status, "initContainerStatuses", "side");
    assert!(side["state"]["terminated"].is_object(), "{side}");
    // Stopped for good: not restarted.
    h.cri.advance(Duration::from_secs(400));
    h.cri.clear_calls();
    sync_once(&h, &p, &mut st).await;
    assert!(
        !h.cri
            .calls()
            .iter()
            .any(|c| c.starts_with("StartContainer"))
    );
}

#[tokio::test]
async fn termination_stops_app_containers_before_sidecars_in_reverse_order() {
    let h = harness().await;
    let p = pod(json!({
        "initContainers": [sidecar("s1"), sidecar("s2")],
        "containers": [{"name": "a"}, {"name": "b"}],
    }));
    let mut st = state_for(&h, &p);
    for _ in 0..4 {
        sync_once(&h, &p, &mut st).await;
    }
    assert!(created(&h, "a") && created(&h, "b"));
    let mut deleting = p.clone();
    deleting.metadata.deletion_timestamp = Some(
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now()),
    );
    h.cri.clear_calls();
    sync(&h.agent, &deleting, &mut st).await.expect("sync");
    let stops: Vec<String> = h
        .cri
        .calls()
        .into_iter()
        .filter(|c| c.starts_with("StopContainer"))
        .collect();
    assert_eq!(stops.len(), 4, "{stops:?}");
    let mut apps = stops[..2].to_vec();
    apps.sort();
    assert_eq!(apps, ["StopContainer a", "StopContainer b"]);
    assert_eq!(stops[2..], ["StopContainer s2", "StopContainer s1"]);
}

#[tokio::test]
async fn pods_that_do_not_fit_are_rejected_as_out_of_cpu() {
    let Harness {
        dir,
        cri,
        api,
        agent,
    } = harness().await;
    api.put(
        "/api/v1/nodes/node-1",
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1"},
               "status": {"allocatable": {"cpu": "2", "memory": "4Gi", "pods": "110"}}}),
    );
    let item = |name: &str, uid: &str, created: &str, cpu: Option<&str>, running: bool| {
        let mut p = json!({
            "metadata": {"name": name, "namespace": "default", "uid": uid,
                         "creationTimestamp": created, "resourceVersion": "1"},
            "spec": {"nodeName": "node-1", "containers": [{"name": "c", "image": IMAGE}]},
        });
        if let Some(cpu) = cpu {
            p["spec"]["containers"][0]["resources"] = json!({"requests": {"cpu": cpu}});
        }
        if running {
            p["status"] = json!({"phase": "Running", "containerStatuses": [{"name": "c",
                "image": IMAGE, "imageID": "", "ready": true, "restartCount": 0,
                "containerID": "containerd://x"}]});
        }
        p
    };
    api.put(
        "/api/v1/pods",
        json!({"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "5"},
        "items": [
            // Listed first but newer: judged after the running pod is counted.
            item("big", "uid-big", "2026-01-01T00:00:02Z", Some("2"), false),
            item("running", "uid-running", "2026-01-01T00:00:00Z", Some("500m"), true),
            item("small", "uid-small", "2026-01-01T00:00:03Z", None, false),
        ]}),
    );
    let agent = Arc::new(agent);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(run(agent.clone(), shutdown.clone()));
    let rejected = |api: &crate::testing::FakeApi| {
        api.calls()
            .into_iter()
            .find(|c| c.method == "PATCH" && c.path == "/api/v1/namespaces/default/pods/big/status")
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while (rejected(&api).is_none() || cri.state().sandboxes.len() < 2) && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.cancel();
    let _ = task.await;
    let patch = rejected(&api).expect("the big pod's rejection");
    assert_eq!(patch.body["status"]["phase"], "Failed");
    assert_eq!(patch.body["status"]["reason"], "OutOfcpu");
    assert_eq!(
        patch.body["status"]["message"],
        "Pod was rejected: Node didn't have enough resource: cpu, requested: 2000, used: 500, capacity: 2000"
    );
    let mut uids: Vec<String> = cri
        .state()
        .sandboxes
        .iter()
        .filter_map(|s| s.config.labels.get(LABEL_POD_UID).cloned())
        .collect();
    uids.sort();
    assert_eq!(uids, ["uid-running", "uid-small"]);
    let event = api
        .calls()
        .into_iter()
        .find(|c| c.method == "POST" && c.body["reason"] == "OutOfcpu")
        .expect("the OutOfcpu event");
    assert_eq!(event.body["type"], "Warning");
    drop(dir);
}

#[tokio::test]
async fn pull_secrets_of_the_pods_namespace_reach_pull_image() {
    use base64::Engine;
    let h = harness().await;
    let config = json!({"auths": {
        "reg.example.com": {"auth": base64::engine::general_purpose::STANDARD.encode("alice:pw")},
        "other.example.com": {"username": "x", "password": "y"},
    }});
    h.api.put(
        "/api/v1/namespaces/default/secrets/regcred",
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "regcred"},
               "type": "kubernetes.io/dockerconfigjson",
               "data": {".dockerconfigjson": base64::engine::general_purpose::STANDARD
                   .encode(config.to_string())}}),
    );
    let p = pod(json!({
        "imagePullSecrets": [{"name": "gone"}, {"name": "regcred"}],
        "containers": [{"name": "app", "image": "reg.example.com/team/app:1"}],
    }));
    let mut st = state_for(&h, &p);
    let status = sync_once(&h, &p, &mut st).await;
    assert_eq!(status["phase"], "Running");
    let pulls = h.cri.state().pulls.clone();
    assert_eq!(pulls.len(), 1);
    let auth = pulls[0].1.clone().expect("credentials sent");
    assert_eq!(
        (
            auth.username.as_str(),
            auth.password.as_str(),
            auth.server_address.as_str()
        ),
        ("alice", "pw", "reg.example.com")
    );
    // Events are written in the background: poll for it.
    let find = || {
        h.api
            .calls()
            .into_iter()
            .find(|c| c.method == "POST" && c.body["reason"] == "FailedToRetrieveImagePullSecret")
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut missing = find();
    while missing.is_none() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        missing = find();
    }
    let missing = missing.expect("the missing-secret event");
    assert!(
        missing.body["message"]
            .as_str()
            .is_some_and(|m| m.contains("(gone)")),
        "{}",
        missing.body
    );
}
