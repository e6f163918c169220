//! Strategy files: parsing `strategies.toml` into a validated [`StrategyBook`], with errors
//! that name the file, the line and the field at fault.

use std::path::Path;

use serde::Deserialize;

use crate::domain::{ContentKind, DeliveryStrategy, Frequency, HourMask, Segment};

/// The strategies shipped with gavat (`config/strategies.toml`).
pub const DEFAULT_STRATEGIES: &str = include_str!("../config/strategies.toml");

/// Longest cooldown a strategy file may ask for (30 days).
const MAX_COOLDOWN_HOURS: f64 = 24.0 * 30.0;
/// Most messages a day a strategy file may allow.
const MAX_DAILY_LIMIT: u32 = 24;

/// Why a strategy file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read. Fatal for this run.
    #[error("{path}: cannot read: {cause}")]
    Read {
        /// The file.
        path: String,
        /// Why (part of the message, so not also reported as a source).
        cause: std::io::Error,
    },
    /// The file is not valid TOML, or a value has the wrong type. Fatal for this run.
    #[error("{path}:{line}: field {field}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// 1-based line of the offending value (or of its table when it is missing).
        line: usize,
        /// The field, e.g. `HOT_LEAD.cooldown_hours`.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// A strategy override (an experiment arm's) names an unknown segment or field, or a
    /// value the strategy cannot take.
    #[error("{path}: field {field}: {message}")]
    Override {
        /// The file holding the override.
        path: String,
        /// The field, e.g. `arms[1].overrides.HOT_LEAD.cooldown_hours`.
        field: String,
        /// What is wrong with it.
        message: String,
    },
}

/// All segments' strategies, as one immutable, versioned table.
#[derive(Clone, Debug, PartialEq)]
pub struct StrategyBook {
    /// The name of this set of strategies (e.g. `defaults-v1`); recorded on every send.
    pub name: std::sync::Arc<str>,
    /// One strategy per segment, indexed by [`Segment::index`].
    strategies: Vec<DeliveryStrategy>,
}

impl StrategyBook {
    /// The strategies shipped with gavat.
    pub fn defaults() -> StrategyBook {
        StrategyBook::from_toml_str(DEFAULT_STRATEGIES, "config/strategies.toml")
            .expect("the shipped strategies.toml is valid (checked by a test)")
    }

    /// Reads and validates a strategy file.
    pub fn from_path(path: &Path) -> Result<StrategyBook, ConfigError> {
        let display = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|cause| ConfigError::Read { path: display.clone(), cause })?;
        StrategyBook::from_toml_str(&text, &display)
    }

    /// Parses and validates strategy TOML; `origin` names the file in errors.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<StrategyBook, ConfigError> {
        let raw: RawBook = toml::from_str(text).map_err(|e| {
            let (line, message) = toml_error_at(text, &e);
            ConfigError::Invalid { path: origin.to_string(), line, field: field_at_line(text, line), message }
        })?;
        let mut strategies = Vec::with_capacity(Segment::ALL.len());
        for segment in Segment::ALL {
            let key = segment.as_str();
            let Some(raw_strategy) = raw.segment(segment) else {
                return Err(ConfigError::Invalid {
                    path: origin.to_string(),
                    line: 1,
                    field: key.to_string(),
                    message: format!("missing: every one of the 8 segments needs a [{key}] table"),
                });
            };
            let strategy = raw_strategy.validate(segment).map_err(|(field, message)| ConfigError::Invalid {
                path: origin.to_string(),
                line: line_of_field(text, key, field),
                field: format!("{key}.{field}"),
                message,
            })?;
            strategies.push(strategy);
        }
        Ok(StrategyBook { name: raw.name.into(), strategies })
    }

    /// The strategy for one segment.
    pub fn get(&self, segment: Segment) -> &DeliveryStrategy {
        &self.strategies[segment.index()]
    }

    /// All strategies in [`Segment::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = &DeliveryStrategy> {
        self.strategies.iter()
    }

    /// Replaces one segment's strategy (used by the learner and by experiment arms).
    pub fn with(mut self, strategy: DeliveryStrategy) -> StrategyBook {
        let i = strategy.segment.index();
        self.strategies[i] = strategy;
        self
    }

    /// This book with every daily limit at zero: nobody is messaged (an experiment's
    /// holdout).
    pub fn silenced(&self) -> StrategyBook {
        let mut book = self.clone();
        for strategy in &mut book.strategies {
            strategy.daily_limit = 0;
        }
        book
    }

    /// This book with `overrides` applied: segment name → field → value, the fields and
    /// values of a strategy file. Each changed strategy is validated as if read from a file;
    /// errors name `origin` and the field under `prefix` (e.g. `arms[1].overrides`).
    pub fn with_overrides(
        &self,
        overrides: &std::collections::BTreeMap<String, std::collections::BTreeMap<String, toml::Value>>,
        origin: &str,
        prefix: &str,
    ) -> Result<StrategyBook, ConfigError> {
        let mut book = self.clone();
        for (segment_name, fields) in overrides {
            let error =
                |field: String, message: String| ConfigError::Override { path: origin.to_string(), field, message };
            let segment: Segment =
                segment_name.parse().map_err(|m: String| error(format!("{prefix}.{segment_name}"), m))?;
            let raw = RawStrategy::from(book.get(segment));
            let mut table = match toml::Value::try_from(&raw) {
                Ok(toml::Value::Table(t)) => t,
                _ => return Err(error(format!("{prefix}.{segment_name}"), "cannot be represented".into())),
            };
            for (field, value) in fields {
                if !table.contains_key(field) {
                    return Err(error(format!("{prefix}.{segment_name}.{field}"), "not a strategy field".into()));
                }
                table.insert(field.clone(), value.clone());
            }
            let changed: RawStrategy = toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| error(format!("{prefix}.{segment_name}"), one_line(e.message())))?;
            let strategy = changed
                .validate(segment)
                .map_err(|(field, message)| error(format!("{prefix}.{segment_name}.{field}"), message))?;
            book = book.with(strategy);
        }
        Ok(book)
    }
}

/// A strategy serializes in the form of a strategy file's table (hours as `"9-21"`,
/// cooldown in hours), so that the store, reports and `--toml` exports read like the file.
impl serde::Serialize for DeliveryStrategy {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        RawStrategy::from(self).serialize(serializer)
    }
}

impl DeliveryStrategy {
    /// Reads back what [`serde::Serialize`] wrote (JSON), validated like a strategy file's
    /// table; the error names the field.
    pub fn from_json(segment: Segment, json: &str) -> Result<DeliveryStrategy, String> {
        let raw: RawStrategy = serde_json::from_str(json).map_err(|e| e.to_string())?;
        raw.validate(segment).map_err(|(field, message)| format!("{field}: {message}"))
    }
}

impl StrategyBook {
    /// A book named `name` from one strategy per segment (any order); `None` if a segment
    /// is missing.
    pub fn from_strategies(name: &str, strategies: Vec<DeliveryStrategy>) -> Option<StrategyBook> {
        let mut book = StrategyBook { name: name.into(), strategies: Vec::with_capacity(8) };
        for segment in Segment::ALL {
            book.strategies.push(strategies.iter().find(|s| s.segment == segment)?.clone());
        }
        Some(book)
    }

    /// The book as a strategy file that [`StrategyBook::from_toml_str`] reads back.
    pub fn to_toml(&self) -> String {
        let mut out = format!("name = {}\n", toml::Value::String(self.name.to_string()));
        for s in &self.strategies {
            let table = toml::to_string(&RawStrategy::from(s)).unwrap_or_default();
            out.push_str(&format!("\n[{}]\n{table}", s.segment.as_str()));
        }
        out
    }
}

impl From<&DeliveryStrategy> for RawStrategy {
    fn from(s: &DeliveryStrategy) -> RawStrategy {
        RawStrategy {
            priority: s.priority,
            frequency: s.frequency,
            daily_limit: s.daily_limit,
            cooldown_hours: s.cooldown_secs as f64 / 3600.0,
            allowed_hours: hours_to_text(s.allowed_hours),
            optimal_hours: hours_to_text(s.optimal_hours),
            content: s.content.clone(),
        }
    }
}

/// `"9-21"`, `"10-12,18-20"`, `"20-2"` or `"0-24"`: the form [`parse_hours`] reads.
fn hours_to_text(mask: HourMask) -> String {
    let parts: Vec<String> = mask.ranges().iter().map(|(s, e)| format!("{s}-{e}")).collect();
    parts.join(",")
}

/// The file as written. Segments are named fields (not a flattened map) so that serde keeps
/// the spans toml needs for line numbers, and an unknown table is rejected by name.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBook {
    name: String,
    #[serde(rename = "HOT_LEAD")]
    hot_lead: Option<RawStrategy>,
    #[serde(rename = "WARM_LEAD")]
    warm_lead: Option<RawStrategy>,
    #[serde(rename = "COLD_LEAD")]
    cold_lead: Option<RawStrategy>,
    #[serde(rename = "ENGAGED")]
    engaged: Option<RawStrategy>,
    #[serde(rename = "BOT_LOVER")]
    bot_lover: Option<RawStrategy>,
    #[serde(rename = "NIGHT_OWL")]
    night_owl: Option<RawStrategy>,
    #[serde(rename = "NEW_USER")]
    new_user: Option<RawStrategy>,
    #[serde(rename = "PREMIUM_POTENTIAL")]
    premium_potential: Option<RawStrategy>,
}

impl RawBook {
    fn segment(&self, segment: Segment) -> Option<&RawStrategy> {
        match segment {
            Segment::HotLead => self.hot_lead.as_ref(),
            Segment::WarmLead => self.warm_lead.as_ref(),
            Segment::ColdLead => self.cold_lead.as_ref(),
            Segment::Engaged => self.engaged.as_ref(),
            Segment::BotLover => self.bot_lover.as_ref(),
            Segment::NightOwl => self.night_owl.as_ref(),
            Segment::NewUser => self.new_user.as_ref(),
            Segment::PremiumPotential => self.premium_potential.as_ref(),
        }
    }
}

#[derive(Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
struct RawStrategy {
    priority: u8,
    frequency: Frequency,
    daily_limit: u32,
    cooldown_hours: f64,
    allowed_hours: String,
    optimal_hours: String,
    content: Vec<ContentKind>,
}

impl RawStrategy {
    fn validate(&self, segment: Segment) -> Result<DeliveryStrategy, (&'static str, String)> {
        if self.daily_limit > MAX_DAILY_LIMIT {
            return Err((
                "daily_limit",
                format!("{} is above the hard maximum of {MAX_DAILY_LIMIT}", self.daily_limit),
            ));
        }
        if !self.cooldown_hours.is_finite() || !(0.0..=MAX_COOLDOWN_HOURS).contains(&self.cooldown_hours) {
            return Err((
                "cooldown_hours",
                format!("{} must be between 0 and {MAX_COOLDOWN_HOURS}", self.cooldown_hours),
            ));
        }
        let allowed_hours = parse_hours(&self.allowed_hours).map_err(|m| ("allowed_hours", m))?;
        if allowed_hours.is_empty() {
            return Err(("allowed_hours", "allows no hour at all".to_string()));
        }
        let optimal_hours = parse_hours(&self.optimal_hours).map_err(|m| ("optimal_hours", m))?;
        if optimal_hours.intersect(allowed_hours) != optimal_hours {
            return Err((
                "optimal_hours",
                format!("`{}` is not inside allowed_hours `{}`", self.optimal_hours, self.allowed_hours),
            ));
        }
        if self.content.is_empty() {
            return Err(("content", "needs at least one content kind".to_string()));
        }
        Ok(DeliveryStrategy {
            segment,
            priority: self.priority,
            frequency: self.frequency,
            daily_limit: self.daily_limit,
            cooldown_secs: (self.cooldown_hours * 3600.0).round() as i64,
            allowed_hours,
            optimal_hours,
            content: self.content.clone(),
        })
    }
}

/// Parses `"9-21"` or `"10-12,18-20"` (local hours, end exclusive, 24 allowed as an end,
/// wrapping when end < start) into an [`HourMask`].
pub fn parse_hours(text: &str) -> Result<HourMask, String> {
    let mut mask = HourMask::NONE;
    for part in text.split(',') {
        let part = part.trim();
        let (start, end) = part.split_once('-').ok_or_else(|| format!("`{part}` is not a range like `9-21`"))?;
        let parse = |s: &str| -> Result<u8, String> {
            s.trim()
                .parse::<u8>()
                .ok()
                .filter(|h| *h <= 24)
                .ok_or_else(|| format!("`{}` is not an hour 0–24", s.trim()))
        };
        let (start, end) = (parse(start)?, parse(end)?);
        if start == end || (start == 0 && end == 24) {
            mask = HourMask::ALL_DAY;
        } else {
            mask = HourMask(mask.0 | HourMask::window(start % 24, end % 24).0);
        }
    }
    Ok(mask)
}

fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Why a settings file (segmentation rules, learner settings) could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SettingsFileError {
    /// The file could not be read.
    #[error("{path}: cannot read: {cause}")]
    Read {
        /// The file.
        path: String,
        /// Why (part of the message).
        cause: std::io::Error,
    },
    /// Not valid TOML, a wrong type or an unknown field.
    #[error("{path}:{line}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A meaningless value.
    #[error("{path}: field {field}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// The field, e.g. `night_owl.night_hours`.
        field: String,
        /// What is wrong.
        message: String,
    },
}

impl SettingsFileError {
    /// A meaningless value in `field` of `path`.
    pub fn invalid(path: &str, field: &str, message: impl Into<String>) -> SettingsFileError {
        SettingsFileError::Invalid { path: path.to_string(), field: field.to_string(), message: message.into() }
    }
}

/// Reads `path` and hands its text and display name to `parse` (which names the file in
/// its errors).
pub(crate) fn read_settings_file<T>(
    path: &Path,
    parse: impl FnOnce(&str, &str) -> Result<T, SettingsFileError>,
) -> Result<T, SettingsFileError> {
    let display = path.display().to_string();
    let text =
        std::fs::read_to_string(path).map_err(|cause| SettingsFileError::Read { path: display.clone(), cause })?;
    parse(&text, &display)
}

/// Deserialises settings TOML, with the line of any error.
pub(crate) fn parse_settings_toml<T: serde::de::DeserializeOwned>(
    text: &str,
    origin: &str,
) -> Result<T, SettingsFileError> {
    toml::from_str(text).map_err(|e| {
        let (line, message) = toml_error_at(text, &e);
        SettingsFileError::Parse { path: origin.to_string(), line, message }
    })
}

/// Where in `text` a TOML error is (1-based line) and its message on one line — for every
/// config file of this crate (strategies, segmentation rules, learner settings).
pub(crate) fn toml_error_at(text: &str, error: &toml::de::Error) -> (usize, String) {
    let line = error.span().map_or(1, |s| text[..s.start.min(text.len())].matches('\n').count() + 1);
    (line, one_line(error.message()))
}

/// `TABLE.key` for the key assigned on `line`, using the nearest table header above it.
fn field_at_line(text: &str, line: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let here = lines.get(line.saturating_sub(1)).copied().unwrap_or("");
    let key = here.split_once('=').map(|(k, _)| k.trim().to_string());
    let table = lines[..line.saturating_sub(1).min(lines.len())]
        .iter()
        .rev()
        .find_map(|l| l.trim().strip_prefix('[').and_then(|l| l.strip_suffix(']')))
        .map(str::to_string);
    match (table, key) {
        (Some(t), Some(k)) => format!("{t}.{k}"),
        (None, Some(k)) => k,
        (Some(t), None) => t,
        (None, None) => "(file)".to_string(),
    }
}

fn line_of_table(text: &str, table: &str) -> usize {
    let header = format!("[{table}]");
    text.lines().position(|l| l.trim() == header).map(|i| i + 1).unwrap_or(1)
}

fn line_of_field(text: &str, table: &str, field: &str) -> usize {
    let start = line_of_table(text, table);
    text.lines()
        .enumerate()
        .skip(start)
        .take_while(|(_, l)| !l.trim_start().starts_with('['))
        .find(|(_, l)| l.split_once('=').is_some_and(|(k, _)| k.trim() == field))
        .map(|(i, _)| i + 1)
        .unwrap_or(start)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shipped defaults parse and carry the numbers the product promises.
    #[test]
    fn shipped_defaults_match_the_design() {
        let book = StrategyBook::defaults();
        let expect = [
            (Segment::HotLead, 10, Frequency::Daily, 3, 4),
            (Segment::WarmLead, 7, Frequency::Every2Days, 2, 12),
            (Segment::Engaged, 8, Frequency::Daily, 2, 6),
            (Segment::NewUser, 6, Frequency::Every2Days, 1, 24),
            (Segment::NightOwl, 5, Frequency::Nightly, 2, 8),
        ];
        for (segment, priority, frequency, daily, cooldown_h) in expect {
            let s = book.get(segment);
            assert_eq!(
                (s.priority, s.frequency, s.daily_limit, s.cooldown_secs),
                (priority, frequency, daily, cooldown_h * 3600),
                "{segment}"
            );
        }
        assert_eq!(&*book.name, "defaults-v1");
    }

    /// A wrong type names the file, the line and the field.
    #[test]
    fn a_wrong_type_names_file_line_and_field() {
        let text = DEFAULT_STRATEGIES.replace("cooldown_hours = 4\n", "cooldown_hours = \"four\"\n");
        let err = StrategyBook::from_toml_str(&text, "s.toml").unwrap_err().to_string();
        let line = text.lines().position(|l| l.contains("\"four\"")).unwrap() + 1;
        assert!(err.starts_with(&format!("s.toml:{line}: field HOT_LEAD.cooldown_hours:")), "{err}");
    }

    /// Semantic errors (a window outside the allowed hours, a cap above the maximum) point
    /// at the field's own line.
    #[test]
    fn semantic_errors_point_at_the_field() {
        let text = DEFAULT_STRATEGIES.replace("optimal_hours = \"10-12,18-20\"", "optimal_hours = \"6-8\"");
        let err = StrategyBook::from_toml_str(&text, "s.toml").unwrap_err().to_string();
        let line = text.lines().position(|l| l.contains("\"6-8\"")).unwrap() + 1;
        assert!(err.starts_with(&format!("s.toml:{line}: field HOT_LEAD.optimal_hours:")), "{err}");

        let text = DEFAULT_STRATEGIES.replace("daily_limit = 3", "daily_limit = 100");
        let err = StrategyBook::from_toml_str(&text, "s.toml").unwrap_err().to_string();
        assert!(err.contains("HOT_LEAD.daily_limit") && err.contains("hard maximum"), "{err}");
    }

    /// A missing segment, an unknown key and broken syntax are all reported.
    #[test]
    fn missing_unknown_and_broken() {
        let start = DEFAULT_STRATEGIES.find("[COLD_LEAD]").unwrap();
        let err = StrategyBook::from_toml_str(&DEFAULT_STRATEGIES[..start], "s.toml").unwrap_err();
        assert!(err.to_string().contains("COLD_LEAD"), "{err}");

        let text = DEFAULT_STRATEGIES.replace("priority = 10", "priority = 10\nspeed = 3");
        let err = StrategyBook::from_toml_str(&text, "s.toml").unwrap_err().to_string();
        assert!(err.contains("speed"), "{err}");

        let err = StrategyBook::from_toml_str("name = \"x\"\n[HOT_LEAD\n", "s.toml").unwrap_err();
        assert!(err.to_string().starts_with("s.toml:2:"), "{err}");
    }

    /// Overrides change only the named fields, are validated, and name the field at fault.
    #[test]
    fn overrides_apply_and_validate() {
        let book = StrategyBook::defaults();
        let mut fields = std::collections::BTreeMap::new();
        fields.insert("cooldown_hours".to_string(), toml::Value::Integer(8));
        fields.insert("optimal_hours".to_string(), toml::Value::String("18-21".into()));
        let mut overrides = std::collections::BTreeMap::new();
        overrides.insert("HOT_LEAD".to_string(), fields);
        let changed = book.with_overrides(&overrides, "e.toml", "arms[1].overrides").unwrap();
        let hot = changed.get(Segment::HotLead);
        assert_eq!(hot.cooldown_secs, 8 * 3600);
        assert_eq!(hot.optimal_hours, HourMask::window(18, 21));
        assert_eq!(hot.daily_limit, 3, "untouched fields keep their values");
        assert_eq!(changed.get(Segment::WarmLead), book.get(Segment::WarmLead));
        // Round trip of every shipped strategy through the file form is lossless.
        let none = std::collections::BTreeMap::new();
        for segment in Segment::ALL {
            let mut o = std::collections::BTreeMap::new();
            o.insert(segment.as_str().to_string(), none.clone());
            assert_eq!(book.with_overrides(&o, "e.toml", "o").unwrap(), book);
        }

        let mut bad = overrides.clone();
        bad.get_mut("HOT_LEAD").unwrap().insert("daily_limit".into(), toml::Value::Integer(99));
        let err = book.with_overrides(&bad, "e.toml", "arms[1].overrides").unwrap_err().to_string();
        assert!(err.contains("field arms[1].overrides.HOT_LEAD.daily_limit"), "{err}");
        let mut bad = std::collections::BTreeMap::new();
        bad.insert("HOT".to_string(), std::collections::BTreeMap::new());
        assert!(book.with_overrides(&bad, "e.toml", "o").unwrap_err().to_string().contains("unknown segment"));
        let mut bad = overrides.clone();
        bad.get_mut("HOT_LEAD").unwrap().insert("speed".into(), toml::Value::Integer(1));
        assert!(book.with_overrides(&bad, "e.toml", "o").unwrap_err().to_string().contains("o.HOT_LEAD.speed"));
    }

    /// Hour ranges parse, wrap and reject nonsense.
    #[test]
    fn hour_ranges() {
        assert_eq!(parse_hours("9-21").unwrap(), HourMask::window(9, 21));
        assert_eq!(parse_hours("12-24").unwrap(), HourMask::window(12, 0));
        assert_eq!(parse_hours("0-24").unwrap(), HourMask::ALL_DAY);
        assert!(parse_hours("20-2").unwrap().contains(1));
        assert!(parse_hours("9").is_err());
        assert!(parse_hours("9-25").is_err());
    }
}
