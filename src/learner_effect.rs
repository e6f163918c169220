//! The learner's effect as `gavat simulate --learn` reports it: the learning run against
//! the same run (same seed, same population, same behaviour draws) on the static
//! strategies, for the response rate per send, the conversion rate per send and the share
//! of users who opted out, each with an unpooled 95% interval for the difference.

use std::fmt::Write as _;

use gavat_experiments::stats::{Interval, proportion_difference};
use serde::Serialize;

/// What the comparison reads of one run. The simulation report converts into it, so this
/// module does not depend on the simulation that embeds its result.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunTotals {
    /// Messages sent.
    pub sent: u64,
    /// Responses to them.
    pub responses: u64,
    /// Conversions.
    pub conversions: u64,
    /// Users in the run.
    pub users: u64,
    /// Users who opted out.
    pub opted_out_users: u64,
}

/// One metric, static against learned.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MetricEffect {
    /// What is measured.
    pub metric: &'static str,
    /// On the static strategies.
    pub static_rate: f64,
    /// With the learner.
    pub learned_rate: f64,
    /// learned − static, with its 95% interval (`None` if a denominator is 0).
    pub difference: Option<Interval>,
}

/// The whole comparison.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LearnerEffect {
    /// Responses per send, conversions per send, users opted out per user.
    pub metrics: Vec<MetricEffect>,
}

impl LearnerEffect {
    /// Compares `learned` with `baseline`, the same plan without the learner.
    pub fn between(baseline: impl Into<RunTotals>, learned: impl Into<RunTotals>) -> LearnerEffect {
        let (b, l): (RunTotals, RunTotals) = (baseline.into(), learned.into());
        let metric = |metric, (kb, nb): (u64, u64), (kl, nl): (u64, u64)| {
            let rate = |k: u64, n: u64| if n == 0 { 0.0 } else { k as f64 / n as f64 };
            MetricEffect {
                metric,
                static_rate: rate(kb, nb),
                learned_rate: rate(kl, nl),
                difference: proportion_difference(kl.min(nl), nl, kb.min(nb), nb, 0.05).ok(),
            }
        };
        LearnerEffect {
            metrics: vec![
                metric("responses per send", (b.responses, b.sent), (l.responses, l.sent)),
                metric("conversions per send", (b.conversions, b.sent), (l.conversions, l.sent)),
                metric("users opted out", (b.opted_out_users, b.users), (l.opted_out_users, l.users)),
            ],
        }
    }

    /// The lines of the text report.
    pub fn to_text(&self) -> String {
        let mut out = String::from("learner effect vs the static strategies (same seed, same population):\n");
        for m in &self.metrics {
            let diff = m.difference.map_or_else(
                || "n/a".to_string(),
                |d| format!("{:+.2} points [{:+.2}, {:+.2}]", 100.0 * d.estimate, 100.0 * d.low, 100.0 * d.high),
            );
            let _ = writeln!(
                out,
                "  {:<22} {:>6.2}% → {:>6.2}%   {diff}",
                m.metric,
                100.0 * m.static_rate,
                100.0 * m.learned_rate
            );
        }
        out.push_str(
            "  (95% intervals treat the two runs as independent samples; for a comparison within one\n   \
             population run `gavat experiment run experiments/learner_vs_static.toml`)\n",
        );
        out
    }
}
