//! (placeholder until the table module lands)
use serde_json::{Value, json};
/// Columns.
pub fn column_definitions(_group: &str, _resource: &str) -> Vec<Value> {
    vec![json!({"name":"Name","type":"string","format":"name","description":"","priority":0})]
}
/// Cells.
pub fn row_cells(_group: &str, _resource: &str, obj: &Value, _now: jiff::Timestamp) -> Vec<Value> {
    vec![obj["metadata"]["name"].clone()]
}
