//! Admission defaulting of built-in kinds: the values kube-apiserver fills in when a body is decoded
//! (create, update, and after every patch), plus the few create-time admission additions that are
//! visible in every response (ServiceAccount, Priority, DefaultTolerationSeconds, Job selectors).
//!
//! Everything here is idempotent: a defaulted object defaults to itself. Pointer-like fields are
//! filled only when absent or `null`, string fields also when `""` (upstream's "empty" test).

mod pod;
mod workloads;

use base64::Engine as _;
use serde_json::{Map, Value, json};

use pod::{default_pod, default_pod_template};
use workloads::{
    default_cron_job, default_daemon_set, default_deployment, default_job, default_replica_set,
    default_replication_controller, default_stateful_set,
};

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

pub(super) fn default_persistent_volume_claim(pvc: &mut Value) {
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
