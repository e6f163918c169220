//! `POST /telegram/{bot}`: Telegram's webhook for the bot named `{bot}`, when `gavat run`
//! takes updates by webhook. The request must carry the secret given to `setWebhook` in
//! `X-Telegram-Bot-Api-Secret-Token` (compared in constant time; 401 without it or with
//! another, the secret never echoed). The answer is 200 only after the update is taken in
//! (everything it changed stored), so that Telegram delivers again whatever gavat did not
//! keep: 503 when the store or the engine cannot take it now, 400 for an update that cannot
//! be read (naming the field; counted).

use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, web};

use crate::transport::telegram::{TakeInError, TelegramInbound};

use super::body::read_json;
use super::reply::Failure;

/// The header Telegram puts the webhook's secret in.
pub const SECRET_HEADER: &str = "X-Telegram-Bot-Api-Secret-Token";

/// Longest update accepted (Telegram's are a few kilobytes).
const UPDATE_LIMIT: usize = 1024 * 1024;

/// The handler's state: the Telegram inbound source.
#[derive(Debug, Clone)]
pub(super) struct WebhookTarget(pub(super) Arc<TelegramInbound>);

/// `POST /telegram/{bot}`.
pub(super) async fn post_update(
    req: HttpRequest,
    payload: web::Payload,
    target: web::Data<WebhookTarget>,
) -> Result<HttpResponse, Failure> {
    let inbound = &target.0;
    let given = req.headers().get(SECRET_HEADER).map(|v| v.as_bytes());
    if !inbound.secret_matches(given) {
        return Err(Failure::unauthorized(format!("missing or wrong {SECRET_HEADER}")));
    }
    let name = req.match_info().get("bot").unwrap_or_default();
    let Some(bot) = inbound.bot_named(name) else {
        return Err(Failure::not_found("unknown_bot", format!("no bot named {name}"), None));
    };
    let update: serde_json::Value = read_json(&req, payload, UPDATE_LIMIT).await?;
    match inbound.take_in_json(bot, &update).await {
        Ok(()) => Ok(HttpResponse::Ok().json(serde_json::json!({ "ok": true }))),
        Err(TakeInError::Malformed(e)) => Err(Failure::bad_request(e.to_string())),
        Err(e) if e.is_retryable() => Err(Failure::unavailable("telegram_update_not_taken_in", e.to_string())),
        Err(e) => Err(Failure::bad_request(e.to_string())),
    }
}
