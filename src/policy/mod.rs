//! Pure decision rules: which caps are in force, whether a message may go out now, when
//! the next one may, and how fast a group may be posted to. Plain functions over plain
//! data — the actors call them, tests and benches call them directly.

mod caps;
mod decide;
mod plan;
mod rate;

pub use caps::{caps_for, governing_segment};
pub use decide::{
    CapState, Decision, NextSend, RuleEarliest, SuppressReason, decide, earliest_allowed, next_send, sends_fit,
};
pub use plan::plan_next_send;
pub use rate::PostRateWindow;
