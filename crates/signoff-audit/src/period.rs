//! The times auditors type: an RFC 3339 time (`2026-12-02T00:00:00Z`), a
//! date (`2026-12-02`, midnight UTC), or a time relative to now (`30d`,
//! `12h`, `2w`: that long before now).

use jiff::{SignedDuration, Timestamp};

/// A time that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeriodError {
    /// Not one of the accepted forms.
    #[error(
        "invalid {flag} `{input}`: expected a date (2026-12-02), an RFC 3339 time \
         (2026-12-02T00:00:00Z) or a time before now (30d, 12h, 2w)"
    )]
    Invalid {
        /// The flag or parameter (`--since`).
        flag: String,
        /// What was given.
        input: String,
    },
    /// The end is not after the start.
    #[error("until {until} must be after since {since}")]
    Empty {
        /// Start.
        since: Timestamp,
        /// End.
        until: Timestamp,
    },
}

/// Reads `input` given for `flag`, relative forms counted back from `now`.
pub fn parse_time(flag: &str, input: &str, now: Timestamp) -> Result<Timestamp, PeriodError> {
    let invalid = || PeriodError::Invalid {
        flag: flag.to_owned(),
        input: input.to_owned(),
    };
    let s = input.trim();
    if let Ok(t) = s.parse::<Timestamp>() {
        return Ok(t);
    }
    if let Ok(d) = s.parse::<jiff::civil::Date>() {
        return d
            .to_zoned(jiff::tz::TimeZone::UTC)
            .map(|z| z.timestamp())
            .map_err(|_| invalid());
    }
    let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(invalid)?;
    let (digits, unit) = s.split_at(split);
    let n: i64 = digits.parse().map_err(|_| invalid())?;
    let secs = match unit {
        "m" | "min" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(invalid()),
    };
    let back = n.checked_mul(secs).ok_or_else(invalid)?;
    now.checked_sub(SignedDuration::from_secs(back))
        .map_err(|_| invalid())
}

/// The period `[since, until)`; `until` defaults to `now`.
pub fn parse_period(
    since: &str,
    until: Option<&str>,
    now: Timestamp,
) -> Result<(Timestamp, Timestamp), PeriodError> {
    let since = parse_time("since", since, now)?;
    let until = match until {
        Some(u) => parse_time("until", u, now)?,
        None => now,
    };
    if until <= since {
        return Err(PeriodError::Empty { since, until });
    }
    Ok((since, until))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn accepts_rfc3339_dates_and_relative_forms() {
        let now = t("2026-12-03T06:00:00Z");
        assert_eq!(
            parse_time("--since", "2026-12-02", now).unwrap(),
            t("2026-12-02T00:00:00Z")
        );
        assert_eq!(
            parse_time("--since", "2026-12-02T10:00:00+01:00", now).unwrap(),
            t("2026-12-02T09:00:00Z")
        );
        assert_eq!(
            parse_time("--since", "30d", now).unwrap(),
            t("2026-11-03T06:00:00Z")
        );
        assert_eq!(
            parse_time("--since", "12h", now).unwrap(),
            t("2026-12-02T18:00:00Z")
        );
        assert_eq!(
            parse_time("--since", "2w", now).unwrap(),
            t("2026-11-19T06:00:00Z")
        );
    }

    #[test]
    fn refuses_what_it_cannot_read_naming_the_input() {
        let now = t("2026-12-03T06:00:00Z");
        for bad in ["yesterday", "30", "d", "2026-13-01", "30y", ""] {
            let e = parse_time("--since", bad, now).unwrap_err().to_string();
            assert!(e.contains(&format!("`{bad}`")), "{e}");
            assert!(e.starts_with("invalid --since"), "{e}");
        }
        assert!(matches!(
            parse_period("2026-12-02", Some("2026-12-01"), now),
            Err(PeriodError::Empty { .. })
        ));
        assert_eq!(
            parse_period("1d", None, now).unwrap(),
            (t("2026-12-02T06:00:00Z"), now)
        );
    }
}
