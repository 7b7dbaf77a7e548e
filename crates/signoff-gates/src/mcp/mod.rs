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
//! tool, the server's identity (name and command), the full arguments, the
//! client's protocol envelope (the `io.modelcontextprotocol/` keys of
//! `_meta`: protocol version, capabilities, client info) and, on the
//! continuation of a multi-round-trip call (2026-07-28), the client's
//! `inputResponses` and the server's `requestState`; the request forwarded
//! after the claim is serialized from exactly the parameters that were
//! hashed. A call still waiting when the client's patience (`--wait`) runs
//! out answers with a tool result naming the request; calling the tool
//! again with the same arguments resumes it.

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
use signoff_core::{Digest, PrincipalRef, RequestStatus};
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
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
            McpServer::Url(url) => {
                let (shown, query) = split_query(url);
                match query {
                    // a query can hold a key: reviewers see that there is one,
                    // the digest still binds it
                    Some(q) => json!({
                        "name": self.name,
                        "url": shown,
                        "url_query_sha256": hex::encode(Sha256::digest(q.as_bytes())),
                    }),
                    None => json!({ "name": self.name, "url": url }),
                }
            }
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

/// `url` as it may be shown (its query, which can hold a key, replaced by
/// `?…`), and the query.
pub(crate) fn split_query(url: &str) -> (String, Option<&str>) {
    match url.split_once('?') {
        Some((base, query)) => (format!("{base}?…"), Some(query)),
        None => (url.to_owned(), None),
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

/// The `_meta` keys of a request that the protocol reserves for its own
/// per-request envelope (2026-07-28: protocol version, client capabilities,
/// client info, log level): bound and forwarded. Other `_meta` keys are
/// neither (only `progressToken` is forwarded, unbound: it only tags
/// progress notifications).
const ENVELOPE_PREFIX: &str = "io.modelcontextprotocol/";

/// The envelope key naming the protocol version of a request.
pub(crate) const PROTOCOL_VERSION_KEY: &str = "io.modelcontextprotocol/protocolVersion";

/// The first protocol version whose results say their `resultType`.
const FIRST_RESULT_TYPE_VERSION: &str = "2026-07-28";

/// One tool call, as the gate describes, hashes and forwards it.
#[derive(Debug, Clone, Default)]
pub struct ToolCall {
    /// The tool.
    pub tool: String,
    /// The full arguments.
    pub arguments: Map<String, Value>,
    /// On the continuation of a multi-round-trip call: the client's answers
    /// to the server's input requests (what the user or the client's model
    /// said), as sent.
    pub input_responses: Option<Map<String, Value>>,
    /// On the continuation of a multi-round-trip call: the server's opaque
    /// state, echoed back by the client, as sent.
    pub request_state: Option<String>,
    /// The client's per-request protocol envelope: the `_meta` keys under
    /// `io.modelcontextprotocol/`.
    pub envelope: Map<String, Value>,
    /// What `tools/list` said about the tool, if the server listed it.
    pub listed: Option<Tool>,
}

impl ToolCall {
    /// The request's context: the call, the server, the tool's description
    /// and the server's own hints (untrusted), a readable rendering of the
    /// arguments, and the arguments themselves — as canonical JSON, so the
    /// digest covers every byte the server will receive. A continuation
    /// adds the client's answers and the server's state (and a readable
    /// rendering of both, `continuation`); a request with a protocol
    /// envelope adds it (`envelope_json`, and the version as
    /// `mcp.protocol_version`). Calls without them have no such keys.
    pub fn context(&self, spec: &McpSpec) -> Map<String, Value> {
        let mut mcp = Map::new();
        mcp.insert("server".into(), spec.server_identity());
        mcp.insert("tool".into(), Value::String(self.tool.clone()));
        if let Some(v) = self.envelope.get(PROTOCOL_VERSION_KEY) {
            mcp.insert("protocol_version".into(), v.clone());
        }
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
            Value::String(canonical_object(&self.arguments)),
        );
        if let Some(answers) = &self.input_responses {
            ctx.insert(
                "input_responses".into(),
                policy_safe(&Value::Object(answers.clone())),
            );
            ctx.insert(
                "input_responses_json".into(),
                Value::String(canonical_object(answers)),
            );
        }
        if let Some(state) = &self.request_state {
            ctx.insert("request_state".into(), Value::String(state.clone()));
        }
        if let Some(shown) = render_continuation(self) {
            ctx.insert("continuation".into(), Value::String(shown));
        }
        if !self.envelope.is_empty() {
            ctx.insert(
                "envelope_json".into(),
                Value::String(canonical_object(&self.envelope)),
            );
        }
        ctx
    }

    /// The key a retry of the same call is recognised by: the tool, the
    /// arguments and, when there are any, the continuation's fields and the
    /// envelope (a call without them keys as it always did).
    fn retry_key(&self) -> String {
        let mut v = json!({ "tool": self.tool, "arguments": self.arguments });
        if let Some(answers) = &self.input_responses {
            v["inputResponses"] = Value::Object(answers.clone());
        }
        if let Some(state) = &self.request_state {
            v["requestState"] = Value::String(state.clone());
        }
        if !self.envelope.is_empty() {
            v["envelope"] = Value::Object(self.envelope.clone());
        }
        hex::encode(Sha256::digest(
            signoff_core::jcs::value_to_string(&v).as_bytes(),
        ))
    }

    /// Whether `context` (a claimed request's) binds exactly this call's
    /// tool, arguments, continuation fields and envelope.
    fn bound_by(&self, context: &Map<String, Value>) -> bool {
        let text = |k: &str| context.get(k).and_then(Value::as_str);
        context
            .get("mcp")
            .and_then(|m| m.get("tool"))
            .and_then(Value::as_str)
            == Some(self.tool.as_str())
            && text("arguments_json") == Some(canonical_object(&self.arguments).as_str())
            && text("input_responses_json")
                == self
                    .input_responses
                    .as_ref()
                    .map(canonical_object)
                    .as_deref()
            && text("request_state") == self.request_state.as_deref()
            && text("envelope_json")
                == (!self.envelope.is_empty())
                    .then(|| canonical_object(&self.envelope))
                    .as_deref()
    }

    /// The parameters forwarded for this call once approved: exactly the
    /// tool, the arguments, the continuation's fields and the envelope that
    /// were hashed, and the client's progress token (which only tags the
    /// server's progress notifications). Nothing else of what the client
    /// sent reaches the server.
    pub(crate) fn forwarded_params(&self, progress_token: Option<&Value>) -> Value {
        let mut params = Map::new();
        params.insert("name".into(), Value::String(self.tool.clone()));
        params.insert("arguments".into(), Value::Object(self.arguments.clone()));
        if let Some(answers) = &self.input_responses {
            params.insert("inputResponses".into(), Value::Object(answers.clone()));
        }
        if let Some(state) = &self.request_state {
            params.insert("requestState".into(), Value::String(state.clone()));
        }
        let mut meta = self.envelope.clone();
        if let Some(token) = progress_token {
            meta.insert("progressToken".into(), token.clone());
        }
        if !meta.is_empty() {
            params.insert("_meta".into(), Value::Object(meta));
        }
        Value::Object(params)
    }

    /// Whether the client speaks a protocol version whose results carry a
    /// `resultType` (2026-07-28 on), as its envelope says.
    fn wants_result_type(&self) -> bool {
        // versions are dates: they order as strings
        self.envelope
            .get(PROTOCOL_VERSION_KEY)
            .and_then(Value::as_str)
            .is_some_and(|v| v >= FIRST_RESULT_TYPE_VERSION)
    }
}

/// The protocol envelope of a request's `_meta`: its
/// `io.modelcontextprotocol/` keys.
pub(crate) fn envelope_of(msg: &Value) -> Map<String, Value> {
    msg.pointer("/params/_meta")
        .and_then(Value::as_object)
        .map(|meta| {
            meta.iter()
                .filter(|(k, _)| k.starts_with(ENVELOPE_PREFIX))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default()
}

fn canonical_object(map: &Map<String, Value>) -> String {
    signoff_core::jcs::value_to_string(&Value::Object(map.clone()))
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

/// `key=value`: one line, control characters escaped, a long value folded.
fn render_pair(k: &str, v: &Value) -> String {
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
}

/// `tool(path="/data/a.txt", content="…" (1234 chars))`: one line, control
/// characters escaped, long values folded.
pub fn render_call(call: &ToolCall) -> String {
    let args: Vec<String> = call
        .arguments
        .iter()
        .map(|(k, v)| render_pair(k, v))
        .collect();
    format!("{}({})", display::one_line(&call.tool), args.join(", "))
}

/// What a continuation adds to the call, for reviewers: the client's
/// answers (what the user, or the client's model, gave the server) and the
/// server's own state, each marked as whose it is, folded and escaped like
/// arguments. `None` for a call that is no continuation.
pub fn render_continuation(call: &ToolCall) -> Option<String> {
    let mut parts = Vec::new();
    if let Some(answers) = &call.input_responses {
        let shown: Vec<String> = answers.iter().map(|(k, v)| render_pair(k, v)).collect();
        parts.push(format!(
            "answers from the client (user input) to the server's questions: {{{}}}",
            shown.join(", ")
        ));
    }
    if let Some(state) = &call.request_state {
        parts.push(format!(
            "the server's own state, echoed by the client (opaque): {}",
            render_pair("requestState", &Value::String(state.clone()))
        ));
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// How often a client that asked for progress hears that its call still
/// waits (clients that reset their timeout on progress keep waiting).
const HEARTBEAT: Duration = Duration::from_secs(10);

/// How long the proxy waits for the tools list it asks for itself.
const LIST_WAIT: Duration = Duration::from_secs(5);

/// How often, at most, the proxy asks the server for its tools again
/// because a call names a tool it has not seen listed.
const RELIST: Duration = Duration::from_secs(60);

/// Gated calls one proxy handles at once; more are refused (each holds a
/// task and a connection to the gateway while it waits).
const MAX_CALLS: usize = 256;

/// Requests still waiting for a decision that a retry can resume; the
/// oldest are forgotten first (the request itself lives on the gateway).
const MAX_PENDING: usize = 4096;

/// How long a waiting request without an expiry is remembered for a retry.
const PENDING_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// How long a stopping proxy gives calls mid-forward before it records
/// their outcome as unknown, and then gives the records.
pub(crate) const GRACE: Duration = Duration::from_secs(5);

/// `tools/call` parameters the proxy does not gate, so calls carrying them
/// are refused rather than forwarded ungated or silently changed: task
/// augmentation (`task`) makes the server answer with a task at once and
/// run the tool later, its result fetched by other requests the proxy does
/// not watch, so the outcome it would record is not the tool's.
const UNGATED_PARAMS: [&str; 1] = ["task"];

/// What became of a call the proxy sent on to the server.
pub(crate) enum Forwarded {
    /// The server's response to the call, already relayed to the client.
    Answered(Value),
    /// The call provably never left the proxy (no connection to the server,
    /// or the server refused it before reading it): the client still needs
    /// an answer. Says why.
    NotSent(String),
    /// The call may have reached the server, and the client has no answer
    /// yet: it gets a tool error saying the outcome is unknown. Says why.
    Lost(String),
    /// The call reached the server, whatever the server sent was relayed to
    /// the client, but the response was not seen here (it may come on a
    /// stream the client resumes). Says why.
    Unseen(String),
    /// The server refused the call with an HTTP error status, relayed to
    /// the client as it was.
    Refused {
        /// The status.
        status: u16,
        /// Why, in words.
        why: String,
    },
}

/// What the proxy says when talking to the server went wrong: every
/// transport words it the same.
pub(crate) mod why {
    use std::fmt::Display;

    /// No connection to the server.
    pub(crate) fn unreachable(server: &str, e: impl Display) -> String {
        format!("the MCP server at {server} could not be reached: {e}")
    }

    /// The request was sent (or may have been) but failed.
    pub(crate) fn failed(server: &str, e: impl Display) -> String {
        format!("the request to the MCP server at {server} failed: {e}")
    }

    /// An HTTP error status.
    pub(crate) fn status(server: &str, status: impl Display) -> String {
        format!("the MCP server at {server} answered HTTP {status}")
    }

    /// The body broke off.
    pub(crate) fn broke_off(e: impl Display) -> String {
        format!("the MCP server's answer broke off: {e}")
    }

    /// The answer ended without the response.
    pub(crate) fn no_response() -> String {
        "the MCP server's answer held no response to the call".into()
    }

    /// The stdio server went away.
    pub(crate) fn stopped() -> String {
        "the MCP server stopped before answering".into()
    }

    /// The proxy itself stopped.
    pub(crate) fn proxy_stopped() -> String {
        "signoff mcp stopped before the MCP server answered".into()
    }
}

/// The client's side of gated calls, as one transport reaches it: the stdio
/// relay, or one HTTP exchange.
pub(crate) trait Channel: Send + Sync + 'static {
    /// Sends the proxy's own notification (progress while a call waits) to
    /// the client, if this channel can carry one.
    fn notify(&self, msg: Value);

    /// Answers a call with a message the proxy made (the call did not run,
    /// or its outcome is unknown).
    fn reply(&self, msg: Value) -> impl Future<Output = ()> + Send;

    /// Sends the approved `request` to the server, relays what the server
    /// answers to the client, and says what became of it.
    fn forward(&self, request: Value) -> impl Future<Output = Forwarded> + Send;

    /// Asks the server for its tools itself, in the protocol `envelope` of
    /// the call being gated: the `tools/list` response, or `None` when none
    /// came within [`LIST_WAIT`].
    fn list_tools(
        &self,
        envelope: &Map<String, Value>,
    ) -> impl Future<Output = Option<Value>> + Send;
}

/// A JSON-RPC response.
fn response(id: &Value, result: Value) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "result": result })
}

/// A JSON-RPC error response.
pub(crate) fn error_response(id: &Value, code: i64, message: &str) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "error": { "code": code, "message": message } })
}

/// A JSON-RPC error that answers no request (a body that is no message):
/// the response carries no id.
pub(crate) fn error_without_id(code: i64, message: &str) -> Value {
    json!({ "jsonrpc": "2.0", "error": { "code": code, "message": message } })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A JSON-RPC id as a map key.
pub(crate) fn id_key(id: &Value) -> String {
    signoff_core::jcs::value_to_string(id)
}

/// An id for a request the proxy sends the server itself (its own
/// `tools/list`, a forwarded call on stdio): unique, so that it cannot be
/// mistaken for any id of the client's.
pub(crate) fn proxy_id(kind: &str) -> Value {
    Value::String(format!("signoff-{kind}-{}", ulid::Ulid::new()))
}

/// The proxy's own `tools/list` request, under an id of its own and with
/// the protocol envelope of the call it describes (a 2026-07-28 server
/// refuses a request without one): the key its response comes back under,
/// and the request.
pub(crate) fn list_request(envelope: &Map<String, Value>) -> (String, Value) {
    let id = proxy_id("tools-list");
    let key = id_key(&id);
    let params = if envelope.is_empty() {
        json!({})
    } else {
        json!({ "_meta": envelope })
    };
    let request = json!({ "jsonrpc": "2.0", "id": id, "method": "tools/list", "params": params });
    (key, request)
}

/// Whether `msg` is the response to the request whose id is `key`
/// ([`id_key`]).
pub(crate) fn is_response_to(msg: &Value, key: &str) -> bool {
    msg.get("method").is_none() && msg.get("id").map(id_key).as_deref() == Some(key)
}

/// The response to the request `key` among `messages`.
pub(crate) fn response_to(messages: impl IntoIterator<Item = Value>, key: &str) -> Option<Value> {
    messages.into_iter().find(|m| is_response_to(m, key))
}

/// One message of what a client sent, as the proxy treats it.
#[derive(Debug)]
pub(crate) enum Incoming {
    /// A `tools/call` request: gated.
    Call {
        /// Its JSON-RPC id.
        id: Value,
        /// The request.
        msg: Value,
    },
    /// A `tools/call` notification: it cannot call a tool (nothing could
    /// answer it), so it goes nowhere.
    CallNotification,
    /// A `tools/list` request: passed on; its result describes the tools.
    List {
        /// Its JSON-RPC id.
        id: Value,
        /// The request.
        msg: Value,
    },
    /// A `notifications/cancelled`: it cancels the gated call it names, and
    /// is passed on.
    Cancel {
        /// The id of the request it cancels.
        request_id: Option<Value>,
        /// The notification.
        msg: Value,
    },
    /// Anything else: passed on as the proxy read it.
    Pass(Value),
}

impl Incoming {
    /// The message to pass on to the server, unless the proxy keeps it.
    pub(crate) fn passed(&self) -> Option<&Value> {
        match self {
            Incoming::List { msg, .. } | Incoming::Cancel { msg, .. } | Incoming::Pass(msg) => {
                Some(msg)
            }
            Incoming::Call { .. } | Incoming::CallNotification => None,
        }
    }
}

/// A client's body (a stdio line, a POST), sorted.
#[derive(Debug)]
pub(crate) struct Classified {
    /// It was a batch (an array).
    pub batch: bool,
    /// Its messages, in order.
    pub messages: Vec<Incoming>,
}

/// Sorts what a client sent. Only a JSON object, or a non-empty array of
/// objects, is a JSON-RPC message or batch; anything else (a nested array
/// could hide a `tools/call` from a gate that looks one level deep) is
/// refused whole: `Err` holds the error response, and nothing of it may be
/// forwarded.
pub(crate) fn classify(msg: Value) -> Result<Classified, Value> {
    let invalid = |why: &str| error_without_id(-32600, &format!("invalid request: {why}"));
    let (batch, items) = match msg {
        Value::Array(items) if items.is_empty() => return Err(invalid("an empty batch")),
        Value::Array(items) => (true, items),
        one @ Value::Object(_) => (false, vec![one]),
        _ => return Err(invalid("not a JSON-RPC message or batch")),
    };
    let mut messages = Vec::with_capacity(items.len());
    for (n, m) in items.into_iter().enumerate() {
        if !m.is_object() {
            return Err(invalid(&format!(
                "batch element {n} is not a JSON-RPC message (an object)"
            )));
        }
        let id = m.get("id").cloned();
        messages.push(match (m.get("method").and_then(Value::as_str), id) {
            (Some("tools/call"), Some(id)) => Incoming::Call { id, msg: m },
            (Some("tools/call"), None) => Incoming::CallNotification,
            (Some("tools/list"), Some(id)) => Incoming::List { id, msg: m },
            (Some("notifications/cancelled"), None) => Incoming::Cancel {
                request_id: m.pointer("/params/requestId").cloned(),
                msg: m,
            },
            _ => Incoming::Pass(m),
        });
    }
    Ok(Classified { batch, messages })
}

/// A request that still waits for a decision, for a retry to resume.
struct Pending {
    request: String,
    /// When it expires on the gateway (seconds since the epoch), if it does.
    expires: Option<i64>,
    since: Instant,
}

impl Pending {
    fn live(&self, now_s: i64) -> bool {
        match self.expires {
            Some(e) => e > now_s,
            None => self.since.elapsed() < PENDING_TTL,
        }
    }
}

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// How one client's call is known in the gate's maps: the client's scope
/// (its session) and a key within it.
fn scoped(scope: &str, key: &str) -> String {
    format!("{scope}\n{key}")
}

/// Counts a gated call as active while it lives.
struct Active(Arc<Gate>);

impl Drop for Active {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What the gated calls of one proxy share, whatever transport they came
/// on. Calls are scoped per client ([`Gate::gate_call`]'s `scope`): one
/// client can neither resume nor cancel another's call.
pub(crate) struct Gate {
    spec: McpSpec,
    client: Client,
    /// What the server listed, by tool name.
    tools: Mutex<HashMap<String, Tool>>,
    /// The server said its tools changed: list them again.
    tools_stale: AtomicBool,
    /// When the proxy last asked for the tools itself.
    listed_at: Mutex<Option<Instant>>,
    /// Requests still waiting for a decision, by scope and
    /// [`ToolCall::retry_key`].
    pending: Mutex<HashMap<String, Pending>>,
    /// Gated calls the client may cancel, by scope and JSON-RPC id.
    cancels: Mutex<HashMap<String, oneshot::Sender<()>>>,
    /// Who the token is, asked once: allowed calls are claimed in the
    /// submission's round trip ([`Session::claim_at_once`]).
    principal: tokio::sync::OnceCell<PrincipalRef>,
    /// Gated calls under way.
    active: AtomicUsize,
    /// The proxy is stopping.
    stop: tokio::sync::watch::Sender<bool>,
}

impl Gate {
    pub(crate) fn new(spec: McpSpec, client: Client) -> Self {
        Gate {
            spec,
            client,
            tools: Mutex::default(),
            tools_stale: AtomicBool::new(false),
            listed_at: Mutex::default(),
            pending: Mutex::default(),
            cancels: Mutex::default(),
            principal: tokio::sync::OnceCell::new(),
            active: AtomicUsize::new(0),
            stop: tokio::sync::watch::Sender::new(false),
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

    /// Watches a message from the server for what the gate keeps: a
    /// `notifications/tools/list_changed` makes the next call list again.
    pub(crate) fn observe(&self, msg: &Value) {
        if msg.get("method").and_then(Value::as_str) == Some("notifications/tools/list_changed") {
            self.tools_stale.store(true, Ordering::SeqCst);
        }
    }

    /// What the server listed for `tool`, if known.
    pub(crate) fn known_tool(&self, tool: &str) -> Option<Tool> {
        lock(&self.tools).get(tool).cloned()
    }

    /// A client's `notifications/cancelled` for its call `id`.
    pub(crate) fn cancel(&self, scope: &str, id: &Value) {
        if let Some(cancel) = lock(&self.cancels).remove(&scoped(scope, &id_key(id))) {
            let _ = cancel.send(());
        }
    }

    /// What the server listed for `tool`, asking it when the proxy has
    /// never asked, the server said its tools changed, or (at most every
    /// [`RELIST`]) the tool is not among those listed.
    async fn listed<C: Channel>(
        &self,
        ch: &C,
        tool: &str,
        envelope: &Map<String, Value>,
    ) -> Option<Tool> {
        let known = self.known_tool(tool);
        let stale = self.tools_stale.load(Ordering::SeqCst);
        if known.is_some() && !stale {
            return known;
        }
        let due = {
            let mut at = lock(&self.listed_at);
            let due = stale || at.is_none_or(|t| t.elapsed() >= RELIST);
            if due {
                *at = Some(Instant::now());
            }
            due
        };
        if due {
            self.tools_stale.store(false, Ordering::SeqCst);
            // a server that does not answer only costs the description and
            // hints, never the call
            if let Some(answer) = ch.list_tools(envelope).await {
                self.learn_tools(&answer);
            }
        }
        self.known_tool(tool).or(known)
    }

    /// The request a retry of `key` resumes, if it still waits.
    fn pending_request(&self, key: &str) -> Option<String> {
        let mut pending = lock(&self.pending);
        let now = now_s();
        match pending.get(key) {
            Some(p) if p.live(now) => Some(p.request.clone()),
            Some(_) => {
                pending.remove(key);
                None
            }
            None => None,
        }
    }

    fn remember_pending(&self, key: &str, view: &RequestView) {
        let mut pending = lock(&self.pending);
        let now = now_s();
        if pending.len() >= MAX_PENDING {
            pending.retain(|_, p| p.live(now));
        }
        if pending.len() >= MAX_PENDING {
            let oldest = pending
                .iter()
                .min_by_key(|(_, p)| p.since)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                pending.remove(&k);
            }
        }
        pending.insert(
            key.to_owned(),
            Pending {
                request: view.id.clone(),
                expires: view.expires_at.map(|t| t.as_second()),
                since: Instant::now(),
            },
        );
    }

    /// Stops the gate: calls mid-forward stop waiting for the server (their
    /// outcome is recorded as unknown), calls waiting for a decision are
    /// interrupted; waits up to `bound` for every call to finish.
    pub(crate) async fn stop(&self, bound: Duration) {
        self.stop.send_replace(true);
        let deadline = Instant::now() + bound;
        while self.active.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Resolves once the gate stops.
    fn stopped(&self) -> impl Future<Output = ()> + Send + Sync + 'static {
        let mut rx = self.stop.subscribe();
        async move {
            let _ = rx.wait_for(|stopped| *stopped).await;
        }
    }

    /// Gates one `tools/call` request `msg` (JSON-RPC id `id`) that came on
    /// `ch` from the client `scope`, answering the client in every case but
    /// a cancellation.
    pub(crate) async fn gate_call<C: Channel>(
        self: Arc<Self>,
        ch: Arc<C>,
        scope: String,
        id: Value,
        msg: Value,
    ) {
        if self.active.fetch_add(1, Ordering::SeqCst) >= MAX_CALLS {
            self.active.fetch_sub(1, Ordering::SeqCst);
            let why = format!("signoff is already gating {MAX_CALLS} tool calls; try again later");
            ch.reply(error_response(&id, -32603, &why)).await;
            return;
        }
        let _active = Active(Arc::clone(&self));
        if let Some(field) = UNGATED_PARAMS
            .iter()
            .find(|f| msg.pointer("/params").and_then(|p| p.get(**f)).is_some())
        {
            let why = format!(
                "signoff cannot gate a tools/call with `{field}` (it cannot bind it to the approval), so the call was not forwarded; call the tool without it"
            );
            ch.reply(error_response(&id, -32602, &why)).await;
            return;
        }
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
        let cancel_key = scoped(&scope, &id_key(&id));
        let (cancel_tx, cancel_rx) = oneshot::channel::<()>();
        let in_use = {
            let mut cancels = lock(&self.cancels);
            let in_use = cancels.contains_key(&cancel_key);
            if !in_use {
                cancels.insert(cancel_key.clone(), cancel_tx);
            }
            in_use
        };
        if in_use {
            let why = format!(
                "request id {} is already in use by a tool call in flight",
                display::cell(&id.to_string(), 100)
            );
            ch.reply(error_response(&id, -32600, &why)).await;
            return;
        }
        let progress_token = msg.pointer("/params/_meta/progressToken").cloned();
        let tool = params.name.to_string();
        let envelope = envelope_of(&msg);
        let call = ToolCall {
            listed: self.listed(&*ch, &tool, &envelope).await,
            arguments: params.arguments.clone().unwrap_or_default(),
            input_responses: params
                .input_responses
                .clone()
                .map(|answers| answers.into_iter().collect()),
            request_state: params.request_state.clone(),
            envelope,
            tool,
        };
        let modern = call.wants_result_type();
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
        let key = scoped(&scope, &call.retry_key());
        let start = match self.pending_request(&key) {
            Some(rid) => Start::Resume { id: rid },
            None => Start::submit(body.clone()),
        };
        let stopped = self.stopped();
        let interrupt = async move {
            tokio::select! {
                r = cancel_rx => if r.is_err() { std::future::pending::<()>().await },
                () = stopped => {}
            }
        };
        let action = Forward {
            ch: Arc::clone(&ch),
            body: body.clone(),
            call: ToolCall {
                listed: None,
                ..call.clone()
            },
            progress_token: progress_token.clone(),
            id: id.clone(),
            stopped: Box::pin(self.stopped()),
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
                    let Some(rid) = lock(&gate.pending).get(&key).map(|p| p.request.clone()) else {
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
            .abort_handle()
        });
        let finished = {
            let sent = Arc::clone(&sent);
            let gate = Arc::clone(&self);
            let ch = Arc::clone(&ch);
            let key = key.clone();
            let heartbeat = heartbeat.clone();
            let requirement = &mut requirement;
            let mut observer = move |event: &Progress| {
                if let Progress::Claimed(_) = event {
                    // it runs now: no more "still waiting", and the server's
                    // own progress is the client's to hear
                    lock(&gate.pending).remove(&key);
                    if let Some(h) = &heartbeat {
                        h.abort();
                    }
                    return;
                }
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
                        gate.remember_pending(&key, v);
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
        if !matches!(finished, SessionEnd::GaveUp { .. }) {
            lock(&self.pending).remove(&key);
        }
        // a cancelled call is not answered (the transport ends it)
        if let Some(result) = answer(&finished, requirement.as_deref(), modern) {
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

/// A tool result with `text`, flagged as an error. `modern`: the client
/// speaks 2026-07-28 or later, where a result says its `resultType`
/// (older versions have none).
fn tool_error(text: String, modern: bool) -> Value {
    let mut r = CallToolResult::error(vec![ContentBlock::text(text)]);
    if !modern {
        r.result_type = None;
    }
    serde_json::to_value(r).unwrap_or_else(|_| json!({ "content": [], "isError": true }))
}

/// What the client gets when the call did not run (`None` when it ran —
/// the server's own response was forwarded — or the client cancelled it).
fn answer(end: &SessionEnd<()>, requirement: Option<&str>, modern: bool) -> Option<Value> {
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
    Some(tool_error(display::one_line(&text), modern))
}

/// Milliseconds, saturating.
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The outcome of a call that may have reached the server but whose
/// response the proxy did not see.
fn unknown_outcome(tool: &str, duration: Duration, why: &str) -> OutcomeBody {
    OutcomeBody {
        exit_code: None,
        signal: None,
        duration_ms: millis(duration),
        output_sha256: None,
        summary: Some(display::one_line(&format!(
            "tools/call {tool}: outcome unknown, the call may have reached the server: {why}"
        ))),
    }
}

/// Forwarding one call to the server through its channel, as the
/// session's action.
struct Forward<C> {
    ch: Arc<C>,
    body: SubmitRequest,
    /// The call as it was bound (and will be forwarded).
    call: ToolCall,
    progress_token: Option<Value>,
    id: Value,
    /// Resolves when the proxy stops.
    stopped: std::pin::Pin<Box<dyn Future<Output = ()> + Send + Sync>>,
}

impl<C: Channel> Forward<C> {
    fn action_digest(body: &SubmitRequest, principal: &PrincipalRef) -> Digest {
        body.action_for(principal.clone()).digest()
    }

    async fn not_forwarded(&self, why: String) -> Execution<()> {
        let modern = self.call.wants_result_type();
        self.ch
            .reply(response(&self.id, tool_error(why.clone(), modern)))
            .await;
        Execution {
            outcome: OutcomeBody::not_run(
                None,
                format!("tools/call {}: not run: {why}", self.call.tool),
            ),
            output: (),
        }
    }
}

impl<C: Channel> GateAction for Forward<C> {
    type Output = ();

    fn digest(&self, principal: &PrincipalRef) -> Result<Digest, String> {
        Ok(Self::action_digest(&self.body, principal))
    }

    async fn run(mut self, claimed: &RequestView) -> Execution<()> {
        // what is about to be sent, hashed again from the parameters
        // themselves: it must be the approved call
        let tool = self.call.tool.clone();
        let same = self.call.bound_by(&claimed.request.context)
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
            "params": self.call.forwarded_params(self.progress_token.as_ref()),
        });
        let started = Instant::now();
        // the channel relays the server's answer to the client first; the
        // outcome is reported after
        let forwarded = tokio::select! {
            f = self.ch.forward(request) => f,
            () = &mut self.stopped => Forwarded::Lost(why::proxy_stopped()),
        };
        let duration = started.elapsed();
        let response = match forwarded {
            Forwarded::Answered(response) => response,
            Forwarded::NotSent(why) => {
                return self
                    .not_forwarded(format!("{why} (request {})", claimed.id))
                    .await
            }
            Forwarded::Lost(why) => {
                let text = format!(
                    "signoff forwarded this tool call, but {why}: whether it ran is unknown (request {}). Check its effect before calling it again.",
                    claimed.id
                );
                self.ch
                    .reply(response(
                        &self.id,
                        tool_error(display::one_line(&text), self.call.wants_result_type()),
                    ))
                    .await;
                return Execution {
                    outcome: unknown_outcome(&tool, duration, &why),
                    output: (),
                };
            }
            Forwarded::Refused { status, why } if status < 500 => {
                return Execution {
                    outcome: OutcomeBody::not_run(
                        None,
                        format!("tools/call {tool}: not run: {why}"),
                    ),
                    output: (),
                }
            }
            Forwarded::Refused { why, .. } | Forwarded::Unseen(why) => {
                return Execution {
                    outcome: unknown_outcome(&tool, duration, &why),
                    output: (),
                }
            }
        };
        let result = response.get("result");
        let is_error = match result {
            Some(r) => r.get("isError").and_then(Value::as_bool).unwrap_or(false),
            None => true,
        };
        // a first leg of a multi-round-trip call answers with the server's
        // questions, not content: they are what it produced
        let asks = result
            .filter(|r| r.get("resultType").and_then(Value::as_str) == Some("input_required"));
        let hashed = result
            .and_then(|r| match asks {
                Some(_) => r.get("inputRequests"),
                None => r.get("content"),
            })
            .map(signoff_core::jcs::value_to_string)
            .or_else(|| {
                response
                    .get("error")
                    .map(signoff_core::jcs::value_to_string)
            })
            .unwrap_or_default();
        let summary = match (result, response.get("error")) {
            (Some(r), _) if asks.is_some() => format!(
                "tools/call {tool}: asked the client for input ({} request(s)) after {} ms",
                r.get("inputRequests")
                    .and_then(Value::as_object)
                    .map_or(0, Map::len),
                duration.as_millis()
            ),
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
                duration_ms: millis(duration),
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
            ..ToolCall::default()
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
            ..ToolCall::default()
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
            ..ToolCall::default()
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
        let v = answer(&end, None, false).unwrap();
        assert_eq!(v["isError"], true);
        assert!(v.get("resultType").is_none(), "older versions have none");
        assert_eq!(answer(&end, None, true).unwrap()["resultType"], "complete");
        assert!(v["content"][0]["text"].as_str().unwrap().contains("no-rm"));
        let waiting: SessionEnd<()> = SessionEnd::GaveUp {
            id: "r2".into(),
            waited: Duration::from_secs(1),
        };
        let text = answer(&waiting, Some("sre:1"), false).unwrap()["content"][0]["text"].clone();
        let text = text.as_str().unwrap();
        assert!(text.contains("from sre:1") && text.contains("r2"), "{text}");
    }

    #[test]
    fn only_objects_and_batches_of_objects_are_messages() {
        let call = json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"rm"}});
        for bad in [
            json!([[call.clone()]]),
            json!([call.clone(), [call.clone()]]),
            json!(["x"]),
            json!([]),
            json!("tools/call"),
            json!(7),
            Value::Null,
        ] {
            let refusal = classify(bad.clone()).expect_err(&bad.to_string());
            assert_eq!(refusal["error"]["code"], -32600, "{bad}");
            assert!(refusal.get("id").is_none(), "no id to answer: {refusal}");
        }
        let sorted = classify(json!([
            call,
            {"jsonrpc":"2.0","method":"tools/call","params":{"name":"b"}},
            {"jsonrpc":"2.0","id":2,"method":"tools/list"},
            {"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}},
            {"jsonrpc":"2.0","id":3,"method":"ping"}
        ]))
        .unwrap();
        assert!(sorted.batch);
        let kinds: Vec<&str> = sorted
            .messages
            .iter()
            .map(|m| match m {
                Incoming::Call { .. } => "call",
                Incoming::CallNotification => "dropped",
                Incoming::List { .. } => "list",
                Incoming::Cancel { request_id, .. } => {
                    assert_eq!(request_id, &Some(json!(1)));
                    "cancel"
                }
                Incoming::Pass(_) => "pass",
            })
            .collect();
        assert_eq!(kinds, ["call", "dropped", "list", "cancel", "pass"]);
        assert!(
            !classify(json!({"jsonrpc":"2.0","id":1,"method":"ping"}))
                .unwrap()
                .batch
        );
    }

    #[test]
    fn forwarded_params_are_the_hashed_ones() {
        let call = ToolCall {
            tool: "write".into(),
            arguments: args(json!({"path": "/a"})),
            ..ToolCall::default()
        };
        assert_eq!(
            call.forwarded_params(Some(&json!("t1"))),
            json!({"name": "write", "arguments": {"path": "/a"}, "_meta": {"progressToken": "t1"}})
        );
        let bare = ToolCall {
            tool: "write".into(),
            ..ToolCall::default()
        };
        assert_eq!(
            bare.forwarded_params(None),
            json!({"name": "write", "arguments": {}})
        );
        // a 2026-07-28 continuation: the answers, the state and the
        // envelope go on, nothing else of `_meta`
        let msg = json!({"params": {"_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {"elicitation": {"form": {}}},
            "smuggled": 1,
            "progressToken": "p"
        }}});
        let cont = ToolCall {
            tool: "delete".into(),
            arguments: args(json!({"title": "a"})),
            input_responses: Some(args(
                json!({"ask": {"action": "accept", "content": {"reason": "x"}}}),
            )),
            request_state: Some("v1.abc".into()),
            envelope: envelope_of(&msg),
            listed: None,
        };
        assert_eq!(
            cont.forwarded_params(Some(&json!("p"))),
            json!({"name": "delete", "arguments": {"title": "a"},
            "inputResponses": {"ask": {"action": "accept", "content": {"reason": "x"}}},
            "requestState": "v1.abc",
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {"elicitation": {"form": {}}},
                "progressToken": "p"
            }})
        );
        assert!(cont.bound_by(&cont.context(&spec())));
        assert!(cont.wants_result_type());
        assert!(!call.wants_result_type());
        let older = ToolCall {
            envelope: args(json!({"io.modelcontextprotocol/protocolVersion": "2025-11-25"})),
            ..ToolCall::default()
        };
        assert!(!older.wants_result_type());
    }

    #[test]
    fn a_continuation_binds_the_answers_the_state_and_the_envelope() {
        let s = spec();
        let first = ToolCall {
            tool: "delete".into(),
            arguments: args(json!({"title": "a"})),
            envelope: args(json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28"})),
            ..ToolCall::default()
        };
        let answered = |reason: &str, state: &str| ToolCall {
            input_responses: Some(args(
                json!({"ask": {"action": "accept", "content": {"reason": reason, "n": 0.5}}}),
            )),
            request_state: Some(state.into()),
            ..first.clone()
        };
        let a = answered("cleanup", "v1.s");
        let ctx = a.context(&s);
        assert_eq!(ctx["mcp"]["protocol_version"], "2026-07-28");
        assert_eq!(ctx["request_state"], "v1.s");
        assert_eq!(ctx["input_responses"]["ask"]["content"]["n"], "0.5");
        assert!(ctx["input_responses_json"]
            .as_str()
            .unwrap()
            .contains("\"reason\":\"cleanup\""));
        assert!(ctx["envelope_json"]
            .as_str()
            .unwrap()
            .contains("2026-07-28"));
        // every field is its own call: another request, another retry key
        let calls = [
            first.clone(),
            a.clone(),
            answered("other", "v1.s"),
            answered("cleanup", "v1.t"),
            ToolCall {
                envelope: Map::new(),
                ..a.clone()
            },
        ];
        for (i, x) in calls.iter().enumerate() {
            for y in &calls[i + 1..] {
                assert_ne!(x.context(&s), y.context(&s));
                assert_ne!(x.retry_key(), y.retry_key());
                assert!(!x.bound_by(&y.context(&s)));
            }
            assert!(x.bound_by(&x.context(&s)));
        }
        // the first leg has no continuation keys at all
        let plain = first.context(&s);
        for k in [
            "input_responses",
            "input_responses_json",
            "request_state",
            "continuation",
        ] {
            assert!(plain.get(k).is_none(), "{k}");
        }
        // reviewers see whose input it is, escaped and folded
        let long = ToolCall {
            input_responses: Some(args(
                json!({"ask": {"action": "accept", "content": {"reason": "\u{1b}[2Jgo"}}}),
            )),
            request_state: Some("s".repeat(400)),
            ..first
        };
        let shown = render_continuation(&long).unwrap();
        assert!(
            shown.contains("answers from the client (user input)"),
            "{shown}"
        );
        assert!(shown.contains("the server's own state"), "{shown}");
        assert!(shown.contains("(402 chars)"), "{shown}");
        assert!(!shown.contains('\u{1b}'), "{shown}");
        assert!(shown.chars().count() < 600, "{shown}");
    }

    #[test]
    fn the_proxys_own_listing_carries_the_calls_envelope() {
        let (_, plain) = list_request(&Map::new());
        assert_eq!(plain["params"], json!({}), "older versions: as before");
        let envelope = args(json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28"}));
        let (key, modern) = list_request(&envelope);
        assert_eq!(modern["params"], json!({"_meta": envelope}));
        assert_eq!(key, id_key(&modern["id"]));
    }

    #[test]
    fn responses_are_matched_by_id_and_proxy_ids_are_unique() {
        let key = id_key(&json!(7));
        assert!(is_response_to(&json!({"id": 7, "result": {}}), &key));
        assert!(!is_response_to(&json!({"id": 7, "method": "ping"}), &key));
        assert!(!is_response_to(&json!({"id": "7", "result": {}}), &key));
        assert_ne!(proxy_id("call"), proxy_id("call"));
    }

    #[test]
    fn a_query_in_the_upstream_url_is_not_shown() {
        let mut s = spec();
        s.server = McpServer::Url("https://mcp.example/mcp?key=s3cret".into());
        let id = s.server_identity();
        assert_eq!(id["url"], "https://mcp.example/mcp?…");
        assert!(!id.to_string().contains("s3cret"), "{id}");
        let mut other = s.clone();
        other.server = McpServer::Url("https://mcp.example/mcp?key=other".into());
        assert_ne!(
            id,
            other.server_identity(),
            "the digest still binds the query"
        );
    }
}
