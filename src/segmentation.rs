//! Rule-based segmentation: from what a profile shows to the segments a user holds, each
//! with a confidence. Pure and cheap, so the user actor re-runs it on every event.
//!
//! The rules and their thresholds (documented in `docs/architecture.md`):
//!
//! | segment | rule | confidence |
//! |---|---|---|
//! | NEW_USER | joined less than 7 days ago | 0.95 falling to 0.6 at 7 days |
//! | HOT_LEAD | answered ≥ 40% of the last (≤ 8, ≥ 3) messages | 0.5 + 0.5 × share |
//! | WARM_LEAD | answered 10–40% of the last (≥ 3) messages, or fewer than 3 messages and active in the last 7 days | 0.6 / 0.45 |
//! | COLD_LEAD | answered < 10% of the last (≥ 5) messages, or inactive for 14 days | 0.6 (0.8 with ≥ 10 messages) / 0.8 |
//! | ENGAGED | ≥ 5 sessions in about the last week | 0.6 + sessions/100, at most 0.95 |
//! | BOT_LOVER | follows ≥ 3 of our bots | 0.7 + 0.05 per extra bot, at most 0.95 |
//! | NIGHT_OWL | ≥ 50% of ≥ 10 sessions between 22:00 and 04:00 local | the share, at most 0.95 |
//! | PREMIUM_POTENTIAL | ≥ 1 purchase and answers ≥ 20% (or no messages yet), or ≥ 3 purchases | 0.6 + 0.1 per purchase, at most 0.9 |
//!
//! A user no rule matches is a COLD_LEAD with confidence 0.3.

use crate::domain::{DAY, Segment, SegmentSet, Timestamp, UserProfile};

/// Days a user counts as new.
pub const NEW_USER_DAYS: i64 = 7;
/// Days without activity after which a user is cold.
pub const INACTIVE_DAYS: i64 = 14;

/// The segments `profile` holds at `now`.
pub fn segment(profile: &UserProfile, now: Timestamp) -> SegmentSet {
    let mut set = SegmentSet::default();

    let age_days = (now.secs() - profile.joined_at.secs()) as f32 / DAY as f32;
    if (0.0..NEW_USER_DAYS as f32).contains(&age_days) {
        set.insert(Segment::NewUser, 0.95 - 0.35 * age_days / NEW_USER_DAYS as f32);
    }

    let (answered, window) = profile.responses.last_n(8);
    let share = if window > 0 { answered as f32 / window as f32 } else { 0.0 };
    let inactive_days = (now.secs() - profile.activity.last_active.secs()) / DAY;
    if window >= 3 && share >= 0.4 {
        set.insert(Segment::HotLead, 0.5 + 0.5 * share);
    } else if window >= 3 && share >= 0.1 {
        set.insert(Segment::WarmLead, 0.6);
    } else if window < 3 && inactive_days < 7 && set.get(Segment::NewUser).is_none() {
        set.insert(Segment::WarmLead, 0.45);
    }
    if window >= 5 && share < 0.1 {
        set.insert(Segment::ColdLead, if window >= 8 { 0.8 } else { 0.6 });
    } else if inactive_days >= INACTIVE_DAYS {
        set.insert(Segment::ColdLead, 0.8);
    }

    let weekly = profile.activity.weekly_sessions_at(now);
    if weekly >= 5.0 {
        set.insert(Segment::Engaged, (0.6 + weekly / 100.0).min(0.95));
    }

    if profile.bots_followed >= 3 {
        set.insert(Segment::BotLover, (0.7 + 0.05 * (profile.bots_followed - 3) as f32).min(0.95));
    }

    let sessions: u32 = profile.activity.by_local_hour.iter().map(|&c| u32::from(c)).sum();
    if sessions >= 10 {
        let night: u32 = [22, 23, 0, 1, 2, 3].iter().map(|&h| u32::from(profile.activity.by_local_hour[h])).sum();
        let night_share = night as f32 / sessions as f32;
        if night_share >= 0.5 {
            set.insert(Segment::NightOwl, night_share.min(0.95));
        }
    }

    let purchases = profile.purchases;
    if (purchases >= 1 && (window == 0 || share >= 0.2)) || purchases >= 3 {
        set.insert(Segment::PremiumPotential, (0.6 + 0.1 * purchases as f32).min(0.9));
    }

    if set.is_empty() {
        set.insert(Segment::ColdLead, 0.3);
    }
    set
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ActivitySummary, ResponseHistory, UserId, UtcOffset};

    const NOW: Timestamp = Timestamp(20_000 * DAY);

    fn profile() -> UserProfile {
        UserProfile {
            id: UserId(1),
            joined_at: Timestamp(NOW.secs() - 100 * DAY),
            utc_offset: UtcOffset(180),
            activity: ActivitySummary { last_active: Timestamp(NOW.secs() - DAY), ..Default::default() },
            bots_followed: 1,
            purchases: 0,
            responses: ResponseHistory::default(),
        }
    }

    fn with_responses(p: &mut UserProfile, answered: &[bool]) {
        for &a in answered {
            p.responses.record_received();
            if a {
                p.responses.record_response();
            }
        }
    }

    /// New users age out at exactly 7 days.
    #[test]
    fn new_user_ages_out_at_seven_days() {
        let mut p = profile();
        p.joined_at = Timestamp(NOW.secs() - 7 * DAY + 1);
        assert!(segment(&p, NOW).get(Segment::NewUser).is_some());
        p.joined_at = Timestamp(NOW.secs() - 7 * DAY);
        assert!(segment(&p, NOW).get(Segment::NewUser).is_none());
    }

    /// 40% answered makes a hot lead; just under is warm; under 10% over 5 is cold.
    #[test]
    fn response_share_thresholds() {
        let mut p = profile();
        with_responses(&mut p, &[true, true, false, false, false]); // 2 of 5 = 40%
        let s = segment(&p, NOW);
        assert!(s.get(Segment::HotLead).is_some() && s.get(Segment::WarmLead).is_none());

        let mut p = profile();
        with_responses(&mut p, &[true, false, false, false, false, false, false, false]); // 12.5%
        let s = segment(&p, NOW);
        assert!(s.get(Segment::WarmLead).is_some() && s.get(Segment::HotLead).is_none());

        let mut p = profile();
        with_responses(&mut p, &[false; 5]);
        assert_eq!(segment(&p, NOW).get(Segment::ColdLead), Some(0.6));
    }

    /// A responsive user becomes a hot lead as answers arrive.
    #[test]
    fn responses_promote_a_user() {
        let mut p = profile();
        with_responses(&mut p, &[false, false, false]);
        assert!(segment(&p, NOW).get(Segment::HotLead).is_none());
        with_responses(&mut p, &[true, true]);
        assert!(segment(&p, NOW).get(Segment::HotLead).is_some());
    }

    /// Night owls, bot lovers, engaged and premium users at their thresholds.
    #[test]
    fn activity_based_segments() {
        let mut p = profile();
        p.activity.by_local_hour[23] = 5;
        p.activity.by_local_hour[14] = 5;
        assert_eq!(segment(&p, NOW).get(Segment::NightOwl), Some(0.5));
        p.activity.by_local_hour[14] = 6;
        assert!(segment(&p, NOW).get(Segment::NightOwl).is_none());

        p.bots_followed = 3;
        assert_eq!(segment(&p, NOW).get(Segment::BotLover), Some(0.7));

        p.activity.weekly_sessions = 5.0;
        p.activity.last_active = NOW;
        assert!(segment(&p, NOW).get(Segment::Engaged).is_some());
        assert!(segment(&p, Timestamp(NOW.secs() + DAY)).get(Segment::Engaged).is_none(), "decays");

        p.purchases = 1;
        assert!(segment(&p, NOW).get(Segment::PremiumPotential).is_some());
        with_responses(&mut p, &[false; 5]);
        assert!(segment(&p, NOW).get(Segment::PremiumPotential).is_none());
    }

    /// Everyone holds at least one segment; long silence makes a cold lead.
    #[test]
    fn fallback_and_inactivity() {
        let mut p = profile();
        p.activity.last_active = Timestamp(NOW.secs() - 20 * DAY);
        let s = segment(&p, NOW);
        assert_eq!(s.get(Segment::ColdLead), Some(0.8));
        assert!(!s.is_empty());
    }
}
