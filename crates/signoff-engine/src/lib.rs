//! signoff's use cases. Every state change goes through [`Engine`]: it asks
//! the pure core what a change means (new state + audit events), then hands
//! both to the store in one atomic [`Commit`]. No state change without its
//! audit event; no audit event without its state change.
//!
//! The engine is also where authorization lives ([`authz`]), so every channel
//! (REST, CLI, later Slack and Teams) enforces the same role matrix.

pub mod authz;
mod error;
pub mod ledger;
pub mod principals;
mod waiters;

pub use authz::Permission;
pub use error::EngineError;
pub use principals::AUTH_CACHE_TTL;

use arc_swap::ArcSwap;
use jiff::Timestamp;
use signoff_core::wire::{OutcomeBody, PolicySetInfo, SubmitRequest};
use signoff_core::{
    ActionRequest, AuditEvent, Clock, Deadlines, Digest, EventKind, Outcome, Principal,
    PrincipalKind, RequestRecord, ReviewDecision, Reviewer,
};
use signoff_policy::{EvalInput, PolicyError, PolicySet};
use signoff_store::{Change, Commit, RequestFilter, Store, StoreError};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use waiters::Waiters;

/// How many times a use case re-reads and re-applies after losing an
/// optimistic-concurrency race before giving up.
const MAX_RETRIES: usize = 8;

/// The active policy set and where it came from.
#[derive(Debug)]
pub struct LoadedPolicies {
    /// The set.
    pub set: PolicySet,
    /// When it became active.
    pub loaded_at: Timestamp,
}

/// Engine settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Directory of `*.cedar` files, reloaded on demand.
    pub policy_dir: PathBuf,
    /// Review and claim deadlines.
    pub deadlines: Deadlines,
    /// The key that signs ledger checkpoints; without one no checkpoints are signed.
    pub ledger_key: Option<Arc<signoff_ledger::note::SigningKey>>,
}

/// The use cases of signoff over a store, a policy set and a clock.
pub struct Engine {
    store: Arc<dyn Store>,
    policies: ArcSwap<LoadedPolicies>,
    clock: Arc<dyn Clock>,
    config: EngineConfig,
    waiters: Waiters,
    deadline_changed: tokio::sync::Notify,
    auth_cache: principals::AuthCache,
    ledger_key: Option<Arc<signoff_ledger::note::SigningKey>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Whether a submission created a new request or found an earlier one with
/// the same idempotency key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Submitted {
    /// A new request was created.
    Created,
    /// The same request was submitted before with this idempotency key.
    Replayed,
}

impl Engine {
    /// Loads the policy directory and returns the engine. Fails if the
    /// policies do not load: a gateway without a valid policy must not start.
    /// The server then calls [`Engine::record_policy_active`].
    pub async fn start(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        config: EngineConfig,
    ) -> Result<Arc<Self>, EngineError> {
        let set = PolicySet::load_dir(&config.policy_dir)
            .map_err(|e| EngineError::Policy(e.to_string()))?;
        let now = clock.now();
        let engine = Arc::new(Engine {
            store,
            policies: ArcSwap::from_pointee(LoadedPolicies {
                set,
                loaded_at: now,
            }),
            clock,
            waiters: Waiters::default(),
            deadline_changed: tokio::sync::Notify::new(),
            auth_cache: principals::AuthCache::default(),
            ledger_key: config.ledger_key.clone(),
            config,
        });
        Ok(engine)
    }

    /// Records in the audit trail which policy set this instance enforces
    /// from now on (called once when serving starts).
    pub async fn record_policy_active(&self, actor: &str) -> Result<(), EngineError> {
        let event = policy_loaded_event(&self.policies.load().set, self.now(), actor);
        self.store
            .commit(Commit {
                changes: vec![],
                events: vec![event],
            })
            .await?;
        Ok(())
    }

    /// The store, for read-only helpers.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The current time by the engine's clock.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// The active policy set.
    pub fn policies(&self) -> Arc<LoadedPolicies> {
        self.policies.load_full()
    }

    /// Describes the active policy set.
    pub fn policy_info(&self) -> PolicySetInfo {
        let p = self.policies.load();
        PolicySetInfo {
            hash: p.set.hash().to_owned(),
            policy_ids: p.set.policy_ids(),
            loaded_at: p.loaded_at,
        }
    }

    /// Reloads the policy directory. On failure the old set stays active and
    /// the rejection is recorded; the error names file, line and column.
    pub async fn reload_policies(&self, actor: &str) -> Result<PolicySetInfo, EngineError> {
        let now = self.now();
        match PolicySet::load_dir(&self.config.policy_dir) {
            Ok(set) => {
                let event = policy_loaded_event(&set, now, actor);
                self.store
                    .commit(Commit {
                        changes: vec![],
                        events: vec![event],
                    })
                    .await?;
                self.policies.store(Arc::new(LoadedPolicies {
                    set,
                    loaded_at: now,
                }));
                Ok(self.policy_info())
            }
            Err(err) => {
                let event = policy_rejected_event(&err, &self.policies.load().set, now, actor);
                self.store
                    .commit(Commit {
                        changes: vec![],
                        events: vec![event],
                    })
                    .await?;
                Err(EngineError::Policy(err.to_string()))
            }
        }
    }

    /// Authenticates a bearer token. Revoked and unknown tokens look the same
    /// to the caller. Successful lookups are cached for [`AUTH_CACHE_TTL`]:
    /// a revocation on this instance takes effect at once, one made through
    /// another replica within that bound.
    pub async fn authenticate(&self, token: &str) -> Result<Principal, EngineError> {
        let hash = principals::token_hash(token);
        if let Some(p) = self.auth_cache.get(&hash) {
            return Ok(p);
        }
        match self.store.principal_by_token_hash(&hash).await? {
            Some(p) if p.is_active() => {
                self.auth_cache.put(hash, p.clone());
                Ok(p)
            }
            _ => Err(EngineError::Unauthenticated(
                "invalid or revoked token".into(),
            )),
        }
    }

    /// Submits an action request as `caller`, evaluating the policy.
    pub async fn submit(
        &self,
        caller: &Principal,
        input: SubmitRequest,
        idempotency_key: Option<String>,
    ) -> Result<(RequestRecord, Submitted), EngineError> {
        authz::require(caller, Permission::Submit)?;
        if let Some(key) = &idempotency_key {
            if key.is_empty() || key.len() > 255 {
                return Err(EngineError::Invalid(
                    "idempotency key must be 1-255 characters".into(),
                ));
            }
        }
        let gate = input.gate.unwrap_or_else(|| "api".to_owned());
        if gate.is_empty() || gate.len() > 32 {
            return Err(EngineError::Invalid("gate must be 1-32 characters".into()));
        }
        let action = ActionRequest {
            action: input.action,
            resource: input.resource,
            environment: input.environment,
            context: input.context,
            justification: input.justification,
            principal: caller.reference(),
            on_behalf_of: input.on_behalf_of,
        };
        action
            .validate()
            .map_err(|e| EngineError::Invalid(e.to_string()))?;
        if let Some(key) = &idempotency_key {
            if let Some(existing) = self.replay(caller, key, &action).await? {
                return Ok((existing, Submitted::Replayed));
            }
        }
        let verdict = self.policies.load().set.evaluate(&EvalInput {
            request: &action,
            principal_groups: &caller.groups,
            gate: &gate,
        });
        let now = self.now();
        let id = ulid::Ulid::from_datetime(
            std::time::UNIX_EPOCH + Duration::from_millis(now.as_millisecond().max(0) as u64),
        )
        .to_string();
        let owner = match caller.kind {
            PrincipalKind::Agent => caller.owner.clone(),
            PrincipalKind::User => None,
        };
        let (record, event) = RequestRecord::submit(
            signoff_core::Submission {
                id,
                action: action.clone(),
                gate: Some(gate),
                principal_owner: owner,
                verdict,
                idempotency_key: idempotency_key.clone(),
            },
            now,
            self.config.deadlines,
        );
        match self
            .store
            .commit(Commit {
                changes: vec![Change::InsertRequest(record.clone())],
                events: vec![event],
            })
            .await
        {
            Ok(_) => {}
            Err(StoreError::Duplicate(_)) if idempotency_key.is_some() => {
                // lost a race with a concurrent retry carrying the same key
                let key = idempotency_key.as_deref().unwrap_or_default();
                return match self.replay(caller, key, &action).await? {
                    Some(existing) => Ok((existing, Submitted::Replayed)),
                    None => Err(EngineError::Internal("idempotent request vanished".into())),
                };
            }
            Err(e) => return Err(e.into()),
        }
        if record.expires_at.is_some() {
            self.deadline_changed.notify_one();
        }
        Ok((record, Submitted::Created))
    }

    async fn replay(
        &self,
        caller: &Principal,
        key: &str,
        action: &ActionRequest,
    ) -> Result<Option<RequestRecord>, EngineError> {
        let principal = caller.reference().to_string();
        match self
            .store
            .request_by_idempotency_key(&principal, key)
            .await?
        {
            Some(existing) if existing.digest == action.digest() => Ok(Some(existing)),
            Some(existing) => Err(EngineError::IdempotencyMismatch {
                key: key.to_owned(),
                request_id: existing.id,
            }),
            None => Ok(None),
        }
    }

    /// A request `caller` may see. Agents see only their own; for anyone
    /// else's id they get NotFound, so ids cannot be probed.
    pub async fn get(&self, caller: &Principal, id: &str) -> Result<RequestRecord, EngineError> {
        let record = self.store.request(id).await?.ok_or_else(|| not_found(id))?;
        if authz::require(caller, Permission::ReadAll).is_err()
            && record.action.principal != caller.reference()
        {
            return Err(not_found(id));
        }
        Ok(record)
    }

    /// Requests matching `filter`; agents and non-readers see only their own.
    pub async fn list(
        &self,
        caller: &Principal,
        mut filter: RequestFilter,
    ) -> Result<Vec<RequestRecord>, EngineError> {
        if authz::require(caller, Permission::ReadAll).is_err() {
            filter.principal = Some(caller.reference().to_string());
        }
        Ok(self.store.list_requests(&filter).await?)
    }

    /// Waits until the request is no longer pending — or, with
    /// `since_version`, until it differs from that version (each review
    /// counts) — or `timeout` passes, and returns it as it then is. Wakes on
    /// the commit itself, not by polling.
    pub async fn wait(
        &self,
        caller: &Principal,
        id: &str,
        since_version: Option<i64>,
        timeout: Duration,
    ) -> Result<RequestRecord, EngineError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let subscription = self.waiters.subscribe(id);
            let notified = subscription.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let record = self.get(caller, id).await?;
            if record.status != signoff_core::RequestStatus::Pending
                || since_version.is_some_and(|v| record.version != v)
            {
                return Ok(record);
            }
            // A pending request past its deadline is expired now, even if
            // the sweeper has not reached it yet.
            if record.expires_at.is_some_and(|at| at <= self.now()) {
                self.expire_one(id).await?;
                continue;
            }
            let until_expiry = record
                .expires_at
                .map(|at| {
                    Duration::from_millis(
                        (at.as_millisecond() - self.now().as_millisecond()).max(0) as u64 + 1,
                    )
                })
                .unwrap_or(timeout);
            let wake = deadline.min(tokio::time::Instant::now() + until_expiry);
            if tokio::time::timeout_at(wake, notified).await.is_err()
                && tokio::time::Instant::now() >= deadline
            {
                return self.get(caller, id).await;
            }
        }
    }

    /// Records `reviewer`'s approval or denial. Refused attempts are recorded
    /// too, and returned as [`EngineError::ReviewRefused`].
    pub async fn review(
        &self,
        reviewer: &Principal,
        id: &str,
        decision: ReviewDecision,
        reason: Option<String>,
    ) -> Result<RequestRecord, EngineError> {
        if decision == ReviewDecision::Deny && reason.as_deref().is_none_or(|r| r.trim().is_empty())
        {
            return Err(EngineError::Invalid("a reason is required to deny".into()));
        }
        if reason.as_ref().is_some_and(|r| r.len() > 4096) {
            return Err(EngineError::Invalid(
                "reason must be at most 4096 characters".into(),
            ));
        }
        let who = Reviewer {
            name: reviewer.name.clone(),
            kind: reviewer.kind,
            role: reviewer.role,
            groups: reviewer.groups.clone(),
        };
        self.transition(id, |record, now, deadlines| {
            let mut events = record.expire_if_due(now);
            match record.review(&who, decision, reason.clone(), now, deadlines) {
                Ok(more) => {
                    events.extend(more);
                    Ok(events)
                }
                Err((refusal, event)) => {
                    events.push(*event);
                    Err((EngineError::ReviewRefused(refusal), events))
                }
            }
        })
        .await
    }

    /// Withdraws a pending or approved request (requester or admin).
    pub async fn cancel(
        &self,
        caller: &Principal,
        id: &str,
        reason: Option<String>,
    ) -> Result<RequestRecord, EngineError> {
        // existence check that does not leak other agents' ids
        self.get(caller, id).await?;
        let by = caller.reference();
        let is_admin = caller.role == signoff_core::Role::Admin;
        self.transition(id, |record, now, _| {
            let mut events = record.expire_if_due(now);
            match record.cancel(&by, is_admin, reason.clone(), now) {
                Ok(more) => {
                    events.extend(more);
                    Ok(events)
                }
                Err(refusal) => Err((EngineError::Transition(refusal), events)),
            }
        })
        .await
    }

    /// Claims an approval for the action with `digest`, right before it
    /// runs. The policy is evaluated again; the claim is single-use.
    pub async fn claim(
        &self,
        caller: &Principal,
        id: &str,
        digest: &Digest,
    ) -> Result<RequestRecord, EngineError> {
        self.get(caller, id).await?;
        let by = caller.reference();
        let groups = caller.groups.clone();
        let policies = self.policies.load_full();
        self.transition(id, |record, now, deadlines| {
            let gate = record.gate.clone().unwrap_or_else(|| "api".into());
            let recheck = policies.set.evaluate(&EvalInput {
                request: &record.action,
                principal_groups: &groups,
                gate: &gate,
            });
            record
                .claim(&by, digest, recheck, now, deadlines)
                .map_err(|(refusal, events)| (EngineError::ClaimRefused(refusal), events))
        })
        .await
    }

    /// Records what happened when the claimed action ran.
    pub async fn record_outcome(
        &self,
        caller: &Principal,
        id: &str,
        body: OutcomeBody,
    ) -> Result<RequestRecord, EngineError> {
        if body.summary.as_ref().is_some_and(|s| s.len() > 1000) {
            return Err(EngineError::Invalid(
                "summary must be at most 1000 characters".into(),
            ));
        }
        if let Some(h) = &body.output_sha256 {
            if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(EngineError::Invalid(format!(
                    "output_sha256 `{h}` is not 64 hex digits"
                )));
            }
        }
        self.get(caller, id).await?;
        let by = caller.reference();
        self.transition(id, |record, now, _| {
            let outcome = Outcome {
                exit_code: body.exit_code,
                signal: body.signal,
                duration_ms: body.duration_ms,
                output_sha256: body.output_sha256.clone(),
                summary: body.summary.clone(),
                reported_at: now,
            };
            record
                .record_outcome(&by, outcome)
                .map_err(|r| (EngineError::Transition(r), Vec::new()))
        })
        .await
    }

    /// Read-modify-write of one request with optimistic concurrency: `apply`
    /// mutates the record and returns its events, or an error plus the events
    /// that record the refused attempt (and possibly a changed record).
    async fn transition<F>(&self, id: &str, apply: F) -> Result<RequestRecord, EngineError>
    where
        F: Fn(
            &mut RequestRecord,
            Timestamp,
            Deadlines,
        ) -> Result<Vec<AuditEvent>, (EngineError, Vec<AuditEvent>)>,
    {
        for _ in 0..MAX_RETRIES {
            let before = self.store.request(id).await?.ok_or_else(|| not_found(id))?;
            let mut record = before.clone();
            let now = self.now();
            let (result, events) = match apply(&mut record, now, self.config.deadlines) {
                Ok(events) => (Ok(()), events),
                Err((err, events)) => (Err(err), events),
            };
            let changed = record != before;
            let mut changes = Vec::new();
            if changed {
                changes.push(Change::UpdateRequest(record.clone()));
            }
            if !changes.is_empty() || !events.is_empty() {
                match self.store.commit(Commit { changes, events }).await {
                    Ok(_) => {}
                    Err(StoreError::Conflict(_)) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
            if changed {
                record.version += 1;
                self.waiters.notify(id);
                self.deadline_changed.notify_one();
            }
            return result.map(|()| record);
        }
        Err(EngineError::Busy(format!(
            "request {id} is being changed concurrently; retry"
        )))
    }

    /// Expires or lapses one request if its deadline has passed.
    async fn expire_one(&self, id: &str) -> Result<(), EngineError> {
        self.transition(id, |record, now, _| Ok(record.expire_if_due(now)))
            .await
            .map(|_| ())
    }

    /// Expires every request whose deadline has passed; returns how many.
    pub async fn expire_due(&self) -> Result<usize, EngineError> {
        let mut total = 0;
        loop {
            let due = self.store.due_requests(self.now(), 100).await?;
            if due.is_empty() {
                return Ok(total);
            }
            let n = due.len();
            for record in due {
                self.expire_one(&record.id).await?;
            }
            total += n;
            if n < 100 {
                return Ok(total);
            }
        }
    }

    /// Runs the expiry sweeper until `shutdown` resolves: sleeps until the
    /// next deadline (or until a new one appears) so requests expire on
    /// time even when nobody asks about them.
    pub async fn run_expiry(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            if let Err(e) = self.expire_due().await {
                tracing::warn!(error = %e, "expiry sweep failed; retrying");
            }
            let sleep_for = match self.store.next_deadline().await {
                Ok(Some(at)) => Duration::from_millis(
                    (at.as_millisecond() - self.now().as_millisecond()).clamp(0, 60_000) as u64,
                ),
                Ok(None) => Duration::from_secs(60),
                Err(_) => Duration::from_secs(1),
            };
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(sleep_for) => {}
                _ = self.deadline_changed.notified() => {}
            }
        }
    }

    /// Audit events from index `from`, for auditors.
    pub async fn events(
        &self,
        caller: &Principal,
        from: u64,
        limit: usize,
    ) -> Result<Vec<AuditEvent>, EngineError> {
        authz::require(caller, Permission::ReadAudit)?;
        Ok(self.store.events(from, limit.clamp(1, 1000)).await?)
    }

    /// Whether the database answers.
    pub async fn ready(&self) -> Result<(), EngineError> {
        Ok(self.store.ping().await?)
    }
}

fn not_found(id: &str) -> EngineError {
    EngineError::NotFound(format!("request `{id}`"))
}

fn policy_loaded_event(set: &PolicySet, now: Timestamp, actor: &str) -> AuditEvent {
    let mut e = AuditEvent::new(EventKind::PolicySetLoaded, now, actor);
    e.policy_set_hash = Some(set.hash().to_owned());
    e.policy_ids = set.policy_ids();
    e
}

fn policy_rejected_event(
    err: &PolicyError,
    active: &PolicySet,
    now: Timestamp,
    actor: &str,
) -> AuditEvent {
    let mut e =
        AuditEvent::new(EventKind::PolicySetRejected, now, actor).with_reason(err.to_string());
    e.policy_set_hash = Some(active.hash().to_owned());
    e
}
