//! Ledger verification: replays a live ledger from entry 0.
//!
//! Every event is re-encoded as its leaf and hashed; the hash is compared
//! with the leaf hash the store recorded at append time (level-0 ledger
//! node), indexes must be consecutive, and the tree rebuilt from the
//! recomputed leaves must have the root of every stored, signed checkpoint
//! at its size.
//!
//! Speed comes from [`LedgerSource::scan`], which encodes each row's
//! columns straight into leaf bytes and hashes them. That hash only ever
//! *confirms* a recorded one: an entry it does not confirm is read again as
//! an [`AuditEvent`] and decided by [`leaf::encode`], exactly as if there
//! were no fast path. Several windows are scanned at once (each on a
//! blocking thread); only appending to the tree is sequential.
//!
//! All differences are collected, then ordered by where they occur in the
//! log; the first one is the verdict.

use serde::{Deserialize, Serialize};
use signoff_core::AuditEvent;
use signoff_ledger::leaf;
use signoff_ledger::merkle::{self, Frontier, Hash};
use signoff_ledger::note::{Checkpoint, Verifier};
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why a [`LedgerSource`] could not answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SourceError {
    /// A row does not read as an audit event (it was edited): a finding,
    /// not an outage.
    #[error("{0}")]
    Corrupt(String),
    /// The source could not be read at all.
    #[error("{0}")]
    Unavailable(String),
}

/// A signed checkpoint as the source stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    /// Tree size it commits to.
    pub size: u64,
    /// RFC 6962 root of the first `size` entries (as stored beside the note).
    pub root: Hash,
    /// The C2SP signed note.
    pub note: String,
    /// When it was signed.
    pub created_at: jiff::Timestamp,
}

/// The rows of `[from, to)` as stored, with the leaf hash their columns
/// spell (which may only *confirm* a recorded one).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scan {
    /// End of the range the source covered (exclusive); may stop short of
    /// what was asked, never before `from + 1`.
    pub to: u64,
    /// Every present row: its index and its fast leaf hash, `None` when
    /// the row must be read through [`LedgerSource::events`].
    pub entries: Vec<(u64, Option<Hash>)>,
    /// The leaf hashes recorded at append time, by index.
    pub recorded: Vec<(u64, Hash)>,
}

/// Where a ledger is read from: the store behind the engine, or anything
/// else that keeps the entries, their recorded leaf hashes and the signed
/// checkpoints. The verifier never trusts it: every answer is checked.
#[async_trait::async_trait]
pub trait LedgerSource: Send + Sync + 'static {
    /// The number of entries the log claims to hold (its head).
    async fn event_count(&self) -> Result<u64, SourceError>;
    /// The latest signed checkpoint.
    async fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, SourceError>;
    /// Checkpoints of size `from_size` or more, smallest first, at most `limit`.
    async fn checkpoints(
        &self,
        from_size: u64,
        limit: usize,
    ) -> Result<Vec<StoredCheckpoint>, SourceError>;
    /// Entries from index `from`, at most `limit` (the source may cap it);
    /// [`SourceError::Corrupt`] when a row in the page does not read.
    async fn events(&self, from: u64, limit: usize) -> Result<Vec<AuditEvent>, SourceError>;
    /// Scans `[from, to)` into `into` (cleared first).
    async fn scan(&self, from: u64, to: u64, into: &mut Scan) -> Result<(), SourceError>;
}

/// Entries fetched per page by [`LedgerSource::events`] (the store's maximum).
pub const PAGE: u64 = 10_000;

/// Entries per window scanned and hashed as one unit.
const WINDOW: u64 = 32_768;

/// Windows being scanned ahead of the one being appended to the tree.
const FETCH_AHEAD: usize = 4;

fn task_failed(e: tokio::task::JoinError) -> SourceError {
    SourceError::Unavailable(format!("verification task failed: {e}"))
}

/// Mismatching entries kept in memory to tell a swap from an edit.
const KEEP_MISMATCHED: usize = 10_000;

/// One difference between the ledger and what was recorded or signed: a
/// typed finding, serialized with its `kind` (snake_case) for tools.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Finding {
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Coverer {
    /// A signed checkpoint of that size.
    Checkpoint,
    /// The store's next-index counter.
    Head,
}

impl Finding {
    /// Where in the log the problem is: entry `i` sorts at `2i + 1`, a
    /// checkpoint (or the end) of size `s` at `2s`, between entries
    /// `s - 1` and `s`.
    fn position(&self) -> u64 {
        let entry = |i: u64| i.saturating_mul(2).saturating_add(1);
        let size = |s: u64| s.saturating_mul(2);
        match self {
            Finding::Edited { index }
            | Finding::Unreadable { index, .. }
            | Finding::Swapped { index, .. }
            | Finding::Reordered { index, .. }
            | Finding::Missing { index, .. }
            | Finding::NoRecordedLeaf { index } => entry(*index),
            Finding::Truncated { remain, .. } => size(*remain),
            Finding::BadSignature { size: s, .. }
            | Finding::NoteMismatch { size: s }
            | Finding::RootDiffers { size: s, .. }
            | Finding::SavedDiffers { size: s, .. } => size(*s),
            Finding::SavedBeyond { remain, .. } => size(*remain),
            Finding::SavedUnverified { .. } | Finding::Unsigned { .. } => u64::MAX,
        }
    }

    /// Whether the problem is only a consequence of an earlier one (a root
    /// that differs because an entry before it differs).
    fn is_consequence(&self) -> bool {
        matches!(self, Finding::RootDiffers { .. })
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Finding::Edited { index } => write!(
                f,
                "entry {index} was edited (leaf hash differs from the one recorded at append time)"
            ),
            Finding::Unreadable { index, reason } => write!(
                f,
                "entry {index} was edited (the stored row is not a valid audit event: {reason})"
            ),
            Finding::Swapped { index, other } => {
                write!(f, "entries {index} and {other} were swapped")
            }
            Finding::Reordered { index, belongs } => write!(
                f,
                "entry {index} holds what belongs at index {belongs} (reordered)"
            ),
            Finding::Missing { index, count: 1 } => write!(f, "entry {index} is missing"),
            Finding::Missing { index, count } => write!(
                f,
                "entry {index} is missing (entries {index} to {} are missing)",
                index + count - 1
            ),
            Finding::NoRecordedLeaf { index } => write!(
                f,
                "entry {index} has no leaf hash recorded at append time (ledger node deleted)"
            ),
            Finding::Truncated {
                covered_by: Coverer::Checkpoint,
                covers,
                remain,
            } => write!(
                f,
                "ledger truncated: checkpoint {covers} covers {covers} entries but only {remain} remain"
            ),
            Finding::Truncated {
                covered_by: Coverer::Head,
                covers,
                remain,
            } => write!(
                f,
                "ledger truncated: the ledger head counts {covers} entries but only {remain} remain"
            ),
            Finding::BadSignature { size, reason } => {
                write!(f, "checkpoint {size} has a bad signature ({reason})")
            }
            Finding::NoteMismatch { size } => write!(
                f,
                "checkpoint {size} does not match its signed note (stored size or root differs)"
            ),
            Finding::SavedDiffers { label, size } => write!(
                f,
                "the log is not consistent with {label} (checkpoint {size}): the first {size} \
                 entries have another root now, so history was rewritten"
            ),
            Finding::SavedBeyond {
                label,
                size,
                remain,
            } => write!(
                f,
                "ledger truncated: {label} covers {size} entries but only {remain} remain"
            ),
            Finding::Unsigned { entries } => write!(
                f,
                "no checkpoint signed by the pinned key covers any of the {entries} entries: the \
                 signed checkpoints were deleted, or this log was never signed by that key"
            ),
            Finding::SavedUnverified { label, reason } => write!(
                f,
                "{label} does not verify with this key ({reason}): the ledger key was replaced, \
                 or the file belongs to another log"
            ),
            Finding::RootDiffers { size, after } => {
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
pub struct Verification {
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
    pub findings: Vec<Finding>,
}

impl Verification {
    /// Entries per second.
    pub fn rate(&self) -> f64 {
        self.entries as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The problems worth listing: the first, then those that are not mere
    /// consequences of an earlier one.
    pub fn notable(&self) -> Vec<&Finding> {
        let mut out: Vec<&Finding> = self.findings.iter().take(1).collect();
        out.extend(self.findings.iter().skip(1).filter(|p| !p.is_consequence()));
        out
    }
}

/// What a verification found, as the API answers it and an audit event
/// records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerificationSummary {
    /// Entries replayed.
    pub entries: u64,
    /// Tree size reached.
    pub size: u64,
    /// Checkpoints whose signature and root were checked.
    pub checkpoints: u64,
    /// Size of the largest checkpoint that verified.
    pub latest_size: Option<u64>,
    /// Base64 root of that checkpoint.
    pub latest_root: Option<String>,
    /// Origin line of that checkpoint.
    pub origin: Option<String>,
    /// Wall time of the replay, in milliseconds.
    pub elapsed_ms: u64,
    /// Every finding, in log order; empty when the ledger verified.
    pub findings: Vec<Finding>,
}

impl VerificationSummary {
    /// Whether nothing was found.
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty()
    }

    /// The findings worth listing: the first, then those that are not mere
    /// consequences of an earlier one.
    pub fn notable(&self) -> Vec<&Finding> {
        let mut out: Vec<&Finding> = self.findings.iter().take(1).collect();
        out.extend(self.findings.iter().skip(1).filter(|p| !p.is_consequence()));
        out
    }
}

impl Verification {
    /// The serializable summary.
    pub fn summary(&self) -> VerificationSummary {
        use base64::Engine as _;
        VerificationSummary {
            entries: self.entries,
            size: self.size,
            checkpoints: self.checkpoints,
            latest_size: self.latest.as_ref().map(|c| c.size),
            latest_root: self
                .latest
                .as_ref()
                .map(|c| base64::engine::general_purpose::STANDARD.encode(c.root)),
            origin: self.latest.as_ref().map(|c| c.origin.clone()),
            elapsed_ms: u64::try_from(self.elapsed.as_millis()).unwrap_or(u64::MAX),
            findings: self.findings.clone(),
        }
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
    problems: Vec<Finding>,
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
            self.problems.push(Finding::Missing { index, count });
        }
    }

    fn check_checkpoint(&mut self, cp: &StoredCheckpoint, at_size: bool) {
        let signed = match self.verifier.verify_note(&cp.note) {
            Ok(c) => c,
            Err(e) => {
                self.problems.push(Finding::BadSignature {
                    size: cp.size,
                    reason: e.to_string(),
                });
                return;
            }
        };
        if signed.size != cp.size || signed.root != cp.root {
            self.problems.push(Finding::NoteMismatch { size: cp.size });
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
            self.problems.push(Finding::RootDiffers {
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
                    self.problems.push(Finding::SavedDiffers {
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
                            self.problems.push(Finding::NoRecordedLeaf { index });
                        }
                        if self.mismatched.len() < KEEP_MISMATCHED {
                            self.mismatched.insert(index, (event, recorded));
                        } else if recorded.is_some() {
                            self.problems.push(Finding::Edited { index });
                        }
                    }
                }
                self.frontier.append(hash);
                continue;
            }
            if let Some((_, reason)) = unreadable.next_if(|(i, _)| *i == index) {
                self.close_missing_run();
                self.entries += 1;
                self.problems.push(Finding::Unreadable { index, reason });
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
        let mut explained: BTreeMap<u64, Finding> = BTreeMap::new();
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
                    explained.insert(a, Finding::Swapped { index: a, other: b });
                    explained.insert(b, Finding::Swapped { index: b, other: a });
                }
                Some((j, false)) => {
                    explained.insert(
                        i,
                        Finding::Reordered {
                            index: i,
                            belongs: j,
                        },
                    );
                }
                None => {
                    explained.insert(i, Finding::Edited { index: i });
                }
            }
        }
        // A swap is reported once, at its first index.
        let mut seen_swaps = std::collections::HashSet::new();
        for (_, p) in explained {
            if let Finding::Swapped { index, other } = p {
                if !seen_swaps.insert((index.min(other), index.max(other))) {
                    continue;
                }
                self.problems.push(Finding::Swapped {
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
    store: Arc<dyn LedgerSource>,
    spare: Spare,
    start: u64,
    end: u64,
) -> Result<Window, SourceError> {
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
type Spare = Arc<std::sync::Mutex<Vec<Scan>>>;

/// All of `[start, end)`, in as many scans as the store's cap needs.
async fn scan_range(
    store: &Arc<dyn LedgerSource>,
    spare: &Spare,
    start: u64,
    end: u64,
) -> Result<Vec<Scan>, SourceError> {
    let mut out = Vec::new();
    let mut from = start;
    while from < end {
        let mut scan = spare
            .lock()
            .ok()
            .and_then(|mut s| s.pop())
            .unwrap_or_default();
        store.scan(from, end, &mut scan).await?;
        from = scan.to.max(from + 1);
        out.push(scan);
    }
    Ok(out)
}

/// Sorts scanned entries into `(confirmed, recorded leaves, unconfirmed
/// indexes)`. An entry is confirmed only when its fast leaf hash equals the
/// leaf recorded at its index.
type Confirmed = (Vec<(u64, Hash)>, Vec<(u64, Hash)>, Vec<u64>);

fn confirm(scans: &[Scan]) -> Confirmed {
    let mut confirmed = Vec::new();
    let mut unconfirmed = Vec::new();
    let mut leaves = Vec::new();
    for scan in scans {
        let mut recorded = scan.recorded.iter().peekable();
        for entry in &scan.entries {
            let (index, leaf_hash) = *entry;
            while recorded.peek().is_some_and(|(i, _)| *i < index) {
                recorded.next();
            }
            let want = recorded.next_if(|(i, _)| *i == index).map(|(_, h)| *h);
            match (leaf_hash, want) {
                (Some(h), Some(w)) if h == w => confirmed.push((index, h)),
                _ => unconfirmed.push(index),
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
    store: &Arc<dyn LedgerSource>,
    start: u64,
    end: u64,
) -> Result<(Vec<AuditEvent>, Vec<(u64, String)>), SourceError> {
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
            Err(SourceError::Corrupt(reason)) => {
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
                        Err(SourceError::Corrupt(_)) => hi = mid,
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
    store: &Arc<dyn LedgerSource>,
    from: u64,
    to: u64,
) -> Result<Vec<StoredCheckpoint>, SourceError> {
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
/// are in [`Verification::findings`].
pub async fn replay(
    store: Arc<dyn LedgerSource>,
    verifier: Verifier,
    mut saved: Vec<Saved>,
    progress: Progress<'_>,
) -> Result<Verification, SourceError> {
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
            state.problems.push(Finding::Truncated {
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
        state.problems.push(Finding::SavedBeyond {
            label: s.label,
            size: s.checkpoint.size,
            remain: remain.min(state.entries),
        });
    }
    state.classify_mismatches();
    let mut findings = state.problems;
    findings.sort_by_key(Finding::position);
    findings.dedup();
    Ok(Verification {
        entries: state.entries,
        size: state.frontier.size(),
        checkpoints: state.checkpoints_checked,
        latest: state.latest,
        elapsed: started.elapsed(),
        findings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_sort_by_log_position() {
        let mut ps = [
            Finding::RootDiffers {
                size: 42,
                after: Some(40),
            },
            Finding::Edited { index: 41 },
            Finding::Truncated {
                covered_by: Coverer::Checkpoint,
                covers: 120,
                remain: 117,
            },
            Finding::BadSignature {
                size: 80,
                reason: "x".into(),
            },
        ];
        ps.sort_by_key(Finding::position);
        assert_eq!(ps[0], Finding::Edited { index: 41 });
        assert!(matches!(ps[1], Finding::RootDiffers { size: 42, .. }));
        assert!(matches!(ps[2], Finding::BadSignature { size: 80, .. }));
        assert!(matches!(ps[3], Finding::Truncated { .. }));
        // a checkpoint of size 41 is checked after entry 40, before entry 41
        let cp = Finding::BadSignature {
            size: 41,
            reason: "x".into(),
        };
        assert!(cp.position() < Finding::Edited { index: 41 }.position());
        assert!(cp.position() > Finding::Edited { index: 40 }.position());
    }

    #[test]
    fn messages() {
        assert_eq!(
            Finding::Edited { index: 41 }.to_string(),
            "entry 41 was edited (leaf hash differs from the one recorded at append time)"
        );
        assert_eq!(
            Finding::Missing {
                index: 41,
                count: 1
            }
            .to_string(),
            "entry 41 is missing"
        );
        assert_eq!(
            Finding::Swapped {
                index: 41,
                other: 57
            }
            .to_string(),
            "entries 41 and 57 were swapped"
        );
        assert_eq!(
            Finding::Reordered {
                index: 41,
                belongs: 57
            }
            .to_string(),
            "entry 41 holds what belongs at index 57 (reordered)"
        );
        assert_eq!(
            Finding::Truncated {
                covered_by: Coverer::Checkpoint,
                covers: 120,
                remain: 117
            }
            .to_string(),
            "ledger truncated: checkpoint 120 covers 120 entries but only 117 remain"
        );
        assert!(Finding::BadSignature {
            size: 80,
            reason: "r".into()
        }
        .to_string()
        .starts_with("checkpoint 80 has a bad signature"));
        assert!(Finding::RootDiffers {
            size: 80,
            after: Some(40)
        }
        .to_string()
        .starts_with("checkpoint 80 does not match the entries (root differs"));
    }
}
