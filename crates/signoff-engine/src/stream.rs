//! The event stream: every committed state change, as a typed
//! [`AuditEvent`] carrying its ledger index, for whoever needs to react —
//! channels, webhook senders, live views, long-polls.
//!
//! The dense audit log is the outbox: an event exists exactly when its
//! state change committed, in commit order, so there is nothing to publish
//! separately and nothing to lose. Consumers follow the ledger head (moved
//! by this process's commits and, on PostgreSQL, by every replica's through
//! `LISTEN/NOTIFY`) and read what is new.
//!
//! A [`Consumer`] is named and durable: its cursor (the next index it has
//! not acknowledged) is stored, so after a restart it resumes exactly
//! there. Delivery is at-least-once — events after the last
//! acknowledgement may be seen again — so consumers must be idempotent
//! (the event index is a natural idempotency key). An exclusive consumer
//! also holds a lease, so across replicas exactly one delivers.

use crate::{Engine, EngineError};
use jiff::SignedDuration;
use signoff_core::AuditEvent;
use signoff_store::{Change, Commit, Store, StoreError};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Largest batch a consumer reads at once.
pub const MAX_BATCH: usize = 1_000;

/// How often a waiting consumer reads the head itself, in case a commit
/// made outside this process's view (another process on the same SQLite
/// file, a notification lost while reconnecting) did not move it.
const RECHECK: Duration = Duration::from_secs(1);

/// Where a consumer that has no stored cursor yet starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// At index 0: everything ever recorded.
    Beginning,
    /// At the current head: only what happens from now on.
    Now,
}

/// A named, durable reader of the event stream.
pub struct Consumer {
    store: Arc<dyn Store>,
    clock: Arc<dyn signoff_core::Clock>,
    head: watch::Receiver<u64>,
    name: String,
    /// The next index to deliver (moves with each batch).
    read: u64,
    /// The next index not acknowledged (durable).
    acked: u64,
    lease: Option<Lease>,
}

struct Lease {
    holder: String,
    length: Duration,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("name", &self.name)
            .field("read", &self.read)
            .field("acked", &self.acked)
            .finish_non_exhaustive()
    }
}

fn validate_consumer_name(name: &str) -> Result<(), EngineError> {
    signoff_core::principal::validate_name("consumer name", name).map_err(EngineError::Invalid)
}

impl Engine {
    /// Opens the durable consumer `name`, resuming at its stored cursor (or
    /// at `start` if it has none yet).
    pub async fn consumer(&self, name: &str, start: StartAt) -> Result<Consumer, EngineError> {
        validate_consumer_name(name)?;
        let head = self.store.subscribe_head();
        let acked = self.resume_position(name, start).await?;
        Ok(self.open_consumer(head, name, acked, None))
    }

    /// Opens `name` as an exclusive consumer held by `holder` (a replica
    /// id): `None` while another holder's lease is live. Renew the lease
    /// with [`Consumer::renew`] well within `lease`; acknowledgements by a
    /// holder that lost its lease fail.
    pub async fn exclusive_consumer(
        &self,
        name: &str,
        start: StartAt,
        holder: &str,
        lease: Duration,
    ) -> Result<Option<Consumer>, EngineError> {
        validate_consumer_name(name)?;
        let head = self.store.subscribe_head();
        let start = self.resume_position(name, start).await?;
        match take_lease(&*self.store, name, holder, start, lease, self.now()).await {
            Ok(()) => {}
            Err(StoreError::Conflict(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        // the stored position wins over `start` if the cursor existed
        let acked = self
            .store
            .cursor(name)
            .await?
            .map(|c| c.position)
            .unwrap_or(start);
        let lease = Lease {
            holder: holder.to_owned(),
            length: lease,
        };
        Ok(Some(self.open_consumer(head, name, acked, Some(lease))))
    }

    /// The stored cursor of `name`, or where a new one starts.
    async fn resume_position(&self, name: &str, start: StartAt) -> Result<u64, EngineError> {
        if let Some(c) = self.store.cursor(name).await? {
            return Ok(c.position);
        }
        Ok(match start {
            StartAt::Beginning => 0,
            StartAt::Now => self.store.event_count().await?,
        })
    }

    fn open_consumer(
        &self,
        head: watch::Receiver<u64>,
        name: &str,
        acked: u64,
        lease: Option<Lease>,
    ) -> Consumer {
        Consumer {
            store: self.store.clone(),
            clock: self.clock.clone(),
            head,
            name: name.to_owned(),
            read: acked,
            acked,
            lease,
        }
    }

    /// The ledger head as this process knows it; changes on every commit
    /// (this replica's or, on PostgreSQL, any replica's).
    pub fn subscribe_head(&self) -> watch::Receiver<u64> {
        self.store.subscribe_head()
    }
}

async fn take_lease(
    store: &dyn Store,
    name: &str,
    holder: &str,
    start: u64,
    lease: Duration,
    now: jiff::Timestamp,
) -> Result<(), StoreError> {
    let until = now
        .checked_add(SignedDuration::try_from(lease).unwrap_or(SignedDuration::from_secs(30)))
        .unwrap_or(now);
    store
        .commit(Commit {
            changes: vec![Change::LeaseCursor {
                name: name.to_owned(),
                holder: holder.to_owned(),
                start,
                until,
                at: now,
            }],
            events: vec![],
        })
        .await
        .map(drop)
}

impl Consumer {
    /// The consumer's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The next index it will deliver.
    pub fn position(&self) -> u64 {
        self.read
    }

    /// The next index not yet acknowledged (what a restart resumes from).
    pub fn acknowledged(&self) -> u64 {
        self.acked
    }

    /// Waits until at least one event past the position exists and returns
    /// up to `max` of them, in index order. Does not acknowledge them.
    pub async fn next_batch(&mut self, max: usize) -> Result<Vec<AuditEvent>, EngineError> {
        let max = max.clamp(1, MAX_BATCH);
        let mut known = *self.head.borrow_and_update();
        loop {
            if known > self.read {
                let events = self.store.events(self.read, max).await?;
                if let Some(last) = events.last().and_then(|e| e.index) {
                    self.read = last + 1;
                    return Ok(events);
                }
            }
            known = tokio::select! {
                changed = self.head.changed() => {
                    if changed.is_err() {
                        return Err(EngineError::Unavailable("the store was closed".into()));
                    }
                    *self.head.borrow_and_update()
                }
                _ = tokio::time::sleep(RECHECK) => self.store.event_count().await?,
            };
        }
    }

    /// Like [`Consumer::next_batch`], but gives up after `timeout` with
    /// an empty batch.
    pub async fn next_batch_within(
        &mut self,
        max: usize,
        timeout: Duration,
    ) -> Result<Vec<AuditEvent>, EngineError> {
        match tokio::time::timeout(timeout, self.next_batch(max)).await {
            Ok(r) => r,
            Err(_) => Ok(Vec::new()),
        }
    }

    /// Acknowledges every event up to and including `index`, durably: a
    /// restarted consumer resumes after it. Acknowledging backwards is a
    /// no-op.
    pub async fn ack(&mut self, index: u64) -> Result<(), EngineError> {
        let position = index.saturating_add(1);
        if position <= self.acked {
            return Ok(());
        }
        let at = self.clock.now();
        self.store
            .commit(Commit {
                changes: vec![Change::AdvanceCursor {
                    name: self.name.clone(),
                    position,
                    holder: self.lease.as_ref().map(|l| l.holder.clone()),
                    at,
                }],
                events: vec![],
            })
            .await
            .map_err(|e| match e {
                StoreError::Conflict(m) => EngineError::Busy(format!("lost the lease on {m}")),
                other => other.into(),
            })?;
        self.acked = position;
        self.read = self.read.max(position);
        Ok(())
    }

    /// Renews an exclusive consumer's lease; fails with
    /// [`EngineError::Busy`] if another holder took it over.
    pub async fn renew(&mut self) -> Result<(), EngineError> {
        let Some(lease) = &self.lease else {
            return Ok(());
        };
        take_lease(
            &*self.store,
            &self.name,
            &lease.holder,
            self.acked,
            lease.length,
            self.clock.now(),
        )
        .await
        .map_err(|e| match e {
            StoreError::Conflict(m) => EngineError::Busy(format!("lost the lease on {m}")),
            other => other.into(),
        })
    }
}
