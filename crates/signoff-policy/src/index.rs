//! Which policies can apply to an action, decided from their action scope
//! alone, so that evaluation only ever sees a handful of policies.
//!
//! A policy whose action scope cannot match is never satisfied and never
//! errors (Cedar checks the scope before the conditions), so leaving it out
//! cannot change a verdict. That equivalence is tested against the full set.

use crate::load::PolicyMeta;
use cedar_policy::{ActionConstraint, EntityTypeName, EntityUid};
use signoff_core::action::action_ancestors;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// Policy positions grouped by what their action scope names.
#[derive(Debug, Default)]
pub(crate) struct ActionIndex {
    /// `action` unconstrained: a candidate for every action.
    any: Vec<usize>,
    /// `action == Action::"x"`, keyed by `x`.
    exact: HashMap<String, Vec<usize>>,
    /// `action in [Action::"a", …]`, keyed by each `a`: a candidate for `a`
    /// and for every action below it.
    within: HashMap<String, Vec<usize>>,
}

impl ActionIndex {
    /// Files policy `pos` under its action scope. Scopes naming another
    /// entity type than signoff's `Action` can never match and are dropped.
    pub(crate) fn insert(
        &mut self,
        pos: usize,
        constraint: &ActionConstraint,
        action_type: &EntityTypeName,
    ) {
        let name = |uid: &EntityUid| {
            (uid.type_name() == action_type).then(|| uid.id().unescaped().to_owned())
        };
        match constraint {
            ActionConstraint::Any => self.any.push(pos),
            ActionConstraint::Eq(uid) => {
                if let Some(n) = name(uid) {
                    self.exact.entry(n).or_default().push(pos);
                }
            }
            ActionConstraint::In(uids) => {
                for n in uids.iter().filter_map(name) {
                    self.within.entry(n).or_default().push(pos);
                }
            }
        }
    }

    /// Positions of the policies that can apply to `action`, ascending.
    pub(crate) fn candidates(&self, action: &str) -> Vec<usize> {
        let mut out = self.any.clone();
        out.extend(self.exact.get(action).into_iter().flatten());
        out.extend(self.within.get(action).into_iter().flatten());
        for ancestor in action_ancestors(action) {
            out.extend(self.within.get(ancestor).into_iter().flatten());
        }
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// The policies to evaluate for one action, ready to hand to Cedar.
#[derive(Debug)]
pub(crate) struct Candidates {
    /// Positions in the loaded policy list, ascending.
    pub(crate) positions: Vec<usize>,
    /// The same policies as a Cedar set.
    pub(crate) set: cedar_policy::PolicySet,
    /// Which entities these policies can observe.
    pub(crate) needs: Needs,
}

/// Which request entities a set of policies can observe. Building entities
/// costs more than evaluating a few policies, so they are built only when a
/// policy could tell the difference.
///
/// The action entity carries no attributes, so it only matters to an `in`
/// naming one of its prefixes; context values are plain data (never entity
/// references), so such a name can only come from a literal in a policy.
/// The principal matters to a policy naming a group or reading
/// `principal` in its conditions (its attributes); the resource to one
/// reading `resource` or constraining it with `in`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Needs {
    /// Some policy names a `Group` or reads the principal: build the
    /// principal with its groups and attributes.
    pub(crate) principal: bool,
    /// Some policy reads the resource: build it with the catalog's
    /// attributes and parents.
    pub(crate) resource: bool,
    /// Some policy names a dotted prefix of the action: build the action
    /// with its prefixes as parents.
    pub(crate) action: bool,
}

impl Needs {
    /// What `policies` need when evaluating `action`.
    pub(crate) fn of<'a>(
        policies: impl IntoIterator<Item = &'a PolicyMeta>,
        action: &str,
    ) -> Needs {
        let is_prefix = |lit: &str| {
            action.len() > lit.len()
                && action.starts_with(lit)
                && action.as_bytes()[lit.len()] == b'.'
        };
        let mut needs = Needs {
            principal: false,
            action: false,
            resource: false,
        };
        for m in policies {
            needs.principal |= m.mentions_group || m.reads_principal;
            needs.resource |= m.reads_resource;
            needs.action |= m.action_literals.iter().any(|l| is_prefix(l));
        }
        needs
    }
}

/// More distinct actions than this and the cache starts over: actions come
/// from callers, and an unbounded map would let them grow memory at will.
const CACHE_LIMIT: usize = 10_000;

/// Per-action candidate sets, built on first use.
#[derive(Debug, Default)]
pub(crate) struct CandidateCache {
    map: RwLock<HashMap<String, Arc<Candidates>>>,
}

impl CandidateCache {
    /// The cached set for `action`, if any.
    pub(crate) fn get(&self, action: &str) -> Option<Arc<Candidates>> {
        // A panic while holding the lock cannot leave the map inconsistent
        // (inserts are single calls), so a poisoned lock is still usable.
        let map = self.map.read().unwrap_or_else(|e| e.into_inner());
        map.get(action).cloned()
    }

    /// Caches `candidates` for `action` and returns it.
    pub(crate) fn insert(&self, action: &str, candidates: Candidates) -> Arc<Candidates> {
        let candidates = Arc::new(candidates);
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        if map.len() >= CACHE_LIMIT {
            map.clear();
        }
        map.insert(action.to_owned(), Arc::clone(&candidates));
        candidates
    }

    /// Forgets every cached set.
    pub(crate) fn clear(&self) {
        self.map.write().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// Number of cached actions.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.read().unwrap_or_else(|e| e.into_inner()).len()
    }
}
