//! Building the Cedar request for an action request and turning Cedar's
//! answer into a signoff verdict.

use crate::context;
use crate::explain::{Effect, Explanation, PolicyStatus, PolicyTrace};
use crate::index::Candidates;
use crate::index::Needs;
use crate::load::Compiled;
use crate::EvalInput;
use cedar_policy::{
    Context, Entities, Entity, EntityId, EntityUid, Request, Response, RestrictedExpression,
};
use signoff_core::action::{action_ancestors, RESERVED_CONTEXT_KEYS};
use signoff_core::principal::PrincipalKind;
use signoff_core::{
    Decision, PrincipalAttributes, RequestFacts, Requirement, ResourceFacts, Verdict,
};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

pub(crate) const NO_PERMIT: &str = "no policy permits this action";
pub(crate) const EVAL_FAILED: &str = "policy evaluation failed";
pub(crate) const BAD_CONTEXT: &str = "request context is not valid for cedar";

/// The Cedar request and entities for one evaluation.
struct Prepared {
    request: Request,
    entities: Entities,
}

impl Compiled {
    /// The candidate policies for `action`, from the cache when possible.
    pub(crate) fn candidates(&self, action: &str) -> Arc<Candidates> {
        if let Some(c) = self.cache.get(action) {
            return c;
        }
        let positions = self.index.candidates(action);
        let set = cedar_policy::PolicySet::from_policies(
            positions.iter().map(|&p| self.policies[p].policy.clone()),
        )
        // Ids are unique by construction, so this cannot fail; if it
        // somehow did, the full set still gives the right answer.
        .unwrap_or_else(|_| self.full.clone());
        let needs = Needs::of(positions.iter().map(|&p| &self.policies[p]), action);
        self.cache.insert(
            action,
            Candidates {
                positions,
                set,
                needs,
            },
        )
    }

    pub(crate) fn evaluate(&self, input: &EvalInput<'_>, facts: &RequestFacts) -> Verdict {
        let candidates = self.candidates(&input.request.action);
        let prepared = match self.prepare(input, facts, candidates.needs) {
            Ok(p) => p,
            Err(message) => return self.deny_invalid(message),
        };
        if candidates.positions.is_empty() {
            return Verdict::deny(self.hash.clone(), NO_PERMIT);
        }
        let response =
            self.authorizer
                .is_authorized(&prepared.request, &candidates.set, &prepared.entities);
        self.verdict(&response)
    }

    /// Evaluates against every policy, bypassing the index. The reference
    /// the index must agree with.
    #[cfg(test)]
    pub(crate) fn evaluate_full(&self, input: &EvalInput<'_>, facts: &RequestFacts) -> Verdict {
        let needs = Needs::of(&self.policies, &input.request.action);
        let prepared = match self.prepare(input, facts, needs) {
            Ok(p) => p,
            Err(message) => return self.deny_invalid(message),
        };
        let response =
            self.authorizer
                .is_authorized(&prepared.request, &self.full, &prepared.entities);
        self.verdict(&response)
    }

    fn deny_invalid(&self, message: String) -> Verdict {
        let mut v = Verdict::deny(self.hash.clone(), BAD_CONTEXT);
        v.errors.push(message);
        v
    }

    /// Principal (with its groups as parents), the action (with its dotted
    /// prefixes as parents, and those prefixes as entities), the resource,
    /// and the context with signoff's own keys. Entities the policies cannot
    /// observe are left out (see [`Needs`]); groups and the resource never
    /// need entities of their own, as nothing is known of them but the uid.
    fn prepare(
        &self,
        input: &EvalInput<'_>,
        facts: &RequestFacts,
        needs: Needs,
    ) -> Result<Prepared, String> {
        let req = input.request;
        let n = &self.names;
        let uid = |ty: &cedar_policy::EntityTypeName, id: &str| {
            EntityUid::from_type_name_and_id(ty.clone(), EntityId::new(id))
        };
        let principal_type = match req.principal.kind {
            PrincipalKind::Agent => &n.agent,
            PrincipalKind::User => &n.user,
        };
        let principal = uid(principal_type, &req.principal.name);
        let action = uid(&n.action, &req.action);
        let resource = uid(&n.resource, &req.resource);

        let entities = if needs.principal || needs.action || needs.resource {
            let mut list = Vec::with_capacity(4);
            if needs.principal {
                let cached = self.entities.principal(
                    req.principal.kind,
                    &req.principal.name,
                    input.principal_groups,
                    input.principal_attributes,
                    || {
                        let groups: HashSet<EntityUid> = input
                            .principal_groups
                            .iter()
                            .map(|g| uid(&n.group, g))
                            .collect();
                        let attrs = principal_attrs(req.principal.kind, input.principal_attributes);
                        Entity::new(principal.clone(), attrs, groups)
                            .map_err(|e| format!("invalid principal entity: {e}"))
                    },
                )?;
                list.push(cached.entity.clone());
            }
            if needs.resource {
                let cached = self.entities.resource(&req.resource, &facts.resource, || {
                    let parents: HashSet<EntityUid> = facts
                        .resource
                        .ancestors
                        .iter()
                        .map(|a| uid(&n.resource, a))
                        .collect();
                    Entity::new(resource.clone(), resource_attrs(&facts.resource), parents)
                        .map_err(|e| format!("invalid resource entity: {e}"))
                })?;
                list.push(cached.entity.clone());
            }
            if needs.action {
                let cached = self.entities.action(&req.action, || {
                    let ancestors: Vec<EntityUid> = action_ancestors(&req.action)
                        .into_iter()
                        .map(|a| uid(&n.action, a))
                        .collect();
                    let mut entities = Vec::with_capacity(ancestors.len() + 1);
                    entities.push(Entity::new_no_attrs(
                        action.clone(),
                        ancestors.iter().cloned().collect(),
                    ));
                    // Each prefix's parents are the shorter prefixes after it.
                    for (i, a) in ancestors.iter().enumerate() {
                        entities.push(Entity::new_no_attrs(
                            a.clone(),
                            ancestors[i + 1..].iter().cloned().collect(),
                        ));
                    }
                    entities
                });
                list.extend(cached.iter().cloned());
            }
            Entities::from_entities(list, None)
                .map_err(|e| format!("invalid request entities: {e}"))?
        } else {
            Entities::empty()
        };

        let text =
            |v: &Option<String>| RestrictedExpression::new_string(v.clone().unwrap_or_default());
        let mut pairs = Vec::with_capacity(req.context.len() + 4);
        for (key, value) in &req.context {
            // signoff's own keys win; the request validation rejects them anyway
            if !RESERVED_CONTEXT_KEYS.contains(&key.as_str()) {
                pairs.push((key.clone(), context::to_cedar(key, value)?));
            }
        }
        pairs.push(("environment".into(), text(&req.environment)));
        pairs.push(("justification".into(), text(&req.justification)));
        pairs.push((
            "gate".into(),
            RestrictedExpression::new_string(input.gate.to_owned()),
        ));
        pairs.push(("on_behalf_of".into(), text(&req.on_behalf_of)));
        pairs.push((
            "environment_mismatch".into(),
            RestrictedExpression::new_bool(facts.environment_mismatch),
        ));
        let context =
            Context::from_pairs(pairs).map_err(|e| format!("invalid request context: {e}"))?;
        let request = Request::new(principal, action, resource, context, None)
            .map_err(|e| format!("invalid request: {e}"))?;
        Ok(Prepared { request, entities })
    }

    fn positions_of<'a>(
        &self,
        ids: impl Iterator<Item = &'a cedar_policy::PolicyId>,
    ) -> Vec<usize> {
        let mut out: Vec<usize> = ids
            .filter_map(|id| self.by_id.get(AsRef::<str>::as_ref(id)).copied())
            .collect();
        out.sort_unstable_by(|a, b| self.policies[*a].id.cmp(&self.policies[*b].id));
        out.dedup();
        out
    }

    /// The decision rules; see the crate documentation.
    fn verdict(&self, response: &Response) -> Verdict {
        let diagnostics = response.diagnostics();
        // Only an erroring *guard* — a forbid, or a permit that demands
        // approval — could turn into a more permissive verdict by being
        // skipped, so only those fail the evaluation. A plain permit that
        // errors just does not apply, which can only deny more.
        let errors: Vec<_> = diagnostics
            .errors()
            .filter(
                |cedar_policy::AuthorizationError::PolicyEvaluationError(e)| {
                    self.by_id
                        .get(AsRef::<str>::as_ref(e.policy_id()))
                        .map(|&p| {
                            let m = &self.policies[p];
                            m.effect == Effect::Forbid || m.approval.is_some()
                        })
                        .unwrap_or(true)
                },
            )
            .collect();
        if !errors.is_empty() {
            let mut ids = BTreeSet::new();
            let mut messages = Vec::with_capacity(errors.len());
            for cedar_policy::AuthorizationError::PolicyEvaluationError(e) in &errors {
                ids.insert(e.policy_id().to_string());
                messages.push(e.to_string());
            }
            messages.sort();
            let mut v = Verdict::deny(self.hash.clone(), EVAL_FAILED);
            v.policy_ids = ids.into_iter().collect();
            v.errors = messages;
            return v;
        }
        let determining = self.positions_of(diagnostics.reason());
        let ids = || {
            determining
                .iter()
                .map(|&p| self.policies[p].id.clone())
                .collect::<Vec<_>>()
        };
        match response.decision() {
            cedar_policy::Decision::Deny if determining.is_empty() => {
                Verdict::deny(self.hash.clone(), NO_PERMIT)
            }
            cedar_policy::Decision::Deny => {
                let reasons = determining
                    .iter()
                    .map(|&p| {
                        let m = &self.policies[p];
                        m.reason
                            .clone()
                            .unwrap_or_else(|| format!("forbidden by policy {}", m.id))
                    })
                    .collect();
                Verdict {
                    policy_ids: ids(),
                    reasons,
                    ..Verdict::deny(self.hash.clone(), "")
                }
            }
            cedar_policy::Decision::Allow => {
                let approving: Vec<_> = determining
                    .iter()
                    .map(|&p| &self.policies[p])
                    .filter(|m| m.approval.is_some())
                    .collect();
                let (decision, requirement, ttl_seconds, reasons) = if approving.is_empty() {
                    let reasons = determining
                        .iter()
                        .filter_map(|&p| self.policies[p].reason.clone());
                    (Decision::Allow, None, None, reasons.collect())
                } else {
                    let requirement = approving
                        .iter()
                        .filter_map(|m| m.approval.as_ref())
                        .fold(Requirement::default(), |acc, r| acc.merge(r));
                    let ttl = approving.iter().filter_map(|m| m.ttl_seconds).min();
                    let reasons = approving.iter().filter_map(|m| m.reason.clone()).collect();
                    (Decision::ApprovalRequired, Some(requirement), ttl, reasons)
                };
                Verdict {
                    decision,
                    policy_ids: ids(),
                    policy_set_hash: self.hash.clone(),
                    requirement,
                    ttl_seconds,
                    reasons: dedup_keep_order(reasons),
                    errors: Vec::new(),
                }
            }
        }
    }

    pub(crate) fn explain(&self, input: &EvalInput<'_>, facts: &RequestFacts) -> Explanation {
        let verdict = self.evaluate(input, facts);
        let candidates = self.candidates(&input.request.action);
        let skipped = self.policies.len() - candidates.positions.len();
        let mut satisfied = HashSet::new();
        let mut errored: std::collections::HashMap<String, String> = Default::default();
        if let Ok(prepared) = self.prepare(input, facts, candidates.needs) {
            // Satisfied-but-not-determining policies are invisible in one
            // evaluation (a satisfied forbid hides satisfied permits), so
            // permits and forbids are evaluated apart.
            for effect in [Effect::Permit, Effect::Forbid] {
                let subset = candidates
                    .positions
                    .iter()
                    .map(|&p| &self.policies[p])
                    .filter(|m| m.effect == effect);
                let Ok(set) =
                    cedar_policy::PolicySet::from_policies(subset.map(|m| m.policy.clone()))
                else {
                    continue;
                };
                let response =
                    self.authorizer
                        .is_authorized(&prepared.request, &set, &prepared.entities);
                satisfied.extend(response.diagnostics().reason().map(|id| id.to_string()));
                for cedar_policy::AuthorizationError::PolicyEvaluationError(e) in
                    response.diagnostics().errors()
                {
                    errored.insert(e.policy_id().to_string(), e.to_string());
                }
            }
        }
        let decided = verdict.errors.is_empty();
        let policies = candidates
            .positions
            .iter()
            .map(|&p| {
                let m = &self.policies[p];
                let status = if let Some(e) = errored.get(&m.id) {
                    PolicyStatus::Error(e.clone())
                } else if decided && verdict.policy_ids.contains(&m.id) {
                    PolicyStatus::Determining
                } else if satisfied.contains(&m.id) {
                    PolicyStatus::Satisfied
                } else {
                    PolicyStatus::NotSatisfied
                };
                PolicyTrace {
                    id: m.id.clone(),
                    file: m.file.clone(),
                    line: m.line,
                    column: m.column,
                    effect: m.effect,
                    status,
                    annotations: m.annotations.clone(),
                }
            })
            .collect();
        Explanation {
            verdict,
            facts: crate::explain::fact_traces(input, facts),
            policies,
            skipped,
        }
    }
}

fn string_set(items: &[String]) -> RestrictedExpression {
    RestrictedExpression::new_set(items.iter().cloned().map(RestrictedExpression::new_string))
}

fn opt_string(v: &Option<String>) -> RestrictedExpression {
    RestrictedExpression::new_string(v.clone().unwrap_or_default())
}

/// The principal's registered attributes, every key of its kind present
/// (empty when unset) so policies read them without `has`; the key list
/// is the schema's.
pub(crate) fn principal_attrs(
    kind: PrincipalKind,
    a: &PrincipalAttributes,
) -> HashMap<String, RestrictedExpression> {
    let ty = kind.cedar_type();
    crate::schema::ATTRIBUTES
        .iter()
        .filter(|(t, ..)| *t == ty)
        .map(|(_, name, ..)| {
            let v = match *name {
                "environments" => string_set(&a.environments),
                "labels" => string_set(&a.labels),
                "team" => opt_string(&a.team),
                _ => opt_string(&a.department),
            };
            ((*name).to_owned(), v)
        })
        .collect()
}

/// The catalog's facts as `Resource` attributes (empty when unknown).
pub(crate) fn resource_attrs(r: &ResourceFacts) -> HashMap<String, RestrictedExpression> {
    crate::schema::ATTRIBUTES
        .iter()
        .filter(|(t, ..)| *t == "Resource")
        .map(|(_, name, ..)| {
            let v = match *name {
                "known" => RestrictedExpression::new_bool(r.known),
                "environment" => opt_string(&r.environment),
                "classification" => opt_string(&r.classification),
                "owner" => opt_string(&r.owner),
                _ => string_set(&r.tags),
            };
            ((*name).to_owned(), v)
        })
        .collect()
}

fn dedup_keep_order(items: Vec<String>) -> Vec<String> {
    let mut seen = HashSet::new();
    items
        .into_iter()
        .filter(|s| seen.insert(s.clone()))
        .collect()
}
