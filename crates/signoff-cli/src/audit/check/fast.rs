//! A fast path for the leaf hash of an event: writes the canonical
//! (RFC 8785) leaf bytes of [`signoff_ledger::leaf::encode`] directly, with
//! no intermediate JSON tree, into a reused buffer.
//!
//! It covers what events actually hold: strings, integers, booleans, null,
//! arrays and objects whose keys sort the same in UTF-8 and UTF-16. Anything
//! else (a floating-point number, an exotic key) returns `None`, and the
//! caller uses `leaf::encode`. The caller also falls back whenever the fast
//! hash differs from the recorded one, so this path can only confirm a
//! match, never report a difference.

use signoff_core::AuditEvent;
use signoff_ledger::leaf::LEAF_VERSION;
use signoff_ledger::merkle::{self, Hash};
use std::io::Write as _;

/// The leaf hash of `event`, or `None` when the fast path does not apply.
pub fn leaf_hash(event: &AuditEvent, buf: &mut Vec<u8>) -> Option<Hash> {
    buf.clear();
    encode(event, buf)?;
    Some(merkle::leaf_hash(buf))
}

/// The canonical leaf bytes, members in RFC 8785 order.
pub fn encode(e: &AuditEvent, out: &mut Vec<u8>) -> Option<()> {
    out.extend_from_slice(LEAF_VERSION.as_bytes());
    out.extend_from_slice(b"\n{\"actor\":");
    string(out, &e.actor)?;
    out.extend_from_slice(b",\"detail\":");
    value(out, &e.detail)?;
    out.extend_from_slice(b",\"digest\":");
    opt_string(out, e.digest.as_deref())?;
    out.extend_from_slice(b",\"index\":");
    write!(out, "{}", e.index?).ok()?;
    out.extend_from_slice(b",\"kind\":\"");
    out.extend_from_slice(e.kind.as_str().as_bytes());
    out.extend_from_slice(b"\",\"policy_ids\":[");
    for (i, p) in e.policy_ids.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(out, p)?;
    }
    out.extend_from_slice(b"],\"policy_set_hash\":");
    opt_string(out, e.policy_set_hash.as_deref())?;
    out.extend_from_slice(b",\"reason\":");
    opt_string(out, e.reason.as_deref())?;
    out.extend_from_slice(b",\"request_id\":");
    opt_string(out, e.request_id.as_deref())?;
    out.extend_from_slice(b",\"time\":\"");
    write!(out, "{}", e.time).ok()?;
    out.extend_from_slice(b"\",\"verdict\":");
    match e.verdict {
        Some(v) => {
            out.push(b'"');
            out.extend_from_slice(v.as_str().as_bytes());
            out.push(b'"');
        }
        None => out.extend_from_slice(b"null"),
    }
    out.push(b'}');
    Some(())
}

/// JSON string escaping as RFC 8785 wants it (`"`, `\`, the short escapes
/// `\b \f \n \r \t`, other controls as `\u00xx` lowercase) is exactly
/// serde_json's.
fn string(out: &mut Vec<u8>, s: &str) -> Option<()> {
    serde_json::to_writer(&mut *out, s).ok()
}

fn opt_string(out: &mut Vec<u8>, s: Option<&str>) -> Option<()> {
    match s {
        Some(s) => string(out, s),
        None => {
            out.extend_from_slice(b"null");
            Some(())
        }
    }
}

fn value(out: &mut Vec<u8>, v: &serde_json::Value) -> Option<()> {
    use serde_json::Value;
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => {
            // Integers within ±2^53 print the same in ECMAScript; other
            // numbers take the slow path.
            const SAFE: u64 = 1 << 53;
            if let Some(u) = n.as_u64().filter(|u| *u <= SAFE) {
                write!(out, "{u}").ok()?;
            } else if let Some(i) = n.as_i64().filter(|i| i.unsigned_abs() <= SAFE) {
                write!(out, "{i}").ok()?;
            } else {
                return None;
            }
        }
        Value::String(s) => string(out, s)?,
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                value(out, item)?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            // UTF-8 byte order is UTF-16 order unless a key mixes
            // U+E000..U+FFFF with supplementary characters: leave those
            // (and anything starting at byte 0xEE) to the slow path.
            if members.iter().any(|(k, _)| k.bytes().any(|b| b >= 0xEE)) {
                return None;
            }
            members.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (k, item)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                string(out, k)?;
                out.push(b':');
                value(out, item)?;
            }
            out.push(b'}');
        }
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use signoff_core::{Decision, EventKind};
    use signoff_ledger::leaf;

    fn events() -> Vec<AuditEvent> {
        let t = |s: &str| s.parse().unwrap();
        let mut out = Vec::new();
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

    #[test]
    fn same_bytes_as_leaf_encode() {
        let mut buf = Vec::new();
        for e in events() {
            buf.clear();
            encode(&e, &mut buf).unwrap();
            assert_eq!(
                String::from_utf8_lossy(&buf),
                String::from_utf8_lossy(&leaf::encode(&e))
            );
        }
    }

    #[test]
    fn declines_what_it_does_not_cover() {
        let mut buf = Vec::new();
        for detail in [
            json!({"f": 2.5}),
            json!({"big": 9007199254740993u64}),
            json!({"\u{e000}": 1, "😀": 2}),
        ] {
            let mut e = AuditEvent::new(
                EventKind::PolicySetLoaded,
                jiff::Timestamp::UNIX_EPOCH,
                "system",
            )
            .with_detail(detail);
            e.index = Some(1);
            assert_eq!(leaf_hash(&e, &mut buf), None, "{:?}", e.detail);
        }
        let mut e = AuditEvent::new(
            EventKind::PolicySetLoaded,
            jiff::Timestamp::UNIX_EPOCH,
            "system",
        );
        assert_eq!(leaf_hash(&e, &mut buf), None, "no index");
        e.index = Some(0);
        assert!(leaf_hash(&e, &mut buf).is_some());
    }
}
