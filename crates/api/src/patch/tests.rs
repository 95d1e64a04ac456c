//! Patch tests: the worked examples of api-facts.md §2.2 and the bodies kubectl sends.

use serde_json::{Value, json};

use super::*;

fn smp(group: &str, kind: &str, live: Value, patch: Value) -> Value {
    strategic_merge(group, kind, &live, &patch).expect("patch applies")
}

fn pod_smp(live: Value, patch: Value) -> Value {
    smp("", "Pod", live, patch)
}

fn names(list: &Value) -> Vec<&str> {
    list.as_array()
        .expect("list")
        .iter()
        .map(|c| c["name"].as_str().expect("name"))
        .collect()
}

fn three_containers() -> Value {
    json!({"spec": {"containers": [
        {"name": "a", "image": "ia"},
        {"name": "b", "image": "ib"},
        {"name": "c", "image": "ic"}
    ]}})
}

// ---- JSON patch / merge patch --------------------------------------------------------------

#[test]
fn json_patch_replaces_and_adds() {
    let live = json!({"spec": {"replicas": 1}, "metadata": {"labels": {"a": "1"}}});
    let patch = json!([
        {"op": "replace", "path": "/spec/replicas", "value": 3},
        {"op": "add", "path": "/metadata/labels/b", "value": "2"}
    ]);
    let out = json_patch(&live, &patch).expect("applies");
    assert_eq!(
        out,
        json!({"spec": {"replicas": 3}, "metadata": {"labels": {"a": "1", "b": "2"}}})
    );
}

#[test]
fn json_patch_test_failure_is_an_error_and_applies_nothing() {
    let live = json!({"spec": {"replicas": 1}});
    let patch = json!([
        {"op": "replace", "path": "/spec/replicas", "value": 3},
        {"op": "test", "path": "/spec/replicas", "value": 5}
    ]);
    let err = json_patch(&live, &patch).expect_err("test fails");
    assert_eq!(
        err.to_string(),
        "testing value /spec/replicas failed: test failed"
    );
    assert_eq!(err.status_code(), 422);
}

#[test]
fn json_patch_bad_path_names_the_path() {
    let live = json!({"spec": {}});
    let err = json_patch(
        &live,
        &json!([{"op": "replace", "path": "/spec/nope", "value": 1}]),
    )
    .expect_err("missing");
    assert_eq!(
        err.to_string(),
        "replace operation does not apply: doc is missing path: /spec/nope: missing value"
    );
    let err = json_patch(&live, &json!([{"op": "remove", "path": "/x/y"}])).expect_err("missing");
    assert!(
        err.to_string()
            .starts_with("remove operation does not apply"),
        "{err}"
    );
}

#[test]
fn json_patch_that_is_not_a_list_of_operations_is_a_bad_request() {
    let err = json_patch(&json!({}), &json!({"op": "add"})).expect_err("not a list");
    assert_eq!(err.status_code(), 400);
    let err =
        json_patch(&json!({}), &json!([{"op": "frobnicate", "path": "/a"}])).expect_err("bad op");
    assert!(matches!(err, Error::InvalidJsonPatch { .. }));
}

#[test]
fn merge_patch_null_deletes_and_lists_replace() {
    let live = json!({"metadata": {"labels": {"x": "1", "y": "2"}}, "spec": {"containers": [{"name": "a"}, {"name": "b"}]}});
    let patch = json!({"metadata": {"labels": {"x": "9", "y": null, "z": "3"}}, "spec": {"containers": [{"name": "c"}]}});
    let out = merge_patch(&live, &patch).expect("applies");
    assert_eq!(out["metadata"]["labels"], json!({"x": "9", "z": "3"}));
    assert_eq!(out["spec"]["containers"], json!([{"name": "c"}]));
}

#[test]
fn merge_patch_strips_nulls_from_new_maps_and_rejects_non_objects() {
    let out = merge_patch(&json!({}), &json!({"a": {"b": null, "c": 1}})).expect("applies");
    assert_eq!(out, json!({"a": {"c": 1}}));
    assert_eq!(
        merge_patch(&json!({}), &json!(null))
            .expect_err("null")
            .status_code(),
        400
    );
}

// ---- SMP worked examples (api-facts §2.2) ---------------------------------------------------

#[test]
fn smp_map_merge_with_null_delete() {
    let out = pod_smp(
        json!({"metadata": {"labels": {"x": "1", "y": "2"}}}),
        json!({"metadata": {"labels": {"x": "9", "y": null, "z": "3"}}}),
    );
    assert_eq!(out["metadata"]["labels"], json!({"x": "9", "z": "3"}));
}

#[test]
fn smp_null_for_absent_key_is_ignored() {
    let out = pod_smp(
        json!({"metadata": {"name": "p"}}),
        json!({"metadata": {"annotations": null}}),
    );
    assert_eq!(out, json!({"metadata": {"name": "p"}}));
}

#[test]
fn smp_nulls_inside_added_map_are_stripped() {
    let out = pod_smp(
        json!({"metadata": {}}),
        json!({"metadata": {"labels": {"a": "1", "b": null}}}),
    );
    assert_eq!(out["metadata"]["labels"], json!({"a": "1"}));
}

#[test]
fn smp_tolerations_are_replaced_atomically() {
    let out = pod_smp(
        json!({"spec": {"tolerations": [{"key": "t1", "operator": "Exists"}]}}),
        json!({"spec": {"tolerations": [{"key": "t2", "operator": "Exists"}]}}),
    );
    assert_eq!(
        out["spec"]["tolerations"],
        json!([{"key": "t2", "operator": "Exists"}])
    );
}

#[test]
fn smp_merge_list_update_and_add_interleaves() {
    let out = pod_smp(
        three_containers(),
        json!({"spec": {"containers": [{"name": "b", "image": "i2b"}, {"name": "z", "image": "iz"}]}}),
    );
    assert_eq!(names(&out["spec"]["containers"]), ["a", "b", "z", "c"]);
    assert_eq!(
        out["spec"]["containers"][1],
        json!({"name": "b", "image": "i2b"})
    );
}

#[test]
fn smp_merge_list_add_only_goes_first() {
    let out = pod_smp(
        three_containers(),
        json!({"spec": {"containers": [{"name": "n", "image": "x"}]}}),
    );
    assert_eq!(names(&out["spec"]["containers"]), ["n", "a", "b", "c"]);
}

#[test]
fn smp_merge_list_add_after_last() {
    let out = pod_smp(
        three_containers(),
        json!({"spec": {"containers": [{"name": "c", "image": "ic"}, {"name": "n", "image": "x"}]}}),
    );
    assert_eq!(names(&out["spec"]["containers"]), ["a", "b", "c", "n"]);
}

#[test]
fn smp_env_merges_by_name_inside_container() {
    let live = json!({"spec": {"containers": [{"name": "a", "env": [{"name": "E1", "value": "1"}, {"name": "E2", "value": "2"}]}]}});
    let patch = json!({"spec": {"containers": [{"name": "a", "env": [{"name": "E2", "value": "22"}, {"name": "E0", "value": "0"}]}]}});
    let out = pod_smp(live, patch);
    assert_eq!(
        out["spec"]["containers"][0]["env"],
        json!([{"name": "E1", "value": "1"}, {"name": "E2", "value": "22"}, {"name": "E0", "value": "0"}])
    );
}

#[test]
fn smp_nested_resources_map_merges() {
    let live = json!({"spec": {"containers": [{"name": "a", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}});
    let out = pod_smp(
        live,
        json!({"spec": {"containers": [{"name": "a", "resources": {"limits": {"cpu": "2"}}}]}}),
    );
    assert_eq!(
        out["spec"]["containers"][0]["resources"]["limits"],
        json!({"cpu": "2", "memory": "1Gi"})
    );
}

#[test]
fn smp_delete_directive_removes_container() {
    let out = pod_smp(
        three_containers(),
        json!({"spec": {"containers": [{"name": "b", "$patch": "delete"}]}}),
    );
    assert_eq!(names(&out["spec"]["containers"]), ["a", "c"]);
}

#[test]
fn smp_replace_directive_in_list_replaces_whole_list() {
    let out = pod_smp(
        three_containers(),
        json!({"spec": {"containers": [{"name": "q", "image": "iq"}, {"$patch": "replace"}]}}),
    );
    assert_eq!(
        out["spec"]["containers"],
        json!([{"name": "q", "image": "iq"}])
    );
}

#[test]
fn smp_replace_directive_element_drops_its_other_keys() {
    let live = json!({"spec": {"volumes": [{"name": "v", "emptyDir": {}}]}});
    let out = pod_smp(
        live,
        json!({"spec": {"volumes": [{"name": "v", "$patch": "replace", "configMap": {"name": "c"}}]}}),
    );
    assert_eq!(out["spec"]["volumes"], json!([]));
}

#[test]
fn smp_replace_directive_in_map() {
    let out = pod_smp(
        json!({"metadata": {"labels": {"x": "1", "y": "2"}}}),
        json!({"metadata": {"labels": {"$patch": "replace", "z": "9"}}}),
    );
    assert_eq!(out["metadata"]["labels"], json!({"z": "9"}));
}

#[test]
fn smp_replace_directive_on_pointer_struct() {
    let out = pod_smp(
        json!({"spec": {"securityContext": {"runAsUser": 1000, "fsGroup": 2000}}}),
        json!({"spec": {"securityContext": {"$patch": "replace", "runAsNonRoot": true}}}),
    );
    assert_eq!(
        out["spec"]["securityContext"],
        json!({"runAsNonRoot": true})
    );
}

#[test]
fn smp_delete_directive_in_map_empties_it_and_skips_absent() {
    let out = pod_smp(
        json!({"metadata": {"labels": {"x": "1"}}}),
        json!({"metadata": {"labels": {"$patch": "delete"}}}),
    );
    assert_eq!(out["metadata"]["labels"], json!({}));
    let out = pod_smp(
        json!({"metadata": {"name": "p"}}),
        json!({"metadata": {"annotations": {"$patch": "delete"}}}),
    );
    assert_eq!(out["metadata"], json!({"name": "p"}));
}

#[test]
fn smp_whole_object_replace_at_root() {
    let patch =
        json!({"$patch": "replace", "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}});
    let out = pod_smp(three_containers(), patch);
    assert_eq!(
        out,
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}})
    );
}

#[test]
fn smp_finalizers_merge_as_primitive_set() {
    let live = json!({"metadata": {"finalizers": ["a", "b"]}});
    assert_eq!(
        pod_smp(
            live.clone(),
            json!({"metadata": {"finalizers": ["c", "a"]}})
        )["metadata"]["finalizers"],
        json!(["c", "a", "b"])
    );
    assert_eq!(
        pod_smp(live.clone(), json!({"metadata": {"finalizers": ["z"]}}))["metadata"]["finalizers"],
        json!(["z", "a", "b"])
    );
    assert_eq!(
        pod_smp(live, json!({"metadata": {"finalizers": ["b", "z"]}}))["metadata"]["finalizers"],
        json!(["a", "b", "z"])
    );
}

#[test]
fn smp_delete_from_primitive_list_finalizers() {
    let out = pod_smp(
        json!({"metadata": {"finalizers": ["a", "b"]}}),
        json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}),
    );
    assert_eq!(out["metadata"]["finalizers"], json!(["b"]));
}

#[test]
fn smp_delete_from_primitive_list_works_on_non_merge_list() {
    let live = json!({"spec": {"containers": [{"name": "a", "args": ["x", "y", "z"]}]}});
    let out = pod_smp(
        live,
        json!({"spec": {"containers": [{"name": "a", "$deleteFromPrimitiveList/args": ["y"]}]}}),
    );
    assert_eq!(out["spec"]["containers"][0]["args"], json!(["x", "z"]));
}

#[test]
fn smp_set_element_order_reorders_objects() {
    let patch = json!({"spec": {"$setElementOrder/containers": [{"name": "c"}, {"name": "a"}, {"name": "b"}]}});
    assert_eq!(
        names(&pod_smp(three_containers(), patch)["spec"]["containers"]),
        ["c", "a", "b"]
    );
}

#[test]
fn smp_set_element_order_with_addition() {
    let patch = json!({"spec": {
        "$setElementOrder/containers": [{"name": "c"}, {"name": "z"}, {"name": "a"}],
        "containers": [{"name": "z", "image": "iz"}]
    }});
    assert_eq!(
        names(&pod_smp(three_containers(), patch)["spec"]["containers"]),
        ["b", "c", "z", "a"]
    );
}

#[test]
fn smp_set_element_order_primitives() {
    let out = pod_smp(
        json!({"metadata": {"finalizers": ["a", "b"]}}),
        json!({"metadata": {"$setElementOrder/finalizers": ["b", "c", "a"], "finalizers": ["c"]}}),
    );
    assert_eq!(out["metadata"]["finalizers"], json!(["b", "c", "a"]));
}

#[test]
fn smp_set_element_order_mismatch_is_an_error() {
    let patch = json!({"spec": {
        "$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
        "containers": [{"name": "b", "image": "x"}, {"name": "a", "image": "y"}]
    }});
    let err = strategic_merge("", "Pod", &three_containers(), &patch).expect_err("order mismatch");
    assert!(
        err.to_string().starts_with("The order in patch list:"),
        "{err}"
    );
    assert_eq!(err.field(), Some("spec.containers"));
}

#[test]
fn smp_retain_keys_switches_volume_source() {
    let live = json!({"spec": {"volumes": [{"name": "v", "emptyDir": {}}]}});
    let patch = json!({"spec": {"volumes": [{"name": "v", "hostPath": {"path": "/x"}, "$retainKeys": ["name", "hostPath"]}]}});
    assert_eq!(
        pod_smp(live.clone(), patch)["spec"]["volumes"],
        json!([{"name": "v", "hostPath": {"path": "/x"}}])
    );
    let without = json!({"spec": {"volumes": [{"name": "v", "hostPath": {"path": "/x"}}]}});
    assert_eq!(
        pod_smp(live, without)["spec"]["volumes"],
        json!([{"name": "v", "emptyDir": {}, "hostPath": {"path": "/x"}}])
    );
}

#[test]
fn smp_retain_keys_on_deployment_strategy_switch_to_recreate() {
    let live = json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}}});
    // What `kubectl apply` sends when the manifest switches to Recreate.
    let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": null, "type": "Recreate"}}});
    assert_eq!(
        smp("apps", "Deployment", live, patch)["spec"]["strategy"],
        json!({"type": "Recreate"})
    );
}

#[test]
fn smp_retain_keys_rejects_unlisted_patch_keys() {
    let live = json!({"spec": {"strategy": {"type": "RollingUpdate"}}});
    let patch =
        json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {"maxSurge": 1}}}});
    let err = strategic_merge("apps", "Deployment", &live, &patch).expect_err("unlisted key");
    assert_eq!(err.to_string(), "invalid patch format of retainKeys");
    assert_eq!(err.status_code(), 400);
}

#[test]
fn smp_pdb_selector_is_replaced() {
    let live = json!({"spec": {"selector": {"matchLabels": {"a": "1", "b": "2"}}}});
    let out = smp(
        "policy",
        "PodDisruptionBudget",
        live,
        json!({"spec": {"selector": {"matchLabels": {"c": "3"}}}}),
    );
    assert_eq!(out["spec"]["selector"], json!({"matchLabels": {"c": "3"}}));
}

#[test]
fn smp_container_ports_merge_on_container_port_only() {
    let live = json!({"spec": {"containers": [{"name": "a", "ports": [
        {"containerPort": 80, "protocol": "TCP"}, {"containerPort": 53, "protocol": "UDP"}
    ]}]}});
    let patch = json!({"spec": {"containers": [{"name": "a", "ports": [{"containerPort": 53, "protocol": "TCP"}]}]}});
    assert_eq!(
        pod_smp(live, patch)["spec"]["containers"][0]["ports"],
        json!([{"containerPort": 80, "protocol": "TCP"}, {"containerPort": 53, "protocol": "TCP"}])
    );
}

#[test]
fn smp_volume_mounts_merge_by_mount_path() {
    let live = json!({"spec": {"containers": [{"name": "a", "volumeMounts": [
        {"name": "v1", "mountPath": "/a"}, {"name": "v2", "mountPath": "/b"}
    ]}]}});
    let patch = json!({"spec": {"containers": [{"name": "a", "volumeMounts": [{"name": "v3", "mountPath": "/a", "readOnly": true}]}]}});
    assert_eq!(
        pod_smp(live, patch)["spec"]["containers"][0]["volumeMounts"],
        json!([{"name": "v3", "mountPath": "/a", "readOnly": true}, {"name": "v2", "mountPath": "/b"}])
    );
}

#[test]
fn smp_service_ports_merge_by_port() {
    let live = json!({"spec": {"ports": [
        {"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"},
        {"name": "https", "port": 443, "targetPort": 8443, "protocol": "TCP"}
    ]}});
    let patch = json!({"spec": {"ports": [{"port": 443, "targetPort": 9443}]}});
    let out = smp("", "Service", live, patch);
    assert_eq!(
        out["spec"]["ports"][1],
        json!({"name": "https", "port": 443, "targetPort": 9443, "protocol": "TCP"})
    );
    assert_eq!(out["spec"]["ports"][0]["port"], json!(80));
}

#[test]
fn smp_owner_references_merge_by_uid() {
    let live = json!({"metadata": {"ownerReferences": [{"uid": "u1", "name": "a", "kind": "ReplicaSet"}]}});
    let patch =
        json!({"metadata": {"ownerReferences": [{"uid": "u2", "name": "b", "kind": "Node"}]}});
    let out = pod_smp(live, patch);
    assert_eq!(
        out["metadata"]["ownerReferences"].as_array().map(Vec::len),
        Some(2)
    );
}

#[test]
fn smp_conditions_merge_by_type() {
    let live = json!({"status": {"conditions": [
        {"type": "Ready", "status": "False"}, {"type": "PodScheduled", "status": "True"}
    ]}});
    let out = pod_smp(
        live,
        json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
    );
    assert_eq!(
        out["status"]["conditions"],
        json!([{"type": "Ready", "status": "True"}, {"type": "PodScheduled", "status": "True"}])
    );
}

// ---- what kubectl sends ----------------------------------------------------------------------

fn live_deployment() -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "annotations": {"deployment.kubernetes.io/revision": "1"}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{
                    "name": "c", "image": "busybox:1.35", "command": ["sleep", "3600"],
                    "imagePullPolicy": "IfNotPresent", "resources": {}
                }]}
            }
        }
    })
}

#[test]
fn smp_kubectl_apply_update_keeps_container_command() {
    let patch = json!({
        "metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}\n"}},
        "spec": {"replicas": 3, "template": {"spec": {
            "$setElementOrder/containers": [{"name": "c"}],
            "containers": [{"image": "busybox:1.36", "name": "c"}]
        }}}
    });
    let out = smp("apps", "Deployment", live_deployment(), patch);
    assert_eq!(out["spec"]["replicas"], json!(3));
    let container = &out["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], json!("busybox:1.36"));
    assert_eq!(container["command"], json!(["sleep", "3600"]));
    assert_eq!(
        out["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        json!("1")
    );
}

#[test]
fn smp_kubectl_set_image() {
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"image": "nginx:1.27", "name": "c"}]}}}});
    let out = smp("apps", "Deployment", live_deployment(), patch);
    let containers = &out["spec"]["template"]["spec"]["containers"];
    assert_eq!(containers.as_array().map(Vec::len), Some(1));
    assert_eq!(containers[0]["image"], json!("nginx:1.27"));
    assert_eq!(containers[0]["command"], json!(["sleep", "3600"]));
}

#[test]
fn smp_kubectl_rollout_restart() {
    let patch = json!({"spec": {"template": {"metadata": {"annotations": {
        "kubectl.kubernetes.io/restartedAt": "2025-01-01T00:00:00Z"
    }}}}});
    let out = smp("apps", "Deployment", live_deployment(), patch);
    assert_eq!(
        out["spec"]["template"]["metadata"]["labels"],
        json!({"app": "web"})
    );
    assert_eq!(
        out["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"],
        json!("2025-01-01T00:00:00Z")
    );
}

#[test]
fn smp_kubectl_cordon() {
    let live = json!({"metadata": {"name": "n1"}, "spec": {"podCIDR": "10.0.0.0/24"}});
    let out = smp("", "Node", live, json!({"spec": {"unschedulable": true}}));
    assert_eq!(
        out["spec"],
        json!({"podCIDR": "10.0.0.0/24", "unschedulable": true})
    );
}

#[test]
fn smp_cronjob_job_template_containers_merge_by_name() {
    let live = json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [
        {"name": "a", "image": "x", "args": ["1"]}, {"name": "b", "image": "y"}
    ]}}}}}});
    let patch = json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "x2"}]}}}}}});
    let out = smp("batch", "CronJob", live, patch);
    let containers = &out["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"];
    assert_eq!(
        containers[0],
        json!({"name": "a", "image": "x2", "args": ["1"]})
    );
    assert_eq!(containers[1]["name"], json!("b"));
}

#[test]
fn smp_patch_on_unknown_kind_is_a_merge_patch() {
    let live = json!({"spec": {"items": [{"name": "a"}, {"name": "b"}]}});
    let patch = json!({"spec": {"items": [{"name": "c"}]}});
    assert!(!supports_strategic_merge("example.com", "Widget"));
    assert_eq!(
        smp("example.com", "Widget", live, patch)["spec"]["items"],
        json!([{"name": "c"}])
    );
}

// ---- errors ---------------------------------------------------------------------------------

#[test]
fn smp_missing_merge_key_is_reported_like_upstream() {
    let err = strategic_merge(
        "",
        "Pod",
        &three_containers(),
        &json!({"spec": {"containers": [{"image": "x"}]}}),
    )
    .expect_err("no name");
    assert_eq!(
        err.to_string(),
        "map: map[image:x] does not contain declared merge key: name"
    );
    assert_eq!(err.field(), Some("spec.containers"));
    assert_eq!(err.status_code(), 422);
}

#[test]
fn smp_unknown_patch_type_in_map() {
    let err = strategic_merge(
        "",
        "Pod",
        &json!({}),
        &json!({"metadata": {"labels": {"$patch": "frob"}}}),
    )
    .expect_err("bad directive");
    assert_eq!(
        err.to_string(),
        "unknown patch type: frob in map: map[$patch:frob]"
    );
    assert_eq!(err.field(), Some("metadata.labels"));
}

#[test]
fn smp_merge_directive_in_list_is_rejected() {
    let err = strategic_merge(
        "",
        "Pod",
        &three_containers(),
        &json!({"spec": {"containers": [{"$patch": "merge"}]}}),
    )
    .expect_err("merge directive");
    assert_eq!(
        err.to_string(),
        "merging lists cannot yet be specified in the patch"
    );
}

#[test]
fn smp_delete_directive_in_primitive_list_is_rejected() {
    let live = json!({"metadata": {"finalizers": ["a"]}});
    let err = strategic_merge(
        "",
        "Pod",
        &live,
        &json!({"metadata": {"finalizers": [{"$patch": "delete"}]}}),
    )
    .expect_err("mixed list");
    assert!(
        err.to_string()
            .starts_with("list element types are not identical: "),
        "{err}"
    );
}

#[test]
fn smp_non_object_patch_is_invalid_document() {
    let err = strategic_merge("", "Pod", &json!({}), &json!([1])).expect_err("not an object");
    assert_eq!(err.to_string(), "invalid JSON document");
    assert_eq!(err.status_code(), 400);
}

#[test]
fn smp_type_change_replaces_value() {
    let out = pod_smp(
        json!({"spec": {"nodeSelector": {"a": "b"}}}),
        json!({"spec": {"nodeSelector": "oops"}}),
    );
    assert_eq!(out["spec"]["nodeSelector"], json!("oops"));
}

#[test]
fn smp_nulls_in_appended_elements_and_replaced_lists_are_dropped() {
    let patch = json!({"spec": {
        "containers": [{"name": "n", "image": "x", "workingDir": null}],
        "tolerations": [{"key": "k", "operator": "Exists", "value": null}]
    }});
    let out = pod_smp(three_containers(), patch);
    assert_eq!(
        out["spec"]["containers"][0],
        json!({"name": "n", "image": "x"})
    );
    assert_eq!(
        out["spec"]["tolerations"],
        json!([{"key": "k", "operator": "Exists"}])
    );
}

#[test]
fn smp_kubectl_apply_deletes_env_var_and_adds_volume() {
    let live = json!({"spec": {
        "containers": [{"name": "c", "image": "i", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}],
        "volumes": [{"name": "data", "emptyDir": {}}]
    }});
    let patch = json!({"spec": {
        "$setElementOrder/containers": [{"name": "c"}],
        "$setElementOrder/volumes": [{"name": "data"}, {"name": "cfg"}],
        "containers": [{"name": "c", "$setElementOrder/env": [{"name": "B"}], "env": [{"$patch": "delete", "name": "A"}]}],
        "volumes": [{"name": "cfg", "configMap": {"name": "app"}}]
    }});
    let out = pod_smp(live, patch);
    assert_eq!(
        out["spec"]["containers"][0]["env"],
        json!([{"name": "B", "value": "2"}])
    );
    assert_eq!(names(&out["spec"]["volumes"]), ["data", "cfg"]);
}

#[test]
fn smp_empty_patch_list_leaves_merge_list_unchanged() {
    let out = pod_smp(three_containers(), json!({"spec": {"containers": []}}));
    assert_eq!(names(&out["spec"]["containers"]), ["a", "b", "c"]);
    let out = pod_smp(
        json!({"metadata": {"finalizers": ["a"]}}),
        json!({"metadata": {"finalizers": []}}),
    );
    assert_eq!(out["metadata"]["finalizers"], json!(["a"]));
}

#[test]
fn smp_null_list_deletes_it() {
    let out = pod_smp(three_containers(), json!({"spec": {"containers": null}}));
    assert_eq!(out, json!({"spec": {}}));
}
