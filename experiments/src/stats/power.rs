//! Power analysis: users needed per arm to detect a difference between two proportions or
//! two means, and how many fewer CUPED needs given the correlation with the pre-period.

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

/// The most users per arm a plan may ask for: a thousand billion, more than a hundred
/// times the people alive. Beyond it the effect is too small to plan for (and at about
/// 1.8e19 the count would no longer fit a `u64`).
pub const MAX_USERS_PER_ARM: f64 = 1e12;

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
    if p2 == p1 && effect != Effect::Relative(0.0) && effect != Effect::Absolute(0.0) {
        // An effect so small that the rate does not move in floating point.
        return Err(StatsError::EffectTooSmall { users: f64::INFINITY });
    }
    if !(p2 > 0.0 && p2 < 1.0) || p2 == p1 {
        let (name, v) = match effect {
            Effect::Relative(r) => ("mde", r),
            Effect::Absolute(d) => ("mde", d),
        };
        return Err(domain(name, v, "must move the rate to a different value inside (0, 1)"));
    }
    let z_alpha = z_quantile(1.0 - alpha / 2.0);
    if !z_alpha.is_finite() {
        return Err(domain("alpha", alpha, "is too close to 0 to compute a quantile for"));
    }
    let z = z_alpha + z_quantile(power);
    if !(z.is_finite() && z > 0.0) {
        return Err(domain("power", power, "must be above alpha / 2"));
    }
    let n = z * z * (p1 * (1.0 - p1) + p2 * (1.0 - p2)) / (p2 - p1).powi(2);
    if !(n.is_finite() && n <= MAX_USERS_PER_ARM) {
        return Err(StatsError::EffectTooSmall { users: n });
    }
    Ok(n.ceil() as u64)
}

/// Users per arm to detect a change of a mean with per-user standard deviation `sd` (equal
/// in both arms), two-sided at `alpha` with `power`, normal approximation:
/// n = (z_{1−α/2} + z_{power})² · 2σ² · (1 − ρ²) / δ², rounded up, where δ is the effect
/// (relative: δ = r·|baseline|) and ρ the correlation of the metric with its pre-period
/// value when CUPED adjusts for it (0 without CUPED): CUPED leaves (1 − ρ²) of the variance
/// (Deng et al. 2013).
pub fn sample_size_for_mean(
    baseline: f64,
    sd: f64,
    effect: Effect,
    alpha: f64,
    power: f64,
    correlation: f64,
) -> Result<u64, StatsError> {
    check_alpha(alpha)?;
    if !(power > 0.0 && power < 1.0) {
        return Err(domain("power", power, "must be strictly between 0 and 1"));
    }
    if !baseline.is_finite() {
        return Err(domain("baseline", baseline, "must be a number"));
    }
    if !(sd.is_finite() && sd > 0.0) {
        return Err(domain("sd", sd, "must be a positive number"));
    }
    if !(correlation.is_finite() && correlation.abs() < 1.0) {
        return Err(domain("correlation", correlation, "must be strictly between -1 and 1"));
    }
    let delta = match effect {
        Effect::Relative(r) if baseline == 0.0 => {
            return Err(domain("mde", r, "is relative, but the baseline mean is 0: give an absolute effect"));
        }
        Effect::Relative(r) => r * baseline.abs(),
        Effect::Absolute(d) => d,
    };
    if !(delta.is_finite() && delta != 0.0) {
        let v = match effect {
            Effect::Relative(v) | Effect::Absolute(v) => v,
        };
        return Err(domain("mde", v, "must be a non-zero number"));
    }
    let z = z_quantile(1.0 - alpha / 2.0) + z_quantile(power);
    if !(z.is_finite() && z > 0.0) {
        return Err(domain("power", power, "must be above alpha / 2"));
    }
    let n = z * z * 2.0 * sd * sd * (1.0 - correlation * correlation) / (delta * delta);
    if !(n.is_finite() && n <= MAX_USERS_PER_ARM) {
        return Err(StatsError::EffectTooSmall { users: n });
    }
    Ok(n.ceil().max(2.0) as u64)
}

/// [`sample_size_per_arm`] with CUPED: the rate's variance scaled by (1 − ρ²).
pub fn sample_size_per_arm_cuped(
    p1: f64,
    effect: Effect,
    alpha: f64,
    power: f64,
    correlation: f64,
) -> Result<u64, StatsError> {
    if !(correlation.is_finite() && correlation.abs() < 1.0) {
        return Err(domain("correlation", correlation, "must be strictly between -1 and 1"));
    }
    let n = sample_size_per_arm(p1, effect, alpha, power)?;
    // Recompute from the unrounded formula: rounding first would round twice.
    let p2 = match effect {
        Effect::Relative(r) => p1 * (1.0 + r),
        Effect::Absolute(d) => p1 + d,
    };
    let z = z_quantile(1.0 - alpha / 2.0) + z_quantile(power);
    let exact = z * z * (p1 * (1.0 - p1) + p2 * (1.0 - p2)) / (p2 - p1).powi(2);
    let reduced = exact * (1.0 - correlation * correlation);
    Ok(if reduced.is_finite() { reduced.ceil().max(2.0) as u64 } else { n })
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

    /// Means and CUPED: match statsmodels' `NormalIndPower` with the standardised effect
    /// δ/σ (and δ/(σ√(1 − ρ²)) for CUPED).
    #[test]
    fn sample_sizes_for_means_and_cuped() {
        let n = sample_size_for_mean(2.0, 3.0, Effect::Relative(0.1), 0.05, 0.8, 0.0).unwrap();
        assert_eq!(n, N_MEAN_2_3_01.ceil() as u64);
        let n = sample_size_for_mean(2.0, 3.0, Effect::Relative(0.1), 0.05, 0.8, 0.6).unwrap();
        assert_eq!(n, N_MEAN_CUPED_06.ceil() as u64);
        let n = sample_size_for_mean(0.0, 3.0, Effect::Absolute(0.2), 0.05, 0.8, 0.0).unwrap();
        assert_eq!(n, N_MEAN_2_3_01.ceil() as u64, "the same δ = 0.2");
        assert!(sample_size_for_mean(0.0, 3.0, Effect::Relative(0.1), 0.05, 0.8, 0.0).is_err());
        assert!(sample_size_for_mean(2.0, 0.0, Effect::Relative(0.1), 0.05, 0.8, 0.0).is_err());
        assert!(sample_size_for_mean(2.0, 3.0, Effect::Relative(0.1), 0.05, 0.8, 1.0).is_err());
        let n = sample_size_per_arm_cuped(0.05, Effect::Relative(0.10), 0.05, 0.8, 0.5).unwrap();
        assert_eq!(n, (N_UNPOOLED_05_055 * 0.75).ceil() as u64);
    }

    /// Effects too small to plan for are an error, never a saturated 18446744073709551615;
    /// quantiles that do not exist are refused too.
    #[test]
    fn impossible_plans_are_errors() {
        let err = sample_size_per_arm(1e-7, Effect::Relative(1e-7), 0.05, 0.8).unwrap_err();
        assert!(matches!(err, StatsError::EffectTooSmall { users } if users > 1e20), "{err}");
        assert!(err.to_string().starts_with("the effect is too small to plan for: detecting it would take "), "{err}");
        assert!(err.to_string().ends_with("take 1.570e22 users per arm (the limit is 1e12)"), "{err}");
        let err = sample_size_per_arm(0.5, Effect::Absolute(1e-12), 0.05, 0.8).unwrap_err();
        assert!(matches!(err, StatsError::EffectTooSmall { .. }), "{err}");
        let err = sample_size_per_arm(0.5, Effect::Absolute(1e-300), 0.05, 0.8).unwrap_err();
        assert!(err.to_string().contains("would take endlessly many users per arm"), "{err}");
        let err = sample_size_per_arm(0.5, Effect::Absolute(1e300), 0.05, 0.8).unwrap_err();
        assert_eq!(err.to_string(), "mde = 1e300: must move the rate to a different value inside (0, 1)");
        // Large but plannable: (1.95996 + 0.84162)² · 0.5 / 1e-10 ≈ 3.92444e10.
        let n = sample_size_per_arm(0.5, Effect::Absolute(1e-5), 0.05, 0.8).unwrap();
        assert!((39_244_300_000..39_244_500_000).contains(&n), "{n}");
        let err = sample_size_per_arm(0.05, Effect::Relative(0.1), 1e-300, 0.8).unwrap_err();
        assert!(matches!(err, StatsError::Domain { name: "alpha", .. }), "{err}");
        let err = sample_size_per_arm(0.05, Effect::Relative(0.1), 0.05, 1e-9).unwrap_err();
        assert!(matches!(err, StatsError::Domain { name: "power", .. }), "{err}");
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert!(sample_size_per_arm(bad, Effect::Relative(0.1), 0.05, 0.8).is_err());
            assert!(sample_size_per_arm(0.05, Effect::Relative(bad), 0.05, 0.8).is_err());
            assert!(sample_size_per_arm(0.05, Effect::Absolute(bad), 0.05, 0.8).is_err());
            assert!(sample_size_per_arm(0.05, Effect::Relative(0.1), bad, 0.8).is_err());
            assert!(sample_size_per_arm(0.05, Effect::Relative(0.1), 0.05, bad).is_err());
        }
    }
}
