//! Profiles written into the SQLite store from outside the engine (`gavat import users`):
//! read, decided and written for a whole batch in one transaction, so that a batch is
//! either in the store entirely or not at all.
//!
//! The store decides nothing here. For each user the caller is shown what the store holds
//! (or nothing, for a new user) and answers with the profile and what the rules make of it,
//! or with a refusal; one refusal and nothing is written. The cap counters — last send,
//! sends that local day, the opt-out — are never part of the answer: an existing user's are
//! left exactly as they are by the SQL itself (an opt-out stays final), and a new user's
//! start fresh.

use rusqlite::{OptionalExtension, TransactionBehavior, params};

use crate::domain::{Caps, Segment, UserId, UserProfile};
use crate::segmentation::Explained;

use super::sqlite::row_to_user;
use super::{SqliteStore, StoreError, UserState};

/// One user's profile as it is to be stored, with what the rules make of it.
#[derive(Clone, Debug, PartialEq)]
pub struct ProfileUpdate {
    /// The whole profile (the caller merges what it changes with what was stored).
    pub profile: UserProfile,
    /// Segments held, highest confidence first; stored with source `rules`.
    pub segments: Vec<Explained>,
    /// The segment whose strategy governs.
    pub governing: Option<Segment>,
    /// The strictest caps over the segments held.
    pub caps_in_force: Caps,
}

/// Whether [`SqliteStore::upsert_profiles`] writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpsertMode {
    /// Decide and write, in one transaction.
    Write,
    /// Decide only (`--check`): the transaction reads and is rolled back.
    DryRun,
}

/// What an upsert did, or in a dry run would do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UpsertCounts {
    /// Users the store did not hold: written with fresh counters.
    pub new: u64,
    /// Users the store held: profile and segments replaced, counters kept.
    pub updated: u64,
    /// Of the updated users, those opted out: they stay opted out.
    pub opted_out: u64,
}

/// Why an upsert wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum UpsertError<E: std::fmt::Debug> {
    /// The store failed: nothing was written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The caller refused one or more users (all refusals, in the order asked): nothing was
    /// written.
    #[error("{} user(s) refused; nothing written", .0.len())]
    Refused(Vec<E>),
}

/// The columns an upsert sets on a user the store already holds: everything but the cap
/// counters (`opted_out`, `last_sent`, `last_send_day`, `sent_on_last_day`) and the planned
/// send (`next_send_at`, which only an engine plans).
const UPSERT: &str = "INSERT INTO users (id, joined_at, utc_offset, bots_followed, purchases, sessions, by_local_hour,
        last_active, weekly_sessions, received, responded, recent, recent_len, opted_out, last_sent, last_send_day,
        sent_on_last_day, governing, daily_limit, cooldown_secs, allowed_hours, period_days, next_send_at, time_zone)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, 0, NULL, 0, 0, ?14, ?15, ?16, ?17, ?18, NULL, ?19)
     ON CONFLICT (id) DO UPDATE SET joined_at = excluded.joined_at, utc_offset = excluded.utc_offset,
        time_zone = excluded.time_zone,
        bots_followed = excluded.bots_followed, purchases = excluded.purchases, sessions = excluded.sessions,
        by_local_hour = excluded.by_local_hour, last_active = excluded.last_active,
        weekly_sessions = excluded.weekly_sessions, received = excluded.received, responded = excluded.responded,
        recent = excluded.recent, recent_len = excluded.recent_len, governing = excluded.governing,
        daily_limit = excluded.daily_limit, cooldown_secs = excluded.cooldown_secs,
        allowed_hours = excluded.allowed_hours, period_days = excluded.period_days";

impl SqliteStore {
    /// For each of `ids` in order, shows `decide` the user as stored (`None`: a new user)
    /// and writes the profile it answers with — all in one transaction, taken with the write
    /// lock first (`BEGIN IMMEDIATE`) so that no other writer changes a user between the
    /// read and the write. Every id is asked even after a refusal, so that all refusals come
    /// back together; with any refusal, or in a [`UpsertMode::DryRun`], the transaction is
    /// rolled back and the store is as it was.
    ///
    /// `decide` gets the position in `ids` and the stored user. `ids` must not repeat an id
    /// (the caller's input validation says which lines repeat one).
    pub fn upsert_profiles<E: std::fmt::Debug>(
        &self,
        ids: &[UserId],
        mode: UpsertMode,
        mut decide: impl FnMut(usize, Option<&UserState>) -> Result<ProfileUpdate, E>,
    ) -> Result<UpsertCounts, UpsertError<E>> {
        let mut inner = self.lock();
        let behavior = match mode {
            UpsertMode::Write => TransactionBehavior::Immediate,
            UpsertMode::DryRun => TransactionBehavior::Deferred,
        };
        let tx = inner.conn.transaction_with_behavior(behavior).map_err(|e| self.err(e))?;
        let mut counts = UpsertCounts::default();
        let mut refused = Vec::new();
        {
            let mut read = tx.prepare_cached("SELECT * FROM users WHERE id = ?1").map_err(|e| self.err(e))?;
            let mut upsert = tx.prepare_cached(UPSERT).map_err(|e| self.err(e))?;
            let mut clear = tx.prepare_cached("DELETE FROM segments WHERE user_id = ?1").map_err(|e| self.err(e))?;
            let mut segment =
                tx.prepare_cached("INSERT INTO segments VALUES (?1, ?2, ?3, ?4, 'rules')").map_err(|e| self.err(e))?;
            for (i, &id) in ids.iter().enumerate() {
                let key = sql_id(id, self.path())?;
                let stored = read
                    .query_row(params![key], |r| row_to_user(r).map(|u| UserState { profile: u.profile, caps: u.caps }))
                    .optional()
                    .map_err(|e| self.err(e))?;
                let update = match decide(i, stored.as_ref()) {
                    Ok(update) => update,
                    Err(e) => {
                        refused.push(e);
                        continue;
                    }
                };
                match &stored {
                    None => counts.new += 1,
                    Some(u) => {
                        counts.updated += 1;
                        counts.opted_out += u64::from(u.caps.opted_out);
                    }
                }
                if mode == UpsertMode::DryRun || !refused.is_empty() {
                    continue;
                }
                let p = &update.profile;
                let hours = serde_json::to_string(&p.activity.by_local_hour).unwrap_or_default();
                let c = update.caps_in_force;
                upsert
                    .execute(params![
                        key,
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
                        update.governing.map(|s| s.as_str()),
                        c.daily_limit,
                        c.cooldown_secs,
                        c.allowed_hours.0,
                        c.period_days,
                        p.zone.iana_name(),
                    ])
                    .map_err(|e| self.err(e))?;
                clear.execute(params![key]).map_err(|e| self.err(e))?;
                for s in &update.segments {
                    let reasons = serde_json::to_string(&s.reasons).unwrap_or_default();
                    segment
                        .execute(params![key, s.segment.as_str(), f64::from(s.confidence), reasons])
                        .map_err(|e| self.err(e))?;
                }
            }
        }
        if !refused.is_empty() {
            tx.rollback().map_err(|e| self.err(e))?;
            return Err(UpsertError::Refused(refused));
        }
        match mode {
            UpsertMode::Write => tx.commit().map_err(|e| self.err(e))?,
            UpsertMode::DryRun => tx.rollback().map_err(|e| self.err(e))?,
        }
        Ok(counts)
    }
}

/// A user id as SQLite's signed 64-bit key; ids above `i64::MAX` cannot be stored (the rest
/// of the store keys them the same way), and are refused rather than wrapped.
fn sql_id(id: UserId, path: &str) -> Result<i64, StoreError> {
    i64::try_from(id.0).map_err(|_| StoreError::Io {
        path: path.to_string(),
        cause: std::io::Error::other(format!("user id {id} is above {}, the largest the store can key", i64::MAX)),
    })
}

#[cfg(test)]
mod tests {
    use futures::executor::block_on;

    use super::*;
    use crate::domain::{ActivitySummary, HourMask, ResponseHistory, Timestamp, Zone};
    use crate::policy::CapState;
    use crate::store::{Store, UserRecord, UserRepository};

    fn profile(id: u64, purchases: u32) -> UserProfile {
        UserProfile {
            id: UserId(id),
            joined_at: Timestamp(1_000),
            zone: Zone::fixed(60),
            activity: ActivitySummary { sessions: 2, last_active: Timestamp(2_000), ..Default::default() },
            bots_followed: 1,
            purchases,
            responses: ResponseHistory::default(),
        }
    }

    fn update(p: UserProfile) -> ProfileUpdate {
        ProfileUpdate {
            profile: p,
            segments: vec![Explained { segment: Segment::ColdLead, confidence: 0.3, reasons: vec!["x".into()] }],
            governing: Some(Segment::ColdLead),
            caps_in_force: Caps {
                daily_limit: 1,
                cooldown_secs: 3_600,
                allowed_hours: HourMask::window(10, 18),
                period_days: 3,
            },
        }
    }

    /// A store holding user 1, opted out, with counters.
    fn store() -> (tempfile::TempDir, SqliteStore, CapState) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("crm.db")).unwrap();
        let caps =
            CapState { opted_out: true, last_sent: Some(Timestamp(1_500)), last_send_day: 0, sent_on_last_day: 2 };
        let u = update(profile(1, 0));
        block_on(store.save_user(&UserRecord {
            profile: u.profile,
            caps,
            segments: Vec::new(),
            governing: None,
            caps_in_force: u.caps_in_force,
            next_send: Some(Timestamp(9_000)),
        }))
        .unwrap();
        block_on(store.flush()).unwrap();
        (dir, store, caps)
    }

    /// An existing user gets the new profile and keeps counters, opt-out and planned send;
    /// a new one starts fresh; the stored user is what `decide` is shown.
    #[test]
    fn updates_keep_counters_and_new_users_start_fresh() {
        let (_dir, store, caps) = store();
        let mut shown = Vec::new();
        let counts = store
            .upsert_profiles(&[UserId(1), UserId(2)], UpsertMode::Write, |i, stored| {
                shown.push(stored.map(|u| u.profile.purchases));
                Ok::<_, ()>(update(profile([1, 2][i], 5)))
            })
            .unwrap();
        assert_eq!(shown, [Some(0), None]);
        assert_eq!(counts, UpsertCounts { new: 1, updated: 1, opted_out: 1 });
        let users = store.load_users().unwrap();
        assert_eq!(users[0].profile.purchases, 5);
        assert_eq!(users[0].caps, caps, "counters and opt-out kept");
        assert_eq!(users[1].caps, CapState::default(), "fresh counters");
        let one = store.user(UserId(1)).unwrap().unwrap();
        assert_eq!(one.next_send, Some(Timestamp(9_000)));
        assert_eq!(one.governing, Some(Segment::ColdLead));
        assert_eq!(one.segmented_by.as_deref(), Some("rules"));
        assert_eq!(one.caps_in_force.period_days, 3);
    }

    /// One refusal, or a dry run, and nothing is written; every refusal comes back.
    #[test]
    fn a_refusal_or_a_dry_run_writes_nothing() {
        let (dir, store, _) = store();
        let ids = [UserId(1), UserId(2), UserId(3)];
        let result = store
            .upsert_profiles(&ids, UpsertMode::Write, |i, _| if i == 0 { Ok(update(profile(1, 7))) } else { Err(i) });
        assert!(matches!(result, Err(UpsertError::Refused(ref r)) if r == &[1, 2]), "{result:?}");
        let counts =
            store.upsert_profiles(&ids, UpsertMode::DryRun, |i, _| Ok::<_, ()>(update(profile(i as u64 + 1, 7))));
        assert_eq!(counts.unwrap(), UpsertCounts { new: 2, updated: 1, opted_out: 1 });
        assert_eq!(store.user_count().unwrap(), 1);
        assert_eq!(store.user(UserId(1)).unwrap().unwrap().profile.purchases, 0);
        drop(store);
        assert!(SqliteStore::open_read_only(&dir.path().join("crm.db")).is_ok());
    }

    /// An id SQLite cannot key is an error, not a wrapped negative id.
    #[test]
    fn ids_beyond_the_key_range_are_refused() {
        let (_dir, store, _) = store();
        let result =
            store.upsert_profiles(&[UserId(u64::MAX)], UpsertMode::Write, |_, _| Ok::<_, ()>(update(profile(1, 0))));
        assert!(matches!(result, Err(UpsertError::Store(_))), "{result:?}");
    }
}
