//! (placeholder until the patch module lands: merge semantics only)
use serde_json::Value;
/// Patch failure.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Error(pub String);
/// RFC 6902.
pub fn json_patch(original: &Value, patch: &Value) -> Result<Value, Error> {
    let p: json_patch::Patch = serde_json::from_value(patch.clone()).map_err(|e| Error(e.to_string()))?;
    let mut doc = original.clone();
    json_patch::patch(&mut doc, &p).map_err(|e| Error(e.to_string()))?;
    Ok(doc)
}
/// RFC 7386.
pub fn merge_patch(original: &Value, patch: &Value) -> Result<Value, Error> {
    let mut doc = original.clone();
    json_patch::merge(&mut doc, patch);
    Ok(doc)
}
/// Strategic merge (placeholder).
pub fn strategic_merge(_group: &str, _kind: &str, original: &Value, patch: &Value) -> Result<Value, Error> {
    merge_patch(original, patch)
}
