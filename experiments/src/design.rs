//! Experiment files: which arms, with which strategy overrides and weights, an optional
//! holdout, the primary metric, guardrails, and the planned sensitivity. Parsed from TOML and
//! validated; errors name the file, line and field. Strategy overrides are kept as written
//! (segment → field → value); the engine applies them and checks their values, since only it
//! knows what a strategy is.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

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
        /// What is wrong.
        message: String,
    },
    /// Well-formed but meaningless.
    #[error("{path}: field {field}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// The field, e.g. `arms[1].weight`.
        field: String,
        /// What is wrong.
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
}

/// One arm.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Arm {
    /// Its name (unique).
    pub name: String,
    /// Relative share of users.
    pub weight: f64,
    /// Strategy changes: segment name → field → value, as in a strategy file.
    #[serde(default)]
    pub overrides: BTreeMap<String, BTreeMap<String, toml::Value>>,
    /// The engine's learner re-plans this arm's strategies from its own users' outcomes
    /// (starting from the overridden ones); other arms stay fixed.
    #[serde(default)]
    pub learner: bool,
}

/// A control group that receives nothing at all.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Holdout {
    /// Relative share of users, on the same scale as the arms' weights.
    pub weight: f64,
}

/// A metric that must not get worse.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Guardrail {
    /// Which metric.
    pub metric: Metric,
    /// The largest tolerated increase over control, in absolute terms (0.002 = 0.2 points).
    pub max_increase: f64,
}

/// An experiment as written.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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
    #[serde(default)]
    pub guardrails: Vec<Guardrail>,
    /// The smallest relative effect worth detecting (0.10 = 10%).
    pub minimum_detectable_effect: f64,
    /// Two-sided significance level.
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    /// Power at the minimum detectable effect.
    #[serde(default = "default_power")]
    pub power: f64,
}

fn default_alpha() -> f64 {
    0.05
}

fn default_power() -> f64 {
    0.8
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
        let e: Experiment = toml::from_str(text).map_err(|e| DesignError::Parse {
            path: origin.to_string(),
            line: e.span().map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1).unwrap_or(1),
            message: e.message().split_whitespace().collect::<Vec<_>>().join(" "),
        })?;
        e.validate().map_err(|(field, message)| DesignError::Invalid { path: origin.to_string(), field, message })?;
        Ok(e)
    }

    fn validate(&self) -> Result<(), (String, String)> {
        if self.salt.trim().is_empty() {
            return Err(("salt".into(), "must not be empty".into()));
        }
        if self.arms.len() < 2 {
            return Err((
                "arms".into(),
                format!("needs a control and at least one treatment, found {}", self.arms.len()),
            ));
        }
        for (i, arm) in self.arms.iter().enumerate() {
            if !(arm.weight.is_finite() && arm.weight > 0.0) {
                return Err((format!("arms[{i}].weight"), format!("{} must be positive", arm.weight)));
            }
            if arm.name.trim().is_empty() {
                return Err((format!("arms[{i}].name"), "must not be empty".into()));
            }
            if self.arms[..i].iter().any(|a| a.name == arm.name) {
                return Err((format!("arms[{i}].name"), format!("`{}` is used twice", arm.name)));
            }
        }
        if let Some(h) = &self.holdout
            && !(h.weight.is_finite() && h.weight > 0.0)
        {
            return Err(("holdout.weight".into(), format!("{} must be positive", h.weight)));
        }
        if !(self.minimum_detectable_effect.is_finite() && self.minimum_detectable_effect > 0.0) {
            return Err((
                "minimum_detectable_effect".into(),
                format!("{} must be positive", self.minimum_detectable_effect),
            ));
        }
        if !(self.alpha > 0.0 && self.alpha < 1.0) {
            return Err(("alpha".into(), format!("{} must be strictly between 0 and 1", self.alpha)));
        }
        if !(self.power > 0.0 && self.power < 1.0) {
            return Err(("power".into(), format!("{} must be strictly between 0 and 1", self.power)));
        }
        for (i, g) in self.guardrails.iter().enumerate() {
            if !(g.max_increase.is_finite() && g.max_increase >= 0.0) {
                return Err((
                    format!("guardrails[{i}].max_increase"),
                    format!("{} must not be negative", g.max_increase),
                ));
            }
        }
        Ok(())
    }

    /// Weights in assignment order: the arms, then the holdout (if any) last, so that adding
    /// an arm never moves users between existing arms.
    pub fn assignment_weights(&self) -> Vec<f64> {
        self.arms.iter().map(|a| a.weight).chain(self.holdout.as_ref().map(|h| h.weight)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COOLDOWN: &str = include_str!("../cooldown.toml");

    /// The shipped examples parse.
    #[test]
    fn shipped_examples_parse() {
        for (name, text) in [
            ("cooldown.toml", COOLDOWN),
            ("send_hours.toml", include_str!("../send_hours.toml")),
            ("hot_lead_daily_limit.toml", include_str!("../hot_lead_daily_limit.toml")),
        ] {
            let e = Experiment::from_toml_str(text, name).unwrap_or_else(|e| panic!("{e}"));
            assert!(e.arms.len() >= 2, "{name}");
        }
    }

    /// Bad fields are named.
    #[test]
    fn bad_fields_are_named() {
        let text = COOLDOWN.replacen("weight = 1.0", "weight = -1.0", 1);
        let err = Experiment::from_toml_str(&text, "x.toml").unwrap_err().to_string();
        assert!(err.contains("field arms[0].weight"), "{err}");
        let text = COOLDOWN.replace("primary_metric = \"response_rate\"", "primary_metric = \"clicks\"");
        let err = Experiment::from_toml_str(&text, "x.toml").unwrap_err().to_string();
        assert!(err.starts_with("x.toml:") && err.contains("clicks"), "{err}");
        let text = COOLDOWN.replace("alpha = 0.05", "alpha = 5");
        let err = Experiment::from_toml_str(&text, "x.toml").unwrap_err().to_string();
        assert!(err.contains("field alpha"), "{err}");
    }
}
