//! One chat completion against an OpenAI-compatible endpoint, through `async-openai`: a
//! timeout on every attempt, retries with exponential backoff after a timeout, a 429, a
//! 5xx or a lost connection (a 429's `Retry-After` is honoured when it is longer), and a
//! per-run budget of calls and tokens that every attempt draws on. `async-openai`'s own
//! retry layer is replaced by a plain transport so that every HTTP request is one we
//! counted. Errors are typed so callers can count them; none carries the key.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::middleware::{HttpRequestFactory, ReqwestService};
use async_openai::types::chat::{
    ChatCompletionRequestSystemMessageArgs, ChatCompletionRequestUserMessageArgs, CreateChatCompletionRequestArgs,
    FinishReason, ResponseFormat,
};

use super::settings::LlmSettings;

/// Why a completion did not come back usable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// No answer within the timeout (after all retries).
    #[error("timed out")]
    Timeout,
    /// 429 Too Many Requests (after all retries), with the server's `Retry-After`.
    #[error("rate limited (HTTP 429)")]
    RateLimited(Option<Duration>),
    /// A 5xx (after all retries).
    #[error("server error (HTTP {0})")]
    Server(u16),
    /// 401 or 403: the key is wrong; asking again will not help.
    #[error("not authorised (HTTP {0}): check OPENAI_API_KEY")]
    Unauthorized(u16),
    /// Another 4xx, e.g. an unknown model.
    #[error("request rejected (HTTP {status}): {message}")]
    Rejected {
        /// The status.
        status: u16,
        /// The server's message, shortened.
        message: String,
    },
    /// No connection (after all retries).
    #[error("connection failed: {0}")]
    Connection(String),
    /// The body was not a chat completion.
    #[error("not a chat completion: {0}")]
    BadResponse(String),
    /// The model refused or its content was filtered.
    #[error("the model refused: {0}")]
    Refused(String),
    /// The per-run budget of calls or tokens is spent.
    #[error("the run's LLM budget is spent")]
    BudgetExhausted,
}

impl CallError {
    /// Whether another attempt may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, CallError::Timeout | CallError::RateLimited(_) | CallError::Server(_) | CallError::Connection(_))
    }

    /// A short label for counters and logs.
    pub fn label(&self) -> &'static str {
        match self {
            CallError::Timeout => "timeout",
            CallError::RateLimited(_) => "rate_limited",
            CallError::Server(_) => "server_error",
            CallError::Unauthorized(_) => "unauthorized",
            CallError::Rejected { .. } => "rejected",
            CallError::Connection(_) => "connection",
            CallError::BadResponse(_) => "bad_response",
            CallError::Refused(_) => "refused",
            CallError::BudgetExhausted => "budget_exhausted",
        }
    }
}

/// Why no client could be made.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// `OPENAI_API_KEY` is not set.
    #[error("OPENAI_API_KEY is not set")]
    NoKey,
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Http(String),
}

/// A completion's text and what it cost.
#[derive(Clone, Debug, PartialEq)]
pub struct Completion {
    /// The model's message.
    pub content: String,
    /// Tokens used, as the server reports them (estimated at 4 characters a token when it
    /// does not).
    pub tokens: u64,
}

/// What a run has spent.
#[derive(Debug, Default)]
struct Budget {
    calls: AtomicU64,
    tokens: AtomicU64,
}

/// The client, shared by every request of a run.
#[derive(Clone, Debug)]
pub struct LlmClient {
    client: Client<OpenAIConfig>,
    settings: Arc<LlmSettings>,
    budget: Arc<Budget>,
}

impl LlmClient {
    /// A client for `settings`.
    pub fn new(settings: LlmSettings) -> Result<LlmClient, SetupError> {
        let key = settings.api_key.clone().ok_or(SetupError::NoKey)?;
        // rustls needs one process-wide crypto provider; a second install is a no-op error.
        let _ = rustls::crypto::ring::default_provider().install_default();
        // The whole attempt is bounded by `settings.timeout` in `attempt`; here only connecting.
        let http = reqwest::Client::builder()
            .connect_timeout(settings.timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|e| SetupError::Http(shorten(&e.to_string())))?;
        let config =
            OpenAIConfig::new().with_api_base(settings.base_url.trim_end_matches('/')).with_api_key(key.expose());
        Ok(LlmClient {
            client: Client::with_config(config).with_http_service(PlainTransport(ReqwestService::new(http))),
            settings: Arc::new(settings),
            budget: Arc::new(Budget::default()),
        })
    }

    /// The settings in use.
    pub fn settings(&self) -> &LlmSettings {
        &self.settings
    }

    /// Calls made so far (retries count).
    pub fn calls_used(&self) -> u64 {
        self.budget.calls.load(Ordering::Relaxed)
    }

    /// Tokens used so far.
    pub fn tokens_used(&self) -> u64 {
        self.budget.tokens.load(Ordering::Relaxed)
    }

    /// Asks for a JSON reply to `system` + `user`, retrying what may pass on a second try.
    pub async fn complete_json(&self, system: &str, user: &str) -> Result<Completion, CallError> {
        let mut attempt = 0u32;
        loop {
            match self.attempt(system, user).await {
                Err(e) if e.is_retryable() && attempt < self.settings.max_retries => {
                    tracing::debug!(error = %e, attempt, "LLM call failed; retrying");
                    let mut wait = self.settings.backoff.saturating_mul(1 << attempt.min(16));
                    if let CallError::RateLimited(Some(asked)) = e {
                        // The server knows best, within reason: at most a minute.
                        wait = wait.max(asked.min(Duration::from_secs(60)));
                    }
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    fn reserve_call(&self) -> Result<(), CallError> {
        let s = &self.settings;
        if self.budget.tokens.load(Ordering::Relaxed) >= s.max_tokens {
            return Err(CallError::BudgetExhausted);
        }
        self.budget
            .calls
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| (n < s.max_calls).then_some(n + 1))
            .map(|_| ())
            .map_err(|_| CallError::BudgetExhausted)
    }

    async fn attempt(&self, system: &str, user: &str) -> Result<Completion, CallError> {
        self.reserve_call()?;
        let request = CreateChatCompletionRequestArgs::default()
            .model(self.settings.model.clone())
            .messages([
                ChatCompletionRequestSystemMessageArgs::default()
                    .content(system)
                    .build()
                    .map_err(|e| CallError::BadResponse(e.to_string()))?
                    .into(),
                ChatCompletionRequestUserMessageArgs::default()
                    .content(user)
                    .build()
                    .map_err(|e| CallError::BadResponse(e.to_string()))?
                    .into(),
            ])
            .temperature(0.0)
            .max_completion_tokens(self.settings.max_completion_tokens)
            .response_format(ResponseFormat::JsonObject)
            .build()
            .map_err(|e| CallError::BadResponse(e.to_string()))?;
        let chat = self.client.chat();
        let response = match tokio::time::timeout(self.settings.timeout, chat.create(request)).await {
            Err(_) => return Err(CallError::Timeout),
            Ok(Err(e)) => return Err(classify(e)),
            Ok(Ok(r)) => r,
        };
        let tokens = response.usage.as_ref().map(|u| u64::from(u.total_tokens)).unwrap_or_else(|| {
            let chars = system.len()
                + user.len()
                + response.choices.first().map_or(0, |c| c.message.content.as_ref().map_or(0, String::len));
            (chars / 4) as u64
        });
        self.budget.tokens.fetch_add(tokens, Ordering::Relaxed);
        let Some(choice) = response.choices.into_iter().next() else {
            return Err(CallError::BadResponse("no choices".into()));
        };
        if let Some(refusal) = choice.message.refusal.filter(|r| !r.trim().is_empty()) {
            return Err(CallError::Refused(shorten(&refusal)));
        }
        if choice.finish_reason == Some(FinishReason::ContentFilter) {
            return Err(CallError::Refused("content filtered".into()));
        }
        // A reply cut at the token limit is never used, even when what is left happens to
        // parse: the model did not finish what it meant to say (RELIABILITY.md row 30).
        if choice.finish_reason == Some(FinishReason::Length) {
            return Err(CallError::BadResponse("cut off at the token limit (finish_reason length)".into()));
        }
        match choice.message.content {
            Some(content) if !content.trim().is_empty() => Ok(Completion { content, tokens }),
            _ => Err(CallError::Refused("empty reply".into())),
        }
    }
}

/// A 429 seen by [`PlainTransport`], with its `Retry-After`.
#[derive(Debug, thiserror::Error)]
#[error("HTTP 429")]
struct TooManyRequests {
    retry_after: Option<Duration>,
}

/// `async-openai`'s plain reqwest service, without its built-in retries, turning a 429 into
/// an error that keeps the `Retry-After` header (which the crate's error type drops).
#[derive(Clone, Debug)]
struct PlainTransport(ReqwestService);

impl tower::Service<HttpRequestFactory> for PlainTransport {
    type Response = reqwest::Response;
    type Error = OpenAIError;
    type Future = std::pin::Pin<Box<dyn Future<Output = Result<reqwest::Response, OpenAIError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), OpenAIError>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: HttpRequestFactory) -> Self::Future {
        let sent = self.0.call(request);
        Box::pin(async move {
            let response = sent.await?;
            if response.status() == reqwest::StatusCode::TOO_MANY_REQUESTS {
                let retry_after = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<f64>().ok())
                    .filter(|secs| secs.is_finite() && *secs >= 0.0)
                    .map(Duration::from_secs_f64);
                return Err(OpenAIError::Boxed(Box::new(TooManyRequests { retry_after })));
            }
            Ok(response)
        })
    }
}

fn classify(error: OpenAIError) -> CallError {
    match error {
        OpenAIError::Reqwest(e) if e.is_timeout() => CallError::Timeout,
        OpenAIError::Reqwest(e) => match e.status() {
            Some(status) => status_error(status.as_u16(), &e.to_string()),
            None => CallError::Connection(shorten(&e.to_string())),
        },
        OpenAIError::ApiError(r) => status_error(r.status_code.as_u16(), &r.api_error.message),
        OpenAIError::Boxed(e) => match e.downcast::<TooManyRequests>() {
            Ok(too_many) => CallError::RateLimited(too_many.retry_after),
            Err(other) => CallError::BadResponse(shorten(&other.to_string())),
        },
        OpenAIError::JSONDeserialize(e, _) => CallError::BadResponse(shorten(&e.to_string())),
        other => CallError::BadResponse(shorten(&other.to_string())),
    }
}

fn status_error(status: u16, message: &str) -> CallError {
    match status {
        429 => CallError::RateLimited(None),
        401 | 403 => CallError::Unauthorized(status),
        500..=599 => CallError::Server(status),
        _ => CallError::Rejected { status, message: shorten(message) },
    }
}

/// At most 160 characters on one line: server messages go into logs.
pub(crate) fn shorten(text: &str) -> String {
    one_line(text, 160)
}

/// `text` on one line (control characters, newlines included, become spaces), trimmed, at
/// most `max_chars` characters (then ending in "…"): for whatever a server or a model wrote
/// that goes into logs and audit entries.
pub(crate) fn one_line(text: &str, max_chars: usize) -> String {
    let flat: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let flat = flat.trim();
    if flat.chars().count() > max_chars {
        format!("{}…", flat.chars().take(max_chars).collect::<String>())
    } else {
        flat.to_string()
    }
}
