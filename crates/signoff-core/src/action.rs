//! The action request and its digest.
//!
//! The digest is SHA-256 over the RFC 8785 (JSON Canonicalization Scheme) form
//! of the seven fields that define *what* will run and *for whom*. An approval
//! is bound to that digest: a gate that claims it must present the same digest,
//! so an approval can never be reused for a different action.

use crate::input::{
    check_chars, check_json, check_text, escape_for_message, Lines, MAX_CONTEXT_KEY,
};
use crate::principal::PrincipalKind;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};
use std::fmt;

/// Context keys that signoff itself sets for Cedar; a request may not supply them.
pub const RESERVED_CONTEXT_KEYS: [&str; 5] = [
    "environment",
    "justification",
    "gate",
    "on_behalf_of",
    "environment_mismatch",
];

/// Upper bounds that keep a request reviewable and storable.
pub mod limits {
    /// Longest action name.
    pub const ACTION: usize = 128;
    /// Longest resource.
    pub const RESOURCE: usize = 1024;
    /// Longest environment name.
    pub const ENVIRONMENT: usize = 64;
    /// Longest justification.
    pub const JUSTIFICATION: usize = 4096;
    /// Largest serialized context, in bytes.
    pub const CONTEXT_BYTES: usize = 32 * 1024;
}

/// A reference to the authenticated caller: `agent:NAME` or `user:NAME`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PrincipalRef {
    /// Agent or user.
    pub kind: PrincipalKind,
    /// The principal's name.
    pub name: String,
}

impl fmt::Display for PrincipalRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind.as_str(), self.name)
    }
}

impl std::str::FromStr for PrincipalRef {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (kind, name) = s
            .split_once(':')
            .ok_or_else(|| format!("invalid principal `{s}`: expected agent:NAME or user:NAME"))?;
        let kind: PrincipalKind = kind.parse()?;
        crate::principal::validate_name("principal name", name)?;
        Ok(Self {
            kind,
            name: name.to_owned(),
        })
    }
}

impl Serialize for PrincipalRef {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PrincipalRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A SHA-256 action digest, lowercase hex.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(transparent)]
#[schema(value_type = String, example = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08")]
pub struct Digest(pub String);

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What an agent or pipeline wants to do, and for whom.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionRequest {
    /// Dotted verb, e.g. `db.export`.
    pub action: String,
    /// What the action touches, e.g. `customers` or `prod-cluster/ns/payments`.
    pub resource: String,
    /// Where, e.g. `prod`.
    pub environment: Option<String>,
    /// Action-specific facts (JSON object) visible to policies as `context.KEY`.
    #[schema(value_type = Object)]
    pub context: Map<String, Value>,
    /// The business reason given by the requester.
    pub justification: Option<String>,
    /// The authenticated caller, `agent:NAME` or `user:NAME`.
    #[schema(value_type = String, example = "agent:etl-bot")]
    pub principal: PrincipalRef,
    /// The human who triggered the action, if any.
    pub on_behalf_of: Option<String>,
}

/// Why an action request is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActionError {
    /// The action is not a dotted verb.
    #[error("invalid action `{0}`: use dot-separated segments of letters, digits, '_' or '-', e.g. db.export")]
    Action(String),
    /// A field is empty or too long.
    #[error("{field} must be 1-{max} characters")]
    Length {
        /// The offending field.
        field: &'static str,
        /// Its limit.
        max: usize,
    },
    /// A context key is reserved for signoff.
    #[error("context key `{0}` is reserved; pass it as its own field")]
    ReservedContextKey(String),
    /// A context value has no Cedar equivalent.
    #[error("context key `{key}`: {problem}")]
    ContextValue {
        /// The offending key (dotted path).
        key: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// The context is too large.
    #[error("context is larger than {} bytes", limits::CONTEXT_BYTES)]
    ContextTooLarge,
    /// `on_behalf_of` is not a valid user name.
    #[error("{0}")]
    OnBehalfOf(String),
    /// A field breaks an input limit (size, characters, depth); see
    /// [`crate::input`].
    #[error(transparent)]
    Limit(#[from] crate::input::InputError),
}

impl ActionRequest {
    /// Checks every field; the first problem found is returned.
    pub fn validate(&self) -> Result<(), ActionError> {
        if !is_valid_action(&self.action) {
            return Err(ActionError::Action(self.action.clone()));
        }
        check_len("resource", &self.resource, limits::RESOURCE)?;
        check_chars("resource", &self.resource, Lines::Single)?;
        if let Some(env) = &self.environment {
            check_len("environment", env, limits::ENVIRONMENT)?;
            check_chars("environment", env, Lines::Single)?;
        }
        if let Some(j) = &self.justification {
            check_len("justification", j, limits::JUSTIFICATION)?;
            check_chars("justification", j, Lines::Text)?;
        }
        if let Some(user) = &self.on_behalf_of {
            crate::principal::validate_name("on_behalf_of user", user)
                .map_err(ActionError::OnBehalfOf)?;
        }
        for key in self.context.keys() {
            if RESERVED_CONTEXT_KEYS.contains(&key.as_str()) {
                return Err(ActionError::ReservedContextKey(key.clone()));
            }
        }
        for (key, value) in &self.context {
            check_text(
                &format!("context key `{}`", escape_for_message(key)),
                key,
                MAX_CONTEXT_KEY,
                Lines::Single,
                true,
            )?;
            check_json(&format!("context.{key}"), value, 1)?;
            check_context_value(key, value)?;
        }
        let size = serde_json::to_vec(&self.context)
            .map(|v| v.len())
            .unwrap_or(usize::MAX);
        if size > limits::CONTEXT_BYTES {
            return Err(ActionError::ContextTooLarge);
        }
        Ok(())
    }

    /// The digest that binds approvals to this exact action: SHA-256 over the
    /// RFC 8785 canonical JSON of all seven fields (absent fields as `null`).
    pub fn digest(&self) -> Digest {
        let canonical = self.canonical_json();
        Digest(hex::encode(Sha256::digest(canonical.as_bytes())))
    }

    /// The RFC 8785 canonical form the digest is computed over.
    pub fn canonical_json(&self) -> String {
        let value = serde_json::json!({
            "action": self.action,
            "resource": self.resource,
            "environment": self.environment,
            "context": self.context,
            "justification": self.justification,
            "principal": self.principal.to_string(),
            "on_behalf_of": self.on_behalf_of,
        });
        crate::jcs::value_to_string(&value)
    }

    /// The dotted prefixes of the action, most specific first: `k8s.namespace.delete`
    /// → `k8s.namespace`, `k8s`. Cedar sees the action as a member of each.
    pub fn action_groups(&self) -> Vec<&str> {
        action_ancestors(&self.action)
    }
}

/// The dotted prefixes of an action name, most specific first.
pub fn action_ancestors(action: &str) -> Vec<&str> {
    action
        .char_indices()
        .filter(|&(_, c)| c == '.')
        .map(|(i, _)| &action[..i])
        .rev()
        .collect()
}

/// Whether `action` is a dotted verb such as `db.export`.
pub fn is_valid_action(action: &str) -> bool {
    !action.is_empty()
        && action.len() <= limits::ACTION
        && action.split('.').all(|seg| {
            !seg.is_empty()
                && seg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        })
}

fn check_len(field: &'static str, value: &str, max: usize) -> Result<(), ActionError> {
    if value.is_empty() || value.len() > max {
        Err(ActionError::Length { field, max })
    } else {
        Ok(())
    }
}

/// Cedar has no null and no floating point; reject them up front with the key
/// that holds them, rather than failing obscurely during evaluation.
fn check_context_value(key: &str, value: &Value) -> Result<(), ActionError> {
    match value {
        Value::Null => Err(ActionError::ContextValue {
            key: key.to_owned(),
            problem: "null is not allowed",
        }),
        Value::Number(n) if n.as_i64().is_none() => Err(ActionError::ContextValue {
            key: key.to_owned(),
            problem: "only integers between -2^63 and 2^63-1 are allowed",
        }),
        Value::Array(items) => items.iter().try_for_each(|v| check_context_value(key, v)),
        Value::Object(map) => map
            .iter()
            .try_for_each(|(k, v)| check_context_value(&format!("{key}.{k}"), v)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> ActionRequest {
        ActionRequest {
            action: "db.export".into(),
            resource: "customers".into(),
            environment: Some("prod".into()),
            context: json!({"rows": 1000, "format": "csv"})
                .as_object()
                .cloned()
                .unwrap_or_default(),
            justification: Some("quarterly report".into()),
            principal: "agent:etl-bot".parse().unwrap(),
            on_behalf_of: Some("carol".into()),
        }
    }

    #[test]
    fn canonical_form_sorts_keys_and_includes_nulls() {
        let mut req = sample();
        req.on_behalf_of = None;
        assert_eq!(
            req.canonical_json(),
            r#"{"action":"db.export","context":{"format":"csv","rows":1000},"environment":"prod","justification":"quarterly report","on_behalf_of":null,"principal":"agent:etl-bot","resource":"customers"}"#
        );
    }

    #[test]
    fn digest_is_sha256_of_canonical_form() {
        let req = sample();
        let expected = hex::encode(Sha256::digest(req.canonical_json().as_bytes()));
        assert_eq!(req.digest().0, expected);
        assert_eq!(req.digest().0.len(), 64);
    }

    #[test]
    fn any_field_change_changes_digest() {
        let base = sample().digest();
        let mut r = sample();
        r.resource = "customers2".into();
        assert_ne!(r.digest(), base);
        let mut r = sample();
        r.context.insert("rows".into(), json!(1001));
        assert_ne!(r.digest(), base);
        let mut r = sample();
        r.principal = "agent:other".parse().unwrap();
        assert_ne!(r.digest(), base);
        let mut r = sample();
        r.on_behalf_of = None;
        assert_ne!(r.digest(), base);
    }

    #[test]
    fn key_order_of_context_does_not_matter() {
        let mut a = sample();
        a.context = serde_json::from_str(r#"{"b":1,"a":{"y":2,"x":1}}"#).unwrap();
        let mut b = sample();
        b.context = serde_json::from_str(r#"{"a":{"x":1,"y":2},"b":1}"#).unwrap();
        assert_eq!(a.digest(), b.digest());
    }

    #[test]
    fn validation_names_the_problem() {
        let mut r = sample();
        r.action = "db..export".into();
        assert_eq!(r.validate().unwrap_err().to_string(), "invalid action `db..export`: use dot-separated segments of letters, digits, '_' or '-', e.g. db.export");
        let mut r = sample();
        r.context.insert("gate".into(), json!("x"));
        assert_eq!(
            r.validate().unwrap_err(),
            ActionError::ReservedContextKey("gate".into())
        );
        let mut r = sample();
        r.context.insert("ratio".into(), json!({"inner": 0.5}));
        assert_eq!(
            r.validate().unwrap_err().to_string(),
            "context key `ratio.inner`: only integers between -2^63 and 2^63-1 are allowed"
        );
        let mut r = sample();
        r.resource = String::new();
        assert_eq!(
            r.validate().unwrap_err().to_string(),
            "resource must be 1-1024 characters"
        );
        assert!(sample().validate().is_ok());
    }

    #[test]
    fn action_ancestors_are_dotted_prefixes() {
        assert_eq!(
            action_ancestors("k8s.namespace.delete"),
            vec!["k8s.namespace", "k8s"]
        );
        assert!(action_ancestors("deploy").is_empty());
    }

    #[test]
    fn principal_ref_round_trips() {
        let p: PrincipalRef = "user:alice".parse().unwrap();
        assert_eq!(p.to_string(), "user:alice");
        assert!("robot:x".parse::<PrincipalRef>().is_err());
        assert!("alice".parse::<PrincipalRef>().is_err());
    }
}
