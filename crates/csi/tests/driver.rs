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
