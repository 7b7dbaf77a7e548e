//! Background work with one lifecycle, registered from its own
//! configuration section (like vector's sources and sinks): the expiry
//! sweeper, the checkpointer, the replica follower, the credential-usage
//! writer — and next the channels and webhook senders. Each is started
//! with [`Engine::start_components`], reports its health to the engine
//! (shown per component by `/readyz`), and stops when asked.

use crate::{Engine, EngineError};
use jiff::Timestamp;
use serde::Deserialize;
use signoff_core::wire::{ComponentHealth, Readiness};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// How long a component may keep failing before `/readyz` reports the
/// replica unready because of it.
pub const FAILING_GRACE: Duration = Duration::from_secs(60);

/// Components whose failures show in `/readyz` but never make the replica
/// unready (a witness that cannot be reached must not stop decisions).
pub const ADVISORY: &[&str] = &["witnesses", "ledger-selfcheck"];

/// A piece of background work.
#[async_trait::async_trait]
pub trait Component: Send + Sync + 'static {
    /// Its name in the configuration and in `/readyz`.
    fn name(&self) -> &'static str;
    /// Runs until `stop` turns true. Reports health through
    /// [`Engine::report_health`].
    async fn run(self: Box<Self>, engine: Arc<Engine>, stop: watch::Receiver<bool>);
}

/// The `[components.*]` sections of the configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComponentsConfig {
    /// `[components.expiry]`: expires requests at their deadline.
    #[serde(default)]
    pub expiry: Toggle,
    /// `[components.checkpointer]`: signs ledger checkpoints.
    #[serde(default)]
    pub checkpointer: Toggle,
    /// `[components.replica_follower]`: hears of other replicas' changes.
    /// On by default when the database is shared (PostgreSQL).
    #[serde(default)]
    pub replica_follower: AutoToggle,
    /// `[components.credential_usage]`: records when credentials were last used.
    #[serde(default)]
    pub credential_usage: Periodic,
    /// `[components.ledger_selfcheck]`: verifies the whole ledger against
    /// its signed checkpoints every `interval` (default `1h`); a finding is
    /// logged, counted in `signoff_ledger_selfcheck_findings` and shown by
    /// `/readyz` (advisory: decisions go on, the witness guards those).
    #[serde(default)]
    pub ledger_selfcheck: Periodic,
}

/// A component that is on unless turned off.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Toggle {
    /// Run it (default true).
    #[serde(default = "yes")]
    pub enabled: bool,
}

impl Default for Toggle {
    fn default() -> Self {
        Toggle { enabled: true }
    }
}

/// A component whose default depends on the deployment.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutoToggle {
    /// Run it; unset means "when it is needed".
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// A component that runs every `interval`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Periodic {
    /// Run it (default true).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// How often, e.g. `10s` (default `10s`).
    #[serde(default)]
    pub interval: Option<String>,
}

impl Default for Periodic {
    fn default() -> Self {
        Periodic {
            enabled: true,
            interval: None,
        }
    }
}

fn yes() -> bool {
    true
}

fn parse_interval(
    section: &str,
    text: &Option<String>,
    default: Duration,
) -> Result<Duration, EngineError> {
    let Some(text) = text else { return Ok(default) };
    let d: jiff::SignedDuration = text.trim().parse().map_err(|e| {
        EngineError::Invalid(format!(
            "[components.{section}] interval `{text}` is not a duration like `10s` or `1m`: {e}"
        ))
    })?;
    if !d.is_positive() {
        return Err(EngineError::Invalid(format!(
            "[components.{section}] interval `{text}` must be positive"
        )));
    }
    Duration::try_from(d)
        .map_err(|e| EngineError::Invalid(format!("[components.{section}] interval `{text}`: {e}")))
}

impl ComponentsConfig {
    /// Checks every section (so a bad value fails at startup, naming it).
    pub fn validate(&self) -> Result<(), EngineError> {
        parse_interval(
            "credential_usage",
            &self.credential_usage.interval,
            Duration::from_secs(10),
        )?;
        parse_interval(
            "ledger_selfcheck",
            &self.ledger_selfcheck.interval,
            SELFCHECK_INTERVAL,
        )
        .map(drop)
    }

    /// The components this configuration turns on, for a store that is
    /// shared with other replicas or not.
    pub fn build(&self, shared_store: bool) -> Result<Vec<Box<dyn Component>>, EngineError> {
        let mut list: Vec<Box<dyn Component>> = Vec::new();
        if self.expiry.enabled {
            list.push(Box::new(Expiry));
        }
        if self.checkpointer.enabled {
            list.push(Box::new(Checkpointer));
        }
        if self.replica_follower.enabled.unwrap_or(shared_store) {
            list.push(Box::new(ReplicaFollower));
        }
        if self.credential_usage.enabled {
            list.push(Box::new(CredentialUsage {
                interval: parse_interval(
                    "credential_usage",
                    &self.credential_usage.interval,
                    Duration::from_secs(10),
                )?,
            }));
        }
        if self.ledger_selfcheck.enabled {
            list.push(Box::new(crate::audit::SelfCheck {
                interval: parse_interval(
                    "ledger_selfcheck",
                    &self.ledger_selfcheck.interval,
                    SELFCHECK_INTERVAL,
                )?,
            }));
        }
        Ok(list)
    }
}

/// Default interval of the ledger self-check: a full replay reads every
/// entry, so not more often than the ledger can afford.
const SELFCHECK_INTERVAL: Duration = Duration::from_secs(3600);

/// Started components; stop them with [`Running::stop`].
pub struct Running {
    stop: watch::Sender<bool>,
    tasks: Vec<(&'static str, tokio::task::JoinHandle<()>)>,
    engine: Arc<Engine>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.tasks.iter().map(|(n, _)| n))
            .finish()
    }
}

impl Running {
    /// Asks every component to stop and waits until they have.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for (name, task) in self.tasks {
            if let Err(e) = task.await {
                tracing::warn!(component = name, error = %e, "component ended abnormally");
            }
            self.engine
                .health
                .set(name, "stopped", String::new(), self.engine.now());
        }
    }
}

impl Engine {
    /// Starts `components`, each on its own task.
    pub fn start_components(self: &Arc<Self>, components: Vec<Box<dyn Component>>) -> Running {
        let (stop, rx) = watch::channel(false);
        let mut tasks = Vec::new();
        for c in components {
            let name = c.name();
            self.health.set(name, "starting", String::new(), self.now());
            tracing::debug!(component = name, "starting");
            tasks.push((name, tokio::spawn(c.run(self.clone(), rx.clone()))));
        }
        Running {
            stop,
            tasks,
            engine: self.clone(),
        }
    }

    /// Records a component's health for `/readyz`: `Ok(detail)` or `Err(why)`.
    pub fn report_health(&self, component: &str, health: Result<String, String>) {
        match health {
            Ok(detail) => self.health.ok(component, detail),
            Err(why) => self.health.failing(component, why),
        }
    }

    /// The database and every component, for `/readyz`.
    pub async fn readiness(&self) -> Readiness {
        let now = self.now();
        let database = match self.store.ping().await {
            Ok(()) => ComponentHealth {
                status: "ok".into(),
                detail: String::new(),
                since: now,
            },
            Err(e) => ComponentHealth {
                status: "failing".into(),
                detail: EngineError::from(e).to_string(),
                since: now,
            },
        };
        let components = self.health.snapshot();
        // A component failing because the database was away recovers on
        // its next round once the database is back; only one failing for
        // longer than FAILING_GRACE makes the replica unready on its own.
        // Witness pushes are advisory: they show, but never stop decisions.
        let stuck = components.iter().any(|(name, c)| {
            c.status == "failing"
                && !ADVISORY.contains(&name.as_str())
                && now.as_millisecond() - c.since.as_millisecond()
                    > i64::try_from(FAILING_GRACE.as_millis()).unwrap_or(i64::MAX)
        });
        // An untrusted ledger makes the replica unready at once.
        let untrusted = self.ledger_untrusted().is_some();
        let ready = database.status == "ok" && !stuck && !untrusted;
        Readiness {
            status: if ready { "ready" } else { "unready" }.into(),
            database,
            components,
        }
    }
}

/// What each component last reported.
#[derive(Default)]
pub(crate) struct HealthBoard {
    entries: Mutex<BTreeMap<String, ComponentHealth>>,
}

impl HealthBoard {
    pub(crate) fn set(&self, name: &str, status: &str, detail: String, now: Timestamp) {
        let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        match map.get_mut(name) {
            Some(h) if h.status == status => h.detail = detail,
            _ => {
                if status == "failing" {
                    tracing::warn!(component = name, %detail, "component failing");
                } else if map.get(name).is_some_and(|h| h.status == "failing") {
                    tracing::info!(component = name, "component recovered");
                }
                map.insert(
                    name.to_owned(),
                    ComponentHealth {
                        status: status.to_owned(),
                        detail,
                        since: now,
                    },
                );
            }
        }
    }

    pub(crate) fn ok(&self, name: &str, detail: String) {
        self.set(name, "ok", detail, Timestamp::now());
    }

    pub(crate) fn failing(&self, name: &str, why: String) {
        self.set(name, "failing", why, Timestamp::now());
    }

    fn snapshot(&self) -> BTreeMap<String, ComponentHealth> {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

pub(crate) async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Expires requests at their deadline even when nobody asks about them.
struct Expiry;

#[async_trait::async_trait]
impl Component for Expiry {
    fn name(&self) -> &'static str {
        "expiry"
    }
    async fn run(self: Box<Self>, engine: Arc<Engine>, stop: watch::Receiver<bool>) {
        engine.run_expiry(stopped(stop)).await;
    }
}

/// Signs ledger checkpoints.
struct Checkpointer;

#[async_trait::async_trait]
impl Component for Checkpointer {
    fn name(&self) -> &'static str {
        "checkpointer"
    }
    async fn run(self: Box<Self>, engine: Arc<Engine>, stop: watch::Receiver<bool>) {
        engine.run_checkpointer(stopped(stop)).await;
    }
}

/// Hears of other replicas' changes (see [`crate::replication`]).
struct ReplicaFollower;

#[async_trait::async_trait]
impl Component for ReplicaFollower {
    fn name(&self) -> &'static str {
        "replica-follower"
    }
    async fn run(self: Box<Self>, engine: Arc<Engine>, stop: watch::Receiver<bool>) {
        engine.run_follower(stop).await;
    }
}

/// Writes credentials' last-use times off the request path.
struct CredentialUsage {
    interval: Duration,
}

#[async_trait::async_trait]
impl Component for CredentialUsage {
    fn name(&self) -> &'static str {
        "credential-usage"
    }
    async fn run(self: Box<Self>, engine: Arc<Engine>, stop: watch::Receiver<bool>) {
        engine
            .health
            .ok(self.name(), "waiting for the first use".into());
        loop {
            let stopping = tokio::select! {
                _ = stopped(stop.clone()) => true,
                _ = tokio::time::sleep(self.interval) => false,
            };
            match engine.flush_credential_usage().await {
                Ok(n) => engine
                    .health
                    .ok(self.name(), format!("{n} credential(s) updated last round")),
                Err(e) => engine.health.failing(self.name(), e.to_string()),
            }
            if stopping {
                return;
            }
        }
    }
}
