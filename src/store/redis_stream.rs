//! The Redis log read through a consumer group: downstream analytics (`gavat events tail`)
//! take every record once per group, across restarts, with Redis keeping each group's
//! position and its delivered-but-unacknowledged entries (`XREADGROUP`, `XACK`). A reader
//! that dies between taking an entry and acknowledging it gets the entry again: at least
//! once.
//!
//! # A dead reader's entries, and entries nobody can read (RELIABILITY.md rows 22, 53)
//! - Entries a reader took and never acknowledged (it was killed) stay in the group's
//!   pending list under its name. [`GroupRead::Abandoned`] moves those idle for long enough
//!   to the reader asking (`XAUTOCLAIM`), so another reader applies them; nothing is
//!   trimmed from the pending list.
//! - An entry that cannot be read (damaged or foreign fields) is never returned and never
//!   blocks the entries behind it. Redis counts its deliveries; once it has been delivered
//!   [`PARK_AFTER_DELIVERIES`] times it is *parked*: copied to `Plog:parked` with the reason
//!   and acknowledged, so the group goes on. An operator reads the parked stream. (The copy
//!   and the acknowledgement are two commands: a crash between them parks it twice, never
//!   loses it.)

use ::redis::{Cmd, Value};

use crate::redis_link::{Failure, text};

use super::redis::{entry_from_fields, field_map};
use super::{LogEntry, RedisStore, StoreError};

/// Which entries a group read asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupRead {
    /// Entries delivered to this consumer before and not acknowledged (after a crash).
    Pending,
    /// Entries never delivered to the group.
    New,
    /// Entries delivered to any reader of the group, not acknowledged and idle for at least
    /// this many milliseconds (a reader that died holding them): claimed by this reader.
    Abandoned {
        /// How long an entry must have waited since its last delivery.
        min_idle_ms: u64,
    },
}

/// Deliveries after which an entry that cannot be read is parked (see the module docs).
pub const PARK_AFTER_DELIVERIES: u64 = 3;

impl RedisStore {
    /// Creates the consumer group `group` on the log if it does not exist: reading from the
    /// first entry (`from_start`) or from entries appended from now on. An existing group
    /// keeps its position.
    pub fn join_group(&self, group: &str, from_start: bool) -> Result<(), StoreError> {
        let group = group.to_string();
        self.call(move |keys, shared| async move {
            let start = if from_start { "0" } else { "$" };
            let create = Cmd::new()
                .arg("XGROUP")
                .arg("CREATE")
                .arg(keys.log())
                .arg(&group)
                .arg(start)
                .arg("MKSTREAM")
                .to_owned();
            match shared.query(create).await {
                Ok(_) => Ok(()),
                Err(Failure::Server(reason)) if reason.contains("BUSYGROUP") => Ok(()),
                Err(other) => Err(other),
            }
        })
    }

    /// At most `count` entries for `consumer` of `group`, with their stream ids (to
    /// acknowledge).
    pub fn read_group(
        &self,
        group: &str,
        consumer: &str,
        which: GroupRead,
        count: usize,
    ) -> Result<Vec<(String, LogEntry)>, StoreError> {
        let (group, consumer) = (group.to_string(), consumer.to_string());
        self.call(move |keys, shared| async move {
            let reply = match which {
                GroupRead::Pending | GroupRead::New => {
                    let from = if which == GroupRead::Pending { "0" } else { ">" };
                    let read = Cmd::new()
                        .arg("XREADGROUP")
                        .arg("GROUP")
                        .arg(&group)
                        .arg(&consumer)
                        .arg("COUNT")
                        .arg(count.max(1))
                        .arg("STREAMS")
                        .arg(keys.log())
                        .arg(from)
                        .to_owned();
                    stream_entries(shared.query(read).await?)?
                }
                GroupRead::Abandoned { min_idle_ms } => {
                    let claim = Cmd::new()
                        .arg("XAUTOCLAIM")
                        .arg(keys.log())
                        .arg(&group)
                        .arg(&consumer)
                        .arg(min_idle_ms)
                        .arg("0-0")
                        .arg("COUNT")
                        .arg(count.max(1))
                        .to_owned();
                    match shared.query(claim).await? {
                        Value::Array(parts) if parts.len() >= 2 => match &parts[1] {
                            Value::Array(entries) => entries.clone(),
                            other => return Err(Failure::Server(format!("unexpected reply to XAUTOCLAIM: {other:?}"))),
                        },
                        other => return Err(Failure::Server(format!("unexpected reply to XAUTOCLAIM: {other:?}"))),
                    }
                }
            };
            let mut out = Vec::new();
            let mut unreadable = Vec::new();
            for entry in reply {
                let Value::Array(item) = &entry else {
                    return Err(Failure::Server(format!("unexpected entry {entry:?}")));
                };
                let [id, fields] = item.as_slice() else {
                    return Err(Failure::Server(format!("unexpected entry {entry:?}")));
                };
                let id = text(id)?;
                // A pending entry deleted meanwhile comes back without fields: nothing to give.
                if matches!(fields, Value::Nil) {
                    continue;
                }
                let map = field_map(fields)?;
                match entry_from_fields(&id, &map) {
                    Ok(read) => out.push((id, read)),
                    Err(fail) => unreadable.push((id, map, fail.reason_text())),
                }
            }
            for (id, fields, reason) in unreadable {
                park_if_redelivered(&shared, &keys.log(), &group, &id, &fields, &reason).await?;
            }
            Ok(out)
        })
    }

    /// Entries parked so far (see the module documentation).
    pub fn parked(&self) -> Result<u64, StoreError> {
        self.call(move |keys, shared| async move {
            match shared.query(Cmd::new().arg("XLEN").arg(parked_key(&keys.log())).to_owned()).await? {
                Value::Int(n) => Ok(u64::try_from(n).unwrap_or(0)),
                other => Err(Failure::Server(format!("unexpected reply to XLEN: {other:?}"))),
            }
        })
    }

    /// Entries of `group` delivered and not yet acknowledged (`XPENDING` summary).
    pub fn pending_count(&self, group: &str) -> Result<u64, StoreError> {
        let group = group.to_string();
        self.call(move |keys, shared| async move {
            match shared.query(Cmd::new().arg("XPENDING").arg(keys.log()).arg(&group).to_owned()).await? {
                Value::Array(parts) => match parts.first() {
                    Some(Value::Int(n)) => Ok(u64::try_from(*n).unwrap_or(0)),
                    other => Err(Failure::Server(format!("unexpected reply to XPENDING: {other:?}"))),
                },
                other => Err(Failure::Server(format!("unexpected reply to XPENDING: {other:?}"))),
            }
        })
    }

    /// Acknowledges entries of `group` (they are not delivered to it again); returns how many
    /// were pending.
    pub fn ack(&self, group: &str, ids: &[String]) -> Result<u64, StoreError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let (group, ids) = (group.to_string(), ids.to_vec());
        self.call(move |keys, shared| async move {
            let reply = shared.query(Cmd::new().arg("XACK").arg(keys.log()).arg(&group).arg(&ids).to_owned()).await?;
            match reply {
                Value::Int(n) => Ok(u64::try_from(n).unwrap_or(0)),
                other => Err(Failure::Server(format!("unexpected reply to XACK: {other:?}"))),
            }
        })
    }
}

/// The stream of parked entries beside the log `log`.
fn parked_key(log: &str) -> String {
    format!("{log}:parked")
}

/// The entries of an `XREADGROUP` reply (one stream).
fn stream_entries(reply: Value) -> Result<Vec<Value>, Failure> {
    let streams = match reply {
        Value::Nil => return Ok(Vec::new()),
        Value::Array(streams) => streams,
        Value::Map(pairs) => pairs.into_iter().map(|(k, v)| Value::Array(vec![k, v])).collect(),
        other => return Err(Failure::Server(format!("unexpected reply to XREADGROUP: {other:?}"))),
    };
    let mut out = Vec::new();
    for stream in streams {
        let Value::Array(mut pair) = stream else {
            return Err(Failure::Server("unexpected stream in XREADGROUP's reply".into()));
        };
        if pair.len() == 2
            && let Value::Array(entries) = pair.swap_remove(1)
        {
            out.extend(entries);
        }
    }
    Ok(out)
}

/// Parks an entry that cannot be read once Redis has delivered it
/// [`PARK_AFTER_DELIVERIES`] times: copied to the parked stream with `reason`, then
/// acknowledged. Below that it stays pending and is delivered again.
async fn park_if_redelivered(
    shared: &crate::redis_link::Shared,
    log: &str,
    group: &str,
    id: &str,
    fields: &std::collections::HashMap<String, String>,
    reason: &str,
) -> Result<(), Failure> {
    let pending =
        shared.query(Cmd::new().arg("XPENDING").arg(log).arg(group).arg(id).arg(id).arg(1).to_owned()).await?;
    let deliveries = match &pending {
        Value::Array(rows) => match rows.first() {
            Some(Value::Array(row)) => match row.get(3) {
                Some(Value::Int(n)) => u64::try_from(*n).unwrap_or(0),
                _ => 0,
            },
            // No longer pending (acknowledged by another reader): nothing to park.
            _ => return Ok(()),
        },
        other => return Err(Failure::Server(format!("unexpected reply to XPENDING: {other:?}"))),
    };
    if deliveries < PARK_AFTER_DELIVERIES {
        tracing::warn!(entry = %id, deliveries, reason = %reason, "Unreadable log entry; left pending.");
        return Ok(());
    }
    let mut park = Cmd::new();
    park.arg("XADD")
        .arg(parked_key(log))
        .arg("*")
        .arg("entry")
        .arg(id)
        .arg("group")
        .arg(group)
        .arg("reason")
        .arg(reason);
    let mut names: Vec<&String> = fields.keys().collect();
    names.sort();
    for name in names {
        park.arg(format!("field:{name}")).arg(&fields[name]);
    }
    shared.query(park).await?;
    shared.query(Cmd::new().arg("XACK").arg(log).arg(group).arg(id).to_owned()).await?;
    tracing::error!(entry = %id, deliveries, reason = %reason, "Unreadable log entry parked in the parked stream; an operator must look at it.");
    Ok(())
}
