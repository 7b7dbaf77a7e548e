//! The HTTP client for the signoff REST API, shared by the gates and the CLI.

use serde::de::DeserializeOwned;
use serde::Serialize;
use signoff_core::wire::{
    CancelBody, ClaimBody, EventPage, OutcomeBody, PolicySetInfo, Problem, RequestPage,
    RequestView, ReviewBody, SubmitRequest, WhoAmI,
};
use signoff_core::{Digest, ReviewDecision};
use std::time::Duration;

/// Why a call to the gateway failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No URL or token configured.
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

    /// Whether retrying later may help (unreachable, 503).
    pub fn is_transient(&self) -> bool {
        matches!(self, ClientError::Unreachable { .. }) || self.status() == Some(503)
    }
}

/// A client bound to one gateway and one bearer token.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
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
        })
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
            serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode(e.to_string()))
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
        let mut delay = Duration::from_millis(100);
        let mut attempt = 0;
        loop {
            let req = self
                .http
                .post(self.url("/v1/requests"))
                .header("Idempotency-Key", idempotency_key)
                .json(body);
            match self.send(req, Duration::from_secs(30)).await {
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

    /// Long-polls until the request is decided or `timeout` passes.
    pub async fn wait(&self, id: &str, timeout: Duration) -> Result<RequestView, ClientError> {
        let secs = timeout.as_secs().clamp(1, 300);
        let req = self
            .http
            .get(self.url(&format!("/v1/requests/{}/wait?timeout={secs}", encode(id))));
        self.send(req, Duration::from_secs(secs + 15)).await
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

    /// Asks the gateway to reload its policies.
    pub async fn reload_policies(&self) -> Result<PolicySetInfo, ClientError> {
        self.post("/v1/policy/reload", &serde_json::json!({})).await
    }
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
