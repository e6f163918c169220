//! The Redis cap ledger passes the conformance harness unchanged, on one node and on a
//! three-node Redis Cluster, and settles what a crashed engine left (`recover`).

use gavat::domain::{Caps, DAY, HOUR, HourMask, Timestamp, UserId, Zone};
use gavat::ledger::conformance::{self, Settings};
use gavat::ledger::{CapLedger, Counted, LedgerError, MessageId, Recovery, RedisLedger, Reservation, Reserved};

use crate::redis_server::{Cluster, Error, Prefix, shared};

/// Polls a ledger future once, as the engine does: a Redis ledger's futures are ready.
pub fn now<T>(f: gavat::ledger::LedgerFuture<T>) -> Result<T, LedgerError> {
    futures::FutureExt::now_or_never(f).expect("a Redis ledger future is ready at once")
}

fn harness(url: &str, name: &str, settings: &Settings) -> Result<conformance::Coverage, Error> {
    let mut prefixes = Vec::new();
    let coverage = conformance::check(
        || {
            let prefix = Prefix::new(url, name);
            let ledger = RedisLedger::connect(url, &prefix.text).expect("connect");
            prefixes.push(prefix);
            ledger
        },
        settings,
    )
    .map_err(|m| m.to_string())?;
    for answer in [
        "Ok(Granted)",
        "Ok(Denied(OptedOut",
        "Ok(Denied(QuietHours",
        "Ok(Denied(DailyLimit",
        "Ok(Denied(Cooldown",
        "Ok(Denied(Frequency",
        "Err(Conflict",
        "Err(NotReserved",
    ] {
        assert!(coverage.saw(answer), "the harness never produced {answer}: {:?}", coverage.answers);
    }
    Ok(coverage)
}

/// On one node the Redis ledger gives the oracle's answer at every step of the default
/// harness (200 sequences × 200 steps).
#[test]
fn redis_ledger_passes_the_conformance_harness() -> Result<(), Error> {
    let (url, _own) = shared()?;
    harness(&url, "conformance", &Settings::default())?;
    Ok(())
}

/// On a three-node Redis Cluster (every script's keys in one slot, the message index in
/// another) the Redis ledger gives the oracle's answer at every step. Fewer sequences than
/// the default: each new ledger writes the epoch into all 16,384 slots.
#[test]
fn redis_ledger_passes_the_conformance_harness_on_a_cluster() -> Result<(), Error> {
    let cluster = Cluster::start()?;
    let url = cluster.url();
    let probe = RedisLedger::connect(&url, "probe:")?;
    assert!(probe.is_cluster(), "the ledger sees a cluster");
    let settings = Settings { cases: 40, ..Settings::default() };
    harness(&url, "conformance-cluster", &settings)?;
    Ok(())
}

fn caps() -> Caps {
    Caps { daily_limit: 5, cooldown_secs: 0, allowed_hours: HourMask::ALL_DAY, period_days: 1 }
}

/// A reservation of message `id` for `user` at 10:00 UTC on day 20,000.
pub fn request(id: u64, user: u64) -> Reservation {
    Reservation {
        message: MessageId(id),
        user: UserId(user),
        at: Timestamp(20_000 * DAY + 10 * HOUR),
        caps: caps(),
        zone: Zone::UTC,
    }
}

/// After a crash, `recover` counts what may have gone out (marked sending, or a group
/// post's share) as unknown and releases what never reached the transport; settled
/// messages are left alone, and a second recover finds nothing.
#[test]
fn recover_settles_what_a_crashed_engine_left() -> Result<(), Error> {
    let (url, _own) = shared()?;
    let prefix = Prefix::new(&url, "recover");
    let ledger = RedisLedger::connect(&url, &prefix.text)?;
    let share = MessageId((1u64 << 63) | 3);
    for id in [1, 2, 4] {
        assert_eq!(now(ledger.reserve(request(id, 9)))?, Reserved::Granted);
    }
    let r = request(0, 9);
    let share_request =
        gavat::ledger::ShareReservation { message: share, user: r.user, at: r.at, zone: r.zone, exposure_limit: 3 };
    assert_eq!(now(ledger.reserve_share(share_request))?, Reserved::Granted);
    assert_eq!(
        now(ledger.reserve(Reservation { message: share, ..r })),
        Err(LedgerError::WrongKind { message: share }),
        "a share's id is never a direct reservation"
    );
    now(ledger.sending(MessageId(2)))?;
    now(ledger.confirm(MessageId(4), Counted::Delivered))?;
    let before = now(ledger.load(UserId(9)))?;
    assert_eq!((before.pending.len(), before.pending_shares.len()), (2, 1));

    assert_eq!(now(ledger.recover())?, Recovery { unknown: 2, released: 1 });
    let state = now(ledger.load(UserId(9)))?;
    assert!(state.pending.is_empty() && state.pending_shares.is_empty(), "{state:?}");
    assert_eq!(state.counted.sent_on_last_day, 2, "2 and 4 count; 1 was released; the share is not direct");
    assert_eq!(state.exposure.seen, 1, "the share that may have gone out counts in the exposure");
    assert_eq!(now(ledger.recover())?, Recovery::default());
    assert_eq!(now(ledger.sending(MessageId(1))), Err(LedgerError::NotReserved { message: MessageId(1) }));
    assert_eq!(ledger.paused(), None);
    Ok(())
}

/// A second engine on the same prefix adopts the first one's epoch (it does not pause it),
/// and sees its reservations.
#[test]
fn a_second_ledger_on_the_same_prefix_shares_the_epoch() -> Result<(), Error> {
    let (url, _own) = shared()?;
    let prefix = Prefix::new(&url, "two-engines");
    let a = RedisLedger::connect(&url, &prefix.text)?;
    assert_eq!(now(a.reserve(request(1, 5)))?, Reserved::Granted);
    let b = RedisLedger::connect(&url, &prefix.text)?;
    assert_eq!(now(b.reserve(request(1, 5)))?, Reserved::Granted, "a retry through the other engine");
    assert_eq!(now(b.load(UserId(5)))?.pending, vec![(MessageId(1), request(1, 5).at)]);
    assert_eq!(now(a.opt_out(UserId(5))), Ok(()));
    assert_eq!(a.paused(), None);
    assert_eq!(b.paused(), None);
    Ok(())
}
