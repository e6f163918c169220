//! `UserEntity`: one user's state and behaviour — profile, segments, cap counters
//! (cooldown, the count of the user's *local* day, frequency), exposure to group posts
//! (counted, booked and reserved), a send in flight, opt-out — and the plan of the user's
//! next send.
//!
//! A group post is not a direct message to each member. A member's share of one is checked
//! and counted against the member's **exposure** — group posts seen in the member's local
//! day, over all groups, at most the group policy's `exposure_limit` — and never against the
//! direct caps, which group posts neither check nor move; nor do the member's quiet hours
//! apply (the group's own allowed hours, in the group's time zone, govern the post). An
//! opted-out member is *absent*: not counted, and never a reason to hold a post (they chose
//! to stay in the group).
//!
//! An entity is not an actor: it lives inside the [`UserShard`](super::shard::UserShard)
//! that hosts it, which calls one method per piece of work, in the shard's time order, and
//! acts on what the method returns ([`Step`]) and records ([`Effects`]). A user's work is
//! therefore handled one piece at a time, in order, by exactly one owner — what an actor
//! would give — without a mailbox, an envelope and a message per piece of work
//! (docs/architecture.md has the measured cost of both).
//!
//! A send whose transport future is not ready at once (real I/O) comes back to the shard in
//! the step's `send`: the user is *in flight* — the send counts against every cap, no other
//! send is planned — until the shard calls [`UserEntity::after_send`] with the answer.

use std::sync::Arc;

use rand::RngExt;
use rand_pcg::Pcg64Mcg;

use crate::config::StrategyBook;
use crate::domain::{
    BotId, Caps, Destination, GroupId, InboundEvent, InboundKind, OutboundMessage, Segment, SegmentSet, SendOutcome,
    Timestamp, UserProfile,
};
use crate::ledger::{CapLedger, Counted, Exposure, LedgerError, MessageId, Reservation, Reserved, ShareReservation};
use crate::policy::{CapState, Decision, SuppressReason, caps_for, decide, governing_segment, plan_next_send};
use crate::segmentation::{self, SegmentationRules};
use crate::store::{LogEntry, LogKind, UserRecord};
use crate::transport::{Delivered, FailureKind, SendFuture, Sender, TransportError};

use super::messages::*;

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

/// What an entity needs from the rest of the engine (shared by every entity of a shard).
#[derive(Clone, Debug)]
pub struct UserContext {
    /// How to send.
    pub sender: Arc<dyn Sender>,
    /// The cap gate every message reserves through before the transport is called.
    pub ledger: Arc<dyn CapLedger>,
    /// This run's nonce: mixed into every message id, so that a ledger that outlives a run
    /// (a store's, another engine's) never sees an id of this run before.
    pub run_nonce: u64,
    /// When to persist.
    pub persist: PersistPolicy,
    /// The segmentation rules.
    pub rules: Arc<SegmentationRules>,
    /// Engine seconds per wall second (a transport's `retry_after` is in wall seconds; a
    /// scaled clock runs faster): 1 but for a rehearsal.
    pub wall_scale: i64,
}

/// What one piece of work produced besides its [`Step`]: log entries and user records for
/// the store, in the order they happened. The shard drains it after every call.
#[derive(Debug, Default)]
pub struct Effects {
    /// Whether log entries are wanted at all (a store that keeps no log gets none built).
    pub keep_log: bool,
    /// Log entries, in order.
    pub log: Vec<LogEntry>,
    /// User records to save (with [`PersistPolicy::EveryChange`]).
    pub saves: Vec<UserRecord>,
}

/// A send handed to a transport that has not answered yet: the shard awaits `future` (with
/// the engine's send timeout) and calls [`UserEntity::after_send`] with the answer.
pub struct SendInFlight {
    /// The message.
    pub message: OutboundMessage,
    /// The caps in force when it was decided.
    pub caps: Caps,
    /// The transport's answer, when it comes.
    pub future: SendFuture,
}

impl std::fmt::Debug for SendInFlight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendInFlight").field("message", &self.message).finish_non_exhaustive()
    }
}

/// What a piece of work tells the shard.
#[derive(Debug, Default)]
pub struct Step {
    /// A new plan: wake the user at `.0` with token `.1`.
    pub next_wake: Option<(Timestamp, u32)>,
    /// What happened, if anything worth counting.
    pub outcome: Option<Outcome>,
    /// A send in flight, to await.
    pub send: Option<SendInFlight>,
}

impl Step {
    fn new(next_wake: Option<(Timestamp, u32)>, outcome: Option<Outcome>) -> Step {
        Step { next_wake, outcome, send: None }
    }
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
pub struct UserEntity {
    index: UserIndex,
    profile: UserProfile,
    segments: SegmentSet,
    caps_state: CapState,
    /// Group posts counted as seen, by local day.
    exposure: Exposure,
    /// Group posts booked ahead: `(post, slot)`. Each holds a place in the exposure of the
    /// slot's local day until the post is reserved or the booking released.
    bookings: Vec<(u64, Timestamp)>,
    /// Group posts granted and not yet settled: `(post, at)`.
    reserved: Vec<(u64, Timestamp)>,
    /// A direct send handed to a transport that has not answered yet, and when it went
    /// out: it counts against every cap until it settles.
    in_flight: Option<Timestamp>,
    /// Token of the latest plan; wakes carrying another token are stale.
    wake_token: u32,
    planned: Option<Timestamp>,
    /// No direct send before this time: the `retry_after` of the platform's last 429, which
    /// a re-plan (an inbound event changing the segments) must not bring forward (row 1).
    rate_limited_until: Timestamp,
    transient_failures: u32,
    /// Direct messages attempted (each a reservation with its own id).
    attempts: u32,
    /// The local day the segments were last evaluated on, and whether the profile changed
    /// since (segmentation runs again only then).
    segmented_day: Option<i64>,
    profile_changed: bool,
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
}

impl UserEntity {
    /// A user with `profile` at engine index `index`, drawing jitter from `rng` (their own
    /// stream), recording `arm` on every send.
    pub fn new(index: UserIndex, profile: UserProfile, rng: Pcg64Mcg, arm: Option<Arc<str>>) -> UserEntity {
        UserEntity {
            index,
            profile,
            segments: SegmentSet::default(),
            caps_state: CapState::default(),
            exposure: Exposure::default(),
            bookings: Vec::new(),
            reserved: Vec::new(),
            in_flight: None,
            wake_token: 0,
            planned: None,
            rate_limited_until: Timestamp(i64::MIN),
            transient_failures: 0,
            attempts: 0,
            segmented_day: None,
            profile_changed: true,
            undeliverable: false,
            sends: 0,
            last_send: None,
            rng,
            arm,
            run_responses: 0,
            run_conversions: 0,
        }
    }

    /// The user resuming from the cap counters a store kept, so that a restart forgets no
    /// cooldown, daily count or opt-out.
    pub fn with_caps(mut self, caps: CapState) -> UserEntity {
        self.caps_state = caps;
        self
    }

    /// The user's id.
    pub fn id(&self) -> crate::domain::UserId {
        self.profile.id
    }

    /// The user's engine index.
    pub fn index(&self) -> UserIndex {
        self.index
    }

    /// Segments the user and plans their first send (before the actor starts).
    pub fn first_plan(&mut self, cx: &UserContext, now: Timestamp, book: &StrategyBook) -> Option<(Timestamp, u32)> {
        self.refresh_segments(cx, now);
        self.plan(now, book)
    }

    /// Re-runs the segmentation rules when their inputs changed — the profile (a session, a
    /// reply, a purchase, a message received) or the user's local day (days since joining,
    /// silence and decayed activity move with the day) — and returns whether the set of
    /// held segments changed. Otherwise the segments of the last evaluation stand.
    fn refresh_segments(&mut self, cx: &UserContext, now: Timestamp) -> bool {
        let day = now.local_day(self.profile.zone);
        if !self.profile_changed && self.segmented_day == Some(day) {
            return false;
        }
        self.profile_changed = false;
        self.segmented_day = Some(day);
        let new = segmentation::segment(&self.profile, now, &cx.rules);
        let changed = held_mask(&new) != held_mask(&self.segments);
        self.segments = new;
        changed
    }

    /// Cap counters including a direct send in flight (group posts never count here).
    fn effective_state(&self) -> CapState {
        let mut state = self.caps_state;
        if let Some(at) = self.in_flight {
            state.record_send(at, self.profile.zone);
        }
        state
    }

    /// Group posts the user has seen, will see (reserved) or holds a place for (booked) on
    /// the local day of `at`.
    fn exposure_on(&self, at: Timestamp) -> u32 {
        let zone = self.profile.zone;
        let day = at.local_day(zone);
        let held = self.reserved.iter().chain(&self.bookings).filter(|(_, t)| t.local_day(zone) == day).count();
        self.exposure.seen_on(day) + held as u32
    }

    /// The answer of a member whose exposure on the day of `at` is full: not before the
    /// member's next local day.
    fn exposure_full(&self, at: Timestamp) -> SlotAnswer {
        let zone = self.profile.zone;
        let next_day = Timestamp::start_of_local_day(at.local_day(zone) + 1, zone);
        SlotAnswer::Refused { reason: SuppressReason::ExposureLimit, not_before: Some(next_day) }
    }

    /// Plans the next send at or after `not_before`; a new token supersedes older plans.
    fn plan(&mut self, not_before: Timestamp, book: &StrategyBook) -> Option<(Timestamp, u32)> {
        let not_before = not_before.max(self.rate_limited_until);
        if self.caps_state.opted_out || self.undeliverable || self.in_flight.is_some() {
            self.planned = None;
            return None;
        }
        let caps = caps_for(&self.segments, book);
        let optimal = governing_segment(&self.segments, book).map(|s| book.get(s).optimal_hours).unwrap_or_default();
        let jitter = self.rng.random_range(0..3_600);
        let zone = self.profile.zone;
        let at = plan_next_send(&self.effective_state(), &caps, optimal, zone, not_before, jitter)?;
        if self.planned == Some(at) {
            return None; // the pending wake already covers it
        }
        self.wake_token = self.wake_token.wrapping_add(1);
        self.planned = Some(at);
        Some((at, self.wake_token))
    }

    fn outcome(&self, at: Timestamp, segment: Segment, kind: OutcomeKind) -> Option<Outcome> {
        Some(Outcome { at, user: self.profile.id, index: self.index, segment, kind })
    }

    fn governing_or_first(&self, book: &StrategyBook) -> Segment {
        governing_segment(&self.segments, book).unwrap_or(Segment::ColdLead)
    }

    fn persist(&self, cx: &UserContext, fx: &mut Effects, now: Timestamp, book: &StrategyBook) {
        if cx.persist == PersistPolicy::EveryChange {
            fx.saves.push(self.record(cx, now, book));
        }
    }

    /// What the store keeps of this user now.
    pub fn record(&self, cx: &UserContext, now: Timestamp, book: &StrategyBook) -> UserRecord {
        UserRecord {
            profile: self.profile.clone(),
            caps: self.caps_state,
            segments: segmentation::explain(&self.profile, now, &cx.rules),
            governing: governing_segment(&self.segments, book),
            caps_in_force: caps_for(&self.segments, book),
            next_send: self.planned,
        }
    }

    fn log_entry(&self, kind: LogKind, at: Timestamp, book: &StrategyBook) -> LogEntry {
        LogEntry {
            kind,
            at,
            user: self.profile.id,
            utc_offset: self.profile.zone.offset_at(at),
            zone: self.profile.zone,
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

    /// Counts a message — a direct one against the caps, a group post's share against the
    /// exposure — and records it.
    fn count_send(
        &mut self,
        cx: &UserContext,
        fx: &mut Effects,
        message: &OutboundMessage,
        caps: Caps,
        outcome: SendOutcome,
        book: &StrategyBook,
    ) -> Option<Outcome> {
        let at = message.at;
        let zone = self.profile.zone;
        let local_hour = at.local_hour(zone);
        let group = match message.to {
            Destination::Group(g) => Some(g),
            Destination::User(_) => None,
        };
        match group {
            Some(_) => self.exposure.record(at.local_day(zone)),
            None => self.caps_state.record_send(at, zone),
        }
        self.profile.responses.record_received();
        self.profile_changed = true;
        self.sends += 1;
        self.last_send = Some(LastSend { segment: message.segment, local_hour, group });
        if fx.keep_log {
            let mut entry = self.log_entry(LogKind::Send, at, book);
            entry.group = group;
            entry.segment = Some(message.segment);
            // A group post's share is not held to the direct caps: none are logged with it.
            entry.caps = group.is_none().then(|| caps.into());
            entry.bot = Some(message.bot);
            entry.content = Some(message.content);
            entry.outcome = Some(outcome);
            fx.log.push(entry);
        }
        self.persist(cx, fx, at, book);
        let kind = OutcomeKind::Sent { caps, zone, via_group: group.is_some(), local_hour };
        self.outcome(at, message.segment, kind)
    }

    /// Acts on the transport's answer to a direct message: at once when it came at once,
    /// or later, when a send in flight has its answer.
    pub fn after_send(
        &mut self,
        cx: &UserContext,
        fx: &mut Effects,
        message: OutboundMessage,
        caps: Caps,
        result: Result<Delivered, TransportError>,
        book: &StrategyBook,
    ) -> Step {
        fail::fail_point!("outbox-after-transport-before-confirm");
        self.in_flight = None;
        let at = message.at;
        let counted = match &result {
            Ok(Delivered) => Some(Counted::Delivered),
            Err(TransportError::Unknown { .. }) => Some(Counted::Unknown),
            Err(_) => None,
        };
        settle(cx, MessageId(message.id), counted);
        let (outcome, next) = match result {
            Ok(Delivered) => {
                self.transient_failures = 0;
                let outcome = self.count_send(cx, fx, &message, caps, SendOutcome::Delivered, book);
                (outcome, self.plan(at, book))
            }
            Err(e @ TransportError::Unknown { .. }) => {
                tracing::warn!(user = %self.profile.id, error = %e, "Send outcome unknown; counted, not resent.");
                let outcome = self.count_send(cx, fx, &message, caps, SendOutcome::Unknown, book);
                (outcome, self.plan(at, book))
            }
            Err(TransportError::RateLimited { retry_after_secs }) => {
                let retry = at.plus(i64::from(retry_after_secs.max(1)) * cx.wall_scale.max(1));
                self.rate_limited_until = retry;
                (
                    self.outcome(at, message.segment, OutcomeKind::Failed(FailureKind::RateLimited)),
                    self.plan(retry, book),
                )
            }
            Err(TransportError::Transient { .. }) => {
                self.transient_failures += 1;
                let retry = if self.transient_failures <= MAX_TRANSIENT_RETRIES {
                    at.plus(TRANSIENT_BACKOFF_SECS << (self.transient_failures - 1))
                } else {
                    self.transient_failures = 0;
                    at.plus(1)
                };
                (self.outcome(at, message.segment, OutcomeKind::Failed(FailureKind::Transient)), self.plan(retry, book))
            }
            Err(TransportError::Blocked) => (self.opt_out(cx, fx, at, book), None),
            Err(e @ TransportError::Fatal { .. }) => {
                tracing::error!(user = %self.profile.id, error = %e, "Fatal send failure; user no longer messaged.");
                self.undeliverable = true;
                self.planned = None;
                (self.outcome(at, message.segment, OutcomeKind::Failed(FailureKind::Fatal)), None)
            }
        };
        Step::new(next, outcome)
    }

    /// Marks the user opted out (final) and records it once.
    fn opt_out(&mut self, cx: &UserContext, fx: &mut Effects, at: Timestamp, book: &StrategyBook) -> Option<Outcome> {
        if self.caps_state.opted_out {
            return None;
        }
        self.caps_state.opted_out = true;
        if let Err(e) = at_once(cx.ledger.opt_out(self.profile.id)) {
            tracing::error!(user = %self.profile.id, error = %e, "Could not record an opt-out in the ledger.");
        }
        self.planned = None;
        self.wake_token = self.wake_token.wrapping_add(1);
        let segment = self.last_send.map(|l| l.segment).unwrap_or_else(|| self.governing_or_first(book));
        if fx.keep_log {
            let mut entry = self.log_entry(LogKind::OptOut, at, book);
            entry.segment = Some(segment);
            entry.group = self.last_send.and_then(|l| l.group);
            fx.log.push(entry);
        }
        self.persist(cx, fx, at, book);
        self.outcome(at, segment, OutcomeKind::OptOut)
    }

    /// The user came back on their own (`/start`): an opt-out is lifted — in the ledger
    /// first, so that the gate grants again, then here — and the session counts as activity.
    /// If the ledger cannot record it, the user stays opted out (the gate would refuse every
    /// send anyway) and the source may deliver the event again.
    fn consent(&mut self, cx: &UserContext, fx: &mut Effects, at: Timestamp, book: &StrategyBook) {
        if self.caps_state.opted_out {
            if let Err(e) = at_once(cx.ledger.re_consent(self.profile.id)) {
                tracing::error!(user = %self.profile.id, error = %e, "Could not record a re-consent in the ledger; still opted out.");
                return;
            }
            tracing::info!(user = %self.profile.id, "User came back with /start; opt-out lifted.");
            self.caps_state.opted_out = false;
            self.undeliverable = false;
        }
        self.profile.activity.record_session(at, at.local_hour(self.profile.zone));
        self.persist(cx, fx, at, book);
    }

    /// The planned send's time has come (ignored unless `token` is the latest plan).
    pub fn wake(&mut self, cx: &UserContext, fx: &mut Effects, at: Timestamp, token: u32, book: &StrategyBook) -> Step {
        if token != self.wake_token || self.caps_state.opted_out || self.undeliverable {
            return Step::default(); // superseded plan
        }
        self.planned = None;
        self.refresh_segments(cx, at);
        let Some(segment) = governing_segment(&self.segments, book) else {
            return Step::new(
                None,
                self.outcome(at, Segment::ColdLead, OutcomeKind::Suppressed(SuppressReason::NoSegment)),
            );
        };
        let caps = caps_for(&self.segments, book);
        match decide(&self.effective_state(), &caps, self.profile.zone, at) {
            Decision::Suppress { reason, not_before } => {
                let next = not_before.and_then(|t| self.plan(t, book));
                Step::new(next, self.outcome(at, segment, OutcomeKind::Suppressed(reason)))
            }
            Decision::Send => {
                let strategy = book.get(segment);
                let content = strategy.content[self.sends as usize % strategy.content.len()];
                let bot = BotId(self.sends % self.profile.bots_followed.max(1));
                let message = OutboundMessage {
                    // A new id for every attempt: a retry after a 429 is a new reservation,
                    // while a blind retry of one reservation keeps its id.
                    id: direct_message_id(cx.run_nonce, self.profile.id, self.attempts).0,
                    to: Destination::User(self.profile.id),
                    bot,
                    content,
                    segment,
                    at,
                };
                self.attempts = self.attempts.wrapping_add(1);
                let zone = self.profile.zone;
                let reservation = Reservation { message: MessageId(message.id), user: self.profile.id, at, caps, zone };
                match at_once(cx.ledger.reserve(reservation)) {
                    Ok(Reserved::Granted) => {
                        fail::fail_point!("outbox-after-reserve");
                    }
                    Ok(Reserved::Denied(reason)) => {
                        // The gate knows of sends this user's own counters do not (another
                        // engine, a restart): it decides.
                        let next = self.plan(at.plus(GATE_RETRY_SECS), book);
                        return Step::new(next, self.outcome(at, segment, OutcomeKind::Suppressed(reason)));
                    }
                    Err(e) => {
                        tracing::warn!(user = %self.profile.id, error = %e, "Cap gate unavailable; not sent.");
                        let next = self.plan(at.plus(GATE_RETRY_SECS), book);
                        let held = OutcomeKind::Suppressed(SuppressReason::GateUnavailable);
                        return Step::new(next, self.outcome(at, segment, held));
                    }
                }
                // The outbox: persisted as "sending" before the transport is called, so a
                // crash in between leaves it counted as unknown, never resent. The gate checks
                // the opt-out once more (rule 7): one recorded since the reservation — by
                // another engine too — stops the send, and the user is opted out here too.
                let marked = at_once(cx.ledger.sending(MessageId(message.id)));
                if let Err(LedgerError::OptedOut { .. }) = marked {
                    tracing::info!(user = %self.profile.id, "User opted out after the reservation; not sent.");
                    settle(cx, MessageId(message.id), None);
                    self.caps_state.opted_out = true;
                    let refused = OutcomeKind::Suppressed(SuppressReason::OptedOut);
                    return Step::new(None, self.outcome(at, segment, refused));
                }
                if let Err(e) = marked {
                    tracing::warn!(user = %self.profile.id, error = %e, "Cap gate unavailable; not sent.");
                    settle(cx, MessageId(message.id), None);
                    let next = self.plan(at.plus(GATE_RETRY_SECS), book);
                    let held = OutcomeKind::Suppressed(SuppressReason::GateUnavailable);
                    return Step::new(next, self.outcome(at, segment, held));
                }
                fail::fail_point!("outbox-after-sending-mark");
                let mut future: SendFuture = cx.sender.send(&message);
                match futures::FutureExt::now_or_never(&mut future) {
                    Some(result) => self.after_send(cx, fx, message, caps, result, book),
                    None => {
                        // Real I/O: the send counts while in flight; everyone else goes on.
                        self.in_flight = Some(at);
                        Step { send: Some(SendInFlight { message, caps, future }), ..Step::default() }
                    }
                }
            }
        }
    }

    /// Something the user did has reached its time. (The shard acknowledges it to its
    /// source: at once, or once it is stored.)
    pub fn inbound(&mut self, cx: &UserContext, fx: &mut Effects, event: InboundEvent, book: &StrategyBook) -> Step {
        let at = event.at;
        self.profile_changed = true;
        let attributed = self.last_send.map(|l| l.segment).unwrap_or_else(|| self.governing_or_first(book));
        let outcome = match event.kind {
            InboundKind::OptOut => self.opt_out(cx, fx, at, book),
            InboundKind::Consent => {
                self.consent(cx, fx, at, book);
                None
            }
            _ if self.caps_state.opted_out => None,
            InboundKind::Reply => {
                self.run_responses += 1;
                self.profile.responses.record_response();
                self.profile.activity.record_session(at, at.local_hour(self.profile.zone));
                if fx.keep_log {
                    let mut entry = self.log_entry(LogKind::Response, at, book);
                    entry.segment = Some(attributed);
                    entry.group = event.group;
                    fx.log.push(entry);
                }
                self.persist(cx, fx, at, book);
                let send_hour = self.last_send.map(|l| l.local_hour).unwrap_or(0);
                self.outcome(at, attributed, OutcomeKind::Response { send_hour })
            }
            InboundKind::Conversion => {
                self.run_conversions += 1;
                self.profile.purchases += 1;
                if fx.keep_log {
                    let mut entry = self.log_entry(LogKind::Conversion, at, book);
                    entry.segment = Some(attributed);
                    entry.group = event.group;
                    fx.log.push(entry);
                }
                self.persist(cx, fx, at, book);
                self.outcome(at, attributed, OutcomeKind::Conversion)
            }
            InboundKind::Activity => {
                self.profile.activity.record_session(at, at.local_hour(self.profile.zone));
                self.persist(cx, fx, at, book);
                None
            }
        };
        let changed = self.refresh_segments(cx, at);
        let next =
            if (changed || self.planned.is_none()) && !self.caps_state.opted_out { self.plan(at, book) } else { None };
        Step::new(next, outcome)
    }

    /// May a group post reach the user at `at`? Only the exposure of the user's local day
    /// decides (see the module documentation); a granted share counts until settled.
    pub fn reserve_slot(&mut self, cx: &UserContext, at: Timestamp, post: u64, exposure_limit: u32) -> SlotAnswer {
        // The booking for this post is being used now (or was never made).
        self.bookings.retain(|(p, _)| *p != post);
        if self.caps_state.opted_out || self.undeliverable {
            return SlotAnswer::Absent;
        }
        if self.exposure_on(at) >= exposure_limit {
            return self.exposure_full(at);
        }
        let request = ShareReservation {
            message: group_share_id(post, self.profile.id),
            user: self.profile.id,
            at,
            zone: self.profile.zone,
            exposure_limit,
        };
        match at_once(cx.ledger.reserve_share(request)) {
            Ok(Reserved::Granted) => {
                self.reserved.push((post, at));
                SlotAnswer::Granted
            }
            // Opted out through another engine: not counted, not a reason to hold the post.
            Ok(Reserved::Denied(SuppressReason::OptedOut)) => SlotAnswer::Absent,
            // The gate counted group posts this engine did not (another engine, a restart).
            Ok(Reserved::Denied(SuppressReason::ExposureLimit)) => self.exposure_full(at),
            // An operator paused sending: asked again a minute later, as when the gate is down.
            Ok(Reserved::Denied(SuppressReason::Paused)) => {
                SlotAnswer::Refused { reason: SuppressReason::Paused, not_before: Some(at.plus(GATE_RETRY_SECS)) }
            }
            Ok(Reserved::Denied(reason)) => SlotAnswer::Refused { reason, not_before: None },
            Err(e) => {
                tracing::warn!(user = %self.profile.id, error = %e, "Cap gate unavailable; group slot refused.");
                SlotAnswer::Refused {
                    reason: SuppressReason::GateUnavailable,
                    not_before: Some(at.plus(GATE_RETRY_SECS)),
                }
            }
        }
    }

    /// Will the user hold a place in the exposure of `slot`'s local day for a group post?
    /// A booking never constrains the user's direct sends.
    pub fn book_slot(&mut self, slot: Timestamp, post: u64, exposure_limit: u32) -> SlotAnswer {
        if self.caps_state.opted_out || self.undeliverable {
            return SlotAnswer::Absent;
        }
        self.bookings.retain(|(p, _)| *p != post);
        if self.exposure_on(slot) >= exposure_limit {
            return self.exposure_full(slot);
        }
        self.bookings.push((post, slot));
        SlotAnswer::Granted
    }

    /// The booking for `post` is off.
    pub fn release_booking(&mut self, post: u64) {
        self.bookings.retain(|(p, _)| *p != post);
    }

    /// The reserved group post went out (`sent`: delivered or unknown) or was called off
    /// (`None`). A post that went out counts in the exposure, not the direct caps, so the
    /// user's own plan stands.
    #[allow(clippy::too_many_arguments, reason = "one call per settled member, all plain data")]
    pub fn settle_slot(
        &mut self,
        cx: &UserContext,
        fx: &mut Effects,
        at: Timestamp,
        post: u64,
        group: GroupId,
        sent: Option<SendOutcome>,
        book: &StrategyBook,
    ) -> Step {
        let Some(position) = self.reserved.iter().position(|(p, _)| *p == post) else {
            return Step::default(); // never granted here (absent or refused)
        };
        self.reserved.remove(position);
        let counted = sent.map(|outcome| match outcome {
            SendOutcome::Delivered => Counted::Delivered,
            SendOutcome::Unknown => Counted::Unknown,
        });
        settle(cx, group_share_id(post, self.profile.id), counted);
        let Some(outcome) = sent else { return Step::default() };
        if self.caps_state.opted_out {
            return Step::default();
        }
        let segment = self.governing_or_first(book);
        let caps = caps_for(&self.segments, book);
        let message = OutboundMessage {
            id: post,
            to: Destination::Group(group),
            bot: BotId(0),
            content: crate::domain::ContentKind::Community,
            segment,
            at,
        };
        let counted = self.count_send(cx, fx, &message, caps, outcome, book);
        Step::new(None, counted)
    }

    /// The user's state at the end of a run (segments re-evaluated at `at`).
    pub fn snapshot(&mut self, cx: &UserContext, at: Timestamp, book: &StrategyBook) -> UserSnapshot {
        // The end of a run reports segments as of its last instant, not of its last day.
        self.profile_changed = true;
        self.refresh_segments(cx, at);
        UserSnapshot {
            user: self.profile.id,
            segments: self.segments,
            governing: governing_segment(&self.segments, book),
            caps: self.caps_state,
            messages: self.sends,
            responses: self.run_responses,
            conversions: self.run_conversions,
        }
    }
}

/// Seconds before a message held back by the cap gate is tried again.
const GATE_RETRY_SECS: i64 = 60;

/// A ledger call's answer when it is ready at once. The in-memory and embedded ledgers
/// answer at once; a ledger that would make the shard wait is treated as unavailable (fail
/// closed) until the reservation moves into the in-flight path with the Redis ledger.
fn at_once<T>(future: crate::ledger::LedgerFuture<T>) -> Result<T, LedgerError> {
    futures::FutureExt::now_or_never(future)
        .unwrap_or_else(|| Err(LedgerError::Unavailable { reason: "the ledger did not answer at once".into() }))
}

/// Settles a reservation; a failure is logged (the user's own counters count the message
/// either way, and the ledger keeps a pending reservation counting until it is settled).
fn settle(cx: &UserContext, message: MessageId, counted: Option<Counted>) {
    let future = match counted {
        Some(c) => cx.ledger.confirm(message, c),
        None => cx.ledger.release(message),
    };
    if let Err(e) = at_once(future) {
        tracing::warn!(message = %message, error = %e, "Could not settle a reservation; it keeps counting.");
    }
}

/// The message id of a user's `attempt`-th direct message in the run with `nonce`: a
/// SplitMix64 mix of the three, top bit clear (group shares have it set). Any user id fits.
pub fn direct_message_id(nonce: u64, user: crate::domain::UserId, attempt: u32) -> MessageId {
    let mix = |mut z: u64| {
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    MessageId(mix(mix(nonce ^ user.0) ^ u64::from(attempt)) & !(1 << 63))
}

/// The message id of one member's share of a group post: a hash of the post and the user,
/// with the top bit set so that it never meets a direct message's id.
pub fn group_share_id(post: u64, user: crate::domain::UserId) -> MessageId {
    let mut z = post.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ user.0;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    MessageId((z ^ (z >> 31)) | 1 << 63)
}

/// The held segments as a bit set (confidence changes alone do not re-plan).
fn held_mask(set: &SegmentSet) -> u8 {
    set.iter().fold(0u8, |m, a| m | (1 << a.segment.index()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ActivitySummary, DAY, HOUR, ResponseHistory, UserId, Zone};
    use crate::ledger::{LedgerUser, MemoryLedger};
    use crate::transport::MemoryTransport;

    /// Midnight UTC; the user lives at +03:00.
    const START: Timestamp = Timestamp(1_767_225_600);
    const OFFSET: Zone = Zone::fixed(180);

    fn context(ledger: Arc<MemoryLedger>) -> UserContext {
        UserContext {
            wall_scale: 1,
            sender: Arc::new(MemoryTransport::new()),
            ledger,
            run_nonce: 1,
            persist: PersistPolicy::AtEnd,
            rules: Arc::new(SegmentationRules::defaults()),
        }
    }

    fn user() -> UserEntity {
        let profile = UserProfile {
            id: UserId(9),
            joined_at: START.plus(-100 * DAY),
            zone: OFFSET,
            activity: ActivitySummary { last_active: START.plus(-DAY), ..ActivitySummary::default() },
            bots_followed: 1,
            purchases: 0,
            responses: ResponseHistory::default(),
        };
        UserEntity::new(0, profile, gavat_sim::stream(1, 9, gavat_sim::Purpose::Engine), None)
    }

    /// Reserves and settles one group post as sent.
    fn post(e: &mut UserEntity, cx: &UserContext, at: Timestamp, post: u64, limit: u32) -> SlotAnswer {
        let book = StrategyBook::defaults();
        let answer = e.reserve_slot(cx, at, post, limit);
        if answer == SlotAnswer::Granted {
            let mut fx = Effects::default();
            e.settle_slot(cx, &mut fx, at, post, GroupId(1), Some(SendOutcome::Delivered), &book);
        }
        answer
    }

    /// A member sees up to the exposure limit of group posts in their local day — at 03:00
    /// local too, since their quiet hours are for direct messages — then the next is refused
    /// until their next local midnight; the direct caps, in the entity and the ledger, never
    /// move; bookings hold places in the day's exposure.
    #[test]
    fn group_posts_count_against_the_exposure_not_the_direct_caps() {
        let ledger = Arc::new(MemoryLedger::default());
        let cx = context(ledger.clone());
        let mut e = user();
        // 00:00 UTC is 03:00 local, outside every strategy's allowed hours.
        for (i, minutes) in [0i64, 1, 2].into_iter().enumerate() {
            assert_eq!(post(&mut e, &cx, START.plus(minutes * 60), i as u64 + 1, 3), SlotAnswer::Granted);
        }
        let next_midnight = Timestamp::start_of_local_day(START.local_day(OFFSET) + 1, OFFSET);
        assert_eq!(
            post(&mut e, &cx, START.plus(HOUR), 4, 3),
            SlotAnswer::Refused { reason: SuppressReason::ExposureLimit, not_before: Some(next_midnight) }
        );
        assert_eq!(e.caps_state, CapState::default(), "direct caps untouched");
        let stored = futures::executor::block_on(cx.ledger.load(UserId(9))).expect("load");
        assert_eq!(stored.counted, CapState::default(), "the ledger's direct caps untouched");
        assert_eq!(stored.exposure, Exposure { day: START.local_day(OFFSET), seen: 3 });
        // The next local day: two bookings hold two of the three places.
        let tomorrow = next_midnight.plus(10 * HOUR);
        assert_eq!(e.book_slot(tomorrow, 5, 3), SlotAnswer::Granted);
        assert_eq!(e.book_slot(tomorrow.plus(HOUR), 6, 3), SlotAnswer::Granted);
        assert_eq!(post(&mut e, &cx, tomorrow.plus(-HOUR), 7, 3), SlotAnswer::Granted);
        assert!(matches!(e.book_slot(tomorrow.plus(2 * HOUR), 8, 3), SlotAnswer::Refused { .. }));
        e.release_booking(6);
        assert_eq!(e.book_slot(tomorrow.plus(2 * HOUR), 8, 3), SlotAnswer::Granted);
    }

    /// An opted-out member is absent — neither counted nor a reason to hold the post — in the
    /// entity and when only the ledger knows of the opt-out (another engine).
    #[test]
    fn opted_out_members_are_absent() {
        let ledger = Arc::new(MemoryLedger::default());
        let cx = context(ledger.clone());
        let mut e = user();
        ledger.seed_user(
            UserId(9),
            LedgerUser { counted: CapState { opted_out: true, ..CapState::default() }, ..LedgerUser::default() },
        );
        assert_eq!(e.reserve_slot(&cx, START, 1, 3), SlotAnswer::Absent);
        e.caps_state.opted_out = true;
        assert_eq!(e.book_slot(START, 2, 3), SlotAnswer::Absent);
        assert_eq!(e.reserve_slot(&cx, START, 2, 3), SlotAnswer::Absent);
    }
}
