//! `signoff audit verify --config`: replays the live ledger from entry 0.
//!
//! Every event is re-encoded as its leaf and hashed; the hash is compared
//! with the leaf hash the store recorded at append time (level-0 ledger
//! node), indexes must be consecutive, and the tree rebuilt from the
//! recomputed leaves must have the root of every stored, signed checkpoint
//! at its size.
//!
//! Speed comes from [`Store::scan_ledger`], which encodes each row's
//! columns straight into leaf bytes and hashes them. That hash only ever
//! *confirms* a recorded one: an entry it does not confirm is read again as
//! an [`AuditEvent`] and decided by [`leaf::encode`], exactly as if there
//! were no fast path. Several windows are scanned at once (each on a
//! blocking thread); only appending to the tree is sequential.
//!
//! All differences are collected, then ordered by where they occur in the
//! log; the first one is the verdict.

use signoff_core::AuditEvent;
use signoff_ledger::leaf;
use signoff_ledger::merkle::{self, Frontier, Hash};
use signoff_ledger::note::{Checkpoint, Verifier};
use signoff_store::{LedgerScan, Store, StoreError, StoredCheckpoint};
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Entries fetched per page by [`Store::events`] (the store's maximum).
pub const PAGE: u64 = 10_000;

/// Entries per window scanned and hashed as one unit.
const WINDOW: u64 = 32_768;

/// Windows being scanned ahead of the one being appended to the tree.
const FETCH_AHEAD: usize = 4;

fn task_failed(e: tokio::task::JoinError) -> StoreError {
    StoreError::Database(format!("verification task failed: {e}"))
}

/// Mismatching entries kept in memory to tell a swap from an edit.
const KEEP_MISMATCHED: usize = 10_000;

/// One difference between the ledger and what was recorded or signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The recomputed leaf hash differs from the recorded one.
    Edited {
        /// The entry.
        index: u64,
    },
    /// The row no longer reads as an audit event.
    Unreadable {
        /// The entry.
        index: u64,
        /// The store's complaint.
        reason: String,
    },
    /// Two entries hold each other's contents.
    Swapped {
        /// The first of the two.
        index: u64,
        /// The other one.
        other: u64,
    },
    /// The entry holds what was appended at another index.
    Reordered {
        /// The entry.
        index: u64,
        /// Where its contents belong.
        belongs: u64,
    },
    /// Entries `index..index + count` are absent.
    Missing {
        /// The first absent entry.
        index: u64,
        /// How many in a row.
        count: u64,
    },
    /// No leaf hash was found for the entry.
    NoRecordedLeaf {
        /// The entry.
        index: u64,
    },
    /// The tail of the log is gone.
    Truncated {
        /// What promised more entries (a checkpoint or the ledger head).
        covered_by: Coverer,
        /// How many entries it covers.
        covers: u64,
        /// How many remain.
        remain: u64,
    },
    /// The checkpoint's signature does not verify.
    BadSignature {
        /// Checkpoint size.
        size: u64,
        /// Why.
        reason: String,
    },
    /// The stored size or root columns differ from the signed note.
    NoteMismatch {
        /// Checkpoint size (column).
        size: u64,
    },
    /// The recomputed root at the checkpoint's size differs.
    RootDiffers {
        /// Checkpoint size.
        size: u64,
        /// The largest smaller checkpoint whose root matched.
        after: Option<u64>,
    },
    /// A checkpoint saved outside the database (an auditor's file, the
    /// gateway's witness file) has another root than the log at its size.
    SavedDiffers {
        /// Where it was saved.
        label: String,
        /// Its size.
        size: u64,
    },
    /// The log is shorter than a checkpoint saved outside the database.
    SavedBeyond {
        /// Where it was saved.
        label: String,
        /// Its size.
        size: u64,
        /// How many entries remain.
        remain: u64,
    },
    /// No checkpoint signed by the pinned key covers any entry.
    Unsigned {
        /// Entries in the log.
        entries: u64,
    },
    /// A checkpoint saved outside the database is not signed by the key.
    SavedUnverified {
        /// Where it was saved.
        label: String,
        /// Why.
        reason: String,
    },
}

/// A checkpoint saved outside the database, to prove the log consistent with.
#[derive(Debug, Clone)]
pub struct Saved {
    /// Where it came from, for messages.
    pub label: String,
    /// The verified checkpoint.
    pub checkpoint: Checkpoint,
}

/// What claims the log is longer than it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coverer {
    /// A signed checkpoint of that size.
    Checkpoint,
    /// The store's next-index counter.
    Head,
}

impl Problem {
    /// Where in the log the problem is: entry `i` sorts at `2i + 1`, a
    /// checkpoint (or the end) of size `s` at `2s`, between entries
    /// `s - 1` and `s`.
    fn position(&self) -> u64 {
        let entry = |i: u64| i.saturating_mul(2).saturating_add(1);
        let size = |s: u64| s.saturating_mul(2);
        match self {
            Problem::Edited { index }
            | Problem::Unreadable { index, .. }
            | Problem::Swapped { index, .. }
            | Problem::Reordered { index, .. }
            | Problem::Missing { index, .. }
            | Problem::NoRecordedLeaf { index } => entry(*index),
            Problem::Truncated { remain, .. } => size(*remain),
            Problem::BadSignature { size: s, .. }
            | Problem::NoteMismatch { size: s }
            | Problem::RootDiffers { size: s, .. }
            | Problem::SavedDiffers { size: s, .. } => size(*s),
            Problem::SavedBeyond { remain, .. } => size(*remain),
            Problem::SavedUnverified { .. } | Problem::Unsigned { .. } => u64::MAX,
        }
    }

    /// Whether the problem is only a consequence of an earlier one (a root
    /// that differs because an entry before it differs).
    fn is_consequence(&self) -> bool {
        matches!(self, Problem::RootDiffers { .. })
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Edited { index } => write!(
                f,
                "entry {index} was edited (leaf hash differs from the one recorded at append time)"
            ),
            Problem::Unreadable { index, reason } => write!(
                f,
                "entry {index} was edited (the stored row is not a valid audit event: {reason})"
            ),
            Problem::Swapped { index, other } => {
                write!(f, "entries {index} and {other} were swapped")
            }
            Problem::Reordered { index, belongs } => write!(
                f,
                "entry {index} holds what belongs at index {belongs} (reordered)"
            ),
            Problem::Missing { index, count: 1 } => write!(f, "entry {index} is missing"),
            Problem::Missing { index, count } => write!(
                f,
                "entry {index} is missing (entries {index} to {} are missing)",
                index + count - 1
            ),
            Problem::NoRecordedLeaf { index } => write!(
                f,
                "entry {index} has no leaf hash recorded at append time (ledger node deleted)"
            ),
            Problem::Truncated {
                covered_by: Coverer::Checkpoint,
                covers,
                remain,
            } => write!(
                f,
                "ledger truncated: checkpoint {covers} covers {covers} entries but only {remain} remain"
            ),
            Problem::Truncated {
                covered_by: Coverer::Head,
                covers,
                remain,
            } => write!(
                f,
                "ledger truncated: the ledger head counts {covers} entries but only {remain} remain"
            ),
            Problem::BadSignature { size, reason } => {
                write!(f, "checkpoint {size} has a bad signature ({reason})")
            }
            Problem::NoteMismatch { size } => write!(
                f,
                "checkpoint {size} does not match its signed note (stored size or root differs)"
            ),
            Problem::SavedDiffers { label, size } => write!(
                f,
                "the log is not consistent with {label} (checkpoint {size}): the first {size} \
                 entries have another root now, so history was rewritten"
            ),
            Problem::SavedBeyond {
                label,
                size,
                remain,
            } => write!(
                f,
                "ledger truncated: {label} covers {size} entries but only {remain} remain"
            ),
            Problem::Unsigned { entries } => write!(
                f,
                "no checkpoint signed by the pinned key covers any of the {entries} entries: the \
                 signed checkpoints were deleted, or this log was never signed by that key"
            ),
            Problem::SavedUnverified { label, reason } => write!(
                f,
                "{label} does not verify with this key ({reason}): the ledger key was replaced, \
                 or the file belongs to another log"
            ),
            Problem::RootDiffers { size, after } => {
                write!(f, "checkpoint {size} does not match the entries (root differs")?;
                match after {
                    Some(a) => write!(f, "; an entry from {a} to {} differs)", size - 1),
                    None if *size > 0 => write!(f, "; an entry from 0 to {} differs)", size - 1),
                    None => write!(f, ")"),
                }
            }
        }
    }
}

/// What a replay found.
#[derive(Debug)]
pub struct Outcome {
    /// Entries replayed (present rows).
    pub entries: u64,
    /// Tree size reached.
    pub size: u64,
    /// Checkpoints whose signature and root were checked.
    pub checkpoints: u64,
    /// The largest checkpoint that verified.
    pub latest: Option<Checkpoint>,
    /// Wall time of the replay.
    pub elapsed: Duration,
    /// Every difference, first (in log order) first.
    pub problems: Vec<Problem>,
}

impl Outcome {
    /// Entries per second.
    pub fn rate(&self) -> f64 {
        self.entries as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The problems worth listing: the first, then those that are not mere
    /// consequences of an earlier one.
    pub fn notable(&self) -> Vec<&Problem> {
        let mut out: Vec<&Problem> = self.problems.iter().take(1).collect();
        out.extend(self.problems.iter().skip(1).filter(|p| !p.is_consequence()));
        out
    }
}

/// Progress callback: called with the tree size reached and the size to reach.
pub type Progress<'a> = &'a (dyn Fn(u64, u64) + Sync);

/// One window `[start, end)` of rows, scanned and hashed.
struct Window {
    start: u64,
    end: u64,
    /// Entries whose fast leaf bytes hash to the recorded leaf, by index.
    confirmed: Vec<(u64, Hash)>,
    /// Entries read the slow way (not confirmed by the fast bytes), by index.
    events: Vec<AuditEvent>,
    /// Rows that do not decode.
    unreadable: Vec<(u64, String)>,
    /// Recorded leaf hashes.
    leaves: Vec<(u64, Hash)>,
    /// Checkpoints with sizes in this window's range (see [`fetch_window`]).
    checkpoints: Vec<StoredCheckpoint>,
}

/// The replay state, moved to the blocking thread and back per window.
struct Replay {
    verifier: Verifier,
    frontier: Frontier,
    entries: u64,
    checkpoints_checked: u64,
    latest: Option<Checkpoint>,
    last_good_checkpoint: Option<u64>,
    problems: Vec<Problem>,
    /// Mismatching entries `(event, recorded leaf)` by index.
    mismatched: BTreeMap<u64, (AuditEvent, Option<Hash>)>,
    /// Open run of missing entries.
    missing_run: Option<(u64, u64)>,
    /// Checkpoints saved outside the database, smallest first, not yet reached.
    saved: VecDeque<Saved>,
}

impl Replay {
    fn close_missing_run(&mut self) {
        if let Some((index, count)) = self.missing_run.take() {
            self.problems.push(Problem::Missing { index, count });
        }
    }

    fn check_checkpoint(&mut self, cp: &StoredCheckpoint, at_size: bool) {
        let signed = match self.verifier.verify_note(&cp.note) {
            Ok(c) => c,
            Err(e) => {
                self.problems.push(Problem::BadSignature {
                    size: cp.size,
                    reason: e.to_string(),
                });
                return;
            }
        };
        if signed.size != cp.size || signed.root != cp.root {
            self.problems.push(Problem::NoteMismatch { size: cp.size });
            return;
        }
        if !at_size {
            return;
        }
        self.checkpoints_checked += 1;
        if self.frontier.root() == signed.root {
            self.last_good_checkpoint = Some(signed.size);
            self.latest = Some(signed);
        } else {
            self.problems.push(Problem::RootDiffers {
                size: cp.size,
                after: self.last_good_checkpoint,
            });
        }
    }

    /// Compares the saved checkpoints of the current tree size with its root.
    fn check_saved(&mut self) {
        let size = self.frontier.size();
        while self
            .saved
            .front()
            .is_some_and(|s| s.checkpoint.size == size)
        {
            if let Some(s) = self.saved.pop_front() {
                if self.frontier.root() != s.checkpoint.root {
                    self.problems.push(Problem::SavedDiffers {
                        label: s.label,
                        size,
                    });
                }
            }
        }
    }

    /// Checks and appends every entry of `w`; checkpoints are checked when
    /// the tree reaches their size.
    fn process(&mut self, w: Window) {
        let mut cps: VecDeque<StoredCheckpoint> = w.checkpoints.into();
        let mut confirmed = w.confirmed.into_iter().peekable();
        let mut events = w.events.into_iter().peekable();
        let mut unreadable = w.unreadable.into_iter().peekable();
        let mut leaves = w.leaves.into_iter().peekable();
        for index in w.start..w.end {
            self.check_saved();
            while cps.front().is_some_and(|c| c.size == index) {
                if let Some(cp) = cps.pop_front() {
                    self.check_checkpoint(&cp, true);
                }
            }
            while leaves.peek().is_some_and(|(i, _)| *i < index) {
                leaves.next();
            }
            let recorded = leaves.next_if(|(i, _)| *i == index).map(|(_, h)| h);
            if let Some((_, hash)) = confirmed.next_if(|(i, _)| *i == index) {
                self.close_missing_run();
                self.entries += 1;
                self.frontier.append(hash);
                continue;
            }
            while events.peek().is_some_and(|e| e.index < Some(index)) {
                events.next();
            }
            if let Some(event) = events.next_if(|e| e.index == Some(index)) {
                self.close_missing_run();
                self.entries += 1;
                let hash = merkle::leaf_hash(&leaf::encode(&event));
                match recorded {
                    Some(r) if r == hash => {}
                    _ => {
                        if recorded.is_none() {
                            self.problems.push(Problem::NoRecordedLeaf { index });
                        }
                        if self.mismatched.len() < KEEP_MISMATCHED {
                            self.mismatched.insert(index, (event, recorded));
                        } else if recorded.is_some() {
                            self.problems.push(Problem::Edited { index });
                        }
                    }
                }
                self.frontier.append(hash);
                continue;
            }
            if let Some((_, reason)) = unreadable.next_if(|(i, _)| *i == index) {
                self.close_missing_run();
                self.entries += 1;
                self.problems.push(Problem::Unreadable { index, reason });
            } else {
                match &mut self.missing_run {
                    Some((start, count)) if *start + *count == index => *count += 1,
                    _ => {
                        self.close_missing_run();
                        self.missing_run = Some((index, 1));
                    }
                }
            }
            // Keep the tree going with the recorded hash, so later
            // checkpoints still say whether the rest is intact.
            self.frontier.append(recorded.unwrap_or([0; 32]));
        }
        while cps.front().is_some_and(|c| c.size == w.end) {
            if let Some(cp) = cps.pop_front() {
                self.check_checkpoint(&cp, true);
            }
        }
        self.check_saved();
    }

    /// Tells swaps and moves from edits among the mismatching entries.
    fn classify_mismatches(&mut self) {
        let hash_at = |event: &AuditEvent, index: u64| {
            let mut e = event.clone();
            e.index = Some(index);
            merkle::leaf_hash(&leaf::encode(&e))
        };
        let indexes: Vec<u64> = self.mismatched.keys().copied().collect();
        let mut explained: BTreeMap<u64, Problem> = BTreeMap::new();
        for &i in &indexes {
            if explained.contains_key(&i) {
                continue;
            }
            let Some((event_i, recorded_i)) = self.mismatched.get(&i) else {
                continue;
            };
            let Some(recorded_i) = *recorded_i else {
                continue;
            };
            let mut found = None;
            for &j in indexes.iter().filter(|&&j| j != i) {
                let Some((event_j, Some(recorded_j))) = self.mismatched.get(&j) else {
                    continue;
                };
                if hash_at(event_i, j) == *recorded_j {
                    let swapped = hash_at(event_j, i) == recorded_i;
                    found = Some((j, swapped));
                    break;
                }
            }
            match found {
                Some((j, true)) => {
                    let (a, b) = (i.min(j), i.max(j));
                    explained.insert(a, Problem::Swapped { index: a, other: b });
                    explained.insert(b, Problem::Swapped { index: b, other: a });
                }
                Some((j, false)) => {
                    explained.insert(
                        i,
                        Problem::Reordered {
                            index: i,
                            belongs: j,
                        },
                    );
                }
                None => {
                    explained.insert(i, Problem::Edited { index: i });
                }
            }
        }
        // A swap is reported once, at its first index.
        let mut seen_swaps = std::collections::HashSet::new();
        for (_, p) in explained {
            if let Problem::Swapped { index, other } = p {
                if !seen_swaps.insert((index.min(other), index.max(other))) {
                    continue;
                }
                self.problems.push(Problem::Swapped {
                    index: index.min(other),
                    other: index.max(other),
                });
            } else {
                self.problems.push(p);
            }
        }
    }
}

/// Scans `[start, end)`, compares the fast leaf hashes with the recorded
/// ones, reads every entry they do not confirm the slow way, and fetches
/// the checkpoints whose size falls in the window (`[0, end]` for the first
/// window, `(start, end]` after).
async fn fetch_window(
    store: Arc<dyn Store>,
    spare: Spare,
    start: u64,
    end: u64,
) -> Result<Window, StoreError> {
    let (scans, checkpoints) = tokio::join!(
        scan_range(&store, &spare, start, end),
        fetch_checkpoints(&store, if start == 0 { 0 } else { start + 1 }, end),
    );
    let scans = scans?;
    let (confirmed, leaves, unconfirmed) = confirm(&scans);
    if let Ok(mut spare) = spare.lock() {
        spare.extend(scans);
    }
    let mut events = Vec::new();
    let mut unreadable = Vec::new();
    for (from, to) in runs(&unconfirmed) {
        let (mut e, mut u) = fetch_events(&store, from, to).await?;
        events.append(&mut e);
        unreadable.append(&mut u);
    }
    Ok(Window {
        start,
        end,
        confirmed,
        events,
        unreadable,
        leaves,
        checkpoints: checkpoints?,
    })
}

/// Scans done with, kept so that each window's entry and leaf vectors
/// (about 3 MB) are allocated and paged in once, not per window.
type Spare = Arc<std::sync::Mutex<Vec<LedgerScan>>>;

/// All of `[start, end)`, in as many scans as the store's cap needs.
async fn scan_range(
    store: &Arc<dyn Store>,
    spare: &Spare,
    start: u64,
    end: u64,
) -> Result<Vec<LedgerScan>, StoreError> {
    let mut out = Vec::new();
    let mut from = start;
    while from < end {
        let mut scan = spare
            .lock()
            .ok()
            .and_then(|mut s| s.pop())
            .unwrap_or_default();
        store.scan_ledger(from, end, &mut scan).await?;
        from = scan.to.max(from + 1);
        out.push(scan);
    }
    Ok(out)
}

/// Sorts scanned entries into `(confirmed, recorded leaves, unconfirmed
/// indexes)`. An entry is confirmed only when its fast leaf hash equals the
/// leaf recorded at its index.
type Confirmed = (Vec<(u64, Hash)>, Vec<(u64, Hash)>, Vec<u64>);

fn confirm(scans: &[LedgerScan]) -> Confirmed {
    let mut confirmed = Vec::new();
    let mut unconfirmed = Vec::new();
    let mut leaves = Vec::new();
    for scan in scans {
        let mut recorded = scan.recorded.iter().peekable();
        for entry in &scan.entries {
            while recorded.peek().is_some_and(|(i, _)| *i < entry.index) {
                recorded.next();
            }
            let want = recorded
                .next_if(|(i, _)| *i == entry.index)
                .map(|(_, h)| *h);
            match (entry.leaf_hash, want) {
                (Some(h), Some(w)) if h == w => confirmed.push((entry.index, h)),
                _ => unconfirmed.push(entry.index),
            }
        }
        leaves.extend_from_slice(&scan.recorded);
    }
    (confirmed, leaves, unconfirmed)
}

/// Sorted indexes as half-open runs of consecutive ones.
fn runs(indexes: &[u64]) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for &i in indexes {
        match out.last_mut() {
            Some((_, end)) if *end == i => *end = i + 1,
            _ => out.push((i, i + 1)),
        }
    }
    out
}

/// The readable events of `[start, end)`, and the index and error of each
/// row that does not read (found by bisecting a failing page).
async fn fetch_events(
    store: &Arc<dyn Store>,
    start: u64,
    end: u64,
) -> Result<(Vec<AuditEvent>, Vec<(u64, String)>), StoreError> {
    let mut out = Vec::new();
    let mut bad = Vec::new();
    let mut from = start;
    while from < end {
        let want = usize::try_from(end - from).unwrap_or(usize::MAX);
        match store.events(from, want).await {
            Ok(page) => {
                let done = page.len() < want.min(PAGE as usize);
                let last = page.last().and_then(|e| e.index);
                out.extend(page.into_iter().filter(|e| e.index < Some(end)));
                match last {
                    Some(l) if !done => from = l + 1,
                    _ => break,
                }
            }
            Err(StoreError::Corrupt(reason)) => {
                // Smallest prefix that fails: its last row is the bad one.
                let (mut lo, mut hi) = (1usize, want);
                let mut good: Vec<AuditEvent> = Vec::new();
                while lo < hi {
                    let mid = lo + (hi - lo) / 2;
                    match store.events(from, mid).await {
                        Ok(page) => {
                            good = page;
                            lo = mid + 1;
                        }
                        Err(StoreError::Corrupt(_)) => hi = mid,
                        Err(e) => return Err(e),
                    }
                }
                if good.len() + 1 != lo {
                    good = if lo > 1 {
                        store.events(from, lo - 1).await?
                    } else {
                        Vec::new()
                    };
                }
                let index = good.last().and_then(|e| e.index).map_or(from, |i| i + 1);
                out.extend(good);
                let reason = match reason.split_once(": ") {
                    Some((head, rest)) if head.starts_with("event ") => rest.to_owned(),
                    _ => reason,
                };
                bad.push((index, reason));
                from = index + 1;
            }
            Err(e) => return Err(e),
        }
    }
    Ok((out, bad))
}

/// Checkpoints with `from <= size <= to`, smallest first.
async fn fetch_checkpoints(
    store: &Arc<dyn Store>,
    from: u64,
    to: u64,
) -> Result<Vec<StoredCheckpoint>, StoreError> {
    const BATCH: usize = 1000;
    let mut out = Vec::new();
    let mut next = from;
    loop {
        let page = store.checkpoints(next, BATCH).await?;
        let full = page.len() == BATCH;
        let mut beyond = false;
        for cp in page {
            if cp.size > to {
                beyond = true;
                break;
            }
            next = cp.size + 1;
            out.push(cp);
        }
        if beyond || !full {
            return Ok(out);
        }
    }
}

/// Replays the whole ledger in `store` against checkpoints signed by
/// `verifier`. `Err` only when the database cannot be read; differences
/// are in [`Outcome::problems`].
pub async fn replay(
    store: Arc<dyn Store>,
    verifier: Verifier,
    mut saved: Vec<Saved>,
    progress: Progress<'_>,
) -> Result<Outcome, StoreError> {
    saved.sort_by_key(|s| s.checkpoint.size);
    let started = Instant::now();
    // The log as of now: entries appended while we read are not checked.
    let head = store.event_count().await?;
    let latest_cp = store.latest_checkpoint().await?;
    let target = head.max(latest_cp.as_ref().map_or(0, |c| c.size));

    let mut state = Replay {
        verifier,
        frontier: Frontier::new(),
        entries: 0,
        checkpoints_checked: 0,
        latest: None,
        last_good_checkpoint: None,
        problems: Vec::new(),
        mismatched: BTreeMap::new(),
        missing_run: None,
        saved: saved.into(),
    };
    state.check_saved();
    let window_end = |start: u64| start.saturating_add(WINDOW).min(target);
    if target == 0 {
        // An empty log can still have a checkpoint of size 0.
        for cp in fetch_checkpoints(&store, 0, 0).await? {
            state.check_checkpoint(&cp, true);
        }
    }
    // Windows are scanned ahead (each on its own connection, the SQLite
    // scan on a blocking thread) while the current one is appended.
    let mut next_start = 0u64;
    let mut inflight = VecDeque::new();
    let spare = Spare::default();
    let mut fetch_more = |inflight: &mut VecDeque<_>| {
        while inflight.len() < FETCH_AHEAD && next_start < target {
            let end = window_end(next_start);
            inflight.push_back(tokio::spawn(fetch_window(
                store.clone(),
                spare.clone(),
                next_start,
                end,
            )));
            next_start = end;
        }
    };
    fetch_more(&mut inflight);
    while let Some(task) = inflight.pop_front() {
        let window = task.await.map_err(task_failed)??;
        fetch_more(&mut inflight);
        state = tokio::task::spawn_blocking(move || {
            let mut state = state;
            state.process(window);
            state
        })
        .await
        .map_err(task_failed)?;
        progress(state.frontier.size(), target);
    }

    // A run of missing entries that reaches the end is a truncated tail.
    if let Some((start, count)) = state.missing_run.take() {
        if start + count == target {
            let (covered_by, covers) = match &latest_cp {
                Some(cp) if cp.size > start => (Coverer::Checkpoint, cp.size),
                _ => (Coverer::Head, head),
            };
            state.problems.push(Problem::Truncated {
                covered_by,
                covers,
                remain: start,
            });
            // Checkpoints beyond what remains can only have their signature checked.
            for cp in fetch_checkpoints(&store, start + 1, target).await? {
                state.check_checkpoint(&cp, false);
            }
        } else {
            state.missing_run = Some((start, count));
            state.close_missing_run();
        }
    }
    // Saved checkpoints beyond the end of the log.
    let remain = state.frontier.size();
    while let Some(s) = state.saved.pop_front() {
        state.problems.push(Problem::SavedBeyond {
            label: s.label,
            size: s.checkpoint.size,
            remain: remain.min(state.entries),
        });
    }
    state.classify_mismatches();
    let mut problems = state.problems;
    problems.sort_by_key(Problem::position);
    problems.dedup();
    Ok(Outcome {
        entries: state.entries,
        size: state.frontier.size(),
        checkpoints: state.checkpoints_checked,
        latest: state.latest,
        elapsed: started.elapsed(),
        problems,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_sort_by_log_position() {
        let mut ps = [
            Problem::RootDiffers {
                size: 42,
                after: Some(40),
            },
            Problem::Edited { index: 41 },
            Problem::Truncated {
                covered_by: Coverer::Checkpoint,
                covers: 120,
                remain: 117,
            },
            Problem::BadSignature {
                size: 80,
                reason: "x".into(),
            },
        ];
        ps.sort_by_key(Problem::position);
        assert_eq!(ps[0], Problem::Edited { index: 41 });
        assert!(matches!(ps[1], Problem::RootDiffers { size: 42, .. }));
        assert!(matches!(ps[2], Problem::BadSignature { size: 80, .. }));
        assert!(matches!(ps[3], Problem::Truncated { .. }));
        // a checkpoint of size 41 is checked after entry 40, before entry 41
        let cp = Problem::BadSignature {
            size: 41,
            reason: "x".into(),
        };
        assert!(cp.position() < Problem::Edited { index: 41 }.position());
        assert!(cp.position() > Problem::Edited { index: 40 }.position());
    }

    #[test]
    fn messages() {
        assert_eq!(
            Problem::Edited { index: 41 }.to_string(),
            "entry 41 was edited (leaf hash differs from the one recorded at append time)"
        );
        assert_eq!(
            Problem::Missing {
                index: 41,
                count: 1
            }
            .to_string(),
            "entry 41 is missing"
        );
        assert_eq!(
            Problem::Swapped {
                index: 41,
                other: 57
            }
            .to_string(),
            "entries 41 and 57 were swapped"
        );
        assert_eq!(
            Problem::Reordered {
                index: 41,
                belongs: 57
            }
            .to_string(),
            "entry 41 holds what belongs at index 57 (reordered)"
        );
        assert_eq!(
            Problem::Truncated {
                covered_by: Coverer::Checkpoint,
                covers: 120,
                remain: 117
            }
            .to_string(),
            "ledger truncated: checkpoint 120 covers 120 entries but only 117 remain"
        );
        assert!(Problem::BadSignature {
            size: 80,
            reason: "r".into()
        }
        .to_string()
        .starts_with("checkpoint 80 has a bad signature"));
        assert!(Problem::RootDiffers {
            size: 80,
            after: Some(40)
        }
        .to_string()
        .starts_with("checkpoint 80 does not match the entries (root differs"));
    }
}
