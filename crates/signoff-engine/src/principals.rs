//! Principal management: tokens are random, shown once, stored as SHA-256.

use crate::{authz, Engine, EngineError, Permission};
use base64::Engine as _;
use rand::RngCore;
use sha2::{Digest, Sha256};
use signoff_core::principal::validate_name;
use signoff_core::wire::NewPrincipal;
use signoff_core::{AuditEvent, EventKind, Principal, PrincipalKind, Role};
use signoff_store::{Change, Commit};

/// Prefix that makes signoff tokens recognisable to secret scanners.
const TOKEN_PREFIX: &str = "so_";

/// How long a successful token lookup is trusted without asking the database.
pub const AUTH_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(2);

/// Most entries the token cache holds before it starts over.
const AUTH_CACHE_MAX: usize = 10_000;

/// Recently authenticated principals by token hash.
#[derive(Default)]
pub(crate) struct AuthCache {
    entries: std::sync::Mutex<std::collections::HashMap<String, (Principal, std::time::Instant)>>,
}

impl AuthCache {
    pub(crate) fn get(&self, hash: &str) -> Option<Principal> {
        let map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        map.get(hash)
            .filter(|(_, at)| at.elapsed() < AUTH_CACHE_TTL)
            .map(|(p, _)| p.clone())
    }

    pub(crate) fn put(&self, hash: String, principal: Principal) {
        let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= AUTH_CACHE_MAX {
            map.clear();
        }
        map.insert(hash, (principal, std::time::Instant::now()));
    }

    pub(crate) fn forget(&self, name: &str) {
        let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, (p, _)| p.name != name);
    }
}

/// Hex SHA-256 of a bearer token, as stored.
pub(crate) fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// Who is managing principals: an authenticated admin, or the operator at
/// the console (`signoff principal …` with direct database access).
#[derive(Debug, Clone, Copy)]
pub enum Operator<'a> {
    /// An admin over the API.
    Admin(&'a Principal),
    /// The local operator with the config file.
    Console,
}

impl Operator<'_> {
    fn authorize(&self) -> Result<String, EngineError> {
        match self {
            Operator::Admin(p) => {
                authz::require(p, Permission::ManagePrincipals)?;
                Ok(p.reference().to_string())
            }
            Operator::Console => Ok("console".to_owned()),
        }
    }
}

impl Engine {
    /// Adds a principal and returns it with its new bearer token.
    pub async fn add_principal(
        &self,
        operator: Operator<'_>,
        new: NewPrincipal,
    ) -> Result<(Principal, String), EngineError> {
        let actor = operator.authorize()?;
        validate_name("principal name", &new.name).map_err(EngineError::Invalid)?;
        for g in &new.groups {
            validate_name("group", g).map_err(EngineError::Invalid)?;
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
        if let Some(owner) = &new.owner {
            validate_name("owner", owner).map_err(EngineError::Invalid)?;
        }
        if let Some(email) = &new.email {
            if !email.contains('@') || email.len() > 254 || email.chars().any(char::is_whitespace) {
                return Err(EngineError::Invalid(format!("invalid email `{email}`")));
            }
        }
        let mut groups = new.groups;
        groups.sort();
        groups.dedup();
        let now = self.now();
        let principal = Principal {
            name: new.name,
            kind: new.kind,
            role,
            email: new.email,
            groups,
            owner: new.owner,
            created_at: now,
            revoked_at: None,
        };
        let token = new_token();
        let event =
            AuditEvent::new(EventKind::PrincipalAdded, now, actor).with_detail(serde_json::json!({
                "name": principal.name,
                "kind": principal.kind,
                "role": principal.role,
                "groups": principal.groups,
                "owner": principal.owner,
                "email": principal.email,
            }));
        self.store
            .commit(Commit {
                changes: vec![Change::InsertPrincipal {
                    principal: principal.clone(),
                    token_hash: token_hash(&token),
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
        Ok((principal, token))
    }

    /// Revokes a principal's token; it can no longer authenticate.
    pub async fn revoke_principal(
        &self,
        operator: Operator<'_>,
        name: &str,
    ) -> Result<Principal, EngineError> {
        let actor = operator.authorize()?;
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
        self.auth_cache.forget(name);
        Ok(Principal {
            revoked_at: Some(now),
            ..existing
        })
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
