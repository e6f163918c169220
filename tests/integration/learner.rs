//! `gavat simulate --learn`: the learner changes strategies on the virtual clock, every
//! change is in the report, caps are never broken, and a seed fixes all of it.

use super::common::simulate_json;

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
    // Without --learn nothing changes.
    let fixed = simulate_json(&["--users", "1500", "--days", "6", "--seed", "9"]);
    assert!(fixed["strategy_changes"].as_array().unwrap().is_empty());
}

fn first_day_end(report: &serde_json::Value) -> i64 {
    let start = chrono::DateTime::parse_from_rfc3339(report["start"].as_str().unwrap()).unwrap().timestamp();
    start + 86_400
}
