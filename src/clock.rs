//! The only place that reads time. The scheduler owns a [`Clock`] and hands the current time
//! to every other actor inside its messages; nothing else calls `now`.
//!
//! A [`SystemClock`] follows the wall clock and really sleeps. A [`VirtualClock`] stands
//! still until the scheduler moves it: `sleep_until` jumps straight to the target, so 30
//! simulated days take as long as the work in them.

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, Ordering};

use crate::domain::Timestamp;

/// A future that completes when the clock reaches a time.
pub type SleepFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Where the engine's time comes from.
pub trait Clock: Send + Sync + Debug {
    /// The current time.
    fn now(&self) -> Timestamp;
    /// Waits until `now() >= at`: `None` when no waiting is needed — the time has come, or
    /// the clock is virtual and has just jumped to `at` — else a future to await.
    fn sleep_until(&self, at: Timestamp) -> Option<SleepFuture>;
    /// Whether time moves only when the scheduler moves it. On a virtual clock the
    /// scheduler finishes all work of an instant before it advances.
    fn is_virtual(&self) -> bool;
}

/// The wall clock (UTC), sleeping on tokio's timer.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods, reason = "the system clock is the one place that reads wall time")]
    fn now(&self) -> Timestamp {
        Timestamp(chrono::Utc::now().timestamp())
    }

    fn sleep_until(&self, at: Timestamp) -> Option<SleepFuture> {
        let wait = at.secs() - self.now().secs();
        (wait > 0).then(|| Box::pin(tokio::time::sleep(std::time::Duration::from_secs(wait as u64))) as SleepFuture)
    }

    fn is_virtual(&self) -> bool {
        false
    }
}

/// Simulated time: starts where it is told and moves only forward, only when asked.
#[derive(Debug)]
pub struct VirtualClock {
    now: AtomicI64,
}

impl VirtualClock {
    /// A clock reading `start`.
    pub fn new(start: Timestamp) -> VirtualClock {
        VirtualClock { now: AtomicI64::new(start.secs()) }
    }

    /// Moves the clock to `at` if that is later; never backwards.
    pub fn advance_to(&self, at: Timestamp) {
        self.now.fetch_max(at.secs(), Ordering::Relaxed);
    }
}

impl Clock for VirtualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.now.load(Ordering::Relaxed))
    }

    fn sleep_until(&self, at: Timestamp) -> Option<SleepFuture> {
        self.advance_to(at);
        None
    }

    fn is_virtual(&self) -> bool {
        true
    }
}

/// Measures how long a run took in real time (for throughput reports only — never for
/// decisions).
#[derive(Debug)]
pub struct Stopwatch(std::time::Instant);

impl Stopwatch {
    /// Starts measuring.
    #[allow(clippy::disallowed_methods, reason = "wall time of the run itself, reported as timing")]
    pub fn start() -> Stopwatch {
        Stopwatch(std::time::Instant::now())
    }

    /// Seconds since [`Stopwatch::start`].
    pub fn elapsed_secs(&self) -> f64 {
        self.0.elapsed().as_secs_f64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A virtual clock jumps forward on sleep, never moves backwards, and never waits.
    #[test]
    fn virtual_clock_jumps_and_never_goes_back() {
        let clock = VirtualClock::new(Timestamp(1_000));
        assert_eq!(clock.now(), Timestamp(1_000));
        assert!(clock.sleep_until(Timestamp(5_000)).is_none(), "no waiting");
        assert_eq!(clock.now(), Timestamp(5_000));
        clock.advance_to(Timestamp(4_000));
        assert_eq!(clock.now(), Timestamp(5_000));
        assert!(clock.is_virtual());
    }

    /// The system clock reads a plausible present.
    #[test]
    fn system_clock_reads_the_present() {
        let now = SystemClock.now();
        assert!(now.secs() > 1_700_000_000);
        assert!(!SystemClock.is_virtual());
    }
}
