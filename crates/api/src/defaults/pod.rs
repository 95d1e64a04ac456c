//! Pod, PodSpec and container defaults, plus the create-time admission additions on Pods
//! (ServiceAccount, Priority, DefaultTolerationSeconds).

use serde_json::{Value, json};

use super::{array_items, child_obj, existing_obj, is_unset, set_missing, str_at};

/// Seconds the DefaultTolerationSeconds admission plugin gives the not-ready/unreachable taints.
const DEFAULT_TOLERATION_SECONDS: i64 = 300;

/// Priority values of the two built-in PriorityClasses, resolved here because there is no other
/// priority admission step in Skiff.
const SYSTEM_PRIORITY_CLASSES: [(&str, i64); 2] = [
    ("system-cluster-critical", 2_000_000_000),
    ("system-node-critical", 2_000_001_000),
];

pub(super) fn default_pod(pod: &mut Value) {
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
pub(super) fn default_pod_template(template: &mut Value) {
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
pub(super) fn pull_policy_for(image: &str) -> &'static str {
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
