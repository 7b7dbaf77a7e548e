//! The exec gate: `signoff exec … -- CMD ARGS…` runs CMD only if the policy
//! allows it or enough other humans approve it.
//!
//! The gate computes the action digest *itself* from the command it is about
//! to run and presents it when claiming, so an approval given for one
//! command can never be used to run another, whatever the server says.

use crate::client::{Client, ClientError};
use crate::{EXIT_DENIED, EXIT_TEMPFAIL};
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};
use signoff_core::wire::{OutcomeBody, RequestView, SubmitRequest};
use signoff_core::{ActionRequest, RequestStatus};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// What to run and how to describe it to the policy and reviewers.
#[derive(Debug, Clone)]
pub struct ExecSpec {
    /// Dotted action, e.g. `db.export`.
    pub action: String,
    /// What it touches.
    pub resource: String,
    /// Where.
    pub environment: Option<String>,
    /// Why.
    pub justification: Option<String>,
    /// Extra facts (`--context k=v`).
    pub context: Map<String, Value>,
    /// The human this runs for.
    pub on_behalf_of: Option<String>,
    /// Give up waiting after this long (default: until the request expires).
    pub wait: Option<Duration>,
    /// Resume an existing request instead of submitting a new one.
    pub request_id: Option<String>,
    /// The command and its arguments.
    pub command: Vec<String>,
}

/// Callbacks for what the gate is doing, so a terminal can show progress.
pub trait ExecObserver {
    /// The request was submitted (or found) and has this state.
    fn update(&mut self, view: &RequestView, waited: Duration);
    /// The gate stops waiting (decided, or giving up).
    fn finish_waiting(&mut self) {}
}

/// An observer that shows nothing.
#[derive(Debug, Default)]
pub struct Silent;

impl ExecObserver for Silent {
    fn update(&mut self, _: &RequestView, _: Duration) {}
}

/// How the gate ended: the exit status to use and the line for stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecEnd {
    /// CMD's own status when it ran, [`EXIT_DENIED`] or [`EXIT_TEMPFAIL`].
    pub exit_code: i32,
    /// One line saying what happened, naming the request id.
    pub message: String,
    /// The request id, when one exists.
    pub request_id: Option<String>,
}

/// Renders argv as one shell-quoted string, the form reviewers see and the
/// digest covers.
pub fn shell_join(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if !a.is_empty()
                && a.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

impl ExecSpec {
    fn context_with_command(&self) -> Result<Map<String, Value>, String> {
        if self.context.contains_key("command") {
            return Err("context key `command` is set by the exec gate; do not pass it".into());
        }
        let mut ctx = self.context.clone();
        ctx.insert("command".into(), Value::String(shell_join(&self.command)));
        Ok(ctx)
    }

    fn submit_body(&self) -> Result<SubmitRequest, String> {
        Ok(SubmitRequest {
            action: self.action.clone(),
            resource: self.resource.clone(),
            environment: self.environment.clone(),
            context: self.context_with_command()?,
            justification: self.justification.clone(),
            on_behalf_of: self.on_behalf_of.clone(),
            gate: Some("exec".into()),
        })
    }

    /// The digest of what this gate is about to run, for `principal`.
    fn local_digest(
        &self,
        principal: signoff_core::PrincipalRef,
    ) -> Result<signoff_core::Digest, String> {
        let action = ActionRequest {
            action: self.action.clone(),
            resource: self.resource.clone(),
            environment: self.environment.clone(),
            context: self.context_with_command()?,
            justification: self.justification.clone(),
            principal,
            on_behalf_of: self.on_behalf_of.clone(),
        };
        Ok(action.digest())
    }
}

fn end(exit_code: i32, message: String, id: Option<&str>) -> ExecEnd {
    ExecEnd {
        exit_code,
        message,
        request_id: id.map(str::to_owned),
    }
}

fn unavailable(e: &ClientError, id: Option<&str>) -> ExecEnd {
    let what = match id {
        Some(id) => format!(" (request {id})"),
        None => String::new(),
    };
    end(
        EXIT_TEMPFAIL,
        format!("not running the command: {e}{what}"),
        id,
    )
}

/// Runs the gate: submit (or resume), wait for a decision, claim, run, report.
pub async fn run(client: &Client, spec: &ExecSpec, observer: &mut dyn ExecObserver) -> ExecEnd {
    if spec.command.is_empty() {
        return end(2, "no command given after `--`".into(), None);
    }
    let body = match spec.submit_body() {
        Ok(b) => b,
        Err(e) => return end(2, e, None),
    };
    let started = Instant::now();
    let submitted = match &spec.request_id {
        Some(id) => client.get_request(id).await,
        None => client.submit(&body, &ulid::Ulid::new().to_string()).await,
    };
    let mut view = match submitted {
        Ok(v) => v,
        Err(e @ ClientError::Api { .. }) if !e.is_transient() => {
            return end(
                if e.status() == Some(401) || e.status() == Some(403) {
                    EXIT_DENIED
                } else {
                    2
                },
                format!("not running the command: {e}"),
                None,
            )
        }
        Err(e) => return unavailable(&e, None),
    };
    let id = view.id.clone();
    let local_digest = match spec.local_digest(view.request.principal.clone()) {
        Ok(d) => d,
        Err(e) => return end(2, e, Some(&id)),
    };
    let give_up = spec.wait.map(|w| started + w);
    loop {
        observer.update(&view, started.elapsed());
        match view.status {
            RequestStatus::Pending => {
                let remaining = give_up.map(|g| g.saturating_duration_since(Instant::now()));
                if remaining == Some(Duration::ZERO) {
                    observer.finish_waiting();
                    return end(
                        EXIT_TEMPFAIL,
                        format!(
                            "gave up waiting after {}; request {id} is still pending",
                            human(started.elapsed())
                        ),
                        Some(&id),
                    );
                }
                let slice = remaining
                    .unwrap_or(Duration::from_secs(30))
                    .min(Duration::from_secs(30))
                    .max(Duration::from_secs(1));
                view = tokio::select! {
                    r = client.wait(&id, slice) => match r {
                        Ok(v) => v,
                        Err(e) if e.is_transient() => {
                            // keep waiting through a gateway restart, but never run without a claim
                            tokio::time::sleep(Duration::from_millis(500)).await;
                            continue;
                        }
                        Err(e) => { observer.finish_waiting(); return unavailable(&e, Some(&id)); }
                    },
                    _ = tokio::signal::ctrl_c() => {
                        observer.finish_waiting();
                        let _ = client.cancel(&id, Some("interrupted while waiting".into())).await;
                        return end(130, format!("interrupted; request {id} cancelled"), Some(&id));
                    }
                };
            }
            RequestStatus::Approved => {
                observer.finish_waiting();
                match client.claim(&id, &local_digest).await {
                    Ok(claimed) => return execute(client, spec, &claimed).await,
                    Err(e) if e.problem_slug() == Some("needs-approval") => {
                        view = match client.get_request(&id).await {
                            Ok(v) => v,
                            Err(e) => return unavailable(&e, Some(&id)),
                        };
                    }
                    Err(e) if e.is_transient() => return unavailable(&e, Some(&id)),
                    Err(e) => {
                        return end(
                            EXIT_DENIED,
                            format!("not running the command: {e} (request {id})"),
                            Some(&id),
                        )
                    }
                }
            }
            RequestStatus::Denied | RequestStatus::Cancelled => {
                observer.finish_waiting();
                let why = view
                    .status_reason
                    .clone()
                    .unwrap_or_else(|| view.verdict.reasons.join("; "));
                return end(
                    EXIT_DENIED,
                    format!("{}: {why} (request {id})", view.status),
                    Some(&id),
                );
            }
            RequestStatus::Expired | RequestStatus::Lapsed => {
                observer.finish_waiting();
                let why = view.status_reason.clone().unwrap_or_default();
                return end(
                    EXIT_TEMPFAIL,
                    format!("{}: {why} (request {id})", view.status),
                    Some(&id),
                );
            }
            RequestStatus::Executing | RequestStatus::Executed => {
                observer.finish_waiting();
                return end(
                    EXIT_DENIED,
                    format!(
                        "request {id} was already used (status {}); an approval runs once",
                        view.status
                    ),
                    Some(&id),
                );
            }
        }
    }
}

/// Runs the claimed command, streaming its output while hashing stdout, and
/// reports the outcome.
async fn execute(client: &Client, spec: &ExecSpec, claimed: &RequestView) -> ExecEnd {
    let id = claimed.id.clone();
    let started = Instant::now();
    let child = tokio::process::Command::new(&spec.command[0])
        .args(&spec.command[1..])
        .stdin(Stdio::inherit())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            let code = if e.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            };
            let summary = format!("could not start `{}`: {e}", spec.command[0]);
            let body = OutcomeBody {
                exit_code: Some(code),
                signal: None,
                duration_ms: 0,
                output_sha256: None,
                summary: Some(summary.clone()),
            };
            let report = client.outcome(&id, &body).await.err();
            return end(
                code,
                with_report_warning(format!("{summary} (request {id})"), report),
                Some(&id),
            );
        }
    };
    let (Some(out), Some(err)) = (child.stdout.take(), child.stderr.take()) else {
        return end(
            EXIT_TEMPFAIL,
            format!(
                "could not capture output of `{}` (request {id})",
                spec.command[0]
            ),
            Some(&id),
        );
    };
    let (stdout, stderr, status) = tokio::join!(
        pump(out, tokio::io::stdout()),
        pump(err, tokio::io::stderr()),
        child.wait()
    );
    let duration = started.elapsed();
    let (exit_code, signal) = match &status {
        Ok(s) => (s.code(), unix_signal(s)),
        Err(_) => (None, None),
    };
    let shown = match (exit_code, signal) {
        (Some(c), _) => format!("exit {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => "unknown exit status".to_owned(),
    };
    let summary = format!(
        "{shown} after {}; {} bytes on stdout, {} on stderr",
        human(duration),
        stdout.bytes,
        stderr.bytes
    );
    let body = OutcomeBody {
        exit_code,
        signal,
        duration_ms: duration.as_millis() as u64,
        output_sha256: Some(hex::encode(stdout.hasher.finalize())),
        summary: Some(summary),
    };
    let report = client.outcome(&id, &body).await.err();
    let code = exit_code.unwrap_or_else(|| 128 + signal.unwrap_or(0));
    end(
        code,
        with_report_warning(
            format!(
                "ran `{}`: {shown} (request {id})",
                shell_join(&spec.command)
            ),
            report,
        ),
        Some(&id),
    )
}

fn with_report_warning(message: String, report_error: Option<ClientError>) -> String {
    match report_error {
        None => message,
        Some(e) => format!("{message}; WARNING: the outcome could not be recorded: {e}"),
    }
}

struct Pumped {
    bytes: u64,
    hasher: Sha256,
}

/// Copies a child stream to ours, hashing it on the way.
async fn pump(mut from: impl AsyncRead + Unpin, mut to: impl AsyncWrite + Unpin) -> Pumped {
    let mut buf = vec![0u8; 16 * 1024];
    let mut p = Pumped {
        bytes: 0,
        hasher: Sha256::new(),
    };
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                p.hasher.update(&buf[..n]);
                p.bytes += n as u64;
                // a closed stdout must not stop us from draining the child
                let _ = to.write_all(&buf[..n]).await;
                let _ = to.flush().await;
            }
        }
    }
    p
}

#[cfg(unix)]
fn unix_signal(s: &std::process::ExitStatus) -> Option<i32> {
    use std::os::unix::process::ExitStatusExt;
    s.signal()
}

#[cfg(not(unix))]
fn unix_signal(_: &std::process::ExitStatus) -> Option<i32> {
    None
}

/// `1.2s`, `340ms`, `2m05s`.
pub fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_join_quotes_only_when_needed() {
        let argv: Vec<String> = ["pg_dump", "-t", "customers", "a b", "it's", ""]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            shell_join(&argv),
            r#"pg_dump -t customers 'a b' 'it'\''s' ''"#
        );
    }

    #[test]
    fn local_digest_depends_on_command() {
        let mut spec = ExecSpec {
            action: "db.export".into(),
            resource: "customers".into(),
            environment: Some("prod".into()),
            justification: None,
            context: Map::new(),
            on_behalf_of: None,
            wait: None,
            request_id: None,
            command: vec!["echo".into(), "a".into()],
        };
        let p: signoff_core::PrincipalRef = "agent:bot".parse().unwrap();
        let a = spec.local_digest(p.clone()).unwrap();
        spec.command[1] = "b".into();
        assert_ne!(a, spec.local_digest(p).unwrap());
        spec.context
            .insert("command".into(), Value::String("x".into()));
        assert!(spec.submit_body().is_err());
    }

    #[test]
    fn human_durations() {
        assert_eq!(human(Duration::from_millis(340)), "340ms");
        assert_eq!(human(Duration::from_millis(1250)), "1.2s");
        assert_eq!(human(Duration::from_secs(125)), "2m05s");
    }
}
