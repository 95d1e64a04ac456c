//! (placeholder until the defaults module lands)
/// Defaults.
pub fn apply_defaults(_group: &str, _kind: &str, _obj: &mut serde_json::Value) {}
