//! gavat's integration tests: one binary, modules named by the behaviour they show.

mod adviser;
mod api;
mod bad_input;
mod cap_gate;
mod caps_from_events;
mod cli;
mod common;
mod crm;
mod determinism;
mod events_export;
mod experiments;
mod fake_openai;
mod import;
mod in_flight_sends;
mod learner;
mod live_experiment;
mod live_run;
mod llm;
mod redis_faults;
mod redis_ledger;
mod redis_server;
mod redis_store;
mod resume;
mod transport_outcomes;
mod users_join;
mod webhook;
