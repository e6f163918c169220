//! Group posts are held to the member-exposure limit, not to members' direct caps: in a
//! simulation (many more posts than when every member's direct caps had to fit, no member
//! seeing more than 3 group posts a local day — counted from the event log, not by the
//! engine) and in a live `gavat run` on a store with groups imported by `gavat import
//! groups`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use super::common::{gavat, s, simulate_json, temp_dir};
use super::live_run::{demo_store, finish, outbox, spawn_run};

/// Every line of an events file (or export) as JSON.
fn events(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).expect("the events file");
    text.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect()
}

/// Group posts seen per (member, local day), from the sends with a group.
fn exposure_by_member_day(events: &[serde_json::Value]) -> BTreeMap<(u64, i64), u32> {
    let mut seen = BTreeMap::new();
    for e in events.iter().filter(|e| e["kind"] == "send" && !e["group"].is_null()) {
        let local = e["at_unix"].as_i64().expect("at_unix") + e["utc_offset"].as_i64().expect("offset") * 60;
        *seen.entry((e["user"].as_u64().expect("user"), local.div_euclid(86_400))).or_default() += 1;
    }
    seen
}

/// scripts/check_caps.py on `events`: direct caps for direct sends, the exposure limit for
/// group shares.
fn check_caps(events: &Path) {
    let check = Command::new("python3")
        .args([concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/check_caps.py"), s(events)])
        .output()
        .expect("python3 runs");
    let report = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success() && report.contains(" 0 violations"), "{report}");
}

/// The default 10k-user, 30-day simulation sends hundreds of group posts (33 when each
/// member's direct caps had to fit), and no member sees more than 3 in a local day.
#[test]
fn simulation_posts_to_groups_within_the_exposure_limit() {
    let dir = temp_dir();
    let path = dir.path().join("events.jsonl");
    let report = simulate_json(&["--users", "10000", "--days", "30", "--seed", "7", "--events", s(&path)]);
    let posts = report["group_posts"].as_u64().expect("group_posts");
    assert!(posts >= 10 * 33, "{posts} group posts");
    assert_eq!(report["cap_violations"], 0);
    let log = events(&path);
    let distinct_posts: BTreeSet<(u64, i64)> = log
        .iter()
        .filter(|e| e["kind"] == "send" && !e["group"].is_null())
        .map(|e| (e["group"].as_u64().expect("group"), e["at_unix"].as_i64().expect("at")))
        .collect();
    assert_eq!(distinct_posts.len() as u64, posts, "every post reached its members in the log");
    let exposure = exposure_by_member_day(&log);
    let most = exposure.values().copied().max().unwrap_or(0);
    assert!(most <= 3, "a member saw {most} group posts in one local day");
    assert_eq!(
        u64::from(most),
        report["max_group_posts_seen_per_day"].as_u64().expect("reported"),
        "the report agrees"
    );
    check_caps(&path);
}

/// `gavat import groups` then `gavat run` on a simulated store: group posts appear in the
/// outbox, at most 20 a minute and 2 a group local day; no member sees more than 3 a local
/// day; direct sends keep the direct caps, and a group post does not hold back a member's
/// direct message (some member got one within their direct cooldown after a group post).
#[test]
fn a_live_run_posts_to_imported_groups_within_the_limits() {
    let dir = temp_dir();
    let store = demo_store(dir.path(), "300");
    let groups = dir.path().join("groups.csv");
    // Overlapping groups: users 0–119 are in two groups each, so the exposure limit binds.
    let members = |range: std::ops::Range<u64>| range.map(|u| u.to_string()).collect::<Vec<_>>().join(";");
    std::fs::write(
        &groups,
        format!(
            "id,title,utc_offset,members\n1,\"Deals, Istanbul\",180,{}\n2,Berlin,60,{}\n3,Everyone,0,{}\n",
            members(0..60),
            members(60..120),
            members(0..120)
        ),
    )
    .expect("groups file");
    let import = gavat(&["import", "groups", s(&groups), "--store", s(&store)]);
    assert!(import.status.success(), "{}", String::from_utf8_lossy(&import.stderr));
    assert!(String::from_utf8_lossy(&import.stdout).contains("3 groups, 240 memberships written"));

    let (ok, _, err) = finish(spawn_run(
        dir.path(),
        &["--store", &format!("sqlite:{}", s(&store)), "--time-scale", "7200", "--for", "3d", "--no-http", "--quiet"],
    ));
    assert!(ok, "{err}");
    assert!(err.contains("cap violations found by the audit: 0"), "{err}");
    let sent = outbox(&dir.path().join("outbox.jsonl"));
    let posts: Vec<(u64, i64)> = sent
        .iter()
        .filter_map(|m| m["to"]["group"].as_u64().map(|g| (g, m["at_unix"].as_i64().expect("at_unix"))))
        .collect();
    assert!(posts.len() >= 6, "every group posted over three days: {posts:?}");
    let mut by_minute: BTreeMap<i64, u32> = BTreeMap::new();
    for (_, at) in &posts {
        *by_minute.entry(at.div_euclid(60)).or_default() += 1;
    }
    assert!(by_minute.values().all(|n| *n <= 20), "Telegram's 20 a minute: {by_minute:?}");

    let export = dir.path().join("events.jsonl");
    let out = gavat(&["events", "export", "--out", s(&export), "--store", s(&store)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let log = events(&export);
    let exposure = exposure_by_member_day(&log);
    assert!(!exposure.is_empty(), "members saw group posts");
    assert!(exposure.values().all(|n| *n <= 3), "the exposure limit: {exposure:?}");
    check_caps(&export);

    // A direct message within the member's direct cooldown after a group post they saw:
    // the group post did not count against the direct caps.
    let mut last_share: BTreeMap<u64, i64> = BTreeMap::new();
    let mut direct_soon_after_share = false;
    for e in log.iter().filter(|e| e["kind"] == "send") {
        let (user, at) = (e["user"].as_u64().expect("user"), e["at_unix"].as_i64().expect("at"));
        if e["group"].is_null() {
            let cooldown = e["caps"]["cooldown_secs"].as_i64().expect("a direct send's caps");
            direct_soon_after_share |= last_share.get(&user).is_some_and(|s| at - s < cooldown);
        } else {
            last_share.insert(user, at);
        }
    }
    assert!(direct_soon_after_share, "no direct send followed a group post within the cooldown");
}
