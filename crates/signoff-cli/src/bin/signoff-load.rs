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
//! cargo run --release --bin signoff-load -- --floor --duration 10s --concurrency 1
//! ```
//!
//! `--floor` first measures what the disk under the database allows (see
//! [`floor`]): a durable decision cannot be faster than one synchronous
//! write, so latencies are also reported as a multiple of it. Disk latency
//! on shared machines drifts by several times within minutes, so the floor
//! is measured in the same run and directory as the load.

use anyhow::{Context, Result};
use clap::Parser;
use signoff_core::wire::{NewPrincipal, SubmitRequest};
use signoff_core::{PrincipalKind, SystemClock};
use signoff_engine::principals::Operator;
use signoff_engine::{Engine, EngineConfig};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// mimalloc: fewer instructions and less lock traffic than glibc's malloc for
/// the many small, cross-thread allocations of a decision.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Measure the durable-write floor of the database's disk first (dd,
    /// fdatasync, raw SQLite commits) and report latencies against it.
    #[arg(long)]
    floor: bool,
    /// Send a fresh `Idempotency-Key` with every request, as `signoff exec`
    /// does (the gateway then looks the key up before deciding).
    #[arg(long)]
    idempotency: bool,
    /// Only measure the floor; send no load.
    #[arg(long)]
    floor_only: bool,
    /// Policy directory for the in-process gateway (with its
    /// catalog.toml, if any) instead of the allow-everything policy; it
    /// must allow `--action` on `--resource` for the agent.
    #[arg(long)]
    policies: Option<std::path::PathBuf>,
    /// Resource to request.
    #[arg(long, default_value = "load/customers")]
    resource: String,
    /// Registered attribute KEY=VALUE of the in-process agent (repeatable),
    /// e.g. environments=staging.
    #[arg(long = "attr", value_name = "KEY=VALUE")]
    attrs: Vec<String>,
    /// Directory for the in-process gateway's database and the floor's
    /// scratch files (a fresh temporary directory inside it).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
    /// The HTTP client that sends the load: `raw` (default), one
    /// keep-alive HTTP/1.1 connection per client writing prepared bytes, as
    /// wrk does, so the generator's own CPU stays small next to the
    /// gateway's on a small machine; or `reqwest`, the client the gates
    /// use (http or https).
    #[arg(long, default_value = "raw", value_parser = ["raw", "reqwest"])]
    client: String,
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
    let tmp = match &args.dir {
        Some(d) => tempfile::tempdir_in(d)?,
        None => tempfile::tempdir()?,
    };
    let floor = if args.floor || args.floor_only {
        let dir = tmp.path().join("floor");
        let f = tokio::task::spawn_blocking(move || floor::measure(&dir)).await??;
        if args.floor_only {
            if args.json {
                println!("{}", f.json());
            } else {
                println!("{f}");
            }
            return Ok(());
        }
        if !args.json {
            println!("{f}");
        }
        Some(f)
    } else {
        None
    };
    let (url, token) = match (&args.url, &args.token) {
        (Some(u), Some(t)) => (u.clone(), t.clone()),
        (Some(_), None) => anyhow::bail!("--url needs --token (or SIGNOFF_TOKEN)"),
        _ => host(tmp.path(), &args, args.prefill).await?,
    };
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    let body = serde_json::to_vec(&SubmitRequest {
        action: args.action.clone(),
        resource: args.resource.clone(),
        environment: Some("prod".into()),
        justification: Some("load test".into()),
        ..Default::default()
    })?;
    let endpoint = format!("{}/v1/requests", url.trim_end_matches('/'));

    let warmup_end = Instant::now() + Duration::from_secs(1);
    let end = warmup_end + duration;
    let mut workers = Vec::new();
    let idempotency = args.idempotency;
    let raw = match args.client.as_str() {
        "raw" => Some(raw::Target::parse(&endpoint, &token, &body)?),
        _ => None,
    };
    for _ in 0..args.concurrency {
        if let Some(target) = &raw {
            let target = target.clone();
            workers.push(tokio::spawn(async move {
                raw::worker(target, idempotency, warmup_end, end).await
            }));
            continue;
        }
        let (http, endpoint, token, body) =
            (http.clone(), endpoint.clone(), token.clone(), body.clone());
        workers.push(tokio::spawn(async move {
            let mut tally = Tally::new();
            loop {
                let start = Instant::now();
                if start >= end {
                    break;
                }
                let mut req = http
                    .post(&endpoint)
                    .bearer_auth(&token)
                    .header("content-type", "application/json")
                    .body(body.clone());
                if idempotency {
                    req = req.header("idempotency-key", ulid::Ulid::new().to_string());
                }
                let resp = req.send().await;
                let ok = match resp {
                    // Only an allowed decision counts: a policy directory
                    // that denies would otherwise be measured as fast.
                    Ok(r) if r.status().as_u16() == 201 => r
                        .bytes()
                        .await
                        .is_ok_and(|b| contains(&b, br#""decision":"allow""#)),
                    Ok(_) => false,
                    Err(_) => false,
                };
                tally.record(start, warmup_end, ok);
            }
            tally
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for w in workers {
        let tally = w.await?;
        all.extend(tally.latencies);
        errors += tally.errors;
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
    let mut result = serde_json::json!({
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
    if let Some(f) = &floor {
        let base = f.sqlite_commit.p50_ms;
        result["floor"] = f.json();
        result["p50_over_floor"] = serde_json::json!(ratio(pct(0.50), base));
        result["p99_over_floor"] = serde_json::json!(ratio(pct(0.99), base));
    }
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
        if let Some(f) = &floor {
            println!(
                "over the floor (raw SQLite commit p50 {:.3} ms): p50 x{:.2}, p99 x{:.2}",
                f.sqlite_commit.p50_ms,
                ratio(pct(0.5), f.sqlite_commit.p50_ms),
                ratio(pct(0.99), f.sqlite_commit.p50_ms),
            );
        }
    }
    Ok(())
}

/// What one load client saw.
struct Tally {
    /// Latencies (µs) of allowed decisions sent after the warm-up.
    latencies: Vec<u32>,
    /// Anything else sent after the warm-up.
    errors: u64,
}

impl Tally {
    /// Sized for a typical run, so the measured loop does not reallocate.
    fn new() -> Tally {
        Tally {
            latencies: Vec::with_capacity(100_000),
            errors: 0,
        }
    }

    fn record(&mut self, start: Instant, warmup_end: Instant, allowed: bool) {
        if start < warmup_end {
            return;
        }
        if allowed {
            let micros = start.elapsed().as_micros();
            self.latencies
                .push(u32::try_from(micros).unwrap_or(u32::MAX));
        } else {
            self.errors += 1;
        }
    }
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        (a / b * 100.0).round() / 100.0
    } else {
        0.0
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A minimal HTTP/1.1 keep-alive client for plain `http://` gateways: the
/// request is prepared once, each response is read up to its
/// `Content-Length` and only its status and decision are looked at.
mod raw {
    use super::{contains, Tally};
    use anyhow::{bail, Context, Result};
    use std::sync::Arc;
    use std::time::Instant;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    /// Where to send what.
    #[derive(Clone)]
    pub struct Target {
        addr: String,
        /// The request head up to the headers that change per request.
        head: Arc<Vec<u8>>,
        body: Arc<Vec<u8>>,
    }

    impl Target {
        pub fn parse(endpoint: &str, token: &str, body: &[u8]) -> Result<Target> {
            let Some(rest) = endpoint.strip_prefix("http://") else {
                bail!("--client raw speaks plain http only; use --client reqwest for {endpoint}");
            };
            let (addr, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let head = format!(
                "POST {path} HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {token}\r\n\
                 content-type: application/json\r\ncontent-length: {}\r\n",
                body.len()
            );
            Ok(Target {
                addr: addr.to_owned(),
                head: Arc::new(head.into_bytes()),
                body: Arc::new(body.to_vec()),
            })
        }
    }

    /// Sends until `end`; returns the latencies (µs) of allowed decisions
    /// after `warmup_end` and the count of anything else.
    pub async fn worker(
        target: Target,
        idempotency: bool,
        warmup_end: Instant,
        end: Instant,
    ) -> Tally {
        let mut tally = Tally::new();
        let mut conn: Option<TcpStream> = None;
        let mut request = Vec::with_capacity(1024);
        let mut buf = Vec::with_capacity(8192);
        loop {
            let start = Instant::now();
            if start >= end {
                break;
            }
            request.clear();
            request.extend_from_slice(&target.head);
            if idempotency {
                request.extend_from_slice(b"idempotency-key: ");
                request.extend_from_slice(ulid::Ulid::new().to_string().as_bytes());
                request.extend_from_slice(b"\r\n");
            }
            request.extend_from_slice(b"\r\n");
            request.extend_from_slice(&target.body);
            let ok = match exchange(&mut conn, &target.addr, &request, &mut buf).await {
                Ok(status) => status == 201 && contains(&buf, br#""decision":"allow""#),
                Err(_) => {
                    conn = None;
                    false
                }
            };
            tally.record(start, warmup_end, ok);
        }
        tally
    }

    /// One request and its response (body left in `buf`); returns the status.
    async fn exchange(
        conn: &mut Option<TcpStream>,
        addr: &str,
        request: &[u8],
        buf: &mut Vec<u8>,
    ) -> Result<u16> {
        let stream = match conn {
            Some(s) => s,
            None => {
                let s = TcpStream::connect(addr).await?;
                s.set_nodelay(true)?;
                conn.insert(s)
            }
        };
        stream.write_all(request).await?;
        buf.clear();
        let header_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            read_more(stream, buf).await?;
        };
        let head = std::str::from_utf8(&buf[..header_end]).context("response head")?;
        let status: u16 = head
            .get(9..12)
            .and_then(|s| s.parse().ok())
            .context("status line")?;
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())?
            })
            .context("no content-length")?;
        while buf.len() < header_end + length {
            read_more(stream, buf).await?;
        }
        buf.drain(..header_end);
        Ok(status)
    }

    /// Appends what the connection has to `buf`; a closed connection is an
    /// error (a response is still due).
    async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<()> {
        if buf.capacity() == buf.len() {
            buf.reserve(8192);
        }
        if stream.read_buf(buf).await? == 0 {
            bail!("connection closed");
        }
        Ok(())
    }
}

/// Starts an in-process gateway with an allow-all policy and one agent.
async fn host(dir: &std::path::Path, args: &Args, prefill: u64) -> Result<(String, String)> {
    let database = args.database.as_str();
    let policies = match &args.policies {
        Some(p) => p.clone(),
        None => {
            let policies = dir.join("policies");
            std::fs::create_dir_all(&policies)?;
            std::fs::write(
                policies.join("allow.cedar"),
                "@id(\"allow-all\")\npermit(principal, action, resource);\n",
            )?;
            policies
        }
    };
    let mut attributes = signoff_core::PrincipalAttributes::default();
    for a in &args.attrs {
        attributes
            .apply(PrincipalKind::Agent, a)
            .map_err(|e| anyhow::anyhow!("--attr {a}: {e}"))?;
    }
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
            witness_file: None,
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
                attributes,
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

/// The durable-write floor: what one synchronous write costs on the disk
/// under a directory, measured the ways that bound a decision.
///
/// - `dd … oflag=dsync`, 500 writes of 4 KiB, into a new file (each write
///   grows it, so the file system journals the size change) and then over
///   the same blocks again (`conv=notrunc`: data only);
/// - `fdatasync` after a 4 KiB overwrite, per call (p50 / p99);
/// - a raw SQLite commit loop on the library the store links: WAL,
///   `synchronous = FULL`, one ~1.5 KiB row per transaction (what one
///   lone decision needs at least: its WAL frames written and synced),
///   and 32 rows per transaction (what group commit can reach).
mod floor {
    use anyhow::{Context, Result};
    use std::os::unix::fs::FileExt;
    use std::path::Path;
    use std::time::{Duration, Instant};

    const WRITES: usize = 500;
    const BLOCK: usize = 4096;
    /// Commits before measuring, so the WAL has wrapped once (a running
    /// gateway overwrites its WAL; a fresh one grows it).
    const WARM_COMMITS: usize = 1200;
    const COMMITS: usize = 1000;
    const BATCH: usize = 32;
    const BATCHES: usize = 200;
    /// About the size of a request row plus its event and ledger nodes.
    const ROW_BYTES: usize = 1500;

    pub struct Stats {
        pub p50_ms: f64,
        pub p99_ms: f64,
    }

    impl Stats {
        fn of(mut v: Vec<Duration>) -> Stats {
            v.sort_unstable();
            let at = |p: f64| {
                let i = ((v.len() as f64 * p).ceil() as usize).clamp(1, v.len().max(1)) - 1;
                v.get(i).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
            };
            Stats {
                p50_ms: at(0.5),
                p99_ms: at(0.99),
            }
        }
    }

    pub struct Floor {
        /// Per write, `None` when `dd` is unavailable.
        pub dd_grow_ms: Option<f64>,
        pub dd_overwrite_ms: Option<f64>,
        pub fdatasync: Stats,
        pub sqlite_commit: Stats,
        pub sqlite_batch_commit: Stats,
        pub sqlite_batch_rows_per_s: f64,
    }

    pub fn measure(dir: &Path) -> Result<Floor> {
        std::fs::create_dir_all(dir)?;
        let file = dir.join("dd.bin");
        let dd_grow_ms = dd(&file, false);
        let dd_overwrite_ms = dd(&file, true);
        let fdatasync = fdatasync(&file)?;
        let (sqlite_commit, sqlite_batch_commit, rows) = sqlite(&dir.join("floor.db"))?;
        Ok(Floor {
            dd_grow_ms,
            dd_overwrite_ms,
            fdatasync,
            sqlite_commit,
            sqlite_batch_commit,
            sqlite_batch_rows_per_s: rows,
        })
    }

    /// Milliseconds per write of `dd bs=4k count=500 oflag=dsync` into
    /// `file`, a fresh one unless `overwrite`.
    fn dd(file: &Path, overwrite: bool) -> Option<f64> {
        if !overwrite {
            let _ = std::fs::remove_file(file);
        }
        let mut cmd = std::process::Command::new("dd");
        cmd.env("LC_ALL", "C").args([
            "if=/dev/zero".to_owned(),
            format!("of={}", file.display()),
            format!("bs={BLOCK}"),
            format!("count={WRITES}"),
            "oflag=dsync".to_owned(),
        ]);
        if overwrite {
            cmd.arg("conv=notrunc");
        }
        let out = cmd.output().ok()?;
        if !out.status.success() {
            return None;
        }
        // "2048000 bytes (2.0 MB, 2.0 MiB) copied, 1.34981 s, 1.5 MB/s"
        let text = String::from_utf8_lossy(&out.stderr);
        let secs: f64 = text
            .lines()
            .find(|l| l.contains("copied"))?
            .split(", ")
            .find_map(|part| part.strip_suffix(" s")?.parse().ok())?;
        Some(secs * 1000.0 / WRITES as f64)
    }

    /// `fdatasync` after overwriting one 4 KiB block of `file` in place.
    fn fdatasync(file: &Path) -> Result<Stats> {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(file)
            .with_context(|| format!("opening {}", file.display()))?;
        f.set_len((WRITES * BLOCK) as u64)?;
        f.sync_all()?;
        let buf = [0x5au8; BLOCK];
        let mut times = Vec::with_capacity(WRITES);
        for i in 0..WRITES {
            f.write_all_at(&buf, (i * BLOCK) as u64)?;
            let t = Instant::now();
            f.sync_data()?;
            times.push(t.elapsed());
        }
        Ok(Stats::of(times))
    }

    /// Raw commits: one row each, then `BATCH` rows each.
    fn sqlite(file: &Path) -> Result<(Stats, Stats, f64)> {
        let conn = rusqlite::Connection::open(file)?;
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        anyhow::ensure!(mode.eq_ignore_ascii_case("wal"), "journal mode is {mode}");
        conn.execute_batch(
            "PRAGMA synchronous = FULL;
             CREATE TABLE IF NOT EXISTS floor (id INTEGER PRIMARY KEY, body BLOB NOT NULL);",
        )?;
        let body = vec![0x5au8; ROW_BYTES];
        let commit = |rows: usize| -> Result<Duration> {
            let t = Instant::now();
            conn.execute_batch("BEGIN IMMEDIATE")?;
            {
                let mut insert = conn.prepare_cached("INSERT INTO floor (body) VALUES (?1)")?;
                for _ in 0..rows {
                    insert.execute([&body])?;
                }
            }
            conn.execute_batch("COMMIT")?;
            Ok(t.elapsed())
        };
        for _ in 0..WARM_COMMITS {
            commit(1)?;
        }
        let single = (0..COMMITS)
            .map(|_| commit(1))
            .collect::<Result<Vec<_>>>()?;
        let started = Instant::now();
        let batched = (0..BATCHES)
            .map(|_| commit(BATCH))
            .collect::<Result<Vec<_>>>()?;
        let rows = (BATCH * BATCHES) as f64 / started.elapsed().as_secs_f64();
        Ok((Stats::of(single), Stats::of(batched), rows))
    }

    impl Floor {
        pub fn json(&self) -> serde_json::Value {
            serde_json::json!({
                "dd_grow_ms": self.dd_grow_ms,
                "dd_overwrite_ms": self.dd_overwrite_ms,
                "fdatasync_p50_ms": self.fdatasync.p50_ms,
                "fdatasync_p99_ms": self.fdatasync.p99_ms,
                "sqlite_commit_p50_ms": self.sqlite_commit.p50_ms,
                "sqlite_commit_p99_ms": self.sqlite_commit.p99_ms,
                "sqlite_batch32_commit_p50_ms": self.sqlite_batch_commit.p50_ms,
                "sqlite_batch32_rows_per_s": self.sqlite_batch_rows_per_s.round(),
            })
        }
    }

    impl std::fmt::Display for Floor {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            let ms = |v: Option<f64>| v.map_or("n/a".to_owned(), |v| format!("{v:.3} ms"));
            write!(
                f,
                "floor: dd oflag=dsync 4 KiB {} growing / {} overwriting per write; \
                 fdatasync after a 4 KiB overwrite p50 {:.3} ms, p99 {:.3} ms; \
                 raw SQLite commit (WAL, synchronous=FULL, 1 row) p50 {:.3} ms, p99 {:.3} ms; \
                 {BATCH} rows per commit: p50 {:.3} ms, {:.0} rows/s",
                ms(self.dd_grow_ms),
                ms(self.dd_overwrite_ms),
                self.fdatasync.p50_ms,
                self.fdatasync.p99_ms,
                self.sqlite_commit.p50_ms,
                self.sqlite_commit.p99_ms,
                self.sqlite_batch_commit.p50_ms,
                self.sqlite_batch_rows_per_s,
            )
        }
    }
}
