//! A template set: one TOML file per language (`en.toml`, `tr.toml`, …) in a directory, or
//! the shipped set compiled into the binary. Each file is parsed strictly (unknown keys
//! refused) and every template checked when loaded — variables, HTML, and the longest
//! rendering against the Bot API's 4096 — with errors `file:line: field PATH: …`.
//!
//! Which template a message gets ([`TemplateSet::resolve`]), in the chosen language L and
//! then in the default language D:
//! `L.[SEGMENT].kind` → `L.[default].kind` → `D.[SEGMENT].kind` → `D.[default].kind`
//! (a group post reads `[group]` where a direct message reads `[SEGMENT]`). The default
//! language's `[default]` must have every content kind, so the chain always ends.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::config::{FieldError, SettingsFileError, parse_settings_toml, read_settings_file};
use crate::domain::{ContentKind, Segment};

use super::html::{MAX_MESSAGE_LEN, utf16_len};
use super::template::{Template, TemplateError};

/// The shipped templates, by language.
const SHIPPED: [(&str, &str); 2] = [
    ("en.toml", include_str!("../../config/templates/en.toml")),
    ("tr.toml", include_str!("../../config/templates/tr.toml")),
];

/// Two newlines between the text and the opt-out line.
const OPT_OUT_SEPARATOR_LEN: usize = 2;

/// The most characters of a button label (Telegram shows about this many).
const MAX_LABEL_CHARS: usize = 64;

/// Why a template set could not be loaded. Bad input, fatal at the start.
#[derive(Debug, thiserror::Error)]
pub enum TemplateLoadError {
    /// A file could not be read, or a field is wrong (`en.toml:12: field HOT_LEAD.offer: …`).
    #[error(transparent)]
    File(#[from] SettingsFileError),
    /// The directory could not be listed.
    #[error("{path}: cannot list the templates directory: {cause}")]
    Dir {
        /// The directory.
        path: String,
        /// Why.
        cause: std::io::Error,
    },
    /// No file for the default language.
    #[error("{path}: no {language}.toml, the default language's templates (languages found: {found})")]
    NoDefaultLanguage {
        /// The directory.
        path: String,
        /// The default language.
        language: String,
        /// The languages there are.
        found: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    language: String,
    opt_out_line: String,
    unsubscribe_label: String,
    unknown_name: String,
    default: Option<RawKinds>,
    group: Option<RawKinds>,
    #[serde(rename = "HOT_LEAD")]
    hot_lead: Option<RawKinds>,
    #[serde(rename = "WARM_LEAD")]
    warm_lead: Option<RawKinds>,
    #[serde(rename = "COLD_LEAD")]
    cold_lead: Option<RawKinds>,
    #[serde(rename = "ENGAGED")]
    engaged: Option<RawKinds>,
    #[serde(rename = "BOT_LOVER")]
    bot_lover: Option<RawKinds>,
    #[serde(rename = "NIGHT_OWL")]
    night_owl: Option<RawKinds>,
    #[serde(rename = "NEW_USER")]
    new_user: Option<RawKinds>,
    #[serde(rename = "PREMIUM_POTENTIAL")]
    premium_potential: Option<RawKinds>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKinds {
    offer: Option<String>,
    reminder: Option<String>,
    educational: Option<String>,
    news: Option<String>,
    premium: Option<String>,
    community: Option<String>,
}

impl RawKinds {
    fn take(self) -> [(ContentKind, Option<String>); 6] {
        [
            (ContentKind::Offer, self.offer),
            (ContentKind::Reminder, self.reminder),
            (ContentKind::Educational, self.educational),
            (ContentKind::News, self.news),
            (ContentKind::Premium, self.premium),
            (ContentKind::Community, self.community),
        ]
    }
}

/// Who a message is for, as far as templates care.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Audience {
    /// A direct message to a user of this (governing) segment.
    Direct(Segment),
    /// A post in a group.
    Group,
}

impl Audience {
    /// The table that holds its templates (`HOT_LEAD`, `group`).
    pub fn table(self) -> &'static str {
        match self {
            Audience::Direct(s) => s.as_str(),
            Audience::Group => "group",
        }
    }
}

/// The templates of one language.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LanguageTemplates {
    /// The language code (the file's name).
    pub language: String,
    /// The file it came from.
    pub origin: String,
    /// The line every message ends with.
    pub opt_out_line: Template,
    /// The label of the Unsubscribe button.
    pub unsubscribe_label: String,
    /// What `{first_name}` becomes when the name is unknown, and in group posts.
    pub unknown_name: String,
    templates: BTreeMap<(Option<Audience>, ContentKind), Template>,
}

impl LanguageTemplates {
    /// The template of `audience` (`None`: the `[default]` table) for `kind`, if written.
    pub fn get(&self, audience: Option<Audience>, kind: ContentKind) -> Option<&Template> {
        self.templates.get(&(audience, kind))
    }

    /// Parses and checks one file's `text`, read from `origin` (named `stem`.toml); the
    /// longest rendering is checked with an offer of `offer_len` UTF-16 units.
    fn parse(text: &str, origin: &str, stem: &str, offer_len: usize) -> Result<LanguageTemplates, SettingsFileError> {
        let raw: RawFile = parse_settings_toml(text, origin)?;
        let invalid =
            |field: &str, message: String| SettingsFileError::invalid(origin, text, FieldError::new(field, message));
        if raw.language != stem {
            return Err(invalid("language", format!("must be the file's name, {stem:?}")));
        }
        let opt_out_line =
            Template::parse_fixed(&raw.opt_out_line).map_err(|e| invalid("opt_out_line", e.to_string()))?;
        let label = raw.unsubscribe_label.trim();
        if label.is_empty() || label.chars().count() > MAX_LABEL_CHARS || label.chars().any(char::is_control) {
            return Err(invalid("unsubscribe_label", format!("must be 1–{MAX_LABEL_CHARS} characters of plain text")));
        }
        let unknown_name = raw.unknown_name.trim();
        if unknown_name.is_empty() || utf16_len(unknown_name) > super::template::MAX_NAME_UTF16 {
            return Err(invalid("unknown_name", "must be a short word or two of plain text".into()));
        }
        let tail = OPT_OUT_SEPARATOR_LEN + opt_out_line.static_len();
        let tables = [
            (None, raw.default),
            (Some(Audience::Group), raw.group),
            (Some(Audience::Direct(Segment::HotLead)), raw.hot_lead),
            (Some(Audience::Direct(Segment::WarmLead)), raw.warm_lead),
            (Some(Audience::Direct(Segment::ColdLead)), raw.cold_lead),
            (Some(Audience::Direct(Segment::Engaged)), raw.engaged),
            (Some(Audience::Direct(Segment::BotLover)), raw.bot_lover),
            (Some(Audience::Direct(Segment::NightOwl)), raw.night_owl),
            (Some(Audience::Direct(Segment::NewUser)), raw.new_user),
            (Some(Audience::Direct(Segment::PremiumPotential)), raw.premium_potential),
        ];
        let mut templates = BTreeMap::new();
        for (audience, kinds) in tables {
            let table = audience.map_or("default", Audience::table);
            for (kind, written) in kinds.unwrap_or_default().take() {
                let Some(written) = written else { continue };
                let field = format!("{table}.{}", kind.as_str());
                let template = Template::parse(&written).map_err(|e| invalid(&field, e.to_string()))?;
                let worst = template.worst_len(offer_len) + tail;
                if worst > MAX_MESSAGE_LEN {
                    return Err(invalid(&field, TemplateError::TooLong { worst }.to_string()));
                }
                templates.insert((audience, kind), template);
            }
        }
        Ok(LanguageTemplates {
            language: raw.language,
            origin: origin.to_string(),
            opt_out_line,
            unsubscribe_label: label.to_string(),
            unknown_name: unknown_name.to_string(),
            templates,
        })
    }
}

/// Where a resolved template was found.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TemplateOrigin {
    /// The language of the file.
    pub language: String,
    /// The file.
    pub file: String,
    /// The table: a segment's name, `group` or `default`.
    pub table: &'static str,
    /// The content kind.
    pub kind: &'static str,
    /// How many steps down the fallback chain (0: the first choice).
    pub fallback_steps: usize,
}

/// A template found for a message, with the language file it came from (whose opt-out
/// line and button label go with it).
#[derive(Clone, Copy, Debug)]
pub struct Resolved<'a> {
    /// The template.
    pub template: &'a Template,
    /// Its language's file.
    pub language: &'a LanguageTemplates,
    /// Where in the chain it was found.
    pub steps: usize,
    /// The table it was found in (`None`: `[default]`).
    pub table: Option<Audience>,
}

impl Resolved<'_> {
    /// Where it was found, for `gavat preview`.
    pub fn origin(&self, kind: ContentKind) -> TemplateOrigin {
        TemplateOrigin {
            language: self.language.language.clone(),
            file: self.language.origin.clone(),
            table: self.table.map_or("default", Audience::table),
            kind: kind.as_str(),
            fallback_steps: self.steps,
        }
    }
}

/// Every language's templates, and the default language.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateSet {
    /// Where it came from: a directory, or `shipped`.
    pub origin: String,
    /// The language at the end of every fallback chain.
    pub default_language: String,
    languages: BTreeMap<String, LanguageTemplates>,
}

impl TemplateSet {
    /// The shipped templates (English and Turkish).
    /// `offer_len` is the longest offer's length (UTF-16 units), for the length checks.
    pub fn shipped(default_language: &str, offer_len: usize) -> Result<TemplateSet, TemplateLoadError> {
        let mut languages = BTreeMap::new();
        for (name, text) in SHIPPED {
            let stem = name.trim_end_matches(".toml");
            let origin = format!("config/templates/{name} (shipped)");
            languages.insert(stem.to_string(), LanguageTemplates::parse(text, &origin, stem, offer_len)?);
        }
        TemplateSet::assemble("shipped templates".into(), default_language, languages)
    }

    /// Every `*.toml` file of `dir` (subdirectories are other sets, e.g. an experiment
    /// arm's), each named by its language code.
    pub fn load(dir: &Path, default_language: &str, offer_len: usize) -> Result<TemplateSet, TemplateLoadError> {
        let shown = dir.display().to_string();
        let dir_error = |cause| TemplateLoadError::Dir { path: shown.clone(), cause };
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(dir_error)?
            .map(|entry| entry.map(|e| e.path()))
            .collect::<Result<_, _>>()
            .map_err(dir_error)?;
        files.retain(|p| p.extension().is_some_and(|e| e == "toml") && p.is_file());
        files.sort();
        let mut languages = BTreeMap::new();
        for path in files {
            let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_string();
            let templates = read_settings_file(&path, |text, origin| {
                if !is_language_code(&stem) {
                    return Err(SettingsFileError::Parse {
                        path: origin.to_string(),
                        line: 1,
                        message: "a template file is named by its language code: en.toml, tr.toml, pt-br.toml".into(),
                    });
                }
                LanguageTemplates::parse(text, origin, &stem, offer_len)
            })?;
            languages.insert(stem, templates);
        }
        TemplateSet::assemble(shown, default_language, languages)
    }

    fn assemble(
        origin: String,
        default_language: &str,
        languages: BTreeMap<String, LanguageTemplates>,
    ) -> Result<TemplateSet, TemplateLoadError> {
        let Some(default) = languages.get(default_language) else {
            let found = languages.keys().cloned().collect::<Vec<_>>().join(", ");
            return Err(TemplateLoadError::NoDefaultLanguage {
                path: origin,
                language: default_language.to_string(),
                found: if found.is_empty() { "none".into() } else { found },
            });
        };
        if let Some(kind) = ContentKind::ALL.into_iter().find(|k| default.get(None, *k).is_none()) {
            let text = std::fs::read_to_string(&default.origin).unwrap_or_default();
            let field = if text.contains("[default]") { "default" } else { "language" };
            let (line, _) = FieldError::new(field, "").locate(&text);
            return Err(SettingsFileError::Invalid {
                path: default.origin.clone(),
                line,
                field: format!("default.{}", kind.as_str()),
                message: "is missing: the default language's [default] table must have every content kind (offer, \
                          reminder, educational, news, premium, community), where every fallback ends"
                    .into(),
            }
            .into());
        }
        Ok(TemplateSet { origin, default_language: default_language.to_string(), languages })
    }

    /// Whether there are templates in `language`.
    pub fn has(&self, language: &str) -> bool {
        self.languages.contains_key(language)
    }

    /// The languages, in order.
    pub fn languages(&self) -> impl Iterator<Item = &LanguageTemplates> {
        self.languages.values()
    }

    /// The template for `audience` and `kind` in `language` (one [`TemplateSet::has`]), by
    /// the chain in the module doc.
    pub fn resolve(&self, audience: Audience, kind: ContentKind, language: &str) -> Resolved<'_> {
        let default = &self.languages[&self.default_language];
        let chosen = self.languages.get(language).unwrap_or(default);
        let chain = [(chosen, Some(audience)), (chosen, None), (default, Some(audience)), (default, None)];
        for (steps, (lang, table)) in chain.into_iter().enumerate() {
            if let Some(template) = lang.get(table, kind) {
                return Resolved { template, language: lang, steps, table };
            }
        }
        unreachable!("assemble() checked that the default language's [default] has every kind")
    }
}

/// A lower-case IETF-like language tag: `en`, `tr`, `pt-br`.
fn is_language_code(stem: &str) -> bool {
    let mut parts = stem.split('-');
    let primary = parts.next().unwrap_or_default();
    (2..=3).contains(&primary.len())
        && primary.chars().all(|c| c.is_ascii_lowercase())
        && parts.all(|p| (2..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every segment × kind the shipped strategies send has its own template in every
    /// shipped language, and groups have their community post: no shipped message falls
    /// back.
    #[test]
    fn shipped_templates_cover_the_shipped_strategies() {
        let set = TemplateSet::shipped("en", 30).unwrap();
        let book = crate::config::StrategyBook::defaults();
        for lang in ["en", "tr"] {
            for strategy in book.iter() {
                for kind in &strategy.content {
                    let r = set.resolve(Audience::Direct(strategy.segment), *kind, lang);
                    assert_eq!(
                        (r.steps, r.language.language.as_str()),
                        (0, lang),
                        "{lang} {} {kind:?}",
                        strategy.segment
                    );
                }
            }
            assert_eq!(set.resolve(Audience::Group, ContentKind::Community, lang).steps, 0);
        }
    }

    /// The chain: segment table, then [default], then the default language.
    #[test]
    fn missing_templates_fall_back_along_the_chain() {
        let dir = tempfile::tempdir().unwrap();
        let en = SHIPPED[0].1;
        std::fs::write(dir.path().join("en.toml"), en).unwrap();
        std::fs::write(
            dir.path().join("de.toml"),
            "language = \"de\"\nopt_out_line = \"Abmelden: /stop\"\nunsubscribe_label = \"Abmelden\"\n\
             unknown_name = \"du\"\n[default]\nnews = \"Neuigkeiten von {bot_name}\"\n[HOT_LEAD]\noffer = \"Für dich: {offer}\"\n",
        )
        .unwrap();
        let set = TemplateSet::load(dir.path(), "en", 1).unwrap();
        let hot = Audience::Direct(Segment::HotLead);
        let steps = |a, k, l| {
            let r = set.resolve(a, k, l);
            (r.steps, r.language.language.clone())
        };
        assert_eq!(steps(hot, ContentKind::Offer, "de"), (0, "de".into()));
        assert_eq!(steps(hot, ContentKind::News, "de"), (1, "de".into()));
        assert_eq!(steps(hot, ContentKind::Reminder, "de"), (2, "en".into()));
        assert_eq!(steps(Audience::Direct(Segment::Engaged), ContentKind::Premium, "de"), (3, "en".into()));
        assert_eq!(steps(Audience::Group, ContentKind::Premium, "de"), (3, "en".into()));
    }

    /// Load errors name the file, the line and the field.
    #[test]
    fn load_errors_name_file_line_and_field() {
        let en = SHIPPED[0].1;
        // (file text, field named, detail in the message, text of the line at fault)
        let cases = [
            (
                en.replace("offer = \"Hi {first_name}! <b>", "offer = \"Hi {name}! <b>"),
                "field default.offer:",
                "{name}",
                "Hi {name}!",
            ),
            (en.replace("[WARM_LEAD]\n", "[WARM_LEAD]\nofer = \"x\"\n"), "", "ofer", "ofer = "),
            (
                en.replace("<code>/favourites</code>", "<code>/favourites"),
                "field WARM_LEAD.educational:",
                "never closed",
                "<code>/favourites",
            ),
            (
                en.replace("<b>{offer}</b>. No rush", "<blink>{offer}</blink>. No rush"),
                "field PREMIUM_POTENTIAL.offer:",
                "blink",
                "<blink>",
            ),
            (en.replace("[group]\n", "[groups]\n"), "", "groups", "[groups]"),
            (
                en.replace("language = \"en\"", "language = \"tr\""),
                "field language:",
                "file's name",
                "language = \"tr\"",
            ),
            (
                en.replace("opt_out_line = \"<i>Reply", "opt_out_line = \"<i>{first_name}, reply"),
                "field opt_out_line:",
                "variables",
                "opt_out_line =",
            ),
            (
                en.replace("news = \"Hi {first_name}, there", &format!("news = \"{}", "x".repeat(4000))),
                "field default.news:",
                "4096",
                "xxxxxxxx",
            ),
        ];
        for (text, field, detail, at_fault) in cases {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("en.toml"), &text).unwrap();
            let err = TemplateSet::load(dir.path(), "en", 7).unwrap_err().to_string();
            let file = dir.path().join("en.toml").display().to_string();
            let line = text.lines().position(|l| l.contains(at_fault)).unwrap() + 1;
            assert!(err.starts_with(&format!("{file}:{line}: ")), "line {line}: {err}");
            assert!(err.contains(field) && err.contains(detail), "{detail}: {err}");
        }
        let dir = tempfile::tempdir().unwrap();
        let without_news = en.replace("news = \"Hi {first_name}, there", "# news = \"");
        std::fs::write(dir.path().join("en.toml"), &without_news).unwrap();
        let err = TemplateSet::load(dir.path(), "en", 1).unwrap_err().to_string();
        let line = without_news.lines().position(|l| l == "[default]").unwrap() + 1;
        assert!(err.contains(&format!("en.toml:{line}: field default.news: is missing")), "{err}");
        let err = TemplateSet::load(dir.path(), "tr", 1).unwrap_err().to_string();
        assert!(err.contains("no tr.toml"), "{err}");
        std::fs::write(dir.path().join("English.toml"), en).unwrap();
        assert!(TemplateSet::load(dir.path(), "en", 1).unwrap_err().to_string().contains("English.toml:1:"));
    }
}
