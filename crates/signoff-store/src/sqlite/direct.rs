//! The SQLite side of [`crate::Store::scan_ledger`] and
//! [`crate::Store::ledger_nodes`], read with rusqlite on a blocking thread.
//!
//! sqlx hands every SQLite row from its worker thread to the caller through
//! a channel, waking a thread per row: measured on a 1 M-entry ledger, that
//! caps a scan at about 40–200k rows/s, while SQLite itself walks the same
//! rows at over 1 M/s. Verification reads every row, and a proof reads
//! about 2·log₂ n nodes, so these two reads go to the file directly (the
//! same bundled SQLite library sqlx links, opened read-only). Everything
//! else stays on sqlx.

use crate::scan::{self, LedgerScan};
use crate::{Result, StoreError};
use rusqlite::{Connection, OpenFlags};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a read on the calling thread waits for a lock (WAL readers
/// rarely wait at all) before it gives up and the read goes through sqlx,
/// which waits on its own thread.
const INLINE_BUSY: Duration = Duration::from_millis(20);

/// Read-only connections to one database file, reused across scans.
#[derive(Debug, Clone)]
pub(crate) struct DirectReader {
    path: PathBuf,
    idle: Arc<Mutex<Vec<Connection>>>,
    /// For [`DirectReader::request_by_key`], with a short busy timeout.
    inline: Arc<Mutex<Vec<Connection>>>,
}

impl DirectReader {
    pub(crate) fn new(path: PathBuf) -> Self {
        DirectReader {
            path,
            idle: Arc::default(),
            inline: Arc::default(),
        }
    }

    /// The body of the request `principal` submitted with `key`, read on the
    /// calling thread: one lookup on a unique index, a few microseconds in
    /// the page cache, where a sqlx read costs two thread hand-offs. It
    /// runs before every submission with an Idempotency-Key (each
    /// `signoff exec`). Any error (a lock held longer than [`INLINE_BUSY`])
    /// is returned for the caller to retry through sqlx.
    pub(crate) fn request_by_key(&self, principal: &str, key: &str) -> Result<Option<String>> {
        self.inline_body(crate::common::SELECT_REQUEST_BY_KEY, (principal, key))
    }

    /// The body of request `id`, read on the calling thread like
    /// [`DirectReader::request_by_key`]: every review, claim, outcome and
    /// long-poll reads the request it acts on first.
    pub(crate) fn request_by_id(&self, id: &str) -> Result<Option<String>> {
        self.inline_body(crate::common::SELECT_REQUEST, (id,))
    }

    fn inline_body(&self, sql: &str, params: impl rusqlite::Params) -> Result<Option<String>> {
        use rusqlite::OptionalExtension as _;
        let pooled = self.inline.lock().ok().and_then(|mut idle| idle.pop());
        let conn = match pooled {
            Some(c) => c,
            None => self.open(INLINE_BUSY)?,
        };
        let body = conn
            .prepare_cached(sql)
            .and_then(|mut s| s.query_row(params, |r| r.get(0)).optional())
            .map_err(db)?;
        if let Ok(mut idle) = self.inline.lock() {
            idle.push(conn);
        }
        Ok(body)
    }

    /// Scans `[from, to)` into `into` on a blocking thread.
    pub(crate) async fn scan(&self, from: u64, to: u64, into: &mut LedgerScan) -> Result<()> {
        let this = self.clone();
        let mut scan = std::mem::take(into);
        let (scan, result) = tokio::task::spawn_blocking(move || {
            let result = this.connection().and_then(|conn| {
                scan_with(&conn, from, to, &mut scan)?;
                this.give_back(conn);
                Ok(())
            });
            (scan, result)
        })
        .await
        .map_err(|e| StoreError::Database(format!("ledger scan task failed: {e}")))?;
        *into = scan;
        result
    }

    /// Ledger nodes `(level, idx)` in the order asked, on a blocking thread.
    pub(crate) async fn nodes(&self, coords: &[(u32, u64)]) -> Result<Vec<[u8; 32]>> {
        if coords.is_empty() {
            return Ok(Vec::new());
        }
        let this = self.clone();
        let coords = coords.to_vec();
        tokio::task::spawn_blocking(move || {
            let conn = this.connection()?;
            let nodes = nodes_with(&conn, &coords)?;
            this.give_back(conn);
            Ok(nodes)
        })
        .await
        .map_err(|e| StoreError::Database(format!("ledger node task failed: {e}")))?
    }

    fn give_back(&self, conn: Connection) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(conn);
        }
    }

    fn connection(&self) -> Result<Connection> {
        if let Some(c) = self.idle.lock().ok().and_then(|mut idle| idle.pop()) {
            return Ok(c);
        }
        self.open(Duration::from_secs(5))
    }

    fn open(&self, busy: Duration) -> Result<Connection> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| unavailable(&self.path, e))?;
        conn.busy_timeout(busy)
            .map_err(|e| unavailable(&self.path, e))?;
        Ok(conn)
    }
}

fn unavailable(path: &std::path::Path, e: rusqlite::Error) -> StoreError {
    StoreError::Unavailable(format!("cannot read {}: {e}", path.display()))
}

fn db(e: rusqlite::Error) -> StoreError {
    match e {
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(
                f.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            ) =>
        {
            StoreError::Unavailable(format!("reading the ledger: {e}"))
        }
        _ => StoreError::Database(format!("reading the ledger: {e}")),
    }
}

fn scan_with(conn: &Connection, from: u64, to: u64, out: &mut LedgerScan) -> Result<()> {
    let Some((lo, hi)) = scan::capped(from, to) else {
        out.reset(from, from);
        return Ok(());
    };
    out.reset(from, u64::try_from(hi).unwrap_or(from));
    // One read transaction, so both queries see the same snapshot.
    let tx = conn.unchecked_transaction().map_err(db)?;
    {
        let mut stmt = tx.prepare_cached(scan::SELECT_SCAN_EVENTS).map_err(db)?;
        let mut rows = stmt.query((lo, hi)).map_err(db)?;
        while let Some(row) = rows.next().map_err(db)? {
            let idx: i64 = row.get(0).map_err(db)?;
            let index = u64::try_from(idx)
                .map_err(|_| StoreError::Corrupt(format!("ledger scan: negative index {idx}")))?;
            // Raw bytes: UTF-8 is not checked here (see LeafColumns).
            let text = |i: usize| row.get_ref(i).ok()?.as_bytes().ok();
            let opt_text = |i: usize| row.get_ref(i).ok()?.as_bytes_or_null().ok();
            let time = row
                .get_ref(scan::TIME_COLUMN)
                .ok()
                .and_then(|v| v.as_i64().ok());
            let columns = scan::columns_of_row(index, text, opt_text, time);
            let schema = row
                .get_ref(scan::SCHEMA_COLUMN)
                .ok()
                .and_then(|v| v.as_i64().ok())
                .unwrap_or(-1);
            out.push(index, schema, columns);
        }
    }
    {
        let mut stmt = tx.prepare_cached(scan::SELECT_SCAN_LEAVES).map_err(db)?;
        let mut rows = stmt.query((lo, hi)).map_err(db)?;
        while let Some(row) = rows.next().map_err(db)? {
            let idx: i64 = row.get(0).map_err(db)?;
            let hash = row
                .get_ref(1)
                .ok()
                .and_then(|v| v.as_blob().ok())
                .unwrap_or_default();
            out.recorded.push(scan::recorded_leaf(idx, hash.to_vec())?);
        }
    }
    tx.finish().map_err(db)
}

const SELECT_NODE: &str = "SELECT hash FROM ledger_nodes WHERE level = ?1 AND idx = ?2";

fn nodes_with(conn: &Connection, coords: &[(u32, u64)]) -> Result<Vec<[u8; 32]>> {
    // One read transaction, so every node comes from the same snapshot.
    let tx = conn.unchecked_transaction().map_err(db)?;
    let out = nodes_in(&tx, coords)?;
    tx.finish().map_err(db)?;
    Ok(out)
}

/// Point lookups of ledger nodes in the order asked, in whatever
/// transaction `conn` has open (the writer's reads the right edge of the
/// tree inside its batch).
pub(crate) fn nodes_in(conn: &Connection, coords: &[(u32, u64)]) -> Result<Vec<[u8; 32]>> {
    let mut stmt = conn.prepare_cached(SELECT_NODE).map_err(db)?;
    let mut out = Vec::with_capacity(coords.len());
    for &(level, idx) in coords {
        let missing = || {
            StoreError::Corrupt(format!(
                "ledger node at level {level}, index {idx} is missing"
            ))
        };
        let Ok(key) = i64::try_from(idx) else {
            return Err(missing());
        };
        let mut rows = stmt.query((i64::from(level), key)).map_err(db)?;
        let row = rows.next().map_err(db)?.ok_or_else(missing)?;
        let hash = row
            .get_ref(0)
            .ok()
            .and_then(|v| v.as_blob().ok())
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or_else(|| {
                StoreError::Corrupt(format!("ledger node ({level}, {idx}) is not 32 bytes"))
            })?;
        out.push(hash);
    }
    Ok(out)
}
