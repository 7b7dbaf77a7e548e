//! Who calls signoff: agents (automation) and users (humans).

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Whether a principal is automation or a human.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PrincipalKind {
    /// An AI agent, CI job or script. Agents never review.
    Agent,
    /// A human.
    User,
}

impl PrincipalKind {
    /// The Cedar entity type name for this kind (`Agent` or `User`).
    pub fn cedar_type(self) -> &'static str {
        match self {
            PrincipalKind::Agent => "Agent",
            PrincipalKind::User => "User",
        }
    }

    /// The lowercase name used on the wire and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            PrincipalKind::Agent => "agent",
            PrincipalKind::User => "user",
        }
    }
}

impl std::str::FromStr for PrincipalKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "agent" => Ok(Self::Agent),
            "user" => Ok(Self::User),
            other => Err(format!(
                "unknown principal kind `{other}` (expected agent or user)"
            )),
        }
    }
}

/// What a principal may do. Every API endpoint checks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Submits requests, claims its approvals and reports outcomes. Never reviews.
    Agent,
    /// A human who may submit requests and review other people's.
    Reviewer,
    /// Reads requests and the audit trail; decides nothing.
    Auditor,
    /// Manages principals and policies, and reviews like a reviewer. Separation
    /// of duties applies to admins exactly as to everyone else.
    Admin,
}

impl Role {
    /// The lowercase name used on the wire and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Agent => "agent",
            Role::Reviewer => "reviewer",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "agent" => Ok(Self::Agent),
            "reviewer" => Ok(Self::Reviewer),
            "auditor" => Ok(Self::Auditor),
            "admin" => Ok(Self::Admin),
            other => Err(format!(
                "unknown role `{other}` (expected reviewer, auditor or admin)"
            )),
        }
    }
}

/// A registered principal. Its bearer token is stored only as a hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Principal {
    /// Unique name across agents and users.
    pub name: String,
    /// Agent or user.
    pub kind: PrincipalKind,
    /// What the principal may do.
    pub role: Role,
    /// Contact address of a user.
    pub email: Option<String>,
    /// Groups a user belongs to (Cedar `Group::"name"` parents).
    pub groups: Vec<String>,
    /// The human who owns an agent; they can never approve that agent's requests.
    pub owner: Option<String>,
    /// Facts an admin registered (an agent's environments, team, labels;
    /// a user's department…); policies see them on the principal entity.
    #[serde(default)]
    pub attributes: crate::facts::PrincipalAttributes,
    /// When the principal was added.
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    /// When the principal was revoked, if it was.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub revoked_at: Option<Timestamp>,
}

impl Principal {
    /// The reference used in action requests and audit events.
    pub fn reference(&self) -> crate::PrincipalRef {
        crate::PrincipalRef {
            kind: self.kind,
            name: self.name.clone(),
        }
    }

    /// Whether the principal can still authenticate.
    pub fn is_active(&self) -> bool {
        self.revoked_at.is_none()
    }
}

/// Checks a principal, group or user name: 1–64 characters of letters, digits,
/// `.`, `_`, `-` or `@`, starting with a letter or digit.
pub fn validate_name(what: &str, name: &str) -> Result<(), String> {
    let ok_len = !name.is_empty() && name.len() <= 64;
    let ok_first = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if ok_len && ok_first && ok_chars {
        Ok(())
    } else {
        Err(format!(
            "invalid {what} `{name}`: use 1-64 letters, digits, '.', '_', '-' or '@', starting with a letter or digit"
        ))
    }
}

/// The canonical form of a principal or group name: ASCII-lowercased, so
/// "Alice" and "alice" are one principal and can never count as two
/// reviewers. Names are stored in this form; inputs are folded on the way in.
pub fn canonical_name(name: &str) -> String {
    name.trim().to_ascii_lowercase()
}

/// Whether two names denote the same principal (compares canonical forms).
pub fn same_principal(a: &str, b: &str) -> bool {
    a.trim().eq_ignore_ascii_case(b.trim())
}

/// One way a principal proves who it is: a bearer token today, later an
/// OIDC session or a workload JWT. Only a hash of the secret is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Credential {
    /// Unique id (`cr_…`), used to revoke it.
    pub id: String,
    /// The principal it authenticates (canonical name).
    pub principal: String,
    /// A name unique per principal (`default`, `ci-runner-3`, …).
    pub name: String,
    /// The gate this credential may submit through (`exec`, `mcp`, …);
    /// policies see it as `context.gate`. `None`: not bound, requests are
    /// attributed to the `api` gate whatever the body says.
    pub gate: Option<String>,
    /// When it was issued.
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    /// When it stops working, if it expires.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<Timestamp>,
    /// When it was revoked, if it was.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub revoked_at: Option<Timestamp>,
    /// When it was last used (recorded with up to a minute's delay).
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_used_at: Option<Timestamp>,
}

impl Credential {
    /// Whether it authenticates at `now` (not revoked, not expired).
    pub fn is_valid_at(&self, now: Timestamp) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|at| at > now)
    }
}

/// An account elsewhere (an OIDC subject, a Slack or Teams user) linked to
/// a principal, with how the link was verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Identity {
    /// Who vouches for the subject: an OIDC issuer URL, `slack:TEAM_ID`,
    /// `teams:TENANT_ID`.
    pub issuer: String,
    /// The subject's stable id at that issuer.
    pub subject: String,
    /// The principal it is linked to (canonical name).
    pub principal: String,
    /// How the link was verified (`admin`, `oidc-login`, `slack-signed-callback`…).
    pub verified_by: String,
    /// Who linked it (`user:NAME`, `console`).
    pub linked_by: String,
    /// When.
    #[schema(value_type = String, format = DateTime)]
    pub linked_at: Timestamp,
}

/// The channel a human acted through; recorded on every review so a report
/// can say "approved by bob in Slack".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    /// The `signoff` command line.
    Cli,
    /// The REST API directly.
    Api,
    /// The web inbox.
    Web,
    /// Slack.
    Slack,
    /// Microsoft Teams.
    Teams,
}

impl Channel {
    /// The lowercase name used on the wire and in events.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Cli => "cli",
            Channel::Api => "api",
            Channel::Web => "web",
            Channel::Slack => "slack",
            Channel::Teams => "teams",
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Channel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "cli" => Ok(Self::Cli),
            "api" => Ok(Self::Api),
            "web" => Ok(Self::Web),
            "slack" => Ok(Self::Slack),
            "teams" => Ok(Self::Teams),
            other => Err(format!(
                "unknown channel `{other}` (expected cli, api, web, slack or teams)"
            )),
        }
    }
}

#[cfg(test)]
mod canonical_tests {
    use super::*;

    #[test]
    fn names_fold_case() {
        assert_eq!(canonical_name("Alice"), "alice");
        assert!(same_principal("Alice", "alice"));
        assert!(!same_principal("alice", "alicia"));
    }
}
