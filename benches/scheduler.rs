//! Benchmarks: the scheduler's queue and decisions at 10^4–10^6 pending items, a shard's
//! decisions (real `UserEntity` values and a `WorkQueue`, as `UserShard` runs them), the
//! pure rules alone, and a whole 10k-user × 30-day simulation. Results:
//! docs/performance.md.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use gavat::actors::entity::{Effects, PersistPolicy, UserContext, UserEntity};
use gavat::actors::queue::{ALL_RANKS, Work, WorkQueue};
use gavat::config::StrategyBook;
use gavat::domain::{Caps, DAY, HOUR, HourMask, OutboundMessage, Segment, SegmentSet, Timestamp, Zone};
use gavat::policy::{CapState, caps_for, decide, earliest_allowed, governing_segment, plan_next_send};
use gavat::segmentation::SegmentationRules;
use gavat::simulation::{self, SimulationPlan};
use gavat::transport::{Delivered, SendFuture, Sender};

const START: Timestamp = Timestamp(1_767_225_600);

fn caps() -> Caps {
    Caps { daily_limit: 3, cooldown_secs: 4 * HOUR, allowed_hours: HourMask::window(9, 21), period_days: 1 }
}

/// Steady state with N pending items: pop the earliest, decide for that user, plan the
/// next send, push it back. One iteration = one scheduling decision.
fn scheduler_decisions(c: &mut Criterion) {
    let mut group = c.benchmark_group("scheduler_decisions");
    group.throughput(Throughput::Elements(10_000));
    for pending in [10_000usize, 100_000, 1_000_000] {
        group.bench_with_input(BenchmarkId::from_parameter(pending), &pending, |b, &pending| {
            let offsets: Vec<Zone> = (0..pending).map(|i| Zone::fixed(((i % 25) as i32 - 12) * 60)).collect();
            let mut states = vec![CapState::default(); pending];
            let mut queue = WorkQueue::new();
            for user in 0..pending {
                queue.push(START.plus((user as i64 * 7_919) % DAY), Work::Wake { user: user as u32, token: 0 });
            }
            let caps = caps();
            let optimal = HourMask::window(18, 20);
            b.iter(|| {
                for _ in 0..10_000 {
                    let at = queue.next_due().expect("never empty");
                    let Some(Work::Wake { user, token }) = queue.pop_at(at) else { unreachable!() };
                    let u = user as usize;
                    let state = &mut states[u];
                    if decide(state, &caps, offsets[u], at) == gavat::policy::Decision::Send {
                        state.record_send(at, offsets[u]);
                    }
                    let next = plan_next_send(state, &caps, optimal, offsets[u], at.plus(1), (u as i64 * 31) % 3_600)
                        .unwrap_or(at.plus(DAY));
                    queue.push(next, Work::Wake { user, token });
                }
            });
        });
    }
    group.finish();
}

/// A sender that delivers every message at once (and nothing ever comes back): the shard's
/// own cost, without the simulated users' reactions.
#[derive(Debug)]
struct DeliverAtOnce;

impl Sender for DeliverAtOnce {
    fn send(&self, _message: &OutboundMessage) -> SendFuture {
        Box::pin(std::future::ready(Ok(Delivered)))
    }
}

/// Decisions per batch of [`shard_decisions`].
const SHARD_BATCH: u64 = 10_000;

/// A shard's hot path with N pending users: synthetic users (the default scenario, seed 7)
/// as real `UserEntity` values with their first plans in a `WorkQueue`; one iteration pops
/// the earliest wake and runs it as `UserShard::process` and `absorb` do in a simulation
/// (wake: segment, decide, reserve in the shard's ledger, send, confirm, count, plan; push
/// the next wake, keep the outcome, drop the log entries). One element = one decision. The transport delivers at once and
/// nothing comes back (no replies), so this is the shard's cost per decision, not the
/// simulated users'.
fn shard_decisions(c: &mut Criterion) {
    let scenario = gavat_sim::Scenario::default_scenario();
    let book = Arc::new(StrategyBook::defaults());
    let cx = UserContext {
        sender: Arc::new(DeliverAtOnce),
        ledger: Arc::new(gavat::ledger::MemoryLedger::default()),
        run_nonce: 1,
        persist: PersistPolicy::AtEnd,
        rules: Arc::new(SegmentationRules::defaults()),
        wall_scale: 1,
    };
    let mut group = c.benchmark_group("shard_decisions");
    group.throughput(Throughput::Elements(SHARD_BATCH));
    for pending in [10_000usize, 100_000, 1_000_000] {
        // Built on first use, so that benchmarks filtered out cost nothing.
        let mut shard: Option<(Vec<UserEntity>, WorkQueue)> = None;
        let mut effects = Effects::default();
        let mut outcomes = Vec::new();
        let mut decided = 0u64;
        group.bench_function(BenchmarkId::from_parameter(pending), |b| {
            let (entities, queue) = shard.get_or_insert_with(|| shard_users(&scenario, &cx, &book, pending));
            b.iter(|| {
                for _ in 0..SHARD_BATCH {
                    let Some((at, Work::Wake { user, token })) = queue.pop_before(Timestamp(i64::MAX), ALL_RANKS)
                    else {
                        panic!("the queue ran dry");
                    };
                    let step = entities[user as usize].wake(&cx, &mut effects, at, token, &book);
                    if let Some((next, token)) = step.next_wake {
                        queue.push(next, Work::Wake { user, token });
                    }
                    if let Some(outcome) = step.outcome {
                        outcomes.push(outcome);
                    }
                    effects.log.clear();
                }
                decided += SHARD_BATCH;
                black_box(outcomes.len());
                outcomes.clear();
            })
        });
        if let Some((_, queue)) = &mut shard {
            let day = queue.next_due().map_or(0, |t| (t.secs() - START.secs()) / DAY);
            eprintln!(
                "shard_decisions/{pending}: {decided} decisions, {} wakes still queued, virtual day {day}",
                queue.len()
            );
        }
    }
    group.finish();
}

/// `n` synthetic users as entities, their first wakes queued.
fn shard_users(
    scenario: &gavat_sim::Scenario,
    cx: &UserContext,
    book: &StrategyBook,
    n: usize,
) -> (Vec<UserEntity>, WorkQueue) {
    let mut population = gavat_sim::generate(scenario, n, 7, START.secs());
    let histories = std::mem::take(&mut population.histories);
    let mut entities = Vec::with_capacity(n);
    let mut queue = WorkQueue::new();
    for (i, (user, history)) in population.users.iter().zip(&histories).enumerate() {
        let profile = simulation::profile_from_synthetic(user, history);
        let rng = gavat_sim::stream(7, profile.id.0, gavat_sim::Purpose::Engine);
        let mut entity = UserEntity::new(i as u32, profile, rng, None);
        if let Some((at, token)) = entity.first_plan(cx, START, book) {
            queue.push(at, Work::Wake { user: i as u32, token });
        }
        entities.push(entity);
    }
    (entities, queue)
}

/// The pure rules, one call each.
fn rules(c: &mut Criterion) {
    let book = StrategyBook::defaults();
    let mut segments = SegmentSet::default();
    segments.insert(Segment::HotLead, 0.8);
    segments.insert(Segment::NightOwl, 0.6);
    segments.insert(Segment::BotLover, 0.7);
    let offset = Zone::fixed(180);
    let mut state = CapState::default();
    state.record_send(START.plus(10 * HOUR), offset);
    let now = START.plus(11 * HOUR);
    let caps = caps_for(&segments, &book);

    let mut group = c.benchmark_group("rules");
    group.bench_function("caps_for", |b| b.iter(|| caps_for(black_box(&segments), &book)));
    group.bench_function("governing_segment", |b| b.iter(|| governing_segment(black_box(&segments), &book)));
    group.bench_function("decide", |b| b.iter(|| decide(black_box(&state), &caps, offset, black_box(now))));
    // The same in an IANA zone: each local day and hour reads the tz database.
    let berlin: Zone = "Europe/Berlin".parse().expect("a zone");
    group.bench_function("decide_iana", |b| b.iter(|| decide(black_box(&state), &caps, berlin, black_box(now))));
    group.bench_function("earliest_allowed", |b| {
        b.iter(|| earliest_allowed(black_box(&state), &caps, offset, black_box(now)))
    });
    group.bench_function("plan_next_send", |b| {
        b.iter(|| plan_next_send(black_box(&state), &caps, HourMask::window(18, 20), offset, black_box(now), 600))
    });
    group.finish();
}

/// The whole engine: 10k synthetic users for 30 simulated days.
fn whole_simulation(c: &mut Criterion) {
    let mut group = c.benchmark_group("simulation");
    group.sample_size(10);
    group.bench_function("10k_users_30_days", |b| {
        b.iter_batched(
            || SimulationPlan {
                users: 10_000,
                days: 30,
                seed: 1,
                scenario: gavat_sim::Scenario::default_scenario(),
                scenario_name: "default".into(),
                sources: Default::default(),
                book: StrategyBook::defaults(),
                rules: gavat::segmentation::SegmentationRules::defaults(),
                events: None,
                save_state: None,
                learner: None,
                adviser: None,
                threads: gavat::engine::default_threads(),
            },
            |plan| simulation::run(&plan, |_| {}).expect("simulation runs"),
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, scheduler_decisions, shard_decisions, rules, whole_simulation);
criterion_main!(benches);
