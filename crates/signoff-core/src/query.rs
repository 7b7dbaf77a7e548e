//! How callers ask for lists of requests. It lives in the core so the
//! server can build a query without knowing the store exists.

use crate::request::RequestStatus;

/// Filters for listing requests; results are newest first.
#[derive(Debug, Clone, Default)]
pub struct RequestFilter {
    /// Only these statuses (any if empty).
    pub statuses: Vec<RequestStatus>,
    /// Only this exact action.
    pub action: Option<String>,
    /// Only this principal (`agent:NAME` / `user:NAME`).
    pub principal: Option<String>,
    /// Only ids lexicographically below this one (ids sort by creation time).
    pub before: Option<String>,
    /// At most this many (the store caps it at 1,000).
    pub limit: usize,
}
