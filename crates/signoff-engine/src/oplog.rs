//! The operator's log: one structured line per committed decision, review
//! (recorded or refused, with the rule that refused it), claim, outcome,
//! cancellation, expiry and policy reload, written with `tracing` under the
//! target [`TARGET`] after the change is durable.
//!
//! Every line carries `event` (the audit event kind, e.g.
//! `review_refused`) and, for request events, `request_id`, `action`,
//! `resource`, `principal`, `verdict`, `policy_ids`, `gate` and `status`;
//! reviews add `reviewer`, `decision` and `channel`; refusals add `rule`
//! and `reason`. The formatter (text or JSON) is the binary's choice.
//!
//! Text that someone else supplied (resources, reasons) is escaped with
//! [`signoff_core::display::one_line`], so a log line stays one line on
//! every formatter.

use signoff_core::display::one_line;
use signoff_core::{AuditEvent, EventKind, RequestRecord};

/// The `tracing` target of these lines, for filters
/// (`SIGNOFF_LOG=signoff::ops=info`).
pub const TARGET: &str = "signoff::ops";

/// A short, human message for `kind`.
fn message(kind: EventKind) -> &'static str {
    match kind {
        EventKind::RequestSubmitted => "request decided by policy",
        EventKind::ReviewRecorded => "review recorded",
        EventKind::ReviewRefused => "review refused",
        EventKind::RequestApproved => "request approved",
        EventKind::RequestDenied => "request denied",
        EventKind::RequestExpired => "request expired",
        EventKind::RequestCancelled => "request cancelled",
        EventKind::RequestClaimed => "approval claimed",
        EventKind::ClaimRefused => "claim refused",
        EventKind::RequirementChanged => "approval requirement changed",
        EventKind::ApprovalLapsed => "approval lapsed",
        EventKind::OutcomeRecorded => "outcome recorded",
        EventKind::PrincipalAdded => "principal added",
        EventKind::PrincipalRevoked => "principal revoked",
        EventKind::PrincipalAttributesChanged => "principal attributes changed",
        EventKind::PolicySetLoaded => "policy set loaded",
        EventKind::PolicySetRejected => "policy set rejected",
        EventKind::CredentialIssued => "credential issued",
        EventKind::CredentialRevoked => "credential revoked",
        EventKind::IdentityLinked => "identity linked",
        EventKind::SubmissionRefused => "submission refused",
        EventKind::LedgerWitnessReset => "ledger witness reset",
        EventKind::LedgerVerified => "ledger verified",
    }
}

/// Refusals and rejections are warnings: someone tried something a rule
/// stopped.
fn is_refusal(kind: EventKind) -> bool {
    matches!(
        kind,
        EventKind::ReviewRefused
            | EventKind::ClaimRefused
            | EventKind::PolicySetRejected
            | EventKind::SubmissionRefused
    )
}

/// Logs each of `events`, just committed, about `record` as it now is.
/// `rule` is the slug of the rule that refused the attempt, if one did; it
/// is attached to the refusal event only.
pub(crate) fn committed(record: Option<&RequestRecord>, events: &[AuditEvent], rule: Option<&str>) {
    for e in events {
        one(record, e, rule);
    }
}

fn one(record: Option<&RequestRecord>, e: &AuditEvent, rule: Option<&str>) {
    let kind = e.kind.as_str();
    let text = |v: &str| one_line(v);
    let action = record.map(|r| text(&r.action.action));
    let resource = record.map(|r| text(&r.action.resource));
    let environment = record.and_then(|r| r.action.environment.as_deref().map(text));
    let principal = record.map(|r| r.action.principal.to_string());
    let status = record.map(|r| r.status.to_string());
    let gate = record.and_then(|r| r.gate.clone());
    let verdict = e.verdict.map(|d| d.to_string());
    let policy_ids = (!e.policy_ids.is_empty()).then(|| e.policy_ids.join(","));
    let policy_set = e
        .policy_set_hash
        .as_deref()
        .map(|h| h[..h.len().min(12)].to_owned());
    let reviewing = matches!(e.kind, EventKind::ReviewRecorded | EventKind::ReviewRefused);
    let reviewer = reviewing.then(|| text(&e.actor));
    let decision = e
        .detail
        .get("decision")
        .and_then(|d| d.as_str())
        .filter(|_| reviewing)
        .map(str::to_owned);
    let channel = match e.kind {
        EventKind::ReviewRefused => e
            .detail
            .get("channel")
            .and_then(|c| c.as_str())
            .map(str::to_owned),
        EventKind::ReviewRecorded => record
            .and_then(|r| r.reviews.last())
            .and_then(|r| r.channel)
            .map(|c| c.to_string()),
        _ => None,
    };
    let rule = rule.filter(|_| is_refusal(e.kind));
    let reason = e.reason.as_deref().map(text);
    let outcome = record
        .and_then(|r| r.outcome.as_ref())
        .filter(|_| e.kind == EventKind::OutcomeRecorded);
    let exit_code = outcome.and_then(|o| o.exit_code);
    let signal = outcome.and_then(|o| o.signal);
    let duration_ms = outcome.map(|o| o.duration_ms);
    let actor = text(&e.actor);
    let msg = message(e.kind);
    macro_rules! emit {
        ($level:ident) => {
            tracing::$level!(
                target: TARGET,
                event = kind,
                request_id = e.request_id.as_deref(),
                action = action.as_deref(),
                resource = resource.as_deref(),
                environment = environment.as_deref(),
                principal = principal.as_deref(),
                actor = actor.as_str(),
                verdict = verdict.as_deref(),
                policy_ids = policy_ids.as_deref(),
                policy_set = policy_set.as_deref(),
                gate = gate.as_deref(),
                status = status.as_deref(),
                reviewer = reviewer.as_deref(),
                decision = decision.as_deref(),
                channel = channel.as_deref(),
                rule,
                reason = reason.as_deref(),
                exit_code,
                signal,
                duration_ms,
                "{msg}"
            )
        };
    }
    if is_refusal(e.kind) {
        emit!(warn)
    } else {
        emit!(info)
    }
}
