//! The learner: statistics first. [`policy`] decides (Thompson sampling over send hours,
//! one-step cap moves on strong evidence, guardrail rollbacks, hard limits), [`proof`]
//! runs every proposal as a paired simulation it must win before it is applied,
//! [`adviser`] reads an LLM's proposals strictly, [`settings`] holds its thresholds. The `LearnerActor` runs it on the engine clock.

pub mod adviser;
pub mod policy;
pub mod proof;
pub mod settings;

pub use policy::{
    Action, Counts, Decision, Learner, Proposal, StrategyChange, describe_field, field_within_hard_limits,
    within_hard_limits,
};
pub use proof::{Goal, Proof};
pub use settings::{LearnerSettings, LearnerSettingsError};
