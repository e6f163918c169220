//! The `[messages]` section of `gavat.toml` (templates, default language, offer, and
//! `[messages.llm]`), validated into a [`MessagesConfig`], and [`message_text`]: the
//! [`TemplateText`] a live engine's Telegram sender writes with, built from the config, the
//! experiment in force (an arm may name its own template set) and the contact book.
//!
//! Secrets stay in the environment: the API key is read from the variable `api_key_env`
//! names (default `OPENAI_API_KEY`) when the engine starts, never from the file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::config::{FieldError, SettingsFileError};
use crate::contacts::ContactBook;
use crate::live::config::RunConfig;
use crate::llm::{ApiKey, LlmSettings};

use super::catalog::{TemplateLoadError, TemplateSet};
use super::guardrails::Guardrails;
use super::personalise::{PersonaliseSettings, Personaliser};
use super::text::{ArmTemplates, Offers, TemplateText};

/// The default language when `[messages]` names none.
pub const DEFAULT_LANGUAGE: &str = "en";
/// The most characters of one offer.
pub const MAX_OFFER_CHARS: usize = 500;

/// `[messages]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessagesSection {
    templates_dir: Option<PathBuf>,
    default_language: Option<String>,
    offer: Option<OfferSection>,
    llm: Option<LlmSection>,
}

/// One offer for every language, or one per language.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OfferSection {
    Everywhere(String),
    PerLanguage(BTreeMap<String, String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LlmSection {
    enabled: Option<bool>,
    model: Option<String>,
    base_url: Option<String>,
    base_url_env: Option<String>,
    api_key_env: Option<String>,
    timeout_secs: Option<u64>,
    max_calls_per_hour: Option<u32>,
    max_calls_per_day: Option<u32>,
    #[serde(default)]
    allowed_link_hosts: Vec<String>,
    #[serde(default)]
    banned_words: Vec<String>,
}

/// Where the LLM's base URL comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BaseUrl {
    /// Written in the file.
    Fixed(String),
    /// Read from this environment variable at the start.
    FromEnv(String),
}

/// `[messages.llm]`, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LlmTextConfig {
    /// The model.
    pub model: String,
    /// The OpenAI-compatible base URL.
    pub base_url: BaseUrl,
    /// The variable holding the API key.
    pub api_key_env: String,
    /// One request's timeout.
    pub timeout: Duration,
    /// Calls per engine hour.
    pub max_calls_per_hour: u32,
    /// Calls per engine day.
    pub max_calls_per_day: u32,
    /// The checks of every reply.
    pub guardrails: Guardrails,
}

/// `[messages]`, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessagesConfig {
    /// The templates directory (`None`: the shipped templates).
    pub templates_dir: Option<PathBuf>,
    /// The language every fallback ends in.
    pub default_language: String,
    /// The offer, per language.
    pub offers: Offers,
    /// LLM personalisation, when enabled.
    pub llm: Option<LlmTextConfig>,
}

impl Default for MessagesConfig {
    fn default() -> MessagesConfig {
        MessagesConfig {
            templates_dir: None,
            default_language: DEFAULT_LANGUAGE.into(),
            offers: Offers(BTreeMap::from([
                ("en".to_string(), "a special offer".to_string()),
                ("tr".to_string(), "size özel bir fırsat".to_string()),
            ])),
            llm: None,
        }
    }
}

impl MessagesConfig {
    /// Validates `[messages]` of `text` (read from `origin`); relative paths go through
    /// `resolve`. Errors name the file, the line and the field (`messages.llm.timeout_secs`);
    /// a variable name's error does not echo what was written (it may be the secret).
    pub(crate) fn from_section(
        section: MessagesSection,
        resolve: impl Fn(PathBuf) -> PathBuf,
        origin: &str,
        text: &str,
    ) -> Result<MessagesConfig, SettingsFileError> {
        MessagesConfig::validate(section, resolve).map_err(|e| {
            if e.field.ends_with("_env") {
                let (line, _) = e.locate(text);
                SettingsFileError::Invalid { path: origin.to_string(), line, field: e.field, message: e.message }
            } else {
                SettingsFileError::invalid(origin, text, e)
            }
        })
    }

    fn validate(section: MessagesSection, resolve: impl Fn(PathBuf) -> PathBuf) -> Result<MessagesConfig, FieldError> {
        let mut config =
            MessagesConfig { templates_dir: section.templates_dir.map(resolve), ..MessagesConfig::default() };
        if let Some(language) = section.default_language {
            if language.is_empty()
                || language.len() > 35
                || !language.chars().all(|c| c.is_ascii_lowercase() || c == '-')
            {
                return Err(FieldError::new(
                    "messages.default_language",
                    "must be a lower-case language code, e.g. \"en\"",
                ));
            }
            config.default_language = language;
        }
        match section.offer {
            None => {}
            Some(OfferSection::Everywhere(offer)) => {
                check_offer(&offer).map_err(|m| FieldError::new("messages.offer", m))?;
                config.offers = Offers(BTreeMap::from([("*".to_string(), offer)]));
            }
            Some(OfferSection::PerLanguage(offers)) => {
                for (language, offer) in &offers {
                    check_offer(offer).map_err(|m| FieldError::new(format!("messages.offer.{language}"), m))?;
                }
                if !offers.contains_key(&config.default_language) {
                    return Err(FieldError::new(
                        "messages.offer",
                        format!("needs an offer in the default language, {:?}", config.default_language),
                    ));
                }
                config.offers = Offers(offers);
            }
        }
        if let Some(llm) = section.llm
            && llm.enabled.unwrap_or(true)
        {
            config.llm = Some(llm_config(llm)?);
        }
        Ok(config)
    }

    /// One line for `gavat config check`: where templates come from, and the LLM.
    pub fn summary(&self) -> String {
        let templates = self.templates_dir.as_ref().map_or_else(|| "shipped".into(), |d| d.display().to_string());
        let llm = match &self.llm {
            None => "LLM off".to_string(),
            Some(l) => format!(
                "LLM {} (key from ${}, at most {}/h and {}/day)",
                l.model, l.api_key_env, l.max_calls_per_hour, l.max_calls_per_day
            ),
        };
        format!("templates {templates}, default language {}, {llm}", self.default_language)
    }
}

fn check_offer(offer: &str) -> Result<(), String> {
    if offer.trim().is_empty() || offer.chars().count() > MAX_OFFER_CHARS || offer.chars().any(char::is_control) {
        return Err(format!("must be 1–{MAX_OFFER_CHARS} characters of plain text on one line"));
    }
    Ok(())
}

fn llm_config(llm: LlmSection) -> Result<LlmTextConfig, FieldError> {
    let field = |name: &str, message: &str| FieldError::new(format!("messages.llm.{name}"), message);
    let base_url = match (llm.base_url, llm.base_url_env) {
        (Some(_), Some(_)) => return Err(field("base_url_env", "and base_url: give one of them")),
        (Some(url), None) => {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(field("base_url", "must start with http:// or https://"));
            }
            BaseUrl::Fixed(url)
        }
        (None, Some(env)) => {
            check_env_name(&env).map_err(|m| field("base_url_env", &m))?;
            BaseUrl::FromEnv(env)
        }
        (None, None) => BaseUrl::Fixed("https://api.openai.com/v1".into()),
    };
    let api_key_env = llm.api_key_env.unwrap_or_else(|| crate::llm::settings::API_KEY_ENV.to_string());
    check_env_name(&api_key_env).map_err(|m| field("api_key_env", &m))?;
    let model = llm.model.unwrap_or_else(|| "gpt-4o-mini".into());
    if model.trim().is_empty() {
        return Err(field("model", "must not be empty"));
    }
    let timeout_secs = llm.timeout_secs.unwrap_or(10);
    if !(1..=120).contains(&timeout_secs) {
        return Err(field("timeout_secs", "must be 1–120 seconds"));
    }
    let max_calls_per_day = llm.max_calls_per_day.unwrap_or(500);
    let max_calls_per_hour = llm.max_calls_per_hour.unwrap_or(max_calls_per_day.min(100));
    if max_calls_per_hour > max_calls_per_day {
        return Err(field("max_calls_per_hour", "must not be above max_calls_per_day"));
    }
    let mut hosts = Vec::new();
    for (i, host) in llm.allowed_link_hosts.iter().enumerate() {
        let host = host.trim().to_ascii_lowercase();
        let valid = !host.is_empty()
            && host.split('.').count() >= 2
            && host.split('.').all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
        if !valid {
            return Err(FieldError::new(
                format!("messages.llm.allowed_link_hosts[{i}]"),
                "must be a host name like shop.example.com (no scheme, no path)",
            ));
        }
        hosts.push(host);
    }
    let mut banned = Vec::new();
    for (i, word) in llm.banned_words.iter().enumerate() {
        let word = word.trim().to_lowercase();
        if word.is_empty() {
            return Err(FieldError::new(format!("messages.llm.banned_words[{i}]"), "must not be empty"));
        }
        banned.push(word);
    }
    Ok(LlmTextConfig {
        model,
        base_url,
        api_key_env,
        timeout: Duration::from_secs(timeout_secs),
        max_calls_per_hour,
        max_calls_per_day,
        guardrails: Guardrails { allowed_link_hosts: hosts, banned_words: banned },
    })
}

/// An environment variable's name (never echoes what was written: it may be the secret).
fn check_env_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    if valid {
        Ok(())
    } else {
        Err("must be the NAME of an environment variable (A–Z, 0–9, _), not the secret itself; the value is not shown"
            .into())
    }
}

/// Why the message text could not be set up. Fatal at the start, before anything is sent.
#[derive(Debug, thiserror::Error)]
pub enum MessageTextError {
    /// A template set is broken.
    #[error(transparent)]
    Templates(#[from] TemplateLoadError),
    /// The experiment file (for its arms' template sets) is broken.
    #[error(transparent)]
    Experiment(#[from] gavat_experiments::design::DesignError),
    /// An arm's template set could not be loaded (`e.toml:14: field arms[1].templates: …`).
    #[error("{path}:{line}: field arms[{arm}].templates: {cause}")]
    ArmTemplates {
        /// The experiment file.
        path: String,
        /// The line of the field.
        line: usize,
        /// The arm's index.
        arm: usize,
        /// Why.
        cause: TemplateLoadError,
    },
    /// LLM personalisation is on but a variable it needs is not set.
    #[error("[messages.llm] is enabled but ${0} is not set")]
    MissingEnv(String),
    /// The LLM client could not start.
    #[error("[messages.llm]: {0}")]
    Llm(String),
}

/// Loads and checks every template set `config` names — `[messages]`'s and the experiment
/// arms' — without starting the LLM: `gavat config check`'s check.
pub fn check_messages(config: &RunConfig) -> Result<(), MessageTextError> {
    template_sets(config).map(|_| ())
}

/// The template sets of experiment arms, and which arm gets which.
type ArmSets = (Vec<TemplateSet>, ArmTemplates);

/// The configured template set, and the arms' sets with the assignment when the
/// experiment in force names any.
fn template_sets(config: &RunConfig) -> Result<(TemplateSet, Option<ArmSets>), MessageTextError> {
    let messages = &config.messages;
    let load = |dir: Option<&Path>| match dir {
        Some(dir) => TemplateSet::load(dir, &messages.default_language, messages.offers.longest()),
        None => TemplateSet::shipped(&messages.default_language, messages.offers.longest()),
    };
    let base = load(messages.templates_dir.as_deref())?;
    let Some(path) = &config.experiment else { return Ok((base, None)) };
    let design = gavat_experiments::design::Experiment::from_path(path)?;
    if design.arms.iter().all(|a| a.templates.is_none()) {
        return Ok((base, None));
    }
    let dir_of_file = path.parent().filter(|p| !p.as_os_str().is_empty());
    let mut sets = Vec::new();
    let mut set_of_arm = Vec::new();
    for (i, arm) in design.arms.iter().enumerate() {
        let Some(dir) = &arm.templates else {
            set_of_arm.push(0);
            continue;
        };
        let dir = match dir_of_file {
            Some(base) if Path::new(dir).is_relative() => base.join(dir),
            _ => PathBuf::from(dir),
        };
        let set = load(Some(&dir)).map_err(|cause| MessageTextError::ArmTemplates {
            path: path.display().to_string(),
            line: design.written.get(&format!("arms[{i}].templates")).map_or(1, |w| w.line),
            arm: i,
            cause,
        })?;
        sets.push(set);
        set_of_arm.push(sets.len());
    }
    let mut names: Vec<String> = design.arms.iter().map(|a| a.name.clone()).collect();
    if design.holdout.is_some() {
        names.push(crate::experiment::HOLDOUT.to_string());
        set_of_arm.push(0);
    }
    let arms = ArmTemplates { assignment: crate::experiment::assignment(&design), set_of_arm, names };
    Ok((base, Some((sets, arms))))
}

/// The text source of a live engine: the templates of `config` (and of the experiment's
/// arms), the languages of `contacts`, and the LLM when `[messages.llm]` is enabled.
pub fn message_text(config: &RunConfig, contacts: Arc<dyn ContactBook>) -> Result<Arc<TemplateText>, MessageTextError> {
    let messages = &config.messages;
    let (base, arms) = template_sets(config)?;
    let mut text = TemplateText::new(base, contacts, messages.offers.clone());
    if let Some((sets, arms)) = arms {
        text = text.with_arms(sets, arms);
    }
    if let Some(llm) = &messages.llm {
        let env = |name: &str| {
            std::env::var(name).ok().filter(|v| !v.trim().is_empty()).ok_or(MessageTextError::MissingEnv(name.into()))
        };
        let base_url = match &llm.base_url {
            BaseUrl::Fixed(url) => url.clone(),
            BaseUrl::FromEnv(name) => env(name)?,
        };
        let settings = LlmSettings {
            base_url,
            model: llm.model.clone(),
            api_key: Some(ApiKey::new(env(&llm.api_key_env)?)),
            timeout: llm.timeout,
            ..LlmSettings::defaults()
        };
        settings.validate().map_err(|e| MessageTextError::Llm(e.to_string()))?;
        let personaliser = Personaliser::new(PersonaliseSettings {
            llm: settings,
            max_calls_per_hour: llm.max_calls_per_hour,
            max_calls_per_day: llm.max_calls_per_day,
            guardrails: llm.guardrails.clone(),
        })
        .map_err(|e| MessageTextError::Llm(e.to_string()))?;
        text = text.with_llm(personaliser).map_err(|e| MessageTextError::Llm(e.to_string()))?;
    }
    Ok(Arc::new(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<RunConfig, String> {
        RunConfig::from_toml_str(text, "gavat.toml", Some(Path::new("/etc/gavat"))).map_err(|e| e.to_string())
    }

    /// A full `[messages]` parses, paths relative to the file; without one, the shipped
    /// templates in English with the default offers and no LLM.
    #[test]
    fn the_messages_section_parses() {
        let config = parse(
            r#"
[messages]
templates_dir = "templates"
default_language = "tr"
offer = { tr = "%10 indirim", en = "10% off" }
[messages.llm]
model = "local"
base_url = "http://127.0.0.1:8080/v1"
api_key_env = "GAVAT_LLM_KEY"
max_calls_per_day = 50
allowed_link_hosts = ["Shop.Example.com"]
banned_words = ["Guaranteed"]
"#,
        )
        .unwrap();
        let m = &config.messages;
        assert_eq!(m.templates_dir, Some(PathBuf::from("/etc/gavat/templates")));
        assert_eq!(m.offers.for_language("tr", "tr"), "%10 indirim");
        let llm = m.llm.as_ref().unwrap();
        assert_eq!((llm.max_calls_per_hour, llm.max_calls_per_day), (50, 50));
        assert_eq!(llm.guardrails.allowed_link_hosts, vec!["shop.example.com".to_string()]);
        assert_eq!(llm.guardrails.banned_words, vec!["guaranteed".to_string()]);
        assert!(
            config.to_string().contains("messages:   templates /etc/gavat/templates, default language tr, LLM local")
        );
        assert_eq!(parse("").unwrap().messages, MessagesConfig::default());
        assert_eq!(parse("[messages.llm]\nenabled = false\n").unwrap().messages.llm, None);
    }

    /// Mistakes name the line and the field; a key pasted as a variable name is not echoed.
    #[test]
    fn errors_name_line_and_field() {
        let cases = [
            ("[messages]\ndefault_language = \"EN\"\n", "gavat.toml:2: field messages.default_language:"),
            ("[messages]\noffer = { tr = \"x\" }\n", "field messages.offer: needs an offer in the default language"),
            ("[messages]\noffer = \"\"\n", "gavat.toml:2: field messages.offer:"),
            ("[messages]\ncolour = 1\n", "gavat.toml:2:"),
            ("[messages.llm]\ntimeout_secs = 0\n", "gavat.toml:2: field messages.llm.timeout_secs:"),
            ("[messages.llm]\nbase_url = \"ftp://x\"\n", "gavat.toml:2: field messages.llm.base_url:"),
            (
                "[messages.llm]\nmax_calls_per_hour = 9\nmax_calls_per_day = 5\n",
                "field messages.llm.max_calls_per_hour:",
            ),
            (
                "[messages.llm]\nallowed_link_hosts = [\"https://x.com/a\"]\n",
                "field messages.llm.allowed_link_hosts[0]:",
            ),
        ];
        for (text, expected) in cases {
            let err = parse(text).unwrap_err();
            assert!(err.contains(expected), "{text:?}: {err}");
        }
        let err = parse("[messages.llm]\napi_key_env = \"sk-secret-key-123\"\n").unwrap_err();
        assert!(err.contains("gavat.toml:2: field messages.llm.api_key_env"), "{err}");
        assert!(!err.contains("secret-key"), "{err}");
    }

    /// `message_text` loads the configured set; a missing key for an enabled LLM is an error
    /// naming the variable, not its value.
    #[test]
    fn message_text_needs_the_llm_key() {
        let config = parse("[messages.llm]\napi_key_env = \"GAVAT_TEST_UNSET_LLM_KEY\"\n").unwrap();
        let err = message_text(&config, Arc::new(crate::contacts::MemoryContacts::new())).unwrap_err();
        assert_eq!(err.to_string(), "[messages.llm] is enabled but $GAVAT_TEST_UNSET_LLM_KEY is not set");
        assert!(message_text(&parse("").unwrap(), Arc::new(crate::contacts::MemoryContacts::new())).is_ok());
    }
}
