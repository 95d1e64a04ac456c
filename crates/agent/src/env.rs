//! Container environment as the kubelet builds it: `envFrom` first (ConfigMaps and Secrets,
//! with prefixes), then `env` in order (`value` with `$(VAR)` expansion, `fieldRef`,
//! `resourceFieldRef`, `configMapKeyRef`, `secretKeyRef`). ConfigMaps and Secrets are fetched
//! once per container start; resolution itself is pure so it can be tested without an API.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, ResourceFieldSelector, Secret};
use kube::Api;

use crate::util;

/// Why the environment could not be built; the message is upstream's and becomes the
/// container's `CreateContainerConfigError` waiting message.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{0}")]
pub struct EnvError(pub String);

/// ConfigMaps and Secrets of the pod's namespace by name; `None`: not found.
#[derive(Default, Debug)]
pub struct Sources {
    pub config_maps: HashMap<String, Option<BTreeMap<String, String>>>,
    pub secrets: HashMap<String, Option<BTreeMap<String, String>>>,
}

/// Node facts the downward API needs when a container sets no limit.
#[derive(Clone, Debug)]
pub struct NodeFacts {
    pub name: String,
    pub ip: String,
    /// Allocatable CPU in millicores and memory in bytes.
    pub cpu_millis: i64,
    pub memory_bytes: i64,
}

impl NodeFacts {
    /// This host's CPUs and memory stand in for allocatable (no reservations are made).
    pub fn of_host(name: &str, ip: &str) -> NodeFacts {
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get() as i64)
            .unwrap_or(1);
        let memory = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("MemTotal:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|kb| kb.parse::<i64>().ok())
            })
            .map(|kb| kb * 1024)
            .unwrap_or(0);
        NodeFacts {
            name: name.to_string(),
            ip: ip.to_string(),
            cpu_millis: cpus * 1000,
            memory_bytes: memory,
        }
    }
}

/// Secret values as strings (environment variables cannot hold arbitrary bytes anyway).
pub fn secret_data(s: &Secret) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = s
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), String::from_utf8_lossy(&v.0).into_owned()))
        .collect();
    for (k, v) in s.string_data.iter().flatten() {
        out.insert(k.clone(), v.clone());
    }
    out
}

/// ConfigMap values; binaryData entries included as (lossy) text.
pub fn config_map_data(cm: &ConfigMap) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = cm.data.clone().unwrap_or_default();
    for (k, v) in cm.binary_data.iter().flatten() {
        out.insert(k.clone(), String::from_utf8_lossy(&v.0).into_owned());
    }
    out
}

/// Names of the ConfigMaps and Secrets a container's environment refers to.
pub fn referenced(c: &Container) -> (Vec<String>, Vec<String>) {
    let (mut cms, mut secrets) = (Vec::new(), Vec::new());
    for f in c.env_from.iter().flatten() {
        if let Some(r) = &f.config_map_ref {
            cms.push(r.name.clone());
        }
        if let Some(r) = &f.secret_ref {
            secrets.push(r.name.clone());
        }
    }
    for e in c.env.iter().flatten() {
        if let Some(vf) = &e.value_from {
            if let Some(r) = &vf.config_map_key_ref {
                cms.push(r.name.clone());
            }
            if let Some(r) = &vf.secret_key_ref {
                secrets.push(r.name.clone());
            }
        }
    }
    (cms, secrets)
}

/// Fetch what `names` refers to; a 404 is recorded as absent, other errors fail.
pub async fn fetch(
    client: &kube::Client,
    namespace: &str,
    config_maps: &[String],
    secrets: &[String],
) -> Result<Sources, kube::Error> {
    let mut out = Sources::default();
    let cm_api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    for n in config_maps {
        if !out.config_maps.contains_key(n) {
            let v = cm_api.get_opt(n).await?.map(|cm| config_map_data(&cm));
            out.config_maps.insert(n.clone(), v);
        }
    }
    let s_api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    for n in secrets {
        if !out.secrets.contains_key(n) {
            let v = s_api.get_opt(n).await?.map(|s| secret_data(&s));
            out.secrets.insert(n.clone(), v);
        }
    }
    Ok(out)
}

/// `fieldRef` values of the downward API (env and volumes share these).
pub fn field_value(pod: &Pod, node: &NodeFacts, pod_ip: &str, path: &str) -> Option<String> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    Some(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "metadata.labels" => format_map(meta.labels.as_ref()),
        "metadata.annotations" => format_map(meta.annotations.as_ref()),
        "spec.nodeName" => node.name.clone(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.podIP" | "status.podIPs" => pod_ip.to_string(),
        "status.hostIP" | "status.hostIPs" => node.ip.clone(),
        p => {
            // metadata.labels['key'] / metadata.annotations['key']
            let (map, rest) = if let Some(r) = p.strip_prefix("metadata.labels[") {
                (meta.labels.as_ref(), r)
            } else if let Some(r) = p.strip_prefix("metadata.annotations[") {
                (meta.annotations.as_ref(), r)
            } else {
                return None;
            };
            let key = rest
                .strip_suffix(']')?
                .trim_matches(|c| c == '\'' || c == '"');
            map.and_then(|m| m.get(key)).cloned().unwrap_or_default()
        }
    })
}

/// `key="value"` lines, sorted, values quoted as Go's `%q` (what the kubelet writes).
pub fn format_map(m: Option<&BTreeMap<String, String>>) -> String {
    m.into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", go_quote(v)))
        .collect::<Vec<_>>()
        .join("\n")
}

fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `resourceFieldRef`: the container's request or limit divided by the divisor, rounded up;
/// an unset limit is the node's allocatable, as upstream.
pub fn resource_value(
    pod: &Pod,
    default_container: &Container,
    node: &NodeFacts,
    sel: &ResourceFieldSelector,
) -> Result<String, EnvError> {
    let c = match sel.container_name.as_deref().filter(|n| !n.is_empty()) {
        Some(name) => pod
            .spec
            .iter()
            .flat_map(|s| {
                s.containers
                    .iter()
                    .chain(s.init_containers.iter().flatten())
            })
            .find(|c| c.name == name)
            .ok_or_else(|| EnvError(format!("cannot find container {name:?}")))?,
        None => default_container,
    };
    let res = c.resources.as_ref();
    let (kind, resource) = sel
        .resource
        .split_once('.')
        .ok_or_else(|| EnvError(format!("unsupported container resource : {}", sel.resource)))?;
    let is_cpu = resource == "cpu";
    let scale = if is_cpu { 1000.0 } else { 1.0 };
    let map = match kind {
        "limits" => res.and_then(|r| r.limits.as_ref()),
        "requests" => res.and_then(|r| r.requests.as_ref()),
        _ => {
            return Err(EnvError(format!(
                "unsupported container resource : {}",
                sel.resource
            )));
        }
    };
    let value = map
        .and_then(|m| m.get(resource))
        .and_then(|q| util::quantity(&q.0, scale));
    let value = match (value, kind, resource) {
        (Some(v), _, _) => v,
        (None, "limits", "cpu") => node.cpu_millis,
        (None, "limits", "memory") => node.memory_bytes,
        // Unset requests (and limits of other resources) read as 0.
        _ => 0,
    };
    let divisor = sel
        .divisor
        .as_ref()
        .and_then(|d| util::quantity(&d.0, scale))
        .filter(|d| *d > 0)
        .unwrap_or(scale as i64);
    Ok(((value + divisor - 1) / divisor).to_string())
}

fn not_found(kind: &str, name: &str) -> EnvError {
    EnvError(format!("{kind} \"{name}\" not found"))
}

/// The container's environment, in upstream's order; an unresolvable non-optional reference
/// fails the whole container with upstream's message.
pub fn resolve(
    pod: &Pod,
    c: &Container,
    node: &NodeFacts,
    pod_ip: &str,
    src: &Sources,
) -> Result<Vec<(String, String)>, EnvError> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut vars: Vec<(String, String)> = Vec::new();
    let mut known: HashMap<String, String> = HashMap::new();
    let set = |vars: &mut Vec<(String, String)>,
               known: &mut HashMap<String, String>,
               k: String,
               v: String| {
        if let Some(slot) = vars.iter_mut().find(|(n, _)| *n == k) {
            slot.1 = v.clone();
        } else {
            vars.push((k.clone(), v.clone()));
        }
        known.insert(k, v);
    };
    for f in c.env_from.iter().flatten() {
        let prefix = f.prefix.clone().unwrap_or_default();
        let data = if let Some(r) = &f.config_map_ref {
            match src.config_maps.get(&r.name).and_then(|d| d.as_ref()) {
                Some(d) => d,
                None if r.optional == Some(true) => continue,
                None => return Err(not_found("configmap", &r.name)),
            }
        } else if let Some(r) = &f.secret_ref {
            match src.secrets.get(&r.name).and_then(|d| d.as_ref()) {
                Some(d) => d,
                None if r.optional == Some(true) => continue,
                None => return Err(not_found("secret", &r.name)),
            }
        } else {
            continue;
        };
        for (k, v) in data {
            let key = format!("{prefix}{k}");
            // Invalid names are skipped (upstream reports them in an event).
            if valid_env_name(&key) {
                set(&mut vars, &mut known, key, v.clone());
            }
        }
    }
    for e in c.env.iter().flatten() {
        let value = if let Some(v) = &e.value {
            crate::pods::expand(v, &known)
        } else if let Some(vf) = &e.value_from {
            if let Some(f) = &vf.field_ref {
                field_value(pod, node, pod_ip, &f.field_path).unwrap_or_default()
            } else if let Some(r) = &vf.resource_field_ref {
                resource_value(pod, c, node, r)?
            } else if let Some(r) = &vf.config_map_key_ref {
                let optional = r.optional == Some(true);
                match src.config_maps.get(&r.name).and_then(|d| d.as_ref()) {
                    None if optional => continue,
                    None => return Err(not_found("configmap", &r.name)),
                    Some(d) => match d.get(&r.key) {
                        Some(v) => v.clone(),
                        None if optional => continue,
                        None => {
                            return Err(EnvError(format!(
                                "couldn't find key {} in ConfigMap {ns}/{}",
                                r.key, r.name
                            )));
                        }
                    },
                }
            } else if let Some(r) = &vf.secret_key_ref {
                let optional = r.optional == Some(true);
                match src.secrets.get(&r.name).and_then(|d| d.as_ref()) {
                    None if optional => continue,
                    None => return Err(not_found("secret", &r.name)),
                    Some(d) => match d.get(&r.key) {
                        Some(v) => v.clone(),
                        None if optional => continue,
                        None => {
                            return Err(EnvError(format!(
                                "couldn't find key {} in Secret {ns}/{}",
                                r.key, r.name
                            )));
                        }
                    },
                }
            } else {
                String::new()
            }
        } else {
            String::new()
        };
        set(&mut vars, &mut known, e.name.clone(), value);
    }
    Ok(vars)
}

/// C identifiers plus `-` and `.` (upstream's relaxed environment variable names).
fn valid_env_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node() -> NodeFacts {
        NodeFacts {
            name: "n1".into(),
            ip: "10.0.0.1".into(),
            cpu_millis: 4000,
            memory_bytes: 8 << 30,
        }
    }

    fn pod(containers: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1",
                         "labels": {"app": "web", "tier": "a\"b"}},
            "spec": {"containers": containers},
        }))
        .unwrap_or_default()
    }

    fn sources() -> Sources {
        let mut s = Sources::default();
        s.config_maps.insert(
            "cm".into(),
            Some([("a".into(), "1".into()), ("b".into(), "2".into())].into()),
        );
        s.config_maps.insert("gone".into(), None);
        s.secrets
            .insert("sec".into(), Some([("pw".into(), "hunter2".into())].into()));
        s
    }

    #[test]
    fn env_from_then_env_overrides_and_expands() {
        let p = pod(json!([{"name": "c", "image": "i",
            "envFrom": [{"configMapRef": {"name": "cm"}, "prefix": "CM_"},
                        {"secretRef": {"name": "sec"}}],
            "env": [{"name": "CM_a", "value": "x$(pw)"},
                    {"name": "K", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "b"}}},
                    {"name": "S", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "pw"}}},
                    {"name": "O", "valueFrom": {"configMapKeyRef":
                        {"name": "gone", "key": "b", "optional": true}}},
                    {"name": "OK", "valueFrom": {"configMapKeyRef":
                        {"name": "cm", "key": "zz", "optional": true}}}]}]));
        let c = &p.spec.as_ref().expect("test").containers[0];
        let env = resolve(&p, c, &node(), "10.1.1.1", &sources()).expect("test");
        let m: HashMap<_, _> = env.iter().cloned().collect();
        assert_eq!(m["CM_a"], "xhunter2");
        assert_eq!(m["CM_b"], "2");
        assert_eq!(m["pw"], "hunter2");
        assert_eq!(m["K"], "2");
        assert_eq!(m["S"], "hunter2");
        assert!(!m.contains_key("O") && !m.contains_key("OK"));
        assert_eq!(env.iter().filter(|(k, _)| k == "CM_a").count(), 1);
    }

    #[test]
    fn missing_sources_fail_with_upstream_messages() {
        let one = |env: serde_json::Value, env_from: serde_json::Value| {
            let p = pod(json!([{"name": "c", "image": "i", "env": env, "envFrom": env_from}]));
            let c = p.spec.as_ref().expect("test").containers[0].clone();
            resolve(&p, &c, &node(), "", &sources()).map(|_| ())
        };
        assert_eq!(
            one(
                json!([{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "x", "key": "k"}}}]),
                json!([])
            ),
            Err(EnvError("configmap \"x\" not found".into()))
        );
        assert_eq!(
            one(
                json!([{"name": "A", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "k"}}}]),
                json!([])
            ),
            Err(EnvError("couldn't find key k in Secret ns/sec".into()))
        );
        assert_eq!(
            one(json!([]), json!([{"secretRef": {"name": "nope"}}])),
            Err(EnvError("secret \"nope\" not found".into()))
        );
        assert_eq!(
            one(
                json!([]),
                json!([{"secretRef": {"name": "nope", "optional": true}}])
            ),
            Ok(())
        );
    }

    #[test]
    fn resource_field_refs_round_up_and_default_to_node() {
        let p = pod(json!([{"name": "c", "image": "i",
            "resources": {"limits": {"memory": "64Mi"}, "requests": {"cpu": "250m"}}}]));
        let c = &p.spec.as_ref().expect("test").containers[0];
        let sel = |r: &str, d: Option<&str>| ResourceFieldSelector {
            resource: r.into(),
            divisor: d.map(|d| k8s_openapi::apimachinery::pkg::api::resource::Quantity(d.into())),
            container_name: None,
        };
        let v = |r, d| resource_value(&p, c, &node(), &sel(r, d)).expect("test");
        assert_eq!(v("requests.cpu", None), "1");
        assert_eq!(v("requests.cpu", Some("1m")), "250");
        assert_eq!(v("limits.cpu", None), "4");
        assert_eq!(v("limits.memory", Some("1Mi")), "64");
        assert_eq!(v("limits.memory", None), (64 << 20).to_string());
        assert_eq!(v("requests.memory", None), "0");
    }

    #[test]
    fn downward_labels_are_go_quoted() {
        let p = pod(json!([]));
        assert_eq!(
            field_value(&p, &node(), "", "metadata.labels").expect("test"),
            "app=\"web\"\ntier=\"a\\\"b\""
        );
        assert_eq!(
            field_value(&p, &node(), "", "metadata.labels['app']").expect("test"),
            "web"
        );
    }
}
