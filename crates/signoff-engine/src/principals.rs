//! Principal management: names are canonical (lowercase), tokens are
//! random, shown once, stored as SHA-256.

use crate::identity::{new_credential_id, validate_gate, Caller};
use crate::{authz, Engine, EngineError, Permission};
use base64::Engine as _;
use rand::RngCore;
use sha2::{Digest, Sha256};
use signoff_core::principal::validate_name;
use signoff_core::wire::NewPrincipal;
use signoff_core::{
    canonical_name, AuditEvent, Credential, EventKind, Principal, PrincipalAttributes,
    PrincipalKind, Role,
};
use signoff_store::{Change, Commit};

/// Prefix that makes signoff tokens recognisable to secret scanners.
const TOKEN_PREFIX: &str = "so_";

/// Hex SHA-256 of a bearer token, as stored.
pub(crate) fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

pub(crate) fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// Who runs an administrative use case: an authenticated caller, whose
/// role the engine checks, or the operator at the console (`signoff
/// principal …`, `kill -HUP`, offline audit with direct database access).
#[derive(Debug, Clone, Copy)]
pub enum Operator<'a> {
    /// An authenticated caller (over the API, a chat channel…); the use
    /// case checks its role.
    Caller(&'a Caller),
    /// The local operator with the config file.
    Console,
}

impl Operator<'_> {
    pub(crate) fn authorize(&self) -> Result<String, EngineError> {
        match self {
            Operator::Caller(p) => {
                authz::require(p, Permission::ManagePrincipals)?;
                Ok(p.reference().to_string())
            }
            Operator::Console => Ok("console".to_owned()),
        }
    }
}

impl Engine {
    /// Adds a principal with a first credential (`default`, bound to
    /// `new.gate` if given) and returns both with the credential's token.
    /// Names are folded to their canonical form, so "Alice" and "alice"
    /// can never be two principals.
    pub async fn add_principal(
        &self,
        operator: Operator<'_>,
        mut new: NewPrincipal,
    ) -> Result<(Principal, Credential, String), EngineError> {
        let actor = operator.authorize()?;
        validate_name("principal name", &new.name).map_err(EngineError::Invalid)?;
        new.name = canonical_name(&new.name);
        for g in &mut new.groups {
            validate_name("group", g).map_err(EngineError::Invalid)?;
            *g = canonical_name(g);
        }
        if let Some(g) = &new.gate {
            validate_gate(g)?;
        }
        let role = match (new.kind, new.role) {
            (PrincipalKind::Agent, None | Some(Role::Agent)) => Role::Agent,
            (PrincipalKind::Agent, Some(r)) => {
                return Err(EngineError::Invalid(format!(
                    "an agent cannot have role {r}; agents always have role agent"
                )))
            }
            (PrincipalKind::User, None) => Role::Reviewer,
            (PrincipalKind::User, Some(Role::Agent)) => {
                return Err(EngineError::Invalid("a user cannot have role agent".into()))
            }
            (PrincipalKind::User, Some(r)) => r,
        };
        if new.kind == PrincipalKind::User && new.owner.is_some() {
            return Err(EngineError::Invalid("only agents have an owner".into()));
        }
        if let Some(owner) = &mut new.owner {
            validate_name("owner", owner).map_err(EngineError::Invalid)?;
            *owner = canonical_name(owner);
            // The owner is who separation of duties keeps from approving the
            // agent's requests: an owner that does not exist would protect
            // nobody (and a user created later under that name would
            // silently inherit the tie).
            match self.store.principal(owner).await? {
                Some(p) if p.kind == PrincipalKind::User && p.is_active() => {}
                Some(p) if p.kind == PrincipalKind::Agent => {
                    return Err(EngineError::Invalid(format!(
                        "owner `{owner}` is an agent; an agent's owner must be a user"
                    )))
                }
                Some(_) => return Err(EngineError::Invalid(format!("owner `{owner}` is revoked"))),
                None => {
                    return Err(EngineError::Invalid(format!(
                        "owner `{owner}` does not exist; add the user first"
                    )))
                }
            }
        }
        if let Some(email) = &new.email {
            if !email.contains('@')
                || email.len() > 254
                || email.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                return Err(EngineError::Invalid(format!(
                    "invalid email `{}`",
                    signoff_core::input::escape_for_message(email)
                )));
            }
        }
        let mut groups = new.groups;
        groups.sort();
        groups.dedup();
        let mut attributes = new.attributes;
        attributes.normalize();
        attributes
            .validate(new.kind)
            .map_err(EngineError::Invalid)?;
        let now = self.now();
        let principal = Principal {
            name: new.name,
            kind: new.kind,
            role,
            email: new.email,
            groups,
            owner: new.owner,
            attributes,
            created_at: now,
            revoked_at: None,
        };
        let token = new_token();
        let credential = Credential {
            id: new_credential_id(now),
            principal: principal.name.clone(),
            name: "default".into(),
            gate: new.gate,
            created_at: now,
            expires_at: None,
            revoked_at: None,
            last_used_at: None,
        };
        let event = AuditEvent::new(EventKind::PrincipalAdded, now, actor.clone()).with_detail(
            serde_json::json!({
                "name": principal.name,
                "kind": principal.kind,
                "role": principal.role,
                "groups": principal.groups,
                "owner": principal.owner,
                "email": principal.email,
                "attributes": principal.attributes,
                "credential": credential.id,
                "gate": credential.gate,
            }),
        );
        self.store
            .commit(Commit {
                changes: vec![Change::InsertPrincipal {
                    principal: principal.clone(),
                    credential: credential.clone(),
                    token_hash: token_hash(&token),
                    created_by: Some(actor),
                }],
                events: vec![event],
            })
            .await
            .map_err(|e| match e {
                signoff_store::StoreError::Duplicate(_) => {
                    EngineError::Duplicate(format!("principal `{}`", principal.name))
                }
                other => other.into(),
            })?;
        Ok((principal, credential, token))
    }

    /// Revokes a principal's token; it can no longer authenticate.
    pub async fn revoke_principal(
        &self,
        operator: Operator<'_>,
        name: &str,
    ) -> Result<Principal, EngineError> {
        let actor = operator.authorize()?;
        let name = &canonical_name(name);
        let existing = self
            .store
            .principal(name)
            .await?
            .ok_or_else(|| EngineError::NotFound(format!("principal `{name}`")))?;
        if existing.revoked_at.is_some() {
            return Err(EngineError::Invalid(format!(
                "principal `{name}` is already revoked"
            )));
        }
        let now = self.now();
        let event = AuditEvent::new(EventKind::PrincipalRevoked, now, actor)
            .with_detail(serde_json::json!({ "name": name }));
        self.store
            .commit(Commit {
                changes: vec![Change::RevokePrincipal {
                    name: name.to_owned(),
                    at: now,
                }],
                events: vec![event],
            })
            .await?;
        self.bearer.forget_principal(name);
        Ok(Principal {
            revoked_at: Some(now),
            ..existing
        })
    }

    /// Replaces a principal's attributes (admins, or the operator). The
    /// change is an audit event with the acting admin and both versions;
    /// cached authentications of the principal are dropped so the next
    /// request is decided on the new attributes.
    pub async fn set_principal_attributes(
        &self,
        operator: Operator<'_>,
        name: &str,
        mut attributes: PrincipalAttributes,
    ) -> Result<Principal, EngineError> {
        let actor = operator.authorize()?;
        let name = &canonical_name(name);
        let existing = self
            .store
            .principal(name)
            .await?
            .ok_or_else(|| EngineError::NotFound(format!("principal `{name}`")))?;
        attributes.normalize();
        attributes
            .validate(existing.kind)
            .map_err(EngineError::Invalid)?;
        let now = self.now();
        let event = AuditEvent::new(EventKind::PrincipalAttributesChanged, now, actor).with_detail(
            serde_json::json!({
                "name": name,
                "before": existing.attributes,
                "after": attributes,
            }),
        );
        self.store
            .commit(Commit {
                changes: vec![Change::SetPrincipalAttributes {
                    name: name.to_owned(),
                    attributes: attributes.clone(),
                }],
                events: vec![event],
            })
            .await?;
        self.bearer.forget_principal(name);
        Ok(Principal {
            attributes,
            ..existing
        })
    }

    /// One principal (admins, or the operator).
    pub async fn principal(
        &self,
        operator: Operator<'_>,
        name: &str,
    ) -> Result<Principal, EngineError> {
        operator.authorize()?;
        let name = &canonical_name(name);
        self.store
            .principal(name)
            .await?
            .ok_or_else(|| EngineError::NotFound(format!("principal `{name}`")))
    }

    /// All principals.
    pub async fn list_principals(
        &self,
        operator: Operator<'_>,
    ) -> Result<Vec<Principal>, EngineError> {
        operator.authorize()?;
        Ok(self.store.list_principals().await?)
    }
}
