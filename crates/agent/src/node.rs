//! Node registration, status and the heartbeat Lease in `kube-node-lease`.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::cri::{Cri, api};
use crate::util;

/// The kubelet version the agent reports (the API it serves is 1.33).
pub const KUBELET_VERSION: &str = "v1.33.0-skiff";

/// How often the Lease is renewed (DESIGN.md §11).
pub const LEASE_INTERVAL: Duration = Duration::from_secs(10);
/// How long a Lease stays valid without renewal (the node grace period).
pub const LEASE_DURATION_SECONDS: i32 = 40;
/// The longest the node status goes unwritten even when nothing changed.
pub const STATUS_INTERVAL: Duration = Duration::from_secs(60);

/// Errors of talking to the API server about the Node.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("node {name}: {source}")]
    Api { name: String, source: kube::Error },
    #[error("building the node object: {0}")]
    Encode(#[from] serde_json::Error),
}

/// What the node reports about itself, gathered from the host and the runtime.
#[derive(Debug, Clone)]
pub struct Facts {
    pub name: String,
    pub ip: IpAddr,
    pub hostname: String,
    pub capacity: Value,
    pub node_info: Value,
    pub images: Value,
}

fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Gather capacity (cpu, memory, ephemeral-storage of `data_dir`, pods 110) and nodeInfo.
pub async fn facts(name: &str, ip: IpAddr, data_dir: &Path, cri: &Cri) -> Facts {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mem_kib = read_trim("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| {
            v.split_whitespace()
                .next()
                .and_then(|n| n.parse::<u64>().ok())
        })
        .unwrap_or(0);
    let storage = rustix::fs::statvfs(data_dir)
        .map(|s| s.f_blocks * s.f_frsize)
        .unwrap_or(0);
    let capacity = json!({
        "cpu": cpus.to_string(),
        "memory": format!("{mem_kib}Ki"),
        "ephemeral-storage": format!("{}Ki", storage / 1024),
        "pods": "110",
    });
    let uname = rustix::system::uname();
    let os_image = read_trim("/etc/os-release")
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_else(|| "Linux".into());
    let machine_id = read_trim("/etc/machine-id");
    let boot_id = read_trim("/proc/sys/kernel/random/boot_id");
    let system_uuid = match read_trim("/sys/class/dmi/id/product_uuid") {
        s if s.is_empty() => machine_id.clone(),
        s => s,
    };
    let runtime = cri
        .version()
        .await
        .unwrap_or_else(|_| "containerd://unknown".into());
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let node_info = json!({
        "machineID": machine_id,
        "systemUUID": system_uuid,
        "bootID": boot_id,
        "kernelVersion": uname.release().to_string_lossy(),
        "osImage": os_image,
        "containerRuntimeVersion": runtime,
        "kubeletVersion": KUBELET_VERSION,
        "kubeProxyVersion": KUBELET_VERSION,
        "operatingSystem": "linux",
        "architecture": arch,
    });
    let hostname = uname.nodename().to_string_lossy().into_owned();
    Facts {
        name: name.to_string(),
        ip,
        hostname,
        capacity,
        node_info,
        images: images(cri).await,
    }
}

/// The node's images, as `status.images` lists them.
async fn images(cri: &Cri) -> Value {
    let list = cri
        .img
        .clone()
        .list_images(api::ListImagesRequest { filter: None })
        .await
        .map(|r| r.into_inner().images)
        .unwrap_or_default();
    Value::Array(
        list.into_iter()
            .map(|i| {
                let mut names = i.repo_digests.clone();
                names.extend(i.repo_tags.iter().cloned());
                json!({"names": names, "sizeBytes": i.size})
            })
            .collect(),
    )
}

fn conditions(now: &str, since: &str) -> Value {
    let c = |t: &str, status: &str, reason: &str, message: &str| {
        json!({"type": t, "status": status, "reason": reason, "message": message,
               "lastHeartbeatTime": now, "lastTransitionTime": since})
    };
    json!([
        c(
            "MemoryPressure",
            "False",
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available"
        ),
        c(
            "DiskPressure",
            "False",
            "KubeletHasNoDiskPressure",
            "kubelet has no disk pressure"
        ),
        c(
            "PIDPressure",
            "False",
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available"
        ),
        c(
            "Ready",
            "True",
            "KubeletReady",
            "kubelet is posting ready status"
        ),
    ])
}

fn status(f: &Facts, now: &str, since: &str) -> Value {
    json!({
        "capacity": f.capacity,
        "allocatable": f.capacity,
        "conditions": conditions(now, since),
        "addresses": [
            {"type": "InternalIP", "address": f.ip.to_string()},
            {"type": "Hostname", "address": f.hostname},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        "nodeInfo": f.node_info,
        "images": f.images,
    })
}

/// Create the Node (or take over an existing one) and write its status. Returns the Node.
pub async fn register(nodes: &Api<Node>, f: &Facts, pod_cidr: Option<&str>) -> Result<Node, Error> {
    let api_err = |source| Error::Api {
        name: f.name.clone(),
        source,
    };
    let now = util::now_time();
    let body = json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": f.name,
            "labels": {
                "kubernetes.io/hostname": f.name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": f.node_info["architecture"],
                "beta.kubernetes.io/os": "linux",
                "beta.kubernetes.io/arch": f.node_info["architecture"],
            },
        },
        "spec": match pod_cidr {
            Some(c) => json!({"podCIDR": c, "podCIDRs": [c]}),
            None => json!({}),
        },
    });
    let node: Node = serde_json::from_value(body)?;
    match nodes.create(&PostParams::default(), &node).await {
        Ok(_) => tracing::info!(node = %f.name, "node registered"),
        Err(kube::Error::Api(e)) if e.code == 409 => {
            tracing::info!(node = %f.name, "node exists; taking it over");
        }
        Err(e) => return Err(api_err(e)),
    }
    let patch = json!({"status": status(f, &now, &now)});
    nodes
        .patch_status(&f.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(api_err)
}

/// Renew the Lease every 10 s and rewrite the node status every minute, until `shutdown`.
pub async fn heartbeat(
    client: kube::Client,
    facts: Facts,
    node_uid: String,
    cri: Cri,
    shutdown: CancellationToken,
) {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let nodes: Api<Node> = Api::all(client);
    let since = util::now_time();
    let mut last_status = tokio::time::Instant::now();
    let mut facts = facts;
    loop {
        if let Err(e) = renew(&leases, &facts.name, &node_uid).await {
            tracing::warn!(error = %e, "lease renewal failed");
        }
        if last_status.elapsed() >= STATUS_INTERVAL {
            facts.images = images(&cri).await;
            let patch = json!({"status": status(&facts, &util::now_time(), &since)});
            match nodes
                .patch_status(&facts.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => last_status = tokio::time::Instant::now(),
                Err(e) => tracing::warn!(error = %e, "node status update failed"),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(LEASE_INTERVAL) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

async fn renew(leases: &Api<Lease>, name: &str, node_uid: &str) -> Result<(), kube::Error> {
    let spec = json!({
        "holderIdentity": name,
        "leaseDurationSeconds": LEASE_DURATION_SECONDS,
        "renewTime": util::now_micro(),
    });
    let patch = json!({"spec": spec});
    match leases
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => {
            let lease: Lease = serde_json::from_value(json!({
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {
                    "name": name,
                    "namespace": "kube-node-lease",
                    "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": name, "uid": node_uid}],
                },
                "spec": spec,
            }))
            .map_err(kube::Error::SerdeError)?;
            leases
                .create(&PostParams::default(), &lease)
                .await
                .map(|_| ())
        }
        Err(e) => Err(e),
    }
}
