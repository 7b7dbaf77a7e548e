#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and benches may panic on setup failures
//! End-to-end tests of the `signoff` binary: a real gateway process on SQLite
//! and on PostgreSQL, driven through the real CLI and raw HTTP. Each
//! scenario is written once and instantiated for both backends:
//!
//! ```text
//! cargo test -p signoff --test e2e            # both
//! cargo test -p signoff --test e2e sqlite::   # one backend
//! ```
//!
//! PostgreSQL tests need the server named by `SIGNOFF_TEST_PG` (default
//! `postgres://postgres@127.0.0.1:5432`, database `test`); they fail, not
//! skip, when it is unreachable.

mod common;

use common::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

macro_rules! backend_tests {
    (
        both: [$($(#[$m:meta])* $name:ident),* $(,)?],
        sqlite_only: [$($(#[$sm:meta])* $sname:ident),* $(,)?],
        postgres_only: [$($(#[$pm:meta])* $pname:ident),* $(,)?] $(,)?
    ) => {
        mod sqlite {
            $( $(#[$m])* #[test] fn $name() { super::$name(super::Backend::Sqlite) } )*
            $( $(#[$sm])* #[test] fn $sname() { super::$sname() } )*
        }
        mod postgres {
            $( $(#[$m])* #[test] fn $name() { super::$name(super::Backend::Postgres) } )*
            $( $(#[$pm])* #[test] fn $pname() { super::$pname() } )*
        }
    };
}

backend_tests! {
    both: [
        allowed_command_runs_and_outcome_is_recorded,
        forbidden_command_exits_77_without_running,
        approval_by_two_reviewers_lets_waiting_exec_run,
        second_approval_by_same_reviewer_does_not_count,
        self_approval_is_refused_and_recorded,
        deny_stops_waiting_exec,
        expiry_gives_75_and_sweeper_expires_on_time,
        approval_is_bound_to_command_and_single_use,
        agent_token_cannot_approve,
        role_matrix_over_http,
        bad_input_gets_precise_problems,
        bad_policy_reload_keeps_old_set,
        every_state_change_has_its_audit_event,
        policy_is_rechecked_when_the_approval_is_used,
        ls_and_show_print_json,
    ],
    sqlite_only: [
        dev_mode_demo_flow,
        exec_binds_the_files_it_runs,
        exec_binds_and_resets_the_environment,
    ],
    postgres_only: [database_outage_fails_closed_and_recovers],
}

const EXPORT: [&str; 3] = ["test.export", "customers", "prod"];

fn export_body() -> Value {
    json!({ "action": "test.export", "resource": "customers", "environment": "prod" })
}

fn exec(action: &str, extra: &[&str], command: &[&str]) -> Vec<String> {
    let (resource, env) = if action == "test.export" {
        (EXPORT[1], EXPORT[2])
    } else {
        ("customers", "dev")
    };
    exec_args(action, resource, env, extra, command)
}

/// Submits `test.export` of `cmd` through the exec gate as the bot, which
/// gives up waiting after a second (exit 75) and leaves the request pending
/// with the binding the gate took (executable, files, environment).
fn submit_through_exec(gw: &Gateway, cmd: &[&str]) -> String {
    let out = gw.cli_as("bot", exec("test.export", &["--wait", "1s"], cmd));
    assert_eq!(out.code, 75, "{out}");
    let id = out.request_id();
    assert_eq!(gw.request(&id)["status"], "pending");
    id
}

/// Scenario 1: An allowed command runs, its output appears, its exit status is
/// passed through, and the request ends `executed` with the outcome.
fn allowed_command_runs_and_outcome_is_recorded(b: Backend) {
    let gw = Gateway::start(b);
    let out = gw.cli_as(
        "bot",
        exec(
            "test.read",
            &[],
            &["sh", "-c", "echo hello from the command; echo noise >&2"],
        ),
    );
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(out.stdout, "hello from the command\n", "{out}");
    assert!(out.stderr.contains("noise"), "{out}");
    let id = out.request_id();
    let r = gw.request(&id);
    assert_eq!(r["status"], "executed", "{r:#}");
    assert_eq!(r["principal"], "agent:bot");
    assert_eq!(r["gate"], "exec");
    assert_eq!(
        r["context"]["command"],
        "sh -c 'echo hello from the command; echo noise >&2'"
    );
    assert_eq!(r["outcome"]["exit_code"], 0, "{r:#}");
    assert_eq!(
        r["outcome"]["output_sha256"],
        sha256_hex(b"hello from the command\n"),
        "stdout hash: {r:#}"
    );

    let out = gw.cli_as("bot", exec("test.read", &[], &["sh", "-c", "exit 3"]));
    assert_eq!(
        out.code, 3,
        "exec must exit with the command's own status: {out}"
    );
    let r = gw.request(&out.request_id());
    assert_eq!(r["status"], "executed");
    assert_eq!(r["outcome"]["exit_code"], 3);
    assert_eq!(r["outcome"]["output_sha256"], sha256_hex(b""));
}

/// Scenario 2: A forbidden command exits 77 and does not run.
fn forbidden_command_exits_77_without_running(b: Backend) {
    let gw = Gateway::start(b);
    let marker = gw.path("dropped");
    let out = gw.cli_as("bot", exec("test.drop", &[], &["touch", &plain(&marker)]));
    assert_eq!(out.code, 77, "{out}");
    assert!(!marker.exists(), "a forbidden command ran: {out}");
    assert!(
        out.stderr.contains("dropping is never allowed"),
        "stderr should say why: {out}"
    );
    let r = gw.request(&out.request_id());
    assert_eq!(r["status"], "denied");
    assert_eq!(r["verdict"]["decision"], "deny", "{r:#}");
    assert_eq!(r["claimed_at"], Value::Null);
}

/// Scenario 3: An approval-required command waits, is approved by two distinct
/// reviewers of group sre with `signoff approve`, then runs.
fn approval_by_two_reviewers_lets_waiting_exec_run(b: Backend) {
    let gw = Gateway::start(b);
    let marker = gw.path("exported");
    let script = format!("touch {} && echo exported", plain(&marker));
    let mut bg = gw.spawn_as(
        "bot",
        exec("test.export", &["--wait", "30s"], &["sh", "-c", &script]),
    );
    let id = gw.pending_id("test.export");
    std::thread::sleep(Duration::from_millis(300));
    assert!(bg.running() && !marker.exists(), "ran before any approval");

    let out = gw.cli_as("alice", ["approve", &id]);
    assert_eq!(out.code, 0, "{out}");
    assert!(
        out.stdout.contains(&id) && out.stdout.contains("pending"),
        "{out}"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        bg.running() && !marker.exists(),
        "ran after only one of two approvals"
    );
    assert_eq!(gw.request(&id)["status"], "pending");

    let out = gw.cli_as("bob", ["approve", &id, "--reason", "looks fine"]);
    assert_eq!(out.code, 0, "{out}");
    let out = bg.finish(Duration::from_secs(20));
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(out.stdout, "exported\n", "{out}");
    assert!(marker.exists(), "approved command did not run: {out}");
    let r = gw.request(&id);
    assert_eq!(r["status"], "executed", "{r:#}");
    assert_eq!(r["approved_by"], json!(["alice", "bob"]));
    assert_eq!(r["outcome"]["exit_code"], 0);
}

/// Scenario 4: A second approval by the same reviewer does not count.
fn second_approval_by_same_reviewer_does_not_count(b: Backend) {
    let gw = Gateway::start(b);
    let id = gw.submit("bot", export_body())["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let out = gw.cli_as("alice", ["approve", &id]);
    assert_eq!(out.code, 0, "{out}");
    let out = gw.cli_as("alice", ["approve", &id]);
    assert_ne!(out.code, 0, "{out}");
    assert!(out.stderr.contains("already reviewed"), "{out}");
    let r = gw.request(&id);
    assert_eq!(r["status"], "pending", "{r:#}");
    assert_eq!(r["approved_by"], json!(["alice"]));
    assert_eq!(r["reviews"].as_array().unwrap().len(), 1);
    // a second *person* does count
    assert_eq!(gw.cli_as("bob", ["approve", &id]).code, 0);
    assert_eq!(gw.request(&id)["status"], "approved");

    // the same reviewer approving several times at once still counts once
    let id = gw.submit("bot", export_body())["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let racers: Vec<Bg> = (0..4)
        .map(|_| gw.spawn_as("alice", ["approve", id.as_str()]))
        .collect();
    let outs: Vec<Out> = racers
        .into_iter()
        .map(|r| r.finish(Duration::from_secs(30)))
        .collect();
    let ok = outs.iter().filter(|o| o.code == 0).count();
    assert_eq!(ok, 1, "concurrent approvals by one reviewer: {outs:#?}");
    let r = gw.request(&id);
    assert_eq!(r["status"], "pending", "{r:#}");
    assert_eq!(r["approved_by"], json!(["alice"]));
    // and straight at the API, with no process start-up to spread them out
    let id = gw.submit("bot", export_body())["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/v1/requests/{id}/reviews");
    let resps = gw.post_concurrently(8, "bob", &path, json!({ "decision": "approve" }));
    let mut codes: Vec<u16> = resps.iter().map(|r| r.status).collect();
    codes.sort();
    assert_eq!(
        codes,
        [200, 409, 409, 409, 409, 409, 409, 409],
        "{resps:#?}"
    );
    assert_eq!(gw.request(&id)["approved_by"], json!(["bob"]));
}

/// Scenario 5: Self-approval is refused for the requesting user, the on-behalf-of
/// human and the agent's owner (an admin in sre), and each refusal is
/// recorded as a `review_refused` event.
fn self_approval_is_refused_and_recorded(b: Backend) {
    let gw = Gateway::start(b);
    let own = gw.submit("dave", export_body());
    assert_eq!(own["principal"], "user:dave");
    let mut behalf_body = export_body();
    behalf_body["on_behalf_of"] = json!("alice");
    let behalf = gw.submit("bot", behalf_body);
    let owned = gw.submit("bot", export_body());
    let cases = [
        ("dave", &own, "they are its requester"),
        ("alice", &behalf, "it is on their behalf"),
        ("olga", &owned, "they own the requesting agent"),
    ];
    for (who, req, why) in cases {
        let id = req["id"].as_str().unwrap();
        let out = gw.cli_as(who, ["approve", id]);
        assert_ne!(out.code, 0, "{who} approved their own request: {out}");
        assert!(
            out.stderr.contains("cannot review this request") && out.stderr.contains(why),
            "{out}"
        );
        let r = gw.request(id);
        assert_eq!(r["status"], "pending", "{r:#}");
        assert_eq!(r["approved_by"], json!([]));
        assert_eq!(r["reviews"], json!([]));
        let refused: Vec<Value> = gw
            .events_for(id)
            .into_iter()
            .filter(|e| e["kind"] == "review_refused" && e["actor"] == format!("user:{who}"))
            .collect();
        assert_eq!(
            refused.len(),
            1,
            "refusal of {who} on {id} not recorded exactly once: {refused:#?}"
        );
        assert!(
            refused[0]["reason"].as_str().unwrap_or("").contains(why),
            "{:#}",
            refused[0]
        );
    }
    // the owner cannot deny either, even as an admin
    let id = owned["id"].as_str().unwrap();
    let out = gw.cli_as("olga", ["deny", id, "--reason", "mine"]);
    assert_ne!(out.code, 0, "{out}");
    assert_eq!(gw.request(id)["status"], "pending");
}

/// Scenario 6: A deny stops a waiting exec: exit 77, command not run.
fn deny_stops_waiting_exec(b: Backend) {
    let gw = Gateway::start(b);
    let marker = gw.path("exported");
    let bg = gw.spawn_as(
        "bot",
        exec(
            "test.export",
            &["--wait", "30s"],
            &["touch", &plain(&marker)],
        ),
    );
    let id = gw.pending_id("test.export");
    let out = gw.cli_as("alice", ["deny", &id, "--reason", "not during the freeze"]);
    assert_eq!(out.code, 0, "{out}");
    let out = bg.finish(Duration::from_secs(20));
    assert_eq!(out.code, 77, "{out}");
    assert!(!marker.exists(), "a denied command ran: {out}");
    assert!(
        out.stderr.contains("not during the freeze") && out.stderr.contains(&id),
        "{out}"
    );
    let r = gw.request(&id);
    assert_eq!(r["status"], "denied");
    assert_eq!(r["claimed_at"], Value::Null);
}

/// Scenario 7: Expiry gives 75, the request is `expired` for everyone, and the
/// sweeper expires a request nobody waits on within ttl + ~2 s.
fn expiry_gives_75_and_sweeper_expires_on_time(b: Backend) {
    let gw = Gateway::start(b);
    let marker = gw.path("quick");
    let started = Instant::now();
    let out = gw
        .spawn_as("bot", exec("test.quick", &[], &["touch", &plain(&marker)]))
        .finish(Duration::from_secs(20));
    let took = started.elapsed();
    assert_eq!(out.code, 75, "{out}");
    assert!(!marker.exists(), "an expired command ran");
    assert!(out.stderr.contains("expired"), "{out}");
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(8),
        "ttl is 2s, exec took {took:?}"
    );
    let id = out.request_id();
    assert_eq!(
        gw.request(&id)["status"],
        "expired",
        "as seen by the auditor"
    );
    let out = gw.cli_as(
        "bot",
        exec(
            "test.export",
            &["--wait", "1s"],
            &["touch", &plain(&marker)],
        ),
    );
    assert_eq!(out.code, 75, "the wait ran out: {out}");
    assert!(out.stderr.contains("still pending"), "{out}");
    assert!(!marker.exists(), "ran after the wait ran out");
    assert_eq!(gw.request(&out.request_id())["status"], "pending");
    assert_eq!(
        gw.get_as("alice", &format!("/v1/requests/{id}"))
            .expect(200)["status"],
        "expired",
        "as seen by a reviewer"
    );

    // nobody waits on this one: only the sweeper can expire it
    let submitted = Instant::now();
    let id = gw.submit(
        "bot",
        json!({ "action": "test.quick", "resource": "customers", "environment": "dev" }),
    )["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let expired_after = poll(
        Duration::from_millis(4500),
        Duration::from_millis(100),
        || {
            let status = gw.request(&id)["status"].as_str().unwrap_or("").to_owned();
            (status != "pending").then(|| (status, submitted.elapsed()))
        },
    );
    let Some((status, at)) = expired_after else {
        panic!("request {id} still pending 4.5s after submission with a 2s ttl: the sweeper did not expire it");
    };
    assert_eq!(status, "expired");
    assert!(
        at >= Duration::from_millis(1500),
        "expired after {at:?}, before its 2s ttl"
    );
    let events = gw.events_for(&id);
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "request_expired" && e["actor"] == "system"),
        "{:?}",
        kinds(&events)
    );
}

/// Scenario 8: An approval cannot be claimed for a changed command, nor twice.
fn approval_is_bound_to_command_and_single_use(b: Backend) {
    let gw = Gateway::start(b);
    let marker = gw.path("approved-cmd");
    let other = gw.path("other-cmd");
    let approved_cmd = ["touch".to_owned(), plain(&marker)];
    let submit_approved = || {
        let cmd: Vec<&str> = approved_cmd.iter().map(String::as_str).collect();
        let id = submit_through_exec(&gw, &cmd);
        gw.review("alice", &id, "approve", None).expect(200);
        assert_eq!(
            gw.review("bob", &id, "approve", None).expect(200)["status"],
            "approved"
        );
        id
    };
    let exec_request =
        |id: &str, cmd: &[&str]| gw.cli_as("bot", exec("test.export", &["--request", id], cmd));

    let id = submit_approved();
    let out = exec_request(&id, &["touch", &plain(&other)]);
    assert_eq!(out.code, 77, "{out}");
    assert!(
        out.stderr.contains("does not match the approved action"),
        "digest mismatch should be named: {out}"
    );
    assert!(
        !other.exists() && !marker.exists(),
        "a command ran on someone else's approval"
    );
    assert_eq!(
        gw.request(&id)["status"],
        "approved",
        "a refused claim must not consume the approval"
    );
    assert!(
        gw.events_for(&id)
            .iter()
            .any(|e| e["kind"] == "claim_refused"),
        "refused claim not recorded"
    );

    let digest = gw.request(&id)["digest"].clone();
    let claim = gw.post_as(
        "bot",
        &format!("/v1/requests/{id}/claim"),
        json!({ "digest": digest }),
    );
    assert_eq!(claim.expect(200)["status"], "executing");
    gw.post_as(
        "bot",
        &format!("/v1/requests/{id}/claim"),
        json!({ "digest": digest }),
    )
    .assert_problem(409);
    let out = exec_request(
        &id,
        &approved_cmd.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert_eq!(out.code, 77, "{out}");
    assert!(
        !marker.exists(),
        "ran on an already claimed approval: {out}"
    );

    // the exec gate itself uses an approval once
    let id = submit_approved();
    let cmd: Vec<&str> = approved_cmd.iter().map(String::as_str).collect();
    let out = exec_request(&id, &cmd);
    assert_eq!(out.code, 0, "{out}");
    assert!(marker.exists(), "the approved command did not run: {out}");
    std::fs::remove_file(&marker).unwrap();
    let out = exec_request(&id, &cmd);
    assert_eq!(out.code, 77, "{out}");
    assert!(!marker.exists(), "an approval ran twice: {out}");
    assert_eq!(gw.request(&id)["status"], "executed");

    // several gates racing to use one approval: exactly one runs
    let counter = plain(&gw.path("counter"));
    let script = format!("echo ran >> {counter}");
    let id = submit_through_exec(&gw, &["sh", "-c", &script]);
    gw.review("alice", &id, "approve", None).expect(200);
    gw.review("bob", &id, "approve", None).expect(200);
    let racers: Vec<Bg> = (0..4)
        .map(|_| {
            gw.spawn_as(
                "bot",
                exec("test.export", &["--request", &id], &["sh", "-c", &script]),
            )
        })
        .collect();
    let codes: Vec<i32> = racers
        .into_iter()
        .map(|r| r.finish(Duration::from_secs(30)).code)
        .collect();
    let ran = std::fs::read_to_string(&counter).unwrap_or_default();
    assert_eq!(
        ran,
        "ran\n",
        "one approval ran {} times",
        ran.lines().count()
    );
    let mut sorted = codes.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        [0, 77, 77, 77],
        "exit codes of racing gates: {codes:?}"
    );

    // and racing claims straight at the API: exactly one wins
    let id = submit_approved();
    let digest = gw.request(&id)["digest"].clone();
    let path = format!("/v1/requests/{id}/claim");
    let resps = gw.post_concurrently(8, "bot", &path, json!({ "digest": digest }));
    let mut codes: Vec<u16> = resps.iter().map(|r| r.status).collect();
    codes.sort();
    assert_eq!(
        codes,
        [200, 409, 409, 409, 409, 409, 409, 409],
        "{resps:#?}"
    );
    let claimed = gw
        .events_for(&id)
        .iter()
        .filter(|e| e["kind"] == "request_claimed")
        .count();
    assert_eq!(claimed, 1, "one approval claimed {claimed} times");
}

/// Scenario 9: An agent token cannot approve: 403 problem+json, recorded.
fn agent_token_cannot_approve(b: Backend) {
    let gw = Gateway::start(b);
    let id = gw.submit("bot", export_body())["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // another agent's request is, to an agent, an unknown id: 404, and no
    // event per probe (the metric counts them)
    gw.review("bot2", &id, "approve", None).assert_problem(404);
    // on its own request the refused attempt is recorded
    gw.review("bot", &id, "approve", None).assert_problem(403);
    for (agent, expected) in [("bot2", 0), ("bot", 1)] {
        let refused = gw
            .events_for(&id)
            .into_iter()
            .filter(|e| e["kind"] == "review_refused" && e["actor"] == format!("agent:{agent}"))
            .count();
        assert_eq!(refused, expected, "refused reviews by agent:{agent}");
    }
    let out = gw.cli_as("bot2", ["approve", &id]);
    assert_ne!(out.code, 0, "{out}");
    let r = gw.request(&id);
    assert_eq!(r["status"], "pending");
    assert_eq!(r["reviews"], json!([]));
}

/// Collects mismatches so one run shows the whole matrix.
struct Matrix<'a> {
    gw: &'a Gateway,
    failures: Vec<String>,
}

impl Matrix<'_> {
    fn check(&mut self, resp: Resp, status: u16) -> Resp {
        if status >= 400 {
            if let Some(m) = resp.problem_mismatch(status) {
                self.failures.push(m);
            }
        } else if resp.status != status {
            self.failures.push(format!(
                "{}: expected {status}, got {} {}",
                resp.what, resp.status, resp.body
            ));
        }
        resp
    }
    fn get(&mut self, who: &str, path: &str, status: u16) -> Resp {
        let r = self.gw.get_as(who, path);
        self.check(r, status)
    }
    fn post(&mut self, who: &str, path: &str, body: Value, status: u16) -> Resp {
        let r = self.gw.post_as(who, path, body);
        self.check(r, status)
    }
}

/// Scenario 10: The role matrix over HTTP, for every endpoint.
fn role_matrix_over_http(b: Backend) {
    let mut gw = Gateway::start(b);
    // principals created by the admin over the API get revoked below
    let (agent, other, reviewer, auditor, admin) = ("bot", "bot2", "alice", "audrey", "root");
    let read = json!({ "action": "test.read", "resource": "customers", "environment": "dev" });
    let mut m = Matrix {
        gw: &gw,
        failures: Vec::new(),
    };

    // submit
    for (who, status) in [(agent, 201), (reviewer, 201), (auditor, 403), (admin, 201)] {
        m.post(who, "/v1/requests", read.clone(), status);
    }
    let mine = m.post(other, "/v1/requests", read.clone(), 201).json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let id = m.post(agent, "/v1/requests", read.clone(), 201).json()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // list: everyone may, agents see only their own
    for who in [agent, other, reviewer, auditor, admin] {
        let page = m.get(who, "/v1/requests", 200).json();
        let principals: Vec<&str> = page["requests"]
            .as_array()
            .map(|a| a.iter().filter_map(|r| r["principal"].as_str()).collect())
            .unwrap_or_default();
        let ids: Vec<&str> = page["requests"]
            .as_array()
            .map(|a| a.iter().filter_map(|r| r["id"].as_str()).collect())
            .unwrap_or_default();
        match who {
            "bot" | "bot2" => {
                if principals.iter().any(|p| *p != format!("agent:{who}")) {
                    m.failures.push(format!(
                        "{who} sees other principals' requests: {principals:?}"
                    ));
                }
            }
            _ => {
                if !(ids.contains(&id.as_str()) && ids.contains(&mine.as_str())) {
                    m.failures
                        .push(format!("{who} does not see every request: {ids:?}"));
                }
            }
        }
    }

    // get and wait: an agent gets 404 for another agent's request
    for (who, status) in [
        (agent, 200),
        (other, 404),
        (reviewer, 200),
        (auditor, 200),
        (admin, 200),
    ] {
        m.get(who, &format!("/v1/requests/{id}"), status);
        m.get(who, &format!("/v1/requests/{id}/wait?timeout=1"), status);
    }

    // review, each on a fresh pending request (another agent's request is
    // an unknown id to an agent)
    for (who, decision, status) in [
        (agent, "approve", 403),
        (other, "approve", 404),
        (auditor, "approve", 403),
        (reviewer, "approve", 200),
        (admin, "deny", 200),
    ] {
        let pending = gw.submit(agent, export_body())["id"]
            .as_str()
            .unwrap()
            .to_owned();
        m.post(
            who,
            &format!("/v1/requests/{pending}/reviews"),
            json!({ "decision": decision, "reason": "matrix" }),
            status,
        );
    }

    // cancel: only the requester or an admin
    for (who, status) in [
        (agent, 200),
        (other, 404),
        (reviewer, 403),
        (auditor, 403),
        (admin, 200),
    ] {
        let pending = gw.submit(agent, export_body())["id"]
            .as_str()
            .unwrap()
            .to_owned();
        m.post(
            who,
            &format!("/v1/requests/{pending}/cancel"),
            json!({ "reason": "matrix" }),
            status,
        );
    }

    // claim and outcome: only the requester
    let digest = gw.request(&id)["digest"].clone();
    for (who, status) in [
        (other, 404),
        (reviewer, 403),
        (auditor, 403),
        (admin, 403),
        (agent, 200),
    ] {
        m.post(
            who,
            &format!("/v1/requests/{id}/claim"),
            json!({ "digest": digest }),
            status,
        );
    }
    let outcome = json!({ "exit_code": 0, "duration_ms": 12 });
    for (who, status) in [
        (other, 404),
        (reviewer, 403),
        (auditor, 403),
        (admin, 403),
        (agent, 200),
    ] {
        m.post(
            who,
            &format!("/v1/requests/{id}/outcome"),
            outcome.clone(),
            status,
        );
    }

    // audit trail: auditor and admin only
    for (who, status) in [(agent, 403), (reviewer, 403), (auditor, 200), (admin, 200)] {
        m.get(who, "/v1/audit/events", status);
    }

    // principals and policy: admin only
    for (who, status) in [(agent, 403), (reviewer, 403), (auditor, 403), (admin, 200)] {
        m.get(who, "/v1/principals", status);
        m.post(who, "/v1/policy/reload", json!({}), status);
        m.get(who, "/v1/whoami", 200);
        m.get(who, "/v1/policy", 200);
    }
    for (who, status) in [(agent, 403), (reviewer, 403), (auditor, 403)] {
        let body = json!({ "kind": "user", "name": format!("new-by-{who}"), "groups": ["sre"] });
        m.post(who, "/v1/principals", body, status);
        m.post(who, "/v1/principals/carl/revoke", json!({}), status);
    }
    let created = m
        .post(
            admin,
            "/v1/principals",
            json!({ "kind": "user", "name": "newbie", "groups": ["sre"] }),
            201,
        )
        .json();
    let failures = std::mem::take(&mut m.failures);
    drop(m);
    let newbie = created["token"].as_str().map(str::to_owned);
    let mut failures = failures;
    if let Some(token) = newbie {
        gw.add_token("newbie", &token);
        let mut m = Matrix { gw: &gw, failures };
        m.get("newbie", "/v1/whoami", 200);
        m.post(admin, "/v1/principals/newbie/revoke", json!({}), 200);
        m.get("newbie", "/v1/whoami", 401);
        m.get(auditor, "/v1/whoami", 200);
        m.post(admin, "/v1/principals/nobody-here/revoke", json!({}), 404);
        failures = m.failures;
    } else {
        failures.push(format!("admin-created principal has no token: {created}"));
    }
    assert!(
        failures.is_empty(),
        "role matrix mismatches:\n{}",
        failures.join("\n")
    );
}

/// Scenario 11: Bad input gets precise problems.
fn bad_input_gets_precise_problems(b: Backend) {
    let mut gw = Gateway::start(b);
    let agent = gw.token("bot");
    let post_raw = |ct: &'static str, bytes: Vec<u8>| {
        gw.http(
            "POST",
            "/v1/requests",
            Some(&agent),
            Body::Raw(ct, bytes),
            &[],
        )
    };

    post_raw("application/json", br#"{"action": "test.read","#.to_vec()).assert_problem(400);
    let p = post_raw(
        "application/json",
        br#"{"action":"test.read","resource":"r","bogus_field":1}"#.to_vec(),
    )
    .assert_problem(422);
    assert!(
        p["detail"].as_str().unwrap().contains("bogus_field"),
        "422 must name the field: {p}"
    );
    post_raw(
        "text/plain",
        br#"{"action":"test.read","resource":"r"}"#.to_vec(),
    )
    .assert_problem(415);
    let big = serde_json::to_vec(
        &json!({ "action": "test.read", "resource": "r", "justification": "x".repeat(70 * 1024) }),
    )
    .unwrap();
    post_raw("application/json", big).assert_problem(413);

    let unknown = "01J00000000000000000000000";
    let p = gw
        .get_as("audrey", &format!("/v1/requests/{unknown}"))
        .assert_problem(404);
    assert!(p["detail"].as_str().unwrap().contains(unknown), "{p}");
    gw.review("alice", unknown, "approve", None)
        .assert_problem(404);

    for (label, token) in [("missing", None), ("invalid", Some("so_not-a-real-token"))] {
        let r = gw.http("GET", "/v1/requests", token, Body::Empty, &[]);
        r.assert_problem(401);
        assert_eq!(
            r.header("www-authenticate"),
            Some("Bearer"),
            "{label} token: 401 needs WWW-Authenticate"
        );
    }

    // revoked token
    let temp = gw.add_principal("temp", &["user", "temp", "--group", "sre"]);
    gw.http("GET", "/v1/whoami", Some(&temp), Body::Empty, &[])
        .expect(200);
    let out = std::process::Command::new(BIN)
        .args(["principal", "revoke", "temp", "--config"])
        .arg(&gw.config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "principal revoke: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The gateway caches successful token lookups for 2 s (AUTH_CACHE_TTL), so
    // a revocation made by another process (the console here, or another
    // replica) takes effect within that bound; allow 1 s of slack.
    let revoked = poll(Duration::from_secs(3), Duration::from_millis(100), || {
        let r = gw.http("GET", "/v1/whoami", Some(&temp), Body::Empty, &[]);
        (r.status != 200).then_some(r)
    })
    .expect("a token revoked with `signoff principal revoke` still works after 3s");
    revoked.assert_problem(401);
    assert_eq!(revoked.header("www-authenticate"), Some("Bearer"));
    std::thread::sleep(Duration::from_millis(300));
    gw.http("GET", "/v1/whoami", Some(&temp), Body::Empty, &[])
        .assert_problem(401);

    // duplicate review, review after decision
    let id = gw.submit("bot", export_body())["id"]
        .as_str()
        .unwrap()
        .to_owned();
    gw.review("alice", &id, "approve", None).expect(200);
    let p = gw.review("alice", &id, "approve", None).assert_problem(409);
    assert!(
        p["type"].as_str().unwrap().ends_with("already-reviewed"),
        "{p}"
    );
    gw.review("bob", &id, "deny", Some("no")).expect(200);
    gw.review("carl", &id, "approve", None).assert_problem(409);
    gw.review("carl", &id, "deny", None).assert_problem(422);

    // idempotency
    let post_key = |key: &str, body: Value| {
        gw.http(
            "POST",
            "/v1/requests",
            Some(&agent),
            Body::Json(body),
            &[("Idempotency-Key", key)],
        )
    };
    let first = post_key("key-1", export_body());
    let first_id = first.expect(201)["id"].clone();
    let again = post_key("key-1", export_body());
    assert_eq!(
        again.expect(200)["id"],
        first_id,
        "same key + same body must replay the same request"
    );
    let mut different = export_body();
    different["resource"] = json!("payments");
    post_key("key-1", different.clone()).assert_problem(422);
    // keys belong to the principal: another agent's identical key is a new request
    let other = gw.http(
        "POST",
        "/v1/requests",
        Some(&gw.token("bot2")),
        Body::Json(different),
        &[("Idempotency-Key", "key-1")],
    );
    assert_ne!(
        other.expect(201)["id"],
        first_id,
        "another principal's idempotency key replayed bot's request"
    );
    let pending = gw
        .get_as(
            "audrey",
            "/v1/requests?status=pending&action=test.export&principal=agent:bot",
        )
        .expect(200);
    assert_eq!(
        pending["requests"].as_array().unwrap().len(),
        1,
        "idempotent retries created extra requests: {pending}"
    );
}

/// Scenario 12: A broken policy reload is rejected with file:line:col, the old set
/// stays in force, and the rejection is recorded.
fn bad_policy_reload_keeps_old_set(b: Backend) {
    let gw = Gateway::start(b);
    let before = gw.get_as("root", "/v1/policy").expect(200);
    let broken = "// broken on purpose: the valid forbid must not take effect either\n\
                  @id(\"forbid-read\")\n\
                  forbid(principal, action == Action::\"test.read\", resource);\n\
                  \n\
                  permit(principal, action, resource) when { context.x == };\n";
    std::fs::write(gw.policies.join("broken.cedar"), broken).unwrap();
    let p = gw
        .post_as("root", "/v1/policy/reload", json!({}))
        .assert_problem(422);
    let detail = p["detail"].as_str().unwrap();
    assert!(
        detail.contains("broken.cedar:5:57"),
        "detail must name file:line:col of the `}}`: {detail}"
    );
    let after = gw.get_as("root", "/v1/policy").expect(200);
    assert_eq!(
        after["hash"], before["hash"],
        "the active policy set changed"
    );

    let marker = gw.path("read-ran");
    let out = gw.cli_as("bot", exec("test.read", &[], &["touch", &plain(&marker)]));
    assert_eq!(out.code, 0, "old set should still allow test.read: {out}");
    assert!(marker.exists());
    let out = gw.cli_as("bot", exec("test.drop", &[], &["true"]));
    assert_eq!(out.code, 77, "old set should still forbid test.drop: {out}");

    let rejected: Vec<Value> = gw
        .events()
        .into_iter()
        .filter(|e| e["kind"] == "policy_set_rejected")
        .collect();
    assert_eq!(rejected.len(), 1, "{rejected:#?}");
    assert_eq!(rejected[0]["actor"], "user:root");
    assert!(
        rejected[0]["reason"]
            .as_str()
            .unwrap_or("")
            .contains("broken.cedar:5:57"),
        "{:#}",
        rejected[0]
    );

    // and once fixed, reloading works
    std::fs::remove_file(gw.policies.join("broken.cedar")).unwrap();
    gw.post_as("root", "/v1/policy/reload", json!({}))
        .expect(200);
}

/// 12b. The policy is checked again when the approval is used: an approval
/// given under the old policy does not run an action the new one forbids.
fn policy_is_rechecked_when_the_approval_is_used(b: Backend) {
    let gw = Gateway::start(b);
    let marker = gw.path("exported");
    let id = submit_through_exec(&gw, &["touch", &plain(&marker)]);
    gw.review("alice", &id, "approve", None).expect(200);
    gw.review("bob", &id, "approve", None).expect(200);
    gw.reload_with(
        "freeze.cedar",
        "@id(\"export-freeze\")\n@reason(\"export freeze\")\nforbid(principal, action == Action::\"test.export\", resource);\n",
    );
    let marker_arg = plain(&marker);
    let out = gw.cli_as(
        "bot",
        exec("test.export", &["--request", &id], &["touch", &marker_arg]),
    );
    assert_eq!(out.code, 77, "{out}");
    assert!(
        !marker.exists(),
        "ran an action the current policy forbids: {out}"
    );
    assert!(
        out.stderr.contains("policy now denies") && out.stderr.contains("export-freeze"),
        "{out}"
    );
    let r = gw.request(&id);
    assert_eq!(r["status"], "denied", "{r:#}");
    let events = kinds(&gw.events_for(&id));
    assert!(
        events.ends_with(&["claim_refused".to_owned(), "request_denied".to_owned()]),
        "{events:?}"
    );
}

/// Scenario 13: A full approval flow leaves exactly its events, in order, with dense indexes.
fn every_state_change_has_its_audit_event(b: Backend) {
    let gw = Gateway::start(b);
    // concurrent commits must still get dense, ordered indexes
    let burst: Vec<Bg> = (0..6)
        .map(|i| {
            let who = if i % 2 == 0 { "bot" } else { "bot2" };
            gw.spawn_as(who, exec("test.read", &[], &["true"]))
        })
        .collect();
    let bg = gw.spawn_as(
        "bot",
        exec("test.export", &["--wait", "30s"], &["echo", "done"]),
    );
    let id = gw.pending_id("test.export");
    assert_eq!(gw.cli_as("alice", ["approve", &id]).code, 0);
    assert_eq!(gw.cli_as("bob", ["approve", &id]).code, 0);
    let out = bg.finish(Duration::from_secs(20));
    assert_eq!(out.code, 0, "{out}");
    for b in burst {
        let out = b.finish(Duration::from_secs(20));
        assert_eq!(out.code, 0, "{out}");
    }

    let all = gw.events();
    let indexes: Vec<u64> = all
        .iter()
        .map(|e| e["index"].as_u64().expect("index"))
        .collect();
    assert_eq!(
        indexes,
        (0..all.len() as u64).collect::<Vec<_>>(),
        "indexes are not dense from 0"
    );
    let outcomes = all
        .iter()
        .filter(|e| e["kind"] == "outcome_recorded")
        .count();
    assert_eq!(outcomes, 7, "every run has its outcome event");
    let mine: Vec<&Value> = all.iter().filter(|e| e["request_id"] == id).collect();
    assert_eq!(
        kinds(&mine.iter().map(|e| (*e).clone()).collect::<Vec<_>>()),
        [
            "request_submitted",
            "review_recorded",
            "review_recorded",
            "request_approved",
            "request_claimed",
            "outcome_recorded"
        ],
    );
    let actors: Vec<&str> = mine
        .iter()
        .map(|e| e["actor"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        actors,
        [
            "agent:bot",
            "user:alice",
            "user:bob",
            "user:bob",
            "agent:bot",
            "agent:bot"
        ]
    );
    let digest = gw.request(&id)["digest"].clone();
    assert!(
        mine.iter().all(|e| e["digest"] == digest),
        "every event carries the request digest"
    );
}

/// Scenario 14: `signoff ls --json` and `signoff show ID --json`.
fn ls_and_show_print_json(b: Backend) {
    let gw = Gateway::start(b);
    let out = gw.cli_as("bot", exec("test.read", &[], &["true"]));
    assert_eq!(out.code, 0, "{out}");
    let ran = out.request_id();
    let pending = gw.submit("bot", export_body())["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let out = gw.cli_as("audrey", ["ls", "--json"]);
    assert_eq!(out.code, 0, "{out}");
    let list: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("ls --json is not JSON ({e}): {out}"));
    let items = list
        .as_array()
        .unwrap_or_else(|| panic!("ls --json must print an array: {out}"));
    assert_eq!(items.len(), 2, "{out}");
    for item in items {
        for key in ["id", "action", "resource", "status"] {
            assert!(
                item[key].is_string(),
                "ls item lacks string `{key}`: {item:#}"
            );
        }
    }
    let find = |id: &str| {
        items
            .iter()
            .find(|i| i["id"] == id)
            .unwrap_or_else(|| panic!("{id} not listed: {out}"))
    };
    assert_eq!(find(&ran)["status"], "executed");
    assert_eq!(find(&ran)["action"], "test.read");
    assert_eq!(find(&pending)["status"], "pending");
    assert_eq!(find(&pending)["resource"], "customers");

    let out = gw.cli_as("audrey", ["ls", "--status", "pending", "--json"]);
    let list: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(
        list.as_array()
            .map(|a| a.iter().map(|i| i["id"].clone()).collect::<Vec<_>>()),
        Some(vec![json!(pending)]),
        "{out}"
    );
    let out = gw.cli_as("bot2", ["ls", "--json"]);
    assert_eq!(
        out.stdout.trim(),
        "[]",
        "another agent's requests leak through ls: {out}"
    );

    let out = gw.cli_as("audrey", ["show", &ran, "--json"]);
    assert_eq!(out.code, 0, "{out}");
    let shown: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("show --json is not JSON ({e}): {out}"));
    assert_eq!(shown["id"], ran.as_str());
    assert_eq!(shown["status"], "executed");
    assert_eq!(shown["outcome"]["exit_code"], 0);
    let out = gw.cli_as("audrey", ["show", "01J00000000000000000000000", "--json"]);
    assert_ne!(out.code, 0, "{out}");
}

/// Scenario 15: With its database gone, the gateway fails closed (exec 75, nothing
/// runs, /readyz 503) and recovers once the database is back.
fn database_outage_fails_closed_and_recovers() {
    let pg = PrivatePg::start();
    let gw = Gateway::start_on(
        tempfile::Builder::new()
            .prefix("signoff-e2e-")
            .tempdir()
            .unwrap(),
        pg.url(),
        None,
    );
    let out = gw.cli_as("bot", exec("test.read", &[], &["echo", "before"]));
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(
        gw.http("GET", "/readyz", None, Body::Empty, &[]).status,
        200
    );
    // an exec already waiting for approval keeps waiting through the outage
    let waited = gw.path("waited");
    let script = format!("touch {} && echo waited", plain(&waited));
    let mut waiting = gw.spawn_as(
        "bot",
        exec("test.export", &["--wait", "90s"], &["sh", "-c", &script]),
    );
    let waiting_id = gw.pending_id("test.export");

    pg.stop_server();
    let marker = gw.path("during-outage");
    let out = gw.cli_as("bot", exec("test.read", &[], &["touch", &plain(&marker)]));
    assert_eq!(
        out.code, 75,
        "exec must fail closed with 75 while the database is down: {out}"
    );
    assert!(
        !marker.exists(),
        "a command ran without a recorded decision: {out}"
    );
    let stderr = out.stderr.to_lowercase();
    assert!(
        stderr.contains("database") && stderr.contains("unavailable"),
        "stderr should say the database is unavailable: {out}"
    );
    gw.http("GET", "/readyz", None, Body::Empty, &[])
        .assert_problem(503);
    gw.http("GET", "/healthz", None, Body::Empty, &[])
        .expect_text(200);
    assert!(
        waiting.running() && !waited.exists(),
        "the waiting exec gave up or ran during the outage"
    );

    pg.start_server();
    let recovered = poll(Duration::from_secs(15), Duration::from_millis(300), || {
        let out = gw.cli_as("bot", exec("test.read", &[], &["echo", "after"]));
        (out.code == 0).then_some(out)
    });
    let out =
        recovered.expect("the gateway did not recover within 15s of the database coming back");
    assert_eq!(out.stdout, "after\n");
    assert_eq!(
        gw.http("GET", "/readyz", None, Body::Empty, &[]).status,
        200
    );
    assert_eq!(gw.request(&out.request_id())["status"], "executed");

    assert!(waiting.running(), "the waiting exec stopped waiting");
    assert_eq!(gw.cli_as("alice", ["approve", &waiting_id]).code, 0);
    assert_eq!(gw.cli_as("bob", ["approve", &waiting_id]).code, 0);
    let out = waiting.finish(Duration::from_secs(30));
    assert_eq!((out.code, out.stdout.as_str()), (0, "waited\n"), "{out}");
    assert!(waited.exists());
}

/// Scenario 16: `signoff serve --dev` prints URL and tokens, and the demo export flow works.
fn dev_mode_demo_flow() {
    let mut gw = Gateway::start_dev();
    // each demo principal is shown on a line with its own token
    let tokens: Vec<(&str, String)> = ["etl-bot", "alice", "bob", "carol"]
        .into_iter()
        .map(|n| (n, gw.token(n)))
        .collect();
    let shown = |s: &str| {
        tokens
            .iter()
            .all(|(n, t)| s.lines().any(|l| l.contains(n) && l.contains(t.as_str())))
    };
    let banner = poll(Duration::from_secs(10), Duration::from_millis(50), || {
        let s = gw.server_stdout();
        shown(&s).then_some(s)
    })
    .unwrap_or_else(|| {
        panic!(
            "the dev banner does not show every demo principal with its token:\n{}",
            gw.server_stdout()
        )
    });
    assert!(
        banner.starts_with(&format!("signoff listening on {}", gw.url)),
        "{banner}"
    );

    let out = gw.cli_as(
        "etl-bot",
        exec_args("db.read", "customers", "prod", &[], &["echo", "read ok"]),
    );
    assert_eq!((out.code, out.stdout.as_str()), (0, "read ok\n"), "{out}");
    let marker = gw.path("dropped");
    let out = gw.cli_as(
        "etl-bot",
        exec_args(
            "db.drop",
            "customers",
            "prod",
            &[],
            &["touch", &plain(&marker)],
        ),
    );
    assert_eq!(out.code, 77, "{out}");
    assert!(!marker.exists());

    let bg = gw.spawn_as(
        "etl-bot",
        exec_args(
            "db.export",
            "customers",
            "prod",
            &["--justification", "Q3 report", "--wait", "30s"],
            &["echo", "exported"],
        ),
    );
    let id = gw.pending_id("db.export");
    let out = gw.cli_as("carol", ["approve", &id]);
    assert_ne!(
        out.code, 0,
        "carol owns etl-bot and must not approve: {out}"
    );
    assert!(
        out.stderr.contains("they own the requesting agent"),
        "{out}"
    );
    assert!(
        gw.events_for(&id)
            .iter()
            .any(|e| e["kind"] == "review_refused" && e["actor"] == "user:carol"),
        "carol's refused approval is not recorded"
    );
    assert_eq!(gw.cli_as("alice", ["approve", &id]).code, 0);
    assert_eq!(gw.cli_as("bob", ["approve", &id]).code, 0);
    let out = bg.finish(Duration::from_secs(20));
    assert_eq!((out.code, out.stdout.as_str()), (0, "exported\n"), "{out}");
    assert_eq!(gw.request(&id)["approved_by"], json!(["alice", "bob"]));

    // a restart in the same directory keeps the data and prints the same tokens
    gw.restart();
    let banner = poll(Duration::from_secs(10), Duration::from_millis(50), || {
        let s = gw.server_stdout();
        shown(&s).then_some(s)
    })
    .unwrap_or_else(|| {
        panic!(
            "after a restart the dev banner shows other tokens:\n{}",
            gw.server_stdout()
        )
    });
    assert!(
        banner.starts_with(&format!("signoff listening on {}", gw.url)),
        "{banner}"
    );
    assert_eq!(
        gw.request(&id)["status"],
        "executed",
        "dev data lost on restart"
    );
}

// Scenario 17 sits outside `backend_tests!` (appended after it), with its
// own module per backend: `cargo test -p signoff --test e2e sqlite` and
// `… postgres` still select it.
mod exec_progress {
    #[test]
    fn sqlite() {
        super::waiting_exec_logs_each_approval_as_it_lands(super::Backend::Sqlite)
    }
    #[test]
    fn postgres() {
        super::waiting_exec_logs_each_approval_as_it_lands(super::Backend::Postgres)
    }
}

/// Scenario 17: With stderr not a terminal (a CI log), a waiting exec prints
/// plain `signoff:` lines: what to approve and how, then each approval as it
/// lands — while it is still waiting — and finally that it runs.
fn waiting_exec_logs_each_approval_as_it_lands(b: Backend) {
    use std::io::{BufRead, BufReader, Read};
    use std::process::{Child, Command, Stdio};
    use std::sync::{Arc, Mutex};

    /// Kills the exec if the test fails half-way.
    struct Running(Child);
    impl Drop for Running {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    let gw = Gateway::start(b);
    let marker = gw.path("exported");
    let script = format!("touch {} && echo exported", plain(&marker));
    let mut child = Command::new(BIN)
        .args(exec(
            "test.export",
            &["--justification", "Q3 report", "--wait", "60s"],
            &["sh", "-c", &script],
        ))
        .current_dir(gw.dir.path())
        .env("SIGNOFF_URL", &gw.url)
        .env("SIGNOFF_TOKEN", gw.token("bot"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (stdout, stderr) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let mut running = Running(child);
    let log = Arc::new(Mutex::new(String::new()));
    let reader = {
        let log = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = log.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        })
    };
    let stdout = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = BufReader::new(stdout).read_to_string(&mut s);
        s
    });
    let shows = |line: &str| {
        poll(Duration::from_secs(10), Duration::from_millis(50), || {
            log.lock().unwrap().lines().any(|l| l == line).then_some(())
        })
        .unwrap_or_else(|| {
            panic!(
                "stderr has no line {line:?} within 10s:\n{}",
                log.lock().unwrap()
            )
        })
    };

    let id = gw.pending_id("test.export");
    shows(&format!(
        "signoff: request {id} needs approval from sre:2 (test.export on customers, env prod)"
    ));
    shows(&format!("signoff: approve with: signoff approve {id}"));

    assert_eq!(gw.cli_as("alice", ["approve", &id]).code, 0);
    shows("signoff: approved by alice via cli (1 of sre:2)");
    assert!(
        matches!(running.0.try_wait(), Ok(None)) && !marker.exists(),
        "the exec stopped waiting or ran after one of two approvals:\n{}",
        log.lock().unwrap()
    );

    assert_eq!(gw.cli_as("bob", ["approve", &id]).code, 0);
    let status = poll(Duration::from_secs(20), Duration::from_millis(20), || {
        running.0.try_wait().ok().flatten()
    })
    .unwrap_or_else(|| {
        panic!(
            "exec still running 20s after approval:\n{}",
            log.lock().unwrap()
        )
    });
    reader.join().unwrap();
    let stdout = stdout.join().unwrap();
    let log = log.lock().unwrap().clone();
    assert_eq!(status.code(), Some(0), "{log}");
    assert_eq!(stdout, "exported\n", "{log}");
    assert!(marker.exists(), "the approved command did not run:\n{log}");
    let lines: Vec<&str> = log.lines().collect();
    let at = |line: &str| {
        lines
            .iter()
            .position(|l| *l == line)
            .unwrap_or_else(|| panic!("no line {line:?} in stderr:\n{log}"))
    };
    let order = [
        at("signoff: approved by alice via cli (1 of sre:2)"),
        at("signoff: approved by bob via cli (2 of sre:2)"),
        at(&format!("signoff: approved; running sh -c '{script}'")),
        at(&format!(
            "signoff: ran `sh -c '{script}'`: exit 0 (request {id})"
        )),
    ];
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{log}");
}

/// An approval covers what really runs, not only the command line: a
/// script rewritten after the reviewers looked is refused at the claim
/// (77, recorded, naming the file), and the approval still works for the
/// script they saw.
fn exec_binds_the_files_it_runs() {
    let gw = Gateway::start(Backend::Sqlite);
    let marker = gw.path("tampered");
    std::fs::write(gw.path("job.sh"), "echo the approved script\n").unwrap();
    let id = submit_through_exec(&gw, &["sh", "job.sh"]);
    let bound = gw.request(&id)["context"]["exec"].clone();
    assert_eq!(bound["files"][0]["path"], "job.sh", "{bound}");
    assert_eq!(bound["files"][0]["arg"], 1, "{bound}");
    assert!(bound["files"][0]["sha256"]
        .as_str()
        .is_some_and(|h| h.len() == 64));
    assert!(
        bound["executable"]
            .as_str()
            .is_some_and(|p| p.starts_with('/')),
        "the resolved executable is bound: {bound}"
    );
    assert!(bound["executable_sha256"].is_string(), "{bound}");
    gw.review("alice", &id, "approve", None).expect(200);
    gw.review("bob", &id, "approve", None).expect(200);

    std::fs::write(gw.path("job.sh"), format!("touch {}\n", plain(&marker))).unwrap();
    let out = gw.cli_as(
        "bot",
        exec("test.export", &["--request", &id], &["sh", "job.sh"]),
    );
    assert_eq!(out.code, 77, "{out}");
    assert!(!marker.exists(), "the rewritten script ran: {out}");
    assert!(
        out.stderr.contains("the file `job.sh` changed"),
        "the refusal names what changed: {out}"
    );
    assert!(
        gw.events_for(&id)
            .iter()
            .any(|e| e["kind"] == "claim_refused"),
        "refused claim not recorded"
    );
    assert_eq!(gw.request(&id)["status"], "approved");

    std::fs::write(gw.path("job.sh"), "echo the approved script\n").unwrap();
    let out = gw.cli_as(
        "bot",
        exec("test.export", &["--request", &id], &["sh", "job.sh"]),
    );
    assert_eq!(out.code, 0, "{out}");
    assert!(out.stdout.contains("the approved script"), "{out}");
}

/// The command gets a minimal environment; a variable passed with
/// `--pass-env` is shown to reviewers and bound, secrets by hash only, and
/// the gateway token never reaches the command.
fn exec_binds_and_resets_the_environment() {
    let gw = Gateway::start(Backend::Sqlite);
    let evil = [("EVIL", "DROP DATABASE prod"), ("PGPASSWORD", "hunter2")];
    let show = ["sh", "-c", "echo \"evil=[$EVIL] token=[$SIGNOFF_TOKEN]\""];

    // not passed: the command does not see it (nor the token)
    let out = gw.cli_as_with_env("bot", exec("test.read", &[], &show), &evil);
    assert_eq!(out.code, 0, "{out}");
    assert!(out.stdout.contains("evil=[] token=[]"), "{out}");

    // passed: reviewers see the value before approving
    let out = gw.cli_as_with_env(
        "bot",
        exec(
            "test.export",
            &["--wait", "1s", "--pass-env", "EVIL,PGPASSWORD"],
            &show,
        ),
        &evil,
    );
    assert_eq!(out.code, 75, "{out}");
    let id = out.request_id();
    let request = gw.request(&id);
    let env = &request["context"]["exec"]["env"];
    assert_eq!(env["EVIL"], "DROP DATABASE prod", "{request}");
    assert!(env["PGPASSWORD"]["secret_sha256"].is_string(), "{request}");
    assert!(
        !request.to_string().contains("hunter2"),
        "a secret was shown"
    );
    let shown = gw.cli_as("alice", ["show", id.as_str()]);
    assert!(shown.stdout.contains("DROP DATABASE prod"), "{shown}");
    gw.review("alice", &id, "approve", None).expect(200);
    gw.review("bob", &id, "approve", None).expect(200);

    // another value at claim time is refused, naming the variable
    let other = [("EVIL", "something else"), ("PGPASSWORD", "hunter2")];
    let out = gw.cli_as_with_env(
        "bot",
        exec(
            "test.export",
            &["--request", &id, "--pass-env", "EVIL,PGPASSWORD"],
            &show,
        ),
        &other,
    );
    assert_eq!(out.code, 77, "{out}");
    assert!(
        out.stderr.contains("environment variable EVIL changed"),
        "{out}"
    );
    let out = gw.cli_as_with_env(
        "bot",
        exec(
            "test.export",
            &["--request", &id, "--pass-env", "EVIL,PGPASSWORD"],
            &show,
        ),
        &evil,
    );
    assert_eq!(out.code, 0, "{out}");
    assert!(
        out.stdout.contains("evil=[DROP DATABASE prod] token=[]"),
        "{out}"
    );
}
