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

/// The report and the events file are byte-identical whatever the number of threads the
/// users are spread over (1, 2, 4): shards never meet between sync points and merge in a
/// fixed order. With the learner too, and with experiment arms.
#[test]
fn threads_do_not_change_the_report_or_the_events() {
    let dir = super::common::temp_dir();
    let run = |threads: &str, extra: &[&str]| {
        let events = dir.path().join(format!("events-{threads}-{}.jsonl", extra.len()));
        let mut args = vec!["--users", "1500", "--days", "8", "--seed", "9", "--threads", threads];
        let events_arg = super::common::s(&events).to_string();
        args.extend_from_slice(&["--events", &events_arg]);
        args.extend_from_slice(extra);
        let report = without_timing(simulate_json(&args));
        (report, std::fs::read(&events).expect("the events file"))
    };
    let (one, one_events) = run("1", &[]);
    for threads in ["2", "4"] {
        let (other, other_events) = run(threads, &[]);
        assert_eq!(one, other, "--threads 1 and --threads {threads} differ");
        assert!(one_events == other_events, "--threads 1 and --threads {threads} wrote different events");
    }
    assert!(!one_events.is_empty());
    let (learn_one, _) = run("1", &["--learn", "--no-baseline"]);
    let (learn_two, _) = run("2", &["--learn", "--no-baseline"]);
    assert_eq!(learn_one, learn_two, "the learner's run depends on --threads");
}

/// An experiment's per-user results file is the same whatever the number of threads.
#[test]
fn threads_do_not_change_experiment_results() {
    let dir = super::common::temp_dir();
    let run = |threads: &str| {
        let out = dir.path().join(format!("results-{threads}.csv"));
        let output = super::common::gavat(&[
            "experiment",
            "run",
            concat!(env!("CARGO_MANIFEST_DIR"), "/experiments/send_hours.toml"),
            "--users",
            "1200",
            "--days",
            "7",
            "--seed",
            "5",
            "--threads",
            threads,
            "--out",
            super::common::s(&out),
        ]);
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        std::fs::read(&out).expect("the results file")
    };
    assert!(run("1") == run("2"), "experiment results depend on --threads");
}
