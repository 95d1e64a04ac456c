//! Small shared helpers: API time formats, resource quantities, QoS class.

use k8s_openapi::api::core::v1::Pod;

/// `metav1.Time`: RFC 3339 with second precision.
pub fn time_of_seconds(secs: i64) -> String {
    jiff::Timestamp::from_second(secs)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .to_string()
}

/// Now, as `metav1.Time`.
pub fn now_time() -> String {
    time_of_seconds(jiff::Timestamp::now().as_second())
}

/// A CRI timestamp (nanoseconds since the epoch) as `metav1.Time`.
pub fn time_of_nanos(nanos: i64) -> String {
    time_of_seconds(nanos.div_euclid(1_000_000_000))
}

/// Now, as `metav1.MicroTime` (microsecond precision, as Lease renewTime wants).
pub fn now_micro() -> String {
    let now = jiff::Timestamp::now();
    let micros = now.subsec_microsecond();
    let base = time_of_seconds(now.as_second());
    // "2026-01-01T00:00:00Z" -> "2026-01-01T00:00:00.123456Z"
    format!("{}.{micros:06}Z", base.trim_end_matches('Z'))
}

/// Parse a resource quantity into a value scaled by `scale` (1000 for millicores, 1 for bytes).
/// Returns `None` for what it cannot read.
pub fn quantity(q: &str, scale: f64) -> Option<i64> {
    let q = q.trim();
    let suffixes: [(&str, f64); 14] = [
        ("Ki", 1024.0),
        ("Mi", 1024.0 * 1024.0),
        ("Gi", 1024.0 * 1024.0 * 1024.0),
        ("Ti", 1024f64.powi(4)),
        ("Pi", 1024f64.powi(5)),
        ("Ei", 1024f64.powi(6)),
        ("n", 1e-9),
        ("u", 1e-6),
        ("m", 1e-3),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
    ];
    let (number, mult) = suffixes
        .iter()
        .find(|(s, _)| q.ends_with(s) && !q.ends_with(&format!("e{s}")))
        .map(|(s, m)| (&q[..q.len() - s.len()], *m))
        .unwrap_or((q, 1.0));
    let value: f64 = number.parse().ok()?;
    Some((value * mult * scale).ceil() as i64)
}

/// A container resource (`cpu` in millicores, `memory` in bytes) from requests or limits.
pub fn resource(
    map: Option<
        &std::collections::BTreeMap<
            String,
            k8s_openapi::apimachinery::pkg::api::resource::Quantity,
        >,
    >,
    name: &str,
) -> Option<i64> {
    let scale = if name == "cpu" { 1000.0 } else { 1.0 };
    map.and_then(|m| m.get(name))
        .and_then(|q| quantity(&q.0, scale))
}

/// The pod's QoS class, as upstream computes it.
pub fn qos_class(pod: &Pod) -> &'static str {
    let Some(spec) = pod.spec.as_ref() else {
        return "BestEffort";
    };
    let all = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten());
    let mut any = false;
    let mut guaranteed = true;
    for c in all {
        let res = c.resources.as_ref();
        let requests = res.and_then(|r| r.requests.as_ref());
        let limits = res.and_then(|r| r.limits.as_ref());
        for name in ["cpu", "memory"] {
            let limit = resource(limits, name);
            // A missing request defaults to the limit.
            let request = resource(requests, name).or(limit);
            if request.is_some() || limit.is_some() {
                any = true;
            }
            if limit.is_none() || request != limit {
                guaranteed = false;
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(quantity("100m", 1000.0), Some(100));
        assert_eq!(quantity("1", 1000.0), Some(1000));
        assert_eq!(quantity("0.5", 1000.0), Some(500));
        assert_eq!(quantity("64Mi", 1.0), Some(64 * 1024 * 1024));
        assert_eq!(quantity("1G", 1.0), Some(1_000_000_000));
        assert_eq!(quantity("129e6", 1.0), Some(129_000_000));
        assert_eq!(quantity("junk", 1.0), None);
    }

    #[test]
    fn times() {
        assert_eq!(time_of_seconds(0), "1970-01-01T00:00:00Z");
        assert_eq!(time_of_nanos(1_500_000_000), "1970-01-01T00:00:01Z");
        let m = now_micro();
        assert!(m.ends_with('Z') && m.contains('.'), "{m}");
        assert_eq!(m.split('.').nth(1).map(str::len), Some(7), "{m}");
    }

    #[test]
    fn qos() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "spec": {"containers": [{"name": "a"}]}
        }))
        .expect("pod");
        assert_eq!(qos_class(&pod), "BestEffort");
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "spec": {"containers": [{"name": "a", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}
        }))
        .expect("pod");
        assert_eq!(qos_class(&pod), "Guaranteed");
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "spec": {"containers": [{"name": "a", "resources": {"requests": {"cpu": "100m"}}}]}
        }))
        .expect("pod");
        assert_eq!(qos_class(&pod), "Burstable");
    }
}
