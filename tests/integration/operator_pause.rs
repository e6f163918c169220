//! An operator pauses and resumes a running `gavat run` over its API: without the token
//! nothing changes; with it, no message goes out while paused (the held sends are counted as
//! `paused_by_operator`), `/readyz` says why, and sending picks up again after the resume.

use std::io::{BufRead as _, Read as _, Write as _};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::common::s;
use super::fuzz::api_payloads::{request, send};
use super::live_run::{demo_store, outbox};

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

const TOKEN: &str = "operator-pause-token-0123456789";

/// `GET path` as plain text (the `/metrics` page is not JSON).
fn get_text(addr: SocketAddr, path: &str) -> Result<String, std::io::Error> {
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes())?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    Ok(text)
}

/// The value of one series on `/metrics`.
fn metric(addr: SocketAddr, series: &str) -> Result<f64, Box<dyn std::error::Error + Send + Sync>> {
    let text = get_text(addr, "/metrics")?;
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .ok_or_else(|| format!("no series {series} in /metrics").into())
}

const DELIVERED: &str = r#"gavat_sends_total{outcome="delivered"}"#;
const HELD: &str = r#"gavat_suppressions_total{reason="paused_by_operator"}"#;

/// Polls `series` every 100 ms until it exceeds `above` (at most `limit`); returns the
/// last value and the time waited (counted in steps: tests read no clock).
fn wait_above(
    addr: SocketAddr,
    series: &str,
    above: f64,
    limit: Duration,
) -> Result<(f64, Duration), Box<dyn std::error::Error + Send + Sync>> {
    let step = Duration::from_millis(100);
    let mut waited = Duration::ZERO;
    loop {
        let value = metric(addr, series)?;
        if value > above || waited >= limit {
            return Ok((value, waited));
        }
        std::thread::sleep(step);
        waited += step;
    }
}

/// A live run on a simulated store (an engine hour a second, dry-run transport): a pause
/// without the token is refused and sending goes on; with the token, neither the metrics'
/// sends nor the outbox grow for at least three engine hours while the held sends are counted as
/// `paused_by_operator`, `/readyz` is 503 naming the operator's reason; after the resume
/// messages go out again and `/readyz` is 200.
#[test]
fn an_operator_pause_stops_sending_until_the_resume() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = demo_store(dir.path(), "300");
    let mut child = Command::new(env!("CARGO_BIN_EXE_gavat"))
        .args(["run", "--store", &format!("sqlite:{}", s(&store)), "--time-scale", "3600"])
        .args(["--transport", "dry-run", "--listen", "127.0.0.1:0", "--quiet"])
        .current_dir(dir.path())
        .env("GAVAT_LOG", "error")
        .env("GAVAT_LOG_DIR", dir.path().join("logs"))
        .env("GAVAT_API_TOKEN", TOKEN)
        .env_remove("OPENAI_API_KEY")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut lines = std::io::BufReader::new(child.stderr.take().ok_or("stderr piped")?).lines();
    let mut err = String::new();
    let listening = loop {
        let Some(line) = lines.next() else { break Err(format!("gavat run ended before its API listened: {err}")) };
        let line = line?;
        err.push_str(&line);
        err.push('\n');
        if let Some(rest) = line.split("HTTP API on http://").nth(1) {
            break rest.split_whitespace().next().ok_or("an address")?.parse::<SocketAddr>().map_err(|e| e.to_string());
        }
    };
    let err_thread = std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            err.push_str(&line);
            err.push('\n');
        }
        err
    });
    let result = exercise(listening, &dir.path().join("outbox.jsonl"));
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let status = child.wait()?;
    let stderr = err_thread.join().map_err(|_| "stderr thread")?;
    result.map_err(|e| format!("{e}\n--- gavat run's stderr:\n{stderr}"))?;
    assert!(status.success(), "a graceful stop: {stderr}");
    assert!(stderr.contains("cap violations found by the audit: 0"), "{stderr}");
    Ok(())
}

/// The pause and resume against a running engine at `addr`.
fn exercise(addr: Result<SocketAddr, String>, outbox_path: &std::path::Path) -> TestResult {
    let addr = addr?;
    let host = addr.to_string();
    let post = |path: &str, token: Option<&str>, body: Option<&str>| {
        let content_type = body.map(|_| "application/json");
        send(addr, request("POST", path, &host, token, content_type, body.unwrap_or_default().as_bytes()))
    };
    let (first, _) = wait_above(addr, DELIVERED, 0.0, Duration::from_secs(60))?;
    assert!(first > 0.0, "the run sends before any pause");

    let (status, answer) = post("/v1/control/pause", None, Some(r#"{"reason": "no token"}"#))?;
    assert_eq!(status, 401, "{answer}");
    let (status, answer) = post("/v1/control/pause", Some("not-the-token-000000000000"), None)?;
    assert_eq!(status, 401, "{answer}");
    let (more, _) = wait_above(addr, DELIVERED, first, Duration::from_secs(30))?;
    assert!(more > first, "a refused pause leaves sending on");
    assert_eq!(metric(addr, HELD)?, 0.0);

    let (status, state) = post("/v1/control/pause", Some(TOKEN), Some(r#"{"reason": "campaign review"}"#))?;
    assert_eq!(status, 200, "{state}");
    assert_eq!(state["paused_by_operator"], true, "{state}");
    // Sends reserved before the pause finish; none starts after it.
    std::thread::sleep(Duration::from_millis(500));
    let (sent_at_pause, outbox_at_pause) = (metric(addr, DELIVERED)?, outbox(outbox_path).len());
    // Suppressions reach the metrics in the engine's outcome batches: wait for one.
    let (held, waited) = wait_above(addr, HELD, 0.0, Duration::from_secs(60))?;
    assert!(held > 0.0, "sends that came due were held as paused_by_operator");
    if let Some(rest) = Duration::from_secs(3).checked_sub(waited) {
        std::thread::sleep(rest);
    }
    assert_eq!(metric(addr, DELIVERED)?, sent_at_pause, "nothing is sent while paused");
    assert_eq!(outbox(outbox_path).len(), outbox_at_pause, "nothing reaches the outbox while paused");
    let ready = get_text(addr, "/readyz")?;
    assert!(ready.starts_with("HTTP/1.1 503"), "{ready}");
    assert!(ready.contains("operator: campaign review"), "{ready}");
    let (status, state) = send(addr, request("GET", "/v1/control", &host, Some(TOKEN), None, b""))?;
    assert_eq!(status, 200, "{state}");
    assert_eq!(state["reason"], "campaign review", "{state}");
    assert_eq!(metric(addr, "gavat_paused")?, 1.0);

    let (status, state) = post("/v1/control/resume", Some(TOKEN), None)?;
    assert_eq!(status, 200, "{state}");
    assert_eq!(state["sending_paused"], false, "{state}");
    let (after, _) = wait_above(addr, DELIVERED, sent_at_pause, Duration::from_secs(30))?;
    assert!(after > sent_at_pause, "sending picks up after the resume");
    assert!(outbox(outbox_path).len() > outbox_at_pause, "the outbox grows again");
    assert!(get_text(addr, "/readyz")?.starts_with("HTTP/1.1 200"), "ready again");
    Ok(())
}
