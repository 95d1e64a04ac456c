//! Label-selector checks the workload validators need: `ValidateLabelSelector`, conversion
//! errors, and whether a selector matches a template's labels.

use serde_json::{Map, Value};

use super::{Errors, FieldError, Path, meta, str_of};

/// `ValidateLabelSelector` for a `metav1.LabelSelector` JSON object.
pub(crate) fn validate_label_selector(sel: &Value, path: &Path, errs: &mut Errors) {
    if !sel.is_object() {
        return;
    }
    meta::validate_labels(sel.get("matchLabels"), &path.child("matchLabels"), errs);
    for (i, req) in super::items(sel, "matchExpressions").iter().enumerate() {
        let rp = path.child("matchExpressions").index(i);
        let values = super::items(req, "values");
        match str_of(req, "operator") {
            "In" | "NotIn" => {
                if values.is_empty() {
                    errs.push(FieldError::required(
                        &rp.child("values"),
                        "must be specified when `operator` is 'In' or 'NotIn'",
                    ));
                }
            }
            "Exists" | "DoesNotExist" => {
                if !values.is_empty() {
                    errs.push(FieldError::forbidden(
                        &rp.child("values"),
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    ));
                }
            }
            op => errs.push(FieldError::invalid(
                &rp.child("operator"),
                op,
                "not a valid selector operator",
            )),
        }
        let key = str_of(req, "key");
        for m in meta::is_qualified_name(key) {
            errs.push(FieldError::invalid(&rp.child("key"), key, &m));
        }
    }
}

/// A selector converted for matching (`metav1.LabelSelectorAsSelector`).
pub(crate) enum Selector {
    /// A nil selector: matches nothing.
    Nothing,
    /// `{}`: matches everything.
    Everything,
    /// Requirements that must all hold.
    Requirements(Vec<Requirement>),
}

pub(crate) struct Requirement {
    key: String,
    op: String,
    values: Vec<String>,
}

impl Selector {
    /// Converts a selector value; `Err` where upstream's conversion fails.
    pub(crate) fn parse(sel: &Value) -> Result<Self, ()> {
        let Some(map) = sel.as_object() else {
            return Ok(Self::Nothing);
        };
        let mut reqs = Vec::new();
        if let Some(labels) = map.get("matchLabels").and_then(Value::as_object) {
            for (k, v) in labels {
                reqs.push(Requirement {
                    key: k.clone(),
                    op: "In".into(),
                    values: vec![v.as_str().unwrap_or_default().to_owned()],
                });
            }
        }
        for req in map
            .get("matchExpressions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let op = str_of(req, "operator").to_owned();
            let values: Vec<String> = super::items(req, "values")
                .iter()
                .map(|v| v.as_str().unwrap_or_default().to_owned())
                .collect();
            let ok = match op.as_str() {
                "In" | "NotIn" => !values.is_empty(),
                "Exists" | "DoesNotExist" => values.is_empty(),
                _ => false,
            };
            if !ok {
                return Err(());
            }
            reqs.push(Requirement {
                key: str_of(req, "key").to_owned(),
                op,
                values,
            });
        }
        if reqs.is_empty() {
            Ok(Self::Everything)
        } else {
            Ok(Self::Requirements(reqs))
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        matches!(self, Self::Everything)
    }

    pub(crate) fn matches(&self, labels: Option<&Map<String, Value>>) -> bool {
        let reqs = match self {
            Self::Nothing => return false,
            Self::Everything => return true,
            Self::Requirements(r) => r,
        };
        reqs.iter().all(|r| {
            let v = labels.and_then(|l| l.get(&r.key)).and_then(Value::as_str);
            match r.op.as_str() {
                "In" => v.is_some_and(|v| r.values.iter().any(|x| x == v)),
                "NotIn" => v.is_none_or(|v| !r.values.iter().any(|x| x == v)),
                "Exists" => v.is_some(),
                _ => v.is_none(),
            }
        })
    }
}

/// Whether a selector value is present but selects on nothing (`{}`).
pub(crate) fn is_empty_selector(sel: &Value) -> bool {
    sel.is_object()
        && super::items(sel, "matchExpressions").is_empty()
        && sel
            .get("matchLabels")
            .and_then(Value::as_object)
            .is_none_or(Map::is_empty)
}
