//! Simulation mode: a synthetic population from `gavat-sim` behind the simulated
//! transport, the engine on a virtual clock, and the per-segment report it prints.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use gavat_sim::{BehaviourModel, ObservedHistory, Population, Scenario, SyntheticGroup, SyntheticUser};
use serde::Serialize;

use crate::actors::daily::Daily;
use crate::actors::learner::AdviserStats;
use crate::actors::scheduler::GroupPolicy;
use crate::actors::segment::SegmentStats;
use crate::clock::{Clock, Stopwatch, VirtualClock};
use crate::config::{StrategyBook, parse_hours};
use crate::domain::{
    ActivitySummary, Caps, DAY, GroupId, GroupProfile, ResponseHistory, Segment, Timestamp, UserId, UserProfile, Zone,
};
use crate::engine::{ArmOfJoining, Arms, Engine, EngineError, RunResult, run_on_virtual_runtime};
use crate::faults::{
    DrainWatch, FaultCounters, FaultPlan, FaultSummary, FaultWindows, FaultyLedger, FaultyTransport, HashingLog,
    TakeOpenRetries,
};
use crate::learner::{Action, LearnerSettings, StrategyChange};
use crate::learner_effect::{LearnerEffect, RunTotals};
use crate::ledger::{LedgerUser, MemoryLedger};
use crate::llm::{BlockingLlm, LlmSettings};
use crate::policy::{CapState, SuppressReason};
use crate::segmentation::SegmentationRules;
use crate::store::{
    JsonlLog, MemoryStore, RunRecord, SimulationMeta, SqliteStore, Store, StoreError, UserRepository, UserState,
};
use crate::transport::{FailureKind, SimTransport, TelegramStats, Transport};

/// Where every simulation starts: 2026-01-01T00:00:00Z (fixed, so that a seed alone
/// reproduces a run).
pub const SIMULATION_START: Timestamp = Timestamp(1_767_225_600);

/// A validated simulation run.
#[derive(Debug, Clone)]
pub struct SimulationPlan {
    /// Synthetic users.
    pub users: usize,
    /// Simulated days.
    pub days: u32,
    /// The seed of every random choice.
    pub seed: u64,
    /// The population and behaviour parameters.
    pub scenario: Scenario,
    /// Where the scenario came from (for the report).
    pub scenario_name: String,
    /// Which files the strategies, scenario and rules were read from (for the report header).
    pub sources: InputSources,
    /// The strategies.
    pub book: StrategyBook,
    /// The segmentation rules.
    pub rules: SegmentationRules,
    /// Write every send and reaction here as JSON lines.
    pub events: Option<PathBuf>,
    /// Save the final CRM state (profiles, segments, log, queue) into this SQLite file,
    /// replacing it.
    pub save_state: Option<PathBuf>,
    /// Run with the learner re-planning strategies (`--learn`).
    pub learner: Option<LearnerSettings>,
    /// The learner's LLM adviser (`--llm-adviser`).
    pub adviser: Option<LlmSettings>,
    /// Threads the user shards run on (the report does not depend on it).
    pub threads: usize,
}

/// Where one input of a run came from, so that a report says which file it ran on: the
/// path as given and the start of the SHA-256 of the bytes read, or the shipped defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum InputSource {
    /// The shipped file, built into the binary.
    #[default]
    BuiltIn,
    /// A file named on the command line.
    File {
        /// The path as given.
        path: String,
        /// The first 12 hex digits of the SHA-256 of its content.
        sha256: String,
    },
}

impl InputSource {
    /// The source for `bytes` read from `path`.
    pub fn of_bytes(path: &Path, bytes: &[u8]) -> InputSource {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(bytes);
        let sha256 = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
        InputSource::File { path: path.display().to_string(), sha256 }
    }

    /// Reads `path` and hashes what it holds.
    pub fn of_file(path: &Path) -> Result<InputSource, std::io::Error> {
        Ok(InputSource::of_bytes(path, &std::fs::read(path)?))
    }
}

impl std::fmt::Display for InputSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InputSource::BuiltIn => f.write_str("built-in defaults"),
            InputSource::File { path, sha256 } => write!(f, "{path} (sha256 {sha256})"),
        }
    }
}

/// Where each input file of a run came from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct InputSources {
    /// `--strategy`.
    pub strategy: InputSource,
    /// `--scenario`.
    pub scenario: InputSource,
    /// `--rules` (segmentation).
    pub rules: InputSource,
}

/// Where a continuation starts (`gavat simulate --resume`): the same population, the
/// clock at the store's end, and every user's profile and cap state as the store kept them.
#[derive(Debug, Clone, PartialEq)]
pub struct Continuation {
    /// The store continued: read, never written (with `--save-state` the new state is a copy
    /// of it carried on).
    pub store: PathBuf,
    /// The store's end time: the continuation's start.
    pub start: Timestamp,
    /// When the population was drawn (the first run's start).
    pub population_start: Timestamp,
}

impl Continuation {
    /// The seed of the continuation's own random streams (the synthetic users' reactions and
    /// activity, the engine's jitter): the run's seed mixed with the start, so that a
    /// continuation does not replay the draws of the run before it, and the same store
    /// continued twice gives the same run.
    pub fn stream_seed(&self, seed: u64) -> u64 {
        seed ^ (self.start.secs() as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(17)
    }
}

/// Why a simulation could not run.
#[derive(Debug, thiserror::Error)]
pub enum SimulationError {
    /// The engine failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The events file could not be written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The LLM adviser's client could not be set up.
    #[error("the LLM adviser: {0}")]
    Adviser(String),
    /// The scenario could not be written into the saved state (a bug: every scenario read
    /// is a TOML table).
    #[error("cannot save the scenario with the state: {0}")]
    Scenario(String),
}

/// One row of the report: a segment or the total.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SegmentRow {
    /// `HOT_LEAD` … or `TOTAL`.
    pub segment: String,
    /// Users governed by this segment at the end of the run.
    pub users: u64,
    /// Users holding this segment at the end (users hold several).
    pub holders: u64,
    /// Messages sent under this segment's strategy (direct and group).
    pub sent: u64,
    /// Of `sent`, deliveries through group posts: one post to a group counts once for each
    /// member it reached.
    pub sent_via_group: u64,
    /// Replies to those messages.
    pub responses: u64,
    /// responses / sent.
    pub response_rate: f64,
    /// Purchases following a reply.
    pub conversions: u64,
    /// conversions / sent.
    pub conversion_rate: f64,
    /// Opt-outs (including blocks).
    pub opt_outs: u64,
    /// opt_outs / sent.
    pub opt_out_rate: f64,
    /// 100 × (responses + 2·conversions − 5·opt_outs) / sent.
    pub engagement: f64,
    /// Sends held back by a rule, by reason.
    pub suppressed: BTreeMap<&'static str, u64>,
    /// Transport failures, by kind.
    pub failed: BTreeMap<FailureKind, u64>,
}

/// One simulated UTC day of a run: the counts of the outcomes that fell in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DayRow {
    /// The day, `YYYY-MM-DD` (UTC).
    pub date: String,
    /// Its first second (UTC midnight), in Unix seconds: what a chart's axis takes.
    pub start: i64,
    /// Messages sent (direct and group).
    pub sent: u64,
    /// Replies.
    pub responses: u64,
    /// Purchases.
    pub conversions: u64,
    /// Opt-outs (including blocks).
    pub opt_outs: u64,
    /// Sends held back by a rule.
    pub suppressed: u64,
    /// Transport failures.
    pub failed: u64,
}

/// A run's outcomes per simulated UTC day, every day of the run listed (zeros included).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct DailySeries {
    /// All segments together.
    pub total: Vec<DayRow>,
    /// Per segment, in fixed order, the segments without any outcome left out.
    pub segments: Vec<SegmentDays>,
}

/// One segment's days.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SegmentDays {
    /// `HOT_LEAD` …
    pub segment: String,
    /// Its days, the same as [`DailySeries::total`]'s.
    pub days: Vec<DayRow>,
}

impl DailySeries {
    /// The series of a run from `start` to `end`: every UTC day the run touches, plus any
    /// day outside it that still holds an outcome.
    pub fn of_run(start: Timestamp, end: Timestamp, r: &RunResult) -> DailySeries {
        let mut total = Daily::default();
        for s in &r.segments {
            total.absorb(&s.daily);
        }
        let first = start.secs().div_euclid(DAY);
        let last = (end.secs() - 1).max(start.secs()).div_euclid(DAY);
        let observed = total.days().map(|(t, _)| t.secs().div_euclid(DAY));
        let (lo, hi) = observed.fold((first, last), |(lo, hi), d| (lo.min(d), hi.max(d)));
        let rows = |daily: &Daily| -> Vec<DayRow> {
            (lo..=hi)
                .map(|day| {
                    let midnight = Timestamp(day * DAY);
                    let c = daily.on(midnight);
                    DayRow {
                        date: midnight.to_rfc3339()[..10].to_string(),
                        start: midnight.secs(),
                        sent: c.sent,
                        responses: c.responses,
                        conversions: c.conversions,
                        opt_outs: c.opt_outs,
                        suppressed: c.suppressed,
                        failed: c.failed,
                    }
                })
                .collect()
        };
        let segments = Segment::ALL
            .iter()
            .filter(|seg| !r.segments[seg.index()].daily.is_empty())
            .map(|seg| SegmentDays { segment: seg.as_str().to_string(), days: rows(&r.segments[seg.index()].daily) })
            .collect();
        DailySeries { total: rows(&total), segments }
    }
}

/// Wall-clock measurements: they differ between runs, so they are kept apart from the
/// results.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Timing {
    /// Seconds to build the population and actors and run the simulation.
    pub wall_secs: f64,
    /// Work items the scheduler dispatched (planned sends, inbound events, group posts).
    pub events: u64,
    /// events / wall_secs.
    pub events_per_sec: f64,
}

/// What `gavat simulate` prints.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimulationReport {
    /// The seed (print it to reproduce the run).
    pub seed: u64,
    /// Synthetic users.
    pub users: u64,
    /// Simulated days.
    pub days: u32,
    /// Simulated start and end (UTC).
    pub start: String,
    /// End of the simulated period.
    pub end: String,
    /// The scenario.
    pub scenario: String,
    /// The strategy set (its `name`).
    pub strategy: String,
    /// The files the strategies, scenario and rules came from.
    pub sources: InputSources,
    /// One row per segment, in fixed order.
    pub segments: Vec<SegmentRow>,
    /// All segments together.
    pub total: SegmentRow,
    /// The same outcomes per simulated UTC day.
    pub daily: DailySeries,
    /// Users who opted out during the run.
    pub opted_out_users: u64,
    /// Group posts sent.
    pub group_posts: u64,
    /// Group posts held back, by reason.
    pub group_posts_held: BTreeMap<&'static str, u64>,
    /// What the simulated Telegram did: its limits and 429s.
    pub telegram: TelegramStats,
    /// The most group posts one member saw on one local day (over all groups), and the
    /// limit it is held to.
    pub max_group_posts_seen_per_day: u32,
    /// The member-exposure limit of the run.
    pub member_exposure_limit: u32,
    /// Sends that broke a cap, found by the independent audit. Must be 0.
    pub cap_violations: u64,
    /// The first violations, described (empty when there are none).
    pub cap_violation_examples: Vec<String>,
    /// The learner's audit trail (`--learn`; empty otherwise).
    pub strategy_changes: Vec<StrategyChange>,
    /// What the LLM adviser did (`--llm-adviser`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adviser: Option<AdviserStats>,
    /// The learner's notes that are not audit entries: an adviser's failed requests and
    /// refused replies, with the engine time.
    pub learner_notes: Vec<(String, String)>,
    /// With the learner: this run against the same run on the static strategies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub learner_effect: Option<LearnerEffect>,
    /// With `--faults`: what fired, every outcome, the invariants and the event-log hash.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub faults: Option<FaultSummary>,
    /// Wall time and throughput (not part of the results).
    pub timing: Timing,
}

/// Turns a synthetic user into what the CRM would know of them at the start.
pub fn profile_from_synthetic(user: &SyntheticUser, history: &ObservedHistory) -> UserProfile {
    let sessions: u32 = history.activity_by_local_hour.iter().sum();
    let mut responses = ResponseHistory::default();
    // Replay the known tally into the recent window: spread the answers evenly.
    let known = history.messages_received.min(16);
    let answered_recent = if history.messages_received == 0 {
        0
    } else {
        ((u64::from(history.responses) * u64::from(known) + u64::from(history.messages_received) / 2)
            / u64::from(history.messages_received)) as u32
    };
    for i in 0..known {
        responses.record_received();
        // Bresenham-like spread of `answered_recent` answers over `known` messages.
        if (i + 1) * answered_recent / known.max(1) != i * answered_recent / known.max(1) {
            responses.record_response();
        }
    }
    responses.received = history.messages_received;
    responses.responded = history.responses.min(history.messages_received);
    UserProfile {
        id: UserId(user.id),
        joined_at: Timestamp(user.joined_at),
        zone: zone_of(user.time_zone),
        activity: ActivitySummary {
            by_local_hour: history.activity_by_local_hour.map(|c| u16::try_from(c).unwrap_or(u16::MAX)),
            sessions,
            last_active: Timestamp(history.last_active),
            // 30 days of history: about 7/30 of it fell in the last week.
            weekly_sessions: sessions as f32 * 7.0 / 30.0,
        },
        bots_followed: user.bots_followed,
        purchases: user.purchases,
        responses,
    }
}

/// The engine's zone for a synthetic user's or group's.
fn zone_of(zone: gavat_sim::TimeZone) -> Zone {
    match zone {
        gavat_sim::TimeZone::Offset(minutes) => Zone::fixed(minutes),
        gavat_sim::TimeZone::Named(tz) => Zone::Iana(tz),
    }
}

/// Turns a synthetic group into a CRM group.
pub fn group_from_synthetic(group: &SyntheticGroup) -> GroupProfile {
    GroupProfile {
        id: GroupId(group.id),
        members: group.members.iter().map(|m| UserId(*m)).collect(),
        zone: zone_of(group.time_zone),
        activity_per_day: group.activity_per_day,
    }
}

/// The scenario's rules for group posts.
pub fn group_policy(scenario: &Scenario) -> GroupPolicy {
    GroupPolicy {
        caps: Caps {
            daily_limit: scenario.group_daily_limit(),
            cooldown_secs: scenario.group_cooldown_secs(),
            allowed_hours: parse_hours("10-21").unwrap_or_default(),
            period_days: 1,
        },
        optimal_hours: parse_hours("12-14,18-20").unwrap_or_default(),
        posts_per_minute: scenario.group_posts_per_minute(),
        interval_secs: scenario.group_post_interval_secs(),
        exposure_limit: scenario.group_member_exposure_limit(),
    }
}

/// Runs a simulation; `progress` is told the fraction of simulated time done.
pub fn run(plan: &SimulationPlan, progress: impl FnMut(f64) + 'static) -> Result<SimulationReport, SimulationError> {
    run_from(plan, None, progress)
}

/// Runs a simulation, continuing `from` a saved one if given.
pub fn run_from(
    plan: &SimulationPlan,
    from: Option<&Continuation>,
    progress: impl FnMut(f64) + 'static,
) -> Result<SimulationReport, SimulationError> {
    run_faulted(plan, from, None, progress)
}

/// A fault plan and the name the report gives it (`gavat simulate --faults FILE`).
#[derive(Debug, Clone)]
pub struct FaultSetup {
    /// The validated plan.
    pub plan: FaultPlan,
    /// Its name, or the file it came from.
    pub name: String,
}

/// [`run_from`] with `faults` injected at the engine's seams (transport, ledger, store), if
/// given: the report then has its faults section.
pub fn run_faulted(
    plan: &SimulationPlan,
    from: Option<&Continuation>,
    faults: Option<&FaultSetup>,
    progress: impl FnMut(f64) + 'static,
) -> Result<SimulationReport, SimulationError> {
    let stopwatch = Stopwatch::start();
    let stream_seed = from.map_or(plan.seed, |c| c.stream_seed(plan.seed));
    let run = run_engine_with(plan, from, stream_seed, None, faults, progress)?;
    let wall_secs = stopwatch.elapsed_secs();
    let mut report = report(plan, run.start, run.end, &run.result, wall_secs);
    report.telegram = run.telegram;
    report.faults = run.faults;
    Ok(report)
}

/// How the users of an experiment run are split into arms.
#[derive(Debug, Clone)]
pub enum ArmAssignment {
    /// By hash of `(salt, user id)` over the weights (the experiment's design).
    ByHash {
        /// The experiment's salt.
        salt: String,
        /// Arm weights, in arm order.
        weights: Vec<f64>,
    },
    /// Everyone in one arm (the paired design replays each arm for all users).
    Everyone(u16),
}

impl ArmAssignment {
    /// The arm of `user`: by `gavat-experiments`' weighted rendezvous hash of `(salt, id)`
    /// (so the same in a simulation, a live run and an export), or the one arm. The weights
    /// come from a validated experiment, which the hash accepts; should it not, arm 0.
    pub fn arm_of(&self, user: UserId) -> u16 {
        match self {
            ArmAssignment::Everyone(arm) => *arm,
            ArmAssignment::ByHash { salt, weights } => {
                gavat_experiments::assignment::assign(salt, user.0, weights).unwrap_or(0) as u16
            }
        }
    }
}

/// The arms of an experiment run.
#[derive(Debug, Clone)]
pub struct ArmSetup {
    /// Arm names.
    pub names: Vec<Arc<str>>,
    /// Each arm's strategies.
    pub books: Vec<Arc<StrategyBook>>,
    /// Who goes where.
    pub assignment: ArmAssignment,
    /// The arms the learner re-plans (by index; missing ones stay fixed).
    pub learning: Vec<bool>,
}

/// What [`run_engine`] returns.
#[derive(Debug)]
pub struct EngineRun {
    /// The engine's counts.
    pub result: RunResult,
    /// Simulated start.
    pub start: Timestamp,
    /// Simulated end.
    pub end: Timestamp,
    /// What the simulated Telegram did.
    pub telegram: TelegramStats,
    /// What the faults did (with a fault plan).
    pub faults: Option<FaultSummary>,
}

/// Runs the engine over a synthetic population. With `arms`, every user runs under their
/// arm's strategies, per-user results are collected, and there are no group posts: a post
/// reaches members of every arm and would blur the comparison.
pub fn run_engine(
    plan: &SimulationPlan,
    arms: Option<ArmSetup>,
    progress: impl FnMut(f64) + 'static,
) -> Result<EngineRun, SimulationError> {
    run_engine_from(plan, None, arms, progress)
}

/// [`run_engine`], continuing `from` a saved simulation if given: the population is drawn
/// again from the seed and scenario at its original start, the clock starts at the store's
/// end, and every user starts from the profile and cap state the store kept. With
/// `plan.save_state`, the new state is the store carried on (its log, then this run's).
pub fn run_engine_from(
    plan: &SimulationPlan,
    from: Option<&Continuation>,
    arms: Option<ArmSetup>,
    progress: impl FnMut(f64) + 'static,
) -> Result<EngineRun, SimulationError> {
    let stream_seed = from.map_or(plan.seed, |c| c.stream_seed(plan.seed));
    run_engine_with(plan, from, stream_seed, arms, None, progress)
}

/// [`run_engine_from`] with the random streams (the synthetic users' reactions and activity,
/// the engine's jitter) seeded by `stream_seed` while the population is still drawn from
/// the plan's seed: the same users, behaving afresh — an experiment's simulated pre-period.
pub fn run_engine_streams(
    plan: &SimulationPlan,
    from: Option<&Continuation>,
    stream_seed: u64,
    arms: Option<ArmSetup>,
    progress: impl FnMut(f64) + 'static,
) -> Result<EngineRun, SimulationError> {
    run_engine_with(plan, from, stream_seed, arms, None, progress)
}

/// The seams of a faulted run, and what is read from them at the end.
struct FaultSeams {
    setup: FaultSetup,
    counters: Arc<FaultCounters>,
    ledger: Arc<FaultyLedger>,
    log: Arc<HashingLog<Arc<dyn Store>>>,
}

/// [`run_engine_streams`], with `faults` injected at the seams if given.
fn run_engine_with(
    plan: &SimulationPlan,
    from: Option<&Continuation>,
    stream_seed: u64,
    arms: Option<ArmSetup>,
    faults: Option<&FaultSetup>,
    progress: impl FnMut(f64) + 'static,
) -> Result<EngineRun, SimulationError> {
    // The scenario may name its start (a date before a DST change, say).
    let first_start = plan.scenario.start_unix().map_or(SIMULATION_START, Timestamp);
    let (start, population_start) = from.map_or((first_start, first_start), |c| (c.start, c.population_start));
    let horizon = start.plus(i64::from(plan.days) * DAY);
    let mut population: Population =
        gavat_sim::generate(&plan.scenario, plan.users, plan.seed, population_start.secs());
    // Spontaneous activity starts at this run's start.
    population.start = start.secs();
    let histories = std::mem::take(&mut population.histories);
    let users: Vec<UserState> = match from {
        None => population
            .users
            .iter()
            .zip(&histories)
            .map(|(u, h)| UserState { profile: profile_from_synthetic(u, h), caps: CapState::default() })
            .collect(),
        Some(c) => load_population(&c.store, plan.users)?,
    };
    drop(histories);
    let groups: Vec<GroupProfile> = population.groups.iter().map(group_from_synthetic).collect();
    let policy = group_policy(&plan.scenario);
    let model = BehaviourModel::new(&plan.scenario);
    let experiment_arms = arms.map(|setup| {
        let of_user = users.iter().map(|u| setup.assignment.arm_of(u.profile.id)).collect();
        let assignment = setup.assignment.clone();
        Arms {
            names: setup.names,
            books: setup.books,
            of_user,
            learning: setup.learning,
            of_joining: Some(ArmOfJoining::new(move |user| assignment.arm_of(user))),
        }
    });
    let transport = Arc::new(SimTransport::new(population, model, &plan.scenario.telegram, stream_seed, horizon));
    let sim_transport = transport.clone();
    // A user who blocked the bot has still blocked it: the one part of the synthetic users'
    // memory the store holds.
    for u in users.iter().filter(|u| u.caps.opted_out) {
        transport.carry_opt_out(u.profile.id);
    }
    // With a fault plan, the same engine runs behind faulty seams: the world behind a faulty
    // platform, the cap gate with outages (one ledger for all shards, seeded from the stored
    // caps as the engine seeds its own), the store hashing the event log.
    let counters = Arc::new(FaultCounters::default());
    let fault_parts = faults.map(|setup| {
        let until = setup.plan.stop_after_days.map_or(horizon, |d| start.plus(i64::from(d) * DAY).min(horizon));
        let windows = Arc::new(FaultWindows::draw(&setup.plan, stream_seed, start, until));
        let ledger =
            Arc::new(FaultyLedger::new(MemoryLedger::with_retention(3_600), windows.clone(), counters.clone()));
        for u in users.iter().filter(|u| u.caps != CapState::default()) {
            ledger.seed_user(u.profile.id, LedgerUser { counted: u.caps, ..Default::default() });
        }
        let faulty: Arc<dyn Transport> = Arc::new(FaultyTransport::new(
            transport.clone(),
            setup.plan.clone(),
            stream_seed,
            until,
            horizon,
            windows,
            counters.clone(),
        ));
        (faulty, ledger)
    });
    let transport: Arc<dyn Transport> = match &fault_parts {
        Some((faulty, _)) => faulty.clone(),
        None => transport,
    };
    let base: Arc<dyn Store> = match &plan.save_state {
        Some(path) => {
            for suffix in ["", "-wal", "-shm"] {
                let file = PathBuf::from(format!("{}{suffix}", path.display()));
                if file.exists() {
                    std::fs::remove_file(&file)
                        .map_err(|cause| StoreError::Io { path: file.display().to_string(), cause })?;
                }
            }
            if let Some(c) = from {
                SqliteStore::open_read_only(&c.store)?.copy_to(path)?;
            }
            Arc::new(SqliteStore::open(path)?)
        }
        None => Arc::new(MemoryStore::counting()),
    };
    let store: Arc<dyn Store> = match &plan.events {
        Some(path) => Arc::new(JsonlLog::create(path, base)?),
        None => base,
    };
    let seams = match (faults, fault_parts) {
        (Some(setup), Some((_, ledger))) => {
            Some(FaultSeams { setup: setup.clone(), counters, ledger, log: Arc::new(HashingLog::new(store.clone())) })
        }
        _ => None,
    };
    let store: Arc<dyn Store> = match &seams {
        Some(s) => s.log.clone(),
        None => store,
    };
    let clock: Arc<dyn Clock> = Arc::new(VirtualClock::new(start));
    let span = (horizon.secs() - start.secs()).max(1) as f64;
    let mut progress = progress;
    let mut builder = Engine::builder()
        .clock(clock)
        .transport(transport)
        .store(store.clone())
        .strategies(plan.book.clone())
        .segmentation(plan.rules.clone())
        .users_with_state(users)
        .horizon(horizon)
        .seed(stream_seed)
        // Users are written once, at the end: a simulation has no restart to survive.
        .persist(crate::actors::entity::PersistPolicy::AtEnd)
        .threads(plan.threads)
        .progress(move |t| progress((t.secs() - start.secs()) as f64 / span));
    if let Some(settings) = &plan.learner {
        builder = builder.learner(settings.clone());
        if let Some(llm) = &plan.adviser {
            builder =
                builder.adviser(BlockingLlm::new(llm.clone()).map_err(|e| SimulationError::Adviser(e.to_string()))?);
        }
    }
    builder = match experiment_arms {
        Some(arms) => builder.arms(arms).collect_user_results(true),
        None => builder.groups(groups, policy),
    };
    if let Some(s) = &seams {
        builder = builder.ledger(s.ledger.clone());
    }
    let watch_drain = seams.is_some();
    let (result, drain) = run_on_virtual_runtime(move || async move {
        use actix::Actor as _;
        // The drain watch is an actor: it starts inside the engine's system.
        let watch = watch_drain.then(|| DrainWatch::default().start());
        if let Some(w) = &watch {
            builder = builder.outcome_listener(w.clone().recipient());
        }
        let result = builder.build()?.run().await?;
        let drain = match watch {
            Some(w) => Some(w.send(TakeOpenRetries).await.map_err(|e| EngineError::Mailbox(e.to_string()))?),
            None => None,
        };
        Ok::<_, EngineError>((result, drain))
    })??;
    let suppressed = Segment::ALL
        .iter()
        .flat_map(|seg| result.segments[seg.index()].suppressed.iter().map(|(reason, n)| (*seg, *reason, *n)))
        .collect();
    let in_force = result.scheduler.final_books.first().cloned().flatten();
    let in_force = in_force.as_deref().unwrap_or(&plan.book);
    let run = RunRecord {
        ended_at: horizon,
        strategy: plan.book.name.to_string(),
        seed: Some(plan.seed),
        suppressed,
        strategies: in_force.iter().cloned().collect(),
        strategy_changes: result.scheduler.strategy_changes.clone(),
        simulation: Some(SimulationMeta {
            users: plan.users as u64,
            population_start,
            scenario_name: plan.scenario_name.clone(),
            scenario_toml: toml::to_string(&plan.scenario).map_err(|e| SimulationError::Scenario(e.to_string()))?,
        }),
    };
    futures::executor::block_on(async {
        store.save_run(&run).await?;
        store.flush().await
    })?;
    let faults = seams.map(|s| {
        let total = &result.segments.iter().fold(SegmentStats::default(), |mut t, s| {
            t.absorb(s);
            t
        });
        let (open_retries, retries_opened) = drain.unwrap_or_default();
        let figures = crate::faults::RunFigures {
            user_days: plan.users as u64 * u64::from(plan.days),
            cap_violations: result.scheduler.cap_violations,
            suppressed: total.suppressed.values().sum(),
            held: total.suppressed.get(&SuppressReason::GateUnavailable).copied().unwrap_or(0),
            duplicates_dropped: result.scheduler.duplicate_events,
            open_retries,
            retries_opened,
            open_reservations: s.ledger.open_reservations(),
        };
        let name = if s.setup.plan.name.is_empty() { s.setup.name.clone() } else { s.setup.plan.name.clone() };
        FaultSummary::new(&s.setup.plan, name, &s.counters, figures, s.log.digest())
    });
    Ok(EngineRun { result, start, end: horizon, telegram: sim_transport.telegram_stats(), faults })
}

/// Every user of a saved simulation with their profile and cap state, checked to be the
/// population `0..users` that the seed and scenario regenerate.
fn load_population(path: &Path, users: usize) -> Result<Vec<UserState>, StoreError> {
    let loaded = SqliteStore::open_read_only(path)?.load_users()?;
    let misfit = loaded.len() != users || loaded.iter().enumerate().any(|(i, u)| u.profile.id != UserId(i as u64));
    if misfit {
        return Err(StoreError::NotResumable {
            path: path.display().to_string(),
            why: format!(
                "it holds {} users, not the {users} synthetic users 0..{users} of its simulation",
                loaded.len()
            ),
        });
    }
    Ok(loaded)
}

fn rate(n: u64, d: u64) -> f64 {
    if d == 0 { 0.0 } else { round6(n as f64 / d as f64) }
}

fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

fn row(name: &str, users: u64, holders: u64, s: &SegmentStats) -> SegmentRow {
    let engagement = if s.sent == 0 {
        0.0
    } else {
        round6(100.0 * (s.responses as f64 + 2.0 * s.conversions as f64 - 5.0 * s.opt_outs as f64) / s.sent as f64)
    };
    SegmentRow {
        segment: name.to_string(),
        users,
        holders,
        sent: s.sent,
        sent_via_group: s.sent_via_group,
        responses: s.responses,
        response_rate: rate(s.responses, s.sent),
        conversions: s.conversions,
        conversion_rate: rate(s.conversions, s.sent),
        opt_outs: s.opt_outs,
        opt_out_rate: rate(s.opt_outs, s.sent),
        engagement,
        suppressed: SuppressReason::ALL
            .iter()
            .map(|r| (r.as_str(), s.suppressed.get(r).copied().unwrap_or(0)))
            .filter(|(_, n)| *n > 0)
            .collect(),
        failed: s.failed.clone(),
    }
}

/// One row per segment, in fixed order, and the row of all segments together: what a
/// report and the run logs show of a finished run (simulated or live).
pub fn segment_rows(r: &RunResult) -> (Vec<SegmentRow>, SegmentRow) {
    let mut total = SegmentStats::default();
    let segments = Segment::ALL
        .iter()
        .map(|seg| {
            let stats = &r.segments[seg.index()];
            total.absorb(stats);
            row(seg.as_str(), r.governed_by[seg.index()], r.held_by[seg.index()], stats)
        })
        .collect();
    (segments, row("TOTAL", r.users, r.users, &total))
}

fn report(plan: &SimulationPlan, start: Timestamp, end: Timestamp, r: &RunResult, wall_secs: f64) -> SimulationReport {
    let (segments, total) = segment_rows(r);
    let events = r.scheduler.dispatched;
    SimulationReport {
        seed: plan.seed,
        users: r.users,
        days: plan.days,
        start: start.to_rfc3339(),
        end: end.to_rfc3339(),
        scenario: plan.scenario_name.clone(),
        strategy: plan.book.name.to_string(),
        sources: plan.sources.clone(),
        segments,
        total,
        daily: DailySeries::of_run(start, end, r),
        opted_out_users: r.opted_out_users,
        group_posts: r.scheduler.group_posts,
        group_posts_held: r.scheduler.group_posts_held.iter().map(|(k, v)| (k.as_str(), *v)).collect(),
        telegram: TelegramStats::default(),
        max_group_posts_seen_per_day: r.scheduler.max_exposure,
        member_exposure_limit: plan.scenario.group_member_exposure_limit(),
        cap_violations: r.scheduler.cap_violations,
        cap_violation_examples: r.scheduler.violation_examples.clone(),
        strategy_changes: r.scheduler.strategy_changes.clone(),
        adviser: r.scheduler.adviser.clone(),
        learner_notes: r.scheduler.learner_notes.iter().map(|(at, n)| (at.to_rfc3339(), n.clone())).collect(),
        learner_effect: None,
        faults: None,
        timing: Timing {
            wall_secs,
            events,
            events_per_sec: if wall_secs > 0.0 { events as f64 / wall_secs } else { 0.0 },
        },
    }
}

impl From<&SimulationReport> for RunTotals {
    fn from(report: &SimulationReport) -> RunTotals {
        RunTotals {
            sent: report.total.sent,
            responses: report.total.responses,
            conversions: report.total.conversions,
            users: report.users,
            opted_out_users: report.opted_out_users,
        }
    }
}

impl SimulationReport {
    /// The report as a readable table.
    pub fn to_text(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "gavat simulate — {} users × {} days ({} → {}), seed {}, scenario {}, strategies {}",
            self.users, self.days, self.start, self.end, self.seed, self.scenario, self.strategy
        );
        let _ = writeln!(
            out,
            "files: strategies {}; scenario {}; rules {}",
            self.sources.strategy, self.sources.scenario, self.sources.rules
        );
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "{:<18} {:>7} {:>8} {:>8} {:>9} {:>7} {:>7} {:>7} {:>8} {:>7} {:>9}",
            "segment", "users", "sent", "resp", "resp %", "conv", "conv %", "opt-out", "opt %", "engage", "via group"
        );
        for r in self.segments.iter().chain(std::iter::once(&self.total)) {
            if r.segment == "TOTAL" {
                let _ = writeln!(out, "{}", "-".repeat(110));
            }
            let _ = writeln!(
                out,
                "{:<18} {:>7} {:>8} {:>8} {:>8.2}% {:>7} {:>6.2}% {:>7} {:>7.3}% {:>7.1} {:>9}",
                r.segment,
                r.users,
                r.sent,
                r.responses,
                100.0 * r.response_rate,
                r.conversions,
                100.0 * r.conversion_rate,
                r.opt_outs,
                100.0 * r.opt_out_rate,
                r.engagement,
                r.sent_via_group
            );
        }
        let _ = writeln!(
            out,
            "users: governed by the segment at the end; sent: messages under its strategy, of which \
             \"via group\" reached the user through a group post (one post counts once per member)"
        );
        let _ = writeln!(out);
        let suppressed: Vec<String> = self.total.suppressed.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let _ = writeln!(
            out,
            "suppressed sends:  {}",
            if suppressed.is_empty() { "none".to_string() } else { suppressed.join(", ") }
        );
        let held: Vec<String> = self.group_posts_held.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let _ = writeln!(
            out,
            "group posts:       {} sent (delivered to {} members: the \"via group\" column), held back: {}",
            self.group_posts,
            self.total.sent_via_group,
            if held.is_empty() { "none".to_string() } else { held.join(", ") }
        );
        let _ = writeln!(
            out,
            "group exposure:    at most {} group posts seen by one member in a local day (limit {})",
            self.max_group_posts_seen_per_day, self.member_exposure_limit
        );
        let failed: Vec<String> = self.total.failed.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let _ = writeln!(
            out,
            "transport failures: {}",
            if failed.is_empty() { "none".to_string() } else { failed.join(", ") }
        );
        let t = &self.telegram;
        let sent: u64 = t.per_bot.values().sum();
        let _ = writeln!(
            out,
            "telegram limits:   busiest bot second {} messages; {} bot-seconds at the per-bot limit; a live \
             sender would hold {} of {} messages (mean wait {:.2} s, longest {} s); platform 429s {} ({} s frozen); \
             too soon in one chat {}, in one group {}",
            t.busiest_bot_second,
            t.bot_seconds_at_limit,
            t.delayed,
            sent,
            if t.delayed == 0 { 0.0 } else { t.wait_secs_total as f64 / t.delayed as f64 },
            t.longest_wait_secs,
            t.platform_429,
            t.frozen_secs,
            t.chat_too_soon,
            t.group_too_soon
        );
        let _ = writeln!(out, "users opted out:   {}", self.opted_out_users);
        let _ = writeln!(out, "cap violations:    {} (must be 0)", self.cap_violations);
        for example in &self.cap_violation_examples {
            let _ = writeln!(out, "  {example}");
        }
        if !self.strategy_changes.is_empty() {
            let count = |a: Action| self.strategy_changes.iter().filter(|c| c.action == a).count();
            let _ = writeln!(
                out,
                "learner:           {} changes applied, {} kept after review, {} rolled back, {} rejected",
                count(Action::Applied),
                count(Action::Kept),
                count(Action::RolledBack),
                count(Action::Rejected)
            );
            // What changed the strategies first; the rejected proposals (most lose their
            // simulation) only as a count, with --json for the details.
            let effective: Vec<&StrategyChange> =
                self.strategy_changes.iter().filter(|c| c.action != Action::Rejected).collect();
            for c in effective.iter().take(20) {
                let _ = writeln!(
                    out,
                    "  #{:<4} {} {:<18} {:<11} {:<14} {} → {}  ({})",
                    c.id,
                    c.at,
                    c.segment.as_str(),
                    c.action.as_str(),
                    c.field,
                    c.before,
                    c.after,
                    c.evidence
                );
            }
            if effective.len() > 20 {
                let _ = writeln!(out, "  … {} more changes (--json lists every one)", effective.len() - 20);
            }
            let _ = writeln!(
                out,
                "  {} proposals rejected: past a hard limit, or lost their simulation (--json lists why)",
                count(Action::Rejected)
            );
            if let Some(a) = &self.adviser {
                let from_llm =
                    |act: Action| self.strategy_changes.iter().filter(|c| c.source == "llm" && c.action == act).count();
                let errors: u64 = a.call_errors.values().sum();
                let _ = writeln!(
                    out,
                    "  llm adviser: asked {} times, {} valid replies, {} refused whole, {} failed requests; \
                     {} proposals: {} applied, {} rejected{}",
                    a.asked,
                    a.replies,
                    a.malformed_replies,
                    errors,
                    a.proposals,
                    from_llm(Action::Applied),
                    from_llm(Action::Rejected),
                    if a.disabled { " (disabled after a 401/403)" } else { "" }
                );
            }
            let mut last_hours: BTreeMap<&str, &str> = BTreeMap::new();
            for c in effective.iter().filter(|c| c.field == "send_hours") {
                last_hours.insert(c.segment.as_str(), &c.after);
            }
            let hours: Vec<String> = last_hours.iter().map(|(s, h)| format!("{s} {h}")).collect();
            if !hours.is_empty() {
                let _ = writeln!(out, "  optimal hours at the end: {}", hours.join(", "));
            }
        }
        if let Some(effect) = &self.learner_effect {
            out.push_str(&effect.to_text());
        }
        if let Some(faults) = &self.faults {
            out.push_str(&faults.to_text());
        }
        let _ = writeln!(
            out,
            "wall time:         {:.3} s, {} events, {:.0} events/s",
            self.timing.wall_secs, self.timing.events, self.timing.events_per_sec
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The scenario a saved state carries (as TOML) reads back as the same scenario, so a
    /// continuation regenerates the same population.
    #[test]
    fn a_saved_scenario_reads_back_the_same() {
        let scenario = Scenario::default_scenario();
        let text = toml::to_string(&scenario).unwrap();
        assert_eq!(Scenario::from_toml_str(&text, "saved").unwrap(), scenario);
    }

    /// A continuation draws fresh streams, the same for the same start.
    #[test]
    fn a_continuation_draws_its_own_streams() {
        let at =
            |secs| Continuation { store: PathBuf::new(), start: Timestamp(secs), population_start: SIMULATION_START };
        assert_ne!(at(SIMULATION_START.secs() + DAY).stream_seed(3), 3);
        assert_eq!(at(5).stream_seed(3), at(5).stream_seed(3));
        assert_ne!(at(5).stream_seed(3), at(6).stream_seed(3));
    }
}
