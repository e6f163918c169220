//! Experiments end to end: `plan`, `run` and `compare` from the CLI, and the calibration
//! that shows the pipeline is honest — A/A experiments reject at the nominal rate, and a
//! planted effect is found at about the planned power.

use gavat::config::StrategyBook;
use gavat::experiment::{ExperimentPlan, run};
use gavat::simulation::SimulationPlan;
use gavat_experiments::design::Experiment;
use gavat_sim::Scenario;
use statrs::distribution::{ContinuousCDF, Normal};

use super::common::{gavat, s, temp_dir};

/// `plan` prints the users per arm of the unpooled normal approximation; the value
/// (31,230.69 → 31,231) was computed with scipy (experiments/reference/reference_values.py).
#[test]
fn plan_prints_users_per_arm() {
    let out = gavat(&["experiment", "plan", "--baseline", "0.05", "--mde", "0.10"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("31231 users per arm"));
    let out = gavat(&["experiment", "plan", "--baseline", "0.05", "--mde", "0.01", "--absolute", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["users_per_arm"], 8155);
    let out = gavat(&["experiment", "plan", "--baseline", "1.5", "--mde", "0.1"]);
    assert_eq!(out.status.code(), Some(2));
}

/// `run` writes one row per user and a comparison; `compare` on that file agrees with it.
#[test]
fn run_then_compare_agree() {
    let dir = temp_dir();
    let results = dir.path().join("results.csv");
    let plot = dir.path().join("arms.svg");
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/experiments/cooldown.toml");
    let out = gavat(&[
        "experiment",
        "run",
        file,
        "--users",
        "1500",
        "--days",
        "10",
        "--seed",
        "4",
        "--out",
        s(&results),
        "--json",
        "--plot",
        s(&plot),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let ran: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let text = std::fs::read_to_string(&results).unwrap();
    assert_eq!(text.lines().count(), 1 + 1500);
    assert!(text.starts_with("user,arm,messages,responses,conversions,opted_out,engagement\n"));
    assert!(std::fs::read_to_string(&plot).unwrap().contains("<svg"));

    let out = gavat(&["experiment", "compare", s(&results), "--experiment", file, "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let compared: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ran["report"], compared, "compare on the written file reproduces the run's comparison");
    let users: u64 = compared["arms"].as_array().unwrap().iter().map(|a| a["users"].as_u64().unwrap()).sum();
    assert_eq!(users, 1500);
}

/// Bad experiment files and results files are one-line errors with exit code 2.
#[test]
fn bad_inputs_exit_2() {
    let dir = temp_dir();
    let bad = dir.path().join("bad.toml");
    let text = include_str!("../../experiments/cooldown.toml").replace("cooldown_hours = 8", "daily_limit = 99");
    std::fs::write(&bad, text).unwrap();
    let out = gavat(&["experiment", "run", s(&bad), "--users", "10", "--out", s(&dir.path().join("r.csv"))]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("field arms[1].overrides.HOT_LEAD.daily_limit"), "{stderr}");

    let csv = dir.path().join("r.csv");
    std::fs::write(&csv, "user,arm,messages,responses,conversions,opted_out,engagement\n1,a,2,1,0,maybe,1\n").unwrap();
    let out = gavat(&["experiment", "compare", s(&csv)]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("r.csv:2: column opted_out"), "{stderr}");
}

fn experiment(text: &str, users: usize, days: u32, seed: u64, paired: bool) -> gavat::experiment::ExperimentOutcome {
    let plan = ExperimentPlan {
        sim: SimulationPlan {
            users,
            days,
            seed,
            scenario: Scenario::default_scenario(),
            scenario_name: "default".into(),
            sources: Default::default(),
            book: StrategyBook::defaults(),
            rules: gavat::segmentation::SegmentationRules::defaults(),
            events: None,
            save_state: None,
            learner: None,
            adviser: None,
            threads: 2,
        },
        design: Experiment::from_toml_str(text, "test.toml").expect("a valid design"),
        origin: "test.toml".into(),
        paired,
        pre_period_days: 0,
    };
    run(&plan, |_| {}).expect("the experiment runs")
}

const AA: &str = r#"
name = "a-a"
salt = "a-a"
primary_metric = "response_rate"
minimum_detectable_effect = 0.1
[[arms]]
name = "control"
weight = 1.0
[[arms]]
name = "same"
weight = 1.0
"#;

/// 200 seeded A/A experiments (two identical arms, 1,000 users, 7 days) reject at α = 0.05
/// about 5% of the time: the count must lie in the binomial(200, 0.05) 99% band [3, 19]
/// (scipy `binom.ppf(0.005 / 0.995, 200, 0.05)`).
#[test]
fn a_a_experiments_reject_at_the_nominal_rate() {
    let rejections = (0..200u64)
        .filter(|seed| {
            experiment(AA, 1_000, 7, 10_000 + seed, false).report.comparisons[0]
                .p_value
                .value()
                .is_some_and(|p| p < 0.05)
        })
        .count();
    eprintln!("A/A: {rejections} of 200 rejected at alpha 0.05");
    assert!((3..=19).contains(&rejections), "{rejections} of 200 A/A experiments rejected");
}

const PLANTED: &str = r#"
name = "planted"
salt = "planted"
primary_metric = "response_rate"
minimum_detectable_effect = 0.1
[[arms]]
name = "control"
weight = 1.0
[[arms]]
name = "active-hours"
weight = 1.0
[arms.overrides.COLD_LEAD]
optimal_hours = "13-16"
frequency = "every_3_days"
[arms.overrides.WARM_LEAD]
optimal_hours = "17-20"
"#;

/// A planted effect (cold and warm leads messaged at their active hours, cold leads twice as
/// often) is found at about the planned power. Its true size is measured first by the
/// paired design on 20,000 users; the users per arm for 80% power follow from it; then 60
/// seeded split experiments of that size must detect it a number of times inside the
/// binomial(60, 0.8) 99% band [40, 55] (scipy `binom.ppf`).
#[test]
fn a_planted_effect_is_found_at_the_planned_power() {
    let truth = experiment(PLANTED, 20_000, 7, 1, true);
    let paired = &truth.paired.as_ref().expect("paired results")[0];
    let delta = paired.paired.estimate;
    let p1 = truth.report.arms[0].estimate.value().expect("control has an estimate").estimate;
    let p2 = p1 + delta;
    assert!(delta > 0.01, "the planted effect is visible: {delta}");
    let normal = Normal::new(0.0, 1.0).unwrap();
    let z = normal.inverse_cdf(0.975) + normal.inverse_cdf(0.8);
    let per_arm = (z * z * (p1 * (1.0 - p1) + p2 * (1.0 - p2)) / (delta * delta)).ceil() as usize;
    let detected = (0..60u64)
        .filter(|seed| {
            let r = experiment(PLANTED, 2 * per_arm, 7, 20_000 + seed, false).report;
            r.comparisons[0].p_value.value().is_some_and(|p| p < 0.05) && r.comparisons[0].difference.estimate > 0.0
        })
        .count();
    eprintln!("planted effect: detected {detected} of 60 at {per_arm} users per arm (delta {delta:.4}, p1 {p1:.4})");
    assert!((40..=55).contains(&detected), "detected {detected} of 60 at {per_arm} users per arm (Δ = {delta:.4})");
}
