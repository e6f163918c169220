//! What the LLM client needs: endpoint, model, key, timeouts, retries, concurrency and the
//! per-run budget. The key comes from `OPENAI_API_KEY` only (never a flag, never a file in
//! the repo) and is redacted from every `Debug` print.

use std::time::Duration;

/// The environment variable holding the API key.
pub const API_KEY_ENV: &str = "OPENAI_API_KEY";

/// Longest completion asked for by default, tokens: a verdict is a few dozen.
pub const DEFAULT_MAX_COMPLETION_TOKENS: u32 = 200;

/// An API key; printing it shows `***`.
#[derive(Clone)]
pub struct ApiKey(String);

impl ApiKey {
    /// Wraps a key.
    pub fn new(key: impl Into<String>) -> ApiKey {
        ApiKey(key.into())
    }

    /// The key from `OPENAI_API_KEY`, if set and not blank.
    pub fn from_env() -> Option<ApiKey> {
        std::env::var(API_KEY_ENV).ok().filter(|k| !k.trim().is_empty()).map(ApiKey)
    }

    /// The secret itself, for the HTTP header only.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

/// A setting that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// A value out of its range.
    #[error("{field}: {message}")]
    Invalid {
        /// The setting (flag name).
        field: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// Endpoint, model, limits and budget.
#[derive(Clone, Debug)]
pub struct LlmSettings {
    /// Base URL of the OpenAI-compatible API, e.g. `https://api.openai.com/v1` or
    /// `http://127.0.0.1:8080/v1` for a local server.
    pub base_url: String,
    /// Model name.
    pub model: String,
    /// The key; without one the LLM is not used.
    pub api_key: Option<ApiKey>,
    /// Users whose best rule confidence is below this are asked.
    pub threshold: f32,
    /// Per request.
    pub timeout: Duration,
    /// Retries after a timeout, a 429, a 5xx or a connection error.
    pub max_retries: u32,
    /// First backoff; doubled on each retry.
    pub backoff: Duration,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Requests allowed per run (retries count).
    pub max_calls: u64,
    /// Tokens allowed per run (as the server reports them).
    pub max_tokens: u64,
    /// Longest completion asked for, tokens.
    pub max_completion_tokens: u32,
    /// How long a cached answer stays valid.
    pub cache_ttl: Duration,
}

impl LlmSettings {
    /// Sane defaults for a hosted model; the key is read from the environment.
    pub fn defaults() -> LlmSettings {
        LlmSettings {
            base_url: "https://api.openai.com/v1".into(),
            model: "gpt-4o-mini".into(),
            api_key: ApiKey::from_env(),
            threshold: 0.6,
            timeout: Duration::from_secs(20),
            max_retries: 2,
            backoff: Duration::from_millis(500),
            concurrency: 4,
            max_calls: 1_000,
            max_tokens: 500_000,
            max_completion_tokens: DEFAULT_MAX_COMPLETION_TOKENS,
            cache_ttl: Duration::from_secs(7 * 86_400),
        }
    }

    /// Checks the values make sense.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let invalid = |field, message: String| Err(SettingsError::Invalid { field, message });
        if !(self.base_url.starts_with("http://") || self.base_url.starts_with("https://")) {
            return invalid("--llm-base-url", format!("{:?} is not an http(s) URL", self.base_url));
        }
        if self.model.trim().is_empty() {
            return invalid("--llm-model", "must not be empty".into());
        }
        if !(0.0..=1.0).contains(&self.threshold) {
            return invalid("--llm-threshold", format!("{} is not a confidence in [0, 1]", self.threshold));
        }
        if self.timeout.is_zero() {
            return invalid("--llm-timeout-ms", "must be positive".into());
        }
        if self.concurrency == 0 {
            return invalid("--llm-concurrency", "must be at least 1".into());
        }
        if self.max_completion_tokens == 0 {
            return invalid("max_completion_tokens", "must be positive".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_never_shows_in_debug_output() {
        let mut s = LlmSettings::defaults();
        s.api_key = Some(ApiKey::new("sk-very-secret"));
        let printed = format!("{s:?}");
        assert!(!printed.contains("sk-very-secret"), "{printed}");
        assert!(printed.contains("***"));
    }

    #[test]
    fn bad_values_name_their_flag() {
        let mut s = LlmSettings::defaults();
        s.threshold = 1.5;
        assert!(s.validate().unwrap_err().to_string().starts_with("--llm-threshold"));
        let mut s = LlmSettings::defaults();
        s.base_url = "ftp://x".into();
        assert!(s.validate().unwrap_err().to_string().starts_with("--llm-base-url"));
        let mut s = LlmSettings::defaults();
        s.concurrency = 0;
        assert!(s.validate().is_err());
        assert!(LlmSettings::defaults().validate().is_ok());
    }
}
