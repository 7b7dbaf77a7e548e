//! `signoff-load`: a load generator for auto-allowed decisions over HTTP.
//!
//! By default it hosts its own gateway in-process (temp SQLite database, an
//! allow-everything policy, one agent) so one command measures the full path:
//! HTTP, authentication, policy evaluation, and the durable (fsync'd) write
//! of the request and its audit event. Point it at a running gateway with
//! `--url` and `--token` instead.
//!
//! ```text
//! cargo run --release --bin signoff-load -- --duration 10s --concurrency 32
//! ```

use anyhow::{Context, Result};
use clap::Parser;
use signoff_core::wire::{NewPrincipal, SubmitRequest};
use signoff_core::{PrincipalKind, SystemClock};
use signoff_engine::principals::Operator;
use signoff_engine::{Engine, EngineConfig};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Load generator for auto-allowed decisions.
#[derive(Debug, Parser)]
struct Args {
    /// Gateway URL; when absent, an in-process gateway is started.
    #[arg(long)]
    url: Option<String>,
    /// Agent token for --url.
    #[arg(long, env = "SIGNOFF_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// For the in-process gateway: `sqlite` (temp file) or a postgres:// URL.
    #[arg(long, default_value = "sqlite")]
    database: String,
    /// Concurrent clients (connections).
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// How long to send (after a 1 s warm-up).
    #[arg(long, default_value = "10s")]
    duration: String,
    /// Action to request (the in-process policy allows everything).
    #[arg(long, default_value = "db.read")]
    action: String,
    /// Before measuring, append this many audit events to the in-process
    /// gateway's ledger (to show latency does not grow with ledger size).
    #[arg(long, default_value_t = 0)]
    prefill: u64,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(args))
}

async fn run(args: Args) -> Result<()> {
    let duration: jiff::SignedDuration = args.duration.parse().context("invalid --duration")?;
    let duration = duration.unsigned_abs();
    let _tmp;
    let (url, token) = match (&args.url, &args.token) {
        (Some(u), Some(t)) => (u.clone(), t.clone()),
        (Some(_), None) => anyhow::bail!("--url needs --token (or SIGNOFF_TOKEN)"),
        _ => {
            let dir = tempfile::tempdir()?;
            let (url, token) = host(dir.path(), &args.database, args.prefill).await?;
            _tmp = dir;
            (url, token)
        }
    };
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    let body = serde_json::to_vec(&SubmitRequest {
        action: args.action.clone(),
        resource: "load/customers".into(),
        environment: Some("prod".into()),
        justification: Some("load test".into()),
        ..Default::default()
    })?;
    let endpoint = format!("{}/v1/requests", url.trim_end_matches('/'));

    let warmup_end = Instant::now() + Duration::from_secs(1);
    let end = warmup_end + duration;
    let mut workers = Vec::new();
    for _ in 0..args.concurrency {
        let (http, endpoint, token, body) =
            (http.clone(), endpoint.clone(), token.clone(), body.clone());
        workers.push(tokio::spawn(async move {
            let mut latencies: Vec<u32> = Vec::with_capacity(100_000);
            let mut errors = 0u64;
            loop {
                let start = Instant::now();
                if start >= end {
                    break;
                }
                let resp = http
                    .post(&endpoint)
                    .bearer_auth(&token)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await;
                let ok = match resp {
                    Ok(r) => r.status().as_u16() == 201 && r.bytes().await.is_ok(),
                    Err(_) => false,
                };
                if start >= warmup_end {
                    if ok {
                        latencies.push(start.elapsed().as_micros().min(u32::MAX as u128) as u32);
                    } else {
                        errors += 1;
                    }
                }
            }
            (latencies, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for w in workers {
        let (l, e) = w.await?;
        all.extend(l);
        errors += e;
    }
    all.sort_unstable();
    let pct = |p: f64| -> f64 {
        if all.is_empty() {
            return 0.0;
        }
        let i = ((all.len() as f64 * p).ceil() as usize).clamp(1, all.len()) - 1;
        all[i] as f64 / 1000.0
    };
    let rps = all.len() as f64 / duration.as_secs_f64();
    let result = serde_json::json!({
        "requests": all.len(),
        "errors": errors,
        "concurrency": args.concurrency,
        "duration_s": duration.as_secs_f64(),
        "throughput_rps": rps.round(),
        "p50_ms": pct(0.50),
        "p90_ms": pct(0.90),
        "p99_ms": pct(0.99),
        "max_ms": all.last().map(|m| *m as f64 / 1000.0).unwrap_or(0.0),
    });
    if args.json {
        println!("{result}");
    } else {
        println!(
            "{} auto-allowed decisions in {:.1}s with {} clients: {:.0}/s; p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms, max {:.3} ms; {} errors",
            all.len(),
            duration.as_secs_f64(),
            args.concurrency,
            rps,
            pct(0.5),
            pct(0.9),
            pct(0.99),
            result["max_ms"],
            errors
        );
    }
    Ok(())
}

/// Starts an in-process gateway with an allow-all policy and one agent.
async fn host(dir: &std::path::Path, database: &str, prefill: u64) -> Result<(String, String)> {
    let policies = dir.join("policies");
    std::fs::create_dir_all(&policies)?;
    std::fs::write(
        policies.join("allow.cedar"),
        "@id(\"allow-all\")\npermit(principal, action, resource);\n",
    )?;
    let url = if database == "sqlite" {
        format!("sqlite://{}", dir.join("load.db").display())
    } else {
        database.to_owned()
    };
    let store = signoff_store::open(&url).await?;
    let engine = Engine::start(
        store.clone(),
        Arc::new(SystemClock),
        EngineConfig {
            policy_dir: policies,
            deadlines: Default::default(),
            ledger_key: Some(Arc::new(signoff_engine::ledger::load_or_create_key(
                &dir.join("ledger.key"),
                "load.signoff/ledger",
            )?)),
        },
    )
    .await?;
    let name = format!("load-{}", ulid::Ulid::new().to_string().to_lowercase());
    let (_, _, token) = engine
        .add_principal(
            Operator::Console,
            NewPrincipal {
                kind: PrincipalKind::Agent,
                name,
                role: None,
                email: None,
                groups: vec![],
                owner: None,
                gate: None,
            },
        )
        .await?;
    if prefill > 0 {
        let started = Instant::now();
        let mut done = 0u64;
        let mut pending = Vec::new();
        while done < prefill {
            let n = (prefill - done).min(1000);
            let events = (0..n)
                .map(|i| {
                    signoff_core::AuditEvent::new(
                        signoff_core::EventKind::RequestSubmitted,
                        engine.now(),
                        "agent:prefill",
                    )
                    .with_reason(format!("prefill {}", done + i))
                })
                .collect();
            let store = store.clone();
            pending.push(tokio::spawn(async move {
                store
                    .commit(signoff_store::Commit {
                        changes: vec![],
                        events,
                    })
                    .await
            }));
            done += n;
            if pending.len() >= 16 {
                for p in pending.drain(..) {
                    p.await??;
                }
            }
        }
        for p in pending.drain(..) {
            p.await??;
        }
        eprintln!(
            "prefilled {prefill} ledger entries in {:.1}s",
            started.elapsed().as_secs_f64()
        );
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let components =
        signoff_engine::components::ComponentsConfig::default().build(engine.store_is_shared())?;
    tokio::spawn(signoff_server::serve(
        engine,
        listener,
        components,
        std::future::pending(),
    ));
    Ok((format!("http://{addr}"), token))
}
