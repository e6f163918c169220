//! The kinds of content a message can carry, as the behaviour model sees them.

use serde::{Deserialize, Serialize};

/// What a message is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContentKind {
    /// A discount or a product offer.
    Offer,
    /// A reminder (an abandoned cart, an unread message).
    Reminder,
    /// How-tos and tips.
    Educational,
    /// News about the product or the community.
    News,
    /// A premium upgrade.
    Premium,
    /// Community events and group activity.
    Community,
}

impl ContentKind {
    /// Every kind, in index order.
    pub const ALL: [ContentKind; 6] = [
        ContentKind::Offer,
        ContentKind::Reminder,
        ContentKind::Educational,
        ContentKind::News,
        ContentKind::Premium,
        ContentKind::Community,
    ];

    /// Position in [`ContentKind::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The name used in files.
    pub fn as_str(self) -> &'static str {
        match self {
            ContentKind::Offer => "offer",
            ContentKind::Reminder => "reminder",
            ContentKind::Educational => "educational",
            ContentKind::News => "news",
            ContentKind::Premium => "premium",
            ContentKind::Community => "community",
        }
    }
}
