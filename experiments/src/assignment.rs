//! Deterministic assignment of users to experiment arms by weighted rendezvous hashing: each
//! arm `i` draws `uᵢ = hash(salt, user, i)` in (0, 1) and scores `−ln(uᵢ) / wᵢ`; the lowest
//! score wins. That is an exponential race, so arm `i` wins with probability `wᵢ / Σw`, and
//! adding an arm at the end only ever moves users *to the new arm*, never between the
//! existing ones. The same salt and id give the same arm on any machine and version (the
//! hash is written out here, not taken from `std`).

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
    (mix(fnv1a(salt) ^ user.wrapping_add(0x9e37_79b9_7f4a_7c15)) >> 11) as f64 / (1u64 << 53) as f64
}

fn fnv1a(text: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The arm (index into `weights`) of `user` for an experiment salted with `salt`.
pub fn assign(salt: &str, user: u64, weights: &[f64]) -> Result<usize, AssignmentError> {
    if weights.is_empty() {
        return Err(AssignmentError::NoArms);
    }
    if let Some((arm, &weight)) = weights.iter().enumerate().find(|(_, w)| !w.is_finite() || **w < 0.0) {
        return Err(AssignmentError::BadWeight { arm, weight });
    }
    if weights.iter().all(|w| *w == 0.0) {
        return Err(AssignmentError::BadWeight { arm: 0, weight: 0.0 });
    }
    let base = mix(fnv1a(salt) ^ user.wrapping_add(0x9e37_79b9_7f4a_7c15));
    let mut best = (f64::INFINITY, 0usize);
    for (arm, &w) in weights.iter().enumerate() {
        if w == 0.0 {
            continue;
        }
        let h = mix(base ^ (arm as u64 + 1).wrapping_mul(0xd6e8_feb8_6659_fd93));
        // A uniform in (0, 1]: never zero, so the logarithm is finite.
        let u = ((h >> 11) + 1) as f64 / (1u64 << 53) as f64;
        let score = -u.ln() / w;
        if score < best.0 {
            best = (score, arm);
        }
    }
    Ok(best.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Arms of users 0..8 in experiment `exp-1` with weights 1:1:2, as first computed.
    const PINNED_ARMS: [usize; 8] = [2, 1, 0, 2, 1, 0, 2, 2];

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

    /// Adding an arm at the end moves users only to the new arm.
    #[test]
    fn adding_an_arm_moves_users_only_to_it() {
        let mut moved = 0;
        for user in 0..20_000u64 {
            let before = assign("exp-2", user, &[1.0, 1.0]).unwrap();
            let after = assign("exp-2", user, &[1.0, 1.0, 1.0]).unwrap();
            if after != before {
                assert_eq!(after, 2, "user {user} moved between existing arms");
                moved += 1;
            }
        }
        // About a third moves to the new arm.
        assert!((6_000..7_400).contains(&moved), "{moved}");
    }

    /// Known values, so that a change of the hash (which would move users between arms
    /// of running experiments) is noticed.
    #[test]
    fn pinned_values() {
        assert_eq!(unit_hash("salt", 7), 0.7277233590892629);
        let arms: Vec<usize> = (0..8).map(|u| assign("exp-1", u, &[1.0, 1.0, 2.0]).unwrap()).collect();
        assert_eq!(arms, PINNED_ARMS);
    }
}
