//! The answer the policy gives for one action request.

use crate::quorum::Requirement;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Allow, deny, or needs approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// The action may run now.
    Allow,
    /// The action must not run.
    Deny,
    /// The action may run once the requirement is met.
    ApprovalRequired,
}

impl Decision {
    /// The snake_case name used on the wire, in the database and in policy tests.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
            Decision::ApprovalRequired => "approval_required",
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Decision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "allow" => Ok(Self::Allow),
            "deny" => Ok(Self::Deny),
            "approval_required" | "approval" => Ok(Self::ApprovalRequired),
            other => Err(format!(
                "unknown verdict `{other}` (expected allow, deny or approval_required)"
            )),
        }
    }
}

/// A policy decision with everything needed to explain and audit it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Verdict {
    /// Allow, deny or approval required.
    pub decision: Decision,
    /// Ids of the policies that determined the decision.
    pub policy_ids: Vec<String>,
    /// SHA-256 of the policy set that decided (hex).
    pub policy_set_hash: String,
    /// Who must approve, when approval is required.
    pub requirement: Option<Requirement>,
    /// How long reviewers have, in seconds, when approval is required.
    pub ttl_seconds: Option<u64>,
    /// Human-readable reasons from `@reason` annotations (or signoff's own).
    pub reasons: Vec<String>,
    /// Policy evaluation errors. Any error makes the verdict a deny (fail closed).
    pub errors: Vec<String>,
}

impl Verdict {
    /// A deny that no policy produced (e.g. nothing permits, or evaluation failed).
    pub fn deny(policy_set_hash: impl Into<String>, reason: impl Into<String>) -> Self {
        Verdict {
            decision: Decision::Deny,
            policy_ids: Vec::new(),
            policy_set_hash: policy_set_hash.into(),
            requirement: None,
            ttl_seconds: None,
            reasons: vec![reason.into()],
            errors: Vec::new(),
        }
    }

    /// A one-line summary, e.g. `approval_required (sre:2) by prod-export`.
    pub fn summary(&self) -> String {
        let mut s = self.decision.to_string();
        if let Some(req) = &self.requirement {
            s.push_str(&format!(" ({req})"));
        }
        if !self.policy_ids.is_empty() {
            s.push_str(&format!(" by {}", self.policy_ids.join(", ")));
        }
        s
    }
}
