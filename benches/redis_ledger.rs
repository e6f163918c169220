//! Cap-checked reservations per second through [`RedisLedger`] at 1, 8 and 64 calls in
//! flight (one thread each, as engine actors call it), next to `redis-benchmark` running
//! the *same* reserve script by `EVALSHA` (50 connections, pipelines of 32) against the same
//! server in the same run: the server's own ceiling for this work. Issue 12's target: the
//! ledger reaches at least half of it. Results: docs/performance.md, "Redis cap ledger
//! throughput (issue 12)".
//!
//! Not a criterion benchmark: criterion times one closure on one thread, and the figure
//! wanted is throughput with N callers in flight, so each level runs for a fixed time and
//! counts. The server is a private `redis-server` on a free loopback port (`--save ''
//! --appendonly no`), killed at the end; set `GAVAT_BENCH_REDIS_URL` to use another (the
//! bench then writes under the prefix `gavat-bench:<pid>:` and leaves the keys).

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use gavat::domain::{Caps, DAY, HOUR, HourMask, Timestamp, UserId, Zone};
use gavat::ledger::{CapLedger, MessageId, RedisLedger, Reservation};

/// How long each in-flight level runs.
const RUN: Duration = Duration::from_secs(3);
/// Users the reservations cycle over (so some are denied by the daily limit).
const USERS: u64 = 100_000;

struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn private_server() -> Server {
    let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
    let server = Server {
        child: Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--maxmemory-policy", "noeviction"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server on PATH (apt-get install redis-server)"),
        port,
    };
    for _ in 0..200 {
        let ping = Command::new("redis-cli").args(["-p", &port.to_string(), "PING"]).output();
        if ping.is_ok_and(|o| o.stdout.starts_with(b"PONG")) {
            return server;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("redis-server did not start");
}

/// Reservations per second with `threads` callers for [`RUN`].
#[allow(clippy::disallowed_methods)] // a benchmark measures wall-clock time
fn ledger_rate(ledger: &Arc<RedisLedger>, threads: u64, base: u64) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let started = std::time::Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (ledger, stop, done, failed) =
                (Arc::clone(ledger), Arc::clone(&stop), Arc::clone(&done), Arc::clone(&failed));
            std::thread::spawn(move || {
                let caps = Caps { daily_limit: 3, cooldown_secs: 0, allowed_hours: HourMask::ALL_DAY, period_days: 1 };
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let n = base + t * 100_000_000 + i;
                    let r = Reservation {
                        message: MessageId(n),
                        user: UserId(n % USERS),
                        at: Timestamp(20_000 * DAY + 10 * HOUR),
                        caps,
                        zone: Zone::UTC,
                    };
                    match futures::FutureExt::now_or_never(ledger.reserve(r)) {
                        Some(Ok(_)) => done.fetch_add(1, Ordering::Relaxed),
                        _ => failed.fetch_add(1, Ordering::Relaxed),
                    };
                    i += 1;
                }
            })
        })
        .collect();
    std::thread::sleep(RUN);
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        let _ = h.join();
    }
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(failed.load(Ordering::Relaxed), 0, "reservations failed: {:?}", ledger.paused());
    done.load(Ordering::Relaxed) as f64 / secs
}

/// `redis-benchmark -n 200000 -c 50 -P 32 EVALSHA <the reserve script> 6 keys… args…`;
/// requests per second as it reports them.
fn redis_benchmark(port: u16, prefix: &str, epoch: &str) -> (f64, String) {
    let sha = redis::Script::new(RedisLedger::reserve_script()).get_hash().to_string();
    let r = "__rand_int__";
    let args: Vec<String> = vec![
        "-h".into(),
        "127.0.0.1".into(),
        "-p".into(),
        port.to_string(),
        "-n".into(),
        "200000".into(),
        "-c".into(),
        "50".into(),
        "-P".into(),
        "32".into(),
        "-r".into(),
        "1000000".into(),
        "-q".into(),
        "EVALSHA".into(),
        sha,
        "6".into(),
        format!("{prefix}{{g}}:epoch"),
        format!("{prefix}{{u:{r}}}:cap"),
        format!("{prefix}{{u:{r}}}:pend"),
        format!("{prefix}{{u:{r}}}:m:{r}"),
        format!("{prefix}{{g}}:pending"),
        format!("{prefix}idx:{r}"),
        epoch.into(),
        r.into(),
        r.into(),
        (20_000 * DAY + 10 * HOUR).to_string(),
        "0".into(),
        "3".into(),
        "0".into(),
        HourMask::ALL_DAY.0.to_string(),
        "1".into(),
        "604800000".into(),
    ];
    let out = Command::new("redis-benchmark").args(&args).output().expect("redis-benchmark on PATH");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    // `-q` redraws a progress line with carriage returns: the last segment is the result.
    let line = text.rsplit(['\r', '\n']).find(|l| l.contains("requests per second")).unwrap_or_default().to_string();
    let rate = line
        .split("requests per second")
        .next()
        .and_then(|s| s.rsplit(' ').find(|w| !w.is_empty()).or(Some(s)))
        .and_then(|s| s.trim().trim_start_matches(|c: char| !c.is_ascii_digit()).parse().ok())
        .unwrap_or(0.0);
    let shown = format!("redis-benchmark {}", args[..13].join(" ")) + " EVALSHA <reserve sha> 6 <keys> <args>";
    (rate, format!("{shown}\n  → {}", line.trim()))
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("redis_ledger: bench");
        return;
    }
    let own;
    let (url, port) = match std::env::var("GAVAT_BENCH_REDIS_URL") {
        Ok(url) => {
            let port = url.rsplit(':').next().and_then(|p| p.trim_end_matches('/').parse().ok()).unwrap_or(6379);
            (url, port)
        }
        Err(_) => {
            own = private_server();
            (format!("redis://127.0.0.1:{}", own.port), own.port)
        }
    };
    let prefix = format!("gavat-bench:{}:", std::process::id());
    let ledger = Arc::new(RedisLedger::connect(&url, &prefix).expect("connect"));
    println!("Redis cap ledger throughput against {url} (cluster: {})", ledger.is_cluster());
    let mut rates = Vec::new();
    for (level, threads) in [1u64, 8, 64].into_iter().enumerate() {
        let rate = ledger_rate(&ledger, threads, (level as u64 + 1) << 40);
        println!("  RedisLedger::reserve, {threads:>2} in flight: {rate:>9.0} reservations/s");
        rates.push(rate);
    }
    let (ceiling, how) = redis_benchmark(port, &prefix, ledger.epoch());
    println!("  {how}");
    let best = rates.iter().copied().fold(0.0, f64::max);
    if ceiling > 0.0 {
        println!("  best ledger rate / redis-benchmark rate = {:.0} % (target ≥ 50 %)", 100.0 * best / ceiling);
    } else {
        println!("  redis-benchmark reported no rate");
    }
}
