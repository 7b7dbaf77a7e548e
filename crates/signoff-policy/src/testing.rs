//! Policy tests for CI, in the spirit of `opa test`: a TOML file of cases,
//! each a request and the verdict it must get.
//!
//! ```toml
//! policies = "../policies"   # relative to this file; optional if the caller passes a dir
//!
//! [[case]]
//! name = "prod export needs two SREs"
//! principal = "agent:etl-bot"   # or "user:alice"
//! groups = ["sre"]              # optional: the principal's groups
//! attributes = { environments = ["staging"] }  # optional: its registered attributes
//! action = "db.export"
//! resource = "customers"
//! environment = "prod"          # optional
//! justification = "report"      # optional
//! on_behalf_of = "carol"        # optional
//! gate = "exec"                 # optional, default "exec"
//! context = { rows = 10 }       # optional
//! expect = "approval_required"  # allow | deny | approval_required (alias approval)
//! approvals = "sre:2"           # optional: the expected requirement
//! policy_ids = ["prod-export"]  # optional: the expected determining policies
//! ```
//!
//! The policy directory's `catalog.toml` resolves each case's resource, as
//! the gateway would. Unknown keys are errors, so a misspelt expectation
//! cannot silently pass.

use crate::{EvalInput, PolicyError, PolicySet};
use serde::Deserialize;
use serde_json::{Map, Value};
use signoff_core::{
    ActionRequest, Decision, PrincipalAttributes, PrincipalRef, Requirement, Verdict,
};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Why a test file could not be run (as opposed to a case failing).
#[derive(Debug, thiserror::Error)]
pub enum TestFileError {
    /// The file could not be read.
    #[error("cannot read test file {file}: {source}")]
    Read {
        /// The test file.
        file: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown or mistyped keys.
    #[error("invalid test file {file}: {message}")]
    Parse {
        /// The test file.
        file: PathBuf,
        /// What is wrong, naming the key.
        message: String,
    },
    /// Neither the file nor the caller names a policy directory.
    #[error("test file {file} names no policy directory: set `policies = \"DIR\"` or pass one")]
    NoPolicies {
        /// The test file.
        file: PathBuf,
    },
    /// The policies under test failed to load.
    #[error("policies for test file {file} failed to load:\n{source}")]
    Policies {
        /// The test file.
        file: PathBuf,
        /// Every load problem.
        source: PolicyError,
    },
    /// The file has no `[[case]]`.
    #[error("test file {file} has no [[case]] entries")]
    NoCases {
        /// The test file.
        file: PathBuf,
    },
    /// A case cannot be turned into a request or an expectation.
    #[error("test file {file}, case #{index} `{name}`: {message}")]
    Case {
        /// The test file.
        file: PathBuf,
        /// 1-based position of the case in the file.
        index: usize,
        /// The case name.
        name: String,
        /// What is wrong with it.
        message: String,
    },
}

/// The outcome of one case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseResult {
    /// The case name.
    pub name: String,
    /// Whether the verdict matched every expectation.
    pub passed: bool,
    /// What was expected, e.g. `approval_required (sre:2) by prod-export`.
    pub expected: String,
    /// What the policies decided, in the same form.
    pub got: String,
    /// Why it failed (empty when it passed).
    pub message: String,
}

/// The outcome of a whole test file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TestReport {
    /// One result per case, in file order.
    pub cases: Vec<CaseResult>,
}

impl TestReport {
    /// Number of passing cases.
    pub fn passed(&self) -> usize {
        self.cases.iter().filter(|c| c.passed).count()
    }

    /// Number of failing cases.
    pub fn failed(&self) -> usize {
        self.cases.len() - self.passed()
    }

    /// An aligned table (result, case, expected, got), the reason under each
    /// failure, and a last line `N passed, M failed`.
    pub fn render_table(&self) -> String {
        let width = |f: fn(&CaseResult) -> &str, title: &str| {
            self.cases
                .iter()
                .map(|c| f(c).chars().count())
                .chain([title.len()])
                .max()
                .unwrap_or(0)
        };
        let name_w = width(|c| &c.name, "CASE");
        let exp_w = width(|c| &c.expected, "EXPECTED");
        let mut out = String::new();
        let mut row = |result: &str, name: &str, expected: &str, got: &str| {
            let line = format!("{result:<6}{name:<name_w$}  {expected:<exp_w$}  {got}");
            let _ = writeln!(out, "{}", line.trim_end());
        };
        row("", "CASE", "EXPECTED", "GOT");
        for c in &self.cases {
            row(
                if c.passed { "PASS" } else { "FAIL" },
                &c.name,
                &c.expected,
                &c.got,
            );
            if !c.passed && !c.message.is_empty() {
                row("", &format!("  ↳ {}", c.message), "", "");
            }
        }
        let _ = writeln!(out, "{} passed, {} failed", self.passed(), self.failed());
        out
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    policies: Option<String>,
    #[serde(default, rename = "case")]
    cases: Vec<CaseSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseSpec {
    name: String,
    principal: String,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    attributes: PrincipalAttributes,
    action: String,
    resource: String,
    environment: Option<String>,
    justification: Option<String>,
    on_behalf_of: Option<String>,
    gate: Option<String>,
    #[serde(default)]
    context: toml::Table,
    expect: String,
    approvals: Option<String>,
    policy_ids: Option<Vec<String>>,
}

/// A case turned into a request and the expectations to check.
struct Case {
    name: String,
    request: ActionRequest,
    groups: Vec<String>,
    attributes: PrincipalAttributes,
    gate: String,
    expect: Decision,
    approvals: Option<Requirement>,
    policy_ids: Option<Vec<String>>,
}

/// Runs every case of the test file at `path` against the policies named in
/// the file (relative to it) or, when given, `policies_override`.
pub fn run_file(
    path: &Path,
    policies_override: Option<&Path>,
) -> Result<TestReport, TestFileError> {
    let file = path.to_path_buf();
    let text = std::fs::read_to_string(path).map_err(|source| TestFileError::Read {
        file: file.clone(),
        source,
    })?;
    let spec: TestFile = toml::from_str(&text).map_err(|e| TestFileError::Parse {
        file: file.clone(),
        message: toml_message(&e),
    })?;
    if spec.cases.is_empty() {
        return Err(TestFileError::NoCases { file });
    }
    let dir = match (policies_override, &spec.policies) {
        (Some(dir), _) => dir.to_path_buf(),
        (None, Some(rel)) => path.parent().unwrap_or(Path::new("")).join(rel),
        (None, None) => return Err(TestFileError::NoPolicies { file }),
    };
    let cases = spec
        .cases
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let name = c.name.clone();
            to_case(c).map_err(|message| TestFileError::Case {
                file: file.clone(),
                index: i + 1,
                name,
                message,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let set = PolicySet::load_dir(&dir).map_err(|source| TestFileError::Policies {
        file: file.clone(),
        source,
    })?;
    Ok(TestReport {
        cases: cases.iter().map(|c| run_case(&set, c)).collect(),
    })
}

/// toml's messages span several lines with a source excerpt; the first line
/// plus the location is what a table of results needs.
fn toml_message(e: &toml::de::Error) -> String {
    let msg = e.message().trim().to_owned();
    match e.span() {
        Some(span) => format!("{msg} (at byte {})", span.start),
        None => msg,
    }
}

fn to_case(c: CaseSpec) -> Result<Case, String> {
    let principal: PrincipalRef = c.principal.parse()?;
    let mut attributes = c.attributes;
    attributes.normalize();
    attributes.validate(principal.kind)?;
    let expect: Decision = c.expect.parse()?;
    let approvals = c
        .approvals
        .as_deref()
        .map(|a| {
            a.parse::<Requirement>()
                .map_err(|e| format!("invalid approvals `{a}`: {e}"))
        })
        .transpose()?;
    if approvals.is_some() && expect != Decision::ApprovalRequired {
        return Err("`approvals` only makes sense with expect = \"approval_required\"".into());
    }
    let mut context = Map::new();
    for (k, v) in c.context {
        context.insert(k, toml_to_json(v));
    }
    let request = ActionRequest {
        action: c.action,
        resource: c.resource,
        environment: c.environment,
        context,
        justification: c.justification,
        principal,
        on_behalf_of: c.on_behalf_of,
    };
    request.validate().map_err(|e| e.to_string())?;
    let mut policy_ids = c.policy_ids;
    if let Some(ids) = &mut policy_ids {
        ids.sort();
        ids.dedup();
    }
    Ok(Case {
        name: c.name,
        request,
        groups: c.groups,
        attributes,
        gate: c.gate.unwrap_or_else(|| "exec".into()),
        expect,
        approvals,
        policy_ids,
    })
}

/// TOML dates have no JSON (or Cedar) form; they become their text.
fn toml_to_json(v: toml::Value) -> Value {
    match v {
        toml::Value::String(s) => Value::String(s),
        toml::Value::Integer(i) => Value::from(i),
        toml::Value::Float(f) => Value::from(f),
        toml::Value::Boolean(b) => Value::Bool(b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(items) => Value::Array(items.into_iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => {
            Value::Object(t.into_iter().map(|(k, v)| (k, toml_to_json(v))).collect())
        }
    }
}

fn run_case(set: &PolicySet, case: &Case) -> CaseResult {
    let verdict = set.evaluate(&EvalInput {
        request: &case.request,
        principal_groups: &case.groups,
        gate: &case.gate,
        principal_attributes: &case.attributes,
    });
    let mut problems = Vec::new();
    if verdict.decision != case.expect {
        problems.push(format!(
            "expected {}, got {}",
            case.expect, verdict.decision
        ));
    }
    if let Some(want) = &case.approvals {
        if verdict.requirement.as_ref() != Some(want) {
            let got = verdict
                .requirement
                .as_ref()
                .map_or_else(|| "none".to_owned(), ToString::to_string);
            problems.push(format!("expected approvals {want}, got {got}"));
        }
    }
    if let Some(want) = &case.policy_ids {
        if &verdict.policy_ids != want {
            problems.push(format!(
                "expected policies [{}], got [{}]",
                want.join(", "),
                verdict.policy_ids.join(", ")
            ));
        }
    }
    if !problems.is_empty() {
        problems.extend(verdict.reasons.iter().map(|r| format!("reason: {r}")));
        problems.extend(verdict.errors.iter().map(|e| format!("error: {e}")));
    }
    CaseResult {
        name: case.name.clone(),
        passed: problems.is_empty(),
        expected: expected_summary(case),
        got: got_summary(&verdict),
        message: problems.join("; "),
    }
}

fn expected_summary(case: &Case) -> String {
    let mut s = case.expect.to_string();
    if let Some(r) = &case.approvals {
        s.push_str(&format!(" ({r})"));
    }
    if let Some(ids) = &case.policy_ids {
        s.push_str(&format!(" by {}", ids.join(", ")));
    }
    s
}

fn got_summary(v: &Verdict) -> String {
    v.summary()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const POLICIES: &str = r#"
@id("prod-export") @approval("sre:2") @ttl("30m")
permit(principal is Agent, action == Action::"db.export", resource)
  when { context.environment == "prod" };
@id("dev") permit(principal, action in Action::"db", resource) when { context.environment == "dev" };
@id("big") forbid(principal, action, resource) when { context has rows && context.rows > 1000000 };
@id("sre-restart") permit(principal in Group::"sre", action == Action::"k8s.restart", resource)
  when { context.gate == "mcp" && context.on_behalf_of == "carol" };
"#;

    const CASES: &str = r#"
policies = "policies"

[[case]]
name = "prod export needs two SREs"
principal = "agent:etl-bot"
action = "db.export"
resource = "customers"
environment = "prod"
justification = "quarterly report"
expect = "approval_required"
approvals = "sre:2"
policy_ids = ["prod-export"]

[[case]]
name = "dev export is allowed"
principal = "user:alice"
action = "db.export"
resource = "customers"
environment = "dev"
expect = "allow"

[[case]]
name = "huge export is forbidden"
principal = "agent:etl-bot"
action = "db.export"
resource = "customers"
environment = "dev"
context = { rows = 5000000, format = "csv", nested = { ok = true } }
expect = "deny"
policy_ids = ["big"]

[[case]]
name = "sre restart via mcp"
principal = "user:bob"
groups = ["sre"]
action = "k8s.restart"
resource = "payments"
gate = "mcp"
on_behalf_of = "carol"
expect = "allow"

[[case]]
name = "wrong expectation"
principal = "agent:etl-bot"
action = "db.export"
resource = "customers"
environment = "prod"
expect = "approval"
approvals = "sre:1"
"#;

    fn fixture(cases: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("policies")).unwrap();
        std::fs::write(dir.path().join("policies/main.cedar"), POLICIES).unwrap();
        let file = dir.path().join("policy_test.toml");
        std::fs::write(&file, cases).unwrap();
        (dir, file)
    }

    #[test]
    fn runs_cases_and_renders_a_table() {
        let (_dir, file) = fixture(CASES);
        let report = run_file(&file, None).unwrap();
        assert_eq!((report.passed(), report.failed()), (4, 1));
        assert_eq!(
            report.render_table(),
            "      CASE                        EXPECTED                                  GOT\n\
             PASS  prod export needs two SREs  approval_required (sre:2) by prod-export  approval_required (sre:2) by prod-export\n\
             PASS  dev export is allowed       allow                                     allow by dev\n\
             PASS  huge export is forbidden    deny by big                               deny by big\n\
             PASS  sre restart via mcp         allow                                     allow by sre-restart\n\
             FAIL  wrong expectation           approval_required (sre:1)                 approval_required (sre:2) by prod-export\n\
             \x20       ↳ expected approvals sre:1, got sre:2\n\
             4 passed, 1 failed\n"
        );
    }

    #[test]
    fn override_dir_wins_and_missing_dir_is_an_error() {
        let (dir, file) = fixture(&CASES.replace("policies = \"policies\"", ""));
        assert!(matches!(
            run_file(&file, None),
            Err(TestFileError::NoPolicies { .. })
        ));
        let report = run_file(&file, Some(&dir.path().join("policies"))).unwrap();
        assert_eq!(report.cases.len(), 5);
        let err = run_file(&file, Some(&dir.path().join("elsewhere")))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!(
                "policies for test file {} failed to load:\n",
                file.display()
            )),
            "{err}"
        );
        assert!(err.ends_with("does not exist"), "{err}");
    }

    #[test]
    fn unknown_keys_are_errors_naming_the_key() {
        let (_dir, file) =
            fixture(&CASES.replace("gate = \"mcp\"", "gate = \"mcp\"\nexpected = \"allow\""));
        let err = run_file(&file, None).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!(
                "invalid test file {}: unknown field `expected`",
                file.display()
            )),
            "{err}"
        );
        let (_dir, file) = fixture(&format!("polices = \"p\"\n{CASES}"));
        let err = run_file(&file, None).unwrap_err().to_string();
        assert!(err.contains("unknown field `polices`"), "{err}");
    }

    #[test]
    fn bad_case_input_names_the_case() {
        let (_dir, file) =
            fixture(&CASES.replace("principal = \"user:bob\"", "principal = \"robot:bob\""));
        assert_eq!(
            run_file(&file, None).unwrap_err().to_string(),
            format!(
                "test file {}, case #4 `sre restart via mcp`: unknown principal kind `robot` (expected agent or user)",
                file.display()
            )
        );
        let (_dir, file) = fixture(&CASES.replace("expect = \"allow\"\n", "expect = \"maybe\"\n"));
        let err = run_file(&file, None).unwrap_err().to_string();
        assert!(
            err.contains("case #2 `dev export is allowed`: unknown verdict `maybe`"),
            "{err}"
        );
        let (_dir, file) = fixture(&CASES.replace("format = \"csv\"", "gate = \"csv\""));
        let err = run_file(&file, None).unwrap_err().to_string();
        assert!(
            err.contains("case #3 `huge export is forbidden`: context key `gate` is reserved"),
            "{err}"
        );
        let (_dir, file) = fixture("policies = \"policies\"\n");
        assert!(matches!(
            run_file(&file, None),
            Err(TestFileError::NoCases { .. })
        ));
    }
}
