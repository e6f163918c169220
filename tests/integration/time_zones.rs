//! RELIABILITY.md row 25, calendar edges: a population packed into the edge zones
//! (`[population] zones = "edges"`: DST in New York and Berlin, +5:30, +5:45, +14, −12,
//! days without a local midnight in Santiago and Beirut, Apia's skipped day, Lord Howe's
//! half-hour shift, Chatham's +12:45) simulated across the 2026 DST changes, Feb 29 2028
//! and 2011-12-30, with `scripts/check_caps.py` re-checking every send by zone (Python's
//! `zoneinfo`); and the live ledgers (SQLite, and Redis with `now` from the harness's
//! scripted clock) deciding as the oracle does across a DST change.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use gavat::domain::{DAY, HOUR, Timestamp, Zone};
use gavat::ledger::RedisLedger;
use gavat::ledger::conformance::{self, Settings};

use crate::common::{gavat, s, temp_dir};
use crate::fault_report::{RowReport, RunKind};
use crate::redis_server::{Error, Prefix, shared};

/// One simulated stretch of calendar: a start just before some edges, and its length.
struct Window {
    start: &'static str,
    days: u32,
}

/// The windows: spring 2026 (New York 03-08, Berlin and Beirut 03-29, Santiago and Lord
/// Howe 04-05), Santiago's gap over midnight (09-06) and Lord Howe's spring (10-04),
/// autumn 2026 (Beirut 10-24, Berlin 10-25, New York 11-01), Feb 29 2028, Apia's skipped
/// 2011-12-30.
const WINDOWS: [Window; 5] = [
    Window { start: "2026-03-06T00:00:00Z", days: 31 },
    Window { start: "2026-09-04T00:00:00Z", days: 31 },
    Window { start: "2026-10-22T00:00:00Z", days: 12 },
    Window { start: "2028-02-27T00:00:00Z", days: 4 },
    Window { start: "2011-12-28T00:00:00Z", days: 4 },
];

/// Users per window: 82 days of windows × 12,500 users ≈ 10⁶ simulated user-days.
const USERS: u64 = 12_500;

const SEED: u64 = 25;

/// The shipped scenario with `start` and the edge zones.
fn edge_scenario(dir: &Path, start: &str) -> std::path::PathBuf {
    let shipped = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/sim/scenarios/default.toml"))
        .expect("the shipped scenario");
    let text =
        shipped.replacen("[population]\n", &format!("start = \"{start}\"\n\n[population]\nzones = \"edges\"\n"), 1);
    assert_ne!(text, shipped, "the shipped scenario has a [population] table");
    let path = dir.join(format!("edges-{}.toml", &start[..10]));
    std::fs::write(&path, text).expect("a scenario file");
    path
}

/// How the user-days of one zone over `[from, to)` meet the calendar edges, by kind.
fn edge_days(zone: Zone, from: Timestamp, to: Timestamp, kinds: &mut BTreeMap<&'static str, u64>) {
    let (first, last) = (zone.local_day(from), zone.local_day(to.plus(-1)));
    for day in first..=last {
        let (start, end) = (zone.start_of_local_day(day), zone.start_of_local_day(day + 1));
        let mut count = |kind| *kinds.entry(kind).or_default() += 1;
        count("user_days");
        count("midnight_crossings");
        match end.secs() - start.secs() {
            0 => count("skipped_days"),
            len if len == 23 * HOUR => count("dst_23h_days"),
            len if len == 25 * HOUR => count("dst_25h_days"),
            len if len != 24 * HOUR => count("dst_half_hour_days"),
            _ => {}
        }
        if end > start && zone.local_hour(start) != 0 {
            count("days_without_local_midnight");
        }
        // Days since 1970-01-01 of Feb 29 2028.
        if day == 21_243 {
            count("feb29_days");
        }
        let offset = zone.offset_at(start).0;
        if offset % 60 != 0 {
            count("half_or_quarter_hour_days");
        }
        if offset == 840 {
            count("plus14_days");
        }
        if offset == -720 {
            count("minus12_days");
        }
    }
}

/// `check_caps.py`'s verdict on an events file: (sends checked, violations).
fn check_caps(events: &Path) -> (u64, u64, String) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/check_caps.py");
    let out = Command::new("python3").arg(script).arg(events).output().expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let first = stdout.lines().next().unwrap_or_default();
    let number = |word: &str| -> u64 {
        let words: Vec<&str> = first.split_whitespace().collect();
        words.windows(2).find(|w| w[1].starts_with(word)).and_then(|w| w[0].parse().ok()).unwrap_or(u64::MAX)
    };
    let (sends, violations) = (number("sends"), number("violations"));
    assert!(
        out.status.success() || violations > 0,
        "check_caps.py failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (sends, violations, stdout)
}

/// Row 25, simulated: ≈10⁶ user-days at the calendar edges, every send re-checked by zone
/// by check_caps.py (0 violations) and by the engine's own audit; every edge kind crossed.
#[test]
fn the_edge_population_keeps_every_cap_by_local_date_and_hour() {
    let dir = temp_dir();
    let mut kinds: BTreeMap<&'static str, u64> = BTreeMap::new();
    let (mut sends, mut violations, mut audit_violations, mut edge_sends) = (0u64, 0u64, 0u64, 0u64);
    let scenario = gavat_sim::Scenario::default_scenario();
    for window in WINDOWS {
        let path = edge_scenario(dir.path(), window.start);
        let events = dir.path().join(format!("events-{}.jsonl", &window.start[..10]));
        let days = window.days.to_string();
        let users = USERS.to_string();
        let args = ["simulate", "--json", "--users", &users, "--days", &days, "--seed", "25", "--scenario", s(&path)];
        let out = gavat(&[&args[..], &["--events", s(&events)]].concat());
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("--json prints JSON");
        audit_violations += report["cap_violations"].as_u64().expect("the report counts cap violations");

        let (checked, broken, text) = check_caps(&events);
        assert_eq!(broken, 0, "{}: {text}", window.start);
        sends += checked;
        violations += broken;

        // The zones of the users, as the simulator drew them, and the edges of their days.
        let mut edges = gavat_sim::Scenario::clone(&scenario);
        edges.population.zones = gavat_sim::ZonePreset::Edges;
        let start =
            Timestamp(chrono::DateTime::parse_from_rfc3339(window.start).expect("an RFC 3339 start").timestamp());
        let end = start.plus(i64::from(window.days) * DAY);
        let population = gavat_sim::generate(&edges, USERS as usize, SEED, start.secs());
        let zone_of = |z: gavat_sim::TimeZone| match z {
            gavat_sim::TimeZone::Offset(m) => Zone::fixed(m),
            gavat_sim::TimeZone::Named(tz) => Zone::Iana(tz),
        };
        for user in &population.users {
            edge_days(zone_of(user.time_zone), start, end, &mut kinds);
        }
        // Sends that fell on a 23- or 25-hour day, a day without midnight or Feb 29.
        let text = std::fs::read_to_string(&events).expect("the events file");
        for line in text.lines() {
            let e: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
            let (Some("send"), Some(name)) = (e["kind"].as_str(), e["time_zone"].as_str()) else { continue };
            let zone: Zone = name.parse().expect("an IANA zone in the events file");
            let at = Timestamp(e["at_unix"].as_i64().expect("at_unix"));
            assert_eq!(e["utc_offset"].as_i64(), Some(i64::from(zone.offset_at(at).0)), "{line}");
            let day = zone.local_day(at);
            let length = zone.start_of_local_day(day + 1).secs() - zone.start_of_local_day(day).secs();
            if length != 24 * HOUR || zone.local_hour(zone.start_of_local_day(day)) != 0 || day == 21_243 {
                edge_sends += 1;
            }
        }
    }
    let user_days = kinds.get("user_days").copied().unwrap_or_default();
    let mut row = RowReport::new("25", SEED, RunKind::Safety);
    for (kind, count) in &kinds {
        if *kind != "user_days" {
            row.fired(kind, *count);
        }
    }
    row.figure("cap violations (check_caps.py by zone) / user-days", violations, user_days)
        .figure("cap violations (engine audit) / user-days", audit_violations, user_days)
        .measure("sends checked", sends)
        .measure("sends on edge days", edge_sends)
        .measure("user-days", user_days);
    assert!(edge_sends > 0, "no send fell on an edge day");
    row.emit();
}

/// The conformance harness's coverage from `start`, on the Redis ledger under fresh
/// prefixes of the shared Redis (the harness's clock is scripted: every reservation's `at`
/// is the sequence's `now`).
fn redis_across(url: &str, start: i64) -> Result<conformance::Coverage, Error> {
    let mut prefixes = Vec::new();
    let settings = Settings { cases: 25, start: Timestamp(start), ..Settings::default() };
    let coverage = conformance::check(
        || {
            let prefix = Prefix::new(url, "tz-dst");
            let ledger = RedisLedger::connect(url, &prefix.text).expect("connect");
            prefixes.push(prefix);
            ledger
        },
        &settings,
    )
    .map_err(|m| m.to_string())?;
    Ok(coverage)
}

/// Row 25, live: the Redis ledger (its Lua reserve script given the offset in force at
/// `now` and the zone's last change) and the SQLite ledger decide as the oracle does for
/// users in New York, Berlin, Beirut and the odd offsets, in sequences that start the day
/// before each 2026 DST change; every sequence set crosses a change.
#[test]
fn the_live_ledgers_decide_right_across_dst_changes() -> Result<(), Error> {
    let (url, _own) = shared()?;
    let starts = [1_772_841_600, 1_774_656_000, 1_792_800_000, 1_793_404_800];
    let mut row = RowReport::new("25-live", SEED, RunKind::Safety);
    let (mut redis_crossed, mut sqlite_crossed) = (0, 0);
    for start in starts {
        redis_crossed += redis_across(&url, start)?.offset_changes_crossed;
        let dir = temp_dir();
        let mut n = 0;
        let settings = Settings { cases: 25, start: Timestamp(start), ..Settings::default() };
        let coverage = conformance::check_outbox(
            || {
                n += 1;
                gavat::ledger::SqliteLedger::open(&dir.path().join(format!("ledger-{n}.db"))).expect("a ledger file")
            },
            &settings,
        )
        .map_err(|m| m.to_string())?;
        sqlite_crossed += coverage.offset_changes_crossed;
    }
    // A mismatch fails above, naming the step; reaching here means none in either ledger.
    row.fired("redis_reservations_across_an_offset_change", redis_crossed)
        .fired("sqlite_reservations_across_an_offset_change", sqlite_crossed)
        .figure("sequences unlike the oracle (Redis, SQLite)", 0, 2 * starts.len() as u64 * 25);
    row.emit();
    Ok(())
}

/// `gavat import users` takes a `time_zone` column: the zone is stored and read back (the
/// offset column still works beside it); an unknown zone is refused naming
/// `file:line:field`, and nothing is written.
#[test]
fn imported_time_zones_are_stored_and_unknown_ones_refused() -> Result<(), Box<dyn std::error::Error>> {
    use gavat::store::{SqliteStore, UserRepository};
    let dir = temp_dir();
    let db = dir.path().join("crm.db");
    let csv = dir.path().join("users.csv");
    std::fs::write(&csv, "id,utc_offset_minutes,time_zone\n1,,America/New_York\n2,330,\n3,0,Asia/Kathmandu\n")?;
    let out = gavat(&["import", "users", s(&csv), "--store", s(&db)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let zones: Vec<String> = SqliteStore::open_read_only(&db)?
        .load_users()?
        .iter()
        .map(|u| format!("{}={}", u.profile.id.0, u.profile.zone))
        .collect();
    assert_eq!(zones, ["1=America/New_York", "2=UTC+05:30", "3=Asia/Kathmandu"]);

    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "id,time_zone\n4,Europe/Berlin\n5,Europe/Atlantis\n")?;
    let out = gavat(&["import", "users", s(&bad), "--store", s(&db)]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "an unknown zone is refused");
    assert!(stderr.contains(&format!("{}:3: field time_zone: \"Europe/Atlantis\"", s(&bad))), "{stderr}");
    let ids: Vec<u64> = SqliteStore::open_read_only(&db)?.load_users()?.iter().map(|u| u.profile.id.0).collect();
    assert_eq!(ids, [1, 2, 3], "nothing written");
    Ok(())
}
