//! [`SqliteLedger`]: the cap ledger of a live engine, in the CRM store's SQLite file. It
//! owns the tables `ledger_users` (each user's counted sends and opt-out, as a
//! [`CapState`]) and `ledger_messages` (every message's user, time, offset, decision and
//! state), created by the store's migrations, and decides exactly as
//! [`MemoryLedger`](super::MemoryLedger): [`policy::decide`](crate::policy::decide) over
//! [`LedgerUser::effective`].
//!
//! Every call runs its SQL synchronously inside the call; the returned future is ready (the
//! engine polls a ledger future once and treats a pending one as unavailable). A `reserve`
//! runs inside a `BEGIN IMMEDIATE` transaction — read the message, the user's counted state
//! and pending reservations, decide, write the decision (a denial too, so a retry gets the
//! first answer), commit — so several connections on the file (two `gavat run` processes)
//! never both grant past a cap: the write lock serialises them. Writes that shard threads
//! make at the same moment through one handle share that transaction (a group commit, see
//! [`SqliteLedger`]): one commit for the lot instead of one each, each write still applied
//! in turn and answered only once committed.
//!
//! A member's share of a group post (an id with the top bit set) is a row of
//! `ledger_messages` like any message, decided by [`LedgerUser::decide_share`]; a confirmed
//! share counts in `ledger_exposure` (the member's [`Exposure`](super::Exposure)), never in
//! `ledger_users`.
//!
//! A message's `state`: `reserved` → `sending` (the outbox step) → `delivered` | `unknown`
//! (counted) or `released`; a denial is `denied` with its `reason`. `sending` refuses a
//! reservation whose user opted out since ([`LedgerError::OptedOut`], the row unchanged). [`CapLedger::recover`]
//! settles what a crash left: `sending` and group shares count as `unknown`, other
//! `reserved` rows are `released`.
//!
//! Any SQLite failure (the file locked past the busy timeout, a disk error, a damaged row)
//! is [`LedgerError::Unavailable`] naming the file: the engine fails closed.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use futures::future::ready;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::domain::{Timestamp, UserId, UtcOffset, Zone};
use crate::policy::{CapState, Decision, SuppressReason, decide};
use crate::store::{StoreError, open_shared_writer};

use super::{
    CapLedger, Counted, DEFAULT_RETENTION_SECS, LedgerError, LedgerFuture, LedgerUser, MessageId, Recovery,
    Reservation, Reserved, ShareReservation, check_kind, is_group_share,
};

/// How long a call waits for another connection's write lock before the ledger answers
/// [`LedgerError::Unavailable`]. Every transaction of the ledger is a few rows, so a real
/// wait is milliseconds; the bound is what a stuck process may cost a shard thread (the
/// call blocks it) before the engine fails closed.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(2);

/// New reservations between two prunes of settled ids past the retention window: a prune
/// is one range delete on `ledger_messages_by_time`, so in steady state it removes about
/// as many rows as were added since the last one.
const PRUNE_EVERY: u32 = 1_024;

/// Pages of WAL between automatic checkpoints (SQLite's default is 1,000). A checkpoint
/// copies the WAL back into the file and fsyncs it; the ledger commits three small
/// transactions per message, so at the default it would checkpoint every ~150 messages.
/// 10,000 pages (about 40 MB of WAL at 4 KiB pages) makes that ten times rarer and lets
/// the hot pages written many times in between be copied once.
const WAL_AUTOCHECKPOINT_PAGES: i64 = 10_000;

/// The connection's page cache in KiB (SQLite's default is 2 MB): the pages of
/// `ledger_users` and of the message indexes a busy engine touches stay in memory.
const CACHE_KIB: i64 = 32 * 1024;

/// The statements of the hot path, prepared once per connection (`prepare_cached`).
mod sql {
    pub(super) const MESSAGE: &str =
        "SELECT user_id, at, utc_offset, state, reason FROM ledger_messages WHERE message = ?1";
    pub(super) const COUNTED: &str =
        "SELECT opted_out, last_sent, last_send_day, sent_on_last_day FROM ledger_users WHERE user_id = ?1";
    /// A user's unsettled reservations in grant order: a range of `ledger_messages_by_user`
    /// (the user's retained messages), filtered by state.
    pub(super) const PENDING: &str = "SELECT message, at FROM ledger_messages
        WHERE user_id = ?1 AND state IN ('reserved', 'sending') ORDER BY seq";
    pub(super) const INSERT: &str = "INSERT INTO ledger_messages (message, user_id, at, utc_offset, state, reason)
        VALUES (?1, ?2, ?3, ?4, ?5, ?6)";
    pub(super) const PRUNE: &str = "DELETE FROM ledger_messages WHERE at < ?1 AND state NOT IN ('reserved', 'sending')";
    pub(super) const SENDING: &str =
        "UPDATE ledger_messages SET state = 'sending' WHERE message = ?1 AND state = 'reserved'";
    pub(super) const SETTLE: &str = "UPDATE ledger_messages SET state = ?2 WHERE message = ?1";
    pub(super) const SAVE_COUNTED: &str = "INSERT OR REPLACE INTO ledger_users VALUES (?1, ?2, ?3, ?4, ?5)";
    pub(super) const OPT_OUT: &str =
        "INSERT INTO ledger_users (user_id, opted_out, last_sent, last_send_day, sent_on_last_day)
        VALUES (?1, 1, NULL, 0, 0) ON CONFLICT (user_id) DO UPDATE SET opted_out = 1";
    pub(super) const RE_CONSENT: &str = "UPDATE ledger_users SET opted_out = 0 WHERE user_id = ?1";
    pub(super) const EXPOSURE: &str = "SELECT day, seen FROM ledger_exposure WHERE user_id = ?1";
    pub(super) const SAVE_EXPOSURE: &str = "INSERT OR REPLACE INTO ledger_exposure VALUES (?1, ?2, ?3)";
    /// Every unsettled reservation in grant order (recovery: a scan, run once at start).
    pub(super) const ALL_PENDING: &str = "SELECT message, user_id, at, utc_offset, state, reason FROM ledger_messages
        WHERE state IN ('reserved', 'sending') ORDER BY seq";
}

/// Where a message stands, as the `state` column spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Granted, not yet handed to the transport: it counts until settled.
    Reserved,
    /// Granted and about to be handed to the transport (the outbox step): it counts, and
    /// after a crash it may have gone out.
    Sending,
    /// Confirmed delivered: counted.
    Delivered,
    /// Confirmed with an unknown outcome (or recovered after a crash): counted.
    Unknown,
    /// Released: it never went out.
    Released,
    /// Denied at reservation (the `reason` column says why): it never held anything.
    Denied,
}

impl State {
    const ALL: [State; 6] =
        [State::Reserved, State::Sending, State::Delivered, State::Unknown, State::Released, State::Denied];

    fn as_str(self) -> &'static str {
        match self {
            State::Reserved => "reserved",
            State::Sending => "sending",
            State::Delivered => "delivered",
            State::Unknown => "unknown",
            State::Released => "released",
            State::Denied => "denied",
        }
    }

    /// Granted and not settled: counts against the caps until confirmed or released.
    fn pending(self) -> bool {
        matches!(self, State::Reserved | State::Sending)
    }
}

/// One row of `ledger_messages`.
#[derive(Clone, Copy, Debug)]
struct MessageRow {
    user: UserId,
    at: Timestamp,
    /// The offset in force at `at` in the user's zone: with it the row's local day is exact
    /// whatever the zone does later (a DST change between reservation and settlement).
    offset: UtcOffset,
    state: State,
    /// Why it was denied (`state` is `Denied`).
    reason: Option<SuppressReason>,
}

impl MessageRow {
    /// The first decision, which a retry of the reservation gets again.
    fn decision(&self) -> Reserved {
        match (self.state, self.reason) {
            (State::Denied, Some(reason)) => Reserved::Denied(reason),
            _ => Reserved::Granted,
        }
    }
}

/// Why a ledger transaction failed before it could answer: a SQLite error, or a value in a
/// row this build cannot read. Both become [`LedgerError::Unavailable`] naming the file.
#[derive(Debug)]
enum Failure {
    Sql(rusqlite::Error),
    Corrupt {
        column: &'static str,
        value: String,
    },
    /// An answer of the ledger itself (`Conflict`, `NotReserved`): passed through.
    Answer(LedgerError),
}

impl From<rusqlite::Error> for Failure {
    fn from(e: rusqlite::Error) -> Failure {
        Failure::Sql(e)
    }
}

impl From<LedgerError> for Failure {
    fn from(e: LedgerError) -> Failure {
        Failure::Answer(e)
    }
}

/// When the handle last pruned, and up to when.
#[derive(Debug)]
struct Prune {
    /// New reservations since the last prune.
    since: u32,
    /// The latest reservation time this handle has seen: the retention window ends there
    /// (the memory ledger's rule; another handle on the file prunes by its own).
    latest: Timestamp,
    /// How long a settled message id is remembered, on reservation time.
    retention_secs: i64,
}

/// The connection and what the handle counts for pruning.
#[derive(Debug)]
struct Inner {
    conn: Connection,
    prune: Prune,
}

/// A write a caller waits for; the writes queued meanwhile are committed together.
#[derive(Clone, Copy, Debug)]
enum Write {
    Reserve(Reservation),
    ReserveShare(ShareReservation),
    /// Confirm (`Some`) or release (`None`).
    Settle(MessageId, Option<Counted>),
    Sending(MessageId),
    OptOut(UserId),
    ReConsent(UserId),
}

/// What a write answered.
#[derive(Clone, Copy, Debug)]
enum Written {
    Reserved(Reserved),
    Done,
}

/// The group commit's queue: writes waiting for the next transaction, and the answers of
/// the last one, by ticket.
#[derive(Debug, Default)]
struct Queue {
    next_ticket: u64,
    waiting: Vec<(u64, Write)>,
    answers: HashMap<u64, Result<Written, LedgerError>>,
    /// A caller is running a batch now; the others wait for its answers.
    committing: bool,
}

/// The cap ledger in the CRM store's SQLite file (see the module documentation).
///
/// One handle holds one connection: the engine shares one handle between its shard threads,
/// and another process opens its own. Writes from several threads are committed together
/// (a group commit): a caller queues its write; if no batch is being committed it commits
/// every queued write in one `BEGIN IMMEDIATE` transaction, in queue order, and hands each
/// caller its answer; otherwise it waits for that batch's answers (and commits the next
/// batch if its own write missed this one). Every call still returns only after its write
/// is committed, so its future is ready when returned; one thread alone commits each write
/// on its own.
#[derive(Debug)]
pub struct SqliteLedger {
    /// The file, as shown in errors.
    path: String,
    /// The group commit's queue. `std::sync` primitives: no call holds them across an
    /// `.await` (there is none).
    queue: Mutex<Queue>,
    /// Wakes the callers waiting on a batch when its answers are in.
    answered: Condvar,
    /// The connection, used by one batch (or one read) at a time.
    inner: Mutex<Inner>,
}

impl SqliteLedger {
    /// Opens the ledger in the store file at `path`, creating the file if it is missing or
    /// empty and bringing its schema up to date (the ledger's tables are a migration of the
    /// store). A file that is not a gavat store — a directory, another format, another
    /// program's database — is refused untouched, with the path in the error. Settled
    /// message ids are remembered for [`DEFAULT_RETENTION_SECS`].
    pub fn open(path: &Path) -> Result<SqliteLedger, StoreError> {
        SqliteLedger::open_with_retention(path, DEFAULT_RETENTION_SECS)
    }

    /// [`SqliteLedger::open`], remembering settled message ids for `retention_secs` after
    /// their reservation time.
    pub fn open_with_retention(path: &Path, retention_secs: i64) -> Result<SqliteLedger, StoreError> {
        let conn = open_shared_writer(path, BUSY_TIMEOUT)?;
        let tune = || -> rusqlite::Result<()> {
            conn.pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES)?;
            conn.pragma_update(None, "cache_size", -CACHE_KIB)?;
            // The bundled SQLite (STAT4) otherwise recompiles a statement whose plan might
            // depend on a bound value — the pending query, on every reservation (a tenth
            // of the time measured). The plans here never should: one plan per statement.
            conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true).map(drop)
        };
        tune().map_err(|e| StoreError::Io { path: path.display().to_string(), cause: std::io::Error::other(e) })?;
        let prune = Prune { since: 0, latest: Timestamp(i64::MIN), retention_secs };
        Ok(SqliteLedger {
            path: path.display().to_string(),
            queue: Mutex::new(Queue::default()),
            answered: Condvar::new(),
            inner: Mutex::new(Inner { conn, prune }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere cannot leave the connection mid-transaction: a transaction
        // that is not committed rolls back when it is dropped.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        // Every update of the queue is a push, a take or an insert: never half done.
        self.queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The ledger's error for a failed transaction, naming the file.
    fn error(&self, failure: Failure) -> LedgerError {
        match failure {
            Failure::Answer(e) => e,
            Failure::Sql(e) => LedgerError::Unavailable { reason: format!("{}: {e}", self.path) },
            Failure::Corrupt { column, value } => LedgerError::Unavailable {
                reason: format!("{}: ledger_messages.{column}: unreadable value {value:?}", self.path),
            },
        }
    }

    /// Commits `write` (with whatever other threads queued meanwhile) and returns its answer.
    fn write(&self, write: Write) -> Result<Written, LedgerError> {
        let mut queue = self.queue();
        let ticket = queue.next_ticket;
        queue.next_ticket += 1;
        queue.waiting.push((ticket, write));
        loop {
            if let Some(answer) = queue.answers.remove(&ticket) {
                return answer;
            }
            if queue.committing {
                queue = self.answered.wait(queue).unwrap_or_else(|poisoned| poisoned.into_inner());
                continue;
            }
            queue.committing = true;
            let batch = std::mem::take(&mut queue.waiting);
            drop(queue);
            let mut guard = Committing { ledger: self, tickets: batch.iter().map(|(t, _)| *t).collect() };
            let answers = self.commit(&batch);
            queue = self.queue();
            queue.committing = false;
            queue.answers.extend(std::mem::take(&mut guard.tickets).into_iter().zip(answers));
            self.answered.notify_all();
        }
    }

    /// Runs a batch of writes in one `BEGIN IMMEDIATE` transaction, in order, each seeing
    /// the ones before it. A write that answers `Conflict`, `NotReserved` or `OptedOut` has written
    /// nothing, and the others go on; a SQLite failure rolls the whole batch back and every
    /// write of it is `Unavailable`.
    fn commit(&self, batch: &[(u64, Write)]) -> Vec<Result<Written, LedgerError>> {
        let mut inner = self.lock();
        let inner = &mut *inner;
        let outcome = (|| -> Result<Vec<Result<Written, LedgerError>>, Failure> {
            let tx = inner.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut answers = Vec::with_capacity(batch.len());
            for (_, write) in batch {
                let answer = match *write {
                    Write::Reserve(request) => reserve_in(&tx, &mut inner.prune, request).map(Written::Reserved),
                    Write::ReserveShare(request) => {
                        reserve_share_in(&tx, &mut inner.prune, request).map(Written::Reserved)
                    }
                    Write::Settle(message, counted) => settle_in(&tx, message, counted).map(|()| Written::Done),
                    Write::Sending(message) => sending_in(&tx, message).map(|()| Written::Done),
                    Write::OptOut(user) => opt_out_in(&tx, user).map(|()| Written::Done),
                    Write::ReConsent(user) => re_consent_in(&tx, user).map(|()| Written::Done),
                };
                answers.push(match answer {
                    Ok(written) => Ok(written),
                    Err(Failure::Answer(e)) => Err(e),
                    Err(failure) => return Err(failure),
                });
            }
            tx.commit()?;
            Ok(answers)
        })();
        outcome.unwrap_or_else(|failure| vec![Err(self.error(failure)); batch.len()])
    }

    /// The synchronous core of [`CapLedger::load`]: one read transaction, so the counted
    /// state and the pending reservations are one snapshot.
    fn load_now(&self, user: UserId) -> Result<LedgerUser, LedgerError> {
        let mut inner = self.lock();
        let result = (|| -> Result<LedgerUser, Failure> {
            let tx = inner.conn.transaction()?;
            load_user(&tx, user)
        })();
        result.map_err(|f| self.error(f))
    }

    /// The synchronous core of [`CapLedger::recover`]: one `BEGIN IMMEDIATE` transaction
    /// over every unsettled row, in grant order.
    fn recover_now(&self) -> Result<Recovery, LedgerError> {
        let mut inner = self.lock();
        let result = (|| -> Result<Recovery, Failure> {
            let tx = inner.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let rows: Vec<(MessageId, MessageRow)> = {
                let mut stmt = tx.prepare(sql::ALL_PENDING)?;
                let raw = stmt.query_map([], |r| Ok((MessageId(r.get::<_, i64>(0)? as u64), raw_row(r, 1)?)))?;
                let mut rows = Vec::new();
                for item in raw {
                    let (message, raw) = item?;
                    rows.push((message, raw.parse()?));
                }
                rows
            };
            let mut recovery = Recovery::default();
            for (message, row) in &rows {
                if row.state == State::Sending || is_group_share(*message) {
                    settle_row(&tx, *message, row, Some(Counted::Unknown))?;
                    recovery.unknown += 1;
                } else {
                    settle_row(&tx, *message, row, None)?;
                    recovery.released += 1;
                }
            }
            tx.commit()?;
            Ok(recovery)
        })();
        result.map_err(|f| self.error(f))
    }
}

/// Ends a batch if its commit unwinds: its writes are answered `Unavailable` and the next
/// caller may commit, so no thread waits forever on a batch that will never answer.
struct Committing<'a> {
    ledger: &'a SqliteLedger,
    /// The batch's tickets; emptied once its answers are in.
    tickets: Vec<u64>,
}

impl Drop for Committing<'_> {
    fn drop(&mut self) {
        if self.tickets.is_empty() {
            return;
        }
        let mut queue = self.ledger.queue();
        queue.committing = false;
        let reason = format!("{}: a commit of the cap ledger failed unexpectedly", self.ledger.path);
        for ticket in self.tickets.drain(..) {
            queue.answers.insert(ticket, Err(LedgerError::Unavailable { reason: reason.clone() }));
        }
        self.ledger.answered.notify_all();
    }
}

/// [`CapLedger::reserve`] inside the batch's transaction: the stored decision for a known
/// id, else decide over the user's counted state and pending reservations and write the
/// decision.
fn reserve_in(conn: &Connection, prune: &mut Prune, request: Reservation) -> Result<Reserved, Failure> {
    check_kind(request.message, false)?;
    let (message, user, at, zone) = (request.message, request.user, request.at, request.zone);
    decide_in(conn, prune, message, user, at, zone.offset_at(at), |state| {
        match decide(&state.effective(zone), &request.caps, zone, at) {
            Decision::Send => Reserved::Granted,
            Decision::Suppress { reason, .. } => Reserved::Denied(reason),
        }
    })
}

/// [`CapLedger::reserve_share`] inside the batch's transaction.
fn reserve_share_in(conn: &Connection, prune: &mut Prune, request: ShareReservation) -> Result<Reserved, Failure> {
    check_kind(request.message, true)?;
    let (message, user, at, zone) = (request.message, request.user, request.at, request.zone);
    decide_in(conn, prune, message, user, at, zone.offset_at(at), |state| state.decide_share(&request))
}

/// A reservation of either kind: the stored decision for a known id, else `rule`'s over the
/// user's state, written.
fn decide_in(
    conn: &Connection,
    prune: &mut Prune,
    message: MessageId,
    user: UserId,
    at: Timestamp,
    offset: UtcOffset,
    rule: impl FnOnce(&LedgerUser) -> Reserved,
) -> Result<Reserved, Failure> {
    if let Some(row) = message_row(conn, message)? {
        return if row.user == user {
            Ok(row.decision())
        } else {
            Err(LedgerError::Conflict { message, first: row.user, now: user }.into())
        };
    }
    let state = load_user(conn, user)?;
    let (state, reason) = match rule(&state) {
        Reserved::Granted => (State::Reserved, None),
        Reserved::Denied(reason) => (State::Denied, Some(reason)),
    };
    conn.prepare_cached(sql::INSERT)?.execute(params![
        message.0 as i64,
        user.0 as i64,
        at.secs(),
        offset.0,
        state.as_str(),
        reason.map(SuppressReason::as_str),
    ])?;
    prune.latest = prune.latest.max(at);
    prune.since += 1;
    if prune.since >= PRUNE_EVERY {
        // Settled ids reserved before the window; pending ones always stay.
        conn.prepare_cached(sql::PRUNE)?.execute(params![prune.latest.plus(-prune.retention_secs).secs()])?;
        prune.since = 0;
    }
    Ok(reason.map_or(Reserved::Granted, Reserved::Denied))
}

/// [`CapLedger::confirm`] (`Some`) and [`CapLedger::release`] (`None`) inside the batch's
/// transaction; the first settle wins.
fn settle_in(conn: &Connection, message: MessageId, counted: Option<Counted>) -> Result<(), Failure> {
    let row = granted_row(conn, message)?;
    if row.state.pending() { settle_row(conn, message, &row, counted) } else { Ok(()) }
}

/// [`CapLedger::sending`] inside the batch's transaction: `reserved` → `sending`, unless the
/// user opted out since the reservation (rule 7's second check, against `ledger_users`, which
/// every connection on the file writes: another engine's opt-out is seen).
fn sending_in(conn: &Connection, message: MessageId) -> Result<(), Failure> {
    let row = granted_row(conn, message)?;
    // A message never reserved, denied or already settled holds no reservation and must
    // not go out; a repeated call (already sending) is fine.
    if !row.state.pending() {
        return Err(LedgerError::NotReserved { message }.into());
    }
    if counted_state(conn, row.user)?.opted_out {
        return Err(LedgerError::OptedOut { message }.into());
    }
    conn.prepare_cached(sql::SENDING)?.execute(params![message.0 as i64])?;
    Ok(())
}

/// [`CapLedger::opt_out`] inside the batch's transaction: one upsert.
fn opt_out_in(conn: &Connection, user: UserId) -> Result<(), Failure> {
    conn.prepare_cached(sql::OPT_OUT)?.execute(params![user.0 as i64])?;
    Ok(())
}

/// [`CapLedger::re_consent`] inside the batch's transaction: one update (a user the ledger
/// has never seen has no opt-out to lift).
fn re_consent_in(conn: &Connection, user: UserId) -> Result<(), Failure> {
    conn.prepare_cached(sql::RE_CONSENT)?.execute(params![user.0 as i64])?;
    Ok(())
}

/// A `ledger_messages` row as stored, before its text columns are checked.
struct RawRow {
    user: i64,
    at: i64,
    offset: i32,
    state: String,
    reason: Option<String>,
}

impl RawRow {
    fn parse(self) -> Result<MessageRow, Failure> {
        let state = State::ALL
            .into_iter()
            .find(|s| s.as_str() == self.state)
            .ok_or(Failure::Corrupt { column: "state", value: self.state })?;
        let reason = match self.reason {
            None => None,
            Some(name) => Some(
                SuppressReason::ALL
                    .into_iter()
                    .find(|r| r.as_str() == name)
                    .ok_or(Failure::Corrupt { column: "reason", value: name })?,
            ),
        };
        if state == State::Denied && reason.is_none() {
            return Err(Failure::Corrupt { column: "reason", value: "NULL for a denied message".into() });
        }
        Ok(MessageRow {
            user: UserId(self.user as u64),
            at: Timestamp(self.at),
            offset: UtcOffset(self.offset),
            state,
            reason,
        })
    }
}

/// Reads `user_id, at, utc_offset, state, reason` from column `first` on.
fn raw_row(r: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<RawRow> {
    Ok(RawRow {
        user: r.get(first)?,
        at: r.get(first + 1)?,
        offset: r.get(first + 2)?,
        state: r.get(first + 3)?,
        reason: r.get(first + 4)?,
    })
}

/// The row of `message`, if the ledger remembers it.
fn message_row(conn: &Connection, message: MessageId) -> Result<Option<MessageRow>, Failure> {
    let raw = conn.prepare_cached(sql::MESSAGE)?.query_row(params![message.0 as i64], |r| raw_row(r, 0)).optional()?;
    raw.map(RawRow::parse).transpose()
}

/// The row of a message that was granted; [`LedgerError::NotReserved`] for one never
/// reserved (or forgotten) or denied.
fn granted_row(conn: &Connection, message: MessageId) -> Result<MessageRow, Failure> {
    match message_row(conn, message)? {
        Some(row) if row.state != State::Denied => Ok(row),
        _ => Err(LedgerError::NotReserved { message }.into()),
    }
}

/// A user's counted state (the default for a user the ledger has never seen).
fn counted_state(conn: &Connection, user: UserId) -> Result<CapState, Failure> {
    let state = conn
        .prepare_cached(sql::COUNTED)?
        .query_row(params![user.0 as i64], |r| {
            Ok(CapState {
                opted_out: r.get(0)?,
                last_sent: r.get::<_, Option<i64>>(1)?.map(Timestamp),
                last_send_day: r.get(2)?,
                sent_on_last_day: r.get(3)?,
            })
        })
        .optional()?;
    Ok(state.unwrap_or_default())
}

/// A user's counted state and pending reservations in grant order.
fn load_user(conn: &Connection, user: UserId) -> Result<LedgerUser, Failure> {
    let counted = counted_state(conn, user)?;
    let mut stmt = conn.prepare_cached(sql::PENDING)?;
    let all = stmt
        .query_map(params![user.0 as i64], |r| Ok((MessageId(r.get::<_, i64>(0)? as u64), Timestamp(r.get(1)?))))?
        .collect::<Result<Vec<_>, _>>()?;
    let (pending_shares, pending) = all.into_iter().partition(|(m, _)| is_group_share(*m));
    Ok(LedgerUser { counted, pending, exposure: exposure_of(conn, user)?, pending_shares })
}

/// A user's counted exposure to group posts.
fn exposure_of(conn: &Connection, user: UserId) -> Result<super::Exposure, Failure> {
    let exposure = conn
        .prepare_cached(sql::EXPOSURE)?
        .query_row(params![user.0 as i64], |r| Ok(super::Exposure { day: r.get(0)?, seen: r.get(1)? }))
        .optional()?;
    Ok(exposure.unwrap_or_default())
}

/// Settles a pending message inside the caller's transaction: its new state and, when it
/// counts, the user's counted state through [`CapState::record_send`] (the same rule as
/// the memory ledger, with the offset of the reservation).
fn settle_row(
    conn: &Connection,
    message: MessageId,
    row: &MessageRow,
    counted: Option<Counted>,
) -> Result<(), Failure> {
    let state = match counted {
        Some(Counted::Delivered) => State::Delivered,
        Some(Counted::Unknown) => State::Unknown,
        None => State::Released,
    };
    conn.prepare_cached(sql::SETTLE)?.execute(params![message.0 as i64, state.as_str()])?;
    if counted.is_some() && is_group_share(message) {
        let mut exposure = exposure_of(conn, row.user)?;
        exposure.record(row.at.local_day(Zone::Fixed(row.offset)));
        conn.prepare_cached(sql::SAVE_EXPOSURE)?.execute(params![row.user.0 as i64, exposure.day, exposure.seen])?;
    } else if counted.is_some() {
        let mut user = counted_state(conn, row.user)?;
        user.record_send(row.at, Zone::Fixed(row.offset));
        conn.prepare_cached(sql::SAVE_COUNTED)?.execute(params![
            row.user.0 as i64,
            user.opted_out,
            user.last_sent.map(Timestamp::secs),
            user.last_send_day,
            user.sent_on_last_day,
        ])?;
    }
    Ok(())
}

impl CapLedger for SqliteLedger {
    fn reserve(&self, request: Reservation) -> LedgerFuture<Reserved> {
        let answer = self.write(Write::Reserve(request)).map(|written| match written {
            Written::Reserved(reserved) => reserved,
            Written::Done => unreachable!("a reservation is answered with its decision"),
        });
        Box::pin(ready(answer))
    }

    fn reserve_share(&self, request: ShareReservation) -> LedgerFuture<Reserved> {
        let answer = self.write(Write::ReserveShare(request)).map(|written| match written {
            Written::Reserved(reserved) => reserved,
            Written::Done => unreachable!("a reservation is answered with its decision"),
        });
        Box::pin(ready(answer))
    }

    fn confirm(&self, message: MessageId, counted: Counted) -> LedgerFuture<()> {
        Box::pin(ready(self.write(Write::Settle(message, Some(counted))).map(drop)))
    }

    fn release(&self, message: MessageId) -> LedgerFuture<()> {
        Box::pin(ready(self.write(Write::Settle(message, None)).map(drop)))
    }

    fn opt_out(&self, user: UserId) -> LedgerFuture<()> {
        Box::pin(ready(self.write(Write::OptOut(user)).map(drop)))
    }

    fn re_consent(&self, user: UserId) -> LedgerFuture<()> {
        Box::pin(ready(self.write(Write::ReConsent(user)).map(drop)))
    }

    fn load(&self, user: UserId) -> LedgerFuture<LedgerUser> {
        Box::pin(ready(self.load_now(user)))
    }

    fn sending(&self, message: MessageId) -> LedgerFuture<()> {
        Box::pin(ready(self.write(Write::Sending(message)).map(drop)))
    }

    fn recover(&self) -> LedgerFuture<Recovery> {
        Box::pin(ready(self.recover_now()))
    }
}

impl Drop for SqliteLedger {
    /// Like the store's writers, the last connection to close leaves the file at rest as one
    /// file (rollback journal); while another connection has it open this fails at once and
    /// is not needed.
    fn drop(&mut self) {
        let inner = self.lock();
        if inner.conn.busy_timeout(Duration::ZERO).is_ok() {
            let _ = inner.conn.query_row("PRAGMA journal_mode = DELETE", [], |r| r.get::<_, String>(0));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::domain::{Caps, DAY, HOUR, HourMask};
    use crate::ledger::conformance;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    const START: Timestamp = Timestamp(20_000 * DAY);

    fn caps() -> Caps {
        Caps { daily_limit: 2, cooldown_secs: 4 * HOUR, allowed_hours: HourMask::ALL_DAY, period_days: 1 }
    }

    fn request(message: u64, user: u64, at: i64) -> Reservation {
        Reservation {
            message: MessageId(message),
            user: UserId(user),
            at: START.plus(at),
            caps: caps(),
            zone: Zone::fixed(180),
        }
    }

    fn reserve(ledger: &SqliteLedger, r: Reservation) -> Result<Reserved, LedgerError> {
        futures::executor::block_on(ledger.reserve(r))
    }

    fn run<T>(future: LedgerFuture<T>) -> Result<T, LedgerError> {
        futures::FutureExt::now_or_never(future).expect("a SQLite ledger's futures are ready when returned")
    }

    /// Fresh ledgers, each on a file of its own in one temporary directory.
    struct Files {
        dir: tempfile::TempDir,
        next: u64,
    }

    impl Files {
        fn new() -> Result<Files, std::io::Error> {
            Ok(Files { dir: tempfile::tempdir()?, next: 0 })
        }

        fn path(&mut self) -> PathBuf {
            self.next += 1;
            self.dir.path().join(format!("crm-{}.db", self.next))
        }
    }

    /// The SQLite ledger answers every step of the conformance harness as the oracle does.
    #[test]
    fn sqlite_ledger_passes_the_conformance_harness() -> TestResult {
        let mut files = Files::new()?;
        let coverage = conformance::check(
            || SqliteLedger::open(&files.path()).expect("a temporary file opens"),
            &conformance::Settings::default(),
        )
        .map_err(|mismatch| mismatch.to_string())?;
        for answer in ["Ok(Granted)", "Ok(Denied(DailyLimit", "Ok(Denied(Cooldown", "Err(Conflict", "Err(NotReserved"] {
            assert!(coverage.saw(answer), "the harness never produced {answer}: {:?}", coverage.answers);
        }
        Ok(())
    }

    /// With `sending`, `recover` and group shares in the sequences, the ledger still answers
    /// as the oracle does.
    #[test]
    fn sqlite_ledger_passes_the_outbox_harness() -> TestResult {
        let mut files = Files::new()?;
        let settings = conformance::Settings { cases: 100, ..conformance::Settings::default() };
        let coverage =
            conformance::check_outbox(|| SqliteLedger::open(&files.path()).expect("a temporary file opens"), &settings)
                .map_err(|mismatch| mismatch.to_string())?;
        assert!(coverage.saw("Ok(Recovery") && coverage.saw("Err(OptedOut"), "{:?}", coverage.answers);
        Ok(())
    }

    /// Across the 2026 DST changes (sequences starting the day before New York's and
    /// Berlin's spring-forward and fall-back) the ledger still answers as the oracle does,
    /// with sends counted and pending on both sides of the change (RELIABILITY.md row 25).
    #[test]
    fn sqlite_ledger_agrees_across_dst_changes() -> TestResult {
        let mut files = Files::new()?;
        for start in [1_772_841_600, 1_774_656_000, 1_792_800_000, 1_793_404_800] {
            let settings =
                conformance::Settings { cases: 25, start: Timestamp(start), ..conformance::Settings::default() };
            let coverage = conformance::check_outbox(
                || SqliteLedger::open(&files.path()).expect("a temporary file opens"),
                &settings,
            )
            .map_err(|mismatch| mismatch.to_string())?;
            assert!(coverage.offset_changes_crossed > 0, "no DST change crossed from {start}");
        }
        Ok(())
    }

    /// Decisions and pending reservations survive closing and reopening the file (a crash
    /// between reserve and settle): a retry gets the first answer, the pending reservation
    /// still holds the cooldown, and it can be settled after the reopen.
    #[test]
    fn decisions_and_pending_survive_reopening() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("crm.db");
        {
            let ledger = SqliteLedger::open(&path)?;
            assert_eq!(reserve(&ledger, request(1, 7, 10 * HOUR))?, Reserved::Granted);
            assert_eq!(reserve(&ledger, request(2, 7, 11 * HOUR))?, Reserved::Denied(SuppressReason::Cooldown));
        }
        let ledger = SqliteLedger::open(&path)?;
        assert_eq!(reserve(&ledger, request(1, 7, 10 * HOUR))?, Reserved::Granted);
        assert_eq!(reserve(&ledger, request(2, 7, 15 * HOUR))?, Reserved::Denied(SuppressReason::Cooldown));
        assert_eq!(reserve(&ledger, request(3, 7, 12 * HOUR))?, Reserved::Denied(SuppressReason::Cooldown));
        let user = run(ledger.load(UserId(7)))?;
        assert_eq!(user.pending, vec![(MessageId(1), START.plus(10 * HOUR))]);
        assert_eq!(user.counted, CapState::default());
        assert_eq!(
            reserve(&ledger, request(1, 8, 10 * HOUR)),
            Err(LedgerError::Conflict { message: MessageId(1), first: UserId(7), now: UserId(8) })
        );
        run(ledger.confirm(MessageId(1), Counted::Delivered))?;
        run(ledger.release(MessageId(1)))?; // the first settle wins
        assert_eq!(run(ledger.release(MessageId(2))), Err(LedgerError::NotReserved { message: MessageId(2) }));
        let user = run(ledger.load(UserId(7)))?;
        assert!(user.pending.is_empty());
        assert_eq!(user.counted.last_sent, Some(START.plus(10 * HOUR)));
        assert_eq!(user.counted.sent_on_last_day, 1);
        Ok(())
    }

    /// Every call of the engine's path answers without being polled twice.
    #[test]
    fn futures_are_ready_when_returned() -> TestResult {
        let dir = tempfile::tempdir()?;
        let ledger = SqliteLedger::open(&dir.path().join("crm.db"))?;
        assert_eq!(run(ledger.reserve(request(1, 7, 0)))?, Reserved::Granted);
        run(ledger.sending(MessageId(1)))?;
        run(ledger.confirm(MessageId(1), Counted::Unknown))?;
        run(ledger.opt_out(UserId(7)))?;
        assert!(run(ledger.load(UserId(7)))?.counted.opted_out);
        assert_eq!(run(ledger.recover())?, Recovery::default());
        Ok(())
    }

    /// An opt-out refuses every reservation until the user's own re-consent lifts it; the
    /// counted sends stay.
    #[test]
    fn re_consent_lifts_an_opt_out_and_keeps_the_counts() -> TestResult {
        let dir = tempfile::tempdir()?;
        let ledger = SqliteLedger::open(&dir.path().join("crm.db"))?;
        assert_eq!(run(ledger.reserve(request(1, 7, 10 * HOUR)))?, Reserved::Granted);
        run(ledger.confirm(MessageId(1), Counted::Delivered))?;
        run(ledger.opt_out(UserId(7)))?;
        assert_eq!(run(ledger.reserve(request(2, 7, 20 * HOUR)))?, Reserved::Denied(SuppressReason::OptedOut));
        run(ledger.re_consent(UserId(7)))?;
        run(ledger.re_consent(UserId(8)))?; // never seen: nothing to lift
        let user = run(ledger.load(UserId(7)))?;
        assert!(!user.counted.opted_out);
        assert_eq!(user.counted.last_sent, Some(START.plus(10 * HOUR)));
        assert_eq!(run(ledger.reserve(request(3, 7, 30 * HOUR)))?, Reserved::Granted);
        Ok(())
    }

    /// The caps a user's granted sends must keep: at most `daily_limit` a local day, and
    /// `cooldown_secs` between two.
    fn assert_within_caps(granted: &mut [Timestamp], caps: &Caps, zone: Zone) {
        granted.sort_unstable();
        for pair in granted.windows(2) {
            assert!(pair[1].secs() - pair[0].secs() >= caps.cooldown_secs, "cooldown broken: {pair:?}");
        }
        let mut days: std::collections::BTreeMap<i64, u32> = std::collections::BTreeMap::new();
        for t in granted.iter() {
            *days.entry(t.local_day(zone)).or_default() += 1;
        }
        assert!(days.values().all(|&n| n <= caps.daily_limit), "daily limit broken: {days:?}");
    }

    /// Two handles on one file — two connections, as two processes would hold — interleaving
    /// reservations for the same user, each confirming the other's grants: every grant
    /// counts for both, so the daily limit and the cooldown hold across them.
    #[test]
    fn two_handles_on_one_file_share_the_caps() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("crm.db");
        let handles = [SqliteLedger::open(&path)?, SqliteLedger::open(&path)?];
        let caps = Caps { daily_limit: 3, cooldown_secs: 2 * HOUR, allowed_hours: HourMask::ALL_DAY, period_days: 1 };
        let mut granted = Vec::new();
        let mut unsettled: Option<MessageId> = None;
        for step in 0..400u64 {
            // Both try every slot of 30 minutes: one after the other, alternating who goes first.
            let at = START.plus(step as i64 / 2 * 1_800);
            let handle = &handles[(step % 2) as usize ^ ((step / 2) % 2) as usize];
            let r = Reservation { message: MessageId(step), user: UserId(7), at, caps, zone: Zone::fixed(330) };
            if reserve(handle, r)? == Reserved::Granted {
                granted.push(at);
                // Some grants stay pending a while (settled by the other handle later).
                if let Some(m) = unsettled.take() {
                    run(handles[(step % 2) as usize ^ 1].confirm(m, Counted::Delivered))?;
                }
                unsettled = Some(r.message);
            }
        }
        assert!(granted.len() >= 10, "the test exercises grants: {}", granted.len());
        assert_within_caps(&mut granted, &caps, Zone::fixed(330));
        Ok(())
    }

    /// Two threads, each with its own handle on one file, racing for the same user's slots:
    /// whoever wins a slot, the granted sends keep the caps (the outcome per slot may vary;
    /// the caps never break).
    #[test]
    fn concurrent_handles_never_grant_past_a_cap() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("crm.db");
        drop(SqliteLedger::open(&path)?);
        let caps = Caps { daily_limit: 2, cooldown_secs: 3 * HOUR, allowed_hours: HourMask::ALL_DAY, period_days: 1 };
        let granted: Vec<Timestamp> = std::thread::scope(|scope| -> Result<Vec<Timestamp>, StoreError> {
            let workers: Vec<_> = (0..2u64)
                .map(|thread| {
                    let path = &path;
                    scope.spawn(move || -> Result<Vec<Timestamp>, StoreError> {
                        let ledger = SqliteLedger::open(path)?;
                        let mut granted = Vec::new();
                        for slot in 0..400u64 {
                            let at = START.plus(slot as i64 * 1_200);
                            let message = MessageId(thread << 32 | slot);
                            let r = Reservation { message, user: UserId(7), at, caps, zone: Zone::fixed(-300) };
                            if reserve(&ledger, r) == Ok(Reserved::Granted) {
                                granted.push(at);
                                run(ledger.confirm(message, Counted::Delivered)).expect("a grant confirms");
                            }
                        }
                        Ok(granted)
                    })
                })
                .collect();
            let mut all = Vec::new();
            for worker in workers {
                all.extend(worker.join().expect("worker finished")?);
            }
            Ok(all)
        })?;
        let mut granted = granted;
        assert!(granted.len() >= 8, "the test exercises grants: {}", granted.len());
        assert_within_caps(&mut granted, &caps, Zone::fixed(-300));
        Ok(())
    }

    /// One handle shared by eight threads (the engine's shard threads), their writes
    /// committed in batches: each thread's own user gets exactly the grants it would get
    /// alone, and a user every thread reserves for keeps the caps.
    #[test]
    fn a_shared_handle_commits_many_threads_writes_together() -> TestResult {
        let dir = tempfile::tempdir()?;
        let ledger = SqliteLedger::open(&dir.path().join("crm.db"))?;
        let caps = Caps { daily_limit: 3, cooldown_secs: 3 * HOUR, allowed_hours: HourMask::ALL_DAY, period_days: 1 };
        let zone = Zone::fixed(60);
        let shared: Vec<Vec<Timestamp>> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..8u64)
                .map(|thread| {
                    let ledger = &ledger;
                    scope.spawn(move || {
                        let (mut own, mut shared) = (0, Vec::new());
                        for slot in 0..100u64 {
                            let at = START.plus(slot as i64 * HOUR);
                            for (user, id) in [(thread, thread << 32 | slot), (99, thread << 32 | 1 << 20 | slot)] {
                                let message = MessageId(id);
                                let r = Reservation { message, user: UserId(user), at, caps, zone };
                                if reserve(ledger, r) == Ok(Reserved::Granted) {
                                    run(ledger.sending(message)).expect("sending");
                                    run(ledger.confirm(message, Counted::Delivered)).expect("confirm");
                                    if user == 99 { shared.push(at) } else { own += 1 }
                                }
                            }
                        }
                        (own, shared)
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| {
                    let (own, shared) = w.join().expect("worker finished");
                    // 100 hourly slots from midnight, 3 h apart, 3 a day: 3 + 3 + 3 + 3 + 2.
                    assert_eq!(own, 14, "a thread's own user is granted as if alone");
                    shared
                })
                .collect()
        });
        let mut shared: Vec<Timestamp> = shared.into_iter().flatten().collect();
        assert!(shared.len() >= 10, "the shared user was granted: {}", shared.len());
        assert_within_caps(&mut shared, &caps, zone);
        Ok(())
    }

    /// After a crash, `recover` settles what was left: a direct message reserved but never
    /// handed to the transport is released, one marked sending counts as unknown, and a
    /// group share counts as unknown; `sending` refuses what holds no reservation.
    #[test]
    fn recover_settles_what_a_crash_left() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("crm.db");
        let share = MessageId(1 << 63 | 5);
        {
            let ledger = SqliteLedger::open(&path)?;
            assert_eq!(reserve(&ledger, request(1, 1, 0))?, Reserved::Granted);
            assert_eq!(reserve(&ledger, request(2, 2, 0))?, Reserved::Granted);
            let share_request = ShareReservation {
                message: share,
                user: UserId(3),
                at: START,
                zone: Zone::fixed(0),
                exposure_limit: 3,
            };
            assert_eq!(run(ledger.reserve_share(share_request))?, Reserved::Granted);
            assert_eq!(reserve(&ledger, request(4, 1, HOUR))?, Reserved::Denied(SuppressReason::Cooldown));
            run(ledger.sending(MessageId(2)))?;
            run(ledger.sending(MessageId(2)))?; // a repeat is harmless
            assert_eq!(run(ledger.sending(MessageId(4))), Err(LedgerError::NotReserved { message: MessageId(4) }));
            assert_eq!(run(ledger.sending(MessageId(9))), Err(LedgerError::NotReserved { message: MessageId(9) }));
        } // the crash: nothing settled
        let ledger = SqliteLedger::open(&path)?;
        assert_eq!(run(ledger.recover())?, Recovery { unknown: 2, released: 1 });
        assert_eq!(run(ledger.recover())?, Recovery::default(), "nothing is left to recover");
        let released = run(ledger.load(UserId(1)))?;
        assert_eq!(released, LedgerUser::default(), "a released reservation no longer counts");
        let counted = run(ledger.load(UserId(2)))?;
        assert!(counted.pending.is_empty());
        assert_eq!(counted.counted.last_sent, Some(START), "user 2 counts the message that may have gone out");
        let member = run(ledger.load(UserId(3)))?;
        assert!(member.pending_shares.is_empty());
        assert_eq!(member.counted, CapState::default(), "a group share never counts against the direct caps");
        assert_eq!(member.exposure.seen, 1, "the share that may have gone out counts in the exposure");
        // A recovered message is settled: sending it now would be an uncounted send.
        assert_eq!(run(ledger.sending(MessageId(1))), Err(LedgerError::NotReserved { message: MessageId(1) }));
        assert_eq!(run(ledger.sending(MessageId(2))), Err(LedgerError::NotReserved { message: MessageId(2) }));
        Ok(())
    }

    /// Settled ids older than the retention window are forgotten (a very late retry is a
    /// new reservation); pending ones never are.
    #[test]
    fn retention_forgets_only_old_settled_ids() -> TestResult {
        let dir = tempfile::tempdir()?;
        let ledger = SqliteLedger::open_with_retention(&dir.path().join("crm.db"), DAY)?;
        assert_eq!(reserve(&ledger, request(1, 1, 0))?, Reserved::Granted);
        run(ledger.confirm(MessageId(1), Counted::Delivered))?;
        assert_eq!(reserve(&ledger, request(2, 2, 0))?, Reserved::Granted);
        for i in 0..u64::from(PRUNE_EVERY) {
            reserve(&ledger, request(100 + i, 1_000 + i, 3 * DAY + i as i64))?;
        }
        let count = |message: u64| -> rusqlite::Result<i64> {
            ledger.lock().conn.query_row(
                "SELECT COUNT(*) FROM ledger_messages WHERE message = ?1",
                params![message as i64],
                |r| r.get(0),
            )
        };
        assert_eq!(count(1)?, 0, "old settled id forgotten");
        assert_eq!(count(2)?, 1, "pending id kept");
        assert_eq!(run(ledger.load(UserId(1)))?.counted.sent_on_last_day, 1, "its count is kept");
        Ok(())
    }

    /// The statements of the hot path use the indexes (no scan of the messages table) and,
    /// once a workload has run through them, were compiled once: none is re-prepared when a
    /// parameter is bound (SQLite does that for a statement whose plan may depend on the
    /// value, as with a partial index).
    #[test]
    fn hot_statements_use_the_indexes_and_compile_once() -> TestResult {
        let dir = tempfile::tempdir()?;
        let ledger = SqliteLedger::open(&dir.path().join("crm.db"))?;
        for i in 0..200u64 {
            let r = request(i, i % 20, i as i64 * HOUR);
            if reserve(&ledger, r)? == Reserved::Granted {
                run(ledger.sending(r.message))?;
                run(ledger.confirm(r.message, Counted::Delivered))?;
            }
        }
        let inner = ledger.lock();
        for (statement, index) in [
            (sql::MESSAGE, "sqlite_autoindex_ledger_messages_1"),
            (sql::COUNTED, "INTEGER PRIMARY KEY"),
            (sql::PENDING, "ledger_messages_by_user"),
            (sql::SENDING, "sqlite_autoindex_ledger_messages_1"),
            (sql::SETTLE, "sqlite_autoindex_ledger_messages_1"),
            (sql::PRUNE, "ledger_messages_by_time"),
        ] {
            let plan: Vec<String> = inner
                .conn
                .prepare(&format!("EXPLAIN QUERY PLAN {statement}"))?
                .query_map(params![1, 1, 1, 1, 1, 1][..statement.matches('?').count()].as_ref(), |r| r.get(3))?
                .collect::<Result<_, _>>()?;
            assert!(plan.iter().any(|step: &String| step.contains(index)), "{statement}: {plan:?}");
            let cached = inner.conn.prepare_cached(statement)?;
            assert_eq!(cached.get_status(rusqlite::StatementStatus::RePrepare), 0, "{statement}");
            if statement != sql::PRUNE {
                assert!(cached.get_status(rusqlite::StatementStatus::Run) > 0, "the workload ran {statement}");
            }
        }
        Ok(())
    }

    /// A file that is not a gavat store is refused with its path and what it is; a SQLite
    /// failure later (here, a table gone) is `Unavailable` naming the file, never a panic.
    #[test]
    fn bad_files_and_sqlite_failures_are_clear_errors() -> TestResult {
        let dir = tempfile::tempdir()?;
        let text = dir.path().join("notes.txt");
        std::fs::write(&text, "x".repeat(200))?;
        let foreign = dir.path().join("foreign.db");
        Connection::open(&foreign)?.execute_batch("CREATE TABLE t (x);")?;
        for (path, why) in [
            (&text, "not a SQLite database"),
            (&dir.path().to_path_buf(), "a directory"),
            (&foreign, "without gavat's schema"),
        ] {
            let err = SqliteLedger::open(path).expect_err("refused").to_string();
            assert!(err.contains(&path.display().to_string()) && err.contains(why), "{err}");
        }
        assert_eq!(std::fs::read(&text)?, "x".repeat(200).into_bytes(), "left untouched");

        let path = dir.path().join("crm.db");
        let ledger = SqliteLedger::open(&path)?;
        Connection::open(&path)?.execute_batch("DROP TABLE ledger_messages;")?;
        match reserve(&ledger, request(1, 1, 0)) {
            Err(LedgerError::Unavailable { reason }) => {
                assert!(reason.contains(&path.display().to_string()), "{reason}")
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
        Ok(())
    }

    /// Another connection holding the write lock past the busy timeout makes the ledger
    /// unavailable (the engine fails closed), and it answers again once the lock is gone.
    #[test]
    fn a_held_write_lock_is_unavailable_not_a_hang() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("crm.db");
        let ledger = SqliteLedger::open(&path)?;
        let other = Connection::open(&path)?;
        other.execute_batch("BEGIN IMMEDIATE;")?;
        assert!(matches!(reserve(&ledger, request(1, 1, 0)), Err(LedgerError::Unavailable { .. })));
        other.execute_batch("COMMIT;")?;
        assert_eq!(reserve(&ledger, request(1, 1, 0))?, Reserved::Granted);
        Ok(())
    }

    /// The ledger's tables live in the CRM store's file: a store opens the file after the
    /// ledger made it, and the other way round.
    #[test]
    fn shares_the_file_with_the_store() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("crm.db");
        let store = crate::store::SqliteStore::open(&path)?;
        let ledger = SqliteLedger::open(&path)?;
        assert_eq!(reserve(&ledger, request(1, 1, 0))?, Reserved::Granted);
        assert_eq!(store.schema_version()?, crate::store::SCHEMA_VERSION);
        drop((store, ledger));
        let ledger = SqliteLedger::open(&path)?;
        assert_eq!(run(ledger.load(UserId(1)))?.pending.len(), 1);
        drop(ledger);
        crate::store::SqliteStore::open_existing(&path)?;
        Ok(())
    }
}
