//! Controller scenarios: a real `skiff server` (controllers inside), driven by the real kubectl.
//! No node agent runs here, so tests mark pods Running/Ready by writing pods/status themselves.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::{KUBECTL_133, Kubectl, Server, eventually};

const WAIT: Duration = Duration::from_secs(30);

fn json(k: &Kubectl, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.extend(["-o", "json"]);
    serde_json::from_str(&k.ok(&a)).expect("kubectl printed JSON")
}

fn items(k: &Kubectl, args: &[&str]) -> Vec<Value> {
    json(k, args)["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Mark every pod that is not yet Ready as Running and Ready, as a kubelet would.
fn make_pods_ready(k: &Kubectl) {
    for pod in items(k, &["get", "pods"]) {
        let ready = pod["status"]["conditions"].as_array().is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        });
        if ready || pod["metadata"]["deletionTimestamp"].is_string() {
            continue;
        }
        let name = pod["metadata"]["name"].as_str().unwrap_or_default();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let ts = format_rfc3339(now);
        let patch = format!(
            r#"{{"status":{{"phase":"Running","conditions":[{{"type":"Ready","status":"True","lastTransitionTime":"{ts}"}}]}}}}"#
        );
        // A pod may be deleted meanwhile by a scale-down; that is fine.
        let _ = k.run(&[
            "patch",
            "pod",
            name,
            "--subresource=status",
            "--type=merge",
            "-p",
            &patch,
        ]);
    }
}

fn format_rfc3339(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Civil-from-days (Howard Hinnant), enough for a timestamp in a test.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Wait for `kubectl rollout status` to report success, readying pods as they appear.
fn rollout_completes(k: &Kubectl, deployment: &str) -> String {
    eventually(WAIT, "rollout status to succeed", || {
        make_pods_ready(k);
        let r = k.run(&["rollout", "status", deployment, "--timeout=2s"]);
        (r.status == 0).then_some(r.stdout)
    })
}

fn pods_of(k: &Kubectl, selector: &str) -> Vec<Value> {
    items(k, &["get", "pods", "-l", selector])
        .into_iter()
        .filter(|p| !p["metadata"]["deletionTimestamp"].is_string())
        .collect()
}

fn replica_sets(k: &Kubectl, selector: &str) -> Vec<Value> {
    items(k, &["get", "rs", "-l", selector])
}

fn controller_of(obj: &Value) -> Value {
    obj["metadata"]["ownerReferences"]
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["controller"] == true).cloned())
        .unwrap_or(Value::Null)
}

#[test]
fn deployment_creates_an_owned_replica_set_and_pods_and_scales() {
    let server = Server::start();
    let k = server.kubectl(KUBECTL_133);
    k.ok(&[
        "create",
        "deployment",
        "web",
        "--image=nginx:1.27",
        "--replicas=3",
    ]);
    let d = json(&k, &["get", "deployment", "web"]);
    let rs = eventually(WAIT, "one replica set", || {
        let sets = replica_sets(&k, "app=web");
        (sets.len() == 1).then(|| sets[0].clone())
    });
    let owner = controller_of(&rs);
    assert_eq!(owner["kind"], "Deployment");
    assert_eq!(owner["uid"], d["metadata"]["uid"]);
    assert_eq!(owner["blockOwnerDeletion"], true);
    let hash = rs["metadata"]["labels"]["pod-template-hash"]
        .as_str()
        .expect("pod-template-hash label")
        .to_string();
    let rs_name = rs["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(rs_name, format!("web-{hash}"));
    assert_eq!(
        rs["spec"]["selector"]["matchLabels"]["pod-template-hash"],
        hash.as_str()
    );
    assert_eq!(
        rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "1"
    );
    assert_eq!(
        rs["metadata"]["annotations"]["deployment.kubernetes.io/desired-replicas"],
        "3"
    );
    assert_eq!(
        rs["metadata"]["annotations"]["deployment.kubernetes.io/max-replicas"],
        "4"
    );
    let pods = eventually(WAIT, "3 pods", || {
        let p = pods_of(&k, "app=web");
        (p.len() == 3).then_some(p)
    });
    for p in &pods {
        let o = controller_of(p);
        assert_eq!(o["kind"], "ReplicaSet");
        assert_eq!(o["uid"], rs["metadata"]["uid"]);
        let name = p["metadata"]["name"].as_str().unwrap_or_default();
        let suffix = name
            .strip_prefix(&format!("{rs_name}-"))
            .expect("named <rs>-<suffix>");
        assert_eq!(suffix.len(), 5, "{name}");
    }
    let events = k.ok(&["get", "events"]);
    assert!(
        events.contains(&format!("Scaled up replica set {rs_name} from 0 to 3")),
        "{events}"
    );
    assert!(events.contains("Created pod: "), "{events}");

    k.ok(&["scale", "deployment/web", "--replicas=5"]);
    eventually(WAIT, "5 pods", || {
        (pods_of(&k, "app=web").len() == 5).then_some(())
    });
    k.ok(&["scale", "deployment/web", "--replicas=1"]);
    eventually(WAIT, "1 pod", || {
        (pods_of(&k, "app=web").len() == 1).then_some(())
    });
    let rs = json(&k, &["get", "rs", &rs_name]);
    assert_eq!(rs["spec"]["replicas"], 1);

    // A deleted pod is replaced.
    k.ok(&["scale", "deployment/web", "--replicas=2"]);
    let pods = eventually(WAIT, "2 pods", || {
        let p = pods_of(&k, "app=web");
        (p.len() == 2).then_some(p)
    });
    let victim = pods[0]["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    k.ok(&["delete", "pod", &victim]);
    eventually(WAIT, "a replacement pod", || {
        let p = pods_of(&k, "app=web");
        (p.len() == 2 && p.iter().all(|p| p["metadata"]["name"] != victim.as_str())).then_some(())
    });
}

#[test]
fn rollout_status_history_set_image_undo_and_restart() {
    let server = Server::start();
    let k = server.kubectl(KUBECTL_133);
    k.ok(&[
        "create",
        "deployment",
        "web",
        "--image=nginx:1.26",
        "--replicas=3",
    ]);
    let out = rollout_completes(&k, "deployment/web");
    assert!(out.contains("successfully rolled out"), "{out}");
    let d = json(&k, &["get", "deployment", "web"]);
    assert_eq!(d["status"]["readyReplicas"], 3);
    assert_eq!(d["status"]["availableReplicas"], 3);
    assert_eq!(d["status"]["updatedReplicas"], 3);
    assert_eq!(
        d["status"]["observedGeneration"],
        d["metadata"]["generation"]
    );
    let progressing = d["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Progressing").cloned())
        .expect("Progressing condition");
    assert_eq!(progressing["reason"], "NewReplicaSetAvailable");
    let available = d["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Available").cloned())
        .expect("Available condition");
    assert_eq!(available["reason"], "MinimumReplicasAvailable");
    let first = replica_sets(&k, "app=web")[0]["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();

    k.ok(&["set", "image", "deployment/web", "nginx=nginx:1.27"]);
    rollout_completes(&k, "deployment/web");
    let sets = replica_sets(&k, "app=web");
    assert_eq!(sets.len(), 2, "set image makes a second replica set");
    let second = sets
        .iter()
        .find(|s| s["metadata"]["name"] != first.as_str())
        .expect("the new set")
        .clone();
    let second_name = second["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(second["spec"]["replicas"], 3);
    assert_eq!(
        second["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "2"
    );
    assert_eq!(json(&k, &["get", "rs", &first])["spec"]["replicas"], 0);
    let pods = pods_of(&k, "app=web");
    assert_eq!(pods.len(), 3);
    assert!(
        pods.iter()
            .all(|p| p["spec"]["containers"][0]["image"] == "nginx:1.27")
    );
    let events = k.ok(&["get", "events"]);
    assert!(
        events.contains(&format!("Scaled down replica set {first} from 3 to")),
        "{events}"
    );

    let history = k.ok(&["rollout", "history", "deployment/web"]);
    let revisions: Vec<&str> = history
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.parse::<u32>().is_ok())
        .collect();
    assert_eq!(revisions, ["1", "2"], "{history}");

    k.ok(&["rollout", "undo", "deployment/web"]);
    rollout_completes(&k, "deployment/web");
    let sets = replica_sets(&k, "app=web");
    assert_eq!(sets.len(), 2, "undo reuses the first replica set");
    let reused = json(&k, &["get", "rs", &first]);
    assert_eq!(reused["spec"]["replicas"], 3);
    assert_eq!(
        reused["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "3"
    );
    assert_eq!(
        reused["metadata"]["annotations"]["deployment.kubernetes.io/revision-history"],
        "1"
    );
    assert_eq!(
        json(&k, &["get", "rs", &second_name])["spec"]["replicas"],
        0
    );
    let d = json(&k, &["get", "deployment", "web"]);
    assert_eq!(
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "3"
    );
    assert!(
        pods_of(&k, "app=web")
            .iter()
            .all(|p| p["spec"]["containers"][0]["image"] == "nginx:1.26")
    );

    k.ok(&["rollout", "restart", "deployment/web"]);
    eventually(WAIT, "restart to create a third replica set", || {
        (replica_sets(&k, "app=web").len() == 3).then_some(())
    });
    rollout_completes(&k, "deployment/web");
}

#[test]
fn pause_and_resume_set_progressing_reasons() {
    let server = Server::start();
    let k = server.kubectl(KUBECTL_133);
    k.ok(&[
        "create",
        "deployment",
        "web",
        "--image=nginx:1.26",
        "--replicas=1",
    ]);
    rollout_completes(&k, "deployment/web");
    let reason = |k: &Kubectl| {
        json(k, &["get", "deployment", "web"])["status"]["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == "Progressing").cloned())
            .map(|c| c["reason"].as_str().unwrap_or_default().to_string())
            .unwrap_or_default()
    };
    k.ok(&["rollout", "pause", "deployment/web"]);
    eventually(WAIT, "DeploymentPaused", || {
        (reason(&k) == "DeploymentPaused").then_some(())
    });
    k.ok(&["set", "image", "deployment/web", "nginx=nginx:1.27"]);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        replica_sets(&k, "app=web").len(),
        1,
        "a paused deployment does not roll"
    );
    k.ok(&["rollout", "resume", "deployment/web"]);
    eventually(WAIT, "a new replica set after resume", || {
        (replica_sets(&k, "app=web").len() == 2).then_some(())
    });
    rollout_completes(&k, "deployment/web");
}

#[test]
fn cascading_deletes_background_orphan_and_foreground() {
    let server = Server::start();
    let k = server.kubectl(KUBECTL_133);
    for name in ["bg", "orphan", "fg"] {
        k.ok(&[
            "create",
            "deployment",
            name,
            "--image=nginx",
            "--replicas=2",
        ]);
    }
    for name in ["bg", "orphan", "fg"] {
        let sel = format!("app={name}");
        eventually(WAIT, "2 pods each", || {
            (pods_of(&k, &sel).len() == 2).then_some(())
        });
    }

    k.ok(&["delete", "deployment", "bg"]);
    eventually(WAIT, "background delete to remove sets and pods", || {
        (replica_sets(&k, "app=bg").is_empty()
            && items(&k, &["get", "pods", "-l", "app=bg"]).is_empty())
        .then_some(())
    });

    k.ok(&["delete", "deployment", "orphan", "--cascade=orphan"]);
    eventually(WAIT, "the orphaned deployment to go", || {
        k.run(&["get", "deployment", "orphan"])
            .status
            .ne(&0)
            .then_some(())
    });
    let sets = replica_sets(&k, "app=orphan");
    assert_eq!(sets.len(), 1, "the replica set stays");
    assert!(
        sets[0]["metadata"]["ownerReferences"]
            .as_array()
            .is_none_or(|r| r.is_empty()),
        "and has no owner: {}",
        sets[0]["metadata"]
    );
    assert_eq!(pods_of(&k, "app=orphan").len(), 2, "its pods stay");

    k.ok(&[
        "delete",
        "deployment",
        "fg",
        "--cascade=foreground",
        "--wait=false",
    ]);
    // While dependents exist, the owner waits with its finalizer.
    let d = k.run(&["get", "deployment", "fg", "-o", "json"]);
    if d.status == 0 {
        let d: Value = serde_json::from_str(&d.stdout).expect("json");
        assert!(d["metadata"]["deletionTimestamp"].is_string());
    }
    eventually(
        WAIT,
        "foreground delete to remove everything, owner last",
        || {
            (k.run(&["get", "deployment", "fg"]).status != 0
                && replica_sets(&k, "app=fg").is_empty()
                && items(&k, &["get", "pods", "-l", "app=fg"]).is_empty())
            .then_some(())
        },
    );

    // A dependent whose owner never existed is collected too (dangling reference).
    let dangling = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"dangling",
        "ownerReferences":[{"apiVersion":"v1","kind":"ConfigMap","name":"ghost","uid":"00000000-0000-0000-0000-000000000001"}]}}"#;
    k.ok_stdin(&["create", "-f", "-"], dangling);
    eventually(WAIT, "the dangling dependent to be deleted", || {
        (k.run(&["get", "configmap", "dangling"]).status != 0).then_some(())
    });
}
