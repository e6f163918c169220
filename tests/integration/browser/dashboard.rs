//! The dashboard in the browser: served live by `gavat run` (counters moving through
//! Server-Sent Events, drill-down from a segment to a user, rollback with and without the
//! token) and read-only by `gavat dashboard` over a store (an experiment's arms, verdict
//! and chart; no write form), and its guards against a foreign `Host` and a cross-site
//! `Origin`.

use std::io::BufRead as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{Browser, Error, KillOnDrop, TestResult, charts_drawn, form_encode, raw_http, wait_until};
use crate::common::{gavat, s, temp_dir};
use crate::live_run::spawn_run_with_token;

/// The API's write token in these tests: 32 characters.
const TOKEN: &str = "dashboard-test-token-0123456789a";

/// How long a live figure may take to move or a page to show a result.
const LIVE: Duration = Duration::from_secs(30);

/// Two arms and a holdout; the longer cooldown applies to hot leads.
const EXPERIMENT: &str = r#"
name = "dashboard-cooldown"
salt = "dashboard-cooldown-test"
primary_metric = "response_rate"
minimum_detectable_effect = 0.10

[holdout]
weight = 0.3

[[arms]]
name = "control"
weight = 1.0

[[arms]]
name = "longer-cooldown"
weight = 1.0
[arms.overrides.HOT_LEAD]
cooldown_hours = 8
"#;

/// Runs `gavat args`, failing with its stderr when it fails; returns its stdout.
fn run(args: &[&str]) -> Result<String, Error> {
    let out = gavat(args);
    if !out.status.success() {
        return Err(format!("gavat {args:?} failed: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A saved 300-user week (seed 7) with the learner on, at `store`; fails unless the
/// learner applied at least one change (something to roll back).
fn learned_store(store: &Path) -> Result<(), Error> {
    run(&["simulate", "--users", "300", "--days", "7", "--seed", "7", "--learn", "--save-state", s(store)])?;
    let applied = history(store)?.iter().filter(|c| c["action"] == "applied").count();
    assert!(applied > 0, "the learner applied a change in 7 days");
    Ok(())
}

/// `gavat strategy history --json` of `store`: every change, oldest first.
fn history(store: &Path) -> Result<Vec<serde_json::Value>, Error> {
    let text = run(&["strategy", "history", "--store", s(store), "--json"])?;
    match serde_json::from_str(&text)? {
        serde_json::Value::Array(changes) => Ok(changes),
        other => Err(format!("strategy history --json is not a list: {other:.200}").into()),
    }
}

/// How many changes of `store` an operator made (rollbacks).
fn operator_changes(store: &Path) -> Result<usize, Error> {
    Ok(history(store)?.iter().filter(|c| c["source"] == "operator").count())
}

/// `gavat run` on `store` at 3600× with the dry-run transport, the learner off (so only an
/// operator changes strategies) and the API and dashboard on a free loopback port.
fn live_run(dir: &Path, store: &Path) -> (KillOnDrop, SocketAddr) {
    let store = format!("sqlite:{}", s(store));
    let args = ["--store", &store, "--time-scale", "3600", "--transport", "dry-run", "--no-learn", "--quiet"];
    let (child, addr, _rest) = spawn_run_with_token(dir, &args, TOKEN);
    (KillOnDrop(child), addr)
}

/// The integer a counter element shows.
fn counter(browser: &Browser, css: &str) -> Result<u64, Error> {
    let text = browser.text(css)?;
    text.parse().map_err(|_| format!("{css} is not a plain integer: {text:?}").into())
}

/// Clicks the first element matching `css` and waits until the browser is at a URL whose
/// path starts with `path_prefix`; returns that URL.
fn follow(browser: &Browser, css: &str, path_prefix: &str) -> Result<String, Error> {
    browser.find(css)?.click()?;
    wait_until(&format!("the browser is at {path_prefix}…"), LIVE, || {
        let url = browser.current_url()?;
        let path = url.split_once("://").and_then(|(_, rest)| rest.find('/').map(|i| &rest[i..])).unwrap_or("");
        Ok(path.starts_with(path_prefix).then_some(url))
    })
}

/// What a rollback form's submission showed.
#[derive(Debug)]
struct Flash {
    /// The change the form rolls back.
    change: String,
    /// The `#flash` element's class: `flash ok` or `flash error`.
    class: String,
    /// What it says.
    text: String,
}

/// Fills the token of the first `form.rollback` with `token`, submits it and waits for the
/// `#flash` it leads to.
fn submit_rollback(browser: &Browser, base: &str, token: &str) -> Result<Flash, Error> {
    browser.goto(&format!("{base}strategies"))?;
    let form = browser.find("table#audit form.rollback")?;
    let change = form.find("input[name=change]")?.attr("value")?.ok_or("a rollback form names its change")?;
    form.find("input[name=token]")?.type_text(token)?;
    form.find("button[type=submit]")?.click()?;
    let class = wait_until("the rollback shows a #flash", LIVE, || {
        Ok(browser.find("#flash")?.attr("class")?.filter(|c| c.contains("ok") || c.contains("error")))
    })?;
    Ok(Flash { change, class, text: browser.text("#flash")? })
}

/// `gavat run --time-scale 3600` on a learned week: the overview says `running` and its
/// send counter rises through SSE without a reload; its forms pause and resume sending; a
/// segment leads to a user whose next message is previewed; a rollback with a wrong token is refused (403, `#flash.error`,
/// nothing written) and with the right one applied (`#flash.ok`, an operator change in the
/// store), the token never echoed; a request with `Host: evil.example` is refused.
#[test]
fn live_dashboard_moves_drills_down_and_rolls_back() -> TestResult {
    let dir = temp_dir();
    let store = dir.path().join("S.db");
    learned_store(&store)?;
    let (_engine, addr) = live_run(dir.path(), &store);
    let base = format!("http://{addr}/");

    let browser = Browser::start()?;
    browser.goto(&base)?;
    let state = browser.text("#engine-state")?;
    assert!(state.starts_with("running"), "#engine-state: {state:?}");
    for css in ["#responses-total", "#conversions-total", "#opt-outs-total", "#queue-depth"] {
        counter(&browser, css)?;
    }
    assert!(browser.count("table#segment-rates tr[data-segment]")? > 0, "the overview lists the segments' rates");
    for css in ["table#suppressions", "table#transport-outcomes", "form#pause"] {
        browser.find(css)?;
    }
    charts_drawn(&browser, 1)?;
    // A mark on the window: a reload would drop it, so a counter that moves with the mark
    // still there moved through the event stream.
    browser.execute("window.gavatTestMark = 'same page';", vec![])?;
    let first = counter(&browser, "#sent-total")?;
    let later =
        wait_until("#sent-total rises", LIVE, || Ok(Some(counter(&browser, "#sent-total")?).filter(|n| *n > first)))?;
    let mark = browser.execute("return window.gavatTestMark || null;", vec![])?;
    assert_eq!(mark, "same page", "#sent-total went {first} → {later} without a reload");
    browser.screenshot("dashboard-overview")?;

    // Pause and resume from the overview's forms: each lands back on the overview, whose
    // state says so.
    for (form, state) in [("form#pause", "paused"), ("form#resume", "running")] {
        let form = browser.find(form)?;
        form.find("input[name=token]")?.type_text(TOKEN)?;
        form.find("button[type=submit]")?.click()?;
        wait_until(&format!("#engine-state says {state}"), LIVE, || {
            Ok(browser.text("#engine-state")?.starts_with(state).then_some(()))
        })?;
    }

    follow(&browser, "nav a[href=\"/segments\"]", "/segments")?;
    follow(&browser, "table#segments tr[data-segment] a", "/segments/")?;
    follow(&browser, "table#members a", "/users/")?;
    browser.find("#user-summary")?;
    browser.find("table#recent-events")?;
    let preview = browser.text("#preview-text")?;
    assert!(!preview.is_empty(), "the user page previews the next message");
    browser.text("#preview-when")?;
    browser.screenshot("dashboard-user")?;

    let before = history(&store)?.len();
    let refused = submit_rollback(&browser, &base, "wrong-token-wrong-token-wrong-to")?;
    assert!(refused.class.split(' ').any(|c| c == "error"), "a wrong token is refused: {refused:?}");
    // Refused for the token, after the same-origin and form-token checks passed.
    assert!(refused.text.contains("token is not valid"), "refused for its token: {refused:?}");
    assert_eq!(browser.response_status()?, 403, "the refusal is a 403: {refused:?}");
    assert_eq!(history(&store)?.len(), before, "a refused rollback writes nothing: {refused:?}");
    browser.screenshot("dashboard-rollback-refused")?;

    let operator = operator_changes(&store)?;
    let applied = submit_rollback(&browser, &base, TOKEN)?;
    assert!(applied.class.split(' ').any(|c| c == "ok"), "the right token rolls the change back: {applied:?}");
    assert!(browser.current_url()?.contains("/strategies?"), "{}", browser.current_url()?);
    assert_eq!(operator_changes(&store)?, operator + 1, "the rollback is in the store: {applied:?}");
    // The newest change is the operator's rollback of the form's change: the same segment
    // and field, back from its "after" to its "before".
    let changes = history(&store)?;
    let undone = changes
        .iter()
        .find(|c| c["id"] == applied.change.parse::<u64>().unwrap_or(u64::MAX))
        .ok_or("the change is in the store")?;
    let rollback = changes.last().ok_or("the store has changes")?;
    assert_eq!(
        (&rollback["source"], &rollback["action"], &rollback["segment"], &rollback["before"], &rollback["after"]),
        (&"operator".into(), &"rolled_back".into(), &undone["segment"], &undone["after"], &undone["before"]),
        "the operator's rollback undoes change {}",
        applied.change
    );
    let source = browser.execute("return document.documentElement.outerHTML;", vec![])?;
    assert!(!source.as_str().unwrap_or_default().contains(TOKEN), "the page never shows the token");
    browser.screenshot("dashboard-rollback")?;
    drop(browser);

    let (status, _) = raw_http(addr, "GET", "/", &[("Host", "evil.example")], "")?;
    assert_eq!(status, 403, "a foreign Host is refused (DNS rebinding)");
    let (status, _) = raw_http(addr, "GET", "/", &[("Host", &addr.to_string())], "")?;
    assert_eq!(status, 200, "the same request with the listener's Host is served");
    Ok(())
}

/// The value of the attribute `name` in the first tag of `html` (after `from`) holding
/// `marker`, e.g. the `value` of `name="csrf"`.
fn attribute_near(html: &str, marker: &str, name: &str) -> Option<String> {
    let at = html.find(marker)?;
    let start = html[..at].rfind('<')?;
    let end = at + html[at..].find('>')?;
    let tag = &html[start..end];
    let key = format!("{name}=\"");
    let from = tag.find(&key)? + key.len();
    let len = tag[from..].find('"')?;
    Some(tag[from..from + len].replace("&amp;", "&"))
}

/// A rollback POSTed with the right token and the page's own CSRF value but a foreign
/// `Origin` is refused (403) and writes nothing; the same request from the dashboard's own
/// origin is applied (303), so the Origin alone made the difference.
#[test]
fn a_cross_site_rollback_is_refused() -> TestResult {
    let dir = temp_dir();
    let store = dir.path().join("S.db");
    learned_store(&store)?;
    let (_engine, addr) = live_run(dir.path(), &store);
    let host = addr.to_string();

    let (status, page) = raw_http(addr, "GET", "/strategies", &[("Host", &host)], "")?;
    assert_eq!(status, 200, "{page:.300}");
    let (head, body) = page.split_once("\r\n\r\n").ok_or("an HTTP reply has a head")?;
    let cookies: Vec<&str> = head
        .lines()
        .filter_map(|l| l.strip_prefix("set-cookie: ").or_else(|| l.strip_prefix("Set-Cookie: ")))
        .filter_map(|c| c.split(';').next())
        .collect();
    let cookie = cookies.join("; ");
    let form_at = body.find("<form class=\"rollback").ok_or("/strategies has a rollback form")?;
    let form = &body[form_at..];
    let change = attribute_near(form, "name=\"change\"", "value").ok_or("the form names its change")?;
    let csrf = attribute_near(form, "name=\"csrf\"", "value").ok_or("the form carries a CSRF value")?;
    let post = |origin: &str| {
        let form = format!("change={}&token={}&csrf={}", form_encode(&change), form_encode(TOKEN), form_encode(&csrf));
        let mut headers =
            vec![("Host", host.as_str()), ("Origin", origin), ("Content-Type", "application/x-www-form-urlencoded")];
        if !cookie.is_empty() {
            headers.push(("Cookie", cookie.as_str()));
        }
        raw_http(addr, "POST", "/strategies/rollback", &headers, &form)
    };

    let before = history(&store)?.len();
    let (status, reply) = post("http://evil.example")?;
    assert_eq!(status, 403, "a foreign Origin is refused: {reply:.300}");
    assert!(!reply.contains(TOKEN), "the refusal does not echo the token");
    assert_eq!(history(&store)?.len(), before, "a cross-site rollback writes nothing");

    let (status, reply) = post(&format!("http://{host}"))?;
    assert_eq!(status, 303, "the same request from the dashboard's origin is applied: {reply:.300}");
    assert_eq!(history(&store)?.len(), before + 1, "and recorded");
    Ok(())
}

/// `gavat dashboard` over `store` with `extra` flags: the child and the address it serves.
fn spawn_dashboard(dir: &Path, store: &Path, extra: &[&str]) -> Result<(KillOnDrop, SocketAddr), Error> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gavat"))
        .args(["dashboard", "--store", s(store), "--listen", "127.0.0.1:0"])
        .args(extra)
        .current_dir(dir)
        .env("GAVAT_LOG", "error")
        .env("GAVAT_LOG_DIR", dir.join("logs"))
        .env_remove("GAVAT_API_TOKEN")
        .env_remove("OPENAI_API_KEY")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let stderr = child.stderr.take().ok_or("stderr is piped")?;
    let child = KillOnDrop(child);
    let mut seen = String::new();
    for line in std::io::BufReader::new(stderr).lines() {
        let line = line?;
        seen.push_str(&line);
        seen.push('\n');
        if let Some(rest) = line.split(" on http://").nth(1) {
            let addr = rest.split(['/', ' ']).next().unwrap_or_default();
            return Ok((child, addr.parse().map_err(|e| format!("{addr:?}: {e}"))?));
        }
    }
    Err(format!("gavat dashboard ended before serving: {seen}").into())
}

/// `gavat dashboard` over a store that ran an experiment live (two days at 86400×): the
/// overview says `read-only`; the experiment's page lists each arm once with the users the
/// run assigned it, a verdict, the
/// SRM state and a drawn chart; `/strategies` shows what is in force and no rollback form,
/// and a rollback POSTed anyway writes nothing.
#[test]
fn read_only_dashboard_shows_an_experiment() -> TestResult {
    let dir = temp_dir();
    let store = dir.path().join("S.db");
    run(&["simulate", "--users", "300", "--days", "7", "--seed", "7", "--save-state", s(&store)])?;
    let design = dir.path().join("experiment.toml");
    std::fs::write(&design, EXPERIMENT)?;
    let out = Command::new(env!("CARGO_BIN_EXE_gavat"))
        .args(["run", "--store", &format!("sqlite:{}", s(&store)), "--experiment", s(&design)])
        // A day a second: two days of the experiment in two seconds of the test.
        .args(["--time-scale", "86400", "--for", "2d", "--no-http", "--transport", "dry-run", "--quiet"])
        .current_dir(dir.path())
        .env("GAVAT_LOG", "error")
        .env("GAVAT_LOG_DIR", dir.path().join("logs"))
        .env_remove("GAVAT_API_TOKEN")
        .env_remove("OPENAI_API_KEY")
        .stdin(Stdio::null())
        .output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    // "experiment NAME (FILE) in force, salt …: control 121, longer-cooldown 136, holdout 43; …"
    let split =
        err.lines().find(|l| l.contains("experiment dashboard-cooldown")).ok_or("the run names the experiment")?;
    let split = split.split_once("\": ").ok_or("the run prints the arms' sizes")?.1;
    let mut planned: Vec<(String, String)> = split
        .split(';')
        .next()
        .unwrap_or_default()
        .split(", ")
        .filter_map(|arm| arm.rsplit_once(' ').map(|(a, n)| (a.to_owned(), n.to_owned())))
        .collect();
    planned.sort();
    let (_server, addr) = spawn_dashboard(dir.path(), &store, &["--experiment", s(&design)])?;
    let base = format!("http://{addr}/");

    let browser = Browser::start()?;
    browser.goto(&base)?;
    let state = browser.text("#engine-state")?;
    assert!(state.starts_with("read-only"), "#engine-state: {state:?}");
    assert_eq!(browser.count("form#pause, form#resume")?, 0, "a read-only dashboard cannot pause");

    follow(&browser, "nav a[href=\"/experiments\"]", "/experiments")?;
    follow(
        &browser,
        "table#experiments a[href=\"/experiments/dashboard-cooldown\"]",
        "/experiments/dashboard-cooldown",
    )?;
    let mut arms = Vec::new();
    for row in browser.find_all("table#arms tr[data-arm]")? {
        let users = row.find("td:nth-child(2)")?.text()?.replace(',', "");
        arms.push((row.attr("data-arm")?.unwrap_or_default(), users));
    }
    arms.sort();
    assert_eq!(planned.len(), 3, "two arms and the holdout: {planned:?}");
    assert_eq!(arms, planned, "one row per arm and the holdout, with the users the run put in it");
    let verdict = browser.text("#verdict")?;
    assert!(!verdict.is_empty(), "the experiment has a verdict");
    assert!(!browser.text("#srm")?.is_empty(), "the SRM state is shown");
    charts_drawn(&browser, 1)?;
    browser.screenshot("dashboard-experiment")?;

    follow(&browser, "nav a[href=\"/strategies\"]", "/strategies")?;
    assert!(browser.count("table#in-force tr[data-segment]")? > 0, "the strategies in force are listed");
    assert_eq!(browser.count("form.rollback")?, 0, "a read-only dashboard offers no rollback");
    browser.screenshot("dashboard-strategies-read-only")?;
    drop(browser);

    let before = history(&store)?.len();
    let host = addr.to_string();
    let origin = format!("http://{host}");
    let headers =
        [("Host", host.as_str()), ("Origin", origin.as_str()), ("Content-Type", "application/x-www-form-urlencoded")];
    let (status, _) = raw_http(addr, "POST", "/strategies/rollback", &headers, "change=1&token=x&csrf=x")?;
    assert!((400..500).contains(&status), "a read-only dashboard refuses a write: {status}");
    assert_eq!(history(&store)?.len(), before, "and writes nothing");
    Ok(())
}
