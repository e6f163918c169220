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
    assert_eq!(text.lines().count(), 2 + 1500);
    let header = r#"# gavat-experiment {"experiment":"cooldown-test","arms":[{"name":"control","weight":1.0},{"name":"longer-cooldown","weight":1.0}]}"#;
    let columns = "user,arm,messages,responses,conversions,opted_out,engagement,pre_period";
    assert!(text.starts_with(&format!("{header}\n{columns}\n")), "{}", text.lines().next().unwrap_or(""));
    assert!(std::fs::read_to_string(&plot).unwrap().contains("<svg"));

    let out = gavat(&["experiment", "compare", s(&results), "--experiment", file, "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut compared: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(compared["srm"]["weights"], "experiment_and_results_header", "both sources, checked to agree");
    compared["srm"]["weights"] = "experiment".into();
    assert_eq!(ran["report"], compared, "compare on the written file reproduces the run's comparison");
    // Without the experiment file, the header gives the same split.
    let out = gavat(&["experiment", "compare", s(&results), "--json"]);
    let alone: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(alone["srm"]["weights"], "results_header");
    assert_eq!(alone["srm"]["check"], compared["srm"]["check"]);
    let cuped = &compared["comparisons"][0]["cuped"];
    assert!(cuped["variance_reduction"].as_f64().is_some_and(|r| r > 0.0), "CUPED beside the raw figures: {cuped}");
    let users: u64 = compared["arms"].as_array().unwrap().iter().map(|a| a["users"].as_u64().unwrap()).sum();
    assert_eq!(users, 1500);
}

const THREE_ARMS_AND_HOLDOUT: &str = r#"
name = "misleading"
salt = "misleading"
primary_metric = "response_rate"
minimum_detectable_effect = 0.1
[[arms]]
name = "control"
weight = 1.0
[[arms]]
name = "b"
weight = 1.0
[[arms]]
name = "c"
weight = 1.0
[holdout]
weight = 0.2
"#;

/// A results row for `user` in `arm` (engagement from its definition).
fn row(user: u64, arm: &str, responses: u64, opted_out: bool) -> String {
    let engagement = responses as f64 - if opted_out { 5.0 } else { 0.0 };
    format!("{user},{arm},{},{responses},0,{},{engagement}\n", responses.max(1), u8::from(opted_out))
}

/// Issue 15's "done when": on a results file with a missing arm (c), a holdout, an
/// engagement whose control mean is 0, and no conversion anywhere (0 vs 0), `compare`
/// prints nothing misleading — the missing arm fails the SRM check, the holdout has no
/// verdict of its own, no NaN or absurd lift, "not computable" instead of p = 1 — and reads
/// the same rows as JSON lines to the same report.
#[test]
fn compare_prints_nothing_misleading() {
    let dir = temp_dir();
    let design = dir.path().join("e.toml");
    std::fs::write(&design, THREE_ARMS_AND_HOLDOUT).unwrap();
    let mut csv = String::from("user,arm,messages,responses,conversions,opted_out,engagement\n");
    for u in 0..1000u64 {
        // Control: engagement +5 for 10% and −5 for 10%: a mean of exactly 0.
        let (responses, opted) = match u % 10 {
            0 => (5, false),
            1 => (0, true),
            _ => (0, false),
        };
        csv.push_str(&row(u, "control", responses, opted));
        csv.push_str(&row(10_000 + u, "b", if u % 10 < 2 { 5 } else { 0 }, false));
        if u % 5 == 0 {
            csv.push_str(&row(20_000 + u, "holdout", 0, u % 50 == 0));
        }
    }
    let results = dir.path().join("r.csv");
    std::fs::write(&results, &csv).unwrap();
    let compare = |file: &std::path::Path, extra: &[&str]| {
        let mut args = vec!["experiment", "compare", s(file), "--experiment", s(&design)];
        args.extend_from_slice(extra);
        let out = gavat(&args);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    for metric in ["response_rate", "engagement", "conversion_rate", "opt_out_rate"] {
        let text = compare(&results, &["--metric", metric]);
        assert!(!text.contains("NaN") && !text.contains("inf%") && !text.contains(" inf"), "{metric}: {text}");
        assert!(text.contains("WARNING: sample ratio mismatch: arm c has a weight"), "{metric}: {text}");
        assert!(text.contains("<-- MISMATCH") && !text.contains("(ok)"), "{metric}: {text}");
        for misleading in ["holdout vs control", "holdout raises", "holdout lowers", "holdout: no"] {
            assert!(!text.contains(misleading), "{metric}: {misleading} in {text}");
        }
        assert!(text.contains("incremental effect of messaging at all, b vs holdout"), "{metric}: {text}");
        assert!(text.contains("family: 1 comparison of the treatments with control"), "{metric}: {text}");
        assert!(!text.contains("-100.0% [-100.0%, -100.0%]"), "{metric}: {text}");
    }
    let text = compare(&results, &["--metric", "engagement"]);
    assert!(text.contains("relative lift (Fieller, 95% CI): undefined (engagement can be zero or negative"), "{text}");
    assert!(text.contains("always-valid p (mSPRT, this look): ") && !text.contains("mSPRT, this look): 1.0000"));
    let text = compare(&results, &["--metric", "conversion_rate"]);
    assert!(text.contains("both arms have no successes: the test is not computable"), "{text}");
    assert!(text.contains("P(b better than control) = 50.0%") && !text.contains("p = 1.0"), "{text}");
    let text = compare(&results, &["--metric", "response_rate", "--alpha", "0.1"]);
    assert!(text.contains("estimate [90% CI]") && !text.contains("95%"), "{text}");

    let jsonl = dir.path().join("r.jsonl");
    let lines: String = csv
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            format!(
                "{{\"user\":{},\"arm\":\"{}\",\"messages\":{},\"responses\":{},\"conversions\":{},\"opted_out\":{},\"engagement\":{}}}\n",
                f[0], f[1], f[2], f[3], f[4], f[5], f[6]
            )
        })
        .collect();
    std::fs::write(&jsonl, lines).unwrap();
    assert_eq!(compare(&jsonl, &["--json"]), compare(&results, &["--json"]), "JSON lines read as the CSV");
}

/// A results file whose header gives arm `c` a weight but which has no row for it fails the
/// sample-ratio check without `--experiment`, and the report says the shares came from the
/// header; the same rows without a header cannot see the missing arm (an older file, still
/// read).
#[test]
fn a_missing_arm_fails_srm_with_weights_from_the_header() {
    let dir = temp_dir();
    let header = r#"# gavat-experiment {"experiment":"three","arms":[{"name":"a","weight":0.5},{"name":"b","weight":0.25},{"name":"c","weight":0.25}]}"#;
    let mut rows = String::from("user,arm,messages,responses,conversions,opted_out,engagement\n");
    for u in 0..600u64 {
        rows.push_str(&row(u, if u % 3 == 0 { "b" } else { "a" }, u64::from(u % 4 == 0), false));
    }
    let with_header = dir.path().join("r.csv");
    std::fs::write(&with_header, format!("{header}\n{rows}")).unwrap();
    let out = gavat(&["experiment", "compare", s(&with_header)]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("WARNING: sample ratio mismatch: arm c has a weight"), "{text}");
    assert!(text.contains("<-- MISMATCH") && text.contains("planned shares from the results file's header"), "{text}");
    let out = gavat(&["experiment", "compare", s(&with_header), "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["srm"]["weights"], "results_header");
    assert_eq!(json["srm"]["missing_arms"], serde_json::json!(["c"]));
    assert_eq!(json["srm"]["mismatch"], true);

    let without = dir.path().join("old.csv");
    std::fs::write(&without, &rows).unwrap();
    let out = gavat(&["experiment", "compare", s(&without), "--control", "a", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["srm"]["weights"], "assumed_equal", "an older file is still read, with the weights unknown");
}

/// `run --out FILE.jsonl` writes JSON lines after a header object, which `compare` reads
/// without the experiment file, taking the weights from the header.
#[test]
fn json_lines_results_carry_the_header() {
    let dir = temp_dir();
    let results = dir.path().join("r.jsonl");
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/experiments/cooldown.toml");
    let args = ["experiment", "run", file, "--users", "300", "--days", "2", "--seed", "3", "--out", s(&results)];
    let out = gavat(&[&args[..], &["--pre-period-days", "0", "--json"]].concat());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&results).unwrap();
    let first = text.lines().next().unwrap_or_default();
    assert!(
        first.starts_with(r#"{"gavat_experiment":{"experiment":"cooldown-test","arms":[{"name":"control""#),
        "{first}"
    );
    assert_eq!(text.lines().count(), 1 + 300);
    let out = gavat(&["experiment", "compare", s(&results), "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["srm"]["weights"], "results_header");
    assert_eq!(json["control"], "control");
}

/// A header that disagrees with `--experiment` is a usage error naming both; a malformed
/// header is an error naming the file and line.
#[test]
fn a_header_must_agree_with_the_experiment_and_be_well_formed() {
    let dir = temp_dir();
    let design = dir.path().join("e.toml");
    std::fs::write(&design, THREE_ARMS_AND_HOLDOUT).unwrap();
    let body = format!("{}{}", row(1, "control", 1, false), row(2, "b", 0, false));
    let columns = "user,arm,messages,responses,conversions,opted_out,engagement";
    let results = dir.path().join("r.csv");
    let other = r#"# gavat-experiment {"experiment":"misleading","arms":[{"name":"control","weight":1},{"name":"b","weight":2},{"name":"c","weight":1},{"name":"holdout","weight":0.2}]}"#;
    std::fs::write(&results, format!("{other}\n{columns}\n{body}")).unwrap();
    let out = gavat(&["experiment", "compare", s(&results), "--experiment", s(&design)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(&format!("{}: its header (experiment \"misleading\": control:1, b:2, c:1, holdout:0.2) disagrees with --experiment {}", results.display(), design.display())), "{err}");
    assert!(err.contains("weights control:1, b:2, c:1, holdout:0.2 against control:1, b:1, c:1, holdout:0.2"), "{err}");

    std::fs::write(
        &results,
        format!("# gavat-experiment {{\"experiment\":\"x\",\"arms\":[{{\"name\":\"a\"}}]}}\n{columns}\n{body}"),
    )
    .unwrap();
    let out = gavat(&["experiment", "compare", s(&results)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(&format!("{}:1: header: missing field `weight`", results.display())), "{err}");
}

const WATCHED: &str = r#"
name = "watched"
salt = "watched"
primary_metric = "response_rate"
minimum_detectable_effect = 0.1
[[arms]]
name = "control"
weight = 1.0
[[arms]]
name = "b"
weight = 1.0
"#;

/// `compare --looks` three times on a growing results file: each look is appended to the
/// history with the header's export time; the third report's running minimum is the
/// smallest of the three looks' mSPRT p-values (here the second's, not the last), over 3
/// looks, and its interval is the intersection of the three confidence sequences. A looks
/// file of another experiment, or another metric, is refused and left as it was.
#[test]
fn looks_keep_the_running_minimum_and_intersection() {
    let dir = temp_dir();
    let looks = dir.path().join("looks.jsonl");
    let header = |experiment: &str, day: u32| {
        format!(
            "# gavat-experiment {{\"experiment\":\"{experiment}\",\"arms\":[{{\"name\":\"control\",\"weight\":1}},{{\"name\":\"b\",\"weight\":1}}],\"exported_at\":\"2026-12-0{day}T00:00:00+00:00\"}}\n"
        )
    };
    // Responders per block of users per arm: b's lead grows in the second block and is
    // given back in the third.
    let blocks = [(300u64, 60u64, 75u64), (300, 60, 105), (600, 150, 120)];
    let mut body = String::from("user,arm,messages,responses,conversions,opted_out,engagement\n");
    let mut next = 0u64;
    let mut reports = Vec::new();
    for (day, (size, control, b)) in blocks.into_iter().enumerate() {
        for (arm, responders) in [("control", control), ("b", b)] {
            for i in 0..size {
                body.push_str(&row(next, arm, u64::from(i < responders), false));
                next += 1;
            }
        }
        let results = dir.path().join("r.csv");
        std::fs::write(&results, format!("{}{body}", header("watched", day as u32 + 1))).unwrap();
        let out = gavat(&["experiment", "compare", s(&results), "--looks", s(&looks), "--json"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        reports.push(serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap());
    }
    let p: Vec<f64> = reports.iter().map(|r| r["comparisons"][0]["p_always_valid"].as_f64().unwrap()).collect();
    let min = p.iter().copied().fold(f64::INFINITY, f64::min);
    assert!(p[1] < p[2] && p[1] < p[0], "the second look is the smallest, so the last is not the minimum: {p:?}");
    let last = &reports[2];
    assert_eq!(last["looks"], 3);
    let running = &last["comparisons"][0]["running"];
    assert_eq!(running["looks"], 3, "{running}");
    assert_eq!(running["msprt_p_min"].as_f64(), Some(min), "{running}");
    let cs = |r: &serde_json::Value, end: &str| r["comparisons"][0]["confidence_sequence"][end].as_f64().unwrap();
    let low = reports.iter().map(|r| cs(r, "low")).fold(f64::NEG_INFINITY, f64::max);
    let high = reports.iter().map(|r| cs(r, "high")).fold(f64::INFINITY, f64::min);
    assert_eq!((running["cs"]["low"].as_f64(), running["cs"]["high"].as_f64()), (Some(low), Some(high)));
    let history = std::fs::read_to_string(&looks).unwrap();
    assert_eq!(history.lines().count(), 3);
    for (i, line) in history.lines().enumerate() {
        let look: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(look["at"], format!("2026-12-0{}T00:00:00+00:00", i + 1));
        assert_eq!(look["arms"][0]["msprt_p"].as_f64(), Some(p[i]));
    }
    assert_eq!(reports[0]["comparisons"][0]["running"]["looks"], 1);

    // The text shows the running figures beside this look's; the same file compared again
    // is the same look, not a fourth.
    let out = gavat(&["experiment", "compare", s(&dir.path().join("r.csv")), "--looks", s(&looks)]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("always-valid p (mSPRT, this look): "), "{text}");
    assert!(text.contains("always-valid p (mSPRT, running minimum over 3 looks): "), "{text}");
    assert!(text.contains("95% confidence sequence, running intersection over 3 looks: difference ["), "{text}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("the same data as the last look"));
    assert_eq!(std::fs::read_to_string(&looks).unwrap(), history);

    // Another experiment's results, or another metric, against this history: refused.
    let other = dir.path().join("other.csv");
    std::fs::write(&other, format!("{}{body}", header("another", 4))).unwrap();
    let out = gavat(&["experiment", "compare", s(&other), "--looks", s(&looks)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("{}:1: this looks file holds looks of experiment \"watched\"", looks.display()))
            && err.contains("but this look is of experiment \"another\""),
        "{err}"
    );
    let results = dir.path().join("r.csv");
    let out = gavat(&["experiment", "compare", s(&results), "--looks", s(&looks), "--metric", "engagement"]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read_to_string(&looks).unwrap(), history, "a refused look is not appended");
    // Without a header or --experiment, the experiment is unknown: refused.
    std::fs::write(&other, &body).unwrap();
    let out = gavat(&["experiment", "compare", s(&other), "--looks", s(&dir.path().join("new.jsonl"))]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("the experiment is not known"));
    // With the experiment file the same series goes on.
    let design = dir.path().join("watched.toml");
    std::fs::write(&design, WATCHED).unwrap();
    body.push_str(&row(next, "control", 1, false));
    std::fs::write(&other, &body).unwrap();
    let out = gavat(&["experiment", "compare", s(&other), "--experiment", s(&design), "--looks", s(&looks), "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["looks"], 4);
}

/// `plan` for a mean (--sd) and with CUPED (--correlation): the users per arm match
/// statsmodels' NormalIndPower (3,531.99 → 3,532; at ρ = 0.6, 2,260.47 → 2,261).
#[test]
fn plan_for_means_and_cuped() {
    let out = gavat(&["experiment", "plan", "--baseline", "2", "--sd", "3", "--mde", "0.1", "--correlation", "0.6"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.starts_with("3532 users per arm") && text.contains("\n2261 users per arm with CUPED"), "{text}");
    let out = gavat(&["experiment", "plan", "--baseline", "0", "--sd", "3", "--mde", "0.1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--mde 0.1: is relative, but the baseline mean is 0"));
    let out = gavat(&["experiment", "plan", "--baseline", "0.05", "--mde", "0.1", "--correlation", "1.5"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--correlation 1.5: must be strictly between -1 and 1"));
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
