//! The statistics gavat signs its comparisons with. Every formula, with its reference, is in
//! `docs/statistics.md`; every function is checked against values computed with
//! scipy/statsmodels (kept, with the call that produced them, in the tests).
//!
//! All of it works on per-user aggregates — the randomisation unit — never on messages as if
//! they were independent.

mod bayes;
mod chisq;
mod distributions;
mod lift;
mod means;
mod multiple;
mod power;
mod proportions;
#[cfg(test)]
mod refs;
mod sequential;

pub use bayes::{BetaComparison, beta_binomial};
pub use chisq::{ChiSquare, chi_square_independence, sample_ratio_mismatch};
pub use lift::{Lift, relative_lift};
pub use means::{MeanSummary, WelchTest, mean_interval, welch_t_test};
pub use multiple::holm;
pub use power::{Effect, sample_size_per_arm};
pub use proportions::{Interval, ZTest, proportion_difference, two_proportion_z_test, wilson};
pub use sequential::{MsprtResult, msprt_mean_difference};

/// Why a statistic could not be computed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StatsError {
    /// An input is out of its domain (a probability of 1.5, a negative count, n = 0…).
    #[error("{name} = {value}: {why}")]
    Domain {
        /// Which input.
        name: &'static str,
        /// Its value.
        value: f64,
        /// What it should be.
        why: &'static str,
    },
}

pub(crate) fn domain(name: &'static str, value: f64, why: &'static str) -> StatsError {
    StatsError::Domain { name, value, why }
}
