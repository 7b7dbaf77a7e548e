#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on setup failures
//! The seams every channel and gate plugs into, tried as an attacker and as
//! a consumer would: the event stream's durable cursors (SQLite and
//! PostgreSQL), identities and credentials, gate binding, channels.

use signoff_core::wire::{NewPrincipal, SubmitRequest};
use signoff_core::{
    Channel, EventKind, PrincipalKind, RequestStatus, ReviewDecision, ReviewRefusal, Role,
    SelfRelation,
};
use signoff_engine::identity::NewCredential;
use signoff_engine::principals::Operator;
use signoff_engine::stream::StartAt;
use signoff_engine::{Caller, Engine, EngineConfig, EngineError, Presented};
use sqlx::Connection;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

const POLICY: &str = r#"
@id("export") @approval("sre:2") @ttl("10m")
permit(principal, action == Action::"db.export", resource);
@id("read")
permit(principal, action == Action::"db.read", resource);
@id("mcp-only-from-mcp")
forbid(principal, action == Action::"db.read", resource) when { context.gate == "mcp" };
"#;

enum Db {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres(String),
}

impl Drop for Db {
    fn drop(&mut self) {
        if let Db::Postgres(name) = self {
            let name = name.clone();
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    if let Ok(mut c) = sqlx::PgConnection::connect(&pg_admin()).await {
                        let _ =
                            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                                .execute(&mut c)
                                .await;
                    }
                });
            })
            .join();
        }
    }
}

fn pg_admin() -> String {
    std::env::var("SIGNOFF_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
        .trim_end_matches('/')
        .to_owned()
        + "/test"
}

async fn database(postgres: bool) -> (Db, String) {
    if !postgres {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        return (Db::Sqlite(dir), url);
    }
    let name = format!(
        "signoff_seams_{}_{}",
        std::process::id(),
        ulid::Ulid::new().to_string().to_lowercase()
    );
    let admin = pg_admin();
    let mut c = sqlx::PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {admin} is required (SIGNOFF_TEST_PG): {e}"));
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut c)
        .await
        .unwrap();
    let url = format!("{}/{name}", &admin[..admin.rfind('/').unwrap()]);
    (Db::Postgres(name), url)
}

struct Gw {
    engine: Arc<Engine>,
    _db: Db,
    _policies: tempfile::TempDir,
}

async fn gateway(postgres: bool) -> Gw {
    let (db, url) = database(postgres).await;
    let policies = tempfile::tempdir().unwrap();
    std::fs::write(policies.path().join("p.cedar"), POLICY).unwrap();
    let store = signoff_store::open(&url).await.unwrap();
    let engine = Engine::start(
        store,
        Arc::new(signoff_core::SystemClock),
        EngineConfig {
            policy_dir: policies.path().to_owned(),
            deadlines: Default::default(),
            ledger_key: None,
            witness_file: None,
        },
    )
    .await
    .unwrap();
    engine.record_policy_active("test").await.unwrap();
    Gw {
        engine,
        _db: db,
        _policies: policies,
    }
}

fn user(name: &str, groups: &[&str]) -> NewPrincipal {
    NewPrincipal {
        kind: PrincipalKind::User,
        name: name.into(),
        role: Some(Role::Reviewer),
        email: None,
        groups: groups.iter().map(|g| g.to_string()).collect(),
        owner: None,
        gate: None,
        attributes: Default::default(),
    }
}

fn agent(name: &str, owner: &str, gate: Option<&str>) -> NewPrincipal {
    NewPrincipal {
        kind: PrincipalKind::Agent,
        name: name.into(),
        role: None,
        email: None,
        groups: vec![],
        owner: Some(owner.into()),
        gate: gate.map(str::to_owned),
        attributes: Default::default(),
    }
}

/// Adds a principal and logs in with its token, as the API would.
async fn login(engine: &Engine, new: NewPrincipal) -> (Caller, String) {
    let (_, _, token) = engine.add_principal(Operator::Console, new).await.unwrap();
    let caller = engine
        .authenticate(Presented::Bearer(&token))
        .await
        .unwrap();
    (caller, token)
}

fn read() -> SubmitRequest {
    SubmitRequest {
        action: "db.read".into(),
        resource: "customers".into(),
        ..Default::default()
    }
}

fn export() -> SubmitRequest {
    SubmitRequest {
        action: "db.export".into(),
        resource: "customers".into(),
        environment: Some("prod".into()),
        ..Default::default()
    }
}

// ---------------------------------------------------------------- event stream

/// A consumer stopped mid-stream and started again misses nothing and sees
/// nothing twice beyond its last acknowledged index.
async fn consumer_resumes_where_it_acknowledged(postgres: bool) {
    let gw = gateway(postgres).await;
    let e = &gw.engine;
    login(e, user("owner", &[])).await;
    let (bot, _) = login(e, agent("bot", "owner", None)).await;
    for _ in 0..10 {
        e.submit(&bot, read(), None).await.unwrap();
    }
    let total = e.ledger(Operator::Console).unwrap().size().await.unwrap();

    let mut seen: BTreeMap<u64, usize> = BTreeMap::new();
    let mut c = e.consumer("webhooks", StartAt::Beginning).await.unwrap();
    // two batches acknowledged, a third read but not acknowledged (crash)
    for round in 0..3 {
        let batch = c.next_batch(4).await.unwrap();
        assert_eq!(batch.len(), 4);
        for ev in &batch {
            *seen.entry(ev.index.unwrap()).or_default() += 1;
        }
        if round < 2 {
            c.ack(batch.last().unwrap().index.unwrap()).await.unwrap();
        }
    }
    assert_eq!(c.acknowledged(), 8);
    drop(c);

    // more happens while it is down
    for _ in 0..3 {
        e.submit(&bot, read(), None).await.unwrap();
    }
    let total = total + 3;

    let mut c = e.consumer("webhooks", StartAt::Now).await.unwrap();
    assert_eq!(c.position(), 8, "resumes at the first unacknowledged index");
    while c.position() < total {
        let batch = c.next_batch(5).await.unwrap();
        for ev in &batch {
            *seen.entry(ev.index.unwrap()).or_default() += 1;
        }
        c.ack(batch.last().unwrap().index.unwrap()).await.unwrap();
    }
    let indexes: Vec<u64> = seen.keys().copied().collect();
    assert_eq!(indexes, (0..total).collect::<Vec<_>>(), "nothing missed");
    for (i, n) in &seen {
        let expected = if (8..12).contains(i) { 2 } else { 1 };
        assert_eq!(*n, expected, "index {i} seen {n} times");
    }

    // a waiting consumer wakes on the next commit
    let waiting = tokio::spawn(async move {
        let batch = c.next_batch(10).await.unwrap();
        batch[0].clone()
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (r, _) = e.submit(&bot, read(), None).await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("woken by the commit")
        .unwrap();
    assert_eq!(first.kind, EventKind::RequestSubmitted);
    assert_eq!(first.request_id.as_deref(), Some(r.id.as_str()));
    assert_eq!(first.index, Some(total));

    // a new consumer starting now sees only what comes next
    let c2 = e.consumer("inbox", StartAt::Now).await.unwrap();
    assert_eq!(c2.position(), total + 1);
}

/// Exactly one holder delivers for an exclusive consumer.
async fn exclusive_consumer_has_one_holder(postgres: bool) {
    let gw = gateway(postgres).await;
    let e = &gw.engine;
    let lease = Duration::from_secs(30);
    let mut a = e
        .exclusive_consumer("slack", StartAt::Beginning, "replica-a", lease)
        .await
        .unwrap()
        .expect("first holder gets it");
    assert!(e
        .exclusive_consumer("slack", StartAt::Beginning, "replica-b", lease)
        .await
        .unwrap()
        .is_none());
    let batch = a.next_batch(1).await.unwrap();
    a.ack(batch[0].index.unwrap()).await.unwrap();
    a.renew().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_consumer_resumes_where_it_acknowledged() {
    consumer_resumes_where_it_acknowledged(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_consumer_resumes_where_it_acknowledged() {
    consumer_resumes_where_it_acknowledged(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_exclusive_consumer_has_one_holder() {
    exclusive_consumer_has_one_holder(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_exclusive_consumer_has_one_holder() {
    exclusive_consumer_has_one_holder(true).await;
}

// ---------------------------------------------------------------- identities

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_are_canonical_so_case_cannot_make_two_reviewers() {
    let gw = gateway(false).await;
    let e = &gw.engine;
    let (alice, _) = login(e, user("Alice", &["sre"])).await;
    assert_eq!(alice.name, "alice");
    assert!(matches!(
        e.add_principal(Operator::Console, user("ALICE", &["sre"]))
            .await,
        Err(EngineError::Duplicate(_))
    ));
    let (_, _) = login(e, user("olga", &[])).await;
    let (bot, _) = login(e, agent("Bot", "OLGA", None)).await;
    assert_eq!(bot.owner.as_deref(), Some("olga"));

    // on behalf of "ALICE": alice may not approve, whatever the spelling
    let mut body = export();
    body.on_behalf_of = Some("ALICE".into());
    let (r, _) = e.submit(&bot, body, None).await.unwrap();
    match e.review(&alice, &r.id, ReviewDecision::Approve, None).await {
        Err(EngineError::ReviewRefused(ReviewRefusal::SelfReview { relation, .. })) => {
            assert_eq!(relation, SelfRelation::OnBehalfOf)
        }
        other => panic!("expected a self-review refusal, got {other:?}"),
    }
    // the owner, spelled differently at registration, is still the owner
    let olga = Caller::trusted(
        e.list_principals(Operator::Console)
            .await
            .unwrap()
            .into_iter()
            .find(|p| p.name == "olga")
            .unwrap(),
        Channel::Cli,
    );
    assert!(matches!(
        e.review(&olga, &r.id, ReviewDecision::Deny, Some("x".into()))
            .await,
        Err(EngineError::ReviewRefused(ReviewRefusal::SelfReview {
            relation: SelfRelation::AgentOwner,
            ..
        }))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_owner_must_exist_and_be_a_user() {
    let gw = gateway(false).await;
    let e = &gw.engine;
    match e
        .add_principal(Operator::Console, agent("bot", "ghost", None))
        .await
    {
        Err(EngineError::Invalid(m)) => assert!(m.contains("`ghost` does not exist"), "{m}"),
        other => panic!("expected refusal, got {other:?}"),
    }
    login(e, user("olga", &[])).await;
    login(e, agent("bot", "olga", None)).await;
    match e
        .add_principal(Operator::Console, agent("bot2", "bot", None))
        .await
    {
        Err(EngineError::Invalid(m)) => assert!(m.contains("is an agent"), "{m}"),
        other => panic!("expected refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_credential_fails_while_the_other_works() {
    let gw = gateway(false).await;
    let e = &gw.engine;
    let (_, default_token) = login(e, user("alice", &["sre"])).await;
    let (ci, ci_token) = e
        .add_credential(
            Operator::Console,
            "Alice",
            NewCredential {
                name: "laptop".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(ci.principal, "alice");
    e.revoke_credential(Operator::Console, "alice", "default")
        .await
        .unwrap();
    assert!(matches!(
        e.authenticate(Presented::Bearer(&default_token)).await,
        Err(EngineError::Unauthenticated(_))
    ));
    let caller = e.authenticate(Presented::Bearer(&ci_token)).await.unwrap();
    assert_eq!(caller.name, "alice");
    assert_eq!(caller.credential().unwrap().name, "laptop");
    // revoking the principal ends every credential
    e.revoke_principal(Operator::Console, "alice")
        .await
        .unwrap();
    assert!(e.authenticate(Presented::Bearer(&ci_token)).await.is_err());
    // the audit trail has each step
    let kinds: Vec<EventKind> = e
        .ledger(Operator::Console)
        .unwrap()
        .entries(0, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|ev| ev.kind)
        .collect();
    for k in [
        EventKind::CredentialIssued,
        EventKind::CredentialRevoked,
        EventKind::PrincipalRevoked,
    ] {
        assert!(kinds.contains(&k), "{k} missing from {kinds:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_credential_is_refused() {
    let gw = gateway(false).await;
    let e = &gw.engine;
    login(e, user("alice", &[])).await;
    let (_, token) = e
        .add_credential(
            Operator::Console,
            "alice",
            NewCredential {
                name: "short".into(),
                gate: None,
                expires_in: Some(jiff::SignedDuration::from_millis(300)),
            },
        )
        .await
        .unwrap();
    e.authenticate(Presented::Bearer(&token)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    // refused even while the successful lookup is still cached
    assert!(matches!(
        e.authenticate(Presented::Bearer(&token)).await,
        Err(EngineError::Unauthenticated(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gate_comes_from_the_credential_not_the_body() {
    let gw = gateway(false).await;
    let e = &gw.engine;
    login(e, user("olga", &[])).await;
    let (bot, _) = login(e, agent("bot", "olga", Some("exec"))).await;
    assert_eq!(bot.bound_gate(), Some("exec"));

    // bound to exec, it cannot claim to be the mcp gate (and dodge a rule on it)
    let mut as_mcp = read();
    as_mcp.gate = Some("mcp".into());
    match e.submit(&bot, as_mcp, None).await {
        Err(EngineError::Forbidden(m)) => {
            assert!(m.contains("bound to gate `exec`"), "{m}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let refused = e
        .ledger(Operator::Console)
        .unwrap()
        .entries(0, 100)
        .await
        .unwrap()
        .into_iter()
        .find(|ev| ev.kind == EventKind::SubmissionRefused)
        .expect("the refused submission is recorded");
    assert_eq!(refused.actor, "agent:bot");

    // without a gate in the body it is the exec gate
    let (r, _) = e.submit(&bot, read(), None).await.unwrap();
    assert_eq!(r.gate.as_deref(), Some("exec"));
    assert_eq!(r.status, RequestStatus::Approved);

    // an unbound credential is the api gate, whatever it says; the claim is kept
    let (free, _) = login(e, agent("free", "olga", None)).await;
    let mut says_exec = read();
    says_exec.gate = Some("exec".into());
    let (r, _) = e.submit(&free, says_exec, None).await.unwrap();
    assert_eq!(r.gate.as_deref(), Some("api"));
    assert_eq!(r.claimed_gate.as_deref(), Some("exec"));
    // and claiming mcp cannot trigger (or dodge) the mcp rule either
    let mut says_mcp = read();
    says_mcp.gate = Some("mcp".into());
    let (r, _) = e.submit(&free, says_mcp, None).await.unwrap();
    assert_eq!(r.status, RequestStatus::Approved, "policy saw gate api");

    // an mcp-bound credential does see the mcp rule
    let (_, token) = e
        .add_credential(
            Operator::Console,
            "free",
            NewCredential {
                name: "mcp".into(),
                gate: Some("mcp".into()),
                expires_in: None,
            },
        )
        .await
        .unwrap();
    let as_mcp = e.authenticate(Presented::Bearer(&token)).await.unwrap();
    let (r, _) = e.submit(&as_mcp, read(), None).await.unwrap();
    assert_eq!(r.gate.as_deref(), Some("mcp"));
    assert_eq!(r.status, RequestStatus::Denied, "policy saw gate mcp");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_review_records_its_channel() {
    let gw = gateway(false).await;
    let e = &gw.engine;
    login(e, user("olga", &[])).await;
    let (bot, _) = login(e, agent("bot", "olga", None)).await;
    let (alice, _) = login(e, user("alice", &["sre"])).await;
    let (bob, _) = login(e, user("bob", &["sre"])).await;
    let alice = alice.declare_channel(Channel::Cli).unwrap();
    // a bearer token cannot pass itself off as a Slack click
    assert!(matches!(
        bob.clone().declare_channel(Channel::Slack),
        Err(EngineError::Invalid(_))
    ));
    let (r, _) = e.submit(&bot, export(), None).await.unwrap();
    let mut head = e.subscribe_head();
    head.borrow_and_update();
    e.review(&alice, &r.id, ReviewDecision::Approve, None)
        .await
        .unwrap();
    assert!(head.has_changed().unwrap(), "the review moved the stream");
    let r = e
        .review(&bob, &r.id, ReviewDecision::Approve, None)
        .await
        .unwrap();
    assert_eq!(r.status, RequestStatus::Approved);
    let channels: Vec<Option<Channel>> = r.reviews.iter().map(|v| v.channel).collect();
    assert_eq!(channels, vec![Some(Channel::Cli), Some(Channel::Api)]);
    let recorded: Vec<String> = e
        .ledger(Operator::Console)
        .unwrap()
        .entries(0, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|ev| ev.kind == EventKind::ReviewRecorded)
        .map(|ev| ev.detail["channel"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(recorded, ["cli", "api"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_with_a_version_returns_on_each_review() {
    let gw = gateway(false).await;
    let e = gw.engine.clone();
    login(&e, user("olga", &[])).await;
    let (bot, _) = login(&e, agent("bot", "olga", None)).await;
    let (alice, _) = login(&e, user("alice", &["sre"])).await;
    let (r, _) = e.submit(&bot, export(), None).await.unwrap();
    let waiter = {
        let (e, bot, id, v) = (e.clone(), bot.clone(), r.id.clone(), r.version);
        tokio::spawn(async move { e.wait(&bot, &id, Some(v), Duration::from_secs(30)).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    e.review(&alice, &r.id, ReviewDecision::Approve, None)
        .await
        .unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("the first approval wakes the waiter")
        .unwrap()
        .unwrap();
    assert_eq!(seen.status, RequestStatus::Pending);
    assert_eq!(seen.reviews.len(), 1);
    assert!(seen.version > r.version);
}
