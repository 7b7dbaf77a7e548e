//! RFC 9457 problem+json for every error the API returns. Internal details
//! are logged, never sent.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use signoff_core::request::{ClaimRefusal, ReviewRefusal, TransitionRefusal};
use signoff_core::wire::Problem;
use signoff_engine::EngineError;

/// An API error: a status, a problem type slug and a precise detail.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    slug: &'static str,
    title: &'static str,
    detail: String,
    request_id: Option<String>,
}

impl ApiError {
    /// An error with the given status, slug, title and detail.
    pub fn new(
        status: StatusCode,
        slug: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        ApiError {
            status,
            slug,
            title,
            detail: detail.into(),
            request_id: None,
        }
    }

    /// 400 for a malformed request line, header or query.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "bad-request",
            "Bad request",
            detail,
        )
    }

    /// 422 for a body that parses but is not acceptable.
    pub fn invalid(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-request",
            "Invalid request",
            detail,
        )
    }

    /// Attaches the request concerned.
    pub fn with_request(mut self, id: &str) -> Self {
        self.request_id = Some(id.to_owned());
        self
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        use StatusCode as S;
        let detail = e.to_string();
        let (status, slug, title) = match &e {
            EngineError::Unauthenticated(_) => (
                S::UNAUTHORIZED,
                "unauthenticated",
                "Authentication required",
            ),
            EngineError::Forbidden(_) => (S::FORBIDDEN, "forbidden", "Not allowed for this role"),
            EngineError::NotFound(_) => (S::NOT_FOUND, "not-found", "Not found"),
            EngineError::Invalid(_) => (
                S::UNPROCESSABLE_ENTITY,
                "invalid-request",
                "Invalid request",
            ),
            EngineError::Limit(_) => (S::BAD_REQUEST, "input-limit", "Input outside limits"),
            EngineError::IdempotencyMismatch { .. } => (
                S::UNPROCESSABLE_ENTITY,
                "idempotency-key-reused",
                "Idempotency key reused for a different action",
            ),
            EngineError::ReviewRefused(r) => match r {
                ReviewRefusal::SelfReview { .. } => {
                    (S::FORBIDDEN, "self-review", "Separation of duties")
                }
                ReviewRefusal::ProvisionedByParty { .. } => (
                    S::FORBIDDEN,
                    "provisioned-by-party",
                    "Separation of duties: reviewer provisioned by a party to the request",
                ),
                ReviewRefusal::Agent { .. } | ReviewRefusal::Role { .. } => {
                    (S::FORBIDDEN, "forbidden", "Not allowed for this role")
                }
                ReviewRefusal::NotInRequiredGroup { .. } => {
                    (S::FORBIDDEN, "not-eligible", "Not an eligible reviewer")
                }
                ReviewRefusal::NotPending { .. } | ReviewRefusal::Expired { .. } => {
                    (S::CONFLICT, "not-pending", "Request is no longer pending")
                }
                ReviewRefusal::AlreadyReviewed { .. } => {
                    (S::CONFLICT, "already-reviewed", "Already reviewed")
                }
            },
            EngineError::ClaimRefused(c) => match c {
                ClaimRefusal::NotRequester { .. } => {
                    (S::FORBIDDEN, "forbidden", "Not the requester")
                }
                ClaimRefusal::DigestMismatch { .. } => (
                    S::CONFLICT,
                    "digest-mismatch",
                    "Approval is for a different action",
                ),
                ClaimRefusal::PolicyNowDenies(_) => (
                    S::CONFLICT,
                    "policy-denies",
                    "Policy now denies this action",
                ),
                ClaimRefusal::PolicyNeedsMore(_) => (
                    S::CONFLICT,
                    "needs-approval",
                    "Policy now needs more approvals",
                ),
                ClaimRefusal::NotApproved { .. } | ClaimRefusal::Lapsed { .. } => {
                    (S::CONFLICT, "not-claimable", "Request cannot be claimed")
                }
            },
            EngineError::Transition(t) => match t {
                TransitionRefusal::NotAllowed(_) => (S::FORBIDDEN, "forbidden", "Not allowed"),
                TransitionRefusal::WrongStatus(_) => {
                    (S::CONFLICT, "wrong-status", "Request is in the wrong state")
                }
            },
            EngineError::Duplicate(_) => (S::CONFLICT, "duplicate", "Already exists"),
            EngineError::Policy(_) => (
                S::UNPROCESSABLE_ENTITY,
                "policy-invalid",
                "Policy set rejected",
            ),
            EngineError::Busy(_) => (S::SERVICE_UNAVAILABLE, "busy", "Concurrent update; retry"),
            EngineError::Unavailable(_) => (
                S::SERVICE_UNAVAILABLE,
                "unavailable",
                "Database unavailable",
            ),
            EngineError::LedgerUntrusted(_) => (
                S::SERVICE_UNAVAILABLE,
                "ledger-untrusted",
                "Ledger not trusted",
            ),
            EngineError::Internal(_) => (S::INTERNAL_SERVER_ERROR, "internal", "Internal error"),
        };
        let detail = if matches!(e, EngineError::Internal(_)) {
            tracing::error!(error = %e, "internal error");
            "internal error; the server log has details".to_owned()
        } else if matches!(e, EngineError::Unavailable(_)) {
            tracing::warn!(error = %e, "database unavailable");
            "the database is unavailable; nothing was decided or recorded, retry later".to_owned()
        } else if let EngineError::LedgerUntrusted(why) = e {
            format!(
                "the ledger is not trusted, so nothing is decided until an operator acts: {why}"
            )
        } else {
            detail
        };
        ApiError::new(status, slug, title, detail)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = Problem {
            problem_type: format!("urn:signoff:problem:{}", self.slug),
            title: self.title.to_owned(),
            status: self.status.as_u16(),
            detail: self.detail,
            instance: None,
            request_id: self.request_id,
        };
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut resp = (self.status, body).into_response();
        let headers = resp.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        resp
    }
}
