//! signoff's use cases. Every state change goes through [`Engine`]: it asks
//! the pure core what a change means (new state + audit events), then hands
//! both to the store in one atomic [`Commit`]. No state change without its
//! audit event; no audit event without its state change.
//!
//! The engine is the one permission boundary: every use case takes the
//! authenticated [`Caller`] and checks the role matrix ([`authz`]) itself,
//! and nothing outside the engine can reach the store. So every channel
//! (REST, CLI, later Slack and Teams) enforces the same rules.
//!
//! The seams later capabilities plug into: the [`stream`] of committed
//! events with durable cursors, the [`identity`] model (credentials,
//! linked identities, the [`Authenticator`] seam), [`components`] with one
//! lifecycle, and the policy set shared by every replica ([`replication`]).

pub mod audit;
pub mod authz;
pub mod components;
mod error;
mod expiry;
pub mod identity;
pub mod ledger;
pub mod oplog;
pub mod principals;
pub mod replication;
pub mod stream;
mod waiters;
pub mod witness;

pub use authz::Permission;
pub use error::EngineError;
pub use identity::{Authenticator, Caller, Presented, AUTH_CACHE_TTL};
pub use signoff_core::RequestFilter;

use arc_swap::ArcSwap;
use jiff::Timestamp;
use signoff_core::wire::{OutcomeBody, PolicySetInfo, SubmitRequest};
use signoff_core::{
    ActionRequest, AuditEvent, Clock, Deadlines, Digest, EventKind, Outcome, PrincipalKind,
    RequestRecord, RequestStatus, ReviewDecision, Reviewer,
};
use signoff_policy::{EvalInput, PolicyError, PolicySet};
use signoff_store::{Change, Commit, Store, StoreError};
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
    /// Where the last checkpoint signed here is kept, outside the database
    /// (see [`witness`]); without one the log is trusted as it is.
    pub witness_file: Option<witness::WitnessFile>,
}

/// The use cases of signoff over a store, a policy set and a clock.
pub struct Engine {
    store: Arc<dyn Store>,
    policies: ArcSwap<LoadedPolicies>,
    clock: Arc<dyn Clock>,
    config: EngineConfig,
    waiters: Waiters,
    deadlines: waiters::DeadlineAlarm,
    bearer: Arc<identity::BearerTokens>,
    authenticators: ArcSwap<Vec<Arc<dyn Authenticator>>>,
    usage: identity::UsageTracker,
    health: components::HealthBoard,
    /// Findings of the latest ledger self-check (see `audit::SelfCheck`).
    selfcheck_findings: std::sync::atomic::AtomicU64,
    ledger_key: Option<Arc<signoff_ledger::note::SigningKey>>,
    hidden_probes: std::sync::atomic::AtomicU64,
    witness: witness::WitnessState,
    signed: tokio::sync::watch::Sender<Option<signoff_store::StoredCheckpoint>>,
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
        let bearer = Arc::new(identity::BearerTokens::default());
        let authenticators: Vec<Arc<dyn Authenticator>> = vec![bearer.clone()];
        let engine = Arc::new(Engine {
            store,
            policies: ArcSwap::from_pointee(LoadedPolicies {
                set,
                loaded_at: now,
            }),
            clock,
            waiters: Waiters::default(),
            deadlines: waiters::DeadlineAlarm::default(),
            bearer,
            authenticators: ArcSwap::from_pointee(authenticators),
            usage: identity::UsageTracker::default(),
            health: components::HealthBoard::default(),
            selfcheck_findings: std::sync::atomic::AtomicU64::new(0),
            ledger_key: config.ledger_key.clone(),
            hidden_probes: std::sync::atomic::AtomicU64::new(0),
            witness: witness::WitnessState::new(config.witness_file.clone()),
            signed: tokio::sync::watch::Sender::new(None),
            config,
        });
        Ok(engine)
    }

    /// Makes the policy set this instance loaded the active one for every
    /// replica and records it in the audit trail (called once when serving
    /// starts; a restarted replica's files win, as a reload would).
    pub async fn record_policy_active(&self, actor: &str) -> Result<(), EngineError> {
        let set = self.policies.load().set.clone();
        self.activate(&set, self.now(), actor).await
    }

    /// Stores `set` as the active one and records the event, atomically.
    async fn activate(
        &self,
        set: &PolicySet,
        now: Timestamp,
        actor: &str,
    ) -> Result<(), EngineError> {
        let files = serde_json::to_string(set.sources())
            .map_err(|e| EngineError::Internal(format!("cannot serialize policy sources: {e}")))?;
        let event = policy_loaded_event(set, now, actor);
        self.store
            .commit(Commit {
                changes: vec![Change::ActivatePolicySet(signoff_store::StoredPolicySet {
                    hash: set.hash().to_owned(),
                    files,
                    activated_at: now,
                })],
                events: vec![event],
            })
            .await?;
        Ok(())
    }

    /// Whether other replicas share the database (see
    /// [`signoff_store::Store::is_shared`]); decides which components run.
    pub fn store_is_shared(&self) -> bool {
        self.store.is_shared()
    }

    /// Number of requests per status, for `/metrics`.
    pub async fn status_counts(&self) -> Result<Vec<(RequestStatus, u64)>, EngineError> {
        Ok(self.store.count_by_status().await?)
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
            catalog_entries: p.set.catalog_len(),
            warnings: p.set.warnings().iter().map(ToString::to_string).collect(),
        }
    }

    /// Reloads the policy directory (admins, or the operator on SIGHUP) and
    /// makes it the active set of every replica. On failure the old set
    /// stays active and the rejection is recorded; the error names file,
    /// line and column.
    pub async fn reload_policies(
        &self,
        operator: principals::Operator<'_>,
    ) -> Result<PolicySetInfo, EngineError> {
        let actor = match operator {
            principals::Operator::Caller(caller) => {
                authz::require(caller, Permission::ManagePolicy)?;
                caller.reference().to_string()
            }
            principals::Operator::Console => "system:reload".to_owned(),
        };
        let actor = actor.as_str();
        let now = self.now();
        match PolicySet::load_dir(&self.config.policy_dir) {
            Ok(set) => {
                for w in set.warnings() {
                    tracing::warn!("policy set: {w}");
                }
                self.activate(&set, now, actor).await?;
                self.policies.store(Arc::new(LoadedPolicies {
                    set,
                    loaded_at: now,
                }));
                let info = self.policy_info();
                tracing::info!(
                    target: oplog::TARGET,
                    event = EventKind::PolicySetLoaded.as_str(),
                    actor,
                    policy_set = info.hash.get(..12).unwrap_or(&info.hash),
                    policies = info.policy_ids.len(),
                    catalog_entries = info.catalog_entries,
                    "policy set reloaded"
                );
                Ok(info)
            }
            Err(err) => {
                let event = policy_rejected_event(&err, &self.policies.load().set, now, actor);
                self.store
                    .commit(Commit {
                        changes: vec![],
                        events: vec![event],
                    })
                    .await?;
                let error = err.to_string();
                tracing::warn!(
                    target: oplog::TARGET,
                    event = EventKind::PolicySetRejected.as_str(),
                    actor,
                    error = signoff_core::display::one_line(&error).as_str(),
                    "policy set rejected; the previous set stays active"
                );
                Err(EngineError::Policy(error))
            }
        }
    }

    /// Submits an action request as `caller`, evaluating the policy.
    pub async fn submit(
        &self,
        caller: &Caller,
        input: SubmitRequest,
        idempotency_key: Option<String>,
    ) -> Result<(RequestRecord, Submitted), EngineError> {
        authz::require(caller, Permission::Submit)?;
        self.require_trusted_ledger().await?;
        if let Some(key) = &idempotency_key {
            signoff_core::input::check_text(
                "Idempotency-Key",
                key,
                signoff_core::input::MAX_IDEMPOTENCY_KEY,
                signoff_core::Lines::Single,
                true,
            )?;
        }
        if let Some(g) = &input.gate {
            identity::validate_gate(g)?;
        }
        let claim_digest = input.claim_digest;
        if let Some(d) = &claim_digest {
            signoff_core::input::check_digest("claim_digest", &d.0)?;
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
        // Validated before anything is recorded: a refused submission's
        // event quotes the action, and what is recorded must be storable
        // on every backend and readable back.
        action.validate()?;
        // The gate policies see comes from the credential, never from the
        // body: a credential bound to one gate cannot submit through
        // another, and an unbound one submits as `api` (what it named is
        // kept as a claim for reviewers).
        let (gate, claimed_gate) = match (caller.bound_gate(), input.gate) {
            (Some(bound), Some(asked)) if asked != bound => {
                let detail = format!(
                    "credential `{}` of {} is bound to gate `{bound}`; it cannot submit through gate `{asked}`",
                    caller.credential().map(|c| c.name.as_str()).unwrap_or("?"),
                    caller.reference(),
                );
                let event = AuditEvent::new(
                    EventKind::SubmissionRefused,
                    self.now(),
                    caller.reference().to_string(),
                )
                .with_reason(detail.clone())
                .with_detail(serde_json::json!({
                    "bound_gate": bound,
                    "asked_gate": asked,
                    "credential": caller.credential().map(|c| c.id.clone()),
                    "action": action.action,
                    "resource": action.resource,
                }));
                self.store
                    .commit(Commit {
                        changes: vec![],
                        events: vec![event.clone()],
                    })
                    .await?;
                oplog::committed(None, &[event], Some("gate-binding"));
                return Err(EngineError::Forbidden(detail));
            }
            (Some(bound), _) => (bound.to_owned(), None),
            (None, Some(asked)) if asked != "api" => ("api".to_owned(), Some(asked)),
            (None, _) => ("api".to_owned(), None),
        };
        if let Some(key) = &idempotency_key {
            if let Some(existing) = self.replay(caller, key, &action).await? {
                return Ok((existing, Submitted::Replayed));
            }
        }
        // Decided on facts (the catalog's view of the resource, the
        // principal's registered attributes) recorded beside the claims. A
        // submission that claims at once is decided by the set every
        // replica must enforce, as a claim is: one evaluation serves both.
        let policies = match claim_digest {
            Some(_) => self.converged_policies().await?,
            None => self.policies.load_full(),
        };
        let (verdict, facts) = policies.set.evaluate_with_facts(&EvalInput {
            request: &action,
            principal_groups: &caller.groups,
            gate: &gate,
            principal_attributes: &caller.attributes,
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
        let (mut record, event) = RequestRecord::submit(
            signoff_core::Submission {
                id,
                action: action.clone(),
                gate: Some(gate),
                claimed_gate,
                principal_owner: owner,
                principal_created_by: caller.created_by().map(str::to_owned),
                verdict,
                idempotency_key: idempotency_key.clone(),
                facts: Some(facts),
            },
            now,
            self.config.deadlines,
        );
        let mut events = vec![event];
        // Claimed in the same commit: the gate's round trip and the
        // durable write a separate claim would cost are saved on the path
        // every allowed tool call takes.
        let mut refused = None;
        if let Some(digest) = &claim_digest {
            if record.status == RequestStatus::Approved {
                let by = caller.reference();
                // the claim's re-check is the verdict just reached, by the
                // same (converged) set
                let recheck = record.verdict.clone();
                match record.claim(&by, digest, recheck, now, self.config.deadlines) {
                    Ok(claimed) => events.extend(claimed),
                    Err((refusal, recorded)) => {
                        events.extend(recorded);
                        refused = Some(refusal);
                    }
                }
            }
        }
        let rule = refused.as_ref().map(|r| r.rule());
        match self
            .store
            .commit(Commit {
                changes: vec![Change::InsertRequest(record.clone())],
                events: events.clone(),
            })
            .await
        {
            Ok(_) => oplog::committed(Some(&record), &events, rule),
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
        if let Some(at) = record.expires_at {
            self.deadlines.deadline_set(at.as_millisecond());
        }
        if let Some(refusal) = refused {
            return Err(EngineError::ClaimRefused(refusal));
        }
        Ok((record, Submitted::Created))
    }

    async fn replay(
        &self,
        caller: &Caller,
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
    ///
    /// Such a probe answers exactly like an unknown id (same error, same
    /// message) and records no audit event, so probing cannot fill the
    /// ledger either; it is counted instead
    /// ([`Engine::hidden_request_probes`]).
    pub async fn get(&self, caller: &Caller, id: &str) -> Result<RequestRecord, EngineError> {
        if !plausible_request_id(id) {
            return Err(not_found(id));
        }
        let record = self.store.request(id).await?.ok_or_else(|| not_found(id))?;
        if !may_see(caller, &record) {
            self.hidden_probes
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Err(not_found(id));
        }
        Ok(record)
    }

    /// How many times a caller asked about a request it may not see (an
    /// agent naming another principal's request id), answered as unknown.
    pub fn hidden_request_probes(&self) -> u64 {
        self.hidden_probes
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Requests matching `filter`; agents and non-readers see only their own.
    pub async fn list(
        &self,
        caller: &Caller,
        mut filter: RequestFilter,
    ) -> Result<Vec<RequestRecord>, EngineError> {
        if let Some(a) = &filter.action {
            signoff_core::input::check_text(
                "action filter",
                a,
                signoff_core::action::limits::ACTION,
                signoff_core::Lines::Single,
                true,
            )?;
        }
        if let Some(p) = &filter.principal {
            p.parse::<signoff_core::PrincipalRef>()
                .map_err(|e| EngineError::Limit(format!("principal filter: {e}")))?;
        }
        if let Some(b) = &filter.before {
            if !plausible_request_id(b) {
                return Err(EngineError::Limit(format!(
                    "before `{}` is not a request id",
                    signoff_core::input::escape_for_message(b)
                )));
            }
        }
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
        caller: &Caller,
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
        reviewer: &Caller,
        id: &str,
        decision: ReviewDecision,
        reason: Option<String>,
    ) -> Result<RequestRecord, EngineError> {
        // A caller who may not read every request (an agent) learns nothing
        // about ids that are not its own: they answer like unknown ids and
        // record nothing. On its own request the refusal is recorded.
        if authz::require(reviewer, Permission::ReadAll).is_err() {
            self.get(reviewer, id).await?;
        }
        self.require_trusted_ledger().await?;
        if decision == ReviewDecision::Deny && reason.as_deref().is_none_or(|r| r.trim().is_empty())
        {
            return Err(EngineError::Invalid("a reason is required to deny".into()));
        }
        check_reason(reason.as_deref())?;
        // Read fresh for each review (reviews are rare): who created the
        // reviewer's account (and so granted its groups) and issued the
        // credential it presented.
        let provenance = self
            .store
            .provenance(&reviewer.name, reviewer.credential().map(|c| c.id.as_str()))
            .await?;
        let who = Reviewer {
            name: reviewer.name.clone(),
            kind: reviewer.kind,
            role: reviewer.role,
            groups: reviewer.groups.clone(),
            channel: reviewer.channel(),
            provenance: signoff_core::Provenance::new(
                provenance.account_created_by,
                provenance.credential_created_by,
                &reviewer.groups,
            ),
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
        caller: &Caller,
        id: &str,
        reason: Option<String>,
    ) -> Result<RequestRecord, EngineError> {
        check_reason(reason.as_deref())?;
        self.require_trusted_ledger().await?;
        let by = caller.reference();
        let is_admin = caller.role == signoff_core::Role::Admin;
        self.transition_as(caller, id, |record, now, _| {
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
        caller: &Caller,
        id: &str,
        digest: &Digest,
    ) -> Result<RequestRecord, EngineError> {
        signoff_core::input::check_digest("digest", &digest.0)?;
        self.require_trusted_ledger().await?;
        let by = caller.reference();
        let groups = caller.groups.clone();
        let attributes = caller.attributes.clone();
        // Re-check against the set every replica must enforce, not whatever
        // this replica last loaded.
        let policies = self.converged_policies().await?;
        self.transition_as(caller, id, |record, now, deadlines| {
            let gate = record.gate.clone().unwrap_or_else(|| "api".into());
            let recheck = policies.set.evaluate(&EvalInput {
                request: &record.action,
                principal_groups: &groups,
                gate: &gate,
                principal_attributes: &attributes,
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
        caller: &Caller,
        id: &str,
        body: OutcomeBody,
    ) -> Result<RequestRecord, EngineError> {
        if let Some(s) = &body.summary {
            signoff_core::input::check_text(
                "summary",
                s,
                signoff_core::input::MAX_SUMMARY,
                signoff_core::Lines::Text,
                false,
            )?;
        }
        if let Some(h) = &body.output_sha256 {
            if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(EngineError::Limit(format!(
                    "output_sha256 `{}` is not 64 hex digits",
                    signoff_core::input::escape_for_message(h)
                )));
            }
        }
        let by = caller.reference();
        self.transition_as(caller, id, |record, now, _| {
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
        F: Apply,
    {
        self.transition_visible(None, id, apply).await
    }

    /// [`Engine::transition`] of a request `caller` may see: anyone else's
    /// is [`not_found`], as in [`Engine::get`], checked on the same read.
    async fn transition_as<F>(
        &self,
        caller: &Caller,
        id: &str,
        apply: F,
    ) -> Result<RequestRecord, EngineError>
    where
        F: Apply,
    {
        self.transition_visible(Some(caller), id, apply).await
    }

    async fn transition_visible<F>(
        &self,
        caller: Option<&Caller>,
        id: &str,
        apply: F,
    ) -> Result<RequestRecord, EngineError>
    where
        F: Apply,
    {
        if !plausible_request_id(id) {
            return Err(not_found(id));
        }
        for _ in 0..MAX_RETRIES {
            let before = self.store.request(id).await?.ok_or_else(|| not_found(id))?;
            if let Some(caller) = caller {
                if !may_see(caller, &before) {
                    self.hidden_probes
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    return Err(not_found(id));
                }
            }
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
                let logged = events.clone();
                match self.store.commit(Commit { changes, events }).await {
                    Ok(_) => {
                        let rule = match &result {
                            Err(EngineError::ReviewRefused(r)) => Some(r.rule()),
                            Err(EngineError::ClaimRefused(c)) => Some(c.rule()),
                            _ => None,
                        };
                        let mut after = record.clone();
                        if changed {
                            after.version += 1;
                        }
                        oplog::committed(Some(&after), &logged, rule);
                    }
                    Err(StoreError::Conflict(_)) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
            if changed {
                record.version += 1;
                self.waiters.notify(id);
                if let Some(at) = record.expires_at {
                    self.deadlines.deadline_set(at.as_millisecond());
                }
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
    /// A request that cannot be expired does not stop the others: the
    /// first error is returned after all the rest were tried.
    pub async fn expire_due(&self) -> Result<usize, EngineError> {
        let mut parked = expiry::Parked::default();
        let mut total = 0;
        loop {
            let sweep = self.sweep(&mut parked, tokio::time::Instant::now()).await?;
            total += sweep.expired;
            if !sweep.wake.is_zero() {
                break;
            }
        }
        match parked.first_error() {
            Some(e) => Err(EngineError::Internal(e)),
            None => Ok(total),
        }
    }

    /// One round of the sweeper: expires what is due, skipping requests
    /// parked after failures until their retry time, and says when to come
    /// back.
    async fn sweep(
        &self,
        parked: &mut expiry::Parked,
        instant: tokio::time::Instant,
    ) -> Result<expiry::Sweep, EngineError> {
        let now = self.now();
        let horizon = now
            .checked_add(jiff::SignedDuration::from_secs(60))
            .unwrap_or(Timestamp::MAX);
        let limit = expiry::BATCH + parked.len();
        let list = self.store.deadlines(horizon, limit).await?;
        let truncated = list.len() == limit;
        let mut sweep = expiry::Sweep {
            expired: 0,
            wake: expiry::IDLE_WAKE,
        };
        let mut seen = std::collections::HashSet::new();
        for (id, at) in list {
            if at > now {
                let until = Duration::from_millis(
                    u64::try_from(at.as_millisecond() - now.as_millisecond()).unwrap_or(0),
                );
                sweep.wake = sweep.wake.min(until);
                break;
            }
            seen.insert(id.clone());
            if let Some(retry_at) = parked.retry_at(&id) {
                if retry_at > instant {
                    sweep.wake = sweep.wake.min(retry_at - instant);
                    continue;
                }
            }
            match self.expire_one(&id).await {
                Ok(()) => {
                    parked.clear(&id);
                    sweep.expired += 1;
                }
                Err(e) => {
                    let delay = parked.fail(&id, e.to_string(), instant);
                    tracing::warn!(request = %id, error = %e, retry_in = ?delay,
                        "cannot expire request; parked, the others go on");
                    sweep.wake = sweep.wake.min(delay);
                }
            }
        }
        if !truncated {
            parked.retain(|id| seen.contains(id));
        } else if sweep.expired > 0 {
            // more may be due beyond this batch
            sweep.wake = Duration::ZERO;
        }
        Ok(sweep)
    }

    /// Runs the expiry sweeper until `shutdown` resolves: sleeps until the
    /// next deadline (or until a new one appears) so requests expire on
    /// time even when nobody asks about them. A request that fails to
    /// expire is parked and retried with exponential backoff while the
    /// others expire on time; a failing sweep (database away) backs off
    /// exponentially too, so neither floods the log.
    pub(crate) async fn run_expiry(
        self: Arc<Self>,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        let mut parked = expiry::Parked::default();
        let mut failures: u32 = 0;
        loop {
            self.deadlines.sweeping();
            let wake = match self.sweep(&mut parked, tokio::time::Instant::now()).await {
                Ok(sweep) => {
                    failures = 0;
                    if sweep.expired > 0 {
                        tracing::debug!(
                            expired = sweep.expired,
                            "expired requests past their deadline"
                        );
                    }
                    let mut detail = format!("{} expired last sweep", sweep.expired);
                    if let Some(summary) = parked.summary() {
                        detail.push_str("; ");
                        detail.push_str(&summary);
                    }
                    self.health.ok("expiry", detail);
                    sweep.wake
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    let delay = expiry::backoff(failures, expiry::MAX_SWEEP_BACKOFF);
                    self.health.failing(
                        "expiry",
                        format!("sweep failed: {e}; retrying in {delay:?}"),
                    );
                    delay
                }
            };
            self.deadlines.sleeping_until(
                self.now()
                    .as_millisecond()
                    .saturating_add(wake.as_millis() as i64),
            );
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(wake) => {}
                _ = self.deadlines.notified(), if failures == 0 => {}
            }
        }
    }

    /// Audit events from index `from`, for auditors.
    pub async fn events(
        &self,
        caller: &Caller,
        from: u64,
        limit: usize,
    ) -> Result<Vec<AuditEvent>, EngineError> {
        authz::require(caller, Permission::ReadAudit)?;
        Ok(self.store.events(from, limit.clamp(1, 1000)).await?)
    }
}

/// A review's or cancellation's reason: multi-line text within the reason
/// limit.
fn check_reason(reason: Option<&str>) -> Result<(), EngineError> {
    if let Some(r) = reason {
        signoff_core::input::check_text(
            "reason",
            r,
            signoff_core::input::MAX_REASON,
            signoff_core::Lines::Text,
            false,
        )?;
    }
    Ok(())
}

/// What a transition does to a request: mutates it and returns its
/// events, or refuses with an error and the events that record the refused
/// attempt.
trait Apply:
    Fn(
    &mut RequestRecord,
    Timestamp,
    Deadlines,
) -> Result<Vec<AuditEvent>, (EngineError, Vec<AuditEvent>)>
{
}

impl<F> Apply for F where
    F: Fn(
        &mut RequestRecord,
        Timestamp,
        Deadlines,
    ) -> Result<Vec<AuditEvent>, (EngineError, Vec<AuditEvent>)>
{
}

/// Whether `caller` may see `record`: readers see every request, anyone
/// else only their own.
fn may_see(caller: &Caller, record: &RequestRecord) -> bool {
    authz::require(caller, Permission::ReadAll).is_ok()
        || record.action.principal == caller.reference()
}

fn not_found(id: &str) -> EngineError {
    EngineError::NotFound(format!(
        "request `{}`",
        signoff_core::input::escape_for_message(id)
    ))
}

/// Whether `id` could name a request (ids are ULIDs): anything else is
/// unknown without asking the database, which may not even accept it
/// (PostgreSQL refuses NUL in text).
fn plausible_request_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric())
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
