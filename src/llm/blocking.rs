//! An LLM client for a caller that must wait for the answer where no I/O can run: the
//! engine's actors live on a single-threaded runtime whose clock is virtual and paused, so
//! the request runs on a runtime of its own (real clock, I/O enabled) while the caller's
//! thread waits. In a simulation this is the point: the virtual clock stands still while
//! the adviser thinks, so a run with the same seed and the same replies is the same run.

use super::client::{CallError, Completion, LlmClient, SetupError};
use super::settings::LlmSettings;

/// A client with its own runtime.
#[derive(Debug)]
pub struct BlockingLlm {
    client: LlmClient,
    runtime: Option<tokio::runtime::Runtime>,
}

impl BlockingLlm {
    /// A client for `settings`, with a runtime of its own for its requests.
    pub fn new(settings: LlmSettings) -> Result<BlockingLlm, SetupError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| SetupError::Http(e.to_string()))?;
        Ok(BlockingLlm { client: LlmClient::new(settings)?, runtime: Some(runtime) })
    }

    /// The client (its settings and what it has spent).
    pub fn client(&self) -> &LlmClient {
        &self.client
    }

    /// Asks for a JSON reply and waits for it (timeouts, retries and budget as
    /// [`LlmClient::complete_json`]).
    pub fn complete_json(&self, system: &str, user: &str) -> Result<Completion, CallError> {
        let Some(runtime) = self.runtime.as_ref() else {
            return Err(CallError::Connection("the client is shut down".into()));
        };
        // `block_on` may not run on a thread that drives a runtime: wait from a helper thread.
        std::thread::scope(|scope| {
            scope
                .spawn(|| runtime.block_on(self.client.complete_json(system, user)))
                .join()
                .unwrap_or_else(|_| Err(CallError::BadResponse("the request thread panicked".into())))
        })
    }
}

impl Drop for BlockingLlm {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which is not allowed inside another runtime's tasks.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
