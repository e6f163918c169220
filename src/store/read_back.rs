//! Reading the SQLite store back: the log by time range and by user, a page at a time
//! ([`EventLog`]), and every user with their cap state ([`UserRepository`]).
//!
//! Pages are keyset-paginated on `(at, id)`: each page is one indexed range scan
//! (`log_by_time`, or `log_by_user` for one user; both order ties by row id), so reading a
//! page costs the same at the end of a ten-million-row log as at its start.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use rusqlite::params;

use crate::domain::{BotId, ContentKind, GroupId, HourMask, Segment, SendOutcome, Timestamp, UserId, UtcOffset, Zone};

use super::sqlite::row_to_user;
use super::{
    EventCursor, EventLog, EventPage, EventQuery, LogEntry, LogKind, LoggedCaps, SavedSimulation, SimulationMeta,
    SqliteStore, StoreError, UserRepository, UserState,
};

/// One `log` row as SQLite holds it, before its names are checked.
struct RawEntry {
    id: i64,
    kind: String,
    at: i64,
    user: i64,
    utc_offset: i32,
    group: Option<i64>,
    segment: Option<String>,
    caps: (Option<u32>, Option<i64>, Option<u32>, Option<i64>),
    bot: Option<u32>,
    content: Option<String>,
    strategy: String,
    arm: Option<String>,
    outcome: Option<String>,
    time_zone: Option<String>,
}

const LOG_COLUMNS: &str = "id, kind, at, user_id, utc_offset, group_id, segment, daily_limit, cooldown_secs, \
                           allowed_hours, period_days, bot, content, strategy, arm, outcome, time_zone";

/// The columns of a store from before time zones (read-only opens do not migrate): no
/// `time_zone`, every line a fixed offset.
const LOG_COLUMNS_BEFORE_ZONES: &str = "id, kind, at, user_id, utc_offset, group_id, segment, daily_limit, \
                                        cooldown_secs, allowed_hours, period_days, bot, content, strategy, arm, \
                                        outcome, NULL";

fn raw_entry(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawEntry> {
    Ok(RawEntry {
        id: r.get(0)?,
        kind: r.get(1)?,
        at: r.get(2)?,
        user: r.get(3)?,
        utc_offset: r.get(4)?,
        group: r.get(5)?,
        segment: r.get(6)?,
        caps: (r.get(7)?, r.get(8)?, r.get(9)?, r.get(10)?),
        bot: r.get(11)?,
        content: r.get(12)?,
        strategy: r.get(13)?,
        arm: r.get(14)?,
        outcome: r.get(15)?,
        time_zone: r.get(16)?,
    })
}

impl SqliteStore {
    /// Whether the `log` table has the `time_zone` column (a store opened read-only keeps
    /// the schema it was written with).
    fn log_has_time_zone(&self) -> bool {
        let inner = self.lock();
        inner
            .conn
            .query_row("SELECT COUNT(*) FROM pragma_table_info('log') WHERE name = 'time_zone'", [], |r| {
                r.get::<_, i64>(0)
            })
            .is_ok_and(|n| n > 0)
    }

    pub(super) fn corrupt_log(&self, column: &'static str, value: &str) -> StoreError {
        StoreError::Corrupt { path: self.path().to_string(), table: "log", column, value: value.to_string() }
    }

    /// Checks the names in a raw row and builds the entry the engine appended.
    fn entry_from_raw(&self, raw: RawEntry) -> Result<LogEntry, StoreError> {
        let kind = match raw.kind.as_str() {
            "send" => LogKind::Send,
            "response" => LogKind::Response,
            "conversion" => LogKind::Conversion,
            "opt_out" => LogKind::OptOut,
            other => return Err(self.corrupt_log("kind", other)),
        };
        let segment = match raw.segment {
            Some(name) => Some(name.parse::<Segment>().map_err(|_| self.corrupt_log("segment", &name))?),
            None => None,
        };
        let content = match raw.content {
            Some(name) => Some(
                ContentKind::ALL
                    .into_iter()
                    .find(|c| c.as_str() == name)
                    .ok_or_else(|| self.corrupt_log("content", &name))?,
            ),
            None => None,
        };
        // The outcomes the engine writes.
        let outcome = match raw.outcome.as_deref() {
            None => None,
            Some("delivered") => Some(SendOutcome::Delivered),
            Some("unknown") => Some(SendOutcome::Unknown),
            Some(other) => return Err(self.corrupt_log("outcome", other)),
        };
        let caps = match raw.caps {
            (Some(daily_limit), Some(cooldown_secs), Some(hours), Some(period_days)) => {
                Some(LoggedCaps { daily_limit, cooldown_secs, allowed_hours: HourMask(hours), period_days })
            }
            (None, None, None, None) => None,
            _ => return Err(self.corrupt_log("daily_limit", "caps only partly recorded")),
        };
        let zone = Zone::from_parts(raw.time_zone.as_deref(), UtcOffset(raw.utc_offset))
            .map_err(|_| self.corrupt_log("time_zone", raw.time_zone.as_deref().unwrap_or_default()))?;
        Ok(LogEntry {
            kind,
            at: Timestamp(raw.at),
            user: UserId(raw.user as u64),
            utc_offset: UtcOffset(raw.utc_offset),
            zone,
            group: raw.group.map(|g| GroupId(g as u64)),
            segment,
            caps,
            bot: raw.bot.map(BotId),
            content,
            strategy: Arc::from(raw.strategy),
            arm: raw.arm.map(Arc::from),
            outcome,
        })
    }
}

impl SqliteStore {
    /// The saved simulation this store can be continued from; [`StoreError::NotResumable`]
    /// naming what is missing for a store that holds no simulation, or one saved by a gavat
    /// that did not record its population.
    pub fn saved_simulation(&self) -> Result<SavedSimulation, StoreError> {
        let meta: BTreeMap<String, String> = {
            let inner = self.lock();
            let mut stmt = inner.conn.prepare("SELECT key, value FROM meta").map_err(|e| self.err(e))?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).map_err(|e| self.err(e))?;
            rows.collect::<Result<_, _>>().map_err(|e| self.err(e))?
        };
        let not_resumable = |why: String| StoreError::NotResumable { path: self.path().to_string(), why };
        let text = |key: &str| {
            meta.get(key).filter(|v| !v.is_empty()).ok_or_else(|| {
                not_resumable(format!(
                    "no `{key}` in its meta table (it was not saved by `gavat simulate --save-state`, or by an \
                     older gavat)"
                ))
            })
        };
        let number = |key: &str| {
            text(key).and_then(|v| v.parse::<i64>().map_err(|_| not_resumable(format!("meta `{key}` is {v:?}"))))
        };
        let seed = text("seed")?;
        Ok(SavedSimulation {
            ended_at: Timestamp(number("ended_at")?),
            seed: seed.parse().map_err(|_| not_resumable(format!("meta `seed` is {seed:?}")))?,
            meta: SimulationMeta {
                users: u64::try_from(number("users")?).map_err(|_| not_resumable("meta `users` < 0".into()))?,
                population_start: Timestamp(number("population_start")?),
                scenario_name: text("scenario_name")?.clone(),
                scenario_toml: text("scenario")?.clone(),
            },
        })
    }

    /// Writes a consistent copy of the whole store to `path`, which must not exist or be
    /// empty (`VACUUM INTO`: works on a read-only open and sees a live WAL, unlike copying
    /// the file).
    pub fn copy_to(&self, path: &Path) -> Result<(), StoreError> {
        let target = path.to_str().ok_or_else(|| StoreError::Io {
            path: path.display().to_string(),
            cause: std::io::Error::other("the path is not UTF-8"),
        })?;
        let inner = self.lock();
        inner.conn.execute("VACUUM INTO ?1", params![target]).map(|_| ()).map_err(|e| StoreError::Io {
            path: path.display().to_string(),
            cause: std::io::Error::other(format!("copying {} here: {e}", self.path())),
        })
    }
}

impl EventLog for SqliteStore {
    fn page(&self, query: &EventQuery, after: Option<EventCursor>, limit: usize) -> Result<EventPage, StoreError> {
        if limit == 0 || query.from >= query.to {
            return Ok(EventPage { entries: Vec::new(), next: None });
        }
        // Past the cursor: a later second, or the cursor's second and a later row.
        let (from, (cursor_at, cursor_seq)) = match after {
            Some(c) => (query.from.max(c.at), (c.at.secs(), c.seq)),
            None => (query.from, (i64::MIN, i64::MIN)),
        };
        let by_user = if query.user.is_some() { "AND user_id = ?5" } else { "AND ?5 IS NULL" };
        let columns = if self.log_has_time_zone() { LOG_COLUMNS } else { LOG_COLUMNS_BEFORE_ZONES };
        let sql = format!(
            "SELECT {columns} FROM log WHERE at >= ?1 AND at < ?2 AND (at > ?3 OR id > ?4) {by_user}
             ORDER BY at, id LIMIT ?6"
        );
        let raws = {
            let inner = self.lock();
            let mut stmt = inner.conn.prepare_cached(&sql).map_err(|e| self.err(e))?;
            let rows = stmt
                .query_map(
                    params![
                        from.secs(),
                        query.to.secs(),
                        cursor_at,
                        cursor_seq,
                        query.user.map(|u| u.0 as i64),
                        i64::try_from(limit).unwrap_or(i64::MAX)
                    ],
                    raw_entry,
                )
                .map_err(|e| self.err(e))?;
            rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))?
        };
        let next = match raws.last() {
            Some(last) if raws.len() == limit => Some(EventCursor { at: Timestamp(last.at), seq: last.id }),
            _ => None,
        };
        let entries = raws.into_iter().map(|raw| self.entry_from_raw(raw)).collect::<Result<Vec<_>, _>>()?;
        Ok(EventPage { entries, next })
    }
}

impl UserRepository for SqliteStore {
    fn count_users(&self) -> Result<u64, StoreError> {
        self.user_count()
    }

    fn users_after(&self, after: Option<UserId>, limit: usize) -> Result<Vec<UserState>, StoreError> {
        let inner = self.lock();
        let mut stmt = inner
            .conn
            .prepare_cached("SELECT * FROM users WHERE id > ?1 ORDER BY id LIMIT ?2")
            .map_err(|e| self.err(e))?;
        let after = after.map_or(-1, |id| i64::try_from(id.0).unwrap_or(i64::MAX));
        let rows = stmt
            .query_map(params![after, i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
                row_to_user(r).map(|u| UserState { profile: u.profile, caps: u.caps })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use futures::executor::block_on;

    use super::*;
    use crate::domain::{ActivitySummary, Caps, ResponseHistory, UserProfile};
    use crate::policy::CapState;
    use crate::store::{Store, UserRecord};

    fn entry(kind: LogKind, at: i64, user: u64) -> LogEntry {
        let send = kind == LogKind::Send;
        LogEntry {
            kind,
            at: Timestamp(at),
            user: UserId(user),
            utc_offset: UtcOffset(-300),
            // User 1 in an IANA zone (its name round-trips), the others at a fixed offset.
            zone: if user == 1 { "America/New_York".parse().expect("a zone") } else { Zone::fixed(-300) },
            group: (user == 2).then_some(GroupId(9)),
            segment: Some(Segment::WarmLead),
            caps: send.then_some(LoggedCaps {
                daily_limit: 2,
                cooldown_secs: 3_600,
                allowed_hours: HourMask::window(9, 21),
                period_days: 1,
            }),
            bot: send.then_some(BotId(1)),
            content: send.then_some(ContentKind::Reminder),
            strategy: Arc::from("defaults-v1"),
            arm: (user == 1).then(|| Arc::from("b")),
            outcome: send.then_some(if user == 3 { SendOutcome::Unknown } else { SendOutcome::Delivered }),
        }
    }

    fn user(id: u64, caps: CapState) -> UserRecord {
        UserRecord {
            profile: UserProfile {
                id: UserId(id),
                joined_at: Timestamp(100),
                zone: if id.is_multiple_of(2) { Zone::fixed(60) } else { "Europe/Berlin".parse().expect("a zone") },
                activity: ActivitySummary { sessions: 4, last_active: Timestamp(900), ..Default::default() },
                bots_followed: 1,
                purchases: 0,
                responses: ResponseHistory { received: 3, responded: 1, recent: 0b100, recent_len: 3 },
            },
            caps,
            segments: Vec::new(),
            governing: None,
            caps_in_force: Caps { daily_limit: 1, cooldown_secs: 0, allowed_hours: HourMask::ALL_DAY, period_days: 1 },
            next_send: None,
        }
    }

    /// A store holding `log` (appended in this order) and nothing else.
    fn store_with(log: &[LogEntry]) -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("crm.db")).unwrap();
        for e in log {
            block_on(store.append(e)).unwrap();
        }
        block_on(store.flush()).unwrap();
        (dir, store)
    }

    /// What was appended is read back field for field, in time order (ties in append
    /// order), within `[from, to)`, and per user.
    #[test]
    fn the_log_reads_back_by_time_range_and_by_user() {
        let log = vec![
            entry(LogKind::Send, 500, 1),
            entry(LogKind::Send, 100, 2),
            entry(LogKind::Response, 500, 2),
            entry(LogKind::Send, 300, 3),
            entry(LogKind::OptOut, 700, 1),
            entry(LogKind::Conversion, 500, 1),
        ];
        let (_dir, store) = store_with(&log);
        let all: Vec<LogEntry> =
            store.events_between(Timestamp(0), Timestamp(1_000)).collect::<Result<_, _>>().unwrap();
        let expected = [&log[1], &log[3], &log[0], &log[2], &log[5], &log[4]];
        assert_eq!(all.iter().collect::<Vec<_>>(), expected);

        let window: Vec<i64> = store
            .events_between(Timestamp(300), Timestamp(700))
            .map(|e| e.map(|e| e.at.secs()))
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(window, [300, 500, 500, 500], "from included, to excluded");

        let of_one: Vec<LogEntry> =
            store.events_of(UserId(1), Timestamp(0), Timestamp(1_000)).collect::<Result<_, _>>().unwrap();
        assert_eq!(of_one, vec![log[0].clone(), log[5].clone(), log[4].clone()]);
        assert_eq!(store.events_of(UserId(42), Timestamp(0), Timestamp(1_000)).count(), 0);
        assert_eq!(store.events_between(Timestamp(1_000), Timestamp(0)).count(), 0, "an empty range");
    }

    /// Pages cut inside a run of entries that share one second neither skip nor repeat any,
    /// and the iterator crosses several pages.
    #[test]
    fn pages_never_skip_nor_repeat_entries_sharing_a_second() {
        let n = 2 * crate::store::EVENT_PAGE + 3;
        let log: Vec<LogEntry> = (0..n).map(|i| entry(LogKind::Send, 1_000 + (i / 5) as i64, i as u64 % 7)).collect();
        let (_dir, store) = store_with(&log);
        let query = EventQuery { from: Timestamp(0), to: Timestamp(i64::MAX), user: None };
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = store.page(&query, after, 3).unwrap();
            assert!(page.entries.len() <= 3);
            seen.extend(page.entries);
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        assert_eq!(seen, log);
        let streamed: Vec<LogEntry> =
            store.events_between(Timestamp(0), Timestamp(i64::MAX)).collect::<Result<_, _>>().unwrap();
        assert_eq!(streamed, log);
        let of_user: Vec<LogEntry> =
            store.events_of(UserId(3), Timestamp(0), Timestamp(i64::MAX)).collect::<Result<_, _>>().unwrap();
        assert_eq!(of_user, log.iter().filter(|e| e.user == UserId(3)).cloned().collect::<Vec<_>>());
    }

    /// A value this build does not know is an error naming the table and column, never a
    /// default.
    #[test]
    fn an_unknown_value_is_a_typed_error() {
        let (_dir, store) = store_with(&[entry(LogKind::Send, 100, 1)]);
        store.lock().conn.execute("UPDATE log SET outcome = 'maybe'", []).unwrap();
        let first = store.events_between(Timestamp(0), Timestamp(1_000)).next();
        assert!(
            matches!(&first, Some(Err(StoreError::Corrupt { table: "log", column: "outcome", value, .. })) if value == "maybe"),
            "{first:?}"
        );
    }

    /// Every user comes back, in id order, with the profile and cap state saved — across
    /// page boundaries.
    #[test]
    fn users_read_back_with_their_cap_state() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("crm.db")).unwrap();
        let n = crate::store::USER_PAGE as u64 + 2;
        let caps_of = |id: u64| CapState {
            opted_out: id.is_multiple_of(3),
            last_sent: id.is_multiple_of(2).then_some(Timestamp(10_000 + id as i64)),
            last_send_day: id as i64,
            sent_on_last_day: (id % 4) as u32,
        };
        for id in (0..n).rev() {
            block_on(store.save_user(&user(id, caps_of(id)))).unwrap();
        }
        block_on(store.flush()).unwrap();
        let users = store.load_users().unwrap();
        assert_eq!(users.len() as u64, n);
        for (i, u) in users.iter().enumerate() {
            assert_eq!(u.profile, user(i as u64, caps_of(i as u64)).profile);
            assert_eq!(u.caps, caps_of(i as u64));
        }
        assert_eq!(store.users_after(Some(UserId(n - 2)), 10).unwrap().len(), 1);
        assert_eq!(store.count_users().unwrap(), n);
    }
}
