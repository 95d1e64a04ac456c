//! Strict field validation (`fieldValidation=Strict|Warn|Ignore`): finds the unknown and
//! duplicate fields of a JSON request body by walking its raw bytes against the kind's schema
//! from [`crate::openapi`], and renders them as upstream does.
//!
//! How the server uses the result (the HTTP layer's part):
//! - `Strict` (what kubectl apply/create/replace send by default): any problem fails the
//!   request with 400 BadRequest, message [`strict_error_message`].
//! - `Warn`: the request proceeds; each problem becomes one `Warning` response header, value
//!   [`warning_header_value`] (`299 - "unknown field \"spec.foo\""`).
//! - `Ignore`: nothing is checked.
//!
//! Upstream decodes into Go structs with sigs.k8s.io/json's strict mode; this walk mirrors what
//! that reports:
//! - Paths are the JSON names from the root joined with `.`, list items as `[i]`, map keys as
//!   `.key`: `spec.template.spec.containers[0].imagee`, `metadata.labels.app`.
//! - An unknown field is reported once and not descended into; a duplicate key of a struct or map
//!   is reported at its own path (`duplicate field "spec.replicas"`, or `"replicas"` at the root).
//! - Values that Go decodes opaquely (RawExtension, FieldsV1, apiextensions JSON, Time,
//!   Quantity, IntOrString) are not looked into.
//! - Problems are deduplicated and capped at 100, in document order.

use std::collections::HashSet;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::openapi;

/// Upstream stops collecting strict errors after this many.
const MAX_PROBLEMS: usize = 100;
/// Bounds `$ref`/`allOf` chains so a malformed definition cannot loop.
const MAX_RESOLVE_STEPS: usize = 16;

/// The unknown and duplicate fields of `body` (raw JSON of a whole object) for the kind
/// `group`/`version`/`kind`, as upstream words them: `unknown field "spec.replica"`,
/// `duplicate field "spec.replicas"`. Empty when the body is clean.
///
/// A kind without a built-in schema (custom resources) gets duplicate detection only. A body
/// that is not valid JSON yields the problems found before the syntax error; reporting the
/// syntax error is the decoder's job.
pub fn unknown_and_duplicate_fields(
    group: &str,
    version: &str,
    kind: &str,
    body: &[u8],
) -> Vec<String> {
    match openapi::definition_for_kind(group, version, kind) {
        Some(name) => walk(body, Node::Named(name)),
        None => walk(body, Node::Untyped),
    }
}

/// Drop the fields the schema of `group`/`version`/`kind` does not know, as upstream's decoder
/// does when a request is not validated strictly (`fieldValidation=Ignore|Warn`): what is not
/// in the type is not stored. Kinds without a built-in schema are left as they are.
pub fn prune_unknown_fields(group: &str, version: &str, kind: &str, obj: &mut Value) {
    if let Some(name) = openapi::definition_for_kind(group, version, kind) {
        prune(Node::Named(name), obj, 0);
    }
}

fn prune(node: Node<'_>, value: &mut Value, depth: usize) {
    if depth > MAX_PRUNE_DEPTH {
        return;
    }
    match shape(node) {
        Shape::Struct {
            properties,
            preserve_unknown,
        } => {
            if let Value::Object(map) = value {
                if !preserve_unknown {
                    map.retain(|k, _| properties.contains_key(k));
                }
                for (k, child) in map.iter_mut() {
                    if let Some(schema) = properties.get(k) {
                        prune(Node::Schema(schema), child, depth + 1);
                    }
                }
            }
        }
        Shape::Map(inner) => {
            if let Value::Object(map) = value {
                for child in map.values_mut() {
                    prune(inner, child, depth + 1);
                }
            }
        }
        Shape::Array(inner) => {
            if let Value::Array(items) = value {
                for child in items.iter_mut() {
                    prune(inner, child, depth + 1);
                }
            }
        }
        Shape::Opaque | Shape::Untyped => {}
    }
}

/// Deeper than any built-in type nests; a guard against self-referential schemas.
const MAX_PRUNE_DEPTH: usize = 64;

/// The duplicate keys anywhere in `body`, with no schema: for bodies that are not whole objects
/// (strategic-merge and merge patches), whose unknown fields are found by validating the
/// patched result instead.
pub fn duplicate_fields(body: &[u8]) -> Vec<String> {
    walk(body, Node::Untyped)
}

/// Upstream's BadRequest message for a body rejected by `fieldValidation=Strict`:
/// `Deployment in version "v1" cannot be handled as a Deployment: strict decoding error:
/// unknown field "spec.foo", unknown field "spec.bar"`.
pub fn strict_error_message(kind: &str, version: &str, problems: &[String]) -> String {
    format!(
        "{kind} in version \"{version}\" cannot be handled as a {kind}: strict decoding error: {}",
        problems.join(", ")
    )
}

/// The value of the `Warning` header carrying one problem under `fieldValidation=Warn`:
/// `299 - "unknown field \"spec.foo\""`.
pub fn warning_header_value(problem: &str) -> String {
    format!("299 - {}", go_quote(problem))
}

fn walk(body: &[u8], root: Node<'static>) -> Vec<String> {
    let mut ctx = Context {
        path: String::new(),
        problems: Vec::new(),
        seen: HashSet::new(),
    };
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    // A syntax error ends the walk; what was found before it still stands.
    let _ = Walk {
        ctx: &mut ctx,
        node: root,
    }
    .deserialize(&mut deserializer);
    ctx.problems
}

/// Go's `strconv.Quote` for the characters a field path can contain.
fn go_quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Where in the schema the walk is.
#[derive(Clone, Copy)]
enum Node<'s> {
    /// A definition by name.
    Named(&'s str),
    /// An inline schema (a property, an item, a map value).
    Schema(&'s Value),
    /// No schema (Go `interface{}`, or no built-in kind): duplicates only.
    Untyped,
}

/// What a schema means for field checking.
enum Shape<'s> {
    /// A Go struct: only these properties are known.
    Struct {
        properties: &'s Map<String, Value>,
        preserve_unknown: bool,
    },
    /// A Go map: any key, each value of this schema.
    Map(Node<'s>),
    /// A list of this item schema.
    Array(Node<'s>),
    /// Decoded by a custom unmarshaller (RawExtension, FieldsV1, JSON) or a scalar: not looked into.
    Opaque,
    /// `interface{}`: any keys, duplicates still reported.
    Untyped,
}

fn shape(node: Node<'_>) -> Shape<'_> {
    let definitions = openapi::definitions();
    let mut schema = match node {
        Node::Untyped => return Shape::Untyped,
        Node::Named(name) => match definitions.get(name) {
            Some(schema) => schema,
            None => return Shape::Opaque,
        },
        Node::Schema(schema) => schema,
    };
    for _ in 0..MAX_RESOLVE_STEPS {
        if let Some(first) = schema.get("allOf").and_then(|all| all.get(0)) {
            schema = first;
            continue;
        }
        match schema.get("$ref").and_then(Value::as_str) {
            Some(reference) => {
                let name = reference.rsplit('/').next().unwrap_or(reference);
                match definitions.get(name) {
                    Some(target) => schema = target,
                    None => return Shape::Opaque,
                }
            }
            None => break,
        }
    }
    if let Some(Value::Object(properties)) = schema.get("properties") {
        let preserve_unknown = schema
            .get("x-kubernetes-preserve-unknown-fields")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        return Shape::Struct {
            properties,
            preserve_unknown,
        };
    }
    match schema.get("additionalProperties") {
        Some(value @ Value::Object(_)) => return Shape::Map(Node::Schema(value)),
        Some(Value::Bool(true)) => return Shape::Map(Node::Untyped),
        _ => {}
    }
    if schema.get("type").and_then(Value::as_str) == Some("array") {
        return match schema.get("items") {
            Some(items) => Shape::Array(Node::Schema(items)),
            None => Shape::Array(Node::Untyped),
        };
    }
    Shape::Opaque
}

struct Context {
    /// The upstream-rendered path of the value being walked.
    path: String,
    problems: Vec<String>,
    seen: HashSet<String>,
}

impl Context {
    fn child_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn report(&mut self, what: &str, key: &str) {
        if self.problems.len() >= MAX_PROBLEMS {
            return;
        }
        let problem = format!("{what} {}", go_quote(&self.child_path(key)));
        if self.seen.insert(problem.clone()) {
            self.problems.push(problem);
        }
    }

    /// Walks the value under `key` (already read from `map`) with `node`'s schema.
    fn descend<'de, A: MapAccess<'de>>(
        &mut self,
        map: &mut A,
        key: &str,
        node: Node<'_>,
    ) -> Result<(), A::Error> {
        let restore = self.path.len();
        self.path = self.child_path(key);
        let result = map.next_value_seed(Walk { ctx: self, node });
        self.path.truncate(restore);
        result
    }
}

struct Walk<'c, 's> {
    ctx: &'c mut Context,
    node: Node<'s>,
}

impl<'de> DeserializeSeed<'de> for Walk<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_, '_> {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_i128<E>(self, _: i128) -> Result<(), E> {
        Ok(())
    }

    fn visit_u128<E>(self, _: u128) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_none<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let item = match shape(self.node) {
            Shape::Array(item) => item,
            Shape::Untyped => Node::Untyped,
            // A list where the schema has none: a type error for the decoder to report.
            _ => {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                return Ok(());
            }
        };
        let restore = self.ctx.path.len();
        let mut index = 0usize;
        loop {
            self.ctx.path.truncate(restore);
            self.ctx.path.push_str(&format!("[{index}]"));
            let next = seq.next_element_seed(Walk {
                ctx: self.ctx,
                node: item,
            });
            self.ctx.path.truncate(restore);
            if next?.is_none() {
                return Ok(());
            }
            index += 1;
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let ctx = self.ctx;
        match shape(self.node) {
            Shape::Struct {
                properties,
                preserve_unknown,
            } => {
                let mut seen = HashSet::new();
                while let Some(key) = map.next_key::<String>()? {
                    if let Some(property) = properties.get(&key) {
                        if !seen.insert(key.clone()) {
                            ctx.report("duplicate field", &key);
                        }
                        ctx.descend(&mut map, &key, Node::Schema(property))?;
                    } else if preserve_unknown {
                        ctx.descend(&mut map, &key, Node::Untyped)?;
                    } else {
                        ctx.report("unknown field", &key);
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            Shape::Map(value) => check_map_keys(ctx, &mut map, value)?,
            Shape::Untyped => check_map_keys(ctx, &mut map, Node::Untyped)?,
            // An object where the schema has a list or a scalar is a type error for the decoder.
            Shape::Array(_) | Shape::Opaque => {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            }
        }
        Ok(())
    }
}

/// A Go map (or `interface{}` object): every key allowed once.
fn check_map_keys<'de, A: MapAccess<'de>>(
    ctx: &mut Context,
    map: &mut A,
    value: Node<'_>,
) -> Result<(), A::Error> {
    let mut seen = HashSet::new();
    while let Some(key) = map.next_key::<String>()? {
        if !seen.insert(key.clone()) {
            ctx.report("duplicate field", &key);
        }
        ctx.descend(map, &key, value)?;
    }
    Ok(())
}

#[cfg(test)]
mod prune_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_fields_are_dropped_and_known_ones_kept() {
        let mut d = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"any-key": "kept"}, "bogus": 1},
            "spec": {
                "replica": 3,
                "template": {"spec": {"containers": [{"name": "c", "image": "x", "imagee": "typo"}]}}
            },
            "status": {"replicas": 1},
        });
        prune_unknown_fields("apps", "v1", "Deployment", &mut d);
        assert_eq!(
            d["metadata"],
            json!({"name": "web", "labels": {"any-key": "kept"}})
        );
        assert!(d["spec"].get("replica").is_none());
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][0],
            json!({"name": "c", "image": "x"})
        );
        assert_eq!(d["status"], json!({"replicas": 1}));
        assert_eq!(d["kind"], "Deployment");
    }

    #[test]
    fn configmap_data_keys_are_not_fields() {
        let mut cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"x.y": "1"}});
        let before = cm.clone();
        prune_unknown_fields("", "v1", "ConfigMap", &mut cm);
        assert_eq!(cm, before);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(body: &str) -> Vec<String> {
        unknown_and_duplicate_fields("apps", "v1", "Deployment", body.as_bytes())
    }

    const DEPLOYMENT: &str = r#"{
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web", "example.com/anything-goes": "x"},
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}\n"}},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "busybox:1.36", "command": ["sleep", "3600"],
                    "ports": [{"containerPort": 80, "protocol": "TCP"}],
                    "resources": {"limits": {"cpu": "100m", "memory": "64Mi"}},
                    "env": [{"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]}]}
            }
        },
        "status": {"replicas": 3, "conditions": [{"type": "Available", "status": "True"}]}
    }"#;

    #[test]
    fn a_clean_deployment_has_no_problems() {
        assert_eq!(deployment(DEPLOYMENT), Vec::<String>::new());
    }

    #[test]
    fn a_typo_deep_in_a_container_is_reported_with_its_full_path() {
        let body = DEPLOYMENT.replace(r#""image": "busybox:1.36""#, r#""imagee": "busybox:1.36""#);
        assert_eq!(
            deployment(&body),
            ["unknown field \"spec.template.spec.containers[0].imagee\""]
        );
    }

    #[test]
    fn unknown_fields_are_reported_in_document_order_and_not_descended_into() {
        let body = r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"x"},
            "spec":{"replica":2,"selector":{},"template":{"spec":{"containers":[{"name":"a"},{"name":"b","imagee":"x"}]}},
            "bogus":{"deeper":{"x":1}}}}"#;
        assert_eq!(
            deployment(body),
            [
                "unknown field \"spec.replica\"",
                "unknown field \"spec.template.spec.containers[1].imagee\"",
                "unknown field \"spec.bogus\"",
            ]
        );
    }

    #[test]
    fn duplicate_keys_are_reported_at_their_path() {
        let body = r#"{"apiVersion":"apps/v1","kind":"Deployment","kind":"Deployment","metadata":{"name":"x","labels":{"a":"1","a":"2"}},
            "spec":{"replicas":1,"replicas":2,"selector":{},"template":{}}}"#;
        assert_eq!(
            deployment(body),
            [
                "duplicate field \"kind\"",
                "duplicate field \"metadata.labels.a\"",
                "duplicate field \"spec.replicas\"",
            ]
        );
    }

    #[test]
    fn a_repeated_unknown_key_is_reported_once() {
        let body = r#"{"metadata":{"name":"x"},"spec":{"foo":1,"foo":2}}"#;
        assert_eq!(deployment(body), ["unknown field \"spec.foo\""]);
    }

    #[test]
    fn config_map_data_keys_are_free() {
        let body = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cm"},
            "data":{"app.properties":"a=b","key-with.dots_and-dashes":"v"},"binaryData":{"blob":"AAEC"},"immutable":false}"#;
        assert!(unknown_and_duplicate_fields("", "v1", "ConfigMap", body.as_bytes()).is_empty());
        let typo =
            r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cm"},"datas":{"a":"b"}}"#;
        assert_eq!(
            unknown_and_duplicate_fields("", "v1", "ConfigMap", typo.as_bytes()),
            ["unknown field \"datas\""]
        );
    }

    #[test]
    fn pod_type_meta_and_status_are_known() {
        let body = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","generateName":"p-","ownerReferences":[{"apiVersion":"apps/v1","kind":"ReplicaSet","name":"rs","uid":"u","controller":true}],
            "managedFields":[{"manager":"kubectl","operation":"Apply","fieldsType":"FieldsV1","fieldsV1":{"f:spec":{"f:containers":{"k:{\"name\":\"c\"}":{".":{}}}}}}]},
            "spec":{"containers":[{"name":"c","image":"i","securityContext":{"capabilities":{"add":["NET_ADMIN"]}}}],"nodeSelector":{"kubernetes.io/os":"linux"}},
            "status":{"phase":"Running","podIP":"10.0.0.1","containerStatuses":[{"name":"c","ready":true,"restartCount":0,"image":"i","imageID":"","state":{"running":{"startedAt":"2024-01-01T00:00:00Z"}}}]}}"#;
        assert_eq!(
            unknown_and_duplicate_fields("", "v1", "Pod", body.as_bytes()),
            Vec::<String>::new()
        );
    }

    #[test]
    fn metadata_field_typos_are_unknown() {
        let body = r#"{"metadata":{"name":"x","label":{"a":"b"}}}"#;
        assert_eq!(
            unknown_and_duplicate_fields("", "v1", "Secret", body.as_bytes()),
            ["unknown field \"metadata.label\""]
        );
    }

    #[test]
    fn opaque_values_are_not_looked_into() {
        // ControllerRevision.data is a RawExtension: anything goes, even duplicates (Go keeps the raw bytes).
        let body = r#"{"apiVersion":"apps/v1","kind":"ControllerRevision","metadata":{"name":"r"},"revision":1,
            "data":{"spec":{"template":{"whatever":1,"whatever":2}}}}"#;
        assert!(
            unknown_and_duplicate_fields("apps", "v1", "ControllerRevision", body.as_bytes())
                .is_empty()
        );
    }

    #[test]
    fn crd_schemas_allow_their_own_vocabulary() {
        let body = r#"{"apiVersion":"apiextensions.k8s.io/v1","kind":"CustomResourceDefinition","metadata":{"name":"widgets.example.com"},
            "spec":{"group":"example.com","scope":"Namespaced","names":{"plural":"widgets","kind":"Widget"},
            "versions":[{"name":"v1","served":true,"storage":true,"schema":{"openAPIV3Schema":{"type":"object",
                "properties":{"spec":{"type":"object","x-kubernetes-preserve-unknown-fields":true,
                "properties":{"size":{"type":"integer","default":3}}}}}}}]}}"#;
        assert_eq!(
            unknown_and_duplicate_fields(
                "apiextensions.k8s.io",
                "v1",
                "CustomResourceDefinition",
                body.as_bytes()
            ),
            Vec::<String>::new()
        );
    }

    #[test]
    fn unknown_kinds_get_duplicate_detection_only() {
        let body =
            r#"{"apiVersion":"example.com/v1","kind":"Widget","spec":{"anything":1,"anything":2}}"#;
        assert_eq!(
            unknown_and_duplicate_fields("example.com", "v1", "Widget", body.as_bytes()),
            ["duplicate field \"spec.anything\""]
        );
    }

    #[test]
    fn duplicate_fields_checks_patch_bodies_without_a_schema() {
        let patch = r#"{"spec":{"template":{"spec":{"$setElementOrder/containers":[{"name":"c"}],"containers":[{"name":"c","image":"a","image":"b"}]}}}}"#;
        assert_eq!(
            duplicate_fields(patch.as_bytes()),
            ["duplicate field \"spec.template.spec.containers[0].image\""]
        );
    }

    #[test]
    fn problems_found_before_a_syntax_error_are_kept() {
        let body = r#"{"spec":{"foo":1,"#;
        assert_eq!(deployment(body), ["unknown field \"spec.foo\""]);
    }

    #[test]
    fn problems_are_capped_at_one_hundred() {
        let fields: Vec<String> = (0..150).map(|i| format!("\"f{i}\":1")).collect();
        let body = format!("{{\"spec\":{{{}}}}}", fields.join(","));
        assert_eq!(deployment(&body).len(), 100);
    }

    #[test]
    fn strict_error_message_matches_upstream() {
        let problems = vec![
            "unknown field \"spec.foo\"".to_owned(),
            "unknown field \"spec.bar\"".to_owned(),
        ];
        assert_eq!(
            strict_error_message("Deployment", "v1", &problems),
            "Deployment in version \"v1\" cannot be handled as a Deployment: strict decoding error: unknown field \"spec.foo\", unknown field \"spec.bar\""
        );
    }

    #[test]
    fn warning_header_quotes_like_go() {
        assert_eq!(
            warning_header_value("unknown field \"spec.foo\""),
            r#"299 - "unknown field \"spec.foo\"""#
        );
    }

    #[test]
    fn service_ports_and_int_or_string_target_ports_are_known() {
        let body = r#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"s"},
            "spec":{"selector":{"app":"web"},"ports":[{"port":80,"targetPort":"http","protocol":"TCP","nodePort":30080,"prot":"x"}]}}"#;
        assert_eq!(
            unknown_and_duplicate_fields("", "v1", "Service", body.as_bytes()),
            ["unknown field \"spec.ports[0].prot\""]
        );
    }
}
