//! [`FaultyLedger`]: the reference in-memory cap ledger behind seeded outages. During an
//! outage every reservation — direct or a group share — fails with
//! [`LedgerError::Unavailable`], as a live ledger does when Redis is down, out of memory or
//! `BUSY`; the engine then sends nothing (it fails closed) and tries again later. Settles,
//! opt-outs and reads carry no time and pass (the in-memory stand-in loses no write).
//!
//! It also counts reservations granted and not yet settled, so that a liveness run can
//! show that none is left open at the end.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use futures::future::ready;

use crate::domain::UserId;
use crate::ledger::{
    CapLedger, Counted, LedgerError, LedgerFuture, LedgerUser, MemoryLedger, MessageId, Reservation, Reserved,
    ShareReservation,
};

use super::{FaultCounters, FaultWindows};

/// A [`MemoryLedger`] with outages (see the module documentation).
#[derive(Debug)]
pub struct FaultyLedger {
    inner: MemoryLedger,
    windows: Arc<FaultWindows>,
    counters: Arc<FaultCounters>,
    /// Granted reservations not yet settled (only its size is ever read).
    open: Mutex<HashSet<MessageId>>,
}

impl FaultyLedger {
    /// `inner` behind the outages of `windows`.
    pub fn new(inner: MemoryLedger, windows: Arc<FaultWindows>, counters: Arc<FaultCounters>) -> FaultyLedger {
        FaultyLedger { inner, windows, counters, open: Mutex::new(HashSet::new()) }
    }

    /// Starts a user from a known state (a continued simulation).
    pub fn seed_user(&self, user: UserId, state: LedgerUser) {
        self.inner.seed_user(user, state);
    }

    /// Reservations granted and never settled.
    pub fn open_reservations(&self) -> u64 {
        self.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).len() as u64
    }

    fn down(&self, at: crate::domain::Timestamp) -> Option<LedgerError> {
        self.windows.outages.covering(at).map(|until| {
            FaultCounters::add(&self.counters.ledger_unavailable);
            LedgerError::Unavailable { reason: format!("simulated outage until {}", until.to_rfc3339()) }
        })
    }

    fn track(&self, message: MessageId, answer: Result<Reserved, LedgerError>) -> LedgerFuture<Reserved> {
        if answer == Ok(Reserved::Granted) {
            self.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(message);
        }
        Box::pin(ready(answer))
    }

    fn settled(&self, message: MessageId, answer: Result<(), LedgerError>) -> LedgerFuture<()> {
        if answer.is_ok() {
            self.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(&message);
        }
        Box::pin(ready(answer))
    }
}

impl CapLedger for FaultyLedger {
    fn reserve(&self, request: Reservation) -> LedgerFuture<Reserved> {
        match self.down(request.at) {
            Some(e) => Box::pin(ready(Err(e))),
            None => self.track(request.message, self.inner.reserve_now(request)),
        }
    }

    fn reserve_share(&self, request: ShareReservation) -> LedgerFuture<Reserved> {
        match self.down(request.at) {
            Some(e) => Box::pin(ready(Err(e))),
            None => self.track(request.message, self.inner.reserve_share_now(request)),
        }
    }

    fn confirm(&self, message: MessageId, counted: Counted) -> LedgerFuture<()> {
        self.settled(message, self.inner.settle_now(message, Some(counted)))
    }

    fn release(&self, message: MessageId) -> LedgerFuture<()> {
        self.settled(message, self.inner.settle_now(message, None))
    }

    fn opt_out(&self, user: UserId) -> LedgerFuture<()> {
        self.inner.opt_out(user)
    }

    fn re_consent(&self, user: UserId) -> LedgerFuture<()> {
        self.inner.re_consent(user)
    }

    fn load(&self, user: UserId) -> LedgerFuture<LedgerUser> {
        self.inner.load(user)
    }

    /// The outbox step reaches the reference ledger, opt-out check included (an outage is
    /// simulated at reservation, where the engine's time is known).
    fn sending(&self, message: MessageId) -> LedgerFuture<()> {
        Box::pin(ready(self.inner.sending_now(message)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Caps, DAY, HOUR, HourMask, Timestamp, UtcOffset, Zone};

    fn request(message: u64, at: Timestamp) -> Reservation {
        Reservation {
            message: MessageId(message),
            user: UserId(7),
            at,
            caps: Caps { daily_limit: 5, cooldown_secs: 60, allowed_hours: HourMask::ALL_DAY, period_days: 1 },
            zone: Zone::from(UtcOffset(0)),
        }
    }

    /// During an outage nothing is reserved (fail closed); after it, reservations are
    /// granted again, and the open count follows grants and settles.
    #[test]
    fn an_outage_refuses_reservations_and_ends() {
        let start = Timestamp(20_000 * DAY);
        let mut rng = gavat_sim::stream(1, 1, gavat_sim::Purpose::Behaviour);
        let outages = super::super::Windows::draw(&mut rng, start, start.plus(DAY), 1, [HOUR as u32, HOUR as u32]);
        let (from, _) = outages.0[0];
        let windows = Arc::new(FaultWindows { outages, ..FaultWindows::default() });
        let counters = Arc::new(FaultCounters::default());
        let ledger = FaultyLedger::new(MemoryLedger::default(), windows, counters.clone());
        let during = futures::executor::block_on(ledger.reserve(request(1, Timestamp(from + 10))));
        assert!(matches!(during, Err(LedgerError::Unavailable { .. })), "{during:?}");
        assert_eq!(FaultCounters::get(&counters.ledger_unavailable), 1);
        let after = futures::executor::block_on(ledger.reserve(request(2, Timestamp(from + 2 * HOUR))));
        assert_eq!(after, Ok(Reserved::Granted));
        assert_eq!(ledger.open_reservations(), 1);
        futures::executor::block_on(ledger.confirm(MessageId(2), Counted::Unknown)).expect("confirm");
        assert_eq!(ledger.open_reservations(), 0);
    }
}
