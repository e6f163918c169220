//! The [`ContactBook`] of an SQLite store: the tables `contacts` (one row per user) and
//! `group_chats` (one row per group, its chat id unique), written at once, not buffered —
//! a group's new chat id after a migration must hold before the next post.

use rusqlite::{OptionalExtension, params};

use crate::contacts::{Contact, ContactBook, ContactError, GroupChat};
use crate::domain::{BotId, GroupId, Timestamp, UserId};

use super::SqliteStore;

impl SqliteStore {
    fn contact_error(&self, e: rusqlite::Error) -> ContactError {
        ContactError::Store(self.err(e).to_string())
    }
}

fn row_to_contact(row: &rusqlite::Row<'_>) -> rusqlite::Result<Contact> {
    Ok(Contact {
        user: UserId(row.get::<_, i64>(0)? as u64),
        first_name: row.get(1)?,
        username: row.get(2)?,
        language_code: row.get(3)?,
        bot: BotId(row.get(4)?),
        consented_at: row.get::<_, Option<i64>>(5)?.map(Timestamp),
    })
}

fn row_to_group(row: &rusqlite::Row<'_>) -> rusqlite::Result<GroupChat> {
    Ok(GroupChat { group: GroupId(row.get::<_, i64>(0)? as u64), chat_id: row.get(1)?, title: row.get(2)? })
}

impl ContactBook for SqliteStore {
    fn contact(&self, user: UserId) -> Result<Option<Contact>, ContactError> {
        let inner = self.lock();
        inner
            .conn
            .query_row(
                "SELECT user_id, first_name, username, language_code, bot, consented_at FROM contacts
                 WHERE user_id = ?1",
                params![user.0 as i64],
                row_to_contact,
            )
            .optional()
            .map_err(|e| self.contact_error(e))
    }

    fn save_contact(&self, contact: &Contact) -> Result<(), ContactError> {
        let inner = self.lock();
        inner
            .conn
            .execute(
                "INSERT OR REPLACE INTO contacts VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    contact.user.0 as i64,
                    contact.first_name,
                    contact.username,
                    contact.language_code,
                    contact.bot.0,
                    contact.consented_at.map(Timestamp::secs)
                ],
            )
            .map(|_| ())
            .map_err(|e| self.contact_error(e))
    }

    fn group_chat(&self, group: GroupId) -> Result<Option<GroupChat>, ContactError> {
        let inner = self.lock();
        inner
            .conn
            .query_row(
                "SELECT group_id, chat_id, title FROM group_chats WHERE group_id = ?1",
                params![group.0 as i64],
                row_to_group,
            )
            .optional()
            .map_err(|e| self.contact_error(e))
    }

    fn group_of_chat(&self, chat_id: i64) -> Result<Option<GroupChat>, ContactError> {
        let inner = self.lock();
        inner
            .conn
            .query_row(
                "SELECT group_id, chat_id, title FROM group_chats WHERE chat_id = ?1",
                params![chat_id],
                row_to_group,
            )
            .optional()
            .map_err(|e| self.contact_error(e))
    }

    fn save_group_chat(&self, chat: &GroupChat) -> Result<(), ContactError> {
        let inner = self.lock();
        // REPLACE also drops another group's row holding this chat id: a chat id names one
        // group at a time.
        inner
            .conn
            .execute(
                "INSERT OR REPLACE INTO group_chats VALUES (?1, ?2, ?3)",
                params![chat.group.0 as i64, chat.chat_id, chat.title],
            )
            .map(|_| ())
            .map_err(|e| self.contact_error(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Contacts and group chats round-trip through a real file and survive reopening; a
    /// migration replaces the chat id, and the old id finds nothing.
    #[test]
    fn contacts_and_group_chats_round_trip() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("contacts.db");
        let contact = Contact {
            user: UserId(u64::from(u32::MAX) + 5),
            first_name: "Ayşe <b>&".into(),
            username: Some("ayse".into()),
            language_code: Some("tr".into()),
            bot: BotId(2),
            consented_at: Some(Timestamp(1_767_225_600)),
        };
        let chat = GroupChat { group: GroupId(7), chat_id: -100, title: "Kulüp".into() };
        {
            let store = SqliteStore::open(&path)?;
            store.save_contact(&contact)?;
            store.save_contact(&Contact::new(UserId(9), "Bob"))?;
            store.save_group_chat(&chat)?;
            store.save_group_chat(&GroupChat { chat_id: -1_000_000_000_100, ..chat.clone() })?;
        }
        let store = SqliteStore::open_existing(&path)?;
        assert_eq!(store.contact(contact.user)?, Some(contact));
        assert_eq!(store.contact(UserId(9))?, Some(Contact::new(UserId(9), "Bob")));
        assert_eq!(store.contact(UserId(10))?, None);
        assert_eq!(store.group_of_chat(-100)?, None);
        let moved = GroupChat { chat_id: -1_000_000_000_100, ..chat };
        assert_eq!(store.group_chat(GroupId(7))?, Some(moved.clone()));
        assert_eq!(store.group_of_chat(-1_000_000_000_100)?, Some(moved));
        // Another group taking that chat id leaves group 7 without one.
        store.save_group_chat(&GroupChat { group: GroupId(8), chat_id: -1_000_000_000_100, title: "B".into() })?;
        assert_eq!(store.group_chat(GroupId(7))?, None);
        Ok(())
    }
}
