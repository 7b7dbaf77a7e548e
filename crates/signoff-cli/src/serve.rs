//! `signoff serve` and `signoff principal …`: the commands that own the
//! database, as opposed to talking to a running gateway.

use crate::config::Config;
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
    let store = signoff_store::open(&config.database)
        .await
        .with_context(|| {
            format!(
                "cannot open database {}",
                signoff_store::redact(&config.database)
            )
        })?;
    let engine = Engine::start(
        store,
        Arc::new(SystemClock),
        EngineConfig {
            ledger_key: Some(Arc::new(signoff_engine::ledger::load_or_create_key(
                &config.ledger_key,
                &config.ledger_origin,
            )?)),
            policy_dir: config.policies.clone(),
            deadlines: config.deadlines()?,
        },
    )
    .await
    .with_context(|| format!("cannot load policies from {}", config.policies.display()))?;
    Ok(engine)
}

pub async fn run(config_path: Option<PathBuf>, dev: bool, listen: Option<String>) -> Result<i32> {
    init_tracing();
    let (mut config, dev_setup) = if dev {
        let setup = crate::dev::prepare()?;
        (setup.config.clone(), Some(setup))
    } else {
        let path = config_path.context("--config FILE is required (or use --dev)")?;
        (Config::load(&path)?, None)
    };
    if let Some(l) = listen {
        config.listen = l;
    }
    let engine = engine(&config).await?;
    engine
        .record_policy_active("system:serve")
        .await
        .context("cannot record the active policy set")?;
    if let Some(setup) = &dev_setup {
        crate::dev::ensure_principals(&engine, setup).await?;
    }
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    let url = format!("http://{addr}");
    match &dev_setup {
        Some(setup) => crate::dev::print_banner(setup, &url, &engine),
        None => {
            println!("signoff listening on {url}");
            println!("  database  {}", signoff_store::redact(&config.database));
            println!(
                "  policies  {} ({} policies, set {})",
                config.policies.display(),
                engine.policy_info().policy_ids.len(),
                short(&engine.policy_info().hash)
            );
        }
    }
    tracing::info!(%url, "listening");
    spawn_reload_on_sighup(engine.clone());
    signoff_server::serve(engine, listener, shutdown_signal())
        .await
        .context("server failed")?;
    tracing::info!("stopped");
    Ok(0)
}

fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SIGNOFF_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

async fn shutdown_signal() {
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
            match engine.reload_policies("system:sighup").await {
                Ok(info) => {
                    tracing::info!(hash = %info.hash, policies = info.policy_ids.len(), "policies reloaded")
                }
                Err(e) => {
                    tracing::error!(error = %e, "policy reload rejected; previous policy set stays active")
                }
            }
        }
    });
}

pub async fn principal(cmd: PrincipalCmd) -> Result<i32> {
    match cmd {
        PrincipalCmd::Add(add) => {
            let (config, new) = match add {
                AddCmd::Agent {
                    name,
                    owner,
                    groups,
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
                    },
                ),
                AddCmd::User {
                    name,
                    email,
                    groups,
                    role,
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
                        },
                    )
                }
            };
            let engine = engine(&Config::load(&config)?).await?;
            let (_, token) = engine.add_principal(Operator::Console, new).await?;
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
    }
}
