#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on setup failures
//! The gate session against the real gateway (engine, SQLite store, axum
//! server) running in this process, and — only for gateway failures the real
//! server cannot be made to produce on cue (a 503 mid-wait, a 500 on claim) —
//! a scripted stand-in that replays answers the real server gave.

use serde_json::{Map, Value};
use signoff_client::Client;
use signoff_core::wire::{NewPrincipal, OutcomeBody, RequestView, SubmitRequest};
use signoff_core::{
    Digest, PrincipalKind, PrincipalRef, RequestStatus, ReviewDecision, Role, SystemClock,
};
use signoff_engine::principals::Operator;
use signoff_engine::{Engine, EngineConfig};
use signoff_gates::session::{Execution, GateAction, Progress, Session, SessionEnd, Silent, Start};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

const POLICY: &str = r#"
@id("read") permit(principal, action == Action::"t.read", resource);
@id("drop") @reason("dropping is never allowed")
forbid(principal, action == Action::"t.drop", resource);
@id("drop-permit") permit(principal, action == Action::"t.drop", resource);
@id("export") @approval("sre:2") @ttl("10m")
permit(principal, action == Action::"t.export", resource);
@id("quick") @approval("sre:1") @ttl("1s")
permit(principal, action == Action::"t.quick", resource);
"#;

/// A gateway serving on a free port, with tokens for its principals.
struct Gateway {
    _dir: tempfile::TempDir,
    url: String,
    tokens: HashMap<&'static str, String>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Gateway {
    async fn start() -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        let policies = dir.path().join("policies");
        std::fs::create_dir_all(&policies).unwrap();
        std::fs::write(policies.join("p.cedar"), POLICY).unwrap();
        let store = signoff_store::open(&format!("sqlite://{}", dir.path().join("t.db").display()))
            .await
            .unwrap();
        let engine = Engine::start(
            store,
            Arc::new(SystemClock),
            EngineConfig {
                policy_dir: policies,
                deadlines: Default::default(),
                ledger_key: None,
                witness_file: None,
            },
        )
        .await
        .unwrap();
        let mut tokens = HashMap::new();
        for (name, kind, role, groups, owner) in [
            (
                "alice",
                PrincipalKind::User,
                Some(Role::Reviewer),
                vec!["sre"],
                None,
            ),
            (
                "bob",
                PrincipalKind::User,
                Some(Role::Reviewer),
                vec!["sre"],
                None,
            ),
            (
                "olga",
                PrincipalKind::User,
                Some(Role::Reviewer),
                vec![],
                None,
            ),
            // last: its owner must exist first
            ("bot", PrincipalKind::Agent, None, vec![], Some("olga")),
        ] {
            let new = NewPrincipal {
                kind,
                name: name.into(),
                role,
                email: None,
                groups: groups.into_iter().map(str::to_owned).collect(),
                owner: owner.map(str::to_owned),
                gate: None,
                attributes: Default::default(),
            };
            let (_, _, token) = engine.add_principal(Operator::Console, new).await.unwrap();
            tokens.insert(name, token);
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(signoff_server::serve(
            engine,
            listener,
            Vec::new(),
            async move {
                let _ = stopped.await;
            },
        ));
        Gateway {
            _dir: dir,
            url,
            tokens,
            _stop: stop,
        }
    }

    fn client(&self, who: &str) -> Client {
        Client::new(&self.url, &self.tokens[who]).unwrap()
    }
}

fn body(action: &str) -> SubmitRequest {
    let mut context = Map::new();
    context.insert("command".into(), Value::String("echo hi".into()));
    SubmitRequest {
        action: action.into(),
        resource: "customers".into(),
        environment: Some("prod".into()),
        context,
        justification: Some("tests".into()),
        on_behalf_of: None,
        gate: Some("test".into()),
        claim_digest: None,
    }
}

/// A gate action that counts its runs and digests `what` — normally the
/// submitted request, or something else to play a gate that runs another
/// action than the approved one.
#[derive(Clone)]
struct Probe {
    what: SubmitRequest,
    runs: Arc<AtomicUsize>,
}

impl Probe {
    fn new(what: SubmitRequest) -> Probe {
        Probe {
            what,
            runs: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn runs(&self) -> usize {
        self.runs.load(Ordering::SeqCst)
    }
}

impl GateAction for Probe {
    type Output = &'static str;

    fn digest(&self, principal: &PrincipalRef) -> Result<Digest, String> {
        Ok(self.what.action_for(principal.clone()).digest())
    }

    async fn run(self, claimed: &RequestView) -> Execution<&'static str> {
        assert_eq!(claimed.status, RequestStatus::Executing);
        self.runs.fetch_add(1, Ordering::SeqCst);
        Execution {
            outcome: OutcomeBody {
                exit_code: Some(0),
                signal: None,
                duration_ms: 1,
                output_sha256: None,
                summary: Some("probe ran".into()),
            },
            output: "ran",
        }
    }
}

/// An observer that forwards every event to the test.
fn events() -> (
    impl FnMut(&Progress) + Send,
    mpsc::UnboundedReceiver<Progress>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    (
        move |e: &Progress| {
            let _ = tx.send(e.clone());
        },
        rx,
    )
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Progress>) -> Progress {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("no progress event within 10s")
        .expect("session ended without this event")
}

/// A session of `probe` submitting `t.export` (two approvals needed), in
/// the background, claiming at once as `claim_as` if given; its progress
/// comes through the receiver.
fn spawn_export(
    client: &Client,
    probe: &Probe,
    claim_as: Option<PrincipalRef>,
) -> (
    tokio::task::JoinHandle<SessionEnd<&'static str>>,
    mpsc::UnboundedReceiver<Progress>,
) {
    let (mut observer, rx) = events();
    let (client, probe) = (client.clone(), probe.clone());
    let session = tokio::spawn(async move {
        Session::new(&client)
            .claim_at_once(claim_as)
            .run(
                Start::submit(body("t.export")),
                probe,
                &mut observer,
                never(),
            )
            .await
    });
    (session, rx)
}

fn never() -> std::future::Pending<()> {
    std::future::pending()
}

#[tokio::test]
async fn allowed_action_runs_once_and_its_outcome_is_recorded() {
    let gw = Gateway::start().await;
    let client = gw.client("bot");
    let probe = Probe::new(body("t.read"));
    let (mut observer, mut rx) = events();
    let end = Session::new(&client)
        .run(
            Start::submit(body("t.read")),
            probe.clone(),
            &mut observer,
            never(),
        )
        .await;
    let SessionEnd::Ran {
        id,
        output,
        report_error,
        ..
    } = end
    else {
        panic!("{end:?}")
    };
    assert_eq!((output, probe.runs()), ("ran", 1));
    assert!(report_error.is_none(), "{report_error:?}");
    assert!(
        matches!(next(&mut rx).await, Progress::Submitted(v) if v.status == RequestStatus::Approved)
    );
    assert!(matches!(next(&mut rx).await, Progress::Claimed(v) if v.id == id));
    let r = client.get_request(&id).await.unwrap();
    assert_eq!(r.status, RequestStatus::Executed);
    assert_eq!(
        r.outcome.and_then(|o| o.summary).as_deref(),
        Some("probe ran")
    );
}

#[tokio::test]
async fn each_review_is_reported_as_it_lands_then_the_action_runs() {
    let gw = Gateway::start().await;
    let client = gw.client("bot");
    let probe = Probe::new(body("t.export"));
    let (session, mut rx) = spawn_export(&client, &probe, None);
    let Progress::Submitted(view) = next(&mut rx).await else {
        panic!("first event is not Submitted")
    };
    assert_eq!(view.status, RequestStatus::Pending);
    let id = view.id;

    gw.client("alice")
        .review(&id, ReviewDecision::Approve, None)
        .await
        .unwrap();
    match next(&mut rx).await {
        Progress::ReviewLanded {
            id: landed,
            review,
            approved_so_far,
            requirement,
        } => {
            assert_eq!(landed, id);
            assert_eq!(review.reviewer, "alice");
            assert_eq!(approved_so_far, ["alice"]);
            assert_eq!(requirement.map(|r| r.to_string()).as_deref(), Some("sre:2"));
        }
        other => panic!("expected alice's review, got {other:?}"),
    }
    // one approval of two: still waiting, nothing ran
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!session.is_finished());
    assert_eq!(probe.runs(), 0);

    gw.client("bob")
        .review(&id, ReviewDecision::Approve, Some("fine".into()))
        .await
        .unwrap();
    assert!(matches!(
        next(&mut rx).await,
        Progress::ReviewLanded { review, approved_so_far, .. }
            if review.reviewer == "bob" && approved_so_far == ["alice", "bob"]
    ));
    assert!(
        matches!(next(&mut rx).await, Progress::Decided(v) if v.status == RequestStatus::Approved)
    );
    assert!(matches!(next(&mut rx).await, Progress::Claimed(_)));
    let end = session.await.unwrap();
    assert!(matches!(end, SessionEnd::Ran { .. }), "{end:?}");
    assert_eq!(probe.runs(), 1);
}

#[tokio::test]
async fn denials_end_the_session_with_who_and_why() {
    let gw = Gateway::start().await;
    let client = gw.client("bot");

    let probe = Probe::new(body("t.drop"));
    let end = Session::new(&client)
        .run(
            Start::submit(body("t.drop")),
            probe.clone(),
            &mut Silent,
            never(),
        )
        .await;
    match end {
        SessionEnd::Denied { status, reason, .. } => {
            assert_eq!(status, RequestStatus::Denied);
            assert_eq!(reason, "denied by policy drop: dropping is never allowed");
        }
        other => panic!("{other:?}"),
    }

    let probe = Probe::new(body("t.export"));
    let (session, mut rx) = spawn_export(&client, &probe, None);
    let Progress::Submitted(view) = next(&mut rx).await else {
        panic!()
    };
    gw.client("bob")
        .review(&view.id, ReviewDecision::Deny, Some("not now".into()))
        .await
        .unwrap();
    match session.await.unwrap() {
        SessionEnd::Denied { id, reason, .. } => {
            assert_eq!(id, view.id);
            assert_eq!(reason, "denied by bob: not now");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(probe.runs(), 0);
}

#[tokio::test]
async fn a_claim_for_another_action_is_refused_and_nothing_runs() {
    let gw = Gateway::start().await;
    let client = gw.client("bot");
    let mut other = body("t.read");
    other
        .context
        .insert("command".into(), Value::String("rm -rf /".into()));
    let probe = Probe::new(other);
    let end = Session::new(&client)
        .run(
            Start::submit(body("t.read")),
            probe.clone(),
            &mut Silent,
            never(),
        )
        .await;
    let SessionEnd::ClaimRefused { id, error } = end else {
        panic!("{end:?}")
    };
    assert_eq!(error.problem_slug(), Some("digest-mismatch"), "{error}");
    assert_eq!(probe.runs(), 0);
    // the approval is not consumed by a refused claim, and resuming it with
    // the right action runs it — once
    assert_eq!(
        client.get_request(&id).await.unwrap().status,
        RequestStatus::Approved
    );
    let right = Probe::new(body("t.read"));
    let resume = || Start::Resume { id: id.clone() };
    let end = Session::new(&client)
        .run(resume(), right.clone(), &mut Silent, never())
        .await;
    assert!(matches!(end, SessionEnd::Ran { .. }), "{end:?}");
    let end = Session::new(&client)
        .run(resume(), right.clone(), &mut Silent, never())
        .await;
    assert!(
        matches!(
            end,
            SessionEnd::AlreadyUsed {
                status: RequestStatus::Executed,
                ..
            }
        ),
        "{end:?}"
    );
    assert_eq!(right.runs(), 1);
}

#[tokio::test]
async fn an_interrupt_while_waiting_cancels_the_request() {
    let gw = Gateway::start().await;
    let client = gw.client("bot");
    let probe = Probe::new(body("t.export"));
    let (mut observer, mut rx) = events();
    let (interrupt, interrupted) = tokio::sync::oneshot::channel::<()>();
    let session = {
        let (client, probe) = (client.clone(), probe.clone());
        tokio::spawn(async move {
            Session::new(&client)
                .run(
                    Start::submit(body("t.export")),
                    probe,
                    &mut observer,
                    async move {
                        let _ = interrupted.await;
                    },
                )
                .await
        })
    };
    let Progress::Submitted(view) = next(&mut rx).await else {
        panic!()
    };
    interrupt.send(()).unwrap();
    let end = session.await.unwrap();
    assert!(
        matches!(&end, SessionEnd::Interrupted { id: Some(id), cancel_error: None } if *id == view.id),
        "{end:?}"
    );
    let r = client.get_request(&view.id).await.unwrap();
    assert_eq!(r.status, RequestStatus::Cancelled);
    assert_eq!(probe.runs(), 0);
}

#[tokio::test]
async fn waiting_ends_when_the_gate_gives_up_or_the_request_expires() {
    let gw = Gateway::start().await;
    let client = gw.client("bot");
    let probe = Probe::new(body("t.export"));
    let end = Session::new(&client)
        .give_up_after(Some(Duration::from_millis(1200)))
        .run(
            Start::submit(body("t.export")),
            probe.clone(),
            &mut Silent,
            never(),
        )
        .await;
    let SessionEnd::GaveUp { id, waited } = end else {
        panic!("{end:?}")
    };
    assert!(waited >= Duration::from_millis(1200), "{waited:?}");
    assert_eq!(
        client.get_request(&id).await.unwrap().status,
        RequestStatus::Pending
    );

    let end = Session::new(&client)
        .run(
            Start::submit(body("t.quick")),
            probe.clone(),
            &mut Silent,
            never(),
        )
        .await;
    assert!(
        matches!(&end, SessionEnd::Expired { status: RequestStatus::Expired, reason, .. } if reason == "no decision before the deadline"),
        "{end:?}"
    );
    assert_eq!(probe.runs(), 0);
}

#[tokio::test]
async fn an_unreachable_gateway_or_a_refused_token_runs_nothing() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let client = Client::new(&format!("http://127.0.0.1:{port}"), "t").unwrap();
    let probe = Probe::new(body("t.read"));
    let end = Session::new(&client)
        .run(
            Start::submit(body("t.read")),
            probe.clone(),
            &mut Silent,
            never(),
        )
        .await;
    assert!(
        matches!(&end, SessionEnd::Unavailable { id: None, error } if error.is_transient()),
        "{end:?}"
    );

    let gw = Gateway::start().await;
    let client = Client::new(&gw.url, "not-a-token").unwrap();
    let end = Session::new(&client)
        .run(
            Start::submit(body("t.read")),
            probe.clone(),
            &mut Silent,
            never(),
        )
        .await;
    assert!(
        matches!(&end, SessionEnd::Rejected { error, .. } if error.status() == Some(401)),
        "{end:?}"
    );
    let end = Session::new(&gw.client("bot"))
        .run(
            Start::Resume {
                id: "01J00000000000000000000000".into(),
            },
            probe.clone(),
            &mut Silent,
            never(),
        )
        .await;
    assert!(
        matches!(&end, SessionEnd::Rejected { id: Some(_), error } if error.status() == Some(404)),
        "{end:?}"
    );
    assert_eq!(probe.runs(), 0);
}

/// A stand-in gateway that answers each call with the next scripted answer
/// and records what it was asked.
struct Scripted {
    url: String,
    asked: Arc<Mutex<Vec<String>>>,
}

impl Scripted {
    async fn start(answers: Vec<(u16, String)>) -> Scripted {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let asked = Arc::new(Mutex::new(Vec::new()));
        let log = asked.clone();
        let mut answers: VecDeque<(u16, String)> = answers.into();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                // read the head and the body (Content-Length)
                let text = loop {
                    let n = sock.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        break String::from_utf8_lossy(&head).into_owned();
                    }
                    head.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&head).into_owned();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let len = text
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if head.len() >= end + 4 + len {
                            break text;
                        }
                    }
                };
                log.lock()
                    .unwrap()
                    .push(text.lines().next().unwrap_or_default().to_owned());
                let (status, body) = answers
                    .pop_front()
                    .unwrap_or((500, "script exhausted".into()));
                let kind = if status < 300 {
                    "application/json"
                } else {
                    "text/plain"
                };
                let answer = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: {kind}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(answer.as_bytes()).await;
            }
        });
        Scripted { url, asked }
    }

    fn asked(&self) -> Vec<String> {
        self.asked.lock().unwrap().clone()
    }
}

#[tokio::test]
async fn the_session_waits_through_an_outage_but_a_failed_claim_runs_nothing() {
    // real answers, recorded from the real gateway
    let gw = Gateway::start().await;
    let pending = gw
        .client("bot")
        .submit(&body("t.export"), "k1")
        .await
        .unwrap();
    let mut approved = pending.clone();
    approved.status = RequestStatus::Approved;
    approved.version += 1;
    let json = |v: &RequestView| serde_json::to_string(v).unwrap();
    let stand_in = Scripted::start(vec![
        (201, json(&pending)),
        (503, "database unavailable".into()),
        (503, "database unavailable".into()),
        (200, json(&approved)),
        (500, "boom".into()),
    ])
    .await;
    let client = Client::new(&stand_in.url, "t").unwrap();
    let probe = Probe::new(body("t.export"));
    let (mut observer, mut rx) = events();
    let end = Session::new(&client)
        .run(
            Start::submit(body("t.export")),
            probe.clone(),
            &mut observer,
            never(),
        )
        .await;
    assert!(
        matches!(&end, SessionEnd::Unavailable { id: Some(id), error } if *id == pending.id && error.status() == Some(500)),
        "{end:?}"
    );
    assert_eq!(probe.runs(), 0);
    let mut seen = Vec::new();
    while let Ok(e) = rx.try_recv() {
        seen.push(match e {
            Progress::Submitted(_) => "submitted".to_owned(),
            Progress::Reconnecting { attempt, .. } => format!("reconnecting {attempt}"),
            Progress::Reconnected { .. } => "reconnected".to_owned(),
            Progress::Decided(_) => "decided".to_owned(),
            other => format!("{other:?}"),
        });
    }
    assert_eq!(
        seen,
        [
            "submitted",
            "reconnecting 1",
            "reconnecting 2",
            "reconnected",
            "decided"
        ]
    );
    let wait = format!(
        "GET /v1/requests/{}/wait?timeout=30&since_version={} HTTP/1.1",
        pending.id, pending.version
    );
    assert_eq!(
        stand_in.asked(),
        [
            "POST /v1/requests HTTP/1.1".to_owned(),
            wait.clone(),
            wait.clone(),
            wait,
            format!("POST /v1/requests/{}/claim HTTP/1.1", pending.id),
        ]
    );
}

#[test]
fn the_session_future_can_be_spawned() {
    fn assert_send<F: std::future::Future + Send>(_: F) {}
    let client = Client::new("http://127.0.0.1:1", "t").unwrap();
    let session = Session::new(&client);
    let mut observer = Silent;
    assert_send(session.run(
        Start::submit(body("t.read")),
        Probe::new(body("t.read")),
        &mut observer,
        never(),
    ));
}

#[tokio::test]
async fn claiming_at_once_runs_an_allowed_action_once_and_never_a_replayed_claim() {
    let gw = Gateway::start().await;
    let client = gw.client("bot");
    let me = client.whoami().await.unwrap().principal.reference();
    let probe = Probe::new(body("t.read"));
    let (mut observer, mut rx) = events();
    let start = || Start::Submit {
        request: Box::new(body("t.read")),
        idempotency_key: "claim-at-once-1".into(),
    };
    let end = Session::new(&client)
        .claim_at_once(Some(me.clone()))
        .run(start(), probe.clone(), &mut observer, never())
        .await;
    let SessionEnd::Ran { id, .. } = end else {
        panic!("{end:?}")
    };
    assert_eq!(probe.runs(), 1);
    // the submission's answer is already the claim
    assert!(
        matches!(next(&mut rx).await, Progress::Submitted(v) if v.status == RequestStatus::Executing)
    );
    assert!(matches!(next(&mut rx).await, Progress::Claimed(v) if v.id == id));
    assert_eq!(
        client.get_request(&id).await.unwrap().status,
        RequestStatus::Executed
    );
    // the same idempotency key finds that request: it ran, it does not run again
    let end = Session::new(&client)
        .claim_at_once(Some(me.clone()))
        .run(start(), probe.clone(), &mut Silent, never())
        .await;
    assert!(
        matches!(&end, SessionEnd::AlreadyUsed { id: used, .. } if *used == id),
        "{end:?}"
    );
    assert_eq!(probe.runs(), 1);

    // an action other than the one submitted: refused by the gateway, not run
    let mut other = body("t.read");
    other
        .context
        .insert("command".into(), Value::String("rm -rf /".into()));
    let wrong = Probe::new(other);
    let end = Session::new(&client)
        .claim_at_once(Some(me.clone()))
        .run(
            Start::submit(body("t.read")),
            wrong.clone(),
            &mut Silent,
            never(),
        )
        .await;
    let SessionEnd::Rejected { error, .. } = &end else {
        panic!("{end:?}")
    };
    assert_eq!(error.problem_slug(), Some("digest-mismatch"), "{error}");
    assert_eq!(wrong.runs(), 0);
}

#[tokio::test]
async fn claiming_at_once_still_waits_for_the_approvals_a_policy_asks_for() {
    let gw = Gateway::start().await;
    let client = gw.client("bot");
    let me = client.whoami().await.unwrap().principal.reference();
    let probe = Probe::new(body("t.export"));
    let (session, mut rx) = spawn_export(&client, &probe, Some(me));
    let Progress::Submitted(view) = next(&mut rx).await else {
        panic!("no submission")
    };
    assert_eq!(view.status, RequestStatus::Pending);
    assert_eq!(probe.runs(), 0);
    for reviewer in ["alice", "bob"] {
        gw.client(reviewer)
            .review(&view.id, ReviewDecision::Approve, None)
            .await
            .unwrap();
    }
    let end = session.await.unwrap();
    assert!(matches!(end, SessionEnd::Ran { .. }), "{end:?}");
    assert_eq!(probe.runs(), 1);
}
