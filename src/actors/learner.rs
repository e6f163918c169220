//! `LearnerActor`: receives every outcome and aggregates sends and responses per segment
//! and per local hour of the send — the table a later optimiser (Thompson sampling over
//! send hours) works from. It changes nothing yet.

use actix::prelude::*;

use crate::domain::Segment;

use super::messages::{OutcomeKind, OutcomesRecorded};

/// Sends and responses per segment and local send hour.
#[derive(Clone, Debug, Default, PartialEq, Eq, MessageResponse)]
pub struct HourTable {
    /// `sent[segment][hour]`.
    pub sent: [[u64; 24]; 8],
    /// `responses[segment][hour of the send answered]`.
    pub responses: [[u64; 24]; 8],
    /// Outcome batches received.
    pub batches: u64,
}

impl HourTable {
    /// The local hour with the highest observed response rate for `segment` (at least
    /// `min_sent` sends), if any.
    pub fn best_hour(&self, segment: Segment, min_sent: u64) -> Option<(u8, f64)> {
        let i = segment.index();
        (0..24u8)
            .filter(|&h| self.sent[i][usize::from(h)] >= min_sent)
            .map(|h| (h, self.responses[i][usize::from(h)] as f64 / self.sent[i][usize::from(h)] as f64))
            .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)))
    }
}

/// The learner.
#[derive(Debug, Default)]
pub struct LearnerActor {
    table: HourTable,
}

impl Actor for LearnerActor {
    type Context = Context<Self>;
}

impl Handler<OutcomesRecorded> for LearnerActor {
    type Result = ();

    fn handle(&mut self, msg: OutcomesRecorded, _ctx: &mut Self::Context) {
        self.table.batches += 1;
        for o in msg.outcomes.iter() {
            let s = o.segment.index();
            match o.kind {
                OutcomeKind::Sent { local_hour, .. } => self.table.sent[s][usize::from(local_hour)] += 1,
                OutcomeKind::Response { send_hour } => self.table.responses[s][usize::from(send_hour % 24)] += 1,
                _ => {}
            }
        }
    }
}

/// Asks the learner for its table.
#[derive(Message, Debug)]
#[rtype(result = "HourTable")]
pub struct GetHourTable;

impl Handler<GetHourTable> for LearnerActor {
    type Result = HourTable;

    fn handle(&mut self, _msg: GetHourTable, _ctx: &mut Self::Context) -> HourTable {
        self.table.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The best hour is the highest observed rate among hours with enough sends.
    #[test]
    fn best_hour_needs_evidence() {
        let mut t = HourTable::default();
        let hot = Segment::HotLead.index();
        t.sent[hot][10] = 100;
        t.responses[hot][10] = 10;
        t.sent[hot][19] = 100;
        t.responses[hot][19] = 25;
        t.sent[hot][3] = 2;
        t.responses[hot][3] = 2; // 100%, but only two sends
        assert_eq!(t.best_hour(Segment::HotLead, 20), Some((19, 0.25)));
        assert_eq!(t.best_hour(Segment::ColdLead, 20), None);
    }
}
