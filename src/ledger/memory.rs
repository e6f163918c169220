//! [`MemoryLedger`]: the reference cap ledger, in memory. It wraps
//! [`policy::decide`](crate::policy::decide) over each user's counted sends plus pending
//! reservations, and remembers every message's first decision for a retention window.

use std::collections::HashMap;
use std::sync::Mutex;

use futures::future::ready;

use crate::domain::{DAY, Timestamp, UserId, Zone};
use crate::policy::{Decision, decide};

use super::{
    CapLedger, Counted, LedgerError, LedgerFuture, LedgerUser, MessageId, Reservation, Reserved, ShareReservation,
    check_kind, is_group_share,
};

/// How long a settled message's id is remembered by default, measured on the reservation
/// times the ledger has seen: a retry of a message a week old is not a retry.
pub const DEFAULT_RETENTION_SECS: i64 = 7 * DAY;

/// Where a reserved message stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Settled {
    /// Granted, neither confirmed nor released: it counts.
    Pending,
    /// Confirmed: it counts for good.
    Counted,
    /// Released: it never went out.
    Released,
}

/// What the ledger remembers of one message.
#[derive(Clone, Copy, Debug)]
struct MessageRecord {
    user: UserId,
    at: Timestamp,
    /// The user's zone at the reservation: the local day the send counts in.
    zone: Zone,
    decision: Reserved,
    settled: Settled,
}

#[derive(Debug, Default)]
struct Inner {
    users: HashMap<UserId, LedgerUser>,
    messages: HashMap<MessageId, MessageRecord>,
    /// The latest reservation time seen, for the retention window.
    latest: Timestamp,
    /// Message records at the last prune; the next prune runs when they have doubled.
    after_last_prune: usize,
}

/// The reference ledger: one mutex around plain maps (in simulation each shard owns one,
/// so it is never contended).
#[derive(Debug)]
pub struct MemoryLedger {
    inner: Mutex<Inner>,
    retention_secs: i64,
}

impl Default for MemoryLedger {
    fn default() -> MemoryLedger {
        MemoryLedger::with_retention(DEFAULT_RETENTION_SECS)
    }
}

impl MemoryLedger {
    /// An empty ledger that remembers settled message ids for `retention_secs` after their
    /// reservation time.
    pub fn with_retention(retention_secs: i64) -> MemoryLedger {
        MemoryLedger { inner: Mutex::new(Inner::default()), retention_secs }
    }

    /// Starts a user from a known state (an engine resuming from a store).
    pub fn seed_user(&self, user: UserId, state: LedgerUser) {
        self.lock().users.insert(user, state);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic elsewhere cannot leave the maps half-updated: every update below is a
        // single insert or field write after all checks.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The synchronous core of [`CapLedger::reserve`].
    pub fn reserve_now(&self, request: Reservation) -> Result<Reserved, LedgerError> {
        check_kind(request.message, false)?;
        self.reserve_with(request.message, request.user, request.at, request.zone, |user| {
            match decide(&user.effective(request.zone), &request.caps, request.zone, request.at) {
                Decision::Send => Reserved::Granted,
                Decision::Suppress { reason, .. } => Reserved::Denied(reason),
            }
        })
    }

    /// The synchronous core of [`CapLedger::reserve_share`].
    pub fn reserve_share_now(&self, request: ShareReservation) -> Result<Reserved, LedgerError> {
        check_kind(request.message, true)?;
        self.reserve_with(request.message, request.user, request.at, request.zone, |user| user.decide_share(&request))
    }

    /// A reservation of either kind: the first decision for a known id, else `decide`'s,
    /// remembered; a grant pends in the list of its kind.
    fn reserve_with(
        &self,
        message: MessageId,
        user_id: crate::domain::UserId,
        at: Timestamp,
        zone: Zone,
        decide: impl FnOnce(&LedgerUser) -> Reserved,
    ) -> Result<Reserved, LedgerError> {
        let mut inner = self.lock();
        if let Some(record) = inner.messages.get(&message) {
            return if record.user == user_id {
                Ok(record.decision)
            } else {
                Err(LedgerError::Conflict { message, first: record.user, now: user_id })
            };
        }
        let user = inner.users.entry(user_id).or_default();
        let decision = decide(user);
        if decision == Reserved::Granted {
            if is_group_share(message) { &mut user.pending_shares } else { &mut user.pending }.push((message, at));
        }
        // A denial holds nothing: it is remembered (a retry gets the same answer) but settled.
        let settled = if decision == Reserved::Granted { Settled::Pending } else { Settled::Released };
        inner.messages.insert(message, MessageRecord { user: user_id, at, zone, decision, settled });
        inner.latest = inner.latest.max(at);
        if inner.messages.len() > 2 * inner.after_last_prune.max(1_024) {
            self.prune(&mut inner);
        }
        Ok(decision)
    }

    /// The synchronous core of [`CapLedger::confirm`] and [`CapLedger::release`].
    pub fn settle_now(&self, message: MessageId, counted: Option<Counted>) -> Result<(), LedgerError> {
        let mut inner = self.lock();
        let Some(record) = inner.messages.get_mut(&message) else {
            return Err(LedgerError::NotReserved { message });
        };
        if record.decision != Reserved::Granted {
            return Err(LedgerError::NotReserved { message });
        }
        if record.settled != Settled::Pending {
            return Ok(()); // the first settle wins
        }
        record.settled = if counted.is_some() { Settled::Counted } else { Settled::Released };
        let (user, at, zone) = (record.user, record.at, record.zone);
        let state = inner.users.entry(user).or_default();
        if is_group_share(message) {
            state.pending_shares.retain(|(m, _)| *m != message);
            if counted.is_some() {
                state.exposure.record(at.local_day(zone));
            }
        } else {
            state.pending.retain(|(m, _)| *m != message);
            if counted.is_some() {
                state.counted.record_send(at, zone);
            }
        }
        Ok(())
    }

    /// The synchronous core of [`CapLedger::sending`]: a pending reservation whose user has
    /// not opted out since may go out. Nothing to persist: nothing here outlives a crash.
    pub fn sending_now(&self, message: MessageId) -> Result<(), LedgerError> {
        let inner = self.lock();
        match inner.messages.get(&message) {
            Some(record) if record.decision == Reserved::Granted && record.settled == Settled::Pending => {
                if inner.users.get(&record.user).is_some_and(|u| u.counted.opted_out) {
                    Err(LedgerError::OptedOut { message })
                } else {
                    Ok(())
                }
            }
            _ => Err(LedgerError::NotReserved { message }),
        }
    }

    /// Forgets settled messages reserved before the retention window.
    fn prune(&self, inner: &mut Inner) {
        let horizon = inner.latest.plus(-self.retention_secs);
        inner.messages.retain(|_, r| r.settled == Settled::Pending || r.at >= horizon);
        inner.after_last_prune = inner.messages.len();
    }
}

impl CapLedger for MemoryLedger {
    fn reserve(&self, request: Reservation) -> LedgerFuture<Reserved> {
        Box::pin(ready(self.reserve_now(request)))
    }

    fn reserve_share(&self, request: ShareReservation) -> LedgerFuture<Reserved> {
        Box::pin(ready(self.reserve_share_now(request)))
    }

    fn confirm(&self, message: MessageId, counted: Counted) -> LedgerFuture<()> {
        Box::pin(ready(self.settle_now(message, Some(counted))))
    }

    fn release(&self, message: MessageId) -> LedgerFuture<()> {
        Box::pin(ready(self.settle_now(message, None)))
    }

    fn opt_out(&self, user: UserId) -> LedgerFuture<()> {
        self.lock().users.entry(user).or_default().counted.opted_out = true;
        Box::pin(ready(Ok(())))
    }

    fn re_consent(&self, user: UserId) -> LedgerFuture<()> {
        if let Some(state) = self.lock().users.get_mut(&user) {
            state.counted.opted_out = false;
        }
        Box::pin(ready(Ok(())))
    }

    fn load(&self, user: UserId) -> LedgerFuture<LedgerUser> {
        let state = self.lock().users.get(&user).cloned().unwrap_or_default();
        Box::pin(ready(Ok(state)))
    }

    fn sending(&self, message: MessageId) -> LedgerFuture<()> {
        Box::pin(ready(self.sending_now(message)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Caps, HOUR, HourMask};
    use crate::ledger::conformance;
    use crate::policy::SuppressReason;

    fn request(message: u64, at: i64) -> Reservation {
        Reservation {
            message: MessageId(message),
            user: UserId(7),
            at: Timestamp(20_000 * DAY + at),
            caps: Caps { daily_limit: 2, cooldown_secs: 4 * HOUR, allowed_hours: HourMask::ALL_DAY, period_days: 1 },
            zone: Zone::fixed(180),
        }
    }

    /// An opt-out refuses every reservation until the user's own re-consent lifts it.
    #[test]
    fn re_consent_lifts_an_opt_out() {
        let ledger = MemoryLedger::default();
        futures::executor::block_on(ledger.opt_out(UserId(7))).unwrap();
        assert_eq!(ledger.reserve_now(request(1, 10 * HOUR)), Ok(Reserved::Denied(SuppressReason::OptedOut)));
        futures::executor::block_on(ledger.re_consent(UserId(7))).unwrap();
        assert_eq!(ledger.reserve_now(request(2, 10 * HOUR)), Ok(Reserved::Granted));
    }

    /// `sending` lets a pending reservation through until its user opts out, then refuses
    /// it (rule 7's second check) and leaves it pending for the caller to release; a settled
    /// or denied message holds no reservation.
    #[test]
    fn sending_refuses_a_reservation_overtaken_by_an_opt_out() {
        let ledger = MemoryLedger::default();
        assert_eq!(ledger.reserve_now(request(1, 10 * HOUR)), Ok(Reserved::Granted));
        assert_eq!(ledger.sending_now(MessageId(1)), Ok(()));
        futures::executor::block_on(ledger.opt_out(UserId(7))).unwrap();
        assert_eq!(ledger.sending_now(MessageId(1)), Err(LedgerError::OptedOut { message: MessageId(1) }));
        ledger.settle_now(MessageId(1), None).expect("release");
        assert_eq!(ledger.sending_now(MessageId(1)), Err(LedgerError::NotReserved { message: MessageId(1) }));
        assert_eq!(ledger.sending_now(MessageId(9)), Err(LedgerError::NotReserved { message: MessageId(9) }));
    }

    /// A blind retry of a reservation returns the first decision and reserves nothing more;
    /// the pending reservation holds the cooldown until it is released.
    #[test]
    fn reserve_is_idempotent_and_pending_counts() {
        let ledger = MemoryLedger::default();
        assert_eq!(ledger.reserve_now(request(1, 10 * HOUR)), Ok(Reserved::Granted));
        assert_eq!(ledger.reserve_now(request(1, 10 * HOUR)), Ok(Reserved::Granted));
        assert_eq!(ledger.reserve_now(request(2, 11 * HOUR)), Ok(Reserved::Denied(SuppressReason::Cooldown)));
        ledger.settle_now(MessageId(1), None).expect("release");
        assert_eq!(ledger.reserve_now(request(3, 11 * HOUR)), Ok(Reserved::Granted));
        // The denied id stays denied even though the cooldown would now allow it.
        assert_eq!(ledger.reserve_now(request(2, 11 * HOUR)), Ok(Reserved::Denied(SuppressReason::Cooldown)));
        assert_eq!(ledger.settle_now(MessageId(2), None), Err(LedgerError::NotReserved { message: MessageId(2) }));
    }

    /// An unknown outcome counts like a delivery; the first settle wins.
    #[test]
    fn unknown_counts_and_first_settle_wins() {
        let ledger = MemoryLedger::default();
        assert_eq!(ledger.reserve_now(request(1, 9 * HOUR)), Ok(Reserved::Granted));
        ledger.settle_now(MessageId(1), Some(Counted::Unknown)).expect("confirm");
        ledger.settle_now(MessageId(1), None).expect("a late release is ignored");
        assert_eq!(ledger.reserve_now(request(2, 10 * HOUR)), Ok(Reserved::Denied(SuppressReason::Cooldown)));
    }

    /// Settled ids older than the retention window are forgotten; pending ones never are.
    #[test]
    fn retention_forgets_only_old_settled_ids() {
        let ledger = MemoryLedger::with_retention(DAY);
        assert_eq!(ledger.reserve_now(request(1, 0)), Ok(Reserved::Granted));
        ledger.settle_now(MessageId(1), Some(Counted::Delivered)).expect("confirm");
        let mut r = request(2, 0);
        r.user = UserId(8);
        assert_eq!(ledger.reserve_now(r), Ok(Reserved::Granted));
        for i in 0..3_000u64 {
            let mut later = request(100 + i, 3 * DAY + i as i64);
            later.user = UserId(1_000 + i);
            ledger.reserve_now(later).expect("reserve");
        }
        let inner = ledger.lock();
        assert!(!inner.messages.contains_key(&MessageId(1)), "old settled id forgotten");
        assert!(inner.messages.contains_key(&MessageId(2)), "pending id kept");
    }

    /// The reference ledger agrees with the oracle across DST changes too (RELIABILITY.md
    /// row 25): users in New York, Berlin and Beirut reserve on both sides of a change.
    #[test]
    fn memory_ledger_passes_the_conformance_harness_across_dst() {
        // Sequences from the day before the 2026 spring-forward and fall-back changes.
        for start in [1_772_841_600, 1_774_656_000, 1_792_800_000, 1_793_404_800] {
            let settings = conformance::Settings { start: Timestamp(start), ..conformance::Settings::default() };
            let coverage =
                conformance::check(MemoryLedger::default, &settings).unwrap_or_else(|mismatch| panic!("{mismatch}"));
            assert!(coverage.offset_changes_crossed > 0, "no DST change crossed from {start}");
        }
    }

    /// The reference ledger passes the conformance harness it is the reference for.
    #[test]
    fn memory_ledger_passes_the_conformance_harness() {
        let coverage = conformance::check(MemoryLedger::default, &conformance::Settings::default())
            .unwrap_or_else(|mismatch| panic!("{mismatch}"));
        // Every answer a ledger can give was exercised, so the pass means something.
        for answer in [
            "Ok(Granted)",
            "Ok(Denied(OptedOut",
            "Ok(Denied(NoSegment",
            "Ok(Denied(QuietHours",
            "Ok(Denied(DailyLimit",
            "Ok(Denied(Cooldown",
            "Ok(Denied(Frequency",
            "Ok(Denied(ExposureLimit",
            "Err(Conflict",
            "Err(WrongKind",
            "Err(NotReserved",
        ] {
            assert!(coverage.saw(answer), "the harness never produced {answer}: {:?}", coverage.answers);
        }
    }
}
