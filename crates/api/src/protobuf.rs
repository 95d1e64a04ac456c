//! (placeholder until the protobuf module lands)
/// Decode failure.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Error(pub String);
/// Whether the content type is protobuf.
pub fn is_protobuf(ct: &str) -> bool {
    ct.starts_with("application/vnd.kubernetes.protobuf")
}
/// Decode.
pub fn decode(_body: &[u8]) -> Result<serde_json::Value, Error> {
    Err(Error("protobuf bodies are not supported yet".into()))
}
