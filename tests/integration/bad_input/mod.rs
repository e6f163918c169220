//! The bad-input corpus: configs, CSVs, flags and stores that a hostile or careless user
//! gives gavat, each with the error it must produce. Nothing here may panic, hang, write a
//! half-finished file or be silently accepted.

mod configs;
mod experiments;
mod outputs;
mod reports;
