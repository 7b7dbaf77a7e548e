//! The tamper-evident ledger of signoff.
//!
//! Every audit event becomes one leaf of an append-only RFC 6962 Merkle tree
//! ([`leaf`], [`merkle`]). The log commits to its state with Ed25519-signed
//! C2SP checkpoints ([`note`]); inclusion proofs travel in the C2SP
//! `tlog-proof` text format ([`proof_format`]); a period of the log can be
//! exported as an offline evidence [`bundle`] and a whole log can be replayed
//! with [`verify::LogVerifier`].
//!
//! The crate does no I/O except in [`bundle`], which reads and writes the
//! bundle directory.

pub mod bundle;
pub mod leaf;
pub mod merkle;
pub mod note;
pub mod proof_format;
pub mod verify;

pub use merkle::Hash;
