//! Printer of autoscaling horizontalpodautoscalers (v2 metrics, and the v1 CPU target).

use jiff::Timestamp;
use serde_json::Value;

use super::duration::since;
use super::format::{arr_at, created, get, int_at, name, obj_at, opt_int_at, str_at};
use super::{AGE, Column, NAME, Printer, col};

pub(super) fn printer(group: &str, resource: &str) -> Option<Printer> {
    match (group, resource) {
        ("autoscaling", "horizontalpodautoscalers") => Some(Printer {
            columns: HPA_COLUMNS,
            cells: hpa_cells,
        }),
        _ => None,
    }
}

const HPA_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Reference",
        "string",
        "reference to scaled resource; horizontal pod autoscaler will learn the current resource consumption and will set the desired number of pods by using its Scale subresource.",
    ),
    col(
        "Targets",
        "string",
        "metrics contains the specifications for which to use to calculate the desired replica count (the maximum replica count across all metrics will be used).",
    ),
    col(
        "MinPods",
        "string",
        "minReplicas is the lower limit for the number of replicas to which the autoscaler can scale down.",
    ),
    col(
        "MaxPods",
        "string",
        "maxReplicas is the upper limit for the number of replicas to which the autoscaler can scale up.",
    ),
    col(
        "Replicas",
        "string",
        "currentReplicas is current number of replicas of pods managed by this autoscaler, as last seen by the autoscaler.",
    ),
    AGE,
];

/// A metric target/current value as upstream prints it.
fn quantity_text(v: &Value, path: &[&str]) -> Option<String> {
    get(v, path).and_then(|q| match q {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    })
}

/// Upstream `formatHPAMetrics` over autoscaling/v2 `spec.metrics` and
/// `status.currentMetrics`; at most two metrics, then ` + N more...`.
fn hpa_metrics(specs: &[Value], statuses: &[Value]) -> String {
    if specs.is_empty() {
        return "<none>".to_owned();
    }
    let unknown = || "<unknown>".to_owned();
    // Upstream prints a nil `*Quantity` as `<nil>`.
    let nil = || "<nil>".to_owned();
    let mut list = Vec::with_capacity(specs.len());
    for (i, spec) in specs.iter().enumerate() {
        let status = statuses.get(i).unwrap_or(&Value::Null);
        let text = match str_at(spec, &["type"]) {
            ty @ ("External" | "Object") => {
                let field = if ty == "External" {
                    "external"
                } else {
                    "object"
                };
                if let Some(target) = quantity_text(spec, &[field, "target", "averageValue"]) {
                    let current = quantity_text(status, &[field, "current", "averageValue"])
                        .unwrap_or_else(unknown);
                    format!("{current}/{target} (avg)")
                } else {
                    let current = if obj_at(status, &[field]).is_some() {
                        quantity_text(status, &[field, "current", "value"]).unwrap_or_else(nil)
                    } else {
                        unknown()
                    };
                    let target =
                        quantity_text(spec, &[field, "target", "value"]).unwrap_or_else(nil);
                    format!("{current}/{target}")
                }
            }
            "Pods" => {
                let current = if obj_at(status, &["pods"]).is_some() {
                    quantity_text(status, &["pods", "current", "averageValue"]).unwrap_or_else(nil)
                } else {
                    unknown()
                };
                let target =
                    quantity_text(spec, &["pods", "target", "averageValue"]).unwrap_or_else(nil);
                format!("{current}/{target}")
            }
            ty @ ("Resource" | "ContainerResource") => {
                let field = if ty == "Resource" {
                    "resource"
                } else {
                    "containerResource"
                };
                let resource = str_at(spec, &[field, "name"]);
                if let Some(target) = quantity_text(spec, &[field, "target", "averageValue"]) {
                    let current = if obj_at(status, &[field]).is_some() {
                        quantity_text(status, &[field, "current", "averageValue"])
                            .unwrap_or_else(nil)
                    } else {
                        unknown()
                    };
                    format!("{resource}: {current}/{target}")
                } else {
                    let current = opt_int_at(status, &[field, "current", "averageUtilization"])
                        .filter(|_| obj_at(status, &[field]).is_some())
                        .map_or_else(unknown, |u| format!("{u}%"));
                    let target = opt_int_at(spec, &[field, "target", "averageUtilization"])
                        .map_or_else(|| "<auto>".to_owned(), |u| format!("{u}%"));
                    format!("{resource}: {current}/{target}")
                }
            }
            _ => "<unknown type>".to_owned(),
        };
        list.push(text);
    }
    const MAX: usize = 2;
    if list.len() > MAX {
        let more = list.len() - MAX;
        format!("{} + {more} more...", list[..MAX].join(", "))
    } else {
        list.join(", ")
    }
}

fn hpa_cells(hpa: &Value, now: Timestamp) -> Vec<Value> {
    let reference = format!(
        "{}/{}",
        str_at(hpa, &["spec", "scaleTargetRef", "kind"]),
        str_at(hpa, &["spec", "scaleTargetRef", "name"])
    );
    let metrics = match opt_int_at(hpa, &["spec", "targetCPUUtilizationPercentage"]) {
        // autoscaling/v1 shape: upstream converts the CPU target into one Resource metric.
        Some(target) => {
            let current = opt_int_at(hpa, &["status", "currentCPUUtilizationPercentage"])
                .map_or_else(|| "<unknown>".to_owned(), |c| format!("{c}%"));
            format!("cpu: {current}/{target}%")
        }
        None => hpa_metrics(
            arr_at(hpa, &["spec", "metrics"]),
            arr_at(hpa, &["status", "currentMetrics"]),
        ),
    };
    let min_pods = opt_int_at(hpa, &["spec", "minReplicas"])
        .map_or_else(|| "<unset>".to_owned(), |m| m.to_string());
    vec![
        name(hpa).into(),
        reference.into(),
        metrics.into(),
        min_pods.into(),
        int_at(hpa, &["spec", "maxReplicas"]).into(),
        int_at(hpa, &["status", "currentReplicas"]).into(),
        since(created(hpa), now).into(),
    ]
}
