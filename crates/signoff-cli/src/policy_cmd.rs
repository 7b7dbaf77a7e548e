//! `signoff policy check|test|explain`: offline policy tooling for CI.

use anyhow::Result;
use clap::Subcommand;
use signoff_core::{ActionRequest, PrincipalRef};
use signoff_policy::{EvalInput, PolicySet};
use std::path::PathBuf;

// Parsed once per process; boxing the big variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum PolicyCmd {
    /// Parse and validate every *.cedar file of DIR, its catalog.toml,
    /// against signoff's schema (or DIR's own *.cedarschema).
    Check {
        /// Policy directory.
        dir: PathBuf,
    },
    /// Print the Cedar schema DIR's policies are validated against.
    Schema {
        /// Policy directory (without one: signoff's entity types only).
        dir: Option<PathBuf>,
    },
    /// Run a table of cases against the policies and compare verdicts.
    Test {
        /// Test file (TOML with [[case]] tables).
        file: PathBuf,
        /// Policy directory (overrides `policies` in the file).
        #[arg(long)]
        policies: Option<PathBuf>,
    },
    /// Ask a running gateway to reload its policy directory (admin token;
    /// SIGNOFF_URL, SIGNOFF_TOKEN). A set that does not load is rejected,
    /// with file:line:column, and the old one stays active (exit 2).
    Reload {
        #[command(flatten)]
        remote: crate::Remote,
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
        /// The principal's registered attribute KEY=VALUE (repeatable),
        /// e.g. environments=staging.
        #[arg(long = "attr", value_name = "KEY=VALUE")]
        attrs: Vec<String>,
        #[command(flatten)]
        request: crate::args::ActionArgs,
        /// Gate (context.gate).
        #[arg(long, default_value = "exec")]
        gate: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(cmd: PolicyCmd) -> Result<i32> {
    match cmd {
        PolicyCmd::Reload { remote } => crate::remote::reload_policies(&remote).await,
        PolicyCmd::Check { dir } => match PolicySet::load_dir(&dir) {
            Ok(set) => {
                for w in set.warnings() {
                    eprintln!(
                        "{}:{}:{}: {}",
                        dir.join(&w.file).display(),
                        w.line,
                        w.column,
                        w.message
                    );
                }
                println!(
                    "ok: {} policies, {} catalog entries in {} (set {})",
                    set.len(),
                    set.catalog_len(),
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
        PolicyCmd::Schema { dir } => {
            match dir {
                Some(dir) => print!("{}", PolicySet::load_dir(&dir)?.schema_text()),
                None => print!("{}", signoff_policy::base_schema()),
            }
            Ok(0)
        }
        PolicyCmd::Test { file, policies } => {
            let report = signoff_policy::testing::run_file(&file, policies.as_deref())?;
            print!("{}", report.render_table());
            Ok(if report.failed() == 0 { 0 } else { 1 })
        }
        PolicyCmd::Explain {
            policies,
            principal,
            groups,
            attrs,
            request,
            gate,
            json,
        } => {
            let set = PolicySet::load_dir(&policies)?;
            let principal: PrincipalRef = principal.parse().map_err(anyhow::Error::msg)?;
            let context = request.context_map()?;
            let request = ActionRequest {
                action: request.action,
                resource: request.resource,
                environment: request.environment,
                context,
                justification: request.justification,
                principal,
                on_behalf_of: request.on_behalf_of,
            };
            request.validate()?;
            let mut attributes = signoff_core::PrincipalAttributes::default();
            for a in &attrs {
                attributes
                    .apply(request.principal.kind, a)
                    .map_err(|e| anyhow::anyhow!("--attr {a}: {e}"))?;
            }
            let explanation = set.explain(&EvalInput {
                request: &request,
                principal_groups: &groups,
                gate: &gate,
                principal_attributes: &attributes,
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
