//! The pure core of signoff: domain types, the action digest, verdicts, the
//! request state machine, the review rules (separation of duties, quorum) and
//! the audit event that every state change appends.
//!
//! Nothing here performs I/O or reads a clock: time is always passed in, so
//! every rule can be tested exhaustively and replayed by an auditor.

pub mod action;
pub mod clock;
pub mod display;
pub mod event;
pub mod facts;
pub mod input;
pub mod jcs;
pub mod principal;
pub mod query;
pub mod quorum;
pub mod request;
pub mod verdict;
pub mod wire;

pub use action::{ActionError, ActionRequest, Digest, PrincipalRef};
pub use clock::{Clock, ManualClock, SystemClock};
pub use event::{AuditEvent, EventKind};
pub use facts::{PrincipalAttributes, RequestFacts, ResourceFacts};
pub use input::{InputError, Lines};
pub use principal::{
    canonical_name, same_principal, Channel, Credential, Identity, Principal, PrincipalKind, Role,
};
pub use query::RequestFilter;
pub use quorum::{GroupQuorum, Requirement, RequirementError};
pub use request::{
    ClaimRefusal, Deadlines, Outcome, Provenance, Provisioned, RequestRecord, RequestStatus,
    Review, ReviewDecision, ReviewRefusal, Reviewer, SelfRelation, Submission, TransitionRefusal,
};
pub use verdict::{Decision, Verdict};
