//! signoff's enforcement points and the one client interface they share.
//!
//! A gate turns a protocol into action requests and **fails closed**: if the
//! gateway cannot be reached, answers with an error, or the approval cannot
//! be claimed for exactly the action about to run, the action does not run.
//! Gates talk to the gateway only through [`client::Client`], never to the
//! store.

pub mod client;
pub mod exec;

pub use client::{Client, ClientError};

/// Exit status when the action was denied (or cancelled): `EX_NOPERM`.
pub const EXIT_DENIED: i32 = 77;
/// Exit status when the request expired, the wait ran out or the gateway was
/// unavailable: `EX_TEMPFAIL`.
pub const EXIT_TEMPFAIL: i32 = 75;
