//! Holm's step-down correction for several comparisons (Holm 1979).

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
}
