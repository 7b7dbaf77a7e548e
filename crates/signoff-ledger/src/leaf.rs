//! The byte encoding of one ledger entry (a Merkle leaf).
//!
//! # Format (`signoff-event-v1`)
//!
//! A leaf is the concatenation of
//!
//! 1. the 17 ASCII bytes `signoff-event-v1` followed by a line feed (`0x0A`),
//! 2. the [RFC 8785] (JSON Canonicalization Scheme) serialization of the
//!    [`AuditEvent`] as one JSON object, with no trailing newline.
//!
//! The object has exactly these members (RFC 8785 sorts them by UTF-16 code
//! units, i.e. alphabetically here): `actor` (string), `detail` (any JSON
//! value), `digest` (string or null), `index` (non-negative integer, never
//! null), `kind` (snake_case string such as `"request_submitted"`),
//! `policy_ids` (array of strings), `policy_set_hash` (string or null),
//! `reason` (string or null), `request_id` (string or null), `time` (RFC 3339
//! UTC timestamp as written by the `jiff` crate, e.g.
//! `"2025-01-02T03:04:05.123Z"`), `verdict` (`"allow"`, `"deny"`,
//! `"approval_required"` or null). Absent optional values are written as
//! `null`, never omitted.
//!
//! The entry's position in the log (`index`) is part of the leaf on purpose:
//! the Merkle tree already fixes the order of leaves, but carrying the index
//! inside the signed data means an entry copied to another position, or a
//! bundle whose lines were reordered, is detected from the leaf alone.
//!
//! The Merkle leaf hash is then `SHA-256(0x00 ‖ leaf)` (RFC 6962 §2.1), see
//! [`crate::merkle::leaf_hash`].
//!
//! Decoding is strict: [`decode`] re-encodes what it parsed and requires the
//! same bytes, so any byte outside the canonical form (whitespace, member
//! order, number spelling, escapes, timestamp spelling) is an edit.
//!
//! [`encode`] is the definition. [`encode_columns`] writes the same bytes
//! from an event's stored columns without parsing them, for verifiers that
//! read millions of rows; its output may confirm a recorded hash but never
//! refute one (see there).
//!
//! [RFC 8785]: https://www.rfc-editor.org/rfc/rfc8785

use signoff_core::event::AuditEvent;
use std::io::Write as _;
use thiserror::Error;

/// The version line of every leaf (without its line feed).
pub const LEAF_VERSION: &str = "signoff-event-v1";

/// Why bytes are not a valid leaf.
#[derive(Debug, Error)]
pub enum LeafError {
    /// The leaf does not start with `signoff-event-v1\n`.
    #[error("leaf does not start with the version line {LEAF_VERSION:?}")]
    Version,
    /// The JSON part is not an audit event.
    #[error("leaf json is not an audit event: {0}")]
    Json(#[from] serde_json::Error),
    /// The event carries no index.
    #[error("leaf event has a null index")]
    MissingIndex,
    /// The bytes are valid JSON but not the canonical encoding.
    #[error("leaf is not in canonical form (re-encoding differs at byte {offset})")]
    NotCanonical {
        /// First differing byte offset, counted from the start of the leaf.
        offset: usize,
    },
}

/// The exact leaf bytes of `event`. `event.index` must be `Some`: an
/// encoding with a null index is refused by [`decode`] and by verifiers.
pub fn encode(event: &AuditEvent) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(LEAF_VERSION.as_bytes());
    out.push(b'\n');
    // Serializing an AuditEvent cannot fail: every field is a string, an
    // integer, a unit enum, a timestamp or a serde_json::Value (whose map
    // keys are strings and whose numbers are finite).
    #[allow(clippy::expect_used)]
    let json = signoff_core::jcs::to_vec(event).expect("audit events always serialize to json");
    out.extend_from_slice(&json);
    out
}

/// Parses leaf bytes back into the event, rejecting anything that
/// [`encode`] would not have produced.
pub fn decode(bytes: &[u8]) -> Result<AuditEvent, LeafError> {
    let json = bytes
        .strip_prefix(LEAF_VERSION.as_bytes())
        .and_then(|rest| rest.strip_prefix(b"\n"))
        .ok_or(LeafError::Version)?;
    let event: AuditEvent = serde_json::from_slice(json)?;
    if event.index.is_none() {
        return Err(LeafError::MissingIndex);
    }
    let again = encode(&event);
    if again != bytes {
        let offset = again
            .iter()
            .zip(bytes)
            .position(|(a, b)| a != b)
            .unwrap_or(again.len().min(bytes.len()));
        return Err(LeafError::NotCanonical { offset });
    }
    Ok(event)
}

/// `value` as RFC 8785 canonical JSON: the spelling a store should keep the
/// JSON columns of an event in, so that [`encode_columns`] reproduces the
/// leaf without parsing them.
pub fn canonical_json<T: serde::Serialize>(value: &T) -> serde_json::Result<String> {
    let bytes = signoff_core::jcs::to_vec(value)?;
    // RFC 8785 output is UTF-8 JSON text.
    String::from_utf8(bytes).map_err(serde::ser::Error::custom)
}

/// An audit event as its stored columns, borrowed from a database row: what
/// [`encode_columns`] turns into leaf bytes without building an
/// [`AuditEvent`]. Text columns are raw bytes: they are not checked to be
/// UTF-8 here (bytes that are not can only fail to confirm, see
/// [`encode_columns`]).
#[derive(Debug, Clone, Copy)]
pub struct LeafColumns<'a> {
    /// The entry's index.
    pub index: u64,
    /// The kind, e.g. `request_submitted`.
    pub kind: &'a [u8],
    /// The time in milliseconds since the Unix epoch.
    pub time_ms: i64,
    /// Who caused it.
    pub actor: &'a [u8],
    /// The request concerned.
    pub request_id: Option<&'a [u8]>,
    /// The action digest.
    pub digest: Option<&'a [u8]>,
    /// The verdict, e.g. `allow`.
    pub verdict: Option<&'a [u8]>,
    /// The policy ids as stored: a JSON array, copied verbatim.
    pub policy_ids_json: &'a [u8],
    /// The policy set hash.
    pub policy_set_hash: Option<&'a [u8]>,
    /// The reason.
    pub reason: Option<&'a [u8]>,
    /// The detail as stored: JSON text, copied verbatim.
    pub detail_json: &'a [u8],
}

/// Appends the leaf bytes the stored columns spell to `out`, for a verifier
/// that reads millions of rows: no JSON is parsed and nothing is allocated
/// beyond `out`. Returns `false` (and leaves `out` as it was) when the time
/// is out of range or a string that needs escaping is not UTF-8.
///
/// The two JSON columns are copied as they are, so the result equals
/// [`encode`] of the decoded event only when they were stored in canonical
/// form ([`canonical_json`], as the store writes them).
/// A verifier may therefore use these bytes only to **confirm** a recorded
/// leaf hash; when they do not match, it must decode the row and use
/// [`encode`], which decides.
///
/// Confirming is sound: if these bytes hash to the recorded leaf, they are
/// the original leaf, and the columns are the original ones. Every string
/// column is escaped here, so its extent is fixed; a verbatim JSON column
/// could only end elsewhere than the original by cutting the original
/// inside a nested value or by swallowing a following member, and either
/// way the fixed member names and brackets written around it would no
/// longer line up with the original bytes (a `,"` never occurs inside a
/// JSON string, and every top-level member name occurs once). Bytes that
/// are not UTF-8 cannot equal the original leaf, which is.
pub fn encode_columns(c: &LeafColumns<'_>, out: &mut Vec<u8>) -> bool {
    let start = out.len();
    if write_columns(c, Some(c.index), out).is_none() {
        out.truncate(start);
        return false;
    }
    true
}

/// A leaf whose index is not known yet: what a writer that assigns indexes
/// in a serial section prepares before it, so that section only appends
/// the index digits and finishes one hash.
///
/// Built from columns as [`encode_columns`] writes them, so it is the leaf
/// of the event only when the JSON columns are in canonical form (the
/// store's, from [`canonical_json`]): a writer must build it from exactly
/// the columns it stores.
#[derive(Clone)]
pub struct PendingLeaf {
    /// SHA-256 over `0x00` and the leaf bytes before the index digits.
    head: sha2::Sha256,
    /// The leaf bytes after the index digits.
    tail: Vec<u8>,
}

impl std::fmt::Debug for PendingLeaf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingLeaf")
            .field("tail_len", &self.tail.len())
            .finish_non_exhaustive()
    }
}

impl PendingLeaf {
    /// The leaf of `c` with its index left open (`c.index` is ignored).
    /// `None` where [`encode_columns`] would decline.
    pub fn from_columns(c: &LeafColumns<'_>) -> Option<Self> {
        use sha2::Digest as _;
        let mut bytes = Vec::with_capacity(256 + c.detail_json.len());
        let at = write_columns(c, None, &mut bytes)?;
        let tail = bytes.split_off(at);
        let mut head = crate::merkle::leaf_hasher();
        head.update(&bytes);
        Some(PendingLeaf { head, tail })
    }

    /// The Merkle leaf hash of this leaf stored at `index`: equal to
    /// `merkle::leaf_hash` of [`encode_columns`] with that index.
    pub fn hash_at(&self, index: u64) -> crate::Hash {
        use sha2::Digest as _;
        let mut h = self.head.clone();
        // RFC 8785 writes numbers as IEEE doubles: beyond 2^53 an index is
        // spelled as its rounded double, as `encode` would.
        if index <= 1 << 53 {
            h.update(index.to_string().as_bytes());
        } else {
            // Serializing an integer cannot fail.
            h.update(signoff_core::jcs::to_vec(&index).unwrap_or_default());
        }
        h.update(&self.tail);
        h.finalize().into()
    }
}

/// Writes the leaf of `c` to `out`, with `index`'s digits or, for `None`,
/// nothing where they go; returns where the digits start in `out`.
fn write_columns(c: &LeafColumns<'_>, index: Option<u64>, out: &mut Vec<u8>) -> Option<usize> {
    let time = jiff::Timestamp::from_millisecond(c.time_ms).ok()?;
    out.extend_from_slice(LEAF_VERSION.as_bytes());
    out.extend_from_slice(b"\n{\"actor\":");
    json_string(out, c.actor)?;
    out.extend_from_slice(b",\"detail\":");
    out.extend_from_slice(c.detail_json);
    out.extend_from_slice(b",\"digest\":");
    json_opt_string(out, c.digest)?;
    out.extend_from_slice(b",\"index\":");
    let digits_at = out.len();
    if let Some(index) = index {
        // io::Write into a Vec cannot fail.
        let _ = write!(out, "{index}");
    }
    out.extend_from_slice(b",\"kind\":");
    json_string(out, c.kind)?;
    out.extend_from_slice(b",\"policy_ids\":");
    out.extend_from_slice(c.policy_ids_json);
    out.extend_from_slice(b",\"policy_set_hash\":");
    json_opt_string(out, c.policy_set_hash)?;
    out.extend_from_slice(b",\"reason\":");
    json_opt_string(out, c.reason)?;
    out.extend_from_slice(b",\"request_id\":");
    json_opt_string(out, c.request_id)?;
    out.extend_from_slice(b",\"time\":\"");
    let _ = write!(out, "{time}");
    out.extend_from_slice(b"\",\"verdict\":");
    json_opt_string(out, c.verdict)?;
    out.push(b'}');
    Some(digits_at)
}

/// A JSON string as RFC 8785 writes it; serde_json's escaping (`\"`, `\\`,
/// `\b \f \n \r \t`, other controls as lowercase `\u00xx`, nothing else)
/// is exactly that. `None` when it needs escaping and is not UTF-8.
fn json_string(out: &mut Vec<u8>, s: &[u8]) -> Option<()> {
    // Without an early exit the check vectorizes; strings that need no
    // escape (nearly all) are then copied as they are.
    let needs_escape = s.iter().fold(false, |acc, &b| {
        acc | (b < 0x20) | (b == b'"') | (b == b'\\')
    });
    if needs_escape {
        let s = std::str::from_utf8(s).ok()?;
        // Writing JSON into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, s);
    } else {
        out.push(b'"');
        out.extend_from_slice(s);
        out.push(b'"');
    }
    Some(())
}

fn json_opt_string(out: &mut Vec<u8>, s: Option<&[u8]>) -> Option<()> {
    match s {
        Some(s) => json_string(out, s),
        None => {
            out.extend_from_slice(b"null");
            Some(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use signoff_core::event::EventKind;

    fn event() -> AuditEvent {
        let mut e = AuditEvent::new(
            EventKind::RequestSubmitted,
            "2025-01-02T03:04:05.123Z".parse().unwrap(),
            "agent:deployer",
        )
        .with_reason("ship it")
        .with_detail(serde_json::json!({"b": [1, 2.5, "x"], "a": {"é": true}}));
        e.index = Some(7);
        e.request_id = Some("01J0000000000000000000000".into());
        e
    }

    #[test]
    fn exact_bytes() {
        let bytes = encode(&event());
        let text = String::from_utf8(bytes).unwrap();
        assert_eq!(
            text,
            "signoff-event-v1\n{\"actor\":\"agent:deployer\",\"detail\":{\"a\":{\"é\":true},\"b\":[1,2.5,\"x\"]},\
             \"digest\":null,\"index\":7,\"kind\":\"request_submitted\",\"policy_ids\":[],\
             \"policy_set_hash\":null,\"reason\":\"ship it\",\"request_id\":\"01J0000000000000000000000\",\
             \"time\":\"2025-01-02T03:04:05.123Z\",\"verdict\":null}"
        );
    }

    #[test]
    fn round_trip() {
        let e = event();
        assert_eq!(decode(&encode(&e)).unwrap(), e);
    }

    #[test]
    fn rejects_bad_version() {
        let mut bytes = encode(&event());
        bytes[15] = b'2';
        assert!(matches!(decode(&bytes), Err(LeafError::Version)));
        assert!(matches!(
            decode(b"signoff-event-v1"),
            Err(LeafError::Version)
        ));
    }

    #[test]
    fn rejects_non_canonical() {
        let text = String::from_utf8(encode(&event())).unwrap();
        let spaced = text.replacen("\"actor\":", "\"actor\": ", 1);
        assert!(matches!(
            decode(spaced.as_bytes()),
            Err(LeafError::NotCanonical { offset: 26 })
        ));
        let reordered = text
            .replacen("{\"actor\":\"agent:deployer\",", "{", 1)
            .replacen(
                "\"verdict\":null}",
                "\"verdict\":null,\"actor\":\"agent:deployer\"}",
                1,
            );
        assert!(matches!(
            decode(reordered.as_bytes()),
            Err(LeafError::NotCanonical { .. })
        ));
        let offset_time = text.replacen(".123Z", ".123+00:00", 1);
        assert!(matches!(
            decode(offset_time.as_bytes()),
            Err(LeafError::NotCanonical { .. })
        ));
        let mut trailing = text.into_bytes();
        trailing.push(b'\n');
        assert!(decode(&trailing).is_err());
    }

    #[test]
    fn rejects_missing_index_and_garbage() {
        let mut e = event();
        e.index = None;
        assert!(matches!(decode(&encode(&e)), Err(LeafError::MissingIndex)));
        assert!(matches!(
            decode(b"signoff-event-v1\n{\"index\":1}"),
            Err(LeafError::Json(_))
        ));
    }

    /// Events covering every column shape, as the store would write them.
    fn varied_events() -> Vec<AuditEvent> {
        use serde_json::json;
        use signoff_core::Decision;
        let t = |s: &str| s.parse::<jiff::Timestamp>().unwrap();
        let details = [
            json!(null),
            json!({}),
            json!({"b": [1, -2, 9007199254740992u64, "x"], "a": {"é": true, "Z": false, "": null}}),
            json!({"action": {"action": "db.export", "resource": "c\"u\\s\u{7}\u{1f}\n\t\r\u{8}\u{c}\u{7f}",
                   "context": {"k": "\u{2028}\u{2029}é😀"}, "principal": "agent:bot", "on_behalf_of": null},
                   "gate": "exec", "status": "pending", "requirement": [{"group": "sre", "count": 2}]}),
            json!(["a", {"y": 1, "x": 2}, [[]]]),
            json!("just a string"),
        ];
        let mut out = Vec::new();
        for (i, detail) in details.into_iter().enumerate() {
            let mut e = AuditEvent::new(
                EventKind::RequestSubmitted,
                t("2025-01-02T03:04:05.120Z"),
                "agent:deployer",
            )
            .with_detail(detail);
            e.index = Some(i as u64 * 1_000_003);
            out.push(e.clone());
            e.kind = EventKind::OutcomeRecorded;
            e.time = t("2025-01-02T03:04:05Z");
            e.actor = "user:\u{1}\"ann\"".into();
            e.reason = Some("ship \"it\"\n".into());
            e.request_id = Some("01J0000000000000000000000".into());
            e.digest = Some("ab".into());
            e.verdict = Some(Decision::ApprovalRequired);
            e.policy_ids = vec!["p1".into(), "p\"2".into()];
            e.policy_set_hash = Some("h".into());
            out.push(e);
        }
        out
    }

    /// The columns the store writes for `e`.
    fn columns_of(e: &AuditEvent, f: impl FnOnce(&LeafColumns<'_>)) {
        let policy_ids = canonical_json(&e.policy_ids).unwrap();
        let detail = canonical_json(&e.detail).unwrap();
        f(&LeafColumns {
            index: e.index.unwrap(),
            kind: e.kind.as_str().as_bytes(),
            time_ms: e.time.as_millisecond(),
            actor: e.actor.as_bytes(),
            request_id: e.request_id.as_deref().map(str::as_bytes),
            digest: e.digest.as_deref().map(str::as_bytes),
            verdict: e.verdict.map(|v| v.as_str().as_bytes()),
            policy_ids_json: policy_ids.as_bytes(),
            policy_set_hash: e.policy_set_hash.as_deref().map(str::as_bytes),
            reason: e.reason.as_deref().map(str::as_bytes),
            detail_json: detail.as_bytes(),
        })
    }

    #[test]
    fn columns_encode_to_the_same_bytes() {
        for e in varied_events() {
            columns_of(&e, |c| {
                let mut out = b"kept".to_vec();
                assert!(encode_columns(c, &mut out));
                assert_eq!(
                    String::from_utf8_lossy(&out[4..]),
                    String::from_utf8_lossy(&encode(&e))
                );
            });
        }
    }

    #[test]
    fn a_pending_leaf_hashes_like_the_encoded_leaf_at_any_index() {
        for e in varied_events() {
            columns_of(&e, |c| {
                let pending = PendingLeaf::from_columns(c).unwrap();
                for index in [0, 7, 10, 99_999, 1 << 53, (1 << 53) + 1, u64::MAX] {
                    let mut at = e.clone();
                    at.index = Some(index);
                    assert_eq!(
                        pending.hash_at(index),
                        crate::merkle::leaf_hash(&encode(&at)),
                        "{at:?}"
                    );
                }
            });
        }
    }

    #[test]
    fn non_canonical_columns_only_ever_differ() {
        // Detail stored in another spelling (keys in insertion order, as
        // older stores wrote it): the bytes differ, so a verifier falls
        // back to `encode`.
        let mut respelled = event();
        respelled.detail = serde_json::json!({"\u{e000}": 1, "😀": 2});
        let spelled = "{\"\u{e000}\":1,\"😀\":2}".to_owned();
        // A column moved into its neighbour cannot give the same bytes.
        let swallowing = event();
        assert_eq!(swallowing.digest, None);
        let detail = canonical_json(&swallowing.detail).unwrap();
        let swallowed = format!("{detail},\"digest\":null");
        for (e, detail_json) in [(respelled, spelled), (swallowing, swallowed)] {
            columns_of(&e, |c| {
                let mut out = Vec::new();
                let c = LeafColumns {
                    detail_json: detail_json.as_bytes(),
                    ..*c
                };
                assert!(encode_columns(&c, &mut out));
                assert_ne!(out, encode(&e), "{detail_json}");
            });
        }
    }

    #[test]
    fn escaped_text_that_is_not_utf8_is_declined() {
        let e = event();
        columns_of(&e, |c| {
            let mut out = b"kept".to_vec();
            let c = LeafColumns {
                reason: Some(b"\"\xff"),
                ..*c
            };
            assert!(!encode_columns(&c, &mut out));
            assert_eq!(out, b"kept");
        });
    }

    #[test]
    fn time_out_of_range_is_declined() {
        let e = event();
        columns_of(&e, |c| {
            let mut out = b"kept".to_vec();
            let c = LeafColumns {
                time_ms: i64::MAX,
                ..*c
            };
            assert!(!encode_columns(&c, &mut out));
            assert_eq!(out, b"kept");
        });
    }
}
