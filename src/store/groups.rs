//! The Telegram groups a live engine posts to, and their members, as the stores keep them:
//! [`GroupStore`] for [`SqliteStore`] (tables `groups` and `group_members`, the "groups and
//! members" migration) and [`RedisStore`] (a hash `Pgroups` of each group's title and
//! offset, and a set `Pgroup:ID:members` per group). `gavat import groups` writes them,
//! `gavat run` loads them into the engine, and membership changes (a member joins or leaves
//! a group) are written here as they happen and reach the running engine through
//! [`crate::engine::group_updates`].
//!
//! Every call is one statement or one single-key command: a group and its members are not
//! written atomically together on Redis, which is harmless — a reader between the two sees
//! an older membership, exactly as if the change had come a moment later.

use ::redis::{Cmd, Value};

use crate::domain::{GroupId, GroupProfile, UserId, UtcOffset, Zone};
use crate::redis_link::text;

use super::{RedisStore, SqliteStore, StoreError};

/// One group as the store keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupRecord {
    /// The engine's id for the group.
    pub id: GroupId,
    /// Its title (shown to operators; never used to decide).
    pub title: String,
    /// The group's time zone: its allowed hours and daily limit are in this local time.
    pub zone: Zone,
    /// Its members, ascending.
    pub members: Vec<UserId>,
}

impl GroupRecord {
    /// The engine's view of the group.
    pub fn profile(&self) -> GroupProfile {
        GroupProfile { id: self.id, members: self.members.clone(), zone: self.zone, activity_per_day: 0.0 }
    }
}

/// A member joined or left a group (from Telegram's `chat_member` updates, or an import).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MembershipChanged {
    /// The group.
    pub group: GroupId,
    /// The member.
    pub user: UserId,
    /// Joined (`true`) or left (`false`).
    pub joined: bool,
}

/// Where groups live.
pub trait GroupStore: Send + Sync + std::fmt::Debug {
    /// Saves a group: its title and offset, and exactly these members (a re-import replaces
    /// the member list).
    fn save_group(&self, group: &GroupRecord) -> Result<(), StoreError>;
    /// Every group with its members, by id.
    fn load_groups(&self) -> Result<Vec<GroupRecord>, StoreError>;
    /// Records that a member joined or left; `Ok(false)` (nothing written) for a group the
    /// store does not know — groups are added by an operator (`gavat import groups`), never
    /// by a member's update.
    fn change_membership(&self, change: MembershipChanged) -> Result<bool, StoreError>;
}

impl GroupStore for SqliteStore {
    fn save_group(&self, group: &GroupRecord) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let tx = inner.conn.transaction().map_err(|e| self.err(e))?;
        (|| -> rusqlite::Result<()> {
            tx.execute(
                "INSERT INTO groups (group_id, title, utc_offset, time_zone) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (group_id) DO UPDATE SET title = excluded.title, utc_offset = excluded.utc_offset,
                    time_zone = excluded.time_zone",
                rusqlite::params![
                    group.id.0 as i64,
                    group.title,
                    group.zone.offset_at(crate::domain::Timestamp(0)).0,
                    group.zone.iana_name()
                ],
            )?;
            tx.execute("DELETE FROM group_members WHERE group_id = ?1", [group.id.0 as i64])?;
            let mut insert = tx.prepare("INSERT OR IGNORE INTO group_members (group_id, user_id) VALUES (?1, ?2)")?;
            for user in &group.members {
                insert.execute([group.id.0 as i64, user.0 as i64])?;
            }
            Ok(())
        })()
        .map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))
    }

    fn load_groups(&self) -> Result<Vec<GroupRecord>, StoreError> {
        let inner = self.lock();
        let read = || -> rusqlite::Result<Vec<GroupRecord>> {
            let mut groups: Vec<GroupRecord> = inner
                .conn
                .prepare("SELECT group_id, title, utc_offset, time_zone FROM groups ORDER BY group_id")?
                .query_map([], |r| {
                    Ok(GroupRecord {
                        id: GroupId(r.get::<_, i64>(0)? as u64),
                        title: r.get(1)?,
                        zone: super::sqlite::zone_of_row(r)?,
                        members: Vec::new(),
                    })
                })?
                .collect::<Result<_, _>>()?;
            let mut stmt =
                inner.conn.prepare("SELECT group_id, user_id FROM group_members ORDER BY group_id, user_id")?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)))?;
            for row in rows {
                let (group, user) = row?;
                if let Ok(i) = groups.binary_search_by_key(&group, |g| g.id.0) {
                    groups[i].members.push(UserId(user));
                }
            }
            Ok(groups)
        };
        read().map_err(|e| self.err(e))
    }

    fn change_membership(&self, change: MembershipChanged) -> Result<bool, StoreError> {
        let inner = self.lock();
        let write = || -> rusqlite::Result<bool> {
            let known: bool = inner.conn.query_row(
                "SELECT EXISTS (SELECT 1 FROM groups WHERE group_id = ?1)",
                [change.group.0 as i64],
                |r| r.get(0),
            )?;
            if !known {
                return Ok(false);
            }
            let sql = if change.joined {
                "INSERT OR IGNORE INTO group_members (group_id, user_id) VALUES (?1, ?2)"
            } else {
                "DELETE FROM group_members WHERE group_id = ?1 AND user_id = ?2"
            };
            inner.conn.execute(sql, [change.group.0 as i64, change.user.0 as i64])?;
            Ok(true)
        };
        write().map_err(|e| self.err(e))
    }
}

/// The Redis keys of the groups.
fn groups_key(prefix: &str) -> String {
    format!("{prefix}groups")
}

fn members_key(prefix: &str, group: GroupId) -> String {
    format!("{prefix}group:{}:members", group.0)
}

/// A group's title and offset, as the `Pgroups` hash keeps them (JSON).
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredGroup {
    title: String,
    utc_offset: i32,
    /// The IANA zone, when the group has one (absent in groups written before zones).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    time_zone: Option<String>,
}

impl GroupStore for RedisStore {
    fn save_group(&self, group: &GroupRecord) -> Result<(), StoreError> {
        let prefix = self.key_prefix().to_string();
        let stored = StoredGroup {
            title: group.title.clone(),
            utc_offset: group.zone.offset_at(crate::domain::Timestamp(0)).0,
            time_zone: group.zone.iana_name().map(str::to_string),
        };
        let value = serde_json::to_string(&stored)
            .map_err(|e| StoreError::Redis { address: String::new(), reason: e.to_string() })?;
        let group = group.clone();
        self.call(move |_, shared| async move {
            let members = members_key(&prefix, group.id);
            shared.query(Cmd::new().arg("DEL").arg(&members).to_owned()).await?;
            if !group.members.is_empty() {
                let mut add = Cmd::new();
                add.arg("SADD").arg(&members);
                for user in &group.members {
                    add.arg(user.0);
                }
                shared.query(add).await?;
            }
            shared.query(Cmd::new().arg("HSET").arg(groups_key(&prefix)).arg(group.id.0).arg(value).to_owned()).await?;
            Ok(())
        })
    }

    fn load_groups(&self) -> Result<Vec<GroupRecord>, StoreError> {
        let prefix = self.key_prefix().to_string();
        let raw = self.call(move |_, shared| async move {
            let all = shared.query(Cmd::new().arg("HGETALL").arg(groups_key(&prefix)).to_owned()).await?;
            let pairs = flat_pairs(&all)?;
            let mut out = Vec::with_capacity(pairs.len());
            for (id, value) in pairs {
                let members = shared
                    .query(Cmd::new().arg("SMEMBERS").arg(format!("{prefix}group:{id}:members")).to_owned())
                    .await?;
                let members = match members {
                    Value::Array(items) | Value::Set(items) => items.iter().map(text).collect::<Result<Vec<_>, _>>()?,
                    other => vec![text(&other)?],
                };
                out.push((id, value, members));
            }
            Ok(out)
        })?;
        let bad = |what: &str, found: &str| StoreError::Redis {
            address: String::new(),
            reason: format!("the groups in Redis hold {found:?} where {what} belongs: damaged or foreign keys"),
        };
        let mut groups = Vec::with_capacity(raw.len());
        for (id, value, members) in raw {
            let id = id.parse::<u64>().map_err(|_| bad("a group id", &id))?;
            let stored: StoredGroup =
                serde_json::from_str(&value).map_err(|_| bad("a group's title and offset", &value))?;
            let mut members = members
                .iter()
                .map(|m| m.parse::<u64>().map(UserId).map_err(|_| bad("a user id", m)))
                .collect::<Result<Vec<_>, _>>()?;
            members.sort_unstable();
            groups.push(GroupRecord {
                id: GroupId(id),
                title: stored.title,
                zone: Zone::from_parts(stored.time_zone.as_deref(), UtcOffset(stored.utc_offset))
                    .map_err(|_| bad("a group's time zone", &value))?,
                members,
            });
        }
        groups.sort_by_key(|g| g.id);
        Ok(groups)
    }

    fn change_membership(&self, change: MembershipChanged) -> Result<bool, StoreError> {
        let prefix = self.key_prefix().to_string();
        self.call(move |_, shared| async move {
            let known =
                shared.query(Cmd::new().arg("HEXISTS").arg(groups_key(&prefix)).arg(change.group.0).to_owned()).await?;
            if known != Value::Int(1) {
                return Ok(false);
            }
            let verb = if change.joined { "SADD" } else { "SREM" };
            shared
                .query(Cmd::new().arg(verb).arg(members_key(&prefix, change.group)).arg(change.user.0).to_owned())
                .await?;
            Ok(true)
        })
    }
}

/// `HGETALL`'s answer as `(field, value)` pairs (RESP2 array or RESP3 map).
fn flat_pairs(value: &Value) -> Result<Vec<(String, String)>, crate::redis_link::Failure> {
    match value {
        Value::Map(pairs) => pairs.iter().map(|(k, v)| Ok((text(k)?, text(v)?))).collect(),
        Value::Array(items) => {
            items.chunks(2).map(|c| Ok((text(&c[0])?, text(c.get(1).unwrap_or(&Value::Nil))?))).collect()
        }
        Value::Nil => Ok(Vec::new()),
        other => Err(crate::redis_link::Failure::Server(format!("unexpected reply to HGETALL: {other:?}"))),
    }
}
