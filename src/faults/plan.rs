//! The fault plan file (`gavat simulate --faults FILE`): which faults fire, how often and
//! for how long, parsed and validated into a [`FaultPlan`] before anything runs. Unknown keys
//! are refused; every error names the file, the line and the field.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::config::{FieldError, SettingsFileError, parse_settings_toml, read_settings_file};

/// Why a fault plan cannot be used: the file cannot be read, is not TOML, or a field is
/// wrong (`faults.toml:7: field slow.rate: 1.5 is not a share in [0, 1]`).
pub type FaultPlanError = SettingsFileError;

/// Most simulated days a fault schedule covers (as `--days`).
const MAX_DAYS: u32 = 3_650;
/// The longest `retry_after` a simulated 429 may name (row 40's hour, and some).
const MAX_RETRY_AFTER_SECS: u32 = 86_400;
/// The longest window of a storm or an outage, and the longest inbound delay.
const MAX_WINDOW_SECS: u32 = 7 * 86_400;
/// Most storms or outages a day.
const MAX_WINDOWS_PER_DAY: u32 = 96;

/// A validated fault plan. Every rate is the chance per send (outbound) or per event
/// (inbound) that the fault fires; `0` (the default of every field) turns a fault off.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FaultPlan {
    /// The plan's name, for the report.
    #[serde(default)]
    pub name: String,
    /// Faults stop after this many simulated days and the rest of the run is a quiet period
    /// (a liveness run, RELIABILITY.md rule 10); absent, they never stop (a safety run).
    #[serde(default)]
    pub stop_after_days: Option<u32>,
    /// Telegram's 429 (rows 1, 10, 40).
    #[serde(default)]
    pub rate_limited: RateLimited,
    /// 5xx answers (row 2).
    #[serde(default)]
    pub server_error: ServerError,
    /// The platform accepts the request, then the answer never comes (rows 3, 5, 43).
    #[serde(default)]
    pub accept_then_hang: AcceptThenHang,
    /// Slow answers (row 8's latency); past the engine's send timeout they are unknown.
    #[serde(default)]
    pub slow: Slow,
    /// The cap gate cannot answer (rows 14–18, 21, 36, 37, 51).
    #[serde(default)]
    pub ledger_unavailable: LedgerUnavailable,
    /// Inbound events delivered twice (row 26).
    #[serde(default)]
    pub duplicate_inbound: DuplicateInbound,
    /// Inbound events delivered late, after later ones (rows 26, 27).
    #[serde(default)]
    pub reorder_inbound: ReorderInbound,
}

/// `[rate_limited]`: chat-scoped 429s drawn per send, and bot-wide storms.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimited {
    /// Chance per send of a 429 scoped to the chat.
    pub rate: f64,
    /// The `retry_after` of a chat-scoped 429, drawn uniformly from `[low, high]` seconds.
    pub retry_after_secs: [u32; 2],
    /// Storms a day: windows during which every send of every bot is answered 429 with
    /// `retry_after` = the rest of the window (scope bot).
    pub storms_per_day: u32,
    /// A storm's length, drawn uniformly from `[low, high]` seconds.
    pub storm_secs: [u32; 2],
}

impl Default for RateLimited {
    fn default() -> RateLimited {
        RateLimited { rate: 0.0, retry_after_secs: [1, 30], storms_per_day: 0, storm_secs: [60, 300] }
    }
}

/// `[server_error]`: a 500 with a Bot API `ok:false` body (provably not processed:
/// transient, retried) or a 502 without one (unknown: counted, never resent).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerError {
    /// Chance per send of a 5xx.
    pub rate: f64,
    /// Of those, the share that are a 502 without a Bot API body.
    pub unknown_share: f64,
    /// Of the 502s, the share the platform had in fact processed (ground truth: the user
    /// got the message).
    pub processed_share: f64,
}

/// `[accept_then_hang]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AcceptThenHang {
    /// Chance per send that the platform delivers the message and never answers.
    pub rate: f64,
}

/// `[slow]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Slow {
    /// Chance per send of a slow answer.
    pub rate: f64,
    /// Its latency, drawn uniformly from `[low, high]` milliseconds; past the engine's send
    /// timeout (10 s) the answer is lost: unknown, though delivered.
    pub latency_ms: [u32; 2],
}

impl Default for Slow {
    fn default() -> Slow {
        Slow { rate: 0.0, latency_ms: [500, 15_000] }
    }
}

/// `[ledger_unavailable]`: outages of the cap gate.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LedgerUnavailable {
    /// Outages a day, each starting at a uniformly drawn second of the day.
    pub windows_per_day: u32,
    /// An outage's length, drawn uniformly from `[low, high]` seconds.
    pub duration_secs: [u32; 2],
}

impl Default for LedgerUnavailable {
    fn default() -> LedgerUnavailable {
        LedgerUnavailable { windows_per_day: 0, duration_secs: [60, 1_800] }
    }
}

/// `[duplicate_inbound]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DuplicateInbound {
    /// Chance per inbound event that it is delivered twice (same source id).
    pub rate: f64,
}

/// `[reorder_inbound]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReorderInbound {
    /// Chance per inbound event that it arrives late.
    pub rate: f64,
    /// How late, drawn uniformly from `[low, high]` seconds.
    pub delay_secs: [u32; 2],
}

impl Default for ReorderInbound {
    fn default() -> ReorderInbound {
        ReorderInbound { rate: 0.0, delay_secs: [1, 600] }
    }
}

impl FaultPlan {
    /// Reads and validates a fault plan file.
    pub fn from_path(path: &Path) -> Result<FaultPlan, FaultPlanError> {
        read_settings_file(path, FaultPlan::from_toml_str)
    }

    /// Parses and validates; `origin` names the file in errors, with the line and the value
    /// as written.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<FaultPlan, FaultPlanError> {
        let plan: FaultPlan = parse_settings_toml(text, origin)?;
        plan.check().map_err(|e| SettingsFileError::invalid(origin, text, e))?;
        Ok(plan)
    }

    /// Whether the plan stops its faults (a liveness run) or never does (a safety run).
    pub fn run_kind(&self) -> &'static str {
        if self.stop_after_days.is_some() { "liveness" } else { "safety" }
    }

    /// The outbound per-send rates, in the order a send's draw is split between them:
    /// chat-scoped 429, 5xx, accept-then-hang, slow.
    pub(crate) fn outbound_rates(&self) -> [f64; 4] {
        [self.rate_limited.rate, self.server_error.rate, self.accept_then_hang.rate, self.slow.rate]
    }

    /// The checks of [`FaultPlan::from_toml_str`].
    fn check(&self) -> Result<(), FieldError> {
        let share = |field: &str, v: f64| {
            if (0.0..=1.0).contains(&v) { Ok(()) } else { Err(FieldError::new(field, "is not a share in [0, 1]")) }
        };
        let range = |field: &str, [low, high]: [u32; 2], min: u32, max: u32, unit: &str| {
            if low < min || high > max || low > high {
                Err(FieldError::new(field, format!("must be [low, high] with {min} ≤ low ≤ high ≤ {max} {unit}")))
            } else {
                Ok(())
            }
        };
        let per_day = |field: &str, v: u32| {
            if v <= MAX_WINDOWS_PER_DAY {
                Ok(())
            } else {
                Err(FieldError::new(field, format!("must be at most {MAX_WINDOWS_PER_DAY} a day")))
            }
        };
        if let Some(days) = self.stop_after_days
            && !(1..=MAX_DAYS).contains(&days)
        {
            return Err(FieldError::new("stop_after_days", format!("must be 1–{MAX_DAYS} days")));
        }
        share("rate_limited.rate", self.rate_limited.rate)?;
        range("rate_limited.retry_after_secs", self.rate_limited.retry_after_secs, 1, MAX_RETRY_AFTER_SECS, "s")?;
        per_day("rate_limited.storms_per_day", self.rate_limited.storms_per_day)?;
        range("rate_limited.storm_secs", self.rate_limited.storm_secs, 1, MAX_WINDOW_SECS, "s")?;
        share("server_error.rate", self.server_error.rate)?;
        share("server_error.unknown_share", self.server_error.unknown_share)?;
        share("server_error.processed_share", self.server_error.processed_share)?;
        share("accept_then_hang.rate", self.accept_then_hang.rate)?;
        share("slow.rate", self.slow.rate)?;
        range("slow.latency_ms", self.slow.latency_ms, 0, 600_000, "ms")?;
        per_day("ledger_unavailable.windows_per_day", self.ledger_unavailable.windows_per_day)?;
        range("ledger_unavailable.duration_secs", self.ledger_unavailable.duration_secs, 1, MAX_WINDOW_SECS, "s")?;
        share("duplicate_inbound.rate", self.duplicate_inbound.rate)?;
        share("reorder_inbound.rate", self.reorder_inbound.rate)?;
        range("reorder_inbound.delay_secs", self.reorder_inbound.delay_secs, 1, MAX_WINDOW_SECS, "s")?;
        let outbound: f64 = self.outbound_rates().iter().sum();
        if outbound > 1.0 {
            return Err(FieldError::new(
                "slow.rate",
                format!(
                    "makes the outbound rates (rate_limited, server_error, accept_then_hang, slow) add up to \
                     {outbound:.3}: one send draws one fault at most, so they must add up to at most 1"
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every shipped example plan parses and validates.
    #[test]
    fn shipped_example_plans_are_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("sim/scenarios/faults");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).expect("sim/scenarios/faults") {
            let path = entry.expect("an entry").path();
            if path.extension().is_some_and(|e| e == "toml") {
                FaultPlan::from_path(&path).unwrap_or_else(|e| panic!("{e}"));
                seen += 1;
            }
        }
        assert!(seen >= 2, "the safety and liveness examples");
    }

    /// An unknown key is refused with its file, line and name.
    #[test]
    fn unknown_keys_are_refused_with_file_line_and_field() {
        let text = "name = \"x\"\n\n[slow]\nrate = 0.1\nlatncy_ms = [1, 2]\n";
        let error = FaultPlan::from_toml_str(text, "f.toml").expect_err("refused").to_string();
        assert!(error.starts_with("f.toml:5:"), "{error}");
        assert!(error.contains("latncy_ms"), "{error}");
    }

    /// A value out of range names the field and the value as written.
    #[test]
    fn out_of_range_values_name_their_field() {
        let text = "[server_error]\nrate = 1.5\n";
        let error = FaultPlan::from_toml_str(text, "f.toml").expect_err("refused").to_string();
        assert_eq!(error, "f.toml:2: field server_error.rate: 1.5 is not a share in [0, 1]");
        let text = "[reorder_inbound]\nrate = 0.1\ndelay_secs = [9, 3]\n";
        let error = FaultPlan::from_toml_str(text, "f.toml").expect_err("refused").to_string();
        assert!(error.starts_with("f.toml:3: field reorder_inbound.delay_secs: [9, 3] must be"), "{error}");
    }

    /// Outbound rates that add up to more than one are refused: a send draws one fault.
    #[test]
    fn outbound_rates_must_fit_in_one_draw() {
        let text = "[rate_limited]\nrate = 0.6\n[slow]\nrate = 0.6\n";
        let error = FaultPlan::from_toml_str(text, "f.toml").expect_err("refused").to_string();
        assert!(error.contains("field slow.rate") && error.contains("1.200"), "{error}");
    }

    /// An empty file is a plan with every fault off: a safety run of nothing.
    #[test]
    fn an_empty_plan_turns_every_fault_off() {
        let plan = FaultPlan::from_toml_str("", "f.toml").expect("valid");
        assert_eq!(plan.outbound_rates(), [0.0; 4]);
        assert_eq!(plan.run_kind(), "safety");
    }
}
