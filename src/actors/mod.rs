//! The actors: one `UserActor` per user, one `SegmentActor` per segment, a
//! `SchedulerActor` that owns time and the queue of due work, and a `LearnerActor` that
//! receives every outcome. Thin shells around `policy`: a handler reads its state, calls a
//! pure rule, acts on the decision.
//!
//! ```text
//!            Wake / DeliverInbound / Reserve+SettleGroupSlot
//!  Scheduler ───────────────────────────────────────────────▶ UserActor ──send──▶ Transport
//!      ▲  ◀──────────── WorkDone / GroupSlotAnswered ──────────┘                     │
//!      │                                                                             │
//!      └──────────────────────── InboundArrived (replies, opt-outs, activity) ◀──────┘
//!      │
//!      └── OutcomesRecorded (batches) ──▶ SegmentActor ×8, LearnerActor
//! ```

pub mod learner;
pub mod messages;
pub mod queue;
pub mod scheduler;
pub mod segment;
pub mod user;
