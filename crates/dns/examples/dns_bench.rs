//! Cluster DNS query latency: cached Service lookups over UDP against a seeded snapshot.
//!
//! `cargo run --release -p skiff-dns --example dns_bench -- [services] [clients] [seconds]`

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RecordType};
use k8s_openapi::api::core::v1::Service;
use serde_json::json;
use skiff_dns::{DnsConfig, DnsServer, Snapshot};
use tokio::net::UdpSocket;

fn arg(i: usize, default: u64) -> u64 {
    std::env::args()
        .nth(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

async fn client(server: SocketAddr, services: u64, offset: u64, until: Instant) -> Vec<Duration> {
    let Ok(socket) = UdpSocket::bind("127.0.0.1:0").await else {
        return Vec::new();
    };
    if socket.connect(server).await.is_err() {
        return Vec::new();
    }
    let mut latencies = Vec::new();
    let mut buf = vec![0u8; 1500];
    let mut i = offset;
    while Instant::now() < until {
        i = i
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let name = format!("svc-{}.bench.svc.cluster.local.", (i >> 33) % services);
        let Ok(name) = Name::from_ascii(&name) else {
            continue;
        };
        let mut q = Message::query();
        q.add_query(Query::query(name, RecordType::A));
        let Ok(bytes) = q.to_vec() else { continue };
        let start = Instant::now();
        if socket.send(&bytes).await.is_err() {
            continue;
        }
        match tokio::time::timeout(Duration::from_secs(1), socket.recv(&mut buf)).await {
            Ok(Ok(n)) => {
                let ok = Message::from_vec(&buf[..n])
                    .map(|m| m.metadata.id == q.metadata.id && m.answers.len() == 1)
                    .unwrap_or(false);
                if ok {
                    latencies.push(start.elapsed());
                }
            }
            _ => eprintln!("lost a query"),
        }
    }
    latencies
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let services = arg(1, 1000).max(1);
    let clients = arg(2, 4).max(1);
    let seconds = arg(3, 5).max(1);
    let objects: Vec<Service> = (0..services)
        .map(|i| {
            serde_json::from_value(json!({
                "metadata": {"name": format!("svc-{i}"), "namespace": "bench"},
                "spec": {"clusterIP": format!("10.96.{}.{}", i / 250, i % 250 + 1),
                         "ports": [{"name": "http", "port": 80}]}
            }))
        })
        .collect::<Result<_, _>>()?;
    let config = DnsConfig::new(vec![([127, 0, 0, 1], 0).into()], "cluster.local", vec![]);
    let server = DnsServer::bind(&config).await?;
    // The watch loop rebuilds the whole snapshot per burst of changes: what that costs.
    let build = Instant::now();
    let snapshot = Snapshot::build(&objects, [], [], 1);
    let build = build.elapsed();
    server.snapshot_handle().set(snapshot);
    let addr = server.local_addrs()[0];
    let until = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| tokio::spawn(client(addr, services, c * 7919 + 1, until)))
        .collect();
    let mut all: Vec<Duration> = Vec::new();
    for t in tasks {
        all.extend(t.await?);
    }
    let elapsed = started.elapsed();
    all.sort();
    let pct = |p: f64| {
        let idx = ((all.len() as f64 - 1.0) * p).round() as usize;
        all.get(idx).copied().unwrap_or_default()
    };
    println!(
        "services={services} clients={clients} queries={} qps={:.0} p50={:?} p99={:?} max={:?} snapshot_build={build:?}",
        all.len(),
        all.len() as f64 / elapsed.as_secs_f64(),
        pct(0.50),
        pct(0.99),
        all.last().copied().unwrap_or_default(),
    );
    server.shutdown().await;
    Ok(())
}
