//! (placeholder until the field validation module lands)
/// Problems.
pub fn unknown_and_duplicate_fields(_g: &str, _v: &str, _k: &str, _body: &[u8]) -> Vec<String> { Vec::new() }
/// Message.
pub fn strict_error_message(kind: &str, version: &str, problems: &[String]) -> String {
    format!("{kind} in version \"{version}\" cannot be handled as a {kind}: strict decoding error: {}", problems.join(", "))
}
