//! The text of a message: templates per segment × content kind × language, the user's
//! language from their contact, and optional LLM personalisation within guardrails. What
//! the Telegram sender sends ([`TemplateText`], a
//! [`TextSource`](crate::transport::telegram::TextSource)) and what `gavat preview` shows.
//! Documented in docs/messages.md.
//!
//! - [`html`]: the Bot API's HTML subset, checked; the length after entity parsing.
//! - [`template`]: one template — variables, escaping, names made safe to show.
//! - [`catalog`]: a template set (one TOML file per language) and the fallback chain.
//! - [`language`]: which language a user is written to; a small English/Turkish check.
//! - [`guardrails`]: what an LLM reply must pass.
//! - [`personalise`]: the LLM call — aggregates only, budgeted, every outcome counted.
//! - [`text`]: [`TemplateText`], putting it together.
//! - [`settings`]: `[messages]` of `gavat.toml` and [`message_text`], the live engine's
//!   text source.

pub mod catalog;
pub mod guardrails;
pub mod html;
pub mod language;
pub mod personalise;
pub mod settings;
pub mod template;
pub mod text;

pub use catalog::{Audience, TemplateLoadError, TemplateOrigin, TemplateSet};
pub use guardrails::{GuardrailError, Guardrails};
pub use language::{LanguageReason, pick_language};
pub use personalise::{PersonaliseReport, PersonaliseSettings, Personaliser};
pub use settings::{MessageTextError, MessagesConfig, MessagesSection, check_messages, message_text};
pub use template::{Template, TemplateError, Values, display_name};
pub use text::{ArmTemplates, Explained, Offers, TemplateText, TextKind};
