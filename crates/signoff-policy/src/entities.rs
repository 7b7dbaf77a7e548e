//! Cedar entities built once per policy set and reused.
//!
//! Building an entity evaluates each of its attribute expressions, which
//! made the principal and resource entities the largest part of evaluating
//! a request against a catalog. What an entity holds is fixed by its inputs
//! (the principal's groups and attributes; the catalog's facts about the
//! resource; the action's name), so each cached entity is kept with the
//! inputs it was built from and reused only when they are equal. The cache
//! lives in the compiled set, so a reload starts it empty.

use cedar_policy::Entity;
use signoff_core::{PrincipalAttributes, PrincipalKind, ResourceFacts};
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, RwLock};

/// More entries than this in one map and it starts over: names come from
/// callers, and an unbounded map would let them grow memory at will.
const LIMIT: usize = 10_000;

/// A bounded map from a key to what was built from it.
#[derive(Debug)]
struct Memo<K, V> {
    map: RwLock<HashMap<K, Arc<V>>>,
}

impl<K, V> Default for Memo<K, V> {
    fn default() -> Self {
        Memo {
            map: RwLock::new(HashMap::new()),
        }
    }
}

impl<K: Hash + Eq, V> Memo<K, V> {
    fn get<Q>(&self, key: &Q) -> Option<Arc<V>>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        // Inserts are single calls, so a poisoned lock still holds a
        // consistent map.
        let map = self.map.read().unwrap_or_else(|e| e.into_inner());
        map.get(key).cloned()
    }

    fn clear(&self) {
        self.map.write().unwrap_or_else(|e| e.into_inner()).clear();
    }

    fn put(&self, key: K, value: V) -> Arc<V> {
        let value = Arc::new(value);
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        if map.len() >= LIMIT {
            map.clear();
        }
        map.insert(key, Arc::clone(&value));
        value
    }
}

/// A principal's entity and what it was built from.
#[derive(Debug)]
pub(crate) struct PrincipalEntity {
    groups: Vec<String>,
    attributes: PrincipalAttributes,
    pub(crate) entity: Entity,
}

/// A resource's entity and the facts it was built from.
#[derive(Debug)]
pub(crate) struct ResourceEntity {
    facts: ResourceFacts,
    pub(crate) entity: Entity,
}

/// The entities of one compiled policy set.
#[derive(Debug, Default)]
pub(crate) struct EntityCache {
    principals: Memo<(PrincipalKind, String), PrincipalEntity>,
    resources: Memo<String, ResourceEntity>,
    actions: Memo<String, Vec<Entity>>,
}

impl EntityCache {
    /// Forgets every cached entity.
    pub(crate) fn clear(&self) {
        self.principals.clear();
        self.resources.clear();
        self.actions.clear();
    }

    /// The entity of principal `name`, built by `build` unless one built
    /// from the same groups and attributes is cached.
    pub(crate) fn principal<E>(
        &self,
        kind: PrincipalKind,
        name: &str,
        groups: &[String],
        attributes: &PrincipalAttributes,
        build: impl FnOnce() -> Result<Entity, E>,
    ) -> Result<Arc<PrincipalEntity>, E> {
        let key = (kind, name.to_owned());
        if let Some(hit) = self.principals.get(&key) {
            if hit.groups == groups && hit.attributes == *attributes {
                return Ok(hit);
            }
        }
        let entity = build()?;
        Ok(self.principals.put(
            key,
            PrincipalEntity {
                groups: groups.to_vec(),
                attributes: attributes.clone(),
                entity,
            },
        ))
    }

    /// The entity of resource `name`, built by `build` unless one built
    /// from the same facts is cached.
    pub(crate) fn resource<E>(
        &self,
        name: &str,
        facts: &ResourceFacts,
        build: impl FnOnce() -> Result<Entity, E>,
    ) -> Result<Arc<ResourceEntity>, E> {
        if let Some(hit) = self.resources.get(name) {
            if hit.facts == *facts {
                return Ok(hit);
            }
        }
        let entity = build()?;
        Ok(self.resources.put(
            name.to_owned(),
            ResourceEntity {
                facts: facts.clone(),
                entity,
            },
        ))
    }

    /// The entities of action `name` and its dotted prefixes, built by
    /// `build` once.
    pub(crate) fn action(
        &self,
        name: &str,
        build: impl FnOnce() -> Vec<Entity>,
    ) -> Arc<Vec<Entity>> {
        match self.actions.get(name) {
            Some(hit) => hit,
            None => self.actions.put(name.to_owned(), build()),
        }
    }
}
