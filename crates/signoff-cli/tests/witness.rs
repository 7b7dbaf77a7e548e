#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on setup failures
//! The witnessed ledger, end to end against the real binary, on SQLite and
//! PostgreSQL. An attacker with write access to the database (and, in some
//! cases, the key host) rewrites history and deletes the signed
//! checkpoints, replaces the whole database, deletes or replaces the ledger
//! key. After each: `serve` refuses to sign, reports not ready, refuses
//! decisions with a 503 that says why; `audit verify` with a pinned key and
//! with a checkpoint an auditor saved earlier detects it. Also: the explicit,
//! recorded `signoff ledger reset-witness`, and pushing checkpoints to a
//! file, an HTTP endpoint and a C2SP tlog-witness (implemented here from the
//! spec, with independent code for the log signature and the proofs).
//!
//! ```text
//! cargo test -p signoff --test witness
//! ```

mod common;
mod ledger_support;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use common::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
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
    rewrite_with_checkpoints_deleted,
    database_replaced_by_an_empty_one,
    key_deleted,
    key_replaced,
}

// ---------------------------------------------------------------- setup

fn read_body() -> Value {
    json!({ "action": "test.read", "resource": "customers", "environment": "dev" })
}

fn export_body() -> Value {
    json!({ "action": "test.export", "resource": "customers", "environment": "prod" })
}

/// A gateway with some history and one pending request; an auditor saved
/// the checkpoint served halfway. The gateway is stopped (after signing a
/// last checkpoint). Returns the gateway, the log's verifier key, the saved
/// checkpoint file, and the pending request's id.
struct Witnessed {
    gw: Gateway,
    vkey: String,
    saved: PathBuf,
    pending: String,
    _auditor: tempfile::TempDir,
}

fn witnessed(b: Backend) -> Witnessed {
    let mut gw = Gateway::start(b);
    for _ in 0..6 {
        gw.submit("bot", read_body());
    }
    let vkey = ledger_support::vkey(&gw, "audrey");
    let size = count(&gw, "SELECT COUNT(*) FROM audit_events");
    let cp = ledger_support::wait_checkpoint(&gw, "audrey", &vkey, size);
    let auditor = tempfile::tempdir().unwrap();
    let saved = auditor.path().join("saved.checkpoint");
    std::fs::write(&saved, &cp.note).unwrap();
    for _ in 0..5 {
        gw.submit("bot", read_body());
    }
    let pending = gw.submit("bot", export_body())["id"]
        .as_str()
        .unwrap()
        .to_owned();
    gw.stop();

    // The witness file: beside the key, 0600, the last checkpoint signed.
    let file = witness_file(&gw);
    let text = std::fs::read_to_string(&file).unwrap();
    let signed = ledger_support::verify_note(&vkey, &text);
    assert_eq!(
        signed.size,
        count(&gw, "SELECT MAX(size) FROM ledger_checkpoints")
    );
    assert_eq!(signed.size, count(&gw, "SELECT COUNT(*) FROM audit_events"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", file.display());
    }
    Witnessed {
        gw,
        vkey,
        saved,
        pending,
        _auditor: auditor,
    }
}

fn witness_file(gw: &Gateway) -> PathBuf {
    gw.path("ledger.checkpoint")
}

fn count(gw: &Gateway, sql: &str) -> u64 {
    gw.sql_ok(sql).trim().parse().unwrap_or(0)
}

fn hex_literal(gw: &Gateway, bytes: &[u8]) -> String {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    if gw.is_postgres() {
        format!("'\\x{hex}'::bytea")
    } else {
        format!("X'{hex}'")
    }
}

fn all_events(gw: &Gateway) -> Vec<signoff_core::AuditEvent> {
    let url = gw.database.clone();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let store = signoff_store::open(&url).await.unwrap();
            store.events(0, 10_000).await.unwrap()
        })
}

/// The attacker's rewrite: edits entry 3, rebuilds every Merkle node from
/// the (edited) events so the stored tree is self-consistent, and deletes
/// every signed checkpoint. Returns the new root.
fn rewrite_history(gw: &Gateway) -> [u8; 32] {
    gw.drop_append_only_triggers();
    gw.sql_ok("UPDATE audit_events SET actor = 'user:nobody' WHERE idx = 3");
    let events = all_events(gw);
    let mut frontier = signoff_ledger::merkle::Frontier::new();
    let mut rows = Vec::new();
    for e in &events {
        let leaf = signoff_ledger::merkle::leaf_hash(&signoff_ledger::leaf::encode(e));
        for (level, idx, hash) in frontier.push(leaf) {
            rows.push(format!("({level}, {idx}, {})", hex_literal(gw, &hash)));
        }
    }
    gw.sql_ok(&format!(
        "DELETE FROM ledger_nodes; INSERT INTO ledger_nodes (level, idx, hash) VALUES {}; DELETE FROM ledger_checkpoints;",
        rows.join(", ")
    ));
    frontier.root()
}

/// Writes a config an auditor would use elsewhere: same database, no
/// access to the gateway's key file or witness file.
fn auditor_config(gw: &Gateway, dir: &Path) -> PathBuf {
    let p = dir.join("auditor.toml");
    std::fs::write(
        &p,
        format!(
            "database = \"{}\"\npolicies = \"{}\"\nledger_key = \"{}\"\n",
            gw.database,
            gw.policies.display(),
            dir.join("no-such-dir/ledger.key").display()
        ),
    )
    .unwrap();
    p
}

/// `serve` runs but refuses: not ready (503 naming the ledger), decisions
/// refused with a 503 problem that says the ledger is not trusted and why,
/// nothing signed, the reason in the log.
fn assert_serve_refuses(gw: &mut Gateway, pending: Option<&str>, why: &str) {
    let before = count(gw, "SELECT COUNT(*) FROM ledger_checkpoints");
    gw.restart();
    let r = gw.get_as("audrey", "/readyz");
    let p = r.assert_problem(503);
    let detail = p["detail"].as_str().unwrap();
    assert!(detail.contains("ledger:"), "{detail}");
    assert!(
        detail.contains(why),
        "readyz must say why ({why}): {detail}"
    );

    let r = gw.post_as("bot", "/v1/requests", read_body());
    let p = r.assert_problem(503);
    assert_eq!(p["type"], "urn:signoff:problem:ledger-untrusted", "{p}");
    let detail = p["detail"].as_str().unwrap();
    assert!(detail.contains("the ledger is not trusted"), "{detail}");
    assert!(detail.contains(why), "{detail}");
    if let Some(id) = pending {
        let r = gw.post_as(
            "alice",
            &format!("/v1/requests/{id}/reviews"),
            json!({"decision": "approve"}),
        );
        let p = r.assert_problem(503);
        assert_eq!(p["type"], "urn:signoff:problem:ledger-untrusted", "{p}");
        let r = gw.post_as("bot", &format!("/v1/requests/{id}/cancel"), json!({}));
        r.assert_problem(503);
    }
    // the CLI fails closed too (75: may pass later, never ran)
    let out = gw.cli_as(
        "bot",
        exec_args("test.read", "customers", "dev", &[], &["true"]),
    );
    assert_eq!(out.code, 75, "{out}");

    // nothing is signed while untrusted (checkpoints are due within 1 s)
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        count(gw, "SELECT COUNT(*) FROM ledger_checkpoints"),
        before,
        "an untrusted ledger must not be signed"
    );
    let log = gw.server_log();
    assert!(log.contains("ledger NOT trusted"), "{log}");
    assert!(log.contains(why), "the log must say why ({why}):\n{log}");
    gw.stop();
}

fn verify(gw: &Gateway, config: &Path, extra: &[&str]) -> Out {
    let mut args = vec!["audit", "verify", "--config"];
    let c = plain(config);
    args.push(&c);
    args.extend_from_slice(extra);
    gw.cli(args)
}

fn assert_fails(out: &Out, what: &str, expected: &str) {
    assert_eq!(out.code, 1, "{what}: {out}");
    assert!(
        out.stderr.contains(expected),
        "{what}: expected `{expected}` in\n{out}"
    );
    assert!(!out.stderr.contains("panicked"), "{out}");
}

// ---------------------------------------------------------------- attacks

fn rewrite_with_checkpoints_deleted(b: Backend) {
    let Witnessed {
        mut gw,
        vkey,
        saved,
        pending,
        _auditor,
    } = witnessed(b);
    // Before the witness, this passed: nothing signed was left to disagree.
    rewrite_history(&gw);
    let out = verify(&gw, &gw.config.clone(), &["--key", &vkey]);
    assert_fails(
        &out,
        "pinned key, gateway's witness file",
        "the log is not consistent with the gateway's witness file",
    );
    let aud = auditor_config(&gw, _auditor.path());
    let out = verify(&gw, &aud, &["--key", &vkey, "--checkpoint", &plain(&saved)]);
    assert_fails(
        &out,
        "pinned key, saved checkpoint",
        &format!(
            "signoff: the log is not consistent with the saved checkpoint {}",
            saved.display()
        ),
    );
    // pinned key alone, elsewhere: no signed checkpoint is left
    let out = verify(&gw, &aud, &["--key", &vkey]);
    assert_fails(
        &out,
        "pinned key alone",
        "no checkpoint signed by the pinned key covers",
    );
    // no key: a loud warning, and the witness file still catches it
    let out = verify(&gw, &gw.config.clone(), &[]);
    assert!(out.stderr.contains("WARNING: no --key given"), "{out}");
    assert_fails(&out, "found key", "history was rewritten");

    assert_serve_refuses(&mut gw, Some(&pending), "history was rewritten");
}

fn database_replaced_by_an_empty_one(b: Backend) {
    let Witnessed {
        mut gw,
        vkey,
        saved,
        _auditor,
        ..
    } = witnessed(b);
    let signed = count(&gw, "SELECT COUNT(*) FROM audit_events");
    if gw.is_postgres() {
        gw.sql_ok("DROP SCHEMA public CASCADE; CREATE SCHEMA public;");
    } else {
        let file = gw.database.strip_prefix("sqlite://").unwrap().to_owned();
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{file}{suffix}"));
        }
    }
    // the attacker's own principal in the new database (the key file is
    // there, so this is allowed: it signs nothing)
    let token = add_principal(&gw.config, &["user", "bot"]);
    gw.add_token("bot", &token);
    let remain = count(&gw, "SELECT COUNT(*) FROM audit_events");
    assert!(remain < signed);

    let out = verify(&gw, &gw.config.clone(), &["--key", &vkey]);
    assert_fails(
        &out,
        "pinned key, gateway's witness file",
        &format!("ledger truncated: the gateway's witness file {} covers {signed} entries but only {remain} remain", witness_file(&gw).display()),
    );
    let aud = auditor_config(&gw, _auditor.path());
    let out = verify(&gw, &aud, &["--key", &vkey, "--checkpoint", &plain(&saved)]);
    assert_fails(
        &out,
        "pinned key, saved checkpoint",
        &format!(
            "ledger truncated: the saved checkpoint {} covers",
            saved.display()
        ),
    );
    assert_serve_refuses(
        &mut gw,
        None,
        "the log was truncated or the database replaced",
    );
}

fn key_deleted(b: Backend) {
    let Witnessed {
        mut gw,
        vkey,
        saved,
        _auditor,
        ..
    } = witnessed(b);
    let key = gw.path("ledger.key");
    let old_key = std::fs::read_to_string(&key).unwrap();
    std::fs::remove_file(&key).unwrap();

    // serve (and every command that opens the ledger) refuses to make a new key
    let out = gw.cli(["serve", "--config", &plain(&gw.config)]);
    assert_eq!(out.code, 1, "{out}");
    assert!(
        out.stderr
            .contains("does not exist, but the ledger already has"),
        "{out}"
    );
    assert!(out.stderr.contains("reset-witness --new-key"), "{out}");
    assert!(!key.exists(), "no key may be created silently");
    let out = gw.cli([
        "principal",
        "add",
        "user",
        "eve",
        "--config",
        &plain(&gw.config),
    ]);
    assert_eq!(out.code, 1, "{out}");
    assert!(!key.exists());
    // resetting without --new-key does not make one either
    let out = gw.cli([
        "ledger",
        "reset-witness",
        "--config",
        &plain(&gw.config),
        "--reason",
        "lost",
        "--i-understand-this-trusts-the-database",
    ]);
    assert_eq!(out.code, 1, "{out}");
    assert!(!key.exists());

    // verify without a key cannot trust a key that is not there
    let out = verify(&gw, &gw.config.clone(), &[]);
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stderr.contains("pass --key"), "{out}");
    // with the pinned key and the saved checkpoint, the log is intact
    let aud = auditor_config(&gw, _auditor.path());
    let out = verify(&gw, &aud, &["--key", &vkey, "--checkpoint", &plain(&saved)]);
    assert_eq!(out.code, 0, "{out}");
    assert!(
        out.stdout.contains("consistent with the saved checkpoint"),
        "{out}"
    );

    // Starting a new log is explicit and recorded; auditors pinning the
    // old key see every checkpoint signed since as not the log's.
    let before = count(&gw, "SELECT COUNT(*) FROM audit_events");
    let out = gw.cli([
        "ledger",
        "reset-witness",
        "--config",
        &plain(&gw.config),
        "--reason",
        "ledger key lost with the old host",
        "--new-key",
        "--i-understand-this-trusts-the-database",
    ]);
    assert_eq!(out.code, 0, "{out}");
    assert!(out.stdout.starts_with("witness reset: "), "{out}");
    assert!(key.exists());
    assert_ne!(std::fs::read_to_string(&key).unwrap(), old_key);
    let kind = gw.sql_ok(&format!(
        "SELECT kind FROM audit_events WHERE idx = {before}"
    ));
    assert_eq!(kind.trim(), "ledger_witness_reset");
    let reason = gw.sql_ok(&format!(
        "SELECT reason FROM audit_events WHERE idx = {before}"
    ));
    assert_eq!(reason.trim(), "ledger key lost with the old host");
    gw.restart();
    gw.get_as("audrey", "/readyz").expect(200);
    gw.submit("bot", read_body());
    gw.stop();
    let out = verify(&gw, &aud, &["--key", &vkey, "--checkpoint", &plain(&saved)]);
    assert_fails(
        &out,
        "old pinned key after a new key",
        &format!("checkpoint {} has a bad signature", before + 1),
    );
}

fn key_replaced(b: Backend) {
    let Witnessed {
        mut gw,
        vkey,
        saved,
        pending,
        _auditor,
    } = witnessed(b);
    // The attacker holds the database and puts their own key on the key host,
    // rewrites history and signs it with that key.
    let evil = signoff_ledger::note::SigningKey::generate("signoff").unwrap();
    std::fs::write(gw.path("ledger.key"), format!("{}\n", evil.to_skey())).unwrap();
    let root = rewrite_history(&gw);
    let size = count(&gw, "SELECT COUNT(*) FROM audit_events");
    let note = evil.sign(&signoff_ledger::note::Checkpoint {
        origin: "signoff".into(),
        size,
        root,
    });
    gw.sql_ok(&format!(
        "INSERT INTO ledger_checkpoints (size, root, note, created_at) VALUES ({size}, {}, '{}', 1790000000000)",
        hex_literal(&gw, &root),
        note.replace('\'', "''")
    ));

    // pinned key: the forged checkpoint is not the log's, and the
    // gateway's witness file disagrees with the log
    let out = verify(&gw, &gw.config.clone(), &["--key", &vkey]);
    assert_fails(
        &out,
        "pinned key",
        &format!("signoff: checkpoint {size} has a bad signature"),
    );
    assert!(out.stderr.contains("history was rewritten"), "{out}");
    let aud = auditor_config(&gw, _auditor.path());
    let out = verify(&gw, &aud, &["--key", &vkey, "--checkpoint", &plain(&saved)]);
    assert_fails(
        &out,
        "pinned key, saved checkpoint",
        &format!(
            "the log is not consistent with the saved checkpoint {}",
            saved.display()
        ),
    );
    // the key found on the host verifies the forgery, but not the witness
    // file nor the auditor's checkpoint
    let out = verify(&gw, &gw.config.clone(), &["--checkpoint", &plain(&saved)]);
    assert!(out.stderr.contains("WARNING: no --key given"), "{out}");
    assert_fails(&out, "found key", "the ledger key was replaced");

    assert_serve_refuses(&mut gw, Some(&pending), "the ledger key was replaced");
}

// ---------------------------------------------------------------- reset

#[test]
fn reset_witness_is_explicit_recorded_and_takes_effect_live() {
    let Witnessed {
        mut gw, pending, ..
    } = witnessed(Backend::Sqlite);
    rewrite_history(&gw);
    gw.restart();
    gw.get_as("audrey", "/readyz").assert_problem(503);
    gw.post_as("bot", "/v1/requests", read_body())
        .assert_problem(503);

    // without the acknowledgement flag: refused by the CLI
    let out = gw.cli([
        "ledger",
        "reset-witness",
        "--config",
        &plain(&gw.config),
        "--reason",
        "restored from backup",
    ]);
    assert_eq!(out.code, 2, "{out}");
    let out = gw.cli([
        "ledger",
        "reset-witness",
        "--config",
        &plain(&gw.config),
        "--reason",
        "restored from backup after review",
        "--i-understand-this-trusts-the-database",
    ]);
    assert_eq!(out.code, 0, "{out}");

    // the running gateway re-checks and recovers without a restart
    let ready = poll(Duration::from_secs(10), Duration::from_millis(200), || {
        (gw.get_as("audrey", "/readyz").status == 200).then_some(())
    });
    assert!(ready.is_some(), "{}", gw.server_log());
    let r = gw.review("alice", &pending, "approve", None);
    assert_eq!(r.status, 200, "{}", r.body);
    let events = gw.events();
    let reset: Vec<&Value> = events
        .iter()
        .filter(|e| e["kind"] == "ledger_witness_reset")
        .collect();
    assert_eq!(reset.len(), 1, "{events:?}");
    assert_eq!(reset[0]["actor"], "console");
    assert_eq!(reset[0]["reason"], "restored from backup after review");
    assert!(
        reset[0]["detail"]["untrusted_because"]
            .as_str()
            .is_some_and(|w| w.contains("history was rewritten")),
        "{}",
        reset[0]
    );
    assert!(reset[0]["detail"]["previous_witness_checkpoint"].is_string());
}

// ---------------------------------------------------------------- witnesses

/// A C2SP tlog-witness, written from the spec: the log signature checked
/// with azul's signed_note, the consistency proof with azul's tlog_tiles,
/// cosignatures made with ed25519-dalek.
struct TestWitness {
    url: String,
    vkey: String,
    state: Arc<Mutex<WitnessLog>>,
    _rt: std::thread::JoinHandle<()>,
}

#[derive(Default)]
struct WitnessLog {
    size: u64,
    root: [u8; 32],
    statuses: Vec<u16>,
}

const WITNESS_NAME: &str = "witness.test/w1";

fn cosigner_vkey(sk: &ed25519_dalek::SigningKey) -> (String, [u8; 4]) {
    use sha2::Digest;
    let public = sk.verifying_key().to_bytes();
    let mut h = sha2::Sha256::new();
    h.update(WITNESS_NAME.as_bytes());
    h.update([b'\n', 0x04]);
    h.update(public);
    let d = h.finalize();
    let id = [d[0], d[1], d[2], d[3]];
    let mut key = vec![0x04];
    key.extend_from_slice(&public);
    (
        format!("{WITNESS_NAME}+{}+{}", hex_of(&id), B64.encode(key)),
        id,
    )
}

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn add_checkpoint(
    log_vkey: &str,
    sk: &ed25519_dalek::SigningKey,
    id: [u8; 4],
    state: &Mutex<WitnessLog>,
    body: &str,
) -> (u16, &'static str, String) {
    use ed25519_dalek::Signer;
    let bad = |why: &str| (400, "text/plain", format!("{why}\n"));
    let mut lines = body.split_inclusive('\n');
    let Some(old) = lines
        .next()
        .and_then(|l| l.strip_suffix('\n'))
        .and_then(|l| l.strip_prefix("old "))
    else {
        return bad("no old size line");
    };
    if old.is_empty()
        || (old.len() > 1 && old.starts_with('0'))
        || !old.bytes().all(|c| c.is_ascii_digit())
    {
        return bad("bad old size");
    }
    let old: u64 = old.parse().unwrap();
    let mut proof = Vec::new();
    let mut consumed = old.to_string().len() + 5;
    loop {
        let Some(line) = lines.next() else {
            return bad("no checkpoint");
        };
        consumed += line.len();
        if line == "\n" {
            break;
        }
        let Ok(h) = B64.decode(line.trim_end_matches('\n')) else {
            return bad("bad proof line");
        };
        let Ok(h) = <[u8; 32]>::try_from(h.as_slice()) else {
            return bad("bad proof hash");
        };
        proof.push(tlog_tiles::Hash(h));
        if proof.len() > 63 {
            return bad("too many proof lines");
        }
    }
    let note_text = &body[consumed..];
    let Ok(note) = signed_note::Note::from_bytes(note_text.as_bytes()) else {
        return bad("bad note");
    };
    let verifier = signed_note::StandardVerifier::new(log_vkey).unwrap();
    let Ok(cp) = tlog_tiles::Checkpoint::from_bytes(note.text()) else {
        return bad("not a checkpoint");
    };
    if cp.origin() != "signoff" {
        return (404, "text/plain", "unknown log\n".into());
    }
    if note
        .verify(&signed_note::VerifierList::new(vec![Box::new(verifier)]))
        .is_err()
    {
        return (403, "text/plain", "no valid signature\n".into());
    }
    if old > cp.size() {
        return bad("old size larger than the checkpoint");
    }
    let mut st = state.lock().unwrap();
    if old != st.size {
        return (409, "text/x.tlog.size", format!("{}\n", st.size));
    }
    if old == 0 && !proof.is_empty() {
        return bad("proof must be empty from size 0");
    }
    if old == cp.size() {
        if cp.hash().0 != st.root {
            return (
                409,
                "text/plain",
                "different root at the same size\n".into(),
            );
        }
    } else if old > 0
        && tlog_tiles::check_tree(
            &proof,
            cp.size(),
            *cp.hash(),
            old,
            tlog_tiles::Hash(st.root),
        )
        .is_err()
    {
        return (
            422,
            "text/plain",
            "consistency proof does not verify\n".into(),
        );
    }
    st.size = cp.size();
    st.root = cp.hash().0;
    let ts: u64 = 1_790_000_000;
    let mut msg = format!("cosignature/v1\ntime {ts}\n").into_bytes();
    msg.extend_from_slice(note.text());
    let sig = sk.sign(&msg);
    let mut blob = id.to_vec();
    blob.extend_from_slice(&ts.to_be_bytes());
    blob.extend_from_slice(&sig.to_bytes());
    (
        200,
        "text/plain",
        format!("\u{2014} {WITNESS_NAME} {}\n", B64.encode(blob)),
    )
}

/// Serves `POST /add-checkpoint` (tlog-witness) and `POST /http` (records bodies).
fn start_witness(log_vkey: String, posted: Arc<Mutex<Vec<String>>>) -> TestWitness {
    use axum::routing::post;
    let sk = ed25519_dalek::SigningKey::from_bytes(&[42u8; 32]);
    let (vkey, id) = cosigner_vkey(&sk);
    let state = Arc::new(Mutex::new(WitnessLog::default()));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let st = state.clone();
    let handle = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let app = axum::Router::new()
                .route(
                    "/add-checkpoint",
                    post(move |body: String| {
                        let st = st.clone();
                        let sk = sk.clone();
                        let log_vkey = log_vkey.clone();
                        async move {
                            let (status, ct, text) = add_checkpoint(&log_vkey, &sk, id, &st, &body);
                            st.lock().unwrap().statuses.push(status);
                            (
                                axum::http::StatusCode::from_u16(status).unwrap(),
                                [("content-type", ct)],
                                text,
                            )
                        }
                    }),
                )
                .route(
                    "/http",
                    post(move |body: String| {
                        let posted = posted.clone();
                        async move {
                            posted.lock().unwrap().push(body);
                            "ok"
                        }
                    }),
                );
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let _ = axum::serve(listener, app).await;
        });
    });
    TestWitness {
        url,
        vkey,
        state,
        _rt: handle,
    }
}

#[test]
fn checkpoints_are_pushed_to_file_http_and_tlog_witnesses() {
    let mut gw = Gateway::start(Backend::Sqlite);
    gw.submit("bot", read_body());
    let vkey = ledger_support::vkey(&gw, "audrey");
    let posted = Arc::new(Mutex::new(Vec::new()));
    let w = start_witness(vkey.clone(), posted.clone());
    gw.stop();
    let copy = gw.path("elsewhere/latest.checkpoint");
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}/gone", dead.local_addr().unwrap());
    drop(dead);
    let mut config = std::fs::read_to_string(&gw.config).unwrap();
    config.push_str(&format!(
        "\n[[witness]]\nkind = \"file\"\npath = \"elsewhere/latest.checkpoint\"\n\
         \n[[witness]]\nkind = \"http\"\nurl = \"{}/http\"\n\
         \n[[witness]]\nkind = \"tlog-witness\"\nurl = \"{}\"\nkey = \"{}\"\n\
         \n[[witness]]\nkind = \"http\"\nurl = \"{dead_url}\"\n",
        w.url, w.url, w.vkey
    ));
    std::fs::write(&gw.config, config).unwrap();
    gw.restart();
    gw.submit("bot", read_body());
    let size = count(&gw, "SELECT COUNT(*) FROM audit_events");
    let cp = ledger_support::wait_checkpoint(&gw, "audrey", &vkey, size);

    // the file witness holds the latest signed note
    let latest = poll(Duration::from_secs(10), Duration::from_millis(100), || {
        std::fs::read_to_string(&copy)
            .ok()
            .filter(|t| ledger_support::verify_note(&vkey, t).size >= cp.size)
    })
    .expect("the file witness is written");
    assert!(latest.ends_with('\n'));
    // the HTTP witness got the note
    let got = poll(Duration::from_secs(10), Duration::from_millis(100), || {
        posted
            .lock()
            .unwrap()
            .iter()
            .find(|b| ledger_support::verify_note(&vkey, b).size >= cp.size)
            .cloned()
    });
    assert!(got.is_some(), "{}", gw.server_log());
    // the tlog-witness cosigned it; the gateway verified and kept the cosignature
    let cosigned = poll(Duration::from_secs(10), Duration::from_millis(100), || {
        std::fs::read_to_string(gw.path("ledger.cosigned"))
            .ok()
            .filter(|t| t.contains(WITNESS_NAME))
    })
    .unwrap_or_else(|| panic!("no cosigned checkpoint\n{}", gw.server_log()));
    let body = signoff_ledger::note::note_body(&cosigned).unwrap();
    let cos = signoff_ledger::note::CosignatureVerifier::from_vkey(&w.vkey).unwrap();
    let sigs_start = body.len() + 1;
    assert_eq!(cos.verify(body, &cosigned[sigs_start..]).unwrap().len(), 1);
    // the log's own signature is still there and verifies independently
    ledger_support::verify_note(&vkey, &cosigned);
    assert!(
        gw.server_log().contains("checkpoint cosigned"),
        "{}",
        gw.server_log()
    );

    // the dead endpoint shows in /readyz, but the gateway stays ready and decides
    let r = gw.get_as("audrey", "/readyz").expect(200);
    assert_eq!(r["status"], "ready", "{r}");
    assert_eq!(r["components"]["witnesses"]["status"], "failing", "{r}");
    assert!(
        r["components"]["witnesses"]["detail"]
            .as_str()
            .unwrap()
            .contains(&dead_url),
        "{r}"
    );
    assert!(gw.server_log().contains("witness push failed"));

    // After a restart the gateway does not know what the witness holds: it
    // sends old 0, gets 409 with the witness's size, and retries with a
    // consistency proof from that size.
    let first = w.state.lock().unwrap().size;
    gw.restart();
    for _ in 0..3 {
        gw.submit("bot", read_body());
    }
    let size = count(&gw, "SELECT COUNT(*) FROM audit_events");
    ledger_support::wait_checkpoint(&gw, "audrey", &vkey, size);
    let advanced = poll(Duration::from_secs(10), Duration::from_millis(100), || {
        let s = w.state.lock().unwrap();
        (s.size >= size).then(|| s.statuses.clone())
    })
    .unwrap_or_else(|| panic!("witness did not advance past {first}\n{}", gw.server_log()));
    assert!(advanced.contains(&409), "{advanced:?}");
    assert!(!advanced.contains(&422), "{advanced:?}");
    assert!(!advanced.contains(&400), "{advanced:?}");
    assert_eq!(advanced.last(), Some(&200));
}
