//! Container probes (liveness, readiness, startup) and lifecycle hooks, as the kubelet runs
//! them: one tokio task per container and probe kind runs the probe every `periodSeconds`,
//! folds the outcomes through `successThreshold`/`failureThreshold` and publishes the result,
//! which the pod sync reads (readiness → `ready`, startup → `started`, liveness or startup
//! failure → the container is killed and restarted).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use http_body_util::Empty;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_openapi::api::core::v1::{
    Container, ExecAction, HTTPGetAction, LifecycleHandler, Pod, Probe, TCPSocketAction,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tonic::transport::Channel;

use crate::cri::api;
use crate::events::{self, Recorder};

/// The three probe kinds; the name is the one upstream's events use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Liveness,
    Readiness,
    Startup,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Liveness => "Liveness",
            Kind::Readiness => "Readiness",
            Kind::Startup => "Startup",
        }
    }
}

/// A probe's settings with upstream's defaults filled in.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Timing {
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

impl Timing {
    /// Defaults: period 10 s, timeout 1 s, success 1, failure 3; values below 1 become 1.
    pub fn of(p: &Probe) -> Timing {
        let pos = |v: Option<i32>, d: i32| v.unwrap_or(d).max(1) as u64;
        Timing {
            initial_delay: Duration::from_secs(p.initial_delay_seconds.unwrap_or(0).max(0) as u64),
            period: Duration::from_secs(pos(p.period_seconds, 10)),
            timeout: Duration::from_secs(pos(p.timeout_seconds, 1)),
            success_threshold: pos(p.success_threshold, 1) as u32,
            failure_threshold: pos(p.failure_threshold, 3) as u32,
        }
    }
}

/// Consecutive outcomes folded into a result, as upstream's worker does: the result flips to
/// success after `success_threshold` successes in a row and to failure after
/// `failure_threshold` failures in a row.
#[derive(Clone, Debug, PartialEq)]
pub struct Tracker {
    pub result: bool,
    successes: u32,
    failures: u32,
    success_threshold: u32,
    failure_threshold: u32,
}

impl Tracker {
    /// Liveness starts as success (a container is alive until shown otherwise); readiness and
    /// startup start as failure.
    pub fn new(kind: Kind, t: &Timing) -> Tracker {
        Tracker {
            result: kind == Kind::Liveness,
            successes: 0,
            failures: 0,
            success_threshold: t.success_threshold,
            failure_threshold: t.failure_threshold,
        }
    }

    /// Whether the failures in a row reached the threshold (liveness and startup then kill;
    /// a startup probe's result is failure from the start, so the result alone cannot say).
    pub fn tripped(&self) -> bool {
        self.failures >= self.failure_threshold
    }

    /// Count one outcome; returns the (possibly new) result.
    pub fn observe(&mut self, ok: bool) -> bool {
        if ok {
            self.failures = 0;
            self.successes = self.successes.saturating_add(1);
            if self.successes >= self.success_threshold {
                self.result = true;
            }
        } else {
            self.successes = 0;
            self.failures = self.failures.saturating_add(1);
            if self.failures >= self.failure_threshold {
                self.result = false;
            }
        }
        self.result
    }
}

/// What one probe run needs to reach the container.
#[derive(Clone)]
pub struct Target {
    pub rt: RuntimeServiceClient<Channel>,
    pub container_id: String,
    pub pod_ip: String,
    pub container: Container,
}

/// A failed handler or probe, with the message upstream's events carry.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Failure(pub String);

fn port_of(port: &IntOrString, c: &Container) -> Result<u16, Failure> {
    match port {
        IntOrString::Int(p) => u16::try_from(*p).map_err(|_| Failure(format!("invalid port {p}"))),
        IntOrString::String(name) => {
            if let Ok(p) = name.parse::<u16>() {
                return Ok(p);
            }
            c.ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .and_then(|p| u16::try_from(p.container_port).ok())
                .ok_or_else(|| Failure(format!("couldn't find port: {name} in {}", c.name)))
        }
    }
}

async fn run_exec(t: &Target, e: &ExecAction, timeout: Duration) -> Result<(), Failure> {
    let cmd = e.command.clone().unwrap_or_default();
    let mut rt = t.rt.clone();
    let call = rt.exec_sync(api::ExecSyncRequest {
        container_id: t.container_id.clone(),
        cmd: cmd.clone(),
        timeout: timeout.as_secs() as i64,
    });
    // The runtime enforces the timeout; ours is a backstop if it does not answer at all.
    let r = tokio::time::timeout(timeout + Duration::from_secs(1), call)
        .await
        .map_err(|_| Failure(format!("command {:?} timed out", cmd.join(" "))))?
        .map_err(|s| {
            if s.code() == tonic::Code::DeadlineExceeded {
                Failure(format!("command {:?} timed out", cmd.join(" ")))
            } else {
                Failure(s.message().to_string())
            }
        })?
        .into_inner();
    if r.exit_code == 0 {
        return Ok(());
    }
    let mut out = String::from_utf8_lossy(&r.stdout).into_owned();
    out.push_str(&String::from_utf8_lossy(&r.stderr));
    if out.trim().is_empty() {
        out = format!("command {:?} exited with {}", cmd.join(" "), r.exit_code);
    }
    Err(Failure(out))
}

async fn run_http(t: &Target, h: &HTTPGetAction, timeout: Duration) -> Result<(), Failure> {
    let host = h
        .host
        .clone()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| t.pod_ip.clone());
    let port = port_of(&h.port, &t.container)?;
    let scheme = h.scheme.as_deref().unwrap_or("HTTP").to_ascii_lowercase();
    let mut path = h.path.clone().unwrap_or_default();
    if !path.starts_with('/') {
        path.insert(0, '/');
    }
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let url = format!("{scheme}://{authority}{path}");
    let attempt = async {
        let stream = tokio::net::TcpStream::connect(&authority)
            .await
            .map_err(|e| Failure(format!("Get \"{url}\": dial tcp {authority}: {e}")))?;
        let mut sender = if scheme == "https" {
            let tls = crate::probe_net::insecure_tls()?
                .connect(crate::probe_net::server_name(&host)?, stream)
                .await
                .map_err(|e| Failure(format!("Get \"{url}\": {e}")))?;
            handshake(tls, &url).await?
        } else {
            handshake(stream, &url).await?
        };
        let mut req = http::Request::get(&path)
            .header(http::header::HOST, &authority)
            .header(http::header::USER_AGENT, "kube-probe/1.33")
            .header(http::header::ACCEPT, "*/*");
        for hd in h.http_headers.iter().flatten() {
            req = req.header(hd.name.as_str(), hd.value.as_str());
        }
        let req = req
            .body(Empty::<bytes::Bytes>::new())
            .map_err(|e| Failure(format!("Get \"{url}\": {e}")))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| Failure(format!("Get \"{url}\": {e}")))?;
        let code = resp.status().as_u16();
        if (200..400).contains(&code) {
            Ok(())
        } else {
            Err(Failure(format!(
                "HTTP probe failed with statuscode: {code}"
            )))
        }
    };
    tokio::time::timeout(timeout, attempt).await.map_err(|_| {
        Failure(format!(
            "Get \"{url}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
        ))
    })?
}

/// An HTTP/1 connection over `io`, its driver spawned.
async fn handshake<IO>(
    io: IO,
    url: &str,
) -> Result<hyper::client::conn::http1::SendRequest<Empty<bytes::Bytes>>, Failure>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io))
        .await
        .map_err(|e| Failure(format!("Get \"{url}\": {e}")))?;
    tokio::spawn(conn);
    Ok(sender)
}

async fn run_tcp(t: &Target, s: &TCPSocketAction, timeout: Duration) -> Result<(), Failure> {
    let host = s
        .host
        .clone()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| t.pod_ip.clone());
    let port = port_of(&s.port, &t.container)?;
    let addr = format!("{host}:{port}");
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(&addr)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(Failure(format!("dial tcp {addr}: {e}"))),
        Err(_) => Err(Failure(format!("dial tcp {addr}: i/o timeout"))),
    }
}

/// Run one probe once.
pub async fn run_probe(t: &Target, p: &Probe, timeout: Duration) -> Result<(), Failure> {
    if let Some(e) = &p.exec {
        run_exec(t, e, timeout).await
    } else if let Some(h) = &p.http_get {
        run_http(t, h, timeout).await
    } else if let Some(s) = &p.tcp_socket {
        run_tcp(t, s, timeout).await
    } else if let Some(g) = &p.grpc {
        crate::probe_net::grpc(&t.pod_ip, g, timeout).await
    } else {
        Err(Failure("probe has no handler".into()))
    }
}

/// Run a lifecycle hook (postStart/preStop) with at most `limit`.
pub async fn run_hook(t: &Target, h: &LifecycleHandler, limit: Duration) -> Result<(), Failure> {
    let work = async {
        if let Some(e) = &h.exec {
            run_exec(t, e, limit).await
        } else if let Some(g) = &h.http_get {
            run_http(t, g, limit).await
        } else if let Some(s) = &h.tcp_socket {
            run_tcp(t, s, limit).await
        } else if let Some(s) = &h.sleep {
            tokio::time::sleep(Duration::from_secs(s.seconds.max(0) as u64)).await;
            Ok(())
        } else {
            Err(Failure("hook has no handler".into()))
        }
    };
    tokio::time::timeout(limit, work)
        .await
        .map_err(|_| Failure(format!("hook timed out after {}s", limit.as_secs())))?
}

/// Stop a container as the kubelet does: its preStop hook first (within the grace period;
/// `FailedPreStopHook` on failure), then StopContainer with what is left of the grace period
/// (SIGTERM, then SIGKILL).
pub async fn stop_container(
    rt: &RuntimeServiceClient<Channel>,
    recorder: &Recorder,
    pod: Option<&Pod>,
    container_id: &str,
    name: &str,
    grace: i64,
) -> Result<(), tonic::Status> {
    let grace = Duration::from_secs(grace.max(0) as u64);
    let began = std::time::Instant::now();
    let spec = pod.and_then(|p| {
        p.spec
            .as_ref()?
            .containers
            .iter()
            .chain(p.spec.as_ref()?.init_containers.iter().flatten())
            .find(|c| c.name == name)
            .cloned()
    });
    if let (Some(pod), Some(c)) = (pod, spec)
        && let Some(pre_stop) = c.lifecycle.as_ref().and_then(|l| l.pre_stop.clone())
        && !grace.is_zero()
    {
        let target = Target {
            rt: rt.clone(),
            container_id: container_id.to_string(),
            pod_ip: pod
                .status
                .as_ref()
                .and_then(|s| s.pod_ip.clone())
                .unwrap_or_default(),
            container: c,
        };
        if let Err(f) = run_hook(&target, &pre_stop, grace).await {
            tracing::info!(container = %name, error = %f, "preStop hook failed");
            recorder.pod(
                pod,
                Some(name),
                events::WARNING,
                "FailedPreStopHook",
                format!("PreStopHook failed: {f}"),
            );
        }
    }
    let left = grace.saturating_sub(began.elapsed());
    rt.clone()
        .stop_container(api::StopContainerRequest {
            container_id: container_id.to_string(),
            timeout: left.as_secs() as i64,
        })
        .await
        .map(|_| ())
}

/// Results of one container's probes, written by its workers, read by the pod sync.
#[derive(Default)]
struct Shared {
    started: AtomicBool,
    ready: AtomicBool,
    /// Liveness or startup failed: the container must be restarted.
    failed: AtomicBool,
    /// Which probe failed, for the `Killing` event.
    failed_kind: std::sync::Mutex<Option<Kind>>,
}

struct ContainerProbes {
    shared: Arc<Shared>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    killed: bool,
}

impl Drop for ContainerProbes {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The probe workers of one pod, keyed by container ID (a restarted container is a new ID
/// and gets fresh workers, as upstream's are keyed by container).
#[derive(Default)]
pub struct Prober {
    containers: HashMap<String, ContainerProbes>,
}

impl Prober {
    /// Start the workers of a running container if not yet started.
    pub fn ensure(&mut self, recorder: &Recorder, pod: &Arc<Pod>, target: Target) {
        if self.containers.contains_key(&target.container_id) {
            return;
        }
        let c = &target.container;
        let (startup, liveness, readiness) = (
            c.startup_probe.clone(),
            c.liveness_probe.clone(),
            c.readiness_probe.clone(),
        );
        let shared = Arc::new(Shared::default());
        shared.started.store(startup.is_none(), Ordering::Relaxed);
        shared.ready.store(readiness.is_none(), Ordering::Relaxed);
        let mut tasks = Vec::new();
        for (kind, probe) in [
            (Kind::Startup, &startup),
            (Kind::Liveness, &liveness),
            (Kind::Readiness, &readiness),
        ] {
            if let Some(p) = probe {
                tasks.push(tokio::spawn(worker(
                    kind,
                    p.clone(),
                    target.clone(),
                    shared.clone(),
                    recorder.clone(),
                    pod.clone(),
                )));
            }
        }
        self.containers.insert(
            target.container_id.clone(),
            ContainerProbes {
                shared,
                tasks,
                killed: false,
            },
        );
    }

    /// Drop the workers of containers that are no longer running.
    pub fn retain(&mut self, running: &HashSet<String>) {
        self.containers.retain(|id, _| running.contains(id));
    }

    /// Whether a running container counts as started (startup probe passed, or none).
    pub fn started(&self, id: &str) -> bool {
        self.containers
            .get(id)
            .is_some_and(|p| p.shared.started.load(Ordering::Relaxed))
    }

    /// Whether a running container is ready (started and readiness passed, or none).
    pub fn ready(&self, id: &str) -> bool {
        self.containers.get(id).is_some_and(|p| {
            p.shared.started.load(Ordering::Relaxed) && p.shared.ready.load(Ordering::Relaxed)
        })
    }

    /// A container whose liveness or startup probe failed and that is not being killed yet;
    /// marks it as being killed.
    pub fn take_failed(&mut self, id: &str) -> Option<Kind> {
        let p = self.containers.get_mut(id)?;
        if p.killed || !p.shared.failed.load(Ordering::Relaxed) {
            return None;
        }
        p.killed = true;
        *p.shared
            .failed_kind
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }
}

async fn worker(
    kind: Kind,
    probe: Probe,
    target: Target,
    shared: Arc<Shared>,
    recorder: Recorder,
    pod: Arc<Pod>,
) {
    let timing = Timing::of(&probe);
    let mut tracker = Tracker::new(kind, &timing);
    tokio::time::sleep(timing.initial_delay).await;
    loop {
        let started = shared.started.load(Ordering::Relaxed);
        // Liveness and readiness wait for the startup probe; the startup probe stops once
        // it has succeeded.
        let run = match kind {
            Kind::Startup => !started,
            _ => started,
        };
        if run {
            let outcome = run_probe(&target, &probe, timing.timeout).await;
            if let Err(f) = &outcome {
                tracing::debug!(container = %target.container.name, kind = kind.name(), error = %f, "probe failed");
                recorder.pod(
                    &pod,
                    Some(&target.container.name),
                    events::WARNING,
                    "Unhealthy",
                    format!("{} probe failed: {}", kind.name(), f.0),
                );
            }
            let result = tracker.observe(outcome.is_ok());
            match kind {
                Kind::Readiness => shared.ready.store(result, Ordering::Relaxed),
                Kind::Startup if result => shared.started.store(true, Ordering::Relaxed),
                Kind::Startup | Kind::Liveness if tracker.tripped() => {
                    *shared.failed_kind.lock().unwrap_or_else(|e| e.into_inner()) = Some(kind);
                    shared.failed.store(true, Ordering::Relaxed);
                    // On hold until the container is replaced (a new ID, new workers).
                    return;
                }
                _ => {}
            }
        }
        tokio::time::sleep(timing.period).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(success: Option<i32>, failure: Option<i32>) -> Probe {
        Probe {
            success_threshold: success,
            failure_threshold: failure,
            ..Probe::default()
        }
    }

    #[test]
    fn defaults_are_upstreams() {
        let t = Timing::of(&Probe::default());
        assert_eq!(t.initial_delay, Duration::ZERO);
        assert_eq!(t.period, Duration::from_secs(10));
        assert_eq!(t.timeout, Duration::from_secs(1));
        assert_eq!((t.success_threshold, t.failure_threshold), (1, 3));
        let zero = Timing::of(&Probe {
            period_seconds: Some(0),
            timeout_seconds: Some(0),
            ..Probe::default()
        });
        assert_eq!(zero.period, Duration::from_secs(1));
        assert_eq!(zero.timeout, Duration::from_secs(1));
    }

    #[test]
    fn readiness_needs_consecutive_successes_and_failures() {
        let t = Timing::of(&probe(Some(2), Some(3)));
        let mut r = Tracker::new(Kind::Readiness, &t);
        assert!(!r.result, "not ready before any probe");
        assert!(!r.observe(true));
        assert!(r.observe(true), "ready after two successes in a row");
        assert!(r.observe(false));
        assert!(r.observe(false));
        assert!(r.observe(true), "a success resets the failure count");
        assert!(r.observe(false));
        assert!(r.observe(false));
        assert!(!r.observe(false), "unready after three failures in a row");
        assert!(!r.observe(true), "one success is not enough again");
        assert!(r.observe(true));
    }

    #[test]
    fn liveness_starts_alive_and_fails_at_the_threshold() {
        let t = Timing::of(&probe(None, Some(2)));
        let mut l = Tracker::new(Kind::Liveness, &t);
        assert!(l.result);
        assert!(l.observe(false));
        assert!(!l.observe(false));
        assert!(l.tripped());
        let mut s = Tracker::new(Kind::Startup, &Timing::of(&probe(None, Some(3))));
        assert!(!s.result);
        assert!(!s.observe(false));
        assert!(
            !s.tripped(),
            "a startup failure below the threshold does not kill"
        );
        assert!(s.observe(true));
        assert!(!s.tripped());
    }

    #[test]
    fn named_ports_resolve_through_the_container() {
        let c: Container = serde_json::from_value(serde_json::json!({
            "name": "web", "ports": [{"name": "http", "containerPort": 8080}]
        }))
        .expect("test setup");
        assert_eq!(
            port_of(&IntOrString::String("http".into()), &c).expect("named port"),
            8080
        );
        assert_eq!(port_of(&IntOrString::Int(80), &c).expect("test setup"), 80);
        assert_eq!(
            port_of(&IntOrString::String("81".into()), &c).expect("test setup"),
            81
        );
        assert!(port_of(&IntOrString::String("nope".into()), &c).is_err());
    }

    #[tokio::test]
    async fn http_probe_success_range_and_tcp() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("test setup");
        let port = l.local_addr().expect("test setup").port();
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = l.accept().await else {
                    return;
                };
                let mut buf = vec![0u8; 4096];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                let code = if req.starts_with("GET /ok ") && req.contains("x-probe: yes") {
                    "302 Found"
                } else {
                    "503 Service Unavailable"
                };
                let _ = s
                    .write_all(format!("HTTP/1.1 {code}\r\ncontent-length: 0\r\n\r\n").as_bytes())
                    .await;
            }
        });
        let rt_channel =
            tonic::transport::Endpoint::from_static("http://127.0.0.1:1").connect_lazy();
        let target = Target {
            rt: RuntimeServiceClient::new(rt_channel),
            container_id: "x".into(),
            pod_ip: "127.0.0.1".into(),
            container: serde_json::from_value(serde_json::json!({
                "name": "web", "ports": [{"name": "http", "containerPort": port}]
            }))
            .expect("test setup"),
        };
        let get = |path: &str, header: bool| HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("http".into()),
            http_headers: header.then(|| {
                vec![k8s_openapi::api::core::v1::HTTPHeader {
                    name: "X-Probe".into(),
                    value: "yes".into(),
                }]
            }),
            ..HTTPGetAction::default()
        };
        let t = Duration::from_secs(2);
        run_http(&target, &get("/ok", true), t)
            .await
            .expect("test setup");
        let e = run_http(&target, &get("/ok", false), t)
            .await
            .expect_err("503 fails");
        assert_eq!(e.0, "HTTP probe failed with statuscode: 503");
        let tcp = TCPSocketAction {
            port: IntOrString::Int(port as i32),
            ..TCPSocketAction::default()
        };
        run_tcp(&target, &tcp, t).await.expect("test setup");
    }

    #[tokio::test]
    async fn https_probe_skips_certificate_verification() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let ck =
            rcgen::generate_simple_self_signed(vec!["somewhere.invalid".into()]).expect("cert");
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into());
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![ck.cert.der().clone()], key)
        .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = l.local_addr().expect("addr").port();
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                let Ok(mut tls) = acceptor.accept(s).await else {
                    continue;
                };
                let mut buf = vec![0u8; 4096];
                let n = tls.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                let code = if req.starts_with("GET /healthz ") {
                    "200 OK"
                } else {
                    "404 Not Found"
                };
                let _ = tls
                    .write_all(format!("HTTP/1.1 {code}\r\ncontent-length: 0\r\n\r\n").as_bytes())
                    .await;
                let _ = tls.shutdown().await;
            }
        });
        let target = Target {
            rt: RuntimeServiceClient::new(
                tonic::transport::Endpoint::from_static("http://127.0.0.1:1").connect_lazy(),
            ),
            container_id: "x".into(),
            pod_ip: "127.0.0.1".into(),
            container: Container::default(),
        };
        let get = |path: &str| HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::Int(i32::from(port)),
            scheme: Some("HTTPS".into()),
            ..HTTPGetAction::default()
        };
        let t = Duration::from_secs(2);
        run_http(&target, &get("/healthz"), t)
            .await
            .expect("a self-signed certificate is accepted");
        let e = run_http(&target, &get("/nope"), t)
            .await
            .expect_err("404 fails");
        assert_eq!(e.0, "HTTP probe failed with statuscode: 404");
        // A plain-HTTP client would not get a 200 from a TLS port.
        let mut plain = get("/healthz");
        plain.scheme = Some("HTTP".into());
        assert!(run_http(&target, &plain, t).await.is_err());
    }
}
