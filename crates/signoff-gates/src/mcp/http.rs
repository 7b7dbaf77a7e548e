//! The Streamable HTTP transport: `signoff mcp --name NAME --listen ADDR
//! --upstream URL` is a reverse proxy in front of a remote MCP server.
//!
//! It does not terminate MCP sessions: every POST, GET and DELETE to its
//! endpoint goes to the upstream with the MCP headers (`Mcp-Session-Id`,
//! `MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name`, `Mcp-Param-*`),
//! `Accept`, `Last-Event-ID` and the client's `Authorization`, and the
//! upstream's answer — JSON or an event stream, streamed as it comes, its
//! status and `Mcp-Session-Id` kept — goes back. POST bodies are parsed and
//! re-serialized as UTF-8 `application/json` (a body in any other charset
//! is refused with 415: the upstream must read exactly what the proxy
//! read); a body that is (or, in a batch, contains) a `tools/call` request
//! is gated like a stdio call, and the headers that mirror the body
//! (`Mcp-Method`, `Mcp-Name`, `Mcp-Param-*`) must agree with it.
//!
//! A gated call answers with whatever comes first: the upstream's own
//! response to the forwarded call (relayed unchanged), the proxy's tool
//! error, or — when the client asked for progress and accepts
//! `text/event-stream` while the call waits — an event stream of the
//! proxy's `notifications/progress` that ends with the forwarded call's
//! events or the tool error.
//!
//! Gated calls are scoped per client: by `Mcp-Session-Id` (and
//! `Authorization`) when the client has a session, else by its connection.

use super::{
    classify, error_response, error_without_id, id_key, is_response_to, list_request, response_to,
    split_query, why, Channel, Classified, Forwarded, Gate, Incoming, McpError, McpServer, McpSpec,
    GRACE, LIST_WAIT, PROTOCOL_VERSION_KEY,
};
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use base64::Engine as _;
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use signoff_client::Client;
use std::collections::HashSet;
use std::future::{Future, IntoFuture as _};
use std::net::{IpAddr, SocketAddr};
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

/// Most of one upstream answer the proxy holds to find messages in it
/// (what it relays is not held).
const MAX_HELD: usize = 4 * MAX_BODY;

/// Events the proxy may queue for a client that reads slowly.
const QUEUE: usize = 64;

/// Request headers that go to the upstream, besides every `Mcp-*` one.
/// Never `Content-Type`: the proxy sends the body it serialized, as UTF-8
/// JSON, whatever the client's header said.
const REQUEST_HEADERS: [HeaderName; 3] = [
    header::ACCEPT,
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

/// The JSON-RPC error for headers that disagree with the body (MCP's
/// `HeaderMismatch`).
const HEADER_MISMATCH: i64 = -32020;

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
            .field("upstream", &self.state.shown)
            .finish()
    }
}

impl HttpProxy {
    /// Checks the upstream URL and binds the listener. `spec.server` is
    /// replaced by the upstream URL: it is the server's identity in every
    /// digest.
    pub async fn bind(client: Client, mut spec: McpSpec, http: HttpSpec) -> Result<Self, McpError> {
        let upstream = reqwest::Url::parse(&http.upstream).map_err(|e| McpError::Upstream {
            url: split_query(&http.upstream).0,
            reason: e.to_string(),
        })?;
        let shown = split_query(upstream.as_str()).0;
        if !matches!(upstream.scheme(), "http" | "https") {
            return Err(McpError::Upstream {
                url: shown,
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
        // a name given to --listen is a name clients may use in Host
        let listen_name = http
            .listen
            .rsplit_once(':')
            .map(|(host, _)| host.trim_start_matches('[').trim_end_matches(']'))
            .filter(|h| h.parse::<IpAddr>().is_err() && !h.is_empty())
            .map(str::to_ascii_lowercase);
        spec.server = McpServer::Url(upstream.to_string());
        Ok(HttpProxy {
            listener,
            local,
            state: Arc::new(HttpState {
                gate: Arc::new(Gate::new(spec, client)),
                upstream,
                shown,
                http: http_client,
                loopback: local.ip().is_loopback(),
                listen_name,
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

    /// Serves until `shutdown` resolves; then gives open exchanges (and an
    /// open GET stream) [`GRACE`] to end, records calls still mid-forward as
    /// of unknown outcome, and returns.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), McpError> {
        let gate = Arc::clone(&self.state.gate);
        let app = Router::new()
            .route(PATH, any(handle))
            .layer(DefaultBodyLimit::max(MAX_BODY))
            .with_state(self.state);
        let (fired, on_fire) = oneshot::channel::<()>();
        let signal = async move {
            shutdown.await;
            let _ = fired.send(());
        };
        let server = axum::serve(
            self.listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(signal)
        .into_future();
        let bound = async move {
            match on_fire.await {
                Ok(()) => tokio::time::sleep(GRACE).await,
                Err(_) => std::future::pending().await,
            }
        };
        let served = tokio::select! {
            r = server => r.map_err(McpError::Serve),
            () = bound => Ok(()),
        };
        gate.stop(GRACE).await;
        served
    }
}

/// What every request handler shares.
struct HttpState {
    gate: Arc<Gate>,
    upstream: reqwest::Url,
    /// The upstream as messages show it (no query: it can hold a key).
    shown: String,
    http: reqwest::Client,
    /// Listening on loopback: the Host header must name a loopback host.
    loopback: bool,
    /// The host name `--listen` gave, if it gave a name.
    listen_name: Option<String>,
}

async fn handle(
    State(st): State<Arc<HttpState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(why) = st.check_origin(&headers) {
        return json_response(StatusCode::FORBIDDEN, &error_without_id(-32000, &why));
    }
    match method {
        Method::POST => Arc::clone(&st).post(peer, &headers, &body).await,
        Method::GET | Method::DELETE => {
            match st.send(method, &headers, None).await {
                // a GET stream carries the server's notifications
                Ok(up) => relayed(up, Some(Watch::new(&st.gate, Vec::new()))),
                Err(e) => st.unreachable(&e),
            }
        }
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

/// What the gate learns from an answer it relays: the results of the
/// client's `tools/list` requests, and the server's word that its tools
/// changed.
struct Watch {
    gate: Arc<Gate>,
    /// The client's `tools/list` requests, by [`id_key`].
    lists: Vec<String>,
    messages: Option<Messages>,
}

impl Watch {
    fn new(gate: &Arc<Gate>, lists: Vec<String>) -> Self {
        Watch {
            gate: Arc::clone(gate),
            lists,
            messages: None,
        }
    }

    fn feed(&mut self, sse: bool, chunk: &[u8]) {
        let messages = self.messages.get_or_insert_with(|| Messages::new(sse));
        messages.feed(chunk);
        let found = messages.take();
        self.seen(found);
    }

    fn finish(&mut self) {
        if let Some(mut m) = self.messages.take() {
            m.finish();
            let found = m.take();
            self.seen(found);
        }
    }

    fn seen(&self, found: Vec<Value>) {
        for m in found {
            self.gate.observe(&m);
            if self.lists.iter().any(|k| is_response_to(&m, k)) {
                self.gate.learn_tools(&m);
            }
        }
    }
}

/// The upstream's answer as the client's: status, the headers that belong
/// to MCP, and the body streamed as it comes (and watched, if asked).
fn relayed(up: reqwest::Response, watch: Option<Watch>) -> Response {
    let (status, headers) = (up.status(), kept(up.headers(), &RESPONSE_HEADERS));
    let sse = is_sse(up.headers());
    let body = Body::from_stream(futures_util::stream::unfold(
        Some((up, watch)),
        move |state| async move {
            let (mut up, mut watch) = state?;
            match up.chunk().await {
                Ok(Some(b)) => {
                    if let Some(w) = &mut watch {
                        w.feed(sse, &b);
                    }
                    Some((Ok(b), Some((up, watch))))
                }
                Ok(None) => {
                    if let Some(w) = &mut watch {
                        w.finish();
                    }
                    None
                }
                Err(e) => Some((Err(e.without_url()), None)),
            }
        },
    ));
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

/// The host part of `host[:port]` or `[v6][:port]`.
fn host_of(host_port: &str) -> &str {
    match host_port.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => host_port.split(':').next().unwrap_or_default(),
    }
}

/// `localhost`, `127.0.0.1`, `[::1]`, with or without a port.
fn is_loopback_host(host_port: &str) -> bool {
    let host = host_of(host_port);
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Whether a POST's `Content-Type` says UTF-8 JSON: `application/json`,
/// with no charset or a UTF-8 one (or no header at all). The body the
/// upstream gets is the proxy's own serialization, declared as UTF-8 JSON;
/// a client that meant another charset would have the upstream read
/// something else than what the proxy gated (e.g. UTF-7 hides a
/// `tools/call` inside a string).
fn check_content_type(headers: &HeaderMap) -> Result<(), String> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let refuse = |v: &str| {
        Err(format!(
            "unsupported content type `{}`: use application/json in UTF-8",
            signoff_core::display::cell(v, 100)
        ))
    };
    let Ok(text) = value.to_str() else {
        return refuse("(not ASCII)");
    };
    let mut parts = text.split(';');
    let media = parts.next().unwrap_or_default().trim();
    if !media.eq_ignore_ascii_case("application/json") {
        return refuse(text);
    }
    for param in parts {
        let (name, value) = param.split_once('=').unwrap_or((param, ""));
        if name.trim().eq_ignore_ascii_case("charset") {
            let charset = value.trim().trim_matches('"');
            if !(charset.eq_ignore_ascii_case("utf-8") || charset.eq_ignore_ascii_case("utf8")) {
                return refuse(text);
            }
        }
    }
    Ok(())
}

/// A header value as MCP mirrors a string: as is, or `=?base64?…?=` for
/// what a header cannot carry. `None` when it does not decode.
fn mirrored(value: &HeaderValue) -> Option<String> {
    let text = value.to_str().ok()?;
    match text
        .strip_prefix("=?base64?")
        .and_then(|r| r.strip_suffix("?="))
    {
        Some(b64) => base64::engine::general_purpose::STANDARD
            .decode(b64)
            .ok()
            .and_then(|b| String::from_utf8(b).ok()),
        None => Some(text.to_owned()),
    }
}

/// How an argument's value is mirrored into a header, if it can be.
fn mirror_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The client's `Mcp-Method`, `Mcp-Name` and `Mcp-Param-*` headers must
/// say what the body says (an intermediary or the server may act on them):
/// on a single message, `Mcp-Method` is its method, and on a `tools/call`,
/// `Mcp-Name` is the tool and every `Mcp-Param-*` mirrors the argument the
/// listed tool's schema maps to it (`x-mcp-header`). A batch carries none.
/// A `tools/call` whose `_meta` names its protocol version (2026-07-28 on)
/// must name the one its `MCP-Protocol-Version` header does: the version
/// the digest binds is the one the server acts on.
fn check_mirrors(headers: &HeaderMap, body: &Classified, gate: &Gate) -> Result<(), String> {
    if let (false, Some(Incoming::Call { msg, .. })) = (body.batch, body.messages.first()) {
        let bound = msg
            .pointer("/params/_meta")
            .and_then(|m| m.get(PROTOCOL_VERSION_KEY));
        if let (Some(bound), Some(header)) = (bound, headers.get("mcp-protocol-version")) {
            if bound.as_str() != header.to_str().ok() {
                return Err(
                    "the mcp-protocol-version header does not match the protocol version in the body's _meta"
                        .into(),
                );
            }
        }
    }
    let mirrors: Vec<(&HeaderName, &HeaderValue)> = headers
        .iter()
        .filter(|(n, _)| {
            let n = n.as_str();
            n == "mcp-method" || n == "mcp-name" || n.starts_with("mcp-param-")
        })
        .collect();
    if mirrors.is_empty() {
        return Ok(());
    }
    let mismatch = |name: &HeaderName| Err(format!("the {name} header does not match the body"));
    let msg = match (body.batch, body.messages.first()) {
        (false, Some(Incoming::Call { msg, .. })) => msg,
        (false, Some(other)) => {
            // not gated: only the method must agree
            let method = other
                .passed()
                .and_then(|m| m.get("method"))
                .and_then(Value::as_str);
            for (name, value) in &mirrors {
                if name.as_str() == "mcp-method" && mirrored(value).as_deref() != method {
                    return mismatch(name);
                }
            }
            return Ok(());
        }
        _ => return mismatch(mirrors[0].0),
    };
    let tool = msg.pointer("/params/name").and_then(Value::as_str);
    let arguments = msg.pointer("/params/arguments");
    let listed = tool.and_then(|t| gate.known_tool(t));
    for (name, value) in &mirrors {
        let decoded = mirrored(value);
        let ok = match name.as_str() {
            "mcp-method" => decoded.as_deref() == Some("tools/call"),
            "mcp-name" => decoded.as_deref() == tool,
            param => {
                let suffix = param.trim_start_matches("mcp-param-");
                // the argument the listed tool mirrors into this header
                let arg = listed.as_ref().and_then(|t| {
                    t.input_schema
                        .get("properties")
                        .and_then(Value::as_object)?
                        .iter()
                        .find(|(_, p)| {
                            p.get("x-mcp-header")
                                .and_then(Value::as_str)
                                .is_some_and(|h| h.eq_ignore_ascii_case(suffix))
                        })
                        .map(|(k, _)| k.clone())
                });
                let expected = arg
                    .and_then(|a| arguments.and_then(|args| args.get(&a)))
                    .and_then(mirror_of);
                decoded.is_some() && decoded == expected
            }
        };
        if !ok {
            return mismatch(name);
        }
    }
    Ok(())
}

/// The key a client's calls are scoped by: its MCP session (with its
/// credentials: a session id alone is not who holds it), else its
/// connection.
fn client_scope(headers: &HeaderMap, peer: SocketAddr) -> String {
    let who = match header_str(headers, "mcp-session-id") {
        Some(s) => format!("session {s}"),
        None => format!("connection {peer}"),
    };
    let auth = header_str(headers, "authorization").unwrap_or_default();
    hex::encode(Sha256::digest(format!("{who}\n{auth}").as_bytes()))
}

impl HttpState {
    /// DNS rebinding: a page on another site must not reach the listener
    /// through the victim's browser. An `Origin`, when sent, must be a
    /// loopback origin. `Host` must name a loopback host on a loopback
    /// listener; on any other it must be an IP address, a loopback name,
    /// or the name `--listen` gave (a rebinding page's requests carry the
    /// attacker's name).
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
        if let Some(host) = headers.get(header::HOST) {
            let host = host.to_str().unwrap_or_default();
            let name = host_of(host);
            let ok = is_loopback_host(host)
                || (!self.loopback
                    && (name.parse::<IpAddr>().is_ok()
                        || self
                            .listen_name
                            .as_deref()
                            .is_some_and(|l| l.eq_ignore_ascii_case(name))));
            if !ok {
                return Err(format!(
                    "forbidden: host `{}` is not this MCP endpoint",
                    signoff_core::display::cell(host, 100)
                ));
            }
        }
        Ok(())
    }

    /// Sends one request to the upstream with the client's MCP headers; a
    /// POST body goes as UTF-8 JSON.
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
            req = req
                .header(header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        req.send().await.map_err(reqwest::Error::without_url)
    }

    /// What a failed send means for a call: never sent (no connection), or
    /// perhaps reached the server.
    fn send_failed(&self, e: &reqwest::Error) -> Forwarded {
        if e.is_connect() {
            Forwarded::NotSent(why::unreachable(&self.shown, e))
        } else {
            Forwarded::Lost(why::failed(&self.shown, e))
        }
    }

    fn unreachable(&self, e: &reqwest::Error) -> Response {
        let text = if e.is_connect() {
            why::unreachable(&self.shown, e)
        } else {
            why::failed(&self.shown, e)
        };
        json_response(StatusCode::BAD_GATEWAY, &error_without_id(-32603, &text))
    }

    async fn post(self: Arc<Self>, peer: SocketAddr, headers: &HeaderMap, body: &[u8]) -> Response {
        if let Err(why) = check_content_type(headers) {
            return json_response(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                &error_without_id(-32700, &why),
            );
        }
        let classified = serde_json::from_slice(body)
            // never forwarded: what the server would make of it is unknown
            .map_err(|e| error_without_id(-32700, &format!("parse error: {e}")))
            .and_then(classify);
        let classified = match classified {
            Ok(c) => c,
            Err(refusal) => return json_response(StatusCode::BAD_REQUEST, &refusal),
        };
        if let Err(why) = check_mirrors(headers, &classified, &self.gate) {
            return json_response(
                StatusCode::BAD_REQUEST,
                &error_without_id(HEADER_MISMATCH, &why),
            );
        }
        let scope = client_scope(headers, peer);
        let Classified { batch, messages } = classified;
        let mut calls = Vec::new();
        let mut rest = Vec::new();
        let mut lists = Vec::new();
        for incoming in messages {
            match incoming {
                Incoming::Call { id, msg } => calls.push((id, msg)),
                Incoming::CallNotification => {}
                Incoming::List { id, msg } => {
                    lists.push(id_key(&id));
                    rest.push(msg);
                }
                Incoming::Cancel { request_id, msg } => {
                    if let Some(id) = &request_id {
                        self.gate.cancel(&scope, id);
                    }
                    rest.push(msg);
                }
                Incoming::Pass(msg) => rest.push(msg),
            }
        }
        if calls.is_empty() {
            // re-serialized: the server reads exactly what the proxy read
            let body = match (batch, rest.as_slice()) {
                (_, []) => return StatusCode::ACCEPTED.into_response(),
                (false, [one]) => one.to_string(),
                _ => Value::Array(rest).to_string(),
            };
            return match self
                .send(Method::POST, headers, Some(body.into_bytes()))
                .await
            {
                Ok(up) => relayed(up, Some(Watch::new(&self.gate, lists))),
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
                return self.single(headers, scope, id, msg, sse_ok, json_ok).await;
            }
        }
        self.batch(headers, scope, calls, rest, lists, sse_ok).await
    }

    /// One gated `tools/call`: answered by whatever the call produces first.
    async fn single(
        self: Arc<Self>,
        headers: &HeaderMap,
        scope: String,
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
        tokio::spawn(Arc::clone(&self.gate).gate_call(call, scope, id.clone(), msg));
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
            // cancelled by the client (or the proxy stopped) before it was
            // forwarded: a request still gets an answer saying so
            Err(_) => rpc_error(
                StatusCode::OK,
                &id,
                -32800,
                "the tool call was cancelled before it was forwarded",
            ),
        }
    }

    /// A batch (protocol 2025-03-26) with `tools/call` requests: each call
    /// is gated and forwarded alone, the rest forwarded as one batch; the
    /// client gets every message as an event stream, or the responses as one
    /// JSON array once all are in. Every request of the batch is answered:
    /// one left without a response (cancelled, or the server sent none)
    /// gets an error.
    async fn batch(
        self: Arc<Self>,
        headers: &HeaderMap,
        scope: String,
        calls: Vec<(Value, Value)>,
        rest: Vec<Value>,
        lists: Vec<String>,
        sse_ok: bool,
    ) -> Response {
        let mut expected: Vec<Value> = calls.iter().map(|(id, _)| id.clone()).collect();
        expected.extend(
            rest.iter()
                .filter(|m| m.get("method").is_some())
                .filter_map(|m| m.get("id").cloned()),
        );
        let (tx, rx) = mpsc::unbounded_channel::<Value>();
        for (id, msg) in calls {
            let call = Arc::new(Collect {
                st: Arc::clone(&self),
                headers: headers.clone(),
                out: tx.clone(),
            });
            tokio::spawn(Arc::clone(&self.gate).gate_call(call, scope.clone(), id, msg));
        }
        if !rest.is_empty() {
            let st = Arc::clone(&self);
            let headers = headers.clone();
            let out = tx.clone();
            tokio::spawn(async move {
                let body = Value::Array(rest.clone()).to_string().into_bytes();
                match st.exchange(&headers, body).await {
                    Ok(messages) => {
                        Watch::new(&st.gate, lists).seen(messages.clone());
                        for m in messages {
                            let _ = out.send(m);
                        }
                    }
                    Err(failed) => {
                        let why = failed.why();
                        for id in rest
                            .iter()
                            .filter(|m| m.get("method").is_some())
                            .filter_map(|m| m.get("id"))
                        {
                            let _ = out.send(error_response(id, -32603, &why));
                        }
                    }
                }
            });
        }
        drop(tx);
        let answers = Answers {
            rx,
            expected,
            seen: HashSet::new(),
            missing: None,
        };
        if sse_ok {
            return sse_response(Body::from_stream(futures_util::stream::unfold(
                answers,
                |mut a| async move {
                    let msg = a.next().await?;
                    Some((Ok::<_, std::io::Error>(event(&msg)), a))
                },
            )));
        }
        let mut answers = answers;
        let mut responses = Vec::new();
        while let Some(msg) = answers.next().await {
            // a JSON answer has no room for notifications or server requests
            if msg.get("method").is_none() {
                responses.push(msg);
            }
        }
        json_response(StatusCode::OK, &Value::Array(responses))
    }

    /// POSTs `body`, reads the whole answer, returns its messages.
    async fn exchange(&self, headers: &HeaderMap, body: Vec<u8>) -> Result<Vec<Value>, Failed> {
        let mut up = self
            .send(Method::POST, headers, Some(body))
            .await
            .map_err(|e| Failed::Send(self.send_failed(&e)))?;
        if !up.status().is_success() {
            return Err(Failed::Status {
                status: up.status().as_u16(),
                why: why::status(&self.shown, up.status()),
            });
        }
        let sse = is_sse(up.headers());
        let read = read_body(&mut up, sse, None, true, None).await;
        match read.broke {
            Some(e) => Err(Failed::Send(Forwarded::Lost(why::broke_off(e)))),
            None => Ok(read.messages),
        }
    }

    /// The proxy's own `tools/list`, in the client's session.
    async fn list_tools(
        &self,
        client_headers: &HeaderMap,
        envelope: &serde_json::Map<String, Value>,
    ) -> Option<Value> {
        let (key, body) = list_request(envelope);
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
        let asked = tokio::time::timeout(
            LIST_WAIT,
            self.exchange(&headers, body.to_string().into_bytes()),
        );
        let messages = asked.await.ok()?.ok()?;
        response_to(messages, &key)
    }
}

/// Why an exchange with the upstream failed.
enum Failed {
    /// The request failed (or its answer broke off): what that means for a
    /// call.
    Send(Forwarded),
    /// An HTTP error status.
    Status { status: u16, why: String },
}

impl Failed {
    fn why(&self) -> String {
        match self {
            Failed::Send(Forwarded::NotSent(w) | Forwarded::Lost(w) | Forwarded::Unseen(w))
            | Failed::Status { why: w, .. } => w.clone(),
            Failed::Send(_) => why::no_response(),
        }
    }
}

/// The messages a batch produces, then an error for each of its requests
/// that got no response.
struct Answers {
    rx: mpsc::UnboundedReceiver<Value>,
    expected: Vec<Value>,
    seen: HashSet<String>,
    missing: Option<std::vec::IntoIter<Value>>,
}

impl Answers {
    async fn next(&mut self) -> Option<Value> {
        if self.missing.is_none() {
            if let Some(msg) = self.rx.recv().await {
                if msg.get("method").is_none() {
                    if let Some(id) = msg.get("id") {
                        self.seen.insert(id_key(id));
                    }
                }
                return Some(msg);
            }
            let missing: Vec<Value> = self
                .expected
                .iter()
                .filter(|id| !self.seen.contains(&id_key(id)))
                .map(|id| {
                    error_response(
                        id,
                        -32603,
                        "no response: the call was cancelled, or the server sent none",
                    )
                })
                .collect();
            self.missing = Some(missing.into_iter());
        }
        self.missing.as_mut().and_then(Iterator::next)
    }
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

/// What reading an upstream answer came to.
struct BodyRead {
    /// The response to the call looked for.
    found: Option<Value>,
    /// Every message, when asked to keep them.
    messages: Vec<Value>,
    /// Why the body broke off, if it did.
    broke: Option<String>,
}

/// Reads an upstream answer to its end: finds the response to `key` (if
/// given), keeps every message (if `keep`), and relays each chunk to the
/// client (if `relay`) while the client listens. Once the response is found
/// and nobody listens, it stops: the rest is nobody's.
async fn read_body(
    up: &mut reqwest::Response,
    sse: bool,
    key: Option<&str>,
    keep: bool,
    relay: Option<&mpsc::Sender<Chunk>>,
) -> BodyRead {
    let mut messages = Messages::new(sse);
    let mut read = BodyRead {
        found: None,
        messages: Vec::new(),
        broke: None,
    };
    let mut listening = relay.is_some();
    let look = |messages: &mut Messages, read: &mut BodyRead| {
        for m in messages.take() {
            if read.found.is_none() && key.is_some_and(|k| is_response_to(&m, k)) {
                read.found = Some(m.clone());
            }
            if keep {
                read.messages.push(m);
            }
        }
    };
    loop {
        match up.chunk().await {
            Ok(Some(chunk)) => {
                messages.feed(&chunk);
                look(&mut messages, &mut read);
                if let (true, Some(tx)) = (listening, relay) {
                    listening = tx.send(Ok(chunk)).await.is_ok();
                }
                if read.found.is_some() && !listening && !keep {
                    return read;
                }
            }
            Ok(None) => break,
            Err(e) => {
                if let (true, Some(tx)) = (listening, relay) {
                    let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
                }
                read.broke = Some(e.without_url().to_string());
                return read;
            }
        }
    }
    messages.finish();
    look(&mut messages, &mut read);
    read
}

/// The JSON-RPC messages of a body, read as it arrives: one JSON value
/// (object or batch array), or the `data` of each server-sent event.
struct Messages {
    sse: bool,
    /// More than [`MAX_HELD`] came without a message: the rest is relayed
    /// but not read.
    overflow: bool,
    buf: Vec<u8>,
    data: String,
    out: Vec<Value>,
}

impl Messages {
    fn new(sse: bool) -> Self {
        Messages {
            sse,
            overflow: false,
            buf: Vec::new(),
            data: String::new(),
            out: Vec::new(),
        }
    }

    fn feed(&mut self, chunk: &[u8]) {
        if self.overflow {
            return;
        }
        if self.buf.len() + self.data.len() + chunk.len() > MAX_HELD {
            self.overflow = true;
            self.buf = Vec::new();
            self.data = String::new();
            return;
        }
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
        if self.overflow {
            return;
        }
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
        let tx = self.sender();
        let sse = is_sse(up.headers());
        let read = read_body(&mut up, sse, Some(key), false, tx.as_ref()).await;
        match (read.found, read.broke) {
            (Some(r), _) => Forwarded::Answered(r),
            (None, Some(e)) => Forwarded::Unseen(why::broke_off(e)),
            (None, None) => Forwarded::Unseen(format!(
                "{} (it may come on a resumed stream)",
                why::no_response()
            )),
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
        let body = request.to_string().into_bytes();
        let up = match self.st.send(Method::POST, &self.headers, Some(body)).await {
            Ok(up) => up,
            Err(e) => return self.st.send_failed(&e),
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
                return Forwarded::Refused {
                    status: status.as_u16(),
                    why: why::status(&self.st.shown, status),
                };
            }
            return answered;
        }
        // the proxy's event stream is open: the answer continues it
        if !status.is_success() {
            let why = why::status(&self.st.shown, status);
            return match status.is_server_error() {
                true => Forwarded::Lost(why),
                false => Forwarded::NotSent(why),
            };
        }
        if is_sse(up.headers()) {
            let answered = self.pump(up, &key).await;
            self.state().mode = Mode::Done;
            self.close();
            return answered;
        }
        // a JSON answer becomes events
        let mut up = up;
        let read = read_body(&mut up, false, Some(&key), true, None).await;
        if let Some(e) = read.broke {
            return Forwarded::Lost(why::broke_off(e));
        }
        let Some(found) = read.found else {
            // the client still waits on the stream: it gets the tool error
            return Forwarded::Lost(why::no_response());
        };
        self.state().mode = Mode::Done;
        for m in &read.messages {
            self.send(Ok(event(m))).await;
        }
        self.close();
        Forwarded::Answered(found)
    }

    async fn list_tools(&self, envelope: &serde_json::Map<String, Value>) -> Option<Value> {
        self.st.list_tools(&self.headers, envelope).await
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
        let messages = match self
            .st
            .exchange(&self.headers, request.to_string().into_bytes())
            .await
        {
            Ok(m) => m,
            // nothing reached the client: it still needs an answer
            Err(Failed::Send(f)) => return f,
            Err(Failed::Status { status, why }) if status >= 500 => return Forwarded::Lost(why),
            Err(Failed::Status { why, .. }) => return Forwarded::NotSent(why),
        };
        Watch::new(&self.st.gate, Vec::new()).seen(messages.clone());
        let found = response_to(messages.iter().cloned(), &key);
        for m in messages {
            let _ = self.out.send(m);
        }
        match found {
            Some(r) => Forwarded::Answered(r),
            None => Forwarded::Lost(why::no_response()),
        }
    }

    async fn list_tools(&self, envelope: &serde_json::Map<String, Value>) -> Option<Value> {
        self.st.list_tools(&self.headers, envelope).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn only_utf8_json_is_accepted() {
        for ok in [
            None,
            Some("application/json"),
            Some("Application/JSON; charset=UTF-8"),
            Some("application/json;charset=\"utf-8\""),
        ] {
            let h = ok
                .map(|v| headers(&[("content-type", v)]))
                .unwrap_or_default();
            assert!(check_content_type(&h).is_ok(), "{ok:?}");
        }
        for bad in [
            "application/json; charset=utf-7",
            "application/json; charset=utf-16le",
            "text/plain",
            "application/jsonx",
        ] {
            let why = check_content_type(&headers(&[("content-type", bad)])).unwrap_err();
            assert!(why.contains(bad), "{why}");
        }
    }

    fn state(loopback: bool, listen_name: Option<&str>) -> HttpState {
        let spec = McpSpec {
            name: "t".into(),
            server: McpServer::Url("http://127.0.0.1:1/mcp".into()),
            resource_args: Vec::new(),
            environment: None,
            wait: Duration::from_secs(1),
        };
        let client = Client::new("http://127.0.0.1:1", "so_unused").unwrap();
        HttpState {
            gate: Arc::new(Gate::new(spec, client)),
            upstream: reqwest::Url::parse("http://127.0.0.1:1/mcp").unwrap(),
            shown: "http://127.0.0.1:1/mcp".into(),
            http: reqwest::Client::new(),
            loopback,
            listen_name: listen_name.map(str::to_owned),
        }
    }

    #[test]
    fn origins_and_hosts_on_every_listener() {
        let local = state(true, None);
        assert!(local
            .check_origin(&headers(&[("host", "127.0.0.1:8931")]))
            .is_ok());
        assert!(local
            .check_origin(&headers(&[
                ("host", "localhost"),
                ("origin", "http://localhost:3000")
            ]))
            .is_ok());
        for bad in [
            &[("host", "evil.example.com")][..],
            &[("host", "10.0.0.1:8931")],
            &[("host", "localhost"), ("origin", "null")],
            &[("host", "localhost"), ("origin", "http://evil.example.com")],
            &[("host", "localhost"), ("origin", "file://")],
        ] {
            assert!(local.check_origin(&headers(bad)).is_err(), "{bad:?}");
        }
        // a non-loopback listener: addresses and the --listen name, never
        // another name (a rebinding page's)
        let wide = state(false, Some("buildbox.internal"));
        for ok in [
            "10.0.0.5:8931",
            "[fd00::1]:8931",
            "buildbox.internal:8931",
            "localhost",
        ] {
            assert!(wide.check_origin(&headers(&[("host", ok)])).is_ok(), "{ok}");
        }
        for bad in ["evil.example.com:8931", "buildbox.internal.evil.com"] {
            assert!(
                wide.check_origin(&headers(&[("host", bad)])).is_err(),
                "{bad}"
            );
        }
        assert!(wide
            .check_origin(&headers(&[
                ("host", "10.0.0.5"),
                ("origin", "http://evil.example.com")
            ]))
            .is_err());
    }

    #[test]
    fn mirrored_headers_must_say_what_the_body_says() {
        let st = state(true, None);
        st.gate.learn_tools(&json!({"result": {"tools": [{
            "name": "query",
            "inputSchema": {"type": "object", "properties": {
                "region": {"type": "string", "x-mcp-header": "Region"},
                "sql": {"type": "string"}
            }}
        }]}}));
        let call = |args: Value| {
            classify(json!({"jsonrpc":"2.0","id":1,"method":"tools/call",
                "params":{"name":"query","arguments":args}}))
            .unwrap()
        };
        let body = call(json!({"region": "eu-west1", "sql": "select 1"}));
        let ok = headers(&[
            ("mcp-method", "tools/call"),
            ("mcp-name", "query"),
            ("mcp-param-region", "eu-west1"),
        ]);
        assert!(check_mirrors(&ok, &body, &st.gate).is_ok());
        let b64 = headers(&[("mcp-param-region", "=?base64?ZXUtd2VzdDE=?=")]);
        assert!(check_mirrors(&b64, &body, &st.gate).is_ok());
        for bad in [
            &[("mcp-method", "ping")][..],
            &[("mcp-name", "other")],
            &[("mcp-param-region", "us-east1")],
            &[("mcp-param-sql", "select 1")],
        ] {
            let why = check_mirrors(&headers(bad), &body, &st.gate).unwrap_err();
            assert!(why.contains(bad[0].0), "{why}");
        }
        let ping = classify(json!({"jsonrpc":"2.0","id":1,"method":"ping"})).unwrap();
        assert!(check_mirrors(&headers(&[("mcp-method", "ping")]), &ping, &st.gate).is_ok());
        assert!(check_mirrors(&headers(&[("mcp-method", "tools/call")]), &ping, &st.gate).is_err());
        let batch = classify(json!([{"jsonrpc":"2.0","id":1,"method":"ping"}])).unwrap();
        assert!(check_mirrors(&headers(&[("mcp-method", "ping")]), &batch, &st.gate).is_err());
        // 2026-07-28: the version the body binds is the header's
        let modern = classify(json!({"jsonrpc":"2.0","id":1,"method":"tools/call",
            "params":{"name":"query","arguments":{},
                "_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}))
        .unwrap();
        let v = |version: &str| headers(&[("mcp-protocol-version", version)]);
        assert!(check_mirrors(&v("2026-07-28"), &modern, &st.gate).is_ok());
        let why = check_mirrors(&v("2025-11-25"), &modern, &st.gate).unwrap_err();
        assert!(why.contains("mcp-protocol-version"), "{why}");
        assert!(check_mirrors(&v("2025-11-25"), &body, &st.gate).is_ok());
    }
}
