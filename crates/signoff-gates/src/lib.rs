//! signoff's enforcement points.
//!
//! A gate turns a protocol into action requests and **fails closed**: if the
//! gateway cannot be reached, answers with an error, or the approval cannot
//! be claimed for exactly the action about to run, the action does not run.
//!
//! Every gate runs the same [`session::Session`] (submit → wait → claim with
//! the digest the gate computed → run → report) and talks to the gateway
//! only through [`signoff_client::Client`], never to the store. A new gate
//! implements [`session::GateAction`] for what it guards and maps
//! [`session::SessionEnd`] to its protocol's answer; [`exec`] is the
//! reference.

pub mod binding;
pub mod exec;
pub mod session;

/// Exit status when the action was denied, cancelled, or its claim was
/// refused: `EX_NOPERM`.
pub const EXIT_DENIED: i32 = 77;
/// Exit status when the request expired, the wait ran out or the gateway was
/// unavailable: `EX_TEMPFAIL`.
pub const EXIT_TEMPFAIL: i32 = 75;
/// Exit status for what the caller must fix (bad flags, malformed input,
/// missing or invalid credentials, an unknown request id).
pub const EXIT_USAGE: i32 = 2;
/// Exit status after an interrupt (ctrl-c) while waiting: 128 + SIGINT.
pub const EXIT_INTERRUPTED: i32 = 130;
