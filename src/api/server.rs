//! The HTTP server: [`serve`] binds, routes every endpoint to its handler, counts every
//! answer by status, and runs on the current actix system until [`ApiServer::stop`].
//!
//! Routes: `POST /v1/events` ([`super::events`]), `PUT`/`GET /v1/users/{id}`
//! ([`super::users`]), `GET /v1/control`, `POST /v1/control/pause|resume`
//! ([`super::control`]), `GET /healthz`, `GET /readyz`, `GET /metrics` ([`super::probes`]).
//! Anything else is a JSON 404 (unknown path) or 405 (known path, other method).

use std::net::SocketAddr;

use actix_web::dev::{ServerHandle, Service, ServiceResponse};
use actix_web::http::header;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, ResponseError, web};
use futures::FutureExt;

use crate::domain::UserId;
use crate::store::UserState;

use super::auth::{WriteToken, authorize};
use super::reply::Failure;
use super::{ApiError, ApiState, DirectoryError, Upserted, control, events, probes, users};

/// Seconds a graceful stop waits for requests in progress (an event waiting for its
/// acknowledgement waits at most the acknowledgement timeout).
const SHUTDOWN_TIMEOUT_SECS: u64 = 15;

/// What every handler shares: the state given to [`serve`], and the token as a digest.
#[derive(Debug)]
pub(super) struct Shared {
    pub(super) state: ApiState,
    token: Option<WriteToken>,
}

impl Shared {
    /// Lets a `/v1` request through if it carries the token.
    pub(super) fn authorize(&self, req: &HttpRequest) -> Result<(), Failure> {
        authorize(req, self.token.as_ref())
    }

    /// Runs a directory call on the blocking pool.
    async fn directory<T: Send + 'static>(
        &self,
        call: impl FnOnce(&dyn super::UserDirectory) -> Result<T, DirectoryError> + Send + 'static,
    ) -> Result<T, Failure> {
        let users = self.state.users.clone();
        match web::block(move || call(users.as_ref())).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(Failure::unavailable("directory_unavailable", e.to_string())),
            Err(_) => Err(Failure::unavailable("directory_unavailable", "the user directory call did not finish")),
        }
    }

    pub(super) async fn user_exists(&self, id: UserId) -> Result<bool, Failure> {
        self.directory(move |users| users.exists(id)).await
    }

    pub(super) async fn get_user(&self, id: UserId) -> Result<Option<UserState>, Failure> {
        self.directory(move |users| users.get(id)).await
    }

    pub(super) async fn upsert_user(&self, profile: crate::domain::UserProfile) -> Result<Upserted, Failure> {
        self.directory(move |users| users.upsert(profile)).await
    }
}

/// The running server.
#[derive(Debug)]
pub struct ApiServer {
    local_addr: SocketAddr,
    handle: ServerHandle,
    task: actix_rt::task::JoinHandle<std::io::Result<()>>,
}

impl ApiServer {
    /// The address it listens on (the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting connections, then — when `graceful` — lets the requests in progress
    /// finish (at most 15 s); completes when the server has stopped.
    pub async fn stop(self, graceful: bool) {
        self.handle.stop(graceful).await;
        let _ = self.task.await;
    }
}

async fn not_found(req: HttpRequest) -> HttpResponse {
    Failure::not_found("not_found", format!("no endpoint at {}", req.path()), Some("see docs/api.md".into()))
        .error_response()
}

async fn method_not_allowed(req: HttpRequest) -> HttpResponse {
    Failure::method_not_allowed(format!("{} is not allowed on {}", req.method(), req.path())).error_response()
}

/// The 403 for a request naming a host outside `hosts` (DNS rebinding), logged; `None`
/// when the host is allowed.
pub(crate) fn foreign_host_response(hosts: &super::AllowedHosts, req: &HttpRequest) -> Option<HttpResponse> {
    let host = hosts.refused(req.headers().get(header::HOST).map(|v| v.as_bytes()))?;
    tracing::warn!(host = %host.chars().take(100).collect::<String>(), "HTTP request for a foreign Host refused.");
    Some(Failure::foreign_host(&host).error_response())
}

/// Binds `listen` (port 0 picks a free port) and starts serving `state` on the current actix
/// system (call it inside one, as the engine runs). One worker thread serves the requests;
/// directory calls run on the blocking pool. The server has no TLS: bind it to loopback,
/// or put it behind a proxy that terminates TLS.
pub async fn serve(listen: SocketAddr, state: ApiState) -> Result<ApiServer, ApiError> {
    serve_with_telegram(listen, state, None, None).await
}

/// [`serve`], with Telegram's webhook `POST /telegram/{bot}` answered by `telegram` when
/// given (see [`super::telegram`]), and the web dashboard's pages when `dashboard` is given
/// (see [`crate::dashboard`]).
pub async fn serve_with_telegram(
    listen: SocketAddr,
    state: ApiState,
    telegram: Option<std::sync::Arc<crate::transport::telegram::TelegramInbound>>,
    dashboard: Option<web::Data<crate::dashboard::Dashboard>>,
) -> Result<ApiServer, ApiError> {
    let telegram = telegram.map(|t| web::Data::new(super::telegram::WebhookTarget(t)));
    let token = state.write_token.as_deref().map(WriteToken::new).transpose()?;
    if !listen.ip().is_loopback() {
        tracing::warn!(%listen, "The API listens beyond loopback without TLS; put a TLS proxy in front of it.");
    }
    let hosts = super::host::AllowedHosts::new(listen, &state.allowed_hosts);
    let shared = web::Data::new(Shared { state, token });
    let metrics = shared.state.metrics.clone();
    let server = HttpServer::new(move || {
        let metrics = metrics.clone();
        let telegram = telegram.clone();
        let hosts = hosts.clone();
        let dashboard = dashboard.clone();
        App::new()
            .app_data(shared.clone())
            .configure(move |config| {
                if let Some(dashboard) = dashboard {
                    crate::dashboard::configure(dashboard)(config);
                }
            })
            .configure(move |config| {
                if let Some(target) = telegram {
                    config.app_data(target).service(
                        web::resource("/telegram/{bot}")
                            .route(web::post().to(super::telegram::post_update))
                            .default_service(web::to(method_not_allowed)),
                    );
                }
            })
            // Inside the counting below, so that refusals are counted too.
            .wrap_fn(move |req, service| {
                if let Some(response) = foreign_host_response(&hosts, req.request()) {
                    let (request, _) = req.into_parts();
                    return futures::future::ready(Ok(ServiceResponse::new(request, response))).boxed_local();
                }
                service.call(req).map(|answer| answer.map(ServiceResponse::map_into_boxed_body)).boxed_local()
            })
            .wrap_fn(move |req, service| {
                let (metrics, method, path) = (metrics.clone(), req.method().clone(), req.path().to_owned());
                let answer = service.call(req);
                async move {
                    let answer = answer.await;
                    let status = match &answer {
                        Ok(response) => response.status(),
                        Err(e) => e.as_response_error().status_code(),
                    };
                    metrics.record_api_status(status.as_u16());
                    tracing::debug!(%method, path, status = status.as_u16(), "API request answered.");
                    answer
                }
            })
            .service(
                web::resource("/v1/events")
                    .route(web::post().to(events::post_event))
                    .default_service(web::to(method_not_allowed)),
            )
            .service(
                web::resource("/v1/users/{id}")
                    .route(web::put().to(users::put_user))
                    .route(web::get().to(users::get_user))
                    .default_service(web::to(method_not_allowed)),
            )
            .service(
                web::resource("/v1/control")
                    .route(web::get().to(control::get_control))
                    .default_service(web::to(method_not_allowed)),
            )
            .service(
                web::resource("/v1/control/pause")
                    .route(web::post().to(control::post_pause))
                    .default_service(web::to(method_not_allowed)),
            )
            .service(
                web::resource("/v1/control/resume")
                    .route(web::post().to(control::post_resume))
                    .default_service(web::to(method_not_allowed)),
            )
            .service(
                web::resource("/healthz")
                    .route(web::get().to(probes::healthz))
                    .default_service(web::to(method_not_allowed)),
            )
            .service(
                web::resource("/readyz")
                    .route(web::get().to(probes::readyz))
                    .default_service(web::to(method_not_allowed)),
            )
            .service(
                web::resource("/metrics")
                    .route(web::get().to(probes::metrics))
                    .default_service(web::to(method_not_allowed)),
            )
            .default_service(web::to(not_found))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(SHUTDOWN_TIMEOUT_SECS)
    .bind(listen)
    .map_err(|source| ApiError::Bind { addr: listen, source })?;
    let local_addr = server.addrs().first().copied().ok_or(ApiError::Bind {
        addr: listen,
        source: std::io::Error::new(std::io::ErrorKind::AddrNotAvailable, "no address was bound"),
    })?;
    let server = server.run();
    let handle = server.handle();
    let task = actix_rt::spawn(server);
    tracing::info!(%local_addr, "API listening.");
    Ok(ApiServer { local_addr, handle, task })
}
