//! signoff's HTTP API: REST under `/v1`, an OpenAPI document generated from
//! the handlers at `/openapi.json`, RFC 9457 problem+json errors, health
//! probes and Prometheus metrics. Handlers are thin: they authenticate,
//! translate the wire format, and call the engine.

mod audit_routes;
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
    /// How the server is set up.
    pub options: Arc<ServerOptions>,
}

/// Settings of the HTTP layer itself.
#[derive(Clone, Default)]
pub struct ServerOptions {
    /// When set, `GET /metrics` answers only `Authorization: Bearer
    /// <token>` with this token (config key `metrics_token`).
    pub metrics_token: Option<String>,
}

impl std::fmt::Debug for ServerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerOptions")
            .field("metrics_token", &self.metrics_token.as_ref().map(|_| "***"))
            .finish()
    }
}

/// The complete router.
pub fn router(engine: Arc<Engine>) -> Router {
    router_with(engine, ServerOptions::default())
}

/// The complete router with `options`.
pub fn router_with(engine: Arc<Engine>, options: ServerOptions) -> Router {
    routes::router(AppState {
        engine,
        metrics: Arc::new(metrics::Metrics::default()),
        options: Arc::new(options),
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
    serve_with(
        engine,
        listener,
        components,
        ServerOptions::default(),
        shutdown,
    )
    .await
}

/// [`serve`] with `options`.
pub async fn serve_with(
    engine: Arc<Engine>,
    listener: tokio::net::TcpListener,
    components: Vec<Box<dyn signoff_engine::components::Component>>,
    options: ServerOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let running = engine.start_components(components);
    let app = router_with(engine, options).into_make_service_with_connect_info::<SocketAddr>();
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await;
    running.stop().await;
    result
}
