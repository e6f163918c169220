//! The actors and what they host: `UserShard`s (one per thread) hosting users as
//! `UserEntity` values, each shard with its own time queue; the `Scheduler`, which owns the
//! clock and advances the shards from one sync point (a group post, a learner tick, the
//! horizon) to the next; a `SegmentActor` per segment and a `LearnerActor` receiving every
//! outcome. Thin shells around `policy`: a handler reads its state, calls a pure rule, acts
//! on the decision.
//!
//! ```text
//!                RunUntil { until }            ┌────────────── UserShard ×N (own arbiter) ───┐
//!  Scheduler ─────────────────────────────────▶│ queue: wakes, inbound  ──▶ UserEntity ×k    │──send──▶ Transport
//!  (clock,     ◀── ShardReport { outcomes,  ───│                                             │           │
//!   group posts,     log, next_due }           └───────────▲─────────────────────────────────┘           │
//!   ticks)     ── GroupRound (book/reserve/settle) ───────▶│         InboundBuffer ◀── replies, opt-outs ─┘
//!      │
//!      └── OutcomesRecorded (batches) ──▶ SegmentActor ×8, LearnerActor ◀── Learn / StrategyUpdate
//! ```

pub mod daily;
pub mod entity;
pub mod learner;
pub mod messages;
pub mod queue;
pub mod scheduler;
pub mod segment;
pub mod shard;
