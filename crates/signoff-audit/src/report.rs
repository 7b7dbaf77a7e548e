//! The auditor's period report: the population of privileged actions of a
//! period, one row per request, built from the ledger's events (the
//! evidence) and reconciled with the requests table.
//!
//! Rendering is pure ([`render`]) so it can be snapshot-tested.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use signoff_core::{
    AuditEvent, Decision, EventKind, Outcome, RequestRecord, RequestStatus, Requirement,
};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;

/// The report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// The period `[since, until)`.
    pub period: Period,
    /// When the report was made.
    pub generated_at: Timestamp,
    /// The signed checkpoint the events were checked against.
    pub checkpoint: CheckpointInfo,
    /// Which entries the report covers.
    pub ledger: LedgerRange,
    /// Totals that reconcile with the ledger.
    pub counts: Counts,
    /// Differences between the ledger and the requests table, or between
    /// the totals; empty when everything reconciles.
    pub discrepancies: Vec<String>,
    /// Policy sets loaded or rejected in the period.
    #[serde(default)]
    pub policy_changes: Vec<PolicyChange>,
    /// One row per request submitted in the period, in ledger order.
    pub requests: Vec<Row>,
}

/// A policy set loaded or rejected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyChange {
    /// Ledger index.
    pub index: u64,
    /// When.
    pub at: Timestamp,
    /// Who (`console`, `system:reload`, `user:NAME`).
    pub actor: String,
    /// Whether the set became active (`false`: rejected, the previous one stayed).
    pub loaded: bool,
    /// The set's hash, when known.
    pub policy_set_hash: Option<String>,
    /// The reason given or the rejection's diagnostics.
    pub reason: Option<String>,
}

impl PolicyChange {
    /// The change an event records, if it records one.
    pub fn from_event(e: &AuditEvent) -> Option<PolicyChange> {
        let loaded = match e.kind {
            EventKind::PolicySetLoaded => true,
            EventKind::PolicySetRejected => false,
            _ => return None,
        };
        Some(PolicyChange {
            index: e.index.unwrap_or_default(),
            at: e.time,
            actor: e.actor.clone(),
            loaded,
            policy_set_hash: e
                .policy_set_hash
                .clone()
                .or_else(|| str_at(&e.detail, "hash")),
            reason: e.reason.clone(),
        })
    }
}

/// A period.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Period {
    /// Inclusive start.
    pub since: Timestamp,
    /// Exclusive end.
    pub until: Timestamp,
}

/// The checkpoint a report was made from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointInfo {
    /// The log's origin line (the note's first line).
    pub origin: String,
    /// Tree size.
    pub size: u64,
    /// Base64 root hash.
    pub root: String,
    /// When it was signed.
    pub signed_at: Timestamp,
}

/// The ledger entries a report covers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LedgerRange {
    /// First entry of the period, if any.
    pub first_index: Option<u64>,
    /// Last entry of the period, if any.
    pub last_index: Option<u64>,
    /// Entries in the period.
    pub events: u64,
    /// `request_submitted` entries in the period.
    pub request_submitted_events: u64,
}

/// Totals.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Counts {
    /// Rows in the report (equals `ledger.request_submitted_events`).
    pub requests: u64,
    /// Rows per status at the checkpoint (every status listed).
    pub by_status: BTreeMap<String, u64>,
    /// Rows flagged `denied`.
    pub denied: u64,
    /// Rows flagged `expired`.
    pub expired: u64,
    /// Refused self-approval attempts, all rows together.
    pub refused_self_approvals: u64,
    /// Refused claims, all rows together.
    #[serde(default)]
    pub claim_refusals: u64,
    /// Rows flagged `executed_without_approval` (must be 0).
    pub executed_without_approval: u64,
    /// Approvals whose approver was provisioned by someone tied to the
    /// request (see [`Row::approvals_provisioned_by_party`]).
    pub approvals_provisioned_by_party: u64,
}

/// An approval or a denial.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewEntry {
    /// The reviewer.
    pub reviewer: String,
    /// When.
    pub at: Timestamp,
    /// Their reason, if any.
    pub reason: Option<String>,
    /// The channel it came through (`cli`, `api`, `slack`…).
    #[serde(default)]
    pub channel: Option<String>,
}

/// One request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    /// Request id.
    pub request_id: String,
    /// Ledger index of its `request_submitted` entry.
    pub submitted_index: u64,
    /// Submission time.
    pub submitted_at: Timestamp,
    /// Action.
    pub action: String,
    /// Resource.
    pub resource: String,
    /// Environment.
    pub environment: Option<String>,
    /// Requesting principal (`agent:NAME` / `user:NAME`).
    pub principal: String,
    /// Owner of the requesting agent (from the requests table).
    pub principal_owner: Option<String>,
    /// The human it was on behalf of.
    pub on_behalf_of: Option<String>,
    /// The business reason given.
    pub justification: Option<String>,
    /// What was run: the command the exec gate bound, or the request's
    /// parameters (its context) for other gates.
    #[serde(default)]
    pub command: Option<String>,
    /// The deciding policy's reason (`@reason`), if it gave one.
    #[serde(default)]
    pub policy_reason: Option<String>,
    /// The gate that submitted it.
    pub gate: Option<String>,
    /// Verdict at submission.
    pub verdict: String,
    /// Policies that determined it.
    pub policy_ids: Vec<String>,
    /// The policy set version (hash).
    pub policy_set_hash: Option<String>,
    /// The approval requirement, e.g. `sre:2`.
    pub requirement: Option<String>,
    /// Status at the checkpoint.
    pub status: String,
    /// Approvals, in order.
    pub approvals: Vec<ReviewEntry>,
    /// Denials, in order.
    pub denials: Vec<ReviewEntry>,
    /// When it was approved, denied, expired or cancelled (or allowed).
    pub decided_at: Option<Timestamp>,
    /// When the gate claimed it: execution start.
    pub claimed_at: Option<Timestamp>,
    /// Exit code of the action.
    pub exit_code: Option<i32>,
    /// Signal that ended it.
    pub signal: Option<i32>,
    /// Outcome summary.
    pub outcome_summary: Option<String>,
    /// SHA-256 of the action's stdout.
    pub output_sha256: Option<String>,
    /// Refused attempts to approve it by someone tied to it.
    pub refused_self_approvals: u32,
    /// Refused claims (wrong digest, second claim, policy change…).
    #[serde(default)]
    pub claim_refusals: u32,
    /// It expired without a decision.
    pub expired: bool,
    /// It was denied (by a reviewer or by the policy).
    pub denied: bool,
    /// It ran without the approval it needed (must never happen).
    pub executed_without_approval: bool,
    /// Approvals whose approver's account (and groups) was created by the
    /// requester, the on-behalf-of human, the agent's owner or its creator,
    /// or that the agent's creator gave: `approver (why)`. The gateway
    /// refuses these since migration 0004; any listed here were recorded
    /// before, or under rules an auditor should question.
    pub approvals_provisioned_by_party: Vec<String>,
    /// Why it is flagged, when it is.
    pub violation: Option<String>,
}

// ---------------------------------------------------------------- building

#[derive(Debug)]
struct Approval {
    reviewer: String,
    groups: Vec<String>,
    at: Timestamp,
}

#[derive(Debug)]
struct State {
    row: Row,
    requester_user: Option<String>,
    requirement: Option<Requirement>,
    approvals: Vec<Approval>,
    status: Option<RequestStatus>,
    claimed: bool,
    /// Statuses it had after the checkpoint, up to the last event read.
    later: HashSet<RequestStatus>,
}

impl State {
    fn violate(&mut self, why: String) {
        self.row.executed_without_approval = true;
        match &mut self.row.violation {
            Some(v) => {
                v.push_str("; ");
                v.push_str(&why);
            }
            None => self.row.violation = Some(why),
        }
    }

    /// Whether `name` is tied to the request (requester, on-behalf-of
    /// human, owner of the requesting agent) and so may not approve it.
    fn tied(&self, name: &str) -> bool {
        self.requester_user.as_deref() == Some(name)
            || self.row.on_behalf_of.as_deref() == Some(name)
            || self.row.principal_owner.as_deref() == Some(name)
    }

    /// Whether the approvals given by `at` meet the requirement, counting
    /// each untied human once.
    fn approved_by(&self, at: Timestamp) -> bool {
        let mut seen = BTreeSet::new();
        let valid: Vec<&Approval> = self
            .approvals
            .iter()
            .filter(|a| a.at <= at && !self.tied(&a.reviewer) && seen.insert(a.reviewer.as_str()))
            .collect();
        self.requirement
            .clone()
            .unwrap_or_default()
            .is_met_by(valid.iter().map(|a| a.groups.iter().map(String::as_str)))
    }

    /// The execution check at the `request_claimed` entry `e`.
    fn check_claim(&mut self, e: &AuditEvent) {
        let at = e.time;
        if self.status != Some(RequestStatus::Approved) {
            let was = self.status.map_or("unknown", RequestStatus::as_str);
            self.violate(format!("claimed at {at} while {was}"));
        }
        match e.verdict {
            Some(Decision::Allow) => {}
            Some(Decision::ApprovalRequired) => {
                if let Some(a) = self.approvals.iter().find(|a| self.tied(&a.reviewer)) {
                    let who = a.reviewer.clone();
                    self.violate(format!("approved by {who}, who may not approve it"));
                }
                if !self.approved_by(at) {
                    let req = self
                        .requirement
                        .as_ref()
                        .map_or_else(|| "approval".to_owned(), |r| r.to_string());
                    self.violate(format!(
                        "claimed at {at} without approvals meeting {req} before it"
                    ));
                }
            }
            _ => self.violate(format!("claimed at {at} under a deny verdict")),
        }
    }

    fn apply(&mut self, e: &AuditEvent) {
        let actor = user_name(&e.actor).unwrap_or(&e.actor).to_owned();
        match e.kind {
            EventKind::ReviewRecorded => {
                let entry = ReviewEntry {
                    reviewer: actor.clone(),
                    at: e.time,
                    reason: e.reason.clone(),
                    channel: str_at(&e.detail, "channel"),
                };
                match e.detail.get("decision").and_then(|d| d.as_str()) {
                    Some("approve") => {
                        let groups = e
                            .detail
                            .get("groups")
                            .and_then(|g| serde_json::from_value(g.clone()).ok())
                            .unwrap_or_default();
                        self.approvals.push(Approval {
                            reviewer: actor,
                            groups,
                            at: e.time,
                        });
                        self.row.approvals.push(entry);
                    }
                    Some("deny") => self.row.denials.push(entry),
                    _ => {}
                }
            }
            EventKind::ReviewRefused
                if e.reason.as_deref().is_some_and(|r| {
                    r.contains(SELF_REVIEW_MARK) || r.contains(PROVISIONED_MARK)
                }) =>
            {
                self.row.refused_self_approvals += 1;
            }
            EventKind::ClaimRefused => self.row.claim_refusals += 1,
            EventKind::RequestApproved | EventKind::RequestCancelled => {
                self.row.decided_at = Some(e.time)
            }
            EventKind::RequestDenied => {
                self.row.decided_at = Some(e.time);
                self.row.denied = true;
            }
            EventKind::RequestExpired => {
                self.row.decided_at = Some(e.time);
                self.row.expired = true;
            }
            EventKind::RequirementChanged => {
                self.requirement = e
                    .detail
                    .get("now")
                    .and_then(|r| serde_json::from_value(r.clone()).ok());
                self.row.decided_at = None;
            }
            EventKind::RequestClaimed => {
                self.check_claim(e);
                self.claimed = true;
                self.row.claimed_at = Some(e.time);
            }
            EventKind::OutcomeRecorded => {
                if !self.claimed {
                    self.violate(format!("outcome recorded at {} without a claim", e.time));
                }
                if let Ok(o) = serde_json::from_value::<Outcome>(e.detail.clone()) {
                    self.row.exit_code = o.exit_code;
                    self.row.signal = o.signal;
                    self.row.outcome_summary = o.summary;
                    self.row.output_sha256 = o.output_sha256;
                }
            }
            _ => {}
        }
        if let Some(s) = status_after(e) {
            self.status = Some(s);
            self.row.status = s.as_str().to_owned();
        }
    }
}

/// What a refused review says when the reviewer is tied to the request
/// (see `signoff_core::ReviewRefusal::SelfReview`).
const SELF_REVIEW_MARK: &str = "cannot review this request:";

/// What a refused approval says when the approver's account, credential or
/// membership was provisioned by someone tied to the request (see
/// `signoff_core::ReviewRefusal::ProvisionedByParty`): counted with the
/// self-approval attempts.
const PROVISIONED_MARK: &str = "reviewer power cannot come from a party to the request";

fn user_name(actor: &str) -> Option<&str> {
    actor.strip_prefix("user:")
}

fn status_after(e: &AuditEvent) -> Option<RequestStatus> {
    Some(match e.kind {
        EventKind::RequestSubmitted => {
            return e
                .detail
                .get("status")
                .and_then(|s| serde_json::from_value(s.clone()).ok())
        }
        EventKind::RequestApproved => RequestStatus::Approved,
        EventKind::RequestDenied => RequestStatus::Denied,
        EventKind::RequestExpired => RequestStatus::Expired,
        EventKind::RequestCancelled => RequestStatus::Cancelled,
        EventKind::RequestClaimed => RequestStatus::Executing,
        EventKind::OutcomeRecorded => RequestStatus::Executed,
        EventKind::ApprovalLapsed => RequestStatus::Lapsed,
        EventKind::RequirementChanged => RequestStatus::Pending,
        _ => return None,
    })
}

/// What ran: the exec gate's bound command, else the request's context
/// (its parameters) as compact JSON.
fn what_ran(action: &serde_json::Value) -> Option<String> {
    let context = action.get("context")?;
    if let Some(c) = context.get("command").and_then(|c| c.as_str()) {
        return Some(c.to_owned());
    }
    match context.as_object() {
        Some(m) if !m.is_empty() => Some(context.to_string()),
        _ => None,
    }
}

fn str_at(v: &serde_json::Value, key: &str) -> Option<String> {
    v.get(key).and_then(|s| s.as_str()).map(str::to_owned)
}

/// Builds the rows from ledger events, then reconciles them with the
/// requests table.
#[derive(Debug)]
pub struct Builder {
    period: Option<(u64, u64)>,
    covered: u64,
    table: HashMap<String, RequestRecord>,
    period_events: u64,
    submitted_events: u64,
    later_submitted: BTreeSet<String>,
    order: Vec<String>,
    states: HashMap<String, State>,
    discrepancies: Vec<String>,
}

impl Builder {
    /// Rows for the requests submitted in entries `first..=last` of
    /// `period` (none when `None`). Entries
    /// below `covered` (the checkpoint size) are the evidence; later ones
    /// only serve to reconcile with `table`, the requests created in the
    /// period as the requests table had them *before* the events were read.
    pub fn new(
        period: Option<(u64, u64)>,
        covered: u64,
        table: HashMap<String, RequestRecord>,
    ) -> Builder {
        Builder {
            period,
            covered,
            table,
            period_events: 0,
            submitted_events: 0,
            later_submitted: BTreeSet::new(),
            order: Vec::new(),
            states: HashMap::new(),
            discrepancies: Vec::new(),
        }
    }

    /// Feeds the next event, in index order, from `first` on.
    pub fn push(&mut self, e: &AuditEvent) {
        let index = e.index.unwrap_or(u64::MAX);
        let in_period = self
            .period
            .is_some_and(|(first, last)| (first..=last).contains(&index));
        if in_period {
            self.period_events += 1;
        }
        let Some(id) = e.request_id.clone() else {
            return;
        };
        if e.kind == EventKind::RequestSubmitted {
            if !in_period {
                self.later_submitted.insert(id);
                return;
            }
            self.submitted_events += 1;
            if self.states.contains_key(&id) {
                self.discrepancies.push(format!(
                    "request {id} has a second request_submitted entry (index {index})"
                ));
                return;
            }
            self.submit(id, index, e);
            return;
        }
        let Some(st) = self.states.get_mut(&id) else {
            return;
        };
        if index < self.covered {
            st.apply(e);
        } else if let Some(s) = status_after(e) {
            st.later.insert(s);
        }
    }

    fn submit(&mut self, id: String, index: u64, e: &AuditEvent) {
        let action = e.detail.get("action").cloned().unwrap_or_default();
        let requirement: Option<Requirement> = e
            .detail
            .get("requirement")
            .and_then(|r| serde_json::from_value(r.clone()).ok());
        let verdict = e.verdict.unwrap_or(Decision::Deny);
        let status = status_after(e);
        let row = Row {
            request_id: id.clone(),
            submitted_index: index,
            submitted_at: e.time,
            action: str_at(&action, "action").unwrap_or_default(),
            resource: str_at(&action, "resource").unwrap_or_default(),
            environment: str_at(&action, "environment"),
            principal: str_at(&action, "principal").unwrap_or_else(|| e.actor.clone()),
            principal_owner: self.table.get(&id).and_then(|r| r.principal_owner.clone()),
            on_behalf_of: str_at(&action, "on_behalf_of"),
            justification: str_at(&action, "justification"),
            command: what_ran(&action),
            policy_reason: e
                .detail
                .get("reasons")
                .and_then(|r| r.as_array())
                .map(|r| {
                    r.iter()
                        .filter_map(|x| x.as_str())
                        .collect::<Vec<_>>()
                        .join("; ")
                })
                .filter(|r| !r.is_empty()),
            gate: str_at(&e.detail, "gate"),
            verdict: verdict.as_str().to_owned(),
            policy_ids: e.policy_ids.clone(),
            policy_set_hash: e.policy_set_hash.clone(),
            requirement: requirement.as_ref().map(|r| r.to_string()),
            status: status.map_or("unknown", RequestStatus::as_str).to_owned(),
            approvals: Vec::new(),
            denials: Vec::new(),
            decided_at: (verdict != Decision::ApprovalRequired).then_some(e.time),
            claimed_at: None,
            exit_code: None,
            signal: None,
            outcome_summary: None,
            output_sha256: None,
            refused_self_approvals: 0,
            claim_refusals: 0,
            expired: false,
            denied: verdict == Decision::Deny,
            executed_without_approval: false,
            approvals_provisioned_by_party: Vec::new(),
            violation: None,
        };
        self.order.push(id.clone());
        self.states.insert(
            id,
            State {
                requester_user: user_name(&row.principal).map(str::to_owned),
                row,
                requirement,
                approvals: Vec::new(),
                status,
                claimed: false,
                later: HashSet::new(),
            },
        );
    }

    /// The rows, totals and discrepancies.
    pub fn finish(mut self) -> (Vec<Row>, LedgerRange, Counts, Vec<String>) {
        let mut discrepancies = std::mem::take(&mut self.discrepancies);
        let mut rows = Vec::with_capacity(self.order.len());
        for id in &self.order {
            let Some(mut st) = self.states.remove(id) else {
                continue;
            };
            match self.table.get(id) {
                None => discrepancies.push(format!(
                    "request {id} is in the ledger but not in the requests table"
                )),
                Some(rec) => {
                    let ledger_status = st.status;
                    let mut possible = st.later.clone();
                    possible.extend(ledger_status);
                    if !possible.contains(&rec.status) {
                        discrepancies.push(format!(
                            "request {id} is {} in the requests table but {} in the ledger",
                            rec.status,
                            ledger_status.map_or("unknown", RequestStatus::as_str)
                        ));
                    }
                    check_record(&mut st, rec);
                }
            }
            rows.push(st.row);
        }
        let in_report: BTreeSet<&str> = rows.iter().map(|r| r.request_id.as_str()).collect();
        let mut table_only: Vec<&RequestRecord> = self
            .table
            .values()
            .filter(|r| !in_report.contains(r.id.as_str()) && !self.later_submitted.contains(&r.id))
            .collect();
        table_only.sort_by(|a, b| a.id.cmp(&b.id));
        for r in table_only {
            discrepancies.push(format!(
                "request {} (created {}) is in the requests table but has no request_submitted entry in the ledger",
                r.id, r.created_at
            ));
        }
        if rows.len() as u64 != self.submitted_events {
            discrepancies.push(format!(
                "{} requests in the report but {} request_submitted entries in the period",
                rows.len(),
                self.submitted_events
            ));
        }
        let mut counts = Counts {
            requests: rows.len() as u64,
            ..Counts::default()
        };
        for s in RequestStatus::ALL {
            counts.by_status.insert(s.as_str().to_owned(), 0);
        }
        for r in &rows {
            *counts.by_status.entry(r.status.clone()).or_insert(0) += 1;
            counts.denied += u64::from(r.denied);
            counts.expired += u64::from(r.expired);
            counts.refused_self_approvals += u64::from(r.refused_self_approvals);
            counts.claim_refusals += u64::from(r.claim_refusals);
            counts.executed_without_approval += u64::from(r.executed_without_approval);
        }
        let ledger = LedgerRange {
            first_index: self.period.map(|p| p.0),
            last_index: self.period.map(|p| p.1),
            events: self.period_events,
            request_submitted_events: self.submitted_events,
        };
        (rows, ledger, counts, discrepancies)
    }
}

/// Marks approvals whose approver was provisioned by someone tied to the
/// request. `creator_of` answers who created a principal (an event actor
/// such as `user:carol`), as the principals table records it.
pub fn mark_provisioned_approvals(
    rows: &mut [Row],
    counts: &mut Counts,
    creator_of: &HashMap<String, String>,
) {
    for row in rows.iter_mut() {
        let requester = user_name(&row.principal);
        let agent_creator = row
            .principal
            .strip_prefix("agent:")
            .and_then(|agent| creator_of.get(agent))
            .and_then(|by| user_name(by));
        let relation = |name: &str| -> Option<&'static str> {
            if requester == Some(name) {
                Some("is its requester")
            } else if row.on_behalf_of.as_deref() == Some(name) {
                Some("is the human it is on behalf of")
            } else if row.principal_owner.as_deref() == Some(name) {
                Some("owns the requesting agent")
            } else if agent_creator == Some(name) {
                Some("created the requesting agent")
            } else {
                None
            }
        };
        let mut flagged = Vec::new();
        for a in &row.approvals {
            if agent_creator == Some(a.reviewer.as_str()) {
                flagged.push(format!("{} (created the requesting agent)", a.reviewer));
            } else if let Some(by) = creator_of.get(&a.reviewer) {
                if let Some(why) = user_name(by).and_then(relation) {
                    flagged.push(format!(
                        "{} (account created by {by}, who {why})",
                        a.reviewer
                    ));
                }
            }
        }
        counts.approvals_provisioned_by_party += flagged.len() as u64;
        row.approvals_provisioned_by_party = flagged;
    }
}

/// The execution check on the requests table's own record: whatever the
/// ledger says, a record that ran must show the approvals it needed.
fn check_record(st: &mut State, rec: &RequestRecord) {
    if !matches!(
        rec.status,
        RequestStatus::Executing | RequestStatus::Executed
    ) {
        return;
    }
    let Some(claimed_at) = rec.claimed_at else {
        st.violate("the requests table shows it ran but has no claim time".into());
        return;
    };
    match rec.verdict.decision {
        Decision::Allow => {}
        Decision::ApprovalRequired => {
            let mut seen = BTreeSet::new();
            let valid: Vec<_> = rec
                .approvals()
                .filter(|a| {
                    a.at <= claimed_at
                        && rec.self_relation(&a.reviewer).is_none()
                        && seen.insert(a.reviewer.as_str())
                })
                .collect();
            let met = rec
                .verdict
                .requirement
                .clone()
                .unwrap_or_default()
                .is_met_by(valid.iter().map(|a| a.groups.iter().map(String::as_str)));
            if !met {
                st.violate(
                    "the requests table shows it ran without approvals meeting its requirement"
                        .into(),
                );
            }
        }
        Decision::Deny => {
            st.violate("the requests table shows it ran under a deny verdict".into());
        }
    }
}

// ---------------------------------------------------------------- rendering

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// RFC 4180 CSV, one row per request.
    Csv,
    /// One JSON document with the checkpoint, totals and rows.
    Json,
    /// One self-contained HTML page.
    Html,
}

impl Format {
    /// The format's name (`csv`, `json`, `html`).
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Json => "json",
            Format::Html => "html",
        }
    }

    /// The media type of a rendered report.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Csv => "text/csv; charset=utf-8",
            Format::Json => "application/json",
            Format::Html => "text/html; charset=utf-8",
        }
    }
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "csv" => Ok(Format::Csv),
            "json" => Ok(Format::Json),
            "html" => Ok(Format::Html),
            other => Err(format!(
                "unknown report format `{other}`: expected csv, json or html"
            )),
        }
    }
}

/// Renders `report` as `format`.
pub fn render(report: &Report, format: Format) -> String {
    match format {
        Format::Csv => csv(report),
        Format::Json => {
            let mut s = serde_json::to_string_pretty(report).unwrap_or_else(|e| {
                // Serializing plain strings, numbers and timestamps cannot fail.
                format!("{{\"error\":\"{e}\"}}")
            });
            s.push('\n');
            s
        }
        Format::Html => html(report),
    }
}

const COLUMNS: [&str; 33] = [
    "Request ID",
    "Submitted (UTC)",
    "Ledger index",
    "Requester",
    "Agent owner",
    "On behalf of",
    "Action",
    "Resource",
    "Environment",
    "Gate",
    "What ran",
    "Justification",
    "Verdict",
    "Policies",
    "Policy reason",
    "Approval requirement",
    "Approvals (reviewer at time via channel)",
    "Denials",
    "Decided (UTC)",
    "Executed (UTC)",
    "Request to approval (s)",
    "Approval to execution (s)",
    "Status",
    "Exit code",
    "Outcome",
    "Output SHA-256",
    "Self-approval attempts",
    "Claim refusals",
    "Expired",
    "Denied",
    "Executed without approval",
    "Approvals by party-provisioned reviewers",
    "Violation",
];

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map(T::to_string).unwrap_or_default()
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_owned()
}

/// `2026-12-02 09:15:03` (UTC, seconds).
fn short_time(t: Timestamp) -> String {
    t.strftime("%Y-%m-%d %H:%M:%S").to_string()
}

fn reviews(list: &[ReviewEntry]) -> String {
    list.iter()
        .map(|r| match &r.channel {
            Some(c) => format!("{} at {} via {c}", r.reviewer, short_time(r.at)),
            None => format!("{} at {}", r.reviewer, short_time(r.at)),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Seconds from `a` to `b`, when both are known and in order.
fn secs_between(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<i64> {
    let (a, b) = (a?, b?);
    let s = b.as_second() - a.as_second();
    (s >= 0).then_some(s)
}

impl Row {
    /// Seconds from submission to the approval that met the requirement
    /// (requests that needed approval and got it).
    pub fn secs_to_approval(&self) -> Option<i64> {
        if self.verdict != "approval_required"
            || self.approvals.is_empty()
            || self.denied
            || self.expired
        {
            return None;
        }
        secs_between(Some(self.submitted_at), self.decided_at)
    }

    /// Seconds from the decision (approval, or the allow verdict) to the claim.
    pub fn secs_to_execution(&self) -> Option<i64> {
        secs_between(self.decided_at, self.claimed_at)
    }

    /// The outcome in words.
    pub fn outcome_text(&self) -> String {
        match (self.exit_code, self.signal, &self.outcome_summary) {
            (Some(c), _, Some(s)) => format!("exit {c}: {s}"),
            (Some(c), _, None) => format!("exit {c}"),
            (None, Some(sig), _) => format!("killed by signal {sig}"),
            (None, None, Some(s)) => s.clone(),
            (None, None, None) if self.claimed_at.is_some() => "ran, no outcome reported".into(),
            _ => "not executed".into(),
        }
    }
}

fn cells(r: &Row) -> [String; 33] {
    [
        r.request_id.clone(),
        short_time(r.submitted_at),
        r.submitted_index.to_string(),
        r.principal.clone(),
        opt(&r.principal_owner),
        opt(&r.on_behalf_of),
        r.action.clone(),
        r.resource.clone(),
        opt(&r.environment),
        opt(&r.gate),
        opt(&r.command),
        opt(&r.justification),
        r.verdict.clone(),
        r.policy_ids.join("; "),
        opt(&r.policy_reason),
        opt(&r.requirement),
        reviews(&r.approvals),
        reviews(&r.denials),
        r.decided_at.map(short_time).unwrap_or_default(),
        r.claimed_at.map(short_time).unwrap_or_default(),
        opt(&r.secs_to_approval()),
        opt(&r.secs_to_execution()),
        r.status.clone(),
        opt(&r.exit_code),
        opt(&r.outcome_summary),
        opt(&r.output_sha256),
        r.refused_self_approvals.to_string(),
        r.claim_refusals.to_string(),
        yes_no(r.expired),
        yes_no(r.denied),
        yes_no(r.executed_without_approval),
        r.approvals_provisioned_by_party.join("; "),
        opt(&r.violation),
    ]
}

/// One RFC 4180 field: quoted when it holds a comma, quote, CR or LF (or
/// edge spaces), quotes doubled.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\r', '\n']) || s.starts_with(' ') || s.ends_with(' ') {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

fn csv_line(out: &mut String, fields: impl IntoIterator<Item = impl AsRef<str>>) {
    let line: Vec<String> = fields.into_iter().map(|f| csv_field(f.as_ref())).collect();
    out.push_str(&line.join(","));
    out.push_str("\r\n");
}

/// One row per request with human headers; the checkpoint and the policy
/// sets are in the JSON and HTML renderings, not repeated on every row.
fn csv(report: &Report) -> String {
    let mut out = String::new();
    csv_line(&mut out, COLUMNS);
    for r in &report.requests {
        csv_line(&mut out, cells(r));
    }
    out
}

/// Escapes text for HTML element content and quoted attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `3m 12s`, `1h 05m`, `2d 03h`.
fn human_secs(s: i64) -> String {
    match s {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m {:02}s", s / 60, s % 60),
        s if s < 86_400 => format!("{}h {:02}m", s / 3600, (s % 3600) / 60),
        s => format!("{}d {:02}h", s / 86_400, (s % 86_400) / 3600),
    }
}

const STYLE: &str = r#"
:root{--ink:#1d2330;--muted:#5b6472;--line:#d5d9e0;--bg:#f5f7fa;--ok:#1f7a3a;--bad:#b42318;--warn:#9a6700;--accent:#27457a}
*{box-sizing:border-box}
body{font:13px/1.45 "Helvetica Neue",Helvetica,Arial,"Liberation Sans",sans-serif;color:var(--ink);margin:28px auto;max-width:1180px;padding:0 24px}
h1{font-size:22px;margin:0 0 2px}h2{font-size:16px;margin:28px 0 8px;padding-bottom:4px;border-bottom:2px solid var(--accent);color:var(--accent)}
h3{font-size:13px;margin:14px 0 6px}
.sub{color:var(--muted);margin:0 0 14px}
.meta{display:grid;grid-template-columns:max-content 1fr;gap:3px 14px;font-size:12px;background:var(--bg);border:1px solid var(--line);border-radius:6px;padding:10px 14px}
.meta dt{color:var(--muted)}.meta dd{margin:0}
code,.mono{font-family:"DejaVu Sans Mono",Menlo,Consolas,monospace;font-size:11px;overflow-wrap:anywhere}
code.rid{white-space:nowrap;font-size:10px}
.cards{display:flex;gap:10px;margin:14px 0 4px;flex-wrap:wrap}
.card{flex:1 1 120px;border:1px solid var(--line);border-radius:6px;padding:8px 12px;background:#fff}
.card .n{font-size:22px;font-weight:600}.card .l{color:var(--muted);font-size:11px;text-transform:uppercase;letter-spacing:.04em}
.card.ok{border-color:var(--ok)}.card.ok .n{color:var(--ok)}.card.bad{border-color:var(--bad);background:#fff5f4}.card.bad .n{color:var(--bad)}
table{border-collapse:collapse;width:100%;font-size:11.5px}
th,td{border-bottom:1px solid var(--line);padding:5px 6px;text-align:left;vertical-align:top}
thead th{background:var(--bg);border-bottom:2px solid var(--line);font-weight:600;white-space:nowrap}
tr.flag td{background:#fff1f0}
td.num,th.num{text-align:right;white-space:nowrap}
.ok{color:var(--ok);font-weight:600}.bad{color:var(--bad);font-weight:600}.warn{color:var(--warn);font-weight:600}.muted{color:var(--muted)}
.pill{display:inline-block;border-radius:9px;padding:0 7px;font-size:10.5px;font-weight:600;white-space:nowrap}
.p-allow{background:#e3f4e8;color:var(--ok)}.p-approval_required{background:#e6edf8;color:var(--accent)}.p-deny{background:#fde7e5;color:var(--bad)}
.charts{display:flex;gap:18px;flex-wrap:wrap}.chart{flex:1 1 440px;border:1px solid var(--line);border-radius:6px;padding:8px 10px}
.chart h3{margin:0 0 4px}
.legend span{margin-right:12px;font-size:11px}.legend i{display:inline-block;width:9px;height:9px;margin-right:4px;border-radius:2px}
ol.verify li{margin-bottom:6px}
pre{background:var(--bg);border:1px solid var(--line);border-radius:4px;padding:6px 8px;white-space:pre-wrap;word-break:break-all;font-size:11px;margin:4px 0}
footer{margin-top:28px;color:var(--muted);font-size:11px;border-top:1px solid var(--line);padding-top:6px}
@page{size:landscape;margin:12mm 10mm}
@media print{
 body{margin:0;max-width:none;padding:0;font-size:10.5px}
 table{font-size:9.5px}
 code,.mono,code.rid{font-size:8.5px}
 .chart svg{max-height:60mm}
 thead{display:table-header-group}
 tr,.card,.chart,pre{break-inside:avoid}
 h2{break-after:avoid}
 section.population{break-before:page}
 .card.bad,tr.flag td{-webkit-print-color-adjust:exact;print-color-adjust:exact}
 .pill,.chart,thead th,.meta{-webkit-print-color-adjust:exact;print-color-adjust:exact}
}
"#;

const VERDICT_COLORS: [(&str, &str, &str); 3] = [
    ("allow", "allowed", "#3a9a5b"),
    ("approval_required", "needed approval", "#4a6fb0"),
    ("deny", "denied", "#c8483c"),
];

/// Requests per day (UTC) by verdict as a stacked bar chart; weeks when
/// the period is longer than 62 days.
fn chart_per_day(report: &Report) -> String {
    let day = |t: Timestamp| t.as_second().div_euclid(86_400);
    let (first, last) = (
        day(report.period.since),
        day(report.period.until - jiff::SignedDuration::from_secs(1)),
    );
    let days = (last - first + 1).max(1);
    let step = if days > 62 { 7 } else { 1 };
    let buckets = usize::try_from((days + step - 1) / step)
        .unwrap_or(1)
        .max(1);
    let mut counts = vec![[0u64; 3]; buckets];
    for r in &report.requests {
        let i = usize::try_from((day(r.submitted_at) - first).max(0) / step)
            .unwrap_or(0)
            .min(buckets - 1);
        if let Some(k) = VERDICT_COLORS.iter().position(|(v, _, _)| *v == r.verdict) {
            counts[i][k] += 1;
        }
    }
    let max = counts
        .iter()
        .map(|c| c.iter().sum::<u64>())
        .max()
        .unwrap_or(0)
        .max(1);
    let (w, h, left, bottom) = (520.0_f64, 150.0_f64, 30.0_f64, 20.0_f64);
    let bw = (w - left) / buckets as f64;
    let mut svg = format!(
        "<svg viewBox=\"0 0 {w} {}\" width=\"100%\" role=\"img\" aria-label=\"requests per {} by verdict\" xmlns=\"http://www.w3.org/2000/svg\">",
        h + bottom,
        if step == 1 { "day" } else { "week" }
    );
    for frac in [0.0, 0.5, 1.0] {
        let y = h - frac * (h - 10.0);
        let v = (max as f64 * frac).round();
        svg.push_str(&format!(
            "<line x1=\"{left}\" x2=\"{w}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#e3e6eb\"/><text x=\"{}\" y=\"{:.1}\" font-size=\"9\" text-anchor=\"end\" fill=\"#5b6472\">{v}</text>",
            left - 4.0,
            y + 3.0
        ));
    }
    for (i, c) in counts.iter().enumerate() {
        let x = left + i as f64 * bw + bw * 0.15;
        let mut y = h;
        for (k, (_, label, color)) in VERDICT_COLORS.iter().enumerate() {
            if c[k] == 0 {
                continue;
            }
            let bh = c[k] as f64 / max as f64 * (h - 10.0);
            y -= bh;
            svg.push_str(&format!(
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{bh:.1}\" fill=\"{color}\"><title>{} {label}</title></rect>",
                bw * 0.7,
                c[k]
            ));
        }
    }
    // first and last labels only: dates are long
    let label = |d: i64| {
        Timestamp::from_second(d * 86_400)
            .map(|t| t.strftime("%m-%d").to_string())
            .unwrap_or_default()
    };
    svg.push_str(&format!(
        "<text x=\"{left}\" y=\"{}\" font-size=\"9\" fill=\"#5b6472\">{}</text><text x=\"{w}\" y=\"{}\" font-size=\"9\" text-anchor=\"end\" fill=\"#5b6472\">{}</text></svg>",
        h + 14.0,
        label(first),
        h + 14.0,
        label(last)
    ));
    let mut legend = String::from("<div class=\"legend\">");
    for (_, label, color) in VERDICT_COLORS {
        legend.push_str(&format!(
            "<span><i style=\"background:{color}\"></i>{label}</span>"
        ));
    }
    legend.push_str("</div>");
    format!("{svg}{legend}")
}

const APPROVAL_BUCKETS: [(i64, &str); 7] = [
    (60, "< 1 min"),
    (300, "1–5 min"),
    (900, "5–15 min"),
    (3600, "15–60 min"),
    (4 * 3600, "1–4 h"),
    (86_400, "4–24 h"),
    (i64::MAX, "> 1 day"),
];

/// How long approvals took, as a histogram.
fn chart_time_to_approve(report: &Report) -> String {
    let mut counts = [0u64; APPROVAL_BUCKETS.len()];
    for s in report.requests.iter().filter_map(Row::secs_to_approval) {
        if let Some(i) = APPROVAL_BUCKETS.iter().position(|(limit, _)| s < *limit) {
            counts[i] += 1;
        }
    }
    let max = counts.iter().copied().max().unwrap_or(0).max(1);
    let (w, h, bottom) = (520.0_f64, 150.0_f64, 20.0_f64);
    let bw = w / counts.len() as f64;
    let mut svg = format!(
        "<svg viewBox=\"0 0 {w} {}\" width=\"100%\" role=\"img\" aria-label=\"time from request to approval\" xmlns=\"http://www.w3.org/2000/svg\"><line x1=\"0\" x2=\"{w}\" y1=\"{h}\" y2=\"{h}\" stroke=\"#c9ced6\"/>",
        h + bottom
    );
    for (i, (n, (_, label))) in counts.iter().zip(APPROVAL_BUCKETS).enumerate() {
        let x = i as f64 * bw;
        let bh = *n as f64 / max as f64 * (h - 18.0);
        svg.push_str(&format!(
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bh:.1}\" fill=\"#4a6fb0\"/><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"middle\" fill=\"#1d2330\">{n}</text><text x=\"{:.1}\" y=\"{}\" font-size=\"9\" text-anchor=\"middle\" fill=\"#5b6472\">{label}</text>",
            x + bw * 0.15,
            h - bh,
            bw * 0.7,
            x + bw / 2.0,
            h - bh - 3.0,
            x + bw / 2.0,
            h + 13.0
        ));
    }
    svg.push_str("</svg>");
    svg
}

/// One exception kind: its name, its count, whether any is a failure, and
/// the requests concerned.
struct Exception<'a> {
    name: &'static str,
    explain: &'static str,
    count: u64,
    must_be_zero: bool,
    rows: Vec<&'a Row>,
}

fn exceptions(report: &Report) -> Vec<Exception<'_>> {
    let rows =
        |f: &dyn Fn(&Row) -> bool| report.requests.iter().filter(|r| f(r)).collect::<Vec<_>>();
    let n = &report.counts;
    vec![
        Exception {
            name: "Executed without approval",
            explain: "ran without the approvals its policy required, or under a deny verdict",
            count: n.executed_without_approval,
            must_be_zero: true,
            rows: rows(&|r| r.executed_without_approval),
        },
        Exception {
            name: "Approved by a reviewer a party provisioned",
            explain: "approver's account created by the requester, the on-behalf-of human or the agent's owner",
            count: n.approvals_provisioned_by_party,
            must_be_zero: true,
            rows: rows(&|r| !r.approvals_provisioned_by_party.is_empty()),
        },
        Exception {
            name: "Self-approval attempts (refused)",
            explain: "someone tied to the request tried to approve it; the gateway refused",
            count: n.refused_self_approvals,
            must_be_zero: false,
            rows: rows(&|r| r.refused_self_approvals > 0),
        },
        Exception {
            name: "Claim refusals",
            explain: "a gate tried to run something other than what was approved, twice, or after a policy change",
            count: n.claim_refusals,
            must_be_zero: false,
            rows: rows(&|r| r.claim_refusals > 0),
        },
        Exception {
            name: "Denied",
            explain: "by a reviewer or by policy",
            count: n.denied,
            must_be_zero: false,
            rows: rows(&|r| r.denied),
        },
        Exception {
            name: "Expired",
            explain: "nobody decided in time",
            count: n.expired,
            must_be_zero: false,
            rows: rows(&|r| r.expired),
        },
    ]
}

fn verdict_pill(v: &str) -> String {
    let label = VERDICT_COLORS
        .iter()
        .find(|(k, _, _)| *k == v)
        .map_or(v, |(_, l, _)| l);
    format!("<span class=\"pill p-{}\">{}</span>", esc(v), esc(label))
}

fn html(report: &Report) -> String {
    let mut h = String::new();
    let c = &report.checkpoint;
    let p = &report.period;
    let n = &report.counts;
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>Privileged action review {} to {}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <header>\n<h1>Privileged action review</h1>\n\
         <p class=\"sub\">Every action that went through the signoff approval gateway from {} to {} (UTC, end excluded), with its approvals, execution and outcome, from the tamper-evident ledger.</p>\n",
        esc(&short_time(p.since)),
        esc(&short_time(p.until)),
        esc(&short_time(p.since)),
        esc(&short_time(p.until)),
    );
    let mut policy_sets: Vec<&str> = report
        .requests
        .iter()
        .filter_map(|r| r.policy_set_hash.as_deref())
        .collect();
    policy_sets.sort_unstable();
    policy_sets.dedup();
    let _ = write!(
        h,
        "<dl class=\"meta\">\n<dt>Period</dt><dd>{} to {} (UTC, end excluded)</dd>\n\
         <dt>Generated</dt><dd>{}</dd>\n\
         <dt>Evidence</dt><dd>ledger <code>{}</code>, signed checkpoint of {} entries, signed {}</dd>\n\
         <dt>Checkpoint root</dt><dd><code>{}</code></dd>\n\
         <dt>Ledger entries</dt><dd>{}</dd>\n\
         <dt>Policy sets in force</dt><dd>{}</dd>\n</dl>\n</header>\n",
        esc(&short_time(p.since)),
        esc(&short_time(p.until)),
        esc(&short_time(report.generated_at)),
        esc(&c.origin),
        c.size,
        esc(&short_time(c.signed_at)),
        esc(&c.root),
        match (report.ledger.first_index, report.ledger.last_index) {
            (Some(a), Some(b)) => format!(
                "{a} to {b} ({} entries, {} requests submitted)",
                report.ledger.events, report.ledger.request_submitted_events
            ),
            _ => "none in the period".to_owned(),
        },
        if policy_sets.is_empty() {
            "none".to_owned()
        } else {
            policy_sets
                .iter()
                .map(|s| format!("<code>{}</code>", esc(s)))
                .collect::<Vec<_>>()
                .join(", ")
        },
    );

    // summary cards
    let executed = n.by_status.get("executed").copied().unwrap_or(0)
        + n.by_status.get("executing").copied().unwrap_or(0);
    let needed = report
        .requests
        .iter()
        .filter(|r| r.verdict == "approval_required")
        .count();
    let card = |class: &str, value: String, label: &str| {
        format!("<div class=\"card {class}\"><div class=\"n\">{value}</div><div class=\"l\">{label}</div></div>")
    };
    h.push_str("<div class=\"cards\">");
    h.push_str(&card("", n.requests.to_string(), "requests"));
    h.push_str(&card("", needed.to_string(), "needed approval"));
    h.push_str(&card("", executed.to_string(), "executed"));
    h.push_str(&card("", n.denied.to_string(), "denied"));
    h.push_str(&card("", n.expired.to_string(), "expired"));
    h.push_str(&card(
        if n.executed_without_approval == 0 {
            "ok"
        } else {
            "bad"
        },
        if n.executed_without_approval == 0 {
            "0 ✓".to_owned()
        } else {
            n.executed_without_approval.to_string()
        },
        "executed without approval",
    ));
    h.push_str("</div>\n");

    // 1. exceptions
    h.push_str("<section>\n<h2>1. Exceptions</h2>\n<table>\n<thead><tr><th>Exception</th><th class=\"num\">Count</th><th>What it means</th><th>Requests</th></tr></thead>\n<tbody>\n");
    let list = exceptions(report);
    for e in &list {
        let class = match (e.count, e.must_be_zero) {
            (0, true) => "ok",
            (_, true) => "bad",
            (0, false) => "muted",
            _ => "warn",
        };
        let ids = if e.rows.is_empty() {
            if e.must_be_zero {
                "none — as required".to_owned()
            } else {
                "none".to_owned()
            }
        } else {
            e.rows
                .iter()
                .map(|r| {
                    format!(
                        "<a href=\"#r-{0}\"><code>{0}</code></a>",
                        esc(&r.request_id)
                    )
                })
                .collect::<Vec<_>>()
                .join(" ")
        };
        let _ = writeln!(
            h,
            "<tr{}><td>{}</td><td class=\"num {class}\">{}</td><td class=\"muted\">{}</td><td>{ids}</td></tr>",
            if e.must_be_zero && e.count > 0 { " class=\"flag\"" } else { "" },
            e.name,
            e.count,
            e.explain
        );
    }
    let _ = writeln!(
        h,
        "<tr><td>Policy changes in the period</td><td class=\"num {}\">{}</td><td class=\"muted\">policy sets loaded or rejected (below)</td><td>{}</td></tr>",
        if report.policy_changes.is_empty() { "muted" } else { "warn" },
        report.policy_changes.len(),
        if report.policy_changes.is_empty() { "none" } else { "see section 4" }
    );
    let _ = writeln!(
        h,
        "<tr{}><td>Ledger and requests table disagree</td><td class=\"num {}\">{}</td><td class=\"muted\">reconciliation of the ledger with the gateway's tables</td><td>{}</td></tr>",
        if report.discrepancies.is_empty() { "" } else { " class=\"flag\"" },
        if report.discrepancies.is_empty() { "ok" } else { "bad" },
        report.discrepancies.len(),
        if report.discrepancies.is_empty() { "none — as required" } else { "see section 5" }
    );
    h.push_str("</tbody>\n</table>\n");
    for r in report
        .requests
        .iter()
        .filter(|r| r.executed_without_approval)
    {
        let _ = writeln!(
            h,
            "<p class=\"bad\">Request <code>{}</code> executed without approval: {}</p>",
            esc(&r.request_id),
            esc(r.violation.as_deref().unwrap_or("flagged"))
        );
    }
    for r in report
        .requests
        .iter()
        .filter(|r| !r.approvals_provisioned_by_party.is_empty())
    {
        let _ = writeln!(
            h,
            "<p class=\"bad\">Request <code>{}</code> approved by a reviewer a party provisioned: {}</p>",
            esc(&r.request_id),
            esc(&r.approvals_provisioned_by_party.join("; "))
        );
    }
    h.push_str("</section>\n");

    // 2. charts
    let _ = write!(
        h,
        "<section>\n<h2>2. Activity</h2>\n<div class=\"charts\">\n\
         <div class=\"chart\"><h3>Requests per {} by verdict</h3>{}</div>\n\
         <div class=\"chart\"><h3>Time from request to approval</h3>{}</div>\n</div>\n</section>\n",
        if (p.until.as_second() - p.since.as_second()) > 62 * 86_400 {
            "week"
        } else {
            "day"
        },
        chart_per_day(report),
        chart_time_to_approve(report)
    );

    // 3. population
    h.push_str("<section class=\"population\">\n<h2>3. Population of privileged actions</h2>\n");
    let _ = writeln!(
        h,
        "<p class=\"muted\">All {} requests submitted in the period, in ledger order. Times are UTC.</p>",
        n.requests
    );
    h.push_str("<table>\n<thead><tr><th>Request</th><th>Requester</th><th>Action</th><th>What ran</th><th>Justification</th><th>Policy</th><th>Approvals</th><th class=\"num\">To approval</th><th class=\"num\">To execution</th><th>Outcome</th></tr></thead>\n<tbody>\n");
    for r in &report.requests {
        let flag = r.executed_without_approval || !r.approvals_provisioned_by_party.is_empty();
        let requester = {
            let mut s = format!("<b>{}</b>", esc(&r.principal));
            if let Some(o) = &r.on_behalf_of {
                let _ = write!(
                    s,
                    "<br><span class=\"muted\">on behalf of</span> {}",
                    esc(o)
                );
            }
            if let Some(o) = &r.principal_owner {
                let _ = write!(s, "<br><span class=\"muted\">owner</span> {}", esc(o));
            }
            s
        };
        let action = format!(
            "<b>{}</b> on {}{}{}",
            esc(&r.action),
            esc(&r.resource),
            r.environment
                .as_deref()
                .map(|e| format!("<br><span class=\"muted\">env</span> {}", esc(e)))
                .unwrap_or_default(),
            r.gate
                .as_deref()
                .map(|g| format!(" <span class=\"muted\">via</span> {}", esc(g)))
                .unwrap_or_default()
        );
        let policy = format!(
            "{}<br>{}{}{}",
            verdict_pill(&r.verdict),
            esc(&r.policy_ids.join(", ")),
            r.requirement
                .as_deref()
                .map(|q| format!(" <span class=\"muted\">needs</span> {}", esc(q)))
                .unwrap_or_default(),
            r.policy_reason
                .as_deref()
                .map(|q| format!("<br><i>{}</i>", esc(q)))
                .unwrap_or_default()
        );
        let mut approvals: Vec<String> = r
            .approvals
            .iter()
            .map(|a| {
                format!(
                    "✔ <b>{}</b> {}{}",
                    esc(&a.reviewer),
                    esc(&short_time(a.at)),
                    a.channel
                        .as_deref()
                        .map(|c| format!(" <span class=\"muted\">via {}</span>", esc(c)))
                        .unwrap_or_default()
                )
            })
            .collect();
        approvals.extend(r.denials.iter().map(|d| {
            format!(
                "<span class=\"bad\">✘</span> <b>{}</b> {}{}",
                esc(&d.reviewer),
                esc(&short_time(d.at)),
                d.reason
                    .as_deref()
                    .map(|x| format!(": <i>{}</i>", esc(x)))
                    .unwrap_or_default()
            )
        }));
        if r.refused_self_approvals > 0 {
            approvals.push(format!(
                "<span class=\"warn\">{} self-approval attempt(s) refused</span>",
                r.refused_self_approvals
            ));
        }
        if r.claim_refusals > 0 {
            approvals.push(format!(
                "<span class=\"warn\">{} claim(s) refused</span>",
                r.claim_refusals
            ));
        }
        let outcome = format!(
            "<b>{}</b><br>{}{}",
            esc(&r.status),
            esc(&r.outcome_text()),
            r.violation
                .as_deref()
                .map(|v| format!("<br><span class=\"bad\">{}</span>", esc(v)))
                .unwrap_or_default()
        );
        let _ = writeln!(
            h,
            "<tr id=\"r-{id}\"{flag}><td><code class=\"rid\">{id}</code><br>{at}<br><span class=\"muted\">entry {idx}</span></td><td>{requester}</td><td>{action}</td><td><code>{ran}</code></td><td>{just}</td><td>{policy}</td><td>{appr}</td><td class=\"num\">{ta}</td><td class=\"num\">{te}</td><td>{outcome}</td></tr>",
            id = esc(&r.request_id),
            flag = if flag { " class=\"flag\"" } else { "" },
            at = esc(&short_time(r.submitted_at)),
            idx = r.submitted_index,
            ran = esc(r.command.as_deref().unwrap_or("—")),
            just = r.justification.as_deref().map(esc).unwrap_or_else(|| "<span class=\"muted\">none given</span>".into()),
            appr = if approvals.is_empty() { "<span class=\"muted\">—</span>".to_owned() } else { approvals.join("<br>") },
            ta = r.secs_to_approval().map(human_secs).unwrap_or_else(|| "—".into()),
            te = r.secs_to_execution().map(human_secs).unwrap_or_else(|| "—".into()),
        );
    }
    h.push_str("</tbody>\n</table>\n</section>\n");

    // 4. policy changes
    h.push_str("<section>\n<h2>4. Policy changes in the period</h2>\n");
    if report.policy_changes.is_empty() {
        h.push_str("<p class=\"muted\">No policy set was loaded or rejected in the period.</p>\n");
    } else {
        h.push_str("<table>\n<thead><tr><th>Entry</th><th>When</th><th>By</th><th>Change</th><th>Policy set</th><th>Reason</th></tr></thead>\n<tbody>\n");
        for pc in &report.policy_changes {
            let _ = writeln!(
                h,
                "<tr><td class=\"num\">{}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td><td><code>{}</code></td><td>{}</td></tr>",
                pc.index,
                esc(&short_time(pc.at)),
                esc(&pc.actor),
                if pc.loaded { "ok" } else { "warn" },
                if pc.loaded { "loaded" } else { "rejected" },
                esc(pc.policy_set_hash.as_deref().unwrap_or("—")),
                esc(pc.reason.as_deref().unwrap_or(""))
            );
        }
        h.push_str("</tbody>\n</table>\n");
    }
    h.push_str("</section>\n");

    // 5. reconciliation
    h.push_str("<section>\n<h2>5. Reconciliation</h2>\n");
    if report.discrepancies.is_empty() {
        let _ = writeln!(
            h,
            "<p class=\"ok\">{} requests in this report = {} request_submitted entries in the ledger; the gateway's requests table agrees with the ledger on every request.</p>",
            n.requests, report.ledger.request_submitted_events
        );
    } else {
        h.push_str("<ul class=\"bad\">\n");
        for d in &report.discrepancies {
            let _ = writeln!(h, "<li>{}</li>", esc(d));
        }
        h.push_str("</ul>\n");
    }
    h.push_str("</section>\n");

    // 6. how to verify
    let _ = write!(
        h,
        "<section>\n<h2>6. How to verify this report</h2>\n\
         <p>This report rests on the signed checkpoint of ledger <code>{origin}</code> at size {size}, root <code>{root}</code>. \
         Every event it reads below that size was re-hashed into that root when the report was made. To check it independently, with the log's verifier key obtained from its operator out of band and an auditor token:</p>\n\
         <ol class=\"verify\">\n\
         <li>Verify the whole ledger against the key (and a checkpoint you saved earlier, if any):<pre>SIGNOFF_URL=… SIGNOFF_TOKEN=… signoff audit verify --key VERIFIER_KEY [--checkpoint SAVED]</pre></li>\n\
         <li>Export the period's entries with inclusion proofs and verify them offline:<pre>signoff audit export --since {since} --until {until} --out bundle/\nsignoff audit verify --bundle bundle/ --key VERIFIER_KEY</pre></li>\n\
         <li>Re-create this report and compare:<pre>signoff audit report --since {since} --until {until} --format json</pre></li>\n\
         </ol>\n</section>\n\
         <footer>signoff audit report · generated {generated} · checkpoint {origin} {size} {root}</footer>\n</body>\n</html>\n",
        origin = esc(&c.origin),
        size = c.size,
        root = esc(&c.root),
        since = esc(&p.since.to_string()),
        until = esc(&p.until.to_string()),
        generated = esc(&short_time(report.generated_at)),
    );
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn sample() -> Report {
        let row = |id: &str, idx: u64| Row {
            request_id: id.into(),
            submitted_index: idx,
            submitted_at: t("2025-03-01T10:00:00Z"),
            action: "db.export".into(),
            resource: "customers".into(),
            environment: Some("prod".into()),
            principal: "agent:etl-bot".into(),
            principal_owner: Some("olga".into()),
            on_behalf_of: None,
            justification: Some("quarterly \"close\", finance <team>".into()),
            command: Some("pg_dump --table customers prod".into()),
            policy_reason: Some("data leaves the building".into()),
            gate: Some("exec".into()),
            verdict: "approval_required".into(),
            policy_ids: vec!["export-two-sre".into()],
            policy_set_hash: Some("ab12".into()),
            requirement: Some("sre:2".into()),
            status: "executed".into(),
            approvals: vec![
                ReviewEntry {
                    reviewer: "alice".into(),
                    at: t("2025-03-01T10:01:00Z"),
                    reason: None,
                    channel: Some("slack".into()),
                },
                ReviewEntry {
                    reviewer: "bob".into(),
                    at: t("2025-03-01T10:02:00Z"),
                    reason: Some("ok".into()),
                    channel: Some("cli".into()),
                },
            ],
            denials: vec![],
            decided_at: Some(t("2025-03-01T10:02:00Z")),
            claimed_at: Some(t("2025-03-01T10:02:01Z")),
            exit_code: Some(0),
            signal: None,
            outcome_summary: Some("exited 0\nafter 3 s".into()),
            output_sha256: Some("e3b0".into()),
            refused_self_approvals: 1,
            claim_refusals: 0,
            expired: false,
            denied: false,
            executed_without_approval: false,
            approvals_provisioned_by_party: vec![],
            violation: None,
        };
        let mut denied = row("01JNBB0000000000000000000B", 7);
        denied.verdict = "deny".into();
        denied.status = "denied".into();
        denied.approvals.clear();
        denied.denied = true;
        denied.claimed_at = None;
        denied.exit_code = None;
        denied.outcome_summary = None;
        denied.output_sha256 = None;
        denied.refused_self_approvals = 0;
        denied.justification = None;
        let mut bad = row("01JNBB0000000000000000000C", 9);
        bad.executed_without_approval = true;
        bad.violation = Some(
            "claimed at 2025-03-01T10:02:01Z without approvals meeting sre:2 before it".into(),
        );
        bad.approvals.truncate(1);
        bad.approvals_provisioned_by_party =
            vec!["alice (account created by user:olga, who owns the requesting agent)".into()];
        let mut expired = row("01JNBB0000000000000000000D", 10);
        expired.submitted_at = t("2025-03-02T14:00:00Z");
        expired.status = "expired".into();
        expired.expired = true;
        expired.approvals.truncate(1);
        expired.decided_at = Some(t("2025-03-02T14:10:00Z"));
        expired.claimed_at = None;
        expired.exit_code = None;
        expired.outcome_summary = None;
        expired.output_sha256 = None;
        expired.refused_self_approvals = 0;
        let mut refused_claim = row("01JNBB0000000000000000000E", 11);
        refused_claim.submitted_at = t("2025-03-03T09:00:00Z");
        refused_claim.approvals[0].at = t("2025-03-03T09:20:00Z");
        refused_claim.approvals[1].at = t("2025-03-03T10:30:00Z");
        refused_claim.decided_at = Some(t("2025-03-03T10:30:00Z"));
        refused_claim.claimed_at = Some(t("2025-03-03T10:31:10Z"));
        refused_claim.claim_refusals = 1;
        refused_claim.refused_self_approvals = 0;
        refused_claim.command = None;
        refused_claim.gate = Some("api".into());
        let mut allowed = row("01JNBB0000000000000000000F", 12);
        allowed.submitted_at = t("2025-03-03T11:00:00Z");
        allowed.action = "db.read".into();
        allowed.verdict = "allow".into();
        allowed.policy_ids = vec!["read-allowed".into()];
        allowed.requirement = None;
        allowed.policy_reason = None;
        allowed.approvals.clear();
        allowed.decided_at = Some(t("2025-03-03T11:00:00Z"));
        allowed.claimed_at = Some(t("2025-03-03T11:00:01Z"));
        allowed.refused_self_approvals = 0;
        allowed.justification = None;
        allowed.command = Some("psql -c 'select count(*) from orders'".into());
        let requests = vec![
            row("01JNBB0000000000000000000A", 3),
            denied,
            bad,
            expired,
            refused_claim,
            allowed,
        ];
        let mut by_status: BTreeMap<String, u64> = RequestStatus::ALL
            .iter()
            .map(|s| (s.as_str().to_owned(), 0))
            .collect();
        by_status.insert("executed".into(), 4);
        by_status.insert("denied".into(), 1);
        by_status.insert("expired".into(), 1);
        Report {
            period: Period {
                since: t("2025-03-01T00:00:00Z"),
                until: t("2025-04-01T00:00:00Z"),
            },
            generated_at: t("2025-04-02T08:00:00Z"),
            checkpoint: CheckpointInfo {
                origin: "signoff.example.com/prod".into(),
                size: 12,
                root: "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=".into(),
                signed_at: t("2025-04-02T07:59:59Z"),
            },
            ledger: LedgerRange {
                first_index: Some(3),
                last_index: Some(11),
                events: 9,
                request_submitted_events: 6,
            },
            counts: Counts {
                requests: 6,
                by_status,
                denied: 1,
                expired: 1,
                refused_self_approvals: 2,
                claim_refusals: 1,
                executed_without_approval: 1,
                approvals_provisioned_by_party: 1,
            },
            discrepancies: vec!["request X is <odd> & \"quoted\"".into()],
            policy_changes: vec![
                PolicyChange {
                    index: 8,
                    at: t("2025-03-02T08:00:00Z"),
                    actor: "user:olga".into(),
                    loaded: false,
                    policy_set_hash: None,
                    reason: Some("policies/export.cedar:3:1: unknown action \"db.exprt\"".into()),
                },
                PolicyChange {
                    index: 9,
                    at: t("2025-03-02T08:05:00Z"),
                    actor: "user:olga".into(),
                    loaded: true,
                    policy_set_hash: Some("9d75d4288e49".into()),
                    reason: None,
                },
            ],
            requests,
        }
    }

    #[test]
    fn approvals_by_reviewers_a_party_provisioned_are_listed() {
        let mut report = sample();
        report.requests.truncate(3);
        for r in &mut report.requests {
            r.approvals_provisioned_by_party.clear();
        }
        report.counts.approvals_provisioned_by_party = 0;
        let creators: HashMap<String, String> = [
            ("alice", "user:olga"),  // the agent's owner made alice
            ("bob", "console"),      // the operator made bob
            ("etl-bot", "user:bob"), // bob made the agent
        ]
        .into_iter()
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .collect();
        mark_provisioned_approvals(&mut report.requests, &mut report.counts, &creators);
        assert_eq!(
            report.requests[0].approvals_provisioned_by_party,
            vec![
                "alice (account created by user:olga, who owns the requesting agent)".to_owned(),
                "bob (created the requesting agent)".to_owned()
            ]
        );
        assert_eq!(report.counts.approvals_provisioned_by_party, 2 + 1);
        // nobody tied: nothing listed
        let mut clean = sample();
        clean.requests[0].approvals_provisioned_by_party.clear();
        let mut counts = Counts::default();
        let none: HashMap<String, String> = [("alice".to_owned(), "user:root".to_owned())]
            .into_iter()
            .collect();
        mark_provisioned_approvals(&mut clean.requests, &mut counts, &none);
        assert!(clean
            .requests
            .iter()
            .all(|r| r.approvals_provisioned_by_party.is_empty()));
        assert_eq!(counts.approvals_provisioned_by_party, 0);
    }

    #[test]
    fn csv_snapshot() {
        insta::assert_snapshot!(render(&sample(), Format::Csv));
    }

    #[test]
    fn json_snapshot() {
        insta::assert_snapshot!(render(&sample(), Format::Json));
    }

    #[test]
    fn html_snapshot() {
        let html = render(&sample(), Format::Html);
        // The fixture page for the screenshot (scripts/report-screenshot.sh).
        if let Ok(dir) = std::env::var("SIGNOFF_REPORT_FIXTURE_DIR") {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(std::path::Path::new(&dir).join("report.html"), &html).unwrap();
        }
        insta::assert_snapshot!(html);
    }

    /// Real events from the core state machine, replayed through the builder.
    #[test]
    fn builder_flags_from_the_ledger() {
        use signoff_core::{
            ActionRequest, Deadlines, PrincipalKind, ReviewDecision, Reviewer, Role, Submission,
            Verdict,
        };
        let t0 = t("2025-03-01T10:00:00Z");
        let at = |s: i64| t0.checked_add(jiff::SignedDuration::from_secs(s)).unwrap();
        let verdict = |decision: Decision| Verdict {
            decision,
            policy_ids: vec!["p".into()],
            policy_set_hash: "h".into(),
            requirement: (decision == Decision::ApprovalRequired).then(|| "sre:2".parse().unwrap()),
            ttl_seconds: Some(60),
            reasons: vec![],
            errors: vec![],
        };
        let submit = |id: &str, decision: Decision, s: i64| {
            RequestRecord::submit(
                Submission {
                    id: id.into(),
                    action: ActionRequest {
                        action: "db.export".into(),
                        resource: "customers".into(),
                        environment: Some("prod".into()),
                        context: Default::default(),
                        justification: Some("why".into()),
                        principal: "agent:bot".parse().unwrap(),
                        on_behalf_of: Some("dave".into()),
                    },
                    gate: Some("exec".into()),
                    claimed_gate: None,
                    principal_owner: Some("olga".into()),
                    principal_created_by: None,
                    verdict: verdict(decision),
                    idempotency_key: None,
                    facts: None,
                },
                at(s),
                Deadlines::default(),
            )
        };
        let reviewer = |name: &str| Reviewer {
            name: name.into(),
            kind: PrincipalKind::User,
            role: Role::Reviewer,
            groups: vec!["sre".into()],
            channel: signoff_core::Channel::Cli,
            provenance: Default::default(),
        };
        let bot = "agent:bot".parse().unwrap();
        let mut log: Vec<AuditEvent> = Vec::new();

        // r1: one approval, then a claim appears in the ledger anyway
        let (mut r1, e) = submit("r1", Decision::ApprovalRequired, 0);
        log.push(e);
        log.extend(
            r1.review(
                &reviewer("alice"),
                ReviewDecision::Approve,
                None,
                at(1),
                Deadlines::default(),
            )
            .unwrap(),
        );
        // dave (on behalf of) tries: refused and recorded
        log.push(
            *r1.review(
                &reviewer("dave"),
                ReviewDecision::Approve,
                None,
                at(2),
                Deadlines::default(),
            )
            .unwrap_err()
            .1,
        );
        let mut forged = r1.event(EventKind::RequestClaimed, at(3), "agent:bot");
        forged.verdict = Some(Decision::ApprovalRequired);
        log.push(forged);

        // r2: expires
        let (mut r2, e) = submit("r2", Decision::ApprovalRequired, 4);
        log.push(e);
        log.extend(r2.expire_if_due(at(100)));

        // r3: allowed, claimed, outcome
        let (mut r3, e) = submit("r3", Decision::Allow, 5);
        log.push(e);
        let digest = r3.digest.clone();
        log.extend(
            r3.claim(
                &bot,
                &digest,
                verdict(Decision::Allow),
                at(6),
                Deadlines::default(),
            )
            .unwrap(),
        );
        log.extend(
            r3.record_outcome(
                &bot,
                Outcome {
                    exit_code: Some(3),
                    signal: None,
                    duration_ms: 5,
                    output_sha256: None,
                    summary: Some("exit 3".into()),
                    reported_at: at(7),
                },
            )
            .unwrap(),
        );

        // r4: approved by two, then claimed: fine
        let (mut r4, e) = submit("r4", Decision::ApprovalRequired, 8);
        log.push(e);
        for (who, s) in [("alice", 9), ("bob", 10)] {
            log.extend(
                r4.review(
                    &reviewer(who),
                    ReviewDecision::Approve,
                    None,
                    at(s),
                    Deadlines::default(),
                )
                .unwrap(),
            );
        }
        let digest = r4.digest.clone();
        log.extend(
            r4.claim(
                &bot,
                &digest,
                verdict(Decision::ApprovalRequired),
                at(11),
                Deadlines::default(),
            )
            .unwrap(),
        );

        for (i, e) in log.iter_mut().enumerate() {
            e.index = Some(i as u64 + 100);
        }
        let last = log.len() as u64 + 99;
        let mut b = Builder::new(Some((100, last)), last + 1, HashMap::new());
        for e in &log {
            b.push(e);
        }
        let (rows, ledger, counts, discrepancies) = b.finish();
        assert_eq!(rows.len(), 4);
        assert_eq!(ledger.request_submitted_events, 4);
        assert_eq!(counts.requests, 4);
        assert_eq!(counts.executed_without_approval, 1);
        assert_eq!(counts.refused_self_approvals, 1);
        assert_eq!(counts.expired, 1);
        assert_eq!(counts.by_status["executing"], 2);
        assert_eq!(counts.by_status["expired"], 1);
        assert_eq!(counts.by_status["executed"], 1);
        let (r1, r2, r3, r4) = (&rows[0], &rows[1], &rows[2], &rows[3]);
        assert!(r1.executed_without_approval);
        assert_eq!(
            r1.violation.as_deref(),
            Some(
                "claimed at 2025-03-01T10:00:03Z while pending; \
                 claimed at 2025-03-01T10:00:03Z without approvals meeting sre:2 before it"
            )
        );
        assert_eq!(r1.refused_self_approvals, 1);
        assert_eq!(r1.principal_owner, None, "owner comes from the table");
        assert!(r2.expired && !r2.executed_without_approval);
        assert_eq!(r3.exit_code, Some(3));
        assert_eq!(r3.outcome_summary.as_deref(), Some("exit 3"));
        assert_eq!(r3.claimed_at, Some(at(6)));
        assert!(!r3.executed_without_approval);
        assert!(!r4.executed_without_approval);
        assert_eq!(r4.approvals.len(), 2);
        // no requests table given: every row is reported as missing from it
        assert_eq!(discrepancies.len(), 4, "{discrepancies:?}");
    }

    #[test]
    fn csv_quoting_follows_rfc_4180() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
        assert_eq!(csv_field(" edge"), "\" edge\"");
        assert_eq!(csv_field(""), "");
    }

    #[test]
    fn html_escapes_everything_and_has_no_script() {
        let html = render(&sample(), Format::Html);
        assert!(html.contains("quarterly &quot;close&quot;, finance &lt;team&gt;"));
        assert!(html.contains("request X is &lt;odd&gt; &amp; &quot;quoted&quot;"));
        assert!(!html.to_lowercase().contains("<script"));
        assert!(!html.contains("<team>"));
        assert_eq!(
            esc("<a href='x'>&</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&lt;/a&gt;"
        );
    }
}
