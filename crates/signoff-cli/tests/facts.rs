#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on setup failures
//! Policies decide on facts, not claims, end to end: the shipped example
//! policies and catalog in a real gateway on SQLite and PostgreSQL, attacked
//! the way an agent would (`--env production`, no `--env`, an unknown
//! resource, an agent outside its environments); reviewers see asserted and
//! resolved environment side by side; a broken catalog or a schema error
//! keeps the old set.

mod common;

use common::*;
use serde_json::{json, Value};
use std::path::PathBuf;

macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[test] fn $name() { super::$name(super::Backend::Sqlite) } )*
        }
        mod postgres {
            $( #[test] fn $name() { super::$name(super::Backend::Postgres) } )*
        }
    };
}

both_backends! {
    bypass_attempts_get_the_verdict_the_facts_require,
    reviewers_see_asserted_and_resolved_environment,
    broken_catalog_or_schema_keeps_the_old_set,
}

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/policies")
}

/// A gateway switched (by a reload) to the shipped example policies and
/// catalog, with `bot` registered for prod and staging and `staging-bot`
/// for staging only.
fn gateway(b: Backend) -> Gateway {
    let mut gw = Gateway::start(b);
    std::fs::remove_file(gw.policies.join("test.cedar")).unwrap();
    for f in ["demo.cedar", "platform.cedar", "catalog.toml"] {
        std::fs::copy(examples().join(f), gw.policies.join(f)).unwrap();
    }
    let info = gw
        .post_as("root", "/v1/policy/reload", json!({}))
        .expect(200);
    assert_eq!(info["catalog_entries"], 9, "{info:#}");
    let out = run_signoff(&[
        "principal",
        "attrs",
        "bot",
        "--attr",
        "environments=prod,staging",
        "--config",
        &plain(&gw.config),
    ]);
    assert_eq!(out.code, 0, "{out}");
    let shown: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(shown, json!({"environments": ["prod", "staging"]}));
    gw.add_principal(
        "staging-bot",
        &[
            "agent",
            "staging-bot",
            "--owner",
            "olga",
            "--attr",
            "environments=staging",
        ],
    );
    gw
}

/// `signoff exec` as `who` with `--wait 1s`; returns (exit code, request
/// id, whether the command ran).
fn attempt(
    gw: &Gateway,
    who: &str,
    action: &str,
    resource: &str,
    env: Option<&str>,
) -> (i32, String, bool) {
    let marker = gw.path(
        &format!("ran-{who}-{action}-{resource}-{}", env.unwrap_or("none"))
            .replace(['/', ':'], "_"),
    );
    let mut args: Vec<String> = [
        "exec",
        "--action",
        action,
        "--resource",
        resource,
        "--wait",
        "1s",
    ]
    .map(String::from)
    .to_vec();
    if let Some(e) = env {
        args.extend(["--env".to_owned(), e.to_owned()]);
    }
    args.extend(["--".to_owned(), "touch".to_owned(), plain(&marker)]);
    let out = gw.cli_as(who, &args);
    (out.code, out.request_id(), marker.exists())
}

/// (who, action, resource, --env, expected decision, determining policy)
type Attempt = (
    &'static str,
    &'static str,
    &'static str,
    Option<&'static str>,
    &'static str,
    Option<&'static str>,
);

fn bypass_attempts_get_the_verdict_the_facts_require(b: Backend) {
    let gw = gateway(b);
    let matrix: &[Attempt] = &[
        (
            "bot",
            "db.export",
            "customers",
            Some("prod"),
            "approval_required",
            None,
        ),
        (
            "bot",
            "db.export",
            "customers",
            Some("production"),
            "approval_required",
            None,
        ),
        (
            "bot",
            "db.export",
            "customers",
            Some("staging"),
            "approval_required",
            None,
        ),
        (
            "bot",
            "db.export",
            "customers",
            None,
            "approval_required",
            None,
        ),
        (
            "bot",
            "db.export",
            "customers_v2",
            Some("staging"),
            "deny",
            Some("unknown-resource"),
        ),
        (
            "staging-bot",
            "db.export",
            "customers",
            Some("staging"),
            "deny",
            Some("agent-outside-its-environments"),
        ),
        (
            "bot2",
            "db.read",
            "customers-staging",
            Some("staging"),
            "deny",
            Some("agent-outside-its-environments"),
        ),
        (
            "bot",
            "db.drop",
            "customers",
            Some("staging"),
            "deny",
            Some("no-prod-drop"),
        ),
        (
            "bot",
            "db.export",
            "customers-staging",
            Some("staging"),
            "allow",
            Some("nonprod-export"),
        ),
        (
            "staging-bot",
            "db.export",
            "customers-staging",
            None,
            "allow",
            Some("nonprod-export"),
        ),
        (
            "bot",
            "db.export",
            "s3://finance-q3",
            Some("dev"),
            "approval_required",
            None,
        ),
    ];
    for &(who, action, resource, env, want, policy) in matrix {
        let (code, id, ran) = attempt(&gw, who, action, resource, env);
        let r = gw.request(&id);
        let case = format!("{who} {action} {resource} --env {env:?}: {r:#}");
        assert_eq!(r["verdict"]["decision"], want, "{case}");
        if let Some(p) = policy {
            assert_eq!(r["verdict"]["policy_ids"], json!([p]), "{case}");
        }
        let (want_code, want_ran) = match want {
            "allow" => (0, true),
            "deny" => (77, false),
            _ => (75, false),
        };
        assert_eq!((code, ran), (want_code, want_ran), "{case}");
        // the decision rests on the catalog's environment, recorded with it
        assert_eq!(r["environment"], json!(env), "{case}");
        assert_eq!(r["facts"]["asserted_environment"], json!(env), "{case}");
    }
    // the pii export by an agent needs a data owner on top of two SREs,
    // whatever environment the agent claims
    let (_, id, _) = attempt(&gw, "bot", "db.export", "customers", Some("production"));
    let r = gw.request(&id);
    assert_eq!(
        r["verdict"]["requirement"],
        json!([{"group": "data-owners", "count": 1}, {"group": "sre", "count": 2}]),
        "{r:#}"
    );
    // the attribute change is in the audit trail with the acting operator
    let changed: Vec<Value> = gw
        .events()
        .into_iter()
        .filter(|e| e["kind"] == "principal_attributes_changed")
        .collect();
    assert_eq!(changed.len(), 1, "{changed:#?}");
    assert_eq!(changed[0]["actor"], "console");
    assert_eq!(changed[0]["detail"]["before"], json!({}));
    assert_eq!(
        changed[0]["detail"]["after"],
        json!({"environments": ["prod", "staging"]})
    );
    // and over the API, by an admin, named in the event
    let p = gw
        .http(
            "PUT",
            "/v1/principals/staging-bot/attributes",
            Some(&gw.token("root")),
            Body::Json(json!({"environments": ["staging", "prod"], "team": "data"})),
            &[],
        )
        .expect(200);
    assert_eq!(
        p["attributes"],
        json!({"environments": ["prod", "staging"], "team": "data"})
    );
    let (code, id, _) = attempt(
        &gw,
        "staging-bot",
        "db.export",
        "customers",
        Some("staging"),
    );
    assert_eq!(
        (code, gw.request(&id)["verdict"]["decision"].clone()),
        (75, json!("approval_required"))
    );
    assert!(gw
        .events()
        .iter()
        .any(|e| e["kind"] == "principal_attributes_changed" && e["actor"] == "user:root"));
    // a reviewer cannot change attributes; an unknown key is named
    gw.http(
        "PUT",
        "/v1/principals/staging-bot/attributes",
        Some(&gw.token("alice")),
        Body::Json(json!({"environments": ["prod"]})),
        &[],
    )
    .assert_problem(403);
    let p = gw
        .http(
            "PUT",
            "/v1/principals/staging-bot/attributes",
            Some(&gw.token("root")),
            Body::Json(json!({"department": "finance"})),
            &[],
        )
        .assert_problem(422);
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("agent principals have no attribute `department`"),
        "{p:#}"
    );
}

fn reviewers_see_asserted_and_resolved_environment(b: Backend) {
    let gw = gateway(b);
    let (code, id, _) = attempt(&gw, "bot", "db.export", "customers", Some("staging"));
    assert_eq!(code, 75);
    let r = gw.request(&id);
    assert_eq!(r["environment"], "staging", "{r:#}");
    assert_eq!(r["facts"]["resource"]["environment"], "prod", "{r:#}");
    assert_eq!(r["facts"]["resource"]["known"], true, "{r:#}");
    assert_eq!(r["facts"]["resource"]["entry"], "customers", "{r:#}");
    assert_eq!(r["facts"]["resource"]["classification"], "pii", "{r:#}");
    assert_eq!(r["facts"]["environment_mismatch"], true, "{r:#}");
    assert_eq!(
        r["facts"]["principal"]["environments"],
        json!(["prod", "staging"])
    );
    // the submission event carries the facts too
    let submitted = gw
        .events_for(&id)
        .into_iter()
        .find(|e| e["kind"] == "request_submitted")
        .unwrap();
    assert_eq!(
        submitted["detail"]["facts"]["resource"]["environment"],
        "prod"
    );

    let out = gw.cli_as("alice", ["show", &id]);
    assert_eq!(out.code, 0, "{out}");
    let line = |key: &str| {
        out.stdout
            .lines()
            .find(|l| l.starts_with(key))
            .unwrap_or_else(|| panic!("no `{key}` line in {out}"))
            .to_owned()
    };
    assert_eq!(
        line("environment"),
        "environment    prod (catalog)  MISMATCH with the asserted environment"
    );
    assert_eq!(
        line("asserted env"),
        "asserted env   staging (claimed by the requester)"
    );
    assert!(
        line("catalog").contains("entry `customers` (catalog.toml:"),
        "{out}"
    );

    let (_, unknown, _) = attempt(&gw, "bot", "db.read", "nowhere", Some("prod"));
    let out = gw.cli_as("alice", ["show", &unknown]);
    assert!(
        out.stdout.contains("UNKNOWN resource: not in the catalog"),
        "{out}"
    );
    assert_eq!(gw.request(&unknown)["facts"]["resource"]["known"], false);
}

fn broken_catalog_or_schema_keeps_the_old_set(b: Backend) {
    let gw = gateway(b);
    let before = gw.get_as("root", "/v1/policy").expect(200);
    let catalog = gw.policies.join("catalog.toml");
    let good = std::fs::read_to_string(&catalog).unwrap();

    // a catalog whose entry names a parent that does not exist
    std::fs::write(
        &catalog,
        good.replace(
            "name = \"customers\"\nparent = \"prod\"",
            "name = \"customers\"\nparent = \"prd\"",
        ),
    )
    .unwrap();
    let p = gw
        .post_as("root", "/v1/policy/reload", json!({}))
        .assert_problem(422);
    let detail = p["detail"].as_str().unwrap();
    assert!(
        detail.contains("catalog.toml:21:10: parent `prd` of `customers` is not a resource `name`"),
        "{detail}"
    );
    assert_eq!(
        gw.get_as("root", "/v1/policy").expect(200)["hash"],
        before["hash"]
    );
    let (code, id, _) = attempt(&gw, "bot", "db.export", "customers", Some("staging"));
    assert_eq!(code, 75, "the old catalog still says customers is prod");
    assert_eq!(
        gw.request(&id)["verdict"]["policy_set_hash"],
        before["hash"]
    );

    // a policy that misspells a context attribute is a schema error
    std::fs::write(&catalog, &good).unwrap();
    std::fs::write(
        gw.policies.join("typo.cedar"),
        "@id(\"typo\")\npermit(principal, action == Action::\"db.export\", resource)\n  when { context.enviroment == \"staging\" };\n",
    )
    .unwrap();
    let p = gw
        .post_as("root", "/v1/policy/reload", json!({}))
        .assert_problem(422);
    let detail = p["detail"].as_str().unwrap();
    assert!(detail.contains("typo.cedar:3:10:"), "{detail}");
    assert!(detail.contains("enviroment"), "{detail}");
    assert_eq!(
        gw.get_as("root", "/v1/policy").expect(200)["hash"],
        before["hash"]
    );
    let rejected = gw
        .events()
        .into_iter()
        .filter(|e| e["kind"] == "policy_set_rejected")
        .count();
    assert_eq!(rejected, 2);

    // fixed, the reload takes; a catalog change is a new policy set
    std::fs::remove_file(gw.policies.join("typo.cedar")).unwrap();
    std::fs::write(
        &catalog,
        good.replace("classification = \"pii\"", "classification = \"secret\""),
    )
    .unwrap();
    let after = gw
        .post_as("root", "/v1/policy/reload", json!({}))
        .expect(200);
    assert_ne!(after["hash"], before["hash"]);
}
