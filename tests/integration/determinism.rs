//! The same seed reproduces a simulation byte for byte; another seed does not.

use super::common::simulate_json;

fn without_timing(mut report: serde_json::Value) -> String {
    report.as_object_mut().expect("an object").remove("timing").expect("a timing object");
    serde_json::to_string_pretty(&report).expect("serialisable")
}

/// Two runs with one seed print identical JSON (timing aside); a third seed differs.
#[test]
fn same_seed_same_report_other_seed_other_report() {
    let args = ["--users", "400", "--days", "10", "--seed", "42"];
    let a = without_timing(simulate_json(&args));
    let b = without_timing(simulate_json(&args));
    assert_eq!(a, b, "same seed, different reports");

    let c = without_timing(simulate_json(&["--users", "400", "--days", "10", "--seed", "43"]));
    assert_ne!(a, c, "a different seed gave the same report");
}

/// The report is sane: something was sent and answered, nothing broke a cap.
#[test]
fn report_has_activity_and_no_violations() {
    let r = simulate_json(&["--users", "500", "--days", "14", "--seed", "7"]);
    let total = &r["total"];
    assert!(total["sent"].as_u64().unwrap() > 500, "{total}");
    assert!(total["responses"].as_u64().unwrap() > 0, "{total}");
    assert_eq!(r["cap_violations"], 0);
    assert_eq!(r["segments"].as_array().unwrap().len(), 8);
    let users: u64 = r["segments"].as_array().unwrap().iter().map(|s| s["users"].as_u64().unwrap()).sum();
    assert_eq!(users, 500, "every user is governed by exactly one segment");
}
