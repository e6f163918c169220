//! [`MetricsListener`]: the actor that turns the engine's batches of outcomes into
//! [`Metrics`] — suppressions by reason, and the replies, conversions and opt-outs the engine
//! recorded. Register it with
//! [`EngineBuilder::outcome_listener`](crate::engine::EngineBuilder::outcome_listener).
//!
//! Batches arrive as the segment and learner actors get them (every 4,096 outcomes, at each
//! learner tick and at the end), so these counters lag the engine by at most one batch.

use std::sync::Arc;

use actix::prelude::*;

use crate::actors::messages::OutcomesRecorded;

use super::Metrics;

/// Counts outcomes into [`Metrics`].
#[derive(Debug)]
pub struct MetricsListener {
    metrics: Arc<Metrics>,
}

impl MetricsListener {
    /// A listener counting into `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> MetricsListener {
        MetricsListener { metrics }
    }
}

impl Actor for MetricsListener {
    type Context = Context<Self>;
}

impl Handler<OutcomesRecorded> for MetricsListener {
    type Result = ();

    fn handle(&mut self, msg: OutcomesRecorded, _ctx: &mut Self::Context) {
        for outcome in msg.outcomes.iter() {
            self.metrics.record_outcome(&outcome.kind);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actors::messages::{Outcome, OutcomeKind};
    use crate::domain::{Segment, Timestamp, UserId};
    use crate::policy::SuppressReason;

    /// A batch sent to the actor shows up in the rendered metrics.
    #[test]
    fn counts_a_batch_of_outcomes() -> Result<(), MailboxError> {
        let metrics = Arc::new(Metrics::new());
        let kinds = [
            OutcomeKind::Suppressed(SuppressReason::QuietHours),
            OutcomeKind::Suppressed(SuppressReason::QuietHours),
            OutcomeKind::Response { send_hour: 10 },
            OutcomeKind::OptOut,
        ];
        let outcomes = kinds
            .into_iter()
            .map(|kind| Outcome { at: Timestamp(0), user: UserId(1), index: 0, segment: Segment::WarmLead, kind })
            .collect();
        let counted = metrics.clone();
        actix_rt::System::new().block_on(async move {
            let listener = MetricsListener::new(counted).start();
            listener.send(OutcomesRecorded { outcomes: Arc::new(outcomes) }).await
        })?;
        let text = metrics.render();
        assert!(text.contains("gavat_suppressions_total{reason=\"quiet_hours\"} 2\n"), "{text}");
        assert!(text.contains("gavat_inbound_events_total{kind=\"response\"} 1\n"), "{text}");
        assert!(text.contains("gavat_inbound_events_total{kind=\"opt_out\"} 1\n"), "{text}");
        Ok(())
    }
}
