//! Request context (JSON) → Cedar values.
//!
//! Converted by hand rather than with `Context::from_json_value`: it is
//! several times faster, and it treats every value as plain data, so the
//! `__entity` / `__extn` escapes of Cedar's JSON format cannot be used to put
//! entity references into the context.

use cedar_policy::RestrictedExpression;
use serde_json::Value;

/// The Cedar value for context key `key` (a dotted path, for messages).
pub(crate) fn to_cedar(key: &str, value: &Value) -> Result<RestrictedExpression, String> {
    Ok(match value {
        Value::Null => return Err(format!("invalid request context: key `{key}`: null is not allowed")),
        Value::Bool(b) => RestrictedExpression::new_bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => RestrictedExpression::new_long(i),
            None => {
                return Err(format!(
                    "invalid request context: key `{key}`: {n} is not an integer between -2^63 and 2^63-1"
                ))
            }
        },
        Value::String(s) => RestrictedExpression::new_string(s.clone()),
        Value::Array(items) => {
            RestrictedExpression::new_set(items.iter().map(|v| to_cedar(key, v)).collect::<Result<Vec<_>, _>>()?)
        }
        Value::Object(map) => {
            let fields = map
                .iter()
                .map(|(k, v)| Ok((k.clone(), to_cedar(&format!("{key}.{k}"), v)?)))
                .collect::<Result<Vec<_>, String>>()?;
            RestrictedExpression::new_record(fields).map_err(|e| format!("invalid request context: key `{key}`: {e}"))?
        }
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rejects_values_cedar_has_no_form_for() {
        assert_eq!(
            to_cedar("ratio", &json!(0.5)).unwrap_err(),
            "invalid request context: key `ratio`: 0.5 is not an integer between -2^63 and 2^63-1"
        );
        assert_eq!(
            to_cedar("a", &json!({"b": [1, null]})).unwrap_err(),
            "invalid request context: key `a.b`: null is not allowed"
        );
        assert!(to_cedar("a", &json!({"b": [1, "x", true, {"c": -3}]})).is_ok());
    }
}
