//! [`RedisStore`]: the store in Redis (one node or a Redis Cluster): user profiles with their
//! cap counters, the send/response log as streams, and what a run leaves behind. It owns the
//! store's key layout; the connection and the private runtime are [`crate::redis_link`]'s,
//! so every call completes inside the method and returns a ready future, as the engine
//! requires.
//!
//! # Keys (prefix `P`)
//! - `P{u:ID}:profile` — hash: the profile, the cap counters and what the engine decided
//!   for the user (fields named as the SQLite store's columns; `""` = none). It shares the
//!   user's hash tag with the cap ledger's keys.
//! - `Pusers` — sorted set of every saved user, member = the id zero-padded to 20 digits, all
//!   scores 0: lexicographic order is id order, exact for every `u64` (a score would round
//!   ids above 2^53). [`UserRepository::users_after`] is one `ZRANGE … BYLEX` plus the
//!   profiles, fetched in pipelines per node.
//! - `Plog` — one stream for every kind of entry. The entry id is `AT×1000-SEQ`: the
//!   millisecond part is the entry's time `at` in seconds × 1000, the sequence orders the
//!   entries of one second in the order they were appended. So a time range is one `XRANGE`
//!   and a page's cursor *is* a stream id ([`EventCursor`] `{ at, seq }`). Entries must be
//!   appended in time order, which the engine does (its scheduler writes each window of the
//!   log sorted by time); an entry older than the newest one (two instances writing, each its
//!   own window) is filed right after the newest, with its own time in its fields.
//! - `P{u:ID}:log` — the user's own stream, with the same ids: reading one user's entries
//!   is an `XRANGE` on it, not a filter over everyone's. Written right after `Plog`; a crash
//!   between the two leaves the user's stream one entry short (the global log is complete).
//! - `Prun` — hash: what [`Store::save_run`] records (end time, strategy set, seed,
//!   suppressions, the last run's strategies and audit trail as JSON, the simulation's
//!   population).
//! - `P{strategies}:in_force` — hash: per segment `SEG:strategy` (the strategy as JSON),
//!   `SEG:version` (the id of the change that put it in force, 0: configured) and
//!   `SEG:updated_at`, as the SQLite table `strategies`.
//! - `P{strategies}:changes` — hash: the learner's and operators' audit trail of every run,
//!   field = the store-wide change id, value = the entry as JSON (the columns of the SQLite
//!   table `strategy_changes`); `P{strategies}:last_change` — the highest id given. A run's
//!   entries are appended with ids after it, by one Lua script with the strategies in force,
//!   so that two writers never take the same ids; `P{strategies}:saved` remembers the last
//!   run appended, so that a call repeated after a lost reply appends nothing twice. One
//!   hash tag, so that the script and an operator's rollback (a compare-and-set script, see
//!   [`super::CrmReader`]) work on a cluster too.
//! - `P{u:ID}:contact` — hash: the user's Telegram contact (`first_name`, `username`,
//!   `language_code`, `bot`, `consented_at`; `""` = none), see `redis_contacts`.
//! - `P{group_chats}:chat`, `P{group_chats}:title` — hashes, field = group id: each group's chat id
//!   now and its title; `P{group_chats}:by_chat` — hash, chat id → group id. One hash tag, so
//!   that a migration rewrites all three in one script.
//!
//! Durability is Redis's: a write is acknowledged when Redis has it in memory; with
//! `appendfsync always` also on disk (RELIABILITY.md row 14). [`Store::flush`] therefore
//! only checks that Redis answers.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use ::redis::{Cmd, Value};

use crate::domain::{
    ActivitySummary, BotId, ContentKind, GroupId, HourMask, ResponseHistory, Segment, SendOutcome, Timestamp, UserId,
    UserProfile, UtcOffset, Zone,
};
use crate::policy::CapState;
use crate::redis_link::{Failure, Link, RedisConnectError, RedisOptions, Shared, slot_of, text};

use super::{
    EventCursor, EventLog, EventPage, EventQuery, LogEntry, LogKind, LoggedCaps, RunRecord, Store, StoreError,
    StoreFuture, UserRecord, UserRepository, UserState,
};

/// Key names (see the module documentation).
#[derive(Debug)]
pub(super) struct Keys {
    prefix: String,
}

impl Keys {
    /// A key of the Telegram transport's state: `Ptg:REST` (src/store/telegram.rs).
    pub(super) fn telegram(&self, rest: &str) -> String {
        format!("{}tg:{rest}", self.prefix)
    }

    pub(super) fn profile(&self, user: UserId) -> String {
        format!("{}{{u:{}}}:profile", self.prefix, user.0)
    }
    fn user_log(&self, user: UserId) -> String {
        format!("{}{{u:{}}}:log", self.prefix, user.0)
    }
    fn users(&self) -> String {
        format!("{}users", self.prefix)
    }
    pub(super) fn log(&self) -> String {
        format!("{}log", self.prefix)
    }
    pub(super) fn run(&self) -> String {
        format!("{}run", self.prefix)
    }
    pub(super) fn in_force(&self) -> String {
        format!("{}{{strategies}}:in_force", self.prefix)
    }
    pub(super) fn changes(&self) -> String {
        format!("{}{{strategies}}:changes", self.prefix)
    }
    pub(super) fn last_change(&self) -> String {
        format!("{}{{strategies}}:last_change", self.prefix)
    }
    pub(super) fn saved(&self) -> String {
        format!("{}{{strategies}}:saved", self.prefix)
    }
    pub(super) fn contact(&self, user: UserId) -> String {
        format!("{}{{u:{}}}:contact", self.prefix, user.0)
    }
    pub(super) fn group_chats(&self) -> String {
        format!("{}{{group_chats}}:chat", self.prefix)
    }
    pub(super) fn group_titles(&self) -> String {
        format!("{}{{group_chats}}:title", self.prefix)
    }
    pub(super) fn groups_by_chat(&self) -> String {
        format!("{}{{group_chats}}:by_chat", self.prefix)
    }
}

/// A user id as a member of `Pusers`: zero-padded, so that byte order is id order.
fn member(user: UserId) -> String {
    format!("{:020}", user.0)
}

pub(super) fn kind_name(kind: LogKind) -> &'static str {
    match kind {
        LogKind::Send => "send",
        LogKind::Response => "response",
        LogKind::Conversion => "conversion",
        LogKind::OptOut => "opt_out",
    }
}

/// The store in Redis. See the module documentation for the keys.
#[derive(Debug)]
pub struct RedisStore {
    link: Link,
    keys: Arc<Keys>,
}

impl RedisStore {
    /// Connects with [`RedisOptions::default`]; `url` is a `redis://` URL of one node or of
    /// any node of a cluster, `prefix` starts every key (no `{` or `}`).
    pub fn connect(url: &str, prefix: &str) -> Result<RedisStore, RedisConnectError> {
        RedisStore::connect_with(url, prefix, RedisOptions::default())
    }

    /// Connects with the given options.
    pub fn connect_with(url: &str, prefix: &str, options: RedisOptions) -> Result<RedisStore, RedisConnectError> {
        if prefix.contains(['{', '}']) {
            return Err(RedisConnectError::BadPrefix {
                prefix: prefix.to_string(),
                reason: "must not contain { or }: the hash tags of the keys are the store's".to_string(),
            });
        }
        let link = Link::connect(url, options)?;
        Ok(RedisStore { link, keys: Arc::new(Keys { prefix: prefix.to_string() }) })
    }

    /// The key prefix (for the groups' keys, `super::groups`).
    pub(super) fn key_prefix(&self) -> &str {
        &self.keys.prefix
    }

    pub(super) fn error(&self, fail: Failure) -> StoreError {
        StoreError::Redis { address: self.link.address().to_string(), reason: self.link.scrub(fail.reason_text()) }
    }

    /// Runs one call on the link and turns a failure into a [`StoreError::Redis`].
    pub(super) fn call<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Keys>, Arc<Shared>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<T, Failure>> + Send + 'static,
    {
        let keys = Arc::clone(&self.keys);
        self.link.run(move |shared| f(keys, shared)).map_err(|fail| self.error(fail))
    }

    fn ready<T: Send + 'static>(result: Result<T, StoreError>) -> StoreFuture<T> {
        Box::pin(std::future::ready(result))
    }
}

fn profile_fields(record: &UserRecord) -> Vec<(&'static str, String)> {
    let p = &record.profile;
    let opt = |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_default();
    let segments: Vec<serde_json::Value> = record
        .segments
        .iter()
        .map(|s| serde_json::json!({"segment": s.segment.as_str(), "confidence": s.confidence, "reasons": s.reasons}))
        .collect();
    vec![
        ("joined_at", p.joined_at.secs().to_string()),
        ("utc_offset", p.zone.offset_at(p.activity.last_active).0.to_string()),
        // Empty for a fixed offset (then `utc_offset` is the zone), as older hashes read.
        ("time_zone", p.zone.iana_name().unwrap_or_default().to_string()),
        ("by_local_hour", serde_json::to_string(&p.activity.by_local_hour).unwrap_or_default()),
        ("sessions", p.activity.sessions.to_string()),
        ("last_active", p.activity.last_active.secs().to_string()),
        ("weekly_sessions", p.activity.weekly_sessions.to_string()),
        ("bots_followed", p.bots_followed.to_string()),
        ("purchases", p.purchases.to_string()),
        ("received", p.responses.received.to_string()),
        ("responded", p.responses.responded.to_string()),
        ("recent", p.responses.recent.to_string()),
        ("recent_len", p.responses.recent_len.to_string()),
        ("opted_out", u8::from(record.caps.opted_out).to_string()),
        ("last_sent", opt(record.caps.last_sent.map(Timestamp::secs))),
        ("last_send_day", record.caps.last_send_day.to_string()),
        ("sent_on_last_day", record.caps.sent_on_last_day.to_string()),
        ("governing", record.governing.map(|s| s.as_str().to_string()).unwrap_or_default()),
        ("segments", serde_json::Value::Array(segments).to_string()),
        ("daily_limit", record.caps_in_force.daily_limit.to_string()),
        ("cooldown_secs", record.caps_in_force.cooldown_secs.to_string()),
        ("allowed_hours", record.caps_in_force.allowed_hours.0.to_string()),
        ("period_days", record.caps_in_force.period_days.to_string()),
        ("next_send_at", opt(record.next_send.map(Timestamp::secs))),
    ]
}

/// A hash or stream entry's fields as a map.
pub(super) fn field_map(value: &Value) -> Result<HashMap<String, String>, Failure> {
    let pairs: Vec<(Value, Value)> = match value {
        Value::Map(pairs) => pairs.clone(),
        Value::Array(items) => items.chunks(2).filter(|c| c.len() == 2).map(|c| (c[0].clone(), c[1].clone())).collect(),
        other => return Err(Failure::Server(format!("unexpected reply from Redis: {other:?}"))),
    };
    pairs.iter().map(|(k, v)| Ok((text(k)?, text(v)?))).collect()
}

/// Reads a field that must be present and parse.
pub(super) fn parsed<T: std::str::FromStr>(
    fields: &HashMap<String, String>,
    key: &str,
    what: &str,
) -> Result<T, Failure> {
    let raw = fields.get(key).map(String::as_str).unwrap_or("");
    raw.parse().map_err(|_| Failure::Server(format!("{what}: field {key} holds {raw:?}: damaged or foreign data")))
}

/// Reads an optional field (`""` or absent = none).
pub(super) fn parsed_opt<T: std::str::FromStr>(
    fields: &HashMap<String, String>,
    key: &str,
    what: &str,
) -> Result<Option<T>, Failure> {
    match fields.get(key).map(String::as_str) {
        None | Some("") => Ok(None),
        Some(_) => parsed(fields, key, what).map(Some),
    }
}

/// A hash's or stream entry's zone: its `time_zone` name, or (empty, or written before
/// zones were stored) the fixed offset of its `utc_offset`.
fn zone_from_fields(fields: &HashMap<String, String>, what: &str) -> Result<Zone, Failure> {
    let offset = UtcOffset(parsed(fields, "utc_offset", what)?);
    let name = fields.get("time_zone").map(String::as_str);
    Zone::from_parts(name, offset)
        .map_err(|e| Failure::Server(format!("{what}: field time_zone: {e}: damaged or foreign data")))
}

pub(super) fn user_from_fields(id: UserId, fields: &HashMap<String, String>) -> Result<UserState, Failure> {
    let what = format!("user {}", id.0);
    let what = what.as_str();
    let hours: String = parsed(fields, "by_local_hour", what)?;
    let by_local_hour: [u16; 24] = serde_json::from_str(&hours).map_err(|_| {
        Failure::Server(format!("{what}: field by_local_hour holds {hours:?}: damaged or foreign data"))
    })?;
    let profile = UserProfile {
        id,
        joined_at: Timestamp(parsed(fields, "joined_at", what)?),
        zone: zone_from_fields(fields, what)?,
        activity: ActivitySummary {
            by_local_hour,
            sessions: parsed(fields, "sessions", what)?,
            last_active: Timestamp(parsed(fields, "last_active", what)?),
            weekly_sessions: parsed(fields, "weekly_sessions", what)?,
        },
        bots_followed: parsed(fields, "bots_followed", what)?,
        purchases: parsed(fields, "purchases", what)?,
        responses: ResponseHistory {
            received: parsed(fields, "received", what)?,
            responded: parsed(fields, "responded", what)?,
            recent: parsed(fields, "recent", what)?,
            recent_len: parsed(fields, "recent_len", what)?,
        },
    };
    let caps = CapState {
        opted_out: parsed::<u8>(fields, "opted_out", what)? == 1,
        last_sent: parsed_opt(fields, "last_sent", what)?.map(Timestamp),
        last_send_day: parsed(fields, "last_send_day", what)?,
        sent_on_last_day: parsed(fields, "sent_on_last_day", what)?,
    };
    Ok(UserState { profile, caps })
}

fn entry_fields(e: &LogEntry) -> Vec<(&'static str, String)> {
    let mut f = vec![
        ("kind", kind_name(e.kind).to_string()),
        ("at", e.at.secs().to_string()),
        ("user", e.user.0.to_string()),
        ("utc_offset", e.utc_offset.0.to_string()),
        ("strategy", e.strategy.to_string()),
    ];
    if let Some(name) = e.zone.iana_name() {
        f.push(("time_zone", name.to_string()));
    }
    if let Some(g) = e.group {
        f.push(("group", g.0.to_string()));
    }
    if let Some(s) = e.segment {
        f.push(("segment", s.as_str().to_string()));
    }
    if let Some(c) = e.caps {
        f.push(("caps", format!("{},{},{},{}", c.daily_limit, c.cooldown_secs, c.allowed_hours.0, c.period_days)));
    }
    if let Some(b) = e.bot {
        f.push(("bot", b.0.to_string()));
    }
    if let Some(c) = e.content {
        f.push(("content", c.as_str().to_string()));
    }
    if let Some(a) = &e.arm {
        f.push(("arm", a.to_string()));
    }
    if let Some(o) = e.outcome {
        f.push(("outcome", o.as_str().to_string()));
    }
    f
}

pub(super) fn entry_from_fields(id: &str, f: &HashMap<String, String>) -> Result<LogEntry, Failure> {
    let what = format!("log entry {id}");
    let what = what.as_str();
    let bad = |key: &str, v: &str| Failure::Server(format!("{what}: field {key} holds {v:?}: damaged or foreign data"));
    let get = |key: &str| f.get(key).map(String::as_str);
    let kind = match get("kind").unwrap_or("") {
        "send" => LogKind::Send,
        "response" => LogKind::Response,
        "conversion" => LogKind::Conversion,
        "opt_out" => LogKind::OptOut,
        other => return Err(bad("kind", other)),
    };
    let segment = match get("segment") {
        Some(s) => Some(s.parse::<Segment>().map_err(|_| bad("segment", s))?),
        None => None,
    };
    let caps = match get("caps") {
        Some(s) => {
            let parts: Vec<&str> = s.split(',').collect();
            let [limit, cooldown, hours, period] = parts.as_slice() else { return Err(bad("caps", s)) };
            Some(LoggedCaps {
                daily_limit: limit.parse().map_err(|_| bad("caps", s))?,
                cooldown_secs: cooldown.parse().map_err(|_| bad("caps", s))?,
                allowed_hours: HourMask(hours.parse().map_err(|_| bad("caps", s))?),
                period_days: period.parse().map_err(|_| bad("caps", s))?,
            })
        }
        None => None,
    };
    let content = match get("content") {
        Some(s) => Some(ContentKind::ALL.into_iter().find(|c| c.as_str() == s).ok_or_else(|| bad("content", s))?),
        None => None,
    };
    let outcome = match get("outcome") {
        None => None,
        Some("delivered") => Some(SendOutcome::Delivered),
        Some("unknown") => Some(SendOutcome::Unknown),
        Some(other) => return Err(bad("outcome", other)),
    };
    Ok(LogEntry {
        kind,
        at: Timestamp(parsed(f, "at", what)?),
        user: UserId(parsed(f, "user", what)?),
        utc_offset: UtcOffset(parsed(f, "utc_offset", what)?),
        zone: zone_from_fields(f, what)?,
        group: parsed_opt(f, "group", what)?.map(GroupId),
        segment,
        caps,
        bot: parsed_opt(f, "bot", what)?.map(BotId),
        content,
        strategy: Arc::from(get("strategy").ok_or_else(|| bad("strategy", ""))?),
        arm: get("arm").map(Arc::from),
        outcome,
    })
}

/// A stream id `MS-SEQ` as a cursor (`MS` is the entry's second × 1000).
fn cursor_of(id: &str) -> Result<EventCursor, Failure> {
    let bad = || Failure::Server(format!("unreadable stream id {id:?}"));
    let (ms, seq) = id.split_once('-').ok_or_else(bad)?;
    let ms: i64 = ms.parse().map_err(|_| bad())?;
    Ok(EventCursor { at: Timestamp(ms / 1_000), seq: seq.parse().map_err(|_| bad())? })
}

impl Store for RedisStore {
    fn save_user(&self, record: &UserRecord) -> StoreFuture<()> {
        let id = record.profile.id;
        let fields = profile_fields(record);
        Self::ready(self.call(move |keys, shared| async move {
            let mut hset = Cmd::new();
            hset.arg("HSET").arg(keys.profile(id));
            for (k, v) in fields {
                hset.arg(k).arg(v);
            }
            shared.query(hset).await?;
            // The profile first: a listed user always has one.
            shared.query(Cmd::new().arg("ZADD").arg(keys.users()).arg(0).arg(member(id)).to_owned()).await?;
            Ok(())
        }))
    }

    fn append(&self, entry: &LogEntry) -> StoreFuture<()> {
        let (user, at) = (entry.user, entry.at);
        let fields = entry_fields(entry);
        if at.secs() < 0 || at.secs() > i64::MAX / 1_000 {
            let reason = format!("log entry at {} s cannot be keyed by time in a stream", at.secs());
            return Self::ready(Err(StoreError::Redis { address: self.link.address().to_string(), reason }));
        }
        Self::ready(self.call(move |keys, shared| async move {
            let xadd = |key: String, id: String| {
                let mut c = Cmd::new();
                c.arg("XADD").arg(key).arg(id);
                for (k, v) in &fields {
                    c.arg(*k).arg(v);
                }
                c
            };
            let id = match shared.query(xadd(keys.log(), format!("{}-*", at.secs() * 1_000))).await {
                Ok(id) => text(&id)?,
                // Older than the newest entry (two instances on one Redis, each writing its
                // own window): filed right after the newest, keeping its own time in its
                // fields, so nothing is lost and each user's entries stay in their order.
                Err(Failure::Server(reason)) if reason.contains("equal or smaller") => {
                    text(&shared.query(xadd(keys.log(), "*".to_string())).await?)?
                }
                Err(other) => return Err(other),
            };
            shared.query(xadd(keys.user_log(user), id)).await?;
            Ok(())
        }))
    }

    fn save_run(&self, run: &RunRecord) -> StoreFuture<()> {
        let suppressed: Vec<(&str, &str, u64)> =
            run.suppressed.iter().map(|(s, r, n)| (s.as_str(), r.as_str(), *n)).collect();
        let json = |v: serde_json::Result<String>| v.map_err(|e| Failure::Server(format!("serialising the run: {e}")));
        let fields = (|| -> Result<Vec<(&'static str, String)>, Failure> {
            let mut f = vec![
                ("ended_at", run.ended_at.secs().to_string()),
                ("strategy", run.strategy.clone()),
                ("seed", run.seed.map(|s| s.to_string()).unwrap_or_default()),
                ("suppressed", json(serde_json::to_string(&suppressed))?),
                ("strategies", json(serde_json::to_string(&run.strategies))?),
                ("strategy_changes", json(serde_json::to_string(&run.strategy_changes))?),
            ];
            if let Some(sim) = &run.simulation {
                f.push(("users", sim.users.to_string()));
                f.push(("population_start", sim.population_start.secs().to_string()));
                f.push(("scenario_name", sim.scenario_name.clone()));
                f.push(("scenario", sim.scenario_toml.clone()));
            }
            Ok(f)
        })();
        let fields = match fields {
            Ok(f) => f,
            Err(fail) => return Self::ready(Err(self.error(fail))),
        };
        let strategies = super::redis_crm::SavedStrategies::of(run);
        Self::ready(self.call(move |keys, shared| async move {
            let mut hset = Cmd::new();
            hset.arg("HSET").arg(keys.run());
            for (k, v) in fields {
                hset.arg(k).arg(v);
            }
            shared.query(hset).await?;
            strategies.write(&keys, &shared).await
        }))
    }

    fn flush(&self) -> StoreFuture<()> {
        // Every write above was acknowledged by Redis before it returned.
        Self::ready(
            self.call(|_, shared| async move { shared.query(Cmd::new().arg("PING").to_owned()).await.map(|_| ()) }),
        )
    }
}

impl RedisStore {
    /// What the last [`Store::save_run`] recorded, field by field (`None` if no run was
    /// saved under this prefix).
    pub fn saved_run(&self) -> Result<Option<BTreeMap<String, String>>, StoreError> {
        let fields = self.call(|keys, shared| async move {
            field_map(&shared.query(Cmd::new().arg("HGETALL").arg(keys.run()).to_owned()).await?)
        })?;
        Ok((!fields.is_empty()).then(|| fields.into_iter().collect()))
    }
}

impl UserRepository for RedisStore {
    fn count_users(&self) -> Result<u64, StoreError> {
        self.call(|keys, shared| async move {
            match shared.query(Cmd::new().arg("ZCARD").arg(keys.users()).to_owned()).await? {
                Value::Int(n) => Ok(u64::try_from(n).unwrap_or(0)),
                other => Err(Failure::Server(format!("unexpected reply to ZCARD: {other:?}"))),
            }
        })
    }

    fn users_after(&self, after: Option<UserId>, limit: usize) -> Result<Vec<UserState>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.call(move |keys, shared| async move {
            let ids = ids_after(&keys, &shared, after, limit).await?;
            let cmds = ids
                .iter()
                .map(|u| (slot_of(&format!("u:{}", u.0)), Cmd::new().arg("HGETALL").arg(keys.profile(*u)).to_owned()))
                .collect();
            let profiles = shared.query_by_slot(cmds).await?;
            ids.iter().zip(profiles).map(|(id, p)| user_from_fields(*id, &field_map(&p)?)).collect()
        })
    }
}

/// At most `limit` ids of saved users greater than `after`, in id order: one `ZRANGE …
/// BYLEX` on `Pusers`.
pub(super) async fn ids_after(
    keys: &Keys,
    shared: &Shared,
    after: Option<UserId>,
    limit: usize,
) -> Result<Vec<UserId>, Failure> {
    let start = after.map_or_else(|| "-".to_string(), |u| format!("({}", member(u)));
    let ids = shared
        .query(
            Cmd::new()
                .arg("ZRANGE")
                .arg(keys.users())
                .arg(start)
                .arg("+")
                .arg("BYLEX")
                .arg("LIMIT")
                .arg(0)
                .arg(limit)
                .to_owned(),
        )
        .await?;
    let Value::Array(ids) = ids else { return Err(Failure::Server(format!("unexpected reply: {ids:?}"))) };
    ids.iter()
        .map(|v| {
            let t = text(v)?;
            t.parse().map(UserId).map_err(|_| Failure::Server(format!("users index holds {t:?}")))
        })
        .collect()
}

impl EventLog for RedisStore {
    fn page(&self, query: &EventQuery, after: Option<EventCursor>, limit: usize) -> Result<EventPage, StoreError> {
        if limit == 0 || query.from >= query.to || query.to.secs() <= 0 {
            return Ok(EventPage { entries: Vec::new(), next: None });
        }
        let from_ms = query.from.secs().max(0).saturating_mul(1_000);
        let start = match after {
            Some(c) if c.at.secs().saturating_mul(1_000) >= from_ms => {
                format!("({}-{}", c.at.secs().saturating_mul(1_000), c.seq)
            }
            _ => format!("{from_ms}-0"),
        };
        let end = format!("{}-{}", query.to.secs().saturating_mul(1_000) - 1, u64::MAX);
        let user = query.user;
        self.call(move |keys, shared| async move {
            let key = user.map_or_else(|| keys.log(), |u| keys.user_log(u));
            let reply = shared
                .query(Cmd::new().arg("XRANGE").arg(key).arg(start).arg(end).arg("COUNT").arg(limit + 1).to_owned())
                .await?;
            let Value::Array(items) = reply else {
                return Err(Failure::Server(format!("unexpected reply to XRANGE: {reply:?}")));
            };
            let mut entries = Vec::with_capacity(items.len().min(limit));
            let mut next = None;
            for item in items.iter().take(limit) {
                let Value::Array(pair) = item else {
                    return Err(Failure::Server(format!("unexpected entry {item:?}")));
                };
                let [id, fields] = pair.as_slice() else {
                    return Err(Failure::Server(format!("unexpected entry {item:?}")));
                };
                let id = text(id)?;
                entries.push(entry_from_fields(&id, &field_map(fields)?)?);
                next = Some(cursor_of(&id)?);
            }
            Ok(EventPage { entries, next: if items.len() > limit { next } else { None } })
        })
    }
}
