//! Experiment files: which arms, with which strategy overrides and weights, an optional
//! holdout, the primary metric, guardrails, and the planned sensitivity. Parsed from TOML and
//! validated; every error names the file, the line, the field and the value as written
//! (`e.toml:14: field arms[1].weight: -1.0 must be positive`) — a `1e300` is quoted as
//! `1e300`, never as the 301-digit number it parses to. Strategy overrides are kept as
//! written (segment → field → value) together with where each was written
//! ([`Experiment::written`]); the engine applies them and checks their values, since only it
//! knows what a strategy is.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::stats::{Adjustment, LiftPrior};

/// The name under which the holdout's users appear in results. No arm may take it, holdout
/// or not: a results file must say unambiguously who received nothing.
pub const HOLDOUT: &str = "holdout";

/// The longest arm name, in characters: names head report tables and CSV rows.
pub const MAX_ARM_NAME: usize = 64;

/// The largest relative minimum detectable effect (100 = a 10,000% change); beyond it the
/// sequential test's mixing variance loses all meaning.
pub const MAX_MDE: f64 = 100.0;

/// Why an experiment file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DesignError {
    /// The file could not be read.
    #[error("{path}: cannot read: {cause}")]
    Read {
        /// The file.
        path: String,
        /// Why (part of the message).
        cause: std::io::Error,
    },
    /// Not valid TOML, a wrong type, or an unknown field.
    #[error("{path}:{line}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// 1-based line.
        line: usize,
        /// What is wrong, starting with `field F: ` when the field is known.
        message: String,
    },
    /// Well-formed but meaningless.
    #[error("{path}:{line}: field {field}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// 1-based line of the value (of the table, for a missing or misplaced one).
        line: usize,
        /// The field, e.g. `arms[1].weight`.
        field: String,
        /// What is wrong, quoting the value as written.
        message: String,
    },
}

/// The metric an experiment is judged on, computed per user.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Share of users who answered at least once.
    ResponseRate,
    /// Share of users who bought at least once.
    ConversionRate,
    /// Share of users who opted out.
    OptOutRate,
    /// Responses per message received (a ratio metric: delta method).
    ResponsesPerMessage,
    /// Mean engagement score per user.
    Engagement,
}

impl Metric {
    /// The name used in files and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::ResponseRate => "response_rate",
            Metric::ConversionRate => "conversion_rate",
            Metric::OptOutRate => "opt_out_rate",
            Metric::ResponsesPerMessage => "responses_per_message",
            Metric::Engagement => "engagement",
        }
    }

    /// Whether the metric is a share of users (reported in percent, differences in
    /// percentage points).
    pub fn is_share(self) -> bool {
        matches!(self, Metric::ResponseRate | Metric::ConversionRate | Metric::OptOutRate)
    }
}

/// One arm.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Arm {
    /// Its name: unique, not [`HOLDOUT`], 1 to [`MAX_ARM_NAME`] characters, no control
    /// characters and no surrounding spaces.
    pub name: String,
    /// Relative share of users.
    pub weight: f64,
    /// Strategy changes: segment name → field → value, as in a strategy file.
    pub overrides: BTreeMap<String, BTreeMap<String, toml::Value>>,
    /// The engine's learner re-plans this arm's strategies from its own users' outcomes
    /// (starting from the overridden ones); other arms stay fixed.
    pub learner: bool,
    /// The message template set (a directory, relative to the experiment file) this arm's
    /// users get instead of the configured one: content variants as arms.
    pub templates: Option<String>,
}

/// A control group that receives nothing at all.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Holdout {
    /// Relative share of users, on the same scale as the arms' weights.
    pub weight: f64,
}

/// A metric that must not get worse.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Guardrail {
    /// Which metric.
    pub metric: Metric,
    /// The largest tolerated increase over control, in absolute terms (0.002 = 0.2 points).
    pub max_increase: f64,
}

/// Where a value was written in its file: for errors found after parsing (an arm's strategy
/// overrides, which only the engine can check).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Written {
    /// 1-based line.
    pub line: usize,
    /// The value's text as written (on one line; control characters escaped).
    pub text: String,
}

/// An experiment as written.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Experiment {
    /// Its name.
    pub name: String,
    /// Salt of the assignment hash: a new salt reshuffles everyone.
    pub salt: String,
    /// The arms; the first is control.
    pub arms: Vec<Arm>,
    /// An optional holdout.
    pub holdout: Option<Holdout>,
    /// What decides.
    pub primary_metric: Metric,
    /// What must not get worse.
    pub guardrails: Vec<Guardrail>,
    /// The smallest relative effect worth detecting (0.10 = 10%).
    pub minimum_detectable_effect: f64,
    /// Two-sided significance level.
    pub alpha: f64,
    /// Power at the minimum detectable effect.
    pub power: f64,
    /// How the treatments' p-values are adjusted (`multiple_testing`, default Holm).
    pub multiple_testing: Adjustment,
    /// The prior of the Gaussian model on the relative lift: N(0, `lift_prior_sd`²), or flat
    /// without the field.
    pub lift_prior: LiftPrior,
    /// Where each strategy override was written, by field (`arms[1].overrides.HOT_LEAD.
    /// cooldown_hours`).
    #[serde(skip)]
    pub written: BTreeMap<String, Written>,
}

/// The file's form, each checked value with its place in the text.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExperiment {
    name: Spanned<String>,
    salt: Spanned<String>,
    arms: Spanned<Vec<RawArm>>,
    holdout: Option<Spanned<RawHoldout>>,
    primary_metric: Metric,
    #[serde(default)]
    guardrails: Vec<Spanned<RawGuardrail>>,
    minimum_detectable_effect: Spanned<f64>,
    alpha: Option<Spanned<f64>>,
    power: Option<Spanned<f64>>,
    #[serde(default)]
    multiple_testing: Option<Adjustment>,
    lift_prior_sd: Option<Spanned<f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawArm {
    name: Spanned<String>,
    weight: Spanned<f64>,
    #[serde(default)]
    overrides: BTreeMap<String, BTreeMap<String, Spanned<toml::Value>>>,
    #[serde(default)]
    learner: bool,
    templates: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHoldout {
    weight: Spanned<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGuardrail {
    metric: Spanned<Metric>,
    max_increase: Spanned<f64>,
}

const DEFAULT_ALPHA: f64 = 0.05;
const DEFAULT_POWER: f64 = 0.8;

/// Why an arm name cannot be used (`None`: it can). Names head report tables and CSV rows
/// and must match between an experiment file and a results file.
pub fn arm_name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        Some("must not be empty".into())
    } else if name.chars().count() > MAX_ARM_NAME {
        Some(format!("is longer than {MAX_ARM_NAME} characters"))
    } else if name.chars().any(char::is_control) {
        Some("must not contain control characters (newlines, tabs…)".into())
    } else if name.trim() != name {
        Some("must not start or end with spaces".into())
    } else if name.eq_ignore_ascii_case(HOLDOUT) {
        Some(format!("is reserved: `{HOLDOUT}` names the users of the [holdout] table in results"))
    } else {
        None
    }
}

/// Line numbers and values as written, for errors.
struct Source<'a> {
    text: &'a str,
    origin: &'a str,
}

impl Source<'_> {
    fn line(&self, offset: usize) -> usize {
        line_of(self.text, offset)
    }

    /// The text of `span`, on one line.
    fn written(&self, span: Range<usize>) -> String {
        let raw = self.text.get(span).unwrap_or("").trim();
        if raw.chars().any(char::is_control) { raw.escape_debug().to_string() } else { raw.to_string() }
    }

    fn invalid(&self, span: Range<usize>, field: impl Into<String>, message: impl Into<String>) -> DesignError {
        DesignError::Invalid {
            path: self.origin.to_string(),
            line: self.line(span.start),
            field: field.into(),
            message: message.into(),
        }
    }

    /// `value` as written, then `why`.
    fn bad_value<T>(&self, value: &Spanned<T>, field: impl Into<String>, why: &str) -> DesignError {
        self.invalid(value.span(), field, format!("{} {why}", self.written(value.span())))
    }
}

/// 1-based line of byte `offset` of `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())].iter().filter(|b| **b == b'\n').count() + 1
}

/// The field assigned (or the table opened) on 1-based `line`, as a path with the index of
/// each array of tables (`arms[1].overrides.HOT_LEAD.cooldown_hours`); `None` if the line
/// holds neither.
fn field_at_line(text: &str, line: usize) -> Option<String> {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut table = String::new();
    let path = |counts: &BTreeMap<String, usize>, dotted: &str| -> String {
        let mut parts = dotted.split('.').map(|p| p.trim().trim_matches('"').to_string());
        let first = parts.next().unwrap_or_default();
        let head = match counts.get(&first) {
            Some(n) => format!("{first}[{}]", n.saturating_sub(1)),
            None => first,
        };
        std::iter::once(head).chain(parts).collect::<Vec<_>>().join(".")
    };
    for (i, raw) in text.lines().enumerate() {
        let here = i + 1 == line;
        let l = raw.split('#').next().unwrap_or("").trim();
        if let Some(name) = l.strip_prefix("[[").and_then(|l| l.strip_suffix("]]")) {
            let name = name.trim().to_string();
            *counts.entry(name.clone()).or_default() += 1;
            table = path(&counts, &name);
        } else if let Some(name) = l.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            table = path(&counts, name.trim());
        } else if here {
            let key = l.split_once('=')?.0.trim();
            let key = key.split('.').map(|p| p.trim().trim_matches('"')).collect::<Vec<_>>().join(".");
            return Some(if table.is_empty() { key } else { format!("{table}.{key}") });
        }
        if here {
            return (!table.is_empty()).then_some(table);
        }
    }
    None
}

impl Experiment {
    /// Reads and validates an experiment file.
    pub fn from_path(path: &Path) -> Result<Experiment, DesignError> {
        let display = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|cause| DesignError::Read { path: display.clone(), cause })?;
        Experiment::from_toml_str(&text, &display)
    }

    /// Parses and validates experiment TOML; `origin` names the file in errors.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Experiment, DesignError> {
        let raw: RawExperiment = toml::from_str(text).map_err(|e| {
            let line = e.span().map_or(1, |s| line_of(text, s.start));
            let message = e.message().split_whitespace().collect::<Vec<_>>().join(" ");
            let message = match field_at_line(text, line) {
                Some(field) => format!("field {field}: {message}"),
                None => message,
            };
            DesignError::Parse { path: origin.to_string(), line, message }
        })?;
        raw.validate(&Source { text, origin })
    }

    /// Weights in assignment order: the arms, then the holdout (if any) last, so that adding
    /// an arm never moves users between existing arms.
    pub fn assignment_weights(&self) -> Vec<f64> {
        self.arms.iter().map(|a| a.weight).chain(self.holdout.as_ref().map(|h| h.weight)).collect()
    }

    /// The names of the groups in results, in assignment order: the arms, then [`HOLDOUT`]
    /// if there is a holdout.
    pub fn group_names(&self) -> impl Iterator<Item = &str> {
        self.arms.iter().map(|a| a.name.as_str()).chain(self.holdout.as_ref().map(|_| HOLDOUT))
    }
}

impl RawExperiment {
    fn validate(self, src: &Source<'_>) -> Result<Experiment, DesignError> {
        for (value, field) in [(&self.name, "name"), (&self.salt, "salt")] {
            if value.get_ref().trim().is_empty() {
                return Err(src.bad_value(value, field, "must not be empty"));
            }
            if value.get_ref().chars().any(char::is_control) {
                return Err(src.bad_value(value, field, "must not contain control characters"));
            }
        }
        let arms_span = self.arms.span();
        let raw_arms = self.arms.into_inner();
        if raw_arms.len() < 2 {
            return Err(src.invalid(
                arms_span,
                "arms",
                format!("needs a control and at least one treatment, found {}", raw_arms.len()),
            ));
        }
        let positive = |value: &Spanned<f64>, field: String| {
            let v = *value.get_ref();
            if v.is_finite() && v > 0.0 { Ok(v) } else { Err(src.bad_value(value, field, "must be a positive number")) }
        };
        let mut arms = Vec::with_capacity(raw_arms.len());
        let mut written = BTreeMap::new();
        let mut total_weight = 0.0;
        for (i, arm) in raw_arms.into_iter().enumerate() {
            let name = arm.name.get_ref();
            if let Some(why) = arm_name_problem(name) {
                return Err(src.bad_value(&arm.name, format!("arms[{i}].name"), &why));
            }
            if let Some(j) = arms.iter().position(|a: &Arm| a.name == *name) {
                return Err(src.bad_value(
                    &arm.name,
                    format!("arms[{i}].name"),
                    &format!("is already the name of arms[{j}]"),
                ));
            }
            let weight = positive(&arm.weight, format!("arms[{i}].weight"))?;
            total_weight += weight;
            let mut overrides = BTreeMap::new();
            for (segment, fields) in arm.overrides {
                let mut values = BTreeMap::new();
                for (field, value) in fields {
                    let spot = Written { line: src.line(value.span().start), text: src.written(value.span()) };
                    written.insert(format!("arms[{i}].overrides.{segment}.{field}"), spot);
                    values.insert(field, value.into_inner());
                }
                overrides.insert(segment, values);
            }
            let templates = match arm.templates {
                Some(dir) if dir.get_ref().trim().is_empty() => {
                    return Err(src.bad_value(&dir, format!("arms[{i}].templates"), "must name a directory"));
                }
                Some(dir) => {
                    let spot = Written { line: src.line(dir.span().start), text: src.written(dir.span()) };
                    written.insert(format!("arms[{i}].templates"), spot);
                    Some(dir.into_inner())
                }
                None => None,
            };
            arms.push(Arm { name: arm.name.into_inner(), weight, overrides, learner: arm.learner, templates });
        }
        let holdout = match &self.holdout {
            Some(h) => {
                let weight = positive(&h.get_ref().weight, "holdout.weight".into())?;
                total_weight += weight;
                Some(Holdout { weight })
            }
            None => None,
        };
        if !total_weight.is_finite() {
            return Err(src.invalid(arms_span, "arms", "the weights add up to more than a number can hold"));
        }
        let mde = &self.minimum_detectable_effect;
        let v = *mde.get_ref();
        if !(v.is_finite() && v > 0.0 && v <= MAX_MDE) {
            return Err(src.bad_value(
                mde,
                "minimum_detectable_effect",
                &format!("must be a relative effect above 0 and at most {MAX_MDE} (0.10 = 10%)"),
            ));
        }
        let unit = |value: &Option<Spanned<f64>>, field: &str, default: f64| match value {
            None => Ok(default),
            Some(s) if *s.get_ref() > 0.0 && *s.get_ref() < 1.0 => Ok(*s.get_ref()),
            Some(s) => Err(src.bad_value(s, field, "must be strictly between 0 and 1")),
        };
        let alpha = unit(&self.alpha, "alpha", DEFAULT_ALPHA)?;
        let lift_prior = match &self.lift_prior_sd {
            None => LiftPrior::Flat,
            Some(sd) => LiftPrior::Normal { sd: positive(sd, "lift_prior_sd".into())? },
        };
        let power = unit(&self.power, "power", DEFAULT_POWER)?;
        let mut guardrails: Vec<Guardrail> = Vec::with_capacity(self.guardrails.len());
        for (i, g) in self.guardrails.iter().enumerate() {
            let g = g.get_ref();
            let metric = *g.metric.get_ref();
            if let Some(j) = guardrails.iter().position(|earlier| earlier.metric == metric) {
                return Err(src.bad_value(
                    &g.metric,
                    format!("guardrails[{i}].metric"),
                    &format!("is already guarded by guardrails[{j}]"),
                ));
            }
            let max = *g.max_increase.get_ref();
            if !(max.is_finite() && max >= 0.0) {
                return Err(src.bad_value(
                    &g.max_increase,
                    format!("guardrails[{i}].max_increase"),
                    "must be a number, 0 or more",
                ));
            }
            guardrails.push(Guardrail { metric, max_increase: max });
        }
        Ok(Experiment {
            name: self.name.into_inner(),
            salt: self.salt.into_inner(),
            arms,
            holdout,
            primary_metric: self.primary_metric,
            guardrails,
            minimum_detectable_effect: v,
            alpha,
            power,
            multiple_testing: self.multiple_testing.unwrap_or(Adjustment::Holm),
            lift_prior,
            written,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COOLDOWN: &str = include_str!("../cooldown.toml");

    fn error(text: &str) -> String {
        Experiment::from_toml_str(text, "x.toml").unwrap_err().to_string()
    }

    /// The shipped examples parse.
    #[test]
    fn shipped_examples_parse() {
        for (name, text) in [
            ("cooldown.toml", COOLDOWN),
            ("send_hours.toml", include_str!("../send_hours.toml")),
            ("hot_lead_daily_limit.toml", include_str!("../hot_lead_daily_limit.toml")),
            ("learner_vs_static.toml", include_str!("../learner_vs_static.toml")),
            ("message_wording.toml", include_str!("../message_wording.toml")),
        ] {
            let e = Experiment::from_toml_str(text, name).unwrap_or_else(|e| panic!("{e}"));
            assert!(e.arms.len() >= 2, "{name}");
        }
    }

    /// Bad fields are named with their file, line and value as written.
    #[test]
    fn bad_fields_are_named() {
        let text = COOLDOWN.replacen("weight = 1.0", "weight = -1.0", 1);
        assert_eq!(error(&text), "x.toml:12: field arms[0].weight: -1.0 must be a positive number");
        let text = COOLDOWN.replace("primary_metric = \"response_rate\"", "primary_metric = \"clicks\"");
        let err = error(&text);
        assert!(err.starts_with("x.toml:5: field primary_metric: ") && err.contains("clicks"), "{err}");
        let text = COOLDOWN.replace("alpha = 0.05", "alpha = 5");
        assert_eq!(error(&text), "x.toml:7: field alpha: 5 must be strictly between 0 and 1");
        let text = COOLDOWN.replace("power = 0.8", "power = nan");
        assert_eq!(error(&text), "x.toml:8: field power: nan must be strictly between 0 and 1");
        let text = COOLDOWN.replace("max_increase = 0.002", "max_increase = -inf");
        assert!(error(&text).starts_with("x.toml:24: field guardrails[0].max_increase: -inf must be"), "{text}");
        let text = COOLDOWN.replace("metric = \"opt_out_rate\"", "metric = \"bounce\"");
        assert!(error(&text).starts_with("x.toml:23: field guardrails[0].metric: unknown variant `bounce`"));
        let text = COOLDOWN.replacen("weight = 1.0", "weight = \"heavy\"", 1);
        assert!(error(&text).starts_with("x.toml:12: field arms[0].weight: invalid type: string \"heavy\""));
        let text = COOLDOWN.replace("cooldown_hours = 8", "cooldown_hours = 8\ncolour = 1\n[arms.wat]");
        assert!(error(&text).starts_with("x.toml:20: field arms[1].wat: unknown field `wat`"), "{}", error(&text));
    }

    /// A huge value is quoted as written, not printed as a 301-digit number.
    #[test]
    fn huge_values_are_quoted_as_written() {
        let text = COOLDOWN.replace("minimum_detectable_effect = 0.10", "minimum_detectable_effect = 1e300");
        let err = error(&text);
        assert!(err.starts_with("x.toml:6: field minimum_detectable_effect: 1e300 must be"), "{err}");
        let text = COOLDOWN.replacen("weight = 1.0", "weight = 1.5e308", 2);
        assert_eq!(error(&text), "x.toml:10: field arms: the weights add up to more than a number can hold");
    }

    /// Arm names: no `holdout` (with or without a [holdout] table), no duplicates, no empty
    /// or over-long names, no control characters; commas are fine (the CSV quotes them).
    #[test]
    fn arm_names_are_checked() {
        let named = |name: &str| COOLDOWN.replace("name = \"longer-cooldown\"", &format!("name = {name}"));
        assert_eq!(
            error(&named("\"holdout\"")),
            "x.toml:15: field arms[1].name: \"holdout\" is reserved: `holdout` names the users of the [holdout] table in results"
        );
        assert_eq!(
            error(&named("\"control\"")),
            "x.toml:15: field arms[1].name: \"control\" is already the name of arms[0]"
        );
        assert!(error(&named("\"\"")).ends_with("\"\" must not be empty"));
        assert!(
            error(&named("\"a\\nb\"")).ends_with("\"a\\nb\" must not contain control characters (newlines, tabs…)")
        );
        assert!(error(&named("\" b\"")).contains("must not start or end with spaces"));
        assert!(error(&named(&format!("\"{}\"", "x".repeat(65)))).contains("is longer than 64 characters"));
        let ok = Experiment::from_toml_str(&named("\"long, \\\"quoted\\\" cooldown\""), "x.toml").unwrap();
        assert_eq!(ok.arms[1].name, "long, \"quoted\" cooldown");
    }

    /// Missing or single arms, empty salts and doubled guardrails are refused with a line.
    #[test]
    fn structure_is_checked() {
        let one_arm = COOLDOWN.replace("[[arms]]\nname = \"longer-cooldown\"", "[wat]\nname = \"longer-cooldown\"");
        assert!(error(&one_arm).starts_with("x.toml:"), "{}", error(&one_arm));
        let text = COOLDOWN.replace("salt = \"cooldown-2026-11\"", "salt = \"  \"");
        assert_eq!(error(&text), "x.toml:4: field salt: \"  \" must not be empty");
        let text = format!("{COOLDOWN}\n[[guardrails]]\nmetric = \"opt_out_rate\"\nmax_increase = 0.01\n");
        assert_eq!(
            error(&text),
            "x.toml:27: field guardrails[1].metric: \"opt_out_rate\" is already guarded by guardrails[0]"
        );
    }

    /// The optional statistics fields: the multiple-testing method and the lift's prior.
    #[test]
    fn statistics_options_are_read_and_checked() {
        let e = Experiment::from_toml_str(COOLDOWN, "x.toml").unwrap();
        assert_eq!((e.multiple_testing, e.lift_prior), (Adjustment::Holm, LiftPrior::Flat));
        let text = COOLDOWN
            .replace("power = 0.8", "power = 0.8\nmultiple_testing = \"benjamini_hochberg\"\nlift_prior_sd = 0.3");
        let e = Experiment::from_toml_str(&text, "x.toml").unwrap();
        assert_eq!((e.multiple_testing, e.lift_prior), (Adjustment::BenjaminiHochberg, LiftPrior::Normal { sd: 0.3 }));
        let text = COOLDOWN.replace("power = 0.8", "power = 0.8\nlift_prior_sd = -1");
        assert_eq!(error(&text), "x.toml:9: field lift_prior_sd: -1 must be a positive number");
        let text = COOLDOWN.replace("power = 0.8", "power = 0.8\nmultiple_testing = \"bonferroni\"");
        assert!(
            error(&text).starts_with("x.toml:9: field multiple_testing: unknown variant `bonferroni`"),
            "{}",
            error(&text)
        );
    }

    /// Overrides are kept with their line and text, for the engine's errors.
    #[test]
    fn overrides_remember_where_they_were_written() {
        let e = Experiment::from_toml_str(COOLDOWN, "x.toml").unwrap();
        let spot = &e.written["arms[1].overrides.WARM_LEAD.cooldown_hours"];
        assert_eq!((spot.line, spot.text.as_str()), (20, "24"));
    }
}
