//! `gavat run` end to end on SQLite: the defaults in an empty directory, a rehearsal on a
//! simulated store, a graceful stop by SIGTERM, and a `kill -9` followed by a restart that
//! delivers no message id twice and keeps every cap.

use std::collections::HashSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::common::{gavat, s, temp_dir};

/// `gavat run` in `dir` with `args`, output captured; the API token and LLM variables are
/// cleared so the developer's shell changes nothing.
pub fn spawn_run(dir: &Path, args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_gavat"))
        .arg("run")
        .args(args)
        .current_dir(dir)
        .env("GAVAT_LOG", "error")
        .env("GAVAT_LOG_DIR", dir.join("logs"))
        .env_remove("GAVAT_API_TOKEN")
        .env_remove("OPENAI_API_KEY")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gavat runs")
}

/// Waits for `child` and returns (success, stdout, stderr).
pub fn finish(child: Child) -> (bool, String, String) {
    let out = child.wait_with_output().expect("gavat ends");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The outbox's messages as JSON.
pub fn outbox(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("outbox line {l:?}: {e}"))).collect()
}

/// Polls until the outbox holds at least `n` messages (at most `limit`).
pub fn wait_for_outbox(path: &Path, n: usize, limit: Duration) -> usize {
    let step = Duration::from_millis(100);
    let mut waited = Duration::ZERO;
    loop {
        let count = outbox(path).len();
        if count >= n || waited >= limit {
            return count;
        }
        std::thread::sleep(step);
        waited += step;
    }
}

/// A store made by a short simulation: users with histories and cap counters.
pub fn demo_store(dir: &Path, users: &str) -> std::path::PathBuf {
    let store = dir.join("demo.db");
    let out = gavat(&["simulate", "--users", users, "--days", "2", "--seed", "7", "--save-state", s(&store)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    store
}

/// With no flags in an empty directory: a new `gavat.db`, the dry-run transport, and a hint
/// that says how users get in.
#[test]
fn the_defaults_in_an_empty_directory_explain_themselves() {
    let dir = temp_dir();
    let (ok, _, err) = finish(spawn_run(dir.path(), &["--time-scale", "3600", "--for", "1h", "--no-http"]));
    assert!(ok, "{err}");
    assert!(err.contains("store sqlite:gavat.db — 0 users"), "{err}");
    assert!(err.contains("transport dry-run"), "{err}");
    assert!(err.contains("hint: the store holds no users yet"), "{err}");
    assert!(err.contains("gavat import users"), "{err}");
    let analyze = gavat(&["delivery", "status", "--store", s(&dir.path().join("gavat.db"))]);
    assert!(analyze.status.success(), "the new store is a gavat store: {}", String::from_utf8_lossy(&analyze.stderr));
}

/// A rehearsal on a simulated store: messages go to the outbox and standard output as JSON
/// lines with unique ids, and the run's own audit finds no cap violation.
#[test]
fn a_rehearsal_on_a_simulated_store_sends_within_caps() {
    let dir = temp_dir();
    let store = demo_store(dir.path(), "200");
    let (ok, stdout, err) = finish(spawn_run(
        dir.path(),
        &["--store", &format!("sqlite:{}", s(&store)), "--time-scale", "7200", "--for", "1d", "--no-http"],
    ));
    assert!(ok, "{err}");
    assert!(err.contains("200 users"), "{err}");
    assert!(err.contains("first send due"), "{err}");
    assert!(err.contains("cap violations found by the audit: 0"), "{err}");
    let sent = outbox(&dir.path().join("outbox.jsonl"));
    assert!(!sent.is_empty(), "a day of 200 users sends something: {err}");
    assert_eq!(stdout.lines().count(), sent.len(), "every message is printed once");
    let ids: HashSet<&str> = sent.iter().map(|m| m["id"].as_str().expect("string id")).collect();
    assert_eq!(ids.len(), sent.len(), "message ids are unique");
    assert!(err.contains(&format!("gavat run: {} sent", sent.len())), "{err}");
}

/// SIGTERM: nothing more is planned, the store is flushed, a summary is printed, exit 0.
#[test]
fn sigterm_stops_gracefully_with_a_summary() {
    let dir = temp_dir();
    let store = demo_store(dir.path(), "100");
    let child = spawn_run(dir.path(), &["--store", s(&store), "--time-scale", "3600", "--no-http", "--quiet"]);
    let seen = wait_for_outbox(&dir.path().join("outbox.jsonl"), 1, Duration::from_secs(30));
    assert!(seen > 0, "the run sent something before it was stopped");
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill runs");
    assert!(status.success());
    let (ok, _, err) = finish(child);
    assert!(ok, "a graceful stop exits 0: {err}");
    assert!(err.contains("gavat run: stopping"), "{err}");
    assert!(err.contains("gavat run: stopped at"), "{err}");
    assert!(err.contains("cap violations found by the audit: 0"), "{err}");
}

/// `kill -9` mid-run, then a restart on the same store and outbox: no message id is
/// delivered twice, and every user's sends across both runs keep the caps.
#[test]
fn kill_9_then_restart_sends_no_id_twice() {
    let dir = temp_dir();
    let store = demo_store(dir.path(), "200");
    let outbox_path = dir.path().join("outbox.jsonl");
    let args = ["--store", s(&store), "--time-scale", "3600", "--for", "3d", "--no-http", "--quiet"];
    let mut child = spawn_run(dir.path(), &args);
    let before = wait_for_outbox(&outbox_path, 40, Duration::from_secs(60));
    assert!(before >= 40, "the first run sent {before} before the kill");
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    let killed_at = outbox(&outbox_path).len();

    let (ok, _, err) = finish(spawn_run(dir.path(), &["--store", s(&store), "--time-scale", "7200", "--for", "1d", "--no-http", "--quiet"]));
    assert!(ok, "the restart runs: {err}");
    let sent = outbox(&outbox_path);
    assert!(sent.len() > killed_at, "the restart sent more");
    let ids: HashSet<&str> = sent.iter().map(|m| m["id"].as_str().expect("string id")).collect();
    assert_eq!(ids.len(), sent.len(), "no message id delivered twice across the kill");

    // Every send of both runs, from the store's own log, against its caps.
    let events = dir.path().join("events.jsonl");
    let out = gavat(&["events", "export", "--store", s(&store), "--out", s(&events)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let check = Command::new("python3")
        .args([concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/check_caps.py"), s(&events)])
        .output()
        .expect("python3 runs");
    let report = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success() && report.contains(" 0 violations"), "{report}{}", String::from_utf8_lossy(&check.stderr));
}
