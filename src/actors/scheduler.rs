//! `SchedulerActor`: owns the time-ordered queue of due work — planned sends, inbound
//! events, group posts, learner ticks — and the [`Clock`]. It is the only actor that reads
//! time; everyone else gets it inside their messages.
//!
//! Ordering guarantees:
//! - Work is dispatched in key order (see [`super::queue`]): at one instant inbound events
//!   come first (an opt-out takes effect before anything else that second), then group
//!   posts, then planned sends; within a kind, by user (or group) id.
//! - Time advances only when every dispatched piece of work has been acknowledged
//!   (`outstanding == 0`): all work of an instant, and everything it causes at that instant,
//!   is done before the scheduler asks the clock for the next key. A virtual clock jumps
//!   there at once; a system or scaled clock hands back a sleep. Handlers never wait for
//!   I/O, so on a real clock the work of an instant takes microseconds.
//! - A send still in flight (a slow transport) is not outstanding work: it counts against
//!   the user's caps until its [`SendSettled`] arrives, and nobody waits for it — except a
//!   shutdown, which waits for every send in flight (each bounded by the send timeout).
//! - Outcomes reach the statistics actors in batches, in the order they were recorded.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use actix::prelude::*;
use futures::FutureExt;
use tokio::sync::oneshot;

use crate::audit::CapAudit;
use crate::clock::Clock;
use crate::config::StrategyBook;
use crate::domain::{
    Caps, ContentKind, Destination, GroupProfile, InboundEvent, OutboundMessage, Segment, Timestamp, UserId,
};
use crate::learner::StrategyChange;
use crate::policy::{CapState, Decision, PostRateWindow, SuppressReason, decide, plan_next_send};
use crate::transport::{Delivered, Transport, TransportError};

use super::learner::{Learn, StrategyUpdate};
use super::messages::*;
use super::queue::{Work, WorkQueue};
use super::user::UserActor;

/// Outcomes buffered before a batch goes to the statistics actors.
const OUTCOME_BATCH: usize = 4_096;

/// The caps and cadence of group posts (from the scenario or the live configuration).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GroupPolicy {
    /// The group's own caps, in the group's local time.
    pub caps: Caps,
    /// Preferred local hours.
    pub optimal_hours: crate::domain::HourMask,
    /// Telegram's limit on group posts per minute, across all groups.
    pub posts_per_minute: u32,
    /// How long after a post (or a held-back one) the next is considered, seconds.
    pub interval_secs: i64,
}

#[derive(Debug)]
struct GroupState {
    profile: GroupProfile,
    members: Vec<UserIndex>,
    caps_state: CapState,
    posts: u32,
    /// The post booked with every member, and its slot.
    booking: Option<(u64, Timestamp)>,
    /// Booking rounds tried in a row without success.
    booking_rounds: u32,
}

/// Booking rounds tried at one instant before waiting for the retry time.
const MAX_BOOKING_ROUNDS: u32 = 4;

/// Which round of a group post the members are answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Will you keep the slot free? (ahead of time)
    Booking,
    /// May the post reach you now? (at the slot)
    Reserving,
}

/// A group post waiting for its members' answers.
#[derive(Debug)]
struct PostInFlight {
    group: usize,
    /// When the round was asked.
    at: Timestamp,
    /// The slot the post is for.
    slot: Timestamp,
    phase: Phase,
    waiting: usize,
    granted: Vec<UserIndex>,
    refused: Option<SuppressReason>,
    /// The latest time a refusing member could take a message (`None` while nobody
    /// refused, or when one never could).
    retry_at: Option<Timestamp>,
    /// A refusing member can never take one under the current caps.
    blocked_for_good: bool,
}

impl PostInFlight {
    fn new(group: usize, at: Timestamp, slot: Timestamp, phase: Phase, members: usize) -> PostInFlight {
        PostInFlight {
            group,
            at,
            slot,
            phase,
            waiting: members,
            granted: Vec::with_capacity(members),
            refused: None,
            retry_at: None,
            blocked_for_good: false,
        }
    }
}

/// Finds a user's actor from their id.
#[derive(Debug)]
enum Directory {
    /// Ids are `0..n`: the id is the index.
    Dense(usize),
    /// Any ids.
    Map(HashMap<UserId, UserIndex>),
}

impl Directory {
    fn new(ids: &[UserId]) -> Directory {
        if ids.iter().enumerate().all(|(i, id)| id.0 == i as u64) {
            Directory::Dense(ids.len())
        } else {
            Directory::Map(ids.iter().enumerate().map(|(i, id)| (*id, i as UserIndex)).collect())
        }
    }

    fn find(&self, id: UserId) -> Option<UserIndex> {
        match self {
            Directory::Dense(n) => (id.0 < *n as u64).then_some(id.0 as UserIndex),
            Directory::Map(m) => m.get(&id).copied(),
        }
    }
}

/// Counts of the scheduler's own work, for the report.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SchedulerSummary {
    /// The learner's audit trail (empty without a learner).
    pub strategy_changes: Vec<StrategyChange>,
    /// Each arm's strategies in force at the end, where a learner changed them.
    pub final_books: Vec<Option<Arc<StrategyBook>>>,
    /// The learner's notes that are not audit entries (an adviser's failures).
    pub learner_notes: Vec<(crate::domain::Timestamp, String)>,
    /// What the LLM adviser did, if there was one.
    pub adviser: Option<super::learner::AdviserStats>,
    /// Work items dispatched (wakes, inbound events, group posts, ticks).
    pub dispatched: u64,
    /// Inbound events for users the engine does not know (dropped, logged).
    pub unknown_users: u64,
    /// Group posts sent.
    pub group_posts: u64,
    /// Group posts held back, by reason (a member at a cap, the platform's rate limit).
    pub group_posts_held: BTreeMap<SuppressReason, u64>,
    /// Cap violations found by the independent audit (must be 0).
    pub cap_violations: u64,
    /// The first violations, described.
    pub violation_examples: Vec<String>,
    /// The virtual (or real) time at the end.
    pub ended_at: Timestamp,
}

/// Reports progress as the clock moves (simulation: once per simulated hour).
pub type ProgressFn = Box<dyn FnMut(Timestamp)>;

/// The scheduler.
pub struct SchedulerActor {
    clock: Arc<dyn Clock>,
    horizon: Option<Timestamp>,
    queue: WorkQueue,
    users: Arc<[Addr<UserActor>]>,
    directory: Directory,
    user_ids: Vec<UserId>,
    inbound: Arc<InboundBuffer>,
    inbound_spare: Vec<InboundEvent>,
    /// The strategies of each experiment arm (one entry without an experiment).
    books: Vec<Arc<StrategyBook>>,
    /// Each user's arm (empty without an experiment).
    arm_of: Vec<u16>,
    outstanding: usize,
    groups: Vec<GroupState>,
    group_policy: Option<GroupPolicy>,
    group_rate: PostRateWindow,
    posts: BTreeMap<u64, PostInFlight>,
    next_post_id: u64,
    transport: Arc<dyn Transport>,
    outcome_buffer: Vec<Outcome>,
    listeners: Vec<Recipient<OutcomesRecorded>>,
    /// The learner to ask at every tick (only when the engine learns).
    learner: Option<Recipient<Learn>>,
    /// The arms whose strategies the learner re-plans.
    learning_arms: Vec<bool>,
    /// This actor's address, for the learner's answers.
    me: Option<Addr<SchedulerActor>>,
    audit: CapAudit,
    learner_interval_secs: i64,
    send_timeout: std::time::Duration,
    summary: SchedulerSummary,
    progress: Option<ProgressFn>,
    last_progress_hour: i64,
    finished: Option<oneshot::Sender<SchedulerSummary>>,
    timer_armed_for: Option<Timestamp>,
    /// Sends and group posts handed to the transport and not yet answered.
    in_flight: usize,
    /// A shutdown was asked for: dispatch nothing more, finish when nothing is in flight.
    stopping: bool,
}

impl std::fmt::Debug for SchedulerActor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchedulerActor")
            .field("queued", &self.queue.len())
            .field("outstanding", &self.outstanding)
            .finish_non_exhaustive()
    }
}

/// Everything the scheduler is built from.
#[derive(Debug)]
pub struct SchedulerParts {
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// Stop at this time (simulation); `None` runs until stopped.
    pub horizon: Option<Timestamp>,
    /// The strategies of each experiment arm (one entry without an experiment).
    pub books: Vec<Arc<StrategyBook>>,
    /// Each user's arm, by index (empty: everyone uses `books[0]`).
    pub arm_of: Vec<u16>,
    /// User ids in index order.
    pub user_ids: Vec<UserId>,
    /// Where the transport's sink leaves inbound events.
    pub inbound: Arc<InboundBuffer>,
    /// Groups and their policy.
    pub groups: Vec<GroupProfile>,
    /// The group policy (no group posts without one).
    pub group_policy: Option<GroupPolicy>,
    /// For group posts.
    pub transport: Arc<dyn Transport>,
    /// Statistics actors.
    pub listeners: Vec<Recipient<OutcomesRecorded>>,
    /// The learner to ask at every tick; `None` keeps the strategies fixed.
    pub learner: Option<Recipient<Learn>>,
    /// Which arms (by index into `books`) the learner re-plans.
    pub learning_arms: Vec<bool>,
    /// Learner cadence, seconds.
    pub learner_interval_secs: i64,
    /// How long a group post may take before its outcome is unknown.
    pub send_timeout: std::time::Duration,
    /// Told the summary when the run ends.
    pub finished: oneshot::Sender<SchedulerSummary>,
}

impl SchedulerActor {
    /// A scheduler; users are attached with [`AttachUsers`] before [`Start`].
    pub fn new(parts: SchedulerParts, progress: Option<ProgressFn>) -> SchedulerActor {
        let directory = Directory::new(&parts.user_ids);
        let n = parts.user_ids.len();
        let arms = parts.books.len();
        let groups = parts
            .groups
            .into_iter()
            .map(|profile| GroupState {
                members: profile.members.iter().filter_map(|m| directory.find(*m)).collect(),
                profile,
                caps_state: CapState::default(),
                posts: 0,
                booking: None,
                booking_rounds: 0,
            })
            .collect();
        let per_minute = parts.group_policy.map(|p| p.posts_per_minute).unwrap_or(20);
        SchedulerActor {
            clock: parts.clock,
            horizon: parts.horizon,
            queue: WorkQueue::new(),
            users: Arc::from(Vec::new()),
            directory,
            user_ids: parts.user_ids,
            inbound: parts.inbound,
            inbound_spare: Vec::new(),
            books: parts.books,
            arm_of: parts.arm_of,
            outstanding: 0,
            groups,
            group_policy: parts.group_policy,
            group_rate: PostRateWindow::new(per_minute),
            posts: BTreeMap::new(),
            next_post_id: 1,
            transport: parts.transport,
            outcome_buffer: Vec::with_capacity(OUTCOME_BATCH),
            listeners: parts.listeners,
            learner: parts.learner,
            learning_arms: parts.learning_arms,
            me: None,
            audit: CapAudit::new(n),
            learner_interval_secs: parts.learner_interval_secs,
            send_timeout: parts.send_timeout,
            summary: SchedulerSummary { final_books: vec![None; arms], ..SchedulerSummary::default() },
            progress,
            last_progress_hour: i64::MIN,
            finished: Some(parts.finished),
            timer_armed_for: None,
            in_flight: 0,
            stopping: false,
        }
    }

    fn push(&mut self, at: Timestamp, work: Work) {
        self.queue.push(at, work);
    }

    /// The strategies of `user`'s arm.
    fn book_for(&self, user: UserIndex) -> Arc<StrategyBook> {
        let arm = self.arm_of.get(user as usize).copied().unwrap_or(0);
        self.books[usize::from(arm)].clone()
    }

    /// Moves events the transport reported into the queue (never earlier than now).
    fn drain_inbound(&mut self) {
        self.inbound.take_into(&mut self.inbound_spare);
        if self.inbound_spare.is_empty() {
            return;
        }
        let now = self.clock.now();
        let mut events = std::mem::take(&mut self.inbound_spare);
        for event in events.drain(..) {
            match self.directory.find(event.user) {
                Some(user) => {
                    self.push(event.at.max(now), Work::Inbound { user, kind: event.kind, group: event.group })
                }
                None => {
                    self.summary.unknown_users += 1;
                    tracing::warn!(user = %event.user, kind = event.kind.as_str(), "Inbound event for an unknown user dropped.");
                }
            }
        }
        self.inbound_spare = events;
    }

    /// Dispatches due work, one instant at a time, until something is outstanding, the next
    /// key is in the clock's future (a timer is armed), or the run is over.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        if self.me.is_none() {
            return; // not started: a nudge before `Start` waits for it
        }
        self.drain_inbound();
        loop {
            if self.outstanding > 0 {
                return;
            }
            if self.stopping {
                return self.finish_if_idle();
            }
            let next = self.queue.next_due().filter(|at| self.horizon.is_none_or(|h| *at <= h));
            // Nothing due before the horizon: wait for the horizon itself (live runs without
            // one wait for inbound events or a shutdown).
            let Some(at) = next.or(self.horizon) else { return };
            if let Some(sleep) = self.clock.sleep_until(at) {
                return self.arm_timer(ctx, at, sleep);
            }
            if next.is_none() {
                return self.finish_if_idle();
            }
            // A late real clock dispatches at its own now: sends are stamped when they go out.
            let now = self.clock.now().max(at);
            self.report_progress(now);
            while let Some(work) = self.queue.pop_at(at) {
                self.summary.dispatched += 1;
                self.dispatch(now, work);
            }
        }
    }

    fn arm_timer(&mut self, ctx: &mut Context<Self>, at: Timestamp, sleep: crate::clock::SleepFuture) {
        if self.timer_armed_for.is_some_and(|t| t <= at) {
            return;
        }
        self.timer_armed_for = Some(at);
        ctx.spawn(sleep.into_actor(self).map(|(), act, ctx| {
            act.timer_armed_for = None;
            act.pump(ctx);
        }));
    }

    fn report_progress(&mut self, at: Timestamp) {
        let hour = at.secs().div_euclid(3_600);
        if hour != self.last_progress_hour {
            self.last_progress_hour = hour;
            if let Some(progress) = self.progress.as_mut() {
                progress(at);
            }
        }
    }

    fn dispatch(&mut self, at: Timestamp, work: Work) {
        match work {
            Work::Wake { user, token } => {
                self.outstanding += 1;
                self.users[user as usize].do_send(Wake { at, token, book: self.book_for(user) });
            }
            Work::Inbound { user, kind, group } => {
                self.outstanding += 1;
                let event = InboundEvent { at, user: self.user_ids[user as usize], kind, group };
                self.users[user as usize].do_send(DeliverInbound { event, book: self.book_for(user) });
            }
            Work::GroupPost { group } => self.start_group_post(at, group as usize),
            Work::LearnerTick => {
                self.flush_outcomes();
                if self.learner_interval_secs > 0 {
                    self.push(at.plus(self.learner_interval_secs), Work::LearnerTick);
                }
                // Each learning arm (arm 0 in a run without arms) is re-planned from its own users.
                if let (Some(learner), Some(me)) = (&self.learner, &self.me) {
                    for (arm, _) in self.learning_arms.iter().enumerate().filter(|(_, learns)| **learns) {
                        self.outstanding += 1;
                        learner.do_send(Learn {
                            at,
                            arm: arm as u16,
                            book: self.books[arm].clone(),
                            reply_to: me.clone().recipient(),
                        });
                    }
                }
            }
        }
    }

    fn record(&mut self, outcome: Outcome) {
        match outcome.kind {
            OutcomeKind::Sent { caps, offset, .. } => self.audit.check_send(outcome.index, outcome.at, caps, offset),
            OutcomeKind::OptOut => self.audit.record_opt_out(outcome.index, outcome.at),
            _ => {}
        }
        self.outcome_buffer.push(outcome);
        if self.outcome_buffer.len() >= OUTCOME_BATCH {
            self.flush_outcomes();
        }
    }

    fn flush_outcomes(&mut self) {
        if self.outcome_buffer.is_empty() {
            return;
        }
        let batch = Arc::new(std::mem::replace(&mut self.outcome_buffer, Vec::with_capacity(OUTCOME_BATCH)));
        for listener in &self.listeners {
            listener.do_send(OutcomesRecorded { outcomes: batch.clone() });
        }
    }

    fn finish_if_idle(&mut self) {
        if self.outstanding > 0 || self.in_flight > 0 || (!self.posts.is_empty() && !self.stopping) {
            return;
        }
        let Some(finished) = self.finished.take() else { return };
        self.flush_outcomes();
        let now = self.clock.now();
        self.summary.cap_violations = self.audit.violations();
        self.summary.violation_examples = self.audit.examples().to_vec();
        self.summary.ended_at = match self.horizon {
            Some(h) if !self.stopping => h,
            _ => now,
        };
        let _ = finished.send(self.summary.clone());
    }

    // ---- group posts -------------------------------------------------------------------

    /// Plans a group's next post at or after `not_before` and books the slot with every
    /// member now.
    fn plan_group(&mut self, group: usize, not_before: Timestamp) {
        let Some(policy) = self.group_policy else { return };
        let g = &self.groups[group];
        let jitter = ((g.profile.id.0.wrapping_mul(2_654_435_761) ^ u64::from(g.posts)) % 3_600) as i64;
        let Some(slot) =
            plan_next_send(&g.caps_state, &policy.caps, policy.optimal_hours, g.profile.utc_offset, not_before, jitter)
        else {
            return;
        };
        if g.members.is_empty() {
            return;
        }
        let now = self.clock.now();
        let post = self.next_post_id;
        self.next_post_id += 1;
        let members = g.members.clone();
        self.posts.insert(post, PostInFlight::new(group, now, slot, Phase::Booking, members.len()));
        for member in members {
            self.outstanding += 1;
            self.users[member as usize].do_send(BookGroupSlot { at: now, slot, post, book: self.book_for(member) });
        }
    }

    /// A booking round is complete: keep the slot, or release it and try a later one.
    fn finish_booking(&mut self, post: u64) {
        let Some(flight) = self.posts.remove(&post) else { return };
        let Some(policy) = self.group_policy else { return };
        let g = &mut self.groups[flight.group];
        if flight.refused.is_none() {
            g.booking = Some((post, flight.slot));
            g.booking_rounds = 0;
            self.push(flight.slot, Work::GroupPost { group: flight.group as u32 });
            return;
        }
        for &member in &flight.granted {
            self.outstanding += 1;
            self.users[member as usize].do_send(ReleaseGroupBooking { post });
        }
        g.booking_rounds += 1;
        let retry = match flight.retry_at {
            Some(t) if !flight.blocked_for_good => t.max(flight.slot.plus(60)),
            _ => flight.slot.plus(policy.interval_secs),
        };
        if g.booking_rounds < MAX_BOOKING_ROUNDS {
            self.plan_group(flight.group, retry);
        } else {
            // Stop haggling this instant; start afresh when the retry time comes.
            g.booking_rounds = 0;
            self.push(retry, Work::GroupPost { group: flight.group as u32 });
        }
    }

    /// A group's planned time has come: with a booking for it, reserve the members' slots;
    /// without one, book a slot first.
    fn start_group_post(&mut self, at: Timestamp, group: usize) {
        let Some(policy) = self.group_policy else { return };
        let g = &mut self.groups[group];
        let Some((post, _)) = g.booking.take() else {
            return self.plan_group(group, at);
        };
        let members = g.members.clone();
        let release = |act: &mut SchedulerActor| {
            for &member in &members {
                act.outstanding += 1;
                act.users[member as usize].do_send(ReleaseGroupBooking { post });
            }
        };
        if let Decision::Suppress { not_before, .. } = decide(&g.caps_state, &policy.caps, g.profile.utc_offset, at) {
            release(self);
            if let Some(t) = not_before {
                self.plan_group(group, t);
            }
            return;
        }
        if let Some(free_at) = self.group_rate.next_free(at) {
            // Telegram's 20 posts a minute: wait for a free place, keeping the booking (the
            // members re-check every cap when the post is reserved).
            self.suppressed_group_post(SuppressReason::PlatformRate);
            self.groups[group].booking = Some((post, free_at));
            self.push(free_at, Work::GroupPost { group: group as u32 });
            return;
        }
        let gid = self.groups[group].profile.id;
        self.posts.insert(post, PostInFlight::new(group, at, at, Phase::Reserving, members.len()));
        for &member in &members {
            self.outstanding += 1;
            self.users[member as usize].do_send(ReserveGroupSlot { at, post, group: gid, book: self.book_for(member) });
        }
    }

    fn suppressed_group_post(&mut self, reason: SuppressReason) {
        *self.summary.group_posts_held.entry(reason).or_default() += 1;
    }

    /// A reservation round is complete: send the post if every member can take it.
    fn finish_reservation(&mut self, ctx: &mut Context<Self>, post: u64) {
        let Some(flight) = self.posts.remove(&post) else { return };
        let Some(policy) = self.group_policy else { return };
        if flight.refused.is_some() || flight.granted.is_empty() {
            if flight.refused.is_some() {
                self.suppressed_group_post(SuppressReason::MemberCap);
            }
            self.settle(&flight, post, false, "");
            let retry = match flight.retry_at {
                Some(t) if !flight.blocked_for_good => t.max(flight.at.plus(60)),
                _ => flight.at.plus(policy.interval_secs),
            };
            self.plan_group(flight.group, retry);
            return;
        }
        let gid = self.groups[flight.group].profile.id;
        let message = OutboundMessage {
            id: post,
            to: Destination::Group(gid),
            bot: crate::domain::BotId(0),
            content: ContentKind::Community,
            segment: Segment::Engaged,
            at: flight.at,
        };
        let mut fut = self.transport.send(&message);
        match (&mut fut).now_or_never() {
            Some(result) => self.after_group_send(flight, post, result),
            None => {
                // Real I/O: the members' slots stay reserved while the post is in flight;
                // everything else goes on.
                self.in_flight += 1;
                let timeout = self.send_timeout;
                let bounded = async move {
                    tokio::time::timeout(timeout, fut).await.unwrap_or_else(|_| {
                        Err(TransportError::Unknown { reason: format!("no answer within {} ms", timeout.as_millis()) })
                    })
                };
                ctx.spawn(bounded.into_actor(self).map(move |result, act, ctx| {
                    act.in_flight -= 1;
                    act.after_group_send(flight, post, result);
                    act.pump(ctx);
                }));
            }
        }
    }

    fn settle(&mut self, flight: &PostInFlight, post: u64, sent: bool, outcome: &'static str) {
        let gid = self.groups[flight.group].profile.id;
        for &member in &flight.granted {
            self.outstanding += 1;
            self.users[member as usize].do_send(SettleGroupSlot {
                at: flight.at,
                post,
                group: gid,
                sent,
                outcome,
                book: self.book_for(member),
            });
        }
    }

    fn after_group_send(&mut self, flight: PostInFlight, post: u64, result: Result<Delivered, TransportError>) {
        let Some(policy) = self.group_policy else { return };
        let group = flight.group;
        match result {
            Ok(Delivered) | Err(TransportError::Unknown { .. }) => {
                let outcome = if result.is_ok() { "delivered" } else { "unknown" };
                let g = &mut self.groups[group];
                g.caps_state.record_send(flight.at, g.profile.utc_offset);
                g.posts += 1;
                self.group_rate.record(flight.at);
                self.summary.group_posts += 1;
                self.settle(&flight, post, true, outcome);
                self.plan_group(group, flight.at.plus(policy.interval_secs));
            }
            Err(TransportError::RateLimited { retry_after_secs }) => {
                self.settle(&flight, post, false, "");
                self.plan_group(group, flight.at.plus(i64::from(retry_after_secs.max(1))));
            }
            Err(TransportError::Transient { .. }) => {
                self.settle(&flight, post, false, "");
                self.plan_group(group, flight.at.plus(60));
            }
            Err(e) => {
                let gid = self.groups[group].profile.id;
                tracing::error!(group = gid.0, error = %e, "Group post failed; group no longer posted to.");
                self.settle(&flight, post, false, "");
            }
        }
    }
}

impl Actor for SchedulerActor {
    type Context = Context<Self>;
}

/// Engine → scheduler: the user actors, in index order.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct AttachUsers {
    /// The addresses.
    pub users: Arc<[Addr<UserActor>]>,
    /// Each user's first planned wake, if any, as `(index, at, token)`.
    pub first_wakes: Vec<(UserIndex, Timestamp, u32)>,
}

impl Handler<AttachUsers> for SchedulerActor {
    type Result = ();

    fn handle(&mut self, msg: AttachUsers, _ctx: &mut Self::Context) {
        self.users = msg.users;
        for (user, at, token) in msg.first_wakes {
            self.push(at, Work::Wake { user, token });
        }
    }
}

/// Engine → scheduler: begin dispatching.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Start;

impl Handler<Start> for SchedulerActor {
    type Result = ();

    fn handle(&mut self, _msg: Start, ctx: &mut Self::Context) {
        self.me = Some(ctx.address());
        let now = self.clock.now();
        if self.learner_interval_secs > 0 {
            self.push(now.plus(self.learner_interval_secs), Work::LearnerTick);
        }
        for group in 0..self.groups.len() {
            self.plan_group(group, now);
        }
        self.pump(ctx);
    }
}

impl Handler<WorkDone> for SchedulerActor {
    type Result = ();

    fn handle(&mut self, msg: WorkDone, ctx: &mut Self::Context) {
        self.outstanding = self.outstanding.saturating_sub(1);
        self.in_flight += usize::from(msg.send_in_flight);
        if let Some(outcome) = msg.outcome {
            self.record(outcome);
        }
        if let Some((at, token)) = msg.next_wake {
            self.push(at, Work::Wake { user: msg.user, token });
        }
        self.pump(ctx);
    }
}

impl Handler<SendSettled> for SchedulerActor {
    type Result = ();

    fn handle(&mut self, msg: SendSettled, ctx: &mut Self::Context) {
        self.in_flight = self.in_flight.saturating_sub(1);
        if let Some(outcome) = msg.outcome {
            self.record(outcome);
        }
        if let Some((at, token)) = msg.next_wake {
            self.push(at, Work::Wake { user: msg.user, token });
        }
        self.pump(ctx);
    }
}

/// Engine → scheduler: stop planning and dispatching; finish once every send in flight has
/// its answer (each is bounded by the send timeout).
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Shutdown;

impl Handler<Shutdown> for SchedulerActor {
    type Result = ();

    fn handle(&mut self, _msg: Shutdown, ctx: &mut Self::Context) {
        self.stopping = true;
        self.pump(ctx);
    }
}

impl Handler<StrategyUpdate> for SchedulerActor {
    type Result = ();

    fn handle(&mut self, msg: StrategyUpdate, ctx: &mut Self::Context) {
        self.outstanding = self.outstanding.saturating_sub(1);
        if let Some(book) = msg.book {
            // From now on every wake and event of the arm carries the new strategies; the
            // caps each send is audited against are the ones in force at that send.
            let arm = usize::from(msg.arm);
            if arm < self.books.len() {
                self.books[arm] = book.clone();
                self.summary.final_books[arm] = Some(book);
            }
        }
        self.summary.strategy_changes.extend(msg.changes);
        self.summary.learner_notes.extend(msg.notes);
        if msg.adviser.is_some() {
            self.summary.adviser = msg.adviser;
        }
        self.pump(ctx);
    }
}

impl Handler<InboundPending> for SchedulerActor {
    type Result = ();

    fn handle(&mut self, _msg: InboundPending, ctx: &mut Self::Context) {
        self.pump(ctx);
    }
}

impl Handler<GroupSlotAnswered> for SchedulerActor {
    type Result = ();

    fn handle(&mut self, msg: GroupSlotAnswered, ctx: &mut Self::Context) {
        self.outstanding = self.outstanding.saturating_sub(1);
        if let Some((at, token)) = msg.next_wake {
            self.push(at, Work::Wake { user: msg.user, token });
        }
        let complete = match self.posts.get_mut(&msg.post) {
            Some(flight) => {
                flight.waiting -= 1;
                match msg.answer {
                    SlotAnswer::Granted => flight.granted.push(msg.user),
                    SlotAnswer::Refused { reason, not_before } => {
                        flight.refused.get_or_insert(reason);
                        match not_before {
                            Some(t) => flight.retry_at = Some(flight.retry_at.map_or(t, |r| r.max(t))),
                            None => flight.blocked_for_good = true,
                        }
                    }
                    SlotAnswer::Absent => {}
                }
                (flight.waiting == 0).then_some(flight.phase)
            }
            None => None,
        };
        match complete {
            Some(Phase::Booking) => self.finish_booking(msg.post),
            Some(Phase::Reserving) => self.finish_reservation(ctx, msg.post),
            None => {}
        }
        self.pump(ctx);
    }
}
