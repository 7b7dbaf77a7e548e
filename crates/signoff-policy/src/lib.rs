//! Cedar policies for signoff: load a directory of `*.cedar` files (and an
//! optional `*.cedarschema`), validate them, index them by action, evaluate an
//! action request into a [`signoff_core::Verdict`], and explain the result.
//!
//! # Entities and context
//!
//! The principal is `Agent::"name"` or `User::"name"`, a member of
//! `Group::"g"` for each of its groups. The action `Action::"db.export"` is a
//! member of each dotted prefix (`Action::"db"`). The resource is
//! `Resource::"…"`. The context holds the request's own keys plus
//! `environment`, `justification`, `on_behalf_of` (empty strings when absent)
//! and `gate`. Context values are plain data: JSON objects become records,
//! never entity references or extension values (Cedar's `__entity` /
//! `__extn` escapes are not interpreted), so a caller cannot smuggle an
//! entity into a policy through the context.
//!
//! # Annotations
//!
//! - `@id("…")` names the policy; otherwise it is `FILE:INDEX` (0-based).
//! - `@approval("sre:2,security")` on a permit: approval is required from
//!   every listed group (count defaults to 1).
//! - `@ttl("30m")` on a permit with `@approval`: how long reviewers have
//!   (`90s`, `30m`, `1h30m`, `2d`).
//! - `@reason("…")`: the human-readable reason put in the verdict.
//!
//! `@approval` or `@ttl` on a `forbid` is a load error, as are malformed
//! values. Other annotations are kept and shown by [`PolicySet::explain`].
//!
//! # Decision rules
//!
//! 1. An evaluation error in a `forbid`, or in a `permit` carrying
//!    `@approval` → **deny**, with the errors (fail closed: Cedar alone would
//!    skip the erroring policy, which could turn a broken `forbid` into an
//!    allow, or a broken approval rule into an allow without approval). A
//!    plain `permit` that errors simply does not apply, as in Cedar: skipping
//!    it can only deny more.
//! 2. A satisfied `forbid` → **deny**, reasons from their `@reason`.
//! 3. Satisfied permits, none with `@approval` → **allow**.
//! 4. Satisfied permits, some with `@approval` → **approval required**: the
//!    union of their requirements (highest count per group), the shortest of
//!    their `@ttl`s. A plain permit satisfied alongside does *not* turn this
//!    into an allow: when policies disagree on how much scrutiny an action
//!    needs, the stricter one wins.
//! 5. Nothing satisfied → **deny** ("no policy permits this action").
//!
//! # Performance
//!
//! Policies are indexed by their action scope; a request is evaluated
//! against only the policies whose scope can match its action (those with an
//! unconstrained action scope always can). The per-action Cedar policy set is
//! cached. Leaving the other policies out cannot change a verdict, because a
//! policy whose scope does not match is neither satisfied nor erroring.

mod annotations;
mod context;
mod diag;
mod eval;
mod explain;
mod index;
mod load;
pub mod testing;

pub use explain::{Effect, Explanation, PolicyStatus, PolicyTrace};

use signoff_core::{ActionRequest, Verdict};
use std::fmt;
use std::path::Path;
use std::sync::Arc;

/// What a policy is evaluated against, besides the request itself.
#[derive(Debug, Clone, Copy)]
pub struct EvalInput<'a> {
    /// The action request (its principal becomes `Agent::"…"`/`User::"…"`).
    pub request: &'a ActionRequest,
    /// The principal's groups (`Group::"…"` parents).
    pub principal_groups: &'a [String],
    /// The gate that submitted the request (`context.gate`).
    pub gate: &'a str,
}

/// A located problem in a policy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// File name relative to the policy directory.
    pub file: String,
    /// 1-based line (0 when unknown).
    pub line: usize,
    /// 1-based column (0 when unknown).
    pub column: usize,
    /// Lowercase message.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    /// `file:line:column: message`, leaving out what is unknown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&diag::render(self))
    }
}

/// Why a policy set could not be loaded: every problem found, each located.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .diagnostics.iter().map(diag::render).collect::<Vec<_>>().join("\n"))]
pub struct PolicyError {
    /// The problems.
    pub diagnostics: Vec<Diagnostic>,
}

/// The source files of a policy set, as `(file name, text)`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PolicySources {
    /// The `*.cedar` files, by name.
    pub files: Vec<(String, String)>,
    /// The `*.cedarschema` file, if there was one.
    pub schema: Option<(String, String)>,
}

/// A loaded, validated and indexed policy set. Cheap to clone; shareable
/// across threads.
#[derive(Clone)]
pub struct PolicySet {
    inner: Arc<load::Compiled>,
}

impl fmt::Debug for PolicySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicySet")
            .field("hash", &self.inner.hash)
            .field("policies", &self.inner.policies.len())
            .finish_non_exhaustive()
    }
}

impl PolicySet {
    /// Loads every `*.cedar` file of `dir` (and a `*.cedarschema`, if present).
    pub fn load_dir(dir: &Path) -> Result<PolicySet, PolicyError> {
        load::load_dir(dir).map(|c| PolicySet { inner: Arc::new(c) })
    }
    /// Builds a set from in-memory files `(name, text)` and an optional schema.
    pub fn from_files(
        files: &[(String, String)],
        schema: Option<(String, String)>,
    ) -> Result<PolicySet, PolicyError> {
        load::compile(files, schema).map(|c| PolicySet { inner: Arc::new(c) })
    }
    /// The files the set was built from; [`PolicySet::from_sources`] of
    /// them builds the same set (same hash) anywhere.
    pub fn sources(&self) -> &PolicySources {
        &self.inner.sources
    }
    /// Builds a set from [`PolicySet::sources`] taken elsewhere.
    pub fn from_sources(sources: &PolicySources) -> Result<PolicySet, PolicyError> {
        Self::from_files(&sources.files, sources.schema.clone())
    }
    /// SHA-256 (hex) over the sorted file names and contents.
    pub fn hash(&self) -> &str {
        &self.inner.hash
    }
    /// All policy ids, sorted.
    pub fn policy_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.inner.policies.iter().map(|p| p.id.clone()).collect();
        ids.sort();
        ids
    }
    /// Number of policies.
    pub fn len(&self) -> usize {
        self.inner.policies.len()
    }
    /// Whether the set holds no policies (every request is then denied).
    pub fn is_empty(&self) -> bool {
        self.inner.policies.is_empty()
    }
    /// Evaluates a request. Never panics; evaluation errors yield a deny.
    pub fn evaluate(&self, input: &EvalInput<'_>) -> Verdict {
        self.inner.evaluate(input)
    }
    /// Forgets the cached per-action candidate sets, so the next evaluation
    /// of each action pays the cold cost again (benchmarks measure it).
    pub fn clear_cache(&self) {
        self.inner.cache.clear();
    }
    /// Evaluates a request and reports what every candidate policy did.
    pub fn explain(&self, input: &EvalInput<'_>) -> Explanation {
        self.inner.explain(input)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
