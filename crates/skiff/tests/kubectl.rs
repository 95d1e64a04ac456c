//! Scenarios that drive a real `skiff server` with the real, pinned kubectl 1.32 and 1.33.

mod support;

use std::time::Duration;

use support::{KUBECTL_132, KUBECTL_133, Kubectl, Server, eventually};

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: app
        image: busybox:1.36
        command: ["sleep", "3600"]
        env:
        - {name: A, value: "1"}
      - name: sidecar
        image: busybox:1.36
        args: ["sh", "-c", "sleep 3600"]
"#;

fn both(f: impl Fn(&Server, &Kubectl)) {
    for bin in [KUBECTL_132, KUBECTL_133] {
        let server = Server::start();
        let k = server.kubectl(bin);
        f(&server, &k);
    }
}

fn jsonpath(k: &Kubectl, args: &[&str], path: &str) -> String {
    let mut a = args.to_vec();
    let expr = format!("jsonpath={path}");
    a.extend(["-o", &expr]);
    k.ok(&a)
}

#[test]
fn apply_edit_apply_keeps_containers_and_fields() {
    both(|_, k| {
        assert!(
            k.ok_stdin(&["apply", "-f", "-"], DEPLOYMENT)
                .contains("deployment.apps/web created")
        );
        // kubectl edit: change the sidecar image through an editor that rewrites the file.
        let r = k.run_env(
            &["edit", "deployment/web"],
            &[("KUBE_EDITOR", "sed -i s#busybox:1.36#busybox:1.37#")],
        );
        assert_eq!(r.status, 0, "edit failed: {}", r.stderr);
        assert_eq!(
            jsonpath(
                k,
                &["get", "deploy", "web"],
                "{.spec.template.spec.containers[*].image}"
            ),
            "busybox:1.37 busybox:1.37"
        );
        // Apply again with a changed replica count: SMP must keep the containers, their
        // commands and env, merged by name.
        let changed = DEPLOYMENT.replace("replicas: 2", "replicas: 3");
        assert!(
            k.ok_stdin(&["apply", "-f", "-"], &changed)
                .contains("configured")
        );
        assert_eq!(
            jsonpath(k, &["get", "deploy", "web"], "{.spec.replicas}"),
            "3"
        );
        assert_eq!(
            jsonpath(
                k,
                &["get", "deploy", "web"],
                "{.spec.template.spec.containers[*].name}"
            ),
            "app sidecar"
        );
        assert_eq!(
            jsonpath(
                k,
                &["get", "deploy", "web"],
                "{.spec.template.spec.containers[0].command}"
            ),
            r#"["sleep","3600"]"#
        );
        assert_eq!(
            jsonpath(
                k,
                &["get", "deploy", "web"],
                "{.spec.template.spec.containers[0].env[0].value}"
            ),
            "1"
        );
        // generation counts spec changes: create, edit, apply.
        assert_eq!(
            jsonpath(k, &["get", "deploy", "web"], "{.metadata.generation}"),
            "3"
        );
        // kubectl set image sends SMP with $setElementOrder.
        k.ok(&["set", "image", "deployment/web", "app=busybox:1.38"]);
        assert_eq!(
            jsonpath(
                k,
                &["get", "deploy", "web"],
                "{.spec.template.spec.containers[*].image}"
            ),
            "busybox:1.38 busybox:1.36"
        );
    });
}

#[test]
fn create_by_every_kubectl_route() {
    both(|_, k| {
        k.ok_stdin(&["create", "-f", "-"], DEPLOYMENT);
        let err = k.run_stdin(&["create", "-f", "-"], DEPLOYMENT);
        assert_ne!(err.status, 0);
        assert!(err.stderr.contains("AlreadyExists"), "{}", err.stderr);
        // Typed-client commands send protobuf bodies.
        k.ok(&["create", "namespace", "team-a"]);
        k.ok(&[
            "create",
            "configmap",
            "cm1",
            "--from-literal=a=b",
            "-n",
            "team-a",
        ]);
        k.ok(&[
            "create",
            "secret",
            "generic",
            "s1",
            "--from-literal=password=hunter2",
            "-n",
            "team-a",
        ]);
        k.ok(&[
            "create",
            "deployment",
            "web2",
            "--image=busybox",
            "--replicas=2",
            "--",
            "sleep",
            "3600",
        ]);
        k.ok(&["create", "service", "clusterip", "svc1", "--tcp=80:8080"]);
        k.ok(&["create", "job", "job1", "--image=busybox", "--", "true"]);
        k.ok(&[
            "run",
            "p1",
            "--image=busybox",
            "--restart=Never",
            "--",
            "sleep",
            "100",
        ]);
        k.ok(&[
            "expose",
            "deployment",
            "web",
            "--port=80",
            "--target-port=8080",
            "--type=NodePort",
        ]);
        assert_eq!(
            jsonpath(k, &["get", "cm", "cm1", "-n", "team-a"], "{.data.a}"),
            "b"
        );
        assert_eq!(
            jsonpath(
                k,
                &["get", "secret", "s1", "-n", "team-a"],
                "{.data.password}"
            ),
            "aHVudGVyMg=="
        );
        assert_eq!(
            jsonpath(k, &["get", "deploy", "web2"], "{.spec.replicas}"),
            "2"
        );
        assert_eq!(
            jsonpath(k, &["get", "pod", "p1"], "{.spec.containers[0].args}"),
            r#"["sleep","100"]"#
        );
        let node_port: u32 = jsonpath(k, &["get", "svc", "web"], "{.spec.ports[0].nodePort}")
            .parse()
            .expect("nodePort allocated");
        assert!((30000..=32767).contains(&node_port));
        let ip = jsonpath(k, &["get", "svc", "svc1"], "{.spec.clusterIP}");
        assert!(ip.starts_with("10.") && ip != "10.96.0.1", "{ip}");
        assert_eq!(
            jsonpath(
                k,
                &["get", "ns", "team-a"],
                "{.metadata.labels.kubernetes\\.io/metadata\\.name}"
            ),
            "team-a"
        );
        assert!(k.ok(&["auth", "can-i", "create", "pods"]).contains("yes"));
    });
}

#[test]
fn get_prints_upstream_columns() {
    both(|_, k| {
        k.ok_stdin(&["apply", "-f", "-"], DEPLOYMENT);
        k.ok(&["run", "p1", "--image=busybox", "--", "sleep", "100"]);
        let pods = k.ok(&["get", "pods"]);
        let header: Vec<&str> = pods
            .lines()
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        assert_eq!(header, ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]);
        assert!(
            pods.contains("p1") && pods.contains("0/1") && pods.contains("Pending"),
            "{pods}"
        );
        let wide = k.ok(&["get", "pods", "-o", "wide"]);
        assert!(
            wide.lines().next().unwrap_or("").contains("NOMINATED NODE"),
            "{wide}"
        );
        let deploy = k.ok(&["get", "deploy"]);
        let header: Vec<&str> = deploy
            .lines()
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        assert_eq!(header, ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]);
        assert!(deploy.contains("0/2"), "{deploy}");
        let svc = k.ok(&["get", "svc"]);
        assert!(
            svc.contains("CLUSTER-IP") && svc.contains("443/TCP"),
            "{svc}"
        );
        let all = k.ok(&["get", "all"]);
        assert!(
            all.contains("pod/p1")
                && all.contains("deployment.apps/web")
                && all.contains("service/kubernetes"),
            "{all}"
        );
        let ns = k.ok(&["get", "ns"]);
        assert!(ns.contains("kube-system") && ns.contains("Active"), "{ns}");
        let described = k.ok(&["describe", "deployment", "web"]);
        assert!(
            described.contains("Replicas:") && described.contains("busybox:1.36"),
            "{described}"
        );
        let resources = k.ok(&["api-resources"]);
        assert!(
            resources.contains("deployments") && resources.contains("deploy"),
            "{resources}"
        );
        assert!(
            k.ok(&["explain", "deployment.spec.strategy"])
                .contains("DeploymentStrategy")
        );
    });
}

#[test]
fn label_annotate_patch_scale_and_conflicts() {
    both(|server, k| {
        k.ok_stdin(&["apply", "-f", "-"], DEPLOYMENT);
        k.ok(&["label", "deploy", "web", "tier=frontend"]);
        k.ok(&["annotate", "deploy", "web", "note=hello"]);
        assert_eq!(
            jsonpath(
                k,
                &["get", "deploy", "-l", "tier in (frontend,backend)"],
                "{.items[*].metadata.name}"
            ),
            "web"
        );
        assert_eq!(
            jsonpath(k, &["get", "deploy", "web"], "{.metadata.annotations.note}"),
            "hello"
        );
        // The three patch types.
        k.ok(&["patch", "deploy", "web", "-p", r#"{"spec":{"template":{"spec":{"containers":[{"name":"app","image":"busybox:1.37"}]}}}}"#]);
        assert_eq!(
            jsonpath(
                k,
                &["get", "deploy", "web"],
                "{.spec.template.spec.containers[*].image}"
            ),
            "busybox:1.37 busybox:1.36"
        );
        k.ok(&[
            "patch",
            "deploy",
            "web",
            "--type=merge",
            "-p",
            r#"{"metadata":{"labels":{"tier":null}}}"#,
        ]);
        assert_eq!(
            jsonpath(k, &["get", "deploy", "web"], "{.metadata.labels.tier}"),
            ""
        );
        k.ok(&[
            "patch",
            "deploy",
            "web",
            "--type=json",
            "-p",
            r#"[{"op":"replace","path":"/spec/replicas","value":4}]"#,
        ]);
        assert_eq!(
            jsonpath(k, &["get", "deploy", "web"], "{.spec.replicas}"),
            "4"
        );
        // scale goes through the scale subresource.
        k.ok(&["scale", "deploy", "web", "--replicas=6"]);
        assert_eq!(
            jsonpath(k, &["get", "deploy", "web"], "{.spec.replicas}"),
            "6"
        );
        k.ok(&[
            "scale",
            "deploy",
            "web",
            "--current-replicas=6",
            "--replicas=1",
        ]);
        assert_eq!(
            jsonpath(k, &["get", "deploy", "web"], "{.spec.replicas}"),
            "1"
        );
        // replace with a stale resourceVersion is a conflict.
        let stale = k.ok(&["get", "deploy", "web", "-o", "json"]);
        k.ok(&["label", "deploy", "web", "bump=1"]);
        let path = server.dir.path().join("stale.json");
        std::fs::write(&path, stale).expect("write");
        let err = k.fails(&["replace", "-f", path.to_str().expect("utf8")]);
        assert!(
            err.contains("Conflict") && err.contains("the object has been modified"),
            "{err}"
        );
        // diff shows the pending change through a dry-run patch, and changes nothing.
        let changed = DEPLOYMENT.replace("replicas: 2", "replicas: 9");
        let diff = k.run_stdin(&["diff", "-f", "-"], &changed);
        assert_eq!(
            diff.status, 1,
            "diff exits 1 when there are differences: {}",
            diff.stderr
        );
        assert!(diff.stdout.contains("replicas: 9"), "{}", diff.stdout);
        assert_eq!(
            jsonpath(k, &["get", "deploy", "web"], "{.spec.replicas}"),
            "1"
        );
    });
}

#[test]
fn delete_wait_and_watch() {
    both(|server, k| {
        k.ok(&["run", "p1", "--image=busybox", "--", "sleep", "100"]);
        let out = server
            .dir
            .path()
            .join(format!("watch-{}.txt", k.binary.len()));
        let mut watcher = k.spawn(&["get", "pods", "-w", "--output-watch-events"], &out);
        eventually(Duration::from_secs(10), "the watch to list p1", || {
            std::fs::read_to_string(&out)
                .ok()
                .filter(|s| s.contains("p1"))
        });
        k.ok(&["label", "pod", "p1", "x=y"]);
        k.ok(&["delete", "pod", "p1", "--wait=true"]);
        let seen = eventually(Duration::from_secs(10), "DELETED in the watch", || {
            std::fs::read_to_string(&out)
                .ok()
                .filter(|s| s.contains("DELETED"))
        });
        let _ = watcher.kill();
        let _ = watcher.wait();
        let order: Vec<&str> = seen
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        assert_eq!(order.first(), Some(&"EVENT"), "{seen}");
        assert!(
            order.contains(&"ADDED") && order.contains(&"MODIFIED"),
            "{seen}"
        );
        assert_eq!(order.last(), Some(&"DELETED"), "{seen}");
        let err = k.fails(&["get", "pod", "p1"]);
        assert!(
            err.contains("NotFound") && err.contains("pods \"p1\" not found"),
            "{err}"
        );

        // wait --for=delete returns once the object goes.
        k.ok(&["create", "configmap", "cm1", "--from-literal=a=b"]);
        let waiter = std::thread::spawn({
            let k = Kubectl {
                binary: k.binary.clone(),
                kubeconfig: k.kubeconfig.clone(),
                cache: k.cache.clone(),
            };
            move || k.run(&["wait", "--for=delete", "configmap/cm1", "--timeout=20s"])
        });
        std::thread::sleep(Duration::from_millis(500));
        k.ok(&["delete", "configmap", "cm1"]);
        let r = waiter.join().expect("waiter");
        assert_eq!(r.status, 0, "wait --for=delete: {}", r.stderr);
    });
}

#[test]
fn namespace_deletion_removes_its_contents() {
    let server = Server::start();
    let k = server.kubectl(KUBECTL_133);
    k.ok(&["create", "namespace", "doomed"]);
    k.ok(&[
        "create",
        "configmap",
        "cm1",
        "--from-literal=a=b",
        "-n",
        "doomed",
    ]);
    k.ok(&[
        "run",
        "p1",
        "--image=busybox",
        "-n",
        "doomed",
        "--",
        "sleep",
        "1",
    ]);
    k.ok(&[
        "delete",
        "namespace",
        "doomed",
        "--wait=true",
        "--timeout=30s",
    ]);
    let err = k.fails(&["get", "namespace", "doomed"]);
    assert!(err.contains("NotFound"), "{err}");
    let err = k.fails(&[
        "create",
        "configmap",
        "late",
        "--from-literal=a=b",
        "-n",
        "doomed",
    ]);
    assert!(err.contains("namespaces \"doomed\" not found"), "{err}");
    let err = k.fails(&["delete", "namespace", "default"]);
    assert!(err.contains("Forbidden"), "{err}");
}
