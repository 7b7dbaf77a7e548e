//! The audit event: one per state change, appended in the same transaction.
//!
//! The field set is the stable meaning of a ledger entry; the Merkle ledger
//! hashes a canonical serialization of exactly these fields (schema version
//! [`AuditEvent::SCHEMA`]). Add fields only with a new schema version.

use crate::verdict::Decision;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use std::fmt;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A request was submitted and the policy gave its verdict.
    RequestSubmitted,
    /// A reviewer approved or denied; the request may still be pending.
    ReviewRecorded,
    /// A review was refused (separation of duties, role, group, duplicate…).
    ReviewRefused,
    /// The approval requirement was met.
    RequestApproved,
    /// The request was denied by a reviewer or by the policy at claim time.
    RequestDenied,
    /// Nobody decided in time.
    RequestExpired,
    /// The requester (or an admin) withdrew the request.
    RequestCancelled,
    /// A gate claimed the approval and is about to run the action.
    RequestClaimed,
    /// A claim was refused (wrong digest, second claim, policy change…).
    ClaimRefused,
    /// The policy changed between approval and claim and now needs more approvals.
    RequirementChanged,
    /// An approval was not claimed in time.
    ApprovalLapsed,
    /// The gate reported what happened when the action ran.
    OutcomeRecorded,
    /// A principal was added.
    PrincipalAdded,
    /// A principal was revoked.
    PrincipalRevoked,
    /// An admin changed a principal's attributes (detail: before, after).
    PrincipalAttributesChanged,
    /// A policy set became active.
    PolicySetLoaded,
    /// A policy set was rejected; the previous one stays active.
    PolicySetRejected,
    /// A credential was issued to a principal.
    CredentialIssued,
    /// A credential was revoked.
    CredentialRevoked,
    /// An external identity was linked to a principal.
    IdentityLinked,
    /// A submission was refused before evaluation (e.g. a credential bound
    /// to one gate submitting through another).
    SubmissionRefused,
    /// An operator made the database's log, as it was, the ledger's new
    /// trust anchor (`signoff ledger reset-witness`).
    LedgerWitnessReset,
    /// An auditor (or the scheduled self-check) verified the ledger
    /// (detail: what was checked and every finding).
    LedgerVerified,
}

impl EventKind {
    /// The snake_case name stored with the event.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::RequestSubmitted => "request_submitted",
            EventKind::ReviewRecorded => "review_recorded",
            EventKind::ReviewRefused => "review_refused",
            EventKind::RequestApproved => "request_approved",
            EventKind::RequestDenied => "request_denied",
            EventKind::RequestExpired => "request_expired",
            EventKind::RequestCancelled => "request_cancelled",
            EventKind::RequestClaimed => "request_claimed",
            EventKind::ClaimRefused => "claim_refused",
            EventKind::RequirementChanged => "requirement_changed",
            EventKind::ApprovalLapsed => "approval_lapsed",
            EventKind::OutcomeRecorded => "outcome_recorded",
            EventKind::PrincipalAdded => "principal_added",
            EventKind::PrincipalRevoked => "principal_revoked",
            EventKind::PrincipalAttributesChanged => "principal_attributes_changed",
            EventKind::PolicySetLoaded => "policy_set_loaded",
            EventKind::PolicySetRejected => "policy_set_rejected",
            EventKind::CredentialIssued => "credential_issued",
            EventKind::CredentialRevoked => "credential_revoked",
            EventKind::IdentityLinked => "identity_linked",
            EventKind::SubmissionRefused => "submission_refused",
            EventKind::LedgerWitnessReset => "ledger_witness_reset",
            EventKind::LedgerVerified => "ledger_verified",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One audit record. `actor` is `agent:NAME`, `user:NAME` or `system`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEvent {
    /// Position in the append-only log, assigned densely from 0 by the store.
    pub index: Option<u64>,
    /// What happened.
    pub kind: EventKind,
    /// When it happened.
    #[schema(value_type = String, format = DateTime)]
    pub time: Timestamp,
    /// Who caused it.
    pub actor: String,
    /// The request concerned, if any.
    pub request_id: Option<String>,
    /// The action digest of that request.
    pub digest: Option<String>,
    /// The verdict in force.
    pub verdict: Option<Decision>,
    /// The policies that determined the verdict.
    pub policy_ids: Vec<String>,
    /// The policy set that decided.
    pub policy_set_hash: Option<String>,
    /// Why (review reason, refusal reason, error…).
    pub reason: Option<String>,
    /// Kind-specific details (the full request on submission, the outcome…);
    /// any JSON value, `null` when there are none.
    #[schema(value_type = Value)]
    pub detail: serde_json::Value,
}

impl AuditEvent {
    /// Version of the field set above; part of every ledger leaf.
    pub const SCHEMA: u32 = 1;

    /// An event with only kind, time and actor set.
    pub fn new(kind: EventKind, time: Timestamp, actor: impl Into<String>) -> Self {
        AuditEvent {
            index: None,
            kind,
            time,
            actor: actor.into(),
            request_id: None,
            digest: None,
            verdict: None,
            policy_ids: Vec::new(),
            policy_set_hash: None,
            reason: None,
            detail: serde_json::Value::Null,
        }
    }

    /// Sets the reason.
    pub fn with_reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    /// Sets the detail object.
    pub fn with_detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = detail;
        self
    }
}
