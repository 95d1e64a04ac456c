//! Reading a request: which resource a URL names, the query parameters as Go parses them, the
//! body in whichever encoding the client chose, and what the client accepts back.

use std::collections::HashMap;

use bytes::Bytes;
use serde_json::Value;
use skiff_api::registry::{self, ResourceSpec};

use crate::error::{ApiError, Result};

/// The largest request body the server reads (upstream's default).
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// A URL that names a resource, a collection or a subresource.
#[derive(Debug, Clone)]
pub struct ResourcePath {
    /// The resource.
    pub spec: &'static ResourceSpec,
    /// Namespace from the URL.
    pub namespace: Option<String>,
    /// Object name, for item URLs.
    pub name: Option<String>,
    /// Subresource, for `.../<name>/<sub>` URLs.
    pub subresource: Option<String>,
}

/// What a path under `/api` or `/apis` addresses.
#[derive(Debug, Clone)]
pub enum ApiPath {
    /// `/api`.
    CoreVersions,
    /// `/apis`.
    Groups,
    /// `/apis/<group>`.
    Group(String),
    /// `/api/v1` or `/apis/<g>/<v>`.
    GroupVersion(String, String),
    /// A resource URL.
    Resource(ResourcePath),
}

/// Parse a path below `/api` or `/apis`.
pub fn parse_api_path(path: &str) -> Result<ApiPath> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest): (&str, &str, &[&str]) = match segs.as_slice() {
        ["api"] => return Ok(ApiPath::CoreVersions),
        ["apis"] => return Ok(ApiPath::Groups),
        ["apis", g] => {
            if registry::groups().iter().any(|(name, _)| name == g) {
                return Ok(ApiPath::Group(g.to_string()));
            }
            return Err(ApiError::NoSuchPath);
        }
        ["api", v, rest @ ..] => ("", v, rest),
        ["apis", g, v, rest @ ..] => (g, v, rest),
        _ => return Err(ApiError::NoSuchPath),
    };
    let served = if group.is_empty() {
        version == "v1"
    } else {
        registry::groups()
            .iter()
            .any(|(g, v)| *g == group && *v == version)
    };
    if !served {
        return Err(ApiError::NoSuchPath);
    }
    if rest.is_empty() {
        return Ok(ApiPath::GroupVersion(
            group.to_string(),
            version.to_string(),
        ));
    }
    let lookup =
        |resource: &str| registry::lookup(group, version, resource).ok_or(ApiError::NoSuchPath);
    let mk =
        |spec: &'static ResourceSpec, ns: Option<&str>, name: Option<&str>, sub: Option<&str>| {
            if let Some(s) = sub
                && spec.subresource(s).is_none()
            {
                return Err(ApiError::NoSuchPath);
            }
            if ns.is_some() && !spec.namespaced {
                return Err(ApiError::NoSuchPath);
            }
            Ok(ApiPath::Resource(ResourcePath {
                spec,
                namespace: ns.map(str::to_string),
                name: name.map(str::to_string),
                subresource: sub.map(str::to_string),
            }))
        };
    match rest {
        // /namespaces/<ns>/<resource>... (but /namespaces/<name>/status is the namespace's own)
        ["namespaces", ns, resource, tail @ ..]
            if group.is_empty()
                && matches!(*resource, "status" | "finalize")
                && tail.is_empty() =>
        {
            mk(lookup("namespaces")?, None, Some(ns), Some(resource))
        }
        ["namespaces", ns, resource] => mk(lookup(resource)?, Some(ns), None, None),
        ["namespaces", ns, resource, name] => mk(lookup(resource)?, Some(ns), Some(name), None),
        ["namespaces", ns, resource, name, sub] => {
            mk(lookup(resource)?, Some(ns), Some(name), Some(sub))
        }
        [resource] => mk(lookup(resource)?, None, None, None),
        [resource, name] => mk(lookup(resource)?, None, Some(name), None),
        [resource, name, sub] => mk(lookup(resource)?, None, Some(name), Some(sub)),
        _ => Err(ApiError::NoSuchPath),
    }
}

/// Query parameters, parsed once.
#[derive(Debug, Clone, Default)]
pub struct Query(HashMap<String, Vec<String>>);

impl Query {
    /// Parse a raw query string.
    pub fn parse(raw: Option<&str>) -> Self {
        let mut map: HashMap<String, Vec<String>> = HashMap::new();
        for part in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            map.entry(percent_decode(k))
                .or_default()
                .push(percent_decode(v));
        }
        Self(map)
    }

    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.first()).map(String::as_str)
    }

    /// All values of `key`.
    pub fn all(&self, key: &str) -> &[String] {
        self.0.get(key).map(Vec::as_slice).unwrap_or(&[])
    }

    /// A boolean as Go's `strconv.ParseBool` reads it (`1`, `t`, `T`, `TRUE`, `true`, `True`...).
    pub fn bool(&self, key: &str) -> Result<bool> {
        match self.get(key) {
            None => Ok(false),
            Some(v) => parse_go_bool(v).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "failed to parse query parameter {key}: strconv.ParseBool: parsing \"{v}\": invalid syntax"
                ))
            }),
        }
    }

    /// An integer parameter.
    pub fn int(&self, key: &str) -> Result<Option<i64>> {
        match self.get(key) {
            None | Some("") => Ok(None),
            Some(v) => v.parse::<i64>().map(Some).map_err(|_| {
                ApiError::bad_request(format!(
                    "failed to parse query parameter {key}: strconv.ParseInt: parsing \"{v}\": invalid syntax"
                ))
            }),
        }
    }

    /// `dryRun=All`.
    pub fn dry_run(&self) -> Result<bool> {
        let mut any = false;
        for v in self.all("dryRun") {
            match v.as_str() {
                "All" => any = true,
                "" => {}
                other => {
                    return Err(ApiError::bad_request(format!(
                        "Invalid dry run value: {other}: supported values: \"All\""
                    )));
                }
            }
        }
        Ok(any)
    }
}

/// Go's `strconv.ParseBool`.
pub fn parse_go_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// How the body was encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    /// JSON.
    Json,
    /// YAML.
    Yaml,
    /// Kubernetes protobuf.
    Protobuf,
}

/// The media type part of a Content-Type header.
pub fn media_type(content_type: Option<&str>) -> String {
    content_type
        .unwrap_or("application/json")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Decode an object body (create/update), in JSON, YAML or protobuf.
pub fn decode_object(content_type: Option<&str>, body: &Bytes) -> Result<(Value, BodyFormat)> {
    let mt = media_type(content_type);
    if body.len() > MAX_BODY_BYTES {
        return Err(ApiError::TooLarge(MAX_BODY_BYTES));
    }
    match mt.as_str() {
        "application/json" | "" | "*/*" => {
            let v = serde_json::from_slice(body).map_err(|e| {
                ApiError::bad_request(format!("error decoding request body as JSON: {e}"))
            })?;
            Ok((v, BodyFormat::Json))
        }
        "application/yaml" => {
            let text = std::str::from_utf8(body)
                .map_err(|_| ApiError::bad_request("request body is not valid UTF-8 YAML"))?;
            let v: Value = serde_saphyr::from_str(text).map_err(|e| {
                ApiError::bad_request(format!("error decoding request body as YAML: {e}"))
            })?;
            Ok((v, BodyFormat::Yaml))
        }
        "application/vnd.kubernetes.protobuf" => {
            let v = skiff_api::protobuf::decode(body)
                .map_err(|e| ApiError::bad_request(format!("error decoding protobuf body: {e}")))?;
            Ok((v, BodyFormat::Protobuf))
        }
        other => Err(ApiError::UnsupportedMediaType(format!(
            "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf (got {other})"
        ))),
    }
}

/// What the client asked to get back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wanted {
    /// The object or list as JSON.
    Object,
    /// A `meta.k8s.io/v1` Table.
    Table,
}

/// Read the Accept header: a Table when the client prefers one we can make, else JSON.
pub fn wanted(accept: Option<&str>) -> Result<Wanted> {
    let Some(accept) = accept else {
        return Ok(Wanted::Object);
    };
    let mut rejected_table: Option<String> = None;
    for clause in accept.split(',') {
        let mut parts = clause.split(';').map(str::trim);
        let mt = parts.next().unwrap_or("");
        let params: HashMap<&str, &str> = parts.filter_map(|p| p.split_once('=')).collect();
        if params.get("as") == Some(&"Table") {
            let g = params.get("g").copied().unwrap_or("");
            let v = params.get("v").copied().unwrap_or("");
            if g == "meta.k8s.io" && (v == "v1" || v == "v1beta1") {
                return Ok(Wanted::Table);
            }
            rejected_table = Some(format!("{g}/{v}"));
            continue;
        }
        if params.contains_key("as") {
            continue;
        }
        if matches!(
            mt,
            "application/json"
                | "*/*"
                | "application/*"
                | "application/vnd.kubernetes.protobuf"
                | "application/yaml"
        ) {
            return Ok(Wanted::Object);
        }
    }
    match rejected_table {
        Some(gv) => Err(ApiError::NotAcceptable(format!(
            "no Table exists in group version {gv}"
        ))),
        None => Ok(Wanted::Object),
    }
}

/// Whether the client asked for aggregated discovery (`as=APIGroupDiscoveryList`).
pub fn wants_aggregated_discovery(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| {
        a.split(',').any(|c| {
            c.contains("as=APIGroupDiscoveryList")
                && c.contains("g=apidiscovery.k8s.io")
                && c.contains("v=v2")
                && !c.contains("v=v2beta1")
        })
    })
}

/// The `api-version`-independent shape check of a body against the URL's resource.
pub fn check_kind(spec: &ResourceSpec, obj: &Value) -> Result<()> {
    if !obj.is_object() {
        return Err(ApiError::bad_request(format!(
            "the body must be a JSON object describing a {}",
            spec.kind
        )));
    }
    if let Some(kind) = obj.get("kind").and_then(Value::as_str)
        && !kind.is_empty()
        && kind != spec.kind
    {
        return Err(ApiError::bad_request(format!(
            "the kind \"{kind}\" in the request body does not match the resource \"{}\" of the URL, which holds objects of kind \"{}\"",
            spec.qualified_resource(),
            spec.kind
        )));
    }
    if let Some(av) = obj.get("apiVersion").and_then(Value::as_str)
        && !av.is_empty()
        && av != spec.api_version()
    {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({av}) does not match the expected API version ({})",
            spec.api_version()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaced_item_paths_resolve() {
        let ApiPath::Resource(p) =
            parse_api_path("/apis/apps/v1/namespaces/default/deployments/web/scale").expect("ok")
        else {
            panic!("not a resource path")
        };
        assert_eq!(p.spec.resource, "deployments");
        assert_eq!(p.namespace.as_deref(), Some("default"));
        assert_eq!(p.name.as_deref(), Some("web"));
        assert_eq!(p.subresource.as_deref(), Some("scale"));
    }

    #[test]
    fn namespace_status_is_the_namespace_subresource() {
        let ApiPath::Resource(p) =
            parse_api_path("/api/v1/namespaces/kube-system/status").expect("ok")
        else {
            panic!("not a resource path")
        };
        assert_eq!(p.spec.resource, "namespaces");
        assert_eq!(p.name.as_deref(), Some("kube-system"));
        assert_eq!(p.subresource.as_deref(), Some("status"));
    }

    #[test]
    fn unknown_resources_are_not_found() {
        assert!(matches!(
            parse_api_path("/api/v1/widgets"),
            Err(ApiError::NoSuchPath)
        ));
        assert!(matches!(
            parse_api_path("/apis/nope/v1"),
            Err(ApiError::NoSuchPath)
        ));
        assert!(matches!(
            parse_api_path("/api/v1/namespaces/default/nodes"),
            Err(ApiError::NoSuchPath)
        ));
    }

    #[test]
    fn go_booleans_parse_like_strconv() {
        let q = Query::parse(Some("watch=True&a=1&b=false&c=yes"));
        assert!(q.bool("watch").expect("True"));
        assert!(q.bool("a").expect("1"));
        assert!(!q.bool("b").expect("false"));
        assert!(q.bool("c").is_err());
    }

    #[test]
    fn query_values_are_percent_decoded() {
        let q = Query::parse(Some(
            "fieldSelector=metadata.name%3Dp1&labelSelector=a+in+(x)",
        ));
        assert_eq!(q.get("fieldSelector"), Some("metadata.name=p1"));
        assert_eq!(q.get("labelSelector"), Some("a in (x)"));
    }

    #[test]
    fn kubectl_get_accept_header_wants_a_table() {
        let a = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert_eq!(wanted(Some(a)).expect("ok"), Wanted::Table);
        assert_eq!(
            wanted(Some("application/json")).expect("ok"),
            Wanted::Object
        );
        assert!(wanted(Some("application/json;as=Table;v=v9;g=meta.k8s.io")).is_err());
    }
}
