//! Helpers shared by the printers' tests: a fixed "now", cells checked against the columns.

use jiff::Timestamp;
use serde_json::{Value, json};

use crate::table::{column_definitions, row_cells};

pub(super) fn now() -> Timestamp {
    "2024-05-01T12:00:00Z".parse().expect("valid timestamp")
}

pub(super) fn cells(group: &str, resource: &str, obj: &Value) -> Vec<Value> {
    let cells = row_cells(group, resource, obj, now());
    assert_eq!(
        cells.len(),
        column_definitions(group, resource).len(),
        "one cell per column for {resource}"
    );
    cells
}

pub(super) fn columns(group: &str, resource: &str) -> Vec<String> {
    column_definitions(group, resource)
        .iter()
        .map(|c| {
            let name = c["name"].as_str().expect("name");
            if c["priority"] == 1 {
                format!("{name}*")
            } else {
                name.to_owned()
            }
        })
        .collect()
}

pub(super) fn meta(name: &str) -> Value {
    json!({"name": name, "creationTimestamp": "2024-05-01T11:00:00Z"})
}
