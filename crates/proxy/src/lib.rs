//! Skiff's Service proxy, modelled on kube-proxy's nftables mode (DESIGN.md §7).
//!
//! `model` turns Services and EndpointSlices into a desired rule model (no IO), `script` renders
//! a full sync or the diff between two models as one nft transaction, `tracker` keeps per-Service
//! fragments so a change is rebuilt and diffed alone, `apply` runs the script (in this
//! or another network namespace), and `run` keeps a node's rules in step with the API.

pub mod apply;
pub mod model;
pub mod script;
pub mod tracker;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub use apply::{Applier, ApplyError};
pub use model::{Cidr, NodeInfo, Ruleset};

/// How the proxy runs on one node.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// The node's name, addresses and cluster CIDR.
    pub node: NodeInfo,
    /// Where the rules go (this netns by default).
    pub applier: Applier,
    /// Changes arriving within this window are applied together (a Deployment rollout touches
    /// many slices at once).
    pub debounce: Duration,
    /// After a failed apply, wait this long and then do a full sync.
    pub retry: Duration,
}

impl ProxyConfig {
    /// Defaults for `node`: 20 ms debounce, 1 s retry, rules in this netns.
    pub fn new(node: NodeInfo) -> ProxyConfig {
        ProxyConfig {
            node,
            applier: Applier::default(),
            debounce: Duration::from_millis(20),
            retry: Duration::from_secs(1),
        }
    }
}

/// Why the proxy stopped before shutdown.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("watch of {0} ended")]
    WatchEnded(&'static str),
}

/// Keep one reflector's cache filled and poke `notify` on every change, until `shutdown`.
async fn reflect<K>(
    api: kube::Api<K>,
    writer: reflector::store::Writer<K>,
    notify: Arc<Notify>,
    shutdown: CancellationToken,
) where
    K: kube::Resource
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Default,
{
    let kind = K::kind(&K::DynamicType::default()).to_string();
    let stream =
        reflector::reflector(writer, watcher(api, watcher::Config::default())).default_backoff();
    let mut stream = std::pin::pin!(stream);
    loop {
        let ev = tokio::select! {
            e = stream.next() => e,
            _ = shutdown.cancelled() => return,
        };
        match ev {
            Some(Ok(watcher::Event::Init)) | Some(Ok(watcher::Event::InitApply(_))) => {}
            Some(Ok(_)) => notify.notify_one(),
            Some(Err(e)) => tracing::warn!(kind = %kind, error = %e, "watch failed; retrying"),
            None => return,
        }
    }
}

/// Program Services on this node until `shutdown`: a full sync once both caches are filled,
/// then one incremental transaction per debounced burst of changes. The rules stay in place
/// when this returns, so traffic keeps flowing across an agent restart; the next start's full
/// sync replaces them.
pub async fn run(
    client: kube::Client,
    config: ProxyConfig,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let notify = Arc::new(Notify::new());
    let svc_writer = reflector::store::Writer::<Service>::default();
    let services: Store<Service> = svc_writer.as_reader();
    let slice_writer = reflector::store::Writer::<EndpointSlice>::default();
    let slices: Store<EndpointSlice> = slice_writer.as_reader();
    let tasks = [
        tokio::spawn(reflect(
            kube::Api::<Service>::all(client.clone()),
            svc_writer,
            notify.clone(),
            shutdown.clone(),
        )),
        tokio::spawn(reflect(
            kube::Api::<EndpointSlice>::all(client),
            slice_writer,
            notify.clone(),
            shutdown.clone(),
        )),
    ];
    let ready = async {
        services
            .wait_until_ready()
            .await
            .map_err(|_| Error::WatchEnded("services"))?;
        slices
            .wait_until_ready()
            .await
            .map_err(|_| Error::WatchEnded("endpointslices"))
    };
    tokio::select! {
        r = ready => r?,
        _ = shutdown.cancelled() => return Ok(()),
    }

    // Per-Service fragments: a change rebuilds and diffs only the Services it touched.
    let mut tracker = tracker::Tracker::default();
    let mut synced = false;
    loop {
        let started = Instant::now();
        let diff = tracker.update(&services.state(), &slices.state(), &config.node);
        let (kind, script) = if synced {
            ("incremental", diff)
        } else {
            ("full", script::full(&tracker.ruleset()))
        };
        let lines = script.lines().count();
        let applier = config.applier.clone();
        let result = tokio::task::spawn_blocking(move || applier.apply(&script)).await;
        match result {
            Ok(Ok(())) if lines == 0 => {
                tracing::debug!(sync = kind, "service rules already up to date");
            }
            Ok(Ok(())) => {
                tracing::info!(
                    sync = kind,
                    lines,
                    chains = tracker.chain_count(),
                    duration_ms = started.elapsed().as_secs_f64() * 1000.0,
                    "service rules synced"
                );
                synced = true;
            }
            Ok(Err(e)) => {
                tracing::warn!(sync = kind, error = %e, "service rules sync failed; full sync next");
                synced = false;
            }
            Err(e) => {
                tracing::warn!(error = %e, "service rules sync task failed; full sync next");
                synced = false;
            }
        }
        if !synced {
            let notify = notify.clone();
            let retry = config.retry;
            tokio::spawn(async move {
                tokio::time::sleep(retry).await;
                notify.notify_one();
            });
        }
        tokio::select! {
            _ = notify.notified() => {}
            _ = shutdown.cancelled() => break,
        }
        tokio::select! {
            _ = tokio::time::sleep(config.debounce) => {}
            _ = shutdown.cancelled() => break,
        }
    }
    for t in tasks {
        let _ = t.await;
    }
    Ok(())
}
