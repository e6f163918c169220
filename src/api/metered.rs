//! The seams with metrics: [`MeteredSender`] counts every send's outcome, [`MeteredLedger`]
//! times reservations, tracks the reservations in flight and pauses the engine's readiness
//! while the ledger cannot answer, and denies every reservation while an operator has paused
//! sending ([`SendingControl`]). Both delegate everything else unchanged.
//!
//! Neither adds an await point: the engine polls a ledger's (and a simulated sender's)
//! futures once with `now_or_never` and continues only when they are ready at once, so a
//! wrapped future is ready on its first poll exactly when the inner one is ([`Observed`]
//! polls the inner future and looks at the result on the way out).

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use crate::clock::Stopwatch;
use crate::domain::{OutboundMessage, UserId};
use crate::ledger::{
    CapLedger, Counted, LedgerError, LedgerFuture, LedgerUser, MessageId, Recovery, Reservation, Reserved,
    ShareReservation,
};
use crate::policy::SuppressReason;
use crate::transport::{Delivered, SendFuture, Sender, TransportError};

use super::{Metrics, SendingControl};

/// The source name under which a ledger that cannot answer pauses sending.
pub const LEDGER_PAUSE: &str = "ledger";

/// A future that hands its result to `on_ready` when it completes, on the same poll.
struct Observed<F: Future + ?Sized, G> {
    inner: Pin<Box<F>>,
    on_ready: Option<G>,
}

impl<F: Future + ?Sized, G: FnOnce(&F::Output) + Unpin> Future for Observed<F, G> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let output = std::task::ready!(self.inner.as_mut().poll(cx));
        if let Some(on_ready) = self.on_ready.take() {
            on_ready(&output);
        }
        Poll::Ready(output)
    }
}

fn observed<F: Future + ?Sized, G: FnOnce(&F::Output) + Unpin>(inner: Pin<Box<F>>, on_ready: G) -> Observed<F, G> {
    Observed { inner, on_ready: Some(on_ready) }
}

/// A [`Sender`] that counts every outcome in [`Metrics`]: `delivered`, `unknown`, or
/// `failed_<kind>`. A send whose future is dropped before it answered (the engine's send
/// timeout gave up on it) is counted as `unknown`, as the engine counts it.
#[derive(Debug)]
pub struct MeteredSender {
    inner: Arc<dyn Sender>,
    metrics: Arc<Metrics>,
}

impl MeteredSender {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Sender>, metrics: Arc<Metrics>) -> MeteredSender {
        MeteredSender { inner, metrics }
    }
}

/// Counts a send as `unknown` if it is dropped before it answered.
struct SendCount {
    metrics: Arc<Metrics>,
    counted: bool,
}

impl SendCount {
    fn count(&mut self, result: &Result<Delivered, TransportError>) {
        match result {
            Ok(Delivered) => self.metrics.record_delivered(),
            Err(e) => self.metrics.record_send_failed(e.kind()),
        }
        self.counted = true;
    }
}

impl Drop for SendCount {
    fn drop(&mut self) {
        if !self.counted {
            self.metrics.record_send_failed(crate::transport::FailureKind::Unknown);
        }
    }
}

/// A send future that counts its outcome.
struct MeteredSend {
    inner: SendFuture,
    count: SendCount,
}

impl Future for MeteredSend {
    type Output = Result<Delivered, TransportError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let result = std::task::ready!(self.inner.as_mut().poll(cx));
        if !self.count.counted {
            self.count.count(&result);
        }
        Poll::Ready(result)
    }
}

impl Sender for MeteredSender {
    fn send(&self, message: &OutboundMessage) -> SendFuture {
        Box::pin(MeteredSend {
            inner: self.inner.send(message),
            count: SendCount { metrics: self.metrics.clone(), counted: false },
        })
    }
}

/// What the metered ledger's futures update when they complete.
#[derive(Debug)]
struct LedgerGauge {
    metrics: Arc<Metrics>,
    /// Reservations granted and not yet settled, by id: exact even when a settle is
    /// repeated (the first wins) or a grant is asked again (idempotent). A `std` mutex: no
    /// `.await` is held, and it is touched once per reservation and per settle.
    in_flight: Mutex<HashSet<MessageId>>,
}

impl LedgerGauge {
    /// Store errors and the pause: any answer shows the ledger works.
    fn answered<T>(&self, result: &Result<T, LedgerError>) {
        match result {
            Err(LedgerError::Unavailable { reason }) => {
                self.metrics.record_store_error();
                self.metrics.pause(LEDGER_PAUSE, reason.clone());
            }
            Ok(_)
            | Err(
                LedgerError::Conflict { .. }
                | LedgerError::NotReserved { .. }
                | LedgerError::WrongKind { .. }
                | LedgerError::OptedOut { .. },
            ) => {
                self.metrics.resume(LEDGER_PAUSE);
            }
        }
    }

    fn granted(&self, message: MessageId) {
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        in_flight.insert(message);
        self.metrics.set_queue_depth(in_flight.len() as u64);
    }

    fn settled(&self, message: MessageId) {
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if in_flight.remove(&message) {
            self.metrics.set_queue_depth(in_flight.len() as u64);
        }
    }
}

/// A [`CapLedger`] that feeds [`Metrics`]: the latency of every reservation
/// (`gavat_reservation_seconds`), the reservations granted and not yet settled
/// (`gavat_queue_depth`), and every [`LedgerError::Unavailable`] — counted in
/// `gavat_store_errors_total`, and pausing readiness (`/readyz`, `gavat_paused`) with its
/// reason until the ledger next answers. Every trait method, `sending` and `recover`
/// included, is delegated to the wrapped ledger.
///
/// It is also where an operator's pause takes effect: while `control` is paused, `reserve`
/// and `reserve_share` answer `Denied(`[`SuppressReason::Paused`]`)` at once without asking
/// the wrapped ledger (see [`super::control`]); every other call goes through.
#[derive(Debug)]
pub struct MeteredLedger {
    inner: Arc<dyn CapLedger>,
    gauge: Arc<LedgerGauge>,
    control: Arc<SendingControl>,
}

impl MeteredLedger {
    /// Wraps `inner`, obeying `control`.
    pub fn new(inner: Arc<dyn CapLedger>, metrics: Arc<Metrics>, control: Arc<SendingControl>) -> MeteredLedger {
        MeteredLedger {
            inner,
            gauge: Arc::new(LedgerGauge { metrics, in_flight: Mutex::new(HashSet::new()) }),
            control,
        }
    }

    /// The answer to a reservation while an operator has paused sending.
    fn paused(&self) -> Option<LedgerFuture<Reserved>> {
        self.control
            .is_paused()
            .then(|| Box::pin(futures::future::ready(Ok(Reserved::Denied(SuppressReason::Paused)))) as LedgerFuture<_>)
    }

    /// Delegates a call whose only effect on the metrics is the pause.
    fn answered<T: Send + 'static>(&self, future: LedgerFuture<T>) -> LedgerFuture<T> {
        let gauge = self.gauge.clone();
        Box::pin(observed(future, move |result: &Result<T, LedgerError>| gauge.answered(result)))
    }
}

impl CapLedger for MeteredLedger {
    fn reserve(&self, request: Reservation) -> LedgerFuture<Reserved> {
        if let Some(denied) = self.paused() {
            return denied;
        }
        // Started before the call: a ledger that works inside the call (the in-memory one)
        // is timed too.
        let watch = Stopwatch::start();
        let future = self.inner.reserve(request);
        let gauge = self.gauge.clone();
        Box::pin(observed(future, move |result: &Result<Reserved, LedgerError>| {
            gauge.metrics.observe_reservation(watch.elapsed_secs());
            gauge.answered(result);
            if let Ok(Reserved::Granted) = result {
                gauge.granted(request.message);
            }
        }))
    }

    fn reserve_share(&self, request: ShareReservation) -> LedgerFuture<Reserved> {
        if let Some(denied) = self.paused() {
            return denied;
        }
        let watch = Stopwatch::start();
        let future = self.inner.reserve_share(request);
        let gauge = self.gauge.clone();
        Box::pin(observed(future, move |result: &Result<Reserved, LedgerError>| {
            gauge.metrics.observe_reservation(watch.elapsed_secs());
            gauge.answered(result);
            if let Ok(Reserved::Granted) = result {
                gauge.granted(request.message);
            }
        }))
    }

    fn confirm(&self, message: MessageId, counted: Counted) -> LedgerFuture<()> {
        let gauge = self.gauge.clone();
        Box::pin(observed(self.inner.confirm(message, counted), move |result: &Result<(), LedgerError>| {
            gauge.answered(result);
            if result.is_ok() {
                gauge.settled(message);
            }
        }))
    }

    fn release(&self, message: MessageId) -> LedgerFuture<()> {
        let gauge = self.gauge.clone();
        Box::pin(observed(self.inner.release(message), move |result: &Result<(), LedgerError>| {
            gauge.answered(result);
            if result.is_ok() {
                gauge.settled(message);
            }
        }))
    }

    fn opt_out(&self, user: UserId) -> LedgerFuture<()> {
        self.answered(self.inner.opt_out(user))
    }

    fn re_consent(&self, user: UserId) -> LedgerFuture<()> {
        self.answered(self.inner.re_consent(user))
    }

    fn load(&self, user: UserId) -> LedgerFuture<LedgerUser> {
        self.answered(self.inner.load(user))
    }

    fn sending(&self, message: MessageId) -> LedgerFuture<()> {
        self.answered(self.inner.sending(message))
    }

    fn recover(&self) -> LedgerFuture<Recovery> {
        self.answered(self.inner.recover())
    }
}

#[cfg(test)]
mod tests {
    use futures::FutureExt;

    use super::*;
    use crate::domain::{Caps, HourMask, Timestamp, Zone};
    use crate::ledger::MemoryLedger;

    fn caps() -> Caps {
        Caps { daily_limit: 5, cooldown_secs: 0, allowed_hours: HourMask::ALL_DAY, period_days: 1 }
    }

    fn reservation(message: u64) -> Reservation {
        Reservation {
            message: MessageId(message),
            user: UserId(1),
            at: Timestamp(1_800_000_000),
            caps: caps(),
            zone: Zone::UTC,
        }
    }

    /// A ledger whose every call is unavailable until told otherwise, ready at once.
    #[derive(Debug, Default)]
    struct Flaky {
        down: std::sync::atomic::AtomicBool,
        inner: MemoryLedger,
    }

    impl Flaky {
        fn answer<T: Send + 'static>(&self, f: impl FnOnce() -> Result<T, LedgerError>) -> LedgerFuture<T> {
            let result = if self.down.load(std::sync::atomic::Ordering::Relaxed) {
                Err(LedgerError::Unavailable { reason: "store is down".into() })
            } else {
                f()
            };
            Box::pin(futures::future::ready(result))
        }
    }

    impl CapLedger for Flaky {
        fn reserve(&self, request: Reservation) -> LedgerFuture<Reserved> {
            self.answer(|| self.inner.reserve_now(request))
        }
        fn reserve_share(&self, request: ShareReservation) -> LedgerFuture<Reserved> {
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
        fn sending(&self, _message: MessageId) -> LedgerFuture<()> {
            self.answer(|| Ok(()))
        }
        fn recover(&self) -> LedgerFuture<Recovery> {
            self.answer(|| Ok(Recovery { unknown: 3, released: 1 }))
        }
    }

    fn control(metrics: &Arc<Metrics>) -> Arc<SendingControl> {
        Arc::new(SendingControl::new(metrics.clone()))
    }

    /// While an operator has paused sending, reservations and shares are denied as
    /// `Paused` at once without reaching the ledger (a down ledger is not even asked, so no
    /// store error is counted); other calls go through; after the resume they are granted.
    #[test]
    fn an_operator_pause_denies_reservations_without_asking_the_ledger() -> Result<(), Box<dyn std::error::Error>> {
        let metrics = Arc::new(Metrics::new());
        let flaky = Arc::new(Flaky::default());
        let control = control(&metrics);
        let ledger = MeteredLedger::new(flaky.clone(), metrics.clone(), control.clone());
        control.pause(Some("review".into()), Timestamp(1_800_000_000))?;
        flaky.down.store(true, std::sync::atomic::Ordering::Relaxed);
        let now = |f: LedgerFuture<Reserved>| f.now_or_never().expect("ready at once");
        assert_eq!(now(ledger.reserve(reservation(1)))?, Reserved::Denied(SuppressReason::Paused));
        let share = ShareReservation {
            message: crate::actors::entity::group_share_id(2, UserId(1)),
            user: UserId(1),
            at: Timestamp(1_800_000_000),
            zone: Zone::UTC,
            exposure_limit: 3,
        };
        assert_eq!(now(ledger.reserve_share(share))?, Reserved::Denied(SuppressReason::Paused));
        let text = metrics.render();
        assert!(text.contains("gavat_store_errors_total 0\n"), "the ledger was not asked: {text}");
        assert!(text.contains("gavat_reservation_seconds_count 0\n"), "{text}");
        assert!(ledger.sending(MessageId(9)).now_or_never().expect("ready at once").is_err(), "other calls go through");
        assert_eq!(metrics.paused().as_deref(), Some("ledger: store is down; operator: review"));
        flaky.down.store(false, std::sync::atomic::Ordering::Relaxed);
        ledger.sending(MessageId(9)).now_or_never().expect("ready at once")?;
        assert_eq!(metrics.paused().as_deref(), Some("operator: review"), "the ledger answering keeps the pause");
        assert_eq!(now(ledger.reserve(reservation(3)))?, Reserved::Denied(SuppressReason::Paused));
        control.resume();
        assert_eq!(now(ledger.reserve(reservation(3)))?, Reserved::Granted);
        assert_eq!(now(ledger.reserve_share(share))?, Reserved::Granted);
        assert_eq!(metrics.paused(), None);
        Ok(())
    }

    /// Futures stay ready at once; the queue depth follows grants and settles exactly, a
    /// repeated settle included; reservations are timed.
    #[test]
    fn ready_at_once_and_counts_reservations_in_flight() -> Result<(), LedgerError> {
        let metrics = Arc::new(Metrics::new());
        let ledger = MeteredLedger::new(Arc::new(MemoryLedger::default()), metrics.clone(), control(&metrics));
        let now = |f: LedgerFuture<Reserved>| f.now_or_never().expect("ready at once");
        assert_eq!(now(ledger.reserve(reservation(1)))?, Reserved::Granted);
        assert_eq!(now(ledger.reserve(reservation(2)))?, Reserved::Granted);
        assert!(metrics.render().contains("gavat_queue_depth 2\n"));
        ledger.confirm(MessageId(1), Counted::Delivered).now_or_never().expect("ready at once")?;
        ledger.confirm(MessageId(1), Counted::Delivered).now_or_never().expect("ready at once")?;
        assert!(metrics.render().contains("gavat_queue_depth 1\n"));
        ledger.release(MessageId(2)).now_or_never().expect("ready at once")?;
        let text = metrics.render();
        assert!(text.contains("gavat_queue_depth 0\n"), "{text}");
        assert!(text.contains("gavat_reservation_seconds_count 2\n"), "{text}");
        Ok(())
    }

    /// An unavailable ledger counts a store error and pauses with its reason; the next
    /// answer clears the pause. `sending` and `recover` reach the wrapped ledger.
    #[test]
    fn unavailable_pauses_until_the_next_answer() -> Result<(), LedgerError> {
        let metrics = Arc::new(Metrics::new());
        let flaky = Arc::new(Flaky::default());
        let ledger = MeteredLedger::new(flaky.clone(), metrics.clone(), control(&metrics));
        flaky.down.store(true, std::sync::atomic::Ordering::Relaxed);
        let denied = ledger.sending(MessageId(9)).now_or_never().expect("ready at once");
        assert!(matches!(denied, Err(LedgerError::Unavailable { .. })));
        assert_eq!(metrics.paused().as_deref(), Some("ledger: store is down"));
        assert!(metrics.render().contains("gavat_store_errors_total 1\n"));
        flaky.down.store(false, std::sync::atomic::Ordering::Relaxed);
        let recovered = ledger.recover().now_or_never().expect("ready at once")?;
        assert_eq!(recovered, Recovery { unknown: 3, released: 1 }, "recover is delegated");
        assert_eq!(metrics.paused(), None);
        Ok(())
    }

    /// A sender that answers as told, at once, or never.
    #[derive(Debug)]
    struct Scripted(Option<Result<Delivered, TransportError>>);

    impl Sender for Scripted {
        fn send(&self, _message: &OutboundMessage) -> SendFuture {
            match self.0.clone() {
                Some(result) => Box::pin(futures::future::ready(result)),
                None => Box::pin(futures::future::pending()),
            }
        }
    }

    fn message() -> OutboundMessage {
        OutboundMessage {
            id: 1,
            to: crate::domain::Destination::User(UserId(1)),
            bot: crate::domain::BotId(0),
            content: crate::domain::ContentKind::Offer,
            segment: crate::domain::Segment::WarmLead,
            at: Timestamp(1_800_000_000),
        }
    }

    /// Each outcome is counted once under its label; a send dropped unanswered is unknown.
    #[test]
    fn sender_counts_each_outcome_once() {
        let metrics = Arc::new(Metrics::new());
        let outcomes = [
            Some(Ok(Delivered)),
            Some(Err(TransportError::Blocked)),
            Some(Err(TransportError::Unknown { reason: "timeout".into() })),
            None,
        ];
        for outcome in outcomes {
            let sender = MeteredSender::new(Arc::new(Scripted(outcome.clone())), metrics.clone());
            let mut future = sender.send(&message());
            assert_eq!((&mut future).now_or_never().is_some(), outcome.is_some(), "ready exactly when the inner is");
        }
        let text = metrics.render();
        assert!(text.contains("gavat_sends_total{outcome=\"delivered\"} 1\n"), "{text}");
        assert!(text.contains("gavat_sends_total{outcome=\"failed_blocked\"} 1\n"), "{text}");
        assert!(text.contains("gavat_sends_total{outcome=\"unknown\"} 2\n"), "{text}");
    }
}
