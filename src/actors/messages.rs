//! What passes between the scheduler, the shards and the statistics actors besides the
//! shard protocol (in [`super::shard`]): outcomes, answers to group posts, the inbound
//! buffer, snapshots. Commands are imperative, facts past tense (`OutcomesRecorded`),
//! replies nouns (`UserSnapshot`).

use std::sync::Arc;

use actix::prelude::*;

use crate::domain::Segment;
use crate::domain::{Caps, InboundEvent, SegmentSet, Timestamp, UserId, Zone};
use crate::policy::{CapState, SuppressReason};
use crate::transport::FailureKind;

/// Dense index of a user inside one engine (position in the list the engine was built
/// with); cheaper than a map lookup on every message.
pub type UserIndex = u32;

/// A member's answer to a group post.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotAnswer {
    /// Within every cap: the slot is reserved.
    Granted,
    /// A cap says no: the post must wait, at least until `not_before` (`None`: this member
    /// cannot take a message under the current caps at all).
    Refused {
        /// The first rule that said no.
        reason: SuppressReason,
        /// When this member could take one.
        not_before: Option<Timestamp>,
    },
    /// Opted out: no longer part of the group's audience.
    Absent,
}

/// Where the transport's sink puts inbound events for the scheduler to queue: a shared
/// buffer rather than one message per event, and at most one [`InboundPending`] nudge per
/// drain. On a virtual clock every event is produced while the scheduler waits for the work
/// that caused it and is drained when that work reports done (the nudge then finds nothing);
/// on a real clock events arrive on their own and the nudge wakes the scheduler.
#[derive(Debug, Default)]
pub struct InboundBuffer {
    events: std::sync::Mutex<Vec<InboundEvent>>,
    nudged: std::sync::atomic::AtomicBool,
}

impl InboundBuffer {
    /// Adds an event; returns whether the scheduler must be nudged (no nudge is on its way).
    pub fn push(&self, event: InboundEvent) -> bool {
        self.events.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(event);
        !self.nudged.swap(true, std::sync::atomic::Ordering::AcqRel)
    }

    /// Marks the buffer as needing attention without an event (a shard whose send in
    /// flight settled has something to report); returns whether to nudge.
    pub fn poke(&self) -> bool {
        !self.nudged.swap(true, std::sync::atomic::Ordering::AcqRel)
    }

    /// Whether events (or a poke) are waiting.
    pub fn has_events(&self) -> bool {
        self.nudged.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Swaps the buffered events into `into` (which must be empty); later pushes nudge again.
    pub fn take_into(&self, into: &mut Vec<InboundEvent>) {
        self.nudged.store(false, std::sync::atomic::Ordering::Release);
        let mut events = self.events.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        std::mem::swap(&mut *events, into);
    }
}

/// Something that happened to one user, for statistics and the audit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Outcome {
    /// When.
    pub at: Timestamp,
    /// Who.
    pub user: UserId,
    /// Dense index of the user.
    pub index: UserIndex,
    /// The segment it is attributed to: the governing one at the send.
    pub segment: Segment,
    /// What.
    pub kind: OutcomeKind,
}

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OutcomeKind {
    /// A message went out (or may have), under these caps.
    Sent {
        /// The caps in force.
        caps: Caps,
        /// The user's time zone.
        zone: Zone,
        /// Through a group post.
        via_group: bool,
        /// The local hour of the send.
        local_hour: u8,
    },
    /// A message was due but a rule held it back.
    Suppressed(SuppressReason),
    /// The transport failed and the message was not sent.
    Failed(FailureKind),
    /// The user answered.
    Response {
        /// Local hour of the send answered.
        send_hour: u8,
    },
    /// The user bought.
    Conversion,
    /// The user opted out.
    OptOut,
}

/// Scheduler → statistics actors: outcomes in the order they were recorded.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct OutcomesRecorded {
    /// The batch.
    pub outcomes: Arc<Vec<Outcome>>,
}

/// A user's state at the end of a run.
#[derive(Clone, Debug, PartialEq)]
pub struct UserSnapshot {
    /// Who.
    pub user: UserId,
    /// Segments held.
    pub segments: SegmentSet,
    /// The governing segment.
    pub governing: Option<Segment>,
    /// Cap counters.
    pub caps: CapState,
    /// Messages received during the run (direct and group).
    pub messages: u32,
    /// Replies during the run.
    pub responses: u32,
    /// Purchases during the run.
    pub conversions: u32,
}
