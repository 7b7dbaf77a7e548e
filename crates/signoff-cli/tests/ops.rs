#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on setup failures
//! What an operator and a script see of a running gateway, through the real
//! binary:
//!
//! - exit codes with one meaning each, for every client command (the
//!   README's table, row by row);
//! - the structured log: one JSON line per decision, review (recorded or
//!   refused, with the rule), claim, outcome, cancellation, expiry and
//!   policy reload; `--log-format`, `SIGNOFF_LOG_FORMAT`, `log_format`; no
//!   colour codes in a redirected log;
//! - `/metrics` counting what it says;
//! - `serve` that cannot listen leaves no files behind; `serve --dev`
//!   names its config file; `signoff policy reload`.
//!
//! ```text
//! cargo test -p signoff --test ops
//! ```

mod common;

use common::*;
use serde_json::{json, Value};
use std::time::Duration;

/// A local address nothing listens on.
fn closed_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

/// Submits a `test.export` (two SRE approvals, 10 minutes) as the bot.
fn pending_export(gw: &Gateway, resource: &str) -> String {
    let v = gw.submit(
        "bot",
        json!({"action": "test.export", "resource": resource, "environment": "prod"}),
    );
    assert_eq!(v["status"], "pending", "{v}");
    v["id"].as_str().unwrap().to_owned()
}

fn assert_code(out: &Out, code: i32, row: &str) {
    assert_eq!(out.code, code, "README row `{row}`: {out}");
}

/// The README's exit-code table, row by row, for every client command.
#[test]
fn exit_codes_have_one_meaning_each() {
    let gw = Gateway::start(Backend::Sqlite);
    let unknown = "01JABCDEFGHJKMNPQRSTVWXYZ0";

    // the command's own when it ran
    let row = "command's own";
    let out = gw.cli_as(
        "bot",
        exec_args(
            "test.read",
            "customers",
            "dev",
            &[],
            &["sh", "-c", "exit 3"],
        ),
    );
    assert_code(&out, 3, row);
    let id = out.request_id();
    for args in [
        vec!["show", id.as_str()],
        vec!["show", id.as_str(), "--json"],
        vec!["ls"],
        vec!["ls", "--status", "executed", "--json"],
    ] {
        assert_code(&gw.cli_as("alice", &args), 0, row);
    }
    let pending = pending_export(&gw, "orders");
    assert_code(
        &gw.cli_as("alice", ["approve", &pending, "--reason", "Looks Fine"]),
        0,
        row,
    );
    let to_cancel = pending_export(&gw, "invoices");
    assert_code(&gw.cli_as("bot", ["cancel", &to_cancel]), 0, row);
    assert_code(&gw.cli_as("root", ["policy", "reload"]), 0, row);
    let out = gw.cli_as(
        "bot2",
        [
            "request",
            "--action",
            "test.read",
            "--resource",
            "customers",
            "--json",
        ],
    );
    assert_code(&out, 0, row);

    // 77: policy, a reviewer, a rule of the gateway or a claim refused it
    let row = "77 refused";
    let out = gw.cli_as(
        "bot",
        exec_args("test.drop", "customers", "dev", &[], &["true"]),
    );
    assert_code(&out, 77, row);
    let out = gw.cli_as(
        "bot2",
        [
            "request",
            "--action",
            "test.drop",
            "--resource",
            "customers",
        ],
    );
    assert_code(&out, 77, row);
    // separation of duties: olga owns the bot
    assert_code(&gw.cli_as("olga", ["approve", &pending]), 77, row);
    // one review per human
    assert_code(&gw.cli_as("alice", ["approve", &pending]), 77, row);
    // a role that may not review, and an agent
    assert_code(&gw.cli_as("audrey", ["approve", &pending]), 77, row);
    assert_code(
        &gw.cli_as("bot", ["deny", &pending, "--reason", "no"]),
        77,
        row,
    );
    // a request that is no longer pending
    assert_code(&gw.cli_as("alice", ["approve", &to_cancel]), 77, row);
    assert_code(&gw.cli_as("bot", ["cancel", &to_cancel]), 77, row);
    // a reviewer denied it: exec waiting on it ends 77
    let denied = pending_export(&gw, "ledger");
    gw.review("bob", &denied, "deny", Some("Not During Freeze"))
        .expect(200);
    let out = gw.cli_as(
        "bot",
        exec_args(
            "test.export",
            "ledger",
            "prod",
            &["--request", &denied],
            &["true"],
        ),
    );
    assert_code(&out, 77, row);
    // only admins reload policies
    assert_code(&gw.cli_as("alice", ["policy", "reload"]), 77, row);

    // 75: may pass later
    let row = "75 may pass";
    let out = gw.cli_as(
        "bot",
        exec_args(
            "test.export",
            "customers",
            "prod",
            &["--wait", "1s"],
            &["true"],
        ),
    );
    assert_code(&out, 75, row);
    let out = gw.cli_as(
        "bot2",
        [
            "request",
            "--action",
            "test.quick",
            "--resource",
            "customers",
            "--wait",
            "20s",
        ],
    );
    assert_code(&out, 75, row);
    assert!(out.stdout.contains("expired"), "{out}");
    let nowhere = closed_address();
    let down = [("SIGNOFF_URL", nowhere.as_str())];
    for args in [
        exec_args("test.read", "customers", "dev", &[], &["true"]),
        vec!["ls".to_owned()],
        vec!["show".to_owned(), id.clone()],
        vec!["approve".to_owned(), pending.clone()],
        vec!["policy".to_owned(), "reload".to_owned()],
    ] {
        assert_code(&gw.cli_as_with_env("alice", &args, &down), 75, row);
    }

    // 130: exec interrupted while it waits; the request is cancelled
    let row = "130 interrupted";
    let waiting = gw.spawn_as(
        "bot",
        exec_args("test.export", "interrupt-me", "prod", &[], &["true"]),
    );
    let interrupted = poll(Duration::from_secs(30), Duration::from_millis(100), || {
        let page = gw
            .get_as("audrey", "/v1/requests?status=pending")
            .expect(200);
        page["requests"]
            .as_array()?
            .iter()
            .find(|r| r["resource"] == "interrupt-me")
            .and_then(|r| r["id"].as_str().map(str::to_owned))
    })
    .expect("exec submits its request");
    let sent = std::process::Command::new("kill")
        .args(["-INT", &waiting.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let out = waiting.finish(Duration::from_secs(30));
    assert_code(&out, 130, row);
    assert_eq!(gw.request(&interrupted)["status"], "cancelled", "{out}");

    // 2: the caller must fix it
    let row = "2 caller must fix";
    assert_code(&gw.cli_as("alice", ["ls", "--no-such-flag"]), 2, row);
    assert_code(&gw.cli_as("alice", ["ls", "--status", "bogus"]), 2, row);
    // no token
    assert_code(&gw.cli(["ls"]), 2, row);
    assert_code(
        &gw.cli(exec_args("test.read", "customers", "dev", &[], &["true"])),
        2,
        row,
    );
    // a wrong token
    let wrong = [("SIGNOFF_TOKEN", "not-a-token-at-all")];
    for args in [
        exec_args("test.read", "customers", "dev", &[], &["true"]),
        vec!["ls".to_owned()],
        vec!["show".to_owned(), id.clone()],
        vec!["approve".to_owned(), pending.clone()],
        vec!["cancel".to_owned(), pending.clone()],
        vec!["policy".to_owned(), "reload".to_owned()],
    ] {
        assert_code(&gw.cli_as_with_env("alice", &args, &wrong), 2, row);
    }
    // malformed --context and --wait
    for extra in [["--context", "no-equals-sign"], ["--wait", "soon"]] {
        let out = gw.cli_as(
            "bot",
            exec_args("test.read", "customers", "dev", &extra, &["true"]),
        );
        assert_code(&out, 2, row);
    }
    let out = gw.cli_as(
        "bot2",
        [
            "request",
            "--action",
            "test.read",
            "--resource",
            "customers",
            "--context",
            "=x",
        ],
    );
    assert_code(&out, 2, row);
    // an unknown request id
    for args in [
        vec!["show", unknown],
        vec!["approve", unknown],
        vec!["deny", unknown, "--reason", "x"],
        vec!["cancel", unknown],
    ] {
        assert_code(&gw.cli_as("root", &args), 2, row);
    }
    // a policy set that does not load
    std::fs::write(
        gw.policies.join("broken.cedar"),
        "permit(principal, action,",
    )
    .unwrap();
    let out = gw.cli_as("root", ["policy", "reload"]);
    assert_code(&out, 2, row);
    assert!(out.stderr.contains("broken.cedar"), "{out}");
}

/// Every line of the server log, each of which must be a JSON object.
fn json_log(gw: &Gateway) -> Vec<Value> {
    let log = gw.server_log();
    log.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str::<Value>(l)
                .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {l}\n{log}"))
        })
        .collect()
}

/// The log lines of `event` about request `id`.
fn lines_of<'a>(log: &'a [Value], event: &str, id: Option<&str>) -> Vec<&'a Value> {
    log.iter()
        .filter(|l| l["event"] == event)
        .filter(|l| id.is_none_or(|id| l["request_id"] == id))
        .collect()
}

fn one_line_of<'a>(log: &'a [Value], event: &str, id: Option<&str>) -> &'a Value {
    let found = lines_of(log, event, id);
    assert_eq!(
        found.len(),
        1,
        "expected one `{event}` line for {id:?}, got {found:#?}"
    );
    found[0]
}

#[test]
fn operators_see_every_decision_in_the_json_log() {
    let gw = Gateway::start_configured("log_format = \"json\"\n", &[], &[]);
    // decisions: allow (and the run: claim, outcome), deny, approval required
    let out = gw.cli_as(
        "bot",
        exec_args("test.read", "customers", "dev", &[], &["true"]),
    );
    assert_eq!(out.code, 0, "{out}");
    let allowed = out.request_id();
    let out = gw.cli_as(
        "bot",
        exec_args("test.drop", "customers", "dev", &[], &["true"]),
    );
    assert_eq!(out.code, 77, "{out}");
    let denied = out.request_id();
    let pending = pending_export(&gw, "orders");
    // reviews: refused (separation of duties), recorded, refused (twice)
    gw.review("olga", &pending, "approve", None)
        .assert_problem(403);
    gw.review(
        "alice",
        &pending,
        "approve",
        Some("Not During Freeze, ask Alice"),
    )
    .expect(200);
    gw.review("alice", &pending, "approve", None)
        .assert_problem(409);
    gw.review("bob", &pending, "approve", None).expect(200);
    // a claim refused (wrong digest), then a cancellation
    gw.post_as(
        "bot",
        &format!("/v1/requests/{pending}/claim"),
        json!({"digest": "0".repeat(64)}),
    )
    .assert_problem(409);
    gw.post_as("bot", &format!("/v1/requests/{pending}/cancel"), json!({}))
        .expect(200);
    // reloads: accepted, then rejected
    assert_eq!(gw.cli_as("root", ["policy", "reload"]).code, 0);
    std::fs::write(gw.policies.join("broken.cedar"), "forbid(").unwrap();
    assert_eq!(gw.cli_as("root", ["policy", "reload"]).code, 2);
    std::fs::remove_file(gw.policies.join("broken.cedar")).unwrap();
    // expiry (ttl 2 s), by the sweeper with nobody asking
    let quick = gw.submit(
        "bot",
        json!({"action": "test.quick", "resource": "customers"}),
    )["id"]
        .as_str()
        .unwrap()
        .to_owned();
    poll(Duration::from_secs(20), Duration::from_millis(200), || {
        let log = json_log(&gw);
        (!lines_of(&log, "request_expired", Some(&quick)).is_empty()).then_some(())
    })
    .expect("the sweeper expires a 2 s request and logs it");

    let log = json_log(&gw);
    let line = one_line_of(&log, "request_submitted", Some(&allowed));
    assert_eq!(line["verdict"], "allow", "{line}");
    assert_eq!(line["action"], "test.read", "{line}");
    assert_eq!(line["resource"], "customers", "{line}");
    assert_eq!(line["principal"], "agent:bot", "{line}");
    assert_eq!(line["policy_ids"], "read-allowed", "{line}");
    assert_eq!(line["gate"], "exec", "{line}");
    assert_eq!(line["level"], "INFO", "{line}");
    assert_eq!(line["target"], "signoff::ops", "{line}");
    let line = one_line_of(&log, "request_claimed", Some(&allowed));
    assert_eq!(line["status"], "executing", "{line}");
    let line = one_line_of(&log, "outcome_recorded", Some(&allowed));
    assert_eq!(line["exit_code"], 0, "{line}");
    assert!(line["duration_ms"].is_u64(), "{line}");
    let line = one_line_of(&log, "request_submitted", Some(&denied));
    assert_eq!(line["verdict"], "deny", "{line}");
    assert_eq!(line["policy_ids"], "drop-forbidden", "{line}");
    let line = one_line_of(&log, "request_submitted", Some(&pending));
    assert_eq!(line["verdict"], "approval_required", "{line}");

    let refused = lines_of(&log, "review_refused", Some(&pending));
    assert_eq!(refused.len(), 2, "{refused:#?}");
    assert_eq!(refused[0]["rule"], "self-review", "{}", refused[0]);
    assert_eq!(refused[0]["reviewer"], "user:olga", "{}", refused[0]);
    assert_eq!(refused[0]["level"], "WARN", "{}", refused[0]);
    assert_eq!(refused[1]["rule"], "already-reviewed", "{}", refused[1]);
    let recorded = lines_of(&log, "review_recorded", Some(&pending));
    assert_eq!(recorded.len(), 2, "{recorded:#?}");
    assert_eq!(recorded[0]["reviewer"], "user:alice");
    assert_eq!(recorded[0]["decision"], "approve");
    assert_eq!(recorded[0]["channel"], "api");
    // the reviewer's words as written
    assert_eq!(recorded[0]["reason"], "Not During Freeze, ask Alice");
    one_line_of(&log, "request_approved", Some(&pending));
    let line = one_line_of(&log, "claim_refused", Some(&pending));
    assert_eq!(line["rule"], "digest-mismatch", "{line}");
    one_line_of(&log, "request_cancelled", Some(&pending));
    let line = one_line_of(&log, "policy_set_active", None);
    assert_eq!(line["policies"], 5, "{line}");
    let line = one_line_of(&log, "policy_set_loaded", None);
    assert_eq!(line["actor"], "user:root", "{line}");
    let line = one_line_of(&log, "policy_set_rejected", None);
    assert!(
        line["error"].as_str().unwrap().contains("broken.cedar"),
        "{line}"
    );
    let line = one_line_of(&log, "request_expired", Some(&quick));
    assert_eq!(line["status"], "expired", "{line}");
    // nothing is logged for an unknown id
    gw.review("alice", "01JABCDEFGHJKMNPQRSTVWXYZ0", "approve", None)
        .assert_problem(404);
    let after = json_log(&gw);
    assert!(
        lines_of(&after, "review_refused", Some("01JABCDEFGHJKMNPQRSTVWXYZ0")).is_empty(),
        "{after:#?}"
    );
}

#[test]
fn log_format_comes_from_flag_env_or_config_and_text_has_no_colour() {
    // text by default; redirected to a file, no escape codes
    let gw = Gateway::start(Backend::Sqlite);
    let out = gw.cli_as("bot", exec_args("test.drop", "x", "dev", &[], &["true"]));
    assert_eq!(out.code, 77, "{out}");
    let log = gw.server_log();
    assert!(log.contains("request decided by policy"), "{log}");
    assert!(
        log.contains("verdict=\"deny\"") || log.contains("verdict=deny"),
        "{log}"
    );
    assert!(
        !log.contains('\u{1b}'),
        "colour codes in a redirected log:\n{log}"
    );
    assert!(
        serde_json::from_str::<Value>(log.lines().next().unwrap()).is_err(),
        "{log}"
    );
    drop(gw);
    // the flag wins over the config; the environment variable works alone
    for gw in [
        Gateway::start_configured("log_format = \"text\"\n", &["--log-format", "json"], &[]),
        Gateway::start_configured("", &[], &[("SIGNOFF_LOG_FORMAT", "json")]),
    ] {
        let out = gw.cli_as("bot", exec_args("test.drop", "x", "dev", &[], &["true"]));
        assert_eq!(out.code, 77, "{out}");
        let log = json_log(&gw);
        one_line_of(&log, "request_submitted", Some(&out.request_id()));
        assert!(log.iter().any(|l| l["event"] == "listening"), "{log:#?}");
    }
    // an unknown format is a usage error naming the choices
    let out = run_signoff(&["serve", "--config", "x.toml", "--log-format", "xml"]);
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stderr.contains("json"), "{out}");
}

/// The value of one series in a Prometheus text exposition.
fn series(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no series {name} in\n{text}"))
}

#[test]
fn metrics_count_what_they_say() {
    let gw = Gateway::start(Backend::Sqlite);
    let metrics = || {
        gw.http("GET", "/metrics", None, Body::Empty, &[])
            .expect_text(200)
    };
    let before = metrics();
    for verdict in ["allow", "deny", "approval_required"] {
        assert_eq!(
            series(
                &before,
                &format!("signoff_decisions_total{{verdict=\"{verdict}\"}}")
            ),
            0.0
        );
    }
    // one decision of each verdict (an idempotent replay is not a decision)
    let key = [("Idempotency-Key", "k-1")];
    for _ in 0..2 {
        gw.http(
            "POST",
            "/v1/requests",
            Some(&gw.token("bot")),
            Body::Json(json!({"action": "test.read", "resource": "a"})),
            &key,
        );
    }
    gw.submit("bot", json!({"action": "test.drop", "resource": "a"}));
    let pending = pending_export(&gw, "orders");
    // reviews of unknown ids are not reviews
    for _ in 0..4 {
        gw.review("alice", "01JABCDEFGHJKMNPQRSTVWXYZ0", "approve", None)
            .assert_problem(404);
    }
    // a malformed review is not one either
    gw.post_as(
        "alice",
        &format!("/v1/requests/{pending}/reviews"),
        json!({"decision": "maybe"}),
    );
    let text = metrics();
    assert_eq!(
        series(&text, "signoff_reviews_total{result=\"recorded\"}"),
        0.0
    );
    assert_eq!(
        series(&text, "signoff_reviews_total{result=\"refused\"}"),
        0.0
    );
    // recorded, refused (self-review, duplicate), the deciding one
    gw.review("alice", &pending, "approve", None).expect(200);
    gw.review("olga", &pending, "approve", None)
        .assert_problem(403);
    gw.review("alice", &pending, "approve", None)
        .assert_problem(409);
    gw.review("bob", &pending, "approve", None).expect(200);
    // claims: one refused, one that succeeds (not counted as refused)
    gw.post_as(
        "bot",
        &format!("/v1/requests/{pending}/claim"),
        json!({"digest": "0".repeat(64)}),
    )
    .assert_problem(409);
    let digest = gw.request(&pending)["digest"].clone();
    gw.post_as(
        "bot",
        &format!("/v1/requests/{pending}/claim"),
        json!({"digest": digest}),
    )
    .expect(200);
    // an agent probing another principal's request
    gw.get_as("bot2", &format!("/v1/requests/{pending}"))
        .assert_problem(404);
    gw.get_as("bot2", "/v1/requests/01JABCDEFGHJKMNPQRSTVWXYZ0")
        .assert_problem(404);
    let another = pending_export(&gw, "invoices");

    let text = metrics();
    for (name, value) in [
        ("signoff_decisions_total{verdict=\"allow\"}", 1.0),
        ("signoff_decisions_total{verdict=\"deny\"}", 1.0),
        (
            "signoff_decisions_total{verdict=\"approval_required\"}",
            2.0,
        ),
        ("signoff_decision_duration_seconds_count", 4.0),
        ("signoff_decision_duration_seconds_bucket{le=\"+Inf\"}", 4.0),
        ("signoff_review_wait_seconds_count", 1.0),
        ("signoff_review_wait_seconds_bucket{le=\"+Inf\"}", 1.0),
        ("signoff_reviews_total{result=\"recorded\"}", 2.0),
        ("signoff_reviews_total{result=\"refused\"}", 2.0),
        ("signoff_claims_refused_total", 1.0),
        // only the other principal's id; an unknown id is not a probe
        ("signoff_hidden_request_probes_total", 1.0),
        ("signoff_requests{status=\"pending\"}", 1.0),
        ("signoff_requests{status=\"approved\"}", 1.0),
        ("signoff_requests{status=\"denied\"}", 1.0),
        ("signoff_requests{status=\"executing\"}", 1.0),
        ("signoff_pending_requests", 1.0),
    ] {
        assert_eq!(series(&text, name), value, "{name} in\n{text}");
    }
    // histogram buckets are cumulative and end at the count
    let buckets: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with("signoff_decision_duration_seconds_bucket"))
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    assert!(buckets.len() > 5, "{text}");
    assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
    assert!(text.contains("# TYPE signoff_decision_duration_seconds histogram"));
    assert!(text.contains("# TYPE signoff_review_wait_seconds histogram"));
    let _ = another;
}

#[test]
fn serve_that_cannot_listen_leaves_no_files_behind() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    std::fs::write(dir.path().join("policies/test.cedar"), POLICY).unwrap();
    let config = dir.path().join("signoff.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"{addr}\"\ndatabase = \"sqlite://signoff.db\"\npolicies = \"policies\"\n"
        ),
    )
    .unwrap();
    let out = run_signoff(&["serve", "--config", &plain(&config)]);
    assert_eq!(out.code, 1, "{out}");
    assert!(
        out.stderr.contains(&format!("cannot listen on {addr}")),
        "{out}"
    );
    let mut left: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["policies", "signoff.toml"], "{out}");

    // dev mode too: no .signoff-dev is made
    let empty = tempfile::tempdir().unwrap();
    let out = Bg::spawn(
        {
            let mut cmd = std::process::Command::new(BIN);
            cmd.args(["serve", "--dev", "--listen", &addr])
                .current_dir(empty.path());
            cmd
        },
        "signoff serve --dev".into(),
    )
    .finish(Duration::from_secs(60));
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stderr.contains("cannot listen"), "{out}");
    assert_eq!(std::fs::read_dir(empty.path()).unwrap().count(), 0, "{out}");
    drop(taken);
}

#[test]
fn dev_mode_names_its_config_file() {
    let gw = Gateway::start_dev();
    let config = gw.config.canonicalize().unwrap();
    // the banner is read from the server's stdout as it comes
    let line = poll(Duration::from_secs(30), Duration::from_millis(50), || {
        gw.server_stdout()
            .lines()
            .find(|l| l.trim_start().starts_with("config "))
            .map(str::to_owned)
    })
    .unwrap_or_else(|| panic!("no config line in\n{}", gw.server_stdout()));
    let stdout = gw.server_stdout();
    let named = line.split_whitespace().nth(1).unwrap();
    assert_eq!(
        std::path::Path::new(named).canonicalize().unwrap(),
        config,
        "{stdout}"
    );
    // and it is the file `principal add --config` needs
    let token = add_principal(
        std::path::Path::new(named),
        &["user", "dana", "--group", "sre"],
    );
    assert!(!token.is_empty());
    let out = gw.cli_as("carol", ["policy", "reload"]);
    assert_eq!(out.code, 0, "{out}");
    assert!(out.stdout.contains("policy set"), "{out}");
}
