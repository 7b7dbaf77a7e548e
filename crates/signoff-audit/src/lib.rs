//! signoff's audit logic, usable by the CLI (offline, against a database
//! or a bundle), the server (for auditors over the API) and the engine's
//! scheduled self-check:
//!
//! - [`verify`]: replays a ledger from any [`verify::LedgerSource`] against
//!   its signed checkpoints, with typed [`verify::Finding`]s;
//! - [`report`]: the population of privileged actions of a period, built
//!   from the ledger's events and reconciled with the requests table, and
//!   its renderings (HTML, CSV, JSON);
//! - [`period`]: the periods auditors type (`2026-12-02`, `30d`, RFC 3339).
//!
//! It depends on the core and the ledger only: reading the store is the
//! caller's business.

pub mod period;
pub mod report;
pub mod verify;

pub use verify::{Finding, LedgerSource, SourceError, Verification, VerificationSummary};
