//! The agent's streaming port (kubelet's 10250): container logs, exec, attach and port-forward
//! for the API server, over HTTPS that requires a client certificate signed by the cluster CA.
//! Exec, attach and port-forward are CRI calls whose answer is a URL on containerd's streaming
//! server; the upgraded connection is proxied to it byte for byte, as kubelet does by default.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Empty, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::Agent;
use crate::cri::api;
use crate::logs::{self, LogOptions};
use crate::pods::{LABEL_CONTAINER_NAME, LABEL_POD_NAME, LABEL_POD_NAMESPACE, LABEL_POD_UID};

/// The response body of every handler.
pub type Body = BoxBody<Bytes, std::io::Error>;

/// Errors of setting up the streaming port.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the kubeconfig has no cluster CA, so client certificates cannot be verified")]
    NoCa,
    #[error("serving certificate: {0}")]
    Cert(#[from] rcgen::Error),
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("client certificate verifier: {0}")]
    Verifier(String),
    #[error("listening on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// The TLS configuration of the port: a self-signed serving certificate for `sans` (as kubelet
/// makes without `--tls-cert-file`) and client certificates required, verified against `ca`
/// (DER certificates of the cluster CA).
pub fn tls_config(ca: &[Vec<u8>], sans: Vec<String>) -> Result<rustls::ServerConfig, Error> {
    if ca.is_empty() {
        return Err(Error::NoCa);
    }
    let ck = rcgen::generate_simple_self_signed(sans)?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
    let mut roots = rustls::RootCertStore::empty();
    for der in ca {
        roots.add(CertificateDer::from(der.clone()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .map_err(|e| Error::Verifier(e.to_string()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![ck.cert.der().clone()], key)?;
    // Upgrades (SPDY, WebSocket) need HTTP/1.1.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Bind the port; binding happens before the Node is registered so the advertised port works.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, Error> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind { addr, source })
}

/// Serve the port until `shutdown`.
pub async fn serve(
    agent: Arc<Agent>,
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    shutdown: CancellationToken,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "streaming port: accept failed");
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let agent = agent.clone();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(
                std::time::Duration::from_secs(10),
                acceptor.accept(tcp),
            )
            .await
            {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "streaming port: TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            // Only the API server may use this port: its kubelet client certificate is the one
            // identity allowed; other certificates of the cluster CA get 403, as from a
            // kubelet whose authorizer denies them.
            let user = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| client_identity(c.as_ref()));
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let agent = agent.clone();
                let user = user.clone();
                async move {
                    let resp = match user.as_deref() {
                        Some(APISERVER_CLIENT_CN) => handle(agent, req).await,
                        other => {
                            tracing::info!(%peer, user = other.unwrap_or(""), path = %req.uri().path(), "streaming port: forbidden");
                            forbidden(other.unwrap_or(""), req.method())
                        }
                    };
                    Ok::<_, std::convert::Infallible>(resp)
                }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(tls), service)
                .await;
        });
    }
}

/// The common name the API server's kubelet client certificate carries (apiserver `pki.rs`).
pub const APISERVER_CLIENT_CN: &str = "kube-apiserver-kubelet-client";

/// The user a client certificate names: its subject's common name.
pub fn client_identity(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert
        .subject()
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    Some(cn)
}

/// The kubelet's answer to a user its authorizer denies.
pub fn forbidden(user: &str, method: &http::Method) -> Response<Body> {
    let verb = match *method {
        http::Method::GET | http::Method::HEAD => "get",
        http::Method::POST => "create",
        http::Method::PUT => "update",
        http::Method::PATCH => "patch",
        http::Method::DELETE => "delete",
        _ => "proxy",
    };
    text(
        StatusCode::FORBIDDEN,
        format!("Forbidden (user={user}, verb={verb}, resource=nodes, subresource=proxy)"),
    )
}

fn body_of(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|e| match e {}).boxed()
}

fn text(code: StatusCode, msg: impl Into<String>) -> Response<Body> {
    let mut r = Response::new(body_of(msg.into()));
    *r.status_mut() = code;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Decode `a=b&c=d` (percent and `+` decoding), keeping repeated keys in order.
pub fn query_pairs(raw: Option<&str>) -> Vec<(String, String)> {
    fn decode(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < b.len() => {
                    match std::str::from_utf8(&b[i + 1..i + 3])
                        .ok()
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                    {
                        Some(v) => {
                            out.push(v);
                            i += 2;
                        }
                        None => out.push(b'%'),
                    }
                }
                c => out.push(c),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    raw.unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

fn flag(pairs: &[(String, String)], key: &str) -> bool {
    pairs
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .is_some_and(|(_, v)| matches!(v.as_str(), "true" | "True" | "1" | "t" | "T" | "TRUE"))
}

async fn handle(agent: Arc<Agent>, req: Request<Incoming>) -> Response<Body> {
    let started = std::time::Instant::now();
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let pairs = query_pairs(req.uri().query());
    let segs: Vec<String> = path
        .trim_start_matches('/')
        .split('/')
        .map(str::to_string)
        .collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let resp = match (method.clone(), segs.as_slice()) {
        (Method::GET, ["healthz"]) => text(StatusCode::OK, "ok"),
        (Method::GET, ["containerLogs", ns, pod, c]) => container_logs(&agent, ns, pod, c, &pairs)
            .await
            .unwrap_or_else(|e| e),
        (Method::GET | Method::POST, ["exec", ns, pod, c] | ["exec", ns, pod, _, c]) => {
            exec_or_attach(&agent, true, ns, pod, c, &pairs, req).await
        }
        (Method::GET | Method::POST, ["attach", ns, pod, c] | ["attach", ns, pod, _, c]) => {
            exec_or_attach(&agent, false, ns, pod, c, &pairs, req).await
        }
        (Method::GET | Method::POST, ["portForward", ns, pod] | ["portForward", ns, pod, _]) => {
            port_forward(&agent, ns, pod, &pairs, req).await
        }
        _ => text(StatusCode::NOT_FOUND, "404 page not found"),
    };
    tracing::debug!(%method, %path, status = resp.status().as_u16(), elapsed_ms = started.elapsed().as_millis() as u64, "streaming request");
    resp
}

/// The containers named `container` of the pod `ns/pod`, newest attempt first. When the pod was
/// recreated under the same name, only the newest pod's containers count.
async fn containers(
    agent: &Agent,
    ns: &str,
    pod: &str,
    container: &str,
) -> Result<Vec<api::Container>, Response<Body>> {
    let labels: HashMap<String, String> = [
        (LABEL_POD_NAMESPACE, ns),
        (LABEL_POD_NAME, pod),
        (LABEL_CONTAINER_NAME, container),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let mut list = agent
        .cri
        .rt
        .clone()
        .list_containers(api::ListContainersRequest {
            filter: Some(api::ContainerFilter {
                label_selector: labels,
                ..Default::default()
            }),
        })
        .await
        .map_err(|s| text(StatusCode::INTERNAL_SERVER_ERROR, s.message().to_string()))?
        .into_inner()
        .containers;
    let newest_uid = list
        .iter()
        .max_by_key(|c| c.created_at)
        .and_then(|c| c.labels.get(LABEL_POD_UID).cloned());
    list.retain(|c| c.labels.get(LABEL_POD_UID) == newest_uid.as_ref());
    list.sort_by_key(|c| {
        std::cmp::Reverse((
            c.metadata.as_ref().map(|m| m.attempt).unwrap_or(0),
            c.created_at,
        ))
    });
    Ok(list)
}

fn is_running(c: &api::Container) -> bool {
    c.state == api::ContainerState::ContainerRunning as i32
}

async fn container_logs(
    agent: &Arc<Agent>,
    ns: &str,
    pod: &str,
    name: &str,
    pairs: &[(String, String)],
) -> Result<Response<Body>, Response<Body>> {
    let opts = LogOptions::from_query(pairs, jiff::Timestamp::now())
        .map_err(|e| text(StatusCode::BAD_REQUEST, e))?;
    let list = containers(agent, ns, pod, name).await?;
    let chosen = if opts.previous {
        list.get(1).ok_or_else(|| {
            text(
                StatusCode::BAD_REQUEST,
                format!("previous terminated container \"{name}\" in pod \"{pod}\" not found"),
            )
        })?
    } else {
        match list.first() {
            Some(c) => c,
            None => {
                let reason = waiting_reason(agent, ns, pod, name).await;
                return Err(text(
                    StatusCode::BAD_REQUEST,
                    format!("container \"{name}\" in pod \"{pod}\" is waiting to start: {reason}"),
                ));
            }
        }
    };
    let status = agent
        .cri
        .rt
        .clone()
        .container_status(api::ContainerStatusRequest {
            container_id: chosen.id.clone(),
            verbose: false,
        })
        .await
        .map_err(|s| text(StatusCode::INTERNAL_SERVER_ERROR, s.message().to_string()))?
        .into_inner()
        .status
        .ok_or_else(|| {
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "container status missing",
            )
        })?;
    let path = std::path::PathBuf::from(&status.log_path);
    let id = chosen.id.clone();
    let cri = agent.cri.clone();
    let running: logs::Running = Box::new(move || {
        let mut rt = cri.rt.clone();
        let id = id.clone();
        Box::pin(async move {
            rt.container_status(api::ContainerStatusRequest {
                container_id: id,
                verbose: false,
            })
            .await
            .ok()
            .and_then(|s| s.into_inner().status)
            .is_some_and(|s| s.state == api::ContainerState::ContainerRunning as i32)
        })
    });
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move { logs::stream(&path, opts, running, tx).await });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item.map(Frame::data), rx))
    });
    let mut r = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    Ok(r)
}

/// The waiting reason the pod's status gives `container` (upstream's log error names it).
async fn waiting_reason(agent: &Agent, ns: &str, pod: &str, container: &str) -> String {
    let pods: kube::Api<k8s_openapi::api::core::v1::Pod> =
        kube::Api::namespaced(agent.client.clone(), ns);
    let status = pods.get_status(pod).await.ok().and_then(|p| p.status);
    let reason = status.and_then(|s| {
        s.container_statuses
            .into_iter()
            .flatten()
            .chain(s.init_container_statuses.into_iter().flatten())
            .find(|c| c.name == container)
            .and_then(|c| c.state)
            .and_then(|st| st.waiting)
            .and_then(|w| w.reason)
    });
    match reason.as_deref() {
        Some("ErrImagePull") => "image can't be pulled".into(),
        Some("ImagePullBackOff") => "trying and failing to pull image".into(),
        Some(r) => r.to_string(),
        None => "ContainerCreating".into(),
    }
}

async fn exec_or_attach(
    agent: &Arc<Agent>,
    exec: bool,
    ns: &str,
    pod: &str,
    name: &str,
    pairs: &[(String, String)],
    req: Request<Incoming>,
) -> Response<Body> {
    let list = match containers(agent, ns, pod, name).await {
        Ok(l) => l,
        Err(r) => return r,
    };
    let Some(c) = list.first().filter(|c| is_running(c)) else {
        return text(
            StatusCode::NOT_FOUND,
            format!("container not found (\"{name}\")"),
        );
    };
    let (stdin, stdout, stderr, tty) = (
        flag(pairs, "stdin"),
        flag(pairs, "stdout"),
        flag(pairs, "stderr"),
        flag(pairs, "tty"),
    );
    let plan = ws_plan(req.headers(), stdin);
    if let WsPlan::Refuse(why) = &plan {
        return text(StatusCode::BAD_REQUEST, why.clone());
    }
    let mut rt = agent.cri.rt.clone();
    let url = if exec {
        let cmd: Vec<String> = pairs
            .iter()
            .filter(|(k, _)| k == "command")
            .map(|(_, v)| v.clone())
            .collect();
        if cmd.is_empty() {
            return text(
                StatusCode::BAD_REQUEST,
                "you must specify at least 1 command",
            );
        }
        rt.exec(api::ExecRequest {
            container_id: c.id.clone(),
            cmd,
            tty,
            stdin,
            stdout,
            // With a TTY stderr is merged into stdout, as upstream.
            stderr: stderr && !tty,
        })
        .await
        .map(|r| r.into_inner().url)
    } else {
        rt.attach(api::AttachRequest {
            container_id: c.id.clone(),
            stdin,
            tty,
            stdout,
            stderr: stderr && !tty,
        })
        .await
        .map(|r| r.into_inner().url)
    };
    match url {
        Ok(url) => proxy(&url, req, plan == WsPlan::SwapV5).await,
        Err(s) => text(StatusCode::INTERNAL_SERVER_ERROR, s.message().to_string()),
    }
}

async fn port_forward(
    agent: &Arc<Agent>,
    ns: &str,
    pod: &str,
    pairs: &[(String, String)],
    req: Request<Incoming>,
) -> Response<Body> {
    let labels: HashMap<String, String> = [(LABEL_POD_NAMESPACE, ns), (LABEL_POD_NAME, pod)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut rt = agent.cri.rt.clone();
    let sandboxes = match rt
        .list_pod_sandbox(api::ListPodSandboxRequest {
            filter: Some(api::PodSandboxFilter {
                state: Some(api::PodSandboxStateValue {
                    state: api::PodSandboxState::SandboxReady as i32,
                }),
                label_selector: labels,
                ..Default::default()
            }),
        })
        .await
    {
        Ok(r) => r.into_inner().items,
        Err(s) => return text(StatusCode::INTERNAL_SERVER_ERROR, s.message().to_string()),
    };
    let Some(sandbox) = sandboxes.iter().max_by_key(|s| s.created_at) else {
        return text(
            StatusCode::NOT_FOUND,
            format!("pod not found (\"{pod}_{ns}\")"),
        );
    };
    // The WebSocket form names its ports in the query; SPDY names them per stream.
    let ports: Vec<i32> = pairs
        .iter()
        .filter(|(k, _)| k == "ports")
        .flat_map(|(_, v)| {
            v.split(',')
                .filter_map(|p| p.trim().parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect();
    match rt
        .port_forward(api::PortForwardRequest {
            pod_sandbox_id: sandbox.id.clone(),
            port: ports,
        })
        .await
    {
        Ok(r) => proxy(&r.into_inner().url, req, false).await,
        Err(s) => text(StatusCode::INTERNAL_SERVER_ERROR, s.message().to_string()),
    }
}

/// Proxy `req` to the runtime's streaming `url` (plain HTTP on the node).
async fn proxy(url: &str, req: Request<Incoming>, swap_v5: bool) -> Response<Body> {
    let uri: http::Uri = match url.parse() {
        Ok(u) => u,
        Err(e) => {
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("runtime URL {url}: {e}"),
            );
        }
    };
    let Some(authority) = uri.authority().map(|a| a.as_str().to_string()) else {
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("runtime URL {url} has no host"),
        );
    };
    let mut target = uri.path().to_string();
    match (uri.query(), req.uri().query()) {
        (Some(q), _) | (None, Some(q)) => {
            target.push('?');
            target.push_str(q);
        }
        _ => {}
    }
    let tcp = match tokio::net::TcpStream::connect(&authority).await {
        Ok(t) => t,
        Err(e) => {
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("connecting to the runtime's streaming server {authority}: {e}"),
            );
        }
    };
    let _ = tcp.set_nodelay(true);
    match forward(TokioIo::new(tcp), &authority, &target, req, swap_v5).await {
        Ok(r) => r,
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

const V4: &str = "v4.channel.k8s.io";
const V5: &str = "v5.channel.k8s.io";
/// The WebSocket subprotocols of exec and attach that containerd's streaming server speaks.
const RUNTIME_WS: [&str; 4] = [
    V4,
    "v4.base64.channel.k8s.io",
    "base64.channel.k8s.io",
    "channel.k8s.io",
];

/// How a WebSocket exec or attach reaches the runtime.
#[derive(Debug, PartialEq)]
pub enum WsPlan {
    /// Not a WebSocket, or one the runtime speaks: proxied as it is.
    Pass,
    /// `v5.channel.k8s.io` without stdin: v5 differs from v4 only in the message that closes
    /// stdin, so the runtime is asked for v4 and the client told v5; the frames are the same.
    SwapV5,
    /// `v5.channel.k8s.io` with stdin: closing stdin cannot be said in v4, so the upgrade is
    /// refused and kubectl falls back to SPDY.
    Refuse(String),
}

/// Decide how to serve an exec/attach request with `headers`.
pub fn ws_plan(headers: &http::HeaderMap, stdin: bool) -> WsPlan {
    let websocket = headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if !websocket {
        return WsPlan::Pass;
    }
    let offered: Vec<String> = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_string())
        .collect();
    if offered.iter().any(|p| RUNTIME_WS.contains(&p.as_str())) {
        return WsPlan::Pass;
    }
    if offered.iter().any(|p| p == V5) {
        if stdin {
            return WsPlan::Refuse(format!(
                "{V5} with stdin is not supported by the container runtime's streaming server \
                 (it cannot close stdin); use SPDY/3.1"
            ));
        }
        return WsPlan::SwapV5;
    }
    WsPlan::Pass
}

/// Headers not passed on: they belong to one hop, or carry credentials of the caller.
fn hop_header(name: &header::HeaderName) -> bool {
    matches!(
        name.as_str(),
        "host"
            | "content-length"
            | "transfer-encoding"
            | "authorization"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authorization"
            | "te"
            | "trailer"
    )
}

/// Send `req` (headers only: streaming requests have no body) over `io` to `target` and answer
/// with the upstream's response. A 101 answer joins the two upgraded connections and copies
/// bytes both ways until either side closes.
pub async fn forward<IO>(
    io: IO,
    host: &str,
    target: &str,
    mut req: Request<Incoming>,
    swap_v5: bool,
) -> Result<Response<Body>, String>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let downstream = hyper::upgrade::on(&mut req);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("streaming server handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    let mut out = Request::builder().method(req.method().clone()).uri(target);
    for (k, v) in req.headers() {
        if hop_header(k) || (swap_v5 && k == header::SEC_WEBSOCKET_PROTOCOL) {
            continue;
        }
        out = out.header(k, v);
    }
    if swap_v5 {
        out = out.header(header::SEC_WEBSOCKET_PROTOCOL, V4);
    }
    let out = out
        .header(header::HOST, host)
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let resp = sender
        .send_request(out)
        .await
        .map_err(|e| format!("streaming server request: {e}"))?;
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        let mut down = Response::new(Empty::new().map_err(|e| match e {}).boxed());
        *down.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        for (k, v) in resp.headers() {
            down.headers_mut().append(k, v.clone());
        }
        if swap_v5 {
            down.headers_mut()
                .insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(V5));
        }
        let upstream = hyper::upgrade::on(resp);
        tokio::spawn(async move {
            let (Ok(a), Ok(b)) = (downstream.await, upstream.await) else {
                return;
            };
            let mut a = TokioIo::new(a);
            let mut b = TokioIo::new(b);
            let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
        });
        return Ok(down);
    }
    let (parts, body) = resp.into_parts();
    Ok(Response::from_parts(
        parts,
        body.map_err(std::io::Error::other).boxed(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_pairs_decode_and_keep_repeats() {
        let p = query_pairs(Some(
            "command=sh&command=-c&command=echo+hi%3B+exit+3&stdout=true&sinceTime=2024-01-01T00%3A00%3A00Z&x",
        ));
        let cmds: Vec<&str> = p
            .iter()
            .filter(|(k, _)| k == "command")
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(cmds, ["sh", "-c", "echo hi; exit 3"]);
        assert!(flag(&p, "stdout"));
        assert!(!flag(&p, "stdin"));
        assert!(p.contains(&("sinceTime".into(), "2024-01-01T00:00:00Z".into())));
        assert!(p.contains(&("x".into(), String::new())));
        assert_eq!(
            query_pairs(Some("a=%zz&b=%4")),
            [("a".into(), "%zz".into()), ("b".into(), "%4".into())]
        );
        assert!(query_pairs(None).is_empty());
    }

    #[test]
    fn websocket_plans() {
        let h = |pairs: &[(&str, &str)]| {
            let mut m = http::HeaderMap::new();
            for (k, v) in pairs {
                m.append(
                    http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                    HeaderValue::from_str(v).expect("value"),
                );
            }
            m
        };
        let v5 = h(&[
            ("upgrade", "websocket"),
            ("sec-websocket-protocol", "v5.channel.k8s.io"),
        ]);
        assert_eq!(ws_plan(&v5, false), WsPlan::SwapV5);
        assert!(matches!(ws_plan(&v5, true), WsPlan::Refuse(_)));
        let v4 = h(&[
            ("upgrade", "WebSocket"),
            (
                "sec-websocket-protocol",
                "v4.channel.k8s.io, channel.k8s.io",
            ),
        ]);
        assert_eq!(ws_plan(&v4, true), WsPlan::Pass);
        let both = h(&[
            ("upgrade", "websocket"),
            (
                "sec-websocket-protocol",
                "v5.channel.k8s.io,v4.channel.k8s.io",
            ),
        ]);
        assert_eq!(ws_plan(&both, true), WsPlan::Pass);
        let spdy = h(&[("upgrade", "SPDY/3.1")]);
        assert_eq!(ws_plan(&spdy, true), WsPlan::Pass);
    }

    #[test]
    fn tls_needs_a_ca() {
        assert!(matches!(
            tls_config(&[], vec!["n".into()]),
            Err(Error::NoCa)
        ));
    }

    /// A CA and client certificates it signs, as the API server's pki does.
    fn pki(
        names: &[&str],
    ) -> (
        Vec<u8>,
        Vec<(CertificateDer<'static>, PrivateKeyDer<'static>)>,
    ) {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
            KeyPair,
        };
        let ca_key = KeyPair::generate().expect("key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, "skiff-ca");
        let ca_cert = ca.self_signed(&ca_key).expect("ca");
        let ca_der = ca_cert.der().to_vec();
        let issuer = Issuer::from_ca_cert_pem(&ca_cert.pem(), ca_key).expect("issuer");
        let clients = names
            .iter()
            .map(|cn| {
                let key = KeyPair::generate().expect("key");
                let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
                p.distinguished_name.push(DnType::CommonName, *cn);
                p.distinguished_name
                    .push(DnType::OrganizationName, "system:masters");
                p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
                let cert = p.signed_by(&key, &issuer).expect("cert");
                (
                    cert.der().clone(),
                    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
                )
            })
            .collect();
        (ca_der, clients)
    }

    /// GET `path` over TLS with the client certificate; returns the status code.
    async fn get_as(
        port: u16,
        cert: (CertificateDer<'static>, PrivateKeyDer<'static>),
        path: &str,
    ) -> u16 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        #[derive(Debug)]
        struct AnyServer(Arc<rustls::crypto::CryptoProvider>);
        impl rustls::client::danger::ServerCertVerifier for AnyServer {
            fn verify_server_cert(
                &self,
                _: &CertificateDer<'_>,
                _: &[CertificateDer<'_>],
                _: &rustls::pki_types::ServerName<'_>,
                _: &[u8],
                _: rustls::pki_types::UnixTime,
            ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
                Ok(rustls::client::danger::ServerCertVerified::assertion())
            }
            fn verify_tls12_signature(
                &self,
                _: &[u8],
                _: &CertificateDer<'_>,
                _: &rustls::DigitallySignedStruct,
            ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error>
            {
                Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
            }
            fn verify_tls13_signature(
                &self,
                _: &[u8],
                _: &CertificateDer<'_>,
                _: &rustls::DigitallySignedStruct,
            ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error>
            {
                Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
            }
            fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
                self.0.signature_verification_algorithms.supported_schemes()
            }
        }
        let config = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyServer(provider)))
            .with_client_auth_cert(vec![cert.0], cert.1)
            .expect("client config");
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(
                rustls::pki_types::ServerName::try_from("localhost").expect("name"),
                tcp,
            )
            .await
            .expect("handshake");
        tls.write_all(
            format!("GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .expect("write");
        let mut out = Vec::new();
        let _ = tls.read_to_end(&mut out).await;
        let head = String::from_utf8_lossy(&out).to_string();
        head.split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0)
    }

    #[tokio::test]
    async fn only_the_api_servers_client_certificate_is_served() {
        let (ca, mut clients) = pki(&["kube-apiserver-kubelet-client", "admin", "system:node:n2"]);
        let h = crate::testing::Harness::new().await;
        let config = tls_config(&[ca], vec!["localhost".into()]).expect("tls");
        let listener = bind("127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let shutdown = CancellationToken::new();
        tokio::spawn(serve(
            Arc::new(h.agent),
            listener,
            Arc::new(config),
            shutdown.clone(),
        ));
        let node = clients.pop().expect("node cert");
        let admin = clients.pop().expect("admin cert");
        let apiserver = clients.pop().expect("apiserver cert");
        // The API server reaches the handlers (an unknown path is theirs to 404).
        assert_eq!(get_as(port, apiserver, "/nothing-here").await, 404);
        assert_eq!(get_as(port, admin, "/containerLogs/default/p/c").await, 403);
        assert_eq!(get_as(port, node, "/containerLogs/default/p/c").await, 403);
        shutdown.cancel();
    }

    #[test]
    fn forbidden_reads_as_the_kubelets() {
        let r = forbidden("admin", &http::Method::POST);
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
    }
}
