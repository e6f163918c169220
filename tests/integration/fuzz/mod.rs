//! Property tests over every parser where input enters gavat (RELIABILITY.md rows 28, 29,
//! 30 and 50): each takes a valid document, applies seeded structure-aware mutations
//! (truncation, byte flips, a BOM, CRLF, invalid UTF-8, a 10 MB line, duplicated lines,
//! hostile values — NaN, negative, huge numbers, unknown time zones —, dropped cells and
//! unknown keys) and checks that the parser never panics and that every rejection names
//! where it is (the file and line, or the field, as the format has them). The imports run
//! against a real SQLite store and check that a refused file changes nothing in it.
//!
//! `cargo-fuzz` needs nightly, so these run on stable through `proptest` in the normal test
//! run. The number of cases per parser comes from `GAVAT_FUZZ_CASES` (default
//! [`DEFAULT_CASES`], a few seconds for the whole module); a dedicated run sets it to
//! 1,000,000. Each test emits a `RowReport` with the mutations applied by kind and the
//! figures `panics` and `rejections without location`.
//!
//! # Layout
//! - `mutate`: the mutations and the proptest runner that applies them.
//! - `imports`: users CSV and JSON lines, groups CSV (row 28), results CSV.
//! - `toml_files`: strategies, segmentation rules, live config, scenario, experiment (row 29).
//! - `llm_replies`: segmentation, adviser and personalisation replies (row 30).
//! - `telegram_updates`: Telegram update JSON.
//! - `api_payloads`: the HTTP API's bodies over a real socket (row 50) and its Host,
//!   token and GET checks (row 34).

pub(crate) mod api_payloads;
mod imports;
mod llm_replies;
mod mutate;
mod telegram_updates;
mod toml_files;
