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

    let (ok, _, err) = finish(spawn_run(
        dir.path(),
        &["--store", s(&store), "--time-scale", "7200", "--for", "1d", "--no-http", "--quiet"],
    ));
    assert!(ok, "the restart runs: {err}");
    let sent = outbox(&outbox_path);
    assert!(sent.len() > killed_at, "the restart sent more");
    let ids: HashSet<&str> = sent.iter().map(|m| m["id"].as_str().expect("string id")).collect();
    assert_eq!(ids.len(), sent.len(), "no message id delivered twice across the kill");

    // Every send of both runs, from the store's own log, against its caps.
    export_and_check_caps(dir.path(), &["--store", s(&store)], OptOuts::NotExpected);
}

/// The API's write token in the live tests.
const TOKEN: &str = "live-test-token-0123456789";

/// `gavat run` with the API on a free loopback port: the child, the API's address, and a
/// thread collecting the rest of standard error.
pub fn spawn_run_with_api(dir: &Path, args: &[&str]) -> (Child, std::net::SocketAddr, std::thread::JoinHandle<String>) {
    spawn_run_with_token(dir, args, TOKEN)
}

/// [`spawn_run_with_api`] with `token` as the API's write token.
pub fn spawn_run_with_token(
    dir: &Path,
    args: &[&str],
    token: &str,
) -> (Child, std::net::SocketAddr, std::thread::JoinHandle<String>) {
    use std::io::BufRead as _;
    let mut command = Command::new(env!("CARGO_BIN_EXE_gavat"));
    command
        .arg("run")
        .args(args)
        .args(["--listen", "127.0.0.1:0"])
        .current_dir(dir)
        .env("GAVAT_LOG", "error")
        .env("GAVAT_LOG_DIR", dir.join("logs"))
        .env("GAVAT_API_TOKEN", token)
        .env_remove("OPENAI_API_KEY")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("gavat runs");
    let mut lines = std::io::BufReader::new(child.stderr.take().expect("stderr piped")).lines();
    let mut seen = String::new();
    let addr = loop {
        let line = lines.next().unwrap_or_else(|| panic!("gavat run ended before its API listened: {seen}"));
        let line = line.expect("stderr is text");
        seen.push_str(&line);
        seen.push('\n');
        if let Some(rest) = line.split("HTTP API on http://").nth(1) {
            break rest.split_whitespace().next().expect("an address").parse().expect("a socket address");
        }
    };
    let rest = std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            seen.push_str(&line);
            seen.push('\n');
        }
        seen
    });
    (child, addr, rest)
}

/// One HTTP/1.1 request on a fresh connection; returns the status and the body.
pub fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    key: Option<&str>,
) -> (u16, String) {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(addr).expect("the API accepts");
    stream.set_read_timeout(Some(Duration::from_secs(30))).expect("a timeout");
    let body = body.unwrap_or("");
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(key) = key {
        request.push_str(&format!("Idempotency-Key: {key}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).expect("the request is written");
    let mut reply = String::new();
    stream.read_to_string(&mut reply).expect("a reply");
    let status = reply.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = reply.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

/// Three days at 3600× on 200 users with a responder answering through the API: replies for
/// some users, opt-outs for others. The store's own log, exported, keeps every cap and
/// every opt-out final, and /metrics counts what happened.
#[test]
fn a_live_run_with_a_responder_keeps_every_cap_and_opt_out() {
    let dir = temp_dir();
    let store = demo_store(dir.path(), "200");
    let outbox_path = dir.path().join("outbox.jsonl");
    let (mut child, addr, rest) = spawn_run_with_api(
        dir.path(),
        &["--store", &format!("sqlite:{}", s(&store)), "--time-scale", "3600", "--for", "3d", "--quiet"],
    );
    let (healthy, _) = http(addr, "GET", "/healthz", None, None);
    assert_eq!(healthy, 200);
    let (opted_out, replies) = respond_until_exit(&mut child, addr, &outbox_path);
    let status = child.wait().expect("gavat ends");
    let err = rest.join().expect("stderr collected");
    assert!(status.success(), "{err}");
    assert!(err.contains("cap violations found by the audit: 0"), "{err}");
    assert!(opted_out > 0 && replies > 0, "the responder answered: {err}");
    assert!(!err.contains(" 0 responses"), "replies reached the engine: {err}");
    export_and_check_caps(dir.path(), &["--store", s(&store)], OptOuts::Expected);
}

/// Whether a log must hold opt-outs (a responder sent some).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptOuts {
    /// At least one opt-out must be in the log.
    Expected,
    /// Nobody was asked to opt out.
    NotExpected,
}

/// Exports the store's log (`store_args`: `--store …` and any prefix flag) and runs
/// `scripts/check_caps.py` on it: 0 violations (opt-outs final included).
pub fn export_and_check_caps(dir: &Path, store_args: &[&str], opt_outs: OptOuts) {
    let events = dir.join("events.jsonl");
    let mut args = vec!["events", "export", "--out", s(&events)];
    args.extend_from_slice(store_args);
    let out = gavat(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    if opt_outs == OptOuts::Expected {
        let text = std::fs::read_to_string(&events).expect("the export");
        let exported_opt_outs = text.lines().filter(|l| l.contains("\"kind\":\"opt_out\"")).count();
        assert!(exported_opt_outs > 0, "opt-outs are in the store's log");
    }
    let check = Command::new("python3")
        .args([concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/check_caps.py"), s(&events)])
        .output()
        .expect("python3 runs");
    let report = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success() && report.contains(" 0 violations"),
        "{report}{}",
        String::from_utf8_lossy(&check.stderr)
    );
}

/// Answers every new message in the outbox through the API until `child` exits: an opt-out
/// from every tenth user (once), a reply from every third. Returns (opt-outs, replies).
pub fn respond_until_exit(child: &mut Child, addr: std::net::SocketAddr, outbox_path: &Path) -> (usize, usize) {
    let mut answered = 0;
    let mut opted_out = HashSet::new();
    let mut replies = 0;
    loop {
        let done = child.try_wait().expect("the child can be polled").is_some();
        let sent = outbox(outbox_path);
        for message in &sent[answered..] {
            if done {
                break;
            }
            let user = message["to"]["user"].as_u64().expect("a direct message");
            let id = message["id"].as_str().expect("an id");
            let kind = if user % 10 == 0 && !opted_out.contains(&user) {
                opted_out.insert(user);
                "opt_out"
            } else if user % 3 == 0 {
                replies += 1;
                "response"
            } else {
                continue;
            };
            let body = format!("{{\"user\": {user}, \"kind\": \"{kind}\"}}");
            let (status, reply) = http(addr, "POST", "/v1/events", Some(&body), Some(id));
            assert!(matches!(status, 200 | 202 | 503 | 0), "POST {body}: {status} {reply}");
        }
        answered = sent.len();
        if done {
            return (opted_out.len(), replies);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The API of a running engine: no token → 401, a bad field → 400 naming it, an oversize
/// body → 413, the same Idempotency-Key twice → one event, and /metrics in Prometheus text.
#[test]
fn the_live_api_refuses_bad_requests_and_counts() {
    let dir = temp_dir();
    let store = demo_store(dir.path(), "20");
    let (mut child, addr, rest) =
        spawn_run_with_api(dir.path(), &["--store", s(&store), "--time-scale", "60", "--quiet"]);
    // No token.
    let (status, _) = {
        use std::io::{Read as _, Write as _};
        let mut stream = std::net::TcpStream::connect(addr).expect("connect");
        let body = "{\"user\": 1, \"kind\": \"response\"}";
        write!(
            stream,
            "POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .expect("write");
        let mut reply = String::new();
        stream.read_to_string(&mut reply).expect("read");
        (reply.split_whitespace().nth(1).and_then(|s| s.parse::<u16>().ok()).unwrap_or(0), reply)
    };
    assert_eq!(status, 401);
    let (status, body) = http(addr, "POST", "/v1/events", Some("{\"user\": 1, \"kind\": \"wave\"}"), None);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("kind"), "the 400 names the field: {body}");
    let big = format!("{{\"user\": 1, \"kind\": \"response\", \"pad\": \"{}\"}}", "x".repeat(200_000));
    let (status, _) = http(addr, "POST", "/v1/events", Some(&big), None);
    assert_eq!(status, 413);
    let event = "{\"user\": 3, \"kind\": \"response\"}";
    let (first, _) = http(addr, "POST", "/v1/events", Some(event), Some("same-key-1"));
    let (second, body) = http(addr, "POST", "/v1/events", Some(event), Some("same-key-1"));
    assert!(matches!(first, 200 | 202), "{first}");
    assert_eq!(second, 200, "{body}");
    assert!(body.contains("\"duplicate\":true"), "{body}");
    let (status, metrics) = http(addr, "GET", "/metrics", None, None);
    assert_eq!(status, 200);
    let accepted: f64 = metrics
        .lines()
        .find(|l| {
            l.starts_with("gavat_api_events_total") && l.contains("result=\"accepted\"") && l.contains("response")
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("an accepted-events series: {metrics}"));
    assert_eq!(accepted, 1.0, "one event for the key used twice");
    let (status, user) = http(addr, "GET", "/v1/users/3", None, None);
    assert_eq!(status, 200, "{user}");
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill runs");
    let status = child.wait().expect("gavat ends");
    let err = rest.join().expect("stderr");
    assert!(status.success(), "{err}");
}

/// An operator's `gavat strategy rollback` against the store of a running engine takes
/// effect in it (the run says so), and the rolled-back strategy is what the store holds in
/// force after the run.
#[test]
fn a_rollback_in_the_store_takes_effect_in_the_running_engine() {
    use std::io::BufRead as _;
    let dir = temp_dir();
    let store = dir.path().join("learned.db");
    let out = gavat(&[
        "simulate",
        "--users",
        "1000",
        "--days",
        "5",
        "--seed",
        "1",
        "--learn",
        "--no-baseline",
        "--save-state",
        s(&store),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let history = gavat(&["strategy", "history", "--store", s(&store), "--json"]);
    let changes: serde_json::Value = serde_json::from_slice(&history.stdout).expect("history as JSON");
    let applied = changes
        .as_array()
        .and_then(|c| c.iter().find(|c| c["action"] == "applied"))
        .unwrap_or_else(|| panic!("the learner applied a change: {changes}"));
    let id = applied["id"].as_i64().expect("an id").to_string();
    let before = applied["before"].as_str().expect("before").to_string();
    let segment = applied["segment"].as_str().expect("segment").to_string();

    let mut child = Command::new(env!("CARGO_BIN_EXE_gavat"))
        .args(["run", "--store", s(&store), "--time-scale", "600", "--no-http", "--no-learn", "--quiet"])
        .current_dir(dir.path())
        .env("GAVAT_LOG", "warn")
        .env("GAVAT_LOG_DIR", dir.path().join("logs"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gavat runs");
    let mut lines = std::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
    let mut seen = String::new();
    // Started: the banner's last line.
    for line in lines.by_ref() {
        let line = line.expect("text");
        seen.push_str(&line);
        seen.push('\n');
        if line.contains("first send due") || line.contains("no send is due") {
            break;
        }
    }
    assert!(seen.contains("segment strategies as the store has them in force"), "learned strategies kept: {seen}");
    let rollback = gavat(&["strategy", "rollback", &id, "--store", s(&store)]);
    assert!(rollback.status.success(), "{}", String::from_utf8_lossy(&rollback.stderr));
    for line in lines.by_ref() {
        let line = line.expect("text");
        seen.push_str(&line);
        seen.push('\n');
        if line.contains("is now in force") {
            break;
        }
    }
    assert!(seen.contains("is now in force"), "the running engine took the rollback: {seen}");
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill runs");
    for line in lines.map_while(Result::ok) {
        seen.push_str(&line);
        seen.push('\n');
    }
    assert!(child.wait().expect("gavat ends").success(), "{seen}");
    let show = gavat(&["strategy", "show", "--store", s(&store), "--json"]);
    let shown = String::from_utf8_lossy(&show.stdout);
    let in_force: serde_json::Value = serde_json::from_str(&shown).expect("show as JSON");
    let entry = in_force
        .as_array()
        .and_then(|all| all.iter().find(|s| s["segment"] == segment.as_str()))
        .unwrap_or_else(|| panic!("{segment} in force: {in_force}"));
    // Change #1 was the segment's first: undoing it restores the configured strategy, and
    // the run's end keeps it so.
    assert_eq!(entry["learned"], false, "{segment} back to {before} after the run: {entry}");
}
