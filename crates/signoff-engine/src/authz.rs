//! The role matrix, in one place. Every channel calls [`require`] before it
//! acts, so REST, CLI and future chat channels cannot disagree.
//!
//! | permission        | agent | reviewer | auditor | admin |
//! |-------------------|:-----:|:--------:|:-------:|:-----:|
//! | Submit            |   ✓   |    ✓     |         |   ✓   |
//! | ReadAll           |       |    ✓     |    ✓    |   ✓   |
//! | Review            |       |    ✓     |         |   ✓   |
//! | ReadAudit         |       |          |    ✓    |   ✓   |
//! | ManagePrincipals  |       |          |         |   ✓   |
//! | ManagePolicy      |       |          |         |   ✓   |
//!
//! Everyone may read, wait on, cancel, claim and report on their *own*
//! requests; the state machine enforces the "own" part. Review is checked by
//! the state machine as well (so refused attempts are recorded), and
//! separation of duties applies to admins like everyone else.

use crate::EngineError;
use signoff_core::{Principal, Role};

/// Something a role may or may not do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// Submit action requests.
    Submit,
    /// Read every request, not only one's own.
    ReadAll,
    /// Approve or deny other people's requests.
    Review,
    /// Read the audit trail.
    ReadAudit,
    /// Add, list and revoke principals.
    ManagePrincipals,
    /// Reload policies.
    ManagePolicy,
}

/// Whether `role` has `permission`.
pub fn allows(role: Role, permission: Permission) -> bool {
    use Permission::*;
    match role {
        Role::Agent => matches!(permission, Submit),
        Role::Reviewer => matches!(permission, Submit | ReadAll | Review),
        Role::Auditor => matches!(permission, ReadAll | ReadAudit),
        Role::Admin => true,
    }
}

/// Fails with [`EngineError::Forbidden`] unless `who` has `permission`.
pub fn require(who: &Principal, permission: Permission) -> Result<(), EngineError> {
    if allows(who.role, permission) {
        Ok(())
    } else {
        Err(EngineError::Forbidden(format!(
            "{}:{} has role {}, which may not {}",
            who.kind.as_str(),
            who.name,
            who.role,
            match permission {
                Permission::Submit => "submit requests",
                Permission::ReadAll => "read other principals' requests",
                Permission::Review => "review requests",
                Permission::ReadAudit => "read the audit trail",
                Permission::ManagePrincipals => "manage principals",
                Permission::ManagePolicy => "manage policies",
            }
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrix() {
        use Permission::*;
        let all = [
            Submit,
            ReadAll,
            Review,
            ReadAudit,
            ManagePrincipals,
            ManagePolicy,
        ];
        let grid: Vec<(Role, Vec<Permission>)> =
            [Role::Agent, Role::Reviewer, Role::Auditor, Role::Admin]
                .into_iter()
                .map(|r| (r, all.into_iter().filter(|p| allows(r, *p)).collect()))
                .collect();
        assert_eq!(
            grid,
            vec![
                (Role::Agent, vec![Submit]),
                (Role::Reviewer, vec![Submit, ReadAll, Review]),
                (Role::Auditor, vec![ReadAll, ReadAudit]),
                (Role::Admin, all.to_vec()),
            ]
        );
    }
}
