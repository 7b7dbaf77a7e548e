#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Replaying a log with LogVerifier.

mod common;

use signoff_ledger::merkle::{self, Frontier};
use signoff_ledger::note::Checkpoint;
use signoff_ledger::verify::{LogVerifier, VerifyError};

fn checkpoint(leaves: &[Vec<u8>]) -> Checkpoint {
    let hashes: Vec<_> = leaves.iter().map(|l| merkle::leaf_hash(l)).collect();
    Checkpoint {
        origin: "o".into(),
        size: leaves.len() as u64,
        root: merkle::root(&hashes),
    }
}

#[test]
fn replays_and_checks_checkpoints() {
    let leaves = common::leaves(33);
    let mut v = LogVerifier::new();
    for (i, l) in leaves.iter().enumerate() {
        v.push(i as u64, l).unwrap();
        v.check_checkpoint(&checkpoint(&leaves[..=i])).unwrap();
    }
    assert_eq!(v.size(), 33);
    assert!(matches!(
        v.check_checkpoint(&checkpoint(&leaves[..32])),
        Err(VerifyError::SizeMismatch {
            checkpoint: 32,
            verified: 33
        })
    ));
    let mut wrong = checkpoint(&leaves);
    wrong.root[0] ^= 1;
    assert!(matches!(
        v.check_checkpoint(&wrong),
        Err(VerifyError::RootMismatch { size: 33 })
    ));
}

#[test]
fn resumes_from_frontier() {
    let leaves = common::leaves(20);
    let mut v = LogVerifier::new();
    for (i, l) in leaves[..12].iter().enumerate() {
        v.push(i as u64, l).unwrap();
    }
    let saved = v.frontier().clone();
    let mut resumed =
        LogVerifier::resume(Frontier::from_nodes(saved.size(), saved.nodes().to_vec()).unwrap());
    for (i, l) in leaves.iter().enumerate().skip(12) {
        resumed.push(i as u64, l).unwrap();
    }
    resumed.check_checkpoint(&checkpoint(&leaves)).unwrap();
}

#[test]
fn rejects_gaps_bad_leaves_and_wrong_indexes() {
    let leaves = common::leaves(3);
    let mut v = LogVerifier::new();
    v.push(0, &leaves[0]).unwrap();
    assert!(matches!(
        v.push(2, &leaves[2]),
        Err(VerifyError::OutOfOrder {
            expected: 1,
            got: 2
        })
    ));
    assert!(matches!(
        v.push(1, &leaves[2]),
        Err(VerifyError::IndexMismatch {
            index: 1,
            found: Some(2)
        })
    ));
    let mut edited = leaves[1].clone();
    edited.push(b' ');
    let err = v.push(1, &edited).unwrap_err();
    assert!(matches!(err, VerifyError::Leaf { index: 1, .. }));
    assert!(err.to_string().starts_with("entry 1 does not decode"));
    // Failed pushes change nothing.
    assert_eq!(v.size(), 1);
    v.push(1, &leaves[1]).unwrap();
}
