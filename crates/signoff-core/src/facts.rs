//! Facts the gateway knows, as opposed to what a requester claims: the
//! resource catalog's view of a resource and the attributes an admin
//! registered for a principal. Policies decide on these; reviewers see them
//! beside the requester's claims.

use crate::principal::{validate_name, PrincipalKind};
use serde::{Deserialize, Serialize};

/// Attributes of a principal, set by an admin at registration or later
/// (`signoff principal add agent … --attr environments=staging`). Policies
/// see them on the `Agent` / `User` entity; absent values are empty there
/// (`""`, `[]`), so a policy never needs `has` to read them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PrincipalAttributes {
    /// Agents: the environments the agent may act in (`principal.environments`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub environments: Vec<String>,
    /// The team the principal belongs to (`principal.team`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    /// Users: their department (`principal.department`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
    /// Free-form labels (`principal.labels`), e.g. `tier-1`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
}

/// The attribute keys each kind of principal carries, in schema order.
pub fn principal_attribute_keys(kind: PrincipalKind) -> &'static [&'static str] {
    match kind {
        PrincipalKind::Agent => &["environments", "team", "labels"],
        PrincipalKind::User => &["department", "team", "labels"],
    }
}

impl PrincipalAttributes {
    /// Whether no attribute is set.
    pub fn is_empty(&self) -> bool {
        self == &PrincipalAttributes::default()
    }

    /// Applies `key=value` (lists comma-separated; an empty value clears
    /// the key). Names the offending input on error.
    pub fn apply(&mut self, kind: PrincipalKind, assignment: &str) -> Result<(), String> {
        let (key, value) = assignment.split_once('=').ok_or_else(|| {
            format!(
                "invalid attribute `{assignment}`: expected KEY=VALUE, e.g. environments=staging"
            )
        })?;
        let key = key.trim();
        if !principal_attribute_keys(kind).contains(&key) {
            return Err(format!(
                "{} principals have no attribute `{key}` (expected {})",
                kind.as_str(),
                principal_attribute_keys(kind).join(", ")
            ));
        }
        let list = || -> Vec<String> {
            value
                .split(',')
                .map(|v| v.trim().to_ascii_lowercase())
                .filter(|v| !v.is_empty())
                .collect()
        };
        let one = || {
            let v = value.trim().to_ascii_lowercase();
            (!v.is_empty()).then_some(v)
        };
        match key {
            "environments" => self.environments = list(),
            "labels" => self.labels = list(),
            "team" => self.team = one(),
            "department" => self.department = one(),
            _ => {}
        }
        self.normalize();
        self.validate(kind)
    }

    /// Checks that only `kind`'s keys are set and every value is a valid
    /// name; folds case and sorts lists first.
    pub fn validate(&self, kind: PrincipalKind) -> Result<(), String> {
        let allowed = principal_attribute_keys(kind);
        let set: [(&str, bool); 4] = [
            ("environments", !self.environments.is_empty()),
            ("team", self.team.is_some()),
            ("department", self.department.is_some()),
            ("labels", !self.labels.is_empty()),
        ];
        for (key, present) in set {
            if present && !allowed.contains(&key) {
                return Err(format!(
                    "{} principals have no attribute `{key}` (expected {})",
                    kind.as_str(),
                    allowed.join(", ")
                ));
            }
        }
        let values = self
            .environments
            .iter()
            .map(|v| ("environments", v))
            .chain(self.labels.iter().map(|v| ("labels", v)))
            .chain(self.team.iter().map(|v| ("team", v)))
            .chain(self.department.iter().map(|v| ("department", v)));
        for (key, v) in values {
            validate_name(&format!("value of attribute `{key}`"), v)?;
        }
        if self.environments.len() > 64 || self.labels.len() > 64 {
            return Err("at most 64 environments and 64 labels per principal".into());
        }
        Ok(())
    }

    /// Folds case and sorts and dedups the lists, so equal attributes
    /// compare equal and are stored one way.
    pub fn normalize(&mut self) {
        for list in [&mut self.environments, &mut self.labels] {
            for v in list.iter_mut() {
                *v = v.trim().to_ascii_lowercase();
            }
            list.sort();
            list.dedup();
        }
        for v in [&mut self.team, &mut self.department].into_iter().flatten() {
            *v = v.trim().to_ascii_lowercase();
        }
    }
}

/// What the resource catalog says about a request's resource.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ResourceFacts {
    /// Whether a catalog entry matched (`resource.known`). An unknown
    /// resource has no attributes: policies should fail closed on it.
    pub known: bool,
    /// The entry that matched: its exact name or its pattern.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry: Option<String>,
    /// Where the entry is defined (`catalog.toml:12`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defined_at: Option<String>,
    /// `resource.environment`, e.g. `prod`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// `resource.classification`, e.g. `pii`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classification: Option<String>,
    /// `resource.owner`: the owning group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// `resource.tags`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Catalog parents, nearest first (`resource in Resource::"prod"`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ancestors: Vec<String>,
}

/// The facts a request was decided on, recorded with it so reviewers and
/// auditors can tell them from the requester's claims.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RequestFacts {
    /// The catalog's view of the resource.
    pub resource: ResourceFacts,
    /// The environment the requester asserted (`--env`), a claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asserted_environment: Option<String>,
    /// True when the requester asserted an environment and the catalog
    /// knows another one (`context.environment_mismatch`).
    pub environment_mismatch: bool,
    /// The principal's registered attributes at decision time.
    #[serde(default, skip_serializing_if = "PrincipalAttributes::is_empty")]
    pub principal: PrincipalAttributes,
}

impl RequestFacts {
    /// Combines the catalog's view with the request's claim.
    pub fn new(
        resource: ResourceFacts,
        asserted_environment: Option<String>,
        principal: PrincipalAttributes,
    ) -> RequestFacts {
        let environment_mismatch = environment_mismatch(&resource, asserted_environment.as_deref());
        RequestFacts {
            resource,
            asserted_environment,
            environment_mismatch,
            principal,
        }
    }
}

/// Whether an asserted environment contradicts the catalog's. Nothing
/// asserted, or nothing known, is no mismatch: there is nothing to compare.
pub fn environment_mismatch(resource: &ResourceFacts, asserted: Option<&str>) -> bool {
    match (resource.environment.as_deref(), asserted) {
        (Some(known), Some(claimed)) => !known.eq_ignore_ascii_case(claimed),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_apply_per_kind() {
        let mut a = PrincipalAttributes::default();
        a.apply(PrincipalKind::Agent, "environments=Staging, dev,staging")
            .unwrap();
        assert_eq!(a.environments, ["dev", "staging"]);
        a.apply(PrincipalKind::Agent, "team=data").unwrap();
        assert_eq!(a.team.as_deref(), Some("data"));
        a.apply(PrincipalKind::Agent, "team=").unwrap();
        assert_eq!(a.team, None);
        assert_eq!(
            a.apply(PrincipalKind::Agent, "department=x").unwrap_err(),
            "agent principals have no attribute `department` (expected environments, team, labels)"
        );
        assert_eq!(
            PrincipalAttributes::default()
                .apply(PrincipalKind::User, "environments=prod")
                .unwrap_err(),
            "user principals have no attribute `environments` (expected department, team, labels)"
        );
        assert!(PrincipalAttributes::default()
            .apply(PrincipalKind::User, "team")
            .unwrap_err()
            .contains("expected KEY=VALUE"));
        assert!(PrincipalAttributes::default()
            .apply(PrincipalKind::User, "team=a b")
            .unwrap_err()
            .contains("invalid value of attribute `team` `a b`"));
    }

    #[test]
    fn mismatch_needs_both_sides() {
        let prod = ResourceFacts {
            known: true,
            environment: Some("prod".into()),
            ..Default::default()
        };
        assert!(environment_mismatch(&prod, Some("production")));
        assert!(!environment_mismatch(&prod, Some("PROD")));
        assert!(!environment_mismatch(&prod, None));
        assert!(!environment_mismatch(
            &ResourceFacts::default(),
            Some("prod")
        ));
    }
}
