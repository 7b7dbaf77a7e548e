//! Prometheus metrics, rendered by hand in the text exposition format: the
//! handful of series we need do not justify a metrics framework.

use signoff_core::Decision;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the decision latency histogram buckets.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// Upper bounds (seconds) of the buckets of how long reviewers took: a
/// second to a day.
const WAIT_BUCKETS: [f64; 12] = [
    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 14400.0, 86400.0,
];

/// A Prometheus histogram over fixed `bounds`, lock-free.
#[derive(Debug)]
struct Histogram<const N: usize> {
    bounds: &'static [f64; N],
    buckets: [AtomicU64; N],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl<const N: usize> Histogram<N> {
    fn new(bounds: &'static [f64; N]) -> Self {
        Histogram {
            bounds,
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }

    fn observe(&self, took: Duration) {
        let secs = took.as_secs_f64();
        if let Some(i) = self.bounds.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(
            u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, b) in self.bounds.iter().enumerate() {
            cumulative += load(&self.buckets[i]);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cumulative}");
        }
        let count = load(&self.count);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum {}", load(&self.sum_micros) as f64 / 1e6);
        let _ = writeln!(out, "{name}_count {count}");
    }
}

/// Counters and histograms updated by the handlers.
#[derive(Debug)]
pub struct Metrics {
    decisions: [AtomicU64; 3],
    decision_latency: Histogram<{ BUCKETS.len() }>,
    review_wait: Histogram<{ WAIT_BUCKETS.len() }>,
    reviews_recorded: AtomicU64,
    reviews_refused: AtomicU64,
    claims_refused: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            decisions: Default::default(),
            decision_latency: Histogram::new(&BUCKETS),
            review_wait: Histogram::new(&WAIT_BUCKETS),
            reviews_recorded: AtomicU64::new(0),
            reviews_refused: AtomicU64::new(0),
            claims_refused: AtomicU64::new(0),
        }
    }
}

fn decision_slot(d: Decision) -> usize {
    match d {
        Decision::Allow => 0,
        Decision::Deny => 1,
        Decision::ApprovalRequired => 2,
    }
}

impl Metrics {
    /// Counts one submission's verdict and how long deciding it took.
    pub fn record_decision(&self, decision: Decision, took: Duration) {
        self.decisions[decision_slot(decision)].fetch_add(1, Ordering::Relaxed);
        self.decision_latency.observe(took);
    }

    /// Counts a request decided by its reviewers (the review that approved
    /// or denied it) and how long it waited for them since it was submitted.
    pub fn record_reviewed_decision(&self, waited: Duration) {
        self.review_wait.observe(waited);
    }

    /// Counts a review, recorded or refused.
    pub fn record_review(&self, refused: bool) {
        if refused {
            &self.reviews_refused
        } else {
            &self.reviews_recorded
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a refused claim.
    pub fn record_claim_refused(&self) {
        self.claims_refused.fetch_add(1, Ordering::Relaxed);
    }

    /// Renders every series; `by_status` comes from the database,
    /// `hidden_probes` from the engine
    /// ([`signoff_engine::Engine::hidden_request_probes`]).
    pub fn render(
        &self,
        by_status: &[(signoff_core::RequestStatus, u64)],
        hidden_probes: u64,
    ) -> String {
        let mut out = String::new();
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "# HELP signoff_decisions_total Policy verdicts given to submitted requests."
        );
        let _ = writeln!(out, "# TYPE signoff_decisions_total counter");
        for d in [Decision::Allow, Decision::Deny, Decision::ApprovalRequired] {
            let _ = writeln!(
                out,
                "signoff_decisions_total{{verdict=\"{d}\"}} {}",
                load(&self.decisions[decision_slot(d)])
            );
        }
        self.decision_latency.render(
            &mut out,
            "signoff_decision_duration_seconds",
            "Time to decide and durably record a submission (policy verdict).",
        );
        self.review_wait.render(
            &mut out,
            "signoff_review_wait_seconds",
            "Time from submission to the review that approved or denied a request.",
        );
        let _ = writeln!(out, "# HELP signoff_reviews_total Reviews by result.");
        let _ = writeln!(out, "# TYPE signoff_reviews_total counter");
        let _ = writeln!(
            out,
            "signoff_reviews_total{{result=\"recorded\"}} {}",
            load(&self.reviews_recorded)
        );
        let _ = writeln!(
            out,
            "signoff_reviews_total{{result=\"refused\"}} {}",
            load(&self.reviews_refused)
        );
        let _ = writeln!(out, "# HELP signoff_claims_refused_total Refused claims (wrong digest, reuse, policy change).");
        let _ = writeln!(out, "# TYPE signoff_claims_refused_total counter");
        let _ = writeln!(
            out,
            "signoff_claims_refused_total {}",
            load(&self.claims_refused)
        );
        let _ = writeln!(out, "# HELP signoff_hidden_request_probes_total Lookups of a request id the caller may not see (another principal's), answered as unknown and not recorded as audit events.");
        let _ = writeln!(out, "# TYPE signoff_hidden_request_probes_total counter");
        let _ = writeln!(out, "signoff_hidden_request_probes_total {hidden_probes}");
        let _ = writeln!(out, "# HELP signoff_requests Requests by status.");
        let _ = writeln!(out, "# TYPE signoff_requests gauge");
        for status in signoff_core::RequestStatus::ALL {
            let n = by_status
                .iter()
                .find(|(s, _)| *s == status)
                .map(|(_, n)| *n)
                .unwrap_or(0);
            let _ = writeln!(out, "signoff_requests{{status=\"{status}\"}} {n}");
        }
        let pending = by_status
            .iter()
            .find(|(s, _)| *s == signoff_core::RequestStatus::Pending)
            .map(|(_, n)| *n)
            .unwrap_or(0);
        let _ = writeln!(
            out,
            "# HELP signoff_pending_requests Requests waiting for reviewers."
        );
        let _ = writeln!(out, "# TYPE signoff_pending_requests gauge");
        let _ = writeln!(out, "signoff_pending_requests {pending}");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str, series: &str) -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no series {series} in\n{text}"))
    }

    #[test]
    fn histograms_are_cumulative_and_counters_count_what_they_say() {
        let m = Metrics::default();
        m.record_decision(Decision::Allow, Duration::from_micros(300));
        m.record_decision(Decision::Deny, Duration::from_millis(20));
        m.record_decision(Decision::ApprovalRequired, Duration::from_secs(9));
        m.record_review(false);
        m.record_review(true);
        m.record_review(true);
        m.record_claim_refused();
        m.record_reviewed_decision(Duration::from_secs(42));
        let text = m.render(&[], 5);
        for (series, n) in [
            ("signoff_decisions_total{verdict=\"allow\"}", 1),
            ("signoff_decisions_total{verdict=\"deny\"}", 1),
            ("signoff_decisions_total{verdict=\"approval_required\"}", 1),
            ("signoff_decision_duration_seconds_bucket{le=\"0.0005\"}", 1),
            ("signoff_decision_duration_seconds_bucket{le=\"0.025\"}", 2),
            ("signoff_decision_duration_seconds_bucket{le=\"5\"}", 2),
            ("signoff_decision_duration_seconds_bucket{le=\"+Inf\"}", 3),
            ("signoff_decision_duration_seconds_count", 3),
            ("signoff_review_wait_seconds_bucket{le=\"30\"}", 0),
            ("signoff_review_wait_seconds_bucket{le=\"60\"}", 1),
            ("signoff_review_wait_seconds_count", 1),
            ("signoff_reviews_total{result=\"recorded\"}", 1),
            ("signoff_reviews_total{result=\"refused\"}", 2),
            ("signoff_claims_refused_total", 1),
            ("signoff_hidden_request_probes_total", 5),
            ("signoff_pending_requests", 0),
        ] {
            assert_eq!(value(&text, series), n, "{series} in\n{text}");
        }
        assert!(
            text.contains("signoff_review_wait_seconds_sum 42\n"),
            "{text}"
        );
    }
}
