//! Durable storage for signoff behind one trait, [`Store`], with a SQLite
//! backend (the default, embedded) and a PostgreSQL backend (for several
//! replicas). Both pass the same conformance suite.
//!
//! The store is deliberately dumb: the engine decides every state change with
//! the pure core and hands the store a [`Commit`] — the rows to write *and*
//! the audit events that describe them — which the store applies atomically.
//! There is no way to write a state change without its events, and no way to
//! edit or delete an event.
//!
//! Audit events get dense indexes 0, 1, 2, … in commit order, assigned inside
//! the committing transaction (a single-row counter locked for the duration),
//! so the Merkle ledger can be built on them without gaps or reordering.
//!
//! Timestamps are stored as whole milliseconds: finer precision is truncated
//! (the engine's clock only produces milliseconds, so its values round-trip
//! exactly). Commits from concurrent callers are group-committed: one writer
//! task applies whatever is queued in one transaction and one fsync, with
//! every commit still all-or-nothing on its own.

use jiff::Timestamp;
use signoff_core::{AuditEvent, Principal, RequestRecord, RequestStatus};
use std::sync::Arc;

mod common;
mod error;
pub mod scan;
mod shared;
mod writer;
pub use error::StoreError;
pub use scan::{LedgerScan, ScannedEntry, MAX_SCAN};

/// One change to durable state.
#[derive(Debug, Clone)]
pub enum Change {
    /// Insert a new request (its `version` must be 0). Fails with
    /// [`StoreError::Duplicate`] if its `(principal, idempotency_key)` exists.
    InsertRequest(RequestRecord),
    /// Replace a request. The record's `version` is the version it was read
    /// at; the write fails with [`StoreError::Conflict`] if the stored version
    /// differs, and otherwise stores `version + 1`.
    UpdateRequest(RequestRecord),
    /// Insert a principal with the SHA-256 (hex) of its bearer token. Fails
    /// with [`StoreError::Duplicate`] if the name or token hash exists.
    InsertPrincipal {
        /// The principal.
        principal: Principal,
        /// Hex SHA-256 of its token.
        token_hash: String,
    },
    /// Store a signed checkpoint. Fails with [`StoreError::Duplicate`] if one
    /// of that size exists.
    InsertCheckpoint(StoredCheckpoint),
    /// Mark a principal revoked. Fails with [`StoreError::NotFound`] if unknown.
    RevokePrincipal {
        /// Its name.
        name: String,
        /// When.
        at: Timestamp,
    },
}

/// A signed checkpoint of the ledger as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    /// Tree size it commits to.
    pub size: u64,
    /// RFC 6962 root of the first `size` entries.
    pub root: [u8; 32],
    /// The C2SP signed note.
    pub note: String,
    /// When it was signed.
    pub created_at: Timestamp,
}

/// Changes and their audit events, applied all together or not at all.
#[derive(Debug, Clone, Default)]
pub struct Commit {
    /// State changes, applied in order.
    pub changes: Vec<Change>,
    /// Audit events, appended in order after the changes.
    pub events: Vec<AuditEvent>,
}

/// What a successful commit assigned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// Index of each appended event, in the order given.
    pub event_indexes: Vec<u64>,
}

/// Filters for listing requests; results are newest first.
#[derive(Debug, Clone, Default)]
pub struct RequestFilter {
    /// Only these statuses (any if empty).
    pub statuses: Vec<RequestStatus>,
    /// Only this exact action.
    pub action: Option<String>,
    /// Only this principal (`agent:NAME` / `user:NAME`).
    pub principal: Option<String>,
    /// Only ids lexicographically below this one (ids sort by creation time).
    pub before: Option<String>,
    /// At most this many (the store caps it at 1,000).
    pub limit: usize,
}

/// Result alias for store operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Durable state of signoff. Every implementation passes the conformance
/// suite in `tests/conformance.rs`.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// Applies `commit` atomically and durably (fsync'd before returning).
    async fn commit(&self, commit: Commit) -> Result<Receipt>;
    /// A request by id.
    async fn request(&self, id: &str) -> Result<Option<RequestRecord>>;
    /// The request `principal` submitted with `key`, if any.
    async fn request_by_idempotency_key(
        &self,
        principal: &str,
        key: &str,
    ) -> Result<Option<RequestRecord>>;
    /// Requests matching `filter`, newest first.
    async fn list_requests(&self, filter: &RequestFilter) -> Result<Vec<RequestRecord>>;
    /// Pending or approved requests whose `expires_at` is at or before `now`, oldest deadline first.
    async fn due_requests(&self, now: Timestamp, limit: usize) -> Result<Vec<RequestRecord>>;
    /// The earliest `expires_at` among pending and approved requests.
    async fn next_deadline(&self) -> Result<Option<Timestamp>>;
    /// Number of requests per status (statuses with none may be omitted).
    async fn count_by_status(&self) -> Result<Vec<(RequestStatus, u64)>>;
    /// The principal whose token hashes to `token_hash`, revoked or not.
    async fn principal_by_token_hash(&self, token_hash: &str) -> Result<Option<Principal>>;
    /// A principal by name.
    async fn principal(&self, name: &str) -> Result<Option<Principal>>;
    /// All principals, by name.
    async fn list_principals(&self) -> Result<Vec<Principal>>;
    /// Events with index ≥ `from`, in index order, at most `limit` (capped at 10,000).
    async fn events(&self, from: u64, limit: usize) -> Result<Vec<AuditEvent>>;
    /// Number of events (= next index).
    async fn event_count(&self) -> Result<u64>;
    /// The index range `(first, last)` of the events of a period: `first` is
    /// the lowest index whose time is ≥ `since`, `last` the highest whose
    /// time is < `until`. `None` when either does not exist or `first > last`.
    /// (Indexes follow commit order, so with a monotonic clock every event in
    /// `first..=last` is in the period.)
    async fn event_range(&self, since: Timestamp, until: Timestamp) -> Result<Option<(u64, u64)>>;
    /// The leaf hashes recorded at append time (ledger nodes of level 0)
    /// with index ≥ `from`, by index, at most `limit` (capped at 10,000), as
    /// `(index, hash)`.
    async fn ledger_leaves(&self, from: u64, limit: usize) -> Result<Vec<(u64, [u8; 32])>>;
    /// Fills `into` with the entries of `[from, to)` (at most [`MAX_SCAN`]
    /// of them), each hashed as the leaf its columns spell, and the
    /// recorded leaf hashes of the range: one pass, for verifiers. `into`
    /// is cleared first; its buffers are reused. See [`scan`].
    async fn scan_ledger(&self, from: u64, to: u64, into: &mut LedgerScan) -> Result<()>;
    /// Checks the database answers.
    async fn ping(&self) -> Result<()>;
    /// Hashes of perfect subtrees of the ledger, `(level, index)` as in
    /// `signoff_ledger::merkle`, in the order asked; one query. A missing
    /// node is [`StoreError::Corrupt`].
    async fn ledger_nodes(&self, coords: &[(u32, u64)]) -> Result<Vec<[u8; 32]>>;
    /// Checkpoints with size ≥ `from_size`, smallest first, at most `limit`.
    async fn checkpoints(&self, from_size: u64, limit: usize) -> Result<Vec<StoredCheckpoint>>;
    /// The largest checkpoint.
    async fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>>;
}

/// Opens the store a URL names: `sqlite://PATH` (created if missing) or
/// `postgres://…`. Runs pending migrations.
pub async fn open(url: &str) -> Result<Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(sqlite::SqliteStore::open(url).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(postgres::PgStore::open(url).await?))
    } else {
        Err(StoreError::Config(format!(
            "unsupported database url `{}`: expected sqlite://PATH or postgres://…",
            redact(url)
        )))
    }
}

/// A database URL with any password replaced by `***`, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

pub mod postgres;
pub mod sqlite;
