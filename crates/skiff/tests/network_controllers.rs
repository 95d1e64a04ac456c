//! Endpoints, EndpointSlice, node IPAM, node lifecycle, ServiceAccount and disruption
//! controllers end to end: `skiff server` (scheduler and controllers) plus `skiff hollow`
//! nodes, observed with the real kubectl 1.33.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::{Hollow, KUBECTL_133, Kubectl, Server, eventually};

const WAIT: Duration = Duration::from_secs(60);

fn json(k: &Kubectl, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    serde_json::from_str(&k.ok(&all)).expect("kubectl json")
}

fn try_json(k: &Kubectl, args: &[&str]) -> Option<Value> {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    let r = k.run(&all);
    (r.status == 0)
        .then(|| serde_json::from_str(&r.stdout).ok())
        .flatten()
}

const WEB: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 3
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: app
        image: registry.k8s.io/pause:3.10
        ports:
        - {name: http, containerPort: 8080}
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports:
  - {name: www, port: 80, targetPort: http}
"#;

/// Running pod IPs of `app`, sorted.
fn running_ips(k: &Kubectl, app: &str) -> Vec<String> {
    let pods = json(k, &["get", "pods", "-l", &format!("app={app}")]);
    let mut ips: Vec<String> = pods["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .filter(|p| p["status"]["phase"] == "Running")
        .filter_map(|p| p["status"]["podIP"].as_str().map(str::to_string))
        .collect();
    ips.sort();
    ips
}

fn ips_at(v: &Value, field: &str) -> Vec<String> {
    let mut ips: Vec<String> = v["subsets"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s[field].as_array().cloned().unwrap_or_default())
        .filter_map(|a| a["ip"].as_str().map(str::to_string))
        .collect();
    ips.sort();
    ips
}

/// (ready IPs, not-ready IPs) across the service's slices.
fn slice_ips(k: &Kubectl, svc: &str) -> (Vec<String>, Vec<String>) {
    let slices = json(
        k,
        &[
            "get",
            "endpointslices",
            "-l",
            &format!("kubernetes.io/service-name={svc}"),
        ],
    );
    let (mut ready, mut not_ready) = (Vec::new(), Vec::new());
    for s in slices["items"].as_array().into_iter().flatten() {
        for e in s["endpoints"].as_array().into_iter().flatten() {
            let ip = e["addresses"][0].as_str().unwrap_or("").to_string();
            if e["conditions"]["ready"] == true {
                ready.push(ip);
            } else {
                not_ready.push(ip);
            }
        }
    }
    ready.sort();
    not_ready.sort();
    (ready, not_ready)
}

#[test]
fn endpoints_and_slices_follow_pods_scale_and_readiness() {
    let server = Server::start();
    let k = server.kubectl(KUBECTL_133);
    let _nodes = Hollow::start(&server, &["--nodes", "2"]);
    k.ok_stdin(&["apply", "-f", "-"], WEB);

    let ips = eventually(WAIT, "3 running pods", || {
        let ips = running_ips(&k, "web");
        (ips.len() == 3).then_some(ips)
    });
    let ep = eventually(WAIT, "endpoints listing the 3 pods", || {
        let ep = try_json(&k, &["get", "endpoints", "web"])?;
        (ips_at(&ep, "addresses") == ips).then_some(ep)
    });
    let subset = &ep["subsets"][0];
    assert_eq!(subset["ports"][0]["name"], "www");
    assert_eq!(
        subset["ports"][0]["port"], 8080,
        "named targetPort resolved"
    );
    let address = &subset["addresses"][0];
    assert_eq!(address["targetRef"]["kind"], "Pod");
    assert!(address["nodeName"].as_str().is_some_and(|n| !n.is_empty()));
    assert!(
        ep["metadata"]["annotations"]["endpoints.kubernetes.io/last-change-trigger-time"]
            .is_string()
    );
    let table = k.ok(&["get", "endpoints", "web"]);
    assert!(table.contains(":8080"), "{table}");

    eventually(WAIT, "a slice with the 3 pods", || {
        (slice_ips(&k, "web").0 == ips).then_some(())
    });
    let s = json(
        &k,
        &[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=web",
        ],
    );
    let slice = &s["items"][0];
    assert!(
        slice["metadata"]["name"]
            .as_str()
            .is_some_and(|n| n.starts_with("web-") && n.len() == "web-".len() + 5),
        "{slice}"
    );
    assert_eq!(
        slice["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"],
        "endpointslice-controller.k8s.io"
    );
    assert_eq!(slice["addressType"], "IPv4");
    assert_eq!(slice["ports"][0]["name"], "www");
    assert_eq!(slice["ports"][0]["port"], 8080);
    assert_eq!(slice["metadata"]["ownerReferences"][0]["kind"], "Service");
    assert_eq!(slice["metadata"]["ownerReferences"][0]["name"], "web");
    assert!(slice["endpoints"][0]["nodeName"].is_string());
    assert_eq!(slice["endpoints"][0]["conditions"]["serving"], true);

    // Scale down: both lists shrink to the pod that remains.
    k.ok(&["scale", "deployment", "web", "--replicas=1"]);
    let one = eventually(WAIT, "1 running pod", || {
        let ips = running_ips(&k, "web");
        (ips.len() == 1).then_some(ips)
    });
    eventually(WAIT, "endpoints with 1 address", || {
        let ep = try_json(&k, &["get", "endpoints", "web"])?;
        (ips_at(&ep, "addresses") == one).then_some(())
    });
    eventually(WAIT, "slices with 1 endpoint", || {
        (slice_ips(&k, "web") == (one.clone(), vec![])).then_some(())
    });

    // A pod that stops being ready moves to notReadyAddresses (the test plays kubelet).
    let pod = json(&k, &["get", "pods", "-l", "app=web"])["items"][0]["metadata"]["name"]
        .as_str()
        .expect("pod name")
        .to_string();
    let ts = "2026-01-01T00:00:00Z";
    k.ok(&[
        "patch",
        "pod",
        &pod,
        "--subresource=status",
        "--type=strategic",
        "-p",
        &format!(
            r#"{{"status":{{"conditions":[{{"type":"Ready","status":"False","lastTransitionTime":"{ts}"}}]}}}}"#
        ),
    ]);
    eventually(WAIT, "the pod in notReadyAddresses", || {
        let ep = try_json(&k, &["get", "endpoints", "web"])?;
        (ips_at(&ep, "notReadyAddresses") == one && ips_at(&ep, "addresses").is_empty())
            .then_some(())
    });
    eventually(WAIT, "the slice endpoint not ready", || {
        (slice_ips(&k, "web") == (vec![], one.clone())).then_some(())
    });
}

#[test]
fn nodes_get_pod_cidrs_namespaces_get_default_accounts_and_budgets_guard_evictions() {
    let server = Server::start_with(&[
        "--cluster-cidr",
        "10.244.0.0/23",
        "--node-cidr-mask-size",
        "24",
    ]);
    let k = server.kubectl(KUBECTL_133);

    // Node IPAM: nodes registered without a pod CIDR get distinct /24s of the cluster CIDR.
    for n in ["ipam-a", "ipam-b"] {
        k.ok_stdin(
            &["apply", "-f", "-"],
            &format!("apiVersion: v1\nkind: Node\nmetadata:\n  name: {n}\n"),
        );
    }
    let cidrs = eventually(WAIT, "pod CIDRs on both nodes", || {
        let a = try_json(&k, &["get", "node", "ipam-a"])?;
        let b = try_json(&k, &["get", "node", "ipam-b"])?;
        let ca = a["spec"]["podCIDR"].as_str()?.to_string();
        let cb = b["spec"]["podCIDR"].as_str()?.to_string();
        assert_eq!(a["spec"]["podCIDRs"][0], ca.as_str());
        Some((ca, cb))
    });
    assert_ne!(cidrs.0, cidrs.1);
    for c in [&cidrs.0, &cidrs.1] {
        assert!(c == "10.244.0.0/24" || c == "10.244.1.0/24", "{c}");
    }
    // A /23 holds two: the third node gets none, and the retries fold into one counted Event.
    k.ok_stdin(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: ipam-c\n",
    );
    eventually(
        WAIT,
        "one CIDRNotAvailable event counted several times",
        || {
            let events = try_json(
                &k,
                &[
                    "get",
                    "events",
                    "--field-selector",
                    "reason=CIDRNotAvailable",
                ],
            )?;
            let items = events["items"].as_array()?;
            (items.len() == 1
                && items[0]["message"] == "Node ipam-c status is now: CIDRNotAvailable"
                && items[0]["count"].as_i64().is_some_and(|n| n >= 3))
            .then_some(())
        },
    );
    assert!(json(&k, &["get", "node", "ipam-c"])["spec"]["podCIDR"].is_null());

    // ServiceAccount: a new namespace gets `default`, and gets it back after a delete.
    k.ok(&["create", "namespace", "team"]);
    eventually(WAIT, "default ServiceAccount in team", || {
        (k.run(&["get", "serviceaccount", "default", "-n", "team"])
            .status
            == 0)
            .then_some(())
    });
    let uid =
        json(&k, &["get", "serviceaccount", "default", "-n", "team"])["metadata"]["uid"].clone();
    k.ok(&["delete", "serviceaccount", "default", "-n", "team"]);
    eventually(WAIT, "default ServiceAccount recreated", || {
        let sa = try_json(&k, &["get", "serviceaccount", "default", "-n", "team"])?;
        (sa["metadata"]["uid"] != uid).then_some(())
    });

    // Disruption budgets: status from the pods, and the eviction subresource obeys it.
    let _nodes = Hollow::start(&server, &["--nodes", "2"]);
    k.ok_stdin(
        &["apply", "-f", "-"],
        &WEB.replace("replicas: 3", "replicas: 2"),
    );
    eventually(WAIT, "2 running pods", || {
        (running_ips(&k, "web").len() == 2).then_some(())
    });
    k.ok_stdin(
        &["apply", "-f", "-"],
        "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata:\n  name: web\nspec:\n  minAvailable: 2\n  selector:\n    matchLabels: {app: web}\n",
    );
    eventually(WAIT, "budget status with 0 allowed", || {
        let pdb = try_json(&k, &["get", "pdb", "web"])?;
        let s = &pdb["status"];
        (s["currentHealthy"] == 2
            && s["desiredHealthy"] == 2
            && s["expectedPods"] == 2
            && s["disruptionsAllowed"] == 0
            && s["observedGeneration"] == pdb["metadata"]["generation"])
            .then_some(())
    });
    let pdb = json(&k, &["get", "pdb", "web"]);
    let cond = &pdb["status"]["conditions"][0];
    assert_eq!(
        (&cond["type"], &cond["status"], &cond["reason"]),
        (
            &Value::from("DisruptionAllowed"),
            &Value::from("False"),
            &Value::from("InsufficientPods")
        )
    );
    let pod = json(&k, &["get", "pods", "-l", "app=web"])["items"][0]["metadata"]["name"]
        .as_str()
        .expect("pod")
        .to_string();
    let eviction = format!(
        r#"{{"apiVersion":"policy/v1","kind":"Eviction","metadata":{{"name":"{pod}","namespace":"default"}}}}"#
    );
    let path = format!("/api/v1/namespaces/default/pods/{pod}/eviction");
    let body_file = server.dir.path().join("eviction.json");
    std::fs::write(&body_file, &eviction).expect("write eviction");
    let body_arg = body_file.to_str().expect("utf8 path");
    let refused = k.fails(&["create", "--raw", &path, "-f", body_arg]);
    assert!(
        refused.contains("Cannot evict pod as it would violate the pod's disruption budget."),
        "{refused}"
    );
    assert!(
        refused.contains("429")
            || refused.contains("TooManyRequests")
            || refused.contains("Too Many Requests"),
        "{refused}"
    );

    // A budget of 1: `kubectl get pdb` shows one allowed disruption, and the eviction passes.
    k.ok(&[
        "patch",
        "pdb",
        "web",
        "--type=merge",
        "-p",
        r#"{"spec":{"minAvailable":1}}"#,
    ]);
    eventually(WAIT, "ALLOWED DISRUPTIONS 1", || {
        let out = k.ok(&["get", "pdb", "web"]);
        let header = out.lines().next()?.to_string();
        let row = out.lines().nth(1)?.split_whitespace().collect::<Vec<_>>();
        (header.contains("ALLOWED DISRUPTIONS") && row.get(3) == Some(&"1")).then_some(())
    });
    k.ok(&["create", "--raw", &path, "-f", body_arg]);
    eventually(WAIT, "the evicted pod going", || {
        let p = try_json(&k, &["get", "pod", &pod]);
        p.is_none_or(|p| !p["metadata"]["deletionTimestamp"].is_null())
            .then_some(())
    });
}

#[test]
fn a_silent_node_goes_unknown_is_tainted_and_its_pods_move() {
    let server = Server::start_with(&["--node-monitor-grace-period", "15s"]);
    let k = server.kubectl(KUBECTL_133);
    let doomed = Hollow::start(&server, &["--nodes", "1", "--name-prefix", "doomed-"]);
    k.ok_stdin(
        &["apply", "-f", "-"],
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: mover
spec:
  replicas: 1
  selector:
    matchLabels: {app: mover}
  template:
    metadata:
      labels: {app: mover}
    spec:
      tolerations:
      - {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 2}
      containers:
      - name: app
        image: registry.k8s.io/pause:3.10
"#,
    );
    let first = eventually(WAIT, "the pod running on the doomed node", || {
        let pods = json(&k, &["get", "pods", "-l", "app=mover"]);
        let p = pods["items"].as_array()?.first()?.clone();
        (p["status"]["phase"] == "Running" && p["spec"]["nodeName"] == "doomed-0").then_some(p)
    });
    // Admission added the 300 s not-ready toleration but kept the pod's own unreachable one.
    let tolerations = first["spec"]["tolerations"]
        .as_array()
        .expect("tolerations");
    assert!(
        tolerations
            .iter()
            .any(|t| t["key"] == "node.kubernetes.io/not-ready" && t["tolerationSeconds"] == 300)
    );
    assert!(
        tolerations
            .iter()
            .any(|t| t["key"] == "node.kubernetes.io/unreachable" && t["tolerationSeconds"] == 2)
    );
    let first_name = first["metadata"]["name"]
        .as_str()
        .expect("name")
        .to_string();

    let _spare = Hollow::start(&server, &["--nodes", "1", "--name-prefix", "spare-"]);
    drop(doomed);

    eventually(
        Duration::from_secs(90),
        "the doomed node Unknown and tainted",
        || {
            let n = try_json(&k, &["get", "node", "doomed-0"])?;
            let ready = n["status"]["conditions"]
                .as_array()?
                .iter()
                .find(|c| c["type"] == "Ready")?
                .clone();
            let taints = n["spec"]["taints"].as_array().cloned().unwrap_or_default();
            let tainted = |effect: &str| {
                taints
                    .iter()
                    .any(|t| t["key"] == "node.kubernetes.io/unreachable" && t["effect"] == effect)
            };
            (ready["status"] == "Unknown"
                && ready["reason"] == "NodeStatusUnknown"
                && ready["message"] == "Kubelet stopped posting node status."
                && tainted("NoExecute")
                && tainted("NoSchedule"))
            .then_some(())
        },
    );
    eventually(WAIT, "a replacement running on the spare node", || {
        let pods = json(&k, &["get", "pods", "-l", "app=mover"]);
        pods["items"]
            .as_array()?
            .iter()
            .any(|p| {
                p["metadata"]["name"] != first_name.as_str()
                    && p["spec"]["nodeName"] == "spare-0"
                    && p["status"]["phase"] == "Running"
            })
            .then_some(())
    });
    let events = k.ok(&[
        "get",
        "events",
        "--field-selector",
        "reason=TaintManagerEviction",
    ]);
    assert!(
        events.contains(&format!("Marking for deletion Pod default/{first_name}")),
        "{events}"
    );

    // No kubelet will ever finish the evicted pod; deleting its node lets the pod GC remove it.
    k.ok(&["delete", "node", "doomed-0"]);
    eventually(WAIT, "the evicted pod gone with its node", || {
        (k.run(&["get", "pod", &first_name]).status != 0).then_some(())
    });
}
