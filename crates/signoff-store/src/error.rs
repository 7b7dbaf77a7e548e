/// Why a store operation failed. Messages never contain credentials.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or stopped answering; retry later.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// An optimistic-concurrency check failed; reload and retry.
    #[error("concurrent update of request {0}")]
    Conflict(String),
    /// A unique key already exists.
    #[error("{0} already exists")]
    Duplicate(String),
    /// The row to change does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// Stored data could not be decoded.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    /// The database URL or options are wrong.
    #[error("{0}")]
    Config(String),
    /// Any other database error.
    #[error("database error: {0}")]
    Database(String),
}
