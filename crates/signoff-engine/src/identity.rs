//! Who is calling: the [`Caller`] every use case takes, the
//! [`Authenticator`] seam that turns something presented (a bearer token
//! today; an OIDC session, a workload JWT or a signed chat callback later)
//! into one, and the credentials and linked identities of principals.
//!
//! A principal is what policies and separation of duties reason about; it
//! may hold several credentials (named, expiring, revocable, optionally
//! bound to one gate) and several linked external identities. Names are
//! canonical (see [`signoff_core::canonical_name`]).

use crate::principals::{token_hash, Operator};
use crate::{authz, Engine, EngineError, Permission};
use jiff::Timestamp;
use signoff_core::{
    canonical_name, AuditEvent, Channel, Credential, EventKind, Identity, Principal,
};
use signoff_store::{Change, Commit, StoreError};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a successful token lookup is trusted without asking the
/// database: a revocation through this replica takes effect at once, one
/// through another replica within this bound.
pub const AUTH_CACHE_TTL: Duration = Duration::from_secs(2);

/// Most entries the token cache holds before it starts over.
const AUTH_CACHE_MAX: usize = 10_000;

/// How stale a credential's recorded last use may get.
pub const LAST_USED_GRANULARITY: Duration = Duration::from_secs(60);

/// The credential a caller authenticated with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialRef {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// The gate it is bound to, if any.
    pub gate: Option<String>,
    /// When it stops working.
    pub expires_at: Option<Timestamp>,
}

/// The authenticated caller of a use case: the principal, the credential it
/// presented and the channel it came through. Only an [`Authenticator`] (or
/// the composition root, for the console operator and tests) makes one.
#[derive(Debug, Clone)]
pub struct Caller {
    principal: Principal,
    credential: Option<CredentialRef>,
    channel: Channel,
    created_by: Option<String>,
}

impl std::ops::Deref for Caller {
    type Target = Principal;
    fn deref(&self) -> &Principal {
        &self.principal
    }
}

impl Caller {
    /// A caller whose identity was established out of band: the operator at
    /// the console, an embedded use, a test. Servers must not use this for
    /// anything a remote party presented.
    pub fn trusted(principal: Principal, channel: Channel) -> Caller {
        Caller {
            principal,
            credential: None,
            channel,
            created_by: None,
        }
    }

    /// An authenticated caller (for [`Authenticator`] implementations).
    pub fn authenticated(
        principal: Principal,
        credential: Option<CredentialRef>,
        channel: Channel,
    ) -> Caller {
        Caller {
            principal,
            credential,
            channel,
            created_by: None,
        }
    }

    /// Records who created the caller's principal (an event actor such as
    /// `user:carol`), as the store knows it. Requests of an agent carry
    /// it: its creator is tied to it like its owner.
    pub fn with_creator(mut self, created_by: Option<String>) -> Caller {
        self.created_by = created_by;
        self
    }

    /// Who created the caller's principal, when known.
    pub fn created_by(&self) -> Option<&str> {
        self.created_by.as_deref()
    }

    /// The principal.
    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// The credential it presented, if it presented one.
    pub fn credential(&self) -> Option<&CredentialRef> {
        self.credential.as_ref()
    }

    /// The channel it came through.
    pub fn channel(&self) -> Channel {
        self.channel
    }

    /// The gate its credential is bound to.
    pub fn bound_gate(&self) -> Option<&str> {
        self.credential.as_ref().and_then(|c| c.gate.as_deref())
    }

    /// Applies the channel a client declares (the CLI says `cli`). A token
    /// can only say whether it is the CLI or a plain API client: web,
    /// Slack and Teams are established by their own authenticators, never
    /// claimed.
    pub fn declare_channel(mut self, declared: Channel) -> Result<Caller, EngineError> {
        match (self.channel, declared) {
            (Channel::Api | Channel::Cli, Channel::Api | Channel::Cli) => {
                self.channel = declared;
                Ok(self)
            }
            (current, _) if current == declared => Ok(self),
            (current, _) => Err(EngineError::Invalid(format!(
                "channel `{declared}` cannot be declared by a caller authenticated through {current}"
            ))),
        }
    }
}

/// What a caller presented to prove who it is.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum Presented<'a> {
    /// `Authorization: Bearer TOKEN`.
    Bearer(&'a str),
}

/// Turns something presented into a [`Caller`]. The engine asks each
/// registered authenticator in turn; the first that recognises the
/// presentation decides.
#[async_trait::async_trait]
pub trait Authenticator: Send + Sync + 'static {
    /// A short name for logs and `/readyz`.
    fn name(&self) -> &'static str;
    /// `None` if this authenticator does not handle `presented`; otherwise
    /// the caller, or why it is refused.
    async fn authenticate(
        &self,
        engine: &Engine,
        presented: &Presented<'_>,
    ) -> Option<Result<Caller, EngineError>>;
}

/// Bearer tokens issued by signoff (`so_…`), stored as SHA-256.
#[derive(Default)]
pub struct BearerTokens {
    cache: Mutex<HashMap<String, (Caller, Instant)>>,
}

impl BearerTokens {
    pub(crate) fn forget_principal(&self, name: &str) {
        let mut map = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, (c, _)| c.name != name);
    }

    pub(crate) fn forget_credential(&self, id: &str) {
        let mut map = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, (c, _)| c.credential.as_ref().is_none_or(|cr| cr.id != id));
    }
}

#[async_trait::async_trait]
impl Authenticator for BearerTokens {
    fn name(&self) -> &'static str {
        "bearer"
    }

    async fn authenticate(
        &self,
        engine: &Engine,
        presented: &Presented<'_>,
    ) -> Option<Result<Caller, EngineError>> {
        let Presented::Bearer(token) = presented;
        let hash = token_hash(token);
        let now = engine.now();
        let refused = || EngineError::Unauthenticated("invalid, expired or revoked token".into());
        let cached = {
            let map = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            map.get(&hash)
                .filter(|(_, at)| at.elapsed() < AUTH_CACHE_TTL)
                .map(|(c, _)| c.clone())
        };
        if let Some(caller) = cached {
            // expiry is checked on every use, cached or not
            if caller
                .credential
                .as_ref()
                .and_then(|c| c.expires_at)
                .is_some_and(|at| at <= now)
            {
                return Some(Err(refused()));
            }
            engine.usage.touch(&caller, now);
            return Some(Ok(caller));
        }
        let found = match engine.store.credential_by_token_hash(&hash).await {
            Ok(found) => found,
            Err(e) => return Some(Err(e.into())),
        };
        let Some((principal, credential)) = found else {
            return Some(Err(refused()));
        };
        if !principal.is_active() || !credential.is_valid_at(now) {
            return Some(Err(refused()));
        }
        let provenance = match engine.store.provenance(&principal.name, None).await {
            Ok(p) => p,
            Err(e) => return Some(Err(e.into())),
        };
        let caller = Caller::authenticated(
            principal,
            Some(CredentialRef {
                id: credential.id,
                name: credential.name,
                gate: credential.gate,
                expires_at: credential.expires_at,
            }),
            Channel::Api,
        )
        .with_creator(provenance.account_created_by);
        {
            let mut map = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if map.len() >= AUTH_CACHE_MAX {
                map.clear();
            }
            map.insert(hash, (caller.clone(), Instant::now()));
        }
        engine.usage.touch(&caller, now);
        Some(Ok(caller))
    }
}

/// Last-use times waiting to be written, at most one write per credential
/// per [`LAST_USED_GRANULARITY`], off the request path.
#[derive(Default)]
pub(crate) struct UsageTracker {
    state: Mutex<UsageState>,
}

#[derive(Default)]
struct UsageState {
    pending: HashMap<String, Timestamp>,
    written: HashMap<String, Instant>,
}

impl UsageTracker {
    fn touch(&self, caller: &Caller, now: Timestamp) {
        let Some(cr) = &caller.credential else { return };
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.written
            .get(&cr.id)
            .is_some_and(|at| at.elapsed() < LAST_USED_GRANULARITY)
        {
            return;
        }
        s.pending.insert(cr.id.clone(), now);
    }

    /// Takes what is waiting to be written.
    pub(crate) fn drain(&self) -> Vec<(String, Timestamp)> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let taken: Vec<(String, Timestamp)> = s.pending.drain().collect();
        let now = Instant::now();
        if s.written.len() > AUTH_CACHE_MAX {
            s.written.clear();
        }
        for (id, _) in &taken {
            s.written.insert(id.clone(), now);
        }
        taken
    }
}

/// A new credential as an admin asks for it.
#[derive(Debug, Clone, Default)]
pub struct NewCredential {
    /// Unique per principal.
    pub name: String,
    /// Bind it to one gate (`exec`, `mcp`, `http`, `postgres`, `api`).
    pub gate: Option<String>,
    /// How long it works.
    pub expires_in: Option<jiff::SignedDuration>,
}

/// Checks a gate name: 1–32 lowercase letters, digits, `-` or `_`.
pub fn validate_gate(gate: &str) -> Result<(), EngineError> {
    let ok = !gate.is_empty()
        && gate.len() <= 32
        && gate
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(EngineError::Invalid(format!(
            "invalid gate `{gate}`: use 1-32 lowercase letters, digits, '-' or '_'"
        )))
    }
}

pub(crate) fn new_credential_id(now: Timestamp) -> String {
    let at = std::time::UNIX_EPOCH
        + Duration::from_millis(u64::try_from(now.as_millisecond()).unwrap_or(0));
    format!("cr_{}", ulid::Ulid::from_datetime(at))
}

impl Engine {
    /// Authenticates what a caller presented, asking each authenticator.
    pub async fn authenticate(&self, presented: Presented<'_>) -> Result<Caller, EngineError> {
        let authenticators = self.authenticators.load_full();
        for a in authenticators.iter() {
            if let Some(result) = a.authenticate(self, &presented).await {
                return result;
            }
        }
        Err(EngineError::Unauthenticated(
            "no authenticator accepts these credentials".into(),
        ))
    }

    /// Adds an authenticator, asked before the bearer-token one (e.g. OIDC
    /// sessions, workload JWTs, chat callbacks).
    pub fn register_authenticator(&self, authenticator: std::sync::Arc<dyn Authenticator>) {
        let mut list: Vec<_> = self.authenticators.load().iter().cloned().collect();
        list.insert(0, authenticator);
        self.authenticators.store(std::sync::Arc::new(list));
    }

    /// Issues another credential to `principal`; returns it with its token
    /// (shown once).
    pub async fn add_credential(
        &self,
        operator: Operator<'_>,
        principal: &str,
        new: NewCredential,
    ) -> Result<(Credential, String), EngineError> {
        let actor = operator.authorize()?;
        let principal = canonical_name(principal);
        let owner = self
            .store
            .principal(&principal)
            .await?
            .ok_or_else(|| EngineError::NotFound(format!("principal `{principal}`")))?;
        if !owner.is_active() {
            return Err(EngineError::Invalid(format!(
                "principal `{principal}` is revoked; it cannot get new credentials"
            )));
        }
        signoff_core::principal::validate_name("credential name", &new.name)
            .map_err(EngineError::Invalid)?;
        if let Some(g) = &new.gate {
            validate_gate(g)?;
        }
        let now = self.now();
        let expires_at = match new.expires_in {
            None => None,
            Some(d) if d.is_positive() => Some(now.checked_add(d).map_err(|e| {
                EngineError::Invalid(format!("credential expiry out of range: {e}"))
            })?),
            Some(_) => {
                return Err(EngineError::Invalid(
                    "credential expiry must be in the future".into(),
                ))
            }
        };
        let credential = Credential {
            id: new_credential_id(now),
            principal: principal.clone(),
            name: new.name,
            gate: new.gate,
            created_at: now,
            expires_at,
            revoked_at: None,
            last_used_at: None,
        };
        let token = crate::principals::new_token();
        let event = AuditEvent::new(EventKind::CredentialIssued, now, actor.clone()).with_detail(
            serde_json::json!({
                "principal": principal,
                "credential": credential.id,
                "name": credential.name,
                "gate": credential.gate,
                "expires_at": credential.expires_at,
            }),
        );
        self.store
            .commit(Commit {
                changes: vec![Change::InsertCredential {
                    credential: credential.clone(),
                    token_hash: token_hash(&token),
                    created_by: Some(actor),
                }],
                events: vec![event],
            })
            .await?;
        Ok((credential, token))
    }

    /// Revokes one credential; the principal's other credentials keep working.
    pub async fn revoke_credential(
        &self,
        operator: Operator<'_>,
        principal: &str,
        id: &str,
    ) -> Result<Credential, EngineError> {
        let actor = operator.authorize()?;
        let principal = canonical_name(principal);
        let existing = self
            .store
            .credentials(&principal)
            .await?
            .into_iter()
            .find(|c| c.id == id || c.name == id)
            .ok_or_else(|| {
                EngineError::NotFound(format!("credential `{id}` of principal `{principal}`"))
            })?;
        if existing.revoked_at.is_some() {
            return Err(EngineError::Invalid(format!(
                "credential `{}` is already revoked",
                existing.name
            )));
        }
        let now = self.now();
        let event = AuditEvent::new(EventKind::CredentialRevoked, now, actor).with_detail(
            serde_json::json!({
                "principal": principal,
                "credential": existing.id,
                "name": existing.name,
            }),
        );
        self.store
            .commit(Commit {
                changes: vec![Change::RevokeCredential {
                    id: existing.id.clone(),
                    at: now,
                }],
                events: vec![event],
            })
            .await?;
        self.bearer.forget_credential(&existing.id);
        Ok(Credential {
            revoked_at: Some(now),
            ..existing
        })
    }

    /// A principal's credentials (secrets are never stored, so never shown).
    pub async fn list_credentials(
        &self,
        operator: Operator<'_>,
        principal: &str,
    ) -> Result<Vec<Credential>, EngineError> {
        operator.authorize()?;
        let principal = canonical_name(principal);
        if self.store.principal(&principal).await?.is_none() {
            return Err(EngineError::NotFound(format!("principal `{principal}`")));
        }
        Ok(self.store.credentials(&principal).await?)
    }

    /// Links an external identity (OIDC issuer + subject, Slack or Teams
    /// user) to a principal, recording how it was verified.
    pub async fn link_identity(
        &self,
        operator: Operator<'_>,
        principal: &str,
        issuer: &str,
        subject: &str,
        verified_by: &str,
    ) -> Result<Identity, EngineError> {
        let actor = operator.authorize()?;
        let principal = canonical_name(principal);
        let target = self
            .store
            .principal(&principal)
            .await?
            .ok_or_else(|| EngineError::NotFound(format!("principal `{principal}`")))?;
        if target.kind != signoff_core::PrincipalKind::User {
            return Err(EngineError::Invalid(format!(
                "`{principal}` is an agent; only users have external identities"
            )));
        }
        for (what, v, max) in [
            ("issuer", issuer, 512),
            ("subject", subject, 255),
            ("verified_by", verified_by, 64),
        ] {
            if v.trim().is_empty() || v.len() > max || v.chars().any(char::is_control) {
                return Err(EngineError::Invalid(format!(
                    "{what} must be 1-{max} printable characters"
                )));
            }
        }
        let now = self.now();
        let identity = Identity {
            issuer: issuer.to_owned(),
            subject: subject.to_owned(),
            principal: principal.clone(),
            verified_by: verified_by.to_owned(),
            linked_by: actor.clone(),
            linked_at: now,
        };
        let event =
            AuditEvent::new(EventKind::IdentityLinked, now, actor).with_detail(serde_json::json!({
                "principal": principal,
                "issuer": issuer,
                "subject": subject,
                "verified_by": verified_by,
            }));
        self.store
            .commit(Commit {
                changes: vec![Change::LinkIdentity(identity.clone())],
                events: vec![event],
            })
            .await
            .map_err(|e| match e {
                StoreError::Duplicate(_) => EngineError::Duplicate(format!(
                    "a link for issuer `{issuer}` and subject `{subject}`"
                )),
                other => other.into(),
            })?;
        Ok(identity)
    }

    /// A principal's linked identities.
    pub async fn list_identities(
        &self,
        operator: Operator<'_>,
        principal: &str,
    ) -> Result<Vec<Identity>, EngineError> {
        operator.authorize()?;
        Ok(self.store.identities(&canonical_name(principal)).await?)
    }

    /// The active principal an external identity is linked to, for
    /// channel authenticators (a Slack click, an OIDC login).
    pub async fn principal_for_identity(
        &self,
        issuer: &str,
        subject: &str,
    ) -> Result<Option<Principal>, EngineError> {
        let Some(identity) = self.store.identity(issuer, subject).await? else {
            return Ok(None);
        };
        Ok(self
            .store
            .principal(&identity.principal)
            .await?
            .filter(Principal::is_active))
    }

    /// Writes pending last-use times (the usage component calls it).
    pub async fn flush_credential_usage(&self) -> Result<usize, EngineError> {
        let touched = self.usage.drain();
        let n = touched.len();
        if n > 0 {
            self.store
                .commit(Commit {
                    changes: vec![Change::TouchCredentials(touched)],
                    events: vec![],
                })
                .await?;
        }
        Ok(n)
    }
}

/// Makes sure `caller` may read the audit trail (used by the ledger API).
pub(crate) fn require_auditor(caller: &Caller) -> Result<(), EngineError> {
    authz::require(caller, Permission::ReadAudit)
}
