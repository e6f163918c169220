//! The statistics gavat signs its comparisons with. Every formula, with its reference, is in
//! `docs/statistics.md`; every function is checked against values computed with
//! scipy/statsmodels (kept, with the call that produced them, in the tests).
//!
//! All of it works on per-user aggregates — the randomisation unit — never on messages as if
//! they were independent.

mod bayes;
mod chisq;
mod cuped;
mod distributions;
mod lift;
mod means;
mod multiple;
pub mod power;
mod proportions;
#[cfg(test)]
mod refs;
mod sequential;

pub use bayes::{BetaComparison, LiftPosterior, LiftPrior, beta_binomial, gaussian_lift};
pub use chisq::{ChiSquare, chi_square_independence, sample_ratio_mismatch};
pub use cuped::{CovariateSummary, Cuped, cuped};
pub use lift::{Lift, fieller_lift, relative_lift};
pub use means::{MeanSummary, WelchTest, mean_interval, welch_t_test};
pub use multiple::{Adjustment, benjamini_hochberg, holm};
pub use power::{Effect, MAX_USERS_PER_ARM, sample_size_for_mean, sample_size_per_arm, sample_size_per_arm_cuped};
pub use proportions::{Interval, ZTest, proportion_difference, two_proportion_z_test, wilson};
pub use sequential::{MsprtResult, confidence_sequence, mixture_boundary, msprt_mean_difference};

pub(crate) use distributions::{t_two_sided_p, z_two_sided_p};
pub(crate) use proportions::check_alpha;

/// Why a statistic could not be computed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StatsError {
    /// An input is out of its domain (a probability of 1.5, a negative count, n = 0…).
    #[error("{name} = {}: {why}", compact(*.value))]
    Domain {
        /// Which input.
        name: &'static str,
        /// Its value.
        value: f64,
        /// What it should be.
        why: &'static str,
    },
    /// A power analysis whose answer is beyond any population (see
    /// [`power::MAX_USERS_PER_ARM`]), or beyond what a number can hold.
    #[error(
        "the effect is too small to plan for: detecting it would take {} users per arm (the limit is 1e12)",
        if users.is_finite() { format!("{users:.3e}") } else { "endlessly many".to_string() }
    )]
    EffectTooSmall {
        /// The users per arm the formula gives (may be infinite).
        users: f64,
    },
}

/// `value` for a message: plainly in a readable range, else in scientific notation (never a
/// 301-digit `1e300`).
fn compact(value: f64) -> String {
    if value == 0.0 || !value.is_finite() || (1e-4..1e15).contains(&value.abs()) {
        format!("{value}")
    } else {
        format!("{value:e}")
    }
}

pub(crate) fn domain(name: &'static str, value: f64, why: &'static str) -> StatsError {
    StatsError::Domain { name, value, why }
}
