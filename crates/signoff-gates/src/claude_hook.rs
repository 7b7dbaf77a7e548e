//! The Claude Code gate: `signoff hook claude-code` is a `PreToolUse` hook.
//! It reads the hook input on stdin, submits the tool call as an action
//! request and answers with a permission decision on stdout. It **fails
//! closed**: anything but an allowed (or approved and claimed) request is
//! `deny`, with a reason the model can read.
//!
//! Action names: `claude.TOOL` (lowercased: `claude.bash`, `claude.write`)
//! and `mcp.SERVER.TOOL` for Claude Code's `mcp__SERVER__TOOL` tools, so one
//! policy covers an MCP server whether it sits behind `signoff mcp` or is
//! called from Claude Code.
//!
//! The hook is one process per call, so a call that is still waiting when
//! the hook's time runs out is found again by its idempotency key: the same
//! session, tool and input submit to the same request, and the retry after
//! an approval claims it.

use crate::mcp::{action_segment, ToolCall};
use crate::session::{Execution, GateAction, Session, SessionEnd, Silent, Start};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use sha2::{Digest as _, Sha256};
use signoff_client::Client;
use signoff_core::display;
use signoff_core::wire::{OutcomeBody, RequestView, SubmitRequest};
use signoff_core::{Digest, PrincipalRef};
use std::time::Duration;

/// A `PreToolUse` hook input (the fields signoff reads; the rest is ignored).
#[derive(Debug, Clone, Deserialize)]
pub struct HookInput {
    /// Claude Code's session.
    #[serde(default)]
    pub session_id: String,
    /// The transcript file.
    #[serde(default)]
    pub transcript_path: Option<String>,
    /// Where Claude Code runs.
    #[serde(default)]
    pub cwd: Option<String>,
    /// `PreToolUse`.
    #[serde(default)]
    pub hook_event_name: String,
    /// The tool: `Bash`, `Write`, `Edit`, `Read`, `mcp__server__tool`, …
    pub tool_name: String,
    /// Its input.
    #[serde(default)]
    pub tool_input: Map<String, Value>,
    /// Claude Code's permission mode, when it says.
    #[serde(default)]
    pub permission_mode: Option<String>,
}

/// The action for a Claude Code tool name.
pub fn action_for(tool_name: &str) -> String {
    if let Some(rest) = tool_name.strip_prefix("mcp__") {
        if let Some((server, tool)) = rest.split_once("__") {
            return format!("mcp.{}.{}", action_segment(server), action_segment(tool));
        }
    }
    format!("claude.{}", action_segment(&tool_name.to_ascii_lowercase()))
}

/// What the call touches: the file for file tools, the directory a shell
/// command runs in, else `claude:TOOL`.
pub fn resource_for(input: &HookInput) -> String {
    for key in ["file_path", "notebook_path", "path", "url"] {
        if let Some(Value::String(s)) = input.tool_input.get(key) {
            if !s.is_empty() {
                return display::one_line(s);
            }
        }
    }
    if input.tool_name == "Bash" {
        if let Some(cwd) = input.cwd.as_deref().filter(|c| !c.is_empty()) {
            return format!("shell:{}", display::one_line(cwd));
        }
    }
    format!("claude:{}", display::one_line(&input.tool_name))
}

/// The submission for `input`.
pub fn submit_body(input: &HookInput, environment: Option<String>) -> SubmitRequest {
    let call = ToolCall {
        tool: input.tool_name.clone(),
        arguments: input.tool_input.clone(),
        ..ToolCall::default()
    };
    let mut claude = Map::new();
    claude.insert("tool".into(), Value::String(input.tool_name.clone()));
    claude.insert("session_id".into(), Value::String(input.session_id.clone()));
    for (k, v) in [
        ("cwd", &input.cwd),
        ("transcript_path", &input.transcript_path),
        ("permission_mode", &input.permission_mode),
    ] {
        if let Some(v) = v {
            claude.insert(k.into(), Value::String(v.clone()));
        }
    }
    let mut context = Map::new();
    context.insert("claude".into(), Value::Object(claude));
    let described = call.context(&crate::mcp::McpSpec {
        name: "claude-code".into(),
        server: crate::mcp::McpServer::Command(Vec::new()),
        resource_args: Vec::new(),
        environment: None,
        wait: Duration::ZERO,
    });
    for key in ["call", "arguments", "arguments_json"] {
        if let Some(v) = described.get(key) {
            context.insert(key.into(), v.clone());
        }
    }
    if let Some(Value::String(cmd)) = input.tool_input.get("command") {
        context.insert("command".into(), Value::String(cmd.clone()));
    }
    SubmitRequest {
        action: action_for(&input.tool_name),
        resource: resource_for(input),
        environment,
        context,
        justification: input
            .tool_input
            .get("description")
            .and_then(Value::as_str)
            .map(display::one_line)
            .filter(|s| !s.is_empty()),
        on_behalf_of: None,
        gate: Some("claude-code".into()),
        claim_digest: None,
    }
}

/// The hook's answer on stdout.
pub fn decision(permission: &str, reason: &str) -> Value {
    json!({
        "hookSpecificOutput": {
            "hookEventName": "PreToolUse",
            "permissionDecision": permission,
            "permissionDecisionReason": reason,
        }
    })
}

/// The claim is the whole action: after it, Claude Code runs the tool.
struct Allow {
    body: SubmitRequest,
}

impl GateAction for Allow {
    type Output = ();

    fn digest(&self, principal: &PrincipalRef) -> Result<Digest, String> {
        Ok(self.body.action_for(principal.clone()).digest())
    }

    async fn run(self, _claimed: &RequestView) -> Execution<()> {
        Execution {
            outcome: OutcomeBody::not_run(
                None,
                "allowed; Claude Code runs the tool after the hook".into(),
            ),
            output: (),
        }
    }
}

/// Answers one hook input (the raw stdin): the JSON to print. Never fails:
/// every error is a `deny`.
pub async fn answer(
    client: &Client,
    stdin: &str,
    environment: Option<String>,
    wait: Duration,
) -> Value {
    let input: HookInput = match serde_json::from_str(stdin) {
        Ok(i) => i,
        Err(e) => {
            return decision(
                "deny",
                &format!("signoff could not read the hook input, so it denies: {e}"),
            )
        }
    };
    if !input.hook_event_name.is_empty() && input.hook_event_name != "PreToolUse" {
        return decision(
            "deny",
            &format!(
                "signoff answers PreToolUse hooks only, not {}",
                display::one_line(&input.hook_event_name)
            ),
        );
    }
    let body = submit_body(&input, environment);
    // the same session, tool and input find the same request again; once
    // that one is used or expired, the next key follows from its id, so the
    // retries after it find the next request the same way
    let base = json!({
        "session": input.session_id,
        "tool": input.tool_name,
        "input": body.context.get("arguments_json"),
    });
    let mut key = short_key(&base.to_string());
    let mut end = run_once(client, &body, key.clone(), wait).await;
    for _ in 0..MAX_CHAIN {
        match &end {
            SessionEnd::AlreadyUsed { id, .. } | SessionEnd::Expired { id, .. } => {
                key = short_key(&format!("{key}/{id}"));
                end = run_once(client, &body, key.clone(), wait).await;
            }
            _ => break,
        }
    }
    let naming = |id: Option<&str>| id.map(|i| format!(" (request {i})")).unwrap_or_default();
    let id = end.request_id().map(str::to_owned);
    let id = id.as_deref();
    match end {
        SessionEnd::Ran { .. } => decision("allow", &format!("allowed by signoff{}", naming(id))),
        SessionEnd::GaveUp { .. } => decision(
            "deny",
            &format!(
                "waiting for approval in signoff{}; this call has NOT run. Retry the same call \
                 with the same input after a reviewer approves it",
                naming(id)
            ),
        ),
        SessionEnd::Denied { reason, .. } => decision(
            "deny",
            &format!("signoff: {}{}", display::one_line(&reason), naming(id)),
        ),
        SessionEnd::Expired { status, reason, .. } => decision(
            "deny",
            &format!(
                "signoff: {status}: {}{}",
                display::one_line(&reason),
                naming(id)
            ),
        ),
        SessionEnd::ClaimRefused { error, .. }
        | SessionEnd::Unavailable { error, .. }
        | SessionEnd::Rejected { error, .. } => decision(
            "deny",
            &format!(
                "signoff could not approve this call, so it denies: {}{}",
                display::one_line(&error.to_string()),
                naming(id)
            ),
        ),
        SessionEnd::AlreadyUsed { status, .. } => decision(
            "deny",
            &format!(
                "signoff: the approval was already used (status {status}){}",
                naming(id)
            ),
        ),
        SessionEnd::Interrupted { .. } => decision("deny", "signoff: interrupted"),
        SessionEnd::Usage { message, .. } => decision(
            "deny",
            &format!(
                "signoff cannot gate this call, so it denies: {}{}",
                display::one_line(&message),
                naming(id)
            ),
        ),
    }
}

/// How many used or expired requests of one call the hook walks past.
const MAX_CHAIN: usize = 32;

/// An idempotency key derived from `seed`.
fn short_key(seed: &str) -> String {
    let hash = hex::encode(Sha256::digest(seed.as_bytes()));
    format!("claude-code-{}", &hash[..32])
}

async fn run_once(
    client: &Client,
    body: &SubmitRequest,
    key: String,
    wait: Duration,
) -> SessionEnd<()> {
    let start = Start::Submit {
        request: Box::new(body.clone()),
        idempotency_key: key,
    };
    Session::new(client)
        .give_up_after(Some(wait))
        .run(
            start,
            Allow { body: body.clone() },
            &mut Silent,
            std::future::pending(),
        )
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(v: Value) -> HookInput {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn actions_and_resources_per_tool() {
        assert_eq!(action_for("Bash"), "claude.bash");
        assert_eq!(
            action_for("mcp__github__create_issue"),
            "mcp.github.create_issue"
        );
        assert_eq!(action_for("mcp__weird"), "claude.mcp__weird");
        let w = input(
            json!({"tool_name": "Write", "tool_input": {"file_path": "/w/a.txt", "content": "x"}, "cwd": "/w"}),
        );
        assert_eq!(resource_for(&w), "/w/a.txt");
        let b = input(json!({"tool_name": "Bash", "tool_input": {"command": "ls"}, "cwd": "/w"}));
        assert_eq!(resource_for(&b), "shell:/w");
        let body = submit_body(&b, None);
        assert_eq!(body.context["command"], "ls");
        assert_eq!(body.gate.as_deref(), Some("claude-code"));
    }

    #[tokio::test]
    async fn malformed_input_and_an_unreachable_gateway_deny() {
        let client = Client::new("http://127.0.0.1:1", "t").unwrap();
        let v = answer(&client, "not json", None, Duration::from_secs(1)).await;
        assert_eq!(v["hookSpecificOutput"]["permissionDecision"], "deny");
        let ok = r#"{"session_id":"s","hook_event_name":"PreToolUse","tool_name":"Read","tool_input":{"file_path":"/a"}}"#;
        let v = answer(&client, ok, None, Duration::from_secs(1)).await;
        assert_eq!(v["hookSpecificOutput"]["permissionDecision"], "deny", "{v}");
    }
}
