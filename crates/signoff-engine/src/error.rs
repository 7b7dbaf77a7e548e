use signoff_core::request::{ClaimRefusal, ReviewRefusal, TransitionRefusal};
use signoff_store::StoreError;

/// Why a use case failed. Each variant maps to one HTTP status and one CLI line.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Missing, unknown or revoked credentials.
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller's role does not allow this.
    #[error("{0}")]
    Forbidden(String),
    /// No such request or principal (or not visible to the caller).
    #[error("{0} not found")]
    NotFound(String),
    /// The input is malformed.
    #[error("{0}")]
    Invalid(String),
    /// The input breaks a limit (size, characters, nesting); the message
    /// names the field and the limit. See [`signoff_core::input`].
    #[error("{0}")]
    Limit(String),
    /// An idempotency key was reused for a different action.
    #[error(
        "idempotency key `{key}` was already used for a different action (request {request_id})"
    )]
    IdempotencyMismatch {
        /// The key.
        key: String,
        /// The request it belongs to.
        request_id: String,
    },
    /// A review was refused; the attempt is recorded.
    #[error("review refused: {0}")]
    ReviewRefused(ReviewRefusal),
    /// A claim was refused; the attempt is recorded.
    #[error("claim refused: {0}")]
    ClaimRefused(ClaimRefusal),
    /// Cancel or outcome in the wrong state or by the wrong principal.
    #[error("{0}")]
    Transition(TransitionRefusal),
    /// A principal or key already exists.
    #[error("{0} already exists")]
    Duplicate(String),
    /// A policy set failed to load; the previous one (if any) stays active.
    #[error("policy error:\n{0}")]
    Policy(String),
    /// Lost too many concurrency races; retry.
    #[error("{0}")]
    Busy(String),
    /// The database is unavailable; gates must fail closed.
    #[error("{0}")]
    Unavailable(String),
    /// The database's ledger is not consistent with the last checkpoint
    /// this gateway signed (or the key changed): decisions are refused
    /// until an operator acts.
    #[error("the ledger is not trusted: {0}")]
    LedgerUntrusted(String),
    /// A bug or corrupt data; details are logged, not shown.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<signoff_core::InputError> for EngineError {
    fn from(e: signoff_core::InputError) -> Self {
        EngineError::Limit(e.to_string())
    }
}

impl From<signoff_core::ActionError> for EngineError {
    fn from(e: signoff_core::ActionError) -> Self {
        use signoff_core::ActionError as A;
        match e {
            A::Length { .. } | A::ContextTooLarge | A::Limit(_) => {
                EngineError::Limit(e.to_string())
            }
            other => EngineError::Invalid(other.to_string()),
        }
    }
}

impl From<StoreError> for EngineError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(m) => {
                EngineError::Unavailable(format!("database unavailable: {m}"))
            }
            StoreError::Duplicate(m) => EngineError::Duplicate(m),
            StoreError::NotFound(m) => EngineError::NotFound(m),
            StoreError::Conflict(id) => {
                EngineError::Busy(format!("request {id} is being changed concurrently; retry"))
            }
            other => EngineError::Internal(other.to_string()),
        }
    }
}
