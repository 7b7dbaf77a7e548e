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
        text(&out.stdout).starts_with("ok: 7 policies in"),
        "{}",
        text(&out.stdout)
    );
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
    assert_eq!(text(&out.stdout).lines().last(), Some("8 passed, 0 failed"));

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
        "--action",
        "db.export",
        "--resource",
        "customers",
        "--env",
        "prod",
        "--context",
        "rows=250000",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.starts_with("verdict: approval_required (data-owners:1,sre:2)"),
        "{stdout}"
    );
}
