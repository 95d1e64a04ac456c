//! The Kubernetes API server of Skiff (DESIGN.md §3): HTTPS with client-certificate
//! authentication, discovery and OpenAPI, the REST verbs on every registered resource, a watch
//! cache over the store, and the server's own objects (default namespaces, the `kubernetes`
//! Service) and lifecycles (graceful deletion, namespace termination).

// ApiError carries a whole Status (causes included); it is built once per failed request, so its
// size is not worth boxing.
#![allow(clippy::result_large_err)]

pub mod admission;
pub mod cluster_ca;
pub mod compaction;
pub mod discovery;
pub mod error;
pub mod handlers;
pub mod health;
pub mod join;
pub mod lifecycle;
pub mod objects;
pub mod pki;
pub mod proxy;
pub mod rawjson;
pub mod request;
pub mod translate;
pub mod watch_cache;
pub mod wstunnel;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use skiff_api::registry::{self, ResourceSpec};
use skiff_store::Store;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::error::ApiError;
use crate::handlers::json_response;
use crate::objects::Objects;
use crate::request::{ApiPath, Query};
use crate::watch_cache::WatchCache;

/// How to run the API server.
#[derive(Debug, Clone)]
pub struct Config {
    /// The server's data directory (`<data-dir>/server`).
    pub data_dir: PathBuf,
    /// Address to listen on.
    pub bind_address: std::net::IpAddr,
    /// HTTPS port.
    pub port: u16,
    /// Where to write the admin kubeconfig.
    pub kubeconfig_path: PathBuf,
    /// Extra names for the serving certificate.
    pub tls_sans: Vec<String>,
    /// How often store history is compacted.
    pub compaction_interval: std::time::Duration,
}

/// Why the API server stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Certificates could not be set up.
    #[error("PKI: {0}")]
    Pki(#[from] pki::Error),
    /// The join secret could not be set up.
    #[error("join token: {0}")]
    Join(#[from] join::Error),
    /// The cluster CA could not be read from or published to the datastore.
    #[error("cluster CA: {0}")]
    ClusterCa(#[from] cluster_ca::Error),
    /// The listener could not bind.
    #[error("listening on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Creating the built-in objects failed.
    #[error("bootstrap: {0}")]
    Bootstrap(ApiError),
}

/// Shared state of all handlers.
pub struct App {
    /// Objects over the store.
    pub objects: Objects,
    /// The watch cache.
    pub watch: WatchCache,
    /// Serializes Service IP and port allocation.
    pub allocation: tokio::sync::Mutex<()>,
    /// `host:port` clients reach this server at.
    pub server_address: String,
    /// Stops streams on shutdown.
    pub shutdown: CancellationToken,
    /// Admits nodes that present the join token.
    pub join: join::Joiner,
    /// TLS client configuration for the node agents' streaming ports.
    pub kubelet_tls: Arc<rustls::ClientConfig>,
    reaper: tokio::sync::Notify,
}

impl App {
    /// Ask the lifecycle loop to look for deletions that are due.
    pub fn wake_reaper(&self) {
        self.reaper.notify_one();
    }
}

/// The registry entry for a core or grouped resource that is known to exist.
pub fn spec_of(group: &str, resource: &str) -> &'static ResourceSpec {
    registry::RESOURCES
        .iter()
        .find(|s| s.group == group && s.resource == resource)
        .unwrap_or(&registry::RESOURCES[0])
}

/// Whether a request came with valid credentials.
#[derive(Debug, Clone, Copy)]
struct Authenticated(bool);

/// A running API server's handle.
pub struct Server {
    /// The bound address.
    pub local_addr: SocketAddr,
    /// Shared state (for in-process components).
    pub app: Arc<App>,
}

/// Start the API server; it runs until `shutdown` is cancelled, with its tasks on `tasks`.
pub async fn start(
    config: Config,
    store: Arc<dyn Store>,
    shutdown: CancellationToken,
    tasks: &TaskTracker,
) -> Result<Server, Error> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let pki = cluster_ca::load(&store, &config.data_dir.join("tls"), &config.tls_sans).await?;
    let tls = Arc::new(pki.server_config()?);
    let joiner = join::Joiner::load(
        &store,
        &config.data_dir,
        &config.data_dir.join("tls"),
        &pki.ca_cert_pem,
    )
    .await?;
    let kubelet_tls = Arc::new(pki.kubelet_client_config()?);
    let addr = SocketAddr::new(config.bind_address, config.port);
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind { addr, source })?;
    let local_addr = listener
        .local_addr()
        .map_err(|source| Error::Bind { addr, source })?;
    let host = if config.bind_address.is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        config.bind_address.to_string()
    };
    let server_url = format!(
        "https://{}",
        SocketAddr::new(
            host.parse().unwrap_or(config.bind_address),
            local_addr.port()
        )
    );
    pki::write_secret_file(&config.kubeconfig_path, &pki.admin_kubeconfig(&server_url))?;

    let app = Arc::new(App {
        objects: Objects::new(store.clone()),
        watch: WatchCache::new(store.clone(), shutdown.clone()),
        allocation: tokio::sync::Mutex::new(()),
        server_address: format!("{host}:{}", local_addr.port()),
        shutdown: shutdown.clone(),
        join: joiner,
        kubelet_tls,
        reaper: tokio::sync::Notify::new(),
    });
    // The OpenAPI catalog (field validation, /openapi/v3) is built on first use: it holds about
    // 35 MiB, which an idle server does not need.
    lifecycle::bootstrap(&app, &host, local_addr.port())
        .await
        .map_err(Error::Bootstrap)?;
    tasks.spawn(lifecycle::run(app.clone(), shutdown.clone()));
    tasks.spawn(compaction::run(
        store,
        config.compaction_interval,
        shutdown.clone(),
    ));
    tasks.spawn(accept_loop(
        listener,
        tls,
        app.clone(),
        shutdown,
        tasks.clone(),
    ));
    tracing::info!(%local_addr, kubeconfig = %config.kubeconfig_path.display(), "API server listening");
    Ok(Server { local_addr, app })
}

async fn accept_loop(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Arc<App>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let app = app.clone();
        let shutdown = shutdown.clone();
        tasks.spawn(async move {
            let stream = match tokio::time::timeout(
                std::time::Duration::from_secs(10),
                acceptor.accept(tcp),
            )
            .await
            {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            // rustls verified any certificate the client offered against our CA.
            let authenticated = stream
                .get_ref()
                .1
                .peer_certificates()
                .is_some_and(|c| !c.is_empty());
            let service =
                hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
                    let app = app.clone();
                    req.extensions_mut().insert(Authenticated(authenticated));
                    async move {
                        Ok::<_, std::convert::Infallible>(dispatch(app, req.map(Body::new)).await)
                    }
                });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), conn).await;
                }
            }
        });
    }
}

fn text(code: StatusCode, body: &'static str) -> Response {
    (code, [("content-type", "text/plain; charset=utf-8")], body).into_response()
}

/// `POST /skiff/v1/node-credentials` with the join token as bearer and `{"nodeName": …}`:
/// a client certificate for `system:node:<name>` and the CA, as PEM in JSON.
fn node_credentials(app: &App, bearer: &str, body: &[u8]) -> Result<Response, ApiError> {
    if !app.join.admits(bearer) {
        return Err(ApiError::Unauthorized);
    }
    let request: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the body is not JSON: {e}")))?;
    let name = request["nodeName"].as_str().unwrap_or("");
    let problems = skiff_api::validation::is_dns1123_subdomain(name);
    if name.is_empty() || !problems.is_empty() {
        return Err(ApiError::bad_request(format!(
            "nodeName {name:?} is not a valid node name: {}",
            if name.is_empty() {
                "it is required".to_string()
            } else {
                problems.join("; ")
            }
        )));
    }
    let (cert, key) = app
        .join
        .node_credentials(name)
        .map_err(|e| ApiError::Internal(format!("issuing node credentials: {e}")))?;
    tracing::info!(node = name, "issued node credentials to a joining node");
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({
            "caCert": app.join.ca_cert_pem(),
            "clientCert": cert,
            "clientKey": key,
        }),
    ))
}

fn is_public(path: &str) -> bool {
    matches!(
        path,
        "/version"
            | "/version/"
            | "/healthz"
            | "/livez"
            | "/readyz"
            | "/cacerts"
            | "/skiff/v1/node-credentials"
    ) || path.starts_with("/healthz/")
        || path.starts_with("/livez/")
        || path.starts_with("/readyz/")
}

/// Route one request.
pub async fn dispatch(app: Arc<App>, req: Request) -> Response {
    let started = std::time::Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let resp = match route(app, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    tracing::debug!(%method, %path, status = resp.status().as_u16(), elapsed_ms = started.elapsed().as_millis() as u64, "request");
    resp
}

async fn route(app: Arc<App>, req: Request) -> Result<Response, ApiError> {
    let path = req.uri().path().to_string();
    let authenticated = req.extensions().get::<Authenticated>().is_none_or(|a| a.0);
    let method = req.method().clone();
    let query = Query::parse(req.uri().query());
    if proxy::is_streaming(&path) {
        // Streams to the node agent keep the request as it is: upgrades need its connection.
        if !authenticated {
            return Err(ApiError::Unauthorized);
        }
        return proxy::handle(app, req).await;
    }
    let headers = req.headers().clone();
    // The body is read (bounded) before any answer: an HTTP/2 stream answered while its body is
    // still unread gets reset, and some clients then lose the answer.
    let body = read_body(req).await?;
    if !authenticated && !is_public(&path) {
        return Err(ApiError::Unauthorized);
    }
    let if_none_match = headers
        .get("if-none-match")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let accept = headers
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    match path.as_str() {
        "/version" | "/version/" => {
            return Ok(json_response(StatusCode::OK, &discovery::version()));
        }
        "/livez" => return Ok(text(StatusCode::OK, "ok")),
        "/healthz" | "/readyz" | "/healthz/etcd" | "/readyz/etcd" | "/livez/etcd" => {
            return Ok(health::check(&app, &path, query.get("verbose").is_some()).await);
        }
        "/cacerts" if method == Method::GET => {
            return Ok((
                StatusCode::OK,
                [("content-type", "application/x-pem-file")],
                app.join.ca_cert_pem().to_string(),
            )
                .into_response());
        }
        "/skiff/v1/node-credentials" if method == Method::POST => {
            let bearer = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .unwrap_or("");
            return node_credentials(&app, bearer, &body);
        }
        "/skiff/datastore" if method == Method::GET => {
            return Ok(health::datastore(&app).await);
        }
        "/openapi/v3" | "/openapi/v3/" => {
            return Ok(json_response(
                StatusCode::OK,
                &skiff_api::openapi::v3_index(&[]),
            ));
        }
        "/metrics" => return Ok(text(StatusCode::OK, "# skiff metrics\n")),
        _ => {}
    }
    if path.starts_with("/healthz/") || path.starts_with("/livez/") || path.starts_with("/readyz/")
    {
        return Ok(text(StatusCode::OK, "ok"));
    }
    if let Some(doc_path) = path.strip_prefix("/openapi/v3/") {
        return match skiff_api::openapi::v3_document(doc_path) {
            Some(doc) => Ok((
                StatusCode::OK,
                [("content-type", "application/json")],
                Bytes::from(doc.to_vec()),
            )
                .into_response()),
            None => Err(ApiError::NoSuchPath),
        };
    }
    if !(path == "/api"
        || path.starts_with("/api/")
        || path == "/apis"
        || path.starts_with("/apis/"))
    {
        return Err(ApiError::NoSuchPath);
    }
    let parsed = request::parse_api_path(&path)?;
    let discovery_only = |m: &Method| {
        if *m == Method::GET {
            Ok(())
        } else {
            Err(ApiError::MethodNotAllowed)
        }
    };
    match parsed {
        ApiPath::CoreVersions => {
            discovery_only(&method)?;
            if request::wants_aggregated_discovery(accept.as_deref()) {
                Ok(aggregated(
                    discovery::aggregated_core(),
                    if_none_match.as_deref(),
                ))
            } else {
                Ok(json_response(
                    StatusCode::OK,
                    &discovery::core_versions(&app.server_address),
                ))
            }
        }
        ApiPath::Groups => {
            discovery_only(&method)?;
            if request::wants_aggregated_discovery(accept.as_deref()) {
                Ok(aggregated(
                    discovery::aggregated_groups(),
                    if_none_match.as_deref(),
                ))
            } else {
                Ok(json_response(StatusCode::OK, &discovery::group_list()))
            }
        }
        ApiPath::Group(g) => {
            discovery_only(&method)?;
            discovery::group(&g)
                .map(|v| json_response(StatusCode::OK, &v))
                .ok_or(ApiError::NoSuchPath)
        }
        ApiPath::GroupVersion(g, v) => {
            discovery_only(&method)?;
            Ok(json_response(
                StatusCode::OK,
                &discovery::resource_list(&g, &v),
            ))
        }
        ApiPath::Resource(rp) => handlers::resource(app, method, rp, query, headers, body).await,
    }
}

/// An aggregated discovery document, with upstream's quoted ETag; a client that sends the same
/// ETag in `If-None-Match` gets 304 and no body.
fn aggregated(doc: Value, if_none_match: Option<&str>) -> Response {
    use std::hash::{Hash, Hasher};
    let body = doc.to_string();
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    body.hash(&mut hasher);
    let etag = format!("\"{:016X}\"", hasher.finish());
    let mut resp = if if_none_match == Some(etag.as_str()) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut r = (StatusCode::OK, body).into_response();
        r.headers_mut().insert(
            "content-type",
            HeaderValue::from_static(discovery::AGGREGATED_CONTENT_TYPE),
        );
        r
    };
    let headers = resp.headers_mut();
    headers.insert("vary", HeaderValue::from_static("Accept"));
    headers.insert("cache-control", HeaderValue::from_static("public"));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        headers.insert("etag", v);
    }
    resp
}

async fn read_body(req: Request) -> Result<Bytes, ApiError> {
    let limited = http_body_util::Limited::new(req.into_body(), request::MAX_BODY_BYTES);
    match limited.collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) => {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                Err(ApiError::TooLarge(request::MAX_BODY_BYTES))
            } else {
                Err(ApiError::bad_request(format!(
                    "reading the request body: {e}"
                )))
            }
        }
    }
}
