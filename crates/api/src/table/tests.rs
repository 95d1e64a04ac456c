use jiff::Timestamp;
use serde_json::{Value, json};

use super::*;

fn now() -> Timestamp {
    "2024-05-01T12:00:00Z".parse().expect("valid timestamp")
}

fn running_pod(name: &str, rv: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "resourceVersion": rv, "uid": "u-1",
            "labels": {"app": "web"}, "creationTimestamp": "2024-05-01T11:59:00Z"},
        "spec": {"containers": [{"name": "app", "image": "nginx"}]},
        "status": {"phase": "Running", "containerStatuses": [
            {"name": "app", "ready": true, "restartCount": 0, "state": {"running": {}}}]}
    })
}

#[test]
fn include_object_parses_upstream_values() {
    assert_eq!(IncludeObject::parse(None), Ok(IncludeObject::Metadata));
    assert_eq!(IncludeObject::parse(Some("")), Ok(IncludeObject::Metadata));
    assert_eq!(
        IncludeObject::parse(Some("Metadata")),
        Ok(IncludeObject::Metadata)
    );
    assert_eq!(IncludeObject::parse(Some("None")), Ok(IncludeObject::None));
    assert_eq!(
        IncludeObject::parse(Some("Object")),
        Ok(IncludeObject::Object)
    );
    let err = IncludeObject::parse(Some("metadata")).expect_err("case sensitive");
    assert_eq!(
        err.to_string(),
        r#"unrecognized includeObject value: "metadata""#
    );
}

#[test]
fn list_table_has_envelope_metadata_and_partial_object_rows() {
    let pods = [running_pod("a", "10"), running_pod("b", "11")];
    let t = table(
        "",
        "pods",
        &pods,
        now(),
        IncludeObject::Metadata,
        "12",
        Some("tok"),
        Some(3),
    );
    assert_eq!(t["kind"], "Table");
    assert_eq!(t["apiVersion"], "meta.k8s.io/v1");
    assert_eq!(
        t["metadata"],
        json!({"resourceVersion": "12", "continue": "tok", "remainingItemCount": 3})
    );
    assert_eq!(t["columnDefinitions"].as_array().map(Vec::len), Some(9));
    let rows = t["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["cells"][0], "a");
    assert_eq!(rows[0]["cells"][2], "Running");
    assert!(
        rows[0].get("conditions").is_none(),
        "running pods carry no row conditions"
    );
    assert_eq!(
        rows[1]["object"],
        json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
            "metadata": pods[1]["metadata"].clone()})
    );
}

#[test]
fn list_metadata_omits_empty_fields() {
    let t = table(
        "",
        "pods",
        &[],
        now(),
        IncludeObject::Metadata,
        "",
        None,
        None,
    );
    assert_eq!(t["metadata"], json!({}));
    assert_eq!(t["rows"], json!([]));
}

#[test]
fn include_object_none_and_object() {
    let pods = [running_pod("a", "10")];
    let none = table(
        "",
        "pods",
        &pods,
        now(),
        IncludeObject::None,
        "10",
        None,
        None,
    );
    assert_eq!(none["rows"][0]["object"], Value::Null);
    let full = table(
        "",
        "pods",
        &pods,
        now(),
        IncludeObject::Object,
        "10",
        None,
        None,
    );
    assert_eq!(full["rows"][0]["object"], pods[0]);
}

#[test]
fn finished_pods_carry_completed_row_condition() {
    let mut done = running_pod("job-x", "5");
    done["status"] = json!({"phase": "Succeeded"});
    let mut failed = running_pod("job-y", "6");
    failed["status"] = json!({"phase": "Failed"});
    let t = table(
        "",
        "pods",
        &[done, failed],
        now(),
        IncludeObject::None,
        "6",
        None,
        None,
    );
    assert_eq!(
        t["rows"][0]["conditions"],
        json!([{"type": "Completed", "status": "True", "reason": "Succeeded",
            "message": "The pod has completed successfully."}])
    );
    assert_eq!(t["rows"][1]["conditions"][0]["reason"], "Failed");
    assert_eq!(t["rows"][1]["conditions"][0]["message"], "The pod failed.");
}

#[test]
fn unknown_resource_gets_default_name_and_created_at_table() {
    let defs = column_definitions("example.com", "widgets");
    assert_eq!(defs.len(), 2);
    assert_eq!(defs[0]["name"], "Name");
    assert_eq!(defs[0]["type"], "string");
    assert_eq!(defs[0]["format"], "name");
    assert_eq!(defs[1]["name"], "Created At");
    assert_eq!(defs[1]["type"], "date");
    assert_eq!(defs[1]["format"], "");
    assert_eq!(defs[1]["priority"], 0);

    let widget = json!({"apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "w1", "creationTimestamp": "2024-03-02T04:05:06Z"}});
    assert_eq!(
        row_cells("example.com", "widgets", &widget, now()),
        vec![json!("w1"), json!("2024-03-02T04:05:06Z")]
    );
    let bare = json!({"metadata": {"name": "w2"}});
    assert_eq!(
        row_cells("", "limitranges", &bare, now())[1],
        "0001-01-01T00:00:00Z"
    );
    // Upstream's default convertor leaves rows nil for an empty list.
    let empty = table(
        "example.com",
        "widgets",
        &[],
        now(),
        IncludeObject::Metadata,
        "7",
        None,
        None,
    );
    assert_eq!(empty["rows"], Value::Null);
}

#[test]
fn watch_event_table_sends_headers_only_when_asked() {
    let pod = running_pod("a", "42");
    let first = watch_event_table("", "pods", &pod, now(), IncludeObject::Metadata, true);
    assert_eq!(first["metadata"], json!({"resourceVersion": "42"}));
    assert_eq!(first["columnDefinitions"].as_array().map(Vec::len), Some(9));
    assert_eq!(first["rows"].as_array().map(Vec::len), Some(1));
    assert_eq!(first["rows"][0]["cells"][1], "1/1");

    let later = watch_event_table("", "pods", &pod, now(), IncludeObject::Metadata, false);
    assert_eq!(later["columnDefinitions"], Value::Null);
    assert_eq!(later["rows"][0]["cells"], first["rows"][0]["cells"]);
}

#[test]
fn flow_schemas_are_listed_in_matching_order() {
    let fs = |name: &str, precedence: i64| {
        json!({"metadata": {"name": name}, "spec": {"matchingPrecedence": precedence,
            "priorityLevelConfiguration": {"name": "pl"}}})
    };
    let list = [
        fs("global-default", 9900),
        fs("b", 1000),
        fs("a", 1000),
        fs("exempt", 1),
    ];
    let t = table(
        "flowcontrol.apiserver.k8s.io",
        "flowschemas",
        &list,
        now(),
        IncludeObject::None,
        "1",
        None,
        None,
    );
    let names: Vec<&str> = t["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| r["cells"][0].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["exempt", "a", "b", "global-default"]);
}

#[test]
fn every_printer_emits_one_cell_per_column_for_an_empty_object() {
    let resources = [
        ("", "pods"),
        ("", "podtemplates"),
        ("", "replicationcontrollers"),
        ("apps", "replicasets"),
        ("apps", "deployments"),
        ("apps", "statefulsets"),
        ("apps", "daemonsets"),
        ("apps", "controllerrevisions"),
        ("batch", "jobs"),
        ("batch", "cronjobs"),
        ("policy", "poddisruptionbudgets"),
        ("autoscaling", "horizontalpodautoscalers"),
        ("", "nodes"),
        ("", "namespaces"),
        ("", "services"),
        ("", "endpoints"),
        ("discovery.k8s.io", "endpointslices"),
        ("", "events"),
        ("events.k8s.io", "events"),
        ("", "configmaps"),
        ("", "secrets"),
        ("", "serviceaccounts"),
        ("", "persistentvolumes"),
        ("", "persistentvolumeclaims"),
        ("", "resourcequotas"),
        ("", "componentstatuses"),
        ("", "limitranges"),
        ("storage.k8s.io", "storageclasses"),
        ("storage.k8s.io", "csidrivers"),
        ("storage.k8s.io", "csinodes"),
        ("storage.k8s.io", "volumeattachments"),
        ("storage.k8s.io", "csistoragecapacities"),
        ("rbac.authorization.k8s.io", "roles"),
        ("rbac.authorization.k8s.io", "rolebindings"),
        ("rbac.authorization.k8s.io", "clusterroles"),
        ("rbac.authorization.k8s.io", "clusterrolebindings"),
        ("networking.k8s.io", "ingresses"),
        ("networking.k8s.io", "ingressclasses"),
        ("networking.k8s.io", "networkpolicies"),
        ("networking.k8s.io", "servicecidrs"),
        ("networking.k8s.io", "ipaddresses"),
        ("coordination.k8s.io", "leases"),
        ("scheduling.k8s.io", "priorityclasses"),
        ("node.k8s.io", "runtimeclasses"),
        (
            "admissionregistration.k8s.io",
            "mutatingwebhookconfigurations",
        ),
        (
            "admissionregistration.k8s.io",
            "validatingwebhookconfigurations",
        ),
        (
            "admissionregistration.k8s.io",
            "validatingadmissionpolicies",
        ),
        (
            "admissionregistration.k8s.io",
            "validatingadmissionpolicybindings",
        ),
        ("certificates.k8s.io", "certificatesigningrequests"),
        ("flowcontrol.apiserver.k8s.io", "flowschemas"),
        (
            "flowcontrol.apiserver.k8s.io",
            "prioritylevelconfigurations",
        ),
        ("apiregistration.k8s.io", "apiservices"),
    ];
    for (group, resource) in resources {
        let defs = column_definitions(group, resource);
        let cells = row_cells(group, resource, &json!({}), now());
        assert_eq!(cells.len(), defs.len(), "{group}/{resource}");
        assert!(
            cells
                .iter()
                .all(|c| c.is_string() || c.is_i64() || c.is_boolean()),
            "{group}/{resource} cells are strings, integers or booleans: {cells:?}"
        );
        assert!(
            defs.iter().any(|d| d["format"] == "name"),
            "{group}/{resource}"
        );
    }
}
