//! Pod volumes, prepared under `<data-dir>/agent/pods/<uid>/volumes/<plugin>/<name>` and handed
//! to the runtime as bind mounts: emptyDir (a directory, or a tmpfs for `medium: Memory`),
//! hostPath (with upstream's type checks), and configMap, secret, downwardAPI and projected
//! volumes written as the kubelet's AtomicWriter does (a timestamped directory published by
//! swapping the `..data` symlink), re-projected on every pod sync so updates reach running pods;
//! persistentVolumeClaims of hostPath and local PVs directly, of CSI PVs through the driver
//! (`csi_node`).

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{
    ConfigMap, Container, DownwardAPIVolumeFile, KeyToPath, PersistentVolume,
    PersistentVolumeClaim, Pod, Secret, Volume,
};
use kube::Api;

use crate::cri::api;
use crate::env::{self, NodeFacts};

/// Why a volume could not be set up (upstream's `MountVolume.SetUp failed` message).
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("MountVolume.SetUp failed for volume {volume:?} : {message}")]
    Setup { volume: String, message: String },
    #[error("MountVolume.MountDevice failed for volume {volume:?} : {message}")]
    MountDevice { volume: String, message: String },
    #[error("API: {0}")]
    Api(#[from] kube::Error),
}

fn setup(volume: &str, message: impl Into<String>) -> VolumeError {
    VolumeError::Setup {
        volume: volume.to_string(),
        message: message.into(),
    }
}

/// One prepared volume: where it is on the host and whether the kubelet forces it read-only.
#[derive(Clone, Debug)]
pub struct Prepared {
    pub host_path: PathBuf,
    pub read_only: bool,
}

/// `<pods_dir>/<uid>`: everything the agent keeps for the pod's volumes.
pub fn pod_dir(pods_dir: &Path, uid: &str) -> PathBuf {
    pods_dir.join(uid)
}

/// A file of a projected volume: content and permission bits.
pub type Payload = BTreeMap<String, (Vec<u8>, u32)>;

const DEFAULT_MODE: u32 = 0o644;

/// Prepare (or refresh) every volume of `pod`.
pub async fn prepare(
    client: &kube::Client,
    pods_dir: &Path,
    pod: &Pod,
    node: &NodeFacts,
    pod_ip: &str,
) -> Result<HashMap<String, Prepared>, VolumeError> {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let base = pod_dir(pods_dir, &uid).join("volumes");
    let mut out = HashMap::new();
    for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        match prepare_one(client, pods_dir, ns, &base, pod, node, pod_ip, v).await {
            Ok(Some(p)) => {
                out.insert(v.name.clone(), p);
            }
            Ok(None) => {}
            Err(e) => {
                failed_mount(client, node, pod, &e);
                return Err(e);
            }
        }
    }
    Ok(out)
}

/// How often the same FailedMount event is recorded for a pod (the sync retries sooner).
const FAILED_MOUNT_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// A `FailedMount` warning about `pod`, as the kubelet's volume manager records, at most
/// once a minute for the same message.
fn failed_mount(client: &kube::Client, node: &NodeFacts, pod: &Pod, e: &VolumeError) {
    type Seen = HashMap<(String, String), std::time::Instant>;
    static SEEN: std::sync::LazyLock<std::sync::Mutex<Seen>> =
        std::sync::LazyLock::new(Default::default);
    if matches!(e, VolumeError::Api(_)) {
        return;
    }
    let message = e.to_string();
    let key = (
        pod.metadata.uid.clone().unwrap_or_default(),
        message.clone(),
    );
    {
        let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
        let now = std::time::Instant::now();
        seen.retain(|_, t| now.duration_since(*t) < FAILED_MOUNT_EVERY);
        if seen.contains_key(&key) {
            return;
        }
        seen.insert(key, now);
    }
    crate::events::Recorder::new(client.clone(), node.name.clone()).pod(
        pod,
        None,
        crate::events::WARNING,
        "FailedMount",
        message,
    );
}

#[allow(clippy::too_many_arguments)]
async fn prepare_one(
    client: &kube::Client,
    pods_dir: &Path,
    ns: &str,
    base: &Path,
    pod: &Pod,
    node: &NodeFacts,
    pod_ip: &str,
    v: &Volume,
) -> Result<Option<Prepared>, VolumeError> {
    let io_err = |e: io::Error| setup(&v.name, e.to_string());
    if let Some(ed) = &v.empty_dir {
        let dir = base.join("kubernetes.io~empty-dir").join(&v.name);
        std::fs::create_dir_all(&dir).map_err(io_err)?;
        if ed.medium.as_deref() == Some("Memory") {
            let size = ed
                .size_limit
                .as_ref()
                .and_then(|q| crate::util::quantity(&q.0, 1.0));
            mount_tmpfs(&dir, size).map_err(io_err)?;
        }
        // Writable by any user of the pod, as upstream's emptyDir.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).map_err(io_err)?;
        return Ok(Some(Prepared {
            host_path: dir,
            read_only: false,
        }));
    }
    if let Some(hp) = &v.host_path {
        check_host_path(&hp.path, hp.type_.as_deref().unwrap_or(""))
            .map_err(|m| setup(&v.name, m))?;
        return Ok(Some(Prepared {
            host_path: PathBuf::from(&hp.path),
            read_only: false,
        }));
    }
    if let Some(claim) = &v.persistent_volume_claim {
        let read_only = claim.read_only == Some(true);
        let pv = match claim_volume(client, ns, &claim.claim_name).await? {
            Ok(pv) => pv,
            Err(m) => return Err(setup(&v.name, m)),
        };
        let spec = pv.spec.clone().unwrap_or_default();
        let path = if let Some(hp) = spec.host_path {
            let kind = hp.type_.unwrap_or_default();
            check_host_path(&hp.path, &kind).map_err(|m| setup(&v.name, m))?;
            PathBuf::from(hp.path)
        } else if let Some(local) = spec.local {
            // A local PV names a path an administrator prepared on this node; nothing creates
            // it (the scheduler placed the pod here through the PV's node affinity).
            let p = PathBuf::from(&local.path);
            if !p.exists() {
                return Err(setup(
                    &v.name,
                    format!("path {:?} does not exist", local.path),
                ));
            }
            p
        } else if spec.csi.is_some() {
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            let pv_name = pv.metadata.name.clone().unwrap_or_default();
            crate::csi_node::publish(pods_dir, &uid, &pv, read_only)
                .await
                .map_err(|e| match e {
                    crate::csi_node::MountError::MountDevice(message) => VolumeError::MountDevice {
                        volume: pv_name.clone(),
                        message,
                    },
                    crate::csi_node::MountError::SetUp(message) => setup(&pv_name, message),
                })?
        } else {
            return Err(setup(
                &v.name,
                format!(
                    "persistentvolume {:?} has an unsupported volume source",
                    pv.metadata.name.as_deref().unwrap_or_default()
                ),
            ));
        };
        return Ok(Some(Prepared {
            host_path: path,
            read_only,
        }));
    }
    let (plugin, payload) = if let Some(cm) = &v.config_map {
        let data = get_config_map(client, ns, &cm.name).await?;
        let payload = match data {
            None if cm.optional == Some(true) => Payload::new(),
            None => return Err(setup(&v.name, format!("configmap {:?} not found", cm.name))),
            Some(d) => project(
                &d,
                cm.items.as_deref(),
                cm.default_mode,
                cm.optional,
                "configmap",
            )
            .map_err(|m| setup(&v.name, m))?,
        };
        ("kubernetes.io~configmap", payload)
    } else if let Some(s) = &v.secret {
        let name = s.secret_name.clone().unwrap_or_default();
        let data = get_secret(client, ns, &name).await?;
        let payload = match data {
            None if s.optional == Some(true) => Payload::new(),
            None => return Err(setup(&v.name, format!("secret {name:?} not found"))),
            Some(d) => project(&d, s.items.as_deref(), s.default_mode, s.optional, "secret")
                .map_err(|m| setup(&v.name, m))?,
        };
        ("kubernetes.io~secret", payload)
    } else if let Some(d) = &v.downward_api {
        let payload = downward(pod, node, pod_ip, d.items.as_deref(), d.default_mode)
            .map_err(|m| setup(&v.name, m))?;
        ("kubernetes.io~downward-api", payload)
    } else if let Some(p) = &v.projected {
        let mut payload = Payload::new();
        for src in p.sources.iter().flatten() {
            if let Some(cm) = &src.config_map {
                match get_config_map(client, ns, &cm.name).await? {
                    None if cm.optional == Some(true) => {}
                    None => {
                        return Err(setup(&v.name, format!("configmap {:?} not found", cm.name)));
                    }
                    Some(d) => payload.extend(
                        project(
                            &d,
                            cm.items.as_deref(),
                            p.default_mode,
                            cm.optional,
                            "configmap",
                        )
                        .map_err(|m| setup(&v.name, m))?,
                    ),
                }
            }
            if let Some(s) = &src.secret {
                match get_secret(client, ns, &s.name).await? {
                    None if s.optional == Some(true) => {}
                    None => return Err(setup(&v.name, format!("secret {:?} not found", s.name))),
                    Some(d) => payload.extend(
                        project(&d, s.items.as_deref(), p.default_mode, s.optional, "secret")
                            .map_err(|m| setup(&v.name, m))?,
                    ),
                }
            }
            if let Some(d) = &src.downward_api {
                payload.extend(
                    downward(pod, node, pod_ip, d.items.as_deref(), p.default_mode)
                        .map_err(|m| setup(&v.name, m))?,
                );
            }
            if src.service_account_token.is_some() {
                tracing::debug!(
                    volume = %v.name,
                    "projected serviceAccountToken sources are not supported; skipped"
                );
            }
        }
        ("kubernetes.io~projected", payload)
    } else {
        // Other volume types (PVCs, CSI, …) are not supported yet; containers mounting them fail.
        tracing::debug!(volume = %v.name, "unsupported volume type");
        return Ok(None);
    };
    let dir = base.join(plugin).join(&v.name);
    if atomic_write(&dir, &payload).map_err(io_err)? {
        tracing::info!(volume = %v.name, files = payload.len(), dir = %dir.display(), "volume projected");
    }
    Ok(Some(Prepared {
        host_path: dir,
        read_only: true,
    }))
}

/// The PV bound to claim `ns/claim`, or why there is none yet.
async fn claim_volume(
    client: &kube::Client,
    ns: &str,
    claim: &str,
) -> Result<Result<PersistentVolume, String>, kube::Error> {
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let Some(pvc) = pvcs.get_opt(claim).await? else {
        return Ok(Err(format!("persistentvolumeclaim {claim:?} not found")));
    };
    let bound = pvc.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
    let Some(pv_name) = pvc
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .filter(|n| !n.is_empty() && bound)
    else {
        return Ok(Err(format!("PVC {ns}/{claim} is not bound")));
    };
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    Ok(pvs
        .get_opt(&pv_name)
        .await?
        .ok_or_else(|| format!("persistentvolume {pv_name:?} not found")))
}

async fn get_config_map(
    client: &kube::Client,
    ns: &str,
    name: &str,
) -> Result<Option<BTreeMap<String, Vec<u8>>>, kube::Error> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    Ok(api.get_opt(name).await?.map(|cm| {
        let mut m: BTreeMap<String, Vec<u8>> = cm
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.into_bytes()))
            .collect();
        m.extend(
            cm.binary_data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0)),
        );
        m
    }))
}

async fn get_secret(
    client: &kube::Client,
    ns: &str,
    name: &str,
) -> Result<Option<BTreeMap<String, Vec<u8>>>, kube::Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    Ok(api.get_opt(name).await?.map(|s: Secret| {
        let mut m: BTreeMap<String, Vec<u8>> = s
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect();
        m.extend(
            s.string_data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.into_bytes())),
        );
        m
    }))
}

/// The files of a configMap/secret volume: every key, or only `items` (each at its path).
pub fn project(
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    default_mode: Option<i32>,
    optional: Option<bool>,
    kind: &str,
) -> Result<Payload, String> {
    let mode = default_mode.map(|m| m as u32).unwrap_or(DEFAULT_MODE);
    let mut out = Payload::new();
    match items {
        None | Some([]) => {
            for (k, v) in data {
                out.insert(k.clone(), (v.clone(), mode));
            }
        }
        Some(items) => {
            for it in items {
                match data.get(&it.key) {
                    Some(v) => {
                        let m = it.mode.map(|m| m as u32).unwrap_or(mode);
                        out.insert(it.path.clone(), (v.clone(), m));
                    }
                    None if optional == Some(true) => {}
                    None => {
                        return Err(format!(
                            "{kind} references non-existent config key: {}",
                            it.key
                        ));
                    }
                }
            }
        }
    }
    Ok(out)
}

/// The files of a downwardAPI volume (or projected source).
pub fn downward(
    pod: &Pod,
    node: &NodeFacts,
    pod_ip: &str,
    items: Option<&[DownwardAPIVolumeFile]>,
    default_mode: Option<i32>,
) -> Result<Payload, String> {
    let mode = default_mode.map(|m| m as u32).unwrap_or(DEFAULT_MODE);
    let mut out = Payload::new();
    for it in items.into_iter().flatten() {
        let value = if let Some(f) = &it.field_ref {
            env::field_value(pod, node, pod_ip, &f.field_path)
                .ok_or_else(|| format!("unsupported fieldPath: {}", f.field_path))?
        } else if let Some(r) = &it.resource_field_ref {
            let first = pod
                .spec
                .as_ref()
                .and_then(|s| s.containers.first().cloned())
                .unwrap_or_default();
            env::resource_value(pod, &first, node, r).map_err(|e| e.0)?
        } else {
            continue;
        };
        let m = it.mode.map(|m| m as u32).unwrap_or(mode);
        out.insert(it.path.clone(), (value.into_bytes(), m));
    }
    Ok(out)
}

/// Publish `payload` in `dir` atomically: files go to a fresh `..<timestamp>` directory which
/// the `..data` symlink is swapped to by rename; each top-level name is a symlink through
/// `..data`. Returns whether anything changed.
pub fn atomic_write(dir: &Path, payload: &Payload) -> io::Result<bool> {
    std::fs::create_dir_all(dir)?;
    let data_link = dir.join("..data");
    let old = std::fs::read_link(&data_link).ok();
    if let Some(old) = &old
        && same_payload(&dir.join(old), payload)
    {
        return Ok(false);
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let ts_name = format!("..{}_{:09}", now.as_secs(), now.subsec_nanos());
    let ts_dir = dir.join(&ts_name);
    std::fs::create_dir_all(&ts_dir)?;
    std::fs::set_permissions(&ts_dir, std::fs::Permissions::from_mode(0o755))?;
    for (rel, (content, mode)) in payload {
        let path = ts_dir.join(clean_rel(rel)?);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, content)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(*mode & 0o777))?;
    }
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&ts_name, &tmp)?;
    std::fs::rename(&tmp, &data_link)?;
    let tops: std::collections::BTreeSet<String> = payload
        .keys()
        .filter_map(|k| k.split('/').find(|c| !c.is_empty()).map(str::to_string))
        .collect();
    for top in &tops {
        let link = dir.join(top);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(Path::new("..data").join(top), &link)?;
        }
    }
    // Names no longer in the payload go, then the previous generation.
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("..") || tops.contains(&name) {
            continue;
        }
        if entry.file_type()?.is_symlink() {
            std::fs::remove_file(entry.path())?;
        }
    }
    if let Some(old) = old {
        let _ = std::fs::remove_dir_all(dir.join(old));
    }
    Ok(true)
}

/// A relative payload path without `..` components (upstream validates this on the API side).
fn clean_rel(rel: &str) -> io::Result<PathBuf> {
    let p = Path::new(rel);
    if p.is_absolute()
        || p.components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid path {rel:?}"),
        ));
    }
    Ok(p.to_path_buf())
}

fn same_payload(dir: &Path, payload: &Payload) -> bool {
    let mut count = 0usize;
    if !count_files(dir, &mut count) || count != payload.len() {
        return false;
    }
    payload.iter().all(|(rel, (content, mode))| {
        let p = dir.join(rel);
        std::fs::metadata(&p).is_ok_and(|m| m.permissions().mode() & 0o777 == mode & 0o777)
            && std::fs::read(&p).is_ok_and(|c| &c == content)
    })
}

fn count_files(dir: &Path, n: &mut usize) -> bool {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return false;
    };
    for e in rd.flatten() {
        match e.file_type() {
            Ok(t) if t.is_dir() => {
                if !count_files(&e.path(), n) {
                    return false;
                }
            }
            Ok(_) => *n += 1,
            Err(_) => return false,
        }
    }
    true
}

/// Upstream's hostPath type checks (`DirectoryOrCreate` and `FileOrCreate` create).
pub fn check_host_path(path: &str, kind: &str) -> Result<(), String> {
    let meta = std::fs::metadata(path);
    let is = |f: &dyn Fn(&std::fs::Metadata) -> bool| meta.as_ref().is_ok_and(f);
    let fail = |what: &str| Err(format!("hostPath type check failed: {path} is not {what}"));
    match kind {
        "" => Ok(()),
        "DirectoryOrCreate" => {
            if meta.is_err() {
                std::fs::create_dir_all(path).map_err(|e| e.to_string())?;
                let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755));
                return Ok(());
            }
            if is(&|m| m.is_dir()) {
                Ok(())
            } else {
                fail("a directory")
            }
        }
        "Directory" => {
            if is(&|m| m.is_dir()) {
                Ok(())
            } else {
                fail("a directory")
            }
        }
        "FileOrCreate" => {
            if meta.is_err() {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| e.to_string())?;
                let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644));
                return Ok(());
            }
            if is(&|m| m.is_file()) {
                Ok(())
            } else {
                fail("a file")
            }
        }
        "File" => {
            if is(&|m| m.is_file()) {
                Ok(())
            } else {
                fail("a file")
            }
        }
        "Socket" => {
            if is(&|m| m.file_type().is_socket()) {
                Ok(())
            } else {
                fail("a socket file")
            }
        }
        "CharDevice" => {
            if is(&|m| m.file_type().is_char_device()) {
                Ok(())
            } else {
                fail("a character device")
            }
        }
        "BlockDevice" => {
            if is(&|m| m.file_type().is_block_device()) {
                Ok(())
            } else {
                fail("a block device")
            }
        }
        other => Err(format!("invalid HostPathType {other:?}")),
    }
}

/// The CRI mounts of container `c`, with `subPath`/`subPathExpr` resolved under the volume.
pub fn mounts(
    c: &Container,
    vols: &HashMap<String, Prepared>,
    env: &HashMap<String, String>,
) -> Result<Vec<api::Mount>, String> {
    let mut out = Vec::new();
    for m in c.volume_mounts.iter().flatten() {
        let v = vols.get(&m.name).ok_or_else(|| {
            format!(
                "cannot find volume {:?} to mount into container {:?}",
                m.name, c.name
            )
        })?;
        let sub = match (&m.sub_path, &m.sub_path_expr) {
            (Some(s), _) if !s.is_empty() => Some(s.clone()),
            (_, Some(e)) if !e.is_empty() => Some(crate::pods::expand(e, env)),
            _ => None,
        };
        let host = match sub {
            Some(s) => {
                let rel = clean_rel(&s).map_err(|e| e.to_string())?;
                let p = v.host_path.join(rel);
                // The kubelet creates a missing subPath as a directory of a writable volume.
                if std::fs::symlink_metadata(&p).is_err() && !v.read_only {
                    std::fs::create_dir_all(&p).map_err(|e| e.to_string())?;
                }
                p
            }
            None => v.host_path.clone(),
        };
        out.push(api::Mount {
            container_path: m.mount_path.clone(),
            host_path: host.display().to_string(),
            readonly: m.read_only.unwrap_or(false) || v.read_only,
            ..Default::default()
        });
    }
    Ok(out)
}

fn mount_points_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(p.replace("\\040", " ")))
        .filter(|p| p.starts_with(dir))
        .collect();
    out.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    out.dedup();
    out
}

fn mount_tmpfs(dir: &Path, size: Option<i64>) -> io::Result<()> {
    if mount_points_under(dir).iter().any(|p| p == dir) {
        return Ok(());
    }
    let mut opts = String::from("mode=0777");
    if let Some(s) = size.filter(|s| *s > 0) {
        opts.push_str(&format!(",size={s}"));
    }
    let st = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", &opts, "tmpfs"])
        .arg(dir)
        .status()?;
    if !st.success() {
        return Err(io::Error::other(format!(
            "mount tmpfs on {} failed: {st}",
            dir.display()
        )));
    }
    Ok(())
}

/// Unpublish the pod's CSI volumes through their drivers, unmount what else the agent
/// mounted for the pod (tmpfs emptyDirs, CSI mounts a driver did not take down) and remove
/// its volume dirs.
pub async fn cleanup(pods_dir: &Path, uid: &str) {
    if uid.is_empty() {
        return;
    }
    crate::csi_node::unpublish_pod(pods_dir, uid).await;
    let dir = pod_dir(pods_dir, uid);
    for p in mount_points_under(&dir) {
        let st = std::process::Command::new("umount").arg(&p).status();
        if !st.is_ok_and(|s| s.success()) {
            tracing::warn!(path = %p.display(), "unmount failed; leaving the pod directory");
            return;
        }
    }
    if dir.exists()
        && let Err(e) = std::fs::remove_dir_all(&dir)
    {
        tracing::warn!(dir = %dir.display(), error = %e, "removing pod volumes");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(items: &[(&str, &str, u32)]) -> Payload {
        items
            .iter()
            .map(|(k, v, m)| (k.to_string(), (v.as_bytes().to_vec(), *m)))
            .collect()
    }

    #[test]
    fn atomic_write_swaps_data_and_prunes() {
        let tmp = tempfile::tempdir().expect("test");
        let dir = tmp.path().join("vol");
        assert!(
            atomic_write(&dir, &payload(&[("a", "1", 0o644), ("sub/b", "2", 0o400)]))
                .expect("test")
        );
        assert_eq!(std::fs::read_to_string(dir.join("a")).expect("test"), "1");
        assert_eq!(
            std::fs::read_to_string(dir.join("sub/b")).expect("test"),
            "2"
        );
        assert!(
            std::fs::symlink_metadata(dir.join("a"))
                .expect("test")
                .file_type()
                .is_symlink()
        );
        let mode = std::fs::metadata(dir.join("sub/b"))
            .expect("test")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o400);
        let first = std::fs::read_link(dir.join("..data")).expect("test");
        // Same payload: nothing is rewritten.
        assert!(
            !atomic_write(&dir, &payload(&[("a", "1", 0o644), ("sub/b", "2", 0o400)]))
                .expect("test")
        );
        assert_eq!(std::fs::read_link(dir.join("..data")).expect("test"), first);
        // A change: new generation, removed key disappears, old generation removed.
        assert!(atomic_write(&dir, &payload(&[("a", "changed", 0o644)])).expect("test"));
        assert_eq!(
            std::fs::read_to_string(dir.join("a")).expect("test"),
            "changed"
        );
        assert!(std::fs::symlink_metadata(dir.join("sub")).is_err());
        assert!(!dir.join(&first).exists());
        // A mode change alone is a change.
        assert!(atomic_write(&dir, &payload(&[("a", "changed", 0o600)])).expect("test"));
    }

    #[test]
    fn items_select_keys_and_modes() {
        let data: BTreeMap<String, Vec<u8>> = [
            ("k".to_string(), b"v".to_vec()),
            ("x".to_string(), b"y".to_vec()),
        ]
        .into();
        let all = project(&data, None, Some(0o400), None, "configmap").expect("test");
        assert_eq!(all.len(), 2);
        assert_eq!(all["k"].1, 0o400);
        let items = [KeyToPath {
            key: "k".into(),
            path: "dir/file".into(),
            mode: Some(0o600),
        }];
        let some = project(&data, Some(&items), None, None, "configmap").expect("test");
        assert_eq!(some.keys().collect::<Vec<_>>(), ["dir/file"]);
        assert_eq!(some["dir/file"].1, 0o600);
        let missing = [KeyToPath {
            key: "nope".into(),
            path: "p".into(),
            mode: None,
        }];
        assert_eq!(
            project(&data, Some(&missing), None, None, "configmap"),
            Err("configmap references non-existent config key: nope".into())
        );
        assert!(
            project(&data, Some(&missing), None, Some(true), "configmap")
                .expect("test")
                .is_empty()
        );
    }

    #[test]
    fn host_path_types() {
        let tmp = tempfile::tempdir().expect("test");
        let d = tmp.path().join("d");
        let f = tmp.path().join("f");
        let ds = d.display().to_string();
        let fs = f.display().to_string();
        assert_eq!(
            check_host_path(&ds, "Directory"),
            Err(format!(
                "hostPath type check failed: {ds} is not a directory"
            ))
        );
        check_host_path(&ds, "DirectoryOrCreate").expect("test");
        assert!(d.is_dir());
        check_host_path(&ds, "Directory").expect("test");
        check_host_path(&fs, "FileOrCreate").expect("test");
        assert!(f.is_file());
        check_host_path(&fs, "File").expect("test");
        assert_eq!(
            check_host_path(&ds, "File"),
            Err(format!("hostPath type check failed: {ds} is not a file"))
        );
        assert_eq!(
            check_host_path(&fs, "Socket"),
            Err(format!(
                "hostPath type check failed: {fs} is not a socket file"
            ))
        );
    }

    #[test]
    fn mounts_resolve_sub_paths_and_read_only() {
        let tmp = tempfile::tempdir().expect("test");
        let vols: HashMap<String, Prepared> = [
            (
                "rw".to_string(),
                Prepared {
                    host_path: tmp.path().join("rw"),
                    read_only: false,
                },
            ),
            (
                "cfg".to_string(),
                Prepared {
                    host_path: tmp.path().join("cfg"),
                    read_only: true,
                },
            ),
        ]
        .into();
        let c: Container = serde_json::from_value(serde_json::json!({
            "name": "c",
            "volumeMounts": [
                {"name": "rw", "mountPath": "/a", "subPathExpr": "$(POD)/logs", "readOnly": true},
                {"name": "cfg", "mountPath": "/b"}]
        }))
        .expect("test");
        let env: HashMap<String, String> = [("POD".to_string(), "p1".to_string())].into();
        let m = mounts(&c, &vols, &env).expect("test");
        assert_eq!(
            m[0].host_path,
            tmp.path().join("rw/p1/logs").display().to_string()
        );
        assert!(tmp.path().join("rw/p1/logs").is_dir());
        assert!(m[0].readonly && m[1].readonly);
        let bad: Container = serde_json::from_value(serde_json::json!({
            "name": "c", "volumeMounts": [{"name": "nope", "mountPath": "/x"}]
        }))
        .expect("test");
        assert_eq!(
            mounts(&bad, &vols, &env).map(|_| ()),
            Err("cannot find volume \"nope\" to mount into container \"c\"".to_string())
        );
    }
}
