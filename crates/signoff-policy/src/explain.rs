//! Why a request got its verdict: every candidate policy and what it did.

use crate::EvalInput;
use serde::Serialize;
use serde_json::{json, Value};
use signoff_core::{RequestFacts, Verdict};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Whether a policy permits or forbids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    /// `permit (…)`.
    Permit,
    /// `forbid (…)`.
    Forbid,
}

impl Effect {
    /// `permit` or `forbid`.
    pub fn as_str(self) -> &'static str {
        match self {
            Effect::Permit => "permit",
            Effect::Forbid => "forbid",
        }
    }
}

/// What one candidate policy did for the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "status", content = "error")]
pub enum PolicyStatus {
    /// Satisfied, and among the policies that decided the verdict.
    Determining,
    /// Satisfied but overridden (a permit when a forbid also matched).
    Satisfied,
    /// Its scope or conditions did not match.
    NotSatisfied,
    /// Evaluating it failed; the request is denied (fail closed).
    Error(String),
}

impl PolicyStatus {
    fn label(&self) -> &'static str {
        match self {
            PolicyStatus::Determining => "determining",
            PolicyStatus::Satisfied => "satisfied",
            PolicyStatus::NotSatisfied => "not satisfied",
            PolicyStatus::Error(_) => "error",
        }
    }
}

/// One policy the action index selected for the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyTrace {
    /// Policy id (`@id`, or `FILE:INDEX`).
    pub id: String,
    /// File the policy is defined in.
    pub file: String,
    /// 1-based line of the policy in its file.
    pub line: usize,
    /// 1-based column of the policy in its file.
    pub column: usize,
    /// Permit or forbid.
    pub effect: Effect,
    /// What it did.
    pub status: PolicyStatus,
    /// All its annotations (`@id`, `@approval`, `@ttl`, `@reason`, others).
    pub annotations: BTreeMap<String, String>,
}

/// One value a policy can read, and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FactTrace {
    /// How a policy reads it, e.g. `resource.environment`.
    pub name: String,
    /// Its value as Cedar sees it (JSON).
    pub value: serde_json::Value,
    /// `catalog` (with the entry), `principal` (registered attributes),
    /// `credential`, or `asserted` (the requester's claim).
    pub source: String,
}

/// A verdict with the trace of every candidate policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explanation {
    /// The verdict, exactly as [`crate::PolicySet::evaluate`] returns it.
    pub verdict: Verdict,
    /// Every value the policies could read, with its source.
    pub facts: Vec<FactTrace>,
    /// The candidate policies, in load order (file name, then position).
    pub policies: Vec<PolicyTrace>,
    /// Policies left out because their action scope cannot match.
    pub skipped: usize,
}

impl Explanation {
    /// A readable multi-line report.
    pub fn render(&self) -> String {
        let v = &self.verdict;
        let mut out = String::new();
        let _ = writeln!(out, "verdict: {}", v.summary());
        if let Some(ttl) = v.ttl_seconds {
            let _ = writeln!(out, "review window: {ttl}s");
        }
        for r in &v.reasons {
            let _ = writeln!(out, "reason: {r}");
        }
        for e in &v.errors {
            let _ = writeln!(out, "error: {e}");
        }
        let _ = writeln!(out, "facts (where each value came from):");
        let name_w = self.facts.iter().map(|f| f.name.len()).max().unwrap_or(0);
        let value_w = self
            .facts
            .iter()
            .map(|f| f.value.to_string().chars().count())
            .max()
            .unwrap_or(0);
        for f in &self.facts {
            let _ = writeln!(
                out,
                "  {:<name_w$}  {:<value_w$}  {}",
                f.name,
                f.value.to_string(),
                f.source
            );
        }
        let _ = writeln!(
            out,
            "policies evaluated: {} ({} skipped by the action index)",
            self.policies.len(),
            self.skipped
        );
        let id_w = self
            .policies
            .iter()
            .map(|p| p.id.chars().count())
            .max()
            .unwrap_or(0);
        let st_w = self
            .policies
            .iter()
            .map(|p| p.status.label().len())
            .max()
            .unwrap_or(0);
        for p in &self.policies {
            let mut line = format!(
                "  {:<st_w$}  {:<6}  {:<id_w$}  {}:{}:{}",
                p.status.label(),
                p.effect.as_str(),
                p.id,
                p.file,
                p.line,
                p.column,
            );
            for (k, val) in p.annotations.iter().filter(|(k, _)| k.as_str() != "id") {
                let _ = write!(line, "  @{k}({val:?})");
            }
            let _ = writeln!(out, "{}", line.trim_end());
            if let PolicyStatus::Error(e) = &p.status {
                let _ = writeln!(out, "      {e}");
            }
        }
        out
    }
}

/// The values behind a decision, each labelled with its source.
pub(crate) fn fact_traces(input: &EvalInput<'_>, facts: &RequestFacts) -> Vec<FactTrace> {
    let r = &facts.resource;
    let catalog = match (&r.entry, &r.defined_at) {
        (Some(entry), Some(at)) => format!("catalog ({at}, entry `{entry}`)"),
        _ => "catalog (no entry matches: unknown resource)".to_owned(),
    };
    let mut out = Vec::new();
    let mut push = |name: &str, value: Value, source: &str| {
        out.push(FactTrace {
            name: name.to_owned(),
            value,
            source: source.to_owned(),
        })
    };
    let req = input.request;
    let text = |v: &Option<String>| json!(v.clone().unwrap_or_default());
    push("principal", json!(req.principal.to_string()), "credential");
    let kind = req.principal.kind.cedar_type();
    let a = &facts.principal;
    for (ty, name, ..) in crate::schema::ATTRIBUTES {
        if *ty != kind {
            continue;
        }
        let value = match *name {
            "environments" => json!(a.environments),
            "labels" => json!(a.labels),
            "team" => text(&a.team),
            _ => text(&a.department),
        };
        push(
            &format!("principal.{name}"),
            value,
            "principal (registered attributes)",
        );
    }
    push(
        "groups",
        json!(input.principal_groups),
        "principal (registered groups)",
    );
    push(
        "resource",
        json!(req.resource),
        "asserted (the request names it)",
    );
    push("resource.known", json!(r.known), &catalog);
    push("resource.environment", text(&r.environment), &catalog);
    push("resource.classification", text(&r.classification), &catalog);
    push("resource.owner", text(&r.owner), &catalog);
    push("resource.tags", json!(r.tags), &catalog);
    push("resource in", json!(r.ancestors), &catalog);
    push("context.gate", json!(input.gate), "credential");
    push(
        "context.environment",
        text(&req.environment),
        "asserted (the requester's claim; trust resource.environment)",
    );
    push(
        "context.environment_mismatch",
        json!(facts.environment_mismatch),
        "catalog vs asserted",
    );
    push(
        "context.justification",
        text(&req.justification),
        "asserted",
    );
    push("context.on_behalf_of", text(&req.on_behalf_of), "asserted");
    for (k, v) in &req.context {
        push(&format!("context.{k}"), v.clone(), "asserted");
    }
    out
}
