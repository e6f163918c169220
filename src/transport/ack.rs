//! Waiting for the engine to take an inbound event in: a live source (the HTTP API, a
//! Telegram update) hands an event to the engine's sink and answers its caller only once
//! the engine acknowledged it (stored what it changed) or rejected it. [`AckWaiters`] holds
//! those waits by the event's source id, registered before the push (a sink may answer
//! before `push` returns), and forgets each wait when it ends — answered, timed out, or
//! abandoned by a caller that hung up — without removing a later wait for the same id.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::oneshot;

use crate::domain::InboundEvent;

use super::InboundSink;

/// How the engine answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ack {
    /// Taken in (what it changed is stored).
    Taken,
    /// Refused: for a user the engine does not hold.
    Rejected,
    /// No answer within the wait (or a later push of the same source id took the wait over).
    TimedOut,
}

/// The waits of one source (see the module doc).
#[derive(Debug, Default)]
pub struct AckWaiters(Mutex<HashMap<u64, oneshot::Sender<bool>>>);

impl AckWaiters {
    /// No waits.
    pub fn new() -> AckWaiters {
        AckWaiters::default()
    }

    /// Pushes `event` (whose `source` is `source`) into `sink` and waits up to `timeout`
    /// for the engine's answer.
    pub async fn push_and_wait(&self, sink: &InboundSink, event: InboundEvent, source: u64, timeout: Duration) -> Ack {
        let event = InboundEvent { source: Some(source), ..event };
        let (tx, rx) = oneshot::channel();
        // Registered before the push: the sink may answer before `push` returns.
        self.lock().insert(source, tx);
        let mut wait = Wait { waiters: self, source, rx };
        sink.push(event);
        match tokio::time::timeout(timeout, &mut wait.rx).await {
            Ok(Ok(true)) => Ack::Taken,
            Ok(Ok(false)) => Ack::Rejected,
            // The sender was dropped: a later push of the same id took the wait over.
            Ok(Err(_)) | Err(_) => Ack::TimedOut,
        }
    }

    /// The engine answered `event`: taken in (`true`) or rejected. Nobody is told if its
    /// wait ended meanwhile.
    pub fn answer(&self, event: &InboundEvent, taken: bool) {
        let Some(source) = event.source else { return };
        if let Some(tx) = self.lock().remove(&source) {
            let _ = tx.send(taken);
        }
    }

    /// Waits not yet ended.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no wait is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, oneshot::Sender<bool>>> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Forgets a wait when it ends, answered or not (a caller that hung up included).
struct Wait<'a> {
    waiters: &'a AckWaiters,
    source: u64,
    rx: oneshot::Receiver<bool>,
}

impl Drop for Wait<'_> {
    fn drop(&mut self) {
        self.rx.close();
        let mut waiters = self.waiters.lock();
        // Ours only if closed: a later push of the same id may have put its own there.
        if waiters.get(&self.source).is_some_and(|tx| tx.is_closed()) {
            waiters.remove(&self.source);
        }
    }
}
