//! Proportions: the Wilson score interval and the pooled two-proportion z-test.

use serde::Serialize;

use super::distributions::{z_quantile, z_two_sided_p};
use super::{StatsError, domain};

/// An estimate with a two-sided confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Interval {
    /// The point estimate.
    pub estimate: f64,
    /// Lower bound.
    pub low: f64,
    /// Upper bound.
    pub high: f64,
}

/// Wilson score interval for `successes` of `n` at confidence `1 − alpha`
/// (Wilson 1927; Agresti & Coull 1998). Well-behaved at 0 and n, unlike the Wald interval.
pub fn wilson(successes: u64, n: u64, alpha: f64) -> Result<Interval, StatsError> {
    if n == 0 {
        return Err(domain("n", 0.0, "needs at least one trial"));
    }
    if successes > n {
        return Err(domain("successes", successes as f64, "cannot exceed n"));
    }
    check_alpha(alpha)?;
    let z = z_quantile(1.0 - alpha / 2.0);
    let (n, p) = (n as f64, successes as f64 / n as f64);
    let z2 = z * z;
    let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half = z / (1.0 + z2 / n) * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    Ok(Interval { estimate: p, low: (centre - half).max(0.0), high: (centre + half).min(1.0) })
}

/// The unpooled (Wald) interval for p_a − p_b at confidence `1 − alpha`, treating the two
/// samples as independent: (p_a − p_b) ± z·√(p_a(1 − p_a)/n_a + p_b(1 − p_b)/n_b).
pub fn proportion_difference(
    successes_a: u64,
    n_a: u64,
    successes_b: u64,
    n_b: u64,
    alpha: f64,
) -> Result<Interval, StatsError> {
    if n_a == 0 || n_b == 0 {
        return Err(domain("n", 0.0, "each sample needs at least one trial"));
    }
    if successes_a > n_a || successes_b > n_b {
        return Err(domain("successes", successes_a.max(successes_b) as f64, "cannot exceed n"));
    }
    check_alpha(alpha)?;
    let (na, nb) = (n_a as f64, n_b as f64);
    let (pa, pb) = (successes_a as f64 / na, successes_b as f64 / nb);
    let half = z_quantile(1.0 - alpha / 2.0) * (pa * (1.0 - pa) / na + pb * (1.0 - pb) / nb).sqrt();
    Ok(Interval { estimate: pa - pb, low: pa - pb - half, high: pa - pb + half })
}

/// A two-proportion z-test.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ZTest {
    /// (p_a − p_b) / SE_pooled.
    pub z: f64,
    /// Two-sided p-value.
    pub p_value: f64,
}

/// Pooled two-proportion z-test of H₀: p_a = p_b, two-sided.
pub fn two_proportion_z_test(successes_a: u64, n_a: u64, successes_b: u64, n_b: u64) -> Result<ZTest, StatsError> {
    if n_a == 0 || n_b == 0 {
        return Err(domain("n", 0.0, "each arm needs at least one user"));
    }
    if successes_a > n_a || successes_b > n_b {
        return Err(domain("successes", successes_a.max(successes_b) as f64, "cannot exceed n"));
    }
    let (na, nb) = (n_a as f64, n_b as f64);
    let (pa, pb) = (successes_a as f64 / na, successes_b as f64 / nb);
    let pooled = (successes_a + successes_b) as f64 / (na + nb);
    let se = (pooled * (1.0 - pooled) * (1.0 / na + 1.0 / nb)).sqrt();
    if se == 0.0 {
        return Ok(ZTest { z: 0.0, p_value: 1.0 });
    }
    let z = (pa - pb) / se;
    Ok(ZTest { z, p_value: z_two_sided_p(z) })
}

pub(crate) fn check_alpha(alpha: f64) -> Result<(), StatsError> {
    if alpha > 0.0 && alpha < 1.0 { Ok(()) } else { Err(domain("alpha", alpha, "must be strictly between 0 and 1")) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::refs::*;

    fn close(a: f64, b: f64, tol: f64) {
        assert!((a - b).abs() <= tol, "{a} vs {b}");
    }

    /// Wilson intervals match statsmodels' `proportion_confint(method="wilson")`.
    #[test]
    fn wilson_matches_statsmodels() {
        let w = wilson(45, 500, 0.05).unwrap();
        close(w.low, WILSON_45_500_LO, 1e-9);
        close(w.high, WILSON_45_500_HI, 1e-9);
        let w = wilson(0, 20, 0.05).unwrap();
        close(w.low, WILSON_0_20_LO, 1e-9);
        close(w.high, WILSON_0_20_HI, 1e-9);
        let w = wilson(20, 20, 0.05).unwrap();
        close(w.low, WILSON_20_20_LO, 1e-9);
        close(w.high, WILSON_20_20_HI, 1e-9);
        assert!(wilson(3, 2, 0.05).is_err() && wilson(0, 0, 0.05).is_err() && wilson(1, 2, 1.5).is_err());
    }

    /// The z-test matches statsmodels' `proportions_ztest`.
    #[test]
    fn z_test_matches_statsmodels() {
        let t = two_proportion_z_test(120, 2000, 150, 2000).unwrap();
        close(t.z, ZTEST_Z, 1e-9);
        close(t.p_value, ZTEST_P, 1e-9);
    }

    /// The unpooled difference interval, computed by hand: 0.06 − 0.075 ± 1.96·√(0.06·0.94/2000
    /// + 0.075·0.925/2000).
    #[test]
    fn difference_interval_by_hand() {
        let d = proportion_difference(120, 2000, 150, 2000, 0.05).unwrap();
        close(d.estimate, -0.015, 1e-12);
        close(d.low, -0.030_542_835_699_652_8, 1e-9);
        close(d.high, 0.000_542_835_699_652_8, 1e-9);
        assert!(proportion_difference(1, 0, 1, 2, 0.05).is_err());
        assert!(proportion_difference(3, 2, 1, 2, 0.05).is_err());
    }
}
