//! The store seam: user profiles to start from, the state of each user's counters, and the
//! log of every send and reaction. [`MemoryStore`] keeps it in memory; [`JsonlLog`] wraps
//! any store and also writes the log as JSON lines (the `--events` file). SQLite and Redis
//! stores will implement the same trait.
//!
//! The store is split by direction: [`Store`] is what the engine writes through;
//! [`EventLog`] reads the log back (by time range, by user, a page at a time) and
//! [`UserRepository`] reads back every user with their cap state, which is what an engine
//! started on a store resumes from. [`SqliteStore`] and [`RedisStore`] implement all three;
//! [`SqliteStore`] also takes profiles from outside the engine (an import) with
//! [`SqliteStore::upsert_profiles`].
//!
//! The management commands read a store through [`CrmReader`] (and roll a strategy back
//! through [`StrategyRollback`]), which both [`SqliteStore`] and [`RedisStore`] implement.

mod crm;
mod groups;
mod jsonl;
mod memory;
mod read_back;
mod redis;
mod redis_contacts;
mod redis_crm;
mod redis_stream;
mod sqlite;
mod sqlite_contacts;
mod strategies;
mod telegram;
mod upsert;
mod url;

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::Serialize;

use crate::domain::{
    BotId, Caps, ContentKind, DeliveryStrategy, GroupId, HourMask, Segment, SendOutcome, Timestamp, UserId,
    UserProfile, UtcOffset, Zone,
};
use crate::learner::StrategyChange;
use crate::policy::{CapState, SuppressReason};
use crate::segmentation::Explained;

pub use self::redis::RedisStore;
pub use crm::{ActivityBucket, CrmReader, MAX_BUCKET_SECS, SegmentMember, StrategyRollback};
pub use groups::{GroupRecord, GroupStore, MembershipChanged};
pub use jsonl::JsonlLog;
pub use memory::MemoryStore;
pub use redis_stream::{GroupRead, PARK_AFTER_DELIVERIES};
pub(crate) use sqlite::open_shared_writer;
pub use sqlite::{SCHEMA_VERSION, SegmentCounts, SegmentUpdate, SqliteStore, StoredEvent, StoredUser, UserLogCounts};
pub use strategies::{RollbackError, StoredChange, StoredStrategy};
pub use upsert::{ProfileUpdate, UpsertCounts, UpsertError, UpsertMode};
pub use url::{StoreUrl, StoreUrlError, redact_url};

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Writing or reading a file failed: data may be lost, the run must fail.
    #[error("{path}: {cause}")]
    Io {
        /// The file.
        path: String,
        /// Why (part of the message, so not also reported as a source).
        cause: std::io::Error,
    },
    /// The file is not a gavat store (empty, not SQLite, or SQLite without gavat's
    /// tables): bad input, fatal; nothing was written to it.
    #[error("{path}: not a gavat store ({why})")]
    NotAStore {
        /// The file.
        path: String,
        /// What it is instead.
        why: String,
    },
    /// The store's schema is older than this build's and a read-only open cannot migrate
    /// it: bad input, fatal; any writing command (`gavat segment`) migrates it.
    #[error(
        "{path}: schema version {found} needs migrating to {wanted}, which a read-only command does not do; \
         open it once with a writing command (e.g. `gavat segment --store {path}`)"
    )]
    NeedsMigration {
        /// The file.
        path: String,
        /// Its schema version.
        found: usize,
        /// This build's.
        wanted: usize,
    },
    /// The store cannot be resumed from: it lacks what a continuation needs (a store saved
    /// by an older gavat, or by a command that is not a simulation). Bad input, fatal.
    #[error("{path}: cannot resume from it: {why}")]
    NotResumable {
        /// The file.
        path: String,
        /// What is missing.
        why: String,
    },
    /// A row read back holds a value this build cannot read (a kind, an outcome, a segment
    /// it does not know): the store is damaged or newer; fatal, never replaced by a default.
    #[error("{path}: {table}.{column}: unreadable value {value:?}")]
    Corrupt {
        /// The file.
        path: String,
        /// The table.
        table: &'static str,
        /// The column.
        column: &'static str,
        /// The value found.
        value: String,
    },
    /// A read was asked with an argument it cannot take (an activity bucket of no length):
    /// bad input from the caller; nothing was read.
    #[error("{what}")]
    BadArgument {
        /// What is wrong, naming the argument.
        what: String,
    },
    /// The contact book (names, languages, group chat ids) could not be read.
    #[error("contact book: {why}")]
    Contacts {
        /// Why.
        why: String,
    },
    /// The Redis store could not be reached, refused the call, or holds data this build
    /// cannot read: the write or read did not happen. Retryable once Redis answers; the
    /// reason says what is wrong (and never holds a password).
    #[error("Redis store at {address}: {reason}")]
    Redis {
        /// `host:port` of the node given.
        address: String,
        /// What went wrong.
        reason: String,
    },
}

/// What a store call returns; in-memory stores return futures that are ready at once.
pub type StoreFuture<T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send>>;

/// What kind of log entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogKind {
    /// A message went out (or may have: see `outcome`).
    Send,
    /// The user answered.
    Response,
    /// The user bought.
    Conversion,
    /// The user opted out (or blocked the bot).
    OptOut,
}

/// The caps in force at a send, as written to the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct LoggedCaps {
    /// Most messages in the user's local day.
    pub daily_limit: u32,
    /// Least seconds between messages.
    pub cooldown_secs: i64,
    /// Allowed local hours, e.g. `[9, 10, …, 20]`.
    #[serde(serialize_with = "serialize_hours")]
    pub allowed_hours: HourMask,
    /// Least local days from one send day to the next.
    pub period_days: i64,
}

impl From<Caps> for LoggedCaps {
    fn from(c: Caps) -> LoggedCaps {
        LoggedCaps {
            daily_limit: c.daily_limit,
            cooldown_secs: c.cooldown_secs,
            allowed_hours: c.allowed_hours,
            period_days: c.period_days,
        }
    }
}

fn serialize_time<S: serde::Serializer>(at: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut map = s.serialize_map(Some(2))?;
    map.serialize_entry("at", &at.to_rfc3339())?;
    map.serialize_entry("at_unix", &at.secs())?;
    map.end()
}

fn serialize_zone_name<S: serde::Serializer>(zone: &Zone, s: S) -> Result<S::Ok, S::Error> {
    zone.iana_name().serialize(s)
}

fn serialize_hours<S: serde::Serializer>(mask: &HourMask, s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(mask.hours())
}

/// One line of the send/response log (schema: `docs/events.md`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LogEntry {
    /// What happened.
    pub kind: LogKind,
    /// When (UTC): written as `"at": "2026-11-24T06:00:00Z", "at_unix": 1795500000`.
    #[serde(flatten, serialize_with = "serialize_time")]
    pub at: Timestamp,
    /// To or from whom.
    pub user: UserId,
    /// The user's offset from UTC in force at `at`, minutes.
    pub utc_offset: UtcOffset,
    /// The user's time zone: written as `"time_zone": "Europe/Berlin"`, or `null` for a
    /// fixed offset (then `utc_offset` is the whole story).
    #[serde(rename = "time_zone", serialize_with = "serialize_zone_name")]
    pub zone: Zone,
    /// The group, for a group post or a reaction to one.
    pub group: Option<GroupId>,
    /// The segment whose strategy governed the send (for reactions: the send they answer).
    pub segment: Option<Segment>,
    /// The caps in force at the send (sends only).
    pub caps: Option<LoggedCaps>,
    /// The bot (sends only).
    pub bot: Option<BotId>,
    /// The content kind (sends only).
    pub content: Option<ContentKind>,
    /// The strategy set in force.
    pub strategy: Arc<str>,
    /// The experiment arm, if any.
    pub arm: Option<Arc<str>>,
    /// For sends: delivered, or unknown when the transport could not tell (counted against
    /// the caps all the same).
    pub outcome: Option<SendOutcome>,
}

/// What the store keeps of one user between runs.
#[derive(Clone, Debug, PartialEq)]
pub struct UserRecord {
    /// The profile as of now.
    pub profile: UserProfile,
    /// The cap counters.
    pub caps: CapState,
    /// Segments held, with confidence and reasons, highest confidence first.
    pub segments: Vec<Explained>,
    /// The segment whose strategy governs.
    pub governing: Option<Segment>,
    /// The caps in force (the strictest over the segments held).
    pub caps_in_force: Caps,
    /// When the next message is planned, if any.
    pub next_send: Option<Timestamp>,
}

/// What a whole run leaves behind besides users and the log.
#[derive(Clone, Debug, PartialEq)]
pub struct RunRecord {
    /// The engine's time at the end (the store's "now").
    pub ended_at: Timestamp,
    /// The strategy set's name.
    pub strategy: String,
    /// The seed, for simulations.
    pub seed: Option<u64>,
    /// Sends held back, by governing segment and reason.
    pub suppressed: Vec<(Segment, SuppressReason, u64)>,
    /// The strategies in force at the end (the learner's, or the configured ones).
    pub strategies: Vec<DeliveryStrategy>,
    /// The learner's audit trail of the run, in order.
    pub strategy_changes: Vec<StrategyChange>,
    /// For simulations: what regenerates the same population, so that the run can be
    /// continued (`gavat simulate --resume`).
    pub simulation: Option<SimulationMeta>,
}

/// What a continuation needs to regenerate a simulation's population: with the seed, the
/// scenario and the number of users give the same synthetic users, groups and behaviour
/// parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct SimulationMeta {
    /// Synthetic users (ids `0..users`).
    pub users: u64,
    /// When the population was drawn (the first run's start): profiles' histories end there.
    pub population_start: Timestamp,
    /// The scenario's name as the report shows it (`default` or the file given).
    pub scenario_name: String,
    /// The scenario itself, as TOML: a continuation needs no file, and a `--scenario` given
    /// again is compared with it.
    pub scenario_toml: String,
}

/// A saved simulation that can be continued: where it ended and what regenerates it.
#[derive(Clone, Debug, PartialEq)]
pub struct SavedSimulation {
    /// The engine's time at the end: the continuation's start.
    pub ended_at: Timestamp,
    /// The seed of the first run.
    pub seed: u64,
    /// The population.
    pub meta: SimulationMeta,
}

impl<T: Store + ?Sized> Store for Arc<T> {
    fn save_user(&self, record: &UserRecord) -> StoreFuture<()> {
        (**self).save_user(record)
    }
    fn append(&self, entry: &LogEntry) -> StoreFuture<()> {
        (**self).append(entry)
    }
    fn save_run(&self, run: &RunRecord) -> StoreFuture<()> {
        (**self).save_run(run)
    }
    fn flush(&self) -> StoreFuture<()> {
        (**self).flush()
    }
    fn wants_log(&self) -> bool {
        (**self).wants_log()
    }
}

/// Persistence for the engine.
pub trait Store: Send + Sync + Debug {
    /// Saves a user's profile and counters (after each change).
    fn save_user(&self, record: &UserRecord) -> StoreFuture<()>;
    /// Appends one entry to the log.
    fn append(&self, entry: &LogEntry) -> StoreFuture<()>;
    /// Records what the run as a whole left behind (end of a run).
    fn save_run(&self, run: &RunRecord) -> StoreFuture<()>;
    /// Makes everything written so far durable (end of a run).
    fn flush(&self) -> StoreFuture<()>;
    /// Whether the store keeps the log. When it does not, the engine does not collect,
    /// order and append log entries at all.
    fn wants_log(&self) -> bool {
        true
    }
}

/// Where a page of the log read back ended: pass it to get the next page. Opaque to callers;
/// for SQLite it is the last row's `(at, id)`, so pages stay in time order and never skip
/// nor repeat an entry that shares its second with another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventCursor {
    /// The last entry's time.
    pub at: Timestamp,
    /// The last entry's position in the log (ties at one second go by it).
    pub seq: i64,
}

/// Which part of the log to read back: `from <= at < to`, everyone's or one user's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventQuery {
    /// The first second included.
    pub from: Timestamp,
    /// The first second excluded.
    pub to: Timestamp,
    /// Only this user's entries, if set.
    pub user: Option<UserId>,
}

/// One page of the log read back.
#[derive(Clone, Debug, PartialEq)]
pub struct EventPage {
    /// The entries, in time order (ties in the order they were appended).
    pub entries: Vec<LogEntry>,
    /// Where to continue; `None` when this page was the last.
    pub next: Option<EventCursor>,
}

/// Entries read back per page by [`Events`].
pub const EVENT_PAGE: usize = 4_096;

/// Users read back per page by [`UserRepository::load_users`].
pub const USER_PAGE: usize = 4_096;

/// The log, read back. A store implements [`EventLog::page`]; callers use
/// [`EventLog::events_between`] and [`EventLog::events_of`], iterators that fetch a page at
/// a time, so a log of ten million entries is never in memory at once.
pub trait EventLog {
    /// At most `limit` entries matching `query` after `after` (from the start with `None`),
    /// in time order.
    fn page(&self, query: &EventQuery, after: Option<EventCursor>, limit: usize) -> Result<EventPage, StoreError>;

    /// Every entry with `from <= at < to`, in time order.
    fn events_between(&self, from: Timestamp, to: Timestamp) -> Events<'_, Self>
    where
        Self: Sized,
    {
        Events::new(self, EventQuery { from, to, user: None })
    }

    /// One user's entries with `from <= at < to`, in time order.
    fn events_of(&self, user: UserId, from: Timestamp, to: Timestamp) -> Events<'_, Self>
    where
        Self: Sized,
    {
        Events::new(self, EventQuery { from, to, user: Some(user) })
    }
}

/// The entries of an [`EventQuery`], fetched [`EVENT_PAGE`] at a time. After an error it
/// yields nothing more.
#[derive(Debug)]
pub struct Events<'a, L: EventLog> {
    log: &'a L,
    query: EventQuery,
    /// The current page, reversed so that the next entry is popped from the end.
    buffered: Vec<LogEntry>,
    /// Where the next page starts; `None` once the last page has been fetched.
    next: Option<Option<EventCursor>>,
}

impl<'a, L: EventLog> Events<'a, L> {
    fn new(log: &'a L, query: EventQuery) -> Events<'a, L> {
        Events { log, query, buffered: Vec::new(), next: Some(None) }
    }
}

impl<L: EventLog> Iterator for Events<'_, L> {
    type Item = Result<LogEntry, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(entry) = self.buffered.pop() {
            return Some(Ok(entry));
        }
        let after = self.next.take()?;
        match self.log.page(&self.query, after, EVENT_PAGE) {
            Ok(page) => {
                self.next = page.next.map(Some);
                self.buffered = page.entries;
                self.buffered.reverse();
                self.buffered.pop().map(Ok)
            }
            Err(e) => Some(Err(e)),
        }
    }
}

/// What an engine resumes one user from: the profile and the cap counters.
#[derive(Clone, Debug, PartialEq)]
pub struct UserState {
    /// The profile as last saved.
    pub profile: UserProfile,
    /// The cap counters as last saved (last send, sends that local day, opted out).
    pub caps: CapState,
}

/// The users a store holds, read back with their cap state.
pub trait UserRepository {
    /// How many users the store holds.
    fn count_users(&self) -> Result<u64, StoreError>;

    /// At most `limit` users with an id greater than `after` (from the first with `None`),
    /// in id order.
    fn users_after(&self, after: Option<UserId>, limit: usize) -> Result<Vec<UserState>, StoreError>;

    /// Every user, in id order, read [`USER_PAGE`] at a time.
    fn load_users(&self) -> Result<Vec<UserState>, StoreError> {
        let mut out = Vec::with_capacity(usize::try_from(self.count_users()?).unwrap_or(0));
        let mut after = None;
        loop {
            let page = self.users_after(after, USER_PAGE)?;
            let Some(last) = page.last() else { return Ok(out) };
            after = Some(last.profile.id);
            let full = page.len() == USER_PAGE;
            out.extend(page);
            if !full {
                return Ok(out);
            }
        }
    }
}
