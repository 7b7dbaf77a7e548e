//! Replaying a whole log: every leaf, in order, against a checkpoint.

use crate::leaf::{self, LeafError};
use crate::merkle::{self, Frontier, Hash};
use crate::note::Checkpoint;
use thiserror::Error;

/// Why a replayed log is not the one the checkpoint commits to.
#[derive(Debug, Error)]
pub enum VerifyError {
    /// Leaves must arrive densely from the verifier's start.
    #[error("expected entry {expected}, got entry {got} (entries missing or out of order)")]
    OutOfOrder {
        /// The next index the verifier needs.
        expected: u64,
        /// The index given.
        got: u64,
    },
    /// The leaf bytes are not a valid event.
    #[error("entry {index} does not decode: {source}")]
    Leaf {
        /// The entry.
        index: u64,
        /// What is wrong.
        source: LeafError,
    },
    /// The event inside the leaf names another position.
    #[error("entry {index} carries index {found:?}")]
    IndexMismatch {
        /// The position in the log.
        index: u64,
        /// The index written in the event.
        found: Option<u64>,
    },
    /// The checkpoint is for another size.
    #[error("checkpoint size {checkpoint} differs from the {verified} entries verified")]
    SizeMismatch {
        /// Size in the checkpoint.
        checkpoint: u64,
        /// Entries pushed so far.
        verified: u64,
    },
    /// Same size, different root: some entry differs from what was signed.
    #[error("checkpoint root for size {size} differs from the root of the entries")]
    RootMismatch {
        /// The size.
        size: u64,
    },
}

/// Streams a log's leaves in index order, checking continuity and leaf
/// validity and maintaining the Merkle root, so that a checkpoint can be
/// checked at the current size.
#[derive(Debug, Clone, Default)]
pub struct LogVerifier {
    frontier: Frontier,
}

impl LogVerifier {
    /// A verifier for a log starting at entry 0.
    pub fn new() -> Self {
        LogVerifier::default()
    }

    /// Continues from a trusted frontier (e.g. one restored from a previous
    /// audit), so only the entries after it need replaying.
    pub fn resume(frontier: Frontier) -> Self {
        LogVerifier { frontier }
    }

    /// Checks and appends entry `index`.
    pub fn push(&mut self, index: u64, leaf_bytes: &[u8]) -> Result<(), VerifyError> {
        let expected = self.frontier.size();
        if index != expected {
            return Err(VerifyError::OutOfOrder {
                expected,
                got: index,
            });
        }
        let event =
            leaf::decode(leaf_bytes).map_err(|source| VerifyError::Leaf { index, source })?;
        if event.index != Some(index) {
            return Err(VerifyError::IndexMismatch {
                index,
                found: event.index,
            });
        }
        self.frontier.append(merkle::leaf_hash(leaf_bytes));
        Ok(())
    }

    /// Entries verified so far.
    pub fn size(&self) -> u64 {
        self.frontier.size()
    }

    /// The root of the entries so far.
    pub fn root(&self) -> Hash {
        self.frontier.root()
    }

    /// The frontier, to persist and [`LogVerifier::resume`] later.
    pub fn frontier(&self) -> &Frontier {
        &self.frontier
    }

    /// Requires `checkpoint` to describe exactly the entries pushed so far.
    /// The caller verifies the checkpoint's signature.
    pub fn check_checkpoint(&self, checkpoint: &Checkpoint) -> Result<(), VerifyError> {
        if checkpoint.size != self.size() {
            return Err(VerifyError::SizeMismatch {
                checkpoint: checkpoint.size,
                verified: self.size(),
            });
        }
        if checkpoint.root != self.root() {
            return Err(VerifyError::RootMismatch {
                size: checkpoint.size,
            });
        }
        Ok(())
    }
}
