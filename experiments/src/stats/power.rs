//! Power analysis: users needed per arm to detect a difference between two proportions.

use serde::Serialize;

use super::distributions::z_quantile;
use super::proportions::check_alpha;
use super::{StatsError, domain};

/// The minimum detectable effect.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum Effect {
    /// Relative to the baseline: 0.10 means 5% → 5.5%.
    Relative(f64),
    /// In absolute terms: 0.005 means 5% → 5.5%.
    Absolute(f64),
}

/// Users per arm for a two-sided test at level `alpha` with `power`, for baseline rate `p1`
/// and the treatment rate the effect implies, by the normal approximation with unpooled
/// variances (Chow, Shao & Wang 2008, §4.2):
/// n = (z_{1−α/2} + z_{power})² · (p₁(1−p₁) + p₂(1−p₂)) / (p₂ − p₁)², rounded up.
pub fn sample_size_per_arm(p1: f64, effect: Effect, alpha: f64, power: f64) -> Result<u64, StatsError> {
    check_alpha(alpha)?;
    if !(power > 0.0 && power < 1.0) {
        return Err(domain("power", power, "must be strictly between 0 and 1"));
    }
    if !(p1 > 0.0 && p1 < 1.0) {
        return Err(domain("baseline", p1, "must be strictly between 0 and 1"));
    }
    let p2 = match effect {
        Effect::Relative(r) => p1 * (1.0 + r),
        Effect::Absolute(d) => p1 + d,
    };
    if !(p2 > 0.0 && p2 < 1.0) || p2 == p1 {
        let (name, v) = match effect {
            Effect::Relative(r) => ("mde", r),
            Effect::Absolute(d) => ("mde", d),
        };
        return Err(domain(name, v, "must move the rate to a different value inside (0, 1)"));
    }
    let z = z_quantile(1.0 - alpha / 2.0) + z_quantile(power);
    let n = z * z * (p1 * (1.0 - p1) + p2 * (1.0 - p2)) / (p2 - p1).powi(2);
    Ok(n.ceil() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::refs::*;

    /// Matches the unpooled formula evaluated with scipy's quantiles, and is within 1% of
    /// statsmodels' Cohen's-h answer (a different approximation).
    #[test]
    fn sample_sizes() {
        let n = sample_size_per_arm(0.05, Effect::Relative(0.10), 0.05, 0.8).unwrap();
        assert_eq!(n, N_UNPOOLED_05_055.ceil() as u64);
        assert!(((n as f64) - N_COHEN_05_055).abs() / N_COHEN_05_055 < 0.01);
        let n = sample_size_per_arm(0.05, Effect::Absolute(0.01), 0.05, 0.8).unwrap();
        assert_eq!(n, N_UNPOOLED_05_06.ceil() as u64);
        assert!(sample_size_per_arm(0.05, Effect::Relative(0.0), 0.05, 0.8).is_err());
        assert!(sample_size_per_arm(1.2, Effect::Relative(0.1), 0.05, 0.8).is_err());
    }
}
