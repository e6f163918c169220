//! The embedded CRM store: SQLite (bundled; WAL while written, one file at rest) implementing the [`Store`] seam, and
//! the queries the management commands read it with. It holds profiles and cap counters,
//! segment assignments with confidence and reasons, the send/response log, run summaries
//! and the LLM cache, under a schema version with migrations (`PRAGMA user_version`).
//!
//! Writes are buffered and committed in transactions of up to 10,000 rows (and at
//! `flush`): a simulation's hundred thousand log lines cost a few transactions, not a
//! hundred thousand fsyncs. The calls block briefly; they never await, so they cannot
//! let a paused virtual clock jump.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use serde::Serialize;

use crate::domain::{
    ActivitySummary, Caps, HourMask, ResponseHistory, Segment, SendOutcome, Timestamp, UserId, UserProfile, UtcOffset,
    Zone,
};
use crate::policy::CapState;
#[cfg(test)]
use crate::policy::SuppressReason;
use crate::segmentation::Explained;

use super::{LogEntry, LogKind, RunRecord, Store, StoreError, StoreFuture, UserRecord};

/// Rows buffered before a transaction is committed.
const BATCH: usize = 10_000;

/// The schema, one entry per version: migration `i` takes `user_version` from `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: the first schema.
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
     CREATE TABLE users (
        id INTEGER PRIMARY KEY,
        joined_at INTEGER NOT NULL,
        utc_offset INTEGER NOT NULL,
        bots_followed INTEGER NOT NULL,
        purchases INTEGER NOT NULL,
        sessions INTEGER NOT NULL,
        by_local_hour TEXT NOT NULL,
        last_active INTEGER NOT NULL,
        weekly_sessions REAL NOT NULL,
        received INTEGER NOT NULL,
        responded INTEGER NOT NULL,
        recent INTEGER NOT NULL,
        recent_len INTEGER NOT NULL,
        opted_out INTEGER NOT NULL,
        last_sent INTEGER,
        last_send_day INTEGER NOT NULL,
        sent_on_last_day INTEGER NOT NULL,
        governing TEXT,
        daily_limit INTEGER NOT NULL,
        cooldown_secs INTEGER NOT NULL,
        allowed_hours INTEGER NOT NULL,
        period_days INTEGER NOT NULL,
        next_send_at INTEGER
     );
     CREATE TABLE segments (
        user_id INTEGER NOT NULL,
        segment TEXT NOT NULL,
        confidence REAL NOT NULL,
        reasons TEXT NOT NULL,
        source TEXT NOT NULL,
        PRIMARY KEY (user_id, segment)
     );
     CREATE INDEX segments_by_segment ON segments (segment, confidence DESC);
     CREATE TABLE log (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL,
        at INTEGER NOT NULL,
        user_id INTEGER NOT NULL,
        utc_offset INTEGER NOT NULL,
        group_id INTEGER,
        segment TEXT,
        daily_limit INTEGER,
        cooldown_secs INTEGER,
        allowed_hours INTEGER,
        period_days INTEGER,
        bot INTEGER,
        content TEXT,
        strategy TEXT NOT NULL,
        arm TEXT,
        outcome TEXT
     );
     CREATE INDEX log_by_user ON log (user_id, at);
     CREATE INDEX log_by_time ON log (at);
     CREATE TABLE suppressions (
        segment TEXT NOT NULL,
        reason TEXT NOT NULL,
        count INTEGER NOT NULL,
        PRIMARY KEY (segment, reason)
     );
     CREATE TABLE llm_cache (key TEXT PRIMARY KEY, value TEXT NOT NULL, expires_at INTEGER NOT NULL);",
    // 2: the strategies in force and the learner's audit trail (see `super::strategies`).
    "CREATE TABLE strategies (
        segment TEXT PRIMARY KEY,
        strategy TEXT NOT NULL,
        version INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
     );
     CREATE TABLE strategy_changes (
        id INTEGER PRIMARY KEY,
        at INTEGER NOT NULL,
        segment TEXT NOT NULL,
        source TEXT NOT NULL,
        action TEXT NOT NULL,
        field TEXT NOT NULL,
        before TEXT NOT NULL,
        after TEXT NOT NULL,
        evidence TEXT NOT NULL,
        proof TEXT,
        strategy_before TEXT NOT NULL,
        strategy_after TEXT NOT NULL
     );
     CREATE INDEX strategy_changes_by_segment ON strategy_changes (segment, id);",
    // 3: the cap ledger (see `crate::ledger::SqliteLedger`): each user's counted sends and
    // opt-out, and every message's decision and state. `seq` is the grant order (a new row
    // always takes a rowid above every row present); `ledger_messages_by_user` finds a
    // user's messages (the unsettled ones are filtered from the few retained), and does not
    // change when a state does; `ledger_messages_by_time` finds settled ones past retention.
    "CREATE TABLE ledger_users (
        user_id INTEGER PRIMARY KEY,
        opted_out INTEGER NOT NULL,
        last_sent INTEGER,
        last_send_day INTEGER NOT NULL,
        sent_on_last_day INTEGER NOT NULL
     );
     CREATE TABLE ledger_messages (
        seq INTEGER PRIMARY KEY,
        message INTEGER NOT NULL UNIQUE,
        user_id INTEGER NOT NULL,
        at INTEGER NOT NULL,
        utc_offset INTEGER NOT NULL,
        state TEXT NOT NULL,
        reason TEXT
     );
     CREATE INDEX ledger_messages_by_user ON ledger_messages (user_id, seq);
     CREATE INDEX ledger_messages_by_time ON ledger_messages (at);",
    // contacts and group chats (see `crate::contacts` and `sqlite_contacts`): who a user is
    // on Telegram, and each group's chat id now (unique: a migrated group's old id is gone).
    "CREATE TABLE contacts (
        user_id INTEGER PRIMARY KEY,
        first_name TEXT NOT NULL,
        username TEXT,
        language_code TEXT,
        bot INTEGER NOT NULL,
        consented_at INTEGER
     );
     CREATE TABLE group_chats (
        group_id INTEGER PRIMARY KEY,
        chat_id INTEGER NOT NULL UNIQUE,
        title TEXT NOT NULL
     );",
    // telegram offsets and sent messages: each bot's next `update_id` (moved only once what
    // an update changed is stored), the Bot API `message_id` of each message we sent (a
    // reply is attributed to its send), and group members as updates showed them
    // (src/store/telegram.rs).
    "CREATE TABLE telegram_offsets (bot TEXT PRIMARY KEY, next_update INTEGER NOT NULL);
     CREATE TABLE telegram_sent (
        bot TEXT NOT NULL,
        chat_id INTEGER NOT NULL,
        message_id INTEGER NOT NULL,
        message INTEGER NOT NULL,
        sent_at INTEGER NOT NULL,
        PRIMARY KEY (bot, chat_id, message_id)
     );
     CREATE TABLE telegram_group_members (
        chat_id INTEGER NOT NULL,
        user_id INTEGER NOT NULL,
        since INTEGER NOT NULL,
        PRIMARY KEY (chat_id, user_id)
     );",
    // groups and members: the Telegram groups a live engine posts to (`crate::store::groups`),
    // and each member's exposure to group posts in the cap ledger — the local day of the
    // latest counted share and the shares counted on it (`crate::ledger::Exposure`).
    "CREATE TABLE groups (
        group_id INTEGER PRIMARY KEY,
        title TEXT NOT NULL,
        utc_offset INTEGER NOT NULL
     );
     CREATE TABLE group_members (
        group_id INTEGER NOT NULL REFERENCES groups (group_id) ON DELETE CASCADE,
        user_id INTEGER NOT NULL,
        PRIMARY KEY (group_id, user_id)
     ) WITHOUT ROWID;
     CREATE TABLE ledger_exposure (
        user_id INTEGER PRIMARY KEY,
        day INTEGER NOT NULL,
        seen INTEGER NOT NULL
     );",
    // time zones (`crate::zone`): a user's, a log line's and a group's IANA zone name. NULL
    // (every older row) means the fixed offset of `utc_offset`; with a name, `utc_offset`
    // is the offset in force at the log line's `at` (users: at the last activity; groups:
    // when written), kept for older readers.
    "ALTER TABLE users ADD COLUMN time_zone TEXT;
     ALTER TABLE log ADD COLUMN time_zone TEXT;
     ALTER TABLE groups ADD COLUMN time_zone TEXT;",
];

/// The schema version this build writes and reads.
pub const SCHEMA_VERSION: usize = MIGRATIONS.len();

/// A CRM store in one SQLite file.
///
/// Writers work in WAL mode; when the last writer closes, the file goes back to a rollback
/// journal, so that a store at rest is one self-contained file that a read-only command can
/// open without creating `-wal`/`-shm` files (and that `simulate --save-state` can rename
/// into place atomically).
#[derive(Debug)]
pub struct SqliteStore {
    path: String,
    /// Opened with [`SqliteStore::open_read_only`]: never written, not even on close.
    read_only: bool,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
pub(super) struct Inner {
    pub(super) conn: Connection,
    users: Vec<UserRecord>,
    log: Vec<LogEntry>,
    /// The first write error, reported again at `flush` so that no loss goes unnoticed.
    failed: Option<String>,
}

fn sql_error(path: &str, e: rusqlite::Error) -> StoreError {
    StoreError::Io { path: path.to_string(), cause: std::io::Error::other(e.to_string()) }
}

fn not_a_store(path: &str, why: &str) -> StoreError {
    StoreError::NotAStore { path: path.to_string(), why: why.to_string() }
}

/// The first bytes of every SQLite 3 database file.
const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// Checks that `path` is an existing, non-empty SQLite file; returns whether its header says
/// WAL mode.
fn check_store_file(path: &Path) -> Result<bool, StoreError> {
    use std::io::Read as _;
    let display = path.display().to_string();
    if !path.exists() {
        return Err(StoreError::Io {
            path: display,
            cause: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no such store (create one with `gavat simulate --save-state`)",
            ),
        });
    }
    if path.is_dir() {
        return Err(not_a_store(&display, "a directory"));
    }
    let mut header = [0u8; 100];
    let mut file = std::fs::File::open(path).map_err(|cause| StoreError::Io { path: display.clone(), cause })?;
    let mut read = 0;
    while read < header.len() {
        match file.read(&mut header[read..]) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(cause) => return Err(StoreError::Io { path: display, cause }),
        }
    }
    if read == 0 {
        return Err(not_a_store(&display, "an empty file"));
    }
    if read < header.len() || &header[..16] != SQLITE_MAGIC {
        return Err(not_a_store(&display, "not a SQLite database"));
    }
    // Bytes 18 and 19: file format read/write versions, 2 for WAL.
    Ok(header[18] == 2 || header[19] == 2)
}

/// The schema version of an open file that must be a gavat store.
fn gavat_schema_version(conn: &Connection, path: &str) -> Result<usize, StoreError> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(|e| sql_error(path, e))?;
    let has_meta: bool = conn
        .query_row("SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta')", [], |r| {
            r.get(0)
        })
        .map_err(|e| sql_error(path, e))?;
    if version <= 0 || !has_meta {
        return Err(not_a_store(path, "a SQLite database without gavat's schema"));
    }
    let version = usize::try_from(version).unwrap_or(usize::MAX);
    if version > SCHEMA_VERSION {
        return Err(StoreError::Io {
            path: path.to_string(),
            cause: std::io::Error::other(format!(
                "schema version {version} is newer than this gavat understands ({SCHEMA_VERSION})"
            )),
        });
    }
    Ok(version)
}

/// Attempts at switching a file into WAL mode, 20 ms apart (5 s, the busy timeout).
const WAL_ATTEMPTS: u32 = 250;

/// Switches the file to WAL mode. Leaving rollback-journal mode needs the file to itself,
/// and SQLite answers "database is locked" at once rather than through the busy handler
/// when another connection is doing the same (two `gavat run` started together on a store
/// at rest): so the switch is tried again, briefly, until the other has done it.
fn enter_wal(conn: &Connection) -> rusqlite::Result<()> {
    let mut attempt = 0;
    loop {
        match conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0)) {
            Ok(_) => return Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if matches!(e.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
                    && attempt < WAL_ATTEMPTS =>
            {
                attempt += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Puts a writer's connection in WAL mode and brings the schema up to date.
///
/// The version is read and the migrations applied inside one `BEGIN IMMEDIATE`
/// transaction, so that two processes opening an old file at once (two `gavat run` sharing
/// a store) migrate it once: the second waits for the write lock, then finds it current.
fn migrate(conn: &Connection, path: &str) -> Result<(), StoreError> {
    let err = |e| sql_error(path, e);
    enter_wal(conn).map_err(err)?;
    conn.pragma_update(None, "synchronous", "NORMAL").map_err(err)?;
    conn.execute_batch("BEGIN IMMEDIATE").map_err(err)?;
    let result = (|| {
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(err)?;
        let version = usize::try_from(version).unwrap_or(usize::MAX);
        if version > SCHEMA_VERSION {
            return Err(StoreError::Io {
                path: path.to_string(),
                cause: std::io::Error::other(format!(
                    "schema version {version} is newer than this gavat understands ({SCHEMA_VERSION})"
                )),
            });
        }
        for migration in MIGRATIONS.iter().skip(version) {
            conn.execute_batch(migration).map_err(err)?;
        }
        conn.pragma_update(None, "user_version", SCHEMA_VERSION as i64).map_err(err)
    })();
    match result {
        Ok(()) => conn.execute_batch("COMMIT").map_err(err),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// Opens `path` for a writer that shares the store's file (the cap ledger of a live
/// engine): creates it if it is missing or empty, refuses a file that is not a gavat store
/// (a directory, another format, another program's database) untouched, and brings the
/// schema up to date. The connection waits up to `busy_timeout` for another writer.
pub(crate) fn open_shared_writer(path: &Path, busy_timeout: std::time::Duration) -> Result<Connection, StoreError> {
    let display = path.display().to_string();
    let existing = match std::fs::metadata(path) {
        Ok(m) => m.is_dir() || m.len() > 0,
        Err(_) => false,
    };
    let conn = if existing {
        check_store_file(path)?;
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(|e| sql_error(&display, e))?;
        // Before the first read: another process may hold the file for a moment.
        conn.busy_timeout(busy_timeout).map_err(|e| sql_error(&display, e))?;
        gavat_schema_version(&conn, &display)?;
        conn
    } else {
        Connection::open(path).map_err(|e| sql_error(&display, e))?
    };
    conn.busy_timeout(busy_timeout).map_err(|e| sql_error(&display, e))?;
    migrate(&conn, &display)?;
    Ok(conn)
}

/// A `file:` URI for `path` with the query `query`, every byte outside the unreserved set
/// percent-encoded.
fn file_uri(path: &Path, query: &str) -> String {
    let mut uri = String::from("file:");
    for &b in path.as_os_str().as_encoded_bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
            uri.push(char::from(b));
        } else {
            uri.push_str(&format!("%{b:02X}"));
        }
    }
    uri.push('?');
    uri.push_str(query);
    uri
}

impl SqliteStore {
    /// Opens (creating if needed) the store at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let display = path.display().to_string();
        let conn = Connection::open(path).map_err(|e| sql_error(&display, e))?;
        SqliteStore::writer(conn, display)
    }

    fn writer(conn: Connection, display: String) -> Result<SqliteStore, StoreError> {
        // Another process writing (a second command on the same store) is waited for.
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(|e| sql_error(&display, e))?;
        let store = SqliteStore {
            path: display,
            read_only: false,
            inner: Mutex::new(Inner { conn, users: Vec::new(), log: Vec::new(), failed: None }),
        };
        store.migrate()?;
        Ok(store)
    }

    /// Opens an existing store for writing; a missing file is an error, not a new store, and
    /// a file that is not a gavat store (empty, not SQLite, another program's database) is
    /// refused untouched.
    pub fn open_existing(path: &Path) -> Result<SqliteStore, StoreError> {
        check_store_file(path)?;
        let display = path.display().to_string();
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(|e| sql_error(&display, e))?;
        // Before the first read: another process may hold the file for a moment.
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(|e| sql_error(&display, e))?;
        gavat_schema_version(&conn, &display)?;
        SqliteStore::writer(conn, display)
    }

    /// Opens an existing store for reading only (`SQLITE_OPEN_READ_ONLY`): the file, its
    /// directory and its modification time are left as they were, so a store the user may
    /// only read can be read. A store at rest in WAL mode (written by an older gavat) with no
    /// `-wal` file is opened `immutable`, since SQLite would otherwise create `-wal` and
    /// `-shm` files beside it; one with a live `-wal` is read through it. A store whose
    /// schema is older than this build's is refused with [`StoreError::NeedsMigration`]: a
    /// read-only open cannot migrate it.
    pub fn open_read_only(path: &Path) -> Result<SqliteStore, StoreError> {
        let wal_at_rest = check_store_file(path)?;
        let display = path.display().to_string();
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
        let live_wal = crate::output::with_suffix(path, "-wal").exists();
        let uri = file_uri(path, if wal_at_rest && !live_wal { "immutable=1" } else { "mode=ro" });
        let conn = Connection::open_with_flags(uri, flags).map_err(|e| sql_error(&display, e))?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(|e| sql_error(&display, e))?;
        let version = gavat_schema_version(&conn, &display)?;
        if version < SCHEMA_VERSION {
            return Err(StoreError::NeedsMigration { path: display, found: version, wanted: SCHEMA_VERSION });
        }
        Ok(SqliteStore {
            path: display,
            read_only: true,
            inner: Mutex::new(Inner { conn, users: Vec::new(), log: Vec::new(), failed: None }),
        })
    }

    /// Checks that `path` may be replaced by a new store: it does not exist, is empty, or is
    /// a gavat store — never another program's file that a mistyped flag names.
    pub fn check_replaceable(path: &Path) -> Result<(), StoreError> {
        match std::fs::metadata(path) {
            Err(_) => return Ok(()),
            Ok(m) if m.is_file() && m.len() == 0 => return Ok(()),
            Ok(_) => {}
        }
        match SqliteStore::open_read_only(path) {
            Ok(_) | Err(StoreError::NeedsMigration { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Makes a finished store at `path` one self-contained file (WAL checkpointed, rollback
    /// journal), ready to be renamed into place. Fails if another connection holds it.
    pub fn seal(path: &Path) -> Result<(), StoreError> {
        let display = path.display().to_string();
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(|e| sql_error(&display, e))?;
        let mode: String =
            conn.query_row("PRAGMA journal_mode = DELETE", [], |r| r.get(0)).map_err(|e| sql_error(&display, e))?;
        if !mode.eq_ignore_ascii_case("delete") {
            return Err(StoreError::Io {
                path: display,
                cause: std::io::Error::other(format!("still in {mode} mode: another process has it open")),
            });
        }
        conn.close().map_err(|(_, e)| sql_error(&display, e))
    }

    /// The file, as shown in errors.
    pub(super) fn path(&self) -> &str {
        &self.path
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(super) fn err(&self, e: rusqlite::Error) -> StoreError {
        sql_error(&self.path, e)
    }

    fn migrate(&self) -> Result<(), StoreError> {
        migrate(&self.lock().conn, &self.path)
    }

    /// The schema version of the open file.
    pub fn schema_version(&self) -> Result<usize, StoreError> {
        let version: i64 =
            self.lock().conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(|e| self.err(e))?;
        Ok(usize::try_from(version).unwrap_or(usize::MAX))
    }

    /// Writes buffered rows in one transaction.
    fn write_buffers(&self, inner: &mut Inner) -> Result<(), StoreError> {
        if inner.users.is_empty() && inner.log.is_empty() {
            return Ok(());
        }
        let users = std::mem::take(&mut inner.users);
        let log = std::mem::take(&mut inner.log);
        let tx = inner.conn.transaction().map_err(|e| self.err(e))?;
        {
            let mut upsert = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO users VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13,
                     ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24)",
                )
                .map_err(|e| self.err(e))?;
            let mut clear = tx.prepare_cached("DELETE FROM segments WHERE user_id = ?1").map_err(|e| self.err(e))?;
            let mut seg =
                tx.prepare_cached("INSERT INTO segments VALUES (?1, ?2, ?3, ?4, 'rules')").map_err(|e| self.err(e))?;
            for u in &users {
                let p = &u.profile;
                let hours = serde_json::to_string(&p.activity.by_local_hour).unwrap_or_default();
                upsert
                    .execute(params![
                        p.id.0 as i64,
                        p.joined_at.secs(),
                        p.zone.offset_at(p.activity.last_active).0,
                        p.bots_followed,
                        p.purchases,
                        p.activity.sessions,
                        hours,
                        p.activity.last_active.secs(),
                        f64::from(p.activity.weekly_sessions),
                        p.responses.received,
                        p.responses.responded,
                        p.responses.recent,
                        p.responses.recent_len,
                        u.caps.opted_out,
                        u.caps.last_sent.map(|t| t.secs()),
                        u.caps.last_send_day,
                        u.caps.sent_on_last_day,
                        u.governing.map(|s| s.as_str()),
                        u.caps_in_force.daily_limit,
                        u.caps_in_force.cooldown_secs,
                        u.caps_in_force.allowed_hours.0,
                        u.caps_in_force.period_days,
                        u.next_send.map(|t| t.secs()),
                        p.zone.iana_name(),
                    ])
                    .map_err(|e| self.err(e))?;
                clear.execute(params![p.id.0 as i64]).map_err(|e| self.err(e))?;
                for s in &u.segments {
                    let reasons = serde_json::to_string(&s.reasons).unwrap_or_default();
                    seg.execute(params![p.id.0 as i64, s.segment.as_str(), f64::from(s.confidence), reasons])
                        .map_err(|e| self.err(e))?;
                }
            }
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO log (kind, at, user_id, utc_offset, group_id, segment, daily_limit, cooldown_secs,
                     allowed_hours, period_days, bot, content, strategy, arm, outcome, time_zone)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
                )
                .map_err(|e| self.err(e))?;
            for e in &log {
                insert
                    .execute(params![
                        kind_name(e.kind),
                        e.at.secs(),
                        e.user.0 as i64,
                        e.utc_offset.0,
                        e.group.map(|g| g.0 as i64),
                        e.segment.map(|s| s.as_str()),
                        e.caps.map(|c| c.daily_limit),
                        e.caps.map(|c| c.cooldown_secs),
                        e.caps.map(|c| c.allowed_hours.0),
                        e.caps.map(|c| c.period_days),
                        e.bot.map(|b| b.0),
                        e.content.map(|c| c.as_str()),
                        &*e.strategy,
                        e.arm.as_deref(),
                        e.outcome.map(SendOutcome::as_str),
                        e.zone.iana_name(),
                    ])
                    .map_err(|e| self.err(e))?;
            }
        }
        tx.commit().map_err(|e| self.err(e))
    }

    fn buffered(&self, push: impl FnOnce(&mut Inner)) -> StoreFuture<()> {
        let mut inner = self.lock();
        push(&mut inner);
        let result = if inner.users.len() + inner.log.len() >= BATCH {
            let r = self.write_buffers(&mut inner);
            if let Err(e) = &r {
                inner.failed.get_or_insert_with(|| e.to_string());
            }
            r
        } else {
            Ok(())
        };
        Box::pin(std::future::ready(result))
    }
}

fn kind_name(kind: LogKind) -> &'static str {
    match kind {
        LogKind::Send => "send",
        LogKind::Response => "response",
        LogKind::Conversion => "conversion",
        LogKind::OptOut => "opt_out",
    }
}

impl Store for SqliteStore {
    fn save_user(&self, record: &UserRecord) -> StoreFuture<()> {
        self.buffered(|inner| inner.users.push(record.clone()))
    }

    fn append(&self, entry: &LogEntry) -> StoreFuture<()> {
        self.buffered(|inner| inner.log.push(entry.clone()))
    }

    fn save_run(&self, run: &RunRecord) -> StoreFuture<()> {
        let inner = self.lock();
        let result = (|| -> Result<(), rusqlite::Error> {
            let tx = inner.conn.unchecked_transaction()?;
            for (key, value) in [
                ("ended_at", run.ended_at.secs().to_string()),
                ("strategy", run.strategy.clone()),
                ("seed", run.seed.map(|s| s.to_string()).unwrap_or_default()),
            ] {
                tx.execute("INSERT OR REPLACE INTO meta VALUES (?1, ?2)", params![key, value])?;
            }
            if let Some(sim) = &run.simulation {
                for (key, value) in [
                    ("users", sim.users.to_string()),
                    ("population_start", sim.population_start.secs().to_string()),
                    ("scenario_name", sim.scenario_name.clone()),
                    ("scenario", sim.scenario_toml.clone()),
                ] {
                    tx.execute("INSERT OR REPLACE INTO meta VALUES (?1, ?2)", params![key, value])?;
                }
            }
            super::strategies::save_in_tx(&tx, run)?;
            tx.execute("DELETE FROM suppressions", [])?;
            for (segment, reason, count) in &run.suppressed {
                tx.execute(
                    "INSERT INTO suppressions VALUES (?1, ?2, ?3)",
                    params![segment.as_str(), reason.as_str(), *count as i64],
                )?;
            }
            tx.commit()
        })();
        Box::pin(std::future::ready(result.map_err(|e| self.err(e))))
    }

    fn flush(&self) -> StoreFuture<()> {
        let mut inner = self.lock();
        let result = self.write_buffers(&mut inner).and_then(|()| match inner.failed.take() {
            Some(first) => Err(StoreError::Io {
                path: self.path.clone(),
                cause: std::io::Error::other(format!("an earlier write failed: {first}")),
            }),
            None => Ok(()),
        });
        Box::pin(std::future::ready(result))
    }
}

/// One user as the store holds them.
#[derive(Debug, Clone, Serialize)]
pub struct StoredUser {
    /// Profile.
    #[serde(skip)]
    pub profile: UserProfile,
    /// Cap counters.
    #[serde(skip)]
    pub caps: CapState,
    /// Segments, highest confidence first.
    pub segments: Vec<Explained>,
    /// Who assigned the segments: `rules` or `llm`.
    pub segmented_by: Option<String>,
    /// The governing segment.
    pub governing: Option<Segment>,
    /// Caps in force.
    #[serde(skip)]
    pub caps_in_force: Caps,
    /// Next planned send.
    pub next_send: Option<Timestamp>,
}

/// New segments for one user (from `gavat segment`).
#[derive(Debug, Clone)]
pub struct SegmentUpdate {
    /// The user.
    pub user: UserId,
    /// Segments, highest confidence first.
    pub segments: Vec<Explained>,
    /// The governing segment among them.
    pub governing: Option<Segment>,
    /// Who decided: `rules` or `llm`.
    pub source: &'static str,
}

impl crate::llm::LlmCache for SqliteStore {
    type Error = StoreError;

    fn cache_get(&self, key: &str, now: i64) -> Result<Option<String>, StoreError> {
        let inner = self.lock();
        inner
            .conn
            .query_row("SELECT value FROM llm_cache WHERE key = ?1 AND expires_at > ?2", params![key, now], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| self.err(e))
    }

    fn cache_put(&self, key: &str, value: &str, expires_at: i64) -> Result<(), StoreError> {
        let inner = self.lock();
        inner
            .conn
            .execute("INSERT OR REPLACE INTO llm_cache VALUES (?1, ?2, ?3)", params![key, value, expires_at])
            .map(|_| ())
            .map_err(|e| self.err(e))
    }
}

/// One line of the log, as read back.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredEvent {
    /// `send`, `response`, `conversion`, `opt_out`.
    pub kind: String,
    /// When.
    pub at: Timestamp,
    /// Governing segment.
    pub segment: Option<String>,
    /// Group, for group posts.
    pub group: Option<i64>,
    /// Content of a send.
    pub content: Option<String>,
    /// `delivered` / `unknown` for sends.
    pub outcome: Option<String>,
}

/// One user's sends and replies in the log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct UserLogCounts {
    /// Messages sent to the user (direct and through group posts).
    pub sent: u64,
    /// Replies.
    pub responses: u64,
}

/// Per-segment counts from the log in a time window.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SegmentCounts {
    /// Users governed by the segment.
    pub users: u64,
    /// Sends.
    pub sent: u64,
    /// Replies.
    pub responses: u64,
    /// Purchases.
    pub conversions: u64,
    /// Opt-outs.
    pub opt_outs: u64,
}

impl SqliteStore {
    /// The store's present: the engine time at the end of the last saved run.
    pub fn ended_at(&self) -> Result<Option<Timestamp>, StoreError> {
        let inner = self.lock();
        let value: Option<String> = inner
            .conn
            .query_row("SELECT value FROM meta WHERE key = 'ended_at'", [], |r| r.get(0))
            .optional()
            .map_err(|e| self.err(e))?;
        Ok(value.and_then(|v| v.parse().ok()).map(Timestamp))
    }

    /// The strategy set the last run used.
    pub fn strategy_name(&self) -> Result<Option<String>, StoreError> {
        let inner = self.lock();
        inner
            .conn
            .query_row("SELECT value FROM meta WHERE key = 'strategy'", [], |r| r.get(0))
            .optional()
            .map_err(|e| self.err(e))
    }

    /// How many users the store holds.
    pub fn user_count(&self) -> Result<u64, StoreError> {
        let inner = self.lock();
        inner
            .conn
            .query_row("SELECT COUNT(*) FROM users", [], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(|e| self.err(e))
    }

    /// One user, or `None` if unknown.
    pub fn user(&self, id: UserId) -> Result<Option<StoredUser>, StoreError> {
        let inner = self.lock();
        let mut stmt = inner.conn.prepare_cached("SELECT * FROM users WHERE id = ?1").map_err(|e| self.err(e))?;
        let Some(mut user) = stmt.query_row(params![id.0 as i64], row_to_user).optional().map_err(|e| self.err(e))?
        else {
            return Ok(None);
        };
        (user.segments, user.segmented_by) = segments_of(&inner.conn, id).map_err(|e| self.err(e))?;
        Ok(Some(user))
    }

    /// Calls `each` for every user, in id order (for re-segmentation).
    pub fn for_each_user(&self, mut each: impl FnMut(StoredUser)) -> Result<(), StoreError> {
        let inner = self.lock();
        let mut stmt = inner.conn.prepare("SELECT * FROM users ORDER BY id").map_err(|e| self.err(e))?;
        let rows = stmt.query_map([], row_to_user).map_err(|e| self.err(e))?;
        for row in rows {
            let mut user = row.map_err(|e| self.err(e))?;
            (user.segments, user.segmented_by) = segments_of(&inner.conn, user.profile.id).map_err(|e| self.err(e))?;
            each(user);
        }
        Ok(())
    }

    /// Replaces users' segments (from a re-segmentation), in one transaction.
    pub fn replace_segments(&self, updates: &[SegmentUpdate]) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let tx = inner.conn.transaction().map_err(|e| self.err(e))?;
        {
            let mut clear = tx.prepare_cached("DELETE FROM segments WHERE user_id = ?1").map_err(|e| self.err(e))?;
            let mut insert =
                tx.prepare_cached("INSERT INTO segments VALUES (?1, ?2, ?3, ?4, ?5)").map_err(|e| self.err(e))?;
            let mut governing =
                tx.prepare_cached("UPDATE users SET governing = ?2 WHERE id = ?1").map_err(|e| self.err(e))?;
            for u in updates {
                clear.execute(params![u.user.0 as i64]).map_err(|e| self.err(e))?;
                for s in &u.segments {
                    let reasons = serde_json::to_string(&s.reasons).unwrap_or_default();
                    insert
                        .execute(params![
                            u.user.0 as i64,
                            s.segment.as_str(),
                            f64::from(s.confidence),
                            reasons,
                            u.source
                        ])
                        .map_err(|e| self.err(e))?;
                }
                governing
                    .execute(params![u.user.0 as i64, u.governing.map(|s| s.as_str())])
                    .map_err(|e| self.err(e))?;
            }
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// The value of a `meta` key, creating it with `make` the first time.
    pub fn meta_get_or_insert(&self, key: &str, make: impl FnOnce() -> String) -> Result<String, StoreError> {
        let inner = self.lock();
        let existing: Option<String> = inner
            .conn
            .query_row("SELECT value FROM meta WHERE key = ?1", params![key], |r| r.get(0))
            .optional()
            .map_err(|e| self.err(e))?;
        if let Some(value) = existing {
            return Ok(value);
        }
        let value = make();
        inner.conn.execute("INSERT INTO meta VALUES (?1, ?2)", params![key, value]).map_err(|e| self.err(e))?;
        Ok(value)
    }

    /// The user's last `limit` log entries, newest first.
    pub fn recent_events(&self, id: UserId, limit: usize) -> Result<Vec<StoredEvent>, StoreError> {
        let inner = self.lock();
        let mut stmt = inner
            .conn
            .prepare_cached(
                "SELECT kind, at, segment, group_id, content, outcome FROM log WHERE user_id = ?1
                 ORDER BY at DESC, id DESC LIMIT ?2",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![id.0 as i64, limit as i64], |r| {
                Ok(StoredEvent {
                    kind: r.get(0)?,
                    at: Timestamp(r.get(1)?),
                    segment: r.get(2)?,
                    group: r.get(3)?,
                    content: r.get(4)?,
                    outcome: r.get(5)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// How many messages the log records sent to the user and how many replies from them:
    /// what happened during the saved run, apart from the history the profile started with.
    pub fn user_log_counts(&self, id: UserId) -> Result<UserLogCounts, StoreError> {
        let inner = self.lock();
        inner
            .conn
            .query_row(
                "SELECT COALESCE(SUM(kind = 'send'), 0), COALESCE(SUM(kind = 'response'), 0) FROM log
                 WHERE user_id = ?1",
                params![id.0 as i64],
                |r| Ok(UserLogCounts { sent: r.get::<_, i64>(0)? as u64, responses: r.get::<_, i64>(1)? as u64 }),
            )
            .map_err(|e| self.err(e))
    }

    /// Per-segment counts of the log since `since` (all of it with `None`), and the users each
    /// segment governs now.
    pub fn segment_counts(&self, since: Option<Timestamp>) -> Result<Vec<(Segment, SegmentCounts)>, StoreError> {
        let inner = self.lock();
        let mut out: Vec<(Segment, SegmentCounts)> =
            Segment::ALL.iter().map(|s| (*s, SegmentCounts::default())).collect();
        let find = |name: &str| Segment::ALL.iter().position(|s| s.as_str() == name);
        let mut stmt = inner
            .conn
            .prepare(
                "SELECT segment, kind, COUNT(*) FROM log WHERE at >= ?1 AND segment IS NOT NULL GROUP BY segment, kind",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![since.map_or(i64::MIN, |t| t.secs())], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?))
            })
            .map_err(|e| self.err(e))?;
        for row in rows {
            let (segment, kind, n) = row.map_err(|e| self.err(e))?;
            let Some(i) = find(&segment) else { continue };
            let c = &mut out[i].1;
            match kind.as_str() {
                "send" => c.sent += n as u64,
                "response" => c.responses += n as u64,
                "conversion" => c.conversions += n as u64,
                "opt_out" => c.opt_outs += n as u64,
                _ => {}
            }
        }
        let mut stmt = inner
            .conn
            .prepare("SELECT governing, COUNT(*) FROM users WHERE governing IS NOT NULL GROUP BY governing")
            .map_err(|e| self.err(e))?;
        let rows =
            stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))).map_err(|e| self.err(e))?;
        for row in rows {
            let (segment, n) = row.map_err(|e| self.err(e))?;
            if let Some(i) = find(&segment) {
                out[i].1.users = n as u64;
            }
        }
        Ok(out)
    }

    /// The log's activity per bucket of `bucket_secs` seconds from `since` (see
    /// [`super::CrmReader::activity`]): one `GROUP BY` over the log, its rows found through
    /// the `log_by_time` index when `since` is given (O(entries since `since`), plus a sort
    /// of the groups — a handful per bucket).
    pub fn activity(
        &self,
        bucket_secs: i64,
        since: Option<Timestamp>,
    ) -> Result<Vec<super::ActivityBucket>, StoreError> {
        super::crm::check_bucket(bucket_secs)?;
        let inner = self.lock();
        // The bucket's start is `at` less its remainder by the bucket, taken positive for
        // times before the epoch (SQLite's `%` keeps the dividend's sign), as `rem_euclid`.
        let mut stmt = inner
            .conn
            .prepare(
                "SELECT at - ((at % ?1) + ?1) % ?1 AS bucket, kind, outcome, COUNT(*) FROM log WHERE at >= ?2
                 GROUP BY bucket, kind, outcome ORDER BY bucket",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![bucket_secs, since.map_or(i64::MIN, |t| t.secs())], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, Option<String>>(2)?, r.get::<_, i64>(3)?))
            })
            .map_err(|e| self.err(e))?;
        let mut out: Vec<super::ActivityBucket> = Vec::new();
        for row in rows {
            let (start, kind, outcome, n) = row.map_err(|e| self.err(e))?;
            let kind = match kind.as_str() {
                "send" => LogKind::Send,
                "response" => LogKind::Response,
                "conversion" => LogKind::Conversion,
                "opt_out" => LogKind::OptOut,
                other => return Err(self.corrupt_log("kind", other)),
            };
            let outcome = match outcome.as_deref() {
                None => None,
                Some("delivered") => Some(SendOutcome::Delivered),
                Some("unknown") => Some(SendOutcome::Unknown),
                Some(other) => return Err(self.corrupt_log("outcome", other)),
            };
            if out.last().is_none_or(|b| b.start.secs() != start) {
                out.push(super::ActivityBucket { start: Timestamp(start), ..Default::default() });
            }
            if let Some(bucket) = out.last_mut() {
                bucket.add(kind, outcome, n.max(0) as u64);
            }
        }
        Ok(out)
    }

    /// Sends held back, by segment and reason, as of the last run.
    pub fn suppressions(&self) -> Result<Vec<(String, String, u64)>, StoreError> {
        let inner = self.lock();
        let mut stmt = inner
            .conn
            .prepare("SELECT segment, reason, count FROM suppressions ORDER BY segment, reason")
            .map_err(|e| self.err(e))?;
        let rows =
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? as u64))).map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// Planned sends: per governing segment, how many are queued and how many are due by `by`.
    pub fn queue(&self, by: Timestamp) -> Result<Vec<(String, u64, u64)>, StoreError> {
        let inner = self.lock();
        let mut stmt = inner
            .conn
            .prepare(
                "SELECT COALESCE(governing, '-'), COUNT(*), SUM(next_send_at <= ?1) FROM users
                 WHERE next_send_at IS NOT NULL AND opted_out = 0 GROUP BY governing ORDER BY governing",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![by.secs()], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64, r.get::<_, i64>(2)? as u64)))
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// Users opted out.
    pub fn opted_out_count(&self) -> Result<u64, StoreError> {
        let inner = self.lock();
        inner
            .conn
            .query_row("SELECT COUNT(*) FROM users WHERE opted_out = 1", [], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(|e| self.err(e))
    }

    /// The users holding `segment` with at least `min_confidence`, highest first.
    pub fn segment_members(
        &self,
        segment: Segment,
        min_confidence: f32,
        limit: usize,
    ) -> Result<Vec<(UserId, f32, Vec<String>)>, StoreError> {
        let inner = self.lock();
        let mut stmt = inner
            .conn
            .prepare(
                "SELECT user_id, confidence, reasons FROM segments WHERE segment = ?1 AND confidence >= ?2
                 ORDER BY confidence DESC, user_id LIMIT ?3",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![segment.as_str(), f64::from(min_confidence), limit as i64], |r| {
                let reasons: String = r.get(2)?;
                Ok((
                    UserId(r.get::<_, i64>(0)? as u64),
                    r.get::<_, f64>(1)? as f32,
                    serde_json::from_str(&reasons).map_err(|e| corrupt("segments.reasons", e))?,
                ))
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }
}

impl Drop for SqliteStore {
    /// A writer leaves the store at rest as one file in rollback-journal mode (see the type's
    /// doc). While another connection has it open that is not possible and not needed: the
    /// last one to close does it, or SQLite reads the WAL as usual.
    fn drop(&mut self) {
        if self.read_only {
            return;
        }
        let inner = self.lock();
        if inner.conn.busy_timeout(std::time::Duration::ZERO).is_ok() {
            let _ = inner.conn.query_row("PRAGMA journal_mode = DELETE", [], |r| r.get::<_, String>(0));
        }
    }
}

/// A value the store holds that this build cannot read: an error, never a silent default.
fn corrupt(column: &str, what: impl std::fmt::Display) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, format!("column {column}: {what}").into())
}

/// A row's zone: its `time_zone` name, or (NULL, or a store from before the column was
/// added, opened read-only) the fixed offset of its `utc_offset`.
pub(super) fn zone_of_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Zone> {
    let name: Option<String> = match r.get("time_zone") {
        Ok(name) => name,
        Err(rusqlite::Error::InvalidColumnName(_)) => None,
        Err(e) => return Err(e),
    };
    Zone::from_parts(name.as_deref(), UtcOffset(r.get("utc_offset")?)).map_err(|e| corrupt("time_zone", e))
}

pub(super) fn row_to_user(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredUser> {
    let hours: String = r.get("by_local_hour")?;
    let by_local_hour: [u16; 24] = serde_json::from_str(&hours).map_err(|e| corrupt("by_local_hour", e))?;
    let profile = UserProfile {
        id: UserId(r.get::<_, i64>("id")? as u64),
        joined_at: Timestamp(r.get("joined_at")?),
        zone: zone_of_row(r)?,
        activity: ActivitySummary {
            by_local_hour,
            sessions: r.get("sessions")?,
            last_active: Timestamp(r.get("last_active")?),
            weekly_sessions: r.get::<_, f64>("weekly_sessions")? as f32,
        },
        bots_followed: r.get("bots_followed")?,
        purchases: r.get("purchases")?,
        responses: ResponseHistory {
            received: r.get("received")?,
            responded: r.get("responded")?,
            recent: r.get("recent")?,
            recent_len: r.get("recent_len")?,
        },
    };
    let caps = CapState {
        opted_out: r.get("opted_out")?,
        last_sent: r.get::<_, Option<i64>>("last_sent")?.map(Timestamp),
        last_send_day: r.get("last_send_day")?,
        sent_on_last_day: r.get("sent_on_last_day")?,
    };
    let governing = match r.get::<_, Option<String>>("governing")? {
        Some(name) => Some(name.parse::<Segment>().map_err(|e| corrupt("governing", e))?),
        None => None,
    };
    Ok(StoredUser {
        profile,
        caps,
        segments: Vec::new(),
        segmented_by: None,
        governing,
        caps_in_force: Caps {
            daily_limit: r.get("daily_limit")?,
            cooldown_secs: r.get("cooldown_secs")?,
            allowed_hours: HourMask(r.get("allowed_hours")?),
            period_days: r.get("period_days")?,
        },
        next_send: r.get::<_, Option<i64>>("next_send_at")?.map(Timestamp),
    })
}

/// A user's segments, and who assigned them.
fn segments_of(conn: &Connection, id: UserId) -> rusqlite::Result<(Vec<Explained>, Option<String>)> {
    let mut stmt = conn.prepare_cached(
        "SELECT segment, confidence, reasons, source FROM segments WHERE user_id = ?1
         ORDER BY confidence DESC, segment",
    )?;
    let rows = stmt.query_map(params![id.0 as i64], |r| {
        let name: String = r.get(0)?;
        let reasons: String = r.get(2)?;
        Ok((name, r.get::<_, f64>(1)?, reasons, r.get::<_, String>(3)?))
    })?;
    let mut out = Vec::new();
    let mut by = None;
    for row in rows {
        let (name, confidence, reasons, source) = row?;
        by.get_or_insert(source);
        out.push(Explained {
            segment: name.parse::<Segment>().map_err(|e| corrupt("segments.segment", e))?,
            confidence: confidence as f32,
            reasons: serde_json::from_str(&reasons).map_err(|e| corrupt("segments.reasons", e))?,
        });
    }
    Ok((out, by))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{BotId, ContentKind};

    fn record(id: u64) -> UserRecord {
        let profile = UserProfile {
            id: UserId(id),
            joined_at: Timestamp(1_000),
            zone: if id.is_multiple_of(2) { Zone::fixed(180) } else { "Asia/Kathmandu".parse().expect("a zone") },
            activity: ActivitySummary { sessions: 3, last_active: Timestamp(5_000), ..Default::default() },
            bots_followed: 2,
            purchases: 1,
            responses: ResponseHistory { received: 5, responded: 2, recent: 0b10010, recent_len: 5 },
        };
        UserRecord {
            profile,
            caps: CapState {
                opted_out: false,
                last_sent: Some(Timestamp(4_000)),
                last_send_day: 0,
                sent_on_last_day: 1,
            },
            segments: vec![Explained {
                segment: Segment::WarmLead,
                confidence: 0.6,
                reasons: vec!["answered 2 of 5".into()],
            }],
            governing: Some(Segment::WarmLead),
            caps_in_force: Caps {
                daily_limit: 2,
                cooldown_secs: 43_200,
                allowed_hours: HourMask::window(9, 21),
                period_days: 2,
            },
            next_send: Some(Timestamp(90_000)),
        }
    }

    /// What is written is read back after reopening the file, and the schema is versioned.
    #[test]
    fn round_trips_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("crm.db");
        {
            let store = SqliteStore::open(&path).unwrap();
            assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
            futures::executor::block_on(store.save_user(&record(7))).unwrap();
            let entry = LogEntry {
                kind: LogKind::Send,
                at: Timestamp(4_000),
                user: UserId(7),
                utc_offset: UtcOffset(345),
                zone: "Asia/Kathmandu".parse().expect("a zone"),
                group: None,
                segment: Some(Segment::WarmLead),
                caps: Some(record(7).caps_in_force.into()),
                bot: Some(BotId(0)),
                content: Some(ContentKind::Offer),
                strategy: "defaults-v1".into(),
                arm: None,
                outcome: Some(SendOutcome::Delivered),
            };
            futures::executor::block_on(store.append(&entry)).unwrap();
            let run = RunRecord {
                ended_at: Timestamp(100_000),
                strategy: "defaults-v1".into(),
                seed: Some(3),
                suppressed: vec![(Segment::WarmLead, SuppressReason::Cooldown, 4)],
                strategies: crate::config::StrategyBook::defaults().iter().cloned().collect(),
                strategy_changes: Vec::new(),
                simulation: None,
            };
            futures::executor::block_on(store.save_run(&run)).unwrap();
            futures::executor::block_on(store.flush()).unwrap();
        }
        let store = SqliteStore::open_existing(&path).unwrap();
        let user = store.user(UserId(7)).unwrap().unwrap();
        assert_eq!(user.profile, record(7).profile);
        assert_eq!(user.caps, record(7).caps);
        assert_eq!(user.segments, record(7).segments);
        assert_eq!(user.caps_in_force, record(7).caps_in_force);
        assert_eq!(user.next_send, Some(Timestamp(90_000)));
        assert_eq!(store.recent_events(UserId(7), 10).unwrap()[0].content.as_deref(), Some("offer"));
        assert_eq!(store.ended_at().unwrap(), Some(Timestamp(100_000)));
        assert_eq!(store.suppressions().unwrap(), vec![("WARM_LEAD".into(), "cooldown".into(), 4)]);
        assert!(store.user(UserId(8)).unwrap().is_none());
        assert!(SqliteStore::open_existing(&dir.path().join("missing.db")).is_err());
    }

    /// A store of schema version 2 (before the cap ledger) gains the ledger's tables when a
    /// writer opens it, its data intact; two processes opening it at once migrate it once.
    #[test]
    fn an_older_store_is_migrated_once() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("v2.db");
        {
            let conn = Connection::open(&path)?;
            conn.execute_batch(&format!("{}; {};", MIGRATIONS[0], MIGRATIONS[1]))?;
            conn.execute_batch("INSERT INTO meta VALUES ('seed', '3'); PRAGMA user_version = 2;")?;
        }
        let openers: Vec<_> = (0..2)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || open_shared_writer(&path, std::time::Duration::from_secs(5)).map(drop))
            })
            .collect();
        for opener in openers {
            opener.join().expect("opener finished")?;
        }
        let store = SqliteStore::open_existing(&path)?;
        assert_eq!(store.schema_version()?, SCHEMA_VERSION);
        assert_eq!(store.meta_get_or_insert("seed", String::new)?, "3");
        let tables: i64 = store.lock().conn.query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name IN ('ledger_users', 'ledger_messages')",
            [],
            |r| r.get(0),
        )?;
        assert_eq!(tables, 2);
        Ok(())
    }

    /// A read-only open cannot write: a write through it fails, the file is unchanged, and no
    /// side file appears, even for a store left in WAL mode by an older build.
    #[test]
    fn read_only_opens_never_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("crm.db");
        {
            let store = SqliteStore::open(&path).unwrap();
            futures::executor::block_on(store.save_user(&record(7))).unwrap();
            futures::executor::block_on(store.flush()).unwrap();
        }
        for wal_at_rest in [false, true] {
            if wal_at_rest {
                let conn = Connection::open(&path).unwrap();
                conn.pragma_update(None, "journal_mode", "WAL").unwrap();
                conn.close().unwrap();
            }
            let before = std::fs::read(&path).unwrap();
            let store = SqliteStore::open_read_only(&path).unwrap();
            assert!(store.user(UserId(7)).unwrap().is_some());
            assert!(store.meta_get_or_insert("k", || "v".into()).is_err(), "writes are refused");
            drop(store);
            assert_eq!(std::fs::read(&path).unwrap(), before);
            assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no -wal/-shm (WAL at rest: {wal_at_rest})");
        }
    }

    /// Empty files, other files and other programs' databases are "not a gavat store" for
    /// every open of an existing store; an older schema is a migration a read-only open
    /// cannot do.
    #[test]
    fn files_that_are_not_gavat_stores_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "").unwrap();
        let text = dir.path().join("text");
        std::fs::write(&text, "x".repeat(200)).unwrap();
        let foreign = dir.path().join("foreign");
        Connection::open(&foreign).unwrap().execute_batch("CREATE TABLE t (x);").unwrap();
        for file in [&empty, &text, &foreign] {
            for result in [SqliteStore::open_read_only(file).err(), SqliteStore::open_existing(file).err()] {
                assert!(matches!(result, Some(StoreError::NotAStore { .. })), "{file:?}: {result:?}");
            }
        }
        assert!(matches!(SqliteStore::open_read_only(dir.path()).err(), Some(StoreError::NotAStore { .. })));
        assert!(SqliteStore::check_replaceable(&empty).is_ok());
        assert!(SqliteStore::check_replaceable(&dir.path().join("missing")).is_ok());
        assert!(SqliteStore::check_replaceable(&text).is_err());
        let old = dir.path().join("old.db");
        drop(SqliteStore::open(&old).unwrap());
        Connection::open(&old).unwrap().pragma_update(None, "user_version", 1).unwrap();
        assert!(matches!(SqliteStore::open_read_only(&old).err(), Some(StoreError::NeedsMigration { found: 1, .. })));
        assert!(SqliteStore::check_replaceable(&old).is_ok());
    }
}
