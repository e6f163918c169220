//! The Telegram Bot API sender: each outbound message is one `sendMessage` through the bot
//! it names, to the user's chat (a direct message) or the group's (a post), as HTML.
//!
//! # Layout
//! - `client`: the HTTP client and the bot token, which never reaches a `Debug`, an
//!   error or a log line.
//! - `limits`: Telegram's limits (30/s per bot, 1/s per private chat, 20/min per group) and
//!   a bot's freeze after a 429, applied by delaying a send until it may go.
//! - `outcome`: what each Bot API answer means for the engine (the table is in that module
//!   and in `docs/telegram.md`).
//! - `updates`: Telegram `Update` objects parsed and read into [`UpdateAction`]s.
//! - `inbound`: [`TelegramInbound`], the engine's inbound source for Telegram: what each
//!   update does (users created, opt-outs, replies, memberships) and when it is taken in.
//! - `poll`: `getUpdates` long polling per bot, the offset moved only past stored updates.
//! - `calls`: the Bot API calls of the inbound side (`getUpdates`, `answerCallbackQuery`,
//!   `setWebhook`, `deleteWebhook`, a transactional `sendMessage`).
//! - `state`: offsets, the Bot API ids of sent messages, group members ([`TelegramState`],
//!   [`GroupMembership`]).
//! - `text`: the [`TextSource`] seam ([`Composed`] HTML and buttons) and the fallback
//!   [`BuiltinText`].
//!
//! # Ordering
//! Sends to one chat through one bot leave in the order [`Sender::send`] was called: the
//! slot is reserved in the call, before the returned future first runs. Sends to different
//! chats may overtake one another.
//!
//! Nothing here resends a message whose outcome is unclear: it is
//! [`TransportError::Unknown`], counted against the caps and never repeated (`sendMessage`
//! has no idempotency key). The one resend is a post Telegram refused because the group
//! became a supergroup (`migrate_to_chat_id`, provably not processed): the group's new chat
//! id is saved in the [`ContactBook`] and the post goes there at once.
//!
//! # Chats
//! A direct message goes to the user's id (a private chat's id is the user's). A post goes
//! to the group's chat id as the [`ContactBook`] holds it; a group without one is `Fatal`.

mod calls;
mod client;
mod inbound;
mod limits;
mod outcome;
mod poll;
mod state;
mod text;
mod updates;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::Clock as _;
use crate::contacts::{ContactBook, GroupChat};
use crate::domain::{BotId, Destination, OutboundMessage};

use super::{Delivered, SendFuture, Sender, TransportConfigError, TransportError};
use outcome::Answer;

pub use calls::CallError;
pub use client::{BotToken, DEFAULT_API_BASE_URL, MESSAGE_ID_HEADER};
pub use inbound::{
    DEFAULT_ACK_TIMEOUT, DEFAULT_REPLY_WINDOW_SECS, FanIn, InboundMode, InboundOptions, InboundParts,
    STOP_CONFIRMATION, TakeInError, TelegramInbound, UpdateCounts, source_of_update,
};
pub use limits::{Admission, BOT_FREEZE_CAP, Limiter, Limits};
pub use poll::{DEFAULT_POLL_TIMEOUT_SECS, PollError, start_polling};
pub use state::{Freeze, GroupMembership, MemoryTelegramState, SentMessage, TelegramState};
pub use text::{
    BuiltinText, Button, Composed, OPT_OUT_LINE, TextSource, UNSUBSCRIBE_CALLBACK, UNSUBSCRIBE_LABEL, escape_html,
};
pub use updates::{Person, Update, UpdateAction, UpdateError, parse_update, parse_update_value, read_update};

/// The default timeout: connecting may take this long, the whole exchange twice as long.
pub const DEFAULT_TELEGRAM_TIMEOUT: Duration = Duration::from_secs(3);

/// The default longest wait for a slot: beyond it a send is answered `RateLimited` at once.
/// With [`DEFAULT_TELEGRAM_TIMEOUT`] it keeps a send within the engine's 10 s send timeout.
pub const DEFAULT_MAX_QUEUE_WAIT: Duration = Duration::from_secs(3);

/// The longest stored 429 wait honoured after a restart, seconds: a day, longer than any
/// `retry_after` the Bot API gives, so only a damaged row is cut.
const MAX_STORED_WAIT_SECS: u64 = 86_400;

/// One bot: a name (for reasons and the text) and its token.
#[derive(Clone, Debug)]
pub struct Bot {
    /// The bot's name, as `gavat.toml` gives it.
    pub name: String,
    /// Its token.
    pub token: BotToken,
}

/// How the sender behaves, beyond its bots.
#[derive(Clone, Debug)]
pub struct TelegramOptions {
    /// The Bot API's base URL ([`DEFAULT_API_BASE_URL`]; a local Bot API server, a test).
    pub api_base_url: String,
    /// Connecting may take this long (beyond: `Transient`), the exchange twice as long
    /// (beyond: `Unknown`).
    pub timeout: Duration,
    /// The limits (never above Telegram's).
    pub limits: Limits,
    /// The longest a send waits for its slot before it is answered `RateLimited`.
    pub max_queue_wait: Duration,
}

impl Default for TelegramOptions {
    fn default() -> TelegramOptions {
        TelegramOptions {
            api_base_url: DEFAULT_API_BASE_URL.to_string(),
            timeout: DEFAULT_TELEGRAM_TIMEOUT,
            limits: Limits::TELEGRAM,
            max_queue_wait: DEFAULT_MAX_QUEUE_WAIT,
        }
    }
}

/// A bot as the sender holds it: with its `sendMessage` URL, which contains the token.
struct ReadyBot {
    name: String,
    token: BotToken,
    url: reqwest::Url,
}

/// Sends through the Bot API (see the module doc). `OutboundMessage::bot` indexes the bots
/// in the order given.
#[derive(Clone)]
pub struct TelegramSender {
    bots: Arc<[ReadyBot]>,
    api: client::BotApi,
    limiter: Arc<Limiter>,
    text: Arc<dyn TextSource>,
    /// Where a group's chat id is read, and saved again when Telegram moves the group.
    contacts: Arc<dyn ContactBook>,
    /// The longest wait for a slot (see [`TelegramOptions::max_queue_wait`]).
    max_queue_wait: Duration,
    /// The connect timeout; an exchange may take twice as long.
    timeout: Duration,
    /// Where the Bot API id of each accepted message is recorded (to attribute replies).
    sent_log: Option<Arc<dyn TelegramState>>,
}

impl fmt::Debug for TelegramSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.bots.iter().map(|b| b.name.as_str()).collect();
        f.debug_struct("TelegramSender")
            .field("bots", &names)
            .field("api", &self.api)
            .field("limits", &self.limiter.limits())
            .field("text", &self.text)
            .field("contacts", &self.contacts)
            .finish()
    }
}

impl TelegramSender {
    /// A sender through `bots` (at least one), writing texts with `text` and finding (and
    /// updating) group chat ids in `contacts`. Checks the base URL, the timeout and the
    /// limits; errors never show a token.
    pub fn new(
        bots: Vec<Bot>,
        options: TelegramOptions,
        text: Arc<dyn TextSource>,
        contacts: Arc<dyn ContactBook>,
    ) -> Result<TelegramSender, TransportConfigError> {
        if bots.is_empty() {
            return Err(TransportConfigError::Invalid {
                field: "bots",
                why: "the Telegram transport needs a bot".into(),
            });
        }
        let limits = options.limits.checked()?;
        if options.max_queue_wait.is_zero() {
            return Err(TransportConfigError::Invalid {
                field: "max_queue_wait",
                why: "must be more than zero".into(),
            });
        }
        let api = client::BotApi::new(&options.api_base_url, options.timeout)?;
        let bots = bots
            .into_iter()
            .map(|bot| Ok(ReadyBot { url: api.url(&bot.token)?, name: bot.name, token: bot.token }))
            .collect::<Result<Vec<_>, TransportConfigError>>()?;
        Ok(TelegramSender {
            bots: bots.into(),
            api,
            limiter: Arc::new(Limiter::new(limits, options.max_queue_wait)),
            text,
            contacts,
            max_queue_wait: options.max_queue_wait,
            timeout: options.timeout,
            sent_log: None,
        })
    }

    /// Records the Bot API `message_id` of every accepted message in `state`, so that a
    /// user's reply (`reply_to_message`) is attributed to its send, and every 429's wait, so
    /// that a restart honours the waits still running (RELIABILITY.md row 55): those are
    /// read back here. A failure to record or read is logged; the send stays delivered.
    pub fn with_sent_log(mut self, state: Arc<dyn TelegramState>) -> TelegramSender {
        let now = crate::clock::SystemClock.now().secs();
        match state.freezes(now) {
            Ok(freezes) => {
                let instant = tokio::time::Instant::now();
                for freeze in freezes {
                    let Some(bot) = self.bots.iter().position(|b| b.name == freeze.bot) else { continue };
                    // A damaged row's far-future wait is cut to a day (no Bot API wait is longer),
                    // so it can neither overflow the instant nor park a chat for good.
                    let wait =
                        u64::try_from(freeze.until_unix.saturating_sub(now)).unwrap_or(0).min(MAX_STORED_WAIT_SECS);
                    let until = instant + Duration::from_secs(wait);
                    let bot = BotId(bot as u32);
                    match freeze.to {
                        Some(to) => self.limiter.park(bot, to, until),
                        None => self.limiter.freeze(bot, instant, until - instant),
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "Could not read the Telegram waits of the last run; none honoured."),
        }
        self.sent_log = Some(state);
        self
    }
}

impl TelegramSender {
    /// The longest a send can take before the sender itself answers: a wait for its slot,
    /// the exchange (twice the timeout), and after a group's migration a second wait and
    /// exchange. The engine's send timeout must be longer, so that the sender reports its
    /// own outcome (an engine timeout would turn a send never written into `Unknown`).
    pub fn longest_send(&self) -> Duration {
        2 * (self.max_queue_wait + 2 * self.timeout)
    }

    /// The chat a message goes to: a user's own id, or the group's chat id as the contact
    /// book holds it now. A group with no chat yet is `Fatal` (never a guessed id); a book
    /// that cannot answer is `Transient` (nothing was sent).
    fn chat_of(&self, to: Destination) -> Result<(i64, Option<GroupChat>), TransportError> {
        match to {
            Destination::User(user) => i64::try_from(user.0)
                .map(|id| (id, None))
                .map_err(|_| TransportError::Fatal { reason: format!("user {} is no Telegram chat id", user.0) }),
            Destination::Group(group) => match self.contacts.group_chat(group) {
                Ok(Some(chat)) => Ok((chat.chat_id, Some(chat))),
                Ok(None) => Err(TransportError::Fatal {
                    reason: format!(
                        "group {} has no Telegram chat id yet: a bot must be added to it (or see it) first",
                        group.0
                    ),
                }),
                Err(e) => Err(TransportError::Transient { reason: format!("group {}: {e}", group.0) }),
            },
        }
    }
}

impl TelegramSender {
    /// The bot a message goes through. A bot can write only to users who started it, so a
    /// direct message goes through the bot the user's contact names (the one they sent
    /// `/start` to); without a contact, through the engine's choice. A contact that cannot
    /// be read is a transient failure: nothing was sent.
    fn bot_for(&self, message: &OutboundMessage) -> Result<BotId, TransportError> {
        let Destination::User(user) = message.to else { return Ok(message.bot) };
        match self.contacts.contact(user) {
            Ok(Some(contact)) => Ok(contact.bot),
            Ok(None) => Ok(message.bot),
            Err(e) => Err(TransportError::Transient { reason: format!("user {user}'s contact: {e}") }),
        }
    }
}

impl Sender for TelegramSender {
    fn send(&self, message: &OutboundMessage) -> SendFuture {
        let index = match self.bot_for(message) {
            Ok(index) => index,
            Err(e) => return Box::pin(std::future::ready(Err(e))),
        };
        let Some(bot) = usize::try_from(index.0).ok().and_then(|i| self.bots.get(i)) else {
            let reason = format!("bot {} is not configured ({} bots)", index.0, self.bots.len());
            return Box::pin(std::future::ready(Err(TransportError::Fatal { reason })));
        };
        let (chat_id, group) = match self.chat_of(message.to) {
            Ok(chat) => chat,
            Err(e) => return Box::pin(std::future::ready(Err(e))),
        };
        let slot = match self.limiter.reserve(index, message.to, tokio::time::Instant::now()) {
            Admission::At(slot) => slot,
            Admission::Later(wait) => {
                return Box::pin(std::future::ready(Err(TransportError::RateLimited {
                    retry_after_secs: whole_secs(wait),
                })));
            }
        };
        let composed = self.text.compose(message, &bot.name);
        let this = self.clone();
        let to = message.to;
        let ours = (message.id, message.at);
        Box::pin(async move {
            let first = this.exchange(index, slot, (to, chat_id), &composed, ours).await;
            let Answer::MovedTo { chat_id: moved_to } = first else {
                return this.settled(first);
            };
            // Telegram refused the post (not processed): the group is a supergroup now. Keep
            // its new id, then post there at once, through the limiter again.
            let Some(chat) = group else {
                return Err(TransportError::Fatal {
                    reason: format!("chat {chat_id}: a private chat cannot move to chat {moved_to}"),
                });
            };
            let moved = GroupChat { chat_id: moved_to, ..chat };
            if let Err(e) = this.contacts.save_group_chat(&moved) {
                tracing::warn!(group = moved.group.0, chat = moved_to, error = %e, "Could not save a group's new chat id.");
            } else {
                tracing::info!(group = moved.group.0, from = chat_id, to = moved_to, "Group chat moved; id updated.");
            }
            let slot = match this.limiter.reserve(index, to, tokio::time::Instant::now()) {
                Admission::At(slot) => slot,
                Admission::Later(wait) => {
                    return Err(TransportError::RateLimited { retry_after_secs: whole_secs(wait) });
                }
            };
            match this.exchange(index, slot, (to, moved_to), &composed, ours).await {
                Answer::MovedTo { chat_id: again } => Err(TransportError::Fatal {
                    reason: format!("group {}: chat {moved_to} moved again, to {again}", moved.group.0),
                }),
                answer => this.settled(answer),
            }
        })
    }
}

impl TelegramSender {
    /// Waits for `slot`, then sends `composed` to the chat `(to, chat_id)` through bot
    /// `index` — unless a 429 froze the bot or parked the chat meanwhile. A 429 parks the
    /// chat and freezes the bot (see `limits`), and the wait is kept in the sent log's
    /// state. `ours` is the message's own id and time, recorded with the Bot API's
    /// `message_id` when it is accepted.
    async fn exchange(
        &self,
        index: BotId,
        slot: tokio::time::Instant,
        (to, chat_id): (Destination, i64),
        composed: &Composed,
        ours: (u64, crate::domain::Timestamp),
    ) -> Answer {
        tokio::time::sleep_until(slot).await;
        // A 429 that came while this send waited froze the bot or parked the chat: do not
        // send into it.
        if let Some(left) = self.limiter.held_for(index, to, tokio::time::Instant::now()) {
            return Answer::Final(Err(TransportError::RateLimited { retry_after_secs: whole_secs(left) }));
        }
        let bot = &self.bots[index.0 as usize];
        let body = client::SendMessage {
            chat_id,
            text: &composed.html,
            parse_mode: "HTML",
            reply_markup: client::InlineKeyboard::of(&composed.buttons),
        };
        let (answer, message_id) = self.api.send_message(bot.url.clone(), &body, &bot.name, &bot.token, ours.0).await;
        if let (Answer::Final(Ok(Delivered)), Some(log), Some(message_id)) = (&answer, &self.sent_log, message_id) {
            let (message, at) = ours;
            let sent = SentMessage { bot: bot.name.clone(), chat_id, message_id, message, at };
            if let Err(e) = log.record_sent(&sent) {
                tracing::warn!(bot = %bot.name, error = %e, "Could not record a sent message's id; a reply to it counts by the reply window.");
            }
        }
        if let Answer::Final(Err(TransportError::RateLimited { retry_after_secs })) = &answer {
            let wait = Duration::from_secs(u64::from(*retry_after_secs));
            self.limiter.rate_limited(index, to, tokio::time::Instant::now(), wait);
            self.keep_wait(&bot.name, to, *retry_after_secs);
        }
        answer
    }

    /// Keeps a 429's wait in the state (wall seconds, rounded up), so that a restart
    /// honours it: the chat's for all of it, the bot's up to the cap.
    fn keep_wait(&self, bot: &str, to: Destination, retry_after_secs: u32) {
        let Some(state) = &self.sent_log else { return };
        let now = crate::clock::SystemClock.now().secs();
        let chat_until = now + i64::from(retry_after_secs) + 1;
        let bot_until = now + (i64::from(retry_after_secs).min(BOT_FREEZE_CAP.as_secs() as i64)) + 1;
        for freeze in [
            Freeze { bot: bot.to_string(), to: Some(to), until_unix: chat_until },
            Freeze { bot: bot.to_string(), to: None, until_unix: bot_until },
        ] {
            if let Err(e) = state.save_freeze(&freeze) {
                tracing::warn!(bot = %bot, error = %e, "Could not keep a 429's wait; a restart would not honour it.");
            }
        }
    }

    /// The outcome of an answer that is not a migration.
    fn settled(&self, answer: Answer) -> Result<Delivered, TransportError> {
        match answer {
            Answer::Final(result) => result,
            Answer::MovedTo { chat_id } => {
                Err(TransportError::Fatal { reason: format!("the chat moved to {chat_id}") })
            }
        }
    }
}

/// `wait` in whole seconds, rounded up, at least 1.
fn whole_secs(wait: Duration) -> u32 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    u32::try_from(secs.max(1)).unwrap_or(u32::MAX)
}

impl fmt::Debug for ReadyBot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bot").field("name", &self.name).field("token", &self.token).finish()
    }
}
