//! [`RedisLedger`]: the cap ledger of a live engine, in Redis (one node or a Redis Cluster).
//! It owns the key layout and the Lua scripts of the cap gate; the connection, the private
//! runtime and the fail-closed health state are [`crate::redis_link`]'s.
//!
//! # Keys (prefix `P`, e.g. `gavat:`)
//! Everything of one user shares the hash tag `{u:ID}`, so one script sees all of it on a
//! cluster:
//! - `P{u:ID}:cap` — hash: `o` opted out, `l` last counted send, `d` its local day, `n`
//!   sends counted that day (the counted [`CapState`]), `q` the grant sequence.
//! - `P{u:ID}:pend` — sorted set of the pending reservations, member `MSG:AT`, scored by the
//!   grant sequence (so [`CapLedger::load`] lists them in grant order).
//!   The same hash holds the member's exposure to group posts: `xd` the local day of the
//!   latest counted share, `xn` shares counted that day ([`Exposure`](super::Exposure)).
//! - `P{u:ID}:xpend` — sorted set of the pending group shares, like `pend` (direct caps
//!   never see them; the exposure limit does).
//! - `P{u:ID}:m:MSG` — hash: the message's record (`u` user, `d` decision, `at`, `off`
//!   offset, `s` pending/counted/released, `snd` handed to the transport). No expiry while
//!   pending; kept for the retention window once settled or denied.
//!
//! Beside them, per cluster slot (tag `{sN}`, a tag that maps to that slot; one node uses the
//! single tag `{g}`):
//! - `P{sN}:epoch` — the epoch: a random value written at the first connect and checked by
//!   every script. Gone or changed means the data was lost (`FLUSHALL`, a restart without
//!   persistence, a failover to a node without the data): the ledger pauses for good.
//! - `P{sN}:pending` — set of `MSG:USER` of the slot's pending reservations, for
//!   [`CapLedger::recover`] (no `SCAN` over a cluster).
//!
//! And, since confirm/release/sending are given only a message id:
//! - `Pidx:MSG` — the message → user index, written (`SET NX GET`) before the reservation
//!   and checked for a conflict; it expires after the retention window. On one node the
//!   reserve script writes it itself (one round trip); on a cluster it lives in another slot
//!   and is written first (two round trips).
//!
//! # The sending check (RELIABILITY.md rule 7)
//! [`CapLedger::sending`] runs the settle script in mode `sending` over the same `{u:ID}`
//! keys: one `HMGET` of the message record and one `HGET` of the user's opt-out flag, O(1).
//! A user opted out since the reservation — by this engine or another on the same Redis —
//! gets `opted_out` ([`LedgerError::OptedOut`]) and the record is left pending for the
//! engine to release. Pending records carry no expiry, so there is no lease to run out
//! here: a reservation whose engine died is settled by [`CapLedger::recover`], after which
//! `sending` answers `NotReserved`.
//!
//! # The reserve script
//! One `EVALSHA` per reservation, atomic: epoch check; index (one node); "already decided
//! for this message id?" (the first decision, or a conflict); opt-out; no segment; allowed
//! local hours (a 24-bit mask); the daily count of the user's local day; the cooldown; the
//! frequency — each against the counted state *plus every pending reservation* — then the
//! reservation is written. O(1) in the user's history: the only loop is over the pending
//! reservations, which the caps themselves bound (a reservation is granted only below the
//! daily limit, and a live engine settles each within seconds; `recover` settles the rest).
//!
//! The decision rules are [`policy::decide`](crate::policy::decide)'s, restated in Lua;
//! [`conformance::check_async`](super::conformance::check_async) holds the two equal.

use std::sync::Arc;

use ::redis::{Cmd, Value};
use futures::future::ready;

use crate::domain::{HourMask, Timestamp, UserId, Zone};
use crate::policy::{CapState, SuppressReason};
use crate::redis_link::{Failure, Link, RedisConnectError, RedisOptions, Script, Shared, slot_of, slot_tags, text};

use super::{
    CapLedger, Counted, Exposure, LedgerError, LedgerFuture, LedgerUser, MessageId, Recovery, Reservation, Reserved,
    ShareReservation, check_kind, is_group_share,
};

const RESERVE_SHARE_LUA: &str = r#"#!lua
-- gavat cap gate: reserve one member's share of a group post against the member's exposure.
-- KEYS: epoch, cap, xpend, msg, slot pending[, index].
-- ARGV: epoch, msg, user, at, offset secs, exposure limit, retention ms, max clock skew secs (0: off),
--   zone change at, offset secs before it.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return {'epoch'} end
local msg, user = ARGV[2], ARGV[3]
if KEYS[6] then
  local first = redis.call('SET', KEYS[6], user, 'NX', 'GET', 'PX', ARGV[7])
  if first and first ~= user then return {'conflict', first} end
end
local rec = redis.call('HMGET', KEYS[4], 'u', 'd')
if rec[1] then
  if rec[1] ~= user then return {'conflict', rec[1]} end
  return {'decided', rec[2]}
end
local skew = tonumber(ARGV[8]) or 0
if skew > 0 then
  local t = redis.call('TIME')
  local d = tonumber(ARGV[4]) - tonumber(t[1])
  if d > skew or d < -skew then return {'skew', t[1]} end
end
local now, off, limit = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local since, before = tonumber(ARGV[9]), tonumber(ARGV[10])
local function off_at(t) if t < since then return before end return off end
local c = redis.call('HMGET', KEYS[2], 'o', 'xd', 'xn')
local reason = nil
if c[1] == '1' then
  reason = 'opted_out'
else
  local day = math.floor((now + off) / 86400)
  local seen = 0
  if tonumber(c[2]) == day then seen = tonumber(c[3]) or 0 end
  for _, m in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do
    local at = tonumber(string.match(m, ':(-?%d+)$'))
    if math.floor((at + off_at(at)) / 86400) == day then seen = seen + 1 end
  end
  if seen >= limit then reason = 'exposure_limit' end
end
if reason then
  redis.call('HSET', KEYS[4], 'u', user, 'd', reason, 'at', ARGV[4], 'off', ARGV[5], 's', 'r')
  redis.call('PEXPIRE', KEYS[4], ARGV[7])
  return {'decided', reason}
end
local seq = redis.call('HINCRBY', KEYS[2], 'q', 1)
redis.call('ZADD', KEYS[3], seq, msg .. ':' .. ARGV[4])
redis.call('HSET', KEYS[4], 'u', user, 'd', 'granted', 'at', ARGV[4], 'off', ARGV[5], 's', 'p')
redis.call('SADD', KEYS[5], msg .. ':' .. user)
return {'decided', 'granted'}
"#;

const RESERVE_LUA: &str = r#"#!lua
-- gavat cap gate: reserve one message. KEYS: epoch, cap, pend, msg, slot pending[, index].
-- ARGV: epoch, msg, user, at, offset secs, daily limit, cooldown secs, hour mask, period days, retention ms,
--   max clock skew secs (0: off), zone change at, offset secs before it (a pending reservation before the
--   change is dated with it).
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return {'epoch'} end
local msg, user = ARGV[2], ARGV[3]
if KEYS[6] then
  local first = redis.call('SET', KEYS[6], user, 'NX', 'GET', 'PX', ARGV[10])
  if first and first ~= user then return {'conflict', first} end
end
local rec = redis.call('HMGET', KEYS[4], 'u', 'd')
if rec[1] then
  if rec[1] ~= user then return {'conflict', rec[1]} end
  return {'decided', rec[2]}
end
local skew = tonumber(ARGV[11]) or 0
if skew > 0 then
  local t = redis.call('TIME')
  local d = tonumber(ARGV[4]) - tonumber(t[1])
  if d > skew or d < -skew then return {'skew', t[1]} end
end
local now, off = tonumber(ARGV[4]), tonumber(ARGV[5])
local limit, cooldown, mask, period = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local since, before = tonumber(ARGV[12]), tonumber(ARGV[13])
local function off_at(t) if t < since then return before end return off end
local c = redis.call('HMGET', KEYS[2], 'o', 'l', 'd', 'n')
local reason = nil
if c[1] == '1' then
  reason = 'opted_out'
elseif limit == 0 and mask == 0 then
  reason = 'no_segment'
else
  local day = math.floor((now + off) / 86400)
  local hour = math.floor((now + off - day * 86400) / 3600)
  if math.floor(mask / 2 ^ hour) % 2 == 0 then
    reason = 'quiet_hours'
  else
    local last, lday, n = tonumber(c[2]), tonumber(c[3]) or 0, tonumber(c[4]) or 0
    for _, m in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do
      local at = tonumber(string.match(m, ':(-?%d+)$'))
      local d = math.floor((at + off_at(at)) / 86400)
      if last and d == lday then
        n = n + 1
        if at > last then last = at end
      elseif not (last and d < lday) then
        last, lday, n = at, d, 1
      end
    end
    local today = 0
    if last and day == lday then today = n end
    if today >= limit then
      reason = 'daily_limit'
    elseif last and now - last < cooldown then
      reason = 'cooldown'
    elseif last and day ~= lday and day < lday + period then
      reason = 'frequency'
    end
  end
end
if reason then
  redis.call('HSET', KEYS[4], 'u', user, 'd', reason, 'at', ARGV[4], 'off', ARGV[5], 's', 'r')
  redis.call('PEXPIRE', KEYS[4], ARGV[10])
  return {'decided', reason}
end
local seq = redis.call('HINCRBY', KEYS[2], 'q', 1)
redis.call('ZADD', KEYS[3], seq, msg .. ':' .. ARGV[4])
redis.call('HSET', KEYS[4], 'u', user, 'd', 'granted', 'at', ARGV[4], 'off', ARGV[5], 's', 'p')
redis.call('SADD', KEYS[5], msg .. ':' .. user)
return {'decided', 'granted'}
"#;

const SETTLE_LUA: &str = r#"#!lua
-- gavat cap gate: settle (delivered | unknown | release), mark sending, or recover one message.
-- Marking sending refuses a user opted out since the reservation (rule 7's second check).
-- KEYS: epoch, cap, pend (xpend for a share), msg, slot pending.
-- ARGV: epoch, msg, user, mode, retention ms, group share (1/0).
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return {'epoch'} end
local msg, user, mode = ARGV[2], ARGV[3], ARGV[4]
local r = redis.call('HMGET', KEYS[4], 'u', 'd', 's', 'at', 'off', 'snd')
if r[1] ~= user or r[2] ~= 'granted' then
  if mode == 'recover' then redis.call('SREM', KEYS[5], msg .. ':' .. user) end
  return {'not_reserved'}
end
if mode == 'sending' then
  if r[3] ~= 'p' then return {'not_reserved'} end
  if redis.call('HGET', KEYS[2], 'o') == '1' then return {'opted_out'} end
  redis.call('HSET', KEYS[4], 'snd', '1')
  return {'ok', 'sending'}
end
if r[3] ~= 'p' then
  if mode == 'recover' then redis.call('SREM', KEYS[5], msg .. ':' .. user) end
  return {'ok', 'settled'}
end
if mode == 'recover' then
  if r[6] == '1' or ARGV[6] == '1' then mode = 'unknown' else mode = 'release' end
end
local counted = mode ~= 'release'
if counted then redis.call('HSET', KEYS[4], 's', 'c') else redis.call('HSET', KEYS[4], 's', 'r') end
redis.call('PEXPIRE', KEYS[4], ARGV[5])
redis.call('ZREM', KEYS[3], msg .. ':' .. r[4])
redis.call('SREM', KEYS[5], msg .. ':' .. user)
if counted and ARGV[6] == '1' then
  local d = math.floor((tonumber(r[4]) + tonumber(r[5])) / 86400)
  local x = redis.call('HMGET', KEYS[2], 'xd', 'xn')
  local xd, xn = tonumber(x[1]) or 0, tonumber(x[2]) or 0
  if d == xd then
    redis.call('HINCRBY', KEYS[2], 'xn', 1)
  elseif d > xd or xn == 0 then
    redis.call('HSET', KEYS[2], 'xd', string.format('%d', d), 'xn', '1')
  end
elseif counted then
  local at = tonumber(r[4])
  local d = math.floor((at + tonumber(r[5])) / 86400)
  local c = redis.call('HMGET', KEYS[2], 'l', 'd')
  local last, lday = tonumber(c[1]), tonumber(c[2]) or 0
  if last and d == lday then
    redis.call('HINCRBY', KEYS[2], 'n', 1)
    if at > last then redis.call('HSET', KEYS[2], 'l', r[4]) end
  elseif not (last and d < lday) then
    redis.call('HSET', KEYS[2], 'l', r[4], 'd', string.format('%d', d), 'n', '1')
  end
end
return {'ok', mode}
"#;

const OPT_OUT_LUA: &str = r#"#!lua
-- gavat cap gate: opt a user out, for good. KEYS: epoch, cap. ARGV: epoch.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return {'epoch'} end
redis.call('HSET', KEYS[2], 'o', '1')
return {'ok'}
"#;

const RE_CONSENT_LUA: &str = r#"#!lua
-- gavat cap gate: lift an opt-out (the user's own /start). KEYS: epoch, cap. ARGV: epoch.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return {'epoch'} end
if redis.call('HEXISTS', KEYS[2], 'o') == 1 then redis.call('HSET', KEYS[2], 'o', '0') end
return {'ok'}
"#;

const LOAD_LUA: &str = r#"#!lua flags=no-writes
-- gavat cap gate: read a user's state. KEYS: epoch, cap, pend, xpend. ARGV: epoch.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return {'epoch'} end
local c = redis.call('HMGET', KEYS[2], 'o', 'l', 'd', 'n', 'xd', 'xn')
return {'ok', c[1] or '', c[2] or '', c[3] or '', c[4] or '', redis.call('ZRANGE', KEYS[3], 0, -1),
  c[5] or '', c[6] or '', redis.call('ZRANGE', KEYS[4], 0, -1)}
"#;

/// How long back a reserve script dates pending reservations by the zone's offsets: pending
/// reservations settle within seconds (`recover` settles a crash's), so a month is ample.
const ZONE_LOOKBACK_SECS: i64 = 31 * 86_400;

/// The reserve scripts' last two arguments: the zone's latest offset change within
/// [`ZONE_LOOKBACK_SECS`] before `at`, and the offset (seconds) before it — so that a
/// pending reservation from before a DST change falls in its own local day. No change:
/// the far past, and the offset in force.
fn zone_change_args(zone: Zone, at: Timestamp) -> [String; 2] {
    match zone.last_change(at, ZONE_LOOKBACK_SECS) {
        Some((since, before)) => [since.secs().to_string(), before.secs().to_string()],
        None => [i64::MIN.to_string(), zone.offset_at(at).secs().to_string()],
    }
}

/// The gate's scripts, loaded once per connect (and again after `SCRIPT FLUSH`).
#[derive(Debug)]
struct Scripts {
    reserve: Script,
    reserve_share: Script,
    settle: Script,
    opt_out: Script,
    re_consent: Script,
    load: Script,
}

impl Scripts {
    fn new() -> Scripts {
        Scripts {
            reserve: Script::new("reserve", RESERVE_LUA),
            reserve_share: Script::new("reserve_share", RESERVE_SHARE_LUA),
            settle: Script::new("settle", SETTLE_LUA),
            opt_out: Script::new("opt_out", OPT_OUT_LUA),
            re_consent: Script::new("re_consent", RE_CONSENT_LUA),
            load: Script::new("load", LOAD_LUA),
        }
    }

    fn all(&self) -> [&Script; 6] {
        [&self.reserve, &self.reserve_share, &self.settle, &self.opt_out, &self.re_consent, &self.load]
    }
}

/// Key names (see the module documentation) and what every call needs besides the link.
#[derive(Debug)]
struct Gate {
    prefix: String,
    cluster: bool,
    epoch: String,
    retention_ms: u64,
    /// [`RedisOptions::max_clock_skew`] in seconds; 0 when off.
    max_skew_secs: u64,
    /// Reservations refused for clock skew.
    skew_rejections: std::sync::atomic::AtomicU64,
    scripts: Scripts,
}

impl Gate {
    fn user_key(&self, user: UserId, part: &str) -> String {
        format!("{}{{u:{}}}:{part}", self.prefix, user.0)
    }

    fn message_key(&self, user: UserId, message: MessageId) -> String {
        format!("{}{{u:{}}}:m:{}", self.prefix, user.0, message.0)
    }

    fn index_key(&self, message: MessageId) -> String {
        format!("{}idx:{}", self.prefix, message.0)
    }

    /// The per-slot tag of a user's slot (`g` on one node).
    fn slot_tag(&self, user: UserId) -> &str {
        if self.cluster { &slot_tags()[slot_of(&format!("u:{}", user.0))] } else { "g" }
    }

    fn epoch_key(&self, tag: &str) -> String {
        format!("{}{{{tag}}}:epoch", self.prefix)
    }

    fn pending_key(&self, tag: &str) -> String {
        format!("{}{{{tag}}}:pending", self.prefix)
    }

    /// Every per-slot tag in use.
    fn tags(&self) -> Vec<&str> {
        if self.cluster { slot_tags().iter().map(String::as_str).collect() } else { vec!["g"] }
    }

    /// The keys every user-slot script starts with: epoch, cap, pending set of the message's
    /// kind (`pend`, or `xpend` for a group share), message, slot pending.
    fn user_keys(&self, user: UserId, message: MessageId) -> Vec<String> {
        let tag = self.slot_tag(user);
        vec![
            self.epoch_key(tag),
            self.user_key(user, "cap"),
            self.user_key(user, if is_group_share(message) { "xpend" } else { "pend" }),
            self.message_key(user, message),
            self.pending_key(tag),
        ]
    }

    /// The reason given when a script found the epoch gone or changed; a restart, if that
    /// is what happened, is named instead.
    async fn epoch_lost(&self, shared: &Shared, user: UserId) -> Failure {
        if let Err(restart @ Failure::Lost(_)) = shared.verify().await {
            return restart;
        }
        Failure::Lost(format!(
            "the ledger's epoch key {} is gone or changed (FLUSHALL, a restart without persistence, or a failover \
             to a node without the data): counters, opt-outs and reservations are lost and nothing is sent. \
             Restore the data, or accept the loss knowingly and restart gavat, which writes a new epoch \
             (RELIABILITY.md rows 6, 15)",
            self.epoch_key(self.slot_tag(user))
        ))
    }

    async fn reserve(&self, shared: &Shared, r: Reservation) -> Result<Result<Reserved, LedgerError>, Failure> {
        if let Err(e) = check_kind(r.message, false) {
            return Ok(Err(e));
        }
        let mut args = vec![
            self.epoch.clone(),
            r.message.0.to_string(),
            r.user.0.to_string(),
            r.at.secs().to_string(),
            r.zone.offset_at(r.at).secs().to_string(),
            r.caps.daily_limit.to_string(),
            r.caps.cooldown_secs.to_string(),
            (r.caps.allowed_hours.0 & HourMask::ALL_DAY.0).to_string(),
            r.caps.period_days.to_string(),
            self.retention_ms.to_string(),
            self.max_skew_secs.to_string(),
        ];
        args.extend(zone_change_args(r.zone, r.at));
        self.reserve_with(shared, &self.scripts.reserve, r.message, r.user, args).await
    }

    async fn reserve_share(
        &self,
        shared: &Shared,
        r: ShareReservation,
    ) -> Result<Result<Reserved, LedgerError>, Failure> {
        if let Err(e) = check_kind(r.message, true) {
            return Ok(Err(e));
        }
        let mut args = vec![
            self.epoch.clone(),
            r.message.0.to_string(),
            r.user.0.to_string(),
            r.at.secs().to_string(),
            r.zone.offset_at(r.at).secs().to_string(),
            r.exposure_limit.to_string(),
            self.retention_ms.to_string(),
            self.max_skew_secs.to_string(),
        ];
        args.extend(zone_change_args(r.zone, r.at));
        self.reserve_with(shared, &self.scripts.reserve_share, r.message, r.user, args).await
    }

    /// Runs a reserve script (the index first on a cluster) and reads its answer.
    async fn reserve_with(
        &self,
        shared: &Shared,
        script: &Script,
        message: MessageId,
        user_id: UserId,
        args: Vec<String>,
    ) -> Result<Result<Reserved, LedgerError>, Failure> {
        let user = user_id.0.to_string();
        let mut keys = self.user_keys(user_id, message);
        if self.cluster {
            let first = shared
                .query(
                    Cmd::new()
                        .arg("SET")
                        .arg(self.index_key(message))
                        .arg(&user)
                        .arg("NX")
                        .arg("GET")
                        .arg("PX")
                        .arg(self.retention_ms)
                        .to_owned(),
                )
                .await?;
            if first != Value::Nil {
                let first = text(&first)?;
                if first != user {
                    return Ok(Err(conflict(message, user_id, &first)?));
                }
            }
        } else {
            keys.push(self.index_key(message));
        }
        let reply = strings(&shared.eval(script, &keys, &args).await?)?;
        match reply.as_slice() {
            [s] if s == "epoch" => Err(self.epoch_lost(shared, user_id).await),
            [s, first] if s == "conflict" => Ok(Err(conflict(message, user_id, first)?)),
            [s, redis_now] if s == "skew" => {
                self.skew_rejections.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let engine_now: i64 = args[3].parse().unwrap_or_default();
                let skew = engine_now - redis_now.parse::<i64>().unwrap_or_default();
                Ok(Err(LedgerError::Unavailable {
                    reason: format!(
                        "clock skew: the engine's clock is {skew:+} s from the Redis server's, beyond the bound of \
                         {} s; no decision is taken on it. Fix the engine host's clock (NTP) (RELIABILITY.md rows \
                         24, 41)",
                        self.max_skew_secs
                    ),
                }))
            }
            [s, decision] if s == "decided" => Ok(Ok(parse_decision(decision)?)),
            _ => Err(unexpected(&reply)),
        }
    }

    /// Confirms, releases or marks sending (`mode`), after finding the message's user.
    async fn settle(
        &self,
        shared: &Shared,
        message: MessageId,
        mode: &str,
    ) -> Result<Result<(), LedgerError>, Failure> {
        let found = shared.query(Cmd::new().arg("GET").arg(self.index_key(message)).to_owned()).await?;
        if found == Value::Nil {
            return Ok(Err(LedgerError::NotReserved { message }));
        }
        let user = parse_user(&text(&found)?)?;
        let reply = self.settle_for(shared, user, message, mode).await?;
        match reply.first().map(String::as_str) {
            Some("ok") => Ok(Ok(())),
            Some("not_reserved") => Ok(Err(LedgerError::NotReserved { message })),
            Some("opted_out") => Ok(Err(LedgerError::OptedOut { message })),
            _ => Err(unexpected(&reply)),
        }
    }

    async fn settle_for(
        &self,
        shared: &Shared,
        user: UserId,
        message: MessageId,
        mode: &str,
    ) -> Result<Vec<String>, Failure> {
        let args = vec![
            self.epoch.clone(),
            message.0.to_string(),
            user.0.to_string(),
            mode.to_string(),
            self.retention_ms.to_string(),
            if is_group_share(message) { "1" } else { "0" }.to_string(),
        ];
        let reply = strings(&shared.eval(&self.scripts.settle, &self.user_keys(user, message), &args).await?)?;
        if reply.first().map(String::as_str) == Some("epoch") {
            return Err(self.epoch_lost(shared, user).await);
        }
        Ok(reply)
    }

    async fn opt_out(&self, shared: &Shared, user: UserId) -> Result<(), Failure> {
        self.flag(shared, user, &self.scripts.opt_out).await
    }

    async fn re_consent(&self, shared: &Shared, user: UserId) -> Result<(), Failure> {
        self.flag(shared, user, &self.scripts.re_consent).await
    }

    /// Runs `script`, which sets or clears the opt-out flag of `user`.
    async fn flag(&self, shared: &Shared, user: UserId, script: &Script) -> Result<(), Failure> {
        let keys = vec![self.epoch_key(self.slot_tag(user)), self.user_key(user, "cap")];
        let reply = strings(&shared.eval(script, &keys, std::slice::from_ref(&self.epoch)).await?)?;
        match reply.first().map(String::as_str) {
            Some("ok") => Ok(()),
            Some("epoch") => Err(self.epoch_lost(shared, user).await),
            _ => Err(unexpected(&reply)),
        }
    }

    async fn load(&self, shared: &Shared, user: UserId) -> Result<LedgerUser, Failure> {
        let keys = vec![
            self.epoch_key(self.slot_tag(user)),
            self.user_key(user, "cap"),
            self.user_key(user, "pend"),
            self.user_key(user, "xpend"),
        ];
        let reply = shared.eval(&self.scripts.load, &keys, std::slice::from_ref(&self.epoch)).await?;
        let Value::Array(items) = reply else { return Err(unexpected_value(&reply)) };
        let head: Vec<String> = items.iter().take(5).map(text).collect::<Result<_, _>>()?;
        match head.first().map(String::as_str) {
            Some("ok") if items.len() == 9 => {}
            Some("epoch") => return Err(self.epoch_lost(shared, user).await),
            _ => return Err(unexpected(&head)),
        }
        let number = |s: &str| -> Result<Option<i64>, Failure> {
            if s.is_empty() { Ok(None) } else { s.parse().map(Some).map_err(|_| bad_value("a number", s)) }
        };
        let counted = CapState {
            opted_out: head[1] == "1",
            last_sent: number(&head[2])?.map(Timestamp),
            last_send_day: number(&head[3])?.unwrap_or(0),
            sent_on_last_day: number(&head[4])?.unwrap_or(0).try_into().map_err(|_| bad_value("a count", &head[4]))?,
        };
        let pending_of = |item: &Value| -> Result<Vec<(MessageId, Timestamp)>, Failure> {
            let mut pending = Vec::new();
            for member in strings(item)? {
                let (m, at) = member.split_once(':').ok_or_else(|| bad_value("MSG:AT", &member))?;
                let m = m.parse().map_err(|_| bad_value("a message id", m))?;
                let at = at.parse().map_err(|_| bad_value("a time", at))?;
                pending.push((MessageId(m), Timestamp(at)));
            }
            Ok(pending)
        };
        let (exposure_day, exposure_seen) = (text(&items[6])?, text(&items[7])?);
        let exposure = Exposure {
            day: number(&exposure_day)?.unwrap_or(0),
            seen: number(&exposure_seen)?.unwrap_or(0).try_into().map_err(|_| bad_value("a count", &exposure_seen))?,
        };
        Ok(LedgerUser { counted, pending: pending_of(&items[5])?, exposure, pending_shares: pending_of(&items[8])? })
    }

    async fn recover(&self, shared: &Shared) -> Result<Recovery, Failure> {
        let cmds = self
            .tags()
            .iter()
            .map(|t| (slot_of(t), Cmd::new().arg("SMEMBERS").arg(self.pending_key(t)).to_owned()))
            .collect();
        let sets = shared.query_by_slot(cmds).await?;
        let mut recovery = Recovery::default();
        for set in sets {
            for member in strings(&set)? {
                let (m, u) = member.split_once(':').ok_or_else(|| bad_value("MSG:USER", &member))?;
                let message = MessageId(m.parse().map_err(|_| bad_value("a message id", m))?);
                let user = parse_user(u)?;
                let reply = self.settle_for(shared, user, message, "recover").await?;
                match reply.get(1).map(String::as_str) {
                    Some("unknown") => recovery.unknown += 1,
                    Some("release") => recovery.released += 1,
                    _ => {}
                }
            }
        }
        Ok(recovery)
    }
}

fn conflict(message: MessageId, now: UserId, first: &str) -> Result<LedgerError, Failure> {
    Ok(LedgerError::Conflict { message, first: parse_user(first)?, now })
}

fn parse_user(s: &str) -> Result<UserId, Failure> {
    s.parse().map(UserId).map_err(|_| bad_value("a user id", s))
}

fn parse_decision(s: &str) -> Result<Reserved, Failure> {
    if s == "granted" {
        return Ok(Reserved::Granted);
    }
    SuppressReason::ALL
        .into_iter()
        .find(|r| r.as_str() == s)
        .map(Reserved::Denied)
        .ok_or_else(|| bad_value("a decision", s))
}

fn strings(value: &Value) -> Result<Vec<String>, Failure> {
    match value {
        Value::Array(items) => items.iter().map(text).collect(),
        other => Err(unexpected_value(other)),
    }
}

fn bad_value(what: &str, found: &str) -> Failure {
    Failure::Server(format!("the ledger's data in Redis holds {found:?} where {what} belongs: damaged or foreign keys"))
}

fn unexpected(reply: &[String]) -> Failure {
    Failure::Server(format!("unexpected reply from a ledger script: {reply:?}"))
}

fn unexpected_value(reply: &Value) -> Failure {
    Failure::Server(format!("unexpected reply from a ledger script: {reply:?}"))
}

/// A random epoch value. `RandomState` is seeded from the operating system's randomness;
/// two of its hashes (and the time Redis reports, mixed in by the caller) make a value no
/// other connect draws.
fn random_epoch(salt: &str) -> String {
    use std::hash::BuildHasher;
    let a = std::hash::RandomState::new().hash_one(salt);
    let b = std::hash::RandomState::new().hash_one((salt, a));
    format!("{a:016x}{b:016x}")
}

/// The cap ledger in Redis. See the module documentation for the keys and the scripts, and
/// [`crate::redis_link`] for how a call is made and how the ledger fails closed.
#[derive(Debug)]
pub struct RedisLedger {
    link: Link,
    gate: Arc<Gate>,
}

impl RedisLedger {
    /// Connects with [`RedisOptions::default`]. `url` is a `redis://` URL of one node, or of
    /// any node of a Redis Cluster (detected with `INFO server`); `prefix` starts every key
    /// (no `{` or `}`).
    pub fn connect(url: &str, prefix: &str) -> Result<RedisLedger, RedisConnectError> {
        RedisLedger::connect_with(url, prefix, RedisOptions::default())
    }

    /// Connects, and refuses to start unless the data can be trusted: Redis 7 or later,
    /// `maxmemory-policy noeviction` on every primary (an evicted counter or opt-out would let
    /// a cap be exceeded), and an epoch that is either new or the same in every slot. Writes
    /// the epoch if there is none, remembers every primary's `run_id`, and loads the scripts.
    pub fn connect_with(url: &str, prefix: &str, options: RedisOptions) -> Result<RedisLedger, RedisConnectError> {
        if prefix.contains(['{', '}']) {
            return Err(RedisConnectError::BadPrefix {
                prefix: prefix.to_string(),
                reason: "must not contain { or }: the hash tags of the keys are the ledger's".to_string(),
            });
        }
        let link = Link::connect(url, options)?;
        let address = link.address().to_string();
        let unreachable =
            |f: Failure| RedisConnectError::Unreachable { address: address.clone(), reason: f.reason_text() };
        let slow = options.connect_timeout.max(options.call_timeout) * 30;

        let policies = link
            .run_for(slow, |s| async move {
                s.on_every_primary(Cmd::new().arg("CONFIG").arg("GET").arg("maxmemory-policy").to_owned()).await
            })
            .map_err(&unreachable)?;
        for (node, reply) in policies {
            let policy = match &reply {
                Value::Array(items) if items.len() == 2 => text(&items[1]).unwrap_or_default(),
                Value::Map(pairs) if pairs.len() == 1 => text(&pairs[0].1).unwrap_or_default(),
                _ => String::new(),
            };
            if policy != "noeviction" {
                let found = if policy.is_empty() { "unreadable".to_string() } else { policy };
                return Err(RedisConnectError::Unsafe {
                    address: node,
                    reason: format!(
                        "maxmemory-policy is {found}, but the cap ledger needs noeviction: an evicted counter, \
                         opt-out or reservation would let a cap be exceeded. Run `CONFIG SET maxmemory-policy \
                         noeviction` and set it in redis.conf (RELIABILITY.md row 19)"
                    ),
                });
            }
        }

        let cluster = link.is_cluster();
        let mut gate = Gate {
            prefix: prefix.to_string(),
            cluster,
            epoch: String::new(),
            retention_ms: u64::try_from(options.retention.as_millis()).unwrap_or(u64::MAX).max(1),
            max_skew_secs: options.max_clock_skew.map_or(0, |d| d.as_secs().max(1)),
            skew_rejections: std::sync::atomic::AtomicU64::new(0),
            scripts: Scripts::new(),
        };
        let candidate = random_epoch(&format!("{address}/{prefix}"));
        let cmds: Vec<(usize, Cmd)> = gate
            .tags()
            .iter()
            .map(|t| {
                (
                    slot_of(t),
                    Cmd::new().arg("SET").arg(gate.epoch_key(t)).arg(&candidate).arg("NX").arg("GET").to_owned(),
                )
            })
            .collect();
        let found = link.run_for(slow, |s| async move { s.query_by_slot(cmds).await }).map_err(&unreachable)?;
        let existing: Vec<Option<String>> = found
            .iter()
            .map(|v| if *v == Value::Nil { Ok(None) } else { text(v).map(Some) })
            .collect::<Result<_, _>>()
            .map_err(&unreachable)?;
        let missing = existing.iter().filter(|e| e.is_none()).count();
        let mut values: Vec<&String> = existing.iter().flatten().collect();
        values.sort();
        values.dedup();
        gate.epoch = match (missing, values.as_slice()) {
            (_, []) => candidate,
            (0, [one]) => (*one).clone(),
            _ => {
                return Err(RedisConnectError::Unsafe {
                    address,
                    reason: format!(
                        "the ledger's epoch keys disagree ({missing} of {} slots had none, {} distinct values): part \
                         of the data was lost (a node flushed or failed over to one without the data). Restore it, \
                         or delete every `{prefix}{{s*}}:epoch` key to start afresh knowingly",
                        existing.len(),
                        values.len()
                    ),
                });
            }
        };
        let gate = Arc::new(gate);
        let loading = Arc::clone(&gate);
        link.run_for(slow, |s| async move { s.load_scripts(&loading.scripts.all()).await }).map_err(&unreachable)?;
        tracing::info!(redis = %address, cluster, prefix, "Redis cap ledger connected.");
        Ok(RedisLedger { link, gate })
    }

    /// Why the ledger refuses every call now, if it does: what happened and what an operator
    /// must do. A pause for a lost epoch or a restart never ends by itself; one for a
    /// connection blip, `BUSY` or `OOM` ends with the next call that succeeds.
    pub fn paused(&self) -> Option<String> {
        self.link.paused()
    }

    /// Times the ledger paused (each is also logged).
    pub fn pauses_total(&self) -> u64 {
        self.link.pauses_total()
    }

    /// Connections made again after a failure (each verified to reach the same server).
    pub fn reconnects_total(&self) -> u64 {
        self.link.reconnects_total()
    }

    /// Restarts of the server the ledger went on through, because the server keeps every
    /// acknowledged write on disk (`appendonly yes`, `appendfsync always`); any other restart
    /// pauses the ledger for good.
    pub fn durable_restarts_total(&self) -> u64 {
        self.link.durable_restarts_total()
    }

    /// Reservations refused because the engine's clock was further from the Redis server's
    /// than [`RedisOptions::max_clock_skew`].
    pub fn skew_rejections_total(&self) -> u64 {
        self.gate.skew_rejections.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether the ledger runs on a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        self.link.is_cluster()
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.gate.prefix
    }

    /// The reserve script's Lua source (for benchmarks that run the same script through
    /// `redis-benchmark`, and for operators inspecting the gate).
    pub fn reserve_script() -> &'static str {
        RESERVE_LUA
    }

    /// The epoch in force (an operator comparing it with the `P{…}:epoch` keys).
    pub fn epoch(&self) -> &str {
        &self.gate.epoch
    }

    /// Runs one gate call and turns a link failure into [`LedgerError::Unavailable`].
    fn call<T, F, Fut>(&self, f: F) -> LedgerFuture<T>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Gate>, Arc<Shared>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<Result<T, LedgerError>, Failure>> + Send + 'static,
    {
        let gate = Arc::clone(&self.gate);
        let answer = match self.link.run(move |shared| f(gate, shared)) {
            Ok(answer) => answer,
            Err(fail) => Err(LedgerError::Unavailable { reason: self.link.scrub(fail.reason_text()) }),
        };
        Box::pin(ready(answer))
    }

    fn call_for<T, F, Fut>(&self, timeout: std::time::Duration, f: F) -> LedgerFuture<T>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Gate>, Arc<Shared>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<Result<T, LedgerError>, Failure>> + Send + 'static,
    {
        let gate = Arc::clone(&self.gate);
        let answer = match self.link.run_for(timeout, move |shared| f(gate, shared)) {
            Ok(answer) => answer,
            Err(fail) => Err(LedgerError::Unavailable { reason: self.link.scrub(fail.reason_text()) }),
        };
        Box::pin(ready(answer))
    }
}

impl CapLedger for RedisLedger {
    fn reserve(&self, request: Reservation) -> LedgerFuture<Reserved> {
        self.call(move |gate, shared| async move { gate.reserve(&shared, request).await })
    }

    fn reserve_share(&self, request: ShareReservation) -> LedgerFuture<Reserved> {
        self.call(move |gate, shared| async move { gate.reserve_share(&shared, request).await })
    }

    fn confirm(&self, message: MessageId, counted: Counted) -> LedgerFuture<()> {
        let mode = match counted {
            Counted::Delivered => "delivered",
            Counted::Unknown => "unknown",
        };
        self.call(move |gate, shared| async move { gate.settle(&shared, message, mode).await })
    }

    fn release(&self, message: MessageId) -> LedgerFuture<()> {
        self.call(move |gate, shared| async move { gate.settle(&shared, message, "release").await })
    }

    fn opt_out(&self, user: UserId) -> LedgerFuture<()> {
        self.call(move |gate, shared| async move { gate.opt_out(&shared, user).await.map(Ok) })
    }

    fn re_consent(&self, user: UserId) -> LedgerFuture<()> {
        self.call(move |gate, shared| async move { gate.re_consent(&shared, user).await.map(Ok) })
    }

    fn load(&self, user: UserId) -> LedgerFuture<LedgerUser> {
        self.call(move |gate, shared| async move { gate.load(&shared, user).await.map(Ok) })
    }

    fn sending(&self, message: MessageId) -> LedgerFuture<()> {
        self.call(move |gate, shared| async move { gate.settle(&shared, message, "sending").await })
    }

    fn recover(&self) -> LedgerFuture<Recovery> {
        // Reads the pending set of every slot: longer than one gate call on a cluster.
        self.call_for(std::time::Duration::from_secs(60), move |gate, shared| async move {
            gate.recover(&shared).await.map(Ok)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every decision the scripts write reads back as the same answer.
    #[test]
    fn decisions_round_trip() {
        assert_eq!(parse_decision("granted"), Ok(Reserved::Granted));
        for reason in SuppressReason::ALL {
            assert_eq!(parse_decision(reason.as_str()), Ok(Reserved::Denied(reason)));
        }
        assert!(parse_decision("maybe").is_err());
    }

    /// All of a user's keys share one hash tag, and the per-slot keys land in the user's
    /// slot on a cluster.
    #[test]
    fn a_users_keys_share_one_slot() {
        let gate = Gate {
            prefix: "p:".into(),
            cluster: true,
            epoch: "e".into(),
            retention_ms: 1,
            max_skew_secs: 0,
            skew_rejections: std::sync::atomic::AtomicU64::new(0),
            scripts: Scripts::new(),
        };
        let slot = |key: &str| {
            let open = key.find('{').expect("a tag");
            let close = key[open..].find('}').expect("closed") + open;
            slot_of(&key[open + 1..close])
        };
        for user in [0u64, 7, 123_456_789, u64::MAX] {
            let keys = gate.user_keys(UserId(user), MessageId(1 << 63 | 5));
            let first = slot(&keys[0]);
            assert!(keys.iter().all(|k| slot(k) == first), "{keys:?}");
            assert_eq!(keys[1], format!("p:{{u:{user}}}:cap"));
        }
    }

    /// Two connects draw different epochs.
    #[test]
    fn epochs_differ() {
        assert_ne!(random_epoch("a"), random_epoch("a"));
        assert_eq!(random_epoch("a").len(), 32);
    }
}
