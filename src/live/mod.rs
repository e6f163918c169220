//! The live engine's own parts: its configuration file. The engine itself is
//! [`crate::engine`] — the same one `gavat simulate` runs — with a system (or scaled) clock,
//! a store on disk or in Redis, a store-backed cap ledger and a real transport.

pub mod config;
pub mod directory;
pub mod experiment;
pub mod group_file;
pub mod groups;
pub mod instance;
pub mod parts;
pub mod results;
pub mod serve;
pub mod strategy_watch;
pub mod telegram;
