//! [`TelegramInbound`]: Telegram as the engine's [`InboundSource`]. It takes in one update at
//! a time ([`TelegramInbound::take_in`]) — from the poller (`poll`) or the HTTP API's
//! webhook — does what the update means, and returns only once everything it changed is
//! stored: the store's own writes (a new user, a contact, a group member) directly, the
//! engine's (an opt-out, a reply, a consent) through the sink and the engine's
//! acknowledgement, which comes after the engine has stored the event
//! ([`InboundSource::acknowledge_after_persist`]). The poller moves a bot's offset past an
//! update only after that; the webhook answers 200 only after that.
//!
//! What each update does (docs/telegram.md, "Inbound updates"):
//! - `/start`: consent. A new user is created (stored, then sent to the running engine
//!   through its arrivals channel) and their contact saved; a known one gets a
//!   [`InboundKind::Consent`] event, which lifts an earlier opt-out.
//! - `/stop`, the Unsubscribe button: [`InboundKind::OptOut`], then one short confirmation
//!   (not again for a user already opted out). Every button press is answered.
//! - `my_chat_member` kicked/left in a private chat (a block): opt-out, nothing sent.
//! - A private message: [`InboundKind::Reply`] if it replies to one of our messages, or
//!   comes within the reply window after our last one; else [`InboundKind::Activity`].
//! - `successful_payment`: [`InboundKind::Conversion`].
//! - A group message or a `chat_member` change: the group's members are updated, and a known
//!   user's message (or joining) is activity.
//!
//! Events of one update carry one source id, derived from the bot and the `update_id`:
//! the engine takes an id in at most once, so a redelivered update changes nothing twice.

use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::api::{DirectoryError, Upserted, UserDirectory};
use crate::clock::Clock;
use crate::contacts::{Contact, ContactBook, ContactError};
use crate::domain::{
    ActivitySummary, BotId, GroupId, InboundEvent, InboundKind, ResponseHistory, Timestamp, UserId, UserProfile, Zone,
};
use crate::store::StoreError;
use crate::transport::{Ack, AckWaiters, InboundSink, InboundSource, TransportConfigError};

use super::Bot;
use super::calls::{CallError, InboundCalls};
use super::state::{GroupMembership, TelegramState};
use super::updates::{Update, UpdateAction, UpdateError, parse_update_value, read_update, update_id_of};

/// How long after our last message a plain message from the user counts as a reply: 24 h.
pub const DEFAULT_REPLY_WINDOW_SECS: i64 = 24 * 3_600;

/// How long an update waits for the engine to take it in before it is tried again.
pub const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(10);

/// The confirmation of an opt-out, sent once.
pub const STOP_CONFIRMATION: &str =
    "You are unsubscribed: we will not message you again. Send /start to subscribe again.";

/// How updates reach gavat.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InboundMode {
    /// `getUpdates` long polling (the default).
    Poll,
    /// Telegram POSTs updates to `POST /telegram/{bot}` on the HTTP API.
    Webhook,
    /// No updates are read.
    Off,
}

/// How the inbound side behaves.
#[derive(Clone)]
pub struct InboundOptions {
    /// The Bot API's base URL.
    pub api_base_url: String,
    /// A short Bot API call may take this long.
    pub timeout: Duration,
    /// How long a `getUpdates` long poll waits for an update.
    pub poll_timeout_secs: u64,
    /// How long after our last message a plain message counts as a reply.
    pub reply_window_secs: i64,
    /// The time zone a user created by `/start` gets (Telegram does not tell a user's
    /// time zone); the CRM may correct it with `PUT /v1/users/{id}`.
    pub new_user_zone: Zone,
    /// How long an update waits for the engine's acknowledgement.
    pub ack_timeout: Duration,
    /// The webhook's secret (`X-Telegram-Bot-Api-Secret-Token`), in webhook mode.
    pub webhook_secret: Option<String>,
}

impl fmt::Debug for InboundOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The secret is never shown.
        f.debug_struct("InboundOptions")
            .field("timeout", &self.timeout)
            .field("poll_timeout_secs", &self.poll_timeout_secs)
            .field("reply_window_secs", &self.reply_window_secs)
            .field("new_user_zone", &self.new_user_zone)
            .field("webhook_secret", &self.webhook_secret.as_ref().map(|_| "***"))
            .finish_non_exhaustive()
    }
}

impl Default for InboundOptions {
    fn default() -> InboundOptions {
        InboundOptions {
            api_base_url: super::DEFAULT_API_BASE_URL.to_string(),
            timeout: super::DEFAULT_TELEGRAM_TIMEOUT,
            poll_timeout_secs: super::DEFAULT_POLL_TIMEOUT_SECS,
            reply_window_secs: DEFAULT_REPLY_WINDOW_SECS,
            new_user_zone: Zone::UTC,
            ack_timeout: DEFAULT_ACK_TIMEOUT,
            webhook_secret: None,
        }
    }
}

/// What the inbound side writes to and reads from.
#[derive(Clone, Debug)]
pub struct InboundParts {
    /// Users: read to know who is known and opted out; written for a new user.
    pub directory: Arc<dyn UserDirectory>,
    /// The running engine's arrivals channel ([`crate::engine::user_arrivals`]).
    pub arrivals: mpsc::UnboundedSender<UserProfile>,
    /// Contacts (name, language, bot, consent).
    pub contacts: Arc<dyn ContactBook>,
    /// Sent messages (reply attribution).
    pub state: Arc<dyn TelegramState>,
    /// Group members.
    pub members: Arc<dyn GroupMembership>,
    /// The engine's clock.
    pub clock: Arc<dyn Clock>,
}

/// Why an update was not taken in. Each variant says whether to try again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TakeInError {
    /// The update cannot be read. Final: the poller moves past it (counted, logged).
    #[error(transparent)]
    Malformed(#[from] UpdateError),
    /// No bot of that name (a webhook URL gavat did not register). Final.
    #[error("no bot named {0}")]
    UnknownBot(String),
    /// The store could not be read or written. Retryable: the update is delivered again.
    #[error("store: {0}")]
    Store(String),
    /// The engine is not taking events (not started, stopped) or did not acknowledge in
    /// time. Retryable: the engine de-duplicates a redelivery.
    #[error("the engine did not take the update in: {0}")]
    Engine(String),
}

impl TakeInError {
    /// Whether delivering the update again may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, TakeInError::Store(_) | TakeInError::Engine(_))
    }
}

impl From<StoreError> for TakeInError {
    fn from(e: StoreError) -> TakeInError {
        TakeInError::Store(e.to_string())
    }
}

impl From<DirectoryError> for TakeInError {
    fn from(e: DirectoryError) -> TakeInError {
        TakeInError::Store(e.to_string())
    }
}

impl From<ContactError> for TakeInError {
    fn from(e: ContactError) -> TakeInError {
        TakeInError::Store(e.to_string())
    }
}

/// Counts of updates by what came of them (the `telegram_updates_*_total` counters).
#[derive(Debug, Default)]
pub struct UpdateCounts {
    /// Taken in (something changed, or nothing needed to).
    pub taken_in: AtomicU64,
    /// Of a kind gavat does not use.
    pub ignored: AtomicU64,
    /// From a user gavat does not know (no `/start` yet), for a user-level action.
    pub unknown_user: AtomicU64,
    /// Malformed: logged and moved past.
    pub malformed: AtomicU64,
    /// Not taken in this time (store or engine unavailable): delivered again.
    pub retried: AtomicU64,
    /// Opt-out confirmations sent.
    pub confirmations: AtomicU64,
}

impl UpdateCounts {
    fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// `(name, value)` of every counter, in a fixed order.
    pub fn snapshot(&self) -> [(&'static str, u64); 6] {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        [
            ("telegram_updates_taken_in_total", get(&self.taken_in)),
            ("telegram_updates_ignored_total", get(&self.ignored)),
            ("telegram_updates_unknown_user_total", get(&self.unknown_user)),
            ("telegram_updates_malformed_total", get(&self.malformed)),
            ("telegram_updates_retried_total", get(&self.retried)),
            ("telegram_opt_out_confirmations_total", get(&self.confirmations)),
        ]
    }
}

/// The source id of update `update_id` of the bot named `bot`: the first 8 bytes of a
/// SHA-256 under a fixed prefix, the same in every process (a redelivery after a restart maps
/// to the same id), distinct from the API's idempotency-key ids by the prefix.
pub fn source_of_update(bot: &str, update_id: i64) -> u64 {
    let digest = Sha256::new()
        .chain_update(b"gavat-telegram/update\0")
        .chain_update(bot.as_bytes())
        .chain_update(b"\0")
        .chain_update(update_id.to_be_bytes())
        .finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// See the module documentation. Share one in an `Arc` between the poller or the webhook
/// and [`EngineBuilder::inbound_source`](crate::engine::EngineBuilder::inbound_source).
pub struct TelegramInbound {
    bots: Vec<Bot>,
    pub(super) calls: InboundCalls,
    pub(super) options: InboundOptions,
    parts: InboundParts,
    sink: Mutex<Option<InboundSink>>,
    /// Events waiting for the engine's answer.
    waiters: AckWaiters,
    /// Users whose opt-out this process confirmed (a second `/stop` is not confirmed again).
    confirmed: Mutex<HashSet<UserId>>,
    counts: UpdateCounts,
}

impl fmt::Debug for TelegramInbound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.bots.iter().map(|b| b.name.as_str()).collect();
        f.debug_struct("TelegramInbound").field("bots", &names).field("options", &self.options).finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every write under these locks is one insert or remove.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl TelegramInbound {
    /// The inbound side of `bots` (at least one), writing through `parts`.
    pub fn new(
        bots: Vec<Bot>,
        options: InboundOptions,
        parts: InboundParts,
    ) -> Result<TelegramInbound, TransportConfigError> {
        if bots.is_empty() {
            return Err(TransportConfigError::Invalid { field: "bots", why: "Telegram updates need a bot".into() });
        }
        if options.poll_timeout_secs > 50 {
            return Err(TransportConfigError::Invalid {
                field: "poll_timeout_secs",
                why: "must be 0–50 seconds (Telegram holds a long poll at most 50 s)".into(),
            });
        }
        if options.reply_window_secs < 0 {
            return Err(TransportConfigError::Invalid {
                field: "reply_window_secs",
                why: "must not be negative".into(),
            });
        }
        let calls = InboundCalls::new(&options.api_base_url, options.timeout)?;
        Ok(TelegramInbound {
            bots,
            calls,
            options,
            parts,
            sink: Mutex::new(None),
            waiters: AckWaiters::new(),
            confirmed: Mutex::new(HashSet::new()),
            counts: UpdateCounts::default(),
        })
    }

    /// The bots, in configuration order (index = [`BotId`]).
    pub fn bots(&self) -> &[Bot] {
        &self.bots
    }

    /// The index of the bot named `name`.
    pub fn bot_named(&self, name: &str) -> Option<usize> {
        self.bots.iter().position(|b| b.name == name)
    }

    /// Offsets and sent messages.
    pub(super) fn state(&self) -> &Arc<dyn TelegramState> {
        &self.parts.state
    }

    /// The counters.
    pub fn counts(&self) -> &UpdateCounts {
        &self.counts
    }

    /// Whether `given` is the webhook's secret, compared in constant time (over SHA-256
    /// digests: the time depends on neither value nor their lengths). Without a configured
    /// secret nothing matches.
    pub fn secret_matches(&self, given: Option<&[u8]>) -> bool {
        let (Some(secret), Some(given)) = (&self.options.webhook_secret, given) else { return false };
        let a = Sha256::digest(secret.as_bytes());
        let b = Sha256::digest(given);
        a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }

    /// Webhook mode: tells Telegram to POST each bot's updates to
    /// `{public_base}/telegram/{bot name}` with the secret. Fails without a secret.
    pub async fn register_webhooks(&self, public_base: &str) -> Result<(), CallError> {
        let base = public_base.trim_end_matches('/');
        for Bot { name, token } in &self.bots {
            let Some(secret) = &self.options.webhook_secret else {
                return Err(CallError { bot: name.clone(), method: "setWebhook", reason: "no webhook secret".into() });
            };
            self.calls.set_webhook(name, token, &format!("{base}/telegram/{name}"), secret).await?;
            tracing::info!(bot = %name, "Telegram webhook set.");
        }
        Ok(())
    }

    /// Takes in one update of the bot at `bot` given as JSON: parsed (a malformed one is
    /// counted and logged, naming the field), then [`TelegramInbound::take_in`].
    pub async fn take_in_json(&self, bot: usize, json: &serde_json::Value) -> Result<(), TakeInError> {
        match parse_update_value(json) {
            Ok(update) => self.take_in(bot, &update).await,
            Err(e) => {
                UpdateCounts::add(&self.counts.malformed);
                let name = self.bots.get(bot).map_or("?", |b| b.name.as_str());
                tracing::error!(bot = name, update_id = ?update_id_of(json), error = %e, "Malformed Telegram update; not taken in.");
                Err(e.into())
            }
        }
    }

    /// Does what `update` of the bot at `bot` means; returns once all it changed is stored.
    pub async fn take_in(&self, bot: usize, update: &Update) -> Result<(), TakeInError> {
        let Some(bot_config) = self.bots.get(bot) else { return Err(TakeInError::UnknownBot(bot.to_string())) };
        let source = source_of_update(&bot_config.name, update.update_id);
        let result = self.act(bot, source, read_update(update)).await;
        match &result {
            Ok(()) => {}
            Err(e) if e.is_retryable() => {
                UpdateCounts::add(&self.counts.retried);
                tracing::warn!(bot = %bot_config.name, update_id = update.update_id, error = %e, "Telegram update not taken in; it comes again.");
            }
            Err(_) => {}
        }
        result
    }

    async fn act(&self, bot: usize, source: u64, action: UpdateAction) -> Result<(), TakeInError> {
        let now = self.parts.clock.now();
        // An update's own date, never ahead of the engine's clock.
        let when = |at: Timestamp| at.min(now);
        match action {
            UpdateAction::Start { person, at } => {
                let at = when(at);
                let known = self.parts.directory.get(person.user)?;
                self.parts.contacts.save_contact(&Contact {
                    user: person.user,
                    first_name: person.first_name,
                    username: person.username,
                    language_code: person.language_code,
                    bot: BotId(bot as u32),
                    consented_at: Some(at),
                })?;
                lock(&self.confirmed).remove(&person.user);
                match known {
                    None => self.create_user(person.user, at)?,
                    Some(_) => self.submit(person.user, InboundKind::Consent, None, at, source).await?,
                }
            }
            UpdateAction::Stop { user, at } => self.opt_out(bot, user, when(at), source, true).await?,
            UpdateAction::Unsubscribe { user, query } => {
                self.opt_out(bot, user, now, source, true).await?;
                self.answer(bot, &query, Some("Unsubscribed")).await;
            }
            UpdateAction::Button { user, query } => {
                if self.known(user)? {
                    self.submit(user, InboundKind::Activity, None, now, source).await?;
                }
                self.answer(bot, &query, None).await;
            }
            UpdateAction::Blocked { user, at } => self.opt_out(bot, user, when(at), source, false).await?,
            UpdateAction::PrivateMessage { user, at, chat_id, reply_to } => {
                let at = when(at);
                let Some(state) = self.parts.directory.get(user)? else {
                    self.unknown(user);
                    return Ok(());
                };
                let ours = match reply_to {
                    Some(id) => self.parts.state.sent_message(&self.bots[bot].name, chat_id, id)?.is_some(),
                    None => false,
                };
                let recent =
                    state.caps.last_sent.is_some_and(|t| at.secs() - t.secs() <= self.options.reply_window_secs);
                let kind = if ours || recent { InboundKind::Reply } else { InboundKind::Activity };
                self.submit(user, kind, None, at, source).await?;
            }
            UpdateAction::Payment { user, at } => {
                if !self.known(user)? {
                    self.unknown(user);
                    return Ok(());
                }
                self.submit(user, InboundKind::Conversion, None, when(at), source).await?;
            }
            UpdateAction::GroupMessage { user, at, chat_id } => {
                let at = when(at);
                self.parts.members.set_member(chat_id, user, true, at)?;
                if self.known(user)? {
                    let group = self.group_of(chat_id)?;
                    self.submit(user, InboundKind::Activity, group, at, source).await?;
                }
            }
            UpdateAction::Membership { user, at, chat_id, member } => {
                let at = when(at);
                self.parts.members.set_member(chat_id, user, member, at)?;
                if member && self.known(user)? {
                    let group = self.group_of(chat_id)?;
                    self.submit(user, InboundKind::Activity, group, at, source).await?;
                }
            }
            UpdateAction::Ignored { why } => {
                UpdateCounts::add(&self.counts.ignored);
                tracing::debug!(bot = %self.bots[bot].name, why, "Telegram update ignored.");
                return Ok(());
            }
        }
        UpdateCounts::add(&self.counts.taken_in);
        Ok(())
    }

    /// A user's opt-out: stored by the engine at once; then, for `/stop` and the button, one
    /// confirmation unless the user was opted out already.
    async fn opt_out(
        &self,
        bot: usize,
        user: UserId,
        at: Timestamp,
        source: u64,
        confirm: bool,
    ) -> Result<(), TakeInError> {
        let Some(state) = self.parts.directory.get(user)? else {
            self.unknown(user);
            return Ok(());
        };
        self.submit(user, InboundKind::OptOut, None, at, source).await?;
        let first = !state.caps.opted_out && lock(&self.confirmed).insert(user);
        if confirm && first {
            let Bot { name, token } = &self.bots[bot];
            let chat = i64::try_from(user.0).unwrap_or(i64::MAX);
            match self.calls.send_plain(name, token, chat, STOP_CONFIRMATION).await {
                Ok(()) => UpdateCounts::add(&self.counts.confirmations),
                // The opt-out holds; only its confirmation is missing.
                Err(e) => tracing::warn!(user = %user, error = %e, "Could not confirm an opt-out."),
            }
        }
        Ok(())
    }

    /// Answers a button press; a failure is logged (the press itself was taken in).
    async fn answer(&self, bot: usize, query: &str, text: Option<&str>) {
        let Bot { name, token } = &self.bots[bot];
        if let Err(e) = self.calls.answer_callback_query(name, token, query, text).await {
            tracing::warn!(bot = %name, error = %e, "Could not answer a button press.");
        }
    }

    /// A user joins: stored, then sent to the running engine.
    fn create_user(&self, user: UserId, at: Timestamp) -> Result<(), TakeInError> {
        let profile = UserProfile {
            id: user,
            joined_at: at,
            zone: self.options.new_user_zone,
            // Joining is activity: a user who has just joined is not silent.
            activity: ActivitySummary { last_active: at, ..ActivitySummary::default() },
            bots_followed: 1,
            purchases: 0,
            responses: ResponseHistory::default(),
        };
        if self.parts.directory.upsert(profile.clone())? == Upserted::Created {
            tracing::info!(user = %user, "New user from /start.");
            if self.parts.arrivals.send(profile).is_err() {
                tracing::warn!(user = %user, "The engine is not running; a new user was stored but not planned.");
            }
        }
        Ok(())
    }

    fn known(&self, user: UserId) -> Result<bool, TakeInError> {
        Ok(self.parts.directory.exists(user)?)
    }

    fn unknown(&self, user: UserId) {
        UpdateCounts::add(&self.counts.unknown_user);
        tracing::debug!(user = %user, "Telegram update from a user who has not sent /start; ignored.");
    }

    fn group_of(&self, chat_id: i64) -> Result<Option<GroupId>, TakeInError> {
        Ok(self.parts.contacts.group_of_chat(chat_id)?.map(|g| g.group))
    }

    /// Hands one event to the engine and waits for its acknowledgement (taken in and
    /// stored). A user the engine does not hold (another instance's) is logged and counted.
    async fn submit(
        &self,
        user: UserId,
        kind: InboundKind,
        group: Option<GroupId>,
        at: Timestamp,
        source: u64,
    ) -> Result<(), TakeInError> {
        let sink = lock(&self.sink).clone().ok_or_else(|| TakeInError::Engine("not started".into()))?;
        let event = InboundEvent { at, user, kind, group, source: Some(source) };
        match self.waiters.push_and_wait(&sink, event, source, self.options.ack_timeout).await {
            Ack::Taken => Ok(()),
            Ack::Rejected => {
                self.unknown(user);
                tracing::warn!(user = %user, kind = kind.as_str(), "The running engine does not hold this user; the update was not applied.");
                Ok(())
            }
            Ack::TimedOut => {
                Err(TakeInError::Engine(format!("no acknowledgement within {:?}", self.options.ack_timeout)))
            }
        }
    }
}

impl InboundSource for TelegramInbound {
    fn start(&self, sink: InboundSink) {
        *lock(&self.sink) = Some(sink);
    }

    fn acknowledge(&self, event: &InboundEvent) {
        self.waiters.answer(event, true);
    }

    fn reject(&self, event: &InboundEvent) {
        self.waiters.answer(event, false);
    }

    fn acknowledge_after_persist(&self) -> bool {
        true
    }
}

/// Several inbound sources as one (the HTTP API's and Telegram's): each is started with the
/// engine's sink; an acknowledgement or rejection goes to every one, and each acts only on
/// the source ids it is waiting for (their ids come from different hash prefixes).
#[derive(Debug)]
pub struct FanIn {
    sources: Vec<Arc<dyn InboundSource>>,
}

impl FanIn {
    /// The sources, in order.
    pub fn new(sources: Vec<Arc<dyn InboundSource>>) -> FanIn {
        FanIn { sources }
    }
}

impl InboundSource for FanIn {
    fn start(&self, sink: InboundSink) {
        for source in &self.sources {
            source.start(sink.clone());
        }
    }

    fn acknowledge(&self, event: &InboundEvent) {
        for source in &self.sources {
            source.acknowledge(event);
        }
    }

    fn reject(&self, event: &InboundEvent) {
        for source in &self.sources {
            source.reject(event);
        }
    }

    fn acknowledge_after_persist(&self) -> bool {
        self.sources.iter().any(|s| s.acknowledge_after_persist())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Source ids are stable per bot and update, and differ between bots.
    #[test]
    fn source_ids_are_stable_and_per_bot() {
        assert_eq!(source_of_update("a", 7), source_of_update("a", 7));
        assert_ne!(source_of_update("a", 7), source_of_update("b", 7));
        assert_ne!(source_of_update("a", 7), source_of_update("a", 8));
        assert_ne!(source_of_update("a", 7), crate::api::source_of_key("a"));
    }
}
