//! The HTTP side: one `reqwest` client (rustls on `ring`, built as the webhook sender builds
//! its own) POSTing `sendMessage` to `{base}/bot{token}/sendMessage`. The token is in the
//! URL path, so every failure is read through `reqwest::Error::without_url` and every reason
//! is passed through [`redact`] before it leaves this file.

use crate::transport::http::{error_chain, is_loopback};
use std::fmt;
use std::time::Duration;

use reqwest::header::CONTENT_TYPE;
use serde::Serialize;

use crate::transport::{TransportConfigError, TransportError};

use super::outcome::{self, Answer};

/// The Bot API's own address: the default base URL.
pub const DEFAULT_API_BASE_URL: &str = "https://api.telegram.org";

/// The test-only header carrying our message id, so that the fake Bot API keeps a
/// ground-truth ledger keyed by it (RELIABILITY.md §7.1). Sent only by a build with the
/// `failpoints` feature (the tests') **and** only under `GAVAT_TEST_PROFILE=1`: a workspace
/// build that unified the feature in (`cargo build --workspace`) still never sends it to a
/// real Bot API.
pub const MESSAGE_ID_HEADER: &str = "X-Gavat-Msg-Id";

/// Whether this process runs under the test profile (`GAVAT_TEST_PROFILE=1`), read once.
#[cfg(feature = "failpoints")]
fn under_test_profile() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("GAVAT_TEST_PROFILE").as_deref() == Ok("1"))
}

/// Longest body read from a reply: Bot API answers to `sendMessage` are a few kilobytes.
const MAX_BODY: usize = 64 * 1024;

/// Longest failure reason kept, in characters.
const MAX_REASON: usize = 300;

/// A bot token; printing it shows `***`. Only [`BotApi::url`] reads its value.
#[derive(Clone, PartialEq, Eq)]
pub struct BotToken(String);

impl BotToken {
    /// Wraps a token, checking only that it can sit in a URL path: not blank, and made of
    /// the characters Bot API tokens use (`0-9 A-Z a-z : _ -`). Errors never show the value.
    pub fn new(token: impl Into<String>) -> Result<BotToken, TransportConfigError> {
        let token = token.into();
        let token = token.trim();
        if token.is_empty() {
            return Err(TransportConfigError::Invalid { field: "bot token", why: "is blank".into() });
        }
        if !token.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '_' | '-')) {
            return Err(TransportConfigError::Invalid {
                field: "bot token",
                why: "holds characters no Bot API token has (expected 0-9 A-Z a-z : _ -)".into(),
            });
        }
        Ok(BotToken(token.to_string()))
    }

    /// The token in the environment variable `name`. Errors name the variable, never a
    /// value.
    pub fn from_env(name: &str) -> Result<BotToken, TransportConfigError> {
        match std::env::var(name) {
            Ok(value) => BotToken::new(value).map_err(|e| match e {
                TransportConfigError::Invalid { why, .. } => {
                    TransportConfigError::BadToken { name: name.to_string(), why }
                }
                other => other,
            }),
            Err(std::env::VarError::NotPresent) => Err(TransportConfigError::MissingToken { name: name.to_string() }),
            Err(std::env::VarError::NotUnicode(_)) => {
                Err(TransportConfigError::BadToken { name: name.to_string(), why: "is not valid Unicode".into() })
            }
        }
    }

    /// `text` with every occurrence of the token replaced by `***`.
    pub fn redact(&self, text: &str) -> String {
        text.replace(&self.0, "***")
    }
}

impl fmt::Debug for BotToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BotToken(***)")
    }
}

/// The `sendMessage` body.
#[derive(Debug, Serialize)]
pub(crate) struct SendMessage<'a> {
    /// The user's id for a direct message, the group's chat id (negative) for a post.
    pub(crate) chat_id: i64,
    /// HTML.
    pub(crate) text: &'a str,
    /// Always `HTML`.
    pub(crate) parse_mode: &'static str,
    /// The inline keyboard, when the message has buttons.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reply_markup: Option<InlineKeyboard>,
}

/// `reply_markup`: an inline keyboard, one button per row.
#[derive(Debug, Serialize)]
pub(crate) struct InlineKeyboard {
    inline_keyboard: Vec<Vec<InlineButton>>,
}

#[derive(Debug, Serialize)]
struct InlineButton {
    text: String,
    callback_data: String,
}

impl InlineKeyboard {
    /// One row per button; `None` without buttons.
    pub(crate) fn of(buttons: &[super::text::Button]) -> Option<InlineKeyboard> {
        (!buttons.is_empty()).then(|| InlineKeyboard {
            inline_keyboard: buttons
                .iter()
                .map(|b| vec![InlineButton { text: b.label.clone(), callback_data: b.callback_data.clone() }])
                .collect(),
        })
    }
}

/// The Bot API at one base URL.
#[derive(Clone)]
pub(crate) struct BotApi {
    client: reqwest::Client,
    /// The base URL without a trailing `/`.
    base: String,
    /// `scheme://host:port` only: what failure reasons name.
    origin: String,
    timeout: Duration,
}

impl fmt::Debug for BotApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BotApi").field("origin", &self.origin).field("timeout", &self.timeout).finish()
    }
}

impl BotApi {
    /// A client for the Bot API at `base_url` (`https`, or plain `http` to a loopback
    /// address: a local Bot API server, a test). Connecting may take up to `timeout` (beyond
    /// it: nothing written, `Transient`); the whole exchange up to twice `timeout` (beyond
    /// it: `Unknown`).
    pub(crate) fn new(base_url: &str, timeout: Duration) -> Result<BotApi, TransportConfigError> {
        let bad = |why: String| TransportConfigError::BadUrl { why };
        let parsed = reqwest::Url::parse(base_url).map_err(|e| bad(format!("Bot API base URL: not a URL ({e})")))?;
        let host = parsed.host_str().ok_or_else(|| bad("Bot API base URL: no host".into()))?.to_string();
        let origin = format!("{}://{host}:{}", parsed.scheme(), parsed.port_or_known_default().unwrap_or(0));
        match parsed.scheme() {
            "https" => {}
            "http" if is_loopback(&host) => {}
            other => {
                return Err(bad(format!(
                    "Bot API base URL {origin}: scheme {other} would expose the bot token; use https (plain http \
                     is allowed to loopback addresses only)"
                )));
            }
        }
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(bad(format!("Bot API base URL {origin}: must have no query or fragment")));
        }
        if timeout.is_zero() {
            return Err(TransportConfigError::Invalid { field: "timeout", why: "must be more than zero".into() });
        }
        let client = crate::transport::http::one_request_client(timeout)?;
        let base = parsed.as_str().trim_end_matches('/').to_string();
        Ok(BotApi { client, base, origin, timeout })
    }

    /// Where `sendMessage` of the bot with `token` goes. Holds the token: never print it.
    pub(crate) fn url(&self, token: &BotToken) -> Result<reqwest::Url, TransportConfigError> {
        self.method_url(token, "sendMessage")
    }

    /// Where the Bot API method `method` of the bot with `token` goes. Holds the token:
    /// never print it.
    pub(crate) fn method_url(&self, token: &BotToken, method: &str) -> Result<reqwest::Url, TransportConfigError> {
        reqwest::Url::parse(&format!("{}/bot{}/{method}", self.base, token.0))
            .map_err(|_| TransportConfigError::BadUrl { why: format!("{}: no bot URL can be made", self.origin) })
    }

    /// `scheme://host:port` of the Bot API: what reasons may name.
    pub(crate) fn origin(&self) -> &str {
        &self.origin
    }

    /// POSTs one `sendMessage` and says what came of it. `bot` names the bot in reasons;
    /// `message` is our id of the message, sent only by a test build (see
    /// [`MESSAGE_ID_HEADER`]).
    pub(crate) async fn send_message(
        &self,
        url: reqwest::Url,
        body: &SendMessage<'_>,
        bot: &str,
        token: &BotToken,
        message: u64,
    ) -> (Answer, Option<i64>) {
        let body = match serde_json::to_vec(body) {
            Ok(body) => body,
            Err(e) => {
                let reason = format!("the message cannot be written: {e}");
                return (Answer::Final(Err(TransportError::Fatal { reason })), None);
            }
        };
        let request = self.client.post(url).header(CONTENT_TYPE, "application/json").body(body);
        #[cfg(feature = "failpoints")]
        let request =
            if under_test_profile() { request.header(MESSAGE_ID_HEADER, message.to_string()) } else { request };
        #[cfg(not(feature = "failpoints"))]
        let _ = message;
        let result = match request.send().await {
            Ok(mut response) => {
                // The request is on the wire and the Bot API has answered its head.
                fail::fail_point!("transport-after-write");
                let status = response.status().as_u16();
                let mut body = Vec::new();
                loop {
                    match response.chunk().await {
                        Ok(Some(chunk)) if body.len() + chunk.len() <= MAX_BODY => body.extend_from_slice(&chunk),
                        // Longer than any Bot API answer: read what came (a truncated body
                        // reads as not a Bot API answer, an unknown outcome).
                        Ok(Some(_)) | Ok(None) => break Ok(()),
                        Err(e) => break Err(e),
                    }
                }
                .map_or_else(
                    |e| {
                        let why = error_chain(&e.without_url());
                        let reason =
                            format!("bot {bot}: HTTP {status} from {}, then the reply broke off: {why}", self.origin);
                        (Answer::Final(Err(TransportError::Unknown { reason })), None)
                    },
                    |()| (outcome::answer(status, &body, bot), message_id_of(&body)),
                )
            }
            Err(e) => (Answer::Final(Err(self.failure(e, bot))), None),
        };
        match result {
            (Answer::Final(result), id) => (Answer::Final(result.map_err(|e| redacted(e, token))), id),
            (moved @ Answer::MovedTo { .. }, id) => (moved, id),
        }
    }

    /// What a failed exchange means: no connection made is provably not sent; anything
    /// after the connection was made may have reached the Bot API.
    fn failure(&self, e: reqwest::Error, bot: &str) -> TransportError {
        let e = e.without_url();
        let why = error_chain(&e);
        let origin = &self.origin;
        if e.is_connect() {
            TransportError::Transient {
                reason: format!("bot {bot}: could not connect to {origin}, nothing sent: {why}"),
            }
        } else if e.is_builder() {
            TransportError::Fatal { reason: format!("bot {bot}: the request cannot be built: {why}") }
        } else if e.is_timeout() {
            TransportError::Unknown {
                reason: format!(
                    "bot {bot}: no answer from {origin} within {} ms after sending",
                    2 * self.timeout.as_millis()
                ),
            }
        } else {
            TransportError::Unknown { reason: format!("bot {bot}: the exchange with {origin} broke off: {why}") }
        }
    }
}

/// `result.message_id` of a `sendMessage` answer (`None` if the answer does not say: a
/// delivered message all the same, only a reply to it cannot be matched by id).
fn message_id_of(body: &[u8]) -> Option<i64> {
    #[derive(serde::Deserialize)]
    struct Answer {
        result: Sent,
    }
    #[derive(serde::Deserialize)]
    struct Sent {
        message_id: i64,
    }
    serde_json::from_slice::<Answer>(body).ok().map(|a| a.result.message_id)
}

/// `e` with the token taken out of its reason and the reason cut to [`MAX_REASON`].
fn redacted(e: TransportError, token: &BotToken) -> TransportError {
    let clean = |reason: String| {
        let reason = token.redact(&reason);
        if reason.chars().count() <= MAX_REASON {
            reason
        } else {
            let mut short: String = reason.chars().take(MAX_REASON).collect();
            short.push('…');
            short
        }
    };
    match e {
        TransportError::Transient { reason } => TransportError::Transient { reason: clean(reason) },
        TransportError::Unknown { reason } => TransportError::Unknown { reason: clean(reason) },
        TransportError::Fatal { reason } => TransportError::Fatal { reason: clean(reason) },
        other @ (TransportError::RateLimited { .. } | TransportError::Blocked) => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "123456:ABC-def_ghi";

    /// Tokens are checked without being shown; Debug hides them; redaction takes them out.
    #[test]
    fn tokens_never_show() {
        let token = BotToken::new(TOKEN).unwrap();
        assert_eq!(format!("{token:?}"), "BotToken(***)");
        assert_eq!(token.redact(&format!("GET /bot{TOKEN}/sendMessage")), "GET /bot***/sendMessage");
        let bad = BotToken::new("abc/../x?y").unwrap_err();
        assert!(!bad.to_string().contains("abc"), "{bad}");
        assert!(BotToken::new("  ").is_err());
        let missing = BotToken::from_env("GAVAT_TEST_NO_SUCH_TOKEN_VARIABLE").unwrap_err();
        assert!(missing.to_string().contains("GAVAT_TEST_NO_SUCH_TOKEN_VARIABLE"), "{missing}");
    }

    /// https anywhere, plain http to loopback only; the URL puts the token in the path.
    #[test]
    fn base_urls_are_checked() {
        let t = Duration::from_secs(1);
        assert!(BotApi::new("https://api.telegram.org", t).is_ok());
        assert!(BotApi::new("http://127.0.0.1:8081/", t).is_ok());
        assert!(BotApi::new("http://api.telegram.org", t).is_err());
        assert!(BotApi::new("https://api.telegram.org?x=1", t).is_err());
        assert!(BotApi::new("nonsense", t).is_err());
        assert!(BotApi::new("https://api.telegram.org", Duration::ZERO).is_err());
        let api = BotApi::new("http://127.0.0.1:8081/local/", t).unwrap();
        let url = api.url(&BotToken::new(TOKEN).unwrap()).unwrap();
        assert_eq!(url.as_str(), format!("http://127.0.0.1:8081/local/bot{TOKEN}/sendMessage"));
        assert!(!format!("{api:?}").contains("local"));
    }
}
