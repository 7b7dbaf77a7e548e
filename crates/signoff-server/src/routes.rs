//! The handlers and the OpenAPI document generated from them.

use crate::extract::{Caller, JsonBody, QueryParams};
use crate::problem::ApiError;
use crate::{AppState, MAX_BODY_BYTES};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use signoff_core::wire::{
    CancelBody, ClaimBody, CreatedCredential, CreatedPrincipal, EventPage, LinkIdentityBody,
    NewCredentialBody, NewPrincipal, OutcomeBody, PolicySetInfo, Problem, Readiness, RequestPage,
    RequestView, ReviewBody, SubmitRequest, WhoAmI,
};
use signoff_core::{Credential, Identity, Principal, PrincipalAttributes, RequestStatus};
use signoff_engine::identity::NewCredential;
use signoff_engine::principals::Operator;
use signoff_engine::{EngineError, RequestFilter, Submitted};
use std::time::{Duration, Instant};
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(title = "signoff", description = "Action-level approval gateway for AI agents and automation pipelines."),
    paths(
        submit, list, get_one, wait, review, cancel, claim, outcome, whoami, list_events, policy_info,
        reload_policy, list_principals, add_principal, revoke_principal, set_principal_attributes, list_credentials,
        add_credential, revoke_credential, list_identities, link_identity, healthz, readyz, metrics,
        crate::ledger_routes::checkpoint, crate::ledger_routes::key, crate::ledger_routes::entries,
        crate::ledger_routes::inclusion, crate::ledger_routes::consistency,
        crate::audit_routes::report, crate::audit_routes::bundle, crate::audit_routes::verify
    ),
    components(schemas(Problem)),
    modifiers(&BearerAuth, &ProblemResponses, &FlattenedParts)
)]
struct ApiDoc;

/// Types that responses embed with `#[serde(flatten)]` (a request view is
/// its action request plus the gateway's fields) must not forbid other
/// properties in the document: `deny_unknown_fields` makes utoipa write
/// `additionalProperties: false`, and every request view would then
/// violate its own schema (found by schemathesis). Incoming bodies keep
/// their strict schemas.
struct FlattenedParts;

impl utoipa::Modify for FlattenedParts {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{RefOr, Schema};
        let Some(components) = openapi.components.as_mut() else {
            return;
        };
        for name in ["ActionRequest"] {
            if let Some(RefOr::T(Schema::Object(object))) = components.schemas.get_mut(name) {
                object.additional_properties = None;
            }
        }
    }
}

/// Every error the API can answer, on every operation, as the
/// `application/problem+json` it really is (found by schemathesis: the
/// generated document named only some statuses, as `application/json`).
struct ProblemResponses;

impl utoipa::Modify for ProblemResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let problem = || {
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build()
        };
        let common: [(&str, &str); 8] = [
            ("400", "Malformed request"),
            ("401", "Missing, unknown or revoked credentials"),
            ("403", "Not allowed for this role"),
            ("404", "Not found"),
            ("409", "Conflict with the current state"),
            ("415", "Unsupported content type"),
            ("422", "Invalid request"),
            (
                "503",
                "Database unavailable or ledger not trusted; retry later",
            ),
        ];
        for item in openapi.paths.paths.values_mut() {
            let ops = [
                item.get.as_mut(),
                item.post.as_mut(),
                item.put.as_mut(),
                item.delete.as_mut(),
                item.patch.as_mut(),
            ];
            for op in ops.into_iter().flatten() {
                for resp in op.responses.responses.values_mut() {
                    if let utoipa::openapi::RefOr::T(r) = resp {
                        if let Some(c) = r.content.shift_remove("application/json") {
                            let is_problem = matches!(
                                &c.schema,
                                Some(utoipa::openapi::RefOr::Ref(r)) if r.ref_location.ends_with("/Problem")
                            );
                            let key = if is_problem {
                                "application/problem+json"
                            } else {
                                "application/json"
                            };
                            r.content.insert(key.to_owned(), c);
                        }
                    }
                }
                for (status, description) in common {
                    op.responses
                        .responses
                        .entry(status.to_owned())
                        .or_insert_with(|| {
                            utoipa::openapi::RefOr::T(
                                ResponseBuilder::new()
                                    .description(description)
                                    .content("application/problem+json", problem())
                                    .build(),
                            )
                        });
                }
            }
        }
    }
}

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        openapi.security = Some(vec![utoipa::openapi::security::SecurityRequirement::new(
            "bearer",
            Vec::<String>::new(),
        )]);
    }
}

pub(crate) fn openapi_json() -> String {
    ApiDoc::openapi().to_pretty_json().unwrap_or_default()
}

pub(crate) fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/requests", post(submit).get(list))
        .route("/v1/requests/{id}", get(get_one))
        .route("/v1/requests/{id}/wait", get(wait))
        .route("/v1/requests/{id}/reviews", post(review))
        .route("/v1/requests/{id}/cancel", post(cancel))
        .route("/v1/requests/{id}/claim", post(claim))
        .route("/v1/requests/{id}/outcome", post(outcome))
        .route("/v1/whoami", get(whoami))
        .route("/v1/audit/events", get(list_events))
        .route("/v1/policy", get(policy_info))
        .route("/v1/policy/reload", post(reload_policy))
        .route("/v1/principals", get(list_principals).post(add_principal))
        .route("/v1/principals/{name}/revoke", post(revoke_principal))
        .route(
            "/v1/principals/{name}/attributes",
            put(set_principal_attributes),
        )
        .route(
            "/v1/principals/{name}/credentials",
            get(list_credentials).post(add_credential),
        )
        .route(
            "/v1/principals/{name}/credentials/{id}/revoke",
            post(revoke_credential),
        )
        .route(
            "/v1/principals/{name}/identities",
            get(list_identities).post(link_identity),
        )
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(crate::ledger_routes::router())
        .merge(crate::audit_routes::router())
        .route(
            "/openapi.json",
            get(|| async { ([(header::CONTENT_TYPE, "application/json")], openapi_json()) }),
        )
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not-found",
                "Not found",
                "no such endpoint",
            )
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
                "method not allowed on this endpoint",
            )
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

fn view(r: &signoff_core::RequestRecord) -> Json<RequestView> {
    Json(RequestView::from(r))
}

/// Submit an action request; the verdict is in the response.
#[utoipa::path(post, path = "/v1/requests", request_body = SubmitRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Retries with the same key return the same request")),
    responses((status = 201, body = RequestView, description = "Created"), (status = 200, body = RequestView, description = "Replayed by idempotency key"),
        (status = 400, body = Problem, description = "Input outside limits (size, characters, nesting); detail names field and limit"), (status = 422, body = Problem), (status = 401, body = Problem), (status = 503, body = Problem)))]
async fn submit(
    State(state): State<AppState>,
    Caller(caller): Caller,
    headers: HeaderMap,
    JsonBody(body): JsonBody<SubmitRequest>,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .map_err(|_| ApiError::bad_request("Idempotency-Key header is not valid ASCII"))?
                .to_owned(),
        ),
    };
    let (record, how) = state.engine.submit(&caller, body, key).await?;
    let status = match how {
        Submitted::Created => {
            state
                .metrics
                .record_decision(record.verdict.decision, started.elapsed());
            StatusCode::CREATED
        }
        Submitted::Replayed => StatusCode::OK,
    };
    Ok((
        status,
        [(header::LOCATION, format!("/v1/requests/{}", record.id))],
        view(&record),
    )
        .into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    /// Comma-separated statuses.
    status: Option<String>,
    /// Exact action.
    action: Option<String>,
    /// `agent:NAME` or `user:NAME`.
    principal: Option<String>,
    /// Cursor from `next_before`.
    before: Option<String>,
    /// Page size (default 100, max 1000).
    limit: Option<usize>,
}

/// List requests, newest first. Agents see only their own.
#[utoipa::path(get, path = "/v1/requests", params(ListQuery), responses((status = 200, body = RequestPage), (status = 400, body = Problem)))]
async fn list(
    State(state): State<AppState>,
    Caller(caller): Caller,
    QueryParams(q): QueryParams<ListQuery>,
) -> Result<Json<RequestPage>, ApiError> {
    let statuses = match &q.status {
        None => Vec::new(),
        Some(s) => s
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| s.trim().parse::<RequestStatus>())
            .collect::<Result<_, _>>()
            .map_err(ApiError::bad_request)?,
    };
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let filter = RequestFilter {
        statuses,
        action: q.action,
        principal: q.principal,
        before: q.before,
        limit,
    };
    let records = state.engine.list(&caller, filter).await?;
    let next_before = (records.len() == limit)
        .then(|| records.last().map(|r| r.id.clone()))
        .flatten();
    Ok(Json(RequestPage {
        requests: records.iter().map(RequestView::from).collect(),
        next_before,
    }))
}

/// One request.
#[utoipa::path(get, path = "/v1/requests/{id}", responses((status = 200, body = RequestView), (status = 404, body = Problem)))]
async fn get_one(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<Json<RequestView>, ApiError> {
    Ok(view(
        &state
            .engine
            .get(&caller, &id)
            .await
            .map_err(|e| ApiError::from(e).with_request(&id))?,
    ))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
struct WaitQuery {
    /// Longest wait in seconds (default 30, max 300).
    timeout: Option<u64>,
    /// Return as soon as the request's `version` differs from this one
    /// (every review, not only the decision); without it, only a decision
    /// ends the wait.
    since_version: Option<i64>,
}

/// Long-poll: returns as soon as the request is no longer pending (or, with `since_version`, as soon as it changes: each review wakes it), or when the timeout passes (then unchanged).
#[utoipa::path(get, path = "/v1/requests/{id}/wait", params(WaitQuery), responses((status = 200, body = RequestView), (status = 404, body = Problem)))]
async fn wait(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    QueryParams(q): QueryParams<WaitQuery>,
) -> Result<Json<RequestView>, ApiError> {
    let timeout = Duration::from_secs(q.timeout.unwrap_or(30).min(300));
    Ok(view(
        &state
            .engine
            .wait(&caller, &id, q.since_version, timeout)
            .await
            .map_err(|e| ApiError::from(e).with_request(&id))?,
    ))
}

/// Approve or deny. Separation of duties: the requester, the on-behalf-of human and the agent's owner can never review; refused attempts are recorded.
#[utoipa::path(post, path = "/v1/requests/{id}/reviews", request_body = ReviewBody,
    responses((status = 200, body = RequestView), (status = 400, body = Problem, description = "Input outside limits (size, characters, nesting); detail names field and limit"), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
async fn review(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ReviewBody>,
) -> Result<Json<RequestView>, ApiError> {
    // The engine checks the role (and records a refused attempt).
    let result = state
        .engine
        .review(&caller, &id, body.decision, body.reason)
        .await;
    // Only reviews the engine recorded count (a 404 or a bad body is neither).
    match &result {
        Ok(record) => {
            state.metrics.record_review(false);
            // this review decided it when the decision carries its time
            if let (Some(decided), Some(last)) = (record.decided_at, record.reviews.last()) {
                if decided == last.at {
                    let waited = decided.duration_since(record.created_at);
                    state
                        .metrics
                        .record_reviewed_decision(waited.unsigned_abs());
                }
            }
        }
        Err(EngineError::ReviewRefused(_)) => state.metrics.record_review(true),
        Err(_) => {}
    }
    Ok(view(
        &result.map_err(|e| ApiError::from(e).with_request(&id))?,
    ))
}

/// Withdraw a pending or approved request (requester or admin).
#[utoipa::path(post, path = "/v1/requests/{id}/cancel", request_body = CancelBody, responses((status = 200, body = RequestView), (status = 400, body = Problem, description = "Input outside limits (size, characters, nesting); detail names field and limit"), (status = 404, body = Problem), (status = 409, body = Problem)))]
async fn cancel(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    body: Option<JsonBody<CancelBody>>,
) -> Result<Json<RequestView>, ApiError> {
    let reason = body.and_then(|b| b.0.reason);
    Ok(view(
        &state
            .engine
            .cancel(&caller, &id, reason)
            .await
            .map_err(|e| ApiError::from(e).with_request(&id))?,
    ))
}

/// Claim the approval right before running the action. The digest must match the approved action; the policy is re-checked; a claim succeeds once.
#[utoipa::path(post, path = "/v1/requests/{id}/claim", request_body = ClaimBody, responses((status = 200, body = RequestView), (status = 400, body = Problem, description = "Input outside limits (size, characters, nesting); detail names field and limit"), (status = 404, body = Problem), (status = 409, body = Problem)))]
async fn claim(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ClaimBody>,
) -> Result<Json<RequestView>, ApiError> {
    let result = state.engine.claim(&caller, &id, &body.digest).await;
    if matches!(result, Err(EngineError::ClaimRefused(_))) {
        state.metrics.record_claim_refused();
    }
    Ok(view(
        &result.map_err(|e| ApiError::from(e).with_request(&id))?,
    ))
}

/// Report what happened when the claimed action ran.
#[utoipa::path(post, path = "/v1/requests/{id}/outcome", request_body = OutcomeBody, responses((status = 200, body = RequestView), (status = 400, body = Problem, description = "Input outside limits (size, characters, nesting); detail names field and limit"), (status = 404, body = Problem), (status = 409, body = Problem)))]
async fn outcome(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<OutcomeBody>,
) -> Result<Json<RequestView>, ApiError> {
    Ok(view(
        &state
            .engine
            .record_outcome(&caller, &id, body)
            .await
            .map_err(|e| ApiError::from(e).with_request(&id))?,
    ))
}

/// The authenticated principal.
#[utoipa::path(get, path = "/v1/whoami", responses((status = 200, body = WhoAmI), (status = 401, body = Problem)))]
async fn whoami(Caller(caller): Caller) -> Json<WhoAmI> {
    Json(WhoAmI {
        principal: caller.principal().clone(),
        credential: caller.credential().map(|c| c.name.clone()),
        gate: caller.bound_gate().map(str::to_owned),
        channel: caller.channel(),
    })
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
struct EventsQuery {
    /// First index to return (default 0).
    from: Option<u64>,
    /// Page size (default 100, max 1000).
    limit: Option<usize>,
}

/// Audit events in log order (auditor or admin).
#[utoipa::path(get, path = "/v1/audit/events", params(EventsQuery), responses((status = 200, body = EventPage), (status = 403, body = Problem)))]
async fn list_events(
    State(state): State<AppState>,
    Caller(caller): Caller,
    QueryParams(q): QueryParams<EventsQuery>,
) -> Result<Json<EventPage>, ApiError> {
    let from = q.from.unwrap_or(0);
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let events = state.engine.events(&caller, from, limit).await?;
    let next_after = events.last().and_then(|e| e.index).map(|i| i + 1);
    Ok(Json(EventPage { events, next_after }))
}

/// The active policy set.
#[utoipa::path(get, path = "/v1/policy", responses((status = 200, body = PolicySetInfo)))]
async fn policy_info(
    State(state): State<AppState>,
    Caller(_caller): Caller,
) -> Json<PolicySetInfo> {
    Json(state.engine.policy_info())
}

/// Reload the policy directory (admin). A bad policy set is rejected with its errors and the old set stays active.
#[utoipa::path(post, path = "/v1/policy/reload", responses((status = 200, body = PolicySetInfo), (status = 422, body = Problem)))]
async fn reload_policy(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> Result<Json<PolicySetInfo>, ApiError> {
    Ok(Json(
        state
            .engine
            .reload_policies(Operator::Caller(&caller))
            .await?,
    ))
}

/// All principals (admin).
#[utoipa::path(get, path = "/v1/principals", responses((status = 200, body = [Principal]), (status = 403, body = Problem)))]
async fn list_principals(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> Result<Json<Vec<Principal>>, ApiError> {
    Ok(Json(
        state
            .engine
            .list_principals(Operator::Caller(&caller))
            .await?,
    ))
}

/// Add a principal (admin). The token is returned once.
#[utoipa::path(post, path = "/v1/principals", request_body = NewPrincipal, responses((status = 201, body = CreatedPrincipal), (status = 409, body = Problem)))]
async fn add_principal(
    State(state): State<AppState>,
    Caller(caller): Caller,
    JsonBody(body): JsonBody<NewPrincipal>,
) -> Result<(StatusCode, Json<CreatedPrincipal>), ApiError> {
    let (principal, credential, token) = state
        .engine
        .add_principal(Operator::Caller(&caller), body)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedPrincipal {
            principal,
            token,
            credential: Some(credential),
        }),
    ))
}

/// Revoke a principal (admin).
#[utoipa::path(post, path = "/v1/principals/{name}/revoke", responses((status = 200, body = Principal), (status = 404, body = Problem)))]
async fn revoke_principal(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(name): Path<String>,
) -> Result<Json<Principal>, ApiError> {
    Ok(Json(
        state
            .engine
            .revoke_principal(Operator::Caller(&caller), &name)
            .await?,
    ))
}

/// Replace a principal's attributes (admin); recorded with the acting admin.
#[utoipa::path(put, path = "/v1/principals/{name}/attributes", request_body = PrincipalAttributes,
    responses((status = 200, body = Principal), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn set_principal_attributes(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<PrincipalAttributes>,
) -> Result<Json<Principal>, ApiError> {
    Ok(Json(
        state
            .engine
            .set_principal_attributes(Operator::Caller(&caller), &name, body)
            .await?,
    ))
}

/// A principal's credentials (admin). Secrets are never shown again.
#[utoipa::path(get, path = "/v1/principals/{name}/credentials", responses((status = 200, body = [Credential]), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn list_credentials(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(name): Path<String>,
) -> Result<Json<Vec<Credential>>, ApiError> {
    Ok(Json(
        state
            .engine
            .list_credentials(Operator::Caller(&caller), &name)
            .await?,
    ))
}

/// Issue another credential to a principal (admin): named, optionally
/// expiring and bound to one gate. The token is returned once.
#[utoipa::path(post, path = "/v1/principals/{name}/credentials", request_body = NewCredentialBody, responses((status = 201, body = CreatedCredential), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
async fn add_credential(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<NewCredentialBody>,
) -> Result<(StatusCode, Json<CreatedCredential>), ApiError> {
    let expires_in = match &body.expires_in {
        None => None,
        Some(text) => Some(text.trim().parse::<jiff::SignedDuration>().map_err(|e| {
            ApiError::invalid(format!(
                "expires_in `{text}` is not a duration like `30d` or `12h`: {e}"
            ))
        })?),
    };
    let (credential, token) = state
        .engine
        .add_credential(
            Operator::Caller(&caller),
            &name,
            NewCredential {
                name: body.name,
                gate: body.gate,
                expires_in,
            },
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedCredential { credential, token }),
    ))
}

/// Revoke one credential (admin), by id or name; the principal's other
/// credentials keep working.
#[utoipa::path(post, path = "/v1/principals/{name}/credentials/{id}/revoke", responses((status = 200, body = Credential), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn revoke_credential(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path((name, id)): Path<(String, String)>,
) -> Result<Json<Credential>, ApiError> {
    Ok(Json(
        state
            .engine
            .revoke_credential(Operator::Caller(&caller), &name, &id)
            .await?,
    ))
}

/// A user's linked external identities (admin).
#[utoipa::path(get, path = "/v1/principals/{name}/identities", responses((status = 200, body = [Identity]), (status = 403, body = Problem)))]
async fn list_identities(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(name): Path<String>,
) -> Result<Json<Vec<Identity>>, ApiError> {
    Ok(Json(
        state
            .engine
            .list_identities(Operator::Caller(&caller), &name)
            .await?,
    ))
}

/// Link an external identity (OIDC issuer + subject, Slack or Teams user)
/// to a user (admin); the link records who vouched for it and how.
#[utoipa::path(post, path = "/v1/principals/{name}/identities", request_body = LinkIdentityBody, responses((status = 201, body = Identity), (status = 403, body = Problem), (status = 409, body = Problem)))]
async fn link_identity(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<LinkIdentityBody>,
) -> Result<(StatusCode, Json<Identity>), ApiError> {
    let identity = state
        .engine
        .link_identity(
            Operator::Caller(&caller),
            &name,
            &body.issuer,
            &body.subject,
            body.verified_by.as_deref().unwrap_or("admin"),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(identity)))
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", security(()), responses((status = 200, description = "ok")))]
async fn healthz() -> &'static str {
    "ok\n"
}

/// Readiness: the database answers and no background component is failing;
/// each component's health is listed.
#[utoipa::path(get, path = "/readyz", security(()), responses((status = 200, body = Readiness), (status = 503, body = Problem)))]
async fn readyz(State(state): State<AppState>) -> Result<Json<Readiness>, ApiError> {
    let report = state.engine.readiness().await;
    if report.status == "ready" {
        return Ok(Json(report));
    }
    let mut failing: Vec<String> = Vec::new();
    if report.database.status != "ok" {
        failing.push(format!("database: {}", report.database.detail));
    }
    for (name, c) in &report.components {
        if c.status == "failing" && report.database.status == "ok" {
            failing.push(format!("{name}: {}", c.detail));
        }
    }
    Err(ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "Not ready",
        failing.join("; "),
    ))
}

/// Prometheus metrics. With `metrics_token` configured, only a bearer of that token may read them.
#[utoipa::path(get, path = "/metrics", security((), ("bearer" = [])), responses((status = 200, description = "text exposition format"), (status = 401, body = Problem)))]
async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(expected) = &state.options.metrics_token {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        if !same_secret(presented.as_bytes(), expected.as_bytes()) {
            return (
                [(header::WWW_AUTHENTICATE, "Bearer")],
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthenticated",
                    "Authentication required",
                    "/metrics needs the configured metrics token as `Authorization: Bearer TOKEN`",
                ),
            )
                .into_response();
        }
    }
    let by_status = state.engine.status_counts().await.unwrap_or_default();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        {
            let mut text = state
                .metrics
                .render(&by_status, state.engine.hidden_request_probes());
            // The ledger self-check (engine component), beside the server's series.
            text.push_str(&format!(
                "# HELP signoff_ledger_selfcheck_findings Findings of the latest scheduled ledger self-check (0: clean or not run yet).\n\
                 # TYPE signoff_ledger_selfcheck_findings gauge\n\
                 signoff_ledger_selfcheck_findings {}\n",
                state.engine.ledger_selfcheck_findings()
            ));
            text
        },
    )
        .into_response()
}

/// Compares two secrets in time independent of where they differ (the
/// length may show; the token's content must not).
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
