//! `signoff`: the composition root. Parses the command line, builds the
//! store, engine and server for `serve`, and the HTTP client for everything
//! that talks to a running gateway.

mod args;
mod audit;
mod config;
mod dev;
mod exit;
mod files;
mod mcp_cmd;
mod output;
mod policy_cmd;
mod remote;
mod serve;
mod witness;

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// mimalloc: fewer instructions and less lock traffic than glibc's malloc for
/// the many small, cross-thread allocations of a decision.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// An action-level approval gateway for AI agents and automation pipelines.
#[derive(Debug, Parser)]
#[command(name = "signoff", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the gateway is and who we are.
#[derive(Debug, Clone, Args)]
pub struct Remote {
    /// Gateway URL.
    #[arg(long, env = "SIGNOFF_URL", default_value = "http://127.0.0.1:8470")]
    url: String,
    /// Bearer token.
    #[arg(long, env = "SIGNOFF_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        /// Config file (TOML).
        #[arg(long, required_unless_present = "dev", conflicts_with = "dev")]
        config: Option<PathBuf>,
        /// Zero-config demo mode: SQLite under ./.signoff-dev, demo policy and credentials.
        #[arg(long)]
        dev: bool,
        /// Override the listen address (e.g. 127.0.0.1:0 for a free port).
        #[arg(long)]
        listen: Option<String>,
        /// Log format on stderr: `text` (colour only on a terminal) or
        /// `json` (one object per line). Overrides the config's `log_format`.
        #[arg(long, env = "SIGNOFF_LOG_FORMAT", value_name = "text|json")]
        log_format: Option<config::LogFormat>,
    },
    /// Manage agents and users (direct database access via the config file).
    #[command(subcommand)]
    Principal(PrincipalCmd),
    /// Run a command only if the policy allows it or enough other people approve it.
    Exec(remote::ExecArgs),
    /// Submit an action request (for pipelines); optionally wait for the decision.
    Request(remote::RequestArgs),
    /// List requests.
    Ls(remote::LsArgs),
    /// Show one request.
    Show {
        /// Request id.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// Approve a request.
    Approve {
        /// Request id.
        id: String,
        /// Why.
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Deny a request.
    Deny {
        /// Request id.
        id: String,
        /// Why (required).
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Cancel your own request.
    Cancel {
        /// Request id.
        id: String,
        /// Why.
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Check, test and explain policies; reload them on a running gateway.
    #[command(subcommand)]
    Policy(policy_cmd::PolicyCmd),
    /// Read, verify, export and report on the audit ledger.
    #[command(subcommand)]
    Audit(audit::AuditCmd),
    /// Operate the ledger's witness (direct database access via the config file).
    #[command(subcommand)]
    Ledger(witness::LedgerCmd),
    // Agent gates (MCP proxy, Claude Code hook).
    /// Put an MCP server behind signoff: every tool call is an action request.
    Mcp(mcp_cmd::McpArgs),
    /// Answer an agent's tool-use hook (claude-code).
    #[command(subcommand)]
    Hook(mcp_cmd::HookCmd),
}

#[derive(Debug, Subcommand)]
enum PrincipalCmd {
    /// Add an agent or a user; prints the new token as the only line on stdout.
    #[command(subcommand)]
    Add(AddCmd),
    /// List principals.
    Ls {
        /// Config file.
        #[arg(long)]
        config: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a principal (all its credentials stop working).
    Revoke {
        /// Name.
        name: String,
        /// Config file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Issue, list and revoke a principal's credentials.
    #[command(subcommand)]
    Credential(serve::CredentialCmd),
    /// Link an external identity (OIDC subject, Slack or Teams user) to a user.
    Link(serve::LinkArgs),
    /// Show or change a principal's attributes (an audit event names
    /// the change); prints the resulting attributes as JSON.
    Attrs {
        /// The principal.
        name: String,
        /// KEY=VALUE to set (repeatable; an empty VALUE clears the key).
        #[arg(long = "attr", value_name = "KEY=VALUE")]
        attrs: Vec<String>,
        /// Config file.
        #[arg(long)]
        config: PathBuf,
    },
    /// List a user's linked identities.
    Identities {
        /// The user.
        name: String,
        /// Config file.
        #[arg(long)]
        config: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum AddCmd {
    /// An agent (automation). Its owner can never approve its requests.
    Agent {
        /// Unique name.
        name: String,
        /// The human responsible for it.
        #[arg(long)]
        owner: Option<String>,
        /// Groups (for policies).
        #[arg(long = "group")]
        groups: Vec<String>,
        /// Bind its token to one gate (exec, mcp, http, postgres, api):
        /// policies see that gate, and it cannot submit through another.
        #[arg(long)]
        gate: Option<String>,
        /// Attribute KEY=VALUE (repeatable): environments=staging,dev
        /// (where it may act), team=…, labels=a,b. Policies see them as
        /// principal.KEY.
        #[arg(long = "attr", value_name = "KEY=VALUE")]
        attrs: Vec<String>,
        /// Config file.
        #[arg(long)]
        config: PathBuf,
    },
    /// A human.
    User {
        /// Unique name.
        name: String,
        /// Email address.
        #[arg(long)]
        email: Option<String>,
        /// Groups (repeatable).
        #[arg(long = "group")]
        groups: Vec<String>,
        /// reviewer (default), auditor or admin.
        #[arg(long, default_value = "reviewer")]
        role: String,
        /// Attribute KEY=VALUE (repeatable): department=…, team=…,
        /// labels=a,b. Policies see them as principal.KEY.
        #[arg(long = "attr", value_name = "KEY=VALUE")]
        attrs: Vec<String>,
        /// Config file.
        #[arg(long)]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `exec` and the hook are on the path of every gated action and do one
    // thing at a time: a single-threaded runtime spares them starting
    // worker threads.
    let mut builder = if matches!(cli.command, Command::Exec(_) | Command::Hook(_)) {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("signoff: cannot start the async runtime: {e}");
            return ExitCode::from(70);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            eprintln!("signoff: {}", format!("{e:#}").replace('\n', "\n  "));
            ExitCode::from(u8::try_from(exit::for_error(&e)).unwrap_or(1))
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Serve {
            config,
            dev,
            listen,
            log_format,
        } => serve::run(config, dev, listen, log_format).await,
        Command::Principal(cmd) => serve::principal(cmd).await,
        Command::Exec(args) => remote::exec(args).await,
        Command::Request(args) => remote::request(args).await,
        Command::Ls(args) => remote::ls(args).await,
        Command::Show { id, json, remote } => remote::show(&remote, &id, json).await,
        Command::Approve { id, reason, remote } => {
            remote::review(&remote, &id, signoff_core::ReviewDecision::Approve, reason).await
        }
        Command::Deny { id, reason, remote } => {
            remote::review(
                &remote,
                &id,
                signoff_core::ReviewDecision::Deny,
                Some(reason),
            )
            .await
        }
        Command::Cancel { id, reason, remote } => remote::cancel(&remote, &id, reason).await,
        Command::Policy(cmd) => policy_cmd::run(cmd).await,
        Command::Audit(cmd) => audit::run(cmd).await,
        Command::Ledger(cmd) => witness::run(cmd).await,
        Command::Mcp(args) => mcp_cmd::run_mcp(args).await,
        Command::Hook(cmd) => mcp_cmd::run_hook(cmd).await,
    }
}
