//! The request state machine and the review rules.
//!
//! ```text
//! pending ──approve×N──▶ approved ──claim──▶ executing ──outcome──▶ executed
//!    │ deny / expire / cancel     │ lapse / cancel
//!    ▼                            ▼
//! denied | expired | cancelled    lapsed | cancelled
//! ```
//!
//! Every method mutates the record in place and returns the audit events that
//! describe what happened, including refused attempts: the engine commits the
//! record (if it changed) and the events in one transaction.

use crate::action::{ActionRequest, Digest, PrincipalRef};
use crate::event::{AuditEvent, EventKind};
use crate::principal::{same_principal, Channel, PrincipalKind, Role};
use crate::verdict::{Decision, Verdict};
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Where a request is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RequestStatus {
    /// Waiting for reviewers.
    Pending,
    /// Allowed by policy or approved by reviewers; waiting for the gate to claim it.
    Approved,
    /// A reviewer or the policy said no.
    Denied,
    /// Nobody decided before the deadline.
    Expired,
    /// Withdrawn by the requester or an admin.
    Cancelled,
    /// Claimed by the gate; the action is running.
    Executing,
    /// The action ran and its outcome is recorded.
    Executed,
    /// Approved but never claimed in time.
    Lapsed,
}

impl RequestStatus {
    /// All statuses, in lifecycle order.
    pub const ALL: [RequestStatus; 8] = [
        Self::Pending,
        Self::Approved,
        Self::Denied,
        Self::Expired,
        Self::Cancelled,
        Self::Executing,
        Self::Executed,
        Self::Lapsed,
    ];

    /// The snake_case name used on the wire and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Denied => "denied",
            Self::Expired => "expired",
            Self::Cancelled => "cancelled",
            Self::Executing => "executing",
            Self::Executed => "executed",
            Self::Lapsed => "lapsed",
        }
    }

    /// Whether nothing more can happen to the request.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Denied | Self::Expired | Self::Cancelled | Self::Executed | Self::Lapsed
        )
    }
}

impl fmt::Display for RequestStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for RequestStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown status `{s}` (expected one of: {})",
                    Self::ALL.map(|s| s.as_str()).join(", ")
                )
            })
    }
}

/// Approve or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReviewDecision {
    /// Counts toward the requirement.
    Approve,
    /// Ends the request.
    Deny,
}

/// One recorded review.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Review {
    /// The human who reviewed.
    pub reviewer: String,
    /// Approve or deny.
    pub decision: ReviewDecision,
    /// Their reason, if given.
    pub reason: Option<String>,
    /// The reviewer's groups when they reviewed (what the quorum counted).
    pub groups: Vec<String>,
    /// When.
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
    /// The channel the review came through (absent on reviews recorded
    /// before channels were tracked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<Channel>,
}

/// What the gate reported after running the action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Outcome {
    /// The process exit status, if it exited.
    pub exit_code: Option<i32>,
    /// The signal that ended it, if one did.
    pub signal: Option<i32>,
    /// How long it ran.
    pub duration_ms: u64,
    /// SHA-256 (hex) of everything it wrote to stdout (stderr is passed
    /// through but not hashed: its interleaving with stdout is not stable).
    pub output_sha256: Option<String>,
    /// A short human-readable summary.
    pub summary: Option<String>,
    /// When the outcome was recorded.
    #[schema(value_type = String, format = DateTime)]
    pub reported_at: Timestamp,
}

/// Who is trying to review, with what they were at that moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reviewer {
    /// The principal's name.
    pub name: String,
    /// Agents can never review.
    pub kind: PrincipalKind,
    /// Auditors decide nothing.
    pub role: Role,
    /// Groups the reviewer belongs to.
    pub groups: Vec<String>,
    /// The channel the review comes through.
    pub channel: Channel,
    /// Who provisioned the reviewer's account, credential and groups.
    pub provenance: Provenance,
}

/// Who provisioned what a reviewer acts with: event actors (`user:carol`,
/// `console`), `None` when not known. Reviewer power cannot be minted by a
/// party to the request: an approval does not count if any of these was
/// provisioned by someone [`RequestRecord::self_relation`] ties to it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Provenance {
    /// Who created the reviewer's account.
    pub account: Option<String>,
    /// Who issued the credential the review came with.
    pub credential: Option<String>,
    /// Who granted each of the reviewer's group memberships, by group.
    pub memberships: Vec<(String, Option<String>)>,
}

impl Provenance {
    /// Provenance where the account's creator also granted every group in
    /// `groups` (memberships are granted when a principal is created).
    pub fn new(account: Option<String>, credential: Option<String>, groups: &[String]) -> Self {
        Provenance {
            memberships: groups
                .iter()
                .map(|g| (g.clone(), account.clone()))
                .collect(),
            account,
            credential,
        }
    }
}

/// What was provisioned for a reviewer by someone tied to the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Provisioned {
    /// Their account.
    Account,
    /// The credential they reviewed with.
    Credential,
    /// Their membership in a group the request needs.
    Membership(String),
}

impl fmt::Display for Provisioned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Provisioned::Account => f.write_str("account"),
            Provisioned::Credential => f.write_str("credential"),
            Provisioned::Membership(g) => write!(f, "membership in group {g}"),
        }
    }
}

impl Reviewer {
    fn actor(&self) -> String {
        format!("{}:{}", self.kind.as_str(), self.name)
    }
}

/// How a reviewer is tied to the request they tried to review.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SelfRelation {
    /// They are the requesting principal.
    Principal,
    /// They are the human the action is on behalf of.
    OnBehalfOf,
    /// They own the requesting agent.
    AgentOwner,
    /// They created the requesting agent (tied to it like its owner).
    AgentCreator,
}

impl SelfRelation {
    fn phrase(self) -> &'static str {
        match self {
            SelfRelation::Principal => "is its requester",
            SelfRelation::OnBehalfOf => "is the human it is on behalf of",
            SelfRelation::AgentOwner => "owns the requesting agent",
            SelfRelation::AgentCreator => "created the requesting agent",
        }
    }
}

/// Why a review was refused. Every refusal is itself recorded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReviewRefusal {
    /// Agents never review.
    #[error("{name} is an agent; agents can never review requests")]
    Agent {
        /// The agent.
        name: String,
    },
    /// The role may not decide.
    #[error("{name} has role {role}, which cannot review requests")]
    Role {
        /// The principal.
        name: String,
        /// Their role.
        role: Role,
    },
    /// Separation of duties.
    #[error("{name} cannot review this request: {}", match relation {
        SelfRelation::Principal => "they are its requester",
        SelfRelation::OnBehalfOf => "it is on their behalf",
        SelfRelation::AgentOwner => "they own the requesting agent",
        SelfRelation::AgentCreator => "they created the requesting agent",
    })]
    SelfReview {
        /// The reviewer.
        name: String,
        /// How they are tied to the request.
        relation: SelfRelation,
    },
    /// Separation of duties, one step removed: the approver's account,
    /// credential or qualifying group membership was provisioned by a
    /// party to the request.
    #[error("{name} cannot approve this request: their {what} was provisioned by {by}, who {}; reviewer power cannot come from a party to the request", relation.phrase())]
    ProvisionedByParty {
        /// The reviewer.
        name: String,
        /// What was provisioned.
        what: Provisioned,
        /// Who provisioned it (`user:NAME`).
        by: String,
        /// How that one is tied to the request.
        relation: SelfRelation,
    },
    /// The request is no longer waiting for reviews.
    #[error("request is {status}, no longer pending")]
    NotPending {
        /// Its current status.
        status: RequestStatus,
    },
    /// The review deadline has passed.
    #[error("request expired at {at}")]
    Expired {
        /// The deadline.
        at: Timestamp,
    },
    /// One review per human.
    #[error("{name} has already reviewed this request")]
    AlreadyReviewed {
        /// The reviewer.
        name: String,
    },
    /// The reviewer belongs to none of the required groups.
    #[error("{name} is in none of the groups this request needs ({groups})")]
    NotInRequiredGroup {
        /// The reviewer.
        name: String,
        /// The required groups, comma-separated.
        groups: String,
    },
}

impl ReviewRefusal {
    /// The rule that refused the review, as a stable slug for logs and
    /// metrics (`self-review`, `provisioned-by-party`, `role`, …).
    pub fn rule(&self) -> &'static str {
        match self {
            ReviewRefusal::Agent { .. } => "agent-reviewer",
            ReviewRefusal::Role { .. } => "role",
            ReviewRefusal::SelfReview { .. } => "self-review",
            ReviewRefusal::ProvisionedByParty { .. } => "provisioned-by-party",
            ReviewRefusal::NotPending { .. } => "not-pending",
            ReviewRefusal::Expired { .. } => "expired",
            ReviewRefusal::AlreadyReviewed { .. } => "already-reviewed",
            ReviewRefusal::NotInRequiredGroup { .. } => "not-eligible",
        }
    }
}

/// Why a claim was refused. Every refusal is itself recorded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimRefusal {
    /// Only the requesting principal may claim.
    #[error("only {owner} may claim this request")]
    NotRequester {
        /// The requester.
        owner: String,
    },
    /// The approval is for a different action.
    #[error("digest {presented} does not match the approved action {approved}")]
    DigestMismatch {
        /// What the gate presented.
        presented: String,
        /// What was approved.
        approved: String,
    },
    /// Not approved (pending, denied, already claimed…).
    #[error("request is {status}; only an approved request can be claimed")]
    NotApproved {
        /// Its current status.
        status: RequestStatus,
    },
    /// The approval window passed.
    #[error("approval lapsed at {at}")]
    Lapsed {
        /// When it lapsed.
        at: Timestamp,
    },
    /// The policy changed and now denies the action.
    #[error("the policy now denies this action ({0})")]
    PolicyNowDenies(String),
    /// The policy changed and now needs more approvals.
    #[error("the policy now requires {0}; the request is pending again")]
    PolicyNeedsMore(String),
}

impl ClaimRefusal {
    /// The rule that refused the claim, as a stable slug for logs and
    /// metrics (`digest-mismatch`, `policy-denies`, …).
    pub fn rule(&self) -> &'static str {
        match self {
            ClaimRefusal::NotRequester { .. } => "not-requester",
            ClaimRefusal::DigestMismatch { .. } => "digest-mismatch",
            ClaimRefusal::NotApproved { .. } => "not-claimable",
            ClaimRefusal::Lapsed { .. } => "lapsed",
            ClaimRefusal::PolicyNowDenies(_) => "policy-denies",
            ClaimRefusal::PolicyNeedsMore(_) => "needs-approval",
        }
    }
}

/// Why an outcome or cancellation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionRefusal {
    /// The caller is not allowed to do this to this request.
    #[error("only {0} may do this")]
    NotAllowed(String),
    /// The request is in the wrong state.
    #[error("request is {0}")]
    WrongStatus(RequestStatus),
}

/// A request for an action with its verdict, reviews and outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// Unique, time-sortable id.
    pub id: String,
    /// What was asked.
    pub action: ActionRequest,
    /// [`ActionRequest::digest`] of it.
    pub digest: Digest,
    /// Which gate submitted it (`exec`, `api`, …), as its credential
    /// establishes it.
    pub gate: Option<String>,
    /// The gate the client named, when it differs from `gate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claimed_gate: Option<String>,
    /// The human owning the requesting agent, when the principal is an agent.
    pub principal_owner: Option<String>,
    /// Who created the requesting agent (an event actor such as
    /// `user:carol`), when known: tied to the agent like its owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal_created_by: Option<String>,
    /// The verdict in force (replaced if the policy changes at claim time).
    pub verdict: Verdict,
    /// Where it is in the lifecycle.
    pub status: RequestStatus,
    /// Why it reached its status (deny reason, refusal…), if any.
    pub status_reason: Option<String>,
    /// When it was submitted.
    pub created_at: Timestamp,
    /// Review deadline while pending; claim deadline once approved by reviewers.
    pub expires_at: Option<Timestamp>,
    /// When it was approved, denied, expired or cancelled.
    pub decided_at: Option<Timestamp>,
    /// All reviews, in order.
    pub reviews: Vec<Review>,
    /// When a gate claimed it.
    pub claimed_at: Option<Timestamp>,
    /// What happened when it ran.
    pub outcome: Option<Outcome>,
    /// The client's idempotency key, if it sent one.
    pub idempotency_key: Option<String>,
    /// The facts it was decided on (catalog, principal attributes) beside
    /// the requester's claims; absent on requests from before the catalog.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facts: Option<crate::facts::RequestFacts>,
    /// Optimistic-concurrency version, bumped by the store on every update.
    pub version: i64,
}

/// Everything a new request is made of.
#[derive(Debug, Clone)]
pub struct Submission {
    /// Unique, time-sortable id.
    pub id: String,
    /// What is asked.
    pub action: ActionRequest,
    /// Which gate submits it, as the credential establishes it.
    pub gate: Option<String>,
    /// The gate the client named, when it differs from `gate` (a claim,
    /// shown to reviewers, never given to policies).
    pub claimed_gate: Option<String>,
    /// The owner of the requesting agent, if any.
    pub principal_owner: Option<String>,
    /// Who created the requesting agent, if known.
    pub principal_created_by: Option<String>,
    /// The policy's verdict.
    pub verdict: Verdict,
    /// The client's idempotency key.
    pub idempotency_key: Option<String>,
    /// The facts the verdict was decided on.
    pub facts: Option<crate::facts::RequestFacts>,
}

/// Settings for time bounds.
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    /// Review time when the policy gives no `@ttl`.
    pub default_ttl: SignedDuration,
    /// How long an approval stays claimable.
    pub approval_window: SignedDuration,
}

impl Deadlines {
    /// How long reviewers have under `verdict`: its `@ttl`, else the default.
    pub fn review_ttl(&self, verdict: &Verdict) -> SignedDuration {
        verdict
            .ttl_seconds
            .and_then(|s| i64::try_from(s).ok())
            .map(SignedDuration::from_secs)
            .unwrap_or(self.default_ttl)
    }
}

impl Default for Deadlines {
    fn default() -> Self {
        Deadlines {
            default_ttl: SignedDuration::from_hours(1),
            approval_window: SignedDuration::from_mins(15),
        }
    }
}

impl RequestRecord {
    /// A new request with the verdict of the policy; returns the submission event.
    pub fn submit(new: Submission, now: Timestamp, deadlines: Deadlines) -> (Self, AuditEvent) {
        let Submission {
            id,
            action,
            gate,
            claimed_gate,
            principal_owner,
            principal_created_by,
            verdict,
            idempotency_key,
            facts,
        } = new;
        let (status, expires_at, decided_at) = match verdict.decision {
            // auto-allowed requests never lapse: the claim re-checks the policy anyway
            Decision::Allow => (RequestStatus::Approved, None, Some(now)),
            Decision::Deny => (RequestStatus::Denied, None, Some(now)),
            Decision::ApprovalRequired => (
                RequestStatus::Pending,
                Some(add(now, deadlines.review_ttl(&verdict))),
                None,
            ),
        };
        let status_reason =
            (verdict.decision == Decision::Deny).then(|| verdict.reasons.join("; "));
        // only an agent's creator is tied to it (a user's account creator is not)
        let is_agent = action.principal.kind == PrincipalKind::Agent;
        let record = RequestRecord {
            id,
            digest: action.digest(),
            action,
            gate,
            claimed_gate,
            principal_owner,
            principal_created_by: principal_created_by.filter(|_| is_agent),
            verdict,
            status,
            status_reason,
            created_at: now,
            expires_at,
            decided_at,
            reviews: Vec::new(),
            claimed_at: None,
            outcome: None,
            idempotency_key,
            facts,
            version: 0,
        };
        let mut event = record.event(
            EventKind::RequestSubmitted,
            now,
            record.action.principal.to_string(),
        );
        event.detail = serde_json::json!({
            "action": record.action,
            "gate": record.gate,
            "status": record.status,
            "requirement": record.verdict.requirement,
            "expires_at": record.expires_at,
            "reasons": record.verdict.reasons,
            "errors": record.verdict.errors,
        });
        if let (Some(claimed), Some(detail)) = (&record.claimed_gate, event.detail.as_object_mut())
        {
            detail.insert("claimed_gate".into(), serde_json::json!(claimed));
        }
        if let (Some(facts), Some(detail)) = (&record.facts, event.detail.as_object_mut()) {
            detail.insert("facts".into(), serde_json::json!(facts));
        }
        (record, event)
    }

    /// An event about this request, carrying its digest and verdict.
    pub fn event(&self, kind: EventKind, now: Timestamp, actor: impl Into<String>) -> AuditEvent {
        let mut e = AuditEvent::new(kind, now, actor);
        e.request_id = Some(self.id.clone());
        e.digest = Some(self.digest.0.clone());
        e.verdict = Some(self.verdict.decision);
        e.policy_ids = self.verdict.policy_ids.clone();
        e.policy_set_hash = Some(self.verdict.policy_set_hash.clone());
        e
    }

    /// Approvals recorded so far.
    pub fn approvals(&self) -> impl Iterator<Item = &Review> {
        self.reviews
            .iter()
            .filter(|r| r.decision == ReviewDecision::Approve)
    }

    /// Whether the current approvals meet the current requirement.
    pub fn requirement_met(&self) -> bool {
        match &self.verdict.requirement {
            None => true,
            Some(req) => req.is_met_by(
                self.approvals()
                    .map(|r| r.groups.iter().map(String::as_str)),
            ),
        }
    }

    /// Applies a review. On refusal the record is unchanged and the returned
    /// event records the attempt.
    pub fn review(
        &mut self,
        reviewer: &Reviewer,
        decision: ReviewDecision,
        reason: Option<String>,
        now: Timestamp,
        deadlines: Deadlines,
    ) -> Result<Vec<AuditEvent>, (ReviewRefusal, Box<AuditEvent>)> {
        if let Err(refusal) = self.check_reviewer(reviewer, decision, now) {
            let mut detail =
                serde_json::json!({ "decision": decision, "channel": reviewer.channel });
            if let (
                ReviewRefusal::ProvisionedByParty {
                    what, by, relation, ..
                },
                Some(d),
            ) = (&refusal, detail.as_object_mut())
            {
                d.insert(
                    "provisioned".into(),
                    serde_json::json!({ "what": what.to_string(), "by": by, "relation": relation }),
                );
            }
            let event = self
                .event(EventKind::ReviewRefused, now, reviewer.actor())
                .with_reason(refusal.to_string())
                .with_detail(detail);
            return Err((refusal, Box::new(event)));
        }
        self.reviews.push(Review {
            reviewer: reviewer.name.clone(),
            decision,
            reason: reason.clone(),
            groups: reviewer.groups.clone(),
            at: now,
            channel: Some(reviewer.channel),
        });
        let mut recorded = self.event(EventKind::ReviewRecorded, now, reviewer.actor());
        recorded.reason = reason.clone();
        recorded.detail = serde_json::json!({
            "decision": decision,
            "groups": reviewer.groups,
            "channel": reviewer.channel,
        });
        let mut events = vec![recorded];
        match decision {
            ReviewDecision::Deny => {
                self.status = RequestStatus::Denied;
                self.decided_at = Some(now);
                self.expires_at = None;
                self.status_reason = Some(match &reason {
                    Some(r) => format!("denied by {}: {r}", reviewer.name),
                    None => format!("denied by {}", reviewer.name),
                });
                events.push(
                    self.event(EventKind::RequestDenied, now, reviewer.actor())
                        .with_reason(self.status_reason.clone().unwrap_or_default()),
                );
            }
            ReviewDecision::Approve if self.requirement_met() => {
                self.status = RequestStatus::Approved;
                self.decided_at = Some(now);
                self.expires_at = Some(add(now, deadlines.approval_window));
                let approvers: Vec<&str> = self.approvals().map(|r| r.reviewer.as_str()).collect();
                events.push(
                    self.event(EventKind::RequestApproved, now, reviewer.actor())
                        .with_detail(serde_json::json!({ "approvers": approvers, "claim_by": self.expires_at })),
                );
            }
            ReviewDecision::Approve => {}
        }
        Ok(events)
    }

    fn check_reviewer(
        &self,
        reviewer: &Reviewer,
        decision: ReviewDecision,
        now: Timestamp,
    ) -> Result<(), ReviewRefusal> {
        if reviewer.kind == PrincipalKind::Agent || reviewer.role == Role::Agent {
            return Err(ReviewRefusal::Agent {
                name: reviewer.name.clone(),
            });
        }
        if reviewer.role == Role::Auditor {
            return Err(ReviewRefusal::Role {
                name: reviewer.name.clone(),
                role: reviewer.role,
            });
        }
        // Separation of duties comes before state checks, so that a
        // self-approval attempt is always recorded as what it is.
        if let Some(relation) = self.self_relation(&reviewer.name) {
            return Err(ReviewRefusal::SelfReview {
                name: reviewer.name.clone(),
                relation,
            });
        }
        if decision == ReviewDecision::Approve {
            self.check_provenance(reviewer)?;
        }
        if self.status != RequestStatus::Pending {
            return Err(ReviewRefusal::NotPending {
                status: self.status,
            });
        }
        if let Some(at) = self.expires_at.filter(|at| *at <= now) {
            return Err(ReviewRefusal::Expired { at });
        }
        if self
            .reviews
            .iter()
            .any(|r| same_principal(&r.reviewer, &reviewer.name))
        {
            return Err(ReviewRefusal::AlreadyReviewed {
                name: reviewer.name.clone(),
            });
        }
        let requirement = self.verdict.requirement.clone().unwrap_or_default();
        let in_group = requirement
            .groups()
            .any(|g| reviewer.groups.iter().any(|rg| rg == g));
        // An admin may stop any pending request, but approves only as a group member.
        let admin_deny = reviewer.role == Role::Admin && decision == ReviewDecision::Deny;
        if !in_group && !admin_deny {
            return Err(ReviewRefusal::NotInRequiredGroup {
                name: reviewer.name.clone(),
                groups: requirement.groups().collect::<Vec<_>>().join(", "),
            });
        }
        Ok(())
    }

    /// Refuses an approval whose reviewer power came from a party to the
    /// request: the account, the credential used, or a membership in a
    /// group the request needs, provisioned by someone tied to it. Only
    /// approvals: a denial only ever stops an action.
    fn check_provenance(&self, reviewer: &Reviewer) -> Result<(), ReviewRefusal> {
        let needed: Vec<&str> = self
            .verdict
            .requirement
            .as_ref()
            .map(|r| r.groups().collect())
            .unwrap_or_default();
        let p = &reviewer.provenance;
        let mut grants: Vec<(Provisioned, &Option<String>)> = vec![
            (Provisioned::Account, &p.account),
            (Provisioned::Credential, &p.credential),
        ];
        for (group, by) in &p.memberships {
            if needed.contains(&group.as_str()) {
                grants.push((Provisioned::Membership(group.clone()), by));
            }
        }
        for (what, by) in grants {
            let Some(by) = by else { continue };
            if let Some(relation) = self.actor_relation(by) {
                return Err(ReviewRefusal::ProvisionedByParty {
                    name: reviewer.name.clone(),
                    what,
                    by: by.clone(),
                    relation,
                });
            }
        }
        Ok(())
    }

    /// How the human behind an event actor (`user:NAME`) is tied to this
    /// request. The console operator and agents are nobody's party here.
    pub fn actor_relation(&self, actor: &str) -> Option<SelfRelation> {
        let name = actor.strip_prefix("user:")?;
        self.self_relation(name)
    }

    /// How `name` is tied to this request, if at all.
    pub fn self_relation(&self, name: &str) -> Option<SelfRelation> {
        // Names compare in canonical form: a principal cannot slip past the
        // rule by spelling its own name with other capitals.
        let p = &self.action.principal;
        if p.kind == PrincipalKind::User && same_principal(&p.name, name) {
            Some(SelfRelation::Principal)
        } else if self
            .action
            .on_behalf_of
            .as_deref()
            .is_some_and(|o| same_principal(o, name))
        {
            Some(SelfRelation::OnBehalfOf)
        } else if self
            .principal_owner
            .as_deref()
            .is_some_and(|o| same_principal(o, name))
        {
            Some(SelfRelation::AgentOwner)
        } else if p.kind == PrincipalKind::Agent
            && self
                .principal_created_by
                .as_deref()
                .and_then(|by| by.strip_prefix("user:"))
                .is_some_and(|by| same_principal(by, name))
        {
            Some(SelfRelation::AgentCreator)
        } else {
            None
        }
    }

    /// Withdraws the request. `by` must be the requester unless `is_admin`.
    pub fn cancel(
        &mut self,
        by: &PrincipalRef,
        is_admin: bool,
        reason: Option<String>,
        now: Timestamp,
    ) -> Result<Vec<AuditEvent>, TransitionRefusal> {
        if by != &self.action.principal && !is_admin {
            return Err(TransitionRefusal::NotAllowed(format!(
                "the requester {} or an admin",
                self.action.principal
            )));
        }
        if !matches!(
            self.status,
            RequestStatus::Pending | RequestStatus::Approved
        ) {
            return Err(TransitionRefusal::WrongStatus(self.status));
        }
        self.status = RequestStatus::Cancelled;
        self.decided_at = Some(now);
        self.expires_at = None;
        self.status_reason = Some(match &reason {
            Some(r) => format!("cancelled by {by}: {r}"),
            None => format!("cancelled by {by}"),
        });
        let mut e = self.event(EventKind::RequestCancelled, now, by.to_string());
        e.reason = reason;
        Ok(vec![e])
    }

    /// Expires a pending request or lapses an unclaimed approval whose deadline
    /// has passed; returns no events when nothing is due.
    pub fn expire_if_due(&mut self, now: Timestamp) -> Vec<AuditEvent> {
        let Some(at) = self.expires_at.filter(|at| *at <= now) else {
            return Vec::new();
        };
        let (status, kind, reason) = match self.status {
            RequestStatus::Pending => (
                RequestStatus::Expired,
                EventKind::RequestExpired,
                "no decision before the deadline",
            ),
            RequestStatus::Approved => (
                RequestStatus::Lapsed,
                EventKind::ApprovalLapsed,
                "approval not claimed before the deadline",
            ),
            _ => return Vec::new(),
        };
        self.status = status;
        if status == RequestStatus::Expired {
            self.decided_at = Some(at);
        }
        self.status_reason = Some(reason.to_owned());
        self.expires_at = None;
        vec![self.event(kind, now, "system").with_reason(reason)]
    }

    /// Claims the approval right before the action runs. `recheck` is the
    /// policy's verdict *now*. On refusal the record may still change (the
    /// policy now denies, or wants more approvals) and the event records it.
    pub fn claim(
        &mut self,
        by: &PrincipalRef,
        presented: &Digest,
        recheck: Verdict,
        now: Timestamp,
        deadlines: Deadlines,
    ) -> Result<Vec<AuditEvent>, (ClaimRefusal, Vec<AuditEvent>)> {
        let refuse = |this: &Self, refusal: ClaimRefusal| {
            let e = this
                .event(EventKind::ClaimRefused, now, by.to_string())
                .with_reason(refusal.to_string())
                .with_detail(serde_json::json!({ "presented_digest": presented }));
            Err((refusal, vec![e]))
        };
        if by != &self.action.principal {
            return refuse(
                self,
                ClaimRefusal::NotRequester {
                    owner: self.action.principal.to_string(),
                },
            );
        }
        if presented != &self.digest {
            return refuse(
                self,
                ClaimRefusal::DigestMismatch {
                    presented: presented.0.clone(),
                    approved: self.digest.0.clone(),
                },
            );
        }
        if self.status == RequestStatus::Approved {
            if let Some(at) = self.expires_at.filter(|at| *at <= now) {
                let mut events = self.expire_if_due(now);
                let refusal = ClaimRefusal::Lapsed { at };
                events.extend(
                    refuse(self, refusal.clone())
                        .err()
                        .map(|(_, e)| e)
                        .unwrap_or_default(),
                );
                return Err((refusal, events));
            }
        }
        if self.status != RequestStatus::Approved {
            return refuse(
                self,
                ClaimRefusal::NotApproved {
                    status: self.status,
                },
            );
        }
        match recheck.decision {
            Decision::Deny => {
                let why = match recheck.reasons.is_empty() {
                    true => recheck.summary(),
                    false => format!("{}: {}", recheck.summary(), recheck.reasons.join("; ")),
                };
                let refusal = ClaimRefusal::PolicyNowDenies(why.clone());
                let mut events = refuse(self, refusal.clone())
                    .err()
                    .map(|(_, e)| e)
                    .unwrap_or_default();
                self.verdict = recheck;
                self.status = RequestStatus::Denied;
                self.decided_at = Some(now);
                self.expires_at = None;
                self.status_reason = Some(format!("policy changed before execution: {why}"));
                events.push(
                    self.event(EventKind::RequestDenied, now, "system")
                        .with_reason(self.status_reason.clone().unwrap_or_default()),
                );
                return Err((refusal, events));
            }
            Decision::ApprovalRequired => {
                let previous = self.verdict.clone();
                self.verdict = recheck;
                if !self.requirement_met() {
                    let needed = self
                        .verdict
                        .requirement
                        .clone()
                        .unwrap_or_default()
                        .to_string();
                    let refusal = ClaimRefusal::PolicyNeedsMore(needed.clone());
                    let ttl = deadlines.review_ttl(&self.verdict);
                    let mut events = refuse(self, refusal.clone())
                        .err()
                        .map(|(_, e)| e)
                        .unwrap_or_default();
                    self.status = RequestStatus::Pending;
                    self.decided_at = None;
                    self.expires_at = Some(add(now, ttl));
                    events.push(self.event(EventKind::RequirementChanged, now, "system").with_detail(
                        serde_json::json!({ "previous": previous.requirement, "now": self.verdict.requirement }),
                    ));
                    return Err((refusal, events));
                }
            }
            Decision::Allow => self.verdict = recheck,
        }
        self.status = RequestStatus::Executing;
        self.claimed_at = Some(now);
        self.expires_at = None;
        Ok(vec![self.event(
            EventKind::RequestClaimed,
            now,
            by.to_string(),
        )])
    }

    /// Records what happened when the action ran. Only the requester may report.
    pub fn record_outcome(
        &mut self,
        by: &PrincipalRef,
        outcome: Outcome,
    ) -> Result<Vec<AuditEvent>, TransitionRefusal> {
        if by != &self.action.principal {
            return Err(TransitionRefusal::NotAllowed(
                self.action.principal.to_string(),
            ));
        }
        if self.status != RequestStatus::Executing {
            return Err(TransitionRefusal::WrongStatus(self.status));
        }
        self.status = RequestStatus::Executed;
        let mut e = self.event(
            EventKind::OutcomeRecorded,
            outcome.reported_at,
            by.to_string(),
        );
        e.reason = outcome.summary.clone();
        e.detail = serde_json::to_value(&outcome).unwrap_or_default();
        self.outcome = Some(outcome);
        Ok(vec![e])
    }
}

fn add(t: Timestamp, d: SignedDuration) -> Timestamp {
    t.checked_add(d).unwrap_or(Timestamp::MAX)
}

#[cfg(test)]
mod tests;
