//! Which language a user is written to, and a small deterministic check of the language a
//! text is in (for the LLM guardrail).
//!
//! The choice: the user's Telegram `language_code` as given (`pt-br`), then its primary
//! subtag (`pt`), then the configured default; every step says why.
//!
//! The check knows English and Turkish only, by letters and common words: Turkish has
//! letters English never uses (ç ğ ı ş ö ü İ) and both have short, frequent function
//! words. It is meant to catch a reply in the wrong one of the two, not to identify
//! languages: a reply of a few words, a list of brand names, or a third language that
//! shares no stopwords is "unsure", and the guardrail treats unsure as a failure. For any
//! other language the LLM is not used at all (the template is sent).

use serde::Serialize;

/// Why a language was chosen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "because", rename_all = "snake_case")]
pub enum LanguageReason {
    /// The user's `language_code` names a language we have templates in.
    UserCode {
        /// The code.
        code: String,
    },
    /// The code's primary subtag does (`pt-br` → `pt`).
    PrimarySubtag {
        /// The code as given.
        code: String,
    },
    /// We have no templates in the user's language: the default.
    Unsupported {
        /// The code as given.
        code: String,
    },
    /// The user's contact has no `language_code`: the default.
    NoCode,
    /// We have no contact for the user: the default.
    NoContact,
    /// A group post: groups are written to in the default language.
    Group,
}

impl std::fmt::Display for LanguageReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LanguageReason::UserCode { code } => write!(f, "the user's language_code {code:?}"),
            LanguageReason::PrimarySubtag { code } => {
                write!(f, "the primary subtag of the user's language_code {code:?}")
            }
            LanguageReason::Unsupported { code } => {
                write!(f, "no templates in the user's language_code {code:?}: the default")
            }
            LanguageReason::NoCode => f.write_str("the contact has no language_code: the default"),
            LanguageReason::NoContact => f.write_str("no contact: default language"),
            LanguageReason::Group => f.write_str("a group post: the default language"),
        }
    }
}

/// The language to write in for `code` (a user's `language_code`; `None` when the contact
/// has none), given which languages `have` templates, ending at `default`. `contact_known`
/// tells a missing code from a missing contact.
pub fn pick_language(
    code: Option<&str>,
    contact_known: bool,
    have: impl Fn(&str) -> bool,
    default: &str,
) -> (String, LanguageReason) {
    let Some(raw) = code.filter(|_| contact_known) else {
        let reason = if contact_known { LanguageReason::NoCode } else { LanguageReason::NoContact };
        return (default.to_string(), reason);
    };
    let code = raw.trim().to_ascii_lowercase().replace('_', "-");
    if have(&code) {
        return (code.clone(), LanguageReason::UserCode { code: raw.to_string() });
    }
    if let Some((primary, _)) = code.split_once('-')
        && have(primary)
    {
        return (primary.to_string(), LanguageReason::PrimarySubtag { code: raw.to_string() });
    }
    (default.to_string(), LanguageReason::Unsupported { code: raw.chars().take(35).collect() })
}

/// The languages [`detect`] can tell apart.
pub const CHECKED_LANGUAGES: [&str; 2] = ["en", "tr"];

const TURKISH_LETTERS: &[char] = &['ç', 'ğ', 'ı', 'ş', 'ö', 'ü', 'Ç', 'Ğ', 'İ', 'Ş', 'Ö', 'Ü'];
const TURKISH_WORDS: &[&str] = &[
    "ve", "bir", "bu", "için", "ile", "çok", "da", "de", "daha", "gibi", "ama", "ne", "mi", "var", "sen", "siz",
    "size", "sizin", "senin", "merhaba", "yeni", "şimdi", "hemen", "bugün", "olan", "her", "en", "artık", "seni",
];
const ENGLISH_WORDS: &[&str] = &[
    "the", "and", "you", "your", "to", "for", "of", "is", "a", "in", "with", "this", "our", "new", "now", "it", "are",
    "on", "we", "just", "here", "today", "hi", "hello", "what", "get", "more", "there",
];

/// The language of `text` among [`CHECKED_LANGUAGES`], or `None` when unsure (fewer than
/// three words the check knows, or a tie). Turkish letters count three times a word: a
/// Turkish sentence may be all loanwords, an English one never has them.
pub fn detect(text: &str) -> Option<&'static str> {
    let letters = text.chars().filter(|c| TURKISH_LETTERS.contains(c)).count();
    let (mut tr, mut en) = (3 * letters, 0);
    for word in text.split(|c: char| !c.is_alphabetic()).filter(|w| !w.is_empty()) {
        let lower = word.to_lowercase();
        // `İ`.to_lowercase() is `i̇`; compare on the plain letter too.
        let plain = lower.replace('\u{0307}', "");
        tr += usize::from(TURKISH_WORDS.contains(&plain.as_str()));
        en += usize::from(ENGLISH_WORDS.contains(&plain.as_str()));
    }
    if tr + en < 3 || tr == en {
        return None;
    }
    Some(if tr > en { "tr" } else { "en" })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Exact code, primary subtag, unsupported, no code, no contact — each with its reason.
    #[test]
    fn the_chain_ends_at_the_default() {
        let have = |l: &str| l == "en" || l == "tr" || l == "pt";
        assert_eq!(pick_language(Some("tr"), true, have, "en").0, "tr");
        assert_eq!(
            pick_language(Some("pt-BR"), true, have, "en"),
            ("pt".into(), LanguageReason::PrimarySubtag { code: "pt-BR".into() })
        );
        assert_eq!(
            pick_language(Some("de"), true, have, "en"),
            ("en".into(), LanguageReason::Unsupported { code: "de".into() })
        );
        assert_eq!(pick_language(None, true, have, "en"), ("en".into(), LanguageReason::NoCode));
        assert_eq!(pick_language(Some("tr"), false, have, "en"), ("en".into(), LanguageReason::NoContact));
    }

    /// English and Turkish are told apart; a few words or a third language are unsure.
    #[test]
    fn detects_english_and_turkish() {
        assert_eq!(detect("Hi there, your new offer is waiting for you today."), Some("en"));
        assert_eq!(detect("Merhaba, yeni teklifin seni bekliyor. Bugün için geçerli!"), Some("tr"));
        assert_eq!(detect("İNDİRİM BAŞLADI ŞİMDİ"), Some("tr"));
        assert_eq!(detect("Super!"), None);
        assert_eq!(detect("Guten Tag, Ihr Angebot wartet auf Sie."), None);
    }
}
