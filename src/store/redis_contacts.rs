//! The [`ContactBook`] of a Redis store (keys in `redis`'s module doc): a user's contact in
//! `P{u:ID}:contact` beside their profile, and the groups' chat ids in three hashes under
//! one hash tag, rewritten together by one script so that a migration never leaves the old
//! chat id pointing at the group.

use std::sync::LazyLock;

use ::redis::{Cmd, Value};

use crate::contacts::{Contact, ContactBook, ContactError, GroupChat};
use crate::domain::{BotId, GroupId, Timestamp, UserId};
use crate::redis_link::{Failure, Script, text};

use super::RedisStore;
use super::redis::{field_map, parsed, parsed_opt};

/// Saves a group's chat: KEYS = chat, title, by_chat; ARGV = group, chat id, title. Drops
/// the group's old chat id from `by_chat`, and any other group holding the new one.
const SAVE_GROUP_CHAT_LUA: &str = r"
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old and old ~= ARGV[2] and redis.call('HGET', KEYS[3], old) == ARGV[1] then
  redis.call('HDEL', KEYS[3], old)
end
local holder = redis.call('HGET', KEYS[3], ARGV[2])
if holder and holder ~= ARGV[1] then
  redis.call('HDEL', KEYS[1], holder)
  redis.call('HDEL', KEYS[2], holder)
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[3], ARGV[2], ARGV[1])
return 1
";

static SAVE_GROUP_CHAT: LazyLock<Script> = LazyLock::new(|| Script::new("save_group_chat", SAVE_GROUP_CHAT_LUA));

/// A group's chat from the hashes, `None` when it has none.
async fn group_chat_of(
    keys: &super::redis::Keys,
    shared: &crate::redis_link::Shared,
    group: GroupId,
) -> Result<Option<GroupChat>, Failure> {
    let field = group.0.to_string();
    let chat = shared.query(Cmd::new().arg("HGET").arg(keys.group_chats()).arg(&field).to_owned()).await?;
    if chat == Value::Nil {
        return Ok(None);
    }
    let chat = text(&chat)?;
    let chat_id = chat.parse().map_err(|_| Failure::Server(format!("group {}: chat id {chat:?}", group.0)))?;
    let title = shared.query(Cmd::new().arg("HGET").arg(keys.group_titles()).arg(&field).to_owned()).await?;
    let title = if title == Value::Nil { String::new() } else { text(&title)? };
    Ok(Some(GroupChat { group, chat_id, title }))
}

impl ContactBook for RedisStore {
    fn contact(&self, user: UserId) -> Result<Option<Contact>, ContactError> {
        self.call(move |keys, shared| async move {
            let fields = field_map(&shared.query(Cmd::new().arg("HGETALL").arg(keys.contact(user)).to_owned()).await?)?;
            if fields.is_empty() {
                return Ok(None);
            }
            let what = format!("contact {}", user.0);
            let some = |key: &str| fields.get(key).filter(|v| !v.is_empty()).cloned();
            Ok(Some(Contact {
                user,
                first_name: fields.get("first_name").cloned().unwrap_or_default(),
                username: some("username"),
                language_code: some("language_code"),
                bot: BotId(parsed(&fields, "bot", &what)?),
                consented_at: parsed_opt(&fields, "consented_at", &what)?.map(Timestamp),
            }))
        })
        .map_err(|e| ContactError::Store(e.to_string()))
    }

    fn save_contact(&self, contact: &Contact) -> Result<(), ContactError> {
        let c = contact.clone();
        self.call(move |keys, shared| async move {
            let mut hset = Cmd::new();
            hset.arg("HSET")
                .arg(keys.contact(c.user))
                .arg("first_name")
                .arg(&c.first_name)
                .arg("username")
                .arg(c.username.as_deref().unwrap_or(""))
                .arg("language_code")
                .arg(c.language_code.as_deref().unwrap_or(""))
                .arg("bot")
                .arg(c.bot.0)
                .arg("consented_at")
                .arg(c.consented_at.map(|t| t.secs().to_string()).unwrap_or_default());
            shared.query(hset).await.map(|_| ())
        })
        .map_err(|e| ContactError::Store(e.to_string()))
    }

    fn group_chat(&self, group: GroupId) -> Result<Option<GroupChat>, ContactError> {
        self.call(move |keys, shared| async move { group_chat_of(&keys, &shared, group).await })
            .map_err(|e| ContactError::Store(e.to_string()))
    }

    fn group_of_chat(&self, chat_id: i64) -> Result<Option<GroupChat>, ContactError> {
        self.call(move |keys, shared| async move {
            let group = shared.query(Cmd::new().arg("HGET").arg(keys.groups_by_chat()).arg(chat_id).to_owned()).await?;
            if group == Value::Nil {
                return Ok(None);
            }
            let group = text(&group)?;
            let group =
                GroupId(group.parse().map_err(|_| Failure::Server(format!("chat {chat_id}: group {group:?}")))?);
            // Read back through the group: only its current chat id counts.
            Ok(group_chat_of(&keys, &shared, group).await?.filter(|g| g.chat_id == chat_id))
        })
        .map_err(|e| ContactError::Store(e.to_string()))
    }

    fn save_group_chat(&self, chat: &GroupChat) -> Result<(), ContactError> {
        let args = vec![chat.group.0.to_string(), chat.chat_id.to_string(), chat.title.clone()];
        self.call(move |keys, shared| async move {
            let k = vec![keys.group_chats(), keys.group_titles(), keys.groups_by_chat()];
            shared.eval(&SAVE_GROUP_CHAT, &k, &args).await.map(|_| ())
        })
        .map_err(|e| ContactError::Store(e.to_string()))
    }
}
