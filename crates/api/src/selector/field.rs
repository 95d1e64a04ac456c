//! Field selectors: upstream `fields.ParseSelector` terms, escaping and matching.

use std::fmt;

use serde_json::Value;

use super::validation::go_quote;
use super::{Error, Result};
use crate::fields;

/// One `field=value` / `field!=value` term of a field selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRequirement {
    /// The field label as written (e.g. `spec.nodeName`).
    pub field: String,
    /// `false` for `=`/`==`, `true` for `!=`.
    pub negated: bool,
    /// The unescaped value.
    pub value: String,
}

/// A parsed `fieldSelector`: the AND of its terms.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    /// The selector that matches everything.
    pub fn everything() -> Self {
        Self::default()
    }

    /// Parses the `fieldSelector` text: comma-separated `f=v`, `f==v`, `f!=v`, with `\,`, `\=`
    /// and `\\` escapes in values (upstream `fields.ParseSelector`).
    pub fn parse(s: &str) -> Result<FieldSelector> {
        let mut terms = split_terms(s);
        terms.sort();
        let mut requirements = Vec::new();
        for term in terms.iter().filter(|t| !t.is_empty()) {
            let Some((field, operator, raw)) = split_term(term) else {
                return Err(Error::InvalidFieldSelector(format!(
                    "invalid selector: '{s}'; can't understand '{term}'"
                )));
            };
            let value = unescape_value(raw).map_err(Error::InvalidFieldSelector)?;
            requirements.push(FieldRequirement {
                field: field.to_owned(),
                negated: operator == "!=",
                value,
            });
        }
        Ok(FieldSelector { requirements })
    }

    /// Whether the selector places no restriction.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The terms, in upstream's sorted order.
    pub fn requirements(&self) -> &[FieldRequirement] {
        &self.requirements
    }

    /// Rejects labels the kind does not support, with upstream's conversion error text.
    pub fn validate(&self, group: &str, kind: &str) -> Result<()> {
        for requirement in &self.requirements {
            let field = &requirement.field;
            if fields::canonical_field(group, kind, field).is_some() {
                continue;
            }
            let message = if fields::has_field_conversion(group, kind) {
                format!("field label not supported: {field}")
            } else {
                format!(
                    "{} is not a known field selector: only \"metadata.name\", \"metadata.namespace\"",
                    go_quote(field)
                )
            };
            return Err(Error::UnsupportedField {
                field: field.clone(),
                message,
            });
        }
        Ok(())
    }

    /// Whether `obj` (of `group`/`kind`) satisfies every term. A label the kind does not
    /// expose compares as the empty string, as upstream's field sets do.
    pub fn matches(&self, group: &str, kind: &str, obj: &Value) -> bool {
        self.requirements.iter().all(|r| {
            let actual = fields::field_value(group, kind, obj, &r.field).unwrap_or_default();
            (actual == r.value) != r.negated
        })
    }

    /// The value of the first `field=value` (or `==`) term for `field`.
    pub fn exact_value(&self, field: &str) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| r.field == field && !r.negated)
            .map(|r| r.value.as_str())
    }

    /// The name demanded by `metadata.name=<name>`, which lets a watch or list serve one key.
    pub fn exact_name(&self) -> Option<&str> {
        self.exact_value("metadata.name")
    }

    /// The namespace demanded by `metadata.namespace=<ns>`.
    pub fn exact_namespace(&self) -> Option<&str> {
        self.exact_value("metadata.namespace")
    }
}

impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .requirements
            .iter()
            .map(|r| {
                format!(
                    "{}{}{}",
                    r.field,
                    if r.negated { "!=" } else { "=" },
                    escape_value(&r.value)
                )
            })
            .collect();
        f.write_str(&parts.join(","))
    }
}

/// Splits at commas that are not escaped; escapes stay in the terms.
fn split_terms(s: &str) -> Vec<&str> {
    if s.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == ',' {
            terms.push(&s[start..i]);
            start = i + 1;
        }
    }
    terms.push(&s[start..]);
    terms
}

/// Splits a term at its first operator (`!=`, then `==`, then `=` at each position).
fn split_term(term: &str) -> Option<(&str, &'static str, &str)> {
    for (i, _) in term.char_indices() {
        let rest = &term[i..];
        for op in ["!=", "==", "="] {
            if let Some(value) = rest.strip_prefix(op) {
                return Some((&term[..i], op, value));
            }
        }
    }
    None
}

fn unescape_value(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut escaped = false;
    for c in s.chars() {
        if escaped {
            match c {
                '\\' | ',' | '=' => out.push(c),
                other => {
                    return Err(format!(
                        "invalid field selector: invalid escape sequence: \\{other}"
                    ));
                }
            }
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            // Go prints the rune with %v, i.e. as its code point number.
            ',' | '=' => {
                return Err(format!(
                    "invalid field selector: unescaped character in value: {}",
                    c as u32
                ));
            }
            other => out.push(other),
        }
    }
    if escaped {
        return Err("invalid field selector: invalid escape sequence: \\".to_owned());
    }
    Ok(out)
}

fn escape_value(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace(',', "\\,")
        .replace('=', "\\=")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn field_selector_parses_operators_and_matches_pods() {
        let s = FieldSelector::parse("spec.nodeName=n1,status.phase!=Failed").expect("parses");
        let pod = json!({"spec": {"nodeName": "n1"}, "status": {"phase": "Running"}});
        assert!(s.matches("", "Pod", &pod));
        let failed = json!({"spec": {"nodeName": "n1"}, "status": {"phase": "Failed"}});
        assert!(!s.matches("", "Pod", &failed));
        let s = FieldSelector::parse("spec.nodeName==").expect("parses");
        assert!(s.matches("", "Pod", &json!({"spec": {}})));
        assert!(!s.matches("", "Pod", &pod));
    }

    #[test]
    fn field_selector_escapes() {
        let s = FieldSelector::parse(r"metadata.name=a\,b\=c\\d").expect("parses");
        assert_eq!(s.exact_name(), Some(r"a,b=c\d"));
        assert_eq!(s.to_string(), r"metadata.name=a\,b\=c\\d");
        let err = FieldSelector::parse(r"metadata.name=a\x").expect_err("bad escape");
        assert_eq!(
            err.to_string(),
            r"invalid field selector: invalid escape sequence: \x"
        );
        let err = FieldSelector::parse("metadata.name=a=b").expect_err("unescaped");
        assert_eq!(
            err.to_string(),
            "invalid field selector: unescaped character in value: 61"
        );
        let err = FieldSelector::parse("metadata.name").expect_err("no operator");
        assert_eq!(
            err.to_string(),
            "invalid selector: 'metadata.name'; can't understand 'metadata.name'"
        );
    }

    #[test]
    fn field_selector_exact_name_and_namespace() {
        let s = FieldSelector::parse("metadata.namespace=ns,metadata.name=p").expect("parses");
        assert_eq!(s.exact_name(), Some("p"));
        assert_eq!(s.exact_namespace(), Some("ns"));
        assert_eq!(
            FieldSelector::parse("metadata.name!=p")
                .expect("parses")
                .exact_name(),
            None
        );
        assert!(FieldSelector::parse("").expect("parses").is_empty());
    }

    #[test]
    fn field_selector_validation_uses_upstream_wording() {
        let s = FieldSelector::parse("spec.foo=1").expect("parses");
        let err = s.validate("", "Pod").expect_err("unsupported");
        assert_eq!(err.to_string(), "field label not supported: spec.foo");
        assert_eq!(err.status_code(), 400);
        let s = FieldSelector::parse("status.replicas=0").expect("parses");
        let err = s.validate("apps", "ReplicaSet").expect_err("no conversion");
        assert_eq!(
            err.to_string(),
            "\"status.replicas\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
        );
        assert!(
            FieldSelector::parse("spec.host=n1")
                .expect("parses")
                .validate("", "Pod")
                .is_ok()
        );
        assert!(
            FieldSelector::parse("metadata.namespace=x")
                .expect("parses")
                .validate("", "Node")
                .is_err()
        );
    }

    #[test]
    fn field_selector_on_events_as_kubectl_describe_sends() {
        let s = FieldSelector::parse(
            "involvedObject.name=web-1,involvedObject.namespace=default,involvedObject.uid=u1",
        )
        .expect("parses");
        assert!(s.validate("", "Event").is_ok());
        let event = json!({"involvedObject": {"name": "web-1", "namespace": "default", "uid": "u1", "kind": "Pod"}});
        assert!(s.matches("", "Event", &event));
        let other =
            json!({"involvedObject": {"name": "web-2", "namespace": "default", "uid": "u2"}});
        assert!(!s.matches("", "Event", &other));
    }
}
