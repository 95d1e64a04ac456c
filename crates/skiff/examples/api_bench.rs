//! Throughput and latency of the API server over real HTTPS, side by side with the redb store
//! beneath it, plus the resident memory of an idle and of a loaded `skiff server` process.
//!
//! ```text
//! cargo build --release -p skiff        # the server binary, for the RSS section
//! cargo run --release -p skiff --example api_bench [-- --help]
//! ```
//!
//! Phases, in order (each on a fresh data directory):
//! 1. the raw store (`RedbStore` called directly): concurrent creates up to N objects, point
//!    reads, full ranges, ranges of one page;
//! 2. the API server started in this process (its own runtime, port 0, client certificate from
//!    the kubeconfig it writes): the same creates as ConfigMaps, GETs, full and paged LISTs, then
//!    watchers receiving the events of concurrent creates and patches;
//! 3. the release `skiff server` binary: RSS when idle, then after loading N objects into it.
//!
//! The output is a table for people and `name=value` lines for scripts.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Parser;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde::Deserialize;
use skiff_store::{RangeOptions, RedbStore, Store};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

const NAMESPACE: &str = "bench";
const PAGE: usize = 500;

/// API server and store benchmark (not a test): prints a table and `name=value` lines.
#[derive(Debug, Parser)]
struct Args {
    /// Objects stored before the read phases.
    #[arg(long, default_value_t = 10_000)]
    objects: usize,
    /// Approximate size of each stored object in bytes.
    #[arg(long, default_value_t = 1024)]
    object_bytes: usize,
    /// Requests in flight at once (store calls or HTTP requests).
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// HTTP/2 connections the in-flight requests share (ignored with --http1).
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Use one HTTP/1.1 keep-alive connection per in-flight request instead of HTTP/2.
    #[arg(long)]
    http1: bool,
    /// Single-object reads in the GET phase.
    #[arg(long, default_value_t = 20_000)]
    gets: usize,
    /// Full LISTs (and full paged walks) measured.
    #[arg(long, default_value_t = 20)]
    lists: usize,
    /// Concurrent watchers in the watch phase.
    #[arg(long, default_value_t = 10)]
    watchers: usize,
    /// Writes (half creates, half patches) while the watchers watch.
    #[arg(long, default_value_t = 4_000)]
    watch_writes: usize,
    /// The `skiff` binary for the RSS phase (default: `skiff` next to this example's directory,
    /// i.e. `target/release/skiff`).
    #[arg(long)]
    skiff_bin: Option<PathBuf>,
    /// Seconds the spawned server idles after bootstrap before its RSS is read.
    #[arg(long, default_value_t = 10)]
    idle_secs: u64,
    /// Skip the spawned-binary phase.
    #[arg(long)]
    skip_binary: bool,
    /// Parent of the temporary data directories (default: the system temp dir).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Datastores to measure side by side, comma-separated: `redb` (embedded), `etcd1` (a
    /// single etcd member) and `etcd3` (a three-member cluster), each etcd started by the
    /// benchmark on loopback from Debian's `etcd` binary.
    #[arg(long, value_delimiter = ',', default_value = "redb")]
    backends: Vec<String>,
}

#[path = "../../store/tests/etcd_support/mod.rs"]
mod etcd_support;

/// One datastore under test: the store itself and, for redb, its commit counters.
struct Backing {
    store: Arc<dyn Store>,
    redb: Option<Arc<RedbStore>>,
}

impl Backing {
    /// `backend` in `dir`; etcd stores get `key_prefix` so phases on one etcd do not collide.
    async fn open(
        backend: &str,
        dir: &Path,
        etcd: Option<&etcd_support::Etcd>,
        key_prefix: &str,
    ) -> anyhow::Result<Backing> {
        match etcd {
            None => {
                let redb = Arc::new(RedbStore::open(dir.join("state.redb"))?);
                Ok(Backing {
                    store: Arc::clone(&redb) as Arc<dyn Store>,
                    redb: Some(redb),
                })
            }
            Some(etcd) => {
                let mut options = skiff_store::EtcdOptions::new(etcd.endpoints());
                options.key_prefix = key_prefix.to_string();
                let store = skiff_store::EtcdStore::connect(options)
                    .await
                    .with_context(|| format!("connecting to {backend}"))?;
                Ok(Backing {
                    store: Arc::new(store),
                    redb: None,
                })
            }
        }
    }

    fn commits(&self) -> Option<u64> {
        self.redb.as_ref().map(|r| r.stats().commits)
    }
}

/// Row names of `backend`: bare for redb (as before), `etcd1.` etc. otherwise.
fn row_prefix(backend: &str) -> String {
    if backend == "redb" {
        String::new()
    } else {
        format!("{backend}.")
    }
}

// ---------------------------------------------------------------------------------------------
// Results

/// Latencies of one measured operation.
#[derive(Debug, Clone)]
struct Summary {
    count: usize,
    wall: Duration,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

impl Summary {
    fn of(mut samples: Vec<Duration>, wall: Duration) -> Summary {
        samples.sort_unstable();
        let pick = |p: f64| {
            if samples.is_empty() {
                return Duration::ZERO;
            }
            // Nearest rank: the smallest sample with at least p of the samples at or below it.
            let rank = (p * samples.len() as f64).ceil() as usize;
            samples[rank.clamp(1, samples.len()) - 1]
        };
        Summary {
            count: samples.len(),
            wall,
            p50: pick(0.50),
            p99: pick(0.99),
            max: samples.last().copied().unwrap_or_default(),
        }
    }

    fn per_sec(&self) -> f64 {
        self.count as f64 / self.wall.as_secs_f64().max(1e-9)
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[derive(Default)]
struct Report {
    rows: Vec<(String, Summary)>,
    scalars: Vec<(String, String)>,
}

impl Report {
    fn row(&mut self, name: &str, s: Summary) {
        eprintln!(
            "  {name:<24} n={:<6} {:>10.0}/s  p50 {:>8.3} ms  p99 {:>8.3} ms  max {:>8.3} ms",
            s.count,
            s.per_sec(),
            ms(s.p50),
            ms(s.p99),
            ms(s.max)
        );
        self.rows.push((name.to_string(), s));
    }

    fn scalar(&mut self, name: &str, value: impl std::fmt::Display) {
        eprintln!("  {name} = {value}");
        self.scalars.push((name.to_string(), value.to_string()));
    }

    fn get(&self, name: &str) -> Option<&Summary> {
        self.rows.iter().find(|(n, _)| n == name).map(|(_, s)| s)
    }

    fn scalar_value(&self, name: &str) -> Option<f64> {
        self.scalars
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.parse().ok())
    }

    fn print(&self, args: &Args) {
        let cell = |s: Option<&Summary>| match s {
            Some(s) => format!("{:>9.0} {:>9.3} {:>9.3}", s.per_sec(), ms(s.p50), ms(s.p99)),
            None => format!("{:>9} {:>9} {:>9}", "-", "-", "-"),
        };
        let n = args.objects;
        let lines: Vec<(String, &str, &str)> = vec![
            (
                format!("create to {n} ({} in flight)", args.concurrency),
                "store.create",
                "api.create",
            ),
            (
                format!("get one of {n} ({} in flight)", args.concurrency),
                "store.get",
                "api.get",
            ),
            (format!("list all {n}"), "store.list_all", "api.list_all"),
            (
                format!("list page of {PAGE}"),
                "store.list_page",
                "api.list_page",
            ),
            (
                format!("list all {n} in pages of {PAGE}"),
                "store.list_paged_walk",
                "api.list_paged_walk",
            ),
            (
                format!("watch: writes ({} in flight)", args.concurrency),
                "",
                "api.watch_write",
            ),
            (
                format!("watch: events to {} watchers", args.watchers),
                "",
                "api.watch_event",
            ),
            (
                "  (event latency from write sent)".to_string(),
                "",
                "api.watch_event_from_send",
            ),
            (
                format!("spawned binary: create to {n}"),
                "",
                "binary.create",
            ),
        ];
        for backend in &args.backends {
            let p = row_prefix(backend);
            let column = if backend == "redb" {
                "redb store (direct)".to_string()
            } else {
                format!("{backend} (direct client)")
            };
            println!();
            println!(
                "{:<34} | {:^29} | {:^29}",
                "operation",
                column,
                format!("API server on {backend}")
            );
            println!(
                "{:<34} | {:>9} {:>9} {:>9} | {:>9} {:>9} {:>9}",
                "", "ops/s", "p50 ms", "p99 ms", "ops/s", "p50 ms", "p99 ms"
            );
            println!("{}", "-".repeat(34 + 3 + 29 + 3 + 29));
            for (label, store, api) in &lines {
                let store = (!store.is_empty())
                    .then(|| self.get(&format!("{p}{store}")))
                    .flatten();
                let api = self.get(&format!("{p}{api}"));
                if store.is_none() && api.is_none() {
                    continue;
                }
                println!("{label:<34} | {} | {}", cell(store), cell(api));
            }
        }
        println!();
        println!("targets (issue #2):");
        let verdict = |ok: Option<bool>| match ok {
            Some(true) => "MET",
            Some(false) => "NOT MET",
            None => "not measured",
        };
        let creates = self.get("api.create").map(Summary::per_sec);
        println!(
            "  >= 2000 creates/s through the API:          {:>10} -> {}",
            creates.map_or("-".into(), |c| format!("{c:.0}/s")),
            verdict(creates.map(|c| c >= 2000.0))
        );
        let worst = ["api.create", "api.get"]
            .iter()
            .filter_map(|n| self.get(n))
            .map(|s| s.p99)
            .max();
        println!(
            "  p99 < 50 ms single-object (create, get):    {:>10} -> {}",
            worst.map_or("-".into(), |d| format!("{:.1} ms", ms(d))),
            verdict(worst.map(|d| d < Duration::from_millis(50)))
        );
        let rss = self.scalar_value("binary.rss_idle_mib");
        println!(
            "  idle server RSS < 60 MiB:                   {:>10} -> {}",
            rss.map_or("-".into(), |r| format!("{r:.1} MiB")),
            verdict(rss.map(|r| r < 60.0))
        );
        println!();
        for (name, s) in &self.rows {
            println!("{name}.count={}", s.count);
            println!("{name}.per_sec={:.1}", s.per_sec());
            println!("{name}.p50_ms={:.3}", ms(s.p50));
            println!("{name}.p99_ms={:.3}", ms(s.p99));
            println!("{name}.max_ms={:.3}", ms(s.max));
        }
        for (name, v) in &self.scalars {
            println!("{name}={v}");
        }
    }
}

/// Run `op(worker, i)` for every `i < n` on `concurrency` tasks and collect what each returns.
async fn run_concurrent<T, F, Fut>(
    concurrency: usize,
    n: usize,
    op: F,
) -> anyhow::Result<(Vec<T>, Duration)>
where
    T: Send + 'static,
    F: Fn(usize, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<T>> + Send,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency.max(1))
        .map(|worker| {
            let op = Arc::clone(&op);
            let next = Arc::clone(&next);
            tokio::spawn(async move {
                let mut out = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        return Ok::<_, anyhow::Error>(out);
                    }
                    out.push(op(worker, i).await?);
                }
            })
        })
        .collect();
    let mut all = Vec::with_capacity(n);
    for w in workers {
        all.extend(w.await??);
    }
    Ok((all, started.elapsed()))
}

/// A ConfigMap whose stored JSON is about `bytes` long.
fn configmap(name: &str, bytes: usize) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"app": "bench"}},
        // The server adds uid, creationTimestamp and resourceVersion (~150 bytes).
        "data": {"payload": "x".repeat(bytes.saturating_sub(300))},
    })
}

fn object_name(i: usize) -> String {
    format!("cm-{i:05}")
}

/// Spread reads over all objects in a fixed pseudo-random order.
fn scattered(i: usize, n: usize) -> usize {
    (i.wrapping_mul(7919)) % n.max(1)
}

// ---------------------------------------------------------------------------------------------
// Phase 1: the store

async fn bench_store(
    args: &Args,
    backend: &str,
    etcd: Option<&etcd_support::Etcd>,
    dir: &Path,
    report: &mut Report,
) -> anyhow::Result<()> {
    eprintln!("[store] {backend} directly, in {}", dir.display());
    let p = row_prefix(backend);
    let backing = Backing::open(backend, dir, etcd, "/bench-direct").await?;
    let store = Arc::clone(&backing.store);
    let prefix = format!("/registry/configmaps/{NAMESPACE}/");
    let key = {
        let prefix = prefix.clone();
        move |i: usize| format!("{prefix}{}", object_name(i))
    };

    let before = backing.commits();
    let (samples, wall) = {
        let store = Arc::clone(&store);
        let key = key.clone();
        let bytes = args.object_bytes;
        run_concurrent(args.concurrency, args.objects, move |_, i| {
            let store = Arc::clone(&store);
            let key = key(i);
            let value = Bytes::from(configmap(&object_name(i), bytes).to_string());
            async move {
                let t = Instant::now();
                store.create(&key, value).await?;
                Ok(t.elapsed())
            }
        })
        .await?
    };
    report.row(&format!("{p}store.create"), Summary::of(samples, wall));
    if let (Some(before), Some(after)) = (before, backing.commits()) {
        let commits = after - before;
        report.scalar(&format!("{p}store.create.commits"), commits);
        report.scalar(
            &format!("{p}store.create.writes_per_commit"),
            format!("{:.1}", args.objects as f64 / commits.max(1) as f64),
        );
    }

    let (samples, wall) = {
        let store = Arc::clone(&store);
        let key = key.clone();
        let n = args.objects;
        run_concurrent(args.concurrency, args.gets, move |_, i| {
            let store = Arc::clone(&store);
            let key = key(scattered(i, n));
            async move {
                let t = Instant::now();
                let kv = store.get(&key).await?;
                let d = t.elapsed();
                if kv.is_none() {
                    bail!("{key} is missing");
                }
                Ok(d)
            }
        })
        .await?
    };
    report.row(&format!("{p}store.get"), Summary::of(samples, wall));

    let mut samples = Vec::new();
    let started = Instant::now();
    for _ in 0..args.lists {
        let t = Instant::now();
        let r = store.range(&prefix, RangeOptions::default()).await?;
        samples.push(t.elapsed());
        if r.kvs.len() != args.objects {
            bail!("range returned {} keys", r.kvs.len());
        }
    }
    report.row(
        &format!("{p}store.list_all"),
        Summary::of(samples, started.elapsed()),
    );

    let mut pages = Vec::new();
    let mut walks = Vec::new();
    let started = Instant::now();
    for _ in 0..args.lists {
        let walk = Instant::now();
        let mut start_after = None;
        let mut revision = None;
        let mut seen = 0;
        loop {
            let t = Instant::now();
            let r = store
                .range(
                    &prefix,
                    RangeOptions {
                        revision,
                        limit: Some(PAGE),
                        start_after: start_after.take(),
                    },
                )
                .await?;
            pages.push(t.elapsed());
            seen += r.kvs.len();
            revision = Some(r.revision);
            start_after = r.kvs.last().map(|kv| kv.key.clone());
            if !r.more {
                break;
            }
        }
        walks.push(walk.elapsed());
        if seen != args.objects {
            bail!("paged range walked {seen} keys");
        }
    }
    let wall = started.elapsed();
    report.row(&format!("{p}store.list_page"), Summary::of(pages, wall));
    report.row(
        &format!("{p}store.list_paged_walk"),
        Summary::of(walks, wall),
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// HTTPS client

/// Where a server listens and how to authenticate to it, from its admin kubeconfig.
#[derive(Clone)]
struct Target {
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    http1: bool,
}

fn kubeconfig_field(text: &str, field: &str) -> anyhow::Result<String> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix(field))
        .filter_map(|rest| rest.strip_prefix(':'))
        .map(|v| v.trim().to_string())
        .next()
        .with_context(|| format!("kubeconfig has no {field}"))
}

impl Target {
    fn from_kubeconfig(path: &Path, http1: bool) -> anyhow::Result<Target> {
        use base64::Engine;
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let pem =
            |field: &str| -> anyhow::Result<Vec<u8>> {
                Ok(base64::engine::general_purpose::STANDARD
                    .decode(kubeconfig_field(&text, field)?)?)
            };
        let server = kubeconfig_field(&text, "server")?;
        let addr: SocketAddr = server
            .strip_prefix("https://")
            .context("server is not https://")?
            .parse()
            .context("server address")?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&pem("certificate-authority-data")?) {
            roots.add(cert?)?;
        }
        let certs = CertificateDer::pem_slice_iter(&pem("client-certificate-data")?)
            .collect::<Result<Vec<_>, _>>()?;
        let key = PrivateKeyDer::from_pem_slice(&pem("client-key-data")?)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_client_auth_cert(certs, key)?;
        tls.alpn_protocols = if http1 {
            vec![b"http/1.1".to_vec()]
        } else {
            vec![b"h2".to_vec()]
        };
        Ok(Target {
            addr,
            tls: Arc::new(tls),
            http1,
        })
    }
}

/// One connection; HTTP/2 ones multiplex, HTTP/1.1 ones are used by one worker at a time.
enum Conn {
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
    H1(tokio::sync::Mutex<hyper::client::conn::http1::SendRequest<Full<Bytes>>>),
}

/// A few keep-alive connections to one server.
struct Client {
    target: Target,
    conns: Vec<Conn>,
}

impl Client {
    async fn connect(target: &Target, connections: usize) -> anyhow::Result<Client> {
        let mut conns = Vec::with_capacity(connections);
        for _ in 0..connections.max(1) {
            let tcp = tokio::net::TcpStream::connect(target.addr).await?;
            tcp.set_nodelay(true)?;
            let tls = tokio_rustls::TlsConnector::from(Arc::clone(&target.tls))
                .connect(ServerName::from(target.addr.ip()), tcp)
                .await?;
            let io = TokioIo::new(tls);
            if target.http1 {
                let (send, conn) = hyper::client::conn::http1::handshake(io).await?;
                tokio::spawn(conn);
                conns.push(Conn::H1(tokio::sync::Mutex::new(send)));
            } else {
                let (send, conn) =
                    hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
                tokio::spawn(conn);
                conns.push(Conn::H2(send));
            }
        }
        Ok(Client {
            target: target.clone(),
            conns,
        })
    }

    /// Send a request on `worker`'s connection; the body is read by the caller.
    async fn send(
        &self,
        worker: usize,
        method: Method,
        path: &str,
        body: Option<(&'static str, Bytes)>,
    ) -> anyhow::Result<hyper::Response<Incoming>> {
        // HTTP/1.1 sends origin-form plus Host; HTTP/2 needs scheme and authority in the URI.
        let mut req = Request::builder()
            .method(method)
            .header("accept", "application/json");
        req = if self.target.http1 {
            req.uri(path).header("host", self.target.addr.to_string())
        } else {
            req.uri(format!("https://{}{path}", self.target.addr))
        };
        let body = match body {
            Some((content_type, bytes)) => {
                req = req.header("content-type", content_type);
                Full::new(bytes)
            }
            None => Full::new(Bytes::new()),
        };
        let req = req.body(body)?;
        Ok(match &self.conns[worker % self.conns.len()] {
            Conn::H2(send) => {
                let mut send = send.clone();
                send.ready().await?;
                send.send_request(req).await?
            }
            Conn::H1(send) => {
                let mut send = send.lock().await;
                send.ready().await?;
                send.send_request(req).await?
            }
        })
    }

    /// Send a request and read the whole response.
    async fn call(
        &self,
        worker: usize,
        method: Method,
        path: &str,
        body: Option<(&'static str, Bytes)>,
    ) -> anyhow::Result<(StatusCode, Bytes)> {
        let resp = self.send(worker, method, path, body).await?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        Ok((status, bytes))
    }

    async fn expect(
        &self,
        worker: usize,
        method: Method,
        path: &str,
        body: Option<(&'static str, Bytes)>,
        want: StatusCode,
    ) -> anyhow::Result<Bytes> {
        let (status, bytes) = self.call(worker, method.clone(), path, body).await?;
        if status != want {
            bail!(
                "{method} {path}: {status} (wanted {want}): {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
            );
        }
        Ok(bytes)
    }
}

const JSON: &str = "application/json";
const MERGE_PATCH: &str = "application/merge-patch+json";

fn configmaps_path() -> String {
    format!("/api/v1/namespaces/{NAMESPACE}/configmaps")
}

// ---------------------------------------------------------------------------------------------
// Phase 2: the API server

/// Create the namespace and `args.objects` ConfigMaps; report the creates as `name`.
async fn api_load(
    client: &Arc<Client>,
    args: &Args,
    name: &str,
    report: &mut Report,
) -> anyhow::Result<()> {
    let ns = serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}});
    client
        .expect(
            0,
            Method::POST,
            "/api/v1/namespaces",
            Some((JSON, Bytes::from(ns.to_string()))),
            StatusCode::CREATED,
        )
        .await?;
    let client = Arc::clone(client);
    let bytes = args.object_bytes;
    let (samples, wall) = run_concurrent(args.concurrency, args.objects, move |worker, i| {
        let client = Arc::clone(&client);
        let body = Bytes::from(configmap(&object_name(i), bytes).to_string());
        async move {
            let t = Instant::now();
            client
                .expect(
                    worker,
                    Method::POST,
                    &configmaps_path(),
                    Some((JSON, body)),
                    StatusCode::CREATED,
                )
                .await?;
            Ok(t.elapsed())
        }
    })
    .await?;
    report.row(name, Summary::of(samples, wall));
    Ok(())
}

#[derive(Deserialize)]
struct ListMeta {
    #[serde(rename = "resourceVersion", default)]
    resource_version: String,
    #[serde(rename = "continue", default)]
    continue_token: Option<String>,
}

#[derive(Deserialize)]
struct ListHead {
    metadata: ListMeta,
    items: Vec<serde::de::IgnoredAny>,
}

async fn api_reads(
    client: &Arc<Client>,
    args: &Args,
    p: &str,
    report: &mut Report,
) -> anyhow::Result<()> {
    let one = client
        .expect(
            0,
            Method::GET,
            &format!("{}/{}", configmaps_path(), object_name(0)),
            None,
            StatusCode::OK,
        )
        .await?;
    report.scalar(&format!("{p}api.object_json_bytes"), one.len());

    let (samples, wall) = {
        let client = Arc::clone(client);
        let n = args.objects;
        run_concurrent(args.concurrency, args.gets, move |worker, i| {
            let client = Arc::clone(&client);
            let path = format!("{}/{}", configmaps_path(), object_name(scattered(i, n)));
            async move {
                let t = Instant::now();
                client
                    .expect(worker, Method::GET, &path, None, StatusCode::OK)
                    .await?;
                Ok(t.elapsed())
            }
        })
        .await?
    };
    report.row(&format!("{p}api.get"), Summary::of(samples, wall));

    // Lists run one at a time: they are big, and their latency is the point.
    let mut samples = Vec::new();
    let mut bytes = 0;
    let started = Instant::now();
    for _ in 0..args.lists {
        let t = Instant::now();
        let body = client
            .expect(0, Method::GET, &configmaps_path(), None, StatusCode::OK)
            .await?;
        samples.push(t.elapsed());
        bytes = body.len();
        let list: ListHead = serde_json::from_slice(&body)?;
        if list.items.len() != args.objects {
            bail!("list returned {} items", list.items.len());
        }
    }
    report.row(
        &format!("{p}api.list_all"),
        Summary::of(samples, started.elapsed()),
    );
    report.scalar(&format!("{p}api.list_all.response_bytes"), bytes);

    let mut pages = Vec::new();
    let mut walks = Vec::new();
    let started = Instant::now();
    for _ in 0..args.lists {
        let walk = Instant::now();
        let mut token: Option<String> = None;
        let mut seen = 0;
        loop {
            let path = match &token {
                Some(t) => format!("{}?limit={PAGE}&continue={t}", configmaps_path()),
                None => format!("{}?limit={PAGE}", configmaps_path()),
            };
            let t = Instant::now();
            let body = client
                .expect(0, Method::GET, &path, None, StatusCode::OK)
                .await?;
            pages.push(t.elapsed());
            let page: ListHead = serde_json::from_slice(&body)?;
            seen += page.items.len();
            token = page.metadata.continue_token.filter(|t| !t.is_empty());
            if token.is_none() {
                break;
            }
        }
        walks.push(walk.elapsed());
        if seen != args.objects {
            bail!("paged list walked {seen} items");
        }
    }
    let wall = started.elapsed();
    report.row(&format!("{p}api.list_page"), Summary::of(pages, wall));
    report.row(&format!("{p}api.list_paged_walk"), Summary::of(walks, wall));
    Ok(())
}

#[derive(Deserialize)]
struct WatchLine {
    #[serde(rename = "type")]
    kind: String,
    object: WatchObject,
}

#[derive(Deserialize)]
struct WatchObject {
    metadata: WatchMeta,
}

#[derive(Deserialize)]
struct WatchMeta {
    #[serde(default)]
    name: String,
}

/// What one watcher saw: (ADDED?, name, arrival) per event.
type Arrivals = Vec<(bool, String, Instant)>;

/// Open a watch on its own connection (as separate watching clients would).
async fn open_watch(
    target: &Target,
    path: &str,
) -> anyhow::Result<(Client, hyper::Response<Incoming>)> {
    let client = Client::connect(target, 1).await?;
    let resp = client.send(0, Method::GET, path, None).await?;
    if resp.status() != StatusCode::OK {
        bail!("watch: {}", resp.status());
    }
    Ok((client, resp))
}

async fn watcher(
    target: Target,
    path: String,
    expected: usize,
    ready: Arc<tokio::sync::Barrier>,
    deadline: tokio::time::Instant,
) -> anyhow::Result<Arrivals> {
    let opened = open_watch(&target, &path).await;
    // Always take part in the barrier so that a failed watcher cannot stall the others.
    ready.wait().await;
    // The client is kept so that its connection stays open while the body is read.
    let (_client, resp) = opened?;
    let mut body = resp.into_body();
    let mut buf: Vec<u8> = Vec::new();
    let mut out = Vec::with_capacity(expected);
    while out.len() < expected {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) | Ok(None) => break,
            Ok(Some(frame)) => frame?,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let now = Instant::now();
        buf.extend_from_slice(&data);
        while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            let ev: WatchLine = serde_json::from_slice(&line)?;
            match ev.kind.as_str() {
                "ADDED" => out.push((true, ev.object.metadata.name, now)),
                "MODIFIED" => out.push((false, ev.object.metadata.name, now)),
                "BOOKMARK" => {}
                other => bail!("unexpected watch event {other}"),
            }
        }
    }
    Ok(out)
}

async fn api_watch(
    client: &Arc<Client>,
    args: &Args,
    p: &str,
    report: &mut Report,
) -> anyhow::Result<()> {
    let head = client
        .expect(
            0,
            Method::GET,
            &format!("{}?limit=1", configmaps_path()),
            None,
            StatusCode::OK,
        )
        .await?;
    let rv = serde_json::from_slice::<ListHead>(&head)?
        .metadata
        .resource_version;
    let path = format!("{}?watch=true&resourceVersion={rv}", configmaps_path());
    let writes = args.watch_writes;
    let creates = writes / 2;
    let patches = writes - creates;
    let ready = Arc::new(tokio::sync::Barrier::new(args.watchers + 1));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let watchers: Vec<_> = (0..args.watchers)
        .map(|_| {
            tokio::spawn(watcher(
                client.target.clone(),
                path.clone(),
                writes,
                Arc::clone(&ready),
                deadline,
            ))
        })
        .collect();
    ready.wait().await;

    let started = Instant::now();
    let (acks, wall) = {
        let client = Arc::clone(client);
        let bytes = args.object_bytes;
        let objects = args.objects;
        let stride = (objects / patches.max(1)).max(1);
        run_concurrent(args.concurrency, writes, move |worker, i| {
            let client = Arc::clone(&client);
            async move {
                let t = Instant::now();
                let (added, name) = if i < creates {
                    let name = format!("w-{i:05}");
                    let body = Bytes::from(configmap(&name, bytes).to_string());
                    client
                        .expect(
                            worker,
                            Method::POST,
                            &configmaps_path(),
                            Some((JSON, body)),
                            StatusCode::CREATED,
                        )
                        .await?;
                    (true, name)
                } else {
                    // Distinct names (stride * patches <= objects): one MODIFIED event each.
                    let name = object_name(((i - creates) * stride) % objects);
                    let patch = serde_json::json!({"data": {"seq": i.to_string()}});
                    client
                        .expect(
                            worker,
                            Method::PATCH,
                            &format!("{}/{name}", configmaps_path()),
                            Some((MERGE_PATCH, Bytes::from(patch.to_string()))),
                            StatusCode::OK,
                        )
                        .await?;
                    (false, name)
                };
                let acked = Instant::now();
                Ok((added, name, t, acked))
            }
        })
        .await?
    };
    let mut ack_at = HashMap::with_capacity(acks.len());
    let mut write_latencies = Vec::with_capacity(acks.len());
    for (added, name, sent, acked) in acks {
        write_latencies.push(acked - sent);
        ack_at.insert((added, name), (sent, acked));
    }
    report.row(
        &format!("{p}api.watch_write"),
        Summary::of(write_latencies, wall),
    );

    let mut latencies = Vec::new();
    // An event often overtakes the write's own response, so the ack-based latency is clamped at
    // zero; the latency from sending the write is reported beside it.
    let mut from_send = Vec::new();
    let mut before_ack = 0usize;
    let mut unknown = 0usize;
    let mut last = started;
    let mut failed = Vec::new();
    for w in watchers {
        match w.await? {
            Ok(arrivals) => {
                for (added, name, at) in arrivals {
                    last = last.max(at);
                    match ack_at.get(&(added, name)) {
                        Some((sent, acked)) => {
                            from_send.push(at.saturating_duration_since(*sent));
                            if at < *acked {
                                before_ack += 1;
                            }
                            latencies.push(at.saturating_duration_since(*acked));
                        }
                        None => unknown += 1,
                    }
                }
            }
            Err(e) => failed.push(e.to_string()),
        }
    }
    let expected = writes * args.watchers;
    let received = latencies.len() + unknown;
    let wall = last.duration_since(started);
    report.row(&format!("{p}api.watch_event"), Summary::of(latencies, wall));
    report.row(
        &format!("{p}api.watch_event_from_send"),
        Summary::of(from_send, wall),
    );
    report.scalar(&format!("{p}api.watch.watchers"), args.watchers);
    report.scalar(&format!("{p}api.watch.events_expected"), expected);
    report.scalar(&format!("{p}api.watch.events_received"), received);
    report.scalar(&format!("{p}api.watch.events_before_ack"), before_ack);
    report.scalar(&format!("{p}api.watch.events_unmatched"), unknown);
    report.scalar(&format!("{p}api.watch.watchers_failed"), failed.len());
    for e in failed {
        eprintln!("  watcher failed: {e}");
    }
    Ok(())
}

/// Start the API server in this process, on its own runtime, and benchmark it.
fn bench_api(
    args: &Args,
    backend: &str,
    etcd: Option<&etcd_support::Etcd>,
    dir: &Path,
    client_rt: &tokio::runtime::Runtime,
    report: &mut Report,
) -> anyhow::Result<()> {
    let p = row_prefix(backend);
    eprintln!(
        "[api] in-process API server on {backend}, data in {}, {} in flight over {}",
        dir.display(),
        args.concurrency,
        if args.http1 {
            format!("{} HTTP/1.1 connections", args.concurrency)
        } else {
            format!("{} HTTP/2 connections", args.connections)
        }
    );
    // The server gets its own runtime, as in the binary, so that the client's tasks do not queue
    // in front of the server's on the same workers.
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("api-server")
        .build()?;
    let server_dir = dir.join("server");
    std::fs::create_dir_all(&server_dir)?;
    let backing = server_rt.block_on(Backing::open(backend, &server_dir, etcd, ""))?;
    let shutdown = CancellationToken::new();
    let tasks = TaskTracker::new();
    let kubeconfig = dir.join("kubeconfig.yaml");
    let config = skiff_apiserver::Config {
        data_dir: server_dir,
        bind_address: [127, 0, 0, 1].into(),
        port: 0,
        kubeconfig_path: kubeconfig.clone(),
        tls_sans: Vec::new(),
        compaction_interval: skiff_apiserver::compaction::DEFAULT_INTERVAL,
    };
    let server = server_rt.block_on(skiff_apiserver::start(
        config,
        Arc::clone(&backing.store),
        shutdown.clone(),
        &tasks,
    ))?;
    eprintln!("[api] listening on {}", server.local_addr);
    let target = Target::from_kubeconfig(&kubeconfig, args.http1)?;
    let connections = if args.http1 {
        args.concurrency
    } else {
        args.connections
    };
    let result = client_rt.block_on(async {
        let client = Arc::new(Client::connect(&target, connections).await?);
        let before = backing.commits();
        api_load(&client, args, &format!("{p}api.create"), report).await?;
        if let (Some(before), Some(after)) = (before, backing.commits()) {
            let commits = after - before;
            report.scalar(&format!("{p}api.create.commits"), commits);
            report.scalar(
                &format!("{p}api.create.writes_per_commit"),
                format!("{:.1}", args.objects as f64 / commits.max(1) as f64),
            );
        }
        api_reads(&client, args, &p, report).await?;
        api_watch(&client, args, &p, report).await
    });
    shutdown.cancel();
    tasks.close();
    server_rt.block_on(async {
        let _ = tokio::time::timeout(Duration::from_secs(10), tasks.wait()).await;
    });
    drop(server);
    server_rt.shutdown_timeout(Duration::from_secs(5));
    result
}

// ---------------------------------------------------------------------------------------------
// Phase 3: the binary's memory

/// A spawned `skiff server`, killed when dropped.
struct ServerProcess {
    child: Child,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ServerProcess {
    fn rss_mib(&self) -> anyhow::Result<(f64, f64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let kib = |field: &str| -> anyhow::Result<f64> {
            status
                .lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<f64>().ok())
                .with_context(|| format!("no {field} in /proc status"))
        };
        Ok((kib("VmRSS:")? / 1024.0, kib("VmHWM:")? / 1024.0))
    }
}

fn default_skiff_bin() -> anyhow::Result<PathBuf> {
    // target/<profile>/examples/api_bench -> target/<profile>/skiff
    let exe = std::env::current_exe()?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .context("locating the target directory")?;
    Ok(profile_dir.join("skiff"))
}

fn bench_binary(
    args: &Args,
    dir: &Path,
    client_rt: &tokio::runtime::Runtime,
    report: &mut Report,
) -> anyhow::Result<()> {
    let bin = match &args.skiff_bin {
        Some(b) => b.clone(),
        None => default_skiff_bin()?,
    };
    if !bin.exists() {
        bail!(
            "{} does not exist: build it with `cargo build --release -p skiff`",
            bin.display()
        );
    }
    eprintln!(
        "[binary] {} server, data in {}",
        bin.display(),
        dir.display()
    );
    let mut child = Command::new(&bin)
        .args([
            "server",
            "--disable-agent",
            "--https-listen-port",
            "0",
            "--data-dir",
        ])
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join("server.log"))?)
        .spawn()
        .with_context(|| format!("spawning {}", bin.display()))?;
    let stdout = child.stdout.take().context("server stdout")?;
    let server = ServerProcess { child };
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    if !line.starts_with("skiff server ready") {
        bail!(
            "server did not start: {line:?}; log: {}",
            std::fs::read_to_string(dir.join("server.log")).unwrap_or_default()
        );
    }
    let kubeconfig = line
        .split("kubeconfig=")
        .nth(1)
        .map(|k| PathBuf::from(k.trim()))
        .context("no kubeconfig in the ready line")?;
    // Idle time is the measurement here: the server settles after bootstrap.
    std::thread::sleep(Duration::from_secs(args.idle_secs));
    let (rss, hwm) = server.rss_mib()?;
    report.scalar("binary.idle_secs", args.idle_secs);
    report.scalar("binary.rss_idle_mib", format!("{rss:.1}"));
    report.scalar("binary.rss_idle_peak_mib", format!("{hwm:.1}"));

    let target = Target::from_kubeconfig(&kubeconfig, args.http1)?;
    let connections = if args.http1 {
        args.concurrency
    } else {
        args.connections
    };
    client_rt.block_on(async {
        let client = Arc::new(Client::connect(&target, connections).await?);
        api_load(&client, args, "binary.create", report).await?;
        let (rss, _) = server.rss_mib()?;
        report.scalar("binary.rss_after_creates_mib", format!("{rss:.1}"));
        // A few full lists too, the biggest responses a client can ask for.
        for _ in 0..3 {
            client
                .expect(0, Method::GET, &configmaps_path(), None, StatusCode::OK)
                .await?;
        }
        Ok::<_, anyhow::Error>(())
    })?;
    let (rss, hwm) = server.rss_mib()?;
    report.scalar("binary.rss_loaded_mib", format!("{rss:.1}"));
    report.scalar("binary.rss_loaded_peak_mib", format!("{hwm:.1}"));
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.watch_writes - args.watch_writes / 2 > args.objects {
        bail!("--watch-writes must be at most twice --objects (each patch hits a distinct object)");
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let base = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("bench-client")
        .build()?;
    let mut report = Report::default();
    report.scalar("config.objects", args.objects);
    report.scalar("config.object_bytes", args.object_bytes);
    report.scalar("config.concurrency", args.concurrency);
    report.scalar(
        "config.transport",
        if args.http1 {
            format!("http1x{}", args.concurrency)
        } else {
            format!("h2x{}", args.connections)
        },
    );
    report.scalar(
        "config.cpus",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );

    for backend in &args.backends {
        let etcd = match backend.as_str() {
            "redb" => None,
            "etcd1" => Some(etcd_support::Etcd::single()),
            "etcd3" => Some(etcd_support::Etcd::cluster(3)),
            other => bail!("unknown backend {other:?}: use redb, etcd1 or etcd3"),
        };
        let store_dir = tempfile::tempdir_in(&base)?;
        client_rt.block_on(bench_store(
            &args,
            backend,
            etcd.as_ref(),
            store_dir.path(),
            &mut report,
        ))?;
        drop(store_dir);

        let api_dir = tempfile::tempdir_in(&base)?;
        bench_api(
            &args,
            backend,
            etcd.as_ref(),
            api_dir.path(),
            &client_rt,
            &mut report,
        )?;
        drop(api_dir);
    }

    if args.skip_binary {
        eprintln!("[binary] skipped");
    } else {
        let bin_dir = tempfile::tempdir_in(&base)?;
        if let Err(e) = bench_binary(&args, bin_dir.path(), &client_rt, &mut report) {
            eprintln!("[binary] not measured: {e:#}");
            report.scalar("binary.error", format!("{e:#}").replace('\n', " "));
        }
    }
    report.print(&args);
    Ok(())
}
