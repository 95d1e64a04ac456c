//! Admission: defaulting and validation of built-in types, namespace labels, and Service
//! ClusterIP / NodePort allocation, applied to every create, update and patch.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use serde_json::{Value, json};
use skiff_api::registry::ResourceSpec;

use crate::App;
use crate::error::{ApiError, Cause, Result};
use crate::objects::{ListQuery, UpdateScope};

/// The Service CIDR (10.96.0.0/12).
const SERVICE_CIDR_BASE: u32 = u32::from_be_bytes([10, 96, 0, 0]);
const SERVICE_CIDR_SIZE: u32 = 1 << 20;
/// The ClusterIP of the `kubernetes` Service.
pub const KUBERNETES_SERVICE_IP: &str = "10.96.0.1";
/// The ClusterIP reserved for cluster DNS.
pub const DNS_SERVICE_IP: &str = "10.96.0.10";
/// The NodePort range.
const NODE_PORTS: std::ops::RangeInclusive<i64> = 30000..=32767;

fn validation_errors(spec: &ResourceSpec, obj: &Value, old: Option<&Value>) -> Result<()> {
    let errors = skiff_api::validation::validate(spec.group, spec.kind, obj, old);
    if errors.is_empty() {
        return Ok(());
    }
    let causes = errors
        .iter()
        .map(|e| Cause {
            reason: e.reason().to_string(),
            message: e.body(),
            field: e.field.clone(),
        })
        .collect();
    Err(ApiError::invalid(
        spec,
        obj["metadata"]["name"].as_str().unwrap_or(""),
        causes,
    ))
}

fn namespace_label(spec: &ResourceSpec, obj: &mut Value) {
    if spec.resource == "namespaces"
        && let Some(name) = obj["metadata"]["name"].as_str().map(str::to_string)
    {
        obj["metadata"]["labels"]["kubernetes.io/metadata.name"] = json!(name);
    }
}

/// Admit a new object: defaults, validation, allocations.
pub async fn admit_create(
    app: &App,
    spec: &ResourceSpec,
    ns: Option<&str>,
    obj: &mut Value,
) -> Result<()> {
    if obj.get("metadata").is_none_or(Value::is_null) {
        obj["metadata"] = json!({});
    }
    if spec.namespaced
        && let Some(ns) = ns
        && obj["metadata"]["namespace"]
            .as_str()
            .is_none_or(str::is_empty)
    {
        obj["metadata"]["namespace"] = json!(ns);
    }
    skiff_api::defaults::apply_defaults(spec.group, spec.kind, obj);
    namespace_label(spec, obj);
    // The uid is the server's; Jobs need theirs now for the controller-uid selector.
    if let Some(meta) = obj["metadata"].as_object_mut() {
        meta.remove("uid");
    }
    if spec.resource == "jobs" {
        let uid = uuid::Uuid::new_v4().to_string();
        obj["metadata"]["uid"] = json!(uid);
        skiff_api::defaults::job_selector_defaults(obj, &uid);
    }
    // Names may be generated later; validate with a placeholder so generateName objects pass.
    let generated = obj["metadata"]["name"].as_str().is_none_or(str::is_empty)
        && obj["metadata"]["generateName"]
            .as_str()
            .is_some_and(|g| !g.is_empty());
    if generated {
        let mut probe = obj.clone();
        let base = obj["metadata"]["generateName"].as_str().unwrap_or("");
        probe["metadata"]["name"] = json!(format!("{base}abcde"));
        validation_errors(spec, &probe, None)?;
    } else {
        validation_errors(spec, obj, None)?;
    }
    if spec.resource == "services" {
        allocate_service(app, obj).await?;
    }
    if spec.resource == "pods" && spec.group.is_empty() {
        default_toleration_seconds(obj);
    }
    if spec.resource == "persistentvolumeclaims" {
        default_storage_class(app, obj).await?;
    }
    Ok(())
}

/// Upstream's DefaultStorageClass admission: a new claim without `storageClassName` (absent,
/// not `""`, which asks for no class) gets the default class; with several, the newest wins.
async fn default_storage_class(app: &App, claim: &mut Value) -> Result<()> {
    if claim["spec"]
        .get("storageClassName")
        .is_some_and(|v| !v.is_null())
    {
        return Ok(());
    }
    let classes = crate::spec_of("storage.k8s.io", "storageclasses");
    let page = app
        .objects
        .list(classes, &ListQuery::default(), &|_| true)
        .await?;
    let is_default = |c: &&Value| {
        let a = &c["metadata"]["annotations"];
        a["storageclass.kubernetes.io/is-default-class"] == "true"
            || a["storageclass.beta.kubernetes.io/is-default-class"] == "true"
    };
    let newest = page.items.iter().filter(is_default).max_by(|a, b| {
        let ts = |c: &Value| {
            c["metadata"]["creationTimestamp"]
                .as_str()
                .unwrap_or("")
                .to_string()
        };
        ts(a).cmp(&ts(b)).then_with(|| {
            b["metadata"]["name"]
                .as_str()
                .cmp(&a["metadata"]["name"].as_str())
        })
    });
    if let Some(class) = newest.and_then(|c| c["metadata"]["name"].as_str()) {
        claim["spec"]["storageClassName"] = json!(class);
    }
    Ok(())
}

/// Upstream's DefaultTolerationSeconds admission: pods tolerate the not-ready and unreachable
/// NoExecute taints for 300 s unless they already say how long.
fn default_toleration_seconds(pod: &mut Value) {
    const SECONDS: i64 = 300;
    let existing = pod["spec"]["tolerations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let tolerated = |key: &str| {
        existing.iter().any(|t| {
            let k = t["key"].as_str().unwrap_or("");
            let effect = t["effect"].as_str().unwrap_or("");
            (k == key || k.is_empty()) && (effect == "NoExecute" || effect.is_empty())
        })
    };
    let mut add = Vec::new();
    for key in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ] {
        if !tolerated(key) {
            add.push(
                json!({"key": key, "operator": "Exists", "effect": "NoExecute",
                "tolerationSeconds": SECONDS}),
            );
        }
    }
    if add.is_empty() || !pod["spec"].is_object() {
        return;
    }
    let mut all = existing;
    all.extend(add);
    pod["spec"]["tolerations"] = Value::Array(all);
}

/// Admit an update of `old` to `new`.
pub fn admit_update(
    spec: &ResourceSpec,
    old: &Value,
    new: &mut Value,
    scope: UpdateScope,
) -> Result<()> {
    skiff_api::defaults::apply_defaults(spec.group, spec.kind, new);
    namespace_label(spec, new);
    if spec.resource == "services" {
        // Allocated addresses survive updates that leave them out.
        for field in ["clusterIP", "clusterIPs"] {
            if new["spec"].get(field).is_none_or(Value::is_null)
                && let Some(v) = old["spec"].get(field)
            {
                new["spec"][field] = v.clone();
            }
        }
        if let (Some(new_ports), Some(old_ports)) = (
            new["spec"]["ports"].as_array_mut(),
            old["spec"]["ports"].as_array(),
        ) {
            for p in new_ports.iter_mut() {
                if p.get("nodePort").is_none_or(Value::is_null)
                    && let Some(prev) = old_ports
                        .iter()
                        .find(|o| o["port"] == p["port"] && o["protocol"] == p["protocol"])
                    && let Some(np) = prev.get("nodePort")
                {
                    p["nodePort"] = np.clone();
                }
            }
        }
    }
    if scope != UpdateScope::Status {
        validation_errors(spec, new, Some(old))?;
    }
    Ok(())
}

fn ip_to_u32(ip: &str) -> Option<u32> {
    ip.parse::<Ipv4Addr>().ok().map(u32::from)
}

async fn allocate_service(app: &App, svc: &mut Value) -> Result<()> {
    let _guard = app.allocation.lock().await;
    let services = crate::spec_of("", "services");
    let page = app
        .objects
        .list(services, &ListQuery::default(), &|_| true)
        .await?;
    let ty = svc["spec"]["type"]
        .as_str()
        .unwrap_or("ClusterIP")
        .to_string();
    let name = svc["metadata"]["name"].as_str().unwrap_or("").to_string();
    let invalid = |field: &str, message: String| {
        ApiError::invalid(
            services,
            &name,
            vec![Cause {
                reason: "FieldValueInvalid".into(),
                message,
                field: field.into(),
            }],
        )
    };
    if ty != "ExternalName" {
        let used: HashSet<u32> = page
            .items
            .iter()
            .filter_map(|s| s["spec"]["clusterIP"].as_str().and_then(ip_to_u32))
            .collect();
        match svc["spec"]["clusterIP"].as_str() {
            Some("None") => {
                svc["spec"]["clusterIPs"] = json!(["None"]);
            }
            Some(ip) if !ip.is_empty() => {
                let Some(n) = ip_to_u32(ip) else {
                    return Err(invalid(
                        "spec.clusterIPs[0]",
                        format!(
                            "Invalid value: \"{ip}\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"
                        ),
                    ));
                };
                if n <= SERVICE_CIDR_BASE || n >= SERVICE_CIDR_BASE + SERVICE_CIDR_SIZE - 1 {
                    return Err(invalid(
                        "spec.clusterIPs",
                        format!(
                            "Invalid value: []string{{\"{ip}\"}}: failed to allocate IP {ip}: the provided IP ({ip}) is not in the valid range. The range of valid IPs is 10.96.0.0/12"
                        ),
                    ));
                }
                if used.contains(&n) {
                    return Err(invalid(
                        "spec.clusterIPs",
                        format!(
                            "Invalid value: []string{{\"{ip}\"}}: failed to allocate IP {ip}: provided IP is already allocated"
                        ),
                    ));
                }
                svc["spec"]["clusterIPs"] = json!([ip]);
            }
            _ => {
                // Spread allocations over the range from a random start, skipping the reserved
                // kubernetes (.1) and DNS (.10) addresses.
                let reserved: HashSet<u32> = [KUBERNETES_SERVICE_IP, DNS_SERVICE_IP]
                    .iter()
                    .filter_map(|i| ip_to_u32(i))
                    .collect();
                let start = rand::random_range(16..SERVICE_CIDR_SIZE - 1);
                let found = (0..SERVICE_CIDR_SIZE - 2)
                    .map(|i| SERVICE_CIDR_BASE + 1 + (start + i) % (SERVICE_CIDR_SIZE - 2))
                    .find(|n| !used.contains(n) && !reserved.contains(n));
                let Some(n) = found else {
                    return Err(ApiError::Internal(
                        "failed to allocate a serviceIP: range is full".into(),
                    ));
                };
                let ip = Ipv4Addr::from(n).to_string();
                svc["spec"]["clusterIP"] = json!(ip);
                svc["spec"]["clusterIPs"] = json!([ip]);
            }
        }
    }
    if ty == "NodePort" || ty == "LoadBalancer" {
        let mut used: HashSet<i64> = page
            .items
            .iter()
            .flat_map(|s| s["spec"]["ports"].as_array().cloned().unwrap_or_default())
            .filter_map(|p| p["nodePort"].as_i64())
            .collect();
        if let Some(ports) = svc["spec"]["ports"].as_array_mut() {
            for (i, p) in ports.iter_mut().enumerate() {
                match p["nodePort"].as_i64() {
                    Some(np) if np != 0 => {
                        if !NODE_PORTS.contains(&np) {
                            return Err(invalid(
                                &format!("spec.ports[{i}].nodePort"),
                                format!(
                                    "Invalid value: {np}: provided port is not in the valid range. The range of valid ports is 30000-32767"
                                ),
                            ));
                        }
                        if !used.insert(np) {
                            return Err(invalid(
                                &format!("spec.ports[{i}].nodePort"),
                                format!("Invalid value: {np}: provided port is already allocated"),
                            ));
                        }
                    }
                    _ => {
                        let span = NODE_PORTS.end() - NODE_PORTS.start() + 1;
                        let start = rand::random_range(0..span);
                        let Some(np) = (0..span)
                            .map(|k| NODE_PORTS.start() + (start + k) % span)
                            .find(|n| !used.contains(n))
                        else {
                            return Err(ApiError::Internal(
                                "failed to allocate a nodePort: range is full".into(),
                            ));
                        };
                        used.insert(np);
                        p["nodePort"] = json!(np);
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod toleration_tests {
    use super::*;

    #[test]
    fn pods_get_300s_not_ready_and_unreachable_tolerations_unless_they_tolerate_them() {
        let mut pod = json!({"spec": {"containers": []}});
        default_toleration_seconds(&mut pod);
        let t = pod["spec"]["tolerations"]
            .as_array()
            .expect("added")
            .clone();
        assert_eq!(t.len(), 2);
        assert_eq!(
            t[0],
            json!({"key": "node.kubernetes.io/not-ready", "operator": "Exists",
            "effect": "NoExecute", "tolerationSeconds": 300})
        );
        assert_eq!(t[1]["key"], "node.kubernetes.io/unreachable");

        let mut own = json!({"spec": {"tolerations": [{"key": "node.kubernetes.io/unreachable",
            "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 2}]}});
        default_toleration_seconds(&mut own);
        let t = own["spec"]["tolerations"].as_array().expect("kept").clone();
        assert_eq!(t.len(), 2, "only not-ready added");
        assert_eq!(t[0]["tolerationSeconds"], 2);
        assert_eq!(t[1]["key"], "node.kubernetes.io/not-ready");

        let mut all = json!({"spec": {"tolerations": [{"operator": "Exists"}]}});
        default_toleration_seconds(&mut all);
        assert_eq!(all["spec"]["tolerations"].as_array().map(Vec::len), Some(1));
    }
}
