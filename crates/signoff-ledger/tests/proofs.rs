#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Exhaustive proof properties for small trees, and the O(log n) node-read
//! bound for large ones.

use signoff_ledger::merkle::{self, Frontier, Hash, ProofError};
use std::cell::Cell;
use std::collections::HashMap;
use std::convert::Infallible;

const MAX: u64 = 70;

type Nodes = HashMap<(u32, u64), Hash>;

/// Leaf hashes, every perfect subtree the frontier reported (as a log store
/// would keep them) and the root at each size.
fn build(n: u64) -> (Vec<Hash>, Nodes, Vec<Hash>) {
    let leaves: Vec<Hash> = (0..n)
        .map(|i| merkle::leaf_hash(&i.to_le_bytes()))
        .collect();
    let mut nodes = HashMap::new();
    let mut roots = Vec::new();
    let mut f = Frontier::new();
    for l in &leaves {
        for (level, index, h) in f.push(*l) {
            nodes.insert((level, index), h);
        }
        roots.push(f.root());
    }
    (leaves, nodes, roots)
}

fn from_nodes(nodes: &Nodes, ranges: &[(u64, u64)]) -> Vec<Hash> {
    merkle::proof_from_nodes(ranges, |level, index| {
        Ok::<_, Infallible>(nodes[&(level, index)])
    })
    .unwrap()
}

fn tamper_each(proof: &[Hash], mut check: impl FnMut(&[Hash])) {
    for i in 0..proof.len() {
        let mut bad = proof.to_vec();
        bad[i][i % 32] ^= 0x80;
        check(&bad);
    }
    if !proof.is_empty() {
        check(&proof[1..]);
    }
    let mut longer = proof.to_vec();
    longer.push([0; 32]);
    check(&longer);
}

#[test]
fn inclusion_every_index_every_size() {
    let (leaves, nodes, roots) = build(MAX);
    for size in 1..=MAX {
        let root = roots[size as usize - 1];
        for index in 0..size {
            let ranges = merkle::inclusion_ranges(index, size).unwrap();
            let direct = merkle::inclusion_proof(&leaves, index, size).unwrap();
            assert_eq!(from_nodes(&nodes, &ranges), direct, "{index} in {size}");
            let leaf = &leaves[index as usize];
            merkle::verify_inclusion(leaf, index, size, &direct, &root).unwrap();

            tamper_each(&direct, |bad| {
                assert!(merkle::verify_inclusion(leaf, index, size, bad, &root).is_err());
            });
            let other_leaf = merkle::leaf_hash(b"other");
            assert!(merkle::verify_inclusion(&other_leaf, index, size, &direct, &root).is_err());
            if size > 1 {
                let wrong_index = (index + 1) % size;
                assert!(merkle::verify_inclusion(leaf, wrong_index, size, &direct, &root).is_err());
                assert!(merkle::verify_inclusion(leaf, index, size, &direct, &roots[0]).is_err());
            }
        }
        assert_eq!(
            merkle::verify_inclusion(&leaves[0], size, size, &[], &root),
            Err(ProofError::IndexOutOfRange { index: size, size })
        );
    }
}

#[test]
fn consistency_every_pair() {
    let (leaves, nodes, roots) = build(MAX);
    for n in 1..=MAX {
        let root_n = roots[n as usize - 1];
        for m in 0..=n {
            let root_m = if m == 0 {
                merkle::EMPTY_ROOT
            } else {
                roots[m as usize - 1]
            };
            let ranges = merkle::consistency_ranges(m, n).unwrap();
            let direct = merkle::consistency_proof(&leaves, m, n).unwrap();
            assert_eq!(from_nodes(&nodes, &ranges), direct, "{m} -> {n}");
            merkle::verify_consistency(m, n, &root_m, &root_n, &direct).unwrap();

            tamper_each(&direct, |bad| {
                assert!(merkle::verify_consistency(m, n, &root_m, &root_n, bad).is_err());
            });
            let mut wrong = root_m;
            wrong[0] ^= 1;
            assert!(merkle::verify_consistency(m, n, &wrong, &root_n, &direct).is_err());
            // The empty tree is a prefix of every tree, whatever its root.
            let mut wrong = root_n;
            wrong[31] ^= 1;
            assert_eq!(
                merkle::verify_consistency(m, n, &root_m, &wrong, &direct).is_err(),
                m != 0
            );
        }
        assert_eq!(
            merkle::verify_consistency(n + 1, n, &root_n, &root_n, &[]),
            Err(ProofError::SizeOrder { m: n + 1, n })
        );
    }
}

/// Fake store of a huge tree: any (level, index) has a deterministic hash.
/// Counts reads so the O(log n) bound can be checked.
fn fake_node(reads: &Cell<usize>, level: u32, index: u64) -> Hash {
    reads.set(reads.get() + 1);
    let mut data = [0u8; 12];
    data[..4].copy_from_slice(&level.to_be_bytes());
    data[4..].copy_from_slice(&index.to_be_bytes());
    merkle::leaf_hash(&data)
}

#[test]
fn node_reads_are_logarithmic() {
    for size in [
        10_000_000u64,
        10_000_001,
        (1 << 40) - 1,
        1 << 40,
        u64::MAX / 3,
    ] {
        let bound = 2 * (64 - size.leading_zeros() as usize) + 2;
        let mut step = size / 997;
        step = step.max(1);
        let mut index = 0;
        while index < size {
            let reads = Cell::new(0);
            let ranges = merkle::inclusion_ranges(index, size).unwrap();
            let proof = merkle::proof_from_nodes(&ranges, |l, i| {
                Ok::<_, Infallible>(fake_node(&reads, l, i))
            })
            .unwrap();
            assert_eq!(proof.len(), ranges.len());
            assert!(
                reads.get() <= bound,
                "{} reads for {index} in {size}",
                reads.get()
            );

            let m = index.max(1);
            let reads = Cell::new(0);
            let ranges = merkle::consistency_ranges(m, size).unwrap();
            merkle::proof_from_nodes(&ranges, |l, i| Ok::<_, Infallible>(fake_node(&reads, l, i)))
                .unwrap();
            assert!(
                reads.get() <= bound,
                "{} reads for {m} -> {size}",
                reads.get()
            );
            index += step;
        }
    }
}
