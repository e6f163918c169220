//! An independent re-check of every send against the caps in force at that send. It does
//! not use `policy`: it keeps its own per-user history and recomputes each rule from it,
//! so a bug in the rules shows up here as a violation rather than being agreed with.
//!
//! Direct messages are checked against the caps in force (opt-out, allowed hours, daily
//! limit, cooldown, frequency). A member's share of a group post is not a direct message:
//! it is checked against the member-exposure limit only — group posts seen in the member's
//! local day, over all groups — and never enters the direct history. Each group post is
//! checked against the group's own caps in the group's time zone.

use crate::domain::{Caps, DAY, Timestamp, Zone};

/// How many violations are described in full.
const EXAMPLES: usize = 10;

/// What the audit remembers of one user (24 bytes: a million users stay cheap).
#[derive(Clone, Copy, Debug)]
struct Seen {
    /// The last send, or `i64::MIN` for none.
    last: i64,
    /// When the user opted out, or `i64::MAX` for never.
    opted_out_at: i64,
    /// Local day of the last send (by the offset in force at that send), and sends on that day.
    day: i32,
    count: u32,
}

impl Default for Seen {
    fn default() -> Self {
        Seen { last: i64::MIN, opted_out_at: i64::MAX, day: i32::MIN, count: 0 }
    }
}

/// Group posts one member saw on one local day (8 bytes a user).
#[derive(Clone, Copy, Debug, Default)]
struct Exposed {
    day: i32,
    seen: u32,
}

/// The audit of one run.
#[derive(Debug)]
pub struct CapAudit {
    users: Vec<Seen>,
    /// Each user's group posts seen, on the latest local day they saw one.
    exposed: Vec<Exposed>,
    /// Each group's posts, against the group's own caps (grown as groups post).
    groups: Vec<Seen>,
    /// The most group posts one member saw on one local day.
    max_exposure: u32,
    violations: u64,
    examples: Vec<String>,
}

impl CapAudit {
    /// An audit for `users` users (by dense index).
    pub fn new(users: usize) -> CapAudit {
        CapAudit {
            users: vec![Seen::default(); users],
            exposed: vec![Exposed::default(); users],
            groups: Vec::new(),
            max_exposure: 0,
            violations: 0,
            examples: Vec::new(),
        }
    }

    /// Makes room for users up to `users` (users who joined during the run).
    pub fn grow(&mut self, users: usize) {
        if users > self.users.len() {
            self.users.resize(users, Seen::default());
            self.exposed.resize(users, Exposed::default());
        }
    }

    /// Checks a direct send at `at` to user `index` under `caps`, then records it.
    pub fn check_send(&mut self, index: u32, at: Timestamp, caps: Caps, zone: Zone) {
        let Some(seen) = self.users.get_mut(index as usize) else { return };
        let broken = check_against(seen, at, caps, zone);
        self.note(broken, || format!("user #{index}"), at);
    }

    /// Checks a group post to the group at `group` (a dense index) under the group's caps in
    /// its time zone, then records it.
    pub fn check_group_post(&mut self, group: usize, at: Timestamp, caps: Caps, zone: Zone) {
        if self.groups.len() <= group {
            self.groups.resize(group + 1, Seen::default());
        }
        let broken = check_against(&mut self.groups[group], at, caps, zone);
        self.note(broken, || format!("group #{group}"), at);
    }

    /// Checks that user `index`, seeing a group post at `at`, stays within `limit` group
    /// posts in their local day, then records it.
    pub fn check_share(&mut self, index: u32, at: Timestamp, zone: Zone, limit: u32) {
        let Some(exposed) = self.exposed.get_mut(index as usize) else { return };
        let day = (at.secs() + zone.offset_at(at).secs()).div_euclid(DAY) as i32;
        let seen = if exposed.day == day { exposed.seen + 1 } else { 1 };
        *exposed = Exposed { day, seen };
        self.max_exposure = self.max_exposure.max(seen);
        let broken = if seen > limit {
            vec![format!("{seen} group posts seen in local day, exposure limit {limit}")]
        } else {
            Vec::new()
        };
        self.note(broken, || format!("user #{index}"), at);
    }

    fn note(&mut self, broken: Vec<String>, who: impl FnOnce() -> String, at: Timestamp) {
        if !broken.is_empty() {
            self.violations += 1;
            if self.examples.len() < EXAMPLES {
                self.examples.push(format!("{} at {at}: {}", who(), broken.join("; ")));
            }
        }
    }

    /// The most group posts one member saw on one local day.
    pub fn max_exposure(&self) -> u32 {
        self.max_exposure
    }

    /// Records that user `index` opted out at `at`.
    pub fn record_opt_out(&mut self, index: u32, at: Timestamp) {
        if let Some(seen) = self.users.get_mut(index as usize) {
            seen.opted_out_at = seen.opted_out_at.min(at.secs());
        }
    }

    /// Sends that broke a cap.
    pub fn violations(&self) -> u64 {
        self.violations
    }

    /// The first violations, described.
    pub fn examples(&self) -> &[String] {
        &self.examples
    }
}

/// Checks one send against `caps` and the history in `seen`, records it, and returns the
/// rules it broke.
fn check_against(seen: &mut Seen, at: Timestamp, caps: Caps, zone: Zone) -> Vec<String> {
    // The offset in force at this send; the local date and hour are computed here, not by
    // the policy's helpers.
    let local = at.secs() + zone.offset_at(at).secs();
    let day = local.div_euclid(DAY);
    let hour = (local.rem_euclid(DAY) / 3_600) as u8;
    let day = day as i32;
    let sent_today = if seen.day == day { seen.count } else { 0 };
    let mut broken = Vec::new();
    if seen.opted_out_at <= at.secs() {
        broken.push("sent after opt-out".to_string());
    }
    if !caps.allowed_hours.contains(hour) {
        broken.push(format!("local hour {hour} outside {}", caps.allowed_hours));
    }
    if sent_today + 1 > caps.daily_limit {
        broken.push(format!("{} sends in local day, limit {}", sent_today + 1, caps.daily_limit));
    }
    let has_sent = seen.last != i64::MIN;
    if has_sent && at.secs() - seen.last < caps.cooldown_secs {
        broken.push(format!("{} s after the previous send, cooldown {}", at.secs() - seen.last, caps.cooldown_secs));
    }
    if has_sent && day != seen.day && i64::from(day - seen.day) < caps.period_days {
        broken.push(format!("{} days after the last send day, period {}", day - seen.day, caps.period_days));
    }
    seen.count = sent_today + 1;
    seen.day = day;
    seen.last = at.secs();
    broken
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::HourMask;

    fn caps() -> Caps {
        Caps { daily_limit: 2, cooldown_secs: 3_600, allowed_hours: HourMask::window(9, 21), period_days: 1 }
    }

    /// Each kind of breach is caught; clean sends are not flagged.
    #[test]
    fn catches_each_breach() {
        let utc = Zone::UTC;
        let day = 20_000 * DAY;
        let mut a = CapAudit::new(1);
        a.check_send(0, Timestamp(day + 10 * 3_600), caps(), utc);
        a.check_send(0, Timestamp(day + 12 * 3_600), caps(), utc);
        assert_eq!(a.violations(), 0);
        a.check_send(0, Timestamp(day + 14 * 3_600), caps(), utc); // third in the day
        assert_eq!(a.violations(), 1);
        a.check_send(0, Timestamp(day + DAY + 14 * 3_600 + 60), caps(), utc);
        a.check_send(0, Timestamp(day + DAY + 14 * 3_600 + 120), caps(), utc); // cooldown
        assert_eq!(a.violations(), 2);
        a.check_send(0, Timestamp(day + 2 * DAY + 22 * 3_600), caps(), utc); // quiet hours
        assert_eq!(a.violations(), 3);
        a.record_opt_out(0, Timestamp(day + 3 * DAY));
        a.check_send(0, Timestamp(day + 3 * DAY + 10 * 3_600), caps(), utc);
        assert_eq!(a.violations(), 4);
        assert!(a.examples()[3].contains("opt-out"));
    }

    /// A member may see `limit` group posts in a local day, over all groups, whatever their
    /// direct caps; one more is a violation; the next local day starts afresh. Group posts
    /// never enter the direct history.
    #[test]
    fn group_shares_are_held_to_the_exposure_limit_only() {
        let offset = Zone::fixed(180);
        let day = 20_000 * DAY;
        let mut a = CapAudit::new(1);
        a.check_send(0, Timestamp(day + 9 * 3_600), caps(), offset);
        // Three group posts within the hour after a direct send, one at 23:00 local: fine.
        for minutes in [1, 2, 3] {
            a.check_share(0, Timestamp(day + 9 * 3_600 + minutes * 60), offset, 3);
        }
        assert_eq!((a.violations(), a.max_exposure()), (0, 3));
        a.check_share(0, Timestamp(day + 10 * 3_600), offset, 3);
        assert_eq!(a.violations(), 1, "a fourth in the local day");
        assert!(a.examples()[0].contains("exposure limit 3"), "{:?}", a.examples());
        // The local day turns at 21:00 UTC (+03:00): a new day.
        a.check_share(0, Timestamp(day + 21 * 3_600), offset, 3);
        assert_eq!(a.violations(), 1);
        // The direct history saw only the first send: the second is 2 h later, within caps.
        a.check_send(0, Timestamp(day + 11 * 3_600), caps(), offset);
        assert_eq!(a.violations(), 1);
    }

    /// Group posts are held to the group's own caps in the group's time zone.
    #[test]
    fn group_posts_are_held_to_the_groups_caps() {
        let mut a = CapAudit::new(0);
        let day = 20_000 * DAY;
        a.check_group_post(4, Timestamp(day + 10 * 3_600), caps(), Zone::UTC);
        a.check_group_post(4, Timestamp(day + 10 * 3_600 + 60), caps(), Zone::UTC);
        assert_eq!(a.violations(), 1, "within the group's cooldown");
        assert!(a.examples()[0].starts_with("group #4"), "{:?}", a.examples());
    }
}
