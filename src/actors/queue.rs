//! The scheduler's time-ordered queue of due work. Keys are `(time, kind, entity,
//! sub-kind, arrival)`: at one instant inbound events come before group posts, group posts
//! before planned sends, and within a kind the lower user (or group) id first. None of
//! this depends on the order in which actor messages happened to arrive, except `arrival`,
//! which only separates items of one entity — and those arrive in that entity's own order.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::domain::{InboundEvent, InboundKind, Timestamp};

use super::messages::UserIndex;

/// A piece of work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// A user's planned send.
    Wake {
        /// Whose.
        user: UserIndex,
        /// Which plan.
        token: u32,
    },
    /// Something a user did.
    Inbound(InboundEvent),
    /// Consider posting to a group.
    GroupPost {
        /// Which group (index).
        group: usize,
    },
    /// Flush outcomes to the statistics actors; the learner's cadence.
    LearnerTick,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    at: Timestamp,
    rank: u8,
    entity: u64,
    sub: u8,
    seq: u64,
}

#[derive(Debug)]
struct Item {
    key: Key,
    work: Work,
}

impl PartialEq for Item {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}
impl Eq for Item {}
impl PartialOrd for Item {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Item {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key.cmp(&other.key)
    }
}

/// A min-queue of work by key.
#[derive(Debug, Default)]
pub struct WorkQueue {
    heap: BinaryHeap<Reverse<Item>>,
    seq: u64,
}

impl WorkQueue {
    /// An empty queue.
    pub fn new() -> WorkQueue {
        WorkQueue::default()
    }

    /// Adds work due at `at`.
    pub fn push(&mut self, at: Timestamp, work: Work) {
        let (rank, entity, sub) = match &work {
            Work::Inbound(e) => {
                let sub = match e.kind {
                    InboundKind::OptOut => 0,
                    InboundKind::Reply => 1,
                    InboundKind::Conversion => 2,
                    InboundKind::Activity => 3,
                };
                (0, e.user.0, sub)
            }
            Work::GroupPost { group } => (1, *group as u64, 0),
            Work::Wake { user, .. } => (2, u64::from(*user), 0),
            Work::LearnerTick => (3, 0, 0),
        };
        self.seq += 1;
        self.heap.push(Reverse(Item { key: Key { at, rank, entity, sub, seq: self.seq }, work }));
    }

    /// When the next item is due.
    pub fn next_due(&self) -> Option<Timestamp> {
        self.heap.peek().map(|Reverse(i)| i.key.at)
    }

    /// Removes and returns the next item if it is due exactly at `at`.
    pub fn pop_at(&mut self, at: Timestamp) -> Option<Work> {
        if self.next_due() == Some(at) { self.heap.pop().map(|Reverse(i)| i.work) } else { None }
    }

    /// Items queued.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Items due at or before `at`.
    pub fn due_by(&self, at: Timestamp) -> usize {
        self.heap.iter().filter(|Reverse(i)| i.key.at <= at).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::UserId;

    fn inbound(user: u64, kind: InboundKind) -> Work {
        Work::Inbound(InboundEvent { at: Timestamp(10), user: UserId(user), kind, group: None })
    }

    /// Time first; at one instant inbound before group posts before wakes, lower ids first,
    /// opt-outs before other events — whatever the insertion order.
    #[test]
    fn ordering_is_by_key_not_by_arrival() {
        let items = [
            (Timestamp(20), Work::Wake { user: 0, token: 1 }),
            (Timestamp(10), Work::Wake { user: 2, token: 1 }),
            (Timestamp(10), Work::Wake { user: 1, token: 1 }),
            (Timestamp(10), Work::GroupPost { group: 0 }),
            (Timestamp(10), inbound(5, InboundKind::Activity)),
            (Timestamp(10), inbound(5, InboundKind::OptOut)),
            (Timestamp(10), inbound(3, InboundKind::Reply)),
        ];
        let expected = [items[6].1, items[5].1, items[4].1, items[3].1, items[2].1, items[1].1, items[0].1];
        // Every rotation of the insertion order gives the same sequence.
        for r in 0..items.len() {
            let mut q = WorkQueue::new();
            for (at, w) in items.iter().cycle().skip(r).take(items.len()) {
                q.push(*at, *w);
            }
            let mut out = Vec::new();
            while let Some(at) = q.next_due() {
                while let Some(w) = q.pop_at(at) {
                    out.push(w);
                }
            }
            assert_eq!(out, expected, "rotation {r}");
        }
    }
}
