//! `signoff audit …`: read the trail, verify the ledger (live or an
//! offline bundle), export evidence bundles and produce the period report.

mod check;
mod report;

use crate::config::Config;
use crate::Remote;
use anyhow::{anyhow, bail, Context, Result};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use clap::{Args, Subcommand};
use jiff::Timestamp;
use signoff_core::{AuditEvent, RequestRecord};
use signoff_engine::principals::Operator;
use signoff_engine::Engine;
use signoff_ledger::bundle;
use signoff_ledger::leaf;
use signoff_ledger::merkle::{self, Frontier};
use signoff_ledger::note::{SigningKey, Verifier};
use signoff_store::{RequestFilter, Store, StoredCheckpoint};
use std::collections::{BTreeSet, HashMap};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, Subcommand)]
pub enum AuditCmd {
    /// Print audit events (auditor or admin).
    Events {
        /// First index.
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// Verify the whole ledger in the database (--config), or an exported
    /// evidence bundle offline (--bundle DIR --key VKEY).
    Verify(VerifyArgs),
    /// Export the entries of a period with inclusion proofs into a signed
    /// checkpoint, as an evidence bundle that verifies offline.
    Export(ExportArgs),
    /// The population of privileged actions of a period, from the ledger,
    /// with approvals, execution and outcome per request.
    Report(ReportArgs),
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Config file of the gateway whose database to verify.
    #[arg(long, required_unless_present = "bundle", conflicts_with = "bundle")]
    config: Option<PathBuf>,
    /// An evidence bundle directory to verify offline (needs --key).
    #[arg(long, requires = "key")]
    bundle: Option<PathBuf>,
    /// The log's verifier key (`name+id+base64`), or a file holding it.
    /// With --config it defaults to the key of the configured ledger_key
    /// (with a warning: pin the key you got from the log's operator).
    #[arg(long)]
    key: Option<String>,
    /// A checkpoint saved earlier (the signed note as served by
    /// `GET /v1/ledger/checkpoint`): the log must still have its root at
    /// its size. Repeatable. With --config only.
    #[arg(long = "checkpoint", value_name = "FILE", conflicts_with = "bundle")]
    checkpoints: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct PeriodArgs {
    /// Start of the period, RFC 3339 (inclusive), e.g. 2025-01-01T00:00:00Z.
    #[arg(long)]
    since: String,
    /// End of the period, RFC 3339 (exclusive).
    #[arg(long)]
    until: String,
    /// Config file of the gateway.
    #[arg(long)]
    config: PathBuf,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    period: PeriodArgs,
    /// Directory to write the bundle to (must not exist or be empty).
    #[arg(long)]
    out: PathBuf,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    #[command(flatten)]
    period: PeriodArgs,
    /// Output format.
    #[arg(long, value_enum, default_value = "csv")]
    format: report::Format,
    /// Write the report to this file instead of stdout.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Runs an `audit` subcommand; returns the exit code.
pub async fn run(cmd: AuditCmd) -> Result<i32> {
    match cmd {
        AuditCmd::Events {
            from,
            limit,
            json,
            remote,
        } => events(&remote, from, limit, json).await,
        AuditCmd::Verify(VerifyArgs {
            bundle: Some(dir),
            key,
            ..
        }) => verify_bundle(&dir, key.as_deref().unwrap_or_default()),
        AuditCmd::Verify(VerifyArgs {
            config: Some(config),
            key,
            checkpoints,
            ..
        }) => verify_db(&config, key.as_deref(), &checkpoints).await,
        AuditCmd::Verify(_) => bail!("give --config FILE, or --bundle DIR --key VKEY"),
        AuditCmd::Export(args) => export(args).await,
        AuditCmd::Report(args) => make_report(args).await,
    }
}

async fn events(remote: &Remote, from: u64, limit: usize, json: bool) -> Result<i32> {
    let page = crate::remote::client(remote)?
        .events(from, limit)
        .await
        .context("cannot read audit events")?;
    for e in &page.events {
        if json {
            println!("{}", serde_json::to_string(e)?);
        } else {
            println!(
                "{:>6}  {}  {:<20} {:<18} {}{}",
                e.index.unwrap_or_default(),
                e.time,
                e.kind.as_str(),
                signoff_core::display::one_line(&e.actor),
                e.request_id
                    .as_deref()
                    .map(signoff_core::display::one_line)
                    .unwrap_or_else(|| "-".into()),
                // one line per event whatever the reason holds
                e.reason
                    .as_deref()
                    .map(|r| format!("  {}", signoff_core::display::one_line(r)))
                    .unwrap_or_default()
            );
        }
    }
    Ok(0)
}

// ---------------------------------------------------------------- keys, times

/// `--key`: a verifier key, or a file holding one (a signer key file is
/// accepted too: its verifier key is derived).
fn read_vkey(arg: &str) -> Result<String> {
    let path = Path::new(arg);
    let text = if path.is_file() {
        std::fs::read_to_string(path)
            .with_context(|| format!("--key: cannot read {}", path.display()))?
    } else if arg.contains('+') {
        arg.to_owned()
    } else {
        bail!("--key `{arg}`: no such file, and not a verifier key (NAME+ID+BASE64)");
    };
    let text = text.trim();
    let vkey = if text.starts_with("PRIVATE+KEY+") {
        SigningKey::from_skey(text)
            .map_err(|e| anyhow!("--key {arg}: {e}"))?
            .vkey()
    } else {
        text.to_owned()
    };
    Verifier::from_vkey(&vkey).map_err(|e| anyhow!("--key {arg}: {e}"))?;
    Ok(vkey)
}

/// The verifier key of the configured ledger signing key (never created here).
fn configured_vkey(config: &Config) -> Result<String> {
    let path = &config.ledger_key;
    let text = std::fs::read_to_string(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            anyhow!(
                "ledger key {} does not exist: pass --key VKEY with the log's verifier key",
                path.display()
            )
        } else {
            anyhow!("cannot read ledger key {}: {e}", path.display())
        }
    })?;
    Ok(SigningKey::from_skey(text.trim())
        .map_err(|e| anyhow!("ledger key {}: {e}", path.display()))?
        .vkey())
}

fn parse_time(flag: &str, s: &str) -> Result<Timestamp> {
    s.trim().parse::<Timestamp>().map_err(|_| {
        anyhow!("invalid {flag} `{s}`: expected an RFC 3339 time such as 2025-01-31T00:00:00Z")
    })
}

fn period(args: &PeriodArgs) -> Result<(Timestamp, Timestamp)> {
    let since = parse_time("--since", &args.since)?;
    let until = parse_time("--until", &args.until)?;
    if until <= since {
        bail!("--until {until} must be after --since {since}");
    }
    Ok((since, until))
}

fn b64(hash: &[u8; 32]) -> String {
    B64.encode(hash)
}

fn progress_bar(len: u64, what: &str) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{msg} [{bar:40}] {pos}/{len} entries ({per_sec}, eta {eta})",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_owned());
    bar
}

// ---------------------------------------------------------------- verify

async fn verify_db(config_path: &Path, key: Option<&str>, checkpoints: &[PathBuf]) -> Result<i32> {
    let config = Config::load(config_path)?;
    let vkey = match key {
        Some(k) => read_vkey(k)?,
        None => {
            let vkey = configured_vkey(&config)?;
            eprintln!(
                "signoff: WARNING: no --key given: trusting the key found in {} ({}). Whoever can \
                 replace that file can make a rewritten ledger verify; pass --key with the log's \
                 verifier key obtained independently (and --checkpoint with one you saved).",
                config.ledger_key.display(),
                vkey
            );
            vkey
        }
    };
    let verifier = Verifier::from_vkey(&vkey).map_err(|e| anyhow!("verifier key: {e}"))?;
    // Checkpoints saved outside the database: the auditor's, and the
    // gateway's own witness file when it is readable from here.
    let mut saved = Vec::new();
    let mut unverified = Vec::new();
    let mut sources: Vec<(String, PathBuf, bool)> = checkpoints
        .iter()
        .map(|p| {
            (
                format!("the saved checkpoint {}", p.display()),
                p.clone(),
                true,
            )
        })
        .collect();
    let witness = signoff_engine::witness::WitnessFile::beside_key(&config.ledger_key);
    if witness.path().exists() {
        sources.push((
            format!("the gateway's witness file {}", witness.path().display()),
            witness.path().to_path_buf(),
            false,
        ));
    }
    for (label, path, required) in sources {
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if required => bail!("--checkpoint {}: {e}", path.display()),
            Err(_) => continue,
        };
        match verifier.verify_note(&text) {
            Ok(checkpoint) => saved.push(check::Saved { label, checkpoint }),
            Err(e) => unverified.push(check::Problem::SavedUnverified {
                label,
                reason: e.to_string(),
            }),
        }
    }
    let saved_summary: Vec<String> = saved
        .iter()
        .map(|s| format!("{} (size {})", s.label, s.checkpoint.size))
        .collect();
    let store = open_store(&config).await?;
    let bar = progress_bar(0, "verifying");
    let progress = |done: u64, total: u64| {
        bar.set_length(total);
        bar.set_position(done);
    };
    let mut outcome = check::replay(store, verifier, saved, &progress)
        .await
        .context("cannot read the ledger")?;
    bar.finish_and_clear();
    outcome.problems.extend(unverified);
    if key.is_some() && outcome.entries > 0 && outcome.checkpoints == 0 {
        outcome.problems.push(check::Problem::Unsigned {
            entries: outcome.entries,
        });
    }
    let notable = outcome.notable();
    if let Some(first) = notable.first() {
        eprintln!("signoff: {first}");
        for p in notable.iter().skip(1).take(5) {
            eprintln!("  also: {p}");
        }
        if notable.len() > 6 {
            eprintln!("  … and {} more", notable.len() - 6);
        }
        return Ok(1);
    }
    let latest = match &outcome.latest {
        Some(cp) => format!("latest checkpoint {} root {}", cp.size, b64(&cp.root)),
        None => "no signed checkpoint yet".to_owned(),
    };
    let uncovered = outcome
        .size
        .saturating_sub(outcome.latest.as_ref().map_or(0, |c| c.size));
    println!(
        "ledger verified: {} entries, {} checkpoints checked, {latest}{}, {:.0} entries/s",
        outcome.entries,
        outcome.checkpoints,
        if uncovered > 0 {
            format!(" ({uncovered} newer entries not yet in a checkpoint)")
        } else {
            String::new()
        },
        outcome.rate()
    );
    for s in saved_summary {
        println!("consistent with {s}");
    }
    Ok(0)
}

/// Refuses to audit a SQLite file that does not exist (opening would
/// create an empty ledger and "verify" it).
fn require_database(config: &Config) -> Result<()> {
    if let Some(rest) = config.database.strip_prefix("sqlite://") {
        let file = rest.split('?').next().unwrap_or_default();
        if !file.is_empty() && file != ":memory:" && !Path::new(file).exists() {
            bail!("database {file} does not exist");
        }
    }
    Ok(())
}

/// The store and engine for `config`, on an existing database. The CLI is
/// the composition root: offline audit reads the store directly.
async fn engine(config: &Config) -> Result<(Arc<dyn Store>, Arc<Engine>)> {
    require_database(config)?;
    crate::serve::open(config).await
}

async fn open_store(config: &Config) -> Result<Arc<dyn Store>> {
    require_database(config)?;
    signoff_store::open(&config.database)
        .await
        .with_context(|| {
            format!(
                "cannot open database {}",
                signoff_store::redact(&config.database)
            )
        })
}

fn verify_bundle(dir: &Path, key: &str) -> Result<i32> {
    if !dir.is_dir() {
        bail!("--bundle {}: no such directory", dir.display());
    }
    let vkey = read_vkey(key)?;
    match bundle::verify_bundle(dir, &vkey) {
        Ok(r) => {
            let period = bundle_period(dir)
                .map(|(a, b)| format!(", events from {a} to {b}"))
                .unwrap_or_default();
            println!(
                "bundle verified: {} entries ({} to {}){period}, checkpoint {} size {} root {}",
                r.entries,
                r.first,
                r.last,
                r.checkpoint.origin,
                r.checkpoint.size,
                b64(&r.checkpoint.root)
            );
            Ok(0)
        }
        Err(e) => {
            eprintln!("signoff: bundle {} does not verify: {e}", dir.display());
            Ok(1)
        }
    }
}

/// Times of the first and last entries of a (verified) bundle.
fn bundle_period(dir: &Path) -> Option<(Timestamp, Timestamp)> {
    let text = std::fs::read_to_string(dir.join(bundle::ENTRIES_FILE)).ok()?;
    let time = |line: &str| -> Option<Timestamp> {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        let bytes = B64.decode(v.get("leaf")?.as_str()?).ok()?;
        Some(leaf::decode(&bytes).ok()?.time)
    };
    Some((time(text.lines().next()?)?, time(text.lines().last()?)?))
}

// ---------------------------------------------------------------- export

/// A signed checkpoint covering entry `last`: the latest, or a new one.
async fn covering_checkpoint(engine: &Engine, last: Option<u64>) -> Result<StoredCheckpoint> {
    let covers = |cp: &StoredCheckpoint| last.is_none_or(|l| cp.size > l);
    if let Some(cp) = engine
        .ledger(Operator::Console)?
        .latest_checkpoint()
        .await?
        .filter(covers)
    {
        return Ok(cp);
    }
    engine
        .checkpoint_now()
        .await
        .context("cannot sign a checkpoint")?;
    engine
        .ledger(Operator::Console)?
        .latest_checkpoint()
        .await?
        .filter(covers)
        .ok_or_else(|| match last {
            Some(l) => anyhow!("no signed checkpoint covers entry {l}"),
            None => anyhow!("the ledger has no signed checkpoint"),
        })
}

fn check_out_dir(out: &Path) -> Result<()> {
    match std::fs::read_dir(out) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                bail!("--out {}: directory exists and is not empty", out.display());
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(_) if out.exists() => bail!("--out {}: exists and is not a directory", out.display()),
        Err(e) => bail!("--out {}: {e}", out.display()),
    }
}

/// Events `first..=last`, in order, failing on a gap.
async fn read_events(store: &Arc<dyn Store>, first: u64, last: u64) -> Result<Vec<AuditEvent>> {
    let mut out = Vec::with_capacity(usize::try_from(last - first + 1).unwrap_or(0));
    let mut next = first;
    while next <= last {
        let want = usize::try_from((last - next + 1).min(check::PAGE)).unwrap_or(1);
        let page = store
            .events(next, want)
            .await
            .with_context(|| format!("cannot read ledger entry {next}"))?;
        if page.is_empty() {
            bail!("entry {next} is missing from the ledger (run `signoff audit verify`)");
        }
        for e in page {
            if e.index != Some(next) {
                bail!("entry {next} is missing from the ledger (run `signoff audit verify`)");
            }
            out.push(e);
            next += 1;
        }
    }
    Ok(out)
}

async fn export(args: ExportArgs) -> Result<i32> {
    let (since, until) = period(&args.period)?;
    check_out_dir(&args.out)?;
    let config = Config::load(&args.period.config)?;
    let (store, engine) = engine(&config).await?;
    let Some((first, last)) = store.event_range(since, until).await? else {
        bail!("no audit events from {since} to {until}: nothing to export");
    };
    let cp = covering_checkpoint(&engine, Some(last)).await?;
    let vkey = engine
        .ledger(Operator::Console)?
        .vkey()
        .context("no ledger key is configured")?;
    let events = read_events(&store, first, last).await?;
    let entries: Vec<(u64, Vec<u8>)> = events
        .iter()
        .map(|e| (e.index.unwrap_or_default(), leaf::encode(e)))
        .collect();
    let bar = progress_bar(entries.len() as u64, "proving");
    let mut proofs = Vec::with_capacity(entries.len());
    for (index, _) in &entries {
        proofs.push(
            engine
                .ledger(Operator::Console)?
                .inclusion_proof(*index, cp.size)
                .await
                .with_context(|| format!("cannot build the inclusion proof of entry {index}"))?,
        );
        bar.inc(1);
    }
    bar.finish_and_clear();
    bundle::write_bundle(&args.out, &entries, &cp.note, &proofs, &vkey)
        .with_context(|| format!("cannot write the bundle to {}", args.out.display()))?;
    // What we ship must verify: this also catches a ledger whose entries
    // differ from what the checkpoint signed.
    if let Err(e) = bundle::verify_bundle(&args.out, &vkey) {
        eprintln!(
            "signoff: the exported bundle in {} does not verify: {e} (run `signoff audit verify --config …`)",
            args.out.display()
        );
        return Ok(1);
    }
    println!(
        "exported entries {first} to {last} ({} entries, {since} to {until}) with inclusion proofs into checkpoint {} to {}",
        entries.len(),
        cp.size,
        args.out.display()
    );
    println!(
        "verify with: signoff audit verify --bundle {} --key '{vkey}'",
        args.out.display()
    );
    Ok(0)
}

// ---------------------------------------------------------------- report

/// Requests created in `[since, until)` per the requests table (ids are
/// ULIDs of their creation time, so this pages by id).
async fn table_requests(
    store: &Arc<dyn Store>,
    since: Timestamp,
    until: Timestamp,
) -> Result<HashMap<String, RequestRecord>> {
    const BATCH: usize = 1000;
    let ms = u64::try_from(until.as_millisecond()).unwrap_or(0);
    let mut before = ulid::Ulid::from_parts(ms, 0).to_string();
    let mut out = HashMap::new();
    loop {
        let page = store
            .list_requests(&RequestFilter {
                before: Some(before.clone()),
                limit: BATCH,
                ..RequestFilter::default()
            })
            .await
            .context("cannot read the requests table")?;
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

async fn make_report(args: ReportArgs) -> Result<i32> {
    let (since, until) = period(&args.period)?;
    if let Some(out) = &args.out {
        if out.is_dir() {
            bail!("--out {}: is a directory", out.display());
        }
    }
    let config = Config::load(&args.period.config)?;
    let (store, engine) = engine(&config).await?;
    let range = store.event_range(since, until).await?;
    let cp = covering_checkpoint(&engine, range.map(|r| r.1)).await?;
    let vkey = engine
        .ledger(Operator::Console)?
        .vkey()
        .context("no ledger key is configured")?;
    let signed = Verifier::from_vkey(&vkey)
        .and_then(|v| v.verify_note(&cp.note))
        .map_err(|e| anyhow!("checkpoint {} does not verify: {e}", cp.size))?;
    if signed.size != cp.size || signed.root != cp.root {
        bail!(
            "checkpoint {} does not match its signed note (run `signoff audit verify`)",
            cp.size
        );
    }
    // The table first, then the events: the ledger is then at least as new.
    let table = table_requests(&store, since, until).await?;
    let head = store.event_count().await?;
    let first = range.map_or(cp.size, |r| r.0);
    let mut builder = report::Builder::new(range, cp.size, table);

    // The tree left of `first` comes from the stored nodes; the entries
    // from `first` to the checkpoint are re-hashed, so the root proves the
    // events below are exactly what the checkpoint signed.
    let edge = store
        .ledger_nodes(&merkle::perfect_subtrees(0, first))
        .await
        .context("cannot read the ledger tree")?;
    let mut frontier = Frontier::from_nodes(first, edge)
        .map_err(|e| anyhow!("ledger tree is inconsistent: {e}"))?;
    let bar = progress_bar(head.saturating_sub(first), "reading");
    let mut next = first;
    while next < head {
        let page = store
            .events(next, check::PAGE as usize)
            .await
            .with_context(|| format!("cannot read ledger entry {next}"))?;
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
                bail!(
                    "entry {} is missing from the ledger (run `signoff audit verify`)",
                    frontier.size()
                );
            }
            frontier.append(merkle::leaf_hash(&leaf::encode(e)));
            builder.push(e);
        }
        bar.set_position(last_index + 1 - first);
        next = last_index + 1;
    }
    bar.finish_and_clear();
    if frontier.size() != cp.size || frontier.root() != cp.root {
        bail!(
            "checkpoint {} does not match the entries (root differs; run `signoff audit verify`)",
            cp.size
        );
    }
    let (mut rows, ledger, mut counts, discrepancies) = builder.finish();
    // Who created each approver and each requesting agent, from the
    // principals table (recorded since migration 0004, backfilled from
    // the principal_added events before it).
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
    let origin = signed.origin.clone();
    let report = report::Report {
        period: report::Period { since, until },
        generated_at: engine.now(),
        checkpoint: report::CheckpointInfo {
            origin,
            size: cp.size,
            root: b64(&cp.root),
            signed_at: cp.created_at,
        },
        ledger,
        counts,
        discrepancies,
        requests: rows,
    };
    let text = report::render(&report, args.format);
    match &args.out {
        Some(path) => std::fs::write(path, &text)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => print!("{text}"),
    }
    let c = &report.counts;
    let statuses: Vec<String> = c
        .by_status
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(s, n)| format!("{s} {n}"))
        .collect();
    eprintln!(
        "report: {} requests (= {} request_submitted entries; {}), checkpoint {} size {} root {}",
        c.requests,
        report.ledger.request_submitted_events,
        if statuses.is_empty() {
            "none".to_owned()
        } else {
            statuses.join(", ")
        },
        report.checkpoint.origin,
        report.checkpoint.size,
        report.checkpoint.root
    );
    let mut code = 0;
    for d in &report.discrepancies {
        eprintln!("signoff: ledger and requests table disagree: {d}");
        code = 1;
    }
    for r in &report.requests {
        for a in &r.approvals_provisioned_by_party {
            eprintln!(
                "signoff: request {}: approved by a reviewer a party to it provisioned: {}",
                r.request_id,
                signoff_core::display::one_line(a)
            );
            code = 1;
        }
    }
    for r in report
        .requests
        .iter()
        .filter(|r| r.executed_without_approval)
    {
        eprintln!(
            "signoff: request {} executed without approval: {}",
            r.request_id,
            r.violation.as_deref().unwrap_or("flagged")
        );
        code = 1;
    }
    Ok(code)
}
