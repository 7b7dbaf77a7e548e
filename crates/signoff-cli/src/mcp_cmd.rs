//! `signoff mcp` (the MCP proxy) and `signoff hook claude-code`.

use crate::Remote;
use anyhow::{Context as _, Result};
use clap::{Args, Subcommand};
use signoff_gates::{claude_hook, mcp};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// `signoff mcp --name NAME -- SERVER ARGS…` (stdio) or `signoff mcp --name
/// NAME --listen ADDR --upstream URL` (Streamable HTTP).
#[derive(Debug, Args)]
pub struct McpArgs {
    /// The server's name in actions: `mcp.NAME.TOOL`.
    #[arg(long)]
    name: String,
    /// Which argument names the resource: ARG for every tool, or TOOL=ARG
    /// (repeatable; the first present wins; default `path`).
    #[arg(long = "resource-arg", value_name = "[TOOL=]ARG")]
    resource_args: Vec<String>,
    /// Environment for the requests.
    #[arg(long = "env")]
    environment: Option<String>,
    /// How long one call waits for a decision before answering "waiting for
    /// approval" (keep it below the client's request timeout).
    #[arg(long, default_value = "50s")]
    wait: String,
    /// Streamable HTTP mode: where to listen, HOST:PORT (port 0: any free
    /// port; the endpoint's URL is printed on stdout).
    #[arg(long, value_name = "HOST:PORT", requires = "upstream")]
    listen: Option<String>,
    /// Streamable HTTP mode: the remote MCP server's endpoint URL.
    #[arg(
        long,
        value_name = "URL",
        requires = "listen",
        conflicts_with = "command"
    )]
    upstream: Option<String>,
    #[command(flatten)]
    remote: Remote,
    /// The MCP server command (stdio mode).
    #[arg(last = true, required_unless_present = "upstream")]
    command: Vec<String>,
}

/// Agent hooks.
#[derive(Debug, Subcommand)]
pub enum HookCmd {
    /// A Claude Code PreToolUse hook: reads the hook input on stdin, prints
    /// the permission decision on stdout; denies on any error.
    ClaudeCode {
        /// Environment for the requests.
        #[arg(long = "env")]
        environment: Option<String>,
        /// How long to wait for a decision (keep it below the hook's timeout).
        #[arg(long, default_value = "50s")]
        wait: String,
        #[command(flatten)]
        remote: Remote,
    },
}

/// Runs the stdio proxy (exits with the server's status) or the HTTP one
/// (exits 0 when stopped).
pub async fn run_mcp(args: McpArgs) -> Result<i32> {
    let mut resource_args = Vec::new();
    for a in &args.resource_args {
        match a.split_once('=') {
            Some((tool, arg)) if !tool.is_empty() && !arg.is_empty() => {
                resource_args.push((Some(tool.to_owned()), arg.to_owned()))
            }
            None if !a.is_empty() => resource_args.push((None, a.clone())),
            _ => {
                return Err(crate::exit::usage(format!(
                    "invalid --resource-arg `{a}`: use ARG or TOOL=ARG"
                )))
            }
        }
    }
    if resource_args.is_empty() {
        resource_args.push((None, "path".to_owned()));
    }
    let spec = mcp::McpSpec {
        name: args.name,
        server: mcp::McpServer::Command(args.command),
        resource_args,
        environment: args.environment,
        wait: crate::remote::wait_flag(&args.wait)?,
    };
    let client = crate::remote::client(&args.remote)?;
    if let (Some(listen), Some(upstream)) = (args.listen, args.upstream) {
        let proxy = mcp::HttpProxy::bind(client, spec, mcp::HttpSpec { listen, upstream })
            .await
            .map_err(|e| match e {
                mcp::McpError::Upstream { .. } => crate::exit::usage(e.to_string()),
                other => anyhow::Error::new(other).context("signoff mcp"),
            })?;
        if !proxy.is_loopback() {
            eprintln!(
                "signoff mcp: warning: listening on a non-loopback address; whoever reaches it calls tools as this agent"
            );
        }
        let mut out = tokio::io::stdout();
        out.write_all(format!("signoff mcp listening on {}\n", proxy.url()).as_bytes())
            .await?;
        out.flush().await?;
        proxy
            .serve(crate::serve::shutdown_signal())
            .await
            .context("signoff mcp")?;
        return Ok(0);
    }
    let (client_in, client_out) = agent_stdio();
    let code = mcp::run_stdio(client, spec, client_in, client_out)
        .await
        .context("signoff mcp")?;
    Ok(code)
}

/// The agent's end of the stdio transport. An MCP client starts its server
/// with pipes on stdin and stdout; those are read and written as
/// non-blocking pipes on the runtime's reactor. tokio's own `stdin()` and
/// `stdout()` hand every read and write to a blocking-pool thread, which
/// cost each message two thread hops on the way in and two on the way out
/// (a measurable part of what the proxy adds to a call). Anything else (a
/// terminal, a file) keeps tokio's stdin/stdout.
fn agent_stdio() -> (
    Box<dyn tokio::io::AsyncRead + Unpin + Send>,
    Box<dyn tokio::io::AsyncWrite + Unpin + Send>,
) {
    use std::os::fd::AsFd as _;
    use tokio::net::unix::pipe;
    let reader = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .and_then(pipe::Receiver::from_owned_fd);
    let writer = std::io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .and_then(pipe::Sender::from_owned_fd);
    let reader: Box<dyn tokio::io::AsyncRead + Unpin + Send> = match reader {
        Ok(r) => Box::new(r),
        Err(_) => Box::new(tokio::io::stdin()),
    };
    let writer: Box<dyn tokio::io::AsyncWrite + Unpin + Send> = match writer {
        Ok(w) => Box::new(w),
        Err(_) => Box::new(tokio::io::stdout()),
    };
    (reader, writer)
}

/// Runs one hook; always prints a decision and exits 0 (a deny is a
/// decision, not a failure).
pub async fn run_hook(cmd: HookCmd) -> Result<i32> {
    let HookCmd::ClaudeCode {
        environment,
        wait: wait_flag,
        remote,
    } = cmd;
    let mut input = String::new();
    let answer = match (
        tokio::io::stdin().read_to_string(&mut input).await,
        crate::remote::wait_flag(&wait_flag),
        crate::remote::client(&remote),
    ) {
        (Err(e), _, _) => claude_hook::decision("deny", &format!("signoff cannot read stdin: {e}")),
        (_, Err(e), _) | (_, _, Err(e)) => claude_hook::decision(
            "deny",
            &format!("signoff is misconfigured, so it denies: {e:#}"),
        ),
        (Ok(_), Ok(w), Ok(client)) => claude_hook::answer(&client, &input, environment, w).await,
    };
    let mut out = tokio::io::stdout();
    out.write_all(format!("{answer}\n").as_bytes()).await?;
    out.flush().await?;
    Ok(0)
}
