//! The store conformance suite: every case is written once against
//! `Arc<dyn Store>` and runs on both backends.
//!
//! SQLite runs on a temporary file. PostgreSQL runs on a fresh database
//! created in the server named by `SIGNOFF_TEST_PG` (default
//! `postgres://postgres@127.0.0.1:5432/test`) and dropped afterwards; if that
//! server is unreachable the PostgreSQL cases fail rather than skip.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use jiff::Timestamp;
use serde_json::json;
use signoff_core::{
    ActionRequest, AuditEvent, Deadlines, Decision, EventKind, Principal, PrincipalKind,
    RequestRecord, RequestStatus, Role, Submission, Verdict,
};
use signoff_store::{Change, Commit, RequestFilter, Store, StoreError};
use sqlx::Connection;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------- harness

// The payloads only need to live as long as the harness.
#[allow(dead_code)]
enum Backend {
    Sqlite(tempfile::TempDir),
    Postgres(PgDatabase),
}

struct Harness {
    store: Arc<dyn Store>,
    url: String,
    backend: Backend,
}

impl Harness {
    async fn sqlite() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("signoff.db").display());
        let store = signoff_store::open(&url).await.unwrap();
        Harness {
            store,
            url,
            backend: Backend::Sqlite(dir),
        }
    }

    async fn postgres() -> Harness {
        let db = PgDatabase::create().await;
        let store = signoff_store::open(&db.url).await.unwrap();
        Harness {
            store,
            url: db.url.clone(),
            backend: Backend::Postgres(db),
        }
    }

    fn is_postgres(&self) -> bool {
        matches!(self.backend, Backend::Postgres(_))
    }

    /// Drops the store and opens the same database again.
    async fn reopen(&mut self) {
        self.store = signoff_store::open(&self.url).await.unwrap();
    }

    /// Another store on the same database, like a second replica.
    async fn another(&self) -> Arc<dyn Store> {
        signoff_store::open(&self.url).await.unwrap()
    }

    /// Runs `sql` on a raw connection, bypassing the store.
    async fn raw(&self, sql: &str) -> Result<u64, String> {
        if self.is_postgres() {
            let mut c = sqlx::PgConnection::connect(&self.url).await.unwrap();
            sqlx::query(sql)
                .execute(&mut c)
                .await
                .map(|r| r.rows_affected())
                .map_err(|e| e.to_string())
        } else {
            let mut c = sqlx::SqliteConnection::connect(&self.url).await.unwrap();
            sqlx::query(sql)
                .execute(&mut c)
                .await
                .map(|r| r.rows_affected())
                .map_err(|e| e.to_string())
        }
    }
}

fn pg_admin_url() -> String {
    std::env::var("SIGNOFF_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A database created for one test and dropped when it ends.
struct PgDatabase {
    name: String,
    url: String,
}

impl PgDatabase {
    async fn create() -> PgDatabase {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let admin = pg_admin_url();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!(
            "signoff_conf_{}_{}_{}",
            std::process::id(),
            nanos,
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let mut conn = sqlx::PgConnection::connect(&admin)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "PostgreSQL at {admin} is required for these tests (set SIGNOFF_TEST_PG): {e}"
                )
            });
        let mut attempt = 0;
        loop {
            // Concurrent CREATE DATABASE can trip over the template; retry.
            match sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut conn)
                .await
            {
                Ok(_) => break,
                Err(e) if attempt < 10 => {
                    attempt += 1;
                    eprintln!("create database {name}: {e}; retrying");
                    tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
                }
                Err(e) => panic!("create database {name}: {e}"),
            }
        }
        let (base, query) = match admin.split_once('?') {
            Some((b, q)) => (b, format!("?{q}")),
            None => (admin.as_str(), String::new()),
        };
        let prefix = &base[..base.rfind('/').unwrap()];
        let url = format!("{prefix}/{name}{query}");
        PgDatabase { name, url }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs inside the test's runtime, which cannot be blocked on.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(mut c) = sqlx::PgConnection::connect(&pg_admin_url()).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut c)
                        .await;
                }
            });
        })
        .join();
    }
}

macro_rules! suite {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let mut h = super::Harness::sqlite().await;
                    super::$case(&mut h).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let mut h = super::Harness::postgres().await;
                    super::$case(&mut h).await;
                }
            )*
        }
    };
}

suite!(
    round_trip,
    event_paging_and_truncation,
    idempotency_duplicate,
    optimistic_conflict,
    update_not_found,
    atomic_rollback,
    failed_commit_does_not_fail_neighbours,
    dense_indexes_under_concurrency,
    two_replicas_share_one_ledger,
    list_filters_and_pagination,
    due_requests_and_next_deadline,
    count_by_status,
    principals,
    audit_events_are_append_only,
    merkle_tree_follows_every_commit,
    checkpoints_are_stored_once,
    event_range_and_leaves,
    ledger_scan_encodes_the_leaves,
    reopen_keeps_data,
    bad_url_is_config_error,
    unreachable_is_unavailable,
    credentials_and_identities,
    stream_cursors_and_leases,
    active_policy_set,
    principal_attributes,
    head_follows_commits,
);

// ---------------------------------------------------------------- builders

fn t0() -> Timestamp {
    "2026-11-23T10:00:00Z".parse().unwrap()
}

fn at(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(t0().as_millisecond() + ms).unwrap()
}

fn verdict(decision: Decision) -> Verdict {
    Verdict {
        decision,
        policy_ids: vec!["p1".into(), "p2".into()],
        policy_set_hash: "abc123".into(),
        requirement: (decision == Decision::ApprovalRequired)
            .then(|| "sre:2,security".parse().unwrap()),
        ttl_seconds: Some(1800),
        reasons: vec!["because".into()],
        errors: vec![],
    }
}

fn action(name: &str, principal: &str) -> ActionRequest {
    ActionRequest {
        action: name.into(),
        resource: "customers".into(),
        environment: Some("prod".into()),
        context: json!({"rows": 5, "ratio": 0.25, "tags": ["a", "b"], "nested": {"k": null}})
            .as_object()
            .cloned()
            .unwrap(),
        justification: Some("quarterly report".into()),
        principal: principal.parse().unwrap(),
        on_behalf_of: Some("carol".into()),
    }
}

/// A request submitted at `t0 + ms`.
fn submit(
    id: &str,
    act: &str,
    principal: &str,
    decision: Decision,
    key: Option<&str>,
    ms: i64,
) -> (RequestRecord, AuditEvent) {
    RequestRecord::submit(
        Submission {
            id: id.into(),
            action: action(act, principal),
            gate: Some("exec".into()),
            claimed_gate: None,
            principal_owner: Some("olga".into()),
            principal_created_by: None,
            verdict: verdict(decision),
            idempotency_key: key.map(Into::into),
            facts: None,
        },
        at(ms),
        Deadlines::default(),
    )
}

fn pending(id: &str) -> (RequestRecord, AuditEvent) {
    submit(
        id,
        "db.export",
        "agent:etl",
        Decision::ApprovalRequired,
        None,
        0,
    )
}

/// Inserts `principal` with a `default` credential whose token hashes to `token_hash`.
fn insert_principal(principal: Principal, token_hash: &str) -> Change {
    Change::InsertPrincipal {
        credential: credential(&principal.name, "default", None),
        principal,
        token_hash: token_hash.into(),
        created_by: Some("user:carol".into()),
    }
}

fn credential(principal: &str, name: &str, gate: Option<&str>) -> signoff_core::Credential {
    signoff_core::Credential {
        id: format!("cr_{principal}_{name}"),
        principal: principal.into(),
        name: name.into(),
        gate: gate.map(str::to_owned),
        created_at: at(1),
        expires_at: None,
        revoked_at: None,
        last_used_at: None,
    }
}

fn principal(name: &str, kind: PrincipalKind) -> Principal {
    Principal {
        name: name.into(),
        kind,
        role: if kind == PrincipalKind::Agent {
            Role::Agent
        } else {
            Role::Reviewer
        },
        email: (kind == PrincipalKind::User).then(|| format!("{name}@example.com")),
        groups: if kind == PrincipalKind::User {
            vec!["sre".into(), "security".into()]
        } else {
            vec![]
        },
        owner: (kind == PrincipalKind::Agent).then(|| "olga".into()),
        attributes: Default::default(),
        created_at: at(1),
        revoked_at: None,
    }
}

fn insert(record: RequestRecord, event: AuditEvent) -> Commit {
    Commit {
        changes: vec![Change::InsertRequest(record)],
        events: vec![event],
    }
}

fn event(n: i64) -> AuditEvent {
    AuditEvent::new(EventKind::PolicySetLoaded, at(n), "system").with_detail(json!({ "n": n }))
}

fn with_index(mut e: AuditEvent, i: u64) -> AuditEvent {
    e.index = Some(i);
    e
}

// ---------------------------------------------------------------- cases

async fn round_trip(h: &mut Harness) {
    let s = &h.store;
    assert_eq!(s.event_count().await.unwrap(), 0);
    s.ping().await.unwrap();

    let user = principal("alice", PrincipalKind::User);
    let agent = principal("etl", PrincipalKind::Agent);
    let added =
        AuditEvent::new(EventKind::PrincipalAdded, at(1), "user:admin").with_reason("onboarding");
    let receipt = s
        .commit(Commit {
            changes: vec![
                insert_principal(user.clone(), "hash-alice"),
                insert_principal(agent.clone(), "hash-etl"),
            ],
            events: vec![added.clone()],
        })
        .await
        .unwrap();
    assert_eq!(receipt.event_indexes, vec![0]);

    let (record, submitted) = pending("r1");
    let receipt = s
        .commit(insert(record.clone(), submitted.clone()))
        .await
        .unwrap();
    assert_eq!(receipt.event_indexes, vec![1]);

    assert_eq!(s.request("r1").await.unwrap(), Some(record));
    assert_eq!(s.request("nope").await.unwrap(), None);
    assert_eq!(s.principal("alice").await.unwrap(), Some(user.clone()));
    assert_eq!(s.principal("etl").await.unwrap(), Some(agent.clone()));
    assert_eq!(s.principal("nobody").await.unwrap(), None);
    assert_eq!(
        s.credential_by_token_hash("hash-etl")
            .await
            .unwrap()
            .map(|(p, _)| p),
        Some(agent.clone())
    );
    assert_eq!(
        s.credential_by_token_hash("hash-x")
            .await
            .unwrap()
            .map(|(p, _)| p),
        None
    );
    assert_eq!(s.list_principals().await.unwrap(), vec![user, agent]);

    let events = s.events(0, 100).await.unwrap();
    assert_eq!(events, vec![with_index(added, 0), with_index(submitted, 1)]);
    assert_eq!(s.event_count().await.unwrap(), 2);

    // A commit with nothing in it is accepted and appends nothing.
    assert_eq!(
        s.commit(Commit::default()).await.unwrap().event_indexes,
        Vec::<u64>::new()
    );
    assert_eq!(s.event_count().await.unwrap(), 2);
}

async fn event_paging_and_truncation(h: &mut Harness) {
    let s = &h.store;
    let events: Vec<AuditEvent> = (0..30).map(event).collect();
    let receipt = s
        .commit(Commit {
            changes: vec![],
            events: events.clone(),
        })
        .await
        .unwrap();
    assert_eq!(receipt.event_indexes, (0..30).collect::<Vec<u64>>());

    let page = s.events(10, 5).await.unwrap();
    let want: Vec<AuditEvent> = (10..15)
        .map(|i| with_index(events[i].clone(), i as u64))
        .collect();
    assert_eq!(page, want);
    assert_eq!(s.events(28, 100).await.unwrap().len(), 2);
    assert!(s.events(30, 100).await.unwrap().is_empty());
    assert!(s.events(u64::MAX, 100).await.unwrap().is_empty());
    assert!(s.events(0, 0).await.unwrap().is_empty());

    // The store keeps milliseconds: finer precision is truncated.
    let fine = AuditEvent::new(
        EventKind::PolicySetLoaded,
        at(5)
            .checked_add(jiff::SignedDuration::from_micros(750))
            .unwrap(),
        "system",
    );
    s.commit(Commit {
        changes: vec![],
        events: vec![fine],
    })
    .await
    .unwrap();
    assert_eq!(s.events(30, 1).await.unwrap()[0].time, at(5));
}

async fn idempotency_duplicate(h: &mut Harness) {
    let s = &h.store;
    let (a, ea) = submit(
        "r1",
        "db.export",
        "agent:etl",
        Decision::Allow,
        Some("k1"),
        0,
    );
    s.commit(insert(a.clone(), ea)).await.unwrap();

    let (b, eb) = submit(
        "r2",
        "db.export",
        "agent:etl",
        Decision::Allow,
        Some("k1"),
        1,
    );
    match s.commit(insert(b, eb)).await {
        Err(StoreError::Duplicate(m)) => assert!(m.contains("idempotency key"), "{m}"),
        other => panic!("expected duplicate, got {other:?}"),
    }
    assert_eq!(s.request("r2").await.unwrap(), None);
    assert_eq!(s.event_count().await.unwrap(), 1);
    assert_eq!(
        s.request_by_idempotency_key("agent:etl", "k1")
            .await
            .unwrap(),
        Some(a.clone())
    );
    assert_eq!(
        s.request_by_idempotency_key("agent:etl", "k2")
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        s.request_by_idempotency_key("agent:other", "k1")
            .await
            .unwrap(),
        None
    );

    // The key is per principal; no key never collides.
    let (c, ec) = submit(
        "r3",
        "db.export",
        "agent:other",
        Decision::Allow,
        Some("k1"),
        2,
    );
    s.commit(insert(c, ec)).await.unwrap();
    for (i, id) in ["r4", "r5"].into_iter().enumerate() {
        let (r, e) = submit(
            id,
            "db.export",
            "agent:etl",
            Decision::Allow,
            None,
            3 + i as i64,
        );
        s.commit(insert(r, e)).await.unwrap();
    }

    // The same id twice is a duplicate too.
    let (again, e) = submit("r1", "db.export", "agent:etl", Decision::Allow, None, 9);
    assert!(
        matches!(s.commit(insert(again, e)).await, Err(StoreError::Duplicate(m)) if m.contains("r1"))
    );
    assert_eq!(s.request("r1").await.unwrap(), Some(a));
}

async fn optimistic_conflict(h: &mut Harness) {
    let s = &h.store;
    let (r, e) = pending("r1");
    s.commit(insert(r.clone(), e)).await.unwrap();

    let mut first = s.request("r1").await.unwrap().unwrap();
    let mut second = first.clone();
    first.status = RequestStatus::Denied;
    first.status_reason = Some("no".into());
    first.expires_at = None;
    let ev = first.event(EventKind::RequestDenied, at(10), "user:bob");
    s.commit(Commit {
        changes: vec![Change::UpdateRequest(first.clone())],
        events: vec![ev],
    })
    .await
    .unwrap();

    let stored = s.request("r1").await.unwrap().unwrap();
    assert_eq!(stored.version, 1);
    assert_eq!(
        stored,
        RequestRecord {
            version: 1,
            ..first.clone()
        }
    );

    second.status = RequestStatus::Cancelled;
    let ev = second.event(EventKind::RequestCancelled, at(11), "agent:etl");
    match s
        .commit(Commit {
            changes: vec![Change::UpdateRequest(second)],
            events: vec![ev],
        })
        .await
    {
        Err(StoreError::Conflict(id)) => assert_eq!(id, "r1"),
        other => panic!("expected conflict, got {other:?}"),
    }
    assert_eq!(
        s.request("r1").await.unwrap().unwrap().status,
        RequestStatus::Denied
    );
    assert_eq!(s.event_count().await.unwrap(), 2);

    // Updating from the version just read works again.
    let mut third = s.request("r1").await.unwrap().unwrap();
    third.status_reason = Some("still no".into());
    s.commit(Commit {
        changes: vec![Change::UpdateRequest(third)],
        events: vec![],
    })
    .await
    .unwrap();
    assert_eq!(s.request("r1").await.unwrap().unwrap().version, 2);
}

async fn update_not_found(h: &mut Harness) {
    let (r, e) = pending("ghost");
    match h
        .store
        .commit(Commit {
            changes: vec![Change::UpdateRequest(r)],
            events: vec![e],
        })
        .await
    {
        Err(StoreError::NotFound(m)) => assert!(m.contains("ghost"), "{m}"),
        other => panic!("expected not found, got {other:?}"),
    }
    assert_eq!(h.store.event_count().await.unwrap(), 0);
}

async fn atomic_rollback(h: &mut Harness) {
    let s = &h.store;
    let (a, ea) = submit(
        "r1",
        "db.export",
        "agent:etl",
        Decision::Allow,
        Some("k"),
        0,
    );
    s.commit(insert(a, ea)).await.unwrap();

    let (b, eb) = submit("r2", "db.export", "agent:etl", Decision::Allow, None, 1);
    let (dup, edup) = submit(
        "r3",
        "db.export",
        "agent:etl",
        Decision::Allow,
        Some("k"),
        2,
    );
    let result = s
        .commit(Commit {
            changes: vec![Change::InsertRequest(b), Change::InsertRequest(dup)],
            events: vec![eb, edup],
        })
        .await;
    assert!(
        matches!(result, Err(StoreError::Duplicate(_))),
        "{result:?}"
    );
    assert_eq!(s.request("r2").await.unwrap(), None);
    assert_eq!(s.request("r3").await.unwrap(), None);
    assert_eq!(s.event_count().await.unwrap(), 1);
    assert_eq!(s.events(0, 10).await.unwrap().len(), 1);

    // Revoking an unknown principal after a valid insert undoes the insert.
    let result = s
        .commit(Commit {
            changes: vec![
                insert_principal(principal("zed", PrincipalKind::User), "hz"),
                Change::RevokePrincipal {
                    name: "nobody".into(),
                    at: at(3),
                },
            ],
            events: vec![event(3)],
        })
        .await;
    assert!(
        matches!(result, Err(StoreError::NotFound(ref m)) if m == "principal nobody"),
        "{result:?}"
    );
    assert_eq!(s.principal("zed").await.unwrap(), None);

    // The next good commit gets the next index: no gap was left.
    let receipt = s
        .commit(Commit {
            changes: vec![],
            events: vec![event(4)],
        })
        .await
        .unwrap();
    assert_eq!(receipt.event_indexes, vec![1]);
}

/// Good and bad commits submitted together (so they share a group-commit
/// batch): each bad one fails alone.
async fn failed_commit_does_not_fail_neighbours(h: &mut Harness) {
    let s = &h.store;
    let (a, ea) = submit(
        "r0",
        "db.export",
        "agent:etl",
        Decision::Allow,
        Some("taken"),
        0,
    );
    s.commit(insert(a.clone(), ea)).await.unwrap();

    // A third fail on a duplicate idempotency key, a third on a stale
    // version, a third succeed.
    let mut tasks = Vec::new();
    for i in 1..=60 {
        let s = s.clone();
        let stale = a.clone();
        tasks.push(tokio::spawn(async move {
            let (r, e) = submit(
                &format!("r{i:03}"),
                "db.export",
                "agent:etl",
                Decision::Allow,
                Some("taken"),
                i,
            );
            let commit = match i % 3 {
                0 => insert(r, e),
                1 => insert(
                    RequestRecord {
                        idempotency_key: None,
                        ..r
                    },
                    e,
                ),
                _ => Commit {
                    changes: vec![
                        Change::InsertRequest(RequestRecord {
                            idempotency_key: None,
                            ..r
                        }),
                        Change::UpdateRequest(RequestRecord {
                            version: 7,
                            ..stale
                        }),
                    ],
                    events: vec![e],
                },
            };
            (i, s.commit(commit).await)
        }));
    }
    let mut indexes = BTreeSet::new();
    for t in tasks {
        let (i, result) = t.await.unwrap();
        let stored = s.request(&format!("r{i:03}")).await.unwrap();
        match i % 3 {
            0 => assert!(
                matches!(result, Err(StoreError::Duplicate(_))),
                "commit {i}: {result:?}"
            ),
            1 => {
                let receipt = result.unwrap();
                assert_eq!(receipt.event_indexes.len(), 1);
                indexes.extend(receipt.event_indexes);
            }
            _ => assert!(
                matches!(result, Err(StoreError::Conflict(ref id)) if id == "r0"),
                "commit {i}: {result:?}"
            ),
        }
        assert_eq!(stored.is_some(), i % 3 == 1, "commit {i}");
    }
    assert_eq!(indexes, (1..=20).collect::<BTreeSet<u64>>());
    assert_eq!(s.event_count().await.unwrap(), 21);
    assert_eq!(s.request("r0").await.unwrap().unwrap().version, 0);
}

async fn dense_indexes_under_concurrency(h: &mut Harness) {
    let s = &h.store;
    let commits = 200;
    let tasks_n = 40;
    let mut tasks = Vec::new();
    for t in 0..tasks_n {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for c in (t..commits).step_by(tasks_n) {
                let (r, e) = submit(
                    &format!("r{c:04}"),
                    "db.export",
                    "agent:etl",
                    Decision::Allow,
                    None,
                    c as i64,
                );
                // 1 to 3 events per commit
                let mut events = vec![e];
                for k in 0..(c % 3) {
                    events.push(r.event(
                        EventKind::ReviewRecorded,
                        at(c as i64),
                        format!("user:u{k}"),
                    ));
                }
                let n = events.len();
                let receipt = s
                    .commit(Commit {
                        changes: vec![Change::InsertRequest(r)],
                        events,
                    })
                    .await
                    .unwrap();
                out.push((format!("r{c:04}"), n, receipt.event_indexes));
            }
            out
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    assert_eq!(all.len(), commits);
    let total: usize = all.iter().map(|(_, n, _)| n).sum();
    let mut seen = BTreeSet::new();
    for (_, n, idx) in &all {
        assert_eq!(idx.len(), *n);
        // contiguous within a commit
        assert!(idx.windows(2).all(|w| w[1] == w[0] + 1), "{idx:?}");
        seen.extend(idx.iter().copied());
    }
    assert_eq!(seen, (0..total as u64).collect::<BTreeSet<u64>>());
    assert_eq!(s.event_count().await.unwrap(), total as u64);

    let events = s.events(0, 10_000).await.unwrap();
    assert_eq!(events.len(), total);
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.index, Some(i as u64));
    }
    for (id, _, idx) in &all {
        for i in idx {
            assert_eq!(events[*i as usize].request_id.as_deref(), Some(id.as_str()));
        }
    }
}

/// Two stores on one database (two replicas) still produce one dense ledger.
async fn two_replicas_share_one_ledger(h: &mut Harness) {
    let a = h.store.clone();
    let b = h.another().await;
    let mut tasks = Vec::new();
    for i in 0..100i64 {
        let s = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            s.commit(Commit {
                changes: vec![],
                events: vec![event(i), event(i)],
            })
            .await
            .unwrap()
        }));
    }
    let mut seen = BTreeSet::new();
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!(r.event_indexes[1], r.event_indexes[0] + 1);
        seen.extend(r.event_indexes);
    }
    assert_eq!(seen, (0..200).collect::<BTreeSet<u64>>());
    assert_eq!(b.event_count().await.unwrap(), 200);
}

async fn list_filters_and_pagination(h: &mut Harness) {
    let s = &h.store;
    let mut all = Vec::new();
    for i in 0..30 {
        let (act, who) = match i % 3 {
            0 => ("db.export", "agent:etl"),
            1 => ("k8s.delete", "agent:etl"),
            _ => ("db.export", "user:alice"),
        };
        let decision = if i % 2 == 0 {
            Decision::ApprovalRequired
        } else {
            Decision::Allow
        };
        let (r, e) = submit(&format!("01J{i:04}"), act, who, decision, None, i);
        s.commit(insert(r.clone(), e)).await.unwrap();
        all.push(r);
    }
    let newest_first: Vec<RequestRecord> = all.iter().rev().cloned().collect();
    let ids = |v: &[RequestRecord]| v.iter().map(|r| r.id.clone()).collect::<Vec<_>>();

    let got = s.list_requests(&RequestFilter::default()).await.unwrap();
    assert_eq!(got, newest_first);

    let f = RequestFilter {
        statuses: vec![RequestStatus::Pending],
        ..Default::default()
    };
    let want: Vec<_> = newest_first
        .iter()
        .filter(|r| r.status == RequestStatus::Pending)
        .cloned()
        .collect();
    assert_eq!(ids(&s.list_requests(&f).await.unwrap()), ids(&want));

    let f = RequestFilter {
        statuses: vec![RequestStatus::Pending, RequestStatus::Approved],
        action: Some("db.export".into()),
        principal: Some("agent:etl".into()),
        ..Default::default()
    };
    let want: Vec<_> = newest_first
        .iter()
        .filter(|r| r.action.action == "db.export" && r.action.principal.to_string() == "agent:etl")
        .cloned()
        .collect();
    assert_eq!(ids(&s.list_requests(&f).await.unwrap()), ids(&want));
    let f = RequestFilter {
        statuses: vec![RequestStatus::Executed],
        ..Default::default()
    };
    assert!(s.list_requests(&f).await.unwrap().is_empty());

    // Pagination: pages of 7 with `before` walk the whole list, no overlaps.
    let mut pages = Vec::new();
    let mut before = None;
    loop {
        let f = RequestFilter {
            before: before.clone(),
            limit: 7,
            ..Default::default()
        };
        let page = s.list_requests(&f).await.unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 7);
        before = page.last().map(|r| r.id.clone());
        pages.extend(page);
    }
    assert_eq!(ids(&pages), ids(&newest_first));

    let f = RequestFilter {
        limit: 100_000,
        ..Default::default()
    };
    assert_eq!(s.list_requests(&f).await.unwrap().len(), 30);
    let f = RequestFilter {
        limit: 3,
        principal: Some("user:alice".into()),
        ..Default::default()
    };
    assert_eq!(
        ids(&s.list_requests(&f).await.unwrap()),
        vec!["01J0029", "01J0026", "01J0023"]
    );
}

async fn due_requests_and_next_deadline(h: &mut Harness) {
    let s = &h.store;
    assert_eq!(s.next_deadline().await.unwrap(), None);
    // pending, expiring at t0 + ms + 30 min (the verdict's ttl)
    let ttl = 1_800_000;
    let mut ids = Vec::new();
    for (i, ms) in [5_000i64, 1_000, 3_000].into_iter().enumerate() {
        let (r, e) = submit(
            &format!("p{i}"),
            "db.export",
            "agent:etl",
            Decision::ApprovalRequired,
            None,
            ms,
        );
        s.commit(insert(r, e)).await.unwrap();
        ids.push(format!("p{i}"));
    }
    let (allowed, e) = submit("a0", "db.export", "agent:etl", Decision::Allow, None, 0);
    s.commit(insert(allowed, e)).await.unwrap();
    let (denied, e) = submit("d0", "db.export", "agent:etl", Decision::Deny, None, 0);
    s.commit(insert(denied, e)).await.unwrap();

    assert_eq!(s.next_deadline().await.unwrap(), Some(at(1_000 + ttl)));
    assert!(s.due_requests(at(ttl), 10).await.unwrap().is_empty());
    let due = s.due_requests(at(3_000 + ttl), 10).await.unwrap();
    assert_eq!(
        due.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        vec!["p1", "p2"]
    );
    let due = s.due_requests(at(10_000 + ttl), 10).await.unwrap();
    assert_eq!(
        due.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        vec!["p1", "p2", "p0"]
    );
    assert_eq!(s.due_requests(at(10_000 + ttl), 1).await.unwrap().len(), 1);

    // Approved requests with a claim deadline count too; final ones do not.
    let mut p1 = s.request("p1").await.unwrap().unwrap();
    p1.status = RequestStatus::Expired;
    s.commit(Commit {
        changes: vec![Change::UpdateRequest(p1)],
        events: vec![],
    })
    .await
    .unwrap();
    let mut p2 = s.request("p2").await.unwrap().unwrap();
    p2.status = RequestStatus::Approved;
    p2.expires_at = Some(at(2_000 + ttl));
    s.commit(Commit {
        changes: vec![Change::UpdateRequest(p2)],
        events: vec![],
    })
    .await
    .unwrap();
    assert_eq!(s.next_deadline().await.unwrap(), Some(at(2_000 + ttl)));
    let due = s.due_requests(at(10_000 + ttl), 10).await.unwrap();
    assert_eq!(
        due.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        vec!["p2", "p0"]
    );
    // the sweeper's list: ids and deadlines only, earliest first
    assert_eq!(
        s.deadlines(at(10_000 + ttl), 10).await.unwrap(),
        vec![
            ("p2".to_owned(), at(2_000 + ttl)),
            ("p0".to_owned(), at(5_000 + ttl))
        ]
    );
    assert_eq!(s.deadlines(at(10_000 + ttl), 1).await.unwrap().len(), 1);
    assert!(s.deadlines(at(ttl), 10).await.unwrap().is_empty());
}

async fn count_by_status(h: &mut Harness) {
    let s = &h.store;
    assert!(s
        .count_by_status()
        .await
        .unwrap()
        .iter()
        .all(|(_, n)| *n == 0));
    let decisions = [
        Decision::Allow,
        Decision::Allow,
        Decision::Deny,
        Decision::ApprovalRequired,
        Decision::Allow,
    ];
    for (i, d) in decisions.into_iter().enumerate() {
        let (r, e) = submit(
            &format!("r{i}"),
            "db.export",
            "agent:etl",
            d,
            None,
            i as i64,
        );
        s.commit(insert(r, e)).await.unwrap();
    }
    let mut counts: Vec<(RequestStatus, u64)> = s
        .count_by_status()
        .await
        .unwrap()
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .collect();
    counts.sort_by_key(|(st, _)| st.as_str());
    assert_eq!(
        counts,
        vec![
            (RequestStatus::Approved, 3),
            (RequestStatus::Denied, 1),
            (RequestStatus::Pending, 1)
        ]
    );
}

async fn principals(h: &mut Harness) {
    let s = &h.store;
    for (name, kind, hash) in [
        ("zoe", PrincipalKind::User, "h1"),
        ("bob.smith", PrincipalKind::User, "h2"),
        ("Bob-2", PrincipalKind::User, "h3"),
        ("etl", PrincipalKind::Agent, "h4"),
    ] {
        let change = insert_principal(principal(name, kind), hash);
        s.commit(Commit {
            changes: vec![change],
            events: vec![event(0)],
        })
        .await
        .unwrap();
    }
    let names: Vec<String> = s
        .list_principals()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "list is ordered by name, bytewise");

    let dup_name = insert_principal(principal("zoe", PrincipalKind::User), "h9");
    match s
        .commit(Commit {
            changes: vec![dup_name],
            events: vec![event(1)],
        })
        .await
    {
        Err(StoreError::Duplicate(m)) => assert_eq!(m, "principal zoe"),
        other => panic!("expected duplicate, got {other:?}"),
    }
    let dup_token = insert_principal(principal("new", PrincipalKind::User), "h1");
    assert!(matches!(
        s.commit(Commit { changes: vec![dup_token], events: vec![] }).await,
        Err(StoreError::Duplicate(m)) if m == "credential `default` of principal new"
    ));
    assert_eq!(s.principal("new").await.unwrap(), None);

    let revoke = |name: &str, ms| Change::RevokePrincipal {
        name: name.into(),
        at: at(ms),
    };
    s.commit(Commit {
        changes: vec![revoke("zoe", 50)],
        events: vec![event(2)],
    })
    .await
    .unwrap();
    let zoe = s.principal("zoe").await.unwrap().unwrap();
    assert_eq!(zoe.revoked_at, Some(at(50)));
    assert!(!zoe.is_active());
    // revoked principals are still found by token (the caller checks)
    assert_eq!(
        s.credential_by_token_hash("h1")
            .await
            .unwrap()
            .map(|(p, _)| p),
        Some(zoe)
    );
    // a second revocation keeps the first time
    s.commit(Commit {
        changes: vec![revoke("zoe", 90)],
        events: vec![],
    })
    .await
    .unwrap();
    assert_eq!(
        s.principal("zoe").await.unwrap().unwrap().revoked_at,
        Some(at(50))
    );

    match s
        .commit(Commit {
            changes: vec![revoke("ghost", 1)],
            events: vec![event(3)],
        })
        .await
    {
        Err(StoreError::NotFound(m)) => assert_eq!(m, "principal ghost"),
        other => panic!("expected not found, got {other:?}"),
    }
    assert_eq!(s.event_count().await.unwrap(), 5);
}

async fn audit_events_are_append_only(h: &mut Harness) {
    let events = vec![event(1), event(2)];
    h.store
        .commit(Commit {
            changes: vec![],
            events: events.clone(),
        })
        .await
        .unwrap();

    let err = h
        .raw("UPDATE audit_events SET actor = 'mallory'")
        .await
        .unwrap_err();
    assert!(err.contains("append-only"), "{err}");
    let err = h
        .raw("DELETE FROM audit_events WHERE idx = 0")
        .await
        .unwrap_err();
    assert!(err.contains("append-only"), "{err}");
    if h.is_postgres() {
        let err = h.raw("TRUNCATE audit_events").await.unwrap_err();
        assert!(err.contains("append-only"), "{err}");
    }
    let want: Vec<AuditEvent> = events
        .into_iter()
        .enumerate()
        .map(|(i, e)| with_index(e, i as u64))
        .collect();
    assert_eq!(h.store.events(0, 10).await.unwrap(), want);
}

/// The stored perfect-subtree hashes agree with a tree recomputed from the
/// events themselves, whatever path the writer took.
async fn assert_tree_matches_events(s: &Arc<dyn Store>) {
    use signoff_ledger::{leaf, merkle};
    let events = s.events(0, 10_000).await.unwrap();
    let n = events.len() as u64;
    let leaves: Vec<merkle::Hash> = events
        .iter()
        .map(|e| merkle::leaf_hash(&leaf::encode(e)))
        .collect();
    let edge = s
        .ledger_nodes(&merkle::perfect_subtrees(0, n))
        .await
        .unwrap();
    let root = merkle::range_hash(&edge);
    assert_eq!(
        root,
        merkle::root(&leaves),
        "root from stored nodes at size {n}"
    );
    for index in [0, n / 3, n / 2, n.saturating_sub(1)] {
        if index >= n {
            continue;
        }
        let ranges = merkle::inclusion_ranges(index, n).unwrap();
        let mut coords = Vec::new();
        for &(a, b) in &ranges {
            coords.extend(merkle::perfect_subtrees(a, b));
        }
        let fetched = s.ledger_nodes(&coords).await.unwrap();
        let mut it = fetched.into_iter();
        let proof = merkle::proof_from_nodes(&ranges, |_, _| it.next().ok_or(())).unwrap();
        merkle::verify_inclusion(&leaves[index as usize], index, n, &proof, &root).unwrap();
    }
}

async fn merkle_tree_follows_every_commit(h: &mut Harness) {
    let s = h.store.clone();
    // fast path, many concurrent batches
    let mut tasks = Vec::new();
    for t in 0..20i64 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            for k in 0..5i64 {
                let (r, e) = submit(
                    &format!("m{t:02}{k}"),
                    "db.read",
                    "agent:etl",
                    Decision::Allow,
                    None,
                    t * 10 + k,
                );
                s.commit(Commit {
                    changes: vec![Change::InsertRequest(r)],
                    events: vec![e],
                })
                .await
                .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_tree_matches_events(&s).await;
    // savepoint path: a failing commit among good ones
    let (dup, e) = submit("m000", "db.read", "agent:etl", Decision::Allow, None, 1);
    let bad = s.commit(Commit {
        changes: vec![Change::InsertRequest(dup)],
        events: vec![e],
    });
    let (ok, e2) = submit("m999", "db.read", "agent:etl", Decision::Allow, None, 2);
    let good = s.commit(Commit {
        changes: vec![Change::InsertRequest(ok)],
        events: vec![e2, event(3)],
    });
    let (bad, good) = tokio::join!(bad, good);
    assert!(bad.is_err());
    good.unwrap();
    assert_tree_matches_events(&s).await;
    assert_eq!(s.event_count().await.unwrap(), 102);
    let err = h
        .raw("UPDATE ledger_nodes SET hash = hash")
        .await
        .unwrap_err();
    assert!(err.contains("append-only"), "{err}");
    let err = h.raw("DELETE FROM ledger_nodes").await.unwrap_err();
    assert!(err.contains("append-only"), "{err}");
}

async fn checkpoints_are_stored_once(h: &mut Harness) {
    let s = &h.store;
    assert_eq!(s.latest_checkpoint().await.unwrap(), None);
    let cp = |size: u64| signoff_store::StoredCheckpoint {
        size,
        root: [size as u8; 32],
        note: format!("origin\n{size}\nroot\n\n— key sig\n"),
        created_at: at(size as i64),
    };
    for size in [1, 5, 9] {
        s.commit(Commit {
            changes: vec![Change::InsertCheckpoint(cp(size))],
            events: vec![],
        })
        .await
        .unwrap();
    }
    let err = s
        .commit(Commit {
            changes: vec![Change::InsertCheckpoint(cp(5))],
            events: vec![],
        })
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Duplicate(_)), "{err}");
    assert_eq!(s.latest_checkpoint().await.unwrap(), Some(cp(9)));
    assert_eq!(s.checkpoints(2, 10).await.unwrap(), vec![cp(5), cp(9)]);
    let err = h.raw("DELETE FROM ledger_checkpoints").await.unwrap_err();
    assert!(err.contains("append-only"), "{err}");
}

async fn event_range_and_leaves(h: &mut Harness) {
    use signoff_ledger::{leaf, merkle};
    let s = &h.store;
    assert_eq!(s.event_range(at(0), at(100)).await.unwrap(), None);
    assert!(s.ledger_leaves(0, 10).await.unwrap().is_empty());
    // times 0, 10, 20, …, 90 at indexes 0..10
    let events: Vec<AuditEvent> = (0..10).map(|i| event(i * 10)).collect();
    s.commit(Commit {
        changes: vec![],
        events: events.clone(),
    })
    .await
    .unwrap();
    assert_eq!(s.event_range(at(0), at(100)).await.unwrap(), Some((0, 9)));
    assert_eq!(s.event_range(at(15), at(40)).await.unwrap(), Some((2, 3)));
    assert_eq!(s.event_range(at(20), at(21)).await.unwrap(), Some((2, 2)));
    // `until` is exclusive, `since` inclusive
    assert_eq!(s.event_range(at(20), at(20)).await.unwrap(), None);
    assert_eq!(s.event_range(at(21), at(29)).await.unwrap(), None);
    assert_eq!(s.event_range(at(95), at(1000)).await.unwrap(), None);
    assert_eq!(s.event_range(at(-50), at(-1)).await.unwrap(), None);

    let leaves = s.ledger_leaves(3, 4).await.unwrap();
    let want: Vec<(u64, [u8; 32])> = (3..7)
        .map(|i| {
            let e = with_index(events[i as usize].clone(), i);
            (i, merkle::leaf_hash(&leaf::encode(&e)))
        })
        .collect();
    assert_eq!(leaves, want);
    assert_eq!(s.ledger_leaves(8, 100).await.unwrap().len(), 2);
    assert!(s.ledger_leaves(10, 100).await.unwrap().is_empty());
    assert!(s.ledger_leaves(u64::MAX, 100).await.unwrap().is_empty());
    assert!(s.ledger_leaves(0, 0).await.unwrap().is_empty());
}

async fn ledger_scan_encodes_the_leaves(h: &mut Harness) {
    use signoff_ledger::{leaf, merkle};
    let s = &h.store;
    let scan_of = |from: u64, to: u64| async move {
        let mut out = signoff_store::LedgerScan::default();
        s.scan_ledger(from, to, &mut out).await.unwrap();
        out
    };
    let empty = scan_of(0, 100).await;
    assert!(empty.entries.is_empty() && empty.recorded.is_empty());
    // Varied columns: escapes, unicode, nulls, nested detail.
    let mut events: Vec<AuditEvent> = (0..300).map(|i| event(i * 10)).collect();
    events[1] = events[1]
        .clone()
        .with_reason("ship \"it\"\n\u{1}é😀")
        .with_detail(json!({"z": [1, {"b": null, "a": "\u{2028}"}], "a": true}));
    events[2].request_id = Some("01J0000000000000000000000".into());
    events[2].digest = Some("ab".into());
    events[2].verdict = Some(Decision::ApprovalRequired);
    events[2].policy_ids = vec!["p1".into(), "p\"2".into()];
    events[2].policy_set_hash = Some("h".into());
    s.commit(Commit {
        changes: vec![],
        events: events.clone(),
    })
    .await
    .unwrap();

    let scan = scan_of(0, 1000).await;
    assert_eq!((scan.from, scan.to), (0, 1000));
    assert_eq!(scan.entries.len(), 300);
    assert_eq!(scan.recorded.len(), 300);
    for (i, entry) in scan.entries.iter().enumerate() {
        let want = leaf::encode(&with_index(events[i].clone(), i as u64));
        assert_eq!(entry.index, i as u64);
        assert_eq!(entry.leaf_hash, Some(merkle::leaf_hash(&want)), "entry {i}");
        assert_eq!(scan.recorded[i], (i as u64, merkle::leaf_hash(&want)));
    }
    // A sub-range, and ranges past the end or reversed.
    // A reused scan holds only what the last call found.
    let mut part = scan.clone();
    s.scan_ledger(100, 103, &mut part).await.unwrap();
    assert_eq!(
        part.entries.iter().map(|e| e.index).collect::<Vec<_>>(),
        vec![100, 101, 102]
    );
    assert_eq!(part.recorded, scan.recorded[100..103].to_vec());
    assert!(scan_of(300, 400).await.entries.is_empty());
    assert!(scan_of(5, 5).await.entries.is_empty());
    assert!(scan_of(u64::MAX, u64::MAX).await.entries.is_empty());
    // At most MAX_SCAN entries per call.
    let capped = scan_of(0, u64::MAX).await;
    assert_eq!(capped.to, signoff_store::MAX_SCAN);

    // A row whose columns no longer encode (a schema this build does not
    // know) is listed without bytes, for the caller to read the slow way.
    let drop = if h.is_postgres() {
        "DROP TRIGGER audit_events_no_update_delete ON audit_events"
    } else {
        "DROP TRIGGER audit_events_no_update"
    };
    h.raw(drop).await.unwrap();
    h.raw("UPDATE audit_events SET schema = 9 WHERE idx = 7")
        .await
        .unwrap();
    let scan = scan_of(6, 9).await;
    assert!(scan.entries[0].leaf_hash.is_some());
    assert_eq!(scan.entries[1].index, 7);
    assert_eq!(scan.entries[1].leaf_hash, None);
    assert!(scan.entries[2].leaf_hash.is_some());
}

async fn reopen_keeps_data(h: &mut Harness) {
    let (r, e) = pending("r1");
    h.store.commit(insert(r.clone(), e.clone())).await.unwrap();
    h.reopen().await;
    // and migrations are idempotent across further opens
    h.reopen().await;
    assert_eq!(h.store.request("r1").await.unwrap(), Some(r));
    assert_eq!(h.store.events(0, 10).await.unwrap(), vec![with_index(e, 0)]);
    let receipt = h
        .store
        .commit(Commit {
            changes: vec![],
            events: vec![event(1)],
        })
        .await
        .unwrap();
    assert_eq!(receipt.event_indexes, vec![1]);
}

async fn bad_url_is_config_error(h: &mut Harness) {
    let bad = if h.is_postgres() {
        "postgres://postgres:hunter2@127.0.0.1:notaport/test".to_owned()
    } else {
        format!("{}?mode=bogus", h.url)
    };
    match signoff_store::open(&bad).await {
        Err(StoreError::Config(m)) => assert!(!m.contains("hunter2"), "password leaked: {m}"),
        Err(other) => panic!("expected config error, got {other:?}"),
        Ok(_) => panic!("expected config error, got a store"),
    }
    assert!(matches!(
        signoff_store::open("mysql://x@y/z").await,
        Err(StoreError::Config(_))
    ));
    if h.is_postgres() {
        // A database that does not exist is a configuration mistake too.
        let missing = h.url.replace("signoff_conf_", "signoff_missing_");
        match signoff_store::open(&missing).await {
            Err(StoreError::Config(m)) => assert!(m.contains("does not exist"), "{m}"),
            Err(other) => panic!("expected config error, got {other:?}"),
            Ok(_) => panic!("expected config error, got a store"),
        }
    }
}

async fn unreachable_is_unavailable(h: &mut Harness) {
    let url = if h.is_postgres() {
        "postgres://postgres:hunter2@127.0.0.1:1/test".to_owned()
    } else {
        "sqlite:///nonexistent-signoff-dir/sub/signoff.db".to_owned()
    };
    let start = Instant::now();
    match signoff_store::open(&url).await {
        Err(StoreError::Unavailable(m)) => {
            assert!(!m.contains("hunter2"), "password leaked: {m}");
            assert!(m.contains("cannot open"), "{m}");
        }
        Err(other) => panic!("expected unavailable, got {other:?}"),
        Ok(_) => panic!("expected unavailable, got a store"),
    }
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "took {:?}",
        start.elapsed()
    );
}

// ---------------------------------------------------------------- backend-specific

/// `sqlite::memory:` gives one database shared by the writer and the readers.
#[tokio::test]
async fn sqlite_in_memory() {
    let s = signoff_store::open("sqlite::memory:").await.unwrap();
    let (r, e) = pending("r1");
    s.commit(insert(r.clone(), e)).await.unwrap();
    assert_eq!(s.request("r1").await.unwrap(), Some(r));
    assert_eq!(s.event_count().await.unwrap(), 1);
    // The ledger scan goes through sqlx here (no file to read directly).
    let mut scan = signoff_store::LedgerScan::default();
    s.scan_ledger(0, 10, &mut scan).await.unwrap();
    assert_eq!(scan.entries.len(), 1);
    assert_eq!(scan.recorded.len(), 1);
    assert_eq!(scan.entries[0].leaf_hash, Some(scan.recorded[0].1));
}

/// When the server drops the store's connections (a restart, a failover),
/// the store reports Unavailable at most briefly and then works again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_reconnects_after_connections_are_killed() {
    let h = Harness::postgres().await;
    h.store
        .commit(Commit {
            changes: vec![],
            events: vec![event(0)],
        })
        .await
        .unwrap();
    assert_eq!(h.store.event_count().await.unwrap(), 1);

    let killed = h
        .raw(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND application_name = 'signoff'",
        )
        .await
        .unwrap();
    assert!(killed >= 1);

    let mut committed = None;
    for _ in 0..5 {
        match h
            .store
            .commit(Commit {
                changes: vec![],
                events: vec![event(1)],
            })
            .await
        {
            Ok(r) => {
                committed = Some(r);
                break;
            }
            Err(StoreError::Unavailable(_)) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(other) => panic!("expected unavailable or success, got {other:?}"),
        }
    }
    assert_eq!(
        committed.expect("writer did not reconnect").event_indexes,
        vec![1]
    );
    let mut count = None;
    for _ in 0..5 {
        if let Ok(n) = h.store.event_count().await {
            count = Some(n);
            break;
        }
    }
    assert_eq!(count, Some(2));
}

// ---------------------------------------------------------------- identities, stream, replicas

async fn credentials_and_identities(h: &mut Harness) {
    let s = &h.store;
    let alice = principal("alice", PrincipalKind::User);
    s.commit(Commit {
        changes: vec![insert_principal(alice.clone(), "h-default")],
        events: vec![event(1)],
    })
    .await
    .unwrap();
    // a second credential, bound to a gate and expiring
    let mut ci = credential("alice", "ci", Some("exec"));
    ci.expires_at = Some(at(5_000));
    s.commit(Commit {
        changes: vec![Change::InsertCredential {
            credential: ci.clone(),
            token_hash: "h-ci".into(),
            created_by: Some("console".into()),
        }],
        events: vec![event(2)],
    })
    .await
    .unwrap();
    // who provisioned the account (and its groups) and each credential
    let default_id = credential("alice", "default", None).id;
    assert_eq!(
        s.provenance("alice", Some(&default_id)).await.unwrap(),
        signoff_store::Provenance {
            account_created_by: Some("user:carol".into()),
            credential_created_by: Some("user:carol".into()),
        }
    );
    assert_eq!(
        s.provenance("alice", Some(&ci.id)).await.unwrap(),
        signoff_store::Provenance {
            account_created_by: Some("user:carol".into()),
            credential_created_by: Some("console".into()),
        }
    );
    assert_eq!(
        s.provenance("nobody", Some("cr_nope")).await.unwrap(),
        signoff_store::Provenance::default()
    );
    assert_eq!(
        s.credential_by_token_hash("h-ci").await.unwrap(),
        Some((alice.clone(), ci.clone()))
    );
    assert_eq!(s.credential_by_token_hash("h-nope").await.unwrap(), None);
    // names are unique per principal, token hashes globally
    let dup = s
        .commit(Commit {
            changes: vec![Change::InsertCredential {
                credential: credential("alice", "ci", None),
                token_hash: "h-other".into(),
                created_by: None,
            }],
            events: vec![],
        })
        .await;
    assert!(matches!(dup, Err(StoreError::Duplicate(_))), "{dup:?}");
    let dup = s
        .commit(Commit {
            changes: vec![Change::InsertCredential {
                credential: credential("alice", "third", None),
                token_hash: "h-ci".into(),
                created_by: None,
            }],
            events: vec![],
        })
        .await;
    assert!(matches!(dup, Err(StoreError::Duplicate(_))), "{dup:?}");

    // revoking one credential leaves the other; the first time is kept
    for ms in [100, 200] {
        s.commit(Commit {
            changes: vec![Change::RevokeCredential {
                id: ci.id.clone(),
                at: at(ms),
            }],
            events: vec![event(3)],
        })
        .await
        .unwrap();
    }
    let listed = s.credentials("alice").await.unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|c| (c.name.as_str(), c.revoked_at))
            .collect::<Vec<_>>(),
        vec![("ci", Some(at(100))), ("default", None)]
    );
    assert!(matches!(
        s.commit(Commit {
            changes: vec![Change::RevokeCredential {
                id: "cr_nope".into(),
                at: at(1)
            }],
            events: vec![event(4)],
        })
        .await,
        Err(StoreError::NotFound(_))
    ));

    // last use only moves forward; unknown ids are ignored
    for ms in [300, 250] {
        s.commit(Commit {
            changes: vec![Change::TouchCredentials(vec![
                ("cr_alice_default".into(), at(ms)),
                ("cr_unknown".into(), at(ms)),
            ])],
            events: vec![],
        })
        .await
        .unwrap();
    }
    let (_, default) = s
        .credential_by_token_hash("h-default")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(default.last_used_at, Some(at(300)));

    // identities
    let link = |subject: &str, who: &str| signoff_core::Identity {
        issuer: "https://idp.example".into(),
        subject: subject.into(),
        principal: who.into(),
        verified_by: "admin".into(),
        linked_by: "console".into(),
        linked_at: at(10),
    };
    s.commit(Commit {
        changes: vec![Change::LinkIdentity(link("sub-1", "alice"))],
        events: vec![event(5)],
    })
    .await
    .unwrap();
    assert!(matches!(
        s.commit(Commit {
            changes: vec![Change::LinkIdentity(link("sub-1", "bob"))],
            events: vec![event(6)],
        })
        .await,
        Err(StoreError::Duplicate(_))
    ));
    assert_eq!(
        s.identity("https://idp.example", "sub-1").await.unwrap(),
        Some(link("sub-1", "alice"))
    );
    assert_eq!(
        s.identity("https://idp.example", "sub-2").await.unwrap(),
        None
    );
    assert_eq!(
        s.identities("alice").await.unwrap(),
        vec![link("sub-1", "alice")]
    );
}

async fn stream_cursors_and_leases(h: &mut Harness) {
    let s = &h.store;
    assert_eq!(s.cursor("slack").await.unwrap(), None);
    let advance = |position, holder: Option<&str>, ms| Change::AdvanceCursor {
        name: "slack".into(),
        position,
        holder: holder.map(str::to_owned),
        at: at(ms),
    };
    let commit = |c: Change| Commit {
        changes: vec![c],
        events: vec![],
    };
    s.commit(commit(advance(5, None, 1))).await.unwrap();
    s.commit(commit(advance(3, None, 2))).await.unwrap();
    assert_eq!(
        s.cursor("slack").await.unwrap().unwrap().position,
        5,
        "never backwards"
    );
    s.commit(commit(advance(9, None, 3))).await.unwrap();
    assert_eq!(s.cursor("slack").await.unwrap().unwrap().position, 9);

    let lease = |holder: &str, until, now| Change::LeaseCursor {
        name: "webhook".into(),
        holder: holder.into(),
        start: 7,
        until: at(until),
        at: at(now),
    };
    s.commit(commit(lease("replica-a", 1_000, 0)))
        .await
        .unwrap();
    let c = s.cursor("webhook").await.unwrap().unwrap();
    assert_eq!((c.position, c.holder.as_deref()), (7, Some("replica-a")));
    // another replica cannot take a live lease, nor acknowledge under it
    assert!(matches!(
        s.commit(commit(lease("replica-b", 2_000, 500))).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        s.commit(commit(Change::AdvanceCursor {
            name: "webhook".into(),
            position: 8,
            holder: Some("replica-b".into()),
            at: at(600),
        }))
        .await,
        Err(StoreError::Conflict(_))
    ));
    // the holder renews and acknowledges
    s.commit(commit(lease("replica-a", 1_500, 900)))
        .await
        .unwrap();
    s.commit(commit(Change::AdvanceCursor {
        name: "webhook".into(),
        position: 8,
        holder: Some("replica-a".into()),
        at: at(950),
    }))
    .await
    .unwrap();
    // once the lease ran out, another replica takes over where it stopped
    s.commit(commit(lease("replica-b", 3_000, 1_600)))
        .await
        .unwrap();
    let c = s.cursor("webhook").await.unwrap().unwrap();
    assert_eq!((c.position, c.holder.as_deref()), (8, Some("replica-b")));
    assert_eq!(c.lease_until, Some(at(3_000)));
}

async fn active_policy_set(h: &mut Harness) {
    let s = &h.store;
    assert_eq!(s.active_policy_set().await.unwrap(), None);
    assert_eq!(s.active_policy_hash().await.unwrap(), None);
    let set = |hash: &str, ms| signoff_store::StoredPolicySet {
        hash: hash.into(),
        files: format!(r#"{{"files":[["{hash}.cedar","permit(principal, action, resource);"]]}}"#),
        activated_at: at(ms),
    };
    for (hash, ms) in [("aaa", 1), ("bbb", 2), ("aaa", 3)] {
        s.commit(Commit {
            changes: vec![Change::ActivatePolicySet(set(hash, ms))],
            events: vec![event(ms)],
        })
        .await
        .unwrap();
    }
    assert_eq!(
        s.active_policy_hash().await.unwrap().as_deref(),
        Some("aaa")
    );
    let active = s.active_policy_set().await.unwrap().unwrap();
    assert_eq!((active.hash.as_str(), active.activated_at), ("aaa", at(3)));
    assert_eq!(active.files, set("aaa", 1).files);
    // every replica sees the same active set
    let other = h.another().await;
    assert_eq!(
        other.active_policy_hash().await.unwrap().as_deref(),
        Some("aaa")
    );
}

async fn head_follows_commits(h: &mut Harness) {
    let a = h.store.clone();
    let mut head = a.subscribe_head();
    assert_eq!(*head.borrow_and_update(), 0);
    a.commit(Commit {
        changes: vec![],
        events: vec![event(1), event(2)],
    })
    .await
    .unwrap();
    assert_eq!(
        *head.borrow_and_update(),
        2,
        "own commits move the head at once"
    );
    // commits without events do not
    a.commit(Commit {
        changes: vec![Change::AdvanceCursor {
            name: "x".into(),
            position: 1,
            holder: None,
            at: at(1),
        }],
        events: vec![],
    })
    .await
    .unwrap();
    assert!(!head.has_changed().unwrap());
    if a.is_shared() {
        // another replica's commit reaches us through the database
        let b = h.another().await;
        let started = Instant::now();
        b.commit(Commit {
            changes: vec![],
            events: vec![event(3)],
        })
        .await
        .unwrap();
        tokio::time::timeout(Duration::from_secs(10), head.wait_for(|h| *h >= 3))
            .await
            .expect("another replica's commit moves the head")
            .unwrap();
        eprintln!("head moved across replicas in {:?}", started.elapsed());
    } else {
        assert!(!h.another().await.is_shared());
    }
}

/// Attributes are stored with the principal, read back by every lookup
/// (by name, in the list, with a credential) and replaced whole.
async fn principal_attributes(h: &mut Harness) {
    let s = &h.store;
    let mut agent = principal("etl", PrincipalKind::Agent);
    agent.attributes = signoff_core::PrincipalAttributes {
        environments: vec!["prod".into(), "staging".into()],
        team: Some("data".into()),
        ..Default::default()
    };
    s.commit(Commit {
        changes: vec![insert_principal(agent.clone(), "ha")],
        events: vec![event(0)],
    })
    .await
    .unwrap();
    assert_eq!(s.principal("etl").await.unwrap(), Some(agent.clone()));
    let (by_token, _) = s.credential_by_token_hash("ha").await.unwrap().unwrap();
    assert_eq!(by_token.attributes, agent.attributes);

    let staging = signoff_core::PrincipalAttributes {
        environments: vec!["staging".into()],
        labels: vec!["tier-2".into()],
        ..Default::default()
    };
    s.commit(Commit {
        changes: vec![Change::SetPrincipalAttributes {
            name: "etl".into(),
            attributes: staging.clone(),
        }],
        events: vec![event(1)],
    })
    .await
    .unwrap();
    assert_eq!(
        s.principal("etl").await.unwrap().unwrap().attributes,
        staging
    );
    assert_eq!(s.list_principals().await.unwrap()[0].attributes, staging);

    let result = s
        .commit(Commit {
            changes: vec![Change::SetPrincipalAttributes {
                name: "nobody".into(),
                attributes: staging.clone(),
            }],
            events: vec![event(2)],
        })
        .await;
    assert!(
        matches!(result, Err(StoreError::NotFound(ref m)) if m == "principal nobody"),
        "{result:?}"
    );
    assert_eq!(s.event_count().await.unwrap(), 2);
}
