//! `UserActor`: one per user. Owns that user's profile, segments, cap counters (cooldown,
//! the count of the user's *local* day, frequency), pending group reservations and opt-out
//! state, and plans the user's next send.
//!
//! Ordering: the actor handles its mailbox one message at a time, in the order the
//! scheduler sent them, which is the scheduler's time order. Every handled message is
//! answered with exactly one `WorkDone` (or `GroupSlotAnswered`) to the scheduler.
//!
//! A send whose transport future is not ready at once (real I/O, 50–500 ms) does not hold
//! the mailbox or the scheduler: the user is marked *in flight* — the send counts against
//! every cap meanwhile and no other send is planned — the wake is answered at once, and the
//! transport's answer (or the engine's send timeout, which is an unknown outcome) arrives
//! later as a [`SendSettled`] to the scheduler. Simulated transports answer at once, so a
//! simulation never has a send in flight.

use std::sync::Arc;

use actix::prelude::*;
use futures::FutureExt;
use rand::RngExt;
use rand_pcg::Pcg64Mcg;

use crate::config::StrategyBook;
use crate::domain::{
    BotId, Caps, Destination, GroupId, InboundKind, OutboundMessage, Segment, SegmentSet, Timestamp, UserProfile,
};
use crate::policy::{
    CapState, Decision, SuppressReason, caps_for, decide, earliest_allowed, governing_segment, plan_next_send,
    sends_fit,
};
use crate::segmentation::{self, SegmentationRules};
use crate::store::{LogEntry, LogKind, Store, StoreFuture, UserRecord};
use crate::transport::{Delivered, SendFuture, Transport, TransportError};

use super::messages::*;
use super::scheduler::SchedulerActor;

/// Retries of a transient failure before waiting for the next regular slot.
const MAX_TRANSIENT_RETRIES: u32 = 4;
/// First backoff after a transient failure, seconds (doubles each time).
const TRANSIENT_BACKOFF_SECS: i64 = 60;

/// When the actor writes its record to the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PersistPolicy {
    /// After every change (live mode: a restart loses nothing).
    EveryChange,
    /// Only when the engine asks, at the end of a run (simulation).
    AtEnd,
}

/// What the actor needs from the rest of the engine.
#[derive(Clone, Debug)]
pub struct UserContext {
    /// How long a send may take before its outcome is unknown (counted, never resent).
    pub send_timeout: std::time::Duration,
    /// Where to report.
    pub scheduler: Addr<SchedulerActor>,
    /// How to send.
    pub transport: Arc<dyn Transport>,
    /// Where to record.
    pub store: Arc<dyn Store>,
    /// When to persist.
    pub persist: PersistPolicy,
    /// The segmentation rules.
    pub rules: Arc<SegmentationRules>,
}

/// The last message a user received, to attribute replies.
#[derive(Clone, Copy, Debug)]
struct LastSend {
    segment: Segment,
    local_hour: u8,
    group: Option<GroupId>,
}

/// One user.
#[derive(Debug)]
pub struct UserActor {
    index: UserIndex,
    profile: UserProfile,
    segments: SegmentSet,
    caps_state: CapState,
    /// Group posts booked ahead: `(post, slot)`. Direct sends must leave each slot valid.
    bookings: Vec<(u64, Timestamp)>,
    /// Group slots granted and not yet settled, all at `reserved_at`.
    reserved: u32,
    reserved_at: Timestamp,
    /// A direct send handed to a transport that has not answered yet, and when it went
    /// out: it counts against every cap until it settles.
    in_flight: Option<Timestamp>,
    /// Token of the latest plan; wakes carrying another token are stale.
    wake_token: u32,
    planned: Option<Timestamp>,
    transient_failures: u32,
    /// Stopped after a fatal transport error.
    undeliverable: bool,
    sends: u32,
    last_send: Option<LastSend>,
    rng: Pcg64Mcg,
    /// The experiment arm recorded on every send, if any.
    arm: Option<Arc<str>>,
    /// Replies and purchases during this run (for per-user experiment results).
    run_responses: u32,
    run_conversions: u32,
    ctx: Arc<UserContext>,
}

impl Actor for UserActor {
    type Context = Context<Self>;
}

impl UserActor {
    /// A user with `profile`, drawing jitter from `rng` (their own stream).
    pub fn new(
        index: UserIndex,
        profile: UserProfile,
        rng: Pcg64Mcg,
        arm: Option<Arc<str>>,
        ctx: Arc<UserContext>,
    ) -> UserActor {
        UserActor {
            index,
            profile,
            segments: SegmentSet::default(),
            caps_state: CapState::default(),
            bookings: Vec::new(),
            reserved: 0,
            reserved_at: Timestamp::default(),
            in_flight: None,
            wake_token: 0,
            planned: None,
            transient_failures: 0,
            undeliverable: false,
            sends: 0,
            last_send: None,
            rng,
            arm,
            run_responses: 0,
            run_conversions: 0,
            ctx,
        }
    }

    /// Segments the user and plans their first send (before the actor starts).
    pub fn first_plan(&mut self, now: Timestamp, book: &StrategyBook) -> Option<(Timestamp, u32)> {
        self.refresh_segments(now);
        self.plan(now, book)
    }

    /// Re-runs the segmentation rules; returns whether the set of held segments changed.
    fn refresh_segments(&mut self, now: Timestamp) -> bool {
        let new = segmentation::segment(&self.profile, now, &self.ctx.rules);
        let changed = held_mask(&new) != held_mask(&self.segments);
        self.segments = new;
        changed
    }

    /// Cap counters including granted-but-unsettled group slots and a send in flight.
    fn effective_state(&self) -> CapState {
        let mut state = self.caps_state;
        if let Some(at) = self.in_flight {
            state.record_send(at, self.profile.utc_offset);
        }
        for _ in 0..self.reserved {
            state.record_send(self.reserved_at, self.profile.utc_offset);
        }
        state
    }

    /// Whether a send at `extra` (if any) and every booked slot fit the caps together;
    /// `None` if they do, else the rule that would break.
    fn booking_conflict(&self, caps: &Caps, extra: Option<Timestamp>) -> Option<SuppressReason> {
        if self.bookings.is_empty() {
            return None;
        }
        let mut times: Vec<Timestamp> = self.bookings.iter().map(|(_, slot)| *slot).chain(extra).collect();
        sends_fit(&self.effective_state(), caps, self.profile.utc_offset, &mut times)
    }

    /// Cap counters as if every booked slot had been used.
    fn state_after_bookings(&self) -> (CapState, Option<Timestamp>) {
        let mut state = self.effective_state();
        let mut slots: Vec<Timestamp> = self.bookings.iter().map(|(_, slot)| *slot).collect();
        slots.sort_unstable();
        for slot in &slots {
            state.record_send(*slot, self.profile.utc_offset);
        }
        (state, slots.last().copied())
    }

    /// Plans the next send at or after `not_before`; a new token supersedes older plans.
    /// A time that would crowd a booked group slot moves past the bookings.
    fn plan(&mut self, not_before: Timestamp, book: &StrategyBook) -> Option<(Timestamp, u32)> {
        if self.caps_state.opted_out || self.undeliverable || self.in_flight.is_some() {
            self.planned = None;
            return None;
        }
        let caps = caps_for(&self.segments, book);
        let optimal = governing_segment(&self.segments, book).map(|s| book.get(s).optimal_hours).unwrap_or_default();
        let jitter = self.rng.random_range(0..3_600);
        let offset = self.profile.utc_offset;
        let mut at = plan_next_send(&self.effective_state(), &caps, optimal, offset, not_before, jitter)?;
        if self.booking_conflict(&caps, Some(at)).is_some() {
            let (after, last_slot) = self.state_after_bookings();
            let from = last_slot.map_or(not_before, |slot| slot.max(not_before));
            at = plan_next_send(&after, &caps, optimal, offset, from, jitter)?;
        }
        if self.planned == Some(at) {
            return None; // the pending wake already covers it
        }
        self.wake_token = self.wake_token.wrapping_add(1);
        self.planned = Some(at);
        Some((at, self.wake_token))
    }

    fn done(&self, next_wake: Option<(Timestamp, u32)>, outcome: Option<Outcome>) {
        self.ctx.scheduler.do_send(WorkDone { user: self.index, next_wake, outcome, send_in_flight: false });
    }

    fn outcome(&self, at: Timestamp, segment: Segment, kind: OutcomeKind) -> Option<Outcome> {
        Some(Outcome { at, user: self.profile.id, index: self.index, segment, kind })
    }

    fn governing_or_first(&self, book: &StrategyBook) -> Segment {
        governing_segment(&self.segments, book).unwrap_or(Segment::ColdLead)
    }

    fn log(&mut self, ctx: &mut Context<Self>, entry: LogEntry) {
        let fut = self.ctx.store.append(&entry);
        self.drive_store(ctx, fut);
    }

    fn persist(&mut self, ctx: &mut Context<Self>, now: Timestamp, book: &StrategyBook) {
        if self.ctx.persist == PersistPolicy::EveryChange {
            let fut = self.ctx.store.save_user(&self.record(now, book));
            self.drive_store(ctx, fut);
        }
    }

    fn record(&self, now: Timestamp, book: &StrategyBook) -> UserRecord {
        UserRecord {
            profile: self.profile.clone(),
            caps: self.caps_state,
            segments: segmentation::explain(&self.profile, now, &self.ctx.rules),
            governing: governing_segment(&self.segments, book),
            caps_in_force: caps_for(&self.segments, book),
            next_send: self.planned,
        }
    }

    /// Runs a store call: at once when it is ready, else holding the mailbox until it is.
    /// A failure is logged here and reported again by the store's `flush` at the end.
    fn drive_store(&mut self, ctx: &mut Context<Self>, mut fut: StoreFuture<()>) {
        match (&mut fut).now_or_never() {
            Some(Ok(())) => {}
            Some(Err(e)) => tracing::error!(user = %self.profile.id, error = %e, "Store write failed."),
            None => {
                let user = self.profile.id;
                ctx.wait(fut.into_actor(self).map(move |res, _, _| {
                    if let Err(e) = res {
                        tracing::error!(user = %user, error = %e, "Store write failed.");
                    }
                }));
            }
        }
    }

    fn log_entry(&self, kind: LogKind, at: Timestamp, book: &StrategyBook) -> LogEntry {
        LogEntry {
            kind,
            at,
            user: self.profile.id,
            utc_offset: self.profile.utc_offset,
            group: None,
            segment: None,
            caps: None,
            bot: None,
            content: None,
            strategy: book.name.clone(),
            arm: self.arm.clone(),
            outcome: None,
        }
    }

    /// Counts a message against the caps and records it.
    fn count_send(
        &mut self,
        ctx: &mut Context<Self>,
        message: &OutboundMessage,
        caps: Caps,
        outcome: &'static str,
        book: &StrategyBook,
    ) -> Option<Outcome> {
        let at = message.at;
        let offset = self.profile.utc_offset;
        let local_hour = at.local_hour(offset);
        self.caps_state.record_send(at, offset);
        self.profile.responses.record_received();
        self.sends += 1;
        let group = match message.to {
            Destination::Group(g) => Some(g),
            Destination::User(_) => None,
        };
        self.last_send = Some(LastSend { segment: message.segment, local_hour, group });
        let mut entry = self.log_entry(LogKind::Send, at, book);
        entry.group = group;
        entry.segment = Some(message.segment);
        entry.caps = Some(caps.into());
        entry.bot = Some(message.bot);
        entry.content = Some(message.content);
        entry.outcome = Some(outcome);
        self.log(ctx, entry);
        self.persist(ctx, at, book);
        let kind = OutcomeKind::Sent { caps, offset, via_group: group.is_some(), local_hour };
        self.outcome(at, message.segment, kind)
    }

    /// Acts on the transport's answer to a direct message and reports to the scheduler:
    /// as the wake's `WorkDone` when the answer came at once, as a [`SendSettled`] when the
    /// send was in flight.
    fn after_send(
        &mut self,
        ctx: &mut Context<Self>,
        message: OutboundMessage,
        caps: Caps,
        result: Result<Delivered, TransportError>,
        book: &StrategyBook,
    ) {
        let was_in_flight = self.in_flight.take().is_some();
        let at = message.at;
        let (outcome, next) = match result {
            Ok(Delivered) => {
                self.transient_failures = 0;
                let outcome = self.count_send(ctx, &message, caps, "delivered", book);
                (outcome, self.plan(at, book))
            }
            Err(e @ TransportError::Unknown { .. }) => {
                tracing::warn!(user = %self.profile.id, error = %e, "Send outcome unknown; counted, not resent.");
                let outcome = self.count_send(ctx, &message, caps, "unknown", book);
                (outcome, self.plan(at, book))
            }
            Err(TransportError::RateLimited { retry_after_secs }) => {
                let retry = at.plus(i64::from(retry_after_secs.max(1)));
                (self.outcome(at, message.segment, OutcomeKind::Failed("rate_limited")), self.plan(retry, book))
            }
            Err(TransportError::Transient { .. }) => {
                self.transient_failures += 1;
                let retry = if self.transient_failures <= MAX_TRANSIENT_RETRIES {
                    at.plus(TRANSIENT_BACKOFF_SECS << (self.transient_failures - 1))
                } else {
                    self.transient_failures = 0;
                    at.plus(1)
                };
                (self.outcome(at, message.segment, OutcomeKind::Failed("transient")), self.plan(retry, book))
            }
            Err(TransportError::Blocked) => {
                let outcome = self.opt_out(ctx, at, book);
                (outcome, None)
            }
            Err(e @ TransportError::Fatal { .. }) => {
                tracing::error!(user = %self.profile.id, error = %e, "Fatal send failure; user no longer messaged.");
                self.undeliverable = true;
                self.planned = None;
                (self.outcome(at, message.segment, OutcomeKind::Failed("fatal")), None)
            }
        };
        match was_in_flight {
            true => self.ctx.scheduler.do_send(SendSettled { user: self.index, next_wake: next, outcome }),
            false => self.done(next, outcome),
        }
    }

    /// Marks the user opted out (final) and records it once.
    fn opt_out(&mut self, ctx: &mut Context<Self>, at: Timestamp, book: &StrategyBook) -> Option<Outcome> {
        if self.caps_state.opted_out {
            return None;
        }
        self.caps_state.opted_out = true;
        self.planned = None;
        self.wake_token = self.wake_token.wrapping_add(1);
        let segment = self.last_send.map(|l| l.segment).unwrap_or_else(|| self.governing_or_first(book));
        let mut entry = self.log_entry(LogKind::OptOut, at, book);
        entry.segment = Some(segment);
        entry.group = self.last_send.and_then(|l| l.group);
        self.log(ctx, entry);
        self.persist(ctx, at, book);
        self.outcome(at, segment, OutcomeKind::OptOut)
    }
}

/// The held segments as a bit set (confidence changes alone do not re-plan).
fn held_mask(set: &SegmentSet) -> u8 {
    set.iter().fold(0u8, |m, a| m | (1 << a.segment.index()))
}

impl Handler<Wake> for UserActor {
    type Result = ();

    fn handle(&mut self, msg: Wake, ctx: &mut Self::Context) {
        if msg.token != self.wake_token || self.caps_state.opted_out || self.undeliverable {
            return self.done(None, None); // superseded plan
        }
        let (at, book) = (msg.at, msg.book);
        self.planned = None;
        self.refresh_segments(at);
        let Some(segment) = governing_segment(&self.segments, &book) else {
            return self
                .done(None, self.outcome(at, Segment::ColdLead, OutcomeKind::Suppressed(SuppressReason::NoSegment)));
        };
        let caps = caps_for(&self.segments, &book);
        let decision = match decide(&self.effective_state(), &caps, self.profile.utc_offset, at) {
            Decision::Send => match self.booking_conflict(&caps, Some(at)) {
                // Sending now would crowd a booked group post: wait until after it.
                Some(reason) => Decision::Suppress { reason, not_before: Some(at) },
                None => Decision::Send,
            },
            other => other,
        };
        match decision {
            Decision::Suppress { reason, not_before } => {
                let next = not_before.and_then(|t| self.plan(t, &book));
                self.done(next, self.outcome(at, segment, OutcomeKind::Suppressed(reason)));
            }
            Decision::Send => {
                let strategy = book.get(segment);
                let content = strategy.content[self.sends as usize % strategy.content.len()];
                let bot = BotId(self.sends % self.profile.bots_followed.max(1));
                let message = OutboundMessage {
                    id: (self.profile.id.0 << 20) | u64::from(self.sends & 0xF_FFFF),
                    to: Destination::User(self.profile.id),
                    bot,
                    content,
                    segment,
                    at,
                };
                let mut fut: SendFuture = self.ctx.transport.send(&message);
                match (&mut fut).now_or_never() {
                    Some(result) => self.after_send(ctx, message, caps, result, &book),
                    None => {
                        // Real I/O: the send counts while in flight; everyone else goes on.
                        self.in_flight = Some(at);
                        self.ctx.scheduler.do_send(WorkDone {
                            user: self.index,
                            next_wake: None,
                            outcome: None,
                            send_in_flight: true,
                        });
                        let timeout = self.ctx.send_timeout;
                        let bounded = async move {
                            tokio::time::timeout(timeout, fut).await.unwrap_or_else(|_| {
                                Err(TransportError::Unknown {
                                    reason: format!("no answer within {} ms", timeout.as_millis()),
                                })
                            })
                        };
                        ctx.spawn(bounded.into_actor(self).map(move |result, act, ctx| {
                            act.after_send(ctx, message, caps, result, &book);
                        }));
                    }
                }
            }
        }
    }
}

impl Handler<DeliverInbound> for UserActor {
    type Result = ();

    fn handle(&mut self, msg: DeliverInbound, ctx: &mut Self::Context) {
        let (event, book) = (msg.event, msg.book);
        let at = event.at;
        self.ctx.transport.acknowledge(&event);
        let attributed = self.last_send.map(|l| l.segment).unwrap_or_else(|| self.governing_or_first(&book));
        let outcome = match event.kind {
            InboundKind::OptOut => self.opt_out(ctx, at, &book),
            _ if self.caps_state.opted_out => None,
            InboundKind::Reply => {
                self.run_responses += 1;
                self.profile.responses.record_response();
                self.profile.activity.record_session(at, at.local_hour(self.profile.utc_offset));
                let mut entry = self.log_entry(LogKind::Response, at, &book);
                entry.segment = Some(attributed);
                entry.group = event.group;
                self.log(ctx, entry);
                self.persist(ctx, at, &book);
                let send_hour = self.last_send.map(|l| l.local_hour).unwrap_or(0);
                self.outcome(at, attributed, OutcomeKind::Response { send_hour })
            }
            InboundKind::Conversion => {
                self.run_conversions += 1;
                self.profile.purchases += 1;
                let mut entry = self.log_entry(LogKind::Conversion, at, &book);
                entry.segment = Some(attributed);
                entry.group = event.group;
                self.log(ctx, entry);
                self.persist(ctx, at, &book);
                self.outcome(at, attributed, OutcomeKind::Conversion)
            }
            InboundKind::Activity => {
                self.profile.activity.record_session(at, at.local_hour(self.profile.utc_offset));
                self.persist(ctx, at, &book);
                None
            }
        };
        let changed = self.refresh_segments(at);
        let next =
            if (changed || self.planned.is_none()) && !self.caps_state.opted_out { self.plan(at, &book) } else { None };
        self.done(next, outcome);
    }
}

impl Handler<ReserveGroupSlot> for UserActor {
    type Result = ();

    fn handle(&mut self, msg: ReserveGroupSlot, _ctx: &mut Self::Context) {
        // The booking for this post is being used now (or was never made).
        self.bookings.retain(|(post, _)| *post != msg.post);
        let answer = if self.caps_state.opted_out || self.undeliverable {
            SlotAnswer::Absent
        } else {
            self.refresh_segments(msg.at);
            let caps = caps_for(&self.segments, &msg.book);
            let decision = match decide(&self.effective_state(), &caps, self.profile.utc_offset, msg.at) {
                Decision::Send => match self.booking_conflict(&caps, Some(msg.at)) {
                    Some(reason) => Decision::Suppress { reason, not_before: None },
                    None => Decision::Send,
                },
                other => other,
            };
            match decision {
                Decision::Send => {
                    self.reserved += 1;
                    self.reserved_at = msg.at;
                    SlotAnswer::Granted
                }
                Decision::Suppress { reason, not_before } => SlotAnswer::Refused { reason, not_before },
            }
        };
        self.ctx.scheduler.do_send(GroupSlotAnswered { post: msg.post, user: self.index, answer, next_wake: None });
    }
}

impl Handler<BookGroupSlot> for UserActor {
    type Result = ();

    fn handle(&mut self, msg: BookGroupSlot, _ctx: &mut Self::Context) {
        let mut next_wake = None;
        let answer = if self.caps_state.opted_out || self.undeliverable {
            SlotAnswer::Absent
        } else {
            self.refresh_segments(msg.at);
            let caps = caps_for(&self.segments, &msg.book);
            match self.booking_conflict(&caps, Some(msg.slot)).or_else(|| {
                // With no other booking, the slot alone must pass the rules.
                match decide(&self.effective_state(), &caps, self.profile.utc_offset, msg.slot) {
                    Decision::Send => None,
                    Decision::Suppress { reason, .. } => Some(reason),
                }
            }) {
                None => {
                    self.bookings.push((msg.post, msg.slot));
                    // A planned send that now crowds the slot moves.
                    if let Some(planned) = self.planned
                        && self.booking_conflict(&caps, Some(planned)).is_some()
                    {
                        self.planned = None;
                        next_wake = self.plan(msg.at, &msg.book);
                    }
                    SlotAnswer::Granted
                }
                Some(reason) => {
                    let (after, last_slot) = self.state_after_bookings();
                    let from = last_slot.map_or(msg.slot, |s| s.max(msg.slot));
                    let not_before = earliest_allowed(&after, &caps, self.profile.utc_offset, from);
                    SlotAnswer::Refused { reason, not_before }
                }
            }
        };
        self.ctx.scheduler.do_send(GroupSlotAnswered { post: msg.post, user: self.index, answer, next_wake });
    }
}

impl Handler<ReleaseGroupBooking> for UserActor {
    type Result = ();

    fn handle(&mut self, msg: ReleaseGroupBooking, _ctx: &mut Self::Context) {
        self.bookings.retain(|(post, _)| *post != msg.post);
        self.done(None, None);
    }
}

impl Handler<SettleGroupSlot> for UserActor {
    type Result = ();

    fn handle(&mut self, msg: SettleGroupSlot, ctx: &mut Self::Context) {
        self.reserved = self.reserved.saturating_sub(1);
        if !msg.sent || self.caps_state.opted_out {
            return self.done(None, None);
        }
        let book = msg.book;
        let segment = self.governing_or_first(&book);
        let caps = caps_for(&self.segments, &book);
        let message = OutboundMessage {
            id: msg.post,
            to: Destination::Group(msg.group),
            bot: BotId(0),
            content: crate::domain::ContentKind::Community,
            segment,
            at: msg.at,
        };
        let outcome = self.count_send(ctx, &message, caps, msg.outcome, &book);
        // The group post used a slot: the pending plan may no longer hold.
        let next = match self.planned {
            Some(_) => {
                self.planned = None;
                self.plan(msg.at, &book)
            }
            None => None,
        };
        self.done(next, outcome);
    }
}

impl Handler<TakeSnapshot> for UserActor {
    type Result = UserSnapshot;

    fn handle(&mut self, msg: TakeSnapshot, ctx: &mut Self::Context) -> UserSnapshot {
        self.refresh_segments(msg.at);
        if self.ctx.persist == PersistPolicy::AtEnd {
            let fut = self.ctx.store.save_user(&self.record(msg.at, &msg.book));
            self.drive_store(ctx, fut);
        }
        UserSnapshot {
            user: self.profile.id,
            segments: self.segments,
            governing: governing_segment(&self.segments, &msg.book),
            caps: self.caps_state,
            messages: self.sends,
            responses: self.run_responses,
            conversions: self.run_conversions,
        }
    }
}
