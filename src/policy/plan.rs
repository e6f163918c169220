//! When to try the next message: the earliest time the caps allow, moved to the governing
//! strategy's optimal hours when one comes later on the same local day.

use crate::domain::{Caps, HOUR, HourMask, Timestamp, Zone};

use super::decide::{CapState, Decision, decide, earliest_allowed};

/// The next send time at or after `now`, or `None` if the caps never allow one.
///
/// Starts from [`earliest_allowed`]; if that hour is not one of `optimal` and an optimal hour
/// that the caps allow comes later the same local day, waits for it. `jitter_secs` (drawn by
/// the caller from the user's own random stream, `0..3600`) spreads users over the chosen
/// hour; it is applied only while it keeps the time inside that hour, so it never crosses a
/// cap. The returned time always satisfies [`decide`].
pub fn plan_next_send(
    state: &CapState,
    caps: &Caps,
    optimal: HourMask,
    zone: Zone,
    now: Timestamp,
    jitter_secs: i64,
) -> Option<Timestamp> {
    let earliest = earliest_allowed(state, caps, zone, now)?;
    let day = earliest.local_day(zone);
    let hour = earliest.local_hour(zone);

    // Probes walk the local hours one by one ([`Zone::next_hour_start`]), so a 23- or
    // 25-hour day is walked as the zone has it.
    let mut chosen = earliest;
    if !optimal.contains(hour) {
        let mut probe = zone.next_hour_start(earliest);
        while probe.local_day(zone) == day {
            if optimal.contains(probe.local_hour(zone)) && decide(state, caps, zone, probe) == Decision::Send {
                chosen = probe;
                break;
            }
            probe = zone.next_hour_start(probe);
        }
    }
    // The jitter stays inside the chosen local hour (ended early by an offset change).
    let end_of_hour = zone.next_hour_start(chosen).plus(-1);
    let jittered = Timestamp((chosen.secs() + jitter_secs.clamp(0, HOUR - 1)).min(end_of_hour.secs()));
    if jittered != chosen && decide(state, caps, zone, jittered) == Decision::Send {
        Some(jittered)
    } else {
        Some(chosen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSK: Zone = Zone::fixed(180);

    fn local(day: i64, hour: i64, minute: i64) -> Timestamp {
        Timestamp::start_of_local_day(day, MSK).plus(hour * HOUR + minute * 60)
    }

    fn caps() -> Caps {
        Caps { daily_limit: 2, cooldown_secs: 4 * HOUR, allowed_hours: HourMask::window(9, 21), period_days: 1 }
    }

    /// Waits for the optimal hour later the same day, with jitter inside that hour.
    #[test]
    fn prefers_optimal_hours_the_same_day() {
        let s = CapState::default();
        let t = plan_next_send(&s, &caps(), HourMask::window(18, 20), MSK, local(3, 7, 0), 600).unwrap();
        assert_eq!(t, local(3, 18, 10));
    }

    /// When no optimal hour is left that day, takes the earliest allowed time.
    #[test]
    fn falls_back_to_the_earliest_allowed_time() {
        let s = CapState::default();
        let t = plan_next_send(&s, &caps(), HourMask::window(10, 11), MSK, local(3, 15, 0), 0).unwrap();
        assert_eq!(t, local(3, 15, 0));
    }

    /// Across New York's spring-forward (2026-03-08, no 02:xx) a plan made the evening
    /// before lands at the optimal hour on the wall clock (18:00 EDT, 22:00Z, not 23:00Z),
    /// and across the fall-back the jitter stays inside the chosen local hour.
    #[test]
    fn plans_follow_the_wall_clock_across_dst() {
        let ny: Zone = "America/New_York".parse().expect("a zone");
        let s = CapState::default();
        let caps = Caps { daily_limit: 1, cooldown_secs: 0, allowed_hours: HourMask::window(9, 21), period_days: 1 };
        // 2026-03-07T23:00:00Z is 18:00 EST; the window closes at 21:00 on the 7th.
        let mut state = s;
        state.record_send(Timestamp(1_772_924_400), ny);
        let t = plan_next_send(&state, &caps, HourMask::window(18, 19), ny, Timestamp(1_772_924_400), 0).unwrap();
        // The next day (23 hours long) at 18:00 EDT = 22:00Z.
        assert_eq!(t, Timestamp(1_773_007_200));
        assert_eq!((ny.local_hour(t), decide(&state, &caps, ny, t)), (18, Decision::Send));
        // The fall-back hour 01:00–02:00 comes twice on 2026-11-01; with 01:xx allowed only,
        // a plan from 00:30 EDT takes the first 01:00 and jitters within it.
        let night = Caps { allowed_hours: HourMask::window(1, 2), ..caps };
        let t = plan_next_send(&s, &night, HourMask::NONE, ny, Timestamp(1_793_507_400), 3_599).unwrap();
        assert_eq!(ny.local_hour(t), 1);
        assert!((1_793_509_200..1_793_512_800).contains(&t.secs()), "{t}");
    }

    /// Jitter never pushes a send out of the allowed window or before the cooldown ends.
    #[test]
    fn jitter_respects_caps() {
        let mut s = CapState::default();
        s.record_send(local(3, 16, 30), MSK);
        // Cooldown ends 20:30; the window closes at 21:00; jitter of 59 min must clamp.
        let t = plan_next_send(&s, &caps(), HourMask::NONE, MSK, local(3, 17, 0), 3_599).unwrap();
        assert_eq!(t, local(3, 20, 59).plus(59));
        assert_eq!(decide(&s, &caps(), MSK, t), Decision::Send);
        assert!(t.secs() - local(3, 16, 30).secs() >= 4 * HOUR);
    }
}
