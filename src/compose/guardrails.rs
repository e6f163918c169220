//! What an LLM's rewrite of a template must pass, checked in code on every reply before it
//! is used: strict JSON `{"text": "…"}`; a valid template (known variables only, the Bot
//! API's HTML subset); at most 4096 characters after entity parsing with the longest names
//! and the opt-out line; no link, bare domain or `@mention` unless its host is on the
//! allow-list; the user's language by [`detect`]; none of the banned words.
//!
//! Limits, written down: links are found by shape (`scheme://`, `www.`, `name.tld` with an
//! alphabetic top-level label, `@name`), which refuses some harmless text ("Node.js") and
//! cannot see a link spelled out in words ("example dot com"); banned words are matched as
//! lower-case substrings of the text the model wrote (not of the bot name or offer, which
//! the operator configured), so "ass" would also refuse "class" — list whole phrases; the
//! language check is the small English/Turkish one of [`super::language`].

use serde::Deserialize;

use super::html::{self, MAX_MESSAGE_LEN};
use super::language::detect;
use super::template::{Template, TemplateError, Values};

/// Why a reply was refused. Each variant has a label for counters.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GuardrailError {
    /// Not `{"text": "…"}` exactly.
    #[error("not the expected JSON: {0}")]
    Malformed(String),
    /// Not a valid template (an unknown variable, HTML outside the subset).
    #[error("not a valid template: {0}")]
    Template(TemplateError),
    /// Longer than a message may be.
    #[error("could reach {worst} characters after entity parsing; at most {MAX_MESSAGE_LEN}")]
    TooLong {
        /// The longest rendering, UTF-16 units.
        worst: usize,
    },
    /// A link (or something Telegram would make one) to a host not on the allow-list.
    #[error("a link to {0:?}, which is not on the allow-list")]
    Link(String),
    /// An `@mention` (Telegram links it to an account).
    #[error("an @mention ({0:?})")]
    Mention(String),
    /// Not in the user's language (or not clearly in any).
    #[error("written in {found} where {expected} was asked for")]
    WrongLanguage {
        /// The language asked for.
        expected: String,
        /// What the check found (`unsure` when it could not tell).
        found: &'static str,
    },
    /// A banned word or phrase.
    #[error("uses the banned word {0:?}")]
    BannedWord(String),
}

impl GuardrailError {
    /// A short label for counters and logs.
    pub fn label(&self) -> &'static str {
        match self {
            GuardrailError::Malformed(_) => "malformed_json",
            GuardrailError::Template(TemplateError::Html(_)) => "invalid_html",
            GuardrailError::Template(_) => "invalid_template",
            GuardrailError::TooLong { .. } => "too_long",
            GuardrailError::Link(_) | GuardrailError::Mention(_) => "link",
            GuardrailError::WrongLanguage { .. } => "wrong_language",
            GuardrailError::BannedWord(_) => "banned_word",
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Reply {
    text: String,
}

/// The configured checks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Guardrails {
    /// Hosts a link may point to (a host or any subdomain of it), lower case.
    pub allowed_link_hosts: Vec<String>,
    /// Words and phrases the text may not contain, lower case.
    pub banned_words: Vec<String>,
}

impl Guardrails {
    /// Checks a reply's raw content for a message in `language` whose opt-out tail (the
    /// separator and the line) is `tail_len` units and whose offer is at most `offer_len`;
    /// the template to use if it passes.
    pub fn check(
        &self,
        content: &str,
        language: &str,
        tail_len: usize,
        offer_len: usize,
    ) -> Result<Template, GuardrailError> {
        let reply: Reply =
            serde_json::from_str(content.trim()).map_err(|e| GuardrailError::Malformed(one_line(&e.to_string())))?;
        let template = Template::parse(reply.text.trim()).map_err(GuardrailError::Template)?;
        let worst = template.worst_len(offer_len) + tail_len;
        if worst > MAX_MESSAGE_LEN {
            return Err(GuardrailError::TooLong { worst });
        }
        // The model's own words: every variable empty.
        let own = template.render(&Values { first_name: String::new(), bot_name: String::new(), offer: String::new() });
        let checked = html::check(&own).map_err(|e| GuardrailError::Template(TemplateError::Html(e)))?;
        for href in &checked.hrefs {
            let host = reqwest::Url::parse(href)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https"))
                .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
                .ok_or_else(|| GuardrailError::Link(href.chars().take(80).collect()))?;
            if !self.host_allowed(&host) {
                return Err(GuardrailError::Link(host));
            }
        }
        for token in checked.visible.split_whitespace() {
            let token = token.trim_matches(|c: char| !(c.is_alphanumeric() || c == '@' || c == '/' || c == ':'));
            if token.len() > 1 && token.starts_with('@') {
                return Err(GuardrailError::Mention(token.chars().take(40).collect()));
            }
            if let Some(host) = link_host(token)
                && !self.host_allowed(&host)
            {
                return Err(GuardrailError::Link(host));
            }
        }
        let lower = checked.visible.to_lowercase();
        if let Some(word) = self.banned_words.iter().find(|w| lower.contains(w.as_str())) {
            return Err(GuardrailError::BannedWord(word.clone()));
        }
        let found = detect(&checked.visible);
        if found != Some(language) {
            return Err(GuardrailError::WrongLanguage {
                expected: language.to_string(),
                found: found.unwrap_or("unsure"),
            });
        }
        Ok(template)
    }

    fn host_allowed(&self, host: &str) -> bool {
        self.allowed_link_hosts.iter().any(|h| host == h || host.ends_with(&format!(".{h}")))
    }
}

/// The host `token` would link to in Telegram, if it looks like a link.
fn link_host(token: &str) -> Option<String> {
    let lower = token.to_ascii_lowercase();
    let rest = match lower.split_once("://") {
        Some((_, rest)) => rest,
        None => &lower,
    };
    let host = rest.split(['/', '?', '#', ':']).next().unwrap_or_default();
    if lower.contains("://") {
        return Some(host.to_string());
    }
    let labels: Vec<&str> = host.split('.').collect();
    let looks_like_domain = labels.len() >= 2
        && labels.iter().all(|l| !l.is_empty() && l.chars().all(|c| c.is_alphanumeric() || c == '-'))
        && labels.last().is_some_and(|tld| tld.chars().count() >= 2 && tld.chars().all(char::is_alphabetic));
    looks_like_domain.then(|| host.to_string())
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ").chars().take(160).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rails() -> Guardrails {
        Guardrails { allowed_link_hosts: vec!["example.com".into()], banned_words: vec!["guaranteed".into()] }
    }

    fn reply(text: &str) -> String {
        serde_json::json!({ "text": text }).to_string()
    }

    /// A sound reply passes; each kind of bad reply is refused with its label.
    #[test]
    fn replies_are_checked() {
        let ok = "Hi {first_name}! Your new offer from {bot_name} is waiting for you: <b>{offer}</b>. See https://shop.example.com/x";
        assert!(rails().check(&reply(ok), "en", 30, 10).is_ok());
        let cases = [
            ("Hi {first_name}, visit evil.io for your new offer today", "link"),
            ("Hi {first_name}, see <a href=\"https://evil.io\">your new offer</a> for you", "link"),
            ("Hi {first_name}, ask @support_bot for your new offer and the rest", "link"),
            ("Merhaba {first_name}, yeni teklifin seni bekliyor, hemen bak!", "wrong_language"),
            ("Hi {first_name}, this is guaranteed to be the best offer for you", "banned_word"),
            ("Hi {user_id}, your new offer is here for you", "invalid_template"),
            ("Hi <blink>{first_name}</blink>, your new offer is here for you", "invalid_html"),
        ];
        for (text, label) in cases {
            assert_eq!(rails().check(&reply(text), "en", 30, 10).unwrap_err().label(), label, "{text}");
        }
        let long = format!("Hi {{first_name}}, the new offer is here for you. {}", "word ".repeat(900));
        assert_eq!(rails().check(&reply(&long), "en", 30, 10).unwrap_err().label(), "too_long");
        assert_eq!(rails().check("Sure! {\"text\": \"x\"}", "en", 30, 10).unwrap_err().label(), "malformed_json");
        assert_eq!(
            rails().check("{\"text\": \"x\", \"links\": []}", "en", 30, 10).unwrap_err().label(),
            "malformed_json"
        );
    }
}
