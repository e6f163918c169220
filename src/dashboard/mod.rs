//! The web dashboard: what the engine is doing now and how each segment, experiment and
//! strategy is going, as server-rendered pages (readable without JavaScript) with a small
//! bundled script that refreshes the live figures over Server-Sent Events.
//!
//! Two ways to serve it, one [`Dashboard`]:
//! - `gavat run` mounts it on its HTTP listener beside the `/v1` API ([`Dashboard::live`]):
//!   its figures come from the running engine and its store, and the operator's writes
//!   (rolling a strategy change back, pausing and resuming sending) are allowed to whoever
//!   presents the API token from a form of the dashboard's own pages.
//! - `gavat dashboard --store …` serves it alone over any store, read-only
//!   ([`Dashboard::read_only`], [`serve`]): a saved simulation, or a stopped or running
//!   live engine's SQLite or Redis store. No write is offered or accepted.
//!
//! Security: loopback by default; every request's `Host` is checked (DNS rebinding), every
//! write is checked for a cross-site origin and a form token ([`csrf`]) and then the API
//! token; pages send a strict Content-Security-Policy and may not be framed; no page shows
//! a secret (tokens, Redis passwords). See docs/dashboard.md.
//!
//! # Layout
//! - [`source`]: the store the pages read, opened once, read on the blocking pool.
//! - [`csrf`]: the same-origin check and the form token of every write.
//! - `format`: numbers, rates, intervals and times as every page writes them.
//! - `overview`, `segments`, `experiments`, `strategies`: the pages.
//! - `control`: the operator's pause and resume of sending (a live run only).
//! - `live`: the overview's live figures as JSON, and their event stream.
//! - `routes`: paths to handlers, the bundled assets, errors as pages.
//! - [`serve`]: `gavat dashboard`'s own listener.

mod control;
pub mod csrf;
mod experiments;
mod format;
mod live;
mod overview;
mod routes;
mod segments;
mod server;
pub mod source;
mod strategies;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use gavat_experiments::design::Experiment;

use crate::api::{ApiError, Metrics, SendingControl, WriteToken};
use crate::clock::{Clock, SystemClock};
use crate::domain::Timestamp;
use crate::live::config::RunConfig;
use crate::store::StoreError;

pub use routes::configure;
pub use server::{DashboardServer, serve};
pub use source::{SourceError, StoreSource};

/// What a running engine shows the dashboard and lets it do.
pub struct LiveEngine {
    /// The engine's counters and pause state.
    pub metrics: Arc<Metrics>,
    /// The operator's switch for sending.
    pub control: Arc<SendingControl>,
    /// The engine's clock: the present of every page (a rehearsal's clock runs fast).
    pub clock: Arc<dyn Clock>,
    /// The API token writes need (`None`: writes are off).
    token: Option<WriteToken>,
}

impl std::fmt::Debug for LiveEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveEngine").field("clock", &self.clock).finish_non_exhaustive()
    }
}

/// Why the dashboard could not start.
#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    /// The store could not be opened.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The store could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The API token is too weak, or the listener could not be bound.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// No randomness for the form token.
    #[error("cannot draw the dashboard's form token: {0}")]
    Entropy(std::io::Error),
}

/// The dashboard: its store, the experiments it shows, and — when mounted by `gavat run` —
/// the live engine.
#[derive(Debug)]
pub struct Dashboard {
    source: StoreSource,
    /// The store as the header names it (no password).
    name: String,
    experiments: Vec<Experiment>,
    /// `[messages]` and the bots, for message previews.
    messages: RunConfig,
    live: Option<LiveEngine>,
    form: csrf::FormToken,
    /// Set when the server is about to stop: event streams end at their next tick, so a
    /// graceful stop does not wait for an open browser tab.
    closing: AtomicBool,
    snapshot: live::SnapshotCache,
}

impl Dashboard {
    /// A read-only dashboard over `source` (named `name` in the page header), showing
    /// `experiments`, previewing messages with `messages`.
    pub fn read_only(
        source: StoreSource,
        name: String,
        experiments: Vec<Experiment>,
        messages: RunConfig,
    ) -> Result<Dashboard, DashboardError> {
        Dashboard::new(source, name, experiments, messages, None)
    }

    /// The dashboard of a running engine: figures from `metrics`, time from `clock`, the
    /// operator's pause through `control`, writes allowed with `token` (from
    /// `GAVAT_API_TOKEN`; `None`: writes are off).
    #[allow(clippy::too_many_arguments, reason = "each part is a different seam of the run")]
    pub fn live(
        source: StoreSource,
        name: String,
        experiments: Vec<Experiment>,
        messages: RunConfig,
        metrics: Arc<Metrics>,
        control: Arc<SendingControl>,
        clock: Arc<dyn Clock>,
        token: Option<&str>,
    ) -> Result<Dashboard, DashboardError> {
        let token = token.map(WriteToken::new).transpose()?;
        Dashboard::new(source, name, experiments, messages, Some(LiveEngine { metrics, control, clock, token }))
    }

    fn new(
        source: StoreSource,
        name: String,
        experiments: Vec<Experiment>,
        messages: RunConfig,
        live: Option<LiveEngine>,
    ) -> Result<Dashboard, DashboardError> {
        let form = csrf::FormToken::generate().map_err(DashboardError::Entropy)?;
        Ok(Dashboard {
            source,
            name,
            experiments,
            messages,
            live,
            form,
            closing: AtomicBool::new(false),
            snapshot: live::SnapshotCache::default(),
        })
    }

    /// Ends the event streams at their next tick (call before stopping the server).
    pub fn close(&self) {
        self.closing.store(true, Ordering::Release);
    }

    fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// The present of every page: the engine's clock when live, else the end of the store's
    /// saved run, else the wall clock (a live store read from outside).
    fn now(&self) -> Result<Timestamp, StoreError> {
        if let Some(live) = &self.live {
            return Ok(live.clock.now());
        }
        Ok(self.source.ended_at()?.unwrap_or_else(|| SystemClock.now()))
    }
}
