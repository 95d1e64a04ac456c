//! Hollow nodes: simulated nodes that register themselves, keep their Leases fresh, and move the
//! pods bound to them to Running and Ready (and finish their deletion), as kubemark and kwok do.
//! Thousands fit in one process: a node is a name and an index; one pod watch serves them all.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{Namespace, Node, NodeSpec, Pod, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher;
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// The namespace of node heartbeat Leases.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";
/// How often Leases are renewed (the kubelet's default `nodeLeaseDurationSeconds` is 40).
pub const LEASE_RENEW: Duration = Duration::from_secs(10);
/// How often the Ready condition's heartbeat is refreshed (the kubelet's status report period).
pub const STATUS_REPORT: Duration = Duration::from_secs(300);
/// Concurrent API calls while registering nodes or renewing Leases.
const CONCURRENCY: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum HollowError {
    #[error("bad --labels entry {0:?} (want key=value)")]
    Label(String),
    #[error("bad --taints entry {0:?} (want key[=value]:NoSchedule|PreferNoSchedule|NoExecute)")]
    Taint(String),
    #[error("API call failed: {0}")]
    Api(#[from] kube::Error),
}

/// What to simulate.
#[derive(Debug, Clone)]
pub struct HollowConfig {
    pub nodes: usize,
    pub name_prefix: String,
    pub cpu: String,
    pub memory: String,
    pub pods: u32,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    /// Delay before a bound pod is reported Running.
    pub start_delay: Duration,
}

impl Default for HollowConfig {
    fn default() -> Self {
        HollowConfig {
            nodes: 1,
            name_prefix: "hollow-node-".into(),
            cpu: "4".into(),
            memory: "16Gi".into(),
            pods: 110,
            labels: BTreeMap::new(),
            taints: Vec::new(),
            start_delay: Duration::ZERO,
        }
    }
}

/// Parses `k=v,k2=v2`.
pub fn parse_labels(s: &str) -> Result<BTreeMap<String, String>, HollowError> {
    let mut out = BTreeMap::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| HollowError::Label(part.into()))?;
        if k.is_empty() {
            return Err(HollowError::Label(part.into()));
        }
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

/// Parses `k=v:Effect,k:Effect`.
pub fn parse_taints(s: &str) -> Result<Vec<Taint>, HollowError> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (kv, effect) = part
            .rsplit_once(':')
            .ok_or_else(|| HollowError::Taint(part.into()))?;
        if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
            return Err(HollowError::Taint(part.into()));
        }
        let (k, v) = match kv.split_once('=') {
            Some((k, v)) => (k, Some(v.to_string())),
            None => (kv, None),
        };
        if k.is_empty() {
            return Err(HollowError::Taint(part.into()));
        }
        out.push(Taint {
            key: k.into(),
            value: v,
            effect: effect.into(),
            time_added: None,
        });
    }
    Ok(out)
}

/// The simulated node's addresses: node i is 10.64.x.y, its pods live in 10.128+x.y.0/24.
fn node_ip(i: usize) -> String {
    format!(
        "10.{}.{}.{}",
        64 + (i / 65536) % 64,
        (i / 256) % 256,
        i % 256
    )
}

/// The /24 of node i's pods: 10.x.y.0/24 (unique for 32,768 nodes).
fn pod_cidr_base(i: usize) -> (usize, usize) {
    (128 + (i / 256) % 128, i % 256)
}

fn node_name(cfg: &HollowConfig, i: usize) -> String {
    format!("{}{}", cfg.name_prefix, i)
}

pub fn node_object(cfg: &HollowConfig, i: usize) -> Node {
    let name = node_name(cfg, i);
    let mut labels = BTreeMap::from([
        ("kubernetes.io/hostname".to_string(), name.clone()),
        ("kubernetes.io/os".to_string(), "linux".to_string()),
        ("kubernetes.io/arch".to_string(), "amd64".to_string()),
        ("beta.kubernetes.io/os".to_string(), "linux".to_string()),
        ("beta.kubernetes.io/arch".to_string(), "amd64".to_string()),
        ("node.skiff.dev/hollow".to_string(), "true".to_string()),
        // What a kubelet adds once the built-in CSI driver registers (its NodeGetInfo
        // topology): local-path volumes carry node affinity on this key.
        (
            "topology.local.csi.skiff.dev/node".to_string(),
            name.clone(),
        ),
    ]);
    labels.extend(cfg.labels.clone());
    let (x, y) = pod_cidr_base(i);
    Node {
        metadata: ObjectMeta {
            name: Some(name),
            labels: Some(labels),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            pod_cidr: Some(format!("10.{x}.{y}.0/24")),
            taints: (!cfg.taints.is_empty()).then(|| cfg.taints.clone()),
            ..Default::default()
        }),
        status: None,
    }
}

pub fn node_status_patch(cfg: &HollowConfig, i: usize) -> serde_json::Value {
    let now = jiff::Timestamp::now().to_string();
    let resources = json!({
        "cpu": cfg.cpu,
        "memory": cfg.memory,
        "pods": cfg.pods.to_string(),
        "ephemeral-storage": "100Gi",
    });
    let cond = |t: &str, s: &str, reason: &str, msg: &str| {
        json!({"type": t, "status": s, "reason": reason, "message": msg,
               "lastHeartbeatTime": now, "lastTransitionTime": now})
    };
    json!({"status": {
        "capacity": resources,
        "allocatable": resources,
        "phase": "Running",
        "conditions": [
            cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
            cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            cond("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
        ],
        "addresses": [
            {"type": "InternalIP", "address": node_ip(i)},
            {"type": "Hostname", "address": node_name(cfg, i)},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        "nodeInfo": {
            "machineID": format!("{:032x}", i),
            "systemUUID": format!("{:08x}-0000-0000-0000-{:012x}", i, i),
            "bootID": format!("{:08x}-b007-0000-0000-{:012x}", std::process::id(), i),
            "kernelVersion": "6.1.0-hollow",
            "osImage": "Skiff hollow node",
            "containerRuntimeVersion": "hollow://0.1.0",
            "kubeletVersion": "v1.33.0-skiff",
            "kubeProxyVersion": "v1.33.0-skiff",
            "operatingSystem": "linux",
            "architecture": "amd64",
        },
    }})
}

fn lease_object(name: &str, node_uid: Option<String>) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(LEASE_NAMESPACE.into()),
            owner_references: node_uid.map(|uid| {
                vec![OwnerReference {
                    api_version: "v1".into(),
                    kind: "Node".into(),
                    name: name.into(),
                    uid,
                    ..Default::default()
                }]
            }),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(name.into()),
            lease_duration_seconds: Some(40),
            renew_time: Some(MicroTime(jiff::Timestamp::now())),
            ..Default::default()
        }),
    }
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// Registers (or re-registers) node `i`: the Node, its status, and its Lease.
async fn register(
    client: kube::Client,
    cfg: Arc<HollowConfig>,
    i: usize,
) -> Result<(), HollowError> {
    let nodes: Api<Node> = Api::all(client.clone());
    let name = node_name(&cfg, i);
    let obj = node_object(&cfg, i);
    let created = match nodes.create(&PostParams::default(), &obj).await {
        Ok(n) => n,
        Err(e) if is_conflict(&e) => {
            let patch = json!({"metadata": {"labels": obj.metadata.labels}, "spec": {"taints": obj.spec.as_ref().and_then(|s| s.taints.clone())}});
            nodes
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?
        }
        Err(e) => return Err(e.into()),
    };
    nodes
        .patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(&node_status_patch(&cfg, i)),
        )
        .await?;
    let leases: Api<Lease> = Api::namespaced(client, LEASE_NAMESPACE);
    match leases
        .create(
            &PostParams::default(),
            &lease_object(&name, created.metadata.uid),
        )
        .await
    {
        Ok(_) => {}
        Err(e) if is_conflict(&e) => renew_lease(&leases, &name).await?,
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

async fn renew_lease(leases: &Api<Lease>, name: &str) -> Result<(), HollowError> {
    let patch = json!({"spec": {"holderIdentity": name, "leaseDurationSeconds": 40,
        "renewTime": MicroTime(jiff::Timestamp::now())}});
    match leases
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => {
            leases
                .create(&PostParams::default(), &lease_object(name, None))
                .await?;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// The Running/Ready status of a pod on hollow node `i`.
fn running_status(pod: &Pod, node_index: usize, pod_seq: usize) -> serde_json::Value {
    let now = jiff::Timestamp::now().to_string();
    let (x, y) = pod_cidr_base(node_index);
    let ip = format!("10.{x}.{y}.{}", 2 + pod_seq % 250);
    let host = node_ip(node_index);
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    let cond = |t: &str| json!({"type": t, "status": "True", "lastTransitionTime": now, "lastProbeTime": null});
    let containers: Vec<serde_json::Value> = spec
        .containers
        .iter()
        .map(|c| {
            json!({
                "name": c.name,
                "image": c.image.clone().unwrap_or_default(),
                "imageID": format!("hollow://{}", c.image.clone().unwrap_or_default()),
                "containerID": format!("hollow://{uid}/{}", c.name),
                "ready": true,
                "started": true,
                "restartCount": 0,
                "state": {"running": {"startedAt": now}},
            })
        })
        .collect();
    let inits: Vec<serde_json::Value> = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| {
            let sidecar = c.restart_policy.as_deref() == Some("Always");
            let state = if sidecar {
                json!({"running": {"startedAt": now}})
            } else {
                json!({"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": now, "finishedAt": now,
                    "containerID": format!("hollow://{uid}/{}", c.name)}})
            };
            json!({
                "name": c.name,
                "image": c.image.clone().unwrap_or_default(),
                "imageID": format!("hollow://{}", c.image.clone().unwrap_or_default()),
                "containerID": format!("hollow://{uid}/{}", c.name),
                "ready": true,
                "started": sidecar,
                "restartCount": 0,
                "state": state,
            })
        })
        .collect();
    let mut status = json!({
        "phase": "Running",
        "hostIP": host,
        "hostIPs": [{"ip": host}],
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "startTime": now,
        "conditions": [
            cond("PodReadyToStartContainers"),
            cond("Initialized"),
            cond("Ready"),
            cond("ContainersReady"),
            cond("PodScheduled"),
        ],
        "containerStatuses": containers,
    });
    if !inits.is_empty() {
        status["initContainerStatuses"] = json!(inits);
    }
    json!({ "status": status })
}

/// Runs `cfg.nodes` hollow nodes until `shutdown`. Returns after registering if a call fails.
pub async fn run(
    client: kube::Client,
    cfg: HollowConfig,
    shutdown: CancellationToken,
) -> Result<(), HollowError> {
    let cfg = Arc::new(cfg);
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(LEASE_NAMESPACE.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    match namespaces.create(&PostParams::default(), &ns).await {
        Ok(_) => {}
        Err(e) if is_conflict(&e) => {}
        Err(e) => return Err(e.into()),
    }
    let started = std::time::Instant::now();
    futures::stream::iter(0..cfg.nodes)
        .map(|i| register(client.clone(), cfg.clone(), i))
        .buffer_unordered(CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await?;
    tracing::info!(
        nodes = cfg.nodes,
        millis = started.elapsed().as_millis() as u64,
        "hollow nodes registered"
    );
    println!("skiff hollow ready: {} nodes", cfg.nodes);

    let index: Arc<HashMap<String, usize>> =
        Arc::new((0..cfg.nodes).map(|i| (node_name(&cfg, i), i)).collect());
    let heartbeat = tokio::spawn(heartbeats(client.clone(), cfg.clone(), shutdown.clone()));
    let result = run_pods(client, index, cfg.start_delay, shutdown).await;
    heartbeat.abort();
    result
}

/// Slots per renewal period: node `i` renews in slot `i % SLOTS`, so N nodes write N/SLOTS
/// Leases every `LEASE_RENEW / SLOTS` instead of all N at once every `LEASE_RENEW` (a burst of
/// thousands of writes that stalls the API server, then nothing for seconds).
const SLOTS: usize = 100;

/// Which nodes of `n` renew in `slot`: every SLOTS-th from `slot`.
fn slot_members(n: usize, slot: usize) -> impl Iterator<Item = usize> {
    (slot % SLOTS..n).step_by(SLOTS)
}

/// Renews every Lease once per `LEASE_RENEW` and refreshes node conditions once per
/// `STATUS_REPORT`, each spread evenly over its period.
async fn heartbeats(client: kube::Client, cfg: Arc<HollowConfig>, shutdown: CancellationToken) {
    let leases: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    let nodes: Api<Node> = Api::all(client);
    let slots = u32::try_from(SLOTS).unwrap_or(u32::MAX);
    let mut lease_tick = tokio::time::interval(LEASE_RENEW / slots);
    let mut status_tick = tokio::time::interval(STATUS_REPORT / slots);
    // A slow API server delays renewals; it must not cause a burst of catch-up ticks.
    lease_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    status_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Registration just wrote every Lease and status: start one period later.
    let mut lease_slot = 0usize;
    let mut status_slot = 0usize;
    tokio::select! {
        _ = shutdown.cancelled() => return,
        _ = tokio::time::sleep(LEASE_RENEW / slots) => {}
    }
    lease_tick.reset();
    status_tick.reset();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = lease_tick.tick() => {
                let slot = lease_slot;
                lease_slot = (lease_slot + 1) % SLOTS;
                let n = futures::stream::iter(slot_members(cfg.nodes, slot))
                    .map(|i| {
                        let leases = leases.clone();
                        let name = node_name(&cfg, i);
                        async move { renew_lease(&leases, &name).await }
                    })
                    .buffer_unordered(CONCURRENCY)
                    .filter(|r| futures::future::ready(r.is_err()))
                    .count()
                    .await;
                if n > 0 {
                    tracing::warn!(failed = n, "lease renewals failed");
                }
            }
            _ = status_tick.tick() => {
                let slot = status_slot;
                status_slot = (status_slot + 1) % SLOTS;
                for i in slot_members(cfg.nodes, slot) {
                    let name = node_name(&cfg, i);
                    if let Err(e) = nodes.patch_status(&name, &PatchParams::default(), &Patch::Merge(&node_status_patch(&cfg, i))).await {
                        tracing::warn!(node = %name, error = %e, "node status update failed");
                    }
                }
            }
        }
    }
}

/// One watch over all pods; pods bound to our nodes are started, and deleted once their
/// deletion is requested (the kubelet's final `DELETE` with grace period 0).
async fn run_pods(
    client: kube::Client,
    index: Arc<HashMap<String, usize>>,
    start_delay: Duration,
    shutdown: CancellationToken,
) -> Result<(), HollowError> {
    let all: Api<Pod> = Api::all(client.clone());
    let mut stream = watcher(all, watcher::Config::default())
        .default_backoff()
        .boxed();
    // uids already started / being deleted, so repeated events cost nothing.
    let mut started: HashSet<String> = HashSet::new();
    let mut deleting: HashSet<String> = HashSet::new();
    let mut seq: HashMap<usize, usize> = HashMap::new();
    loop {
        let ev = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            ev = stream.next() => ev,
        };
        let Some(ev) = ev else {
            return Ok(());
        };
        let pod = match ev {
            Ok(watcher::Event::Apply(p)) | Ok(watcher::Event::InitApply(p)) => p,
            Ok(watcher::Event::Delete(p)) => {
                let uid = p.metadata.uid.unwrap_or_default();
                started.remove(&uid);
                deleting.remove(&uid);
                continue;
            }
            Ok(_) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "pod watch failed; retrying");
                continue;
            }
        };
        let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else {
            continue;
        };
        let Some(&i) = index.get(&node) else {
            continue;
        };
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let ns = pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let name = pod.metadata.name.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
        if pod.metadata.deletion_timestamp.is_some() {
            if deleting.insert(uid.clone()) {
                tokio::spawn(async move {
                    let dp = DeleteParams {
                        grace_period_seconds: Some(0),
                        preconditions: Some(Preconditions {
                            uid: Some(uid),
                            resource_version: None,
                        }),
                        ..Default::default()
                    };
                    match api.delete(&name, &dp).await {
                        Ok(_) => tracing::debug!(pod = %name, "hollow pod deleted"),
                        Err(e) if is_not_found(&e) => {}
                        Err(e) => {
                            tracing::warn!(pod = %name, error = %e, "hollow pod delete failed")
                        }
                    }
                });
            }
            continue;
        }
        let running = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .is_some_and(|p| p == "Running" || p == "Succeeded" || p == "Failed");
        if running || !started.insert(uid) {
            continue;
        }
        let s = seq.entry(i).or_insert(0);
        *s += 1;
        let patch = running_status(&pod, i, *s);
        tokio::spawn(async move {
            if !start_delay.is_zero() {
                tokio::time::sleep(start_delay).await;
            }
            if let Err(e) = api
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                tracing::warn!(pod = %name, error = %e, "hollow pod start failed");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_node_has_exactly_one_heartbeat_slot() {
        for n in [0, 1, 99, 100, 101, 2000, 2345] {
            let mut seen = vec![0; n];
            for slot in 0..SLOTS {
                for i in slot_members(n, slot) {
                    seen[i] += 1;
                }
            }
            assert!(seen.iter().all(|c| *c == 1), "n={n}");
            let biggest = (0..SLOTS).map(|s| slot_members(n, s).count()).max();
            assert_eq!(biggest, Some(n.div_ceil(SLOTS)), "n={n}");
        }
    }

    #[test]
    fn labels_and_taints_parse() {
        let l = parse_labels("zone=a, disk=ssd").expect("labels");
        assert_eq!(l.get("zone").map(String::as_str), Some("a"));
        assert_eq!(l.len(), 2);
        assert!(parse_labels("novalue").is_err());
        let t = parse_taints("dedicated=gpu:NoSchedule,spot:PreferNoSchedule").expect("taints");
        assert_eq!(t[0].key, "dedicated");
        assert_eq!(t[0].value.as_deref(), Some("gpu"));
        assert_eq!(t[0].effect, "NoSchedule");
        assert_eq!(t[1].value, None);
        assert!(parse_taints("x=y:Sometimes").is_err());
    }

    #[test]
    fn node_objects_are_distinct() {
        let cfg = HollowConfig::default();
        let a = node_object(&cfg, 0);
        let b = node_object(&cfg, 300);
        assert_ne!(a.metadata.name, b.metadata.name);
        assert_eq!(
            b.spec.and_then(|s| s.pod_cidr).as_deref(),
            Some("10.129.44.0/24")
        );
        assert_eq!(node_ip(300), "10.64.1.44");
    }
}
