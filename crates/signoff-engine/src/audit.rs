//! Audit use cases for auditors (over the API) and the console operator
//! (offline, with the config file): verify the ledger, export an evidence
//! bundle, build the period report. The logic lives in `signoff-audit`;
//! this module reads the store for it and checks the role matrix.

use crate::principals::Operator;
use crate::{Engine, EngineError};
use async_trait::async_trait;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use jiff::Timestamp;
use signoff_audit::report::{self, Report};
use signoff_audit::verify::{self, Saved, Scan};
use signoff_audit::{LedgerSource, SourceError, Verification};
use signoff_core::{AuditEvent, EventKind, RequestRecord};
use signoff_ledger::leaf;
use signoff_ledger::merkle::{self, Frontier, Hash};
use signoff_ledger::note::Verifier;
use signoff_store::{Commit, LedgerScan, RequestFilter, Store, StoreError, StoredCheckpoint};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

/// The store as a [`LedgerSource`] for the verifier.
pub struct StoreSource {
    store: Arc<dyn Store>,
    /// Scans done with, so each window's buffers are allocated once.
    spare: Mutex<Vec<LedgerScan>>,
}

impl StoreSource {
    /// Reads `store`.
    pub fn new(store: Arc<dyn Store>) -> StoreSource {
        StoreSource {
            store,
            spare: Mutex::new(Vec::new()),
        }
    }
}

fn source_error(e: StoreError) -> SourceError {
    match e {
        StoreError::Corrupt(m) => SourceError::Corrupt(m),
        other => SourceError::Unavailable(other.to_string()),
    }
}

fn stored(cp: StoredCheckpoint) -> verify::StoredCheckpoint {
    verify::StoredCheckpoint {
        size: cp.size,
        root: cp.root,
        note: cp.note,
        created_at: cp.created_at,
    }
}

#[async_trait]
impl LedgerSource for StoreSource {
    async fn event_count(&self) -> Result<u64, SourceError> {
        self.store.event_count().await.map_err(source_error)
    }
    async fn latest_checkpoint(&self) -> Result<Option<verify::StoredCheckpoint>, SourceError> {
        Ok(self
            .store
            .latest_checkpoint()
            .await
            .map_err(source_error)?
            .map(stored))
    }
    async fn checkpoints(
        &self,
        from_size: u64,
        limit: usize,
    ) -> Result<Vec<verify::StoredCheckpoint>, SourceError> {
        Ok(self
            .store
            .checkpoints(from_size, limit)
            .await
            .map_err(source_error)?
            .into_iter()
            .map(stored)
            .collect())
    }
    async fn events(&self, from: u64, limit: usize) -> Result<Vec<AuditEvent>, SourceError> {
        self.store.events(from, limit).await.map_err(source_error)
    }
    async fn scan(&self, from: u64, to: u64, into: &mut Scan) -> Result<(), SourceError> {
        let mut scan = self
            .spare
            .lock()
            .ok()
            .and_then(|mut s| s.pop())
            .unwrap_or_default();
        self.store
            .scan_ledger(from, to, &mut scan)
            .await
            .map_err(source_error)?;
        into.to = scan.to;
        into.entries.clear();
        into.entries
            .extend(scan.entries.iter().map(|e| (e.index, e.leaf_hash)));
        into.recorded.clear();
        into.recorded.extend_from_slice(&scan.recorded);
        if let Ok(mut spare) = self.spare.lock() {
            spare.push(scan);
        }
        Ok(())
    }
}

/// An evidence bundle's contents: entries of a period with their leaf
/// bytes, a signed checkpoint covering them and an inclusion proof each.
#[derive(Debug, Clone)]
pub struct BundleContents {
    /// `(index, leaf bytes)`, in order.
    pub entries: Vec<(u64, Vec<u8>)>,
    /// The signed note of the covering checkpoint.
    pub checkpoint: String,
    /// Its size.
    pub checkpoint_size: u64,
    /// The inclusion proof of each entry in that checkpoint.
    pub proofs: Vec<Vec<Hash>>,
    /// The gateway's verifier key (to be compared with one obtained out of band).
    pub vkey: String,
}

fn internal(what: &str) -> impl FnOnce(StoreError) -> EngineError + '_ {
    move |e| EngineError::Internal(format!("{what}: {e}"))
}

impl Engine {
    fn require_audit(&self, operator: Operator<'_>) -> Result<String, EngineError> {
        match operator {
            Operator::Caller(caller) => {
                crate::identity::require_auditor(caller)?;
                Ok(caller.reference().to_string())
            }
            Operator::Console => Ok("console".to_owned()),
        }
    }

    /// The verifier of this gateway's own checkpoints.
    fn own_verifier(&self) -> Result<Verifier, EngineError> {
        let vkey = self
            .ledger_vkey()
            .ok_or_else(|| EngineError::Invalid("this gateway has no ledger signing key".into()))?;
        Verifier::from_vkey(&vkey).map_err(|e| EngineError::Internal(format!("ledger key: {e}")))
    }

    /// Replays the whole ledger against its signed checkpoints (signed by
    /// `verifier`, or by this gateway's key when `None`) and the
    /// checkpoints `saved` outside the database. Differences are findings
    /// in the result, not errors.
    pub async fn verify_ledger(
        &self,
        operator: Operator<'_>,
        verifier: Option<Verifier>,
        saved: Vec<Saved>,
        progress: verify::Progress<'_>,
    ) -> Result<Verification, EngineError> {
        self.require_audit(operator)?;
        let verifier = match verifier {
            Some(v) => v,
            None => self.own_verifier()?,
        };
        let source: Arc<dyn LedgerSource> = Arc::new(StoreSource::new(self.store.clone()));
        verify::replay(source, verifier, saved, progress)
            .await
            .map_err(|e| EngineError::Internal(format!("cannot read the ledger: {e}")))
    }

    /// [`Engine::verify_ledger`] with this gateway's key, recorded as a
    /// `ledger_verified` audit event whose detail holds every finding.
    pub async fn verify_ledger_recorded(
        &self,
        operator: Operator<'_>,
    ) -> Result<(signoff_audit::VerificationSummary, Option<u64>), EngineError> {
        let actor = self.require_audit(operator)?;
        // Sign what is there first, so the run covers the whole log rather
        // than reporting entries appended since the last checkpoint as
        // unsigned. A ledger that cannot be signed is what the run reports.
        if let Err(e) = self.checkpoint_now().await {
            tracing::warn!(error = %e, "no checkpoint signed before the verification run");
        }
        let outcome = self
            .verify_ledger(operator, None, Vec::new(), &|_, _| {})
            .await?;
        let mut summary = outcome.summary();
        if summary.entries > 0 && summary.checkpoints == 0 {
            summary.findings.push(signoff_audit::Finding::Unsigned {
                entries: summary.entries,
            });
        }
        let detail = serde_json::to_value(&summary)
            .map_err(|e| EngineError::Internal(format!("verification summary: {e}")))?;
        let event = AuditEvent::new(EventKind::LedgerVerified, self.now(), actor)
            .with_reason(if summary.is_clean() {
                format!("ledger verified: {} entries", summary.entries)
            } else {
                format!(
                    "ledger verification found {} problem(s)",
                    summary.findings.len()
                )
            })
            .with_detail(detail);
        let receipt = self
            .store
            .commit(Commit {
                changes: vec![],
                events: vec![event],
            })
            .await?;
        Ok((summary, receipt.event_indexes.first().copied()))
    }

    /// A signed checkpoint covering entry `last`: the latest, or a new one.
    async fn covering_checkpoint(
        &self,
        last: Option<u64>,
    ) -> Result<StoredCheckpoint, EngineError> {
        let covers = |cp: &StoredCheckpoint| last.is_none_or(|l| cp.size > l);
        if let Some(cp) = self.latest_checkpoint().await?.filter(covers) {
            return Ok(cp);
        }
        self.checkpoint_now().await?;
        self.latest_checkpoint()
            .await?
            .filter(covers)
            .ok_or_else(|| match last {
                Some(l) => EngineError::Internal(format!("no signed checkpoint covers entry {l}")),
                None => EngineError::Internal("the ledger has no signed checkpoint".into()),
            })
    }

    /// Events `first..=last`, in order, failing on a gap.
    async fn read_events(&self, first: u64, last: u64) -> Result<Vec<AuditEvent>, EngineError> {
        let mut out = Vec::with_capacity(usize::try_from(last - first + 1).unwrap_or(0));
        let mut next = first;
        while next <= last {
            let want = usize::try_from((last - next + 1).min(verify::PAGE)).unwrap_or(1);
            let page = self.store.events(next, want).await?;
            if page.is_empty() {
                return Err(missing(next));
            }
            for e in page {
                if e.index != Some(next) {
                    return Err(missing(next));
                }
                out.push(e);
                next += 1;
            }
        }
        Ok(out)
    }

    /// The entries of `[since, until)` with inclusion proofs into a signed
    /// checkpoint covering them (signed now if needed).
    pub async fn audit_bundle(
        &self,
        operator: Operator<'_>,
        since: Timestamp,
        until: Timestamp,
    ) -> Result<BundleContents, EngineError> {
        self.require_audit(operator)?;
        let Some((first, last)) = self.store.event_range(since, until).await? else {
            return Err(EngineError::NotFound(format!(
                "no audit events from {since} to {until}: nothing to export"
            )));
        };
        let cp = self.covering_checkpoint(Some(last)).await?;
        let vkey = self
            .ledger_vkey()
            .ok_or_else(|| EngineError::Invalid("no ledger key is configured".into()))?;
        let events = self.read_events(first, last).await?;
        let entries: Vec<(u64, Vec<u8>)> = events
            .iter()
            .map(|e| (e.index.unwrap_or_default(), leaf::encode(e)))
            .collect();
        let mut proofs = Vec::with_capacity(entries.len());
        for (index, _) in &entries {
            proofs.push(self.inclusion_proof(*index, cp.size).await?);
        }
        Ok(BundleContents {
            entries,
            checkpoint: cp.note,
            checkpoint_size: cp.size,
            proofs,
            vkey,
        })
    }

    /// Requests created in `[since, until)` per the requests table (ids are
    /// ULIDs of their creation time, so this pages by id).
    async fn table_requests(
        &self,
        since: Timestamp,
        until: Timestamp,
    ) -> Result<HashMap<String, RequestRecord>, EngineError> {
        const BATCH: usize = 1000;
        let ms = u64::try_from(until.as_millisecond()).unwrap_or(0);
        let mut before = ulid::Ulid::from_parts(ms, 0).to_string();
        let mut out = HashMap::new();
        loop {
            let page = self
                .store
                .list_requests(&RequestFilter {
                    before: Some(before.clone()),
                    limit: BATCH,
                    ..RequestFilter::default()
                })
                .await?;
            let full = page.len() == BATCH;
            let mut done = !full;
            for r in page {
                before = r.id.clone();
                if r.created_at < since {
                    done = true;
                    break;
                }
                if r.created_at < until {
                    out.insert(r.id.clone(), r);
                }
            }
            if done {
                return Ok(out);
            }
        }
    }

    /// The population of privileged actions of `[since, until)`, from the
    /// ledger's events re-hashed up to a signed checkpoint (signed now if
    /// none covers the period), reconciled with the requests table.
    pub async fn audit_report(
        &self,
        operator: Operator<'_>,
        since: Timestamp,
        until: Timestamp,
    ) -> Result<Report, EngineError> {
        self.require_audit(operator)?;
        let store = &self.store;
        let range = store.event_range(since, until).await?;
        let cp = self.covering_checkpoint(range.map(|r| r.1)).await?;
        let signed = self.own_verifier()?.verify_note(&cp.note).map_err(|e| {
            EngineError::Internal(format!("checkpoint {} does not verify: {e}", cp.size))
        })?;
        if signed.size != cp.size || signed.root != cp.root {
            return Err(EngineError::Internal(format!(
                "checkpoint {} does not match its signed note (run `signoff audit verify`)",
                cp.size
            )));
        }
        // The table first, then the events: the ledger is then at least as new.
        let table = self.table_requests(since, until).await?;
        let head = store.event_count().await?;
        let first = range.map_or(cp.size, |r| r.0);
        let mut builder = report::Builder::new(range, cp.size, table);
        // The tree left of `first` comes from the stored nodes; the entries
        // from `first` to the checkpoint are re-hashed, so the root proves
        // the events below are exactly what the checkpoint signed.
        let edge = store
            .ledger_nodes(&merkle::perfect_subtrees(0, first))
            .await
            .map_err(internal("cannot read the ledger tree"))?;
        let mut frontier = Frontier::from_nodes(first, edge)
            .map_err(|e| EngineError::Internal(format!("ledger tree is inconsistent: {e}")))?;
        let mut next = first;
        while next < head {
            let page = store.events(next, verify::PAGE as usize).await?;
            let Some(last_index) = page.last().and_then(|e| e.index) else {
                break;
            };
            for e in &page {
                let index = e.index.unwrap_or_default();
                if index >= cp.size {
                    builder.push(e);
                    continue;
                }
                if index != frontier.size() {
                    return Err(missing(frontier.size()));
                }
                frontier.append(merkle::leaf_hash(&leaf::encode(e)));
                builder.push(e);
            }
            next = last_index + 1;
        }
        if frontier.size() != cp.size || frontier.root() != cp.root {
            return Err(EngineError::Internal(format!(
                "checkpoint {} does not match the entries (root differs; run `signoff audit verify`)",
                cp.size
            )));
        }
        let (mut rows, ledger, mut counts, discrepancies) = builder.finish();
        // Who created each approver and each requesting agent, from the
        // principals table.
        let mut creators: HashMap<String, String> = HashMap::new();
        let names: BTreeSet<String> = rows
            .iter()
            .flat_map(|r| {
                r.approvals
                    .iter()
                    .map(|a| a.reviewer.clone())
                    .chain(r.principal.strip_prefix("agent:").map(str::to_owned))
            })
            .collect();
        for name in names {
            if let Some(by) = store.provenance(&name, None).await?.account_created_by {
                creators.insert(name, by);
            }
        }
        report::mark_provisioned_approvals(&mut rows, &mut counts, &creators);
        let policy_changes = self.policy_changes(range).await?;
        Ok(Report {
            period: report::Period { since, until },
            generated_at: self.now(),
            checkpoint: report::CheckpointInfo {
                origin: signed.origin.clone(),
                size: cp.size,
                root: B64.encode(cp.root),
                signed_at: cp.created_at,
            },
            ledger,
            counts,
            discrepancies,
            policy_changes,
            requests: rows,
        })
    }

    /// Policy sets loaded or rejected in the period's entries.
    async fn policy_changes(
        &self,
        range: Option<(u64, u64)>,
    ) -> Result<Vec<report::PolicyChange>, EngineError> {
        let Some((first, last)) = range else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        let mut next = first;
        while next <= last {
            let page = self.store.events(next, verify::PAGE as usize).await?;
            let Some(last_index) = page.last().and_then(|e| e.index) else {
                break;
            };
            for e in page.iter().filter(|e| e.index.is_some_and(|i| i <= last)) {
                if let Some(c) = report::PolicyChange::from_event(e) {
                    out.push(c);
                }
            }
            next = last_index + 1;
        }
        Ok(out)
    }
}

fn missing(index: u64) -> EngineError {
    EngineError::Internal(format!(
        "entry {index} is missing from the ledger (run `signoff audit verify`)"
    ))
}

/// The scheduled self-check: replays the ledger every `interval` with the
/// gateway's own key. It does not replace an auditor's verification with a
/// pinned key; it catches a database edited behind the gateway's back
/// between checkpoints and restarts.
pub(crate) struct SelfCheck {
    pub(crate) interval: std::time::Duration,
}

#[async_trait]
impl crate::components::Component for SelfCheck {
    fn name(&self) -> &'static str {
        "ledger-selfcheck"
    }
    async fn run(self: Box<Self>, engine: Arc<Engine>, stop: tokio::sync::watch::Receiver<bool>) {
        engine
            .health
            .ok(self.name(), "waiting for the first run".into());
        loop {
            tokio::select! {
                _ = crate::components::stopped(stop.clone()) => return,
                _ = tokio::time::sleep(self.interval) => {}
            }
            match engine
                .verify_ledger(Operator::Console, None, Vec::new(), &|_, _| {})
                .await
            {
                Ok(v) if v.findings.is_empty() => {
                    engine
                        .selfcheck_findings
                        .store(0, std::sync::atomic::Ordering::Relaxed);
                    engine.health.ok(
                        self.name(),
                        format!(
                            "{} entries verified, {} checkpoints",
                            v.entries, v.checkpoints
                        ),
                    );
                }
                Ok(v) => {
                    let n = v.findings.len() as u64;
                    engine
                        .selfcheck_findings
                        .store(n, std::sync::atomic::Ordering::Relaxed);
                    for f in v.summary().notable() {
                        tracing::error!(component = "ledger-selfcheck", finding = %f, "ledger self-check finding");
                    }
                    engine.health.failing(
                        self.name(),
                        format!("{n} finding(s); first: {}", v.findings[0]),
                    );
                }
                Err(e) => {
                    tracing::warn!(component = "ledger-selfcheck", error = %e, "ledger self-check could not run");
                    engine.health.failing(self.name(), e.to_string());
                }
            }
        }
    }
}

impl Engine {
    /// Findings of the latest scheduled self-check (0 when clean or not run).
    pub fn ledger_selfcheck_findings(&self) -> u64 {
        self.selfcheck_findings
            .load(std::sync::atomic::Ordering::Relaxed)
    }
}
