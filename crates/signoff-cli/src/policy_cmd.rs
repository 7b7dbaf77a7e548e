//! `signoff policy check|test|explain`: offline policy tooling for CI.

use anyhow::{bail, Result};
use clap::Subcommand;
use serde_json::{Map, Value};
use signoff_core::{ActionRequest, PrincipalRef};
use signoff_policy::{EvalInput, PolicySet};
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum PolicyCmd {
    /// Parse and validate every *.cedar file of DIR (and its *.cedarschema).
    Check {
        /// Policy directory.
        dir: PathBuf,
    },
    /// Run a table of cases against the policies and compare verdicts.
    Test {
        /// Test file (TOML with [[case]] tables).
        file: PathBuf,
        /// Policy directory (overrides `policies` in the file).
        #[arg(long)]
        policies: Option<PathBuf>,
    },
    /// Show the verdict for an ad-hoc action and why.
    Explain {
        /// Policy directory.
        #[arg(long)]
        policies: PathBuf,
        /// agent:NAME or user:NAME.
        #[arg(long)]
        principal: String,
        /// The principal's groups (repeatable).
        #[arg(long = "group")]
        groups: Vec<String>,
        /// Dotted action.
        #[arg(long)]
        action: String,
        /// Resource.
        #[arg(long)]
        resource: String,
        /// Environment.
        #[arg(long = "env")]
        environment: Option<String>,
        /// Justification.
        #[arg(long)]
        justification: Option<String>,
        /// On behalf of.
        #[arg(long)]
        on_behalf_of: Option<String>,
        /// Gate (context.gate).
        #[arg(long, default_value = "exec")]
        gate: String,
        /// KEY=VALUE context (repeatable; VALUE parsed as JSON when it is JSON, else a string).
        #[arg(long = "context", value_name = "KEY=VALUE")]
        context: Vec<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cmd: PolicyCmd) -> Result<i32> {
    match cmd {
        PolicyCmd::Check { dir } => match PolicySet::load_dir(&dir) {
            Ok(set) => {
                println!(
                    "ok: {} policies in {} (set {})",
                    set.len(),
                    dir.display(),
                    &set.hash()[..12]
                );
                Ok(0)
            }
            Err(e) => {
                for d in &e.diagnostics {
                    eprintln!(
                        "{}:{}:{}: {}",
                        dir.join(&d.file).display(),
                        d.line,
                        d.column,
                        d.message
                    );
                }
                eprintln!(
                    "signoff: {} problem(s) in {}",
                    e.diagnostics.len(),
                    dir.display()
                );
                Ok(1)
            }
        },
        PolicyCmd::Test { file, policies } => {
            let report = signoff_policy::testing::run_file(&file, policies.as_deref())?;
            print!("{}", report.render_table());
            Ok(if report.failed() == 0 { 0 } else { 1 })
        }
        PolicyCmd::Explain {
            policies,
            principal,
            groups,
            action,
            resource,
            environment,
            justification,
            on_behalf_of,
            gate,
            context,
            json,
        } => {
            let set = PolicySet::load_dir(&policies)?;
            let principal: PrincipalRef = principal.parse().map_err(anyhow::Error::msg)?;
            let mut ctx = Map::new();
            for kv in &context {
                let Some((k, v)) = kv.split_once('=') else {
                    bail!("invalid --context `{kv}`: expected KEY=VALUE")
                };
                ctx.insert(
                    k.to_owned(),
                    serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_owned())),
                );
            }
            let request = ActionRequest {
                action,
                resource,
                environment,
                context: ctx,
                justification,
                principal,
                on_behalf_of,
            };
            request.validate()?;
            let explanation = set.explain(&EvalInput {
                request: &request,
                principal_groups: &groups,
                gate: &gate,
            });
            if json {
                println!("{}", serde_json::to_string_pretty(&explanation)?);
            } else {
                print!("{}", explanation.render());
            }
            Ok(0)
        }
    }
}
