//! What a live engine is built on, opened from a [`RunConfig`]: the store, its cap ledger,
//! the transport's sender, and the users this instance serves with the cap state to start
//! from. Opening settles what a crashed run left unsettled (see
//! [`CapLedger::recover`](crate::ledger::CapLedger::recover)) before anything is planned.

use std::sync::Arc;
use std::time::Duration;

use crate::contacts::ContactBook;
use crate::ledger::{CapLedger, LedgerError, Recovery, RedisLedger, SqliteLedger};
use crate::policy::CapState;
use crate::store::{RedisStore, SqliteStore, Store, StoreError, StoreUrl, UserRepository, UserState};
use crate::transport::telegram::{Bot, BotToken, TelegramOptions, TelegramSender, TextSource};
use crate::transport::{DryRunSender, OutboxError, Sender, WebhookSender};

use super::config::{RunConfig, TransportConfig};
use super::instance::Instance;

/// Why a live engine could not start or finish.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// The store could not be opened, read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The cap ledger could not be opened or answer.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The dry-run outbox could not be opened.
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    /// The transport could not be set up (a missing secret, a bad URL).
    #[error("transport: {0}")]
    Transport(String),
    /// Redis refused or could not be reached at the start.
    #[error("{0}")]
    Redis(String),
    /// The HTTP API could not start.
    #[error("HTTP API: {0}")]
    Api(String),
    /// The engine failed.
    #[error(transparent)]
    Engine(#[from] crate::engine::EngineError),
    /// The runtime or a signal handler could not be set up.
    #[error("cannot start: {0}")]
    Runtime(std::io::Error),
}

/// The opened parts; see the module documentation.
#[derive(Debug)]
pub struct LiveParts {
    /// Where the engine writes.
    pub store: Arc<dyn Store>,
    /// The same store for reading (the API's user views).
    pub users_at: UsersAt,
    /// The cap gate, shared by every shard and every instance on the store.
    pub ledger: Arc<dyn CapLedger>,
    /// Where messages go.
    pub sender: Arc<dyn Sender>,
    /// Who users and groups are on Telegram (names, languages, group chat ids), in the
    /// store.
    pub contacts: Arc<dyn ContactBook>,
    /// How long the engine lets one send take before its outcome is unknown.
    pub send_timeout: Duration,
    /// The users this instance serves, with the cap state to start from.
    pub users: Vec<UserState>,
    /// What the start settled of the last run.
    pub recovered: Recovery,
}

/// The store again, as what reads users back.
#[derive(Debug, Clone)]
pub enum UsersAt {
    /// An SQLite file.
    Sqlite(Arc<SqliteStore>),
    /// A Redis server or cluster.
    Redis(Arc<RedisStore>),
}

impl UsersAt {
    /// Every user the store holds, with the cap counters it kept.
    pub fn load_users(&self) -> Result<Vec<UserState>, StoreError> {
        match self {
            UsersAt::Sqlite(s) => s.load_users(),
            UsersAt::Redis(r) => r.load_users(),
        }
    }
}

/// A store to write, the same for reading, its ledger, and its contact book.
type OpenedStore = (Arc<dyn Store>, UsersAt, Arc<dyn CapLedger>, Arc<dyn ContactBook>);

/// Opens the store, the ledger and the transport of `config`, settles the last run's
/// unsettled messages and loads `instance`'s users.
pub fn open_parts(config: &RunConfig, instance: Instance, quiet: bool) -> Result<LiveParts, LiveError> {
    let opened: OpenedStore = match &config.store {
        StoreUrl::Sqlite(path) => {
            let store = if path.exists() { SqliteStore::open_existing(path)? } else { SqliteStore::open(path)? };
            let store = Arc::new(store);
            let ledger: Arc<dyn CapLedger> = Arc::new(SqliteLedger::open(path)?);
            (store.clone(), UsersAt::Sqlite(store.clone()), ledger, store)
        }
        StoreUrl::Redis(url) => {
            let redis = |e: crate::redis_link::RedisConnectError| LiveError::Redis(e.to_string());
            // The ledger first: it refuses a server that may evict keys, and writes the epoch.
            let ledger: Arc<dyn CapLedger> = Arc::new(RedisLedger::connect(url, &config.redis_prefix).map_err(redis)?);
            let store = Arc::new(RedisStore::connect(url, &config.redis_prefix).map_err(redis)?);
            (store.clone(), UsersAt::Redis(store.clone()), ledger, store)
        }
    };
    let (store, users_at, ledger, contacts) = opened;
    let recovered = at_once(ledger.recover())?;
    // The engine's own bound on a send is past the transport's longest (the webhook's whole
    // exchange: connect, then twice the timeout; Telegram's, see `longest_send`), so that
    // the transport reports its own outcome first.
    let (sender, send_timeout): (Arc<dyn Sender>, Duration) = match &config.transport {
        TransportConfig::DryRun { outbox } => {
            (Arc::new(DryRunSender::new(Some(outbox), !quiet)?), crate::engine::DEFAULT_SEND_TIMEOUT)
        }
        TransportConfig::Webhook { url, secret_env, timeout_secs } => (
            Arc::new(
                WebhookSender::new(url, secret_env, Duration::from_secs(*timeout_secs))
                    .map_err(|e| LiveError::Transport(e.to_string()))?,
            ),
            Duration::from_secs(2 * timeout_secs + 1),
        ),
        TransportConfig::Telegram { .. } => {
            // Replies to our messages are attributed by the Bot API id of each send.
            let sender =
                telegram_sender(config, contacts.clone())?.with_sent_log(super::telegram::telegram_state(&users_at));
            let timeout = sender.longest_send() + Duration::from_secs(1);
            (Arc::new(sender), timeout)
        }
    };
    let mut users = users_at.load_users()?;
    users.retain(|u| instance.owns(u.profile.id));
    for user in &mut users {
        let known = at_once(ledger.load(user.profile.id))?;
        user.caps = merge_caps(user.caps, known.effective(user.profile.zone));
        if user.caps.opted_out && !known.counted.opted_out {
            at_once(ledger.opt_out(user.profile.id))?;
        }
    }
    Ok(LiveParts { store, users_at, ledger, sender, contacts, send_timeout, users, recovered })
}

/// The text of Telegram messages: the templates of `[messages]` in each user's language
/// (docs/messages.md), personalised by the LLM where `[messages.llm]` says so.
fn telegram_text(config: &RunConfig, contacts: Arc<dyn ContactBook>) -> Result<Arc<dyn TextSource>, LiveError> {
    let text =
        crate::compose::message_text(config, contacts).map_err(|e| LiveError::Transport(format!("messages: {e}")))?;
    Ok(text)
}

/// The Telegram transport's options as `config` sets them (`None` for another transport).
fn telegram_options(config: &RunConfig) -> Option<TelegramOptions> {
    match &config.transport {
        TransportConfig::Telegram { api_base_url, timeout_secs, limits } => Some(TelegramOptions {
            api_base_url: api_base_url.clone(),
            timeout: Duration::from_secs(*timeout_secs),
            limits: *limits,
            ..TelegramOptions::default()
        }),
        _ => None,
    }
}

/// The Telegram sender of `config`: every bot's token from the variable it names (an error
/// names the bot and the variable, never a value), group chat ids from `contacts`.
fn telegram_sender(config: &RunConfig, contacts: Arc<dyn ContactBook>) -> Result<TelegramSender, LiveError> {
    let options = telegram_options(config)
        .ok_or_else(|| LiveError::Transport("the transport in force is not telegram".into()))?;
    let bots = config
        .bots
        .iter()
        .map(|bot| {
            let token = BotToken::from_env(&bot.token_env)
                .map_err(|e| LiveError::Transport(format!("bot {}: {e}", bot.name)))?;
            Ok(Bot { name: bot.name.clone(), token })
        })
        .collect::<Result<Vec<Bot>, LiveError>>()?;
    let text = telegram_text(config, contacts.clone())?;
    TelegramSender::new(bots, options, text, contacts).map_err(|e| LiveError::Transport(e.to_string()))
}

/// The stricter of two records of one user's sends: the one with the later last send (on
/// the same local day, the larger count), opted out if either says so. The store's users
/// table and the ledger can differ after a crash (the table is written in batches, the
/// ledger at every reservation) or for a store made by `gavat simulate`, whose history the
/// ledger never saw: starting from the stricter one keeps every cap.
pub fn merge_caps(a: CapState, b: CapState) -> CapState {
    let later = match (a.last_sent, b.last_sent) {
        (Some(x), Some(y)) if a.last_send_day == b.last_send_day => {
            let mut m = if x >= y { a } else { b };
            m.sent_on_last_day = a.sent_on_last_day.max(b.sent_on_last_day);
            m
        }
        (Some(_), Some(_)) => {
            if a.last_send_day > b.last_send_day {
                a
            } else {
                b
            }
        }
        (Some(_), None) => a,
        _ => b,
    };
    CapState { opted_out: a.opted_out || b.opted_out, ..later }
}

/// A ledger answer that must be ready at once (the store-backed ledgers answer
/// synchronously).
fn at_once<T>(future: crate::ledger::LedgerFuture<T>) -> Result<T, LedgerError> {
    futures::executor::block_on(future)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Timestamp;

    fn state(last: Option<i64>, day: i64, n: u32, out: bool) -> CapState {
        CapState { opted_out: out, last_sent: last.map(Timestamp), last_send_day: day, sent_on_last_day: n }
    }

    /// The merge keeps the later send, the larger count of one day, and any opt-out.
    #[test]
    fn merge_keeps_the_stricter_record() {
        let store = state(Some(100), 1, 1, false);
        let ledger = state(Some(200), 1, 2, false);
        assert_eq!(merge_caps(store, ledger), state(Some(200), 1, 2, false));
        assert_eq!(merge_caps(ledger, store), state(Some(200), 1, 2, false));
        let older_day = state(Some(50), 0, 3, true);
        assert_eq!(merge_caps(older_day, ledger), state(Some(200), 1, 2, true));
        assert_eq!(merge_caps(CapState::default(), store), store);
        assert_eq!(merge_caps(store, CapState::default()), store);
    }
}
