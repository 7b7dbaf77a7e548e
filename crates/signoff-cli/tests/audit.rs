#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on setup failures
//! `signoff audit …` end to end, on a real SQLite file and a real
//! PostgreSQL database: a gateway makes some decisions, is stopped, and then
//! an attacker with database access drops the append-only triggers and
//! edits, deletes, swaps and truncates ledger rows. `signoff audit verify
//! --config` must name the first index that differs and what is wrong.
//! Also: evidence bundles (export, offline verify, tampering) and the
//! period report (CSV, JSON, HTML) with reconciled counts.
//!
//! ```text
//! cargo test -p signoff --test audit            # both backends
//! cargo test -p signoff --test audit sqlite::   # one backend
//! ```

mod common;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use common::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[test] fn $name() { super::$name(super::Backend::Sqlite) } )*
        }
        mod postgres {
            $( #[test] fn $name() { super::$name(super::Backend::Postgres) } )*
        }
    };
}

backend_tests! {
    tampering_is_detected_with_the_first_index,
    bundle_round_trip_and_tampering,
    report_reconciles_and_flags,
    auditor_commands_over_the_api,
}

/// Verification throughput on a large ledger (not run by default):
///
/// ```text
/// SIGNOFF_AUDIT_PERF_N=200000 cargo test --release -p signoff --test audit throughput -- --ignored --nocapture
/// ```
///
/// With `SIGNOFF_AUDIT_PERF_DIR=DIR` the ledger (SQLite file, or the
/// PostgreSQL database) and its config are kept for repeated
/// `signoff audit verify --config DIR/signoff.toml` runs.
mod throughput {
    #[test]
    #[ignore = "benchmark: writes a large ledger"]
    fn sqlite() {
        super::verify_throughput(super::Backend::Sqlite)
    }
    #[test]
    #[ignore = "benchmark: writes a large ledger"]
    fn postgres() {
        super::verify_throughput(super::Backend::Postgres)
    }
}

// ---------------------------------------------------------------- helpers

fn now() -> jiff::Timestamp {
    jiff::Timestamp::now()
}

/// RFC 3339 with millisecond precision.
fn rfc3339(t: jiff::Timestamp) -> String {
    t.round(jiff::Unit::Millisecond).unwrap().to_string()
}

fn read_body(action: &str) -> Value {
    json!({ "action": action, "resource": "customers", "environment": "dev" })
}

fn export_body() -> Value {
    json!({
        "action": "test.export",
        "resource": "customers",
        "environment": "prod",
        "justification": "quarterly close, \"finance\" <team>",
    })
}

fn id_of(v: &Value) -> String {
    v["id"].as_str().unwrap().to_owned()
}

/// Some history: allowed and executed, denied, approved by two and
/// executed, a refused self-approval, plenty of auto-allowed submissions.
/// Returns the ids of (executed-after-approval, self-approval-attempted).
fn activity(gw: &Gateway, allowed: usize) -> (String, String) {
    let out = gw.cli_as(
        "bot",
        exec_args("test.read", "customers", "dev", &[], &["true"]),
    );
    assert_eq!(out.code, 0, "{out}");
    let out = gw.cli_as(
        "bot",
        exec_args("test.drop", "customers", "dev", &[], &["true"]),
    );
    assert_eq!(out.code, 77, "{out}");

    let bg = gw.spawn_as(
        "bot",
        exec_args(
            "test.export",
            "customers",
            "prod",
            &["--wait", "30s", "--justification", "monthly report"],
            &["sh", "-c", "echo exported"],
        ),
    );
    let approved = gw.pending_id("test.export");
    assert_eq!(gw.cli_as("alice", ["approve", &approved]).code, 0);
    assert_eq!(
        gw.cli_as("bob", ["approve", &approved, "--reason", "ok"])
            .code,
        0
    );
    let out = bg.finish(Duration::from_secs(30));
    assert_eq!(out.code, 0, "{out}");

    // dave asks, then tries to approve his own request: refused and recorded
    let own = id_of(&gw.submit("dave", export_body()));
    let out = gw.cli_as("dave", ["approve", &own]);
    assert_ne!(out.code, 0, "{out}");
    // olga owns the bot: refused too
    let owned = id_of(&gw.submit("bot", export_body()));
    assert_ne!(gw.cli_as("olga", ["approve", &owned]).code, 0);
    assert_eq!(
        gw.cli_as("carl", ["deny", &owned, "--reason", "not now"])
            .code,
        0
    );

    for _ in 0..allowed {
        gw.submit("bot", read_body("test.read"));
    }
    (approved, own)
}

/// `audit verify --config` with the log's key pinned, as an auditor runs it
/// (without `--key` a warning about trusting the found key comes first).
fn verify_config(gw: &Gateway) -> Out {
    gw.cli([
        "audit",
        "verify",
        "--config",
        &plain(&gw.config),
        "--key",
        &gw.ledger_vkey(),
    ])
}

fn assert_verified(gw: &Gateway) -> Out {
    let out = verify_config(gw);
    assert_eq!(out.code, 0, "{out}");
    assert!(out.stdout.starts_with("ledger verified: "), "{out}");
    out
}

fn assert_detected(gw: &Gateway, attack: &str, expected: &str) {
    let out = verify_config(gw);
    assert_eq!(out.code, 1, "{attack}: {out}");
    // without --key a warning about the key comes first
    let first = out
        .stderr
        .lines()
        .find(|l| !l.starts_with("signoff: WARNING: no --key given"))
        .unwrap_or_default();
    assert_eq!(
        first,
        format!("signoff: {expected}"),
        "{attack}: wrong verdict\n{out}"
    );
    assert!(!out.stderr.contains("panicked"), "{out}");
}

fn count(gw: &Gateway, sql: &str) -> u64 {
    gw.sql_ok(sql).trim().parse().unwrap()
}

const COLUMNS: [&str; 11] = [
    "kind",
    "time",
    "actor",
    "request_id",
    "digest",
    "verdict",
    "policy_ids",
    "policy_set_hash",
    "reason",
    "detail",
    "schema",
];

/// Puts back every audit event as it was before the attack.
fn restore(gw: &Gateway) {
    gw.sql_ok(
        "DELETE FROM audit_events; INSERT INTO audit_events SELECT * FROM pristine_events;\
         DELETE FROM ledger_checkpoints; INSERT INTO ledger_checkpoints SELECT * FROM pristine_checkpoints;",
    );
}

// ---------------------------------------------------------------- tamper

fn tampering_is_detected_with_the_first_index(b: Backend) {
    let mut gw = Gateway::start(b);
    activity(&gw, 40);
    gw.stop();

    let entries = count(&gw, "SELECT COUNT(*) FROM audit_events");
    let signed = count(&gw, "SELECT MAX(size) FROM ledger_checkpoints");
    assert_eq!(
        signed, entries,
        "the server signs a last checkpoint on the way out"
    );
    let out = assert_verified(&gw);
    assert!(
        out.stdout
            .contains(&format!("ledger verified: {entries} entries, ")),
        "{out}"
    );
    assert!(
        out.stdout
            .contains(&format!("latest checkpoint {entries} root ")),
        "{out}"
    );
    assert!(out.stdout.contains(" entries/s"), "{out}");

    // the triggers stop a casual edit; the attacker drops them
    let err = gw
        .sql("UPDATE audit_events SET reason = 'x' WHERE idx = 1")
        .unwrap_err();
    assert!(err.contains("append-only"), "{err}");
    gw.drop_append_only_triggers();
    gw.sql_ok(
        "CREATE TABLE pristine_events AS SELECT * FROM audit_events;\
         CREATE TABLE pristine_checkpoints AS SELECT * FROM ledger_checkpoints;",
    );

    // 1. edit one event
    gw.sql_ok("UPDATE audit_events SET reason = 'nothing to see here' WHERE idx = 9");
    assert_detected(
        &gw,
        "edit",
        "entry 9 was edited (leaf hash differs from the one recorded at append time)",
    );
    restore(&gw);
    assert_verified(&gw);

    // The same event spelled differently in its row (as an older store
    // wrote detail) fails the fast column encoding, and is then decided by
    // decoding the row: the event is unchanged, so it verifies.
    gw.sql_ok("UPDATE audit_events SET detail = ' ' || detail WHERE idx = 9");
    assert_verified(&gw);
    restore(&gw);

    // an edit that makes the row unreadable is an edit too
    gw.sql_ok("UPDATE audit_events SET kind = 'request_vanished' WHERE idx = 11");
    let out = verify_config(&gw);
    assert_eq!(out.code, 1, "{out}");
    assert!(
        out.stderr
            .starts_with("signoff: entry 11 was edited (the stored row is not a valid audit event"),
        "{out}"
    );
    restore(&gw);

    // 2. delete one event
    gw.sql_ok("DELETE FROM audit_events WHERE idx = 12");
    assert_detected(&gw, "delete", "entry 12 is missing");
    restore(&gw);

    // 3. swap the contents of two rows
    let set = |from: u64| {
        COLUMNS
            .iter()
            .map(|c| format!("{c} = (SELECT {c} FROM pristine_events WHERE idx = {from})"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    gw.sql_ok(&format!(
        "UPDATE audit_events SET {} WHERE idx = 14; UPDATE audit_events SET {} WHERE idx = 21;",
        set(21),
        set(14)
    ));
    assert_detected(&gw, "swap", "entries 14 and 21 were swapped");
    restore(&gw);

    // a row copied over another is a move
    gw.sql_ok(&format!(
        "UPDATE audit_events SET {} WHERE idx = 15; UPDATE audit_events SET {} WHERE idx = 22;",
        set(22),
        COLUMNS
            .iter()
            .map(|c| format!("{c} = (SELECT {c} FROM pristine_events WHERE idx = 23)"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    assert_detected(
        &gw,
        "move",
        "entry 15 holds what belongs at index 22 (reordered)",
    );
    restore(&gw);

    // 4. truncate the tail behind the signed checkpoint (and hide it from the head)
    gw.sql_ok(&format!(
        "DELETE FROM audit_events WHERE idx >= {}; UPDATE ledger_head SET next_index = {};",
        entries - 3,
        entries - 3
    ));
    assert_detected(
        &gw,
        "truncate",
        &format!(
            "ledger truncated: checkpoint {entries} covers {entries} entries but only {} remain",
            entries - 3
        ),
    );
    restore(&gw);
    gw.sql_ok(&format!("UPDATE ledger_head SET next_index = {entries}"));

    // 5. forge a checkpoint: the signature no longer verifies
    let size = count(
        &gw,
        "SELECT MIN(size) FROM ledger_checkpoints WHERE size > 5",
    );
    let note = gw.sql_ok(&format!(
        "SELECT note FROM ledger_checkpoints WHERE size = {size}"
    ));
    let lines: Vec<&str> = note.lines().collect();
    let forged = format!(
        "{}\n{}\n{}\n\n{}\n",
        lines[0],
        lines[1],
        B64.encode([7u8; 32]),
        lines[4]
    );
    gw.sql_ok(&format!(
        "UPDATE ledger_checkpoints SET note = '{}', root = (SELECT root FROM ledger_checkpoints WHERE size = {size}) WHERE size = {size}",
        forged.replace('\'', "''")
    ));
    let out = verify_config(&gw);
    assert_eq!(out.code, 1, "{out}");
    assert!(
        out.stderr
            .starts_with(&format!("signoff: checkpoint {size} has a bad signature")),
        "{out}"
    );
    restore(&gw);

    // 6. an edit with its leaf hash rewritten too: only the signed root catches it
    gw.sql_ok("UPDATE audit_events SET reason = 'rewritten' WHERE idx = 30");
    let leaf = leaf_hash_of_row(&gw, 30);
    gw.sql_ok(&format!(
        "UPDATE ledger_nodes SET hash = {} WHERE level = 0 AND idx = 30",
        hex_literal(&gw, &leaf)
    ));
    let out = verify_config(&gw);
    assert_eq!(out.code, 1, "{out}");
    let cp = count(
        &gw,
        "SELECT MIN(size) FROM ledger_checkpoints WHERE size > 30",
    );
    assert!(
        out.stderr.starts_with(&format!(
            "signoff: checkpoint {cp} does not match the entries (root differs"
        )),
        "{out}"
    );

    // --key with another log's key: every signature is rejected
    let other = signoff_ledger::note::SigningKey::generate("signoff").unwrap();
    let out = gw.cli([
        "audit",
        "verify",
        "--config",
        &plain(&gw.config),
        "--key",
        &other.vkey(),
    ]);
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stderr.contains("has a bad signature"), "{out}");
    // a bad --key is a readable error
    let out = gw.cli([
        "audit",
        "verify",
        "--config",
        &plain(&gw.config),
        "--key",
        "nonsense",
    ]);
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stderr.starts_with("signoff: --key `nonsense`"), "{out}");
}

/// The leaf hash of row `idx` as it is now, computed the documented way.
fn leaf_hash_of_row(gw: &Gateway, idx: u64) -> [u8; 32] {
    let store_url = gw.database.clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = signoff_store::open(&store_url).await.unwrap();
        let e = store.events(idx, 1).await.unwrap().remove(0);
        signoff_ledger::merkle::leaf_hash(&signoff_ledger::leaf::encode(&e))
    })
}

fn hex_literal(gw: &Gateway, bytes: &[u8]) -> String {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    if gw.is_postgres() {
        format!("'\\x{hex}'::bytea")
    } else {
        format!("X'{hex}'")
    }
}

// ---------------------------------------------------------------- bundles

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.join("proofs")).unwrap();
    for entry in walk(from) {
        let rel = entry.strip_prefix(from).unwrap();
        std::fs::copy(&entry, to.join(rel)).unwrap();
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn verify_bundle(gw: &Gateway, dir: &Path, key: &str) -> Out {
    gw.cli(["audit", "verify", "--bundle", &plain(dir), "--key", key])
}

fn bundle_period(gw: &mut Gateway) -> (String, String, u64) {
    // everything before `since` is setup (principals, policy load)
    std::thread::sleep(Duration::from_millis(20));
    let since = now();
    activity(gw, 10);
    std::thread::sleep(Duration::from_millis(20));
    let until = now();
    gw.stop();
    let in_period = count(
        gw,
        &format!(
            "SELECT COUNT(*) FROM audit_events WHERE time >= {} AND time < {}",
            since.as_millisecond(),
            until.as_millisecond()
        ),
    );
    (rfc3339(since), rfc3339(until), in_period)
}

fn bundle_round_trip_and_tampering(b: Backend) {
    let mut gw = Gateway::start(b);
    let (since, until, in_period) = bundle_period(&mut gw);
    let first_in_period = count(
        &gw,
        "SELECT MIN(idx) FROM audit_events WHERE kind = 'request_submitted'",
    );
    let cfg = plain(&gw.config);
    let dir = gw.path("bundle");
    let out = gw.cli([
        "audit",
        "export",
        "--since",
        &since,
        "--until",
        &until,
        "--out",
        &plain(&dir),
        "--config",
        &cfg,
    ]);
    assert_eq!(out.code, 0, "{out}");
    assert!(
        out.stdout.starts_with(&format!(
            "exported entries {first_in_period} to {} ({in_period} entries, ",
            first_in_period + in_period - 1
        )),
        "{out}"
    );
    for f in ["entries.jsonl", "checkpoint", "key.vkey", "README.md"] {
        assert!(dir.join(f).is_file(), "bundle lacks {f}");
    }
    let entries = std::fs::read_to_string(dir.join("entries.jsonl")).unwrap();
    assert_eq!(entries.lines().count() as u64, in_period);

    // offline: no server, and no database either
    let vkey = gw.ledger_vkey();
    let moved = gw.path("auditor-copy");
    copy_dir(&dir, &moved);
    let out = verify_bundle(&gw, &moved, &vkey);
    assert_eq!(out.code, 0, "{out}");
    assert!(
        out.stdout.starts_with(&format!(
            "bundle verified: {in_period} entries ({first_in_period} to "
        )),
        "{out}"
    );
    assert!(out.stdout.contains(", checkpoint signoff size "), "{out}");
    // the key may also be given as a file
    std::fs::write(gw.path("log.vkey"), format!("{vkey}\n")).unwrap();
    let out = verify_bundle(&gw, &moved, &plain(&gw.path("log.vkey")));
    assert_eq!(out.code, 0, "{out}");

    let lines: Vec<String> = entries.lines().map(str::to_owned).collect();
    let index_of = |line: &str| -> u64 {
        serde_json::from_str::<Value>(line).unwrap()["index"]
            .as_u64()
            .unwrap()
    };
    let tampered = |name: &str, edit: &dyn Fn(&mut Vec<String>)| -> Out {
        let d = gw.path(name);
        copy_dir(&dir, &d);
        let mut l = lines.clone();
        edit(&mut l);
        std::fs::write(d.join("entries.jsonl"), l.join("\n") + "\n").unwrap();
        verify_bundle(&gw, &d, &vkey)
    };

    // edit a leaf: change the actor inside the signed bytes
    let k = 3;
    let target = index_of(&lines[k]);
    let out = tampered("edited", &|l| {
        let v: Value = serde_json::from_str(&l[k]).unwrap();
        let leaf = String::from_utf8(B64.decode(v["leaf"].as_str().unwrap()).unwrap()).unwrap();
        let edited = leaf.replacen("\"actor\":\"", "\"actor\":\"x", 1);
        assert_ne!(edited, leaf);
        l[k] = format!(
            "{{\"index\":{target},\"leaf\":\"{}\"}}",
            B64.encode(edited.as_bytes())
        );
    });
    assert_eq!(out.code, 1, "{out}");
    assert!(
        out.stderr
            .contains(&format!("entry {target} is not in the signed checkpoint")),
        "{out}"
    );

    // remove a line
    let out = tampered("removed", &|l| {
        l.remove(k);
    });
    assert_eq!(out.code, 1, "{out}");
    assert!(
        out.stderr.contains(&format!("entry {target} is missing")),
        "{out}"
    );

    // swap two lines
    let out = tampered("swapped", &|l| l.swap(k, k + 2));
    assert_eq!(out.code, 1, "{out}");
    assert!(
        out.stderr
            .contains(&format!("entry {target} is out of order")),
        "{out}"
    );

    // another key
    let other = signoff_ledger::note::SigningKey::generate("signoff").unwrap();
    let out = verify_bundle(&gw, &moved, &other.vkey());
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stderr.contains("checkpoint: "), "{out}");
    assert!(!out.stderr.contains("panicked"), "{out}");

    // readable errors for bad input
    let run = |args: &[&str]| gw.cli(args);
    let out = run(&[
        "audit",
        "export",
        "--since",
        "yesterday",
        "--until",
        &until,
        "--out",
        &plain(&gw.path("x")),
        "--config",
        &cfg,
    ]);
    assert_eq!(out.code, 1, "{out}");
    assert!(
        out.stderr
            .starts_with("signoff: invalid --since `yesterday`"),
        "{out}"
    );
    let out = run(&[
        "audit",
        "export",
        "--since",
        &until,
        "--until",
        &since,
        "--out",
        &plain(&gw.path("x")),
        "--config",
        &cfg,
    ]);
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stderr.contains("must be after --since"), "{out}");
    let out = run(&[
        "audit",
        "export",
        "--since",
        "2001-01-01T00:00:00Z",
        "--until",
        "2001-02-01T00:00:00Z",
        "--out",
        &plain(&gw.path("x")),
        "--config",
        &cfg,
    ]);
    assert_eq!(out.code, 1, "{out}");
    assert!(
        out.stderr
            .starts_with("signoff: no audit events from 2001-01-01T00:00:00Z"),
        "{out}"
    );
    let out = run(&[
        "audit",
        "export",
        "--since",
        &since,
        "--until",
        &until,
        "--out",
        &plain(&dir),
        "--config",
        &cfg,
    ]);
    assert_eq!(out.code, 1, "{out}");
    assert!(
        out.stderr.contains("directory exists and is not empty"),
        "{out}"
    );
    if !gw.is_postgres() {
        // a config naming a database that does not exist: no empty ledger is created
        let missing = gw.path("missing.toml");
        std::fs::write(
            &missing,
            format!(
                "database = \"sqlite://{}\"\npolicies = \"{}\"\n",
                plain(&gw.path("missing.db")),
                plain(&gw.policies)
            ),
        )
        .unwrap();
        let out = run(&["audit", "verify", "--config", &plain(&missing)]);
        assert_eq!(out.code, 1, "{out}");
        assert!(out.stderr.contains("missing.db does not exist"), "{out}");
        assert!(!gw.path("missing.db").exists());
    }
    let out = run(&[
        "audit",
        "verify",
        "--bundle",
        &plain(&gw.path("nope")),
        "--key",
        &vkey,
    ]);
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stderr.contains("no such directory"), "{out}");
    assert!(!out.stderr.contains("panicked"), "{out}");
}

// ---------------------------------------------------------------- report

/// Splits RFC 4180 CSV into records of fields.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => record.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            (false, c) => field.push(c),
        }
    }
    records
}

fn report_reconciles_and_flags(b: Backend) {
    let mut gw = Gateway::start(b);
    std::thread::sleep(Duration::from_millis(20));
    let since = rfc3339(now());
    let (approved, own) = activity(&gw, 5);
    std::thread::sleep(Duration::from_millis(20));
    let until = rfc3339(now());
    gw.stop();
    let cfg = plain(&gw.config);
    let report = |format: &str, file: &str| -> (Out, String) {
        let path = gw.path(file);
        let out = gw.cli([
            "audit",
            "report",
            "--since",
            &since,
            "--until",
            &until,
            "--format",
            format,
            "--config",
            &cfg,
            "--out",
            &plain(&path),
        ]);
        (out, std::fs::read_to_string(&path).unwrap_or_default())
    };
    // read_ok + drop + export + own + owned + 5 allowed
    let requests = 10u64;

    let (out, text) = report("json", "report.json");
    assert_eq!(out.code, 0, "{out}");
    let r: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(r["counts"]["requests"], requests, "{r:#}");
    assert_eq!(r["ledger"]["request_submitted_events"], requests, "{r:#}");
    assert_eq!(r["discrepancies"], json!([]), "{r:#}");
    let statuses = &r["counts"]["by_status"];
    assert_eq!(statuses["executed"], 2, "{r:#}");
    assert_eq!(statuses["denied"], 2, "{r:#}");
    assert_eq!(statuses["pending"], 1, "{r:#}");
    assert_eq!(statuses["approved"], 5, "{r:#}");
    assert_eq!(r["counts"]["executed_without_approval"], 0, "{r:#}");
    assert_eq!(r["counts"]["refused_self_approvals"], 2, "{r:#}");
    let signed = count(&gw, "SELECT MAX(size) FROM ledger_checkpoints");
    assert_eq!(r["checkpoint"]["size"], signed, "{r:#}");
    assert_eq!(r["checkpoint"]["origin"], "signoff", "{r:#}");
    let rows = r["requests"].as_array().unwrap();
    assert_eq!(rows.len() as u64, requests);
    let row = |id: &str| rows.iter().find(|x| x["request_id"] == id).unwrap().clone();
    let a = row(&approved);
    assert_eq!(a["status"], "executed", "{a:#}");
    assert_eq!(a["requirement"], "sre:2", "{a:#}");
    assert_eq!(a["principal"], "agent:bot", "{a:#}");
    assert_eq!(a["principal_owner"], "olga", "{a:#}");
    assert_eq!(a["justification"], "monthly report", "{a:#}");
    let approvers: Vec<&str> = a["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["reviewer"].as_str().unwrap())
        .collect();
    assert_eq!(approvers, ["alice", "bob"], "{a:#}");
    let t = |v: &Value| v.as_str().unwrap().parse::<jiff::Timestamp>().unwrap();
    assert!(t(&a["claimed_at"]) >= t(&a["decided_at"]), "{a:#}");
    assert_eq!(a["exit_code"], 0, "{a:#}");
    assert_eq!(a["executed_without_approval"], false);
    let o = row(&own);
    assert_eq!(o["refused_self_approvals"], 1, "{o:#}");
    assert_eq!(o["status"], "pending", "{o:#}");
    assert_eq!(o["principal"], "user:dave", "{o:#}");
    assert!(
        out.stderr.contains(&format!(
            "report: {requests} requests (= {requests} request_submitted entries; "
        )),
        "{out}"
    );

    let (out, text) = report("csv", "report.csv");
    assert_eq!(out.code, 0, "{out}");
    let records = parse_csv(&text);
    assert_eq!(records.len() as u64, requests + 1, "{text}");
    assert_eq!(records[0][0], "Request ID");
    let width = records[0].len();
    assert!(records.iter().all(|r| r.len() == width), "{text}");
    let col = |name: &str| records[0].iter().position(|c| c == name).unwrap();
    let own_row = records.iter().find(|r| r[0] == own).unwrap();
    assert_eq!(
        own_row[col("Justification")],
        "quarterly close, \"finance\" <team>"
    );
    assert_eq!(own_row[col("Self-approval attempts")], "1");
    // what ran: the exec gate's command, for the request it ran
    let approved_row = records.iter().find(|r| r[0] == approved).unwrap();
    assert!(
        approved_row[col("What ran")].contains("echo exported"),
        "{approved_row:?}"
    );
    assert!(
        text.contains("\"quarterly close, \"\"finance\"\" <team>\""),
        "{text}"
    );

    let (out, text) = report("html", "report.html");
    assert_eq!(out.code, 0, "{out}");
    assert!(text.starts_with("<!DOCTYPE html>"), "{text}");
    assert!(!text.to_lowercase().contains("<script"), "{text}");
    assert!(text.contains("quarterly close, &quot;finance&quot; &lt;team&gt;"));
    assert!(text.contains(&approved) && text.contains(&own));
    assert!(
        text.contains("@page") && text.contains("@media print"),
        "prints"
    );
    assert!(text.contains("<svg"), "charts");
    assert!(text.contains("Executed without approval"));

    // stdout when there is no --out
    let out = gw.cli([
        "audit", "report", "--since", &since, "--until", &until, "--format", "csv", "--config",
        &cfg,
    ]);
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(parse_csv(&out.stdout).len() as u64, requests + 1);

    // An attacker marks the pending request executed in the requests table:
    // it ran without approval as far as the table goes. Flagged, exit 1.
    let body = if gw.is_postgres() {
        "jsonb_set(jsonb_set(body::jsonb, '{status}', '\"executed\"'), '{claimed_at}', '\"2030-01-01T00:00:00Z\"')::text"
    } else {
        "json_set(body, '$.status', 'executed', '$.claimed_at', '2030-01-01T00:00:00Z')"
    };
    gw.sql_ok(&format!(
        "UPDATE requests SET status = 'executed', body = {body} WHERE id = '{own}'"
    ));
    let (out, text) = report("json", "flagged.json");
    assert_eq!(out.code, 1, "{out}");
    let r: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(r["counts"]["executed_without_approval"], 1, "{r:#}");
    let o = r["requests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["request_id"] == own.as_str())
        .unwrap()
        .clone();
    assert_eq!(o["executed_without_approval"], true, "{o:#}");
    assert!(
        out.stderr.contains(&format!(
            "signoff: request {own} executed without approval: "
        )),
        "{out}"
    );
    assert!(
        out.stderr.contains(&format!(
            "request {own} is executed in the requests table but pending in the ledger"
        )),
        "{out}"
    );

    // bad input
    let out = gw.cli([
        "audit", "report", "--since", &since, "--until", &until, "--format", "pdf", "--config",
        &cfg,
    ]);
    assert_ne!(out.code, 0, "{out}");
    assert!(out.stderr.contains("pdf"), "{out}");
}

// ---------------------------------------------------------------- throughput

/// Writes N realistic events straight through the store (a checkpoint
/// every 16,000), then times `signoff audit verify --config`.
fn verify_throughput(b: Backend) {
    use signoff_core::{AuditEvent, Decision, EventKind, SystemClock};
    let n: u64 = std::env::var("SIGNOFF_AUDIT_PERF_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    // SIGNOFF_AUDIT_PERF_DIR keeps the ledger and its config there.
    let tmp = tempfile::tempdir().unwrap();
    let dir = std::env::var_os("SIGNOFF_AUDIT_PERF_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| tmp.path().to_owned());
    std::fs::create_dir_all(&dir).unwrap();
    let pg = (b == Backend::Postgres).then(PgDatabase::create);
    let database = match &pg {
        Some(pg) => pg.url(),
        None => format!("sqlite://{}", dir.join("signoff.db").display()),
    };
    let policies = dir.join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    std::fs::write(policies.join("test.cedar"), POLICY).unwrap();
    let config = dir.join("signoff.toml");
    std::fs::write(
        &config,
        format!(
            "database = \"{database}\"\npolicies = \"{}\"\n",
            policies.display()
        ),
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    rt.block_on(async {
        let store = signoff_store::open(&database).await.unwrap();
        let key =
            signoff_engine::ledger::load_or_create_key(&dir.join("ledger.key"), "signoff").unwrap();
        let engine = signoff_engine::Engine::start(
            store.clone(),
            std::sync::Arc::new(SystemClock),
            signoff_engine::EngineConfig {
                policy_dir: policies.clone(),
                deadlines: Default::default(),
                ledger_key: Some(std::sync::Arc::new(key)),
                witness_file: None,
            },
        )
        .await
        .unwrap();
        let mut done = 0u64;
        while done < n {
            let mut batch = Vec::new();
            for _ in 0..16 {
                let k = (n - done).min(1000);
                if k == 0 {
                    break;
                }
                let events: Vec<AuditEvent> = (0..k)
                    .map(|i| {
                        let mut e = AuditEvent::new(
                            EventKind::RequestSubmitted,
                            engine.now(),
                            "agent:etl-bot",
                        )
                        .with_detail(json!({
                            "action": {
                                "action": "db.export",
                                "resource": format!("customers-{}", done + i),
                                "environment": "prod",
                                "context": { "rows": done + i, "format": "csv" },
                                "justification": "nightly export for the finance team",
                                "principal": "agent:etl-bot",
                                "on_behalf_of": null
                            },
                            "gate": "exec",
                            "status": "approved",
                            "requirement": null,
                            "reasons": [],
                            "errors": []
                        }));
                        e.request_id = Some(format!("01JPERF{:019}", done + i));
                        e.digest = Some(
                            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
                                .into(),
                        );
                        e.verdict = Some(Decision::Allow);
                        e.policy_ids = vec!["read-allowed".into()];
                        e.policy_set_hash = Some("5d41402abc4b2a76b9719d911017c592".into());
                        e
                    })
                    .collect();
                let store = store.clone();
                batch.push(tokio::spawn(async move {
                    store
                        .commit(signoff_store::Commit {
                            changes: vec![],
                            events,
                        })
                        .await
                }));
                done += k;
            }
            for t in batch {
                t.await.unwrap().unwrap();
            }
            engine.checkpoint_now().await.unwrap();
        }
    });
    eprintln!(
        "wrote {n} entries in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let out = run_signoff(&["audit", "verify", "--config", &plain(&config)]);
    eprintln!("{out}");
    assert_eq!(out.code, 0, "{out}");
    assert!(
        out.stdout
            .starts_with(&format!("ledger verified: {n} entries, ")),
        "{out}"
    );
    if std::env::var_os("SIGNOFF_AUDIT_PERF_DIR").is_some() {
        // Kept with its config for repeated runs and profiling.
        if let Some(pg) = pg {
            eprintln!("kept {}", pg.url());
            std::mem::forget(pg);
        }
        eprintln!("config: {}", config.display());
    }
}

// ---------------------------------------------------------------- over the API

/// An auditor with nothing but a token and the verifier key verifies,
/// exports and reports over the API (SIGNOFF_URL, SIGNOFF_TOKEN): no
/// config file, no database. Agents and reviewers are refused (403) by
/// every audit route and command.
fn auditor_commands_over_the_api(b: Backend) {
    let gw = Gateway::start(b);
    let (approved, own) = activity(&gw, 3);
    let vkey = gw.ledger_vkey();
    let dir = tempfile::tempdir().unwrap();

    // verify: the gateway's run (recorded) and our own re-hash of the entries
    let saved = dir.path().join("saved.checkpoint");
    // the checkpointer signs within a second of an append
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let note = loop {
        let resp = gw.get_as("audrey", "/v1/ledger/checkpoint");
        if resp.status == 200 || std::time::Instant::now() > deadline {
            break resp.expect_text(200);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    std::fs::write(&saved, note).unwrap();
    let out = gw.cli_as(
        "audrey",
        [
            "audit",
            "verify",
            "--key",
            &vkey,
            "--checkpoint",
            &plain(&saved),
        ],
    );
    assert_eq!(out.code, 0, "{out}");
    assert!(out.stdout.contains("gateway: ledger verified:"), "{out}");
    assert!(out.stdout.contains("re-hashed here:"), "{out}");
    assert!(
        out.stdout.contains("consistent with the saved checkpoint"),
        "{out}"
    );
    assert!(!out.stderr.contains("WARNING"), "{out}");
    let recorded: Vec<Value> = gw
        .events()
        .into_iter()
        .filter(|e| e["kind"] == "ledger_verified")
        .collect();
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(recorded[0]["actor"], "user:audrey");
    assert_eq!(recorded[0]["detail"]["findings"], json!([]));
    // a key that is not the log's: refused, whatever the gateway says
    let other = "other.example+12345678+AcnSLcZqXjW7y+0Pf3cNsjg+5V7Ec+5ZJOgO6lgvpa/0";
    let out = gw.cli_as("audrey", ["audit", "verify", "--key", other]);
    assert_ne!(out.code, 0, "{out}");
    // without --key: a loud warning, then the same checks
    let out = gw.cli_as("audrey", ["audit", "verify"]);
    assert_eq!(out.code, 0, "{out}");
    assert!(out.stderr.contains("WARNING: no --key given"), "{out}");

    // export over the API, then verify the bundle offline
    let bundle = dir.path().join("bundle");
    let out = gw.cli_as(
        "audrey",
        [
            "audit",
            "export",
            "--since",
            "1d",
            "--out",
            &plain(&bundle),
            "--key",
            &vkey,
        ],
    );
    assert_eq!(out.code, 0, "{out}");
    let out = verify_bundle(&gw, &bundle, &vkey);
    assert_eq!(out.code, 0, "{out}");

    // report over the API: dates and relative forms
    let today = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date()
        .to_string();
    let out = gw.cli_as(
        "audrey",
        ["audit", "report", "--since", &today, "--format", "json"],
    );
    assert_eq!(out.code, 0, "{out}");
    let report: Value = serde_json::from_str(&out.stdout).unwrap();
    let ids: Vec<&str> = report["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["request_id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&approved.as_str()) && ids.contains(&own.as_str()),
        "{ids:?}"
    );
    assert_eq!(report["counts"]["executed_without_approval"], 0);
    for format in ["csv", "html"] {
        let out = gw.cli_as(
            "audrey",
            ["audit", "report", "--since", "30d", "--format", format],
        );
        assert_eq!(out.code, 0, "{out}");
        assert!(out.stdout.contains(&approved), "{format}: {out}");
    }
    let resp = gw.get_as("audrey", "/v1/audit/report?since=1d&format=html");
    assert_eq!(resp.content_type(), "text/html; charset=utf-8");
    let out = gw.cli_as("audrey", ["audit", "report", "--since", "yesterday"]);
    assert_ne!(out.code, 0, "{out}");
    assert!(out.stderr.contains("invalid --since `yesterday`"), "{out}");

    // events read like a story: a header, action and resource on request lines
    let out = gw.cli_as("audrey", ["audit", "events", "--limit", "1000"]);
    assert_eq!(out.code, 0, "{out}");
    let first = out.stdout.lines().next().unwrap();
    assert!(first.starts_with(" INDEX  TIME"), "{first}");
    assert!(
        out.stdout.lines().any(|l| l.contains("request_submitted")
            && l.contains("test.drop")
            && l.contains("deny")),
        "{out}"
    );

    // agents and reviewers are refused, by the API and by the CLI
    for who in ["bot", "alice"] {
        for path in ["/v1/audit/report?since=1d", "/v1/audit/bundle?since=1d"] {
            gw.get_as(who, path).assert_problem(403);
        }
        gw.post_as(who, "/v1/audit/verify", json!({}))
            .assert_problem(403);
        let out = gw.cli_as(who, ["audit", "verify", "--key", &vkey]);
        assert_ne!(out.code, 0, "{out}");
        let out = gw.cli_as(who, ["audit", "report", "--since", "1d"]);
        assert_ne!(out.code, 0, "{out}");
        let out = gw.cli_as(
            who,
            [
                "audit",
                "export",
                "--since",
                "1d",
                "--out",
                &plain(&dir.path().join(who)),
            ],
        );
        assert_ne!(out.code, 0, "{out}");
        assert!(
            out.stderr.contains("403") || out.stderr.to_lowercase().contains("forbidden"),
            "{out}"
        );
    }
    // refused callers recorded no verification run
    let runs: Vec<Value> = gw
        .events()
        .into_iter()
        .filter(|e| e["kind"] == "ledger_verified")
        .collect();
    assert!(runs.len() >= 2, "{runs:?}");
    assert!(runs.iter().all(|e| e["actor"] == "user:audrey"), "{runs:?}");

    // someone with the database edits entry 2: the auditor, from afar, sees it
    gw.drop_append_only_triggers();
    gw.sql_ok("UPDATE audit_events SET actor = 'agent:someone-else' WHERE idx = 2");
    let out = gw.cli_as("audrey", ["audit", "verify", "--key", &vkey]);
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stderr.contains("entry 2 was edited"), "{out}");
    assert!(
        out.stderr.contains("checkpoint") && out.stderr.contains("root differs"),
        "the entries served no longer hash to the signed root: {out}"
    );
}
