//! Human-readable output: tables, request details and the waiting spinner.

use signoff_core::display::{cell, one_line, text_lines};
use signoff_core::wire::RequestView;
use signoff_core::{Principal, RequestStatus, Requirement, Review, ReviewDecision};
use signoff_gates::session::{Observer, Progress};
use std::io::IsTerminal;
use std::time::Duration;

pub fn stdout_is_terminal() -> bool {
    std::io::stdout().is_terminal()
}

fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<String>| {
        let mut s = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect::<Vec<_>>()
            .join("  ");
        s.truncate(s.trim_end().len());
        s.push('\n');
        s
    };
    out.push_str(&line(headers.iter().map(|h| h.to_string()).collect()));
    for row in rows {
        out.push_str(&line(row));
    }
    out
}

/// Widest a requester-supplied table cell gets before it is shortened.
const CELL: usize = 40;

pub fn requests_table(requests: &[RequestView]) -> String {
    if requests.is_empty() {
        return "no requests\n".into();
    }
    // Every cell is one escaped line: a resource with a newline or an ESC
    // sequence cannot fake a row or hide one.
    table(
        &[
            "ID",
            "STATUS",
            "ACTION",
            "RESOURCE",
            "ENV",
            "PRINCIPAL",
            "APPROVED BY",
            "CREATED",
        ],
        requests
            .iter()
            .map(|r| {
                vec![
                    cell(&r.id, CELL),
                    r.status.to_string(),
                    cell(&r.request.action, CELL),
                    cell(&r.request.resource, CELL),
                    r.request
                        .environment
                        .as_deref()
                        .map(|e| cell(e, CELL))
                        .unwrap_or_else(|| "-".into()),
                    cell(&r.request.principal.to_string(), CELL),
                    if r.approved_by.is_empty() {
                        "-".into()
                    } else {
                        cell(&r.approved_by.join(","), CELL)
                    },
                    r.created_at.strftime("%Y-%m-%d %H:%M:%S").to_string(),
                ]
            })
            .collect(),
    )
}

pub fn principals_table(list: &[Principal]) -> String {
    table(
        &["NAME", "KIND", "ROLE", "GROUPS", "OWNER", "STATUS"],
        list.iter()
            .map(|p| {
                vec![
                    one_line(&p.name),
                    p.kind.as_str().into(),
                    p.role.to_string(),
                    if p.groups.is_empty() {
                        "-".into()
                    } else {
                        one_line(&p.groups.join(","))
                    },
                    p.owner
                        .as_deref()
                        .map(one_line)
                        .unwrap_or_else(|| "-".into()),
                    if p.revoked_at.is_some() {
                        "revoked".into()
                    } else {
                        "active".into()
                    },
                ]
            })
            .collect(),
    )
}

/// Width of the key column of `signoff show`.
const KEY: usize = 15;

/// `signoff show`: what will run comes first, on lines nothing the
/// requester wrote can precede; then the gateway's facts; then, under
/// their own heading, everything the requester supplied (claims, never
/// verified). Every value is escaped ([`signoff_core::display`]): no
/// control character reaches the terminal, a multi-line justification is
/// shown as indented `| ` lines that cannot pass for fields, and text is
/// shown as written (a reviewer's reason is not lowercased).
pub fn request_detail(r: &RequestView) -> String {
    let mut s = String::new();
    let mut kv = |k: &str, v: &str| s.push_str(&format!("{k:<KEY$}{v}\n"));
    kv(
        "action",
        &format!(
            "{} on {}",
            one_line(&r.request.action),
            one_line(&r.request.resource)
        ),
    );
    // The exec gate binds the command it runs into the digest; through any
    // other gate a `command` key is just one more claim (shown below).
    if r.gate.as_deref() == Some("exec") {
        if let Some(command) = r.request.context.get("command").and_then(|c| c.as_str()) {
            kv("command", &one_line(command));
        }
    }
    kv("id", &one_line(&r.id));
    kv("status", &r.status.to_string());
    if let Some(why) = &r.status_reason {
        kv("status reason", &one_line(why));
    }
    kv("principal", &one_line(&r.request.principal.to_string()));
    // What the catalog says (policies trust it) beside what the requester
    // said (a claim), so a reviewer sees a contradiction at a glance.
    match &r.facts {
        Some(f) => {
            let res = &f.resource;
            kv(
                "catalog",
                &match (&res.entry, &res.defined_at) {
                    (Some(entry), Some(at)) => {
                        format!("known: entry `{}` ({})", one_line(entry), one_line(at))
                    }
                    _ => "UNKNOWN resource: not in the catalog".into(),
                },
            );
            kv(
                "environment",
                &format!(
                    "{} (catalog){}",
                    one_line(res.environment.as_deref().unwrap_or("-")),
                    if f.environment_mismatch {
                        "  MISMATCH with the asserted environment"
                    } else {
                        ""
                    }
                ),
            );
            kv(
                "asserted env",
                &format!(
                    "{} (claimed by the requester)",
                    one_line(r.request.environment.as_deref().unwrap_or("-"))
                ),
            );
            if let Some(c) = &res.classification {
                kv("classification", &one_line(c));
            }
            if let Some(o) = &res.owner {
                kv("owner", &one_line(o));
            }
        }
        None => kv(
            "environment",
            &format!(
                "{} (asserted)",
                one_line(r.request.environment.as_deref().unwrap_or("-"))
            ),
        ),
    }
    kv(
        "on behalf of",
        &r.request
            .on_behalf_of
            .as_deref()
            .map(one_line)
            .unwrap_or_else(|| "-".into()),
    );
    if let Some(gate) = &r.gate {
        kv("gate", &one_line(gate));
    }
    kv("verdict", &one_line(&r.verdict.summary()));
    for reason in &r.verdict.reasons {
        kv("policy reason", &one_line(reason));
    }
    kv("digest", &r.digest.0);
    kv("created", &r.created_at.to_string());
    if let Some(at) = r.expires_at {
        kv("deadline", &at.to_string());
    }
    s.push_str(&reviews_block(&r.reviews));
    let mut kv = |k: &str, v: &str| s.push_str(&format!("{k:<KEY$}{v}\n"));
    if let Some(at) = r.decided_at {
        kv("decided", &format!("{at} ({})", r.status));
    }
    if let Some(at) = r.claimed_at {
        kv("claimed", &at.to_string());
    }
    if let Some(o) = &r.outcome {
        let status = match (o.exit_code, o.signal) {
            (Some(code), _) => format!("exit {code}"),
            (None, Some(sig)) => format!("signal {sig}"),
            (None, None) => "no exit status".into(),
        };
        kv("outcome", &format!("{status} after {} ms", o.duration_ms));
    }
    s.push_str("from requester (claims, not verified by signoff):\n");
    let mut claim = |k: &str, lines: Vec<String>| {
        for (i, line) in lines.iter().enumerate() {
            let key = if i == 0 { k } else { "" };
            s.push_str(&format!("  {key:<16} | {line}\n"));
        }
    };
    claim("resource", vec![one_line(&r.request.resource)]);
    claim(
        "environment",
        vec![r
            .request
            .environment
            .as_deref()
            .map(one_line)
            .unwrap_or_else(|| "-".into())],
    );
    claim(
        "justification",
        r.request
            .justification
            .as_deref()
            .map(text_lines)
            .unwrap_or_else(|| vec!["-".into()]),
    );
    for (k, v) in &r.request.context {
        let value = match v {
            serde_json::Value::String(text) => one_line(text),
            other => one_line(&serde_json::to_string(other).unwrap_or_default()),
        };
        claim(&format!("context.{}", one_line(k)), vec![value]);
    }
    if let Some(summary) = r.outcome.as_ref().and_then(|o| o.summary.as_deref()) {
        claim("outcome summary", text_lines(summary));
    }
    s
}

/// The reviews of `signoff show`, one per line in the order they were
/// made, their columns aligned: decision, reviewer, channel, time (as
/// recorded), then the reviewer's reason as written — escaped, never
/// re-cased — after `| `, a multi-line reason continuing on `| ` lines
/// under it.
fn reviews_block(reviews: &[Review]) -> String {
    let rows: Vec<[String; 4]> = reviews
        .iter()
        .map(|r| {
            [
                match r.decision {
                    ReviewDecision::Approve => "approve".to_owned(),
                    ReviewDecision::Deny => "deny".to_owned(),
                },
                one_line(&r.reviewer),
                r.channel
                    .map(|c| format!("via {c}"))
                    .unwrap_or_else(|| "-".into()),
                r.at.to_string(),
            ]
        })
        .collect();
    let mut widths = [0usize; 4];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for (i, (row, review)) in rows.iter().zip(reviews).enumerate() {
        let key = if i == 0 { "reviews" } else { "" };
        let columns = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect::<Vec<_>>()
            .join("  ");
        let lines = review.reason.as_deref().map(text_lines).unwrap_or_default();
        match lines.split_first() {
            None => out.push_str(&format!("{key:<KEY$}{}\n", columns.trim_end())),
            Some((first, rest)) => {
                out.push_str(&format!("{key:<KEY$}{columns}  | {first}\n"));
                let indent = KEY + columns.chars().count() + 2;
                for line in rest {
                    out.push_str(&format!("{:indent$}| {line}\n", ""));
                }
            }
        }
    }
    out
}

/// Shows what `signoff exec` is waiting for. On a terminal: a spinner with
/// the elapsed time, the request id and who has approved so far, updated as
/// each approval lands. Otherwise (a CI log, a pipe): one plain line per
/// event, prefixed `signoff:`, so the log says what to approve and by whom
/// it was approved. Nothing is shown for an action that runs (or is denied)
/// at once: the final line says it all.
pub struct ExecProgress {
    /// Shown as `running CMD` once approved.
    command: String,
    /// A spinner on a terminal, plain lines otherwise.
    terminal: bool,
    bar: Option<indicatif::ProgressBar>,
    /// The spinner's message, restored after a reconnection notice.
    message: String,
    /// Whether the request was ever pending: only then is the claim worth a line.
    waited: bool,
}

impl ExecProgress {
    /// Progress for running `command`, in the form stderr supports.
    pub fn new(command: String) -> Self {
        ExecProgress {
            command,
            terminal: std::io::stderr().is_terminal(),
            bar: None,
            message: String::new(),
            waited: false,
        }
    }

    fn line(&self, text: &str) {
        if !self.terminal {
            // escaped as a whole too: a line is never more than one line
            eprintln!("signoff: {}", one_line(text));
        }
    }

    fn spinner(&mut self, message: String) {
        if !self.terminal {
            return;
        }
        self.message.clone_from(&message);
        let bar = self.bar.get_or_insert_with(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            // the template's {elapsed} keeps ticking between long-poll answers
            if let Ok(style) =
                indicatif::ProgressStyle::with_template("{spinner} waiting {elapsed} · {msg}")
            {
                bar.set_style(style);
            }
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        bar.set_message(one_line(&message));
    }

    fn stop_spinner(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }

    fn waiting_for(&mut self, view: &RequestView) {
        self.waited = true;
        self.spinner(spinner_message(
            &view.id,
            view.verdict.requirement.as_ref(),
            &view.approved_by,
        ));
    }
}

impl Drop for ExecProgress {
    fn drop(&mut self) {
        self.stop_spinner();
    }
}

/// `request ID needs sre:2 · approved by: alice (1 of 2)`.
fn spinner_message(id: &str, requirement: Option<&Requirement>, approved: &[String]) -> String {
    let needed = requirement.map(|r| r.to_string()).unwrap_or_default();
    let seats: u32 = requirement
        .map(|r| r.0.iter().map(|q| q.count).sum())
        .unwrap_or(0);
    let who = if approved.is_empty() {
        "none yet".to_owned()
    } else {
        one_line(&approved.join(", "))
    };
    format!(
        "request {id} needs {needed} · approved by: {who} ({} of {seats})",
        approved.len()
    )
}

/// `request ID needs approval from sre:2 (db.export on customers, env prod)`.
pub fn needs_approval_line(view: &RequestView) -> String {
    let from = view
        .verdict
        .requirement
        .as_ref()
        .map(|r| format!(" from {r}"))
        .unwrap_or_default();
    // The catalog's environment when it knows one (and the claim beside it
    // when they differ); otherwise the requester's claim, as sent.
    let asserted = view.request.environment.as_deref();
    let env = match view
        .facts
        .as_ref()
        .and_then(|f| f.resource.environment.as_deref())
    {
        Some(e) if asserted.is_some_and(|a| !a.eq_ignore_ascii_case(e)) => {
            format!(
                ", env {}, asserted {}",
                one_line(e),
                one_line(asserted.unwrap_or_default())
            )
        }
        Some(e) => format!(", env {}", one_line(e)),
        None => asserted
            .map(|e| format!(", env {}", one_line(e)))
            .unwrap_or_default(),
    };
    format!(
        "request {} needs approval{from} ({} on {}{env})",
        one_line(&view.id),
        one_line(&view.request.action),
        one_line(&view.request.resource)
    )
}

/// `approved by alice via cli (1 of sre:2)`.
pub fn approval_line(
    review: &Review,
    approved_so_far: usize,
    requirement: Option<&Requirement>,
) -> String {
    let of = requirement
        .map(|r| format!(" ({approved_so_far} of {r})"))
        .unwrap_or_default();
    let via = review
        .channel
        .map(|c| format!(" via {c}"))
        .unwrap_or_default();
    format!("approved by {}{via}{of}", one_line(&review.reviewer))
}

impl Observer for ExecProgress {
    fn on_progress(&mut self, event: &Progress) {
        match event {
            Progress::Submitted(view) if view.status == RequestStatus::Pending => {
                self.line(&needs_approval_line(view));
                self.line(&format!("approve with: signoff approve {}", view.id));
                self.waiting_for(view);
            }
            Progress::ReviewLanded {
                id,
                review,
                approved_so_far,
                requirement,
            } if review.decision == ReviewDecision::Approve => {
                self.line(&approval_line(
                    review,
                    approved_so_far.len(),
                    requirement.as_ref(),
                ));
                self.spinner(spinner_message(id, requirement.as_ref(), approved_so_far));
            }
            Progress::NeedsMoreApprovals(view) => {
                let needed = view
                    .verdict
                    .requirement
                    .as_ref()
                    .map(|r| r.to_string())
                    .unwrap_or_default();
                self.line(&format!(
                    "the policy changed and now needs {needed}; request {} is pending again",
                    view.id
                ));
                self.waiting_for(view);
            }
            Progress::Reconnecting { id, error, attempt } => {
                // one line per outage, not one per retry
                if *attempt == 1 {
                    self.line(&format!("{error}; still waiting for request {id}"));
                }
                if let Some(bar) = &self.bar {
                    bar.set_message(one_line(&format!("request {id}: reconnecting ({error})")));
                }
            }
            Progress::Reconnected { id } => {
                self.line(&format!(
                    "the gateway answers again; waiting for request {id}"
                ));
                if self.bar.is_some() {
                    self.spinner(self.message.clone());
                }
            }
            Progress::Decided(_) => self.stop_spinner(),
            Progress::Claimed(_) => {
                self.stop_spinner();
                if self.waited {
                    self.line(&format!("approved; running {}", one_line(&self.command)));
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A request as a hostile requester would shape it: a justification
    /// whose lines imitate fields, an ESC sequence that would hide text on
    /// a terminal, a CR that would overwrite a line, a bidi override.
    fn hostile() -> RequestView {
        serde_json::from_value(json!({
            "id": "01JABCDEFGHJKMNPQRSTVWXYZ0",
            "status": "pending",
            "status_reason": null,
            "action": "db.export",
            "resource": "customers\u{1b}[8m; drop table users",
            "environment": "prod",
            "context": {
                "command": "pg_dump customers\rls -l",
                "rows": 1000,
                "note": "txt\u{202e}exe.sh"
            },
            "justification": "Q3 report\nverdict       allow (no approval needed)\n\u{1b}[8mstatus        approved\u{1b}[0m",
            "principal": "agent:etl-bot",
            "on_behalf_of": null,
            "digest": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
            "gate": "exec",
            "verdict": {
                "decision": "approval_required",
                "policy_ids": ["prod-export-two-sre"],
                "policy_set_hash": "abc",
                "requirement": [{"group": "sre", "count": 2}],
                "ttl_seconds": 1800,
                "reasons": ["customer data leaves production"],
                "errors": []
            },
            "approved_by": ["alice"],
            "reviews": [{
                "reviewer": "alice",
                "decision": "approve",
                "reason": "Not During Freeze, Ask Alice\nsecond line",
                "groups": ["sre"],
                "at": "2026-12-02T10:00:00Z",
                "channel": "cli"
            }, {
                "reviewer": "bartholomew",
                "decision": "deny",
                "reason": null,
                "groups": ["sre"],
                "at": "2026-12-02T10:05:30.5Z",
                "channel": "api"
            }, {
                "reviewer": "bob",
                "decision": "deny",
                "reason": "Not now: ask Alice",
                "groups": ["sre"],
                "at": "2026-12-02T10:06:00Z",
                "channel": null
            }],
            "created_at": "2026-12-02T09:59:00Z",
            "expires_at": "2026-12-02T10:29:00Z",
            "decided_at": null,
            "claimed_at": null,
            "outcome": null,
            "version": 1
        }))
        .expect("valid view")
    }

    #[test]
    fn show_escapes_and_marks_requester_text() {
        let text = request_detail(&hostile());
        assert!(
            !text.chars().any(|c| c.is_control() && c != '\n'),
            "{text:?}"
        );
        assert!(!text.contains('\u{202e}'));
        // the reviewers' words and times as recorded: not re-cased, not reformatted
        assert!(text.contains("| Not During Freeze, Ask Alice\n"), "{text}");
        assert!(text.contains("| Not now: ask Alice\n"), "{text}");
        assert!(text.contains("2026-12-02T10:05:30.5Z"), "{text}");
        // the reviews' columns line up
        let columns: Vec<usize> = text
            .lines()
            .filter(|l| l.contains(" 2026-12-02T10:0") && !l.starts_with("created"))
            .map(|l| l.find("2026-").unwrap_or_default())
            .collect();
        assert_eq!(columns.len(), 3, "{text}");
        assert!(columns.windows(2).all(|w| w[0] == w[1]), "{text}");
        insta::assert_snapshot!(text);
    }

    #[test]
    fn ls_rows_stay_one_line() {
        let text = requests_table(&[hostile()]);
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(!text.contains('\u{1b}'));
        insta::assert_snapshot!(text);
    }

    #[test]
    fn progress_lines_are_escaped() {
        let line = needs_approval_line(&hostile());
        assert_eq!(
            line,
            "request 01JABCDEFGHJKMNPQRSTVWXYZ0 needs approval from sre:2 (db.export on customers\\e[8m; drop table users, env prod)"
        );
    }
}
