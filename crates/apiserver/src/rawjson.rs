//! Byte-level helpers over stored objects' JSON, so hot paths (watch events, create responses)
//! send what the store holds instead of decoding and re-encoding it.

/// The stored JSON of an object (compact, as the store holds it: no `resourceVersion`) with
/// `metadata.resourceVersion` set to `revision`. `None` when the bytes are not a JSON object
/// with an object-valued top-level `metadata`; callers then encode the decoded value.
pub fn with_resource_version(stored: &[u8], revision: i64) -> Option<String> {
    let open = top_level_metadata_open(stored)?;
    let text = std::str::from_utf8(stored).ok()?;
    let rv = format!("\"resourceVersion\":\"{revision}\"");
    let mut out = String::with_capacity(stored.len() + rv.len() + 1);
    out.push_str(&text[..=open]);
    out.push_str(&rv);
    // `{}` takes the field alone; anything else keeps its fields after a comma.
    if next_non_ws(stored, open + 1)? != b'}' {
        out.push(',');
    }
    out.push_str(&text[open + 1..]);
    Some(out)
}

/// Whether compact JSON has a key named `key` at any depth, without decoding it. Text inside
/// strings cannot match: a quote there is escaped, so `"key":` only occurs as a key.
pub fn mentions_key(stored: &[u8], key: &str) -> bool {
    let pattern = format!("\"{key}\":");
    memfind(stored, pattern.as_bytes())
}

fn memfind(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

fn next_non_ws(b: &[u8], mut i: usize) -> Option<u8> {
    while i < b.len() {
        if !b[i].is_ascii_whitespace() {
            return Some(b[i]);
        }
        i += 1;
    }
    None
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// Index just past the closing quote of the string starting at `i` (which is a `"`).
fn skip_string(b: &[u8], mut i: usize) -> Option<usize> {
    i += 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// Index just past the value starting at `i`.
fn skip_value(b: &[u8], i: usize) -> Option<usize> {
    let i = skip_ws(b, i);
    match *b.get(i)? {
        b'"' => skip_string(b, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            while j < b.len() {
                match b[j] {
                    b'"' => {
                        j = skip_string(b, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            None
        }
        _ => {
            let mut j = i;
            while j < b.len() && !matches!(b[j], b',' | b'}' | b']') && !b[j].is_ascii_whitespace()
            {
                j += 1;
            }
            (j > i).then_some(j)
        }
    }
}

/// Index of the `{` that opens the value of the top-level key `metadata`.
fn top_level_metadata_open(b: &[u8]) -> Option<usize> {
    let mut i = skip_ws(b, 0);
    if *b.get(i)? != b'{' {
        return None;
    }
    i += 1;
    loop {
        i = skip_ws(b, i);
        match *b.get(i)? {
            b'}' => return None,
            b',' => {
                i += 1;
                continue;
            }
            b'"' => {}
            _ => return None,
        }
        let key_end = skip_string(b, i)?;
        let key = &b[i + 1..key_end - 1];
        i = skip_ws(b, key_end);
        if *b.get(i)? != b':' {
            return None;
        }
        i = skip_ws(b, i + 1);
        if key == b"metadata" {
            return (*b.get(i)? == b'{').then_some(i);
        }
        i = skip_value(b, i)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn spliced(v: &Value, rev: i64) -> Value {
        let text = with_resource_version(v.to_string().as_bytes(), rev).expect("spliced");
        serde_json::from_str(&text).expect("valid JSON")
    }

    #[test]
    fn resource_version_lands_in_top_level_metadata_only() {
        let obj = json!({
            "apiVersion": "example.com/v1",
            "aaa": {"metadata": {"x": "y"}, "s": "a \"metadata\":{ b"},
            "kind": "Thing",
            "metadata": {"name": "n", "labels": {"a": "b"}},
            "spec": {"template": {"metadata": {}}},
        });
        let mut expected = obj.clone();
        expected["metadata"]["resourceVersion"] = json!("42");
        assert_eq!(spliced(&obj, 42), expected);
    }

    #[test]
    fn empty_metadata_gets_the_field_alone() {
        let obj = json!({"kind": "K", "metadata": {}});
        assert_eq!(
            spliced(&obj, 7),
            json!({"kind": "K", "metadata": {"resourceVersion": "7"}})
        );
    }

    #[test]
    fn objects_without_metadata_fall_back() {
        assert!(with_resource_version(br#"{"kind":"K"}"#, 1).is_none());
        assert!(with_resource_version(br#"{"metadata":null}"#, 1).is_none());
        assert!(with_resource_version(b"[1,2]", 1).is_none());
        assert!(with_resource_version(b"{\"a\":", 1).is_none());
    }

    #[test]
    fn key_mentions_ignore_escaped_text() {
        let with = json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}});
        let escaped = json!({"metadata": {"annotations": {"a": "\"deletionTimestamp\":"}}});
        assert!(mentions_key(
            with.to_string().as_bytes(),
            "deletionTimestamp"
        ));
        assert!(!mentions_key(
            escaped.to_string().as_bytes(),
            "deletionTimestamp"
        ));
    }
}
