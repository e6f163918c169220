//! The learner: statistics first. [`policy`] decides (Thompson sampling over send hours,
//! one-step cap moves on strong evidence, guardrail rollbacks, hard limits), [`settings`]
//! holds its thresholds. The `LearnerActor` runs it on the engine clock.

pub mod policy;
pub mod settings;

pub use policy::{Action, Counts, Decision, Learner, StrategyChange, within_hard_limits};
pub use settings::{LearnerSettings, LearnerSettingsError};
