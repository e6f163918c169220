//! Paths to handlers: every page is rendered on the blocking pool (store reads block) and
//! sent with headers that keep it from being framed, cached or made to run foreign code;
//! an error is a page too, with its status. The bundled stylesheet and script are served
//! from `/assets/`.
//!
//! | path | page |
//! |---|---|
//! | `GET /` | overview ([`super::overview`]) |
//! | `GET /events/overview` | the overview's live figures, Server-Sent Events ([`super::live`]) |
//! | `GET /segments`, `/segments/{SEGMENT}`, `/users/{id}` | segments, members, one user |
//! | `GET /experiments`, `/experiments/{name}` | experiments |
//! | `GET /strategies`, `POST /strategies/rollback` | strategies and the audit trail |
//! | `POST /control/pause`, `POST /control/resume` | the operator's pause of sending |

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};

use crate::html::escape;
use crate::html::page::{DashboardPage, Nav, SCRIPT, STYLESHEET, dashboard as render_page};

use super::Dashboard;

/// The Content-Security-Policy of every page: only the dashboard's own script and
/// stylesheet (inline styles for the charts), no framing, forms only to itself.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Why a page could not be shown.
#[derive(Debug)]
pub(super) enum PageError {
    /// No such segment, user or experiment (404).
    NotFound(String),
    /// A request that cannot be answered as asked (400).
    BadRequest(String),
    /// A write refused: no or wrong token, a cross-site form (403).
    Forbidden(String),
    /// A write refused by the store's rules (409), e.g. rolling back what is not in force.
    Conflict(String),
    /// The store could not answer (503).
    Unavailable(String),
}

impl PageError {
    fn status(&self) -> StatusCode {
        match self {
            PageError::NotFound(_) => StatusCode::NOT_FOUND,
            PageError::BadRequest(_) => StatusCode::BAD_REQUEST,
            PageError::Forbidden(_) => StatusCode::FORBIDDEN,
            PageError::Conflict(_) => StatusCode::CONFLICT,
            PageError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn message(&self) -> &str {
        match self {
            PageError::NotFound(m)
            | PageError::BadRequest(m)
            | PageError::Forbidden(m)
            | PageError::Conflict(m)
            | PageError::Unavailable(m) => m,
        }
    }
}

impl From<crate::store::StoreError> for PageError {
    fn from(e: crate::store::StoreError) -> PageError {
        PageError::Unavailable(format!("the store could not be read: {e}"))
    }
}

/// A rendered page: its title, navigation entry and body.
pub(super) struct Rendered {
    pub(super) title: String,
    pub(super) nav: Nav,
    pub(super) body: String,
    /// Whether the page listens to the overview's event stream.
    pub(super) live: bool,
}

/// Mounts the dashboard's routes (with `dashboard` as their state) on an actix app.
pub fn configure(dashboard: web::Data<Dashboard>) -> impl FnOnce(&mut web::ServiceConfig) {
    move |config| {
        config
            .app_data(dashboard)
            .route("/", web::get().to(overview))
            .route("/events/overview", web::get().to(super::live::stream))
            .route("/segments", web::get().to(segments))
            .route("/segments/{segment}", web::get().to(segment))
            .route("/users/{id}", web::get().to(user))
            .route("/experiments", web::get().to(experiments))
            .route("/experiments/{name}", web::get().to(experiment))
            .route("/strategies", web::get().to(strategies))
            .route("/strategies/rollback", web::post().to(super::strategies::rollback))
            .route("/control/pause", web::post().to(super::control::pause))
            .route("/control/resume", web::post().to(super::control::resume))
            .route("/assets/gavat.css", web::get().to(stylesheet))
            .route("/assets/gavat.js", web::get().to(script));
    }
}

/// Renders `make` on the blocking pool and answers with the page, or the error page.
pub(super) async fn render(
    dashboard: web::Data<Dashboard>,
    make: impl FnOnce(&Dashboard) -> Result<Rendered, PageError> + Send + 'static,
) -> HttpResponse {
    let shared = dashboard.clone().into_inner();
    let made = web::block(move || make(&shared)).await;
    let made = made.unwrap_or_else(|_| Err(PageError::Unavailable("the page could not be rendered".into())));
    match made {
        Ok(page) => respond(&dashboard, StatusCode::OK, &page),
        Err(e) => error_page(&dashboard, &e),
    }
}

/// The page for `error`, with its status.
pub(super) fn error_page(dashboard: &Dashboard, error: &PageError) -> HttpResponse {
    let body = format!(
        "<div id=\"flash\" class=\"flash error\">{}</div>\n<p><a href=\"/\">Back to the overview</a></p>",
        escape(error.message())
    );
    let title = error.status().canonical_reason().unwrap_or("Error").to_string();
    respond(dashboard, error.status(), &Rendered { title, nav: Nav::Overview, body, live: false })
}

/// `page` as a complete HTML response with the dashboard's headers.
pub(super) fn respond(dashboard: &Dashboard, status: StatusCode, page: &Rendered) -> HttpResponse {
    let html = render_page(&DashboardPage {
        title: &page.title,
        nav: page.nav,
        source: &dashboard.name,
        body: &page.body,
        live: page.live.then_some("/events/overview"),
    });
    guarded(HttpResponse::build(status)).content_type("text/html; charset=utf-8").body(html)
}

/// A response builder with the headers every dashboard answer carries.
pub(super) fn guarded(mut builder: actix_web::HttpResponseBuilder) -> actix_web::HttpResponseBuilder {
    builder
        .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        // Not `no-referrer`: under it a browser sends `Origin: null` with the dashboard's own
        // form POSTs, and the same-origin check (csrf.rs) refuses every rollback.
        .insert_header((header::REFERRER_POLICY, "same-origin"))
        .insert_header((header::CACHE_CONTROL, "no-store"));
    builder
}

async fn overview(dashboard: web::Data<Dashboard>) -> HttpResponse {
    render(dashboard, super::overview::page).await
}

async fn segments(dashboard: web::Data<Dashboard>) -> HttpResponse {
    render(dashboard, super::segments::list).await
}

async fn segment(dashboard: web::Data<Dashboard>, name: web::Path<String>) -> HttpResponse {
    let name = name.into_inner();
    render(dashboard, move |d| super::segments::members(d, &name)).await
}

async fn user(dashboard: web::Data<Dashboard>, id: web::Path<String>) -> HttpResponse {
    let id = id.into_inner();
    render(dashboard, move |d| super::segments::user(d, &id)).await
}

async fn experiments(dashboard: web::Data<Dashboard>) -> HttpResponse {
    render(dashboard, super::experiments::list).await
}

async fn experiment(dashboard: web::Data<Dashboard>, name: web::Path<String>) -> HttpResponse {
    let name = name.into_inner();
    render(dashboard, move |d| super::experiments::detail(d, &name)).await
}

async fn strategies(dashboard: web::Data<Dashboard>, req: HttpRequest) -> HttpResponse {
    let query = req.query_string().to_string();
    render(dashboard, move |d| super::strategies::page(d, &query)).await
}

async fn stylesheet() -> HttpResponse {
    guarded(HttpResponse::Ok()).content_type("text/css; charset=utf-8").body(STYLESHEET)
}

async fn script() -> HttpResponse {
    guarded(HttpResponse::Ok()).content_type("text/javascript; charset=utf-8").body(SCRIPT)
}

/// Any other path: a 404 page.
pub(super) async fn not_found(dashboard: web::Data<Dashboard>, req: HttpRequest) -> HttpResponse {
    error_page(&dashboard, &PageError::NotFound(format!("no page at {}", req.path())))
}
