//! The HTTP API over a real socket on 127.0.0.1. Row 50: bodies of `POST /v1/events` and
//! `PUT /v1/users/{id}` — mutated, oversized, of the wrong type, with unknown fields,
//! not UTF-8 — get a 4xx naming the field (413 for a body too large), never a 5xx or a
//! panic, and a refused request changes nothing (no event reaches the engine, the user
//! directory is as it was). Row 34: the listener binds loopback by default, refuses a
//! foreign `Host` (DNS rebinding) with 403, refuses a write without a valid token with 401,
//! and no GET changes anything.
//!
//! Requests are written by hand on a `TcpStream`, so that the bytes (a `Host` header,
//! bytes that are not UTF-8) are exactly the test's.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use gavat::api::{ApiInbound, ApiServer, ApiState, MemoryDirectory, Metrics, UserDirectory, serve};
use gavat::clock::VirtualClock;
use gavat::domain::{InboundEvent, Timestamp, UserId};
use gavat::transport::{InboundSink, InboundSource};
use tokio::sync::mpsc;

use super::mutate::{Shape, TEN_MB, Target, Verdict, fuzz};
use crate::fault_report::{RowReport, RunKind};

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

const TOKEN: &str = "fuzz-token-0123456789abcdef";
const NOW: Timestamp = Timestamp(1_800_000_000);
/// The user the directory holds from the start.
const KNOWN: u64 = 42;
/// The user the PUT cases write.
const PUT_USER: u64 = 9;

/// What the test thread sees of a server with a stand-in engine that acknowledges every
/// event at once.
struct Api {
    addr: SocketAddr,
    users: Arc<MemoryDirectory>,
    events: mpsc::UnboundedReceiver<InboundEvent>,
    /// Every event the engine was given so far.
    given: Vec<InboundEvent>,
    /// New users would join the engine here; kept open so that a PUT can hand them on.
    _arrivals: mpsc::UnboundedReceiver<gavat::domain::UserProfile>,
}

impl Api {
    async fn start(listen: &str, allowed_hosts: Vec<String>) -> Result<(ApiServer, Api), Box<dyn std::error::Error>> {
        let inbound = Arc::new(ApiInbound::new().with_ack_timeout(Duration::from_secs(10)));
        let (events_tx, events) = mpsc::unbounded_channel();
        let acker = Arc::downgrade(&inbound);
        inbound.start(InboundSink::new(move |event| {
            let _ = events_tx.send(event);
            if let Some(inbound) = acker.upgrade() {
                inbound.acknowledge(&event);
            }
        }));
        let (arrivals, arrived) = gavat::engine::user_arrivals();
        let users = Arc::new(MemoryDirectory::with_users([crate::common::warm_lead(KNOWN, NOW)]));
        let metrics = Arc::new(Metrics::new());
        let state = ApiState {
            clock: Arc::new(VirtualClock::new(NOW)),
            inbound,
            arrivals,
            users: users.clone() as Arc<dyn UserDirectory>,
            metrics: metrics.clone(),
            control: Arc::new(gavat::api::SendingControl::new(metrics)),
            write_token: Some(TOKEN.into()),
            allowed_hosts,
        };
        let server = serve(listen.parse()?, state).await?;
        let addr = server.local_addr();
        Ok((server, Api { addr, users, events, given: Vec::new(), _arrivals: arrived }))
    }

    /// What a request could change: the users the tests touch, and events given so far.
    fn state(&mut self) -> String {
        let users: Vec<String> =
            [KNOWN, PUT_USER].iter().map(|id| format!("{:?}", self.users.get(UserId(*id)))).collect();
        while let Ok(event) = self.events.try_recv() {
            self.given.push(event);
        }
        format!("{users:?} events {:?}", self.given)
    }
}

/// One HTTP/1.1 request's bytes.
pub(crate) fn request(
    method: &str,
    path: &str,
    host: &str,
    token: Option<&str>,
    content_type: Option<&str>,
    body: &[u8],
) -> Vec<u8> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    if let Some(token) = token {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    if let Some(content_type) = content_type {
        head.push_str(&format!("Content-Type: {content_type}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    [head.as_bytes(), body].concat()
}

/// Sends `bytes` and reads the answer: its status and JSON body. The write goes on in
/// another thread, so that an answer sent before a large body is read still arrives.
pub(crate) fn send(
    addr: SocketAddr,
    bytes: Vec<u8>,
) -> Result<(u16, serde_json::Value), Box<dyn std::error::Error + Send + Sync>> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut writer = stream.try_clone()?;
    std::thread::spawn(move || {
        let _ = writer.write_all(&bytes);
        let _ = writer.shutdown(Shutdown::Write);
    });
    let mut answer = Vec::new();
    let mut chunk = [0u8; 8192];
    // A reset after the answer (the server does not read a refused body) keeps what came.
    while let Ok(n) = stream.read(&mut chunk) {
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&answer);
    let status =
        text.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| format!("no HTTP answer: {text:?}"))?;
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Ok((status, serde_json::from_str(body).unwrap_or(serde_json::Value::Null)))
}

/// A hand-written case: (kind, path, body, expected status, expected field).
type HandCase<'a> = (&'a str, &'a str, Vec<u8>, u16, Option<&'a str>);

/// Starts the API on 127.0.0.1:0 on an actix system and runs `body` against it on a
/// blocking thread (the requests are plain blocking sockets).
fn with_api(allowed_hosts: Vec<String>, body: impl FnOnce(Api) -> TestResult + Send + 'static) -> TestResult {
    actix_rt::System::new().block_on(async move {
        let (server, api) = Api::start("127.0.0.1:0", allowed_hosts).await.map_err(|e| e.to_string())?;
        let result = actix_rt::task::spawn_blocking(move || body(api)).await;
        server.stop(true).await;
        result.map_err(|e| e.to_string())?
    })
}

/// Whether a refusal says what is wrong, and names the field when a field is at fault.
fn names_what(status: u16, json: &serde_json::Value) -> bool {
    let message = json["message"].as_str().unwrap_or_default();
    let code = json["error"].as_str().unwrap_or_default();
    !code.is_empty()
        && !message.is_empty()
        && (status != 400 || json["field"].is_string() || !message.contains("field `"))
}

/// The valid bodies, mutated, and the hand cases: no 5xx, every refusal says what is wrong
/// (the field, when one is at fault), nothing refused changes the directory or reaches the
/// engine.
#[test]
fn api_payloads_are_refused_by_field_without_5xx_or_partial_writes() -> TestResult {
    with_api(Vec::new(), |mut api| {
        let host = api.addr.to_string();
        let mut report = RowReport::new("50", 5001, RunKind::Safety);
        let (mut server_errors, mut requests, mut partial, mut refusals) = (0u64, 0u64, 0u64, 0u64);
        // The hand cases: (path, body, expected status, field).
        let hand: Vec<HandCase<'_>> = vec![
            (
                "oversized",
                "/v1/events",
                format!(r#"{{"user": 42, "kind": "response", "pad": "{}"}}"#, "x".repeat(TEN_MB)).into_bytes(),
                413,
                None,
            ),
            (
                "oversized",
                "/v1/users/9",
                format!(r#"{{"utc_offset_minutes": 60, "pad": "{}"}}"#, "x".repeat(70_000)).into_bytes(),
                413,
                None,
            ),
            ("wrong_type", "/v1/events", br#"{"user": "42", "kind": "response"}"#.to_vec(), 400, Some("user")),
            ("wrong_type", "/v1/events", br#"{"user": 42, "kind": ["response"]}"#.to_vec(), 400, Some("kind")),
            ("wrong_type", "/v1/users/9", br#"{"utc_offset_minutes": 60.5}"#.to_vec(), 400, Some("utc_offset_minutes")),
            (
                "wrong_type",
                "/v1/users/9",
                br#"{"utc_offset_minutes": 60, "purchases": -1}"#.to_vec(),
                400,
                Some("purchases"),
            ),
            (
                "unknown_field",
                "/v1/events",
                br#"{"user": 42, "kind": "response", "daily_limit": 1000}"#.to_vec(),
                400,
                Some("daily_limit"),
            ),
            (
                "unknown_field",
                "/v1/users/9",
                br#"{"utc_offset_minutes": 60, "segment": "HOT_LEAD"}"#.to_vec(),
                400,
                Some("segment"),
            ),
            (
                "invalid_utf8",
                "/v1/events",
                b"{\"user\": 42, \"kind\": \"resp\xff\xfense\"}".to_vec(),
                400,
                Some("kind"),
            ),
            (
                "invalid_utf8",
                "/v1/users/9",
                b"{\"utc_offset_minutes\": 60, \"joined_at\": \"\xc3\x28\"}".to_vec(),
                400,
                Some("joined_at"),
            ),
        ];
        for (kind, path, body, status, field) in hand {
            let method = if path == "/v1/events" { "POST" } else { "PUT" };
            let before = api.state();
            let (got, json) =
                send(api.addr, request(method, path, &host, Some(TOKEN), Some("application/json"), &body))?;
            report.fired(kind, 1);
            requests += 1;
            refusals += 1;
            server_errors += u64::from(got >= 500);
            partial += u64::from(api.state() != before);
            assert_eq!((got, json["field"].as_str()), (status, field), "{kind} {path}: {json}");
            assert!(names_what(got, &json), "{kind} {path}: {json}");
        }
        // The fuzzed cases, over the same socket path.
        for (row, path, method, valid) in [
            ("50-events", "/v1/events", "POST", r#"{"user": 42, "kind": "response", "group": 7}"#),
            (
                "50-users",
                "/v1/users/9",
                "PUT",
                r#"{"utc_offset_minutes": 60, "bots_followed": 2, "joined_at": "2026-01-01T00:00:00Z", "last_active": "2026-06-01T00:00:00Z", "purchases": 1}"#,
            ),
        ] {
            let unknown = [r#""daily_limit": 1000"#, r#""user": 43"#, r#""kind": "opt_in""#, r#""__proto__": {}"#];
            let target = Target { row, seed: 5002, valid: valid.as_bytes(), shape: Shape::Json, unknown: &unknown };
            let mut before = api.state();
            let mut cases_5xx = 0u64;
            let mut cases_partial = 0u64;
            let tally = {
                fuzz(&target, None, |bytes| {
                    let wire = request(method, path, &host, Some(TOKEN), Some("application/json"), bytes);
                    let (status, json) = match send(api.addr, wire) {
                        Ok(answer) => answer,
                        Err(e) => return Verdict::Broken(format!("no answer: {e}")),
                    };
                    let after = api.state();
                    if status >= 500 {
                        cases_5xx += 1;
                        return Verdict::Broken(format!("{status}: {json}"));
                    }
                    if status < 300 {
                        before = after;
                        return Verdict::Accepted;
                    }
                    if after != before {
                        cases_partial += 1;
                        return Verdict::Broken(format!("a refused request changed the state: {status} {json}"));
                    }
                    Verdict::Rejected { located: names_what(status, &json), message: json.to_string() }
                })
            };
            requests += tally.cases;
            refusals += tally.rejections;
            server_errors += cases_5xx;
            partial += cases_partial;
            let mut fuzzed = tally.report(&target);
            fuzzed.figure("5xx", cases_5xx, tally.cases).figure(
                "refused requests that changed state",
                cases_partial,
                tally.rejections,
            );
            fuzzed.emit();
        }
        report
            .figure("5xx", server_errors, requests)
            .figure("refused requests that changed state", partial, refusals)
            .measure("requests", requests);
        report.emit();
        Ok(())
    })
}

/// Row 34: the default listen address is loopback and so is the socket bound; a foreign
/// `Host` is 403 on every path, a write without a valid token is 401, and no GET changes
/// anything.
#[test]
fn the_api_serves_only_loopback_hosts_and_token_holders() -> TestResult {
    let default = gavat::live::config::RunConfig::default().listen.ok_or("the API is on by default")?;
    assert!(default.ip().is_loopback(), "default listen {default}");
    with_api(vec!["crm.internal".into()], |mut api| {
        assert!(api.addr.ip().is_loopback(), "bound to {}", api.addr);
        let port = api.addr.port();
        let mut report = RowReport::new("34", 3401, RunKind::Safety);
        report.measure("bound", api.addr.to_string());
        let event = br#"{"user": 42, "kind": "response"}"#;
        let user = br#"{"utc_offset_minutes": 60}"#;
        let json = Some("application/json");

        // DNS rebinding: a page on evil.example re-pointed at 127.0.0.1.
        let foreign =
            [format!("evil.example:{port}"), "evil.example".into(), format!("crm.internal.evil.example:{port}")];
        let (mut served, mut rebinding) = (0u64, 0u64);
        for host in &foreign {
            for (method, path, token, body) in [
                ("GET", "/healthz", None, &b""[..]),
                ("GET", "/metrics", None, b""),
                ("GET", "/v1/users/42", Some(TOKEN), b""),
                ("POST", "/v1/events", Some(TOKEN), event),
                ("PUT", "/v1/users/9", Some(TOKEN), user),
            ] {
                let before = api.state();
                let ct = (!body.is_empty()).then_some("application/json");
                let (status, answer) = send(api.addr, request(method, path, host, token, ct, body))?;
                rebinding += 1;
                served += u64::from(status != 403 || api.state() != before);
                assert_eq!((status, answer["error"].as_str()), (403, Some("foreign_host")), "{host} {method} {path}");
            }
        }
        report.fired("foreign_host", rebinding).figure("rebinding requests served", served, rebinding);

        // Writes without a valid token, from an allowed host.
        let mut accepted = 0u64;
        let mut writes = 0u64;
        for host in [format!("127.0.0.1:{port}"), format!("localhost:{port}"), "crm.internal".to_string()] {
            for token in [None, Some("wrong-token-0123456789abcdef"), Some("")] {
                for (method, path, body) in [("POST", "/v1/events", &event[..]), ("PUT", "/v1/users/9", user)] {
                    let before = api.state();
                    let (status, _) = send(api.addr, request(method, path, &host, token, json, body))?;
                    writes += 1;
                    accepted += u64::from(status != 401 || api.state() != before);
                }
            }
        }
        report.fired("write_without_valid_token", writes).figure("unauthorised writes accepted", accepted, writes);

        // GETs, with and without the token: nothing changes.
        let mut mutated = 0u64;
        let mut gets = 0u64;
        for path in ["/healthz", "/readyz", "/metrics", "/v1/users/42", "/v1/users/9", "/v1/events", "/nowhere"] {
            for token in [None, Some(TOKEN)] {
                let before = api.state();
                let (status, _) = send(api.addr, request("GET", path, &format!("127.0.0.1:{port}"), token, None, b""))?;
                gets += 1;
                mutated += u64::from(api.state() != before || status >= 500);
            }
        }
        report.fired("get", gets).figure("GETs that changed state", mutated, gets);

        // The control: the same write from loopback with the token is taken.
        let (status, _) =
            send(api.addr, request("POST", "/v1/events", &format!("127.0.0.1:{port}"), Some(TOKEN), json, event))?;
        assert_eq!(status, 202, "a valid write is taken");
        report.emit();
        Ok(())
    })
}
