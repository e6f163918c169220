//! An engine started on a store resumes every user's cap state: a simulation saved with
//! `--save-state` and continued with `--resume` keeps every cooldown, daily limit, send-day
//! spacing and opt-out across the boundary, checked on the joined `--events` files by
//! `scripts/check_caps.py`; and a continuation that contradicts its store is refused.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use gavat::clock::VirtualClock;
use gavat::domain::{DAY, HOUR, Timestamp, UserProfile, Zone};
use gavat::engine::{Engine, run_on_virtual_runtime};
use gavat::policy::CapState;
use gavat::store::{EventLog, LogKind, MemoryStore, SqliteStore, UserRepository, UserState};
use gavat::transport::MemoryTransport;

use super::common::{gavat, s, temp_dir};

const START: Timestamp = Timestamp(1_767_225_600);
/// Where the first run of the CLI tests ends and the continuation starts: 10 days in.
const BOUNDARY: i64 = 1_767_225_600 + 10 * DAY;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// A warm lead (every 2 days, 2 a day, 12 h cooldown, 9–21 local) in UTC.
fn warm_lead() -> UserProfile {
    super::common::warm_lead(0, START)
}

/// The sends to one warm lead over three days, starting from `caps`.
fn sends_from(caps: CapState) -> Result<Vec<Timestamp>, Box<dyn std::error::Error>> {
    let transport = Arc::new(MemoryTransport::new());
    let store = Arc::new(MemoryStore::keeping_everything());
    let engine = Engine::builder()
        .clock(Arc::new(VirtualClock::new(START)))
        .transport(transport)
        .store(store.clone())
        .users_with_state(vec![UserState { profile: warm_lead(), caps }])
        .horizon(START.plus(3 * DAY))
        .seed(5)
        .build()?;
    let result = run_on_virtual_runtime(|| engine.run())??;
    assert_eq!(result.scheduler.cap_violations, 0);
    Ok(store.log().iter().filter(|e| e.kind == LogKind::Send).map(|e| e.at).collect())
}

/// The engine starts each user from the cap state it is given: two sends an hour before
/// the start (the daily limit reached, the 12 h cooldown and the 2-day spacing running)
/// hold the first send back to two local days later, where a fresh user is sent to on the
/// first day; an opted-out user is sent nothing.
#[test]
fn the_engine_resumes_from_the_given_cap_state() -> TestResult {
    let fresh = sends_from(CapState::default())?;
    assert!(fresh.first().is_some_and(|t| t.secs() < START.secs() + DAY), "fresh: {fresh:?}");
    let last = START.plus(-HOUR);
    let day = last.local_day(Zone::UTC);
    let resumed =
        sends_from(CapState { opted_out: false, last_sent: Some(last), last_send_day: day, sent_on_last_day: 2 })?;
    let first = resumed.first().ok_or("no send at all after the resume")?;
    assert!(first.local_day(Zone::UTC) >= day + 2, "first send {first:?} within 2 days of the last, {last:?}");
    assert!(first.secs() - last.secs() >= 12 * HOUR);
    assert!(sends_from(CapState { opted_out: true, ..CapState::default() })?.is_empty());
    Ok(())
}

/// Runs `gavat` with `args`, failing with its stderr unless it succeeds.
fn gavat_ok(args: &[&str]) -> TestResult {
    let out = gavat(args);
    if !out.status.success() {
        return Err(format!("gavat {args:?}: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(())
}

/// `scripts/check_caps.py` on `events`: the number of violations it reports.
fn check_caps(events: &Path) -> Result<u64, Box<dyn std::error::Error>> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/check_caps.py");
    let out = Command::new("python3").arg(script).arg(events).output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let n = text
        .lines()
        .next()
        .and_then(|l| l.split(", ").nth(1))
        .and_then(|l| l.strip_suffix(" violations"))
        .ok_or_else(|| format!("check_caps.py said: {text}{}", String::from_utf8_lossy(&out.stderr)))?;
    Ok(n.parse()?)
}

/// The JSON lines of `path`.
fn events(path: &Path) -> Result<Vec<serde_json::Value>, Box<dyn std::error::Error>> {
    let text = std::fs::read_to_string(path)?;
    text.lines().map(|l| Ok(serde_json::from_str(l)?)).collect()
}

/// Writes `parts` one after the other into `path`, each line's time moved by its shift.
fn join(path: &Path, parts: &[(&Path, i64)]) -> TestResult {
    let mut out = String::new();
    for (part, shift) in parts {
        for mut e in events(part)? {
            let at = e["at_unix"].as_i64().ok_or("no at_unix")?;
            e["at_unix"] = serde_json::json!(at + shift);
            out.push_str(&serde_json::to_string(&e)?);
            out.push('\n');
        }
    }
    Ok(std::fs::write(path, out)?)
}

/// Ten days saved, then ten more resumed from the store (replacing it): the joined events
/// break no cap, hundreds of users have a cooldown running across the boundary and every
/// one of them waits it out, nobody who opted out is sent to again, and the store holds
/// both runs' log and every user. The same second run started fresh at the boundary —
/// without the saved caps — breaks caps on the joined file: the check can fail.
#[test]
fn a_resumed_simulation_keeps_every_cap_across_the_boundary() -> TestResult {
    let dir = temp_dir();
    let (state, a, b) = (dir.path().join("s.db"), dir.path().join("a.jsonl"), dir.path().join("b.jsonl"));
    let common = ["simulate", "--json", "--days", "10"];
    gavat_ok(
        &[&common[..], &["--users", "2000", "--seed", "3", "--save-state", s(&state), "--events", s(&a)]].concat(),
    )?;
    gavat_ok(&[&common[..], &["--resume", s(&state), "--events", s(&b), "--save-state", s(&state)]].concat())?;

    let (first, second) = (events(&a)?, events(&b)?);
    assert!(first.iter().all(|e| e["at_unix"].as_i64() < Some(BOUNDARY)));
    assert!(second.iter().all(|e| e["at_unix"].as_i64() >= Some(BOUNDARY)), "the continuation starts at the end");
    let joined = dir.path().join("joined.jsonl");
    join(&joined, &[(&a, 0), (&b, 0)])?;
    assert_eq!(check_caps(&joined)?, 0, "caps broken across the boundary");

    // Users whose last send before the boundary still binds the first one after it.
    let sends = |events: &[serde_json::Value]| -> Vec<(u64, i64, i64)> {
        events
            .iter()
            .filter(|e| e["kind"] == "send")
            .filter_map(|e| Some((e["user"].as_u64()?, e["at_unix"].as_i64()?, e["caps"]["cooldown_secs"].as_i64()?)))
            .collect()
    };
    let last_before: BTreeMap<u64, i64> = sends(&first).into_iter().map(|(u, at, _)| (u, at)).collect();
    let mut first_after: BTreeMap<u64, (i64, i64)> = BTreeMap::new();
    for (u, at, cooldown) in sends(&second) {
        first_after.entry(u).or_insert((at, cooldown));
    }
    let spanning: Vec<(u64, i64, i64, i64)> = first_after
        .iter()
        .filter_map(|(u, &(at, cooldown))| last_before.get(u).map(|&last| (*u, last, at, cooldown)))
        .filter(|&(_, last, _, cooldown)| last + cooldown > BOUNDARY)
        .collect();
    assert!(spanning.len() >= 50, "only {} cooldowns span the boundary: the test shows little", spanning.len());
    for (user, last, at, cooldown) in &spanning {
        assert!(at - last >= *cooldown, "user {user}: sent at {at}, {}s after {last}, cooldown {cooldown}", at - last);
    }

    // Opted out stays out.
    let opted_out: BTreeSet<u64> =
        first.iter().filter(|e| e["kind"] == "opt_out").filter_map(|e| e["user"].as_u64()).collect();
    assert!(!opted_out.is_empty(), "nobody opted out in the first run: the check shows nothing");
    let resent: Vec<u64> = sends(&second).into_iter().map(|(u, ..)| u).filter(|u| opted_out.contains(u)).collect();
    assert!(resent.is_empty(), "sent to users who had opted out: {resent:?}");

    // The store carried on: both runs' log, read back, and every user with their caps.
    let store = SqliteStore::open_read_only(&state)?;
    let logged = store.events_between(START, Timestamp(BOUNDARY + 10 * DAY)).count();
    assert_eq!(logged, first.len() + second.len());
    let after = store.events_between(Timestamp(BOUNDARY), Timestamp(i64::MAX)).count();
    assert_eq!(after, second.len());
    let users = store.load_users()?;
    assert_eq!(users.len(), 2000);
    assert!(opted_out.iter().all(|u| users[*u as usize].caps.opted_out));

    // Without the saved caps: the second run started fresh, moved to the boundary.
    let fresh = dir.path().join("fresh.jsonl");
    gavat_ok(&[&common[..], &["--users", "2000", "--seed", "3", "--events", s(&fresh)]].concat())?;
    let forgetful = dir.path().join("forgetful.jsonl");
    join(&forgetful, &[(&a, 0), (&fresh, 10 * DAY)])?;
    assert!(check_caps(&forgetful)? > 0, "a run that forgets the caps should break some across the boundary");
    Ok(())
}

/// A continuation whose flags contradict its store, or that names no saved simulation, is
/// refused before anything runs: exit 2, one line naming the flag; the store is untouched.
#[test]
fn a_contradicting_continuation_is_refused() -> TestResult {
    let dir = temp_dir();
    let state = dir.path().join("s.db");
    gavat_ok(&["simulate", "--users", "50", "--days", "1", "--seed", "3", "--save-state", s(&state)])?;
    let before = std::fs::read(&state)?;
    let scenario = dir.path().join("other.toml");
    let shipped = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/sim/scenarios/default.toml"))?;
    std::fs::write(&scenario, shipped.replacen("name = \"", "name = \"other-", 1))?;
    let not_a_store = dir.path().join("notes.txt");
    std::fs::write(&not_a_store, "x".repeat(200))?;
    let missing = dir.path().join("missing.db");
    let cases: [(&[&str], &str); 6] = [
        (&["--users", "60"], "--users 60 contradicts --resume"),
        (&["--seed", "4"], "--seed 4 contradicts --resume"),
        (&["--scenario", s(&scenario)], "--scenario"),
        (&["--events", s(&state)], "--events"),
        (&["--resume", s(&not_a_store)], "not a gavat store"),
        (&["--resume", s(&missing)], "--resume"),
    ];
    for (extra, says) in cases {
        let mut args = vec!["simulate", "--days", "1"];
        if !extra.contains(&"--resume") {
            args.extend(["--resume", s(&state)]);
        }
        args.extend_from_slice(extra);
        let out = gavat(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
    }
    // The same values as the store's are accepted.
    gavat_ok(&["simulate", "--resume", s(&state), "--users", "50", "--seed", "3", "--days", "1"])?;
    assert_eq!(std::fs::read(&state)?, before, "no case wrote to the store");
    Ok(())
}
