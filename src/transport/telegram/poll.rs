//! `getUpdates` long polling: one task per bot. Each asks for the updates from the bot's
//! stored offset on, takes them in one at a time, in `update_id` order, and after each one
//! is stored moves the offset past it (in the store) — so an update is confirmed to
//! Telegram (by the next `getUpdates` with a higher offset) only after what it changed is
//! stored. When an update cannot be taken in now (the store or the engine unavailable), the
//! task waits and asks again from the stored offset: the update comes again, and the engine
//! de-duplicates it by its source id. A malformed update is logged, counted and moved past.
//!
//! At the start each bot's webhook is deleted (Telegram refuses `getUpdates` while one is
//! set: switching from webhook back to polling needs it).

use std::sync::Arc;
use std::time::Duration;

use super::inbound::{TakeInError, TelegramInbound};
use super::updates::update_id_of;

/// How long a `getUpdates` long poll waits for an update by default.
pub const DEFAULT_POLL_TIMEOUT_SECS: u64 = 25;

/// The first wait after a failure; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Why a poller stopped. Never holds a token.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    /// The store could not give a bot's offset at the start.
    #[error("bot {bot}: the stored Telegram offset cannot be read: {reason}")]
    Offset {
        /// The bot.
        bot: String,
        /// Why.
        reason: String,
    },
}

/// Starts one polling task per bot on the current runtime (an actix system's, in
/// `gavat run`); abort the handles to stop. A bot whose webhook cannot be deleted keeps
/// trying (its `getUpdates` would be refused meanwhile).
pub fn start_polling(inbound: Arc<TelegramInbound>) -> Vec<tokio::task::JoinHandle<()>> {
    (0..inbound.bots().len()).map(|bot| tokio::spawn(poll_bot(inbound.clone(), bot))).collect()
}

/// The wait after a failure: doubling from [`FIRST_BACKOFF`] to [`MAX_BACKOFF`], back to the
/// first after a success.
struct Backoff {
    bot: String,
    next: Duration,
}

impl Backoff {
    /// Logs the failure and says how long to wait.
    fn fail(&mut self, what: &str, error: &dyn std::fmt::Display) -> Duration {
        tracing::warn!(bot = %self.bot, error = %error, "{what}");
        let wait = self.next;
        self.next = (self.next * 2).min(MAX_BACKOFF);
        wait
    }

    fn reset(&mut self) {
        self.next = FIRST_BACKOFF;
    }
}

async fn poll_bot(inbound: Arc<TelegramInbound>, bot: usize) {
    let (name, token) = (inbound.bots()[bot].name.clone(), inbound.bots()[bot].token.clone());
    let mut backoff = Backoff { bot: name.clone(), next: FIRST_BACKOFF };
    loop {
        match inbound.calls.delete_webhook(&name, &token).await {
            Ok(()) => break,
            Err(e) => tokio::time::sleep(backoff.fail("Could not delete the bot's webhook; polling waits.", &e)).await,
        }
    }
    loop {
        let offset = match inbound.state().next_update(&name) {
            Ok(offset) => offset,
            Err(e) => {
                let error = PollError::Offset { bot: name.clone(), reason: e.to_string() };
                let wait = backoff.fail("Telegram offset unreadable; polling waits.", &error);
                tokio::time::sleep(wait).await;
                continue;
            }
        };
        let updates = match inbound.calls.get_updates(&name, &token, offset, inbound.options.poll_timeout_secs).await {
            Ok(updates) => updates,
            Err(e) => {
                let wait = backoff.fail("getUpdates failed; polling again after a pause.", &e);
                tokio::time::sleep(wait).await;
                continue;
            }
        };
        let mut stalled = None;
        for raw in &updates {
            let id = update_id_of(raw);
            match inbound.take_in_json(bot, raw).await {
                Ok(()) | Err(TakeInError::Malformed(_)) => {}
                Err(e) if e.is_retryable() => {
                    stalled = Some(e);
                    break;
                }
                Err(e) => tracing::error!(bot = %name, error = %e, "Telegram update not taken in; moved past."),
            }
            fail::fail_point!("inbound-after-store-before-offset");
            // Stored: the offset moves past it. (An update without an id cannot be asked for
            // again; the next one's id moves the offset past it.)
            if let Some(id) = id
                && let Err(e) = inbound.state().save_next_update(&name, id + 1)
            {
                stalled = Some(TakeInError::from(e));
                break;
            }
        }
        match stalled {
            Some(e) => {
                tokio::time::sleep(backoff.fail("Telegram updates wait; asking again from the stored offset.", &e))
                    .await
            }
            None => backoff.reset(),
        }
    }
}
