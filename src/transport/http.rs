//! What the HTTP transports (webhook, Telegram's Bot API) share: a client that makes one
//! request per message — no redirects followed, no retries of its own, a connect timeout
//! and twice that for the whole exchange — and the small helpers their checks and errors
//! use.

use std::net::IpAddr;
use std::time::Duration;

use super::TransportConfigError;

/// A client for one request per message. Whether to try again is the engine's decision; a
/// redirect is never followed (a redirected POST loses its body, and a Bot API URL holds a
/// token that must not go elsewhere).
pub(crate) fn one_request_client(timeout: Duration) -> Result<reqwest::Client, TransportConfigError> {
    // rustls needs one process-wide crypto provider; a second install is a no-op error.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .connect_timeout(timeout)
        .timeout(timeout.saturating_mul(2))
        .redirect(reqwest::redirect::Policy::none())
        .retry(reqwest::retry::never())
        .user_agent(concat!("gavat/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| TransportConfigError::Client { why: error_chain(&e.without_url()) })
}

/// Whether `host` (as a URL writes it) is a loopback address or `localhost`.
pub(crate) fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost") || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// An error and its causes, `: `-separated (reqwest's own message is only "error sending
/// request").
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}
