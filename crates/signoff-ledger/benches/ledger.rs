//! Ledger throughput and proof latency.
//!
//! - `verify/hash_and_push_1m`: leaf hash + `Frontier::push` over 1,000,000
//!   pre-encoded ~400-byte leaves (target >= 1,000,000 entries/s).
//! - `verify/log_verifier_100k`: the full `LogVerifier::push` (decode,
//!   canonical re-encode check, hash, push), what `signoff audit verify` runs.
//! - `encode/encode_and_hash_100k`: `leaf::encode` + leaf hash.
//! - `proof/inclusion_10m`: inclusion proof for a random index of a
//!   10,000,000-entry log from a (level, index) node source (target < 1 ms).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use signoff_core::event::{AuditEvent, EventKind};
use signoff_ledger::leaf;
use signoff_ledger::merkle::{self, Frontier, Hash};
use signoff_ledger::verify::LogVerifier;
use std::convert::Infallible;
use std::time::Duration;

fn event(index: u64) -> AuditEvent {
    let time: jiff::Timestamp = "2025-03-04T05:06:07.089Z".parse().unwrap();
    let mut e = AuditEvent::new(
        EventKind::RequestClaimed,
        time,
        format!("agent:deployer-{}", index % 97),
    )
    .with_reason("claimed by gate ci-deploy")
    .with_detail(serde_json::json!({
        "gate": "ci-deploy",
        "action": {"kind": "deploy", "env": "prod"},
        "n": index,
    }));
    e.index = Some(index);
    e.request_id = Some(format!("01JREQ{index:020}"));
    e.digest = Some(format!("sha256:{index:064x}"));
    e.policy_ids = vec!["prod-needs-two".into()];
    e
}

fn bench_verify(c: &mut Criterion) {
    const N: u64 = 1_000_000;
    let leaves: Vec<Vec<u8>> = (0..N).map(|i| leaf::encode(&event(i))).collect();
    let avg = leaves.iter().map(Vec::len).sum::<usize>() as u64 / N;
    eprintln!("average leaf size: {avg} bytes");

    let mut g = c.benchmark_group("verify");
    g.sample_size(10);
    g.throughput(Throughput::Elements(N));
    g.bench_function("hash_and_push_1m", |b| {
        b.iter(|| {
            let mut f = Frontier::new();
            for l in &leaves {
                black_box(f.push(merkle::leaf_hash(l)));
            }
            black_box(f.root())
        })
    });
    const M: usize = 100_000;
    g.throughput(Throughput::Elements(M as u64));
    g.bench_function("log_verifier_100k", |b| {
        b.iter(|| {
            let mut v = LogVerifier::new();
            for (i, l) in leaves[..M].iter().enumerate() {
                v.push(i as u64, l).unwrap();
            }
            black_box(v.root())
        })
    });
    g.finish();
}

fn bench_encode(c: &mut Criterion) {
    const N: u64 = 100_000;
    let events: Vec<AuditEvent> = (0..N).map(event).collect();
    let mut g = c.benchmark_group("encode");
    g.sample_size(10);
    g.throughput(Throughput::Elements(N));
    g.bench_function("encode_and_hash_100k", |b| {
        b.iter(|| {
            for e in &events {
                black_box(merkle::leaf_hash(&leaf::encode(e)));
            }
        })
    });
    g.finish();
}

/// Deterministic stand-in for the store's perfect-subtree table.
fn fake_node(level: u32, index: u64) -> Hash {
    let mut data = [0u8; 12];
    data[..4].copy_from_slice(&level.to_be_bytes());
    data[4..].copy_from_slice(&index.to_be_bytes());
    merkle::leaf_hash(&data)
}

fn bench_proof(c: &mut Criterion) {
    const SIZE: u64 = 10_000_000;
    let mut g = c.benchmark_group("proof");
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next_index = move || {
        // xorshift64: cheap, deterministic, good enough to spread indexes.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % SIZE
    };
    g.bench_function("inclusion_10m", |b| {
        b.iter(|| {
            let index = next_index();
            let ranges = merkle::inclusion_ranges(index, SIZE).unwrap();
            let proof = merkle::proof_from_nodes(&ranges, |level, i| {
                Ok::<_, Infallible>(fake_node(level, i))
            })
            .unwrap();
            black_box(proof)
        })
    });
    g.bench_function("consistency_10m", |b| {
        b.iter(|| {
            let m = next_index().max(1);
            let ranges = merkle::consistency_ranges(m, SIZE).unwrap();
            let proof = merkle::proof_from_nodes(&ranges, |level, i| {
                Ok::<_, Infallible>(fake_node(level, i))
            })
            .unwrap();
            black_box(proof)
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3));
    targets = bench_verify, bench_encode, bench_proof
}
criterion_main!(benches);
