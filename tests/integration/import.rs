//! `gavat import users`: CRM exports (CSV, JSON lines) into a store, all or nothing — users
//! show up in the operators' commands at once, a re-import keeps every cap counter and
//! opt-out, and a bad file is named line by line and changes no byte of the store.

use std::path::{Path, PathBuf};

use gavat::domain::UserId;
use gavat::store::{SqliteStore, UserRepository, UserState};

use super::common::{gavat, s, temp_dir};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("a temporary file");
    path
}

/// Runs gavat, failing with its stderr unless it succeeds; returns stderr.
fn ok(args: &[&str]) -> String {
    let out = gavat(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "gavat {args:?}: {stderr}");
    stderr
}

/// `users analyze ID --json`.
fn analyze(store: &Path, id: u64) -> serde_json::Value {
    let out = gavat(&["users", "analyze", &id.to_string(), "--store", s(store), "--json"]);
    assert!(out.status.success(), "analyze {id}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("--json prints JSON")
}

/// A time as `--json` prints it (seconds since the epoch), in RFC 3339.
fn time(v: &serde_json::Value) -> String {
    gavat::domain::Timestamp(v.as_i64().expect("a time")).to_rfc3339()
}

/// Every user of a store, with profile and counters.
fn users(store: &Path) -> Vec<UserState> {
    SqliteStore::open_read_only(store).and_then(|s| s.load_users()).expect("a readable store")
}

/// A store saved by a small simulation with seed 4: 50 users with counters, one opted out.
fn simulated(dir: &Path) -> PathBuf {
    let db = dir.join("sim.db");
    ok(&["simulate", "--users", "50", "--days", "2", "--seed", "4", "--save-state", s(&db)]);
    db
}

/// The files in `dir`, sorted: no `-wal`, `-shm` or temporary file may be left behind.
fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("the directory")
        .map(|e| e.expect("an entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A CSV import creates the store; a JSON-lines import adds to it; `users analyze` and
/// `segments report` show the users with their profile and rule segments at once, and
/// nobody has been messaged.
#[test]
fn imported_users_are_analyzed_at_once() -> TestResult {
    let dir = temp_dir();
    let db = dir.path().join("gavat.db");
    let hours = (0..24).map(|h| if (2..22).contains(&h) { "0" } else { "5" }).collect::<Vec<_>>().join(" ");
    let csv = write(
        dir.path(),
        "users.csv",
        &format!(
            "id,utc_offset_minutes,bots_followed,joined_at,purchases,sessions_by_local_hour,last_active,weekly_sessions,messages_received,responses,recent_responses\n\
             7,180,4,2025-11-01T09:00:00+03:00,2,{hours},2025-12-30T23:10:00Z,6,12,7,nyyyynyy\n\
             8,-300,,,,,,,,,\n"
        ),
    );
    let said = ok(&["import", "users", s(&csv), "--store", s(&db)]);
    assert!(said.contains("(created)") && said.contains("2 new, 0 updated"), "{said}");

    let a = analyze(&db, 7);
    assert_eq!(a["utc_offset_minutes"], 180);
    assert_eq!((a["bots_followed"].as_u64(), a["purchases"].as_u64()), (Some(4), Some(2)));
    assert_eq!(time(&a["joined_at"]), "2025-11-01T06:00:00Z");
    assert_eq!((a["sessions"].as_u64(), time(&a["last_active"]).as_str()), (Some(20), "2025-12-30T23:10:00Z"));
    assert_eq!(a["before_the_run"]["messages_received"], 12);
    assert_eq!(a["segmented_by"], "rules");
    let held: Vec<&str> = a["segments"].as_array().unwrap().iter().filter_map(|s| s["segment"].as_str()).collect();
    for segment in ["BOT_LOVER", "NIGHT_OWL", "PREMIUM_POTENTIAL", "HOT_LEAD"] {
        assert!(held.contains(&segment), "{segment} in {held:?}");
    }
    assert!(a["governing"].is_string());
    assert_eq!((a["opted_out"].as_bool(), a["last_sent"].is_null()), (Some(false), true));

    let jsonl = write(
        dir.path(),
        "more.jsonl",
        r#"{"id": 9, "utc_offset_minutes": 60, "joined_at": "2025-12-01T00:00:00Z", "purchases": null}
"#,
    );
    let said = ok(&["import", "users", s(&jsonl), "--store", s(&db)]);
    assert!(said.contains("1 new, 0 updated") && !said.contains("(created)"), "{said}");
    let b = analyze(&db, 9);
    assert_eq!((b["utc_offset_minutes"].as_i64(), b["purchases"].as_u64()), (Some(60), Some(0)));
    assert_eq!(b["bots_followed"], 1, "the default");
    assert_eq!(time(&b["last_active"]), "2025-12-01T00:00:00Z", "last_active defaults to joined_at");

    let out = gavat(&["segments", "report", "--store", s(&db), "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(report["total"]["users"], 3, "every imported user is governed by a segment");
    assert_eq!(report["total"]["sent"], 0);
    assert_eq!(files(dir.path()), ["gavat.db", "more.jsonl", "users.csv"]);
    Ok(())
}

/// Re-importing users of a simulated store replaces the profile fields given, keeps the
/// ones left out, and keeps every cap counter — an opted-out user stays opted out; a new
/// user starts with none; the log is untouched.
#[test]
fn a_re_import_keeps_caps_and_opt_outs() -> TestResult {
    let dir = temp_dir();
    let db = simulated(dir.path());
    let before = users(&db);
    let opted = before.iter().find(|u| u.caps.opted_out).ok_or("seed 4 leaves one user opted out")?;
    let counted = before.iter().find(|u| !u.caps.opted_out && u.caps.last_sent.is_some()).ok_or("a user messaged")?;
    let events_before = gavat(&["events", "export", "--store", s(&db)]).stdout;

    let line = |u: &UserState| {
        format!(
            r#"{{"id": {}, "utc_offset_minutes": {}, "purchases": 9, "bots_followed": 5}}"#,
            u.profile.id.0,
            u.profile.zone.offset_at(gavat::domain::Timestamp(0)).0
        )
    };
    let file = write(
        dir.path(),
        "crm.ndjson",
        &format!("{}\n{}\n{{\"id\": 1000, \"utc_offset_minutes\": 0}}\n", line(opted), line(counted)),
    );
    let said = ok(&["import", "users", s(&file), "--store", s(&db)]);
    assert!(said.contains("1 new, 2 updated (1 of them opted out, and staying so)"), "{said}");

    let after = users(&db);
    assert_eq!(after.len(), before.len() + 1);
    for old in [opted, counted] {
        let new = after.iter().find(|u| u.profile.id == old.profile.id).unwrap();
        assert_eq!(new.caps, old.caps, "user {}: every cap counter kept", old.profile.id);
        assert_eq!((new.profile.purchases, new.profile.bots_followed), (9, 5), "the fields given");
        assert_eq!(new.profile.joined_at, old.profile.joined_at, "a field left out is kept");
        assert_eq!(new.profile.activity, old.profile.activity);
        assert_eq!(new.profile.responses, old.profile.responses);
    }
    let fresh = after.iter().find(|u| u.profile.id == UserId(1000)).unwrap();
    assert_eq!(fresh.caps, Default::default(), "a new user has no counters");
    let a = analyze(&db, opted.profile.id.0);
    assert_eq!((a["opted_out"].as_bool(), a["purchases"].as_u64()), (Some(true), Some(9)));
    assert_eq!(a["may_be_messaged_from"], serde_json::Value::Null, "an opted-out user is never messaged");
    let unchanged = after.iter().filter(|u| u.profile.id != UserId(1000)).zip(&before);
    assert!(
        unchanged.filter(|(_, b)| ![opted.profile.id, counted.profile.id].contains(&b.profile.id)).all(|(a, b)| a == b),
        "users not in the file are untouched"
    );
    assert_eq!(gavat(&["events", "export", "--store", s(&db)]).stdout, events_before, "the log is untouched");
    Ok(())
}

/// Runs an import that must fail on `file`: exit code 2, nothing written to the store
/// (byte for byte, no side file); returns stderr.
fn refused(dir: &Path, db: &Path, file: &Path) -> String {
    let before = std::fs::read(db).expect("the store");
    let listing = files(dir);
    let out = gavat(&["import", "users", s(file), "--store", s(db)]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("nothing written") || stderr.contains("no users"), "{stderr}");
    assert_eq!(std::fs::read(db).expect("the store"), before, "the store's bytes are unchanged");
    assert_eq!(files(dir), listing, "no side file");
    stderr
}

/// Every bad line of a CSV file is named as FILE:LINE: field NAME: problem (value as
/// written) — a bad number, an offset out of range, an unknown column, a missing required
/// field, a repeated id, a value that contradicts the stored user — and nothing is written.
#[test]
fn each_bad_csv_line_is_named_and_nothing_is_written() {
    let dir = temp_dir();
    let db = simulated(dir.path());
    let file = write(
        dir.path(),
        "bad.csv",
        "id,utc_offset_minutes,purchases,responses,email\n\
         100,60,two,,a@b.c\n\
         101,900,0,,\n\
         ,60,0,,\n\
         102,60,0,,\n\
         102,0,1,,\n\
         0,0,0,100000,\n",
    );
    let stderr = refused(dir.path(), &db, &file);
    let f = s(&file);
    for expected in [
        format!("{f}:1: field email: unknown column (known: id, utc_offset_minutes,"),
        format!("{f}:2: field purchases: not a whole number (two)"),
        format!("{f}:3: field utc_offset_minutes: must be between -720 and 840 (900)"),
        format!("{f}:4: field id: missing (required)"),
        format!("{f}:6: field id: user 102 is also on line 5 (102)"),
        format!("{f}:7: field responses: more than messages_received"),
    ] {
        assert!(stderr.contains(&expected), "expected `{expected}` in:\n{stderr}");
    }
    assert!(stderr.contains("(stored) (100000)"), "the stored side is named: {stderr}");
    assert!(stderr.contains("6 problem(s) on 6 line(s); nothing written"), "{stderr}");
}

/// The same for JSON lines: malformed JSON, an unknown field, a bad number, an offset out
/// of range, a missing required field and a repeated id, each named by line; nothing is
/// written; more than 50 problems are listed up to 50 and counted.
#[test]
fn each_bad_json_line_is_named_and_nothing_is_written() {
    let dir = temp_dir();
    let db = simulated(dir.path());
    let file = write(
        dir.path(),
        "bad.jsonl",
        r#"{"id": 200, "utc_offset_minutes": 0
{"id": 201, "utc_offset_minutes": 0, "favourite_colour": "red"}
{"id": 202, "utc_offset_minutes": 0, "purchases": 1.5}
{"id": 203, "utc_offset_minutes": -780}
{"id": 204}
{"id": 205, "utc_offset_minutes": 0}
{"id": 205, "utc_offset_minutes": 30}
{"id": 206, "utc_offset_minutes": 0, "joined_at": "last tuesday"}
"#,
    );
    let stderr = refused(dir.path(), &db, &file);
    let f = s(&file);
    for expected in [
        format!("{f}:1: not a valid JSON object: EOF while parsing an object"),
        format!("{f}:2: field favourite_colour: unknown field (known: id,"),
        format!("{f}:3: field purchases: not a whole number (1.5)"),
        format!("{f}:4: field utc_offset_minutes: must be between -720 and 840 (-780)"),
        format!("{f}:5: field utc_offset_minutes: missing (required)"),
        format!("{f}:7: field id: user 205 is also on line 6 (205)"),
        format!("{f}:8: field joined_at: not an RFC 3339 time"),
    ] {
        assert!(stderr.contains(&expected), "expected `{expected}` in:\n{stderr}");
    }

    let many: String = (0..60).map(|i| format!("{{\"id\": {i}, \"utc_offset_minutes\": 9999}}\n")).collect();
    let stderr = refused(dir.path(), &db, &write(dir.path(), "many.jsonl", &many));
    assert_eq!(stderr.matches("field utc_offset_minutes").count(), 50, "{stderr}");
    assert!(stderr.contains("… and 10 more problem(s)") && stderr.contains("60 problem(s) on 60 line(s)"), "{stderr}");

    let stderr = refused(dir.path(), &db, &write(dir.path(), "empty.jsonl", ""));
    assert!(stderr.contains("an empty file: no users to import"), "{stderr}");
    let stderr = refused(dir.path(), &db, &write(dir.path(), "header.csv", "id,utc_offset_minutes\n"));
    assert!(stderr.contains("only a header: no users to import"), "{stderr}");
}

/// `--check` says what an import would do and writes nothing — not into an existing
/// store, and no store where none exists; a file that is not a gavat store is refused
/// untouched, and so is a file whose extension names no format.
#[test]
fn check_writes_nothing_and_other_files_are_refused() -> TestResult {
    let dir = temp_dir();
    let db = simulated(dir.path());
    let file = write(dir.path(), "u.csv", "id,utc_offset_minutes\n3,0\n4000,120\n");
    let before = std::fs::read(&db)?;
    let out = gavat(&["import", "users", s(&file), "--store", s(&db), "--check", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("would add 1 new and update 1; nothing written"), "{said}");
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!((summary["new"].as_u64(), summary["updated"].as_u64()), (Some(1), Some(1)));
    assert_eq!(summary["check"], true);
    assert_eq!(std::fs::read(&db)?, before);

    let fresh = dir.path().join("new.db");
    let said = ok(&["import", "users", s(&file), "--store", s(&fresh), "--check"]);
    assert!(said.contains("would add 2 new and update 0"), "{said}");
    assert!(!fresh.exists(), "--check creates no store");

    let text = write(dir.path(), "notes.db", "not a database at all, just some notes that happen to end in .db");
    let out = gavat(&["import", "users", s(&file), "--store", s(&text)]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("not a gavat store"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&text)?, "not a database at all, just some notes that happen to end in .db");

    let odd = write(dir.path(), "users.txt", "id,utc_offset_minutes\n1,0\n");
    let out = gavat(&["import", "users", s(&odd), "--store", s(&db)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("name it .csv, .jsonl or .ndjson"));
    assert_eq!(std::fs::read(&db)?, before);
    Ok(())
}
