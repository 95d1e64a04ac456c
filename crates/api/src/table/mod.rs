//! Server-side table printing (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`, what
//! `kubectl get` asks for): the columns and cells kube-apiserver's printers produce for each
//! built-in resource, the default `Name`/`Created At` table for the rest, and the `meta.k8s.io/v1`
//! `Table` envelope with `includeObject` handling.
//!
//! Like upstream's server-side convertor, rows are always generated in the wide form: every
//! column (priority 0 and 1) is defined and every row has one cell per column; kubectl hides
//! priority-1 columns unless `-o wide`. Watch events carry a one-row table whose
//! `columnDefinitions` are present only on the first event of the stream and `null` afterwards
//! (upstream sets `NoHeaders` after transforming the first watch event).

mod autoscaling;
mod cluster;
mod core;
mod duration;
mod format;
mod storage;
mod workloads;

use jiff::Timestamp;
use serde_json::{Map, Value, json};

pub use duration::human_duration;

/// The API version of `Table` and `PartialObjectMetadata` objects.
const META_API_VERSION: &str = "meta.k8s.io/v1";

/// Errors of table printing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The `includeObject` query parameter held a value other than `None`, `Metadata` or
    /// `Object`; upstream answers 400 `BadRequest` with this message.
    #[error("unrecognized includeObject value: {0:?}")]
    UnrecognizedIncludeObject(String),
}

/// Result of table printing.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What each row's `object` carries: the `includeObject` query parameter of `TableOptions`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IncludeObject {
    /// No object: the row's `object` is `null`.
    None,
    /// A `PartialObjectMetadata` with the object's full `metadata` (the default). kubectl
    /// needs it for `-A` (NAMESPACE), `--show-labels`, `-L` and `--sort-by`.
    #[default]
    Metadata,
    /// The whole object, in the request's group/version.
    Object,
}

impl IncludeObject {
    /// Parses the `includeObject` query parameter; absent or empty means `Metadata`.
    pub fn parse(value: Option<&str>) -> Result<Self> {
        match value {
            None | Some("" | "Metadata") => Ok(Self::Metadata),
            Some("None") => Ok(Self::None),
            Some("Object") => Ok(Self::Object),
            Some(other) => Err(Error::UnrecognizedIncludeObject(other.to_owned())),
        }
    }
}

/// One `columnDefinitions` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Column {
    name: &'static str,
    ty: &'static str,
    format: &'static str,
    description: &'static str,
    priority: u8,
}

impl Column {
    fn to_json(self) -> Value {
        json!({
            "name": self.name,
            "type": self.ty,
            "format": self.format,
            "description": self.description,
            "priority": self.priority,
        })
    }
}

/// A column shown by default.
const fn col(name: &'static str, ty: &'static str, description: &'static str) -> Column {
    Column {
        name,
        ty,
        format: "",
        description,
        priority: 0,
    }
}

/// The same column, shown only with `-o wide`.
const fn wide(c: Column) -> Column {
    Column { priority: 1, ..c }
}

/// `metav1.ObjectMeta` documentation of `name`, the description of every Name column.
const NAME_DESC: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";

/// `metav1.ObjectMeta` documentation of `creationTimestamp`, the description of every Age
/// column.
const AGE_DESC: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

const NAME: Column = Column {
    name: "Name",
    ty: "string",
    format: "name",
    description: NAME_DESC,
    priority: 0,
};
const AGE: Column = col("Age", "string", AGE_DESC);
const CONTAINERS: Column = wide(col(
    "Containers",
    "string",
    "Names of each container in the template.",
));
const IMAGES: Column = wide(col(
    "Images",
    "string",
    "Images referenced by each container in the template.",
));

/// The columns of the default table (upstream `DefaultTableConvertor`), used for every
/// resource without a printer: roles, clusterroles, limitranges, CRDs, …
const DEFAULT_COLUMNS: &[Column] = &[
    NAME,
    Column {
        name: "Created At",
        ty: "date",
        format: "",
        description: AGE_DESC,
        priority: 0,
    },
];

/// Cells of one object at `now`.
type CellsFn = fn(&Value, Timestamp) -> Vec<Value>;

/// A resource's printer: its column set and how to fill a row.
struct Printer {
    columns: &'static [Column],
    cells: CellsFn,
}

/// The printer for a resource (plural name; group `""` for core), if upstream has one.
fn printer(group: &str, resource: &str) -> Option<Printer> {
    workloads::printer(group, resource)
        .or_else(|| core::printer(group, resource))
        .or_else(|| autoscaling::printer(group, resource))
        .or_else(|| storage::printer(group, resource))
        .or_else(|| cluster::printer(group, resource))
}

/// The `columnDefinitions` of a resource's table: `{name, type, format, description,
/// priority}` objects, wide columns included with priority 1. Resources without an upstream
/// printer get the default `Name` + `Created At` columns.
pub fn column_definitions(group: &str, resource: &str) -> Vec<Value> {
    let columns = printer(group, resource).map_or(DEFAULT_COLUMNS, |p| p.columns);
    columns.iter().map(|c| c.to_json()).collect()
}

/// The cells of one object's row, in column order and one per column of
/// [`column_definitions`]. Cells are JSON strings, integers or booleans as upstream sends them.
pub fn row_cells(group: &str, resource: &str, obj: &Value, now: Timestamp) -> Vec<Value> {
    match printer(group, resource) {
        Some(p) => (p.cells)(obj, now),
        None => default_cells(obj),
    }
}

/// Default-table cells: the name and the creation time in RFC 3339 (UTC, seconds), Go's zero
/// time when unset.
fn default_cells(obj: &Value) -> Vec<Value> {
    let created = format::created(obj).map_or_else(
        || "0001-01-01T00:00:00Z".to_owned(),
        |t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
    );
    vec![Value::from(format::name(obj)), Value::from(created)]
}

/// Row `conditions`: finished pods are marked `Completed` so that clients may dim them.
fn row_conditions(group: &str, resource: &str, obj: &Value) -> Option<Value> {
    if !(group.is_empty() && resource == "pods") {
        return None;
    }
    let (reason, message) = match format::str_at(obj, &["status", "phase"]) {
        "Succeeded" => ("Succeeded", "The pod has completed successfully."),
        "Failed" => ("Failed", "The pod failed."),
        _ => return None,
    };
    Some(json!([{
        "type": "Completed",
        "status": "True",
        "reason": reason,
        "message": message,
    }]))
}

/// The `object` of a row for the requested `includeObject`.
fn row_object(obj: &Value, include_object: IncludeObject) -> Value {
    match include_object {
        IncludeObject::None => Value::Null,
        IncludeObject::Metadata => json!({
            "kind": "PartialObjectMetadata",
            "apiVersion": META_API_VERSION,
            "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
        }),
        IncludeObject::Object => obj.clone(),
    }
}

fn row(
    group: &str,
    resource: &str,
    obj: &Value,
    now: Timestamp,
    include_object: IncludeObject,
) -> Value {
    let mut row = Map::new();
    row.insert(
        "cells".to_owned(),
        Value::Array(row_cells(group, resource, obj, now)),
    );
    if let Some(conditions) = row_conditions(group, resource, obj) {
        row.insert("conditions".to_owned(), conditions);
    }
    row.insert("object".to_owned(), row_object(obj, include_object));
    Value::Object(row)
}

/// Builds the `Table` for a list (or, with one object and that object's resourceVersion, for
/// a single GET): `{"kind":"Table","apiVersion":"meta.k8s.io/v1","metadata":{…},
/// "columnDefinitions":[…],"rows":[{"cells":[…],"object":…}]}`.
///
/// `metadata` carries `resourceVersion`, `continue` and `remainingItemCount` (each omitted
/// when empty/absent, as upstream's `ListMeta`). An empty list gives `"rows":[]` for resources
/// with a printer and `"rows":null` for the default table, as upstream does.
#[allow(clippy::too_many_arguments)] // Mirrors the list response's fields one for one.
pub fn table(
    group: &str,
    resource: &str,
    objects: &[Value],
    now: Timestamp,
    include_object: IncludeObject,
    resource_version: &str,
    continue_token: Option<&str>,
    remaining: Option<i64>,
) -> Value {
    let mut ordered: Vec<&Value> = objects.iter().collect();
    if group == "flowcontrol.apiserver.k8s.io" && resource == "flowschemas" {
        // Upstream prints flow schemas in matching order: precedence, then name.
        ordered.sort_by(|a, b| {
            let key = |o: &Value| {
                (
                    format::int_at(o, &["spec", "matchingPrecedence"]),
                    format::name(o).to_owned(),
                )
            };
            key(a).cmp(&key(b))
        });
    }
    let rows: Vec<Value> = ordered
        .into_iter()
        .map(|o| row(group, resource, o, now, include_object))
        .collect();
    let rows = if rows.is_empty() && printer(group, resource).is_none() {
        Value::Null
    } else {
        Value::Array(rows)
    };
    envelope(
        list_meta(resource_version, continue_token, remaining),
        Value::Array(column_definitions(group, resource)),
        rows,
    )
}

/// Builds the `Table` a watch event carries for one changed object: one row, `metadata`
/// with the object's resourceVersion. `with_headers` is true only for the first event of a
/// watch stream; later events have `"columnDefinitions":null`, as upstream sends them.
pub fn watch_event_table(
    group: &str,
    resource: &str,
    obj: &Value,
    now: Timestamp,
    include_object: IncludeObject,
    with_headers: bool,
) -> Value {
    let columns = if with_headers {
        Value::Array(column_definitions(group, resource))
    } else {
        Value::Null
    };
    let rv = format::str_at(obj, &["metadata", "resourceVersion"]);
    envelope(
        list_meta(rv, None, None),
        columns,
        Value::Array(vec![row(group, resource, obj, now, include_object)]),
    )
}

fn list_meta(
    resource_version: &str,
    continue_token: Option<&str>,
    remaining: Option<i64>,
) -> Value {
    let mut meta = Map::new();
    if !resource_version.is_empty() {
        meta.insert("resourceVersion".to_owned(), Value::from(resource_version));
    }
    if let Some(token) = continue_token.filter(|t| !t.is_empty()) {
        meta.insert("continue".to_owned(), Value::from(token));
    }
    if let Some(n) = remaining {
        meta.insert("remainingItemCount".to_owned(), Value::from(n));
    }
    Value::Object(meta)
}

fn envelope(metadata: Value, columns: Value, rows: Value) -> Value {
    json!({
        "kind": "Table",
        "apiVersion": META_API_VERSION,
        "metadata": metadata,
        "columnDefinitions": columns,
        "rows": rows,
    })
}

#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;
