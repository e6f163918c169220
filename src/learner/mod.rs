//! The learner: statistics first. [`planner`] decides each look (Thompson sampling over
//! send hours, one-step cap moves on strong evidence, guardrail rollbacks, hard limits),
//! [`proof`] runs every proposal as a paired simulation it must win before it is applied,
//! [`adviser`] reads an LLM's proposals strictly, [`counts`] holds what it reads,
//! [`settings`] its thresholds. The `LearnerActor` runs it on the engine clock. (The
//! send rule is [`crate::policy`]; this module's result is a [`Look`], not a `Decision`.)
//!
//! Within the module dependencies point one way: `planner` → `adviser` → `proof` →
//! `counts`, `settings`.

pub mod adviser;
pub mod counts;
pub mod planner;
pub mod proof;
pub mod settings;

pub use counts::{Counts, HourTable};
pub use planner::{
    Action, Learner, Look, StrategyChange, describe_field, field_within_hard_limits, within_hard_limits,
};
pub use proof::{Goal, Proof, Proposal};
pub use settings::{LearnerSettings, LearnerSettingsError};
