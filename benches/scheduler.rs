//! Benchmarks: the scheduler's queue and decisions at 10^4–10^6 pending items, the pure
//! rules alone, and a whole 10k-user × 30-day simulation. Results: docs/performance.md.

use std::hint::black_box;

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use gavat::actors::queue::{Work, WorkQueue};
use gavat::config::StrategyBook;
use gavat::domain::{Caps, DAY, HOUR, HourMask, Segment, SegmentSet, Timestamp, UtcOffset};
use gavat::policy::{CapState, caps_for, decide, earliest_allowed, governing_segment, plan_next_send};
use gavat::simulation::{self, SimulationPlan};

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
            let offsets: Vec<UtcOffset> = (0..pending).map(|i| UtcOffset(((i % 25) as i32 - 12) * 60)).collect();
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

/// The pure rules, one call each.
fn rules(c: &mut Criterion) {
    let book = StrategyBook::defaults();
    let mut segments = SegmentSet::default();
    segments.insert(Segment::HotLead, 0.8);
    segments.insert(Segment::NightOwl, 0.6);
    segments.insert(Segment::BotLover, 0.7);
    let offset = UtcOffset(180);
    let mut state = CapState::default();
    state.record_send(START.plus(10 * HOUR), offset);
    let now = START.plus(11 * HOUR);
    let caps = caps_for(&segments, &book);

    let mut group = c.benchmark_group("rules");
    group.bench_function("caps_for", |b| b.iter(|| caps_for(black_box(&segments), &book)));
    group.bench_function("governing_segment", |b| b.iter(|| governing_segment(black_box(&segments), &book)));
    group.bench_function("decide", |b| b.iter(|| decide(black_box(&state), &caps, offset, black_box(now))));
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

criterion_group!(benches, scheduler_decisions, rules, whole_simulation);
criterion_main!(benches);
