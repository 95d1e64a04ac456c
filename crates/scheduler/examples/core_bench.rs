//! The IO-free decision core alone: `cargo run -p skiff-scheduler --example core_bench -- 5000 10000`
//! schedules (and assumes) pods of 100m/256Mi on N hollow-sized nodes and prints decisions/s.

use std::sync::Arc;
use std::time::Instant;

use skiff_scheduler::framework::Framework;
use skiff_scheduler::snapshot::{NodeInfo, PodInfo, Snapshot};

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let nodes = args.first().copied().unwrap_or(5000);
    let pods = args.get(1).copied().unwrap_or(10_000);
    let parallelism = args.get(2).copied().unwrap_or(1);
    let mut snap = Snapshot::new();
    for i in 0..nodes {
        let mut n = NodeInfo {
            name: format!("hollow-node-{i}"),
            ..Default::default()
        };
        n.labels
            .insert("kubernetes.io/hostname".into(), n.name.clone());
        n.labels.insert(
            "topology.kubernetes.io/zone".into(),
            format!("zone-{}", i % 3),
        );
        n.allocatable.milli_cpu = 4000;
        n.allocatable.memory = 16 << 30;
        n.allocatable.allowed_pods = 110;
        snap.upsert_node(n);
    }
    let mut fw = Framework::with_defaults();
    fw.parallelism = parallelism;
    let start = Instant::now();
    let mut latencies = Vec::with_capacity(pods);
    for i in 0..pods {
        let mut pod = PodInfo {
            uid: format!("uid-{i}"),
            namespace: "default".into(),
            name: format!("pod-{i}"),
            scheduler_name: "default-scheduler".into(),
            ..Default::default()
        };
        pod.requests.milli_cpu = 100;
        pod.requests.memory = 256 << 20;
        pod.non_zero = (100, 256 << 20);
        let t = Instant::now();
        let Ok(d) = fw.schedule(&snap, &pod) else {
            eprintln!("pod {i} did not fit");
            continue;
        };
        pod.node_name = Some(d.node);
        snap.add_pod(Arc::new(pod));
        latencies.push(t.elapsed());
    }
    let secs = start.elapsed().as_secs_f64();
    latencies.sort();
    let p = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    println!(
        "nodes={nodes} pods={pods} parallelism={parallelism} seconds={secs:.2} p50={:?} p99={:?}",
        p(0.5),
        p(0.99)
    );
    println!("core_decisions_per_s={:.0}", latencies.len() as f64 / secs);
}
