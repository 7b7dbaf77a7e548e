//! Helpers shared by the integration tests.
#![allow(dead_code)]

use signoff_core::event::{AuditEvent, EventKind};
use std::path::PathBuf;

/// A realistic event at position `index`.
pub fn event(index: u64) -> AuditEvent {
    let time: jiff::Timestamp = "2025-03-04T05:06:07.089Z".parse().unwrap();
    let mut e = AuditEvent::new(
        EventKind::ReviewRecorded,
        time,
        format!("user:reviewer{index}"),
    )
    .with_reason("looks right")
    .with_detail(serde_json::json!({"decision": "approve", "n": index}));
    e.index = Some(index);
    e.request_id = Some(format!("01JREQ{index:020}"));
    e.digest = Some(format!("sha256:{index:064x}"));
    e
}

/// Encoded leaves `0..n`.
pub fn leaves(n: u64) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| signoff_ledger::leaf::encode(&event(i)))
        .collect()
}

/// A file of the shared test vectors.
pub fn testdata(name: &str) -> serde_json::Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/testdata")
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read test vectors {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}
