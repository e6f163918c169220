//! Bad input: what the reports and management commands say about edge cases.

use std::collections::BTreeMap;
use std::path::Path;

use crate::common::{gavat, s, simulate_json, temp_dir};

/// The small store every test here reads: 200 users, 3 days, seed 1, with its events file.
fn small_store(dir: &Path) -> (String, String) {
    let db = dir.join("crm.db");
    let events = dir.join("events.jsonl");
    let out = gavat(&[
        "simulate",
        "--users",
        "200",
        "--days",
        "3",
        "--seed",
        "1",
        "--save-state",
        s(&db),
        "--events",
        s(&events),
        "--log-dir",
        s(&dir.join("logs")),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    (s(&db).to_string(), s(&events).to_string())
}

fn json(args: &[&str]) -> serde_json::Value {
    let out = gavat(args);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn text(args: &[&str]) -> String {
    let out = gavat(args);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// `--since` spans that overflow or reach past a century, negative spans, and times after
/// the store's end are one-line usage errors naming the flag and its value, not a report
/// with a negative or future header.
#[test]
fn since_out_of_range_is_a_usage_error() {
    let dir = temp_dir();
    let (db, _) = small_store(dir.path());
    for since in
        ["99999999999d", "9223372036854775807h", "36526d", "-5d", "2030-01-01", "2026-01-04T00:00:01Z", "1900-01-01"]
    {
        let out = gavat(&["segments", "report", "--since", since, "--store", &db]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "--since {since}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "--since {since}: {stderr}");
        assert!(stderr.contains(&format!("--since {since}")), "{stderr}");
        assert!(out.stdout.is_empty(), "--since {since} printed a report");
    }
    // The bounds themselves are fine: a century back, and the store's end.
    for since in ["36525d", "0h", "2026-01-04T00:00:00Z", "2026-01-02"] {
        let report = json(&["segments", "report", "--since", since, "--store", &db, "--json"]);
        assert!(report["since"].as_i64().unwrap() <= report["until"].as_i64().unwrap(), "{since}");
    }
}

/// A segment with no sends in the window says "no sends" (null rates in JSON) instead of
/// `0.00% [0.00, 0.00]`, and the report ends with a total row equal to the sum of the
/// segments.
#[test]
fn segments_report_says_no_sends_and_has_a_total() {
    let dir = temp_dir();
    let (db, _) = small_store(dir.path());
    // From the store's end on, nothing was sent.
    let empty = text(&["segments", "report", "--since", "0d", "--store", &db]);
    assert!(!empty.contains("0.00% [0.00, 0.00]"), "{empty}");
    let rows: Vec<&str> = empty.lines().skip(2).filter(|l| !l.starts_with('-')).collect();
    assert_eq!(rows.len(), 9, "eight segments and the total: {empty}");
    for row in &rows {
        assert_eq!(row.matches("no sends").count(), 3, "{row}");
    }
    assert!(rows[8].starts_with("TOTAL"), "{empty}");

    let report = json(&["segments", "report", "--store", &db, "--json"]);
    let segments = report["segments"].as_array().unwrap();
    assert_eq!(segments.len(), 8);
    let total = &report["total"];
    assert_eq!(total["segment"], "TOTAL");
    for field in ["users", "sent", "responses", "conversions", "opt_outs"] {
        let sum: u64 = segments.iter().map(|r| r[field].as_u64().unwrap()).sum();
        assert_eq!(total[field].as_u64(), Some(sum), "{field}");
    }
    assert_eq!(total["users"].as_u64(), Some(200));
    for r in segments.iter().chain([total]) {
        let sent = r["sent"].as_u64().unwrap();
        assert_eq!(r["response_rate"].is_null(), sent == 0, "{r}");
        assert_eq!(r["engagement"].is_null(), sent == 0, "{r}");
    }
    let text = text(&["segments", "report", "--store", &db]);
    assert!(text.lines().last().unwrap().starts_with("TOTAL"), "{text}");
}

/// `users analyze` keeps the synthetic history apart from the run's log (the log's sends
/// and replies of the user are the "during the run" counts), and names the rule that binds
/// the next send: the one whose own earliest time is the latest — the frequency for users
/// messaged a day or two ago, quiet hours for the others at the store's midnight end.
#[test]
fn users_analyze_separates_history_and_names_the_binding_rule() {
    let dir = temp_dir();
    let (db, events) = small_store(dir.path());
    let mut sent: BTreeMap<u64, u64> = BTreeMap::new();
    let mut answered: BTreeMap<u64, u64> = BTreeMap::new();
    for line in std::fs::read_to_string(&events).unwrap().lines() {
        let e: serde_json::Value = serde_json::from_str(line).unwrap();
        let user = e["user"].as_u64().unwrap();
        match e["kind"].as_str().unwrap() {
            "send" => *sent.entry(user).or_default() += 1,
            "response" => *answered.entry(user).or_default() += 1,
            _ => {}
        }
    }
    let mut binding: BTreeMap<String, u64> = BTreeMap::new();
    for user in 0..60u64 {
        let a = json(&["users", "analyze", &user.to_string(), "--store", &db, "--json"]);
        let during = &a["during_the_run"];
        assert_eq!(during["messages_received"].as_u64(), Some(sent.get(&user).copied().unwrap_or(0)), "user {user}");
        assert_eq!(during["responses"].as_u64(), Some(answered.get(&user).copied().unwrap_or(0)), "user {user}");
        assert!(a["before_the_run"]["messages_received"].as_u64().is_some());
        let Some(rule) = a["not_earlier_because"].as_str() else { continue };
        *binding.entry(rule.to_string()).or_default() += 1;
        let own = |r: &serde_json::Value| r["allows_from"].as_i64().unwrap_or(i64::MAX);
        let rules = a["rules"].as_array().unwrap();
        let bound = rules.iter().find(|r| r["rule"] == rule).map(own).unwrap();
        assert!(rules.iter().all(|r| own(r) <= bound), "user {user}: {rule} is not the latest: {rules:?}");
        assert!(a["may_be_messaged_from"].as_i64().unwrap_or(i64::MAX) >= bound, "user {user}");
    }
    assert!(binding.get("frequency").copied().unwrap_or(0) > 0, "{binding:?}");
    assert!(binding.get("quiet_hours").copied().unwrap_or(0) > 0, "{binding:?}");

    let out = text(&["users", "analyze", "17", "--store", &db]);
    assert!(out.contains("before the run (synthetic history):"), "{out}");
    assert!(out.contains("during the run (the log):"), "{out}");
    assert!(out.contains("each rule alone allows:") || out.contains("may be sent now"), "{out}");
}

/// `strategy show --json` names each object's segment and says since when it is in force
/// (`null`: configured, since the start of the run) instead of the run's end on every row;
/// the text says "start of run"; `--toml` of a store without a learner is not `+learned`.
#[test]
fn strategy_show_names_segments_and_a_truthful_since() {
    let dir = temp_dir();
    let (db, _) = small_store(dir.path());
    let shown = json(&["strategy", "show", "--store", &db, "--json"]);
    let names: Vec<&str> = shown.as_array().unwrap().iter().map(|o| o["segment"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["HOT_LEAD", "WARM_LEAD", "COLD_LEAD", "ENGAGED", "BOT_LOVER", "NIGHT_OWL", "NEW_USER", "PREMIUM_POTENTIAL"]
    );
    for o in shown.as_array().unwrap() {
        assert_eq!((o["version"].as_i64(), o["since"].is_null(), o["learned"].as_bool()), (Some(0), true, Some(false)));
    }
    let table = text(&["strategy", "show", "--store", &db]);
    assert_eq!(table.matches("start of run").count(), 8, "{table}");
    assert!(!table.contains("2026-01-04"), "the run's end is not when a strategy came into force: {table}");
    let toml = text(&["strategy", "show", "--store", &db, "--toml"]);
    assert!(toml.contains("name = \"defaults-v1\"\n"), "{toml}");
}

/// With the learner, a changed strategy is in force since its change (the change's time,
/// not the run's end), an unchanged one since the start of the run, and `--toml` is
/// `+learned` because something changed.
#[test]
fn strategy_show_dates_learned_changes() {
    let dir = temp_dir();
    let db = dir.path().join("crm.db");
    let args = ["simulate", "--users", "1500", "--days", "6", "--seed", "9", "--learn", "--no-baseline"];
    let out = gavat(&[&args[..], &["--save-state", s(&db), "--log-dir", s(&dir.path().join("logs"))]].concat());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let history = json(&["strategy", "history", "--store", s(&db), "--json"]);
    let at: BTreeMap<i64, i64> =
        history.as_array().unwrap().iter().map(|c| (c["id"].as_i64().unwrap(), c["at"].as_i64().unwrap())).collect();
    let shown = json(&["strategy", "show", "--store", s(&db), "--json"]);
    let mut changed = 0;
    for o in shown.as_array().unwrap() {
        match o["version"].as_i64().unwrap() {
            0 => assert!(o["since"].is_null(), "{o}"),
            v => {
                changed += 1;
                assert_eq!(o["since"].as_i64(), Some(at[&v]), "{o}");
            }
        }
    }
    assert!(changed > 0 && changed < 8, "some but not all segments changed in six days: {shown}");
    let toml = text(&["strategy", "show", "--store", s(&db), "--toml"]);
    assert!(toml.contains("name = \"defaults-v1+learned\"\n"), "{toml}");
}

/// The report header names the strategy, scenario and rules files with a hash of their
/// content (text and JSON), and says "built-in defaults" when none is given.
#[test]
fn the_report_header_names_the_input_files() {
    let dir = temp_dir();
    let file = dir.path().join("mine.toml");
    std::fs::write(&file, include_str!("../../../config/strategies.toml")).unwrap();
    let logs = dir.path().join("logs");
    let base = ["--users", "50", "--days", "1", "--seed", "3", "--log-dir", s(&logs)];
    let built_in = simulate_json(&base);
    assert_eq!(built_in["sources"]["strategy"], serde_json::json!({"kind": "built_in"}));
    let given = simulate_json(&[&base[..], &["--strategy", s(&file)]].concat());
    let source = &given["sources"]["strategy"];
    assert_eq!((source["kind"].as_str(), source["path"].as_str()), (Some("file"), Some(s(&file))));
    let hash = source["sha256"].as_str().unwrap();
    assert_eq!(hash.len(), 12);
    assert!(hash.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(given["sources"]["scenario"]["kind"], "built_in");
    // Another content, another hash.
    std::fs::write(&file, include_str!("../../../config/strategies.toml").replace("priority = 10", "priority = 11"))
        .unwrap();
    let edited = simulate_json(&[&base[..], &["--strategy", s(&file)]].concat());
    assert_ne!(edited["sources"]["strategy"]["sha256"].as_str(), Some(hash));

    let header = text(&[&["simulate"][..], &base[..], &["--strategy", s(&file)]].concat());
    let files = header.lines().nth(1).unwrap();
    assert!(files.contains(&format!("strategies {} (sha256 ", s(&file))), "{files}");
    assert!(files.contains("scenario built-in defaults"), "{files}");
    let plain = text(&[&["simulate"][..], &base[..]].concat());
    assert!(plain.lines().nth(1).unwrap().contains("strategies built-in defaults"), "{plain}");
    assert!(plain.contains("via group"), "the group column says what it counts: {plain}");
}

/// The README's strategy example: HOT_LEAD's optimal hours cut to the evening (one line of
/// `config/strategies.toml`) on 10000 users, seed 7, changes what the README says it does —
/// HOT_LEAD's response and conversion rates per message rise by more than half, and more
/// users are still hot leads at the end — and the header names the file.
#[test]
fn the_readme_strategy_example_makes_a_difference() {
    let dir = temp_dir();
    let shipped = include_str!("../../../config/strategies.toml");
    let line = "optimal_hours = \"10-12,18-20\"\n";
    assert_eq!(shipped.matches(line).count(), 1, "the README's sed changes HOT_LEAD's line only");
    let file = dir.path().join("hot_evening.toml");
    std::fs::write(&file, shipped.replace(line, "optimal_hours = \"18-20\"\n")).unwrap();
    let logs = dir.path().join("logs");
    let base = ["--users", "10000", "--seed", "7", "--log-dir", s(&logs)];
    let before = simulate_json(&base);
    let after = simulate_json(&[&base[..], &["--strategy", s(&file)]].concat());
    let hot = |r: &serde_json::Value| r["segments"].as_array().unwrap()[0].clone();
    let (b, a) = (hot(&before), hot(&after));
    assert_eq!((b["segment"].as_str(), a["segment"].as_str()), (Some("HOT_LEAD"), Some("HOT_LEAD")));
    let rate = |r: &serde_json::Value, f: &str| r[f].as_f64().unwrap();
    assert!(rate(&a, "response_rate") > 1.5 * rate(&b, "response_rate"), "{b}\n{a}");
    assert!(rate(&a, "conversion_rate") > 1.5 * rate(&b, "conversion_rate"), "{b}\n{a}");
    assert!(a["users"].as_u64() > b["users"].as_u64(), "{b}\n{a}");
    assert_eq!(before["cap_violations"], 0);
    assert_eq!(after["cap_violations"], 0);
    assert_eq!(before["sources"]["strategy"]["kind"], "built_in");
    assert_eq!(after["sources"]["strategy"]["path"].as_str(), Some(s(&file)));
}
