//! Prints throughput and latency numbers of the redb store backend.
//!
//! `cargo run --release -p skiff-store --example store_bench [-- <dir>]` (the store file goes in a
//! fresh temporary directory under `<dir>`, default the system temp dir).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use skiff_store::{RangeOptions, RedbStore, Store};

const SEQUENTIAL_CREATES: usize = 1000;
const CONCURRENT_WRITERS: usize = 64;
const CREATES_PER_WRITER: usize = 200;
const OBJECTS: usize = 10_000;
const VALUE_BYTES: usize = 2048;
const GETS: usize = 20_000;
const RANGES: usize = 20;

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort_unstable();
    let index = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[index]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn payload(i: usize) -> Bytes {
    let mut text =
        format!("{{\"kind\":\"Pod\",\"metadata\":{{\"name\":\"pod-{i:05}\"}},\"pad\":\"");
    text.extend(std::iter::repeat_n(
        'x',
        VALUE_BYTES.saturating_sub(text.len() + 2),
    ));
    text.push_str("\"}");
    Bytes::from(text)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let base = std::env::args()
        .nth(1)
        .map_or_else(std::env::temp_dir, Into::into);
    let dir = tempfile::tempdir_in(base)?;
    let store = Arc::new(RedbStore::open(dir.path().join("bench.redb"))?);
    println!("store file: {}", dir.path().join("bench.redb").display());

    // 1. One writer, each create waits for its own durable commit.
    let started = Instant::now();
    for i in 0..SEQUENTIAL_CREATES {
        store
            .create(&format!("/bench/seq/{i:05}"), payload(i))
            .await?;
    }
    let elapsed = started.elapsed();
    println!(
        "single-writer creates: {SEQUENTIAL_CREATES} in {:.2} s = {:.0} creates/s",
        elapsed.as_secs_f64(),
        SEQUENTIAL_CREATES as f64 / elapsed.as_secs_f64()
    );

    // 2. Concurrent writers share group commits.
    let before = store.stats();
    let started = Instant::now();
    let tasks: Vec<_> = (0..CONCURRENT_WRITERS)
        .map(|w| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                for i in 0..CREATES_PER_WRITER {
                    store
                        .create(&format!("/bench/conc/{w:02}/{i:05}"), payload(i))
                        .await?;
                }
                Ok::<_, skiff_store::Error>(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    let elapsed = started.elapsed();
    let total = CONCURRENT_WRITERS * CREATES_PER_WRITER;
    let commits = store.stats().commits - before.commits;
    println!(
        "{CONCURRENT_WRITERS}-concurrent creates: {total} in {:.2} s = {:.0} creates/s ({commits} commits, {:.1} writes/commit)",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
        total as f64 / commits as f64
    );

    // 3. 10,000 objects under one prefix, loaded concurrently.
    let started = Instant::now();
    let tasks: Vec<_> = (0..CONCURRENT_WRITERS)
        .map(|w| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                for i in (w..OBJECTS).step_by(CONCURRENT_WRITERS) {
                    store
                        .create(&format!("/registry/pods/default/pod-{i:05}"), payload(i))
                        .await?;
                }
                Ok::<_, skiff_store::Error>(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    println!(
        "loaded {OBJECTS} objects of {VALUE_BYTES} B in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let loaded_at = store.current_revision().await?;
    // Some updates so that a read at `loaded_at` is served from history.
    for i in (0..OBJECTS).step_by(10) {
        store
            .update(
                &format!("/registry/pods/default/pod-{i:05}"),
                payload(i + 1),
                None,
            )
            .await?;
    }

    // 4. Point reads.
    let mut samples = Vec::with_capacity(GETS);
    for n in 0..GETS {
        let key = format!("/registry/pods/default/pod-{:05}", (n * 7919) % OBJECTS);
        let started = Instant::now();
        let kv = store.get(&key).await?;
        samples.push(started.elapsed());
        assert!(kv.is_some());
    }
    println!(
        "get: p50 {:.1} µs, p99 {:.1} µs ({GETS} reads of {OBJECTS} keys)",
        micros(percentile(&mut samples, 0.50)),
        micros(percentile(&mut samples, 0.99))
    );

    // 5. Full-prefix ranges, latest and at an old revision.
    for (label, revision) in [
        ("latest", None),
        ("at old revision (history)", Some(loaded_at)),
    ] {
        let mut samples = Vec::with_capacity(RANGES);
        for _ in 0..RANGES {
            let started = Instant::now();
            let result = store
                .range(
                    "/registry/pods/",
                    RangeOptions {
                        revision,
                        ..RangeOptions::default()
                    },
                )
                .await?;
            samples.push(started.elapsed());
            assert_eq!(result.kvs.len(), OBJECTS);
        }
        println!(
            "range {OBJECTS} keys {label}: p50 {:.2} ms, p99 {:.2} ms",
            percentile(&mut samples, 0.50).as_secs_f64() * 1e3,
            percentile(&mut samples, 0.99).as_secs_f64() * 1e3
        );
    }

    // 6. One page of 500, the API server's default list chunk.
    let mut samples = Vec::with_capacity(RANGES);
    for _ in 0..RANGES {
        let started = Instant::now();
        store
            .range(
                "/registry/pods/",
                RangeOptions {
                    limit: Some(500),
                    start_after: Some("/registry/pods/default/pod-05000".to_owned()),
                    ..RangeOptions::default()
                },
            )
            .await?;
        samples.push(started.elapsed());
    }
    println!(
        "range page of 500: p50 {:.2} ms",
        percentile(&mut samples, 0.50).as_secs_f64() * 1e3
    );
    Ok(())
}
