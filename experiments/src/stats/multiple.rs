//! Corrections for several comparisons: Holm's step-down (family-wise error rate, Holm 1979)
//! and Benjamini–Hochberg's step-up (false discovery rate, Benjamini & Hochberg 1995).

use serde::{Deserialize, Serialize};

/// How a family of p-values is adjusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Adjustment {
    /// Holm's step-down: P(any false rejection) ≤ α.
    Holm,
    /// Benjamini–Hochberg: E[false rejections / rejections] ≤ α (independent or positively
    /// dependent tests).
    BenjaminiHochberg,
}

impl Adjustment {
    /// Adjusted p-values, in the order given.
    pub fn adjust(self, p_values: &[f64]) -> Vec<f64> {
        match self {
            Adjustment::Holm => holm(p_values),
            Adjustment::BenjaminiHochberg => benjamini_hochberg(p_values),
        }
    }

    /// What the adjustment controls, for reports.
    pub fn describe(self) -> &'static str {
        match self {
            Adjustment::Holm => "Holm step-down: the chance of any false positive in the family is at most alpha",
            Adjustment::BenjaminiHochberg => {
                "Benjamini–Hochberg: the expected share of false positives among the significant results is at most alpha"
            }
        }
    }

    /// The name used in files and flags.
    pub fn as_str(self) -> &'static str {
        match self {
            Adjustment::Holm => "holm",
            Adjustment::BenjaminiHochberg => "benjamini_hochberg",
        }
    }
}

/// Holm-adjusted p-values, in the order given: sort ascending, multiply the i-th smallest by
/// (m − i), take the running maximum, cap at 1.
pub fn holm(p_values: &[f64]) -> Vec<f64> {
    let m = p_values.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| p_values[a].total_cmp(&p_values[b]));
    let mut adjusted = vec![0.0; m];
    let mut running = 0.0f64;
    for (rank, &i) in order.iter().enumerate() {
        running = running.max(((m - rank) as f64 * p_values[i]).min(1.0));
        adjusted[i] = running;
    }
    adjusted
}

/// Benjamini–Hochberg-adjusted p-values, in the order given: sort descending, multiply the
/// p-value of rank k (1-based, ascending) by m / k, take the running minimum from the
/// largest down, cap at 1.
pub fn benjamini_hochberg(p_values: &[f64]) -> Vec<f64> {
    let m = p_values.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| p_values[b].total_cmp(&p_values[a]));
    let mut adjusted = vec![0.0; m];
    let mut running = 1.0f64;
    for (i, &index) in order.iter().enumerate() {
        let rank = (m - i) as f64;
        running = running.min(p_values[index] * m as f64 / rank);
        adjusted[index] = running;
    }
    adjusted
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::refs::*;

    /// Matches statsmodels' `multipletests(method="holm")`.
    #[test]
    fn holm_matches_statsmodels() {
        let adj = holm(&[0.01, 0.04, 0.03, 0.005]);
        for (got, want) in adj.iter().zip([HOLM_ADJ_0, HOLM_ADJ_1, HOLM_ADJ_2, HOLM_ADJ_3]) {
            assert!((got - want).abs() < 1e-12, "{adj:?}");
        }
        assert!(holm(&[]).is_empty());
    }

    /// Matches statsmodels' `multipletests(method="fdr_bh")`, ties and all.
    #[test]
    fn benjamini_hochberg_matches_statsmodels() {
        let adj = benjamini_hochberg(&[0.01, 0.04, 0.03, 0.005, 0.04, 0.9]);
        for (got, want) in adj.iter().zip(BH_ADJ) {
            assert!((got - want).abs() < 1e-12, "{adj:?}");
        }
        assert!(benjamini_hochberg(&[]).is_empty());
        assert_eq!(Adjustment::BenjaminiHochberg.adjust(&[0.5]), vec![0.5]);
    }
}
