//! The kubelet's side of CSI: the plugin watcher (drivers register through sockets in
//! `<data-dir>/agent/plugins_registry/` speaking the kubelet plugin registration API), the
//! node's CSINode object and `csi.volume.kubernetes.io/nodeid` annotation, NodeStage and
//! NodePublish of a pod's CSI volumes before its containers start (NodeUnpublish/NodeUnstage
//! at teardown), and the node half of the built-in driver `local.csi.skiff.dev`, which
//! registers through the same path as any other driver.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, PersistentVolume};
use k8s_openapi::api::storage::v1::{CSINode, CSINodeDriver, CSINodeSpec, VolumeNodeResources};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde::{Deserialize, Serialize};
use skiff_csi::v1 as csi;
use skiff_csi::{CsiClient, LOCAL_DRIVER, LocalDriver, registration};
use tokio_util::sync::CancellationToken;

/// The directory, under the agent's dir, plugins put their registration sockets in.
pub const REGISTRY_DIR: &str = "plugins_registry";
/// The node annotation mapping driver names to the driver's id of this node.
pub const NODE_ID_ANNOTATION: &str = "csi.volume.kubernetes.io/nodeid";
/// The pod volume plugin directory of CSI volumes, as the kubelet's.
pub const CSI_PLUGIN_DIR: &str = "kubernetes.io~csi";

/// How often the registration directory is scanned (upstream watches it with inotify).
const SCAN_INTERVAL: Duration = Duration::from_secs(1);
/// How often the built-in driver's directories are checked against the PVs.
const GC_INTERVAL: Duration = Duration::from_secs(10);
/// How long a CSI call may take before the mount is retried on a later sync.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// How long teardown waits for a driver that has not (re)registered yet.
const UNPUBLISH_WAIT: Duration = Duration::from_secs(5);

/// A registered driver.
struct Plugin {
    endpoint: PathBuf,
    client: CsiClient,
    /// The driver advertises STAGE_UNSTAGE_VOLUME.
    stage: bool,
}

#[derive(Default)]
struct Registered {
    plugins: HashMap<String, Arc<Plugin>>,
    /// This agent's node half of the built-in driver, for the reclaim bookkeeping.
    local: Option<LocalDriver>,
}

/// Registered drivers per agent, keyed by the agent's pods dir (the handle the volume code
/// has), so several agents in one process (tests) keep apart.
static REGISTRY: LazyLock<Mutex<HashMap<PathBuf, Registered>>> = LazyLock::new(Default::default);

fn registry() -> std::sync::MutexGuard<'static, HashMap<PathBuf, Registered>> {
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

fn plugin(pods_dir: &Path, driver: &str) -> Option<Arc<Plugin>> {
    registry()
        .get(pods_dir)
        .and_then(|r| r.plugins.get(driver).cloned())
}

/// What the agent keeps next to a published CSI volume (upstream's `vol_data.json`), so
/// teardown can unpublish it without the API.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct VolData {
    driver_name: String,
    volume_handle: String,
    spec_vol_id: String,
    #[serde(default)]
    staging_path: String,
}

/// `<agent>/plugins/kubernetes.io/csi/<driver>/<sha256(handle)>/globalmount`, as the kubelet.
fn staging_path(pods_dir: &Path, driver: &str, handle: &str) -> PathBuf {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(handle.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    agent_dir(pods_dir)
        .join("plugins/kubernetes.io/csi")
        .join(driver)
        .join(hex)
        .join("globalmount")
}

fn agent_dir(pods_dir: &Path) -> PathBuf {
    pods_dir
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| pods_dir.to_path_buf())
}

/// Why a CSI volume could not be mounted: the stage (upstream's MountDevice) or publish
/// (SetUp) step.
#[derive(Debug)]
pub enum MountError {
    MountDevice(String),
    SetUp(String),
}

fn access_mode(modes: &[String]) -> csi::volume_capability::access_mode::Mode {
    use csi::volume_capability::access_mode::Mode;
    // The kubelet's mapping of the PV's first access mode.
    match modes.first().map(String::as_str) {
        Some("ReadOnlyMany") => Mode::MultiNodeReaderOnly,
        Some("ReadWriteMany") => Mode::MultiNodeMultiWriter,
        Some("ReadWriteOncePod") => Mode::SingleNodeSingleWriter,
        _ => Mode::SingleNodeWriter,
    }
}

fn rpc_error(s: &tonic::Status) -> String {
    format!("rpc error: code = {:?} desc = {}", s.code(), s.message())
}

async fn timed<T>(
    f: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, String> {
    match tokio::time::timeout(CALL_TIMEOUT, f).await {
        Ok(Ok(r)) => Ok(r.into_inner()),
        Ok(Err(s)) => Err(rpc_error(&s)),
        Err(_) => Err("rpc error: code = DeadlineExceeded desc = context deadline exceeded".into()),
    }
}

/// Stage (when the driver asks for it) and publish the CSI volume `pv` for pod `uid` under
/// `<pods_dir>/<uid>/volumes/kubernetes.io~csi/<pv>/mount`; the path to hand the runtime.
/// Idempotent: a volume already published (its `vol_data.json` written) is returned as is.
pub async fn publish(
    pods_dir: &Path,
    uid: &str,
    pv: &PersistentVolume,
    read_only: bool,
) -> Result<PathBuf, MountError> {
    let pv_name = pv.metadata.name.clone().unwrap_or_default();
    let spec = pv.spec.clone().unwrap_or_default();
    let Some(source) = spec.csi else {
        return Err(MountError::SetUp("not a CSI volume".into()));
    };
    let dir = crate::volumes::pod_dir(pods_dir, uid)
        .join("volumes")
        .join(CSI_PLUGIN_DIR)
        .join(&pv_name);
    let target = dir.join("mount");
    let data_file = dir.join("vol_data.json");
    if data_file.exists() {
        return Ok(target);
    }
    let Some(p) = plugin(pods_dir, &source.driver) else {
        return Err(MountError::SetUp(format!(
            "kubernetes.io/csi: mounter.SetUpAt failed to get CSI client: driver name {} not found in the list of registered CSI drivers",
            source.driver
        )));
    };
    let capability = csi::VolumeCapability {
        access_mode: Some(csi::volume_capability::AccessMode {
            mode: access_mode(spec.access_modes.as_deref().unwrap_or_default()) as i32,
        }),
        access_type: Some(csi::volume_capability::AccessType::Mount(
            csi::volume_capability::MountVolume {
                fs_type: source.fs_type.clone().unwrap_or_default(),
                mount_flags: spec.mount_options.clone().unwrap_or_default(),
                volume_mount_group: String::new(),
            },
        )),
    };
    let context: HashMap<String, String> = source
        .volume_attributes
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let mut staging = String::new();
    if p.stage {
        let path = staging_path(pods_dir, &source.driver, &source.volume_handle);
        std::fs::create_dir_all(&path).map_err(|e| {
            MountError::MountDevice(format!(
                "kubernetes.io/csi: creating {}: {e}",
                path.display()
            ))
        })?;
        staging = path.display().to_string();
        let mut node = p.client.node.clone();
        timed(node.node_stage_volume(csi::NodeStageVolumeRequest {
            volume_id: source.volume_handle.clone(),
            publish_context: HashMap::new(),
            staging_target_path: staging.clone(),
            volume_capability: Some(capability.clone()),
            secrets: HashMap::new(),
            volume_context: context.clone(),
        }))
        .await
        .map_err(MountError::MountDevice)?;
    }
    std::fs::create_dir_all(&dir).map_err(|e| {
        MountError::SetUp(format!(
            "kubernetes.io/csi: creating {}: {e}",
            dir.display()
        ))
    })?;
    let mut node = p.client.node.clone();
    timed(node.node_publish_volume(csi::NodePublishVolumeRequest {
        volume_id: source.volume_handle.clone(),
        publish_context: HashMap::new(),
        staging_target_path: staging.clone(),
        target_path: target.display().to_string(),
        volume_capability: Some(capability),
        readonly: read_only || source.read_only == Some(true),
        secrets: HashMap::new(),
        volume_context: context,
    }))
    .await
    .map_err(MountError::SetUp)?;
    let data = VolData {
        driver_name: source.driver.clone(),
        volume_handle: source.volume_handle.clone(),
        spec_vol_id: pv_name.clone(),
        staging_path: staging,
    };
    let body = serde_json::to_vec(&data).unwrap_or_default();
    std::fs::write(&data_file, body).map_err(|e| {
        MountError::SetUp(format!(
            "kubernetes.io/csi: writing {}: {e}",
            data_file.display()
        ))
    })?;
    if source.driver == LOCAL_DRIVER
        && let Some(policy) = spec.persistent_volume_reclaim_policy.as_deref()
        && let Some(local) = registry().get(pods_dir).and_then(|r| r.local.clone())
        && let Err(e) = local.set_reclaim(&source.volume_handle, policy)
    {
        tracing::warn!(volume = %pv_name, error = %e, "recording the reclaim policy");
    }
    tracing::info!(volume = %pv_name, driver = %source.driver, pod_uid = %uid, target = %target.display(), "CSI volume published");
    Ok(target)
}

fn vol_data_files(pods_dir: &Path, uid: &str) -> Vec<(PathBuf, VolData)> {
    let dir = crate::volumes::pod_dir(pods_dir, uid)
        .join("volumes")
        .join(CSI_PLUGIN_DIR);
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| {
            let f = e.path().join("vol_data.json");
            let data = serde_json::from_slice(&std::fs::read(&f).ok()?).ok()?;
            Some((e.path(), data))
        })
        .collect()
}

/// How many pods of this agent have driver `driver`'s volume `handle` published.
fn users(pods_dir: &Path, driver: &str, handle: &str) -> usize {
    let Ok(rd) = std::fs::read_dir(pods_dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| {
            let uid = e.file_name().to_string_lossy().into_owned();
            vol_data_files(pods_dir, &uid)
                .iter()
                .filter(|(_, d)| d.driver_name == driver && d.volume_handle == handle)
                .count()
        })
        .sum()
}

async fn wait_for_plugin(pods_dir: &Path, driver: &str) -> Option<Arc<Plugin>> {
    let deadline = tokio::time::Instant::now() + UNPUBLISH_WAIT;
    loop {
        if let Some(p) = plugin(pods_dir, driver) {
            return Some(p);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// NodeUnpublish every CSI volume of pod `uid`, and NodeUnstage those no other pod of this
/// node still uses. Failures are logged; what stays mounted is unmounted by the volume
/// cleanup after this (and the pod directory kept if that fails too).
pub async fn unpublish_pod(pods_dir: &Path, uid: &str) {
    for (dir, data) in vol_data_files(pods_dir, uid) {
        let Some(p) = wait_for_plugin(pods_dir, &data.driver_name).await else {
            tracing::warn!(
                volume = %data.spec_vol_id,
                driver = %data.driver_name,
                "UnmountVolume.TearDown failed: driver not registered; unmounting directly"
            );
            continue;
        };
        let target = dir.join("mount");
        let mut node = p.client.node.clone();
        if let Err(e) = timed(node.node_unpublish_volume(csi::NodeUnpublishVolumeRequest {
            volume_id: data.volume_handle.clone(),
            target_path: target.display().to_string(),
        }))
        .await
        {
            tracing::warn!(volume = %data.spec_vol_id, error = %e, "UnmountVolume.TearDown failed");
            continue;
        }
        let _ = std::fs::remove_file(dir.join("vol_data.json"));
        let _ = std::fs::remove_dir(&dir);
        tracing::info!(volume = %data.spec_vol_id, pod_uid = %uid, "CSI volume unpublished");
        if p.stage
            && !data.staging_path.is_empty()
            && users(pods_dir, &data.driver_name, &data.volume_handle) == 0
        {
            let mut node = p.client.node.clone();
            match timed(node.node_unstage_volume(csi::NodeUnstageVolumeRequest {
                volume_id: data.volume_handle.clone(),
                staging_target_path: data.staging_path.clone(),
            }))
            .await
            {
                Ok(_) => {
                    // globalmount and its per-volume parent.
                    let staging = PathBuf::from(&data.staging_path);
                    let _ = std::fs::remove_dir(&staging);
                    if let Some(parent) = staging.parent() {
                        let _ = std::fs::remove_dir(parent);
                    }
                }
                Err(e) => {
                    tracing::warn!(volume = %data.spec_vol_id, error = %e, "UnmountDevice failed")
                }
            }
        }
    }
}

/// The plugin watcher, CSINode publisher and the built-in driver's node half, until
/// `shutdown`. `agent_dir` is `<data-dir>/agent`.
pub async fn run(
    client: kube::Client,
    node_name: String,
    agent_dir: PathBuf,
    shutdown: CancellationToken,
) {
    let pods_dir = agent_dir.join("pods");
    let registry_dir = agent_dir.join(REGISTRY_DIR);
    if let Err(e) = std::fs::create_dir_all(&registry_dir) {
        tracing::error!(dir = %registry_dir.display(), error = %e, "CSI plugin registry not started");
        return;
    }
    registry().entry(pods_dir.clone()).or_default();
    let local = start_local(&agent_dir, &node_name, &shutdown);
    if let Some(l) = &local
        && let Some(r) = registry().get_mut(&pods_dir)
    {
        r.local = Some(l.clone());
    }
    let watcher = Watcher {
        client: client.clone(),
        node_name,
        pods_dir: pods_dir.clone(),
        known: HashMap::new(),
        failures: HashMap::new(),
    };
    let gc = local
        .map(|driver| tokio::spawn(gc_loop(client, driver, pods_dir.clone(), shutdown.clone())));
    watcher.run(&registry_dir, &shutdown).await;
    if let Some(gc) = gc {
        let _ = gc.await;
    }
    registry().remove(&pods_dir);
}

/// Serve the built-in driver's node plugin and its registration socket, as a node DaemonSet
/// with node-driver-registrar would.
fn start_local(
    agent_dir: &Path,
    node_name: &str,
    shutdown: &CancellationToken,
) -> Option<LocalDriver> {
    let root = agent_dir.join("csi").join("local");
    let total = std::fs::create_dir_all(&root)
        .and_then(|()| rustix::fs::statvfs(&root).map_err(std::io::Error::from))
        .map(|fs| i64::try_from(fs.f_blocks.saturating_mul(fs.f_frsize)).unwrap_or(i64::MAX));
    let driver = match total.and_then(|t| LocalDriver::node(&root, node_name, t)) {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(dir = %root.display(), error = %e, "built-in CSI node plugin not started");
            return None;
        }
    };
    let endpoint = agent_dir
        .join("plugins")
        .join(LOCAL_DRIVER)
        .join("csi.sock");
    let reg_socket = agent_dir
        .join(REGISTRY_DIR)
        .join(format!("{LOCAL_DRIVER}-reg.sock"));
    let d = driver.clone();
    let (ep, sd) = (endpoint.clone(), shutdown.clone());
    tokio::spawn(async move {
        if let Err(e) = skiff_csi::serve_node(&ep, d, sd).await {
            tracing::error!(error = %e, "built-in CSI node plugin stopped");
        }
    });
    let registrar = registration::Registrar {
        name: LOCAL_DRIVER.to_string(),
        endpoint,
    };
    let sd = shutdown.clone();
    tokio::spawn(async move {
        if let Err(e) = registration::serve(&reg_socket, registrar, sd).await {
            tracing::error!(error = %e, "built-in CSI registration socket stopped");
        }
    });
    Some(driver)
}

struct Watcher {
    client: kube::Client,
    node_name: String,
    pods_dir: PathBuf,
    /// Registration socket → driver name.
    known: HashMap<PathBuf, String>,
    /// Registration socket → the last error, so a broken plugin is logged once per change.
    failures: HashMap<PathBuf, String>,
}

fn is_socket(p: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_socket())
}

impl Watcher {
    async fn run(mut self, dir: &Path, shutdown: &CancellationToken) {
        let mut tick = tokio::time::interval(SCAN_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let mut sockets: Vec<PathBuf> = std::fs::read_dir(dir)
                .map(|rd| {
                    rd.flatten()
                        .map(|e| e.path())
                        .filter(|p| is_socket(p))
                        .collect()
                })
                .unwrap_or_default();
            sockets.sort();
            let gone: Vec<PathBuf> = self
                .known
                .keys()
                .filter(|k| !sockets.contains(k))
                .cloned()
                .collect();
            for socket in gone {
                if let Some(name) = self.known.remove(&socket) {
                    self.deregister(&name).await;
                }
            }
            self.failures.retain(|k, _| sockets.contains(k));
            for socket in sockets {
                if self.known.contains_key(&socket) {
                    continue;
                }
                match self.register(&socket).await {
                    Ok(name) => {
                        self.failures.remove(&socket);
                        self.known.insert(socket, name);
                    }
                    Err(e) => {
                        if self.failures.get(&socket) != Some(&e) {
                            tracing::warn!(socket = %socket.display(), error = %e, "plugin registration failed");
                        }
                        // Tell the plugin, as the kubelet does; a dead socket cannot hear it.
                        let _ = tokio::time::timeout(
                            Duration::from_secs(2),
                            registration::notify(&socket, false, &e),
                        )
                        .await;
                        self.failures.insert(socket, e);
                    }
                }
            }
        }
    }

    async fn register(&self, socket: &Path) -> Result<String, String> {
        let info = tokio::time::timeout(Duration::from_secs(5), registration::get_info(socket))
            .await
            .map_err(|_| "GetInfo timed out".to_string())?
            .map_err(|e| e.to_string())?;
        if info.r#type != registration::CSI_PLUGIN {
            return Err(format!("plugin type {:?} is not supported", info.r#type));
        }
        if !info
            .supported_versions
            .iter()
            .any(|v| v.trim_start_matches('v').split('.').next() == Some("1"))
        {
            return Err(format!(
                "none of the versions specified {:?} are supported",
                info.supported_versions
            ));
        }
        let endpoint = PathBuf::from(&info.endpoint);
        let client = tokio::time::timeout(Duration::from_secs(5), CsiClient::connect(&endpoint))
            .await
            .map_err(|_| format!("connecting to {} timed out", endpoint.display()))?
            .map_err(|e| e.to_string())?;
        let mut node = client.node.clone();
        let ni = timed(node.node_get_info(csi::NodeGetInfoRequest {})).await?;
        if ni.node_id.is_empty() {
            return Err("NodeGetInfo returned an empty node id".into());
        }
        let caps = timed(node.node_get_capabilities(csi::NodeGetCapabilitiesRequest {})).await?;
        let stage = caps.capabilities.iter().any(|c| {
            matches!(
                &c.r#type,
                Some(csi::node_service_capability::Type::Rpc(r))
                    if r.r#type == csi::node_service_capability::rpc::Type::StageUnstageVolume as i32
            )
        });
        let topology: BTreeMap<String, String> = ni
            .accessible_topology
            .map(|t| t.segments.into_iter().collect())
            .unwrap_or_default();
        self.update_node(&info.name, Some(&ni.node_id), &topology)
            .await
            .map_err(|e| format!("updating node {}: {e}", self.node_name))?;
        let driver = CSINodeDriver {
            name: info.name.clone(),
            node_id: ni.node_id.clone(),
            topology_keys: (!topology.is_empty()).then(|| topology.keys().cloned().collect()),
            allocatable: (ni.max_volumes_per_node > 0).then(|| VolumeNodeResources {
                count: i32::try_from(ni.max_volumes_per_node).ok(),
            }),
        };
        self.update_csinode(&info.name, Some(driver))
            .await
            .map_err(|e| format!("updating CSINode {}: {e}", self.node_name))?;
        if let Some(r) = registry().get_mut(&self.pods_dir) {
            r.plugins.insert(
                info.name.clone(),
                Arc::new(Plugin {
                    endpoint: endpoint.clone(),
                    client,
                    stage,
                }),
            );
        }
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            registration::notify(socket, true, ""),
        )
        .await;
        tracing::info!(driver = %info.name, endpoint = %endpoint.display(), node_id = %ni.node_id, stage, "CSI driver registered");
        Ok(info.name)
    }

    async fn deregister(&self, name: &str) {
        let endpoint = registry()
            .get_mut(&self.pods_dir)
            .and_then(|r| r.plugins.remove(name))
            .map(|p| p.endpoint.clone());
        if let Err(e) = self.update_csinode(name, None).await {
            tracing::warn!(driver = %name, error = %e, "removing the driver from CSINode");
        }
        if let Err(e) = self.update_node(name, None, &BTreeMap::new()).await {
            tracing::warn!(driver = %name, error = %e, "removing the driver's node id annotation");
        }
        tracing::info!(driver = %name, endpoint = ?endpoint, "CSI driver deregistered");
    }

    /// Set (or, with no id, remove) the driver's entry of the node id annotation, and the
    /// driver's topology segments as node labels (the scheduler matches PV node affinity
    /// against them).
    async fn update_node(
        &self,
        driver: &str,
        node_id: Option<&str>,
        topology: &BTreeMap<String, String>,
    ) -> Result<(), kube::Error> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let node = nodes.get(&self.node_name).await?;
        let meta = &node.metadata;
        let mut ids: BTreeMap<String, String> = meta
            .annotations
            .as_ref()
            .and_then(|a| a.get(NODE_ID_ANNOTATION))
            .and_then(|v| serde_json::from_str(v).ok())
            .unwrap_or_default();
        match node_id {
            Some(id) => {
                ids.insert(driver.to_string(), id.to_string());
            }
            None => {
                ids.remove(driver);
            }
        }
        let labels = meta.labels.clone().unwrap_or_default();
        let missing_labels: BTreeMap<&String, &String> = topology
            .iter()
            .filter(|(k, v)| labels.get(*k) != Some(*v))
            .collect();
        let current = meta
            .annotations
            .as_ref()
            .and_then(|a| a.get(NODE_ID_ANNOTATION))
            .cloned();
        let wanted = (!ids.is_empty()).then(|| serde_json::to_string(&ids).unwrap_or_default());
        if current == wanted && missing_labels.is_empty() {
            return Ok(());
        }
        let patch = serde_json::json!({"metadata": {
            "annotations": {NODE_ID_ANNOTATION: wanted},
            "labels": missing_labels,
        }});
        nodes
            .patch(
                &self.node_name,
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
        Ok(())
    }

    /// Put `driver` in (or, with None, take `name` out of) this node's CSINode, creating the
    /// object (owned by the Node, as the kubelet does) when missing.
    async fn update_csinode(
        &self,
        name: &str,
        driver: Option<CSINodeDriver>,
    ) -> Result<(), kube::Error> {
        let api: Api<CSINode> = Api::all(self.client.clone());
        for _ in 0..5 {
            let existing = api.get_opt(&self.node_name).await?;
            let Some(mut obj) = existing else {
                let Some(d) = driver.clone() else {
                    return Ok(());
                };
                let nodes: Api<Node> = Api::all(self.client.clone());
                let node = nodes.get(&self.node_name).await?;
                let obj = CSINode {
                    metadata: ObjectMeta {
                        name: Some(self.node_name.clone()),
                        owner_references: Some(vec![OwnerReference {
                            api_version: "v1".into(),
                            kind: "Node".into(),
                            name: self.node_name.clone(),
                            uid: node.metadata.uid.unwrap_or_default(),
                            ..Default::default()
                        }]),
                        ..Default::default()
                    },
                    spec: CSINodeSpec { drivers: vec![d] },
                };
                match api.create(&PostParams::default(), &obj).await {
                    Ok(_) => return Ok(()),
                    Err(kube::Error::Api(e)) if e.code == 409 => continue,
                    Err(e) => return Err(e),
                }
            };
            let before = obj.spec.drivers.clone();
            obj.spec.drivers.retain(|d| d.name != name);
            if let Some(d) = driver.clone() {
                obj.spec.drivers.push(d);
                obj.spec.drivers.sort_by(|a, b| a.name.cmp(&b.name));
            }
            if obj.spec.drivers == before {
                return Ok(());
            }
            match api
                .replace(&self.node_name, &PostParams::default(), &obj)
                .await
            {
                Ok(_) => return Ok(()),
                Err(kube::Error::Api(e)) if e.code == 409 => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Remove the built-in driver's directories whose PV is gone: the controller's DeleteVolume
/// runs in the server and cannot reach this node's disk, so the node does it, for volumes
/// whose PV was last seen with reclaim policy Delete and no pod here uses. Retain keeps them.
async fn gc_loop(
    client: kube::Client,
    driver: LocalDriver,
    pods_dir: PathBuf,
    shutdown: CancellationToken,
) {
    let pvs: Api<PersistentVolume> = Api::all(client);
    let mut tick = tokio::time::interval(GC_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut kept: std::collections::HashSet<String> = Default::default();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let volumes = driver.volumes();
        if volumes.is_empty() {
            continue;
        }
        let list = match pvs.list(&ListParams::default()).await {
            Ok(l) => l,
            Err(e) => {
                tracing::debug!(error = %e, "listing PVs for the local volume check");
                continue;
            }
        };
        let live: HashMap<String, String> = list
            .items
            .iter()
            .filter_map(|pv| {
                let spec = pv.spec.as_ref()?;
                let csi = spec.csi.as_ref().filter(|c| c.driver == LOCAL_DRIVER)?;
                Some((
                    csi.volume_handle.clone(),
                    spec.persistent_volume_reclaim_policy
                        .clone()
                        .unwrap_or_else(|| "Retain".into()),
                ))
            })
            .collect();
        for (id, rec) in volumes {
            if let Some(policy) = live.get(&id) {
                if let Err(e) = driver.set_reclaim(&id, policy) {
                    tracing::warn!(volume = %id, error = %e, "recording the reclaim policy");
                }
                continue;
            }
            if users(&pods_dir, LOCAL_DRIVER, &id) > 0 {
                continue;
            }
            if rec.reclaim.as_deref() == Some("Delete") {
                if let Err(e) = driver.remove(&id) {
                    tracing::warn!(volume = %id, error = %e, "removing a deleted volume's directory");
                }
            } else if kept.insert(id.clone()) {
                tracing::info!(volume = %id, "PV gone; directory kept (reclaim policy Retain)");
            }
        }
    }
}
