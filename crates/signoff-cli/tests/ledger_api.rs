#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on setup failures
//! The ledger API of a real gateway (`/v1/ledger/…`) on SQLite and on
//! PostgreSQL: signed checkpoints, the verifier key, entries with their exact
//! leaf bytes, inclusion and consistency proofs — each verified with
//! signoff's own ledger code and with an independent implementation
//! (Cloudflare azul's `signed_note` and `tlog_tiles`) — plus the role checks
//! and the problems for bad parameters.
//!
//! ```text
//! cargo test -p signoff --test ledger_api            # both backends
//! cargo test -p signoff --test ledger_api sqlite::   # one backend
//! ```

mod common;
mod ledger_support;

use common::*;
use ledger_support::*;
use serde_json::{json, Value};
use signoff_ledger::merkle;

macro_rules! backend_tests {
    (both: [$($name:ident),* $(,)?], sqlite_only: [$($sname:ident),* $(,)?] $(,)?) => {
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
    both: [checkpoints_entries_and_proofs_verify, ledger_roles_and_bad_parameters],
    sqlite_only: [dev_banner_shows_the_ledger_keys],
}

fn read(resource: &str) -> Value {
    json!({ "action": "test.read", "resource": resource, "environment": "dev" })
}

/// A few decisions of each kind: allow, deny, approval then two approvals.
fn some_decisions(gw: &Gateway) -> Vec<String> {
    let mut ids = Vec::new();
    for r in ["a", "b", "c"] {
        let v = gw.submit("bot", read(r));
        assert_eq!(v["verdict"]["decision"], "allow", "{v:#}");
        ids.push(v["id"].as_str().unwrap().to_owned());
    }
    let v = gw.submit(
        "bot",
        json!({ "action": "test.drop", "resource": "t", "environment": "dev" }),
    );
    assert_eq!(v["verdict"]["decision"], "deny", "{v:#}");
    ids.push(v["id"].as_str().unwrap().to_owned());
    let v = gw.submit(
        "bot",
        json!({ "action": "test.export", "resource": "customers", "environment": "prod" }),
    );
    let id = v["id"].as_str().unwrap().to_owned();
    gw.review("alice", &id, "approve", None).expect(200);
    let v = gw.review("bob", &id, "approve", None).expect(200);
    assert_eq!(v["status"], "approved", "{v:#}");
    ids.push(id);
    ids
}

/// After some decisions a checkpoint covering them is signed within a
/// second; it verifies under the served key; the entries' leaves hash to its
/// root; every entry has a verifying inclusion proof; a later checkpoint is
/// provably consistent with it. Each check runs with both implementations.
fn checkpoints_entries_and_proofs_verify(b: Backend) {
    let gw = Gateway::start(b);
    let ids = some_decisions(&gw);
    let vkey = vkey(&gw, "audrey");
    assert_eq!(
        vkey,
        ledger_support::vkey(&gw, "root"),
        "admin sees the same key"
    );

    let entries = all_entries(&gw, "audrey", None);
    let n = entries.len() as u64;
    for id in &ids {
        assert!(
            entries
                .iter()
                .any(|e| e.json["request_id"] == id.as_str()
                    && e.json["kind"] == "request_submitted"),
            "request {id} has no request_submitted entry"
        );
    }
    let a = wait_checkpoint(&gw, "audrey", &vkey, n);
    assert_eq!(a.origin, "signoff", "default origin");
    assert!(
        vkey.starts_with("signoff+"),
        "key name is the origin: {vkey}"
    );
    // The checkpoint may cover more than we fetched only if something was
    // appended in between; nothing is, so it is exactly n.
    assert_eq!(a.size, n, "checkpoint size vs entries");

    let hashes = check_leaves(&entries);
    assert_eq!(
        merkle::root(&hashes),
        a.root,
        "signoff_ledger root of the leaves"
    );
    let leaves: Vec<Vec<u8>> = entries.iter().map(|e| e.leaf.clone()).collect();
    assert_eq!(
        independent_root(&leaves),
        a.root,
        "tlog_tiles root of the leaves"
    );
    for e in &entries {
        check_inclusion(&gw, "audrey", e, &a);
    }

    // A sub-range with an explicit end.
    let (page, next) = entries_page(&gw, "root", 2, Some(5));
    assert_eq!(page.iter().map(|e| e.index).collect::<Vec<_>>(), [2, 3, 4]);
    assert_eq!(next, None);
    assert_eq!(page[1].leaf, entries[3].leaf);
    let (page, next) = entries_page(&gw, "root", n, Some(n));
    assert!(page.is_empty() && next.is_none(), "empty range");

    // More decisions, a later checkpoint, consistency between the two.
    gw.submit("bot2", read("d"));
    gw.submit("bot2", read("e"));
    let entries = all_entries(&gw, "root", None);
    let b_cp = wait_checkpoint(&gw, "audrey", &vkey, entries.len() as u64);
    assert!(
        b_cp.size > a.size,
        "second checkpoint grew: {} → {}",
        a.size,
        b_cp.size
    );
    check_consistency(&gw, "audrey", &a, &b_cp);
    check_consistency(&gw, "root", &b_cp, &b_cp);
    let empty = proof_hashes(
        &gw.get_as(
            "audrey",
            &format!("/v1/ledger/proof/consistency?from=0&to={}", b_cp.size),
        )
        .expect(200),
    );
    assert!(empty.is_empty(), "consistency from the empty tree is empty");
    let hashes = check_leaves(&entries);
    assert_eq!(merkle::root(&hashes[..b_cp.size as usize]), b_cp.root);
    for e in entries.iter().filter(|e| e.index < b_cp.size) {
        check_inclusion(&gw, "root", e, &b_cp);
    }
    // A proof for the older size still verifies against the older root.
    check_inclusion(&gw, "audrey", &entries[0], &a);

    // Tampering is caught by both verifiers.
    let forged = a.note.replacen(
        &format!("\n{}\n", a.size),
        &format!("\n{}\n", a.size + 1),
        1,
    );
    assert!(signoff_ledger::note::Verifier::from_vkey(&vkey)
        .unwrap()
        .verify_note(&forged)
        .is_err());
    let parsed = signed_note::Note::from_bytes(forged.as_bytes()).unwrap();
    let azul_key = signed_note::StandardVerifier::new(&vkey).unwrap();
    assert!(parsed
        .verify(&signed_note::VerifierList::new(vec![Box::new(azul_key)]))
        .is_err());
}

/// Auditors and admins may read the ledger; agents and reviewers get 403,
/// anonymous callers 401, all as problem+json, before any parameter is
/// looked at. Bad ranges are 422 naming the values; malformed queries 400.
fn ledger_roles_and_bad_parameters(b: Backend) {
    let gw = Gateway::start(b);
    gw.submit("bot", read("x"));
    let vkey = vkey(&gw, "audrey");
    let size = all_entries(&gw, "audrey", None).len() as u64;
    wait_checkpoint(&gw, "audrey", &vkey, size);

    let paths = [
        "/v1/ledger/checkpoint".to_owned(),
        "/v1/ledger/key".to_owned(),
        format!("/v1/ledger/entries?start=0&end={size}"),
        format!("/v1/ledger/proof/inclusion?index=0&size={size}"),
        format!("/v1/ledger/proof/consistency?from=1&to={size}"),
        // a forbidden caller learns nothing about its parameters either
        "/v1/ledger/entries?start=9&end=1".to_owned(),
        "/v1/ledger/proof/inclusion?index=x".to_owned(),
    ];
    for path in &paths {
        for who in ["bot", "alice"] {
            let p = gw.get_as(who, path).assert_problem(403);
            assert!(
                p["detail"]
                    .as_str()
                    .unwrap()
                    .contains("read the audit trail"),
                "{path} as {who}: {p}"
            );
        }
        let r = gw.http("GET", path, None, Body::Empty, &[]);
        r.assert_problem(401);
        let r = gw.http("GET", path, Some("not-a-token"), Body::Empty, &[]);
        r.assert_problem(401);
    }
    for path in &paths[..5] {
        for who in ["audrey", "root"] {
            let r = gw.get_as(who, path);
            assert_eq!(r.status, 200, "{}: {}", r.what, r.body);
        }
    }

    let bad = |path: String, status: u16, needles: &[&str]| {
        let p = gw.get_as("audrey", &path).assert_problem(status);
        let detail = p["detail"].as_str().unwrap();
        for needle in needles {
            assert!(
                detail.contains(needle),
                "{path}: detail {detail:?} lacks {needle:?}"
            );
        }
    };
    let over = size + 7;
    bad(
        "/v1/ledger/entries?start=5&end=3".into(),
        422,
        &["start 5", "end 3"],
    );
    bad(
        format!("/v1/ledger/entries?start=0&end={over}"),
        422,
        &[&format!("end {over}"), &format!("size {size}")],
    );
    bad(
        format!("/v1/ledger/entries?start={over}"),
        422,
        &[&format!("start {over}"), &format!("end {size}")],
    );
    bad("/v1/ledger/entries?start=-1".into(), 400, &["start"]);
    bad("/v1/ledger/entries?start=abc".into(), 400, &["start"]);
    bad("/v1/ledger/entries?from=0".into(), 400, &["from"]);
    bad(
        format!("/v1/ledger/proof/inclusion?index={size}&size={size}"),
        422,
        &[&format!("index {size}"), &format!("size {size}")],
    );
    bad(
        format!("/v1/ledger/proof/inclusion?index=0&size={over}"),
        422,
        &[&format!("size {over}"), &format!("ledger size {size}")],
    );
    bad(
        "/v1/ledger/proof/inclusion?index=0&size=0".into(),
        422,
        &["index 0", "size 0"],
    );
    bad("/v1/ledger/proof/inclusion?index=0".into(), 400, &["size"]);
    bad(
        "/v1/ledger/proof/inclusion?index=1&size=two".into(),
        400,
        &["size"],
    );
    bad(
        "/v1/ledger/proof/consistency?from=3&to=2".into(),
        422,
        &["from 3", "to 2"],
    );
    bad(
        format!("/v1/ledger/proof/consistency?from=1&to={over}"),
        422,
        &[&format!("to {over}"), &format!("size {size}")],
    );
    bad("/v1/ledger/proof/consistency?to=2".into(), 400, &["from"]);

    // The endpoints are in the OpenAPI document.
    let doc = gw
        .http("GET", "/openapi.json", None, Body::Empty, &[])
        .expect(200);
    for p in [
        "/v1/ledger/checkpoint",
        "/v1/ledger/key",
        "/v1/ledger/entries",
        "/v1/ledger/proof/inclusion",
        "/v1/ledger/proof/consistency",
    ] {
        assert!(
            doc["paths"][p]["get"].is_object(),
            "{p} missing from /openapi.json"
        );
    }
    for s in ["LedgerEntry", "LedgerEntryPage", "ProofHashes"] {
        assert!(
            doc["components"]["schemas"][s].is_object(),
            "schema {s} missing"
        );
    }
}

/// `serve --dev` prints the ledger verifier key and where the signing key
/// lives; the key is the one the API serves and the file exists (0600).
fn dev_banner_shows_the_ledger_keys() {
    let gw = Gateway::start_dev();
    let vkey = vkey(&gw, "carol");
    let key_file = gw.path(".signoff-dev").join("ledger.key");
    let banner = poll(
        std::time::Duration::from_secs(10),
        std::time::Duration::from_millis(50),
        || {
            let s = gw.server_stdout();
            s.contains("verifier key").then_some(s)
        },
    )
    .unwrap_or_else(|| panic!("no verifier key in the dev banner:\n{}", gw.server_stdout()));
    assert!(
        banner
            .lines()
            .any(|l| l.contains("verifier key") && l.trim_end().ends_with(&vkey)),
        "banner does not show the served key {vkey}:\n{banner}"
    );
    assert!(
        banner
            .lines()
            .any(|l| l.contains("ledger key") && l.contains(&key_file.display().to_string())),
        "banner does not show {}:\n{banner}",
        key_file.display()
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file)
            .unwrap_or_else(|e| panic!("{}: {e}", key_file.display()))
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{} mode", key_file.display());
    }
}
