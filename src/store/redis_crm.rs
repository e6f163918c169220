//! [`CrmReader`] and [`StrategyRollback`] for [`RedisStore`]: the management commands' reads
//! of the keys laid out in `super::redis`, and what [`super::Store::save_run`] writes for them
//! there (the strategies in force and the audit trail of every run, by a Lua script).
//!
//! What the Redis store keeps as such is read directly (a profile is one `HGETALL`, the
//! strategies and the audit trail one hash each); what it does not keep as such is derived
//! from what it keeps: a segment's counts by scanning the log stream a page at a time, the
//! users a segment governs, the queue, the opted-out count and a segment's members by
//! scanning the profiles a page at a time. Each method says what it costs.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use ::redis::{Cmd, Value};
use serde::Deserialize;

use crate::domain::{Caps, DeliveryStrategy, HourMask, Segment, Timestamp, UserId};
use crate::learner::Action;
use crate::redis_link::{Failure, Script, Shared, slot_of, text};
use crate::segmentation::Explained;

use super::crm::{bucket_start, check_bucket};
use super::redis::{Keys, field_map, ids_after, kind_name, parsed, parsed_opt, user_from_fields};
use super::strategies::{ChangeRow, in_force_from, rollback_record, to_json};
use super::{
    ActivityBucket, CrmReader, EventLog, LogEntry, LogKind, RedisStore, RollbackError, RunRecord, SegmentCounts,
    SegmentMember, StoreError, StoredChange, StoredEvent, StoredStrategy, StoredUser, StrategyRollback, USER_PAGE,
    UserLogCounts,
};

/// The latest time a log stream id can key (its milliseconds must fit an `i64`).
const FAR: Timestamp = Timestamp(i64::MAX / 1_000);

/// Appends a run's audit trail after the highest id given and upserts the strategies in
/// force, in one step. KEYS: changes, last_change, in_force, saved. ARGV: the run's token,
/// the number of entries n, n × (id within the run, entry JSON), then per strategy
/// (segment, strategy JSON, id within the run of the change that put it in force or `""`),
/// then the run's end time. A token equal to the last one saved is a repeat of the same call
/// (after a lost reply): nothing is written twice.
const SAVE_LUA: &str = r"
if redis.call('GET', KEYS[4]) == ARGV[1] then return 0 end
local offset = tonumber(redis.call('GET', KEYS[2]) or '0')
local n = tonumber(ARGV[2])
local top = offset
for i = 0, n - 1 do
  local id = offset + tonumber(ARGV[3 + 2 * i])
  redis.call('HSET', KEYS[1], string.format('%d', id), ARGV[4 + 2 * i])
  if id > top then top = id end
end
redis.call('SET', KEYS[2], string.format('%d', top))
local at = ARGV[#ARGV]
local i = 3 + 2 * n
while i + 2 <= #ARGV - 1 do
  local version = '0'
  if ARGV[i + 2] ~= '' then version = string.format('%d', offset + tonumber(ARGV[i + 2])) end
  redis.call('HSET', KEYS[3], ARGV[i] .. ':strategy', ARGV[i + 1], ARGV[i] .. ':version', version,
    ARGV[i] .. ':updated_at', at)
  i = i + 3
end
redis.call('SET', KEYS[4], ARGV[1])
return 1
";

/// An operator's rollback as a compare-and-set: written only if the highest id and the
/// segment's strategy in force are still what the rollback was prepared from. KEYS: changes,
/// last_change, in_force. ARGV: the highest id read, the segment, its strategy JSON read,
/// the entry JSON, the strategy restored, the time. A repeat of the same call after a lost
/// reply finds its own entry and succeeds without writing.
const ROLLBACK_LUA: &str = r"
local id = tonumber(ARGV[1]) + 1
local sid = string.format('%d', id)
local last = tonumber(redis.call('GET', KEYS[2]) or '0')
if last == id and redis.call('HGET', KEYS[1], sid) == ARGV[4] then return id end
if last ~= tonumber(ARGV[1]) or redis.call('HGET', KEYS[3], ARGV[2] .. ':strategy') ~= ARGV[3] then
  return redis.error_reply('CONFLICT the strategies changed while the rollback was prepared: nothing written, run it again')
end
redis.call('HSET', KEYS[1], sid, ARGV[4])
redis.call('SET', KEYS[2], sid)
redis.call('HSET', KEYS[3], ARGV[2] .. ':strategy', ARGV[5], ARGV[2] .. ':version', sid, ARGV[2] .. ':updated_at', ARGV[6])
return id
";

static SAVE: LazyLock<Script> = LazyLock::new(|| Script::new("save_strategies", SAVE_LUA));
static ROLLBACK: LazyLock<Script> = LazyLock::new(|| Script::new("rollback_strategy", ROLLBACK_LUA));

/// What [`super::Store::save_run`] writes for the strategy commands: [`SAVE_LUA`]'s
/// arguments, built before the call.
#[derive(Debug)]
pub(super) struct SavedStrategies {
    args: Vec<String>,
}

impl SavedStrategies {
    /// The run's audit trail and strategies in force, as the SQLite store saves them: the
    /// version of a segment's strategy is the last applied or rolled-back change of it in
    /// this run (0 without one).
    pub(super) fn of(run: &RunRecord) -> SavedStrategies {
        let mut args = vec![String::new(), run.strategy_changes.len().to_string()];
        let mut version: [Option<i64>; 8] = [None; 8];
        for c in &run.strategy_changes {
            let id = i64::try_from(c.id).unwrap_or(i64::MAX);
            let row = ChangeRow {
                id,
                at: c.at.secs(),
                segment: c.segment.as_str().to_string(),
                source: c.source.to_string(),
                action: c.action.as_str().to_string(),
                field: c.field.to_string(),
                before: c.before.clone(),
                after: c.after.clone(),
                evidence: c.evidence.clone(),
                proof: c.proof.as_ref().map(|p| serde_json::to_string(p).unwrap_or_default()),
                strategy_before: to_json(&c.strategy_before),
                strategy_after: to_json(&c.strategy_after),
            };
            args.push(id.to_string());
            args.push(serde_json::to_string(&row).unwrap_or_default());
            if matches!(c.action, Action::Applied | Action::RolledBack) {
                version[c.segment.index()] = Some(id);
            }
        }
        for s in &run.strategies {
            args.push(s.segment.as_str().to_string());
            args.push(to_json(s));
            args.push(version[s.segment.index()].map(|v| v.to_string()).unwrap_or_default());
        }
        args.push(run.ended_at.secs().to_string());
        args[0] = token(&args[1..]);
        SavedStrategies { args }
    }

    /// Runs [`SAVE_LUA`].
    pub(super) async fn write(self, keys: &Keys, shared: &Shared) -> Result<(), Failure> {
        let k = [keys.changes(), keys.last_change(), keys.in_force(), keys.saved()];
        shared.eval(&SAVE, &k, &self.args).await.map(|_| ())
    }
}

/// A stable digest of a run's arguments (FNV-1a, 64 bits): equal only for the same call.
fn token(args: &[String]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for a in args {
        for b in a.bytes().chain([0]) {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}:{}", args.len())
}

/// A reply that may be nil.
fn opt_text(value: &Value) -> Result<Option<String>, Failure> {
    match value {
        Value::Nil => Ok(None),
        other => text(other).map(Some),
    }
}

fn corrupt(what: String) -> Failure {
    Failure::Server(format!("{what}: damaged or foreign data"))
}

/// A segment as the profile's `segments` field holds it.
#[derive(Deserialize)]
struct HeldSegment {
    segment: String,
    confidence: f64,
    reasons: Vec<String>,
}

/// A profile's `segments` field, highest confidence first, then by name (as the SQLite store
/// reads them back).
fn segments_of(id: UserId, raw: Option<&str>) -> Result<Vec<Explained>, Failure> {
    let raw = match raw {
        None | Some("") => return Ok(Vec::new()),
        Some(raw) => raw,
    };
    let held: Vec<HeldSegment> =
        serde_json::from_str(raw).map_err(|e| corrupt(format!("user {}: field segments: {e}", id.0)))?;
    let mut out = held
        .into_iter()
        .map(|h| {
            let segment = h.segment.parse().map_err(|m| corrupt(format!("user {}: field segments: {m}", id.0)))?;
            Ok(Explained { segment, confidence: h.confidence as f32, reasons: h.reasons })
        })
        .collect::<Result<Vec<_>, Failure>>()?;
    out.sort_by(|a, b| b.confidence.total_cmp(&a.confidence).then_with(|| a.segment.as_str().cmp(b.segment.as_str())));
    Ok(out)
}

fn stored_event(e: &LogEntry) -> StoredEvent {
    StoredEvent {
        kind: kind_name(e.kind).to_string(),
        at: e.at,
        segment: e.segment.map(|s| s.as_str().to_string()),
        group: e.group.map(|g| g.0 as i64),
        content: e.content.map(|c| c.as_str().to_string()),
        outcome: e.outcome.map(|o| o.as_str().to_string()),
    }
}

impl RedisStore {
    /// One field of `Prun`: one `HGET`.
    fn run_field(&self, field: &'static str) -> Result<Option<String>, StoreError> {
        self.call(move |keys, shared| async move {
            opt_text(&shared.query(Cmd::new().arg("HGET").arg(keys.run()).arg(field).to_owned()).await?)
        })
    }

    /// Calls `each` with the given profile fields of every saved user, in id order:
    /// [`USER_PAGE`] users a page, each page one `ZRANGE` and one `HMGET` per user,
    /// pipelined per node. O(users) reads; one page in memory at a time.
    fn scan_profiles(
        &self,
        fields: &'static [&'static str],
        mut each: impl FnMut(UserId, Vec<Option<String>>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut after = None;
        loop {
            let page = self.call(move |keys, shared| async move {
                let ids = ids_after(&keys, &shared, after, USER_PAGE).await?;
                if ids.is_empty() {
                    return Ok(Vec::new());
                }
                let cmds = ids
                    .iter()
                    .map(|u| {
                        let mut c = Cmd::new();
                        c.arg("HMGET").arg(keys.profile(*u));
                        for f in fields {
                            c.arg(*f);
                        }
                        (slot_of(&format!("u:{}", u.0)), c)
                    })
                    .collect();
                let replies = shared.query_by_slot(cmds).await?;
                ids.into_iter()
                    .zip(replies)
                    .map(|(id, reply)| {
                        let Value::Array(values) = reply else {
                            return Err(Failure::Server(format!("unexpected reply to HMGET: {reply:?}")));
                        };
                        Ok((id, values.iter().map(opt_text).collect::<Result<Vec<_>, _>>()?))
                    })
                    .collect::<Result<Vec<_>, Failure>>()
            })?;
            let Some(last) = page.last().map(|(id, _)| *id) else { return Ok(()) };
            let full = page.len() == USER_PAGE;
            for (id, values) in page {
                each(id, values)?;
            }
            if !full {
                return Ok(());
            }
            after = Some(last);
        }
    }

    /// Every entry of one user's stream, in the order appended: `XRANGE` pages on
    /// `P{u:ID}:log`, O(the user's entries).
    fn user_entries(&self, id: UserId) -> Result<Vec<LogEntry>, StoreError> {
        self.events_of(id, Timestamp(0), FAR).collect()
    }

    /// The audit trail as kept, in id order, strategies not yet parsed: one `HGETALL`,
    /// O(changes).
    fn change_rows(&self) -> Result<Vec<ChangeRow>, StoreError> {
        let fields = self.call(|keys, shared| async move {
            field_map(&shared.query(Cmd::new().arg("HGETALL").arg(keys.changes()).to_owned()).await?)
        })?;
        let mut rows = fields
            .into_iter()
            .map(|(id, json)| {
                let what = || format!("strategy change {id:?}");
                let n: i64 = id.parse().map_err(|_| corrupt(what()))?;
                let mut row: ChangeRow =
                    serde_json::from_str(&json).map_err(|e| corrupt(format!("{}: {e}", what())))?;
                row.id = n;
                Ok(row)
            })
            .collect::<Result<Vec<_>, Failure>>()
            .map_err(|f| self.error(f))?;
        rows.sort_by_key(|r| r.id);
        Ok(rows)
    }

    /// The audit trail, parsed, in id order.
    fn changes(&self) -> Result<Vec<StoredChange>, StoreError> {
        self.change_rows()?.into_iter().map(|r| r.parse().map_err(|m| self.error(corrupt(m)))).collect()
    }
}

impl CrmReader for RedisStore {
    /// `Prun` field `ended_at`: one `HGET`.
    fn ended_at(&self) -> Result<Option<Timestamp>, StoreError> {
        Ok(self.run_field("ended_at")?.and_then(|v| v.parse().ok()).map(Timestamp))
    }

    /// `Prun` field `strategy`: one `HGET`.
    fn strategy_name(&self) -> Result<Option<String>, StoreError> {
        self.run_field("strategy")
    }

    /// The profile hash: one `HGETALL`. The store records no segmenter per user; what the
    /// engine saves is the rules' segmentation (as in SQLite, where `save_user` writes
    /// source `rules`), so `segmented_by` is `rules` when the user holds a segment.
    fn user(&self, id: UserId) -> Result<Option<StoredUser>, StoreError> {
        let fields = self.call(move |keys, shared| async move {
            field_map(&shared.query(Cmd::new().arg("HGETALL").arg(keys.profile(id)).to_owned()).await?)
        })?;
        if fields.is_empty() {
            return Ok(None);
        }
        let read = || -> Result<StoredUser, Failure> {
            let state = user_from_fields(id, &fields)?;
            let what = format!("user {}", id.0);
            let what = what.as_str();
            let segments = segments_of(id, fields.get("segments").map(String::as_str))?;
            Ok(StoredUser {
                profile: state.profile,
                caps: state.caps,
                segmented_by: (!segments.is_empty()).then(|| "rules".to_string()),
                segments,
                governing: parsed_opt::<Segment>(&fields, "governing", what)?,
                caps_in_force: Caps {
                    daily_limit: parsed(&fields, "daily_limit", what)?,
                    cooldown_secs: parsed(&fields, "cooldown_secs", what)?,
                    allowed_hours: HourMask(parsed(&fields, "allowed_hours", what)?),
                    period_days: parsed(&fields, "period_days", what)?,
                },
                next_send: parsed_opt(&fields, "next_send_at", what)?.map(Timestamp),
            })
        };
        read().map(Some).map_err(|f| self.error(f))
    }

    /// The user's whole stream, sorted newest first: O(the user's entries). Sorted by the
    /// entries' own times, since an entry filed late (two instances) sits after newer ones.
    fn recent_events(&self, id: UserId, limit: usize) -> Result<Vec<StoredEvent>, StoreError> {
        let entries = self.user_entries(id)?;
        let mut order: Vec<(usize, &LogEntry)> = entries.iter().enumerate().collect();
        order.sort_by(|a, b| b.1.at.cmp(&a.1.at).then(b.0.cmp(&a.0)));
        Ok(order.into_iter().take(limit).map(|(_, e)| stored_event(e)).collect())
    }

    /// The user's whole stream: O(the user's entries).
    fn user_log_counts(&self, id: UserId) -> Result<UserLogCounts, StoreError> {
        let mut counts = UserLogCounts::default();
        for e in self.user_entries(id)? {
            match e.kind {
                LogKind::Send => counts.sent += 1,
                LogKind::Response => counts.responses += 1,
                LogKind::Conversion | LogKind::OptOut => {}
            }
        }
        Ok(counts)
    }

    /// A scan of `Plog` from `since` to its end, [`super::EVENT_PAGE`] entries an `XRANGE`
    /// (O(entries since `since`), one page in memory), plus a scan of every profile's
    /// `governing` (O(users)). An entry filed late carries its own time and is counted by it.
    fn segment_counts(&self, since: Option<Timestamp>) -> Result<Vec<(Segment, SegmentCounts)>, StoreError> {
        let mut out: Vec<(Segment, SegmentCounts)> =
            Segment::ALL.iter().map(|s| (*s, SegmentCounts::default())).collect();
        let find = |s: Segment| Segment::ALL.iter().position(|x| *x == s);
        let from = Timestamp(since.map_or(0, |t| t.secs().max(0)));
        for e in self.events_between(from, FAR) {
            let e = e?;
            if since.is_some_and(|t| e.at < t) {
                continue;
            }
            let Some(i) = e.segment.and_then(find) else { continue };
            let c = &mut out[i].1;
            match e.kind {
                LogKind::Send => c.sent += 1,
                LogKind::Response => c.responses += 1,
                LogKind::Conversion => c.conversions += 1,
                LogKind::OptOut => c.opt_outs += 1,
            }
        }
        self.scan_profiles(&["governing"], |_, values| {
            let governing = values.into_iter().next().flatten().and_then(|g| g.parse::<Segment>().ok());
            if let Some(i) = governing.and_then(find) {
                out[i].1.users += 1;
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// A scan of `Plog` from `since` to its end, [`super::EVENT_PAGE`] entries an `XRANGE`
    /// (O(entries since `since`), one page in memory, plus one counter per bucket holding
    /// an entry). An entry filed late carries its own time and is counted in its bucket.
    fn activity(&self, bucket_secs: i64, since: Option<Timestamp>) -> Result<Vec<ActivityBucket>, StoreError> {
        check_bucket(bucket_secs)?;
        let mut buckets: BTreeMap<Timestamp, ActivityBucket> = BTreeMap::new();
        let from = Timestamp(since.map_or(0, |t| t.secs().max(0)));
        for e in self.events_between(from, FAR) {
            let e = e?;
            if since.is_some_and(|t| e.at < t) {
                continue;
            }
            let start = bucket_start(e.at, bucket_secs);
            buckets
                .entry(start)
                .or_insert(ActivityBucket { start, ..ActivityBucket::default() })
                .add(e.kind, e.outcome, 1);
        }
        Ok(buckets.into_values().collect())
    }

    /// `Prun` field `suppressed`: one `HGET`, sorted here.
    fn suppressions(&self) -> Result<Vec<(String, String, u64)>, StoreError> {
        let Some(json) = self.run_field("suppressed")? else { return Ok(Vec::new()) };
        let mut rows: Vec<(String, String, u64)> =
            serde_json::from_str(&json).map_err(|e| self.error(corrupt(format!("run field suppressed: {e}"))))?;
        rows.sort();
        Ok(rows)
    }

    /// A scan of every profile's `governing`, `opted_out` and `next_send_at`: O(users).
    fn queue(&self, by: Timestamp) -> Result<Vec<(String, u64, u64)>, StoreError> {
        let mut groups: BTreeMap<Option<String>, (u64, u64)> = BTreeMap::new();
        self.scan_profiles(&["governing", "opted_out", "next_send_at"], |id, values| {
            let [governing, opted_out, next] = <[Option<String>; 3]>::try_from(values)
                .map_err(|_| self.error(corrupt(format!("user {}: HMGET reply", id.0))))?;
            let Some(next) = next.filter(|n| !n.is_empty()) else { return Ok(()) };
            let next: i64 =
                next.parse().map_err(|_| self.error(corrupt(format!("user {}: field next_send_at {next:?}", id.0))))?;
            if opted_out.as_deref() == Some("1") {
                return Ok(());
            }
            let entry = groups.entry(governing.filter(|g| !g.is_empty())).or_default();
            entry.0 += 1;
            entry.1 += u64::from(next <= by.secs());
            Ok(())
        })?;
        Ok(groups.into_iter().map(|(g, (n, d))| (g.unwrap_or_else(|| "-".to_string()), n, d)).collect())
    }

    /// A scan of every profile's `opted_out`: O(users).
    fn opted_out_count(&self) -> Result<u64, StoreError> {
        let mut n = 0;
        self.scan_profiles(&["opted_out"], |_, values| {
            n += u64::from(values.first().and_then(Option::as_deref) == Some("1"));
            Ok(())
        })?;
        Ok(n)
    }

    /// A scan of every profile's `segments`: O(users) reads, the members found (not only
    /// `limit`) in memory to sort them.
    fn segment_members(
        &self,
        segment: Segment,
        min_confidence: f32,
        limit: usize,
    ) -> Result<Vec<SegmentMember>, StoreError> {
        let mut members = Vec::new();
        self.scan_profiles(&["segments"], |id, values| {
            let held = segments_of(id, values.first().and_then(Option::as_deref)).map_err(|f| self.error(f))?;
            if let Some(s) = held.into_iter().find(|s| s.segment == segment && s.confidence >= min_confidence) {
                members.push((id, s.confidence, s.reasons));
            }
            Ok(())
        })?;
        // Stable: ties stay in id order.
        members.sort_by(|a: &SegmentMember, b: &SegmentMember| b.1.total_cmp(&a.1));
        members.truncate(limit);
        Ok(members)
    }

    /// `P{strategies}:in_force` and the audit trail: two `HGETALL`s, O(changes).
    fn strategies_in_force(&self) -> Result<Vec<StoredStrategy>, StoreError> {
        let fields = self.call(|keys, shared| async move {
            field_map(&shared.query(Cmd::new().arg("HGETALL").arg(keys.in_force()).to_owned()).await?)
        })?;
        if fields.is_empty() {
            return Ok(Vec::new());
        }
        let mut rows = Vec::new();
        for (field, json) in &fields {
            let Some(name) = field.strip_suffix(":strategy") else { continue };
            let bad = |m: String| self.error(corrupt(format!("strategies in force: {name}: {m}")));
            let segment: Segment = name.parse().map_err(bad)?;
            let strategy = DeliveryStrategy::from_json(segment, json).map_err(bad)?;
            let version = fields
                .get(&format!("{name}:version"))
                .and_then(|v| v.parse::<i64>().ok())
                .ok_or_else(|| bad("no readable version".to_string()))?;
            rows.push((segment, strategy, version));
        }
        in_force_from(rows, &self.changes()?).map_err(|m| self.error(corrupt(m)))
    }

    /// The audit trail: one `HGETALL`, O(changes).
    fn strategy_changes(&self, segment: Option<Segment>) -> Result<Vec<StoredChange>, StoreError> {
        Ok(self.changes()?.into_iter().filter(|c| segment.is_none_or(|s| c.segment == s)).collect())
    }
}

impl StrategyRollback for RedisStore {
    /// Reads the audit trail (one `HGETALL`, only the target's strategies parsed), the
    /// segment's strategy in force and the highest id, then writes by a compare-and-set
    /// script: a writer that changed either meanwhile makes it fail with nothing written
    /// (retryable), as SQLite's immediate transaction keeps such a writer out.
    fn rollback_strategy(&self, id: i64, at: Timestamp) -> Result<StoredChange, RollbackError> {
        let rows = self.change_rows()?;
        let target = rows.iter().find(|r| r.id == id).ok_or(RollbackError::NoSuchChange(id))?;
        let target = target.clone().parse().map_err(|m| self.error(corrupt(m)))?;
        if target.action != "applied" {
            return Err(RollbackError::NotApplied { id, action: target.action });
        }
        let segment = target.segment;
        let (current_json, last) = self.call(move |keys, shared| async move {
            let current = shared.query(
                Cmd::new().arg("HGET").arg(keys.in_force()).arg(format!("{}:strategy", segment.as_str())).to_owned(),
            );
            let current = opt_text(&current.await?)?;
            let last = opt_text(&shared.query(Cmd::new().arg("GET").arg(keys.last_change()).to_owned()).await?)?;
            Ok((current, last))
        })?;
        let current_json = current_json
            .ok_or_else(|| self.error(corrupt(format!("no strategy in force for {}", segment.as_str()))))?;
        let current = DeliveryStrategy::from_json(segment, &current_json)
            .map_err(|m| self.error(corrupt(format!("strategies in force: {}: {m}", segment.as_str()))))?;
        let last = match last {
            Some(v) => v.parse::<i64>().map_err(|_| self.error(corrupt(format!("last change id {v:?}"))))?,
            None => rows.last().map_or(0, |r| r.id),
        };
        let later = rows
            .iter()
            .filter(|r| {
                r.segment == segment.as_str() && r.id > id && (r.action == "applied" || r.action == "rolled_back")
            })
            .count();
        if current == target.strategy_before {
            return Err(RollbackError::AlreadyInForce { id });
        }
        let change =
            rollback_record(&target, &current, i64::try_from(later).unwrap_or(i64::MAX), last.saturating_add(1), at);
        let row = serde_json::to_string(&ChangeRow::of(&change))
            .map_err(|e| self.error(Failure::Server(format!("serialising the rollback: {e}"))))?;
        let args = vec![
            last.to_string(),
            segment.as_str().to_string(),
            current_json,
            row,
            to_json(&change.strategy_after),
            at.secs().to_string(),
        ];
        self.call(move |keys, shared| async move {
            let k = [keys.changes(), keys.last_change(), keys.in_force()];
            shared.eval(&ROLLBACK, &k, &args).await.map(|_| ())
        })?;
        Ok(change)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Segments read back from a profile come highest confidence first, ties by name, as
    /// SQLite orders them; a damaged field is an error, never a default.
    #[test]
    fn segments_read_back_in_sqlite_order() {
        let raw = r#"[{"segment":"WARM_LEAD","confidence":0.5,"reasons":["a"]},
                      {"segment":"COLD_LEAD","confidence":0.5,"reasons":[]},
                      {"segment":"HOT_LEAD","confidence":0.9,"reasons":["b","c"]}]"#;
        let got = segments_of(UserId(7), Some(raw)).expect("readable");
        let names: Vec<&str> = got.iter().map(|s| s.segment.as_str()).collect();
        assert_eq!(names, ["HOT_LEAD", "COLD_LEAD", "WARM_LEAD"]);
        assert_eq!(got[0].reasons, ["b", "c"]);
        assert!(segments_of(UserId(7), Some("")).expect("none").is_empty());
        assert!(segments_of(UserId(7), None).expect("none").is_empty());
        assert!(segments_of(UserId(7), Some("[{\"segment\":\"VIP\",\"confidence\":1,\"reasons\":[]}]")).is_err());
        assert!(segments_of(UserId(7), Some("not json")).is_err());
    }

    /// The save token is the same for the same arguments and differs when any differs,
    /// also when only the split between arguments moves.
    #[test]
    fn the_save_token_tells_calls_apart() {
        let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(token(&args(&["1", "x"])), token(&args(&["1", "x"])));
        assert_ne!(token(&args(&["1", "x"])), token(&args(&["1", "y"])));
        assert_ne!(token(&args(&["1x", ""])), token(&args(&["1", "x"])));
    }
}
