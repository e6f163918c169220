//! Experiment design and statistics for gavat. It knows nothing of the engine: the engine
//! asks it which arm a user belongs to and hands it per-user results.
//!
//! # Layout
//! - [`design`]: experiment files (arms, holdout, metrics, guardrails, planned power).
//! - [`assignment`]: deterministic arm assignment by hash of `(salt, user id)`.
//! - [`stats`]: intervals, tests, Bayesian comparison, sequential test, power analysis.
//! - [`results`]: per-user results files (CSV), streamed.
//! - [`compare`]: arms against control from per-user rows: the comparison report.
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

pub mod assignment;
pub mod compare;
pub mod design;
pub mod results;
pub mod stats;
