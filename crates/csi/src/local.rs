//! The built-in CSI driver `local.csi.skiff.dev`: every volume is a directory `<root>/<id>`
//! on one node, with capacity accounted against a configured total (a ledger in
//! `<root>/volumes.json`), and bind-mounted into pods by NodeStage/NodePublishVolume.
//!
//! Three roles: [`LocalDriver::new`] does everything on one host (CreateVolume makes the
//! directory); [`LocalDriver::controller`] runs in the control plane and only keeps the
//! ledger (volumes are assigned to nodes, each node's total accounted separately);
//! [`LocalDriver::node`] runs in a node agent and makes a volume's directory when it is first
//! staged there, accounted against that node's disk.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tonic::{Request, Response, Status};

use crate::v1::{
    self, controller_server::Controller, identity_server::Identity, node_server::Node,
};
use crate::{LOCAL_DRIVER, TOPOLOGY_NODE_KEY};

/// Capacity given to a volume whose request names none.
const DEFAULT_CAPACITY: i64 = 1 << 30;

/// Capacity of the volume, bytes; put in the volume context by CreateVolume so the node
/// side can account a volume it has never seen.
pub const CONTEXT_CAPACITY: &str = "capacity";

/// One volume of the ledger.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Recorded {
    /// Bytes handed out.
    pub capacity: i64,
    /// The node the volume lives on.
    pub node: String,
    /// Node side: the reclaim policy of the volume's PV when last seen, which decides
    /// whether the directory goes once the PV is gone (Delete) or stays (Retain).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reclaim: Option<String>,
}

/// What a driver instance does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Controller and node on one host: CreateVolume makes the directory.
    Combined,
    /// Control plane: the ledger only; capacity is accounted per node.
    Controller,
    /// Node plugin: directories are made when first staged or published.
    Node,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Ledger {
    volumes: BTreeMap<String, Recorded>,
}

/// The driver: one instance serves Identity, Controller and Node.
#[derive(Clone)]
pub struct LocalDriver {
    root: PathBuf,
    node_id: String,
    total: i64,
    role: Role,
    ledger: Arc<Mutex<Ledger>>,
}

fn io_status(what: &str, e: std::io::Error) -> Status {
    Status::internal(format!("{what}: {e}"))
}

/// Volume ids become directory names: keep them to a safe alphabet.
fn volume_id_for(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

fn valid_id(id: &str) -> Result<(), Status> {
    if id.is_empty() || id.starts_with('.') || id.contains('/') {
        return Err(Status::invalid_argument(format!(
            "invalid volume id {id:?}"
        )));
    }
    Ok(())
}

fn topology(node: &str) -> v1::Topology {
    v1::Topology {
        segments: [(TOPOLOGY_NODE_KEY.to_string(), node.to_string())]
            .into_iter()
            .collect(),
    }
}

/// Undo `/proc/self/mountinfo`'s octal escapes (`\040` for a space).
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && let Ok(digits) = std::str::from_utf8(&b[i + 1..i + 4])
            && let Ok(v) = u8::from_str_radix(digits, 8)
        {
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether `path` is a mount point of this mount namespace.
pub fn is_mount_point(path: &Path) -> bool {
    let Ok(canon) = std::fs::canonicalize(path) else {
        return false;
    };
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|mp| Path::new(&unescape_mountinfo(mp)) == canon)
}

fn run(cmd: &str, args: &[&str]) -> Result<(), Status> {
    let out = std::process::Command::new(cmd)
        .args(args)
        .output()
        .map_err(|e| io_status(&format!("running {cmd}"), e))?;
    if !out.status.success() {
        return Err(Status::internal(format!(
            "{cmd} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

fn dir_usage(path: &Path) -> std::io::Result<(u64, u64)> {
    let (mut bytes, mut inodes) = (0u64, 0u64);
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let meta = entry.metadata()?;
            inodes += 1;
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                bytes += meta.len();
            }
        }
    }
    Ok((bytes, inodes))
}

impl LocalDriver {
    /// A driver keeping volumes under `root` for node `node_id`, with `total_bytes` to hand
    /// out. Reads the ledger a previous run left.
    pub fn new(
        root: impl Into<PathBuf>,
        node_id: &str,
        total_bytes: i64,
    ) -> std::io::Result<LocalDriver> {
        Self::with_role(root.into(), node_id, total_bytes, Role::Combined)
    }

    /// The control-plane half: CreateVolume records a volume for the node its topology
    /// names (`total_bytes` per node) in the ledger under `state_dir` and makes no directory;
    /// DeleteVolume forgets it (the node removes the directory, see `docs/storage.md`).
    pub fn controller(
        state_dir: impl Into<PathBuf>,
        node_id: &str,
        total_bytes: i64,
    ) -> std::io::Result<LocalDriver> {
        Self::with_role(state_dir.into(), node_id, total_bytes, Role::Controller)
    }

    /// The node half for node `node_id`: volumes live in `root` on this node, with
    /// `total_bytes` to hand out; a directory is made when the volume is first staged.
    pub fn node(
        root: impl Into<PathBuf>,
        node_id: &str,
        total_bytes: i64,
    ) -> std::io::Result<LocalDriver> {
        Self::with_role(root.into(), node_id, total_bytes, Role::Node)
    }

    fn with_role(
        root: PathBuf,
        node_id: &str,
        total_bytes: i64,
        role: Role,
    ) -> std::io::Result<LocalDriver> {
        std::fs::create_dir_all(&root)?;
        let ledger = match std::fs::read(root.join("volumes.json")) {
            Ok(b) => serde_json::from_slice(&b).map_err(std::io::Error::other)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ledger::default(),
            Err(e) => return Err(e),
        };
        Ok(LocalDriver {
            root,
            node_id: node_id.to_string(),
            total: total_bytes,
            role,
            ledger: Arc::new(Mutex::new(ledger)),
        })
    }

    /// The directory holding volume `id`.
    pub fn volume_path(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn persist(&self, ledger: &Ledger) -> Result<(), Status> {
        let body =
            serde_json::to_vec_pretty(ledger).map_err(|e| Status::internal(e.to_string()))?;
        let tmp = self.root.join(".volumes.json.tmp");
        std::fs::write(&tmp, body).map_err(|e| io_status("writing ledger", e))?;
        std::fs::rename(&tmp, self.root.join("volumes.json"))
            .map_err(|e| io_status("writing ledger", e))
    }

    /// Bytes handed out on `node` (the controller accounts every node on its own; the
    /// other roles have one disk).
    fn used(&self, ledger: &Ledger, node: &str) -> i64 {
        ledger
            .volumes
            .values()
            .filter(|v| self.role != Role::Controller || v.node == node)
            .map(|v| v.capacity)
            .sum()
    }

    /// The volumes of the ledger.
    pub fn volumes(&self) -> BTreeMap<String, Recorded> {
        self.lock().volumes.clone()
    }

    /// Remember the reclaim policy of volume `id`'s PV (node side).
    pub fn set_reclaim(&self, id: &str, policy: &str) -> Result<(), Status> {
        let mut ledger = self.lock();
        match ledger.volumes.get_mut(id) {
            Some(rec) if rec.reclaim.as_deref() != Some(policy) => {
                rec.reclaim = Some(policy.to_string());
            }
            _ => return Ok(()),
        }
        self.persist(&ledger)
    }

    /// Remove volume `id`'s directory and forget it (node side, once its PV is gone with
    /// reclaim policy Delete).
    pub fn remove(&self, id: &str) -> Result<(), Status> {
        valid_id(id)?;
        let mut ledger = self.lock();
        match std::fs::remove_dir_all(self.volume_path(id)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_status("removing volume", e)),
        }
        if ledger.volumes.remove(id).is_some() {
            self.persist(&ledger)?;
        }
        tracing::info!(volume = %id, "removed local volume directory");
        Ok(())
    }

    /// The directory of volume `id` on this node: made (and accounted, with the capacity
    /// the volume context names) when the node role sees the volume first.
    fn ensure_local(&self, id: &str, context: &HashMap<String, String>) -> Result<PathBuf, Status> {
        let dir = self.volume_path(id);
        if self.role != Role::Node {
            if !dir.is_dir() {
                return Err(Status::not_found(format!("volume {id} not found")));
            }
            return Ok(dir);
        }
        // A volume made for another node must not quietly start empty here.
        if let Some(node) = context.get("node").filter(|n| **n != self.node_id) {
            return Err(Status::failed_precondition(format!(
                "volume {id} lives on node {node}, not on {}",
                self.node_id
            )));
        }
        let mut ledger = self.lock();
        if ledger.volumes.contains_key(id) && dir.is_dir() {
            return Ok(dir);
        }
        let capacity = context
            .get(CONTEXT_CAPACITY)
            .and_then(|c| c.parse::<i64>().ok())
            .filter(|c| *c > 0)
            .unwrap_or(DEFAULT_CAPACITY);
        if !ledger.volumes.contains_key(id) {
            let free = self.total - self.used(&ledger, &self.node_id);
            if capacity > free {
                return Err(Status::resource_exhausted(format!(
                    "insufficient capacity on node {}: volume {id} needs {capacity} bytes, {free} available",
                    self.node_id
                )));
            }
        }
        std::fs::create_dir_all(&dir).map_err(|e| io_status("creating volume", e))?;
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o777))
            .map_err(|e| io_status("chmod volume", e))?;
        ledger
            .volumes
            .entry(id.to_string())
            .or_insert_with(|| Recorded {
                capacity,
                node: self.node_id.clone(),
                reclaim: None,
            });
        self.persist(&ledger)?;
        tracing::info!(volume = %id, capacity, node = %self.node_id, "created local volume directory");
        Ok(dir)
    }

    fn requested_node(&self, req: Option<&v1::TopologyRequirement>) -> String {
        req.and_then(|r| {
            r.preferred
                .iter()
                .chain(r.requisite.iter())
                .find_map(|t| t.segments.get(TOPOLOGY_NODE_KEY))
        })
        .cloned()
        .unwrap_or_else(|| self.node_id.clone())
    }
}

#[tonic::async_trait]
impl Identity for LocalDriver {
    async fn get_plugin_info(
        &self,
        _: Request<v1::GetPluginInfoRequest>,
    ) -> Result<Response<v1::GetPluginInfoResponse>, Status> {
        Ok(Response::new(v1::GetPluginInfoResponse {
            name: LOCAL_DRIVER.to_string(),
            vendor_version: env!("CARGO_PKG_VERSION").to_string(),
            manifest: HashMap::new(),
        }))
    }

    async fn get_plugin_capabilities(
        &self,
        _: Request<v1::GetPluginCapabilitiesRequest>,
    ) -> Result<Response<v1::GetPluginCapabilitiesResponse>, Status> {
        use v1::plugin_capability::{Service, Type, VolumeExpansion, service, volume_expansion};
        let svc = |t: service::Type| v1::PluginCapability {
            r#type: Some(Type::Service(Service { r#type: t as i32 })),
        };
        Ok(Response::new(v1::GetPluginCapabilitiesResponse {
            capabilities: vec![
                svc(service::Type::ControllerService),
                svc(service::Type::VolumeAccessibilityConstraints),
                v1::PluginCapability {
                    r#type: Some(Type::VolumeExpansion(VolumeExpansion {
                        r#type: volume_expansion::Type::Online as i32,
                    })),
                },
            ],
        }))
    }

    async fn probe(
        &self,
        _: Request<v1::ProbeRequest>,
    ) -> Result<Response<v1::ProbeResponse>, Status> {
        Ok(Response::new(v1::ProbeResponse { ready: Some(true) }))
    }
}

#[tonic::async_trait]
impl Controller for LocalDriver {
    async fn create_volume(
        &self,
        req: Request<v1::CreateVolumeRequest>,
    ) -> Result<Response<v1::CreateVolumeResponse>, Status> {
        let req = req.into_inner();
        if req.name.is_empty() {
            return Err(Status::invalid_argument("volume name missing in request"));
        }
        if req.volume_capabilities.is_empty() {
            return Err(Status::invalid_argument(
                "volume capabilities missing in request",
            ));
        }
        if req.volume_capabilities.iter().any(|c| {
            matches!(
                c.access_type,
                Some(v1::volume_capability::AccessType::Block(_))
            )
        }) {
            return Err(Status::invalid_argument("block volumes are not supported"));
        }
        let range = req.capacity_range.unwrap_or_default();
        let capacity = if range.required_bytes > 0 {
            range.required_bytes
        } else if range.limit_bytes > 0 {
            range.limit_bytes.min(DEFAULT_CAPACITY)
        } else {
            DEFAULT_CAPACITY
        };
        if range.limit_bytes > 0 && capacity > range.limit_bytes {
            return Err(Status::out_of_range("required bytes exceed the limit"));
        }
        let id = volume_id_for(&req.name);
        valid_id(&id)?;
        let node = self.requested_node(req.accessibility_requirements.as_ref());
        let mut ledger = self.lock();
        if let Some(existing) = ledger.volumes.get(&id) {
            // CreateVolume is idempotent by name; a different size is a different volume.
            if existing.capacity != capacity {
                return Err(Status::already_exists(format!(
                    "volume {id} exists with capacity {}",
                    existing.capacity
                )));
            }
        } else {
            let free = self.total - self.used(&ledger, &node);
            if capacity > free {
                return Err(Status::resource_exhausted(format!(
                    "insufficient capacity: requested {capacity} bytes, {free} available"
                )));
            }
            if self.role == Role::Combined {
                let dir = self.volume_path(&id);
                std::fs::create_dir_all(&dir).map_err(|e| io_status("creating volume", e))?;
                // Pods running as any user may write, as with k3s's local-path.
                std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o777))
                    .map_err(|e| io_status("chmod volume", e))?;
            }
            ledger.volumes.insert(
                id.clone(),
                Recorded {
                    capacity,
                    node: node.clone(),
                    reclaim: None,
                },
            );
            self.persist(&ledger)?;
            tracing::info!(volume = %id, capacity, node = %node, "created local volume");
        }
        let rec = ledger.volumes.get(&id).cloned().unwrap_or(Recorded {
            capacity,
            node,
            reclaim: None,
        });
        Ok(Response::new(v1::CreateVolumeResponse {
            volume: Some(v1::Volume {
                capacity_bytes: rec.capacity,
                volume_id: id,
                volume_context: [
                    ("node".to_string(), rec.node.clone()),
                    (CONTEXT_CAPACITY.to_string(), rec.capacity.to_string()),
                ]
                .into_iter()
                .collect(),
                content_source: None,
                accessible_topology: vec![topology(&rec.node)],
            }),
        }))
    }

    async fn delete_volume(
        &self,
        req: Request<v1::DeleteVolumeRequest>,
    ) -> Result<Response<v1::DeleteVolumeResponse>, Status> {
        let id = req.into_inner().volume_id;
        valid_id(&id)?;
        let mut ledger = self.lock();
        // The controller role has no directory to remove: the volume's node does that.
        if self.role != Role::Controller {
            match std::fs::remove_dir_all(self.volume_path(&id)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_status("removing volume", e)),
            }
        }
        if ledger.volumes.remove(&id).is_some() {
            self.persist(&ledger)?;
            tracing::info!(volume = %id, "deleted local volume");
        }
        Ok(Response::new(v1::DeleteVolumeResponse {}))
    }

    async fn controller_expand_volume(
        &self,
        req: Request<v1::ControllerExpandVolumeRequest>,
    ) -> Result<Response<v1::ControllerExpandVolumeResponse>, Status> {
        let req = req.into_inner();
        let want = req.capacity_range.unwrap_or_default().required_bytes;
        let mut ledger = self.lock();
        let node = ledger
            .volumes
            .get(&req.volume_id)
            .map(|r| r.node.clone())
            .unwrap_or_default();
        let used = self.used(&ledger, &node);
        let Some(rec) = ledger.volumes.get_mut(&req.volume_id) else {
            return Err(Status::not_found(format!(
                "volume {} not found",
                req.volume_id
            )));
        };
        if want > rec.capacity {
            let free = self.total - used;
            if want - rec.capacity > free {
                return Err(Status::resource_exhausted(format!(
                    "insufficient capacity: growing by {} bytes, {free} available",
                    want - rec.capacity
                )));
            }
            rec.capacity = want;
        }
        let capacity = rec.capacity;
        self.persist(&ledger)?;
        Ok(Response::new(v1::ControllerExpandVolumeResponse {
            capacity_bytes: capacity,
            node_expansion_required: false,
        }))
    }

    async fn get_capacity(
        &self,
        req: Request<v1::GetCapacityRequest>,
    ) -> Result<Response<v1::GetCapacityResponse>, Status> {
        let node = req
            .into_inner()
            .accessible_topology
            .and_then(|t| t.segments.get(TOPOLOGY_NODE_KEY).cloned())
            .unwrap_or_else(|| self.node_id.clone());
        let ledger = self.lock();
        Ok(Response::new(v1::GetCapacityResponse {
            available_capacity: self.total - self.used(&ledger, &node),
            maximum_volume_size: None,
            minimum_volume_size: None,
        }))
    }

    async fn validate_volume_capabilities(
        &self,
        req: Request<v1::ValidateVolumeCapabilitiesRequest>,
    ) -> Result<Response<v1::ValidateVolumeCapabilitiesResponse>, Status> {
        let req = req.into_inner();
        if !self.lock().volumes.contains_key(&req.volume_id) {
            return Err(Status::not_found(format!(
                "volume {} not found",
                req.volume_id
            )));
        }
        let block = req.volume_capabilities.iter().any(|c| {
            matches!(
                c.access_type,
                Some(v1::volume_capability::AccessType::Block(_))
            )
        });
        Ok(Response::new(v1::ValidateVolumeCapabilitiesResponse {
            confirmed: (!block).then_some(v1::validate_volume_capabilities_response::Confirmed {
                volume_context: req.volume_context,
                volume_capabilities: req.volume_capabilities,
                parameters: req.parameters,
                mutable_parameters: req.mutable_parameters,
            }),
            message: if block {
                "block volumes are not supported".into()
            } else {
                String::new()
            },
        }))
    }

    async fn controller_get_capabilities(
        &self,
        _: Request<v1::ControllerGetCapabilitiesRequest>,
    ) -> Result<Response<v1::ControllerGetCapabilitiesResponse>, Status> {
        use v1::controller_service_capability::{Rpc, Type, rpc};
        let cap = |t: rpc::Type| v1::ControllerServiceCapability {
            r#type: Some(Type::Rpc(Rpc { r#type: t as i32 })),
        };
        Ok(Response::new(v1::ControllerGetCapabilitiesResponse {
            capabilities: vec![
                cap(rpc::Type::CreateDeleteVolume),
                cap(rpc::Type::ExpandVolume),
                cap(rpc::Type::GetCapacity),
            ],
        }))
    }
}

#[tonic::async_trait]
impl Node for LocalDriver {
    async fn node_publish_volume(
        &self,
        req: Request<v1::NodePublishVolumeRequest>,
    ) -> Result<Response<v1::NodePublishVolumeResponse>, Status> {
        let req = req.into_inner();
        valid_id(&req.volume_id)?;
        if req.target_path.is_empty() {
            return Err(Status::invalid_argument("target path missing in request"));
        }
        let Some(cap) = req.volume_capability else {
            return Err(Status::invalid_argument(
                "volume capability missing in request",
            ));
        };
        if matches!(
            cap.access_type,
            Some(v1::volume_capability::AccessType::Block(_))
        ) {
            return Err(Status::invalid_argument("block volumes are not supported"));
        }
        // From the staging mount when the CO staged the volume, else the directory itself.
        let staged = PathBuf::from(&req.staging_target_path);
        let source = if !req.staging_target_path.is_empty() && is_mount_point(&staged) {
            staged
        } else {
            self.ensure_local(&req.volume_id, &req.volume_context)?
        };
        let target = PathBuf::from(&req.target_path);
        std::fs::create_dir_all(&target).map_err(|e| io_status("creating target", e))?;
        if is_mount_point(&target) {
            return Ok(Response::new(v1::NodePublishVolumeResponse {}));
        }
        let (src, tgt) = (source.to_string_lossy(), target.to_string_lossy());
        run("mount", &["--bind", &src, &tgt])?;
        if req.readonly {
            // A bind mount takes read-only only on a remount.
            if let Err(e) = run("mount", &["-o", "remount,bind,ro", &tgt]) {
                let _ = run("umount", &[&tgt]);
                return Err(e);
            }
        }
        tracing::info!(volume = %req.volume_id, target = %tgt, readonly = req.readonly, "published volume");
        Ok(Response::new(v1::NodePublishVolumeResponse {}))
    }

    async fn node_unpublish_volume(
        &self,
        req: Request<v1::NodeUnpublishVolumeRequest>,
    ) -> Result<Response<v1::NodeUnpublishVolumeResponse>, Status> {
        let req = req.into_inner();
        if req.target_path.is_empty() {
            return Err(Status::invalid_argument("target path missing in request"));
        }
        let target = PathBuf::from(&req.target_path);
        if is_mount_point(&target) {
            run("umount", &[&target.to_string_lossy()])?;
        }
        match std::fs::remove_dir(&target) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_status("removing target", e)),
        }
        Ok(Response::new(v1::NodeUnpublishVolumeResponse {}))
    }

    async fn node_get_volume_stats(
        &self,
        req: Request<v1::NodeGetVolumeStatsRequest>,
    ) -> Result<Response<v1::NodeGetVolumeStatsResponse>, Status> {
        let req = req.into_inner();
        let path = PathBuf::from(&req.volume_path);
        if !path.is_dir() {
            return Err(Status::not_found(format!(
                "volume path {} not found",
                req.volume_path
            )));
        }
        let (used, inodes) = dir_usage(&path).map_err(|e| io_status("measuring volume", e))?;
        let used = i64::try_from(used).unwrap_or(i64::MAX);
        let fs = rustix::fs::statvfs(&path).map_err(|e| io_status("statvfs", e.into()))?;
        let fs_total = i64::try_from(fs.f_blocks.saturating_mul(fs.f_frsize)).unwrap_or(i64::MAX);
        let fs_avail = i64::try_from(fs.f_bavail.saturating_mul(fs.f_frsize)).unwrap_or(i64::MAX);
        let (total, available) = match self.lock().volumes.get(&req.volume_id) {
            Some(rec) => (rec.capacity, (rec.capacity - used).max(0).min(fs_avail)),
            None => (fs_total, fs_avail),
        };
        let unit = v1::volume_usage::Unit::Bytes as i32;
        Ok(Response::new(v1::NodeGetVolumeStatsResponse {
            usage: vec![
                v1::VolumeUsage {
                    available,
                    total,
                    used,
                    unit,
                },
                v1::VolumeUsage {
                    available: i64::try_from(fs.f_favail).unwrap_or(0),
                    total: i64::try_from(fs.f_files).unwrap_or(0),
                    used: i64::try_from(inodes).unwrap_or(0),
                    unit: v1::volume_usage::Unit::Inodes as i32,
                },
            ],
            volume_condition: None,
        }))
    }

    async fn node_stage_volume(
        &self,
        req: Request<v1::NodeStageVolumeRequest>,
    ) -> Result<Response<v1::NodeStageVolumeResponse>, Status> {
        let req = req.into_inner();
        valid_id(&req.volume_id)?;
        if req.staging_target_path.is_empty() {
            return Err(Status::invalid_argument(
                "staging target path missing in request",
            ));
        }
        let Some(cap) = req.volume_capability else {
            return Err(Status::invalid_argument(
                "volume capability missing in request",
            ));
        };
        if matches!(
            cap.access_type,
            Some(v1::volume_capability::AccessType::Block(_))
        ) {
            return Err(Status::invalid_argument("block volumes are not supported"));
        }
        let source = self.ensure_local(&req.volume_id, &req.volume_context)?;
        let staging = PathBuf::from(&req.staging_target_path);
        std::fs::create_dir_all(&staging).map_err(|e| io_status("creating staging path", e))?;
        if !is_mount_point(&staging) {
            run(
                "mount",
                &[
                    "--bind",
                    &source.to_string_lossy(),
                    &staging.to_string_lossy(),
                ],
            )?;
            tracing::info!(volume = %req.volume_id, staging = %staging.display(), "staged volume");
        }
        Ok(Response::new(v1::NodeStageVolumeResponse {}))
    }

    async fn node_unstage_volume(
        &self,
        req: Request<v1::NodeUnstageVolumeRequest>,
    ) -> Result<Response<v1::NodeUnstageVolumeResponse>, Status> {
        let req = req.into_inner();
        if req.staging_target_path.is_empty() {
            return Err(Status::invalid_argument(
                "staging target path missing in request",
            ));
        }
        let staging = PathBuf::from(&req.staging_target_path);
        if is_mount_point(&staging) {
            run("umount", &[&staging.to_string_lossy()])?;
            tracing::info!(volume = %req.volume_id, staging = %staging.display(), "unstaged volume");
        }
        Ok(Response::new(v1::NodeUnstageVolumeResponse {}))
    }

    async fn node_get_capabilities(
        &self,
        _: Request<v1::NodeGetCapabilitiesRequest>,
    ) -> Result<Response<v1::NodeGetCapabilitiesResponse>, Status> {
        use v1::node_service_capability::{Rpc, Type, rpc};
        let cap = |t: rpc::Type| v1::NodeServiceCapability {
            r#type: Some(Type::Rpc(Rpc { r#type: t as i32 })),
        };
        Ok(Response::new(v1::NodeGetCapabilitiesResponse {
            capabilities: vec![
                cap(rpc::Type::StageUnstageVolume),
                cap(rpc::Type::GetVolumeStats),
            ],
        }))
    }

    async fn node_get_info(
        &self,
        _: Request<v1::NodeGetInfoRequest>,
    ) -> Result<Response<v1::NodeGetInfoResponse>, Status> {
        Ok(Response::new(v1::NodeGetInfoResponse {
            node_id: self.node_id.clone(),
            max_volumes_per_node: 0,
            accessible_topology: Some(topology(&self.node_id)),
        }))
    }
}
