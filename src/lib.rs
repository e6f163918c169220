//! gavat decides whom to message, when, how often and with what — live over Telegram, or
//! on a virtual clock with thousands of synthetic users so that a strategy is tested
//! before it reaches a real person.
//!
//! # Layout
//! - [`domain`]: users, groups, segments, strategies, time, messages and events.
//! - [`zone`]: time zones (fixed offsets and IANA zones): local days and hours across DST.
//! - [`config`]: strategy files → a validated [`config::StrategyBook`].
//! - [`contacts`]: who users and groups are on Telegram (names, languages, chat ids).
//! - [`compose`]: the text of a message — templates per language, LLM personalisation
//!   within guardrails.
//! - [`policy`]: the pure decision rules — caps, cooldown, quiet hours, priority, planning.
//! - [`segmentation`]: rule-based segments with confidence.
//! - [`llm`]: an OpenAI-compatible model consulted where the rules are unsure.
//! - [`learner`]: the statistical strategy learner and its guardrails.
//! - [`clock`], [`transport`], [`store`], [`ledger`]: the seams; in-memory and simulated
//!   implementations. [`ledger`] is the cap gate every send reserves through.
//! - [`redis_link`]: the link to Redis of the Redis ledger and store (private runtime,
//!   fail-closed health).
//! - [`actors`]: user, segment, scheduler and learner actors (diagram in the module).
//! - [`audit`]: an independent re-check of every send against its caps.
//! - [`inspect`]: one user analysed and their next message previewed (CLI and dashboard).
//! - [`import`]: users from a CRM export (CSV, JSON lines) into the store, all or nothing.
//! - [`decision_log`]: daily decision logs under `logs/`.
//! - [`run_logs`]: what a simulation writes there (learner decisions, run analytics).
//! - [`output`]: output paths checked before a run, files replaced atomically after it.
//! - [`engine`]: wiring and running.
//! - [`live`]: the live engine's configuration (`gavat.toml`), its parts and its run.
//! - [`api`]: the live engine's HTTP API (events, users, health) and its Prometheus metrics.
//! - [`html`]: HTML shared by the dashboard and the report files: escaping, layout, charts.
//! - [`dashboard`]: the web dashboard, served by `gavat run` and `gavat dashboard`.
//! - [`simulation`]: a synthetic population on the virtual clock, and its report.
//! - [`faults`]: seeded faults at the seams of a simulated run (`gavat simulate --faults`).
//! - [`experiment`]: experiment arms on the simulator, split or paired, and their comparison.
//! - [`cli`]: the `gavat` command line.
//!
//! Dependencies point one way: this crate uses `gavat-sim` and `gavat-experiments`; they
//! never use it.
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

pub mod actors;
pub mod api;
pub mod audit;
pub mod cli;
pub mod clock;
pub mod compose;
pub mod config;
pub mod contacts;
pub mod dashboard;
pub mod decision_log;
pub mod domain;
pub mod engine;
pub mod experiment;
pub mod faults;
pub mod html;
pub mod import;
pub mod inspect;
pub mod learner;
pub mod learner_effect;
pub mod ledger;
pub mod live;
pub mod llm;
pub mod output;
pub mod policy;
pub mod redis_link;
pub mod run_logs;
pub mod segmentation;
pub mod simulation;
pub mod store;
pub mod telemetry;
pub mod transport;
pub mod zone;
