//! Group commit: one task owns the write connection and applies whatever
//! commits are queued in a single transaction, so many concurrent callers
//! share one fsync.
//!
//! A batch first runs optimistically: every change in order, then the events
//! of all commits in a few multi-row inserts, then one COMMIT. If a commit
//! fails (a conflict, a duplicate), the batch is rolled back and redone with
//! each commit inside its own savepoint, so the failing one is undone alone
//! and its neighbours still commit. Failures are rare, so the common path
//! pays neither for savepoints nor for one statement per event.
//! The ledger head row is locked first in every batch, which serializes
//! writers (across replicas too, with PostgreSQL) and gives every writer the
//! same lock order, so batches cannot deadlock each other.

use crate::common::{copy_err, StagedEvent};
use crate::{Change, Commit, Receipt, Result, StoreError};
use signoff_core::RequestRecord;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Most commits applied in one transaction.
pub(crate) const MAX_BATCH: usize = 256;
/// Most scheduler rounds the writer waits for more commits to join a batch.
pub(crate) const LINGER_ROUNDS: usize = 8;
/// Commits that may wait for the writer before callers feel back-pressure.
const QUEUE: usize = 4 * MAX_BATCH;

/// One writer connection, as the batch loop needs it.
#[async_trait::async_trait]
pub(crate) trait WriteConn: Send + 'static {
    /// Starts the batch transaction.
    async fn begin(&mut self) -> Result<()>;
    /// Runs a statement without binds (SAVEPOINT, COMMIT, …).
    async fn exec(&mut self, sql: &'static str) -> Result<()>;
    /// Locks the ledger head for the transaction and reads the next index.
    async fn lock_head(&mut self) -> Result<u64>;
    /// Stores the next index.
    async fn set_head(&mut self, next: u64) -> Result<()>;
    /// Applies one state change.
    async fn apply(&mut self, change: &Change) -> Result<()>;
    /// Inserts several requests with as few statements as possible; on a
    /// failure it cannot say which one failed.
    async fn insert_requests(&mut self, records: &[&RequestRecord]) -> Result<()>;
    /// Appends `events` at indexes `first`, `first + 1`, ….
    async fn append(&mut self, first: u64, events: &[&StagedEvent]) -> Result<()>;
    /// Reads ledger nodes `(level, idx)` in the order asked.
    async fn nodes(&mut self, coords: &[(u32, u64)]) -> Result<Vec<[u8; 32]>>;
    /// Inserts ledger nodes `(level, idx, hash)`.
    async fn append_nodes(&mut self, nodes: &[(u32, u64, [u8; 32])]) -> Result<()>;
    /// Closes the connection.
    async fn close(self);
}

/// Opens writer connections, again after one breaks.
#[async_trait::async_trait]
pub(crate) trait Connector: Send + Sync + 'static {
    /// The connection type.
    type Conn: WriteConn;
    /// A fresh connection.
    async fn connect(&self) -> Result<Self::Conn>;
}

/// A commit made ready for the writer by the task that commits it: the
/// events' rows and leaves are built there, in parallel with other callers,
/// so the writer's serial section only binds rows and finishes leaf hashes
/// (building them was most of its work).
#[derive(Debug)]
pub(crate) struct Staged {
    /// The commit as the caller gave it.
    pub commit: Commit,
    /// Its events, in order, ready to be written.
    pub events: Vec<StagedEvent>,
}

impl Staged {
    /// Builds the rows and leaves of `commit`'s events.
    pub fn new(commit: Commit) -> Result<Self> {
        let events = commit
            .events
            .iter()
            .map(StagedEvent::new)
            .collect::<Result<_>>()?;
        Ok(Staged { commit, events })
    }
}

pub(crate) type Job = (Staged, oneshot::Sender<Result<Receipt>>);

/// The handle callers commit through.
#[derive(Debug, Clone)]
pub(crate) struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl Writer {
    /// Starts the writer task with an already open connection.
    pub fn spawn<C: Connector>(connector: C, conn: C::Conn) -> Self {
        let (writer, rx) = Writer::queue();
        tokio::spawn(run(connector, Some(conn), rx));
        writer
    }

    /// A handle and the queue it feeds, for a writer that is not a task
    /// (see `sqlite::thread`).
    pub(crate) fn queue() -> (Self, mpsc::Receiver<Job>) {
        let (jobs, rx) = mpsc::channel(QUEUE);
        (Writer { jobs }, rx)
    }

    /// Queues `commit` and waits until it is durable (or failed).
    pub async fn commit(&self, commit: Commit) -> Result<Receipt> {
        let staged = Staged::new(commit)?;
        let (tx, rx) = oneshot::channel();
        self.jobs
            .send((staged, tx))
            .await
            .map_err(|_| StoreError::Unavailable("the store's writer task has stopped".into()))?;
        rx.await.map_err(|_| {
            StoreError::Unavailable("the store's writer task stopped before answering".into())
        })?
    }
}

async fn run<C: Connector>(connector: C, mut conn: Option<C::Conn>, mut rx: mpsc::Receiver<Job>) {
    let mut jobs: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    loop {
        jobs.clear();
        if rx.recv_many(&mut jobs, MAX_BATCH).await == 0 {
            break; // every Writer handle is gone
        }
        // Callers answered by the previous batch are about to queue their
        // next commit: give them a moment so they share this fsync instead
        // of waiting for the next one. Stops as soon as nobody else arrives.
        for _ in 0..LINGER_ROUNDS {
            if jobs.len() >= MAX_BATCH {
                break;
            }
            tokio::task::yield_now().await;
            let before = jobs.len();
            while jobs.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
            if jobs.len() == before {
                break;
            }
        }
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match connector.connect().await {
                Ok(c) => {
                    tracing::info!("store writer reconnected");
                    conn.insert(c)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "store writer cannot reconnect");
                    for (_, reply) in jobs.drain(..) {
                        let _ = reply.send(Err(copy_err(&e)));
                    }
                    continue;
                }
            },
        };
        let (results, fatal) = run_batch(c, &jobs).await;
        if let Some(e) = &fatal {
            // The connection's state is unknown (dead socket, failed COMMIT):
            // drop it and reconnect on the next batch.
            tracing::warn!(error = %e, commits = jobs.len(), "store write batch failed");
            if let Some(c) = conn.take() {
                let _ = tokio::time::timeout(Duration::from_secs(1), c.close()).await;
            }
        }
        answer(&mut jobs, results, fatal);
    }
    if let Some(c) = conn {
        c.close().await;
    }
}

/// Answers every caller of a batch (and empties `jobs`).
pub(crate) fn answer(
    jobs: &mut Vec<Job>,
    results: Vec<Option<Result<Receipt>>>,
    fatal: Option<StoreError>,
) {
    let mut results = results.into_iter();
    for (_, reply) in jobs.drain(..) {
        let result = match (results.next().flatten(), &fatal) {
            // A commit that failed on its own fails the same way whatever
            // happened to the rest of the batch.
            (Some(Err(e)), _) => Err(e),
            (Some(Ok(receipt)), None) => Ok(receipt),
            (_, Some(e)) => Err(copy_err(e)),
            (None, None) => Err(StoreError::Database("commit was not applied".into())),
        };
        // The caller may have given up waiting; its commit stands anyway.
        let _ = reply.send(result);
    }
}

/// Each commit's own outcome (`None` if the batch failed before it was
/// decided) and the error that failed the whole batch, if one did (then
/// nothing committed).
pub(crate) type BatchOutcome = (Vec<Option<Result<Receipt>>>, Option<StoreError>);

/// Applies `jobs` in one transaction.
pub(crate) async fn run_batch<W: WriteConn>(conn: &mut W, jobs: &[Job]) -> BatchOutcome {
    let commits: Vec<&Staged> = jobs.iter().map(|(c, _)| c).collect();
    let mut results: Vec<Option<Result<Receipt>>> = jobs.iter().map(|_| None).collect();
    let fatal = match fast_batch(conn, &commits).await {
        Ok(Fast::Committed(receipts)) => {
            return (receipts.into_iter().map(|r| Some(Ok(r))).collect(), None);
        }
        // Everything was rolled back; redo the batch the careful way. The
        // commits before a failed one saw exactly the state they will see
        // again, so the failed one is known to fail and is left out.
        Ok(Fast::Failed(failed, e)) => {
            results[failed] = Some(Err(e));
            savepoint_batch(conn, &commits, &mut results).await.err()
        }
        Ok(Fast::Retry) => savepoint_batch(conn, &commits, &mut results).await.err(),
        Err(fatal) => Some(fatal),
    };
    (results, fatal)
}

enum Fast {
    /// Everything committed.
    Committed(Vec<Receipt>),
    /// Rolled back because the commit at this position failed.
    Failed(usize, StoreError),
    /// Rolled back because a multi-row insert failed, which no single
    /// commit can be blamed for yet.
    Retry,
}

/// The common case: every commit succeeds, so no savepoints are needed, and
/// runs of request inserts and all the events go in with a few multi-row
/// inserts.
async fn fast_batch<W: WriteConn>(conn: &mut W, commits: &[&Staged]) -> Result<Fast> {
    conn.begin().await?;
    let head = conn.lock_head().await?;
    // Consecutive inserts are deferred and flushed together; the order of
    // effects is unchanged because they are flushed before any other change.
    let mut inserts: Vec<&RequestRecord> = Vec::new();
    for (i, staged) in commits.iter().enumerate() {
        for change in &staged.commit.changes {
            if let Change::InsertRequest(r) = change {
                inserts.push(r);
                continue;
            }
            if let Some(fast) = flush_inserts(conn, &mut inserts).await? {
                return Ok(fast);
            }
            match conn.apply(change).await {
                Ok(()) => {}
                Err(e @ StoreError::Unavailable(_)) => return Err(e),
                Err(e) => {
                    conn.exec("ROLLBACK").await?;
                    return Ok(Fast::Failed(i, e));
                }
            }
        }
    }
    if let Some(fast) = flush_inserts(conn, &mut inserts).await? {
        return Ok(fast);
    }
    let mut next = head;
    let mut receipts = Vec::with_capacity(commits.len());
    for commit in commits {
        let n = commit.events.len() as u64;
        receipts.push(Receipt {
            event_indexes: (next..next + n).collect(),
        });
        next += n;
    }
    let events: Vec<&StagedEvent> = commits.iter().flat_map(|c| &c.events).collect();
    if !events.is_empty() {
        match conn.append(head, &events).await {
            Ok(()) => {}
            Err(e @ StoreError::Unavailable(_)) => return Err(e),
            Err(_) => {
                conn.exec("ROLLBACK").await?;
                return Ok(Fast::Retry);
            }
        }
        append_tree(conn, head, &events).await?;
        conn.set_head(next).await?;
    }
    conn.exec("COMMIT").await?;
    Ok(Fast::Committed(receipts))
}

/// Flushes deferred request inserts. A failure cannot be pinned on one
/// commit, so it rolls back and asks for the careful path.
async fn flush_inserts<W: WriteConn>(
    conn: &mut W,
    inserts: &mut Vec<&RequestRecord>,
) -> Result<Option<Fast>> {
    if inserts.is_empty() {
        return Ok(None);
    }
    let result = conn.insert_requests(inserts).await;
    inserts.clear();
    match result {
        Ok(()) => Ok(None),
        Err(e @ StoreError::Unavailable(_)) => Err(e),
        Err(_) => {
            conn.exec("ROLLBACK").await?;
            Ok(Some(Fast::Retry))
        }
    }
}

/// Applies every commit whose result is still undecided inside its own
/// savepoint, so one that fails is undone alone.
async fn savepoint_batch<W: WriteConn>(
    conn: &mut W,
    commits: &[&Staged],
    results: &mut [Option<Result<Receipt>>],
) -> Result<()> {
    if results.iter().all(Option::is_some) {
        return Ok(());
    }
    conn.begin().await?;
    let head = conn.lock_head().await?;
    let mut next = head;
    let mut appended: Vec<&StagedEvent> = Vec::new();
    for (commit, result) in commits.iter().zip(results.iter_mut()) {
        if result.is_some() {
            continue;
        }
        conn.exec("SAVEPOINT signoff_commit").await?;
        match apply(conn, commit, next).await {
            Ok(receipt) => {
                conn.exec("RELEASE SAVEPOINT signoff_commit").await?;
                next += receipt.event_indexes.len() as u64;
                appended.extend(commit.events.iter());
                *result = Some(Ok(receipt));
            }
            Err(e @ StoreError::Unavailable(_)) => return Err(e),
            Err(e) => {
                conn.exec("ROLLBACK TO SAVEPOINT signoff_commit").await?;
                conn.exec("RELEASE SAVEPOINT signoff_commit").await?;
                *result = Some(Err(e));
            }
        }
    }
    if next != head {
        append_tree(conn, head, &appended).await?;
        conn.set_head(next).await?;
    }
    conn.exec("COMMIT").await
}

/// Adds `events` (about to be stored at `head`, `head + 1`, …) to the Merkle
/// tree in the same transaction: reads the right edge of the tree (one
/// query, at most 64 nodes), finishes each leaf's hash with its index, and
/// stores every perfect subtree the new leaves complete.
async fn append_tree<W: WriteConn>(conn: &mut W, head: u64, events: &[&StagedEvent]) -> Result<()> {
    use signoff_ledger::merkle;
    let edge = conn.nodes(&merkle::perfect_subtrees(0, head)).await?;
    let mut frontier = merkle::Frontier::from_nodes(head, edge)
        .map_err(|e| StoreError::Corrupt(format!("ledger right edge: {e}")))?;
    let mut nodes = Vec::with_capacity(events.len() * 2);
    for (i, event) in events.iter().enumerate() {
        nodes.extend(frontier.push(event.leaf_hash(head + i as u64)));
    }
    conn.append_nodes(&nodes).await
}

async fn apply<W: WriteConn>(conn: &mut W, staged: &Staged, first: u64) -> Result<Receipt> {
    for change in &staged.commit.changes {
        conn.apply(change).await?;
    }
    let events: Vec<&StagedEvent> = staged.events.iter().collect();
    if !events.is_empty() {
        conn.append(first, &events).await?;
    }
    let n = events.len() as u64;
    Ok(Receipt {
        event_indexes: (first..first + n).collect(),
    })
}
