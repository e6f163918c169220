//! What operators and monitors read, without a token: `GET /healthz` (the process serves),
//! `GET /readyz` (the engine takes events and may send: 503 with the reason while it is
//! paused or not started) and `GET /metrics` (Prometheus text format 0.0.4).

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, web};
use serde::Serialize;

use super::reply::Failure;
use super::server::Shared;

/// The content type of the Prometheus text format.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Serialize)]
struct Health {
    status: &'static str,
}

#[derive(Serialize)]
struct Ready {
    ready: bool,
}

/// `GET /healthz`: 200 while the process answers at all.
pub(super) async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health { status: "ok" })
}

/// `GET /readyz`: 200, or 503 naming why not — the engine has not started taking events, or
/// sending is paused (a store or the cap ledger cannot answer).
pub(super) async fn readyz(shared: web::Data<Shared>) -> Result<HttpResponse, Failure> {
    if !shared.state.inbound.is_started() {
        return Err(Failure::unavailable("not_ready", "the engine has not started taking events yet"));
    }
    if let Some(reason) = shared.state.metrics.paused() {
        return Err(Failure::unavailable("paused", format!("sending is paused: {reason}")));
    }
    Ok(HttpResponse::Ok().json(Ready { ready: true }))
}

/// `GET /metrics`.
pub(super) async fn metrics(shared: web::Data<Shared>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, HeaderValue::from_static(METRICS_CONTENT_TYPE)))
        .body(shared.state.metrics.render())
}
