//! Sends in flight on a real (scaled) clock: a slow transport call holds nobody else, an
//! unanswered one becomes `unknown` at the send timeout and counts, and a shutdown waits for
//! what is in flight, then ends the run.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gavat::clock::ScaledClock;
use gavat::domain::{Destination, HOUR, OutboundMessage, Timestamp, UserId, UserProfile};
use gavat::engine::{Engine, RunResult};
use gavat::store::{LogKind, MemoryStore};
use gavat::transport::{Delivered, SendFuture, Sender};

/// 11:58 UTC: warm leads' optimal hours (12–14 local, UTC users) start two minutes later.
const START: Timestamp = Timestamp(1_767_225_600 + 11 * HOUR + 58 * 60);
/// Engine seconds per wall second: an engine hour in one wall second.
const SPEED: u32 = 3_600;

fn warm_lead(id: u64) -> UserProfile {
    super::common::warm_lead(id, START)
}

/// Delivers everything; calls to the users in `slow` take `delay` of wall time (or never
/// answer when `delay` is `None`). Records each call's message.
#[derive(Debug)]
struct SlowTransport {
    slow: HashSet<u64>,
    delay: Option<Duration>,
    sent: Mutex<Vec<OutboundMessage>>,
}

impl SlowTransport {
    fn new(slow: &[u64], delay: Option<Duration>) -> Arc<SlowTransport> {
        Arc::new(SlowTransport { slow: slow.iter().copied().collect(), delay, sent: Mutex::new(Vec::new()) })
    }

    fn sent_to(&self, user: u64) -> Vec<Timestamp> {
        let sent = self.sent.lock().expect("lock");
        sent.iter().filter(|m| m.to == Destination::User(UserId(user))).map(|m| m.at).collect()
    }
}

impl Sender for SlowTransport {
    fn send(&self, message: &OutboundMessage) -> SendFuture {
        self.sent.lock().expect("lock").push(message.clone());
        let Destination::User(user) = message.to else { return Box::pin(std::future::ready(Ok(Delivered))) };
        match (self.slow.contains(&user.0), self.delay) {
            (false, _) => Box::pin(std::future::ready(Ok(Delivered))),
            (true, Some(delay)) => Box::pin(async move {
                tokio::time::sleep(delay).await;
                Ok(Delivered)
            }),
            (true, None) => Box::pin(std::future::pending()),
        }
    }
}

/// Runs ten warm leads on a scaled clock for `hours` engine hours (or until `shutdown_after`
/// of wall time), returning the run and the store.
fn run(
    transport: Arc<SlowTransport>,
    hours: i64,
    send_timeout: Duration,
    shutdown_after: Option<Duration>,
) -> (RunResult, Arc<MemoryStore>) {
    let store = Arc::new(MemoryStore::keeping_everything());
    let engine = Engine::builder()
        .clock(Arc::new(ScaledClock::new(START, SPEED)))
        .sender(transport)
        .inbound_source(Arc::new(gavat::transport::MemoryTransport::new()))
        .store(store.clone())
        .users((0..10).map(warm_lead).collect())
        .horizon(START.plus(hours * HOUR))
        .seed(11)
        .send_timeout(send_timeout)
        .build()
        .expect("all seams given");
    let result = actix_rt::System::new().block_on(async move {
        match shutdown_after {
            Some(after) => engine.run_until(tokio::time::sleep(after)).await,
            None => engine.run().await,
        }
    });
    (result.expect("run"), store)
}

/// A transport call that takes two wall seconds (two engine hours at this speed) for user 0
/// does not move anybody else's send: every other user goes out at the same engine minute
/// as in a run where nobody is slow.
#[test]
fn a_slow_send_delays_no_other_user() {
    let fast = SlowTransport::new(&[], None);
    run(fast.clone(), 3, Duration::from_secs(10), None);
    let slow = SlowTransport::new(&[0], Some(Duration::from_secs(2)));
    let (result, _) = run(slow.clone(), 3, Duration::from_secs(10), None);
    assert_eq!(result.scheduler.cap_violations, 0);
    for user in 1..10 {
        let (a, b) = (fast.sent_to(user), slow.sent_to(user));
        assert_eq!(a.len(), b.len(), "user {user}: {a:?} vs {b:?}");
        assert!(!a.is_empty(), "user {user} was messaged");
        for (x, y) in a.iter().zip(&b) {
            // Scheduling noise on a shared machine: well under the two hours a stall would cost.
            assert!((x.secs() - y.secs()).abs() <= 15 * 60, "user {user}: {x:?} vs {y:?}");
        }
    }
    assert_eq!(slow.sent_to(0).len(), 1, "the slow user's send was made once");
}

/// A send that never answers ends as `unknown` at the send timeout: it is logged, counted
/// against the caps (no second send to that user inside the cooldown), and never resent.
#[test]
fn an_unanswered_send_is_unknown_and_never_resent() {
    let hung = SlowTransport::new(&[0], None);
    let (result, store) = run(hung.clone(), 3, Duration::from_millis(300), None);
    assert_eq!(hung.sent_to(0).len(), 1, "sent once, never again");
    let unknown: Vec<_> =
        store.log().iter().filter(|e| e.kind == LogKind::Send && e.user == UserId(0)).map(|e| e.outcome).collect();
    assert_eq!(unknown, vec![Some(gavat::domain::SendOutcome::Unknown)]);
    assert_eq!(result.scheduler.cap_violations, 0);
}

/// A shutdown in the middle of a run ends it early, after the send in flight has its answer:
/// nothing is left half-done and the run ends before its horizon.
#[test]
fn shutdown_waits_for_sends_in_flight_then_ends() {
    let slow = SlowTransport::new(&[0, 1, 2, 3, 4, 5, 6, 7, 8, 9], Some(Duration::from_millis(400)));
    let (result, store) = run(slow.clone(), 24 * 30, Duration::from_secs(10), Some(Duration::from_millis(1_500)));
    let calls = slow.sent.lock().expect("lock").len();
    let logged = store.log().iter().filter(|e| e.kind == LogKind::Send).count();
    assert!(calls > 0, "some sends were made before the shutdown");
    assert_eq!(logged, calls, "every send handed to the transport was settled and logged");
    assert!(
        result.scheduler.ended_at < START.plus(24 * HOUR),
        "ended at the shutdown: {:?}",
        result.scheduler.ended_at
    );
}
