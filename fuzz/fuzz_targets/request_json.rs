//! A submission body as the API receives it: parse as the wire type, build
//! the action request, validate it, and when valid compute its digest and
//! its ledger leaf (what the gateway stores must always read back).
#![no_main]

use libfuzzer_sys::fuzz_target;
use signoff_core::wire::SubmitRequest;
use signoff_core::{ActionRequest, AuditEvent, EventKind};

fuzz_target!(|data: &[u8]| {
    let Ok(input) = serde_json::from_slice::<SubmitRequest>(data) else {
        return;
    };
    let action = ActionRequest {
        action: input.action,
        resource: input.resource,
        environment: input.environment,
        context: input.context,
        justification: input.justification,
        principal: "agent:fuzz".parse().expect("a valid principal"),
        on_behalf_of: input.on_behalf_of,
    };
    if action.validate().is_err() {
        return;
    }
    let _ = action.digest();
    let mut event = AuditEvent::new(EventKind::RequestSubmitted, jiff::Timestamp::UNIX_EPOCH, "agent:fuzz");
    event.index = Some(0);
    event.detail = serde_json::to_value(&action).expect("an action serializes");
    let leaf = signoff_ledger::leaf::encode(&event);
    let back = signoff_ledger::leaf::decode(&leaf).expect("an accepted request's leaf decodes");
    assert_eq!(back, event);
});
