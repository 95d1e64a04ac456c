use jiff::Timestamp;
use serde_json::{Value, json};

use crate::table::{column_definitions, row_cells};

fn now() -> Timestamp {
    "2024-05-01T12:00:00Z".parse().expect("valid timestamp")
}

fn cells(group: &str, resource: &str, obj: &Value) -> Vec<Value> {
    let cells = row_cells(group, resource, obj, now());
    assert_eq!(
        cells.len(),
        column_definitions(group, resource).len(),
        "one cell per column for {resource}"
    );
    cells
}

fn column_names(group: &str, resource: &str) -> Vec<(String, u64)> {
    column_definitions(group, resource)
        .iter()
        .map(|c| {
            (
                c["name"].as_str().expect("name").to_owned(),
                c["priority"].as_u64().expect("priority"),
            )
        })
        .collect()
}

fn pod(spec: Value, status: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web-0", "namespace": "default", "creationTimestamp": "2024-05-01T10:00:00Z"},
        "spec": spec,
        "status": status,
    })
}

fn status_of(pod: &Value) -> (String, String, String) {
    let c = cells("", "pods", pod);
    (
        c[1].as_str().expect("ready").to_owned(),
        c[2].as_str().expect("status").to_owned(),
        c[3].as_str().expect("restarts").to_owned(),
    )
}

#[test]
fn pod_columns_match_upstream_with_wide_priorities() {
    assert_eq!(
        column_names("", "pods"),
        [
            ("Name", 0),
            ("Ready", 0),
            ("Status", 0),
            ("Restarts", 0),
            ("Age", 0),
            ("IP", 1),
            ("Node", 1),
            ("Nominated Node", 1),
            ("Readiness Gates", 1)
        ]
        .map(|(n, p)| (n.to_owned(), p))
    );
    let defs = column_definitions("", "pods");
    assert_eq!(defs[0]["format"], "name");
    assert_eq!(defs[0]["type"], "string");
    assert_eq!(defs[3]["type"], "string");
    assert_eq!(defs[1]["format"], "");
    for d in &defs {
        for key in ["name", "type", "format", "description", "priority"] {
            assert!(d.get(key).is_some(), "column {d} lacks {key}");
        }
    }
}

#[test]
fn running_pod_with_restarts_shows_last_restart_age() {
    let p = pod(
        json!({"nodeName": "node-1", "containers": [{"name": "app", "image": "nginx"}, {"name": "log", "image": "busybox"}]}),
        json!({
            "phase": "Running",
            "podIP": "10.244.0.5",
            "podIPs": [{"ip": "10.244.0.5"}],
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [
                {"name": "app", "ready": true, "restartCount": 3, "started": true,
                 "state": {"running": {"startedAt": "2024-05-01T11:55:00Z"}},
                 "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled", "finishedAt": "2024-05-01T11:55:00Z"}}},
                {"name": "log", "ready": true, "restartCount": 0, "started": true,
                 "state": {"running": {"startedAt": "2024-05-01T10:00:05Z"}}}
            ]
        }),
    );
    assert_eq!(
        cells("", "pods", &p),
        vec![
            json!("web-0"),
            json!("2/2"),
            json!("Running"),
            json!("3 (5m ago)"),
            json!("120m"),
            json!("10.244.0.5"),
            json!("node-1"),
            json!("<none>"),
            json!("<none>")
        ]
    );
}

#[test]
fn crash_looping_pod_shows_crashloopbackoff() {
    let p = pod(
        json!({"nodeName": "node-1", "containers": [{"name": "app", "image": "bad"}]}),
        json!({
            "phase": "Running",
            "podIPs": [{"ip": "10.244.0.6"}],
            "containerStatuses": [{
                "name": "app", "ready": false, "restartCount": 4, "started": false,
                "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 1m20s restarting failed container"}},
                "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": "2024-05-01T11:59:30Z"}}
            }]
        }),
    );
    assert_eq!(
        status_of(&p),
        (
            "0/1".into(),
            "CrashLoopBackOff".into(),
            "4 (30s ago)".into()
        )
    );
}

#[test]
fn deleted_running_pod_is_terminating() {
    let mut p = pod(
        json!({"containers": [{"name": "app", "image": "nginx"}]}),
        json!({"phase": "Running", "containerStatuses": [{"name": "app", "ready": true, "restartCount": 0, "state": {"running": {}}}]}),
    );
    p["metadata"]["deletionTimestamp"] = json!("2024-05-01T11:59:50Z");
    assert_eq!(status_of(&p).1, "Terminating");
}

#[test]
fn deleted_pod_on_lost_node_is_unknown_and_finished_pod_keeps_its_status() {
    let mut lost = pod(
        json!({"containers": [{"name": "app"}]}),
        json!({"phase": "Running", "reason": "NodeLost"}),
    );
    lost["metadata"]["deletionTimestamp"] = json!("2024-05-01T11:00:00Z");
    assert_eq!(status_of(&lost).1, "Unknown");

    let mut done = pod(
        json!({"containers": [{"name": "app"}]}),
        json!({"phase": "Succeeded", "containerStatuses": [{"name": "app", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}),
    );
    done["metadata"]["deletionTimestamp"] = json!("2024-05-01T11:00:00Z");
    assert_eq!(
        status_of(&done),
        ("0/1".into(), "Completed".into(), "0".into())
    );
}

#[test]
fn fresh_pod_without_statuses_is_pending_and_evicted_pod_shows_reason() {
    let fresh = pod(
        json!({"containers": [{"name": "app"}]}),
        json!({"phase": "Pending"}),
    );
    assert_eq!(
        status_of(&fresh),
        ("0/1".into(), "Pending".into(), "0".into())
    );

    let evicted = pod(
        json!({"containers": [{"name": "app"}]}),
        json!({"phase": "Failed", "reason": "Evicted", "message": "The node was low on resource: memory."}),
    );
    assert_eq!(status_of(&evicted).1, "Evicted");
}

#[test]
fn pulling_image_shows_container_creating() {
    let p = pod(
        json!({"containers": [{"name": "app"}]}),
        json!({"phase": "Pending", "containerStatuses": [{"name": "app", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "ContainerCreating"}}}]}),
    );
    assert_eq!(
        status_of(&p),
        ("0/1".into(), "ContainerCreating".into(), "0".into())
    );
}

#[test]
fn first_container_has_the_final_say_on_status() {
    let p = pod(
        json!({"containers": [{"name": "a"}, {"name": "b"}]}),
        json!({"phase": "Pending", "containerStatuses": [
            {"name": "a", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "ErrImagePull"}}},
            {"name": "b", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}}
        ]}),
    );
    assert_eq!(status_of(&p).1, "ErrImagePull");
}

#[test]
fn init_container_progress_is_init_n_of_m() {
    let p = pod(
        json!({"initContainers": [{"name": "i1"}, {"name": "i2"}], "containers": [{"name": "app"}]}),
        json!({"phase": "Pending",
            "conditions": [{"type": "Initialized", "status": "False"}],
            "initContainerStatuses": [
                {"name": "i1", "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                {"name": "i2", "ready": false, "restartCount": 0, "state": {"running": {"startedAt": "2024-05-01T11:59:00Z"}}}
            ],
            "containerStatuses": [{"name": "app", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "PodInitializing"}}}]
        }),
    );
    assert_eq!(status_of(&p), ("0/1".into(), "Init:1/2".into(), "0".into()));
}

#[test]
fn failing_init_containers_show_init_reason_and_restarts() {
    let failing = |state: Value| {
        pod(
            json!({"initContainers": [{"name": "i1"}], "containers": [{"name": "app"}]}),
            json!({"phase": "Pending",
                "conditions": [{"type": "Initialized", "status": "False"}],
                "initContainerStatuses": [{"name": "i1", "ready": false, "restartCount": 2, "state": state,
                    "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2024-05-01T11:58:00Z"}}}],
                "containerStatuses": [{"name": "app", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "PodInitializing"}}}]
            }),
        )
    };
    let crash = failing(json!({"waiting": {"reason": "CrashLoopBackOff"}}));
    assert_eq!(
        status_of(&crash),
        (
            "0/1".into(),
            "Init:CrashLoopBackOff".into(),
            "2 (2m ago)".into()
        )
    );
    let error = failing(json!({"terminated": {"exitCode": 1, "reason": "Error"}}));
    assert_eq!(status_of(&error).1, "Init:Error");
    let code = failing(json!({"terminated": {"exitCode": 2}}));
    assert_eq!(status_of(&code).1, "Init:ExitCode:2");
    let signal = failing(json!({"terminated": {"exitCode": 137, "signal": 9}}));
    assert_eq!(status_of(&signal).1, "Init:Signal:9");
}

#[test]
fn finished_init_with_waiting_app_shows_pod_initializing() {
    let p = pod(
        json!({"initContainers": [{"name": "i1"}], "containers": [{"name": "app"}]}),
        json!({"phase": "Pending",
            "conditions": [{"type": "Initialized", "status": "True"}],
            "initContainerStatuses": [{"name": "i1", "ready": true, "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}],
            "containerStatuses": [{"name": "app", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "PodInitializing"}}}]
        }),
    );
    assert_eq!(status_of(&p).1, "PodInitializing");
}

#[test]
fn completed_job_pod_and_terminated_without_reason() {
    let done = pod(
        json!({"containers": [{"name": "job"}]}),
        json!({"phase": "Succeeded", "containerStatuses": [{"name": "job", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 0, "reason": "Completed", "finishedAt": "2024-05-01T11:00:00Z"}}}]}),
    );
    assert_eq!(
        status_of(&done),
        ("0/1".into(), "Completed".into(), "0".into())
    );
    let killed = pod(
        json!({"containers": [{"name": "job"}]}),
        json!({"phase": "Failed", "containerStatuses": [{"name": "job", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 143, "signal": 15}}}]}),
    );
    assert_eq!(status_of(&killed).1, "Signal:15");
}

#[test]
fn completed_container_beside_running_one_is_running_or_not_ready() {
    let mk = |ready: &str| {
        pod(
            json!({"containers": [{"name": "main"}, {"name": "helper"}]}),
            json!({"phase": "Running",
            "conditions": [{"type": "Ready", "status": ready}],
            "containerStatuses": [
                {"name": "main", "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                {"name": "helper", "ready": true, "restartCount": 0, "state": {"running": {}}}
            ]}),
        )
    };
    assert_eq!(
        status_of(&mk("True")),
        ("1/2".into(), "Running".into(), "0".into())
    );
    assert_eq!(status_of(&mk("False")).1, "NotReady");
}

#[test]
fn sidecar_init_containers_count_toward_ready_and_restarts() {
    let p = pod(
        json!({"initContainers": [{"name": "proxy", "restartPolicy": "Always"}], "containers": [{"name": "app"}]}),
        json!({"phase": "Running",
            "conditions": [{"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "True"}],
            "initContainerStatuses": [{"name": "proxy", "ready": true, "started": true, "restartCount": 1,
                "state": {"running": {}},
                "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2024-04-29T09:00:00Z"}}}],
            "containerStatuses": [{"name": "app", "ready": true, "restartCount": 0, "state": {"running": {}}}]
        }),
    );
    assert_eq!(
        status_of(&p),
        ("2/2".into(), "Running".into(), "1 (2d3h ago)".into())
    );
}

#[test]
fn scheduling_gated_pod_and_readiness_gates() {
    let gated = pod(
        json!({"containers": [{"name": "app"}], "schedulingGates": [{"name": "wait"}]}),
        json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}),
    );
    assert_eq!(status_of(&gated).1, "SchedulingGated");

    let gates = pod(
        json!({"containers": [{"name": "app"}],
            "readinessGates": [{"conditionType": "example.com/lb"}, {"conditionType": "example.com/dns"}]}),
        json!({"phase": "Running", "nominatedNodeName": "node-2",
            "conditions": [{"type": "example.com/lb", "status": "True"}, {"type": "example.com/dns", "status": "False"}]}),
    );
    let c = cells("", "pods", &gates);
    assert_eq!(c[7], "node-2");
    assert_eq!(c[8], "1/2");
}

fn deployment() -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "creationTimestamp": "2024-04-28T12:00:00Z"},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [
                {"name": "nginx", "image": "nginx:1.27"}, {"name": "sidecar", "image": "busybox:1.36"}]}}
        },
        "status": {"replicas": 3, "readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}
    })
}

#[test]
fn deployment_two_of_three_ready() {
    assert_eq!(
        column_names("apps", "deployments"),
        [
            ("Name", 0),
            ("Ready", 0),
            ("Up-to-date", 0),
            ("Available", 0),
            ("Age", 0),
            ("Containers", 1),
            ("Images", 1),
            ("Selector", 1)
        ]
        .map(|(n, p)| (n.to_owned(), p))
    );
    assert_eq!(
        cells("apps", "deployments", &deployment()),
        vec![
            json!("web"),
            json!("2/3"),
            json!(3),
            json!(2),
            json!("3d"),
            json!("nginx,sidecar"),
            json!("nginx:1.27,busybox:1.36"),
            json!("app=web")
        ]
    );
}

#[test]
fn deployment_without_status_is_zero_ready_and_empty_selector_prints_empty() {
    let mut d = deployment();
    d.as_object_mut().expect("object").remove("status");
    d["spec"]["selector"] = json!({});
    let c = cells("apps", "deployments", &d);
    assert_eq!(c[1], "0/3");
    assert_eq!(c[2], 0);
    assert_eq!(c[7], "");
}

#[test]
fn replicaset_and_replicationcontroller_counts() {
    let rs = json!({
        "metadata": {"name": "web-7d9f", "creationTimestamp": "2024-05-01T11:50:00Z"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web", "pod-template-hash": "7d9f"}},
            "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx"}]}}},
        "status": {"replicas": 3, "readyReplicas": 1}
    });
    assert_eq!(
        cells("apps", "replicasets", &rs),
        vec![
            json!("web-7d9f"),
            json!(3),
            json!(3),
            json!(1),
            json!("10m"),
            json!("nginx"),
            json!("nginx"),
            json!("app=web,pod-template-hash=7d9f")
        ]
    );
    let rc = json!({
        "metadata": {"name": "old", "creationTimestamp": "2024-05-01T11:00:00Z"},
        "spec": {"replicas": 2, "selector": {"app": "old"},
            "template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}},
        "status": {"replicas": 2, "readyReplicas": 2}
    });
    assert_eq!(
        cells("", "replicationcontrollers", &rc),
        vec![
            json!("old"),
            json!(2),
            json!(2),
            json!(2),
            json!("60m"),
            json!("c"),
            json!("i"),
            json!("app=old")
        ]
    );
}

#[test]
fn statefulset_and_daemonset_rows() {
    let sts = json!({
        "metadata": {"name": "db", "creationTimestamp": "2024-05-01T11:59:00Z"},
        "spec": {"replicas": 3, "template": {"spec": {"containers": [{"name": "pg", "image": "postgres:16"}]}}},
        "status": {"replicas": 1, "readyReplicas": 1}
    });
    assert_eq!(
        cells("apps", "statefulsets", &sts),
        vec![
            json!("db"),
            json!("1/3"),
            json!("60s"),
            json!("pg"),
            json!("postgres:16")
        ]
    );
    let ds = json!({
        "metadata": {"name": "agent", "creationTimestamp": "2024-05-01T09:00:00Z"},
        "spec": {"selector": {"matchLabels": {"app": "agent"}},
            "template": {"spec": {"nodeSelector": {"kubernetes.io/os": "linux"},
                "containers": [{"name": "a", "image": "agent:1"}]}}},
        "status": {"desiredNumberScheduled": 2, "currentNumberScheduled": 2, "numberReady": 1,
            "updatedNumberScheduled": 2, "numberAvailable": 1}
    });
    assert_eq!(
        cells("apps", "daemonsets", &ds),
        vec![
            json!("agent"),
            json!(2),
            json!(2),
            json!(1),
            json!(2),
            json!(1),
            json!("kubernetes.io/os=linux"),
            json!("3h"),
            json!("a"),
            json!("agent:1"),
            json!("app=agent")
        ]
    );
}

#[test]
fn job_status_completions_and_duration() {
    let running = json!({
        "metadata": {"name": "pi", "creationTimestamp": "2024-05-01T11:58:00Z"},
        "spec": {"completions": 3, "parallelism": 1, "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "abc"}},
            "template": {"spec": {"containers": [{"name": "pi", "image": "perl"}]}}},
        "status": {"startTime": "2024-05-01T11:58:00Z", "succeeded": 1, "active": 1}
    });
    assert_eq!(
        cells("batch", "jobs", &running),
        vec![
            json!("pi"),
            json!("Running"),
            json!("1/3"),
            json!("2m"),
            json!("2m"),
            json!("pi"),
            json!("perl"),
            json!("batch.kubernetes.io/controller-uid=abc")
        ]
    );
    let complete = json!({
        "metadata": {"name": "pi", "creationTimestamp": "2024-05-01T11:00:00Z"},
        "spec": {"parallelism": 1, "template": {"spec": {"containers": []}}},
        "status": {"startTime": "2024-05-01T11:00:00Z", "completionTime": "2024-05-01T11:00:42Z", "succeeded": 1,
            "conditions": [{"type": "SuccessCriteriaMet", "status": "True"}, {"type": "Complete", "status": "True"}]}
    });
    let c = cells("batch", "jobs", &complete);
    assert_eq!(
        (&c[1], &c[2], &c[3]),
        (&json!("Complete"), &json!("1/1"), &json!("42s"))
    );

    let parallel = json!({"metadata": {"name": "p"}, "spec": {"parallelism": 4}, "status": {
        "conditions": [{"type": "Failed", "status": "True"}]}});
    let c = cells("batch", "jobs", &parallel);
    assert_eq!(
        (&c[1], &c[2], &c[3]),
        (&json!("Failed"), &json!("0/1 of 4"), &json!(""))
    );
    let mut suspended = parallel.clone();
    suspended["status"]["conditions"] = json!([{"type": "Suspended", "status": "True"}]);
    assert_eq!(cells("batch", "jobs", &suspended)[1], "Suspended");
}

#[test]
fn cronjob_row_uses_bool_pointer_text_and_none_placeholders() {
    assert_eq!(
        column_definitions("batch", "cronjobs")[3]["type"],
        "boolean",
        "Suspend is declared boolean even though its cells are strings"
    );
    let cj = json!({
        "metadata": {"name": "hello", "creationTimestamp": "2024-04-30T12:00:00Z"},
        "spec": {"schedule": "*/5 * * * *", "suspend": false,
            "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "hello", "image": "busybox"}]}}}}},
        "status": {"active": [{"name": "hello-1"}], "lastScheduleTime": "2024-05-01T11:55:00Z"}
    });
    assert_eq!(
        cells("batch", "cronjobs", &cj),
        vec![
            json!("hello"),
            json!("*/5 * * * *"),
            json!("<none>"),
            json!("False"),
            json!(1),
            json!("5m"),
            json!("24h"),
            json!("hello"),
            json!("busybox"),
            json!("<none>")
        ]
    );
    let never =
        json!({"metadata": {"name": "n"}, "spec": {"schedule": "@daily", "timeZone": "Etc/UTC"}});
    let c = cells("batch", "cronjobs", &never);
    assert_eq!(
        (&c[2], &c[3], &c[4], &c[5], &c[6]),
        (
            &json!("Etc/UTC"),
            &json!("<unset>"),
            &json!(0),
            &json!("<none>"),
            &json!("<unknown>")
        )
    );
}

#[test]
fn controller_revision_names_its_controller_with_group() {
    let cr = json!({
        "metadata": {"name": "agent-5d8f", "creationTimestamp": "2024-05-01T11:00:00Z",
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "agent", "uid": "u", "controller": true}]},
        "revision": 2
    });
    assert_eq!(
        cells("apps", "controllerrevisions", &cr),
        vec![
            json!("agent-5d8f"),
            json!("daemonset.apps/agent"),
            json!(2),
            json!("60m")
        ]
    );
    let orphan = json!({"metadata": {"name": "x"}, "revision": 1});
    assert_eq!(cells("apps", "controllerrevisions", &orphan)[1], "<none>");
}

#[test]
fn pdb_and_pod_template_rows() {
    let pdb = json!({"metadata": {"name": "web", "creationTimestamp": "2024-05-01T11:59:58Z"},
        "spec": {"minAvailable": "50%"}, "status": {"disruptionsAllowed": 1}});
    assert_eq!(
        cells("policy", "poddisruptionbudgets", &pdb),
        vec![
            json!("web"),
            json!("50%"),
            json!("N/A"),
            json!(1),
            json!("2s")
        ]
    );
    let pt = json!({"metadata": {"name": "tpl"}, "template": {"metadata": {"labels": {"b": "2", "a": "1"}},
        "spec": {"containers": [{"name": "x", "image": "y"}]}}});
    assert_eq!(
        cells("", "podtemplates", &pt),
        vec![json!("tpl"), json!("x"), json!("y"), json!("a=1,b=2")]
    );
}

#[test]
fn hpa_targets_follow_upstream_metric_format() {
    let hpa = json!({
        "metadata": {"name": "web", "creationTimestamp": "2024-05-01T11:00:00Z"},
        "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web", "apiVersion": "apps/v1"},
            "minReplicas": 1, "maxReplicas": 10,
            "metrics": [
                {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}},
                {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "500Mi"}}},
                {"type": "Pods", "pods": {"metric": {"name": "qps"}, "target": {"type": "AverageValue", "averageValue": "1k"}}}
            ]},
        "status": {"currentReplicas": 2, "currentMetrics": [
            {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 35, "averageValue": "70m"}}}
        ]}
    });
    assert_eq!(
        cells("autoscaling", "horizontalpodautoscalers", &hpa),
        vec![
            json!("web"),
            json!("Deployment/web"),
            json!("cpu: 35%/80%, memory: <unknown>/500Mi + 1 more..."),
            json!("1"),
            json!(10),
            json!(2),
            json!("60m")
        ]
    );
    let v1 = json!({"metadata": {"name": "w"}, "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "w"},
        "maxReplicas": 3, "targetCPUUtilizationPercentage": 50}, "status": {"currentReplicas": 1}});
    let c = cells("autoscaling", "horizontalpodautoscalers", &v1);
    assert_eq!(
        (&c[2], &c[3]),
        (&json!("cpu: <unknown>/50%"), &json!("<unset>"))
    );
}
