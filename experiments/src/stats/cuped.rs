//! CUPED (Deng, Xu, Kohavi & Walker 2013, "Improving the sensitivity of online controlled
//! experiments by utilizing pre-experiment data"): the difference of means adjusted by a
//! pre-period covariate, with the variance it removes.

use serde::Serialize;

use super::distributions::{z_quantile, z_two_sided_p};
use super::proportions::{Interval, check_alpha};
use super::{StatsError, domain};

/// One arm's sums for CUPED: the metric y and the pre-period covariate x per user.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct CovariateSummary {
    /// Users.
    pub n: u64,
    /// Mean of y.
    pub mean_y: f64,
    /// Mean of x.
    pub mean_x: f64,
    /// Σ (y − ȳ)².
    pub syy: f64,
    /// Σ (x − x̄)².
    pub sxx: f64,
    /// Σ (x − x̄)(y − ȳ).
    pub sxy: f64,
}

impl CovariateSummary {
    /// Adds one user (Welford's update of the means and co-moments).
    pub fn add(&mut self, y: f64, x: f64) {
        self.n += 1;
        let n = self.n as f64;
        let (dx, dy) = (x - self.mean_x, y - self.mean_y);
        self.mean_x += dx / n;
        self.mean_y += dy / n;
        self.sxx += dx * (x - self.mean_x);
        self.syy += dy * (y - self.mean_y);
        self.sxy += dx * (y - self.mean_y);
    }
}

/// The CUPED-adjusted comparison of a treatment with control.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Cuped {
    /// θ = Σ S_xy / Σ S_xx over both arms (the pooled within-arm slope of y on x).
    pub theta: f64,
    /// (ȳ_t − ȳ_c) − θ(x̄_t − x̄_c), with its interval.
    pub difference: Interval,
    /// difference / its standard error.
    pub z: f64,
    /// Two-sided p-value (normal reference).
    pub p_value: f64,
    /// 1 − Var(adjusted difference) / Var(raw difference): the share of variance removed
    /// (about ρ², the squared within-arm correlation of x and y).
    pub variance_reduction: f64,
    /// The pooled within-arm correlation of x and y.
    pub correlation: f64,
}

/// CUPED for treatment `t` against control `c` at level `alpha`. Per arm, the adjusted
/// variance of the mean is (S_yy − 2θS_xy + θ²S_xx) / ((n − 1)·n).
pub fn cuped(t: &CovariateSummary, c: &CovariateSummary, alpha: f64) -> Result<Cuped, StatsError> {
    check_alpha(alpha)?;
    if t.n < 2 || c.n < 2 {
        return Err(domain("n", t.n.min(c.n) as f64, "each arm needs at least two users with a pre-period value"));
    }
    let sxx = t.sxx + c.sxx;
    if sxx.is_nan() || sxx <= 0.0 {
        return Err(domain("pre-period variance", sxx, "the pre-period value does not vary: nothing to adjust by"));
    }
    let theta = (t.sxy + c.sxy) / sxx;
    let var_mean = |a: &CovariateSummary, th: f64| {
        ((a.syy - 2.0 * th * a.sxy + th * th * a.sxx) / ((a.n - 1) as f64 * a.n as f64)).max(0.0)
    };
    let (adjusted, raw) = (var_mean(t, theta) + var_mean(c, theta), var_mean(t, 0.0) + var_mean(c, 0.0));
    if adjusted.is_nan() || adjusted <= 0.0 {
        return Err(domain("variance", adjusted, "the adjusted metric does not vary: the test is not computable"));
    }
    let d = (t.mean_y - c.mean_y) - theta * (t.mean_x - c.mean_x);
    let se = adjusted.sqrt();
    let half = z_quantile(1.0 - alpha / 2.0) * se;
    let syy = t.syy + c.syy;
    Ok(Cuped {
        theta,
        difference: Interval { estimate: d, low: d - half, high: d + half },
        z: d / se,
        p_value: z_two_sided_p(d / se),
        variance_reduction: if raw > 0.0 { 1.0 - adjusted / raw } else { 0.0 },
        correlation: if syy > 0.0 { (t.sxy + c.sxy) / (sxx * syy).sqrt() } else { 0.0 },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::refs::*;

    fn summary(pairs: &[(f64, f64)]) -> CovariateSummary {
        let mut s = CovariateSummary::default();
        for (y, x) in pairs {
            s.add(*y, *x);
        }
        s
    }

    /// The adjusted difference is statsmodels' OLS coefficient of the treatment in
    /// y ~ 1 + treatment + x; its standard error and the variance reduction match numpy.
    #[test]
    fn matches_ols_and_numpy() {
        let t = summary(&CUPED_T);
        let c = summary(&CUPED_C);
        let r = cuped(&t, &c, 0.05).unwrap();
        assert!((r.difference.estimate - CUPED_DIFF).abs() < 1e-9, "{r:?}");
        assert!((r.theta - CUPED_THETA).abs() < 1e-9, "{r:?}");
        assert!((r.z - CUPED_Z).abs() < 1e-9, "{r:?}");
        assert!((r.p_value - CUPED_P).abs() < 1e-9, "{r:?}");
        assert!((r.variance_reduction - CUPED_REDUCTION).abs() < 1e-9, "{r:?}");
        let flat = summary(&[(1.0, 2.0), (0.0, 2.0)]);
        assert!(cuped(&flat, &flat, 0.05).is_err());
    }
}
