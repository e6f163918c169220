//! Bad input: output paths and stores: nothing lost, nothing half-written, read-only stores readable.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use crate::common::{gavat, gavat_with_env, s, temp_dir};

/// Saves a small seeded simulation into `path`.
fn save_state(path: &Path) {
    let out = gavat(&["simulate", "--users", "300", "--days", "3", "--seed", "1", "--save-state", s(path)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// The file's bytes and modification time.
fn snapshot(path: &Path) -> (Vec<u8>, SystemTime) {
    (std::fs::read(path).unwrap(), std::fs::metadata(path).unwrap().modified().unwrap())
}

/// The names in a directory, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `gavat` as a child process, for tests that must signal it or close its stdout.
fn spawn(args: &[&str], stdout: Stdio) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_gavat"))
        .args(args)
        .env("GAVAT_LOG", "error")
        .env("GAVAT_LOG_DIR", concat!(env!("CARGO_TARGET_TMPDIR"), "/logs"))
        .env_remove("OPENAI_API_KEY")
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .expect("the gavat binary starts")
}

/// An output that is a directory is refused before any work with exit code 2, and the
/// existing store named by --save-state is left byte for byte as it was (it used to be
/// emptied by the failing run).
#[test]
fn a_directory_output_is_refused_and_the_store_is_kept() {
    let dir = temp_dir();
    let store = dir.path().join("crm.db");
    save_state(&store);
    let before = snapshot(&store);
    let names = listing(dir.path());
    let out = gavat(&[
        "simulate",
        "--users",
        "300",
        "--days",
        "3",
        "--seed",
        "2",
        "--save-state",
        s(&store),
        "--events",
        s(dir.path()),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--events") && stderr(&out).contains("is a directory"), "{}", stderr(&out));
    assert_eq!(snapshot(&store), before);
    assert_eq!(listing(dir.path()), names, "no temporary file is left behind");

    let out = gavat(&["simulate", "--users", "10", "--days", "1", "--save-state", s(dir.path())]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let out = gavat(&["simulate", "--users", "10", "--days", "1", "--seed", "1", "--log-dir", s(&file)]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--log-dir"), "{}", stderr(&out));
}

/// SIGTERM in the middle of a run leaves the existing --save-state store untouched and
/// readable; the next successful run removes the killed run's temporary files.
#[test]
fn a_killed_run_leaves_the_store_untouched() {
    let dir = temp_dir();
    let store = dir.path().join("crm.db");
    save_state(&store);
    let before = snapshot(&store);
    let mut child = spawn(
        &["simulate", "--users", "300000", "--days", "30", "--seed", "1", "--json", "--save-state", s(&store)],
        Stdio::null(),
    );
    std::thread::sleep(Duration::from_millis(1_500));
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(!exit.success(), "the run was killed, not finished");
    assert_eq!(snapshot(&store), before);
    assert!(
        listing(dir.path()).iter().any(|n| n.starts_with(".crm.db.gavat-tmp-")),
        "the killed run's temporary file is recognisable: {:?}",
        listing(dir.path())
    );
    let report = gavat(&["segments", "report", "--store", s(&store), "--json"]);
    assert!(report.status.success(), "{}", stderr(&report));

    save_state(&store);
    let names = listing(dir.path());
    assert_eq!(names, vec!["crm.db".to_string()], "temporary files of the killed run are gone");
}

/// An output that is the same file as an input or as the other output — however spelt —
/// is refused with exit code 2, and the input is not overwritten.
#[test]
fn an_output_that_is_an_input_or_the_other_output_is_refused() {
    let dir = temp_dir();
    let scenario = dir.path().join("scenario.toml");
    std::fs::write(&scenario, include_str!("../../../sim/scenarios/default.toml")).unwrap();
    let spelt_otherwise = dir.path().join(".").join("scenario.toml");
    let out = gavat(&[
        "simulate",
        "--users",
        "10",
        "--days",
        "1",
        "--seed",
        "1",
        "--scenario",
        s(&scenario),
        "--events",
        s(&spelt_otherwise),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--events") && stderr(&out).contains("--scenario"), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&scenario).unwrap(), include_str!("../../../sim/scenarios/default.toml"));

    let both = dir.path().join("x");
    let out = gavat(&[
        "simulate",
        "--users",
        "10",
        "--days",
        "1",
        "--seed",
        "1",
        "--save-state",
        s(&both),
        "--events",
        s(&both),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("same file"), "{}", stderr(&out));
    assert!(!both.exists());
}

/// --save-state refuses to replace a file that is not a gavat store (a mistyped flag must
/// not destroy someone's notes).
#[test]
fn save_state_refuses_to_replace_a_file_that_is_not_a_store() {
    let dir = temp_dir();
    let notes = dir.path().join("notes.txt");
    std::fs::write(&notes, "important\n").unwrap();
    let out = gavat(&["simulate", "--users", "10", "--days", "1", "--seed", "1", "--save-state", s(&notes)]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("not a gavat store"), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&notes).unwrap(), "important\n");
}

/// Every read command leaves the store's bytes and modification time as they were and
/// creates no -wal, -shm or -journal file beside it (so a store the user may only read can
/// be read).
#[test]
fn read_commands_never_write_the_store() {
    let dir = temp_dir();
    let store = dir.path().join("crm.db");
    save_state(&store);
    let before = snapshot(&store);
    let names = listing(dir.path());
    assert_eq!(names, vec!["crm.db".to_string()], "a saved store is one file");
    let st = s(&store);
    for args in [
        vec!["users", "analyze", "1", "--store", st],
        vec!["segments", "report", "--store", st],
        vec!["segments", "list", "HOT_LEAD", "--store", st],
        vec!["delivery", "status", "--store", st],
        vec!["strategy", "history", "--store", st],
        vec!["strategy", "show", "--store", st],
    ] {
        let out = gavat(&args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        assert_eq!(snapshot(&store), before, "{args:?} changed the store");
        assert_eq!(listing(dir.path()), names, "{args:?} left files beside the store");
    }
}

/// A 0-byte file, a text file and a SQLite database without gavat's schema are "not a gavat
/// store" (exit 2) for read and write commands alike, and are left untouched.
#[test]
fn a_file_that_is_not_a_gavat_store_is_refused() {
    let dir = temp_dir();
    let empty = dir.path().join("empty.db");
    std::fs::write(&empty, "").unwrap();
    let text = dir.path().join("text.db");
    std::fs::write(&text, "just some text that is long enough to hold a header, and then some more of it. ").unwrap();
    let foreign = dir.path().join("foreign.db");
    rusqlite::Connection::open(&foreign).unwrap().execute_batch("CREATE TABLE t (x INTEGER);").unwrap();
    for file in [&empty, &text, &foreign] {
        let before = snapshot(file);
        let logs = dir.path().join("logs");
        for args in
            [vec!["segments", "report", "--store", s(file)], vec!["segment", "--store", s(file), "--log-dir", s(&logs)]]
        {
            let out = gavat(&args);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
            assert!(stderr(&out).contains("not a gavat store"), "{args:?}: {}", stderr(&out));
            assert_eq!(snapshot(file), before, "{args:?} touched the file");
        }
    }
}

/// A population that cannot fit in this machine's memory is refused up front with exit
/// code 2, naming the flag, the estimate and how many users would fit (it used to abort
/// with a failed allocation and a backtrace).
#[test]
fn a_population_that_does_not_fit_in_memory_is_refused() {
    let available_kb: u64 = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemAvailable:"))
                .map(|v| v.trim().trim_end_matches("kB").trim().to_string())
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if available_kb == 0 || available_kb > 80_000_000 {
        eprintln!("skipped: this machine has room for 50M users, or does not say how much it has");
        return;
    }
    let out = gavat(&["simulate", "--users", "50000000", "--days", "1", "--seed", "1"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("--users 50000000 needs about") && err.contains("users fit"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

/// A reader that closes stdout early (`gavat … | head -1`) ends the command quietly with
/// exit code 0: no "Broken pipe" on stderr, for the report of `simulate` and a read command.
#[test]
fn a_closed_stdout_ends_quietly() {
    let dir = temp_dir();
    let store = dir.path().join("crm.db");
    save_state(&store);
    for args in [
        vec!["simulate", "--users", "2000", "--days", "3", "--seed", "1"],
        vec!["segments", "report", "--store", s(&store)],
    ] {
        let mut child = spawn(&args, Stdio::piped());
        drop(child.stdout.take());
        let mut err = String::new();
        child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(0), "{args:?}: {err}");
        assert!(!err.contains("Broken pipe") && !err.contains("error") && !err.contains("panicked"), "{args:?}: {err}");
    }
}

/// `gavat segment` writes its decision log under GAVAT_LOG_DIR and says where on stderr;
/// `simulate` says where its run logs and outputs went.
#[test]
fn logs_go_where_gavat_log_dir_says_and_commands_say_so() {
    let dir = temp_dir();
    let store = dir.path().join("crm.db");
    let logs: PathBuf = dir.path().join("elsewhere");
    let out = gavat_with_env(
        &["simulate", "--users", "300", "--days", "3", "--seed", "1", "--save-state", s(&store)],
        &[("GAVAT_LOG_DIR", s(&logs))],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("run log: ") && stderr(&out).contains("crm_analytics_"), "{}", stderr(&out));
    assert!(stderr(&out).contains("state saved: "), "{}", stderr(&out));
    let out = gavat_with_env(&["segment", "--store", s(&store)], &[("GAVAT_LOG_DIR", s(&logs))]);
    assert!(out.status.success(), "{}", stderr(&out));
    let written = listing(&logs);
    assert!(written.iter().any(|n| n.starts_with("segmentation_")), "{written:?}");
    assert!(stderr(&out).contains(s(&logs)), "{}", stderr(&out));
}
