//! What the learner reads: [`Counts`] of one segment in a window, and the [`HourTable`] of
//! sends and responses per segment and local send hour that the `LearnerActor` fills from
//! the outcomes it receives.

/// Sends and responses per segment and local send hour.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HourTable {
    /// `sent[segment][hour]`.
    pub sent: [[u64; 24]; 8],
    /// `responses[segment][hour of the send answered]`.
    pub responses: [[u64; 24]; 8],
    /// Outcome batches received.
    pub batches: u64,
}

/// Sends, responses and opt-outs of one segment in a window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Messages sent.
    pub sent: u64,
    /// Replies.
    pub responses: u64,
    /// Opt-outs.
    pub opt_outs: u64,
    /// Purchases.
    pub conversions: u64,
}

impl Counts {
    /// One line for the audit trail's evidence.
    pub(crate) fn describe(&self) -> String {
        let pct = |k: u64| if self.sent == 0 { 0.0 } else { 100.0 * k as f64 / self.sent as f64 };
        format!(
            "{} sends, response {:.1}%, conversion {:.2}%, opt-out {:.2}%",
            self.sent,
            pct(self.responses),
            pct(self.conversions),
            pct(self.opt_outs)
        )
    }
}
