//! Row 42: an opt-out recorded by engine A while engine B holds reservations for that user.
//! B's outbox step ([`CapLedger::sending`], RELIABILITY.md rule 7's second opt-out check)
//! sees the opt-out and refuses the send, on two Redis ledgers sharing a prefix and on two
//! SQLite ledgers sharing a file; and an engine whose reservations are overtaken by another
//! engine's opt-outs records them as suppressed for the opt-out and sends nothing.

use std::sync::Arc;

use gavat::clock::VirtualClock;
use gavat::domain::{Caps, DAY, HOUR, HourMask, Timestamp, UserId, Zone};
use gavat::engine::{Engine, run_on_virtual_runtime};
use gavat::ledger::{
    CapLedger, Counted, LedgerError, LedgerFuture, LedgerUser, MessageId, Recovery, RedisLedger, Reservation, Reserved,
    ShareReservation, SqliteLedger,
};
use gavat::policy::SuppressReason;
use gavat::store::MemoryStore;
use gavat::transport::MemoryTransport;
use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64Mcg;

use crate::fault_report::{RowReport, RunKind};
use gavat::ledger::conformance::{self, Settings};

use crate::redis_server::{Error, Prefix, PrivateRedis, shared};

/// Users per run: each gets one reservation on engine B.
const USERS: u64 = 60;

/// Polls a ledger future once, as the engine does (both ledgers answer at once).
fn now<T>(f: LedgerFuture<T>) -> Result<T, LedgerError> {
    futures::FutureExt::now_or_never(f).ok_or_else(|| LedgerError::Unavailable { reason: "not ready".into() })?
}

fn reservation(message: u64, user: u64) -> Reservation {
    Reservation {
        message: MessageId(message),
        user: UserId(user),
        at: Timestamp(20_000 * DAY + 10 * HOUR),
        caps: Caps { daily_limit: 5, cooldown_secs: 0, allowed_hours: HourMask::ALL_DAY, period_days: 1 },
        zone: Zone::UTC,
    }
}

/// What one race between the engines showed.
#[derive(Debug, Default)]
struct Race {
    /// Reservations B held when A recorded their users' opt-outs.
    overtaken: u64,
    /// Of those, `sending` let through (the invariant: 0).
    sent_after_opt_out: u64,
    /// Of those, still pending after B released them (the invariant: 0).
    left_pending: u64,
    /// Reservations of users who stayed opted in.
    control: u64,
    /// Of those, `sending` refused (the check must not refuse everyone).
    control_refused: u64,
}

/// B reserves one message for each user; A, the other engine on the same store, then opts a
/// seeded two thirds of them out, in a seeded order interleaved with B's outbox steps; B's
/// `sending` must refuse exactly those, and B releases what it refused.
fn race(a: &dyn CapLedger, b: &dyn CapLedger, seed: u64) -> Result<Race, Error> {
    let mut rng = Pcg64Mcg::seed_from_u64(seed);
    let mut held = Vec::new();
    for user in 0..USERS {
        let message = seed << 20 | user;
        assert_eq!(now(b.reserve(reservation(message, user)))?, Reserved::Granted, "user {user}");
        held.push((message, user, rng.random_range(0..3u32) != 0));
    }
    // A records the opt-outs first for a seeded half, and the rest between B's outbox steps.
    let mut race = Race::default();
    for &(_, user, opts_out) in &held {
        if opts_out && rng.random_range(0..2u32) == 0 {
            now(a.opt_out(UserId(user)))?;
        }
    }
    for &(message, user, opts_out) in &held {
        if opts_out {
            now(a.opt_out(UserId(user)))?; // a repeat for the first half: harmless
            race.overtaken += 1;
            match now(b.sending(MessageId(message))) {
                Err(LedgerError::OptedOut { .. }) => now(b.release(MessageId(message)))?,
                Ok(()) => race.sent_after_opt_out += 1,
                Err(e) => return Err(e.into()),
            }
            let state: LedgerUser = now(a.load(UserId(user)))?;
            race.left_pending += u64::from(state.pending.iter().any(|(m, _)| m.0 == message));
        } else {
            race.control += 1;
            match now(b.sending(MessageId(message))) {
                Ok(()) => now(b.confirm(MessageId(message), Counted::Delivered))?,
                Err(LedgerError::OptedOut { .. }) => race.control_refused += 1,
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(race)
}

fn report(row: &str, seed: u64, race: &Race) -> RowReport {
    let mut report = RowReport::new(row, seed, RunKind::Safety);
    report
        .fired("opt-outs recorded by engine A over engine B's reservations", race.overtaken)
        .figure("sends after opt-out beyond the in-flight bound 0 / N", race.sent_after_opt_out, race.overtaken)
        .figure("refused reservations left pending / refused", race.left_pending, race.overtaken)
        .figure("opted-in users refused / opted-in users", race.control_refused, race.control);
    report
}

/// Row 42 on Redis: two `RedisLedger` connections on one prefix are engines A and B; every
/// reservation B holds for a user A then opts out is refused by B's `sending`. (A private
/// server without persistence, so that the report states its fsync policy.)
#[test]
fn row_42_an_opt_out_by_engine_a_stops_engine_bs_reserved_sends_on_redis() -> Result<(), Error> {
    let seed = 42;
    let redis = PrivateRedis::start(&[])?;
    let url = redis.url();
    let a = RedisLedger::connect(&url, "row42:")?;
    let b = RedisLedger::connect(&url, "row42:")?;
    let race = race(&a, &b, seed)?;
    report("42", seed, &race).fsync("none").emit();
    assert_eq!((a.paused(), b.paused()), (None, None));
    Ok(())
}

/// Row 42 on SQLite: two ledgers on one file (two `gavat run` processes on one store) are
/// engines A and B; every reservation B holds for a user A then opts out is refused.
#[test]
fn row_42_an_opt_out_by_engine_a_stops_engine_bs_reserved_sends_on_sqlite() -> Result<(), Error> {
    let seed = 4242;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("crm.db");
    let a = SqliteLedger::open(&path)?;
    let b = SqliteLedger::open(&path)?;
    let race = race(&a, &b, seed)?;
    report("42-sqlite", seed, &race).emit();
    Ok(())
}

/// The Redis ledger's outbox steps (`sending` among them, with its opt-out check, and
/// `recover`) answer as the conformance oracle does, as the SQLite ledger's do: the harness
/// produces `OptedOut` refusals, and every one matches.
#[test]
fn the_redis_ledger_passes_the_outbox_harness_with_its_opt_out_check() -> Result<(), Error> {
    let (url, _own) = shared()?;
    let mut prefixes = Vec::new();
    let settings = Settings { cases: 60, ..Settings::default() };
    let coverage = conformance::check_outbox(
        || {
            let prefix = Prefix::new(&url, "outbox");
            let ledger = RedisLedger::connect(&url, &prefix.text).expect("connect");
            prefixes.push(prefix);
            ledger
        },
        &settings,
    )
    .map_err(|m| m.to_string())?;
    for answer in ["Err(OptedOut", "Err(NotReserved", "Ok(Recovery"] {
        assert!(coverage.saw(answer), "the harness never produced {answer}: {:?}", coverage.answers);
    }
    Ok(())
}

/// Engine B's ledger, with engine A recording the user's opt-out on the same store right
/// after each of B's grants — the worst timing: every reservation B holds is overtaken.
#[derive(Debug)]
struct OptOutAfterGrant {
    b: Arc<dyn CapLedger>,
    a: Arc<dyn CapLedger>,
    overtaken: std::sync::atomic::AtomicU64,
}

impl CapLedger for OptOutAfterGrant {
    fn reserve(&self, request: Reservation) -> LedgerFuture<Reserved> {
        let answer = now(self.b.reserve(request));
        if answer == Ok(Reserved::Granted) && now(self.a.opt_out(request.user)).is_ok() {
            self.overtaken.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        Box::pin(std::future::ready(answer))
    }
    fn reserve_share(&self, request: ShareReservation) -> LedgerFuture<Reserved> {
        self.b.reserve_share(request)
    }
    fn confirm(&self, message: MessageId, counted: Counted) -> LedgerFuture<()> {
        self.b.confirm(message, counted)
    }
    fn release(&self, message: MessageId) -> LedgerFuture<()> {
        self.b.release(message)
    }
    fn opt_out(&self, user: UserId) -> LedgerFuture<()> {
        self.b.opt_out(user)
    }
    fn re_consent(&self, user: UserId) -> LedgerFuture<()> {
        self.b.re_consent(user)
    }
    fn load(&self, user: UserId) -> LedgerFuture<LedgerUser> {
        self.b.load(user)
    }
    fn sending(&self, message: MessageId) -> LedgerFuture<()> {
        self.b.sending(message)
    }
    fn recover(&self) -> LedgerFuture<Recovery> {
        self.b.recover()
    }
}

/// The engine on SQLite whose every reservation is overtaken by another engine's opt-out:
/// it sends nothing, records each as suppressed for the opt-out (not as a gate failure),
/// releases every reservation, and plans nothing more for those users.
#[test]
fn the_engine_records_an_opt_out_seen_at_sending_as_suppressed() -> Result<(), Error> {
    let start = Timestamp(1_767_225_600);
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("crm.db");
    let b: Arc<dyn CapLedger> = Arc::new(SqliteLedger::open(&path)?);
    let a: Arc<dyn CapLedger> = Arc::new(SqliteLedger::open(&path)?);
    let ledger = Arc::new(OptOutAfterGrant { b: b.clone(), a, overtaken: Default::default() });
    let transport = Arc::new(MemoryTransport::new());
    let users: Vec<_> = (0..4).map(|id| crate::common::warm_lead(id, start)).collect();
    let engine = Engine::builder()
        .clock(Arc::new(VirtualClock::new(start)))
        .transport(transport.clone())
        .store(Arc::new(MemoryStore::counting()))
        .users(users)
        .horizon(start.plus(2 * DAY))
        .seed(42)
        .threads(1)
        .ledger(ledger.clone())
        .build()?;
    let result = run_on_virtual_runtime(|| engine.run())??;
    let suppressed =
        |reason| -> u64 { result.segments.iter().map(|s| s.suppressed.get(&reason).copied().unwrap_or(0)).sum() };
    let overtaken = ledger.overtaken.load(std::sync::atomic::Ordering::Relaxed);
    assert!(overtaken >= 4, "every user was reserved for, then opted out: {overtaken}");
    assert!(transport.sent().is_empty(), "nothing goes out after an opt-out: {:?}", transport.sent());
    assert_eq!(suppressed(SuppressReason::OptedOut), overtaken, "each refusal is an opt-out suppression");
    assert_eq!(suppressed(SuppressReason::GateUnavailable), 0, "a refusal is not a gate failure");
    for user in 0..4 {
        let state = now(b.load(UserId(user)))?;
        assert!(state.counted.opted_out && state.pending.is_empty(), "user {user}: {state:?}");
    }
    Ok(())
}
