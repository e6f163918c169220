//! The engine on the SQLite cap ledger: every ledger call answers at once (nothing is held
//! back as unavailable, through the group commit of two shard threads), and a restart — the
//! ledger closed, the file reopened by a new engine — keeps every cap and counts every send
//! of both runs.

use std::sync::Arc;

use gavat::clock::VirtualClock;
use gavat::domain::{DAY, Destination, HOUR, Timestamp, UserId};
use gavat::engine::{Engine, RunResult, run_on_virtual_runtime};
use gavat::ledger::{CapLedger, LedgerUser, Recovery, SqliteLedger};
use gavat::policy::SuppressReason;
use gavat::store::MemoryStore;
use gavat::transport::MemoryTransport;

type TestResult<T = ()> = Result<T, Box<dyn std::error::Error>>;

const START: Timestamp = Timestamp(1_767_225_600);

/// A process's run: open the ledger in the store file, settle what an earlier process left,
/// run the engine on it for two days, close it.
fn run_from(path: &std::path::Path, start: Timestamp, transport: Arc<MemoryTransport>) -> TestResult<RunResult> {
    let ledger = Arc::new(SqliteLedger::open(path)?);
    let recovered = futures::executor::block_on(ledger.recover())?;
    assert_eq!(recovered, Recovery::default(), "a clean shutdown leaves nothing to recover");
    let engine = Engine::builder()
        .clock(Arc::new(VirtualClock::new(start)))
        .transport(transport)
        .store(Arc::new(MemoryStore::counting()))
        .users(vec![super::common::warm_lead(0, START), super::common::warm_lead(1, START)])
        .horizon(start.plus(2 * DAY))
        .seed(5)
        .threads(2)
        .ledger(ledger)
        .build()?;
    Ok(run_on_virtual_runtime(|| engine.run())??)
}

/// Two processes in a row on one store file: neither is ever held back by the gate, no cap
/// breaks, the second waits out the caps the first one's sends left (its own counters start
/// empty), and the reopened ledger counts every send of both.
#[test]
fn the_engine_keeps_the_caps_across_a_restart_on_the_sqlite_ledger() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("crm.db");
    let first = Arc::new(MemoryTransport::new());
    let second = Arc::new(MemoryTransport::new());
    for (start, transport) in [(START, &first), (START.plus(2 * DAY), &second)] {
        let result = run_from(&path, start, transport.clone())?;
        let held: u64 = result
            .segments
            .iter()
            .map(|s| s.suppressed.get(&SuppressReason::GateUnavailable).copied().unwrap_or(0))
            .sum();
        assert_eq!(held, 0, "every ledger call answered at once");
        assert_eq!(result.scheduler.cap_violations, 0);
    }
    let ledger = SqliteLedger::open(&path)?;
    for user in [0u64, 1] {
        let to = |t: &MemoryTransport| -> Vec<Timestamp> {
            t.sent().iter().filter(|m| m.to == Destination::User(UserId(user))).map(|m| m.at).collect()
        };
        let (a, b) = (to(&first), to(&second));
        assert!(!a.is_empty() && !b.is_empty(), "user {user} is messaged in both runs: {a:?} then {b:?}");
        let state: LedgerUser = futures::executor::block_on(ledger.load(UserId(user)))?;
        assert!(state.pending.is_empty(), "user {user}: every reservation was settled");
        assert_eq!(state.counted.last_sent, b.last().copied(), "user {user}: the last send is counted");
        if let (Some(end_of_first), Some(start_of_second)) = (a.last(), b.first()) {
            // Warm leads: 12 h cooldown, every other day.
            assert!(start_of_second.secs() - end_of_first.secs() >= 12 * HOUR, "user {user}: {a:?} then {b:?}");
        }
    }
    Ok(())
}
