//! Wiring: builds the actors from a clock, a transport, a store, strategies and users, runs
//! them until the horizon, and collects what they counted. Both modes use this one path;
//! only the injected seams differ.

use std::sync::Arc;

use actix::prelude::*;
use futures::future::join_all;

use crate::actors::entity::{PersistPolicy, UserContext, UserEntity};
use crate::actors::learner::{GetHourTable, LearnerActor};
use crate::actors::messages::{InboundBuffer, OutcomesRecorded};
pub use crate::actors::scheduler::ArmOfJoining;
use crate::actors::scheduler::{ArmUpdate, GroupPolicy, ProgressFn, Scheduler, SchedulerParts, SchedulerSummary};
use crate::actors::segment::{GetSegmentStats, SegmentActor, SegmentStats};
use crate::actors::shard::{Placement, ShardParts, TakeSnapshots, UserShard, shard_of};
use crate::clock::Clock;
use crate::config::StrategyBook;
use crate::domain::{GroupProfile, Segment, Timestamp, UserProfile};
use crate::learner::proof::ActivityProfiles;
use crate::learner::{HourTable, Learner, LearnerSettings};
use crate::ledger::{CapLedger, MemoryLedger};
use crate::llm::BlockingLlm;
use crate::policy::{CapState, governing_segment};
use crate::segmentation::SegmentationRules;
use crate::store::{Store, StoreError, UserState};
use crate::transport::{InboundSink, InboundSource, Sender, Transport};

/// Activity profiles kept per segment for the learner's proofs.
const ACTIVITY_PROFILES_PER_SEGMENT: usize = 2_000;

/// Default learner cadence: every 6 hours.
pub const LEARNER_INTERVAL_SECS: i64 = 6 * 3_600;
/// Where users joining a running engine arrive (the receiving end).
pub type UserArrivals = tokio::sync::mpsc::UnboundedReceiver<UserProfile>;

/// A channel for users joining a running engine: send profiles into the first half, give
/// the second to [`EngineBuilder::arrivals`]. Each joins its shard at once, is segmented and
/// planned, and is messaged within its caps like everybody else.
pub fn user_arrivals() -> (tokio::sync::mpsc::UnboundedSender<UserProfile>, UserArrivals) {
    tokio::sync::mpsc::unbounded_channel()
}

/// Where group membership changes arrive (the receiving end).
pub type GroupUpdates = tokio::sync::mpsc::UnboundedReceiver<crate::store::MembershipChanged>;

/// A channel for members joining or leaving groups while the engine runs: send changes into
/// the first half (after writing them to the store: [`crate::store::GroupStore`]), give the
/// second to [`EngineBuilder::group_updates`]. A change takes effect between two windows of
/// work, like a user joining: a member who joined may see the group's next post (within
/// their exposure), one who left is not asked again.
pub fn group_updates() -> (tokio::sync::mpsc::UnboundedSender<crate::store::MembershipChanged>, GroupUpdates) {
    tokio::sync::mpsc::unbounded_channel()
}

/// The machine's cores: the default number of shard threads.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// How long one send may take before its outcome is unknown, by default.
pub const DEFAULT_SEND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Why the engine could not run or finish.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A required seam was not given to the builder.
    #[error("engine is missing its {0}")]
    Missing(&'static str),
    /// The experiment arms do not fit the users (a caller's bug, reported, never guessed).
    #[error("experiment arms do not fit: {0}")]
    Arms(&'static str),
    /// The async runtime could not be built.
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
    /// The actors stopped before the run finished (a bug; reported, never hidden).
    #[error("the engine's actors stopped unexpectedly: {0}")]
    Mailbox(String),
    /// The store failed: data may be lost.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Experiment arms: each user runs under one arm's strategies and has it recorded on every
/// send. The engine does not assign: the caller (with `gavat-experiments`) does.
#[derive(Debug, Clone)]
pub struct Arms {
    /// Arm names, recorded on sends.
    pub names: Vec<Arc<str>>,
    /// Each arm's strategies.
    pub books: Vec<Arc<StrategyBook>>,
    /// Each user's arm (index into `names`), in user order.
    pub of_user: Vec<u16>,
    /// The arms whose strategies the learner re-plans (needs [`EngineBuilder::learner`]),
    /// by index; arms past its end (a holdout) stay fixed like those marked `false`.
    pub learning: Vec<bool>,
    /// The arm of a user who joins while the engine runs ([`EngineBuilder::arrivals`]):
    /// required with arrivals, so that nobody lands in arm 0 by default.
    pub of_joining: Option<ArmOfJoining>,
}

/// One user's counts at the end of a run, for per-user experiment results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserResult {
    /// Who.
    pub user: crate::domain::UserId,
    /// Arm index (0 without an experiment).
    pub arm: u16,
    /// Messages received (direct and group).
    pub messages: u32,
    /// Replies.
    pub responses: u32,
    /// Purchases.
    pub conversions: u32,
    /// Opted out by the end.
    pub opted_out: bool,
}

/// What a finished run counted.
#[derive(Debug, Clone)]
pub struct RunResult {
    /// Per-segment statistics, indexed by [`Segment::index`].
    pub segments: Vec<SegmentStats>,
    /// Users whose governing segment at the end is each segment.
    pub governed_by: [u64; 8],
    /// Users holding each segment at the end (a user counts once per segment held).
    pub held_by: [u64; 8],
    /// Users opted out at the end.
    pub opted_out_users: u64,
    /// Users in the run.
    pub users: u64,
    /// The scheduler's own counts, including the cap audit.
    pub scheduler: SchedulerSummary,
    /// The learner's table.
    pub hours: HourTable,
    /// Per-user counts, in user order (only when asked for with
    /// [`EngineBuilder::collect_user_results`]).
    pub per_user: Vec<UserResult>,
}

/// Builds an [`Engine`].
#[derive(Default)]
pub struct EngineBuilder {
    clock: Option<Arc<dyn Clock>>,
    sender: Option<Arc<dyn Sender>>,
    source: Option<Arc<dyn InboundSource>>,
    store: Option<Arc<dyn Store>>,
    book: Option<StrategyBook>,
    users: Vec<UserProfile>,
    /// Each user's cap counters to start from, in user order; empty: fresh counters.
    caps: Vec<CapState>,
    groups: Vec<GroupProfile>,
    group_policy: Option<GroupPolicy>,
    horizon: Option<Timestamp>,
    seed: u64,
    persist: Option<PersistPolicy>,
    arms: Option<Arms>,
    collect_user_results: bool,
    rules: Option<SegmentationRules>,
    progress: Option<ProgressFn>,
    learner: Option<LearnerSettings>,
    adviser: Option<BlockingLlm>,
    send_timeout: Option<std::time::Duration>,
    threads: Option<usize>,
    ledger: Option<Arc<dyn CapLedger>>,
    arrivals: Option<UserArrivals>,
    group_updates: Option<GroupUpdates>,
    run_nonce: Option<u64>,
    outcome_listeners: Vec<Recipient<OutcomesRecorded>>,
    strategy_updates: Option<StrategyUpdates>,
}

/// Where strategies put in force from outside a running engine arrive (see
/// [`EngineBuilder::strategy_updates`]).
pub type StrategyUpdates = tokio::sync::mpsc::UnboundedReceiver<ArmUpdate>;

impl std::fmt::Debug for EngineBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineBuilder").field("users", &self.users.len()).finish_non_exhaustive()
    }
}

impl EngineBuilder {
    /// The clock (required).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }
    /// Both halves of the transport from one value (the simulated world, Telegram).
    pub fn transport(mut self, transport: Arc<dyn Transport>) -> Self {
        self.sender = Some(transport.clone());
        self.source = Some(transport);
        self
    }
    /// Where messages go (required, or given with [`EngineBuilder::transport`]).
    pub fn sender(mut self, sender: Arc<dyn Sender>) -> Self {
        self.sender = Some(sender);
        self
    }
    /// Where inbound events come from (required, or given with
    /// [`EngineBuilder::transport`]).
    pub fn inbound_source(mut self, source: Arc<dyn InboundSource>) -> Self {
        self.source = Some(source);
        self
    }
    /// The store (required).
    pub fn store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }
    /// The strategies (default: the shipped ones).
    pub fn strategies(mut self, book: StrategyBook) -> Self {
        self.book = Some(book);
        self
    }
    /// The users, with fresh cap counters (nothing sent yet).
    pub fn users(mut self, users: Vec<UserProfile>) -> Self {
        self.users = users;
        self.caps = Vec::new();
        self
    }
    /// The users with the cap counters a store kept (see
    /// [`crate::store::UserRepository::load_users`]): every cooldown, daily count and
    /// opt-out carries on from where the store left it.
    pub fn users_with_state(mut self, users: Vec<UserState>) -> Self {
        (self.users, self.caps) = users.into_iter().map(|u| (u.profile, u.caps)).unzip();
        self
    }
    /// The groups and how they may be posted to.
    pub fn groups(mut self, groups: Vec<GroupProfile>, policy: GroupPolicy) -> Self {
        self.groups = groups;
        self.group_policy = Some(policy);
        self
    }
    /// Stop at this time (default: run until stopped).
    pub fn horizon(mut self, horizon: Timestamp) -> Self {
        self.horizon = Some(horizon);
        self
    }
    /// The seed for the engine's own random choices (send-time jitter), split per user.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
    /// When users are written to the store (default: every change, so that a restart loses
    /// nothing; simulations ask for [`PersistPolicy::AtEnd`]).
    pub fn persist(mut self, policy: PersistPolicy) -> Self {
        self.persist = Some(policy);
        self
    }
    /// Experiment arms (default: everyone under [`EngineBuilder::strategies`], no arm).
    pub fn arms(mut self, arms: Arms) -> Self {
        self.arms = Some(arms);
        self
    }
    /// The segmentation rules (default: the shipped ones).
    pub fn segmentation(mut self, rules: SegmentationRules) -> Self {
        self.rules = Some(rules);
        self
    }
    /// Re-plan strategies with the learner every `settings.interval_hours` of engine time
    /// (single-book runs only; experiment arms stay fixed).
    pub fn learner(mut self, settings: LearnerSettings) -> Self {
        self.learner = Some(settings);
        self
    }
    /// Let the learner consult an OpenAI-compatible model as an adviser at each look (its
    /// proposals pass the same checks and simulation as the learner's own).
    pub fn adviser(mut self, llm: BlockingLlm) -> Self {
        self.adviser = Some(llm);
        self
    }
    /// How long one send may take before its outcome is unknown — counted against the caps,
    /// never resent (default [`DEFAULT_SEND_TIMEOUT`]).
    pub fn send_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.send_timeout = Some(timeout);
        self
    }
    /// The cap gate every message reserves through (default: an in-memory ledger per
    /// shard). A store-backed ledger makes caps hold across restarts and engines.
    pub fn ledger(mut self, ledger: Arc<dyn CapLedger>) -> Self {
        self.ledger = Some(ledger);
        self
    }
    /// Users who join while the engine runs (a `/start`, an import, the API) arrive here;
    /// see [`user_arrivals`].
    pub fn arrivals(mut self, arrivals: UserArrivals) -> Self {
        self.arrivals = Some(arrivals);
        self
    }
    /// Members joining or leaving groups while the engine runs arrive here; see
    /// [`group_updates`].
    pub fn group_updates(mut self, updates: GroupUpdates) -> Self {
        self.group_updates = Some(updates);
        self
    }
    /// What makes this run's message ids differ from every other run's (default: the seed
    /// and the start time, which is what a deterministic simulation needs). A live engine
    /// passes a fresh random value per process, so that two instances on one ledger —
    /// even started in the same second with the same seed — never share a message id.
    pub fn run_nonce(mut self, nonce: u64) -> Self {
        self.run_nonce = Some(nonce);
        self
    }
    /// Also tell this actor every batch of outcomes (sends, suppressions by reason,
    /// failures, replies, conversions, opt-outs), as the segment and learner actors are
    /// told: a live engine's metrics listen here.
    pub fn outcome_listener(mut self, listener: Recipient<OutcomesRecorded>) -> Self {
        self.outcome_listeners.push(listener);
        self
    }
    /// Strategies put in force while the engine runs (an operator's `gavat strategy
    /// rollback` in the store of a live engine): each `(arm, update)` is applied like a
    /// learner's update, for all later work.
    pub fn strategy_updates(mut self, updates: StrategyUpdates) -> Self {
        self.strategy_updates = Some(updates);
        self
    }
    /// Threads the user shards run on, one shard each (default: the machine's cores). The
    /// result does not depend on it.
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = Some(threads.max(1));
        self
    }
    /// Keep every user's counts for [`RunResult::per_user`].
    pub fn collect_user_results(mut self, yes: bool) -> Self {
        self.collect_user_results = yes;
        self
    }
    /// Called as the clock moves (once per hour of engine time).
    pub fn progress(mut self, f: impl FnMut(Timestamp) + 'static) -> Self {
        self.progress = Some(Box::new(f));
        self
    }

    /// Checks that every seam is there.
    pub fn build(self) -> Result<Engine, EngineError> {
        let clock = self.clock.ok_or(EngineError::Missing("clock"))?;
        let persist = self.persist.unwrap_or(PersistPolicy::EveryChange);
        if let Some(arms) = &self.arms
            && (arms.of_user.len() != self.users.len()
                || arms.names.len() != arms.books.len()
                || arms.of_user.iter().any(|a| usize::from(*a) >= arms.books.len()))
        {
            return Err(EngineError::Arms("every user needs exactly one arm that has a name and strategies"));
        }
        if let Some(arms) = &self.arms
            && self.arrivals.is_some()
            && arms.of_joining.is_none()
        {
            return Err(EngineError::Arms("users may join the running engine, but the arms say nothing of their arm"));
        }
        Ok(Engine {
            sender: self.sender.ok_or(EngineError::Missing("sender (the transport)"))?,
            source: self.source.ok_or(EngineError::Missing("inbound source (the transport)"))?,
            store: self.store.ok_or(EngineError::Missing("store"))?,
            clock,
            book: Arc::new(self.book.unwrap_or_else(StrategyBook::defaults)),
            users: self.users,
            caps: self.caps,
            groups: self.groups,
            group_policy: self.group_policy,
            horizon: self.horizon,
            seed: self.seed,
            persist,
            arms: self.arms,
            collect_user_results: self.collect_user_results,
            rules: Arc::new(self.rules.unwrap_or_else(SegmentationRules::defaults)),
            progress: self.progress,
            learner: self.learner,
            adviser: self.adviser,
            send_timeout: self.send_timeout.unwrap_or(DEFAULT_SEND_TIMEOUT),
            threads: self.threads.unwrap_or_else(default_threads),
            ledger: self.ledger,
            arrivals: self.arrivals,
            group_updates: self.group_updates,
            run_nonce: self.run_nonce,
            outcome_listeners: self.outcome_listeners,
            strategy_updates: self.strategy_updates,
        })
    }
}

/// A configured engine, ready to run once.
pub struct Engine {
    clock: Arc<dyn Clock>,
    sender: Arc<dyn Sender>,
    source: Arc<dyn InboundSource>,
    store: Arc<dyn Store>,
    book: Arc<StrategyBook>,
    users: Vec<UserProfile>,
    /// Cap counters to start from, in user order (empty: fresh).
    caps: Vec<CapState>,
    groups: Vec<GroupProfile>,
    group_policy: Option<GroupPolicy>,
    horizon: Option<Timestamp>,
    seed: u64,
    persist: PersistPolicy,
    arms: Option<Arms>,
    collect_user_results: bool,
    rules: Arc<SegmentationRules>,
    progress: Option<ProgressFn>,
    learner: Option<LearnerSettings>,
    adviser: Option<BlockingLlm>,
    send_timeout: std::time::Duration,
    threads: usize,
    ledger: Option<Arc<dyn CapLedger>>,
    arrivals: Option<UserArrivals>,
    group_updates: Option<GroupUpdates>,
    run_nonce: Option<u64>,
    outcome_listeners: Vec<Recipient<OutcomesRecorded>>,
    strategy_updates: Option<StrategyUpdates>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("users", &self.users.len())
            .field("horizon", &self.horizon)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Starts building an engine.
    pub fn builder() -> EngineBuilder {
        EngineBuilder::default()
    }

    /// Runs until the horizon (must be called inside an actix `System`; see
    /// [`run_on_virtual_runtime`]).
    pub async fn run(self) -> Result<RunResult, EngineError> {
        self.run_until(std::future::pending()).await
    }

    /// Runs until the horizon or until `shutdown` completes, whichever comes first. On
    /// shutdown nothing more is planned or dispatched, sends in flight get their answer (each
    /// bounded by the send timeout, after which it is unknown), everything is flushed, and
    /// the result covers the run up to then.
    pub async fn run_until(self, shutdown: impl std::future::Future<Output = ()>) -> Result<RunResult, EngineError> {
        let n = self.users.len();
        let segment_addrs: Vec<Addr<SegmentActor>> =
            self.book.iter().map(|s| SegmentActor::new(s.clone()).start()).collect();
        let interval = self.learner.as_ref().map_or(LEARNER_INTERVAL_SECS, |l| l.interval_hours * 3_600);
        let (books, arm_of, arm_names, learning_arms, arm_of_joining) = match self.arms {
            Some(arms) => {
                let mut learning = arms.learning;
                learning.resize(arms.books.len(), false);
                (arms.books, arms.of_user, arms.names, learning, arms.of_joining)
            }
            None => (vec![self.book.clone()], Vec::new(), Vec::new(), vec![true], None),
        };
        let learning = self.learner.is_some() && learning_arms.iter().any(|l| *l);
        let start = self.clock.now();
        // The learner looks (and runs its proofs, and waits for an adviser) on a thread of its
        // own: the scheduler's thread never blocks on it.
        let learner_thread = Arbiter::new();
        let learner_actor = match self.learner {
            Some(settings) if learning => {
                let learners = learning_arms
                    .iter()
                    .enumerate()
                    .map(|(arm, learns)| {
                        learns.then(|| {
                            // What the CRM knows of the hours of the arm's users each segment's
                            // strategy governs (whose sends its outcomes count), for the proofs.
                            let book = &books[arm];
                            let activity = ActivityProfiles::collect(
                                self.users
                                    .iter()
                                    .enumerate()
                                    .filter(|(i, _)| arm_of.get(*i).is_none_or(|&a| usize::from(a) == arm))
                                    .map(|(_, p)| {
                                        let held = crate::segmentation::segment(p, start, &self.rules);
                                        (
                                            &p.activity.by_local_hour,
                                            governing_segment(&held, book).into_iter().collect(),
                                        )
                                    }),
                                ACTIVITY_PROFILES_PER_SEGMENT,
                            );
                            // Each arm's learner draws from its own stream and numbers its own range.
                            Learner::new(settings.clone(), start, self.seed ^ (arm as u64) << 48)
                                .with_activity(Arc::new(activity))
                                .numbered_from(arm as u64 * 1_000_000_000 + 1)
                        })
                    })
                    .collect();
                LearnerActor::with_learners(Arc::new(arm_of.clone()), learners, self.adviser)
                    .with_arm_of_joining(arm_of_joining.clone())
            }
            _ => LearnerActor::default(),
        };
        let learner = LearnerActor::start_in_arbiter(&learner_thread.handle(), move |_| learner_actor);
        let mut listeners: Vec<Recipient<OutcomesRecorded>> =
            segment_addrs.iter().map(|a| a.clone().recipient()).collect();
        listeners.push(learner.clone().recipient());
        listeners.extend(self.outcome_listeners);

        // Users to shards: a stable hash of the id; inside a shard, in engine-index order.
        let shards = self.threads.max(1);
        let ids: Vec<_> = self.users.iter().map(|u| u.id).collect();
        let mut of_index = Vec::with_capacity(n);
        let mut hosted: Vec<Vec<UserEntity>> = (0..shards).map(|_| Vec::new()).collect();
        let mut hosted_arms: Vec<Vec<u16>> = (0..shards).map(|_| Vec::new()).collect();
        let mut first_wakes: Vec<Vec<(u32, Timestamp, u32)>> = (0..shards).map(|_| Vec::new()).collect();
        // The cap gate: the one given, or an in-memory ledger per shard (users are partitioned,
        // so a ledger per shard answers exactly as one for all would, without a shared lock),
        // started from the users' stored caps. In one process a reservation is never retried
        // blind, so its ids need remembering only briefly: an hour keeps a million users'
        // ledgers small.
        let memory_ledgers: Vec<Option<Arc<MemoryLedger>>> =
            (0..shards).map(|_| self.ledger.is_none().then(|| Arc::new(MemoryLedger::with_retention(3_600)))).collect();
        let ledger_of = |shard: usize| -> Arc<dyn CapLedger> {
            match (&self.ledger, &memory_ledgers[shard]) {
                (Some(ledger), _) => ledger.clone(),
                (None, Some(memory)) => memory.clone(),
                (None, None) => Arc::new(MemoryLedger::default()),
            }
        };
        // Message ids of this run differ from any other run's: the seed and the start time.
        let run_nonce = self.run_nonce.unwrap_or(self.seed ^ (start.secs() as u64).rotate_left(29) ^ 0x6761_7661_7421);
        let cx = UserContext {
            sender: self.sender.clone(),
            ledger: ledger_of(0),
            run_nonce,
            persist: self.persist,
            rules: self.rules.clone(),
            wall_scale: self.clock.engine_secs_of_wall(1),
        };
        let mut caps = self.caps.into_iter();
        for (index, profile) in self.users.into_iter().enumerate() {
            let shard = shard_of(profile.id, shards);
            let local = hosted[shard].len() as u32;
            of_index.push((shard as u16, local));
            let rng = gavat_sim::stream(self.seed, profile.id.0, gavat_sim::Purpose::Engine);
            let arm = arm_of.get(index).copied().unwrap_or(0);
            let name = arm_names.get(usize::from(arm)).cloned();
            let stored = caps.next().unwrap_or_default();
            if let Some(memory) = &memory_ledgers[shard]
                && stored != crate::policy::CapState::default()
            {
                memory.seed_user(profile.id, crate::ledger::LedgerUser { counted: stored, ..Default::default() });
            }
            let mut entity = UserEntity::new(index as u32, profile, rng, name).with_caps(stored);
            if let Some((at, token)) = entity.first_plan(&cx, start, &books[usize::from(arm)]) {
                first_wakes[shard].push((local, at, token));
            }
            hosted[shard].push(entity);
            hosted_arms[shard].push(arm);
        }
        let placement = Arc::new(Placement::new(&ids, of_index, shards));
        let inbound: Vec<Arc<InboundBuffer>> = (0..shards).map(|_| Arc::new(InboundBuffer::default())).collect();
        let arbiters: Vec<Arbiter> = (0..shards).map(|_| Arbiter::new()).collect();
        // Inbound events go to their user's shard; on a real clock the scheduler is woken.
        let arrived = Arc::new(tokio::sync::Notify::new());
        let mut shard_addrs = Vec::with_capacity(shards);
        for (id, ((entities, arm_of), first_wakes)) in hosted.into_iter().zip(hosted_arms).zip(first_wakes).enumerate()
        {
            let parts = ShardParts {
                id: id as u16,
                entities,
                arm_of: if arm_of.iter().all(|a| *a == 0) { Vec::new() } else { arm_of },
                books: books.clone(),
                first_wakes,
                cx: UserContext { ledger: ledger_of(id), ..cx.clone() },
                store: self.store.clone(),
                inbound: inbound[id].clone(),
                placement: placement.clone(),
                keep_log: self.store.wants_log(),
                send_timeout: self.send_timeout,
                wake_scheduler: arrived.clone(),
                seed: self.seed,
                source: self.source.clone(),
            };
            shard_addrs.push(UserShard::start_in_arbiter(&arbiters[id].handle(), move |_| UserShard::new(parts)));
        }

        let unknown_users = Arc::new(std::sync::atomic::AtomicU64::new(0));
        {
            let (placement, inbound, arrived, unknown) =
                (placement.clone(), inbound.clone(), arrived.clone(), unknown_users.clone());
            // Weak: the source keeps the sink, and the sink must not keep the source alive.
            let source = Arc::downgrade(&self.source);
            self.source.start(InboundSink::new(move |event| {
                match placement.find(event.user) {
                    Some((_, shard, _)) => {
                        if inbound[usize::from(shard)].push(event) {
                            arrived.notify_one();
                        }
                    }
                    None => {
                        unknown.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        tracing::warn!(user = %event.user, kind = event.kind.as_str(), "Inbound event for an unknown user dropped.");
                        if let Some(source) = source.upgrade() {
                            source.reject(&event);
                        }
                    }
                }
            }));
        }

        let scheduler = Scheduler::new(SchedulerParts {
            run_nonce,
            clock: self.clock.clone(),
            horizon: self.horizon,
            shards: shard_addrs.clone(),
            shard_inbound: inbound,
            placement: placement.clone(),
            inbound_arrived: arrived,
            books: books.clone(),
            groups: self.groups,
            group_policy: self.group_policy,
            sender: self.sender.clone(),
            source: self.source.clone(),
            store: self.store.clone(),
            listeners,
            learner: learning.then(|| learner.clone()),
            learning_arms: learning_arms.clone(),
            learner_interval_secs: interval,
            send_timeout: self.send_timeout,
            users: n,
            progress: self.progress,
            arrivals: self.arrivals,
            strategy_updates: self.strategy_updates,
            group_updates: self.group_updates,
            arm_names: arm_names.clone(),
            arm_of_joining,
        });
        let mut summary = scheduler.run(shutdown).await;
        summary.unknown_users += unknown_users.load(std::sync::atomic::Ordering::Relaxed);

        let end = summary.ended_at;
        let final_books: Vec<Arc<StrategyBook>> = books
            .iter()
            .enumerate()
            .map(|(arm, book)| summary.final_books.get(arm).cloned().flatten().unwrap_or_else(|| book.clone()))
            .collect();
        let mut governed_by = [0u64; 8];
        let mut held_by = [0u64; 8];
        let mut opted_out_users = 0;
        let all = placement.len();
        let mut per_user = if self.collect_user_results { vec![None; all] } else { Vec::new() };
        let snapshots =
            join_all(shard_addrs.iter().map(|s| s.send(TakeSnapshots { at: end, books: final_books.clone() }))).await;
        for shard in snapshots {
            for (index, arm, snap) in shard.map_err(|e| EngineError::Mailbox(e.to_string()))? {
                if let Some(slot) = per_user.get_mut(index as usize) {
                    *slot = Some(UserResult {
                        user: snap.user,
                        arm,
                        messages: snap.messages,
                        responses: snap.responses,
                        conversions: snap.conversions,
                        opted_out: snap.caps.opted_out,
                    });
                }
                if let Some(g) = snap.governing {
                    governed_by[g.index()] += 1;
                }
                for a in snap.segments.iter() {
                    held_by[a.segment.index()] += 1;
                }
                opted_out_users += u64::from(snap.caps.opted_out);
            }
        }
        // Stop the shards' threads and wait for them: their users, and with them every handle
        // on the store, are gone before the caller seals or renames the store.
        drop(shard_addrs);
        for arbiter in arbiters {
            arbiter.stop();
            if arbiter.join().is_err() {
                return Err(EngineError::Mailbox("a shard thread panicked".into()));
            }
        }
        let mut segments = Vec::with_capacity(Segment::ALL.len());
        for addr in &segment_addrs {
            segments.push(addr.send(GetSegmentStats).await.map_err(|e| EngineError::Mailbox(e.to_string()))?);
        }
        let hours = learner.send(GetHourTable).await.map_err(|e| EngineError::Mailbox(e.to_string()))?;
        drop(learner);
        learner_thread.stop();
        if learner_thread.join().is_err() {
            return Err(EngineError::Mailbox("the learner's thread panicked".into()));
        }
        self.store.flush().await?;
        Ok(RunResult {
            segments,
            governed_by,
            held_by,
            opted_out_users,
            users: all as u64,
            scheduler: summary,
            hours,
            per_user: per_user.into_iter().flatten().collect(),
        })
    }
}

/// Runs `f` on a fresh actix system over a paused current-thread tokio runtime: any tokio
/// timer jumps instead of waiting, and everything runs on this one thread in a
/// deterministic order.
pub fn run_on_virtual_runtime<F, Fut, T>(f: F) -> Result<T, EngineError>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .map_err(EngineError::Runtime)?;
    let system = actix_rt::System::with_tokio_rt(move || runtime);
    Ok(system.block_on(f()))
}
