//! The management commands against a state saved from a small seeded simulation: each
//! prints what the store holds, checked against the events file of the same run.

use std::collections::BTreeMap;

use super::common::{gavat, s, temp_dir};

fn json(args: &[&str]) -> serde_json::Value {
    let out = gavat(args);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

/// `simulate --save-state`, then every command, checked against `--events` of the same run.
#[test]
fn management_commands_read_the_saved_state() {
    let dir = temp_dir();
    let db = dir.path().join("crm.db");
    let events = dir.path().join("events.jsonl");
    let report = json(&[
        "simulate",
        "--users",
        "800",
        "--days",
        "10",
        "--seed",
        "21",
        "--json",
        "--save-state",
        s(&db),
        "--events",
        s(&events),
    ]);
    let store = s(&db);

    // segments report: per-segment sends and responses equal the events file's.
    let mut sent: BTreeMap<String, u64> = BTreeMap::new();
    let mut responses: BTreeMap<String, u64> = BTreeMap::new();
    let mut by_user: BTreeMap<u64, u64> = BTreeMap::new();
    let mut history: BTreeMap<u64, Vec<(i64, String)>> = BTreeMap::new();
    for line in std::fs::read_to_string(&events).unwrap().lines() {
        let e: serde_json::Value = serde_json::from_str(line).unwrap();
        let seg = e["segment"].as_str().unwrap().to_string();
        let who = e["user"].as_u64().unwrap();
        history.entry(who).or_default().push((e["at_unix"].as_i64().unwrap(), e["kind"].as_str().unwrap().to_string()));
        match e["kind"].as_str().unwrap() {
            "send" => {
                *sent.entry(seg).or_default() += 1;
                *by_user.entry(e["user"].as_u64().unwrap()).or_default() += 1;
            }
            "response" => *responses.entry(seg).or_default() += 1,
            _ => {}
        }
    }
    let report_json = json(&["segments", "report", "--store", store, "--json"]);
    let mut users = 0;
    for row in report_json["segments"].as_array().unwrap() {
        let seg = row["segment"].as_str().unwrap();
        assert_eq!(row["sent"].as_u64().unwrap(), sent.get(seg).copied().unwrap_or(0), "{seg}");
        let n = sent.get(seg).copied().unwrap_or(0) as f64;
        if n > 0.0 {
            let rate = responses.get(seg).copied().unwrap_or(0) as f64 / n;
            assert!((row["response_rate"]["estimate"].as_f64().unwrap() - rate).abs() < 1e-12);
            assert!(row["response_rate"]["low"].as_f64().unwrap() <= rate);
        }
        users += row["users"].as_u64().unwrap();
    }
    assert_eq!(users, 800, "every user is governed by one segment");
    assert_eq!(report_json["total"]["users"].as_u64(), Some(800));
    assert_eq!(report_json["total"]["sent"].as_u64(), Some(sent.values().sum()));

    // users analyze: the most-messaged user's recent sends and counters.
    let (&busiest, _) = by_user.iter().max_by_key(|(_, n)| **n).unwrap();
    let analysis = json(&["users", "analyze", &busiest.to_string(), "--store", store, "--json"]);
    assert_eq!(analysis["user"], busiest);
    assert!(!analysis["segments"].as_array().unwrap().is_empty());
    assert!(!analysis["segments"][0]["reasons"].as_array().unwrap().is_empty());
    let recent: Vec<(i64, String)> = analysis["recent"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["at"].as_i64().unwrap(), e["kind"].as_str().unwrap().to_string()))
        .collect();
    let mut expected: Vec<(i64, String)> = history[&busiest].iter().rev().take(10).cloned().collect();
    let mut got = recent.clone();
    expected.sort();
    got.sort();
    assert_eq!(got, expected, "the last ten log entries of user {busiest}");
    assert!(analysis["caps"]["daily_limit"].as_u64().is_some());

    // segments list: sorted by confidence, above the threshold.
    let list =
        json(&["segments", "list", "COLD_LEAD", "--limit", "5", "--min-confidence", "0.5", "--store", store, "--json"]);
    let confidences: Vec<f64> = list.as_array().unwrap().iter().map(|m| m["confidence"].as_f64().unwrap()).collect();
    assert!(!confidences.is_empty() && confidences.len() <= 5);
    assert!(confidences.windows(2).all(|w| w[0] >= w[1]) && confidences.iter().all(|c| *c >= 0.5));

    // delivery status: opted-out users and suppressions match the run's report.
    let status = json(&["delivery", "status", "--store", store, "--json"]);
    assert_eq!(status["opted_out_users"], report["opted_out_users"]);
    let suppressed: u64 =
        status["suppressed_by_reason"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
    let expected: u64 = report["total"]["suppressed"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(suppressed, expected);
    assert!(status["queue_depth"].as_u64().unwrap() + report["opted_out_users"].as_u64().unwrap() <= 800);

    // segment: the same rules on the same state change nothing; stricter rules change users.
    let logs = dir.path().join("logs");
    let same = json(&["segment", "--store", store, "--log-dir", s(&logs), "--json"]);
    assert_eq!((same["users"].as_u64(), same["changed"].as_u64()), (Some(800), Some(0)));
    let rules = dir.path().join("rules.toml");
    std::fs::write(&rules, include_str!("../../config/segmentation.toml").replace("min_bots = 3", "min_bots = 2"))
        .unwrap();
    let changed = json(&["segment", "--store", store, "--rules", s(&rules), "--log-dir", s(&logs), "--json"]);
    let bot = changed["segments"].as_array().unwrap().iter().find(|r| r["segment"] == "BOT_LOVER").unwrap();
    assert!(bot["gained"].as_u64().unwrap() > 0);
    assert_eq!(changed["changed"].as_u64(), Some(bot["gained"].as_u64().unwrap()));
    let log = std::fs::read_dir(&logs).unwrap().next().unwrap().unwrap().path();
    assert!(log.file_name().unwrap().to_str().unwrap().starts_with("segmentation_"));
    assert!(std::fs::read_to_string(&log).unwrap().contains("BOT_LOVER="));
}

/// Unknown users and segments, and a missing store, are one-line errors with exit code 2.
#[test]
fn unknown_things_exit_2() {
    let dir = temp_dir();
    let db = dir.path().join("crm.db");
    assert!(
        gavat(&["simulate", "--users", "50", "--days", "2", "--seed", "1", "--save-state", s(&db)]).status.success()
    );
    for args in [
        vec!["users", "analyze", "4242", "--store", s(&db)],
        vec!["segments", "list", "VIP", "--store", s(&db)],
        vec!["segments", "report", "--since", "last tuesday", "--store", s(&db)],
        vec!["delivery", "status", "--store", "/nonexistent/crm.db"],
    ] {
        let out = gavat(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
    }
}
