//! Chi-square tests: independence of arm and outcome across several arms, and goodness of
//! fit of the arms' sizes to their weights (sample-ratio mismatch).

use serde::Serialize;

use super::distributions::chi2_sf;
use super::{StatsError, domain};

/// A chi-square statistic with its p-value.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ChiSquare {
    /// Σ (O − E)² / E.
    pub statistic: f64,
    /// Degrees of freedom.
    pub df: f64,
    /// Upper-tail p-value.
    pub p_value: f64,
}

/// Pearson's chi-square test of independence for arms × {success, failure}, without
/// continuity correction: H₀ all arms share one rate.
pub fn chi_square_independence(successes: &[u64], totals: &[u64]) -> Result<ChiSquare, StatsError> {
    if successes.len() != totals.len() || successes.len() < 2 {
        return Err(domain("arms", successes.len() as f64, "needs two or more arms with a total each"));
    }
    if let Some((s, t)) = successes.iter().zip(totals).find(|(s, t)| s > t || **t == 0) {
        return Err(domain(
            "successes",
            *s as f64,
            if *t == 0 { "an arm has no users" } else { "exceed the arm's total" },
        ));
    }
    let n: f64 = totals.iter().sum::<u64>() as f64;
    let s_all: f64 = successes.iter().sum::<u64>() as f64;
    let f_all = n - s_all;
    let mut stat = 0.0;
    for (s, t) in successes.iter().zip(totals) {
        let t = *t as f64;
        for (observed, column) in [(*s as f64, s_all), (t - *s as f64, f_all)] {
            let expected = t * column / n;
            if expected > 0.0 {
                stat += (observed - expected).powi(2) / expected;
            }
        }
    }
    let df = (successes.len() - 1) as f64;
    Ok(ChiSquare { statistic: stat, df, p_value: chi2_sf(stat, df) })
}

/// Sample-ratio mismatch: chi-square goodness of fit of the arms' user counts to their
/// weights. A p-value below 0.001 means the split is broken and no comparison can be
/// trusted (Fabijan et al. 2019).
pub fn sample_ratio_mismatch(counts: &[u64], weights: &[f64]) -> Result<ChiSquare, StatsError> {
    if counts.len() != weights.len() || counts.len() < 2 {
        return Err(domain("arms", counts.len() as f64, "needs two or more arms with a weight each"));
    }
    let total_w: f64 = weights.iter().sum();
    if let Some(w) = weights.iter().find(|w| !w.is_finite() || **w <= 0.0) {
        return Err(domain("weight", *w, "must be positive"));
    }
    let n: f64 = counts.iter().sum::<u64>() as f64;
    let stat: f64 = counts
        .iter()
        .zip(weights)
        .map(|(c, w)| {
            let e = n * w / total_w;
            (*c as f64 - e).powi(2) / e
        })
        .sum();
    let df = (counts.len() - 1) as f64;
    Ok(ChiSquare { statistic: stat, df, p_value: chi2_sf(stat, df) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::refs::*;

    /// Matches scipy's `chi2_contingency(correction=False)`.
    #[test]
    fn independence_matches_scipy() {
        let c = chi_square_independence(&[90, 110, 130], &[1000, 1000, 1000]).unwrap();
        assert!((c.statistic - CHI2_STAT).abs() < 1e-9);
        assert!((c.p_value - CHI2_P).abs() < 1e-9);
        assert_eq!(c.df, CHI2_DOF);
    }

    /// Matches scipy's `chisquare` for two and three arms.
    #[test]
    fn srm_matches_scipy() {
        let c = sample_ratio_mismatch(&[5130, 4870], &[1.0, 1.0]).unwrap();
        assert!((c.statistic - SRM_STAT).abs() < 1e-9 && (c.p_value - SRM_P).abs() < 1e-9);
        let c = sample_ratio_mismatch(&[3400, 3250, 3350], &[1.0, 1.0, 1.0]).unwrap();
        assert!((c.statistic - SRM3_STAT).abs() < 1e-9 && (c.p_value - SRM3_P).abs() < 1e-9);
    }
}
