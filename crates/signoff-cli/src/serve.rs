//! `signoff serve` and `signoff principal …`: the commands that own the
//! database, as opposed to talking to a running gateway.

use crate::config::{Config, LogFormat};
use crate::{AddCmd, PrincipalCmd};
use anyhow::{Context, Result};
use signoff_core::wire::NewPrincipal;
use signoff_core::{PrincipalKind, SystemClock};
use signoff_engine::principals::Operator;
use signoff_engine::{Engine, EngineConfig};
use std::path::PathBuf;
use std::sync::Arc;

/// Opens the store and starts the engine described by `config`.
pub async fn engine(config: &Config) -> Result<Arc<Engine>> {
    Ok(open(config).await?.1)
}

/// Opens the store and starts the engine described by `config`, returning
/// both (the offline audit commands read the store directly).
pub async fn open(config: &Config) -> Result<(Arc<dyn signoff_store::Store>, Arc<Engine>)> {
    let store = signoff_store::open(&config.database)
        .await
        .with_context(|| {
            format!(
                "cannot open database {}",
                signoff_store::redact(&config.database)
            )
        })?;
    let key = signoff_engine::witness::open_key(&config.ledger_key, &config.ledger_origin, &*store)
        .await?;
    start_engine(config, store, key).await
}

/// The engine over `store` signing with `key`, its witness file beside the
/// configured key file.
pub async fn start_engine(
    config: &Config,
    store: Arc<dyn signoff_store::Store>,
    key: signoff_ledger::note::SigningKey,
) -> Result<(Arc<dyn signoff_store::Store>, Arc<Engine>)> {
    let engine = Engine::start(
        store.clone(),
        Arc::new(SystemClock),
        EngineConfig {
            ledger_key: Some(Arc::new(key)),
            witness_file: Some(signoff_engine::witness::WitnessFile::beside_key(
                &config.ledger_key,
            )),
            policy_dir: config.policies.clone(),
            deadlines: config.deadlines()?,
        },
    )
    .await
    .with_context(|| format!("cannot load policies from {}", config.policies.display()))?;
    Ok((store, engine))
}

pub async fn run(
    config_path: Option<PathBuf>,
    dev: bool,
    listen: Option<String>,
    log_format: Option<LogFormat>,
) -> Result<i32> {
    // The socket first: a gateway that cannot listen (the port is taken)
    // fails before it creates a database, a key, a witness file or, in dev
    // mode, the `.signoff-dev` directory.
    let (listener, config, dev_setup) = if dev {
        let address = match listen {
            Some(l) => l,
            None => crate::dev::listen_address()?,
        };
        let listener = bind(&address).await?;
        let setup = crate::dev::prepare()?;
        let mut config = setup.config.clone();
        config.listen = address;
        (listener, config, Some(setup))
    } else {
        let path = config_path.context("--config FILE is required (or use --dev)")?;
        let mut config = Config::load(&path)?;
        if let Some(l) = listen {
            config.listen = l;
        }
        (bind(&config.listen).await?, config, None)
    };
    init_tracing(log_format.or(config.log_format).unwrap_or(LogFormat::Text));
    crate::files::require_private(&crate::files::secret_files(&config))?;
    let engine = engine(&config).await?;
    // Before anything is appended: is the database's log the one this
    // gateway signed? If not, serve anyway (so /readyz can say why) but
    // sign nothing and decide nothing.
    if let Some(why) = engine
        .check_witness()
        .await
        .context("cannot check the ledger against its witness file")?
    {
        eprintln!(
            "signoff: the ledger is NOT trusted: {why}\n  \
             no checkpoint will be signed and every decision is refused (503) until an operator \
             restores the database, the key or the witness file, or runs `signoff ledger reset-witness`"
        );
    }
    engine
        .record_policy_active("system:serve")
        .await
        .context("cannot record the active policy set")?;
    let info = engine.policy_info();
    tracing::info!(
        target: signoff_engine::oplog::TARGET,
        event = "policy_set_active",
        policy_set = short(&info.hash),
        policies = info.policy_ids.len(),
        catalog_entries = info.catalog_entries,
        "policy set active"
    );
    if let Some(setup) = &dev_setup {
        crate::dev::ensure_principals(&engine, setup).await?;
    }
    let addr = listener.local_addr()?;
    let url = format!("http://{addr}");
    match &dev_setup {
        Some(setup) => crate::dev::print_banner(setup, &url, &engine),
        None => {
            println!("signoff listening on {url}");
            println!("  database  {}", signoff_store::redact(&config.database));
            let info = engine.policy_info();
            println!(
                "  policies  {} ({} policies, {} catalog entries, set {})",
                config.policies.display(),
                info.policy_ids.len(),
                info.catalog_entries,
                short(&info.hash)
            );
            for w in &info.warnings {
                println!("  {w}");
            }
        }
    }
    tracing::info!(event = "listening", %url, "listening");
    spawn_reload_on_sighup(engine.clone());
    let mut components = config
        .components
        .build(engine.store_is_shared())
        .context("invalid [components] configuration")?;
    components.extend(crate::witness::component(&config)?);
    let options = signoff_server::ServerOptions {
        metrics_token: config.metrics_token.clone(),
    };
    signoff_server::serve_with(engine, listener, components, options, shutdown_signal())
        .await
        .context("server failed")?;
    tracing::info!(event = "stopped", "stopped");
    Ok(0)
}

fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}

async fn bind(address: &str) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address}"))
}

/// The log on stderr: `SIGNOFF_LOG` filters it (default `info,sqlx=warn`);
/// text is coloured only when stderr is a terminal and `NO_COLOR` is unset,
/// so a redirected log holds no escape codes.
fn init_tracing(format: LogFormat) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("SIGNOFF_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
            .try_init(),
    };
}

/// Resolves on ctrl-c or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// `kill -HUP` reloads the policy directory; a bad set is rejected, logged
/// and recorded, and the old one stays active.
fn spawn_reload_on_sighup(engine: Arc<Engine>) {
    #[cfg(unix)]
    tokio::spawn(async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            return;
        };
        while hup.recv().await.is_some() {
            // the engine logs the reload and a rejected set itself
            match engine.reload_policies(Operator::Console).await {
                Ok(_) | Err(signoff_engine::EngineError::Policy(_)) => {}
                Err(e) => {
                    tracing::error!(error = %e, "policy reload failed; previous policy set stays active")
                }
            }
        }
    });
}

/// Applies `--attr KEY=VALUE` flags to `base`, naming the bad one.
fn parse_attrs(
    kind: PrincipalKind,
    mut base: signoff_core::PrincipalAttributes,
    attrs: &[String],
) -> Result<signoff_core::PrincipalAttributes> {
    for a in attrs {
        base.apply(kind, a)
            .map_err(|e| anyhow::anyhow!("--attr {a}: {e}"))?;
    }
    Ok(base)
}

pub async fn principal(cmd: PrincipalCmd) -> Result<i32> {
    match cmd {
        PrincipalCmd::Add(add) => {
            let (config, new) = match add {
                AddCmd::Agent {
                    name,
                    owner,
                    groups,
                    gate,
                    attrs,
                    config,
                } => (
                    config,
                    NewPrincipal {
                        kind: PrincipalKind::Agent,
                        name,
                        role: None,
                        email: None,
                        groups,
                        owner,
                        gate,
                        attributes: parse_attrs(PrincipalKind::Agent, Default::default(), &attrs)?,
                    },
                ),
                AddCmd::User {
                    name,
                    email,
                    groups,
                    role,
                    attrs,
                    config,
                } => {
                    let role = role.parse().map_err(anyhow::Error::msg)?;
                    (
                        config,
                        NewPrincipal {
                            kind: PrincipalKind::User,
                            name,
                            role: Some(role),
                            email,
                            groups,
                            owner: None,
                            gate: None,
                            attributes: parse_attrs(
                                PrincipalKind::User,
                                Default::default(),
                                &attrs,
                            )?,
                        },
                    )
                }
            };
            let engine = engine(&Config::load(&config)?).await?;
            let (_, _, token) = engine.add_principal(Operator::Console, new).await?;
            println!("{token}");
            Ok(0)
        }
        PrincipalCmd::Ls { config, json } => {
            let engine = engine(&Config::load(&config)?).await?;
            let list = engine.list_principals(Operator::Console).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                print!("{}", crate::output::principals_table(&list));
            }
            Ok(0)
        }
        PrincipalCmd::Revoke { name, config } => {
            let engine = engine(&Config::load(&config)?).await?;
            engine.revoke_principal(Operator::Console, &name).await?;
            eprintln!("revoked {name}");
            Ok(0)
        }
        PrincipalCmd::Attrs {
            name,
            attrs,
            config,
        } => {
            let engine = engine(&Config::load(&config)?).await?;
            let mut principal = engine.principal(Operator::Console, &name).await?;
            if !attrs.is_empty() {
                let updated = parse_attrs(principal.kind, principal.attributes.clone(), &attrs)?;
                principal = engine
                    .set_principal_attributes(Operator::Console, &name, updated)
                    .await?;
            }
            println!("{}", serde_json::to_string_pretty(&principal.attributes)?);
            Ok(0)
        }
        PrincipalCmd::Credential(cmd) => credential(cmd).await,
        PrincipalCmd::Link(args) => {
            let engine = engine(&Config::load(&args.config)?).await?;
            let identity = engine
                .link_identity(
                    Operator::Console,
                    &args.name,
                    &args.issuer,
                    &args.subject,
                    &args.verified_by,
                )
                .await?;
            eprintln!(
                "linked {} {} to {} (verified by {})",
                identity.issuer, identity.subject, identity.principal, identity.verified_by
            );
            Ok(0)
        }
        PrincipalCmd::Identities { name, config } => {
            let engine = engine(&Config::load(&config)?).await?;
            let list = engine.list_identities(Operator::Console, &name).await?;
            println!("{}", serde_json::to_string_pretty(&list)?);
            Ok(0)
        }
    }
}

/// `signoff principal credential …`.
#[derive(Debug, clap::Subcommand)]
pub enum CredentialCmd {
    /// Issue another credential; prints its token as the only line on stdout.
    Add {
        /// The principal.
        principal: String,
        /// A name for it, unique per principal (e.g. `ci-runner-3`).
        name: String,
        /// Bind it to one gate (exec, mcp, http, postgres, api).
        #[arg(long)]
        gate: Option<String>,
        /// Lifetime, e.g. `30d`, `12h` (default: no expiry).
        #[arg(long)]
        expires_in: Option<String>,
        /// Config file.
        #[arg(long)]
        config: PathBuf,
    },
    /// List a principal's credentials (never their secrets).
    Ls {
        /// The principal.
        principal: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Config file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Revoke one credential (by id or name); the others keep working.
    Revoke {
        /// The principal.
        principal: String,
        /// The credential's id or name.
        credential: String,
        /// Config file.
        #[arg(long)]
        config: PathBuf,
    },
}

/// `signoff principal link …`.
#[derive(Debug, clap::Args)]
pub struct LinkArgs {
    /// The user.
    pub name: String,
    /// OIDC issuer URL, `slack:TEAM_ID` or `teams:TENANT_ID`.
    #[arg(long)]
    pub issuer: String,
    /// The subject's stable id at that issuer.
    #[arg(long)]
    pub subject: String,
    /// How the link was verified.
    #[arg(long, default_value = "admin")]
    pub verified_by: String,
    /// Config file.
    #[arg(long)]
    pub config: PathBuf,
}

async fn credential(cmd: CredentialCmd) -> Result<i32> {
    match cmd {
        CredentialCmd::Add {
            principal,
            name,
            gate,
            expires_in,
            config,
        } => {
            let expires_in = expires_in
                .map(|t| {
                    t.trim().parse::<jiff::SignedDuration>().map_err(|e| {
                        anyhow::anyhow!("--expires-in `{t}` is not a duration like `30d`: {e}")
                    })
                })
                .transpose()?;
            let engine = engine(&Config::load(&config)?).await?;
            let (_, token) = engine
                .add_credential(
                    Operator::Console,
                    &principal,
                    signoff_engine::identity::NewCredential {
                        name,
                        gate,
                        expires_in,
                    },
                )
                .await?;
            println!("{token}");
            Ok(0)
        }
        CredentialCmd::Ls {
            principal,
            json,
            config,
        } => {
            let engine = engine(&Config::load(&config)?).await?;
            let list = engine
                .list_credentials(Operator::Console, &principal)
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                print!("{}", credentials_table(&list));
            }
            Ok(0)
        }
        CredentialCmd::Revoke {
            principal,
            credential,
            config,
        } => {
            let engine = engine(&Config::load(&config)?).await?;
            let revoked = engine
                .revoke_credential(Operator::Console, &principal, &credential)
                .await?;
            eprintln!(
                "revoked credential {} ({}) of {principal}",
                revoked.name, revoked.id
            );
            Ok(0)
        }
    }
}

fn credentials_table(list: &[signoff_core::Credential]) -> String {
    let day = |t: Option<jiff::Timestamp>| {
        t.map(|t| t.strftime("%Y-%m-%d %H:%M").to_string())
            .unwrap_or_else(|| "-".into())
    };
    let rows: Vec<[String; 6]> = list
        .iter()
        .map(|c| {
            [
                c.id.clone(),
                c.name.clone(),
                c.gate.clone().unwrap_or_else(|| "-".into()),
                day(c.expires_at),
                day(c.last_used_at),
                if c.revoked_at.is_some() {
                    "revoked".into()
                } else {
                    "active".into()
                },
            ]
        })
        .collect();
    let header = ["ID", "NAME", "GATE", "EXPIRES", "LAST USED", "STATUS"];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(header.map(str::to_owned)).chain(rows) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}
