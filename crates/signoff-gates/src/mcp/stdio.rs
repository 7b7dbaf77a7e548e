//! The stdio transport: `signoff mcp --name NAME -- SERVER ARGS…` starts the
//! server and relays JSON-RPC lines between it and the agent.

use super::{
    classify, error_without_id, id_key, is_response_to, list_request, lock, proxy_id, why, Channel,
    Forwarded, Gate, Incoming, McpError, McpServer, McpSpec, GRACE, LIST_WAIT,
};
use crate::exec::shell_join;
use serde_json::Value;
use signoff_client::Client;
use std::collections::HashMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, oneshot};

/// Client `tools/list` requests remembered at once; past this the oldest
/// answers go unread (the gate lists for itself when it must).
const MAX_LISTING: usize = 1024;

/// The relay between one client and one server process.
struct Proxy {
    gate: Arc<Gate>,
    to_client: mpsc::UnboundedSender<String>,
    to_server: mpsc::UnboundedSender<String>,
    /// Responses the proxy waits for, by JSON-RPC id (canonical JSON): its
    /// own requests, sent under ids of its own ([`proxy_id`]).
    awaited: Mutex<HashMap<String, oneshot::Sender<Value>>>,
    /// Client `tools/list` requests whose results describe the tools.
    listing: Mutex<HashMap<String, ()>>,
    /// Calls being forwarded: the client's id (canonical JSON) to the id the
    /// server knows the call by.
    forwarded: Mutex<HashMap<String, Value>>,
}

impl Proxy {
    fn send_client(&self, msg: &Value) {
        let _ = self.to_client.send(msg.to_string());
    }

    /// Sends `request` to the server and waits for its response.
    async fn ask_server(&self, request: Value) -> Option<Value> {
        let id = request.get("id")?.clone();
        let (tx, rx) = oneshot::channel();
        lock(&self.awaited).insert(id_key(&id), tx);
        let _ = self.to_server.send(request.to_string());
        rx.await.ok()
    }

    /// A message from the client.
    fn on_client_line(self: &Arc<Self>, line: &str) {
        if line.trim().is_empty() {
            return;
        }
        let parsed = serde_json::from_str(line)
            // never forwarded: what the server would make of it is unknown
            .map_err(|e| error_without_id(-32700, &format!("parse error: {e}")))
            .and_then(classify);
        let messages = match parsed {
            Ok(c) => c.messages,
            Err(refusal) => {
                self.send_client(&refusal);
                return;
            }
        };
        // a batch's calls are gated one by one and the rest passed on one by
        // one: the client gets every response on its own line either way
        for incoming in messages {
            match incoming {
                Incoming::Call { id, msg } => {
                    let gate = Arc::clone(&self.gate);
                    let ch = Arc::clone(self);
                    tokio::spawn(gate.gate_call(ch, String::new(), id, msg));
                }
                Incoming::CallNotification => {}
                Incoming::List { id, msg } => {
                    {
                        let mut listing = lock(&self.listing);
                        if listing.len() >= MAX_LISTING {
                            listing.clear();
                        }
                        listing.insert(id_key(&id), ());
                    }
                    let _ = self.to_server.send(msg.to_string());
                }
                Incoming::Cancel {
                    request_id,
                    mut msg,
                } => {
                    if let Some(id) = &request_id {
                        self.gate.cancel("", id);
                        // a call mid-forward is known to the server by the proxy's id
                        if let Some(theirs) = lock(&self.forwarded).get(&id_key(id)) {
                            if let Some(slot) = msg.pointer_mut("/params/requestId") {
                                *slot = theirs.clone();
                            }
                        }
                    }
                    let _ = self.to_server.send(msg.to_string());
                }
                // re-serialized: the server sees exactly what the proxy read
                Incoming::Pass(msg) => {
                    let _ = self.to_server.send(msg.to_string());
                }
            }
        }
    }

    /// A message from the server; `line` goes to the client unchanged unless
    /// the proxy asked for it itself.
    fn on_server_line(&self, line: String) {
        if line.trim().is_empty() {
            return;
        }
        let parsed: Option<Value> = serde_json::from_str(&line).ok();
        if let Some(msg) = &parsed {
            self.gate.observe(msg);
            if let Some(key) = msg.get("id").map(id_key) {
                if is_response_to(msg, &key) {
                    if let Some(waiter) = lock(&self.awaited).remove(&key) {
                        let _ = waiter.send(msg.clone());
                        return;
                    }
                    if lock(&self.listing).remove(&key).is_some() {
                        self.gate.learn_tools(msg);
                    }
                }
            }
        }
        let _ = self.to_client.send(line);
    }
}

impl Channel for Proxy {
    fn notify(&self, msg: Value) {
        self.send_client(&msg);
    }

    async fn reply(&self, msg: Value) {
        self.send_client(&msg);
    }

    async fn forward(&self, mut request: Value) -> Forwarded {
        // under an id of the proxy's: a response the client provokes with an
        // id of its own (a ping reusing the call's id) is never taken for
        // the call's
        let theirs = request.get("id").cloned().unwrap_or(Value::Null);
        let ours = proxy_id("call");
        request["id"] = ours.clone();
        let key = id_key(&theirs);
        lock(&self.forwarded).insert(key.clone(), ours);
        let answered = self.ask_server(request).await;
        lock(&self.forwarded).remove(&key);
        match answered {
            Some(mut response) => {
                response["id"] = theirs;
                self.send_client(&response);
                Forwarded::Answered(response)
            }
            None => Forwarded::Lost(why::stopped()),
        }
    }

    async fn list_tools(&self, envelope: &serde_json::Map<String, Value>) -> Option<Value> {
        let (key, request) = list_request(envelope);
        match tokio::time::timeout(LIST_WAIT, self.ask_server(request)).await {
            Ok(answer) => answer,
            Err(_) => {
                lock(&self.awaited).remove(&key);
                None
            }
        }
    }
}

/// Copies lines from `rx` to `w`, flushing after each, until `rx` closes or
/// `stop` resolves (then `w` is dropped: the other side sees EOF).
async fn write_lines(
    mut rx: mpsc::UnboundedReceiver<String>,
    mut w: impl AsyncWrite + Unpin,
    stop: impl std::future::Future<Output = ()>,
) {
    let mut stop = std::pin::pin!(stop);
    let mut stopped = false;
    loop {
        let line = if stopped {
            // what is already queued still goes out
            rx.try_recv().ok()
        } else {
            tokio::select! {
                biased;
                line = rx.recv() => line,
                () = &mut stop => {
                    stopped = true;
                    rx.try_recv().ok()
                }
            }
        };
        let Some(line) = line else { break };
        let mut bytes = line.into_bytes();
        bytes.push(b'\n');
        if w.write_all(&bytes).await.is_err() || w.flush().await.is_err() {
            break;
        }
    }
}

/// Runs the stdio proxy between `client_in`/`client_out` (the agent) and
/// the server command, until either side closes. Returns the server's exit
/// status.
pub async fn run_stdio(
    client: Client,
    spec: McpSpec,
    client_in: impl AsyncRead + Unpin + Send + 'static,
    client_out: impl AsyncWrite + Unpin + Send + 'static,
) -> Result<i32, McpError> {
    let command = match &spec.server {
        McpServer::Command(command) => command.clone(),
        McpServer::Url(_) => Vec::new(),
    };
    let Some(program) = command.first() else {
        return Err(McpError::NoCommand);
    };
    let mut child = tokio::process::Command::new(program)
        .args(&command[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| McpError::Spawn {
            command: shell_join(&command),
            source,
        })?;
    let (Some(server_in), Some(server_out)) = (child.stdin.take(), child.stdout.take()) else {
        return Err(McpError::Spawn {
            command: shell_join(&command),
            source: std::io::Error::other("no pipes to the server"),
        });
    };
    let (to_client, client_rx) = mpsc::unbounded_channel();
    let (to_server, server_rx) = mpsc::unbounded_channel();
    let gate = Arc::new(Gate::new(spec, client));
    let proxy = Arc::new(Proxy {
        gate: Arc::clone(&gate),
        to_client,
        to_server,
        awaited: Mutex::default(),
        listing: Mutex::default(),
        forwarded: Mutex::default(),
    });
    let client_writer = tokio::spawn(write_lines(client_rx, client_out, std::future::pending()));
    // the server's stdin closes when the client's does, though calls still
    // being gated keep the proxy (and so the channel) alive
    let (close_server, server_closed) = oneshot::channel::<()>();
    tokio::spawn(write_lines(server_rx, server_in, async move {
        let _ = server_closed.await;
    }));
    let from_server = {
        let proxy = Arc::clone(&proxy);
        tokio::spawn(async move {
            let mut lines = BufReader::new(server_out).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                proxy.on_server_line(line);
            }
            // unblock calls waiting on a server that is gone
            lock(&proxy.awaited).clear();
        })
    };
    let from_client = {
        let proxy = Arc::clone(&proxy);
        tokio::spawn(async move {
            let mut lines = BufReader::new(client_in).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                proxy.on_client_line(&line);
            }
        })
    };
    tokio::select! {
        _ = from_client => {
            // the client is gone: let the server see EOF and finish
            let _ = close_server.send(());
            drop(proxy);
        }
        _ = from_server => {}
    }
    let status = child.wait().await;
    // calls still mid-forward have lost their server: their outcomes are
    // recorded (as unknown) before the proxy exits
    gate.stop(GRACE).await;
    client_writer.abort();
    Ok(status.ok().and_then(|s| s.code()).unwrap_or(1))
}
