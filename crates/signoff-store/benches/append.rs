//! Group commit versus the raw insert rate of the same SQLite file system.
//!
//! (a) `raw_insert`: plain sqlx inserts of rows the size of a commit (request
//!     body + event) into a scratch table, 256 per transaction, WAL,
//!     `synchronous = FULL` — the best a batching writer can do.
//! (b) `store_commit`: durable `Store::commit` of one InsertRequest plus one
//!     event each, from 64 concurrent submitters.
//!
//! Run with `cargo bench -p signoff-store --bench append`; the last lines
//! print both rates and their ratio (target: (b) ≥ 50% of (a)). With
//! `SIGNOFF_BENCH_PG=postgres://…/db` it also measures (b) on PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use criterion::{Criterion, Throughput};
use signoff_core::{
    ActionRequest, AuditEvent, Deadlines, Decision, RequestRecord, Submission, Verdict,
};
use signoff_store::{Change, Commit, Store};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{Connection, SqliteConnection};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BATCH: u64 = 256;
const SUBMITTERS: u64 = 64;

/// Total units and time over all samples, for the summary.
#[derive(Default)]
struct Tally {
    units: u64,
    time: Duration,
}

impl Tally {
    fn rate(&self) -> f64 {
        self.units as f64 / self.time.as_secs_f64()
    }
}

fn template() -> (RequestRecord, AuditEvent) {
    let action = ActionRequest {
        action: "db.export".into(),
        resource: "postgres://warehouse/customers".into(),
        environment: Some("prod".into()),
        context: serde_json::json!({"rows": 50000, "columns": ["id", "email", "country"], "format": "csv"})
            .as_object()
            .cloned()
            .unwrap(),
        justification: Some("quarterly revenue report for finance".into()),
        principal: "agent:etl".parse().unwrap(),
        on_behalf_of: Some("carol".into()),
    };
    let verdict = Verdict {
        decision: Decision::ApprovalRequired,
        policy_ids: vec!["export-needs-approval".into()],
        policy_set_hash: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
        requirement: Some("sre:2,security".parse().unwrap()),
        ttl_seconds: Some(1800),
        reasons: vec!["exports of customer data need two SREs and security".into()],
        errors: vec![],
    };
    let now = jiff::Timestamp::from_millisecond(jiff::Timestamp::now().as_millisecond()).unwrap();
    RequestRecord::submit(
        Submission {
            id: "01JTEMPLATE".into(),
            action,
            gate: Some("exec".into()),
            claimed_gate: None,
            principal_owner: Some("olga".into()),
            principal_created_by: None,
            verdict,
            idempotency_key: None,
            facts: None,
        },
        now,
        Deadlines::default(),
    )
}

fn bench_raw(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    dir: &std::path::Path,
    tally: &Mutex<Tally>,
) {
    let (record, event) = template();
    let payload = format!(
        "{}{}",
        serde_json::to_string(&record).unwrap(),
        serde_json::to_string(&event).unwrap()
    );
    let mut conn = rt.block_on(async {
        let opts = SqliteConnectOptions::new()
            .filename(dir.join("raw.db"))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full);
        let mut conn = SqliteConnection::connect_with(&opts).await.unwrap();
        sqlx::query(
            "CREATE TABLE scratch (id TEXT PRIMARY KEY, status TEXT, action TEXT, resource TEXT, \
             principal TEXT, created_at INTEGER, expires_at INTEGER, version INTEGER, body TEXT)",
        )
        .execute(&mut conn)
        .await
        .unwrap();
        conn
    });
    let seq = AtomicU64::new(0);
    let mut group = c.benchmark_group("append");
    group.throughput(Throughput::Elements(1));
    group.bench_function("raw_insert_batch256", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                let mut done = 0;
                while done < iters {
                    let n = BATCH.min(iters - done);
                    let mut tx = conn.begin().await.unwrap();
                    for _ in 0..n {
                        let id = format!("01J{:023}", seq.fetch_add(1, Ordering::Relaxed));
                        sqlx::query("INSERT INTO scratch VALUES ($1, 'pending', 'db.export', 'customers', 'agent:etl', $2, $3, 0, $4)")
                            .bind(id)
                            .bind(1_i64)
                            .bind(2_i64)
                            .bind(&payload)
                            .execute(&mut *tx)
                            .await
                            .unwrap();
                    }
                    tx.commit().await.unwrap();
                    done += n;
                }
                let elapsed = start.elapsed();
                let mut t = tally.lock().unwrap();
                t.units += iters;
                t.time += elapsed;
                elapsed
            })
        })
    });
    group.finish();
}

fn bench_store(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    name: &str,
    url: &str,
    tally: &Mutex<Tally>,
) {
    let store: Arc<dyn Store> = rt.block_on(signoff_store::open(url)).unwrap();
    let (record, event) = template();
    let seq = Arc::new(AtomicU64::new(0));
    let mut group = c.benchmark_group("append");
    group.throughput(Throughput::Elements(1));
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let left = Arc::new(AtomicU64::new(iters));
                let start = Instant::now();
                let tasks: Vec<_> = (0..SUBMITTERS)
                    .map(|_| {
                        let (store, left, seq) = (store.clone(), left.clone(), seq.clone());
                        let (record, event) = (record.clone(), event.clone());
                        tokio::spawn(async move {
                            while left
                                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                                    n.checked_sub(1)
                                })
                                .is_ok()
                            {
                                let mut r = record.clone();
                                r.id = format!("01J{:023}", seq.fetch_add(1, Ordering::Relaxed));
                                let mut e = event.clone();
                                e.request_id = Some(r.id.clone());
                                store
                                    .commit(Commit {
                                        changes: vec![Change::InsertRequest(r)],
                                        events: vec![e],
                                    })
                                    .await
                                    .unwrap();
                            }
                        })
                    })
                    .collect();
                for t in tasks {
                    t.await.unwrap();
                }
                let elapsed = start.elapsed();
                let mut t = tally.lock().unwrap();
                t.units += iters;
                t.time += elapsed;
                elapsed
            })
        })
    });
    group.finish();
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    // The build's scratch directory is on the same file system as the
    // target dir, unlike /tmp which may be tmpfs: fsync must be real.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .configure_from_args();
    let raw = Mutex::new(Tally::default());
    let store = Mutex::new(Tally::default());
    bench_raw(&mut c, &rt, dir.path(), &raw);
    let url = format!("sqlite://{}", dir.path().join("store.db").display());
    bench_store(&mut c, &rt, "store_commit_64_submitters", &url, &store);
    // Optionally the same against PostgreSQL, in a scratch database created
    // next to the one SIGNOFF_BENCH_PG names.
    let pg = std::env::var("SIGNOFF_BENCH_PG").ok().map(|admin| {
        let name = format!("signoff_bench_{}", std::process::id());
        rt.block_on(pg_admin(&admin, &format!("CREATE DATABASE {name}")));
        let tally = Mutex::new(Tally::default());
        let base = &admin[..admin.rfind('/').unwrap()];
        bench_store(
            &mut c,
            &rt,
            "pg_store_commit_64_submitters",
            &format!("{base}/{name}"),
            &tally,
        );
        rt.block_on(pg_admin(
            &admin,
            &format!("DROP DATABASE {name} WITH (FORCE)"),
        ));
        tally.into_inner().unwrap()
    });
    c.final_summary();
    let (raw, store) = (raw.into_inner().unwrap(), store.into_inner().unwrap());
    if raw.units > 0 && store.units > 0 {
        println!(
            "\nsummary: (a) raw batched inserts {:.0} rows/s, (b) store.commit {:.0} commits/s, (b)/(a) = {:.0}%",
            raw.rate(),
            store.rate(),
            100.0 * store.rate() / raw.rate()
        );
    }
    if let Some(pg) = pg {
        println!("postgres: store.commit {:.0} commits/s", pg.rate());
    }
}

async fn pg_admin(url: &str, sql: &str) {
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::query(sql).execute(&mut conn).await.unwrap();
}
