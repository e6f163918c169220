//! The webhook sender: each outbound message is POSTed as JSON to one configured URL,
//! signed with HMAC-SHA256 (`X-Gavat-Signature: sha256=<hex>`) under a secret read from an
//! environment variable. What the receiver answers — or how the connection fails — becomes
//! a [`TransportError`] the engine acts on; the mapping and the body's schema are in
//! `docs/transports.md`.
//!
//! Nothing here resends a message: a send whose outcome is unclear is
//! [`TransportError::Unknown`], counted against the caps and never repeated. Only a failure
//! that provably wrote nothing (no connection) or a status the receiver promises means "not
//! acted on" (503) is [`TransportError::Transient`].

use super::http::{error_chain, is_loopback};
use std::fmt;
use std::time::Duration;

use hmac::{Hmac, Mac};
use reqwest::header::{CONTENT_TYPE, HeaderMap, RETRY_AFTER};

use sha2::Sha256;

use crate::domain::{OutboundMessage, Timestamp};

use super::{Delivered, SendFuture, Sender, TransportConfigError, TransportError};

/// The signature header: `sha256=` and the lowercase hex HMAC-SHA256 of the body.
pub const SIGNATURE_HEADER: &str = "X-Gavat-Signature";

/// The header carrying the message id, for receivers that de-duplicate.
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";

/// The wait after a 429 that names none (or none readable): the receiver asked for a pause
/// and did not say how long.
pub const DEFAULT_RETRY_AFTER_SECS: u32 = 30;

/// Longest failure reason kept, in characters.
const MAX_REASON: usize = 300;

/// A signing secret; printing it shows `***`.
#[derive(Clone)]
pub struct WebhookSecret(Box<[u8]>);

impl WebhookSecret {
    /// Wraps a secret (from a secrets store, a test).
    pub fn new(secret: impl Into<Vec<u8>>) -> WebhookSecret {
        WebhookSecret(secret.into().into_boxed_slice())
    }

    /// The secret held by the environment variable `name`: it must be set, not blank, and
    /// valid Unicode. Errors name the variable, never its value.
    pub fn from_env(name: &str) -> Result<WebhookSecret, TransportConfigError> {
        match std::env::var(name) {
            Ok(value) if value.trim().is_empty() => Err(TransportConfigError::EmptySecret { name: name.to_string() }),
            Ok(value) => Ok(WebhookSecret::new(value)),
            Err(std::env::VarError::NotPresent) => Err(TransportConfigError::MissingSecret { name: name.to_string() }),
            Err(std::env::VarError::NotUnicode(_)) => {
                Err(TransportConfigError::SecretNotUnicode { name: name.to_string() })
            }
        }
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(***)")
    }
}

/// POSTs each message to one URL (see the module doc).
#[derive(Clone)]
pub struct WebhookSender {
    client: reqwest::Client,
    url: reqwest::Url,
    /// `scheme://host:port` only: what failure reasons name (a path or query may hold a
    /// token).
    origin: String,
    /// The keyed HMAC, cloned per message: the key schedule is computed once.
    mac: Hmac<Sha256>,
    timeout: Duration,
}

impl fmt::Debug for WebhookSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookSender")
            .field("origin", &self.origin)
            .field("timeout", &self.timeout)
            .field("secret", &"***")
            .finish()
    }
}

impl WebhookSender {
    /// A sender POSTing to `url`, signing with the secret in the environment variable named
    /// `secret_env_var`. Connecting may take up to `timeout` (beyond it: not sent,
    /// [`TransportError::Transient`]); the whole exchange up to twice `timeout` (beyond it:
    /// [`TransportError::Unknown`]), so an answer always has at least `timeout` once
    /// connected. `url` must be `https`, or plain `http` to a loopback address.
    pub fn new(url: &str, secret_env_var: &str, timeout: Duration) -> Result<WebhookSender, TransportConfigError> {
        WebhookSender::with_secret(url, WebhookSecret::from_env(secret_env_var)?, timeout)
    }

    /// [`WebhookSender::new`] with the secret given.
    pub fn with_secret(
        url: &str,
        secret: WebhookSecret,
        timeout: Duration,
    ) -> Result<WebhookSender, TransportConfigError> {
        let bad = |why: String| TransportConfigError::BadUrl { why };
        let parsed = reqwest::Url::parse(url).map_err(|e| bad(format!("not a URL ({e})")))?;
        let host = parsed.host_str().ok_or_else(|| bad("no host".into()))?.to_string();
        let origin = format!("{}://{host}:{}", parsed.scheme(), parsed.port_or_known_default().unwrap_or(0));
        match parsed.scheme() {
            "https" => {}
            "http" if is_loopback(&host) => {}
            "http" => {
                return Err(bad(format!(
                    "{origin}: plain http would send every message unencrypted; use https (plain http is allowed to \
                     loopback addresses only)"
                )));
            }
            other => return Err(bad(format!("scheme {other}: expected https (or http to a loopback address)"))),
        }
        if timeout.is_zero() {
            return Err(TransportConfigError::Invalid { field: "timeout", why: "must be more than zero".into() });
        }
        let mac = Hmac::<Sha256>::new_from_slice(&secret.0)
            .map_err(|_| TransportConfigError::Invalid { field: "secret", why: "unusable as an HMAC key".into() })?;
        let client = super::http::one_request_client(timeout)?;
        Ok(WebhookSender { client, url: parsed, origin, mac, timeout })
    }

    /// `sha256=<hex>`: the signature of `body` as the header carries it.
    pub fn signature(&self, body: &[u8]) -> String {
        let mut mac = self.mac.clone();
        mac.update(body);
        let digest = mac.finalize().into_bytes();
        let mut out = String::with_capacity(7 + 2 * digest.len());
        out.push_str("sha256=");
        for byte in digest {
            out.push_str(&format!("{byte:02x}"));
        }
        out
    }
}

impl Sender for WebhookSender {
    fn send(&self, message: &OutboundMessage) -> SendFuture {
        let body = match serde_json::to_vec(&super::wire::MessageJson::from(message)) {
            Ok(body) => body,
            Err(e) => {
                let reason = format!("the message cannot be written as JSON: {e}");
                return Box::pin(std::future::ready(Err(TransportError::Fatal { reason })));
            }
        };
        let request = self
            .client
            .post(self.url.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, self.signature(&body))
            .header(IDEMPOTENCY_HEADER, message.id.to_string())
            .body(body);
        let (origin, timeout, at) = (self.origin.clone(), self.timeout, message.at);
        Box::pin(async move {
            match request.send().await {
                Ok(response) => outcome(response.status().as_u16(), response.headers(), &origin, at),
                Err(e) => Err(failure(e, &origin, timeout)),
            }
        })
    }
}

/// What the receiver's status means (`docs/transports.md`).
fn outcome(status: u16, headers: &HeaderMap, origin: &str, at: Timestamp) -> Result<Delivered, TransportError> {
    let said = |meaning: &str| format!("HTTP {status} from {origin}: {meaning}");
    match status {
        200..=299 => Ok(Delivered),
        429 => Err(TransportError::RateLimited { retry_after_secs: retry_after(headers, at) }),
        410 => Err(TransportError::Blocked),
        // The receiver's contract: 503 only when it did not act on the message.
        503 => Err(TransportError::Transient { reason: said("not acted on, may be retried") }),
        500..=599 => Err(TransportError::Unknown { reason: said("the receiver failed and may have acted on it") }),
        400..=499 => Err(TransportError::Fatal { reason: said("refused") }),
        300..=399 => Err(TransportError::Fatal {
            reason: said("a redirect, not followed (a POST would lose its body): configure the final URL"),
        }),
        _ => Err(TransportError::Unknown { reason: said("not a final answer") }),
    }
}

/// `Retry-After` in seconds (rounded up) or as an HTTP date (counted from the message's
/// time); [`DEFAULT_RETRY_AFTER_SECS`] when absent or unreadable.
fn retry_after(headers: &HeaderMap, at: Timestamp) -> u32 {
    let Some(text) = headers.get(RETRY_AFTER).and_then(|v| v.to_str().ok()).map(str::trim) else {
        return DEFAULT_RETRY_AFTER_SECS;
    };
    let secs = match text.parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs >= 0.0 => secs.ceil(),
        Ok(_) => return DEFAULT_RETRY_AFTER_SECS,
        Err(_) => match chrono::DateTime::parse_from_rfc2822(text) {
            Ok(date) => (date.timestamp() - at.secs()).max(0) as f64,
            Err(_) => return DEFAULT_RETRY_AFTER_SECS,
        },
    };
    secs.min(f64::from(u32::MAX)) as u32
}

/// What a failed exchange means: no connection made is provably not sent; anything after
/// the connection was made may have reached the receiver.
fn failure(e: reqwest::Error, origin: &str, timeout: Duration) -> TransportError {
    let e = e.without_url();
    let why = error_chain(&e);
    if e.is_connect() {
        TransportError::Transient { reason: shorten(format!("could not connect to {origin}, nothing sent: {why}")) }
    } else if e.is_builder() {
        TransportError::Fatal { reason: shorten(format!("the request cannot be built: {why}")) }
    } else if e.is_timeout() {
        TransportError::Unknown {
            reason: shorten(format!("no answer from {origin} within {} ms after sending", 2 * timeout.as_millis())),
        }
    } else {
        TransportError::Unknown { reason: shorten(format!("the exchange with {origin} broke off: {why}")) }
    }
}

fn shorten(text: String) -> String {
    if text.chars().count() <= MAX_REASON {
        return text;
    }
    let mut short: String = text.chars().take(MAX_REASON).collect();
    short.push('…');
    short
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{BotId, ContentKind, Destination, GroupId, Segment, UserId};

    /// The body names the destination by kind, the id as a string, the time twice.
    #[test]
    fn the_body_follows_the_documented_schema() {
        let message = OutboundMessage {
            id: u64::MAX,
            to: Destination::Group(GroupId(3)),
            bot: BotId(2),
            content: ContentKind::Premium,
            segment: Segment::PremiumPotential,
            at: Timestamp(1_767_260_467),
        };
        let json = serde_json::to_value(crate::transport::wire::MessageJson::from(&message)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "id": "18446744073709551615", "to": {"group": 3}, "bot": 2, "content": "premium",
                "segment": "PREMIUM_POTENTIAL", "at": "2026-01-01T09:41:07Z", "at_unix": 1_767_260_467i64,
            })
        );
        let to_user = serde_json::to_value(Destination::User(UserId(17))).unwrap();
        assert_eq!(to_user, serde_json::json!({"user": 17}));
    }

    /// Seconds (rounded up), HTTP dates and nonsense in `Retry-After`.
    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let with = |value: &str| {
            let mut h = HeaderMap::new();
            h.insert(RETRY_AFTER, value.parse().unwrap());
            h
        };
        let at = Timestamp(1_445_412_480); // Wed, 21 Oct 2015 07:28:00 GMT
        assert_eq!(retry_after(&with("7"), at), 7);
        assert_eq!(retry_after(&with("1.2"), at), 2);
        assert_eq!(retry_after(&with("Wed, 21 Oct 2015 07:29:30 GMT"), at), 90);
        assert_eq!(retry_after(&with("Wed, 21 Oct 2015 07:00:00 GMT"), at), 0, "a date past is now");
        assert_eq!(retry_after(&with("soon"), at), DEFAULT_RETRY_AFTER_SECS);
        assert_eq!(retry_after(&with("-3"), at), DEFAULT_RETRY_AFTER_SECS);
        assert_eq!(retry_after(&HeaderMap::new(), at), DEFAULT_RETRY_AFTER_SECS);
    }

    /// https anywhere, plain http to loopback only; the URL's path never reaches a reason.
    #[test]
    fn urls_are_checked() {
        let secret = || WebhookSecret::new("k");
        let t = Duration::from_secs(1);
        assert!(WebhookSender::with_secret("https://hooks.example.com/x?token=abc", secret(), t).is_ok());
        assert!(WebhookSender::with_secret("http://127.0.0.1:8080/hook", secret(), t).is_ok());
        assert!(WebhookSender::with_secret("http://[::1]:8080/hook", secret(), t).is_ok());
        assert!(WebhookSender::with_secret("http://localhost/hook", secret(), t).is_ok());
        let plain = WebhookSender::with_secret("http://hooks.example.com/x?token=abc", secret(), t).unwrap_err();
        assert!(plain.to_string().contains("use https") && !plain.to_string().contains("token"), "{plain}");
        assert!(WebhookSender::with_secret("ftp://example.com", secret(), t).is_err());
        assert!(WebhookSender::with_secret("not a url", secret(), t).is_err());
        assert!(WebhookSender::with_secret("https://example.com", secret(), Duration::ZERO).is_err());
        let sender = WebhookSender::with_secret("https://hooks.example.com/x?token=abc", secret(), t).unwrap();
        assert_eq!(sender.origin, "https://hooks.example.com:443");
        assert!(!format!("{sender:?}").contains("token"));
    }
}
