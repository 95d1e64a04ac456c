//! (placeholder until the openapi module lands)
/// Root.
pub fn v3_index() -> serde_json::Value { serde_json::json!({"paths":{}}) }
/// Doc.
pub fn v3_document(_path: &str) -> Option<Vec<u8>> { None }
