//! Shared cell formatting of the upstream printers: JSON field access with Go zero-value
//! semantics, label maps and selectors, access modes, "+ N more" lists.

use jiff::Timestamp;
use serde_json::{Map, Value};

/// The value at `path`, or `None` when any step is missing or not an object.
pub(super) fn get<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |cur, key| cur.get(key))
}

/// The string at `path`; Go's zero value `""` when absent or not a string.
pub(super) fn str_at<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    get(v, path).and_then(Value::as_str).unwrap_or("")
}

/// The string at `path`, `None` when absent or `null` (a Go `*string`).
pub(super) fn opt_str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    get(v, path).and_then(Value::as_str)
}

/// The integer at `path`; `0` when absent.
pub(super) fn int_at(v: &Value, path: &[&str]) -> i64 {
    opt_int_at(v, path).unwrap_or(0)
}

/// The integer at `path`, `None` when absent or `null` (a Go `*int32`).
pub(super) fn opt_int_at(v: &Value, path: &[&str]) -> Option<i64> {
    get(v, path).and_then(Value::as_i64)
}

/// The boolean at `path`, `None` when absent or `null` (a Go `*bool`).
pub(super) fn opt_bool_at(v: &Value, path: &[&str]) -> Option<bool> {
    get(v, path).and_then(Value::as_bool)
}

/// The array at `path`; empty when absent.
pub(super) fn arr_at<'a>(v: &'a Value, path: &[&str]) -> &'a [Value] {
    get(v, path)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// The object at `path`, `None` when absent or not an object.
pub(super) fn obj_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Map<String, Value>> {
    get(v, path).and_then(Value::as_object)
}

/// Number of entries of the map at `path` (`len(map)` in Go).
pub(super) fn map_len(v: &Value, path: &[&str]) -> usize {
    obj_at(v, path).map_or(0, Map::len)
}

/// The RFC 3339 timestamp at `path`; `None` (Go's zero time) when absent or unparsable.
pub(super) fn time_at(v: &Value, path: &[&str]) -> Option<Timestamp> {
    opt_str_at(v, path).and_then(|s| s.parse().ok())
}

/// `metadata.name`.
pub(super) fn name(obj: &Value) -> &str {
    str_at(obj, &["metadata", "name"])
}

/// `metadata.creationTimestamp`.
pub(super) fn created(obj: &Value) -> Option<Timestamp> {
    time_at(obj, &["metadata", "creationTimestamp"])
}

/// Whether `metadata.deletionTimestamp` is set.
pub(super) fn deleting(obj: &Value) -> bool {
    get(obj, &["metadata", "deletionTimestamp"]).is_some_and(|v| !v.is_null())
}

/// Upstream `labels.FormatLabels`: `k=v` pairs sorted as whole strings, joined with `,`;
/// `<none>` when empty.
pub(super) fn format_labels(map: Option<&Map<String, Value>>) -> String {
    let mut pairs: Vec<String> = map
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
        .collect();
    if pairs.is_empty() {
        return "<none>".to_owned();
    }
    pairs.sort();
    pairs.join(",")
}

/// Why a `metav1.LabelSelector` cannot be turned into a selector.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct InvalidSelector;

/// Upstream `metav1.LabelSelectorAsSelector(sel).String()`: requirements sorted by key,
/// `k=v`, `k in (a,b)`, `k notin (a,b)`, `k`, `!k`; `""` for a nil or empty selector.
pub(super) fn selector_string(sel: Option<&Value>) -> Result<String, InvalidSelector> {
    let Some(sel) = sel.filter(|s| !s.is_null()) else {
        return Ok(String::new());
    };
    let mut reqs: Vec<(String, String)> = Vec::new();
    for (k, v) in obj_at(sel, &["matchLabels"]).into_iter().flatten() {
        let value = v.as_str().ok_or(InvalidSelector)?;
        reqs.push((k.clone(), format!("{k}={value}")));
    }
    for expr in arr_at(sel, &["matchExpressions"]) {
        let key = str_at(expr, &["key"]);
        if key.is_empty() {
            return Err(InvalidSelector);
        }
        let mut values: Vec<&str> = arr_at(expr, &["values"])
            .iter()
            .map(|v| v.as_str().ok_or(InvalidSelector))
            .collect::<Result<_, _>>()?;
        values.sort_unstable();
        let text = match str_at(expr, &["operator"]) {
            "In" | "NotIn" if values.is_empty() => return Err(InvalidSelector),
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" | "DoesNotExist" if !values.is_empty() => return Err(InvalidSelector),
            "Exists" => key.to_owned(),
            "DoesNotExist" => format!("!{key}"),
            _ => return Err(InvalidSelector),
        };
        reqs.push((key.to_owned(), text));
    }
    // Upstream sorts requirements by key only when adding them to the selector.
    reqs.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(reqs
        .into_iter()
        .map(|(_, text)| text)
        .collect::<Vec<_>>()
        .join(","))
}

/// Upstream `metav1.FormatLabelSelector`: the selector string, `<none>` when it selects
/// everything or nothing, `<error>` when it is malformed.
pub(super) fn format_label_selector(sel: Option<&Value>) -> String {
    match selector_string(sel) {
        Ok(s) if s.is_empty() => "<none>".to_owned(),
        Ok(s) => s,
        Err(InvalidSelector) => "<error>".to_owned(),
    }
}

/// Upstream `helper.GetAccessModesAsString`: de-duplicated, in the fixed order RWO, ROX, RWX,
/// RWOP, joined with `,`.
pub(super) fn access_modes(modes: &[Value]) -> String {
    let has = |m: &str| modes.iter().any(|v| v.as_str() == Some(m));
    [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ]
    .into_iter()
    .filter(|(mode, _)| has(mode))
    .map(|(_, short)| short)
    .collect::<Vec<_>>()
    .join(",")
}

/// Upstream `listWithMoreString`: the first `max` items, then ` + N more...`; `<unset>` when
/// there is nothing at all.
pub(super) fn list_with_more(items: &[String], max: usize) -> String {
    let shown = items[..items.len().min(max)].join(",");
    if items.len() > max {
        format!("{shown} + {} more...", items.len() - max)
    } else if shown.is_empty() {
        "<unset>".to_owned()
    } else {
        shown
    }
}

/// Upstream `layoutContainerCells`: container names and images, each joined with `,`.
pub(super) fn container_cells(containers: &[Value]) -> (String, String) {
    let names: Vec<&str> = containers.iter().map(|c| str_at(c, &["name"])).collect();
    let images: Vec<&str> = containers.iter().map(|c| str_at(c, &["image"])).collect();
    (names.join(","), images.join(","))
}

/// Upstream `printBoolPtr`: `True`, `False` or `<unset>`.
pub(super) fn bool_ptr(v: Option<bool>) -> &'static str {
    match v {
        Some(true) => "True",
        Some(false) => "False",
        None => "<unset>",
    }
}

/// An `IntOrString` as text (`intstr.String()`), `None` when absent.
pub(super) fn int_or_string(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(s.clone()),
        _ => None,
    }
}

/// A resource quantity as text; `0` (the zero `Quantity`) when absent. The stored string is
/// printed as is: Skiff keeps quantities in the form they were written.
pub(super) fn quantity(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => "0".to_owned(),
    }
}

/// Go's `net.JoinHostPort`: IPv6 hosts are bracketed.
pub(super) fn join_host_port(host: &str, port: i64) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn labels_are_sorted_as_pairs_and_empty_is_none() {
        let m = json!({"tier": "web", "app": "nginx", "app.kubernetes.io/name": "x"});
        assert_eq!(
            format_labels(m.as_object()),
            "app.kubernetes.io/name=x,app=nginx,tier=web"
        );
        assert_eq!(format_labels(None), "<none>");
        assert_eq!(format_labels(json!({}).as_object()), "<none>");
    }

    #[test]
    fn selector_sorts_requirements_by_key_and_values() {
        let sel = json!({
            "matchLabels": {"tier": "web", "app": "x"},
            "matchExpressions": [
                {"key": "env", "operator": "In", "values": ["prod", "dev"]},
                {"key": "zz", "operator": "DoesNotExist"},
                {"key": "gpu", "operator": "Exists"},
                {"key": "os", "operator": "NotIn", "values": ["windows"]}
            ]
        });
        assert_eq!(
            format_label_selector(Some(&sel)),
            "app=x,env in (dev,prod),gpu,os notin (windows),tier=web,!zz"
        );
    }

    #[test]
    fn selector_empty_is_none_and_malformed_is_error() {
        assert_eq!(format_label_selector(None), "<none>");
        assert_eq!(format_label_selector(Some(&json!({}))), "<none>");
        let bad = json!({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]});
        assert_eq!(format_label_selector(Some(&bad)), "<error>");
        let bad_op = json!({"matchExpressions": [{"key": "a", "operator": "Near"}]});
        assert_eq!(format_label_selector(Some(&bad_op)), "<error>");
    }

    #[test]
    fn access_modes_use_fixed_order_without_duplicates() {
        let modes = json!([
            "ReadWriteMany",
            "ReadWriteOnce",
            "ReadWriteOnce",
            "ReadWriteOncePod"
        ]);
        assert_eq!(
            access_modes(modes.as_array().expect("array")),
            "RWO,RWX,RWOP"
        );
        assert_eq!(access_modes(&[]), "");
    }

    #[test]
    fn list_with_more_truncates_after_max() {
        let items: Vec<String> = ["a", "b", "c", "d", "e"].map(String::from).to_vec();
        assert_eq!(list_with_more(&items, 3), "a,b,c + 2 more...");
        assert_eq!(list_with_more(&items[..3], 3), "a,b,c");
        assert_eq!(list_with_more(&[], 3), "<unset>");
    }

    #[test]
    fn ipv6_hosts_are_bracketed() {
        assert_eq!(join_host_port("10.0.0.1", 80), "10.0.0.1:80");
        assert_eq!(join_host_port("fd00::1", 443), "[fd00::1]:443");
    }
}
