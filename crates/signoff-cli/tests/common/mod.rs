//! Harness for the end-to-end tests: a real `signoff serve` process over a
//! fresh SQLite file or a fresh PostgreSQL database, principals added with
//! the real `signoff principal add`, and helpers to run CLI commands and raw
//! HTTP calls against it. Nothing here is mocked.
#![allow(dead_code)]

use serde_json::{json, Value};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_signoff");

/// Which store the gateway runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A temp SQLite file.
    Sqlite,
    /// A fresh database on the PostgreSQL server named by `SIGNOFF_TEST_PG`.
    Postgres,
}

/// The test policy: one rule per verdict, plus a short-lived approval for
/// the expiry cases. `test.drop` is also permitted so that only the `forbid`
/// can deny it.
pub const POLICY: &str = r#"// signoff end-to-end test policy
@id("read-allowed")
permit(principal, action == Action::"test.read", resource);

@id("drop-permitted-but")
permit(principal, action == Action::"test.drop", resource);

@id("drop-forbidden")
@reason("dropping is never allowed")
forbid(principal, action == Action::"test.drop", resource);

@id("export-two-sre")
@approval("sre:2")
@ttl("10m")
@reason("data leaves the building")
permit(principal, action == Action::"test.export", resource);

@id("quick-two-sre")
@approval("sre:2")
@ttl("2s")
permit(principal, action == Action::"test.quick", resource);
"#;

/// The principals every gateway gets, as `signoff principal add …` arguments.
pub const PRINCIPALS: &[(&str, &[&str])] = &[
    (
        "alice",
        &["user", "alice", "--group", "sre", "--role", "reviewer"],
    ),
    (
        "bob",
        &["user", "bob", "--group", "sre", "--role", "reviewer"],
    ),
    (
        "carl",
        &["user", "carl", "--group", "sre", "--role", "reviewer"],
    ),
    (
        "dave",
        &["user", "dave", "--group", "sre", "--role", "reviewer"],
    ),
    (
        "olga",
        &["user", "olga", "--group", "sre", "--role", "admin"],
    ),
    ("audrey", &["user", "audrey", "--role", "auditor"]),
    ("root", &["user", "root", "--role", "admin"]),
    ("zed", &["user", "zed", "--role", "reviewer"]),
    // agents last: an owner must exist before its agent
    (
        "bot",
        &["agent", "bot", "--owner", "olga", "--gate", "exec"],
    ),
    ("bot2", &["agent", "bot2", "--owner", "zed"]),
];

/// The PostgreSQL server for the tests, without a database name.
pub fn pg_base() -> String {
    std::env::var("SIGNOFF_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
        .trim_end_matches('/')
        .to_owned()
}

/// Runs one SQL statement with `psql` against `base/db`.
pub fn psql(base: &str, db: &str, sql: &str) -> Result<String, String> {
    let out = Command::new("psql")
        .args([
            "-X",
            "-q",
            "-t",
            "-A",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            &format!("{base}/{db}"),
            "-c",
            sql,
        ])
        .env("PGCONNECT_TIMEOUT", "5")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run `psql` (is the PostgreSQL client installed?): {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{}_{}_{}",
        std::process::id(),
        nanos,
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// A database created for one gateway on the shared server; dropped with it.
pub struct PgDatabase {
    base: String,
    name: String,
}

impl PgDatabase {
    /// Creates `signoff_e2e_<random>`. Panics with a clear message when the
    /// server is unreachable: CI starts PostgreSQL, so this must not skip.
    pub fn create() -> Self {
        let base = pg_base();
        let name = format!("signoff_e2e_{}", unique_suffix());
        if let Err(e) = psql(&base, "test", &format!("CREATE DATABASE {name}")) {
            panic!(
                "PostgreSQL backend tests need a server: cannot create a database on {base} (database `test`; \
                 set SIGNOFF_TEST_PG to another postgres://USER@HOST:PORT, or start PostgreSQL): {e}"
            );
        }
        PgDatabase { base, name }
    }

    /// The URL the gateway uses.
    pub fn url(&self) -> String {
        format!("{}/{}", self.base, self.name)
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let _ = psql(
            &self.base,
            "test",
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

/// The result of a finished CLI command.
pub struct Out {
    /// What ran, for messages.
    pub what: String,
    /// Exit status (-1 when killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl fmt::Display for Out {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` exited {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.what, self.code, self.stdout, self.stderr
        )
    }
}

impl fmt::Debug for Out {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Out {
    /// The request id `signoff exec` names on stderr.
    pub fn request_id(&self) -> String {
        request_id_in(&self.stderr).unwrap_or_else(|| panic!("no request id on stderr of {self}"))
    }
}

/// Finds `request <ULID>` in a message.
pub fn request_id_in(text: &str) -> Option<String> {
    let mut rest = text;
    while let Some(pos) = rest.find("request ") {
        let candidate: String = rest[pos + 8..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect();
        if candidate.len() == 26
            && candidate
                .chars()
                .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
        {
            return Some(candidate);
        }
        rest = &rest[pos + 8..];
    }
    None
}

/// A CLI command running in the background.
pub struct Bg {
    what: String,
    child: Child,
    stdout: Option<JoinHandle<Vec<u8>>>,
    stderr: Option<JoinHandle<Vec<u8>>>,
}

fn drain(mut r: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        buf
    })
}

impl Bg {
    pub fn spawn(mut cmd: Command, what: String) -> Bg {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{what}`: {e}"));
        let stdout = child.stdout.take().map(drain);
        let stderr = child.stderr.take().map(drain);
        Bg {
            what,
            child,
            stdout,
            stderr,
        }
    }

    /// Its process id (to send it a signal).
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits for it to end, at most `timeout` (then kills it and panics).
    pub fn finish(mut self, timeout: Duration) -> Out {
        let deadline = Instant::now() + timeout;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break None;
                }
            }
        };
        let collect = |h: Option<JoinHandle<Vec<u8>>>| {
            h.map(|h| String::from_utf8_lossy(&h.join().unwrap_or_default()).into_owned())
                .unwrap_or_default()
        };
        let out = Out {
            what: self.what.clone(),
            code: status.and_then(|s| s.code()).unwrap_or(-1),
            stdout: collect(self.stdout.take()),
            stderr: collect(self.stderr.take()),
        };
        if status.is_none() {
            panic!("did not finish within {timeout:?}, killed: {out}");
        }
        out
    }
}

impl Drop for Bg {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// An HTTP response.
#[derive(Debug)]
pub struct Resp {
    /// What was asked, for messages.
    pub what: String,
    /// The status code.
    pub status: u16,
    /// The headers.
    pub headers: reqwest::header::HeaderMap,
    /// The body as text.
    pub body: String,
}

impl Resp {
    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("{}: body is not JSON ({e}): {}", self.what, self.body))
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The Content-Type.
    pub fn content_type(&self) -> &str {
        self.header("content-type").unwrap_or("")
    }

    /// Why this is not an RFC 9457 problem with `status`, if it is not.
    pub fn problem_mismatch(&self, status: u16) -> Option<String> {
        if self.status != status {
            return Some(format!(
                "{}: expected {status}, got {} {}",
                self.what, self.status, self.body
            ));
        }
        if !self.content_type().starts_with("application/problem+json") {
            return Some(format!(
                "{}: {status} with Content-Type `{}`, expected application/problem+json",
                self.what,
                self.content_type()
            ));
        }
        match serde_json::from_str::<Value>(&self.body) {
            Ok(p)
                if p["status"] == status
                    && p["type"].is_string()
                    && p["title"].is_string()
                    && p["detail"].is_string() =>
            {
                None
            }
            _ => Some(format!(
                "{}: not a problem document: {}",
                self.what, self.body
            )),
        }
    }

    /// Asserts an RFC 9457 problem with `status`; returns the problem.
    pub fn assert_problem(&self, status: u16) -> Value {
        if let Some(m) = self.problem_mismatch(status) {
            panic!("{m}");
        }
        self.json()
    }

    /// Asserts `status` and returns the body as text.
    pub fn expect_text(&self, status: u16) -> String {
        assert_eq!(self.status, status, "{}: {}", self.what, self.body);
        self.body.clone()
    }

    /// Asserts `status` and returns the JSON body.
    pub fn expect(&self, status: u16) -> Value {
        assert_eq!(self.status, status, "{}: {}", self.what, self.body);
        self.json()
    }
}

/// A request body.
pub enum Body {
    /// No body.
    Empty,
    /// JSON.
    Json(Value),
    /// Bytes with a Content-Type.
    Raw(&'static str, Vec<u8>),
}

/// A running gateway and everything it needs.
pub struct Gateway {
    /// Its working directory (policies, config, database, markers).
    pub dir: tempfile::TempDir,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The config file, for `principal …` commands.
    pub config: PathBuf,
    /// The database URL.
    pub database: String,
    /// The policy directory.
    pub policies: PathBuf,
    /// A principal that may read every request and the audit trail.
    pub reader: String,
    tokens: HashMap<String, String>,
    server: Option<Child>,
    stdout: Arc<Mutex<String>>,
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
    _pg: Option<PgDatabase>,
    serve_args: Vec<String>,
    /// Extra environment of the `serve` process (on restarts).
    serve_env: Vec<(String, String)>,
}

impl Gateway {
    /// A gateway on a fresh database of `backend`, with [`POLICY`] and [`PRINCIPALS`].
    pub fn start(backend: Backend) -> Gateway {
        let dir = tempdir();
        match backend {
            Backend::Sqlite => {
                let db = format!("sqlite://{}", dir.path().join("signoff.db").display());
                Self::start_on(dir, db, None)
            }
            Backend::Postgres => {
                let pg = PgDatabase::create();
                Self::start_on(dir, pg.url(), Some(pg))
            }
        }
    }

    /// A gateway on the database at `database` (which must exist).
    pub fn start_on(dir: tempfile::TempDir, database: String, pg: Option<PgDatabase>) -> Gateway {
        Self::start_with(dir, database, pg, "", &[], &[])
    }

    /// A SQLite gateway whose config file ends with `extra` (TOML keys)
    /// and whose `serve` gets `serve_flags` and `env`.
    pub fn start_configured(extra: &str, serve_flags: &[&str], env: &[(&str, &str)]) -> Gateway {
        let dir = tempdir();
        let db = format!("sqlite://{}", dir.path().join("signoff.db").display());
        Self::start_with(dir, db, None, extra, serve_flags, env)
    }

    fn start_with(
        dir: tempfile::TempDir,
        database: String,
        pg: Option<PgDatabase>,
        extra: &str,
        serve_flags: &[&str],
        env: &[(&str, &str)],
    ) -> Gateway {
        let policies = dir.path().join("policies");
        std::fs::create_dir_all(&policies).expect("create policies dir");
        std::fs::write(policies.join("test.cedar"), POLICY).expect("write policy");
        let config = dir.path().join("signoff.toml");
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:0\"\ndatabase = \"{database}\"\npolicies = \"{}\"\n{extra}",
                policies.display()
            ),
        )
        .expect("write config");
        let mut tokens = HashMap::new();
        for (name, args) in PRINCIPALS {
            tokens.insert(name.to_string(), add_principal(&config, args));
        }
        let mut cmd = Command::new(BIN);
        let mut serve_args = vec!["serve".to_owned(), "--config".to_owned(), plain(&config)];
        serve_args.extend(serve_flags.iter().map(|f| f.to_string()));
        let serve_env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        cmd.args(&serve_args)
            .envs(serve_env.iter().map(|(k, v)| (k, v)))
            .current_dir(dir.path());
        let (server, url, stdout) = spawn_server(cmd, dir.path());
        Gateway {
            url,
            config,
            database,
            policies,
            reader: "audrey".into(),
            tokens,
            server: Some(server),
            stdout,
            rt: runtime(),
            http: http_client(),
            serve_args: serve_args.clone(),
            serve_env,
            _pg: pg,
            dir,
        }
    }

    /// Another replica on this gateway's (PostgreSQL) database: its own
    /// directory, its own copy of the policy files, the same principals.
    pub fn replica(&self) -> Gateway {
        let dir = tempdir();
        let policies = dir.path().join("policies");
        std::fs::create_dir_all(&policies).expect("create policies dir");
        for entry in std::fs::read_dir(&self.policies).expect("read policies") {
            let entry = entry.expect("policy entry");
            std::fs::copy(entry.path(), policies.join(entry.file_name())).expect("copy policy");
        }
        let config = dir.path().join("signoff.toml");
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:0\"\ndatabase = \"{}\"\npolicies = \"{}\"\nledger_key = \"{}\"\n",
                self.database,
                policies.display(),
                self.dir.path().join("ledger.key").display()
            ),
        )
        .expect("write config");
        let mut cmd = Command::new(BIN);
        let serve_args = vec!["serve".to_owned(), "--config".to_owned(), plain(&config)];
        cmd.args(&serve_args).current_dir(dir.path());
        let (server, url, stdout) = spawn_server(cmd, dir.path());
        Gateway {
            url,
            config,
            database: self.database.clone(),
            policies,
            reader: self.reader.clone(),
            tokens: self.tokens.clone(),
            server: Some(server),
            stdout,
            rt: runtime(),
            http: http_client(),
            serve_args,
            serve_env: Vec::new(),
            _pg: None,
            dir,
        }
    }

    /// Kills the server process at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut server) = self.server.take() {
            let _ = server.kill();
            let _ = server.wait();
        }
    }

    /// `signoff serve --dev --listen 127.0.0.1:0` in a fresh working directory.
    pub fn start_dev() -> Gateway {
        let dir = tempdir();
        let mut cmd = Command::new(BIN);
        let serve_args: Vec<String> = ["serve", "--dev", "--listen", "127.0.0.1:0"]
            .map(String::from)
            .to_vec();
        cmd.args(&serve_args).current_dir(dir.path());
        let (server, url, stdout) = spawn_server(cmd, dir.path());
        let dev = dir.path().join(".signoff-dev");
        let creds = std::fs::read_to_string(dev.join("credentials.env"))
            .expect("dev mode writes .signoff-dev/credentials.env");
        let mut tokens = HashMap::new();
        for line in creds
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        {
            let (var, token) = line
                .split_once('=')
                .unwrap_or_else(|| panic!("bad credentials line `{line}`"));
            let name = match var {
                "AGENT_TOKEN" => "etl-bot",
                "ALICE_TOKEN" => "alice",
                "BOB_TOKEN" => "bob",
                "CAROL_TOKEN" => "carol",
                other => panic!("unexpected credential {other}"),
            };
            tokens.insert(name.to_owned(), token.to_owned());
        }
        Gateway {
            url,
            config: dev.join("signoff.toml"),
            database: String::new(),
            policies: dev.join("policies"),
            reader: "carol".into(),
            tokens,
            server: Some(server),
            stdout,
            rt: runtime(),
            http: http_client(),
            serve_args: serve_args.clone(),
            serve_env: Vec::new(),
            _pg: None,
            dir,
        }
    }

    /// Stops the server and starts it again with the same arguments, in the
    /// same directory (it may get a new port).
    pub fn restart(&mut self) {
        if let Some(mut server) = self.server.take() {
            let _ = server.kill();
            let _ = server.wait();
        }
        let mut cmd = Command::new(BIN);
        cmd.args(&self.serve_args)
            .envs(self.serve_env.iter().map(|(k, v)| (k, v)))
            .current_dir(self.dir.path());
        let (server, url, stdout) = spawn_server(cmd, self.dir.path());
        self.server = Some(server);
        self.url = url;
        self.stdout = stdout;
    }

    /// Everything the server printed on stdout so far (since the last start).
    pub fn server_stdout(&self) -> String {
        self.stdout.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// The server log (its stderr).
    pub fn server_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// A principal's bearer token.
    pub fn token(&self, who: &str) -> String {
        self.tokens
            .get(who)
            .cloned()
            .unwrap_or_else(|| panic!("no principal `{who}` in this gateway"))
    }

    /// Adds a principal with the real CLI while the gateway runs; returns its token.
    pub fn add_principal(&mut self, name: &str, args: &[&str]) -> String {
        let token = add_principal(&self.config, args);
        self.tokens.insert(name.to_owned(), token.clone());
        token
    }

    /// Remembers a token created some other way (e.g. over the API).
    pub fn add_token(&mut self, name: &str, token: &str) {
        self.tokens.insert(name.to_owned(), token.to_owned());
    }

    /// A path in the gateway's directory (for marker files).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn cli_command<I, S>(&self, token: Option<&str>, args: I) -> (Command, String)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new(BIN);
        let args: Vec<std::ffi::OsString> =
            args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        let what = format!(
            "signoff {}",
            args.iter()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" ")
        );
        cmd.args(&args)
            .current_dir(self.dir.path())
            .env("SIGNOFF_URL", &self.url)
            .env_remove("SIGNOFF_TOKEN");
        if let Some(t) = token {
            cmd.env("SIGNOFF_TOKEN", t);
        }
        (cmd, what)
    }

    /// Runs `signoff ARGS…` as `who` (SIGNOFF_URL/SIGNOFF_TOKEN set), at most 60 s.
    pub fn cli_as<I, S>(&self, who: &str, args: I) -> Out
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let (cmd, what) = self.cli_command(Some(&self.token(who)), args);
        Bg::spawn(cmd, format!("{what}   [as {who}]")).finish(Duration::from_secs(60))
    }

    /// [`Gateway::cli_as`] with extra environment variables.
    pub fn cli_as_with_env<I, S>(&self, who: &str, args: I, env: &[(&str, &str)]) -> Out
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let (mut cmd, what) = self.cli_command(Some(&self.token(who)), args);
        cmd.envs(env.iter().copied());
        Bg::spawn(cmd, format!("{what}   [as {who}]")).finish(Duration::from_secs(60))
    }

    /// Starts `signoff ARGS…` as `who` in the background.
    pub fn spawn_as<I, S>(&self, who: &str, args: I) -> Bg
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let (cmd, what) = self.cli_command(Some(&self.token(who)), args);
        Bg::spawn(cmd, format!("{what}   [as {who}]"))
    }

    /// One HTTP call with an explicit token (or none).
    pub fn http(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Body,
        headers: &[(&str, &str)],
    ) -> Resp {
        let what = format!("{method} {path}");
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.url))
            .timeout(Duration::from_secs(30));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req = match body {
            Body::Empty => req,
            Body::Json(v) => req
                .header("content-type", "application/json")
                .body(serde_json::to_vec(&v).expect("json")),
            Body::Raw(ct, bytes) => req.header("content-type", ct).body(bytes),
        };
        self.rt.block_on(async {
            let resp = req.send().await.unwrap_or_else(|e| panic!("{what}: {e}"));
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let body = resp
                .text()
                .await
                .unwrap_or_else(|e| panic!("{what}: reading body: {e}"));
            Resp {
                what,
                status,
                headers,
                body,
            }
        })
    }

    /// The same POST of JSON as `who`, `n` times at once (to race the server).
    pub fn post_concurrently(&self, n: usize, who: &str, path: &str, body: Value) -> Vec<Resp> {
        let token = self.token(who);
        let url = format!("{}{path}", self.url);
        let bytes = serde_json::to_vec(&body).expect("json");
        self.rt.block_on(async {
            let tasks: Vec<_> = (0..n)
                .map(|_| {
                    let req = self
                        .http
                        .post(&url)
                        .bearer_auth(&token)
                        .header("content-type", "application/json")
                        .body(bytes.clone())
                        .timeout(Duration::from_secs(30));
                    let what = format!("POST {path}   [as {who}, concurrently]");
                    tokio::spawn(async move {
                        let resp = req.send().await.unwrap_or_else(|e| panic!("{what}: {e}"));
                        let status = resp.status().as_u16();
                        let headers = resp.headers().clone();
                        let body = resp.text().await.unwrap_or_default();
                        Resp {
                            what,
                            status,
                            headers,
                            body,
                        }
                    })
                })
                .collect();
            let mut out = Vec::new();
            for t in tasks {
                out.push(t.await.expect("request task"));
            }
            out
        })
    }

    /// GET as `who`.
    pub fn get_as(&self, who: &str, path: &str) -> Resp {
        let mut r = self.http("GET", path, Some(&self.token(who)), Body::Empty, &[]);
        r.what = format!("{}   [as {who}]", r.what);
        r
    }

    /// Writes `text` as `file` in this gateway's policy directory and
    /// reloads as `root` (200 required); the policy set info.
    pub fn reload_with(&self, file: &str, text: &str) -> Value {
        std::fs::write(self.policies.join(file), text).expect("write policy file");
        self.post_as("root", "/v1/policy/reload", json!({}))
            .expect(200)
    }

    /// POST JSON as `who`.
    pub fn post_as(&self, who: &str, path: &str, body: Value) -> Resp {
        let mut r = self.http("POST", path, Some(&self.token(who)), Body::Json(body), &[]);
        r.what = format!("{}   [as {who}]", r.what);
        r
    }

    /// Submits a request as `who` over the API; asserts 201.
    pub fn submit(&self, who: &str, body: Value) -> Value {
        self.post_as(who, "/v1/requests", body).expect(201)
    }

    /// POST /v1/requests/{id}/reviews as `who`.
    pub fn review(&self, who: &str, id: &str, decision: &str, reason: Option<&str>) -> Resp {
        let body = match reason {
            Some(r) => json!({ "decision": decision, "reason": r }),
            None => json!({ "decision": decision }),
        };
        self.post_as(who, &format!("/v1/requests/{id}/reviews"), body)
    }

    /// A request as the reader sees it.
    pub fn request(&self, id: &str) -> Value {
        self.get_as(&self.reader, &format!("/v1/requests/{id}"))
            .expect(200)
    }

    /// The whole audit trail, as the reader sees it.
    pub fn events(&self) -> Vec<Value> {
        let mut all = Vec::new();
        let mut from = 0u64;
        loop {
            let page = self
                .get_as(
                    &self.reader,
                    &format!("/v1/audit/events?from={from}&limit=1000"),
                )
                .expect(200);
            let events = page["events"].as_array().cloned().unwrap_or_default();
            if events.is_empty() {
                return all;
            }
            all.extend(events);
            match page["next_after"].as_u64() {
                Some(n) if n > from => from = n,
                _ => return all,
            }
        }
    }

    /// The audit events about one request, in log order.
    pub fn events_for(&self, id: &str) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|e| e["request_id"] == id)
            .collect()
    }

    /// Waits (≤ 10 s) until exactly one pending request with `action` exists; returns its id.
    pub fn pending_id(&self, action: &str) -> String {
        let path = format!("/v1/requests?status=pending&action={action}");
        poll(Duration::from_secs(10), Duration::from_millis(50), || {
            let page = self.get_as(&self.reader, &path).expect(200);
            match page["requests"].as_array().map(Vec::as_slice) {
                Some([one]) => one["id"].as_str().map(str::to_owned),
                _ => None,
            }
        })
        .unwrap_or_else(|| panic!("no pending {action} request appeared within 10s"))
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(mut server) = self.server.take() {
            let _ = server.kill();
            let _ = server.wait();
        }
        if std::thread::panicking() {
            let log = self.server_log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!(
                "--- gateway {} stdout ---\n{}--- last lines of the server log ---\n{}",
                self.url,
                self.server_stdout(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    }
}

fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("signoff-e2e-")
        .tempdir()
        .expect("tempdir")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("reqwest client")
}

/// `signoff principal add ARGS… --config FILE`; returns the token (the only stdout line).
pub fn add_principal(config: &Path, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(["principal", "add"])
        .args(args)
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .output()
        .expect("run signoff principal add");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "signoff principal add {args:?} failed: {}\n{stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "principal add must print the token as the only stdout line, got {stdout:?}"
    );
    assert!(!lines[0].trim().is_empty(), "empty token");
    lines[0].trim().to_owned()
}

/// Spawns a server, waits for its `signoff listening on URL` first line.
fn spawn_server(mut cmd: Command, dir: &Path) -> (Child, String, Arc<Mutex<String>>) {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("server.log"))
        .expect("server log");
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(log);
    let mut child = cmd.spawn().expect("spawn signoff serve");
    let stdout = child.stdout.take().expect("stdout");
    let buf = Arc::new(Mutex::new(String::new()));
    let (tx, rx) = mpsc::channel::<String>();
    {
        let buf = buf.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Ok(mut b) = buf.lock() {
                    b.push_str(&line);
                    b.push('\n');
                }
                let _ = tx.send(line);
            }
        });
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let fail = |child: &mut Child, why: String| -> ! {
        let _ = child.kill();
        let _ = child.wait();
        let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
        panic!("signoff serve {why}\n--- server log ---\n{log}");
    };
    let first = loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => break line,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if let Ok(Some(status)) = child.try_wait() {
                    fail(
                        &mut child,
                        format!("exited ({status}) before printing its URL"),
                    );
                }
                if Instant::now() > deadline {
                    fail(&mut child, "printed nothing within 30s".into());
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let _ = child.wait();
                fail(&mut child, "closed stdout before printing its URL".into())
            }
        }
    };
    let url = first
        .strip_prefix("signoff listening on ")
        .and_then(|rest| rest.split_whitespace().next())
        .filter(|u| u.starts_with("http://127.0.0.1:"))
        .map(str::to_owned);
    match url {
        Some(url) => (child, url, buf),
        None => fail(
            &mut child,
            format!("first stdout line is not `signoff listening on http://ADDR`: {first:?}"),
        ),
    }
}

/// Calls `f` every `interval` until it returns `Some`, at most `timeout`.
pub fn poll<T>(
    timeout: Duration,
    interval: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(interval);
    }
}

/// Hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// `exec --action A --resource R --env E [extra…] -- CMD…` as arguments.
pub fn exec_args(
    action: &str,
    resource: &str,
    env: &str,
    extra: &[&str],
    command: &[&str],
) -> Vec<String> {
    let mut v: Vec<String> = [
        "exec",
        "--action",
        action,
        "--resource",
        resource,
        "--env",
        env,
    ]
    .map(String::from)
    .to_vec();
    v.extend(extra.iter().map(|s| s.to_string()));
    v.push("--".into());
    v.extend(command.iter().map(|s| s.to_string()));
    v
}

/// A path as a `&str` that needs no shell quoting (tempdir paths do not).
pub fn plain(p: &Path) -> String {
    let s = p.to_str().expect("utf-8 path").to_owned();
    assert!(
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b)),
        "test path {s} would need shell quoting"
    );
    s
}

/// The kinds of `events`, as strings.
pub fn kinds(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["kind"].as_str().unwrap_or("?").to_owned())
        .collect()
}

/// A private PostgreSQL instance in a temp directory, on its own port, that
/// a test may stop and restart. Never touches the shared server.
pub struct PrivatePg {
    /// Data, socket and log live here.
    pub dir: tempfile::TempDir,
    /// Its TCP port on 127.0.0.1.
    pub port: u16,
    bin: PathBuf,
    as_postgres: bool,
}

impl PrivatePg {
    /// `initdb` and start.
    pub fn start() -> PrivatePg {
        let bin = pg_bin_dir();
        let as_postgres = is_root();
        let dir = tempfile::Builder::new()
            .prefix("signoff-pg-")
            .tempdir()
            .expect("tempdir");
        if as_postgres {
            let st = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .expect("chown");
            assert!(st.success(), "chown of the private PostgreSQL dir failed");
        }
        let port = free_port();
        let pg = PrivatePg {
            dir,
            port,
            bin,
            as_postgres,
        };
        let data = pg.dir.path().join("data");
        let out = pg.run(
            "initdb",
            &[
                "-A",
                "trust",
                "-U",
                "postgres",
                "-N",
                "-D",
                data.to_str().expect("path"),
            ],
        );
        assert!(
            out.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        pg.start_server();
        pg
    }

    fn run(&self, tool: &str, args: &[&str]) -> std::process::Output {
        let program = self.bin.join(tool);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            Command::new(&program)
        };
        cmd.args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null());
        cmd.output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()))
    }

    /// `pg_ctl start` on the same port as before.
    pub fn start_server(&self) {
        let d = self.dir.path();
        let opts = format!(
            "-k {} -p {} -c listen_addresses=127.0.0.1 -c fsync=off",
            d.display(),
            self.port
        );
        let out = self.run(
            "pg_ctl",
            &[
                "-D",
                d.join("data").to_str().expect("path"),
                "-l",
                d.join("pg.log").to_str().expect("path"),
                "-w",
                "-t",
                "30",
                "-o",
                &opts,
                "start",
            ],
        );
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(d.join("pg.log")).unwrap_or_default()
        );
    }

    /// `pg_ctl stop -m immediate`.
    pub fn stop_server(&self) {
        let data = self.dir.path().join("data");
        let out = self.run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().expect("path"),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
        assert!(
            out.status.success(),
            "pg_ctl stop failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The URL of its `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        if data.join("postmaster.pid").exists() {
            let _ = self.run(
                "pg_ctl",
                &[
                    "-D",
                    data.to_str().unwrap_or_default(),
                    "-m",
                    "immediate",
                    "-w",
                    "stop",
                ],
            );
        }
    }
}

fn pg_bin_dir() -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter_map(|e| {
                    let v: u32 = e.file_name().to_str()?.parse().ok()?;
                    let bin = e.path().join("bin");
                    bin.join("initdb").exists().then_some((v, bin))
                })
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    versions
        .pop()
        .map(|(_, b)| b)
        .expect("no /usr/lib/postgresql/*/bin/initdb: the PostgreSQL server package is needed")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A port nothing listens on now, for a process the test starts.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

// ---------------------------------------------------------------- audit helpers

impl Gateway {
    /// Stops the server gracefully (SIGTERM, so it signs a last checkpoint),
    /// killing it if it has not exited within 15 s.
    pub fn stop(&mut self) {
        let Some(mut server) = self.server.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &server.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = server.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = server.kill();
        let _ = server.wait();
    }

    /// Runs `signoff ARGS…` with no token, at most 120 s.
    pub fn cli<I, S>(&self, args: I) -> Out
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let (cmd, what) = self.cli_command(None, args);
        Bg::spawn(cmd, what).finish(Duration::from_secs(120))
    }

    /// Whether the gateway's database is PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        self.database.starts_with("postgres")
    }

    /// Runs SQL statements directly on the gateway's database, bypassing
    /// signoff (`sqlite3` or `psql`), as someone with database access would.
    /// Returns the output rows, `|`-separated.
    pub fn sql(&self, sql: &str) -> Result<String, String> {
        if self.is_postgres() {
            let (base, db) = self
                .database
                .rsplit_once('/')
                .expect("postgres url has a database");
            psql(base, db, sql)
        } else {
            let file = self
                .database
                .strip_prefix("sqlite://")
                .expect("sqlite url")
                .split('?')
                .next()
                .unwrap_or_default()
                .to_owned();
            let out = Command::new("sqlite3")
                .args(["-bail", "-batch", &file, sql])
                .stdin(Stdio::null())
                .output()
                .map_err(|e| format!("cannot run `sqlite3` (is it installed?): {e}"))?;
            if out.status.success() {
                Ok(String::from_utf8_lossy(&out.stdout).into_owned())
            } else {
                Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
            }
        }
    }

    /// [`Gateway::sql`] that must succeed.
    pub fn sql_ok(&self, sql: &str) -> String {
        self.sql(sql)
            .unwrap_or_else(|e| panic!("SQL failed on {}: {e}\n{sql}", self.database))
    }

    /// Drops the triggers that make the ledger tables append-only, as an
    /// attacker with database access could.
    pub fn drop_append_only_triggers(&self) {
        let sql = if self.is_postgres() {
            "DROP TRIGGER audit_events_no_update_delete ON audit_events;\
             DROP TRIGGER audit_events_no_truncate ON audit_events;\
             DROP TRIGGER ledger_nodes_append_only ON ledger_nodes;\
             DROP TRIGGER ledger_nodes_no_truncate ON ledger_nodes;\
             DROP TRIGGER ledger_checkpoints_append_only ON ledger_checkpoints;\
             DROP TRIGGER ledger_checkpoints_no_truncate ON ledger_checkpoints;"
        } else {
            "DROP TRIGGER audit_events_no_update; DROP TRIGGER audit_events_no_delete;\
             DROP TRIGGER ledger_nodes_no_update; DROP TRIGGER ledger_nodes_no_delete;\
             DROP TRIGGER ledger_checkpoints_no_update; DROP TRIGGER ledger_checkpoints_no_delete;"
        };
        self.sql_ok(sql);
    }

    /// The ledger verifier key, derived from the gateway's `ledger.key`.
    pub fn ledger_vkey(&self) -> String {
        let path = self.config.parent().expect("config dir").join("ledger.key");
        let skey = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        signoff_ledger::note::SigningKey::from_skey(skey.trim())
            .expect("ledger key parses")
            .vkey()
    }
}

/// Runs `signoff ARGS…` outside any gateway (no URL, no token), at most 10 minutes.
pub fn run_signoff(args: &[&str]) -> Out {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("SIGNOFF_TOKEN")
        .env_remove("SIGNOFF_URL");
    Bg::spawn(cmd, format!("signoff {}", args.join(" "))).finish(Duration::from_secs(600))
}
