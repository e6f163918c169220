//! `SegmentActor`: one per segment. Owns that segment's strategy and its running
//! statistics, counted from the outcomes attributed to it (the segment that governed the
//! send), in all and per UTC day.

use std::collections::BTreeMap;

use actix::prelude::*;

use crate::domain::{DeliveryStrategy, Segment};
use crate::policy::SuppressReason;
use crate::transport::FailureKind;

use super::daily::Daily;
use super::messages::{OutcomeKind, OutcomesRecorded};

/// Running counts for one segment.
#[derive(Clone, Debug, Default, PartialEq, Eq, MessageResponse)]
pub struct SegmentStats {
    /// Messages sent (direct and group), including those with an unknown outcome.
    pub sent: u64,
    /// Of which through group posts.
    pub sent_via_group: u64,
    /// Replies.
    pub responses: u64,
    /// Purchases.
    pub conversions: u64,
    /// Opt-outs and blocks.
    pub opt_outs: u64,
    /// Sends a rule held back, by reason.
    pub suppressed: BTreeMap<SuppressReason, u64>,
    /// Transport failures, by kind.
    pub failed: BTreeMap<FailureKind, u64>,
    /// The same counts per UTC day (suppressions and failures as totals).
    pub daily: Daily,
}

impl SegmentStats {
    /// Adds another segment's counts.
    pub fn absorb(&mut self, other: &SegmentStats) {
        self.sent += other.sent;
        self.sent_via_group += other.sent_via_group;
        self.responses += other.responses;
        self.conversions += other.conversions;
        self.opt_outs += other.opt_outs;
        for (k, v) in &other.suppressed {
            *self.suppressed.entry(*k).or_default() += v;
        }
        for (k, v) in &other.failed {
            *self.failed.entry(*k).or_default() += v;
        }
        self.daily.absorb(&other.daily);
    }
}

/// One segment.
#[derive(Debug)]
pub struct SegmentActor {
    strategy: DeliveryStrategy,
    stats: SegmentStats,
}

impl SegmentActor {
    /// The actor for `strategy.segment`.
    pub fn new(strategy: DeliveryStrategy) -> SegmentActor {
        SegmentActor { strategy, stats: SegmentStats::default() }
    }

    /// The segment.
    pub fn segment(&self) -> Segment {
        self.strategy.segment
    }
}

impl Actor for SegmentActor {
    type Context = Context<Self>;
}

impl Handler<OutcomesRecorded> for SegmentActor {
    type Result = ();

    fn handle(&mut self, msg: OutcomesRecorded, _ctx: &mut Self::Context) {
        let me = self.segment();
        for o in msg.outcomes.iter().filter(|o| o.segment == me) {
            let s = &mut self.stats;
            let day = s.daily.at(o.at);
            match o.kind {
                OutcomeKind::Sent { via_group, .. } => {
                    s.sent += 1;
                    s.sent_via_group += u64::from(via_group);
                    day.sent += 1;
                }
                OutcomeKind::Suppressed(reason) => {
                    *s.suppressed.entry(reason).or_default() += 1;
                    day.suppressed += 1;
                }
                OutcomeKind::Failed(kind) => {
                    *s.failed.entry(kind).or_default() += 1;
                    day.failed += 1;
                }
                OutcomeKind::Response { .. } => {
                    s.responses += 1;
                    day.responses += 1;
                }
                OutcomeKind::Conversion => {
                    s.conversions += 1;
                    day.conversions += 1;
                }
                OutcomeKind::OptOut => {
                    s.opt_outs += 1;
                    day.opt_outs += 1;
                }
            }
        }
    }
}

/// Asks a segment actor for its statistics.
#[derive(Message, Debug)]
#[rtype(result = "SegmentStats")]
pub struct GetSegmentStats;

impl Handler<GetSegmentStats> for SegmentActor {
    type Result = SegmentStats;

    fn handle(&mut self, _msg: GetSegmentStats, _ctx: &mut Self::Context) -> SegmentStats {
        self.stats.clone()
    }
}
