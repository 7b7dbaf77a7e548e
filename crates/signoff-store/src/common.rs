//! What both backends share: the SQL text (both accept `$N` placeholders),
//! conversions between domain types and plain column values, and the mapping
//! of sqlx errors to [`StoreError`].
//!
//! Timestamps are stored as milliseconds since the Unix epoch, so anything
//! finer than a millisecond is truncated; the engine's clock only produces
//! millisecond timestamps, which therefore round-trip exactly.

use crate::{redact, RequestFilter, Result, StoreError};
use jiff::Timestamp;
use signoff_core::{
    AuditEvent, Credential, Decision, EventKind, Identity, Principal, RequestRecord, RequestStatus,
};
use signoff_ledger::leaf;

/// Largest page [`crate::Store::list_requests`] returns.
pub(crate) const MAX_LIST: usize = 1_000;
/// Page size when the caller asks for 0.
pub(crate) const DEFAULT_LIST: usize = 100;
/// Largest page [`crate::Store::events`] and [`crate::Store::due_requests`] return.
pub(crate) const MAX_EVENTS: usize = 10_000;

pub(crate) const INSERT_REQUEST: &str = "INSERT INTO requests \
    (id, status, action, resource, environment, principal, created_at, expires_at, idempotency_key, version, body) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";
/// Binds like [`INSERT_REQUEST`] plus `$12`, the version the caller read;
/// `$10` is that version + 1.
pub(crate) const UPDATE_REQUEST: &str = "UPDATE requests SET \
    status = $2, action = $3, resource = $4, environment = $5, principal = $6, created_at = $7, \
    expires_at = $8, idempotency_key = $9, version = $10, body = $11 \
    WHERE id = $1 AND version = $12";
pub(crate) const REQUEST_EXISTS: &str = "SELECT 1 FROM requests WHERE id = $1";
pub(crate) const SELECT_REQUEST: &str = "SELECT body FROM requests WHERE id = $1";
pub(crate) const SELECT_REQUEST_BY_KEY: &str =
    "SELECT body FROM requests WHERE principal = $1 AND idempotency_key = $2";
pub(crate) const SELECT_DUE: &str = "SELECT body FROM requests \
    WHERE status IN ('pending', 'approved') AND expires_at <= $1 \
    ORDER BY expires_at, id LIMIT $2";
pub(crate) const SELECT_DEADLINES: &str = "SELECT id, expires_at FROM requests \
    WHERE status IN ('pending', 'approved') AND expires_at <= $1 \
    ORDER BY expires_at, id LIMIT $2";
pub(crate) const SELECT_NEXT_DEADLINE: &str =
    "SELECT MIN(expires_at) FROM requests WHERE status IN ('pending', 'approved')";
pub(crate) const COUNT_BY_STATUS: &str =
    "SELECT status, COUNT(*) FROM requests GROUP BY status ORDER BY status";

pub(crate) const INSERT_PRINCIPAL: &str = "INSERT INTO principals \
    (name, kind, role, email, groups, owner, created_at, revoked_at, created_by, attributes) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";
pub(crate) const SET_PRINCIPAL_ATTRIBUTES: &str =
    "UPDATE principals SET attributes = $2 WHERE name = $1";
pub(crate) const INSERT_CREDENTIAL: &str = "INSERT INTO credentials \
    (id, principal, name, token_hash, gate, created_at, expires_at, revoked_at, last_used_at, created_by) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";
pub(crate) const SELECT_PRINCIPAL_CREATOR: &str =
    "SELECT created_by FROM principals WHERE name = $1";
pub(crate) const SELECT_CREDENTIAL_CREATOR: &str =
    "SELECT created_by FROM credentials WHERE id = $1";
// Keeps the first revocation time.
pub(crate) const REVOKE_CREDENTIAL: &str =
    "UPDATE credentials SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1";
pub(crate) const TOUCH_CREDENTIAL: &str = "UPDATE credentials SET last_used_at = $2 \
    WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $2)";
pub(crate) const SELECT_CREDENTIAL_BY_TOKEN: &str =
    "SELECT p.name, p.kind, p.role, p.email, p.groups, p.owner, p.created_at, p.revoked_at, \
    p.attributes, \
    c.id AS cred_id, c.name AS cred_name, c.gate AS cred_gate, c.created_at AS cred_created_at, \
    c.expires_at AS cred_expires_at, c.revoked_at AS cred_revoked_at, \
    c.last_used_at AS cred_last_used_at \
    FROM credentials c JOIN principals p ON p.name = c.principal WHERE c.token_hash = $1";
pub(crate) const SELECT_CREDENTIALS: &str =
    "SELECT c.id, c.principal, c.name, c.gate, c.created_at, c.expires_at, c.revoked_at, \
    c.last_used_at FROM credentials c WHERE c.principal = $1 ORDER BY c.name";
pub(crate) const INSERT_IDENTITY: &str = "INSERT INTO identities \
    (issuer, subject, principal, verified_by, linked_by, linked_at) VALUES ($1, $2, $3, $4, $5, $6)";
pub(crate) const SELECT_IDENTITY: &str =
    "SELECT issuer, subject, principal, verified_by, linked_by, linked_at \
    FROM identities WHERE issuer = $1 AND subject = $2";
pub(crate) const SELECT_IDENTITIES: &str =
    "SELECT issuer, subject, principal, verified_by, linked_by, linked_at \
    FROM identities WHERE principal = $1 ORDER BY issuer, subject";
/// `$1` name, `$2` position, `$3` time. Creates the cursor or moves it
/// forward; a lower position leaves it where it is.
pub(crate) const ADVANCE_CURSOR: &str = "INSERT INTO stream_cursors (name, position, updated_at) \
    VALUES ($1, $2, $3) ON CONFLICT (name) DO UPDATE SET \
    position = CASE WHEN excluded.position > stream_cursors.position \
        THEN excluded.position ELSE stream_cursors.position END, \
    updated_at = excluded.updated_at";
/// `$1` name, `$2` holder, `$3` start position, `$4` lease end, `$5` now.
/// Takes the lease when it is free, expired or already ours; otherwise
/// changes nothing (0 rows).
pub(crate) const LEASE_CURSOR: &str = "INSERT INTO stream_cursors \
    (name, position, holder, lease_until, updated_at) VALUES ($1, $3, $2, $4, $5) \
    ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, \
    lease_until = excluded.lease_until, updated_at = excluded.updated_at \
    WHERE stream_cursors.holder IS NULL OR stream_cursors.holder = excluded.holder \
    OR stream_cursors.lease_until IS NULL OR stream_cursors.lease_until <= $5";
pub(crate) const SELECT_CURSOR: &str =
    "SELECT position, holder, lease_until FROM stream_cursors WHERE name = $1";
pub(crate) const INSERT_POLICY_SET: &str = "INSERT INTO policy_sets (hash, files, created_at) \
    VALUES ($1, $2, $3) ON CONFLICT (hash) DO NOTHING";
pub(crate) const SET_ACTIVE_POLICY: &str = "INSERT INTO policy_active (id, hash, activated_at) \
    VALUES (1, $1, $2) ON CONFLICT (id) DO UPDATE SET hash = excluded.hash, \
    activated_at = excluded.activated_at";
pub(crate) const SELECT_ACTIVE_POLICY: &str = "SELECT a.hash, s.files, a.activated_at \
    FROM policy_active a JOIN policy_sets s ON s.hash = a.hash WHERE a.id = 1";
// Keeps the first revocation time: revoking twice must not rewrite history.
pub(crate) const REVOKE_PRINCIPAL: &str =
    "UPDATE principals SET revoked_at = COALESCE(revoked_at, $2) WHERE name = $1";
pub(crate) const SELECT_PRINCIPAL: &str =
    "SELECT name, kind, role, email, groups, owner, created_at, revoked_at, attributes \
    FROM principals WHERE name = $1";
pub(crate) const LIST_PRINCIPALS: &str =
    "SELECT name, kind, role, email, groups, owner, created_at, revoked_at, attributes \
    FROM principals ORDER BY name";

/// Moves a head watch forward (never back: commits may answer out of order).
pub(crate) fn bump_head(head: &tokio::sync::watch::Sender<u64>, next: u64) {
    head.send_if_modified(|h| {
        if next > *h {
            *h = next;
            true
        } else {
            false
        }
    });
}

/// Row counts of multi-row inserts; few distinct sizes keep the
/// prepared-statement cache small.
const CHUNKS: [usize; 4] = [64, 16, 4, 1];

/// How many of `left` rows the next multi-row insert takes.
pub(crate) fn chunk(left: usize) -> usize {
    CHUNKS.into_iter().find(|&n| n <= left).unwrap_or(1)
}

/// `HEAD VALUES ($1, …), (…)` with `cols` binds per row for each size in
/// [`CHUNKS`].
fn multi_insert(head: &str, cols: usize) -> Vec<String> {
    CHUNKS
        .iter()
        .map(|&rows| {
            let values: Vec<String> = (0..rows)
                .map(|r| {
                    let marks: Vec<String> =
                        (1..=cols).map(|c| format!("${}", r * cols + c)).collect();
                    format!("({})", marks.join(", "))
                })
                .collect();
            format!("{head} VALUES {}", values.join(", "))
        })
        .collect()
}

fn pick(all: &[String], rows: usize) -> &str {
    let at = CHUNKS
        .iter()
        .position(|&n| n == rows)
        .unwrap_or(CHUNKS.len() - 1);
    &all[at]
}

/// [`INSERT_REQUEST`] for `rows` rows (a size [`chunk`] returns), binds in
/// [`RequestRow`] order.
pub(crate) fn insert_requests_sql(rows: usize) -> &'static str {
    static SQL: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    pick(
        SQL.get_or_init(|| multi_insert(INSERT_REQUEST_HEAD, 11)),
        rows,
    )
}

/// The event insert for `rows` rows (a size [`chunk`] returns), binds in
/// [`EventRow`] order.
pub(crate) fn insert_events_sql(rows: usize) -> &'static str {
    static SQL: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    pick(
        SQL.get_or_init(|| multi_insert(INSERT_EVENT_HEAD, 12)),
        rows,
    )
}

/// The ledger node insert for `rows` rows (a size [`chunk`] returns), binds
/// `(level, idx, hash)` per row.
pub(crate) fn insert_nodes_sql(rows: usize) -> &'static str {
    static SQL: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    pick(SQL.get_or_init(|| multi_insert(INSERT_NODE_HEAD, 3)), rows)
}

const INSERT_NODE_HEAD: &str = "INSERT INTO ledger_nodes (level, idx, hash)";

/// `SELECT level, idx, hash` of the given `(level, idx)` pairs: one query
/// for a whole proof or frontier. Binds two per pair.
pub(crate) fn select_nodes_sql(pairs: usize) -> String {
    let mut sql = String::from("SELECT level, idx, hash FROM ledger_nodes WHERE ");
    for i in 0..pairs {
        if i > 0 {
            sql.push_str(" OR ");
        }
        sql.push_str(&format!(
            "(level = ${} AND idx = ${})",
            2 * i + 1,
            2 * i + 2
        ));
    }
    sql
}

pub(crate) const SELECT_LEAVES: &str = "SELECT idx, hash FROM ledger_nodes \
    WHERE level = 0 AND idx >= $1 ORDER BY idx LIMIT $2";

pub(crate) const SELECT_EVENT_RANGE: &str = "SELECT \
    (SELECT MIN(idx) FROM audit_events WHERE time >= $1), \
    (SELECT MAX(idx) FROM audit_events WHERE time < $2)";

pub(crate) const INSERT_CHECKPOINT: &str =
    "INSERT INTO ledger_checkpoints (size, root, note, created_at) VALUES ($1, $2, $3, $4)";
pub(crate) const SELECT_CHECKPOINTS: &str = "SELECT size, root, note, created_at \
    FROM ledger_checkpoints WHERE size >= $1 ORDER BY size LIMIT $2";
pub(crate) const SELECT_LATEST_CHECKPOINT: &str = "SELECT size, root, note, created_at \
    FROM ledger_checkpoints ORDER BY size DESC LIMIT 1";

/// Orders fetched `(level, idx, hash)` rows as `coords` asks, failing on a
/// missing node (a gap in the ledger is corruption, not absence).
pub(crate) fn order_nodes(
    coords: &[(u32, u64)],
    rows: Vec<(i64, i64, Vec<u8>)>,
) -> Result<Vec<[u8; 32]>> {
    let mut found = std::collections::HashMap::with_capacity(rows.len());
    for (level, idx, hash) in rows {
        let hash: [u8; 32] = hash.try_into().map_err(|_| {
            StoreError::Corrupt(format!("ledger node ({level}, {idx}) is not 32 bytes"))
        })?;
        found.insert((level, idx), hash);
    }
    coords
        .iter()
        .map(|&(level, idx)| {
            found
                .get(&(i64::from(level), to_i64(idx)))
                .copied()
                .ok_or_else(|| {
                    StoreError::Corrupt(format!(
                        "ledger node at level {level}, index {idx} is missing"
                    ))
                })
        })
        .collect()
}

/// Decodes a checkpoint row.
pub(crate) fn decode_checkpoint(
    row: (i64, Vec<u8>, String, i64),
) -> Result<crate::StoredCheckpoint> {
    let (size, root, note, created_at) = row;
    Ok(crate::StoredCheckpoint {
        size: u64::try_from(size)
            .map_err(|_| StoreError::Corrupt(format!("checkpoint size {size}")))?,
        root: root
            .try_into()
            .map_err(|_| StoreError::Corrupt(format!("checkpoint {size} root is not 32 bytes")))?,
        note,
        created_at: timestamp(created_at, &|| format!("checkpoint {size} time"))?,
    })
}

const INSERT_REQUEST_HEAD: &str = "INSERT INTO requests \
    (id, status, action, resource, environment, principal, created_at, expires_at, idempotency_key, version, body)";
const INSERT_EVENT_HEAD: &str = "INSERT INTO audit_events \
    (idx, kind, time, actor, request_id, digest, verdict, policy_ids, policy_set_hash, reason, detail, schema)";

pub(crate) const SELECT_EVENTS: &str = "SELECT \
    idx, kind, time, actor, request_id, digest, verdict, policy_ids, policy_set_hash, reason, detail, schema \
    FROM audit_events WHERE idx >= $1 ORDER BY idx LIMIT $2";

// A no-op update rather than a plain SELECT: in PostgreSQL it takes the row
// lock that serializes writers across replicas, and it reads the same in both.
pub(crate) const LOCK_HEAD: &str =
    "UPDATE ledger_head SET next_index = next_index WHERE id = 1 RETURNING next_index";
pub(crate) const SET_HEAD: &str = "UPDATE ledger_head SET next_index = $1 WHERE id = 1";
pub(crate) const SELECT_HEAD: &str = "SELECT next_index FROM ledger_head WHERE id = 1";

/// A bind value for SQL assembled at run time.
#[derive(Debug, Clone)]
pub(crate) enum Param {
    Text(String),
    Int(i64),
}

/// The SQL and binds for [`crate::Store::list_requests`].
pub(crate) fn list_requests_sql(filter: &RequestFilter) -> (String, Vec<Param>) {
    let mut sql = String::from("SELECT body FROM requests WHERE 1 = 1");
    let mut params = Vec::new();
    let next = |params: &mut Vec<Param>, p: Param| {
        params.push(p);
        format!("${}", params.len())
    };
    if !filter.statuses.is_empty() {
        let marks: Vec<String> = filter
            .statuses
            .iter()
            .map(|s| next(&mut params, Param::Text(s.as_str().to_owned())))
            .collect();
        sql.push_str(&format!(" AND status IN ({})", marks.join(", ")));
    }
    if let Some(action) = &filter.action {
        let m = next(&mut params, Param::Text(action.clone()));
        sql.push_str(&format!(" AND action = {m}"));
    }
    if let Some(principal) = &filter.principal {
        let m = next(&mut params, Param::Text(principal.clone()));
        sql.push_str(&format!(" AND principal = {m}"));
    }
    if let Some(before) = &filter.before {
        let m = next(&mut params, Param::Text(before.clone()));
        sql.push_str(&format!(" AND id < {m}"));
    }
    let limit = match filter.limit {
        0 => DEFAULT_LIST,
        n => n.min(MAX_LIST),
    };
    let m = next(&mut params, Param::Int(to_i64(limit)));
    sql.push_str(&format!(" ORDER BY id DESC LIMIT {m}"));
    (sql, params)
}

/// `n` as a SQL integer, saturating (only limits and indexes go through here).
pub(crate) fn to_i64<N: TryInto<i64>>(n: N) -> i64 {
    n.try_into().unwrap_or(i64::MAX)
}

pub(crate) fn millis(t: Timestamp) -> i64 {
    t.as_millisecond()
}

pub(crate) fn timestamp(ms: i64, what: &dyn Fn() -> String) -> Result<Timestamp> {
    Timestamp::from_millisecond(ms)
        .map_err(|e| StoreError::Corrupt(format!("{}: timestamp {ms} out of range: {e}", what())))
}

/// The column values of a request row.
pub(crate) struct RequestRow {
    pub id: String,
    pub status: &'static str,
    pub action: String,
    pub resource: String,
    pub environment: Option<String>,
    pub principal: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub idempotency_key: Option<String>,
    pub version: i64,
    pub body: String,
}

impl RequestRow {
    /// The row for `record` stored at `version`.
    pub fn new(record: &RequestRecord, version: i64) -> Result<Self> {
        let body = if record.version == version {
            serde_json::to_string(record)
        } else {
            let mut stored = record.clone();
            stored.version = version;
            serde_json::to_string(&stored)
        }
        .map_err(|e| {
            StoreError::Database(format!("cannot serialize request {}: {e}", record.id))
        })?;
        Ok(RequestRow {
            id: record.id.clone(),
            status: record.status.as_str(),
            action: record.action.action.clone(),
            resource: record.action.resource.clone(),
            environment: record.action.environment.clone(),
            principal: record.action.principal.to_string(),
            created_at: millis(record.created_at),
            expires_at: record.expires_at.map(millis),
            idempotency_key: record.idempotency_key.clone(),
            version,
            body,
        })
    }
}

/// Decodes a stored request body.
pub(crate) fn decode_request(body: &str) -> Result<RequestRecord> {
    serde_json::from_str(body).map_err(|e| StoreError::Corrupt(format!("request body: {e}")))
}

/// The column values of a principal row (without its token hash).
#[derive(sqlx::FromRow)]
pub(crate) struct PrincipalRow {
    pub name: String,
    pub kind: String,
    pub role: String,
    pub email: Option<String>,
    pub groups: String,
    pub owner: Option<String>,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
    pub attributes: String,
}

impl PrincipalRow {
    pub fn new(p: &Principal) -> Result<Self> {
        Ok(PrincipalRow {
            name: p.name.clone(),
            kind: p.kind.as_str().to_owned(),
            role: p.role.as_str().to_owned(),
            email: p.email.clone(),
            groups: serde_json::to_string(&p.groups).map_err(|e| {
                StoreError::Database(format!(
                    "cannot serialize groups of principal {}: {e}",
                    p.name
                ))
            })?,
            owner: p.owner.clone(),
            created_at: millis(p.created_at),
            revoked_at: p.revoked_at.map(millis),
            attributes: serde_json::to_string(&p.attributes).map_err(|e| {
                StoreError::Database(format!(
                    "cannot serialize attributes of principal {}: {e}",
                    p.name
                ))
            })?,
        })
    }

    pub fn decode(self) -> Result<Principal> {
        let name = self.name;
        let what = || format!("principal {name}");
        let corrupt = |e: String| StoreError::Corrupt(format!("{}: {e}", what()));
        Ok(Principal {
            kind: self.kind.parse().map_err(corrupt)?,
            role: self.role.parse().map_err(corrupt)?,
            email: self.email,
            groups: serde_json::from_str(&self.groups)
                .map_err(|e| corrupt(format!("groups: {e}")))?,
            owner: self.owner,
            attributes: serde_json::from_str(&self.attributes)
                .map_err(|e| corrupt(format!("attributes: {e}")))?,
            created_at: timestamp(self.created_at, &what)?,
            revoked_at: self.revoked_at.map(|ms| timestamp(ms, &what)).transpose()?,
            name: name.clone(),
        })
    }
}

/// The column values of a credential row (without its token hash), as
/// `(id, principal, name, gate, created_at, expires_at, revoked_at, last_used_at)`.
pub(crate) type CredentialRow = (
    String,
    String,
    String,
    Option<String>,
    i64,
    Option<i64>,
    Option<i64>,
    Option<i64>,
);

pub(crate) fn decode_credential(row: CredentialRow) -> Result<Credential> {
    let (id, principal, name, gate, created_at, expires_at, revoked_at, last_used_at) = row;
    let what = || format!("credential {id}");
    Ok(Credential {
        created_at: timestamp(created_at, &what)?,
        expires_at: expires_at.map(|ms| timestamp(ms, &what)).transpose()?,
        revoked_at: revoked_at.map(|ms| timestamp(ms, &what)).transpose()?,
        last_used_at: last_used_at.map(|ms| timestamp(ms, &what)).transpose()?,
        id: id.clone(),
        principal,
        name,
        gate,
    })
}

/// A principal row and the credential that authenticated it (one join).
#[derive(sqlx::FromRow)]
pub(crate) struct PrincipalCredentialRow {
    #[sqlx(flatten)]
    pub principal: PrincipalRow,
    pub cred_id: String,
    pub cred_name: String,
    pub cred_gate: Option<String>,
    pub cred_created_at: i64,
    pub cred_expires_at: Option<i64>,
    pub cred_revoked_at: Option<i64>,
    pub cred_last_used_at: Option<i64>,
}

impl PrincipalCredentialRow {
    pub fn decode(self) -> Result<(Principal, Credential)> {
        let principal = self.principal.decode()?;
        let credential = decode_credential((
            self.cred_id,
            principal.name.clone(),
            self.cred_name,
            self.cred_gate,
            self.cred_created_at,
            self.cred_expires_at,
            self.cred_revoked_at,
            self.cred_last_used_at,
        ))?;
        Ok((principal, credential))
    }
}

/// `(issuer, subject, principal, verified_by, linked_by, linked_at)`.
pub(crate) type IdentityRow = (String, String, String, String, String, i64);

pub(crate) fn decode_identity(row: IdentityRow) -> Result<Identity> {
    let (issuer, subject, principal, verified_by, linked_by, linked_at) = row;
    let linked_at = timestamp(linked_at, &|| format!("identity {issuer} {subject}"))?;
    Ok(Identity {
        issuer,
        subject,
        principal,
        verified_by,
        linked_by,
        linked_at,
    })
}

/// An audit event ready to be written by the writer's serial section: its
/// row (every column but the index, which is assigned there) and its leaf
/// with the index left open.
#[derive(Debug)]
pub(crate) struct StagedEvent {
    /// The row, with `idx` 0 until it is written.
    pub row: EventRow,
    leaf: StagedLeaf,
}

#[derive(Debug)]
enum StagedLeaf {
    /// The leaf as the stored columns spell it (the common case).
    Pending(signoff_ledger::leaf::PendingLeaf),
    /// A time finer than the millisecond the row keeps, which only
    /// `leaf::encode` of the event itself spells as before.
    Event(Box<AuditEvent>),
}

impl StagedEvent {
    /// Builds the row and the leaf of `event`.
    pub fn new(event: &AuditEvent) -> Result<Self> {
        let row = EventRow::new(0, event)?;
        let whole_millis = event.time.subsec_nanosecond() % 1_000_000 == 0;
        let pending = whole_millis
            .then(|| signoff_ledger::leaf::PendingLeaf::from_columns(&row.leaf_columns()))
            .flatten();
        let leaf = match pending {
            Some(p) => StagedLeaf::Pending(p),
            None => StagedLeaf::Event(Box::new(event.clone())),
        };
        Ok(StagedEvent { row, leaf })
    }

    /// The Merkle leaf hash of this event stored at `idx`.
    pub fn leaf_hash(&self, idx: u64) -> signoff_ledger::Hash {
        match &self.leaf {
            StagedLeaf::Pending(p) => p.hash_at(idx),
            StagedLeaf::Event(e) => {
                let mut e = (**e).clone();
                e.index = Some(idx);
                signoff_ledger::merkle::leaf_hash(&leaf::encode(&e))
            }
        }
    }
}

/// The column values of an audit event row.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct EventRow {
    pub idx: i64,
    pub kind: String,
    pub time: i64,
    pub actor: String,
    pub request_id: Option<String>,
    pub digest: Option<String>,
    pub verdict: Option<String>,
    pub policy_ids: String,
    pub policy_set_hash: Option<String>,
    pub reason: Option<String>,
    pub detail: String,
    pub schema: i32,
}

impl EventRow {
    /// The row for `event` at `idx` (the event's own `index` is ignored: the
    /// store assigns it).
    pub fn new(idx: u64, e: &AuditEvent) -> Result<Self> {
        let ser = |what: &str, r: serde_json::Result<String>| {
            r.map_err(|err| {
                StoreError::Database(format!("cannot serialize {what} of event {idx}: {err}"))
            })
        };
        Ok(EventRow {
            idx: Self::idx_for(idx)?,
            kind: e.kind.as_str().to_owned(),
            time: millis(e.time),
            actor: e.actor.clone(),
            request_id: e.request_id.clone(),
            digest: e.digest.clone(),
            verdict: e.verdict.map(|v| v.as_str().to_owned()),
            // Canonical (RFC 8785) JSON, so a verifier can rebuild the
            // leaf from the columns without parsing them.
            policy_ids: ser("policy ids", leaf::canonical_json(&e.policy_ids))?,
            policy_set_hash: e.policy_set_hash.clone(),
            reason: e.reason.clone(),
            // The same bytes as `leaf::canonical_json`, without copying the
            // detail into a new value first.
            detail: signoff_core::jcs::value_to_string(&e.detail),
            schema: i32::try_from(AuditEvent::SCHEMA).unwrap_or(i32::MAX),
        })
    }

    /// The row with index `idx`: what a writer binds for a staged event.
    pub fn idx_for(idx: u64) -> Result<i64> {
        i64::try_from(idx).map_err(|_| {
            StoreError::Database(format!("event index {idx} exceeds the database range"))
        })
    }

    /// The columns as the ledger reads them, at this row's index.
    pub fn leaf_columns(&self) -> signoff_ledger::leaf::LeafColumns<'_> {
        signoff_ledger::leaf::LeafColumns {
            index: u64::try_from(self.idx).unwrap_or_default(),
            kind: self.kind.as_bytes(),
            time_ms: self.time,
            actor: self.actor.as_bytes(),
            request_id: self.request_id.as_deref().map(str::as_bytes),
            digest: self.digest.as_deref().map(str::as_bytes),
            verdict: self.verdict.as_deref().map(str::as_bytes),
            policy_ids_json: self.policy_ids.as_bytes(),
            policy_set_hash: self.policy_set_hash.as_deref().map(str::as_bytes),
            reason: self.reason.as_deref().map(str::as_bytes),
            detail_json: self.detail.as_bytes(),
        }
    }

    pub fn decode(self) -> Result<AuditEvent> {
        let idx = self.idx;
        let what = || format!("event {idx}");
        let corrupt = |e: String| StoreError::Corrupt(format!("event {idx}: {e}"));
        if u32::try_from(self.schema).map_or(true, |s| s > AuditEvent::SCHEMA) {
            return Err(corrupt(format!(
                "schema {} is newer than this build understands ({})",
                self.schema,
                AuditEvent::SCHEMA
            )));
        }
        let kind: EventKind = serde_json::from_value(serde_json::Value::String(self.kind.clone()))
            .map_err(|_| corrupt(format!("unknown kind `{}`", self.kind)))?;
        let verdict: Option<Decision> = self
            .verdict
            .map(|v| v.parse())
            .transpose()
            .map_err(corrupt)?;
        Ok(AuditEvent {
            index: Some(u64::try_from(idx).map_err(|_| corrupt("negative index".into()))?),
            kind,
            time: timestamp(self.time, &what)?,
            actor: self.actor,
            request_id: self.request_id,
            digest: self.digest,
            verdict,
            policy_ids: serde_json::from_str(&self.policy_ids)
                .map_err(|e| corrupt(format!("policy ids: {e}")))?,
            policy_set_hash: self.policy_set_hash,
            reason: self.reason,
            detail: serde_json::from_str(&self.detail)
                .map_err(|e| corrupt(format!("detail: {e}")))?,
        })
    }
}

/// Decodes `(status, count)` rows.
pub(crate) fn decode_counts(rows: Vec<(String, i64)>) -> Result<Vec<(RequestStatus, u64)>> {
    rows.into_iter()
        .map(|(status, n)| {
            let status = status
                .parse()
                .map_err(|e: String| StoreError::Corrupt(format!("request status: {e}")))?;
            Ok((status, u64::try_from(n).unwrap_or(0)))
        })
        .collect()
}

/// Maps a sqlx error to a [`StoreError`]; connection-level failures become
/// [`StoreError::Unavailable`] so callers know to retry.
pub(crate) fn db_err(e: sqlx::Error) -> StoreError {
    use sqlx::Error as E;
    match e {
        E::Io(e) => StoreError::Unavailable(format!("i/o error talking to the database: {e}")),
        E::Tls(e) => StoreError::Unavailable(format!("tls error talking to the database: {e}")),
        E::Protocol(m) => StoreError::Unavailable(format!("database protocol error: {m}")),
        E::PoolTimedOut => {
            StoreError::Unavailable("timed out waiting for a database connection".into())
        }
        E::PoolClosed => StoreError::Unavailable("the database connection pool is closed".into()),
        E::WorkerCrashed => StoreError::Unavailable("the sqlite worker thread crashed".into()),
        E::Configuration(e) => StoreError::Config(format!("invalid database configuration: {e}")),
        E::Database(db) => {
            let msg = db.message().to_owned();
            if is_connection_failure(&*db) {
                StoreError::Unavailable(msg)
            } else if is_bad_credentials_or_database(&*db) {
                StoreError::Config(msg)
            } else {
                StoreError::Database(msg)
            }
        }
        E::Migrate(m) => migrate_err(*m),
        e @ (E::ColumnDecode { .. }
        | E::Decode(_)
        | E::ColumnNotFound(_)
        | E::ColumnIndexOutOfBounds { .. }
        | E::TypeNotFound { .. }) => StoreError::Corrupt(e.to_string()),
        other => StoreError::Database(other.to_string()),
    }
}

/// Whether a database-reported error means "the database is not usable right
/// now" rather than "this statement is wrong".
fn is_connection_failure(db: &dyn sqlx::error::DatabaseError) -> bool {
    let Some(code) = db.code() else { return false };
    if db
        .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
        .is_some()
    {
        // 08: connection exception; 53: insufficient resources (too many
        // connections, disk full); 57P: shutdown / cannot connect now.
        code.starts_with("08") || code.starts_with("53") || code.starts_with("57P")
    } else {
        // SQLite primary result codes: BUSY, LOCKED, IOERR, FULL, CANTOPEN.
        code.parse::<i32>()
            .is_ok_and(|c| matches!(c & 0xff, 5 | 6 | 10 | 13 | 14))
    }
}

/// Whether PostgreSQL refused the login (28: invalid authorization) or the
/// database named in the URL does not exist (3D000): fix the URL, not retry.
fn is_bad_credentials_or_database(db: &dyn sqlx::error::DatabaseError) -> bool {
    db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
        .is_some_and(|pg| pg.code().starts_with("28") || pg.code() == "3D000")
}

/// Whether the error is a unique-key violation.
pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// Whether a unique violation concerns the idempotency index.
pub(crate) fn is_idempotency_violation(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => {
            db.constraint().is_some_and(|c| c.contains("idempotency"))
                || db.message().contains("idempotency_key")
        }
        _ => false,
    }
}

/// The error for a failed request insert.
pub(crate) fn insert_request_err(e: sqlx::Error, r: &RequestRecord) -> StoreError {
    if !is_unique_violation(&e) {
        return db_err(e);
    }
    match (&r.idempotency_key, is_idempotency_violation(&e)) {
        (Some(key), true) => StoreError::Duplicate(format!(
            "request with idempotency key `{key}` for {}",
            r.action.principal
        )),
        _ => StoreError::Duplicate(format!("request {}", r.id)),
    }
}

/// The error for a failed principal insert.
pub(crate) fn insert_principal_err(e: sqlx::Error, name: &str) -> StoreError {
    if is_unique_violation(&e) {
        StoreError::Duplicate(format!("principal {name}"))
    } else {
        db_err(e)
    }
}

pub(crate) fn migrate_err(e: sqlx::migrate::MigrateError) -> StoreError {
    use sqlx::migrate::MigrateError as M;
    match e {
        M::Execute(e) => match db_err(e) {
            StoreError::Database(m) => StoreError::Database(format!("running migrations: {m}")),
            other => other,
        },
        M::ExecuteMigration(e, v) => match db_err(e) {
            StoreError::Database(m) => StoreError::Database(format!("migration {v} failed: {m}")),
            other => other,
        },
        M::VersionMissing(v) => StoreError::Config(format!(
            "the database has migration {v}, which this build does not know: it was written by a newer signoff"
        )),
        other => StoreError::Database(format!("migrations: {other}")),
    }
}

/// A copy of `e`, for answering every caller of a failed batch.
pub(crate) fn copy_err(e: &StoreError) -> StoreError {
    match e {
        StoreError::Unavailable(m) => StoreError::Unavailable(m.clone()),
        StoreError::Conflict(m) => StoreError::Conflict(m.clone()),
        StoreError::Duplicate(m) => StoreError::Duplicate(m.clone()),
        StoreError::NotFound(m) => StoreError::NotFound(m.clone()),
        StoreError::Corrupt(m) => StoreError::Corrupt(m.clone()),
        StoreError::Config(m) => StoreError::Config(m.clone()),
        StoreError::Database(m) => StoreError::Database(m.clone()),
    }
}

/// Adds which database to an error from opening it.
pub(crate) fn open_err(url: &str, e: StoreError) -> StoreError {
    let url = redact(url);
    match e {
        StoreError::Unavailable(m) => StoreError::Unavailable(format!("cannot open {url}: {m}")),
        StoreError::Config(m) => StoreError::Config(format!("invalid database url `{url}`: {m}")),
        StoreError::Database(m) => StoreError::Database(format!("opening {url}: {m}")),
        other => other,
    }
}
