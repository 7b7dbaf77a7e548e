//! Two `signoff serve` processes on one PostgreSQL database, as behind a
//! load balancer: a decision made on one reaches a gate waiting on the
//! other at once, a reload on one is enforced by the other, and a replica
//! dying mid-wait leaves the other to expire the request — exactly once. A
//! catalog changed on one replica is the catalog the other decides on.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use common::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// `GET /v1/requests/{id}/wait?since_version=V` on `url` in a thread;
/// returns the request as it was answered and when the answer arrived.
fn long_poll(
    url: &str,
    token: &str,
    id: &str,
    version: i64,
) -> std::thread::JoinHandle<(Value, Instant)> {
    let target = format!("{url}/v1/requests/{id}/wait?timeout=20&since_version={version}");
    let token = token.to_owned();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let resp = reqwest::Client::new()
                .get(&target)
                .bearer_auth(&token)
                .send()
                .await
                .unwrap();
            let body: Value = resp.json().await.unwrap();
            (body, Instant::now())
        })
    })
}

fn export() -> Value {
    json!({"action": "test.export", "resource": "customers", "environment": "prod"})
}

#[test]
fn a_review_on_one_replica_wakes_a_gate_waiting_on_the_other() {
    let a = Gateway::start(Backend::Postgres);
    let b = a.replica();

    // exec waits on A
    let marker = a.path("exported");
    let exec = a.spawn_as(
        "bot",
        exec_args(
            "test.export",
            "customers",
            "prod",
            &["--wait", "60s"],
            &["touch", &plain(&marker)],
        ),
    );
    let id = a.pending_id("test.export");
    let before = a.request(&id);

    // a long-poll on A hears of the first of two approvals made on B
    let poll = long_poll(
        &a.url,
        &a.token("bot"),
        &id,
        before["version"].as_i64().unwrap(),
    );
    std::thread::sleep(Duration::from_millis(200));
    b.review("alice", &id, "approve", None).expect(200);
    let approved_at = Instant::now();
    let (seen, at) = poll.join().unwrap();
    let lag = at.duration_since(approved_at);
    eprintln!("first approval on B reached a long-poll on A after {lag:?}");
    assert!(lag < Duration::from_secs(1), "took {lag:?}");
    assert_eq!(seen["status"], "pending");
    assert_eq!(seen["approved_by"], json!(["alice"]));

    // the second approval on B lets the exec on A run
    let resp = b.review("bob", &id, "approve", None).expect(200);
    assert_eq!(resp["status"], "approved");
    let out = exec.finish(Duration::from_secs(20));
    assert_eq!(out.code, 0, "{out}");
    assert!(marker.exists(), "the command ran");
    let r = b.request(&id);
    assert_eq!(r["status"], "executed");
    let ms = |v: &Value| {
        v.as_str()
            .unwrap()
            .parse::<jiff::Timestamp>()
            .unwrap()
            .as_millisecond()
    };
    eprintln!(
        "approved on B → claimed on A: {} ms",
        ms(&r["claimed_at"]) - ms(&r["decided_at"])
    );
}

#[test]
fn a_reload_on_one_replica_is_enforced_by_the_other() {
    let a = Gateway::start(Backend::Postgres);
    let b = a.replica();
    let r = a.submit("bot", export());
    let id = r["id"].as_str().unwrap().to_owned();
    b.review("alice", &id, "approve", None).expect(200);
    b.review("bob", &id, "approve", None).expect(200);

    // B's files change (A's do not): B reloads, and the set lives in the database
    let info = b.reload_with(
        "zz-freeze.cedar",
        "@id(\"export-freeze\")\n@reason(\"change freeze\")\nforbid(principal, action == Action::\"test.export\", resource);\n",
    );
    let hash = info["hash"].as_str().unwrap().to_owned();

    // A hears of it and converges within a second, without being asked
    let started = Instant::now();
    let converged = poll(Duration::from_secs(1), Duration::from_millis(10), || {
        let info = a.get_as("bot", "/v1/policy").json();
        (info["hash"] == hash).then_some(())
    });
    assert!(converged.is_some(), "replica A still enforces the old set");
    eprintln!(
        "replica A enforced B's reload after {:?}",
        started.elapsed()
    );

    // the claim on A is checked against the set B activated
    let claim = a.post_as(
        "bot",
        &format!("/v1/requests/{id}/claim"),
        json!({"digest": r["digest"]}),
    );
    let problem = claim.assert_problem(409);
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("policy now denies"),
        "{problem}"
    );
    assert_eq!(a.request(&id)["status"], "denied");
}

#[test]
fn a_claim_at_once_is_decided_by_the_set_every_replica_enforces() {
    let a = Gateway::start(Backend::Postgres);
    let b = a.replica();
    let read = || json!({"action": "test.read", "resource": "customers", "environment": "prod"});
    // the digest a gate would compute for this body (the gateway computes
    // the same one)
    let digest = a.submit("bot", read())["digest"].clone();
    let with_claim = || {
        let mut body = read();
        body["claim_digest"] = digest.clone();
        body
    };
    let claimed = a.submit("bot", with_claim());
    assert_eq!(claimed["status"], "executing", "{claimed:#}");

    // B forbids reads; A is asked at once, before its follower converges:
    // a submission that claims is decided by the active set, not A's copy
    b.reload_with(
        "zz-no-reads.cedar",
        "@id(\"no-reads\")\n@reason(\"reads are frozen\")\nforbid(principal, action == Action::\"test.read\", resource);\n",
    );
    let refused = a.submit("bot", with_claim());
    assert_eq!(refused["status"], "denied", "{refused:#}");
    assert_eq!(
        refused["verdict"]["policy_ids"],
        json!(["no-reads"]),
        "{refused:#}"
    );
}

#[test]
fn a_catalog_change_on_one_replica_decides_on_the_other() {
    let a = Gateway::start(Backend::Postgres);
    std::fs::write(
        a.policies.join("catalog.toml"),
        "[[resource]]\nname = \"customers\"\nenvironment = \"staging\"\n",
    )
    .unwrap();
    a.reload_with(
        "staging.cedar",
        "@id(\"staging-reads\")\npermit(principal, action == Action::\"test.peek\", resource) when { resource.environment == \"staging\" };\n",
    );
    let b = a.replica();
    let peek = || json!({"action": "test.peek", "resource": "customers"});
    assert_eq!(a.submit("bot", peek())["status"], "approved");

    // only B's catalog changes: customers is prod now
    let info = b.reload_with(
        "catalog.toml",
        "[[resource]]\nname = \"customers\"\nenvironment = \"prod\"\n",
    );
    let hash = info["hash"].as_str().unwrap().to_owned();
    let converged = poll(Duration::from_secs(1), Duration::from_millis(10), || {
        (a.get_as("bot", "/v1/policy").json()["hash"] == hash).then_some(())
    });
    assert!(
        converged.is_some(),
        "replica A still resolves the old catalog"
    );

    // A decides on B's catalog: the fact it records is B's
    let r = a.submit("bot", peek());
    assert_eq!(r["status"], "denied", "{r:#}");
    assert_eq!(r["facts"]["resource"]["environment"], "prod", "{r:#}");
}

#[test]
fn a_replica_dying_mid_wait_leaves_the_other_to_expire_exactly_once() {
    let mut a = Gateway::start(Backend::Postgres);
    let b = a.replica();
    let exec = a.spawn_as(
        "bot",
        exec_args(
            "test.quick",
            "customers",
            "prod",
            &["--wait", "6s"],
            &["echo", "never"],
        ),
    );
    let id = a.pending_id("test.quick");
    a.kill();
    // the request's 2 s review window passes with only B alive
    let expired = poll(Duration::from_secs(10), Duration::from_millis(100), || {
        let r = b.request(&id);
        (r["status"] == "expired").then_some(r)
    })
    .expect("B expires the request A accepted");
    assert_eq!(expired["status"], "expired");
    let out = exec.finish(Duration::from_secs(20));
    assert_ne!(out.code, 0, "the command never ran: {out}");
    assert!(!out.stdout.contains("never"), "{out}");
    std::thread::sleep(Duration::from_secs(1));
    let expirations = b
        .events_for(&id)
        .iter()
        .filter(|e| e["kind"] == "request_expired")
        .count();
    assert_eq!(expirations, 1, "expired exactly once");
}

/// Not a test: measures approve on B → long-poll on A returns, N times.
/// `SIGNOFF_REPLICA_N=200 cargo test --release -p signoff --test replicas -- --ignored --nocapture`
#[test]
#[ignore]
fn replica_wake_latency() {
    let n: usize = std::env::var("SIGNOFF_REPLICA_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let a = Gateway::start(Backend::Postgres);
    let b = a.replica();
    let mut lags = Vec::with_capacity(n);
    for _ in 0..n {
        let r = a.submit("bot", export());
        let id = r["id"].as_str().unwrap().to_owned();
        let poll = long_poll(&a.url, &a.token("bot"), &id, r["version"].as_i64().unwrap());
        std::thread::sleep(Duration::from_millis(30));
        let started = Instant::now();
        b.review("alice", &id, "approve", None).expect(200);
        let (_, at) = poll.join().unwrap();
        // the review's own round trip is the client's; the wake is after it
        lags.push(at.saturating_duration_since(started));
    }
    lags.sort();
    let pct = |p: f64| lags[((lags.len() as f64 * p) as usize).min(lags.len() - 1)];
    println!(
        "approve on B (HTTP round trip included) → waiter on A answered: n={n} p50={:?} p90={:?} p99={:?} max={:?}",
        pct(0.50),
        pct(0.90),
        pct(0.99),
        lags[lags.len() - 1]
    );
}
