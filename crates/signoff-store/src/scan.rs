//! A bulk read of the ledger for verifiers: [`crate::Store::scan_ledger`].
//!
//! A verifier reads every row of the log, so the per-row cost of building an
//! [`signoff_core::AuditEvent`] (a JSON parse of `detail`, a dozen owned
//! strings) dominates everything else. The scan instead turns each row's
//! columns straight into leaf bytes with
//! [`signoff_ledger::leaf::encode_columns`] and hashes them at once, while
//! they are still in the cache. That hash may only *confirm* the recorded
//! leaf hash; a row whose hash does not is read again through
//! [`crate::Store::events`] and decided by `leaf::encode`.

use signoff_ledger::leaf::{self, LeafColumns};
use signoff_ledger::merkle;

/// Most entries one [`crate::Store::scan_ledger`] call returns.
pub const MAX_SCAN: u64 = 65_536;

/// The ledger entries of `[from, to)` as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LedgerScan {
    /// First index asked for.
    pub from: u64,
    /// End of the range asked for (exclusive), after capping at [`MAX_SCAN`].
    pub to: u64,
    /// Every present row, by index. Absent indexes are simply not listed.
    pub entries: Vec<ScannedEntry>,
    /// The leaf hashes recorded at append time (level-0 ledger nodes) in
    /// the range, by index.
    pub recorded: Vec<(u64, [u8; 32])>,
    /// Where one row's leaf bytes are written before hashing.
    scratch: Vec<u8>,
}

/// One row of a [`LedgerScan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScannedEntry {
    /// The row's index.
    pub index: u64,
    /// The Merkle leaf hash of the leaf bytes its columns spell; `None`
    /// when the columns cannot be encoded directly (text that needs escaping
    /// and is not UTF-8, a schema other than this build's, a time out of
    /// range): the row must be read through [`crate::Store::events`].
    pub leaf_hash: Option<[u8; 32]>,
}

impl LedgerScan {
    /// Empties the scan for `[from, to)`, keeping (and growing) its buffers:
    /// a verifier passes the same few scans around, so what they hold is
    /// allocated, and paged in, once.
    pub(crate) fn reset(&mut self, from: u64, to: u64) {
        let n = usize::try_from(to.saturating_sub(from)).unwrap_or(0);
        self.from = from;
        self.to = to;
        self.entries.clear();
        self.entries.reserve(n);
        self.recorded.clear();
        self.recorded.reserve(n);
    }

    /// Appends a row: its index, its `schema` column and its other columns
    /// (`None` when they do not read as text).
    pub(crate) fn push(&mut self, index: u64, schema: i64, columns: Option<LeafColumns<'_>>) {
        self.scratch.clear();
        let leaf_hash = match columns {
            Some(c) if schema == i64::from(signoff_core::AuditEvent::SCHEMA) => {
                leaf::encode_columns(&c, &mut self.scratch)
                    .then(|| merkle::leaf_hash(&self.scratch))
            }
            _ => None,
        };
        self.entries.push(ScannedEntry { index, leaf_hash });
    }
}

/// The range a scan of `[from, to)` covers, capped at [`MAX_SCAN`] entries
/// and at the database's integer range.
pub(crate) fn capped(from: u64, to: u64) -> Option<(i64, i64)> {
    let to = to.min(from.saturating_add(MAX_SCAN));
    let from = i64::try_from(from).ok()?;
    let to = i64::try_from(to).unwrap_or(i64::MAX);
    (from < to).then_some((from, to))
}

pub(crate) const SELECT_SCAN_EVENTS: &str = "SELECT \
    idx, kind, time, actor, request_id, digest, verdict, policy_ids, policy_set_hash, reason, detail, schema \
    FROM audit_events WHERE idx >= $1 AND idx < $2 ORDER BY idx";

/// The [`LeafColumns`] of a [`SELECT_SCAN_EVENTS`] row at `index`, given
/// how to read its text columns (`text`), its nullable ones (`opt_text`,
/// `Some(None)` for NULL) and its time: `None` when one does not read.
pub(crate) fn columns_of_row<'r>(
    index: u64,
    text: impl Fn(usize) -> Option<&'r [u8]>,
    opt_text: impl Fn(usize) -> Option<Option<&'r [u8]>>,
    time_ms: Option<i64>,
) -> Option<LeafColumns<'r>> {
    Some(LeafColumns {
        index,
        kind: text(1)?,
        time_ms: time_ms?,
        actor: text(3)?,
        request_id: opt_text(4)?,
        digest: opt_text(5)?,
        verdict: opt_text(6)?,
        policy_ids_json: text(7)?,
        policy_set_hash: opt_text(8)?,
        reason: opt_text(9)?,
        detail_json: text(10)?,
    })
}

/// Column of [`SELECT_SCAN_EVENTS`] holding the time.
pub(crate) const TIME_COLUMN: usize = 2;
/// Column of [`SELECT_SCAN_EVENTS`] holding the schema version.
pub(crate) const SCHEMA_COLUMN: usize = 11;

pub(crate) const SELECT_SCAN_LEAVES: &str = "SELECT idx, hash FROM ledger_nodes \
    WHERE level = 0 AND idx >= $1 AND idx < $2 ORDER BY idx";

/// A level-0 ledger node row as `(index, hash)`.
pub(crate) fn recorded_leaf(idx: i64, hash: Vec<u8>) -> crate::Result<(u64, [u8; 32])> {
    let hash: [u8; 32] = hash
        .try_into()
        .map_err(|_| crate::StoreError::Corrupt(format!("ledger leaf {idx} is not 32 bytes")))?;
    let idx = u64::try_from(idx)
        .map_err(|_| crate::StoreError::Corrupt(format!("ledger leaf index {idx}")))?;
    Ok((idx, hash))
}
