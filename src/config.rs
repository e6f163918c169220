//! Strategy files: parsing `strategies.toml` into a validated [`StrategyBook`], with errors
//! that name the file, the line and the field at fault.

use std::path::Path;

use serde::Deserialize;

use crate::domain::{ContentKind, DeliveryStrategy, Frequency, HourMask, Segment};

/// The strategies shipped with gavat (`config/strategies.toml`).
pub const DEFAULT_STRATEGIES: &str = include_str!("../config/strategies.toml");

/// Longest cooldown a strategy file may ask for (30 days).
pub(crate) const MAX_COOLDOWN_HOURS: f64 = 24.0 * 30.0;
/// Most messages a day a strategy file may allow.
pub(crate) const MAX_DAILY_LIMIT: u32 = 24;
/// Longest strategy name, in characters: it goes into every report, log line and store row.
pub const MAX_NAME_CHARS: usize = 64;

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
    /// Not about one field: broken TOML syntax, a duplicate or an unknown table. Fatal for
    /// this run.
    #[error("{path}:{line}: {message}")]
    Malformed {
        /// The file.
        path: String,
        /// 1-based line.
        line: usize,
        /// What is wrong, e.g. `duplicate table [HOT_LEAD]`.
        message: String,
    },
    /// A value has the wrong type or is out of range; a field is missing or unknown. Fatal
    /// for this run.
    #[error("{path}:{line}: field {field}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// 1-based line of the offending value (or of its table when it is missing).
        line: usize,
        /// The field, e.g. `HOT_LEAD.cooldown_hours`.
        field: String,
        /// What is wrong with it, starting with the value as written.
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
        let path = || origin.to_string();
        let raw: RawBook = toml::from_str(text).map_err(|e| match toml_fault(text, &e) {
            TomlFault::File { line, message } => ConfigError::Malformed { path: path(), line, message },
            TomlFault::Field { line, field, message } => ConfigError::Invalid { path: path(), line, field, message },
        })?;
        let located = |error: FieldError| {
            let (line, message) = error.locate(text);
            ConfigError::Invalid { path: path(), line, field: error.field, message }
        };
        check_name(&raw.name).map_err(|m| located(FieldError::new("name", m)))?;
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
            let strategy = raw_strategy
                .validate(segment)
                .map_err(|(field, message)| located(FieldError::new(format!("{key}.{field}"), message)))?;
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
            let changed: RawStrategy = toml::Value::Table(table.clone())
                .try_into()
                .map_err(|e: toml::de::Error| error(format!("{prefix}.{segment_name}"), one_line(e.message())))?;
            let strategy = changed.validate(segment).map_err(|(field, message)| {
                let value = table.get(field).map(|v| shorten(&v.to_string())).unwrap_or_default();
                error(format!("{prefix}.{segment_name}.{field}"), format!("{value} {message}"))
            })?;
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
        raw.validate(segment).map_err(|(field, message)| format!("{field}: the value {message}"))
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
            return Err(("daily_limit", format!("is above the hard maximum of {MAX_DAILY_LIMIT}")));
        }
        if !self.cooldown_hours.is_finite() || !(0.0..=MAX_COOLDOWN_HOURS).contains(&self.cooldown_hours) {
            return Err(("cooldown_hours", format!("must be between 0 and {MAX_COOLDOWN_HOURS} hours")));
        }
        let allowed_hours = parse_hours(&self.allowed_hours).map_err(|m| ("allowed_hours", m))?;
        let optimal_hours = parse_hours(&self.optimal_hours).map_err(|m| ("optimal_hours", m))?;
        if optimal_hours.intersect(allowed_hours) != optimal_hours {
            return Err((
                "optimal_hours",
                format!("is not inside allowed_hours {:?}: sends never leave the allowed hours", self.allowed_hours),
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

/// Parses `"9-21"` or `"10-12,18-20"`: local hours `start-end`, end exclusive, `start`
/// 0–23 and `end` 0–24, wrapping past midnight when `end < start` (`"22-6"` is 22:00–05:59).
/// `"0-24"` is the whole day. Refused: an empty text, a range that starts where it ends
/// (`"9-9"`: empty or the whole day? say `0-24`), signs, spaces inside a number or anything
/// else that is not digits, hours past 24, and ranges that overlap. Spaces around the
/// numbers and the commas are fine.
///
/// The error reads after the value as written: `"9-9" has the range 9-9, which …`.
pub fn parse_hours(text: &str) -> Result<HourMask, String> {
    const EXAMPLE: &str = "write ranges like 9-21 or 10-12,18-20 (end exclusive), or 0-24 for all day";
    if text.trim().is_empty() {
        return Err(format!("is empty: {EXAMPLE}"));
    }
    let mut mask = HourMask::NONE;
    let mut seen: Vec<(String, HourMask)> = Vec::new();
    for part in text.split(',') {
        let part = part.trim();
        let shown = shorten(part);
        let hour = |s: &str| -> Option<u8> {
            let s = s.trim();
            if s.is_empty() || s.len() > 2 || !s.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            s.parse().ok()
        };
        let Some((start, end)) = part.split_once('-').and_then(|(a, b)| Some((hour(a)?, hour(b)?))) else {
            return Err(format!("has `{shown}`, which is not a range start-end of hours 0–24: {EXAMPLE}"));
        };
        if start > 23 || end > 24 {
            return Err(format!("has `{shown}`: a range starts at an hour 0–23 and ends at an hour 0–24"));
        }
        if start == end % 24 && (start, end) != (0, 24) {
            return Err(format!(
                "has `{shown}`, which starts where it ends: an empty window or the whole day? write 0-24 for all day"
            ));
        }
        let range = if (start, end) == (0, 24) { HourMask::ALL_DAY } else { HourMask::window(start, end % 24) };
        if let Some((other, _)) = seen.iter().find(|(_, m)| !m.intersect(range).is_empty()) {
            return Err(format!("has `{shown}`, which overlaps `{other}`: list each hour once"));
        }
        mask = HourMask(mask.0 | range.0);
        seen.push((shown, range));
    }
    Ok(mask)
}

/// A strategy name: 1–[`MAX_NAME_CHARS`] printable characters (it is repeated in every
/// report and log line). The error reads after the value as written.
fn check_name(name: &str) -> Result<(), String> {
    let chars = name.chars().count();
    if name.trim().is_empty() {
        return Err("is empty: name the strategies, e.g. \"defaults-v1\"".into());
    }
    if chars > MAX_NAME_CHARS {
        return Err(format!("is {chars} characters long; a name has at most {MAX_NAME_CHARS}"));
    }
    if name.chars().any(char::is_control) {
        return Err("holds a control character (a newline, a tab…); a name is printable text".into());
    }
    Ok(())
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
    /// Not about one field: broken TOML syntax, a duplicate or an unknown table.
    #[error("{path}:{line}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// 1-based line.
        line: usize,
        /// What is wrong, e.g. `duplicate table [hot_lead]`.
        message: String,
    },
    /// A wrong type, a missing or unknown field, or a meaningless value.
    #[error("{path}:{line}: field {field}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// 1-based line of the value.
        line: usize,
        /// The field, e.g. `night_owl.night_hours`.
        field: String,
        /// What is wrong, starting with the value as written.
        message: String,
    },
}

impl SettingsFileError {
    /// The check of `error.field` failed in `text`, read from `path`: the error names the
    /// line and the value as written.
    pub(crate) fn invalid(path: &str, text: &str, error: FieldError) -> SettingsFileError {
        let (line, message) = error.locate(text);
        SettingsFileError::Invalid { path: path.to_string(), line, field: error.field, message }
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

/// Deserialises settings TOML; an error names the line, the field or table, and the value
/// as written.
pub(crate) fn parse_settings_toml<T: serde::de::DeserializeOwned>(
    text: &str,
    origin: &str,
) -> Result<T, SettingsFileError> {
    toml::from_str(text).map_err(|e| match toml_fault(text, &e) {
        TomlFault::File { line, message } => SettingsFileError::Parse { path: origin.to_string(), line, message },
        TomlFault::Field { line, field, message } => {
            SettingsFileError::Invalid { path: origin.to_string(), line, field, message }
        }
    })
}

/// What a TOML error points at, in the words of a config error.
#[derive(Debug, PartialEq)]
pub(crate) enum TomlFault {
    /// Not about one field: broken syntax, a duplicate `[HOT_LEAD]`, an unknown `[VIP]`.
    File {
        /// 1-based line.
        line: usize,
        /// E.g. `duplicate table [HOT_LEAD]`.
        message: String,
    },
    /// One field.
    Field {
        /// 1-based line of the value (of its table when the field is missing).
        line: usize,
        /// E.g. `HOT_LEAD.cooldown_hours`.
        field: String,
        /// What is wrong, starting with the value as written when there is one.
        message: String,
    },
}

/// Turns a TOML/serde error into a [`TomlFault`]: the line, the table or field, and the
/// value as written (`1e300`, not serde's 301 digits).
///
/// A copy lives in `sim/src/toml_text.rs` (the sim crate may not depend on this one).
pub(crate) fn toml_fault(text: &str, error: &toml::de::Error) -> TomlFault {
    let message = one_line(error.message());
    let Some(span) = error.span() else {
        return TomlFault::File { line: 1, message };
    };
    let line = line_at(text, span.start);
    if let Some(table) = text.lines().nth(line - 1).and_then(header_name) {
        if message == "duplicate key" {
            return TomlFault::File { line, message: format!("duplicate table [{table}]") };
        }
        if let Some((_, expected)) = message.strip_prefix("unknown field ").and_then(|m| m.split_once(", ")) {
            return TomlFault::File { line, message: format!("unknown table [{table}]; {expected}") };
        }
        if let Some(missing) = missing_field(&message) {
            return TomlFault::Field { line, field: format!("{table}.{missing}"), message: "missing".into() };
        }
    }
    if message == "duplicate key" {
        // The document does not parse, so the table comes from the nearest header above.
        let key = text.get(span.clone()).unwrap_or("").trim();
        let table = text.lines().take(line).filter_map(header_name).last();
        let field = table.map_or_else(|| key.to_string(), |t| format!("{t}.{key}"));
        return TomlFault::Field { line, field, message: "is set twice".into() };
    }
    let Ok(doc) = toml::de::DeTable::parse(text) else {
        return TomlFault::File { line, message };
    };
    let field = path_at(doc.get_ref(), span.start, "").unwrap_or_else(|| "(file)".to_string());
    let written = shorten(text.get(span).unwrap_or(""));
    let message = if let Some(missing) = missing_field(&message) {
        let field = if field == "(file)" { missing.to_string() } else { format!("{field}.{missing}") };
        return TomlFault::Field { line, field, message: "missing".into() };
    } else if let Some(rest) = message.strip_prefix("unknown field ") {
        let expected = rest.split_once(", ").map_or("", |(_, e)| e);
        format!("unknown field; {expected}")
    } else if message.starts_with("invalid type: ") || message.starts_with("invalid value: ") {
        let expected = message.rsplit_once(", expected ").map_or("something else", |(_, e)| e);
        format!("{written} is not {}", expected_in_words(expected))
    } else {
        message
    };
    TomlFault::Field { line, field, message }
}

fn missing_field(message: &str) -> Option<&str> {
    message.strip_prefix("missing field `")?.strip_suffix('`')
}

/// serde's names of types, as a user would say them.
fn expected_in_words(expected: &str) -> String {
    match expected {
        "u8" => "a whole number 0–255".into(),
        "u16" => "a whole number 0–65535".into(),
        "u32" => "a whole number 0–4294967295".into(),
        "u64" => "a whole number 0–18446744073709551615".into(),
        "i32" | "i64" => "a whole number".into(),
        "f32" | "f64" => "a number".into(),
        "a sequence" => "an array".into(),
        other => other.to_string(),
    }
}

/// The dotted path (`a.b[2].c`) of the deepest key or value whose text holds byte `offset`.
fn path_at(table: &toml::de::DeTable<'_>, offset: usize, prefix: &str) -> Option<String> {
    table.iter().find_map(|(key, value)| {
        let name = if prefix.is_empty() { key.get_ref().to_string() } else { format!("{prefix}.{}", key.get_ref()) };
        value_path_at(value, offset, &name).or_else(|| key.span().contains(&offset).then_some(name))
    })
}

fn value_path_at(value: &toml::Spanned<toml::de::DeValue<'_>>, offset: usize, name: &str) -> Option<String> {
    let inner = match value.get_ref() {
        toml::de::DeValue::Table(t) => path_at(t, offset, name),
        toml::de::DeValue::Array(a) => {
            a.iter().enumerate().find_map(|(i, item)| value_path_at(item, offset, &format!("{name}[{i}]")))
        }
        _ => None,
    };
    inner.or_else(|| value.span().contains(&offset).then(|| name.to_string()))
}

/// The 1-based line holding byte `offset` of `text`.
pub(crate) fn line_at(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())].iter().filter(|b| **b == b'\n').count() + 1
}

/// Longest value, in characters, that an error repeats.
const MAX_WRITTEN: usize = 40;

/// A value as written, cut to [`MAX_WRITTEN`] characters of its first line, so that a 5 MB
/// string does not become a 5 MB error.
pub(crate) fn shorten(written: &str) -> String {
    let first = written.lines().next().unwrap_or("");
    let cut: String = first.chars().take(MAX_WRITTEN).collect();
    if cut.len() < written.len() { format!("{cut}…") } else { cut }
}

/// Where the value at `path` (`HOT_LEAD.allowed_hours`, `a.b[2].c`) is written in `text`:
/// its 1-based line, and its text (shortened) unless it is a table. `None` if the text does
/// not parse or has no such value.
pub(crate) fn written_at(text: &str, path: &str) -> Option<(usize, Option<String>)> {
    let doc = toml::de::DeTable::parse(text).ok()?;
    let mut table = doc.get_ref();
    let mut found = None;
    let mut segments = path.split('.').peekable();
    while let Some(segment) = segments.next() {
        let (key, indices) = segment.split_once('[').unwrap_or((segment, ""));
        let (key_span, mut value) = table.iter().find(|(k, _)| k.get_ref() == key).map(|(k, v)| (k.span(), v))?;
        for index in indices.split('[').filter(|i| !i.is_empty()) {
            let i: usize = index.trim_end_matches(']').parse().ok()?;
            value = value.get_ref().as_array()?.get(i)?;
        }
        found = Some((key_span, value));
        if segments.peek().is_some() {
            table = value.get_ref().as_table()?;
        }
    }
    let (key_span, value) = found?;
    Some(match value.get_ref() {
        toml::de::DeValue::Table(_) => (line_at(text, key_span.start), None),
        _ => (line_at(text, value.span().start), Some(shorten(&text[value.span()]))),
    })
}

/// The table a header line names (`[HOT_LEAD]`, `[types.hot_lead]`, `[[x]]`), if it is one.
fn header_name(line: &str) -> Option<String> {
    let line = line.split('#').next().unwrap_or("").trim();
    let name = line.strip_prefix('[')?.strip_suffix(']')?;
    Some(name.trim_start_matches('[').trim_end_matches(']').trim().to_string())
}

/// A failed check of one field: the path of the field (`hot_lead.min_messages`) and what is
/// wrong. The error adds the file, the line and the value as written.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FieldError {
    /// Dotted path of the field in the file.
    pub(crate) field: String,
    /// What is wrong, to follow the value as written (`must be 1–16 messages`).
    pub(crate) message: String,
}

impl FieldError {
    pub(crate) fn new(field: impl Into<String>, message: impl Into<String>) -> FieldError {
        FieldError { field: field.into(), message: message.into() }
    }

    /// `(line, message)` with the value as written in `text` put in front of the message.
    pub(crate) fn locate(&self, text: &str) -> (usize, String) {
        match written_at(text, &self.field) {
            Some((line, Some(value))) => (line, format!("{value} {}", self.message)),
            Some((line, None)) => (line, self.message.clone()),
            None => (1, self.message.clone()),
        }
    }
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
        assert_eq!(parse_hours("12-0").unwrap(), HourMask::window(12, 0));
        assert_eq!(parse_hours("0-24").unwrap(), HourMask::ALL_DAY);
        assert_eq!(parse_hours(" 10-12 , 18-20 ").unwrap(), parse_hours("10-12,18-20").unwrap());
        assert_eq!(parse_hours("9-12,12-14").unwrap(), HourMask::window(9, 14), "touching ranges join");
        let night = parse_hours("22-6").unwrap();
        assert!(night.contains(22) && night.contains(23) && night.contains(0) && night.contains(5));
        assert!(!night.contains(6) && !night.contains(21));
        assert_eq!(parse_hours("23-24").unwrap().hours().collect::<Vec<_>>(), vec![23]);
        assert!(parse_hours("20-2").unwrap().contains(1));
    }

    /// Every malformed window is refused with a reason (issue 10): no window that starts
    /// where it ends silently becomes the whole day.
    #[test]
    fn bad_hour_windows_are_refused() {
        for (text, says) in [
            ("9-9", "starts where it ends"),
            ("0-0", "starts where it ends"),
            ("23-23", "starts where it ends"),
            ("", "is empty"),
            ("   ", "is empty"),
            ("9", "not a range"),
            ("-3-5", "not a range"),
            ("3--5", "not a range"),
            ("+9-21", "not a range"),
            ("9-21,", "not a range"),
            ("9 0-21", "not a range"),
            ("nine-21", "not a range"),
            ("24-1", "starts at an hour 0–23"),
            ("24-24", "starts at an hour 0–23"),
            ("9-25", "ends at an hour 0–24"),
            ("25-3", "starts at an hour 0–23"),
            ("100-3", "not a range"),
            ("9-12,10-14", "overlaps `9-12`"),
            ("9-12,9-12", "overlaps `9-12`"),
            ("22-6,5-7", "overlaps `22-6`"),
            ("0-24,9-12", "overlaps `0-24`"),
        ] {
            let err = parse_hours(text).expect_err(text);
            assert!(err.contains(says), "{text:?}: {err}");
        }
    }

    fn strategy_error(text: &str) -> String {
        StrategyBook::from_toml_str(text, "s.toml").unwrap_err().to_string()
    }

    fn line_of(text: &str, needle: &str) -> usize {
        text.lines().position(|l| l.contains(needle)).unwrap() + 1
    }

    /// `allowed_hours = "9-9"` no longer means 24 hours: the error names the line, the field
    /// and the value as written; `"0-24"` is how to say all day.
    #[test]
    fn an_empty_window_is_an_error_and_0_24_is_all_day() {
        let text = DEFAULT_STRATEGIES.replacen("allowed_hours = \"9-21\"", "allowed_hours = \"9-9\"", 1);
        let line = line_of(&text, "allowed_hours = \"9-9\"");
        let err = strategy_error(&text);
        assert!(err.starts_with(&format!("s.toml:{line}: field HOT_LEAD.allowed_hours: \"9-9\" has `9-9`")), "{err}");
        let text = DEFAULT_STRATEGIES.replacen("allowed_hours = \"9-21\"", "allowed_hours = \"0-24\"", 1);
        let book = StrategyBook::from_toml_str(&text, "s.toml").unwrap();
        assert_eq!(book.get(Segment::HotLead).allowed_hours, HourMask::ALL_DAY);
        assert!(book.to_toml().contains("allowed_hours = \"0-24\""), "round trip keeps 0-24");
        let text = DEFAULT_STRATEGIES.replacen("optimal_hours = \"10-12,18-20\"", "optimal_hours = \"\"", 1);
        assert!(strategy_error(&text).contains("field HOT_LEAD.optimal_hours: \"\" is empty"));
        let text = DEFAULT_STRATEGIES.replacen("optimal_hours = \"10-12,18-20\"", "optimal_hours = \"-3-5\"", 1);
        assert!(
            strategy_error(&text).contains("field HOT_LEAD.optimal_hours: \"-3-5\" has `-3-5`, which is not a range")
        );
        let text = DEFAULT_STRATEGIES.replacen("optimal_hours = \"10-12,18-20\"", "optimal_hours = \"20-22\"", 1);
        let err = strategy_error(&text);
        assert!(err.contains("field HOT_LEAD.optimal_hours: \"20-22\" is not inside allowed_hours \"9-21\""), "{err}");
    }

    /// A duplicate table and an unknown table are named as tables at their own line, not as
    /// a field of the table before them; numbers are printed as written.
    #[test]
    fn tables_and_values_are_named_as_written() {
        let hot_start = DEFAULT_STRATEGIES.find("[HOT_LEAD]").unwrap();
        let hot_end = hot_start + DEFAULT_STRATEGIES[hot_start..].find("\n\n").unwrap();
        let text = format!("{DEFAULT_STRATEGIES}\n{}\n", &DEFAULT_STRATEGIES[hot_start..hot_end]);
        let line = text.lines().enumerate().filter(|(_, l)| *l == "[HOT_LEAD]").last().unwrap().0 + 1;
        assert_eq!(strategy_error(&text), format!("s.toml:{line}: duplicate table [HOT_LEAD]"));

        let text = format!("{DEFAULT_STRATEGIES}\n[VIP]\npriority = 1\n");
        let line = line_of(&text, "[VIP]");
        let err = strategy_error(&text);
        assert!(err.starts_with(&format!("s.toml:{line}: unknown table [VIP]; expected one of")), "{err}");
        assert!(err.contains("`HOT_LEAD`") && err.contains("`PREMIUM_POTENTIAL`"), "{err}");

        let text = DEFAULT_STRATEGIES.replacen("daily_limit = 3", "daily_limit = 1e300", 1);
        let line = line_of(&text, "1e300");
        assert_eq!(
            strategy_error(&text),
            format!("s.toml:{line}: field HOT_LEAD.daily_limit: 1e300 is not a whole number 0–4294967295")
        );
        let text = DEFAULT_STRATEGIES.replacen("cooldown_hours = 4", "cooldown_hours = 1e300", 1);
        let line = line_of(&text, "1e300");
        assert_eq!(
            strategy_error(&text),
            format!("s.toml:{line}: field HOT_LEAD.cooldown_hours: 1e300 must be between 0 and 720 hours")
        );
        let text = DEFAULT_STRATEGIES.replacen("priority = 10", "priority = 300", 1);
        assert!(strategy_error(&text).contains("field HOT_LEAD.priority: 300 is not a whole number 0–255"));
        let text = DEFAULT_STRATEGIES.replacen("cooldown_hours = 4\n", "cooldown_hours = 4\ncooldown_hours = 5\n", 1);
        assert!(strategy_error(&text).contains("is set twice"));
        let text = DEFAULT_STRATEGIES.replacen("content = [\"offer\", \"reminder\"]\n", "", 1);
        let err = strategy_error(&text);
        assert!(err.contains("field HOT_LEAD.content: missing"), "{err}");
    }

    /// Strategy names are bounded and printable; the error does not repeat a huge name.
    #[test]
    fn names_are_bounded() {
        let huge = "n".repeat(5_000_000);
        let text = DEFAULT_STRATEGIES.replacen("name = \"defaults-v1\"", &format!("name = \"{huge}\""), 1);
        let line = line_of(&text, "name = \"nnn");
        let err = strategy_error(&text);
        assert!(err.starts_with(&format!("s.toml:{line}: field name: \"nnnn")), "{}", &err[..200.min(err.len())]);
        assert!(err.ends_with("is 5000000 characters long; a name has at most 64") && err.len() < 200, "{err}");
        let text = DEFAULT_STRATEGIES.replacen("name = \"defaults-v1\"", "name = \"a\\nb\"", 1);
        assert!(strategy_error(&text).contains("field name: \"a\\nb\" holds a control character"));
        let text = DEFAULT_STRATEGIES.replacen("name = \"defaults-v1\"", "name = \"\"", 1);
        assert!(strategy_error(&text).contains("field name: \"\" is empty"));
        let text = DEFAULT_STRATEGIES.replacen("name = \"defaults-v1\"", &format!("name = \"{}\"", "é".repeat(64)), 1);
        assert!(StrategyBook::from_toml_str(&text, "s.toml").is_ok(), "64 characters, not bytes");
    }
}
