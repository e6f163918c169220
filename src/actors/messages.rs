//! Every message that passes between the actors. Commands are imperative (`Wake`),
//! facts past tense (`WorkDone`, `InboundArrived`), replies nouns (`UserSnapshot`).

use std::sync::Arc;

use actix::prelude::*;

use crate::config::StrategyBook;
use crate::domain::Segment;
use crate::domain::{Caps, GroupId, InboundEvent, SegmentSet, Timestamp, UserId, UtcOffset};
use crate::policy::{CapState, SuppressReason};

/// Dense index of a user inside one engine (position in the list the engine was built
/// with); cheaper than a map lookup on every message.
pub type UserIndex = u32;

/// Scheduler → user: your planned send time has come. Ignored unless `token` is the
/// user's latest plan (older plans are superseded, not removed from the queue).
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Wake {
    /// The current time.
    pub at: Timestamp,
    /// Which plan this wake belongs to.
    pub token: u32,
    /// The strategies in force.
    pub book: Arc<StrategyBook>,
}

/// Scheduler → user: an inbound event has reached its time.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct DeliverInbound {
    /// The event (its `at` is the current time).
    pub event: InboundEvent,
    /// The strategies in force.
    pub book: Arc<StrategyBook>,
}

/// Scheduler → user: will you keep `slot` free for a group post? A granted booking
/// constrains the user's direct sends — each must leave the booked slot within every cap —
/// until the post is reserved at `slot` or the booking is released. Answered with a
/// [`GroupSlotAnswered`].
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct BookGroupSlot {
    /// The current time.
    pub at: Timestamp,
    /// When the post is planned.
    pub slot: Timestamp,
    /// Which post.
    pub post: u64,
    /// The strategies in force.
    pub book: Arc<StrategyBook>,
}

/// Scheduler → user: the booking for `post` is off (another member could not keep the
/// slot). Answered with a `WorkDone`.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct ReleaseGroupBooking {
    /// Which post.
    pub post: u64,
}

/// Scheduler → user: may a group post reach you at `at`? Answered with a
/// [`GroupSlotAnswered`]. A granted slot counts against the caps until settled.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct ReserveGroupSlot {
    /// The current time.
    pub at: Timestamp,
    /// Which post.
    pub post: u64,
    /// Which group.
    pub group: GroupId,
    /// The strategies in force.
    pub book: Arc<StrategyBook>,
}

/// Scheduler → user: the reserved group post went out (`sent`) or was called off.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct SettleGroupSlot {
    /// The current time.
    pub at: Timestamp,
    /// Which post.
    pub post: u64,
    /// Which group.
    pub group: GroupId,
    /// Whether it went out (or may have: counted either way).
    pub sent: bool,
    /// `delivered` or `unknown` when sent.
    pub outcome: &'static str,
    /// The strategies in force.
    pub book: Arc<StrategyBook>,
}

/// User → scheduler: the answer to a [`ReserveGroupSlot`].
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct GroupSlotAnswered {
    /// Which post.
    pub post: u64,
    /// Who answers.
    pub user: UserIndex,
    /// What they answer.
    pub answer: SlotAnswer,
    /// A new plan for the member's own next send, if the answer changed it.
    pub next_wake: Option<(Timestamp, u32)>,
}

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

/// User → scheduler: finished one piece of dispatched work.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct WorkDone {
    /// Who finished.
    pub user: UserIndex,
    /// A new plan, if the user made one: wake me at `.0` with token `.1`.
    pub next_wake: Option<(Timestamp, u32)>,
    /// What happened, if anything worth counting.
    pub outcome: Option<Outcome>,
    /// The work started a send that is still in flight: a [`SendSettled`] follows.
    pub send_in_flight: bool,
}

/// User → scheduler: a send that was in flight has its answer (or timed out: unknown).
/// Not part of any instant's work: the scheduler never waits for it before moving on.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct SendSettled {
    /// Who.
    pub user: UserIndex,
    /// A new plan, if the user made one.
    pub next_wake: Option<(Timestamp, u32)>,
    /// What happened.
    pub outcome: Option<Outcome>,
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

    /// Swaps the buffered events into `into` (which must be empty); later pushes nudge again.
    pub fn take_into(&self, into: &mut Vec<InboundEvent>) {
        self.nudged.store(false, std::sync::atomic::Ordering::Release);
        let mut events = self.events.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        std::mem::swap(&mut *events, into);
    }
}

/// Transport → scheduler: events are waiting in the [`InboundBuffer`].
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct InboundPending;

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
        /// The user's offset.
        offset: UtcOffset,
        /// Through a group post.
        via_group: bool,
        /// The local hour of the send.
        local_hour: u8,
    },
    /// A message was due but a rule held it back.
    Suppressed(SuppressReason),
    /// The transport failed (`kind` as in `TransportError::kind`).
    Failed(&'static str),
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

/// Engine → user: report your state.
#[derive(Message, Debug)]
#[rtype(result = "UserSnapshot")]
pub struct TakeSnapshot {
    /// The current time.
    pub at: Timestamp,
    /// The strategies in force.
    pub book: Arc<StrategyBook>,
}

/// A user's state at the end of a run.
#[derive(Clone, Debug, PartialEq, MessageResponse)]
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
