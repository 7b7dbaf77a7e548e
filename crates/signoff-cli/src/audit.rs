//! `signoff audit …`: read the trail, verify the ledger (over the API with
//! an auditor token, against a database file, or an offline bundle),
//! export evidence bundles and produce the period report. The logic lives
//! in `signoff-audit` and the engine's audit use cases; this module picks
//! where to read from and prints.

use crate::config::Config;
use crate::Remote;
use anyhow::{anyhow, bail, Context, Result};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use clap::{Args, Subcommand, ValueEnum};
use jiff::Timestamp;
use signoff_audit::report::{self, Report};
use signoff_audit::verify::{self, Finding, Saved};
use signoff_audit::VerificationSummary;
use signoff_core::display;
use signoff_engine::audit::StoreSource;
use signoff_engine::principals::Operator;
use signoff_engine::Engine;
use signoff_ledger::bundle;
use signoff_ledger::leaf;
use signoff_ledger::merkle::{self, Frontier};
use signoff_ledger::note::{SigningKey, Verifier};
use signoff_store::Store;
use std::collections::HashMap;
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
    /// Verify the ledger: over the API with an auditor token (SIGNOFF_URL,
    /// SIGNOFF_TOKEN; the gateway's run is recorded and the entries are
    /// re-hashed here against the pinned --key), the database of a
    /// gateway (--config), or an evidence bundle offline (--bundle DIR --key VKEY).
    Verify(VerifyArgs),
    /// Export the entries of a period with inclusion proofs into a signed
    /// checkpoint, as an evidence bundle that verifies offline.
    Export(ExportArgs),
    /// The population of privileged actions of a period, from the ledger,
    /// with approvals, execution and outcome per request, exceptions first.
    Report(ReportArgs),
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Config file of the gateway whose database to verify (offline).
    #[arg(long, conflicts_with = "bundle")]
    config: Option<PathBuf>,
    /// An evidence bundle directory to verify offline (needs --key).
    #[arg(long, requires = "key")]
    bundle: Option<PathBuf>,
    /// The log's verifier key (`name+id+base64`), or a file holding it.
    /// Without it the key the gateway (or the configured ledger_key)
    /// presents is trusted, with a warning: pin the key you got from the
    /// log's operator.
    #[arg(long)]
    key: Option<String>,
    /// A checkpoint saved earlier (the signed note as served by
    /// `GET /v1/ledger/checkpoint`): the log must still have its root at
    /// its size. Repeatable. Not with --bundle.
    #[arg(long = "checkpoint", value_name = "FILE", conflicts_with = "bundle")]
    checkpoints: Vec<PathBuf>,
    #[command(flatten)]
    remote: Remote,
}

#[derive(Debug, Args)]
pub struct PeriodArgs {
    /// Start of the period (inclusive): a date (2026-12-02, midnight UTC),
    /// an RFC 3339 time, or a time before now (30d, 12h, 2w).
    #[arg(long)]
    since: String,
    /// End of the period (exclusive), same forms; default now.
    #[arg(long)]
    until: Option<String>,
    /// Config file of the gateway: read its database directly (offline).
    /// Without it, the gateway at SIGNOFF_URL is asked with SIGNOFF_TOKEN
    /// (an auditor's).
    #[arg(long)]
    config: Option<PathBuf>,
    #[command(flatten)]
    remote: Remote,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    period: PeriodArgs,
    /// Directory to write the bundle to (must not exist or be empty).
    #[arg(long)]
    out: PathBuf,
    /// Over the API: the verifier key the bundle must verify with (or a
    /// file holding it); default the key the gateway presents.
    #[arg(long)]
    key: Option<String>,
}

/// Output format of the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// RFC 4180 CSV, one row per request, for spreadsheets.
    Csv,
    /// One JSON document, for tools.
    Json,
    /// One self-contained HTML page that prints on A4 and Letter.
    Html,
}

impl From<FormatArg> for report::Format {
    fn from(f: FormatArg) -> Self {
        match f {
            FormatArg::Csv => report::Format::Csv,
            FormatArg::Json => report::Format::Json,
            FormatArg::Html => report::Format::Html,
        }
    }
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    #[command(flatten)]
    period: PeriodArgs,
    /// Output format.
    #[arg(long, value_enum, default_value = "csv")]
    format: FormatArg,
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
        AuditCmd::Verify(VerifyArgs {
            key,
            checkpoints,
            remote,
            ..
        }) => verify_remote(&remote, key.as_deref(), &checkpoints).await,
        AuditCmd::Export(args) => export(args).await,
        AuditCmd::Report(args) => make_report(args).await,
    }
}

/// What the events table knows of a request (from its submission).
#[derive(Debug, Clone, Default)]
struct RequestLine {
    action: String,
    resource: String,
}

const EVENT_HEADER: [&str; 8] = [
    "INDEX", "TIME", "EVENT", "ACTOR", "ACTION", "RESOURCE", "VERDICT", "REQUEST",
];
const EVENT_WIDTHS: [usize; 7] = [6, 20, 22, 20, 16, 22, 17];

async fn events(remote: &Remote, from: u64, limit: usize, json: bool) -> Result<i32> {
    let client = crate::remote::client(remote)?;
    let page = client
        .events(from, limit)
        .await
        .context("cannot read audit events")?;
    if json {
        for e in &page.events {
            println!("{}", serde_json::to_string(e)?);
        }
        return Ok(0);
    }
    // Action and resource of each request: from its submission when it is
    // in the page, otherwise asked once per request.
    let mut known: HashMap<String, RequestLine> = HashMap::new();
    for e in &page.events {
        if let (signoff_core::EventKind::RequestSubmitted, Some(id)) = (e.kind, &e.request_id) {
            known.insert(id.clone(), request_line(&e.detail));
        }
    }
    for id in page.events.iter().filter_map(|e| e.request_id.as_ref()) {
        if !known.contains_key(id) {
            let line = match client.get_request(id).await {
                Ok(v) => RequestLine {
                    action: v.request.action.clone(),
                    resource: v.request.resource.clone(),
                },
                Err(_) => RequestLine::default(),
            };
            known.insert(id.clone(), line);
        }
    }
    print!("{}", events_table(&page.events, &known));
    Ok(0)
}

fn request_line(detail: &serde_json::Value) -> RequestLine {
    let action = detail.get("action");
    let field = |k: &str| {
        action
            .and_then(|a| a.get(k))
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned()
    };
    RequestLine {
        action: field("action"),
        resource: field("resource"),
    }
}

/// The events as a table: a header, fixed-width columns (other people's
/// text escaped and cut to its column), the reason folded under the row.
fn events_table(
    events: &[signoff_core::AuditEvent],
    known: &HashMap<String, RequestLine>,
) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let row = |out: &mut String, cells: [String; 8]| {
        let mut line = String::new();
        for (i, c) in cells.iter().enumerate() {
            match EVENT_WIDTHS.get(i) {
                Some(w) if i == 0 => {
                    let _ = write!(line, "{c:>w$}  ");
                }
                Some(w) => {
                    let _ = write!(line, "{c:<w$}  ");
                }
                None => line.push_str(c),
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    };
    row(&mut out, EVENT_HEADER.map(str::to_owned));
    let indent = " ".repeat(EVENT_WIDTHS[0] + 2);
    for e in events {
        let req = e.request_id.as_ref().and_then(|id| known.get(id));
        let cell = |s: &str, i: usize| display::cell(s, EVENT_WIDTHS[i]);
        let time = e.time.strftime("%Y-%m-%d %H:%M:%S").to_string();
        row(
            &mut out,
            [
                e.index.map(|i| i.to_string()).unwrap_or_default(),
                time,
                e.kind.as_str().to_owned(),
                cell(&e.actor, 3),
                req.map(|r| cell(&r.action, 4))
                    .unwrap_or_else(|| "-".into()),
                req.map(|r| cell(&r.resource, 5))
                    .unwrap_or_else(|| "-".into()),
                e.verdict
                    .map(|v| v.as_str().to_owned())
                    .unwrap_or_else(|| "-".into()),
                e.request_id
                    .as_deref()
                    .map(display::one_line)
                    .unwrap_or_else(|| "-".into()),
            ],
        );
        if let Some(reason) = e.reason.as_deref().filter(|r| !r.trim().is_empty()) {
            let lines = display::text_lines(reason.trim_end());
            for (i, l) in lines.iter().enumerate().take(6) {
                let mark = if i == 0 { "reason: " } else { "        " };
                let _ = writeln!(out, "{indent}{mark}{}", display::cell(l, 110));
            }
            if lines.len() > 6 {
                let _ = writeln!(out, "{indent}        … {} more lines", lines.len() - 6);
            }
        }
    }
    out
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

/// The period of `args`: dates, RFC 3339 times and relative forms.
fn period(args: &PeriodArgs) -> Result<(Timestamp, Timestamp)> {
    signoff_audit::period::parse_period(&args.since, args.until.as_deref(), Timestamp::now())
        .map_err(|e| match e {
            signoff_audit::period::PeriodError::Invalid { flag, input } => anyhow!(
                "{}",
                signoff_audit::period::PeriodError::Invalid {
                    flag: format!("--{flag}"),
                    input
                }
            ),
            signoff_audit::period::PeriodError::Empty { since, until } => {
                anyhow!("--until {until} must be after --since {since}")
            }
        })
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
            Ok(checkpoint) => saved.push(Saved { label, checkpoint }),
            Err(e) => unverified.push(Finding::SavedUnverified {
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
    let source: Arc<dyn signoff_audit::LedgerSource> = Arc::new(StoreSource::new(store));
    let outcome = verify::replay(source, verifier, saved, &progress)
        .await
        .context("cannot read the ledger")?;
    bar.finish_and_clear();
    let mut summary = outcome.summary();
    summary.findings.extend(unverified);
    if key.is_some() && summary.entries > 0 && summary.checkpoints == 0 {
        summary.findings.push(Finding::Unsigned {
            entries: summary.entries,
        });
    }
    if print_findings(&summary.notable()) {
        return Ok(1);
    }
    print_verified(&summary, "", outcome.rate());
    for s in saved_summary {
        println!("consistent with {s}");
    }
    Ok(0)
}

/// Prints findings to stderr; whether there were any.
fn print_findings(notable: &[&Finding]) -> bool {
    let Some(first) = notable.first() else {
        return false;
    };
    eprintln!("signoff: {first}");
    for p in notable.iter().skip(1).take(5) {
        eprintln!("  also: {p}");
    }
    if notable.len() > 6 {
        eprintln!("  … and {} more", notable.len() - 6);
    }
    true
}

fn print_verified(s: &VerificationSummary, prefix: &str, rate: f64) {
    let latest = match (&s.latest_size, &s.latest_root) {
        (Some(size), Some(root)) => format!("latest checkpoint {size} root {root}"),
        _ => "no signed checkpoint yet".to_owned(),
    };
    let uncovered = s.size.saturating_sub(s.latest_size.unwrap_or(0));
    println!(
        "{prefix}ledger verified: {} entries, {} checkpoints checked, {latest}{}, {:.0} entries/s",
        s.entries,
        s.checkpoints,
        if uncovered > 0 {
            format!(" ({uncovered} newer entries not yet in a checkpoint)")
        } else {
            String::new()
        },
        rate
    );
}

/// Saved checkpoints read from `files` and verified with `verifier`; the
/// ones that do not verify are findings.
fn read_saved(verifier: &Verifier, files: &[PathBuf]) -> Result<(Vec<Saved>, Vec<Finding>)> {
    let mut saved = Vec::new();
    let mut bad = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("--checkpoint {}: cannot read it", path.display()))?;
        let label = format!("the saved checkpoint {}", path.display());
        match verifier.verify_note(&text) {
            Ok(checkpoint) => saved.push(Saved { label, checkpoint }),
            Err(e) => bad.push(Finding::SavedUnverified {
                label,
                reason: e.to_string(),
            }),
        }
    }
    Ok((saved, bad))
}

/// Over the API: the gateway verifies its own ledger (recorded as a
/// `ledger_verified` event), then every entry is fetched and re-hashed
/// here into the tree the pinned key signed, and compared with the
/// checkpoints saved earlier. Nothing the gateway says is trusted.
async fn verify_remote(remote: &Remote, key: Option<&str>, checkpoints: &[PathBuf]) -> Result<i32> {
    #[derive(serde::Deserialize)]
    struct Server {
        #[serde(flatten)]
        summary: VerificationSummary,
        recorded_index: Option<u64>,
    }
    let client = crate::remote::client(remote)?;
    let vkey = match key {
        Some(k) => read_vkey(k)?,
        None => {
            let vkey = client
                .get_text("/v1/ledger/key")
                .await
                .context("cannot read the gateway's verifier key")?
                .trim()
                .to_owned();
            eprintln!(
                "signoff: WARNING: no --key given: trusting the key the gateway at {} presents ({vkey}). \
                 A gateway that rewrote its ledger can present a new key; pass --key with the log's \
                 verifier key obtained independently (and --checkpoint with one you saved).",
                remote.url
            );
            vkey
        }
    };
    let verifier = Verifier::from_vkey(&vkey).map_err(|e| anyhow!("verifier key: {e}"))?;
    let (saved, mut findings) = read_saved(&verifier, checkpoints)?;
    let server: Server = client
        .post_json("/v1/audit/verify")
        .await
        .context("the gateway's verification run failed")?;
    findings.extend(server.summary.findings.iter().cloned());

    // Our own replay of what the gateway serves.
    let note = client
        .get_text("/v1/ledger/checkpoint")
        .await
        .context("cannot read the gateway's latest checkpoint")?;
    let latest = match verifier.verify_note(&note) {
        Ok(c) => Some(c),
        Err(e) => {
            findings.push(Finding::BadSignature {
                size: 0,
                reason: format!(
                    "the gateway's latest checkpoint does not verify with the pinned key: {e}"
                ),
            });
            None
        }
    };
    let mut pending: std::collections::VecDeque<Saved> = {
        let mut s = saved.clone();
        s.sort_by_key(|s| s.checkpoint.size);
        s.into()
    };
    let mut frontier = Frontier::new();
    let check_at = |frontier: &Frontier,
                    pending: &mut std::collections::VecDeque<Saved>,
                    findings: &mut Vec<Finding>| {
        while pending
            .front()
            .is_some_and(|s| s.checkpoint.size == frontier.size())
        {
            if let Some(s) = pending.pop_front() {
                if s.checkpoint.root != frontier.root() {
                    findings.push(Finding::SavedDiffers {
                        label: s.label,
                        size: frontier.size(),
                    });
                }
            }
        }
    };
    let mut latest_ok = None;
    let bar = progress_bar(0, "re-hashing");
    let mut start = 0u64;
    check_at(&frontier, &mut pending, &mut findings);
    loop {
        let page: signoff_core::wire::LedgerEntryPage = client
            .get_json(&format!("/v1/ledger/entries?start={start}"))
            .await
            .with_context(|| format!("cannot read ledger entries from {start}"))?;
        for entry in &page.entries {
            if entry.index != frontier.size() {
                findings.push(Finding::Missing {
                    index: frontier.size(),
                    count: entry.index.saturating_sub(frontier.size()).max(1),
                });
                break;
            }
            let bytes = B64
                .decode(&entry.leaf)
                .map_err(|e| anyhow!("ledger entry {}: leaf is not base64: {e}", entry.index))?;
            frontier.append(merkle::leaf_hash(&bytes));
            check_at(&frontier, &mut pending, &mut findings);
            if let Some(cp) = &latest {
                if cp.size == frontier.size() {
                    if cp.root == frontier.root() {
                        latest_ok = Some(cp.clone());
                    } else {
                        findings.push(Finding::RootDiffers {
                            size: cp.size,
                            after: None,
                        });
                    }
                }
            }
        }
        bar.set_position(frontier.size());
        match page.next {
            Some(n) if n > start => start = n,
            _ => break,
        }
    }
    bar.finish_and_clear();
    if let Some(cp) = &latest {
        if cp.size > frontier.size() {
            findings.push(Finding::Truncated {
                covered_by: verify::Coverer::Checkpoint,
                covers: cp.size,
                remain: frontier.size(),
            });
        }
    }
    for s in pending {
        findings.push(Finding::SavedBeyond {
            label: s.label,
            size: s.checkpoint.size,
            remain: frontier.size(),
        });
    }
    if let Some(i) = server.recorded_index {
        eprintln!("signoff: the gateway's verification run is recorded as ledger entry {i}");
    }
    let notable: Vec<&Finding> = findings.iter().collect();
    if print_findings(&notable) {
        return Ok(1);
    }
    print_verified(
        &server.summary,
        "gateway: ",
        server.summary.entries as f64 / (server.summary.elapsed_ms.max(1) as f64 / 1000.0),
    );
    match latest_ok {
        Some(cp) => println!(
            "re-hashed here: {} entries; checkpoint {} size {} root {} verifies with {}",
            frontier.size(),
            cp.origin,
            cp.size,
            b64(&cp.root),
            vkey
        ),
        None => {
            eprintln!("signoff: no checkpoint signed by the pinned key covers the entries served");
            return Ok(1);
        }
    }
    for s in saved {
        println!("consistent with {} (size {})", s.label, s.checkpoint.size);
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

/// The query string of a period for the audit routes.
fn period_query(since: Timestamp, until: Timestamp) -> String {
    format!(
        "since={}&until={}",
        signoff_client::encode_component(&since.to_string()),
        signoff_client::encode_component(&until.to_string())
    )
}

/// The bundle of a period: read from the database (`--config`) or asked
/// of the gateway.
async fn bundle_contents(
    args: &PeriodArgs,
    since: Timestamp,
    until: Timestamp,
) -> Result<signoff_engine::audit::BundleContents> {
    if let Some(config) = &args.config {
        let config = Config::load(config)?;
        let (_store, engine) = engine(&config).await?;
        return engine
            .audit_bundle(Operator::Console, since, until)
            .await
            .map_err(|e| anyhow!("{e}"));
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        index: u64,
        leaf: String,
        proof: Vec<String>,
    }
    #[derive(serde::Deserialize)]
    struct Body {
        vkey: String,
        checkpoint: String,
        checkpoint_size: u64,
        entries: Vec<Entry>,
    }
    let client = crate::remote::client(&args.remote)?;
    let body: Body = client
        .get_json(&format!("/v1/audit/bundle?{}", period_query(since, until)))
        .await
        .context("cannot export the bundle")?;
    let hash = |s: &str| -> Result<merkle::Hash> {
        let v = B64
            .decode(s)
            .map_err(|e| anyhow!("proof hash is not base64: {e}"))?;
        v.try_into()
            .map_err(|_| anyhow!("proof hash is not 32 bytes"))
    };
    let mut entries = Vec::with_capacity(body.entries.len());
    let mut proofs = Vec::with_capacity(body.entries.len());
    for e in body.entries {
        entries.push((
            e.index,
            B64.decode(&e.leaf)
                .map_err(|err| anyhow!("entry {}: leaf is not base64: {err}", e.index))?,
        ));
        proofs.push(
            e.proof
                .iter()
                .map(|h| hash(h))
                .collect::<Result<Vec<_>>>()?,
        );
    }
    Ok(signoff_engine::audit::BundleContents {
        entries,
        checkpoint: body.checkpoint,
        checkpoint_size: body.checkpoint_size,
        proofs,
        vkey: body.vkey,
    })
}

async fn export(args: ExportArgs) -> Result<i32> {
    let (since, until) = period(&args.period)?;
    check_out_dir(&args.out)?;
    let pinned = args.key.as_deref().map(read_vkey).transpose()?;
    let b = bundle_contents(&args.period, since, until).await?;
    if let Some(pinned) = &pinned {
        if *pinned != b.vkey {
            eprintln!(
                "signoff: the gateway presents the key {} but --key is {pinned}: the bundle is checked against --key",
                b.vkey
            );
        }
    }
    let vkey = pinned.unwrap_or_else(|| b.vkey.clone());
    bundle::write_bundle(&args.out, &b.entries, &b.checkpoint, &b.proofs, &vkey)
        .with_context(|| format!("cannot write the bundle to {}", args.out.display()))?;
    // What we ship must verify: this also catches a ledger whose entries
    // differ from what the checkpoint signed.
    if let Err(e) = bundle::verify_bundle(&args.out, &vkey) {
        eprintln!(
            "signoff: the exported bundle in {} does not verify: {e} (run `signoff audit verify`)",
            args.out.display()
        );
        return Ok(1);
    }
    let (first, last) = match (b.entries.first(), b.entries.last()) {
        (Some(f), Some(l)) => (f.0, l.0),
        _ => (0, 0),
    };
    println!(
        "exported entries {first} to {last} ({} entries, {since} to {until}) with inclusion proofs into checkpoint {} to {}",
        b.entries.len(),
        b.checkpoint_size,
        args.out.display()
    );
    println!(
        "verify with: signoff audit verify --bundle {} --key '{vkey}'",
        args.out.display()
    );
    Ok(0)
}

// ---------------------------------------------------------------- report

async fn make_report(args: ReportArgs) -> Result<i32> {
    let (since, until) = period(&args.period)?;
    if let Some(out) = &args.out {
        if out.is_dir() {
            bail!("--out {}: is a directory", out.display());
        }
    }
    let report: Report = match &args.period.config {
        Some(config) => {
            let config = Config::load(config)?;
            let (_store, engine) = engine(&config).await?;
            engine
                .audit_report(Operator::Console, since, until)
                .await
                .map_err(|e| anyhow!("{e}"))?
        }
        None => crate::remote::client(&args.period.remote)?
            .get_json(&format!(
                "/v1/audit/report?{}&format=json",
                period_query(since, until)
            ))
            .await
            .context("cannot make the report")?,
    };
    let text = report::render(&report, args.format.into());
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
                display::one_line(a)
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

#[cfg(test)]
mod tests {
    use super::*;
    use signoff_core::{AuditEvent, Decision, EventKind};

    #[test]
    fn events_read_like_a_story() {
        let t: Timestamp = "2026-12-02T09:15:00Z".parse().unwrap();
        let mut read = AuditEvent::new(EventKind::RequestSubmitted, t, "agent:etl-bot");
        read.index = Some(41);
        read.request_id = Some("01KBREAD".into());
        read.verdict = Some(Decision::Allow);
        read.detail = serde_json::json!({"action": {"action": "db.read", "resource": "orders"}});
        let mut drop = AuditEvent::new(EventKind::RequestSubmitted, t, "agent:etl-bot");
        drop.index = Some(42);
        drop.request_id = Some("01KBDROP".into());
        drop.verdict = Some(Decision::Deny);
        drop.reason = Some("forbidden by no-drop-in-prod\nline two \u{1b}[31mred".into());
        drop.detail = serde_json::json!({"action": {"action": "db.drop", "resource": "orders"}});
        let known: HashMap<String, RequestLine> = [&read, &drop]
            .iter()
            .map(|e| (e.request_id.clone().unwrap(), request_line(&e.detail)))
            .collect();
        let table = events_table(&[read, drop], &known);
        insta::assert_snapshot!(table);
        assert!(!table.contains('\u{1b}'));
    }
}
