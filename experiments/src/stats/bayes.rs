//! Bayesian comparison of two proportions with Beta(1, 1) priors: the probability that the
//! treatment beats control, and the expected loss of choosing either (Stucchio 2015).

use serde::Serialize;
use statrs::distribution::{Beta, Continuous, ContinuousCDF};

use super::{StatsError, domain};

/// Intervals of the Simpson rule (even).
const GRID: usize = 8_000;

/// What the posteriors say.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BetaComparison {
    /// P(p_treatment > p_control).
    pub prob_treatment_better: f64,
    /// E[max(p_control − p_treatment, 0)]: what choosing the treatment risks.
    pub expected_loss_treatment: f64,
    /// E[max(p_treatment − p_control, 0)]: what keeping control risks.
    pub expected_loss_control: f64,
}

/// Compares Beta(1 + s, 1 + n − s) posteriors by numerical integration over the region
/// that holds their mass:
/// P(t > c) = ∫ f_t(x) F_c(x) dx, and with E[(p_c − x)⁺] = m_c (1 − F_{c⁺}(x)) − x (1 − F_c(x))
/// (c⁺ = Beta(a_c + 1, b_c)), the expected loss of choosing t is ∫ f_t(x) E[(p_c − x)⁺] dx.
pub fn beta_binomial(s_c: u64, n_c: u64, s_t: u64, n_t: u64) -> Result<BetaComparison, StatsError> {
    if s_c > n_c || s_t > n_t {
        return Err(domain("successes", s_c.max(s_t) as f64, "cannot exceed the arm's users"));
    }
    let post = |s: u64, n: u64| ((1 + s) as f64, (1 + n - s) as f64);
    let (ac, bc) = post(s_c, n_c);
    let (at, bt) = post(s_t, n_t);
    let beta = |a: f64, b: f64| Beta::new(a, b).map_err(|_| domain("posterior", a, "invalid Beta parameters"));
    let (c, c_plus, t, t_plus) = (beta(ac, bc)?, beta(ac + 1.0, bc)?, beta(at, bt)?, beta(at + 1.0, bt)?);
    let (mean_c, mean_t) = (ac / (ac + bc), at / (at + bt));
    let sd = |a: f64, b: f64| (a * b / ((a + b).powi(2) * (a + b + 1.0))).sqrt();
    let lo = (mean_c - 12.0 * sd(ac, bc)).min(mean_t - 12.0 * sd(at, bt)).max(0.0);
    let hi = (mean_c + 12.0 * sd(ac, bc)).max(mean_t + 12.0 * sd(at, bt)).min(1.0);

    let simpson = |f: &dyn Fn(f64) -> f64| {
        let h = (hi - lo) / GRID as f64;
        let mut sum = f(lo) + f(hi);
        for i in 1..GRID {
            let x = lo + i as f64 * h;
            sum += if i % 2 == 1 { 4.0 } else { 2.0 } * f(x);
        }
        sum * h / 3.0
    };
    let prob = simpson(&|x| t.pdf(x) * c.cdf(x));
    let loss_t = simpson(&|x| t.pdf(x) * (mean_c * c_plus.sf(x) - x * c.sf(x)).max(0.0));
    let loss_c = simpson(&|x| c.pdf(x) * (mean_t * t_plus.sf(x) - x * t.sf(x)).max(0.0));
    Ok(BetaComparison {
        prob_treatment_better: prob.clamp(0.0, 1.0),
        expected_loss_treatment: loss_t.max(0.0),
        expected_loss_control: loss_c.max(0.0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::refs::*;

    /// Matches scipy's numerical integration.
    #[test]
    fn matches_scipy() {
        let b = beta_binomial(100, 1000, 120, 1000).unwrap();
        assert!((b.prob_treatment_better - P_BEAT_100_120).abs() < 1e-6, "{b:?}");
        assert!((b.expected_loss_treatment - LOSS_TREATMENT_100_120).abs() < 2e-6, "{b:?}");
        // Identical arms: a coin flip, equal losses.
        let same = beta_binomial(50, 500, 50, 500).unwrap();
        assert!((same.prob_treatment_better - 0.5).abs() < 1e-6);
        assert!((same.expected_loss_treatment - same.expected_loss_control).abs() < 1e-9);
    }
}
