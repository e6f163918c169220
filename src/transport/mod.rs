//! The transport seam, in two halves: a [`Sender`] of outbound messages and an
//! [`InboundSource`] of what users do back. Implementations: [`MemoryTransport`] (records
//! sends, replays scripted outcomes; for tests), [`SimTransport`] (synthetic users reacting
//! on the virtual clock), [`DryRunSender`] (`gavat run`'s default: prints and appends
//! every message to an outbox) and [`WebhookSender`] (signed JSON POSTs to a URL; a sender
//! only) and [`TelegramSender`] (the Bot API's `sendMessage`, within Telegram's limits; a
//! sender only, for now).

mod ack;
mod dry_run;
mod http;
mod memory;
mod sim;
mod sim_telegram;
pub mod telegram;
mod webhook;
pub mod wire;

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::domain::{InboundEvent, OutboundMessage};

pub use ack::{Ack, AckWaiters};
pub use dry_run::{DryRunSender, OutboxError, Silence};
pub use memory::MemoryTransport;
pub use sim::SimTransport;
pub use sim_telegram::{SimTelegram, TelegramStats};
pub use telegram::TelegramSender;
pub use webhook::{DEFAULT_RETRY_AFTER_SECS, IDEMPOTENCY_HEADER, SIGNATURE_HEADER, WebhookSecret, WebhookSender};

/// Why a transport cannot be set up: bad configuration, fatal before anything is sent.
/// Never holds a secret's value.
#[derive(Debug, thiserror::Error)]
pub enum TransportConfigError {
    /// The environment variable that should hold the signing secret is not set.
    #[error("environment variable {name} is not set: it must hold the webhook's signing secret")]
    MissingSecret {
        /// The variable's name.
        name: String,
    },
    /// It is set but blank.
    #[error("environment variable {name} is blank: it must hold the webhook's signing secret")]
    EmptySecret {
        /// The variable's name.
        name: String,
    },
    /// It is set but not valid Unicode.
    #[error("environment variable {name} is not valid Unicode")]
    SecretNotUnicode {
        /// The variable's name.
        name: String,
    },
    /// The environment variable that should hold a bot's token is not set.
    #[error("environment variable {name} is not set: it must hold a bot token")]
    MissingToken {
        /// The variable's name.
        name: String,
    },
    /// The variable holds no usable token (its value is never shown).
    #[error("environment variable {name} {why}")]
    BadToken {
        /// The variable's name.
        name: String,
        /// What is wrong, without the value.
        why: String,
    },
    /// The URL cannot be used (its path and query, which may hold a token, are not shown).
    #[error("webhook URL: {why}")]
    BadUrl {
        /// What is wrong.
        why: String,
    },
    /// Another setting is out of range.
    #[error("{field}: {why}")]
    Invalid {
        /// The setting.
        field: &'static str,
        /// What is wrong.
        why: String,
    },
    /// The HTTP client cannot be built (TLS set-up).
    #[error("the HTTP client cannot be built: {why}")]
    Client {
        /// Why.
        why: String,
    },
}

/// How a send ended when it did not end in delivery. Each variant's doc says what the
/// engine does with it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// The platform asked us to slow down (Telegram's 429). Not sent; the engine tries again
    /// no earlier than `retry_after_secs` later, re-checking every cap then.
    #[error("rate limited: retry after {retry_after_secs} s")]
    RateLimited {
        /// Seconds to wait, as the platform said.
        retry_after_secs: u32,
    },
    /// The user blocked the bot (Telegram's 403). Not sent; treated as an opt-out: final.
    #[error("blocked by the user")]
    Blocked,
    /// Failed before the platform processed it (connection refused, a 5xx that guarantees
    /// no side effect). Provably not sent: safe to retry after a backoff, caps re-checked.
    #[error("transient failure, not sent: {reason}")]
    Transient {
        /// What went wrong (never contains a secret).
        reason: String,
    },
    /// The request may or may not have been delivered (a timeout after sending). Never
    /// resent automatically; counted against the caps as if delivered.
    #[error("outcome unknown, may have been delivered: {reason}")]
    Unknown {
        /// What went wrong (never contains a secret).
        reason: String,
    },
    /// Will not succeed by retrying (chat not found, a malformed request). Not sent; the
    /// engine stops messaging this recipient in this run.
    #[error("fatal: {reason}")]
    Fatal {
        /// What went wrong (never contains a secret).
        reason: String,
    },
}

impl TransportError {
    /// Whether a message with this outcome must count against the caps.
    pub fn counts_against_caps(&self) -> bool {
        matches!(self, TransportError::Unknown { .. })
    }

    /// Which kind of failure, without its details.
    pub fn kind(&self) -> FailureKind {
        match self {
            TransportError::RateLimited { .. } => FailureKind::RateLimited,
            TransportError::Blocked => FailureKind::Blocked,
            TransportError::Transient { .. } => FailureKind::Transient,
            TransportError::Unknown { .. } => FailureKind::Unknown,
            TransportError::Fatal { .. } => FailureKind::Fatal,
        }
    }
}

/// The kind of a [`TransportError`], as reports count it. The variants are declared in the
/// alphabetical order of their names, so a map keyed by kind lists them as by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// [`TransportError::Blocked`].
    Blocked,
    /// [`TransportError::Fatal`].
    Fatal,
    /// [`TransportError::RateLimited`].
    RateLimited,
    /// [`TransportError::Transient`].
    Transient,
    /// [`TransportError::Unknown`].
    Unknown,
}

impl FailureKind {
    /// The name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Blocked => "blocked",
            FailureKind::Fatal => "fatal",
            FailureKind::RateLimited => "rate_limited",
            FailureKind::Transient => "transient",
            FailureKind::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for FailureKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A successful send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivered;

/// What [`Sender::send`] returns. In-memory and simulated transports return futures
/// that are ready at once; the engine then continues without yielding.
pub type SendFuture = Pin<Box<dyn Future<Output = Result<Delivered, TransportError>> + Send>>;

/// Where inbound events go: the engine passes one to [`InboundSource::start`].
#[derive(Clone)]
pub struct InboundSink(Arc<dyn Fn(InboundEvent) + Send + Sync>);

impl InboundSink {
    /// A sink calling `f` for every event.
    pub fn new(f: impl Fn(InboundEvent) + Send + Sync + 'static) -> InboundSink {
        InboundSink(Arc::new(f))
    }

    /// Hands one event to the engine. Events dated in the future are held by the scheduler
    /// until their time (a simulated reply arrives after its delay).
    pub fn push(&self, event: InboundEvent) {
        (self.0)(event)
    }
}

impl Debug for InboundSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InboundSink")
    }
}

/// Sends outbound messages. A call may take 50–500 ms or never answer: the engine bounds
/// it with its own send timeout (an unknown outcome) and never waits for it in a handler.
pub trait Sender: Send + Sync + Debug {
    /// Sends one message. The message's `at` is the engine's current time.
    fn send(&self, message: &OutboundMessage) -> SendFuture;
}

/// Reports what users do — replies, conversions, opt-outs, activity — as inbound events,
/// each with the source's own id when it has one (for de-duplication).
pub trait InboundSource: Send + Sync + Debug {
    /// Starts reporting inbound events into `sink`.
    fn start(&self, sink: InboundSink);
    /// The engine has taken `event` in. A live source advances past it (the Bot API
    /// offset); the simulated world draws the user's next activity.
    fn acknowledge(&self, event: &InboundEvent);
    /// The engine could not take `event` in and never will as it is (it is for a user the
    /// engine does not hold — one who has not joined yet, or another instance's): the
    /// source may tell whoever sent it. Called from inside the sink: it must not block.
    fn reject(&self, event: &InboundEvent) {
        let _ = event;
    }
    /// Whether `acknowledge` must wait until what the event changed is in the store: yes
    /// for a live source (an update acknowledged before it is stored is lost in a crash),
    /// no for the simulated world (it has nothing to lose, and its next event must follow at
    /// once to keep each user's story in order).
    fn acknowledge_after_persist(&self) -> bool {
        true
    }
}

/// Both halves in one value (the simulated world, Telegram, test transports).
pub trait Transport: Sender + InboundSource {}

impl<T: Sender + InboundSource + ?Sized> Transport for T {}
