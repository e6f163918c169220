//! Experiment design and statistics for gavat. It knows nothing of the engine: the engine
//! asks it which arm a user belongs to and hands it per-user results.
//!
//! # Layout
//! - [`assignment`]: deterministic arm assignment by hash of `(salt, user id)`.
//!
//! Statistics (interval estimates, tests, power analysis) arrive with the experiments
//! issue.
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

pub mod assignment;
