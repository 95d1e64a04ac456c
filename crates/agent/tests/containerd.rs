//! Host test (root): the agent's containerd supervisor inside a network namespace the test
//! creates — start, image import, a raw CRI pod (the baseline the agent adds to), restart after
//! containerd is killed, stop on shutdown. Everything created is removed, also on failure.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use skiff_agent::containerd::{self, Paths};
use skiff_agent::cri::{Cri, api};
use skiff_agent::{cni, images};
use tokio_util::sync::CancellationToken;

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
}

fn available() -> bool {
    is_root()
        && Path::new("/usr/bin/containerd").exists()
        && Path::new("/usr/lib/cni/bridge").exists()
        && Path::new("/bin/busybox").exists()
}

/// The namespace, cgroups, mounts and shims this test created; removed on drop.
struct Guard {
    netns: String,
    cgroup_root: String,
    dir: tempfile::TempDir,
    shutdown: CancellationToken,
}

impl Guard {
    fn new() -> Guard {
        let suffix = format!(
            "{:08x}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0)
                ^ std::process::id()
        );
        let g = Guard {
            netns: format!("skiff-test-{suffix}"),
            cgroup_root: format!("/skiff-test-{suffix}"),
            dir: tempfile::tempdir().expect("tempdir"),
            shutdown: CancellationToken::new(),
        };
        let ok = Command::new("ip")
            .args(["netns", "add", &g.netns])
            .status()
            .expect("ip")
            .success();
        assert!(ok, "ip netns add");
        Command::new("ip")
            .args(["-n", &g.netns, "link", "set", "lo", "up"])
            .status()
            .expect("ip");
        g
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.shutdown.cancel();
        let socket = self.dir.path().display().to_string();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.parse::<u32>().is_err() {
                continue;
            }
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            // Our containerd and its shims name our temp dir on their command line.
            if (cmdline.contains("containerd-shim") || cmdline.starts_with("containerd "))
                && cmdline.contains(&socket)
            {
                let _ = Command::new("kill").args(["-9", &name]).output();
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
        // This process became the shims' subreaper: collect them so no zombie is left.
        containerd::reap_shims();
        let mut mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_whitespace().nth(4).map(str::to_string))
            .filter(|m| m.starts_with(&socket))
            .collect();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            let _ = Command::new("umount").args(["-l", &m]).output();
        }
        skiff_agent::cgroups::remove_tree(&self.cgroup_root);
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supervised_containerd_runs_a_cri_pod_and_comes_back_after_a_kill() {
    if !available() {
        eprintln!("skipping: needs root, containerd, CNI plugins and busybox-static");
        return;
    }
    let g = Guard::new();
    let agent_dir = g.dir.path().join("agent");
    let paths = Paths::new(&agent_dir);
    cni::write(
        &paths.cni_conf_dir,
        "10.244.9.0/24",
        &agent_dir.join("ipam"),
    )
    .expect("cni");
    std::fs::create_dir_all(&paths.dir).expect("dir");
    let pause = paths.dir.join("pause.tar");
    std::fs::write(
        &pause,
        images::pause_archive(Path::new("/bin/busybox")).expect("pause"),
    )
    .expect("write pause");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/busybox-image.sh");
    let out = Command::new(script)
        .arg(g.dir.path())
        .output()
        .expect("busybox-image.sh");
    assert!(out.status.success(), "{out:?}");

    let netns = Path::new("/var/run/netns").join(&g.netns);
    let started = Instant::now();
    let mut sup = containerd::start(
        paths.clone(),
        images::PAUSE_IMAGE,
        Some(netns.clone()),
        g.shutdown.clone(),
    )
    .await
    .expect("containerd starts");
    let ready = started.elapsed();
    let first_pid = sup.pid();
    assert!(first_pid > 0);
    // containerd runs in the test's namespace, not ours.
    let ns_of = |pid: u32| std::fs::read_link(format!("/proc/{pid}/ns/net")).ok();
    // nsenter execs containerd in place, so the PID is containerd's own.
    assert_ne!(
        ns_of(first_pid),
        ns_of(std::process::id()),
        "containerd in the root netns"
    );

    let t = Instant::now();
    let names = containerd::import(&paths.socket, &pause)
        .await
        .expect("import pause");
    let names2 = containerd::import(&paths.socket, &g.dir.path().join("busybox.tar"))
        .await
        .expect("import busybox");
    let imported = t.elapsed();
    assert!(names.iter().any(|n| n.contains("pause")), "{names:?}");
    assert!(
        names2.iter().any(|n| n.contains("busybox:1.36")),
        "{names2:?}"
    );

    let cri = Cri::connect(&paths.socket).await.expect("cri");
    assert!(
        cri.version()
            .await
            .expect("version")
            .starts_with("containerd://")
    );

    // One raw CRI pod: the floor under the agent's pod startup time.
    let mut rt = cri.rt.clone();
    let sb_config = api::PodSandboxConfig {
        metadata: Some(api::PodSandboxMetadata {
            name: "raw".into(),
            uid: "raw-uid".into(),
            namespace: "default".into(),
            attempt: 0,
        }),
        hostname: "raw".into(),
        log_directory: g.dir.path().join("logs").display().to_string(),
        linux: Some(api::LinuxPodSandboxConfig {
            cgroup_parent: format!("{}/raw", g.cgroup_root),
            ..Default::default()
        }),
        ..Default::default()
    };
    let t = Instant::now();
    let sb = rt
        .run_pod_sandbox(api::RunPodSandboxRequest {
            config: Some(sb_config.clone()),
            runtime_handler: String::new(),
        })
        .await
        .expect("RunPodSandbox")
        .into_inner()
        .pod_sandbox_id;
    let sandbox_time = t.elapsed();
    let cid = rt
        .create_container(api::CreateContainerRequest {
            pod_sandbox_id: sb.clone(),
            config: Some(api::ContainerConfig {
                metadata: Some(api::ContainerMetadata {
                    name: "main".into(),
                    attempt: 0,
                }),
                image: Some(api::ImageSpec {
                    image: "docker.io/library/busybox:1.36".into(),
                    ..Default::default()
                }),
                command: vec!["sleep".into(), "3600".into()],
                log_path: "main.log".into(),
                ..Default::default()
            }),
            sandbox_config: Some(sb_config),
        })
        .await
        .expect("CreateContainer")
        .into_inner()
        .container_id;
    rt.start_container(api::StartContainerRequest {
        container_id: cid.clone(),
    })
    .await
    .expect("StartContainer");
    let pod_time = t.elapsed();
    let status = rt
        .pod_sandbox_status(api::PodSandboxStatusRequest {
            pod_sandbox_id: sb.clone(),
            verbose: false,
        })
        .await
        .expect("status")
        .into_inner();
    let ip = status
        .status
        .and_then(|s| s.network)
        .map(|n| n.ip)
        .unwrap_or_default();
    assert!(ip.starts_with("10.244.9."), "pod ip {ip:?}");

    // Kill containerd: the supervisor starts a new one; the pod's shim keeps the pod alive.
    let _ = Command::new("kill")
        .args(["-9", &first_pid.to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut back = false;
    while Instant::now() < deadline {
        if sup.pid() != 0 && sup.pid() != first_pid && cri.version().await.is_ok() {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(back, "containerd was not restarted");
    let c = rt
        .container_status(api::ContainerStatusRequest {
            container_id: cid.clone(),
            verbose: false,
        })
        .await
        .expect("container status after restart")
        .into_inner()
        .status
        .expect("status");
    assert_eq!(c.state(), api::ContainerState::ContainerRunning);

    let t = Instant::now();
    rt.stop_container(api::StopContainerRequest {
        container_id: cid,
        timeout: 0,
    })
    .await
    .expect("stop");
    rt.stop_pod_sandbox(api::StopPodSandboxRequest {
        pod_sandbox_id: sb.clone(),
    })
    .await
    .expect("stop sandbox");
    rt.remove_pod_sandbox(api::RemovePodSandboxRequest { pod_sandbox_id: sb })
        .await
        .expect("remove sandbox");
    let teardown = t.elapsed();

    g.shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(15), sup.stopped())
        .await
        .expect("supervisor stops containerd");
    assert_eq!(sup.pid(), 0);
    assert!(
        tokio::net::UnixStream::connect(&paths.socket)
            .await
            .is_err(),
        "containerd still answers after shutdown"
    );
    eprintln!(
        "containerd ready {ready:?}; imports {imported:?}; raw CRI: RunPodSandbox {sandbox_time:?}, \
         sandbox+create+start {pod_time:?}; teardown {teardown:?}"
    );
}
