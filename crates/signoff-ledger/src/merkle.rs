//! RFC 6962 / RFC 9162 §2.1 Merkle tree hashing and proofs.
//!
//! Hashes: `leaf_hash(d) = SHA-256(0x00 ‖ d)`, `node_hash(l, r) =
//! SHA-256(0x01 ‖ l ‖ r)`, and the root of the empty tree is `SHA-256("")`.
//! The tree over `n` leaves splits at the largest power of two `k < n`.
//!
//! # Stored perfect subtrees
//!
//! A log that stores the hash of every *perfect subtree* (level `k`, index
//! `i` covers leaves `[i·2^k, (i+1)·2^k)`) as the tree grows — exactly what
//! [`Frontier::push`] reports — can answer any proof in O(log n) reads:
//! [`inclusion_ranges`] / [`consistency_ranges`] give the leaf ranges whose
//! subtree hashes are the proof elements, [`perfect_subtrees`] splits each
//! range into stored nodes and [`range_hash`] combines them
//! ([`proof_from_nodes`] does all three).

use sha2::{Digest, Sha256};
use thiserror::Error;

/// A SHA-256 hash.
pub type Hash = [u8; 32];

/// The root of the empty tree: `SHA-256("")`.
pub const EMPTY_ROOT: Hash = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

/// A SHA-256 state that has taken the leaf prefix `0x00`: feed it leaf
/// bytes and finalize it for [`leaf_hash`] of what was fed, in pieces.
pub fn leaf_hasher() -> Sha256 {
    let mut h = Sha256::new();
    h.update([0x00]);
    h
}

/// `SHA-256(0x00 ‖ data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(data);
    h.finalize().into()
}

/// `SHA-256(0x01 ‖ left ‖ right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// Why a proof could not be built or did not verify.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProofError {
    /// The leaf index is not inside the tree.
    #[error("leaf index {index} is outside a tree of size {size}")]
    IndexOutOfRange {
        /// The requested leaf.
        index: u64,
        /// The tree size.
        size: u64,
    },
    /// A consistency proof was asked from a larger tree to a smaller one.
    #[error("old tree size {m} is larger than new tree size {n}")]
    SizeOrder {
        /// The old size.
        m: u64,
        /// The new size.
        n: u64,
    },
    /// More leaves were requested than were given.
    #[error("tree size {size} exceeds the {available} leaf hashes given")]
    NotEnoughLeaves {
        /// The requested size.
        size: u64,
        /// How many leaf hashes there are.
        available: usize,
    },
    /// The proof has the wrong number of hashes for these sizes.
    #[error("proof has {got} hashes, expected {expected}")]
    WrongLength {
        /// Number of hashes the sizes imply.
        expected: usize,
        /// Number of hashes given.
        got: usize,
    },
    /// The recomputed root differs from the expected one.
    #[error("proof does not lead to the expected root of tree size {size}")]
    RootMismatch {
        /// The tree whose root did not match.
        size: u64,
    },
}

/// Why a [`Frontier`] could not be restored.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("a frontier of size {size} has {expected} nodes, got {got}")]
pub struct FrontierError {
    /// The tree size.
    pub size: u64,
    /// `size.count_ones()`.
    pub expected: usize,
    /// Nodes given.
    pub got: usize,
}

/// MTH over `leaves` (already leaf-hashed).
pub fn root(leaves: &[Hash]) -> Hash {
    let mut f = Frontier::new();
    for l in leaves {
        f.append(*l);
    }
    f.root()
}

/// The right edge of a tree: the hashes of the maximal perfect subtrees
/// covering leaves `[0, size)`, left to right (one per set bit of `size`,
/// highest level first). Enough to keep appending and to compute the root.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    nodes: Vec<Hash>,
}

impl Frontier {
    /// The empty tree.
    pub fn new() -> Self {
        Frontier {
            size: 0,
            nodes: Vec::with_capacity(64),
        }
    }

    /// Restores a frontier persisted with [`Frontier::size`] and
    /// [`Frontier::nodes`].
    pub fn from_nodes(size: u64, nodes: Vec<Hash>) -> Result<Self, FrontierError> {
        let expected = size.count_ones() as usize;
        if nodes.len() != expected {
            return Err(FrontierError {
                size,
                expected,
                got: nodes.len(),
            });
        }
        Ok(Frontier { size, nodes })
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The subtree hashes, left to right. The `i`-th covers the `i`-th set
    /// bit of `size` counted from the most significant one; see
    /// [`Frontier::levels`].
    pub fn nodes(&self) -> &[Hash] {
        &self.nodes
    }

    /// `(level, index, hash)` of each node in [`Frontier::nodes`].
    pub fn levels(&self) -> Vec<(u32, u64, Hash)> {
        let mut start = 0u64;
        let mut out = Vec::with_capacity(self.nodes.len());
        let mut bits = (0..64u32).rev().filter(|b| self.size >> b & 1 == 1);
        for h in &self.nodes {
            if let Some(level) = bits.next() {
                out.push((level, start >> level, *h));
                start += 1 << level;
            }
        }
        out
    }

    /// Appends a leaf hash without reporting completed subtrees.
    pub fn append(&mut self, leaf_hash: Hash) {
        let mut h = leaf_hash;
        let mut level = 0;
        while self.size >> level & 1 == 1 {
            if let Some(left) = self.nodes.pop() {
                h = node_hash(&left, &h);
            }
            level += 1;
        }
        self.nodes.push(h);
        self.size += 1;
    }

    /// Appends a leaf hash and returns every perfect subtree it completes as
    /// `(level, index, hash)`, the leaf itself (level 0) first. Storing these
    /// is what makes [`proof_from_nodes`] possible.
    pub fn push(&mut self, leaf_hash: Hash) -> Vec<(u32, u64, Hash)> {
        let mut out = Vec::with_capacity(1 + self.size.trailing_ones() as usize);
        let mut h = leaf_hash;
        let mut level = 0u32;
        let mut index = self.size;
        out.push((0, index, h));
        while self.size >> level & 1 == 1 {
            if let Some(left) = self.nodes.pop() {
                h = node_hash(&left, &h);
            }
            level += 1;
            index >>= 1;
            out.push((level, index, h));
        }
        self.nodes.push(h);
        self.size += 1;
        out
    }

    /// The RFC 6962 root of the tree so far.
    pub fn root(&self) -> Hash {
        range_hash(&self.nodes)
    }
}

/// The maximal aligned perfect subtrees `(level, index)` covering leaves
/// `[start, end)`, left to right. Empty when `start >= end`.
pub fn perfect_subtrees(start: u64, end: u64) -> Vec<(u32, u64)> {
    let mut out = Vec::new();
    let mut start = start;
    while start < end {
        let fit = 63 - (end - start).leading_zeros();
        let level = start.trailing_zeros().min(fit);
        out.push((level, start >> level));
        start += 1 << level;
    }
    out
}

/// Combines the hashes of [`perfect_subtrees`]`(start, end)`, in that order,
/// into the RFC 6962 hash of leaves `[start, end)`. Correct when the range
/// is a subtree of the RFC tree (`start` a multiple of the smallest power of
/// two `>= end - start`), which holds for every range this module returns:
/// the parts then shrink left to right and RFC 6962 folds them from the
/// right. Returns [`EMPTY_ROOT`] for no parts.
pub fn range_hash(parts: &[Hash]) -> Hash {
    let Some((last, rest)) = parts.split_last() else {
        return EMPTY_ROOT;
    };
    rest.iter().rev().fold(*last, |acc, h| node_hash(h, &acc))
}

/// Largest power of two strictly below `n` (`n >= 2`).
fn split(n: u64) -> u64 {
    1 << (63 - (n - 1).leading_zeros())
}

/// The leaf ranges whose subtree hashes form the inclusion proof
/// `PATH(index, D[0:size])` of RFC 9162 §2.1.3.1, in proof order (the leaf's
/// sibling first).
pub fn inclusion_ranges(index: u64, size: u64) -> Result<Vec<(u64, u64)>, ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let mut out = Vec::with_capacity(64);
    let (mut lo, mut hi) = (0u64, size);
    while hi - lo > 1 {
        let k = split(hi - lo);
        if index < lo + k {
            out.push((lo + k, hi));
            hi = lo + k;
        } else {
            out.push((lo, lo + k));
            lo += k;
        }
    }
    out.reverse();
    Ok(out)
}

/// The leaf ranges whose subtree hashes form the consistency proof
/// `PROOF(m, D[0:n])` of RFC 9162 §2.1.4.1, in proof order. Empty when
/// `m == 0` or `m == n`.
pub fn consistency_ranges(m: u64, n: u64) -> Result<Vec<(u64, u64)>, ProofError> {
    if m > n {
        return Err(ProofError::SizeOrder { m, n });
    }
    let mut out = Vec::with_capacity(64);
    if m == 0 || m == n {
        return Ok(out);
    }
    // SUBPROOF(m, D[lo:hi], b), unrolled: the recursion only ever descends
    // into one child, so the proof is that path's siblings plus, unless b
    // stayed true, the node where m lands exactly.
    let (mut lo, mut hi, mut m_rel, mut whole) = (0u64, n, m, true);
    while m_rel != hi - lo {
        let k = split(hi - lo);
        if m_rel <= k {
            out.push((lo + k, hi));
            hi = lo + k;
        } else {
            out.push((lo, lo + k));
            lo += k;
            m_rel -= k;
            whole = false;
        }
    }
    if !whole {
        out.push((lo, hi));
    }
    out.reverse();
    Ok(out)
}

/// Builds proof hashes from stored perfect-subtree hashes: for each range,
/// reads the nodes of [`perfect_subtrees`] through `get(level, index)` and
/// combines them with [`range_hash`].
pub fn proof_from_nodes<E>(
    ranges: &[(u64, u64)],
    mut get: impl FnMut(u32, u64) -> Result<Hash, E>,
) -> Result<Vec<Hash>, E> {
    let mut proof = Vec::with_capacity(ranges.len());
    let mut parts = Vec::with_capacity(64);
    for &(start, end) in ranges {
        parts.clear();
        for (level, index) in perfect_subtrees(start, end) {
            parts.push(get(level, index)?);
        }
        proof.push(range_hash(&parts));
    }
    Ok(proof)
}

fn check_leaves(leaves: &[Hash], size: u64) -> Result<(), ProofError> {
    if size > leaves.len() as u64 {
        return Err(ProofError::NotEnoughLeaves {
            size,
            available: leaves.len(),
        });
    }
    Ok(())
}

fn ranges_from_leaves(leaves: &[Hash], ranges: &[(u64, u64)]) -> Vec<Hash> {
    ranges
        .iter()
        .map(|&(a, b)| root(&leaves[a as usize..b as usize]))
        .collect()
}

/// The inclusion proof of leaf `index` in the tree of the first `size` of
/// `leaves`, computed directly from the leaf hashes (O(size)).
pub fn inclusion_proof(leaves: &[Hash], index: u64, size: u64) -> Result<Vec<Hash>, ProofError> {
    check_leaves(leaves, size)?;
    Ok(ranges_from_leaves(leaves, &inclusion_ranges(index, size)?))
}

/// The consistency proof between the trees of the first `m` and first `n`
/// of `leaves`, computed directly from the leaf hashes (O(n)).
pub fn consistency_proof(leaves: &[Hash], m: u64, n: u64) -> Result<Vec<Hash>, ProofError> {
    check_leaves(leaves, n)?;
    Ok(ranges_from_leaves(leaves, &consistency_ranges(m, n)?))
}

/// Verifies an inclusion proof (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(
    leaf_hash: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    // The proof length is fixed by (index, size); checking it up front gives
    // a clearer error than a root mismatch and bounds the work.
    let expected = inclusion_len(index, size);
    if proof.len() != expected {
        return Err(ProofError::WrongLength {
            expected,
            got: proof.len(),
        });
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf_hash;
    for p in proof {
        if snode == 0 {
            return Err(ProofError::WrongLength {
                expected,
                got: proof.len(),
            });
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 || r != *root {
        return Err(ProofError::RootMismatch { size });
    }
    Ok(())
}

fn inclusion_len(index: u64, size: u64) -> usize {
    // Levels below the point where index's path leaves the right edge are
    // full; above it, only the levels where the right edge has a sibling.
    let inner = 64 - (index ^ (size - 1)).leading_zeros();
    let border = ((index >> inner).count_ones()) as usize;
    inner as usize + border
}

/// Verifies a consistency proof between `root_m` (size `m`) and `root_n`
/// (size `n`) (RFC 9162 §2.1.4.2). From the empty tree only `EMPTY_ROOT`
/// with an empty proof is accepted; equal sizes need equal roots and an
/// empty proof.
pub fn verify_consistency(
    m: u64,
    n: u64,
    root_m: &Hash,
    root_n: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if m > n {
        return Err(ProofError::SizeOrder { m, n });
    }
    if m == 0 || m == n {
        if !proof.is_empty() {
            return Err(ProofError::WrongLength {
                expected: 0,
                got: proof.len(),
            });
        }
        if m == 0 && *root_m != EMPTY_ROOT {
            return Err(ProofError::RootMismatch { size: 0 });
        }
        if m == n && root_m != root_n {
            return Err(ProofError::RootMismatch { size: n });
        }
        return Ok(());
    }
    let expected = consistency_ranges(m, n)?.len();
    if proof.len() != expected {
        return Err(ProofError::WrongLength {
            expected,
            got: proof.len(),
        });
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if m.is_power_of_two() {
        path.push(*root_m);
    }
    path.extend_from_slice(proof);
    let (mut fnode, mut snode) = (m - 1, n - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let Some((first, rest)) = path.split_first() else {
        return Err(ProofError::WrongLength { expected, got: 0 });
    };
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if snode == 0 {
            return Err(ProofError::WrongLength {
                expected,
                got: proof.len(),
            });
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if fr != *root_m {
        return Err(ProofError::RootMismatch { size: m });
    }
    if snode != 0 || sr != *root_n {
        return Err(ProofError::RootMismatch { size: n });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: u64) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
    }

    /// Straight transcription of RFC 9162 MTH, as an independent reference.
    fn mth(d: &[Hash]) -> Hash {
        match d.len() {
            0 => EMPTY_ROOT,
            1 => d[0],
            n => {
                let k = split(n as u64) as usize;
                node_hash(&mth(&d[..k]), &mth(&d[k..]))
            }
        }
    }

    #[test]
    fn empty_root_is_sha256_of_nothing() {
        assert_eq!(EMPTY_ROOT, <[u8; 32]>::from(Sha256::digest(b"")));
        assert_eq!(root(&[]), EMPTY_ROOT);
    }

    #[test]
    fn roots_match_reference() {
        let l = leaves(70);
        for n in 0..=70 {
            assert_eq!(root(&l[..n]), mth(&l[..n]), "size {n}");
        }
    }

    #[test]
    fn perfect_subtrees_cover_exactly() {
        for start in 0..40u64 {
            for end in start..80u64 {
                let parts = perfect_subtrees(start, end);
                let mut at = start;
                for (level, index) in parts {
                    assert_eq!(index << level, at);
                    at += 1 << level;
                }
                assert_eq!(at, end);
            }
        }
        assert_eq!(perfect_subtrees(0, u64::MAX).len(), 64);
    }

    #[test]
    fn frontier_push_reports_every_perfect_subtree() {
        let l = leaves(70);
        let mut f = Frontier::new();
        let mut seen = std::collections::HashMap::new();
        for (i, h) in l.iter().enumerate() {
            for (level, index, hash) in f.push(*h) {
                let start = (index << level) as usize;
                assert_eq!(hash, mth(&l[start..start + (1 << level)]));
                assert!(seen.insert((level, index), hash).is_none());
            }
            assert_eq!(f.size(), i as u64 + 1);
            assert_eq!(f.root(), mth(&l[..=i]));
            let restored = Frontier::from_nodes(f.size(), f.nodes().to_vec()).unwrap();
            assert_eq!(restored, f);
            for (level, index, hash) in f.levels() {
                assert_eq!(seen[&(level, index)], hash);
            }
        }
        // Every perfect subtree inside [0, 70) was reported once.
        let expected: usize = (0..7).map(|k| 70 >> k).sum();
        assert_eq!(seen.len(), expected);
        assert_eq!(
            Frontier::from_nodes(3, vec![[0; 32]]),
            Err(FrontierError {
                size: 3,
                expected: 2,
                got: 1
            })
        );
    }

    #[test]
    fn ranges_errors() {
        assert_eq!(
            inclusion_ranges(5, 5),
            Err(ProofError::IndexOutOfRange { index: 5, size: 5 })
        );
        assert_eq!(
            consistency_ranges(6, 5),
            Err(ProofError::SizeOrder { m: 6, n: 5 })
        );
        assert_eq!(consistency_ranges(0, 5), Ok(vec![]));
        assert_eq!(consistency_ranges(5, 5), Ok(vec![]));
        assert!(matches!(
            inclusion_proof(&leaves(3), 0, 4),
            Err(ProofError::NotEnoughLeaves { .. })
        ));
    }

    #[test]
    fn inclusion_len_matches_ranges() {
        for size in 1..300u64 {
            for index in 0..size {
                assert_eq!(
                    inclusion_len(index, size),
                    inclusion_ranges(index, size).unwrap().len()
                );
            }
        }
    }
}
