//! The SQLite backend: one file, WAL mode, `synchronous = FULL`.
//!
//! A single writer task owns the only write connection and group-commits
//! (see [`crate::writer`]); reads use a small pool of read-only connections,
//! which WAL lets run concurrently with the writer.

use crate::common::{db_err, migrate_err, open_err};
use crate::writer::{Connector, Writer};
use crate::Result;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::Connection;
use std::str::FromStr;
use std::time::Duration;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// How long a statement waits for another process's lock on the file.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Read connections; WAL readers do not block each other or the writer.
const READERS: u32 = 4;

/// A [`crate::Store`] in a SQLite database file.
///
/// `sqlite::memory:` works too (for tests): all connections then share one
/// in-memory database, and readers wait while a write transaction is open.
#[derive(Debug)]
pub struct SqliteStore {
    read: SqlitePool,
    writer: Writer,
}

impl SqliteStore {
    /// Opens (creating if missing) the database `url` names, e.g.
    /// `sqlite:///var/lib/signoff/signoff.db` or `sqlite://signoff.db`, and
    /// runs pending migrations.
    pub async fn open(url: &str) -> Result<Self> {
        let base = SqliteConnectOptions::from_str(url).map_err(|e| open_err(url, db_err(e)))?;
        let write = base
            .clone()
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL syncs the WAL on every commit: an acknowledged commit
            // survives power loss, not just a process crash.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT);
        let mut conn = SqliteConnection::connect_with(&write)
            .await
            .map_err(|e| open_err(url, unavailable_on_open(e)))?;
        MIGRATOR.run(&mut conn).await.map_err(|e| open_err(url, migrate_err(e)))?;
        let read = SqlitePoolOptions::new()
            .max_connections(READERS)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(base.read_only(true).busy_timeout(BUSY_TIMEOUT))
            .await
            .map_err(|e| open_err(url, unavailable_on_open(e)))?;
        let writer = Writer::spawn(SqliteConnector { options: write }, conn);
        Ok(SqliteStore { read, writer })
    }
}

/// Failing to open the file (missing directory, permissions) is an
/// availability problem, not a bad statement.
fn unavailable_on_open(e: sqlx::Error) -> crate::StoreError {
    match db_err(e) {
        crate::StoreError::Database(m) => crate::StoreError::Unavailable(m),
        other => other,
    }
}

struct SqliteConnector {
    options: SqliteConnectOptions,
}

#[async_trait::async_trait]
impl Connector for SqliteConnector {
    type Conn = SqliteConnection;

    async fn connect(&self) -> Result<SqliteConnection> {
        SqliteConnection::connect_with(&self.options).await.map_err(db_err)
    }
}

// IMMEDIATE takes the write lock up front, so a batch never fails halfway
// with SQLITE_BUSY when another process holds the file.
crate::shared::shared_impl!(SqliteStore, SqliteConnection, "BEGIN IMMEDIATE");
