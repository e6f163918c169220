//! Simulated faults: `gavat simulate --faults FILE` runs the same engine as ever, with
//! seeded faults injected only at its seams — the transport ([`FaultyTransport`]: 429s,
//! 5xx, accept-then-hang, slow answers; inbound events duplicated and reordered), the cap
//! ledger ([`FaultyLedger`]: outages, failing closed) and the store ([`HashingLog`]: the
//! SHA-256 of the event log, so that determinism is visible). There is no second engine.
//!
//! Every draw comes from the run's seed: outbound faults from a stream per user (and per
//! group), inbound faults from another stream per user, windows (storms, outages) from one
//! stream drawn up front. A user's work runs in order on one shard, so the faults — and the
//! report and the event log — are the same for every `--threads` (docs/faults.md).
//!
//! The checkers ride on the same seams: the transport keeps the ground-truth ledger of what
//! the simulated platform accepted (duplicates, unknowns resent, sends before a 429's
//! `retry_after`, sends while the gate was down), the ledger counts reservations left open,
//! and [`DrainWatch`] follows every planned message to a final state (liveness runs).

mod drain;
mod ledger;
mod log_hash;
mod plan;
mod summary;
mod transport;

use std::sync::atomic::{AtomicU64, Ordering};

use rand::RngExt;

use crate::domain::{DAY, Timestamp};

pub use drain::{DrainWatch, TakeOpenRetries};
pub use ledger::FaultyLedger;
pub use log_hash::HashingLog;
pub use plan::{
    AcceptThenHang, DuplicateInbound, FaultPlan, FaultPlanError, LedgerUnavailable, RateLimited, ReorderInbound,
    ServerError, Slow,
};
pub(crate) use summary::RunFigures;
pub use summary::{FaultSummary, Figure};
pub use transport::FaultyTransport;

/// Salts of the fault streams, so that they never meet the population's, the behaviour's or
/// the engine's streams drawn from the same seed.
const OUTBOUND_SALT: u64 = 0x6661_756c_745f_6f75; // "fault_ou"
const INBOUND_SALT: u64 = 0x6661_756c_745f_696e; // "fault_in"
const WINDOW_SALT: u64 = 0x6661_756c_745f_7769; // "fault_wi"

/// Half-open windows of time `[start, end)`, merged where they overlap, in time order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Windows(Vec<(i64, i64)>);

impl Windows {
    /// `per_day` windows on each day of `[start, until)`, each starting at a uniformly drawn
    /// second of its day and lasting `[low, high]` seconds (cut at `until`).
    pub(crate) fn draw(
        rng: &mut rand_pcg::Pcg64Mcg,
        start: Timestamp,
        until: Timestamp,
        per_day: u32,
        [low, high]: [u32; 2],
    ) -> Windows {
        let mut windows = Vec::new();
        let mut day = start.secs();
        while day < until.secs() {
            for _ in 0..per_day {
                let from = day + rng.random_range(0..DAY);
                let to = from + i64::from(rng.random_range(low..=high));
                if from < until.secs() {
                    windows.push((from, to.min(until.secs())));
                }
            }
            day += DAY;
        }
        windows.sort_unstable();
        let mut merged: Vec<(i64, i64)> = Vec::with_capacity(windows.len());
        for (from, to) in windows {
            match merged.last_mut() {
                Some(last) if from <= last.1 => last.1 = last.1.max(to),
                _ => merged.push((from, to)),
            }
        }
        Windows(merged)
    }

    /// The end of the window holding `at`, if one does.
    pub fn covering(&self, at: Timestamp) -> Option<Timestamp> {
        let after = self.0.partition_point(|(from, _)| *from <= at.secs());
        let (_, to) = *self.0.get(after.checked_sub(1)?)?;
        (at.secs() < to).then_some(Timestamp(to))
    }

    /// How many windows there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The windows of one run: bot-wide 429 storms and ledger outages, drawn up front from the
/// seed, within the faulty part of the run.
#[derive(Debug, Clone, Default)]
pub struct FaultWindows {
    /// 429 storms (scope bot).
    pub storms: Windows,
    /// Cap-gate outages.
    pub outages: Windows,
}

impl FaultWindows {
    /// The windows `plan` asks for between `start` and `until` (the end of the faults).
    pub fn draw(plan: &FaultPlan, seed: u64, start: Timestamp, until: Timestamp) -> FaultWindows {
        let mut rng = gavat_sim::stream(seed ^ WINDOW_SALT, u64::MAX, gavat_sim::Purpose::Behaviour);
        let r = &plan.rate_limited;
        let storms = Windows::draw(&mut rng, start, until, r.storms_per_day, r.storm_secs);
        let l = &plan.ledger_unavailable;
        let outages = Windows::draw(&mut rng, start, until, l.windows_per_day, l.duration_secs);
        FaultWindows { storms, outages }
    }
}

/// Counters shared by the faulty seams. Sums only, so the order in which shards add to them
/// does not matter.
#[derive(Debug, Default)]
pub struct FaultCounters {
    pub(crate) rate_limited_chat: AtomicU64,
    pub(crate) rate_limited_storm: AtomicU64,
    pub(crate) server_error_500: AtomicU64,
    pub(crate) server_error_502: AtomicU64,
    pub(crate) accept_then_hang: AtomicU64,
    pub(crate) slow: AtomicU64,
    pub(crate) slow_timed_out: AtomicU64,
    pub(crate) ledger_unavailable: AtomicU64,
    pub(crate) duplicate_inbound: AtomicU64,
    pub(crate) reorder_inbound: AtomicU64,
    /// Transport calls.
    pub(crate) sends: AtomicU64,
    pub(crate) delivered: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) unknown: AtomicU64,
    pub(crate) retried: AtomicU64,
    /// Ground truth: unknown outcomes the simulated platform had in fact delivered.
    pub(crate) unknown_delivered: AtomicU64,
    /// Checkers: a message id the platform had accepted, sent again.
    pub(crate) duplicate_sends: AtomicU64,
    /// A message id whose outcome was unknown, sent again.
    pub(crate) unknown_resent: AtomicU64,
    /// A send to a chat (or during a storm) before the `retry_after` it was given elapsed.
    pub(crate) early_retries: AtomicU64,
    /// A send while the cap gate was down.
    pub(crate) sends_while_gate_down: AtomicU64,
}

impl FaultCounters {
    pub(crate) fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Windows are drawn within the span, merged, and found by time; the same seed draws the
    /// same windows.
    #[test]
    fn windows_cover_what_they_say() {
        let start = Timestamp(1_767_225_600);
        let until = start.plus(3 * DAY);
        let mut rng = gavat_sim::stream(5, 1, gavat_sim::Purpose::Behaviour);
        let w = Windows::draw(&mut rng, start, until, 4, [600, 3_600]);
        let mut again = gavat_sim::stream(5, 1, gavat_sim::Purpose::Behaviour);
        assert_eq!(w, Windows::draw(&mut again, start, until, 4, [600, 3_600]));
        assert!(!w.is_empty() && w.len() <= 12);
        for &(from, to) in &w.0 {
            assert!(from >= start.secs() && to <= until.secs() && from < to);
            assert_eq!(w.covering(Timestamp(from)), Some(Timestamp(to)));
            assert_eq!(w.covering(Timestamp(to - 1)), Some(Timestamp(to)));
            assert_ne!(w.covering(Timestamp(to)), Some(Timestamp(to)));
        }
        assert!(w.0.windows(2).all(|p| p[0].1 < p[1].0), "merged and ordered");
        assert_eq!(w.covering(start.plus(-1)), None);
    }
}
