//! [`CrmReader`]: exactly the reads the management commands (`users analyze`, `segments
//! report | list`, `delivery status`, `strategy history | show`) make of a CRM store, and
//! [`StrategyRollback`], the one write they make (`strategy rollback`).
//!
//! [`SqliteStore`] implements both by delegating to its SQL queries (one indexed query per
//! read). [`RedisStore`] implements them with reads of its keys (`super::redis`), deriving
//! what it does not keep as such — a segment's counts and the activity over time by scanning
//! the log stream, a segment's members by scanning the profiles — and each method of its
//! implementation says
//! what that costs. The two give the same answers for the same data: the integration test
//! `crm_redis` compares every command's output on both.

use serde::Serialize;

use crate::domain::{Segment, SendOutcome, Timestamp, UserId};

use super::{
    LogKind, RollbackError, SegmentCounts, SqliteStore, StoreError, StoredChange, StoredEvent, StoredStrategy,
    StoredUser, UserLogCounts,
};

/// A user in a segment: the id, the confidence, and the rules' reasons.
pub type SegmentMember = (UserId, f32, Vec<String>);

/// The longest activity bucket accepted, seconds: a leap year.
pub const MAX_BUCKET_SECS: i64 = 366 * crate::domain::DAY;

/// What the log records in one interval of time ([`CrmReader::activity`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ActivityBucket {
    /// Where the interval starts: a multiple of its length in seconds since the epoch (UTC),
    /// so that a day's bucket starts at midnight UTC.
    pub start: Timestamp,
    /// Sends logged (each counts against the caps): direct messages and group posts' shares,
    /// delivered or of unknown outcome. Failed sends are not logged, so not counted.
    pub sent: u64,
    /// Of `sent`, those whose outcome is unknown (they may have gone out).
    pub unknown: u64,
    /// Replies.
    pub responses: u64,
    /// Purchases.
    pub conversions: u64,
    /// Opt-outs.
    pub opt_outs: u64,
}

impl ActivityBucket {
    /// Counts `n` log entries of `kind` (and, for a send, `outcome`) in the bucket.
    pub(super) fn add(&mut self, kind: LogKind, outcome: Option<SendOutcome>, n: u64) {
        match kind {
            LogKind::Send => {
                self.sent += n;
                if outcome == Some(SendOutcome::Unknown) {
                    self.unknown += n;
                }
            }
            LogKind::Response => self.responses += n,
            LogKind::Conversion => self.conversions += n,
            LogKind::OptOut => self.opt_outs += n,
        }
    }
}

/// The start of the bucket of `bucket_secs` seconds holding `at`.
pub(super) fn bucket_start(at: Timestamp, bucket_secs: i64) -> Timestamp {
    Timestamp(at.secs() - at.secs().rem_euclid(bucket_secs))
}

/// Refuses a bucket shorter than a second or longer than [`MAX_BUCKET_SECS`].
pub(super) fn check_bucket(bucket_secs: i64) -> Result<(), StoreError> {
    if (1..=MAX_BUCKET_SECS).contains(&bucket_secs) {
        return Ok(());
    }
    Err(StoreError::BadArgument {
        what: format!("activity bucket of {bucket_secs} s: must be 1 s to {MAX_BUCKET_SECS} s (366 days)"),
    })
}

/// The reads of the management commands. Every list comes in a fixed order (documented
/// per method), so that the commands' output never depends on the store behind them.
pub trait CrmReader {
    /// The store's present: the engine time at the end of the last saved run (`None`: no
    /// run saved, or a value that is not a time).
    fn ended_at(&self) -> Result<Option<Timestamp>, StoreError>;

    /// The strategy set the last saved run used.
    fn strategy_name(&self) -> Result<Option<String>, StoreError>;

    /// One user with segments (highest confidence first, then by name), caps in force and
    /// next planned send; `None` if unknown.
    fn user(&self, id: UserId) -> Result<Option<StoredUser>, StoreError>;

    /// The user's last `limit` log entries, newest first (entries of one second: the one
    /// appended last first).
    fn recent_events(&self, id: UserId, limit: usize) -> Result<Vec<StoredEvent>, StoreError>;

    /// How many messages the log records sent to the user, and replies from them.
    fn user_log_counts(&self, id: UserId) -> Result<UserLogCounts, StoreError>;

    /// Per segment (in [`Segment::ALL`] order): the log's counts of entries naming it at or
    /// after `since` (the whole log with `None`), and the users it governs now.
    fn segment_counts(&self, since: Option<Timestamp>) -> Result<Vec<(Segment, SegmentCounts)>, StoreError>;

    /// The log's activity over time: per bucket of `bucket_secs` seconds (aligned to
    /// multiples of it since the epoch, UTC), the entries at or after `since` (the whole log
    /// with `None`), in ascending order of start, only buckets holding an entry. A bucket of
    /// less than a second or more than [`MAX_BUCKET_SECS`] is [`StoreError::BadArgument`].
    fn activity(&self, bucket_secs: i64, since: Option<Timestamp>) -> Result<Vec<ActivityBucket>, StoreError>;

    /// Sends held back in the last saved run, as `(segment, reason, count)`, by segment and
    /// reason.
    fn suppressions(&self) -> Result<Vec<(String, String, u64)>, StoreError>;

    /// Planned sends of users not opted out, per governing segment (`-`: none, first, then
    /// by name): `(segment, queued, due by `by`)`.
    fn queue(&self, by: Timestamp) -> Result<Vec<(String, u64, u64)>, StoreError>;

    /// Users opted out.
    fn opted_out_count(&self) -> Result<u64, StoreError>;

    /// At most `limit` users holding `segment` with at least `min_confidence`, highest
    /// confidence first, then by id.
    fn segment_members(
        &self,
        segment: Segment,
        min_confidence: f32,
        limit: usize,
    ) -> Result<Vec<SegmentMember>, StoreError>;

    /// The strategies in force, in segment order.
    fn strategies_in_force(&self) -> Result<Vec<StoredStrategy>, StoreError>;

    /// The audit trail, oldest (lowest id) first; only `segment`'s with `Some`.
    fn strategy_changes(&self, segment: Option<Segment>) -> Result<Vec<StoredChange>, StoreError>;
}

/// An operator's rollback of a strategy change: restores the strategy in force before the
/// applied change `id` for its segment at `at`, and records itself as a change of its own
/// (source `operator`, a new version of the segment's strategy). Refused without writing
/// anything if `id` is unknown, was not applied, or what it replaced is in force already.
pub trait StrategyRollback: CrmReader {
    /// Rolls back change `id`; returns the record written.
    fn rollback_strategy(&self, id: i64, at: Timestamp) -> Result<StoredChange, RollbackError>;
}

/// Delegates to the inherent methods: the same SQL as before the trait existed.
impl CrmReader for SqliteStore {
    fn ended_at(&self) -> Result<Option<Timestamp>, StoreError> {
        SqliteStore::ended_at(self)
    }
    fn strategy_name(&self) -> Result<Option<String>, StoreError> {
        SqliteStore::strategy_name(self)
    }
    fn user(&self, id: UserId) -> Result<Option<StoredUser>, StoreError> {
        SqliteStore::user(self, id)
    }
    fn recent_events(&self, id: UserId, limit: usize) -> Result<Vec<StoredEvent>, StoreError> {
        SqliteStore::recent_events(self, id, limit)
    }
    fn user_log_counts(&self, id: UserId) -> Result<UserLogCounts, StoreError> {
        SqliteStore::user_log_counts(self, id)
    }
    fn segment_counts(&self, since: Option<Timestamp>) -> Result<Vec<(Segment, SegmentCounts)>, StoreError> {
        SqliteStore::segment_counts(self, since)
    }
    fn activity(&self, bucket_secs: i64, since: Option<Timestamp>) -> Result<Vec<ActivityBucket>, StoreError> {
        SqliteStore::activity(self, bucket_secs, since)
    }
    fn suppressions(&self) -> Result<Vec<(String, String, u64)>, StoreError> {
        SqliteStore::suppressions(self)
    }
    fn queue(&self, by: Timestamp) -> Result<Vec<(String, u64, u64)>, StoreError> {
        SqliteStore::queue(self, by)
    }
    fn opted_out_count(&self) -> Result<u64, StoreError> {
        SqliteStore::opted_out_count(self)
    }
    fn segment_members(
        &self,
        segment: Segment,
        min_confidence: f32,
        limit: usize,
    ) -> Result<Vec<SegmentMember>, StoreError> {
        SqliteStore::segment_members(self, segment, min_confidence, limit)
    }
    fn strategies_in_force(&self) -> Result<Vec<StoredStrategy>, StoreError> {
        SqliteStore::strategies_in_force(self)
    }
    fn strategy_changes(&self, segment: Option<Segment>) -> Result<Vec<StoredChange>, StoreError> {
        SqliteStore::strategy_changes(self, segment)
    }
}

impl StrategyRollback for SqliteStore {
    fn rollback_strategy(&self, id: i64, at: Timestamp) -> Result<StoredChange, RollbackError> {
        SqliteStore::rollback_strategy(self, id, at)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use futures::executor::block_on;

    use super::*;
    use crate::domain::{DAY, HOUR, UtcOffset, Zone};
    use crate::store::{LogEntry, Store};

    fn entry(kind: LogKind, at: i64, outcome: Option<SendOutcome>) -> LogEntry {
        LogEntry {
            kind,
            at: Timestamp(at),
            user: UserId(1),
            utc_offset: UtcOffset(0),
            zone: Zone::UTC,
            group: None,
            segment: Some(Segment::WarmLead),
            caps: None,
            bot: None,
            content: None,
            strategy: Arc::from("defaults"),
            arm: None,
            outcome,
        }
    }

    /// A bucket's start is the multiple of its length at or before the time, before the
    /// epoch too; lengths outside 1 s to a leap year are refused.
    #[test]
    fn buckets_align_to_multiples_of_their_length() {
        assert_eq!(bucket_start(Timestamp(7_201), 3_600), Timestamp(7_200));
        assert_eq!(bucket_start(Timestamp(7_200), 3_600), Timestamp(7_200));
        assert_eq!(bucket_start(Timestamp(-1), 3_600), Timestamp(-3_600));
        assert!(check_bucket(1).is_ok() && check_bucket(MAX_BUCKET_SECS).is_ok());
        for bad in [0, -3_600, MAX_BUCKET_SECS + 1, i64::MIN] {
            assert!(matches!(check_bucket(bad), Err(StoreError::BadArgument { .. })), "{bad}");
        }
    }

    /// SQLite's one `GROUP BY` gives each hour's and each day's counts by kind, unknown sends
    /// apart, in ascending order and only for buckets with entries; `since` drops the
    /// entries before it (not the rest of its bucket); a bad bucket is refused.
    #[test]
    fn sqlite_counts_the_log_per_bucket() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().map_err(|cause| StoreError::Io { path: "tempdir".into(), cause })?;
        let store = SqliteStore::open(&dir.path().join("crm.db"))?;
        let day = 20_000 * DAY;
        let delivered = Some(SendOutcome::Delivered);
        let log = [
            entry(LogKind::Send, day + 9 * HOUR, delivered),
            entry(LogKind::Send, day + 9 * HOUR + 59 * 60, Some(SendOutcome::Unknown)),
            entry(LogKind::Response, day + 10 * HOUR, None),
            entry(LogKind::Send, day + 10 * HOUR + 1, delivered),
            entry(LogKind::Conversion, day + 10 * HOUR + 2, None),
            entry(LogKind::OptOut, day + DAY + 3 * HOUR, None),
            // Filed late: counted by its own time.
            entry(LogKind::Send, day + 9 * HOUR + 30, delivered),
        ];
        for e in &log {
            block_on(store.append(e))?;
        }
        block_on(store.flush())?;
        let bucket = |start: i64, sent, unknown, responses, conversions, opt_outs| ActivityBucket {
            start: Timestamp(start),
            sent,
            unknown,
            responses,
            conversions,
            opt_outs,
        };
        assert_eq!(
            CrmReader::activity(&store, HOUR, None)?,
            vec![
                bucket(day + 9 * HOUR, 3, 1, 0, 0, 0),
                bucket(day + 10 * HOUR, 1, 0, 1, 1, 0),
                bucket(day + DAY + 3 * HOUR, 0, 0, 0, 0, 1),
            ]
        );
        assert_eq!(
            CrmReader::activity(&store, DAY, None)?,
            vec![bucket(day, 4, 1, 1, 1, 0), bucket(day + DAY, 0, 0, 0, 0, 1)]
        );
        assert_eq!(
            CrmReader::activity(&store, DAY, Some(Timestamp(day + 10 * HOUR)))?,
            vec![bucket(day, 1, 0, 1, 1, 0), bucket(day + DAY, 0, 0, 0, 0, 1)]
        );
        assert!(CrmReader::activity(&store, DAY, Some(Timestamp(day + 2 * DAY)))?.is_empty());
        assert!(matches!(CrmReader::activity(&store, 0, None), Err(StoreError::BadArgument { .. })));
        Ok(())
    }
}
