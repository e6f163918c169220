//! Deterministic assignment of users to experiment arms: a hash of `(salt, user id)` mapped
//! onto the arms' cumulative weights. The same salt and id always give the same arm, on any
//! machine and any version (the hash is written out here, not taken from `std`).

/// Why arms could not be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AssignmentError {
    /// No arms at all.
    #[error("an experiment needs at least one arm")]
    NoArms,
    /// A weight is negative, not finite, or all are zero.
    #[error("arm weights must be finite, non-negative and not all zero (arm {arm}: {weight})")]
    BadWeight {
        /// Index of the offending arm.
        arm: usize,
        /// Its weight.
        weight: f64,
    },
}

/// A point in `[0, 1)` for `(salt, user)`: FNV-1a over the salt, mixed with the id by
/// SplitMix64's finaliser, top 53 bits as a fraction.
pub fn unit_hash(salt: &str, user: u64) -> f64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in salt.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let mut z = h ^ user.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// The arm (index into `weights`) of `user` for an experiment salted with `salt`.
pub fn assign(salt: &str, user: u64, weights: &[f64]) -> Result<usize, AssignmentError> {
    if weights.is_empty() {
        return Err(AssignmentError::NoArms);
    }
    if let Some((arm, &weight)) = weights.iter().enumerate().find(|(_, w)| !w.is_finite() || **w < 0.0) {
        return Err(AssignmentError::BadWeight { arm, weight });
    }
    let total: f64 = weights.iter().sum();
    if total <= 0.0 {
        return Err(AssignmentError::BadWeight { arm: 0, weight: 0.0 });
    }
    let point = unit_hash(salt, user) * total;
    let mut cumulative = 0.0;
    for (arm, w) in weights.iter().enumerate() {
        cumulative += w;
        if point < cumulative {
            return Ok(arm);
        }
    }
    Ok(weights.iter().rposition(|w| *w > 0.0).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Same input, same arm; and the split over many ids follows the weights (a chi-square
    /// goodness-of-fit statistic below the 99.9% critical value for 2 degrees of freedom,
    /// 13.82).
    #[test]
    fn deterministic_and_uniform() {
        let weights = [1.0, 1.0, 2.0];
        assert_eq!(assign("exp-1", 42, &weights), assign("exp-1", 42, &weights));
        let n = 100_000u64;
        let mut counts = [0f64; 3];
        for user in 0..n {
            counts[assign("exp-1", user, &weights).unwrap()] += 1.0;
        }
        let expected = [0.25, 0.25, 0.5].map(|p| p * n as f64);
        let chi2: f64 = counts.iter().zip(expected).map(|(o, e)| (o - e) * (o - e) / e).sum();
        assert!(chi2 < 13.82, "chi-square {chi2}, counts {counts:?}");
    }

    /// Bad weights are refused with the arm at fault.
    #[test]
    fn bad_weights() {
        assert_eq!(assign("s", 1, &[]), Err(AssignmentError::NoArms));
        assert_eq!(assign("s", 1, &[1.0, -1.0]), Err(AssignmentError::BadWeight { arm: 1, weight: -1.0 }));
        assert!(assign("s", 1, &[0.0, 0.0]).is_err());
    }

    /// Known values, so that a change of the hash (which would move users between arms
    /// of running experiments) is noticed.
    #[test]
    fn pinned_values() {
        assert_eq!(unit_hash("salt", 7), 0.7277233590892629);
        assert_eq!(assign("exp-1", 42, &[1.0, 1.0, 2.0]), Ok(0));
        assert_ne!(unit_hash("salt", 0), unit_hash("salt", 1));
    }
}
