//! Telegram `Update` objects, parsed and read: the typed fields gavat uses (strict: a field
//! we rely on that is missing or of the wrong type is an [`UpdateError`] naming it, by its
//! path in the JSON), every other field ignored; and [`read_update`], which says what one
//! update means for gavat as an [`UpdateAction`] — a pure function of the update.
//!
//! Telegram adds fields and update kinds over time: an update of a kind gavat does not use
//! (an edited message, a channel post, a poll) is [`UpdateAction::Ignored`] with the kind
//! named, counted by the caller, never an error.

use serde::Deserialize;

use crate::domain::{Timestamp, UserId};

use super::text::UNSUBSCRIBE_CALLBACK;

/// An update that cannot be read. Its `Display` names the field at fault; it never holds
/// the update's text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpdateError {
    /// Not JSON, or a field gavat reads is missing or of the wrong type.
    #[error("malformed Telegram update: field {path}: {why}")]
    Malformed {
        /// Where in the update (`message.chat.id`; `.` for the update itself).
        path: String,
        /// What is wrong.
        why: String,
    },
}

/// One update, with the fields gavat reads.
#[derive(Debug, Clone, Deserialize)]
pub struct Update {
    /// The update's id: updates are numbered in order, per bot.
    pub update_id: i64,
    /// A new message (private chat or group).
    #[serde(default)]
    pub message: Option<Message>,
    /// A button pressed under one of our messages.
    #[serde(default)]
    pub callback_query: Option<CallbackQuery>,
    /// The bot's own membership changed (private chat: the user blocked or unblocked it).
    #[serde(default)]
    pub my_chat_member: Option<ChatMemberUpdated>,
    /// Someone's membership of a group the bot administers changed.
    #[serde(default)]
    pub chat_member: Option<ChatMemberUpdated>,
    /// The update's top-level fields, to name its kind when it is ignored.
    #[serde(skip)]
    pub fields: Vec<String>,
}

/// A Telegram user.
#[derive(Debug, Clone, Deserialize)]
pub struct User {
    /// Their id (a private chat's id is the same number).
    pub id: u64,
    /// Whether it is a bot.
    #[serde(default)]
    pub is_bot: bool,
    /// Their first name.
    pub first_name: String,
    /// Their `@username` without the `@`.
    #[serde(default)]
    pub username: Option<String>,
    /// Their IETF language tag.
    #[serde(default)]
    pub language_code: Option<String>,
}

/// A chat.
#[derive(Debug, Clone, Deserialize)]
pub struct Chat {
    /// Its id (a private chat: the user's id; a group: negative).
    pub id: i64,
    /// `private`, `group`, `supergroup` or `channel`.
    #[serde(rename = "type")]
    pub kind: String,
    /// A group's title.
    #[serde(default)]
    pub title: Option<String>,
}

impl Chat {
    /// Whether this is a private chat with one user.
    pub fn is_private(&self) -> bool {
        self.kind == "private"
    }

    /// Whether this is a group or supergroup.
    pub fn is_group(&self) -> bool {
        self.kind == "group" || self.kind == "supergroup"
    }
}

/// A message.
#[derive(Debug, Clone, Deserialize)]
pub struct Message {
    /// Its id in its chat.
    pub message_id: i64,
    /// Who wrote it (absent in channels).
    #[serde(default)]
    pub from: Option<User>,
    /// Where.
    pub chat: Chat,
    /// When, Unix seconds.
    pub date: i64,
    /// Its text, if it is a text message.
    #[serde(default)]
    pub text: Option<String>,
    /// The message it answers.
    #[serde(default)]
    pub reply_to_message: Option<RepliedMessage>,
    /// A payment that went through.
    #[serde(default)]
    pub successful_payment: Option<SuccessfulPayment>,
}

/// The message a reply answers: only its id is read.
#[derive(Debug, Clone, Deserialize)]
pub struct RepliedMessage {
    /// Its id in the chat.
    pub message_id: i64,
}

/// A payment that went through (only its presence and currency are read).
#[derive(Debug, Clone, Deserialize)]
pub struct SuccessfulPayment {
    /// ISO 4217 currency code.
    pub currency: String,
    /// The amount in the currency's smallest unit.
    pub total_amount: i64,
}

/// A button press.
#[derive(Debug, Clone, Deserialize)]
pub struct CallbackQuery {
    /// The query's id: it must be answered with `answerCallbackQuery`.
    pub id: String,
    /// Who pressed.
    pub from: User,
    /// The button's `callback_data`.
    #[serde(default)]
    pub data: Option<String>,
}

/// A membership change.
#[derive(Debug, Clone, Deserialize)]
pub struct ChatMemberUpdated {
    /// Which chat.
    pub chat: Chat,
    /// Who made the change.
    pub from: User,
    /// When, Unix seconds.
    pub date: i64,
    /// The member as they are now.
    pub new_chat_member: ChatMember,
}

/// A chat member's state.
#[derive(Debug, Clone, Deserialize)]
pub struct ChatMember {
    /// `creator`, `administrator`, `member`, `restricted`, `left` or `kicked`.
    pub status: String,
    /// Who.
    pub user: User,
    /// For `restricted`: whether they are still a member.
    #[serde(default)]
    pub is_member: Option<bool>,
}

impl ChatMember {
    /// Whether they are in the chat now.
    pub fn is_in_chat(&self) -> bool {
        match self.status.as_str() {
            "creator" | "administrator" | "member" => true,
            "restricted" => self.is_member.unwrap_or(false),
            _ => false,
        }
    }
}

/// Parses one update from JSON, naming the field at fault.
pub fn parse_update(json: &[u8]) -> Result<Update, UpdateError> {
    let value: serde_json::Value = serde_json::from_slice(json)
        .map_err(|e| UpdateError::Malformed { path: ".".into(), why: format!("not JSON ({})", without_input(&e)) })?;
    parse_update_value(&value)
}

/// Parses one update already read as JSON, naming the field at fault.
pub fn parse_update_value(value: &serde_json::Value) -> Result<Update, UpdateError> {
    let mut update: Update = serde_path_to_error::deserialize(value)
        .map_err(|e| UpdateError::Malformed { path: e.path().to_string(), why: without_input(e.inner()) })?;
    if let Some(fields) = value.as_object() {
        update.fields = fields.keys().cloned().collect();
    }
    Ok(update)
}

/// The update id of a JSON update that may not parse in full (to move past it), if it has one.
pub(crate) fn update_id_of(json: &serde_json::Value) -> Option<i64> {
    json.get("update_id").and_then(serde_json::Value::as_i64)
}

/// serde_json's message without the input's text (an invalid value is quoted in it).
fn without_input(e: &serde_json::Error) -> String {
    let message = e.to_string();
    // "invalid type: string \"…\", expected u64 at line 1 column 9" → keep the shape only.
    match message.split_once(": ") {
        Some((kind, rest)) if kind.starts_with("invalid") => match rest.rsplit_once("expected ") {
            Some((_, expected)) => format!("{kind}: expected {}", expected.split(" at line").next().unwrap_or("")),
            None => kind.to_string(),
        },
        _ => message.split(" at line").next().unwrap_or(&message).to_string(),
    }
}

/// Who did something, as the contact book keeps them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    /// Their id.
    pub user: UserId,
    /// First name.
    pub first_name: String,
    /// Username.
    pub username: Option<String>,
    /// Language tag.
    pub language_code: Option<String>,
}

impl From<&User> for Person {
    fn from(u: &User) -> Person {
        Person {
            user: UserId(u.id),
            first_name: u.first_name.clone(),
            username: u.username.clone(),
            language_code: u.language_code.clone(),
        }
    }
}

/// What one update means for gavat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpdateAction {
    /// `/start` in a private chat: consent (a new user, or one coming back).
    Start {
        /// Who.
        person: Person,
        /// When.
        at: Timestamp,
    },
    /// `/stop` in a private chat: opt-out, confirmed once.
    Stop {
        /// Who.
        user: UserId,
        /// When.
        at: Timestamp,
    },
    /// The Unsubscribe button: opt-out, confirmed once; the query is answered.
    Unsubscribe {
        /// Who.
        user: UserId,
        /// The query to answer.
        query: String,
    },
    /// Another button: activity; the query is answered.
    Button {
        /// Who.
        user: UserId,
        /// The query to answer.
        query: String,
    },
    /// The user blocked the bot (or deleted the chat): opt-out, nothing sent.
    Blocked {
        /// Who.
        user: UserId,
        /// When.
        at: Timestamp,
    },
    /// A message in a private chat (not a command gavat knows).
    PrivateMessage {
        /// Who.
        user: UserId,
        /// When.
        at: Timestamp,
        /// The chat (the user's id).
        chat_id: i64,
        /// The id of the message it replies to, if it is a reply.
        reply_to: Option<i64>,
    },
    /// A payment went through: a conversion.
    Payment {
        /// Who.
        user: UserId,
        /// When.
        at: Timestamp,
    },
    /// A message in a group: activity, and the writer is a member.
    GroupMessage {
        /// Who.
        user: UserId,
        /// When.
        at: Timestamp,
        /// The group's chat id.
        chat_id: i64,
    },
    /// Someone joined or left a group.
    Membership {
        /// Who.
        user: UserId,
        /// When.
        at: Timestamp,
        /// The group's chat id.
        chat_id: i64,
        /// In the group now.
        member: bool,
    },
    /// Nothing gavat uses (the reason names the kind).
    Ignored {
        /// Why.
        why: String,
    },
}

/// What `update` means.
pub fn read_update(update: &Update) -> UpdateAction {
    let ignored = |why: &str| UpdateAction::Ignored { why: why.to_string() };
    if let Some(message) = &update.message {
        let at = Timestamp(message.date);
        let Some(from) = &message.from else { return ignored("a message without a sender") };
        if from.is_bot {
            return ignored("a message from a bot");
        }
        let user = UserId(from.id);
        if message.successful_payment.is_some() {
            return UpdateAction::Payment { user, at };
        }
        if message.chat.is_group() {
            return UpdateAction::GroupMessage { user, at, chat_id: message.chat.id };
        }
        if !message.chat.is_private() {
            return ignored("a message in a channel");
        }
        return match command(message.text.as_deref()) {
            Some("start") => UpdateAction::Start { person: Person::from(from), at },
            Some("stop") => UpdateAction::Stop { user, at },
            _ => UpdateAction::PrivateMessage {
                user,
                at,
                chat_id: message.chat.id,
                reply_to: message.reply_to_message.as_ref().map(|r| r.message_id),
            },
        };
    }
    if let Some(query) = &update.callback_query {
        let user = UserId(query.from.id);
        return if query.data.as_deref() == Some(UNSUBSCRIBE_CALLBACK) {
            UpdateAction::Unsubscribe { user, query: query.id.clone() }
        } else {
            UpdateAction::Button { user, query: query.id.clone() }
        };
    }
    if let Some(change) = &update.my_chat_member {
        if !change.chat.is_private() {
            // The bot added to or removed from a group: the groups' configuration says which
            // groups we post into.
            return ignored("the bot's own membership of a group");
        }
        return if change.new_chat_member.is_in_chat() {
            // Unblocking is not consent: only /start is.
            ignored("the user unblocked the bot")
        } else {
            UpdateAction::Blocked { user: UserId(change.from.id), at: Timestamp(change.date) }
        };
    }
    if let Some(change) = &update.chat_member {
        if !change.chat.is_group() {
            return ignored("a membership change outside a group");
        }
        let member = &change.new_chat_member;
        return UpdateAction::Membership {
            user: UserId(member.user.id),
            at: Timestamp(change.date),
            chat_id: change.chat.id,
            member: member.is_in_chat(),
        };
    }
    match update.fields.iter().find(|k| *k != "update_id") {
        Some(kind) => UpdateAction::Ignored { why: format!("an update of kind {kind}") },
        None => ignored("an empty update"),
    }
}

/// The bot command a text starts with (`/start`, `/stop@our_bot` → `stop`), lower-cased.
fn command(text: Option<&str>) -> Option<&str> {
    let first = text?.split_whitespace().next()?;
    let name = first.strip_prefix('/')?;
    let name = name.split('@').next().unwrap_or(name);
    ["start", "stop"].into_iter().find(|c| name.eq_ignore_ascii_case(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(json: &str) -> UpdateAction {
        read_update(&parse_update(json.as_bytes()).unwrap())
    }

    fn private(text: &str) -> String {
        format!(
            r#"{{"update_id":7,"message":{{"message_id":3,"date":1800000001,"text":"{text}",
               "from":{{"id":42,"is_bot":false,"first_name":"Ayşe","language_code":"tr","extra":1}},
               "chat":{{"id":42,"type":"private"}}}}}}"#
        )
    }

    /// Commands, plain messages and replies in a private chat.
    #[test]
    fn private_messages_are_read() {
        let UpdateAction::Start { person, at } = read(&private("/start")) else { panic!("not a start") };
        assert_eq!(
            (person.user, person.language_code.as_deref(), at),
            (UserId(42), Some("tr"), Timestamp(1_800_000_001))
        );
        assert_eq!(
            read(&private("/stop@gavat_bot")),
            UpdateAction::Stop { user: UserId(42), at: Timestamp(1_800_000_001) }
        );
        assert!(matches!(read(&private("hello")), UpdateAction::PrivateMessage { reply_to: None, .. }));
        let reply = private("yes").replace(
            r#""text":"yes""#,
            r#""text":"yes","reply_to_message":{"message_id":99,"date":1,"chat":{"id":42,"type":"private"}}"#,
        );
        assert!(matches!(read(&reply), UpdateAction::PrivateMessage { reply_to: Some(99), .. }));
    }

    /// Buttons, blocks, group messages and membership.
    #[test]
    fn other_kinds_are_read() {
        let button = |data: &str| {
            format!(
                r#"{{"update_id":1,"callback_query":{{"id":"q1","data":"{data}","from":{{"id":5,"first_name":"A"}}}}}}"#
            )
        };
        assert_eq!(
            read(&button(UNSUBSCRIBE_CALLBACK)),
            UpdateAction::Unsubscribe { user: UserId(5), query: "q1".into() }
        );
        assert_eq!(read(&button("offer")), UpdateAction::Button { user: UserId(5), query: "q1".into() });
        let member = |chat: &str, status: &str, field: &str| {
            format!(
                r#"{{"update_id":2,"{field}":{{"chat":{chat},"from":{{"id":5,"first_name":"A"}},"date":10,
                   "old_chat_member":{{"status":"member","user":{{"id":9,"first_name":"B"}}}},
                   "new_chat_member":{{"status":"{status}","user":{{"id":9,"first_name":"B"}}}}}}}}"#
            )
        };
        let private = r#"{"id":5,"type":"private"}"#;
        let group = r#"{"id":-100,"type":"supergroup","title":"Club"}"#;
        assert_eq!(
            read(&member(private, "kicked", "my_chat_member")),
            UpdateAction::Blocked { user: UserId(5), at: Timestamp(10) }
        );
        assert!(matches!(read(&member(private, "member", "my_chat_member")), UpdateAction::Ignored { .. }));
        assert_eq!(
            read(&member(group, "left", "chat_member")),
            UpdateAction::Membership { user: UserId(9), at: Timestamp(10), chat_id: -100, member: false }
        );
        assert!(
            matches!(read(r#"{"update_id":3,"edited_message":{}}"#), UpdateAction::Ignored { why } if why.contains("edited_message"))
        );
    }

    /// A field gavat reads that is missing or mistyped is named; the value is not echoed.
    #[test]
    fn malformed_updates_name_the_field() {
        let err = parse_update(
            br#"{"update_id":1,"message":{"message_id":1,"date":1,"chat":{"id":"secret-ish","type":"private"}}}"#,
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("message.chat.id"), "{text}");
        assert!(!text.contains("secret-ish"), "{text}");
        let err = parse_update(br#"{"edited_message":{}}"#).unwrap_err();
        assert!(err.to_string().contains("update_id"), "{err}");
        assert!(parse_update(b"not json").is_err());
    }
}
