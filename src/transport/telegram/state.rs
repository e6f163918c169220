//! What the Telegram transport keeps in the store: each bot's `getUpdates` offset, the
//! Bot API `message_id` of every message we sent (to attribute a reply to its send), and the
//! members of each group as updates show them. Two seams, [`TelegramState`] and
//! [`GroupMembership`], implemented by [`MemoryTelegramState`] (tests) and by the SQLite and
//! Redis stores (`src/store/telegram.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::sync::Mutex;

use crate::domain::{Timestamp, UserId};
use crate::store::StoreError;

/// One message the Bot API accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentMessage {
    /// The bot that sent it (its name in `gavat.toml`: message ids are per bot and chat).
    pub bot: String,
    /// The chat it went to.
    pub chat_id: i64,
    /// The Bot API's `message_id` in that chat.
    pub message_id: i64,
    /// Our id of the message ([`OutboundMessage::id`](crate::domain::OutboundMessage)).
    pub message: u64,
    /// When it was sent.
    pub at: Timestamp,
}

/// Offsets and sent messages (see the module documentation).
pub trait TelegramState: Send + Sync + Debug {
    /// The next `update_id` the bot named `bot` has not taken in (`None`: never polled).
    fn next_update(&self, bot: &str) -> Result<Option<i64>, StoreError>;
    /// Moves the bot's offset to `next` (never backwards: a lower value changes nothing).
    fn save_next_update(&self, bot: &str, next: i64) -> Result<(), StoreError>;
    /// Records a message the Bot API accepted.
    fn record_sent(&self, sent: &SentMessage) -> Result<(), StoreError>;
    /// Our id of the message `message_id` the bot sent to `chat_id`, if it was ours.
    fn sent_message(&self, bot: &str, chat_id: i64, message_id: i64) -> Result<Option<u64>, StoreError>;
    /// Keeps a 429's wait, so that a restart honours it (a later wait already kept for the
    /// same bot and chat stays). The default keeps nothing: a restart forgets the wait and
    /// the first request meets the 429 again.
    fn save_freeze(&self, freeze: &Freeze) -> Result<(), StoreError> {
        let _ = freeze;
        Ok(())
    }
    /// The waits kept that still run at `now_unix` (wall seconds).
    fn freezes(&self, now_unix: i64) -> Result<Vec<Freeze>, StoreError> {
        let _ = now_unix;
        Ok(Vec::new())
    }
}

/// A 429's wait as the state keeps it: no request through `bot` (to the chat `to`, or to
/// any chat when `None`) before `until_unix`, wall seconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Freeze {
    /// The bot's name.
    pub bot: String,
    /// The chat parked, or `None` for the whole bot.
    pub to: Option<crate::domain::Destination>,
    /// Wall seconds since the epoch.
    pub until_unix: i64,
}

impl Freeze {
    /// The chat as a key: `user:ID`, `group:ID`, or empty for the whole bot.
    pub fn scope(&self) -> String {
        match self.to {
            Some(crate::domain::Destination::User(u)) => format!("user:{}", u.0),
            Some(crate::domain::Destination::Group(g)) => format!("group:{}", g.0),
            None => String::new(),
        }
    }

    /// The chat of a key written by [`Freeze::scope`] (`None` inside: the whole bot; `None`
    /// outside: not a key).
    pub fn parse_scope(scope: &str) -> Option<Option<crate::domain::Destination>> {
        use crate::domain::{Destination, GroupId, UserId};
        if scope.is_empty() {
            return Some(None);
        }
        let (kind, id) = scope.split_once(':')?;
        let id: u64 = id.parse().ok()?;
        match kind {
            "user" => Some(Some(Destination::User(UserId(id)))),
            "group" => Some(Some(Destination::Group(GroupId(id)))),
            _ => None,
        }
    }
}

/// Who is in which group, as Telegram's updates showed it (a message in the group, a
/// `chat_member` change). The groups' own logic decides what to do with it.
pub trait GroupMembership: Send + Sync + Debug {
    /// `user` is (`member`) or is no longer in the group with chat id `chat_id`, as of `at`.
    fn set_member(&self, chat_id: i64, user: UserId, member: bool, at: Timestamp) -> Result<(), StoreError>;
    /// The members of the group with chat id `chat_id`, in id order.
    fn members(&self, chat_id: i64) -> Result<Vec<UserId>, StoreError>;
}

/// Both in memory.
#[derive(Debug, Default)]
pub struct MemoryTelegramState {
    offsets: Mutex<BTreeMap<String, i64>>,
    sent: Mutex<BTreeMap<(String, i64, i64), u64>>,
    members: Mutex<BTreeMap<i64, BTreeSet<UserId>>>,
}

impl MemoryTelegramState {
    /// An empty state.
    pub fn new() -> MemoryTelegramState {
        MemoryTelegramState::default()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every write under these locks is one insert or remove.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl TelegramState for MemoryTelegramState {
    fn next_update(&self, bot: &str) -> Result<Option<i64>, StoreError> {
        Ok(lock(&self.offsets).get(bot).copied())
    }

    fn save_next_update(&self, bot: &str, next: i64) -> Result<(), StoreError> {
        let mut offsets = lock(&self.offsets);
        let entry = offsets.entry(bot.to_string()).or_insert(next);
        *entry = (*entry).max(next);
        Ok(())
    }

    fn record_sent(&self, sent: &SentMessage) -> Result<(), StoreError> {
        lock(&self.sent).insert((sent.bot.clone(), sent.chat_id, sent.message_id), sent.message);
        Ok(())
    }

    fn sent_message(&self, bot: &str, chat_id: i64, message_id: i64) -> Result<Option<u64>, StoreError> {
        Ok(lock(&self.sent).get(&(bot.to_string(), chat_id, message_id)).copied())
    }
}

impl GroupMembership for MemoryTelegramState {
    fn set_member(&self, chat_id: i64, user: UserId, member: bool, _at: Timestamp) -> Result<(), StoreError> {
        let mut members = lock(&self.members);
        let group = members.entry(chat_id).or_default();
        if member {
            group.insert(user);
        } else {
            group.remove(&user);
        }
        Ok(())
    }

    fn members(&self, chat_id: i64) -> Result<Vec<UserId>, StoreError> {
        Ok(lock(&self.members).get(&chat_id).map(|g| g.iter().copied().collect()).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Offsets only move forward; sent messages are found by bot, chat and message id.
    #[test]
    fn offsets_move_forward_only() -> Result<(), StoreError> {
        let state = MemoryTelegramState::new();
        assert_eq!(state.next_update("a")?, None);
        state.save_next_update("a", 10)?;
        state.save_next_update("a", 5)?;
        assert_eq!(state.next_update("a")?, Some(10));
        let sent = SentMessage { bot: "a".into(), chat_id: 42, message_id: 7, message: 99, at: Timestamp(1) };
        state.record_sent(&sent)?;
        assert_eq!(state.sent_message("a", 42, 7)?, Some(99));
        assert_eq!(state.sent_message("b", 42, 7)?, None);
        state.set_member(-100, UserId(2), true, Timestamp(1))?;
        state.set_member(-100, UserId(1), true, Timestamp(1))?;
        state.set_member(-100, UserId(2), false, Timestamp(2))?;
        assert_eq!(state.members(-100)?, vec![UserId(1)]);
        Ok(())
    }
}
