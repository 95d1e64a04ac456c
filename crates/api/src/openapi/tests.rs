//! Tests of the generated documents: the shapes kubectl apply, create, replace and explain read.

use super::*;

fn document(path: &str) -> Value {
    let bytes = v3_document(path).expect("document exists");
    serde_json::from_slice(bytes).expect("document is JSON")
}

/// Resolves one level of `allOf: [{$ref}]` / `$ref`, like kubectl's strategic-merge lookup.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    let schema = schema.get("allOf").and_then(|a| a.get(0)).unwrap_or(schema);
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let name = r.strip_prefix(REF_PREFIX).expect("local ref");
            &doc["components"]["schemas"][name]
        }
        None => schema,
    }
}

/// Collects every `$ref` string in a value.
fn refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(object) => {
            for (key, value) in object {
                if key == "$ref"
                    && let Some(r) = value.as_str()
                {
                    out.push(r.to_owned());
                }
                refs(value, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

/// cli-runtime's `supportsQueryParamV3`: the first patch operation tagged with the GVK decides.
fn supports_field_validation(doc: &Value, group: &str, version: &str, kind: &str) -> Option<bool> {
    let wanted = gvk_value(group, version, kind);
    for item in doc["paths"].as_object()?.values() {
        let Some(patch) = item.get("patch") else {
            continue;
        };
        if patch[GVK_EXTENSION] != wanted {
            continue;
        }
        let params = patch["parameters"].as_array()?;
        return Some(
            params
                .iter()
                .any(|p| p["name"] == "fieldValidation" && p["in"] == "query"),
        );
    }
    None
}

#[test]
fn index_lists_every_group_version_with_its_hash() {
    let index = v3_index(&[]);
    let paths = index["paths"].as_object().expect("paths");
    for path in [
        "api/v1",
        "apis/apps/v1",
        "apis/batch/v1",
        "apis/rbac.authorization.k8s.io/v1",
    ] {
        let hash = v3_hash(path).expect("hash");
        assert_eq!(
            paths[path]["serverRelativeURL"],
            format!("/openapi/v3/{path}?hash={hash}"),
            "{path}"
        );
    }
    assert_eq!(paths.len(), v3_paths().count());
}

#[test]
fn index_carries_extra_entries_for_documents_served_elsewhere() {
    let index = v3_index(&[("apis/example.com/v1", "ABC")]);
    assert_eq!(
        index["paths"]["apis/example.com/v1"]["serverRelativeURL"],
        "/openapi/v3/apis/example.com/v1?hash=ABC"
    );
}

#[test]
fn hash_is_uppercase_sha512_of_the_document() {
    let bytes = v3_document("apis/apps/v1").expect("doc");
    let hash = v3_hash("apis/apps/v1").expect("hash");
    assert_eq!(hash.len(), 128);
    assert!(
        hash.chars()
            .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
    );
    assert_eq!(hash, hex_upper(&Sha512::digest(bytes)));
}

#[test]
fn document_lookup_accepts_the_request_path_forms() {
    let canonical = v3_document("apis/apps/v1").expect("doc").as_ptr();
    for form in [
        "/apis/apps/v1",
        "/openapi/v3/apis/apps/v1",
        "openapi/v3/apis/apps/v1?hash=X",
    ] {
        assert_eq!(
            v3_document(form).map(<[u8]>::as_ptr),
            Some(canonical),
            "{form}"
        );
    }
    assert!(v3_document("apis/nope/v1").is_none());
}

#[test]
fn every_writable_kind_advertises_field_validation_on_its_patch() {
    for entry in resources::all_kinds() {
        let doc = document(&entry.gv_path());
        let found =
            supports_field_validation(&doc, entry.ty.group, entry.ty.version, entry.ty.kind);
        match entry.verbs {
            Verbs::All | Verbs::NoDeleteCollection => {
                assert_eq!(found, Some(true), "{}/{}", entry.ty.group, entry.ty.kind)
            }
            Verbs::Create | Verbs::GetList => {
                assert_eq!(found, None, "{}/{}", entry.ty.group, entry.ty.kind)
            }
        }
    }
}

#[test]
fn deployment_patch_operation_matches_what_kubectl_apply_checks() {
    let doc = document("apis/apps/v1");
    let patch = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
    assert_eq!(
        patch[GVK_EXTENSION],
        json!({"group": "apps", "version": "v1", "kind": "Deployment"})
    );
    assert_eq!(patch["operationId"], "patchAppsV1NamespacedDeployment");
    let names: Vec<&str> = patch["parameters"]
        .as_array()
        .expect("params")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(
        names,
        ["dryRun", "fieldManager", "fieldValidation", "force"]
    );
    assert!(patch["requestBody"]["content"]["application/strategic-merge-patch+json"].is_object());
    let scale =
        &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]["patch"];
    assert_eq!(
        scale[GVK_EXTENSION],
        json!({"group": "autoscaling", "version": "v1", "kind": "Scale"})
    );
}

#[test]
fn collection_and_item_paths_have_upstream_verbs() {
    let doc = document("api/v1");
    let pods = &doc["paths"]["/api/v1/namespaces/{namespace}/pods"];
    assert_eq!(pods["get"]["x-kubernetes-action"], "list");
    assert_eq!(pods["post"]["x-kubernetes-action"], "post");
    assert_eq!(
        pods["delete"]["operationId"],
        "deleteCoreV1CollectionNamespacedPod"
    );
    assert!(doc["paths"]["/api/v1/pods"]["get"].is_object());
    let namespaces = &doc["paths"]["/api/v1/namespaces"];
    assert!(
        namespaces.get("delete").is_none(),
        "namespaces have no deletecollection"
    );
    assert!(doc["paths"]["/api/v1/namespaces/{name}/finalize"]["put"].is_object());
    assert_eq!(
        doc["paths"]["/api/v1/namespaces/{namespace}/pods/{name}/eviction"]["post"][GVK_EXTENSION]
            ["kind"],
        "Eviction"
    );
    let rbac = document("apis/rbac.authorization.k8s.io/v1");
    assert_eq!(
        rbac["paths"]["/apis/rbac.authorization.k8s.io/v1/clusterroles/{name}"]["patch"]["operationId"],
        "patchRbacAuthorizationV1ClusterRole"
    );
    let reviews = document("apis/authorization.k8s.io/v1");
    let ssar = &reviews["paths"]["/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"];
    assert!(ssar["post"].is_object() && ssar.get("get").is_none());
}

#[test]
fn every_reference_resolves_within_its_own_document() {
    for path in v3_paths() {
        let doc = document(path);
        let schemas = doc["components"]["schemas"].as_object().expect("schemas");
        let mut all = Vec::new();
        refs(&doc, &mut all);
        for r in all {
            let name = r
                .strip_prefix(REF_PREFIX)
                .unwrap_or_else(|| panic!("{path}: ref {r}"));
            assert!(schemas.contains_key(name), "{path}: dangling {r}");
        }
    }
}

#[test]
fn refs_with_siblings_are_wrapped_in_all_of() {
    let doc = document("apis/apps/v1");
    let spec = &doc["components"]["schemas"]["io.k8s.api.apps.v1.DeploymentSpec"];
    let strategy = &spec["properties"]["strategy"];
    assert_eq!(
        strategy["allOf"],
        json!([{"$ref": "#/components/schemas/io.k8s.api.apps.v1.DeploymentStrategy"}])
    );
    assert!(
        strategy["description"]
            .as_str()
            .is_some_and(|d| d.contains("deployment strategy"))
    );
    assert_eq!(strategy["x-kubernetes-patch-strategy"], "retainKeys");
    assert!(strategy.get("$ref").is_none());
    assert_eq!(
        spec["properties"]["replicas"],
        json!({
            "description": spec["properties"]["replicas"]["description"],
            "type": "integer",
            "format": "int32",
        })
    );
}

#[test]
fn kinds_are_tagged_with_their_group_version_kind() {
    let doc = document("apis/apps/v1");
    let schemas = &doc["components"]["schemas"];
    assert_eq!(
        schemas["io.k8s.api.apps.v1.Deployment"][GVK_EXTENSION],
        json!([{"group": "apps", "version": "v1", "kind": "Deployment"}])
    );
    assert_eq!(
        schemas["io.k8s.api.apps.v1.DeploymentList"][GVK_EXTENSION],
        json!([{"group": "apps", "version": "v1", "kind": "DeploymentList"}])
    );
    assert!(
        schemas["io.k8s.api.apps.v1.DeploymentSpec"]
            .get(GVK_EXTENSION)
            .is_none()
    );
    assert_eq!(
        definition_for_kind("apps", "v1", "Deployment"),
        Some("io.k8s.api.apps.v1.Deployment")
    );
    assert_eq!(
        definition_for_kind("", "v1", "ConfigMap"),
        Some("io.k8s.api.core.v1.ConfigMap")
    );
    assert_eq!(
        definition_for_kind("autoscaling", "v1", "Scale"),
        Some("io.k8s.api.autoscaling.v1.Scale")
    );
    assert_eq!(
        definition_for_kind("apiregistration.k8s.io", "v1", "APIService"),
        Some("io.k8s.kube-aggregator.pkg.apis.apiregistration.v1.APIService")
    );
    assert_eq!(definition_for_kind("apps", "v1", "Nope"), None);
}

#[test]
fn strategic_merge_metadata_is_on_list_fields() {
    let doc = document("api/v1");
    let schemas = &doc["components"]["schemas"];
    let containers = &schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
    assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
    assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
    assert_eq!(containers["x-kubernetes-list-type"], "map");
    assert_eq!(containers["x-kubernetes-list-map-keys"], json!(["name"]));
    let ports = &schemas["io.k8s.api.core.v1.Container"]["properties"]["ports"];
    assert_eq!(ports["x-kubernetes-patch-merge-key"], "containerPort");
    assert_eq!(
        ports["x-kubernetes-list-map-keys"],
        json!(["containerPort", "protocol"])
    );
    let volumes = &schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["volumes"];
    assert_eq!(volumes["x-kubernetes-patch-strategy"], "merge,retainKeys");
    let args = &schemas["io.k8s.api.core.v1.Container"]["properties"]["args"];
    assert_eq!(args["x-kubernetes-list-type"], "atomic");
    let finalizers =
        &schemas["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"]["properties"]["finalizers"];
    assert_eq!(finalizers["x-kubernetes-list-type"], "set");
    assert_eq!(
        schemas["io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector"]["x-kubernetes-map-type"],
        "atomic"
    );
    assert_eq!(
        schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["nodeSelector"]["x-kubernetes-map-type"],
        "atomic"
    );
}

#[test]
fn every_transcribed_extension_lands_on_a_property() {
    // Discovery types are not referenced by any group-version document.
    let unreferenced = ["APIGroup", "APIGroupList", "APIVersions"].map(|k| format!("{META}.{k}"));
    let defs = definitions();
    for ext in extensions::FIELD_EXTENSIONS {
        if unreferenced.iter().any(|u| u == ext.definition) {
            continue;
        }
        let property = defs
            .get(ext.definition)
            .and_then(|d| d.get("properties"))
            .and_then(|p| p.get(ext.field));
        assert!(
            property.is_some(),
            "{}.{} not found",
            ext.definition,
            ext.field
        );
    }
    for name in extensions::ATOMIC_STRUCTS {
        assert_eq!(defs[*name]["x-kubernetes-map-type"], "atomic", "{name}");
    }
    for (definition, field, _) in extensions::MAP_TYPE_FIELDS {
        assert!(
            defs[*definition]["properties"][*field].is_object(),
            "{definition}.{field}"
        );
    }
}

#[test]
fn explain_can_walk_deployment_spec_strategy() {
    let doc = document("apis/apps/v1");
    // kubectl explain finds the GVK through an operation of the resource's paths ...
    let gvk = &doc["paths"]["/apis/apps/v1/deployments"]["get"][GVK_EXTENSION];
    assert_eq!(gvk["kind"], "Deployment");
    // ... then the schema whose GVK list contains it ...
    let schemas = doc["components"]["schemas"].as_object().expect("schemas");
    let root = schemas
        .values()
        .find(|s| s[GVK_EXTENSION].as_array().is_some_and(|l| l.contains(gvk)))
        .expect("schema with the GVK");
    // ... and walks properties through allOf/$ref.
    let spec = resolve(&doc, &root["properties"]["spec"]);
    let strategy = resolve(&doc, &spec["properties"]["strategy"]);
    assert_eq!(strategy["type"], "object");
    let rolling = resolve(&doc, &strategy["properties"]["rollingUpdate"]);
    let max_surge = &rolling["properties"]["maxSurge"];
    assert!(max_surge["description"].is_string());
    let int_or_string = resolve(&doc, max_surge);
    assert_eq!(int_or_string["format"], "int-or-string");
    assert!(
        int_or_string.get("type").is_none(),
        "explain prints <IntOrString> only without a type"
    );
}

#[test]
fn metadata_and_status_are_described() {
    let doc = document("api/v1");
    let meta = &doc["components"]["schemas"]["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"];
    assert_eq!(
        meta["properties"]["labels"]["additionalProperties"]["type"],
        "string"
    );
    assert_eq!(
        meta["properties"]["creationTimestamp"]["allOf"][0]["$ref"],
        format!("{REF_PREFIX}{META}.Time")
    );
    let pod = &doc["components"]["schemas"]["io.k8s.api.core.v1.Pod"];
    assert!(pod["properties"]["status"]["allOf"].is_array());
}

#[test]
fn kinds_are_tagged_in_every_document_that_holds_them() {
    let doc = document("apis/apps/v1");
    let schemas = &doc["components"]["schemas"];
    assert_eq!(
        schemas["io.k8s.api.core.v1.PersistentVolumeClaim"][GVK_EXTENSION],
        json!([{"group": "", "version": "v1", "kind": "PersistentVolumeClaim"}])
    );
    let delete_options = schemas[format!("{META}.DeleteOptions")][GVK_EXTENSION]
        .as_array()
        .expect("tags");
    assert!(
        delete_options
            .contains(&json!({"group": "apps", "version": "v1", "kind": "DeleteOptions"}))
    );
    assert_eq!(
        definition_for_kind("batch", "v1", "DeleteOptions"),
        Some("io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions")
    );
    assert_eq!(
        definition_for_kind("policy", "v1", "Eviction"),
        Some("io.k8s.api.policy.v1.Eviction")
    );
}
