//! The learner's settings (`config/learner.toml`, `--learner FILE`): cadence, evidence
//! thresholds, and the hard limits no proposal may cross.

use std::path::Path;

use serde::Deserialize;

use crate::config::{
    FieldError, MAX_COOLDOWN_HOURS, MAX_DAILY_LIMIT, SettingsFileError, parse_settings_toml, read_settings_file,
};

/// The settings shipped with gavat.
pub const DEFAULT_SETTINGS: &str = include_str!("../../config/learner.toml");

/// Why a learner file could not be used.
pub type LearnerSettingsError = SettingsFileError;

/// Fewest sends in an evaluation window a cap move may rest on.
const MIN_CAP_WINDOW: u64 = 30;

/// Longest interval or observation period accepted: ten years of hours.
const MAX_HOURS: i64 = 24 * 3_650;

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

/// `[proof]`: the simulation every proposal must win before it is applied.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProofSettings {
    /// Synthetic users of the segment, each living through both arms.
    pub users: u32,
    /// Simulated days per arm.
    pub days: u32,
    /// k in exp(−k · fatigue load) of the synthetic users (not identifiable from rates
    /// observed at one cap setting, so it is assumed).
    pub fatigue_sensitivity: f64,
    /// Spread (log-normal σ) of the users' response propensity around the segment's.
    pub heterogeneity: f64,
    /// Response at a user's least active hour relative to their most active one (assumed:
    /// the hour factor is floor + (1 − floor) · activity / peak activity).
    pub hour_floor: f64,
    /// Hour corrections drawn from the posterior, users split evenly over them; the
    /// verdict's interval is over these replicates.
    pub worlds: u32,
    /// A win must beat the strategy in force by at least this share of its responses per
    /// user (lower bound), so that near-equal windows do not win by chance.
    pub min_gain: f64,
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
    /// Simulate before deploy.
    pub proof: ProofSettings,
}

impl LearnerSettings {
    /// The shipped settings.
    pub fn defaults() -> LearnerSettings {
        LearnerSettings::from_toml_str(DEFAULT_SETTINGS, "config/learner.toml")
            .expect("the shipped learner.toml is valid (checked by a test)")
    }

    /// Reads and validates a settings file.
    pub fn from_path(path: &Path) -> Result<LearnerSettings, LearnerSettingsError> {
        read_settings_file(path, LearnerSettings::from_toml_str)
    }

    /// Parses and validates; `origin` names the file in errors, with the line and the value
    /// as written.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<LearnerSettings, LearnerSettingsError> {
        let s: LearnerSettings = parse_settings_toml(text, origin)?;
        s.check().map_err(|e| SettingsFileError::invalid(origin, text, e))?;
        Ok(s)
    }

    /// The checks of [`LearnerSettings::from_toml_str`].
    fn check(&self) -> Result<(), FieldError> {
        fn fail(field: &str, message: impl Into<String>) -> Result<(), FieldError> {
            Err(FieldError::new(field, message))
        }
        let s = self;
        if !(1..=MAX_HOURS).contains(&s.interval_hours) {
            return fail("interval_hours", format!("must be 1–{MAX_HOURS} hours"));
        }
        if !(0..=MAX_HOURS).contains(&s.observe_hours) {
            return fail("observe_hours", format!("must be 0–{MAX_HOURS} hours"));
        }
        if !(1..=24).contains(&s.send_hours.window) {
            return fail("send_hours.window", "must be 1–24 hours");
        }
        for (field, v) in [
            ("caps.loosen_min_response", s.caps.loosen_min_response),
            ("caps.opt_out_ceiling", s.caps.opt_out_ceiling),
            ("guardrails.max_opt_out_increase", s.guardrails.max_opt_out_increase),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return fail(field, "is not a share in [0, 1]");
            }
        }
        if !(s.guardrails.alpha > 0.0 && s.guardrails.alpha < 0.5) {
            return fail("guardrails.alpha", "must be in (0, 0.5)");
        }
        let h = &s.hard_limits;
        if !(1..=MAX_DAILY_LIMIT).contains(&h.max_daily_limit) {
            return fail(
                "hard_limits.max_daily_limit",
                format!("must be 1–{MAX_DAILY_LIMIT} (a strategy's own maximum)"),
            );
        }
        if !(h.max_cooldown_hours > 0.0 && h.max_cooldown_hours <= MAX_COOLDOWN_HOURS) {
            return fail(
                "hard_limits.max_cooldown_hours",
                format!("must be more than 0 and at most {MAX_COOLDOWN_HOURS} hours"),
            );
        }
        if !(h.min_cooldown_hours >= 0.0 && h.min_cooldown_hours <= h.max_cooldown_hours) {
            return fail(
                "hard_limits.min_cooldown_hours",
                format!("must be from 0 to hard_limits.max_cooldown_hours = {}", h.max_cooldown_hours),
            );
        }
        if !(s.caps.cooldown_step_hours > 0.0 && s.caps.cooldown_step_hours <= h.max_cooldown_hours) {
            return fail(
                "caps.cooldown_step_hours",
                format!("must be more than 0 and at most hard_limits.max_cooldown_hours = {}", h.max_cooldown_hours),
            );
        }
        if !(1..=MAX_SENDS).contains(&s.send_hours.min_sends) {
            return fail("send_hours.min_sends", format!("must be 1–{MAX_SENDS} sends"));
        }
        if !(MIN_CAP_WINDOW..=MAX_SENDS).contains(&s.caps.min_sends) {
            return fail(
                "caps.min_sends",
                format!("must be {MIN_CAP_WINDOW}–{MAX_SENDS} sends (fewer are too few to judge a cap move on)"),
            );
        }
        let p = &s.proof;
        if !(20..=100_000).contains(&p.users) {
            return fail("proof.users", "must be 20–100000 users");
        }
        if !(1..=90).contains(&p.days) {
            return fail("proof.days", "must be 1–90 days");
        }
        if !(0.0..=10.0).contains(&p.fatigue_sensitivity) {
            return fail("proof.fatigue_sensitivity", "must be in [0, 10]");
        }
        if !(2..=1_000).contains(&p.worlds) {
            return fail("proof.worlds", "must be 2–1000 worlds");
        }
        if p.worlds > p.users / 10 {
            return fail("proof.worlds", format!("leaves fewer than 10 of proof.users = {} users per world", p.users));
        }
        if !(0.0..=1.0).contains(&p.min_gain) {
            return fail("proof.min_gain", "is not a share in [0, 1]");
        }
        if !(0.0..=1.0).contains(&p.hour_floor) {
            return fail("proof.hour_floor", "is not a share in [0, 1]");
        }
        if !(0.0..=3.0).contains(&p.heterogeneity) {
            return fail("proof.heterogeneity", "must be in [0, 3]");
        }
        Ok(())
    }
}

/// Most sends a threshold may ask for before the learner moves anything.
const MAX_SENDS: u64 = 10_000_000;

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
        let bad = DEFAULT_SETTINGS.replace("interval_hours = 6 ", "interval_hours = 9223372036854775807 ");
        let e = LearnerSettings::from_toml_str(&bad, "l.toml").unwrap_err().to_string();
        assert!(e.contains("interval_hours"), "{e}");
        let bad = DEFAULT_SETTINGS.replace("min_sends = 300 ", "min_sends = 0 ");
        let e = LearnerSettings::from_toml_str(&bad, "l.toml").unwrap_err().to_string();
        assert!(e.contains("caps.min_sends"), "{e}");
        let bad = DEFAULT_SETTINGS.replace("cooldown_step_hours = 2.0", "cooldown_step_hours = inf");
        let e = LearnerSettings::from_toml_str(&bad, "l.toml").unwrap_err().to_string();
        assert!(e.contains("caps.cooldown_step_hours"), "{e}");
        let bad = DEFAULT_SETTINGS.replace("alpha = 0.05", "alpha = \"low\"");
        let e = LearnerSettings::from_toml_str(&bad, "l.toml").unwrap_err().to_string();
        assert!(e.starts_with("l.toml:"), "{e}");
    }

    /// Errors name the line, the field and the value as written; combinations name both
    /// fields; tables are named as tables (issue 10).
    #[test]
    fn errors_name_line_field_and_value() {
        let error = |old: &str, new: &str| {
            assert!(DEFAULT_SETTINGS.contains(old), "{old}");
            let text = DEFAULT_SETTINGS.replacen(old, new, 1);
            let line = text.lines().position(|l| l.contains(new.trim())).unwrap() + 1;
            (line, LearnerSettings::from_toml_str(&text, "l.toml").unwrap_err().to_string())
        };
        let (line, e) = error("alpha = 0.05", "alpha = \"low\"");
        assert_eq!(e, format!("l.toml:{line}: field guardrails.alpha: \"low\" is not a number"));
        let (line, e) = error("interval_hours = 6 ", "interval_hours = 1e300 ");
        assert_eq!(e, format!("l.toml:{line}: field interval_hours: 1e300 is not a whole number"));
        let (line, e) = error("min_cooldown_hours = 4.0", "min_cooldown_hours = 100.0");
        assert_eq!(
            e,
            format!(
                "l.toml:{line}: field hard_limits.min_cooldown_hours: 100.0 must be from 0 to \
                 hard_limits.max_cooldown_hours = 72"
            )
        );
        let (_, e) = error("worlds = 20 ", "worlds = 200 ");
        assert!(
            e.contains("field proof.worlds: 200 leaves fewer than 10 of proof.users = 1000 users per world"),
            "{e}"
        );
        let (_, e) = error("max_daily_limit = 3", "max_daily_limit = 1000");
        assert!(e.contains("field hard_limits.max_daily_limit: 1000 must be 1–24"), "{e}");
        let (_, e) = error("max_cooldown_hours = 72.0", "max_cooldown_hours = 1e300");
        assert!(e.contains("field hard_limits.max_cooldown_hours: 1e300 must be"), "{e}");
        let text = format!("{DEFAULT_SETTINGS}\n[caps]\nmin_sends = 300\n");
        let e = LearnerSettings::from_toml_str(&text, "l.toml").unwrap_err().to_string();
        assert!(e.ends_with(": duplicate table [caps]"), "{e}");
        let text = format!("{DEFAULT_SETTINGS}\n[turbo]\nx = 1\n");
        let e = LearnerSettings::from_toml_str(&text, "l.toml").unwrap_err().to_string();
        assert!(e.contains("unknown table [turbo]; expected one of") && e.contains("`proof`"), "{e}");
    }
}
