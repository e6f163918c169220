//! The live engine's HTTP API over real HTTP on 127.0.0.1: authentication, strict bodies,
//! idempotency, users, readiness, metrics, and events answered only once the engine (here a
//! sink standing in for it) acknowledged them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use gavat::api::{
    ApiInbound, ApiServer, ApiState, MemoryDirectory, MeteredLedger, Metrics, SendingControl, UserDirectory, serve,
};
use gavat::clock::VirtualClock;
use gavat::domain::{InboundEvent, InboundKind, Timestamp, UserId, UserProfile};
use gavat::ledger::{
    CapLedger, Counted, LedgerError, LedgerFuture, LedgerUser, MemoryLedger, MessageId, Reservation, Reserved,
};
use gavat::transport::{InboundSink, InboundSource};
use reqwest::Method;
use tokio::sync::mpsc;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const TOKEN: &str = "test-token-0123456789abcdef";
const NOW: Timestamp = Timestamp(1_800_000_000);
/// [`NOW`] as the API writes it.
const NOW_RFC3339: &str = "2027-01-15T08:00:00Z";
/// A user the directory knows from the start.
const KNOWN: u64 = 42;

/// How the stand-in engine acknowledges the events it is given.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ack {
    /// Inside `push`, as a store that writes at once would.
    AtOnce,
    /// Only when the test calls `acknowledge`.
    ByTest,
    /// The inbound source is never started (the engine is not running yet).
    NotStarted,
}

/// A server on 127.0.0.1:0 with a stand-in engine.
struct Harness {
    server: ApiServer,
    base: String,
    client: reqwest::Client,
    inbound: Arc<ApiInbound>,
    metrics: Arc<Metrics>,
    /// The operator's pause the API flips.
    control: Arc<SendingControl>,
    /// Every event the engine was given, in order.
    events: mpsc::UnboundedReceiver<InboundEvent>,
    arrivals: mpsc::UnboundedReceiver<UserProfile>,
}

/// One answer.
struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The `field` an error answer names.
    fn field(&self) -> Option<String> {
        self.json().get("field").and_then(|f| f.as_str()).map(str::to_owned)
    }
}

impl Harness {
    async fn start(
        token: Option<&str>,
        ack: Ack,
        ack_timeout: Duration,
    ) -> Result<Harness, Box<dyn std::error::Error>> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let inbound = Arc::new(ApiInbound::new().with_ack_timeout(ack_timeout));
        let (events_tx, events) = mpsc::unbounded_channel();
        if ack != Ack::NotStarted {
            let acker = Arc::downgrade(&inbound);
            inbound.start(InboundSink::new(move |event| {
                let _ = events_tx.send(event);
                if ack == Ack::AtOnce
                    && let Some(inbound) = acker.upgrade()
                {
                    inbound.acknowledge(&event);
                }
            }));
        }
        let (arrivals_tx, arrivals) = gavat::engine::user_arrivals();
        let metrics = Arc::new(Metrics::new());
        let control = Arc::new(SendingControl::new(metrics.clone()));
        let users = Arc::new(MemoryDirectory::with_users([common_user(KNOWN)]));
        let state = ApiState {
            clock: Arc::new(VirtualClock::new(NOW)),
            inbound: inbound.clone(),
            arrivals: arrivals_tx,
            users: users as Arc<dyn UserDirectory>,
            metrics: metrics.clone(),
            control: control.clone(),
            write_token: token.map(str::to_owned),
            allowed_hosts: Vec::new(),
        };
        let server = serve("127.0.0.1:0".parse()?, state).await?;
        let base = format!("http://{}", server.local_addr());
        let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
        Ok(Harness { server, base, client, inbound, metrics, control, events, arrivals })
    }

    /// Sends a request; `token` as a bearer token, `body` as JSON.
    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<String>,
    ) -> Result<Reply, reqwest::Error> {
        call(&self.client, &self.base, method, path, token, headers, body).await
    }

    async fn post_event(&self, body: &str, key: Option<&str>) -> Result<Reply, reqwest::Error> {
        let headers: Vec<(&str, &str)> = key.map(|k| ("Idempotency-Key", k)).into_iter().collect();
        self.call(Method::POST, "/v1/events", Some(TOKEN), &headers, Some(body.to_owned())).await
    }

    /// The events the engine has been given so far.
    fn events_so_far(&mut self) -> Vec<InboundEvent> {
        std::iter::from_fn(|| self.events.try_recv().ok()).collect()
    }
}

async fn call(
    client: &reqwest::Client,
    base: &str,
    method: Method,
    path: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: Option<String>,
) -> Result<Reply, reqwest::Error> {
    let mut request = client.request(method, format!("{base}{path}"));
    if let Some(token) = token {
        request = request.header("Authorization", format!("Bearer {token}"));
    }
    if body.is_some() {
        request = request.header("Content-Type", "application/json");
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(body) = body {
        request = request.body(body);
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.bytes().await?.to_vec();
    Ok(Reply { status, headers, body })
}

fn common_user(id: u64) -> UserProfile {
    crate::common::warm_lead(id, NOW)
}

/// Runs `test` on an actix system, as `gavat run` runs the server beside the engine.
fn on_actix<F: std::future::Future<Output = TestResult>>(test: F) -> TestResult {
    actix_rt::System::new().block_on(test)
}

/// Every sample of a Prometheus text rendering, `series → value`, checking that each sample
/// belongs to a family announced by `# TYPE` (histogram samples by their family name).
fn parse_metrics(text: &str) -> Result<BTreeMap<String, f64>, String> {
    let mut types = BTreeMap::new();
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').ok_or(format!("bad TYPE line: {line}"))?;
            types.insert(name.to_owned(), kind.to_owned());
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').ok_or(format!("bad sample line: {line}"))?;
        let value: f64 = value.parse().map_err(|e| format!("bad value in {line}: {e}"))?;
        let name = series.split('{').next().unwrap_or(series);
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix).filter(|f| types.get(*f).is_some_and(|t| t == "histogram")))
            .unwrap_or(name);
        if !types.contains_key(family) {
            return Err(format!("sample {series} comes before or without its # TYPE line"));
        }
        if samples.insert(series.to_owned(), value).is_some() {
            return Err(format!("sample {series} appears twice"));
        }
    }
    Ok(samples)
}

/// A ledger that answers `Unavailable` while it is down, and as the in-memory ledger
/// otherwise; every answer is ready at once.
#[derive(Debug, Default)]
struct SwitchableLedger {
    down: std::sync::atomic::AtomicBool,
    inner: MemoryLedger,
}

impl SwitchableLedger {
    fn answer<T: Send + 'static>(&self, f: impl FnOnce() -> Result<T, LedgerError>) -> LedgerFuture<T> {
        let result = if self.down.load(std::sync::atomic::Ordering::Relaxed) {
            Err(LedgerError::Unavailable { reason: "database is locked".into() })
        } else {
            f()
        };
        Box::pin(futures::future::ready(result))
    }
}

impl CapLedger for SwitchableLedger {
    fn reserve(&self, request: Reservation) -> LedgerFuture<Reserved> {
        self.answer(|| self.inner.reserve_now(request))
    }
    fn reserve_share(&self, request: gavat::ledger::ShareReservation) -> LedgerFuture<Reserved> {
        self.answer(|| self.inner.reserve_share_now(request))
    }
    fn confirm(&self, message: MessageId, counted: Counted) -> LedgerFuture<()> {
        self.answer(|| self.inner.settle_now(message, Some(counted)))
    }
    fn release(&self, message: MessageId) -> LedgerFuture<()> {
        self.answer(|| self.inner.settle_now(message, None))
    }
    fn opt_out(&self, user: UserId) -> LedgerFuture<()> {
        self.answer(|| self.inner.opt_out(user).now_or_never().unwrap_or(Ok(())))
    }
    fn load(&self, user: UserId) -> LedgerFuture<LedgerUser> {
        self.answer(|| self.inner.load(user).now_or_never().unwrap_or(Ok(LedgerUser::default())))
    }
}

/// With no token configured the /v1 API is off: 403 saying so, for writes and reads alike;
/// the probes still answer.
#[test]
fn without_a_token_the_v1_api_is_off() -> TestResult {
    on_actix(async {
        let h = Harness::start(None, Ack::AtOnce, Duration::from_secs(10)).await?;
        let post = h.post_event(r#"{"user": 42, "kind": "response"}"#, None).await?;
        assert_eq!(post.status, 403, "{}", post.text());
        assert_eq!(post.json()["error"], "api_disabled");
        let put =
            h.call(Method::PUT, "/v1/users/7", Some(TOKEN), &[], Some(r#"{"utc_offset_minutes": 0}"#.into())).await?;
        assert_eq!(put.status, 403);
        assert_eq!(h.call(Method::GET, "/v1/users/42", None, &[], None).await?.status, 403);
        assert_eq!(h.call(Method::GET, "/healthz", None, &[], None).await?.status, 200);
        h.server.stop(true).await;
        Ok(())
    })
}

/// A missing or wrong token is 401 with `WWW-Authenticate: Bearer`, and the answer never
/// repeats what was presented.
#[test]
fn a_wrong_token_is_401() -> TestResult {
    on_actix(async {
        let mut h = Harness::start(Some(TOKEN), Ack::AtOnce, Duration::from_secs(10)).await?;
        let body = Some(r#"{"user": 42, "kind": "response"}"#.to_owned());
        let wrong = "not-the-token-but-long-enough";
        for token in [Some(wrong), None] {
            let reply = h.call(Method::POST, "/v1/events", token, &[], body.clone()).await?;
            assert_eq!(reply.status, 401, "{}", reply.text());
            assert_eq!(reply.json()["error"], "unauthorized");
            assert!(reply.headers.get("www-authenticate").is_some_and(|v| v.as_bytes().starts_with(b"Bearer")));
            assert!(!reply.text().contains(wrong) && !reply.text().contains(TOKEN));
        }
        assert_eq!(h.call(Method::GET, "/v1/users/42", Some(wrong), &[], None).await?.status, 401);
        assert!(h.events_so_far().is_empty(), "nothing reached the engine");
        h.server.stop(true).await;
        Ok(())
    })
}

/// A field of the wrong type or value, an unknown field, a missing field or a bad path id
/// is 400 naming it; a body over 64 KiB is 413; a body not sent as JSON is 415.
#[test]
fn bad_bodies_name_the_field_at_fault() -> TestResult {
    on_actix(async {
        let mut h = Harness::start(Some(TOKEN), Ack::AtOnce, Duration::from_secs(10)).await?;
        for (body, field) in [
            (r#"{"user": 42, "kind": "purchase"}"#, "kind"),
            (r#"{"user": "42", "kind": "response"}"#, "user"),
            (r#"{"user": -1, "kind": "response"}"#, "user"),
            (r#"{"user": 42, "kind": "response", "channel": "web"}"#, "channel"),
            (r#"{"kind": "response"}"#, "user"),
            (r#"{"user": 42}"#, "kind"),
        ] {
            let reply = h.post_event(body, None).await?;
            assert_eq!((reply.status, reply.field().as_deref()), (400, Some(field)), "{body}: {}", reply.text());
        }
        let bad_key = h.post_event(r#"{"user": 42, "kind": "response"}"#, Some("")).await?;
        assert_eq!((bad_key.status, bad_key.field().as_deref()), (400, Some("Idempotency-Key")));
        for (path, body, field) in [
            ("/v1/users/9", r#"{"utc_offset_minutes": 9999}"#, "utc_offset_minutes"),
            ("/v1/users/9", r#"{"utc_offset_minutes": 60, "bots_followed": 0}"#, "bots_followed"),
            ("/v1/users/9", r#"{"utc_offset_minutes": 60, "joined_at": "last week"}"#, "joined_at"),
            ("/v1/users/9", r#"{"utc_offset_minutes": 60, "segment": "HOT_LEAD"}"#, "segment"),
            ("/v1/users/nine", r#"{"utc_offset_minutes": 60}"#, "id"),
        ] {
            let reply = h.call(Method::PUT, path, Some(TOKEN), &[], Some(body.into())).await?;
            assert_eq!((reply.status, reply.field().as_deref()), (400, Some(field)), "{body}: {}", reply.text());
        }
        let oversize = format!(r#"{{"user": 42, "kind": "response", "pad": "{}"}}"#, "x".repeat(64 * 1024));
        let reply = h.post_event(&oversize, None).await?;
        assert_eq!(reply.status, 413, "{}", reply.text());
        assert_eq!(reply.json()["error"], "body_too_large");
        let plain = h.call(Method::POST, "/v1/events", Some(TOKEN), &[("Content-Type", "text/plain")], None).await?;
        assert_eq!(plain.status, 415);
        assert!(h.events_so_far().is_empty(), "nothing reached the engine");
        h.server.stop(true).await;
        Ok(())
    })
}

/// The same Idempotency-Key twice: one event reaches the engine, stamped with the clock and
/// with the key's hash as its source id; the second answer is 200 with `duplicate: true`
/// and the first event's time. The key with another body is 422.
#[test]
fn the_same_idempotency_key_twice_is_one_event() -> TestResult {
    on_actix(async {
        let mut h = Harness::start(Some(TOKEN), Ack::AtOnce, Duration::from_secs(10)).await?;
        let body = r#"{"user": 42, "kind": "conversion", "group": 5}"#;
        let first = h.post_event(body, Some("crm-order-77")).await?;
        assert_eq!(first.status, 202, "{}", first.text());
        assert_eq!(first.json()["duplicate"], false);
        let second = h.post_event(body, Some("crm-order-77")).await?;
        assert_eq!(second.status, 200, "{}", second.text());
        assert_eq!(second.json()["duplicate"], true);
        assert_eq!(second.json()["event"], first.json()["event"]);
        let events = h.events_so_far();
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(
            events[0],
            InboundEvent {
                at: NOW,
                user: UserId(KNOWN),
                kind: InboundKind::Conversion,
                group: Some(gavat::domain::GroupId(5)),
                source: Some(gavat::api::source_of_key("crm-order-77")),
            }
        );
        let other = h.post_event(r#"{"user": 42, "kind": "response"}"#, Some("crm-order-77")).await?;
        assert_eq!(other.status, 422, "{}", other.text());
        // Without a key every POST is its own event, each with its own source id.
        for _ in 0..2 {
            assert_eq!(h.post_event(r#"{"user": 42, "kind": "activity"}"#, None).await?.status, 202);
        }
        let events = h.events_so_far();
        assert_eq!(events.len(), 2);
        assert_ne!(events[0].source, events[1].source);
        h.server.stop(true).await;
        Ok(())
    })
}

/// An event for a user nobody created is 404 with a hint to create the user first, and
/// never reaches the engine.
#[test]
fn an_event_for_an_unknown_user_is_404() -> TestResult {
    on_actix(async {
        let mut h = Harness::start(Some(TOKEN), Ack::AtOnce, Duration::from_secs(10)).await?;
        let reply = h.post_event(r#"{"user": 1234, "kind": "opt_out"}"#, Some("k-1")).await?;
        assert_eq!(reply.status, 404, "{}", reply.text());
        assert_eq!(reply.json()["error"], "unknown_user");
        assert!(reply.json()["hint"].as_str().is_some_and(|h| h.contains("PUT /v1/users/1234")));
        assert!(h.events_so_far().is_empty());
        h.server.stop(true).await;
        Ok(())
    })
}

/// PUT creates a user (201, and the engine hears of them once), GET reads them back, a
/// second PUT updates (200) and keeps what it does not name; an unknown user is 404.
#[test]
fn put_then_get_a_user() -> TestResult {
    on_actix(async {
        let mut h = Harness::start(Some(TOKEN), Ack::AtOnce, Duration::from_secs(10)).await?;
        let created = h
            .call(
                Method::PUT,
                "/v1/users/777",
                Some(TOKEN),
                &[],
                Some(r#"{"utc_offset_minutes": 180, "bots_followed": 3, "purchases": 1}"#.into()),
            )
            .await?;
        assert_eq!(created.status, 201, "{}", created.text());
        let arrived = h.arrivals.try_recv()?;
        assert_eq!(
            (arrived.id, arrived.zone.offset_at(gavat::domain::Timestamp(0)).0, arrived.bots_followed),
            (UserId(777), 180, 3)
        );
        assert_eq!(arrived.joined_at, NOW, "joined now by default");

        let read = h.call(Method::GET, "/v1/users/777", Some(TOKEN), &[], None).await?;
        assert_eq!(read.status, 200, "{}", read.text());
        assert_eq!(read.json(), created.json());
        let user = read.json();
        assert_eq!(user["id"], 777);
        assert_eq!(user["utc_offset_minutes"], 180);
        assert_eq!(user["bots_followed"], 3);
        assert_eq!(user["purchases"], 1);
        assert_eq!(user["joined_at"], NOW.to_rfc3339());
        assert_eq!(user["opted_out"], false);

        let updated =
            h.call(Method::PUT, "/v1/users/777", Some(TOKEN), &[], Some(r#"{"purchases": 4}"#.into())).await?;
        assert_eq!(updated.status, 200, "{}", updated.text());
        assert_eq!(
            (updated.json()["purchases"].clone(), updated.json()["bots_followed"].clone()),
            (4.into(), 3.into())
        );
        assert!(h.arrivals.try_recv().is_err(), "an update is not an arrival");

        // Now events for the user are taken.
        assert_eq!(h.post_event(r#"{"user": 777, "kind": "response"}"#, None).await?.status, 202);
        assert_eq!(h.call(Method::GET, "/v1/users/778", Some(TOKEN), &[], None).await?.status, 404);
        h.server.stop(true).await;
        Ok(())
    })
}

/// /readyz is 503 with the reason while a metered ledger sees `Unavailable`, and 200 again
/// after its next answer; /healthz stays 200 throughout. Before the engine starts taking
/// events, /readyz is 503 too, and an event is refused with 503.
#[test]
fn readiness_follows_the_ledger() -> TestResult {
    on_actix(async {
        let h = Harness::start(Some(TOKEN), Ack::AtOnce, Duration::from_secs(10)).await?;
        let inner = Arc::new(SwitchableLedger::default());
        let ledger = MeteredLedger::new(inner.clone(), h.metrics.clone(), h.control.clone());
        let request = |message| Reservation {
            message: MessageId(message),
            user: UserId(KNOWN),
            at: NOW,
            caps: gavat::domain::Caps {
                daily_limit: 3,
                cooldown_secs: 0,
                allowed_hours: gavat::domain::HourMask::ALL_DAY,
                period_days: 1,
            },
            zone: gavat::domain::Zone::UTC,
        };
        assert_eq!(h.call(Method::GET, "/readyz", None, &[], None).await?.status, 200);

        inner.down.store(true, std::sync::atomic::Ordering::Relaxed);
        let refused = ledger.reserve(request(1)).now_or_never().ok_or("not ready at once")?;
        assert!(matches!(refused, Err(LedgerError::Unavailable { .. })));
        let paused = h.call(Method::GET, "/readyz", None, &[], None).await?;
        assert_eq!(paused.status, 503, "{}", paused.text());
        assert!(
            paused.json()["message"].as_str().is_some_and(|m| m.contains("database is locked")),
            "{}",
            paused.text()
        );
        assert_eq!(h.call(Method::GET, "/healthz", None, &[], None).await?.status, 200);

        inner.down.store(false, std::sync::atomic::Ordering::Relaxed);
        let granted = ledger.reserve(request(2)).now_or_never().ok_or("not ready at once")?;
        assert_eq!(granted?, Reserved::Granted);
        assert_eq!(h.call(Method::GET, "/readyz", None, &[], None).await?.status, 200);
        h.server.stop(true).await;

        let h = Harness::start(Some(TOKEN), Ack::NotStarted, Duration::from_secs(10)).await?;
        assert_eq!(h.call(Method::GET, "/readyz", None, &[], None).await?.status, 503);
        let early = h.post_event(r#"{"user": 42, "kind": "response"}"#, Some("early")).await?;
        assert_eq!(early.status, 503, "{}", early.text());
        assert_eq!(early.json()["error"], "engine_not_ready");
        assert!(early.headers.get("retry-after").is_some());
        h.server.stop(true).await;
        Ok(())
    })
}

/// `/v1/control`: every call needs the token (401 without, 403 with the API off); a pause
/// with a reason denies the metered ledger's reservations as `Paused`, shows in `/readyz`
/// and `gavat_paused`; bodies are strict (unknown field, reason too long, not JSON); the
/// resume lifts the operator's pause and leaves a ledger's pause in force.
#[test]
fn the_operator_pauses_and_resumes_sending() -> TestResult {
    on_actix(async {
        let h = Harness::start(Some(TOKEN), Ack::AtOnce, Duration::from_secs(10)).await?;
        let inner = Arc::new(SwitchableLedger::default());
        let ledger = MeteredLedger::new(inner.clone(), h.metrics.clone(), h.control.clone());
        let request = |message| Reservation {
            message: MessageId(message),
            user: UserId(KNOWN),
            at: NOW,
            caps: gavat::domain::Caps {
                daily_limit: 30,
                cooldown_secs: 0,
                allowed_hours: gavat::domain::HourMask::ALL_DAY,
                period_days: 1,
            },
            zone: gavat::domain::Zone::UTC,
        };
        let reason = r#"{"reason": "campaign review"}"#;
        for (method, path, body) in [
            (Method::GET, "/v1/control", None),
            (Method::POST, "/v1/control/pause", Some(reason.to_string())),
            (Method::POST, "/v1/control/resume", None),
        ] {
            let refused = h.call(method.clone(), path, None, &[], body.clone()).await?;
            assert_eq!(refused.status, 401, "{path}: {}", refused.text());
            let wrong = h.call(method, path, Some("not-the-token-000000000000"), &[], body).await?;
            assert_eq!(wrong.status, 401, "{path}: {}", wrong.text());
        }
        assert!(!h.control.is_paused(), "no refused call paused");
        assert_eq!(h.call(Method::GET, "/v1/control/pause", Some(TOKEN), &[], None).await?.status, 405);

        let refusals = [
            (r#"{"reason": "x", "until": 5}"#.to_string(), 400, Some("until")),
            (format!(r#"{{"reason": "{}"}}"#, "a".repeat(201)), 400, Some("reason")),
            (r#"{"reason": "line\nbreak"}"#.to_string(), 400, Some("reason")),
            (r#"{"reason": 7}"#.to_string(), 400, Some("reason")),
        ];
        for (body, status, field) in refusals {
            let answer = h.call(Method::POST, "/v1/control/pause", Some(TOKEN), &[], Some(body.clone())).await?;
            assert_eq!(answer.status, status, "{body}: {}", answer.text());
            assert_eq!(answer.field().as_deref(), field, "{body}: {}", answer.text());
        }
        let not_json = h
            .client
            .post(format!("{}/v1/control/pause", h.base))
            .bearer_auth(TOKEN)
            .header("Content-Type", "text/plain")
            .body("campaign review")
            .send()
            .await?;
        assert_eq!(not_json.status().as_u16(), 415, "{:?}", not_json.text().await);
        assert!(!h.control.is_paused(), "no refused body paused");

        let paused = h.call(Method::POST, "/v1/control/pause", Some(TOKEN), &[], Some(reason.into())).await?;
        assert_eq!(paused.status, 200, "{}", paused.text());
        let state = paused.json();
        assert_eq!(state["paused_by_operator"], true);
        assert_eq!(state["reason"], "campaign review");
        assert_eq!(state["since"], NOW_RFC3339);
        assert_eq!(state["pauses"][0]["source"], "operator");
        let denied = ledger.reserve(request(1)).now_or_never().ok_or("not ready at once")??;
        assert_eq!(denied, Reserved::Denied(gavat::policy::SuppressReason::Paused));
        let ready = h.call(Method::GET, "/readyz", None, &[], None).await?;
        assert_eq!(ready.status, 503, "{}", ready.text());
        assert!(ready.text().contains("operator: campaign review"), "{}", ready.text());
        let samples = parse_metrics(&h.call(Method::GET, "/metrics", None, &[], None).await?.text())?;
        assert_eq!(samples.get("gavat_paused"), Some(&1.0));

        // The ledger fails while paused by the operator: both pauses are listed; the resume
        // lifts the operator's only.
        inner.down.store(true, std::sync::atomic::Ordering::Relaxed);
        let failed = ledger.load(UserId(KNOWN)).now_or_never().ok_or("not ready at once")?;
        assert!(matches!(failed, Err(LedgerError::Unavailable { .. })));
        let resumed = h.call(Method::POST, "/v1/control/resume", Some(TOKEN), &[], None).await?;
        assert_eq!(resumed.status, 200, "{}", resumed.text());
        let state = resumed.json();
        assert_eq!(state["paused_by_operator"], false);
        assert_eq!(state["sending_paused"], true, "the ledger still cannot answer: {state}");
        assert_eq!(state["pauses"][0]["source"], "ledger");
        assert_eq!(h.call(Method::GET, "/readyz", None, &[], None).await?.status, 503);

        inner.down.store(false, std::sync::atomic::Ordering::Relaxed);
        let granted = ledger.reserve(request(2)).now_or_never().ok_or("not ready at once")??;
        assert_eq!(granted, Reserved::Granted);
        let state = h.call(Method::GET, "/v1/control", Some(TOKEN), &[], None).await?.json();
        assert_eq!(state["sending_paused"], false, "{state}");
        assert_eq!(h.call(Method::GET, "/readyz", None, &[], None).await?.status, 200);

        // A pause without a body has the placeholder reason.
        let bare = h.call(Method::POST, "/v1/control/pause", Some(TOKEN), &[], None).await?;
        assert_eq!(bare.status, 200, "{}", bare.text());
        assert_eq!(bare.json()["reason"], "no reason given");
        h.server.stop(true).await;

        let off = Harness::start(None, Ack::AtOnce, Duration::from_secs(10)).await?;
        let answer = off.call(Method::POST, "/v1/control/pause", Some(TOKEN), &[], None).await?;
        assert_eq!(answer.status, 403, "{}", answer.text());
        assert!(!off.control.is_paused());
        off.server.stop(true).await;
        Ok(())
    })
}

/// After some calls, /metrics parses as Prometheus text, every family announced, and holds
/// the series those calls produced.
#[test]
fn metrics_show_what_happened() -> TestResult {
    on_actix(async {
        let h = Harness::start(Some(TOKEN), Ack::AtOnce, Duration::from_secs(10)).await?;
        let ledger = MeteredLedger::new(Arc::new(MemoryLedger::default()), h.metrics.clone(), h.control.clone());
        let reservation = Reservation {
            message: MessageId(1),
            user: UserId(KNOWN),
            at: NOW,
            caps: gavat::domain::Caps {
                daily_limit: 3,
                cooldown_secs: 0,
                allowed_hours: gavat::domain::HourMask::ALL_DAY,
                period_days: 1,
            },
            zone: gavat::domain::Zone::UTC,
        };
        ledger.reserve(reservation).now_or_never().ok_or("not ready at once")??;
        assert_eq!(h.post_event(r#"{"user": 42, "kind": "response"}"#, Some("m-1")).await?.status, 202);
        assert_eq!(h.post_event(r#"{"user": 42, "kind": "response"}"#, Some("m-1")).await?.status, 200);
        assert_eq!(h.post_event(r#"{"user": 9, "kind": "response"}"#, None).await?.status, 404);
        assert_eq!(h.call(Method::GET, "/v1/users/42", Some("wrong-token-but-long"), &[], None).await?.status, 401);

        let reply = h.call(Method::GET, "/metrics", None, &[], None).await?;
        assert_eq!(reply.status, 200);
        let content_type = reply.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
        assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
        let samples = parse_metrics(&reply.text())?;
        let value = |series: &str| samples.get(series).copied();
        assert_eq!(value(r#"gavat_api_requests_total{status="202"}"#), Some(1.0));
        assert_eq!(value(r#"gavat_api_requests_total{status="200"}"#), Some(1.0));
        assert_eq!(value(r#"gavat_api_requests_total{status="404"}"#), Some(1.0));
        assert_eq!(value(r#"gavat_api_requests_total{status="401"}"#), Some(1.0));
        assert_eq!(value(r#"gavat_api_events_total{kind="response",result="accepted"}"#), Some(1.0));
        assert_eq!(value(r#"gavat_api_events_total{kind="response",result="duplicate"}"#), Some(1.0));
        assert_eq!(value("gavat_reservation_seconds_count"), Some(1.0));
        assert_eq!(value(r#"gavat_reservation_seconds_bucket{le="+Inf"}"#), Some(1.0));
        assert_eq!(value("gavat_queue_depth"), Some(1.0), "one reservation granted, not settled");
        assert_eq!(value("gavat_paused"), Some(0.0));
        assert_eq!(value("gavat_store_errors_total"), Some(0.0));
        assert_eq!(value(r#"gavat_sends_total{outcome="delivered"}"#), Some(0.0));
        assert_eq!(value(r#"gavat_suppressions_total{reason="quiet_hours"}"#), Some(0.0));
        assert_eq!(value(r#"gavat_inbound_events_total{kind="opt_out"}"#), Some(0.0));
        h.server.stop(true).await;
        Ok(())
    })
}

/// A POST is not answered until the engine acknowledges its event: the event reaches the
/// sink, the request is still open, and it is answered 202 once `acknowledge` is called;
/// an event never acknowledged is 503 after the acknowledgement timeout, and its key can be
/// used again.
#[test]
fn a_post_waits_for_the_engine_to_acknowledge() -> TestResult {
    on_actix(async {
        let mut h = Harness::start(Some(TOKEN), Ack::ByTest, Duration::from_millis(500)).await?;
        let (client, base) = (h.client.clone(), h.base.clone());
        let post = |key: &'static str| {
            let (client, base) = (client.clone(), base.clone());
            actix_rt::spawn(async move {
                call(
                    &client,
                    &base,
                    Method::POST,
                    "/v1/events",
                    Some(TOKEN),
                    &[("Idempotency-Key", key)],
                    Some(r#"{"user": 42, "kind": "response"}"#.into()),
                )
                .await
            })
        };

        let mut answer = post("ack-1");
        let event = h.events.recv().await.ok_or("the engine got no event")?;
        let waited = tokio::time::timeout(Duration::from_millis(100), &mut answer).await;
        assert!(waited.is_err(), "answered before the acknowledgement");
        h.inbound.acknowledge(&event);
        let reply = answer.await??;
        assert_eq!(reply.status, 202, "{}", reply.text());

        let reply = post("never-acked").await??;
        assert_eq!(reply.status, 503, "{}", reply.text());
        assert_eq!(reply.json()["error"], "engine_busy");
        let stale = h.events.recv().await.ok_or("the engine got no event")?;
        // A retry is handed to the engine again under the same source id (the engine
        // de-duplicates it), and this time it is acknowledged.
        let mut retry = post("never-acked");
        let again = h.events.recv().await.ok_or("the engine got no retry")?;
        assert_eq!(again.source, stale.source);
        h.inbound.acknowledge(&again);
        assert_eq!((&mut retry).await??.status, 202);
        h.server.stop(true).await;
        Ok(())
    })
}

/// Polls /metrics until `series` reaches at least `at_least`, for up to ten seconds.
async fn wait_for_metric(h: &Harness, series: &str, at_least: f64) -> Result<f64, Box<dyn std::error::Error>> {
    for _ in 0..200 {
        let text = h.call(Method::GET, "/metrics", None, &[], None).await?.text();
        let value = parse_metrics(&text)?.get(series).copied().unwrap_or(0.0);
        if value >= at_least {
            return Ok(value);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!("{series} never reached {at_least}").into())
}

/// The whole live wiring, as `gavat run` will build it: a real engine on a scaled clock
/// takes the API's events through `ApiInbound` and acknowledges each once its log is
/// stored, so the POSTs are answered; a user PUT mid-run joins the engine; the metered
/// sender and ledger and the outcome listener fill /metrics.
#[test]
fn the_running_engine_acknowledges_api_events() -> TestResult {
    use gavat::api::{MeteredSender, MetricsListener};
    use gavat::clock::ScaledClock;
    use gavat::engine::Engine;
    use gavat::store::MemoryStore;
    use gavat::transport::MemoryTransport;

    // 11:58 UTC: the warm leads' optimal hours start two minutes later.
    let start = Timestamp(1_767_225_600 + 11 * 3_600 + 58 * 60);
    let clock = Arc::new(ScaledClock::new(start, 3_600));
    let users: Vec<UserProfile> = (0..2).map(|id| crate::common::warm_lead(id, start)).collect();
    let metrics = Arc::new(Metrics::new());
    let control = Arc::new(SendingControl::new(metrics.clone()));
    let inbound = Arc::new(ApiInbound::new().with_ack_timeout(Duration::from_secs(10)));
    let transport = Arc::new(MemoryTransport::new());
    let (arrivals_tx, arrivals) = gavat::engine::user_arrivals();
    let directory = Arc::new(MemoryDirectory::with_users(users.clone()));
    let (stop_engine, stopped) = futures::channel::oneshot::channel::<()>();
    let state = ApiState {
        clock: clock.clone(),
        inbound: inbound.clone(),
        arrivals: arrivals_tx,
        users: directory,
        metrics: metrics.clone(),
        control: control.clone(),
        write_token: Some(TOKEN.into()),
        allowed_hosts: Vec::new(),
    };
    let result = actix_rt::System::new().block_on(async move {
        let listener = actix::Actor::start(MetricsListener::new(metrics.clone()));
        let engine = Engine::builder()
            .clock(clock)
            .sender(Arc::new(MeteredSender::new(transport.clone(), metrics.clone())))
            .inbound_source(inbound.clone())
            .ledger(Arc::new(MeteredLedger::new(Arc::new(MemoryLedger::default()), metrics.clone(), control.clone())))
            .outcome_listener(listener.recipient())
            .store(Arc::new(MemoryStore::keeping_everything()))
            .users(users)
            .seed(11)
            .threads(1)
            .arrivals(arrivals)
            .build()?;
        let engine = actix_rt::spawn(engine.run_until(async move {
            let _ = stopped.await;
        }));
        let _ = rustls::crypto::ring::default_provider().install_default();
        let server = serve("127.0.0.1:0".parse()?, state).await?;
        let (events_tx, events) = mpsc::unbounded_channel();
        drop(events_tx);
        let (_, arrivals_seen) = mpsc::unbounded_channel();
        let h = Harness {
            base: format!("http://{}", server.local_addr()),
            server,
            client: reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?,
            inbound,
            metrics,
            control,
            events,
            arrivals: arrivals_seen,
        };
        // Ready once the engine has started taking events from the API.
        let mut ready = 0;
        for _ in 0..200 {
            ready = h.call(Method::GET, "/readyz", None, &[], None).await?.status;
            if ready == 200 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(ready, 200, "the engine started its inbound source");

        let first = h.post_event(r#"{"user": 0, "kind": "activity"}"#, Some("e2e-1")).await?;
        assert_eq!(first.status, 202, "{}", first.text());
        let again = h.post_event(r#"{"user": 0, "kind": "activity"}"#, Some("e2e-1")).await?;
        assert_eq!(again.status, 200, "{}", again.text());
        let opt_out = h.post_event(r#"{"user": 1, "kind": "opt_out"}"#, None).await?;
        assert_eq!(opt_out.status, 202, "{}", opt_out.text());
        let put =
            h.call(Method::PUT, "/v1/users/500", Some(TOKEN), &[], Some(r#"{"utc_offset_minutes": 0}"#.into())).await?;
        assert_eq!(put.status, 201, "{}", put.text());

        // User 0 is messaged within the next engine hours; the opt-out is recorded.
        wait_for_metric(&h, r#"gavat_sends_total{outcome="delivered"}"#, 1.0).await?;
        let _ = stop_engine.send(());
        let result = engine.await??;
        wait_for_metric(&h, r#"gavat_inbound_events_total{kind="opt_out"}"#, 1.0).await?;
        let samples = parse_metrics(&h.call(Method::GET, "/metrics", None, &[], None).await?.text())?;
        assert!(samples.get("gavat_reservation_seconds_count").is_some_and(|n| *n >= 1.0), "{samples:?}");
        assert_eq!(samples.get("gavat_queue_depth"), Some(&0.0), "every reservation settled");
        h.server.stop(true).await;
        Ok::<_, Box<dyn std::error::Error>>(result)
    })?;
    assert_eq!(result.scheduler.joined_users, 1, "the PUT user joined the running engine");
    assert_eq!(result.opted_out_users, 1);
    assert_eq!(result.scheduler.unknown_users, 0);
    assert_eq!(result.scheduler.cap_violations, 0);
    Ok(())
}
