#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and benches may panic on setup failures
//! Use-case tests over a real SQLite store with a manual clock.

use jiff::{SignedDuration, Timestamp};
use signoff_core::wire::{NewPrincipal, SubmitRequest};
use signoff_core::{
    Channel, Decision, EventKind, ManualClock, PrincipalKind, RequestStatus, ReviewDecision, Role,
};
use signoff_engine::principals::Operator;
use signoff_engine::{Caller, Engine, EngineConfig, EngineError};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const POLICY: &str = r#"
@id("export") @approval("sre:2") @ttl("10m")
permit(principal, action == Action::"db.export", resource);
@id("read")
permit(principal, action == Action::"db.read", resource);
"#;

struct Fixture {
    _dir: tempfile::TempDir,
    policies: std::path::PathBuf,
    clock: Arc<ManualClock>,
    engine: Arc<Engine>,
    agent: Caller,
    alice: Caller,
    bob: Caller,
    auditor: Caller,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    std::fs::write(policies.join("p.cedar"), POLICY).unwrap();
    let store = signoff_store::open(&format!("sqlite://{}", dir.path().join("t.db").display()))
        .await
        .unwrap();
    let clock = Arc::new(ManualClock::new(
        "2026-11-23T10:00:00Z".parse::<Timestamp>().unwrap(),
    ));
    let engine = Engine::start(
        store,
        clock.clone(),
        EngineConfig {
            policy_dir: policies.clone(),
            deadlines: Default::default(),
            ledger_key: Some(Arc::new(
                signoff_ledger::note::SigningKey::generate("test.example/log").unwrap(),
            )),
            witness_file: None,
        },
    )
    .await
    .unwrap();
    let add = |kind, name: &str, role, groups: &[&str], owner: Option<&str>| NewPrincipal {
        kind,
        name: name.into(),
        role,
        email: None,
        groups: groups.iter().map(|g| g.to_string()).collect(),
        owner: owner.map(str::to_owned),
        gate: None,
        attributes: Default::default(),
    };
    // the agent's owner must exist before the agent
    engine
        .add_principal(
            Operator::Console,
            add(PrincipalKind::User, "olga", Some(Role::Reviewer), &[], None),
        )
        .await
        .unwrap();
    let mut made = Vec::new();
    for new in [
        add(PrincipalKind::Agent, "bot", None, &[], Some("olga")),
        add(
            PrincipalKind::User,
            "alice",
            Some(Role::Reviewer),
            &["sre"],
            None,
        ),
        add(
            PrincipalKind::User,
            "bob",
            Some(Role::Reviewer),
            &["sre"],
            None,
        ),
        add(
            PrincipalKind::User,
            "audrey",
            Some(Role::Auditor),
            &["sre"],
            None,
        ),
    ] {
        made.push(Caller::trusted(
            engine
                .add_principal(Operator::Console, new)
                .await
                .unwrap()
                .0,
            Channel::Cli,
        ));
    }
    let mut it = made.into_iter();
    Fixture {
        _dir: dir,
        policies,
        clock,
        engine,
        agent: it.next().unwrap(),
        alice: it.next().unwrap(),
        bob: it.next().unwrap(),
        auditor: it.next().unwrap(),
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

fn dir_write(dir: &Path, text: &str) {
    std::fs::write(dir.join("p.cedar"), text).unwrap();
}

#[tokio::test]
async fn expiry_happens_on_time_without_anyone_asking() {
    let f = fixture().await;
    let (r, _) = f.engine.submit(&f.agent, export(), None).await.unwrap();
    assert_eq!(r.status, RequestStatus::Pending);
    assert_eq!(f.engine.expire_due().await.unwrap(), 0);
    f.clock.advance(SignedDuration::from_mins(10));
    assert_eq!(f.engine.expire_due().await.unwrap(), 1);
    let r = f.engine.get(&f.auditor, &r.id).await.unwrap();
    assert_eq!(r.status, RequestStatus::Expired);
    let events = f.engine.events(&f.auditor, 0, 100).await.unwrap();
    assert_eq!(events.last().unwrap().kind, EventKind::RequestExpired);
}

#[tokio::test]
async fn claim_rechecks_a_policy_that_changed_after_approval() {
    let f = fixture().await;
    let (r, _) = f.engine.submit(&f.agent, export(), None).await.unwrap();
    f.engine
        .review(&f.alice, &r.id, ReviewDecision::Approve, None)
        .await
        .unwrap();
    let r = f
        .engine
        .review(&f.bob, &r.id, ReviewDecision::Approve, None)
        .await
        .unwrap();
    assert_eq!(r.status, RequestStatus::Approved);
    dir_write(&f.policies, "@id(\"no-exports\") forbid(principal, action == Action::\"db.export\", resource);\n@id(\"all\") permit(principal, action, resource);\n");
    f.engine.reload_policies(Operator::Console).await.unwrap();
    let err = f
        .engine
        .claim(&f.agent, &r.id, &r.digest)
        .await
        .unwrap_err();
    assert!(matches!(err, EngineError::ClaimRefused(_)), "{err}");
    let r = f.engine.get(&f.agent, &r.id).await.unwrap();
    assert_eq!(r.status, RequestStatus::Denied);
    assert_eq!(r.verdict.decision, Decision::Deny);
    assert_eq!(r.verdict.policy_ids, vec!["no-exports".to_string()]);
}

#[tokio::test]
async fn bad_policy_reload_keeps_old_set_and_is_recorded() {
    let f = fixture().await;
    let before = f.engine.policy_info();
    dir_write(
        &f.policies,
        "permit(principal, action, resource) when { context.x > };\n",
    );
    let err = f
        .engine
        .reload_policies(Operator::Console)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("p.cedar:1:"), "{err}");
    assert_eq!(f.engine.policy_info(), before);
    let (r, _) = f.engine.submit(&f.agent, export(), None).await.unwrap();
    assert_eq!(r.verdict.decision, Decision::ApprovalRequired);
    let events = f.engine.events(&f.auditor, 0, 100).await.unwrap();
    assert!(events.iter().any(|e| e.kind == EventKind::PolicySetRejected
        && e.reason.as_deref().is_some_and(|r| r.contains("p.cedar"))));
}

#[tokio::test]
async fn wait_returns_when_decided_not_by_polling() {
    let f = fixture().await;
    let (r, _) = f.engine.submit(&f.agent, export(), None).await.unwrap();
    let engine = f.engine.clone();
    let (agent, id) = (f.agent.clone(), r.id.clone());
    let waiter = tokio::spawn(async move {
        engine
            .wait(&agent, &id, None, Duration::from_secs(30))
            .await
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiter.is_finished());
    f.engine
        .review(&f.alice, &r.id, ReviewDecision::Deny, Some("no".into()))
        .await
        .unwrap();
    let decided = tokio::time::timeout(Duration::from_secs(2), waiter)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(decided.status, RequestStatus::Denied);
}

#[tokio::test]
async fn idempotent_submission() {
    let f = fixture().await;
    let key = Some("k1".to_string());
    let (a, _) = f
        .engine
        .submit(&f.agent, export(), key.clone())
        .await
        .unwrap();
    let (b, how) = f
        .engine
        .submit(&f.agent, export(), key.clone())
        .await
        .unwrap();
    assert_eq!(a.id, b.id);
    assert_eq!(how, signoff_engine::Submitted::Replayed);
    let mut other = export();
    other.resource = "payments".into();
    assert!(matches!(
        f.engine.submit(&f.agent, other, key).await,
        Err(EngineError::IdempotencyMismatch { .. })
    ));
}

#[tokio::test]
async fn auditors_cannot_submit_and_agents_see_only_their_own() {
    let f = fixture().await;
    assert!(matches!(
        f.engine.submit(&f.auditor, export(), None).await,
        Err(EngineError::Forbidden(_))
    ));
    let (mine, _) = f.engine.submit(&f.alice, export(), None).await.unwrap();
    assert!(matches!(
        f.engine.get(&f.agent, &mine.id).await,
        Err(EngineError::NotFound(_))
    ));
    let listed = f.engine.list(&f.agent, Default::default()).await.unwrap();
    assert!(listed.is_empty());
    // alice cannot approve her own request; bob alone is not enough
    assert!(f
        .engine
        .review(&f.alice, &mine.id, ReviewDecision::Approve, None)
        .await
        .is_err());
    let r = f
        .engine
        .review(&f.bob, &mine.id, ReviewDecision::Approve, None)
        .await
        .unwrap();
    assert_eq!(r.status, RequestStatus::Pending);
}

#[tokio::test]
async fn checkpoints_are_signed_consistent_and_prove_inclusion() {
    use signoff_ledger::{leaf, merkle, note::Verifier};
    let f = fixture().await;
    for _ in 0..3 {
        f.engine.submit(&f.agent, export(), None).await.unwrap();
    }
    let first = f.engine.checkpoint_now().await.unwrap().unwrap();
    assert!(
        f.engine.checkpoint_now().await.unwrap().is_none(),
        "nothing new to sign"
    );
    for _ in 0..5 {
        f.engine.submit(&f.agent, export(), None).await.unwrap();
    }
    let second = f.engine.checkpoint_now().await.unwrap().unwrap();
    assert!(second.size > first.size);

    let verifier =
        Verifier::from_vkey(&f.engine.ledger(Operator::Console).unwrap().vkey().unwrap()).unwrap();
    let cp = verifier.verify_note(&second.note).unwrap();
    assert_eq!((cp.size, cp.root), (second.size, second.root));

    let proof = f
        .engine
        .ledger(Operator::Console)
        .unwrap()
        .consistency_proof(first.size, second.size)
        .await
        .unwrap();
    merkle::verify_consistency(first.size, second.size, &first.root, &second.root, &proof).unwrap();

    let events = f.engine.events(&f.auditor, 0, 1000).await.unwrap();
    for (i, e) in events.iter().enumerate().take(second.size as usize) {
        let proof = f
            .engine
            .ledger(Operator::Console)
            .unwrap()
            .inclusion_proof(i as u64, second.size)
            .await
            .unwrap();
        merkle::verify_inclusion(
            &merkle::leaf_hash(&leaf::encode(e)),
            i as u64,
            second.size,
            &proof,
            &second.root,
        )
        .unwrap();
    }
    assert!(f
        .engine
        .ledger(Operator::Console)
        .unwrap()
        .inclusion_proof(0, second.size + 100)
        .await
        .is_err());
}

/// The audit use cases: auditors (and the console) only; a verification
/// run is recorded with its typed findings; the report rests on a signed
/// checkpoint and counts what happened.
#[tokio::test]
async fn audit_use_cases_are_for_auditors_and_verification_is_recorded() {
    let f = fixture().await;
    let (r, _) = f.engine.submit(&f.agent, export(), None).await.unwrap();
    f.engine
        .review(&f.alice, &r.id, ReviewDecision::Deny, Some("no".into()))
        .await
        .unwrap();
    let since: Timestamp = "2026-11-23T00:00:00Z".parse().unwrap();
    let until: Timestamp = "2026-11-24T00:00:00Z".parse().unwrap();
    for who in [&f.agent, &f.alice] {
        assert!(matches!(
            f.engine.verify_ledger_recorded(Operator::Caller(who)).await,
            Err(EngineError::Forbidden(_))
        ));
        assert!(matches!(
            f.engine
                .audit_report(Operator::Caller(who), since, until)
                .await,
            Err(EngineError::Forbidden(_))
        ));
        assert!(matches!(
            f.engine
                .audit_bundle(Operator::Caller(who), since, until)
                .await,
            Err(EngineError::Forbidden(_))
        ));
    }
    let (summary, index) = f
        .engine
        .verify_ledger_recorded(Operator::Caller(&f.auditor))
        .await
        .unwrap();
    assert!(summary.is_clean(), "{summary:?}");
    assert!(summary.checkpoints >= 1, "a checkpoint was signed first");
    let events = f
        .engine
        .ledger(Operator::Console)
        .unwrap()
        .entries(index.unwrap(), 1)
        .await
        .unwrap();
    assert_eq!(events[0].kind, EventKind::LedgerVerified);
    assert_eq!(events[0].actor, "user:audrey");
    assert_eq!(events[0].detail["findings"], serde_json::json!([]));

    let report = f
        .engine
        .audit_report(Operator::Caller(&f.auditor), since, until)
        .await
        .unwrap();
    assert_eq!(report.counts.requests, 1);
    assert_eq!(report.counts.denied, 1);
    assert_eq!(report.requests[0].denials[0].reviewer, "alice");
    assert!(report.checkpoint.size >= report.ledger.last_index.unwrap());
    let bundle = f
        .engine
        .audit_bundle(Operator::Caller(&f.auditor), since, until)
        .await
        .unwrap();
    assert_eq!(bundle.entries.len(), bundle.proofs.len());
    assert!(bundle.checkpoint_size > bundle.entries.last().unwrap().0);
}

/// The scheduled self-check replays the ledger: clean, it says how much it
/// verified; after an entry is edited behind the gateway's back, it reports
/// the finding (health, the findings count) without stopping decisions.
#[tokio::test]
async fn ledger_selfcheck_reports_an_edited_entry() {
    use signoff_engine::components::{AutoToggle, ComponentsConfig, Periodic, Toggle};
    let f = fixture().await;
    for _ in 0..3 {
        f.engine.submit(&f.agent, export(), None).await.unwrap();
    }
    f.engine.checkpoint_now().await.unwrap();
    let config = ComponentsConfig {
        expiry: Toggle { enabled: false },
        checkpointer: Toggle { enabled: false },
        replica_follower: AutoToggle {
            enabled: Some(false),
        },
        credential_usage: Periodic {
            enabled: false,
            interval: None,
        },
        ledger_selfcheck: Periodic {
            enabled: true,
            interval: Some("50ms".into()),
        },
    };
    config.validate().unwrap();
    let running = f.engine.start_components(config.build(false).unwrap());
    let health = |want: &'static str| {
        let engine = f.engine.clone();
        async move {
            // bounded: the check runs every 50 ms; a minute means it never ran
            for _ in 0..1200 {
                let r = engine.readiness().await;
                if let Some(h) = r.components.get("ledger-selfcheck") {
                    if h.status == want && h.detail != "waiting for the first run" {
                        return h.detail.clone();
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("ledger-selfcheck never became {want}");
        }
    };
    let detail = health("ok").await;
    assert!(detail.contains("entries verified"), "{detail}");
    assert_eq!(f.engine.ledger_selfcheck_findings(), 0);

    // an attacker with the database edits entry 1
    let url = format!("sqlite://{}", f._dir.path().join("t.db").display());
    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    sqlx::query("DROP TRIGGER audit_events_no_update")
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query("UPDATE audit_events SET actor = 'agent:someone-else' WHERE idx = 1")
        .execute(&mut conn)
        .await
        .unwrap();
    let detail = health("failing").await;
    assert!(detail.contains("entry 1 was edited"), "{detail}");
    assert!(f.engine.ledger_selfcheck_findings() >= 1);
    // advisory: the replica stays ready for decisions
    assert_eq!(f.engine.readiness().await.status, "ready");
    running.stop().await;
}

fn read() -> SubmitRequest {
    SubmitRequest {
        action: "db.read".into(),
        resource: "customers".into(),
        ..Default::default()
    }
}

/// The digest the gate computes for `body` submitted by `caller`.
fn local_digest(caller: &Caller, body: &SubmitRequest) -> signoff_core::Digest {
    body.action_for(caller.reference()).digest()
}

#[tokio::test]
async fn an_allowed_submission_claims_at_once_in_one_commit() {
    let f = fixture().await;
    let before = f.engine.events(&f.auditor, 0, 1000).await.unwrap().len();
    let mut body = read();
    body.claim_digest = Some(local_digest(&f.agent, &body));
    let (r, how) = f
        .engine
        .submit(&f.agent, body.clone(), Some("k1".into()))
        .await
        .unwrap();
    assert_eq!(how, signoff_engine::Submitted::Created);
    assert_eq!(r.status, RequestStatus::Executing);
    let events = f.engine.events(&f.auditor, 0, 1000).await.unwrap();
    let kinds: Vec<_> = events[before..].iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [EventKind::RequestSubmitted, EventKind::RequestClaimed]
    );
    // one use: a claim of the same request now is refused
    let again = f.engine.claim(&f.agent, &r.id, &r.digest).await;
    assert!(
        matches!(again, Err(EngineError::ClaimRefused(_))),
        "{again:?}"
    );
    // a replay returns the request as it is and claims nothing
    let (replayed, how) = f
        .engine
        .submit(&f.agent, body, Some("k1".into()))
        .await
        .unwrap();
    assert_eq!(how, signoff_engine::Submitted::Replayed);
    assert_eq!(replayed.id, r.id);
    assert_eq!(replayed.status, RequestStatus::Executing);
}

#[tokio::test]
async fn a_claim_at_once_with_another_digest_is_refused_and_recorded() {
    let f = fixture().await;
    let mut body = read();
    let mut other = read();
    other.resource = "orders".into();
    body.claim_digest = Some(local_digest(&f.agent, &other));
    let err = f.engine.submit(&f.agent, body, None).await.unwrap_err();
    assert!(
        matches!(
            err,
            EngineError::ClaimRefused(signoff_core::ClaimRefusal::DigestMismatch { .. })
        ),
        "{err:?}"
    );
    // the request and the refused attempt are on record; nothing is claimed
    let events = f.engine.events(&f.auditor, 0, 1000).await.unwrap();
    let last: Vec<_> = events.iter().rev().take(2).map(|e| e.kind).collect();
    assert_eq!(last, [EventKind::ClaimRefused, EventKind::RequestSubmitted]);
    let id = events.last().unwrap().request_id.clone().unwrap();
    let r = f.engine.get(&f.auditor, &id).await.unwrap();
    assert_eq!(r.status, RequestStatus::Approved);
    // a malformed digest is an input error before anything is recorded
    let mut bad = read();
    bad.claim_digest = Some(signoff_core::Digest("nothex".into()));
    let n = f.engine.events(&f.auditor, 0, 1000).await.unwrap().len();
    assert!(f.engine.submit(&f.agent, bad, None).await.is_err());
    assert_eq!(f.engine.events(&f.auditor, 0, 1000).await.unwrap().len(), n);
}

#[tokio::test]
async fn a_claim_at_once_waits_for_approval_when_the_policy_asks_for_it() {
    let f = fixture().await;
    let mut body = export();
    body.claim_digest = Some(local_digest(&f.agent, &body));
    let (r, _) = f.engine.submit(&f.agent, body, None).await.unwrap();
    assert_eq!(r.status, RequestStatus::Pending);
    assert_eq!(r.claimed_at, None);
    for reviewer in [&f.alice, &f.bob] {
        f.engine
            .review(reviewer, &r.id, ReviewDecision::Approve, None)
            .await
            .unwrap();
    }
    let claimed = f.engine.claim(&f.agent, &r.id, &r.digest).await.unwrap();
    assert_eq!(claimed.status, RequestStatus::Executing);
}
