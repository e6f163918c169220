//! The only place that reads time. The scheduler owns a [`Clock`] and hands the current time
//! to every other actor inside its messages; nothing else calls `now`.
//!
//! Three clocks, one contract — `now`, and `sleep_until`, which either says the time has
//! come or hands back a future to await:
//! - [`SystemClock`] follows the wall clock and really sleeps (live runs).
//! - [`ScaledClock`] follows the wall clock `K`× faster, from a chosen start (rehearsals of
//!   live runs: 30 days in minutes, with real sockets and real waiting).
//! - [`VirtualClock`] stands still until the scheduler moves it: `sleep_until` jumps
//!   straight to the target, so 30 simulated days take as long as the work in them.
//!
//! The scheduler asks the clock to reach the next piece of work; whether that takes no time
//! or a real wait, and whether work may run ahead of the clock ([`Clock::jumps`]), is the
//! clock's business — no actor asks what kind of clock it has.

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

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
    /// Whether the clock moves only when the engine moves it. Then time *is* the engine's
    /// schedule: the engine may run all work up to its next sync point at once, and stamps
    /// each piece with its planned time. A clock that does not jump runs work when it is due
    /// and stamps it with the time it actually runs.
    fn jumps(&self) -> bool;
    /// How much engine time `wall_secs` seconds of wall time are: a platform's `retry_after`
    /// is in wall seconds, the engine plans in its own (a scaled clock runs `factor` times
    /// faster, so a wait of 5 wall seconds is `5 × factor` engine seconds).
    fn engine_secs_of_wall(&self, wall_secs: u32) -> i64 {
        i64::from(wall_secs)
    }
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
        let wait = at.secs().saturating_sub(self.now().secs());
        (wait > 0).then(|| Box::pin(tokio::time::sleep(Duration::from_secs(wait as u64))) as SleepFuture)
    }

    fn jumps(&self) -> bool {
        false
    }
}

/// The wall clock run `factor`× faster from `start`: engine time `start + factor × (wall
/// time since creation)`. A dress rehearsal of a live run — real transport, real store,
/// real waiting — compressed.
#[derive(Debug)]
pub struct ScaledClock {
    start: Timestamp,
    /// Wall time at creation, milliseconds since the epoch.
    wall_origin_ms: i64,
    factor: u32,
}

impl ScaledClock {
    /// A clock reading `start` now and running `factor`× faster than the wall clock
    /// (`factor` ≥ 1).
    pub fn new(start: Timestamp, factor: u32) -> ScaledClock {
        ScaledClock { start, wall_origin_ms: wall_ms(), factor: factor.max(1) }
    }

    /// The speed-up.
    pub fn factor(&self) -> u32 {
        self.factor
    }

    fn engine_ms(&self) -> i64 {
        (wall_ms() - self.wall_origin_ms).saturating_mul(i64::from(self.factor))
    }
}

#[allow(clippy::disallowed_methods, reason = "the clocks are the one place that reads wall time")]
fn wall_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Clock for ScaledClock {
    fn now(&self) -> Timestamp {
        self.start.plus(self.engine_ms().div_euclid(1_000))
    }

    fn sleep_until(&self, at: Timestamp) -> Option<SleepFuture> {
        let ahead_ms =
            at.secs().saturating_sub(self.start.secs()).saturating_mul(1_000).saturating_sub(self.engine_ms());
        if ahead_ms <= 0 {
            return None;
        }
        // Round the wall wait up so that `now() >= at` holds when it ends.
        let wall_ms = (ahead_ms as u64).div_ceil(u64::from(self.factor));
        Some(Box::pin(tokio::time::sleep(Duration::from_millis(wall_ms))))
    }

    fn jumps(&self) -> bool {
        false
    }

    fn engine_secs_of_wall(&self, wall_secs: u32) -> i64 {
        i64::from(wall_secs) * i64::from(self.factor)
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

    fn jumps(&self) -> bool {
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
    }

    /// The system clock reads a plausible present.
    #[test]
    fn system_clock_reads_the_present() {
        let now = SystemClock.now();
        assert!(now.secs() > 1_700_000_000);
    }

    /// A scaled clock starts where it is told, runs about `factor`× the wall clock, and its
    /// sleeps end no earlier than their target.
    #[tokio::test]
    async fn scaled_clock_runs_faster_and_sleeps_to_the_target() {
        assert_eq!(ScaledClock::new(Timestamp(0), 600).engine_secs_of_wall(5), 3_000, "a 5 s retry_after");
        assert_eq!(SystemClock.engine_secs_of_wall(5), 5);
        let start = Timestamp(1_800_000_000);
        let clock = ScaledClock::new(start, 3_600);
        assert!(clock.now().secs() - start.secs() < 3_600, "starts at its start");
        let target = clock.now().plus(360); // 0.1 s of wall time
        let sleep = clock.sleep_until(target).expect("a target ahead needs a wait");
        sleep.await;
        assert!(clock.now() >= target, "woke at {:?}, before {target:?}", clock.now());
        assert!(clock.sleep_until(start).is_none(), "the past needs no wait");
    }
}
