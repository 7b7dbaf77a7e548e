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

/// Counters and histograms updated by the handlers.
#[derive(Debug, Default)]
pub struct Metrics {
    decisions: [AtomicU64; 3],
    latency_buckets: [AtomicU64; BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_micros: AtomicU64,
    reviews_recorded: AtomicU64,
    reviews_refused: AtomicU64,
    claims_refused: AtomicU64,
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
        let secs = took.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.latency_buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
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
        let _ = writeln!(out, "# HELP signoff_decision_duration_seconds Time to decide and durably record a submission.");
        let _ = writeln!(out, "# TYPE signoff_decision_duration_seconds histogram");
        let mut cumulative = 0;
        for (i, b) in BUCKETS.iter().enumerate() {
            cumulative += load(&self.latency_buckets[i]);
            let _ = writeln!(
                out,
                "signoff_decision_duration_seconds_bucket{{le=\"{b}\"}} {cumulative}"
            );
        }
        let count = load(&self.latency_count);
        let _ = writeln!(
            out,
            "signoff_decision_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            out,
            "signoff_decision_duration_seconds_sum {}",
            load(&self.latency_sum_micros) as f64 / 1e6
        );
        let _ = writeln!(out, "signoff_decision_duration_seconds_count {count}");
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
