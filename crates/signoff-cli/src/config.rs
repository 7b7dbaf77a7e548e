//! The TOML config file. Unknown keys are errors that name the key; relative
//! paths resolve against the config file's folder.

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use signoff_core::Deadlines;
use std::path::{Path, PathBuf};

/// `signoff.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address to listen on.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// `sqlite://PATH` or `postgres://…`.
    pub database: String,
    /// Directory of `*.cedar` files.
    pub policies: PathBuf,
    /// Review time when a policy has no `@ttl` (default `1h`).
    #[serde(default)]
    pub default_ttl: Option<String>,
    /// How long an approval stays claimable (default `15m`).
    #[serde(default)]
    pub approval_window: Option<String>,
    /// File holding the Ed25519 key that signs ledger checkpoints; created
    /// (mode 0600) on first start. Default `ledger.key` beside the config.
    #[serde(default = "default_ledger_key")]
    pub ledger_key: PathBuf,
    /// The ledger's origin line and key name (default `signoff`); use a
    /// name unique to this deployment, e.g. `signoff.example.com/prod`.
    #[serde(default = "default_origin")]
    pub ledger_origin: String,
    /// When set, `GET /metrics` requires `Authorization: Bearer <this>`
    /// (Prometheus: `authorization: { credentials: … }`). At least 16
    /// characters.
    #[serde(default)]
    pub metrics_token: Option<String>,
    /// Log format on stderr (`text` or `json`); `--log-format` and
    /// `SIGNOFF_LOG_FORMAT` override it.
    #[serde(default)]
    pub log_format: Option<LogFormat>,
    /// `[components.*]`: background work, each in its own section.
    #[serde(default)]
    pub components: signoff_engine::components::ComponentsConfig,
    /// `[[witness]]`: where each signed checkpoint is pushed.
    #[serde(default)]
    pub witness: Vec<crate::witness::WitnessConfig>,
}

/// How `serve` writes its log on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per event; colour only on a terminal.
    Text,
    /// One JSON object per line, the event's fields at the top level.
    Json,
}

fn default_ledger_key() -> PathBuf {
    PathBuf::from("ledger.key")
}

fn default_origin() -> String {
    "signoff".into()
}

fn default_listen() -> String {
    "127.0.0.1:8470".into()
}

impl Config {
    /// Reads and resolves a config file.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        let mut config: Config = toml::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "{}: {}",
                path.display(),
                e.to_string().trim().replace('\n', " ")
            )
        })?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        config.resolve(&base);
        config.deadlines()?;
        if let Some(t) = &config.metrics_token {
            if t.len() < 16 || !t.bytes().all(|b| b.is_ascii_graphic()) {
                bail!(
                    "{}: metrics_token must be at least 16 visible ASCII characters without spaces",
                    path.display()
                );
            }
        }
        config
            .components
            .validate()
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        crate::witness::validate(&config.witness)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        Ok(config)
    }

    /// Makes relative paths relative to `base`.
    pub fn resolve(&mut self, base: &Path) {
        if self.policies.is_relative() {
            self.policies = base.join(&self.policies);
        }
        if self.ledger_key.is_relative() {
            self.ledger_key = base.join(&self.ledger_key);
        }
        for w in &mut self.witness {
            w.resolve(base);
        }
        if let Some(rest) = self.database.strip_prefix("sqlite://") {
            let (file, query) = rest
                .split_once('?')
                .map(|(f, q)| (f, Some(q)))
                .unwrap_or((rest, None));
            if !file.starts_with('/') && !file.is_empty() && file != ":memory:" {
                let abs = base.join(file);
                self.database = match query {
                    Some(q) => format!("sqlite://{}?{q}", abs.display()),
                    None => format!("sqlite://{}", abs.display()),
                };
            }
        }
    }

    /// The review and claim deadlines.
    pub fn deadlines(&self) -> Result<Deadlines> {
        let mut d = Deadlines::default();
        if let Some(t) = &self.default_ttl {
            d.default_ttl = parse_duration("default_ttl", t)?;
        }
        if let Some(t) = &self.approval_window {
            d.approval_window = parse_duration("approval_window", t)?;
        }
        Ok(d)
    }
}

/// Parses `30m`, `1h`, `90s`, `1h30m`.
pub fn parse_duration(what: &str, s: &str) -> Result<jiff::SignedDuration> {
    let d: jiff::SignedDuration = s.trim().parse().map_err(|_| {
        anyhow::anyhow!("invalid {what} `{s}`: expected a duration such as 30s, 15m or 1h30m")
    })?;
    if d.is_negative() || d.is_zero() {
        bail!("invalid {what} `{s}`: must be positive");
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(
            &p,
            "database = \"sqlite://x.db\"\npolicies = \"p\"\nlisten_addr = \"x\"\n",
        )
        .unwrap();
        let err = Config::load(&p).unwrap_err().to_string();
        assert!(err.contains("unknown field `listen_addr`"), "{err}");
    }

    #[test]
    fn relative_paths_resolve_against_config_dir() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(
            &p,
            "database = \"sqlite://data/x.db\"\npolicies = \"pol\"\ndefault_ttl = \"45m\"\n",
        )
        .unwrap();
        let c = Config::load(&p).unwrap();
        assert_eq!(c.policies, dir.path().join("pol"));
        assert_eq!(
            c.database,
            format!("sqlite://{}", dir.path().join("data/x.db").display())
        );
        assert_eq!(
            c.deadlines().unwrap().default_ttl,
            jiff::SignedDuration::from_mins(45)
        );
        assert_eq!(c.listen, "127.0.0.1:8470");
    }

    #[test]
    fn durations() {
        assert!(parse_duration("x", "1h30m").is_ok());
        assert!(parse_duration("x", "soon").is_err());
        assert!(parse_duration("x", "0s").is_err());
    }
}
