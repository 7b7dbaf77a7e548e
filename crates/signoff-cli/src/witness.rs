//! Outside witnesses of the ledger (`[[witness]]` in the config) and
//! `signoff ledger reset-witness`.
//!
//! Every checkpoint the gateway signs is pushed to each configured witness:
//! a file (the latest signed note, replaced atomically — e.g. on another
//! mount that auditors read), an HTTP endpoint (the signed note POSTed as
//! `text/plain`), or a C2SP `tlog-witness` (`POST <url>/add-checkpoint`
//! with the old size and a consistency proof; the cosignature that comes
//! back is verified with the witness's key and kept, with the checkpoint,
//! in `ledger.cosigned` beside the witness file). A failing witness shows
//! in `/readyz` (component `witnesses`) and the log, and never stops
//! decisions.

use crate::config::Config;
use anyhow::{bail, Context, Result};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::Deserialize;
use signoff_engine::components::Component;
use signoff_engine::principals::Operator;
use signoff_engine::Engine;
use signoff_ledger::note::{self, CosignatureVerifier};
use signoff_store::StoredCheckpoint;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Health entry of the pushers in `/readyz`.
const HEALTH: &str = "witnesses";

/// How long to wait before pushing again to a witness that failed.
const RETRY: Duration = Duration::from_secs(5);

/// One `[[witness]]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WitnessConfig {
    /// `file`, `http` or `tlog-witness`.
    pub kind: String,
    /// For `file`: where to write the latest signed checkpoint.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// For `http`: the URL to POST each checkpoint to; for `tlog-witness`:
    /// the witness's submission prefix (`/add-checkpoint` is appended).
    #[serde(default)]
    pub url: Option<String>,
    /// For `tlog-witness`: the witness's cosigning key (vkey, algorithm 0x04).
    #[serde(default)]
    pub key: Option<String>,
}

/// A configured witness, checked.
#[derive(Debug, Clone)]
enum Target {
    File(PathBuf),
    Http(String),
    Tlog {
        url: String,
        verifier: Box<CosignatureVerifier>,
    },
}

impl Target {
    fn label(&self) -> String {
        match self {
            Target::File(p) => format!("file {}", p.display()),
            Target::Http(u) => format!("http {u}"),
            Target::Tlog { url, verifier } => format!("tlog-witness {} ({url})", verifier.name()),
        }
    }
}

impl WitnessConfig {
    /// Makes a relative `path` relative to `base`.
    pub fn resolve(&mut self, base: &Path) {
        if let Some(p) = &self.path {
            if p.is_relative() {
                self.path = Some(base.join(p));
            }
        }
    }

    fn target(&self, n: usize) -> Result<Target> {
        let at = format!("[[witness]] #{}", n + 1);
        let url = |what: &str| -> Result<String> {
            let u = self
                .url
                .clone()
                .with_context(|| format!("{at}: kind = \"{what}\" needs url"))?;
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                bail!("{at}: url `{u}` must start with http:// or https://");
            }
            Ok(u)
        };
        let unused = |field: &str, set: bool| -> Result<()> {
            if set {
                bail!("{at}: `{field}` does not apply to kind = \"{}\"", self.kind);
            }
            Ok(())
        };
        match self.kind.as_str() {
            "file" => {
                unused("url", self.url.is_some())?;
                unused("key", self.key.is_some())?;
                let p = self
                    .path
                    .clone()
                    .with_context(|| format!("{at}: kind = \"file\" needs path"))?;
                Ok(Target::File(p))
            }
            "http" => {
                unused("path", self.path.is_some())?;
                unused("key", self.key.is_some())?;
                Ok(Target::Http(url("http")?))
            }
            "tlog-witness" => {
                unused("path", self.path.is_some())?;
                let key = self.key.as_deref().with_context(|| {
                    format!("{at}: kind = \"tlog-witness\" needs key (the witness's vkey)")
                })?;
                let verifier = CosignatureVerifier::from_vkey(key)
                    .map_err(|e| anyhow::anyhow!("{at}: key: {e}"))?;
                Ok(Target::Tlog {
                    url: url("tlog-witness")?.trim_end_matches('/').to_owned(),
                    verifier: Box::new(verifier),
                })
            }
            other => bail!(
                "{at}: unknown kind `{other}` (expected \"file\", \"http\" or \"tlog-witness\")"
            ),
        }
    }
}

/// Checks every `[[witness]]` section.
pub fn validate(list: &[WitnessConfig]) -> Result<()> {
    for (n, w) in list.iter().enumerate() {
        w.target(n)?;
    }
    Ok(())
}

/// The pusher component for `config`, if any witness is configured.
pub fn component(config: &Config) -> Result<Option<Box<dyn Component>>> {
    if config.witness.is_empty() {
        return Ok(None);
    }
    let targets = config
        .witness
        .iter()
        .enumerate()
        .map(|(n, w)| w.target(n))
        .collect::<Result<Vec<_>>>()?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .context("cannot build the HTTP client for witnesses")?;
    Ok(Some(Box::new(Pusher {
        targets: targets
            .into_iter()
            .map(|t| TargetState {
                target: t,
                pushed: 0,
                witness_size: None,
                failing: None,
            })
            .collect(),
        http,
        cosigned: config.ledger_key.with_extension("cosigned"),
    })))
}

struct TargetState {
    target: Target,
    /// Largest checkpoint size pushed successfully.
    pushed: u64,
    /// For tlog-witness: the size the witness last cosigned, as far as we know.
    witness_size: Option<u64>,
    failing: Option<String>,
}

struct Pusher {
    targets: Vec<TargetState>,
    http: reqwest::Client,
    /// Where the latest checkpoint is kept with the cosignatures witnesses returned.
    cosigned: PathBuf,
}

#[async_trait::async_trait]
impl Component for Pusher {
    fn name(&self) -> &'static str {
        HEALTH
    }

    async fn run(mut self: Box<Self>, engine: Arc<Engine>, mut stop: watch::Receiver<bool>) {
        let mut rx = engine.signed_checkpoints();
        engine.report_health(HEALTH, Ok("waiting for the first checkpoint".into()));
        loop {
            let latest = rx.borrow_and_update().clone();
            if let Some(cp) = latest {
                self.push_all(&engine, &cp).await;
            }
            let retry = self.targets.iter().any(|t| t.failing.is_some());
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                changed = rx.changed() => if changed.is_err() { return },
                _ = tokio::time::sleep(RETRY), if retry => {}
            }
        }
    }
}

impl Pusher {
    async fn push_all(&mut self, engine: &Engine, cp: &StoredCheckpoint) {
        let mut cosignatures = Vec::new();
        for i in 0..self.targets.len() {
            if self.targets[i].pushed >= cp.size {
                continue;
            }
            let result = push(&self.http, engine, &mut self.targets[i], cp).await;
            let t = &mut self.targets[i];
            match result {
                Ok(lines) => {
                    if t.failing.take().is_some() {
                        tracing::info!(witness = %t.target.label(), size = cp.size, "witness push recovered");
                    }
                    tracing::debug!(witness = %t.target.label(), size = cp.size, "checkpoint pushed");
                    t.pushed = cp.size;
                    cosignatures.extend(lines);
                }
                Err(why) => {
                    if t.failing.as_deref() != Some(why.as_str()) {
                        tracing::warn!(witness = %t.target.label(), size = cp.size, error = %why, "witness push failed");
                    }
                    t.failing = Some(why);
                }
            }
        }
        if !cosignatures.is_empty() {
            let mut text = cp.note.clone();
            for line in &cosignatures {
                text.push_str(line);
                text.push('\n');
            }
            if let Err(e) =
                signoff_engine::witness::write_atomically(&self.cosigned, text.as_bytes())
            {
                tracing::warn!(file = %self.cosigned.display(), error = %e, "cannot keep the cosigned checkpoint");
            }
        }
        let failing: Vec<String> = self
            .targets
            .iter()
            .filter_map(|t| {
                t.failing
                    .as_ref()
                    .map(|w| format!("{}: {w}", t.target.label()))
            })
            .collect();
        let health = if failing.is_empty() {
            Ok(format!(
                "checkpoint {} pushed to {} witness(es)",
                cp.size,
                self.targets.len()
            ))
        } else {
            Err(failing.join("; "))
        };
        engine.report_health(HEALTH, health);
    }
}

/// Pushes `cp` to one witness; returns the verified cosignature lines.
async fn push(
    http: &reqwest::Client,
    engine: &Engine,
    t: &mut TargetState,
    cp: &StoredCheckpoint,
) -> Result<Vec<String>, String> {
    match &t.target {
        Target::File(path) => signoff_engine::witness::write_atomically(path, cp.note.as_bytes())
            .map(|()| Vec::new())
            .map_err(|e| format!("cannot write {}: {e}", path.display())),
        Target::Http(url) => {
            let resp = http
                .post(url)
                .header("content-type", "text/plain; charset=utf-8")
                .body(cp.note.clone())
                .send()
                .await
                .map_err(|e| format!("cannot reach {url}: {e}"))?;
            if resp.status().is_success() {
                Ok(Vec::new())
            } else {
                Err(format!("{url} answered {}", resp.status()))
            }
        }
        Target::Tlog { url, verifier } => {
            let (url, verifier) = (url.clone(), (**verifier).clone());
            let (lines, size) =
                add_checkpoint(http, engine, &url, &verifier, t.witness_size, cp).await?;
            t.witness_size = Some(size);
            for l in &lines {
                tracing::info!(witness = verifier.name(), size = cp.size, cosignature = %l, "checkpoint cosigned");
            }
            Ok(lines)
        }
    }
}

/// The C2SP tlog-witness `add-checkpoint` exchange, retried once with the
/// size a 409 names. Returns the verified cosignature lines and the size
/// the witness now holds.
async fn add_checkpoint(
    http: &reqwest::Client,
    engine: &Engine,
    url: &str,
    verifier: &CosignatureVerifier,
    known: Option<u64>,
    cp: &StoredCheckpoint,
) -> Result<(Vec<String>, u64), String> {
    let endpoint = format!("{url}/add-checkpoint");
    let body_text =
        note::note_body(&cp.note).ok_or_else(|| "our checkpoint note has no body".to_owned())?;
    let mut old = known.unwrap_or(0).min(cp.size);
    for _ in 0..3 {
        let proof = if old == 0 || old == cp.size {
            Vec::new()
        } else {
            engine
                .ledger(Operator::Console)
                .map_err(|e| e.to_string())?
                .consistency_proof(old, cp.size)
                .await
                .map_err(|e| {
                    format!(
                        "cannot build the consistency proof {old} → {}: {e}",
                        cp.size
                    )
                })?
        };
        let mut req = format!("old {old}\n");
        for h in &proof {
            req.push_str(&B64.encode(h));
            req.push('\n');
        }
        req.push('\n');
        req.push_str(&cp.note);
        let resp = http
            .post(&endpoint)
            .header("content-type", "text/plain; charset=utf-8")
            .body(req)
            .send()
            .await
            .map_err(|e| format!("cannot reach {endpoint}: {e}"))?;
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let text = resp
            .text()
            .await
            .map_err(|e| format!("{endpoint}: cannot read the answer: {e}"))?;
        match status {
            200 => {
                let cosigs = verifier.verify(body_text, &text).map_err(|e| {
                    format!("{endpoint} answered 200 without a valid cosignature: {e}")
                })?;
                return Ok((cosigs.into_iter().map(|c| c.line).collect(), cp.size));
            }
            409 if content_type.starts_with("text/x.tlog.size") => {
                let theirs: u64 = text.trim_end_matches('\n').parse().map_err(|_| {
                    format!("{endpoint} answered 409 with a malformed size {text:?}")
                })?;
                if theirs == old {
                    return Err(format!(
                        "{endpoint} refused checkpoint {} (409) at the size it holds",
                        cp.size
                    ));
                }
                if theirs > cp.size {
                    // It already cosigned a later checkpoint (another replica).
                    return Ok((Vec::new(), theirs));
                }
                old = theirs;
            }
            409 => {
                return Err(format!(
                    "{endpoint} holds a different checkpoint of size {} than ours (409): the log \
                     it saw before is not this one",
                    cp.size
                ))
            }
            _ => {
                let shown: String = text.chars().take(200).collect();
                return Err(format!(
                    "{endpoint} answered {status}: {}",
                    shown.trim_end()
                ));
            }
        }
    }
    Err(format!("{endpoint} kept answering 409 with another size"))
}

// ---------------------------------------------------------------- reset

/// `signoff ledger …`.
#[derive(Debug, clap::Subcommand)]
pub enum LedgerCmd {
    /// Accept the database's log, as it is now, as the ledger's trust
    /// anchor. Only for an operator who has established that the database
    /// is genuine (e.g. restored from a backup) or who starts a new log on
    /// purpose; recorded as a `ledger_witness_reset` event.
    ResetWitness(ResetArgs),
}

/// `signoff ledger reset-witness`.
#[derive(Debug, clap::Args)]
pub struct ResetArgs {
    /// Config file of the gateway.
    #[arg(long)]
    config: PathBuf,
    /// Why (recorded in the audit event).
    #[arg(long)]
    reason: String,
    /// Create a new ledger key (only when the key file is missing): the
    /// checkpoints signed before stay verifiable only with the old key.
    #[arg(long)]
    new_key: bool,
    /// Required: history before this point is no longer vouched for by the
    /// gateway's witness file.
    #[arg(long, required = true)]
    i_understand_this_trusts_the_database: bool,
}

/// Runs a `ledger` subcommand.
pub async fn run(cmd: LedgerCmd) -> Result<i32> {
    match cmd {
        LedgerCmd::ResetWitness(args) => reset(args).await,
    }
}

async fn reset(args: ResetArgs) -> Result<i32> {
    let config = Config::load(&args.config)?;
    let store = signoff_store::open(&config.database)
        .await
        .with_context(|| {
            format!(
                "cannot open database {}",
                signoff_store::redact(&config.database)
            )
        })?;
    let key = if args.new_key {
        if config.ledger_key.exists() {
            bail!(
                "--new-key: the ledger key {} exists; move it away first (keep it: auditors need its \
                 verifier key for the checkpoints it signed)",
                config.ledger_key.display()
            );
        }
        signoff_engine::witness::create_key(&config.ledger_key, &config.ledger_origin)?
    } else {
        signoff_engine::witness::open_key(&config.ledger_key, &config.ledger_origin, &*store)
            .await?
    };
    let vkey = key.vkey();
    let (_, engine) = crate::serve::start_engine(&config, store, key).await?;
    let cp = engine
        .reset_witness(&args.reason, args.new_key)
        .await
        .context("cannot reset the witness")?;
    println!(
        "witness reset: the ledger's trust anchor is now checkpoint {} (root {}), signed by {vkey}",
        cp.size,
        B64.encode(cp.root)
    );
    eprintln!(
        "recorded as a ledger_witness_reset event; restart running gateways if the key changed"
    );
    Ok(0)
}
