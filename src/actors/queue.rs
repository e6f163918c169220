//! The scheduler's time-ordered queue of due work. Keys are `(time, kind, entity,
//! sub-kind, arrival)`: at one instant inbound events come before group posts, group posts
//! before planned sends, and within a kind the lower user (or group) id first. None of
//! this depends on the order in which actor messages happened to arrive, except `arrival`,
//! which only separates items of one entity — and those arrive in that entity's own order.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::domain::{GroupId, InboundKind, Timestamp};

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
    Inbound {
        /// Who.
        user: UserIndex,
        /// What.
        kind: InboundKind,
        /// Through which group, if any.
        group: Option<GroupId>,
    },
    /// Consider posting to a group.
    GroupPost {
        /// Which group (index).
        group: u32,
    },
    /// Flush outcomes to the statistics actors; the learner's cadence.
    LearnerTick,
}

/// Bits of the arrival counter kept in a key; it only orders items of one entity at one
/// instant, which are never 2^28 arrivals apart.
const SEQ_BITS: u32 = 28;

/// `(time, kind:2 | entity:32 | sub-kind:2 | arrival:28)`, compared as a pair of integers:
/// 16 bytes, so that the heap moves little memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    at: i64,
    order: u64,
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
        let (rank, entity, sub): (u64, u32, u64) = match &work {
            Work::Inbound { user, kind, .. } => {
                let sub = match kind {
                    InboundKind::OptOut => 0,
                    InboundKind::Reply => 1,
                    InboundKind::Conversion => 2,
                    InboundKind::Activity => 3,
                };
                (0, *user, sub)
            }
            Work::GroupPost { group } => (1, *group, 0),
            Work::Wake { user, .. } => (2, *user, 0),
            Work::LearnerTick => (3, 0, 0),
        };
        self.seq += 1;
        let order = rank << 62 | u64::from(entity) << 30 | sub << SEQ_BITS | (self.seq & ((1 << SEQ_BITS) - 1));
        self.heap.push(Reverse(Item { key: Key { at: at.secs(), order }, work }));
    }

    /// When the next item is due.
    pub fn next_due(&self) -> Option<Timestamp> {
        self.heap.peek().map(|Reverse(i)| Timestamp(i.key.at))
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
        self.heap.iter().filter(|Reverse(i)| i.key.at <= at.secs()).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inbound(user: u32, kind: InboundKind) -> Work {
        Work::Inbound { user, kind, group: None }
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
