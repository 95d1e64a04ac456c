//! Resource quantities and pod requests, computed the way the scheduler framework counts them.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// Default CPU request (millicores) used for scoring pods that set none (upstream `DefaultMilliCPURequest`).
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// Default memory request (bytes) used for scoring pods that set none (upstream `DefaultMemoryRequest`).
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// A set of resources in the units the scheduler compares: millicores for CPU, bytes for memory and
/// ephemeral storage, plain integers for every other (scalar) resource.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
    pub allowed_pods: i64,
    /// Extended resources, hugepages and any other named resource.
    pub scalar: BTreeMap<String, i64>,
}

impl Resources {
    /// Builds resources from a `ResourceList`-shaped map (node allocatable, container requests).
    pub fn from_list(list: &BTreeMap<String, Quantity>) -> Self {
        let mut r = Resources::default();
        for (name, q) in list {
            r.set(name, q);
        }
        r
    }

    fn set(&mut self, name: &str, q: &Quantity) {
        match name {
            "cpu" => self.milli_cpu = parse_milli(&q.0).unwrap_or(0),
            "memory" => self.memory = parse_value(&q.0).unwrap_or(0),
            "ephemeral-storage" => self.ephemeral_storage = parse_value(&q.0).unwrap_or(0),
            "pods" => self.allowed_pods = parse_value(&q.0).unwrap_or(0),
            _ => {
                self.scalar
                    .insert(name.to_string(), parse_value(&q.0).unwrap_or(0));
            }
        }
    }

    pub fn add(&mut self, other: &Resources) {
        self.milli_cpu += other.milli_cpu;
        self.memory += other.memory;
        self.ephemeral_storage += other.ephemeral_storage;
        for (k, v) in &other.scalar {
            *self.scalar.entry(k.clone()).or_insert(0) += v;
        }
    }

    pub fn sub(&mut self, other: &Resources) {
        self.milli_cpu -= other.milli_cpu;
        self.memory -= other.memory;
        self.ephemeral_storage -= other.ephemeral_storage;
        for (k, v) in &other.scalar {
            *self.scalar.entry(k.clone()).or_insert(0) -= v;
        }
    }

    /// Element-wise maximum (the init-container rule).
    pub fn max_with(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.max(other.milli_cpu);
        self.memory = self.memory.max(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(other.ephemeral_storage);
        for (k, v) in &other.scalar {
            let e = self.scalar.entry(k.clone()).or_insert(0);
            *e = (*e).max(*v);
        }
    }

    pub fn is_zero(&self) -> bool {
        self.milli_cpu == 0
            && self.memory == 0
            && self.ephemeral_storage == 0
            && self.scalar.values().all(|v| *v == 0)
    }

    pub fn scalar(&self, name: &str) -> i64 {
        self.scalar.get(name).copied().unwrap_or(0)
    }
}

fn container_requests(c: &Container) -> Resources {
    c.resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .map(Resources::from_list)
        .unwrap_or_default()
}

fn is_restartable_init(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

/// The pod's effective request as upstream's `resourcehelper.PodRequests`: the sum of the regular
/// containers plus sidecars (restartable init containers), the element-wise maximum with every
/// regular init container (which runs alone, alongside the sidecars started before it), plus the
/// pod overhead.
pub fn pod_requests(spec: &PodSpec) -> Resources {
    let mut reqs = Resources::default();
    for c in &spec.containers {
        reqs.add(&container_requests(c));
    }
    let mut sidecars = Resources::default();
    let mut init_max = Resources::default();
    for c in spec.init_containers.iter().flatten() {
        let r = container_requests(c);
        if is_restartable_init(c) {
            sidecars.add(&r);
            // A sidecar keeps running, so the sidecars started so far count during later inits.
            init_max.max_with(&sidecars);
        } else {
            let mut during = sidecars.clone();
            during.add(&r);
            init_max.max_with(&during);
        }
    }
    reqs.add(&sidecars);
    reqs.max_with(&init_max);
    if let Some(overhead) = &spec.overhead {
        reqs.add(&Resources::from_list(overhead));
    }
    reqs
}

/// CPU and memory requests where a container without a request counts the upstream defaults
/// (100m, 200Mi), used for scoring so that best-effort pods still spread (`NonZeroRequested`).
pub fn pod_non_zero_requests(spec: &PodSpec) -> (i64, i64) {
    let nz = |c: &Container| {
        let r = container_requests(c);
        let requests = c.resources.as_ref().and_then(|r| r.requests.as_ref());
        let cpu = if requests.is_some_and(|m| m.contains_key("cpu")) {
            r.milli_cpu
        } else {
            DEFAULT_MILLI_CPU_REQUEST
        };
        let mem = if requests.is_some_and(|m| m.contains_key("memory")) {
            r.memory
        } else {
            DEFAULT_MEMORY_REQUEST
        };
        (cpu, mem)
    };
    let (mut cpu, mut mem) = (0, 0);
    for c in &spec.containers {
        let (c1, m1) = nz(c);
        cpu += c1;
        mem += m1;
    }
    let (mut side_cpu, mut side_mem) = (0, 0);
    let (mut init_cpu, mut init_mem) = (0, 0);
    for c in spec.init_containers.iter().flatten() {
        let (c1, m1) = nz(c);
        if is_restartable_init(c) {
            side_cpu += c1;
            side_mem += m1;
            init_cpu = init_cpu.max(side_cpu);
            init_mem = init_mem.max(side_mem);
        } else {
            init_cpu = init_cpu.max(side_cpu + c1);
            init_mem = init_mem.max(side_mem + m1);
        }
    }
    cpu = (cpu + side_cpu).max(init_cpu);
    mem = (mem + side_mem).max(init_mem);
    if let Some(overhead) = &spec.overhead {
        let o = Resources::from_list(overhead);
        cpu += o.milli_cpu;
        mem += o.memory;
    }
    (cpu, mem)
}

/// The pod's priority (`spec.priority`, set by admission from its PriorityClass), 0 when unset.
pub fn pod_priority(pod: &Pod) -> i32 {
    pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
}

/// Parses a Kubernetes quantity and returns its value in thousandths, rounded up (as
/// `Quantity.MilliValue`).
pub fn parse_milli(s: &str) -> Option<i64> {
    let (num, scale) = split_quantity(s)?;
    scaled(num, scale, 3)
}

/// Parses a Kubernetes quantity and returns its integer value, rounded up (as `Quantity.Value`).
pub fn parse_value(s: &str) -> Option<i64> {
    let (num, scale) = split_quantity(s)?;
    scaled(num, scale, 0)
}

/// A decimal mantissa plus a multiplier expressed as (base-2 exponent, base-10 exponent).
struct Scale {
    pow2: u32,
    pow10: i32,
}

fn split_quantity(s: &str) -> Option<(&str, Scale)> {
    let s = s.trim();
    let idx = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(idx);
    let scale = match suffix {
        "" => Scale { pow2: 0, pow10: 0 },
        "Ki" => Scale { pow2: 10, pow10: 0 },
        "Mi" => Scale { pow2: 20, pow10: 0 },
        "Gi" => Scale { pow2: 30, pow10: 0 },
        "Ti" => Scale { pow2: 40, pow10: 0 },
        "Pi" => Scale { pow2: 50, pow10: 0 },
        "Ei" => Scale { pow2: 60, pow10: 0 },
        "n" => Scale { pow2: 0, pow10: -9 },
        "u" => Scale { pow2: 0, pow10: -6 },
        "m" => Scale { pow2: 0, pow10: -3 },
        "k" => Scale { pow2: 0, pow10: 3 },
        "M" => Scale { pow2: 0, pow10: 6 },
        "G" => Scale { pow2: 0, pow10: 9 },
        "T" => Scale { pow2: 0, pow10: 12 },
        "P" => Scale { pow2: 0, pow10: 15 },
        "E" => Scale { pow2: 0, pow10: 18 },
        other => {
            // Exponent form: 1e3, 1.5E-3.
            let e = other
                .strip_prefix('e')
                .or_else(|| other.strip_prefix('E'))?;
            Scale {
                pow2: 0,
                pow10: e.parse().ok()?,
            }
        }
    };
    Some((num, scale))
}

fn scaled(num: &str, scale: Scale, extra10: i32) -> Option<i64> {
    let (neg, num) = match num.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, num.strip_prefix('+').unwrap_or(num)),
    };
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    // Mantissa as an integer with `frac.len()` implied decimals.
    let digits = format!("{int}{frac}");
    let mut mant: i128 = if digits.is_empty() {
        0
    } else {
        digits.parse().ok()?
    };
    mant = mant.checked_mul(1i128 << scale.pow2)?;
    let exp10 = scale.pow10 + extra10 - frac.len() as i32;
    let value = if exp10 >= 0 {
        mant.checked_mul(10i128.checked_pow(exp10 as u32)?)?
    } else {
        let div = 10i128.checked_pow((-exp10) as u32)?;
        // Round up, as the API machinery does for fractional values.
        (mant + div - 1) / div
    };
    let value = if neg { -value } else { value };
    i64::try_from(value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_parse_as_the_api_machinery() {
        assert_eq!(parse_milli("1"), Some(1000));
        assert_eq!(parse_milli("100m"), Some(100));
        assert_eq!(parse_milli("0.5"), Some(500));
        assert_eq!(parse_milli("1.5"), Some(1500));
        assert_eq!(parse_value("16Gi"), Some(16 * 1024 * 1024 * 1024));
        assert_eq!(parse_value("1k"), Some(1000));
        assert_eq!(parse_value("110"), Some(110));
        assert_eq!(parse_value("1e3"), Some(1000));
        assert_eq!(parse_value("100m"), Some(1));
        assert_eq!(parse_milli("1n"), Some(1));
        assert_eq!(parse_value("bogus"), None);
    }
}
