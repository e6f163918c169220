//! Relative lift of a treatment over control, with a delta-method interval.

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

/// Lift of treatment over control from two means and the variances of those means
/// (for a proportion, p(1−p)/n). Delta method on the ratio of independent means:
/// Var(m_t/m_c) ≈ (m_t/m_c)² · (Var m_t / m_t² + Var m_c / m_c²).
pub fn relative_lift(
    mean_t: f64,
    var_of_mean_t: f64,
    mean_c: f64,
    var_of_mean_c: f64,
    alpha: f64,
) -> Result<Lift, StatsError> {
    check_alpha(alpha)?;
    if mean_c <= 0.0 {
        return Err(domain("control mean", mean_c, "must be positive for a relative lift"));
    }
    let ratio = mean_t / mean_c;
    let rel_var_t = if mean_t > 0.0 { var_of_mean_t / (mean_t * mean_t) } else { 0.0 };
    let var = ratio * ratio * (rel_var_t + var_of_mean_c / (mean_c * mean_c));
    let half = z_quantile(1.0 - alpha / 2.0) * var.sqrt();
    Ok(Lift { estimate: ratio - 1.0, low: ratio - 1.0 - half, high: ratio - 1.0 + half })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::refs::*;

    /// Matches the delta-method arithmetic done in numpy.
    #[test]
    fn delta_method_lift() {
        let (pc, pt) = (0.1, 0.12);
        let l = relative_lift(pt, pt * (1.0 - pt) / 1000.0, pc, pc * (1.0 - pc) / 1000.0, 0.05).unwrap();
        assert!((l.estimate - LIFT_100_120).abs() < 1e-12);
        assert!((l.low - LIFT_LO_100_120).abs() < 1e-9);
        assert!((l.high - LIFT_HI_100_120).abs() < 1e-9);
        assert!(relative_lift(0.1, 0.0, 0.0, 0.0, 0.05).is_err());
    }
}
