//! The signoff annotations a policy may carry: `@id`, `@approval`, `@ttl`,
//! `@reason`.

use signoff_core::Requirement;

/// Longest `@ttl` accepted: a year. Longer values are almost certainly typos
/// and would overflow timestamp arithmetic downstream.
const MAX_TTL_SECONDS: u64 = 366 * 24 * 3600;

/// Parses `@ttl` durations: one or more `<number><unit>` parts with units
/// `d`, `h`, `m`, `s` (e.g. `30m`, `1h30m`, `90s`, `2d`), optionally separated
/// by spaces. The result must be positive and at most a year.
pub(crate) fn parse_ttl(text: &str) -> Result<u64, String> {
    let invalid =
        || format!("invalid @ttl `{text}`: expected a duration such as 90s, 30m, 1h30m or 2d");
    let mut total: u64 = 0;
    let mut digits = String::new();
    let mut parts = 0;
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        if c.is_whitespace() && digits.is_empty() {
            continue;
        }
        let unit: u64 = match c {
            'd' => 86_400,
            'h' => 3_600,
            'm' => 60,
            's' => 1,
            _ => return Err(invalid()),
        };
        let n: u64 = digits.parse().map_err(|_| invalid())?;
        digits.clear();
        parts += 1;
        total = n
            .checked_mul(unit)
            .and_then(|s| total.checked_add(s))
            .ok_or_else(invalid)?;
    }
    if parts == 0 || !digits.is_empty() {
        return Err(invalid());
    }
    if total == 0 {
        return Err(format!("invalid @ttl `{text}`: must be greater than zero"));
    }
    if total > MAX_TTL_SECONDS {
        return Err(format!("invalid @ttl `{text}`: must be at most 366d"));
    }
    Ok(total)
}

/// Parses `@approval`, naming the annotation in the error.
pub(crate) fn parse_approval(text: &str) -> Result<Requirement, String> {
    text.parse::<Requirement>()
        .map_err(|e| format!("invalid @approval `{text}`: {e}"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn ttl_accepts_friendly_durations() {
        assert_eq!(parse_ttl("30m"), Ok(1800));
        assert_eq!(parse_ttl("1h"), Ok(3600));
        assert_eq!(parse_ttl("90s"), Ok(90));
        assert_eq!(parse_ttl("1h30m"), Ok(5400));
        assert_eq!(parse_ttl("1h 30m"), Ok(5400));
        assert_eq!(parse_ttl("2d"), Ok(172_800));
    }

    #[test]
    fn ttl_rejects_nonsense() {
        for bad in [
            "",
            "30",
            "m",
            "1x",
            "1.5h",
            "-1h",
            "h1",
            "99999999999999999999s",
            "367d",
        ] {
            assert!(parse_ttl(bad).is_err(), "{bad} should be rejected");
        }
        assert_eq!(
            parse_ttl("0s"),
            Err("invalid @ttl `0s`: must be greater than zero".into())
        );
    }

    #[test]
    fn approval_errors_name_the_annotation() {
        assert_eq!(
            parse_approval("sre:0").unwrap_err(),
            "invalid @approval `sre:0`: invalid count `0` for group `sre`: expected a number from 1 to 100"
        );
        assert_eq!(
            parse_approval("sre:2,security").unwrap().to_string(),
            "security:1,sre:2"
        );
    }
}
