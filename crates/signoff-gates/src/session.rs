//! The gate session: the one loop every gate runs, whatever its protocol.
//!
//! ```text
//! submit (or resume) ─▶ wait, review by review ─▶ claim with the local digest ─▶ run ─▶ report
//! ```
//!
//! A gate (exec, the MCP proxy, the Claude Code hook, the HTTP and
//! PostgreSQL proxies) only translates its protocol: it builds the
//! [`SubmitRequest`], computes the digest of what it is about to run
//! ([`GateAction::digest`]), runs it ([`GateAction::run`]) and maps the
//! typed [`SessionEnd`] to its own exit status or response. Everything
//! between — long-polling with `since_version` so each review is seen as it
//! lands, riding out a gateway restart while waiting, cancelling the request
//! on interrupt, claiming, reporting — lives here once.
//!
//! The session **fails closed**: the action runs only after the gateway
//! accepted a claim for the digest the gate computed itself. An unreachable
//! gateway, a 5xx, a refused claim, a digest the gate cannot compute — each
//! ends the session without running anything.

use signoff_client::{Client, ClientError};
use signoff_core::wire::{OutcomeBody, RequestView, SubmitRequest};
use signoff_core::{
    Decision, Digest, PrincipalRef, RequestStatus, Requirement, Review, ReviewDecision,
};
use std::future::Future;
use std::pin::pin;
use std::time::{Duration, Instant};

/// How a session finds its request.
#[derive(Debug, Clone)]
pub enum Start {
    /// Submit a new request.
    Submit {
        /// What to ask for. The principal is whoever the client's token names.
        request: Box<SubmitRequest>,
        /// Sent as `Idempotency-Key`, so a retried submission can never
        /// create a second request.
        idempotency_key: String,
    },
    /// Resume an existing request of the same principal (e.g. one approved
    /// while the gate was not running).
    Resume {
        /// The request id.
        id: String,
    },
}

impl Start {
    /// Submits `request` under a fresh idempotency key.
    pub fn submit(request: SubmitRequest) -> Self {
        Start::Submit {
            request: Box::new(request),
            idempotency_key: ulid::Ulid::new().to_string(),
        }
    }
}

/// What a gate's action produced: the outcome to report to the gateway and
/// whatever the gate needs afterwards.
#[derive(Debug, Clone)]
pub struct Execution<T> {
    /// Reported as the request's outcome (exit status, duration, output
    /// hash, summary).
    pub outcome: OutcomeBody,
    /// What the gate keeps for itself: its exit status, the response to
    /// forward, …
    pub output: T,
}

/// The action a gate guards. The session calls [`GateAction::digest`] once
/// the gateway has said who the principal is and again right before each
/// claim (what the gate would run may have changed while it waited), and
/// [`GateAction::run`] at most once, only after a successful claim.
pub trait GateAction: Send {
    /// What the gate keeps from running the action.
    type Output: Send;

    /// The digest of exactly what this gate is about to run, for
    /// `principal` (the caller the gateway authenticated). It must be
    /// computed from the gate's own inputs, never copied from the gateway's
    /// answer: that is what binds an approval to one action. An error ends
    /// the session with [`SessionEnd::Usage`].
    fn digest(&self, principal: &PrincipalRef) -> Result<Digest, String>;

    /// Runs the action; the request is `executing` and `claimed` is its
    /// state. Whatever happens (even a failure to start) is returned as an
    /// [`Execution`], so the outcome is always reported.
    fn run(self, claimed: &RequestView) -> impl Future<Output = Execution<Self::Output>> + Send;
}

/// What the session is doing, for a terminal, a CI log or a protocol's own
/// progress notifications.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Progress {
    /// The request exists: just submitted, or found when resuming. It may
    /// already be decided (allowed or denied at once).
    Submitted(RequestView),
    /// A review landed while the session waited (one event per review, in
    /// order, even when several land between two answers).
    ReviewLanded {
        /// The request.
        id: String,
        /// The review.
        review: Review,
        /// Everyone who has approved so far, this review included.
        approved_so_far: Vec<String>,
        /// What the policy requires, if approval is required.
        requirement: Option<Requirement>,
    },
    /// The request stopped being pending while the session waited
    /// (approved, denied, cancelled, expired).
    Decided(RequestView),
    /// The policy, re-checked at claim time, now wants more approvals: the
    /// request is pending again and the session waits again.
    NeedsMoreApprovals(RequestView),
    /// The gateway is unreachable (or answered 502–504) while waiting; the
    /// session keeps waiting and retries. Nothing runs meanwhile.
    Reconnecting {
        /// The request.
        id: String,
        /// What failed.
        error: ClientError,
        /// 1 for the first failure of this outage, then 2, 3, …
        attempt: u32,
    },
    /// The gateway answers again after [`Progress::Reconnecting`].
    Reconnected {
        /// The request.
        id: String,
    },
    /// The claim succeeded; the action runs now.
    Claimed(RequestView),
}

/// Receives [`Progress`] events as they happen. Any `FnMut(&Progress)`
/// closure is an observer.
pub trait Observer: Send {
    /// Called for every event, in order.
    fn on_progress(&mut self, event: &Progress);
}

impl<F: FnMut(&Progress) + Send> Observer for F {
    fn on_progress(&mut self, event: &Progress) {
        self(event)
    }
}

/// An observer that shows nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct Silent;

impl Observer for Silent {
    fn on_progress(&mut self, _: &Progress) {}
}

/// How a session ended. Each gate maps this to its own exit status or
/// response; only [`SessionEnd::Ran`] means the action ran.
#[derive(Debug)]
pub enum SessionEnd<T> {
    /// The claim succeeded and the action ran.
    Ran {
        /// The request.
        id: String,
        /// What the gate kept from running it.
        output: T,
        /// The outcome reported.
        outcome: OutcomeBody,
        /// Set when the outcome could not be recorded (the action did run).
        report_error: Option<ClientError>,
    },
    /// The policy or a reviewer denied it, or it was cancelled.
    Denied {
        /// The request.
        id: String,
        /// `denied` or `cancelled`.
        status: RequestStatus,
        /// Who or what refused and why, e.g. `denied by bob: not now` or
        /// `denied by policy no-drop: dropping is never allowed`.
        reason: String,
    },
    /// The gateway refused the claim (the digest differs from the approved
    /// action, the policy now denies it, it was claimed already…).
    ClaimRefused {
        /// The request.
        id: String,
        /// The gateway's answer.
        error: ClientError,
    },
    /// The request was already claimed or executed: an approval runs once.
    AlreadyUsed {
        /// The request.
        id: String,
        /// `executing` or `executed`.
        status: RequestStatus,
    },
    /// Nobody decided in time, or the approval was not claimed in time.
    Expired {
        /// The request.
        id: String,
        /// `expired` or `lapsed`.
        status: RequestStatus,
        /// The gateway's explanation.
        reason: String,
    },
    /// The gate's own wait limit passed; the request is still pending.
    GaveUp {
        /// The request.
        id: String,
        /// How long the session waited.
        waited: Duration,
    },
    /// The gateway could not be reached or failed (5xx, an answer that
    /// cannot be read). Nothing was run.
    Unavailable {
        /// The request, when one exists.
        id: Option<String>,
        /// What failed.
        error: ClientError,
    },
    /// The gateway rejected the submission or the resume (bad credentials,
    /// a role that may not submit, a malformed request, an unknown id).
    Rejected {
        /// The request being resumed, if any.
        id: Option<String>,
        /// The gateway's answer.
        error: ClientError,
    },
    /// The interrupt future resolved before the action ran; the request
    /// was cancelled.
    Interrupted {
        /// The request, when it was created before the interrupt.
        id: Option<String>,
        /// Set when cancelling failed.
        cancel_error: Option<ClientError>,
    },
    /// The gate cannot compute what it would run (its own input is wrong).
    Usage {
        /// The request, if one was found or submitted.
        id: Option<String>,
        /// What is wrong.
        message: String,
    },
}

impl<T> SessionEnd<T> {
    /// The request id, when a request exists.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            SessionEnd::Ran { id, .. }
            | SessionEnd::Denied { id, .. }
            | SessionEnd::ClaimRefused { id, .. }
            | SessionEnd::AlreadyUsed { id, .. }
            | SessionEnd::Expired { id, .. }
            | SessionEnd::GaveUp { id, .. } => Some(id),
            SessionEnd::Unavailable { id, .. }
            | SessionEnd::Rejected { id, .. }
            | SessionEnd::Interrupted { id, .. }
            | SessionEnd::Usage { id, .. } => id.as_deref(),
        }
    }
}

/// One gate session against one gateway.
#[derive(Debug, Clone)]
pub struct Session<'c> {
    client: &'c Client,
    give_up_after: Option<Duration>,
    poll: Duration,
    reconnect_first: Duration,
    reconnect_max: Duration,
    claim_as: Option<PrincipalRef>,
}

impl<'c> Session<'c> {
    /// A session that waits until the request is decided or expires.
    pub fn new(client: &'c Client) -> Self {
        Session {
            client,
            give_up_after: None,
            poll: Duration::from_secs(30),
            reconnect_first: Duration::from_millis(500),
            reconnect_max: Duration::from_secs(5),
            claim_as: None,
        }
    }

    /// Claims in the submission's own round trip when the policy allows the
    /// request outright ([`SubmitRequest::claim_digest`]): the gate, knowing
    /// it is `principal` (from `whoami`, asked once), computes the digest
    /// before submitting. Saves one durable write and one round trip on
    /// every allowed action; a request that needs approval is claimed as
    /// usual once approved. Only a submission this session created counts
    /// as its claim: a replayed request that is already executing was
    /// claimed by someone else's attempt and is [`SessionEnd::AlreadyUsed`].
    pub fn claim_at_once(mut self, principal: Option<PrincipalRef>) -> Self {
        self.claim_as = principal;
        self
    }

    /// Stops waiting after `wait` (counted from the start of the session)
    /// with [`SessionEnd::GaveUp`]; `None` waits until the request expires.
    pub fn give_up_after(mut self, wait: Option<Duration>) -> Self {
        self.give_up_after = wait;
        self
    }

    /// Runs the session: submit (or resume), wait, claim with the digest
    /// `action` computes, run `action`, report its outcome.
    ///
    /// When `interrupt` resolves before the claim (a gate passes ctrl-c, a
    /// client disconnect, a shutdown), the request is cancelled and the
    /// session ends with [`SessionEnd::Interrupted`]; once the claim
    /// succeeded the action is the gate's to stop, and its outcome is still
    /// reported.
    pub async fn run<A: GateAction>(
        &self,
        start: Start,
        action: A,
        observer: &mut dyn Observer,
        interrupt: impl Future<Output = ()> + Send,
    ) -> SessionEnd<A::Output> {
        let started = Instant::now();
        let mut interrupt = pin!(interrupt);
        let resuming = match &start {
            Start::Resume { id } => Some(id.clone()),
            Start::Submit { .. } => None,
        };

        // An interrupt during the submission lets it finish, so that the
        // request it may have created can be cancelled rather than left for
        // reviewers.
        let mut interrupted = false;
        // the digest claimed with the submission, when claiming at once: it
        // goes in the request body, and the answer must show it claimed
        let mut start = start;
        let mut claim_digest = None;
        if let (Start::Submit { request, .. }, Some(principal)) = (&mut start, &self.claim_as) {
            match action.digest(principal) {
                Ok(d) => {
                    request.claim_digest = Some(d.clone());
                    claim_digest = Some(d);
                }
                Err(message) => return SessionEnd::Usage { id: None, message },
            }
        }
        let first = {
            let mut first = pin!(async {
                match &start {
                    Start::Submit {
                        request,
                        idempotency_key,
                    } => self
                        .client
                        .submit_new(request, idempotency_key)
                        .await
                        .map(|s| {
                            // claimed by this very submission
                            let ours = s.created
                                && s.view.status == RequestStatus::Executing
                                && claim_digest.as_ref() == Some(&s.view.digest);
                            (s.view, ours)
                        }),
                    Start::Resume { id } => {
                        self.client.get_request(id).await.map(|view| (view, false))
                    }
                }
            });
            loop {
                tokio::select! {
                    r = &mut first => break r,
                    () = &mut interrupt, if !interrupted => interrupted = true,
                }
            }
        };
        let (mut view, claimed_at_once) = match first {
            Ok(v) => v,
            Err(_) if interrupted => {
                return SessionEnd::Interrupted {
                    id: resuming,
                    cancel_error: None,
                }
            }
            Err(error) => return start_failed(resuming, error),
        };
        let id = view.id.clone();
        if interrupted {
            if claimed_at_once {
                // claimed but never run: say so, rather than leave it executing
                let not_run = OutcomeBody::not_run(None, "interrupted before it ran".into());
                let cancel_error = self.client.outcome(&id, &not_run).await.err();
                return SessionEnd::Interrupted {
                    id: Some(id),
                    cancel_error,
                };
            }
            return self.interrupted(&view).await;
        }
        // (a digest computed for a claim at once is known to compute)
        let digest_fails = match claimed_at_once {
            true => None,
            false => action.digest(&view.request.principal).err(),
        };
        if let Some(message) = digest_fails {
            // a request this gate can never run must not wait for reviewers
            if resuming.is_none() && is_open(view.status) {
                let _ = self
                    .client
                    .cancel(&id, Some(format!("the gate cannot run it: {message}")))
                    .await;
            }
            return SessionEnd::Usage {
                id: Some(id),
                message,
            };
        }
        observer.on_progress(&Progress::Submitted(view.clone()));
        if claimed_at_once {
            observer.on_progress(&Progress::Claimed(view.clone()));
            return self.run_claimed(id, action, &view).await;
        }

        let give_up = self.give_up_after.map(|w| started + w);
        let mut failures = 0u32;
        loop {
            match view.status {
                RequestStatus::Pending => {
                    let remaining = give_up.map(|g| g.saturating_duration_since(Instant::now()));
                    if remaining == Some(Duration::ZERO) {
                        return SessionEnd::GaveUp {
                            id,
                            waited: started.elapsed(),
                        };
                    }
                    let slice = remaining
                        .unwrap_or(self.poll)
                        .min(self.poll)
                        .max(Duration::from_secs(1));
                    let answer = tokio::select! {
                        r = self.client.wait_for_change(&id, view.version, slice) => r,
                        () = &mut interrupt => return self.interrupted(&view).await,
                    };
                    match answer {
                        Ok(next) => {
                            if failures > 0 {
                                failures = 0;
                                observer.on_progress(&Progress::Reconnected { id: id.clone() });
                            }
                            announce_changes(&view, &next, observer);
                            view = next;
                        }
                        Err(error) if error.is_transient() => {
                            // keep waiting through a gateway restart or a
                            // database outage, but never run without a claim
                            failures += 1;
                            let pause = self.backoff(failures);
                            observer.on_progress(&Progress::Reconnecting {
                                id: id.clone(),
                                error,
                                attempt: failures,
                            });
                            tokio::select! {
                                () = tokio::time::sleep(pause) => {}
                                () = &mut interrupt => return self.interrupted(&view).await,
                            }
                        }
                        Err(error) => {
                            return SessionEnd::Unavailable {
                                id: Some(id),
                                error,
                            }
                        }
                    }
                }
                RequestStatus::Approved => {
                    // taken again now: a gate binds what it will really run
                    // (files, executables), which may have changed while it
                    // waited; a different digest makes the gateway refuse
                    let digest = match action.digest(&view.request.principal) {
                        Ok(d) => d,
                        Err(message) => {
                            return SessionEnd::Usage {
                                id: Some(id),
                                message,
                            }
                        }
                    };
                    match self.client.claim(&id, &digest).await {
                        Ok(claimed) => {
                            observer.on_progress(&Progress::Claimed(claimed.clone()));
                            return self.run_claimed(id, action, &claimed).await;
                        }
                        Err(e) if e.problem_slug() == Some("needs-approval") => {
                            // the re-checked policy wants more approvals: the
                            // request is pending again, so wait again
                            view = match self.client.get_request(&id).await {
                                Ok(v) => v,
                                Err(error) => {
                                    return SessionEnd::Unavailable {
                                        id: Some(id),
                                        error,
                                    }
                                }
                            };
                            if view.status == RequestStatus::Pending {
                                observer.on_progress(&Progress::NeedsMoreApprovals(view.clone()));
                            }
                        }
                        // a lost answer to a claim that went through cannot be
                        // retried (a second claim is refused), so fail closed now
                        Err(error) if error.is_transient() || error.is_server_error() => {
                            return SessionEnd::Unavailable {
                                id: Some(id),
                                error,
                            }
                        }
                        Err(error) => return SessionEnd::ClaimRefused { id, error },
                    }
                }
                RequestStatus::Denied | RequestStatus::Cancelled => {
                    return SessionEnd::Denied {
                        status: view.status,
                        reason: denial_reason(&view),
                        id,
                    }
                }
                RequestStatus::Expired | RequestStatus::Lapsed => {
                    return SessionEnd::Expired {
                        status: view.status,
                        reason: view.status_reason.clone().unwrap_or_default(),
                        id,
                    }
                }
                RequestStatus::Executing | RequestStatus::Executed => {
                    return SessionEnd::AlreadyUsed {
                        id,
                        status: view.status,
                    }
                }
            }
        }
    }

    /// Runs the claimed action and reports its outcome.
    async fn run_claimed<A: GateAction>(
        &self,
        id: String,
        action: A,
        claimed: &RequestView,
    ) -> SessionEnd<A::Output> {
        let Execution { outcome, output } = action.run(claimed).await;
        let report_error = self.client.outcome(&id, &outcome).await.err();
        SessionEnd::Ran {
            id,
            output,
            outcome,
            report_error,
        }
    }

    /// Cancels the request (if it can still run) after an interrupt.
    async fn interrupted<T>(&self, view: &RequestView) -> SessionEnd<T> {
        let cancel_error = if is_open(view.status) {
            self.client
                .cancel(&view.id, Some("interrupted while waiting".into()))
                .await
                .err()
        } else {
            None
        };
        SessionEnd::Interrupted {
            id: Some(view.id.clone()),
            cancel_error,
        }
    }

    /// 0.5 s, 1 s, 2 s, 4 s, then every 5 s: prompt after a restart, gentle
    /// during a long outage.
    fn backoff(&self, failures: u32) -> Duration {
        self.reconnect_first
            .saturating_mul(1 << failures.saturating_sub(1).min(16))
            .min(self.reconnect_max)
    }
}

/// Whether the request could still run (and so should be cancelled when
/// the gate will not run it).
fn is_open(status: RequestStatus) -> bool {
    matches!(status, RequestStatus::Pending | RequestStatus::Approved)
}

/// Submission or resume failed: the gateway's 4xx is the caller's to fix;
/// anything else means the gateway is not answering properly.
fn start_failed<T>(id: Option<String>, error: ClientError) -> SessionEnd<T> {
    if let ClientError::Config(message) = error {
        return SessionEnd::Usage { id, message };
    }
    if matches!(error, ClientError::Api { .. }) && !error.is_server_error() {
        SessionEnd::Rejected { id, error }
    } else {
        SessionEnd::Unavailable { id, error }
    }
}

/// Emits one event per review that landed between `before` and `after`,
/// then [`Progress::Decided`] if the request stopped being pending.
fn announce_changes(before: &RequestView, after: &RequestView, observer: &mut dyn Observer) {
    let seen = before.reviews.len().min(after.reviews.len());
    for (i, review) in after.reviews.iter().enumerate().skip(seen) {
        let approved_so_far = after.reviews[..=i]
            .iter()
            .filter(|r| r.decision == ReviewDecision::Approve)
            .map(|r| r.reviewer.clone())
            .collect();
        observer.on_progress(&Progress::ReviewLanded {
            id: after.id.clone(),
            review: review.clone(),
            approved_so_far,
            requirement: after.verdict.requirement.clone(),
        });
    }
    if before.status == RequestStatus::Pending && after.status != RequestStatus::Pending {
        observer.on_progress(&Progress::Decided(after.clone()));
    }
}

/// Who or what refused a denied or cancelled request, and why, in one
/// phrase: `denied by bob: not now`, `denied by policy no-drop: dropping
/// is never allowed`, `cancelled by agent:bot: …`.
pub fn denial_reason(view: &RequestView) -> String {
    let status = view.status.to_string();
    let reason = view.status_reason.clone().filter(|r| !r.trim().is_empty());
    match reason {
        // the gateway already names who decided ("denied by bob: …")
        Some(r) if r.starts_with(&format!("{status} by ")) => r,
        reason
            if view.status == RequestStatus::Denied && view.verdict.decision == Decision::Deny =>
        {
            let by = match view.verdict.policy_ids.as_slice() {
                [] => "denied by policy".to_owned(),
                ids => format!("denied by policy {}", ids.join(", ")),
            };
            match reason.or_else(|| Some(view.verdict.reasons.join("; ")).filter(|r| !r.is_empty()))
            {
                Some(why) => format!("{by}: {why}"),
                None => by,
            }
        }
        Some(r) => format!("{status}: {r}"),
        None => status,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_then_stays() {
        let client = Client::new("http://127.0.0.1:1", "t").unwrap();
        let s = Session::new(&client);
        let waits: Vec<u128> = (1..=7).map(|n| s.backoff(n).as_millis()).collect();
        assert_eq!(waits, [500, 1000, 2000, 4000, 5000, 5000, 5000]);
        assert_eq!(s.backoff(u32::MAX), Duration::from_secs(5));
    }
}
