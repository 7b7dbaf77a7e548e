//! The exec gate: `signoff exec … -- CMD ARGS…` runs CMD only if the policy
//! allows it or enough other humans approve it.
//!
//! The gate computes the action digest *itself* from the command it is about
//! to run and presents it when claiming, so an approval given for one
//! command can never be used to run another, whatever the server says.
//! Everything else (waiting, claiming, reporting, failing closed) is the
//! [`crate::session`]; this module spawns the command, hashes its stdout and
//! maps the session's end to exit statuses.

use crate::binding::Binding;
use crate::session::{Execution, GateAction, Observer, Session, SessionEnd, Start};
use crate::{EXIT_DENIED, EXIT_INTERRUPTED, EXIT_TEMPFAIL, EXIT_USAGE};
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};
use signoff_client::Client;
use signoff_core::wire::{OutcomeBody, RequestView, SubmitRequest};
use signoff_core::{ActionRequest, Digest, PrincipalRef};
use std::future::Future;
use std::process::Stdio;
use std::sync::Mutex;
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
    /// Variables passed to the command besides [`crate::binding::BASE_ENV`]
    /// (`--pass-env`); their values are bound and shown to reviewers.
    pub pass_env: Vec<String>,
}

/// How the gate ended: the exit status to use and the line for stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecEnd {
    /// CMD's own status when it ran, else [`EXIT_DENIED`], [`EXIT_TEMPFAIL`],
    /// [`EXIT_USAGE`] or [`EXIT_INTERRUPTED`].
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
    fn context_with_command(&self, binding: &Binding) -> Result<Map<String, Value>, String> {
        for key in ["command", "exec"] {
            if self.context.contains_key(key) {
                return Err(format!(
                    "context key `{key}` is set by the exec gate; do not pass it"
                ));
            }
        }
        let mut ctx = self.context.clone();
        ctx.insert("command".into(), Value::String(shell_join(&self.command)));
        ctx.insert("exec".into(), binding.to_context());
        Ok(ctx)
    }

    /// What this command would run now, here.
    fn bind(&self) -> Result<Binding, String> {
        Binding::take(&self.command, &self.pass_env)
    }

    fn submit_body(&self, binding: &Binding) -> Result<SubmitRequest, String> {
        Ok(SubmitRequest {
            action: self.action.clone(),
            resource: self.resource.clone(),
            environment: self.environment.clone(),
            context: self.context_with_command(binding)?,
            justification: self.justification.clone(),
            on_behalf_of: self.on_behalf_of.clone(),
            gate: Some("exec".into()),
            claim_digest: None,
        })
    }

    /// The digest of running this command with `binding`, for `principal`.
    fn local_digest(&self, principal: PrincipalRef, binding: &Binding) -> Result<Digest, String> {
        let action = ActionRequest {
            action: self.action.clone(),
            resource: self.resource.clone(),
            environment: self.environment.clone(),
            context: self.context_with_command(binding)?,
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

/// ` (request ID)`, or nothing when there is no request.
fn naming(id: Option<&str>) -> String {
    id.map(|id| format!(" (request {id})")).unwrap_or_default()
}

/// Runs the gate: submit (or resume `spec.request_id`), wait for a decision,
/// claim, run, report. `interrupt` (ctrl-c for the CLI) cancels the request
/// while it waits.
pub async fn run(
    client: &Client,
    spec: &ExecSpec,
    observer: &mut dyn Observer,
    interrupt: impl Future<Output = ()> + Send,
) -> ExecEnd {
    if spec.command.is_empty() {
        return end(EXIT_USAGE, "no command given after `--`".into(), None);
    }
    let submitted = match spec.bind() {
        Ok(b) => b,
        Err(e) => return end(EXIT_USAGE, format!("not running the command: {e}"), None),
    };
    let start = match (&spec.request_id, spec.submit_body(&submitted)) {
        (_, Err(e)) => return end(EXIT_USAGE, e, None),
        (Some(id), Ok(_)) => Start::Resume { id: id.clone() },
        (None, Ok(body)) => Start::submit(body),
    };
    let session = Session::new(client).give_up_after(spec.wait);
    let command = Command {
        spec,
        bound: Mutex::new(None),
    };
    let finished = session.run(start, command, observer, interrupt).await;
    let refused = matches!(finished, SessionEnd::ClaimRefused { .. });
    let mut ended = exec_end(finished);
    if let (true, Some(id)) = (refused, ended.request_id.clone()) {
        // say what changed since the request was submitted, if anything did:
        // the binding it recorded against what the gate would run now
        if let (Ok(view), Ok(now)) = (client.get_request(&id).await, spec.bind()) {
            let changed = view
                .request
                .context
                .get("exec")
                .map(|approved| now.differences_from(approved))
                .unwrap_or_default();
            if !changed.is_empty() {
                ended.message = format!(
                    "{}; since the request was submitted: {}",
                    ended.message,
                    changed.join("; ")
                );
            }
        }
    }
    ended
}

/// Maps how the session ended to the exit statuses of `signoff exec`
/// (README, "Exit codes"): CMD's own when it ran, 77 refused, 75 may pass
/// later, 2 for the caller to fix.
fn exec_end(finished: SessionEnd<Ran>) -> ExecEnd {
    let id = finished.request_id().map(str::to_owned);
    let id = id.as_deref();
    match finished {
        SessionEnd::Ran {
            output,
            report_error,
            ..
        } => {
            let message = match report_error {
                None => output.message,
                Some(e) => format!(
                    "{}; WARNING: the outcome could not be recorded: {e}",
                    output.message
                ),
            };
            end(output.code, message, id)
        }
        SessionEnd::Denied { reason, .. } => {
            end(EXIT_DENIED, format!("{reason}{}", naming(id)), id)
        }
        SessionEnd::ClaimRefused { error, .. } => end(
            EXIT_DENIED,
            format!("not running the command: {error}{}", naming(id)),
            id,
        ),
        SessionEnd::AlreadyUsed { status, .. } => end(
            EXIT_DENIED,
            format!(
                "request {} was already used (status {status}); an approval runs once",
                id.unwrap_or_default()
            ),
            id,
        ),
        SessionEnd::Expired { status, reason, .. } => end(
            EXIT_TEMPFAIL,
            format!("{status}: {reason}{}", naming(id)),
            id,
        ),
        SessionEnd::GaveUp { waited, .. } => end(
            EXIT_TEMPFAIL,
            format!(
                "gave up waiting after {}; request {} is still pending",
                human(waited),
                id.unwrap_or_default()
            ),
            id,
        ),
        SessionEnd::Unavailable { error, .. } => end(
            EXIT_TEMPFAIL,
            format!("not running the command: {error}{}", naming(id)),
            id,
        ),
        // a role or credential the gateway refuses for this action (403:
        // e.g. a token bound to another gate) is a refusal; anything else
        // — a missing, wrong or revoked token (401), a malformed request,
        // an unknown id — is for the caller to fix
        SessionEnd::Rejected { error, .. } => end(
            if matches!(error.status(), Some(403 | 409)) {
                EXIT_DENIED
            } else {
                EXIT_USAGE
            },
            format!("not running the command: {error}{}", naming(id)),
            id,
        ),
        SessionEnd::Interrupted { cancel_error, .. } => end(
            EXIT_INTERRUPTED,
            match (id, cancel_error) {
                (Some(id), None) => format!("interrupted; request {id} cancelled"),
                (Some(id), Some(e)) => {
                    format!("interrupted; request {id} could not be cancelled: {e}")
                }
                (None, _) => "interrupted before the request was submitted".to_owned(),
            },
            id,
        ),
        SessionEnd::Usage { message, .. } => {
            end(EXIT_USAGE, format!("{message}{}", naming(id)), id)
        }
    }
}

/// What running the command left for the exit status.
#[derive(Debug)]
pub struct Ran {
    /// CMD's own exit status (126/127 when it could not start, 128+N when
    /// killed by signal N).
    pub code: i32,
    /// The line for stderr.
    pub message: String,
}

/// The command, as the session's action.
struct Command<'a> {
    spec: &'a ExecSpec,
    /// The binding the last digest was computed from: the claim presents
    /// that digest, so exactly this is what runs.
    bound: Mutex<Option<Binding>>,
}

impl GateAction for Command<'_> {
    type Output = Ran;

    fn digest(&self, principal: &PrincipalRef) -> Result<Digest, String> {
        let binding = self.spec.bind()?;
        let digest = self.spec.local_digest(principal.clone(), &binding)?;
        *self.bound.lock().unwrap_or_else(|p| p.into_inner()) = Some(binding);
        Ok(digest)
    }

    async fn run(self, claimed: &RequestView) -> Execution<Ran> {
        let bound = self.bound.into_inner().unwrap_or_else(|p| p.into_inner());
        match bound {
            Some(binding) => execute(self.spec, &binding, &claimed.id).await,
            // the session computes a digest before every claim
            None => not_started(
                &claimed.id,
                EXIT_TEMPFAIL,
                "the gate lost what it bound; not running it".into(),
            ),
        }
    }
}

/// The execution of a command that did not start.
fn not_started(id: &str, code: i32, summary: String) -> Execution<Ran> {
    Execution {
        outcome: OutcomeBody::not_run(Some(code), summary.clone()),
        output: Ran {
            code,
            message: format!("{summary} (request {id})"),
        },
    }
}

/// Runs the claimed command as bound: the resolved executable (keeping the
/// `argv[0]` the user typed), in the bound directory, with only the bound
/// environment; streams its output while hashing stdout.
async fn execute(spec: &ExecSpec, binding: &Binding, id: &str) -> Execution<Ran> {
    let started = Instant::now();
    let mut command = tokio::process::Command::new(&binding.executable);
    #[cfg(unix)]
    command.arg0(&spec.command[0]);
    let child = command
        .args(&spec.command[1..])
        .current_dir(&binding.cwd)
        .env_clear()
        .envs(binding.child_env().iter().map(|(k, v)| (k, v)))
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
            return not_started(id, code, summary);
        }
    };
    let (Some(out), Some(err)) = (child.stdout.take(), child.stderr.take()) else {
        // cannot happen with piped streams; never leave it running unwatched
        let _ = child.start_kill();
        let summary = format!("could not capture the output of `{}`", spec.command[0]);
        return Execution {
            outcome: OutcomeBody {
                exit_code: None,
                signal: None,
                duration_ms: started.elapsed().as_millis() as u64,
                output_sha256: None,
                summary: Some(summary.clone()),
            },
            output: Ran {
                code: EXIT_TEMPFAIL,
                message: format!("{summary} (request {id})"),
            },
        };
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
    Execution {
        outcome: OutcomeBody {
            exit_code,
            signal,
            duration_ms: duration.as_millis() as u64,
            output_sha256: Some(hex::encode(stdout.hasher.finalize())),
            summary: Some(summary),
        },
        output: Ran {
            code: exit_code.unwrap_or_else(|| 128 + signal.unwrap_or(0)),
            message: format!(
                "ran `{}`: {shown} (request {id})",
                shell_join(&spec.command)
            ),
        },
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
            pass_env: vec![],
        };
        let p: signoff_core::PrincipalRef = "agent:bot".parse().unwrap();
        let a = spec.local_digest(p.clone(), &spec.bind().unwrap()).unwrap();
        spec.command[1] = "b".into();
        assert_ne!(a, spec.local_digest(p, &spec.bind().unwrap()).unwrap());
        for key in ["command", "exec"] {
            let mut bad = spec.clone();
            bad.context.insert(key.into(), Value::String("x".into()));
            assert!(bad.submit_body(&spec.bind().unwrap()).is_err(), "{key}");
        }
    }

    #[test]
    fn human_durations() {
        assert_eq!(human(Duration::from_millis(340)), "340ms");
        assert_eq!(human(Duration::from_millis(1250)), "1.2s");
        assert_eq!(human(Duration::from_secs(125)), "2m05s");
    }
}
