#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on setup failures
//! Crash consistency of the real gateway: 8 concurrent clients submit
//! auto-allowed requests over HTTP, the server is killed with SIGKILL in the
//! middle of the load, and restarted on the same database. Every request
//! that was acknowledged (2xx) must still be there with its ledger entry,
//! the ledger must be dense and hash to the root of a freshly signed
//! checkpoint, and that checkpoint must be provably consistent with one
//! signed before the crash (verified with signoff's code and with azul's).
//!
//! ```text
//! cargo test -p signoff --test crash            # SQLite and PostgreSQL
//! cargo test -p signoff --test crash sqlite     # one backend
//! ```

mod common;
mod ledger_support;

use common::*;
use ledger_support::*;
use signoff_ledger::merkle;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CLIENTS: usize = 8;
/// Kill once this many requests were acknowledged (or after [`LOAD_CAP`]).
const KILL_AFTER_ACKS: usize = 1500;
const LOAD_CAP: Duration = Duration::from_secs(20);

#[test]
fn sqlite_sigkill_mid_load_loses_no_acknowledged_request() {
    sigkill_mid_load(Backend::Sqlite);
}

#[test]
fn postgres_sigkill_mid_load_loses_no_acknowledged_request() {
    sigkill_mid_load(Backend::Postgres);
}

/// What the load clients saw.
#[derive(Default)]
struct Load {
    acked: Mutex<Vec<String>>,
    count: AtomicUsize,
    refused: Mutex<Vec<String>>,
    stop: AtomicBool,
}

/// Runs `CLIENTS` submit loops against `url` until the server goes away or
/// `stop` is set. Each client stops at its first transport error.
fn run_load(url: String, token: String, load: Arc<Load>) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("load runtime");
    rt.block_on(async move {
        let http = reqwest::Client::new();
        let tasks: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let (http, url, token, load) =
                    (http.clone(), url.clone(), token.clone(), load.clone());
                tokio::spawn(async move {
                    for n in 0u64.. {
                        if load.stop.load(Ordering::SeqCst) {
                            return;
                        }
                        let body = serde_json::json!({
                            "action": "test.read",
                            "resource": format!("crash-{c}-{n}"),
                            "environment": "dev",
                        });
                        let sent = http
                            .post(format!("{url}/v1/requests"))
                            .bearer_auth(&token)
                            .json(&body)
                            .timeout(Duration::from_secs(30))
                            .send()
                            .await;
                        let Ok(resp) = sent else { return };
                        let status = resp.status();
                        let Ok(text) = resp.text().await else { return };
                        if status.is_success() {
                            let v: serde_json::Value = serde_json::from_str(&text)
                                .unwrap_or_else(|e| panic!("2xx body is not JSON ({e}): {text}"));
                            let id = v["id"].as_str().expect("request id").to_owned();
                            load.acked.lock().unwrap().push(id);
                            load.count.fetch_add(1, Ordering::SeqCst);
                        } else {
                            load.refused
                                .lock()
                                .unwrap()
                                .push(format!("{status} {text}"));
                        }
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("load client panicked");
        }
    });
}

/// The pid of the `signoff serve --config CONFIG` process, from /proc.
fn server_pid(config: &str) -> u32 {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let is_ours = args.first().is_some_and(|a| a.ends_with(b"/signoff"))
            && args.contains(&b"serve".as_slice())
            && args.contains(&config.as_bytes());
        if is_ours {
            found.push(pid);
        }
    }
    assert_eq!(
        found.len(),
        1,
        "expected one server for {config}, found {found:?}"
    );
    found[0]
}

fn sigkill_mid_load(b: Backend) {
    let mut gw = Gateway::start(b);
    let vkey = vkey(&gw, "audrey");
    let config = plain(&gw.config);
    let pid = server_pid(&config);

    let load = Arc::new(Load::default());
    let loader = {
        let (url, token, load) = (gw.url.clone(), gw.token("bot"), load.clone());
        std::thread::spawn(move || run_load(url, token, load))
    };
    let started = Instant::now();
    // A checkpoint signed while the load runs, before the crash.
    let pre = poll(LOAD_CAP, Duration::from_millis(100), || {
        checkpoint(&gw, "audrey", &vkey).filter(|cp| cp.size > 20)
    })
    .expect("a checkpoint is signed during the load");
    while load.count.load(Ordering::SeqCst) < KILL_AFTER_ACKS && started.elapsed() < LOAD_CAP {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!loader.is_finished(), "the load stopped before the crash");
    let status = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -9 {pid} failed");
    let killed_at = load.count.load(Ordering::SeqCst);
    load.stop.store(true, Ordering::SeqCst);
    loader.join().expect("load thread");
    let acked = std::mem::take(&mut *load.acked.lock().unwrap());
    let refused = load.refused.lock().unwrap().clone();
    assert!(
        refused.is_empty(),
        "{} submissions were refused, e.g. {:?}",
        refused.len(),
        refused.first()
    );
    assert!(
        acked.len() >= 100,
        "only {} requests acknowledged before the kill",
        acked.len()
    );
    eprintln!(
        "{b:?}: killed after {killed_at} acknowledgements in {:?} ({} in total); pre-crash checkpoint at size {}",
        started.elapsed(),
        acked.len(),
        pre.size
    );

    // Same database, same key.
    gw.restart();
    assert_eq!(
        vkey,
        ledger_support::vkey(&gw, "audrey"),
        "key after restart"
    );

    let entries = all_entries(&gw, "audrey", None);
    let size = entries.len() as u64;
    assert!(size > 1000, "the ledger should span pages: {size}");
    let hashes = check_leaves(&entries);
    let mut submitted: HashMap<&str, u64> = HashMap::new();
    for e in &entries {
        if e.json["kind"] == "request_submitted" {
            let id = e.json["request_id"].as_str().expect("request id");
            if let Some(first) = submitted.insert(id, e.index) {
                panic!(
                    "request {id} submitted twice: entries {first} and {}",
                    e.index
                );
            }
        }
    }
    let unique: HashSet<&String> = acked.iter().collect();
    assert_eq!(unique.len(), acked.len(), "an id was acknowledged twice");
    let missing: Vec<&String> = acked
        .iter()
        .filter(|id| !submitted.contains_key(id.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged requests have no request_submitted entry after the crash, e.g. {:?}",
        missing.len(),
        missing.first()
    );
    for id in &acked {
        let r = gw.get_as("audrey", &format!("/v1/requests/{id}"));
        assert_eq!(r.status, 200, "acknowledged request {id} lost: {}", r.body);
    }

    // The restarted server signs a checkpoint over everything, consistent
    // with the one signed before the crash.
    let post = wait_checkpoint(&gw, "audrey", &vkey, size);
    assert_eq!(post.size, size, "nothing is appended after the restart");
    assert_eq!(
        merkle::root(&hashes),
        post.root,
        "root of the served leaves"
    );
    let leaves: Vec<Vec<u8>> = entries.iter().map(|e| e.leaf.clone()).collect();
    assert_eq!(independent_root(&leaves), post.root, "tlog_tiles root");
    assert_eq!(
        merkle::root(&hashes[..pre.size as usize]),
        pre.root,
        "the pre-crash checkpoint's root over today's leaves"
    );
    check_consistency(&gw, "audrey", &pre, &post);
    let acked_index = |id: &String| submitted[id.as_str()];
    for id in [acked.first(), acked.get(acked.len() / 2), acked.last()]
        .into_iter()
        .flatten()
    {
        check_inclusion(&gw, "audrey", &entries[acked_index(id) as usize], &post);
    }

    audit_verify_if_available(&gw);
}

/// `signoff audit verify --config FILE` (written separately) must accept the
/// recovered ledger; skipped, with a note, while the command does not exist.
fn audit_verify_if_available(gw: &Gateway) {
    let help = std::process::Command::new(BIN)
        .args(["audit", "--help"])
        .output()
        .expect("run signoff audit --help");
    let text = String::from_utf8_lossy(&help.stdout);
    if !help.status.success() || !text.contains("verify") {
        eprintln!("note: `signoff audit verify` is not available; skipped");
        return;
    }
    let out = std::process::Command::new(BIN)
        .args(["audit", "verify", "--config"])
        .arg(&gw.config)
        .env_remove("SIGNOFF_URL")
        .env_remove("SIGNOFF_TOKEN")
        .output()
        .expect("run signoff audit verify");
    assert!(
        out.status.success(),
        "signoff audit verify --config failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "signoff audit verify --config: {}{}",
        String::from_utf8_lossy(&out.stdout).trim(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}
