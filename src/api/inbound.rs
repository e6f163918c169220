//! [`ApiInbound`]: the HTTP API as the engine's [`InboundSource`]. It owns the engine's sink
//! (given by [`InboundSource::start`]), the requests waiting for their event's
//! acknowledgement, and the idempotency keys the API has seen.
//!
//! The life of an event: the handler [`claim`](ApiInbound::claim)s its idempotency key (if
//! any), then [`submit`](ApiInbound::submit)s the event with a source id — the key's hash, or
//! a fresh id — and waits. The engine takes the event in, stores it, and calls
//! [`InboundSource::acknowledge`], which wakes the waiting request by that source id. Only
//! then does the client get its answer; a client that got none may send the same key again,
//! and the engine's own de-duplication by source id keeps the event from counting twice even
//! when the first attempt did reach it.

use std::collections::VecDeque;
use std::collections::hash_map::{Entry, HashMap};
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::domain::{GroupId, InboundEvent, InboundKind, Timestamp, UserId};
use crate::transport::{Ack, AckWaiters, InboundSink, InboundSource};

/// How long a request waits for the engine's acknowledgement by default.
pub const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(10);

/// How many idempotency keys are remembered by default (the oldest is forgotten first).
pub const DEFAULT_KEY_CAPACITY: usize = 100_000;

/// Why an event could not be handed to the engine. Both are retryable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// The engine has not started taking events from the API yet (or has stopped).
    #[error("the engine is not taking events yet")]
    NotStarted,
    /// The engine did not acknowledge the event in time. It may still take it in: a retry
    /// with the same idempotency key is de-duplicated.
    #[error("the engine did not acknowledge the event within {0:?}")]
    Timeout(Duration),
    /// The engine does not hold the event's user (not joined yet, or another instance's):
    /// it was not taken in.
    #[error("the running engine does not hold this user (yet)")]
    UnknownUser,
}

/// What a request's event is, to tell a retry from a different request under the same key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventFingerprint {
    /// Who.
    pub user: UserId,
    /// What.
    pub kind: InboundKind,
    /// Through which group post.
    pub group: Option<GroupId>,
}

/// The answer to [`ApiInbound::claim`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyClaim {
    /// First time: the caller submits the event, then [`ApiInbound::settle_key`]s the claim.
    Fresh,
    /// The engine took in this key's event already, stamped `at`.
    Duplicate {
        /// The first event's time.
        at: Timestamp,
    },
    /// A request with this key is still waiting for the engine.
    InProgress,
    /// The key was used for a different event.
    Mismatch,
}

#[derive(Clone, Copy, Debug)]
enum KeyState {
    Waiting,
    Accepted(Timestamp),
}

/// The idempotency keys seen, by their hash, oldest first.
#[derive(Debug, Default)]
struct Keys {
    /// By source id: the event, where its request stands, and the claim's sequence number.
    by_source: HashMap<u64, (EventFingerprint, KeyState, u64)>,
    /// Claims in order, `(source, sequence)`, for forgetting the oldest. A key whose request
    /// failed is removed from `by_source` but stays listed here until it comes up (or the
    /// list is compacted); a position whose sequence no longer matches is stale and skipped.
    order: VecDeque<(u64, u64)>,
    next_sequence: u64,
}

/// The API's inbound source. Share one in an `Arc` between the [`ApiState`](super::ApiState)
/// and [`EngineBuilder::inbound_source`](crate::engine::EngineBuilder::inbound_source).
pub struct ApiInbound {
    /// The engine's sink, once started.
    sink: Mutex<Option<InboundSink>>,
    /// Requests waiting for their event's acknowledgement.
    waiters: AckWaiters,
    keys: Mutex<Keys>,
    key_capacity: usize,
    ack_timeout: Duration,
    /// Makes this process's ids for events without a key differ from every other's.
    nonce: u64,
    next_anonymous: AtomicU64,
}

impl std::fmt::Debug for ApiInbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiInbound")
            .field("started", &self.is_started())
            .field("waiting", &self.waiters.len())
            .field("keys", &lock(&self.keys).by_source.len())
            .field("ack_timeout", &self.ack_timeout)
            .finish_non_exhaustive()
    }
}

impl Default for ApiInbound {
    fn default() -> ApiInbound {
        ApiInbound::new()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update under these locks is a single insert or remove: a panic elsewhere cannot
    // leave them half done.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The source id of an idempotency key: the first 8 bytes of a SHA-256 of the key under a
/// fixed prefix, the same in every process (a retry after a restart maps to the same id).
pub fn source_of_key(key: &str) -> u64 {
    let digest = Sha256::new().chain_update(b"gavat-api/idempotency-key\0").chain_update(key.as_bytes()).finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// SplitMix64's finaliser: a bijection, so distinct inputs give distinct ids.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl ApiInbound {
    /// A source that waits [`DEFAULT_ACK_TIMEOUT`] for acknowledgements and remembers
    /// [`DEFAULT_KEY_CAPACITY`] keys.
    pub fn new() -> ApiInbound {
        // A per-process random value from the standard library's hasher seed: events without
        // an idempotency key need ids no other process uses. Live mode only; a simulation
        // never builds this source.
        let nonce = std::collections::hash_map::RandomState::new().build_hasher().finish();
        ApiInbound {
            sink: Mutex::new(None),
            waiters: AckWaiters::new(),
            keys: Mutex::new(Keys::default()),
            key_capacity: DEFAULT_KEY_CAPACITY,
            ack_timeout: DEFAULT_ACK_TIMEOUT,
            nonce,
            next_anonymous: AtomicU64::new(0),
        }
    }

    /// How long a request waits for the engine's acknowledgement before it answers 503.
    pub fn with_ack_timeout(mut self, timeout: Duration) -> ApiInbound {
        self.ack_timeout = timeout;
        self
    }

    /// How many idempotency keys are remembered (at least one).
    pub fn with_key_capacity(mut self, capacity: usize) -> ApiInbound {
        self.key_capacity = capacity.max(1);
        self
    }

    /// Whether the engine has started taking events.
    pub fn is_started(&self) -> bool {
        lock(&self.sink).is_some()
    }

    /// A source id for an event without an idempotency key, unique in this process.
    pub fn anonymous_source(&self) -> u64 {
        mix(self.nonce.wrapping_add(self.next_anonymous.fetch_add(1, Ordering::Relaxed)))
    }

    /// Claims an idempotency key (by its [`source_of_key`]) for an event.
    pub fn claim(&self, source: u64, event: EventFingerprint) -> KeyClaim {
        let mut guard = lock(&self.keys);
        let keys = &mut *guard;
        let sequence = keys.next_sequence;
        match keys.by_source.entry(source) {
            Entry::Occupied(seen) => {
                let (first, state, _) = *seen.get();
                return match state {
                    _ if first != event => KeyClaim::Mismatch,
                    KeyState::Waiting => KeyClaim::InProgress,
                    KeyState::Accepted(at) => KeyClaim::Duplicate { at },
                };
            }
            Entry::Vacant(slot) => {
                slot.insert((event, KeyState::Waiting, sequence));
            }
        }
        keys.next_sequence += 1;
        keys.order.push_back((source, sequence));
        while keys.by_source.len() > self.key_capacity {
            let Some((oldest, sequence)) = keys.order.pop_front() else { break };
            if keys.by_source.get(&oldest).is_some_and(|(_, _, s)| *s == sequence) {
                keys.by_source.remove(&oldest);
            }
        }
        // Stale positions pile up only as fast as failed requests do; drop them when they
        // outnumber the live keys.
        if keys.order.len() > 2 * keys.by_source.len() + 1_024 {
            let Keys { by_source, order, .. } = keys;
            order.retain(|(source, sequence)| by_source.get(source).is_some_and(|(_, _, s)| s == sequence));
        }
        KeyClaim::Fresh
    }

    /// Ends a [`KeyClaim::Fresh`] claim: `Some(at)` when the engine took the event in (later
    /// claims are duplicates), `None` when it did not (the key may be used again).
    pub fn settle_key(&self, source: u64, accepted: Option<Timestamp>) {
        let mut keys = lock(&self.keys);
        match accepted {
            Some(at) => {
                if let Some((_, state, _)) = keys.by_source.get_mut(&source) {
                    *state = KeyState::Accepted(at);
                }
            }
            None => {
                if matches!(keys.by_source.get(&source), Some((_, KeyState::Waiting, _))) {
                    keys.by_source.remove(&source);
                }
            }
        }
    }

    /// Hands `event` to the engine and waits until the engine acknowledges it (its
    /// `source` must be set: the acknowledgement is matched by it). A second submit of a
    /// source id still waiting replaces the first's wait.
    pub async fn submit(&self, event: InboundEvent) -> Result<(), SubmitError> {
        let source = event.source.unwrap_or_else(|| self.anonymous_source());
        let event = InboundEvent { source: Some(source), ..event };
        let sink = lock(&self.sink).clone().ok_or(SubmitError::NotStarted)?;
        match self.waiters.push_and_wait(&sink, event, source, self.ack_timeout).await {
            Ack::Taken => Ok(()),
            Ack::Rejected => Err(SubmitError::UnknownUser),
            Ack::TimedOut => Err(SubmitError::Timeout(self.ack_timeout)),
        }
    }
}

impl InboundSource for ApiInbound {
    fn start(&self, sink: InboundSink) {
        *lock(&self.sink) = Some(sink);
    }

    fn acknowledge(&self, event: &InboundEvent) {
        self.waiters.answer(event, true);
    }

    fn reject(&self, event: &InboundEvent) {
        self.waiters.answer(event, false);
    }

    fn acknowledge_after_persist(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn fingerprint(user: u64) -> EventFingerprint {
        EventFingerprint { user: UserId(user), kind: InboundKind::Reply, group: None }
    }

    fn event(source: u64) -> InboundEvent {
        InboundEvent { at: Timestamp(1), user: UserId(1), kind: InboundKind::Reply, group: None, source: Some(source) }
    }

    /// A key is fresh once, in progress while waiting, a duplicate once accepted, a mismatch
    /// for another event, and free again when its request failed.
    #[test]
    fn keys_move_from_fresh_to_duplicate() {
        let inbound = ApiInbound::new();
        let key = source_of_key("order-1");
        assert_eq!(inbound.claim(key, fingerprint(1)), KeyClaim::Fresh);
        assert_eq!(inbound.claim(key, fingerprint(1)), KeyClaim::InProgress);
        assert_eq!(inbound.claim(key, fingerprint(2)), KeyClaim::Mismatch);
        inbound.settle_key(key, None);
        assert_eq!(inbound.claim(key, fingerprint(1)), KeyClaim::Fresh, "a failed request frees its key");
        inbound.settle_key(key, Some(Timestamp(7)));
        assert_eq!(inbound.claim(key, fingerprint(1)), KeyClaim::Duplicate { at: Timestamp(7) });
    }

    /// Past the capacity the oldest key is forgotten first.
    #[test]
    fn the_oldest_key_is_forgotten_first() {
        let inbound = ApiInbound::new().with_key_capacity(2);
        for key in ["a", "b", "c"] {
            assert_eq!(inbound.claim(source_of_key(key), fingerprint(1)), KeyClaim::Fresh);
            inbound.settle_key(source_of_key(key), Some(Timestamp(1)));
        }
        assert_eq!(inbound.claim(source_of_key("a"), fingerprint(1)), KeyClaim::Fresh, "forgotten");
        assert!(matches!(inbound.claim(source_of_key("c"), fingerprint(1)), KeyClaim::Duplicate { .. }));
    }

    /// Key hashes are stable and distinct; ids without a key never repeat.
    #[test]
    fn source_ids_are_stable_and_distinct() {
        assert_eq!(source_of_key("k"), source_of_key("k"));
        assert_ne!(source_of_key("k"), source_of_key("K"));
        let inbound = ApiInbound::new();
        let ids: std::collections::HashSet<u64> = (0..1_000).map(|_| inbound.anonymous_source()).collect();
        assert_eq!(ids.len(), 1_000);
    }

    /// Before `start` an event is refused; after it, the submit answers when acknowledged
    /// (here at once, from inside the sink) and times out when never acknowledged.
    #[test]
    fn submit_waits_for_the_acknowledgement() -> Result<(), Box<dyn std::error::Error>> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build()?;
        runtime.block_on(async {
            let inbound = Arc::new(ApiInbound::new().with_ack_timeout(Duration::from_secs(10)));
            assert_eq!(inbound.submit(event(1)).await, Err(SubmitError::NotStarted));
            let acker = Arc::downgrade(&inbound);
            inbound.start(InboundSink::new(move |e| {
                let Some(inbound) = acker.upgrade() else { return };
                match e.source {
                    Some(2) => {}
                    // The engine does not hold the user: rejected at once, not left to time out.
                    Some(3) => inbound.reject(&e),
                    _ => inbound.acknowledge(&e),
                }
            }));
            assert_eq!(inbound.submit(event(1)).await, Ok(()));
            assert_eq!(inbound.submit(event(2)).await, Err(SubmitError::Timeout(Duration::from_secs(10))));
            assert_eq!(inbound.submit(event(3)).await, Err(SubmitError::UnknownUser));
            assert_eq!(inbound.waiters.len(), 0, "no wait is left behind");
            Ok(())
        })
    }
}
