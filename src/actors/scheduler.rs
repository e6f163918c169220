//! The scheduler: the coordinator of the user shards and the one owner of time. It holds the
//! [`Clock`], its own queue of global work — group posts and learner ticks, the *sync
//! points* — and advances every [`UserShard`] to the next one with a [`RunUntil`]; between
//! sync points the shards work in parallel, each through its own queue.
//!
//! Ordering guarantees:
//! - At one instant: inbound events, then group posts, then planned sends, then the learner
//!   tick. A shard is run through everything that comes before the sync item at its instant,
//!   then the sync item is handled, then the shards go on.
//! - A group post's rounds (book, reserve, settle, release) ask the member shards at once
//!   and read the answers in the group's member order.
//!
//! Group posts: a group is posted to under its own caps (daily limit, cooldown, allowed
//! hours in the group's time zone) and Telegram's posts per minute. A post is not a direct
//! message to each member: members answer for their **exposure** only — group posts seen
//! in their local day, over all groups, at most [`GroupPolicy::exposure_limit`] — and a
//! member at the limit holds the post until their next local day; opted-out members are
//! absent, never a reason to hold it. Members' direct caps and quiet hours play no part.
//! - Outcomes are recorded in shard order, window by window; every statistic built from them
//!   is an integer count, so nothing depends on that order but the audit's per-user history,
//!   which follows each user's own order. Log entries of a window are written sorted by
//!   `(time, user)`, each user's entries in the order they happened.
//! - How far shards may run ahead is the clock's business ([`Clock::jumps`]): a virtual
//!   clock lets them run to the next sync point at once and stamps work with its planned
//!   time; a system or scaled clock runs work when it is due and stamps it with the time it
//!   actually runs.
//! - A send or group post in flight (a slow transport) holds nobody; a shutdown waits for
//!   them all (each bounded by the send timeout).

use std::collections::BTreeMap;
use std::sync::Arc;

use actix::prelude::*;
use futures::FutureExt;
use futures::future::join_all;
use tokio::sync::{Notify, mpsc};

use crate::audit::CapAudit;
use crate::clock::Clock;
use crate::config::StrategyBook;
use crate::domain::{Caps, ContentKind, Destination, GroupProfile, OutboundMessage, Segment, SendOutcome, Timestamp};
use crate::learner::StrategyChange;
use crate::policy::{CapState, Decision, PostRateWindow, SuppressReason, decide, plan_next_send};
use crate::store::{LogEntry, Store};
use crate::transport::{Delivered, InboundSource, Sender, TransportError};

use super::learner::{AdviserStats, Learn, LearnerActor};
use super::messages::*;
use super::queue::{ALL_RANKS, Work, WorkQueue};
use super::shard::{DrainSends, GroupPhase, GroupRound, Placement, RunUntil, ShardOutput, UserShard};

/// Outcomes buffered before a batch goes to the statistics actors.
const OUTCOME_BATCH: usize = 4_096;

/// The caps and cadence of group posts (from the scenario or the live configuration).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupPolicy {
    /// The group's own caps, in the group's local time.
    pub caps: Caps,
    /// Preferred local hours.
    pub optimal_hours: crate::domain::HourMask,
    /// Telegram's limit on group posts per minute, across all groups.
    pub posts_per_minute: u32,
    /// How long after a post (or a held-back one) the next is considered, seconds.
    pub interval_secs: i64,
    /// Group posts one member may see per local day, over all groups (the member-exposure
    /// limit; default [`DEFAULT_EXPOSURE_LIMIT`]).
    pub exposure_limit: u32,
}

/// The member-exposure limit unless configured: at most 3 group posts a member sees per
/// local day, over all groups.
pub const DEFAULT_EXPOSURE_LIMIT: u32 = 3;

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

/// What the members answered in one round of a group post.
#[derive(Debug, Default)]
struct RoundResult {
    granted: Vec<UserIndex>,
    refused: Option<SuppressReason>,
    /// The latest time a refusing member could take a message.
    retry_at: Option<Timestamp>,
    /// A refusing member can never take one under the current caps.
    blocked_for_good: bool,
}

/// A group post handed to the transport.
#[derive(Debug)]
struct PostInFlight {
    group: usize,
    post: u64,
    at: Timestamp,
    granted: Vec<UserIndex>,
}

/// A learner's answer for one experiment arm.
/// Strategies to put in force for one arm (by index), from the learner or an operator.
pub type ArmUpdate = (usize, super::learner::StrategyUpdate);

/// A group post in flight and the transport's answer to it.
type PostAnswer = (PostInFlight, Result<Delivered, TransportError>);

/// Counts of the scheduler's own work, for the report.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SchedulerSummary {
    /// The learner's audit trail (empty without a learner).
    pub strategy_changes: Vec<StrategyChange>,
    /// Each arm's strategies in force at the end, where a learner changed them.
    pub final_books: Vec<Option<Arc<StrategyBook>>>,
    /// The learner's notes that are not audit entries (an adviser's failures).
    pub learner_notes: Vec<(Timestamp, String)>,
    /// What the LLM adviser did, if there was one.
    pub adviser: Option<AdviserStats>,
    /// Work items dispatched (wakes, inbound events, group posts, ticks).
    pub dispatched: u64,
    /// Inbound events for users the engine does not know (dropped, logged).
    pub unknown_users: u64,
    /// Inbound events dropped as duplicates of one already taken in (by source id).
    pub duplicate_events: u64,
    /// Users who joined while the engine ran.
    pub joined_users: u64,
    /// Group posts sent.
    pub group_posts: u64,
    /// Group posts held back, by reason (a member at a cap, the platform's rate limit).
    pub group_posts_held: BTreeMap<SuppressReason, u64>,
    /// The most group posts one member saw on one local day (from the audit; at most the
    /// group policy's exposure limit).
    pub max_exposure: u32,
    /// Cap violations found by the independent audit (must be 0).
    pub cap_violations: u64,
    /// The first violations, described.
    pub violation_examples: Vec<String>,
    /// The virtual (or real) time at the end.
    pub ended_at: Timestamp,
}

/// Reports progress as the clock moves (simulation: once per simulated hour).
pub type ProgressFn = Box<dyn FnMut(Timestamp)>;

/// The experiment arm of a user who joins a running engine, from their id alone (an
/// experiment's assignment hash): the arm they would have had had they been there at the
/// start, so that a restart — which loads them with everyone else — keeps them in it.
#[derive(Clone)]
pub struct ArmOfJoining(Arc<dyn Fn(crate::domain::UserId) -> u16 + Send + Sync>);

impl ArmOfJoining {
    /// Wraps `f`, which must answer an index into the engine's arms.
    pub fn new(f: impl Fn(crate::domain::UserId) -> u16 + Send + Sync + 'static) -> ArmOfJoining {
        ArmOfJoining(Arc::new(f))
    }

    /// The arm of `user`.
    pub fn arm_of(&self, user: crate::domain::UserId) -> u16 {
        (self.0)(user)
    }
}

impl std::fmt::Debug for ArmOfJoining {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ArmOfJoining(..)")
    }
}

/// Everything the scheduler is built from.
pub struct SchedulerParts {
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// Stop at this time; `None` runs until shut down.
    pub horizon: Option<Timestamp>,
    /// The shards, in shard order.
    pub shards: Vec<Addr<UserShard>>,
    /// Each shard's inbound buffer.
    pub shard_inbound: Vec<Arc<InboundBuffer>>,
    /// Where every user lives.
    pub placement: Arc<Placement>,
    /// Wakes the scheduler when inbound events arrive on their own (live).
    pub inbound_arrived: Arc<Notify>,
    /// The strategies of each experiment arm (one entry without an experiment).
    pub books: Vec<Arc<StrategyBook>>,
    /// Groups and their policy.
    pub groups: Vec<GroupProfile>,
    /// The group policy (no group posts without one).
    pub group_policy: Option<GroupPolicy>,
    /// For group posts.
    pub sender: Arc<dyn Sender>,
    /// Acknowledged events go back here (after the log is written).
    pub source: Arc<dyn InboundSource>,
    /// Where log entries go, in order.
    pub store: Arc<dyn Store>,
    /// Statistics actors.
    pub listeners: Vec<Recipient<OutcomesRecorded>>,
    /// The learner to ask at every tick; `None` keeps the strategies fixed.
    pub learner: Option<Addr<LearnerActor>>,
    /// Which arms (by index into `books`) the learner re-plans.
    pub learning_arms: Vec<bool>,
    /// Learner cadence, seconds.
    pub learner_interval_secs: i64,
    /// How long a group post may take before its outcome is unknown.
    pub send_timeout: std::time::Duration,
    /// Users in the run (for the audit).
    pub users: usize,
    /// Called as the clock moves.
    pub progress: Option<ProgressFn>,
    /// Distinguishes this run's message ids from another run's or engine's (a ledger that
    /// outlives a run must never see an id again).
    pub run_nonce: u64,
    /// Users joining the running engine (a `/start`, an import, the API).
    pub arrivals: Option<mpsc::UnboundedReceiver<crate::domain::UserProfile>>,
    /// Strategies put in force from outside (an operator's rollback in the store of a
    /// running engine), applied like the learner's.
    pub strategy_updates: Option<mpsc::UnboundedReceiver<ArmUpdate>>,
    /// Members joining or leaving groups while the engine runs.
    pub group_updates: Option<mpsc::UnboundedReceiver<crate::store::MembershipChanged>>,
    /// The arm names, recorded on sends (empty without an experiment).
    pub arm_names: Vec<Arc<str>>,
    /// The arm of a user who joins (`None`: arm 0, which is only right without an
    /// experiment; the engine refuses arms with arrivals but no assignment).
    pub arm_of_joining: Option<ArmOfJoining>,
}

impl std::fmt::Debug for SchedulerParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchedulerParts").field("shards", &self.shards.len()).finish_non_exhaustive()
    }
}

/// The coordinator. Not an actor of its own: one task that owns time and awaits each
/// window's barrier, which an actor could only do as a hand-written state machine; the
/// shards, the segment actors and the learner it talks to are actors.
pub struct Scheduler {
    clock: Arc<dyn Clock>,
    horizon: Option<Timestamp>,
    queue: WorkQueue,
    shards: Vec<Addr<UserShard>>,
    shard_inbound: Vec<Arc<InboundBuffer>>,
    shard_due: Vec<Option<Timestamp>>,
    /// Strategies not yet handed to a shard.
    books_pending: Vec<bool>,
    placement: Arc<Placement>,
    inbound_arrived: Arc<Notify>,
    books: Vec<Arc<StrategyBook>>,
    groups: Vec<GroupState>,
    group_policy: Option<GroupPolicy>,
    group_rate: PostRateWindow,
    next_post_id: u64,
    sender: Arc<dyn Sender>,
    source: Arc<dyn InboundSource>,
    store: Arc<dyn Store>,
    keep_log: bool,
    log: Vec<LogEntry>,
    /// Events to acknowledge once the log holding them is written.
    acks: Vec<crate::domain::InboundEvent>,
    /// The last log write failed (its events are not acknowledged).
    log_failed: bool,
    outcome_buffer: Vec<Outcome>,
    listeners: Vec<Recipient<OutcomesRecorded>>,
    learner: Option<Addr<LearnerActor>>,
    learning_arms: Vec<bool>,
    audit: CapAudit,
    learner_interval_secs: i64,
    send_timeout: std::time::Duration,
    summary: SchedulerSummary,
    progress: Option<ProgressFn>,
    last_progress_hour: i64,
    /// Group posts in flight, and where their answers arrive.
    posts_in_flight: usize,
    post_answers: (mpsc::UnboundedSender<PostAnswer>, mpsc::UnboundedReceiver<PostAnswer>),
    /// A learner's answers on a clock that does not wait for them.
    learner_updates: (mpsc::UnboundedSender<ArmUpdate>, mpsc::UnboundedReceiver<ArmUpdate>),
    /// Arms whose look was asked on a clock that does not wait and has not answered.
    learn_outstanding: Vec<bool>,
    arrivals: Option<mpsc::UnboundedReceiver<crate::domain::UserProfile>>,
    strategy_updates: Option<mpsc::UnboundedReceiver<ArmUpdate>>,
    group_updates: Option<mpsc::UnboundedReceiver<crate::store::MembershipChanged>>,
    arm_names: Vec<Arc<str>>,
    arm_of_joining: Option<ArmOfJoining>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler").field("queued", &self.queue.len()).finish_non_exhaustive()
    }
}

impl Scheduler {
    /// A scheduler over `parts.shards`.
    pub fn new(parts: SchedulerParts) -> Scheduler {
        let placement = parts.placement;
        let groups = parts
            .groups
            .into_iter()
            .map(|profile| GroupState {
                members: profile.members.iter().filter_map(|m| placement.find(*m).map(|(index, ..)| index)).collect(),
                profile,
                caps_state: CapState::default(),
                posts: 0,
                booking: None,
                booking_rounds: 0,
            })
            .collect();
        let per_minute = parts.group_policy.map(|p| p.posts_per_minute).unwrap_or(20).max(1);
        let shards = parts.shards.len();
        let arms = parts.books.len();
        let now = parts.clock.now();
        Scheduler {
            clock: parts.clock,
            horizon: parts.horizon,
            queue: WorkQueue::new(),
            shards: parts.shards,
            shard_inbound: parts.shard_inbound,
            // Unknown until each shard's first report: run them all once, now.
            shard_due: vec![Some(now); shards],
            books_pending: vec![false; shards],
            placement,
            inbound_arrived: parts.inbound_arrived,
            books: parts.books,
            groups,
            group_policy: parts.group_policy,
            group_rate: PostRateWindow::new(per_minute),
            // 40 bits of the run's nonce, 24 of count: no post id of this run was another's.
            next_post_id: (parts.run_nonce & 0xFF_FFFF_FFFF) << 24 | 1,
            sender: parts.sender,
            source: parts.source,
            keep_log: parts.store.wants_log(),
            store: parts.store,
            log: Vec::new(),
            acks: Vec::new(),
            log_failed: false,
            outcome_buffer: Vec::with_capacity(OUTCOME_BATCH),
            listeners: parts.listeners,
            learner: parts.learner,
            learning_arms: parts.learning_arms,
            audit: CapAudit::new(parts.users),
            learner_interval_secs: parts.learner_interval_secs,
            send_timeout: parts.send_timeout,
            summary: SchedulerSummary { final_books: vec![None; arms], ..SchedulerSummary::default() },
            progress: parts.progress,
            last_progress_hour: i64::MIN,
            posts_in_flight: 0,
            post_answers: mpsc::unbounded_channel(),
            learner_updates: mpsc::unbounded_channel(),
            learn_outstanding: vec![false; arms],
            arrivals: parts.arrivals,
            strategy_updates: parts.strategy_updates,
            group_updates: parts.group_updates,
            arm_names: parts.arm_names,
            arm_of_joining: parts.arm_of_joining,
        }
    }

    /// Runs until the horizon, or until `shutdown` completes: then nothing more is
    /// dispatched, every send in flight gets its answer, and the summary covers the run up
    /// to then.
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) -> SchedulerSummary {
        let mut shutdown = std::pin::pin!(shutdown);
        let now = self.clock.now();
        if self.learner_interval_secs > 0 {
            self.queue.push(now.plus(self.learner_interval_secs), Work::LearnerTick);
        }
        for group in 0..self.groups.len() {
            self.plan_group(group, now).await;
        }
        loop {
            if (&mut shutdown).now_or_never().is_some() {
                break;
            }
            while let Ok((flight, result)) = self.post_answers.1.try_recv() {
                self.posts_in_flight -= 1;
                self.after_group_send(flight, result).await;
            }
            while let Some(profile) = self.arrivals.as_mut().and_then(|a| a.try_recv().ok()) {
                self.add_user(profile).await;
            }
            while let Ok((arm, update)) = self.learner_updates.1.try_recv() {
                self.apply_update(arm, update);
            }
            while let Some((arm, update)) = self.strategy_updates.as_mut().and_then(|u| u.try_recv().ok()) {
                self.apply_external(arm, update);
            }
            while let Some(change) = self.group_updates.as_mut().and_then(|u| u.try_recv().ok()) {
                self.change_membership(change).await;
            }
            let sync = self.queue.next_due().filter(|t| self.horizon.is_none_or(|h| *t <= h));
            let target = sync.or(self.horizon);
            // How far the shards may go: to the next sync point at once (a jumping clock), or
            // only through what is due now.
            let (end, floor) = if self.clock.jumps() {
                let Some(end) = target else { break };
                let _ = self.clock.sleep_until(end);
                (end, Timestamp(i64::MIN))
            } else {
                let waiting = self.shard_inbound.iter().any(|b| b.has_events());
                let due = self.shard_due.iter().flatten().copied().min();
                let now = self.clock.now();
                let next = [target, due, waiting.then_some(now)].into_iter().flatten().min();
                let sleep = next.and_then(|t| self.clock.sleep_until(t));
                if next.is_none() || sleep.is_some() {
                    tokio::select! {
                        biased;
                        () = &mut shutdown => break,
                        Some((flight, result)) = self.post_answers.1.recv() => {
                            self.posts_in_flight -= 1;
                            self.after_group_send(flight, result).await;
                        }
                        () = self.inbound_arrived.notified() => {}
                        Some((arm, update)) = self.learner_updates.1.recv() => self.apply_update(arm, update),
                        Some((arm, update)) = async {
                            match self.strategy_updates.as_mut() {
                                Some(updates) => updates.recv().await,
                                None => std::future::pending().await,
                            }
                        } => self.apply_external(arm, update),
                        Some(profile) = async {
                            match self.arrivals.as_mut() {
                                Some(arrivals) => arrivals.recv().await,
                                None => std::future::pending().await,
                            }
                        } => self.add_user(profile).await,
                        Some(change) = async {
                            match self.group_updates.as_mut() {
                                Some(updates) => updates.recv().await,
                                None => std::future::pending().await,
                            }
                        } => self.change_membership(change).await,
                        () = async { if let Some(s) = sleep { s.await } else { std::future::pending().await } } => {}
                    }
                    continue;
                }
                let now = self.clock.now();
                (target.map_or(now, |t| t.min(now)), now)
            };
            let sync_here = sync.filter(|t| *t == end);
            let rank_limit = match sync_here {
                Some(_) => self.queue.next_rank().unwrap_or(ALL_RANKS),
                None => ALL_RANKS,
            };
            self.run_shards(end, rank_limit, floor).await;
            match sync_here {
                Some(at) => {
                    if let Some((_, work)) = self.queue.pop_before(at, rank_limit + 1) {
                        self.summary.dispatched += 1;
                        let at = at.max(floor);
                        self.report_progress(at);
                        self.handle_sync(at, work).await;
                    }
                }
                None if Some(end) == self.horizon => break,
                None => {}
            }
        }
        self.finish().await
    }

    /// A user joins: given their experiment arm (from their id), placed in the shard their id
    /// hashes to, segmented and planned there now under their arm's strategies. A user the
    /// engine already knows is ignored (their profile lives in their shard).
    async fn add_user(&mut self, profile: crate::domain::UserProfile) {
        let arm = self.arm_of_joining.as_ref().map_or(0, |f| f.arm_of(profile.id));
        if usize::from(arm) >= self.books.len() {
            // A caller's bug (the function answers an arm the engine does not have): the user
            // is not placed rather than placed under the wrong strategies.
            tracing::error!(user = %profile.id, arm, "A joining user's arm does not exist; the user was not placed.");
            return;
        }
        let arm_name = self.arm_names.get(usize::from(arm)).cloned();
        let shards = self.shards.len();
        let shard = super::shard::shard_of(profile.id, shards);
        let Some((index, local)) = self.placement.add(profile.id, shard as u16) else {
            tracing::info!(user = %profile.id, "A user who joined is already known.");
            return;
        };
        self.audit.grow(index as usize + 1);
        let at = self.clock.now();
        match self.shards[shard].send(super::shard::AddUser { index, local, profile, at, arm, arm_name }).await {
            Ok(next_due) => {
                self.summary.joined_users += 1;
                self.shard_due[shard] = [self.shard_due[shard], next_due].into_iter().flatten().min();
            }
            Err(e) => tracing::error!(shard, error = %e, "A shard stopped; a joining user was not placed."),
        }
    }

    /// A member joined or left a group. A join of a user the engine does not know (not yet
    /// joined itself) or to a group it does not post to is logged and dropped; a member who
    /// leaves gives up their booking of the group's next post. A group that had no members
    /// is planned again with its first.
    async fn change_membership(&mut self, change: crate::store::MembershipChanged) {
        let Some(group) = self.groups.iter().position(|g| g.profile.id == change.group) else {
            tracing::warn!(group = change.group.0, user = %change.user, "Membership change for a group the engine does not post to; dropped.");
            return;
        };
        let Some((member, ..)) = self.placement.find(change.user) else {
            tracing::warn!(group = change.group.0, user = %change.user, "Membership change for a user the engine does not know; dropped.");
            return;
        };
        let g = &mut self.groups[group];
        let known = g.members.contains(&member);
        match (change.joined, known) {
            (true, false) => {
                let was_empty = g.members.is_empty();
                g.members.push(member);
                if let Err(at) = g.profile.members.binary_search(&change.user) {
                    g.profile.members.insert(at, change.user);
                }
                if was_empty && g.booking.is_none() {
                    let now = self.clock.now();
                    self.plan_group(group, now).await;
                }
            }
            (false, true) => {
                g.members.retain(|m| *m != member);
                g.profile.members.retain(|u| *u != change.user);
                if let Some((post, _)) = g.booking {
                    let now = self.clock.now();
                    self.round(&[member], now, post, group, GroupPhase::Release).await;
                }
            }
            _ => {} // already so
        }
    }

    /// Runs every shard that has something to do through `(until, rank_limit)`.
    async fn run_shards(&mut self, until: Timestamp, rank_limit: u8, floor: Timestamp) {
        let mut asked = Vec::new();
        let mut replies = Vec::new();
        for (s, shard) in self.shards.iter().enumerate() {
            let due = self.shard_due[s].is_some_and(|d| d <= until);
            if !(due || self.books_pending[s] || self.shard_inbound[s].has_events()) {
                continue;
            }
            let books = std::mem::take(&mut self.books_pending[s]).then(|| self.books.clone());
            asked.push(s);
            replies.push(shard.send(RunUntil { until, rank_limit, floor, books }));
        }
        let replies = join_all(replies).await;
        for (s, reply) in asked.into_iter().zip(replies) {
            match reply {
                Ok(report) => {
                    self.shard_due[s] = report.next_due;
                    self.absorb(report.output);
                }
                Err(e) => tracing::error!(shard = s, error = %e, "A shard stopped; its users are no longer served."),
            }
        }
        self.write_log().await;
        self.acknowledge_stored().await;
        self.report_progress(until.max(floor));
    }

    /// Takes in what a shard produced.
    fn absorb(&mut self, output: ShardOutput) {
        self.summary.dispatched += output.dispatched;
        self.summary.duplicate_events += output.duplicates;
        self.acks.extend(output.acks);
        for outcome in output.outcomes {
            self.record(outcome);
        }
        if self.keep_log {
            self.log.extend(output.log);
        }
    }

    /// Writes the buffered log sorted by `(time, user)`, each user's entries in order.
    async fn write_log(&mut self) {
        if self.log.is_empty() {
            return;
        }
        let mut log = std::mem::take(&mut self.log);
        log.sort_by_key(|e| (e.at, e.user));
        self.log_failed = false;
        for entry in &log {
            if let Err(e) = self.store.append(entry).await {
                tracing::error!(error = %e, "Store write failed.");
                self.log_failed = true;
            }
        }
        log.clear();
        self.log = log;
        // Live: what went out is on disk within the window that sent it, not when a buffer
        // of ten thousand rows fills (a crash must not lose the record of a send).
        if !self.clock.jumps()
            && let Err(e) = self.store.flush().await
        {
            tracing::error!(error = %e, "The store could not be flushed.");
            self.log_failed = true;
        }
    }

    /// Acknowledges the events whose effects are now stored: the store is flushed first (a
    /// buffered write is not stored), and on a write failure nothing is acknowledged, so the
    /// source delivers the events again.
    async fn acknowledge_stored(&mut self) {
        if self.acks.is_empty() {
            return;
        }
        if self.log_failed {
            tracing::error!(events = self.acks.len(), "The log could not be written; events are not acknowledged.");
            self.acks.clear();
            return;
        }
        if let Err(e) = self.store.flush().await {
            tracing::error!(error = %e, "The store could not be flushed; events are not acknowledged.");
            self.acks.clear();
            return;
        }
        for event in self.acks.drain(..) {
            self.source.acknowledge(&event);
        }
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

    fn record(&mut self, outcome: Outcome) {
        match outcome.kind {
            OutcomeKind::Sent { zone, via_group: true, .. } => {
                let limit = self.group_policy.map_or(DEFAULT_EXPOSURE_LIMIT, |p| p.exposure_limit);
                self.audit.check_share(outcome.index, outcome.at, zone, limit);
            }
            OutcomeKind::Sent { caps, zone, .. } => self.audit.check_send(outcome.index, outcome.at, caps, zone),
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

    async fn handle_sync(&mut self, at: Timestamp, work: Work) {
        match work {
            Work::GroupPost { group } => self.start_group_post(at, group as usize).await,
            Work::LearnerTick => self.learner_tick(at).await,
            Work::Wake { .. } | Work::Inbound { .. } => {
                tracing::error!("User work queued in the scheduler; ignored.");
            }
        }
    }

    /// Hands every outcome so far to the statistics and asks the learner to look, once per
    /// learning arm; new strategies go to the shards with their next window.
    async fn learner_tick(&mut self, at: Timestamp) {
        self.flush_outcomes();
        if self.learner_interval_secs > 0 {
            self.queue.push(at.plus(self.learner_interval_secs), Work::LearnerTick);
        }
        let Some(learner) = self.learner.clone() else { return };
        for arm in 0..self.learning_arms.len() {
            if !self.learning_arms[arm] {
                continue;
            }
            if self.learn_outstanding.get(arm).copied().unwrap_or(false) {
                // The last look has not answered yet: a look on strategies it may be about to
                // change would undo it. This tick is skipped.
                tracing::warn!(arm, "The learner's last look is still running; this look is skipped.");
                continue;
            }
            let ask = learner.send(Learn { at, arm: arm as u16, book: self.books[arm].clone() });
            if self.clock.jumps() {
                // Virtual time waits for the look: its strategies apply from this instant.
                match ask.await {
                    Ok(update) => self.apply_update(arm, update),
                    Err(e) => tracing::error!(error = %e, "The learner stopped; strategies stay as they are."),
                }
            } else {
                // Real time does not wait: the learner looks on its own thread while the
                // shards go on sending, and its strategies apply when they arrive.
                let updates = self.learner_updates.0.clone();
                if let Some(flag) = self.learn_outstanding.get_mut(arm) {
                    *flag = true;
                }
                actix::spawn(async move {
                    match ask.await {
                        Ok(update) => {
                            let _ = updates.send((arm, update));
                        }
                        Err(e) => tracing::error!(error = %e, "The learner stopped; strategies stay as they are."),
                    }
                });
            }
        }
    }

    /// Puts a learner's new strategies for `arm` in force (the shards get them with their
    /// next window) and keeps its audit entries.
    fn apply_update(&mut self, arm: usize, update: super::learner::StrategyUpdate) {
        if let Some(flag) = self.learn_outstanding.get_mut(arm) {
            *flag = false;
        }
        if let Some(book) = update.book
            && arm < self.books.len()
        {
            self.books[arm] = book.clone();
            self.summary.final_books[arm] = Some(book);
            self.books_pending.iter_mut().for_each(|p| *p = true);
        }
        self.summary.strategy_changes.extend(update.changes);
        self.summary.learner_notes.extend(update.notes);
        if update.adviser.is_some() {
            self.summary.adviser = update.adviser;
        }
    }

    /// Strategies from outside: put in force like the learner's, without touching the
    /// learner's bookkeeping of its own outstanding look.
    fn apply_external(&mut self, arm: usize, update: super::learner::StrategyUpdate) {
        if let Some(book) = update.book
            && arm < self.books.len()
        {
            tracing::info!(arm, "Strategies changed from outside the engine are now in force.");
            self.books[arm] = book.clone();
            self.summary.final_books[arm] = Some(book);
            self.books_pending.iter_mut().for_each(|p| *p = true);
        }
        self.summary.strategy_changes.extend(update.changes);
    }

    /// Stops: every send in flight gets its answer, its outcome is recorded; then the audit
    /// and the counts.
    async fn finish(mut self) -> SchedulerSummary {
        let (tx, rx): (Vec<_>, Vec<_>) = self.shards.iter().map(|_| tokio::sync::oneshot::channel()).unzip();
        for (shard, done) in self.shards.iter().zip(tx) {
            shard.do_send(DrainSends { done });
        }
        join_all(rx).await;
        while self.posts_in_flight > 0 {
            match self.post_answers.1.recv().await {
                Some((flight, result)) => {
                    self.posts_in_flight -= 1;
                    // A post that went out (or may have) counts for the group and for every
                    // member; nothing new is planned.
                    let sent = match &result {
                        Ok(Delivered) => Some(SendOutcome::Delivered),
                        Err(TransportError::Unknown { .. }) => Some(SendOutcome::Unknown),
                        Err(_) => None,
                    };
                    if sent.is_some() {
                        self.count_group_post(&flight);
                    }
                    self.settle(&flight, sent).await;
                }
                None => break,
            }
        }
        // What settled since the last window, without running anything new.
        let stop = Timestamp(i64::MIN);
        self.run_shards_all(stop).await;
        self.flush_outcomes();
        let now = self.clock.now();
        self.summary.cap_violations = self.audit.violations();
        self.summary.max_exposure = self.audit.max_exposure();
        self.summary.violation_examples = self.audit.examples().to_vec();
        self.summary.ended_at = match self.horizon {
            Some(h) if now >= h => h,
            _ => now,
        };
        self.summary
    }

    /// Collects every shard's report without running any work.
    async fn run_shards_all(&mut self, until: Timestamp) {
        let replies = join_all(
            self.shards
                .iter()
                .map(|s| s.send(RunUntil { until, rank_limit: 0, floor: Timestamp(i64::MIN), books: None })),
        )
        .await;
        for reply in replies.into_iter().flatten() {
            self.absorb(reply.output);
        }
        self.write_log().await;
        self.acknowledge_stored().await;
    }

    // ---- group posts -------------------------------------------------------------------

    /// Asks the members of `group` hosted in each shard, all shards at once, and returns
    /// the answers in the group's member order.
    async fn round(
        &mut self,
        members: &[UserIndex],
        at: Timestamp,
        post: u64,
        group: usize,
        phase: GroupPhase,
    ) -> Vec<(UserIndex, SlotAnswer)> {
        let gid = self.groups[group].profile.id;
        let exposure_limit = self.group_policy.map_or(DEFAULT_EXPOSURE_LIMIT, |p| p.exposure_limit);
        let mut per_shard: Vec<Vec<(u32, u32)>> = vec![Vec::new(); self.shards.len()];
        for (position, &member) in members.iter().enumerate() {
            let Some((shard, local)) = self.placement.of(member) else { continue };
            per_shard[usize::from(shard)].push((position as u32, local));
        }
        let mut asked = Vec::new();
        let mut which = Vec::new();
        for (s, members_here) in per_shard.into_iter().enumerate() {
            if !members_here.is_empty() {
                let ask = GroupRound { at, post, group: gid, phase, exposure_limit, members: members_here };
                asked.push(self.shards[s].send(ask));
                which.push(s);
            }
        }
        let mut answers = Vec::with_capacity(members.len());
        for (s, reply) in which.into_iter().zip(join_all(asked).await) {
            match reply {
                Ok(reply) => {
                    answers.extend(reply.answers);
                    self.shard_due[s] = reply.next_due;
                    self.absorb(reply.output);
                }
                Err(e) => tracing::error!(error = %e, "A shard stopped during a group round."),
            }
        }
        answers.sort_unstable_by_key(|(position, _)| *position);
        answers.into_iter().map(|(position, answer)| (members[position as usize], answer)).collect()
    }

    fn tally(answers: Vec<(UserIndex, SlotAnswer)>) -> RoundResult {
        let mut result = RoundResult::default();
        for (member, answer) in answers {
            match answer {
                SlotAnswer::Granted => result.granted.push(member),
                SlotAnswer::Refused { reason, not_before } => {
                    result.refused.get_or_insert(reason);
                    match not_before {
                        Some(t) => result.retry_at = Some(result.retry_at.map_or(t, |r| r.max(t))),
                        None => result.blocked_for_good = true,
                    }
                }
                SlotAnswer::Absent => {}
            }
        }
        result
    }

    /// Plans a group's next post at or after `not_before` and books the slot with every
    /// member now; if a member cannot keep it, releases the others and tries the latest time
    /// a refusing member named (at most four rounds at one instant).
    async fn plan_group(&mut self, group: usize, mut not_before: Timestamp) {
        let Some(policy) = self.group_policy else { return };
        loop {
            let g = &self.groups[group];
            let jitter = ((g.profile.id.0.wrapping_mul(2_654_435_761) ^ u64::from(g.posts)) % 3_600) as i64;
            let Some(slot) =
                plan_next_send(&g.caps_state, &policy.caps, policy.optimal_hours, g.profile.zone, not_before, jitter)
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
            let answers = self.round(&members, now, post, group, GroupPhase::Book { slot }).await;
            let result = Self::tally(answers);
            if result.refused.is_none() {
                let g = &mut self.groups[group];
                g.booking = Some((post, slot));
                g.booking_rounds = 0;
                self.queue.push(slot, Work::GroupPost { group: group as u32 });
                return;
            }
            self.round(&result.granted, now, post, group, GroupPhase::Release).await;
            let g = &mut self.groups[group];
            g.booking_rounds += 1;
            let retry = match result.retry_at {
                Some(t) if !result.blocked_for_good => t.max(slot.plus(60)),
                _ => slot.plus(policy.interval_secs),
            };
            if g.booking_rounds < MAX_BOOKING_ROUNDS {
                not_before = retry;
                continue;
            }
            // Stop haggling this instant; start afresh when the retry time comes.
            g.booking_rounds = 0;
            self.queue.push(retry, Work::GroupPost { group: group as u32 });
            return;
        }
    }

    /// A group's planned time has come: with a booking for it, reserve the members' slots;
    /// without one, book a slot first.
    async fn start_group_post(&mut self, at: Timestamp, group: usize) {
        let Some(policy) = self.group_policy else { return };
        let g = &mut self.groups[group];
        let Some((post, _)) = g.booking.take() else {
            return self.plan_group(group, at).await;
        };
        let members = g.members.clone();
        if let Decision::Suppress { not_before, .. } = decide(&g.caps_state, &policy.caps, g.profile.zone, at) {
            self.round(&members, at, post, group, GroupPhase::Release).await;
            if let Some(t) = not_before {
                self.plan_group(group, t).await;
            }
            return;
        }
        if let Some(free_at) = self.group_rate.next_free(at) {
            // Telegram's 20 posts a minute: wait for a free place, keeping the booking (the
            // members re-check every cap when the post is reserved).
            self.suppressed_group_post(SuppressReason::PlatformRate);
            self.groups[group].booking = Some((post, free_at));
            self.queue.push(free_at, Work::GroupPost { group: group as u32 });
            return;
        }
        let answers = self.round(&members, at, post, group, GroupPhase::Reserve).await;
        let result = Self::tally(answers);
        let flight = PostInFlight { group, post, at, granted: result.granted };
        if result.refused.is_some() || flight.granted.is_empty() {
            if let Some(reason) = result.refused {
                self.suppressed_group_post(reason);
            }
            self.settle(&flight, None).await;
            let retry = match result.retry_at {
                Some(t) if !result.blocked_for_good => t.max(at.plus(60)),
                _ => at.plus(policy.interval_secs),
            };
            return self.plan_group(group, retry).await;
        }
        let message = OutboundMessage {
            id: post,
            to: Destination::Group(self.groups[group].profile.id),
            bot: crate::domain::BotId(0),
            content: ContentKind::Community,
            segment: Segment::Engaged,
            at,
        };
        let mut future = self.sender.send(&message);
        match (&mut future).now_or_never() {
            Some(result) => self.after_group_send(flight, result).await,
            None => {
                // Real I/O: the members' slots stay reserved while the post is in flight;
                // everything else goes on.
                self.posts_in_flight += 1;
                let timeout = self.send_timeout;
                let answers = self.post_answers.0.clone();
                actix::spawn(async move {
                    let result = tokio::time::timeout(timeout, future).await.unwrap_or_else(|_| {
                        Err(TransportError::Unknown { reason: format!("no answer within {} ms", timeout.as_millis()) })
                    });
                    let _ = answers.send((flight, result));
                });
            }
        }
    }

    fn suppressed_group_post(&mut self, reason: SuppressReason) {
        *self.summary.group_posts_held.entry(reason).or_default() += 1;
    }

    /// Settles the members' reservations: the post went out (`sent`) or was called off.
    async fn settle(&mut self, flight: &PostInFlight, sent: Option<SendOutcome>) {
        self.round(&flight.granted, flight.at, flight.post, flight.group, GroupPhase::Settle { sent }).await;
    }

    /// A group post went out (or may have): it counts against the group's own caps and
    /// Telegram's per-minute window.
    fn count_group_post(&mut self, flight: &PostInFlight) {
        if let Some(policy) = self.group_policy {
            let g = &self.groups[flight.group];
            self.audit.check_group_post(flight.group, flight.at, policy.caps, g.profile.zone);
        }
        let g = &mut self.groups[flight.group];
        g.caps_state.record_send(flight.at, g.profile.zone);
        g.posts += 1;
        self.group_rate.record(flight.at);
        self.summary.group_posts += 1;
    }

    async fn after_group_send(&mut self, flight: PostInFlight, result: Result<Delivered, TransportError>) {
        let Some(policy) = self.group_policy else { return };
        let group = flight.group;
        match result {
            Ok(Delivered) | Err(TransportError::Unknown { .. }) => {
                let outcome = if result.is_ok() { SendOutcome::Delivered } else { SendOutcome::Unknown };
                self.count_group_post(&flight);
                self.settle(&flight, Some(outcome)).await;
                self.plan_group(group, flight.at.plus(policy.interval_secs)).await;
            }
            Err(TransportError::RateLimited { retry_after_secs }) => {
                self.settle(&flight, None).await;
                let wait = self.clock.engine_secs_of_wall(retry_after_secs.max(1));
                self.plan_group(group, flight.at.plus(wait)).await;
            }
            Err(TransportError::Transient { .. }) => {
                self.settle(&flight, None).await;
                self.plan_group(group, flight.at.plus(60)).await;
            }
            Err(e) => {
                let gid = self.groups[group].profile.id;
                tracing::error!(group = gid.0, error = %e, "Group post failed; group no longer posted to.");
                self.settle(&flight, None).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actors::entity::{PersistPolicy, UserContext, UserEntity};
    use crate::actors::shard::{ShardParts, shard_of};
    use crate::clock::VirtualClock;
    use crate::domain::{ActivitySummary, DAY, GroupId, HOUR, HourMask, ResponseHistory, UserId, UserProfile, Zone};
    use crate::segmentation::SegmentationRules;
    use crate::store::MemoryStore;
    use crate::transport::MemoryTransport;

    const START: Timestamp = Timestamp(1_767_225_600);

    /// A member's answer for the tally.
    fn refused(reason: SuppressReason, not_before: Option<i64>) -> SlotAnswer {
        SlotAnswer::Refused { reason, not_before: not_before.map(Timestamp) }
    }

    /// A round is granted only if nobody refused; the retry is the latest time a refusing
    /// member named; one member who never can blocks the group for good; absent members
    /// (opted out) neither grant nor refuse.
    #[test]
    fn tally_reads_a_round() {
        let all = Scheduler::tally(vec![(0, SlotAnswer::Granted), (1, SlotAnswer::Absent), (2, SlotAnswer::Granted)]);
        assert_eq!(all.granted, vec![0, 2]);
        assert!(all.refused.is_none());
        let some = Scheduler::tally(vec![
            (0, refused(SuppressReason::Cooldown, Some(50))),
            (1, SlotAnswer::Granted),
            (2, refused(SuppressReason::DailyLimit, Some(90))),
        ]);
        assert_eq!(some.refused, Some(SuppressReason::Cooldown), "the first refusal names the reason");
        assert_eq!(some.retry_at, Some(Timestamp(90)), "the latest time any refusing member can");
        assert!(!some.blocked_for_good);
        let never = Scheduler::tally(vec![(0, refused(SuppressReason::OptedOut, None))]);
        assert!(never.blocked_for_good);
    }

    fn member(id: u64) -> UserProfile {
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

    /// Two shards, one group whose members live in both: the scheduler runs both shards to
    /// the horizon, posts to the group through rounds that reach every member wherever they
    /// live, and the audit finds every cap kept.
    #[test]
    fn group_posts_reach_members_across_shards() {
        let summary = actix_rt::System::new().block_on(async {
            let users = 12u64;
            let shards = 2;
            let clock: Arc<dyn Clock> = Arc::new(VirtualClock::new(START));
            let transport = Arc::new(MemoryTransport::new());
            let cx = UserContext {
                sender: transport.clone(),
                ledger: Arc::new(crate::ledger::MemoryLedger::default()),
                run_nonce: 1,
                persist: PersistPolicy::AtEnd,
                rules: Arc::new(SegmentationRules::defaults()),
                wall_scale: 1,
            };
            let book = Arc::new(StrategyBook::defaults());
            let ids: Vec<UserId> = (0..users).map(UserId).collect();
            let mut hosted: Vec<Vec<UserEntity>> = vec![Vec::new(), Vec::new()];
            let mut wakes: Vec<Vec<(u32, Timestamp, u32)>> = vec![Vec::new(), Vec::new()];
            let mut of_index = Vec::new();
            for id in 0..users {
                let s = shard_of(UserId(id), shards);
                let local = hosted[s].len() as u32;
                of_index.push((s as u16, local));
                let mut e =
                    UserEntity::new(id as u32, member(id), gavat_sim::stream(3, id, gavat_sim::Purpose::Engine), None);
                if let Some((at, token)) = e.first_plan(&cx, START, &book) {
                    wakes[s].push((local, at, token));
                }
                hosted[s].push(e);
            }
            assert!(of_index.iter().any(|p| p.0 == 0) && of_index.iter().any(|p| p.0 == 1), "both shards used");
            let placement = Arc::new(Placement::new(&ids, of_index, shards));
            let inbound: Vec<Arc<InboundBuffer>> = (0..shards).map(|_| Arc::new(InboundBuffer::default())).collect();
            let notify = Arc::new(Notify::new());
            let store = Arc::new(MemoryStore::keeping_everything());
            let mut addrs = Vec::new();
            for (s, (entities, first_wakes)) in hosted.into_iter().zip(wakes).enumerate() {
                addrs.push(
                    UserShard::new(ShardParts {
                        id: s as u16,
                        entities,
                        arm_of: Vec::new(),
                        books: vec![book.clone()],
                        first_wakes,
                        cx: cx.clone(),
                        store: store.clone(),
                        inbound: inbound[s].clone(),
                        placement: placement.clone(),
                        keep_log: true,
                        send_timeout: std::time::Duration::from_secs(1),
                        wake_scheduler: notify.clone(),
                        seed: 3,
                        source: transport.clone(),
                    })
                    .start(),
                );
            }
            let group = GroupProfile { id: GroupId(0), members: ids.clone(), zone: Zone::UTC, activity_per_day: 1.0 };
            let policy = GroupPolicy {
                caps: Caps {
                    daily_limit: 1,
                    cooldown_secs: 12 * HOUR,
                    allowed_hours: HourMask::window(10, 21),
                    period_days: 1,
                },
                optimal_hours: HourMask::window(12, 14),
                posts_per_minute: 20,
                interval_secs: 12 * HOUR,
                exposure_limit: DEFAULT_EXPOSURE_LIMIT,
            };
            let scheduler = Scheduler::new(SchedulerParts {
                clock,
                horizon: Some(START.plus(4 * DAY)),
                shards: addrs,
                shard_inbound: inbound,
                placement,
                inbound_arrived: notify,
                books: vec![book],
                groups: vec![group],
                group_policy: Some(policy),
                sender: transport.clone(),
                source: transport.clone(),
                store: store.clone(),
                listeners: Vec::new(),
                learner: None,
                learning_arms: vec![false],
                learner_interval_secs: 6 * HOUR,
                send_timeout: std::time::Duration::from_secs(1),
                users: users as usize,
                progress: None,
                arrivals: None,
                strategy_updates: None,
                group_updates: None,
                arm_names: Vec::new(),
                arm_of_joining: None,
                run_nonce: 1,
            });
            let summary = scheduler.run(std::future::pending()).await;
            let group_sends: Vec<_> = store.log().into_iter().filter(|e| e.group.is_some()).collect();
            (summary, group_sends)
        });
        let (summary, group_sends) = summary;
        assert_eq!(summary.ended_at, START.plus(4 * DAY));
        assert_eq!(summary.cap_violations, 0, "{:?}", summary.violation_examples);
        assert!(summary.group_posts >= 1, "{summary:?}");
        let reached: std::collections::BTreeSet<_> = group_sends.iter().map(|e| e.user).collect();
        assert_eq!(reached.len(), 12, "every member, in both shards, got the post");
        assert_eq!(group_sends.len() as u64, summary.group_posts * 12);
    }
}
