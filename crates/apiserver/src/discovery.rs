//! Discovery documents: `/api`, `/apis`, `/apis/<g>`, `/api/v1`, `/apis/<g>/<v>`, both legacy
//! and aggregated (`apidiscovery.k8s.io/v2`), built from the resource registry.

use serde_json::{Map, Value, json};
use skiff_api::registry;

/// The Kubernetes version Skiff's API reports.
pub const KUBE_VERSION: &str = "v1.33.1";

/// `/version`.
pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "emulationMajor": "1",
        "emulationMinor": "33",
        "minCompatibilityMajor": "1",
        "minCompatibilityMinor": "32",
        "gitVersion": format!("{KUBE_VERSION}+skiff-{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": "skiff",
        "gitTreeState": "clean",
        "buildDate": "2026-11-30T00:00:00Z",
        "goVersion": "rust",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, go_arch()),
    })
}

fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// `/api` (legacy `APIVersions`).
pub fn core_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

fn group_entry(group: &str, version: &str) -> Value {
    let gv = json!({"groupVersion": format!("{group}/{version}"), "version": version});
    json!({"name": group, "versions": [gv.clone()], "preferredVersion": gv})
}

/// `/apis` (legacy `APIGroupList`).
pub fn group_list() -> Value {
    let groups: Vec<Value> = registry::groups()
        .into_iter()
        .map(|(g, v)| group_entry(g, v))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/<group>`.
pub fn group(name: &str) -> Option<Value> {
    registry::groups()
        .into_iter()
        .find(|(g, _)| *g == name)
        .map(|(g, v)| {
            let mut e = group_entry(g, v);
            e["kind"] = json!("APIGroup");
            e["apiVersion"] = json!("v1");
            e
        })
}

/// `/api/v1` or `/apis/<g>/<v>` (legacy `APIResourceList`).
pub fn resource_list(group: &str, version: &str) -> Value {
    let mut entries: Vec<(String, Value)> = Vec::new();
    for spec in registry::resources_of(group, version) {
        let mut e = Map::new();
        e.insert("name".into(), json!(spec.resource));
        e.insert("singularName".into(), json!(spec.singular));
        e.insert("namespaced".into(), json!(spec.namespaced));
        e.insert("kind".into(), json!(spec.kind));
        e.insert("verbs".into(), json!(spec.verbs));
        if !spec.short_names.is_empty() {
            e.insert("shortNames".into(), json!(spec.short_names));
        }
        if !spec.categories.is_empty() {
            e.insert("categories".into(), json!(spec.categories));
        }
        if let Some(h) = spec.storage_version_hash {
            e.insert("storageVersionHash".into(), json!(h));
        }
        entries.push((spec.resource.to_string(), Value::Object(e)));
        for sub in spec.subresources {
            let mut s = Map::new();
            s.insert(
                "name".into(),
                json!(format!("{}/{}", spec.resource, sub.name)),
            );
            s.insert("singularName".into(), json!(""));
            s.insert("namespaced".into(), json!(spec.namespaced));
            if let Some(g) = sub.group {
                s.insert("group".into(), json!(g));
            }
            if let Some(v) = sub.version {
                s.insert("version".into(), json!(v));
            }
            s.insert("kind".into(), json!(sub.kind));
            s.insert("verbs".into(), json!(sub.verbs));
            entries.push((format!("{}/{}", spec.resource, sub.name), Value::Object(s)));
        }
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": gv,
        "resources": entries.into_iter().map(|(_, v)| v).collect::<Vec<_>>(),
    })
}

/// Group and version stay empty for a kind of the resource's own group/version, as upstream.
fn response_kind(group: Option<&str>, version: Option<&str>, kind: &str) -> Value {
    json!({"group": group.unwrap_or(""), "version": version.unwrap_or(""), "kind": kind})
}

fn aggregated_group(group: &str, version: &str) -> Value {
    let resources: Vec<Value> = registry::resources_of(group, version)
        .map(|spec| {
            let mut r = Map::new();
            r.insert("resource".into(), json!(spec.resource));
            r.insert("responseKind".into(), response_kind(None, None, spec.kind));
            r.insert(
                "scope".into(),
                json!(if spec.namespaced {
                    "Namespaced"
                } else {
                    "Cluster"
                }),
            );
            r.insert("singularResource".into(), json!(spec.singular));
            r.insert("verbs".into(), json!(spec.verbs));
            if !spec.short_names.is_empty() {
                r.insert("shortNames".into(), json!(spec.short_names));
            }
            if !spec.categories.is_empty() {
                r.insert("categories".into(), json!(spec.categories));
            }
            if !spec.subresources.is_empty() {
                let subs: Vec<Value> = spec
                    .subresources
                    .iter()
                    .map(|s| {
                        json!({
                            "subresource": s.name,
                            "responseKind": response_kind(s.group, s.version, s.kind),
                            "verbs": s.verbs,
                        })
                    })
                    .collect();
                r.insert("subresources".into(), json!(subs));
            }
            Value::Object(r)
        })
        .collect();
    json!({
        "metadata": {"name": group, "creationTimestamp": null},
        "versions": [{"version": version, "resources": resources, "freshness": "Current"}],
    })
}

/// `/api` with `Accept: ...;as=APIGroupDiscoveryList`.
pub fn aggregated_core() -> Value {
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": "apidiscovery.k8s.io/v2",
        "metadata": {},
        "items": [aggregated_group("", "v1")],
    })
}

/// `/apis` with `Accept: ...;as=APIGroupDiscoveryList`.
pub fn aggregated_groups() -> Value {
    let items: Vec<Value> = registry::groups()
        .into_iter()
        .map(|(g, v)| aggregated_group(g, v))
        .collect();
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": "apidiscovery.k8s.io/v2",
        "metadata": {},
        "items": items,
    })
}

/// The media type aggregated discovery answers with.
pub const AGGREGATED_CONTENT_TYPE: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_advertise_eviction_as_policy_v1_for_kubectl_drain() {
        let list = resource_list("", "v1");
        let eviction = list["resources"]
            .as_array()
            .expect("resources")
            .iter()
            .find(|r| r["name"] == "pods/eviction")
            .expect("pods/eviction advertised");
        assert_eq!(eviction["group"], "policy");
        assert_eq!(eviction["version"], "v1");
        assert_eq!(eviction["kind"], "Eviction");
    }

    #[test]
    fn aggregated_deployments_have_scale_and_category_all() {
        let doc = aggregated_groups();
        let apps = doc["items"]
            .as_array()
            .expect("items")
            .iter()
            .find(|g| g["metadata"]["name"] == "apps")
            .expect("apps group");
        let deploy = apps["versions"][0]["resources"]
            .as_array()
            .expect("resources")
            .iter()
            .find(|r| r["resource"] == "deployments")
            .expect("deployments");
        assert_eq!(deploy["categories"], json!(["all"]));
        assert_eq!(deploy["shortNames"], json!(["deploy"]));
        assert_eq!(
            deploy["responseKind"],
            json!({"group": "", "version": "", "kind": "Deployment"})
        );
        let scale = &deploy["subresources"][0];
        assert_eq!(scale["subresource"], "scale");
        assert_eq!(scale["responseKind"]["group"], "autoscaling");
    }
}
