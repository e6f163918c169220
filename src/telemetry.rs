//! Logging setup: structured `tracing` events to stderr, filtered by `GAVAT_LOG`
//! (default `warn`). Nothing is logged per event in simulation hot loops.

use tracing_subscriber::EnvFilter;

/// Installs the subscriber once; later calls do nothing.
pub fn init() {
    let filter = EnvFilter::try_from_env("GAVAT_LOG").unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}
