//! signoff's HTTP API: REST under `/v1`, an OpenAPI document generated from
//! the handlers at `/openapi.json`, RFC 9457 problem+json errors, health
//! probes and Prometheus metrics. Handlers are thin: they authenticate,
//! translate the wire format, and call the engine.

mod extract;
mod ledger_routes;
pub mod metrics;
mod problem;
mod routes;

pub use problem::ApiError;

use axum::Router;
use signoff_engine::Engine;
use std::net::SocketAddr;
use std::sync::Arc;

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Shared state of the handlers.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The use cases.
    pub engine: Arc<Engine>,
    /// Counters for `/metrics`.
    pub metrics: Arc<metrics::Metrics>,
}

/// The complete router.
pub fn router(engine: Arc<Engine>) -> Router {
    routes::router(AppState {
        engine,
        metrics: Arc::new(metrics::Metrics::default()),
    })
}

/// The OpenAPI document, as served at `/openapi.json`.
pub fn openapi_json() -> String {
    routes::openapi_json()
}

/// Serves the API on `listener` until `shutdown` resolves, with the
/// background `components` (see [`signoff_engine::components`]) running
/// alongside. In-flight requests finish, then the components stop, before
/// it returns.
pub async fn serve(
    engine: Arc<Engine>,
    listener: tokio::net::TcpListener,
    components: Vec<Box<dyn signoff_engine::components::Component>>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let running = engine.start_components(components);
    let app = router(engine).into_make_service_with_connect_info::<SocketAddr>();
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await;
    running.stop().await;
    result
}
