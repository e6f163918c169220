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
        /// The source's id for the event, if any (acknowledged with it).
        source: Option<u64>,
    },
    /// Consider posting to a group.
    GroupPost {
        /// Which group (index).
        group: u32,
    },
    /// Flush outcomes to the statistics actors; the learner's cadence.
    LearnerTick,
}

impl Work {
    /// The rank of the kind at one instant: inbound events first, then group posts, then
    /// planned sends, then the learner tick.
    pub fn rank(&self) -> u8 {
        match self {
            Work::Inbound { .. } => 0,
            Work::GroupPost { .. } => 1,
            Work::Wake { .. } => 2,
            Work::LearnerTick => 3,
        }
    }
}

/// A rank past every kind: `pop_before(t, ALL_RANKS)` takes everything due at `t`.
pub const ALL_RANKS: u8 = 4;

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

/// Width of one calendar bucket, seconds.
const BUCKET_SECS: i64 = 64;
/// Buckets in the ring: about three days ahead; later work waits in the overflow heap.
const BUCKETS: usize = 4_096;

/// A min-queue of work by key: a calendar queue. Work due within about three days sits in
/// one of 4,096 buckets of 64 seconds (an append); the bucket being consumed is a small
/// heap; anything later waits in an overflow heap until the ring reaches it. It pops in
/// exactly the order of one big heap, touching far less memory (docs/performance.md).
#[derive(Debug)]
pub struct WorkQueue {
    buckets: Vec<Vec<Item>>,
    /// Start of the bucket at `cursor`: every queued item is due at or after it.
    ring_start: i64,
    cursor: usize,
    current: BinaryHeap<Reverse<Item>>,
    overflow: BinaryHeap<Reverse<Item>>,
    len: usize,
    seq: u64,
    started: bool,
}

impl Default for WorkQueue {
    fn default() -> Self {
        WorkQueue::new()
    }
}

impl WorkQueue {
    /// An empty queue.
    pub fn new() -> WorkQueue {
        WorkQueue {
            buckets: (0..BUCKETS).map(|_| Vec::new()).collect(),
            ring_start: 0,
            cursor: 0,
            current: BinaryHeap::new(),
            overflow: BinaryHeap::new(),
            len: 0,
            seq: 0,
            started: false,
        }
    }

    /// Adds work due at `at`.
    pub fn push(&mut self, at: Timestamp, work: Work) {
        let (entity, sub): (u32, u64) = match &work {
            Work::Inbound { user, kind, .. } => {
                let sub = match kind {
                    // One sub-kind: a /stop and a /start of one instant keep the order
                    // in which they came.
                    InboundKind::OptOut | InboundKind::Consent => 0,
                    InboundKind::Reply => 1,
                    InboundKind::Conversion => 2,
                    InboundKind::Activity => 3,
                };
                (*user, sub)
            }
            Work::GroupPost { group } => (*group, 0),
            Work::Wake { user, .. } => (*user, 0),
            Work::LearnerTick => (0, 0),
        };
        let rank = u64::from(work.rank());
        self.seq += 1;
        let order = rank << 62 | u64::from(entity) << 30 | sub << SEQ_BITS | (self.seq & ((1 << SEQ_BITS) - 1));
        let item = Item { key: Key { at: at.secs(), order }, work };
        if !self.started {
            self.started = true;
            self.ring_start = at.secs().div_euclid(BUCKET_SECS) * BUCKET_SECS;
        }
        self.len += 1;
        self.place(item);
    }

    fn place(&mut self, item: Item) {
        let offset = item.key.at - self.ring_start;
        if offset < BUCKET_SECS {
            self.current.push(Reverse(item));
        } else if offset < BUCKET_SECS * BUCKETS as i64 {
            let slot = (self.cursor + (offset / BUCKET_SECS) as usize) % BUCKETS;
            self.buckets[slot].push(item);
        } else {
            self.overflow.push(Reverse(item));
        }
    }

    /// Moves the ring forward until the current bucket holds the earliest work.
    fn settle(&mut self) {
        while self.current.is_empty() && self.len > 0 {
            let ring_span = BUCKET_SECS * BUCKETS as i64;
            let nothing_in_ring = self.len == self.overflow.len();
            if nothing_in_ring {
                // Jump straight to the overflow's earliest bucket.
                let Some(Reverse(first)) = self.overflow.peek() else { return };
                self.ring_start = first.key.at.div_euclid(BUCKET_SECS) * BUCKET_SECS;
            } else {
                self.cursor = (self.cursor + 1) % BUCKETS;
                self.ring_start += BUCKET_SECS;
                let bucket = std::mem::take(&mut self.buckets[self.cursor]);
                self.current.extend(bucket.into_iter().map(Reverse));
            }
            // Overflow work that the ring now reaches moves in.
            while self.overflow.peek().is_some_and(|Reverse(i)| i.key.at - self.ring_start < ring_span) {
                if let Some(Reverse(item)) = self.overflow.pop() {
                    self.place(item);
                }
            }
        }
    }

    /// When the next item is due.
    pub fn next_due(&mut self) -> Option<Timestamp> {
        self.settle();
        self.current.peek().map(|Reverse(i)| Timestamp(i.key.at))
    }

    /// Removes and returns the next item if it is due exactly at `at`.
    pub fn pop_at(&mut self, at: Timestamp) -> Option<Work> {
        if self.next_due() != Some(at) {
            return None;
        }
        let Reverse(item) = self.current.pop()?;
        self.len -= 1;
        Some(item.work)
    }

    /// The rank of the next item's kind (see [`Work::rank`]).
    pub fn next_rank(&mut self) -> Option<u8> {
        self.settle();
        self.current.peek().map(|Reverse(i)| (i.key.order >> 62) as u8)
    }

    /// Removes and returns the next item, with its time, if it comes before `(until,
    /// rank_limit)`: due before `until`, or due at `until` with a kind that ranks before
    /// `rank_limit` (inbound 0, group post 1, wake 2, learner tick 3; 4 takes all of `until`).
    pub fn pop_before(&mut self, until: Timestamp, rank_limit: u8) -> Option<(Timestamp, Work)> {
        self.settle();
        let Reverse(first) = self.current.peek()?;
        let rank = (first.key.order >> 62) as u8;
        if first.key.at > until.secs() || (first.key.at == until.secs() && rank >= rank_limit) {
            return None;
        }
        let Reverse(item) = self.current.pop()?;
        self.len -= 1;
        Some((Timestamp(item.key.at), item.work))
    }

    /// Items queued.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inbound(user: u32, kind: InboundKind) -> Work {
        Work::Inbound { user, kind, group: None, source: None }
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

    /// The calendar pops in exactly the order of one sorted list, across buckets, the ring's
    /// end and the overflow, with pushes while popping.
    #[test]
    fn pops_in_key_order_across_buckets_and_overflow() {
        let mut q = WorkQueue::new();
        let mut expected = Vec::new();
        let mut x: u64 = 12345;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let base = 1_767_225_600i64;
        for i in 0..5_000u32 {
            // Times from now to 20 days ahead, many sharing a second.
            let at = base + (next() % (20 * 86_400)) as i64 / 7 * 7;
            q.push(Timestamp(at), Work::Wake { user: i, token: 0 });
            expected.push((at, i));
        }
        let mut popped = Vec::new();
        let mut pushed_late = 0u32;
        while let Some(at) = q.next_due() {
            while let Some(Work::Wake { user, .. }) = q.pop_at(at) {
                popped.push((at.secs(), user));
                // Push more work while draining: some at this very instant, some later.
                if pushed_late < 2_000 && user % 3 == 0 {
                    pushed_late += 1;
                    let id = 100_000 + pushed_late;
                    let later = at.secs() + (next() % (5 * 86_400)) as i64 * (i64::from(pushed_late % 2));
                    q.push(Timestamp(later), Work::Wake { user: id, token: 0 });
                    expected.push((later, id));
                }
            }
        }
        expected.sort_unstable();
        assert_eq!(popped.len(), expected.len());
        assert!(q.is_empty());
        // Within one instant wakes are ordered by user id, so the sorted list is the order.
        assert_eq!(popped, expected);
    }
}
