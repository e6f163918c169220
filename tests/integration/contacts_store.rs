//! The contact book in the stores: users' Telegram contacts and groups' chat ids written
//! and read back through the [`ContactBook`] seam, on a real SQLite file (reopened) and on
//! Redis (under a key prefix of its own), with the same checks for both.

use gavat::contacts::{Contact, ContactBook, GroupChat};
use gavat::domain::{BotId, GroupId, Timestamp, UserId};
use gavat::store::{RedisStore, SqliteStore};

use crate::common::temp_dir;
use crate::redis_server::{Error, Prefix, shared};

/// What every book must hold: contacts replaced whole (a cleared username stays cleared),
/// hostile text kept as is, a migrated group found by its new chat id only, and a chat id
/// taken by another group leaving the first without one.
fn writes(book: &dyn ContactBook) -> Result<(), Box<dyn std::error::Error>> {
    let ayse = Contact {
        user: UserId(u64::from(u32::MAX) + 5),
        first_name: "Ayşe <b>&\"' \u{202e}".into(),
        username: Some("ayse".into()),
        language_code: Some("tr".into()),
        bot: BotId(2),
        consented_at: Some(Timestamp(1_767_225_600)),
    };
    book.save_contact(&ayse)?;
    book.save_contact(&Contact::new(UserId(9), "Bob"))?;
    book.save_contact(&Contact { username: Some("old".into()), ..Contact::new(UserId(10), "Cem") })?;
    book.save_contact(&Contact::new(UserId(10), "Cem"))?;
    let club = GroupChat { group: GroupId(7), chat_id: -100, title: "Kulüp".into() };
    book.save_group_chat(&club)?;
    book.save_group_chat(&GroupChat { chat_id: -1_000_000_000_100, ..club })?;
    book.save_group_chat(&GroupChat { group: GroupId(8), chat_id: -200, title: "B".into() })?;
    book.save_group_chat(&GroupChat { group: GroupId(9), chat_id: -200, title: "C".into() })?;
    Ok(())
}

fn reads(book: &dyn ContactBook) -> Result<(), Box<dyn std::error::Error>> {
    let ayse = book.contact(UserId(u64::from(u32::MAX) + 5))?.ok_or("Ayşe is kept")?;
    assert_eq!(ayse.first_name, "Ayşe <b>&\"' \u{202e}");
    assert_eq!((ayse.username.as_deref(), ayse.language_code.as_deref()), (Some("ayse"), Some("tr")));
    assert_eq!((ayse.bot, ayse.consented_at), (BotId(2), Some(Timestamp(1_767_225_600))));
    assert_eq!(book.contact(UserId(9))?, Some(Contact::new(UserId(9), "Bob")));
    assert_eq!(book.contact(UserId(10))?, Some(Contact::new(UserId(10), "Cem")), "replaced whole");
    assert_eq!(book.contact(UserId(11))?, None);
    let moved = GroupChat { group: GroupId(7), chat_id: -1_000_000_000_100, title: "Kulüp".into() };
    assert_eq!(book.group_chat(GroupId(7))?, Some(moved.clone()));
    assert_eq!(book.group_of_chat(-1_000_000_000_100)?, Some(moved));
    assert_eq!(book.group_of_chat(-100)?, None, "the old chat id finds nothing");
    assert_eq!(book.group_chat(GroupId(8))?, None, "group 9 took chat -200");
    assert_eq!(book.group_of_chat(-200)?.map(|g| g.group), Some(GroupId(9)));
    assert_eq!(book.group_chat(GroupId(99))?, None);
    Ok(())
}

/// SQLite: written, closed, reopened, read back.
#[test]
fn contacts_round_trip_in_sqlite() -> Result<(), Box<dyn std::error::Error>> {
    let dir = temp_dir();
    let path = dir.path().join("contacts.db");
    writes(&SqliteStore::open(&path)?)?;
    reads(&SqliteStore::open_existing(&path)?)
}

/// Redis: written through one connection, read back through another, under a prefix of
/// its own.
#[test]
fn contacts_round_trip_in_redis() -> Result<(), Error> {
    let (url, _own) = shared()?;
    let prefix = Prefix::new(&url, "contacts");
    writes(&RedisStore::connect(&url, &prefix.text)?).map_err(|e| e.to_string())?;
    reads(&RedisStore::connect(&url, &prefix.text)?).map_err(|e| e.to_string())?;
    Ok(())
}

/// What the Telegram transport keeps in a store — each bot's offset (forward only), the Bot
/// API id of each message sent, chat members — and how a member joining an imported group's
/// chat changes that group's membership for the engine, while members of other chats stay
/// apart.
fn telegram_state<S>(store: &S) -> Result<(), Box<dyn std::error::Error>>
where
    S: gavat::transport::telegram::TelegramState
        + gavat::transport::telegram::GroupMembership
        + gavat::store::GroupStore
        + ContactBook,
{
    use gavat::domain::Zone;
    use gavat::store::GroupRecord;
    use gavat::transport::telegram::SentMessage;
    assert_eq!(store.next_update("sales")?, None);
    store.save_next_update("sales", 12)?;
    store.save_next_update("sales", 3)?;
    assert_eq!(store.next_update("sales")?, Some(12), "an offset only moves forward");
    let sent = SentMessage { bot: "sales".into(), chat_id: 42, message_id: 5, message: u64::MAX - 1, at: Timestamp(9) };
    store.record_sent(&sent)?;
    assert_eq!(store.sent_message("sales", 42, 5)?, Some(u64::MAX - 1));
    assert_eq!(store.sent_message("sales", 42, 6)?, None);

    store.save_group(&GroupRecord {
        id: GroupId(7),
        title: "Kulüp".into(),
        zone: Zone::fixed(180),
        members: vec![UserId(1)],
    })?;
    store.save_group_chat(&GroupChat { group: GroupId(7), chat_id: -700, title: "Kulüp".into() })?;
    store.set_member(-700, UserId(3), true, Timestamp(10))?;
    store.set_member(-700, UserId(1), false, Timestamp(11))?;
    store.set_member(-999, UserId(4), true, Timestamp(12))?;
    assert_eq!(store.members(-700)?, vec![UserId(3)]);
    assert_eq!(store.members(-999)?, vec![UserId(4)]);
    let groups = store.load_groups()?;
    assert_eq!(groups.len(), 1, "a chat that is no imported group adds none: {groups:?}");
    assert_eq!(groups[0].members, vec![UserId(3)], "the imported group follows its chat's members");
    Ok(())
}

/// The Telegram state in SQLite.
#[test]
fn telegram_state_in_sqlite() -> Result<(), Box<dyn std::error::Error>> {
    let dir = temp_dir();
    telegram_state(&SqliteStore::open(&dir.path().join("telegram.db"))?)
}

/// The Telegram state in Redis, under a prefix of its own.
#[test]
fn telegram_state_in_redis() -> Result<(), Error> {
    let (url, _own) = shared()?;
    let prefix = Prefix::new(&url, "tgstate");
    telegram_state(&RedisStore::connect(&url, &prefix.text)?).map_err(|e| e.to_string())?;
    Ok(())
}
