//! Means: a t-based interval for one arm, Welch's t-test between two.

use serde::Serialize;

use super::distributions::{t_quantile, t_two_sided_p};
use super::proportions::{Interval, check_alpha};
use super::{StatsError, domain};

/// Count, mean and unbiased variance of a sample (accumulated by a caller that streams).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MeanSummary {
    /// Observations.
    pub n: u64,
    /// Sample mean.
    pub mean: f64,
    /// Sample variance (divisor n − 1).
    pub variance: f64,
}

impl MeanSummary {
    /// Summarises a slice (two passes; streaming callers use Welford's update instead).
    pub fn of(values: &[f64]) -> MeanSummary {
        let n = values.len() as u64;
        let mean = values.iter().sum::<f64>() / n.max(1) as f64;
        let ss: f64 = values.iter().map(|v| (v - mean) * (v - mean)).sum();
        let variance = if n > 1 { ss / (n - 1) as f64 } else { 0.0 };
        MeanSummary { n, mean, variance }
    }
}

/// Mean ± t_{1−α/2, n−1} · s/√n.
pub fn mean_interval(s: &MeanSummary, alpha: f64) -> Result<Interval, StatsError> {
    check_alpha(alpha)?;
    if s.n < 2 {
        return Err(domain("n", s.n as f64, "needs at least two observations"));
    }
    let half = t_quantile(1.0 - alpha / 2.0, (s.n - 1) as f64) * (s.variance / s.n as f64).sqrt();
    Ok(Interval { estimate: s.mean, low: s.mean - half, high: s.mean + half })
}

/// Welch's unequal-variance t-test.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct WelchTest {
    /// (mean_a − mean_b) / √(s²_a/n_a + s²_b/n_b).
    pub t: f64,
    /// Welch–Satterthwaite degrees of freedom.
    pub df: f64,
    /// Two-sided p-value.
    pub p_value: f64,
    /// Interval for mean_a − mean_b.
    pub difference: Interval,
}

/// Welch's t-test of H₀: mean_a = mean_b (Welch 1947).
pub fn welch_t_test(a: &MeanSummary, b: &MeanSummary, alpha: f64) -> Result<WelchTest, StatsError> {
    check_alpha(alpha)?;
    if a.n < 2 || b.n < 2 {
        return Err(domain("n", a.n.min(b.n) as f64, "each arm needs at least two observations"));
    }
    let (va, vb) = (a.variance / a.n as f64, b.variance / b.n as f64);
    let se = (va + vb).sqrt();
    let diff = a.mean - b.mean;
    if se == 0.0 {
        let p_value = if diff == 0.0 { 1.0 } else { 0.0 };
        return Ok(WelchTest {
            t: 0.0,
            df: (a.n + b.n - 2) as f64,
            p_value,
            difference: Interval { estimate: diff, low: diff, high: diff },
        });
    }
    let df = (va + vb).powi(2) / (va * va / (a.n - 1) as f64 + vb * vb / (b.n - 1) as f64);
    let t = diff / se;
    let half = t_quantile(1.0 - alpha / 2.0, df) * se;
    Ok(WelchTest {
        t,
        df,
        p_value: t_two_sided_p(t, df),
        difference: Interval { estimate: diff, low: diff - half, high: diff + half },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::refs::*;

    /// Welch's t, df and p match scipy's `ttest_ind(equal_var=False)`.
    #[test]
    fn welch_matches_scipy() {
        let a = MeanSummary::of(&[1.2, 2.3, 0.8, 3.1, 2.2, 1.9, 2.8, 1.1]);
        let b = MeanSummary::of(&[2.9, 3.4, 2.7, 4.1, 3.3, 2.5, 3.9, 3.0, 3.6]);
        let w = welch_t_test(&a, &b, 0.05).unwrap();
        assert!((w.t - WELCH_T).abs() < 1e-9, "{} vs {WELCH_T}", w.t);
        assert!((w.df - WELCH_DF).abs() < 1e-9, "{} vs {WELCH_DF}", w.df);
        assert!((w.p_value - WELCH_P).abs() < 1e-9, "{} vs {WELCH_P}", w.p_value);
    }

    /// The t interval uses scipy's t quantile.
    #[test]
    fn t_interval_uses_the_t_quantile() {
        let s = MeanSummary { n: 8, mean: 2.0, variance: 4.0 };
        let i = mean_interval(&s, 0.05).unwrap();
        let half = T975_DF7 * (4.0f64 / 8.0).sqrt();
        assert!((i.high - (2.0 + half)).abs() < 1e-9);
    }
}
