//! The live engine's HTTP API and metrics: a CRM posts what users do and creates users; an
//! operator reads health, readiness and Prometheus metrics. `gavat run` starts it with
//! [`serve`] beside the engine. Endpoints, bodies, status codes, authentication and every
//! metric are described in `docs/api.md`.
//!
//! # Layout
//! - [`server`](serve): binding, routing, the per-status request counter, stopping.
//! - `auth`: the bearer token (`GAVAT_API_TOKEN`), compared in constant time.
//! - `host`: the `Host` allow-list (loopback, the bound address, `[http] allowed_hosts`).
//! - `body`, `reply`: strict JSON in (size limit, unknown fields refused, the field at fault
//!   named), one JSON error shape out.
//! - `events`: `POST /v1/events`, answered once the engine acknowledged the event.
//! - `users`: `PUT`/`GET /v1/users/{id}`; new users join the running engine.
//! - `probes`: `/healthz`, `/readyz`, `/metrics`.
//! - `control`: the operator's pause of sending ([`SendingControl`]) and `/v1/control`.
//! - [`ApiInbound`]: the API as the engine's inbound source (acknowledgements, idempotency
//!   keys).
//! - [`UserDirectory`]: where users are read and written ([`MemoryDirectory`] for tests).
//! - [`Metrics`], fed by [`MeteredSender`], [`MeteredLedger`] and the [`MetricsListener`]
//!   actor.
//!
//! ```text
//!  CRM ──HTTP──▶ events ──submit──▶ ApiInbound ──sink──▶ engine shards
//!                   ▲                    │  ◀──acknowledge── (after the log is stored)
//!                   └──── 202 ◀── oneshot by source id
//!  CRM ──HTTP──▶ users ──▶ UserDirectory (store), new users ──▶ engine arrivals
//!  engine ──▶ MeteredSender / MeteredLedger / MetricsListener ──▶ Metrics ──▶ GET /metrics
//! ```

mod auth;
mod body;
mod control;
mod directory;
mod events;
mod host;
mod inbound;
mod listener;
mod metered;
mod metrics;
mod probes;
mod reply;
mod server;
mod telegram;
mod users;

use std::sync::Arc;

pub use auth::{MIN_TOKEN_LEN, WriteToken};
pub use body::BODY_LIMIT;
pub use control::{ControlState, MAX_REASON_CHARS, OPERATOR_PAUSE, PauseError, SendingControl};
pub use directory::{DirectoryError, MemoryDirectory, Upserted, UserDirectory};
pub use events::{IDEMPOTENCY_KEY, MAX_KEY_LEN};
pub(crate) use host::AllowedHosts;
pub use inbound::{
    ApiInbound, DEFAULT_ACK_TIMEOUT, DEFAULT_KEY_CAPACITY, EventFingerprint, KeyClaim, SubmitError, source_of_key,
};
pub use listener::MetricsListener;
pub use metered::{LEDGER_PAUSE, MeteredLedger, MeteredSender};
pub use metrics::{InboundCounts, Metrics, MetricsSnapshot, Pause, RESERVATION_BUCKETS, ReasonCount, SendCounts};
pub use probes::METRICS_CONTENT_TYPE;
pub(crate) use server::foreign_host_response;
pub use server::{ApiServer, serve, serve_with_telegram};
pub use telegram::SECRET_HEADER as TELEGRAM_SECRET_HEADER;
pub use users::{CLOCK_SKEW_SECS, UTC_OFFSET_RANGE};

/// Why the API could not start.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The address could not be bound (in use, not local, not permitted). Fatal for the run.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The configured token is too short or holds characters a header cannot carry. Fatal:
    /// choose a better token.
    #[error("GAVAT_API_TOKEN must be at least {min_len} visible ASCII characters without spaces")]
    WeakToken {
        /// The shortest length accepted.
        min_len: usize,
    },
}

/// Everything the API's handlers use. Built by `gavat run`; tests build their own.
pub struct ApiState {
    /// Events are stamped with `clock.now()`.
    pub clock: Arc<dyn crate::clock::Clock>,
    /// Where events go to the engine, and where its acknowledgements come back.
    pub inbound: Arc<ApiInbound>,
    /// New users join the running engine here (see [`crate::engine::user_arrivals`]).
    pub arrivals: tokio::sync::mpsc::UnboundedSender<crate::domain::UserProfile>,
    /// Where users are read and written.
    pub users: Arc<dyn UserDirectory>,
    /// The live engine's metrics, shown by `/metrics` and `/readyz`.
    pub metrics: Arc<Metrics>,
    /// The operator's pause of sending, obeyed by the engine's [`MeteredLedger`]: the same
    /// `Arc` must be given to both.
    pub control: Arc<SendingControl>,
    /// The bearer token of the `/v1` API (from `GAVAT_API_TOKEN`); `None` turns the `/v1`
    /// API off (403). Never logged, echoed or shown by `Debug`.
    pub write_token: Option<String>,
    /// Host names answered to besides loopback and the bound address (`[http]
    /// allowed_hosts`); a request naming any other host gets 403 (see `host`).
    pub allowed_hosts: Vec<String>,
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState")
            .field("clock", &self.clock)
            .field("inbound", &self.inbound)
            .field("users", &self.users)
            .field("metrics", &"Metrics")
            .field("control", &self.control.is_paused())
            .field("write_token", &self.write_token.as_ref().map(|_| "<redacted>"))
            .field("allowed_hosts", &self.allowed_hosts)
            .finish_non_exhaustive()
    }
}
