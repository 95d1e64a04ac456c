//! Rendering of bad values the way upstream's `field.Error` prints its Go values (`%q` strings,
//! bare numbers, `%#v` maps and structs), chosen from the JSON shape and the field path.

use std::fmt::Write as _;

use serde_json::{Map, Value};

/// Quotes `s` like Go's `strconv.Quote` / `%q`: printable text kept, escapes for the rest.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Renders a bad value as upstream would print the Go value held at `field`.
pub(super) fn go_value(field: &str, v: &Value) -> String {
    let last = field.rsplit('.').next().unwrap_or(field);
    // IntOrString implements fmt.Stringer, so it prints bare in either form.
    if matches!(last, "maxUnavailable" | "maxSurge" | "targetPort")
        && let Value::String(s) = v
    {
        return s.clone();
    }
    match v {
        Value::Null if last == "labels" || last == "selector" => "map[string]string(nil)".into(),
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => go_quote(s),
        Value::Object(m) if last == "selector" && is_label_selector(m) => label_selector(m),
        Value::Object(m) if last == "strategy" => deployment_strategy(m),
        Value::Object(m) if last == "roleRef" => role_ref(m),
        Value::Object(m) if is_service_port_path(field) => service_port(m),
        Value::Object(m) if m.values().all(Value::is_string) => string_map(Some(m)),
        Value::Array(a) if a.iter().all(Value::is_string) => string_slice(Some(a)),
        other => other.to_string(),
    }
}

fn is_label_selector(m: &Map<String, Value>) -> bool {
    m.keys()
        .all(|k| k == "matchLabels" || k == "matchExpressions")
}

fn is_service_port_path(field: &str) -> bool {
    field.starts_with("spec.ports[") && field.ends_with(']')
}

fn string_map(m: Option<&Map<String, Value>>) -> String {
    let Some(m) = m else {
        return "map[string]string(nil)".into();
    };
    let pairs: Vec<String> = m
        .iter()
        .map(|(k, v)| {
            format!(
                "{}:{}",
                go_quote(k),
                go_quote(v.as_str().unwrap_or_default())
            )
        })
        .collect();
    format!("map[string]string{{{}}}", pairs.join(", "))
}

fn string_slice(a: Option<&Vec<Value>>) -> String {
    let Some(a) = a else {
        return "[]string(nil)".into();
    };
    let items: Vec<String> = a
        .iter()
        .map(|v| go_quote(v.as_str().unwrap_or_default()))
        .collect();
    format!("[]string{{{}}}", items.join(", "))
}

fn str_field(m: &Map<String, Value>, key: &str) -> String {
    go_quote(m.get(key).and_then(Value::as_str).unwrap_or_default())
}

fn label_selector(m: &Map<String, Value>) -> String {
    let labels = string_map(m.get("matchLabels").and_then(Value::as_object));
    let exprs = match m.get("matchExpressions").and_then(Value::as_array) {
        None => "[]v1.LabelSelectorRequirement(nil)".to_owned(),
        Some(list) => {
            let items: Vec<String> = list
                .iter()
                .filter_map(Value::as_object)
                .map(|r| {
                    format!(
                        "v1.LabelSelectorRequirement{{Key:{}, Operator:{}, Values:{}}}",
                        str_field(r, "key"),
                        str_field(r, "operator"),
                        string_slice(r.get("values").and_then(Value::as_array))
                    )
                })
                .collect();
            format!("[]v1.LabelSelectorRequirement{{{}}}", items.join(", "))
        }
    };
    format!("v1.LabelSelector{{MatchLabels:{labels}, MatchExpressions:{exprs}}}")
}

fn deployment_strategy(m: &Map<String, Value>) -> String {
    // A non-nil pointer prints as an address upstream; no stable text exists for it.
    let rolling = if m.get("rollingUpdate").is_some_and(|v| !v.is_null()) {
        "(*apps.RollingUpdateDeployment)(0xc000000000)"
    } else {
        "(*apps.RollingUpdateDeployment)(nil)"
    };
    format!(
        "apps.DeploymentStrategy{{Type:{}, RollingUpdate:{rolling}}}",
        str_field(m, "type")
    )
}

fn role_ref(m: &Map<String, Value>) -> String {
    format!(
        "rbac.RoleRef{{APIGroup:{}, Kind:{}, Name:{}}}",
        str_field(m, "apiGroup"),
        str_field(m, "kind"),
        str_field(m, "name")
    )
}

fn service_port(m: &Map<String, Value>) -> String {
    let port = m.get("port").and_then(Value::as_i64).unwrap_or(0);
    format!(
        "core.ServicePort{{Name:\"\", Protocol:{}, AppProtocol:(*string)(nil), Port:{port}, \
         TargetPort:intstr.IntOrString{{Type:0, IntVal:0, StrVal:\"\"}}, NodePort:0}}",
        str_field(m, "protocol")
    )
}
