//! The ledger for auditors: the latest signed checkpoint, the verifier key,
//! the entries with their exact leaf bytes, and RFC 9162 inclusion and
//! consistency proofs. Everything here needs the `ReadAudit` permission
//! (auditor or admin), checked before the query is even parsed.

use crate::extract::{Caller, QueryParams};
use crate::problem::ApiError;
use crate::AppState;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::Deserialize;
use signoff_core::wire::{LedgerEntry, LedgerEntryPage, Problem, ProofHashes};
use signoff_engine::principals::Operator;
use signoff_engine::EngineError;
use signoff_ledger::leaf;

/// Most entries one `GET /v1/ledger/entries` returns.
pub const MAX_ENTRIES_PAGE: u64 = 1000;

const TEXT: &str = "text/plain; charset=utf-8";

/// The ledger routes, merged into the main router.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/ledger/checkpoint", get(checkpoint))
        .route("/v1/ledger/key", get(key))
        .route("/v1/ledger/entries", get(entries))
        .route("/v1/ledger/proof/inclusion", get(inclusion))
        .route("/v1/ledger/proof/consistency", get(consistency))
}

/// An authenticated caller the engine granted read access to the ledger.
/// Extracted before the query, so a caller without the permission gets 403
/// whatever it sent.
pub(crate) struct Auditor(pub signoff_engine::Caller);

impl FromRequestParts<AppState> for Auditor {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Caller(caller) = Caller::from_request_parts(parts, state).await?;
        state.engine.ledger(Operator::Caller(&caller))?;
        Ok(Auditor(caller))
    }
}

impl Auditor {
    fn ledger<'a>(
        &self,
        state: &'a AppState,
    ) -> Result<signoff_engine::ledger::LedgerReader<'a>, ApiError> {
        Ok(state.engine.ledger(Operator::Caller(&self.0))?)
    }
}

fn text(body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, TEXT),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

fn not_found(detail: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not-found", "Not found", detail)
}

/// The latest signed checkpoint: a C2SP `signed-note` whose body is a C2SP
/// `tlog-checkpoint` (origin, tree size, base64 RFC 6962 root). Signed at
/// most one second after an append while the gateway runs.
#[utoipa::path(get, path = "/v1/ledger/checkpoint", tag = "ledger",
    responses((status = 200, content_type = "text/plain; charset=utf-8", body = String, description = "The signed note"),
        (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem, description = "No checkpoint signed yet, or no ledger key")))]
pub(crate) async fn checkpoint(
    State(state): State<AppState>,
    auditor: Auditor,
) -> Result<Response, ApiError> {
    let ledger = auditor.ledger(&state)?;
    match ledger.latest_checkpoint().await? {
        Some(cp) => Ok(text(cp.note)),
        None if ledger.vkey().is_none() => Err(not_found(
            "this gateway has no ledger signing key, so it signs no checkpoints",
        )),
        None => Err(not_found(
            "no checkpoint has been signed yet; one is signed within a second of the first ledger entry",
        )),
    }
}

/// The verifier key of the checkpoints, in the Go `note` format
/// `<name>+<hex key id>+<base64(0x01 ‖ Ed25519 public key)>`, one line.
/// Compare it with a copy obtained out of band before trusting it.
#[utoipa::path(get, path = "/v1/ledger/key", tag = "ledger",
    responses((status = 200, content_type = "text/plain; charset=utf-8", body = String, description = "The verifier key line"),
        (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem, description = "No ledger key configured")))]
pub(crate) async fn key(
    State(state): State<AppState>,
    auditor: Auditor,
) -> Result<Response, ApiError> {
    match auditor.ledger(&state)?.vkey() {
        Some(vkey) => Ok(text(format!("{vkey}\n"))),
        None => Err(not_found("this gateway has no ledger signing key")),
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct EntriesQuery {
    /// First index (default 0).
    start: Option<u64>,
    /// End index, exclusive (default: the current ledger size). At most
    /// 1,000 entries are returned; `next` says where the rest starts.
    end: Option<u64>,
}

/// Ledger entries `[start, end)`: each with its exact leaf bytes (base64)
/// and the event they encode.
#[utoipa::path(get, path = "/v1/ledger/entries", tag = "ledger", params(EntriesQuery),
    responses((status = 200, body = LedgerEntryPage), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 403, body = Problem), (status = 422, body = Problem)))]
pub(crate) async fn entries(
    State(state): State<AppState>,
    auditor: Auditor,
    QueryParams(q): QueryParams<EntriesQuery>,
) -> Result<Json<LedgerEntryPage>, ApiError> {
    let ledger = auditor.ledger(&state)?;
    let size = ledger.size().await?;
    let start = q.start.unwrap_or(0);
    let end = q.end.unwrap_or(size);
    if start > end {
        return Err(ApiError::invalid(format!(
            "start {start} is greater than end {end}"
        )));
    }
    if end > size {
        return Err(ApiError::invalid(format!(
            "end {end} is beyond the ledger size {size} (end is exclusive)"
        )));
    }
    let stop = end.min(start.saturating_add(MAX_ENTRIES_PAGE));
    let next = (stop < end).then_some(stop);
    let mut entries = Vec::new();
    if stop > start {
        let want = usize::try_from(stop - start).unwrap_or(usize::MAX);
        let events = ledger.entries(start, want).await?;
        entries.reserve(want);
        for (event, expected) in events.into_iter().zip(start..stop) {
            if event.index != Some(expected) {
                return Err(EngineError::Internal(format!(
                    "ledger entry {expected} missing (found {:?} in its place)",
                    event.index
                ))
                .into());
            }
            let bytes = leaf::encode(&event);
            entries.push(LedgerEntry::new(expected, B64.encode(bytes), event));
        }
        if entries.len() != want {
            return Err(EngineError::Internal(format!(
                "ledger entries {}..{stop} missing below the ledger size {size}",
                start + entries.len() as u64
            ))
            .into());
        }
    }
    Ok(Json(LedgerEntryPage { entries, next }))
}

fn hashes(proof: Vec<signoff_ledger::Hash>) -> Json<ProofHashes> {
    Json(ProofHashes {
        hashes: proof.iter().map(|h| B64.encode(h)).collect(),
    })
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct InclusionQuery {
    /// The entry's index.
    index: u64,
    /// The tree size (e.g. a checkpoint's); `index < size ≤ ledger size`.
    size: u64,
}

/// The RFC 9162 §2.1.3 inclusion proof of entry `index` in the tree of size
/// `size`, leaf's sibling first.
#[utoipa::path(get, path = "/v1/ledger/proof/inclusion", tag = "ledger", params(InclusionQuery),
    responses((status = 200, body = ProofHashes), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 403, body = Problem), (status = 422, body = Problem)))]
pub(crate) async fn inclusion(
    State(state): State<AppState>,
    auditor: Auditor,
    QueryParams(q): QueryParams<InclusionQuery>,
) -> Result<Json<ProofHashes>, ApiError> {
    if q.index >= q.size {
        return Err(ApiError::invalid(format!(
            "index {} is not inside a tree of size {} (index must be below size)",
            q.index, q.size
        )));
    }
    let ledger = auditor.ledger(&state)?;
    check_size(&ledger, "size", q.size).await?;
    Ok(hashes(ledger.inclusion_proof(q.index, q.size).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConsistencyQuery {
    /// The older tree size.
    from: u64,
    /// The newer tree size; `from ≤ to ≤ ledger size`.
    to: u64,
}

/// The RFC 9162 §2.1.4 consistency proof between the trees of sizes `from`
/// and `to` (empty when `from` is 0 or equals `to`).
#[utoipa::path(get, path = "/v1/ledger/proof/consistency", tag = "ledger", params(ConsistencyQuery),
    responses((status = 200, body = ProofHashes), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 403, body = Problem), (status = 422, body = Problem)))]
pub(crate) async fn consistency(
    State(state): State<AppState>,
    auditor: Auditor,
    QueryParams(q): QueryParams<ConsistencyQuery>,
) -> Result<Json<ProofHashes>, ApiError> {
    if q.from > q.to {
        return Err(ApiError::invalid(format!(
            "from {} is greater than to {}",
            q.from, q.to
        )));
    }
    let ledger = auditor.ledger(&state)?;
    check_size(&ledger, "to", q.to).await?;
    Ok(hashes(ledger.consistency_proof(q.from, q.to).await?))
}

async fn check_size(
    ledger: &signoff_engine::ledger::LedgerReader<'_>,
    name: &str,
    value: u64,
) -> Result<(), ApiError> {
    let size = ledger.size().await?;
    if value > size {
        return Err(ApiError::invalid(format!(
            "{name} {value} is beyond the ledger size {size}"
        )));
    }
    Ok(())
}
