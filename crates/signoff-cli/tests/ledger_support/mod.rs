//! Ledger helpers shared by `tests/ledger_api.rs` and `tests/crash.rs`:
//! fetch and verify checkpoints and entries over the real HTTP API, twice —
//! with signoff's own `signoff_ledger` code and with an implementation written
//! independently of it (Cloudflare azul's `signed_note` and `tlog_tiles`, a
//! port of Go's `golang.org/x/mod/sumdb/{note,tlog}`), so a bug shared by our
//! server and our verifier cannot pass unnoticed.
#![allow(dead_code)]

use crate::common::{poll, Gateway};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::Value;
use signoff_ledger::merkle::{self, Hash};
use signoff_ledger::note::Verifier;
use std::time::Duration;

/// A checkpoint served by `/v1/ledger/checkpoint`, verified both ways.
#[derive(Debug, Clone)]
pub struct Cp {
    /// The signed note, verbatim.
    pub note: String,
    /// Its origin line.
    pub origin: String,
    /// Tree size.
    pub size: u64,
    /// Root hash.
    pub root: Hash,
}

/// One entry of `/v1/ledger/entries`.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Its index.
    pub index: u64,
    /// The exact leaf bytes (base64-decoded).
    pub leaf: Vec<u8>,
    /// The entry as served.
    pub json: Value,
}

/// `GET /v1/ledger/key` as `who`: the verifier key line (no newline).
pub fn vkey(gw: &Gateway, who: &str) -> String {
    let r = gw.get_as(who, "/v1/ledger/key");
    assert_eq!(r.status, 200, "{}: {}", r.what, r.body);
    assert_eq!(r.content_type(), "text/plain; charset=utf-8", "{}", r.what);
    assert!(
        r.body.ends_with('\n') && r.body.lines().count() == 1,
        "{:?}",
        r.body
    );
    r.body.trim_end().to_owned()
}

/// Verifies `note` with signoff's verifier and with azul's, requires them to
/// agree on origin, size and root, and returns the checkpoint.
pub fn verify_note(vkey: &str, note: &str) -> Cp {
    let ours = Verifier::from_vkey(vkey)
        .unwrap_or_else(|e| panic!("vkey {vkey:?} rejected by signoff_ledger: {e}"))
        .verify_note(note)
        .unwrap_or_else(|e| panic!("note rejected by signoff_ledger: {e}\n{note}"));
    let (origin, size, root) = independent_verify_note(vkey, note);
    assert_eq!(
        (origin.as_str(), size, root),
        (ours.origin.as_str(), ours.size, ours.root),
        "the two verifiers read the checkpoint differently:\n{note}"
    );
    Cp {
        note: note.to_owned(),
        origin,
        size,
        root,
    }
}

/// Verifies a signed checkpoint note with azul's `signed_note` (C2SP
/// signed-note) and parses it with `tlog_tiles` (C2SP tlog-checkpoint).
pub fn independent_verify_note(vkey: &str, note: &str) -> (String, u64, Hash) {
    let verifier = signed_note::StandardVerifier::new(vkey)
        .unwrap_or_else(|e| panic!("azul signed_note rejects vkey {vkey:?}: {e:?}"));
    let parsed = signed_note::Note::from_bytes(note.as_bytes())
        .unwrap_or_else(|e| panic!("azul signed_note cannot parse the note: {e:?}\n{note}"));
    let (verified, _) = parsed
        .verify(&signed_note::VerifierList::new(vec![Box::new(verifier)]))
        .unwrap_or_else(|e| panic!("azul signed_note does not verify the note: {e:?}\n{note}"));
    assert_eq!(verified.len(), 1, "one signature by the log key expected");
    let cp = tlog_tiles::Checkpoint::from_bytes(parsed.text())
        .unwrap_or_else(|e| panic!("azul tlog_tiles: not a checkpoint body ({e}):\n{note}"));
    assert_eq!(
        cp.extension(),
        "",
        "signoff checkpoints carry no extension lines"
    );
    (cp.origin().to_owned(), cp.size(), cp.hash().0)
}

/// `GET /v1/ledger/checkpoint` as `who`, verified; `None` while there is none (404).
pub fn checkpoint(gw: &Gateway, who: &str, vkey: &str) -> Option<Cp> {
    let r = gw.get_as(who, "/v1/ledger/checkpoint");
    if r.status == 404 {
        r.assert_problem(404);
        return None;
    }
    assert_eq!(r.status, 200, "{}: {}", r.what, r.body);
    assert_eq!(r.content_type(), "text/plain; charset=utf-8", "{}", r.what);
    Some(verify_note(vkey, &r.body))
}

/// Polls (≤ 10 s) until the latest checkpoint covers at least `size` entries.
pub fn wait_checkpoint(gw: &Gateway, who: &str, vkey: &str, size: u64) -> Cp {
    poll(Duration::from_secs(10), Duration::from_millis(100), || {
        checkpoint(gw, who, vkey).filter(|cp| cp.size >= size)
    })
    .unwrap_or_else(|| {
        panic!(
            "no checkpoint covering {size} entries within 10s (checkpoints are due ≤ 1s after an append); latest: {:?}",
            checkpoint(gw, who, vkey).map(|c| c.size)
        )
    })
}

/// One page of `/v1/ledger/entries?start=S[&end=E]`: entries and `next`.
pub fn entries_page(
    gw: &Gateway,
    who: &str,
    start: u64,
    end: Option<u64>,
) -> (Vec<Entry>, Option<u64>) {
    let path = match end {
        Some(e) => format!("/v1/ledger/entries?start={start}&end={e}"),
        None => format!("/v1/ledger/entries?start={start}"),
    };
    let page = gw.get_as(who, &path).expect(200);
    let next = match &page["next"] {
        Value::Null => None,
        v => Some(v.as_u64().unwrap_or_else(|| panic!("{path}: bad next {v}"))),
    };
    let entries = page["entries"]
        .as_array()
        .unwrap_or_else(|| panic!("{path}: no entries array: {page}"))
        .iter()
        .map(|e| Entry {
            index: e["index"]
                .as_u64()
                .unwrap_or_else(|| panic!("{path}: bad index in {e}")),
            leaf: B64
                .decode(
                    e["leaf"]
                        .as_str()
                        .unwrap_or_else(|| panic!("{path}: no leaf in {e}")),
                )
                .unwrap_or_else(|err| panic!("{path}: leaf is not standard base64 ({err}): {e}")),
            json: e.clone(),
        })
        .collect();
    (entries, next)
}

/// Entries `[0, end)` (or up to the current size), following `next`; checks
/// the pages are dense and each but the last is exactly 1,000 entries.
pub fn all_entries(gw: &Gateway, who: &str, end: Option<u64>) -> Vec<Entry> {
    let mut all = Vec::new();
    let mut start = 0;
    loop {
        let (page, next) = entries_page(gw, who, start, end);
        for (i, e) in page.iter().enumerate() {
            assert_eq!(e.index, start + i as u64, "entry indexes are not dense");
        }
        let got = page.len() as u64;
        all.extend(page);
        match next {
            Some(n) => {
                assert_eq!(got, 1000, "a page with `next` must be full");
                assert_eq!(n, start + got, "`next` must follow the page");
                start = n;
            }
            None => return all,
        }
    }
}

/// Checks each leaf decodes strictly, carries its own index, and matches the
/// decoded fields served beside it; returns the leaf hashes.
pub fn check_leaves(entries: &[Entry]) -> Vec<Hash> {
    entries
        .iter()
        .map(|e| {
            let event = signoff_ledger::leaf::decode(&e.leaf)
                .unwrap_or_else(|err| panic!("entry {}: leaf does not decode: {err}", e.index));
            assert_eq!(event.index, Some(e.index), "entry {}: leaf index", e.index);
            let served: signoff_core::wire::LedgerEntry = serde_json::from_value(e.json.clone())
                .unwrap_or_else(|err| {
                    panic!("entry {}: not a LedgerEntry ({err}): {}", e.index, e.json)
                });
            assert_eq!(
                served.event(),
                event,
                "entry {}: decoded fields differ from the leaf",
                e.index
            );
            merkle::leaf_hash(&e.leaf)
        })
        .collect()
}

/// The RFC 6962 root over `leaves`, computed by azul's `tlog_tiles` (Go's
/// stored-hash algorithm), not by `signoff_ledger`.
pub fn independent_root(leaves: &[Vec<u8>]) -> Hash {
    struct Stored(Vec<tlog_tiles::Hash>);
    impl tlog_tiles::HashReader for Stored {
        fn read_hashes(
            &self,
            indexes: &[u64],
        ) -> Result<Vec<tlog_tiles::Hash>, tlog_tiles::tlog::Error> {
            indexes
                .iter()
                .map(|&i| {
                    self.0
                        .get(usize::try_from(i).unwrap_or(usize::MAX))
                        .copied()
                        .ok_or(tlog_tiles::tlog::Error::IndexesNotInTree)
                })
                .collect()
        }
    }
    let mut stored = Stored(Vec::new());
    for (n, leaf) in leaves.iter().enumerate() {
        let new = tlog_tiles::stored_hashes(n as u64, leaf, &stored).expect("stored hashes");
        stored.0.extend(new);
    }
    tlog_tiles::tree_hash(leaves.len() as u64, &stored)
        .expect("tree hash")
        .0
}

/// Decodes a `{"hashes": [...]}` proof.
pub fn proof_hashes(v: &Value) -> Vec<Hash> {
    v["hashes"]
        .as_array()
        .unwrap_or_else(|| panic!("no hashes array: {v}"))
        .iter()
        .map(|h| {
            let bytes = B64
                .decode(
                    h.as_str()
                        .unwrap_or_else(|| panic!("hash is not a string: {h}")),
                )
                .unwrap_or_else(|e| panic!("hash {h} is not standard base64: {e}"));
            <[u8; 32]>::try_from(bytes.as_slice())
                .unwrap_or_else(|_| panic!("hash {h} is not 32 bytes"))
        })
        .collect()
}

fn azul(hashes: &[Hash]) -> Vec<tlog_tiles::Hash> {
    hashes.iter().map(|h| tlog_tiles::Hash(*h)).collect()
}

/// Fetches the inclusion proof of `entry` in `cp` and verifies it with both
/// implementations.
pub fn check_inclusion(gw: &Gateway, who: &str, entry: &Entry, cp: &Cp) {
    let path = format!(
        "/v1/ledger/proof/inclusion?index={}&size={}",
        entry.index, cp.size
    );
    let proof = proof_hashes(&gw.get_as(who, &path).expect(200));
    merkle::verify_inclusion(
        &merkle::leaf_hash(&entry.leaf),
        entry.index,
        cp.size,
        &proof,
        &cp.root,
    )
    .unwrap_or_else(|e| panic!("{path}: signoff_ledger rejects the proof: {e}"));
    tlog_tiles::check_record(
        &azul(&proof),
        cp.size,
        tlog_tiles::Hash(cp.root),
        entry.index,
        tlog_tiles::record_hash(&entry.leaf),
    )
    .unwrap_or_else(|e| panic!("{path}: azul tlog_tiles rejects the proof: {e:?}"));
}

/// Fetches the consistency proof from `old` to `new` and verifies it with
/// both implementations.
pub fn check_consistency(gw: &Gateway, who: &str, old: &Cp, new: &Cp) {
    let path = format!(
        "/v1/ledger/proof/consistency?from={}&to={}",
        old.size, new.size
    );
    let proof = proof_hashes(&gw.get_as(who, &path).expect(200));
    merkle::verify_consistency(old.size, new.size, &old.root, &new.root, &proof)
        .unwrap_or_else(|e| panic!("{path}: signoff_ledger rejects the proof: {e}"));
    tlog_tiles::check_tree(
        &azul(&proof),
        new.size,
        tlog_tiles::Hash(new.root),
        old.size,
        tlog_tiles::Hash(old.root),
    )
    .unwrap_or_else(|e| panic!("{path}: azul tlog_tiles rejects the proof: {e:?}"));
}
