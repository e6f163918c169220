//! Bayesian comparisons: two proportions with Beta(1, 1) priors — the probability that the
//! treatment beats control, and the expected loss of choosing either (Stucchio 2015) — and
//! GrowthBook's Gaussian model on the relative lift with a flat or normal prior.

use serde::Serialize;
use statrs::distribution::{Beta, Continuous, ContinuousCDF, Normal};

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

/// The prior on the relative lift of the Gaussian model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LiftPrior {
    /// Improper flat prior: the posterior is the likelihood.
    Flat,
    /// N(0, sd²) on the relative lift (0.3: a lift beyond ±60% is a priori unlikely).
    Normal {
        /// Standard deviation of the prior, relative (0.3 = 30%).
        sd: f64,
    },
}

/// The posterior of the relative lift under the Gaussian model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LiftPosterior {
    /// The prior used.
    pub prior: LiftPrior,
    /// Posterior mean of the lift.
    pub mean: f64,
    /// Posterior standard deviation.
    pub sd: f64,
    /// Credible interval, lower bound.
    pub low: f64,
    /// Credible interval, upper bound.
    pub high: f64,
    /// P(the treatment is better) under the posterior ("chance to win"; a probability of
    /// the hypothesis, not a p-value).
    pub chance_to_win: f64,
    /// E[loss] of choosing the treatment, in relative-lift units (0.01 = 1% of control).
    pub expected_loss: f64,
}

/// GrowthBook's Gaussian model on the relative lift (gbstats): the lift L̂ = m_t/m_c − 1
/// with the delta-method variance v = V_t/m_c² + m_t²·V_c/m_c⁴ is a normal likelihood for
/// the true lift; with a N(0, s²) prior the posterior is normal with precision 1/v + 1/s²
/// and mean L̂·(1/v)/(1/v + 1/s²) (flat prior: N(L̂, v)). Chance to win = Φ(μ/σ) (Φ(−μ/σ)
/// when lower is better); expected loss of choosing the treatment = σφ(μ/σ) − μΦ(−μ/σ)
/// (σφ(μ/σ) + μΦ(μ/σ) when lower is better); the credible interval μ ± z_{1−α/2}σ.
pub fn gaussian_lift(
    mean_t: f64,
    var_of_mean_t: f64,
    mean_c: f64,
    var_of_mean_c: f64,
    prior: LiftPrior,
    alpha: f64,
    lower_is_better: bool,
) -> Result<LiftPosterior, StatsError> {
    super::proportions::check_alpha(alpha)?;
    if mean_c.is_nan() || mean_c <= 0.0 {
        return Err(domain("control mean", mean_c, "must be positive for a relative lift"));
    }
    let lift = mean_t / mean_c - 1.0;
    let v = var_of_mean_t / (mean_c * mean_c) + mean_t * mean_t * var_of_mean_c / mean_c.powi(4);
    if v.is_nan() || v <= 0.0 {
        return Err(domain("variance", v, "neither arm varies: the lift has no likelihood"));
    }
    let (mean, var) = match prior {
        LiftPrior::Flat => (lift, v),
        LiftPrior::Normal { sd } if sd.is_finite() && sd > 0.0 => {
            let precision = 1.0 / v + 1.0 / (sd * sd);
            (lift / v / precision, 1.0 / precision)
        }
        LiftPrior::Normal { sd } => return Err(domain("prior sd", sd, "must be a positive number")),
    };
    let sd = var.sqrt();
    let normal = Normal::new(0.0, 1.0).map_err(|_| domain("sd", sd, "invalid normal"))?;
    let k = mean / sd;
    let half = super::distributions::z_quantile(1.0 - alpha / 2.0) * sd;
    let (chance_to_win, expected_loss) = if lower_is_better {
        (normal.cdf(-k), sd * normal.pdf(k) + mean * normal.cdf(k))
    } else {
        (normal.cdf(k), sd * normal.pdf(k) - mean * normal.cdf(-k))
    };
    Ok(LiftPosterior { prior, mean, sd, low: mean - half, high: mean + half, chance_to_win, expected_loss })
}

#[cfg(test)]
mod gaussian_tests {
    use super::*;
    use crate::stats::refs::*;

    /// The posterior's mean, sd, chance to win and expected loss match scipy's numerical
    /// integration of likelihood × prior (flat and N(0, 0.1²)).
    #[test]
    fn matches_scipy_integration() {
        let (pc, pt, n) = (0.1, 0.12, 1000.0);
        let (vc, vt) = (pc * (1.0 - pc) / n, pt * (1.0 - pt) / n);
        for (prior, want) in [(LiftPrior::Flat, GAUSS_FLAT), (LiftPrior::Normal { sd: 0.1 }, GAUSS_NORMAL_01)] {
            let p = gaussian_lift(pt, vt, pc, vc, prior, 0.05, false).unwrap();
            let got = [p.mean, p.sd, p.chance_to_win, p.expected_loss];
            for (g, w) in got.iter().zip(want) {
                assert!((g - w).abs() < 1e-9, "{prior:?}: {got:?} vs {want:?}");
            }
        }
        let lower = gaussian_lift(pt, vt, pc, vc, LiftPrior::Flat, 0.05, true).unwrap();
        assert!((lower.chance_to_win - (1.0 - GAUSS_FLAT[2])).abs() < 1e-9);
        assert!(gaussian_lift(0.0, 0.0, 0.0, 0.0, LiftPrior::Flat, 0.05, false).is_err());
        assert!(gaussian_lift(pt, vt, pc, vc, LiftPrior::Normal { sd: -1.0 }, 0.05, false).is_err());
    }
}
