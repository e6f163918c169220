//! Which users one `gavat run` instance serves (`--shard I/N`), and the nonce that keeps its
//! message ids apart from every other instance's and every earlier run's.

use std::fmt;
use std::hash::{BuildHasher, Hasher};

use crate::domain::UserId;

/// Share `index` of `count` (`0/1`: everyone).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Instance {
    /// Which share, `0..count`.
    pub index: u32,
    /// How many shares.
    pub count: u32,
}

impl Default for Instance {
    fn default() -> Instance {
        Instance { index: 0, count: 1 }
    }
}

impl Instance {
    /// Parses `I/N` (`0 <= I < N <= 1024`).
    pub fn parse(text: &str) -> Result<Instance, String> {
        let bad = || format!("`{text}` is not a share like 0/2 (I/N with 0 ≤ I < N ≤ 1024)");
        let (i, n) = text.split_once('/').ok_or_else(bad)?;
        let (index, count): (u32, u32) = (i.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
        if count == 0 || count > 1024 || index >= count {
            return Err(bad());
        }
        Ok(Instance { index, count })
    }

    /// Whether this instance serves `user`: a stable hash of the id (SplitMix64's
    /// finaliser), so every instance and every restart agrees without talking.
    pub fn owns(&self, user: UserId) -> bool {
        self.count <= 1 || share_of(user, self.count) == self.index
    }
}

/// The share `user` falls in, out of `count`.
pub fn share_of(user: UserId, count: u32) -> u32 {
    let mut z = user.0 ^ 0x5348_4152_4421;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z % u64::from(count.max(1))) as u32
}

impl fmt::Display for Instance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// A value no other process draws: the OS-seeded hasher keys of the standard library, the
/// process id, the wall clock's nanoseconds and the share. It goes into every message id
/// (see `EngineBuilder::run_nonce`), so a restarted engine, or a second instance started in
/// the same second, never reuses an id that the cap gate has already decided.
pub fn random_nonce(instance: Instance) -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    #[allow(clippy::disallowed_methods, reason = "entropy, not time: the nanoseconds only mix in")]
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    hasher.write_u128(nanos);
    hasher.write_u32(instance.index);
    hasher.write_u32(instance.count);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shares parse, partition the users, and nonsense is refused.
    #[test]
    fn shares_partition_the_users() {
        assert_eq!(Instance::parse("1/3"), Ok(Instance { index: 1, count: 3 }));
        for bad in ["3/3", "0/0", "1", "a/b", "-1/2", "0/2000"] {
            assert!(Instance::parse(bad).is_err(), "{bad}");
        }
        let shares: Vec<Instance> = (0..3).map(|index| Instance { index, count: 3 }).collect();
        let mut sizes = [0u32; 3];
        for id in 0..3_000 {
            let owners: Vec<&Instance> = shares.iter().filter(|s| s.owns(UserId(id))).collect();
            assert_eq!(owners.len(), 1, "user {id}");
            sizes[owners[0].index as usize] += 1;
        }
        assert!(sizes.iter().all(|n| (850..1150).contains(n)), "{sizes:?}");
        assert!(Instance::default().owns(UserId(12345)));
    }

    /// Two nonces drawn in a row differ.
    #[test]
    fn nonces_differ() {
        assert_ne!(random_nonce(Instance::default()), random_nonce(Instance::default()));
    }
}
