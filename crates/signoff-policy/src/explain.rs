//! Why a request got its verdict: every candidate policy and what it did.

use serde::Serialize;
use signoff_core::Verdict;
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

/// A verdict with the trace of every candidate policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explanation {
    /// The verdict, exactly as [`crate::PolicySet::evaluate`] returns it.
    pub verdict: Verdict,
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
