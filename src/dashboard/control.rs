//! The operator's pause and resume of sending, from the overview's forms: the same switch
//! as `POST /v1/control/pause|resume` ([`crate::api::SendingControl`]) — while paused the
//! cap gate grants no reservation, so nothing is sent and every planned send waits — with
//! the same guards as every dashboard write (its own form, the API token).

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use super::Dashboard;
use super::routes::{PageError, error_page, guarded};
use super::strategies::check_write;

/// The pause and resume forms' fields.
#[derive(Debug, Deserialize)]
pub(super) struct ControlForm {
    #[serde(default)]
    reason: String,
    #[serde(default)]
    token: String,
    #[serde(default)]
    csrf: String,
}

/// Back to the overview, which shows the new state.
fn to_overview() -> HttpResponse {
    guarded(HttpResponse::SeeOther()).insert_header((header::LOCATION, "/")).finish()
}

/// `POST /control/pause`.
pub(super) async fn pause(
    dashboard: web::Data<Dashboard>,
    req: HttpRequest,
    form: web::Form<ControlForm>,
) -> HttpResponse {
    let form = form.into_inner();
    if let Err(e) = check_write(&dashboard, &req, &form.csrf, &form.token) {
        tracing::warn!(reason = ?e, "Dashboard pause refused.");
        return error_page(&dashboard, &e);
    }
    let Some(live) = &dashboard.live else { return to_overview() };
    let reason = Some(form.reason.trim().to_string()).filter(|r| !r.is_empty());
    match live.control.pause(reason, live.clock.now()) {
        Ok(_) => to_overview(),
        Err(e) => error_page(&dashboard, &PageError::BadRequest(e.to_string())),
    }
}

/// `POST /control/resume`.
pub(super) async fn resume(
    dashboard: web::Data<Dashboard>,
    req: HttpRequest,
    form: web::Form<ControlForm>,
) -> HttpResponse {
    let form = form.into_inner();
    if let Err(e) = check_write(&dashboard, &req, &form.csrf, &form.token) {
        tracing::warn!(reason = ?e, "Dashboard resume refused.");
        return error_page(&dashboard, &e);
    }
    if let Some(live) = &dashboard.live {
        live.control.resume();
    }
    to_overview()
}
