//! Where a synthetic user lives: a fixed offset from UTC, or an IANA zone whose offset
//! follows daylight saving time; and the zones the `"edges"` preset packs a population into.

use chrono::{Offset, TimeZone as _};
use chrono_tz::Tz;

/// A synthetic user's (or group's) time zone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TimeZone {
    /// A fixed offset from UTC, minutes.
    Offset(i32),
    /// An IANA zone.
    Named(Tz),
}

/// The zones of the `zones = "edges"` preset, one calendar edge each (sim/README.md):
/// 23- and 25-hour days, half- and quarter-hour offsets, the extremes, a DST change at
/// local midnight (no local midnight that day), a skipped day, a half-hour DST shift.
pub const EDGE_ZONES: [&str; 11] = [
    "America/New_York",    // DST: 23 h on 2026-03-08, 25 h on 2026-11-01
    "Europe/Berlin",       // DST: 23 h on 2026-03-29, 25 h on 2026-10-25
    "Asia/Kolkata",        // +5:30
    "Asia/Kathmandu",      // +5:45
    "Pacific/Kiritimati",  // +14
    "Etc/GMT+12",          // −12
    "America/Santiago",    // DST at 24:00: no local midnight on 2026-09-06
    "Asia/Beirut",         // DST at 00:00: no local midnight on 2026-03-29
    "Pacific/Apia",        // skipped 2011-12-30
    "Australia/Lord_Howe", // a 30-minute DST shift
    "Pacific/Chatham",     // +12:45 / +13:45
];

impl TimeZone {
    /// The offset from UTC in force at `at` (unix seconds), minutes.
    pub fn offset_minutes_at(self, at: i64) -> i32 {
        match self {
            TimeZone::Offset(minutes) => minutes,
            TimeZone::Named(tz) => match chrono::DateTime::from_timestamp(at, 0) {
                Some(utc) => tz.offset_from_utc_datetime(&utc.naive_utc()).fix().local_minus_utc().div_euclid(60),
                None => 0,
            },
        }
    }

    /// The local hour (0–23) at `at`.
    pub fn local_hour(self, at: i64) -> usize {
        ((at + i64::from(self.offset_minutes_at(at)) * 60).rem_euclid(86_400) / 3_600) as usize
    }

    /// The end of the local hour that holds `at`: the next whole local hour, or an offset
    /// change before it.
    pub fn hour_end(self, at: i64) -> i64 {
        let offset = self.offset_minutes_at(at);
        let whole = at - (at + i64::from(offset) * 60).rem_euclid(3_600) + 3_600;
        if matches!(self, TimeZone::Offset(_)) || self.offset_minutes_at(whole - 1) == offset {
            return whole;
        }
        let (mut lo, mut hi) = (at, whole - 1);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if self.offset_minutes_at(mid) == offset {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        hi
    }

    /// The IANA name, or `None` for a fixed offset.
    pub fn name(self) -> Option<&'static str> {
        match self {
            TimeZone::Named(tz) => Some(tz.name()),
            TimeZone::Offset(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every edge zone is in the tz database, and New York's hour ends at its DST change.
    #[test]
    fn edge_zones_exist_and_hours_end_at_changes() {
        for name in EDGE_ZONES {
            assert!(name.parse::<Tz>().is_ok(), "{name}");
        }
        let ny = TimeZone::Named("America/New_York".parse().expect("a zone"));
        // 2026-03-08T06:30:00Z is 01:30 EST; the clock jumps to 03:00 at 07:00Z.
        assert_eq!(ny.local_hour(1_772_951_400), 1);
        assert_eq!(ny.hour_end(1_772_951_400), 1_772_953_200);
        assert_eq!(ny.local_hour(1_772_953_200), 3);
        assert_eq!(TimeZone::Offset(345).hour_end(0), 900);
    }
}
