//! Bad arguments and bad files: a one-line error naming the problem, exit code 2.

use super::common::{gavat, s, temp_dir};

fn assert_usage_error(args: &[&str], needle: &str) {
    let out = gavat(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    assert!(stderr.contains(needle), "{args:?}: expected `{needle}` in: {stderr}");
}

/// Zero users, negative days and missing files are refused before anything runs.
#[test]
fn bad_arguments_exit_2() {
    assert_usage_error(&["simulate", "--users", "0"], "--users");
    assert_usage_error(&["simulate", "--days", "-3"], "--days");
    assert_usage_error(&["simulate", "--scenario", "/nonexistent/x.toml"], "/nonexistent/x.toml");
    assert_usage_error(&["simulate", "--strategy", "/nonexistent/s.toml"], "/nonexistent/s.toml");
    assert_usage_error(&["simulate", "--events", "/nonexistent/dir/e.jsonl"], "/nonexistent/dir");
}

/// A malformed strategy file is named with its line and field.
#[test]
fn malformed_strategy_names_file_line_and_field() {
    let dir = temp_dir();
    let path = dir.path().join("strategies.toml");
    let text = include_str!("../../config/strategies.toml").replace("daily_limit = 3", "daily_limit = \"three\"");
    std::fs::write(&path, &text).unwrap();
    let line = text.lines().position(|l| l.contains("\"three\"")).unwrap() + 1;
    let out = gavat(&["simulate", "--users", "10", "--strategy", s(&path)]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&format!("strategies.toml:{line}: field HOT_LEAD.daily_limit")), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
}

/// Without --seed a seed is drawn and printed so the run can be repeated.
#[test]
fn a_drawn_seed_is_printed() {
    let out = gavat(&["simulate", "--users", "20", "--days", "1"]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--seed"), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("cap violations:    0"), "{stdout}");
}

/// A strategy file replaces the defaults: a daily limit of 0 everywhere sends nothing.
#[test]
fn strategy_file_replaces_defaults() {
    let dir = temp_dir();
    let path = dir.path().join("never.toml");
    let text = include_str!("../../config/strategies.toml")
        .lines()
        .map(|l| if l.starts_with("daily_limit") { "daily_limit = 0" } else { l })
        .collect::<Vec<_>>()
        .join("\n")
        .replace("name = \"defaults-v1\"", "name = \"silence\"");
    std::fs::write(&path, text).unwrap();
    let r = super::common::simulate_json(&["--users", "50", "--days", "3", "--seed", "1", "--strategy", s(&path)]);
    assert_eq!(r["strategy"], "silence");
    assert_eq!(r["total"]["sent"].as_u64().unwrap() - r["total"]["sent_via_group"].as_u64().unwrap(), 0);
}
