//! Every cap re-checked from the `--events` file alone, by code that shares nothing with
//! the engine: daily limit in the user's local day, cooldown, allowed hours, send-day
//! spacing, and nothing after an opt-out — for direct messages; a member's share of a group
//! post is held to the member-exposure limit (3 group posts a local day) instead, and does
//! not count toward the direct caps.

use std::collections::BTreeMap;
use std::process::Command;

use super::common::{gavat, s, temp_dir};

#[derive(Default)]
struct Seen {
    sends_by_day: BTreeMap<i64, u64>,
    group_posts_by_day: BTreeMap<i64, u64>,
    last: Option<i64>,
    last_day: Option<i64>,
    opted_out: Option<i64>,
}

/// Runs a seeded simulation with `--events`, re-checks every send (group posts included),
/// and checks that the file agrees with the report's totals.
#[test]
fn every_send_in_the_events_file_respects_its_caps() {
    let dir = temp_dir();
    let events = dir.path().join("events.jsonl");
    let out = gavat(&["simulate", "--users", "2000", "--days", "21", "--seed", "11", "--json", "--events", s(&events)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();

    let text = std::fs::read_to_string(&events).unwrap();
    let mut users: BTreeMap<u64, Seen> = BTreeMap::new();
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let mut previous_at = i64::MIN;
    let mut group_sends = 0u64;
    let mut violations = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let e: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|err| panic!("line {}: {err}", n + 1));
        let kind = e["kind"].as_str().unwrap().to_string();
        *counts.entry(kind.clone()).or_default() += 1;
        let at = e["at_unix"].as_i64().unwrap();
        assert!(at >= previous_at, "line {}: events out of time order", n + 1);
        previous_at = at;
        for field in ["at", "user", "utc_offset", "strategy", "segment"] {
            assert!(!e[field].is_null(), "line {}: missing {field}", n + 1);
        }
        let user = e["user"].as_u64().unwrap();
        let seen = users.entry(user).or_default();
        let local = at + e["utc_offset"].as_i64().unwrap() * 60;
        let day = local.div_euclid(86_400);
        let hour = local.rem_euclid(86_400) / 3_600;
        match kind.as_str() {
            "opt_out" => {
                seen.opted_out.get_or_insert(at);
            }
            "send" if !e["group"].is_null() => {
                group_sends += 1;
                assert!(e["caps"].is_null(), "line {}: a group share carries no direct caps", n + 1);
                let seen_today = seen.group_posts_by_day.entry(day).or_default();
                *seen_today += 1;
                if *seen_today > 3 {
                    violations.push(format!("line {}: user {user}: {seen_today} group posts in a local day", n + 1));
                }
            }
            "send" => {
                let caps = &e["caps"];
                let daily = caps["daily_limit"].as_u64().unwrap();
                let cooldown = caps["cooldown_secs"].as_i64().unwrap();
                let period = caps["period_days"].as_i64().unwrap();
                let hours: Vec<i64> =
                    caps["allowed_hours"].as_array().unwrap().iter().map(|h| h.as_i64().unwrap()).collect();
                let mut broken = Vec::new();
                if seen.opted_out.is_some() {
                    broken.push("after opt-out");
                }
                if !hours.contains(&hour) {
                    broken.push("quiet hours");
                }
                let today = seen.sends_by_day.entry(day).or_default();
                *today += 1;
                if *today > daily {
                    broken.push("daily limit");
                }
                if seen.last.is_some_and(|last| at - last < cooldown) {
                    broken.push("cooldown");
                }
                if seen.last_day.is_some_and(|d| d != day && day - d < period) {
                    broken.push("frequency");
                }
                if !broken.is_empty() {
                    violations.push(format!("line {}: user {user}: {broken:?}", n + 1));
                }
                seen.last = Some(at);
                seen.last_day = Some(day);
            }
            "response" | "conversion" => {}
            other => panic!("line {}: unknown kind {other}", n + 1),
        }
    }
    assert!(
        violations.is_empty(),
        "{} violations, first: {:?}",
        violations.len(),
        &violations[..violations.len().min(5)]
    );
    let total = &report["total"];
    assert_eq!(counts.get("send").copied().unwrap_or(0), total["sent"].as_u64().unwrap());
    assert_eq!(counts.get("response").copied().unwrap_or(0), total["responses"].as_u64().unwrap());
    assert_eq!(counts.get("conversion").copied().unwrap_or(0), total["conversions"].as_u64().unwrap());
    assert_eq!(counts.get("opt_out").copied().unwrap_or(0), total["opt_outs"].as_u64().unwrap());
    assert!(counts["send"] > 1_000, "too few sends to mean anything: {counts:?}");
    assert!(group_sends > 0, "no group post reached anyone: the group path went unchecked");
    assert_eq!(group_sends, total["sent_via_group"].as_u64().unwrap());

    // The shipped script agrees.
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/check_caps.py");
    let out = Command::new("python3").arg(script).arg(&events).output().expect("python3 runs the checker");
    assert!(
        out.status.success(),
        "check_caps.py: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 violations"));
}
