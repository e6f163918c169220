//! An always-valid sequential test: the mixture sequential probability ratio test (mSPRT) of
//! Johari, Koomen, Pekelis & Walsh (2017), for a difference in means with a normal mixing
//! distribution. Its p-value may be watched after every user without inflating false
//! positives.

use serde::Serialize;

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
}
