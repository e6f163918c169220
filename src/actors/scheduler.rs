//! `SchedulerActor`: owns the time-ordered queue of due work — planned sends, inbound
//! events, group posts, learner ticks — and the [`Clock`]. It is the only actor that reads
//! time; everyone else gets it inside their messages.
//!
//! Ordering guarantees:
//! - Work is dispatched in key order (see [`super::queue`]): at one instant inbound events
//!   come first (an opt-out takes effect before anything else that second), then group
//!   posts, then planned sends; within a kind, by user (or group) id.
//! - On a virtual clock, time advances only when every dispatched piece of work has been
//!   acknowledged (`outstanding == 0`): all work of an instant, and everything it causes at
//!   that instant, is done before the clock moves. The clock then jumps to the next key.
//! - On a real clock the scheduler sleeps until the next key is due and does not wait.
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
use crate::policy::{CapState, Decision, PostRateWindow, SuppressReason, decide, plan_next_send};
use crate::transport::{Delivered, Transport, TransportError};

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
}

/// A group post waiting for its members' answers.
#[derive(Debug)]
struct PostInFlight {
    group: usize,
    at: Timestamp,
    waiting: usize,
    granted: Vec<UserIndex>,
    refused: Option<SuppressReason>,
    /// The latest time a refusing member could take a message (`None` while nobody
    /// refused, or when one never could).
    retry_at: Option<Timestamp>,
    /// A refusing member can never take one under the current caps.
    blocked_for_good: bool,
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
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SchedulerSummary {
    /// Work items dispatched (wakes, inbound events, group posts, ticks).
    pub dispatched: u64,
    /// Inbound events for users the engine does not know (dropped, logged).
    pub unknown_users: u64,
    /// Group posts sent.
    pub group_posts: u64,
    /// Group posts held back, by reason (a member at a cap, the platform's rate limit).
    pub group_posts_held: BTreeMap<SuppressReason, u64>,
    /// Items still queued when the run ended (due after the horizon).
    pub queued_at_end: usize,
    /// Items due within an hour of the end.
    pub due_within_hour_at_end: usize,
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
    inbound: InboundBuffer,
    inbound_spare: Vec<InboundEvent>,
    book: Arc<StrategyBook>,
    outstanding: usize,
    groups: Vec<GroupState>,
    group_policy: Option<GroupPolicy>,
    group_rate: PostRateWindow,
    posts: BTreeMap<u64, PostInFlight>,
    next_post_id: u64,
    transport: Arc<dyn Transport>,
    outcome_buffer: Vec<Outcome>,
    listeners: Vec<Recipient<OutcomesRecorded>>,
    audit: CapAudit,
    learner_interval_secs: i64,
    summary: SchedulerSummary,
    progress: Option<ProgressFn>,
    last_progress_hour: i64,
    finished: Option<oneshot::Sender<SchedulerSummary>>,
    timer_armed_for: Option<Timestamp>,
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
    /// The strategies in force.
    pub book: Arc<StrategyBook>,
    /// User ids in index order.
    pub user_ids: Vec<UserId>,
    /// Where the transport's sink leaves inbound events.
    pub inbound: InboundBuffer,
    /// Groups and their policy.
    pub groups: Vec<GroupProfile>,
    /// The group policy (no group posts without one).
    pub group_policy: Option<GroupPolicy>,
    /// For group posts.
    pub transport: Arc<dyn Transport>,
    /// Statistics actors.
    pub listeners: Vec<Recipient<OutcomesRecorded>>,
    /// Learner cadence, seconds.
    pub learner_interval_secs: i64,
    /// Told the summary when the run ends.
    pub finished: oneshot::Sender<SchedulerSummary>,
}

impl SchedulerActor {
    /// A scheduler; users are attached with [`AttachUsers`] before [`Start`].
    pub fn new(parts: SchedulerParts, progress: Option<ProgressFn>) -> SchedulerActor {
        let directory = Directory::new(&parts.user_ids);
        let n = parts.user_ids.len();
        let groups = parts
            .groups
            .into_iter()
            .map(|profile| GroupState {
                members: profile.members.iter().filter_map(|m| directory.find(*m)).collect(),
                profile,
                caps_state: CapState::default(),
                posts: 0,
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
            book: parts.book,
            outstanding: 0,
            groups,
            group_policy: parts.group_policy,
            group_rate: PostRateWindow::new(per_minute),
            posts: BTreeMap::new(),
            next_post_id: 1,
            transport: parts.transport,
            outcome_buffer: Vec::with_capacity(OUTCOME_BATCH),
            listeners: parts.listeners,
            audit: CapAudit::new(n),
            learner_interval_secs: parts.learner_interval_secs,
            summary: SchedulerSummary::default(),
            progress,
            last_progress_hour: i64::MIN,
            finished: Some(parts.finished),
            timer_armed_for: None,
        }
    }

    fn push(&mut self, at: Timestamp, work: Work) {
        self.queue.push(at, work);
    }

    /// Moves events the transport reported into the queue (never earlier than now).
    fn drain_inbound(&mut self) {
        {
            let mut buffer = self.inbound.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if buffer.is_empty() {
                return;
            }
            std::mem::swap(&mut *buffer, &mut self.inbound_spare);
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

    /// Dispatches due work until something is outstanding (virtual clock) or nothing is
    /// due yet (real clock).
    fn pump(&mut self, ctx: &mut Context<Self>) {
        self.drain_inbound();
        loop {
            if self.clock.is_virtual() && self.outstanding > 0 {
                return;
            }
            let Some(at) = self.queue.next_due() else {
                return self.finish_if_idle();
            };
            if self.horizon.is_some_and(|h| at > h) {
                return self.finish_if_idle();
            }
            if !self.clock.is_virtual() && at > self.clock.now() {
                return self.arm_timer(ctx, at);
            }
            if self.clock.is_virtual() {
                // A virtual clock jumps; nothing to wait for.
                let _ = self.clock.sleep_until(at);
            }
            self.report_progress(at);
            while let Some(work) = self.queue.pop_at(at) {
                self.summary.dispatched += 1;
                self.dispatch(at, work);
            }
        }
    }

    fn arm_timer(&mut self, ctx: &mut Context<Self>, at: Timestamp) {
        if self.timer_armed_for.is_some_and(|t| t <= at) {
            return;
        }
        let Some(sleep) = self.clock.sleep_until(at) else {
            return self.pump(ctx);
        };
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
                self.users[user as usize].do_send(Wake { at, token, book: self.book.clone() });
            }
            Work::Inbound { user, kind, group } => {
                self.outstanding += 1;
                let event = InboundEvent { at, user: self.user_ids[user as usize], kind, group };
                self.users[user as usize].do_send(DeliverInbound { event, book: self.book.clone() });
            }
            Work::GroupPost { group } => self.start_group_post(at, group as usize),
            Work::LearnerTick => {
                self.flush_outcomes();
                if self.learner_interval_secs > 0 {
                    self.push(at.plus(self.learner_interval_secs), Work::LearnerTick);
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
        if self.outstanding > 0 || !self.posts.is_empty() {
            return;
        }
        let Some(finished) = self.finished.take() else { return };
        self.flush_outcomes();
        let now = self.clock.now();
        self.summary.queued_at_end = self.queue.len();
        self.summary.due_within_hour_at_end = self.queue.due_by(now.plus(3_600));
        self.summary.cap_violations = self.audit.violations();
        self.summary.violation_examples = self.audit.examples().to_vec();
        self.summary.ended_at = self.horizon.unwrap_or(now);
        let _ = finished.send(self.summary.clone());
    }

    // ---- group posts -------------------------------------------------------------------

    fn plan_group(&mut self, group: usize, not_before: Timestamp) {
        let Some(policy) = self.group_policy else { return };
        let g = &self.groups[group];
        let jitter = ((g.profile.id.0.wrapping_mul(2_654_435_761) ^ u64::from(g.posts)) % 3_600) as i64;
        if let Some(at) =
            plan_next_send(&g.caps_state, &policy.caps, policy.optimal_hours, g.profile.utc_offset, not_before, jitter)
        {
            self.push(at, Work::GroupPost { group: group as u32 });
        }
    }

    fn start_group_post(&mut self, at: Timestamp, group: usize) {
        let Some(policy) = self.group_policy else { return };
        let g = &self.groups[group];
        match decide(&g.caps_state, &policy.caps, g.profile.utc_offset, at) {
            Decision::Send => {}
            Decision::Suppress { not_before, .. } => {
                if let Some(t) = not_before {
                    self.plan_group(group, t);
                }
                return;
            }
        }
        if let Some(free_at) = self.group_rate.next_free(at) {
            self.suppressed_group_post(SuppressReason::PlatformRate);
            self.push(free_at, Work::GroupPost { group: group as u32 });
            return;
        }
        if g.members.is_empty() {
            return self.plan_group(group, at.plus(policy.interval_secs));
        }
        let post = self.next_post_id;
        self.next_post_id += 1;
        let members = g.members.clone();
        self.posts.insert(
            post,
            PostInFlight {
                group,
                at,
                waiting: members.len(),
                granted: Vec::with_capacity(members.len()),
                refused: None,
                retry_at: None,
                blocked_for_good: false,
            },
        );
        let gid = g.profile.id;
        for member in members {
            self.outstanding += 1;
            self.users[member as usize].do_send(ReserveGroupSlot { at, post, group: gid, book: self.book.clone() });
        }
    }

    fn suppressed_group_post(&mut self, reason: SuppressReason) {
        *self.summary.group_posts_held.entry(reason).or_default() += 1;
    }

    fn finish_group_post(&mut self, post: u64) {
        let Some(flight) = self.posts.remove(&post) else { return };
        let Some(policy) = self.group_policy else { return };
        let gid = self.groups[flight.group].profile.id;
        let settle = |act: &mut SchedulerActor, sent: bool, outcome: &'static str| {
            for &member in &flight.granted {
                act.outstanding += 1;
                act.users[member as usize].do_send(SettleGroupSlot {
                    at: flight.at,
                    post,
                    group: gid,
                    sent,
                    outcome,
                    book: act.book.clone(),
                });
            }
        };
        if flight.refused.is_some() || flight.granted.is_empty() {
            settle(self, false, "");
            // Try again when the last refusing member could take a message (they may have
            // received another by then, so it is a new round of reservations).
            let retry = match flight.retry_at {
                Some(t) if !flight.blocked_for_good => t.max(flight.at.plus(60)),
                _ => flight.at.plus(policy.interval_secs),
            };
            self.plan_group(flight.group, retry);
            return;
        }
        let message = OutboundMessage {
            id: post,
            to: Destination::Group(gid),
            bot: crate::domain::BotId(0),
            content: ContentKind::Community,
            segment: Segment::Engaged,
            at: flight.at,
        };
        let result = match self.transport.send(&message).now_or_never() {
            Some(result) => result,
            None => Err(TransportError::Unknown { reason: "group post still pending".into() }),
        };
        match result {
            Ok(Delivered) | Err(TransportError::Unknown { .. }) => {
                let outcome = if result.is_ok() { "delivered" } else { "unknown" };
                let g = &mut self.groups[flight.group];
                g.caps_state.record_send(flight.at, g.profile.utc_offset);
                g.posts += 1;
                self.group_rate.record(flight.at);
                self.summary.group_posts += 1;
                settle(self, true, outcome);
                self.plan_group(flight.group, flight.at.plus(policy.interval_secs));
            }
            Err(TransportError::RateLimited { retry_after_secs }) => {
                settle(self, false, "");
                self.push(
                    flight.at.plus(i64::from(retry_after_secs.max(1))),
                    Work::GroupPost { group: flight.group as u32 },
                );
            }
            Err(TransportError::Transient { .. }) => {
                settle(self, false, "");
                self.push(flight.at.plus(60), Work::GroupPost { group: flight.group as u32 });
            }
            Err(e) => {
                tracing::error!(group = gid.0, error = %e, "Group post failed; group no longer posted to.");
                settle(self, false, "");
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
        if let Some(outcome) = msg.outcome {
            self.record(outcome);
        }
        if let Some((at, token)) = msg.next_wake {
            self.push(at, Work::Wake { user: msg.user, token });
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
                flight.waiting == 0
            }
            None => false,
        };
        if complete {
            if self.posts.get(&msg.post).is_some_and(|f| f.refused.is_some()) {
                self.suppressed_group_post(SuppressReason::MemberCap);
            }
            self.finish_group_post(msg.post);
        }
        self.pump(ctx);
    }
}
