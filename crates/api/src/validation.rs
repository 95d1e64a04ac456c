//! (placeholder until the validation module lands)
use serde_json::Value;
/// Field error.
#[derive(Debug, Clone)]
pub struct FieldError {
    pub field: String,
    pub detail: String,
}
impl FieldError {
    /// Reason.
    pub fn reason(&self) -> &'static str {
        "FieldValueInvalid"
    }
    /// Message without the field.
    pub fn message(&self) -> String {
        self.detail.clone()
    }
}
/// Validate.
pub fn validate(_group: &str, _kind: &str, _obj: &Value, _old: Option<&Value>) -> Vec<FieldError> {
    Vec::new()
}
