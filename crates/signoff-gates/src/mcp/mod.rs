//! The MCP gate: `signoff mcp --name NAME -- SERVER ARGS…` sits between an
//! agent and a stdio MCP server ([`run_stdio`]), and `signoff mcp --name
//! NAME --listen ADDR --upstream URL` in front of a Streamable HTTP one
//! ([`run_http`]). Every `tools/call` becomes an action request
//! (`mcp.NAME.TOOL`); everything else in the protocol passes through.
//!
//! The proxy relays JSON-RPC messages (stdio: line by line; HTTP: request by
//! request, as a reverse proxy) and reads only what it must: `tools/call`
//! requests (gated), `tools/list` results (to show reviewers the tool's
//! description and the server's own annotations) and the responses to calls
//! it forwarded (to report their outcome). Message types come from the
//! official SDK ([`rmcp::model`]), so the proxy speaks every protocol
//! version rmcp knows without negotiating one itself.
//!
//! A gated call runs the shared [`crate::session`]: the digest covers the
//! tool, the server's identity (name and command) and the full arguments,
//! and the request forwarded after the claim is serialized from exactly the
//! parameters that were hashed. A call still waiting when the client's
//! patience (`--wait`) runs out answers with a tool result naming the
//! request; calling the tool again with the same arguments resumes it.

mod http;
mod stdio;

pub use http::{HttpProxy, HttpSpec};
pub use stdio::run_stdio;

use crate::exec::shell_join;
use crate::session::{Execution, GateAction, Progress, Session, SessionEnd, Start};
use rmcp::model::{CallToolRequestParams, CallToolResult, ContentBlock, Tool};
use serde_json::{json, Map, Value};
use sha2::{Digest as _, Sha256};
use signoff_client::Client;
use signoff_core::display;
use signoff_core::wire::{OutcomeBody, RequestView, SubmitRequest};
use signoff_core::{ActionRequest, Digest, PrincipalRef, RequestStatus};
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Where the server is: the proxy's identity for it in every digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum McpServer {
    /// A stdio server the proxy starts: the command and its arguments.
    Command(Vec<String>),
    /// A Streamable HTTP server: its endpoint URL.
    Url(String),
}

/// How the proxy describes the server and its calls.
#[derive(Debug, Clone)]
pub struct McpSpec {
    /// The server's name in actions: `mcp.NAME.TOOL`.
    pub name: String,
    /// The server.
    pub server: McpServer,
    /// Which argument names the resource: `(Some(tool), arg)` for one tool,
    /// `(None, arg)` for every tool. The first that is present wins.
    pub resource_args: Vec<(Option<String>, String)>,
    /// Where (`--env`).
    pub environment: Option<String>,
    /// How long one call may wait for a decision before the proxy answers
    /// "still waiting" (stay below the client's request timeout).
    pub wait: Duration,
}

impl McpSpec {
    /// The server's identity as the digest binds it.
    fn server_identity(&self) -> Value {
        match &self.server {
            McpServer::Command(command) => {
                json!({ "name": self.name, "command": shell_join(command) })
            }
            McpServer::Url(url) => json!({ "name": self.name, "url": url }),
        }
    }

    /// The action for `tool`: `mcp.NAME.TOOL`, with characters an action may
    /// not contain replaced by `-`.
    pub fn action(&self, tool: &str) -> String {
        format!(
            "mcp.{}.{}",
            action_segment(&self.name),
            action_segment(tool)
        )
    }

    /// The resource a call touches: the mapped argument's value, else
    /// `mcp:NAME`.
    pub fn resource(&self, tool: &str, args: &Map<String, Value>) -> String {
        for (only, arg) in &self.resource_args {
            if only.as_deref().is_some_and(|t| t != tool) {
                continue;
            }
            let value = match args.get(arg) {
                Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
                Some(Value::Array(items)) => items
                    .iter()
                    .find_map(|v| v.as_str().map(str::to_owned))
                    .filter(|s| !s.is_empty()),
                _ => None,
            };
            if let Some(v) = value {
                return display::one_line(&v);
            }
        }
        format!("mcp:{}", self.name)
    }
}

/// `s` as one segment of a dotted action.
pub fn action_segment(s: &str) -> String {
    let out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if out.is_empty() {
        "-".into()
    } else {
        out
    }
}

/// One tool call, as the gate describes, hashes and forwards it.
#[derive(Debug, Clone)]
pub struct ToolCall {
    /// The tool.
    pub tool: String,
    /// The full arguments.
    pub arguments: Map<String, Value>,
    /// What `tools/list` said about the tool, if the server listed it.
    pub listed: Option<Tool>,
}

impl ToolCall {
    /// The request's context: the call, the server, the tool's description
    /// and the server's own hints (untrusted), a readable rendering of the
    /// arguments, and the arguments themselves — as canonical JSON, so the
    /// digest covers every byte the server will receive.
    pub fn context(&self, spec: &McpSpec) -> Map<String, Value> {
        let mut mcp = Map::new();
        mcp.insert("server".into(), spec.server_identity());
        mcp.insert("tool".into(), Value::String(self.tool.clone()));
        if let Some(tool) = &self.listed {
            if let Some(d) = &tool.description {
                mcp.insert("description".into(), Value::String(d.to_string()));
            }
            if let Some(a) = &tool.annotations {
                let mut hints = Map::new();
                for (k, v) in [
                    ("readOnlyHint", a.read_only_hint),
                    ("destructiveHint", a.destructive_hint),
                    ("idempotentHint", a.idempotent_hint),
                    ("openWorldHint", a.open_world_hint),
                ] {
                    if let Some(v) = v {
                        hints.insert(k.into(), Value::Bool(v));
                    }
                }
                // named so nobody mistakes them for facts
                mcp.insert("server_hints".into(), Value::Object(hints));
            }
        }
        let mut ctx = Map::new();
        ctx.insert("mcp".into(), Value::Object(mcp));
        ctx.insert("call".into(), Value::String(render_call(self)));
        ctx.insert(
            "arguments".into(),
            policy_safe(&Value::Object(self.arguments.clone())),
        );
        ctx.insert(
            "arguments_json".into(),
            Value::String(signoff_core::jcs::value_to_string(&Value::Object(
                self.arguments.clone(),
            ))),
        );
        ctx
    }

    /// The key a retry with the same tool and arguments is recognised by.
    fn retry_key(&self) -> String {
        let v = json!({ "tool": self.tool, "arguments": self.arguments });
        hex::encode(Sha256::digest(
            signoff_core::jcs::value_to_string(&v).as_bytes(),
        ))
    }
}

/// Cedar has no null and no floats: the arguments as policies see them,
/// with nulls dropped and non-integers as strings. The exact arguments are
/// in `arguments_json`.
fn policy_safe(v: &Value) -> Value {
    match v {
        Value::Number(n) if n.as_i64().is_none() => Value::String(n.to_string()),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .filter(|v| !v.is_null())
                .map(policy_safe)
                .collect(),
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), policy_safe(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Longest argument value shown in full to reviewers.
const SHOWN: usize = 200;

/// `tool(path="/data/a.txt", content="…" (1234 chars))`: one line, control
/// characters escaped, long values folded.
pub fn render_call(call: &ToolCall) -> String {
    let args: Vec<String> = call
        .arguments
        .iter()
        .map(|(k, v)| {
            let text = match v {
                Value::String(s) => format!("{s:?}"),
                other => other.to_string(),
            };
            let n = text.chars().count();
            let shown = display::cell(&text, SHOWN);
            if n > SHOWN {
                format!("{}={shown} ({n} chars)", display::one_line(k))
            } else {
                format!("{}={shown}", display::one_line(k))
            }
        })
        .collect();
    format!("{}({})", display::one_line(&call.tool), args.join(", "))
}

/// How often a client that asked for progress hears that its call still
/// waits (clients that reset their timeout on progress keep waiting).
const HEARTBEAT: Duration = Duration::from_secs(10);

/// How long the proxy waits for the tools list it asks for itself.
const LIST_WAIT: Duration = Duration::from_secs(5);

/// What became of a call the proxy sent on to the server.
pub(crate) enum Forwarded {
    /// The server's response to the call, already relayed to the client.
    Answered(Value),
    /// The call never ran on the server (it could not be sent, or the
    /// server refused it before reading it): the client still needs an
    /// answer. Says why.
    NotSent(String),
    /// The call reached the server but its response was not seen here (it
    /// may come on a stream the client resumes). Says why.
    Unseen(String),
    /// The server refused the call (an HTTP error status, relayed to the
    /// client as it was). Says why.
    Refused(String),
}

/// The client's side of gated calls, as one transport reaches it: the stdio
/// relay, or one HTTP exchange.
pub(crate) trait Channel: Send + Sync + 'static {
    /// Sends the proxy's own notification (progress while a call waits) to
    /// the client, if this channel can carry one.
    fn notify(&self, msg: Value);

    /// Answers a call with a message the proxy made (the call did not run).
    fn reply(&self, msg: Value) -> impl Future<Output = ()> + Send;

    /// Sends the approved `request` to the server, relays what the server
    /// answers to the client, and says what became of it.
    fn forward(&self, request: Value) -> impl Future<Output = Forwarded> + Send;

    /// Asks the server for its tools itself: the `tools/list` response, or
    /// `None` when none came within [`LIST_WAIT`].
    fn list_tools(&self) -> impl Future<Output = Option<Value>> + Send;
}

/// A JSON-RPC response.
fn response(id: &Value, result: Value) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "result": result })
}

/// A JSON-RPC error response.
fn error_response(id: &Value, code: i64, message: &str) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "error": { "code": code, "message": message } })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn id_key(id: &Value) -> String {
    signoff_core::jcs::value_to_string(id)
}

/// What the gated calls of one proxy share, whatever transport they came
/// on.
pub(crate) struct Gate {
    spec: McpSpec,
    client: Client,
    /// What the server listed, by tool name.
    tools: Mutex<HashMap<String, Tool>>,
    /// Requests still waiting for a decision, by [`ToolCall::retry_key`].
    pending: Mutex<HashMap<String, String>>,
    /// Gated calls the client may cancel, by the channel's key for the
    /// call's JSON-RPC id.
    cancels: Mutex<HashMap<String, oneshot::Sender<()>>>,
    /// Who the token is, asked once: allowed calls are claimed in the
    /// submission's round trip ([`Session::claim_at_once`]).
    principal: tokio::sync::OnceCell<PrincipalRef>,
}

impl Gate {
    pub(crate) fn new(spec: McpSpec, client: Client) -> Self {
        Gate {
            spec,
            client,
            tools: Mutex::default(),
            pending: Mutex::default(),
            cancels: Mutex::default(),
            principal: tokio::sync::OnceCell::new(),
        }
    }

    /// The principal the gateway says the token is; `None` while it cannot
    /// be asked (the call then submits and claims in two round trips, and
    /// fails closed the same way if the gateway is down).
    async fn principal(&self) -> Option<PrincipalRef> {
        self.principal
            .get_or_try_init(|| async {
                self.client
                    .whoami()
                    .await
                    .map(|who| who.principal.reference())
            })
            .await
            .ok()
            .cloned()
    }

    /// Learns the tools from a `tools/list` response.
    pub(crate) fn learn_tools(&self, response: &Value) {
        let Some(list) = response.pointer("/result/tools").and_then(Value::as_array) else {
            return;
        };
        let mut tools = lock(&self.tools);
        for t in list {
            if let Ok(tool) = serde_json::from_value::<Tool>(t.clone()) {
                tools.insert(tool.name.to_string(), tool);
            }
        }
    }

    /// A client's `notifications/cancelled` for the call known as `key`.
    pub(crate) fn cancel(&self, key: &str) {
        if let Some(cancel) = lock(&self.cancels).remove(key) {
            let _ = cancel.send(());
        }
    }

    /// What the server listed for `tool`, asking it once if the client never
    /// listed the tools itself.
    async fn listed<C: Channel>(&self, ch: &C, tool: &str) -> Option<Tool> {
        if lock(&self.tools).is_empty() {
            // a server that does not answer only costs the description and
            // hints, never the call
            if let Some(answer) = ch.list_tools().await {
                self.learn_tools(&answer);
            }
        }
        lock(&self.tools).get(tool).cloned()
    }

    /// Gates one `tools/call` request `msg` (JSON-RPC id `id`) that came on
    /// `ch`, answering the client in every case but a cancellation.
    /// `cancel_key` is how a `notifications/cancelled` names it.
    pub(crate) async fn gate_call<C: Channel>(
        self: Arc<Self>,
        ch: Arc<C>,
        id: Value,
        msg: Value,
        cancel_key: String,
    ) {
        let params: CallToolRequestParams =
            match serde_json::from_value(msg.get("params").cloned().unwrap_or(Value::Null)) {
                Ok(p) => p,
                Err(e) => {
                    ch.reply(error_response(
                        &id,
                        -32602,
                        &format!("invalid tools/call params: {e}"),
                    ))
                    .await;
                    return;
                }
            };
        let progress_token = msg.pointer("/params/_meta/progressToken").cloned();
        let tool = params.name.to_string();
        let call = ToolCall {
            listed: self.listed(&*ch, &tool).await,
            arguments: params.arguments.clone().unwrap_or_default(),
            tool,
        };
        let body = SubmitRequest {
            action: self.spec.action(&call.tool),
            resource: self.spec.resource(&call.tool, &call.arguments),
            environment: self.spec.environment.clone(),
            context: call.context(&self.spec),
            justification: None,
            on_behalf_of: None,
            gate: Some("mcp".into()),
            claim_digest: None,
        };
        let key = call.retry_key();
        let resumed = lock(&self.pending).get(&key).cloned();
        let start = match &resumed {
            Some(rid) => Start::Resume { id: rid.clone() },
            None => Start::submit(body.clone()),
        };
        let (cancel_tx, cancel_rx) = oneshot::channel::<()>();
        lock(&self.cancels).insert(cancel_key.clone(), cancel_tx);
        let interrupt = async move {
            if cancel_rx.await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        let action = Forward {
            ch: Arc::clone(&ch),
            body: body.clone(),
            params,
            id: id.clone(),
        };
        let mut requirement = None::<String>;
        // progress must increase across the observer's notes and the heartbeat
        let sent = Arc::new(AtomicU64::new(0));
        let heartbeat = progress_token.clone().map(|token| {
            let gate = Arc::clone(&self);
            let ch = Arc::clone(&ch);
            let sent = Arc::clone(&sent);
            let key = key.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                loop {
                    tokio::time::sleep(HEARTBEAT).await;
                    // only while a request waits for reviewers
                    let Some(rid) = lock(&gate.pending).get(&key).cloned() else {
                        continue;
                    };
                    let n = sent.fetch_add(1, Ordering::Relaxed) + 1;
                    ch.notify(json!({
                        "jsonrpc": "2.0",
                        "method": "notifications/progress",
                        "params": {
                            "progressToken": token,
                            "progress": n,
                            "message": format!(
                                "signoff: still waiting for approval after {} s (request {rid})",
                                started.elapsed().as_secs()
                            ),
                        },
                    }));
                }
            })
        });
        let finished = {
            let sent = Arc::clone(&sent);
            let gate = Arc::clone(&self);
            let ch = Arc::clone(&ch);
            let key = key.clone();
            let requirement = &mut requirement;
            let mut observer = move |event: &Progress| {
                let (view, note) = match event {
                    Progress::Submitted(v) => (Some(v), None),
                    Progress::ReviewLanded { review, .. } => (
                        None,
                        Some(format!("{} {:?} it", review.reviewer, review.decision)),
                    ),
                    Progress::NeedsMoreApprovals(v) => (Some(v), None),
                    _ => (None, None),
                };
                if let Some(v) = view {
                    if v.status == RequestStatus::Pending {
                        lock(&gate.pending).insert(key.clone(), v.id.clone());
                        *requirement = v.verdict.requirement.as_ref().map(|r| r.to_string());
                    }
                }
                let note = note.or_else(|| {
                    view.filter(|v| v.status == RequestStatus::Pending)
                        .map(|v| {
                            format!(
                                "signoff: waiting for approval{} (request {})",
                                requirement
                                    .as_deref()
                                    .map(|r| format!(" from {r}"))
                                    .unwrap_or_default(),
                                v.id
                            )
                        })
                });
                if let (Some(token), Some(note)) = (&progress_token, note) {
                    let n = sent.fetch_add(1, Ordering::Relaxed) + 1;
                    ch.notify(json!({
                        "jsonrpc": "2.0",
                        "method": "notifications/progress",
                        "params": { "progressToken": token, "progress": n, "message": note },
                    }));
                }
            };
            Session::new(&self.client)
                .give_up_after(Some(self.spec.wait))
                .claim_at_once(self.principal().await)
                .run(start, action, &mut observer, interrupt)
                .await
        };
        if let Some(h) = heartbeat {
            h.abort();
        }
        lock(&self.cancels).remove(&cancel_key);
        let keep_pending = matches!(finished, SessionEnd::GaveUp { .. });
        if !keep_pending {
            lock(&self.pending).remove(&key);
        }
        if let Some(result) = answer(&finished, requirement.as_deref()) {
            ch.reply(response(&id, result)).await;
        }
        if let SessionEnd::Ran {
            report_error: Some(e),
            id,
            ..
        } = &finished
        {
            eprintln!("signoff mcp: the outcome of request {id} could not be recorded: {e}");
        }
    }
}

/// A tool result with `text`, flagged as an error.
fn tool_error(text: String) -> Value {
    let mut r = CallToolResult::error(vec![ContentBlock::text(text)]);
    // older protocol versions have no resultType; every version accepts its absence
    r.result_type = None;
    serde_json::to_value(r).unwrap_or_else(|_| json!({ "content": [], "isError": true }))
}

/// What the client gets when the call did not run (`None` when it ran —
/// the server's own response was forwarded — or the client cancelled it).
fn answer(end: &SessionEnd<()>, requirement: Option<&str>) -> Option<Value> {
    let naming = |id: Option<&str>| id.map(|i| format!(" (request {i})")).unwrap_or_default();
    let id = end.request_id();
    let text = match end {
        SessionEnd::Ran { .. } | SessionEnd::Interrupted { .. } => return None,
        SessionEnd::Denied { reason, .. } => {
            format!("signoff refused this tool call: {reason}{}. Do not retry it unchanged.", naming(id))
        }
        SessionEnd::ClaimRefused { error, .. } => {
            format!("signoff did not forward this tool call: {error}{}", naming(id))
        }
        SessionEnd::AlreadyUsed { status, .. } => format!(
            "signoff did not forward this tool call: its approval was already used (status {status}){}; call it again to ask anew",
            naming(id)
        ),
        SessionEnd::Expired { status, reason, .. } => format!(
            "signoff did not forward this tool call: the request {status}: {reason}{}",
            naming(id)
        ),
        SessionEnd::GaveUp { .. } => format!(
            "This tool call is waiting for approval{} (signoff request {}). It has NOT run. \
             Call the tool again later with exactly the same arguments: once a reviewer \
             approves, that call runs; a call with different arguments is a new request.",
            requirement.map(|r| format!(" from {r}")).unwrap_or_default(),
            id.unwrap_or_default()
        ),
        SessionEnd::Unavailable { error, .. } => format!(
            "signoff could not reach the approval gateway, so this tool call was not forwarded: {error}{}",
            naming(id)
        ),
        SessionEnd::Rejected { error, .. } => format!(
            "the approval gateway rejected this tool call, so it was not forwarded: {error}{}",
            naming(id)
        ),
        SessionEnd::Usage { message, .. } => format!(
            "signoff cannot gate this tool call, so it was not forwarded: {message}{}",
            naming(id)
        ),
    };
    Some(tool_error(display::one_line(&text)))
}

/// Forwarding one call to the server through its channel, as the
/// session's action.
struct Forward<C> {
    ch: Arc<C>,
    body: SubmitRequest,
    params: CallToolRequestParams,
    id: Value,
}

impl<C: Channel> Forward<C> {
    fn action_digest(body: &SubmitRequest, principal: &PrincipalRef) -> Digest {
        ActionRequest {
            action: body.action.clone(),
            resource: body.resource.clone(),
            environment: body.environment.clone(),
            context: body.context.clone(),
            justification: body.justification.clone(),
            principal: principal.clone(),
            on_behalf_of: body.on_behalf_of.clone(),
        }
        .digest()
    }

    async fn not_forwarded(&self, why: String) -> Execution<()> {
        self.ch
            .reply(response(&self.id, tool_error(why.clone())))
            .await;
        Execution {
            outcome: OutcomeBody::not_run(None, why),
            output: (),
        }
    }
}

impl<C: Channel> GateAction for Forward<C> {
    type Output = ();

    fn digest(&self, principal: &PrincipalRef) -> Result<Digest, String> {
        Ok(Self::action_digest(&self.body, principal))
    }

    async fn run(self, claimed: &RequestView) -> Execution<()> {
        // what is about to be sent, hashed again from the parameters
        // themselves: it must be the approved call
        let tool = self.params.name.to_string();
        let arguments = self.params.arguments.clone().unwrap_or_default();
        let same = tool == claimed.request.context["mcp"]["tool"]
            && Some(signoff_core::jcs::value_to_string(&Value::Object(arguments)).as_str())
                == claimed.request.context["arguments_json"].as_str()
            && Self::action_digest(&self.body, &claimed.request.principal) == claimed.digest;
        if !same {
            return self.not_forwarded(format!(
                "signoff did not forward this tool call: it differs from the approved one (request {})",
                claimed.id
            )).await;
        }
        let request = json!({
            "jsonrpc": "2.0",
            "id": self.id,
            "method": "tools/call",
            "params": self.params,
        });
        let started = Instant::now();
        // the channel relays the server's answer to the client first; the
        // outcome is reported after
        let forwarded = self.ch.forward(request).await;
        let duration = started.elapsed();
        let response = match forwarded {
            Forwarded::Answered(response) => response,
            Forwarded::NotSent(why) => {
                return self
                    .not_forwarded(format!("{why} (request {})", claimed.id))
                    .await
            }
            Forwarded::Refused(why) => {
                return Execution {
                    outcome: OutcomeBody::not_run(None, format!("tools/call {tool}: {why}")),
                    output: (),
                }
            }
            Forwarded::Unseen(why) => {
                return Execution {
                    outcome: OutcomeBody {
                        exit_code: None,
                        signal: None,
                        duration_ms: duration.as_millis() as u64,
                        output_sha256: None,
                        summary: Some(format!("tools/call {tool}: {why}")),
                    },
                    output: (),
                }
            }
        };
        let result = response.get("result");
        let is_error = match result {
            Some(r) => r.get("isError").and_then(Value::as_bool).unwrap_or(false),
            None => true,
        };
        let hashed = result
            .and_then(|r| r.get("content"))
            .map(signoff_core::jcs::value_to_string)
            .or_else(|| {
                response
                    .get("error")
                    .map(signoff_core::jcs::value_to_string)
            })
            .unwrap_or_default();
        let summary = match (result, response.get("error")) {
            (Some(_), _) => format!(
                "tools/call {tool}: isError={is_error} after {} ms",
                duration.as_millis()
            ),
            (None, Some(e)) => format!(
                "tools/call {tool}: protocol error {}",
                display::cell(&e.to_string(), 200)
            ),
            (None, None) => format!("tools/call {tool}: malformed response"),
        };
        Execution {
            outcome: OutcomeBody {
                exit_code: Some(i32::from(is_error)),
                signal: None,
                duration_ms: duration.as_millis() as u64,
                output_sha256: Some(hex::encode(Sha256::digest(hashed.as_bytes()))),
                summary: Some(summary),
            },
            output: (),
        }
    }
}

/// Why the proxy could not run.
#[derive(Debug, thiserror::Error)]
pub enum McpError {
    /// No server command.
    #[error("no MCP server command given after `--`")]
    NoCommand,
    /// The server would not start.
    #[error("cannot start the MCP server `{command}`: {source}")]
    Spawn {
        /// The command.
        command: String,
        /// Why.
        source: std::io::Error,
    },
    /// The HTTP listener could not be opened.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address asked for.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// The upstream URL is not one the proxy can forward to.
    #[error("invalid --upstream `{url}`: {reason}")]
    Upstream {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The HTTP client for the upstream could not be built.
    #[error("cannot set up the HTTP client for the upstream: {0}")]
    HttpClient(String),
    /// The HTTP server failed.
    #[error("the MCP proxy's HTTP server failed: {0}")]
    Serve(std::io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> McpSpec {
        McpSpec {
            name: "fs".into(),
            server: McpServer::Command(vec!["npx".into(), "server".into(), "/data".into()]),
            resource_args: vec![
                (None, "path".into()),
                (Some("move_file".into()), "source".into()),
            ],
            environment: None,
            wait: Duration::from_secs(1),
        }
    }

    fn args(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn actions_and_resources() {
        let s = spec();
        assert_eq!(s.action("write_file"), "mcp.fs.write_file");
        assert_eq!(s.action("a.b/c"), "mcp.fs.a-b-c");
        assert_eq!(
            s.resource("write_file", &args(json!({"path": "/data/a"}))),
            "/data/a"
        );
        assert_eq!(
            s.resource("move_file", &args(json!({"source": "/data/b"}))),
            "/data/b"
        );
        assert_eq!(
            s.resource("other", &args(json!({"source": "/data/b"}))),
            "mcp:fs"
        );
        assert_eq!(s.resource("x", &args(json!({"path": "/a\nb"}))), "/a\\nb");
    }

    #[test]
    fn the_context_binds_the_full_arguments_and_the_server() {
        let s = spec();
        let call = |v: Value| ToolCall {
            tool: "write_file".into(),
            arguments: args(v),
            listed: None,
        };
        let a = call(json!({"path": "/data/a", "content": "x", "ratio": 0.5, "n": null}));
        let b = call(json!({"path": "/data/a", "content": "y", "ratio": 0.5, "n": null}));
        let ca = a.context(&s);
        assert_ne!(ca, b.context(&s));
        assert_ne!(a.retry_key(), b.retry_key());
        assert_eq!(ca["mcp"]["server"]["command"], "npx server /data");
        assert_eq!(ca["arguments"]["ratio"], "0.5");
        assert!(ca["arguments"].get("n").is_none(), "Cedar has no null");
        assert!(ca["arguments_json"]
            .as_str()
            .unwrap()
            .contains("\"n\":null"));
        let mut other = s.clone();
        other.server = McpServer::Command(vec!["npx".into(), "server".into(), "/etc".into()]);
        assert_ne!(ca, a.context(&other), "another server is another call");
        other.server = McpServer::Url("https://mcp.example/mcp".into());
        let remote = a.context(&other);
        assert_eq!(remote["mcp"]["server"]["url"], "https://mcp.example/mcp");
        assert!(remote["mcp"]["server"].get("command").is_none());
    }

    #[test]
    fn reviewers_see_folded_escaped_arguments() {
        let call = ToolCall {
            tool: "write_file".into(),
            arguments: args(json!({"path": "/data/\u{1b}[2Ja", "content": "z".repeat(500)})),
            listed: None,
        };
        let shown = render_call(&call);
        assert!(shown.starts_with("write_file("), "{shown}");
        assert!(!shown.contains('\u{1b}'), "{shown}");
        assert!(shown.contains("(502 chars)"), "{shown}");
        assert!(shown.chars().count() < 300, "{shown}");
    }

    #[test]
    fn hints_are_marked_as_the_servers() {
        let tool: Tool = serde_json::from_value(json!({
            "name": "delete", "description": "Deletes a file",
            "inputSchema": {"type": "object"},
            "annotations": {"readOnlyHint": false, "destructiveHint": true}
        }))
        .unwrap();
        let call = ToolCall {
            tool: "delete".into(),
            arguments: Map::new(),
            listed: Some(tool),
        };
        let ctx = call.context(&spec());
        assert_eq!(ctx["mcp"]["server_hints"]["destructiveHint"], true);
        assert_eq!(ctx["mcp"]["description"], "Deletes a file");
    }

    #[test]
    fn refusals_are_tool_errors_not_protocol_errors() {
        let end: SessionEnd<()> = SessionEnd::Denied {
            id: "r1".into(),
            status: RequestStatus::Denied,
            reason: "denied by policy no-rm: never".into(),
        };
        let v = answer(&end, None).unwrap();
        assert_eq!(v["isError"], true);
        assert!(v["content"][0]["text"].as_str().unwrap().contains("no-rm"));
        let waiting: SessionEnd<()> = SessionEnd::GaveUp {
            id: "r2".into(),
            waited: Duration::from_secs(1),
        };
        let text = answer(&waiting, Some("sre:1")).unwrap()["content"][0]["text"].clone();
        let text = text.as_str().unwrap();
        assert!(text.contains("from sre:1") && text.contains("r2"), "{text}");
    }
}
