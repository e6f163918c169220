//! A user's (or group's) time zone: a fixed offset from UTC, or an IANA zone whose offset
//! changes with daylight saving time and with its government's decisions. Owns every
//! conversion between UTC instants and local calendar days and hours.
//!
//! # Decisions (docs/time_zones.md)
//! - The **local day** of an instant is its local calendar date, read with the offset in
//!   force *at that instant*. A day is as long as its zone makes it: 23 hours on a spring-
//!   forward day, 25 on a fall-back day, none at all for a skipped date (Pacific/Apia,
//!   2011-12-30). Days are numbered as days since 1970-01-01 (local), so a skipped date is a
//!   number no instant has.
//! - The **start of a local day** is the first instant whose local date is that day or
//!   later: local midnight when it exists; the end of the gap when midnight is skipped
//!   (America/Santiago, Asia/Beirut and America/Havana move the clock at 00:00); the first
//!   instant of the next date for a skipped date. Never a panic: a missing or repeated local
//!   time is resolved by searching instants, never by building a local time.
//! - The **local hour** is the wall-clock hour: on a fall-back day hour 1 (New York) comes
//!   twice, on a spring-forward day hour 2 never comes.
//! - [`Zone::next_hour_start`] is the next instant at which the local hour can change: the
//!   next whole local hour, or a transition before it (found by bisection: the zone tables
//!   are not exposed as transitions).
//!
//! Offsets are whole minutes ([`UtcOffset`]); the few historic offsets with seconds (local
//! mean time before ~1900) are truncated, consistently, in every conversion here.

use std::fmt;
use std::str::FromStr;

use chrono::{Offset, TimeZone};
use chrono_tz::Tz;

use crate::domain::{DAY, HOUR, Timestamp, UtcOffset};

/// A time zone: what decides a recipient's local day and hour at each instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Zone {
    /// A fixed offset, whatever the date (what older stores and imports held, and what an
    /// offset column still means).
    Fixed(UtcOffset),
    /// An IANA zone (`Europe/Berlin`): its offset at each instant comes from the tz
    /// database compiled into the binary (chrono-tz).
    Iana(Tz),
}

/// A time zone name the tz database does not know.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{name:?} is not an IANA time zone (e.g. Europe/Berlin, America/New_York, Asia/Kolkata)")]
pub struct UnknownZone {
    /// The name as given (cut to 64 characters).
    pub name: String,
}

impl Default for Zone {
    fn default() -> Zone {
        Zone::UTC
    }
}

impl From<UtcOffset> for Zone {
    fn from(offset: UtcOffset) -> Zone {
        Zone::Fixed(offset)
    }
}

impl FromStr for Zone {
    type Err = UnknownZone;

    /// An IANA name, exactly as the tz database spells it (`Asia/Kathmandu`, `UTC`,
    /// `Etc/GMT+12`).
    fn from_str(name: &str) -> Result<Zone, UnknownZone> {
        name.parse::<Tz>().map(Zone::Iana).map_err(|_| UnknownZone { name: name.chars().take(64).collect() })
    }
}

impl fmt::Display for Zone {
    /// The IANA name, or `UTC+05:30` for a fixed offset.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Zone::Iana(tz) => f.write_str(tz.name()),
            Zone::Fixed(offset) => {
                let sign = if offset.0 < 0 { '-' } else { '+' };
                let m = offset.0.unsigned_abs();
                write!(f, "UTC{sign}{:02}:{:02}", m / 60, m % 60)
            }
        }
    }
}

/// Instants chrono can represent; outside them an IANA zone is read at the nearest one.
fn representable(secs: i64) -> i64 {
    secs.clamp(
        chrono::DateTime::<chrono::Utc>::MIN_UTC.timestamp(),
        chrono::DateTime::<chrono::Utc>::MAX_UTC.timestamp(),
    )
}

impl Zone {
    /// Coordinated Universal Time, as a fixed offset.
    pub const UTC: Zone = Zone::Fixed(UtcOffset(0));

    /// A fixed offset of `minutes` from UTC.
    pub const fn fixed(minutes: i32) -> Zone {
        Zone::Fixed(UtcOffset(minutes))
    }

    /// The IANA name, for an IANA zone (what a store persists; a fixed zone persists its
    /// offset alone).
    pub fn iana_name(self) -> Option<&'static str> {
        match self {
            Zone::Iana(tz) => Some(tz.name()),
            Zone::Fixed(_) => None,
        }
    }

    /// The zone a store row or an import line describes: its IANA name when it has one
    /// (`None` or empty: an older row, which had only an offset), else the fixed offset.
    pub fn from_parts(name: Option<&str>, offset: UtcOffset) -> Result<Zone, UnknownZone> {
        match name.map(str::trim) {
            Some(name) if !name.is_empty() => name.parse(),
            _ => Ok(Zone::Fixed(offset)),
        }
    }

    /// The offset from UTC in force at `at`.
    pub fn offset_at(self, at: Timestamp) -> UtcOffset {
        match self {
            Zone::Fixed(offset) => offset,
            Zone::Iana(tz) => {
                let Some(utc) = chrono::DateTime::from_timestamp(representable(at.secs()), 0) else {
                    return UtcOffset(0);
                };
                let secs = tz.offset_from_utc_datetime(&utc.naive_utc()).fix().local_minus_utc();
                UtcOffset(secs.div_euclid(60))
            }
        }
    }

    /// Local seconds since 1970-01-01T00:00 (local) at `at`.
    fn local_secs(self, at: Timestamp) -> i64 {
        at.secs().saturating_add(self.offset_at(at).secs())
    }

    /// The local calendar day of `at` (days since 1970-01-01, local time).
    pub fn local_day(self, at: Timestamp) -> i64 {
        self.local_secs(at).div_euclid(DAY)
    }

    /// The local wall-clock hour of `at`, 0–23.
    pub fn local_hour(self, at: Timestamp) -> u8 {
        (self.local_secs(at).rem_euclid(DAY) / HOUR) as u8
    }

    /// The first instant whose local day is `day` or later (see the module docs: local
    /// midnight, the end of a gap over midnight, or the next date's start for a skipped
    /// date).
    pub fn start_of_local_day(self, day: i64) -> Timestamp {
        let midnight = day.saturating_mul(DAY);
        if let Zone::Fixed(offset) = self {
            return Timestamp(midnight.saturating_sub(offset.secs()));
        }
        let starts_day = |t: Timestamp| self.local_day(t) >= day && self.local_day(t.plus(-1)) < day;
        // Local midnight read with the offsets in force around it: right unless midnight
        // falls in a gap (or the date is skipped).
        let first = Timestamp(midnight.saturating_sub(self.offset_at(Timestamp(midnight)).secs()));
        let second = Timestamp(midnight.saturating_sub(self.offset_at(first).secs()));
        let mut found: Option<Timestamp> = None;
        for t in [first, second] {
            if starts_day(t) {
                found = Some(found.map_or(t, |f| f.min(t)));
            }
        }
        if let Some(t) = found {
            return t;
        }
        // Bisect for the first instant on `day` or later: every offset lies within ±26 h.
        let (mut lo, mut hi) = (midnight.saturating_sub(30 * HOUR), midnight.saturating_add(30 * HOUR));
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if self.local_day(Timestamp(mid)) >= day {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        Timestamp(hi)
    }

    /// The next instant after `at` at which the local hour can change: the next whole local
    /// hour under the offset in force at `at`, or an offset change before it.
    pub fn next_hour_start(self, at: Timestamp) -> Timestamp {
        let offset = self.offset_at(at);
        let next_whole = Timestamp(
            at.secs().saturating_sub(at.secs().saturating_add(offset.secs()).rem_euclid(HOUR)).saturating_add(HOUR),
        );
        if matches!(self, Zone::Fixed(_)) || self.offset_at(next_whole.plus(-1)) == offset {
            return next_whole;
        }
        // An offset change inside the hour: bisect for its first instant.
        let (mut lo, mut hi) = (at.secs(), next_whole.secs() - 1);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if self.offset_at(Timestamp(mid)) == offset {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        Timestamp(hi)
    }

    /// The latest offset change in the `within` seconds up to `at`: its first instant and the
    /// offset before it. `None` for a fixed zone, or no change (a change and its reversal
    /// both inside the window read as none: keep the window shorter than half a year).
    pub fn last_change(self, at: Timestamp, within: i64) -> Option<(Timestamp, UtcOffset)> {
        if matches!(self, Zone::Fixed(_)) {
            return None;
        }
        let now = self.offset_at(at);
        let (mut lo, mut hi) = (at.secs().saturating_sub(within), at.secs());
        if self.offset_at(Timestamp(lo)) == now {
            return None;
        }
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if self.offset_at(Timestamp(mid)) == now {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        Some((Timestamp(hi), self.offset_at(Timestamp(lo))))
    }

    /// The first instant at or after `from` whose local hour is one of `hours`, or `None`
    /// for an empty set. Right across offset changes: it jumps whole hours only where the
    /// offset at both ends is the same, and walks hour by hour otherwise.
    pub fn first_in_hours(self, hours: crate::domain::HourMask, from: Timestamp) -> Option<Timestamp> {
        if hours.is_empty() {
            return None;
        }
        let mut t = from;
        // Two days of hours, plus the steps an offset change adds, always reach a set hour.
        for _ in 0..64 {
            let (_, ahead) = hours.next_from(self.local_hour(t))?;
            if ahead == 0 {
                return Some(t);
            }
            let offset = self.offset_at(t);
            let hour_start = t.secs().saturating_sub(t.secs().saturating_add(offset.secs()).rem_euclid(HOUR));
            let target = Timestamp(hour_start.saturating_add(i64::from(ahead) * HOUR));
            t = if self.offset_at(target) == offset && self.offset_at(target.plus(-1)) == offset {
                target
            } else {
                self.next_hour_start(t)
            };
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::HourMask;

    fn zone(name: &str) -> Zone {
        name.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    /// A UTC instant from a date and time written in UTC.
    fn utc(text: &str) -> Timestamp {
        Timestamp(chrono::DateTime::parse_from_rfc3339(text).expect("RFC 3339").timestamp())
    }

    /// Days since 1970-01-01 of a calendar date.
    fn day_of(text: &str) -> i64 {
        let date = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").expect("a date");
        date.signed_duration_since(chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch")).num_days()
    }

    /// Length in hours of local day `day`.
    fn hours_in(z: Zone, day: i64) -> i64 {
        (z.start_of_local_day(day + 1).secs() - z.start_of_local_day(day).secs()) / HOUR
    }

    /// New York: 23 h on 2026-03-08 (no 02:xx), 25 h on 2026-11-01 (01:xx twice), and the
    /// local day follows the offset in force at each instant.
    #[test]
    fn new_york_has_23_and_25_hour_days() {
        let ny = zone("America/New_York");
        assert_eq!(hours_in(ny, day_of("2026-03-07")), 24);
        assert_eq!(hours_in(ny, day_of("2026-03-08")), 23);
        assert_eq!(hours_in(ny, day_of("2026-11-01")), 25);
        // 06:59:59Z is 01:59:59 EST; 07:00:00Z is 03:00:00 EDT.
        assert_eq!(ny.local_hour(utc("2026-03-08T06:59:59Z")), 1);
        assert_eq!(ny.local_hour(utc("2026-03-08T07:00:00Z")), 3);
        assert_eq!(ny.next_hour_start(utc("2026-03-08T06:30:00Z")), utc("2026-03-08T07:00:00Z"));
        // Hour 1 twice on 2026-11-01: 05:xxZ (EDT) and 06:xxZ (EST).
        assert_eq!(ny.local_hour(utc("2026-11-01T05:30:00Z")), 1);
        assert_eq!(ny.local_hour(utc("2026-11-01T06:30:00Z")), 1);
        assert_eq!(ny.offset_at(utc("2026-11-01T05:30:00Z")), UtcOffset(-240));
        assert_eq!(ny.offset_at(utc("2026-11-01T06:30:00Z")), UtcOffset(-300));
        // Only hour 2 allowed: none on the 23 h day, so the next one is the day after.
        let two = HourMask::window(2, 3);
        assert_eq!(ny.first_in_hours(two, utc("2026-03-08T05:00:00Z")), Some(utc("2026-03-09T06:00:00Z")));
    }

    /// Berlin: 2026-03-29 has 23 hours, 2026-10-25 has 25; quiet hours 9–21 open at 09:00
    /// local on both, whatever the offset.
    #[test]
    fn berlin_days_around_dst() {
        let berlin = zone("Europe/Berlin");
        assert_eq!(hours_in(berlin, day_of("2026-03-29")), 23);
        assert_eq!(hours_in(berlin, day_of("2026-10-25")), 25);
        let day = HourMask::window(9, 21);
        assert_eq!(berlin.first_in_hours(day, utc("2026-03-28T21:00:00Z")), Some(utc("2026-03-29T07:00:00Z")));
        assert_eq!(berlin.first_in_hours(day, utc("2026-10-24T20:00:00Z")), Some(utc("2026-10-25T08:00:00Z")));
        // 23:59:59 → 00:00:00 local is a new day.
        let before = utc("2026-10-25T22:59:59Z");
        assert_eq!((berlin.local_day(before), berlin.local_hour(before)), (day_of("2026-10-25"), 23));
        assert_eq!(berlin.local_day(before.plus(1)), day_of("2026-10-26"));
    }

    /// Half- and quarter-hour offsets: a local hour starts at :30 or :15 past a UTC hour.
    #[test]
    fn half_and_quarter_hour_offsets() {
        let kolkata = zone("Asia/Kolkata");
        let kathmandu = zone("Asia/Kathmandu");
        assert_eq!(kolkata.offset_at(utc("2026-06-01T00:00:00Z")), UtcOffset(330));
        assert_eq!(kathmandu.offset_at(utc("2026-06-01T00:00:00Z")), UtcOffset(345));
        assert_eq!(kolkata.next_hour_start(utc("2026-06-01T00:00:00Z")), utc("2026-06-01T00:30:00Z"));
        assert_eq!(kathmandu.next_hour_start(utc("2026-06-01T00:00:00Z")), utc("2026-06-01T00:15:00Z"));
        assert_eq!(kathmandu.start_of_local_day(day_of("2026-06-02")), utc("2026-06-01T18:15:00Z"));
    }

    /// The extremes: +14 (Kiritimati) and −12 (Etc/GMT+12) put one instant on local dates
    /// two days apart.
    #[test]
    fn plus_fourteen_and_minus_twelve() {
        let kiritimati = zone("Pacific/Kiritimati");
        let minus_twelve = zone("Etc/GMT+12");
        let t = utc("2026-06-01T11:00:00Z");
        assert_eq!(kiritimati.local_day(t), day_of("2026-06-02"));
        assert_eq!(kiritimati.local_hour(t), 1);
        assert_eq!(minus_twelve.local_day(t), day_of("2026-05-31"));
        assert_eq!(minus_twelve.local_hour(t), 23);
        assert_eq!(minus_twelve.start_of_local_day(day_of("2026-06-01")), utc("2026-06-01T12:00:00Z"));
    }

    /// Feb 29 of a leap year is a day like any other: 24 hours, between Feb 28 and Mar 1.
    #[test]
    fn february_29() {
        let ny = zone("America/New_York");
        let leap = day_of("2028-02-29");
        assert_eq!(leap, day_of("2028-02-28") + 1);
        assert_eq!(hours_in(ny, leap), 24);
        assert_eq!(ny.local_day(utc("2028-02-29T05:00:00Z")), leap);
        assert_eq!(ny.local_day(utc("2028-03-01T04:59:59Z")), leap);
        assert_eq!(ny.local_day(utc("2028-03-01T05:00:00Z")), leap + 1);
    }

    /// A day without local midnight: Asia/Beirut moves 00:00 → 01:00 on 2026-03-29 and
    /// 00:00 → 23:00 (the day before) on 2026-10-25; America/Santiago 00:00 → 01:00 on
    /// 2026-09-06. The day starts at the end of the gap.
    #[test]
    fn days_without_local_midnight() {
        let beirut = zone("Asia/Beirut");
        let start = beirut.start_of_local_day(day_of("2026-03-29"));
        assert_eq!(start, utc("2026-03-28T22:00:00Z"));
        assert_eq!(beirut.local_hour(start), 1);
        assert_eq!(beirut.local_hour(start.plus(-1)), 23);
        assert_eq!(hours_in(beirut, day_of("2026-03-29")), 23);
        // The fall-back repeats 23:xx of 2026-10-24, a 25-hour day.
        assert_eq!(hours_in(beirut, day_of("2026-10-24")), 25);
        let santiago = zone("America/Santiago");
        let start = santiago.start_of_local_day(day_of("2026-09-06"));
        assert_eq!(start, utc("2026-09-06T04:00:00Z"));
        assert_eq!(santiago.local_hour(start), 1);
        assert_eq!(hours_in(santiago, day_of("2026-09-06")), 23);
    }

    /// Pacific/Apia skipped 2011-12-30: no instant has that date, its start is the start of
    /// the 31st, and the 29th ends at that same instant.
    #[test]
    fn a_skipped_day() {
        let apia = zone("Pacific/Apia");
        let skipped = day_of("2011-12-30");
        let end_of_29th = utc("2011-12-30T09:59:59Z");
        assert_eq!(apia.local_day(end_of_29th), skipped - 1);
        assert_eq!(apia.local_day(end_of_29th.plus(1)), skipped + 1);
        assert_eq!(apia.start_of_local_day(skipped), end_of_29th.plus(1));
        assert_eq!(apia.start_of_local_day(skipped + 1), end_of_29th.plus(1));
        assert_eq!(hours_in(apia, skipped), 0);
        // The hour search never lands on the skipped date.
        let at = apia.first_in_hours(HourMask::window(9, 10), utc("2011-12-29T21:00:00Z")).expect("an hour");
        assert_eq!(apia.local_day(at), skipped + 1);
    }

    /// Every conversion terminates and stays consistent at the far ends of time and on
    /// every day of a few DST zones' years: each day starts after the previous one, and
    /// `first_in_hours` answers an hour of the set.
    #[test]
    fn no_panic_and_consistent_everywhere() {
        for name in ["America/New_York", "Europe/Berlin", "Asia/Beirut", "America/Santiago", "Australia/Lord_Howe"] {
            let z = zone(name);
            let first = day_of("2026-01-01");
            for day in first..first + 366 {
                let (start, next) = (z.start_of_local_day(day), z.start_of_local_day(day + 1));
                assert!(start < next, "{name} day {day}");
                assert_eq!(z.local_day(start), day, "{name} day {day}");
                for h in [0u8, 1, 2, 3, 23] {
                    let mask = HourMask::window(h, h + 1);
                    let t = z.first_in_hours(mask, start).expect("an hour");
                    assert_eq!(z.local_hour(t), h, "{name} day {day} hour {h}");
                    assert!(t.plus(-1) < start || z.local_hour(t.plus(-1)) != h);
                }
            }
        }
        for z in [zone("Europe/Berlin"), Zone::fixed(-720)] {
            for t in [Timestamp(i64::MIN), Timestamp(i64::MAX), Timestamp(0)] {
                let _ = (z.local_day(t), z.local_hour(t), z.next_hour_start(t), z.offset_at(t));
            }
            let _ = (z.start_of_local_day(i64::MIN / DAY), z.start_of_local_day(i64::MAX / DAY));
        }
    }

    /// The latest change before an instant: Berlin's spring-forward at 01:00Z on
    /// 2026-03-29, from +1; none a month later, none for a fixed offset.
    #[test]
    fn the_last_offset_change() {
        let berlin = zone("Europe/Berlin");
        let change = utc("2026-03-29T01:00:00Z");
        assert_eq!(berlin.last_change(change.plus(HOUR), 7 * DAY), Some((change, UtcOffset(60))));
        assert_eq!(berlin.last_change(change, 7 * DAY), Some((change, UtcOffset(60))));
        assert_eq!(berlin.last_change(change.plus(-1), 7 * DAY), None);
        assert_eq!(berlin.last_change(change.plus(40 * DAY), 31 * DAY), None);
        assert_eq!(Zone::fixed(60).last_change(change, 7 * DAY), None);
    }

    /// Names: IANA names parse and print back; an unknown one is named in the error; a
    /// store row with no name is its fixed offset.
    #[test]
    fn names_parse_and_print() {
        assert_eq!(zone("Asia/Kathmandu").to_string(), "Asia/Kathmandu");
        assert_eq!(Zone::fixed(330).to_string(), "UTC+05:30");
        assert_eq!(Zone::fixed(-720).to_string(), "UTC-12:00");
        let err = "Mars/Olympus".parse::<Zone>().unwrap_err();
        assert!(err.to_string().contains("Mars/Olympus"));
        assert_eq!(Zone::from_parts(None, UtcOffset(180)), Ok(Zone::fixed(180)));
        assert_eq!(Zone::from_parts(Some(""), UtcOffset(180)), Ok(Zone::fixed(180)));
        assert_eq!(Zone::from_parts(Some("Europe/Moscow"), UtcOffset(0)), Ok(zone("Europe/Moscow")));
    }
}
