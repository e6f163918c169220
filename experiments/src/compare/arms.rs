//! Running sums per arm, streamed from per-user rows: O(1) memory whatever the number of
//! users, and each arm's estimate of a metric with the variance of that estimate.

use serde::Serialize;

use crate::design::Metric;
use crate::results::UserRow;
use crate::stats::{self, CovariateSummary, Interval, MeanSummary, StatsError, wilson};

/// Running sums for one arm.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ArmStats {
    /// The arm.
    pub name: String,
    /// Users.
    pub users: u64,
    /// Users with at least one reply.
    pub responders: u64,
    /// Users with at least one purchase.
    pub converters: u64,
    /// Users who opted out.
    pub opted_out: u64,
    /// Σ messages, Σ responses and their squares and cross product (ratio metric).
    sum_messages: f64,
    sum_responses: f64,
    sum_messages2: f64,
    sum_responses2: f64,
    sum_cross: f64,
    /// Welford accumulators of engagement.
    engagement_mean: f64,
    engagement_m2: f64,
    /// CUPED sums of each per-user metric (response, conversion, opt-out, engagement)
    /// against the pre-period value, over the users that have one.
    covariates: [CovariateSummary; 4],
}

impl ArmStats {
    fn new(name: &str) -> ArmStats {
        ArmStats { name: name.to_string(), ..ArmStats::default() }
    }

    /// Adds one user.
    pub fn add(&mut self, row: &UserRow) {
        self.users += 1;
        self.responders += u64::from(row.responses > 0);
        self.converters += u64::from(row.conversions > 0);
        self.opted_out += u64::from(row.opted_out);
        let (x, y) = (row.responses as f64, row.messages as f64);
        self.sum_responses += x;
        self.sum_messages += y;
        self.sum_responses2 += x * x;
        self.sum_messages2 += y * y;
        self.sum_cross += x * y;
        let delta = row.engagement - self.engagement_mean;
        self.engagement_mean += delta / self.users as f64;
        self.engagement_m2 += delta * (row.engagement - self.engagement_mean);
        if let Some(x) = row.pre_period {
            let ys = [row.responses > 0, row.conversions > 0, row.opted_out].map(|b| f64::from(u8::from(b)));
            for (summary, y) in self.covariates.iter_mut().zip(ys.into_iter().chain([row.engagement])) {
                summary.add(y, x);
            }
        }
    }

    /// The CUPED sums of `metric` (`None` for the ratio metric, which is not a per-user mean).
    pub(super) fn covariate(&self, metric: Metric) -> Option<&CovariateSummary> {
        let i = match metric {
            Metric::ResponseRate => 0,
            Metric::ConversionRate => 1,
            Metric::OptOutRate => 2,
            Metric::Engagement => 3,
            Metric::ResponsesPerMessage => return None,
        };
        Some(&self.covariates[i])
    }

    /// Users with a pre-period value.
    pub(super) fn with_pre_period(&self) -> u64 {
        self.covariates[0].n
    }

    /// Users counted as successes for a share metric (`None` for the others).
    pub(super) fn successes(&self, metric: Metric) -> Option<u64> {
        match metric {
            Metric::ResponseRate => Some(self.responders),
            Metric::ConversionRate => Some(self.converters),
            Metric::OptOutRate => Some(self.opted_out),
            Metric::ResponsesPerMessage | Metric::Engagement => None,
        }
    }

    pub(super) fn engagement(&self) -> MeanSummary {
        let variance = if self.users > 1 { self.engagement_m2 / (self.users - 1) as f64 } else { 0.0 };
        MeanSummary { n: self.users, mean: self.engagement_mean, variance }
    }

    /// Responses per message and the delta-method variance of that ratio of means:
    /// Var(X̄/Ȳ) ≈ (Var X − 2R·Cov(X,Y) + R²·Var Y) / (n·Ȳ²).
    fn ratio(&self) -> (f64, f64) {
        let n = self.users as f64;
        if n < 2.0 || self.sum_messages == 0.0 {
            return (0.0, 0.0);
        }
        let (mx, my) = (self.sum_responses / n, self.sum_messages / n);
        let r = mx / my;
        let var_x = (self.sum_responses2 - n * mx * mx) / (n - 1.0);
        let var_y = (self.sum_messages2 - n * my * my) / (n - 1.0);
        let cov = (self.sum_cross - n * mx * my) / (n - 1.0);
        (r, ((var_x - 2.0 * r * cov + r * r * var_y) / (n * my * my)).max(0.0))
    }

    /// The metric's estimate and the variance of that estimate. For a share s/n the
    /// variance is p̃(1 − p̃)/n with p̃ = (s + 1)/(n + 2), the posterior mean under the uniform
    /// prior: the Wald variance p(1 − p)/n is 0 at s = 0 or s = n, and would present an arm
    /// without a single success as known exactly (a lift of −100% [−100%, −100%]).
    pub(super) fn estimate(&self, metric: Metric) -> (f64, f64) {
        match self.successes(metric) {
            Some(s) => {
                let n = self.users.max(1) as f64;
                let smoothed = (s as f64 + 1.0) / (n + 2.0);
                (s as f64 / n, smoothed * (1.0 - smoothed) / n)
            }
            None if metric == Metric::Engagement => {
                let e = self.engagement();
                (e.mean, e.variance / e.n.max(1) as f64)
            }
            None => self.ratio(),
        }
    }

    /// The arm's estimate with its interval: Wilson for shares, t for engagement, the delta
    /// method for the ratio metric.
    pub(super) fn interval(&self, metric: Metric, alpha: f64) -> Result<Interval, StatsError> {
        match self.successes(metric) {
            Some(s) => wilson(s, self.users, alpha),
            None if metric == Metric::Engagement => stats::mean_interval(&self.engagement(), alpha),
            None => {
                let (r, var) = self.ratio();
                let half = super::z(1.0 - alpha / 2.0) * var.sqrt();
                Ok(Interval { estimate: r, low: r - half, high: r + half })
            }
        }
    }
}

/// Streams rows into per-arm sums.
#[derive(Debug, Clone, Default)]
pub struct Accumulator {
    pub(super) arms: Vec<ArmStats>,
}

impl Accumulator {
    /// An accumulator that lists `arms` first, in this order (the first is control).
    pub fn with_arms<'a>(arms: impl IntoIterator<Item = &'a str>) -> Accumulator {
        Accumulator { arms: arms.into_iter().map(ArmStats::new).collect() }
    }

    /// Adds one user to their arm (a new arm is appended).
    pub fn add(&mut self, row: &UserRow) {
        match self.arms.iter_mut().find(|a| a.name == row.arm) {
            Some(arm) => arm.add(row),
            None => {
                let mut arm = ArmStats::new(&row.arm);
                arm.add(row);
                self.arms.push(arm);
            }
        }
    }

    /// The arms so far.
    pub fn arms(&self) -> &[ArmStats] {
        &self.arms
    }

    /// Makes the arm called `name` the control (first); `false` if there is no such arm.
    pub fn set_control(&mut self, name: &str) -> bool {
        match self.arms.iter().position(|a| a.name == name) {
            Some(i) => {
                let arm = self.arms.remove(i);
                self.arms.insert(0, arm);
                true
            }
            None => false,
        }
    }
}
