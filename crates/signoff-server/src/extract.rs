//! Extractors whose rejections are problem+json with a precise detail.

use crate::problem::ApiError;
use crate::AppState;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;
use signoff_engine::Presented;

/// The authenticated caller, from `Authorization: Bearer TOKEN`, with the
/// channel it declares in `Signoff-Channel` (`cli` or `api`; default `api`).
#[derive(Debug, Clone)]
pub struct Caller(pub signoff_engine::Caller);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let value = parts.headers.get(header::AUTHORIZATION).ok_or_else(|| {
            unauthenticated("missing Authorization header; send `Authorization: Bearer TOKEN`")
        })?;
        let value = value
            .to_str()
            .map_err(|_| unauthenticated("Authorization header is not valid ASCII"))?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| unauthenticated("Authorization header must be `Bearer TOKEN`"))?;
        let caller = state.engine.authenticate(Presented::Bearer(token)).await?;
        let caller = match parts.headers.get("signoff-channel") {
            None => caller,
            Some(v) => {
                let declared = v
                    .to_str()
                    .ok()
                    .and_then(|v| v.trim().parse::<signoff_core::Channel>().ok())
                    .ok_or_else(|| {
                        ApiError::bad_request(
                            "Signoff-Channel header must be one of cli, api, web, slack, teams",
                        )
                    })?;
                caller.declare_channel(declared)?
            }
        };
        Ok(Caller(caller))
    }
}

fn unauthenticated(detail: &str) -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
        "Authentication required",
        detail,
    )
}

/// A JSON body. Wrong content type, oversized bodies, syntax errors and
/// unknown or missing fields each get their own precise problem.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|m| {
                let m = m.trim();
                m.eq_ignore_ascii_case("application/json") || m.ends_with("+json")
            })
            .unwrap_or(false);
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
                "request body must be JSON with `Content-Type: application/json`",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body-too-large",
                    "Body too large",
                    format!(
                        "request body is larger than {} bytes",
                        crate::MAX_BODY_BYTES
                    ),
                )
            } else {
                ApiError::bad_request(format!(
                    "could not read request body: {}",
                    rejection.body_text()
                ))
            }
        })?;
        serde_json::from_slice(&bytes).map(JsonBody).map_err(|e| {
            let detail = format!("invalid JSON body: {e}");
            if e.is_syntax() || e.is_eof() {
                ApiError::bad_request(detail)
            } else {
                ApiError::invalid(detail)
            }
        })
    }
}

/// Query parameters with a precise problem on bad input.
#[derive(Debug)]
pub struct QueryParams<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        serde_urlencoded_like(query).map(QueryParams)
    }
}

fn serde_urlencoded_like<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    axum::extract::Query::<T>::try_from_uri(
        &format!("/?{query}")
            .parse()
            .map_err(|_| ApiError::bad_request("malformed query string"))?,
    )
    .map(|q| q.0)
    .map_err(|e| ApiError::bad_request(query_error(&e.body_text())))
}

/// `Failed to deserialize query string: start: invalid digit found in string`
/// → `invalid query parameter `start`: invalid digit found in string`.
fn query_error(text: &str) -> String {
    let rest = text
        .strip_prefix("Failed to deserialize query string: ")
        .unwrap_or(text);
    match rest.split_once(": ") {
        Some((field, why)) if !field.is_empty() && !field.contains(' ') => {
            format!("invalid query parameter `{field}`: {why}")
        }
        _ => format!("invalid query: {rest}"),
    }
}

impl<T: DeserializeOwned, S: Send + Sync> axum::extract::OptionalFromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    /// An absent body (no Content-Type) is `None`; anything else must be valid JSON.
    async fn from_request(req: Request, state: &S) -> Result<Option<Self>, Self::Rejection> {
        if req.headers().get(header::CONTENT_TYPE).is_none() {
            return Ok(None);
        }
        <JsonBody<T> as FromRequest<S>>::from_request(req, state)
            .await
            .map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::query_error;

    #[test]
    fn query_errors_name_the_parameter() {
        assert_eq!(
            query_error("Failed to deserialize query string: start: invalid digit found in string"),
            "invalid query parameter `start`: invalid digit found in string"
        );
        assert_eq!(
            query_error("Failed to deserialize query string: missing field `size`"),
            "invalid query: missing field `size`"
        );
    }
}
