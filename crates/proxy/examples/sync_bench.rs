//! Benchmark (root): cost of a full rule sync for many Services and of one incremental change on
//! top of it, applied by nft in a scratch network namespace that is removed at the end.
//!
//! `cargo run --release -p skiff-proxy --example sync_bench -- [SERVICES] [ENDPOINTS] [RUNS]`

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use skiff_proxy::model::{self, NodeInfo, SERVICE_NAME_LABEL};
use skiff_proxy::tracker::Tracker;
use skiff_proxy::{Applier, script};

/// Deletes the scratch namespace (and the table in it) however the benchmark ends.
struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn service(i: usize) -> Service {
    Service {
        metadata: ObjectMeta {
            namespace: Some("bench".into()),
            name: Some(format!("svc-{i}")),
            resource_version: Some("1".into()),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            cluster_ip: Some(format!("10.96.{}.{}", i / 250, i % 250 + 1)),
            // Every tenth Service is a NodePort, as a mixed cluster would have.
            type_: Some(
                if i.is_multiple_of(10) {
                    "NodePort"
                } else {
                    "ClusterIP"
                }
                .into(),
            ),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: 80,
                protocol: Some("TCP".into()),
                node_port: i.is_multiple_of(10).then(|| 30000 + i as i32),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        status: None,
    }
}

fn slice(i: usize, endpoints: usize, skip: Option<usize>, rv: usize) -> EndpointSlice {
    EndpointSlice {
        metadata: ObjectMeta {
            namespace: Some("bench".into()),
            name: Some(format!("svc-{i}-x")),
            resource_version: Some(rv.to_string()),
            labels: Some([(SERVICE_NAME_LABEL.to_string(), format!("svc-{i}"))].into()),
            ..Default::default()
        },
        address_type: "IPv4".into(),
        ports: Some(vec![EndpointPort {
            name: Some("http".into()),
            port: Some(8080),
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
        endpoints: (0..endpoints)
            .filter(|e| Some(*e) != skip)
            .map(|e| {
                let n = i * endpoints + e;
                Endpoint {
                    addresses: vec![format!("10.244.{}.{}", n / 250, n % 250 + 1)],
                    node_name: Some(format!("node-{}", e % 3)),
                    conditions: Some(EndpointConditions {
                        ready: Some(true),
                        serving: Some(true),
                        terminating: Some(false),
                    }),
                    ..Default::default()
                }
            })
            .collect(),
    }
}

fn pct(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    let idx = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[idx].as_secs_f64() * 1000.0
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let services_n = args.first().copied().unwrap_or(1000);
    let endpoints_n = args.get(1).copied().unwrap_or(10);
    let runs = args.get(2).copied().unwrap_or(5);

    let ns = Netns(format!("skp-bench-{}", std::process::id()));
    let status = Command::new("ip").args(["netns", "add", &ns.0]).status()?;
    if !status.success() {
        return Err("ip netns add failed (root needed)".into());
    }
    let applier = Applier::in_netns(format!("/run/netns/{}", ns.0));
    let node = NodeInfo {
        node_name: "node-0".into(),
        node_ips: vec![Ipv4Addr::new(192, 168, 77, 1)],
        cluster_cidr: Some("10.244.0.0/16".parse()?),
    };
    let services: Vec<Service> = (0..services_n).map(service).collect();
    let slices: Vec<EndpointSlice> = (0..services_n)
        .map(|i| slice(i, endpoints_n, None, 1))
        .collect();

    let (mut gen_full, mut apply_full) = (Vec::new(), Vec::new());
    let mut full_lines = 0;
    let mut model = model::build(&services, &slices, &node);
    for _ in 0..runs {
        let t = Instant::now();
        model = model::build(&services, &slices, &node);
        let s = script::full(&model);
        gen_full.push(t.elapsed());
        full_lines = s.lines().count();
        if let Ok(path) = std::env::var("SYNC_BENCH_DUMP") {
            std::fs::write(path, &s)?;
        }
        let t = Instant::now();
        applier.apply(&s)?;
        apply_full.push(t.elapsed());
    }

    // One endpoint leaves a Service, then comes back: each is one incremental transaction,
    // generated by the per-Service tracker `run` uses. The whole-model rebuild and diff is
    // timed beside it for comparison.
    let (mut gen_inc, mut apply_inc, mut naive_inc) = (Vec::new(), Vec::new(), Vec::new());
    let mut inc_lines = 0;
    let mut changed = slices.clone();
    let mut tracker = Tracker::default();
    tracker.update(&services, &changed, &node);
    for r in 0..runs * 4 {
        let target = ((r / 2) * 37) % services_n;
        let skip = (r % 2 == 0).then_some((r / 2) % endpoints_n);
        changed[target] = slice(target, endpoints_n, skip, r + 2);
        let t = Instant::now();
        let next = model::build(&services, &changed, &node);
        let naive = script::diff(&model, &next);
        naive_inc.push(t.elapsed());
        model = next;
        let t = Instant::now();
        let s = tracker.update(&services, &changed, &node);
        gen_inc.push(t.elapsed());
        assert_eq!(s, naive, "tracker and whole-model diff agree");
        inc_lines = inc_lines.max(s.lines().count());
        let t = Instant::now();
        applier.apply(&s)?;
        apply_inc.push(t.elapsed());
    }

    println!(
        "services={services_n} endpoints/service={endpoints_n} chains={} full script lines={full_lines} runs={runs}",
        model.chains.len()
    );
    println!(
        "full sync:        generate p50 {:.1} ms p99 {:.1} ms | nft apply p50 {:.1} ms p99 {:.1} ms",
        pct(&mut gen_full, 0.5),
        pct(&mut gen_full, 0.99),
        pct(&mut apply_full, 0.5),
        pct(&mut apply_full, 0.99)
    );
    println!(
        "incremental ({} changes, <= {inc_lines} lines): generate p50 {:.2} ms p99 {:.2} ms (whole-model rebuild + diff: p50 {:.1} ms) | nft apply p50 {:.1} ms p99 {:.1} ms",
        gen_inc.len(),
        pct(&mut gen_inc, 0.5),
        pct(&mut gen_inc, 0.99),
        pct(&mut naive_inc, 0.5),
        pct(&mut apply_inc, 0.5),
        pct(&mut apply_inc, 0.99)
    );
    Ok(())
}
