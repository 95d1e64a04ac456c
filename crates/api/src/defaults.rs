//! Admission defaulting of built-in kinds: the values kube-apiserver fills in when a body is decoded
//! (create, update, and after every patch), plus the few create-time admission additions that are
//! visible in every response (ServiceAccount, Priority, DefaultTolerationSeconds, Job selectors).
//!
//! Everything here is idempotent: a defaulted object defaults to itself. Pointer-like fields are
//! filled only when absent or `null`, string fields also when `""` (upstream's "empty" test).

use base64::Engine as _;
use serde_json::{Map, Value, json};

/// Seconds the DefaultTolerationSeconds admission plugin gives the not-ready/unreachable taints.
const DEFAULT_TOLERATION_SECONDS: i64 = 300;

/// Priority values of the two built-in PriorityClasses, resolved here because there is no other
/// priority admission step in Skiff.
const SYSTEM_PRIORITY_CLASSES: [(&str, i64); 2] = [
    ("system-cluster-critical", 2_000_000_000),
    ("system-node-critical", 2_000_001_000),
];

/// Fills in upstream's defaults for an object of `group`/`kind` (group `""` is core).
///
/// Unknown kinds (custom resources) are left alone. The object may be partial; missing parents are
/// created only where upstream's types would create them (non-pointer structs).
pub fn apply_defaults(group: &str, kind: &str, obj: &mut Value) {
    if !obj.is_object() {
        return;
    }
    match (group, kind) {
        ("", "Pod") => default_pod(obj),
        ("", "PodTemplate") => {
            if let Some(t) = obj.get_mut("template") {
                default_pod_template(t);
            }
        }
        ("", "ReplicationController") => default_replication_controller(obj),
        ("", "Service") => default_service(obj),
        ("", "Secret") => default_secret(obj),
        ("", "Namespace") => default_namespace(obj),
        ("", "PersistentVolume") => default_persistent_volume(obj),
        ("", "PersistentVolumeClaim") => default_persistent_volume_claim(obj),
        ("", "Endpoints") => default_endpoints(obj),
        ("", "LimitRange") => default_limit_range(obj),
        ("", "Node") => default_node(obj),
        ("apps", "Deployment") => default_deployment(obj),
        ("apps", "ReplicaSet") => default_replica_set(obj),
        ("apps", "StatefulSet") => default_stateful_set(obj),
        ("apps", "DaemonSet") => default_daemon_set(obj),
        ("batch", "Job") => default_job(obj),
        ("batch", "CronJob") => default_cron_job(obj),
        ("autoscaling", "HorizontalPodAutoscaler") => default_hpa(obj),
        ("networking.k8s.io", "NetworkPolicy") => default_network_policy(obj),
        ("networking.k8s.io", "IngressClass") => default_ingress_class(obj),
        ("storage.k8s.io", "StorageClass") => {
            set_missing(obj, "reclaimPolicy", json!("Delete"));
            set_missing(obj, "volumeBindingMode", json!("Immediate"));
        }
        ("storage.k8s.io", "CSIDriver") => default_csi_driver(obj),
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => {
            default_role_binding(obj)
        }
        ("scheduling.k8s.io", "PriorityClass") => {
            set_missing(obj, "preemptionPolicy", json!("PreemptLowerPriority"));
        }
        (
            "admissionregistration.k8s.io",
            "ValidatingWebhookConfiguration" | "MutatingWebhookConfiguration",
        ) => default_webhook_configuration(obj, kind == "MutatingWebhookConfiguration"),
        ("discovery.k8s.io", "EndpointSlice") => {
            for port in array_items(obj, "ports") {
                set_missing(port, "protocol", json!("TCP"));
                set_missing(port, "name", json!(""));
            }
        }
        _ => {}
    }
}

/// Generates a Job's selector and pod-template labels from its uid, as the Job registry strategy
/// does on create unless `spec.manualSelector` is true.
///
/// Adds template labels `batch.kubernetes.io/controller-uid`, `controller-uid`,
/// `batch.kubernetes.io/job-name`, `job-name` (only where missing: a user-set conflicting label is
/// left for validation to reject) and selector `matchLabels[batch.kubernetes.io/controller-uid]`.
pub fn job_selector_defaults(obj: &mut Value, uid: &str) {
    let manual = obj
        .pointer("/spec/manualSelector")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if manual {
        return;
    }
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let Some(spec) = child_obj(obj, "spec") else {
        return;
    };
    let Some(template) = child_obj(spec, "template") else {
        return;
    };
    if let Some(labels) = child_obj(template, "metadata").and_then(|m| child_obj(m, "labels")) {
        for key in ["job-name", "batch.kubernetes.io/job-name"] {
            set_missing(labels, key, json!(name));
        }
        for key in ["controller-uid", "batch.kubernetes.io/controller-uid"] {
            set_missing(labels, key, json!(uid));
        }
    }
    if let Some(match_labels) =
        child_obj(spec, "selector").and_then(|s| child_obj(s, "matchLabels"))
    {
        set_missing(
            match_labels,
            "batch.kubernetes.io/controller-uid",
            json!(uid),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// JSON helpers

/// Whether a field counts as unset for defaulting: absent, `null`, or an empty string.
fn is_unset(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(_) => false,
    }
}

/// Sets `key` to `value` when the field is unset; no-op when `obj` is not an object.
fn set_missing(obj: &mut Value, key: &str, value: Value) {
    if let Some(map) = obj.as_object_mut()
        && is_unset(map.get(key))
    {
        map.insert(key.to_owned(), value);
    }
}

/// The object at `key`, created as `{}` when absent or `null`; `None` if it holds a non-object.
fn child_obj<'a>(obj: &'a mut Value, key: &str) -> Option<&'a mut Value> {
    let map = obj.as_object_mut()?;
    let slot = map
        .entry(key.to_owned())
        .or_insert_with(|| Value::Object(Map::new()));
    if slot.is_null() {
        *slot = Value::Object(Map::new());
    }
    slot.is_object().then_some(slot)
}

/// The object at `key` only if it already exists (pointer fields that must stay nil).
fn existing_obj<'a>(obj: &'a mut Value, key: &str) -> Option<&'a mut Value> {
    obj.get_mut(key).filter(|v| v.is_object())
}

/// The elements of the array at `key` (empty when absent or not an array).
fn array_items<'a>(obj: &'a mut Value, key: &str) -> impl Iterator<Item = &'a mut Value> {
    obj.get_mut(key)
        .and_then(Value::as_array_mut)
        .into_iter()
        .flat_map(|a| a.iter_mut())
}

fn str_at<'a>(obj: &'a Value, key: &str) -> Option<&'a str> {
    obj.get(key).and_then(Value::as_str)
}

fn is_empty_map(v: Option<&Value>) -> bool {
    v.and_then(Value::as_object).is_none_or(Map::is_empty)
}

// ---------------------------------------------------------------------------------------------
// Pods

fn default_pod(pod: &mut Value) {
    let Some(spec) = child_obj(pod, "spec") else {
        return;
    };
    default_pod_spec(spec);

    // Pod-only defaults (SetDefaults_Pod), not applied to templates.
    for key in ["containers", "initContainers"] {
        for c in array_items(spec, key) {
            default_requests_from_limits(c);
        }
    }
    set_missing(spec, "enableServiceLinks", json!(true));
    if spec.get("hostNetwork").and_then(Value::as_bool) == Some(true) {
        for key in ["containers", "initContainers"] {
            for c in array_items(spec, key) {
                for port in array_items(c, "ports") {
                    let host = port.get("hostPort").and_then(Value::as_i64).unwrap_or(0);
                    if host == 0
                        && let Some(cp) = port.get("containerPort").cloned()
                    {
                        port["hostPort"] = cp;
                    }
                }
            }
        }
    }

    // ServiceAccount admission.
    let sa = str_at(spec, "serviceAccountName")
        .filter(|s| !s.is_empty())
        .or_else(|| str_at(spec, "serviceAccount").filter(|s| !s.is_empty()))
        .unwrap_or("default")
        .to_owned();
    set_missing(spec, "serviceAccountName", json!(sa));
    set_missing(spec, "serviceAccount", json!(sa));

    // Priority admission, for the built-in classes or no class at all.
    if is_unset(spec.get("priority")) {
        let class = str_at(spec, "priorityClassName").unwrap_or_default();
        let value = if class.is_empty() {
            Some(0)
        } else {
            SYSTEM_PRIORITY_CLASSES
                .iter()
                .find(|(n, _)| *n == class)
                .map(|(_, v)| *v)
        };
        if let Some(v) = value {
            spec["priority"] = json!(v);
        }
    }
    set_missing(spec, "preemptionPolicy", json!("PreemptLowerPriority"));

    // DefaultTolerationSeconds admission.
    default_toleration_seconds(spec);
}

fn default_toleration_seconds(spec: &mut Value) {
    let Some(map) = spec.as_object_mut() else {
        return;
    };
    let list = map
        .entry("tolerations")
        .or_insert_with(|| Value::Array(Vec::new()));
    if list.is_null() {
        *list = Value::Array(Vec::new());
    }
    let Some(list) = list.as_array_mut() else {
        return;
    };
    for key in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ] {
        // Upstream skips the addition when any toleration already tolerates the NoExecute taint.
        let tolerated = list.iter().any(|t| {
            let effect = str_at(t, "effect").unwrap_or_default();
            let tkey = str_at(t, "key").unwrap_or_default();
            (effect.is_empty() || effect == "NoExecute") && (tkey == key || tkey.is_empty())
        });
        if !tolerated {
            list.push(json!({
                "key": key,
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": DEFAULT_TOLERATION_SECONDS,
            }));
        }
    }
}

fn default_requests_from_limits(container: &mut Value) {
    let Some(limits) = container
        .pointer("/resources/limits")
        .and_then(Value::as_object)
        .cloned()
    else {
        return;
    };
    if limits.is_empty() {
        return;
    }
    let Some(resources) = child_obj(container, "resources") else {
        return;
    };
    let Some(requests) = child_obj(resources, "requests").and_then(Value::as_object_mut) else {
        return;
    };
    for (name, q) in limits {
        requests.entry(name).or_insert(q);
    }
}

/// Applies PodTemplateSpec defaults (the PodSpec defaults of its `spec`).
fn default_pod_template(template: &mut Value) {
    if let Some(spec) = child_obj(template, "spec") {
        default_pod_spec(spec);
    }
}

fn default_pod_spec(spec: &mut Value) {
    set_missing(spec, "dnsPolicy", json!("ClusterFirst"));
    set_missing(spec, "restartPolicy", json!("Always"));
    set_missing(spec, "terminationGracePeriodSeconds", json!(30));
    set_missing(spec, "schedulerName", json!("default-scheduler"));
    let _ = child_obj(spec, "securityContext");
    for key in ["containers", "initContainers", "ephemeralContainers"] {
        for c in array_items(spec, key) {
            default_container(c);
        }
    }
    for vol in array_items(spec, "volumes") {
        default_volume(vol);
    }
}

fn default_container(c: &mut Value) {
    set_missing(c, "terminationMessagePath", json!("/dev/termination-log"));
    set_missing(c, "terminationMessagePolicy", json!("File"));
    let image = str_at(c, "image").unwrap_or_default().to_owned();
    set_missing(c, "imagePullPolicy", json!(pull_policy_for(&image)));
    let _ = child_obj(c, "resources");
    for port in array_items(c, "ports") {
        set_missing(port, "protocol", json!("TCP"));
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = existing_obj(c, probe) {
            default_probe(p);
        }
    }
    if let Some(lifecycle) = existing_obj(c, "lifecycle") {
        for hook in ["postStart", "preStop"] {
            if let Some(h) = existing_obj(lifecycle, hook) {
                default_handler(h);
            }
        }
    }
    for env in array_items(c, "env") {
        if let Some(field_ref) = env
            .get_mut("valueFrom")
            .and_then(|vf| existing_obj(vf, "fieldRef"))
        {
            set_missing(field_ref, "apiVersion", json!("v1"));
        }
    }
}

/// `Always` for `:latest` or untagged images, `IfNotPresent` otherwise (digest-only references
/// have no tag and are pinned, so they get `IfNotPresent`).
fn pull_policy_for(image: &str) -> &'static str {
    let (name, has_digest) = match image.split_once('@') {
        Some((n, _)) => (n, true),
        None => (image, false),
    };
    let last = name.rsplit('/').next().unwrap_or(name);
    match last.split_once(':') {
        Some((_, "latest")) => "Always",
        Some(_) => "IfNotPresent",
        None if has_digest => "IfNotPresent",
        None => "Always",
    }
}

fn default_probe(probe: &mut Value) {
    set_missing(probe, "timeoutSeconds", json!(1));
    set_missing(probe, "periodSeconds", json!(10));
    set_missing(probe, "successThreshold", json!(1));
    set_missing(probe, "failureThreshold", json!(3));
    default_handler(probe);
}

fn default_handler(handler: &mut Value) {
    if let Some(http) = existing_obj(handler, "httpGet") {
        set_missing(http, "path", json!("/"));
        set_missing(http, "scheme", json!("HTTP"));
    }
    if let Some(grpc) = existing_obj(handler, "grpc")
        && let Some(m) = grpc.as_object_mut()
    {
        // A nil *string becomes a pointer to "": present even when empty.
        if m.get("service").is_none_or(Value::is_null) {
            m.insert("service".into(), json!(""));
        }
    }
}

fn default_volume(vol: &mut Value) {
    let Some(map) = vol.as_object_mut() else {
        return;
    };
    if !map.keys().any(|k| k != "name") {
        map.insert("emptyDir".into(), json!({}));
    }
    if let Some(host_path) = existing_obj(vol, "hostPath")
        && let Some(m) = host_path.as_object_mut()
        && m.get("type").is_none_or(Value::is_null)
    {
        m.insert("type".into(), json!(""));
    }
    for source in ["configMap", "secret", "downwardAPI", "projected"] {
        if let Some(s) = existing_obj(vol, source) {
            set_missing(s, "defaultMode", json!(420));
        }
    }
    if let Some(d) = existing_obj(vol, "downwardAPI") {
        default_downward_items(d);
    }
    if let Some(p) = existing_obj(vol, "projected") {
        for source in array_items(p, "sources") {
            if let Some(token) = existing_obj(source, "serviceAccountToken") {
                set_missing(token, "expirationSeconds", json!(3600));
            }
            if let Some(d) = existing_obj(source, "downwardAPI") {
                default_downward_items(d);
            }
        }
    }
    if let Some(eph) = existing_obj(vol, "ephemeral")
        && let Some(spec) = eph
            .get_mut("volumeClaimTemplate")
            .and_then(|t| existing_obj(t, "spec"))
    {
        set_missing(spec, "volumeMode", json!("Filesystem"));
    }
    if let Some(rbd) = existing_obj(vol, "rbd") {
        set_missing(rbd, "pool", json!("rbd"));
        set_missing(rbd, "user", json!("admin"));
        set_missing(rbd, "keyring", json!("/etc/ceph/keyring"));
    }
    if let Some(iscsi) = existing_obj(vol, "iscsi") {
        set_missing(iscsi, "iscsiInterface", json!("default"));
    }
}

fn default_downward_items(d: &mut Value) {
    for item in array_items(d, "items") {
        if let Some(field_ref) = existing_obj(item, "fieldRef") {
            set_missing(field_ref, "apiVersion", json!("v1"));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Workloads

fn default_replication_controller(rc: &mut Value) {
    let template_labels = rc.pointer("/spec/template/metadata/labels").cloned();
    if let Some(labels) = template_labels.filter(|l| !is_empty_map(Some(l))) {
        if let Some(spec) = child_obj(rc, "spec")
            && is_empty_map(spec.get("selector"))
        {
            spec["selector"] = labels.clone();
        }
        if let Some(meta) = child_obj(rc, "metadata")
            && is_empty_map(meta.get("labels"))
        {
            meta["labels"] = labels;
        }
    }
    let Some(spec) = child_obj(rc, "spec") else {
        return;
    };
    set_missing(spec, "replicas", json!(1));
    if let Some(t) = existing_obj(spec, "template") {
        default_pod_template(t);
    }
}

fn default_deployment(d: &mut Value) {
    let Some(spec) = child_obj(d, "spec") else {
        return;
    };
    set_missing(spec, "replicas", json!(1));
    if let Some(strategy) = child_obj(spec, "strategy") {
        set_missing(strategy, "type", json!("RollingUpdate"));
        if str_at(strategy, "type") == Some("RollingUpdate")
            && let Some(ru) = child_obj(strategy, "rollingUpdate")
        {
            set_missing(ru, "maxUnavailable", json!("25%"));
            set_missing(ru, "maxSurge", json!("25%"));
        }
    }
    set_missing(spec, "revisionHistoryLimit", json!(10));
    set_missing(spec, "progressDeadlineSeconds", json!(600));
    if let Some(t) = child_obj(spec, "template") {
        default_pod_template(t);
    }
}

fn default_replica_set(rs: &mut Value) {
    let Some(spec) = child_obj(rs, "spec") else {
        return;
    };
    set_missing(spec, "replicas", json!(1));
    if let Some(t) = child_obj(spec, "template") {
        default_pod_template(t);
    }
}

fn default_stateful_set(sts: &mut Value) {
    let Some(spec) = child_obj(sts, "spec") else {
        return;
    };
    set_missing(spec, "replicas", json!(1));
    set_missing(spec, "podManagementPolicy", json!("OrderedReady"));
    if let Some(strategy) = child_obj(spec, "updateStrategy") {
        set_missing(strategy, "type", json!("RollingUpdate"));
        if str_at(strategy, "type") == Some("RollingUpdate")
            && let Some(ru) = child_obj(strategy, "rollingUpdate")
        {
            set_missing(ru, "partition", json!(0));
        }
    }
    set_missing(spec, "revisionHistoryLimit", json!(10));
    if let Some(policy) = child_obj(spec, "persistentVolumeClaimRetentionPolicy") {
        set_missing(policy, "whenDeleted", json!("Retain"));
        set_missing(policy, "whenScaled", json!("Retain"));
    }
    for claim in array_items(spec, "volumeClaimTemplates") {
        default_persistent_volume_claim(claim);
    }
    if let Some(t) = child_obj(spec, "template") {
        default_pod_template(t);
    }
}

fn default_daemon_set(ds: &mut Value) {
    let Some(spec) = child_obj(ds, "spec") else {
        return;
    };
    if let Some(strategy) = child_obj(spec, "updateStrategy") {
        set_missing(strategy, "type", json!("RollingUpdate"));
        if str_at(strategy, "type") == Some("RollingUpdate")
            && let Some(ru) = child_obj(strategy, "rollingUpdate")
        {
            set_missing(ru, "maxUnavailable", json!(1));
            set_missing(ru, "maxSurge", json!(0));
        }
    }
    set_missing(spec, "revisionHistoryLimit", json!(10));
    if let Some(t) = child_obj(spec, "template") {
        default_pod_template(t);
    }
}

fn default_job(job: &mut Value) {
    let template_labels = job.pointer("/spec/template/metadata/labels").cloned();
    if let Some(labels) = template_labels.filter(|l| !is_empty_map(Some(l)))
        && let Some(meta) = child_obj(job, "metadata")
        && is_empty_map(meta.get("labels"))
    {
        meta["labels"] = labels;
    }
    let Some(spec) = child_obj(job, "spec") else {
        return;
    };
    if is_unset(spec.get("completions")) && is_unset(spec.get("parallelism")) {
        spec["completions"] = json!(1);
        spec["parallelism"] = json!(1);
    }
    set_missing(spec, "parallelism", json!(1));
    let backoff = if is_unset(spec.get("backoffLimitPerIndex")) {
        6
    } else {
        i64::from(i32::MAX)
    };
    set_missing(spec, "backoffLimit", json!(backoff));
    set_missing(spec, "completionMode", json!("NonIndexed"));
    set_missing(spec, "suspend", json!(false));
    set_missing(spec, "manualSelector", json!(false));
    let replacement = if is_unset(spec.get("podFailurePolicy")) {
        "TerminatingOrFailed"
    } else {
        "Failed"
    };
    set_missing(spec, "podReplacementPolicy", json!(replacement));
    if let Some(pfp) = existing_obj(spec, "podFailurePolicy") {
        for rule in array_items(pfp, "rules") {
            for cond in array_items(rule, "onPodConditions") {
                set_missing(cond, "status", json!("True"));
            }
        }
    }
    if let Some(t) = child_obj(spec, "template") {
        default_pod_template(t);
    }
}

fn default_cron_job(cj: &mut Value) {
    let Some(spec) = child_obj(cj, "spec") else {
        return;
    };
    set_missing(spec, "concurrencyPolicy", json!("Allow"));
    set_missing(spec, "suspend", json!(false));
    set_missing(spec, "successfulJobsHistoryLimit", json!(3));
    set_missing(spec, "failedJobsHistoryLimit", json!(1));
    // SetDefaults_Job is registered for Job only: a job template gets PodSpec defaults alone.
    if let Some(t) = child_obj(spec, "jobTemplate")
        .and_then(|jt| child_obj(jt, "spec"))
        .and_then(|js| child_obj(js, "template"))
    {
        default_pod_template(t);
    }
}

// ---------------------------------------------------------------------------------------------
// Other core kinds

fn default_service(svc: &mut Value) {
    let Some(spec) = child_obj(svc, "spec") else {
        return;
    };
    set_missing(spec, "type", json!("ClusterIP"));
    let svc_type = str_at(spec, "type").unwrap_or("ClusterIP").to_owned();
    set_missing(spec, "sessionAffinity", json!("None"));
    match str_at(spec, "sessionAffinity") {
        Some("None") => {
            if let Some(m) = spec.as_object_mut() {
                m.remove("sessionAffinityConfig");
            }
        }
        Some("ClientIP") => {
            if let Some(client_ip) =
                child_obj(spec, "sessionAffinityConfig").and_then(|c| child_obj(c, "clientIP"))
            {
                set_missing(client_ip, "timeoutSeconds", json!(10800));
            }
        }
        _ => {}
    }
    for port in array_items(spec, "ports") {
        set_missing(port, "protocol", json!("TCP"));
        let target_unset = match port.get("targetPort") {
            None | Some(Value::Null) => true,
            Some(Value::Number(n)) => n.as_i64() == Some(0),
            Some(Value::String(s)) => s.is_empty(),
            Some(_) => false,
        };
        if target_unset && let Some(p) = port.get("port").cloned() {
            port["targetPort"] = p;
        }
    }
    let has_external_ips = spec
        .get("externalIPs")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    if svc_type == "NodePort" || svc_type == "LoadBalancer" || has_external_ips {
        set_missing(spec, "externalTrafficPolicy", json!("Cluster"));
    }
    if svc_type != "ExternalName" {
        set_missing(spec, "internalTrafficPolicy", json!("Cluster"));
    }
    if svc_type == "LoadBalancer" {
        set_missing(spec, "allocateLoadBalancerNodePorts", json!(true));
    }
    if svc_type != "ExternalName" {
        let headless = str_at(spec, "clusterIP") == Some("None");
        let selectorless = is_empty_map(spec.get("selector"));
        let dual = headless && selectorless;
        set_missing(
            spec,
            "ipFamilyPolicy",
            json!(if dual {
                "RequireDualStack"
            } else {
                "SingleStack"
            }),
        );
        let families_unset = spec
            .get("ipFamilies")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty);
        if families_unset {
            let from_ips: Vec<&str> = spec
                .get("clusterIPs")
                .and_then(Value::as_array)
                .map(|ips| {
                    ips.iter()
                        .filter_map(Value::as_str)
                        .filter(|ip| *ip != "None" && !ip.is_empty())
                        .map(|ip| if ip.contains(':') { "IPv6" } else { "IPv4" })
                        .collect()
                })
                .unwrap_or_default();
            let families = if !from_ips.is_empty() {
                json!(from_ips)
            } else if headless
                && selectorless
                && str_at(spec, "ipFamilyPolicy") != Some("SingleStack")
            {
                json!(["IPv4", "IPv6"])
            } else {
                json!(["IPv4"])
            };
            spec["ipFamilies"] = families;
        }
    }
    if svc_type == "LoadBalancer"
        && let Some(ingress) = svc
            .pointer_mut("/status/loadBalancer/ingress")
            .and_then(Value::as_array_mut)
    {
        for ing in ingress {
            if !is_unset(ing.get("ip")) {
                set_missing(ing, "ipMode", json!("VIP"));
            }
        }
    }
}

fn default_secret(secret: &mut Value) {
    set_missing(secret, "type", json!("Opaque"));
    let Some(map) = secret.as_object_mut() else {
        return;
    };
    // stringData is write-only: merged into data (winning over it) and never stored.
    if let Some(Value::Object(string_data)) = map.remove("stringData") {
        let data = map
            .entry("data")
            .or_insert_with(|| Value::Object(Map::new()));
        if data.is_null() {
            *data = Value::Object(Map::new());
        }
        if let Some(data) = data.as_object_mut() {
            for (k, v) in string_data {
                let text = v.as_str().unwrap_or_default();
                let encoded = base64::engine::general_purpose::STANDARD.encode(text);
                data.insert(k, Value::String(encoded));
            }
        }
    }
}

fn default_namespace(ns: &mut Value) {
    let name = ns
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if !name.is_empty()
        && let Some(labels) = child_obj(ns, "metadata").and_then(|m| child_obj(m, "labels"))
    {
        // The label always mirrors the name, even if a client set something else.
        labels["kubernetes.io/metadata.name"] = json!(name);
    }
    if let Some(spec) = child_obj(ns, "spec")
        && spec.get("finalizers").is_none_or(Value::is_null)
    {
        spec["finalizers"] = json!(["kubernetes"]);
    }
    if let Some(status) = child_obj(ns, "status") {
        set_missing(status, "phase", json!("Active"));
    }
}

fn default_persistent_volume(pv: &mut Value) {
    if let Some(spec) = child_obj(pv, "spec") {
        set_missing(spec, "persistentVolumeReclaimPolicy", json!("Retain"));
        set_missing(spec, "volumeMode", json!("Filesystem"));
    }
    if let Some(status) = child_obj(pv, "status") {
        set_missing(status, "phase", json!("Pending"));
    }
}

fn default_persistent_volume_claim(pvc: &mut Value) {
    if let Some(spec) = child_obj(pvc, "spec") {
        set_missing(spec, "volumeMode", json!("Filesystem"));
    }
    if let Some(status) = child_obj(pvc, "status") {
        set_missing(status, "phase", json!("Pending"));
    }
}

fn default_endpoints(ep: &mut Value) {
    for subset in array_items(ep, "subsets") {
        for port in array_items(subset, "ports") {
            set_missing(port, "protocol", json!("TCP"));
        }
    }
}

fn default_limit_range(lr: &mut Value) {
    let Some(spec) = existing_obj(lr, "spec") else {
        return;
    };
    for item in array_items(spec, "limits") {
        if str_at(item, "type") != Some("Container") {
            continue;
        }
        let max = item.get("max").and_then(Value::as_object).cloned();
        let min = item.get("min").and_then(Value::as_object).cloned();
        if let Some(max) = max
            && let Some(default) = child_obj(item, "default").and_then(Value::as_object_mut)
        {
            for (k, v) in max {
                default.entry(k).or_insert(v);
            }
        }
        let default = item.get("default").and_then(Value::as_object).cloned();
        if let Some(req) = child_obj(item, "defaultRequest").and_then(Value::as_object_mut) {
            for (k, v) in default.into_iter().flatten() {
                req.entry(k).or_insert(v);
            }
            for (k, v) in min.into_iter().flatten() {
                req.entry(k).or_insert(v);
            }
        }
        for key in ["default", "defaultRequest"] {
            if is_empty_map(item.get(key))
                && let Some(m) = item.as_object_mut()
            {
                m.remove(key);
            }
        }
    }
}

fn default_node(node: &mut Value) {
    let Some(status) = existing_obj(node, "status") else {
        return;
    };
    if status.get("allocatable").is_none_or(Value::is_null)
        && let Some(capacity) = status.get("capacity").cloned()
    {
        status["allocatable"] = capacity;
    }
}

// ---------------------------------------------------------------------------------------------
// Other groups

fn default_hpa(hpa: &mut Value) {
    let Some(spec) = child_obj(hpa, "spec") else {
        return;
    };
    set_missing(spec, "minReplicas", json!(1));
    let no_metrics = spec
        .get("metrics")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty);
    if no_metrics {
        spec["metrics"] = json!([{
            "type": "Resource",
            "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}},
        }]);
    }
    if let Some(behavior) = existing_obj(spec, "behavior") {
        if behavior.get("scaleUp").is_none_or(Value::is_null) {
            behavior["scaleUp"] = json!({
                "stabilizationWindowSeconds": 0,
                "selectPolicy": "Max",
                "policies": [
                    {"type": "Pods", "value": 4, "periodSeconds": 15},
                    {"type": "Percent", "value": 100, "periodSeconds": 15},
                ],
            });
        }
        if behavior.get("scaleDown").is_none_or(Value::is_null) {
            behavior["scaleDown"] = json!({
                "selectPolicy": "Max",
                "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}],
            });
        }
    }
}

fn default_network_policy(np: &mut Value) {
    let Some(spec) = child_obj(np, "spec") else {
        return;
    };
    let no_types = spec
        .get("policyTypes")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty);
    if no_types {
        let has_egress = spec
            .get("egress")
            .and_then(Value::as_array)
            .is_some_and(|e| !e.is_empty());
        spec["policyTypes"] = if has_egress {
            json!(["Ingress", "Egress"])
        } else {
            json!(["Ingress"])
        };
    }
    for direction in ["ingress", "egress"] {
        for rule in array_items(spec, direction) {
            for port in array_items(rule, "ports") {
                set_missing(port, "protocol", json!("TCP"));
            }
        }
    }
}

fn default_ingress_class(ic: &mut Value) {
    if let Some(params) = ic
        .get_mut("spec")
        .and_then(|s| existing_obj(s, "parameters"))
    {
        set_missing(params, "scope", json!("Cluster"));
    }
}

fn default_csi_driver(d: &mut Value) {
    let Some(spec) = child_obj(d, "spec") else {
        return;
    };
    set_missing(spec, "attachRequired", json!(true));
    set_missing(spec, "podInfoOnMount", json!(false));
    set_missing(spec, "storageCapacity", json!(false));
    set_missing(spec, "fsGroupPolicy", json!("ReadWriteOnceWithFSType"));
    set_missing(spec, "requiresRepublish", json!(false));
    let no_modes = spec
        .get("volumeLifecycleModes")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty);
    if no_modes {
        spec["volumeLifecycleModes"] = json!(["Persistent"]);
    }
}

fn default_role_binding(rb: &mut Value) {
    if let Some(role_ref) = existing_obj(rb, "roleRef") {
        set_missing(role_ref, "apiGroup", json!("rbac.authorization.k8s.io"));
    }
    for subject in array_items(rb, "subjects") {
        match str_at(subject, "kind") {
            Some("User" | "Group") => {
                set_missing(subject, "apiGroup", json!("rbac.authorization.k8s.io"));
            }
            Some("ServiceAccount") => {
                if let Some(m) = subject.as_object_mut()
                    && m.get("apiGroup").is_none_or(Value::is_null)
                {
                    m.insert("apiGroup".into(), json!(""));
                }
            }
            _ => {}
        }
    }
}

fn default_webhook_configuration(cfg: &mut Value, mutating: bool) {
    for hook in array_items(cfg, "webhooks") {
        set_missing(hook, "failurePolicy", json!("Fail"));
        set_missing(hook, "matchPolicy", json!("Equivalent"));
        let _ = child_obj(hook, "namespaceSelector");
        let _ = child_obj(hook, "objectSelector");
        set_missing(hook, "timeoutSeconds", json!(10));
        if mutating {
            set_missing(hook, "reinvocationPolicy", json!("Never"));
        }
        for rule in array_items(hook, "rules") {
            set_missing(rule, "scope", json!("*"));
        }
        if let Some(service) = hook
            .get_mut("clientConfig")
            .and_then(|c| existing_obj(c, "service"))
        {
            set_missing(service, "port", json!(443));
        }
    }
}

#[cfg(test)]
mod tests;
