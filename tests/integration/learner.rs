//! `gavat simulate --learn`: the learner changes strategies on the virtual clock, every
//! change is in the report, caps are never broken, and a seed fixes all of it.

use super::common::{gavat, s, simulate_json, temp_dir};

fn without_timing(mut report: serde_json::Value) -> serde_json::Value {
    report.as_object_mut().unwrap().remove("timing");
    report
}

#[test]
fn simulate_learn_is_deterministic_and_reports_every_change() {
    let args = ["--users", "1500", "--days", "6", "--seed", "9", "--learn"];
    let first = without_timing(simulate_json(&args));
    let second = without_timing(simulate_json(&args));
    assert_eq!(first, second, "the same seed gives the same run and the same changes");
    let changes = first["strategy_changes"].as_array().unwrap();
    assert!(!changes.is_empty(), "six days give the learner something to do");
    for c in changes {
        // Nothing before the first day of observation; every entry explains itself.
        assert!(c["at"].as_i64().unwrap() >= first_day_end(&first), "{c}");
        assert!(!c["evidence"].as_str().unwrap().is_empty());
        assert_eq!(c["source"], "statistics");
    }
    assert_eq!(first["cap_violations"], 0);
    // Without --learn nothing changes, and the learning run's baseline is that run.
    let fixed = simulate_json(&["--users", "1500", "--days", "6", "--seed", "9"]);
    assert!(fixed["strategy_changes"].as_array().unwrap().is_empty());
    assert!(fixed.get("learner_effect").is_none());
    let responses = &first["learner_effect"]["metrics"][0];
    assert_eq!(responses["metric"], "responses per send");
    let static_rate = fixed["total"]["responses"].as_f64().unwrap() / fixed["total"]["sent"].as_f64().unwrap();
    assert!((responses["static_rate"].as_f64().unwrap() - static_rate).abs() < 1e-12);
    let d = &responses["difference"];
    assert!(d["low"].as_f64().unwrap() <= d["estimate"].as_f64().unwrap());
}

fn first_day_end(report: &serde_json::Value) -> i64 {
    let start = chrono::DateTime::parse_from_rfc3339(report["start"].as_str().unwrap()).unwrap().timestamp();
    start + 86_400
}

/// A learning run saved to a store: `gavat strategy history` lists every change with its
/// simulation, `show` prints what is in force (and a strategy file `--strategies` reads
/// back), and `rollback` restores the earlier strategy and records itself.
#[test]
fn the_audit_trail_is_persisted_and_a_change_can_be_rolled_back() {
    let dir = temp_dir();
    let db = dir.path().join("crm.db");
    let out = gavat(&["simulate", "--users", "1500", "--days", "6", "--seed", "9", "--learn", "--save-state", s(&db)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let history = json(&["strategy", "history", "--store", s(&db), "--json"]);
    let history = history.as_array().unwrap();
    assert!(!history.is_empty());
    for c in history {
        if c["source"] == "statistics" && (c["action"] == "applied" || c["action"] == "rejected") {
            let proof = &c["proof"];
            if c["action"] == "applied" {
                assert_eq!(proof["won"], true, "nothing is applied without winning its simulation: {c}");
            }
            if !proof.is_null() {
                assert!(c["evidence"].as_str().unwrap().contains("simulated"), "{c}");
            }
        }
    }
    let applied = history.iter().find(|c| c["action"] == "applied").expect("the learner applied something");
    let (id, segment) = (applied["id"].as_i64().unwrap(), applied["segment"].as_str().unwrap().to_string());

    let only = json(&["strategy", "history", "--store", s(&db), "--segment", &segment, "--json"]);
    assert!(only.as_array().unwrap().iter().all(|c| c["segment"] == segment.as_str()));

    let out = gavat(&["strategy", "rollback", &id.to_string(), "--store", s(&db)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("operator rollback of change #{id}")));
    let shown = json(&["strategy", "show", "--store", s(&db), "--json"]);
    let restored = shown
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["segment"] == segment.as_str())
        .expect("the rolled-back segment's strategy is shown");
    assert!(restored["version"].as_i64().unwrap() > id, "it carries the rollback's id: {restored}");
    assert_eq!(restored["strategy"], applied["strategy_before"], "the strategy before the change is back");
    // Twice is once: what the change replaced is already in force.
    let again = gavat(&["strategy", "rollback", &id.to_string(), "--store", s(&db)]);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already in force"));
    let last = json(&["strategy", "history", "--store", s(&db), "--json"]);
    let last = last.as_array().unwrap().last().unwrap().clone();
    assert_eq!((last["source"].as_str(), last["action"].as_str()), (Some("operator"), Some("rolled_back")));

    // A rejected change cannot be rolled back; an unknown one is named.
    if let Some(rejected) = history.iter().find(|c| c["action"] == "rejected") {
        let out = gavat(&["strategy", "rollback", &rejected["id"].to_string(), "--store", s(&db)]);
        assert_eq!(out.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&out.stderr).contains("only an applied change can be rolled back"));
    }
    let out = gavat(&["strategy", "rollback", "99999", "--store", s(&db)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no strategy change #99999"));

    // `show --toml` is a strategy file the engine runs with.
    let out = gavat(&["strategy", "show", "--store", s(&db), "--toml"]);
    assert!(out.status.success());
    let file = dir.path().join("learned.toml");
    std::fs::write(&file, &out.stdout).unwrap();
    let run = simulate_json(&["--users", "300", "--days", "2", "--seed", "1", "--strategy", s(&file)]);
    assert_eq!(run["strategy"], "defaults-v1+learned");
}

fn json(args: &[&str]) -> serde_json::Value {
    let out = gavat(args);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The learner's decisions and the run's analytics are appended to the day's log files.
#[test]
fn a_learning_run_writes_its_decisions_and_analytics_logs() {
    let dir = temp_dir();
    let logs = dir.path().join("logs");
    let out = gavat(&["simulate", "--users", "800", "--days", "3", "--seed", "5", "--learn", "--log-dir", s(&logs)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut names: Vec<String> =
        std::fs::read_dir(&logs).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names[0].starts_with("crm_analytics_") && names[1].starts_with("delivery_optimizer_"), "{names:?}");
    let read = |name: &str| std::fs::read_to_string(logs.join(name)).unwrap();
    let optimizer = read(&names[1]);
    assert!(optimizer.lines().count() > 0);
    assert!(optimizer.lines().all(|l| l.contains("run seed=5") && l.contains(" | ")), "{optimizer}");
    let analytics = read(&names[0]);
    assert_eq!(analytics.lines().count(), 9, "the run and its eight segments: {analytics}");
    assert!(analytics.lines().next().unwrap().contains("learner=on"));
    // A second run appends.
    let out = gavat(&["simulate", "--users", "200", "--days", "2", "--seed", "6", "--log-dir", s(&logs)]);
    assert!(out.status.success());
    assert_eq!(read(&names[0]).lines().count(), 18);
}

/// The shipped learner-vs-static experiment runs: only the learner arm's strategies move,
/// and the comparison is reported like any experiment's.
#[test]
fn the_shipped_learner_vs_static_experiment_runs() {
    let dir = temp_dir();
    let out_csv = dir.path().join("results.csv");
    let args = [
        "experiment",
        "run",
        "experiments/learner_vs_static.toml",
        "--users",
        "2000",
        "--days",
        "5",
        "--seed",
        "3",
        "--json",
        "--out",
        s(&out_csv),
    ];
    let first = json(&args);
    let learning = first["learning"].as_array().unwrap();
    assert_eq!(learning.len(), 1);
    assert_eq!(learning[0]["arm"], "learner");
    let decided =
        ["applied", "kept", "rolled_back", "rejected"].iter().map(|k| learning[0][k].as_u64().unwrap()).sum::<u64>();
    assert!(decided > 0, "the learner looked at its arm: {learning:?}");
    let arms: Vec<&str> =
        first["report"]["arms"].as_array().unwrap().iter().map(|a| a["arm"].as_str().unwrap()).collect();
    assert_eq!(arms, ["static", "learner"]);
    assert_eq!(first["report"]["metric"], "responses_per_message");
    // A seed fixes the learner's decisions too.
    let second = json(&args);
    assert_eq!(first["report"], second["report"]);
    assert_eq!(first["learning"], second["learning"]);
}

/// `--learner` on an experiment none of whose arms learns would do nothing: it is refused.
#[test]
fn learner_settings_for_an_experiment_without_a_learning_arm_are_refused() {
    let out = gavat(&[
        "experiment",
        "run",
        "experiments/send_hours.toml",
        "--learner",
        "config/learner.toml",
        "--users",
        "100",
        "--days",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("sets `learner = true`"));
}
