//! The streaming pod subresources (`pods/log`, `pods/exec`, `pods/attach`,
//! `pods/portforward`): the request goes to the node agent's streaming port (the Node's
//! InternalIP and `daemonEndpoints.kubeletEndpoint.Port`) over TLS with the API server's kubelet
//! client certificate, as kube-apiserver does. Upgrades (SPDY, WebSocket) are proxied byte for
//! byte; a log stream is passed through as it comes.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use serde_json::Value;

use crate::App;
use crate::error::ApiError;
use crate::request::{self, ApiPath};

type Result<T, E = ApiError> = std::result::Result<T, E>;

const STREAMING: [&str; 4] = ["log", "exec", "attach", "portforward"];

/// The options of `pods/log` kubelet understands; everything else stays here.
const LOG_PARAMS: [&str; 7] = [
    "follow",
    "previous",
    "timestamps",
    "tailLines",
    "limitBytes",
    "sinceSeconds",
    "sinceTime",
];

/// How long connecting to an agent may take.
const DIAL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Whether `path` is a pod's streaming subresource.
pub fn is_streaming(path: &str) -> bool {
    // Cheap checks first: this runs for every request.
    let last = path.rsplit('/').next().unwrap_or("");
    if !path.starts_with("/api/v1/namespaces/") || !STREAMING.contains(&last) {
        return false;
    }
    match request::parse_api_path(path) {
        Ok(ApiPath::Resource(rp)) => {
            rp.spec.resource == "pods"
                && rp.spec.group.is_empty()
                && rp
                    .subresource
                    .as_deref()
                    .is_some_and(|s| STREAMING.contains(&s))
        }
        _ => false,
    }
}

/// The container a request means, as upstream's `validateContainer`: the only container when
/// none is named, else the named one, which must exist in the pod.
pub fn container_of(pod: &Value, name: &str, requested: Option<&str>) -> Result<String> {
    let names = |key: &str| -> Vec<String> {
        pod["spec"][key]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["name"].as_str().map(str::to_string))
            .collect()
    };
    let containers = names("containers");
    match requested.filter(|c| !c.is_empty()) {
        None => match containers.as_slice() {
            [only] => Ok(only.clone()),
            [] => Err(ApiError::bad_request(format!(
                "a container name must be specified for pod {name}"
            ))),
            many => {
                let mut msg = format!(
                    "a container name must be specified for pod {name}, choose one of: [{}]",
                    many.join(" ")
                );
                let init = names("initContainers");
                if !init.is_empty() {
                    msg.push_str(&format!(
                        " or one of the init containers: [{}]",
                        init.join(" ")
                    ));
                }
                Err(ApiError::bad_request(msg))
            }
        },
        Some(c) => {
            let known = ["containers", "initContainers", "ephemeralContainers"]
                .iter()
                .any(|k| names(k).iter().any(|n| n == c));
            if known {
                Ok(c.to_string())
            } else {
                Err(ApiError::bad_request(format!(
                    "container {c} is not valid for pod {name}"
                )))
            }
        }
    }
}

/// The agent's `host:port` from the Node: its InternalIP (else its first address) and
/// `daemonEndpoints.kubeletEndpoint.Port` (default 10250).
pub fn agent_address(node: &Value) -> Option<String> {
    let addresses = node["status"]["addresses"].as_array()?;
    let ip = addresses
        .iter()
        .find(|a| a["type"] == "InternalIP")
        .or_else(|| addresses.first())
        .and_then(|a| a["address"].as_str())?;
    let port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
        .as_u64()
        .filter(|p| *p > 0 && *p <= u64::from(u16::MAX))
        .unwrap_or(10250);
    Some(if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    })
}

/// The path and query on the agent for subresource `sub` of `ns/name`.
pub fn agent_target(sub: &str, ns: &str, name: &str, container: &str, raw: Option<&str>) -> String {
    let (path, query) = match sub {
        "log" => (
            format!("/containerLogs/{ns}/{name}/{container}"),
            raw.unwrap_or("")
                .split('&')
                .filter(|p| {
                    let key = p.split_once('=').map(|(k, _)| k).unwrap_or(p);
                    LOG_PARAMS.contains(&key)
                })
                .collect::<Vec<_>>()
                .join("&"),
        ),
        "portforward" => (
            format!("/portForward/{ns}/{name}"),
            raw.unwrap_or("").to_string(),
        ),
        other => (
            format!("/{other}/{ns}/{name}/{container}"),
            raw.unwrap_or("").to_string(),
        ),
    };
    if query.is_empty() {
        path
    } else {
        format!("{path}?{query}")
    }
}

/// Serve one streaming request.
pub async fn handle(app: Arc<App>, req: Request) -> Result<Response> {
    let path = req.uri().path().to_string();
    let Ok(ApiPath::Resource(rp)) = request::parse_api_path(&path) else {
        return Err(ApiError::NoSuchPath);
    };
    let (Some(ns), Some(name), Some(sub)) = (rp.namespace, rp.name, rp.subresource) else {
        return Err(ApiError::NoSuchPath);
    };
    let method = req.method().clone();
    let allowed = if sub == "log" {
        method == http::Method::GET
    } else {
        method == http::Method::GET || method == http::Method::POST
    };
    if !allowed {
        return Err(ApiError::MethodNotAllowed);
    }
    let query = request::Query::parse(req.uri().query());
    let pod = app.objects.get(rp.spec, Some(&ns), &name).await?;
    let container = if sub == "portforward" {
        String::new()
    } else {
        container_of(&pod, &name, query.get("container"))?
    };
    let node_name = pod["spec"]["nodeName"].as_str().unwrap_or("");
    if node_name.is_empty() {
        if sub == "log" {
            // Upstream answers an unscheduled pod's log with an empty stream.
            return Ok(Response::new(Body::empty()));
        }
        return Err(ApiError::bad_request(format!(
            "pod {name} does not have a host assigned"
        )));
    }
    let node = app
        .objects
        .get(crate::spec_of("", "nodes"), None, node_name)
        .await?;
    let address = agent_address(&node).ok_or_else(|| {
        ApiError::bad_request(format!("node {node_name} has no address to reach it at"))
    })?;
    let target = agent_target(&sub, &ns, &name, &container, req.uri().query());
    let started = std::time::Instant::now();
    let (upgrade, protocols) = (
        header(&req, "upgrade"),
        format!(
            "{}{}",
            header(&req, "sec-websocket-protocol"),
            header(&req, "x-stream-protocol-version")
        ),
    );
    let tunnel = sub == "portforward"
        && upgrade.eq_ignore_ascii_case("websocket")
        && header(&req, "sec-websocket-protocol")
            .split(',')
            .any(|p| p == crate::wstunnel::PROTOCOL);
    let query_flag = |k: &str| query.bool(k).unwrap_or(false);
    let translate = (sub == "exec" || sub == "attach")
        && upgrade.eq_ignore_ascii_case("websocket")
        && query_flag("stdin")
        && header(&req, "sec-websocket-protocol")
            .split(',')
            .any(|p| p == crate::translate::V5);
    let mode = if tunnel {
        Mode::Tunnel
    } else if translate {
        Mode::Translate(crate::translate::Streams {
            stdin: true,
            stdout: query_flag("stdout"),
            stderr: query_flag("stderr"),
            tty: query_flag("tty"),
        })
    } else {
        Mode::Plain
    };
    let resp = forward(&app, &address, &target, req, mode).await;
    tracing::debug!(
        %sub,
        pod = %format!("{ns}/{name}"),
        node = %node_name,
        %address,
        %upgrade,
        %protocols,
        status = resp.as_ref().map(|r| r.status().as_u16()).unwrap_or_else(|e| e.code().as_u16()),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "proxied to node agent"
    );
    resp
}

fn header(req: &Request, name: &str) -> String {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .replace(' ', "")
}

async fn dial(
    app: &App,
    address: &str,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let unreachable = |e: String| ApiError::Internal(format!("error dialing backend: {e}"));
    let tcp = tokio::time::timeout(DIAL_TIMEOUT, tokio::net::TcpStream::connect(address))
        .await
        .map_err(|_| unreachable(format!("dial tcp {address}: i/o timeout")))?
        .map_err(|e| unreachable(format!("dial tcp {address}: {e}")))?;
    let _ = tcp.set_nodelay(true);
    let host = address
        .rsplit_once(':')
        .map(|(h, _)| h.trim_start_matches('[').trim_end_matches(']'))
        .unwrap_or(address);
    let server_name = rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| unreachable(format!("{host}: {e}")))?;
    tokio_rustls::TlsConnector::from(app.kubelet_tls.clone())
        .connect(server_name, tcp)
        .await
        .map_err(|e| unreachable(format!("TLS to {address}: {e}")))
}

/// Headers that belong to one hop or carry the caller's credentials.
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
            | "impersonate-user"
            | "impersonate-group"
    )
}

/// How a request reaches the agent.
#[derive(Debug, Clone, Copy)]
enum Mode {
    /// As it is; an upgrade is joined byte for byte.
    Plain,
    /// Port-forward's SPDY tunnelled in WebSocket, carried to the agent's SPDY (`wstunnel`).
    Tunnel,
    /// WebSocket v5 exec/attach with stdin, translated to SPDY v4 (`translate`).
    Translate(crate::translate::Streams),
}

/// Send `req` to the agent at `address`. In the tunnel and translate modes the client's
/// WebSocket is answered by the API server and the agent is asked for SPDY.
async fn forward(
    app: &App,
    address: &str,
    target: &str,
    mut req: Request,
    mode: Mode,
) -> Result<Response> {
    let tunnel = !matches!(mode, Mode::Plain);
    let ws_key = if tunnel {
        Some(
            req.headers()
                .get(header::SEC_WEBSOCKET_KEY)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
                .ok_or_else(|| ApiError::bad_request("missing Sec-WebSocket-Key"))?,
        )
    } else {
        None
    };
    let io = dial(app, address).await?;
    let downstream = hyper::upgrade::on(&mut req);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| ApiError::Internal(format!("error dialing backend: {e}")))?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    let method = if tunnel {
        http::Method::POST
    } else {
        req.method().clone()
    };
    let mut out = http::Request::builder().method(method).uri(target);
    for (k, v) in req.headers() {
        let websocket_only = tunnel
            && (k == header::UPGRADE
                || k == header::CONNECTION
                || k.as_str().starts_with("sec-websocket-"));
        if !hop_header(k) && !websocket_only {
            out = out.header(k, v);
        }
    }
    if tunnel {
        out = out
            .header(header::CONNECTION, "Upgrade")
            .header(header::UPGRADE, "SPDY/3.1")
            .header(
                "X-Stream-Protocol-Version",
                if matches!(mode, Mode::Translate(_)) {
                    "v4.channel.k8s.io"
                } else {
                    "portforward.k8s.io"
                },
            );
    }
    let out = out
        .header(header::HOST, address)
        .body(Empty::<Bytes>::new())
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let resp = sender
        .send_request(out)
        .await
        .map_err(|e| ApiError::Internal(format!("error from the node agent: {e}")))?;
    let status = resp.status();
    if status == StatusCode::SWITCHING_PROTOCOLS
        && let Some(key) = ws_key
    {
        let mut down = Response::new(Body::empty());
        *down.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = down.headers_mut();
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(match mode {
                Mode::Translate(_) => crate::translate::V5,
                _ => crate::wstunnel::PROTOCOL,
            }),
        );
        if let Ok(v) = HeaderValue::from_str(&crate::wstunnel::accept_key(&key)) {
            h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
        }
        let upstream = hyper::upgrade::on(resp);
        tokio::spawn(async move {
            let (Ok(a), Ok(b)) = (downstream.await, upstream.await) else {
                return;
            };
            match mode {
                Mode::Translate(streams) => {
                    crate::translate::run(TokioIo::new(a), TokioIo::new(b), streams).await;
                }
                _ => crate::wstunnel::relay(TokioIo::new(a), TokioIo::new(b)).await,
            }
        });
        return Ok(down);
    }
    if status == StatusCode::SWITCHING_PROTOCOLS {
        let mut down = Response::new(Body::empty());
        *down.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        for (k, v) in resp.headers() {
            down.headers_mut().append(k, v.clone());
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
    if status.is_success() {
        let (parts, body) = resp.into_parts();
        let mut r = Response::new(Body::new(body));
        *r.status_mut() = parts.status;
        if let Some(ct) = parts.headers.get(header::CONTENT_TYPE) {
            r.headers_mut().insert(header::CONTENT_TYPE, ct.clone());
        } else {
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        }
        return Ok(r);
    }
    // The agent answers errors in plain text; clients get a Status, as upstream's
    // GenericHttpResponseChecker makes one.
    let body = http_body_util::Limited::new(resp.into_body(), 64 * 1024)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&body).trim().to_string();
    Err(match status {
        StatusCode::BAD_REQUEST => ApiError::BadRequest(text),
        _ => ApiError::Internal(text),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn streaming_paths() {
        assert!(is_streaming("/api/v1/namespaces/default/pods/p/log"));
        assert!(is_streaming("/api/v1/namespaces/default/pods/p/exec"));
        assert!(is_streaming("/api/v1/namespaces/default/pods/p/attach"));
        assert!(is_streaming(
            "/api/v1/namespaces/default/pods/p/portforward"
        ));
        assert!(!is_streaming("/api/v1/namespaces/default/pods/p/status"));
        assert!(!is_streaming("/api/v1/namespaces/default/pods/p"));
        assert!(!is_streaming("/api/v1/namespaces/default/services/s/proxy"));
    }

    #[test]
    fn container_resolution_follows_upstream() {
        let one = json!({"spec": {"containers": [{"name": "a"}]}});
        assert_eq!(container_of(&one, "p", None).expect("test value"), "a");
        assert_eq!(container_of(&one, "p", Some("")).expect("test value"), "a");
        assert_eq!(container_of(&one, "p", Some("a")).expect("test value"), "a");
        let e = container_of(&one, "p", Some("b")).expect_err("test error");
        assert_eq!(e.status()["message"], "container b is not valid for pod p");
        assert_eq!(e.status()["reason"], "BadRequest");
        let two = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}],
                                   "initContainers": [{"name": "i"}]}});
        let e = container_of(&two, "p", None).expect_err("test error");
        assert_eq!(
            e.status()["message"],
            "a container name must be specified for pod p, choose one of: [a b] or one of the init containers: [i]"
        );
        assert_eq!(container_of(&two, "p", Some("i")).expect("test value"), "i");
    }

    #[test]
    fn agent_address_from_the_node() {
        let node = json!({"status": {
            "addresses": [{"type": "Hostname", "address": "n1"}, {"type": "InternalIP", "address": "10.0.0.5"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 12345}}}});
        assert_eq!(agent_address(&node).expect("test value"), "10.0.0.5:12345");
        let v6 = json!({"status": {"addresses": [{"type": "InternalIP", "address": "fd00::1"}]}});
        assert_eq!(agent_address(&v6).expect("test value"), "[fd00::1]:10250");
        assert!(agent_address(&json!({})).is_none());
    }

    #[test]
    fn agent_targets() {
        assert_eq!(
            agent_target(
                "log",
                "ns",
                "p",
                "c",
                Some(
                    "container=c&follow=true&tailLines=5&pretty=true&sinceTime=2024-01-01T00%3A00%3A00Z"
                )
            ),
            "/containerLogs/ns/p/c?follow=true&tailLines=5&sinceTime=2024-01-01T00%3A00%3A00Z"
        );
        assert_eq!(
            agent_target("log", "ns", "p", "c", None),
            "/containerLogs/ns/p/c"
        );
        assert_eq!(
            agent_target("exec", "ns", "p", "c", Some("command=sh&stdout=true")),
            "/exec/ns/p/c?command=sh&stdout=true"
        );
        assert_eq!(
            agent_target("portforward", "ns", "p", "", Some("ports=80")),
            "/portForward/ns/p?ports=80"
        );
    }
}
