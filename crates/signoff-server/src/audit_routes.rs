//! Audit for auditors over the API: the period report (JSON, CSV or HTML),
//! an evidence bundle of a period, and a verification run of the whole
//! ledger recorded as a `ledger_verified` event. Like the ledger routes,
//! everything here needs the `ReadAudit` permission, checked first.

use crate::extract::QueryParams;
use crate::ledger_routes::Auditor;
use crate::problem::ApiError;
use crate::AppState;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use signoff_audit::period::parse_period;
use signoff_audit::report::{render, Format};
use signoff_audit::VerificationSummary;
use signoff_core::wire::Problem;
use signoff_engine::principals::Operator;

/// The audit routes, merged into the main router.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/audit/report", get(report))
        .route("/v1/audit/bundle", get(bundle))
        .route("/v1/audit/verify", post(verify))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct PeriodQuery {
    /// Start of the period (inclusive): `2026-12-02`, an RFC 3339 time, or
    /// a time before now such as `30d`.
    since: String,
    /// End of the period (exclusive), same forms; default now.
    until: Option<String>,
    /// Report format: `json` (default), `csv` or `html`.
    format: Option<String>,
}

impl PeriodQuery {
    fn period(&self, state: &AppState) -> Result<(jiff::Timestamp, jiff::Timestamp), ApiError> {
        parse_period(&self.since, self.until.as_deref(), state.engine.now())
            .map_err(|e| ApiError::invalid(e.to_string()))
    }
}

/// The population of privileged actions of a period with its exceptions,
/// resting on a signed checkpoint (signed now if none covers the period).
#[utoipa::path(get, path = "/v1/audit/report", tag = "audit", params(PeriodQuery),
    responses((status = 200, description = "The report: JSON (application/json), CSV (text/csv) or HTML (text/html)", body = Object),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub(crate) async fn report(
    State(state): State<AppState>,
    auditor: Auditor,
    QueryParams(q): QueryParams<PeriodQuery>,
) -> Result<Response, ApiError> {
    let (since, until) = q.period(&state)?;
    let format: Format = q
        .format
        .as_deref()
        .unwrap_or("json")
        .parse()
        .map_err(ApiError::invalid)?;
    let report = state
        .engine
        .audit_report(Operator::Caller(&auditor.0), since, until)
        .await?;
    let disposition = match format {
        // a spreadsheet file to save; HTML and JSON are shown as they are
        Format::Csv => "attachment; filename=\"signoff-report.csv\"",
        Format::Json | Format::Html => "inline",
    };
    Ok((
        [
            (header::CONTENT_TYPE, format.content_type()),
            (header::CACHE_CONTROL, "no-store"),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        render(&report, format),
    )
        .into_response())
}

/// One entry of a bundle: its leaf bytes and its inclusion proof.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct BundleEntry {
    /// Ledger index.
    index: u64,
    /// Base64 of the leaf bytes.
    leaf: String,
    /// Base64 hashes of the inclusion proof into the checkpoint (RFC 9162 order).
    proof: Vec<String>,
}

/// An evidence bundle as JSON: `signoff audit export` writes it as the
/// bundle directory that `signoff audit verify --bundle` checks offline.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct BundleBody {
    /// The gateway's verifier key (compare it with one obtained out of band).
    vkey: String,
    /// The covering checkpoint's signed note.
    checkpoint: String,
    /// Its size.
    checkpoint_size: u64,
    /// The entries of the period, in order.
    entries: Vec<BundleEntry>,
}

/// The entries of a period with inclusion proofs into a signed checkpoint.
#[utoipa::path(get, path = "/v1/audit/bundle", tag = "audit", params(PeriodQuery),
    responses((status = 200, body = BundleBody), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem, description = "No entries in the period")))]
pub(crate) async fn bundle(
    State(state): State<AppState>,
    auditor: Auditor,
    QueryParams(q): QueryParams<PeriodQuery>,
) -> Result<Json<BundleBody>, ApiError> {
    let (since, until) = q.period(&state)?;
    let b = state
        .engine
        .audit_bundle(Operator::Caller(&auditor.0), since, until)
        .await?;
    Ok(Json(BundleBody {
        vkey: b.vkey,
        checkpoint: b.checkpoint,
        checkpoint_size: b.checkpoint_size,
        entries: b
            .entries
            .into_iter()
            .zip(b.proofs)
            .map(|((index, leaf), proof)| BundleEntry {
                index,
                leaf: B64.encode(leaf),
                proof: proof.iter().map(|h| B64.encode(h)).collect(),
            })
            .collect(),
    }))
}

/// The result of a verification run.
#[derive(Debug, Serialize)]
pub(crate) struct VerifyBody {
    /// What was checked and every finding (typed, `kind` in snake_case).
    #[serde(flatten)]
    summary: VerificationSummary,
    /// Index of the `ledger_verified` event that records this run.
    recorded_index: Option<u64>,
}

/// Replays the whole ledger against its signed checkpoints with the
/// gateway's key and records the result as a `ledger_verified` audit event.
/// Findings are in the body (200); an auditor who must not trust the
/// gateway also verifies on their side (`signoff audit verify` does both).
#[utoipa::path(post, path = "/v1/audit/verify", tag = "audit",
    responses((status = 200, description = "entries, size, checkpoints, latest_size, latest_root, origin, elapsed_ms, findings, recorded_index", body = Object),
        (status = 401, body = Problem), (status = 403, body = Problem)))]
pub(crate) async fn verify(
    State(state): State<AppState>,
    auditor: Auditor,
) -> Result<Json<VerifyBody>, ApiError> {
    let (summary, recorded_index) = state
        .engine
        .verify_ledger_recorded(Operator::Caller(&auditor.0))
        .await?;
    Ok(Json(VerifyBody {
        summary,
        recorded_index,
    }))
}
