#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on setup failures
//! The attacks of issue 11, each against the real binary, on SQLite and
//! PostgreSQL where the backend matters:
//!
//! - input at and over every limit (depth, size, characters): at the limit
//!   accepted and readable through every read path, over it a 400 naming
//!   the field and the limit, identical on both backends;
//! - a request that cannot be expired does not starve the others;
//! - reviewer power minted by a party to the request (accounts, credentials
//!   and group memberships an admin provisions for herself; an agent she
//!   creates for someone else) is refused and recorded;
//! - a hostile justification or context cannot forge what `signoff show`,
//!   `ls` and `audit events` print;
//! - secret files are 0600 and refused otherwise; `/metrics` behind a
//!   token; another principal's request ids answer like unknown ones and
//!   write no event per probe.
//!
//! ```text
//! cargo test -p signoff --test attack
//! ```

mod common;

use common::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

macro_rules! backend_tests {
    (
        both: [$($name:ident),* $(,)?],
        sqlite_only: [$($sname:ident),* $(,)?] $(,)?
    ) => {
        mod sqlite {
            $( #[test] fn $name() { super::$name(super::Backend::Sqlite) } )*
            $( #[test] fn $sname() { super::$sname() } )*
        }
        mod postgres {
            $( #[test] fn $name() { super::$name(super::Backend::Postgres) } )*
        }
    };
}

backend_tests! {
    both: [
        input_limits_at_and_over_each_edge,
        unreadable_request_does_not_starve_expiry,
        admin_cannot_mint_reviewers_for_her_agent,
        creator_of_an_agent_cannot_approve_it,
        other_principals_ids_answer_like_unknown_ones,
    ],
    sqlite_only: [
        show_and_ls_cannot_be_forged,
        secret_files_are_private_and_refused_otherwise,
        metrics_can_require_a_token,
    ],
}

fn nested(depth: usize) -> Value {
    let mut v = json!(1);
    for _ in 0..depth {
        v = json!({ "k": v });
    }
    v
}

fn id_of(v: &Value) -> String {
    v["id"].as_str().expect("request id").to_owned()
}

/// Every read path an auditor, reviewer or agent uses must still answer
/// 200 with the request in it.
fn assert_readable(gw: &Gateway, id: &str) {
    let r = gw.get_as("bot", &format!("/v1/requests/{id}")).expect(200);
    assert_eq!(r["id"], id);
    let page = gw.get_as("audrey", "/v1/requests?limit=1000").expect(200);
    assert!(
        page["requests"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["id"] == id),
        "request {id} missing from the list"
    );
    assert!(
        !gw.events_for(id).is_empty(),
        "no audit events readable for {id}"
    );
    let n = gw.events().len();
    let entries = gw
        .get_as("audrey", &format!("/v1/ledger/entries?start=0&end={n}"))
        .expect(200);
    assert!(
        entries["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["request_id"] == id),
        "request {id} missing from the ledger entries"
    );
}

/// A 400 problem whose detail names `field` and `limit`.
fn assert_limit(resp: Resp, field: &str, limit: &str) {
    let p = resp.assert_problem(400);
    let detail = p["detail"].as_str().unwrap();
    assert!(
        detail.contains(field) && detail.contains(limit),
        "{}: detail must name `{field}` and `{limit}`: {detail}",
        resp.what
    );
}

fn base(resource: &str) -> Value {
    json!({"action": "test.export", "resource": resource, "environment": "prod"})
}

fn input_limits_at_and_over_each_edge(b: Backend) {
    let gw = Gateway::start(b);

    // context depth: the context object is level 1; 32 levels accepted
    let mut body = base("deep");
    body["context"] = json!({ "k": nested(31) });
    let deep = gw.submit("bot", body);
    assert_readable(&gw, &id_of(&deep));
    let mut body = base("deeper");
    body["context"] = json!({ "k": nested(32) });
    assert_limit(gw.post_as("bot", "/v1/requests", body), "context", "32");
    // the depth of the original attack, now refused up front
    let mut body = base("deepest");
    body["context"] = json!({ "k": nested(126) });
    let resp = gw.post_as("bot", "/v1/requests", body);
    assert_eq!(resp.status, 400, "{}", resp.body);

    // sizes at and over the limit
    let at_limit = gw.submit("bot", base(&"r".repeat(1024)));
    assert_readable(&gw, &id_of(&at_limit));
    assert_limit(
        gw.post_as("bot", "/v1/requests", base(&"r".repeat(1025))),
        "resource",
        "1024",
    );
    let mut body = base("long-justification");
    body["justification"] = json!(format!("{}\n\t{}", "j".repeat(2000), "k".repeat(2094)));
    let long = gw.submit("bot", body);
    assert_readable(&gw, &id_of(&long));
    let mut body = base("too-long-justification");
    body["justification"] = json!("j".repeat(4097));
    assert_limit(
        gw.post_as("bot", "/v1/requests", body),
        "justification",
        "4096",
    );

    // characters: NUL nowhere, control characters only where text allows
    for (field, value) in [
        ("resource", "cust\u{0}omers"),
        ("resource", "cust\nomers"),
        ("resource", "cust\u{1b}[8momers"),
        ("environment", "pr\rod"),
        ("justification", "fine\u{0}"),
        ("justification", "hide \u{1b}[8m this"),
    ] {
        let mut body = base("chars");
        body[field] = json!(value);
        let resp = gw.post_as("bot", "/v1/requests", body);
        let p = resp.assert_problem(400);
        assert!(
            p["detail"].as_str().unwrap().starts_with(field),
            "{field}={value:?}: {p}"
        );
    }
    let mut body = base("chars");
    body["context"] = json!({"k\u{0}": 1});
    assert_limit(
        gw.post_as("bot", "/v1/requests", body),
        "context key",
        "NUL",
    );
    let mut body = base("chars");
    body["context"] = json!({"k": ["x\u{0}"]});
    assert_limit(gw.post_as("bot", "/v1/requests", body), "context.k", "NUL");
    // context values are data: escapes allowed, stored, readable
    let mut body = base("escaped-context");
    body["context"] = json!({"query": "SELECT 1;\r\n\u{1b}[8m"});
    let esc = gw.submit("bot", body);
    assert_readable(&gw, &id_of(&esc));
    let key = "k".repeat(256);
    let resp = gw.http(
        "POST",
        "/v1/requests",
        Some(&gw.token("bot")),
        Body::Json(base("idem")),
        &[("idempotency-key", &key)],
    );
    assert_limit(resp, "Idempotency-Key", "255");

    // reviews, cancellations, claims, outcomes
    let id = id_of(&deep);
    let reason = format!("{}\n{}", "a".repeat(2000), "b".repeat(2095));
    assert_eq!(reason.len(), 4096);
    gw.review("alice", &id, "approve", Some(&reason))
        .expect(200);
    assert_limit(
        gw.review("bob", &id, "approve", Some(&"b".repeat(4097))),
        "reason",
        "4096",
    );
    assert_limit(
        gw.review("bob", &id, "deny", Some("no\u{0}")),
        "reason",
        "NUL",
    );
    assert_limit(
        gw.review("bob", &id, "deny", Some("no \u{1b}[2J")),
        "reason",
        "U+001B",
    );
    let r = gw.request(&id);
    assert_eq!(r["reviews"][0]["reason"], reason.as_str());
    assert_eq!(r["reviews"].as_array().unwrap().len(), 1);
    assert_limit(
        gw.post_as(
            "bot",
            &format!("/v1/requests/{id}/cancel"),
            json!({"reason": "x\u{0}"}),
        ),
        "reason",
        "NUL",
    );
    let digest = format!("{}\u{0}", "a".repeat(63));
    assert_limit(
        gw.post_as(
            "bot",
            &format!("/v1/requests/{id}/claim"),
            json!({ "digest": digest }),
        ),
        "digest",
        "64",
    );
    let allowed = gw.submit("bot", json!({"action": "test.read", "resource": "r"}));
    let aid = id_of(&allowed);
    gw.post_as(
        "bot",
        &format!("/v1/requests/{aid}/claim"),
        json!({"digest": allowed["digest"]}),
    )
    .expect(200);
    assert_limit(
        gw.post_as(
            "bot",
            &format!("/v1/requests/{aid}/outcome"),
            json!({"exit_code": 0, "duration_ms": 1, "summary": "s".repeat(1001)}),
        ),
        "summary",
        "1000",
    );
    gw.post_as(
        "bot",
        &format!("/v1/requests/{aid}/outcome"),
        json!({"exit_code": 0, "duration_ms": 1, "summary": format!("{}\n", "s".repeat(999))}),
    )
    .expect(200);
    assert_readable(&gw, &aid);

    // ids and filters the database could not even take answer as such
    gw.get_as("bot", "/v1/requests/bad%00id")
        .assert_problem(404);
    gw.post_as(
        "alice",
        "/v1/requests/bad%00id/reviews",
        json!({"decision": "approve"}),
    )
    .assert_problem(404);
    gw.get_as("audrey", "/v1/requests?action=x%00y")
        .assert_problem(400);
    gw.get_as("audrey", "/v1/requests?principal=agent:b%00t")
        .assert_problem(400);
    gw.get_as("audrey", "/v1/requests?before=%00")
        .assert_problem(400);

    // nothing stored breaks the auditor's tools either
    let out = gw.cli(["audit", "verify", "--config", &plain(&gw.config)]);
    assert_eq!(out.code, 0, "{out}");
    let since = "2000-01-01T00:00:00Z";
    let until = "2100-01-01T00:00:00Z";
    let out = gw.cli([
        "audit",
        "report",
        "--since",
        since,
        "--until",
        until,
        "--format",
        "json",
        "--config",
        &plain(&gw.config),
    ]);
    assert!(out.code == 0 || out.code == 1, "{out}");
    assert!(out.stdout.contains(&id), "report lacks {id}: {out}");
}

/// A request row nobody can read (a corrupt body, as a database
/// administrator or a bug could leave it) is due now; the sweeper must
/// park it with backoff and still expire the others on time, without
/// flooding the log.
fn unreadable_request_does_not_starve_expiry(b: Backend) {
    let gw = Gateway::start(b);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let broken = "01BROKEN0000000000000000ZZ";
    gw.sql_ok(&format!(
        "INSERT INTO requests (id, status, action, resource, environment, principal, created_at, \
         expires_at, idempotency_key, version, body) VALUES ('{broken}', 'pending', 'test.quick', \
         'r', NULL, 'agent:bot', {now_ms}, {}, NULL, 0, '{{not json')",
        now_ms - 1000
    ));
    let started = Instant::now();
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(id_of(&gw.submit(
            "bot",
            json!({"action": "test.quick", "resource": format!("r{i}")}),
        )));
    }
    // each has a 2 s deadline; the sweeper wakes at it (not a poller)
    for id in &ids {
        let expired = poll(Duration::from_secs(8), Duration::from_millis(100), || {
            let r = gw
                .get_as("audrey", &format!("/v1/requests/{id}"))
                .expect(200);
            (r["status"] == "expired").then_some(())
        });
        assert!(
            expired.is_some(),
            "request {id} did not expire within {:?} next to an unreadable one",
            started.elapsed()
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "expiry late: {:?}",
        started.elapsed()
    );
    let ready = gw.get_as("audrey", "/readyz").expect(200);
    let detail = ready["components"]["expiry"]["detail"]
        .as_str()
        .unwrap_or_default();
    assert!(
        detail.contains("parked") && detail.contains(broken),
        "readyz must say what is parked: {ready}"
    );
    // backoff, not a hot loop: a handful of attempts in a few seconds
    let attempts = gw
        .server_log()
        .lines()
        .filter(|l| l.contains(broken) && l.contains("cannot expire"))
        .count();
    assert!(
        (1..=6).contains(&attempts),
        "expected a few backed-off attempts, got {attempts}:\n{}",
        gw.server_log()
    );
}

/// Carol, an admin who owns `etl-bot`, provisions reviewers for herself:
/// accounts in `sre`, and a second credential for a real reviewer. None
/// of their approvals count; each refusal is recorded with its reason.
fn admin_cannot_mint_reviewers_for_her_agent(b: Backend) {
    let mut gw = Gateway::start(b);
    gw.add_principal(
        "carol",
        &["user", "carol", "--role", "admin", "--group", "sre"],
    );
    gw.add_principal("etl-bot", &["agent", "etl-bot", "--owner", "carol"]);
    for helper in ["helper1", "helper2"] {
        let created = gw
            .post_as(
                "carol",
                "/v1/principals",
                json!({"kind": "user", "name": helper, "groups": ["sre"]}),
            )
            .expect(201);
        gw.add_token(helper, created["token"].as_str().unwrap());
    }
    let issued = gw
        .post_as(
            "carol",
            "/v1/principals/alice/credentials",
            json!({"name": "carols-copy"}),
        )
        .expect(201);
    gw.add_token("alice-by-carol", issued["token"].as_str().unwrap());

    let id = id_of(&gw.submit("etl-bot", base("customers")));
    for who in ["helper1", "helper2"] {
        let p = gw.review(who, &id, "approve", None).assert_problem(403);
        let detail = p["detail"].as_str().unwrap();
        assert!(
            detail.contains("account was provisioned by user:carol")
                && detail.contains("owns the requesting agent"),
            "{who}: {detail}"
        );
    }
    let p = gw
        .review("alice-by-carol", &id, "approve", None)
        .assert_problem(403);
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("credential was provisioned by user:carol"),
        "{p}"
    );
    let r = gw.request(&id);
    assert_eq!(r["status"], "pending");
    assert_eq!(r["reviews"], json!([]));
    let refused: Vec<Value> = gw
        .events_for(&id)
        .into_iter()
        .filter(|e| e["kind"] == "review_refused")
        .collect();
    assert_eq!(refused.len(), 3, "{refused:#?}");
    for e in &refused {
        assert_eq!(e["detail"]["provisioned"]["by"], "user:carol", "{e}");
        assert_eq!(e["detail"]["provisioned"]["relation"], "agent_owner", "{e}");
    }
    assert_eq!(refused[2]["detail"]["provisioned"]["what"], "credential");

    // reviewers nobody tied to the request provisioned still count
    gw.review("alice", &id, "approve", None).expect(200);
    let r = gw.review("bob", &id, "approve", None).expect(200);
    assert_eq!(r["status"], "approved");

    // helpers carol made review other people's requests normally
    let other = id_of(&gw.submit("bot2", base("customers")));
    gw.review("helper1", &other, "approve", None).expect(200);

    // the offline report: the refused attempts are exceptions, no
    // approval that counted is flagged
    let report = |gw: &Gateway| {
        gw.cli([
            "audit",
            "report",
            "--since",
            "2000-01-01T00:00:00Z",
            "--until",
            "2100-01-01T00:00:00Z",
            "--format",
            "json",
            "--config",
            &plain(&gw.config),
        ])
    };
    let out = report(&gw);
    assert_eq!(out.code, 0, "{out}");
    let json: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(json["counts"]["approvals_provisioned_by_party"], 0);
    let row = json["requests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["request_id"] == id.as_str())
        .unwrap()
        .clone();
    assert_eq!(row["refused_self_approvals"], 3, "{row}");
    // an approval given before the rule (here: alice's account turns out to
    // have been created by carol) is listed, and the report fails
    gw.sql_ok("UPDATE principals SET created_by = 'user:carol' WHERE name = 'alice'");
    let out = report(&gw);
    assert_eq!(out.code, 1, "{out}");
    let json: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(json["counts"]["approvals_provisioned_by_party"], 1, "{out}");
    let row = json["requests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["request_id"] == id.as_str())
        .unwrap()
        .clone();
    assert_eq!(
        row["approvals_provisioned_by_party"],
        json!(["alice (account created by user:carol, who owns the requesting agent)"]),
        "{row}"
    );
    assert!(
        out.stderr
            .contains("approved by a reviewer a party to it provisioned: alice"),
        "{out}"
    );
}

/// Carol creates agent `carol-shadow` owned by bob and approves its
/// request herself: the creator of an agent is tied to it like its owner.
fn creator_of_an_agent_cannot_approve_it(b: Backend) {
    let mut gw = Gateway::start(b);
    gw.add_principal(
        "carol",
        &["user", "carol", "--role", "admin", "--group", "sre"],
    );
    let created = gw
        .post_as(
            "carol",
            "/v1/principals",
            json!({"kind": "agent", "name": "carol-shadow", "owner": "bob"}),
        )
        .expect(201);
    gw.add_token("carol-shadow", created["token"].as_str().unwrap());
    let helper = gw
        .post_as(
            "carol",
            "/v1/principals",
            json!({"kind": "user", "name": "helper9", "groups": ["sre"]}),
        )
        .expect(201);
    gw.add_token("helper9", helper["token"].as_str().unwrap());

    let id = id_of(&gw.submit("carol-shadow", base("customers")));
    let p = gw.review("carol", &id, "approve", None).assert_problem(403);
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("they created the requesting agent"),
        "{p}"
    );
    // the owner she named is tied too, and so is anyone she provisioned
    gw.review("bob", &id, "approve", None).assert_problem(403);
    let p = gw
        .review("helper9", &id, "approve", None)
        .assert_problem(403);
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("created the requesting agent"),
        "{p}"
    );
    let refused: Vec<Value> = gw
        .events_for(&id)
        .into_iter()
        .filter(|e| e["kind"] == "review_refused")
        .collect();
    assert_eq!(refused.len(), 3, "{refused:#?}");
    assert!(refused[0]["reason"]
        .as_str()
        .unwrap()
        .contains("they created the requesting agent"));
    // tied like an owner, she cannot decide it either way
    let r = gw
        .review("carol", &id, "deny", Some("not like this"))
        .assert_problem(403);
    assert!(r["detail"].as_str().unwrap().contains("created"), "{r}");
    assert_eq!(gw.request(&id)["status"], "pending");
    gw.review("alice", &id, "approve", None).expect(200);
    let r = gw.review("dave", &id, "approve", None).expect(200);
    assert_eq!(r["status"], "approved");
}

/// An agent asking about other principals' request ids learns nothing:
/// every endpoint answers exactly as for an id that does not exist, and
/// no probe writes an audit event; the metric counts them.
fn other_principals_ids_answer_like_unknown_ones(b: Backend) {
    let gw = Gateway::start(b);
    let theirs = id_of(&gw.submit("bot", base("customers")));
    let unknown = "01J00000000000000000000000";
    let events_before = gw.events().len();
    let calls: Vec<(&str, &str, Body)> = vec![
        ("GET", "", Body::Empty),
        ("GET", "/wait?timeout=0", Body::Empty),
        (
            "POST",
            "/reviews",
            Body::Json(json!({"decision": "approve"})),
        ),
        ("POST", "/cancel", Body::Json(json!({}))),
        (
            "POST",
            "/claim",
            Body::Json(json!({"digest": "a".repeat(64)})),
        ),
        (
            "POST",
            "/outcome",
            Body::Json(json!({"exit_code": 0, "duration_ms": 1})),
        ),
    ];
    let token = gw.token("bot2");
    for (method, suffix, body) in calls {
        let body2 = match &body {
            Body::Empty => Body::Empty,
            Body::Json(v) => Body::Json(v.clone()),
            Body::Raw(..) => unreachable!(),
        };
        let probe = gw.http(
            method,
            &format!("/v1/requests/{theirs}{suffix}"),
            Some(&token),
            body,
            &[],
        );
        let control = gw.http(
            method,
            &format!("/v1/requests/{unknown}{suffix}"),
            Some(&token),
            body2,
            &[],
        );
        assert_eq!(probe.status, control.status, "{method} {suffix}");
        assert_eq!(probe.status, 404, "{method} {suffix}: {}", probe.body);
        assert_eq!(
            probe.body.replace(&theirs, "ID"),
            control.body.replace(unknown, "ID"),
            "{method} {suffix}: bodies differ"
        );
        assert_eq!(probe.content_type(), control.content_type());
    }
    assert_eq!(
        gw.events().len(),
        events_before,
        "probes must not write audit events"
    );
    let metrics = gw
        .http("GET", "/metrics", None, Body::Empty, &[])
        .expect_text(200);
    assert!(
        metrics.contains("signoff_hidden_request_probes_total 6"),
        "{metrics}"
    );
    // its own request: an agent's attempt to review is still recorded
    gw.review("bot", &theirs, "approve", None)
        .assert_problem(403);
    assert_eq!(gw.events().len(), events_before + 1);
}

/// What reviewers read cannot be forged by what the requester wrote.
fn show_and_ls_cannot_be_forged() {
    let gw = Gateway::start(Backend::Sqlite);
    let hostile = "Q3 report\nverdict       allow (no approval needed)\nstatus        approved";
    let r = gw.submit(
        "bot",
        json!({
            "action": "test.export",
            "resource": "customers",
            "environment": "prod",
            "justification": hostile,
            "context": {"note": "\u{1b}[8mhidden\u{1b}[0m\rstatus        approved", "command": "rm -rf /\u{1b}[8m"},
        }),
    );
    let id = id_of(&r);
    gw.review("alice", &id, "approve", Some("Looks Fine, Ask Alice"))
        .expect(200);
    let show = gw.cli_as("audrey", ["show", &id]);
    assert_eq!(show.code, 0, "{show}");
    let out = &show.stdout;
    assert!(!out.contains('\u{1b}') && !out.contains('\r'), "{out:?}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("action") && lines[0].contains("test.export on customers"),
        "the action must come first: {out}"
    );
    // bot's credential is bound to the exec gate: the command it binds is
    // shown second, escaped (and again among the requester's claims)
    assert_eq!(lines[1], "command        rm -rf /\\e[8m", "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("  context.command ") && l.ends_with("| rm -rf /\\e[8m")),
        "{out}"
    );
    // the forged lines are indented requester text, never fields
    for line in &lines {
        assert!(
            !line.starts_with("verdict       allow") && !line.starts_with("status        approved"),
            "forged line at column 0: {line:?}\n{out}"
        );
    }
    assert!(out.contains("from requester"), "{out}");
    assert!(
        out.contains("| verdict       allow (no approval needed)"),
        "{out}"
    );
    assert!(out.contains("\\e[8mhidden\\e[0m\\rstatus"), "{out}");
    // the reviewer's words as written
    assert!(
        out.lines()
            .any(|l| l.starts_with("reviews        approve  alice")
                && l.ends_with("| Looks Fine, Ask Alice")),
        "{out}"
    );

    let ls = gw.cli_as("audrey", ["ls"]);
    assert_eq!(ls.code, 0, "{ls}");
    assert!(!ls.stdout.contains('\u{1b}'), "{ls}");
    assert_eq!(ls.stdout.lines().count(), 2, "one header, one row: {ls}");

    let events = gw.cli_as("audrey", ["audit", "events"]);
    assert_eq!(events.code, 0, "{events}");
    assert!(!events.stdout.contains('\u{1b}'), "{events}");
}

#[cfg(unix)]
fn mode(p: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn secret_files_are_private_and_refused_otherwise() {
    use std::os::unix::fs::PermissionsExt;
    let mut gw = Gateway::start(Backend::Sqlite);
    let dir = gw.config.parent().unwrap().to_owned();
    let key = dir.join("ledger.key");
    let db = dir.join("signoff.db");
    gw.submit("bot", json!({"action": "test.read", "resource": "r"}));
    assert_eq!(mode(&key), 0o600, "ledger.key");
    assert_eq!(mode(&db), 0o600, "signoff.db");
    let wal = dir.join("signoff.db-wal");
    if wal.exists() {
        assert_eq!(mode(&wal), 0o600, "signoff.db-wal");
    }
    gw.kill();
    for (file, bad) in [(&key, 0o644), (&db, 0o640), (&key, 0o604)] {
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(bad)).unwrap();
        let out = gw.cli(["serve", "--config", &plain(&gw.config)]);
        assert_ne!(out.code, 0, "{out}");
        let fix = format!("chmod 600 {}", file.display());
        assert!(
            out.stderr.contains(&fix) && out.stderr.contains(&format!("{bad:04o}")),
            "the refusal must name the file, its mode and the fix: {out}"
        );
        let error_lines = out.stderr.lines().filter(|l| !l.trim().is_empty()).count();
        assert_eq!(error_lines, 1, "one readable line: {out}");
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    gw.restart();
    gw.get_as("audrey", "/v1/requests").expect(200);
}

fn metrics_can_require_a_token() {
    let mut gw = Gateway::start(Backend::Sqlite);
    gw.http("GET", "/metrics", None, Body::Empty, &[])
        .expect_text(200);
    let token = "metrics-secret-0123456789";
    let mut config = std::fs::read_to_string(&gw.config).unwrap();
    config.push_str(&format!("metrics_token = \"{token}\"\n"));
    std::fs::write(&gw.config, config).unwrap();
    gw.restart();
    for presented in [
        None,
        Some("wrong-token-0123456789"),
        Some(&gw.token("root")[..]),
    ] {
        gw.http("GET", "/metrics", presented, Body::Empty, &[])
            .assert_problem(401);
    }
    let text = gw
        .http("GET", "/metrics", Some(token), Body::Empty, &[])
        .expect_text(200);
    assert!(text.contains("signoff_decisions_total"), "{text}");
    // too short a token is a config error naming the key
    let config = std::fs::read_to_string(&gw.config)
        .unwrap()
        .replace(token, "short");
    std::fs::write(&gw.config, config).unwrap();
    gw.kill();
    let out = gw.cli(["serve", "--config", &plain(&gw.config)]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("metrics_token"), "{out}");
}
