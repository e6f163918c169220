//! The live engine's HTTP API and metrics. So far: [`Metrics`], fed by [`MeteredSender`],
//! [`MeteredLedger`] and the [`MetricsListener`] actor, and rendered in the Prometheus text
//! format.

mod listener;
mod metered;
mod metrics;

pub use listener::MetricsListener;
pub use metered::{LEDGER_PAUSE, MeteredLedger, MeteredSender};
pub use metrics::{Metrics, RESERVATION_BUCKETS};
