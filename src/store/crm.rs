//! [`CrmReader`]: exactly the reads the management commands (`users analyze`, `segments
//! report | list`, `delivery status`, `strategy history | show`) make of a CRM store, and
//! [`StrategyRollback`], the one write they make (`strategy rollback`).
//!
//! [`SqliteStore`] implements both by delegating to its SQL queries (one indexed query per
//! read). [`RedisStore`] implements them with reads of its keys (`super::redis`), deriving
//! what it does not keep as such — a segment's counts by scanning the log stream, a
//! segment's members by scanning the profiles — and each method of its implementation says
//! what that costs. The two give the same answers for the same data: the integration test
//! `crm_redis` compares every command's output on both.

use crate::domain::{Segment, Timestamp, UserId};

use super::{
    RollbackError, SegmentCounts, SqliteStore, StoreError, StoredChange, StoredEvent, StoredStrategy, StoredUser,
    UserLogCounts,
};

/// A user in a segment: the id, the confidence, and the rules' reasons.
pub type SegmentMember = (UserId, f32, Vec<String>);

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
