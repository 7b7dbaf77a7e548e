//! The wire format of the REST API: the one module that defines what goes over
//! HTTP. The server serializes these and the gates' client deserializes them,
//! so the two can never drift apart.

use crate::action::{ActionRequest, Digest};
use crate::event::{AuditEvent, EventKind};
use crate::principal::{Credential, Principal, PrincipalKind, Role};
use crate::request::{Outcome, RequestRecord, RequestStatus, Review, ReviewDecision};
use crate::verdict::{Decision, Verdict};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `POST /v1/requests`: what an agent asks to do. The principal is the caller.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitRequest {
    /// Dotted verb, e.g. `db.export`.
    #[schema(min_length = 1)]
    pub action: String,
    /// What the action touches.
    #[schema(min_length = 1)]
    pub resource: String,
    /// Where, e.g. `prod`.
    #[serde(default)]
    pub environment: Option<String>,
    /// Action-specific facts for policies and reviewers.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub context: Map<String, Value>,
    /// The business reason.
    #[serde(default)]
    pub justification: Option<String>,
    /// The human who triggered the action, if any.
    #[serde(default)]
    pub on_behalf_of: Option<String>,
    /// The gate submitting (`exec`, `api`, …); defaults to `api`.
    #[serde(default)]
    pub gate: Option<String>,
    /// Claim at once: when the policy allows the request outright, it is
    /// claimed for this digest in the same commit as its submission (the
    /// response's status is then `executing`). The gate computes it itself
    /// from what it will run, exactly as for `POST /v1/requests/{id}/claim`;
    /// a different digest is refused like a claim (409, recorded). Ignored
    /// when the request needs approval or is denied, and when an
    /// `Idempotency-Key` replays an existing request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim_digest: Option<Digest>,
}

impl SubmitRequest {
    /// The action this body asks for when `principal` submits it: what the
    /// gateway records and digests, so what a gate digests to claim it.
    pub fn action_for(&self, principal: crate::PrincipalRef) -> ActionRequest {
        ActionRequest {
            action: self.action.clone(),
            resource: self.resource.clone(),
            environment: self.environment.clone(),
            context: self.context.clone(),
            justification: self.justification.clone(),
            principal,
            on_behalf_of: self.on_behalf_of.clone(),
        }
    }
}

/// A request as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RequestView {
    /// Unique id.
    pub id: String,
    /// Lifecycle status.
    pub status: RequestStatus,
    /// Why it has that status, if there is more to say.
    pub status_reason: Option<String>,
    /// What was asked, by whom.
    #[serde(flatten)]
    pub request: ActionRequest,
    /// The digest an approval is bound to.
    pub digest: Digest,
    /// The gate that submitted it.
    pub gate: Option<String>,
    /// The verdict in force.
    pub verdict: Verdict,
    /// Who has approved so far.
    pub approved_by: Vec<String>,
    /// Every review, in order.
    pub reviews: Vec<Review>,
    /// When it was submitted.
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    /// Review deadline while pending; claim deadline once approved.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<Timestamp>,
    /// When it was decided.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub decided_at: Option<Timestamp>,
    /// When a gate claimed it.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub claimed_at: Option<Timestamp>,
    /// What happened when it ran.
    pub outcome: Option<Outcome>,
    /// Facts the gateway resolved (catalog, principal attributes), shown
    /// beside the requester's claims (`environment`, `context`):
    /// `facts.resource.environment` is what policies trust,
    /// `facts.asserted_environment` what the requester said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facts: Option<crate::facts::RequestFacts>,
    /// Bumped by every change (each review, the decision, the claim…); pass
    /// it as `since_version` to `/wait` to hear of the next change.
    #[serde(default)]
    pub version: i64,
}

impl From<&RequestRecord> for RequestView {
    fn from(r: &RequestRecord) -> Self {
        RequestView {
            id: r.id.clone(),
            status: r.status,
            status_reason: r.status_reason.clone(),
            request: r.action.clone(),
            digest: r.digest.clone(),
            gate: r.gate.clone(),
            verdict: r.verdict.clone(),
            approved_by: r.approvals().map(|a| a.reviewer.clone()).collect(),
            reviews: r.reviews.clone(),
            created_at: r.created_at,
            expires_at: r.expires_at,
            decided_at: r.decided_at,
            claimed_at: r.claimed_at,
            outcome: r.outcome.clone(),
            facts: r.facts.clone(),
            version: r.version,
        }
    }
}

/// A page of requests, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RequestPage {
    /// The requests.
    pub requests: Vec<RequestView>,
    /// Pass as `before` to get the next page; absent on the last page.
    pub next_before: Option<String>,
}

/// `POST /v1/requests/{id}/reviews`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewBody {
    /// Approve or deny.
    pub decision: ReviewDecision,
    /// Why; required to deny.
    #[serde(default)]
    pub reason: Option<String>,
}

/// `POST /v1/requests/{id}/cancel`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelBody {
    /// Why.
    #[serde(default)]
    pub reason: Option<String>,
}

/// `POST /v1/requests/{id}/claim`: the gate presents the digest of the action
/// it is about to run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimBody {
    /// SHA-256 of the canonical action, computed by the gate.
    pub digest: Digest,
}

/// `POST /v1/requests/{id}/outcome`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OutcomeBody {
    /// Exit status, if the process exited.
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// Signal number, if a signal ended it.
    #[serde(default)]
    pub signal: Option<i32>,
    /// Wall time.
    pub duration_ms: u64,
    /// SHA-256 (hex) of its standard output.
    #[serde(default)]
    #[schema(pattern = "^[0-9a-fA-F]{64}$")]
    pub output_sha256: Option<String>,
    /// Short summary (≤ 1,000 characters).
    #[serde(default)]
    pub summary: Option<String>,
}

impl OutcomeBody {
    /// The outcome of an action that did not run, or whose running the gate
    /// does not see: no signal, no time, no output.
    pub fn not_run(exit_code: Option<i32>, summary: String) -> Self {
        OutcomeBody {
            exit_code,
            signal: None,
            duration_ms: 0,
            output_sha256: None,
            summary: Some(summary),
        }
    }
}

/// `POST /v1/principals` (admin).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPrincipal {
    /// Agent or user.
    pub kind: PrincipalKind,
    /// Unique name.
    #[schema(min_length = 1)]
    pub name: String,
    /// Role; agents are always `agent`, users default to `reviewer`.
    #[serde(default)]
    pub role: Option<Role>,
    /// A user's email.
    #[serde(default)]
    pub email: Option<String>,
    /// A user's groups.
    #[serde(default)]
    pub groups: Vec<String>,
    /// An agent's owner.
    #[serde(default)]
    pub owner: Option<String>,
    /// Bind the first credential to this gate (`exec`, `mcp`, …).
    #[schema(min_length = 1)]
    #[serde(default)]
    pub gate: Option<String>,
    /// Registered attributes (an agent's `environments`, `team`, `labels`;
    /// a user's `department`, `team`, `labels`).
    #[serde(default)]
    pub attributes: crate::facts::PrincipalAttributes,
}

/// A newly created principal and its bearer token, shown once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CreatedPrincipal {
    /// The principal.
    pub principal: Principal,
    /// Its bearer token; only its hash is stored.
    pub token: String,
    /// The credential the token belongs to.
    #[serde(default)]
    pub credential: Option<Credential>,
}

/// `POST /v1/principals/{name}/credentials` (admin).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCredentialBody {
    /// Unique per principal.
    #[schema(min_length = 1)]
    pub name: String,
    /// Bind it to one gate (`exec`, `mcp`, …); policies see the gate of the
    /// credential, not what a request body says.
    #[serde(default)]
    #[schema(min_length = 1)]
    pub gate: Option<String>,
    /// Lifetime, e.g. `30d`, `12h` (default: no expiry).
    #[serde(default)]
    pub expires_in: Option<String>,
}

/// A newly issued credential and its token, shown once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CreatedCredential {
    /// The credential.
    pub credential: Credential,
    /// Its bearer token; only its hash is stored.
    pub token: String,
}

/// `POST /v1/principals/{name}/identities` (admin).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkIdentityBody {
    /// OIDC issuer URL, `slack:TEAM_ID` or `teams:TENANT_ID`.
    #[schema(min_length = 1)]
    pub issuer: String,
    /// The subject's stable id there.
    #[schema(min_length = 1)]
    pub subject: String,
    /// How the link was verified (default `admin`: an admin vouches for it).
    #[serde(default)]
    pub verified_by: Option<String>,
}

/// A page of audit events in log order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EventPage {
    /// The events.
    pub events: Vec<AuditEvent>,
    /// Pass as `after` to get the next page; absent when there is nothing more yet.
    pub next_after: Option<u64>,
}

/// The active policy set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PolicySetInfo {
    /// SHA-256 over the policy files, the schema and the resource catalog.
    pub hash: String,
    /// Ids of all policies.
    pub policy_ids: Vec<String>,
    /// When it was loaded.
    #[schema(value_type = String, format = DateTime)]
    pub loaded_at: Timestamp,
    /// Number of resource entries in the catalog (0: no `catalog.toml`).
    #[serde(default)]
    pub catalog_entries: usize,
    /// Problems that did not stop the set from loading, as `file:line:column: warning: …`.
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// Who the caller is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WhoAmI {
    /// The principal.
    pub principal: Principal,
    /// The name of the credential presented.
    #[serde(default)]
    pub credential: Option<String>,
    /// The gate that credential is bound to.
    #[serde(default)]
    pub gate: Option<String>,
    /// The channel the call came through.
    #[serde(default = "default_channel")]
    pub channel: crate::principal::Channel,
}

fn default_channel() -> crate::principal::Channel {
    crate::principal::Channel::Api
}

/// RFC 9457 problem details, served as `application/problem+json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Problem {
    /// URI naming the problem type.
    #[serde(rename = "type")]
    pub problem_type: String,
    /// Short summary of the type.
    pub title: String,
    /// HTTP status.
    pub status: u16,
    /// What went wrong this time, naming the offending input.
    pub detail: String,
    /// The request path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// The request concerned, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// One ledger entry as `GET /v1/ledger/entries` serves it: the exact leaf
/// bytes that the Merkle tree hashes, and the event they encode, decoded for
/// reading. Verifiers must hash `leaf`, never re-encode the decoded fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LedgerEntry {
    /// Position in the log (dense from 0).
    pub index: u64,
    /// Standard base64 (with padding) of the leaf bytes:
    /// `signoff-event-v1\n` followed by the RFC 8785 JSON of the event.
    pub leaf: String,
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
    /// Kind-specific details: any JSON value, `null` when there are none.
    #[schema(value_type = Value)]
    pub detail: Value,
}

impl LedgerEntry {
    /// The entry for `event` at `index` with base64 leaf bytes `leaf`.
    pub fn new(index: u64, leaf: String, event: AuditEvent) -> Self {
        LedgerEntry {
            index,
            leaf,
            kind: event.kind,
            time: event.time,
            actor: event.actor,
            request_id: event.request_id,
            digest: event.digest,
            verdict: event.verdict,
            policy_ids: event.policy_ids,
            policy_set_hash: event.policy_set_hash,
            reason: event.reason,
            detail: event.detail,
        }
    }

    /// The decoded event (with its index), for display. Not what the tree
    /// hashes: that is [`LedgerEntry::leaf`].
    pub fn event(&self) -> AuditEvent {
        AuditEvent {
            index: Some(self.index),
            kind: self.kind,
            time: self.time,
            actor: self.actor.clone(),
            request_id: self.request_id.clone(),
            digest: self.digest.clone(),
            verdict: self.verdict,
            policy_ids: self.policy_ids.clone(),
            policy_set_hash: self.policy_set_hash.clone(),
            reason: self.reason.clone(),
            detail: self.detail.clone(),
        }
    }
}

/// `GET /v1/ledger/entries`: entries `[start, end)` in log order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LedgerEntryPage {
    /// The entries, by increasing index.
    pub entries: Vec<LedgerEntry>,
    /// When the range asked for was longer than one page (1,000 entries):
    /// the index to pass as `start` for the rest. Absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<u64>,
}

/// An RFC 9162 inclusion or consistency proof: the hashes, standard base64,
/// in the order the RFC's verification algorithms consume them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProofHashes {
    /// SHA-256 node hashes, standard base64 with padding.
    pub hashes: Vec<String>,
}

/// `GET /readyz`: the database and each background component.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Readiness {
    /// `ready` when the database answers and no component is failing.
    pub status: String,
    /// The database check.
    pub database: ComponentHealth,
    /// Each running component by name.
    pub components: std::collections::BTreeMap<String, ComponentHealth>,
}

/// How one component is doing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ComponentHealth {
    /// `starting`, `ok`, `failing` or `stopped`.
    pub status: String,
    /// What it last did or why it fails.
    pub detail: String,
    /// When the status last changed.
    #[schema(value_type = String, format = DateTime)]
    pub since: Timestamp,
}
