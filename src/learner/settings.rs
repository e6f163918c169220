//! The learner's settings (`config/learner.toml`, `--learner FILE`): cadence, evidence
//! thresholds, and the hard limits no proposal may cross.

use std::path::Path;

use serde::Deserialize;

/// The settings shipped with gavat.
pub const DEFAULT_SETTINGS: &str = include_str!("../../config/learner.toml");

/// Why a learner file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LearnerSettingsError {
    /// Unreadable.
    #[error("{path}: cannot read: {cause}")]
    Read {
        /// The file.
        path: String,
        /// Why.
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
        /// The field.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// `[send_hours]`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendHourSettings {
    /// Hours in the optimal window.
    pub window: u8,
    /// Sends needed before the hours move.
    pub min_sends: u64,
}

/// `[caps]`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapSettings {
    /// Sends in a window before a cap moves.
    pub min_sends: u64,
    /// Loosen only above this response-rate lower bound.
    pub loosen_min_response: f64,
    /// Opt-out ceiling per send.
    pub opt_out_ceiling: f64,
    /// One cooldown step, hours.
    pub cooldown_step_hours: f64,
}

/// `[hard_limits]`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HardLimits {
    /// Daily limit never above this.
    pub max_daily_limit: u32,
    /// Cooldown never below this, hours.
    pub min_cooldown_hours: f64,
    /// Cooldown never above this, hours.
    pub max_cooldown_hours: f64,
}

/// `[guardrails]`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardrailSettings {
    /// Largest tolerated rise of the opt-out rate per send.
    pub max_opt_out_increase: f64,
    /// Significance of the one-sided tests.
    pub alpha: f64,
}

/// All of it.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LearnerSettings {
    /// Hours between two looks.
    pub interval_hours: i64,
    /// Hours of observation before the first change.
    pub observe_hours: i64,
    /// Send hours.
    pub send_hours: SendHourSettings,
    /// Daily limit and cooldown.
    pub caps: CapSettings,
    /// Never crossed.
    pub hard_limits: HardLimits,
    /// Rollback rules.
    pub guardrails: GuardrailSettings,
}

impl LearnerSettings {
    /// The shipped settings.
    pub fn defaults() -> LearnerSettings {
        LearnerSettings::from_toml_str(DEFAULT_SETTINGS, "config/learner.toml")
            .expect("the shipped learner.toml is valid (checked by a test)")
    }

    /// Reads and validates a settings file.
    pub fn from_path(path: &Path) -> Result<LearnerSettings, LearnerSettingsError> {
        let display = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|cause| LearnerSettingsError::Read { path: display.clone(), cause })?;
        LearnerSettings::from_toml_str(&text, &display)
    }

    /// Parses and validates; `origin` names the file in errors.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<LearnerSettings, LearnerSettingsError> {
        let s: LearnerSettings = toml::from_str(text).map_err(|e| LearnerSettingsError::Parse {
            path: origin.to_string(),
            line: e.span().map(|sp| text[..sp.start.min(text.len())].matches('\n').count() + 1).unwrap_or(1),
            message: e.message().split_whitespace().collect::<Vec<_>>().join(" "),
        })?;
        let invalid =
            |field, message: String| Err(LearnerSettingsError::Invalid { path: origin.to_string(), field, message });
        if s.interval_hours < 1 {
            return invalid("interval_hours", format!("{} must be at least 1", s.interval_hours));
        }
        if s.observe_hours < 0 {
            return invalid("observe_hours", format!("{} must not be negative", s.observe_hours));
        }
        if !(1..=24).contains(&s.send_hours.window) {
            return invalid("send_hours.window", format!("{} must be 1–24 hours", s.send_hours.window));
        }
        for (field, v) in [
            ("caps.loosen_min_response", s.caps.loosen_min_response),
            ("caps.opt_out_ceiling", s.caps.opt_out_ceiling),
            ("guardrails.max_opt_out_increase", s.guardrails.max_opt_out_increase),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return invalid(field, format!("{v} is not a share in [0, 1]"));
            }
        }
        if !(s.guardrails.alpha > 0.0 && s.guardrails.alpha < 0.5) {
            return invalid("guardrails.alpha", format!("{} must be in (0, 0.5)", s.guardrails.alpha));
        }
        let h = &s.hard_limits;
        if h.max_daily_limit == 0 {
            return invalid("hard_limits.max_daily_limit", "must be at least 1".into());
        }
        if !(h.min_cooldown_hours >= 0.0 && h.min_cooldown_hours <= h.max_cooldown_hours) {
            return invalid(
                "hard_limits.min_cooldown_hours",
                format!("{} must be between 0 and max_cooldown_hours", h.min_cooldown_hours),
            );
        }
        if s.caps.cooldown_step_hours.is_nan() || s.caps.cooldown_step_hours <= 0.0 {
            return invalid("caps.cooldown_step_hours", "must be positive".into());
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_settings_are_valid_and_errors_name_the_field() {
        let d = LearnerSettings::defaults();
        assert_eq!((d.interval_hours, d.observe_hours, d.hard_limits.max_daily_limit), (6, 24, 3));
        let bad = DEFAULT_SETTINGS.replace("max_daily_limit = 3", "max_daily_limit = 0");
        let e = LearnerSettings::from_toml_str(&bad, "l.toml").unwrap_err().to_string();
        assert!(e.contains("hard_limits.max_daily_limit"), "{e}");
        let bad = DEFAULT_SETTINGS.replace("alpha = 0.05", "alpha = \"low\"");
        let e = LearnerSettings::from_toml_str(&bad, "l.toml").unwrap_err().to_string();
        assert!(e.starts_with("l.toml:"), "{e}");
    }
}
