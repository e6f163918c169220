//! Row 29: every TOML file gavat reads — strategies, segmentation rules, the live config,
//! a simulation scenario, an experiment — mutated: no panic, and every refusal names
//! `FILE:LINE` (a typed error; the CLI turns it into exit 2 before anything is sent).

use std::fmt::Display;

use super::mutate::{Shape, Target, Verdict, fuzz, names_file_and_line, with_huge_line};

/// Keys, tables and values nobody knows, or that no policy allows.
const TOML_UNKNOWN: &[&str] = &[
    "bogus_key = 1",
    "[unknown_table]",
    "daily_limit = 1000",
    "cooldown_hours = -5",
    "zone = \"Mars/Olympus_Mons\"",
    "quiet_hours = \"22-06,05-23\"",
    "[[bots]]\nname = \"x\"\ntoken_env = \"lower case\"",
    "[http]\nlisten = \"0.0.0.0:80\"",
    "api_base_url = \"http://example.com\"",
];

/// Fuzzes one TOML parser, whose errors must name `origin:LINE`.
fn fuzz_toml<T, E: Display>(row: &'static str, seed: u64, valid: &str, parse: impl Fn(&str, &str) -> Result<T, E>) {
    let origin = format!("{row}.toml");
    let target = Target { row, seed, valid: valid.as_bytes(), shape: Shape::Lines, unknown: TOML_UNKNOWN };
    let huge = with_huge_line(valid.as_bytes(), b"# a comment that never ends ");
    let tally = fuzz(&target, Some(huge), |bytes| {
        // What `read_settings_file` does: a file that is not UTF-8 is refused naming it
        // before the TOML parser sees it.
        let Ok(text) = std::str::from_utf8(bytes) else {
            return Verdict::Rejected { located: true, message: "not UTF-8".into() };
        };
        match parse(text, &origin) {
            Ok(_) => Verdict::Accepted,
            Err(e) => {
                let message = e.to_string();
                Verdict::Rejected { located: names_file_and_line(&message, &origin), message }
            }
        }
    });
    tally.report(&target).emit();
}

/// The shipped strategies file, mutated.
#[test]
fn strategies_toml_survives_hostile_files() {
    fuzz_toml("29-strategies", 2901, include_str!("../../../config/strategies.toml"), |t, o| {
        gavat::config::StrategyBook::from_toml_str(t, o)
    });
}

/// The shipped segmentation rules, mutated.
#[test]
fn segmentation_rules_toml_survives_hostile_files() {
    fuzz_toml("29-segmentation", 2902, include_str!("../../../config/segmentation.toml"), |t, o| {
        gavat::segmentation::SegmentationRules::from_toml_str(t, o)
    });
}

/// The shipped live config (`gavat run`), mutated.
#[test]
fn live_config_toml_survives_hostile_files() {
    fuzz_toml("29-live-config", 2903, include_str!("../../../config/gavat.toml"), |t, o| {
        gavat::live::config::RunConfig::from_toml_str(t, o, None)
    });
}

/// The shipped simulation scenario, mutated.
#[test]
fn scenario_toml_survives_hostile_files() {
    fuzz_toml("29-scenario", 2904, include_str!("../../../sim/scenarios/default.toml"), |t, o| {
        gavat_sim::Scenario::from_toml_str(t, o)
    });
}

/// A shipped experiment, mutated.
#[test]
fn experiment_toml_survives_hostile_files() {
    fuzz_toml("29-experiment", 2905, include_str!("../../../experiments/cooldown.toml"), |t, o| {
        gavat_experiments::design::Experiment::from_toml_str(t, o)
    });
}
