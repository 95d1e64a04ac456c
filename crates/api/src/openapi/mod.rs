//! `/openapi/v3`: the OpenAPI v3 index and per-group-version documents of the built-in kinds,
//! generated once from k8s-openapi's schemas and shaped like upstream's, plus the merged schema
//! definitions that strict field validation walks.
//!
//! Why this matters to kubectl (clients-protocol.md §1.0 item 3, §1.2):
//! - `apply`, `create -f` and `replace` look for a `patch` operation tagged with the object's
//!   `x-kubernetes-group-version-kind` that lists the `fieldValidation` query parameter; when
//!   found they skip client-side validation and send `fieldValidation=Strict`.
//! - `apply` computes its strategic merge patch from `components.schemas`, so list fields carry
//!   `x-kubernetes-patch-merge-key` / `x-kubernetes-patch-strategy` (without them a 3-way patch
//!   replaces whole lists), and the patch operation's request body lists
//!   `application/strategic-merge-patch+json`.
//! - `explain` finds the kind through any operation of the resource's path, then the schema
//!   through its `x-kubernetes-group-version-kind` list, and follows `allOf: [{$ref}]`.
//!
//! Serving (the HTTP layer's part): `GET /openapi/v3` answers [`v3_index`]; `GET
//! /openapi/v3/<path>` answers [`v3_document`] as `application/json`. Upstream also sets
//! `ETag: "<hash>"`, and when the request's `hash` query parameter equals [`v3_hash`] it adds
//! `Cache-Control: public, immutable` (the document never changes within one binary).
//!
//! k8s-openapi's schemars output already uses upstream's definition names (`io.k8s.api...`),
//! descriptions, types and formats. What it lacks, and what is added here: the `allOf` wrapping
//! of references with siblings, every `x-kubernetes-*` extension of api-facts.md §2.4–2.5, the
//! group-version-kind tags, `...List` kinds, upstream's shapes of IntOrString and Quantity, and
//! the `paths`.

mod extensions;
mod resources;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::OnceLock;

use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use schemars::{SchemaGenerator, generate::SchemaSettings};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha512};

use resources::{KindEntry, SubVerbs, TypeRef, Verbs};

/// Where `$ref`s point, as upstream's v3 documents spell it.
const REF_PREFIX: &str = "#/components/schemas/";
const META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1";
const INT_OR_STRING: &str = "io.k8s.apimachinery.pkg.util.intstr.IntOrString";
const QUANTITY: &str = "io.k8s.apimachinery.pkg.api.resource.Quantity";
/// The media types of every response body, as upstream lists them.
const RESPONSE_MEDIA_TYPES: [&str; 3] = [
    "application/json",
    "application/vnd.kubernetes.protobuf",
    "application/yaml",
];
/// The patch types a built-in resource accepts.
const PATCH_MEDIA_TYPES: [&str; 4] = [
    "application/apply-patch+yaml",
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
];

/// One served group-version document.
struct Document {
    bytes: Vec<u8>,
    /// Uppercase hex SHA-512 of `bytes`, as upstream computes it.
    hash: String,
}

/// Everything generated, once per process.
struct Catalog {
    /// `api/v1`, `apis/apps/v1`, ... → document.
    documents: BTreeMap<String, Document>,
    /// The union of every document's `components.schemas`.
    definitions: Map<String, Value>,
    /// (group, version, kind) → definition name.
    kinds: BTreeMap<(String, String, String), String>,
}

static CATALOG: OnceLock<Catalog> = OnceLock::new();

fn catalog() -> &'static Catalog {
    CATALOG.get_or_init(build_catalog)
}

/// The root of `/openapi/v3`: `{"paths": {"api/v1": {"serverRelativeURL":
/// "/openapi/v3/api/v1?hash=<HASH>"}, ...}}` for every built-in group-version, plus `extra`
/// entries `(path, hash)` for documents served elsewhere (custom resources' group-versions).
pub fn v3_index(extra: &[(&str, &str)]) -> Value {
    let mut paths = Map::new();
    let builtin = catalog()
        .documents
        .iter()
        .map(|(path, doc)| (path.as_str(), doc.hash.as_str()));
    for (path, hash) in builtin.chain(extra.iter().copied()) {
        paths.insert(
            path.to_owned(),
            json!({ "serverRelativeURL": format!("/openapi/v3/{path}?hash={hash}") }),
        );
    }
    json!({ "paths": paths })
}

/// The JSON document of one group-version. `path` is `api/v1` or `apis/<group>/<version>`; a
/// leading `/` or `/openapi/v3/` is accepted too. `None` for a group-version not built in.
pub fn v3_document(path: &str) -> Option<&'static [u8]> {
    catalog()
        .documents
        .get(normalize(path))
        .map(|doc| doc.bytes.as_slice())
}

/// The hash of [`v3_document`]`(path)` (uppercase hex SHA-512), as the index advertises it.
pub fn v3_hash(path: &str) -> Option<&'static str> {
    catalog()
        .documents
        .get(normalize(path))
        .map(|doc| doc.hash.as_str())
}

/// The document paths of every built-in group-version (`api/v1`, `apis/apps/v1`, ...).
pub fn v3_paths() -> impl Iterator<Item = &'static str> {
    catalog().documents.keys().map(String::as_str)
}

/// Every schema definition of every document, by upstream name
/// (`io.k8s.api.apps.v1.Deployment`); references inside are `#/components/schemas/<name>`.
pub fn definitions() -> &'static Map<String, Value> {
    &catalog().definitions
}

/// The definition name of a kind (`("apps", "v1", "Deployment")` →
/// `io.k8s.api.apps.v1.Deployment`), for every published kind, its `...List`, and the
/// subresource kinds (autoscaling/v1 `Scale`, policy/v1 `Eviction`, ...).
pub fn definition_for_kind(group: &str, version: &str, kind: &str) -> Option<&'static str> {
    catalog()
        .kinds
        .get(&(group.to_owned(), version.to_owned(), kind.to_owned()))
        .map(String::as_str)
}

fn normalize(path: &str) -> &str {
    let path = path.trim_start_matches('/');
    let path = path.strip_prefix("openapi/v3/").unwrap_or(path);
    path.split('?').next().unwrap_or(path).trim_end_matches('/')
}

fn build_catalog() -> Catalog {
    let mut by_gv: BTreeMap<String, Vec<KindEntry>> = BTreeMap::new();
    for entry in resources::all_kinds() {
        by_gv.entry(entry.gv_path()).or_default().push(entry);
    }
    // A kind's definition is tagged in every document that holds it, as upstream does (the
    // PersistentVolumeClaim of a StatefulSet's volumeClaimTemplates is tagged in apps/v1).
    let mut documents = Vec::new();
    let mut tags: Vec<(String, Gvk)> = Vec::new();
    for (path, entries) in by_gv {
        let (document, document_tags) = build_document(&path, &entries);
        let (group, version) = (entries[0].ty.group, entries[0].ty.version);
        tags.push((
            format!("{META}.DeleteOptions"),
            gvk(group, version, "DeleteOptions"),
        ));
        tags.extend(document_tags);
        documents.push((path, document));
    }
    for kind in ["APIResourceList", "Status"] {
        tags.push((format!("{META}.{kind}"), gvk("", "v1", kind)));
    }
    let mut catalog = Catalog {
        documents: BTreeMap::new(),
        definitions: Map::new(),
        kinds: tags
            .iter()
            .map(|(name, gvk)| (gvk.clone(), name.clone()))
            .collect(),
    };
    for (path, mut document) in documents {
        if let Some(Value::Object(schemas)) = document.pointer_mut("/components/schemas") {
            apply_tags(schemas, &tags);
            for (name, schema) in schemas.iter() {
                if !catalog.definitions.contains_key(name) {
                    catalog.definitions.insert(name.clone(), schema.clone());
                }
            }
        }
        let bytes = serde_json::to_vec(&document).expect("a serde_json::Value always serializes");
        let hash = hex_upper(&Sha512::digest(&bytes));
        catalog.documents.insert(path, Document { bytes, hash });
    }
    catalog
}

/// Adds `x-kubernetes-group-version-kind` entries to the definitions a document holds.
fn apply_tags(schemas: &mut Map<String, Value>, tags: &[(String, Gvk)]) {
    for (name, (group, version, kind)) in tags {
        let Some(Value::Object(schema)) = schemas.get_mut(name) else {
            continue;
        };
        let list = schema
            .entry(GVK_EXTENSION)
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(list) = list {
            let value = gvk_value(group, version, kind);
            if !list.contains(&value) {
                list.push(value);
            }
        }
    }
}

fn gvk(group: &str, version: &str, kind: &str) -> Gvk {
    (group.to_owned(), version.to_owned(), kind.to_owned())
}

fn hex_upper(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(out, "{byte:02X}");
    }
    out
}

const GVK_EXTENSION: &str = "x-kubernetes-group-version-kind";

type Gvk = (String, String, String);

fn gvk_value(group: &str, version: &str, kind: &str) -> Value {
    json!({ "group": group, "kind": kind, "version": version })
}

fn schema_generator() -> SchemaGenerator {
    let mut settings = SchemaSettings::openapi3();
    // The transforms would rewrite k8s-openapi's schemas (nullable, ref siblings) in ways
    // upstream does not; the post-processing below does what upstream does instead.
    settings.transforms.clear();
    settings.meta_schema = None;
    settings.into_generator()
}

/// The definition name a `{"$ref": "#/components/schemas/<name>"}` schema points to.
fn ref_name(schema: &schemars::Schema) -> String {
    schema
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix(REF_PREFIX))
        .expect("k8s-openapi types are never inlined, so subschema_for returns a $ref")
        .to_owned()
}

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("{REF_PREFIX}{name}") })
}

/// Builds one group-version document, and the (definition, gvk) tags of the kinds it defines;
/// the tags are applied by the caller, across all documents.
fn build_document(path: &str, entries: &[KindEntry]) -> (Value, Vec<(String, Gvk)>) {
    let mut generator = schema_generator();
    let mut tags: Vec<(String, Gvk)> = Vec::new();
    let mut tag = |name: &str, group: &str, version: &str, kind: &str| {
        let gvk = gvk(group, version, kind);
        if !tags.iter().any(|(n, g)| n == name && *g == gvk) {
            tags.push((name.to_owned(), gvk));
        }
    };
    let status = ref_name(&generator.subschema_for::<meta::Status>());
    let delete_options = ref_name(&generator.subschema_for::<meta::DeleteOptions>());
    let resource_list = ref_name(&generator.subschema_for::<meta::APIResourceList>());
    let list_meta = ref_name(&generator.subschema_for::<meta::ListMeta>());
    let common = Common {
        status: &status,
        delete_options: &delete_options,
        patch: &format!("{META}.Patch"),
    };

    let mut paths = Map::new();
    let (group, version) = entries
        .first()
        .map(|e| (e.ty.group, e.ty.version))
        .expect("a group-version document is built only for a group-version with kinds");
    let names = OperationNames::new(group, version);
    let prefix = format!("/{path}");
    paths.insert(
        format!("{prefix}/"),
        json!({ "get": {
            "description": "get available resources",
            "operationId": format!("get{}APIResources", names.group_version),
            "responses": responses(&[("200", "OK")], &resource_list),
            "tags": [names.tag.clone()],
        }}),
    );

    let mut list_definitions = Vec::new();
    for entry in entries {
        let kind_name = ref_name(&(entry.ty.register)(&mut generator));
        tag(&kind_name, entry.ty.group, entry.ty.version, entry.ty.kind);
        let list_kind = format!("{}List", entry.ty.kind);
        let list_name = format!("{kind_name}List");
        if entry.verbs != Verbs::Create {
            list_definitions.push((
                list_name.clone(),
                list_schema(entry.ty.kind, &kind_name, &list_meta),
            ));
            tag(&list_name, entry.ty.group, entry.ty.version, &list_kind);
        }
        let mut sub_kinds = Vec::new();
        for sub in &entry.subresources {
            let sub_kind = match &sub.kind {
                Some(ty) => {
                    let name = ref_name(&(ty.register)(&mut generator));
                    tag(&name, ty.group, ty.version, ty.kind);
                    Some((name, *ty))
                }
                None => None,
            };
            sub_kinds.push(sub_kind);
        }
        let ctx = KindPaths {
            entry,
            kind_name: &kind_name,
            list_name: &list_name,
            names: &names,
            common: &common,
        };
        ctx.insert_paths(&mut paths, &prefix, &sub_kinds);
    }

    let mut schemas = generator.take_definitions(false);
    for (name, schema) in list_definitions {
        schemas.insert(name, schema);
    }
    schemas.insert(
        common.patch.to_owned(),
        json!({
            "description": "Patch is provided to give a concrete name and type to the Kubernetes PATCH request body.",
            "type": "object",
        }),
    );
    post_process(&mut schemas);
    let document = json!({
        "openapi": "3.0.0",
        "info": { "title": "Kubernetes", "version": "unversioned" },
        "paths": paths,
        "components": { "schemas": schemas },
    });
    (document, tags)
}

/// `<Kind>List`, which k8s-openapi models as a generic `List<T>` without a schema.
fn list_schema(kind: &str, kind_name: &str, list_meta: &str) -> Value {
    json!({
        "description": format!("{kind}List is a list of {kind} objects."),
        "properties": {
            "apiVersion": {
                "description": "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources",
                "type": "string",
            },
            "items": {
                "description": format!("items is the list of {kind} objects."),
                "items": { "allOf": [schema_ref(kind_name)], "default": {} },
                "type": "array",
            },
            "kind": {
                "description": "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds",
                "type": "string",
            },
            "metadata": {
                "allOf": [schema_ref(list_meta)],
                "default": {},
                "description": "Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata",
            },
        },
        "required": ["items"],
        "type": "object",
    })
}

/// Turns k8s-openapi's schemars output into upstream's v3 shape (see the module docs).
fn post_process(schemas: &mut Map<String, Value>) {
    for schema in schemas.values_mut() {
        wrap_ref_siblings(schema);
    }
    for ext in extensions::FIELD_EXTENSIONS {
        let Some(property) = property_mut(schemas, ext.definition, ext.field) else {
            continue;
        };
        if let Some(strategy) = ext.patch_strategy {
            property.insert("x-kubernetes-patch-strategy".into(), strategy.into());
        }
        if let Some(key) = ext.merge_key {
            property.insert("x-kubernetes-patch-merge-key".into(), key.into());
        }
        if let Some(list_type) = ext.list_type {
            property.insert("x-kubernetes-list-type".into(), list_type.into());
        }
        if !ext.map_keys.is_empty() {
            property.insert("x-kubernetes-list-map-keys".into(), json!(ext.map_keys));
        }
    }
    for &(definition, field, map_type) in extensions::MAP_TYPE_FIELDS {
        if let Some(property) = property_mut(schemas, definition, field) {
            property.insert("x-kubernetes-map-type".into(), map_type.into());
        }
    }
    for name in extensions::ATOMIC_STRUCTS {
        if let Some(Value::Object(schema)) = schemas.get_mut(*name) {
            schema.insert("x-kubernetes-map-type".into(), "atomic".into());
        }
    }
    // k8s-openapi marks both with `x-kubernetes-int-or-string`; upstream's v3 documents give
    // the alternatives, which is also what makes `explain` print `<IntOrString>`.
    if let Some(Value::Object(schema)) = schemas.get_mut(INT_OR_STRING) {
        schema.remove("x-kubernetes-int-or-string");
        schema.insert("format".into(), "int-or-string".into());
        schema.insert(
            "oneOf".into(),
            json!([{ "type": "integer" }, { "type": "string" }]),
        );
    }
    if let Some(Value::Object(schema)) = schemas.get_mut(QUANTITY) {
        schema.remove("x-kubernetes-int-or-string");
        schema.insert(
            "oneOf".into(),
            json!([{ "type": "string" }, { "type": "number" }]),
        );
    }
}

fn property_mut<'a>(
    schemas: &'a mut Map<String, Value>,
    definition: &str,
    field: &str,
) -> Option<&'a mut Map<String, Value>> {
    schemas
        .get_mut(definition)?
        .get_mut("properties")?
        .get_mut(field)?
        .as_object_mut()
}

/// Upstream's v3 documents never put siblings next to `$ref` (OpenAPI 3.0 ignores them): a
/// reference with a description becomes `{"allOf": [{"$ref": ...}], "description": ...}`.
fn wrap_ref_siblings(schema: &mut Value) {
    match schema {
        Value::Object(object) => {
            // A `$ref` key whose value is not a string is a property *named* `$ref`
            // (JSONSchemaProps), not a reference.
            if object.len() > 1
                && object.get("$ref").is_some_and(Value::is_string)
                && let Some(reference) = object.remove("$ref")
            {
                object.insert("allOf".into(), json!([{ "$ref": reference }]));
            }
            for value in object.values_mut() {
                wrap_ref_siblings(value);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(wrap_ref_siblings),
        _ => {}
    }
}

/// The schema names shared by every document's operations.
struct Common<'a> {
    status: &'a str,
    delete_options: &'a str,
    patch: &'a str,
}

/// Upstream's operation-id and tag spellings for one group-version: `AppsV1` / `apps_v1`,
/// `CoreV1` / `core_v1`, `RbacAuthorizationV1` / `rbacAuthorization_v1`.
struct OperationNames {
    group_version: String,
    tag: String,
}

impl OperationNames {
    fn new(group: &str, version: &str) -> Self {
        let group = if group.is_empty() { "core" } else { group };
        let group = group.strip_suffix(".k8s.io").unwrap_or(group);
        let words: Vec<&str> = group.split('.').collect();
        let camel: String = words.iter().map(|w| capitalize(w)).collect();
        let lower_camel = format!(
            "{}{}",
            words.first().copied().unwrap_or_default(),
            words
                .iter()
                .skip(1)
                .map(|w| capitalize(w))
                .collect::<String>()
        );
        OperationNames {
            group_version: format!("{camel}{}", capitalize(version)),
            tag: format!("{lower_camel}_{version}"),
        }
    }
}

fn capitalize(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// What the paths of one resource are built from.
struct KindPaths<'a> {
    entry: &'a KindEntry,
    kind_name: &'a str,
    list_name: &'a str,
    names: &'a OperationNames,
    common: &'a Common<'a>,
}

impl KindPaths<'_> {
    fn gvk(&self) -> Value {
        gvk_value(
            self.entry.ty.group,
            self.entry.ty.version,
            self.entry.ty.kind,
        )
    }

    /// `list`, `create`, ... + `AppsV1` + `Namespaced` + `Deployment` + suffix.
    fn operation_id(&self, verb: &str, suffix: &str) -> String {
        let scope = if self.entry.namespaced {
            "Namespaced"
        } else {
            ""
        };
        format!(
            "{verb}{}{scope}{}{suffix}",
            self.names.group_version, self.entry.ty.kind
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn operation(
        &self,
        action: &str,
        description: String,
        operation_id: String,
        gvk: Value,
        parameters: Vec<Value>,
        body: Option<Value>,
        responses: Value,
    ) -> Value {
        let mut op = json!({
            "description": description,
            "operationId": operation_id,
            "responses": responses,
            "tags": [self.names.tag.clone()],
            "x-kubernetes-action": action,
            GVK_EXTENSION: gvk,
        });
        if !parameters.is_empty() {
            op["parameters"] = Value::Array(parameters);
        }
        if let Some(body) = body {
            op["requestBody"] = body;
        }
        op
    }

    fn insert_paths(
        &self,
        paths: &mut Map<String, Value>,
        prefix: &str,
        sub_kinds: &[Option<(String, TypeRef)>],
    ) {
        let entry = self.entry;
        let kind = entry.ty.kind;
        let scope_prefix = if entry.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}", entry.plural)
        } else {
            format!("{prefix}/{}", entry.plural)
        };
        let mut scope_parameters = Vec::new();
        if entry.namespaced {
            scope_parameters.push(path_parameter(
                "namespace",
                "object name and auth scope, such as for teams and projects",
            ));
        }

        // The collection: list, create, deletecollection.
        let mut collection = Map::new();
        let mut parameters = scope_parameters.clone();
        parameters.push(pretty());
        collection.insert("parameters".into(), Value::Array(parameters));
        if matches!(
            entry.verbs,
            Verbs::All | Verbs::NoDeleteCollection | Verbs::GetList
        ) {
            collection.insert(
                "get".into(),
                self.operation(
                    "list",
                    format!("list or watch objects of kind {kind}"),
                    self.operation_id("list", ""),
                    self.gvk(),
                    list_parameters(),
                    None,
                    responses(&[("200", "OK")], self.list_name),
                ),
            );
        }
        if matches!(
            entry.verbs,
            Verbs::All | Verbs::NoDeleteCollection | Verbs::Create
        ) {
            collection.insert(
                "post".into(),
                self.operation(
                    "post",
                    format!("create a {kind}"),
                    self.operation_id("create", ""),
                    self.gvk(),
                    write_parameters(),
                    Some(object_body(self.kind_name)),
                    responses(
                        &[("200", "OK"), ("201", "Created"), ("202", "Accepted")],
                        self.kind_name,
                    ),
                ),
            );
        }
        if entry.verbs == Verbs::All {
            let mut parameters = vec![query("continue", CONTINUE, "string"), dry_run()];
            parameters.extend([
                query("fieldSelector", FIELD_SELECTOR, "string"),
                query("gracePeriodSeconds", GRACE_PERIOD, "integer"),
                query("labelSelector", LABEL_SELECTOR, "string"),
                query("limit", LIMIT, "integer"),
                query("orphanDependents", ORPHAN, "boolean"),
                query("propagationPolicy", PROPAGATION, "string"),
                query("resourceVersion", RESOURCE_VERSION, "string"),
                query("resourceVersionMatch", RESOURCE_VERSION_MATCH, "string"),
                query("sendInitialEvents", SEND_INITIAL_EVENTS, "boolean"),
                query("timeoutSeconds", TIMEOUT, "integer"),
            ]);
            collection.insert(
                "delete".into(),
                self.operation(
                    "deletecollection",
                    format!("delete collection of {kind}"),
                    self.operation_id("delete", "").replacen(
                        &self.names.group_version,
                        &format!("{}Collection", self.names.group_version),
                        1,
                    ),
                    self.gvk(),
                    parameters,
                    Some(object_body(self.common.delete_options)),
                    responses(&[("200", "OK")], self.common.status),
                ),
            );
        }
        paths.insert(scope_prefix.clone(), Value::Object(collection));

        // Listing across namespaces.
        if entry.namespaced && entry.verbs != Verbs::Create {
            let op_id = format!("list{}{kind}ForAllNamespaces", self.names.group_version);
            let mut all = self.operation(
                "list",
                format!("list or watch objects of kind {kind}"),
                op_id,
                self.gvk(),
                Vec::new(),
                None,
                responses(&[("200", "OK")], self.list_name),
            );
            all.as_object_mut().map(|o| o.remove("parameters"));
            let mut item = Map::new();
            item.insert("get".into(), all);
            let mut parameters = list_parameters();
            parameters.push(pretty());
            parameters.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
            item.insert("parameters".into(), Value::Array(parameters));
            paths.insert(format!("{prefix}/{}", entry.plural), Value::Object(item));
        }

        if entry.verbs == Verbs::Create {
            return;
        }

        // The object: get, put, patch, delete.
        let name_parameter = path_parameter("name", &format!("name of the {kind}"));
        let mut object_parameters = vec![name_parameter.clone()];
        object_parameters.extend(scope_parameters.iter().cloned());
        object_parameters.push(pretty());
        let mut object = Map::new();
        object.insert("parameters".into(), Value::Array(object_parameters.clone()));
        object.insert(
            "get".into(),
            self.operation(
                "get",
                format!("read the specified {kind}"),
                self.operation_id("read", ""),
                self.gvk(),
                Vec::new(),
                None,
                responses(&[("200", "OK")], self.kind_name),
            ),
        );
        if entry.verbs != Verbs::GetList {
            object.insert(
                "put".into(),
                self.operation(
                    "put",
                    format!("replace the specified {kind}"),
                    self.operation_id("replace", ""),
                    self.gvk(),
                    write_parameters(),
                    Some(object_body(self.kind_name)),
                    responses(&[("200", "OK"), ("201", "Created")], self.kind_name),
                ),
            );
            object.insert(
                "patch".into(),
                self.operation(
                    "patch",
                    format!("partially update the specified {kind}"),
                    self.operation_id("patch", ""),
                    self.gvk(),
                    patch_parameters(),
                    Some(patch_body(self.common.patch)),
                    responses(&[("200", "OK"), ("201", "Created")], self.kind_name),
                ),
            );
            object.insert(
                "delete".into(),
                self.operation(
                    "delete",
                    format!("delete a {kind}"),
                    self.operation_id("delete", ""),
                    self.gvk(),
                    vec![
                        dry_run(),
                        query("gracePeriodSeconds", GRACE_PERIOD, "integer"),
                        query("orphanDependents", ORPHAN, "boolean"),
                        query("propagationPolicy", PROPAGATION, "string"),
                    ],
                    Some(object_body(self.common.delete_options)),
                    responses(&[("200", "OK"), ("202", "Accepted")], self.common.status),
                ),
            );
        }
        paths.insert(format!("{scope_prefix}/{{name}}"), Value::Object(object));

        // Subresources.
        for (sub, sub_kind) in entry.subresources.iter().zip(sub_kinds) {
            let (schema_name, gvk, what) = match sub_kind {
                Some((name, ty)) => (
                    name.as_str(),
                    gvk_value(ty.group, ty.version, ty.kind),
                    ty.kind.to_owned(),
                ),
                None => (
                    self.kind_name,
                    self.gvk(),
                    format!("{} of the specified {kind}", sub.name),
                ),
            };
            let suffix = capitalize(sub.name);
            let mut parameters = vec![path_parameter(
                "name",
                &format!("name of the {}", capitalize(sub.name)),
            )];
            parameters.extend(scope_parameters.iter().cloned());
            parameters.push(pretty());
            let mut item = Map::new();
            item.insert("parameters".into(), Value::Array(parameters));
            match sub.verbs {
                SubVerbs::GetPutPatch => {
                    item.insert(
                        "get".into(),
                        self.operation(
                            "get",
                            format!("read {what}"),
                            self.operation_id("read", &suffix),
                            gvk.clone(),
                            Vec::new(),
                            None,
                            responses(&[("200", "OK")], schema_name),
                        ),
                    );
                    item.insert(
                        "put".into(),
                        self.operation(
                            "put",
                            format!("replace {what}"),
                            self.operation_id("replace", &suffix),
                            gvk.clone(),
                            write_parameters(),
                            Some(object_body(schema_name)),
                            responses(&[("200", "OK"), ("201", "Created")], schema_name),
                        ),
                    );
                    item.insert(
                        "patch".into(),
                        self.operation(
                            "patch",
                            format!("partially update {what}"),
                            self.operation_id("patch", &suffix),
                            gvk,
                            patch_parameters(),
                            Some(patch_body(self.common.patch)),
                            responses(&[("200", "OK"), ("201", "Created")], schema_name),
                        ),
                    );
                }
                SubVerbs::Put => {
                    item.insert(
                        "put".into(),
                        self.operation(
                            "put",
                            format!("replace {what}"),
                            self.operation_id("replace", &suffix),
                            gvk,
                            write_parameters(),
                            Some(object_body(schema_name)),
                            responses(&[("200", "OK"), ("201", "Created")], schema_name),
                        ),
                    );
                }
                SubVerbs::Post => {
                    item.insert(
                        "post".into(),
                        self.operation(
                            "post",
                            format!("create {what} of a {kind}"),
                            self.operation_id("create", &suffix),
                            gvk,
                            write_parameters(),
                            Some(object_body(schema_name)),
                            responses(
                                &[("200", "OK"), ("201", "Created"), ("202", "Accepted")],
                                schema_name,
                            ),
                        ),
                    );
                }
            }
            paths.insert(
                format!("{scope_prefix}/{{name}}/{}", sub.name),
                Value::Object(item),
            );
        }
    }
}

fn responses(codes: &[(&str, &str)], schema_name: &str) -> Value {
    let mut out = Map::new();
    for (code, description) in codes {
        let content: Map<String, Value> = RESPONSE_MEDIA_TYPES
            .iter()
            .map(|media| {
                (
                    (*media).to_owned(),
                    json!({ "schema": schema_ref(schema_name) }),
                )
            })
            .collect();
        out.insert(
            (*code).to_owned(),
            json!({ "content": content, "description": description }),
        );
    }
    out.insert("401".into(), json!({ "description": "Unauthorized" }));
    Value::Object(out)
}

fn object_body(schema_name: &str) -> Value {
    json!({ "content": { "*/*": { "schema": schema_ref(schema_name) } }, "required": true })
}

fn patch_body(patch: &str) -> Value {
    let content: Map<String, Value> = PATCH_MEDIA_TYPES
        .iter()
        .map(|media| ((*media).to_owned(), json!({ "schema": schema_ref(patch) })))
        .collect();
    json!({ "content": content, "required": true })
}

fn query(name: &str, description: &str, ty: &str) -> Value {
    json!({
        "description": description,
        "in": "query",
        "name": name,
        "schema": { "type": ty, "uniqueItems": true },
    })
}

fn path_parameter(name: &str, description: &str) -> Value {
    json!({
        "description": description,
        "in": "path",
        "name": name,
        "required": true,
        "schema": { "type": "string", "uniqueItems": true },
    })
}

fn pretty() -> Value {
    query(
        "pretty",
        "If 'true', then the output is pretty printed.",
        "string",
    )
}

fn dry_run() -> Value {
    query("dryRun", DRY_RUN, "string")
}

/// create and replace: dryRun, fieldManager, fieldValidation.
fn write_parameters() -> Vec<Value> {
    vec![
        dry_run(),
        query("fieldManager", FIELD_MANAGER, "string"),
        query("fieldValidation", FIELD_VALIDATION, "string"),
    ]
}

/// patch: dryRun, fieldManager, fieldValidation, force.
fn patch_parameters() -> Vec<Value> {
    let mut parameters = write_parameters();
    parameters.push(query("force", FORCE, "boolean"));
    parameters
}

fn list_parameters() -> Vec<Value> {
    vec![
        query(
            "allowWatchBookmarks",
            "allowWatchBookmarks requests watch events with type \"BOOKMARK\".",
            "boolean",
        ),
        query("continue", CONTINUE, "string"),
        query("fieldSelector", FIELD_SELECTOR, "string"),
        query("labelSelector", LABEL_SELECTOR, "string"),
        query("limit", LIMIT, "integer"),
        query("resourceVersion", RESOURCE_VERSION, "string"),
        query("resourceVersionMatch", RESOURCE_VERSION_MATCH, "string"),
        query("sendInitialEvents", SEND_INITIAL_EVENTS, "boolean"),
        query("timeoutSeconds", TIMEOUT, "integer"),
        query(
            "watch",
            "Watch for changes to the described resources and return them as a stream of add, update, and remove notifications.",
            "boolean",
        ),
    ]
}

const DRY_RUN: &str = "When present, indicates that modifications should not be persisted. Valid values are: - All: all dry run stages will be processed";
const FIELD_MANAGER: &str = "fieldManager is a name associated with the actor or entity that is making these changes. It is required for apply requests (application/apply-patch) and optional otherwise.";
const FIELD_VALIDATION: &str = "fieldValidation instructs the server on how to handle objects in the request containing unknown or duplicate fields. Valid values are: - Ignore: drop them silently. - Warn: drop them and send a warning for each through the standard warning response header. - Strict: fail the request with a BadRequest error listing them.";
const FORCE: &str = "Force is going to \"force\" Apply requests. It means user will re-acquire conflicting fields owned by other people. Must be unset for non-apply patch requests.";
const CONTINUE: &str =
    "The continue option should be set when retrieving more results from the server.";
const FIELD_SELECTOR: &str =
    "A selector to restrict the list of returned objects by their fields. Defaults to everything.";
const LABEL_SELECTOR: &str =
    "A selector to restrict the list of returned objects by their labels. Defaults to everything.";
const LIMIT: &str = "limit is a maximum number of responses to return for a list call.";
const RESOURCE_VERSION: &str =
    "resourceVersion sets a constraint on what resource versions a request may be served from.";
const RESOURCE_VERSION_MATCH: &str =
    "resourceVersionMatch determines how resourceVersion is applied to list calls.";
const SEND_INITIAL_EVENTS: &str = "`sendInitialEvents=true` may be set together with `watch=true`: the stream begins with synthetic events of the current state of all objects.";
const TIMEOUT: &str = "Timeout for the list/watch call.";
const GRACE_PERIOD: &str = "The duration in seconds before the object should be deleted. Value must be non-negative integer. The value zero indicates delete immediately.";
const ORPHAN: &str =
    "Deprecated: please use the PropagationPolicy. Should the dependent objects be orphaned.";
const PROPAGATION: &str =
    "Whether and how garbage collection will be performed: 'Orphan', 'Background' or 'Foreground'.";

#[cfg(test)]
mod tests;
