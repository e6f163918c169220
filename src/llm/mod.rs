//! Asking an OpenAI-compatible model (OpenAI, or a local llama.cpp / vLLM / Ollama server)
//! about users the segmentation rules are unsure of. The model is an adviser: it sees
//! aggregates only, its reply is strict JSON checked against a schema, and any failure —
//! late, malformed, refused, over budget — falls back to the rules, counted and logged.
//!
//! - [`settings`]: endpoint, model, key (from the environment), limits and budget.
//! - [`blocking`]: the client for callers on the engine's paused virtual runtime.
//! - [`client`]: one chat completion with a timeout, retries and backoff.
//! - [`prompt`]: what the model is told about a user (aggregates, hashed id, fenced data).
//! - [`reply`]: the strict reply schema and its validation.
//! - [`segmenter`]: the concurrent, budgeted, cached pass over the unsure users.

pub mod blocking;
pub mod client;
pub mod prompt;
pub mod reply;
pub mod segmenter;
pub mod settings;

pub use blocking::BlockingLlm;
pub use client::{CallError, Completion, LlmClient, SetupError};
pub use prompt::{Aggregates, hashed_user_id};
pub use reply::{ReplyError, Verdict};
pub use segmenter::{Fallback, LlmCache, LlmSegmenter, MemoryLlmCache, Request, Resolution, SegmenterStats};
pub use settings::{ApiKey, LlmSettings, SettingsError};
