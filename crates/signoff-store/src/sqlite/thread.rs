//! The SQLite writer of a database file: a dedicated thread that owns a
//! rusqlite connection (the same bundled SQLite library sqlx links) and
//! group-commits whole batches on it.
//!
//! Why not the sqlx task: sqlx runs each SQLite connection on a worker
//! thread and hands every statement and every row across a channel, so one
//! batch (BEGIN, head, requests, events, tree edge, nodes, head, COMMIT)
//! cost eight round trips between threads, each a wake-up that on a busy
//! 2-core host also waits for a CPU, on top of the fsync. Here the thread
//! that runs the statements takes the batch straight from the queue and
//! answers the callers itself.
//!
//! The batch logic is [`crate::writer`]'s, unchanged (fast path, savepoint
//! fallback, tree nodes in the same transaction): [`DirectConn`] implements
//! its connection trait with methods that never wait, so each batch future
//! completes on its first poll.
//!
//! Only the changes of the decision path run on rusqlite (see [`direct`]):
//! a batch holding any other change runs whole on a sqlx connection, on
//! this same thread, so the two connections never write at once and a new
//! kind of [`Change`] needs only the shared sqlx implementation.

use crate::common::{self as c, EventRow, RequestRow, StagedEvent};
use crate::writer::{self, run_batch, Connector, Job, WriteConn, Writer};
use crate::{Change, Result, StoreError};
use rusqlite::{CachedStatement, Connection, OpenFlags};
use signoff_core::RequestRecord;
use sqlx::sqlite::SqliteConnection;
use std::path::{Path, PathBuf};
use tokio::runtime::Handle;
use tokio::sync::mpsc;

/// Whether `change` is applied by [`DirectConn`]. Everything else (rare
/// administrative changes, and kinds added later) goes through sqlx.
fn direct(change: &Change) -> bool {
    matches!(change, Change::InsertRequest(_) | Change::UpdateRequest(_))
}

/// Starts the writer thread for the database file `path`. `sqlx` is the
/// connection that ran the migrations; it is kept for batches that are not
/// [`direct`], and `connector` reopens it after a failure.
pub(crate) fn spawn<C>(path: PathBuf, connector: C, sqlx: SqliteConnection) -> Result<Writer>
where
    C: Connector<Conn = SqliteConnection>,
{
    let conn = DirectConn::open(&path)?;
    let (writer, rx) = Writer::queue();
    let handle = Handle::current();
    std::thread::Builder::new()
        .name("signoff-sqlite-writer".into())
        .spawn(move || {
            let mut state = State {
                path,
                connector,
                handle,
                direct: Some(conn),
                sqlx: Some(sqlx),
            };
            state.run(rx);
        })
        .map_err(|e| StoreError::Unavailable(format!("cannot start the writer thread: {e}")))?;
    Ok(writer)
}

struct State<C> {
    path: PathBuf,
    connector: C,
    handle: Handle,
    direct: Option<DirectConn>,
    sqlx: Option<SqliteConnection>,
}

impl<C: Connector<Conn = SqliteConnection>> State<C> {
    fn run(&mut self, mut rx: mpsc::Receiver<Job>) {
        let mut jobs: Vec<Job> = Vec::with_capacity(writer::MAX_BATCH);
        while let Some(first) = rx.blocking_recv() {
            jobs.push(first);
            gather(&mut rx, &mut jobs);
            let on_direct = jobs
                .iter()
                .all(|(staged, _)| staged.commit.changes.iter().all(direct));
            let (results, fatal) = if on_direct {
                self.direct_batch(&jobs)
            } else {
                self.sqlx_batch(&jobs)
            };
            writer::answer(&mut jobs, results, fatal);
        }
        // Every handle is gone; the connections close as they drop (without
        // the runtime, which may be shutting down by now).
    }

    fn direct_batch(&mut self, jobs: &[Job]) -> writer::BatchOutcome {
        let conn = match self.direct.as_mut() {
            Some(c) => c,
            None => match DirectConn::open(&self.path) {
                Ok(c) => {
                    tracing::info!("store writer reconnected");
                    self.direct.insert(c)
                }
                Err(e) => return failed(jobs, e),
            },
        };
        // Every method of DirectConn returns without waiting, so this only
        // polls; `block_on` is the safe way to do that.
        let outcome = self.handle.block_on(run_batch(conn, jobs));
        if let Some(e) = &outcome.1 {
            // A failed COMMIT or I/O error leaves the connection in an
            // unknown state: open a new one for the next batch.
            tracing::warn!(error = %e, commits = jobs.len(), "store write batch failed");
            self.direct = None;
        }
        outcome
    }

    fn sqlx_batch(&mut self, jobs: &[Job]) -> writer::BatchOutcome {
        let handle = self.handle.clone();
        let conn = match self.sqlx.as_mut() {
            Some(c) => c,
            None => match handle.block_on(self.connector.connect()) {
                Ok(c) => self.sqlx.insert(c),
                Err(e) => return failed(jobs, e),
            },
        };
        let outcome = handle.block_on(run_batch(conn, jobs));
        if let Some(e) = &outcome.1 {
            tracing::warn!(error = %e, commits = jobs.len(), "store write batch failed");
            self.sqlx = None;
        }
        outcome
    }
}

/// Every commit of the batch failed with `e` before anything was written.
fn failed(jobs: &[Job], e: StoreError) -> writer::BatchOutcome {
    tracing::warn!(error = %e, "store writer cannot reconnect");
    (jobs.iter().map(|_| None).collect(), Some(e))
}

/// Takes what is queued, then lingers while more arrives: callers answered
/// by the previous batch are about to queue their next commit, and letting
/// them share this fsync beats making them wait for the next one. Each
/// round yields the CPU once (the callers run on the runtime's threads) and
/// stops as soon as a round brings nobody.
fn gather(rx: &mut mpsc::Receiver<Job>, jobs: &mut Vec<Job>) {
    let mut take = |jobs: &mut Vec<Job>| {
        let before = jobs.len();
        while jobs.len() < writer::MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        jobs.len() > before
    };
    take(jobs);
    for _ in 0..writer::LINGER_ROUNDS {
        if jobs.len() >= writer::MAX_BATCH {
            break;
        }
        std::thread::yield_now();
        if !take(jobs) {
            break;
        }
    }
}

/// The writer's rusqlite connection.
pub(crate) struct DirectConn {
    conn: Connection,
}

impl DirectConn {
    /// Opens the (already created and migrated) file for writing with the
    /// settings the sqlx writer uses, and checks the ones durability rests on.
    fn open(path: &Path) -> Result<Self> {
        let unavailable = |e: rusqlite::Error| {
            StoreError::Unavailable(format!("cannot open {}: {e}", path.display()))
        };
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(unavailable)?;
        conn.busy_timeout(super::BUSY_TIMEOUT)
            .map_err(unavailable)?;
        // As sqlx sets them: WAL (already the file's mode), FULL sync (an
        // acknowledged commit survives power loss), foreign keys on.
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(unavailable)?;
        conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")
            .map_err(unavailable)?;
        let sync: i64 = conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .map_err(unavailable)?;
        if !mode.eq_ignore_ascii_case("wal") || sync != 2 {
            return Err(StoreError::Config(format!(
                "{}: journal mode {mode}, synchronous {sync}; the writer needs WAL and FULL (2)",
                path.display()
            )));
        }
        // Every statement the writer runs, all multi-row sizes included.
        conn.set_prepared_statement_cache_capacity(64);
        Ok(DirectConn { conn })
    }

    /// The statement for `sql`, prepared once. The shared SQL numbers its
    /// parameters `$N`; SQLite reads `?N` as parameter N, while `$N` would
    /// be a name numbered by first appearance (UPDATE_REQUEST uses `$1`
    /// after `$11`).
    fn stmt(&self, sql: &str) -> Result<CachedStatement<'_>> {
        self.conn
            .prepare_cached(&sql.replace('$', "?"))
            .map_err(db_err)
    }
}

/// Binds a request row at parameters `at + 1 ..= at + 11`, in
/// [`crate::common::INSERT_REQUEST`] order.
fn bind_request(s: &mut CachedStatement<'_>, at: usize, row: &RequestRow) -> rusqlite::Result<()> {
    s.raw_bind_parameter(at + 1, &row.id)?;
    s.raw_bind_parameter(at + 2, row.status)?;
    s.raw_bind_parameter(at + 3, &row.action)?;
    s.raw_bind_parameter(at + 4, &row.resource)?;
    s.raw_bind_parameter(at + 5, &row.environment)?;
    s.raw_bind_parameter(at + 6, &row.principal)?;
    s.raw_bind_parameter(at + 7, row.created_at)?;
    s.raw_bind_parameter(at + 8, row.expires_at)?;
    s.raw_bind_parameter(at + 9, &row.idempotency_key)?;
    s.raw_bind_parameter(at + 10, row.version)?;
    s.raw_bind_parameter(at + 11, &row.body)
}

/// Binds `row` as the event at index `idx` (a staged row's own is 0).
fn bind_event(
    s: &mut CachedStatement<'_>,
    at: usize,
    idx: i64,
    row: &EventRow,
) -> rusqlite::Result<()> {
    s.raw_bind_parameter(at + 1, idx)?;
    s.raw_bind_parameter(at + 2, &row.kind)?;
    s.raw_bind_parameter(at + 3, row.time)?;
    s.raw_bind_parameter(at + 4, &row.actor)?;
    s.raw_bind_parameter(at + 5, &row.request_id)?;
    s.raw_bind_parameter(at + 6, &row.digest)?;
    s.raw_bind_parameter(at + 7, &row.verdict)?;
    s.raw_bind_parameter(at + 8, &row.policy_ids)?;
    s.raw_bind_parameter(at + 9, &row.policy_set_hash)?;
    s.raw_bind_parameter(at + 10, &row.reason)?;
    s.raw_bind_parameter(at + 11, &row.detail)?;
    s.raw_bind_parameter(at + 12, row.schema)
}

/// A rusqlite error as a [`StoreError`]: the codes sqlx's mapping treats
/// as "the database is not usable now" (busy, locked, I/O, full, cannot
/// open) are [`StoreError::Unavailable`], which fails the batch and
/// reopens the connection.
fn db_err(e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode as E;
    match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(
                f.code,
                E::DatabaseBusy
                    | E::DatabaseLocked
                    | E::SystemIoFailure
                    | E::DiskFull
                    | E::CannotOpen
            ) =>
        {
            StoreError::Unavailable(e.to_string())
        }
        _ => StoreError::Database(e.to_string()),
    }
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
            || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY)
}

/// As [`crate::common::insert_request_err`].
fn insert_request_err(e: rusqlite::Error, r: &RequestRecord) -> StoreError {
    if !is_unique_violation(&e) {
        return db_err(e);
    }
    match (
        &r.idempotency_key,
        e.to_string().contains("idempotency_key"),
    ) {
        (Some(key), true) => StoreError::Duplicate(format!(
            "request with idempotency key `{key}` for {}",
            r.action.principal
        )),
        _ => StoreError::Duplicate(format!("request {}", r.id)),
    }
}

// The methods do their work before returning: the futures never wait.
#[async_trait::async_trait]
impl WriteConn for DirectConn {
    async fn begin(&mut self) -> Result<()> {
        // IMMEDIATE takes the write lock up front, as the sqlx writer does.
        self.exec("BEGIN IMMEDIATE").await
    }

    async fn exec(&mut self, sql: &'static str) -> Result<()> {
        self.stmt(sql)?.raw_execute().map(drop).map_err(db_err)
    }

    async fn lock_head(&mut self) -> Result<u64> {
        let next: i64 = self
            .stmt(c::LOCK_HEAD)?
            .query_row([], |r| r.get(0))
            .map_err(db_err)?;
        u64::try_from(next)
            .map_err(|_| StoreError::Corrupt(format!("ledger head is negative ({next})")))
    }

    async fn set_head(&mut self, next: u64) -> Result<()> {
        let mut s = self.stmt(c::SET_HEAD)?;
        s.raw_bind_parameter(1, c::to_i64(next)).map_err(db_err)?;
        s.raw_execute().map(drop).map_err(db_err)
    }

    async fn apply(&mut self, change: &Change) -> Result<()> {
        match change {
            Change::InsertRequest(r) => {
                let row = RequestRow::new(r, r.version)?;
                let mut s = self.stmt(c::INSERT_REQUEST)?;
                bind_request(&mut s, 0, &row).map_err(db_err)?;
                s.raw_execute().map_err(|e| insert_request_err(e, r))?;
                Ok(())
            }
            Change::UpdateRequest(r) => {
                let version = r.version.checked_add(1).ok_or_else(|| {
                    StoreError::Database(format!("request {} version overflow", r.id))
                })?;
                let row = RequestRow::new(r, version)?;
                let done = {
                    let mut s = self.stmt(c::UPDATE_REQUEST)?;
                    bind_request(&mut s, 0, &row).map_err(db_err)?;
                    s.raw_bind_parameter(12, r.version).map_err(db_err)?;
                    s.raw_execute().map_err(|e| insert_request_err(e, r))?
                };
                if done > 0 {
                    return Ok(());
                }
                let exists = self
                    .stmt(c::REQUEST_EXISTS)?
                    .exists([&r.id])
                    .map_err(db_err)?;
                Err(if exists {
                    StoreError::Conflict(r.id.clone())
                } else {
                    StoreError::NotFound(format!("request {}", r.id))
                })
            }
            // Never routed here (see `direct`).
            other => Err(StoreError::Database(format!(
                "the SQLite writer thread cannot apply {other:?} directly"
            ))),
        }
    }

    async fn insert_requests(&mut self, records: &[&RequestRecord]) -> Result<()> {
        let mut rest = records;
        while !rest.is_empty() {
            let (chunk, tail) = rest.split_at(c::chunk(rest.len()));
            let mut s = self.stmt(c::insert_requests_sql(chunk.len()))?;
            for (i, r) in chunk.iter().enumerate() {
                let row = RequestRow::new(r, r.version)?;
                bind_request(&mut s, i * 11, &row).map_err(db_err)?;
            }
            s.raw_execute().map_err(db_err)?;
            rest = tail;
        }
        Ok(())
    }

    async fn append(&mut self, first: u64, events: &[&StagedEvent]) -> Result<()> {
        let mut idx = first;
        let mut rest = events;
        while !rest.is_empty() {
            let (chunk, tail) = rest.split_at(c::chunk(rest.len()));
            let mut s = self.stmt(c::insert_events_sql(chunk.len()))?;
            for (i, event) in chunk.iter().enumerate() {
                let at = EventRow::idx_for(idx)?;
                idx += 1;
                bind_event(&mut s, i * 12, at, &event.row).map_err(db_err)?;
            }
            s.raw_execute().map_err(db_err)?;
            rest = tail;
        }
        Ok(())
    }

    async fn nodes(&mut self, coords: &[(u32, u64)]) -> Result<Vec<[u8; 32]>> {
        super::direct::nodes_in(&self.conn, coords)
    }

    async fn append_nodes(&mut self, nodes: &[(u32, u64, [u8; 32])]) -> Result<()> {
        let mut rest = nodes;
        while !rest.is_empty() {
            let (chunk, tail) = rest.split_at(c::chunk(rest.len()));
            let mut s = self.stmt(c::insert_nodes_sql(chunk.len()))?;
            for (i, (level, idx, hash)) in chunk.iter().enumerate() {
                let at = i * 3;
                s.raw_bind_parameter(at + 1, i64::from(*level))
                    .and_then(|()| s.raw_bind_parameter(at + 2, c::to_i64(*idx)))
                    .and_then(|()| s.raw_bind_parameter(at + 3, &hash[..]))
                    .map_err(db_err)?;
            }
            s.raw_execute().map_err(db_err)?;
            rest = tail;
        }
        Ok(())
    }

    async fn close(self) {}
}
