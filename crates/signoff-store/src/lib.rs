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
pub use signoff_core::RequestFilter;
use signoff_core::{AuditEvent, Credential, Identity, Principal, RequestRecord, RequestStatus};
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
    /// Insert a principal with its first credential. Fails with
    /// [`StoreError::Duplicate`] if the name or token hash exists.
    InsertPrincipal {
        /// The principal.
        principal: Principal,
        /// Its first credential.
        credential: Credential,
        /// Hex SHA-256 of the credential's token.
        token_hash: String,
        /// Who adds it (an event actor: `user:NAME`, `console`); recorded
        /// for the principal, its groups and this credential.
        created_by: Option<String>,
    },
    /// Insert a credential for an existing principal. Fails with
    /// [`StoreError::Duplicate`] if its id, its `(principal, name)` or its
    /// token hash exists.
    InsertCredential {
        /// The credential.
        credential: Credential,
        /// Hex SHA-256 of its token.
        token_hash: String,
        /// Who issues it (an event actor).
        created_by: Option<String>,
    },
    /// Mark a credential revoked (the first revocation time is kept).
    /// Fails with [`StoreError::NotFound`] if unknown.
    RevokeCredential {
        /// Its id.
        id: String,
        /// When.
        at: Timestamp,
    },
    /// Record when credentials were last used. Bookkeeping, not a state
    /// change of the audit trail: it is the one change committed without
    /// an event. Unknown ids are ignored; times only move forward.
    TouchCredentials(Vec<(String, Timestamp)>),
    /// Link an external identity to a principal. Fails with
    /// [`StoreError::Duplicate`] if that issuer and subject are linked.
    LinkIdentity(Identity),
    /// Move a stream consumer's cursor forward to `position` (the next
    /// index it has not acknowledged); never backwards. With `holder`, fails
    /// with [`StoreError::Conflict`] if another holder has a live lease.
    AdvanceCursor {
        /// The consumer.
        name: String,
        /// Next unacknowledged index.
        position: u64,
        /// The lease holder acknowledging, for exclusive consumers.
        holder: Option<String>,
        /// When.
        at: Timestamp,
    },
    /// Take or renew the lease on a consumer's cursor until `until`,
    /// creating the cursor at `start` if it is new. Fails with
    /// [`StoreError::Conflict`] while another holder's lease is live at `at`.
    LeaseCursor {
        /// The consumer.
        name: String,
        /// Who takes the lease (a replica id).
        holder: String,
        /// Where a new cursor starts.
        start: u64,
        /// Lease end.
        until: Timestamp,
        /// Now.
        at: Timestamp,
    },
    /// Store a policy set's sources (if new) and make it the active one for
    /// every replica.
    ActivatePolicySet(StoredPolicySet),
    /// Store a signed checkpoint. Fails with [`StoreError::Duplicate`] if one
    /// of that size exists.
    InsertCheckpoint(StoredCheckpoint),
    /// Replace a principal's attributes. Fails with
    /// [`StoreError::NotFound`] if unknown.
    SetPrincipalAttributes {
        /// Its name.
        name: String,
        /// The new attributes.
        attributes: signoff_core::PrincipalAttributes,
    },
    /// Mark a principal revoked. Fails with [`StoreError::NotFound`] if unknown.
    RevokePrincipal {
        /// Its name.
        name: String,
        /// When.
        at: Timestamp,
    },
}

/// Who provisioned a principal's account (and with it its group
/// memberships, which are granted only at creation) and one of its
/// credentials: event actors such as `user:carol` or `console`; `None` when
/// unknown (rows older than the record, with no event to learn it from).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Provenance {
    /// Who created the account.
    pub account_created_by: Option<String>,
    /// Who issued the credential asked about.
    pub credential_created_by: Option<String>,
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

/// A policy set as every replica can load it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPolicySet {
    /// Its hash (what verdicts record).
    pub hash: String,
    /// Its source files as a JSON object `{file name: text}`.
    pub files: String,
    /// When it became active.
    pub activated_at: Timestamp,
}

/// A stream consumer's durable position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CursorState {
    /// The next index it has not acknowledged.
    pub position: u64,
    /// Who holds its lease, if anyone ever took one.
    pub holder: Option<String>,
    /// When that lease ends.
    pub lease_until: Option<Timestamp>,
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
    /// Ids and deadlines of pending or approved requests whose `expires_at`
    /// is at or before `until`, earliest first, at most `limit` (capped at
    /// 10,000). Reads no request body, so one unreadable request cannot
    /// hide the others from the expiry sweeper.
    async fn deadlines(&self, until: Timestamp, limit: usize) -> Result<Vec<(String, Timestamp)>>;
    /// The earliest `expires_at` among pending and approved requests.
    async fn next_deadline(&self) -> Result<Option<Timestamp>>;
    /// Number of requests per status (statuses with none may be omitted).
    async fn count_by_status(&self) -> Result<Vec<(RequestStatus, u64)>>;
    /// The credential whose token hashes to `token_hash` and its
    /// principal, revoked or expired or not.
    async fn credential_by_token_hash(
        &self,
        token_hash: &str,
    ) -> Result<Option<(Principal, Credential)>>;
    /// Who created `principal` and issued its `credential` (an id).
    /// Unknown principals and credentials give `None` fields.
    async fn provenance(&self, principal: &str, credential: Option<&str>) -> Result<Provenance>;
    /// A principal's credentials, by name.
    async fn credentials(&self, principal: &str) -> Result<Vec<Credential>>;
    /// The identity linked for `issuer` and `subject`.
    async fn identity(&self, issuer: &str, subject: &str) -> Result<Option<Identity>>;
    /// A principal's linked identities.
    async fn identities(&self, principal: &str) -> Result<Vec<Identity>>;
    /// A stream consumer's cursor.
    async fn cursor(&self, name: &str) -> Result<Option<CursorState>>;
    /// The policy set every replica must enforce, once one was activated.
    async fn active_policy_set(&self) -> Result<Option<StoredPolicySet>>;
    /// Just the hash of [`Store::active_policy_set`] (cheap: claims ask).
    async fn active_policy_hash(&self) -> Result<Option<String>>;
    /// Whether other processes may commit to this database while we run
    /// (replicas on PostgreSQL): then changes can happen that this process
    /// did not make, and followers must read the stream to learn of them.
    fn is_shared(&self) -> bool;
    /// The ledger head (number of events) as this process last saw it
    /// move: bumped by every commit of this store and, on PostgreSQL, by
    /// every other replica's commit (`LISTEN/NOTIFY`). Wakes event-stream
    /// consumers; they then read what is new with [`Store::events`].
    fn subscribe_head(&self) -> tokio::sync::watch::Receiver<u64>;
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
