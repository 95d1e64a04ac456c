//! Label selectors and node selector terms, evaluated against label maps without allocation.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{NodeSelectorRequirement, NodeSelectorTerm};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

pub type Labels = BTreeMap<String, String>;

/// One requirement of a label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
    /// Node selectors only: integer comparisons.
    Gt(String, i64),
    Lt(String, i64),
    /// An operator we do not know: matches nothing, as the API would have rejected it.
    Never,
}

impl Requirement {
    pub fn matches(&self, labels: &Labels) -> bool {
        match self {
            Requirement::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::DoesNotExist(k) => !labels.contains_key(k),
            Requirement::Gt(k, n) => labels
                .get(k)
                .and_then(|v| v.parse::<i64>().ok())
                .is_some_and(|v| v > *n),
            Requirement::Lt(k, n) => labels
                .get(k)
                .and_then(|v| v.parse::<i64>().ok())
                .is_some_and(|v| v < *n),
            Requirement::Never => false,
        }
    }
}

/// A parsed `metav1.LabelSelector`. `None` inside the owner means "selects nothing" (a nil
/// selector); an empty requirement list selects everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    pub reqs: Vec<Requirement>,
}

impl Selector {
    pub fn from_label_selector(sel: &LabelSelector) -> Selector {
        let mut reqs = Vec::new();
        for (k, v) in sel.match_labels.iter().flatten() {
            reqs.push(Requirement::In(k.clone(), vec![v.clone()]));
        }
        for e in sel.match_expressions.iter().flatten() {
            let values = e.values.clone().unwrap_or_default();
            reqs.push(match e.operator.as_str() {
                "In" => Requirement::In(e.key.clone(), values),
                "NotIn" => Requirement::NotIn(e.key.clone(), values),
                "Exists" => Requirement::Exists(e.key.clone()),
                "DoesNotExist" => Requirement::DoesNotExist(e.key.clone()),
                _ => Requirement::Never,
            });
        }
        Selector { reqs }
    }

    pub fn from_map(m: &Labels) -> Selector {
        Selector {
            reqs: m
                .iter()
                .map(|(k, v)| Requirement::In(k.clone(), vec![v.clone()]))
                .collect(),
        }
    }

    pub fn matches(&self, labels: &Labels) -> bool {
        self.reqs.iter().all(|r| r.matches(labels))
    }

    pub fn is_empty(&self) -> bool {
        self.reqs.is_empty()
    }
}

fn node_requirement(r: &NodeSelectorRequirement) -> Requirement {
    let values = r.values.clone().unwrap_or_default();
    let int = || values.first().and_then(|v| v.parse::<i64>().ok());
    match r.operator.as_str() {
        "In" => Requirement::In(r.key.clone(), values),
        "NotIn" => Requirement::NotIn(r.key.clone(), values),
        "Exists" => Requirement::Exists(r.key.clone()),
        "DoesNotExist" => Requirement::DoesNotExist(r.key.clone()),
        "Gt" => int().map_or(Requirement::Never, |n| Requirement::Gt(r.key.clone(), n)),
        "Lt" => int().map_or(Requirement::Never, |n| Requirement::Lt(r.key.clone(), n)),
        _ => Requirement::Never,
    }
}

/// A parsed `NodeSelectorTerm`: label requirements and `metadata.name` field requirements.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeTerm {
    pub labels: Vec<Requirement>,
    pub fields: Vec<Requirement>,
}

impl NodeTerm {
    pub fn from_term(t: &NodeSelectorTerm) -> NodeTerm {
        NodeTerm {
            labels: t
                .match_expressions
                .iter()
                .flatten()
                .map(node_requirement)
                .collect(),
            fields: t
                .match_fields
                .iter()
                .flatten()
                .map(|r| {
                    if r.key == "metadata.name" {
                        node_requirement(r)
                    } else {
                        Requirement::Never
                    }
                })
                .collect(),
        }
    }

    /// An empty term matches no node (upstream: "nil or empty term matches no objects").
    pub fn matches(&self, node_name: &str, labels: &Labels) -> bool {
        if self.labels.is_empty() && self.fields.is_empty() {
            return false;
        }
        if !self.labels.iter().all(|r| r.matches(labels)) {
            return false;
        }
        if self.fields.is_empty() {
            return true;
        }
        let mut f = Labels::new();
        f.insert("metadata.name".to_string(), node_name.to_string());
        self.fields.iter().all(|r| match r {
            Requirement::In(_, v) => v.iter().any(|n| n == node_name),
            Requirement::NotIn(_, v) => !v.iter().any(|n| n == node_name),
            other => other.matches(&f),
        })
    }
}

/// Terms are ORed.
pub fn node_terms_match(terms: &[NodeTerm], node_name: &str, labels: &Labels) -> bool {
    terms.iter().any(|t| t.matches(node_name, labels))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(kv: &[(&str, &str)]) -> Labels {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn label_selector_operators() {
        let sel = Selector::from_label_selector(&LabelSelector {
            match_labels: Some(labels(&[("app", "web")])),
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "tier".into(),
                operator: "NotIn".into(),
                values: Some(vec!["db".into()]),
            }]),
        });
        assert!(sel.matches(&labels(&[("app", "web")])));
        assert!(!sel.matches(&labels(&[("app", "web"), ("tier", "db")])));
        assert!(!sel.matches(&labels(&[])));
        assert!(Selector::default().matches(&labels(&[])));
    }

    #[test]
    fn node_term_gt_and_fields() {
        let t = NodeTerm {
            labels: vec![Requirement::Gt("cores".into(), 4)],
            fields: vec![Requirement::In("metadata.name".into(), vec!["n1".into()])],
        };
        assert!(t.matches("n1", &labels(&[("cores", "8")])));
        assert!(!t.matches("n2", &labels(&[("cores", "8")])));
        assert!(!t.matches("n1", &labels(&[("cores", "2")])));
        assert!(!NodeTerm::default().matches("n1", &labels(&[])));
    }
}
