#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on setup failures
//! The agent gates against real parts: `signoff mcp` in front of the
//! reference MCP servers (`@modelcontextprotocol/server-filesystem` and
//! `server-everything` from npm), driven by the official Python MCP SDK
//! (scripts/mcp_drive.py); `signoff hook claude-code` fed recorded
//! PreToolUse payloads (tests/fixtures/claude-code). The npm and PyPI parts
//! are installed by scripts/mcp-test-deps.sh into target/mcp-deps.

mod common;

use common::*;
use serde_json::Value;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

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

fn server_bin(name: &str) -> String {
    plain(&deps().join("node_modules/.bin").join(name))
}

/// A gateway running the shipped agent policy (examples/agents), with
/// `catalog` as its resource catalog, an `mcp.everything` permit for the
/// pass-through checks, and the agent `coder` (registered for the
/// workspace) bound to `gate`.
fn agent_gateway(catalog: &str, gate: &str) -> Gateway {
    let mut gw = Gateway::start(Backend::Sqlite);
    std::fs::remove_file(gw.policies.join("test.cedar")).unwrap();
    std::fs::copy(
        repo().join("examples/agents/agents.cedar"),
        gw.policies.join("agents.cedar"),
    )
    .unwrap();
    std::fs::write(gw.policies.join("catalog.toml"), catalog).unwrap();
    std::fs::write(
        gw.policies.join("everything.cedar"),
        "@id(\"everything-allowed\")\npermit(principal, action in Action::\"mcp.everything\", resource);\n",
    )
    .unwrap();
    gw.post_as("root", "/v1/policy/reload", serde_json::json!({}))
        .expect(200);
    gw.add_principal(
        "coder",
        &[
            "agent",
            "coder",
            "--owner",
            "olga",
            "--gate",
            gate,
            "--attr",
            "environments=workspace",
        ],
    );
    gw
}

/// Runs scripts/mcp_drive.py ARGS… as the agent `coder`; its JSON.
fn drive(gw: &Gateway, args: &[String]) -> Value {
    let python = deps().join("venv/bin/python");
    let out = Command::new(python)
        .arg(repo().join("scripts/mcp_drive.py"))
        .args(args)
        .env("SIGNOFF_URL", &gw.url)
        .env("SIGNOFF_TOKEN", gw.token("coder"))
        .env("REVIEWER_TOKEN", gw.token("alice"))
        .output()
        .expect("run mcp_drive.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "mcp_drive.py {args:?} failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{stdout}\nstderr:\n{stderr}"))
}

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

    let mut args = vec!["fs".to_owned(), root_s.clone(), "--".into()];
    args.extend(proxied(
        "fs",
        vec![server_bin("mcp-server-filesystem"), root_s.clone()],
    ));
    let out = drive(&gw, &args);

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
    let first = &out["write_outside_first"];
    assert_eq!(first["isError"], true, "{out:#}");
    let text = first["text"].as_str().unwrap();
    assert!(text.contains("waiting for approval from sre:1"), "{text}");
    assert!(text.contains("has NOT run"), "{text}");
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
    assert_eq!(out["forbidden"]["isError"], true, "{out:#}");
    let text = out["forbidden"]["text"].as_str().unwrap();
    assert!(text.contains("agent-no-secrets"), "{text}");
}

#[test]
fn everything_server_passes_through() {
    let gw = agent_gateway("", "mcp");
    let mut args = vec!["everything".to_owned(), "--".into()];
    args.extend(proxied(
        "everything",
        vec![server_bin("mcp-server-everything")],
    ));
    let out = drive(&gw, &args);
    assert!(out["tools"].as_array().unwrap().len() > 3, "{out:#}");
    assert!(!out["prompts"].as_array().unwrap().is_empty(), "{out:#}");
    assert!(out["resources"].as_u64().unwrap() > 0, "{out:#}");
    assert_eq!(out["resource_read"], 1, "{out:#}");
    assert_eq!(out["prompt_messages"], 1, "{out:#}");
    assert_eq!(out["echo"]["isError"], false, "{out:#}");
    assert!(out["echo"]["text"]
        .as_str()
        .unwrap()
        .starts_with("Echo: hi"));
    // the server's own progress notifications reach the client
    assert_eq!(out["long"]["isError"], false, "{out:#}");
    assert_eq!(out["progress"].as_array().unwrap().len(), 3, "{out:#}");
    let calls: Vec<Value> = gw
        .events()
        .into_iter()
        .filter(|e| e["kind"] == "outcome_recorded")
        .collect();
    assert!(
        calls.len() >= 2,
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
    let mut child = Command::new(BIN)
        .args(["hook", "claude-code", "--wait", "1s"])
        .env("SIGNOFF_URL", &gw.url)
        .env("SIGNOFF_TOKEN", gw.token("coder"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let out = child.wait_with_output().unwrap();
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
    let mut child = Command::new(BIN)
        .args(["hook", "claude-code", "--url", "http://127.0.0.1:1"])
        .env("SIGNOFF_TOKEN", "so_nothing")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(br#"{"hook_event_name":"PreToolUse","tool_name":"Read","tool_input":{"file_path":"/a"}}"#)
        .unwrap();
    let out = child.wait_with_output().unwrap();
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
    use std::io::{BufRead as _, BufReader};
    let mut child = Command::new(BIN)
        .args([
            "mcp",
            "--name",
            "echo",
            "--url",
            "http://127.0.0.1:1",
            "--",
            "cat",
        ])
        .env("SIGNOFF_TOKEN", "so_unused")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    stdin.write_all(b"this is not json\n").unwrap();
    let first: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(first["error"]["code"], -32700, "{first}");
    stdin
        .write_all(b"{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"ping\"}\n")
        .unwrap();
    let echoed: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(echoed["method"], "ping");
    assert_eq!(echoed["id"], 7);
    // a tools/call with the gateway unreachable: a tool error, nothing forwarded
    stdin
        .write_all(b"{\"jsonrpc\":\"2.0\",\"id\":8,\"method\":\"tools/call\",\"params\":{\"name\":\"rm\",\"arguments\":{\"path\":\"/\"}}}\n")
        .unwrap();
    // the proxy first asks the "server" for its tools; cat answers with the
    // request itself, which is no tools list
    let mut answer = Value::Null;
    for line in lines.by_ref() {
        let v: Value = serde_json::from_str(&line.unwrap()).unwrap();
        assert_ne!(v["method"], "tools/call", "a call was forwarded: {v}");
        if v["id"] == 8 {
            answer = v;
            break;
        }
    }
    assert_eq!(answer["result"]["isError"], true, "{answer}");
    drop(stdin);
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

#[test]
fn a_malformed_wait_is_the_callers_to_fix() {
    let out = run_signoff(&["mcp", "--name", "x", "--wait", "soon", "--", "cat"]);
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stderr.contains("--wait"), "{out}");
}

/// A process the test started, killed when the test ends.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// server-everything in Streamable HTTP mode; its endpoint URL.
fn everything_over_http() -> (Running, String) {
    let port = free_port();
    let child = Command::new(server_bin("mcp-server-everything"))
        .arg("streamableHttp")
        .env("PORT", port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start mcp-server-everything streamableHttp");
    let running = Running(child);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "server-everything did not listen on {port}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    (running, format!("http://127.0.0.1:{port}/mcp"))
}

/// `signoff mcp --listen 127.0.0.1:0 --upstream URL` as `coder`; the URL it
/// prints.
fn http_proxy(gw: &Gateway, name: &str, upstream: &str, wait: &str) -> (Running, String) {
    use std::io::{BufRead as _, BufReader};
    let mut child = Command::new(BIN)
        .args([
            "mcp",
            "--name",
            name,
            "--wait",
            wait,
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            upstream,
        ])
        .env("SIGNOFF_URL", &gw.url)
        .env("SIGNOFF_TOKEN", gw.token("coder"))
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

/// One HTTP/1.1 POST over a plain socket, so that Host and Origin are
/// exactly what the test says; the status and the whole response text.
fn raw_post(url: &str, host: Option<&str>, extra: &[(&str, &str)], body: &str) -> (u16, String) {
    use std::io::Read as _;
    let rest = url.strip_prefix("http://").unwrap();
    let (addr, path) = rest.split_once('/').unwrap();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let mut req = format!(
        "POST /{path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\nContent-Length: {}\r\nConnection: close\r\n",
        host.unwrap_or(addr),
        body.len()
    );
    for (k, v) in extra {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {text:?}"));
    (status, text)
}

/// A gateway for server-everything behind the HTTP proxy (`mcp.remote.*`):
/// echo and the long-running operation are allowed, get-sum waits for one
/// SRE, get-env is forbidden.
fn remote_gateway() -> Gateway {
    let mut gw = Gateway::start(Backend::Sqlite);
    std::fs::remove_file(gw.policies.join("test.cedar")).unwrap();
    std::fs::write(
        gw.policies.join("remote.cedar"),
        r#"
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
"#,
    )
    .unwrap();
    gw.post_as("root", "/v1/policy/reload", serde_json::json!({}))
        .expect(200);
    gw.add_principal(
        "coder",
        &["agent", "coder", "--owner", "olga", "--gate", "mcp"],
    );
    gw
}

#[test]
fn remote_server_behind_the_http_proxy() {
    let gw = remote_gateway();
    let (mut upstream, upstream_url) = everything_over_http();
    let (_proxy, url) = http_proxy(&gw, "remote", &upstream_url, "5s");
    let out = drive(
        &gw,
        &["remote".into(), "--".into(), "--url".into(), url.clone()],
    );

    // pass-through: tools, prompts, resources, the server's own progress
    let tools = out["tools"].to_string();
    assert!(
        tools.contains("\"echo\"") && tools.contains("\"get-sum\""),
        "{out:#}"
    );
    assert!(!out["prompts"].as_array().unwrap().is_empty(), "{out:#}");
    assert!(out["resources"].as_u64().unwrap() > 0, "{out:#}");
    assert_eq!(out["resource_read"], 1, "{out:#}");
    assert_eq!(out["prompt_messages"], 1, "{out:#}");
    assert_eq!(out["echo"]["isError"], false, "{out:#}");
    assert_eq!(out["echo"]["text"], "Echo: hi over http", "{out:#}");
    assert_eq!(out["long"]["isError"], false, "{out:#}");
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
    let first = &out["sum_waiting"];
    assert_eq!(first["isError"], true, "{out:#}");
    let text = first["text"].as_str().unwrap();
    assert!(
        text.contains("waiting for approval from sre:1") && text.contains("has NOT run"),
        "{text}"
    );
    assert_eq!(out["sum_approved_status"], 200, "{out:#}");
    assert_eq!(out["sum_retry"]["isError"], false, "{out:#}");
    assert_eq!(
        out["sum_retry"]["text"], "The sum of 4 and 5 is 9.",
        "{out:#}"
    );
    let waited = out["sum_waiting_request"].as_str().unwrap();
    assert_eq!(gw.request(waited)["status"], "executed");

    // forbidden: a tool error naming the policy
    assert_eq!(out["forbidden"]["isError"], true, "{out:#}");
    let text = out["forbidden"]["text"].as_str().unwrap();
    assert!(text.contains("remote-no-env"), "{text}");

    // DNS rebinding: a foreign Origin or Host is refused before anything is forwarded
    let ping = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    let (status, text) = raw_post(&url, None, &[("Origin", "http://evil.example.com")], ping);
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("evil.example.com"), "{text}");
    let (status, text) = raw_post(&url, Some("evil.example.com"), &[], ping);
    assert_eq!(status, 403, "{text}");
    let (status, text) = raw_post(&url, None, &[("Origin", "http://localhost:3000")], ping);
    assert_ne!(status, 403, "a local origin passes: {text}");

    // the upstream is gone: the call is answered with a tool error, nothing runs
    drop(std::mem::replace(
        &mut upstream,
        Running(Command::new("true").spawn().unwrap()),
    ));
    let call = r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"echo","arguments":{"message":"nobody hears"}}}"#;
    let (status, text) = raw_post(&url, None, &[], call);
    assert_eq!(status, 200, "{text}");
    let body = &text[text.find("\r\n\r\n").unwrap() + 4..];
    let answer: Value = serde_json::from_str(body.trim())
        .unwrap_or_else(|e| panic!("not one JSON response ({e}): {text}"));
    assert_eq!(answer["id"], 9, "{answer}");
    assert_eq!(answer["result"]["isError"], true, "{answer}");
    let why = answer["result"]["content"][0]["text"].as_str().unwrap();
    assert!(why.contains("could not be reached"), "{why}");
    let rid = request_id_in(why).expect("the answer names the request");
    let view = gw.request(&rid);
    assert_ne!(view["outcome"]["exit_code"], 0, "{view:#}");
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

/// The conformance fixture server (scripts/mcp-conformance-server.mjs) in
/// Streamable HTTP mode; its endpoint URL.
fn conformance_fixture() -> (Running, String) {
    let port = free_port();
    let child = Command::new("node")
        .arg(repo().join("scripts/mcp-conformance-server.mjs"))
        .env("MCP_DEPS", deps())
        .env("PORT", port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start scripts/mcp-conformance-server.mjs");
    let running = Running(child);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the conformance fixture did not listen on {port}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    (running, format!("http://127.0.0.1:{port}/mcp"))
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
    let mut gw = Gateway::start(Backend::Sqlite);
    std::fs::write(
        gw.policies.join("test.cedar"),
        "@id(\"allow-all\")\npermit(principal, action, resource);\n",
    )
    .unwrap();
    gw.post_as("root", "/v1/policy/reload", serde_json::json!({}))
        .expect(200);
    gw.add_principal(
        "coder",
        &["agent", "coder", "--owner", "olga", "--gate", "mcp"],
    );

    let (_everything, everything_url) = everything_over_http();
    let (passed, table) = compare_through_proxy(&gw, "everything", &everything_url, work.path());
    eprintln!("{table}");
    assert!(
        passed >= 10,
        "too few checks pass on server-everything:\n{table}"
    );

    let (_fixture, fixture_url) = conformance_fixture();
    let (passed, table) = compare_through_proxy(&gw, "fixture", &fixture_url, work.path());
    eprintln!("{table}");
    assert!(
        passed >= 40,
        "too few checks pass on the fixture server:\n{table}"
    );

    // the calls really went through the gate
    let events = gw.events();
    let outcomes = events
        .iter()
        .filter(|e| e["kind"] == "outcome_recorded")
        .count();
    assert!(outcomes >= 15, "{outcomes} gated calls recorded");
    let sampled = events
        .iter()
        .any(|e| e.to_string().contains("mcp.fixture.test_sampling"));
    assert!(sampled, "the sampling call was gated");
}
