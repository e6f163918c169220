//! The send rule: given what a user (or group) has already received and the caps in force,
//! may a message go out at `now`, and if not, why and from when.

use serde::Serialize;

use crate::domain::{Caps, Timestamp, Zone};

/// What the rule needs to know about past sends to one recipient.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CapState {
    /// Opted out (`/stop`, blocked the bot): final.
    pub opted_out: bool,
    /// When the last message counted against the caps went out.
    pub last_sent: Option<Timestamp>,
    /// The local day of `last_sent`.
    pub last_send_day: i64,
    /// Messages counted on `last_send_day`.
    pub sent_on_last_day: u32,
}

impl CapState {
    /// Counts one message against the caps: sent, or possibly sent (an unknown outcome).
    /// Sends may be counted out of time order (two reservations settled in the other
    /// order): one on an earlier local day than the last send no longer binds the daily
    /// count, the cooldown or the frequency, so it changes nothing.
    pub fn record_send(&mut self, at: Timestamp, zone: Zone) {
        let day = at.local_day(zone);
        match self.last_sent {
            Some(last) if day == self.last_send_day => {
                self.sent_on_last_day += 1;
                self.last_sent = Some(last.max(at));
            }
            Some(_) if day < self.last_send_day => {}
            _ => {
                self.last_send_day = day;
                self.sent_on_last_day = 1;
                self.last_sent = Some(at);
            }
        }
    }

    /// Messages already counted in the local day of `at`.
    pub fn sent_on_day_of(&self, at: Timestamp, zone: Zone) -> u32 {
        match self.last_sent {
            Some(_) if at.local_day(zone) == self.last_send_day => self.sent_on_last_day,
            _ => 0,
        }
    }
}

/// Why a message was not sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SuppressReason {
    /// The user opted out.
    OptedOut,
    /// Outside the allowed local hours.
    QuietHours,
    /// The daily limit of the user's local day is reached.
    DailyLimit,
    /// Too soon after the last message.
    Cooldown,
    /// Not a send day for the user's frequency.
    Frequency,
    /// The user holds no segment, so no strategy may message them.
    NoSegment,
    /// A group post was held back because a member could not take one more message.
    MemberCap,
    /// Telegram's limit on posts per minute to groups.
    PlatformRate,
    /// A group post was held back because a member has seen the most group posts allowed
    /// in their local day (the member-exposure limit).
    ExposureLimit,
    /// The cap gate (the ledger) could not answer: nothing is sent until it can (fail
    /// closed).
    GateUnavailable,
    /// An operator paused sending (`POST /v1/control/pause`): nothing is sent until they
    /// resume it, and the send is planned again a minute later, like
    /// [`GateUnavailable`](SuppressReason::GateUnavailable).
    #[serde(rename = "paused_by_operator")]
    Paused,
}

impl SuppressReason {
    /// Every reason, in report order.
    pub const ALL: [SuppressReason; 11] = [
        SuppressReason::OptedOut,
        SuppressReason::QuietHours,
        SuppressReason::DailyLimit,
        SuppressReason::Cooldown,
        SuppressReason::Frequency,
        SuppressReason::NoSegment,
        SuppressReason::MemberCap,
        SuppressReason::PlatformRate,
        SuppressReason::ExposureLimit,
        SuppressReason::GateUnavailable,
        SuppressReason::Paused,
    ];

    /// The name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            SuppressReason::OptedOut => "opted_out",
            SuppressReason::QuietHours => "quiet_hours",
            SuppressReason::DailyLimit => "daily_limit",
            SuppressReason::Cooldown => "cooldown",
            SuppressReason::Frequency => "frequency",
            SuppressReason::NoSegment => "no_segment",
            SuppressReason::MemberCap => "member_cap",
            SuppressReason::PlatformRate => "platform_rate",
            SuppressReason::ExposureLimit => "exposure_limit",
            SuppressReason::GateUnavailable => "gate_unavailable",
            SuppressReason::Paused => "paused_by_operator",
        }
    }
}

/// The rule's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// A message may go out now.
    Send,
    /// Not now: why, and the earliest time a message could go out (`None`: never).
    Suppress {
        /// The first rule that said no.
        reason: SuppressReason,
        /// The earliest time a message may go out under the same caps.
        not_before: Option<Timestamp>,
    },
}

/// May a message go out at `now`? Checked in a fixed order — opt-out, quiet hours, daily
/// limit, cooldown, frequency — and the first rule that says no is the reason.
pub fn decide(state: &CapState, caps: &Caps, zone: Zone, now: Timestamp) -> Decision {
    let reason = if state.opted_out {
        Some(SuppressReason::OptedOut)
    } else if caps.daily_limit == 0 && caps.allowed_hours.is_empty() {
        Some(SuppressReason::NoSegment)
    } else if !caps.allowed_hours.contains(now.local_hour(zone)) {
        Some(SuppressReason::QuietHours)
    } else if state.sent_on_day_of(now, zone) >= caps.daily_limit {
        Some(SuppressReason::DailyLimit)
    } else if state.last_sent.is_some_and(|last| now.secs() - last.secs() < caps.cooldown_secs) {
        Some(SuppressReason::Cooldown)
    } else if state.last_sent.is_some() && {
        let day = now.local_day(zone);
        day != state.last_send_day && day < state.last_send_day + caps.period_days
    } {
        Some(SuppressReason::Frequency)
    } else {
        None
    };
    match reason {
        None => Decision::Send,
        Some(reason) => Decision::Suppress { reason, not_before: earliest_allowed(state, caps, zone, now) },
    }
}

/// The earliest instant at or after `now` at which [`decide`] says [`Decision::Send`], or
/// `None` if no such instant exists (opted out, no allowed hour, a zero daily limit).
pub fn earliest_allowed(state: &CapState, caps: &Caps, zone: Zone, now: Timestamp) -> Option<Timestamp> {
    if state.opted_out || caps.daily_limit == 0 || caps.allowed_hours.is_empty() {
        return None;
    }
    let mut t = now;
    if let Some(last) = state.last_sent {
        t = t.max(last.plus(caps.cooldown_secs));
    }
    // Each pass moves `t` forward to satisfy one rule; a handful of passes settle it
    // (day rules move to a day start, the hour rule to the next allowed local hour, which
    // on a 23-hour day may be the next day's).
    for _ in 0..16 {
        let day = t.local_day(zone);
        if state.last_sent.is_some() {
            if day == state.last_send_day && state.sent_on_last_day >= caps.daily_limit {
                t = Timestamp::start_of_local_day(day + 1, zone).max(t);
                continue;
            }
            if day != state.last_send_day && day < state.last_send_day + caps.period_days {
                t = Timestamp::start_of_local_day(state.last_send_day + caps.period_days, zone);
                continue;
            }
        }
        let open = zone.first_in_hours(caps.allowed_hours, t)?;
        if open == t {
            return Some(t);
        }
        t = open;
    }
    debug_assert!(false, "earliest_allowed did not settle");
    None
}

/// One rule's own answer to "when may the next message go out?", as if it were the only
/// rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct RuleEarliest {
    /// The rule.
    pub rule: SuppressReason,
    /// The earliest instant at or after `now` that this rule alone allows (`None`: never).
    pub at: Option<Timestamp>,
}

/// When the next message may go out, and which rule holds it back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NextSend {
    /// The first instant every rule allows ([`earliest_allowed`]; `None`: never).
    pub at: Option<Timestamp>,
    /// The rule that binds: the one whose own earliest time is the latest (`None`: a message
    /// may go out now). Unlike [`Decision::Suppress`]'s reason — the first rule in check
    /// order that says no at `now` — this names the rule that keeps the user waiting longest:
    /// at night a weekly user is closed by quiet hours *and* by the frequency, and it is the
    /// frequency that decides the day.
    pub binding: Option<SuppressReason>,
    /// Every rule's own earliest time, in check order: opted out, quiet hours, daily limit,
    /// cooldown, frequency. [`NextSend::at`] is at least the latest of them (later only when
    /// one rule's opening falls inside another's closing, e.g. a send day that opens at local
    /// midnight waits for the allowed hours).
    pub rules: [RuleEarliest; 5],
}

/// Each rule's own earliest time, the combined one, and the rule that binds (see
/// [`NextSend`]).
pub fn next_send(state: &CapState, caps: &Caps, zone: Zone, now: Timestamp) -> NextSend {
    let day = now.local_day(zone);
    let opted_out = (!state.opted_out).then_some(now);
    let quiet_hours = zone.first_in_hours(caps.allowed_hours, now);
    let daily_limit = if caps.daily_limit == 0 {
        None
    } else if state.sent_on_day_of(now, zone) >= caps.daily_limit {
        Some(Timestamp::start_of_local_day(day + 1, zone))
    } else {
        Some(now)
    };
    let cooldown = Some(state.last_sent.map_or(now, |last| last.plus(caps.cooldown_secs).max(now)));
    let frequency = Some(match state.last_sent {
        Some(_) if day != state.last_send_day && day < state.last_send_day + caps.period_days => {
            Timestamp::start_of_local_day(state.last_send_day + caps.period_days, zone)
        }
        _ => now,
    });
    let rules = [
        RuleEarliest { rule: SuppressReason::OptedOut, at: opted_out },
        RuleEarliest { rule: SuppressReason::QuietHours, at: quiet_hours },
        RuleEarliest { rule: SuppressReason::DailyLimit, at: daily_limit },
        RuleEarliest { rule: SuppressReason::Cooldown, at: cooldown },
        RuleEarliest { rule: SuppressReason::Frequency, at: frequency },
    ];
    let binding = match decide(state, caps, zone, now) {
        Decision::Send => None,
        Decision::Suppress { reason: SuppressReason::NoSegment, .. } => Some(SuppressReason::NoSegment),
        Decision::Suppress { reason, .. } => {
            // The latest own time, `None` (never) latest of all; on a tie the first in
            // check order.
            let later = |a: Option<Timestamp>, b: Option<Timestamp>| match (a, b) {
                (None, _) => false,
                (Some(_), None) => true,
                (Some(a), Some(b)) => a < b,
            };
            let mut best = rules[0];
            for r in &rules[1..] {
                if later(best.at, r.at) {
                    best = *r;
                }
            }
            // `decide` said no, so some rule's own time is after `now`; were none, its
            // reason is the honest answer.
            Some(if best.at == Some(now) { reason } else { best.rule })
        }
    };
    NextSend { at: earliest_allowed(state, caps, zone, now), binding, rules }
}

/// Whether further sends at `times` (sorted here) would all pass [`decide`] one after the
/// other, starting from `state`. `None` if they fit; otherwise the first rule that breaks.
/// Used for booked group posts: a direct send must leave every booked slot valid.
pub fn sends_fit(state: &CapState, caps: &Caps, zone: Zone, times: &mut [Timestamp]) -> Option<SuppressReason> {
    times.sort_unstable();
    let mut state = *state;
    for &t in times.iter() {
        if let Decision::Suppress { reason, .. } = decide(&state, caps, zone, t) {
            return Some(reason);
        }
        state.record_send(t, zone);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{DAY, HOUR, HourMask};

    const MSK: Zone = Zone::fixed(180);

    fn caps(daily_limit: u32, cooldown_h: i64, hours: HourMask, period_days: i64) -> Caps {
        Caps { daily_limit, cooldown_secs: cooldown_h * HOUR, allowed_hours: hours, period_days }
    }

    /// A UTC instant for local `day` at local `hour:minute` in `offset`.
    fn local(day: i64, hour: i64, minute: i64, zone: Zone) -> Timestamp {
        Timestamp::start_of_local_day(day, zone).plus(hour * HOUR + minute * 60)
    }

    fn suppressed_for(d: Decision) -> Option<SuppressReason> {
        match d {
            Decision::Send => None,
            Decision::Suppress { reason, .. } => Some(reason),
        }
    }

    /// The daily limit counts in the user's local day: it resets at local midnight, not UTC.
    #[test]
    fn daily_limit_resets_at_local_midnight() {
        let c = caps(2, 0, HourMask::ALL_DAY, 1);
        let mut s = CapState::default();
        s.record_send(local(500, 22, 0, MSK), MSK);
        s.record_send(local(500, 23, 0, MSK), MSK);
        let at = local(500, 23, 30, MSK);
        assert_eq!(suppressed_for(decide(&s, &c, MSK, at)), Some(SuppressReason::DailyLimit));
        // 00:10 local is still 21:10 UTC of the previous UTC day — but a new local day.
        let after_midnight = local(501, 0, 10, MSK);
        assert_eq!(after_midnight.local_day(Zone::UTC), 500);
        assert_eq!(decide(&s, &c, MSK, after_midnight), Decision::Send);
        assert_eq!(earliest_allowed(&s, &c, MSK, at), Some(local(501, 0, 0, MSK)));
    }

    /// The same UTC instants counted in two time zones fall into different local days.
    #[test]
    fn daily_limit_depends_on_the_time_zone() {
        let c = caps(1, 0, HourMask::ALL_DAY, 1);
        let first = Timestamp(1_000 * DAY + 20 * HOUR); // 20:00 UTC
        let second = Timestamp(1_000 * DAY + 23 * HOUR); // 23:00 UTC
        let utc = Zone::UTC;
        let mut s = CapState::default();
        s.record_send(first, utc);
        assert_eq!(suppressed_for(decide(&s, &c, utc, second)), Some(SuppressReason::DailyLimit));
        // In UTC+3 the first send is 23:00 local on day 1000, the second 02:00 local on day 1001.
        let mut s = CapState::default();
        s.record_send(first, MSK);
        assert_eq!(decide(&s, &c, MSK, second), Decision::Send);
        // In UTC−5 both fall on the same local day.
        let ny = Zone::fixed(-300);
        let mut s = CapState::default();
        s.record_send(first, ny);
        assert_eq!(suppressed_for(decide(&s, &c, ny, second)), Some(SuppressReason::DailyLimit));
    }

    /// Cooldown holds to the second.
    #[test]
    fn cooldown_holds_to_the_second() {
        let c = caps(10, 4, HourMask::ALL_DAY, 1);
        let mut s = CapState::default();
        let t0 = local(10, 9, 0, MSK);
        s.record_send(t0, MSK);
        let just_before = t0.plus(4 * HOUR - 1);
        assert_eq!(suppressed_for(decide(&s, &c, MSK, just_before)), Some(SuppressReason::Cooldown));
        assert_eq!(decide(&s, &c, MSK, t0.plus(4 * HOUR)), Decision::Send);
        assert_eq!(earliest_allowed(&s, &c, MSK, just_before), Some(t0.plus(4 * HOUR)));
    }

    /// Quiet hours: nothing outside the window, and the next opening is the window's start.
    #[test]
    fn quiet_hours_are_never_crossed() {
        let c = caps(3, 0, HourMask::window(9, 21), 1);
        let s = CapState::default();
        let night = local(10, 22, 30, MSK);
        match decide(&s, &c, MSK, night) {
            Decision::Suppress { reason: SuppressReason::QuietHours, not_before } => {
                assert_eq!(not_before, Some(local(11, 9, 0, MSK)));
            }
            other => panic!("expected quiet hours, got {other:?}"),
        }
        assert_eq!(suppressed_for(decide(&s, &c, MSK, local(10, 21, 0, MSK))), Some(SuppressReason::QuietHours));
        assert_eq!(decide(&s, &c, MSK, local(10, 20, 59, MSK)), Decision::Send);
        // A window that wraps midnight.
        let c = caps(3, 0, HourMask::window(22, 2), 1);
        assert_eq!(decide(&s, &c, MSK, local(10, 1, 59, MSK)), Decision::Send);
        assert_eq!(earliest_allowed(&s, &c, MSK, local(10, 2, 0, MSK)), Some(local(10, 22, 0, MSK)));
    }

    /// Opt-out is final: no time is ever allowed again.
    #[test]
    fn opt_out_is_final() {
        let c = caps(3, 0, HourMask::ALL_DAY, 1);
        let s = CapState { opted_out: true, ..CapState::default() };
        for day in 0..30 {
            let t = local(100 + day, 12, 0, MSK);
            assert_eq!(
                decide(&s, &c, MSK, t),
                Decision::Suppress { reason: SuppressReason::OptedOut, not_before: None }
            );
        }
        assert_eq!(earliest_allowed(&s, &c, MSK, local(100, 0, 0, MSK)), None);
    }

    /// Every-two-days: the day after a send day is closed, the one after opens.
    #[test]
    fn frequency_spaces_send_days() {
        let c = caps(2, 0, HourMask::window(9, 21), 2);
        let mut s = CapState::default();
        s.record_send(local(10, 10, 0, MSK), MSK);
        assert_eq!(decide(&s, &c, MSK, local(10, 15, 0, MSK)), Decision::Send, "same day, under the limit");
        assert_eq!(suppressed_for(decide(&s, &c, MSK, local(11, 10, 0, MSK))), Some(SuppressReason::Frequency));
        assert_eq!(earliest_allowed(&s, &c, MSK, local(11, 10, 0, MSK)), Some(local(12, 9, 0, MSK)));
    }

    /// A zero daily limit or an empty window never allows a send.
    #[test]
    fn impossible_caps_never_send() {
        let s = CapState::default();
        assert_eq!(earliest_allowed(&s, &caps(0, 0, HourMask::ALL_DAY, 1), MSK, local(1, 0, 0, MSK)), None);
        assert_eq!(earliest_allowed(&s, &caps(1, 0, HourMask::NONE, 1), MSK, local(1, 0, 0, MSK)), None);
    }

    /// A booked slot constrains sends before it: too close to the booking breaks the
    /// cooldown; far enough before it fits; the booking itself must fit the daily limit.
    #[test]
    fn sends_fit_around_a_booking() {
        let c = caps(2, 4, HourMask::ALL_DAY, 1);
        let s = CapState::default();
        let booked = local(10, 18, 0, MSK);
        assert_eq!(sends_fit(&s, &c, MSK, &mut [booked, local(10, 16, 0, MSK)]), Some(SuppressReason::Cooldown));
        assert_eq!(sends_fit(&s, &c, MSK, &mut [booked, local(10, 13, 0, MSK)]), None);
        let mut two = CapState::default();
        two.record_send(local(10, 8, 0, MSK), MSK);
        two.record_send(local(10, 12, 0, MSK), MSK);
        assert_eq!(sends_fit(&two, &c, MSK, &mut [booked]), Some(SuppressReason::DailyLimit));
    }

    /// At night, a weekly user who was messaged two days ago is closed by quiet hours and
    /// by the frequency: the frequency binds (it decides the day), not quiet hours.
    #[test]
    fn the_frequency_binds_a_weekly_user_at_night() {
        let c = caps(1, 72, HourMask::window(11, 20), 7);
        let mut s = CapState::default();
        s.record_send(local(100, 12, 0, MSK), MSK);
        let now = local(102, 2, 0, MSK);
        assert_eq!(suppressed_for(decide(&s, &c, MSK, now)), Some(SuppressReason::QuietHours), "first in check order");
        let next = next_send(&s, &c, MSK, now);
        assert_eq!(next.binding, Some(SuppressReason::Frequency));
        assert_eq!(next.at, Some(local(107, 11, 0, MSK)));
        let own = |rule| next.rules.iter().find(|r| r.rule == rule).and_then(|r| r.at);
        assert_eq!(own(SuppressReason::QuietHours), Some(local(102, 11, 0, MSK)));
        assert_eq!(own(SuppressReason::Cooldown), Some(local(103, 12, 0, MSK)));
        assert_eq!(own(SuppressReason::Frequency), Some(local(107, 0, 0, MSK)));
        assert_eq!(own(SuppressReason::DailyLimit), Some(now));
    }

    /// When nothing but the hour stands in the way, quiet hours bind; a user who may be
    /// messaged now has no binding rule; an opted-out user is bound by the opt-out, for good.
    #[test]
    fn quiet_hours_bind_when_only_the_hour_is_wrong() {
        let c = caps(1, 72, HourMask::window(11, 20), 7);
        let mut s = CapState::default();
        s.record_send(local(100, 12, 0, MSK), MSK);
        let now = local(108, 2, 0, MSK);
        let next = next_send(&s, &c, MSK, now);
        assert_eq!(next.binding, Some(SuppressReason::QuietHours));
        assert_eq!(next.at, Some(local(108, 11, 0, MSK)));
        let noon = next_send(&s, &c, MSK, local(108, 12, 0, MSK));
        assert_eq!((noon.binding, noon.at), (None, Some(local(108, 12, 0, MSK))));
        s.opted_out = true;
        let gone = next_send(&s, &c, MSK, now);
        assert_eq!((gone.binding, gone.at), (Some(SuppressReason::OptedOut), None));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// Zones with a DST change, a gap at midnight, a skipped day or an odd offset.
        const EDGE_ZONES: [&str; 9] = [
            "America/New_York",
            "Europe/Berlin",
            "Asia/Beirut",
            "America/Santiago",
            "Pacific/Apia",
            "Asia/Kathmandu",
            "Australia/Lord_Howe",
            "Pacific/Kiritimati",
            "Etc/GMT+12",
        ];

        /// Two days before an edge (UTC midnight): DST in New York and Berlin/Beirut in March,
        /// Beirut/Berlin and New York in autumn, Santiago's gap, Feb 29 2028, Apia's skipped
        /// day, and a plain day.
        const EDGE_DAYS: [i64; 8] = [
            1_772_755_200, // 2026-03-06
            1_774_569_600, // 2026-03-27
            1_776_902_400, // 2026-04-23 (none: a plain spring day)
            1_788_480_000, // 2026-09-04
            1_792_713_600, // 2026-10-23
            1_793_318_400, // 2026-10-30
            1_835_222_400, // 2028-02-27
            1_325_030_400, // 2011-12-28
        ];

        proptest! {
            /// Whatever the history, `earliest_allowed` returns a time that `decide` accepts,
            /// and no earlier whole minute is accepted.
            #[test]
            fn earliest_allowed_is_allowed_and_earliest(
                offset_min in -720i32..=840,
                named in 0usize..(EDGE_ZONES.len() * 2),
                base_day in 0usize..EDGE_DAYS.len(),
                daily_limit in 1u32..4,
                cooldown_h in 0i64..48,
                start in 0u8..24,
                end in 0u8..24,
                period in 1i64..8,
                sends in proptest::collection::vec(0i64..(5 * DAY), 0..6),
                probe in 0i64..(6 * DAY),
            ) {
                // Half the cases in a zone with an edge near one of the edge dates.
                let offset = match EDGE_ZONES.get(named) {
                    Some(name) => name.parse::<Zone>().expect("a known zone"),
                    None => Zone::fixed(offset_min),
                };
                let c = caps(daily_limit, cooldown_h, HourMask::window(start, end), period);
                let base = EDGE_DAYS[base_day];
                let mut sorted = sends.clone();
                sorted.sort_unstable();
                let mut s = CapState::default();
                for at in sorted {
                    s.record_send(Timestamp(base + at), offset);
                }
                let now = Timestamp(base + probe).max(s.last_sent.unwrap_or_default());
                let t = earliest_allowed(&s, &c, offset, now).expect("a window and a limit exist");
                prop_assert!(t >= now);
                prop_assert_eq!(decide(&s, &c, offset, t), Decision::Send);
                // The binding rule's own time is the latest, and the combined time is
                // no earlier than any rule's own.
                let next = next_send(&s, &c, offset, now);
                prop_assert_eq!(next.at, Some(t));
                for r in &next.rules {
                    prop_assert!(r.at.is_some_and(|at| at <= t), "{:?}", r);
                }
                if let Some(binding) = next.binding {
                    let own = next.rules.iter().find(|r| r.rule == binding).and_then(|r| r.at);
                    prop_assert!(next.rules.iter().all(|r| r.at <= own));
                    prop_assert!(own > Some(now));
                } else {
                    prop_assert_eq!(t, now);
                }
                let mut probe_t = now;
                while probe_t < t {
                    prop_assert_ne!(decide(&s, &c, offset, probe_t), Decision::Send, "{:?} earlier than {:?}", probe_t, t);
                    probe_t = probe_t.plus(600);
                }
            }
        }
    }
}
