#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Evidence bundles: a generated bundle verifies, every kind of tampering is
//! named precisely.

mod common;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use signoff_ledger::bundle::{self, BundleError};
use signoff_ledger::merkle::{self, Hash};
use signoff_ledger::note::{Checkpoint, NoteError, SigningKey};
use std::path::Path;

const ORIGIN: &str = "signoff.example/ledger";

/// A log of 20 entries; the bundle holds entries 5..=14 against the
/// checkpoint at size 20.
fn make(dir: &Path) -> SigningKey {
    let key = SigningKey::generate(ORIGIN).unwrap();
    let leaves = common::leaves(20);
    let hashes: Vec<Hash> = leaves.iter().map(|l| merkle::leaf_hash(l)).collect();
    let checkpoint = Checkpoint {
        origin: ORIGIN.into(),
        size: 20,
        root: merkle::root(&hashes),
    };
    let note = key.sign(&checkpoint);
    let entries: Vec<(u64, Vec<u8>)> = (5..15).map(|i| (i, leaves[i as usize].clone())).collect();
    let proofs: Vec<Vec<Hash>> = (5..15)
        .map(|i| merkle::inclusion_proof(&hashes, i, 20).unwrap())
        .collect();
    bundle::write_bundle(dir, &entries, &note, &proofs, &key.vkey()).unwrap();
    key
}

fn edit(dir: &Path, file: &str, f: impl FnOnce(String) -> String) {
    let path = dir.join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, f(text)).unwrap();
}

fn edit_lines(dir: &Path, f: impl FnOnce(&mut Vec<String>)) {
    edit(dir, "entries.jsonl", |text| {
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        f(&mut lines);
        lines.iter().map(|l| format!("{l}\n")).collect()
    });
}

#[test]
fn generated_bundle_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let key = make(dir.path());
    let report = bundle::verify_bundle(dir.path(), &key.vkey()).unwrap();
    assert_eq!((report.entries, report.first, report.last), (10, 5, 14));
    assert_eq!(report.checkpoint.size, 20);
    assert_eq!(report.checkpoint.origin, ORIGIN);
    for f in [
        "entries.jsonl",
        "checkpoint",
        "key.vkey",
        "README.md",
        "proofs/5.tlog-proof",
    ] {
        assert!(dir.path().join(f).is_file(), "{f}");
    }
    let readme = std::fs::read_to_string(dir.path().join("README.md")).unwrap();
    assert!(readme.contains("signoff audit verify --bundle DIR --key VKEY"));
    assert!(readme.contains("SHA-256(0x00 ‖ leaf)"));
    let proof = std::fs::read_to_string(dir.path().join("proofs/7.tlog-proof")).unwrap();
    assert!(proof.starts_with("c2sp.org/tlog-proof@v1\nindex 7\n"));
}

#[test]
fn changed_leaf_byte_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let key = make(dir.path());
    // A still-valid event with one byte changed: only the proof catches it.
    edit_lines(dir.path(), |lines| {
        let line = &lines[3];
        let b64 = line.split('"').nth(5).unwrap().to_string();
        let mut leaf = B64.decode(&b64).unwrap();
        let at = leaf.windows(8).position(|w| w == b"reviewer").unwrap();
        leaf[at] = b'R';
        lines[3] = line.replace(&b64, &B64.encode(leaf));
    });
    let err = bundle::verify_bundle(dir.path(), &key.vkey()).unwrap_err();
    assert!(
        matches!(err, BundleError::BadProof { index: 8, .. }),
        "{err}"
    );
    assert!(err
        .to_string()
        .starts_with("entry 8 is not in the signed checkpoint"));
}

#[test]
fn non_canonical_leaf_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let key = make(dir.path());
    edit_lines(dir.path(), |lines| {
        let line = &lines[0];
        let b64 = line.split('"').nth(5).unwrap().to_string();
        let leaf = String::from_utf8(B64.decode(&b64).unwrap()).unwrap();
        let spaced = leaf.replacen(":", ": ", 1);
        lines[0] = line.replace(&b64, &B64.encode(spaced));
    });
    let err = bundle::verify_bundle(dir.path(), &key.vkey()).unwrap_err();
    assert!(matches!(err, BundleError::Edited { index: 5, .. }), "{err}");
    assert!(err.to_string().contains("entry 5 was edited"), "{err}");
}

#[test]
fn removed_entry_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let key = make(dir.path());
    edit_lines(dir.path(), |lines| {
        lines.remove(4);
    });
    let err = bundle::verify_bundle(dir.path(), &key.vkey()).unwrap_err();
    assert!(
        matches!(
            err,
            BundleError::Missing {
                index: 9,
                line: 5,
                found: 10
            }
        ),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "entry 9 is missing (entries.jsonl line 5 has entry 10)"
    );
}

#[test]
fn swapped_lines_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let key = make(dir.path());
    edit_lines(dir.path(), |lines| lines.swap(2, 3));
    let err = bundle::verify_bundle(dir.path(), &key.vkey()).unwrap_err();
    assert!(
        matches!(
            err,
            BundleError::Reordered {
                index: 7,
                line: 3,
                expected: 7,
                found: 8
            }
        ),
        "{err}"
    );
    assert_eq!(err.index(), Some(7));
}

#[test]
fn moved_entry_with_rewritten_index_is_caught() {
    // Renumbering the lines after a swap keeps the sequence, but the index
    // inside each leaf (and its proof) give it away.
    let dir = tempfile::tempdir().unwrap();
    let key = make(dir.path());
    edit_lines(dir.path(), |lines| {
        let a = lines[2].split('"').nth(5).unwrap().to_string();
        let b = lines[3].split('"').nth(5).unwrap().to_string();
        lines[2] = lines[2].replace(&a, &b);
        lines[3] = lines[3].replace(&b, &a);
    });
    let err = bundle::verify_bundle(dir.path(), &key.vkey()).unwrap_err();
    assert!(matches!(err, BundleError::Edited { index: 7, .. }), "{err}");
    assert!(err.to_string().contains("leaf carries index 8"), "{err}");
}

#[test]
fn duplicate_and_malformed_lines_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let key = make(dir.path());
    edit_lines(dir.path(), |lines| {
        let l = lines[1].clone();
        lines.insert(2, l);
    });
    let err = bundle::verify_bundle(dir.path(), &key.vkey()).unwrap_err();
    assert!(
        matches!(err, BundleError::Duplicate { index: 6, line: 3 }),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    let key = make(dir.path());
    edit_lines(dir.path(), |lines| lines[4] = "{\"index\":9}".into());
    let err = bundle::verify_bundle(dir.path(), &key.vkey()).unwrap_err();
    assert!(
        matches!(err, BundleError::EntryLine { line: 5, .. }),
        "{err}"
    );

    edit(dir.path(), "entries.jsonl", |_| String::new());
    let err = bundle::verify_bundle(dir.path(), &key.vkey()).unwrap_err();
    assert!(matches!(err, BundleError::Empty), "{err}");
}

#[test]
fn altered_checkpoint_fails() {
    let dir = tempfile::tempdir().unwrap();
    let key = make(dir.path());
    edit(dir.path(), "checkpoint", |t| {
        t.replacen("\n20\n", "\n21\n", 1)
    });
    let err = bundle::verify_bundle(dir.path(), &key.vkey()).unwrap_err();
    assert!(
        matches!(err, BundleError::Checkpoint(NoteError::BadSignature { .. })),
        "{err}"
    );
    assert!(err
        .to_string()
        .starts_with("checkpoint: bad signature by key"));
}

#[test]
fn another_key_fails_even_if_bundle_says_so() {
    let dir = tempfile::tempdir().unwrap();
    make(dir.path());
    let other = SigningKey::generate(ORIGIN).unwrap();
    // The bundle's key.vkey is not trusted.
    std::fs::write(dir.path().join("key.vkey"), other.vkey()).unwrap();
    let err = bundle::verify_bundle(dir.path(), &other.vkey()).unwrap_err();
    assert!(
        matches!(err, BundleError::Checkpoint(NoteError::NotSigned { .. })),
        "{err}"
    );
    let err = bundle::verify_bundle(dir.path(), "not a key").unwrap_err();
    assert!(matches!(err, BundleError::Key(_)), "{err}");
}

#[test]
fn proof_problems_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let key = make(dir.path());
    std::fs::remove_file(dir.path().join("proofs/9.tlog-proof")).unwrap();
    let err = bundle::verify_bundle(dir.path(), &key.vkey()).unwrap_err();
    assert!(
        matches!(err, BundleError::ProofFile { index: 9, .. }),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    let key = make(dir.path());
    edit(dir.path(), "proofs/6.tlog-proof", |t| {
        let mut lines: Vec<&str> = t.split('\n').collect();
        lines.swap(2, 3);
        lines.join("\n")
    });
    let err = bundle::verify_bundle(dir.path(), &key.vkey()).unwrap_err();
    assert!(
        matches!(err, BundleError::BadProof { index: 6, .. }),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    let key = make(dir.path());
    let seven = std::fs::read_to_string(dir.path().join("proofs/7.tlog-proof")).unwrap();
    std::fs::write(dir.path().join("proofs/6.tlog-proof"), seven).unwrap();
    let err = bundle::verify_bundle(dir.path(), &key.vkey()).unwrap_err();
    assert!(
        matches!(err, BundleError::ProofFile { index: 6, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("proof is for index 7"), "{err}");
}

#[test]
fn missing_directory_is_an_io_error() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate(ORIGIN).unwrap();
    let err = bundle::verify_bundle(&dir.path().join("nope"), &key.vkey()).unwrap_err();
    assert!(matches!(err, BundleError::Io { .. }), "{err}");
    assert!(err.to_string().contains("checkpoint"), "{err}");
}
