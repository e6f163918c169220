//! `gavat events export`: a saved store's log comes back as the very events file of the run
//! that saved it, and the caps re-check from it.

use std::process::Command;

use super::common::{gavat, s, temp_dir};

/// `simulate --save-state --events`, then `events export`: the export is the events file
/// byte for byte (the store orders by time, then by the order of logging, which is the
/// file's own order: its times never decrease), to stdout and to `--out` alike; the caps
/// re-check with 0 violations; a window keeps exactly the events inside it; the store is
/// only read.
#[test]
fn an_export_is_the_events_file_of_the_run() -> Result<(), Box<dyn std::error::Error>> {
    let dir = temp_dir();
    let (db, events, out) = (dir.path().join("s.db"), dir.path().join("e.jsonl"), dir.path().join("x.jsonl"));
    let run = gavat(&[
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
    ]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let expected = std::fs::read_to_string(&events)?;
    let times: Vec<i64> = expected
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).map(|e| e["at_unix"].as_i64().unwrap_or(i64::MIN)))
        .collect::<Result<_, _>>()?;
    assert!(times.len() > 100, "a log worth comparing: {} events", times.len());
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "the events file is in time order");
    let store_before = std::fs::read(&db)?;

    let stdout = gavat(&["events", "export", "--store", s(&db)]);
    assert!(stdout.status.success(), "{}", String::from_utf8_lossy(&stdout.stderr));
    assert!(stdout.stdout == expected.as_bytes(), "stdout is the events file byte for byte");
    let to_file = gavat(&["events", "export", "--store", s(&db), "--out", s(&out)]);
    assert!(to_file.status.success(), "{}", String::from_utf8_lossy(&to_file.stderr));
    assert_eq!(std::fs::read_to_string(&out)?, expected);
    let said = String::from_utf8_lossy(&to_file.stderr);
    assert!(said.contains(&format!("{} events", times.len())) && said.contains(s(&out)), "{said}");
    assert_eq!(std::fs::read(&db)?, store_before, "the store is only read");
    let mut names: Vec<String> = std::fs::read_dir(dir.path())?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()?;
    names.sort();
    assert_eq!(names, ["e.jsonl", "s.db", "x.jsonl"], "no side file, no temporary file left");

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/check_caps.py");
    let check = Command::new("python3").arg(script).arg(&out).output()?;
    let verdict = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success() && verdict.contains(", 0 violations"), "{verdict}");

    // A window: from included, to excluded.
    let (from, to) = (times[times.len() / 3], times[2 * times.len() / 3]);
    let rfc = |t: i64| gavat::domain::Timestamp(t).to_rfc3339();
    let window = gavat(&["events", "export", "--store", s(&db), "--from", &rfc(from), "--to", &rfc(to)]);
    assert!(window.status.success(), "{}", String::from_utf8_lossy(&window.stderr));
    let inside: String =
        expected.lines().zip(&times).filter(|(_, t)| (from..to).contains(*t)).map(|(l, _)| format!("{l}\n")).collect();
    assert_eq!(String::from_utf8(window.stdout)?, inside);
    Ok(())
}

/// An empty window, an unreadable time, a missing store and `--out` naming the store are
/// refused with exit code 2, and the store is left alone.
#[test]
fn bad_export_arguments_exit_2() {
    let dir = temp_dir();
    let db = dir.path().join("s.db");
    let run = gavat(&["simulate", "--users", "10", "--days", "1", "--seed", "2", "--save-state", s(&db)]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let before = std::fs::read(&db).expect("the store");
    for (args, needle) in [
        (vec!["--from", "2026-01-03", "--to", "2026-01-02"], "the window is empty"),
        (vec!["--from", "yesterday"], "--from yesterday: expected an RFC 3339 time"),
        (vec!["--out", s(&db)], "is the same file as --store"),
    ] {
        let mut full = vec!["events", "export", "--store", s(&db)];
        full.extend(args);
        let out = gavat(&full);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{full:?}: {stderr}");
        assert!(stderr.contains(needle), "{full:?}: expected `{needle}` in {stderr}");
    }
    let missing = gavat(&["events", "export", "--store", s(&dir.path().join("none.db"))]);
    assert_eq!(missing.status.code(), Some(2));
    assert_eq!(std::fs::read(&db).expect("the store"), before);
}
