//! `signoff serve --dev`: zero configuration. Everything lives in
//! `./.signoff-dev/`: a SQLite database, a demo policy, a config file and the
//! demo credentials (0600), so a restart prints the same tokens.

use crate::config::Config;
use anyhow::{Context, Result};
use signoff_core::wire::NewPrincipal;
use signoff_core::{PrincipalKind, Role};
use signoff_engine::principals::Operator;
use signoff_engine::Engine;
use std::path::PathBuf;

const DIR: &str = ".signoff-dev";

/// The demo policy: decisions on catalog facts and the agent's registered
/// environments, failing closed on unknown resources. The same text as
/// `examples/policies/demo.cedar`, whose test table covers it.
pub const DEMO_POLICY: &str = include_str!("../../../examples/policies/demo.cedar");

/// The demo resource catalog (`examples/policies/catalog.toml`).
pub const DEMO_CATALOG: &str = include_str!("../../../examples/policies/catalog.toml");

/// What `prepare` set up.
#[derive(Debug, Clone)]
pub struct DevSetup {
    pub dir: PathBuf,
    pub config: Config,
    /// The config file written (for `principal add … --config`).
    pub config_path: PathBuf,
    pub credentials: PathBuf,
}

/// Where dev mode lives: `./.signoff-dev`.
fn dev_dir() -> Result<PathBuf> {
    Ok(std::env::current_dir()
        .context("cannot read the working directory")?
        .join(DIR))
}

/// The address dev mode listens on: its config's `listen` when an earlier
/// run wrote one, else the default. Read before anything is written, so
/// the socket can be bound first.
pub fn listen_address() -> Result<String> {
    let config_path = dev_dir()?.join(CONFIG_FILE);
    if config_path.exists() {
        Ok(Config::load(&config_path)?.listen)
    } else {
        Ok(DEFAULT_LISTEN.to_owned())
    }
}

/// The config file dev mode writes in [`DIR`].
const CONFIG_FILE: &str = "signoff.toml";

/// Dev mode's default address.
const DEFAULT_LISTEN: &str = "127.0.0.1:8470";

/// Creates `.signoff-dev/` with a config, the demo policy and the database path.
pub fn prepare() -> Result<DevSetup> {
    let dir = dev_dir()?;
    let policies = dir.join("policies");
    std::fs::create_dir_all(&policies)
        .with_context(|| format!("cannot create {}", policies.display()))?;
    let demo = policies.join("demo.cedar");
    if !demo.exists() {
        std::fs::write(&demo, DEMO_POLICY)
            .with_context(|| format!("cannot write {}", demo.display()))?;
    }
    let catalog = policies.join(signoff_policy::CATALOG_FILE);
    if !catalog.exists() {
        std::fs::write(&catalog, DEMO_CATALOG)
            .with_context(|| format!("cannot write {}", catalog.display()))?;
    }
    let config_path = dir.join(CONFIG_FILE);
    if !config_path.exists() {
        std::fs::write(
            &config_path,
            format!("# written by `signoff serve --dev`\nlisten = \"{DEFAULT_LISTEN}\"\ndatabase = \"sqlite://signoff.db\"\npolicies = \"policies\"\n"),
        )
        .with_context(|| format!("cannot write {}", config_path.display()))?;
    }
    let config = Config::load(&config_path)?;
    Ok(DevSetup {
        config_path,
        credentials: dir.join("credentials.env"),
        dir,
        config,
    })
}

struct Demo {
    var: &'static str,
    kind: PrincipalKind,
    name: &'static str,
    role: Role,
    groups: &'static [&'static str],
    owner: Option<&'static str>,
    /// `--attr` assignments.
    attrs: &'static [&'static str],
}

const DEMO_PRINCIPALS: [Demo; 4] = [
    Demo {
        var: "ALICE_TOKEN",
        kind: PrincipalKind::User,
        name: "alice",
        role: Role::Reviewer,
        groups: &["sre"],
        owner: None,
        attrs: &[],
    },
    Demo {
        var: "BOB_TOKEN",
        kind: PrincipalKind::User,
        name: "bob",
        role: Role::Reviewer,
        groups: &["sre"],
        owner: None,
        attrs: &[],
    },
    Demo {
        var: "CAROL_TOKEN",
        kind: PrincipalKind::User,
        name: "carol",
        role: Role::Admin,
        groups: &["sre"],
        owner: None,
        attrs: &[],
    },
    // last: its owner must exist first
    Demo {
        var: "AGENT_TOKEN",
        kind: PrincipalKind::Agent,
        name: "etl-bot",
        role: Role::Agent,
        groups: &[],
        owner: Some("carol"),
        attrs: &["environments=prod,staging"],
    },
];

/// Creates the demo principals once and saves their tokens.
pub async fn ensure_principals(engine: &Engine, setup: &DevSetup) -> Result<()> {
    if setup.credentials.exists() {
        return Ok(());
    }
    let mut lines =
        String::from("# demo credentials written by `signoff serve --dev`; source this file\n");
    for d in &DEMO_PRINCIPALS {
        let new = NewPrincipal {
            kind: d.kind,
            name: d.name.into(),
            role: Some(d.role),
            email: (d.kind == PrincipalKind::User).then(|| format!("{}@example.com", d.name)),
            groups: d.groups.iter().map(|g| g.to_string()).collect(),
            owner: d.owner.map(str::to_owned),
            gate: None,
            attributes: {
                let mut a = signoff_core::PrincipalAttributes::default();
                for assignment in d.attrs {
                    a.apply(d.kind, assignment).map_err(anyhow::Error::msg)?;
                }
                a
            },
        };
        let (_, _, token) = engine.add_principal(Operator::Console, new).await?;
        lines.push_str(&format!("{}={token}\n", d.var));
    }
    write_private(&setup.credentials, &lines)?;
    Ok(())
}

fn write_private(path: &std::path::Path, text: &str) -> Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

fn token(setup: &DevSetup, var: &str) -> String {
    std::fs::read_to_string(&setup.credentials)
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{var}=")).map(str::to_owned))
        .unwrap_or_else(|| "(missing: delete .signoff-dev to start over)".into())
}

/// Prints the URL, the credentials, the ledger keys and a walkthrough to
/// copy and paste.
pub fn print_banner(setup: &DevSetup, url: &str, engine: &Engine) {
    let info = engine.policy_info();
    let agent = token(setup, "AGENT_TOKEN");
    let alice = token(setup, "ALICE_TOKEN");
    let bob = token(setup, "BOB_TOKEN");
    let carol = token(setup, "CAROL_TOKEN");
    println!(
        r#"signoff listening on {url}   (dev mode — not for production)
  config       {config} (for `signoff principal … --config` and `serve --config`)
  database     {db}
  policies     {pol} ({n} policies, {c} catalog entries in catalog.toml)
  credentials  {cred}
  ledger key   {ledger_key} (signs checkpoints; keep it secret)
  verifier key {vkey}

  agent    etl-bot  (owner carol, prod+staging) {agent}
  reviewer alice    (group sre)            {alice}
  reviewer bob      (group sre)            {bob}
  admin    carol    (group sre)            {carol}

Try it in another terminal:
  export SIGNOFF_URL={url}
  export SIGNOFF_TOKEN={agent}
  signoff exec --action db.read --resource customers --env prod -- echo read ok
  signoff exec --action db.drop --resource customers --env prod -- echo never printed; echo "exit $?"
  signoff exec --action db.export --resource customers --env prod --justification "Q3 report" -- echo exported
  # the catalog says customers is prod: claiming another environment changes nothing
  signoff exec --action db.export --resource customers --env staging -- echo exported
  signoff policy explain --policies {pol} --principal agent:etl-bot --attr environments=prod,staging --action db.export --resource customers --env staging

  # while the export waits, in a third terminal (carol can't: she owns etl-bot):
  SIGNOFF_URL={url} SIGNOFF_TOKEN={alice} signoff ls --status pending
  SIGNOFF_URL={url} SIGNOFF_TOKEN={alice} signoff approve <ID>
  SIGNOFF_URL={url} SIGNOFF_TOKEN={bob} signoff approve <ID>

  # add a reviewer (prints its token); reload edited policies (carol is an admin):
  signoff principal add user dana --group sre --config {config}
  SIGNOFF_URL={url} SIGNOFF_TOKEN={carol} signoff policy reload

  # the signed ledger (carol is an admin, so she may read the audit trail):
  curl -s -H "Authorization: Bearer {carol}" {url}/v1/ledger/checkpoint
"#,
        config = setup.config_path.display(),
        db = setup.config.database,
        pol = setup.config.policies.display(),
        n = info.policy_ids.len(),
        c = info.catalog_entries,
        cred = setup.credentials.display(),
        ledger_key = setup.config.ledger_key.display(),
        vkey = engine
            .ledger(Operator::Console)
            .ok()
            .and_then(|l| l.vkey())
            .unwrap_or_else(|| "(none: no ledger key configured)".into()),
    );
    let _ = &setup.dir;
}
