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
            other => Err(format!("unknown report format `{other}`: expected csv, json or html")),
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

const COLUMNS: [&str; 30] = [
    "request_id",
    "submitted_index",
    "submitted_at",
    "action",
    "resource",
    "environment",
    "principal",
    "principal_owner",
    "on_behalf_of",
    "justification",
    "gate",
    "verdict",
    "policy_ids",
    "policy_set_hash",
    "requirement",
    "status",
    "approvals",
    "denials",
    "decided_at",
    "claimed_at",
    "exit_code",
    "outcome_summary",
    "output_sha256",
    "refused_self_approvals",
    "expired",
    "denied",
    "executed_without_approval",
    "approvals_provisioned_by_party",
    "violation",
    "checkpoint",
];

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map(T::to_string).unwrap_or_default()
}

fn reviews(list: &[ReviewEntry]) -> String {
    list.iter()
        .map(|r| format!("{} {}", r.reviewer, r.at))
        .collect::<Vec<_>>()
        .join("; ")
}

fn cells(r: &Row, checkpoint: &str) -> [String; 30] {
    [
        r.request_id.clone(),
        r.submitted_index.to_string(),
        r.submitted_at.to_string(),
        r.action.clone(),
        r.resource.clone(),
        opt(&r.environment),
        r.principal.clone(),
        opt(&r.principal_owner),
        opt(&r.on_behalf_of),
        opt(&r.justification),
        opt(&r.gate),
        r.verdict.clone(),
        r.policy_ids.join("; "),
        opt(&r.policy_set_hash),
        opt(&r.requirement),
        r.status.clone(),
        reviews(&r.approvals),
        reviews(&r.denials),
        opt(&r.decided_at),
        opt(&r.claimed_at),
        opt(&r.exit_code),
        opt(&r.outcome_summary),
        opt(&r.output_sha256),
        r.refused_self_approvals.to_string(),
        r.expired.to_string(),
        r.denied.to_string(),
        r.executed_without_approval.to_string(),
        r.approvals_provisioned_by_party.join("; "),
        opt(&r.violation),
        checkpoint.to_owned(),
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

/// `size root` of the checkpoint, as the `checkpoint` column.
fn checkpoint_cell(c: &CheckpointInfo) -> String {
    format!("{} {} {}", c.origin, c.size, c.root)
}

fn csv(report: &Report) -> String {
    let mut out = String::new();
    csv_line(&mut out, COLUMNS);
    let cp = checkpoint_cell(&report.checkpoint);
    for r in &report.requests {
        csv_line(&mut out, cells(r, &cp));
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

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#1b1b1b}\
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.6em}\
table{border-collapse:collapse;font-size:.85em}\
th,td{border:1px solid #bbb;padding:.3em .5em;text-align:left;vertical-align:top}\
th{background:#eee}tr.flag td{background:#fdd}\
.ok{color:#176417}.bad{color:#a00;font-weight:bold}code{font-size:.95em}";

fn html(report: &Report) -> String {
    let mut h = String::new();
    let c = &report.checkpoint;
    let p = &report.period;
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>signoff audit report {} to {}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <h1>signoff audit report</h1>\n",
        esc(&p.since.to_string()),
        esc(&p.until.to_string()),
    );
    let _ = write!(
        h,
        "<table>\n<tr><th>period</th><td>{} to {} (end excluded)</td></tr>\n\
         <tr><th>generated</th><td>{}</td></tr>\n\
         <tr><th>checkpoint</th><td>origin <code>{}</code>, size {}, root <code>{}</code>, signed {}</td></tr>\n\
         <tr><th>ledger entries</th><td>{}</td></tr>\n</table>\n",
        esc(&p.since.to_string()),
        esc(&p.until.to_string()),
        esc(&report.generated_at.to_string()),
        esc(&c.origin),
        c.size,
        esc(&c.root),
        esc(&c.signed_at.to_string()),
        match (report.ledger.first_index, report.ledger.last_index) {
            (Some(a), Some(b)) => format!(
                "{a} to {b} ({} entries, {} request_submitted)",
                report.ledger.events, report.ledger.request_submitted_events
            ),
            _ => "none in the period".to_owned(),
        },
    );
    let n = &report.counts;
    h.push_str("<h2>Totals</h2>\n<table>\n");
    let _ = writeln!(h, "<tr><th>requests</th><td>{}</td></tr>", n.requests);
    for (status, v) in &n.by_status {
        let _ = writeln!(h, "<tr><th>status {}</th><td>{v}</td></tr>", esc(status));
    }
    let _ = write!(
        h,
        "<tr><th>flagged denied</th><td>{}</td></tr>\n\
         <tr><th>flagged expired</th><td>{}</td></tr>\n\
         <tr><th>refused self-approvals</th><td>{}</td></tr>\n\
         <tr><th>approvals by reviewers a party provisioned</th><td class=\"{}\">{}</td></tr>\n\
         <tr><th>executed without approval</th><td class=\"{}\">{}</td></tr>\n</table>\n",
        n.denied,
        n.expired,
        n.refused_self_approvals,
        if n.approvals_provisioned_by_party == 0 {
            "ok"
        } else {
            "bad"
        },
        n.approvals_provisioned_by_party,
        if n.executed_without_approval == 0 {
            "ok"
        } else {
            "bad"
        },
        n.executed_without_approval
    );
    h.push_str("<h2>Reconciliation</h2>\n");
    if report.discrepancies.is_empty() {
        let _ = writeln!(
            h,
            "<p class=\"ok\">{} requests = {} request_submitted entries in the ledger; the requests table agrees.</p>",
            n.requests, report.ledger.request_submitted_events
        );
    } else {
        h.push_str("<ul class=\"bad\">\n");
        for d in &report.discrepancies {
            let _ = writeln!(h, "<li>{}</li>", esc(d));
        }
        h.push_str("</ul>\n");
    }
    h.push_str("<h2>Requests</h2>\n<table>\n<tr>");
    for col in &COLUMNS[..COLUMNS.len() - 1] {
        let _ = write!(h, "<th>{}</th>", esc(col));
    }
    h.push_str("</tr>\n");
    for r in &report.requests {
        let flag = r.executed_without_approval;
        h.push_str(if flag { "<tr class=\"flag\">" } else { "<tr>" });
        for cell in &cells(r, "")[..COLUMNS.len() - 1] {
            let _ = write!(h, "<td>{}</td>", esc(cell));
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</table>\n</body>\n</html>\n");
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
                },
                ReviewEntry {
                    reviewer: "bob".into(),
                    at: t("2025-03-01T10:02:00Z"),
                    reason: Some("ok".into()),
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
        let requests = vec![row("01JNBB0000000000000000000A", 3), denied, bad];
        let mut by_status: BTreeMap<String, u64> = RequestStatus::ALL
            .iter()
            .map(|s| (s.as_str().to_owned(), 0))
            .collect();
        by_status.insert("executed".into(), 2);
        by_status.insert("denied".into(), 1);
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
                request_submitted_events: 3,
            },
            counts: Counts {
                requests: 3,
                by_status,
                denied: 1,
                expired: 0,
                refused_self_approvals: 2,
                executed_without_approval: 1,
                approvals_provisioned_by_party: 1,
            },
            discrepancies: vec!["request X is <odd> & \"quoted\"".into()],
            policy_changes: vec![],
            requests,
        }
    }

    #[test]
    fn approvals_by_reviewers_a_party_provisioned_are_listed() {
        let mut report = sample();
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
        insta::assert_snapshot!(render(&sample(), Format::Html));
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
