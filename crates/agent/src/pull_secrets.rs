//! Registry credentials from a pod's `imagePullSecrets`, as the kubelet's keyring: secrets of
//! type `kubernetes.io/dockerconfigjson` (`.dockerconfigjson`, `{"auths": {...}}`) and the
//! legacy `kubernetes.io/dockercfg` (`.dockercfg`, the bare map) are read, and the entries whose
//! key matches the image's registry (host with `*` label globs, port, path prefix) are offered
//! to CRI PullImage, most specific first.

use base64::Engine;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::Api;
use serde_json::Value;

use crate::cri::api;

/// One credential of a docker config, under the registry key it was found at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub username: String,
    pub password: String,
    pub identity_token: String,
    pub registry_token: String,
}

impl Entry {
    /// The CRI form; `server_address` is the registry key, as the kubelet sends it.
    pub fn auth_config(&self) -> api::AuthConfig {
        api::AuthConfig {
            username: self.username.clone(),
            password: self.password.clone(),
            server_address: self.key.clone(),
            identity_token: self.identity_token.clone(),
            registry_token: self.registry_token.clone(),
            ..Default::default()
        }
    }
}

/// Parse a docker config: `{"auths": {key: {...}}}` or the legacy bare `{key: {...}}`.
/// `auth` (base64 `user:password`) fills username and password when those are absent.
pub fn parse(data: &[u8]) -> Vec<Entry> {
    let Ok(v) = serde_json::from_slice::<Value>(data) else {
        return Vec::new();
    };
    let map = match v.get("auths").and_then(Value::as_object) {
        Some(m) => m.clone(),
        None => v.as_object().cloned().unwrap_or_default(),
    };
    let s = |e: &Value, k: &str| e.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let mut out = Vec::new();
    for (key, e) in map {
        let mut entry = Entry {
            key,
            username: s(&e, "username"),
            password: s(&e, "password"),
            identity_token: s(&e, "identitytoken"),
            registry_token: s(&e, "registrytoken"),
        };
        let auth = s(&e, "auth");
        if !auth.is_empty()
            && entry.username.is_empty()
            && let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(auth.trim())
            && let Ok(text) = String::from_utf8(raw)
            && let Some((u, p)) = text.split_once(':')
        {
            entry.username = u.to_string();
            entry.password = p.to_string();
        }
        out.push(entry);
    }
    out
}

/// The registry host (with port) and repository path of an image reference, Docker's way: a
/// first component with a `.` or `:` or `localhost` is a registry, otherwise it is Docker Hub.
pub fn split_image(image: &str) -> (String, String) {
    let image = image.split('@').next().unwrap_or(image);
    let (first, rest) = image.split_once('/').unwrap_or(("", image));
    let (host, path) = if !first.is_empty()
        && (first.contains('.') || first.contains(':') || first == "localhost")
    {
        (first.to_string(), rest.to_string())
    } else if first.is_empty() {
        ("docker.io".to_string(), format!("library/{rest}"))
    } else {
        ("docker.io".to_string(), image.to_string())
    };
    // The tag is not part of the path a key can name.
    let path = match path.rsplit_once(':') {
        Some((p, tag)) if !tag.contains('/') => p.to_string(),
        _ => path,
    };
    (host, path)
}

/// Docker Hub's many names are one registry.
fn canonical_host(h: &str) -> &str {
    match h {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => "docker.io",
        _ => h,
    }
}

/// A key (`https://host:port/path`, `host`, `*.host`, `host/path`) parsed into host, port and
/// path prefix.
fn parse_key(key: &str) -> (String, Option<String>, String) {
    let k = key
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let (hostport, path) = k.split_once('/').unwrap_or((k, ""));
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => (h, Some(p.to_string())),
        _ => (hostport, None),
    };
    // Docker Hub's legacy key is `https://index.docker.io/v1/`: the path is its API version.
    let path = if canonical_host(host) == "docker.io" && path.trim_end_matches('/') == "v1" {
        ""
    } else {
        path.trim_end_matches('/')
    };
    (canonical_host(host).to_string(), port, path.to_string())
}

/// Whether `pattern` (labels, `*` a whole-label or partial glob) matches `host` label by label.
fn host_matches(pattern: &str, host: &str) -> bool {
    let (p, h): (Vec<&str>, Vec<&str>) = (pattern.split('.').collect(), host.split('.').collect());
    p.len() == h.len()
        && p.iter().zip(&h).all(|(p, h)| {
            if let Some((pre, post)) = p.split_once('*') {
                h.len() >= pre.len() + post.len() && h.starts_with(pre) && h.ends_with(post)
            } else {
                p == h
            }
        })
}

/// Whether the registry key matches the image.
pub fn key_matches(key: &str, image: &str) -> bool {
    let (ihostport, ipath) = split_image(image);
    let (ihost, iport) = match ihostport.rsplit_once(':') {
        Some((h, p)) => (canonical_host(h).to_string(), Some(p.to_string())),
        None => (canonical_host(&ihostport).to_string(), None),
    };
    let (khost, kport, kpath) = parse_key(key);
    host_matches(&khost, &ihost)
        && kport == iport
        && (kpath.is_empty() || ipath == kpath || ipath.starts_with(&format!("{kpath}/")))
}

/// The credentials to try for `image`, most specific key first (longest, as the keyring
/// sorts), in the order of the secrets within the same key.
pub fn matching(entries: &[Entry], image: &str) -> Vec<Entry> {
    let mut m: Vec<Entry> = entries
        .iter()
        .filter(|e| key_matches(&e.key, image))
        .cloned()
        .collect();
    m.sort_by_key(|e| std::cmp::Reverse(parse_key(&e.key).2.len() + parse_key(&e.key).0.len()));
    m
}

/// Read the pod's pull secrets; names that could not be read are returned too, for the
/// `FailedToRetrieveImagePullSecret` event.
pub async fn of_pod(client: &kube::Client, pod: &Pod) -> (Vec<Entry>, Vec<String>) {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    let mut entries = Vec::new();
    let mut missing = Vec::new();
    for r in pod
        .spec
        .iter()
        .flat_map(|s| s.image_pull_secrets.iter().flatten())
    {
        let name = r.name.clone();
        match api.get_opt(&name).await {
            Ok(Some(s)) => {
                let key = match s.type_.as_deref() {
                    Some("kubernetes.io/dockercfg") => ".dockercfg",
                    _ => ".dockerconfigjson",
                };
                if let Some(data) = s.data.as_ref().and_then(|d| d.get(key)) {
                    entries.extend(parse(&data.0));
                }
            }
            Ok(None) => missing.push(name),
            Err(e) => {
                tracing::warn!(secret = %name, error = %e, "reading an image pull secret");
                missing.push(name);
            }
        }
    }
    (entries, missing)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str) -> Entry {
        Entry {
            key: key.into(),
            username: format!("u-{key}"),
            password: "p".into(),
            identity_token: String::new(),
            registry_token: String::new(),
        }
    }

    #[test]
    fn dockerconfigjson_and_legacy_dockercfg_parse() {
        let auth = base64::engine::general_purpose::STANDARD.encode("alice:s3cret");
        let json = format!(r#"{{"auths": {{"reg.example.com": {{"auth": "{auth}"}}}}}}"#);
        let e = parse(json.as_bytes());
        assert_eq!(e.len(), 1);
        assert_eq!(
            (
                e[0].key.as_str(),
                e[0].username.as_str(),
                e[0].password.as_str()
            ),
            ("reg.example.com", "alice", "s3cret")
        );
        let legacy = r#"{"https://index.docker.io/v1/": {"username": "bob", "password": "pw",
                         "email": "b@example.com"}}"#;
        let e = parse(legacy.as_bytes());
        assert_eq!(e[0].username, "bob");
        let cfg = e[0].auth_config();
        assert_eq!(cfg.server_address, "https://index.docker.io/v1/");
        assert_eq!(cfg.password, "pw");
        assert!(parse(b"not json").is_empty());
    }

    #[test]
    fn images_split_into_registry_and_path() {
        assert_eq!(
            split_image("busybox"),
            ("docker.io".into(), "library/busybox".into())
        );
        assert_eq!(
            split_image("team/app:1"),
            ("docker.io".into(), "team/app".into())
        );
        assert_eq!(
            split_image("reg.example.com:5000/team/app:2@sha256:ab"),
            ("reg.example.com:5000".into(), "team/app".into())
        );
        assert_eq!(
            split_image("localhost/app"),
            ("localhost".into(), "app".into())
        );
    }

    #[test]
    fn keys_match_host_port_globs_and_path_prefixes() {
        assert!(key_matches("reg.example.com", "reg.example.com/app:1"));
        assert!(key_matches(
            "https://reg.example.com/v2/",
            "reg.example.com/v2/x"
        ));
        assert!(!key_matches("reg.example.com", "other.example.com/app"));
        assert!(!key_matches("reg.example.com", "reg.example.com:5000/app"));
        assert!(key_matches(
            "reg.example.com:5000",
            "reg.example.com:5000/app"
        ));
        assert!(key_matches("*.example.com", "reg.example.com/app"));
        assert!(!key_matches("*.example.com", "a.b.example.com/app"));
        assert!(key_matches(
            "reg.example.com/team",
            "reg.example.com/team/app"
        ));
        assert!(!key_matches(
            "reg.example.com/team",
            "reg.example.com/teammate/app"
        ));
        for hub in [
            "https://index.docker.io/v1/",
            "docker.io",
            "index.docker.io",
        ] {
            assert!(key_matches(hub, "busybox:1.36"), "{hub}");
            assert!(key_matches(hub, "docker.io/library/busybox"), "{hub}");
        }
        assert!(!key_matches("https://index.docker.io/v1/", "quay.io/x/y"));
    }

    #[test]
    fn the_most_specific_key_comes_first() {
        let entries = [
            entry("*.example.com"),
            entry("reg.example.com/team/app"),
            entry("reg.example.com"),
            entry("quay.io"),
        ];
        let keys: Vec<String> = matching(&entries, "reg.example.com/team/app:3")
            .into_iter()
            .map(|e| e.key)
            .collect();
        assert_eq!(
            keys,
            [
                "reg.example.com/team/app",
                "reg.example.com",
                "*.example.com"
            ]
        );
        assert!(matching(&entries, "busybox").is_empty());
    }
}
