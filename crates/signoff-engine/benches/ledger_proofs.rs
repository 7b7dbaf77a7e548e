//! Inclusion and consistency proofs served from a large ledger in a real
//! SQLite database, through [`Engine`] exactly as the HTTP handlers call it
//! (a size check plus one query for the O(log n) stored nodes).
//!
//! ```text
//! cargo bench -p signoff-engine --bench ledger_proofs
//! ```
//!
//! The ledger has `SIGNOFF_BENCH_LEDGER_N` entries (default 10,000,000),
//! appended through `Store::commit` like any other event (so the Merkle
//! nodes are the ones the writer stores). The database is kept in
//! `target/bench-ledger-<N>/` and reused by later runs; building the 10 M
//! one takes about six minutes and 1.7 GB. The figures depend on whether
//! the node pages are in the OS page cache: with a cold cache each proof
//! waits for about 2·log₂ n random disk reads (`cat` the file to
//! `/dev/null` first to measure the warm case). With `SIGNOFF_BENCH_PG` set to a
//! PostgreSQL URL the ledger goes there instead (and is reused if it has the
//! entries already).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use criterion::{BenchmarkId, Criterion};
use signoff_core::{AuditEvent, EventKind, SystemClock};
use signoff_engine::principals::Operator;
use signoff_engine::{Engine, EngineConfig};
use signoff_ledger::merkle;
use signoff_store::{Commit, Store};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

fn entries() -> u64 {
    std::env::var("SIGNOFF_BENCH_LEDGER_N")
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(10_000_000)
}

fn work_dir(n: u64) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join(format!("bench-ledger-{n}"))
}

/// Appends events until the ledger has `n`, 1,000 per commit, 8 commits in flight.
async fn fill(store: &Arc<dyn Store>, n: u64) {
    let have = store.event_count().await.unwrap();
    if have >= n {
        return;
    }
    eprintln!(
        "appending {} events to reach {n} (once; the database is kept)",
        n - have
    );
    let started = Instant::now();
    let mut next = have;
    let mut inflight = Vec::new();
    while next < n {
        let k = (n - next).min(1000);
        let events = (next..next + k)
            .map(|i| {
                AuditEvent::new(
                    EventKind::RequestSubmitted,
                    jiff::Timestamp::now(),
                    "agent:bench",
                )
                .with_reason(format!("bench entry {i}"))
            })
            .collect();
        let store = store.clone();
        inflight.push(tokio::spawn(async move {
            store
                .commit(Commit {
                    changes: vec![],
                    events,
                })
                .await
                .unwrap();
        }));
        next += k;
        if inflight.len() >= 8 {
            for t in inflight.drain(..) {
                t.await.unwrap();
            }
            if next % 1_000_000 < 8_000 {
                eprintln!("  {next} entries, {:.0}s", started.elapsed().as_secs_f64());
            }
        }
    }
    for t in inflight {
        t.await.unwrap();
    }
    eprintln!("filled in {:.0}s", started.elapsed().as_secs_f64());
}

fn main() {
    let n = entries();
    let dir = work_dir(n);
    std::fs::create_dir_all(dir.join("policies")).unwrap();
    std::fs::write(
        dir.join("policies/allow.cedar"),
        "permit(principal, action, resource);\n",
    )
    .unwrap();
    let url = std::env::var("SIGNOFF_BENCH_PG")
        .unwrap_or_else(|_| format!("sqlite://{}", dir.join("signoff.db").display()));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let engine = rt.block_on(async {
        let store = signoff_store::open(&url).await.unwrap();
        fill(&store, n).await;
        Engine::start(
            store,
            Arc::new(SystemClock),
            EngineConfig {
                policy_dir: dir.join("policies"),
                deadlines: Default::default(),
                ledger_key: None,
                witness_file: None,
            },
        )
        .await
        .unwrap()
    });
    let size = rt
        .block_on(engine.ledger(Operator::Console).unwrap().size())
        .unwrap();
    assert!(size >= n, "ledger has {size} entries, wanted {n}");

    // The proofs are right before they are fast.
    rt.block_on(async {
        let root = engine
            .ledger(Operator::Console)
            .unwrap()
            .root(size)
            .await
            .unwrap();
        for index in [0, size / 3, size - 1] {
            let proof = engine
                .ledger(Operator::Console)
                .unwrap()
                .inclusion_proof(index, size)
                .await
                .unwrap();
            let leaf = engine
                .ledger(Operator::Console)
                .unwrap()
                .leaf_hashes(index, 1)
                .await
                .unwrap()[0]
                .1;
            merkle::verify_inclusion(&leaf, index, size, &proof, &root).unwrap();
        }
        let old = size / 2 + 1;
        let old_root = engine
            .ledger(Operator::Console)
            .unwrap()
            .root(old)
            .await
            .unwrap();
        let proof = engine
            .ledger(Operator::Console)
            .unwrap()
            .consistency_proof(old, size)
            .await
            .unwrap();
        merkle::verify_consistency(old, size, &old_root, &root, &proof).unwrap();
    });

    let mut c = Criterion::default()
        .configure_from_args()
        .warm_up_time(std::time::Duration::from_secs(1))
        .measurement_time(std::time::Duration::from_secs(5));
    let mut group = c.benchmark_group("ledger_proofs");
    // Indexes spread over the whole log, so the nodes read are not all
    // the ones a previous iteration just pulled into the cache.
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next_index = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % size
    };
    group.bench_function(BenchmarkId::new("inclusion", size), |b| {
        b.iter(|| {
            rt.block_on(
                engine
                    .ledger(Operator::Console)
                    .unwrap()
                    .inclusion_proof(next_index(), size),
            )
            .unwrap()
        })
    });
    // The part of each proof that is not node reads: the size check.
    group.bench_function(BenchmarkId::new("size_check", size), |b| {
        b.iter(|| {
            rt.block_on(engine.ledger(Operator::Console).unwrap().size())
                .unwrap()
        })
    });
    group.bench_function(BenchmarkId::new("consistency", size), |b| {
        b.iter(|| {
            rt.block_on(
                engine
                    .ledger(Operator::Console)
                    .unwrap()
                    .consistency_proof(size / 2 + 1, size),
            )
            .unwrap()
        })
    });
    group.finish();
    c.final_summary();
}
