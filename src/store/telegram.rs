//! The Telegram transport's state in the stores: [`TelegramState`] and [`GroupMembership`]
//! for [`SqliteStore`] (the tables `telegram_offsets`, `telegram_sent` and
//! `telegram_group_members`) and [`RedisStore`] (keys under the store's prefix `P`):
//! - `Ptg:offset` — hash: bot name → next `update_id`, moved forward only (a Lua `max`).
//! - `Ptg:sent:BOT:CHAT:MESSAGE_ID` — our message id, expiring after
//!   [`SENT_RETENTION_SECS`] (a reply to an older message counts by the reply window).
//! - `Ptg:members:CHAT` — set of member user ids.
//!
//! SQLite also keeps each 429's wait (`telegram_freezes`, made on first use) so that a
//! restart honours it (RELIABILITY.md row 55); Redis does not yet (a restart there meets
//! the 429 once more).
//!
//! The stores' [`crate::contacts::ContactBook`] is in `sqlite_contacts` and `redis_contacts`.
//!
//! Every call is written before it returns, as the transport requires: an offset moves
//! only after what its update changed is stored.

use ::redis::{Cmd, Value};
use rusqlite::{OptionalExtension, params};

use crate::contacts::ContactBook;
use crate::domain::{Timestamp, UserId};
use crate::redis_link::{Failure, text};
use crate::store::groups::{GroupStore, MembershipChanged};
use crate::transport::telegram::{Freeze, GroupMembership, SentMessage, TelegramState};

use super::{RedisStore, SqliteStore, StoreError};

/// How long Redis keeps a sent message's id (SQLite keeps them all): 30 days.
pub(super) const SENT_RETENTION_SECS: u64 = 30 * 86_400;

impl TelegramState for SqliteStore {
    fn next_update(&self, bot: &str) -> Result<Option<i64>, StoreError> {
        self.lock()
            .conn
            .query_row("SELECT next_update FROM telegram_offsets WHERE bot = ?1", params![bot], |r| r.get(0))
            .optional()
            .map_err(|e| self.err(e))
    }

    fn save_next_update(&self, bot: &str, next: i64) -> Result<(), StoreError> {
        self.lock()
            .conn
            .execute(
                "INSERT INTO telegram_offsets (bot, next_update) VALUES (?1, ?2)
                 ON CONFLICT (bot) DO UPDATE SET next_update = MAX(next_update, excluded.next_update)",
                params![bot, next],
            )
            .map(drop)
            .map_err(|e| self.err(e))
    }

    fn record_sent(&self, sent: &SentMessage) -> Result<(), StoreError> {
        self.lock()
            .conn
            .execute(
                "INSERT OR REPLACE INTO telegram_sent (bot, chat_id, message_id, message, sent_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![sent.bot, sent.chat_id, sent.message_id, sent.message as i64, sent.at.secs()],
            )
            .map(drop)
            .map_err(|e| self.err(e))
    }

    fn sent_message(&self, bot: &str, chat_id: i64, message_id: i64) -> Result<Option<u64>, StoreError> {
        self.lock()
            .conn
            .query_row(
                "SELECT message FROM telegram_sent WHERE bot = ?1 AND chat_id = ?2 AND message_id = ?3",
                params![bot, chat_id, message_id],
                |r| r.get::<_, i64>(0),
            )
            .optional()
            .map(|m| m.map(|m| m as u64))
            .map_err(|e| self.err(e))
    }

    fn save_freeze(&self, freeze: &Freeze) -> Result<(), StoreError> {
        let inner = self.lock();
        inner.conn.execute_batch(CREATE_FREEZES).map_err(|e| self.err(e))?;
        inner
            .conn
            .execute(
                "INSERT INTO telegram_freezes (bot, scope, until_unix) VALUES (?1, ?2, ?3)
                 ON CONFLICT (bot, scope) DO UPDATE SET until_unix = MAX(until_unix, excluded.until_unix)",
                params![freeze.bot, freeze.scope(), freeze.until_unix],
            )
            .map(drop)
            .map_err(|e| self.err(e))
    }

    fn freezes(&self, now_unix: i64) -> Result<Vec<Freeze>, StoreError> {
        let inner = self.lock();
        inner.conn.execute_batch(CREATE_FREEZES).map_err(|e| self.err(e))?;
        let mut statement = inner
            .conn
            .prepare("SELECT bot, scope, until_unix FROM telegram_freezes WHERE until_unix > ?1 ORDER BY bot, scope")
            .map_err(|e| self.err(e))?;
        let rows = statement
            .query_map(params![now_unix], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?)))
            .map_err(|e| self.err(e))?;
        let mut freezes = Vec::new();
        for row in rows {
            let (bot, scope, until_unix) = row.map_err(|e| self.err(e))?;
            // A key this version did not write is skipped, never guessed at.
            if let Some(to) = Freeze::parse_scope(&scope) {
                freezes.push(Freeze { bot, to, until_unix });
            }
        }
        Ok(freezes)
    }
}

/// The table of 429 waits (`telegram_freezes`), made on first use: bot, chat scope (empty
/// for the whole bot, see [`Freeze::scope`]), and the wall second the wait ends.
const CREATE_FREEZES: &str = "CREATE TABLE IF NOT EXISTS telegram_freezes (
    bot TEXT NOT NULL, scope TEXT NOT NULL, until_unix INTEGER NOT NULL, PRIMARY KEY (bot, scope))";

/// A member joined or left the chat `chat_id`: if it is one of the groups the engine posts
/// to (an operator's `gavat import groups`, its chat id in the contact book), the group's
/// membership changes too, and a running engine follows it (`live::groups::watch`).
fn engine_membership<S: GroupStore + ContactBook>(
    store: &S,
    chat_id: i64,
    user: UserId,
    joined: bool,
) -> Result<(), StoreError> {
    let chat = store.group_of_chat(chat_id).map_err(|e| StoreError::Contacts { why: e.to_string() })?;
    if let Some(chat) = chat {
        store.change_membership(MembershipChanged { group: chat.group, user, joined })?;
    }
    Ok(())
}

impl GroupMembership for SqliteStore {
    fn set_member(&self, chat_id: i64, user: UserId, member: bool, at: Timestamp) -> Result<(), StoreError> {
        let inner = self.lock();
        let result = if member {
            inner.conn.execute(
                "INSERT OR IGNORE INTO telegram_group_members (chat_id, user_id, since) VALUES (?1, ?2, ?3)",
                params![chat_id, user.0 as i64, at.secs()],
            )
        } else {
            inner.conn.execute(
                "DELETE FROM telegram_group_members WHERE chat_id = ?1 AND user_id = ?2",
                params![chat_id, user.0 as i64],
            )
        };
        result.map(drop).map_err(|e| self.err(e))?;
        drop(inner);
        engine_membership(self, chat_id, user, member)
    }

    fn members(&self, chat_id: i64) -> Result<Vec<UserId>, StoreError> {
        let inner = self.lock();
        let mut statement = inner
            .conn
            .prepare_cached("SELECT user_id FROM telegram_group_members WHERE chat_id = ?1 ORDER BY user_id")
            .map_err(|e| self.err(e))?;
        let rows = statement.query_map(params![chat_id], |r| r.get::<_, i64>(0)).map_err(|e| self.err(e))?;
        rows.map(|r| r.map(|id| UserId(id as u64)).map_err(|e| self.err(e))).collect()
    }
}

/// Moves a bot's offset forward only.
const MAX_OFFSET_LUA: &str = "local now = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '-1')
if tonumber(ARGV[2]) > now then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
return 1";

fn number(value: &Value, what: &str) -> Result<Option<i64>, Failure> {
    match value {
        Value::Nil => Ok(None),
        other => {
            let s = text(other)?;
            s.parse().map(Some).map_err(|_| Failure::Server(format!("{what} is not a number: {s}")))
        }
    }
}

impl TelegramState for RedisStore {
    fn next_update(&self, bot: &str) -> Result<Option<i64>, StoreError> {
        let bot = bot.to_string();
        self.call(move |keys, shared| async move {
            let reply = shared.query(Cmd::new().arg("HGET").arg(keys.telegram("offset")).arg(bot).to_owned()).await?;
            number(&reply, "a Telegram offset")
        })
    }

    fn save_next_update(&self, bot: &str, next: i64) -> Result<(), StoreError> {
        let bot = bot.to_string();
        self.call(move |keys, shared| async move {
            let cmd = Cmd::new()
                .arg("EVAL")
                .arg(MAX_OFFSET_LUA)
                .arg(1)
                .arg(keys.telegram("offset"))
                .arg(bot)
                .arg(next)
                .to_owned();
            shared.query(cmd).await.map(drop)
        })
    }

    fn record_sent(&self, sent: &SentMessage) -> Result<(), StoreError> {
        let key = format!("sent:{}:{}:{}", sent.bot, sent.chat_id, sent.message_id);
        let message = sent.message;
        self.call(move |keys, shared| async move {
            let cmd = Cmd::new()
                .arg("SET")
                .arg(keys.telegram(&key))
                .arg(message)
                .arg("EX")
                .arg(SENT_RETENTION_SECS)
                .to_owned();
            shared.query(cmd).await.map(drop)
        })
    }

    fn sent_message(&self, bot: &str, chat_id: i64, message_id: i64) -> Result<Option<u64>, StoreError> {
        let key = format!("sent:{bot}:{chat_id}:{message_id}");
        self.call(move |keys, shared| async move {
            let reply = shared.query(Cmd::new().arg("GET").arg(keys.telegram(&key)).to_owned()).await?;
            // Our message ids use all 64 bits (a group share has the top bit set).
            match reply {
                Value::Nil => Ok(None),
                other => {
                    let s = text(&other)?;
                    s.parse().map(Some).map_err(|_| Failure::Server(format!("a sent message id is not a number: {s}")))
                }
            }
        })
    }
}

impl GroupMembership for RedisStore {
    fn set_member(&self, chat_id: i64, user: UserId, member: bool, _at: Timestamp) -> Result<(), StoreError> {
        self.call(move |keys, shared| async move {
            let verb = if member { "SADD" } else { "SREM" };
            let cmd = Cmd::new().arg(verb).arg(keys.telegram(&format!("members:{chat_id}"))).arg(user.0).to_owned();
            shared.query(cmd).await.map(drop)
        })?;
        engine_membership(self, chat_id, user, member)
    }

    fn members(&self, chat_id: i64) -> Result<Vec<UserId>, StoreError> {
        self.call(move |keys, shared| async move {
            let reply = shared
                .query(Cmd::new().arg("SMEMBERS").arg(keys.telegram(&format!("members:{chat_id}"))).to_owned())
                .await?;
            let (Value::Array(items) | Value::Set(items)) = reply else {
                return Err(Failure::Server(format!("unexpected reply to SMEMBERS: {reply:?}")));
            };
            let mut ids = items
                .iter()
                .map(|v| number(v, "a member id").map(|id| UserId(id.unwrap_or(0) as u64)))
                .collect::<Result<Vec<_>, _>>()?;
            ids.sort();
            Ok(ids)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SQLite store keeps offsets (forward only), sent messages and members.
    #[test]
    fn sqlite_keeps_the_telegram_state() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let store = SqliteStore::open(&dir.path().join("s.db"))?;
        assert_eq!(store.next_update("sales")?, None);
        store.save_next_update("sales", 12)?;
        store.save_next_update("sales", 3)?;
        assert_eq!(store.next_update("sales")?, Some(12));
        let sent =
            SentMessage { bot: "sales".into(), chat_id: 42, message_id: 5, message: u64::MAX - 1, at: Timestamp(9) };
        store.record_sent(&sent)?;
        assert_eq!(store.sent_message("sales", 42, 5)?, Some(u64::MAX - 1));
        assert_eq!(store.sent_message("sales", 42, 6)?, None);
        store.set_member(-100, UserId(3), true, Timestamp(1))?;
        store.set_member(-100, UserId(1), true, Timestamp(1))?;
        store.set_member(-100, UserId(3), false, Timestamp(2))?;
        assert_eq!(store.members(-100)?, vec![UserId(1)]);
        Ok(())
    }
}
