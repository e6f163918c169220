//! Relative lift of a treatment over control, with Fieller's interval for a ratio of
//! independent means: it never reaches below −100% for a metric that cannot be negative, and
//! it excludes 0% exactly when the Wald z-test of the difference rejects.

use serde::Serialize;

use super::distributions::z_quantile;
use super::proportions::check_alpha;
use super::{StatsError, domain};

/// Relative lift `mean_t / mean_c − 1` with its interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Lift {
    /// The lift.
    pub estimate: f64,
    /// Lower bound.
    pub low: f64,
    /// Upper bound.
    pub high: f64,
}

/// Lift of treatment over control from two independent means and the variances of those
/// means (for a proportion, p(1−p)/n), with Fieller's interval (Fieller 1954): the set of
/// ratios ρ for which |m_t − ρ·m_c| / √(V_t + ρ²·V_c) ≤ z, i.e. the roots of
/// (m_c² − z²V_c)·ρ² − 2·m_t·m_c·ρ + (m_t² − z²V_t) = 0. It is bounded only when control's
/// mean is itself distinguishable from zero (m_c² > z²V_c); otherwise the ratio is not
/// estimable and this is an error saying so. `nonnegative`: the metric cannot be below zero,
/// so neither can the ratio (the lower root is clamped at ρ = 0, a lift of −100%).
pub fn relative_lift(
    mean_t: f64,
    var_of_mean_t: f64,
    mean_c: f64,
    var_of_mean_c: f64,
    alpha: f64,
    nonnegative: bool,
) -> Result<Lift, StatsError> {
    check_alpha(alpha)?;
    fieller_lift(mean_t, var_of_mean_t, mean_c, var_of_mean_c, z_quantile(1.0 - alpha / 2.0), nonnegative)
}

/// [`relative_lift`] for a critical value `z` instead of a level: the ratios within `z`
/// standard errors (a confidence sequence's boundary gives a sequence for the lift).
pub fn fieller_lift(
    mean_t: f64,
    var_of_mean_t: f64,
    mean_c: f64,
    var_of_mean_c: f64,
    z: f64,
    nonnegative: bool,
) -> Result<Lift, StatsError> {
    if mean_c.is_nan() || mean_c <= 0.0 {
        return Err(domain("control mean", mean_c, "must be positive for a relative lift"));
    }
    if !(z.is_finite() && z > 0.0) {
        return Err(domain("z", z, "must be a positive number"));
    }
    let z2 = z * z;
    let a = mean_c * mean_c - z2 * var_of_mean_c;
    if a.is_nan() || a <= 0.0 {
        return Err(domain(
            "control mean",
            mean_c,
            "is not distinguishable from zero, so the ratio's interval is unbounded",
        ));
    }
    // b² − 4ac over 4, which is z²(V_t·a + V_c·m_t²) ≥ 0 when a > 0.
    let disc = z2 * (var_of_mean_t * a + var_of_mean_c * mean_t * mean_t);
    let (low, high) = ((mean_t * mean_c - disc.sqrt()) / a, (mean_t * mean_c + disc.sqrt()) / a);
    let low = if nonnegative { low.max(0.0) } else { low };
    let ratio = mean_t / mean_c;
    Ok(Lift { estimate: ratio - 1.0, low: low - 1.0, high: high - 1.0 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::refs::*;

    /// Matches Fieller's interval computed with numpy/scipy, excludes 0 exactly when the
    /// Wald test of the difference rejects, and stays above −100%.
    #[test]
    fn fieller_lift() {
        let (pc, pt) = (0.1, 0.12);
        let l = relative_lift(pt, pt * (1.0 - pt) / 1000.0, pc, pc * (1.0 - pc) / 1000.0, 0.05, true).unwrap();
        assert!((l.estimate - LIFT_100_120).abs() < 1e-12);
        assert!((l.low - FIELLER_LO_100_120).abs() < 1e-9, "{l:?}");
        assert!((l.high - FIELLER_HI_100_120).abs() < 1e-9, "{l:?}");
        // A treatment at zero: the delta method would give [−100%, −100%] or below; Fieller
        // is clamped at −100% and reaches above it.
        let l = relative_lift(0.0, 0.0, 0.05, 0.05 * 0.95 / 200.0, 0.05, true).unwrap();
        assert_eq!((l.estimate, l.low), (-1.0, -1.0));
        assert!(relative_lift(0.01, 1e-4, 0.01, 1e-4, 0.05, true).is_err(), "control within noise of 0");
        assert!(relative_lift(0.1, 0.0, 0.0, 0.0, 0.05, true).is_err());
        assert!(relative_lift(0.1, 0.0, f64::NAN, 0.0, 0.05, true).is_err());
    }
}
