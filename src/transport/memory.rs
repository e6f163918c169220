//! An in-memory transport for tests: records every message and answers with scripted
//! outcomes (by default, delivered).

use std::collections::VecDeque;
use std::sync::Mutex;

use crate::domain::{InboundEvent, OutboundMessage};

use super::{Delivered, InboundSink, InboundSource, SendFuture, Sender, TransportError};

/// Records sends; replays queued outcomes, then delivers everything.
#[derive(Debug, Default)]
pub struct MemoryTransport {
    state: Mutex<MemoryState>,
}

#[derive(Debug, Default)]
struct MemoryState {
    sent: Vec<OutboundMessage>,
    script: VecDeque<Result<Delivered, TransportError>>,
    sink: Option<InboundSink>,
    pending_inbound: Vec<InboundEvent>,
    acknowledged: Vec<InboundEvent>,
}

impl MemoryTransport {
    /// A transport that delivers everything.
    pub fn new() -> MemoryTransport {
        MemoryTransport::default()
    }

    /// Queues outcomes for the next sends, in order.
    pub fn script(&self, outcomes: impl IntoIterator<Item = Result<Delivered, TransportError>>) {
        self.lock().script.extend(outcomes);
    }

    /// Events to report as soon as the engine starts (dated events wait for their time).
    pub fn with_inbound(self, events: impl IntoIterator<Item = InboundEvent>) -> MemoryTransport {
        self.lock().pending_inbound.extend(events);
        self
    }

    /// Every message passed to `send`, in order (including those that failed).
    pub fn sent(&self) -> Vec<OutboundMessage> {
        self.lock().sent.clone()
    }

    /// Events the engine acknowledged.
    pub fn acknowledged(&self) -> Vec<InboundEvent> {
        self.lock().acknowledged.clone()
    }

    /// Injects an inbound event as if a user had done something.
    pub fn inject(&self, event: InboundEvent) {
        let sink = self.lock().sink.clone();
        if let Some(sink) = sink {
            sink.push(event);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl InboundSource for MemoryTransport {
    fn start(&self, sink: InboundSink) {
        let pending = {
            let mut state = self.lock();
            state.sink = Some(sink.clone());
            std::mem::take(&mut state.pending_inbound)
        };
        for event in pending {
            sink.push(event);
        }
    }

    fn acknowledge(&self, event: &InboundEvent) {
        self.lock().acknowledged.push(*event);
    }
}

impl Sender for MemoryTransport {
    fn send(&self, message: &OutboundMessage) -> SendFuture {
        let mut state = self.lock();
        state.sent.push(message.clone());
        let outcome = state.script.pop_front().unwrap_or(Ok(Delivered));
        Box::pin(std::future::ready(outcome))
    }
}
