//! The PostgreSQL backend, for several replicas sharing one database.
//!
//! Each replica runs one writer task (see [`crate::writer`]) with its own
//! connection; the ledger head row lock serializes writers across replicas.
//! Reads use a connection pool. When the server goes away, reads and writes
//! fail with [`crate::StoreError::Unavailable`] and both reconnect once it
//! is back.

use crate::common::{db_err, migrate_err, open_err};
use crate::writer::{Connector, Writer};
use crate::{Result, StoreError};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::Connection;
use std::str::FromStr;
use std::time::Duration;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// How long to wait for the server before reporting it unavailable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Read connections per replica.
const READERS: u32 = 8;

/// A [`crate::Store`] in a PostgreSQL database.
#[derive(Debug)]
pub struct PgStore {
    read: PgPool,
    writer: Writer,
    /// The ledger head as committed by any replica (see [`follow_head`]).
    head: std::sync::Arc<tokio::sync::watch::Sender<u64>>,
}

impl PgStore {
    /// Replicas share one PostgreSQL database.
    const SHARED: bool = true;

    /// Connects to the database `url` names (`postgres://USER:PASS@HOST/DB`)
    /// and runs pending migrations (under PostgreSQL's advisory lock, so
    /// replicas starting together are safe).
    pub async fn open(url: &str) -> Result<Self> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| open_err(url, db_err(e)))?
            .application_name("signoff");
        let connector = PgConnector {
            options: options.clone(),
        };
        let mut conn = connector.connect().await.map_err(|e| open_err(url, e))?;
        MIGRATOR
            .run(&mut conn)
            .await
            .map_err(|e| open_err(url, migrate_err(e)))?;
        let (next,): (i64,) = sqlx::query_as(crate::common::SELECT_HEAD)
            .fetch_one(&mut conn)
            .await
            .map_err(|e| open_err(url, db_err(e)))?;
        let head = std::sync::Arc::new(tokio::sync::watch::Sender::new(
            u64::try_from(next).unwrap_or(0),
        ));
        let read = PgPoolOptions::new()
            .max_connections(READERS)
            .acquire_timeout(CONNECT_TIMEOUT)
            .connect_lazy_with(options);
        tokio::spawn(follow_head(read.clone(), std::sync::Arc::downgrade(&head)));
        let writer = Writer::spawn(connector, conn);
        Ok(PgStore { read, writer, head })
    }
}

/// How often the head is read even without a notification: covers one lost
/// while the listening connection was down.
const HEAD_RECHECK: Duration = Duration::from_secs(5);

/// Follows other replicas' commits: `LISTEN signoff_events` (a trigger on
/// the ledger head notifies the new head at every commit), moving `head`
/// forward. After the listening connection drops, or every [`HEAD_RECHECK`],
/// it reads the head itself, since notifications sent while nobody listened
/// are gone. Ends when the store is dropped.
async fn follow_head(pool: PgPool, head: std::sync::Weak<tokio::sync::watch::Sender<u64>>) {
    loop {
        let mut listener = match sqlx::postgres::PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(e) => {
                tracing::debug!(error = %e, "cannot listen for ledger notifications; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                if head.strong_count() == 0 {
                    return;
                }
                continue;
            }
        };
        if let Err(e) = listener.listen("signoff_events").await {
            tracing::debug!(error = %e, "LISTEN signoff_events failed; retrying");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        loop {
            // Read after LISTEN so nothing committed in between is missed.
            let Some(sender) = head.upgrade() else { return };
            if let Ok((next,)) = sqlx::query_as::<_, (i64,)>(crate::common::SELECT_HEAD)
                .fetch_one(&pool)
                .await
            {
                crate::common::bump_head(&sender, u64::try_from(next).unwrap_or(0));
            }
            drop(sender);
            let got = tokio::time::timeout(HEAD_RECHECK, async {
                loop {
                    match listener.try_recv().await {
                        Ok(Some(n)) => {
                            let Some(sender) = head.upgrade() else {
                                return Ok(());
                            };
                            if let Ok(next) = n.payload().parse::<u64>() {
                                crate::common::bump_head(&sender, next);
                            }
                        }
                        // the connection dropped: notifications may be lost
                        Ok(None) => return Err(()),
                        Err(_) => return Err(()),
                    }
                }
            })
            .await;
            match got {
                Err(_elapsed) => continue,
                Ok(Ok(())) => return,
                Ok(Err(())) => break,
            }
        }
    }
}

struct PgConnector {
    options: PgConnectOptions,
}

#[async_trait::async_trait]
impl Connector for PgConnector {
    type Conn = PgConnection;

    async fn connect(&self) -> Result<PgConnection> {
        let mut conn =
            tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&self.options))
                .await
                .map_err(|_| {
                    StoreError::Unavailable(format!(
                        "no answer from the database server within {}s",
                        CONNECT_TIMEOUT.as_secs()
                    ))
                })?
                .map_err(db_err)?;
        // An acknowledged commit must be durable even if the server's
        // default was turned off for speed.
        let (setting,): (String,) = sqlx::query_as("SELECT current_setting('synchronous_commit')")
            .fetch_one(&mut conn)
            .await
            .map_err(db_err)?;
        if setting == "off" {
            sqlx::query("SET synchronous_commit = on")
                .execute(&mut conn)
                .await
                .map_err(db_err)?;
        }
        Ok(conn)
    }
}

impl PgStore {
    /// [`crate::Store::scan_ledger`]: sqlx reads PostgreSQL rows on the
    /// calling task, cheaply enough.
    async fn scan(&self, from: u64, to: u64, into: &mut crate::LedgerScan) -> Result<()> {
        crate::shared::sqlx_scan!(&self.read, from, to, into)
    }

    /// [`crate::Store::ledger_nodes`] in one query.
    async fn read_nodes(&self, coords: &[(u32, u64)]) -> Result<Vec<[u8; 32]>> {
        crate::shared::fetch_nodes!(&self.read, coords)
    }
}

crate::shared::shared_impl!(PgStore, PgConnection, "BEGIN");
