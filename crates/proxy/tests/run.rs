//! Host test (root): `skiff_proxy::run` follows Services and EndpointSlices from an API (a small
//! in-process fake answering list and watch) and keeps the nft table of a scratch network
//! namespace in step: full sync at start, then incremental changes.

use std::collections::HashMap;
use std::convert::Infallible;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use skiff_proxy::model::{NodeInfo, SERVICE_NAME_LABEL};
use skiff_proxy::{Applier, ProxyConfig};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

const SERVICES: &str = "/api/v1/services";
const SLICES: &str = "/apis/discovery.k8s.io/v1/endpointslices";

/// The fake API: the current objects of each collection and a feed of watch events.
#[derive(Clone)]
struct FakeApi {
    objects: Arc<Mutex<HashMap<&'static str, Vec<serde_json::Value>>>>,
    feeds: Arc<HashMap<&'static str, broadcast::Sender<Bytes>>>,
    rv: Arc<Mutex<u64>>,
}

impl FakeApi {
    fn new(services: Vec<Service>, slices: Vec<EndpointSlice>) -> FakeApi {
        let mut objects = HashMap::new();
        objects.insert(SERVICES, services.iter().map(json).collect());
        objects.insert(SLICES, slices.iter().map(json).collect());
        let feeds = [SERVICES, SLICES]
            .into_iter()
            .map(|p| (p, broadcast::channel(64).0))
            .collect();
        FakeApi {
            objects: Arc::new(Mutex::new(objects)),
            feeds: Arc::new(feeds),
            rv: Arc::new(Mutex::new(10)),
        }
    }

    /// Send a watch event (ADDED, MODIFIED, DELETED) for `obj` in collection `path`.
    fn event(&self, path: &'static str, kind: &str, mut obj: serde_json::Value) {
        let rv = {
            let mut rv = self.rv.lock().expect("rv lock");
            *rv += 1;
            *rv
        };
        obj["metadata"]["resourceVersion"] = rv.to_string().into();
        let line = serde_json::json!({ "type": kind, "object": obj }).to_string() + "\n";
        let _ = self.feeds[path].send(Bytes::from(line));
    }

    fn respond(
        &self,
        req: http::Request<kube::client::Body>,
    ) -> http::Response<BoxBody<Bytes, Infallible>> {
        let path = req.uri().path().to_string();
        let watch = req.uri().query().unwrap_or("").contains("watch=true");
        let Some((key, list_kind)) = [(SERVICES, "ServiceList"), (SLICES, "EndpointSliceList")]
            .into_iter()
            .find(|(p, _)| *p == path)
        else {
            return http::Response::builder()
                .status(404)
                .body(Full::new(Bytes::from_static(b"{}")).boxed())
                .expect("response");
        };
        if watch {
            let rx = self.feeds[key].subscribe();
            let stream = tokio_stream::wrappers::BroadcastStream::new(rx)
                .filter_map(|b| async move { b.ok().map(|b| Ok(http_body::Frame::data(b))) });
            return http::Response::builder()
                .header("content-type", "application/json")
                .body(BodyExt::boxed(StreamBody::new(stream)))
                .expect("response");
        }
        let items = self.objects.lock().expect("objects lock")[key].clone();
        let rv = *self.rv.lock().expect("rv lock");
        let body = serde_json::json!({
            "kind": list_kind,
            "apiVersion": if key == SERVICES { "v1" } else { "discovery.k8s.io/v1" },
            "metadata": { "resourceVersion": rv.to_string() },
            "items": items,
        });
        http::Response::builder()
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_string())).boxed())
            .expect("response")
    }
}

fn json<T: serde::Serialize>(v: &T) -> serde_json::Value {
    let mut v = serde_json::to_value(v).expect("serializable");
    v["metadata"]["resourceVersion"] = "1".into();
    v
}

fn service() -> Service {
    Service {
        metadata: ObjectMeta {
            namespace: Some("default".into()),
            name: Some("web".into()),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            cluster_ip: Some("10.96.0.20".into()),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: 80,
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        status: None,
    }
}

fn slice(ips: &[&str]) -> EndpointSlice {
    EndpointSlice {
        metadata: ObjectMeta {
            namespace: Some("default".into()),
            name: Some("web-abc".into()),
            labels: Some([(SERVICE_NAME_LABEL.to_string(), "web".to_string())].into()),
            ..Default::default()
        },
        address_type: "IPv4".into(),
        ports: Some(vec![EndpointPort {
            name: Some("http".into()),
            port: Some(8080),
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
        endpoints: ips
            .iter()
            .map(|ip| Endpoint {
                addresses: vec![ip.to_string()],
                conditions: Some(EndpointConditions {
                    ready: Some(true),
                    serving: Some(true),
                    terminating: Some(false),
                }),
                ..Default::default()
            })
            .collect(),
    }
}

struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn can_run() -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    let nft = Command::new("sh")
        .args(["-c", "command -v nft && command -v nsenter"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    root && nft
}

async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for: {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_syncs_at_start_and_follows_watch_events_incrementally() {
    if !can_run() {
        eprintln!(
            "SKIPPED run_syncs_at_start_and_follows_watch_events_incrementally: needs root, nft and nsenter"
        );
        return;
    }
    let ns = Netns(format!("skp{}-run", std::process::id()));
    assert!(
        Command::new("ip")
            .args(["netns", "add", &ns.0])
            .status()
            .expect("ip")
            .success()
    );
    let applier = Applier::in_netns(format!("/run/netns/{}", ns.0));
    // A chain from an "earlier run": the first full sync must remove it.
    applier
        .apply("add table ip skiff-proxy\nadd chain ip skiff-proxy endpoint-STALE-old/gone/tcp/__10.0.0.1/80\n")
        .expect("seed stale chain");

    let api = FakeApi::new(
        vec![service()],
        vec![slice(&["10.244.1.10", "10.244.1.11"])],
    );
    let svc_api = api.clone();
    let fake = tower::service_fn(move |req| {
        let resp = svc_api.respond(req);
        async move { Ok::<_, Infallible>(resp) }
    });
    let client = kube::Client::new(fake, "default");
    let config = ProxyConfig {
        applier: applier.clone(),
        ..ProxyConfig::new(NodeInfo {
            node_name: "node-a".into(),
            node_ips: vec!["192.168.77.1".parse().expect("ip")],
            cluster_cidr: Some("10.244.0.0/16".parse().expect("cidr")),
        })
    };
    let shutdown = CancellationToken::new();
    let proxy = tokio::spawn(skiff_proxy::run(client, config, shutdown.clone()));

    let table = || applier.list_table().unwrap_or_default();
    eventually("full sync programs both endpoints", || {
        let t = table();
        t.contains("__10.244.1.10/8080") && t.contains("__10.244.1.11/8080")
    })
    .await;
    assert!(
        !table().contains("STALE"),
        "the full sync removes chains of an earlier run"
    );

    // A chain the proxy does not know: an incremental sync leaves it, a full sync would not.
    applier
        .apply("add chain ip skiff-proxy MARKER\n")
        .expect("add marker chain");

    // One endpoint leaves: an incremental sync deletes its chain and keeps the other.
    api.event(SLICES, "MODIFIED", json(&slice(&["10.244.1.10"])));
    eventually("removed endpoint's chain is gone", || {
        !table().contains("__10.244.1.11/8080")
    })
    .await;
    assert!(table().contains("__10.244.1.10/8080"));
    assert!(
        table().contains("chain MARKER"),
        "the change was applied incrementally"
    );

    // The Service goes away: its chains go, the table stays.
    api.event(SERVICES, "DELETED", json(&service()));
    eventually("service chains are gone", || {
        let t = table();
        t.contains("chain services") && !t.contains("default/web/")
    })
    .await;

    shutdown.cancel();
    let result = tokio::time::timeout(Duration::from_secs(10), proxy)
        .await
        .expect("run stops on shutdown")
        .expect("run task");
    assert!(result.is_ok(), "{result:?}");
    // Rules stay after shutdown so traffic survives an agent restart.
    assert!(table().contains("chain services"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_apply_is_retried_as_a_full_sync() {
    if !can_run() {
        eprintln!("SKIPPED a_failed_apply_is_retried_as_a_full_sync: needs root, nft and nsenter");
        return;
    }
    let ns = Netns(format!("skp{}-retry", std::process::id()));
    assert!(
        Command::new("ip")
            .args(["netns", "add", &ns.0])
            .status()
            .expect("ip")
            .success()
    );
    // An nft wrapper that fails (and counts its failures) while the `broken` file exists.
    let dir = tempfile::tempdir().expect("tempdir");
    let broken = dir.path().join("broken");
    let failures = dir.path().join("failures");
    let wrapper = dir.path().join("nft");
    std::fs::write(&broken, "").expect("broken marker");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nif [ -e {b} ]; then echo x >> {f}; echo 'Error: injected' >&2; exit 1; fi\nexec nft \"$@\"\n",
            b = broken.display(),
            f = failures.display()
        ),
    )
    .expect("wrapper");
    assert!(
        Command::new("chmod")
            .arg("755")
            .arg(&wrapper)
            .status()
            .expect("chmod")
            .success()
    );
    let applier = Applier {
        nft: wrapper,
        netns: Some(format!("/run/netns/{}", ns.0).into()),
    };
    let api = FakeApi::new(vec![service()], vec![slice(&["10.244.1.10"])]);
    let svc_api = api.clone();
    let fake = tower::service_fn(move |req| {
        let resp = svc_api.respond(req);
        async move { Ok::<_, Infallible>(resp) }
    });
    let config = ProxyConfig {
        applier: applier.clone(),
        retry: Duration::from_millis(100),
        ..ProxyConfig::new(NodeInfo::default())
    };
    let shutdown = CancellationToken::new();
    let proxy = tokio::spawn(skiff_proxy::run(
        kube::Client::new(fake, "default"),
        config,
        shutdown.clone(),
    ));
    // Watch events cause at most two attempts (Notify keeps one permit); more are retries.
    eventually("four failed applies", || {
        std::fs::read_to_string(&failures).is_ok_and(|f| f.lines().count() >= 4)
    })
    .await;
    assert!(applier.list_table().is_none());
    std::fs::remove_file(&broken).expect("repair nft");
    eventually("a retry programs the table", || {
        applier
            .list_table()
            .is_some_and(|t| t.contains("__10.244.1.10/8080"))
    })
    .await;
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), proxy).await;
}
