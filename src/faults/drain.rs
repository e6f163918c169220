//! [`DrainWatch`]: follows every planned direct message to a final state, as an outcome
//! listener of the engine (the same batches the segment and learner actors get). A message
//! answered with a retryable failure (a 429, a 500) is *open* until the user's next outcome
//! — sent (delivered or unknown), suppressed by a rule, failed for good, opted out. A
//! liveness run (faults stop, then a quiet period) must end with none open (RELIABILITY.md
//! row 45: "planned without final state 0 / P").

use std::collections::BTreeSet;

use actix::prelude::*;

use crate::actors::messages::{OutcomeKind, OutcomesRecorded, UserIndex};
use crate::policy::SuppressReason;
use crate::transport::FailureKind;

/// Users whose last direct message is open (see the module documentation).
#[derive(Debug, Default)]
pub struct DrainWatch {
    open: BTreeSet<UserIndex>,
    /// Retryable failures seen: each opened a message that had to reach a final state.
    opened: u64,
}

impl Actor for DrainWatch {
    type Context = Context<Self>;
}

impl Handler<OutcomesRecorded> for DrainWatch {
    type Result = ();

    fn handle(&mut self, msg: OutcomesRecorded, _ctx: &mut Context<Self>) {
        for outcome in msg.outcomes.iter() {
            match outcome.kind {
                // A send held by an unavailable gate or an operator's pause is planned
                // again, like a retry: it is not final until its next outcome.
                OutcomeKind::Failed(FailureKind::RateLimited | FailureKind::Transient)
                | OutcomeKind::Suppressed(SuppressReason::GateUnavailable | SuppressReason::Paused) => {
                    self.opened += 1;
                    self.open.insert(outcome.index);
                }
                // A group post's share is not the user's own message.
                OutcomeKind::Sent { via_group: true, .. } | OutcomeKind::Response { .. } | OutcomeKind::Conversion => {}
                OutcomeKind::Sent { .. }
                | OutcomeKind::Suppressed(_)
                | OutcomeKind::Failed(_)
                | OutcomeKind::OptOut => {
                    self.open.remove(&outcome.index);
                }
            }
        }
    }
}

/// Asks a [`DrainWatch`] for `(open at the end, opened in all)`.
#[derive(Message, Debug)]
#[rtype(result = "(u64, u64)")]
pub struct TakeOpenRetries;

impl Handler<TakeOpenRetries> for DrainWatch {
    type Result = MessageResult<TakeOpenRetries>;

    fn handle(&mut self, _msg: TakeOpenRetries, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult((self.open.len() as u64, self.opened))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::actors::messages::Outcome;
    use crate::domain::{Segment, Timestamp, UserId};

    fn outcome(index: UserIndex, kind: OutcomeKind) -> Outcome {
        Outcome { at: Timestamp(0), user: UserId(u64::from(index)), index, segment: Segment::WarmLead, kind }
    }

    /// A retried message — and one held by an unavailable gate — stays open until the
    /// user's next outcome; a group post's share or a reply does not close it. A planted
    /// message left open is caught.
    #[test]
    fn a_retry_left_open_is_caught() {
        let open = actix_rt::System::new().block_on(async {
            let watch = DrainWatch::default().start();
            let batch = vec![
                outcome(1, OutcomeKind::Failed(FailureKind::RateLimited)),
                outcome(2, OutcomeKind::Failed(FailureKind::Transient)),
                outcome(3, OutcomeKind::Failed(FailureKind::RateLimited)),
                outcome(2, OutcomeKind::Suppressed(SuppressReason::GateUnavailable)),
                outcome(3, OutcomeKind::Conversion),
                outcome(4, OutcomeKind::Suppressed(SuppressReason::GateUnavailable)),
                outcome(5, OutcomeKind::Suppressed(SuppressReason::GateUnavailable)),
                outcome(5, OutcomeKind::Suppressed(SuppressReason::DailyLimit)),
            ];
            watch.do_send(OutcomesRecorded { outcomes: Arc::new(batch) });
            watch.send(TakeOpenRetries).await.expect("an answer")
        });
        assert_eq!(open, (4, 6), "users 1, 2, 3 and 4 still wait for a final state; 5's gate refusal was settled");
    }
}
