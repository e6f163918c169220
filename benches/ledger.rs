//! Benchmark: messages per second through the cap ledger — `reserve`, then `sending` and
//! `confirm` for a granted one, as the live engine does for every direct message — with 1,
//! 8 and 64 threads calling it at once. Results: docs/performance.md ("Cap ledger
//! throughput").
//!
//! `sqlite_shared` is what `gavat run` does: one `SqliteLedger` handle (one connection, on a
//! file in the target directory) shared by every shard thread, which group-commits the
//! writes they make at once. `sqlite_per_thread` gives
//! each thread a handle of its own, as separate processes on one store would hold.
//! `memory_shared` is the `MemoryLedger` reference behind the same calls.
//!
//! The load: 100,000 users in eleven time zones under realistic caps (3 a day, 4 h
//! cooldown, 09–21 local), each thread owning its own users as a shard does; a user's n-th
//! message falls at 09:00, 13:00 or 17:00 local of day n/3, so nearly every reservation is
//! granted and the full path runs. Message ids are unique across the whole run.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use gavat::clock::Stopwatch;
use gavat::domain::{Caps, HOUR, HourMask, Timestamp, UserId, Zone};
use gavat::ledger::{
    CapLedger, Counted, LedgerError, LedgerFuture, MemoryLedger, MessageId, Reservation, Reserved, SqliteLedger,
};

const USERS: usize = 100_000;
const START_DAY: i64 = 20_454; // 2026-01-01
const OFFSETS: [i32; 11] = [0, 60, 180, 330, -300, -480, 540, 600, 345, -180, 480];

fn caps() -> Caps {
    Caps { daily_limit: 3, cooldown_secs: 4 * HOUR, allowed_hours: HourMask::window(9, 21), period_days: 1 }
}

/// What persists between criterion's samples of one row: each user's next message number,
/// and the next message id.
struct Load {
    rounds: Vec<AtomicU32>,
    next_id: AtomicU64,
}

impl Load {
    fn new() -> Load {
        Load { rounds: (0..USERS).map(|_| AtomicU32::new(0)).collect(), next_id: AtomicU64::new(1) }
    }

    /// The next reservation for `user` (only the thread owning the user calls this).
    fn next(&self, user: usize) -> Reservation {
        let round = self.rounds[user].fetch_add(1, Ordering::Relaxed);
        let zone = Zone::fixed(OFFSETS[user % OFFSETS.len()]);
        let day = START_DAY + i64::from(round / 3);
        let hour = 9 + 4 * i64::from(round % 3);
        let at = Timestamp::start_of_local_day(day, zone).plus(hour * HOUR + (user % 600) as i64);
        let message = MessageId(self.next_id.fetch_add(1, Ordering::Relaxed));
        Reservation { message, user: UserId(user as u64), at, caps: caps(), zone }
    }
}

/// A ledger call's answer: the engine polls once, and so does the bench.
fn ready<T>(future: LedgerFuture<T>) -> Result<T, LedgerError> {
    futures::FutureExt::now_or_never(future).expect("ledger futures are ready when returned")
}

/// One message through the ledger; whether it was granted.
fn one_message(ledger: &dyn CapLedger, r: Reservation) -> bool {
    match ready(ledger.reserve(r)).expect("reserve") {
        Reserved::Granted => {
            ready(ledger.sending(r.message)).expect("sending");
            ready(ledger.confirm(r.message, Counted::Delivered)).expect("confirm");
            true
        }
        Reserved::Denied(_) => false,
    }
}

/// Runs `iters` messages split over `threads` threads, thread `t` owning the users
/// `t, t + threads, …`; `ledger_of(t)` is the handle thread `t` uses. Returns the wall time.
fn run(threads: usize, iters: u64, load: &Load, ledger_of: &(dyn Fn(usize) -> Arc<dyn CapLedger> + Sync)) -> Duration {
    let per_thread = iters.div_ceil(threads as u64);
    let granted = AtomicU64::new(0);
    let clock = Stopwatch::start();
    std::thread::scope(|scope| {
        for t in 0..threads {
            let ledger = ledger_of(t);
            let granted = &granted;
            scope.spawn(move || {
                let mut user = t;
                let mut mine = 0;
                for _ in 0..per_thread {
                    mine += u64::from(one_message(&*ledger, load.next(user)));
                    user += threads;
                    if user >= USERS {
                        user = t;
                    }
                }
                granted.fetch_add(mine, Ordering::Relaxed);
            });
        }
    });
    let elapsed = Duration::from_secs_f64(clock.elapsed_secs());
    let total = per_thread * threads as u64;
    assert!(granted.load(Ordering::Relaxed) * 100 >= total * 99, "nearly every reservation is granted");
    elapsed
}

fn ledger_throughput(c: &mut Criterion) {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("a temporary directory");
    let mut group = c.benchmark_group("ledger_messages");
    group.throughput(Throughput::Elements(1));
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(6));
    for threads in [1usize, 8, 64] {
        let path = dir.path().join(format!("shared-{threads}.db"));
        let shared: Arc<dyn CapLedger> = Arc::new(SqliteLedger::open(&path).expect("ledger opens"));
        let load = Load::new();
        group.bench_with_input(BenchmarkId::new("sqlite_shared", threads), &threads, |b, &threads| {
            b.iter_custom(|iters| run(threads, iters, &load, &|_| shared.clone()));
        });
    }
    {
        let threads = 8;
        let path = dir.path().join("per-thread.db");
        let handles: Vec<Arc<dyn CapLedger>> = (0..threads)
            .map(|_| Arc::new(SqliteLedger::open(&path).expect("ledger opens")) as Arc<dyn CapLedger>)
            .collect();
        let load = Load::new();
        group.bench_with_input(BenchmarkId::new("sqlite_per_thread", threads), &threads, |b, &threads| {
            b.iter_custom(|iters| run(threads, iters, &load, &|t| handles[t].clone()));
        });
    }
    for threads in [1usize, 8, 64] {
        let shared: Arc<dyn CapLedger> = Arc::new(MemoryLedger::default());
        let load = Load::new();
        group.bench_with_input(BenchmarkId::new("memory_shared", threads), &threads, |b, &threads| {
            b.iter_custom(|iters| run(threads, iters, &load, &|_| shared.clone()));
        });
    }
    group.finish();
}

criterion_group!(benches, ledger_throughput);
criterion_main!(benches);
