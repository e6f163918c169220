//! Telegram in simulation: the simulated transport measures every send against Telegram's
//! limits and the platform's 429s, the same for every thread count, and a scenario can
//! never raise a limit above Telegram's.

use crate::common::{gavat, s, simulate_json, temp_dir};

/// The shipped scenario with its `[telegram]` table replaced by `telegram`.
fn scenario_with(dir: &std::path::Path, telegram: &str) -> std::path::PathBuf {
    let shipped = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/sim/scenarios/default.toml"))
        .expect("the shipped scenario");
    let cut = shipped.find("[telegram]").expect("the shipped scenario has a [telegram] table");
    let path = dir.join("tight.toml");
    std::fs::write(&path, format!("{}[telegram]\n{telegram}\n", &shipped[..cut])).expect("a scenario file");
    path
}

/// A platform tolerating 3 messages a second per bot, under our limit of 5: 429s freeze
/// bots, messages wait, and the figures are the same on 1 and 3 threads.
#[test]
fn a_platform_throttling_harder_than_published_shows_429s_and_waits_on_any_thread_count() {
    let dir = temp_dir();
    let scenario =
        scenario_with(dir.path(), "per_bot_per_second = 5\nplatform_per_bot_per_second = 3\nretry_after_secs = 4");
    let args = |threads: &'static str| {
        simulate_json(&[
            "--users",
            "3000",
            "--days",
            "3",
            "--seed",
            "11",
            "--scenario",
            s(&scenario),
            "--threads",
            threads,
        ])
    };
    let one = args("1");
    let three = args("3");
    assert_eq!(one["telegram"], three["telegram"], "the figures do not depend on the thread count");
    let t = &one["telegram"];
    let n = |key: &str| t[key].as_u64().unwrap_or_else(|| panic!("telegram.{key} in {t}"));
    assert!(n("platform_429") > 0, "{t}");
    assert!(n("frozen_secs") >= 4 * n("platform_429"), "every 429 freezes its bot for retry_after: {t}");
    assert!(n("delayed") > 0 && n("longest_wait_secs") >= 4, "{t}");
    let sent: u64 = t["per_bot"].as_object().expect("per_bot").values().filter_map(|v| v.as_u64()).sum();
    let direct_and_posts = one["total"]["sent"].as_u64().unwrap() - one["total"]["sent_via_group"].as_u64().unwrap()
        + one["group_posts"].as_u64().unwrap();
    assert_eq!(sent, direct_and_posts, "every message through a bot is counted once");
}

/// With the published limits and a small population nothing waits and nothing is refused.
#[test]
fn the_default_limits_hold_nothing_for_a_small_population() {
    let report = simulate_json(&["--users", "2000", "--days", "2", "--seed", "3"]);
    let t = &report["telegram"];
    assert_eq!(t["platform_429"], 0, "{t}");
    assert_eq!(t["chat_too_soon"], 0, "{t}");
    assert!(t["busiest_bot_second"].as_u64().unwrap() <= 30, "{t}");
}

/// A limit above Telegram's is refused by name and line, never clamped.
#[test]
fn a_scenario_cannot_raise_a_limit_above_telegrams() {
    let dir = temp_dir();
    let scenario = scenario_with(dir.path(), "per_bot_per_second = 31");
    let out = gavat(&["simulate", "--users", "100", "--days", "1", "--scenario", s(&scenario)]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tight.toml:") && err.contains("telegram.per_bot_per_second") && err.contains("31"), "{err}");
}
