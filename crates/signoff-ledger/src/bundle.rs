//! Offline evidence bundles: a contiguous period of the ledger with
//! everything needed to check it without the server.
//!
//! A bundle is a directory:
//!
//! | file | content |
//! | --- | --- |
//! | `entries.jsonl` | one line per entry, by increasing consecutive index: `{"index":N,"leaf":"<standard base64 of the exact leaf bytes>"}` (see [`crate::leaf`]) |
//! | `checkpoint` | the signed checkpoint note covering every entry (C2SP tlog-checkpoint, Ed25519 signed-note) |
//! | `proofs/<N>.tlog-proof` | inclusion proof of entry N in that checkpoint ([`crate::proof_format`]); its embedded note is the `checkpoint` file verbatim |
//! | `key.vkey` | the log's verifier key, for convenience only: auditors must verify with a key obtained independently |
//! | `README.md` | how to verify |
//!
//! This is the only module of the crate that touches the file system, and
//! only in [`write_bundle`] and the reading half of [`verify_bundle`]; the
//! checks themselves run on the file contents.

use crate::leaf::{self, LeafError};
use crate::merkle::{self, Hash, ProofError};
use crate::note::{Checkpoint, NoteError, Verifier};
use crate::proof_format::{self, ProofFormatError};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::Deserialize;
use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Entries file name.
pub const ENTRIES_FILE: &str = "entries.jsonl";
/// Checkpoint file name.
pub const CHECKPOINT_FILE: &str = "checkpoint";
/// Proofs directory name.
pub const PROOFS_DIR: &str = "proofs";
/// Verifier key file name.
pub const VKEY_FILE: &str = "key.vkey";
/// Instructions file name.
pub const README_FILE: &str = "README.md";

/// What a verified bundle covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleReport {
    /// The verified checkpoint.
    pub checkpoint: Checkpoint,
    /// Number of entries.
    pub entries: usize,
    /// Index of the first entry.
    pub first: u64,
    /// Index of the last entry.
    pub last: u64,
}

/// Why a bundle does not verify. Entry errors name the first failing index.
#[derive(Debug, Error)]
pub enum BundleError {
    /// A bundle file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The verifier key given by the auditor is unusable.
    #[error("verifier key: {0}")]
    Key(NoteError),
    /// The checkpoint is not signed by the given key or is malformed.
    #[error("checkpoint: {0}")]
    Checkpoint(NoteError),
    /// A line of `entries.jsonl` is not an entry object.
    #[error("entries.jsonl line {line}: {reason}")]
    EntryLine {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// `entries.jsonl` has no entries.
    #[error("entries.jsonl has no entries")]
    Empty,
    /// An index is absent from the otherwise contiguous sequence.
    #[error("entry {index} is missing (entries.jsonl line {line} has entry {found})")]
    Missing {
        /// The missing index.
        index: u64,
        /// Where it was expected.
        line: usize,
        /// What is there instead.
        found: u64,
    },
    /// An entry is not where the consecutive sequence needs it.
    #[error("entry {index} is out of order (entries.jsonl line {line} should have entry {expected}, has {found})")]
    Reordered {
        /// The misplaced entry.
        index: u64,
        /// The line where the sequence breaks.
        line: usize,
        /// The index that line should have.
        expected: u64,
        /// The index it has.
        found: u64,
    },
    /// An index appears twice.
    #[error("entry {index} appears twice (again at entries.jsonl line {line})")]
    Duplicate {
        /// The repeated index.
        index: u64,
        /// The second occurrence.
        line: usize,
    },
    /// The entry is beyond the checkpoint's tree.
    #[error("entry {index} is not covered by the checkpoint of size {size}")]
    NotCovered {
        /// The entry.
        index: u64,
        /// Checkpoint size.
        size: u64,
    },
    /// The leaf is not a valid event: it was edited.
    #[error("entry {index} was edited: {reason}")]
    Edited {
        /// The entry.
        index: u64,
        /// What is wrong with the leaf.
        reason: String,
    },
    /// The proof file is missing or unusable.
    #[error("entry {index}: proof file {}: {reason}", path.display())]
    ProofFile {
        /// The entry.
        index: u64,
        /// The proof file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The proof does not connect the leaf to the signed root.
    #[error("entry {index} is not in the signed checkpoint (entry edited or bad proof): {source}")]
    BadProof {
        /// The entry.
        index: u64,
        /// Details.
        source: ProofError,
    },
}

impl BundleError {
    /// The entry the error is about, if any.
    pub fn index(&self) -> Option<u64> {
        match self {
            BundleError::Missing { index, .. }
            | BundleError::Reordered { index, .. }
            | BundleError::Duplicate { index, .. }
            | BundleError::NotCovered { index, .. }
            | BundleError::Edited { index, .. }
            | BundleError::ProofFile { index, .. }
            | BundleError::BadProof { index, .. } => Some(*index),
            _ => None,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryLine {
    index: u64,
    leaf: String,
}

/// Writes a bundle into `dir` (created if needed): `entries` are
/// `(index, leaf bytes)` in order, `proofs[i]` is the inclusion proof of
/// `entries[i]` in the checkpoint `note`, `vkey` the log's verifier key.
pub fn write_bundle(
    dir: &Path,
    entries: &[(u64, Vec<u8>)],
    note: &str,
    proofs: &[Vec<Hash>],
    vkey: &str,
) -> io::Result<()> {
    if entries.len() != proofs.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} entries but {} proofs", entries.len(), proofs.len()),
        ));
    }
    std::fs::create_dir_all(dir.join(PROOFS_DIR))?;
    let mut jsonl = String::new();
    for (index, leaf) in entries {
        // Base64 needs no JSON escaping, so the line is built directly.
        jsonl.push_str(&format!(
            "{{\"index\":{index},\"leaf\":\"{}\"}}\n",
            B64.encode(leaf)
        ));
    }
    std::fs::write(dir.join(ENTRIES_FILE), jsonl)?;
    std::fs::write(dir.join(CHECKPOINT_FILE), note)?;
    for ((index, _), proof) in entries.iter().zip(proofs) {
        std::fs::write(
            proof_path(dir, *index),
            proof_format::write(*index, proof, note),
        )?;
    }
    std::fs::write(dir.join(VKEY_FILE), format!("{}\n", vkey.trim()))?;
    std::fs::write(dir.join(README_FILE), readme(entries))?;
    Ok(())
}

fn proof_path(dir: &Path, index: u64) -> PathBuf {
    dir.join(PROOFS_DIR).join(format!("{index}.tlog-proof"))
}

fn readme(entries: &[(u64, Vec<u8>)]) -> String {
    let range = match (entries.first(), entries.last()) {
        (Some((a, _)), Some((b, _))) => format!("entries {a} to {b}"),
        _ => "no entries".to_string(),
    };
    format!(
        "# signoff evidence bundle\n\
         \n\
         This directory holds {range} of a signoff ledger and the proof that \
         they are part of the log the signed checkpoint commits to.\n\
         \n\
         - `entries.jsonl`: one entry per line, `{{\"index\":N,\"leaf\":\"BASE64\"}}`, \
         indexes consecutive. The leaf is the exact logged bytes: the line \
         `signoff-event-v1`, a newline, then the event as RFC 8785 canonical JSON \
         (its `index` member equals N).\n\
         - `checkpoint`: the log's signed checkpoint (C2SP tlog-checkpoint in an \
         Ed25519 C2SP signed-note): origin, tree size, base64 Merkle root, a blank \
         line, signature lines.\n\
         - `proofs/N.tlog-proof`: the inclusion proof of entry N in that checkpoint \
         (C2SP tlog-proof: header, `index N`, one base64 hash per line, a blank \
         line, the checkpoint).\n\
         - `key.vkey`: the log's verifier key as the exporter saw it. Do not trust \
         it: verify with the key you obtained from the log operator.\n\
         \n\
         ## Verify with signoff\n\
         \n\
         ```\n\
         signoff audit verify --bundle DIR --key VKEY\n\
         ```\n\
         \n\
         `VKEY` is the verifier key (`name+keyid+base64`) obtained independently.\n\
         \n\
         ## Verify by hand\n\
         \n\
         1. Check the checkpoint signature with the verifier key (Go: \
         `golang.org/x/mod/sumdb/note`; the signature covers the text before the \
         blank line, key id = first 4 bytes of SHA-256(name, 0x0A, 0x01, public key)).\n\
         2. For each line of `entries.jsonl`, base64-decode `leaf`; check it starts \
         with `signoff-event-v1\\n` and its JSON `index` equals the line's index, \
         and that indexes are consecutive.\n\
         3. Leaf hash = SHA-256(0x00 ‖ leaf). Verify the hashes of \
         `proofs/N.tlog-proof` as an RFC 9162 §2.1.3.2 inclusion proof of that leaf \
         hash at index N in a tree of the checkpoint's size (interior nodes are \
         SHA-256(0x01 ‖ left ‖ right)); the result must equal the checkpoint root.\n"
    )
}

fn read(path: PathBuf) -> Result<String, BundleError> {
    std::fs::read_to_string(&path).map_err(|source| BundleError::Io { path, source })
}

/// Verifies the bundle in `dir` against the verifier key `vkey` supplied by
/// the auditor (the bundle's own `key.vkey` is ignored).
pub fn verify_bundle(dir: &Path, vkey: &str) -> Result<BundleReport, BundleError> {
    let verifier = Verifier::from_vkey(vkey).map_err(BundleError::Key)?;
    let note = read(dir.join(CHECKPOINT_FILE))?;
    let entries = read(dir.join(ENTRIES_FILE))?;
    verify_contents(&verifier, &note, &entries, |index| {
        let path = proof_path(dir, index);
        std::fs::read_to_string(&path).map_err(|e| BundleError::ProofFile {
            index,
            path,
            reason: e.to_string(),
        })
    })
}

/// The checks of [`verify_bundle`] over file contents; `proof(index)`
/// returns the text of `proofs/<index>.tlog-proof`.
pub fn verify_contents(
    verifier: &Verifier,
    note: &str,
    entries_jsonl: &str,
    mut proof: impl FnMut(u64) -> Result<String, BundleError>,
) -> Result<BundleReport, BundleError> {
    let checkpoint = verifier
        .verify_note(note)
        .map_err(BundleError::Checkpoint)?;
    let entries = parse_entries(entries_jsonl)?;
    check_sequence(&entries)?;

    for (_, index, leaf_b64) in &entries {
        let index = *index;
        if index >= checkpoint.size {
            return Err(BundleError::NotCovered {
                index,
                size: checkpoint.size,
            });
        }
        let edited = |reason: String| BundleError::Edited { index, reason };
        let leaf = B64
            .decode(leaf_b64)
            .map_err(|e| edited(format!("leaf is not base64: {e}")))?;
        let event = leaf::decode(&leaf).map_err(|e: LeafError| edited(e.to_string()))?;
        if event.index != Some(index) {
            return Err(edited(format!(
                "leaf carries index {}",
                event.index.map_or("null".into(), |i| i.to_string())
            )));
        }
        let text = proof(index)?;
        let bad_file = |reason: String| BundleError::ProofFile {
            index,
            path: PathBuf::from(PROOFS_DIR).join(format!("{index}.tlog-proof")),
            reason,
        };
        let (proof_index, hashes, proof_note) =
            proof_format::parse(&text).map_err(|e: ProofFormatError| bad_file(e.to_string()))?;
        if proof_index != index {
            return Err(bad_file(format!("proof is for index {proof_index}")));
        }
        if proof_note != note {
            return Err(bad_file(
                "embedded checkpoint differs from the bundle checkpoint".into(),
            ));
        }
        merkle::verify_inclusion(
            &merkle::leaf_hash(&leaf),
            index,
            checkpoint.size,
            &hashes,
            &checkpoint.root,
        )
        .map_err(|source| BundleError::BadProof { index, source })?;
    }

    let (first, last) = match (entries.first(), entries.last()) {
        (Some(f), Some(l)) => (f.1, l.1),
        _ => return Err(BundleError::Empty),
    };
    Ok(BundleReport {
        checkpoint,
        entries: entries.len(),
        first,
        last,
    })
}

/// `(line number, index, base64 leaf)` of each line.
fn parse_entries(text: &str) -> Result<Vec<(usize, u64, String)>, BundleError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let e: EntryLine = serde_json::from_str(line).map_err(|e| BundleError::EntryLine {
            line: line_no,
            reason: e.to_string(),
        })?;
        out.push((line_no, e.index, e.leaf));
    }
    if out.is_empty() {
        return Err(BundleError::Empty);
    }
    Ok(out)
}

/// Indexes must be consecutive; tells a missing entry from a moved one.
fn check_sequence(entries: &[(usize, u64, String)]) -> Result<(), BundleError> {
    let all: HashSet<u64> = entries.iter().map(|e| e.1).collect();
    let mut seen = HashSet::with_capacity(entries.len());
    let mut expected = entries.first().map(|e| e.1);
    for (line, index, _) in entries {
        let (line, index) = (*line, *index);
        if !seen.insert(index) {
            return Err(BundleError::Duplicate { index, line });
        }
        match expected {
            Some(want) if want != index => {
                let misplaced = if index < want {
                    Some(index)
                } else {
                    all.contains(&want).then_some(want)
                };
                return Err(if let Some(misplaced) = misplaced {
                    BundleError::Reordered {
                        index: misplaced,
                        line,
                        expected: want,
                        found: index,
                    }
                } else {
                    BundleError::Missing {
                        index: want,
                        line,
                        found: index,
                    }
                });
            }
            _ => {}
        }
        expected = index.checked_add(1);
    }
    Ok(())
}
