use serde_json::{Value, json};

use super::pod::pull_policy_for;
use super::*;

fn defaulted(group: &str, kind: &str, mut obj: Value) -> Value {
    apply_defaults(group, kind, &mut obj);
    let once = obj.clone();
    apply_defaults(group, kind, &mut obj);
    assert_eq!(obj, once, "defaulting {kind} is not idempotent");
    obj
}

/// What `kubectl run web --image=nginx` sends.
fn kubectl_run_pod() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web", "labels": {"run": "web"}},
        "spec": {"containers": [{"name": "web", "image": "nginx", "resources": {}}],
                 "restartPolicy": "Always", "dnsPolicy": "ClusterFirst"},
        "status": {}
    })
}

#[test]
fn pod_spec_gets_upstream_defaults() {
    let pod = defaulted("", "Pod", kubectl_run_pod());
    let spec = &pod["spec"];
    assert_eq!(spec["restartPolicy"], "Always");
    assert_eq!(spec["dnsPolicy"], "ClusterFirst");
    assert_eq!(spec["schedulerName"], "default-scheduler");
    assert_eq!(spec["terminationGracePeriodSeconds"], 30);
    assert_eq!(spec["securityContext"], json!({}));
    assert_eq!(spec["enableServiceLinks"], true);
    assert_eq!(spec["serviceAccountName"], "default");
    assert_eq!(spec["serviceAccount"], "default");
    assert_eq!(spec["priority"], 0);
    assert_eq!(spec["preemptionPolicy"], "PreemptLowerPriority");
}

#[test]
fn pod_gets_default_toleration_seconds_once() {
    let pod = defaulted("", "Pod", kubectl_run_pod());
    assert_eq!(
        pod["spec"]["tolerations"],
        json!([
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
        ])
    );
}

#[test]
fn existing_toleration_suppresses_default_toleration() {
    let mut pod = kubectl_run_pod();
    pod["spec"]["tolerations"] = json!([{"operator": "Exists"}]);
    let pod = defaulted("", "Pod", pod);
    assert_eq!(pod["spec"]["tolerations"], json!([{"operator": "Exists"}]));
}

#[test]
fn container_gets_upstream_defaults() {
    let pod = defaulted("", "Pod", kubectl_run_pod());
    let c = &pod["spec"]["containers"][0];
    assert_eq!(c["terminationMessagePath"], "/dev/termination-log");
    assert_eq!(c["terminationMessagePolicy"], "File");
    assert_eq!(c["imagePullPolicy"], "Always");
    assert_eq!(c["resources"], json!({}));
}

#[test]
fn image_pull_policy_follows_tag() {
    assert_eq!(pull_policy_for("nginx"), "Always");
    assert_eq!(pull_policy_for("nginx:latest"), "Always");
    assert_eq!(pull_policy_for("nginx:1.27"), "IfNotPresent");
    assert_eq!(pull_policy_for("localhost:5000/app"), "Always");
    assert_eq!(pull_policy_for("localhost:5000/app:v1"), "IfNotPresent");
    assert_eq!(pull_policy_for("nginx@sha256:abcd"), "IfNotPresent");
    assert_eq!(pull_policy_for("nginx:1.27@sha256:abcd"), "IfNotPresent");
}

#[test]
fn explicit_pull_policy_is_kept() {
    let mut pod = kubectl_run_pod();
    pod["spec"]["containers"][0]["imagePullPolicy"] = json!("Never");
    let pod = defaulted("", "Pod", pod);
    assert_eq!(pod["spec"]["containers"][0]["imagePullPolicy"], "Never");
}

#[test]
fn ports_probes_and_env_get_defaults() {
    let mut pod = kubectl_run_pod();
    pod["spec"]["containers"][0]["ports"] = json!([{"containerPort": 80}]);
    pod["spec"]["containers"][0]["livenessProbe"] = json!({"httpGet": {"port": 80}});
    pod["spec"]["containers"][0]["readinessProbe"] = json!({"grpc": {"port": 9000}});
    pod["spec"]["containers"][0]["env"] = json!([
        {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}
    ]);
    let pod = defaulted("", "Pod", pod);
    let c = &pod["spec"]["containers"][0];
    assert_eq!(c["ports"][0]["protocol"], "TCP");
    assert_eq!(
        c["livenessProbe"],
        json!({"httpGet": {"port": 80, "path": "/", "scheme": "HTTP"},
               "timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3})
    );
    assert_eq!(c["readinessProbe"]["grpc"]["service"], "");
    assert_eq!(c["env"][0]["valueFrom"]["fieldRef"]["apiVersion"], "v1");
}

#[test]
fn volumes_get_defaults() {
    let mut pod = kubectl_run_pod();
    pod["spec"]["volumes"] = json!([
        {"name": "scratch"},
        {"name": "cfg", "configMap": {"name": "app"}},
        {"name": "sec", "secret": {"secretName": "app"}},
        {"name": "host", "hostPath": {"path": "/var/log"}},
        {"name": "proj", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}}
    ]);
    let pod = defaulted("", "Pod", pod);
    let v = &pod["spec"]["volumes"];
    assert_eq!(v[0]["emptyDir"], json!({}));
    assert_eq!(v[1]["configMap"]["defaultMode"], 420);
    assert_eq!(v[2]["secret"]["defaultMode"], 420);
    assert_eq!(v[3]["hostPath"]["type"], "");
    assert_eq!(v[4]["projected"]["defaultMode"], 420);
    assert_eq!(
        v[4]["projected"]["sources"][0]["serviceAccountToken"]["expirationSeconds"],
        3600
    );
}

#[test]
fn pod_requests_default_to_limits() {
    let mut pod = kubectl_run_pod();
    pod["spec"]["containers"][0]["resources"] =
        json!({"limits": {"cpu": "500m", "memory": "128Mi"}, "requests": {"cpu": "100m"}});
    let pod = defaulted("", "Pod", pod);
    assert_eq!(
        pod["spec"]["containers"][0]["resources"]["requests"],
        json!({"cpu": "100m", "memory": "128Mi"})
    );
}

#[test]
fn host_network_pod_ports_get_host_port() {
    let mut pod = kubectl_run_pod();
    pod["spec"]["hostNetwork"] = json!(true);
    pod["spec"]["containers"][0]["ports"] = json!([{"containerPort": 8080}]);
    let pod = defaulted("", "Pod", pod);
    assert_eq!(pod["spec"]["containers"][0]["ports"][0]["hostPort"], 8080);
}

#[test]
fn system_priority_class_resolves_priority() {
    let mut pod = kubectl_run_pod();
    pod["spec"]["priorityClassName"] = json!("system-node-critical");
    let pod = defaulted("", "Pod", pod);
    assert_eq!(pod["spec"]["priority"], 2_000_001_000);
}

/// What `kubectl create deployment web --image=nginx` sends.
fn kubectl_create_deployment() -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "nginx", "image": "nginx", "resources": {}}]}
            }
        },
        "status": {}
    })
}

#[test]
fn deployment_gets_upstream_defaults() {
    let mut d = kubectl_create_deployment();
    d["spec"].as_object_mut().map(|s| s.remove("replicas"));
    let d = defaulted("apps", "Deployment", d);
    let spec = &d["spec"];
    assert_eq!(spec["replicas"], 1);
    assert_eq!(
        spec["strategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
    );
    assert_eq!(spec["revisionHistoryLimit"], 10);
    assert_eq!(spec["progressDeadlineSeconds"], 600);
    let tspec = &spec["template"]["spec"];
    assert_eq!(tspec["restartPolicy"], "Always");
    assert_eq!(tspec["containers"][0]["imagePullPolicy"], "Always");
    // Pod-only admission defaults stay off templates.
    assert!(tspec.get("serviceAccountName").is_none());
    assert!(tspec.get("enableServiceLinks").is_none());
    assert!(tspec.get("tolerations").is_none());
}

#[test]
fn recreate_deployment_gets_no_rolling_update() {
    let mut d = kubectl_create_deployment();
    d["spec"]["strategy"] = json!({"type": "Recreate"});
    let d = defaulted("apps", "Deployment", d);
    assert_eq!(d["spec"]["strategy"], json!({"type": "Recreate"}));
}

#[test]
fn explicit_zero_replicas_is_kept() {
    let mut d = kubectl_create_deployment();
    d["spec"]["replicas"] = json!(0);
    let d = defaulted("apps", "Deployment", d);
    assert_eq!(d["spec"]["replicas"], 0);
}

#[test]
fn replica_set_defaults_replicas() {
    let rs = defaulted(
        "apps",
        "ReplicaSet",
        json!({"spec": {"template": {"spec": {"containers": []}}}}),
    );
    assert_eq!(rs["spec"]["replicas"], 1);
    assert_eq!(rs["spec"]["template"]["spec"]["dnsPolicy"], "ClusterFirst");
}

#[test]
fn stateful_set_gets_upstream_defaults() {
    let sts = defaulted(
        "apps",
        "StatefulSet",
        json!({"spec": {
            "serviceName": "db",
            "selector": {"matchLabels": {"app": "db"}},
            "template": {"metadata": {"labels": {"app": "db"}},
                         "spec": {"containers": [{"name": "db", "image": "postgres:16"}]}},
            "volumeClaimTemplates": [{"metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]
        }}),
    );
    let spec = &sts["spec"];
    assert_eq!(spec["replicas"], 1);
    assert_eq!(spec["podManagementPolicy"], "OrderedReady");
    assert_eq!(
        spec["updateStrategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
    );
    assert_eq!(spec["revisionHistoryLimit"], 10);
    assert_eq!(
        spec["persistentVolumeClaimRetentionPolicy"],
        json!({"whenDeleted": "Retain", "whenScaled": "Retain"})
    );
    assert_eq!(
        spec["volumeClaimTemplates"][0]["spec"]["volumeMode"],
        "Filesystem"
    );
    assert_eq!(
        spec["volumeClaimTemplates"][0]["status"]["phase"],
        "Pending"
    );
    assert_eq!(
        spec["template"]["spec"]["containers"][0]["imagePullPolicy"],
        "IfNotPresent"
    );
}

#[test]
fn daemon_set_gets_upstream_defaults() {
    let ds = defaulted(
        "apps",
        "DaemonSet",
        json!({"spec": {"template": {"spec": {}}}}),
    );
    assert_eq!(
        ds["spec"]["updateStrategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}})
    );
    assert_eq!(ds["spec"]["revisionHistoryLimit"], 10);
}

/// What `kubectl create job pi --image=perl` sends.
fn kubectl_create_job() -> Value {
    json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "pi"},
        "spec": {"template": {"metadata": {}, "spec": {
            "containers": [{"name": "pi", "image": "perl", "resources": {}}],
            "restartPolicy": "Never"}}},
        "status": {}
    })
}

#[test]
fn job_gets_upstream_defaults() {
    let job = defaulted("batch", "Job", kubectl_create_job());
    let spec = &job["spec"];
    assert_eq!(spec["completions"], 1);
    assert_eq!(spec["parallelism"], 1);
    assert_eq!(spec["backoffLimit"], 6);
    assert_eq!(spec["completionMode"], "NonIndexed");
    assert_eq!(spec["suspend"], false);
    assert_eq!(spec["manualSelector"], false);
    assert_eq!(spec["podReplacementPolicy"], "TerminatingOrFailed");
    assert_eq!(spec["template"]["spec"]["restartPolicy"], "Never");
}

#[test]
fn job_with_parallelism_keeps_completions_unset() {
    let mut job = kubectl_create_job();
    job["spec"]["parallelism"] = json!(3);
    let job = defaulted("batch", "Job", job);
    assert!(job["spec"].get("completions").is_none());
    assert_eq!(job["spec"]["parallelism"], 3);
}

#[test]
fn job_with_pod_failure_policy_replaces_failed_pods_only() {
    let mut job = kubectl_create_job();
    job["spec"]["podFailurePolicy"] =
        json!({"rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]});
    job["spec"]["backoffLimitPerIndex"] = json!(1);
    let job = defaulted("batch", "Job", job);
    assert_eq!(job["spec"]["podReplacementPolicy"], "Failed");
    assert_eq!(job["spec"]["backoffLimit"], 2_147_483_647);
    assert_eq!(
        job["spec"]["podFailurePolicy"]["rules"][0]["onPodConditions"][0]["status"],
        "True"
    );
}

#[test]
fn job_selector_defaults_label_template_and_select_uid() {
    let mut job = defaulted("batch", "Job", kubectl_create_job());
    job_selector_defaults(&mut job, "0f6b-uid");
    assert_eq!(
        job["spec"]["selector"],
        json!({"matchLabels": {"batch.kubernetes.io/controller-uid": "0f6b-uid"}})
    );
    assert_eq!(
        job["spec"]["template"]["metadata"]["labels"],
        json!({
            "batch.kubernetes.io/controller-uid": "0f6b-uid",
            "batch.kubernetes.io/job-name": "pi",
            "controller-uid": "0f6b-uid",
            "job-name": "pi"
        })
    );
}

#[test]
fn manual_job_selector_is_left_alone() {
    let mut job = kubectl_create_job();
    job["spec"]["manualSelector"] = json!(true);
    job["spec"]["selector"] = json!({"matchLabels": {"app": "pi"}});
    let before = job.clone();
    job_selector_defaults(&mut job, "uid");
    assert_eq!(job, before);
}

#[test]
fn cron_job_gets_upstream_defaults() {
    let cj = defaulted(
        "batch",
        "CronJob",
        json!({"spec": {"schedule": "*/1 * * * *", "jobTemplate": {"spec": {"template": {"spec": {
            "containers": [{"name": "c", "image": "busybox"}], "restartPolicy": "OnFailure"}}}}}}),
    );
    let spec = &cj["spec"];
    assert_eq!(spec["concurrencyPolicy"], "Allow");
    assert_eq!(spec["suspend"], false);
    assert_eq!(spec["successfulJobsHistoryLimit"], 3);
    assert_eq!(spec["failedJobsHistoryLimit"], 1);
    // SetDefaults_Job is not applied to job templates.
    assert!(spec["jobTemplate"]["spec"].get("backoffLimit").is_none());
    assert_eq!(
        spec["jobTemplate"]["spec"]["template"]["spec"]["schedulerName"],
        "default-scheduler"
    );
}

#[test]
fn replication_controller_copies_template_labels() {
    let rc = defaulted(
        "",
        "ReplicationController",
        json!({"metadata": {"name": "rc"}, "spec": {"template": {"metadata": {"labels": {"app": "x"}}, "spec": {}}}}),
    );
    assert_eq!(rc["spec"]["selector"], json!({"app": "x"}));
    assert_eq!(rc["metadata"]["labels"], json!({"app": "x"}));
    assert_eq!(rc["spec"]["replicas"], 1);
}

/// What `kubectl expose deployment web --port=80` sends.
fn kubectl_expose_service() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {"ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}], "selector": {"app": "web"}},
        "status": {"loadBalancer": {}}
    })
}

#[test]
fn service_gets_upstream_defaults() {
    let mut svc = kubectl_expose_service();
    svc["spec"]["ports"] = json!([{"port": 80}]);
    let svc = defaulted("", "Service", svc);
    let spec = &svc["spec"];
    assert_eq!(spec["type"], "ClusterIP");
    assert_eq!(spec["sessionAffinity"], "None");
    assert_eq!(
        spec["ports"][0],
        json!({"port": 80, "protocol": "TCP", "targetPort": 80})
    );
    assert_eq!(spec["internalTrafficPolicy"], "Cluster");
    assert_eq!(spec["ipFamilyPolicy"], "SingleStack");
    assert_eq!(spec["ipFamilies"], json!(["IPv4"]));
    assert!(spec.get("externalTrafficPolicy").is_none());
    assert!(
        spec.get("clusterIP").is_none(),
        "allocation is the server's job"
    );
}

#[test]
fn load_balancer_service_gets_external_defaults() {
    let mut svc = kubectl_expose_service();
    svc["spec"]["type"] = json!("LoadBalancer");
    let svc = defaulted("", "Service", svc);
    assert_eq!(svc["spec"]["externalTrafficPolicy"], "Cluster");
    assert_eq!(svc["spec"]["allocateLoadBalancerNodePorts"], true);
}

#[test]
fn client_ip_affinity_gets_timeout() {
    let mut svc = kubectl_expose_service();
    svc["spec"]["sessionAffinity"] = json!("ClientIP");
    let svc = defaulted("", "Service", svc);
    assert_eq!(
        svc["spec"]["sessionAffinityConfig"],
        json!({"clientIP": {"timeoutSeconds": 10800}})
    );
}

#[test]
fn headless_selectorless_service_requires_dual_stack() {
    let svc = defaulted(
        "",
        "Service",
        json!({"spec": {"clusterIP": "None", "ports": [{"port": 5432}]}}),
    );
    assert_eq!(svc["spec"]["ipFamilyPolicy"], "RequireDualStack");
    assert_eq!(svc["spec"]["ipFamilies"], json!(["IPv4", "IPv6"]));
}

#[test]
fn external_name_service_gets_no_ip_families() {
    let svc = defaulted(
        "",
        "Service",
        json!({"spec": {"type": "ExternalName", "externalName": "example.com"}}),
    );
    assert!(svc["spec"].get("ipFamilyPolicy").is_none());
    assert!(svc["spec"].get("internalTrafficPolicy").is_none());
}

#[test]
fn secret_defaults_type_and_merges_string_data() {
    let s = defaulted(
        "",
        "Secret",
        json!({"metadata": {"name": "s"}, "data": {"a": "eA=="}, "stringData": {"b": "hello"}}),
    );
    assert_eq!(s["type"], "Opaque");
    assert_eq!(s["data"], json!({"a": "eA==", "b": "aGVsbG8="}));
    assert!(s.get("stringData").is_none());
}

#[test]
fn namespace_gets_finalizer_phase_and_name_label() {
    let ns = defaulted("", "Namespace", json!({"metadata": {"name": "dev"}}));
    assert_eq!(ns["spec"]["finalizers"], json!(["kubernetes"]));
    assert_eq!(ns["status"]["phase"], "Active");
    assert_eq!(
        ns["metadata"]["labels"]["kubernetes.io/metadata.name"],
        "dev"
    );
}

#[test]
fn volumes_and_claims_get_defaults() {
    let pv = defaulted(
        "",
        "PersistentVolume",
        json!({"spec": {"capacity": {"storage": "1Gi"}, "hostPath": {"path": "/d"}}}),
    );
    assert_eq!(pv["spec"]["persistentVolumeReclaimPolicy"], "Retain");
    assert_eq!(pv["spec"]["volumeMode"], "Filesystem");
    assert_eq!(pv["status"]["phase"], "Pending");
    let pvc = defaulted("", "PersistentVolumeClaim", json!({"spec": {}}));
    assert_eq!(pvc["spec"]["volumeMode"], "Filesystem");
    assert_eq!(pvc["status"]["phase"], "Pending");
}

#[test]
fn other_group_defaults() {
    let sc = defaulted(
        "storage.k8s.io",
        "StorageClass",
        json!({"provisioner": "x"}),
    );
    assert_eq!(sc["reclaimPolicy"], "Delete");
    assert_eq!(sc["volumeBindingMode"], "Immediate");
    let pc = defaulted("scheduling.k8s.io", "PriorityClass", json!({"value": 5}));
    assert_eq!(pc["preemptionPolicy"], "PreemptLowerPriority");
    let rb = defaulted(
        "rbac.authorization.k8s.io",
        "RoleBinding",
        json!({"roleRef": {"kind": "Role", "name": "r"},
               "subjects": [{"kind": "User", "name": "u"}, {"kind": "ServiceAccount", "name": "sa"}]}),
    );
    assert_eq!(rb["roleRef"]["apiGroup"], "rbac.authorization.k8s.io");
    assert_eq!(rb["subjects"][0]["apiGroup"], "rbac.authorization.k8s.io");
    assert_eq!(rb["subjects"][1]["apiGroup"], "");
    let np = defaulted(
        "networking.k8s.io",
        "NetworkPolicy",
        json!({"spec": {"podSelector": {}, "egress": [{"ports": [{"port": 53}]}]}}),
    );
    assert_eq!(np["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
    assert_eq!(np["spec"]["egress"][0]["ports"][0]["protocol"], "TCP");
    let hpa = defaulted(
        "autoscaling",
        "HorizontalPodAutoscaler",
        json!({"spec": {"maxReplicas": 3}}),
    );
    assert_eq!(hpa["spec"]["minReplicas"], 1);
    assert_eq!(
        hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
        80
    );
}

#[test]
fn unknown_kinds_are_untouched() {
    let obj = json!({"spec": {"replicas": null}});
    assert_eq!(defaulted("example.com", "Widget", obj.clone()), obj);
}
