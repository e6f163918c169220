//! The text of a message. A [`TextSource`] turns an [`OutboundMessage`] into a
//! [`Composed`] message: Bot API HTML and its inline buttons, the "Unsubscribe" button
//! always among them. [`BuiltinText`] is the fallback when no templates are configured: one
//! fixed English sentence per content kind, the bot's name, and the mandatory opt-out line.

use std::fmt::Debug;

use crate::domain::{ContentKind, OutboundMessage};

/// The opt-out line every marketing message ends with.
pub const OPT_OUT_LINE: &str = "Reply /stop to unsubscribe";

/// The `callback_data` of the "Unsubscribe" button: a press is an opt-out.
pub const UNSUBSCRIBE_CALLBACK: &str = "gavat:stop";

/// The label of the "Unsubscribe" button when no template names it.
pub const UNSUBSCRIBE_LABEL: &str = "Unsubscribe";

/// One inline button under a message: a press comes back as a `callback_query` carrying
/// `callback_data`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Button {
    /// The label (plain text, not HTML).
    pub label: String,
    /// What a press sends back (at most 64 bytes, the Bot API's limit).
    pub callback_data: String,
}

impl Button {
    /// The "Unsubscribe" button with `label`.
    pub fn unsubscribe(label: impl Into<String>) -> Button {
        Button { label: label.into(), callback_data: UNSUBSCRIBE_CALLBACK.to_string() }
    }
}

/// A message ready for `sendMessage`: its HTML and its inline buttons (one per row).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Composed {
    /// The text, as HTML for `parse_mode = HTML`.
    pub html: String,
    /// The inline buttons, one per row; a marketing message has the unsubscribe button.
    pub buttons: Vec<Button>,
}

/// Writes the text of a message, as HTML for `parse_mode = HTML`. Every variable it
/// interpolates must go through [`escape_html`]; every message it writes ends with the
/// opt-out line and carries the "Unsubscribe" button.
pub trait TextSource: Send + Sync + Debug {
    /// The message `message` becomes, sent through the bot named `bot_name`.
    fn compose(&self, message: &OutboundMessage, bot_name: &str) -> Composed;
}

/// This slice's text until templates come: `<b>{bot name}</b>`, one sentence per content
/// kind, a blank line and [`OPT_OUT_LINE`]. The bot's name is escaped.
#[derive(Clone, Copy, Debug, Default)]
pub struct BuiltinText;

impl BuiltinText {
    fn sentence(kind: ContentKind) -> &'static str {
        match kind {
            ContentKind::Offer => "A new offer is waiting for you.",
            ContentKind::Reminder => "A friendly reminder: something you started is still waiting.",
            ContentKind::Educational => "Here is a tip to get more out of the service.",
            ContentKind::News => "There is news about the service.",
            ContentKind::Premium => "Premium is open to you, with more of everything.",
            ContentKind::Community => "Something is happening in the community.",
        }
    }
}

impl TextSource for BuiltinText {
    fn compose(&self, message: &OutboundMessage, bot_name: &str) -> Composed {
        Composed {
            html: format!(
                "<b>{}</b>: {}\n\n{OPT_OUT_LINE}",
                escape_html(bot_name),
                BuiltinText::sentence(message.content)
            ),
            buttons: vec![Button::unsubscribe(UNSUBSCRIBE_LABEL)],
        }
    }
}

/// `text` safe inside Bot API HTML: `&`, `<`, `>` and `"` as entities (the four the Bot API
/// names).
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{BotId, Destination, Segment, Timestamp, UserId};

    /// Every kind has its sentence and the opt-out line; a hostile bot name is escaped.
    #[test]
    fn every_kind_ends_with_the_opt_out_line_and_names_are_escaped() {
        for content in ContentKind::ALL {
            let message = OutboundMessage {
                id: 1,
                to: Destination::User(UserId(1)),
                bot: BotId(0),
                content,
                segment: Segment::HotLead,
                at: Timestamp(0),
            };
            let composed = BuiltinText.compose(&message, "<script>&\"x\"</script>");
            assert_eq!(composed.buttons, vec![Button::unsubscribe(UNSUBSCRIBE_LABEL)]);
            let text = composed.html;
            assert!(text.ends_with(OPT_OUT_LINE), "{text}");
            assert!(text.starts_with("<b>&lt;script&gt;&amp;&quot;x&quot;&lt;/script&gt;</b>: "), "{text}");
        }
        assert_eq!(escape_html("a < b && c > \"d\" — ünï"), "a &lt; b &amp;&amp; c &gt; &quot;d&quot; — ünï");
    }
}
