//! `UserShard`: hosts a share of the users as [`UserEntity`] values — their state, and
//! their own time queue of planned sends and inbound events — on one arbiter (thread). The
//! scheduler advances every shard to the next global sync point with one [`RunUntil`]; the
//! shard works through its queue up to there and answers with one [`ShardReport`]: the
//! outcomes and log entries of the window, and when its next work is due (user records go
//! to the store from the shard itself).
//!
//! Ordering guarantees:
//! - Inside a shard, work runs in queue-key order: time, then kind (inbound events, then
//!   planned sends), then user, then arrival. Each user's work runs one piece at a time, in
//!   order, by this one owner.
//! - Users of different shards never meet between sync points: a user's work touches only
//!   that user's state and random streams. So what a window computes does not depend on how
//!   users are spread over shards or threads — only the merge of the reports does, and the
//!   scheduler merges in a fixed order (docs/architecture.md, "Shards").
//! - A superseded wake (an older plan token) is dropped here, inside the shard.
//! - Inbound events for the shard's users wait in its [`InboundBuffer`]; the shard drains
//!   it before and during every window, queueing each event no earlier than the time of the
//!   work it is processing.
//! - A send in flight (a slow transport) is awaited by the shard on the side; its outcome is
//!   reported with the next window, and [`DrainSends`] waits for every send in flight.
//! - An inbound event is acknowledged to its source after it is taken in: at once for a
//!   source that does not need it stored first (the simulated world), else once the
//!   scheduler has written the window's log. An event whose source id was taken in already
//!   is a redelivery: acknowledged the same way, and nothing else.

use std::sync::Arc;

use actix::prelude::*;

use crate::config::StrategyBook;
use crate::domain::{GroupId, InboundEvent, SendOutcome, Timestamp, UserId};
use crate::store::{LogEntry, Store, StoreFuture, UserRecord};
use crate::transport::{InboundSource, TransportError};

use super::entity::{Effects, SendInFlight, Step, UserContext, UserEntity};
use super::messages::{InboundBuffer, Outcome, SlotAnswer, UserIndex, UserSnapshot};
use super::queue::{Work, WorkQueue};

/// Where every user lives: their engine index, and their shard and place in it. Users can
/// join while the engine runs, so it sits behind a lock (read on every inbound event,
/// written once per new user).
#[derive(Debug)]
pub struct Placement {
    inner: std::sync::RwLock<PlacementInner>,
}

#[derive(Debug)]
struct PlacementInner {
    /// Engine index → `(shard, local index)`.
    of_index: Vec<(u16, u32)>,
    /// User id → engine index.
    directory: Directory,
    /// Users per shard (the next local index of each).
    per_shard: Vec<u32>,
}

impl Placement {
    /// The placement of users with these ids (in engine-index order) at these places.
    pub fn new(ids: &[UserId], of_index: Vec<(u16, u32)>, shards: usize) -> Placement {
        let mut per_shard = vec![0u32; shards.max(1)];
        for &(shard, _) in &of_index {
            per_shard[usize::from(shard)] += 1;
        }
        let directory = Directory::new(ids);
        Placement { inner: std::sync::RwLock::new(PlacementInner { of_index, directory, per_shard }) }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, PlacementInner> {
        self.inner.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A user's engine index, shard and local index, if the engine knows them.
    pub fn find(&self, id: UserId) -> Option<(UserIndex, u16, u32)> {
        let inner = self.read();
        let index = inner.directory.find(id)?;
        inner.of_index.get(index as usize).map(|&(shard, local)| (index, shard, local))
    }

    /// The shard and local index of engine index `index`.
    pub fn of(&self, index: UserIndex) -> Option<(u16, u32)> {
        self.read().of_index.get(index as usize).copied()
    }

    /// Users placed so far.
    pub fn len(&self) -> usize {
        self.read().of_index.len()
    }

    /// Whether no user is placed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Places a new user in `shard`: their engine index and local index, or `None` if the
    /// id is already known.
    pub fn add(&self, id: UserId, shard: u16) -> Option<(UserIndex, u32)> {
        let mut inner = self.inner.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        if inner.directory.find(id).is_some() {
            return None;
        }
        let index = inner.of_index.len() as UserIndex;
        let local = inner.per_shard[usize::from(shard)];
        inner.per_shard[usize::from(shard)] += 1;
        inner.of_index.push((shard, local));
        inner.directory.insert(id, index);
        Some((index, local))
    }
}

/// Finds a user's engine index from their id.
#[derive(Debug)]
pub enum Directory {
    /// Ids are `0..n`: the id is the index.
    Dense(usize),
    /// Any ids.
    Map(std::collections::HashMap<UserId, UserIndex>),
}

impl Directory {
    /// The directory of users with these ids, in index order.
    pub fn new(ids: &[UserId]) -> Directory {
        if ids.iter().enumerate().all(|(i, id)| id.0 == i as u64) {
            Directory::Dense(ids.len())
        } else {
            Directory::Map(ids.iter().enumerate().map(|(i, id)| (*id, i as UserIndex)).collect())
        }
    }

    /// Adds `id` at engine index `index` (the next one).
    fn insert(&mut self, id: UserId, index: UserIndex) {
        match self {
            Directory::Dense(n) if id.0 == *n as u64 && index as usize == *n => *n += 1,
            Directory::Dense(n) => {
                let mut map: std::collections::HashMap<UserId, UserIndex> =
                    (0..*n as u64).map(|i| (UserId(i), i as UserIndex)).collect();
                map.insert(id, index);
                *self = Directory::Map(map);
            }
            Directory::Map(map) => {
                map.insert(id, index);
            }
        }
    }

    /// The engine index of `id`, if the engine knows the user.
    pub fn find(&self, id: UserId) -> Option<UserIndex> {
        match self {
            Directory::Dense(n) => (id.0 < *n as u64).then_some(id.0 as UserIndex),
            Directory::Map(m) => m.get(&id).copied(),
        }
    }
}

/// The shard a user belongs to: a stable hash of the id (SplitMix64's finaliser), so that
/// a user keeps their shard across runs and restarts for a given shard count.
pub fn shard_of(user: UserId, shards: usize) -> usize {
    let mut z = user.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z % shards.max(1) as u64) as usize
}

/// What a window (or a group round) produced, in the order it happened inside the shard.
#[derive(Debug, Default)]
pub struct ShardOutput {
    /// Outcomes for the statistics, the learner and the audit.
    pub outcomes: Vec<Outcome>,
    /// Log entries for the store (empty unless the engine keeps the log).
    pub log: Vec<LogEntry>,
    /// Pieces of work done (wakes, inbound events), superseded wakes included.
    pub dispatched: u64,
    /// Events to acknowledge to their source once the log is written.
    pub acks: Vec<InboundEvent>,
    /// Inbound events dropped as duplicates of one already taken in (by source id).
    pub duplicates: u64,
}

/// Everything a shard is built from.
#[derive(Debug)]
pub struct ShardParts {
    /// This shard's number.
    pub id: u16,
    /// Its users, in local order (ascending engine index).
    pub entities: Vec<UserEntity>,
    /// Each local user's experiment arm (empty: everyone in arm 0).
    pub arm_of: Vec<u16>,
    /// The strategies of each arm.
    pub books: Vec<Arc<StrategyBook>>,
    /// First planned wakes: `(local index, at, token)`.
    pub first_wakes: Vec<(u32, Timestamp, u32)>,
    /// What entities need: transport, persistence, rules.
    pub cx: UserContext,
    /// Where user records go.
    pub store: Arc<dyn Store>,
    /// Inbound events for this shard's users.
    pub inbound: Arc<InboundBuffer>,
    /// Where every user lives (to find local indices of inbound events).
    pub placement: Arc<Placement>,
    /// Whether log entries are collected for the store.
    pub keep_log: bool,
    /// How long a send may take before its outcome is unknown.
    pub send_timeout: std::time::Duration,
    /// Wakes the scheduler when a send in flight settled (its outcome waits for a report).
    pub wake_scheduler: Arc<tokio::sync::Notify>,
    /// The seed users joining later draw their engine stream from.
    pub seed: u64,
    /// Where inbound events come from (acknowledged by the shard).
    pub source: Arc<dyn InboundSource>,
}

/// A share of the users.
#[derive(Debug)]
pub struct UserShard {
    id: u16,
    entities: Vec<UserEntity>,
    arm_of: Vec<u16>,
    books: Vec<Arc<StrategyBook>>,
    queue: WorkQueue,
    cx: UserContext,
    store: Arc<dyn Store>,
    inbound: Arc<InboundBuffer>,
    inbound_spare: Vec<InboundEvent>,
    placement: Arc<Placement>,
    keep_log: bool,
    send_timeout: std::time::Duration,
    /// What the current window has produced so far.
    output: ShardOutput,
    effects: Effects,
    /// Sends in flight, and who waits for them all to settle.
    in_flight: usize,
    drain_waiters: Vec<tokio::sync::oneshot::Sender<()>>,
    wake_scheduler: Arc<tokio::sync::Notify>,
    seed: u64,
    source: Arc<dyn InboundSource>,
    /// Source ids taken in recently, for de-duplication.
    recent_sources: std::collections::HashSet<u64>,
    recent_order: std::collections::VecDeque<u64>,
}

/// How many recent source ids a shard remembers to drop duplicates (a redelivery comes
/// within seconds; this is hours of a busy bot's updates).
const RECENT_SOURCES: usize = 1 << 16;

impl Actor for UserShard {
    type Context = Context<Self>;
}

impl UserShard {
    /// A shard from its parts.
    pub fn new(parts: ShardParts) -> UserShard {
        let mut queue = WorkQueue::new();
        for (user, at, token) in parts.first_wakes {
            queue.push(at, Work::Wake { user, token });
        }
        UserShard {
            id: parts.id,
            entities: parts.entities,
            arm_of: parts.arm_of,
            books: parts.books,
            queue,
            cx: parts.cx,
            store: parts.store,
            inbound: parts.inbound,
            inbound_spare: Vec::new(),
            placement: parts.placement,
            keep_log: parts.keep_log,
            send_timeout: parts.send_timeout,
            output: ShardOutput::default(),
            effects: Effects { keep_log: parts.keep_log, ..Effects::default() },
            in_flight: 0,
            drain_waiters: Vec::new(),
            wake_scheduler: parts.wake_scheduler,
            seed: parts.seed,
            source: parts.source,
            recent_sources: std::collections::HashSet::new(),
            recent_order: std::collections::VecDeque::new(),
        }
    }

    fn book_of(&self, local: u32) -> &Arc<StrategyBook> {
        let arm = self.arm_of.get(local as usize).copied().unwrap_or(0);
        &self.books[usize::from(arm)]
    }

    /// Moves inbound events into the queue, no earlier than `now`.
    fn drain_inbound(&mut self, now: Timestamp) {
        if !self.inbound.has_events() {
            return;
        }
        self.inbound.take_into(&mut self.inbound_spare);
        let mut events = std::mem::take(&mut self.inbound_spare);
        for event in events.drain(..) {
            match self.placement.find(event.user) {
                Some((_, shard, local)) if shard == self.id => self.queue.push(
                    event.at.max(now),
                    Work::Inbound { user: local, kind: event.kind, group: event.group, source: event.source },
                ),
                _ => {
                    // Nothing of it is stored, so it is acknowledged at once: a live source would
                    // otherwise deliver it again after every restart.
                    tracing::error!(user = %event.user, shard = self.id, "Inbound event routed to the wrong shard; dropped.");
                    self.source.acknowledge(&event);
                }
            }
        }
        self.inbound_spare = events;
    }

    /// Acknowledges an event to its source: at once when the source does not need it stored
    /// first or nothing of it goes to the store's log; else with the window's report, once
    /// the scheduler has written the log.
    fn acknowledge(&mut self, event: InboundEvent) {
        if self.keep_log && self.source.acknowledge_after_persist() {
            self.output.acks.push(event);
        } else {
            self.source.acknowledge(&event);
        }
    }

    /// Whether an event with this source id was taken in already (remembering the last
    /// [`RECENT_SOURCES`] ids of this shard).
    fn seen_before(&mut self, source: Option<u64>) -> bool {
        let Some(id) = source else { return false };
        if !self.recent_sources.insert(id) {
            return true;
        }
        self.recent_order.push_back(id);
        if self.recent_order.len() > RECENT_SOURCES
            && let Some(old) = self.recent_order.pop_front()
        {
            self.recent_sources.remove(&old);
        }
        false
    }

    /// Takes in what one entity call produced.
    fn absorb(&mut self, ctx: &mut Context<Self>, local: u32, step: Step) {
        if let Some((at, token)) = step.next_wake {
            self.queue.push(at, Work::Wake { user: local, token });
        }
        if let Some(outcome) = step.outcome {
            self.output.outcomes.push(outcome);
        }
        if self.keep_log {
            self.output.log.append(&mut self.effects.log);
        } else {
            self.effects.log.clear();
        }
        for record in std::mem::take(&mut self.effects.saves) {
            let future = self.store.save_user(&record);
            self.drive_store(ctx, future);
        }
        if let Some(send) = step.send {
            self.await_send(ctx, local, send);
        }
    }

    /// Runs a store call: at once when ready, else holding the shard's mailbox until it is
    /// (a user's records stay in order). A failure is logged and reported again by `flush`.
    fn drive_store(&mut self, ctx: &mut Context<Self>, mut future: StoreFuture<()>) {
        match futures::FutureExt::now_or_never(&mut future) {
            Some(Ok(())) => {}
            Some(Err(e)) => tracing::error!(shard = self.id, error = %e, "Store write failed."),
            None => {
                let shard = self.id;
                ctx.wait(future.into_actor(self).map(move |result, _, _| {
                    if let Err(e) = result {
                        tracing::error!(shard, error = %e, "Store write failed.");
                    }
                }));
            }
        }
    }

    /// Awaits a send in flight on the side (bounded by the send timeout), then lets its user
    /// act on the answer.
    fn await_send(&mut self, ctx: &mut Context<Self>, local: u32, send: SendInFlight) {
        self.in_flight += 1;
        let timeout = self.send_timeout;
        let SendInFlight { message, caps, future } = send;
        let bounded = async move {
            tokio::time::timeout(timeout, future).await.unwrap_or_else(|_| {
                Err(TransportError::Unknown { reason: format!("no answer within {} ms", timeout.as_millis()) })
            })
        };
        ctx.spawn(bounded.into_actor(self).map(move |result, shard, ctx| {
            shard.in_flight -= 1;
            let book = shard.book_of(local).clone();
            let step =
                shard.entities[local as usize].after_send(&shard.cx, &mut shard.effects, message, caps, result, &book);
            shard.absorb(ctx, local, step);
            // The outcome and the user's next plan wait for the next report: ask for one.
            if shard.inbound.poke() {
                shard.wake_scheduler.notify_one();
            }
            if shard.in_flight == 0 {
                for waiter in shard.drain_waiters.drain(..) {
                    let _ = waiter.send(());
                }
            }
        }));
    }

    /// Does one piece of work at `at`.
    fn process(&mut self, ctx: &mut Context<Self>, at: Timestamp, work: Work) {
        self.output.dispatched += 1;
        if let Work::Wake { user, .. } | Work::Inbound { user, .. } = work
            && user as usize >= self.entities.len()
        {
            tracing::error!(shard = self.id, user, "Work for a user this shard does not host; ignored.");
            return;
        }
        match work {
            // The strategies are borrowed, not cloned: an `Arc` count bumped by both shard
            // threads would bounce its cache line between the cores on every piece of work.
            Work::Wake { user, token } => {
                let arm = self.arm_of.get(user as usize).copied().unwrap_or(0);
                let book = &self.books[usize::from(arm)];
                let step = self.entities[user as usize].wake(&self.cx, &mut self.effects, at, token, book);
                self.absorb(ctx, user, step);
            }
            Work::Inbound { user, kind, group, source } if self.seen_before(source) => {
                // A redelivery of an event taken in already: acknowledged like the first (once
                // that one is stored), and nothing else.
                self.output.duplicates += 1;
                let event = InboundEvent { at, user: self.entities[user as usize].id(), kind, group, source };
                self.acknowledge(event);
            }
            Work::Inbound { user, kind, group, source } => {
                let arm = self.arm_of.get(user as usize).copied().unwrap_or(0);
                let book = &self.books[usize::from(arm)];
                let entity = &mut self.entities[user as usize];
                let event = InboundEvent { at, user: entity.id(), kind, group, source };
                let step = entity.inbound(&self.cx, &mut self.effects, event, book);
                self.absorb(ctx, user, step);
                self.acknowledge(event);
            }
            Work::GroupPost { .. } | Work::LearnerTick => {
                tracing::error!(shard = self.id, "Scheduler work queued in a shard; ignored.");
            }
        }
    }
}

/// Scheduler → shard: do every piece of work that comes before `(until, rank_limit)` (see
/// [`WorkQueue::pop_before`]), each at its own time, or at `floor` if that is later (a real
/// clock stamps work with the time it actually runs). Answered with a [`ShardReport`].
#[derive(Message, Debug)]
#[rtype(result = "ShardReport")]
pub struct RunUntil {
    /// The end of the window.
    pub until: Timestamp,
    /// Kinds due exactly at `until` that still belong to the window.
    pub rank_limit: u8,
    /// The earliest time work may be stamped with.
    pub floor: Timestamp,
    /// New strategies per arm, when the learner changed them.
    pub books: Option<Vec<Arc<StrategyBook>>>,
}

/// Shard → scheduler: what a window produced.
#[derive(Debug, MessageResponse)]
pub struct ShardReport {
    /// Outcomes, log entries and counts of the window (and of sends settled since the last).
    pub output: ShardOutput,
    /// When the shard's next work is due.
    pub next_due: Option<Timestamp>,
    /// Sends still in flight.
    pub in_flight: usize,
}

impl Handler<RunUntil> for UserShard {
    type Result = ShardReport;

    fn handle(&mut self, msg: RunUntil, ctx: &mut Self::Context) -> ShardReport {
        if let Some(books) = msg.books {
            self.books = books;
        }
        self.drain_inbound(msg.floor);
        while let Some((due, work)) = self.queue.pop_before(msg.until, msg.rank_limit) {
            let at = due.max(msg.floor);
            self.process(ctx, at, work);
            self.drain_inbound(at);
        }
        ShardReport {
            output: std::mem::take(&mut self.output),
            next_due: self.queue.next_due(),
            in_flight: self.in_flight,
        }
    }
}

/// One round of a group post for the members hosted here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupPhase {
    /// Will you hold a place in your exposure for a post at `slot`? (ahead of time)
    Book {
        /// When the post is planned.
        slot: Timestamp,
    },
    /// The booking is off.
    Release,
    /// May the post reach you now? A granted share counts in your exposure until settled.
    Reserve,
    /// The reserved post went out (`sent`: delivered or unknown) or was called off (`None`).
    Settle {
        /// How it went out, if it did (or may have).
        sent: Option<SendOutcome>,
    },
}

/// Scheduler → shard: a group post's round for the members hosted here. Answered with a
/// [`GroupRoundAnswer`].
#[derive(Message, Debug)]
#[rtype(result = "GroupRoundAnswer")]
pub struct GroupRound {
    /// The current time.
    pub at: Timestamp,
    /// Which post.
    pub post: u64,
    /// Which group.
    pub group: GroupId,
    /// What is asked.
    pub phase: GroupPhase,
    /// Group posts one member may see per local day, over all groups.
    pub exposure_limit: u32,
    /// The members hosted here: `(position in the group's member list, local index)`.
    pub members: Vec<(u32, u32)>,
}

/// Shard → scheduler: each member's answer (for booking and reserving) and what settling
/// produced.
#[derive(Debug, Default, MessageResponse)]
pub struct GroupRoundAnswer {
    /// `(position in the member list, answer)`.
    pub answers: Vec<(u32, SlotAnswer)>,
    /// Outcomes and log entries of settled sends.
    pub output: ShardOutput,
    /// When the shard's next work is due (a booking or a settled post may move a plan
    /// earlier than the shard last said).
    pub next_due: Option<Timestamp>,
}

impl Handler<GroupRound> for UserShard {
    type Result = GroupRoundAnswer;

    fn handle(&mut self, msg: GroupRound, ctx: &mut Self::Context) -> GroupRoundAnswer {
        let mut answers = Vec::with_capacity(msg.members.len());
        for &(position, local) in &msg.members {
            let book = self.book_of(local).clone();
            let entity = &mut self.entities[local as usize];
            match msg.phase {
                GroupPhase::Book { slot } => {
                    answers.push((position, entity.book_slot(slot, msg.post, msg.exposure_limit)));
                }
                GroupPhase::Release => entity.release_booking(msg.post),
                GroupPhase::Reserve => {
                    answers.push((position, entity.reserve_slot(&self.cx, msg.at, msg.post, msg.exposure_limit)));
                }
                GroupPhase::Settle { sent } => {
                    let step =
                        entity.settle_slot(&self.cx, &mut self.effects, msg.at, msg.post, msg.group, sent, &book);
                    self.absorb(ctx, local, step);
                }
            }
        }
        GroupRoundAnswer { answers, output: std::mem::take(&mut self.output), next_due: self.queue.next_due() }
    }
}

/// Scheduler → shard: a user joins the running engine (a `/start`, an import, the API).
/// Segmented and planned at once; answered with the shard's next due time.
#[derive(Message, Debug)]
#[rtype(result = "Option<Timestamp>")]
pub struct AddUser {
    /// The engine index the user was given.
    pub index: UserIndex,
    /// Their local index in this shard (the next one).
    pub local: u32,
    /// Who.
    pub profile: crate::domain::UserProfile,
    /// The current time.
    pub at: Timestamp,
    /// Their experiment arm (index into the shard's books; 0 without an experiment).
    pub arm: u16,
    /// The arm's name, recorded on their sends (`None` without an experiment).
    pub arm_name: Option<Arc<str>>,
}

impl Handler<AddUser> for UserShard {
    type Result = Option<Timestamp>;

    fn handle(&mut self, msg: AddUser, _ctx: &mut Self::Context) -> Option<Timestamp> {
        if msg.local as usize != self.entities.len() {
            tracing::error!(shard = self.id, user = %msg.profile.id, "A joining user's place is taken; ignored.");
            return self.queue.next_due();
        }
        let Some(book) = self.books.get(usize::from(msg.arm)).cloned() else {
            tracing::error!(shard = self.id, user = %msg.profile.id, arm = msg.arm, "A joining user's arm does not exist; ignored.");
            return self.queue.next_due();
        };
        let rng = gavat_sim::stream(self.seed, msg.profile.id.0, gavat_sim::Purpose::Engine);
        let mut entity = UserEntity::new(msg.index, msg.profile, rng, msg.arm_name);
        // An empty table means everyone is in arm 0: it is filled in once someone is not.
        if msg.arm != 0 && self.arm_of.is_empty() {
            self.arm_of.resize(self.entities.len(), 0);
        }
        if !self.arm_of.is_empty() {
            self.arm_of.push(msg.arm);
        }
        if let Some((at, token)) = entity.first_plan(&self.cx, msg.at, &book) {
            self.queue.push(at, Work::Wake { user: msg.local, token });
        }
        self.entities.push(entity);
        self.queue.next_due()
    }
}

/// Scheduler → shard: answer once no send is in flight (a shutdown's drain).
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct DrainSends {
    /// Told when the last send in flight has settled.
    pub done: tokio::sync::oneshot::Sender<()>,
}

impl Handler<DrainSends> for UserShard {
    type Result = ();

    fn handle(&mut self, msg: DrainSends, _ctx: &mut Self::Context) {
        if self.in_flight == 0 {
            let _ = msg.done.send(());
        } else {
            self.drain_waiters.push(msg.done);
        }
    }
}

/// Engine → shard: every user's state at the end of a run, with their engine index; with
/// [`PersistPolicy::AtEnd`](super::entity::PersistPolicy::AtEnd) each user's record is
/// saved now.
#[derive(Message, Debug)]
#[rtype(result = "Vec<(UserIndex, u16, UserSnapshot)>")]
pub struct TakeSnapshots {
    /// The current time.
    pub at: Timestamp,
    /// The strategies in force per arm at the end.
    pub books: Vec<Arc<StrategyBook>>,
}

impl Handler<TakeSnapshots> for UserShard {
    type Result = MessageResult<TakeSnapshots>;

    fn handle(&mut self, msg: TakeSnapshots, ctx: &mut Self::Context) -> Self::Result {
        let save = self.cx.persist == super::entity::PersistPolicy::AtEnd;
        let mut snapshots = Vec::with_capacity(self.entities.len());
        for local in 0..self.entities.len() {
            let arm = self.arm_of.get(local).copied().unwrap_or(0);
            let book = msg.books[usize::from(arm)].clone();
            let entity = &mut self.entities[local];
            let snapshot = entity.snapshot(&self.cx, msg.at, &book);
            if save {
                let record: UserRecord = entity.record(&self.cx, msg.at, &book);
                let future = self.store.save_user(&record);
                self.drive_store(ctx, future);
            }
            snapshots.push((self.entities[local].index(), arm, snapshot));
        }
        MessageResult(snapshots)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actors::entity::PersistPolicy;
    use crate::actors::messages::OutcomeKind;
    use crate::actors::queue::ALL_RANKS;
    use crate::domain::{ActivitySummary, DAY, ResponseHistory, UserProfile, Zone};
    use crate::segmentation::SegmentationRules;
    use crate::store::MemoryStore;
    use crate::transport::MemoryTransport;

    const START: Timestamp = Timestamp(1_767_225_600);

    fn warm_lead(id: u64) -> UserProfile {
        UserProfile {
            id: UserId(id),
            joined_at: START.plus(-100 * DAY),
            zone: Zone::UTC,
            activity: ActivitySummary { last_active: START.plus(-DAY), ..ActivitySummary::default() },
            bots_followed: 1,
            purchases: 0,
            responses: ResponseHistory::default(),
        }
    }

    /// A shard of `users` warm leads (engine indices = ids), each with a first plan.
    fn shard(users: u64) -> (UserShard, Vec<(u32, Timestamp, u32)>) {
        let cx = UserContext {
            sender: Arc::new(MemoryTransport::new()),
            ledger: Arc::new(crate::ledger::MemoryLedger::default()),
            run_nonce: 1,
            persist: PersistPolicy::AtEnd,
            rules: Arc::new(SegmentationRules::defaults()),
            wall_scale: 1,
        };
        let book = Arc::new(StrategyBook::defaults());
        let mut entities = Vec::new();
        let mut first_wakes = Vec::new();
        for id in 0..users {
            let rng = gavat_sim::stream(1, id, gavat_sim::Purpose::Engine);
            let mut entity = UserEntity::new(id as u32, warm_lead(id), rng, None);
            if let Some((at, token)) = entity.first_plan(&cx, START, &book) {
                first_wakes.push((id as u32, at, token));
            }
            entities.push(entity);
        }
        let ids: Vec<UserId> = (0..users).map(UserId).collect();
        let placement = Arc::new(Placement::new(&ids, (0..users as u32).map(|i| (0, i)).collect(), 1));
        let parts = ShardParts {
            id: 0,
            entities,
            arm_of: Vec::new(),
            books: vec![book],
            first_wakes: first_wakes.clone(),
            cx,
            store: Arc::new(MemoryStore::keeping_everything()),
            inbound: Arc::new(InboundBuffer::default()),
            placement,
            keep_log: true,
            send_timeout: std::time::Duration::from_secs(1),
            wake_scheduler: Arc::new(tokio::sync::Notify::new()),
            seed: 1,
            source: Arc::new(MemoryTransport::new()),
        };
        (UserShard::new(parts), first_wakes)
    }

    fn run<T: Send + 'static>(f: impl std::future::Future<Output = T> + 'static) -> T {
        actix_rt::System::new().block_on(f)
    }

    /// A window does exactly the work due before its end, in time order, and says when the
    /// next is due; work due later stays queued for the next window.
    #[test]
    fn a_window_runs_what_is_due_and_reports_the_next() {
        run(async {
            let (shard, wakes) = shard(20);
            let first = wakes.iter().map(|w| w.1).min().expect("plans");
            let addr = shard.start();
            let report = addr
                .send(RunUntil { until: first, rank_limit: ALL_RANKS, floor: Timestamp(i64::MIN), books: None })
                .await
                .expect("a report");
            let due_then = wakes.iter().filter(|w| w.1 <= first).count();
            assert_eq!(report.output.dispatched as usize, due_then);
            assert!(report.next_due.is_some_and(|t| t > first), "{:?}", report.next_due);
            let times: Vec<_> = report.output.log.iter().map(|e| e.at).collect();
            assert!(times.windows(2).all(|w| w[0] <= w[1]), "in time order");
            // The rest of the day: every user's first send, and nothing twice.
            let report = addr
                .send(RunUntil {
                    until: START.plus(DAY),
                    rank_limit: ALL_RANKS,
                    floor: Timestamp(i64::MIN),
                    books: None,
                })
                .await
                .expect("a report");
            let sends = report.output.outcomes.iter().filter(|o| matches!(o.kind, OutcomeKind::Sent { .. }));
            let users: std::collections::BTreeSet<_> = sends.map(|o| o.user).collect();
            assert_eq!(users.len() + due_then, 20, "each user's first send, once");
        });
    }

    /// A wake is never run before its time however the window is cut, and a window that
    /// ends before any work does nothing.
    #[test]
    fn nothing_runs_early() {
        run(async {
            let (shard, wakes) = shard(5);
            let first = wakes.iter().map(|w| w.1).min().expect("plans");
            let addr = shard.start();
            let report = addr
                .send(RunUntil {
                    until: first.plus(-1),
                    rank_limit: ALL_RANKS,
                    floor: Timestamp(i64::MIN),
                    books: None,
                })
                .await
                .expect("a report");
            assert_eq!(report.output.dispatched, 0);
            assert_eq!(report.next_due, Some(first));
            // At the instant itself but only kinds before wakes (a group post's turn): nothing.
            let report = addr
                .send(RunUntil { until: first, rank_limit: 2, floor: Timestamp(i64::MIN), books: None })
                .await
                .expect("a report");
            assert_eq!(report.output.dispatched, 0, "wakes rank after group posts");
        });
    }

    /// An inbound event for a user waits in the buffer until the shard's next window and
    /// is handled then; an opt-out stops that user's sends.
    #[test]
    fn inbound_events_are_drained_and_opt_outs_hold() {
        run(async {
            let (shard, wakes) = shard(3);
            let inbound = shard.inbound.clone();
            let addr = shard.start();
            let first = wakes.iter().map(|w| w.1).min().expect("plans");
            for user in 0..3 {
                inbound.push(InboundEvent {
                    at: START.plus(60),
                    user: UserId(user),
                    kind: crate::domain::InboundKind::OptOut,
                    group: None,
                    source: None,
                });
            }
            assert!(inbound.has_events());
            let report = addr
                .send(RunUntil { until: START.plus(3 * DAY), rank_limit: ALL_RANKS, floor: START, books: None })
                .await
                .expect("a report");
            assert!(!inbound.has_events(), "drained");
            let opt_outs = report.output.outcomes.iter().filter(|o| o.kind == OutcomeKind::OptOut).count();
            let sends = report.output.outcomes.iter().filter(|o| matches!(o.kind, OutcomeKind::Sent { .. }));
            assert_eq!(opt_outs, 3);
            assert_eq!(sends.count(), 0, "opted out at {:?}, before the first plan at {first:?}", START.plus(60));
            assert_eq!(report.next_due, None, "nothing planned for opted-out users");
        });
    }

    /// The shard hash is stable, spreads users evenly and stays in range.
    #[test]
    fn users_spread_evenly_and_stably_over_shards() {
        let mut counts = [0usize; 4];
        for id in 0..40_000u64 {
            let s = shard_of(UserId(id), 4);
            assert_eq!(s, shard_of(UserId(id), 4));
            counts[s] += 1;
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
        assert_eq!(shard_of(UserId(7), 1), 0);
        assert_eq!(shard_of(UserId(7), 0), 0, "no shards means one");
    }

    /// A dense directory maps ids to indices directly; a sparse one through a map.
    #[test]
    fn directory_finds_users() {
        let dense = Directory::new(&[UserId(0), UserId(1), UserId(2)]);
        assert_eq!(dense.find(UserId(2)), Some(2));
        assert_eq!(dense.find(UserId(3)), None);
        let sparse = Directory::new(&[UserId(10), UserId(5)]);
        assert_eq!(sparse.find(UserId(5)), Some(1));
        assert_eq!(sparse.find(UserId(0)), None);
    }
}
