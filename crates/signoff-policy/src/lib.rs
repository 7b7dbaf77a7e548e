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
mod catalog;
mod context;
mod diag;
mod entities;
mod eval;
mod explain;
mod index;
mod load;
mod schema;
pub mod testing;

pub use catalog::CATALOG_FILE;
pub use schema::base_schema;

pub use explain::{Effect, Explanation, FactTrace, PolicyStatus, PolicyTrace};

use signoff_core::{ActionRequest, PrincipalAttributes, RequestFacts, ResourceFacts, Verdict};
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
    /// The principal's registered attributes (on the `Agent`/`User` entity).
    pub principal_attributes: &'a PrincipalAttributes,
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
    /// The resource catalog (`catalog.toml`), if there was one. Stored
    /// with the active set, so every replica resolves resources alike.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog: Option<(String, String)>,
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
    /// Loads every `*.cedar` file of `dir` (and `catalog.toml` and a
    /// `*.cedarschema`, if present).
    pub fn load_dir(dir: &Path) -> Result<PolicySet, PolicyError> {
        load::load_dir(dir).map(|c| PolicySet { inner: Arc::new(c) })
    }
    /// Builds a set from in-memory files `(name, text)` and an optional schema.
    pub fn from_files(
        files: &[(String, String)],
        schema: Option<(String, String)>,
    ) -> Result<PolicySet, PolicyError> {
        Self::from_sources(&PolicySources {
            files: files.to_vec(),
            schema,
            catalog: None,
        })
    }
    /// The files the set was built from; [`PolicySet::from_sources`] of
    /// them builds the same set (same hash) anywhere.
    pub fn sources(&self) -> &PolicySources {
        &self.inner.sources
    }
    /// Builds a set from [`PolicySet::sources`] taken elsewhere.
    pub fn from_sources(sources: &PolicySources) -> Result<PolicySet, PolicyError> {
        load::compile(sources).map(|c| PolicySet { inner: Arc::new(c) })
    }
    /// Problems that did not stop the set from loading (actions missing
    /// from the registry, policies the schema shows can never apply).
    pub fn warnings(&self) -> &[Diagnostic] {
        &self.inner.warnings
    }
    /// Number of resource entries in the catalog (0 without one).
    pub fn catalog_len(&self) -> usize {
        self.inner.catalog.len()
    }
    /// What the catalog says about `resource` (`known == false` if nothing).
    pub fn resource_facts(&self, resource: &str) -> ResourceFacts {
        self.inner.catalog.resolve(resource)
    }
    /// The facts `input` is decided on: the catalog's view of its
    /// resource, the asserted environment beside it, the principal's
    /// attributes. Recorded with the request.
    pub fn facts(&self, input: &EvalInput<'_>) -> RequestFacts {
        RequestFacts::new(
            self.resource_facts(&input.request.resource),
            input.request.environment.clone(),
            input.principal_attributes.clone(),
        )
    }
    /// The Cedar schema this set is validated against: signoff's entity
    /// types and the actions its policies and registry name (or the
    /// directory's own `*.cedarschema`).
    pub fn schema_text(&self) -> String {
        match &self.inner.sources.schema {
            Some((_, text)) => text.clone(),
            None => {
                let literals = self
                    .inner
                    .policies
                    .iter()
                    .flat_map(|m| m.action_literals.iter().cloned())
                    .collect();
                schema::full_schema(&literals, &self.inner.catalog)
            }
        }
    }
    /// SHA-256 (hex) over the sorted file names and contents (policies,
    /// schema and catalog).
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
        self.inner.evaluate(input, &self.facts(input))
    }
    /// Evaluates a request on facts resolved before (by [`PolicySet::facts`]
    /// of this same set), and returns them with the verdict.
    pub fn evaluate_with_facts(&self, input: &EvalInput<'_>) -> (Verdict, RequestFacts) {
        let facts = self.facts(input);
        (self.inner.evaluate(input, &facts), facts)
    }
    /// Forgets the cached per-action candidate sets, so the next evaluation
    /// of each action pays the cold cost again (benchmarks measure it).
    pub fn clear_cache(&self) {
        self.inner.cache.clear();
        self.inner.entities.clear();
    }
    /// Evaluates a request and reports what every candidate policy did.
    pub fn explain(&self, input: &EvalInput<'_>) -> Explanation {
        self.inner.explain(input, &self.facts(input))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
