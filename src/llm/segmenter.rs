//! The LLM pass of a segmentation run: for the users the rules are unsure of, ask the model
//! once per distinct profile (deduplicated within the run, cached across runs by a hash of
//! the inputs with a TTL), with a limit on requests in flight and the client's budget. Every
//! user ends in a validated verdict or a counted fallback to the rules; a 401 stops asking
//! for the rest of the run instead of failing the same way ten thousand times.

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};

use futures::StreamExt;

use crate::domain::UserId;

use super::client::{CallError, LlmClient};
use super::prompt::{self, Aggregates};
use super::reply::{ReplyError, Verdict};

/// Where validated verdicts are kept between runs. The store implements it; the error is
/// the implementation's own, so this module does not depend on the store.
pub trait LlmCache {
    /// Why the cache could not be read or written (fatal to the run).
    type Error;
    /// The cached value for `key` if it has not expired at `now` (Unix seconds).
    fn cache_get(&self, key: &str, now: i64) -> Result<Option<String>, Self::Error>;
    /// Keeps `value` under `key` until `expires_at` (Unix seconds).
    fn cache_put(&self, key: &str, value: &str, expires_at: i64) -> Result<(), Self::Error>;
}

/// An in-memory cache (tests, and runs without a store).
#[derive(Debug, Default)]
pub struct MemoryLlmCache(std::sync::Mutex<HashMap<String, (String, i64)>>);

impl LlmCache for MemoryLlmCache {
    type Error = std::convert::Infallible;

    fn cache_get(&self, key: &str, now: i64) -> Result<Option<String>, Self::Error> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        Ok(map.get(key).filter(|(_, exp)| *exp > now).map(|(v, _)| v.clone()))
    }

    fn cache_put(&self, key: &str, value: &str, expires_at: i64) -> Result<(), Self::Error> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).insert(key.to_string(), (value.to_string(), expires_at));
        Ok(())
    }
}

/// Why the rules' answer stands for a user.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum Fallback {
    /// The call failed.
    #[error("{0}")]
    Call(CallError),
    /// The reply was not valid.
    #[error("invalid reply: {0}")]
    Reply(ReplyError),
    /// An earlier 401/403 stopped the LLM for this run.
    #[error("the LLM was switched off for this run after an authorisation failure")]
    Disabled,
}

impl Fallback {
    /// A short label for counters and logs.
    pub fn label(&self) -> &'static str {
        match self {
            Fallback::Call(e) => e.label(),
            Fallback::Reply(e) => e.label(),
            Fallback::Disabled => "disabled_after_unauthorized",
        }
    }
}

/// The outcome for one user.
#[derive(Clone, Debug, PartialEq)]
pub enum Resolution {
    /// The model's validated verdict.
    Accepted {
        /// What it said.
        verdict: Verdict,
        /// Whether it came from the cache.
        cached: bool,
    },
    /// The rules stand.
    Fallback(Fallback),
}

/// What a pass did, for the summary.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct SegmenterStats {
    /// Users sent to the LLM pass.
    pub users: u64,
    /// Distinct profiles among them.
    pub distinct_profiles: u64,
    /// Profiles answered from the cache.
    pub cache_hits: u64,
    /// Users given the model's verdict.
    pub accepted_users: u64,
    /// Users left with the rules, by reason.
    pub fallback_users: BTreeMap<&'static str, u64>,
    /// Requests made (retries count).
    pub calls: u64,
    /// Tokens spent.
    pub tokens: u64,
    /// Cache entries that could not be read back (asked again).
    pub unreadable_cache_entries: u64,
}

/// One user to ask about.
#[derive(Clone, Debug)]
pub struct Request {
    /// The user.
    pub user: UserId,
    /// Their aggregates.
    pub aggregates: Aggregates,
}

/// The LLM pass.
#[derive(Debug)]
pub struct LlmSegmenter {
    client: LlmClient,
    salt: String,
}

impl LlmSegmenter {
    /// A pass through `client`; `salt` makes the hashed ids in prompts this store's own.
    pub fn new(client: LlmClient, salt: String) -> LlmSegmenter {
        LlmSegmenter { client, salt }
    }

    /// The client (its settings and what it has spent).
    pub fn client(&self) -> &LlmClient {
        &self.client
    }

    /// Resolves every request; `now` (Unix seconds, wall clock) dates cache entries;
    /// `progress` is called with the number of distinct profiles done.
    pub async fn resolve<C: LlmCache>(
        &self,
        requests: Vec<Request>,
        cache: &C,
        now: i64,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<(Vec<(UserId, Resolution)>, SegmenterStats), C::Error> {
        let model = &self.client.settings().model;
        let mut stats = SegmenterStats { users: requests.len() as u64, ..SegmenterStats::default() };
        // One question per distinct profile, asked in the order users first show it;
        // `slot[i]` is the distinct profile of request `i`.
        let mut slot: Vec<usize> = Vec::with_capacity(requests.len());
        let mut index_of: HashMap<String, usize> = HashMap::new();
        let mut distinct: Vec<(String, &Request)> = Vec::new();
        for r in &requests {
            let key = r.aggregates.cache_key(model);
            let next = distinct.len();
            let i = *index_of.entry(key.clone()).or_insert(next);
            if i == next {
                distinct.push((key, r));
            }
            slot.push(i);
        }
        stats.distinct_profiles = distinct.len() as u64;
        let system = prompt::system_message();
        let disabled = Cell::new(false);
        let ttl = i64::try_from(self.client.settings().cache_ttl.as_secs()).unwrap_or(i64::MAX);
        let total = distinct.len() as u64;
        let mut outcomes: Vec<Option<(Resolution, bool)>> = vec![None; distinct.len()];
        let mut done = 0u64;
        let mut jobs = futures::stream::iter(distinct.iter().enumerate())
            .map(|(i, (key, r))| {
                let (system, disabled) = (&system, &disabled);
                async move { (i, self.resolve_one(key, r, system, disabled, cache, now, ttl).await) }
            })
            .buffer_unordered(self.client.settings().concurrency);
        while let Some((i, outcome)) = jobs.next().await {
            outcomes[i] = Some(outcome?);
            done += 1;
            progress(done, total);
        }
        drop(jobs);
        for (resolution, unreadable) in outcomes.iter().flatten() {
            if matches!(resolution, Resolution::Accepted { cached: true, .. }) {
                stats.cache_hits += 1;
            }
            stats.unreadable_cache_entries += u64::from(*unreadable);
        }
        let mut out = Vec::with_capacity(requests.len());
        for (r, &i) in requests.iter().zip(&slot) {
            let (resolution, _) = outcomes[i].clone().expect("every distinct profile resolved");
            match &resolution {
                Resolution::Accepted { .. } => stats.accepted_users += 1,
                Resolution::Fallback(f) => *stats.fallback_users.entry(f.label()).or_default() += 1,
            }
            out.push((r.user, resolution));
        }
        stats.calls = self.client.calls_used();
        stats.tokens = self.client.tokens_used();
        Ok((out, stats))
    }

    /// One distinct profile: the cache, else the model. Returns the resolution and whether
    /// an unreadable cache entry was met.
    #[allow(clippy::too_many_arguments)]
    async fn resolve_one<C: LlmCache>(
        &self,
        key: &str,
        request: &Request,
        system: &str,
        disabled: &Cell<bool>,
        cache: &C,
        now: i64,
        ttl: i64,
    ) -> Result<(Resolution, bool), C::Error> {
        let mut unreadable = false;
        if let Some(value) = cache.cache_get(key, now)? {
            match serde_json::from_str::<Verdict>(&value) {
                Ok(verdict) => return Ok((Resolution::Accepted { verdict, cached: true }, false)),
                Err(e) => {
                    tracing::warn!(key, error = %e, "unreadable LLM cache entry; asking again");
                    unreadable = true;
                }
            }
        }
        if disabled.get() {
            return Ok((Resolution::Fallback(Fallback::Disabled), unreadable));
        }
        let user_ref = prompt::hashed_user_id(request.user, &self.salt);
        let message = prompt::user_message(&user_ref, &request.aggregates);
        let completion = match self.client.complete_json(system, &message).await {
            Ok(c) => c,
            Err(e) => {
                if matches!(e, CallError::Unauthorized(_)) && !disabled.replace(true) {
                    tracing::warn!("the LLM endpoint refused the key ({e}); rules only for the rest of this run");
                }
                return Ok((Resolution::Fallback(Fallback::Call(e)), unreadable));
            }
        };
        match Verdict::parse(&completion.content) {
            Ok(verdict) => {
                let value = serde_json::to_string(&verdict).expect("a verdict serialises");
                cache.cache_put(key, &value, now.saturating_add(ttl))?;
                Ok((Resolution::Accepted { verdict, cached: false }, unreadable))
            }
            Err(e) => Ok((Resolution::Fallback(Fallback::Reply(e)), unreadable)),
        }
    }
}
