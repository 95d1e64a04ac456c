//! Node-side admission, as the kubelet's: a pod bound to this node that does not fit the node's
//! allocatable cpu, memory, ephemeral-storage or pod count next to the pods already admitted is
//! rejected (phase Failed, reason `OutOf<resource>`) instead of run. The scheduler normally
//! prevents this; pods created with `spec.nodeName` skip it.

use k8s_openapi::api::core::v1::{Container, Node, Pod};

use crate::util;

/// A pod's (or node's) amounts: cpu in millicores, memory and ephemeral-storage in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Amounts {
    pub cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
}

impl Amounts {
    fn add(&mut self, o: Amounts) {
        self.cpu += o.cpu;
        self.memory += o.memory;
        self.ephemeral_storage += o.ephemeral_storage;
    }

    fn max(&mut self, o: Amounts) {
        self.cpu = self.cpu.max(o.cpu);
        self.memory = self.memory.max(o.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(o.ephemeral_storage);
    }
}

/// What the node offers pods: its allocatable resources and pod count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Allocatable {
    pub amounts: Amounts,
    pub pods: i64,
}

impl Allocatable {
    /// From `status.allocatable`; a resource the node does not report is not limited.
    pub fn of(node: &Node) -> Option<Allocatable> {
        let a = node.status.as_ref()?.allocatable.as_ref()?;
        let get = |name: &str, scale: f64| {
            a.get(name)
                .and_then(|q| util::quantity(&q.0, scale))
                .unwrap_or(i64::MAX)
        };
        Some(Allocatable {
            amounts: Amounts {
                cpu: get("cpu", 1000.0),
                memory: get("memory", 1.0),
                ephemeral_storage: get("ephemeral-storage", 1.0),
            },
            pods: get("pods", 1.0),
        })
    }
}

fn container_requests(c: &Container) -> Amounts {
    let res = c.resources.as_ref();
    let (requests, limits) = (
        res.and_then(|r| r.requests.as_ref()),
        res.and_then(|r| r.limits.as_ref()),
    );
    // A request left out defaults to the limit (the API server defaults it so too).
    let get = |name| {
        util::resource(requests, name)
            .or_else(|| util::resource(limits, name))
            .unwrap_or(0)
    };
    Amounts {
        cpu: get("cpu"),
        memory: get("memory"),
        ephemeral_storage: get("ephemeral-storage"),
    }
}

/// The pod's effective requests as upstream's `PodRequests`: the app containers plus the
/// sidecars, or the largest init step if more (an init container runs next to the sidecars
/// started before it), plus the pod overhead.
pub fn pod_requests(pod: &Pod) -> Amounts {
    let Some(spec) = pod.spec.as_ref() else {
        return Amounts::default();
    };
    let mut total = Amounts::default();
    for c in &spec.containers {
        total.add(container_requests(c));
    }
    let mut sidecars = Amounts::default();
    let mut init_peak = Amounts::default();
    for c in spec.init_containers.iter().flatten() {
        let r = container_requests(c);
        if crate::pods::is_sidecar(c) {
            total.add(r);
            sidecars.add(r);
            init_peak.max(sidecars);
        } else {
            let mut step = r;
            step.add(sidecars);
            init_peak.max(step);
        }
    }
    total.max(init_peak);
    if let Some(o) = spec.overhead.as_ref() {
        let o = Some(o);
        total.add(Amounts {
            cpu: util::resource(o, "cpu").unwrap_or(0),
            memory: util::resource(o, "memory").unwrap_or(0),
            ephemeral_storage: util::resource(o, "ephemeral-storage").unwrap_or(0),
        });
    }
    total
}

/// Why a pod was refused: the status reason and message upstream writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// `OutOfcpu`, `OutOfmemory`, `OutOfpods`, `OutOfephemeral-storage`.
    pub reason: String,
    /// `Node didn't have enough resource: cpu, requested: 2000, used: 500, capacity: 2000`.
    pub message: String,
}

/// Whether `pod` fits next to `admitted` (the node's other active pods). Checked in the
/// scheduler's order (pods, cpu, memory, ephemeral-storage); the first shortage is reported.
pub fn admit<'a>(
    node: &Allocatable,
    admitted: impl IntoIterator<Item = &'a Pod>,
    pod: &Pod,
) -> Result<(), Rejection> {
    let mut used = Amounts::default();
    let mut count = 0i64;
    for p in admitted {
        used.add(pod_requests(p));
        count += 1;
    }
    let want = pod_requests(pod);
    let short = |name: &str, requested: i64, used: i64, capacity: i64| Rejection {
        reason: format!("OutOf{name}"),
        message: format!(
            "Node didn't have enough resource: {name}, requested: {requested}, used: {used}, capacity: {capacity}"
        ),
    };
    if count + 1 > node.pods {
        return Err(short("pods", 1, count, node.pods));
    }
    let checks = [
        ("cpu", want.cpu, used.cpu, node.amounts.cpu),
        ("memory", want.memory, used.memory, node.amounts.memory),
        (
            "ephemeral-storage",
            want.ephemeral_storage,
            used.ephemeral_storage,
            node.amounts.ephemeral_storage,
        ),
    ];
    for (name, requested, used, capacity) in checks {
        // Nothing requested always fits, as upstream (a BestEffort pod on a full node runs).
        if requested > 0 && requested > capacity.saturating_sub(used) {
            return Err(short(name, requested, used, capacity));
        }
    }
    Ok(())
}

/// Whether the pod still takes its share of the node (not finished).
pub fn is_active(pod: &Pod) -> bool {
    !matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded") | Some("Failed")
    )
}

/// Whether the node has already run something of this pod (admitted before an agent restart,
/// so it is not judged again).
pub fn already_running(pod: &Pod) -> bool {
    let Some(s) = pod.status.as_ref() else {
        return false;
    };
    s.container_statuses
        .iter()
        .flatten()
        .chain(s.init_container_statuses.iter().flatten())
        .any(|c| c.container_id.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": spec})).expect("pod")
    }

    fn req(cpu: &str, mem: &str) -> serde_json::Value {
        json!({"requests": {"cpu": cpu, "memory": mem}})
    }

    fn node(cpu: &str, mem: &str, pods: &str) -> Allocatable {
        let n: Node = serde_json::from_value(json!({"status": {"allocatable":
            {"cpu": cpu, "memory": mem, "pods": pods}}}))
        .expect("node");
        Allocatable::of(&n).expect("allocatable")
    }

    #[test]
    fn requests_sum_apps_and_sidecars_and_take_the_init_peak() {
        let p = pod(json!({
            "initContainers": [
                {"name": "big-init", "resources": req("3", "1Mi")},
                {"name": "side", "restartPolicy": "Always", "resources": req("500m", "10Mi")},
                {"name": "after-side", "resources": req("1", "1Mi")},
            ],
            "containers": [
                {"name": "a", "resources": req("250m", "20Mi")},
                {"name": "b", "resources": {"limits": {"cpu": "250m", "memory": "20Mi"}}},
            ],
            "overhead": {"cpu": "100m"},
        }));
        let r = pod_requests(&p);
        // max(apps 500m + sidecar 500m, big-init 3000m, after-side 1000m + 500m) + 100m.
        assert_eq!(r.cpu, 3100);
        // max(40Mi + 10Mi, 1Mi, 1Mi + 10Mi).
        assert_eq!(r.memory, 50 * 1024 * 1024);
    }

    #[test]
    fn cpu_shortage_is_out_of_cpu_with_upstreams_message() {
        let n = node("2", "4Gi", "110");
        let running = pod(json!({"containers": [{"name": "a", "resources": req("500m", "1Mi")}]}));
        let big = pod(json!({"containers": [{"name": "a", "resources": req("2", "1Mi")}]}));
        let e = admit(&n, [&running], &big).expect_err("must not fit");
        assert_eq!(e.reason, "OutOfcpu");
        assert_eq!(
            e.message,
            "Node didn't have enough resource: cpu, requested: 2000, used: 500, capacity: 2000"
        );
        assert!(admit(&n, [], &big).is_ok());
    }

    #[test]
    fn memory_and_pod_count_shortages() {
        let n = node("8", "1Gi", "2");
        let m = pod(json!({"containers": [{"name": "a", "resources": req("1", "2Gi")}]}));
        let e = admit(&n, [], &m).expect_err("memory");
        assert_eq!(e.reason, "OutOfmemory");
        assert_eq!(
            e.message,
            "Node didn't have enough resource: memory, requested: 2147483648, used: 0, capacity: 1073741824"
        );
        let small = pod(json!({"containers": [{"name": "a"}]}));
        let e = admit(&n, [&small, &small], &small).expect_err("pods");
        assert_eq!(e.reason, "OutOfpods");
        assert_eq!(
            e.message,
            "Node didn't have enough resource: pods, requested: 1, used: 2, capacity: 2"
        );
    }

    #[test]
    fn best_effort_pods_fit_a_full_node() {
        let n = node("1", "1Gi", "110");
        let full = pod(json!({"containers": [{"name": "a", "resources": req("1", "1Gi")}]}));
        let none = pod(json!({"containers": [{"name": "a"}]}));
        assert!(admit(&n, [&full], &none).is_ok());
    }
}
