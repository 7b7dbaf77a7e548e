#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The published vectors of shared/testdata.

mod common;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use signoff_ledger::merkle::{self, Hash};
use signoff_ledger::note::{Checkpoint, NoteError, SigningKey, Verifier};

fn hash(v: &serde_json::Value) -> Hash {
    hex::decode(v.as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap()
}

fn hashes(v: &serde_json::Value) -> Vec<Hash> {
    v.as_array().unwrap().iter().map(hash).collect()
}

#[test]
fn rfc6962_hashes_and_roots() {
    let d = common::testdata("rfc6962.json");
    assert_eq!(merkle::EMPTY_ROOT, hash(&d["empty_root"]));
    assert_eq!(merkle::root(&[]), hash(&d["empty_root"]));
    let leaves: Vec<Vec<u8>> = d["leaves"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| hex::decode(l.as_str().unwrap()).unwrap())
        .collect();
    let leaf_hashes: Vec<Hash> = leaves.iter().map(|l| merkle::leaf_hash(l)).collect();
    assert_eq!(leaf_hashes, hashes(&d["leaf_hashes"]));
    let roots = hashes(&d["roots"]);
    assert_eq!(roots.len(), 8);
    let mut frontier = merkle::Frontier::new();
    for (n, want) in roots.iter().enumerate() {
        assert_eq!(merkle::root(&leaf_hashes[..=n]), *want, "root of {}", n + 1);
        frontier.push(leaf_hashes[n]);
        assert_eq!(frontier.root(), *want);
    }
}

#[test]
fn rfc6962_inclusion_proofs() {
    let d = common::testdata("rfc6962.json");
    let leaf_hashes = hashes(&d["leaf_hashes"]);
    let roots = hashes(&d["roots"]);
    let cases = d["inclusion"].as_array().unwrap();
    assert_eq!(cases.len(), 36, "every (index, size) for sizes 1..=8");
    for case in cases {
        let index = case["index"].as_u64().unwrap();
        let size = case["size"].as_u64().unwrap();
        let want = hashes(&case["proof"]);
        let got = merkle::inclusion_proof(&leaf_hashes, index, size).unwrap();
        assert_eq!(got, want, "inclusion {index} in {size}");
        let root = roots[size as usize - 1];
        merkle::verify_inclusion(&leaf_hashes[index as usize], index, size, &want, &root).unwrap();
    }
}

#[test]
fn rfc6962_consistency_proofs() {
    let d = common::testdata("rfc6962.json");
    let leaf_hashes = hashes(&d["leaf_hashes"]);
    let roots = hashes(&d["roots"]);
    let cases = d["consistency"].as_array().unwrap();
    assert!(!cases.is_empty());
    for case in cases {
        let m = case["from"].as_u64().unwrap();
        let n = case["to"].as_u64().unwrap();
        let want = hashes(&case["proof"]);
        let got = merkle::consistency_proof(&leaf_hashes, m, n).unwrap();
        assert_eq!(got, want, "consistency {m} -> {n}");
        let root_m = if m == 0 {
            merkle::EMPTY_ROOT
        } else {
            roots[m as usize - 1]
        };
        merkle::verify_consistency(m, n, &root_m, &roots[n as usize - 1], &want).unwrap();
    }
}

#[test]
fn signed_note_vector() {
    let d = common::testdata("signatures.json");
    let v = &d["signed_note_ed25519"];
    let (vkey, skey, note) = (
        v["vkey"].as_str().unwrap(),
        v["skey"].as_str().unwrap(),
        v["note"].as_str().unwrap(),
    );
    let verifier = Verifier::from_vkey(vkey).unwrap();
    assert_eq!(verifier.name(), "PeterNeumann");
    assert_eq!(verifier.key_id(), 0xc74f20a3);
    let body = verifier.verify_text(note).unwrap();
    assert_eq!(
        body,
        "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
    );
    // Not a checkpoint, so verify_note refuses the body after the signature checks out.
    assert!(matches!(
        verifier.verify_note(note),
        Err(NoteError::Checkpoint(_))
    ));

    let signer = SigningKey::from_skey(skey).unwrap();
    assert_eq!(signer.vkey(), vkey);
    assert_eq!(signer.to_skey(), skey);
    assert_eq!(
        signer.sign_text(body).unwrap(),
        note,
        "ed25519 is deterministic"
    );

    // The body is signed exactly.
    let tampered = note.replacen("cryptography", "Cryptography", 1);
    assert!(matches!(
        verifier.verify_text(&tampered),
        Err(NoteError::BadSignature { .. })
    ));
}

fn checkpoint() -> Checkpoint {
    Checkpoint {
        origin: "signoff.example/ledger".into(),
        size: 1234,
        root: merkle::leaf_hash(b"root"),
    }
}

#[test]
fn checkpoint_round_trip_and_format() {
    let key = SigningKey::generate("signoff.example/ledger").unwrap();
    let c = checkpoint();
    let note = key.sign(&c);
    let body = c.to_body();
    assert!(body.starts_with("signoff.example/ledger\n1234\n"));
    let sig_line = note.strip_prefix(&format!("{body}\n")).unwrap();
    assert!(sig_line.starts_with("\u{2014} signoff.example/ledger "));
    assert!(sig_line.ends_with('\n'));
    assert_eq!(sig_line.lines().count(), 1);
    let verifier = Verifier::from_vkey(&key.vkey()).unwrap();
    assert_eq!(verifier.verify_note(&note).unwrap(), c);
}

#[test]
fn tampered_checkpoints_fail() {
    let key = SigningKey::generate("signoff.example/ledger").unwrap();
    let verifier = key.verifier();
    let note = key.sign(&checkpoint());
    let root64 = note.lines().nth(2).unwrap().to_string();
    let other_root = {
        let mut c = checkpoint();
        c.root[0] ^= 1;
        c.to_body().lines().nth(2).unwrap().to_string()
    };
    for tampered in [
        note.replacen("\n1234\n", "\n1235\n", 1),
        note.replacen(&root64, &other_root, 1),
        note.replacen("signoff.example/ledger\n", "signoff.example/ledgeR\n", 1),
    ] {
        assert!(
            matches!(
                verifier.verify_note(&tampered),
                Err(NoteError::BadSignature { .. })
            ),
            "{tampered}"
        );
    }
}

#[test]
fn wrong_key_and_malformed_notes_fail() {
    let key = SigningKey::generate("signoff.example/ledger").unwrap();
    let note = key.sign(&checkpoint());

    // Same name, another key: its key id differs, so nothing is signed by it.
    let other = SigningKey::generate("signoff.example/ledger").unwrap();
    assert!(matches!(
        other.verifier().verify_note(&note),
        Err(NoteError::NotSigned { .. })
    ));
    // Same key material, but the note names another key.
    let renamed = note.replacen("\u{2014} signoff.example/ledger", "\u{2014} other", 1);
    assert!(matches!(
        key.verifier().verify_note(&renamed),
        Err(NoteError::NotSigned { .. })
    ));

    let v = key.verifier();
    for (what, bad) in [
        ("unsigned trailer", format!("{note}extra text\n")),
        ("no final newline", note.trim_end().to_string()),
        ("no blank line", note.replacen("\n\n", "\n", 1)),
        ("no signatures", checkpoint().to_body() + "\n"),
        ("hyphen not em dash", note.replacen('\u{2014}', "-", 1)),
        ("bad base64", {
            let (head, sig) = note.rsplit_once(' ').unwrap();
            format!("{head} !{sig}")
        }),
        (
            "no space in signature line",
            note.replacen("/ledger ", "/ledger", 1),
        ),
        ("control char", note.replacen("ledger\n", "ledger\r\n", 1)),
    ] {
        assert!(
            matches!(v.verify_note(&bad), Err(NoteError::Malformed(_))),
            "{what}"
        );
    }
}

#[test]
fn accepts_extra_signatures_from_other_keys() {
    let key = SigningKey::generate("signoff.example/ledger").unwrap();
    let witness = SigningKey::generate("witness.example").unwrap();
    let c = checkpoint();
    let note = key.sign(&c);
    let witness_line = witness.sign(&c).rsplit_once("\n\n").unwrap().1.to_string();
    let cosigned = format!("{note}{witness_line}");
    assert_eq!(key.verifier().verify_note(&cosigned).unwrap(), c);
    assert_eq!(witness.verifier().verify_note(&cosigned).unwrap(), c);
    // Witness line first works too.
    let body = c.to_body();
    let log_line = note.rsplit_once("\n\n").unwrap().1;
    let reordered = format!("{body}\n{witness_line}{log_line}");
    assert_eq!(key.verifier().verify_note(&reordered).unwrap(), c);
    // A second line claiming the same key must verify too: it is not ignored.
    let mut blob = key.key_id().to_be_bytes().to_vec();
    blob.extend_from_slice(&[0u8; 64]);
    let forged = format!(
        "{note}\u{2014} signoff.example/ledger {}\n",
        B64.encode(blob)
    );
    assert!(matches!(
        key.verifier().verify_note(&forged),
        Err(NoteError::BadSignature { .. })
    ));
}
