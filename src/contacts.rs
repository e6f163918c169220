//! Who a user and a group are on Telegram, beyond what the engine decides with: a user's
//! first name, username and language (for the text of a message), the bot they started,
//! and a group's chat id and title. The engine never reads these; the message composer,
//! `gavat preview` and the Telegram transport do, through the [`ContactBook`] seam.
//!
//! A private chat's id is the user's Telegram id, so a user needs no chat id of their own.
//! A group's chat id is negative and changes when Telegram migrates it to a supergroup; the
//! engine's [`GroupId`] stays the same and only the chat id here is updated.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Mutex;

use crate::domain::{BotId, GroupId, Timestamp, UserId};

/// What we know of a user on Telegram. Every text field is as the user set it: untrusted,
/// escaped wherever it is written into a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Contact {
    /// Who (the Telegram user id).
    pub user: UserId,
    /// Their first name, as Telegram gives it.
    pub first_name: String,
    /// Their `@username`, without the `@`, when they have one.
    pub username: Option<String>,
    /// Their IETF language tag as Telegram gives it (`en`, `tr`, `pt-br`), when known.
    pub language_code: Option<String>,
    /// The bot they started (and that messages them).
    pub bot: BotId,
    /// When they last gave consent (`/start`).
    pub consented_at: Option<Timestamp>,
}

impl Contact {
    /// A contact with a name only (no username, language, consent), through the first bot.
    pub fn new(user: UserId, first_name: impl Into<String>) -> Contact {
        Contact {
            user,
            first_name: first_name.into(),
            username: None,
            language_code: None,
            bot: BotId(0),
            consented_at: None,
        }
    }
}

/// A group chat we post into.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupChat {
    /// The engine's id for the group (stable across migrations).
    pub group: GroupId,
    /// Telegram's chat id (negative; changes on migration to a supergroup).
    pub chat_id: i64,
    /// The group's title, as Telegram gives it.
    pub title: String,
}

/// Why a contact could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ContactError {
    /// The backing store failed.
    #[error("contact store: {0}")]
    Store(String),
}

/// Where contacts live. Implementations: [`MemoryContacts`] (tests, simulations) and the
/// stores' own (SQLite, Redis).
pub trait ContactBook: Send + Sync + Debug {
    /// The user's contact, if we have one.
    fn contact(&self, user: UserId) -> Result<Option<Contact>, ContactError>;
    /// Saves (replaces) a user's contact.
    fn save_contact(&self, contact: &Contact) -> Result<(), ContactError>;
    /// The group's chat, if we have one.
    fn group_chat(&self, group: GroupId) -> Result<Option<GroupChat>, ContactError>;
    /// The group whose chat id is `chat_id` now.
    fn group_of_chat(&self, chat_id: i64) -> Result<Option<GroupChat>, ContactError>;
    /// Saves (replaces) a group's chat; a migration saves the same group with its new chat id.
    fn save_group_chat(&self, chat: &GroupChat) -> Result<(), ContactError>;
}

/// Contacts in memory.
#[derive(Debug, Default)]
pub struct MemoryContacts {
    users: Mutex<BTreeMap<UserId, Contact>>,
    groups: Mutex<BTreeMap<GroupId, GroupChat>>,
}

impl MemoryContacts {
    /// An empty book.
    pub fn new() -> MemoryContacts {
        MemoryContacts::default()
    }
}

impl ContactBook for MemoryContacts {
    fn contact(&self, user: UserId) -> Result<Option<Contact>, ContactError> {
        Ok(lock(&self.users).get(&user).cloned())
    }

    fn save_contact(&self, contact: &Contact) -> Result<(), ContactError> {
        lock(&self.users).insert(contact.user, contact.clone());
        Ok(())
    }

    fn group_chat(&self, group: GroupId) -> Result<Option<GroupChat>, ContactError> {
        Ok(lock(&self.groups).get(&group).cloned())
    }

    fn group_of_chat(&self, chat_id: i64) -> Result<Option<GroupChat>, ContactError> {
        Ok(lock(&self.groups).values().find(|g| g.chat_id == chat_id).cloned())
    }

    fn save_group_chat(&self, chat: &GroupChat) -> Result<(), ContactError> {
        lock(&self.groups).insert(chat.group, chat.clone());
        Ok(())
    }
}

/// The map behind `mutex`, even if a panicking holder poisoned it (the maps stay valid:
/// every write is one insert).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A migration replaces the chat id; the group is found by the new id only.
    #[test]
    fn a_migrated_group_is_found_by_its_new_chat_id() {
        let book = MemoryContacts::new();
        let chat = GroupChat { group: GroupId(7), chat_id: -100, title: "Club".into() };
        book.save_group_chat(&chat).unwrap();
        book.save_group_chat(&GroupChat { chat_id: -1_000_000_000_100, ..chat.clone() }).unwrap();
        assert_eq!(book.group_of_chat(-100).unwrap(), None);
        assert_eq!(book.group_of_chat(-1_000_000_000_100).unwrap().map(|g| g.group), Some(GroupId(7)));
        let contact = Contact::new(UserId(5), "Ayşe");
        book.save_contact(&contact).unwrap();
        assert_eq!(book.contact(UserId(5)).unwrap(), Some(contact));
        assert_eq!(book.contact(UserId(6)).unwrap(), None);
    }
}
