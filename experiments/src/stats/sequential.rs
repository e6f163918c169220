//! An always-valid sequential test: the mixture sequential probability ratio test (mSPRT) of
//! Johari, Koomen, Pekelis & Walsh (2017), for a difference in means with a normal mixing
//! distribution. Its p-value may be watched after every user without inflating false
//! positives.

use serde::Serialize;

use super::proportions::Interval;
use super::{StatsError, domain};

/// The mixture likelihood ratio and the always-valid p-value at one look.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MsprtResult {
    /// Λₙ.
    pub lambda: f64,
    /// min(1, 1/Λₙ) at this look; the running minimum over looks is the always-valid p.
    pub p_value: f64,
}

/// Λₙ = √(2σ² / (2σ² + nτ²)) · exp(n²τ²d² / (4σ²(2σ² + nτ²))) for `n` users per arm, an
/// observed difference of means `d`, per-user variance `sigma2` and mixing variance `tau2`.
pub fn msprt_mean_difference(n: u64, d: f64, sigma2: f64, tau2: f64) -> Result<MsprtResult, StatsError> {
    if sigma2.is_nan() || sigma2 <= 0.0 {
        return Err(domain("sigma2", sigma2, "must be positive"));
    }
    if tau2.is_nan() || tau2 <= 0.0 {
        return Err(domain("tau2", tau2, "must be positive"));
    }
    let n = n as f64;
    let denom = 2.0 * sigma2 + n * tau2;
    let log_lambda = 0.5 * (2.0 * sigma2 / denom).ln() + n * n * tau2 * d * d / (4.0 * sigma2 * denom);
    let lambda = log_lambda.exp();
    Ok(MsprtResult { lambda, p_value: (1.0 / lambda).min(1.0) })
}

/// The half-width, in standard errors of the difference, of the normal-mixture confidence
/// sequence that inverts the mSPRT above (Robbins 1970; Howard, Ramdas, McAuliffe & Sekhon
/// 2021, "Time-uniform, nonparametric, nonasymptotic confidence sequences", normal mixture;
/// asymptotic in the sense of Waudby-Smith et al. 2023, "Time-uniform central limit theory"):
/// with the difference's variance 2σ²/n,
/// b² = (2σ² + nτ²)/(nτ²) · ( 2·ln(1/α) + ln((2σ² + nτ²)/(2σ²)) ).
/// The sequence d ± b·√(2σ²/n) covers the true difference at every n at once with
/// probability ≥ 1 − α, and excludes 0 exactly when the mSPRT p-value is ≤ α.
pub fn mixture_boundary(n: u64, sigma2: f64, tau2: f64, alpha: f64) -> Result<f64, StatsError> {
    super::proportions::check_alpha(alpha)?;
    if sigma2.is_nan() || sigma2 <= 0.0 {
        return Err(domain("sigma2", sigma2, "must be positive"));
    }
    if tau2.is_nan() || tau2 <= 0.0 {
        return Err(domain("tau2", tau2, "must be positive"));
    }
    if n == 0 {
        return Err(domain("n", 0.0, "needs at least one user per arm"));
    }
    let n = n as f64;
    let spread = 2.0 * sigma2 + n * tau2;
    Ok((spread / (n * tau2) * (2.0 * (1.0 / alpha).ln() + (spread / (2.0 * sigma2)).ln())).sqrt())
}

/// The confidence sequence for a difference of means `d` at this look: d ± b·√(2σ²/n).
pub fn confidence_sequence(n: u64, d: f64, sigma2: f64, tau2: f64, alpha: f64) -> Result<Interval, StatsError> {
    let half = mixture_boundary(n, sigma2, tau2, alpha)? * (2.0 * sigma2 / n as f64).sqrt();
    Ok(Interval { estimate: d, low: d - half, high: d + half })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::refs::*;

    /// Matches the formula evaluated in numpy.
    #[test]
    fn matches_reference() {
        let r = msprt_mean_difference(1000, 0.12, 1.0, 0.01).unwrap();
        assert!((r.lambda - MSPRT_LAMBDA_1000_012).abs() / MSPRT_LAMBDA_1000_012 < 1e-9);
        assert!((r.p_value - MSPRT_P_1000_012).abs() < 1e-12);
        assert_eq!(msprt_mean_difference(1000, 0.0, 1.0, 0.01).unwrap().p_value, 1.0);
    }

    /// The confidence sequence's half-width matches scipy's root of Λ(δ) = 1/α, and it
    /// excludes 0 exactly when the mSPRT p-value is at most α.
    #[test]
    fn confidence_sequence_inverts_the_msprt() {
        let cs = confidence_sequence(1000, 0.12, 1.0, 0.01, 0.05).unwrap();
        assert!((cs.high - cs.estimate - CS_HALF_1000).abs() < 1e-9, "{cs:?}");
        for d in [0.05, 0.1, 0.15, 0.2, 0.25, 0.3] {
            let cs = confidence_sequence(1000, d, 1.0, 0.01, 0.05).unwrap();
            let p = msprt_mean_difference(1000, d, 1.0, 0.01).unwrap().p_value;
            assert_eq!(cs.low > 0.0, p < 0.05, "d {d}: {cs:?}, p {p}");
        }
        assert!(confidence_sequence(0, 0.1, 1.0, 0.01, 0.05).is_err());
    }
}
