//! The Merkle ledger over the audit events: signed checkpoints, proofs and
//! the checkpointer task.
//!
//! The store keeps the hash of every perfect subtree, written in the same
//! transaction as the events, so every root and proof here costs one query
//! of O(log n) rows. Checkpoints are signed C2SP notes; before signing a new
//! one the engine proves it consistent with the latest stored one, so it
//! never signs two inconsistent checkpoints.

use crate::{Engine, EngineError};
use jiff::Timestamp;
use signoff_ledger::merkle::{self, Hash};
use signoff_ledger::note::{Checkpoint, SigningKey};
use signoff_store::{Change, Commit, StoreError, StoredCheckpoint};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Longest time between an append and the checkpoint that covers it.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);

/// Reads the ledger signing key from `path`, or creates one named `origin`
/// there (mode 0600) if the file does not exist. Use
/// [`crate::witness::open_key`] when a database is at hand: it refuses to
/// create a key for a ledger that already has entries.
pub fn load_or_create_key(path: &Path, origin: &str) -> Result<SigningKey, EngineError> {
    match std::fs::read_to_string(path) {
        Ok(text) => SigningKey::from_skey(text.trim())
            .map_err(|e| EngineError::Invalid(format!("ledger key {}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            crate::witness::create_key(path, origin)
        }
        Err(e) => Err(EngineError::Internal(format!(
            "cannot read ledger key {}: {e}",
            path.display()
        ))),
    }
}

pub(crate) fn write_secret(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    opts.open(path)?.write_all(text.as_bytes())
}

fn corrupt(e: StoreError) -> EngineError {
    match e {
        StoreError::Corrupt(m) => {
            EngineError::Internal(format!("ledger storage is inconsistent: {m}"))
        }
        other => other.into(),
    }
}

/// Read access to the ledger, granted by [`Engine::ledger`] to auditors,
/// admins and the console operator.
#[derive(Debug, Clone, Copy)]
pub struct LedgerReader<'a> {
    engine: &'a Engine,
}

impl LedgerReader<'_> {
    /// The verifier key (`name+id+key`), if a signing key is configured.
    pub fn vkey(&self) -> Option<String> {
        self.engine.ledger_vkey()
    }
    /// Number of entries.
    pub async fn size(&self) -> Result<u64, EngineError> {
        self.engine.ledger_size().await
    }
    /// The RFC 6962 root of the first `size` entries.
    pub async fn root(&self, size: u64) -> Result<Hash, EngineError> {
        self.engine.ledger_root(size).await
    }
    /// The inclusion proof of entry `index` in the tree of size `size`.
    pub async fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, EngineError> {
        self.engine.inclusion_proof(index, size).await
    }
    /// The consistency proof between the trees of sizes `from` and `to`.
    pub async fn consistency_proof(&self, from: u64, to: u64) -> Result<Vec<Hash>, EngineError> {
        self.engine.consistency_proof(from, to).await
    }
    /// The latest signed checkpoint.
    pub async fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, EngineError> {
        self.engine.latest_checkpoint().await
    }
    /// Entries from index `from`, at most `limit` (capped at 1,000).
    pub async fn entries(
        &self,
        from: u64,
        limit: usize,
    ) -> Result<Vec<signoff_core::AuditEvent>, EngineError> {
        Ok(self.engine.store.events(from, limit.clamp(1, 1000)).await?)
    }
    /// The recorded leaf hashes from index `from`, at most `limit`.
    pub async fn leaf_hashes(
        &self,
        from: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Hash)>, EngineError> {
        Ok(self.engine.store.ledger_leaves(from, limit).await?)
    }
}

impl Engine {
    /// Read access to the ledger for `operator`: auditors and admins over
    /// the API, or the console operator.
    pub fn ledger(
        &self,
        operator: crate::principals::Operator<'_>,
    ) -> Result<LedgerReader<'_>, EngineError> {
        if let crate::principals::Operator::Caller(caller) = operator {
            crate::identity::require_auditor(caller)?;
        }
        Ok(LedgerReader { engine: self })
    }

    /// The verifier key (`name+id+key`) of the ledger, if a signing key is configured.
    pub(crate) fn ledger_vkey(&self) -> Option<String> {
        self.ledger_key.as_ref().map(|k| k.vkey())
    }

    /// Number of entries in the ledger.
    pub(crate) async fn ledger_size(&self) -> Result<u64, EngineError> {
        Ok(self.store.event_count().await?)
    }

    fn check_size(size: u64, have: u64) -> Result<(), EngineError> {
        if size > have {
            return Err(EngineError::Invalid(format!(
                "tree size {size} is larger than the ledger ({have} entries)"
            )));
        }
        Ok(())
    }

    /// The RFC 6962 root of the first `size` entries.
    pub(crate) async fn ledger_root(&self, size: u64) -> Result<Hash, EngineError> {
        Self::check_size(size, self.ledger_size().await?)?;
        let nodes = self
            .store
            .ledger_nodes(&merkle::perfect_subtrees(0, size))
            .await
            .map_err(corrupt)?;
        Ok(merkle::range_hash(&nodes))
    }

    async fn proof(&self, ranges: Vec<(u64, u64)>) -> Result<Vec<Hash>, EngineError> {
        let coords: Vec<(u32, u64)> = ranges
            .iter()
            .flat_map(|&(a, b)| merkle::perfect_subtrees(a, b))
            .collect();
        let nodes = self.store.ledger_nodes(&coords).await.map_err(corrupt)?;
        let mut it = nodes.into_iter();
        merkle::proof_from_nodes(&ranges, |level, index| {
            it.next().ok_or_else(|| {
                EngineError::Internal(format!("ledger node ({level}, {index}) missing"))
            })
        })
    }

    /// The inclusion proof of entry `index` in the tree of size `size` (RFC 9162 order).
    pub(crate) async fn inclusion_proof(
        &self,
        index: u64,
        size: u64,
    ) -> Result<Vec<Hash>, EngineError> {
        Self::check_size(size, self.ledger_size().await?)?;
        let ranges = merkle::inclusion_ranges(index, size)
            .map_err(|e| EngineError::Invalid(e.to_string()))?;
        self.proof(ranges).await
    }

    /// The consistency proof between the trees of sizes `from` and `to`.
    pub(crate) async fn consistency_proof(
        &self,
        from: u64,
        to: u64,
    ) -> Result<Vec<Hash>, EngineError> {
        Self::check_size(to, self.ledger_size().await?)?;
        let ranges = merkle::consistency_ranges(from, to)
            .map_err(|e| EngineError::Invalid(e.to_string()))?;
        self.proof(ranges).await
    }

    /// The latest signed checkpoint.
    pub(crate) async fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, EngineError> {
        Ok(self.store.latest_checkpoint().await?)
    }

    /// Signs a checkpoint for the current size if it grew since the latest
    /// one. The new root is first proven consistent with the latest stored
    /// checkpoint and with the one in the witness file (the last this
    /// gateway signed); if either fails, nothing is signed, the ledger
    /// becomes untrusted and the error says why.
    pub async fn checkpoint_now(&self) -> Result<Option<StoredCheckpoint>, EngineError> {
        if self.ledger_key.is_none() {
            return Ok(None);
        }
        self.require_trusted_ledger().await?;
        self.sign_checkpoint().await
    }

    /// [`Engine::checkpoint_now`] once the witness is known to be trusted.
    pub(crate) async fn sign_checkpoint(&self) -> Result<Option<StoredCheckpoint>, EngineError> {
        let Some(key) = &self.ledger_key else {
            return Ok(None);
        };
        let size = self.ledger_size().await?;
        let latest = self.store.latest_checkpoint().await?;
        if latest.as_ref().is_some_and(|l| l.size >= size) {
            return Ok(None);
        }
        let root = self.ledger_root(size).await?;
        if let Some(prev) = &latest {
            let proof = self.consistency_proof(prev.size, size).await?;
            merkle::verify_consistency(prev.size, size, &prev.root, &root, &proof).map_err(|e| {
                EngineError::Internal(format!(
                    "refusing to sign: tree of size {size} is not consistent with checkpoint {}: {e}",
                    prev.size
                ))
            })?;
        }
        if let Some(saved) = self.witnessed_checkpoint() {
            let verdict = if saved.size > size {
                Err(format!(
                    "the database holds {size} ledger entries, but this gateway signed a checkpoint of {} entries: the log was truncated or the database replaced",
                    saved.size
                ))
            } else {
                self.prove_consistent(&saved, size).await?.map_err(|why| {
                    format!(
                        "the database's log is not consistent with the checkpoint of {} entries this gateway signed: history was rewritten ({why})",
                        saved.size
                    )
                })
            };
            if let Err(why) = verdict {
                self.distrust(why.clone());
                return Err(EngineError::LedgerUntrusted(why));
            }
        }
        let checkpoint = Checkpoint {
            origin: key.name().to_owned(),
            size,
            root,
        };
        let note = key.sign(&checkpoint);
        let stored = StoredCheckpoint {
            size,
            root,
            note,
            created_at: self.now(),
        };
        // The witness file first: a crash before the commit leaves a file
        // ahead of the database, which the next check restores from.
        self.save_witness(&stored.note)?;
        self.remember_signed(checkpoint);
        match self
            .store
            .commit(Commit {
                changes: vec![Change::InsertCheckpoint(stored.clone())],
                events: vec![],
            })
            .await
        {
            Ok(_) => {
                self.publish_checkpoint(stored.clone());
                Ok(Some(stored))
            }
            // another replica signed the same size first
            Err(StoreError::Duplicate(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Tells witness pushers about a checkpoint signed (or verified) here.
    pub(crate) fn publish_checkpoint(&self, cp: StoredCheckpoint) {
        self.signed.send_if_modified(|cur| {
            if cur.as_ref().is_none_or(|c| c.size < cp.size) {
                *cur = Some(cp);
                true
            } else {
                false
            }
        });
    }

    /// The latest checkpoint signed or verified by this gateway, as it
    /// changes (for pushing to external witnesses).
    pub fn signed_checkpoints(&self) -> tokio::sync::watch::Receiver<Option<StoredCheckpoint>> {
        self.signed.subscribe()
    }

    /// Signs checkpoints until `shutdown`: at most [`CHECKPOINT_INTERVAL`]
    /// after any append, and once more on the way out.
    pub(crate) async fn run_checkpointer(
        self: Arc<Self>,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        if self.ledger_key.is_none() {
            return;
        }
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => {
                    let _ = self.checkpoint_now().await;
                    return;
                }
                _ = tokio::time::sleep(CHECKPOINT_INTERVAL) => {}
            }
            // An untrusted ledger is checked again each round, so an
            // operator's `signoff ledger reset-witness` (or a restored
            // file) takes effect without a restart.
            if self.ledger_untrusted().is_some() {
                match self.check_witness().await {
                    Ok(None) => {}
                    Ok(Some(why)) => {
                        self.health.failing(
                            "checkpointer",
                            format!("not signing: the ledger is not trusted: {why}"),
                        );
                        continue;
                    }
                    Err(e) => {
                        self.health
                            .failing("checkpointer", format!("witness check failed: {e}"));
                        continue;
                    }
                }
            }
            match self.checkpoint_now().await {
                Ok(Some(cp)) => self
                    .health
                    .ok("checkpointer", format!("signed size {}", cp.size)),
                Ok(None) => self.health.ok("checkpointer", "up to date".into()),
                Err(e) => self
                    .health
                    .failing("checkpointer", format!("checkpoint failed: {e}")),
            }
        }
    }

    /// When the checkpoint was signed, for display.
    pub fn checkpoint_time(cp: &StoredCheckpoint) -> Timestamp {
        cp.created_at
    }
}
