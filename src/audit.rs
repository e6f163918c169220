//! An independent re-check of every send against the caps in force at that send. It does
//! not use `policy`: it keeps its own per-user history and recomputes each rule from it,
//! so a bug in the rules shows up here as a violation rather than being agreed with.

use crate::domain::{Caps, DAY, Timestamp, UtcOffset};

/// How many violations are described in full.
const EXAMPLES: usize = 10;

/// What the audit remembers of one user (24 bytes: a million users stay cheap).
#[derive(Clone, Copy, Debug)]
struct Seen {
    /// The last send, or `i64::MIN` for none.
    last: i64,
    /// When the user opted out, or `i64::MAX` for never.
    opted_out_at: i64,
    /// Local day of the last send (by the offset at that send), and sends on that day.
    day: i32,
    count: u32,
}

impl Default for Seen {
    fn default() -> Self {
        Seen { last: i64::MIN, opted_out_at: i64::MAX, day: i32::MIN, count: 0 }
    }
}

/// The audit of one run.
#[derive(Debug)]
pub struct CapAudit {
    users: Vec<Seen>,
    violations: u64,
    examples: Vec<String>,
}

impl CapAudit {
    /// An audit for `users` users (by dense index).
    pub fn new(users: usize) -> CapAudit {
        CapAudit { users: vec![Seen::default(); users], violations: 0, examples: Vec::new() }
    }

    /// Makes room for users up to `users` (users who joined during the run).
    pub fn grow(&mut self, users: usize) {
        if users > self.users.len() {
            self.users.resize(users, Seen::default());
        }
    }

    /// Checks a send at `at` to user `index` under `caps`, then records it.
    pub fn check_send(&mut self, index: u32, at: Timestamp, caps: Caps, offset: UtcOffset) {
        let Some(seen) = self.users.get_mut(index as usize) else { return };
        let local = at.secs() + offset.secs();
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
            broken.push(format!(
                "{} s after the previous send, cooldown {}",
                at.secs() - seen.last,
                caps.cooldown_secs
            ));
        }
        if has_sent && day != seen.day && i64::from(day - seen.day) < caps.period_days {
            broken.push(format!("{} days after the last send day, period {}", day - seen.day, caps.period_days));
        }
        if !broken.is_empty() {
            self.violations += 1;
            if self.examples.len() < EXAMPLES {
                self.examples.push(format!("user #{index} at {at}: {}", broken.join("; ")));
            }
        }
        seen.count = sent_today + 1;
        seen.day = day;
        seen.last = at.secs();
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
        let utc = UtcOffset(0);
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
}
