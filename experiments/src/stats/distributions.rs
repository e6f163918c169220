//! Quantiles and tail probabilities of the normal, Student t and chi-square distributions
//! (statrs), in the few shapes the tests need.

use statrs::distribution::{ChiSquared, ContinuousCDF, Normal, StudentsT};

/// Φ⁻¹(p) for the standard normal.
pub(crate) fn z_quantile(p: f64) -> f64 {
    Normal::new(0.0, 1.0).map(|n| n.inverse_cdf(p)).unwrap_or(f64::NAN)
}

/// Two-sided p-value of a standard-normal statistic: 2·(1 − Φ(|z|)).
pub(crate) fn z_two_sided_p(z: f64) -> f64 {
    Normal::new(0.0, 1.0).map(|n| 2.0 * n.sf(z.abs())).unwrap_or(f64::NAN).min(1.0)
}

/// Quantile of Student's t with `df` degrees of freedom.
pub(crate) fn t_quantile(p: f64, df: f64) -> f64 {
    StudentsT::new(0.0, 1.0, df).map(|t| t.inverse_cdf(p)).unwrap_or(f64::NAN)
}

/// Two-sided p-value of a t statistic.
pub(crate) fn t_two_sided_p(t: f64, df: f64) -> f64 {
    StudentsT::new(0.0, 1.0, df).map(|d| 2.0 * d.sf(t.abs())).unwrap_or(f64::NAN).min(1.0)
}

/// Upper tail of a chi-square statistic with `df` degrees of freedom.
pub(crate) fn chi2_sf(x: f64, df: f64) -> f64 {
    ChiSquared::new(df).map(|c| c.sf(x)).unwrap_or(f64::NAN)
}
