use serde_json::{Value, json};

use super::*;
use crate::defaults::apply_defaults;

const SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";

/// Defaults then validates on create, returning the rendered messages.
fn create_messages(group: &str, kind: &str, mut obj: Value) -> Vec<String> {
    apply_defaults(group, kind, &mut obj);
    validate(group, kind, &obj, None)
        .iter()
        .map(FieldError::message)
        .collect()
}

fn update_messages(group: &str, kind: &str, old: Value, mut new: Value) -> Vec<String> {
    let mut old = old;
    apply_defaults(group, kind, &mut old);
    apply_defaults(group, kind, &mut new);
    validate(group, kind, &new, Some(&old))
        .iter()
        .map(FieldError::message)
        .collect()
}

fn pod() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web", "namespace": "default", "labels": {"run": "web"}},
        "spec": {"containers": [{"name": "web", "image": "nginx", "resources": {}}]}
    })
}

fn deployment() -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "nginx", "image": "nginx", "resources": {}}]}}
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Error rendering

#[test]
fn reasons_match_upstream_cause_types() {
    let p = Path::new("spec");
    assert_eq!(FieldError::required(&p, "").reason(), "FieldValueRequired");
    assert_eq!(FieldError::invalid(&p, 1, "").reason(), "FieldValueInvalid");
    assert_eq!(
        FieldError::not_supported(&p, "x", &["a"]).reason(),
        "FieldValueNotSupported"
    );
    assert_eq!(
        FieldError::duplicate(&p, "x").reason(),
        "FieldValueDuplicate"
    );
    assert_eq!(
        FieldError::forbidden(&p, "").reason(),
        "FieldValueForbidden"
    );
    assert_eq!(FieldError::too_long(&p, 5).reason(), "FieldValueTooLong");
    assert_eq!(
        FieldError::not_found(&p, "x").reason(),
        "FieldValueNotFound"
    );
}

#[test]
fn bodies_follow_upstream_format() {
    let p = Path::new("spec").child("x");
    assert_eq!(
        FieldError::required(&p, "").message(),
        "spec.x: Required value"
    );
    assert_eq!(
        FieldError::required(&p, "why").message(),
        "spec.x: Required value: why"
    );
    assert_eq!(
        FieldError::invalid(&p, -1, "must be greater than or equal to 0").message(),
        "spec.x: Invalid value: -1: must be greater than or equal to 0"
    );
    assert_eq!(
        FieldError::duplicate(&p, "app").message(),
        "spec.x: Duplicate value: \"app\""
    );
    assert_eq!(
        FieldError::too_long(&p, 262144).message(),
        "spec.x: Too long: may not be more than 262144 bytes"
    );
    assert_eq!(
        FieldError::not_found(&p, "data").message(),
        "spec.x: Not found: \"data\""
    );
    let too_many = FieldError {
        kind: FieldErrorKind::TooMany,
        field: "spec.x".into(),
        value: Some(json!(5)),
        detail: "must have at most 3 items".into(),
    };
    assert_eq!(
        too_many.message(),
        "spec.x: Too many: 5: must have at most 3 items"
    );
    assert_eq!(too_many.body(), "Too many: 5: must have at most 3 items");
}

#[test]
fn values_render_like_go() {
    assert_eq!(go_quote("a\"b\n"), "\"a\\\"b\\n\"");
    let labels = FieldError::invalid(
        &Path::new("spec")
            .child("template")
            .child("metadata")
            .child("labels"),
        json!({"app": "x", "tier": "web"}),
        "d",
    );
    assert_eq!(
        labels.body(),
        "Invalid value: map[string]string{\"app\":\"x\", \"tier\":\"web\"}: d"
    );
    let selector = FieldError::invalid(
        &Path::new("spec").child("selector"),
        json!({"matchLabels": {"app": "web2"}}),
        "field is immutable",
    );
    assert_eq!(
        selector.body(),
        "Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"web2\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable"
    );
}

#[test]
fn invalid_message_brackets_only_several_distinct_errors() {
    let a = FieldError::required(&Path::new("spec").child("selector"), "");
    let b = FieldError::required(&Path::new("spec").child("containers"), "");
    assert_eq!(
        invalid_message("Pod", "p", std::slice::from_ref(&b)),
        "Pod \"p\" is invalid: spec.containers: Required value"
    );
    assert_eq!(
        invalid_message("Pod", "p", &[b.clone(), b.clone()]),
        "Pod \"p\" is invalid: spec.containers: Required value"
    );
    assert_eq!(
        invalid_message("Deployment.apps", "web", &[a, b]),
        "Deployment.apps \"web\" is invalid: [spec.selector: Required value, spec.containers: Required value]"
    );
    assert_eq!(invalid_message("Pod", "p", &[]), "Pod \"p\" is invalid");
}

// ---------------------------------------------------------------------------------------------
// Metadata

#[test]
fn valid_objects_have_no_errors() {
    assert_eq!(create_messages("", "Pod", pod()), Vec::<String>::new());
    assert_eq!(
        create_messages("apps", "Deployment", deployment()),
        Vec::<String>::new()
    );
}

#[test]
fn name_is_required_unless_generate_name() {
    let mut p = pod();
    p["metadata"].as_object_mut().map(|m| m.remove("name"));
    assert_eq!(
        create_messages("", "Pod", p.clone()),
        ["metadata.name: Required value: name or generateName is required"]
    );
    p["metadata"]["generateName"] = json!("web-");
    assert!(create_messages("", "Pod", p).is_empty());
}

#[test]
fn subdomain_name_message_matches_upstream() {
    let mut p = pod();
    p["metadata"]["name"] = json!("Foo_Bar");
    assert_eq!(
        create_messages("", "Pod", p),
        [format!(
            "metadata.name: Invalid value: \"Foo_Bar\": {SUBDOMAIN_MSG}"
        )]
    );
}

#[test]
fn namespace_name_must_be_dns_label() {
    let msgs = create_messages("", "Namespace", json!({"metadata": {"name": "a.b"}}));
    assert_eq!(
        msgs,
        ["metadata.name: Invalid value: \"a.b\": must not contain dots"]
    );
    let msgs = create_messages("", "Namespace", json!({"metadata": {"name": "Dev"}}));
    assert_eq!(
        msgs,
        [format!(
            "metadata.name: Invalid value: \"Dev\": {LABEL_MSG}"
        )]
    );
}

#[test]
fn service_name_must_be_dns1035_label() {
    let msgs = create_messages(
        "",
        "Service",
        json!({"metadata": {"name": "1web"}, "spec": {"ports": [{"port": 80}]}}),
    );
    assert_eq!(
        msgs,
        [
            "metadata.name: Invalid value: \"1web\": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
        ]
    );
}

#[test]
fn rbac_names_are_path_segments() {
    let role = json!({"metadata": {"name": "system:controller:x"}, "rules": []});
    assert!(create_messages("rbac.authorization.k8s.io", "ClusterRole", role).is_empty());
    let role = json!({"metadata": {"name": "a/b"}, "rules": []});
    assert_eq!(
        create_messages("rbac.authorization.k8s.io", "ClusterRole", role),
        ["metadata.name: Invalid value: \"a/b\": may not contain '/'"]
    );
}

#[test]
fn cron_job_name_is_limited_to_52_characters() {
    let name = "a".repeat(53);
    let cj = json!({"metadata": {"name": name}, "spec": {"schedule": "* * * * *",
        "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "c", "image": "busybox"}]}}}}}});
    assert_eq!(
        create_messages("batch", "CronJob", cj),
        [format!(
            "metadata.name: Invalid value: \"{name}\": must be no more than 52 characters"
        )]
    );
}

#[test]
fn label_key_and_value_messages_match_upstream() {
    let mut p = pod();
    p["metadata"]["labels"] = json!({"a/b/c": "ok", "app": "bad value"});
    assert_eq!(
        create_messages("", "Pod", p),
        [
            "metadata.labels: Invalid value: \"a/b/c\": a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
            "metadata.labels: Invalid value: \"bad value\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
        ]
    );
}

#[test]
fn label_prefix_errors_are_prefixed() {
    let mut p = pod();
    p["metadata"]["labels"] = json!({"Example.com/app": "x"});
    assert_eq!(
        create_messages("", "Pod", p),
        [format!(
            "metadata.labels: Invalid value: \"Example.com/app\": prefix part {SUBDOMAIN_MSG}"
        )]
    );
}

#[test]
fn annotations_over_256_kib_are_too_long() {
    let mut p = pod();
    p["metadata"]["annotations"] = json!({"big": "x".repeat(256 * 1024)});
    assert_eq!(
        create_messages("", "Pod", p),
        ["metadata.annotations: Too long: may not be more than 262144 bytes"]
    );
}

#[test]
fn metadata_identity_is_immutable() {
    let old = json!({"metadata": {"name": "cm", "uid": "1"}, "data": {}});
    let new = json!({"metadata": {"name": "cm", "uid": "2"}, "data": {}});
    assert_eq!(
        update_messages("", "ConfigMap", old, new),
        ["metadata.uid: Invalid value: \"2\": field is immutable"]
    );
}

// ---------------------------------------------------------------------------------------------
// Pods

#[test]
fn pod_without_containers_reports_required() {
    let mut p = pod();
    p["spec"]["containers"] = json!([]);
    assert_eq!(
        create_messages("", "Pod", p),
        ["spec.containers: Required value"]
    );
}

#[test]
fn container_image_and_name_rules() {
    let mut p = pod();
    p["spec"]["containers"] = json!([
        {"name": "app", "image": ""},
        {"name": "app", "image": "nginx"},
        {"name": "Bad_Name", "image": "nginx"}
    ]);
    assert_eq!(
        create_messages("", "Pod", p),
        [
            "spec.containers[0].image: Required value".to_owned(),
            "spec.containers[1].name: Duplicate value: \"app\"".to_owned(),
            format!("spec.containers[2].name: Invalid value: \"Bad_Name\": {LABEL_MSG}"),
        ]
    );
}

#[test]
fn init_container_names_must_differ_from_containers() {
    let mut p = pod();
    p["spec"]["initContainers"] = json!([{"name": "web", "image": "busybox"}]);
    assert_eq!(
        create_messages("", "Pod", p),
        ["spec.initContainers[0].name: Duplicate value: \"web\""]
    );
}

#[test]
fn restart_policy_unsupported_lists_upstream_order() {
    let mut p = pod();
    p["spec"]["restartPolicy"] = json!("Sometimes");
    assert_eq!(
        create_messages("", "Pod", p),
        [
            "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\""
        ]
    );
}

#[test]
fn container_port_range_and_protocol() {
    let mut p = pod();
    p["spec"]["containers"][0]["ports"] = json!([
        {"containerPort": 70000},
        {"containerPort": 80, "protocol": "ICMP"},
        {"containerPort": 81, "hostPort": -1}
    ]);
    assert_eq!(
        create_messages("", "Pod", p),
        [
            "spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
            "spec.containers[0].ports[1].protocol: Unsupported value: \"ICMP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
            "spec.containers[0].ports[2].hostPort: Invalid value: -1: must be between 1 and 65535, inclusive",
        ]
    );
}

#[test]
fn volume_names_unique_and_mounts_must_exist() {
    let mut p = pod();
    p["spec"]["volumes"] = json!([{"name": "data"}, {"name": "data"}]);
    p["spec"]["containers"][0]["volumeMounts"] = json!([
        {"name": "data", "mountPath": "/data"},
        {"name": "logs", "mountPath": "/data"}
    ]);
    assert_eq!(
        create_messages("", "Pod", p),
        [
            "spec.volumes[1].name: Duplicate value: \"data\"",
            "spec.containers[0].volumeMounts[1].name: Not found: \"logs\"",
            "spec.containers[0].volumeMounts[1].mountPath: Invalid value: \"/data\": must be unique",
        ]
    );
}

#[test]
fn volume_sources_require_their_names_and_are_exclusive() {
    let mut p = pod();
    p["spec"]["volumes"] = json!([
        {"name": "a", "configMap": {}},
        {"name": "b", "secret": {"secretName": "s"}, "emptyDir": {}}
    ]);
    assert_eq!(
        create_messages("", "Pod", p),
        [
            "spec.volumes[0].configMap.name: Required value",
            "spec.volumes[1].secret: Forbidden: may not specify more than 1 volume type",
        ]
    );
}

#[test]
fn requests_may_not_exceed_limits() {
    let mut p = pod();
    p["spec"]["containers"][0]["resources"] = json!({"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "2", "memory": "1024Mi"}});
    assert_eq!(
        create_messages("", "Pod", p),
        [
            "spec.containers[0].resources.requests: Invalid value: \"2\": must be less than or equal to cpu limit of 1"
        ]
    );
}

#[test]
fn negative_and_unknown_resources_are_invalid() {
    let mut p = pod();
    p["spec"]["containers"][0]["resources"] = json!({"limits": {"cpu": "-1", "gpu": "1"}});
    assert_eq!(
        create_messages("", "Pod", p),
        [
            "spec.containers[0].resources.limits[cpu]: Invalid value: \"-1\": must be greater than or equal to 0",
            "spec.containers[0].resources.limits[gpu]: Invalid value: \"gpu\": must be a standard resource for containers",
            "spec.containers[0].resources.requests[cpu]: Invalid value: \"-1\": must be greater than or equal to 0",
            "spec.containers[0].resources.requests[gpu]: Invalid value: \"gpu\": must be a standard resource for containers",
        ]
    );
}

#[test]
fn probe_needs_exactly_one_handler() {
    let mut p = pod();
    p["spec"]["containers"][0]["livenessProbe"] = json!({"periodSeconds": 5});
    p["spec"]["containers"][0]["readinessProbe"] =
        json!({"exec": {"command": ["true"]}, "tcpSocket": {"port": 80}});
    assert_eq!(
        create_messages("", "Pod", p),
        [
            "spec.containers[0].livenessProbe: Required value: must specify a handler type",
            "spec.containers[0].readinessProbe.tcpSocket: Forbidden: may not specify more than 1 handler type",
        ]
    );
}

#[test]
fn toleration_rules() {
    let mut p = pod();
    p["spec"]["tolerations"] = json!([{"key": "", "operator": "Equal", "value": "x"}]);
    assert_eq!(
        create_messages("", "Pod", p),
        [
            "spec.tolerations[0].operator: Invalid value: \"Equal\": operator must be Exists when `key` is empty, which means \"match all values and all keys\""
        ]
    );
}

#[test]
fn pod_image_update_is_allowed() {
    // As after a patch: the stored (defaulted) pod with only the image changed.
    let mut old = pod();
    apply_defaults("", "Pod", &mut old);
    let mut new = old.clone();
    new["spec"]["containers"][0]["image"] = json!("nginx:1.27");
    assert!(update_messages("", "Pod", old, new).is_empty());
}

#[test]
fn pod_spec_update_is_forbidden_with_upstream_message() {
    let mut new = pod();
    new["spec"]["containers"][0]["ports"] = json!([{"containerPort": 8080}]);
    let msgs = update_messages("", "Pod", pod(), new);
    assert_eq!(msgs.len(), 1);
    assert!(
        msgs[0].starts_with("spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)\n"),
        "{}",
        msgs[0]
    );
}

#[test]
fn pod_update_may_not_add_containers() {
    let mut new = pod();
    if let Some(c) = new["spec"]["containers"].as_array_mut() {
        c.push(json!({"name": "side", "image": "busybox"}));
    }
    assert_eq!(
        update_messages("", "Pod", pod(), new),
        ["spec.containers: Forbidden: pod updates may not add or remove containers"]
    );
}

#[test]
fn pod_update_may_add_tolerations_and_lower_deadline() {
    let mut old = pod();
    old["spec"]["activeDeadlineSeconds"] = json!(100);
    let mut new = old.clone();
    new["spec"]["activeDeadlineSeconds"] = json!(50);
    new["spec"]["tolerations"] =
        json!([{"key": "k", "operator": "Exists", "effect": "NoSchedule"}]);
    assert!(update_messages("", "Pod", old.clone(), new).is_empty());
    let mut raised = old.clone();
    raised["spec"]["activeDeadlineSeconds"] = json!(200);
    assert_eq!(
        update_messages("", "Pod", old, raised),
        [
            "spec.activeDeadlineSeconds: Invalid value: 200: must be less than or equal to previous value of 100"
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Workloads

#[test]
fn deployment_without_selector_reports_both_upstream_errors() {
    let mut d = deployment();
    d["spec"].as_object_mut().map(|s| s.remove("selector"));
    assert_eq!(
        create_messages("apps", "Deployment", d),
        [
            "spec.selector: Required value",
            "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"web\"}: `selector` does not match template `labels`",
        ]
    );
}

#[test]
fn deployment_selector_mismatch_and_negative_replicas() {
    let mut d = deployment();
    d["spec"]["replicas"] = json!(-1);
    d["spec"]["template"]["metadata"]["labels"] = json!({"app": "x"});
    assert_eq!(
        create_messages("apps", "Deployment", d),
        [
            "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
            "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"x\"}: `selector` does not match template `labels`",
        ]
    );
}

#[test]
fn deployment_empty_selector_is_invalid() {
    let mut d = deployment();
    d["spec"]["selector"] = json!({});
    assert_eq!(
        create_messages("apps", "Deployment", d),
        [
            "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for deployment"
        ]
    );
}

#[test]
fn deployment_template_must_restart_always() {
    let mut d = deployment();
    d["spec"]["template"]["spec"]["restartPolicy"] = json!("Never");
    assert_eq!(
        create_messages("apps", "Deployment", d),
        [
            "spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\""
        ]
    );
}

#[test]
fn deployment_rolling_update_may_not_be_all_zero() {
    let mut d = deployment();
    d["spec"]["strategy"] =
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 0}});
    assert_eq!(
        create_messages("apps", "Deployment", d),
        [
            "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 0: may not be 0 when `maxSurge` is 0"
        ]
    );
}

#[test]
fn deployment_selector_is_immutable() {
    let mut new = deployment();
    new["spec"]["selector"] = json!({"matchLabels": {"app": "web2"}});
    new["spec"]["template"]["metadata"]["labels"] = json!({"app": "web2"});
    assert_eq!(
        update_messages("apps", "Deployment", deployment(), new),
        [
            "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"web2\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable"
        ]
    );
}

#[test]
fn stateful_set_containers_may_mount_claim_templates_by_name() {
    let sts = json!({"metadata": {"name": "db"}, "spec": {
        "serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
        "volumeClaimTemplates": [{"metadata": {"name": "data"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}],
        "template": {"metadata": {"labels": {"app": "db"}},
            "spec": {"containers": [{"name": "db", "image": "postgres",
                "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]}}}});
    assert!(create_messages("apps", "StatefulSet", sts.clone()).is_empty());
    let mut unknown = sts;
    unknown["spec"]["template"]["spec"]["containers"][0]["volumeMounts"][0]["name"] = json!("logs");
    assert_eq!(
        create_messages("apps", "StatefulSet", unknown),
        ["spec.template.spec.containers[0].volumeMounts[0].name: Not found: \"logs\""]
    );
}

#[test]
fn stateful_set_spec_update_is_restricted() {
    let sts = json!({"metadata": {"name": "db"}, "spec": {
        "serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
        "template": {"metadata": {"labels": {"app": "db"}},
            "spec": {"containers": [{"name": "db", "image": "postgres"}]}}}});
    assert!(create_messages("apps", "StatefulSet", sts.clone()).is_empty());
    let mut scaled = sts.clone();
    scaled["spec"]["replicas"] = json!(3);
    assert!(update_messages("apps", "StatefulSet", sts.clone(), scaled).is_empty());
    let mut renamed = sts.clone();
    renamed["spec"]["serviceName"] = json!("other");
    assert_eq!(
        update_messages("apps", "StatefulSet", sts, renamed),
        [
            "spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"
        ]
    );
}

#[test]
fn daemon_set_without_selector_reports_mismatch() {
    let ds = json!({"metadata": {"name": "agent"}, "spec": {
        "template": {"metadata": {"labels": {"app": "agent"}},
            "spec": {"containers": [{"name": "a", "image": "agent"}]}}}});
    assert_eq!(
        create_messages("apps", "DaemonSet", ds),
        [
            "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"agent\"}: `selector` does not match template `labels`"
        ]
    );
}

fn job() -> Value {
    json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "pi", "uid": "u1"},
        "spec": {"template": {"spec": {"containers": [{"name": "pi", "image": "perl"}],
            "restartPolicy": "Never"}}}})
}

#[test]
fn job_with_generated_selector_is_valid() {
    let mut j = job();
    apply_defaults("batch", "Job", &mut j);
    crate::defaults::job_selector_defaults(&mut j, "u1");
    assert!(validate("batch", "Job", &j, None).is_empty());
}

#[test]
fn job_template_restart_policy_must_be_on_failure_or_never() {
    let mut j = job();
    j["spec"]["template"]["spec"]
        .as_object_mut()
        .map(|s| s.remove("restartPolicy"));
    apply_defaults("batch", "Job", &mut j);
    crate::defaults::job_selector_defaults(&mut j, "u1");
    let msgs: Vec<String> = validate("batch", "Job", &j, None)
        .iter()
        .map(FieldError::message)
        .collect();
    assert_eq!(
        msgs,
        [
            "spec.template.spec.restartPolicy: Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\""
        ]
    );
}

#[test]
fn job_without_selector_is_required() {
    // A nil selector matches nothing, so upstream also reports the template labels.
    assert_eq!(
        create_messages("batch", "Job", job()),
        [
            "spec.selector: Required value",
            "spec.template.metadata.labels: Invalid value: map[string]string(nil): `selector` does not match template `labels`",
        ]
    );
}

#[test]
fn cron_job_schedule_and_job_template_rules() {
    let cj = json!({"metadata": {"name": "c"}, "spec": {"schedule": "* * *",
        "jobTemplate": {"spec": {"template": {"spec": {
            "containers": [{"name": "c", "image": "busybox"}]}}}}}});
    assert_eq!(
        create_messages("batch", "CronJob", cj),
        [
            "spec.schedule: Invalid value: \"* * *\": expected exactly 5 fields, found 3: * * *",
            "spec.jobTemplate.spec.template.spec.restartPolicy: Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\"",
        ]
    );
    let cj = json!({"metadata": {"name": "c"}, "spec": {"schedule": "61 * * * *",
        "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "c", "image": "busybox"}]}}}}}});
    assert_eq!(
        create_messages("batch", "CronJob", cj),
        ["spec.schedule: Invalid value: \"61 * * * *\": end of range (61) above maximum (59): 61"]
    );
}

#[test]
fn replication_controller_needs_selector_matching_template() {
    let rc = json!({"metadata": {"name": "rc"}, "spec": {"selector": {"app": "a"},
        "template": {"metadata": {"labels": {"app": "b"}},
            "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}});
    assert_eq!(
        create_messages("", "ReplicationController", rc),
        [
            "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"b\"}: `selector` does not match template `labels`"
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Services, ConfigMaps, Secrets, storage

fn service() -> Value {
    json!({"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"},
        "ports": [{"port": 80, "targetPort": 8080}]}})
}

#[test]
fn service_ports_required_unless_headless_or_external_name() {
    let mut s = service();
    s["spec"]["ports"] = json!([]);
    assert_eq!(
        create_messages("", "Service", s.clone()),
        ["spec.ports: Required value"]
    );
    s["spec"]["clusterIP"] = json!("None");
    assert!(create_messages("", "Service", s).is_empty());
    let ext = json!({"metadata": {"name": "ext"}, "spec": {"type": "ExternalName", "externalName": "example.com"}});
    assert!(create_messages("", "Service", ext).is_empty());
}

#[test]
fn service_port_rules() {
    let mut s = service();
    s["spec"]["ports"] = json!([
        {"name": "http", "port": 0},
        {"name": "http", "port": 443},
        {"name": "b", "port": 443}
    ]);
    assert_eq!(
        create_messages("", "Service", s),
        [
            "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive",
            "spec.ports[0].targetPort: Invalid value: 0: must be between 1 and 65535, inclusive",
            "spec.ports[1].name: Duplicate value: \"http\"",
            "spec.ports[2]: Duplicate value: core.ServicePort{Name:\"\", Protocol:\"TCP\", AppProtocol:(*string)(nil), Port:443, TargetPort:intstr.IntOrString{Type:0, IntVal:0, StrVal:\"\"}, NodePort:0}",
        ]
    );
}

#[test]
fn service_multiple_ports_need_names() {
    let mut s = service();
    s["spec"]["ports"] = json!([{"port": 80}, {"port": 81}]);
    assert_eq!(
        create_messages("", "Service", s),
        [
            "spec.ports[0].name: Required value",
            "spec.ports[1].name: Required value"
        ]
    );
}

#[test]
fn service_type_and_node_port_rules() {
    let mut s = service();
    s["spec"]["type"] = json!("Internal");
    assert_eq!(
        create_messages("", "Service", s),
        [
            "spec.type: Unsupported value: \"Internal\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\""
        ]
    );
    let mut s = service();
    s["spec"]["type"] = json!("NodePort");
    s["spec"]["ports"][0]["nodePort"] = json!(80);
    assert_eq!(
        create_messages("", "Service", s),
        [
            "spec.ports[0].nodePort: Invalid value: 80: provided port is not in the valid range. The range of valid ports is 30000-32767"
        ]
    );
    let mut s = service();
    s["spec"]["ports"][0]["nodePort"] = json!(30080);
    assert_eq!(
        create_messages("", "Service", s),
        ["spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"]
    );
}

#[test]
fn config_map_keys_and_size() {
    let cm = json!({"metadata": {"name": "c"}, "data": {"bad key": "v", "..x": "v"}});
    assert_eq!(
        create_messages("", "ConfigMap", cm),
        [
            "data[..x]: Invalid value: \"..x\": must not start with '..'",
            "data[bad key]: Invalid value: \"bad key\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
        ]
    );
    let cm = json!({"metadata": {"name": "c"}, "data": {"k": "x".repeat(1024 * 1024 + 1)}});
    assert_eq!(
        create_messages("", "ConfigMap", cm),
        ["[]: Too long: may not be more than 1048576 bytes"]
    );
}

#[test]
fn immutable_config_map_data_is_frozen() {
    let old = json!({"metadata": {"name": "c"}, "immutable": true, "data": {"a": "1"}});
    let new = json!({"metadata": {"name": "c"}, "immutable": true, "data": {"a": "2"}});
    assert_eq!(
        update_messages("", "ConfigMap", old, new),
        ["data: Forbidden: field is immutable when `immutable` is set"]
    );
}

#[test]
fn secret_rules() {
    let s = json!({"metadata": {"name": "s"}, "type": "kubernetes.io/tls", "data": {"tls.crt": "eA=="}});
    assert_eq!(
        create_messages("", "Secret", s.clone()),
        ["data[tls.key]: Required value"]
    );
    let mut changed = s.clone();
    changed["type"] = json!("Opaque");
    assert_eq!(
        update_messages("", "Secret", s, changed),
        ["type: Invalid value: \"Opaque\": field is immutable"]
    );
}

#[test]
fn persistent_volume_claim_rules() {
    let pvc = json!({"metadata": {"name": "data"}, "spec": {}});
    assert_eq!(
        create_messages("", "PersistentVolumeClaim", pvc),
        [
            "spec.accessModes: Required value: at least 1 access mode is required",
            "spec.resources[storage]: Required value",
        ]
    );
}

#[test]
fn role_and_binding_rules() {
    let role =
        json!({"kind": "Role", "metadata": {"name": "r"}, "rules": [{"resources": ["pods"]}]});
    assert_eq!(
        create_messages("rbac.authorization.k8s.io", "Role", role),
        [
            "rules[0].verbs: Required value: verbs must contain at least one value",
            "rules[0].apiGroups: Required value: resource rules must supply at least one api group",
        ]
    );
    let rb = json!({"metadata": {"name": "b"}, "roleRef": {"kind": "Role", "name": "r"},
        "subjects": [{"kind": "Robot", "name": "x"}]});
    assert_eq!(
        create_messages("rbac.authorization.k8s.io", "RoleBinding", rb.clone()),
        [
            "subjects[0].kind: Unsupported value: \"Robot\": supported values: \"ServiceAccount\", \"User\", \"Group\""
        ]
    );
    let mut other = rb.clone();
    other["roleRef"]["name"] = json!("r2");
    other["subjects"] = json!([]);
    let mut base = rb;
    base["subjects"] = json!([]);
    assert_eq!(
        update_messages("rbac.authorization.k8s.io", "RoleBinding", base, other),
        [
            "roleRef: Invalid value: rbac.RoleRef{APIGroup:\"rbac.authorization.k8s.io\", Kind:\"Role\", Name:\"r2\"}: cannot change roleRef"
        ]
    );
}

#[test]
fn storage_class_updates_are_forbidden() {
    let old = json!({"metadata": {"name": "local"}, "provisioner": "skiff.io/local"});
    let mut new = old.clone();
    new["provisioner"] = json!("other.io/x");
    assert_eq!(
        update_messages("storage.k8s.io", "StorageClass", old, new),
        ["provisioner: Forbidden: updates to provisioner are forbidden."]
    );
}

#[test]
fn unknown_kinds_get_metadata_validation_only() {
    let obj = json!({"metadata": {"name": "Bad"}, "spec": {"anything": -1}});
    assert_eq!(
        validate("example.com", "Widget", &obj, None)
            .iter()
            .map(FieldError::message)
            .collect::<Vec<_>>(),
        [format!(
            "metadata.name: Invalid value: \"Bad\": {SUBDOMAIN_MSG}"
        )]
    );
}
