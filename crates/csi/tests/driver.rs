//! The CSI client against the built-in driver over a real unix socket in a temp dir.

use std::path::{Path, PathBuf};
use std::time::Duration;

use skiff_csi::v1;
use skiff_csi::{CsiClient, LOCAL_DRIVER, LocalDriver, TOPOLOGY_NODE_KEY};
use tokio_util::sync::CancellationToken;

const GI: i64 = 1 << 30;

struct Running {
    dir: tempfile::TempDir,
    client: CsiClient,
    shutdown: CancellationToken,
    server: tokio::task::JoinHandle<Result<(), skiff_csi::Error>>,
}

impl Running {
    fn root(&self) -> PathBuf {
        self.dir.path().join("volumes")
    }
}

async fn start(total: i64) -> Running {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("csi/local.sock");
    let driver = LocalDriver::new(dir.path().join("volumes"), "node-a", total).expect("driver");
    let shutdown = CancellationToken::new();
    let server = tokio::spawn({
        let socket = socket.clone();
        let shutdown = shutdown.clone();
        async move { skiff_csi::serve(&socket, driver, shutdown).await }
    });
    let mut client = None;
    for _ in 0..200 {
        if socket.exists()
            && let Ok(c) = CsiClient::connect(&socket).await
        {
            client = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Running {
        dir,
        client: client.expect("driver socket came up"),
        shutdown,
        server,
    }
}

impl Running {
    async fn stop(self) {
        self.shutdown.cancel();
        self.server
            .await
            .expect("join")
            .expect("server ran cleanly");
    }
}

fn mount_cap() -> v1::VolumeCapability {
    v1::VolumeCapability {
        access_mode: Some(v1::volume_capability::AccessMode {
            mode: v1::volume_capability::access_mode::Mode::SingleNodeWriter as i32,
        }),
        access_type: Some(v1::volume_capability::AccessType::Mount(
            v1::volume_capability::MountVolume::default(),
        )),
    }
}

fn create_req(name: &str, bytes: i64, node: Option<&str>) -> v1::CreateVolumeRequest {
    v1::CreateVolumeRequest {
        name: name.into(),
        capacity_range: Some(v1::CapacityRange {
            required_bytes: bytes,
            limit_bytes: 0,
        }),
        volume_capabilities: vec![mount_cap()],
        accessibility_requirements: node.map(|n| v1::TopologyRequirement {
            requisite: vec![],
            preferred: vec![v1::Topology {
                segments: [(TOPOLOGY_NODE_KEY.to_string(), n.to_string())]
                    .into_iter()
                    .collect(),
            }],
        }),
        ..Default::default()
    }
}

#[tokio::test]
async fn identity_names_the_driver_and_its_capabilities() {
    let mut r = start(10 * GI).await;
    assert_eq!(r.client.driver_name().await.expect("info"), LOCAL_DRIVER);
    let caps = r
        .client
        .identity
        .get_plugin_capabilities(v1::GetPluginCapabilitiesRequest {})
        .await
        .expect("caps")
        .into_inner();
    assert_eq!(caps.capabilities.len(), 3);
    let probe = r
        .client
        .identity
        .probe(v1::ProbeRequest {})
        .await
        .expect("probe")
        .into_inner();
    assert_eq!(probe.ready, Some(true));
    r.stop().await;
}

#[tokio::test]
async fn create_accounts_capacity_and_reports_topology_then_delete_frees_it() {
    let mut r = start(3 * GI).await;
    let v = r
        .client
        .controller
        .create_volume(create_req("pvc-1", 2 * GI, Some("node-b")))
        .await
        .expect("create")
        .into_inner()
        .volume
        .expect("volume");
    assert_eq!(v.volume_id, "pvc-1");
    assert_eq!(v.capacity_bytes, 2 * GI);
    assert_eq!(
        v.accessible_topology[0]
            .segments
            .get(TOPOLOGY_NODE_KEY)
            .map(String::as_str),
        Some("node-b")
    );
    assert!(r.root().join("pvc-1").is_dir());
    // Idempotent by name.
    let again = r
        .client
        .controller
        .create_volume(create_req("pvc-1", 2 * GI, None))
        .await
        .expect("idempotent create")
        .into_inner();
    assert_eq!(again.volume.expect("volume").volume_id, "pvc-1");
    // Same name, other size: a different volume.
    let err = r
        .client
        .controller
        .create_volume(create_req("pvc-1", GI, None))
        .await
        .expect_err("size conflict");
    assert_eq!(err.code(), tonic::Code::AlreadyExists);
    // Only 1 Gi left.
    let err = r
        .client
        .controller
        .create_volume(create_req("pvc-2", 2 * GI, None))
        .await
        .expect_err("exhausted");
    assert_eq!(err.code(), tonic::Code::ResourceExhausted);
    let cap = r
        .client
        .controller
        .get_capacity(v1::GetCapacityRequest::default())
        .await
        .expect("capacity")
        .into_inner();
    assert_eq!(cap.available_capacity, GI);
    r.client
        .controller
        .delete_volume(v1::DeleteVolumeRequest {
            volume_id: "pvc-1".into(),
            secrets: Default::default(),
        })
        .await
        .expect("delete");
    assert!(!r.root().join("pvc-1").exists());
    // Deleting again is fine (idempotent), and the space is back.
    r.client
        .controller
        .delete_volume(v1::DeleteVolumeRequest {
            volume_id: "pvc-1".into(),
            secrets: Default::default(),
        })
        .await
        .expect("delete again");
    r.client
        .controller
        .create_volume(create_req("pvc-2", 2 * GI, None))
        .await
        .expect("fits after delete");
    r.stop().await;
}

#[tokio::test]
async fn expand_grows_recorded_capacity_within_the_total() {
    let mut r = start(4 * GI).await;
    r.client
        .controller
        .create_volume(create_req("pvc-x", GI, None))
        .await
        .expect("create");
    let grown = r
        .client
        .controller
        .controller_expand_volume(v1::ControllerExpandVolumeRequest {
            volume_id: "pvc-x".into(),
            capacity_range: Some(v1::CapacityRange {
                required_bytes: 3 * GI,
                limit_bytes: 0,
            }),
            ..Default::default()
        })
        .await
        .expect("expand")
        .into_inner();
    assert_eq!(grown.capacity_bytes, 3 * GI);
    let err = r
        .client
        .controller
        .controller_expand_volume(v1::ControllerExpandVolumeRequest {
            volume_id: "pvc-x".into(),
            capacity_range: Some(v1::CapacityRange {
                required_bytes: 5 * GI,
                limit_bytes: 0,
            }),
            ..Default::default()
        })
        .await
        .expect_err("beyond total");
    assert_eq!(err.code(), tonic::Code::ResourceExhausted);
    // The ledger survives a restart of the driver.
    let reopened = LocalDriver::new(r.root(), "node-a", 4 * GI).expect("reopen");
    let cap = v1::controller_server::Controller::get_capacity(
        &reopened,
        tonic::Request::new(v1::GetCapacityRequest::default()),
    )
    .await
    .expect("capacity")
    .into_inner();
    assert_eq!(cap.available_capacity, GI);
    r.stop().await;
}

#[tokio::test]
async fn node_info_and_volume_stats() {
    let mut r = start(4 * GI).await;
    let info = r
        .client
        .node
        .node_get_info(v1::NodeGetInfoRequest {})
        .await
        .expect("info")
        .into_inner();
    assert_eq!(info.node_id, "node-a");
    assert_eq!(
        info.accessible_topology
            .expect("topology")
            .segments
            .get(TOPOLOGY_NODE_KEY)
            .map(String::as_str),
        Some("node-a")
    );
    r.client
        .controller
        .create_volume(create_req("pvc-s", GI, None))
        .await
        .expect("create");
    std::fs::write(r.root().join("pvc-s/data"), vec![7u8; 4096]).expect("write");
    let stats = r
        .client
        .node
        .node_get_volume_stats(v1::NodeGetVolumeStatsRequest {
            volume_id: "pvc-s".into(),
            volume_path: r.root().join("pvc-s").to_string_lossy().into_owned(),
            staging_target_path: String::new(),
        })
        .await
        .expect("stats")
        .into_inner();
    let bytes = &stats.usage[0];
    assert_eq!(bytes.unit, v1::volume_usage::Unit::Bytes as i32);
    assert_eq!(bytes.used, 4096);
    assert_eq!(bytes.total, GI);
    r.stop().await;
}

/// Unmounts on drop, so a failing assertion leaves no mount behind.
struct MountGuard(PathBuf);

impl Drop for MountGuard {
    fn drop(&mut self) {
        while skiff_csi::local::is_mount_point(&self.0) {
            let ok = std::process::Command::new("umount")
                .arg(&self.0)
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                break;
            }
        }
    }
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

async fn publish(r: &mut Running, target: &Path, readonly: bool) -> Result<(), tonic::Status> {
    r.client
        .node
        .node_publish_volume(v1::NodePublishVolumeRequest {
            volume_id: "pvc-m".into(),
            target_path: target.to_string_lossy().into_owned(),
            volume_capability: Some(mount_cap()),
            readonly,
            ..Default::default()
        })
        .await
        .map(|_| ())
}

#[tokio::test]
async fn publish_bind_mounts_the_volume_and_unpublish_removes_it() {
    if !is_root() {
        eprintln!("skipping: bind mounts need root");
        return;
    }
    let mut r = start(4 * GI).await;
    r.client
        .controller
        .create_volume(create_req("pvc-m", GI, None))
        .await
        .expect("create");
    let target = r.dir.path().join("pods/uid/volumes/data");
    let _guard = MountGuard(target.clone());
    publish(&mut r, &target, false).await.expect("publish");
    assert!(skiff_csi::local::is_mount_point(&target));
    // Publishing again is idempotent (no second mount stacked).
    publish(&mut r, &target, false)
        .await
        .expect("publish again");
    std::fs::write(target.join("hello"), b"world").expect("write through mount");
    assert_eq!(
        std::fs::read(r.root().join("pvc-m/hello")).expect("read source"),
        b"world"
    );
    r.client
        .node
        .node_unpublish_volume(v1::NodeUnpublishVolumeRequest {
            volume_id: "pvc-m".into(),
            target_path: target.to_string_lossy().into_owned(),
        })
        .await
        .expect("unpublish");
    assert!(!skiff_csi::local::is_mount_point(&target));
    assert!(!target.exists());
    assert!(
        r.root().join("pvc-m/hello").exists(),
        "data stays in the volume"
    );

    // Read-only publish refuses writes.
    let ro = r.dir.path().join("pods/uid2/volumes/data");
    let _guard2 = MountGuard(ro.clone());
    publish(&mut r, &ro, true).await.expect("publish ro");
    assert!(std::fs::write(ro.join("nope"), b"x").is_err());
    r.client
        .node
        .node_unpublish_volume(v1::NodeUnpublishVolumeRequest {
            volume_id: "pvc-m".into(),
            target_path: ro.to_string_lossy().into_owned(),
        })
        .await
        .expect("unpublish ro");
    assert!(!skiff_csi::local::is_mount_point(&ro));
    r.stop().await;
}

#[tokio::test]
async fn controller_role_records_per_node_and_makes_no_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("ctl.sock");
    let driver =
        LocalDriver::controller(dir.path().join("state"), "server", 2 * GI).expect("driver");
    let shutdown = CancellationToken::new();
    let server = tokio::spawn({
        let (socket, shutdown) = (socket.clone(), shutdown.clone());
        async move { skiff_csi::serve(&socket, driver, shutdown).await }
    });
    let mut c = connect(&socket).await;
    let made = c
        .controller
        .create_volume(create_req("pvc-a", 2 * GI, Some("node-1")))
        .await
        .expect("create on node-1")
        .into_inner()
        .volume
        .expect("volume");
    assert_eq!(
        made.volume_context.get("node").map(String::as_str),
        Some("node-1")
    );
    assert_eq!(
        made.volume_context.get("capacity").map(String::as_str),
        Some("2147483648")
    );
    assert!(
        !dir.path().join("state/pvc-a").exists(),
        "no directory in the control plane"
    );
    // Each node has its own total: node-1 is full, node-2 is not.
    let full = c
        .controller
        .create_volume(create_req("pvc-b", GI, Some("node-1")))
        .await
        .expect_err("node-1 is full");
    assert_eq!(full.code(), tonic::Code::ResourceExhausted);
    c.controller
        .create_volume(create_req("pvc-b", GI, Some("node-2")))
        .await
        .expect("node-2 has room");
    c.controller
        .delete_volume(v1::DeleteVolumeRequest {
            volume_id: "pvc-a".into(),
            secrets: Default::default(),
        })
        .await
        .expect("delete");
    c.controller
        .create_volume(create_req("pvc-c", GI, Some("node-1")))
        .await
        .expect("room again on node-1");
    shutdown.cancel();
    server.await.expect("join").expect("served");
}

async fn connect(socket: &Path) -> CsiClient {
    for _ in 0..200 {
        if socket.exists()
            && let Ok(c) = CsiClient::connect(socket).await
        {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("socket {} never came up", socket.display());
}

#[tokio::test]
async fn registration_socket_names_the_driver_and_its_endpoint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let reg = dir.path().join("registry/local-reg.sock");
    let endpoint = dir.path().join("plugins/local/csi.sock");
    let shutdown = CancellationToken::new();
    let server = tokio::spawn({
        let (reg, shutdown) = (reg.clone(), shutdown.clone());
        let registrar = skiff_csi::registration::Registrar {
            name: LOCAL_DRIVER.into(),
            endpoint: endpoint.clone(),
        };
        async move { skiff_csi::registration::serve(&reg, registrar, shutdown).await }
    });
    let mut info = None;
    for _ in 0..200 {
        if let Ok(i) = skiff_csi::registration::get_info(&reg).await {
            info = Some(i);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let info = info.expect("GetInfo");
    assert_eq!(info.r#type, "CSIPlugin");
    assert_eq!(info.name, LOCAL_DRIVER);
    assert_eq!(info.endpoint, endpoint.display().to_string());
    assert_eq!(info.supported_versions, ["1.0.0"]);
    skiff_csi::registration::notify(&reg, true, "")
        .await
        .expect("notify");
    shutdown.cancel();
    server.await.expect("join").expect("served");
    assert!(!reg.exists(), "the socket goes with the server");
}

#[tokio::test]
async fn node_role_stages_by_making_the_directory_with_node_accounting() {
    if !is_root() {
        eprintln!("skipping: bind mounts need root");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("node.sock");
    let root = dir.path().join("volumes");
    let driver = LocalDriver::node(&root, "node-1", GI).expect("driver");
    let shutdown = CancellationToken::new();
    let server = tokio::spawn({
        let (socket, shutdown, driver) = (socket.clone(), shutdown.clone(), driver.clone());
        async move { skiff_csi::serve_node(&socket, driver, shutdown).await }
    });
    let mut c = connect(&socket).await;
    let caps = c
        .node
        .node_get_capabilities(v1::NodeGetCapabilitiesRequest {})
        .await
        .expect("caps")
        .into_inner();
    assert!(caps.capabilities.iter().any(|cap| matches!(
        &cap.r#type,
        Some(v1::node_service_capability::Type::Rpc(r))
            if r.r#type == v1::node_service_capability::rpc::Type::StageUnstageVolume as i32
    )));
    let ctx = |node: &str, bytes: i64| -> std::collections::HashMap<String, String> {
        [
            ("node".to_string(), node.to_string()),
            ("capacity".to_string(), bytes.to_string()),
        ]
        .into()
    };
    let stage = |id: &str, staging: &Path, context| v1::NodeStageVolumeRequest {
        volume_id: id.into(),
        staging_target_path: staging.display().to_string(),
        volume_capability: Some(mount_cap()),
        volume_context: context,
        ..Default::default()
    };
    let staging = dir.path().join("staging/a/globalmount");
    let _g1 = MountGuard(staging.clone());
    c.node
        .node_stage_volume(stage("pvc-a", &staging, ctx("node-1", GI / 2)))
        .await
        .expect("stage");
    assert!(root.join("pvc-a").is_dir(), "directory made at stage time");
    assert!(skiff_csi::local::is_mount_point(&staging));
    assert_eq!(driver.volumes()["pvc-a"].capacity, GI / 2);
    // Another volume that does not fit on this node, and one of another node.
    let other = dir.path().join("staging/b/globalmount");
    let _g2 = MountGuard(other.clone());
    let full = c
        .node
        .node_stage_volume(stage("pvc-b", &other, ctx("node-1", GI)))
        .await
        .expect_err("no room");
    assert_eq!(full.code(), tonic::Code::ResourceExhausted);
    let foreign = c
        .node
        .node_stage_volume(stage("pvc-c", &other, ctx("node-2", 1)))
        .await
        .expect_err("another node's volume");
    assert_eq!(foreign.code(), tonic::Code::FailedPrecondition);
    assert!(!root.join("pvc-c").exists());
    // Publish from the staging mount: writes land in the volume directory.
    let target = dir
        .path()
        .join("pods/u/volumes/kubernetes.io~csi/pvc-a/mount");
    let _g3 = MountGuard(target.clone());
    c.node
        .node_publish_volume(v1::NodePublishVolumeRequest {
            volume_id: "pvc-a".into(),
            staging_target_path: staging.display().to_string(),
            target_path: target.display().to_string(),
            volume_capability: Some(mount_cap()),
            volume_context: ctx("node-1", GI / 2),
            ..Default::default()
        })
        .await
        .expect("publish");
    std::fs::write(target.join("f"), b"x").expect("write");
    assert!(root.join("pvc-a/f").is_file());
    c.node
        .node_unpublish_volume(v1::NodeUnpublishVolumeRequest {
            volume_id: "pvc-a".into(),
            target_path: target.display().to_string(),
        })
        .await
        .expect("unpublish");
    c.node
        .node_unstage_volume(v1::NodeUnstageVolumeRequest {
            volume_id: "pvc-a".into(),
            staging_target_path: staging.display().to_string(),
        })
        .await
        .expect("unstage");
    assert!(!skiff_csi::local::is_mount_point(&staging));
    // The node removes a deleted volume's directory itself.
    driver.set_reclaim("pvc-a", "Delete").expect("reclaim");
    assert_eq!(driver.volumes()["pvc-a"].reclaim.as_deref(), Some("Delete"));
    driver.remove("pvc-a").expect("remove");
    assert!(!root.join("pvc-a").exists());
    assert!(driver.volumes().is_empty());
    shutdown.cancel();
    server.await.expect("join").expect("served");
}
