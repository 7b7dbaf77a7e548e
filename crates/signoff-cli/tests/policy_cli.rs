#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on setup failures
//! `signoff policy check|test|explain` through the real binary, on the
//! example policies shipped in `examples/policies`.

use std::path::PathBuf;
use std::process::{Command, Output};

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/policies")
}

fn signoff(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_signoff"))
        .args(args)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn check_accepts_the_examples() {
    let out = signoff(&["policy", "check", examples().to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("ok: 10 policies, 9 catalog entries in"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(text(&out.stderr), "", "the examples raise no warnings");
}

#[test]
fn check_names_file_line_and_column_of_each_problem() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a.cedar"),
        "permit(principal, action, resource);\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("b.cedar"),
        "\n\nforbid(principal action, resource);\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("c.cedar"),
        "@approval(\"sre:0\")\npermit(principal, action, resource);\n",
    )
    .unwrap();
    let out = signoff(&["policy", "check", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("b.cedar:3:18: unexpected token `action`"),
        "{err}"
    );
    assert!(err.contains("c.cedar:1:"), "{err}");
    assert!(err.contains("invalid count `0` for group `sre`"), "{err}");
    assert!(err.contains("problem(s) in"), "{err}");
}

#[test]
fn test_table_passes_and_reports_failures() {
    let out = signoff(&[
        "policy",
        "test",
        examples().join("tests.toml").to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert_eq!(
        text(&out.stdout).lines().last(),
        Some("16 passed, 0 failed")
    );

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t.toml");
    std::fs::write(
        &file,
        format!(
            "policies = {:?}\n[[case]]\nname = \"wrong on purpose\"\nprincipal = \"agent:x\"\naction = \"db.drop\"\nresource = \"r\"\nenvironment = \"prod\"\nexpect = \"allow\"\n",
            examples()
        ),
    )
    .unwrap();
    let out = signoff(&["policy", "test", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("FAIL  wrong on purpose"), "{stdout}");
    assert_eq!(stdout.lines().last(), Some("0 passed, 1 failed"));
}

#[test]
fn explain_shows_verdict_and_typed_context() {
    let out = signoff(&[
        "policy",
        "explain",
        "--policies",
        examples().to_str().unwrap(),
        "--principal",
        "agent:etl-bot",
        "--attr",
        "environments=prod,staging",
        "--action",
        "db.export",
        "--resource",
        "customers",
        "--env",
        "production",
        "--context",
        "rows=250000",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.starts_with("verdict: approval_required (data-owners:1,sre:2)"),
        "{stdout}"
    );
    // where each value came from
    let fact = |name: &str| {
        stdout
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} line in {stdout}"))
            .split_whitespace()
            .skip(1)
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert!(
        fact("resource.environment").starts_with("\"prod\" catalog (catalog.toml:"),
        "{stdout}"
    );
    assert!(
        fact("context.environment").starts_with("\"production\" asserted"),
        "{stdout}"
    );
    assert_eq!(
        fact("context.environment_mismatch"),
        "true catalog vs asserted"
    );
    assert_eq!(
        fact("principal.environments"),
        "[\"prod\",\"staging\"] principal (registered attributes)"
    );
    assert_eq!(fact("context.rows"), "250000 asserted");
    assert_eq!(fact("context.gate"), "\"exec\" credential");

    let out = signoff(&[
        "policy",
        "explain",
        "--policies",
        examples().to_str().unwrap(),
        "--principal",
        "agent:etl-bot",
        "--attr",
        "department=x",
        "--action",
        "db.read",
        "--resource",
        "customers",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr)
            .contains("--attr department=x: agent principals have no attribute `department`"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn check_reports_schema_errors_and_registry_warnings() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        examples().join("catalog.toml"),
        dir.path().join("catalog.toml"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("a.cedar"),
        "@id(\"a\")\npermit(principal, action == Action::\"db.exprot\", resource)\n  when { resource.known };\n",
    )
    .unwrap();
    let out = signoff(&["policy", "check", dir.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("a.cedar:1:1: warning: policy `a` names action `db.exprot`, which is not in the action registry"),
        "{}",
        text(&out.stderr)
    );
    std::fs::write(
        dir.path().join("b.cedar"),
        "permit(principal, action == Action::\"db.export\", resource)\n  when { context.enviroment == \"prod\" };\n",
    )
    .unwrap();
    let out = signoff(&["policy", "check", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("b.cedar:2:10: "), "{err}");
    assert!(err.contains("enviroment"), "{err}");

    let out = signoff(&["policy", "schema", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "the set does not load");
    std::fs::remove_file(dir.path().join("b.cedar")).unwrap();
    let out = signoff(&["policy", "schema", dir.path().to_str().unwrap()]);
    assert!(out.status.success());
    let schema = text(&out.stdout);
    assert!(
        schema.contains("entity Resource in [Resource] = {"),
        "{schema}"
    );
    assert!(
        schema.contains("action \"db.export\" in [\"db\"] appliesTo {"),
        "{schema}"
    );
    assert!(schema.contains("\"rows\"?: Long"), "{schema}");
}
