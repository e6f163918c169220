//! The `--llm-*` flags shared by every command that may consult an OpenAI-compatible model.
//! The key is read from `OPENAI_API_KEY` only: a flag would put it in shell history and
//! in `ps` output.

use std::time::Duration;

use clap::Args;

use crate::llm::settings::DEFAULT_MAX_COMPLETION_TOKENS;
use crate::llm::{ApiKey, LlmSettings};

use super::CliError;

/// Completion tokens an adviser's reply may use.
const ADVISER_MAX_COMPLETION_TOKENS: u32 = 1_500;

/// How to reach the model: shared by `gavat segment` and `gavat simulate --llm-adviser`.
#[derive(Debug, Args, Clone)]
pub struct LlmConnectionArgs {
    /// Base URL of the OpenAI-compatible API (a local llama.cpp, vLLM or Ollama server works:
    /// http://127.0.0.1:8080/v1). The key is read from OPENAI_API_KEY.
    #[arg(long, env = "OPENAI_BASE_URL", default_value = "https://api.openai.com/v1", value_name = "URL")]
    pub llm_base_url: String,
    /// Model name.
    #[arg(long, env = "GAVAT_LLM_MODEL", default_value = "gpt-4o-mini", value_name = "NAME")]
    pub llm_model: String,
    /// Timeout of one request, milliseconds.
    #[arg(long, default_value_t = 20_000, value_name = "MS")]
    pub llm_timeout_ms: u64,
    /// Retries after a timeout, a 429, a 5xx or a lost connection.
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub llm_retries: u32,
    /// First wait before a retry, milliseconds; doubled on each further retry.
    #[arg(long, default_value_t = 500, value_name = "MS")]
    pub llm_backoff_ms: u64,
    /// Budget of requests per run (retries count); past it gavat decides without the LLM.
    #[arg(long, default_value_t = 1_000, value_name = "N")]
    pub llm_max_calls: u64,
    /// Budget of tokens per run, as the server reports them.
    #[arg(long, default_value_t = 500_000, value_name = "N")]
    pub llm_max_tokens: u64,
}

impl LlmConnectionArgs {
    /// Settings with these flags and the segmentation fields at `segmentation`'s values;
    /// validated.
    fn settings_with(&self, threshold: f32, concurrency: usize, cache_ttl_hours: u64) -> Result<LlmSettings, CliError> {
        let settings = LlmSettings {
            base_url: self.llm_base_url.clone(),
            model: self.llm_model.clone(),
            api_key: ApiKey::from_env(),
            threshold,
            timeout: Duration::from_millis(self.llm_timeout_ms),
            max_retries: self.llm_retries,
            backoff: Duration::from_millis(self.llm_backoff_ms),
            concurrency,
            max_calls: self.llm_max_calls,
            max_tokens: self.llm_max_tokens,
            max_completion_tokens: DEFAULT_MAX_COMPLETION_TOKENS,
            cache_ttl: Duration::from_secs(cache_ttl_hours.saturating_mul(3600)),
        };
        settings.validate().map_err(CliError::usage)?;
        Ok(settings)
    }

    /// Settings for one request at a time (the learner's adviser); an error if
    /// OPENAI_API_KEY is not set, since the adviser was asked for explicitly.
    pub fn adviser_settings(&self) -> Result<LlmSettings, CliError> {
        let mut settings = self.settings_with(LlmSettings::defaults().threshold, 1, 0)?;
        // Up to 16 proposals with reasons need more room than a segmentation verdict.
        settings.max_completion_tokens = ADVISER_MAX_COMPLETION_TOKENS;
        if settings.api_key.is_none() {
            return Err(CliError::usage(anyhow::anyhow!("--llm-adviser needs OPENAI_API_KEY in the environment")));
        }
        Ok(settings)
    }
}

/// How `gavat segment` consults the model.
#[derive(Debug, Args, Clone)]
pub struct LlmArgs {
    /// Never ask the LLM, even with OPENAI_API_KEY set; without a key the rules decide alone.
    #[arg(long)]
    pub no_llm: bool,
    /// Endpoint, model, timeouts and budget.
    #[command(flatten)]
    pub connection: LlmConnectionArgs,
    /// Ask the LLM only about users whose best rule confidence is below this.
    #[arg(long, default_value_t = 0.6, value_name = "CONFIDENCE")]
    pub llm_threshold: f32,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub llm_concurrency: usize,
    /// How long an answer is reused for the same profile, hours.
    #[arg(long, default_value_t = 168, value_name = "HOURS")]
    pub llm_cache_ttl_hours: u64,
}

impl LlmArgs {
    /// Validated settings, or why the LLM is off (`Err(reason)` is not an error: the rules
    /// decide alone and the command says so once).
    pub fn settings(&self) -> Result<Result<LlmSettings, &'static str>, CliError> {
        let settings =
            self.connection.settings_with(self.llm_threshold, self.llm_concurrency, self.llm_cache_ttl_hours)?;
        Ok(if self.no_llm {
            Err("--no-llm")
        } else if settings.api_key.is_none() {
            Err("OPENAI_API_KEY is not set")
        } else {
            Ok(settings)
        })
    }
}
