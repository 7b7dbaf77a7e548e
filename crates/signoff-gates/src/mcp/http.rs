//! The Streamable HTTP transport: `signoff mcp --name NAME --listen ADDR
//! --upstream URL` is a reverse proxy in front of a remote MCP server.
//!
//! It does not terminate MCP sessions: every POST, GET and DELETE to its
//! endpoint goes to the upstream with the MCP headers (`Mcp-Session-Id`,
//! `MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name`, `Mcp-Param-*`),
//! `Accept`, `Content-Type`, `Last-Event-ID` and the client's
//! `Authorization`, and the upstream's answer — JSON or an event stream,
//! streamed as it comes, its status and `Mcp-Session-Id` kept — goes back.
//! POST bodies are parsed and re-serialized, so the upstream reads exactly
//! what the proxy read; a body that is (or, in a batch, contains) a
//! `tools/call` request is gated like a stdio call.
//!
//! A gated call answers with whatever comes first: the upstream's own
//! response to the forwarded call (relayed unchanged), the proxy's tool
//! error, or — when the client asked for progress and accepts
//! `text/event-stream` while the call waits — an event stream of the
//! proxy's `notifications/progress` that ends with the forwarded call's
//! events or the tool error.

use super::{
    error_response, id_key, Channel, Forwarded, Gate, McpError, McpServer, McpSpec, LIST_WAIT,
};
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use serde_json::{json, Value};
use signoff_client::Client;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Where the HTTP proxy listens and what it forwards to.
#[derive(Debug, Clone)]
pub struct HttpSpec {
    /// `HOST:PORT` to listen on (port 0: any free port).
    pub listen: String,
    /// The upstream server's MCP endpoint.
    pub upstream: String,
}

/// The endpoint path the proxy serves.
const PATH: &str = "/mcp";

/// Largest POST body accepted (tool arguments can carry whole files).
const MAX_BODY: usize = 16 * 1024 * 1024;

/// Events the proxy may queue for a client that reads slowly.
const QUEUE: usize = 64;

/// Request headers that go to the upstream, besides every `Mcp-*` one.
const REQUEST_HEADERS: [HeaderName; 4] = [
    header::ACCEPT,
    header::CONTENT_TYPE,
    header::AUTHORIZATION,
    HeaderName::from_static("last-event-id"),
];

/// Response headers that come back, besides every `Mcp-*` one.
const RESPONSE_HEADERS: [HeaderName; 4] = [
    header::CONTENT_TYPE,
    header::CACHE_CONTROL,
    header::WWW_AUTHENTICATE,
    header::RETRY_AFTER,
];

/// A bound HTTP proxy, not yet serving.
pub struct HttpProxy {
    listener: tokio::net::TcpListener,
    local: SocketAddr,
    state: Arc<HttpState>,
}

impl std::fmt::Debug for HttpProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpProxy")
            .field("local", &self.local)
            .field("upstream", &self.state.upstream.as_str())
            .finish()
    }
}

impl HttpProxy {
    /// Checks the upstream URL and binds the listener. `spec.server` is
    /// replaced by the upstream URL: it is the server's identity in every
    /// digest.
    pub async fn bind(client: Client, mut spec: McpSpec, http: HttpSpec) -> Result<Self, McpError> {
        let upstream = reqwest::Url::parse(&http.upstream).map_err(|e| McpError::Upstream {
            url: http.upstream.clone(),
            reason: e.to_string(),
        })?;
        if !matches!(upstream.scheme(), "http" | "https") {
            return Err(McpError::Upstream {
                url: http.upstream.clone(),
                reason: "only http and https URLs can be forwarded to".into(),
            });
        }
        if !upstream.username().is_empty() || upstream.password().is_some() {
            // it would be shown to every reviewer as part of the server's identity
            return Err(McpError::Upstream {
                url: "(redacted)".into(),
                reason: "credentials do not belong in the URL: the client's Authorization header is forwarded".into(),
            });
        }
        let http_client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| McpError::HttpClient(e.to_string()))?;
        let listener = tokio::net::TcpListener::bind(&http.listen)
            .await
            .map_err(|source| McpError::Listen {
                addr: http.listen.clone(),
                source,
            })?;
        let local = listener.local_addr().map_err(|source| McpError::Listen {
            addr: http.listen.clone(),
            source,
        })?;
        spec.server = McpServer::Url(upstream.to_string());
        Ok(HttpProxy {
            listener,
            local,
            state: Arc::new(HttpState {
                gate: Arc::new(Gate::new(spec, client)),
                upstream,
                http: http_client,
                loopback: local.ip().is_loopback(),
                next_id: AtomicU64::new(1),
            }),
        })
    }

    /// The endpoint clients connect to, e.g. `http://127.0.0.1:8931/mcp`.
    pub fn url(&self) -> String {
        format!("http://{}{PATH}", self.local)
    }

    /// Whether the listener is on a loopback address (only this machine
    /// can reach it).
    pub fn is_loopback(&self) -> bool {
        self.state.loopback
    }

    /// Serves until `shutdown` resolves.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), McpError> {
        let app = Router::new()
            .route(PATH, any(handle))
            .layer(DefaultBodyLimit::max(MAX_BODY))
            .with_state(self.state);
        axum::serve(self.listener, app)
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(McpError::Serve)
    }
}

/// What every request handler shares.
struct HttpState {
    gate: Arc<Gate>,
    upstream: reqwest::Url,
    http: reqwest::Client,
    /// Listening on loopback: the Host header must name a loopback host.
    loopback: bool,
    next_id: AtomicU64,
}

async fn handle(
    State(st): State<Arc<HttpState>>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(why) = st.check_origin(&headers) {
        return rpc_error(StatusCode::FORBIDDEN, &Value::Null, -32000, &why);
    }
    match method {
        Method::POST => Arc::clone(&st).post(&headers, &body).await,
        Method::GET | Method::DELETE => match st.send(method, &headers, None).await {
            Ok(up) => relayed(up),
            Err(e) => st.unreachable(&e),
        },
        _ => (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, "GET, POST, DELETE")],
        )
            .into_response(),
    }
}

/// A JSON-RPC error as an HTTP response.
fn rpc_error(status: StatusCode, id: &Value, code: i64, message: &str) -> Response {
    json_response(status, &error_response(id, code, message))
}

fn json_response(status: StatusCode, v: &Value) -> Response {
    let mut r = Response::new(Body::from(v.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn sse_response(body: Body) -> Response {
    let mut r = Response::new(body);
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// One message as a server-sent event.
fn event(msg: &Value) -> Bytes {
    // serialized JSON has no raw newline, so one data line carries it
    Bytes::from(format!("event: message\ndata: {msg}\n\n"))
}

type Chunk = Result<Bytes, std::io::Error>;

/// A body fed from a channel.
fn channel_body(rx: mpsc::Receiver<Chunk>) -> Body {
    Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    }))
}

/// The upstream's answer as the client's: status, the headers that belong
/// to MCP, and the body streamed as it comes.
fn relayed(up: reqwest::Response) -> Response {
    let (status, headers) = (up.status(), kept(up.headers(), &RESPONSE_HEADERS));
    let body = Body::from_stream(futures_util::stream::unfold(Some(up), |up| async move {
        let mut up = up?;
        match up.chunk().await {
            Ok(Some(b)) => Some((Ok(b), Some(up))),
            Ok(None) => None,
            Err(e) => Some((Err(e), None)),
        }
    }));
    let mut r = Response::new(body);
    *r.status_mut() = status;
    *r.headers_mut() = headers;
    r
}

/// The headers of `from` named in `names` or starting with `mcp-`.
fn kept(from: &HeaderMap, names: &[HeaderName]) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (name, value) in from {
        if names.contains(name) || name.as_str().starts_with("mcp-") {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// `localhost`, `127.0.0.1`, `[::1]`, with or without a port.
fn is_loopback_host(host_port: &str) -> bool {
    let host = match host_port.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => host_port.split(':').next().unwrap_or_default(),
    };
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Which messages of a POST body the proxy gates, and what passes.
struct Sorted {
    batch: bool,
    /// `tools/call` requests: (id, message).
    calls: Vec<(Value, Value)>,
    /// Everything else, in order.
    rest: Vec<Value>,
}

fn sort(msg: Value) -> Sorted {
    let (batch, messages) = match msg {
        Value::Array(items) => (true, items),
        one => (false, vec![one]),
    };
    let mut sorted = Sorted {
        batch,
        calls: Vec::new(),
        rest: Vec::new(),
    };
    for m in messages {
        let is_call = m.get("method").and_then(Value::as_str) == Some("tools/call");
        match (is_call, m.get("id").cloned()) {
            (true, Some(id)) => sorted.calls.push((id, m)),
            (true, None) => {} // a notification cannot call a tool
            (false, _) => sorted.rest.push(m),
        }
    }
    sorted
}

impl HttpState {
    /// DNS rebinding: a page on another site must not reach a local
    /// listener through the victim's browser. An `Origin`, when sent, must
    /// be a loopback origin; on a loopback listener `Host` must name a
    /// loopback host too.
    fn check_origin(&self, headers: &HeaderMap) -> Result<(), String> {
        if let Some(origin) = headers.get(header::ORIGIN) {
            let origin = origin.to_str().unwrap_or_default();
            let host = origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"))
                .map(|rest| rest.trim_end_matches('/'));
            if !host.is_some_and(is_loopback_host) {
                return Err(format!(
                    "forbidden: origin `{}` may not use this MCP endpoint",
                    signoff_core::display::cell(origin, 100)
                ));
            }
        }
        if self.loopback {
            if let Some(host) = headers.get(header::HOST) {
                let host = host.to_str().unwrap_or_default();
                if !is_loopback_host(host) {
                    return Err(format!(
                        "forbidden: host `{}` is not this local MCP endpoint",
                        signoff_core::display::cell(host, 100)
                    ));
                }
            }
        }
        Ok(())
    }

    /// Sends one request to the upstream with the client's MCP headers.
    async fn send(
        &self,
        method: Method,
        client_headers: &HeaderMap,
        body: Option<Vec<u8>>,
    ) -> Result<reqwest::Response, reqwest::Error> {
        let mut req = self
            .http
            .request(method, self.upstream.clone())
            .headers(kept(client_headers, &REQUEST_HEADERS));
        if let Some(body) = body {
            req = req.body(body);
        }
        req.send().await
    }

    fn unreachable(&self, e: &reqwest::Error) -> Response {
        rpc_error(
            StatusCode::BAD_GATEWAY,
            &Value::Null,
            -32603,
            &format!(
                "the MCP server at {} could not be reached: {e}",
                self.upstream
            ),
        )
    }

    async fn post(self: Arc<Self>, headers: &HeaderMap, body: &[u8]) -> Response {
        let msg: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            // never forwarded: what the server would make of it is unknown
            Err(e) => {
                return rpc_error(
                    StatusCode::BAD_REQUEST,
                    &Value::Null,
                    -32700,
                    &format!("parse error: {e}"),
                )
            }
        };
        let session = header_str(headers, "mcp-session-id")
            .unwrap_or_default()
            .to_owned();
        let Sorted {
            batch,
            mut calls,
            rest,
        } = sort(msg);
        for m in &rest {
            if m.get("method").and_then(Value::as_str) == Some("notifications/cancelled") {
                if let Some(id) = m.pointer("/params/requestId") {
                    self.gate.cancel(&call_key(&session, id));
                }
            }
        }
        if calls.is_empty() {
            if rest.is_empty() {
                return StatusCode::ACCEPTED.into_response();
            }
            // re-serialized: the server reads exactly what the proxy read
            let body = if batch {
                serde_json::to_vec(&rest)
            } else {
                serde_json::to_vec(&rest[0])
            };
            return match self.send(Method::POST, headers, body.ok()).await {
                Ok(up) => relayed(up),
                Err(e) => self.unreachable(&e),
            };
        }
        let accept = header_str(headers, "accept")
            .unwrap_or_default()
            .to_ascii_lowercase();
        let sse_ok = accept.contains("text/event-stream");
        let json_ok =
            accept.is_empty() || accept.contains("application/json") || accept.contains("*/*");
        if !batch {
            if let Some((id, msg)) = calls.pop() {
                return self
                    .single(headers, &session, id, msg, sse_ok, json_ok)
                    .await;
            }
        }
        self.batch(headers, &session, calls, rest, sse_ok).await
    }

    /// One gated `tools/call`: answered by whatever the call produces first.
    async fn single(
        self: Arc<Self>,
        headers: &HeaderMap,
        session: &str,
        id: Value,
        msg: Value,
        sse_ok: bool,
        json_ok: bool,
    ) -> Response {
        let (head_tx, head_rx) = oneshot::channel();
        let (body_tx, body_rx) = mpsc::channel(QUEUE);
        let call = Arc::new(HttpCall {
            st: Arc::clone(&self),
            headers: headers.clone(),
            sse_ok,
            state: Mutex::new(CallState {
                head: Some(head_tx),
                mode: Mode::Undecided,
            }),
            body: Mutex::new(Some(body_tx)),
        });
        let key = call_key(session, &id);
        tokio::spawn(Arc::clone(&self.gate).gate_call(call, id, msg, key));
        match head_rx.await {
            Ok(Head::Stream) => sse_response(channel_body(body_rx)),
            Ok(Head::Upstream { status, headers }) => {
                let mut r = Response::new(channel_body(body_rx));
                *r.status_mut() = status;
                *r.headers_mut() = headers;
                r
            }
            Ok(Head::Local(msg)) if json_ok || !sse_ok => json_response(StatusCode::OK, &msg),
            Ok(Head::Local(msg)) => sse_response(Body::from(event(&msg))),
            // cancelled by the client: nothing to say
            Err(_) => StatusCode::ACCEPTED.into_response(),
        }
    }

    /// A batch (protocol 2025-03-26) with `tools/call` requests: each call
    /// is gated and forwarded alone, the rest forwarded as one batch; the
    /// client gets every message as an event stream, or the responses as one
    /// JSON array once all are in.
    async fn batch(
        self: Arc<Self>,
        headers: &HeaderMap,
        session: &str,
        calls: Vec<(Value, Value)>,
        rest: Vec<Value>,
        sse_ok: bool,
    ) -> Response {
        let (tx, mut rx) = mpsc::unbounded_channel::<Value>();
        for (id, msg) in calls {
            let call = Arc::new(Collect {
                st: Arc::clone(&self),
                headers: headers.clone(),
                out: tx.clone(),
            });
            let key = call_key(session, &id);
            tokio::spawn(Arc::clone(&self.gate).gate_call(call, id, msg, key));
        }
        if !rest.is_empty() {
            let st = Arc::clone(&self);
            let headers = headers.clone();
            let out = tx.clone();
            tokio::spawn(async move {
                let answered = match serde_json::to_vec(&rest) {
                    Ok(body) => st.exchange(&headers, body).await,
                    Err(e) => Err(e.to_string()),
                };
                match answered {
                    Ok(messages) => messages.into_iter().for_each(|m| {
                        let _ = out.send(m);
                    }),
                    Err(why) => {
                        for id in rest.iter().filter_map(|m| m.get("id")) {
                            let _ = out.send(error_response(id, -32603, &why));
                        }
                    }
                }
            });
        }
        drop(tx);
        if sse_ok {
            return sse_response(Body::from_stream(futures_util::stream::unfold(
                rx,
                |mut rx| async move {
                    let msg = rx.recv().await?;
                    Some((Ok::<_, std::io::Error>(event(&msg)), rx))
                },
            )));
        }
        let mut responses = Vec::new();
        while let Some(msg) = rx.recv().await {
            // a JSON answer has no room for notifications or server requests
            if msg.get("method").is_none() {
                responses.push(msg);
            }
        }
        json_response(StatusCode::OK, &Value::Array(responses))
    }

    /// POSTs `body`, reads the whole answer, returns its messages.
    async fn exchange(&self, headers: &HeaderMap, body: Vec<u8>) -> Result<Vec<Value>, String> {
        let mut up = self
            .send(Method::POST, headers, Some(body))
            .await
            .map_err(|e| {
                format!(
                    "the MCP server at {} could not be reached: {e}",
                    self.upstream
                )
            })?;
        if !up.status().is_success() {
            return Err(format!(
                "the MCP server at {} answered HTTP {}",
                self.upstream,
                up.status()
            ));
        }
        let mut messages = Messages::new(is_sse(up.headers()));
        loop {
            match up.chunk().await {
                Ok(Some(chunk)) => messages.feed(&chunk),
                Ok(None) => break,
                Err(e) => return Err(format!("the MCP server's answer broke off: {e}")),
            }
        }
        messages.finish();
        Ok(messages.take())
    }

    /// The proxy's own `tools/list`, in the client's session.
    async fn list_tools(&self, client_headers: &HeaderMap) -> Option<Value> {
        let id = Value::String(format!(
            "signoff-tools-list-{}",
            self.next_id.fetch_add(1, Ordering::Relaxed)
        ));
        let mut headers = HeaderMap::new();
        for (name, value) in client_headers {
            let n = name.as_str();
            if n != "mcp-name" && n != "mcp-method" && !n.starts_with("mcp-param-") {
                headers.append(name.clone(), value.clone());
            }
        }
        headers.insert("mcp-method", HeaderValue::from_static("tools/list"));
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/json, text/event-stream"),
        );
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let body = json!({ "jsonrpc": "2.0", "id": id, "method": "tools/list", "params": {} });
        let asked = tokio::time::timeout(
            LIST_WAIT,
            self.exchange(&headers, body.to_string().into_bytes()),
        );
        let messages = asked.await.ok()?.ok()?;
        let key = id_key(&id);
        messages
            .into_iter()
            .find(|m| m.get("method").is_none() && m.get("id").map(id_key).as_ref() == Some(&key))
    }
}

/// How a `notifications/cancelled` names a call: JSON-RPC ids are per
/// session.
fn call_key(session: &str, id: &Value) -> String {
    format!("{session}\n{}", id_key(id))
}

fn is_sse(headers: &reqwest::header::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.trim_start()
                .to_ascii_lowercase()
                .starts_with("text/event-stream")
        })
}

/// The JSON-RPC messages of a body, read as it arrives: one JSON value
/// (object or batch array), or the `data` of each server-sent event.
struct Messages {
    sse: bool,
    buf: Vec<u8>,
    data: String,
    out: Vec<Value>,
}

impl Messages {
    fn new(sse: bool) -> Self {
        Messages {
            sse,
            buf: Vec::new(),
            data: String::new(),
            out: Vec::new(),
        }
    }

    fn feed(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
        if !self.sse {
            return;
        }
        while let Some(end) = self.buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=end).collect();
            let line = line.strip_suffix(b"\n").unwrap_or(&line);
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            self.line(line);
        }
    }

    fn line(&mut self, line: &[u8]) {
        if line.is_empty() {
            self.dispatch();
        } else if let Some(data) = line.strip_prefix(b"data:") {
            let data = data.strip_prefix(b" ").unwrap_or(data);
            if !self.data.is_empty() {
                self.data.push('\n');
            }
            self.data.push_str(&String::from_utf8_lossy(data));
        }
    }

    fn dispatch(&mut self) {
        if !self.data.trim().is_empty() {
            if let Ok(v) = serde_json::from_str(&self.data) {
                self.push(v);
            }
        }
        self.data.clear();
    }

    fn push(&mut self, v: Value) {
        match v {
            Value::Array(items) => self.out.extend(items),
            one => self.out.push(one),
        }
    }

    /// The body ended.
    fn finish(&mut self) {
        if self.sse {
            let rest = std::mem::take(&mut self.buf);
            if !rest.is_empty() {
                self.line(&rest);
            }
            self.dispatch();
        } else if let Ok(v) = serde_json::from_slice(&std::mem::take(&mut self.buf)) {
            self.push(v);
        }
    }

    fn take(&mut self) -> Vec<Value> {
        std::mem::take(&mut self.out)
    }
}

/// Picks the response to `id` out of the messages as they come.
fn response_to(messages: Vec<Value>, key: &str) -> Option<Value> {
    messages
        .into_iter()
        .find(|m| m.get("method").is_none() && m.get("id").map(id_key).as_deref() == Some(key))
}

/// What a single gated call answers the client with.
enum Head {
    /// The proxy's event stream; events follow on the body channel.
    Stream,
    /// The upstream's own answer to the forwarded call; its body follows on
    /// the body channel.
    Upstream {
        status: StatusCode,
        headers: HeaderMap,
    },
    /// One message the proxy made.
    Local(Value),
}

#[derive(PartialEq, Eq)]
enum Mode {
    /// Nothing sent yet.
    Undecided,
    /// The proxy's event stream is open.
    Sse,
    /// The upstream's answer is being relayed.
    Raw,
    /// Answered.
    Done,
}

struct CallState {
    head: Option<oneshot::Sender<Head>>,
    mode: Mode,
}

/// One gated call that came alone in a POST.
struct HttpCall {
    st: Arc<HttpState>,
    headers: HeaderMap,
    sse_ok: bool,
    state: Mutex<CallState>,
    /// The client's body, until the answer is complete (dropping it ends
    /// the body, so the client has its answer before the outcome is
    /// reported).
    body: Mutex<Option<mpsc::Sender<Chunk>>>,
}

impl HttpCall {
    fn state(&self) -> std::sync::MutexGuard<'_, CallState> {
        super::lock(&self.state)
    }

    fn sender(&self) -> Option<mpsc::Sender<Chunk>> {
        super::lock(&self.body).clone()
    }

    /// Ends the client's body.
    fn close(&self) {
        super::lock(&self.body).take();
    }

    /// Sends one chunk of the client's body; false when the client is gone.
    async fn send(&self, chunk: Chunk) -> bool {
        match self.sender() {
            Some(tx) => tx.send(chunk).await.is_ok(),
            None => false,
        }
    }

    fn open_head(state: &mut CallState, head: Head, mode: Mode) {
        if let Some(tx) = state.head.take() {
            let _ = tx.send(head);
        }
        state.mode = mode;
    }

    /// Relays the upstream's answer chunk by chunk (to `self.body` while the
    /// client listens) and watches it for the response to `key`.
    async fn pump(&self, mut up: reqwest::Response, key: &str) -> Forwarded {
        let mut messages = Messages::new(is_sse(up.headers()));
        let mut found = None;
        let tx = self.sender();
        let mut listening = tx.is_some();
        loop {
            match up.chunk().await {
                Ok(Some(chunk)) => {
                    messages.feed(&chunk);
                    if found.is_none() {
                        found = response_to(messages.take(), key);
                    }
                    // once the client is gone the answer is still read, for the outcome
                    if let (true, Some(tx)) = (listening, &tx) {
                        listening = tx.send(Ok(chunk)).await.is_ok();
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    if let (true, Some(tx)) = (listening, &tx) {
                        let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
                    }
                    return match found {
                        Some(r) => Forwarded::Answered(r),
                        None => Forwarded::Unseen(format!("the server's answer broke off: {e}")),
                    };
                }
            }
        }
        messages.finish();
        match found.or_else(|| response_to(messages.take(), key)) {
            Some(r) => Forwarded::Answered(r),
            None => Forwarded::Unseen(
                "the server ended its answer without the response (it may come on a resumed stream)"
                    .into(),
            ),
        }
    }
}

impl Channel for HttpCall {
    fn notify(&self, msg: Value) {
        let mut state = self.state();
        if state.mode == Mode::Undecided && self.sse_ok {
            Self::open_head(&mut state, Head::Stream, Mode::Sse);
        }
        if state.mode == Mode::Sse {
            // progress is best effort: a client that does not read loses notes
            if let Some(tx) = self.sender() {
                let _ = tx.try_send(Ok(event(&msg)));
            }
        }
    }

    async fn reply(&self, msg: Value) {
        let streaming = {
            let mut state = self.state();
            match state.mode {
                Mode::Undecided => {
                    Self::open_head(&mut state, Head::Local(msg.clone()), Mode::Done);
                    false
                }
                Mode::Sse => {
                    state.mode = Mode::Done;
                    true
                }
                Mode::Raw | Mode::Done => false,
            }
        };
        if streaming {
            self.send(Ok(event(&msg))).await;
        }
        self.close();
    }

    async fn forward(&self, request: Value) -> Forwarded {
        let key = request.get("id").map(id_key).unwrap_or_default();
        let body = serde_json::to_vec(&request).ok();
        let up = match self.st.send(Method::POST, &self.headers, body).await {
            Ok(up) => up,
            Err(e) => {
                return Forwarded::NotSent(format!(
                    "the MCP server at {} could not be reached: {e}",
                    self.st.upstream
                ))
            }
        };
        let status = up.status();
        let streaming = {
            let mut state = self.state();
            if state.mode == Mode::Undecided {
                let headers = kept(up.headers(), &RESPONSE_HEADERS);
                Self::open_head(&mut state, Head::Upstream { status, headers }, Mode::Raw);
                false
            } else {
                true
            }
        };
        if !streaming {
            // the client has the upstream's status; a refusal is its to read
            let answered = self.pump(up, &key).await;
            self.close();
            if !status.is_success() {
                return Forwarded::Refused(format!("the MCP server answered HTTP {status}"));
            }
            return answered;
        }
        // the proxy's event stream is open: the answer continues it
        if !status.is_success() {
            return Forwarded::NotSent(format!(
                "the MCP server at {} answered HTTP {status}",
                self.st.upstream
            ));
        }
        if is_sse(up.headers()) {
            let answered = self.pump(up, &key).await;
            self.state().mode = Mode::Done;
            self.close();
            return answered;
        }
        // a JSON answer becomes events
        let mut messages = Messages::new(false);
        let mut up = up;
        loop {
            match up.chunk().await {
                Ok(Some(chunk)) => messages.feed(&chunk),
                Ok(None) => break,
                Err(e) => {
                    return Forwarded::NotSent(format!("the MCP server's answer broke off: {e}"))
                }
            }
        }
        messages.finish();
        let all = messages.take();
        self.state().mode = Mode::Done;
        for m in &all {
            self.send(Ok(event(m))).await;
        }
        self.close();
        match response_to(all, &key) {
            Some(r) => Forwarded::Answered(r),
            None => Forwarded::Unseen("the server's answer held no response to the call".into()),
        }
    }

    async fn list_tools(&self) -> Option<Value> {
        self.st.list_tools(&self.headers).await
    }
}

/// One gated call of a batch: everything it produces is collected as
/// messages.
struct Collect {
    st: Arc<HttpState>,
    headers: HeaderMap,
    out: mpsc::UnboundedSender<Value>,
}

impl Channel for Collect {
    fn notify(&self, msg: Value) {
        let _ = self.out.send(msg);
    }

    async fn reply(&self, msg: Value) {
        let _ = self.out.send(msg);
    }

    async fn forward(&self, request: Value) -> Forwarded {
        let key = request.get("id").map(id_key).unwrap_or_default();
        let body = match serde_json::to_vec(&request) {
            Ok(b) => b,
            Err(e) => return Forwarded::NotSent(e.to_string()),
        };
        let messages = match self.st.exchange(&self.headers, body).await {
            Ok(m) => m,
            Err(why) => return Forwarded::NotSent(why),
        };
        for m in &messages {
            let _ = self.out.send(m.clone());
        }
        match response_to(messages, &key) {
            Some(r) => Forwarded::Answered(r),
            None => Forwarded::Unseen("the server's answer held no response to the call".into()),
        }
    }

    async fn list_tools(&self) -> Option<Value> {
        self.st.list_tools(&self.headers).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_and_origins() {
        for ok in [
            "localhost",
            "localhost:8931",
            "127.0.0.1:1",
            "[::1]:9",
            "[::1]",
            "LOCALHOST",
        ] {
            assert!(is_loopback_host(ok), "{ok}");
        }
        for bad in [
            "evil.example.com",
            "evil.example.com:8931",
            "10.0.0.1",
            "localhost.evil",
            "",
        ] {
            assert!(!is_loopback_host(bad), "{bad}");
        }
    }

    #[test]
    fn messages_of_a_stream_split_anywhere() {
        let body = b"id: 1\nretry: 500\ndata: \n\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\r\n\r\ndata: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{}}\n\n";
        for split in 1..body.len() {
            let mut m = Messages::new(true);
            m.feed(&body[..split]);
            m.feed(&body[split..]);
            m.finish();
            let all = m.take();
            assert_eq!(all.len(), 2, "split at {split}: {all:?}");
            assert_eq!(
                response_to(all, &id_key(&json!(7))).unwrap()["result"],
                json!({})
            );
        }
        let mut m = Messages::new(false);
        m.feed(br#"[{"jsonrpc":"2.0","id":"a","result":{}},"#);
        m.feed(br#"{"jsonrpc":"2.0","id":"b","error":{"code":1,"message":"x"}}]"#);
        m.finish();
        assert!(response_to(m.take(), &id_key(&json!("b"))).is_some());
    }

    #[test]
    fn only_calls_with_an_id_are_gated() {
        let s = sort(json!([
            {"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a"}},
            {"jsonrpc":"2.0","method":"tools/call","params":{"name":"b"}},
            {"jsonrpc":"2.0","id":2,"method":"tools/list"}
        ]));
        assert!(s.batch);
        assert_eq!(s.calls.len(), 1);
        assert_eq!(s.rest.len(), 1);
        assert_eq!(s.rest[0]["method"], "tools/list");
    }
}
