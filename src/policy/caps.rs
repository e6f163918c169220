//! Which strategy governs a user who holds several segments, and the strictest caps of
//! all of them.

use crate::config::StrategyBook;
use crate::domain::{Caps, HourMask, Segment, SegmentSet};

/// The segment whose strategy chooses timing and content: the highest strategy priority;
/// ties go to the higher confidence, then to the segment listed first in [`Segment::ALL`].
pub fn governing_segment(segments: &SegmentSet, book: &StrategyBook) -> Option<Segment> {
    segments
        .iter()
        .max_by(|a, b| {
            let pa = book.get(a.segment).priority;
            let pb = book.get(b.segment).priority;
            pa.cmp(&pb).then(a.confidence.total_cmp(&b.confidence)).then(b.segment.index().cmp(&a.segment.index()))
        })
        .map(|a| a.segment)
}

/// The strictest caps over every segment the user holds: the smallest daily limit, the
/// longest cooldown, the rarest frequency, and only the hours every strategy allows.
/// A user with no segment gets caps that allow nothing.
pub fn caps_for(segments: &SegmentSet, book: &StrategyBook) -> Caps {
    if segments.is_empty() {
        return Caps { daily_limit: 0, cooldown_secs: 0, allowed_hours: HourMask::NONE, period_days: 1 };
    }
    let mut caps = Caps { daily_limit: u32::MAX, cooldown_secs: 0, allowed_hours: HourMask::ALL_DAY, period_days: 1 };
    for a in segments.iter() {
        let s = book.get(a.segment);
        caps.daily_limit = caps.daily_limit.min(s.daily_limit);
        caps.cooldown_secs = caps.cooldown_secs.max(s.cooldown_secs);
        caps.allowed_hours = caps.allowed_hours.intersect(s.allowed_hours);
        caps.period_days = caps.period_days.max(s.frequency.period_days());
    }
    caps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(segments: &[Segment]) -> SegmentSet {
        let mut set = SegmentSet::default();
        for &s in segments {
            set.insert(s, 0.8);
        }
        set
    }

    /// HOT_LEAD + NIGHT_OWL: HOT_LEAD governs, but the caps are the strictest of both.
    #[test]
    fn strictest_cap_wins_and_highest_priority_governs() {
        let book = StrategyBook::defaults();
        let segs = held(&[Segment::NightOwl, Segment::HotLead]);
        assert_eq!(governing_segment(&segs, &book), Some(Segment::HotLead));
        let caps = caps_for(&segs, &book);
        assert_eq!(caps.daily_limit, 2); // NIGHT_OWL's 2 beats HOT_LEAD's 3
        assert_eq!(caps.cooldown_secs, 8 * 3600); // NIGHT_OWL's 8 h beats 4 h
        assert_eq!(caps.allowed_hours, HourMask::window(12, 21)); // 9-21 ∩ 12-24
        assert_eq!(caps.period_days, 1);

        let segs = held(&[Segment::HotLead, Segment::ColdLead]);
        let caps = caps_for(&segs, &book);
        assert_eq!((caps.daily_limit, caps.cooldown_secs, caps.period_days), (1, 72 * 3600, 7));
    }

    /// Adding a segment can only make the caps stricter, never looser.
    #[test]
    fn more_segments_never_loosen_caps() {
        let book = StrategyBook::defaults();
        for a in Segment::ALL {
            let one = caps_for(&held(&[a]), &book);
            for b in Segment::ALL {
                let two = caps_for(&held(&[a, b]), &book);
                assert!(two.daily_limit <= one.daily_limit);
                assert!(two.cooldown_secs >= one.cooldown_secs);
                assert!(two.period_days >= one.period_days);
                assert_eq!(two.allowed_hours.intersect(one.allowed_hours), two.allowed_hours);
            }
        }
    }

    /// No segment: nothing may be sent.
    #[test]
    fn no_segment_allows_nothing() {
        let caps = caps_for(&SegmentSet::default(), &StrategyBook::defaults());
        assert_eq!(caps.daily_limit, 0);
        assert!(caps.allowed_hours.is_empty());
        assert_eq!(governing_segment(&SegmentSet::default(), &StrategyBook::defaults()), None);
    }
}
