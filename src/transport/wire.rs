//! How an outbound message looks outside the process: one JSON object, the same for the
//! dry-run outbox (`outbox.jsonl`) and the webhook transport's request body (schema in
//! docs/transports.md).

use serde::Serialize;

use crate::domain::{ContentKind, Destination, OutboundMessage, Segment};

/// An [`OutboundMessage`] as JSON: `{"id": "…", "to": {"user": 42}, "bot": 0, "content":
/// "offer", "segment": "HOT_LEAD", "at": "2026-…Z", "at_unix": …}`. The id is a string: it is
/// a 64-bit number, beyond what a JavaScript reader holds exactly.
#[derive(Debug, Serialize)]
pub struct MessageJson {
    /// The message id (the idempotency key of the send), in decimal.
    pub id: String,
    /// `{"user": ID}` or `{"group": ID}`.
    pub to: Destination,
    /// The bot it goes through.
    pub bot: u32,
    /// The kind of content.
    pub content: ContentKind,
    /// The segment whose strategy chose it.
    pub segment: Segment,
    /// When it went out (UTC, RFC 3339).
    pub at: String,
    /// The same, seconds since the Unix epoch.
    pub at_unix: i64,
}

impl From<&OutboundMessage> for MessageJson {
    fn from(m: &OutboundMessage) -> MessageJson {
        MessageJson {
            id: m.id.to_string(),
            to: m.to,
            bot: m.bot.0,
            content: m.content,
            segment: m.segment,
            at: m.at.to_rfc3339(),
            at_unix: m.at.secs(),
        }
    }
}

/// The message as one line of JSON, without the newline.
pub fn message_line(message: &OutboundMessage) -> String {
    // Serialising plain strings and numbers cannot fail.
    serde_json::to_string(&MessageJson::from(message)).unwrap_or_default()
}
