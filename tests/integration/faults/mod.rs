//! The live fault harness's rows (RELIABILITY.md §7.2): `gavat run` as a child process on
//! SQLite against the fake Bot API, each test injecting one row's fault, checking the
//! row's invariant with the checker (`gavat_faults`) against the fake's ground truth, and
//! emitting the row's `FAULT_ROW` report (a row whose fault never fired fails).
//!
//! Counts are scaled down to seconds per test; each report states them. `GAVAT_FAULT_SEED`
//! replays a row with another seed.

mod harness;
mod process;
mod self_test;
mod test_build;
mod transport;
