//! Bad input: strategy, scenario, rules and learner TOML files: every value checked, every error at file:line: field.
//!
//! Each test writes one bad file, runs `gavat simulate` on it and expects exit code 2 and
//! one line on stderr naming `file:LINE:` and the field (or table) with the value as
//! written. Nothing runs, and no output file is left behind.

use std::process::{Command, Stdio};

use crate::common::{gavat, s, temp_dir};

const STRATEGIES: &str = include_str!("../../../config/strategies.toml");
const RULES: &str = include_str!("../../../config/segmentation.toml");
const LEARNER: &str = include_str!("../../../config/learner.toml");
const SCENARIO: &str = include_str!("../../../sim/scenarios/default.toml");

/// `base` with the first `old` replaced by `new` (which must be there: the corpus follows
/// the shipped files).
fn edit(base: &str, old: &str, new: &str) -> String {
    assert!(base.contains(old), "the shipped file no longer holds {old:?}");
    base.replacen(old, new, 1)
}

/// The 1-based line of the last line of `text` that contains `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines().enumerate().filter(|(_, l)| l.contains(needle)).map(|(i, _)| i + 1).last().expect("needle in text")
}

/// Writes `text` as `name` under a temp dir, runs `gavat simulate <flag> FILE --events
/// EVENTS`, and checks: exit 2, one line on stderr that contains `name:{line}: {expect}`,
/// and no events file. Returns stderr.
fn refused(flag: &str, name: &str, text: &str, line: usize, expect: &str) -> String {
    let dir = temp_dir();
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    let events = dir.path().join("events.jsonl");
    let out =
        gavat(&["simulate", "--users", "20", "--days", "1", "--seed", "1", flag, s(&path), "--events", s(&events)]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
    let want = format!("{name}:{line}: {expect}");
    assert!(stderr.contains(&want), "expected `{want}` in: {stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.len() < 400, "a short error: {} bytes", stderr.len());
    assert!(!events.exists(), "a refused run writes no events file");
    stderr
}

/// Runs `gavat simulate` on `scenario` and fails if it has not finished within two
/// minutes (the watchdog for "hangs at 100% CPU forever").
fn simulate_finishes(scenario: &str, users: &str, days: &str) {
    let dir = temp_dir();
    let path = dir.path().join("scenario.toml");
    std::fs::write(&path, scenario).unwrap();
    let stderr_path = dir.path().join("stderr");
    let mut child = Command::new(env!("CARGO_BIN_EXE_gavat"))
        .args(["simulate", "--json", "--users", users, "--days", days, "--seed", "3", "--scenario", s(&path)])
        .env("GAVAT_LOG", "error")
        .env("GAVAT_LOG_DIR", concat!(env!("CARGO_TARGET_TMPDIR"), "/logs"))
        .env_remove("OPENAI_API_KEY")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .expect("the gavat binary runs");
    for _ in 0..1_200 {
        if let Some(status) = child.try_wait().unwrap() {
            let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
            assert!(status.success(), "{stderr}");
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    child.kill().ok();
    child.wait().ok();
    panic!("gavat simulate did not finish within 2 minutes");
}

// ---- strategies (--strategy) ----

/// `allowed_hours = "9-9"` is refused: it used to mean all day, so quiet hours vanished.
#[test]
fn strategy_window_that_starts_where_it_ends() {
    let text = edit(STRATEGIES, "allowed_hours = \"9-21\"", "allowed_hours = \"9-9\"");
    let err =
        refused("--strategy", "s.toml", &text, line_of(&text, "\"9-9\""), "field HOT_LEAD.allowed_hours: \"9-9\"");
    assert!(err.contains("0-24"), "says how to write all day: {err}");
}

/// `"0-24"` is the way to say all day, and it runs.
#[test]
fn strategy_all_day_is_0_24() {
    let dir = temp_dir();
    let path = dir.path().join("s.toml");
    std::fs::write(&path, edit(STRATEGIES, "allowed_hours = \"9-21\"", "allowed_hours = \"0-24\"")).unwrap();
    let report = crate::common::simulate_json(&["--users", "20", "--days", "1", "--seed", "1", "--strategy", s(&path)]);
    assert!(report.is_object());
}

/// A negative hour is named as written (`-3-5`), not as "`` is not an hour".
#[test]
fn strategy_negative_hour() {
    let text = edit(STRATEGIES, "optimal_hours = \"10-12,18-20\"", "optimal_hours = \"-3-5\"");
    refused("--strategy", "s.toml", &text, line_of(&text, "-3-5"), "field HOT_LEAD.optimal_hours: \"-3-5\" has `-3-5`");
}

/// Hour 24 cannot start a window and 25 is no hour.
#[test]
fn strategy_hours_past_midnight() {
    let text = edit(STRATEGIES, "allowed_hours = \"9-21\"", "allowed_hours = \"24-1\"");
    refused("--strategy", "s.toml", &text, line_of(&text, "24-1"), "field HOT_LEAD.allowed_hours: \"24-1\" has `24-1`");
    let text = edit(STRATEGIES, "allowed_hours = \"9-21\"", "allowed_hours = \"9-25\"");
    refused("--strategy", "s.toml", &text, line_of(&text, "9-25"), "field HOT_LEAD.allowed_hours: \"9-25\" has `9-25`");
}

/// Overlapping and duplicate ranges are refused.
#[test]
fn strategy_overlapping_ranges() {
    let text = edit(STRATEGIES, "optimal_hours = \"10-12,18-20\"", "optimal_hours = \"10-12,11-13\"");
    refused(
        "--strategy",
        "s.toml",
        &text,
        line_of(&text, "11-13"),
        "field HOT_LEAD.optimal_hours: \"10-12,11-13\" has `11-13`, which overlaps `10-12`",
    );
}

/// An empty window is refused.
#[test]
fn strategy_empty_window() {
    let text = edit(STRATEGIES, "optimal_hours = \"10-12,18-20\"", "optimal_hours = \" \"");
    refused(
        "--strategy",
        "s.toml",
        &text,
        line_of(&text, "optimal_hours = \" \""),
        "field HOT_LEAD.optimal_hours: \" \" is empty",
    );
}

/// Optimal hours outside the allowed hours are an error (documented in strategies.toml).
#[test]
fn strategy_optimal_outside_allowed() {
    let text = edit(STRATEGIES, "optimal_hours = \"10-12,18-20\"", "optimal_hours = \"22-23\"");
    refused(
        "--strategy",
        "s.toml",
        &text,
        line_of(&text, "22-23"),
        "field HOT_LEAD.optimal_hours: \"22-23\" is not inside allowed_hours \"9-21\"",
    );
}

/// A duplicate `[HOT_LEAD]` is reported as such at its own line, not as "field COLD_LEAD".
#[test]
fn strategy_duplicate_table() {
    let text = format!("{STRATEGIES}\n[HOT_LEAD]\npriority = 1\n");
    refused("--strategy", "s.toml", &text, line_of(&text, "[HOT_LEAD]"), "duplicate table [HOT_LEAD]");
}

/// An unknown `[VIP]` is named and the known tables listed.
#[test]
fn strategy_unknown_table() {
    let text = format!("{STRATEGIES}\n[VIP]\npriority = 1\n");
    let err = refused("--strategy", "s.toml", &text, line_of(&text, "[VIP]"), "unknown table [VIP]; expected one of");
    assert!(err.contains("`NIGHT_OWL`"), "{err}");
}

/// `1e300` is printed as written, not as a 301-digit number.
#[test]
fn strategy_huge_number_as_written() {
    let text = edit(STRATEGIES, "daily_limit = 3", "daily_limit = 1e300");
    refused(
        "--strategy",
        "s.toml",
        &text,
        line_of(&text, "1e300"),
        "field HOT_LEAD.daily_limit: 1e300 is not a whole number",
    );
}

/// A 5 MB strategy name is refused, and not repeated in full.
#[test]
fn strategy_huge_name() {
    let text = edit(STRATEGIES, "name = \"defaults-v1\"", &format!("name = \"{}\"", "x".repeat(5_000_000)));
    let err = refused("--strategy", "s.toml", &text, line_of(&text, "name = \"xxx"), "field name: \"xxxx");
    assert!(err.contains("at most 64"), "{err}");
}

// ---- scenarios (--scenario) ----

/// `posts_per_minute = 0` hung at 100% CPU and left an empty events file; now it is refused.
#[test]
fn scenario_zero_posts_per_minute() {
    let text = edit(SCENARIO, "posts_per_minute = 20", "posts_per_minute = 0");
    refused(
        "--scenario",
        "sc.toml",
        &text,
        line_of(&text, "posts_per_minute"),
        "field groups.posts_per_minute: 0 must be 1–1000",
    );
}

/// `per_thousand_users = 1e6` ran unbounded; now it is refused, printed as written.
#[test]
fn scenario_unbounded_groups() {
    let text = edit(SCENARIO, "per_thousand_users = 5.0", "per_thousand_users = 1e6");
    refused(
        "--scenario",
        "sc.toml",
        &text,
        line_of(&text, "1e6"),
        "field groups.per_thousand_users: 1e6 must be in [0, 100]",
    );
}

/// A value of the wrong type in a scenario names its line, field and value.
#[test]
fn scenario_wrong_type() {
    let text = edit(SCENARIO, "peak_hour = 19", "peak_hour = \"seven\"");
    refused(
        "--scenario",
        "sc.toml",
        &text,
        line_of(&text, "seven"),
        "field types.hot_lead.peak_hour: \"seven\" is not a number",
    );
}

/// Duplicate and unknown scenario tables are named as tables.
#[test]
fn scenario_duplicate_and_unknown_tables() {
    let text = format!("{SCENARIO}\n[groups]\nmembers = [1, 2]\n");
    refused("--scenario", "sc.toml", &text, line_of(&text, "[groups]"), "duplicate table [groups]");
    let text = format!("{SCENARIO}\n[vip]\nx = 1\n");
    refused("--scenario", "sc.toml", &text, line_of(&text, "[vip]"), "unknown table [vip]");
}

/// Group rates at the edges of their ranges run to the end.
#[test]
fn scenario_group_edges_finish() {
    let low = edit(SCENARIO, "posts_per_minute = 20", "posts_per_minute = 1");
    let low = edit(&low, "post_interval_hours = 12.0", "post_interval_hours = 1.0");
    let low = edit(&low, "cooldown_hours = 6.0", "cooldown_hours = 0.0");
    let low = edit(&low, "members = [5, 40]", "members = [1, 1]");
    let low = edit(&low, "per_thousand_users = 5.0", "per_thousand_users = 100.0");
    simulate_finishes(&low, "200", "2");
    let high = edit(SCENARIO, "posts_per_minute = 20", "posts_per_minute = 1000");
    let high = edit(&high, "daily_limit = 2 ", "daily_limit = 24 ");
    let high = edit(&high, "members = [5, 40]", "members = [10000, 10000]");
    let high = edit(&high, "per_thousand_users = 5.0", "per_thousand_users = 100.0");
    let high = edit(&high, "activity_per_day = 1.2", "activity_per_day = 100.0");
    simulate_finishes(&high, "200", "2");
}

// ---- segmentation rules (--rules) ----

/// `min_messages = 50` with `window = 8` made HOT_LEAD impossible; both fields are named.
#[test]
fn rules_impossible_hot_lead() {
    let text = edit(RULES, "min_messages = 3 ", "min_messages = 50 ");
    refused(
        "--rules",
        "r.toml",
        &text,
        line_of(&text, "min_messages = 50"),
        "field hot_lead.min_messages: 50 is more than hot_lead.window = 8",
    );
}

/// A share above 1 names its line and value.
#[test]
fn rules_share_out_of_range() {
    let text = edit(RULES, "min_night_share = 0.5", "min_night_share = 1.5");
    refused(
        "--rules",
        "r.toml",
        &text,
        line_of(&text, "1.5"),
        "field night_owl.min_night_share: 1.5 is not a share in (0, 1]",
    );
}

/// Night hours follow the same window rules as strategies.
#[test]
fn rules_night_window_that_starts_where_it_ends() {
    let text = edit(RULES, "night_hours = \"22-4\"", "night_hours = \"22-22\"");
    refused("--rules", "r.toml", &text, line_of(&text, "22-22"), "field night_owl.night_hours: \"22-22\" has `22-22`");
}

/// A duplicate rules table is named as such.
#[test]
fn rules_duplicate_table() {
    let text = format!("{RULES}\n[hot_lead]\nwindow = 8\n");
    refused("--rules", "r.toml", &text, line_of(&text, "[hot_lead]"), "duplicate table [hot_lead]");
}

// ---- learner settings (--learner) ----

/// A wrong type in a learner file names its line, field and value.
#[test]
fn learner_wrong_type() {
    let text = edit(LEARNER, "alpha = 0.05", "alpha = \"low\"");
    refused("--learner", "l.toml", &text, line_of(&text, "\"low\""), "field guardrails.alpha: \"low\" is not a number");
}

/// A minimum above its maximum names both fields.
#[test]
fn learner_min_above_max() {
    let text = edit(LEARNER, "min_cooldown_hours = 4.0", "min_cooldown_hours = 100.0");
    refused(
        "--learner",
        "l.toml",
        &text,
        line_of(&text, "100.0"),
        "field hard_limits.min_cooldown_hours: 100.0 must be from 0 to hard_limits.max_cooldown_hours = 72",
    );
}

/// An unknown learner table is named, with the known ones.
#[test]
fn learner_unknown_table() {
    let text = format!("{LEARNER}\n[turbo]\nx = 1\n");
    let err =
        refused("--learner", "l.toml", &text, line_of(&text, "[turbo]"), "unknown table [turbo]; expected one of");
    assert!(err.contains("`proof`"), "{err}");
}
