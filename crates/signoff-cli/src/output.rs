//! Human-readable output: tables, request details and the waiting spinner.

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

pub fn requests_table(requests: &[RequestView]) -> String {
    if requests.is_empty() {
        return "no requests\n".into();
    }
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
                    r.id.clone(),
                    r.status.to_string(),
                    r.request.action.clone(),
                    r.request.resource.clone(),
                    r.request.environment.clone().unwrap_or_else(|| "-".into()),
                    r.request.principal.to_string(),
                    if r.approved_by.is_empty() {
                        "-".into()
                    } else {
                        r.approved_by.join(",")
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
                    p.name.clone(),
                    p.kind.as_str().into(),
                    p.role.to_string(),
                    if p.groups.is_empty() {
                        "-".into()
                    } else {
                        p.groups.join(",")
                    },
                    p.owner.clone().unwrap_or_else(|| "-".into()),
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

pub fn request_detail(r: &RequestView) -> String {
    let mut s = String::new();
    let mut kv = |k: &str, v: String| s.push_str(&format!("{k:<14}{v}\n"));
    kv("id", r.id.clone());
    kv(
        "status",
        match &r.status_reason {
            Some(why) => format!("{} ({why})", r.status),
            None => r.status.to_string(),
        },
    );
    kv("action", r.request.action.clone());
    kv("resource", r.request.resource.clone());
    // What the catalog says (policies trust it) beside what the requester
    // said (a claim), so a reviewer sees a contradiction at a glance.
    match &r.facts {
        Some(f) => {
            let res = &f.resource;
            kv(
                "catalog",
                match (&res.entry, &res.defined_at) {
                    (Some(entry), Some(at)) => format!("known: entry `{entry}` ({at})"),
                    _ => "UNKNOWN resource: not in the catalog".into(),
                },
            );
            kv(
                "environment",
                format!(
                    "{} (catalog){}",
                    res.environment.as_deref().unwrap_or("-"),
                    if f.environment_mismatch {
                        "  MISMATCH with the asserted environment"
                    } else {
                        ""
                    }
                ),
            );
            kv(
                "asserted env",
                format!(
                    "{} (claimed by the requester)",
                    r.request.environment.as_deref().unwrap_or("-")
                ),
            );
            if let Some(c) = &res.classification {
                kv("classification", c.clone());
            }
            if let Some(o) = &res.owner {
                kv("owner", o.clone());
            }
        }
        None => kv(
            "environment",
            format!(
                "{} (asserted)",
                r.request.environment.as_deref().unwrap_or("-")
            ),
        ),
    }
    kv("principal", r.request.principal.to_string());
    kv(
        "on behalf of",
        r.request.on_behalf_of.clone().unwrap_or_else(|| "-".into()),
    );
    kv(
        "justification",
        r.request
            .justification
            .clone()
            .unwrap_or_else(|| "-".into()),
    );
    if !r.request.context.is_empty() {
        kv(
            "context",
            serde_json::to_string(&r.request.context).unwrap_or_default(),
        );
    }
    kv("verdict", r.verdict.summary());
    if !r.verdict.reasons.is_empty() {
        kv("reasons", r.verdict.reasons.join("; "));
    }
    kv("digest", r.digest.0.clone());
    kv("created", r.created_at.to_string());
    if let Some(at) = r.expires_at {
        kv("deadline", at.to_string());
    }
    for review in &r.reviews {
        kv(
            "review",
            format!(
                "{:?} by {} at {}{}",
                review.decision,
                review.reviewer,
                review.at,
                review
                    .reason
                    .as_deref()
                    .map(|x| format!(": {x}"))
                    .unwrap_or_default()
            )
            .to_lowercase(),
        );
    }
    if let Some(o) = &r.outcome {
        kv("outcome", o.summary.clone().unwrap_or_default());
    }
    s
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
            eprintln!("signoff: {text}");
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
        bar.set_message(message);
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
        approved.join(", ")
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
            format!(", env {e}, asserted {}", asserted.unwrap_or_default())
        }
        Some(e) => format!(", env {e}"),
        None => asserted.map(|e| format!(", env {e}")).unwrap_or_default(),
    };
    format!(
        "request {} needs approval{from} ({} on {}{env})",
        view.id, view.request.action, view.request.resource
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
    format!("approved by {}{via}{of}", review.reviewer)
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
                    bar.set_message(format!("request {id}: reconnecting ({error})"));
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
                    self.line(&format!("approved; running {}", self.command));
                }
            }
            _ => {}
        }
    }
}
