//! Several replicas on one database: the policy set every replica must
//! enforce lives in the database (hash and source files), and a follower
//! reads the event stream so that what another replica committed — a
//! review, a decision, a reload — reaches this replica's long-polls,
//! expiry sweeper and policy set within milliseconds.

use crate::{Engine, EngineError, LoadedPolicies};
use signoff_core::EventKind;
use signoff_policy::{PolicySet, PolicySources};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How often the follower checks the active policy set even without an
/// event (covers a notification lost while reconnecting).
const POLICY_RECHECK: Duration = Duration::from_secs(5);

impl Engine {
    /// The policy set to enforce now. If the database names another active
    /// set than the one loaded here (a reload on another replica that this
    /// one has not applied yet), it is loaded first; if that fails, the
    /// caller gets [`EngineError::Unavailable`] rather than a decision by
    /// a stale set.
    pub(crate) async fn converged_policies(&self) -> Result<Arc<LoadedPolicies>, EngineError> {
        let local = self.policies.load_full();
        // Nobody else commits to an unshared database: the set this process
        // activated is the active one, and a claim need not ask.
        if !self.store.is_shared() {
            return Ok(local);
        }
        let Some(active) = self.store.active_policy_hash().await? else {
            return Ok(local);
        };
        if active == local.set.hash() {
            return Ok(local);
        }
        self.converge().await?;
        let now = self.policies.load_full();
        if now.set.hash() != active {
            return Err(EngineError::Unavailable(format!(
                "this replica enforces policy set {} but {} is active; retry shortly",
                short(now.set.hash()),
                short(&active)
            )));
        }
        Ok(now)
    }

    /// Loads the database's active policy set if it differs from the one
    /// loaded here. Returns whether the set changed.
    pub async fn converge(&self) -> Result<bool, EngineError> {
        let Some(active) = self.store.active_policy_set().await? else {
            return Ok(false);
        };
        if active.hash == self.policies.load().set.hash() {
            return Ok(false);
        }
        let sources: PolicySources = serde_json::from_str(&active.files).map_err(|e| {
            EngineError::Internal(format!(
                "stored policy set {} cannot be decoded: {e}",
                short(&active.hash)
            ))
        })?;
        let set = PolicySet::from_sources(&sources).map_err(|e| {
            EngineError::Policy(format!(
                "active policy set {} does not load here: {e}",
                short(&active.hash)
            ))
        })?;
        if set.hash() != active.hash {
            return Err(EngineError::Internal(format!(
                "stored policy set {} hashes to {} when loaded",
                short(&active.hash),
                short(set.hash())
            )));
        }
        tracing::info!(
            target: crate::oplog::TARGET,
            event = "policy_set_converged",
            policy_set = %short(set.hash()),
            policies = set.len(),
            "policy set activated by another replica is now enforced here"
        );
        self.policies.store(Arc::new(LoadedPolicies {
            set,
            loaded_at: self.now(),
        }));
        Ok(true)
    }

    /// Follows the event stream for this replica until `stop` turns true:
    /// every event about a request wakes its long-polls and the expiry
    /// sweeper (another replica may have submitted, reviewed or expired
    /// it); a policy set loaded elsewhere is loaded here. Only needed when
    /// the store is shared (see [`signoff_store::Store::is_shared`]); on a
    /// private store the engine wakes them directly as it commits.
    pub(crate) async fn run_follower(self: Arc<Self>, stop: watch::Receiver<bool>) {
        const NAME: &str = "replica-follower";
        let mut head = self.store.subscribe_head();
        let mut position = *head.borrow_and_update();
        self.health
            .ok(NAME, format!("following from index {position}"));
        if let Err(e) = self.converge().await {
            self.health.failing(NAME, e.to_string());
        }
        loop {
            tokio::select! {
                _ = crate::components::stopped(stop.clone()) => return,
                changed = head.changed() => if changed.is_err() { return },
                _ = tokio::time::sleep(POLICY_RECHECK) => {
                    match self.converge().await {
                        Ok(_) => self.health.ok(NAME, format!("at index {position}")),
                        Err(e) => self.health.failing(NAME, e.to_string()),
                    }
                    continue;
                }
            }
            let target = *head.borrow_and_update();
            while position < target {
                let events = match self.store.events(position, crate::stream::MAX_BATCH).await {
                    Ok(events) => events,
                    Err(e) => {
                        self.health.failing(NAME, e.to_string());
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        break;
                    }
                };
                let Some(last) = events.last().and_then(|e| e.index) else {
                    break;
                };
                let mut new_deadlines = false;
                let mut policy_changed = false;
                for e in &events {
                    if let Some(id) = &e.request_id {
                        self.waiters.notify(id);
                        new_deadlines = true;
                    }
                    if e.kind == EventKind::PolicySetLoaded
                        && e.policy_set_hash.as_deref() != Some(self.policies.load().set.hash())
                    {
                        policy_changed = true;
                    }
                }
                if new_deadlines {
                    self.deadlines.wake();
                }
                if policy_changed {
                    if let Err(e) = self.converge().await {
                        self.health.failing(NAME, e.to_string());
                    }
                }
                position = last + 1;
                self.health.ok(NAME, format!("at index {position}"));
            }
        }
    }
}

fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}
