//! [`Daily`]: a segment's outcomes counted per UTC day — what the reports' and the
//! dashboard's time series are drawn from.
//!
//! Counting is one division and one increment per outcome, in the segment actor that
//! already counts the totals (never in the shards' hot loop). Days are kept in a vector
//! offset by the first day seen: outcomes arrive nearly in time order, so the usual case
//! is the last element or one pushed after it.

use crate::domain::{DAY, Timestamp};

/// The counts of one UTC day.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DayCounts {
    /// Messages sent (direct and group).
    pub sent: u64,
    /// Replies.
    pub responses: u64,
    /// Purchases.
    pub conversions: u64,
    /// Opt-outs and blocks.
    pub opt_outs: u64,
    /// Sends a rule held back.
    pub suppressed: u64,
    /// Transport failures.
    pub failed: u64,
}

impl DayCounts {
    /// Adds another day's counts.
    pub fn absorb(&mut self, other: &DayCounts) {
        self.sent += other.sent;
        self.responses += other.responses;
        self.conversions += other.conversions;
        self.opt_outs += other.opt_outs;
        self.suppressed += other.suppressed;
        self.failed += other.failed;
    }
}

/// Counts per UTC day, from the first day with an outcome to the last.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Daily {
    /// The UTC day number (days since 1970-01-01) of `days[0]`.
    first: i64,
    /// One entry per day from `first`, without gaps.
    days: Vec<DayCounts>,
}

impl Daily {
    /// The counts of the UTC day holding `at`, created (with the days between) if new.
    pub fn at(&mut self, at: Timestamp) -> &mut DayCounts {
        let day = at.secs().div_euclid(DAY);
        if self.days.is_empty() {
            self.first = day;
        }
        if day < self.first {
            // An outcome before the first one seen: rare (a batch out of order), so the
            // vector is shifted rather than kept as a deque.
            let gap = usize::try_from(self.first - day).unwrap_or(0);
            self.days.splice(0..0, std::iter::repeat_n(DayCounts::default(), gap));
            self.first = day;
        }
        let index = usize::try_from(day - self.first).unwrap_or(0);
        if index >= self.days.len() {
            self.days.resize(index + 1, DayCounts::default());
        }
        &mut self.days[index]
    }

    /// Every day with its start (UTC midnight), in order, gaps included as zeros.
    pub fn days(&self) -> impl Iterator<Item = (Timestamp, &DayCounts)> + '_ {
        self.days.iter().enumerate().map(|(i, c)| (Timestamp((self.first + i as i64) * DAY), c))
    }

    /// The counts of the UTC day starting at `midnight` (zeros if none were counted).
    pub fn on(&self, midnight: Timestamp) -> DayCounts {
        let day = midnight.secs().div_euclid(DAY);
        usize::try_from(day - self.first).ok().and_then(|i| self.days.get(i)).copied().unwrap_or_default()
    }

    /// Whether nothing was counted.
    pub fn is_empty(&self) -> bool {
        self.days.is_empty()
    }

    /// Adds another series, day by day.
    pub fn absorb(&mut self, other: &Daily) {
        for (midnight, counts) in other.days() {
            self.at(midnight).absorb(counts);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Outcomes land on their UTC day whatever the order they arrive in; the days between
    /// are zeros, and absorbing adds day by day.
    #[test]
    fn counts_by_utc_day_in_any_order() {
        let mut d = Daily::default();
        let jan1 = 1_767_225_600; // 2026-01-01T00:00:00Z
        d.at(Timestamp(jan1 + 2 * DAY + 5)).sent += 1;
        d.at(Timestamp(jan1 + DAY - 1)).responses += 1;
        d.at(Timestamp(jan1 + 2 * DAY + 80_000)).sent += 1;
        let days: Vec<(i64, u64, u64)> = d.days().map(|(t, c)| (t.secs(), c.sent, c.responses)).collect();
        assert_eq!(days, vec![(jan1, 0, 1), (jan1 + DAY, 0, 0), (jan1 + 2 * DAY, 2, 0)]);
        assert_eq!(d.on(Timestamp(jan1 + 2 * DAY)).sent, 2);
        assert_eq!(d.on(Timestamp(jan1 + 9 * DAY)), DayCounts::default());
        let mut total = Daily::default();
        total.absorb(&d);
        total.absorb(&d);
        assert_eq!(total.on(Timestamp(jan1)).responses, 2);
        assert_eq!(total.days().count(), 3);
    }
}
