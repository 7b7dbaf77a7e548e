//! The SQLite backend: one file, WAL mode, `synchronous = FULL`.
//!
//! A single writer owns the write connection and group-commits (see
//! [`crate::writer`]): for a database file, a thread with a rusqlite
//! connection (see [`thread`]), for `sqlite::memory:` a task on sqlx's.
//! Reads use a small pool of read-only connections, which WAL lets run
//! concurrently with the writer.

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

mod direct;
mod thread;

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
    /// The ledger head as last committed through this store.
    head: tokio::sync::watch::Sender<u64>,
    /// For ledger scans and proof nodes; `None` for an in-memory database.
    direct: Option<direct::DirectReader>,
}

/// Creates the database file readable by its owner only (0600) when it does
/// not exist yet: it holds every request, justification and context. SQLite
/// gives the `-wal` and `-shm` files it creates the same mode.
fn create_private(path: &std::path::Path) -> std::result::Result<(), crate::StoreError> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    match opts.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        // a missing directory is reported by SQLite itself, as before
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(crate::StoreError::Unavailable(format!(
            "cannot create database file {}: {e}",
            path.display()
        ))),
    }
}

impl SqliteStore {
    /// One serving process owns a SQLite file (replicas need PostgreSQL).
    const SHARED: bool = false;

    /// Opens (creating if missing) the database `url` names, e.g.
    /// `sqlite:///var/lib/signoff/signoff.db` or `sqlite://signoff.db`, and
    /// runs pending migrations.
    pub async fn open(url: &str) -> Result<Self> {
        let base = SqliteConnectOptions::from_str(url).map_err(|e| open_err(url, db_err(e)))?;
        if !url.contains(":memory:") && !url.contains("mode=memory") {
            create_private(base.get_filename()).map_err(|e| open_err(url, e))?;
        }
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
        MIGRATOR
            .run(&mut conn)
            .await
            .map_err(|e| open_err(url, migrate_err(e)))?;
        let (next,): (i64,) = sqlx::query_as(crate::common::SELECT_HEAD)
            .fetch_one(&mut conn)
            .await
            .map_err(|e| open_err(url, db_err(e)))?;
        let head = tokio::sync::watch::Sender::new(u64::try_from(next).unwrap_or(0));
        let read = SqlitePoolOptions::new()
            .max_connections(READERS)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(base.read_only(true).busy_timeout(BUSY_TIMEOUT))
            .await
            .map_err(|e| open_err(url, unavailable_on_open(e)))?;
        let file = write.get_filename().to_owned();
        let direct = file
            .is_file()
            .then(|| direct::DirectReader::new(file.clone()));
        let connector = SqliteConnector { options: write };
        let writer = match &direct {
            Some(_) => thread::spawn(file, connector, conn)?,
            None => Writer::spawn(connector, conn),
        };
        Ok(SqliteStore {
            read,
            writer,
            head,
            direct,
        })
    }

    /// [`crate::Store::scan_ledger`]: directly from the file when there is
    /// one (see [`direct`]), else through sqlx.
    async fn scan(&self, from: u64, to: u64, into: &mut crate::LedgerScan) -> Result<()> {
        match &self.direct {
            Some(d) => d.scan(from, to, into).await,
            None => crate::shared::sqlx_scan!(&self.read, from, to, into),
        }
    }

    /// [`crate::Store::ledger_nodes`]: point lookups on the file directly
    /// (a proof reads about 2·log₂ n nodes; through sqlx each row would cost
    /// a thread wake-up), else one query through sqlx.
    async fn read_nodes(&self, coords: &[(u32, u64)]) -> Result<Vec<[u8; 32]>> {
        match &self.direct {
            Some(d) => d.nodes(coords).await,
            None => crate::shared::fetch_nodes!(&self.read, coords),
        }
    }
}

impl crate::shared::InlineReads for SqliteStore {
    fn by_key(&self, principal: &str, key: &str) -> Option<Result<Option<String>>> {
        let direct = self.direct.as_ref()?;
        match direct.request_by_key(principal, key) {
            Ok(found) => Some(Ok(found)),
            // Busy or anything odd: let the sqlx reader pool answer (and
            // report the error if it has one too).
            Err(e) => {
                tracing::debug!(error = %e, "inline idempotency lookup failed; retrying through sqlx");
                None
            }
        }
    }

    fn by_id(&self, id: &str) -> Option<Result<Option<String>>> {
        match self.direct.as_ref()?.request_by_id(id) {
            Ok(found) => Some(Ok(found)),
            Err(e) => {
                tracing::debug!(error = %e, "inline request read failed; retrying through sqlx");
                None
            }
        }
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
        SqliteConnection::connect_with(&self.options)
            .await
            .map_err(db_err)
    }
}

// IMMEDIATE takes the write lock up front, so a batch never fails halfway
// with SQLITE_BUSY when another process holds the file.
crate::shared::shared_impl!(SqliteStore, SqliteConnection, "BEGIN IMMEDIATE");

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::writer::{run_batch, Job};
    use crate::{Change, Commit, StoreError};
    use signoff_core::{AuditEvent, Deadlines, Decision, EventKind, RequestRecord, Verdict};

    fn request(id: &str, key: Option<&str>) -> RequestRecord {
        let action = signoff_core::ActionRequest {
            action: "db.export".into(),
            resource: "customers".into(),
            environment: None,
            context: Default::default(),
            justification: None,
            principal: "agent:etl".parse().unwrap(),
            on_behalf_of: None,
        };
        let verdict = Verdict {
            decision: Decision::Allow,
            policy_ids: vec![],
            policy_set_hash: "h".into(),
            requirement: None,
            ttl_seconds: None,
            reasons: vec![],
            errors: vec![],
        };
        let now = jiff::Timestamp::from_second(1_800_000_000).unwrap();
        RequestRecord::submit(
            signoff_core::Submission {
                id: id.into(),
                action,
                gate: None,
                claimed_gate: None,
                principal_owner: None,
                principal_created_by: None,
                verdict,
                idempotency_key: key.map(Into::into),
                facts: None,
            },
            now,
            Deadlines::default(),
        )
        .0
    }

    fn event() -> AuditEvent {
        AuditEvent::new(
            EventKind::PolicySetLoaded,
            jiff::Timestamp::UNIX_EPOCH,
            "system",
        )
    }

    fn job(
        changes: Vec<Change>,
        events: usize,
    ) -> (Job, tokio::sync::oneshot::Receiver<Result<crate::Receipt>>) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let commit = Commit {
            changes,
            events: (0..events).map(|_| event()).collect(),
        };
        ((crate::writer::Staged::new(commit).unwrap(), tx), rx)
    }

    /// One batch mixing good commits with a duplicate (caught by the bulk
    /// insert) and a stale update (caught by its own statement): the bad ones
    /// fail alone and the good ones get dense indexes in batch order.
    #[tokio::test]
    async fn a_batch_isolates_failing_commits() {
        let mut conn = SqliteConnection::connect("sqlite::memory:").await.unwrap();
        MIGRATOR.run(&mut conn).await.unwrap();
        let ins = |id: &str, key| Change::InsertRequest(request(id, key));
        let jobs: Vec<_> = vec![
            job(vec![ins("a", Some("k"))], 2),
            job(vec![ins("b", Some("k"))], 1),
            job(vec![ins("c", None)], 1),
            job(
                vec![Change::UpdateRequest(RequestRecord {
                    version: 3,
                    ..request("a", Some("k"))
                })],
                1,
            ),
            job(vec![], 3),
        ];
        let (jobs, _rx): (Vec<Job>, Vec<_>) = jobs.into_iter().unzip();
        let (results, fatal) = run_batch(&mut conn, &jobs).await;
        assert!(fatal.is_none());
        let results: Vec<_> = results.into_iter().map(Option::unwrap).collect();
        assert_eq!(results[0].as_ref().unwrap().event_indexes, vec![0, 1]);
        assert!(matches!(results[1], Err(StoreError::Duplicate(_))));
        assert_eq!(results[2].as_ref().unwrap().event_indexes, vec![2]);
        assert!(matches!(results[3], Err(StoreError::Conflict(ref id)) if id == "a"));
        assert_eq!(results[4].as_ref().unwrap().event_indexes, vec![3, 4, 5]);

        let (head,): (i64,) = sqlx::query_as(crate::common::SELECT_HEAD)
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(head, 6);
        let (events,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM audit_events")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(events, 6);
        let ids: Vec<(String,)> = sqlx::query_as("SELECT id FROM requests ORDER BY id")
            .fetch_all(&mut conn)
            .await
            .unwrap();
        assert_eq!(ids, vec![("a".to_owned(),), ("c".to_owned(),)]);
    }
}
