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
//! [RFC 8785]: https://www.rfc-editor.org/rfc/rfc8785

use signoff_core::event::AuditEvent;
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
    serde_json_canonicalizer::to_writer(event, &mut out)
        .expect("audit events always serialize to json");
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
}
