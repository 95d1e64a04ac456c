//! The IO-free decision core alone on a `skiff bench scheduler` workload:
//! `cargo run --release -p skiff-scheduler --example core -- <workload> <nodes> <existing> <pods>`.

use skiff_scheduler::bench::{Workload, run_core};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let w: Workload = match args.first().map(|s| s.parse()) {
        Some(Ok(w)) => w,
        Some(Err(e)) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
        None => Workload::Basic,
    };
    let num = |i: usize, d: usize| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let nodes = num(1, 5000);
    let existing = num(2, w.default_existing(nodes));
    let pods = num(3, 10_000);
    let r = run_core(w, nodes, existing, pods);
    println!(
        "workload={} nodes={nodes} existing={existing} pods={pods}: {:.0} decisions/s in {:.2}s, p50 {:?}, p99 {:?}, placed {}, preemptions {}, unschedulable {}",
        w.name(),
        r.decisions_per_s(),
        r.seconds,
        r.p50,
        r.p99,
        r.placed,
        r.preemptions,
        r.failed
    );
}
