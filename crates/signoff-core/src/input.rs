//! Limits on what callers may send, checked where input enters the engine
//! (submissions, reviews, cancellations, claims, outcomes, principals).
//!
//! The rules are the same whatever the database: PostgreSQL cannot store a
//! NUL in `text`, so a NUL is refused everywhere rather than accepted by
//! SQLite and turned into a 500 by PostgreSQL. Anything accepted must be
//! readable back: `serde_json` refuses input nested deeper than 128 levels,
//! and a request's context is stored wrapped in its record and in audit
//! events, so the context's own depth is bounded well below that.
//!
//! | field | max bytes | characters |
//! |---|---|---|
//! | `resource` | 1,024 | single line: no control characters |
//! | `environment` | 64 | single line |
//! | `justification` | 4,096 | text: newline and tab allowed, no other control characters |
//! | `context` | 32,768 serialized, nesting ≤ [`MAX_CONTEXT_DEPTH`] | keys single line (≤ [`MAX_CONTEXT_KEY`] bytes); string values anything but NUL (displays escape them) |
//! | review / cancel `reason` | [`MAX_REASON`] | text |
//! | outcome `summary` | [`MAX_SUMMARY`] | text |
//! | claim `digest`, `output_sha256` | 64 | lowercase hex (`output_sha256`: any case) |
//! | `Idempotency-Key` | 255 | visible ASCII |
//!
//! No field, anywhere, may contain NUL.

use serde_json::Value;

/// Deepest nesting of a request's `context`: the context object itself is
/// level 1, so `{"a":{"b":1}}` is 2 deep. Stored records and audit events
/// wrap the context in at most five more levels, far from serde_json's
/// limit of 128, so whatever is accepted can always be read back.
pub const MAX_CONTEXT_DEPTH: usize = 32;

/// Longest context key (each level), in bytes.
pub const MAX_CONTEXT_KEY: usize = 256;

/// Longest review or cancellation reason, in bytes.
pub const MAX_REASON: usize = 4096;

/// Longest outcome summary, in bytes.
pub const MAX_SUMMARY: usize = 1000;

/// Longest idempotency key, in bytes.
pub const MAX_IDEMPOTENCY_KEY: usize = 255;

/// Which characters a field accepts besides printable ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lines {
    /// One line: no control character at all (no newline, tab, CR, ESC…).
    Single,
    /// Free text: newline and tab are allowed, no other control character
    /// (a CR or an ESC could rewrite what a terminal already shows).
    Text,
    /// Data (context string values, e.g. the command an `exec` gate
    /// runs, which may legitimately print escape sequences): anything but
    /// NUL. Displays escape it (see [`crate::display`]).
    Any,
}

/// Why an input is refused, naming the field and the limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    /// Empty where a value is required.
    #[error("{field} must not be empty")]
    Empty {
        /// The field.
        field: String,
    },
    /// Longer than its limit.
    #[error("{field} is {len} bytes; the limit is {max} bytes")]
    TooLong {
        /// The field.
        field: String,
        /// Its length.
        len: usize,
        /// Its limit.
        max: usize,
    },
    /// Contains NUL.
    #[error("{field} contains a NUL character (U+0000), which no field accepts")]
    Nul {
        /// The field.
        field: String,
    },
    /// Contains a control character the field does not allow.
    #[error("{field} contains the control character U+{code:04X}; {allowed}")]
    Control {
        /// The field.
        field: String,
        /// The character's code point.
        code: u32,
        /// What the field allows.
        allowed: &'static str,
    },
    /// Nested deeper than allowed.
    #[error("{field} is nested more than {max} levels deep")]
    TooDeep {
        /// The field.
        field: String,
        /// The limit.
        max: usize,
    },
    /// Not the hex digest the field needs.
    #[error("{field} must be 64 lowercase hex digits (a SHA-256)")]
    NotDigest {
        /// The field.
        field: String,
    },
}

/// Checks a text field: not empty if `required`, at most `max` bytes, no
/// NUL, and only the control characters `lines` allows.
pub fn check_text(
    field: &str,
    value: &str,
    max: usize,
    lines: Lines,
    required: bool,
) -> Result<(), InputError> {
    if required && value.is_empty() {
        return Err(InputError::Empty {
            field: field.to_owned(),
        });
    }
    if value.len() > max {
        return Err(InputError::TooLong {
            field: field.to_owned(),
            len: value.len(),
            max,
        });
    }
    check_chars(field, value, lines)
}

/// Checks only the characters of `value` (see [`Lines`]).
pub fn check_chars(field: &str, value: &str, lines: Lines) -> Result<(), InputError> {
    for c in value.chars() {
        if c == '\0' {
            return Err(InputError::Nul {
                field: field.to_owned(),
            });
        }
        if c.is_control() {
            let ok = match lines {
                Lines::Single => false,
                Lines::Text => matches!(c, '\n' | '\t'),
                Lines::Any => true,
            };
            if !ok {
                return Err(InputError::Control {
                    field: field.to_owned(),
                    code: u32::from(c),
                    allowed: match lines {
                        Lines::Single => "it must be a single line without control characters",
                        Lines::Text | Lines::Any => "only newline and tab are allowed",
                    },
                });
            }
        }
    }
    Ok(())
}

/// Checks a SHA-256 given as 64 lowercase hex digits.
pub fn check_digest(field: &str, value: &str) -> Result<(), InputError> {
    if value.len() == 64
        && value
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(())
    } else {
        Err(InputError::NotDigest {
            field: field.to_owned(),
        })
    }
}

/// Checks a JSON value found at `field` (a dotted path) inside a container
/// at nesting level `depth` (the context object is level 1, so its values
/// are checked with `depth` 1): depth, keys and strings.
pub fn check_json(field: &str, value: &Value, depth: usize) -> Result<(), InputError> {
    match value {
        Value::String(s) => check_chars(field, s, Lines::Any),
        Value::Array(_) | Value::Object(_) if depth + 1 > MAX_CONTEXT_DEPTH => {
            Err(InputError::TooDeep {
                field: "context".to_owned(),
                max: MAX_CONTEXT_DEPTH,
            })
        }
        Value::Array(items) => items
            .iter()
            .try_for_each(|v| check_json(field, v, depth + 1)),
        Value::Object(map) => map.iter().try_for_each(|(k, v)| {
            let path = format!("{field}.{k}");
            check_text(
                &format!("key `{}` of {field}", escape_for_message(k)),
                k,
                MAX_CONTEXT_KEY,
                Lines::Single,
                true,
            )?;
            check_json(&path, v, depth + 1)
        }),
        _ => Ok(()),
    }
}

/// `s` with control characters shown as `\u{..}` escapes, for error
/// messages that quote a refused value.
pub fn escape_for_message(s: &str) -> String {
    s.chars().flat_map(char::escape_debug).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn nested(depth: usize) -> Value {
        let mut v = json!(1);
        for _ in 0..depth {
            v = json!({ "k": v });
        }
        v
    }

    #[test]
    fn text_rules() {
        assert!(check_text("justification", "line 1\n\tline 2", 100, Lines::Text, true).is_ok());
        assert_eq!(
            check_text("resource", "a\nb", 100, Lines::Single, true)
                .unwrap_err()
                .to_string(),
            "resource contains the control character U+000A; it must be a single line without control characters"
        );
        assert_eq!(
            check_text("justification", "x\u{1b}[8m", 100, Lines::Text, true)
                .unwrap_err()
                .to_string(),
            "justification contains the control character U+001B; only newline and tab are allowed"
        );
        assert!(matches!(
            check_text("justification", "a\rb", 100, Lines::Text, true),
            Err(InputError::Control { code: 13, .. })
        ));
        assert_eq!(
            check_text("reason", "a\0b", 100, Lines::Text, false)
                .unwrap_err()
                .to_string(),
            "reason contains a NUL character (U+0000), which no field accepts"
        );
        assert_eq!(
            check_text("reason", &"é".repeat(3), 5, Lines::Text, false)
                .unwrap_err()
                .to_string(),
            "reason is 6 bytes; the limit is 5 bytes"
        );
        assert!(check_text("reason", &"é".repeat(2), 4, Lines::Text, false).is_ok());
        assert!(check_text("resource", "", 4, Lines::Single, true).is_err());
    }

    #[test]
    fn depth_limit_is_exact() {
        // the context object itself is level 1
        let at_limit = nested(MAX_CONTEXT_DEPTH - 1);
        assert!(check_json("context.k", &at_limit, 1).is_ok());
        let over = nested(MAX_CONTEXT_DEPTH);
        assert_eq!(
            check_json("context.k", &over, 1).unwrap_err(),
            InputError::TooDeep {
                field: "context".into(),
                max: MAX_CONTEXT_DEPTH
            }
        );
        let arrays = json!([[[[1]]]]);
        assert!(check_json("context.k", &arrays, MAX_CONTEXT_DEPTH - 4).is_ok());
        assert!(check_json("context.k", &arrays, MAX_CONTEXT_DEPTH - 3).is_err());
    }

    #[test]
    fn keys_and_strings_inside_context() {
        let v = json!({"ok": "multi\nline", "bad\u{0}": 1});
        assert!(matches!(
            check_json("context.x", &v, 2),
            Err(InputError::Nul { .. })
        ));
        // values are data (a command may print escapes): only NUL is refused
        let v = json!({"k": "esc\u{1b}[8m\r"});
        assert!(check_json("context.x", &v, 2).is_ok());
        let v = json!({"k": ["a\u{0}"]});
        assert!(matches!(
            check_json("context.x", &v, 2),
            Err(InputError::Nul { field }) if field == "context.x.k"
        ));
    }

    #[test]
    fn digests() {
        assert!(check_digest("digest", &"a".repeat(64)).is_ok());
        assert!(check_digest("digest", &"A".repeat(64)).is_err());
        assert!(check_digest("digest", &format!("{}\0", "a".repeat(63))).is_err());
    }
}
