//! The Redis log read through a consumer group: downstream analytics (`gavat events tail`)
//! take every record once per group, across restarts, with Redis keeping each group's
//! position and its delivered-but-unacknowledged entries (`XREADGROUP`, `XACK`). A reader
//! that dies between taking an entry and acknowledging it gets the entry again: at least
//! once.

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
}

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
            let from = match which {
                GroupRead::Pending => "0",
                GroupRead::New => ">",
            };
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
            let reply = shared.query(read).await?;
            let streams = match reply {
                Value::Nil => return Ok(Vec::new()),
                Value::Array(streams) => streams,
                Value::Map(pairs) => pairs.into_iter().map(|(k, v)| Value::Array(vec![k, v])).collect(),
                other => return Err(Failure::Server(format!("unexpected reply to XREADGROUP: {other:?}"))),
            };
            let mut out = Vec::new();
            for stream in streams {
                let Value::Array(pair) = stream else {
                    return Err(Failure::Server("unexpected stream in XREADGROUP's reply".into()));
                };
                let Some(Value::Array(entries)) = pair.get(1) else { continue };
                for entry in entries {
                    let Value::Array(item) = entry else {
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
                    out.push((id.clone(), entry_from_fields(&id, &field_map(fields)?)?));
                }
            }
            Ok(out)
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
