//! What the engine does with each transport outcome: a 429 waits its `retry_after`; an
//! unknown outcome counts against the caps and is never resent; a block is a final
//! opt-out; an opt-out event stops everything at once; a transient failure is retried.

use std::sync::Arc;

use gavat::clock::VirtualClock;
use gavat::domain::{DAY, HOUR, InboundEvent, InboundKind, Timestamp, UserId, UserProfile};
use gavat::engine::{Engine, RunResult, run_on_virtual_runtime};
use gavat::store::{LogKind, MemoryStore};
use gavat::transport::{Delivered, InboundSink, InboundSource, MemoryTransport, TransportError};

const START: Timestamp = Timestamp(1_767_225_600);

/// A warm lead (every 2 days, 2 a day, 12 h cooldown, 9–21 local) in UTC.
fn warm_lead() -> UserProfile {
    super::common::warm_lead(0, START)
}

fn run(transport: Arc<MemoryTransport>, store: Arc<MemoryStore>, days: i64) -> RunResult {
    let engine = Engine::builder()
        .clock(Arc::new(VirtualClock::new(START)))
        .transport(transport)
        .store(store)
        .users(vec![warm_lead()])
        .horizon(START.plus(days * DAY))
        .seed(5)
        .build()
        .expect("all seams given");
    run_on_virtual_runtime(|| engine.run()).expect("runtime").expect("run")
}

fn sends(store: &MemoryStore) -> Vec<(Timestamp, &'static str)> {
    store.log().iter().filter(|e| e.kind == LogKind::Send).map(|e| (e.at, e.outcome.unwrap().as_str())).collect()
}

/// A 429 is not counted, and the next attempt comes no earlier than `retry_after`.
#[test]
fn rate_limit_waits_retry_after() {
    let transport = Arc::new(MemoryTransport::new());
    transport.script([Err(TransportError::RateLimited { retry_after_secs: 900 }), Ok(Delivered)]);
    let store = Arc::new(MemoryStore::keeping_everything());
    let result = run(transport.clone(), store.clone(), 1);
    let attempts = transport.sent();
    assert!(attempts.len() >= 2, "{attempts:?}");
    assert!(attempts[1].at.secs() - attempts[0].at.secs() >= 900);
    assert_eq!(sends(&store)[0].0, attempts[1].at, "only the delivered attempt is logged as a send");
    assert_eq!(
        result
            .segments
            .iter()
            .map(|s| s.failed.get(&gavat::transport::FailureKind::RateLimited).copied().unwrap_or(0))
            .sum::<u64>(),
        1
    );
    assert_eq!(result.scheduler.cap_violations, 0);
}

/// An unknown outcome counts against the caps: the next message waits the full cooldown,
/// and the same message is never sent twice.
#[test]
fn unknown_outcome_counts_and_is_not_resent() {
    let transport = Arc::new(MemoryTransport::new());
    transport.script([Err(TransportError::Unknown { reason: "timeout after sending".into() })]);
    let store = Arc::new(MemoryStore::keeping_everything());
    run(transport.clone(), store.clone(), 3);
    let logged = sends(&store);
    assert_eq!(logged[0].1, "unknown");
    assert!(logged.len() >= 2, "{logged:?}");
    assert!(logged[1].0.secs() - logged[0].0.secs() >= 12 * HOUR, "{logged:?}");
    let attempts = transport.sent();
    assert_eq!(attempts.len(), logged.len(), "every attempt was logged once: none was resent");
    assert!(attempts.windows(2).all(|w| w[0].id != w[1].id));
}

/// A blocked bot is a final opt-out: one attempt, then silence for the rest of the run.
#[test]
fn block_is_a_final_opt_out() {
    let transport = Arc::new(MemoryTransport::new());
    transport.script([Err(TransportError::Blocked)]);
    let store = Arc::new(MemoryStore::keeping_everything());
    let result = run(transport.clone(), store.clone(), 10);
    assert_eq!(transport.sent().len(), 1);
    assert_eq!(result.opted_out_users, 1);
    assert!(store.log().iter().any(|e| e.kind == LogKind::OptOut));
}

/// An opt-out event takes effect at once: nothing is sent after it, ever.
#[test]
fn opt_out_event_stops_everything() {
    let opt_out_at = START.plus(2 * DAY + 3 * HOUR);
    let transport = Arc::new(MemoryTransport::new().with_inbound([InboundEvent {
        at: opt_out_at,
        user: UserId(0),
        kind: InboundKind::OptOut,
        group: None,
        source: None,
    }]));
    let store = Arc::new(MemoryStore::keeping_everything());
    let result = run(transport.clone(), store.clone(), 20);
    let attempts = transport.sent();
    assert!(!attempts.is_empty());
    assert!(attempts.iter().all(|m| m.at < opt_out_at), "{attempts:?}");
    assert_eq!(result.opted_out_users, 1);
    assert_eq!(transport.acknowledged().len(), 1, "the event was acknowledged to the transport");
}

/// A transient failure is retried after a backoff, with caps re-checked.
#[test]
fn transient_failure_is_retried() {
    let transport = Arc::new(MemoryTransport::new());
    transport.script([Err(TransportError::Transient { reason: "connection refused".into() }), Ok(Delivered)]);
    let store = Arc::new(MemoryStore::keeping_everything());
    run(transport.clone(), store.clone(), 1);
    let attempts = transport.sent();
    assert!(attempts.len() >= 2);
    assert!(attempts[1].at.secs() - attempts[0].at.secs() >= 60);
    assert_eq!(sends(&store)[0].0, attempts[1].at);
}

/// An event delivered twice by its source (the same source id: a redelivered update) is
/// taken in once and acknowledged both times; each is acknowledged only once the log that
/// holds it has been written (the source checks the store at every acknowledgement).
#[test]
fn a_redelivered_event_is_taken_in_once_and_acknowledged_after_it_is_stored() {
    /// Checks, at every acknowledgement of a reply, that the store already holds it.
    #[derive(Debug)]
    struct Checking {
        inner: MemoryTransport,
        store: Arc<MemoryStore>,
        acked_unstored: std::sync::atomic::AtomicU64,
    }
    impl InboundSource for Checking {
        fn start(&self, sink: InboundSink) {
            self.inner.start(sink);
        }
        fn acknowledge(&self, event: &InboundEvent) {
            let stored = self.store.log().iter().any(|e| e.kind == LogKind::Response && e.at == event.at);
            if event.kind == InboundKind::Reply && !stored {
                self.acked_unstored.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            self.inner.acknowledge(event);
        }
    }
    let reply = InboundEvent {
        at: START.plus(DAY + 13 * HOUR),
        user: UserId(0),
        kind: InboundKind::Reply,
        group: None,
        source: Some(4_242),
    };
    let store = Arc::new(MemoryStore::keeping_everything());
    let source = Arc::new(Checking {
        inner: MemoryTransport::new().with_inbound([reply, reply]),
        store: store.clone(),
        acked_unstored: std::sync::atomic::AtomicU64::new(0),
    });
    let engine = Engine::builder()
        .clock(Arc::new(VirtualClock::new(START)))
        .sender(Arc::new(MemoryTransport::new()))
        .inbound_source(source.clone())
        .store(store.clone())
        .users(vec![warm_lead()])
        .horizon(START.plus(3 * DAY))
        .seed(5)
        .build()
        .expect("all seams given");
    let result = run_on_virtual_runtime(|| engine.run()).expect("runtime").expect("run");
    let replies = store.log().iter().filter(|e| e.kind == LogKind::Response).count();
    assert_eq!(replies, 1, "taken in once");
    assert_eq!(result.scheduler.duplicate_events, 1);
    let acked: Vec<_> = source.inner.acknowledged().into_iter().filter(|e| e.source == Some(4_242)).collect();
    assert_eq!(acked.len(), 2, "both deliveries acknowledged, so the source moves on");
    assert_eq!(source.acked_unstored.load(std::sync::atomic::Ordering::Relaxed), 0, "acknowledged before stored");
}

/// A virtual clock that stands for a rehearsal at 600×: a wall second is 600 engine seconds.
#[derive(Debug)]
struct Rehearsal(VirtualClock);

impl gavat::clock::Clock for Rehearsal {
    fn now(&self) -> Timestamp {
        self.0.now()
    }
    fn sleep_until(&self, at: Timestamp) -> Option<gavat::clock::SleepFuture> {
        self.0.sleep_until(at)
    }
    fn jumps(&self) -> bool {
        self.0.jumps()
    }
    fn engine_secs_of_wall(&self, wall_secs: u32) -> i64 {
        i64::from(wall_secs) * 600
    }
}

/// In a rehearsal a 429's `retry_after` (wall seconds) is waited in engine time scaled up:
/// 5 wall seconds at 600× are 3,000 engine seconds, not 5 — the engine does not ask again
/// a moment of wall time later.
#[test]
fn a_rehearsal_waits_retry_after_in_wall_time() {
    let transport = Arc::new(MemoryTransport::new());
    transport.script([Err(TransportError::RateLimited { retry_after_secs: 5 }), Ok(Delivered)]);
    let engine = Engine::builder()
        .clock(Arc::new(Rehearsal(VirtualClock::new(START))))
        .transport(transport.clone())
        .store(Arc::new(MemoryStore::keeping_everything()))
        .users(vec![warm_lead()])
        .horizon(START.plus(DAY))
        .seed(5)
        .build()
        .expect("all seams given");
    run_on_virtual_runtime(|| engine.run()).expect("runtime").expect("run");
    let attempts = transport.sent();
    assert!(attempts.len() >= 2, "{attempts:?}");
    let waited = attempts[1].at.secs() - attempts[0].at.secs();
    assert!(waited >= 3_000, "waited {waited} engine seconds");
}
