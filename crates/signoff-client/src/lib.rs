//! The typed client of the signoff REST API: every gate, channel test and
//! the CLI talk to a gateway through [`Client`], never to the store.
//!
//! Requests and answers are the types of [`signoff_core::wire`], so client and
//! server cannot drift apart. Errors say which gateway, what failed and
//! whether retrying may help ([`ClientError::is_transient`]); callers that
//! enforce decisions treat every error as "do not run".

use serde::de::DeserializeOwned;
use serde::Serialize;
use signoff_core::wire::{
    CancelBody, ClaimBody, EventPage, OutcomeBody, PolicySetInfo, Problem, RequestPage,
    RequestView, ReviewBody, SubmitRequest, WhoAmI,
};
use signoff_core::{Digest, ReviewDecision};
use std::time::Duration;

/// Why a call to the gateway failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// The client is misconfigured: no URL, no token, a bad channel name.
    #[error("{0}")]
    Config(String),
    /// The gateway could not be reached.
    #[error("cannot reach the signoff gateway at {url}: {reason}")]
    Unreachable {
        /// The base URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The gateway answered with a problem.
    #[error("{} ({})", .problem.detail, .problem.status)]
    Api {
        /// The problem details.
        problem: Box<Problem>,
    },
    /// The gateway's answer could not be understood.
    #[error("unexpected answer from the gateway: {0}")]
    Decode(String),
}

impl ClientError {
    /// The problem's type slug (`digest-mismatch`, …), if the API answered one.
    pub fn problem_slug(&self) -> Option<&str> {
        match self {
            ClientError::Api { problem } => {
                problem.problem_type.strip_prefix("urn:signoff:problem:")
            }
            _ => None,
        }
    }

    /// The HTTP status, if the API answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { problem } => Some(problem.status),
            _ => None,
        }
    }

    /// Whether retrying later may help: the gateway could not be reached, or
    /// it (or a proxy in front of it) answered 502, 503 or 504, which is what
    /// a restart or a database outage looks like.
    pub fn is_transient(&self) -> bool {
        matches!(self, ClientError::Unreachable { .. }) || matches!(self.status(), Some(502..=504))
    }

    /// Whether the gateway failed on its side (any 5xx): the caller did
    /// nothing wrong, and nothing was decided.
    pub fn is_server_error(&self) -> bool {
        matches!(self.status(), Some(500..=599))
    }
}

/// The header naming the channel a review comes through (`cli`, `api`, …),
/// so the gateway can record how each decision was made.
pub const CHANNEL_HEADER: &str = "Signoff-Channel";

/// What [`Client::submit_new`] got back.
#[derive(Debug, Clone)]
pub struct Submission {
    /// The request.
    pub view: RequestView,
    /// `true` when this call created it (201), `false` when its idempotency
    /// key replayed an existing one (200).
    pub created: bool,
}

/// A client bound to one gateway and one bearer token.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
    /// Sent as [`CHANNEL_HEADER`] on every request when set.
    channel: Option<String>,
}

impl Client {
    /// A client for `base_url` (e.g. `http://127.0.0.1:8470`) using `token`.
    pub fn new(base_url: &str, token: &str) -> Result<Self, ClientError> {
        if base_url.is_empty() {
            return Err(ClientError::Config(
                "no gateway URL: set SIGNOFF_URL or pass --url".into(),
            ));
        }
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(ClientError::Config(format!(
                "invalid gateway URL `{base_url}`: expected http:// or https://"
            )));
        }
        if token.is_empty() {
            return Err(ClientError::Config(
                "no token: set SIGNOFF_TOKEN or pass --token".into(),
            ));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| ClientError::Config(format!("cannot build HTTP client: {e}")))?;
        Ok(Client {
            http,
            base: base_url.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            channel: None,
        })
    }

    /// Sends `Signoff-Channel: CHANNEL` on every request, so reviews made
    /// with this client are recorded as coming through that channel (the
    /// CLI uses `cli`; without the header the gateway records `api`).
    /// `channel` is a short lowercase name: letters, digits, `-` or `_`.
    pub fn with_channel(mut self, channel: &str) -> Result<Self, ClientError> {
        let valid = !channel.is_empty()
            && channel.len() <= 32
            && channel
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !valid {
            return Err(ClientError::Config(format!(
                "invalid channel name `{channel}`: expected 1 to 32 lowercase letters, digits, '-' or '_'"
            )));
        }
        self.channel = Some(channel.to_owned());
        Ok(self)
    }

    /// The channel sent with every request, if any.
    pub fn channel(&self) -> Option<&str> {
        self.channel.as_deref()
    }

    /// The gateway's base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    async fn send<T: DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
        timeout: Duration,
    ) -> Result<T, ClientError> {
        let (_, bytes) = self.send_bytes(req, timeout).await?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// The status and body of a successful answer; problem+json as an error.
    async fn send_bytes(
        &self,
        req: reqwest::RequestBuilder,
        timeout: Duration,
    ) -> Result<(u16, Vec<u8>), ClientError> {
        let req = match &self.channel {
            Some(channel) => req.header(CHANNEL_HEADER, channel),
            None => req,
        };
        let resp = req
            .bearer_auth(&self.token)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| ClientError::Unreachable {
                url: self.base.clone(),
                reason: describe(&e),
            })?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| ClientError::Unreachable {
            url: self.base.clone(),
            reason: describe(&e),
        })?;
        if status.is_success() {
            Ok((status.as_u16(), bytes.to_vec()))
        } else {
            let problem = serde_json::from_slice::<Problem>(&bytes).unwrap_or_else(|_| Problem {
                problem_type: "about:blank".into(),
                title: status.canonical_reason().unwrap_or("error").into(),
                status: status.as_u16(),
                detail: format!(
                    "HTTP {status}: {}",
                    String::from_utf8_lossy(&bytes)
                        .chars()
                        .take(200)
                        .collect::<String>()
                ),
                instance: None,
                request_id: None,
            });
            Err(ClientError::Api {
                problem: Box::new(problem),
            })
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        self.send(
            self.http.post(self.url(path)).json(body),
            Duration::from_secs(30),
        )
        .await
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.send(self.http.get(self.url(path)), Duration::from_secs(30))
            .await
    }

    /// Submits an action request. Transient failures are retried a few times
    /// with the same idempotency key, so a retry can never create a second
    /// request.
    pub async fn submit(
        &self,
        body: &SubmitRequest,
        idempotency_key: &str,
    ) -> Result<RequestView, ClientError> {
        self.submit_new(body, idempotency_key).await.map(|s| s.view)
    }

    /// [`Client::submit`], saying whether this call created the request or
    /// its idempotency key replayed one that exists (perhaps created by an
    /// attempt whose answer was lost). A gate that claims at once
    /// ([`SubmitRequest::claim_digest`]) owns the claim only when
    /// [`Submission::created`] is true.
    pub async fn submit_new(
        &self,
        body: &SubmitRequest,
        idempotency_key: &str,
    ) -> Result<Submission, ClientError> {
        let mut delay = Duration::from_millis(100);
        let mut attempt = 0;
        loop {
            let req = self
                .http
                .post(self.url("/v1/requests"))
                .header("Idempotency-Key", idempotency_key)
                .json(body);
            let answer = self
                .send_bytes(req, Duration::from_secs(30))
                .await
                .and_then(|(status, bytes)| {
                    serde_json::from_slice(&bytes)
                        .map(|view| Submission {
                            view,
                            created: status == 201,
                        })
                        .map_err(|e| ClientError::Decode(e.to_string()))
                });
            match answer {
                // two quick retries ride out a restart; a longer outage fails closed promptly
                Err(e) if e.is_transient() && attempt < 2 => {
                    attempt += 1;
                    tokio::time::sleep(delay).await;
                    delay *= 3;
                }
                other => return other,
            }
        }
    }

    /// One request.
    pub async fn get_request(&self, id: &str) -> Result<RequestView, ClientError> {
        self.get(&format!("/v1/requests/{}", encode(id))).await
    }

    /// Requests, newest first; `query` is e.g. `status=pending&limit=50`.
    pub async fn list(&self, query: &str) -> Result<RequestPage, ClientError> {
        self.get(&format!("/v1/requests?{query}")).await
    }

    /// Long-polls until the request is decided or `timeout` passes (then
    /// answers it unchanged). `timeout` is rounded down to whole seconds,
    /// from 1 to 300.
    pub async fn wait(&self, id: &str, timeout: Duration) -> Result<RequestView, ClientError> {
        let secs = wait_secs(timeout);
        self.long_poll(
            &format!("/v1/requests/{}/wait?timeout={secs}", encode(id)),
            secs,
        )
        .await
    }

    /// Long-polls until the request's `version` differs from
    /// `since_version` (every review bumps it, not only the decision), it is
    /// no longer pending, or `timeout` passes (then answers it unchanged).
    /// Pass the `version` of the last view seen, so nothing is missed
    /// between two calls. `timeout` is rounded down to whole seconds, from
    /// 1 to 300.
    pub async fn wait_for_change(
        &self,
        id: &str,
        since_version: i64,
        timeout: Duration,
    ) -> Result<RequestView, ClientError> {
        let secs = wait_secs(timeout);
        self.long_poll(
            &format!(
                "/v1/requests/{}/wait?timeout={secs}&since_version={since_version}",
                encode(id)
            ),
            secs,
        )
        .await
    }

    async fn long_poll(&self, path: &str, secs: u64) -> Result<RequestView, ClientError> {
        // the HTTP timeout outlives the server's own by a margin, so a slow
        // answer is not mistaken for an unreachable gateway
        self.send(
            self.http.get(self.url(path)),
            Duration::from_secs(secs + 15),
        )
        .await
    }

    /// Approves or denies.
    pub async fn review(
        &self,
        id: &str,
        decision: ReviewDecision,
        reason: Option<String>,
    ) -> Result<RequestView, ClientError> {
        self.post(
            &format!("/v1/requests/{}/reviews", encode(id)),
            &ReviewBody { decision, reason },
        )
        .await
    }

    /// Cancels.
    pub async fn cancel(
        &self,
        id: &str,
        reason: Option<String>,
    ) -> Result<RequestView, ClientError> {
        self.post(
            &format!("/v1/requests/{}/cancel", encode(id)),
            &CancelBody { reason },
        )
        .await
    }

    /// Claims the approval for the action with `digest`.
    pub async fn claim(&self, id: &str, digest: &Digest) -> Result<RequestView, ClientError> {
        self.post(
            &format!("/v1/requests/{}/claim", encode(id)),
            &ClaimBody {
                digest: digest.clone(),
            },
        )
        .await
    }

    /// Reports the outcome; retried on transient failures so it is not lost.
    pub async fn outcome(&self, id: &str, body: &OutcomeBody) -> Result<RequestView, ClientError> {
        let mut delay = Duration::from_millis(200);
        let mut attempt = 0;
        loop {
            match self
                .post(&format!("/v1/requests/{}/outcome", encode(id)), body)
                .await
            {
                Err(e) if e.is_transient() && attempt < 5 => {
                    attempt += 1;
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                other => return other,
            }
        }
    }

    /// The caller.
    pub async fn whoami(&self) -> Result<WhoAmI, ClientError> {
        self.get("/v1/whoami").await
    }

    /// Audit events from index `from`.
    pub async fn events(&self, from: u64, limit: usize) -> Result<EventPage, ClientError> {
        self.get(&format!("/v1/audit/events?from={from}&limit={limit}"))
            .await
    }

    /// `GET path` (e.g. `/v1/audit/report?since=30d`) decoded as JSON:
    /// for routes whose types live outside the wire module (audit reports).
    pub async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.send(self.http.get(self.url(path)), AUDIT_TIMEOUT)
            .await
    }

    /// `POST path` with an empty JSON body, the answer decoded as JSON.
    pub async fn post_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.send(
            self.http.post(self.url(path)).json(&serde_json::json!({})),
            AUDIT_TIMEOUT,
        )
        .await
    }

    /// `GET path` as text (the ledger's signed checkpoint and key).
    pub async fn get_text(&self, path: &str) -> Result<String, ClientError> {
        let (_, bytes) = self
            .send_bytes(self.http.get(self.url(path)), AUDIT_TIMEOUT)
            .await?;
        String::from_utf8(bytes).map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// Asks the gateway to reload its policies.
    pub async fn reload_policies(&self) -> Result<PolicySetInfo, ClientError> {
        self.post("/v1/policy/reload", &serde_json::json!({})).await
    }
}

/// Audit calls read or re-hash the whole ledger: minutes, not seconds.
const AUDIT_TIMEOUT: Duration = Duration::from_secs(1800);

/// The server-side wait in whole seconds, within what the API accepts.
fn wait_secs(timeout: Duration) -> u64 {
    timeout.as_secs().clamp(1, 300)
}

/// Percent-encodes a path segment or query value (`+` and `:` included),
/// for callers that build paths for [`Client::get_json`].
pub fn encode_component(value: &str) -> String {
    encode(value)
}

/// Percent-encodes a path segment (ids are ULIDs, but names and user input may not be).
fn encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn describe(e: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut msg = if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        "connection failed".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut source = e.source();
    while let Some(s) = source {
        msg = format!("{msg}: {s}");
        source = s.source();
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A one-shot HTTP responder: captures the request head it receives and
    /// answers `status` with `body`. Enough to see what the client sends;
    /// the server's behaviour is tested against the real server elsewhere.
    async fn answer_once(
        status: &'static str,
        content_type: &'static str,
        body: &'static str,
    ) -> (String, tokio::task::JoinHandle<String>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = sock.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                head.extend_from_slice(&buf[..n]);
            }
            let answer = format!(
                "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            sock.write_all(answer.as_bytes()).await.unwrap();
            String::from_utf8_lossy(&head).into_owned()
        });
        (url, task)
    }

    const NOT_FOUND: &str = r#"{"type":"urn:signoff:problem:not-found","title":"Not found","status":404,"detail":"no request 01J"}"#;

    #[tokio::test]
    async fn wait_for_change_sends_since_version_channel_and_token() {
        let (url, head) = answer_once("404 Not Found", "application/problem+json", NOT_FOUND).await;
        let client = Client::new(&url, "tok")
            .unwrap()
            .with_channel("cli")
            .unwrap();
        let err = client
            .wait_for_change("01J", 7, Duration::from_millis(2500))
            .await
            .unwrap_err();
        assert_eq!(err.status(), Some(404));
        assert_eq!(err.problem_slug(), Some("not-found"));
        assert_eq!(err.to_string(), "no request 01J (404)");
        let head = head.await.unwrap().to_lowercase();
        assert!(
            head.starts_with("get /v1/requests/01j/wait?timeout=2&since_version=7 http/1.1\r\n"),
            "{head}"
        );
        assert!(head.contains("\r\nsignoff-channel: cli\r\n"), "{head}");
        assert!(head.contains("\r\nauthorization: bearer tok\r\n"), "{head}");
    }

    #[tokio::test]
    async fn no_channel_header_unless_asked() {
        let (url, head) = answer_once("404 Not Found", "application/problem+json", NOT_FOUND).await;
        let client = Client::new(&url, "tok").unwrap();
        assert!(client.get_request("a b").await.is_err());
        let head = head.await.unwrap().to_lowercase();
        assert!(
            head.starts_with("get /v1/requests/a%20b http/1.1"),
            "{head}"
        );
        assert!(!head.contains("signoff-channel"), "{head}");
    }

    #[tokio::test]
    async fn gateway_errors_say_whether_to_retry() {
        let (url, _) = answer_once("502 Bad Gateway", "text/plain", "upstream down").await;
        let err = Client::new(&url, "t").unwrap().whoami().await.unwrap_err();
        assert!(err.is_transient() && err.is_server_error(), "{err:?}");
        assert_eq!(err.to_string(), "HTTP 502 Bad Gateway: upstream down (502)");

        let (url, _) = answer_once("500 Internal Server Error", "text/plain", "boom").await;
        let err = Client::new(&url, "t").unwrap().whoami().await.unwrap_err();
        assert!(!err.is_transient() && err.is_server_error(), "{err:?}");

        // nothing listens on a port we just released
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let err = Client::new(&format!("http://127.0.0.1:{port}"), "t")
            .unwrap()
            .whoami()
            .await
            .unwrap_err();
        assert!(err.is_transient() && !err.is_server_error(), "{err:?}");
        assert!(
            err.to_string().starts_with(&format!(
                "cannot reach the signoff gateway at http://127.0.0.1:{port}: connection failed"
            )),
            "{err}"
        );
    }

    #[test]
    fn configuration_is_checked_up_front() {
        let msg = |r: Result<Client, ClientError>| r.unwrap_err().to_string();
        assert_eq!(
            msg(Client::new("", "t")),
            "no gateway URL: set SIGNOFF_URL or pass --url"
        );
        assert_eq!(
            msg(Client::new("127.0.0.1:8470", "t")),
            "invalid gateway URL `127.0.0.1:8470`: expected http:// or https://"
        );
        assert_eq!(
            msg(Client::new("http://x", "")),
            "no token: set SIGNOFF_TOKEN or pass --token"
        );
        let ok = || Client::new("http://x/", "t").unwrap();
        assert_eq!(ok().base_url(), "http://x");
        assert_eq!(ok().with_channel("cli").unwrap().channel(), Some("cli"));
        let long = "x".repeat(33);
        for bad in ["", "CLI", "c li", "cli\r\nx: y", long.as_str()] {
            assert!(
                msg(ok().with_channel(bad)).starts_with("invalid channel name"),
                "{bad:?}"
            );
        }
    }
}
