//! Command-line arguments shared by several commands.

use crate::exit::usage;
use anyhow::Result;
use clap::Args;
use serde_json::{Map, Value};

/// The parts of an action request given on the command line.
#[derive(Debug, Clone, Args)]
pub struct ActionArgs {
    /// Dotted action, e.g. db.export.
    #[arg(long)]
    pub action: String,
    /// What it touches.
    #[arg(long)]
    pub resource: String,
    /// Environment, e.g. prod.
    #[arg(long = "env")]
    pub environment: Option<String>,
    /// Business reason shown to reviewers.
    #[arg(long)]
    pub justification: Option<String>,
    /// Extra facts for policies and reviewers (repeatable): KEY=VALUE; numbers and true/false are typed, anything else is a string.
    #[arg(long = "context", value_name = "KEY=VALUE")]
    pub context: Vec<String>,
    /// The human this runs for (can never approve it).
    #[arg(long)]
    pub on_behalf_of: Option<String>,
}

impl ActionArgs {
    /// The `--context` pairs as a JSON object.
    pub fn context_map(&self) -> Result<Map<String, Value>> {
        let mut map = Map::new();
        for kv in &self.context {
            let Some((k, v)) = kv.split_once('=') else {
                return Err(usage(format!(
                    "invalid --context `{kv}`: expected KEY=VALUE"
                )));
            };
            if k.is_empty() {
                return Err(usage(format!("invalid --context `{kv}`: empty key")));
            }
            // numbers and booleans become Cedar longs and bools, so that
            // `context.rows > 1000` works; anything else is a string
            let value = match serde_json::from_str::<Value>(v) {
                Ok(typed @ (Value::Number(_) | Value::Bool(_))) => typed,
                _ => Value::String(v.to_owned()),
            };
            if map.insert(k.to_owned(), value).is_some() {
                return Err(usage(format!("--context key `{k}` given twice")));
            }
        }
        Ok(map)
    }
}
