//! The web dashboard over HTTP (the browser tests are in `browser`): every page of a live
//! run and of `gavat dashboard` answers with its figures; the live figures stream as
//! Server-Sent Events; a rollback needs the dashboard's own form and the API token; a
//! foreign `Host` or `Origin` is refused; `gavat dashboard` writes nothing.

use std::io::{BufRead as _, Read as _, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::common::{gavat, s, temp_dir};
use super::live_run::spawn_run_with_api;

/// The token `spawn_run_with_api` starts runs with.
const TOKEN: &str = "live-test-token-0123456789";

/// A store from a week's simulation with the learner: users, a log, strategy changes.
fn learned_store(dir: &Path) -> PathBuf {
    let store = dir.join("demo.db");
    let out =
        gavat(&["simulate", "--users", "300", "--days", "7", "--seed", "7", "--learn", "--save-state", s(&store)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    store
}

/// One HTTP/1.1 request with `headers`; returns the status, the response headers and the
/// body.
fn request(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String, String) {
    let mut stream = std::net::TcpStream::connect(addr).expect("the dashboard accepts");
    stream.set_read_timeout(Some(Duration::from_secs(30))).expect("a timeout");
    let mut text = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    if !headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("host")) {
        text.push_str(&format!("Host: {addr}\r\n"));
    }
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str("\r\n");
    text.push_str(body);
    stream.write_all(text.as_bytes()).expect("the request is written");
    let mut reply = String::new();
    stream.read_to_string(&mut reply).expect("a reply");
    let status = reply.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let (head, body) = reply.split_once("\r\n\r\n").unwrap_or((&reply, ""));
    (status, head.to_string(), body.to_string())
}

/// A page's body, which must answer 200.
fn page(addr: SocketAddr, path: &str) -> String {
    let (status, _, body) = request(addr, "GET", path, &[], "");
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

/// The value of the first `name="field" value="…"` in `html`.
fn field<'a>(html: &'a str, name: &str) -> Option<&'a str> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    html[start..].split('"').next()
}

/// The `sent` total of each of the first `n` events of the overview stream.
fn streamed_totals(addr: SocketAddr, n: usize) -> Vec<u64> {
    let mut stream = std::net::TcpStream::connect(addr).expect("the dashboard accepts");
    stream.set_read_timeout(Some(Duration::from_secs(20))).expect("a timeout");
    write!(stream, "GET /events/overview HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n")
        .expect("the request is written");
    let reader = std::io::BufReader::new(stream);
    let mut totals = Vec::new();
    for line in reader.lines() {
        let line = line.expect("the stream goes on");
        // Chunked transfer: data lines arrive whole inside the chunks.
        if let Some(json) = line.strip_prefix("data: ") {
            let value: serde_json::Value = serde_json::from_str(json).expect("an event is JSON");
            totals.push(value["totals"]["sent"].as_u64().expect("a sent total"));
            if totals.len() == n {
                break;
            }
        }
    }
    totals
}

/// How many strategy changes the store records.
fn change_count(store: &Path) -> usize {
    let out = gavat(&["strategy", "history", "--store", s(store), "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let changes: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("history is JSON");
    changes.len()
}

/// Stops a run with SIGTERM and waits for it.
fn stop(mut child: Child) {
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = child.wait();
}

/// A live run's dashboard: every page answers, the send total streams and rises, a user's
/// page previews the next message, and a rollback goes through only from the dashboard's
/// own form with the API token — then the engine takes it up.
#[test]
fn a_live_runs_dashboard_shows_streams_and_guards_its_writes() {
    let dir = temp_dir();
    let store = learned_store(dir.path());
    let before = change_count(&store);
    assert!(before > 0, "the learner made no change to roll back");
    let (child, addr, rest) =
        spawn_run_with_api(dir.path(), &["--store", &format!("sqlite:{}", s(&store)), "--time-scale", "3600"]);

    let overview = page(addr, "/");
    for id in ["engine-state", "sent-total", "responses-total", "conversions-total", "opt-outs-total", "queue-depth"] {
        assert!(overview.contains(&format!("id=\"{id}\"")), "overview lacks #{id}");
    }
    assert!(overview.contains(">running<"), "{overview}");
    let totals = streamed_totals(addr, 4);
    assert!(totals.windows(2).all(|w| w[0] <= w[1]) && totals[3] > totals[0], "sent totals streamed: {totals:?}");

    let segments = page(addr, "/segments");
    assert_eq!(segments.matches("<tr data-segment=").count(), 8, "{segments}");
    let members = page(addr, "/segments/ENGAGED");
    let user = members.split("href=\"/users/").nth(1).and_then(|r| r.split('"').next()).expect("a member");
    let user_page = page(addr, &format!("/users/{user}"));
    assert!(user_page.contains("id=\"user-summary\"") && user_page.contains("id=\"preview-when\""));
    assert!(user_page.contains("<pre class=\"message\" id=\"preview-text\">"), "{user_page}");

    let strategies = page(addr, "/strategies");
    let csrf = field(&strategies, "csrf").expect("a form token").to_string();
    let change = field(&strategies, "change").expect("an applied change with a rollback form").to_string();
    let form = |token: &str, csrf: &str| format!("change={change}&csrf={csrf}&token={token}");
    let posted = |body: &str, extra: &[(&str, &str)]| {
        let mut headers = vec![("Content-Type", "application/x-www-form-urlencoded")];
        headers.extend_from_slice(extra);
        request(addr, "POST", "/strategies/rollback", &headers, body)
    };
    let (status, _, body) = posted(&form("", &csrf), &[]);
    assert_eq!(status, 403, "no token: {body}");
    assert!(body.contains("flash error") && body.contains("token is missing"), "{body}");
    assert_eq!(posted(&form("not-the-token-at-all", &csrf), &[]).0, 403, "a wrong token");
    assert_eq!(posted(&form(TOKEN, "0badc0de"), &[]).0, 403, "a forged form");
    assert_eq!(posted(&form(TOKEN, &csrf), &[("Origin", "http://evil.example")]).0, 403, "another site's form");
    assert_eq!(posted(&form(TOKEN, &csrf), &[("Sec-Fetch-Site", "cross-site")]).0, 403, "a cross-site fetch");
    assert!(!body.contains(TOKEN), "a page never shows the token");
    let origin = format!("http://{addr}");
    let (status, head, _) = posted(&form(TOKEN, &csrf), &[("Origin", &origin), ("Sec-Fetch-Site", "same-origin")]);
    assert_eq!(status, 303, "{head}");
    let location = head
        .lines()
        .find_map(|l| l.strip_prefix("location: ").or_else(|| l.strip_prefix("Location: ")))
        .expect("a redirect");
    assert!(location.starts_with("/strategies?recorded="), "{location}");
    let done = page(addr, location);
    assert!(done.contains("id=\"flash\" class=\"flash ok\""), "{done}");

    let (status, _, _) = request(addr, "GET", "/", &[("Host", "evil.example")], "");
    assert_eq!(status, 403, "a foreign Host is refused");
    let (_, head, _) = request(addr, "GET", "/strategies", &[], "");
    let head = head.to_ascii_lowercase();
    assert!(head.contains("content-security-policy: default-src 'none'") && head.contains("x-frame-options: deny"));
    stop(child);
    let err = rest.join().expect("stderr collected");
    assert!(err.contains("dashboard at http://"), "{err}");
    assert_eq!(change_count(&store), before + 1, "exactly the operator's change was recorded once");
    assert!(!err.contains(TOKEN), "the token is never logged");
}

/// `gavat dashboard` on `store` with `args`, listening on a free port: the child and the
/// address it printed.
fn spawn_dashboard(dir: &Path, args: &[&str]) -> (Child, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gavat"))
        .arg("dashboard")
        .args(args)
        .args(["--listen", "127.0.0.1:0"])
        .current_dir(dir)
        .env("GAVAT_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gavat dashboard runs");
    let mut lines = std::io::BufReader::new(child.stderr.take().expect("stderr piped")).lines();
    let line = lines.next().and_then(Result::ok).unwrap_or_default();
    let addr = line
        .split("on http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("gavat dashboard printed {line:?}"));
    std::thread::spawn(move || lines.for_each(drop));
    (child, addr)
}

/// `gavat dashboard` shows a store and accepts no write: no rollback form, a forged one
/// refused, the store unchanged; an experiment that never ran on the store says so.
#[test]
fn gavat_dashboard_reads_a_store_and_writes_nothing() {
    let dir = temp_dir();
    let store = learned_store(dir.path());
    let before = change_count(&store);
    let experiment = Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments/hot_lead_daily_limit.toml");
    let (child, addr) = spawn_dashboard(dir.path(), &["--store", s(&store), "--experiment", s(&experiment)]);
    let overview = page(addr, "/");
    assert!(overview.contains(">read-only<"), "{overview}");
    let strategies = page(addr, "/strategies");
    assert!(strategies.contains("<tr data-change=") && !strategies.contains("class=\"rollback"), "{strategies}");
    let (status, _, body) = request(
        addr,
        "POST",
        "/strategies/rollback",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        "change=1&csrf=x&token=y",
    );
    assert_eq!(status, 403, "{body}");
    let experiments = page(addr, "/experiments");
    assert!(experiments.contains("id=\"experiments\"") && experiments.contains("hot-lead-4-a-day"), "{experiments}");
    let (status, _, body) = request(addr, "GET", "/users/999999999", &[], "");
    assert_eq!(status, 404, "{body}");
    let (status, _, _) = request(addr, "GET", "/segments/NOT_A_SEGMENT", &[], "");
    assert_eq!(status, 404);
    stop(child);
    assert_eq!(change_count(&store), before, "the store is unchanged");
}

/// A store that is not there is bad input, named, before anything listens.
#[test]
fn gavat_dashboard_names_a_missing_store() {
    let dir = temp_dir();
    let missing = dir.path().join("nope.db");
    let out = gavat(&["dashboard", "--store", s(&missing), "--listen", "127.0.0.1:0"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nope.db"), "{err}");
}
