//! (placeholder until the selector module lands)
use serde_json::Value;
/// Selector failure.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Error(pub String);
/// Label selector.
#[derive(Debug, Clone, Default)]
pub struct LabelSelector(Vec<(String, String)>);
impl LabelSelector {
    /// Parse.
    pub fn parse(s: &str) -> Result<Self, Error> {
        let mut v = Vec::new();
        for part in s.split(',').filter(|p| !p.is_empty()) {
            let (k, val) = part.split_once('=').ok_or_else(|| Error(format!("unable to parse requirement: {part}")))?;
            v.push((k.to_string(), val.trim_start_matches('=').to_string()));
        }
        Ok(Self(v))
    }
    /// Match.
    pub fn matches_object(&self, obj: &Value) -> bool {
        self.0.iter().all(|(k, v)| obj["metadata"]["labels"][k].as_str() == Some(v))
    }
    /// Empty.
    pub fn is_empty(&self) -> bool { self.0.is_empty() }
}
/// Field selector.
#[derive(Debug, Clone, Default)]
pub struct FieldSelector(Vec<(String, String)>);
impl FieldSelector {
    /// Parse.
    pub fn parse(s: &str) -> Result<Self, Error> {
        let mut v = Vec::new();
        for part in s.split(',').filter(|p| !p.is_empty()) {
            let (k, val) = part.split_once('=').ok_or_else(|| Error(format!("invalid selector: {part}")))?;
            v.push((k.to_string(), val.trim_start_matches('=').to_string()));
        }
        Ok(Self(v))
    }
    /// Validate.
    pub fn validate(&self, _group: &str, _kind: &str) -> Result<(), Error> { Ok(()) }
    /// Match.
    pub fn matches(&self, _group: &str, _kind: &str, obj: &Value) -> bool {
        self.0.iter().all(|(k, v)| match k.as_str() {
            "metadata.name" => obj["metadata"]["name"].as_str() == Some(v),
            "metadata.namespace" => obj["metadata"]["namespace"].as_str() == Some(v),
            _ => true,
        })
    }
    /// Empty.
    pub fn is_empty(&self) -> bool { self.0.is_empty() }
}
