//! Human-readable output: tables, request details and the waiting spinner.

use signoff_core::wire::RequestView;
use signoff_core::Principal;
use signoff_gates::exec::ExecObserver;
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
    kv(
        "environment",
        r.request.environment.clone().unwrap_or_else(|| "-".into()),
    );
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

/// Shows elapsed time, the request id and approvals so far while waiting,
/// on a terminal only; scripts get a clean stderr.
pub struct Spinner {
    bar: Option<indicatif::ProgressBar>,
}

impl Spinner {
    pub fn new() -> Self {
        Spinner { bar: None }
    }
}

impl ExecObserver for Spinner {
    fn update(&mut self, view: &RequestView, waited: Duration) {
        if view.status != signoff_core::RequestStatus::Pending || !std::io::stderr().is_terminal() {
            return;
        }
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
        let needed = view
            .verdict
            .requirement
            .as_ref()
            .map(|r| r.to_string())
            .unwrap_or_default();
        let approved = if view.approved_by.is_empty() {
            "none yet".to_owned()
        } else {
            view.approved_by.join(", ")
        };
        let _ = waited;
        bar.set_message(format!(
            "request {} needs {needed} · approved by: {approved}",
            view.id
        ));
    }

    fn finish_waiting(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}
