//! Test doubles for the pod sync: a recording fake CRI runtime served over a unix socket (so the
//! agent's real tonic clients talk to it) and a recording fake API server behind `kube::Client`.
//! The fake runtime's timestamps are its clock: `advance` moves every record into the past, which
//! is how tests let back-off time pass without sleeping.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use k8s_cri::v1::image_service_server::{ImageService, ImageServiceServer};
use k8s_cri::v1::runtime_service_server::{RuntimeService, RuntimeServiceServer};
use serde_json::{Value, json};
use tonic::{Request, Response, Status};

use crate::cri::{Cri, api};
use crate::pods::{LABEL_CONTAINER_NAME, LABEL_POD_UID};

/// One container the fake runtime holds.
#[derive(Clone, Debug)]
pub struct FakeContainer {
    pub id: String,
    pub sandbox_id: String,
    pub name: String,
    pub attempt: u32,
    pub labels: HashMap<String, String>,
    pub image: String,
    pub state: api::ContainerState,
    pub created_at: i64,
    pub started_at: i64,
    pub finished_at: i64,
    pub exit_code: i32,
    pub reason: String,
    pub config: api::ContainerConfig,
}

/// One sandbox the fake runtime holds.
#[derive(Clone, Debug)]
pub struct FakeSandbox {
    pub id: String,
    pub config: api::PodSandboxConfig,
    pub ready: bool,
    pub created_at: i64,
}

/// Everything the fake runtime knows, and what it was asked to do.
#[derive(Default, Debug)]
pub struct State {
    pub sandboxes: Vec<FakeSandbox>,
    pub containers: Vec<FakeContainer>,
    /// Images present; ImageStatus answers from here.
    pub images: HashSet<String>,
    /// Images whose pull fails, with the message.
    pub pull_failures: HashMap<String, String>,
    /// Every PullImage: the image and the auth it carried.
    pub pulls: Vec<(String, Option<api::AuthConfig>)>,
    /// Mutating calls in order, e.g. `CreateContainer app`.
    pub calls: Vec<String>,
    seq: u64,
}

fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or_default()
}

/// The fake runtime; clones share state.
#[derive(Clone, Default)]
pub struct FakeCri {
    state: Arc<Mutex<State>>,
}

impl FakeCri {
    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The mutating calls so far.
    pub fn calls(&self) -> Vec<String> {
        self.state().calls.clone()
    }

    pub fn clear_calls(&self) {
        self.state().calls.clear();
    }

    /// The newest attempt of the container `name`.
    pub fn latest(&self, name: &str) -> Option<FakeContainer> {
        self.state()
            .containers
            .iter()
            .filter(|c| c.name == name)
            .max_by_key(|c| (c.attempt, c.created_at))
            .cloned()
    }

    /// The running container `name` exits with `code` (and a runtime reason such as
    /// `OOMKilled`, or empty).
    pub fn exit(&self, name: &str, code: i32, reason: &str) {
        let mut st = self.state();
        let newest = st
            .containers
            .iter_mut()
            .filter(|c| c.name == name && c.state == api::ContainerState::ContainerRunning)
            .max_by_key(|c| c.attempt);
        let Some(c) = newest else {
            panic!("no running container {name}");
        };
        c.state = api::ContainerState::ContainerExited;
        c.finished_at = now_nanos();
        c.exit_code = code;
        c.reason = reason.to_string();
    }

    /// Let `d` pass: every timestamp the runtime holds moves `d` into the past.
    pub fn advance(&self, d: Duration) {
        let d = d.as_nanos() as i64;
        let mut st = self.state();
        for c in &mut st.containers {
            for t in [&mut c.created_at, &mut c.started_at, &mut c.finished_at] {
                if *t != 0 {
                    *t -= d;
                }
            }
        }
        for s in &mut st.sandboxes {
            s.created_at -= d;
        }
    }

    /// Serve the runtime and image services on a unix socket under `dir` and connect to it.
    pub async fn serve(&self, dir: &std::path::Path) -> Cri {
        let socket = dir.join("cri.sock");
        let listener = tokio::net::UnixListener::bind(&socket).expect("bind fake CRI socket");
        let incoming = futures::stream::unfold(listener, |l| async move {
            let r = l.accept().await.map(|(s, _)| s);
            Some((r, l))
        });
        let server = tonic::transport::Server::builder()
            .add_service(RuntimeServiceServer::new(self.clone()))
            .add_service(ImageServiceServer::new(self.clone()));
        tokio::spawn(server.serve_with_incoming(incoming));
        Cri::connect(&socket).await.expect("connect to fake CRI")
    }

    fn next_id(st: &mut State, prefix: &str) -> String {
        st.seq += 1;
        format!("{prefix}{:04}", st.seq)
    }
}

fn labels_match(have: &HashMap<String, String>, want: &HashMap<String, String>) -> bool {
    want.iter().all(|(k, v)| have.get(k) == Some(v))
}

fn to_status(c: &FakeContainer) -> api::ContainerStatus {
    api::ContainerStatus {
        id: c.id.clone(),
        metadata: Some(api::ContainerMetadata {
            name: c.name.clone(),
            attempt: c.attempt,
        }),
        state: c.state as i32,
        created_at: c.created_at,
        started_at: c.started_at,
        finished_at: c.finished_at,
        exit_code: c.exit_code,
        image: Some(api::ImageSpec {
            image: c.image.clone(),
            ..Default::default()
        }),
        image_ref: format!("sha256:{}", c.image.len()),
        reason: c.reason.clone(),
        labels: c.labels.clone(),
        ..Default::default()
    }
}

type Res<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl RuntimeService for FakeCri {
    async fn version(&self, _: Request<api::VersionRequest>) -> Res<api::VersionResponse> {
        Ok(Response::new(api::VersionResponse {
            version: "0.1.0".into(),
            runtime_name: "fake".into(),
            runtime_version: "1.0".into(),
            runtime_api_version: "v1".into(),
        }))
    }

    async fn run_pod_sandbox(
        &self,
        r: Request<api::RunPodSandboxRequest>,
    ) -> Res<api::RunPodSandboxResponse> {
        let config = r.into_inner().config.unwrap_or_default();
        let mut st = self.state();
        let id = FakeCri::next_id(&mut st, "sb");
        let name = config
            .metadata
            .as_ref()
            .map(|m| m.name.clone())
            .unwrap_or_default();
        st.calls.push(format!("RunPodSandbox {name}"));
        st.sandboxes.push(FakeSandbox {
            id: id.clone(),
            config,
            ready: true,
            created_at: now_nanos(),
        });
        Ok(Response::new(api::RunPodSandboxResponse {
            pod_sandbox_id: id,
        }))
    }

    async fn stop_pod_sandbox(
        &self,
        r: Request<api::StopPodSandboxRequest>,
    ) -> Res<api::StopPodSandboxResponse> {
        let id = r.into_inner().pod_sandbox_id;
        let mut st = self.state();
        st.calls.push("StopPodSandbox".into());
        for s in st.sandboxes.iter_mut().filter(|s| s.id == id) {
            s.ready = false;
        }
        for c in st.containers.iter_mut().filter(|c| c.sandbox_id == id) {
            if c.state == api::ContainerState::ContainerRunning {
                c.state = api::ContainerState::ContainerExited;
                c.exit_code = 137;
                c.finished_at = now_nanos();
            }
        }
        Ok(Response::new(api::StopPodSandboxResponse {}))
    }

    async fn remove_pod_sandbox(
        &self,
        r: Request<api::RemovePodSandboxRequest>,
    ) -> Res<api::RemovePodSandboxResponse> {
        let id = r.into_inner().pod_sandbox_id;
        let mut st = self.state();
        st.calls.push("RemovePodSandbox".into());
        st.sandboxes.retain(|s| s.id != id);
        st.containers.retain(|c| c.sandbox_id != id);
        Ok(Response::new(api::RemovePodSandboxResponse {}))
    }

    async fn pod_sandbox_status(
        &self,
        r: Request<api::PodSandboxStatusRequest>,
    ) -> Res<api::PodSandboxStatusResponse> {
        let id = r.into_inner().pod_sandbox_id;
        let st = self.state();
        let s = st
            .sandboxes
            .iter()
            .find(|s| s.id == id)
            .ok_or_else(|| Status::not_found(id.clone()))?;
        Ok(Response::new(api::PodSandboxStatusResponse {
            status: Some(api::PodSandboxStatus {
                id: s.id.clone(),
                metadata: s.config.metadata.clone(),
                state: if s.ready {
                    api::PodSandboxState::SandboxReady as i32
                } else {
                    api::PodSandboxState::SandboxNotready as i32
                },
                created_at: s.created_at,
                network: Some(api::PodSandboxNetworkStatus {
                    ip: "10.244.0.7".into(),
                    ..Default::default()
                }),
                labels: s.config.labels.clone(),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    async fn list_pod_sandbox(
        &self,
        r: Request<api::ListPodSandboxRequest>,
    ) -> Res<api::ListPodSandboxResponse> {
        let filter = r.into_inner().filter.unwrap_or_default();
        let st = self.state();
        let items = st
            .sandboxes
            .iter()
            .filter(|s| labels_match(&s.config.labels, &filter.label_selector))
            .filter(|s| filter.id.is_empty() || s.id == filter.id)
            .filter(|s| {
                filter.state.as_ref().is_none_or(|w| {
                    (w.state == api::PodSandboxState::SandboxReady as i32) == s.ready
                })
            })
            .map(|s| api::PodSandbox {
                id: s.id.clone(),
                metadata: s.config.metadata.clone(),
                state: if s.ready {
                    api::PodSandboxState::SandboxReady as i32
                } else {
                    api::PodSandboxState::SandboxNotready as i32
                },
                created_at: s.created_at,
                labels: s.config.labels.clone(),
                ..Default::default()
            })
            .collect();
        Ok(Response::new(api::ListPodSandboxResponse { items }))
    }

    async fn create_container(
        &self,
        r: Request<api::CreateContainerRequest>,
    ) -> Res<api::CreateContainerResponse> {
        let r = r.into_inner();
        let config = r.config.unwrap_or_default();
        let mut st = self.state();
        if !st.sandboxes.iter().any(|s| s.id == r.pod_sandbox_id) {
            return Err(Status::not_found(r.pod_sandbox_id));
        }
        let id = FakeCri::next_id(&mut st, "c");
        let meta = config.metadata.clone().unwrap_or_default();
        st.calls.push(format!("CreateContainer {}", meta.name));
        st.containers.push(FakeContainer {
            id: id.clone(),
            sandbox_id: r.pod_sandbox_id,
            name: meta.name,
            attempt: meta.attempt,
            labels: config.labels.clone(),
            image: config
                .image
                .as_ref()
                .map(|i| i.image.clone())
                .unwrap_or_default(),
            state: api::ContainerState::ContainerCreated,
            created_at: now_nanos(),
            started_at: 0,
            finished_at: 0,
            exit_code: 0,
            reason: String::new(),
            config,
        });
        Ok(Response::new(api::CreateContainerResponse {
            container_id: id,
        }))
    }

    async fn start_container(
        &self,
        r: Request<api::StartContainerRequest>,
    ) -> Res<api::StartContainerResponse> {
        let id = r.into_inner().container_id;
        let mut st = self.state();
        let c = st
            .containers
            .iter_mut()
            .find(|c| c.id == id)
            .ok_or_else(|| Status::not_found(id.clone()))?;
        c.state = api::ContainerState::ContainerRunning;
        c.started_at = now_nanos();
        let name = c.name.clone();
        st.calls.push(format!("StartContainer {name}"));
        Ok(Response::new(api::StartContainerResponse {}))
    }

    async fn stop_container(
        &self,
        r: Request<api::StopContainerRequest>,
    ) -> Res<api::StopContainerResponse> {
        let id = r.into_inner().container_id;
        let mut st = self.state();
        let c = st
            .containers
            .iter_mut()
            .find(|c| c.id == id)
            .ok_or_else(|| Status::not_found(id.clone()))?;
        if c.state == api::ContainerState::ContainerRunning {
            c.state = api::ContainerState::ContainerExited;
            c.exit_code = 143;
            c.finished_at = now_nanos();
        }
        let name = c.name.clone();
        st.calls.push(format!("StopContainer {name}"));
        Ok(Response::new(api::StopContainerResponse {}))
    }

    async fn remove_container(
        &self,
        r: Request<api::RemoveContainerRequest>,
    ) -> Res<api::RemoveContainerResponse> {
        let id = r.into_inner().container_id;
        let mut st = self.state();
        let before = st.containers.len();
        st.containers.retain(|c| c.id != id);
        if st.containers.len() != before {
            st.calls.push(format!("RemoveContainer {id}"));
        }
        Ok(Response::new(api::RemoveContainerResponse {}))
    }

    async fn list_containers(
        &self,
        r: Request<api::ListContainersRequest>,
    ) -> Res<api::ListContainersResponse> {
        let filter = r.into_inner().filter.unwrap_or_default();
        let st = self.state();
        let containers = st
            .containers
            .iter()
            .filter(|c| filter.pod_sandbox_id.is_empty() || c.sandbox_id == filter.pod_sandbox_id)
            .filter(|c| labels_match(&c.labels, &filter.label_selector))
            .filter(|c| filter.id.is_empty() || c.id == filter.id)
            .filter(|c| {
                filter
                    .state
                    .as_ref()
                    .is_none_or(|w| w.state == c.state as i32)
            })
            .map(|c| api::Container {
                id: c.id.clone(),
                pod_sandbox_id: c.sandbox_id.clone(),
                metadata: Some(api::ContainerMetadata {
                    name: c.name.clone(),
                    attempt: c.attempt,
                }),
                state: c.state as i32,
                created_at: c.created_at,
                labels: c.labels.clone(),
                ..Default::default()
            })
            .collect();
        Ok(Response::new(api::ListContainersResponse { containers }))
    }

    async fn container_status(
        &self,
        r: Request<api::ContainerStatusRequest>,
    ) -> Res<api::ContainerStatusResponse> {
        let id = r.into_inner().container_id;
        let st = self.state();
        let c = st
            .containers
            .iter()
            .find(|c| c.id == id)
            .ok_or_else(|| Status::not_found(id.clone()))?;
        Ok(Response::new(api::ContainerStatusResponse {
            status: Some(to_status(c)),
            ..Default::default()
        }))
    }

    async fn exec_sync(&self, r: Request<api::ExecSyncRequest>) -> Res<api::ExecSyncResponse> {
        let r = r.into_inner();
        let mut st = self.state();
        st.calls.push(format!("ExecSync {}", r.cmd.join(" ")));
        // `false` fails, anything else succeeds, like a shell would.
        let exit_code = i32::from(r.cmd.first().is_some_and(|c| c == "false"));
        Ok(Response::new(api::ExecSyncResponse {
            exit_code,
            ..Default::default()
        }))
    }

    async fn update_container_resources(
        &self,
        _: Request<api::UpdateContainerResourcesRequest>,
    ) -> Res<api::UpdateContainerResourcesResponse> {
        Err(Status::unimplemented("update_container_resources"))
    }

    async fn reopen_container_log(
        &self,
        _: Request<api::ReopenContainerLogRequest>,
    ) -> Res<api::ReopenContainerLogResponse> {
        Err(Status::unimplemented("reopen_container_log"))
    }

    async fn exec(&self, _: Request<api::ExecRequest>) -> Res<api::ExecResponse> {
        Err(Status::unimplemented("exec"))
    }

    async fn attach(&self, _: Request<api::AttachRequest>) -> Res<api::AttachResponse> {
        Err(Status::unimplemented("attach"))
    }

    async fn port_forward(
        &self,
        _: Request<api::PortForwardRequest>,
    ) -> Res<api::PortForwardResponse> {
        Err(Status::unimplemented("port_forward"))
    }

    async fn container_stats(
        &self,
        _: Request<api::ContainerStatsRequest>,
    ) -> Res<api::ContainerStatsResponse> {
        Err(Status::unimplemented("container_stats"))
    }

    async fn list_container_stats(
        &self,
        _: Request<api::ListContainerStatsRequest>,
    ) -> Res<api::ListContainerStatsResponse> {
        Err(Status::unimplemented("list_container_stats"))
    }

    async fn pod_sandbox_stats(
        &self,
        _: Request<api::PodSandboxStatsRequest>,
    ) -> Res<api::PodSandboxStatsResponse> {
        Err(Status::unimplemented("pod_sandbox_stats"))
    }

    async fn list_pod_sandbox_stats(
        &self,
        _: Request<api::ListPodSandboxStatsRequest>,
    ) -> Res<api::ListPodSandboxStatsResponse> {
        Err(Status::unimplemented("list_pod_sandbox_stats"))
    }

    async fn update_runtime_config(
        &self,
        _: Request<api::UpdateRuntimeConfigRequest>,
    ) -> Res<api::UpdateRuntimeConfigResponse> {
        Err(Status::unimplemented("update_runtime_config"))
    }

    async fn status(&self, _: Request<api::StatusRequest>) -> Res<api::StatusResponse> {
        Err(Status::unimplemented("status"))
    }

    async fn checkpoint_container(
        &self,
        _: Request<api::CheckpointContainerRequest>,
    ) -> Res<api::CheckpointContainerResponse> {
        Err(Status::unimplemented("checkpoint_container"))
    }

    async fn list_metric_descriptors(
        &self,
        _: Request<api::ListMetricDescriptorsRequest>,
    ) -> Res<api::ListMetricDescriptorsResponse> {
        Err(Status::unimplemented("list_metric_descriptors"))
    }

    async fn list_pod_sandbox_metrics(
        &self,
        _: Request<api::ListPodSandboxMetricsRequest>,
    ) -> Res<api::ListPodSandboxMetricsResponse> {
        Err(Status::unimplemented("list_pod_sandbox_metrics"))
    }

    async fn runtime_config(
        &self,
        _: Request<api::RuntimeConfigRequest>,
    ) -> Res<api::RuntimeConfigResponse> {
        Err(Status::unimplemented("runtime_config"))
    }

    type GetContainerEventsStream =
        Pin<Box<dyn futures::Stream<Item = Result<api::ContainerEventResponse, Status>> + Send>>;

    async fn get_container_events(
        &self,
        _: Request<api::GetEventsRequest>,
    ) -> Res<Self::GetContainerEventsStream> {
        Err(Status::unimplemented("get_container_events"))
    }
}

#[tonic::async_trait]
impl ImageService for FakeCri {
    async fn image_status(
        &self,
        r: Request<api::ImageStatusRequest>,
    ) -> Res<api::ImageStatusResponse> {
        let image = r.into_inner().image.map(|i| i.image).unwrap_or_default();
        let present = self.state().images.contains(&image);
        Ok(Response::new(api::ImageStatusResponse {
            image: present.then(|| api::Image {
                id: format!("sha256:{}", image.len()),
                repo_tags: vec![image],
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    async fn pull_image(&self, r: Request<api::PullImageRequest>) -> Res<api::PullImageResponse> {
        let r = r.into_inner();
        let image = r.image.map(|i| i.image).unwrap_or_default();
        let mut st = self.state();
        st.calls.push(format!("PullImage {image}"));
        st.pulls.push((image.clone(), r.auth));
        if let Some(msg) = st.pull_failures.get(&image) {
            return Err(Status::unknown(msg.clone()));
        }
        st.images.insert(image.clone());
        Ok(Response::new(api::PullImageResponse { image_ref: image }))
    }

    async fn list_images(
        &self,
        _: Request<api::ListImagesRequest>,
    ) -> Res<api::ListImagesResponse> {
        Err(Status::unimplemented("list_images"))
    }

    async fn remove_image(
        &self,
        _: Request<api::RemoveImageRequest>,
    ) -> Res<api::RemoveImageResponse> {
        Err(Status::unimplemented("remove_image"))
    }

    async fn image_fs_info(
        &self,
        _: Request<api::ImageFsInfoRequest>,
    ) -> Res<api::ImageFsInfoResponse> {
        Err(Status::unimplemented("image_fs_info"))
    }
}

/// One request the fake API server saw.
#[derive(Clone, Debug)]
pub struct ApiCall {
    pub method: String,
    pub path: String,
    pub body: Value,
}

/// A recording API server: pod status patches, deletes and events succeed; GETs answer from
/// `objects` (keyed by request path) or 404.
#[derive(Clone, Default)]
pub struct FakeApi {
    pub calls: Arc<Mutex<Vec<ApiCall>>>,
    pub objects: Arc<Mutex<HashMap<String, Value>>>,
}

impl FakeApi {
    pub fn calls(&self) -> Vec<ApiCall> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Make `GET path` answer `object`.
    pub fn put(&self, path: &str, object: Value) {
        self.objects
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(path.to_string(), object);
    }

    pub fn client(&self) -> kube::Client {
        let me = self.clone();
        let svc = tower::service_fn(move |req: http::Request<kube::client::Body>| {
            let me = me.clone();
            async move {
                let method = req.method().to_string();
                let path = req.uri().path().to_string();
                let query = req.uri().query().unwrap_or("").to_string();
                let bytes = req.into_body().collect().await?.to_bytes();
                let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                me.calls
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(ApiCall {
                        method: method.clone(),
                        path: path.clone(),
                        body: body.clone(),
                    });
                // Watches stay open without events: the tests drive state through lists.
                if query.contains("watch=true") {
                    let pending = futures::stream::pending::<
                        Result<hyper::body::Frame<Bytes>, std::convert::Infallible>,
                    >();
                    let resp = http::Response::builder()
                        .status(200)
                        .header("content-type", "application/json")
                        .body(BoxBody::new(StreamBody::new(pending)))?;
                    return Ok(resp);
                }
                let (code, out) = me.answer(&method, &path, body);
                let resp = http::Response::builder()
                    .status(code)
                    .header("content-type", "application/json")
                    .body(BoxBody::new(Full::new(Bytes::from(out.to_string()))))?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(resp)
            }
        });
        kube::Client::new(svc, "default")
    }

    fn answer(&self, method: &str, path: &str, body: Value) -> (u16, Value) {
        let name = path.rsplit('/').next().unwrap_or("").to_string();
        match method {
            "GET" => match self
                .objects
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(path)
            {
                Some(o) => (200, o.clone()),
                None => (
                    404,
                    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                           "reason": "NotFound", "code": 404, "message": format!("{path} not found")}),
                ),
            },
            "POST" if path.ends_with("/events") => (201, body),
            _ if path.ends_with("/status") || path.contains("/pods/") => {
                let pod_name = path
                    .split("/pods/")
                    .nth(1)
                    .and_then(|s| s.split('/').next())
                    .unwrap_or("")
                    .to_string();
                (
                    200,
                    json!({"apiVersion": "v1", "kind": "Pod",
                           "metadata": {"name": pod_name, "namespace": "default"}}),
                )
            }
            _ => (
                200,
                json!({"apiVersion": "v1", "kind": "Event",
                       "metadata": {"name": name, "namespace": "default"}}),
            ),
        }
    }
}

/// A fake runtime, a fake API and an agent wired to both, in a temp dir.
pub struct Harness {
    pub dir: tempfile::TempDir,
    pub cri: FakeCri,
    pub api: FakeApi,
    pub agent: crate::Agent,
}

impl Harness {
    pub async fn new() -> Harness {
        let dir = tempfile::tempdir().expect("temp dir");
        let cri = FakeCri::default();
        let api = FakeApi::default();
        let client = cri.serve(dir.path()).await;
        let pods_dir: PathBuf = dir.path().join("pods");
        std::fs::create_dir_all(&pods_dir).expect("pods dir");
        let agent = crate::Agent {
            client: api.client(),
            cri: client,
            node_name: "node-1".into(),
            node_ip: IpAddr::from([192, 0, 2, 10]),
            pods_dir,
            // A cgroup path no host has; the disabled manager writes and removes nothing.
            cgroups: crate::cgroups::PodCgroups::disabled(&format!(
                "/skiff-unit-test-{}",
                std::process::id()
            )),
            cluster_dns: "10.96.0.10".into(),
            cluster_domain: "cluster.local".into(),
            owns_runtime: true,
        };
        Harness {
            dir,
            cri,
            api,
            agent,
        }
    }

    /// Status patches written for pods, oldest first.
    pub fn status_patches(&self) -> Vec<Value> {
        self.api
            .calls()
            .into_iter()
            .filter(|c| c.method == "PATCH" && c.path.ends_with("/status"))
            .map(|c| c.body["status"].clone())
            .collect()
    }

    /// Pod UIDs the runtime has sandboxes for.
    pub fn sandbox_uids(&self) -> Vec<String> {
        self.cri
            .state()
            .sandboxes
            .iter()
            .filter_map(|s| s.config.labels.get(LABEL_POD_UID).cloned())
            .collect()
    }

    /// Names of the containers the runtime holds, by `io.kubernetes.container.name`.
    pub fn container_names(&self) -> Vec<String> {
        self.cri
            .state()
            .containers
            .iter()
            .filter_map(|c| c.labels.get(LABEL_CONTAINER_NAME).cloned())
            .collect()
    }
}
