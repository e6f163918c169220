//! The cap ledger seam: the one place that says yes or no to a message before it goes out,
//! and remembers what it said. Every direct send and every group post member passes through
//! [`CapLedger::reserve`]; the transport is called only for a reserved message.
//!
//! A message moves `reserve → confirm | release`:
//! - [`CapLedger::reserve`] checks opt-out, quiet hours, the daily limit in the user's local
//!   day, the cooldown and the frequency (through [`policy::decide`](crate::policy::decide))
//!   against the user's counted sends *plus every reservation not yet settled*, and writes
//!   the reservation. It is idempotent by message id: a repeated call — a blind retry after a
//!   lost reply — returns the first decision and changes nothing.
//! - [`CapLedger::confirm`] settles a reserved message as sent: [`Counted::Delivered`] or
//!   [`Counted::Unknown`] (it may have gone out, so it counts against the caps, and is never
//!   resent).
//! - [`CapLedger::release`] settles a reserved message as provably not sent: it stops
//!   counting.
//!
//! A member's share of a group post is not a direct message: it is reserved with
//! [`CapLedger::reserve_share`] against the member's **exposure** — group posts seen in the
//! member's local day, over all groups — and never against the direct caps, which shares
//! neither check nor move. Confirm and release settle a share like any message; a confirmed
//! share counts in the exposure counter ([`LedgerUser::exposure`]). Which kind a message is
//! follows from its id ([`is_group_share`]): `reserve` of a share's id, or `reserve_share` of a
//! direct message's, is [`LedgerError::WrongKind`].
//!
//! The first settle wins; a later confirm or release of the same id changes nothing.
//! [`CapLedger::opt_out`] is final unless the user comes back on their own
//! ([`CapLedger::re_consent`]). [`CapLedger::load`] reads a user's state (an engine
//! starting on a store resumes every cap from it).
//!
//! Implementations: [`MemoryLedger`] (the reference, one per shard in simulation);
//! [`SqliteLedger`] (the live engine's default, in the CRM store's file) and [`RedisLedger`]
//! (Redis or Redis Cluster, for a live engine on several machines). Every one must pass
//! [`conformance::check`] unchanged; the durable ones also [`conformance::check_outbox`]
//! (`sending` and `recover`).

pub mod conformance;
mod memory;
mod redis;
mod sqlite;

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;

use crate::domain::{Caps, Timestamp, UserId, Zone};
use crate::policy::{CapState, SuppressReason};

pub use self::redis::RedisLedger;
pub use memory::{DEFAULT_RETENTION_SECS, MemoryLedger};
pub use sqlite::{BUSY_TIMEOUT, SqliteLedger};

/// Identifies one outbound message (a direct send, or one member's share of a group post)
/// across retries and restarts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MessageId(pub u64);

impl std::fmt::Display for MessageId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A request to reserve one message for one user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reservation {
    /// Which message (the idempotency key).
    pub message: MessageId,
    /// To whom.
    pub user: UserId,
    /// When it would go out (the engine's now).
    pub at: Timestamp,
    /// The caps in force for this user (the strictest over the segments held).
    pub caps: Caps,
    /// The user's time zone, for the local day and hour (a ledger that stores an offset
    /// stores the one in force at `at`).
    pub zone: Zone,
}

/// A request to reserve one member's share of a group post (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShareReservation {
    /// Which share ([`crate::actors::entity::group_share_id`]: top bit set).
    pub message: MessageId,
    /// The member.
    pub user: UserId,
    /// When the post would go out.
    pub at: Timestamp,
    /// The member's time zone: the local day the share counts in.
    pub zone: Zone,
    /// Group posts one member may see per local day, over all groups.
    pub exposure_limit: u32,
}

/// The ledger's answer to a reservation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reserved {
    /// Within every cap: the message may go out and counts from now on.
    Granted,
    /// A rule says no: the first rule that did.
    Denied(SuppressReason),
}

/// How a reserved message ended when it counts against the caps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counted {
    /// The platform accepted it.
    Delivered,
    /// It may have gone out (a timeout after the request was written): counted, never resent.
    Unknown,
}

/// A user's cap state as the ledger holds it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LedgerUser {
    /// Counted sends (confirmed), and the opt-out flag.
    pub counted: CapState,
    /// Direct reservations not yet settled, in the order they were granted: `(message, at)`.
    pub pending: Vec<(MessageId, Timestamp)>,
    /// Group posts counted as seen (confirmed shares).
    pub exposure: Exposure,
    /// Shares of group posts not yet settled, in grant order: `(message, at)`.
    pub pending_shares: Vec<(MessageId, Timestamp)>,
}

/// The group posts a member has seen, counted like [`CapState`]'s daily count: the local day
/// of the latest counted share and the shares counted on it (earlier days no longer matter:
/// the limit is per local day).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Exposure {
    /// The local day of the latest counted share (days since the epoch, local time).
    pub day: i64,
    /// Shares counted on `day`.
    pub seen: u32,
}

impl Exposure {
    /// Shares counted on local `day`.
    pub fn seen_on(&self, day: i64) -> u32 {
        if self.day == day { self.seen } else { 0 }
    }

    /// Counts one share on local `day` (a share of an earlier day than the latest counted
    /// one changes nothing: that day is over).
    pub fn record(&mut self, day: i64) {
        match day.cmp(&self.day) {
            std::cmp::Ordering::Equal => self.seen += 1,
            std::cmp::Ordering::Greater => *self = Exposure { day, seen: 1 },
            std::cmp::Ordering::Less if self.seen == 0 => *self = Exposure { day, seen: 1 },
            std::cmp::Ordering::Less => {}
        }
    }
}

impl LedgerUser {
    /// The state every new decision is taken against: counted sends plus pending
    /// reservations, which count until released.
    pub fn effective(&self, zone: Zone) -> CapState {
        let mut state = self.counted;
        for &(_, at) in &self.pending {
            state.record_send(at, zone);
        }
        state
    }

    /// Group posts the user has seen or may see (counted and pending shares) on the local
    /// day of `at`.
    pub fn exposure_on(&self, at: Timestamp, zone: Zone) -> u32 {
        let day = at.local_day(zone);
        let pending = self.pending_shares.iter().filter(|(_, t)| t.local_day(zone) == day).count() as u32;
        self.exposure.seen_on(day) + pending
    }

    /// The decision on a share: opted out (the engine does not count such a member, and
    /// does not hold the post for them), or the exposure limit of the member's local day.
    pub fn decide_share(&self, request: &ShareReservation) -> Reserved {
        if self.counted.opted_out {
            Reserved::Denied(SuppressReason::OptedOut)
        } else if self.exposure_on(request.at, request.zone) >= request.exposure_limit {
            Reserved::Denied(SuppressReason::ExposureLimit)
        } else {
            Reserved::Granted
        }
    }
}

/// Why a ledger call failed. Each variant says whether the caller may retry.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    /// The ledger cannot be reached or cannot answer now (a store down, a connection lost).
    /// Retryable; meanwhile nothing is sent — the engine fails closed.
    #[error("cap ledger unavailable: {reason}")]
    Unavailable {
        /// What went wrong (never contains a secret).
        reason: String,
    },
    /// The message id was reserved before for another user: a bug in the caller's ids.
    /// Fatal for that message; never retried.
    #[error("message {message} was reserved for user {first}, not user {now}")]
    Conflict {
        /// The message.
        message: MessageId,
        /// The user of the first reservation.
        first: UserId,
        /// The user of this call.
        now: UserId,
    },
    /// A direct reservation of a group share's id, or a share reservation of a direct
    /// message's id: a caller's bug. Fatal for that message; never retried.
    #[error("message {message} is reserved as the wrong kind (direct vs group share)")]
    WrongKind {
        /// The message.
        message: MessageId,
    },
    /// A confirm or release for a message that holds no reservation (never reserved, or
    /// denied). A caller's bug: the transport must only be called for a granted message.
    #[error("message {message} holds no reservation")]
    NotReserved {
        /// The message.
        message: MessageId,
    },
    /// [`CapLedger::sending`] refused a reserved message because its user opted out after
    /// the reservation was granted (on this engine or another one on the same store): the
    /// second opt-out check of RELIABILITY.md rule 7. Not a failure: the caller releases the
    /// reservation and records the message as suppressed for the opt-out; never retried.
    #[error("message {message} was not sent: its user opted out after it was reserved")]
    OptedOut {
        /// The message.
        message: MessageId,
    },
}

/// What a ledger call returns. The in-memory ledger's futures are ready at once; the engine
/// polls them once and continues without yielding.
pub type LedgerFuture<T> = Pin<Box<dyn Future<Output = Result<T, LedgerError>> + Send>>;

/// The cap gate. See the module documentation for the life of a message.
pub trait CapLedger: Send + Sync + Debug {
    /// Reserves a direct message if every cap allows it; idempotent by message id.
    fn reserve(&self, request: Reservation) -> LedgerFuture<Reserved>;
    /// Reserves a member's share of a group post if the member's exposure allows it;
    /// idempotent by message id. Direct caps are neither checked nor moved.
    fn reserve_share(&self, request: ShareReservation) -> LedgerFuture<Reserved>;
    /// Settles a reserved message as sent (delivered or unknown): it counts.
    fn confirm(&self, message: MessageId, counted: Counted) -> LedgerFuture<()>;
    /// Settles a reserved message as not sent: it stops counting.
    fn release(&self, message: MessageId) -> LedgerFuture<()>;
    /// Marks a user opted out, for good. Pending reservations stay until settled (a send
    /// already handed to the transport may still go out), but nothing new is granted.
    fn opt_out(&self, user: UserId) -> LedgerFuture<()>;
    /// Lifts a user's opt-out because the user came back on their own (Telegram's `/start`
    /// from them): the only way an opt-out ends. Callers: the engine's handling of
    /// [`InboundKind::Consent`](crate::domain::InboundKind::Consent) and nothing else —
    /// never the learner, an API call or a default. Counted sends and reservations are
    /// kept. The default answers `Unavailable`: a ledger must say how it does this.
    fn re_consent(&self, user: UserId) -> LedgerFuture<()> {
        let reason = format!("this cap ledger cannot record user {user}'s consent");
        Box::pin(futures::future::ready(Err(LedgerError::Unavailable { reason })))
    }
    /// A user's state (default for a user the ledger has never seen).
    fn load(&self, user: UserId) -> LedgerFuture<LedgerUser>;
    /// The outbox step between `reserve` and the transport call — RELIABILITY.md rule 7's
    /// `confirm(msg_id, lease)`: the message is about to be handed to the transport. It
    /// checks the user's opt-out once more, so that an opt-out recorded after the
    /// reservation (by this engine or another on the same store) stops the send:
    /// [`LedgerError::OptedOut`], the reservation left for the caller to release. A message
    /// that holds no reservation (never granted, already settled — which includes one that
    /// [`CapLedger::recover`] settled after its engine died, the lease this ledger knows)
    /// is [`LedgerError::NotReserved`]. A durable ledger persists the mark before the engine
    /// calls the transport, so that after a crash it knows which reservations may have gone
    /// out (see [`CapLedger::recover`]). Any error means the message must not be sent (the
    /// engine releases it). The default accepts everything: a ledger must override it to
    /// check the opt-out (every ledger of gavat does).
    fn sending(&self, message: MessageId) -> LedgerFuture<()> {
        let _ = message;
        Box::pin(futures::future::ready(Ok(())))
    }
    /// Settles what a crashed engine left unsettled, before a new engine starts on the
    /// ledger: a reservation marked [`CapLedger::sending`] may have gone out, so it is
    /// confirmed [`Counted::Unknown`] (counted, never resent); a direct message reserved but
    /// never handed to the transport is released (the engine plans it again, re-checking
    /// every cap then); a group post member's share — group posts are not marked sending —
    /// counts as unknown, so that a post that did go out is never undercounted.
    fn recover(&self) -> LedgerFuture<Recovery> {
        Box::pin(futures::future::ready(Ok(Recovery::default())))
    }
}

/// What [`CapLedger::recover`] settled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Reservations that were being sent (or were group shares): now counted as unknown.
    pub unknown: u64,
    /// Reservations never handed to the transport: released.
    pub released: u64,
}

/// The answer every ledger gives before deciding, when the id is of the other kind.
pub fn check_kind(message: MessageId, share: bool) -> Result<(), LedgerError> {
    if is_group_share(message) == share { Ok(()) } else { Err(LedgerError::WrongKind { message }) }
}

/// Whether a message id is a member's share of a group post (the top bit), not a direct
/// message (see [`crate::actors::entity::group_share_id`]).
pub fn is_group_share(message: MessageId) -> bool {
    message.0 >> 63 == 1
}
