//! The experiment in force in a live engine (`experiment` in `gavat.toml`, or `gavat run
//! --experiment FILE`): the file read and checked exactly as `gavat experiment run` reads
//! it, its arms made concrete on the strategies in force ([`crate::experiment::arm_setup`]:
//! the holdout, if any, last, with the silenced strategies), and every user — loaded at the
//! start or joining while the engine runs — assigned by the same hash as a simulation
//! ([`ArmAssignment::arm_of`]). The arm is a function of `(salt, user id)` alone, so a
//! restart, a second instance, and `gavat experiment export` all find the same arm.

use std::path::Path;
use std::sync::Arc;

use gavat_experiments::design::{DesignError, Experiment};

use crate::config::{ConfigError, StrategyBook};
use crate::domain::UserId;
use crate::engine::{ArmOfJoining, Arms};
use crate::experiment::{ConcreteArms, arm_setup, assignment};
use crate::simulation::ArmAssignment;
use crate::store::UserState;

/// Why the experiment file cannot be put in force. Both are bad input, fatal before
/// anything is sent; each names the file, the line and the field.
#[derive(Debug, thiserror::Error)]
pub enum LiveExperimentError {
    /// The file is not a valid experiment.
    #[error(transparent)]
    Design(#[from] DesignError),
    /// An arm's strategy overrides do not apply to the strategies in force.
    #[error(transparent)]
    Arms(#[from] ConfigError),
}

/// An experiment made ready for a live engine.
#[derive(Debug, Clone)]
pub struct LiveExperiment {
    /// The experiment as written.
    pub design: Experiment,
    /// The file it came from.
    pub origin: String,
    /// Its arms on the strategies in force, the holdout last.
    pub arms: ConcreteArms,
    /// The arms the learner re-plans (those with `learner = true`; the holdout never).
    pub learning: Vec<bool>,
    assignment: ArmAssignment,
}

impl LiveExperiment {
    /// Reads `path` and applies its arms' overrides to `base`.
    pub fn load(path: &Path, base: &StrategyBook) -> Result<LiveExperiment, LiveExperimentError> {
        let design = Experiment::from_path(path)?;
        let origin = path.display().to_string();
        let arms = arm_setup(&design, base, &origin)?;
        let learning = design.arms.iter().map(|a| a.learner).collect();
        let assignment = assignment(&design);
        Ok(LiveExperiment { design, origin, arms, learning, assignment })
    }

    /// Whether any arm asks for the learner.
    pub fn learns(&self) -> bool {
        self.learning.iter().any(|l| *l)
    }

    /// The arm of `user` (index into [`ConcreteArms::names`]).
    pub fn arm_of(&self, user: UserId) -> u16 {
        self.assignment.arm_of(user)
    }

    /// The engine's arms for `users` (in the order the engine is given them), with the same
    /// assignment for users who join.
    pub fn arms_for(&self, users: &[UserState]) -> Arms {
        let assignment = self.assignment.clone();
        Arms {
            names: self.arms.names.clone(),
            books: self.arms.books.clone(),
            of_user: users.iter().map(|u| self.arm_of(u.profile.id)).collect(),
            learning: self.learning.clone(),
            of_joining: Some(ArmOfJoining::new(move |user| assignment.arm_of(user))),
        }
    }

    /// Each arm's name and how many of `users` it got, in arm order.
    pub fn counts(&self, users: &[UserState]) -> Vec<(Arc<str>, usize)> {
        let mut counts = vec![0usize; self.arms.names.len()];
        for u in users {
            if let Some(n) = counts.get_mut(usize::from(self.arm_of(u.profile.id))) {
                *n += 1;
            }
        }
        self.arms.names.iter().cloned().zip(counts).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEND_HOURS: &str = include_str!("../../experiments/send_hours.toml");

    /// The holdout is the last arm, with the silenced strategies, and a user's arm is the
    /// hash's, the same for the users present and for one who joins.
    #[test]
    fn the_holdout_is_last_and_arms_come_from_the_hash() -> Result<(), Box<dyn std::error::Error>> {
        let dir = std::env::temp_dir().join(format!("gavat-live-exp-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("e.toml");
        std::fs::write(&path, SEND_HOURS)?;
        let exp = LiveExperiment::load(&path, &StrategyBook::defaults())?;
        std::fs::remove_dir_all(&dir)?;
        assert_eq!(exp.arms.names.last().map(|n| &**n), Some(crate::experiment::HOLDOUT));
        assert_eq!(exp.arms.names.len(), exp.design.arms.len() + 1);
        let weights = exp.design.assignment_weights();
        for id in 0..200u64 {
            let expected = gavat_experiments::assignment::assign(&exp.design.salt, id, &weights)?;
            assert_eq!(usize::from(exp.arm_of(UserId(id))), expected);
        }
        let users: Vec<UserState> = (0..50u64)
            .map(|id| UserState {
                profile: crate::domain::UserProfile {
                    id: UserId(id),
                    joined_at: crate::domain::Timestamp(0),
                    zone: crate::domain::Zone::UTC,
                    activity: crate::domain::ActivitySummary::default(),
                    bots_followed: 1,
                    purchases: 0,
                    responses: crate::domain::ResponseHistory::default(),
                },
                caps: Default::default(),
            })
            .collect();
        let arms = exp.arms_for(&users);
        let joining = arms.of_joining.as_ref().ok_or("an assignment for newcomers")?;
        for (u, arm) in users.iter().zip(&arms.of_user) {
            assert_eq!(*arm, joining.arm_of(u.profile.id));
        }
        assert_eq!(exp.counts(&users).iter().map(|(_, n)| n).sum::<usize>(), 50);
        Ok(())
    }
}
