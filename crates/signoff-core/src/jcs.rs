//! RFC 8785 (JSON Canonicalization Scheme) serialization: the bytes every
//! action digest and ledger leaf is computed over.
//!
//! A value is first turned into a `serde_json::Value`, then written with
//! object members sorted by their UTF-16 code units, strings escaped as
//! RFC 8785 §3.2.2.2 says (which is exactly serde_json's escaping: `\"`,
//! `\\`, `\b \f \n \r \t`, other controls as lowercase `\u00xx`, nothing
//! else), and every number spelled as ECMAScript's `Number.prototype.toString`
//! spells the IEEE double it is (`ryu-js`).
//!
//! It writes the same bytes as the `serde_json_canonicalizer` crate (a test
//! compares them on generated values) at a fraction of the cost: that crate
//! re-parses every key and buffers every member through a boxed writer, and
//! canonicalization was the largest single cost of an allowed decision.

use serde::Serialize;
use serde_json::{Number, Value};

/// The RFC 8785 serialization of `value`.
///
/// Fails only where `serde_json::to_value` fails: a map with non-string
/// keys, a `Serialize` implementation that fails, or a non-finite float.
pub fn to_vec<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<Vec<u8>> {
    Ok(value_to_vec(&serde_json::to_value(value)?))
}

/// The RFC 8785 serialization of a JSON value. Use it rather than
/// [`to_vec`] for a `Value`, which `to_vec` would first copy whole.
pub fn value_to_vec(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    write_value(value, &mut out);
    out
}

/// [`value_to_vec`] as text.
pub fn value_to_string(value: &Value) -> String {
    // Everything written is UTF-8 (see `to_string`), so this never falls
    // back.
    String::from_utf8(value_to_vec(value)).unwrap_or_default()
}

/// The RFC 8785 serialization of `value`, as text.
pub fn to_string<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<String> {
    let bytes = to_vec(value)?;
    // Everything written is UTF-8: ASCII punctuation, serde_json-escaped
    // strings and ASCII numbers.
    String::from_utf8(bytes).map_err(serde::ser::Error::custom)
}

/// Appends the RFC 8785 serialization of `value` to `out`.
pub fn write_value(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => write_number(n, out),
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(item, out);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_unstable_by(|a, b| utf16_order(a.0, b.0));
            out.push(b'{');
            for (i, (key, item)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(key, out);
                out.push(b':');
                write_value(item, out);
            }
            out.push(b'}');
        }
    }
}

/// RFC 8785 §3.2.3: members sort by the UTF-16 code units of their names.
/// That is byte order for UTF-8 text except where a character above
/// U+FFFF (a surrogate pair in UTF-16) meets one in U+E000..=U+FFFF.
fn utf16_order(a: &str, b: &str) -> std::cmp::Ordering {
    let plain = |s: &str| s.bytes().all(|c| c < 0xEE);
    if plain(a) && plain(b) {
        // No character at or above U+E000 (lead bytes 0xEE and up): UTF-8
        // byte order is code point order is UTF-16 order.
        a.as_bytes().cmp(b.as_bytes())
    } else {
        a.encode_utf16().cmp(b.encode_utf16())
    }
}

/// Integers up to 2^53 are exact doubles and ECMAScript prints them as
/// their digits; anything else is printed as the double it rounds to.
fn write_number(n: &Number, out: &mut Vec<u8>) {
    const EXACT: u64 = 1 << 53;
    if let Some(u) = n.as_u64().filter(|u| *u <= EXACT) {
        out.extend_from_slice(itoa_u64(u, &mut [0; 20]));
    } else if let Some(i) = n.as_i64().filter(|i| i.unsigned_abs() <= EXACT) {
        if i < 0 {
            out.push(b'-');
        }
        out.extend_from_slice(itoa_u64(i.unsigned_abs(), &mut [0; 20]));
    } else {
        // serde_json numbers are finite; as_f64 is always Some without
        // arbitrary precision, which this workspace does not enable.
        let f = n.as_f64().unwrap_or(0.0);
        let mut buffer = ryu_js::Buffer::new();
        out.extend_from_slice(buffer.format_finite(f).as_bytes());
    }
}

fn itoa_u64(mut u: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (u % 10) as u8;
        u /= 10;
        if u == 0 {
            break;
        }
    }
    &buf[at..]
}

fn write_string(s: &str, out: &mut Vec<u8>) {
    let plain = s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\');
    if plain {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        // Writing a string into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn same(v: &Value) {
        let ours = to_vec(v).unwrap();
        let theirs = serde_json_canonicalizer::to_vec(v).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&ours),
            String::from_utf8_lossy(&theirs),
            "{v}"
        );
    }

    /// RFC 8785 §3.2.3's sorting example.
    #[test]
    fn sorts_members_by_utf16_code_units() {
        let v = json!({
            "\u{20ac}": "Euro Sign", "\r": "Carriage Return", "\u{fb33}": "Hebrew Letter Dalet With Dagesh",
            "1": "One", "\u{1f600}": "Emoji: Grinning Face", "\u{80}": "Control", "\u{f6}": "Latin Small Letter O With Diaeresis"
        });
        let out = to_string(&v).unwrap();
        let order: Vec<&str> = [
            "\\r",
            "1",
            "\u{80}",
            "\u{f6}",
            "\u{20ac}",
            "\u{1f600}",
            "\u{fb33}",
        ]
        .to_vec();
        let mut at = 0;
        for key in order {
            let found = out[at..]
                .find(&format!("\"{key}\""))
                .unwrap_or_else(|| panic!("{key} after {at} in {out}"));
            at += found + 1;
        }
        same(&v);
    }

    /// RFC 8785 Appendix B number spellings.
    #[test]
    fn numbers_as_ecmascript_prints_them() {
        let cases = [
            (json!(0), "0"),
            (json!(-0.0), "0"),
            (json!(5e-324), "5e-324"),
            (json!(-5e-324), "-5e-324"),
            (json!(1.7976931348623157e308), "1.7976931348623157e+308"),
            (json!(9007199254740992u64), "9007199254740992"),
            (json!(9007199254740993u64), "9007199254740992"),
            (json!(-9007199254740993i64), "-9007199254740992"),
            (json!(295147905179352830000.0), "295147905179352830000"),
            (json!(1e21), "1e+21"),
            (json!(1e20), "100000000000000000000"),
            (json!(0.000001), "0.000001"),
            (json!(1e-7), "1e-7"),
            (json!(333333333.3333332), "333333333.3333332"),
            (json!(u64::MAX), "18446744073709552000"),
            (json!(i64::MIN), "-9223372036854776000"),
        ];
        for (v, want) in cases {
            assert_eq!(to_string(&v).unwrap(), want, "{v}");
            same(&v);
        }
    }

    /// Generated values (a small deterministic generator: keys and strings
    /// with escapes, non-BMP and private-use characters, numbers of every
    /// kind, nesting) serialize exactly as serde_json_canonicalizer does.
    #[test]
    fn writes_what_serde_json_canonicalizer_writes() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        const PIECES: &[&str] = &[
            "a",
            "Z",
            "é",
            "\u{2028}",
            "\u{e000}",
            "\u{fffd}",
            "\u{ffff}",
            "\u{10000}",
            "😀",
            "\"",
            "\\",
            "\n",
            "\u{1}",
            "\u{1f}",
            "\u{7f}",
            "/",
            " ",
            "ab",
            "",
        ];
        fn text(next: &mut impl FnMut() -> u64) -> String {
            (0..next() % 5)
                .map(|_| PIECES[(next() % PIECES.len() as u64) as usize])
                .collect()
        }
        fn gen(next: &mut impl FnMut() -> u64, depth: u32) -> Value {
            match next() % if depth > 3 { 6 } else { 8 } {
                0 => Value::Null,
                1 => Value::Bool(next().is_multiple_of(2)),
                2 => json!(next() >> (next() % 64)),
                3 => json!(-((next() >> (next() % 63 + 1)) as i64)),
                4 => {
                    let f = f64::from_bits(next());
                    if f.is_finite() {
                        json!(f)
                    } else {
                        json!(next() as f64 / 7.0)
                    }
                }
                5 => Value::String(text(next)),
                6 => Value::Array((0..next() % 4).map(|_| gen(next, depth + 1)).collect()),
                _ => Value::Object(
                    (0..next() % 5)
                        .map(|_| (text(next), gen(next, depth + 1)))
                        .collect(),
                ),
            }
        }
        for _ in 0..20_000 {
            same(&gen(&mut next, 0));
        }
    }
}
