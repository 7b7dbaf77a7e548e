//! Commands that talk to a running gateway through the shared client.

use crate::args::ActionArgs;
use crate::exit::usage;
use crate::output;
use crate::Remote;
use anyhow::Result;
use clap::Args;
use signoff_client::Client;
use signoff_core::wire::SubmitRequest;
use signoff_core::{RequestStatus, ReviewDecision};
use signoff_gates::exec::{self, ExecSpec};
use signoff_gates::{EXIT_DENIED, EXIT_TEMPFAIL};
use std::time::Duration;

/// The channel the gateway records for reviews made with this binary.
const CHANNEL: &str = "cli";

pub(crate) fn client(remote: &Remote) -> Result<Client> {
    let token = remote.token.clone().unwrap_or_default();
    Ok(Client::new(&remote.url, &token)?.with_channel(CHANNEL)?)
}

/// Resolves on ctrl-c. If the handler cannot be installed it never
/// resolves: a broken signal handler must not look like an interrupt.
async fn ctrl_c() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}

fn parse_wait(s: &Option<String>) -> Result<Option<Duration>> {
    s.as_deref().map(wait_flag).transpose()
}

/// The value of a `--wait` flag; a bad one is the caller's to fix (exit 2).
pub(crate) fn wait_flag(w: &str) -> Result<Duration> {
    crate::config::parse_duration("--wait", w)
        .map(|d| d.unsigned_abs())
        .map_err(|e| usage(format!("{e:#}")))
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    #[command(flatten)]
    action: ActionArgs,
    /// Stop waiting for approval after this long (e.g. 10m); exit 75.
    #[arg(long)]
    wait: Option<String>,
    /// Resume an existing request (e.g. one approved while you were away).
    #[arg(long)]
    request: Option<String>,
    /// Pass this environment variable to the command (repeatable, or
    /// comma-separated; also SIGNOFF_PASS_ENV). The command otherwise gets
    /// only PATH, HOME, LANG, TERM and USER; passed values are bound to the
    /// approval and shown to reviewers (secret-looking names by SHA-256).
    #[arg(
        long = "pass-env",
        value_name = "NAME",
        env = "SIGNOFF_PASS_ENV",
        value_delimiter = ','
    )]
    pass_env: Vec<String>,
    #[command(flatten)]
    remote: Remote,
    /// The command to run.
    #[arg(last = true, required = true, value_name = "CMD")]
    command: Vec<String>,
}

/// `signoff exec … -- CMD…`: exit status is CMD's own, 77 refused, 75 may
/// pass later, 2 for the caller to fix (see [`crate::exit`]).
pub async fn exec(args: ExecArgs) -> Result<i32> {
    let spec = ExecSpec {
        action: args.action.action.clone(),
        resource: args.action.resource.clone(),
        environment: args.action.environment.clone(),
        justification: args.action.justification.clone(),
        context: args.action.context_map()?,
        on_behalf_of: args.action.on_behalf_of.clone(),
        wait: parse_wait(&args.wait)?,
        request_id: args.request.clone(),
        command: args.command.clone(),
        pass_env: args.pass_env.clone(),
    };
    let client = match client(&args.remote) {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "signoff: not running the command: {}",
                signoff_core::display::one_line(&e.to_string())
            );
            return Ok(crate::exit::for_error(&e));
        }
    };
    let mut progress = output::ExecProgress::new(exec::shell_join(&spec.command));
    let end = exec::run(&client, &spec, &mut progress, ctrl_c()).await;
    drop(progress); // clears the spinner before the last line
    eprintln!("signoff: {}", signoff_core::display::one_line(&end.message));
    Ok(end.exit_code)
}

#[derive(Debug, Args)]
pub struct RequestArgs {
    #[command(flatten)]
    action: ActionArgs,
    /// Wait up to this long for the decision (e.g. 10m).
    #[arg(long)]
    wait: Option<String>,
    /// Print JSON (always JSON when stdout is not a terminal).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    remote: Remote,
}

/// `signoff request`: submit, optionally wait, print. Exit 0 approved/allowed,
/// 77 denied or cancelled, 75 pending after the wait, expired or lapsed.
pub async fn request(args: RequestArgs) -> Result<i32> {
    let client = client(&args.remote)?;
    let body = SubmitRequest {
        action: args.action.action.clone(),
        resource: args.action.resource.clone(),
        environment: args.action.environment.clone(),
        context: args.action.context_map()?,
        justification: args.action.justification.clone(),
        on_behalf_of: args.action.on_behalf_of.clone(),
        gate: Some("cli".into()),
        claim_digest: None,
    };
    let mut view = client.submit(&body, &ulid::Ulid::new().to_string()).await?;
    if let Some(wait) = parse_wait(&args.wait)? {
        let until = std::time::Instant::now() + wait;
        while view.status == RequestStatus::Pending {
            let left = until.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break;
            }
            view = client
                .wait(&view.id, left.min(Duration::from_secs(60)))
                .await?;
        }
    }
    if args.json || !output::stdout_is_terminal() {
        println!("{}", serde_json::to_string_pretty(&view)?);
    } else {
        print!("{}", output::request_detail(&view));
    }
    Ok(match view.status {
        RequestStatus::Approved | RequestStatus::Executing | RequestStatus::Executed => 0,
        RequestStatus::Denied | RequestStatus::Cancelled => EXIT_DENIED,
        RequestStatus::Pending | RequestStatus::Expired | RequestStatus::Lapsed => EXIT_TEMPFAIL,
    })
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// Only this status (pending, approved, denied, expired, cancelled, executing, executed, lapsed); comma-separated.
    #[arg(long)]
    status: Option<String>,
    /// Only this action.
    #[arg(long)]
    action: Option<String>,
    /// At most this many.
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// Print a JSON array.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    remote: Remote,
}

pub async fn ls(args: LsArgs) -> Result<i32> {
    if let Some(s) = &args.status {
        for part in s.split(',') {
            part.trim()
                .parse::<RequestStatus>()
                .map_err(|e| usage(format!("--status: {e}")))?;
        }
    }
    let client = client(&args.remote)?;
    let mut query = format!("limit={}", args.limit);
    if let Some(s) = &args.status {
        query.push_str(&format!("&status={s}"));
    }
    if let Some(a) = &args.action {
        query.push_str(&format!("&action={a}"));
    }
    let page = client.list(&query).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&page.requests)?);
    } else {
        print!("{}", output::requests_table(&page.requests));
    }
    Ok(0)
}

pub async fn show(remote: &Remote, id: &str, json: bool) -> Result<i32> {
    let view = client(remote)?.get_request(id).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&view)?);
    } else {
        print!("{}", output::request_detail(&view));
    }
    Ok(0)
}

pub async fn review(
    remote: &Remote,
    id: &str,
    decision: ReviewDecision,
    reason: Option<String>,
) -> Result<i32> {
    let view = client(remote)?.review(id, decision, reason).await?;
    let verb = match decision {
        ReviewDecision::Approve => "approved",
        ReviewDecision::Deny => "denied",
    };
    let progress = match (&view.status, &view.verdict.requirement) {
        (RequestStatus::Pending, Some(req)) => format!(
            "; still pending: approvals so far {} of {req}",
            view.approved_by.join(", ")
        ),
        (status, _) => format!("; request is now {status}"),
    };
    println!("{verb} {id}{progress}");
    Ok(0)
}

pub async fn cancel(remote: &Remote, id: &str, reason: Option<String>) -> Result<i32> {
    let view = client(remote)?.cancel(id, reason).await?;
    println!("cancelled {}", view.id);
    Ok(0)
}

/// `signoff policy reload`: the gateway reloads its policy directory; a set
/// that does not load is rejected (exit 2) and the old one stays active.
pub async fn reload_policies(remote: &Remote) -> Result<i32> {
    let info = client(remote)?.reload_policies().await?;
    println!(
        "policy set {} active: {} policies, {} catalog entries",
        &info.hash[..info.hash.len().min(12)],
        info.policy_ids.len(),
        info.catalog_entries
    );
    for w in &info.warnings {
        println!("  {}", signoff_core::display::one_line(w));
    }
    Ok(0)
}
