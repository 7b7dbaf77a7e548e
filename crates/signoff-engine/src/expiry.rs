//! Bookkeeping of the expiry sweeper: requests parked after a failure to
//! expire them, retried with exponential backoff so that one bad request
//! (unreadable, or refused by the database) neither floods the log nor
//! holds up the others.

use std::collections::HashMap;
use std::time::Duration;
use tokio::time::Instant;

/// Requests looked at per round (plus the parked ones).
pub(crate) const BATCH: usize = 200;

/// Longest sleep when nothing is due within it.
pub(crate) const IDLE_WAKE: Duration = Duration::from_secs(60);

/// Longest pause before retrying a parked request.
pub(crate) const MAX_PARK: Duration = Duration::from_secs(300);

/// Longest pause after a whole sweep failed (database away).
pub(crate) const MAX_SWEEP_BACKOFF: Duration = Duration::from_secs(60);

/// `1 s · 2^(failures-1)`, at most `max`.
pub(crate) fn backoff(failures: u32, max: Duration) -> Duration {
    let exp = failures.saturating_sub(1).min(20);
    Duration::from_secs(1u64 << exp).min(max)
}

/// What one round did and when the next should run.
#[derive(Debug)]
pub(crate) struct Sweep {
    /// Requests expired or lapsed.
    pub(crate) expired: usize,
    /// Sleep this long (unless a new deadline appears first).
    pub(crate) wake: Duration,
}

#[derive(Debug)]
struct Entry {
    failures: u32,
    retry_at: Instant,
    error: String,
}

/// Requests whose expiry failed, by id.
#[derive(Debug, Default)]
pub(crate) struct Parked {
    entries: HashMap<String, Entry>,
}

impl Parked {
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// When `id` may be tried again, if it is parked.
    pub(crate) fn retry_at(&self, id: &str) -> Option<Instant> {
        self.entries.get(id).map(|e| e.retry_at)
    }

    /// Records a failure; returns the pause before the next attempt.
    pub(crate) fn fail(&mut self, id: &str, error: String, now: Instant) -> Duration {
        let entry = self.entries.entry(id.to_owned()).or_insert(Entry {
            failures: 0,
            retry_at: now,
            error: String::new(),
        });
        entry.failures = entry.failures.saturating_add(1);
        let delay = backoff(entry.failures, MAX_PARK);
        entry.retry_at = now + delay;
        entry.error = error;
        delay
    }

    pub(crate) fn clear(&mut self, id: &str) {
        self.entries.remove(id);
    }

    pub(crate) fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.entries.retain(|id, _| keep(id));
    }

    /// The error of some parked request (for one-shot callers).
    pub(crate) fn first_error(&self) -> Option<String> {
        let mut ids: Vec<&String> = self.entries.keys().collect();
        ids.sort();
        ids.first().and_then(|id| {
            self.entries
                .get(*id)
                .map(|e| format!("request {id}: {}", e.error))
        })
    }

    /// One line for `/readyz`.
    pub(crate) fn summary(&self) -> Option<String> {
        let first = self.first_error()?;
        Some(format!(
            "{} request(s) parked after failing to expire, retried with backoff (e.g. {first})",
            self.entries.len()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let secs: Vec<u64> = (1..=10).map(|f| backoff(f, MAX_PARK).as_secs()).collect();
        assert_eq!(secs, vec![1, 2, 4, 8, 16, 32, 64, 128, 256, 300]);
        assert_eq!(backoff(u32::MAX, MAX_SWEEP_BACKOFF), MAX_SWEEP_BACKOFF);
    }

    #[test]
    fn parked_requests_wait_longer_each_time() {
        let mut p = Parked::default();
        let t0 = Instant::now();
        assert_eq!(p.fail("a", "boom".into(), t0), Duration::from_secs(1));
        assert_eq!(p.fail("a", "boom".into(), t0), Duration::from_secs(2));
        assert_eq!(p.retry_at("a"), Some(t0 + Duration::from_secs(2)));
        assert!(p.summary().is_some_and(|s| s.contains("request a: boom")));
        p.clear("a");
        assert_eq!(p.len(), 0);
        assert!(p.summary().is_none());
    }
}
