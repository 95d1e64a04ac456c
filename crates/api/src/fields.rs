//! Selectable fields per kind: which `?fieldSelector=` labels each built-in kind accepts and
//! how upstream renders each one as a string (api-facts.md §4).
//!
//! Kinds that register their own field label conversion upstream list their fields here; every
//! other kind (ConfigMap, Deployment, ReplicaSet, CRDs…) accepts only `metadata.name` and
//! `metadata.namespace`.

use serde_json::Value;

/// The labels every kind without its own conversion accepts.
const DEFAULT_FIELDS: &[&str] = &["metadata.name", "metadata.namespace"];

/// Kinds with a registered field label conversion: (group, kind, accepted labels).
static KIND_FIELDS: &[(&str, &str, &[&str])] = &[
    (
        "",
        "Pod",
        &[
            "metadata.name",
            "metadata.namespace",
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
    ),
    // Cluster-scoped kinds with a conversion reject `metadata.namespace`.
    ("", "Node", &["metadata.name", "spec.unschedulable"]),
    ("", "Namespace", &["metadata.name", "status.phase"]),
    (
        "",
        "Secret",
        &["metadata.name", "metadata.namespace", "type"],
    ),
    (
        "",
        "Service",
        &[
            "metadata.name",
            "metadata.namespace",
            "spec.clusterIP",
            "spec.type",
        ],
    ),
    (
        "",
        "ReplicationController",
        &["metadata.name", "metadata.namespace", "status.replicas"],
    ),
    (
        "",
        "Event",
        &[
            "metadata.name",
            "metadata.namespace",
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
    ),
    (
        "events.k8s.io",
        "Event",
        &[
            "metadata.name",
            "metadata.namespace",
            "regarding.kind",
            "regarding.namespace",
            "regarding.name",
            "regarding.uid",
            "regarding.apiVersion",
            "regarding.resourceVersion",
            "regarding.fieldPath",
            "reason",
            "reportingController",
            "source",
            "type",
        ],
    ),
    (
        "batch",
        "Job",
        &["metadata.name", "metadata.namespace", "status.successful"],
    ),
    (
        "certificates.k8s.io",
        "CertificateSigningRequest",
        &["metadata.name", "spec.signerName"],
    ),
];

fn kind_fields(group: &str, kind: &str) -> Option<&'static [&'static str]> {
    KIND_FIELDS
        .iter()
        .find(|(g, k, _)| *g == group && *k == kind)
        .map(|(_, _, fields)| *fields)
}

/// Field labels `group`/`kind` (group `""` for core) accepts in a field selector, canonical
/// spellings only (the Pod alias `spec.host` is accepted too, see [`canonical_field`]).
pub fn supported_fields(group: &str, kind: &str) -> &'static [&'static str] {
    kind_fields(group, kind).unwrap_or(DEFAULT_FIELDS)
}

/// Whether the kind registers its own field label conversion upstream. It decides the wording
/// of the rejection: `field label not supported: <f>` with one, `"<f>" is not a known field
/// selector: only "metadata.name", "metadata.namespace"` without.
pub fn has_field_conversion(group: &str, kind: &str) -> bool {
    kind_fields(group, kind).is_some()
}

/// The canonical label for `field` on this kind, resolving legacy aliases (`spec.host` →
/// `spec.nodeName` on Pods); `None` when the kind does not support the field.
pub fn canonical_field(group: &str, kind: &str, field: &str) -> Option<&'static str> {
    if group.is_empty() && kind == "Pod" && field == "spec.host" {
        return Some("spec.nodeName");
    }
    supported_fields(group, kind)
        .iter()
        .find(|f| **f == field)
        .copied()
}

/// The string value of selectable `field` on `obj`, rendered as upstream's field set does:
/// absent strings as `""`, booleans as `true`/`false`, integers in decimal. `None` when the
/// kind does not support the field.
pub fn field_value(group: &str, kind: &str, obj: &Value, field: &str) -> Option<String> {
    let field = canonical_field(group, kind, field)?;
    let value = match (group, kind, field) {
        (_, _, "metadata.name") => text(obj, &["metadata", "name"]),
        (_, _, "metadata.namespace") => text(obj, &["metadata", "namespace"]),
        ("", "Pod", "spec.hostNetwork") => boolean(obj, &["spec", "hostNetwork"]),
        ("", "Pod", "status.podIP") => pod_ip(obj),
        ("", "Node", "spec.unschedulable") => boolean(obj, &["spec", "unschedulable"]),
        ("", "ReplicationController", "status.replicas") => integer(obj, &["status", "replicas"]),
        ("batch", "Job", "status.successful") => integer(obj, &["status", "succeeded"]),
        ("", "Event", _) | ("events.k8s.io", "Event", _) => event_field(obj, field),
        // Every remaining label is a plain string at its own dotted path.
        _ => {
            let path: Vec<&str> = field.split('.').collect();
            text(obj, &path)
        }
    };
    Some(value)
}

fn lookup<'v>(obj: &'v Value, path: &[&str]) -> Option<&'v Value> {
    path.iter().try_fold(obj, |v, key| v.get(key))
}

fn text(obj: &Value, path: &[&str]) -> String {
    lookup(obj, path)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn boolean(obj: &Value, path: &[&str]) -> String {
    lookup(obj, path)
        .and_then(Value::as_bool)
        .unwrap_or(false)
        .to_string()
}

fn integer(obj: &Value, path: &[&str]) -> String {
    lookup(obj, path)
        .and_then(Value::as_i64)
        .unwrap_or(0)
        .to_string()
}

/// `status.podIP` is the first of `status.podIPs` (the internal type keeps only the list).
fn pod_ip(obj: &Value) -> String {
    lookup(obj, &["status", "podIPs"])
        .and_then(|ips| ips.get(0))
        .and_then(|ip| ip.get("ip"))
        .and_then(Value::as_str)
        .filter(|ip| !ip.is_empty())
        .map(str::to_owned)
        .unwrap_or_else(|| text(obj, &["status", "podIP"]))
}

/// Event labels. Both event APIs share one storage and one field set, so each label is read
/// from whichever shape the stored object has (`involvedObject` or `regarding`).
fn event_field(obj: &Value, field: &str) -> String {
    let first_of = |paths: &[&[&str]]| {
        paths
            .iter()
            .filter_map(|path| lookup(obj, path).and_then(Value::as_str))
            .find(|s| !s.is_empty())
            .unwrap_or_default()
            .to_owned()
    };
    if let Some(sub) = field
        .strip_prefix("involvedObject.")
        .or_else(|| field.strip_prefix("regarding."))
    {
        return first_of(&[&["involvedObject", sub], &["regarding", sub]]);
    }
    match field {
        "reportingComponent" | "reportingController" => {
            first_of(&[&["reportingController"], &["reportingComponent"]])
        }
        // `source.component`, falling back to the reporting controller for new-style events.
        "source" => first_of(&[
            &["source", "component"],
            &["deprecatedSource", "component"],
            &["reportingController"],
        ]),
        other => text(obj, &[other]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_default_kind_supports_name_and_namespace_only() {
        assert_eq!(
            supported_fields("apps", "ReplicaSet"),
            ["metadata.name", "metadata.namespace"]
        );
        assert_eq!(
            supported_fields("", "ConfigMap"),
            ["metadata.name", "metadata.namespace"]
        );
        assert_eq!(
            supported_fields("example.com", "Widget"),
            ["metadata.name", "metadata.namespace"]
        );
        assert!(!has_field_conversion("apps", "Deployment"));
        assert!(has_field_conversion("", "Pod"));
    }

    #[test]
    fn node_and_namespace_reject_metadata_namespace() {
        assert_eq!(canonical_field("", "Node", "metadata.namespace"), None);
        assert_eq!(canonical_field("", "Namespace", "metadata.namespace"), None);
        assert_eq!(
            canonical_field("", "Node", "spec.unschedulable"),
            Some("spec.unschedulable")
        );
    }

    #[test]
    fn pod_fields_render_like_upstream() {
        let pod = json!({
            "metadata": {"name": "p", "namespace": "ns"},
            "spec": {"restartPolicy": "Always", "schedulerName": "default-scheduler", "serviceAccountName": "default"},
            "status": {"phase": "Running", "podIP": "10.0.0.9", "podIPs": [{"ip": "10.0.0.9"}, {"ip": "fd00::9"}]}
        });
        let value = |f: &str| field_value("", "Pod", &pod, f);
        assert_eq!(value("spec.nodeName").as_deref(), Some(""));
        assert_eq!(value("spec.host").as_deref(), Some(""));
        assert_eq!(value("spec.hostNetwork").as_deref(), Some("false"));
        assert_eq!(value("spec.restartPolicy").as_deref(), Some("Always"));
        assert_eq!(
            value("spec.schedulerName").as_deref(),
            Some("default-scheduler")
        );
        assert_eq!(value("spec.serviceAccountName").as_deref(), Some("default"));
        assert_eq!(value("status.phase").as_deref(), Some("Running"));
        assert_eq!(value("status.podIP").as_deref(), Some("10.0.0.9"));
        assert_eq!(value("status.nominatedNodeName").as_deref(), Some(""));
        assert_eq!(value("metadata.namespace").as_deref(), Some("ns"));
        assert_eq!(value("status.podIPs"), None);
        assert_eq!(value("spec.containers"), None);
    }

    #[test]
    fn pod_host_network_and_node_name() {
        let pod = json!({"spec": {"hostNetwork": true, "nodeName": "n1"}});
        assert_eq!(
            field_value("", "Pod", &pod, "spec.hostNetwork").as_deref(),
            Some("true")
        );
        assert_eq!(
            field_value("", "Pod", &pod, "spec.nodeName").as_deref(),
            Some("n1")
        );
    }

    #[test]
    fn numeric_and_boolean_fields_render_as_text() {
        let node = json!({"spec": {"unschedulable": true}});
        assert_eq!(
            field_value("", "Node", &node, "spec.unschedulable").as_deref(),
            Some("true")
        );
        let rc = json!({"status": {"replicas": 3}});
        assert_eq!(
            field_value("", "ReplicationController", &rc, "status.replicas").as_deref(),
            Some("3")
        );
        let job = json!({"status": {}});
        assert_eq!(
            field_value("batch", "Job", &job, "status.successful").as_deref(),
            Some("0")
        );
        let job = json!({"status": {"succeeded": 2}});
        assert_eq!(
            field_value("batch", "Job", &job, "status.successful").as_deref(),
            Some("2")
        );
    }

    #[test]
    fn simple_string_fields() {
        let secret = json!({"type": "kubernetes.io/tls"});
        assert_eq!(
            field_value("", "Secret", &secret, "type").as_deref(),
            Some("kubernetes.io/tls")
        );
        let svc = json!({"spec": {"clusterIP": "10.96.0.1", "type": "ClusterIP"}});
        assert_eq!(
            field_value("", "Service", &svc, "spec.clusterIP").as_deref(),
            Some("10.96.0.1")
        );
        let ns = json!({"status": {"phase": "Terminating"}});
        assert_eq!(
            field_value("", "Namespace", &ns, "status.phase").as_deref(),
            Some("Terminating")
        );
        let csr = json!({"spec": {"signerName": "kubernetes.io/kube-apiserver-client"}});
        assert_eq!(
            field_value(
                "certificates.k8s.io",
                "CertificateSigningRequest",
                &csr,
                "spec.signerName"
            )
            .as_deref(),
            Some("kubernetes.io/kube-apiserver-client")
        );
    }

    #[test]
    fn event_fields_read_either_shape() {
        let core = json!({
            "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default", "uid": "u1", "fieldPath": "spec.containers{c}"},
            "reason": "Pulled", "type": "Normal", "source": {"component": "kubelet"}, "reportingComponent": "kubelet"
        });
        let value = |f: &str| field_value("", "Event", &core, f);
        assert_eq!(value("involvedObject.uid").as_deref(), Some("u1"));
        assert_eq!(
            value("involvedObject.fieldPath").as_deref(),
            Some("spec.containers{c}")
        );
        assert_eq!(value("source").as_deref(), Some("kubelet"));
        assert_eq!(value("reason").as_deref(), Some("Pulled"));
        assert_eq!(value("involvedObject.resourceVersion").as_deref(), Some(""));

        let new_style = json!({"regarding": {"kind": "Node", "name": "n1"}, "reportingController": "skiff-scheduler", "type": "Warning"});
        let value = |f: &str| field_value("events.k8s.io", "Event", &new_style, f);
        assert_eq!(value("regarding.name").as_deref(), Some("n1"));
        assert_eq!(
            value("reportingController").as_deref(),
            Some("skiff-scheduler")
        );
        assert_eq!(value("source").as_deref(), Some("skiff-scheduler"));
        assert_eq!(
            field_value("", "Event", &new_style, "involvedObject.kind").as_deref(),
            Some("Node")
        );
        assert_eq!(
            field_value("", "Event", &new_style, "reportingComponent").as_deref(),
            Some("skiff-scheduler")
        );
    }
}
