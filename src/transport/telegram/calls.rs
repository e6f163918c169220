//! The Bot API calls of the inbound side: `getUpdates` (a long poll), `answerCallbackQuery`,
//! `setWebhook`, `deleteWebhook` and a transactional `sendMessage` (the one-line
//! confirmation of an opt-out: an answer to the user, not a marketing send, so it passes no
//! cap). Every URL holds the token: failures are read through `reqwest::Error::without_url`
//! and every reason is redacted before it leaves this file.

use std::time::Duration;

use reqwest::header::CONTENT_TYPE;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::transport::TransportConfigError;
use crate::transport::http::error_chain;

use super::client::{BotApi, BotToken};

/// The update kinds gavat asks for. `chat_member` is only sent when asked for by name.
pub(crate) const ALLOWED_UPDATES: [&str; 4] = ["message", "callback_query", "my_chat_member", "chat_member"];

/// Longest answer read (a `getUpdates` batch of 100 updates stays far below).
const MAX_ANSWER: usize = 8 * 1024 * 1024;

/// Why a Bot API call failed. Never holds the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bot {bot}: {method}: {reason}")]
pub struct CallError {
    /// The bot's name.
    pub bot: String,
    /// The Bot API method.
    pub method: &'static str,
    /// What went wrong.
    pub reason: String,
}

/// The Bot API for the inbound side: URLs from the sender's [`BotApi`], a client whose
/// timeout leaves room for a long poll.
#[derive(Clone, Debug)]
pub(crate) struct InboundCalls {
    api: BotApi,
    client: reqwest::Client,
    /// Connecting and a short call may take this long.
    timeout: Duration,
}

#[derive(Serialize)]
struct GetUpdates<'a> {
    offset: Option<i64>,
    timeout: u64,
    allowed_updates: &'a [&'a str],
}

#[derive(Serialize)]
struct AnswerCallbackQuery<'a> {
    callback_query_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
}

#[derive(Serialize)]
struct SetWebhook<'a> {
    url: &'a str,
    secret_token: &'a str,
    allowed_updates: &'a [&'a str],
}

#[derive(Serialize)]
struct DeleteWebhook {
    drop_pending_updates: bool,
}

#[derive(Serialize)]
struct PlainMessage<'a> {
    chat_id: i64,
    text: &'a str,
}

impl InboundCalls {
    /// Calls to the Bot API at `base_url`; a short call may take `timeout`.
    pub(crate) fn new(base_url: &str, timeout: Duration) -> Result<InboundCalls, TransportConfigError> {
        let api = BotApi::new(base_url, timeout)?;
        // rustls needs one process-wide crypto provider; a second install is a no-op error.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("gavat/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| TransportConfigError::Client { why: error_chain(&e.without_url()) })?;
        Ok(InboundCalls { api, client, timeout })
    }

    /// The updates from `offset` on (raw JSON, each read on its own: one malformed update
    /// does not hide the others), waiting up to `poll_secs` for one to come.
    pub(crate) async fn get_updates(
        &self,
        bot: &str,
        token: &BotToken,
        offset: Option<i64>,
        poll_secs: u64,
    ) -> Result<Vec<serde_json::Value>, CallError> {
        let body = GetUpdates { offset, timeout: poll_secs, allowed_updates: &ALLOWED_UPDATES };
        // The long poll itself plus the time of a short call.
        let limit = Duration::from_secs(poll_secs) + 2 * self.timeout;
        self.call(bot, token, "getUpdates", &body, limit).await
    }

    /// Answers a button press (`text`: a short notice the user sees).
    pub(crate) async fn answer_callback_query(
        &self,
        bot: &str,
        token: &BotToken,
        query: &str,
        text: Option<&str>,
    ) -> Result<(), CallError> {
        let body = AnswerCallbackQuery { callback_query_id: query, text };
        self.call::<serde_json::Value>(bot, token, "answerCallbackQuery", &body, 2 * self.timeout).await.map(drop)
    }

    /// Sends a plain-text answer to the user (not a marketing message: no caps).
    pub(crate) async fn send_plain(
        &self,
        bot: &str,
        token: &BotToken,
        chat_id: i64,
        text: &str,
    ) -> Result<(), CallError> {
        let body = PlainMessage { chat_id, text };
        self.call::<serde_json::Value>(bot, token, "sendMessage", &body, 2 * self.timeout).await.map(drop)
    }

    /// Tells Telegram to POST the bot's updates to `url` with `secret` in the
    /// `X-Telegram-Bot-Api-Secret-Token` header.
    pub(crate) async fn set_webhook(
        &self,
        bot: &str,
        token: &BotToken,
        url: &str,
        secret: &str,
    ) -> Result<(), CallError> {
        let body = SetWebhook { url, secret_token: secret, allowed_updates: &ALLOWED_UPDATES };
        self.call::<serde_json::Value>(bot, token, "setWebhook", &body, 2 * self.timeout).await.map(drop)
    }

    /// Removes the bot's webhook (Telegram refuses `getUpdates` while one is set), keeping
    /// the updates waiting.
    pub(crate) async fn delete_webhook(&self, bot: &str, token: &BotToken) -> Result<(), CallError> {
        let body = DeleteWebhook { drop_pending_updates: false };
        self.call::<serde_json::Value>(bot, token, "deleteWebhook", &body, 2 * self.timeout).await.map(drop)
    }

    /// POSTs `body` to `method` and reads `result` of an `ok: true` answer.
    async fn call<T: DeserializeOwned>(
        &self,
        bot: &str,
        token: &BotToken,
        method: &'static str,
        body: &impl Serialize,
        limit: Duration,
    ) -> Result<T, CallError> {
        let fail = |reason: String| CallError { bot: bot.to_string(), method, reason: token.redact(&reason) };
        let url = self.api.method_url(token, method).map_err(|e| fail(e.to_string()))?;
        let body = serde_json::to_vec(body).map_err(|e| fail(format!("the request cannot be written: {e}")))?;
        let request = self.client.post(url).header(CONTENT_TYPE, "application/json").body(body).timeout(limit);
        let origin = self.api.origin();
        let mut response =
            request.send().await.map_err(|e| fail(format!("{origin}: {}", error_chain(&e.without_url()))))?;
        let status = response.status().as_u16();
        let mut answer = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| fail(format!("{origin}: HTTP {status}, then {}", error_chain(&e.without_url()))))?
        {
            if answer.len() + chunk.len() > MAX_ANSWER {
                return Err(fail(format!("{origin}: HTTP {status}: the answer is longer than {MAX_ANSWER} bytes")));
            }
            answer.extend_from_slice(&chunk);
        }
        #[derive(serde::Deserialize)]
        struct Answer<T> {
            ok: bool,
            result: Option<T>,
            description: Option<String>,
        }
        let parsed: Answer<T> = serde_json::from_slice(&answer)
            .map_err(|e| fail(format!("{origin}: HTTP {status}: not a Bot API answer ({e})")))?;
        match (parsed.ok, parsed.result) {
            (true, Some(result)) => Ok(result),
            (true, None) => Err(fail(format!("{origin}: HTTP {status}: an answer without a result"))),
            (false, _) => Err(fail(format!(
                "{origin}: HTTP {status}: {}",
                parsed.description.unwrap_or_else(|| "refused without a description".into())
            ))),
        }
    }
}
