#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on setup failures
//! The agent gates against real parts: `signoff mcp` in front of the
//! reference MCP servers (`@modelcontextprotocol/server-filesystem` and
//! `server-everything` from npm) and of a protocol 2026-07-28 server
//! written with the official Python MCP SDK (scripts/mcp_modern_server.py),
//! driven by that SDK's clients (scripts/mcp_drive.py); `signoff hook claude-code` fed recorded
//! PreToolUse payloads (tests/fixtures/claude-code). The npm and PyPI parts
//! are installed by scripts/mcp-test-deps.sh into target/mcp-deps.

mod common;

use common::*;
use serde_json::Value;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------- processes

/// The repository root, where the scripts and examples the tests run live.
fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The installed npm servers and Python venv (installed once per run).
fn deps() -> &'static Path {
    static DEPS: OnceLock<PathBuf> = OnceLock::new();
    DEPS.get_or_init(|| {
        let out = Command::new(repo().join("scripts/mcp-test-deps.sh"))
            .stderr(Stdio::inherit())
            .output()
            .expect("run scripts/mcp-test-deps.sh");
        assert!(out.status.success(), "scripts/mcp-test-deps.sh failed");
        let dir = String::from_utf8(out.stdout).unwrap();
        PathBuf::from(dir.trim())
    })
}

/// An npm-installed executable, by name (the servers and the conformance suite).
fn server_bin(name: &str) -> String {
    plain(&deps().join("node_modules/.bin").join(name))
}

/// A process the test started, killed when the test ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sets the gateway's URL and the agent `coder`'s token, as every agent-side process needs.
fn as_coder<'c>(cmd: &'c mut Command, gw: &Gateway) -> &'c mut Command {
    cmd.env("SIGNOFF_URL", &gw.url)
        .env("SIGNOFF_TOKEN", gw.token("coder"))
}

/// Runs `cmd` with `input` on its stdin (how agents feed the hook); its output.
fn run_fed(cmd: &mut Command, input: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

/// `signoff ARGS` over stdio, spoken to in JSON lines as an MCP client does.
struct JsonLines {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: std::io::Lines<BufReader<ChildStdout>>,
}

impl JsonLines {
    /// Starts `cmd` with its stdin and stdout ours.
    fn spawn(cmd: &mut Command) -> JsonLines {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        JsonLines {
            child,
            stdin,
            lines,
        }
    }

    /// Writes one line (`text` may be anything, JSON or not).
    fn send_line(&mut self, text: &str) {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        stdin.write_all(format!("{text}\n").as_bytes()).unwrap();
    }

    /// Writes one JSON message.
    fn send(&mut self, v: Value) {
        self.send_line(&v.to_string());
    }

    /// The next line, as JSON.
    fn next(&mut self) -> Value {
        serde_json::from_str(&self.lines.next().unwrap().unwrap()).unwrap()
    }

    /// Closes our side, as a client that leaves.
    fn close(&mut self) {
        self.stdin = None;
    }

    /// Waits for the process to end (its stdin closed first).
    fn wait(mut self) -> ExitStatus {
        self.close();
        self.child.wait().unwrap()
    }
}

/// Starts `cmd(port)` on a free port and waits until it listens (the
/// servers take seconds to boot); it and its endpoint URL.
fn spawn_listening(what: &str, cmd: impl FnOnce(&str) -> Command) -> (Running, String) {
    let port = free_port();
    let child = cmd(&port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start {what}: {e}"));
    let running = Running(child);
    poll(Duration::from_secs(30), Duration::from_millis(50), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    })
    .unwrap_or_else(|| panic!("{what} did not listen on {port}"));
    (running, format!("http://127.0.0.1:{port}/mcp"))
}

/// server-everything in Streamable HTTP mode; its endpoint URL.
fn everything_over_http() -> (Running, String) {
    spawn_listening("server-everything", |port| {
        let mut cmd = Command::new(server_bin("mcp-server-everything"));
        cmd.arg("streamableHttp").env("PORT", port);
        cmd
    })
}

/// The conformance fixture server (scripts/mcp-conformance-server.mjs) in
/// Streamable HTTP mode, recording every POST it gets into `record` if
/// given; its endpoint URL.
fn conformance_fixture(record: Option<&Path>) -> (Running, String) {
    spawn_listening("the conformance fixture", |port| {
        let mut cmd = Command::new("node");
        cmd.arg(repo().join("scripts/mcp-conformance-server.mjs"))
            .env("MCP_DEPS", deps())
            .env("PORT", port);
        if let Some(record) = record {
            cmd.env("RECORD", record);
        }
        cmd
    })
}

/// scripts/mcp_modern_server.py (the official Python SDK's server) over
/// stdio: the command.
fn modern_server_cmd() -> Vec<String> {
    vec![
        plain(&deps().join("venv/bin/python")),
        plain(&repo().join("scripts/mcp_modern_server.py")),
    ]
}

/// scripts/mcp_modern_server.py in Streamable HTTP mode; its endpoint URL.
fn modern_server_over_http() -> (Running, String) {
    spawn_listening("the modern server", |port| {
        let mut args = modern_server_cmd();
        let mut cmd = Command::new(args.remove(0));
        cmd.args(args).args(["--http", port]);
        cmd
    })
}

/// `signoff mcp --name NAME --wait 1s -- SERVER…`: a stdio server behind the proxy.
fn proxied(name: &str, server: Vec<String>) -> Vec<String> {
    let mut cmd = vec![
        BIN.to_owned(),
        "mcp".into(),
        "--name".into(),
        name.into(),
        "--wait".into(),
        "1s".into(),
        "--".into(),
    ];
    cmd.extend(server);
    cmd
}

/// What mcp_drive.py takes after `--` to reach a Streamable HTTP endpoint.
fn over_http(url: &str) -> Vec<String> {
    vec!["--url".into(), url.into()]
}

/// `signoff mcp --listen 127.0.0.1:0 --upstream URL` as `coder`; the URL it
/// prints.
fn http_proxy(gw: &Gateway, name: &str, upstream: &str, wait: &str) -> (Running, String) {
    let mut child = as_coder(Command::new(BIN).args(["mcp", "--name", name]), gw)
        .args([
            "--wait",
            wait,
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            upstream,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let running = Running(child);
    let url = line
        .trim()
        .strip_prefix("signoff mcp listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
        .to_owned();
    assert!(
        url.starts_with("http://127.0.0.1:") && url.ends_with("/mcp"),
        "{url}"
    );
    (running, url)
}

/// Runs scripts/mcp_drive.py HEAD… -- TARGET… as the agent `coder`; its JSON.
fn drive(gw: &Gateway, head: &[&str], target: Vec<String>) -> Value {
    let python = deps().join("venv/bin/python");
    let out = as_coder(
        Command::new(python)
            .arg(repo().join("scripts/mcp_drive.py"))
            .args(head)
            .arg("--")
            .args(&target),
        gw,
    )
    .env("REVIEWER_TOKEN", gw.token("alice"))
    .output()
    .expect("run mcp_drive.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "mcp_drive.py {head:?} -- {target:?} failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{stdout}\nstderr:\n{stderr}"))
}

// ---------------------------------------------------------------- raw HTTP

/// The body is JSON (every MCP POST says so).
const JSON: (&str, &str) = ("Content-Type", "application/json");
/// What a Streamable HTTP client accepts.
const ACCEPT: (&str, &str) = ("Accept", "application/json, text/event-stream");
/// A handshake-era `initialize` (id 0), to open a session by hand.
const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#;

/// One HTTP/1.1 exchange over a plain socket, so that every header is
/// exactly what the test says: the headers given (Host only if they do not
/// name one; Content-Length and Connection always), the status, the
/// response head and its body (de-chunked). With `head_only`, stops after
/// the head (for a stream that stays open).
fn raw(
    url: &str,
    method: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    head_only: bool,
) -> (u16, String, String) {
    let rest = url.strip_prefix("http://").unwrap();
    let (addr, path) = rest.split_once('/').unwrap();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!("{method} /{path} HTTP/1.1\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: {addr}\r\n"));
    }
    req.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n",
        body.len()
    ));
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    // a refused body may be answered before it is all written
    let _ = s.write_all(&bytes);
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
        if head_only && got.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let text = String::from_utf8_lossy(&got).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {text:?}"));
    let mut body = body.to_owned();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
        && !head_only
    {
        let mut plain = String::new();
        let mut rest = body.as_str();
        while let Some((size, after)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 || after.len() < n {
                break;
            }
            plain.push_str(&after[..n]);
            rest = after[n..].trim_start_matches("\r\n");
        }
        body = plain;
    }
    (status, head.to_owned(), body)
}

/// `base` with each header of `extra` in place of those of the same name,
/// so that a test can vary one header of an otherwise valid request.
fn merged<'a>(
    base: &[(&'a str, &'a str)],
    extra: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    let mut h = base.to_vec();
    h.retain(|(k, _)| !extra.iter().any(|(e, _)| e.eq_ignore_ascii_case(k)));
    h.extend_from_slice(extra);
    h
}

/// A JSON-RPC POST as a Streamable HTTP client sends it (JSON, accepting
/// JSON or a stream), `extra` headers added or in place of those.
fn post_json(url: &str, extra: &[(&str, &str)], body: &str) -> (u16, String, String) {
    raw(
        url,
        "POST",
        &merged(&[JSON, ACCEPT], extra),
        body.as_bytes(),
        false,
    )
}

/// The session a response head opens (`Mcp-Session-Id`).
fn session_id(head: &str) -> String {
    head.lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .starts_with("mcp-session-id:")
                .then(|| l.split_once(':').unwrap().1.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("no session: {head}"))
}

/// The JSON-RPC messages of a body: one JSON value, or the `data` lines of
/// an event stream.
fn messages_of(body: &str) -> Vec<Value> {
    let one = |v: Value| match v {
        Value::Array(items) => items,
        one => vec![one],
    };
    if let Ok(v) = serde_json::from_str::<Value>(body.trim()) {
        return one(v);
    }
    body.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
        .flat_map(one)
        .collect()
}

/// The response to `id` among `msgs`.
fn response_in(msgs: &[Value], id: i64) -> Value {
    msgs.iter()
        .find(|m| m["id"] == id && m.get("method").is_none())
        .cloned()
        .unwrap_or_else(|| panic!("no response to {id} in {msgs:#?}"))
}

// ---------------------------------------------------------------- gateways

/// A policy that allows every call, for tests of what the proxy forwards.
const ALLOW_ALL: &str = "@id(\"allow\")\npermit(principal, action, resource);\n";

/// Registers the agent `coder` (owner olga) bound to `gate`, with `attrs`.
fn add_coder(gw: &mut Gateway, gate: &str, attrs: &[&str]) {
    let mut args = vec!["agent", "coder", "--owner", "olga", "--gate", gate];
    args.extend_from_slice(attrs);
    gw.add_principal("coder", &args);
}

/// A gateway whose policy directory holds exactly `files` (name, text),
/// with the agent `coder` bound to `gate`: each test says its own policy.
fn gateway_with(files: &[(&str, &str)], gate: &str, attrs: &[&str]) -> Gateway {
    let mut gw = Gateway::start(Backend::Sqlite);
    std::fs::remove_file(gw.policies.join("test.cedar")).unwrap();
    for (name, text) in files {
        std::fs::write(gw.policies.join(name), text).unwrap();
    }
    gw.post_as("root", "/v1/policy/reload", serde_json::json!({}))
        .expect(200);
    add_coder(&mut gw, gate, attrs);
    gw
}

/// A gateway running the shipped agent policy (examples/agents), with
/// `catalog` as its resource catalog, an `mcp.everything` permit for the
/// pass-through checks, and the agent `coder` (registered for the
/// workspace) bound to `gate`.
fn agent_gateway(catalog: &str, gate: &str) -> Gateway {
    let agents = std::fs::read_to_string(repo().join("examples/agents/agents.cedar")).unwrap();
    gateway_with(
        &[
            ("agents.cedar", &agents),
            ("catalog.toml", catalog),
            (
                "everything.cedar",
                "@id(\"everything-allowed\")\npermit(principal, action in Action::\"mcp.everything\", resource);\n",
            ),
        ],
        gate,
        &["--attr", "environments=workspace"],
    )
}

/// A gateway for server-everything behind the HTTP proxy (`mcp.remote.*`):
/// echo and the long-running operation are allowed, get-sum waits for one
/// SRE, get-env is forbidden.
fn remote_gateway() -> Gateway {
    const POLICY: &str = r#"
@id("remote-routine")
permit(principal, action in [
  Action::"mcp.remote.echo", Action::"mcp.remote.trigger-long-running-operation"
], resource);

@id("remote-sum-waits")
@approval("sre:1")
permit(principal, action == Action::"mcp.remote.get-sum", resource);

@id("remote-no-env")
@reason("the server's environment holds its secrets")
forbid(principal, action == Action::"mcp.remote.get-env", resource);
"#;
    gateway_with(&[("remote.cedar", POLICY)], "mcp", &[])
}

/// A gateway for the notes server behind the proxy (`mcp.notes.*`): reads
/// and tagging are allowed; writes wait for one SRE; deleting is allowed to
/// ask the user why, and the continuation that carries the answer waits
/// for one SRE; wiping every note is forbidden.
fn notes_gateway() -> Gateway {
    const POLICY: &str = r#"
@id("notes-routine")
permit(principal, action in [Action::"mcp.notes.read_note", Action::"mcp.notes.tag_note"], resource);

@id("notes-writes-wait")
@approval("sre:1")
permit(principal, action == Action::"mcp.notes.write_note", resource);

@id("notes-delete-asks")
permit(principal, action == Action::"mcp.notes.delete_note", resource)
unless { context has input_responses_json };

@id("notes-delete-answered-waits")
@approval("sre:1")
@reason("a note is deleted for the reason the user gave")
permit(principal, action == Action::"mcp.notes.delete_note", resource)
when { context has input_responses_json && context has request_state };

@id("notes-no-wipe")
@reason("wiping every note is never allowed")
forbid(principal, action == Action::"mcp.notes.wipe_notes", resource);
"#;
    gateway_with(&[("notes.cedar", POLICY)], "mcp", &[])
}

/// The requests for `action`, newest first.
fn requests_for(gw: &Gateway, action: &str) -> Vec<Value> {
    gw.get_as("root", &format!("/v1/requests?action={action}"))
        .expect(200)["requests"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The request once its outcome is recorded (the proxy reports it after
/// the client has its answer).
fn poll_outcome(gw: &Gateway, id: &str) -> Value {
    poll(Duration::from_secs(10), Duration::from_millis(50), || {
        let view = gw.request(id);
        view["outcome"].is_object().then_some(view)
    })
    .unwrap_or_else(|| panic!("no outcome: {:#}", gw.request(id)))
}

/// The newest request for `action` once its outcome is recorded.
fn latest_outcome(gw: &Gateway, action: &str) -> Value {
    let newest = &requests_for(gw, action)[0];
    poll_outcome(gw, newest["id"].as_str().unwrap())
}

/// The calls of `events` whose outcome was recorded (each a gated tools/call).
fn outcomes_recorded(events: &[Value]) -> usize {
    events
        .iter()
        .filter(|e| e["kind"] == "outcome_recorded")
        .count()
}

// ---------------------------------------------------------------- shared checks

/// What a handshake-era client sees of server-everything through the
/// proxy, over stdio or HTTP: everything passes through.
fn check_passes_through(out: &Value) {
    // the SDK's handshake-era client: the newest version with `initialize`
    assert_eq!(out["protocol_version"], "2025-11-25", "{out:#}");
    assert!(!out["prompts"].as_array().unwrap().is_empty(), "{out:#}");
    assert!(out["resources"].as_u64().unwrap() > 0, "{out:#}");
    assert_eq!(out["resource_read"], 1, "{out:#}");
    assert_eq!(out["prompt_messages"], 1, "{out:#}");
    assert_eq!(out["echo"]["isError"], false, "{out:#}");
    assert_eq!(out["long"]["isError"], false, "{out:#}");
}

/// A gated call's first answer: a readable tool error saying it waits for
/// one SRE and did not run.
fn assert_waits_for_sre(first: &Value) {
    assert_eq!(first["isError"], true, "{first:#}");
    let text = first["text"].as_str().unwrap();
    assert!(
        text.contains("waiting for approval from sre:1") && text.contains("has NOT run"),
        "{text}"
    );
}

/// A refused call's answer: a readable tool error naming the policy `id`.
fn assert_forbidden_by(answer: &Value, id: &str) {
    assert_eq!(answer["isError"], true, "{answer:#}");
    let text = answer["text"].as_str().unwrap();
    assert!(text.contains(id), "{text}");
}

#[test]
fn filesystem_server_behind_the_proxy() {
    let root = tempfile::tempdir().unwrap();
    let root_path = std::fs::canonicalize(root.path()).unwrap();
    let root_s = plain(&root_path);
    let ws = root_path.join("workspace");
    std::fs::create_dir_all(&ws).unwrap();
    std::fs::create_dir_all(root_path.join("outside")).unwrap();
    std::fs::write(ws.join("hello.txt"), "hello").unwrap();
    std::fs::write(ws.join(".env"), "SECRET=1").unwrap();
    let catalog = format!(
        "[[resource]]\npattern = \"*/.env\"\nclassification = \"secret\"\n\n\
         [[resource]]\npattern = \"{root_s}/workspace/*\"\nenvironment = \"workspace\"\n"
    );
    let gw = agent_gateway(&catalog, "mcp");

    let out = drive(
        &gw,
        &["fs", &root_s],
        proxied(
            "fs",
            vec![server_bin("mcp-server-filesystem"), root_s.clone()],
        ),
    );

    let tools: Vec<&str> = out["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        tools.contains(&"write_file") && tools.contains(&"read_text_file"),
        "{out:#}"
    );
    assert_eq!(out["read"]["isError"], false, "{out:#}");
    assert_eq!(out["read"]["text"], "hello", "{out:#}");
    assert_eq!(out["write_in_workspace"]["isError"], false, "{out:#}");
    assert_eq!(
        std::fs::read_to_string(ws.join("new.txt")).unwrap(),
        "from the agent"
    );

    // outside the workspace: waits, is answered as a readable tool result
    assert_waits_for_sre(&out["write_outside_first"]);
    let rid = out["write_outside_request"].as_str().expect("a request id");
    assert_eq!(out["exists_before_approval"], false, "{out:#}");
    // a client that asked for progress hears that the call waits, and for whom
    let heard = out["waiting_progress"].to_string();
    assert!(heard.contains("waiting for approval from sre:1"), "{heard}");
    assert!(heard.contains(rid), "{heard}");
    // other arguments are another request
    let other = out["write_outside_changed_request"].as_str().unwrap();
    assert_ne!(rid, other);
    assert_eq!(gw.request(other)["status"], "pending");
    // the retry with the same arguments claimed the approval and ran
    assert_eq!(out["approved_status"], 200, "{out:#}");
    assert_eq!(out["write_outside_retry"]["isError"], false, "{out:#}");
    assert_eq!(
        std::fs::read_to_string(root_path.join("outside/out.txt")).unwrap(),
        "approved content"
    );
    let view = gw.request(rid);
    assert_eq!(view["status"], "executed", "{view:#}");
    assert_eq!(view["gate"], "mcp");
    assert_eq!(view["action"], "mcp.fs.write_file");
    assert_eq!(view["resource"], format!("{root_s}/outside/out.txt"));
    let ctx = &view["context"];
    assert_eq!(ctx["mcp"]["tool"], "write_file");
    assert!(
        ctx["mcp"]["server"]["command"]
            .as_str()
            .unwrap()
            .contains("mcp-server-filesystem"),
        "{ctx:#}"
    );
    assert!(
        ctx["mcp"]["description"].as_str().is_some(),
        "reviewers see the tool's description: {ctx:#}"
    );
    assert!(ctx["mcp"]["server_hints"].is_object(), "{ctx:#}");
    assert!(ctx["call"].as_str().unwrap().starts_with("write_file("));
    let outcome = &view["outcome"];
    assert_eq!(outcome["exit_code"], 0, "{view:#}");
    assert_eq!(outcome["output_sha256"].as_str().unwrap().len(), 64);

    // forbidden: a tool error naming the policy, never a protocol error
    assert_forbidden_by(&out["forbidden"], "agent-no-secrets");
}

#[test]
fn everything_server_passes_through() {
    let gw = agent_gateway("", "mcp");
    let out = drive(
        &gw,
        &["everything"],
        proxied("everything", vec![server_bin("mcp-server-everything")]),
    );
    check_passes_through(&out);
    assert!(out["tools"].as_array().unwrap().len() > 3, "{out:#}");
    assert!(out["echo"]["text"]
        .as_str()
        .unwrap()
        .starts_with("Echo: hi"));
    // the server's own progress notifications reach the client
    assert_eq!(out["progress"].as_array().unwrap().len(), 3, "{out:#}");
    assert!(
        outcomes_recorded(&gw.events()) >= 2,
        "every tools/call is a request whose outcome is recorded"
    );
}

/// Runs the hook on a fixture as `coder`; the decision and its reason.
fn hook(gw: &Gateway, fixture: &str) -> (String, String) {
    let input = std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/claude-code")
            .join(fixture),
    )
    .unwrap();
    let out = run_fed(
        as_coder(
            Command::new(BIN).args(["hook", "claude-code", "--wait", "1s"]),
            gw,
        ),
        &input,
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("hook output is not JSON ({e}): {out:?}"));
    let h = &v["hookSpecificOutput"];
    assert_eq!(h["hookEventName"], "PreToolUse");
    (
        h["permissionDecision"].as_str().unwrap().to_owned(),
        h["permissionDecisionReason"].as_str().unwrap().to_owned(),
    )
}

#[test]
fn claude_code_hook_on_recorded_payloads() {
    let catalog = std::fs::read_to_string(repo().join("examples/agents/catalog.toml")).unwrap();
    let gw = agent_gateway(&catalog, "claude-code");

    for allowed in ["read.json", "write_workspace.json", "mcp_fs_read.json"] {
        let (d, why) = hook(&gw, allowed);
        assert_eq!(d, "allow", "{allowed}: {why}");
    }
    let (d, why) = hook(&gw, "bash_rm_rf.json");
    assert_eq!(d, "deny");
    assert!(why.contains("agent-no-rm-rf"), "{why}");
    let (d, why) = hook(&gw, "mcp_fs_read_secret.json");
    assert_eq!(d, "deny");
    assert!(why.contains("agent-no-secrets"), "{why}");

    // needs approval: denied while waiting, allowed on the retry once approved
    let (d, why) = hook(&gw, "edit_outside.json");
    assert_eq!(d, "deny");
    assert!(why.contains("waiting for approval"), "{why}");
    let id = request_id_in(&why).expect("the reason names the request");
    let (d, again) = hook(&gw, "edit_outside.json");
    assert_eq!(d, "deny");
    assert_eq!(
        request_id_in(&again).as_deref(),
        Some(id.as_str()),
        "the retry finds the same request"
    );
    gw.review("alice", &id, "approve", None).expect(200);
    let (d, why) = hook(&gw, "edit_outside.json");
    assert_eq!(d, "allow", "{why}");
    assert_eq!(gw.request(&id)["status"], "executed");
    // an approval runs once: the next identical call asks anew
    let (d, why) = hook(&gw, "edit_outside.json");
    assert_eq!(d, "deny");
    assert_ne!(request_id_in(&why).as_deref(), Some(id.as_str()), "{why}");

    let (d, why) = hook(&gw, "bash_cargo_test.json");
    assert_eq!(d, "deny");
    assert!(why.contains("waiting for approval"), "{why}");
    let view = gw.request(&request_id_in(&why).unwrap());
    assert_eq!(view["action"], "claude.bash");
    assert_eq!(view["context"]["command"], "cargo test");
    assert_eq!(view["justification"], "Run the tests");
}

#[test]
fn claude_code_hook_fails_closed() {
    // nothing listens on port 1
    let out = run_fed(
        Command::new(BIN)
            .args(["hook", "claude-code", "--url", "http://127.0.0.1:1"])
            .env("SIGNOFF_TOKEN", "so_nothing"),
        br#"{"hook_event_name":"PreToolUse","tool_name":"Read","tool_input":{"file_path":"/a"}}"#,
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["hookSpecificOutput"]["permissionDecision"], "deny", "{v}");
}

#[test]
fn agent_policy_table_passes() {
    let out = run_signoff(&[
        "policy",
        "test",
        &plain(&repo().join("examples/agents/tests.toml")),
    ]);
    assert_eq!(out.code, 0, "{out}");
    assert!(out.stdout.contains("9 passed, 0 failed"), "{out}");
}

/// With `cat` as the "server", what the proxy forwards comes straight back:
/// ordinary messages pass, unparseable lines never reach the server, and
/// the proxy ends when the client closes its side.
#[test]
fn relay_forwards_rejects_garbage_and_ends_with_the_client() {
    let mut proxy = JsonLines::spawn(
        Command::new(BIN)
            .args([
                "mcp",
                "--name",
                "echo",
                "--url",
                "http://127.0.0.1:1",
                "--",
                "cat",
            ])
            .env("SIGNOFF_TOKEN", "so_unused"),
    );
    proxy.send_line("this is not json");
    let first = proxy.next();
    assert_eq!(first["error"]["code"], -32700, "{first}");
    // a call nested in a batch, an empty batch: refused whole, nothing
    // forwarded (cat would echo it before the ping below)
    for bad in [
        r#"[[{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"rm"}}]]"#,
        "[]",
    ] {
        proxy.send_line(bad);
        let refused = proxy.next();
        assert_eq!(refused["error"]["code"], -32600, "{refused}");
    }
    proxy.send(serde_json::json!({"jsonrpc":"2.0","id":7,"method":"ping"}));
    let echoed = proxy.next();
    assert_eq!(echoed["method"], "ping");
    assert_eq!(echoed["id"], 7);
    // a tools/call with the gateway unreachable: a tool error, nothing forwarded
    proxy.send(serde_json::json!({"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"rm","arguments":{"path":"/"}}}));
    // the proxy first asks the "server" for its tools; cat answers with the
    // request itself, which is no tools list
    let answer = loop {
        let v = proxy.next();
        assert_ne!(v["method"], "tools/call", "a call was forwarded: {v}");
        if v["id"] == 8 {
            break v;
        }
    };
    assert_eq!(answer["result"]["isError"], true, "{answer}");
    let status = proxy.wait();
    assert!(status.success(), "{status:?}");
}

#[test]
fn a_malformed_wait_is_the_callers_to_fix() {
    let out = run_signoff(&["mcp", "--name", "x", "--wait", "soon", "--", "cat"]);
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stderr.contains("--wait"), "{out}");
}

#[test]
fn remote_server_behind_the_http_proxy() {
    let gw = remote_gateway();
    let (mut upstream, upstream_url) = everything_over_http();
    let (_proxy, url) = http_proxy(&gw, "remote", &upstream_url, "5s");
    let out = drive(&gw, &["remote"], over_http(&url));

    // pass-through: tools, prompts, resources, the server's own progress
    check_passes_through(&out);
    let tools = out["tools"].to_string();
    assert!(
        tools.contains("\"echo\"") && tools.contains("\"get-sum\""),
        "{out:#}"
    );
    assert_eq!(out["echo"]["text"], "Echo: hi over http", "{out:#}");
    assert_eq!(
        out["server_progress"].as_array().unwrap().len(),
        3,
        "{out:#}"
    );

    // approved while it waited: the same call ran, after progress notes
    let rid = out["sum_in_flight_request"]
        .as_str()
        .expect("a request id in the progress notes");
    assert_eq!(out["approved_in_flight_status"], 200, "{out:#}");
    assert_eq!(out["sum_in_flight"]["isError"], false, "{out:#}");
    assert_eq!(
        out["sum_in_flight"]["text"], "The sum of 2 and 3 is 5.",
        "{out:#}"
    );
    let notes = out["sum_in_flight_notes"].to_string();
    assert!(notes.contains("waiting for approval from sre:1"), "{notes}");
    let view = gw.request(rid);
    assert_eq!(view["status"], "executed", "{view:#}");
    assert_eq!(view["action"], "mcp.remote.get-sum");
    assert_eq!(view["gate"], "mcp");
    assert_eq!(
        view["context"]["mcp"]["server"]["url"],
        upstream_url.as_str()
    );
    assert!(
        view["context"]["mcp"]["description"].as_str().is_some(),
        "reviewers see the tool's description: {view:#}"
    );
    assert_eq!(view["outcome"]["exit_code"], 0, "{view:#}");
    assert_eq!(view["outcome"]["output_sha256"].as_str().unwrap().len(), 64);
    let approvals: Vec<&Value> = view["reviews"].as_array().unwrap().iter().collect();
    assert_eq!(approvals.len(), 1);
    assert_eq!(approvals[0]["reviewer"], "alice");

    // no progress token: after --wait a readable tool result, then the retry runs
    assert_waits_for_sre(&out["sum_waiting"]);
    assert_eq!(out["sum_approved_status"], 200, "{out:#}");
    assert_eq!(out["sum_retry"]["isError"], false, "{out:#}");
    assert_eq!(
        out["sum_retry"]["text"], "The sum of 4 and 5 is 9.",
        "{out:#}"
    );
    let waited = out["sum_waiting_request"].as_str().unwrap();
    assert_eq!(gw.request(waited)["status"], "executed");

    // forbidden: a tool error naming the policy
    assert_forbidden_by(&out["forbidden"], "remote-no-env");

    // DNS rebinding: a foreign Origin or Host is refused before anything is forwarded
    let ping = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    let (status, _, body) = post_json(&url, &[("Origin", "http://evil.example.com")], ping);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("evil.example.com"), "{body}");
    let (status, _, body) = post_json(&url, &[("Host", "evil.example.com")], ping);
    assert_eq!(status, 403, "{body}");
    // a local origin reaches the server: it initializes a session
    let (status, head, body) = post_json(&url, &[("Origin", "http://localhost:3000")], INITIALIZE);
    assert_eq!(status, 200, "a local origin passes: {head}\n{body}");
    let answer = response_in(&messages_of(&body), 0);
    assert!(
        answer["result"]["serverInfo"]["name"].is_string(),
        "{answer}"
    );

    // the upstream is gone: the call is answered with a tool error, nothing runs
    drop(std::mem::replace(
        &mut upstream,
        Running(Command::new("true").spawn().unwrap()),
    ));
    let call = r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"echo","arguments":{"message":"nobody hears"}}}"#;
    let (status, head, body) = post_json(&url, &[], call);
    assert_eq!(status, 200, "{head}\n{body}");
    let answer: Value = serde_json::from_str(body.trim())
        .unwrap_or_else(|e| panic!("not one JSON response ({e}): {head}\n{body}"));
    assert_eq!(answer["id"], 9, "{answer}");
    assert_eq!(answer["result"]["isError"], true, "{answer}");
    let why = answer["result"]["content"][0]["text"].as_str().unwrap();
    assert!(why.contains("could not be reached"), "{why}");
    let rid = request_id_in(why).expect("the answer names the request");
    let view = poll_outcome(&gw, &rid);
    assert_eq!(view["outcome"]["exit_code"], Value::Null, "{view:#}");
    let summary = view["outcome"]["summary"].as_str().unwrap();
    assert!(
        summary.contains("not run")
            && summary.contains("could not be reached")
            && summary.contains(&upstream_url),
        "{summary}"
    );
}

/// Runs the conformance suite's server scenarios (`@modelcontextprotocol/
/// conformance`, every suite) against `url`: per scenario, the status of
/// each check that is not informational.
fn conformance(url: &str, out: &Path) -> std::collections::BTreeMap<String, Vec<(String, String)>> {
    let run = Command::new(server_bin("conformance"))
        .args(["server", "--url", url, "--suite", "all", "-o"])
        .arg(out)
        .stdin(Stdio::null())
        .output()
        .expect("run the conformance suite");
    // it exits 1 when any check fails; what failed is compared below
    let mut results = std::collections::BTreeMap::new();
    for entry in std::fs::read_dir(out).unwrap() {
        let dir = entry.unwrap().path();
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        // server-SCENARIO-2026-12-06T09-28-12-193Z
        let scenario = name
            .rsplitn(7, '-')
            .last()
            .and_then(|s| s.strip_prefix("server-"))
            .unwrap_or_else(|| panic!("unexpected result directory {name}"))
            .to_owned();
        let checks: Value =
            serde_json::from_slice(&std::fs::read(dir.join("checks.json")).unwrap()).unwrap();
        let mut statuses: Vec<(String, String)> = checks
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["status"] != "INFO")
            .map(|c| {
                (
                    c["id"].as_str().unwrap().to_owned(),
                    c["status"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        statuses.sort();
        results.insert(scenario, statuses);
    }
    assert!(
        results.len() > 20,
        "the suite ran {} scenarios\nstdout:\n{}\nstderr:\n{}",
        results.len(),
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    results
}

/// Runs the suite against `upstream` bare and through an HTTP proxy named
/// `name` on `gw`, requires the same status for every check, and returns
/// the number of checks that passed bare and a table of both.
fn compare_through_proxy(gw: &Gateway, name: &str, upstream: &str, work: &Path) -> (usize, String) {
    let bare = conformance(upstream, &work.join(format!("{name}-bare")));
    let (_proxy, url) = http_proxy(gw, name, upstream, "5s");
    let proxied = conformance(&url, &work.join(format!("{name}-proxied")));
    let mut table = String::new();
    for (scenario, checks) in &bare {
        let through = proxied
            .get(scenario)
            .unwrap_or_else(|| panic!("{name}: {scenario} did not run through the proxy"));
        let summary = |c: &[(String, String)]| {
            c.iter()
                .map(|(id, s)| format!("{id}={s}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        table.push_str(&format!(
            "{name} {scenario}: bare [{}] proxied [{}]\n",
            summary(checks),
            summary(through)
        ));
        if scenario == "dns-rebinding-protection" {
            assert!(
                through.iter().all(|(_, s)| s == "SUCCESS"),
                "{name}: the proxy refuses a foreign Host/Origin and accepts a local one: {through:?}"
            );
            continue;
        }
        assert_eq!(
            checks, through,
            "{name}: {scenario} differs through the proxy"
        );
    }
    assert_eq!(bare.len(), proxied.len(), "{name}");
    let passed = bare
        .values()
        .flatten()
        .filter(|(_, s)| s == "SUCCESS")
        .count();
    (passed, table)
}

/// The MCP conformance suite's server scenarios give the same results
/// against a server bare and behind the HTTP proxy with a policy that
/// allows every call — server-everything, and the fixture server that
/// implements every scenario (sampling, elicitation, logging and progress
/// on a gated call's stream, resumption): the proxy changes nothing a
/// client can see, except that it refuses DNS rebinding, which neither
/// bare server does.
#[test]
fn conformance_suite_sees_no_difference_through_the_http_proxy() {
    let work = tempfile::tempdir().unwrap();
    let gw = gateway_with(&[("allow.cedar", ALLOW_ALL)], "mcp", &[]);

    let (_everything, everything_url) = everything_over_http();
    let (passed, table) = compare_through_proxy(&gw, "everything", &everything_url, work.path());
    eprintln!("{table}");
    assert!(
        passed >= 10,
        "too few checks pass on server-everything:\n{table}"
    );

    let (_fixture, fixture_url) = conformance_fixture(None);
    let (passed, table) = compare_through_proxy(&gw, "fixture", &fixture_url, work.path());
    eprintln!("{table}");
    assert!(
        passed >= 40,
        "too few checks pass on the fixture server:\n{table}"
    );

    // the calls really went through the gate
    let events = gw.events();
    let outcomes = outcomes_recorded(&events);
    assert!(outcomes >= 15, "{outcomes} gated calls recorded");
    let sampled = events
        .iter()
        .any(|e| e.to_string().contains("mcp.fixture.test_sampling"));
    assert!(sampled, "the sampling call was gated");
}

/// What the recording fixture received: every POST, as JSON lines.
fn recorded(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The `tools/call` requests the fixture received: (tool, params).
fn calls_received(path: &Path) -> Vec<(String, Value)> {
    recorded(path)
        .iter()
        .filter_map(|r| serde_json::from_str::<Value>(r["body"].as_str()?).ok())
        .flat_map(|b| match b {
            Value::Array(items) => items,
            one => vec![one],
        })
        .filter(|m| m["method"] == "tools/call")
        .map(|m| {
            (
                m["params"]["name"].as_str().unwrap().to_owned(),
                m["params"].clone(),
            )
        })
        .collect()
}

/// The HTTP proxy in front of a server that records every byte it gets:
/// what is refused never reaches it, a gated call (a multi-round-trip
/// continuation too) reaches it with exactly the approved parameters and
/// UTF-8 JSON, and a call that may have reached
/// it without an answer is recorded as of unknown outcome.
#[test]
fn http_proxy_forwards_only_what_it_gated() {
    let no_errors = format!(
        "{ALLOW_ALL}@id(\"no-errors\")\n@reason(\"not this one\")\n\
         forbid(principal, action == Action::\"mcp.guard.test_error_handling\", resource);\n"
    );
    let gw = gateway_with(&[("test.cedar", &no_errors)], "mcp", &[]);
    let work = tempfile::tempdir().unwrap();
    let record = work.path().join("received.jsonl");
    let (_fixture, upstream) = conformance_fixture(Some(&record));
    let (_proxy, url) = http_proxy(&gw, "guard", &upstream, "5s");

    // a session, through the proxy
    let (status, head, body) = post_json(&url, &[], INITIALIZE);
    assert_eq!(status, 200, "{head}\n{body}");
    let sid = session_id(&head);
    let session: (&str, &str) = ("Mcp-Session-Id", &sid);
    let in_session = [session, ("MCP-Protocol-Version", "2025-06-18")];
    let post =
        |extra: &[(&str, &str)], body: &str| post_json(&url, &merged(&in_session, extra), body);
    let (status, _, _) = post(
        &[],
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    );
    assert_eq!(status, 202);
    let received_before = recorded(&record).len();

    // M1: a body in another charset could say another thing to the server
    // (in UTF-7 this ping is a tools/call to a server that honours the
    // charset): refused, never forwarded
    let smuggled = r#"{"id":1,"jsonrpc":"2.0","method":"ping","x":"+ACI-,+ACI-method+ACI-:+ACI-tools/call+ACI-"}"#;
    let (status, _, body) = post(
        &[("Content-Type", "application/json; charset=utf-7")],
        smuggled,
    );
    assert_eq!(status, 415, "{body}");
    assert!(body.contains("utf-7"), "{body}");
    let (status, _, body) = post(&[("Content-Type", "text/plain")], smuggled);
    assert_eq!(status, 415, "{body}");
    // M2: a batch element that is itself a batch, an empty batch, a non-object
    let call = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"test_simple_text","arguments":{}}}"#;
    for bad in [
        format!("[[{call}]]"),
        "[]".to_owned(),
        r#"["x"]"#.to_owned(),
    ] {
        let (status, _, body) = post(&[], &bad);
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(
            messages_of(&body)[0]["error"]["code"],
            -32600,
            "{bad}: {body}"
        );
    }
    // M3: what the proxy does not gate (task augmentation) is refused
    let body = r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"test_simple_text","arguments":{},"task":{"ttl":1000}}}"#;
    let (status, _, answer) = post(&[], body);
    assert_eq!(status, 200, "{answer}");
    let answer = &messages_of(&answer)[0];
    assert_eq!(answer["error"]["code"], -32602, "{answer}");
    assert!(answer.to_string().contains("cannot gate"), "{answer}");
    // headers that mirror the body must agree with it
    let (status, _, body) = post(&[("Mcp-Method", "tools/call"), ("Mcp-Name", "other")], call);
    assert_eq!(status, 400, "{body}");
    assert_eq!(messages_of(&body)[0]["error"]["code"], -32020, "{body}");
    // a denied call: a tool error naming the policy
    let denied = r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"test_error_handling","arguments":{}}}"#;
    let (status, _, body) = post(&[], denied);
    assert_eq!(status, 200, "{body}");
    let answer = &messages_of(&body)[0];
    assert_eq!(answer["result"]["isError"], true, "{answer}");
    assert!(answer.to_string().contains("no-errors"), "{answer}");
    // the 16 MiB limit
    let huge = format!(
        r#"{{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{{"name":"test_simple_text","arguments":{{"x":"{}"}}}}}}"#,
        "a".repeat(17 * 1024 * 1024)
    );
    let (status, _, _) = post(&[], &huge);
    assert_eq!(status, 413);
    // (the proxy's own tools/list, to describe the denied tool, did)
    let since: Vec<Value> = recorded(&record)[received_before..]
        .iter()
        .filter(|r| {
            !r["body"]
                .as_str()
                .unwrap()
                .contains("\"method\":\"tools/list\"")
        })
        .cloned()
        .collect();
    assert!(
        since.is_empty(),
        "nothing refused reached the server: {since:#?}"
    );

    // an allowed call reaches the server as the proxy's own UTF-8 JSON, with
    // exactly the approved parameters (and the client's progress token)
    let allowed = r#"{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"test_simple_text","arguments":{},"_meta":{"progressToken":"p6","smuggled":1},"extra":true}}"#;
    let (status, _, body) = post(
        &[
            ("Content-Type", "application/json; charset=UTF-8"),
            ("Mcp-Method", "tools/call"),
            ("Mcp-Name", "test_simple_text"),
        ],
        allowed,
    );
    assert_eq!(status, 200, "{body}");
    let answer = response_in(&messages_of(&body), 6);
    assert_eq!(
        answer["result"]["content"][0]["text"], "This is a simple text response for testing.",
        "{body}"
    );
    let got = recorded(&record);
    let last = got.last().unwrap();
    assert_eq!(last["contentType"], "application/json", "{last}");
    let params = &serde_json::from_str::<Value>(last["body"].as_str().unwrap()).unwrap()["params"];
    assert_eq!(
        params,
        &serde_json::json!({"name": "test_simple_text", "arguments": {}, "_meta": {"progressToken": "p6"}}),
    );

    // a multi-round-trip continuation: the client's answers, the server's
    // state and the protocol envelope are bound into the request and
    // forwarded exactly; other `_meta` keys and unknown fields are not
    let continuation = r#"{"jsonrpc":"2.0","id":12,"method":"tools/call","params":{"name":"test_simple_text","arguments":{},"inputResponses":{"ask":{"action":"accept","content":{"reason":"because"}}},"requestState":"opaque-1","_meta":{"progressToken":"p12","io.modelcontextprotocol/protocolVersion":"2025-06-18","io.modelcontextprotocol/clientCapabilities":{"elicitation":{}},"smuggled":1},"extra":true}}"#;
    let (status, _, body) = post(&[], continuation);
    assert_eq!(status, 200, "{body}");
    let answer = response_in(&messages_of(&body), 12);
    assert!(answer["result"]["content"].is_array(), "{body}");
    let got = recorded(&record);
    let params = &serde_json::from_str::<Value>(got.last().unwrap()["body"].as_str().unwrap())
        .unwrap()["params"];
    assert_eq!(
        params,
        &serde_json::json!({
            "name": "test_simple_text", "arguments": {},
            "inputResponses": {"ask": {"action": "accept", "content": {"reason": "because"}}},
            "requestState": "opaque-1",
            "_meta": {
                "progressToken": "p12",
                "io.modelcontextprotocol/protocolVersion": "2025-06-18",
                "io.modelcontextprotocol/clientCapabilities": {"elicitation": {}}
            }
        }),
    );
    let view = &requests_for(&gw, "mcp.guard.test_simple_text")[0];
    let ctx = &view["context"];
    assert_eq!(ctx["request_state"], "opaque-1", "{view:#}");
    assert_eq!(
        ctx["input_responses_json"],
        r#"{"ask":{"action":"accept","content":{"reason":"because"}}}"#,
        "{view:#}"
    );
    assert!(
        !ctx["envelope_json"].as_str().unwrap().contains("smuggled"),
        "{view:#}"
    );
    // the version in the body is the header's
    let (status, _, body) = post(
        &[("MCP-Protocol-Version", "2025-11-25")],
        &continuation.replace("\"id\":12", "\"id\":13"),
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(messages_of(&body)[0]["error"]["code"], -32020, "{body}");

    // a batch: the call gated and forwarded alone, every request answered
    let batch = format!(
        r#"[{},{{"jsonrpc":"2.0","id":8,"method":"ping"}}]"#,
        call.replace("\"id\":2", "\"id\":7")
    );
    let (status, _, body) = post(&[], &batch);
    assert_eq!(status, 200, "{body}");
    let msgs = messages_of(&body);
    assert_eq!(
        response_in(&msgs, 7)["result"]["content"][0]["type"],
        "text",
        "{body}"
    );
    assert_eq!(
        response_in(&msgs, 8)["result"],
        serde_json::json!({}),
        "{body}"
    );

    // M4: the connection closes after the server read the call, or it
    // answers 500: the call may have run, so its outcome is unknown, never
    // "not run"
    let drop_call = r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"test_drop_connection","arguments":{}}}"#;
    let (status, _, body) = post(&[], drop_call);
    assert_eq!(status, 200, "{body}");
    let answer = response_in(&messages_of(&body), 9);
    let text = answer["result"]["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("whether it ran is unknown"), "{text}");
    let view = latest_outcome(&gw, "mcp.guard.test_drop_connection");
    assert_eq!(view["outcome"]["exit_code"], Value::Null, "{view:#}");
    let summary = view["outcome"]["summary"].as_str().unwrap();
    assert!(summary.contains("outcome unknown"), "{summary}");
    let fail_call = drop_call
        .replace("test_drop_connection", "test_http_500")
        .replace("\"id\":9", "\"id\":10");
    let (status, _, _) = post(&[], &fail_call);
    assert_eq!(status, 500, "the client sees the server's status");
    let view = latest_outcome(&gw, "mcp.guard.test_http_500");
    let summary = view["outcome"]["summary"].as_str().unwrap();
    assert!(
        summary.contains("outcome unknown") && summary.contains("500"),
        "{summary}"
    );

    // what reached the server: the calls the gate let through, nothing else
    let names: Vec<String> = calls_received(&record)
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(
        names,
        [
            "test_simple_text",
            "test_simple_text",
            "test_simple_text",
            "test_drop_connection",
            "test_http_500"
        ],
        "the denied and refused calls never reached the server"
    );

    // GET (the session's stream) and DELETE pass through
    let (status, head, _) = raw(
        &url,
        "GET",
        &merged(&in_session, &[("Accept", "text/event-stream")]),
        b"",
        true,
    );
    assert_eq!(status, 200, "{head}");
    assert!(
        head.to_ascii_lowercase().contains("text/event-stream"),
        "{head}"
    );
    let (status, head, _) = raw(&url, "DELETE", &in_session, b"", false);
    assert_eq!(status, 200, "{head}");
    let (status, _, body) = post(&[], r#"{"jsonrpc":"2.0","id":11,"method":"ping"}"#);
    assert_eq!(status, 404, "the session is gone upstream: {body}");
}

/// With `cat` as the server and a gateway that allows every call, the
/// client sees exactly what the proxy forwards (cat echoes it) and answers
/// for the server: a forwarded call goes under an id of the proxy's own,
/// with exactly the approved parameters (a continuation's answers and
/// state and the protocol envelope included, nothing else); a response with the client's id
/// (to its own ping) is not taken for the call's; the server's answer
/// comes back under the client's id; a call the server never answers is
/// recorded as of unknown outcome when the proxy ends.
#[test]
fn stdio_forwarded_calls_go_under_the_proxys_ids() {
    let gw = gateway_with(&[("allow.cedar", ALLOW_ALL)], "mcp", &[]);
    let mut proxy = JsonLines::spawn(as_coder(
        Command::new(BIN).args(["mcp", "--name", "cat", "--", "cat"]),
        &gw,
    ));
    // a 2026-07-28 continuation (a multi-round-trip call's second leg)
    let envelope = serde_json::json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {"elicitation": {"form": {}}}
    });
    let mut meta = envelope.clone();
    meta["progressToken"] = "p8".into();
    meta["other"] = 1.into();
    proxy.send(
        serde_json::json!({"jsonrpc":"2.0","id":8,"method":"tools/call","params":{
        "name":"t","arguments":{"a":1},"inputResponses":{"q":{"action":"accept","content":{"x":"y"}}},
        "requestState":"state-1","_meta":meta,"extra":true}}),
    );
    // the proxy lists the tools first, in the call's protocol envelope; the
    // client answers for the server
    let list = proxy.next();
    assert_eq!(list["method"], "tools/list", "{list}");
    assert!(
        list["id"].as_str().unwrap().starts_with("signoff-"),
        "{list}"
    );
    assert_eq!(
        list["params"],
        serde_json::json!({"_meta": envelope}),
        "{list}"
    );
    proxy.send(serde_json::json!({"jsonrpc":"2.0","id":list["id"],"result":{"tools":[]}}));
    let forwarded = proxy.next();
    assert_eq!(forwarded["method"], "tools/call", "{forwarded}");
    let ours = forwarded["id"].clone();
    assert!(
        ours.as_str().unwrap().starts_with("signoff-call-"),
        "{forwarded}"
    );
    let mut forwarded_meta = envelope.clone();
    forwarded_meta["progressToken"] = "p8".into();
    assert_eq!(
        forwarded["params"],
        serde_json::json!({"name":"t","arguments":{"a":1},
            "inputResponses":{"q":{"action":"accept","content":{"x":"y"}}},
            "requestState":"state-1","_meta":forwarded_meta})
    );
    // a ping reusing the call's id, and its answer: not the call's
    proxy.send(serde_json::json!({"jsonrpc":"2.0","id":8,"method":"ping"}));
    assert_eq!(proxy.next()["method"], "ping");
    proxy.send(serde_json::json!({"jsonrpc":"2.0","id":8,"result":{}}));
    assert_eq!(
        proxy.next(),
        serde_json::json!({"jsonrpc":"2.0","id":8,"result":{}})
    );
    // the server's answer to the call comes back under the client's id
    proxy.send(
        serde_json::json!({"jsonrpc":"2.0","id":ours,"result":{"content":[{"type":"text","text":"done"}]}}),
    );
    let answer = proxy.next();
    assert_eq!(answer["id"], 8, "{answer}");
    assert_eq!(answer["result"]["content"][0]["text"], "done", "{answer}");
    let done = latest_outcome(&gw, "mcp.cat.t");
    assert_eq!(done["outcome"]["exit_code"], 0, "{done:#}");

    // a call the server never answers, then the client leaves
    proxy.send(
        serde_json::json!({"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"u","arguments":{}}}),
    );
    let forwarded = proxy.next();
    assert_eq!(forwarded["method"], "tools/call", "{forwarded}");
    proxy.close();
    let answer = proxy.next();
    assert_eq!(answer["id"], 9, "{answer}");
    let text = answer["result"]["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("whether it ran is unknown"), "{text}");
    let status = proxy.wait();
    assert!(status.success(), "{status:?}");
    let lost = &requests_for(&gw, "mcp.cat.u")[0];
    let lost = gw.request(lost["id"].as_str().unwrap());
    assert_eq!(lost["outcome"]["exit_code"], Value::Null, "{lost:#}");
    let summary = lost["outcome"]["summary"].as_str().unwrap();
    assert!(summary.contains("outcome unknown"), "{summary}");
}

/// A client's open GET stream does not keep a stopping proxy alive: on
/// SIGTERM it gives open exchanges a bounded grace and exits.
#[test]
fn the_http_proxy_stops_with_a_stream_open() {
    let mut gw = Gateway::start(Backend::Sqlite);
    add_coder(&mut gw, "mcp", &[]);
    let (_fixture, upstream) = conformance_fixture(None);
    let (mut proxy, url) = http_proxy(&gw, "stop", &upstream, "5s");
    let (status, head, _) = post_json(&url, &[], INITIALIZE);
    assert_eq!(status, 200, "{head}");
    let sid = session_id(&head);
    // the stream stays open: the socket is kept
    let addr = url
        .strip_prefix("http://")
        .unwrap()
        .split('/')
        .next()
        .unwrap();
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET /mcp HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\nMcp-Session-Id: {sid}\r\nMCP-Protocol-Version: 2025-06-18\r\n\r\n"
    )
    .unwrap();
    let mut first = [0u8; 12];
    stream.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    let started = Instant::now();
    let killed = Command::new("kill")
        .args(["-TERM", &proxy.0.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = poll(Duration::from_secs(15), Duration::from_millis(50), || {
        proxy.0.try_wait().unwrap()
    })
    .expect("the proxy is still running with a stream open");
    assert!(status.success(), "{status:?}");
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "it gave the stream its grace"
    );
    drop(stream);
}

/// What the `modern` scenario gives through the proxy, against what it
/// gave bare, and what the gateway recorded.
fn check_modern(gw: &Gateway, out: &Value, bare: &Value) {
    // the same protocol both ways: negotiated by server/discover
    assert_eq!(bare["protocol_version"], "2026-07-28", "{bare:#}");
    assert_eq!(out["protocol_version"], "2026-07-28", "{out:#}");
    assert_eq!(out["discovered_versions"], bare["discovered_versions"]);
    // every call that ran gave what it gives bare
    assert_eq!(out["final"], bare["final"], "through the proxy vs bare");
    let fin = &out["final"];
    assert_eq!(fin["server"], "modern-notes", "{out:#}");
    assert_eq!(fin["read"]["text"], "hello from the notes server");
    assert_eq!(fin["write"]["text"], "wrote 'plan' (7 chars)", "{out:#}");
    assert_eq!(fin["read_written"]["text"], "ship it");
    assert_eq!(fin["delete_first_leg"]["resultType"], "input_required");
    assert_eq!(fin["delete_first_leg"]["has_state"], true);
    assert_eq!(
        fin["delete"]["text"], "deleted 'plan' (existed: True) because 'stale draft'",
        "{out:#}"
    );
    assert_eq!(fin["read_deleted"]["text"], "no note 'plan'");
    assert_eq!(fin["tag"]["text"], "tagged 'welcome' with 'urgent'");
    assert_eq!(fin["resources"], serde_json::json!(["notes://index"]));
    assert_eq!(fin["resource_read"], serde_json::json!(["welcome"]));
    assert_eq!(fin["prompts"], serde_json::json!(["summarize"]));
    // bare nothing waits, and the forbidden call runs
    assert!(bare["gated"]["write"].get("request").is_none(), "{bare:#}");
    assert_eq!(bare["forbidden"]["text"], "wiped 1 notes", "{bare:#}");

    // the write waited (a 2026-07-28 result: resultType), was approved, the
    // retry ran it
    let write = &out["gated"]["write"];
    assert_waits_for_sre(&write["first"]);
    assert_eq!(write["first"]["resultType"], "complete", "{out:#}");
    assert_eq!(write["approved_status"], 200, "{out:#}");
    let view = gw.request(write["request"].as_str().unwrap());
    assert_eq!(view["status"], "executed", "{view:#}");
    assert_eq!(view["action"], "mcp.notes.write_note");
    let ctx = &view["context"];
    assert_eq!(ctx["mcp"]["protocol_version"], "2026-07-28", "{ctx:#}");
    assert!(
        ctx["envelope_json"]
            .as_str()
            .unwrap()
            .contains("\"io.modelcontextprotocol/clientCapabilities\""),
        "the envelope is bound: {ctx:#}"
    );
    assert_eq!(
        ctx["mcp"]["description"], "Writes a note, replacing one with the same title",
        "reviewers see the tool's description: {ctx:#}"
    );
    assert!(ctx.get("input_responses_json").is_none(), "{ctx:#}");

    // the multi-round trip: the first leg was allowed and asked; the
    // continuation was its own request, with the user's answer and the
    // server's state bound and shown; it waited, was approved, and the
    // retry with the same answer and state ran it
    let deletes = requests_for(gw, "mcp.notes.delete_note");
    assert_eq!(deletes.len(), 2, "first leg and continuation: {deletes:#?}");
    let cont_id = out["gated"]["delete"]["request"].as_str().expect("waited");
    let first_leg = deletes.iter().find(|r| r["id"] != cont_id).unwrap();
    let first_leg = poll_outcome(gw, first_leg["id"].as_str().unwrap());
    assert_eq!(first_leg["status"], "executed", "{first_leg:#}");
    assert!(first_leg["context"].get("request_state").is_none());
    let summary = first_leg["outcome"]["summary"].as_str().unwrap();
    assert!(summary.contains("asked the client for input"), "{summary}");
    let waiting = &out["gated"]["delete"]["first"];
    assert_eq!(waiting["isError"], true, "{out:#}");
    assert!(
        waiting["text"]
            .as_str()
            .unwrap()
            .contains("waiting for approval from sre:1"),
        "{out:#}"
    );
    assert_eq!(out["gated"]["delete"]["approved_status"], 200);
    let cont = poll_outcome(gw, cont_id);
    assert_eq!(cont["status"], "executed", "{cont:#}");
    assert_eq!(cont["outcome"]["exit_code"], 0, "{cont:#}");
    assert_eq!(cont["reviews"][0]["reviewer"], "alice", "{cont:#}");
    let ctx = &cont["context"];
    let key = out["delete_answer_keys"][0].as_str().unwrap();
    let answers: Value =
        serde_json::from_str(ctx["input_responses_json"].as_str().unwrap()).unwrap();
    assert_eq!(
        answers[key],
        serde_json::json!({"action": "accept", "content": {"reason": "stale draft"}}),
        "{ctx:#}"
    );
    assert_eq!(
        ctx["input_responses"][key]["content"]["reason"],
        "stale draft"
    );
    assert!(
        ctx["request_state"].as_str().is_some_and(|s| !s.is_empty()),
        "{ctx:#}"
    );
    let shown = ctx["continuation"].as_str().unwrap();
    assert!(
        shown.contains("answers from the client (user input)")
            && shown.contains("stale draft")
            && shown.contains("the server's own state"),
        "{shown}"
    );
    assert_eq!(ctx["mcp"]["protocol_version"], "2026-07-28");

    // the SDK-driven round trip: two requests, both allowed, both ran
    let tags = requests_for(gw, "mcp.notes.tag_note");
    assert_eq!(tags.len(), 2, "{tags:#?}");
    for t in &tags {
        assert_eq!(t["status"], "executed", "{t:#}");
    }
    assert_eq!(
        tags.iter()
            .filter(|t| t["context"].get("input_responses_json").is_some())
            .count(),
        1
    );

    // forbidden: a readable tool error naming the policy, in 2026-07-28 form
    assert_forbidden_by(&out["forbidden"], "notes-no-wipe");
    assert_eq!(out["forbidden"]["resultType"], "complete", "{out:#}");
}

/// Protocol revision 2026-07-28 over stdio: the SDK's client and server,
/// bare and behind `signoff mcp`, give the same results; the proxy gates
/// every leg of a multi-round-trip call.
#[test]
fn modern_protocol_over_stdio_behind_the_proxy() {
    let gw = notes_gateway();
    let bare = drive(&gw, &["modern"], modern_server_cmd());
    let out = drive(&gw, &["modern"], proxied("notes", modern_server_cmd()));
    check_modern(&gw, &out, &bare);
}

/// Protocol revision 2026-07-28 over Streamable HTTP (no initialize, no
/// session: every POST carries its version, method and name as headers):
/// the same as over stdio, and headers that disagree with the body are
/// refused.
#[test]
fn modern_protocol_over_http_behind_the_proxy() {
    let gw = notes_gateway();
    let (_bare_server, bare_url) = modern_server_over_http();
    let bare = drive(&gw, &["modern"], over_http(&bare_url));
    let (_server, upstream) = modern_server_over_http();
    let (_proxy, url) = http_proxy(&gw, "notes", &upstream, "1s");
    let out = drive(&gw, &["modern"], over_http(&url));
    check_modern(&gw, &out, &bare);

    // a 2026-07-28 call whose headers say something else than its body:
    // refused before it is gated or forwarded
    let before = requests_for(&gw, "mcp.notes.read_note").len();
    let call = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_note","arguments":{"title":"welcome"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}"#;
    let headers = |version: &'static str, name: &'static str| {
        [
            ("MCP-Protocol-Version", version),
            ("Mcp-Method", "tools/call"),
            ("Mcp-Name", name),
        ]
    };
    for (version, name) in [("2025-11-25", "read_note"), ("2026-07-28", "write_note")] {
        let (status, _, body) = post_json(&url, &headers(version, name), call);
        assert_eq!(status, 400, "{version} {name}: {body}");
        assert_eq!(messages_of(&body)[0]["error"]["code"], -32020, "{body}");
    }
    assert_eq!(requests_for(&gw, "mcp.notes.read_note").len(), before);
    // the same call with agreeing headers runs
    let (status, _, body) = post_json(&url, &headers("2026-07-28", "read_note"), call);
    assert_eq!(status, 200, "{body}");
    let answer = response_in(&messages_of(&body), 1);
    assert_eq!(
        answer["result"]["content"][0]["text"], "hello from the notes server",
        "{answer}"
    );
}
