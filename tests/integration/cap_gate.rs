//! The cap gate decides: every send and every group share is reserved through the ledger
//! before the transport is called, a send the ledger denies is held back even when the
//! user's own counters would allow it (another engine sent, or a restart forgot), and a
//! ledger that cannot answer holds everything back (fail closed).

use std::sync::Arc;

use gavat::clock::VirtualClock;
use gavat::domain::{Caps, DAY, HOUR, HourMask, Timestamp, UserId, UserProfile, Zone};
use gavat::engine::{Engine, RunResult, run_on_virtual_runtime};
use gavat::ledger::{
    CapLedger, Counted, LedgerError, LedgerFuture, LedgerUser, MemoryLedger, MessageId, Reservation, Reserved,
};
use gavat::store::{LogKind, MemoryStore};
use gavat::transport::MemoryTransport;

const START: Timestamp = Timestamp(1_767_225_600);

fn warm_lead(id: u64) -> UserProfile {
    super::common::warm_lead(id, START)
}

fn run(ledger: Arc<dyn CapLedger>, transport: Arc<MemoryTransport>, store: Arc<MemoryStore>) -> RunResult {
    let engine = Engine::builder()
        .clock(Arc::new(VirtualClock::new(START)))
        .transport(transport)
        .store(store)
        .users(vec![warm_lead(0), warm_lead(1)])
        .horizon(START.plus(2 * DAY))
        .seed(5)
        .threads(2)
        .ledger(ledger)
        .build()
        .expect("all seams given");
    run_on_virtual_runtime(|| engine.run()).expect("runtime").expect("run")
}

/// Another engine already sent user 0 a message at 11:00 with a 12-hour cooldown: this
/// engine, whose own counters know nothing of it, waits for the ledger's cooldown; user 1,
/// untouched, is messaged as usual. Every send this engine made is counted in the ledger.
#[test]
fn the_ledger_decides_over_the_users_own_counters() {
    let ledger = Arc::new(MemoryLedger::default());
    let earlier = START.plus(11 * HOUR);
    let caps = Caps { daily_limit: 1, cooldown_secs: 12 * HOUR, allowed_hours: HourMask::ALL_DAY, period_days: 1 };
    let first = Reservation { message: MessageId(u64::MAX >> 1), user: UserId(0), at: earlier, caps, zone: Zone::UTC };
    assert_eq!(ledger.reserve_now(first), Ok(Reserved::Granted));
    ledger.settle_now(first.message, Some(Counted::Delivered)).expect("confirm");

    let transport = Arc::new(MemoryTransport::new());
    let result = run(ledger.clone(), transport.clone(), Arc::new(MemoryStore::keeping_everything()));
    let to = |user: u64| -> Vec<Timestamp> {
        transport
            .sent()
            .iter()
            .filter(|m| m.to == gavat::domain::Destination::User(UserId(user)))
            .map(|m| m.at)
            .collect()
    };
    let zero = to(0);
    assert!(!to(1).is_empty(), "user 1 is messaged");
    assert!(
        zero.iter().all(|t| t.secs() >= earlier.secs() + 12 * HOUR),
        "user 0 inside the ledger's cooldown: {zero:?}"
    );
    assert_eq!(result.scheduler.cap_violations, 0);
    // Every send the engine made is in the ledger: user 1's state there matches its sends.
    let state: LedgerUser = futures::executor::block_on(ledger.load(UserId(1))).expect("load");
    assert_eq!(state.counted.last_sent, to(1).last().copied());
    assert!(state.pending.is_empty(), "every reservation settled");
}

/// A ledger that never answers: nothing at all is sent, and the report says why.
#[test]
fn an_unavailable_gate_holds_every_send_back() {
    #[derive(Debug)]
    struct Down;
    fn down<T: Send + 'static>() -> LedgerFuture<T> {
        Box::pin(std::future::ready(Err(LedgerError::Unavailable { reason: "connection refused".into() })))
    }
    impl CapLedger for Down {
        fn reserve(&self, _: Reservation) -> LedgerFuture<Reserved> {
            down()
        }
        fn reserve_share(&self, _: gavat::ledger::ShareReservation) -> LedgerFuture<Reserved> {
            down()
        }
        fn confirm(&self, _: MessageId, _: Counted) -> LedgerFuture<()> {
            down()
        }
        fn release(&self, _: MessageId) -> LedgerFuture<()> {
            down()
        }
        fn opt_out(&self, _: UserId) -> LedgerFuture<()> {
            down()
        }
        fn load(&self, _: UserId) -> LedgerFuture<LedgerUser> {
            down()
        }
    }
    let transport = Arc::new(MemoryTransport::new());
    let store = Arc::new(MemoryStore::keeping_everything());
    let result = run(Arc::new(Down), transport.clone(), store.clone());
    assert!(transport.sent().is_empty(), "fail closed: {:?}", transport.sent());
    assert_eq!(store.log().iter().filter(|e| e.kind == LogKind::Send).count(), 0);
    let held: u64 = result
        .segments
        .iter()
        .map(|s| s.suppressed.get(&gavat::policy::SuppressReason::GateUnavailable).copied().unwrap_or(0))
        .sum();
    assert!(held > 0, "the report counts sends held back by the gate");
}

/// A send the platform refused with a 429 is released in the ledger and its retry is a new
/// reservation: the delivered retry is what the ledger counts, and nothing stays pending.
#[test]
fn a_rate_limited_send_is_released_and_its_retry_counted() {
    let ledger = Arc::new(MemoryLedger::default());
    let transport = Arc::new(MemoryTransport::new());
    transport.script([Err(gavat::transport::TransportError::RateLimited { retry_after_secs: 900 })]);
    run(ledger.clone(), transport.clone(), Arc::new(MemoryStore::keeping_everything()));
    let sent = transport.sent();
    let ids: std::collections::BTreeSet<u64> = sent.iter().map(|m| m.id).collect();
    assert_eq!(ids.len(), sent.len(), "every attempt has its own message id");
    for user in [0, 1] {
        let state: LedgerUser = futures::executor::block_on(ledger.load(UserId(user))).expect("load");
        let last = sent.iter().filter(|m| m.to == gavat::domain::Destination::User(UserId(user))).map(|m| m.at).max();
        assert_eq!(state.counted.last_sent, last, "user {user}");
        assert!(state.pending.is_empty());
    }
}

/// Two runs in a row on one ledger (a restart): the second run's message ids are new, so
/// the ledger counts every send of both runs, and the second run waits out the caps the
/// first run's sends left — though its own counters start empty.
#[test]
fn a_restart_on_the_same_ledger_keeps_the_caps_and_counts_every_send() {
    let ledger = Arc::new(MemoryLedger::default());
    let run_from = |start: Timestamp, transport: Arc<MemoryTransport>| {
        let engine = Engine::builder()
            .clock(Arc::new(VirtualClock::new(start)))
            .transport(transport)
            .store(Arc::new(MemoryStore::counting()))
            .users(vec![warm_lead(0), warm_lead(1)])
            .horizon(start.plus(2 * DAY))
            .seed(5)
            .threads(2)
            .ledger(ledger.clone())
            .build()
            .expect("all seams given");
        run_on_virtual_runtime(|| engine.run()).expect("runtime").expect("run")
    };
    let first = Arc::new(MemoryTransport::new());
    run_from(START, first.clone());
    let restart = START.plus(2 * DAY);
    let second = Arc::new(MemoryTransport::new());
    run_from(restart, second.clone());
    for user in [0u64, 1] {
        let to = |t: &MemoryTransport| -> Vec<Timestamp> {
            t.sent().iter().filter(|m| m.to == gavat::domain::Destination::User(UserId(user))).map(|m| m.at).collect()
        };
        let (a, b) = (to(&first), to(&second));
        assert!(!b.is_empty(), "user {user} is messaged after the restart");
        let state: LedgerUser = futures::executor::block_on(ledger.load(UserId(user))).expect("load");
        let last = a.iter().chain(&b).max().copied();
        assert_eq!(state.counted.last_sent, last, "user {user}: every send of both runs is counted");
        if let (Some(end_of_first), Some(start_of_second)) = (a.last(), b.first()) {
            // Warm leads: 12 h cooldown, every other day.
            assert!(start_of_second.secs() - end_of_first.secs() >= 12 * HOUR, "user {user}: {a:?} then {b:?}");
        }
    }
}
