//! The gateway's own witness of its ledger.
//!
//! Someone with write access to the database can drop the append-only
//! triggers, rewrite events, rebuild the Merkle nodes and delete the signed
//! checkpoints; the database alone then cannot tell. So the gateway keeps
//! the last checkpoint it signed *outside* the database, in a file beside
//! its ledger key ([`WitnessFile`], written atomically, mode 0600), and at
//! start and before signing each new checkpoint proves the database's log
//! consistent with it (an RFC 6962 consistency proof from the stored tree).
//!
//! When that fails — history rewritten, the log truncated, the database
//! replaced, the key changed — the ledger is *untrusted*: nothing is signed,
//! `/readyz` reports not ready, and decisions (submit, review, cancel,
//! claim) are refused with [`EngineError::LedgerUntrusted`] until an
//! operator acts. Accepting the database's log as a new trust anchor is an
//! explicit, recorded act: [`Engine::reset_witness`] (`signoff ledger
//! reset-witness`), which appends a `ledger_witness_reset` event.

use crate::{Engine, EngineError};
use signoff_core::{AuditEvent, EventKind};
use signoff_ledger::merkle;
use signoff_ledger::note::{Checkpoint, NoteError, SigningKey};
use signoff_store::{Change, Commit, StoredCheckpoint};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The health entry (in `/readyz`) that says whether the ledger is trusted.
pub const HEALTH_NAME: &str = "ledger";

/// The file holding the last checkpoint this gateway signed.
#[derive(Debug, Clone)]
pub struct WitnessFile {
    path: PathBuf,
}

impl WitnessFile {
    /// The witness file beside the ledger key `key_path`: `ledger.key` →
    /// `ledger.checkpoint`.
    pub fn beside_key(key_path: &Path) -> WitnessFile {
        WitnessFile {
            path: key_path.with_extension("checkpoint"),
        }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The signed note it holds, or `None` if the file does not exist.
    pub fn read(&self) -> std::io::Result<Option<String>> {
        match std::fs::read_to_string(&self.path) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Replaces its contents with `note`: written to a temporary file in
    /// the same directory (mode 0600), synced, renamed over the old one, and
    /// the directory synced, so a crash leaves the old or the new note.
    pub fn write(&self, note: &str) -> std::io::Result<()> {
        write_atomically(&self.path, note.as_bytes())
    }
}

/// Writes `bytes` to `path` atomically (temporary file, fsync, rename,
/// fsync of the directory); the file is created with mode 0600.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "witness".into());
    // Unique per process and call, so replicas sharing the directory never
    // write into each other's temporary file.
    let tmp = dir.join(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        ulid::Ulid::new()
    ));
    let result = (|| {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut file = opts.open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Whether the database's log may be signed and decided on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Trust {
    /// Not checked yet (checked before the first signature).
    Unchecked,
    /// Consistent with the witness file (or a new log).
    Trusted,
    /// Not consistent; why.
    Untrusted(String),
}

/// What the engine knows about its witness.
pub(crate) struct WitnessState {
    pub(crate) file: Option<WitnessFile>,
    pub(crate) trust: Mutex<Trust>,
    /// The last checkpoint signed here (or read from the file and verified).
    pub(crate) saved: Mutex<Option<Checkpoint>>,
}

impl WitnessState {
    pub(crate) fn new(file: Option<WitnessFile>) -> Self {
        WitnessState {
            trust: Mutex::new(if file.is_some() {
                Trust::Unchecked
            } else {
                Trust::Trusted
            }),
            file,
            saved: Mutex::new(None),
        }
    }

    pub(crate) fn trust(&self) -> Trust {
        self.trust.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set_trust(&self, t: Trust) {
        *self.trust.lock().unwrap_or_else(|p| p.into_inner()) = t;
    }

    pub(crate) fn saved(&self) -> Option<Checkpoint> {
        self.saved.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set_saved(&self, cp: Option<Checkpoint>) {
        *self.saved.lock().unwrap_or_else(|p| p.into_inner()) = cp;
    }
}

/// The signer (`name+id`) of the first signature line of `note`, for
/// messages about a note our key does not verify.
fn signer_of(note: &str) -> Option<String> {
    use base64::Engine as _;
    let line = note.lines().find(|l| l.starts_with("\u{2014} "))?;
    let rest = line.strip_prefix("\u{2014} ")?;
    let (name, b64) = rest.split_once(' ')?;
    let blob = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    let id = blob.get(..4)?;
    Some(format!("{name}+{}", hex::encode(id)))
}

fn key_label(key: &SigningKey) -> String {
    format!("{}+{:08x}", key.name(), key.key_id())
}

/// Reads the ledger signing key from `path`. If the file does not exist a
/// key named `origin` is created there (mode 0600) — but only for a new
/// log: when the database already holds ledger entries or checkpoints, or a
/// witness file exists beside the key, a missing key is an error (a new key
/// would silently start a new log; see `signoff ledger reset-witness`).
pub async fn open_key(
    path: &Path,
    origin: &str,
    store: &dyn signoff_store::Store,
) -> Result<SigningKey, EngineError> {
    match std::fs::read_to_string(path) {
        Ok(text) => SigningKey::from_skey(text.trim())
            .map_err(|e| EngineError::Invalid(format!("ledger key {}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let entries = store.event_count().await?;
            let latest = store.latest_checkpoint().await?;
            let witness = WitnessFile::beside_key(path);
            let has_witness = witness.path().exists();
            if entries > 0 || latest.is_some() || has_witness {
                let mut held = vec![format!("{entries} ledger entries")];
                if let Some(cp) = &latest {
                    held.push(format!("checkpoints up to size {}", cp.size));
                }
                if has_witness {
                    held.push(format!("the witness file {}", witness.path().display()));
                }
                return Err(EngineError::Invalid(format!(
                    "ledger key {} does not exist, but the ledger already has {}: restore the key \
                     file; a new key starts a new log and is only created by \
                     `signoff ledger reset-witness --new-key`",
                    path.display(),
                    held.join(" and ")
                )));
            }
            create_key(path, origin)
        }
        Err(e) => Err(EngineError::Internal(format!(
            "cannot read ledger key {}: {e}",
            path.display()
        ))),
    }
}

/// Creates a new key named `origin` at `path` (which must not exist).
pub fn create_key(path: &Path, origin: &str) -> Result<SigningKey, EngineError> {
    let key = SigningKey::generate(origin)
        .map_err(|e| EngineError::Invalid(format!("ledger origin `{origin}`: {e}")))?;
    crate::ledger::write_secret(path, &format!("{}\n", key.to_skey())).map_err(|e| {
        EngineError::Internal(format!("cannot create ledger key {}: {e}", path.display()))
    })?;
    Ok(key)
}

impl Engine {
    /// Whether decisions and signatures may proceed. Checks the witness
    /// first if that was not done yet.
    pub async fn require_trusted_ledger(&self) -> Result<(), EngineError> {
        match self.witness.trust() {
            Trust::Trusted => Ok(()),
            Trust::Untrusted(why) => Err(EngineError::LedgerUntrusted(why)),
            Trust::Unchecked => match self.check_witness().await? {
                None => Ok(()),
                Some(why) => Err(EngineError::LedgerUntrusted(why)),
            },
        }
    }

    /// Why the ledger is not trusted, if it is not (`None` also while unchecked).
    pub fn ledger_untrusted(&self) -> Option<String> {
        match self.witness.trust() {
            Trust::Untrusted(why) => Some(why),
            _ => None,
        }
    }

    /// Proves the database's log consistent with the witness file and
    /// records the verdict (health entry [`HEALTH_NAME`], log line).
    /// Returns why the ledger is untrusted, or `None` if it is trusted.
    /// `Err` only when the database cannot be read (nothing is decided then).
    pub async fn check_witness(&self) -> Result<Option<String>, EngineError> {
        let verdict = self.witness_verdict().await?;
        match &verdict {
            Ok(detail) => {
                if self.witness.trust() != Trust::Trusted {
                    tracing::info!(%detail, "ledger trusted");
                }
                self.witness.set_trust(Trust::Trusted);
                self.health.ok(HEALTH_NAME, detail.clone());
                if let Some(cp) = self.store.latest_checkpoint().await? {
                    self.publish_checkpoint(cp);
                }
                Ok(None)
            }
            Err(why) => {
                if self.witness.trust() != Trust::Untrusted(why.clone()) {
                    tracing::error!(
                        reason = %why,
                        "ledger NOT trusted: refusing to sign checkpoints and to decide requests until an operator acts"
                    );
                }
                self.witness.set_trust(Trust::Untrusted(why.clone()));
                self.health.failing(HEALTH_NAME, why.clone());
                Ok(Some(why.clone()))
            }
        }
    }

    /// `Ok(Ok(detail))` when trusted, `Ok(Err(why))` when not.
    async fn witness_verdict(&self) -> Result<Result<String, String>, EngineError> {
        let Some(file) = &self.witness.file else {
            return Ok(Ok("no witness file configured".into()));
        };
        let Some(key) = &self.ledger_key else {
            return Ok(Ok("no ledger key configured".into()));
        };
        let shown = file.path().display().to_string();
        let size = self.ledger_size().await?;
        let latest = self.store.latest_checkpoint().await?;
        let verifier = key.verifier();
        // Every checkpoint in the database must be this key's.
        if let Some(db) = &latest {
            if let Err(e) = verifier.verify_note(&db.note) {
                let by = signer_of(&db.note).unwrap_or_else(|| "an unknown key".into());
                return Ok(Err(format!(
                    "the database's latest checkpoint (size {}) is not signed by the ledger key {} \
                     (signed by {by}: {e}): the ledger key was replaced, or the database belongs to another log",
                    db.size,
                    key_label(key)
                )));
            }
        }
        let text = match file.read() {
            Ok(t) => t,
            Err(e) => return Ok(Err(format!("cannot read the witness file {shown}: {e}"))),
        };
        let Some(text) = text else {
            return Ok(match &latest {
                None => {
                    self.witness.set_saved(None);
                    Ok(format!(
                        "new log: no checkpoint signed yet ({size} entries); witness file {shown}"
                    ))
                }
                Some(db) => Err(format!(
                    "the witness file {shown} (the last checkpoint this gateway signed) is missing, \
                     but the database holds signed checkpoints up to size {}: restore the file, or \
                     accept the database's log with `signoff ledger reset-witness`",
                    db.size
                )),
            });
        };
        let saved = match verifier.verify_note(&text) {
            Ok(cp) => cp,
            Err(NoteError::NotSigned { .. }) => {
                let by = signer_of(&text).unwrap_or_else(|| "an unknown key".into());
                return Ok(Err(format!(
                    "the witness file {shown} was signed by {by}, not by the ledger key {}: the ledger \
                     key was replaced",
                    key_label(key)
                )));
            }
            Err(e) => {
                return Ok(Err(format!(
                    "the witness file {shown} is not a checkpoint signed by the ledger key {}: {e}",
                    key_label(key)
                )))
            }
        };
        if saved.origin != key.name() {
            return Ok(Err(format!(
                "the witness file {shown} is a checkpoint of log `{}`, not of `{}`",
                saved.origin,
                key.name()
            )));
        }
        if size < saved.size {
            return Ok(Err(format!(
                "the database holds {size} ledger entries, but this gateway signed a checkpoint of \
                 {} entries (witness file {shown}): the log was truncated or the database replaced",
                saved.size
            )));
        }
        if let Err(why) = self.prove_consistent(&saved, size).await? {
            return Ok(Err(format!(
                "the database's log is not consistent with the checkpoint of {} entries this gateway \
                 signed (witness file {shown}): history was rewritten ({why})",
                saved.size
            )));
        }
        // A checkpoint we signed whose database row is gone (deleted, or a
        // crash between writing the file and the commit) is put back.
        if latest.as_ref().is_none_or(|db| db.size < saved.size) {
            tracing::warn!(
                size = saved.size,
                "the database lacks the checkpoint this gateway signed last; restoring it from the witness file"
            );
            let restored = StoredCheckpoint {
                size: saved.size,
                root: saved.root,
                note: text.clone(),
                created_at: self.now(),
            };
            match self
                .store
                .commit(Commit {
                    changes: vec![Change::InsertCheckpoint(restored)],
                    events: vec![],
                })
                .await
            {
                Ok(_) | Err(signoff_store::StoreError::Duplicate(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let detail = format!(
            "consistent with checkpoint {} signed here (witness file {shown}); {size} entries",
            saved.size
        );
        self.witness.set_saved(Some(saved));
        Ok(Ok(detail))
    }

    /// Proves the stored tree of `size` entries consistent with `cp`:
    /// `Ok(Err(why))` if it is not.
    pub(crate) async fn prove_consistent(
        &self,
        cp: &Checkpoint,
        size: u64,
    ) -> Result<Result<(), String>, EngineError> {
        let nodes = async {
            let root = self.ledger_root(size).await?;
            let proof = self.consistency_proof(cp.size, size).await?;
            Ok::<_, EngineError>((root, proof))
        }
        .await;
        let (root, proof) = match nodes {
            Ok(v) => v,
            Err(EngineError::Unavailable(m)) => return Err(EngineError::Unavailable(m)),
            Err(e) => return Ok(Err(format!("the stored tree cannot be read: {e}"))),
        };
        Ok(
            merkle::verify_consistency(cp.size, size, &cp.root, &root, &proof)
                .map_err(|e| format!("consistency proof from {} to {size}: {e}", cp.size)),
        )
    }

    /// The last checkpoint this gateway signed or verified from its witness file.
    pub fn witnessed_checkpoint(&self) -> Option<Checkpoint> {
        self.witness.saved()
    }

    /// Saves `note` (signed here, of `cp`) in the witness file, before it is
    /// committed to the database.
    pub(crate) fn save_witness(&self, note: &str) -> Result<(), EngineError> {
        if let Some(file) = &self.witness.file {
            file.write(note).map_err(|e| {
                EngineError::Internal(format!(
                    "cannot write the witness file {}: {e}",
                    file.path().display()
                ))
            })?;
        }
        Ok(())
    }

    pub(crate) fn remember_signed(&self, cp: Checkpoint) {
        let newer = self.witness.saved().is_none_or(|s| s.size < cp.size);
        if newer {
            self.witness.set_saved(Some(cp));
        }
    }

    pub(crate) fn distrust(&self, why: String) {
        tracing::error!(reason = %why, "ledger NOT trusted: refusing to sign and to decide");
        self.health.failing(HEALTH_NAME, why.clone());
        self.witness.set_trust(Trust::Untrusted(why));
    }

    /// Makes the database's log, as it is now, the trust anchor: records a
    /// `ledger_witness_reset` event (with what was there before and `reason`),
    /// then signs a checkpoint covering it and saves it in the witness file.
    /// Refused if the database's own latest checkpoint is not consistent
    /// with its log (run `signoff audit verify` first). Console only.
    pub async fn reset_witness(
        &self,
        reason: &str,
        new_key: bool,
    ) -> Result<StoredCheckpoint, EngineError> {
        if reason.trim().is_empty() {
            return Err(EngineError::Invalid(
                "a reason is required to reset the witness".into(),
            ));
        }
        let Some(key) = &self.ledger_key else {
            return Err(EngineError::Invalid("no ledger key is configured".into()));
        };
        let Some(file) = &self.witness.file else {
            return Err(EngineError::Invalid("no witness file is configured".into()));
        };
        let size = self.ledger_size().await?;
        let latest = self.store.latest_checkpoint().await?;
        if let Some(db) = &latest {
            let cp = Checkpoint {
                origin: key.name().to_owned(),
                size: db.size,
                root: db.root,
            };
            if db.size > size {
                return Err(EngineError::Invalid(format!(
                    "the database's checkpoint {} covers more than its {size} entries: run `signoff audit verify`",
                    db.size
                )));
            }
            if let Err(why) = self.prove_consistent(&cp, size).await? {
                return Err(EngineError::Invalid(format!(
                    "the database's own checkpoint {} is not consistent with its log ({why}): run `signoff audit verify`",
                    db.size
                )));
            }
        }
        let previous = match file.read() {
            Ok(t) => serde_json::Value::from(t),
            Err(e) => serde_json::json!({ "unreadable": e.to_string() }),
        };
        // Why it was untrusted, as this process sees it now.
        let untrusted_because = self.witness_verdict().await?.err();
        let before = self.witness.trust();
        let event = AuditEvent::new(EventKind::LedgerWitnessReset, self.now(), "console")
            .with_reason(reason.to_owned())
            .with_detail(serde_json::json!({
                "witness_file": file.path().display().to_string(),
                "previous_witness_checkpoint": previous,
                "untrusted_because": untrusted_because,
                "database_entries": size,
                "database_latest_checkpoint": latest.as_ref().map(|c| c.size),
                "key": key.vkey(),
                "new_key": new_key,
            }));
        self.store
            .commit(Commit {
                changes: vec![],
                events: vec![event],
            })
            .await?;
        self.witness.set_saved(None);
        self.witness.set_trust(Trust::Trusted);
        match self.sign_checkpoint().await {
            Ok(Some(cp)) => {
                self.health
                    .ok(HEALTH_NAME, format!("reset at checkpoint {}", cp.size));
                Ok(cp)
            }
            Ok(None) => Err(EngineError::Internal(
                "no checkpoint was signed after the reset".into(),
            )),
            Err(e) => {
                self.witness.set_trust(before);
                Err(e)
            }
        }
    }
}
