//! Telegram updates in `gavat run`: builds the [`TelegramInbound`] of the configuration's
//! `[transport] inbound` keys over the run's store (offsets, sent messages, group members
//! and contacts live there), and starts it — `getUpdates` pollers, or the webhooks
//! registered with Telegram (the HTTP API then answers `POST /telegram/{bot}`).

use std::sync::Arc;

use crate::api::UserDirectory;
use crate::clock::Clock;
use crate::contacts::ContactBook;
use crate::domain::UserProfile;
use crate::transport::telegram::{
    Bot, BotToken, DEFAULT_TELEGRAM_TIMEOUT, GroupMembership, InboundMode, InboundOptions, InboundParts,
    TelegramInbound, TelegramState, start_polling,
};

use super::config::RunConfig;
use super::parts::{LiveError, UsersAt};

/// The store as the Telegram transport's state: offsets and the Bot API ids of sent
/// messages. Give it to `TelegramSender::with_sent_log` too, so that replies to our
/// messages are attributed by id.
pub fn telegram_state(users_at: &UsersAt) -> Arc<dyn TelegramState> {
    match users_at {
        UsersAt::Sqlite(s) => s.clone(),
        UsersAt::Redis(r) => r.clone(),
    }
}

/// The store as the group-membership record (what the groups' logic reads members from).
pub fn group_membership(users_at: &UsersAt) -> Arc<dyn GroupMembership> {
    match users_at {
        UsersAt::Sqlite(s) => s.clone(),
        UsersAt::Redis(r) => r.clone(),
    }
}

/// The store as the contact book (names, languages, bots, group chat ids).
pub fn contact_book(users_at: &UsersAt) -> Arc<dyn ContactBook> {
    match users_at {
        UsersAt::Sqlite(s) => s.clone(),
        UsersAt::Redis(r) => r.clone(),
    }
}

/// The Telegram inbound source of `config`, or `None` when updates are off. Reads each
/// bot's token and the webhook secret from the environment (errors name the variable,
/// never a value).
pub fn telegram_inbound(
    config: &RunConfig,
    users_at: &UsersAt,
    directory: Arc<dyn UserDirectory>,
    arrivals: tokio::sync::mpsc::UnboundedSender<UserProfile>,
    clock: Arc<dyn Clock>,
) -> Result<Option<Arc<TelegramInbound>>, LiveError> {
    let Some(settings) = &config.telegram_inbound else { return Ok(None) };
    let transport = |e: crate::transport::TransportConfigError| LiveError::Transport(e.to_string());
    let bots = config
        .bots
        .iter()
        .map(|b| Ok(Bot { name: b.name.clone(), token: BotToken::from_env(&b.token_env).map_err(transport)? }))
        .collect::<Result<Vec<_>, LiveError>>()?;
    let webhook_secret = match (settings.mode, &settings.webhook_secret_env) {
        (InboundMode::Webhook, Some(name)) => Some(secret_from_env(name)?),
        _ => None,
    };
    let options = InboundOptions {
        api_base_url: settings.api_base_url.clone(),
        timeout: DEFAULT_TELEGRAM_TIMEOUT,
        poll_timeout_secs: settings.poll_timeout_secs,
        new_user_zone: settings.new_user_zone,
        webhook_secret,
        ..InboundOptions::default()
    };
    let parts = InboundParts {
        directory,
        arrivals,
        contacts: contact_book(users_at),
        state: telegram_state(users_at),
        members: group_membership(users_at),
        clock,
    };
    Ok(Some(Arc::new(TelegramInbound::new(bots, options, parts).map_err(transport)?)))
}

/// Starts taking updates: pollers (returned, to abort at the end of the run), or — in
/// webhook mode — `setWebhook` for every bot, which must succeed before the run starts.
pub async fn start_inbound(
    config: &RunConfig,
    inbound: &Arc<TelegramInbound>,
) -> Result<Vec<tokio::task::JoinHandle<()>>, LiveError> {
    let Some(settings) = &config.telegram_inbound else { return Ok(Vec::new()) };
    match settings.mode {
        InboundMode::Poll => Ok(start_polling(inbound.clone())),
        InboundMode::Webhook => {
            let url = settings.webhook_url.as_deref().unwrap_or_default();
            inbound.register_webhooks(url).await.map_err(|e| LiveError::Transport(e.to_string()))?;
            Ok(Vec::new())
        }
        InboundMode::Off => Ok(Vec::new()),
    }
}

/// The webhook secret in the variable `name`: set, not blank (its value is never shown).
/// Telegram allows 1–256 characters `A-Z a-z 0-9 _ -`.
fn secret_from_env(name: &str) -> Result<String, LiveError> {
    let bad = |why: &str| LiveError::Transport(format!("environment variable {name} {why}"));
    let value = std::env::var(name).map_err(|_| bad("is not set: it must hold the Telegram webhook's secret"))?;
    let valid =
        (1..=256).contains(&value.len()) && value.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !valid {
        return Err(bad("must hold 1–256 characters A–Z, a–z, 0–9, _ or - (Telegram's rule for a webhook secret)"));
    }
    Ok(value)
}
