//! The Redis and concurrency rows of the fault matrix (RELIABILITY.md §7.2, sections C, D
//! and the Redis rows of H), each as a test that emits a [`RowReport`] with its figures.
//!
//! Most rows drive the cap gate the way the engine does ([`Driver`]: `reserve` → `sending`
//! → the send → `confirm`, a failed gate call retried later with the **same** message id)
//! against a private `redis-server` the test disturbs; the ground truth is the driver's own
//! list of sends, checked afterwards for caps, cooldowns and duplicates, and the ledger's
//! records in Redis, checked for every acknowledged write. Rows 19 and 23 run `gavat run`
//! as child processes. Every row that restarts, pauses, fills or reconfigures Redis has a
//! private server of its own; each report states the `appendfsync` policy it ran under.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use gavat::domain::{Caps, DAY, HOUR, HourMask, Timestamp, UserId};
use gavat::ledger::{CapLedger, Counted, LedgerError, MessageId, RedisLedger, Reservation, Reserved};
use gavat::redis_link::RedisOptions;
use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64Mcg;

use crate::fault_report::{RowReport, RunKind};
use crate::redis_ledger::{now, request};
use crate::redis_server::{Cluster, Error, PrivateRedis};
use crate::tcp_proxy::{Fault, TcpProxy};

/// The key prefix of every row's ledger (each row has a server of its own).
const PREFIX: &str = "rows:";

/// Wall time, for the rows' measurements and fault windows (the engine never reads it).
#[allow(clippy::disallowed_methods)]
fn wall() -> Instant {
    Instant::now()
}

/// The caps the driver asks for: three a local day, ten minutes apart.
fn caps() -> Caps {
    Caps { daily_limit: 3, cooldown_secs: 600, allowed_hours: HourMask::ALL_DAY, period_days: 1 }
}

/// One message handed to the "transport".
#[derive(Clone, Copy, Debug)]
struct Sent {
    message: u64,
    user: u64,
    at: i64,
}

/// A message whose gate call failed: asked again later with the same id (rule 1).
#[derive(Clone, Copy, Debug)]
struct Waiting {
    message: u64,
    user: u64,
    at: i64,
}

/// Drives a cap ledger the way the engine does, one message per step.
struct Driver {
    ledger: RedisLedger,
    rng: Pcg64Mcg,
    users: u64,
    next_message: u64,
    /// Engine time: a minute per step from 08:00 UTC on day 20,000.
    clock: i64,
    waiting: Vec<Waiting>,
    /// Sent, but `confirm` failed: confirmed again later.
    unconfirmed: Vec<u64>,
    sent: Vec<Sent>,
    /// Messages whose `confirm` answered: acknowledged writes.
    acked: Vec<Sent>,
    /// The last answer of the gate for every message it answered.
    answers: BTreeMap<u64, Reserved>,
    gate_calls: u64,
    /// Reasons of failed calls, in order.
    failures: Vec<String>,
    /// Gate answers (`Ok` of any call) received while the test said a fault was on.
    answered_during_fault: u64,
    /// Sends made while the test said a fault was on.
    sent_during_fault: u64,
    /// Retries of a message id whose gate call had failed.
    retries: u64,
}

impl Driver {
    fn new(ledger: RedisLedger, seed: u64, users: u64) -> Driver {
        Driver {
            ledger,
            rng: Pcg64Mcg::seed_from_u64(seed),
            users,
            next_message: 1,
            clock: 20_000 * DAY + 8 * HOUR,
            waiting: Vec::new(),
            unconfirmed: Vec::new(),
            sent: Vec::new(),
            acked: Vec::new(),
            answers: BTreeMap::new(),
            gate_calls: 0,
            failures: Vec::new(),
            answered_during_fault: 0,
            sent_during_fault: 0,
            retries: 0,
        }
    }

    /// Notes one call's answer; true when it answered.
    fn answered<T>(&mut self, answer: &Result<T, LedgerError>, fault_on: bool) -> bool {
        self.gate_calls += 1;
        match answer {
            Ok(_) => {
                if fault_on {
                    self.answered_during_fault += 1;
                }
                true
            }
            Err(e) => {
                self.failures.push(e.to_string());
                false
            }
        }
    }

    /// One step: confirms what waits for it, then asks for one message — a waiting one
    /// first, else a new one for a user drawn from the seed.
    fn step(&mut self, fault_on: bool) {
        self.clock += 60;
        let unconfirmed = std::mem::take(&mut self.unconfirmed);
        for message in unconfirmed {
            let answer = now(self.ledger.confirm(MessageId(message), Counted::Delivered));
            if self.answered(&answer, fault_on) {
                let sent = *self.sent.iter().find(|s| s.message == message).expect("a sent message");
                self.acked.push(sent);
            } else {
                self.unconfirmed.push(message);
            }
        }
        let next = if self.waiting.is_empty() {
            let user = self.rng.random_range(0..self.users);
            let message = self.next_message;
            self.next_message += 1;
            Waiting { message, user, at: self.clock }
        } else {
            self.retries += 1;
            self.waiting.remove(0)
        };
        let reservation = Reservation {
            message: MessageId(next.message),
            at: Timestamp(next.at),
            caps: caps(),
            ..request(0, next.user)
        };
        let answer = now(self.ledger.reserve(reservation));
        if !self.answered(&answer, fault_on) {
            self.waiting.push(next);
            return;
        }
        let Ok(decision) = answer else { return };
        self.answers.insert(next.message, decision);
        if decision != Reserved::Granted {
            return;
        }
        let sending = now(self.ledger.sending(MessageId(next.message)));
        if !self.answered(&sending, fault_on) {
            // As the engine: not sent, released (a failed release leaves a lease that
            // `recover` settles).
            let _ = now(self.ledger.release(MessageId(next.message)));
            return;
        }
        let sent = Sent { message: next.message, user: next.user, at: next.at };
        self.sent.push(sent);
        if fault_on {
            self.sent_during_fault += 1;
        }
        let confirm = now(self.ledger.confirm(MessageId(next.message), Counted::Delivered));
        if self.answered(&confirm, fault_on) {
            self.acked.push(sent);
        } else {
            self.unconfirmed.push(next.message);
        }
    }

    fn run(&mut self, steps: usize, fault_on: bool) {
        for _ in 0..steps {
            self.step(fault_on);
        }
    }

    /// Steps until `until` (wall time), a millisecond apart (a failing gate answers within
    /// microseconds during its backoff; the machine is shared).
    fn run_until(&mut self, until: Instant, fault_on: bool) -> usize {
        let mut steps = 0;
        while wall() < until {
            self.step(fault_on);
            steps += 1;
            std::thread::sleep(Duration::from_millis(1));
        }
        steps
    }

    /// Steps until a gate call answers again (at most `limit`); the time it took.
    fn until_answering(&mut self, limit: Duration) -> Duration {
        let start = wall();
        while start.elapsed() < limit {
            let calls = self.gate_calls;
            let failed = self.failures.len();
            self.step(false);
            if self.gate_calls - calls > (self.failures.len() - failed) as u64 {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        start.elapsed()
    }

    /// Failures whose reason contains `text`.
    fn failures_with(&self, text: &str) -> u64 {
        self.failures.iter().filter(|f| f.contains(text)).count() as u64
    }

    /// Messages asked for and never decided (still waiting), and sends never confirmed.
    fn undecided(&self) -> u64 {
        (self.waiting.len() + self.unconfirmed.len()) as u64
    }

    /// The messages the driver asked about.
    fn messages(&self) -> u64 {
        self.next_message - 1
    }

    /// Sends of one message id beyond the first.
    fn duplicates(&self) -> u64 {
        let ids: BTreeSet<u64> = self.sent.iter().map(|s| s.message).collect();
        (self.sent.len() - ids.len()) as u64
    }
}

/// Cap and cooldown violations among `sent` (by the caps of [`caps`], UTC days), and the
/// user-days checked: `(bad, user-days)`.
fn violations(sent: &[Sent]) -> (u64, u64) {
    violations_of(sent, caps())
}

/// [`violations`] under `caps`.
fn violations_of(sent: &[Sent], caps: Caps) -> (u64, u64) {
    let mut by_user: BTreeMap<u64, Vec<i64>> = BTreeMap::new();
    for s in sent {
        by_user.entry(s.user).or_default().push(s.at);
    }
    let (mut bad, mut user_days) = (0, 0);
    for times in by_user.values_mut() {
        times.sort_unstable();
        let mut per_day: BTreeMap<i64, u32> = BTreeMap::new();
        for (i, at) in times.iter().enumerate() {
            let n = per_day.entry(at.div_euclid(DAY)).or_default();
            *n += 1;
            if *n > caps.daily_limit {
                bad += 1;
            }
            if i > 0 && at - times[i - 1] < caps.cooldown_secs {
                bad += 1;
            }
        }
        user_days += per_day.len() as u64;
    }
    (bad, user_days)
}

/// A plain connection to a private server, for reading the ledger's records.
fn connection(url: &str) -> Result<redis::Connection, Error> {
    Ok(redis::Client::open(url)?.get_connection_with_timeout(Duration::from_secs(2))?)
}

/// Acknowledged writes the server no longer holds: sends whose record is not counted.
fn lost_acked(url: &str, acked: &[Sent]) -> Result<Vec<Sent>, Error> {
    let mut conn = connection(url)?;
    let mut lost = Vec::new();
    for s in acked {
        let key = format!("{PREFIX}{{u:{}}}:m:{}", s.user, s.message);
        let state: Option<String> = redis::cmd("HGET").arg(&key).arg("s").query(&mut conn)?;
        if state.as_deref() != Some("c") {
            lost.push(*s);
        }
    }
    Ok(lost)
}

/// Answers the driver received that differ from the decision the ledger recorded (a retry
/// must return the first decision).
fn answers_unlike_records(url: &str, answers: &BTreeMap<u64, Reserved>, sent: &[Sent]) -> Result<u64, Error> {
    let users: BTreeMap<u64, u64> = sent.iter().map(|s| (s.message, s.user)).collect();
    let mut conn = connection(url)?;
    let mut differ = 0;
    for (message, answer) in answers {
        let Some(user) = users.get(message) else { continue };
        let key = format!("{PREFIX}{{u:{user}}}:m:{message}");
        let recorded: Option<String> = redis::cmd("HGET").arg(&key).arg("d").query(&mut conn)?;
        let expected = match answer {
            Reserved::Granted => "granted",
            Reserved::Denied(reason) => reason.as_str(),
        };
        if recorded.as_deref() != Some(expected) {
            differ += 1;
        }
    }
    Ok(differ)
}

fn options(call_timeout_ms: u64) -> RedisOptions {
    RedisOptions { call_timeout: Duration::from_millis(call_timeout_ms), ..RedisOptions::default() }
}

/// The figures every driven row reports: caps and cooldowns, duplicate sends, messages
/// left undecided once the faults stopped.
fn common_figures(report: &mut RowReport, driver: &Driver) {
    let (bad, user_days) = violations(&driver.sent);
    report
        .figure("cap and cooldown violations / user-days", bad, user_days)
        .figure("duplicate sends / sends", driver.duplicates(), driver.sent.len() as u64)
        .measure("gate calls", driver.gate_calls)
        .measure("failed gate calls", driver.failures.len() as u64)
        .measure("messages", driver.messages())
        .measure("sends", driver.sent.len() as u64)
        .measure("retried message ids", driver.retries);
}

/// Row 14: `kill -9` of a persistent Redis mid-run, restarted on the same directory.
/// Under `always` every acknowledged write is on disk: the running ledger sees the new
/// `run_id`, reads `appendfsync always` from the server and goes on, and no acknowledged
/// write is missing. Under `everysec` the last second may be gone (redis.conf's promise),
/// so the ledger stops for good; a ledger opened again (an operator restarting gavat) may
/// then exceed a cap only for the users of writes the policy lost.
fn kill_nine(policy: &str) -> Result<(), Error> {
    let seed = 14;
    let durable = policy == "always";
    let mut redis = PrivateRedis::start(&["--appendonly", "yes", "--appendfsync", policy])?;
    let url = redis.url();
    let mut driver = Driver::new(RedisLedger::connect(&url, PREFIX)?, seed, 40);
    driver.run(150, false);
    // Mid-run: no quiet moment before the kill, so `everysec` may lose the last writes.
    let acked_before = driver.acked.clone();
    redis.kill();
    redis.restart()?;
    let restarted = wall();
    // Under `everysec` the ledger must refuse everything now; under `always` go on.
    driver.run(30, !durable);
    let answered_after = restarted.elapsed();
    let lost = lost_acked(&url, &acked_before)?;

    let mut report = RowReport::new(&format!("14-{policy}"), seed, RunKind::Liveness).fsync(policy);
    report.fired("kill -9 of redis-server", 1);
    if durable {
        driver.run(120, false);
        report
            .fired("restarts gone through (every write on disk)", driver.ledger.durable_restarts_total())
            .figure("acknowledged writes lost / W", lost.len() as u64, acked_before.len() as u64)
            .figure("messages undecided at the end / messages", driver.undecided(), driver.messages())
            .measure("30 steps after the restart ms", answered_after.as_millis() as u64);
        common_figures(&mut report, &driver);
    } else {
        let paused = driver.ledger.paused().is_some_and(|p| p.contains("restarted"));
        // The operator restarts gavat: a new ledger on the data the policy kept.
        driver.ledger = RedisLedger::connect(&url, PREFIX)?;
        let recovered = now(driver.ledger.recover())?;
        driver.run(120, false);
        // redis.conf: "everysec … you can lose one second of data". A cap may then be
        // exceeded for the users of the lost writes only; every other user's caps hold.
        let lost_users: BTreeSet<u64> = lost.iter().map(|s| s.user).collect();
        let kept: Vec<Sent> = driver.sent.iter().copied().filter(|s| !lost_users.contains(&s.user)).collect();
        let (bad, user_days) = violations(&kept);
        report
            .fired("restart noticed (run_id), ledger paused for good", u64::from(paused))
            .figure("sends after the restart before an operator acted / N", driver.sent_during_fault, 30)
            .figure("gate answers after the restart before an operator acted / N", driver.answered_during_fault, 30)
            .figure("violations on users whose writes were kept / user-days", bad, user_days)
            .figure("duplicate sends / sends", driver.duplicates(), driver.sent.len() as u64)
            .figure("messages undecided at the end / messages", driver.undecided(), driver.messages())
            .measure("acknowledged writes lost (the policy allows one second)", lost.len() as u64)
            .measure("acknowledged writes", acked_before.len() as u64)
            .measure("leases released by recover", recovered.released)
            .measure("leases counted unknown by recover", recovered.unknown);
    }
    report.emit();
    Ok(())
}

/// Row 14 under `appendfsync always`.
#[test]
fn row_14_kill_nine_under_always_loses_no_acknowledged_write() -> Result<(), Error> {
    kill_nine("always")
}

/// Row 14 under `appendfsync everysec`.
#[test]
fn row_14_kill_nine_under_everysec_keeps_the_caps_of_kept_writes() -> Result<(), Error> {
    kill_nine("everysec")
}

/// Row 15: a restart without persistence; the ledger stops sending for good and says why
/// on the first call after it.
#[test]
fn row_15_a_restart_without_persistence_stops_sending() -> Result<(), Error> {
    let seed = 15;
    let mut redis = PrivateRedis::start(&[])?;
    let mut driver = Driver::new(RedisLedger::connect(&redis.url(), PREFIX)?, seed, 30);
    driver.run(60, false);
    redis.restart()?;
    let restarted = wall();
    driver.step(true);
    let detected = restarted.elapsed();
    driver.run(59, true);
    let mut report = RowReport::new("15", seed, RunKind::Safety).fsync("none");
    report
        .fired("restart without persistence", 1)
        .fired("calls refused naming the restart", driver.failures_with("restarted"))
        .figure("sends after data loss / N", driver.sent_during_fault, 60)
        .figure("gate answers after data loss / N", driver.answered_during_fault, 60)
        .measure("time to detect ms", detected.as_millis() as u64)
        .measure("paused", driver.ledger.paused().is_some());
    common_figures(&mut report, &driver);
    report.emit();
    assert!(driver.ledger.paused().is_some_and(|p| p.contains("restarted")));
    Ok(())
}

/// Row 16: `CLIENT PAUSE 3000 ALL` (the row's 10 s scaled down) during gate calls: no
/// answer and no send while paused, and every retried message id gets its first decision.
#[test]
fn row_16_client_pause_sends_nothing_and_retries_get_the_first_decision() -> Result<(), Error> {
    let seed = 16;
    let redis = PrivateRedis::start(&[])?;
    let url = redis.url();
    let mut driver = Driver::new(RedisLedger::connect_with(&url, PREFIX, options(300))?, seed, 30);
    driver.run(40, false);
    redis.cli(&["CLIENT", "PAUSE", "3000", "ALL"])?;
    let paused = wall();
    // Steps that start within the first second end (3 calls × ≤ 0.55 s) inside the pause.
    driver.run_until(paused + Duration::from_secs(1), true);
    let failed_in_pause = driver.failures.len() as u64;
    while paused.elapsed() < Duration::from_millis(3_100) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let recovery = driver.until_answering(Duration::from_secs(5));
    driver.run(40, false);
    let differ = answers_unlike_records(&url, &driver.answers, &driver.sent)?;
    let mut report = RowReport::new("16", seed, RunKind::Liveness).fsync("none");
    report
        .fired("gate calls refused during CLIENT PAUSE (timed out, or within the backoff)", failed_in_pause)
        .figure("sends during the pause / gate calls in the pause", driver.sent_during_fault, failed_in_pause)
        .figure("gate answers during the pause / calls", driver.answered_during_fault, failed_in_pause)
        .figure("answers unlike the recorded first decision / answers", differ, driver.answers.len() as u64)
        .figure("messages undecided at the end / messages", driver.undecided(), driver.messages())
        .measure("recovered after the pause ms", recovery.as_millis() as u64);
    common_figures(&mut report, &driver);
    report.emit();
    Ok(())
}

/// Row 17: every connection killed (`CLIENT KILL TYPE normal`) every second while the
/// gate is busy: reconnects are counted, nothing is lost unretried, caps hold.
#[test]
fn row_17_killed_connections_reconnect_and_lose_nothing() -> Result<(), Error> {
    let seed = 17;
    let redis = PrivateRedis::start(&[])?;
    let url = redis.url();
    let mut driver = Driver::new(RedisLedger::connect(&url, PREFIX)?, seed, 30);
    let port = redis.port;
    let stop = std::sync::atomic::AtomicBool::new(false);
    let kills = std::thread::scope(|scope| {
        let killer = scope.spawn(|| {
            let mut kills = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(1_000));
                let out = crate::redis_server::cli(port, &["CLIENT", "KILL", "TYPE", "normal"]).unwrap_or_default();
                kills += out.trim().parse::<u64>().unwrap_or(0);
            }
            kills
        });
        driver.run_until(wall() + Duration::from_millis(4_500), false);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        killer.join().unwrap_or(0)
    });
    // Liveness: the faults stopped; whatever failed is retried.
    driver.run(20, false);
    let differ = answers_unlike_records(&url, &driver.answers, &driver.sent)?;
    let mut report = RowReport::new("17", seed, RunKind::Liveness).fsync("none");
    report
        .fired("connections killed", kills)
        .fired("reconnects", driver.ledger.reconnects_total())
        .figure("commands lost and not retried / messages", driver.undecided(), driver.messages())
        .figure("answers unlike the recorded first decision / answers", differ, driver.answers.len() as u64);
    common_figures(&mut report, &driver);
    report.emit();
    Ok(())
}

/// Row 18: out of memory under `noeviction`: the gate fails closed while memory is short
/// and resumes by itself once it is raised.
#[test]
fn row_18_out_of_memory_fails_closed_and_recovers() -> Result<(), Error> {
    let seed = 18;
    let redis = PrivateRedis::start(&[])?;
    let mut driver = Driver::new(RedisLedger::connect(&redis.url(), PREFIX)?, seed, 30);
    driver.run(40, false);
    redis.cli(&["CONFIG", "SET", "maxmemory", "1"])?;
    driver.run(40, true);
    redis.cli(&["CONFIG", "SET", "maxmemory", "0"])?;
    let recovery = driver.until_answering(Duration::from_secs(5));
    driver.run(40, false);
    let mut report = RowReport::new("18", seed, RunKind::Liveness).fsync("none");
    report
        .fired("calls refused with OOM", driver.failures_with("out of memory"))
        .figure("sends during OOM / N", driver.sent_during_fault, 40)
        .figure("gate answers during OOM / N", driver.answered_during_fault, 40)
        .figure("messages undecided at the end / messages", driver.undecided(), driver.messages())
        .measure("time to recover ms", recovery.as_millis() as u64);
    common_figures(&mut report, &driver);
    report.emit();
    Ok(())
}

/// Row 19: `gavat run` on a Redis under `allkeys-lru` refuses to start, exit ≠ 0, with a
/// message naming `maxmemory-policy`.
#[test]
fn row_19_gavat_run_refuses_an_evicting_redis() -> Result<(), Error> {
    let redis = PrivateRedis::start(&["--maxmemory-policy", "allkeys-lru"])?;
    let dir = crate::common::temp_dir();
    let url = redis.url();
    let child = crate::live_run::spawn_run(
        dir.path(),
        &["--store", &url, "--redis-prefix", PREFIX, "--no-http", "--time-scale", "3600", "--for", "1h"],
    );
    let (ok, _, stderr) = crate::live_run::finish(child);
    let mut report = RowReport::new("19", 19, RunKind::Safety).fsync("none");
    report
        .fired("redis-server started with allkeys-lru", 1)
        .figure("gavat run exited 0 / runs", u64::from(ok), 1)
        .figure("message without maxmemory-policy / runs", u64::from(!stderr.contains("maxmemory-policy")), 1);
    report.emit();
    Ok(())
}

/// Row 20: `SCRIPT FLUSH` every fifth step: `NOSCRIPT` is handled by loading the scripts
/// again, and no error reaches the scheduler.
#[test]
fn row_20_script_flush_is_reloaded_without_an_error() -> Result<(), Error> {
    let seed = 20;
    let redis = PrivateRedis::start(&[])?;
    let mut driver = Driver::new(RedisLedger::connect(&redis.url(), PREFIX)?, seed, 30);
    let mut flushes = 0;
    for step in 0..150 {
        if step % 5 == 0 {
            redis.cli(&["SCRIPT", "FLUSH"])?;
            flushes += 1;
        }
        driver.step(false);
    }
    let mut report = RowReport::new("20", seed, RunKind::Safety).fsync("none");
    report.fired("SCRIPT FLUSH", flushes).figure(
        "errors surfaced to the scheduler / gate calls",
        driver.failures.len() as u64,
        driver.gate_calls,
    );
    common_figures(&mut report, &driver);
    report.emit();
    Ok(())
}

/// Row 21: an in-repo TCP proxy between the ledger and Redis adds 200 ms to every round
/// trip, then blackholes everything for 3 s (the row's 10 s scaled down), then resets
/// every connection: timeouts mean no send, and the gate recovers afterwards.
#[test]
fn row_21_latency_blackhole_and_resets_never_send_without_a_reservation() -> Result<(), Error> {
    let seed = 21;
    let redis = PrivateRedis::start(&[])?;
    let proxy = TcpProxy::start(redis.addr())?;
    let mut driver = Driver::new(RedisLedger::connect(&proxy.redis_url(), PREFIX)?, seed, 30);
    driver.run(30, false);
    proxy.set(Fault::Delay(Duration::from_millis(100)));
    let slow = wall();
    driver.run(3, false);
    let slow_steps = slow.elapsed();
    proxy.set(Fault::Blackhole);
    let blackhole = wall();
    // Steps that start within 1.5 s end (3 calls × ≤ 1.25 s … bounded by the call timeout)
    // while the blackhole lasts; the blackhole is lifted only after 3 s and after them.
    let failed_before = driver.failures.len();
    driver.run_until(blackhole + Duration::from_millis(1_500), true);
    let timed_out = (driver.failures.len() - failed_before) as u64;
    while blackhole.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(50));
    }
    proxy.set(Fault::Pass);
    let recovery = driver.until_answering(Duration::from_secs(10));
    let mut resets = 0;
    for _ in 0..5 {
        proxy.reset_all();
        resets += 1;
        driver.run(10, false);
    }
    driver.run(20, false);
    let differ = answers_unlike_records(&redis.url(), &driver.answers, &driver.sent)?;
    let mut report = RowReport::new("21", seed, RunKind::Liveness).fsync("none");
    report
        .fired("gate calls refused in the blackhole (timed out, or within the backoff)", timed_out)
        .fired("connection resets", resets)
        .figure("sends during the blackhole / gate calls in it", driver.sent_during_fault, timed_out)
        .figure("gate answers during the blackhole / calls", driver.answered_during_fault, timed_out)
        .figure("answers unlike the recorded first decision / answers", differ, driver.answers.len() as u64)
        .figure("messages undecided at the end / messages", driver.undecided(), driver.messages())
        .measure("three steps at +200 ms per round trip ms", slow_steps.as_millis() as u64)
        .measure("recovered after the blackhole ms", recovery.as_millis() as u64)
        .measure("connections through the proxy", proxy.accepted());
    common_figures(&mut report, &driver);
    report.emit();
    Ok(())
}

/// Row 36: the server closes idle connections (`CONFIG SET timeout 1`) and the engine idles
/// 3 s between bursts: the first call after each idle spell reconnects and succeeds.
#[test]
fn row_36_idle_connections_closed_by_redis_are_reopened() -> Result<(), Error> {
    let seed = 36;
    let redis = PrivateRedis::start(&[])?;
    redis.cli(&["CONFIG", "SET", "timeout", "1"])?;
    let mut driver = Driver::new(RedisLedger::connect(&redis.url(), PREFIX)?, seed, 30);
    let mut idles = 0;
    let mut failed_after_idle = 0;
    driver.run(20, false);
    for _ in 0..2 {
        std::thread::sleep(Duration::from_secs(3));
        idles += 1;
        let before = driver.failures.len();
        driver.step(false);
        failed_after_idle += (driver.failures.len() - before) as u64;
        driver.run(20, false);
    }
    let reconnects = driver.ledger.reconnects_total();
    let mut report = RowReport::new("36", seed, RunKind::Liveness).fsync("none");
    report
        .fired("idle spells past the server's timeout", idles)
        .fired("connections reopened after idle", reconnects)
        .figure("first calls after idle that failed / idle spells", failed_after_idle, idles)
        .figure("messages undecided at the end / messages", driver.undecided(), driver.messages())
        .measure("idle-reconnect failures recovered", format!("{reconnects} / {reconnects}"));
    common_figures(&mut report, &driver);
    report.emit();
    Ok(())
}

/// Row 37: `DEBUG SLEEP 2` blocks the server during a burst: no decision and no send while
/// it sleeps (fail closed), retried message ids get their first decision afterwards.
#[test]
fn row_37_a_blocked_server_fails_the_gate_closed() -> Result<(), Error> {
    let seed = 37;
    let redis = PrivateRedis::start(&[])?;
    let url = redis.url();
    let mut driver = Driver::new(RedisLedger::connect_with(&url, PREFIX, options(300))?, seed, 30);
    driver.run(30, false);
    let port = redis.port;
    let sleeper = std::thread::spawn(move || crate::redis_server::cli(port, &["DEBUG", "SLEEP", "2"]).is_ok());
    std::thread::sleep(Duration::from_millis(200));
    let asleep = wall();
    let before = driver.failures.len();
    // Steps that start within 0.3 s end (3 calls × ≤ 0.55 s) before the sleep ends.
    driver.run_until(asleep + Duration::from_millis(300), true);
    let failed = (driver.failures.len() - before) as u64;
    let slept = sleeper.join().unwrap_or(false);
    let recovery = driver.until_answering(Duration::from_secs(5));
    driver.run(30, false);
    let differ = answers_unlike_records(&url, &driver.answers, &driver.sent)?;
    let mut report = RowReport::new("37", seed, RunKind::Liveness).fsync("none");
    report
        .fired("DEBUG SLEEP 2", u64::from(slept))
        .fired("gate calls failed while the server slept", failed)
        .figure("sends while the server slept / gate calls meanwhile", driver.sent_during_fault, failed)
        .figure("gate answers while the server slept / calls", driver.answered_during_fault, failed)
        .figure("answers unlike the recorded first decision / answers", differ, driver.answers.len() as u64)
        .figure("messages undecided at the end / messages", driver.undecided(), driver.messages())
        .measure("recovered after the sleep ms", recovery.as_millis() as u64);
    common_figures(&mut report, &driver);
    report.emit();
    Ok(())
}

/// The newest incremental AOF file of a Redis 7 data directory.
fn newest_incr_aof(dir: &std::path::Path) -> Result<std::path::PathBuf, Error> {
    let mut files: Vec<(u64, std::path::PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(dir.join("appendonlydir"))? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        if let Some(seq) = name.strip_suffix(".incr.aof").and_then(|n| n.rsplit('.').next())
            && let Ok(seq) = seq.parse()
        {
            files.push((seq, path));
        }
    }
    files.sort();
    files.pop().map(|(_, p)| p).ok_or_else(|| "no incremental AOF file in appendonlydir".into())
}

/// Row 38: the AOF's tail torn by a crash (the last k bytes of the newest incremental file
/// cut while the server is down), loaded with `aof-load-truncated yes`: the torn command is
/// gone, every acknowledged ledger write is there, and the running ledger resumes.
#[test]
fn row_38_a_torn_aof_tail_loses_no_acknowledged_write() -> Result<(), Error> {
    let seed = 38;
    let mut redis =
        PrivateRedis::start(&["--appendonly", "yes", "--appendfsync", "always", "--aof-load-truncated", "yes"])?;
    let url = redis.url();
    let mut driver = Driver::new(RedisLedger::connect(&url, PREFIX)?, seed, 30);
    driver.run(100, false);
    let acked = driver.acked.clone();
    // The last write before the crash, torn by it: the write the crash interrupted.
    let torn_key = format!("{PREFIX}torn-write");
    redis.cli(&["SET", &torn_key, "never-acknowledged"])?;
    redis.kill();
    let aof = newest_incr_aof(redis.dir())?;
    let bytes = std::fs::read(&aof)?;
    let cut = 7;
    std::fs::write(&aof, &bytes[..bytes.len() - cut])?;
    redis.restart()?;
    let torn_gone = redis.cli(&["EXISTS", &torn_key])?.trim() == "0";
    let missing = lost_acked(&url, &acked)?;
    driver.run(60, false);
    let mut report = RowReport::new("38", seed, RunKind::Liveness).fsync("always");
    report
        .fired("AOF tail cut (bytes)", cut as u64)
        .fired("torn command dropped at load", u64::from(torn_gone))
        .fired("restarts the ledger went through", driver.ledger.durable_restarts_total())
        .figure("acknowledged records missing / W", missing.len() as u64, acked.len() as u64)
        .figure("messages undecided at the end / messages", driver.undecided(), driver.messages());
    common_figures(&mut report, &driver);
    report.emit();
    Ok(())
}

/// Row 51: the password changes mid-run (`CONFIG SET requirepass` and the connections
/// dropped): the gate fails closed with a clear error that never shows the URL's password,
/// and recovers once the password is the URL's again.
#[test]
fn row_51_a_password_change_fails_closed_with_the_url_redacted() -> Result<(), Error> {
    let seed = 51;
    let canary = "canary-pass-5151";
    let redis = PrivateRedis::start(&["--requirepass", canary])?;
    let url = format!("redis://:{canary}@127.0.0.1:{}", redis.port);
    let mut driver = Driver::new(RedisLedger::connect(&url, PREFIX)?, seed, 30);
    driver.run(30, false);
    let auth = |args: &[&str]| -> Result<String, Error> {
        let mut all = vec!["--no-auth-warning", "-a", canary];
        all.extend_from_slice(args);
        redis.cli(&all)
    };
    auth(&["CONFIG", "SET", "requirepass", "rotated-elsewhere"])?;
    let changed = wall();
    crate::redis_server::cli(
        redis.port,
        &["--no-auth-warning", "-a", "rotated-elsewhere", "CLIENT", "KILL", "TYPE", "normal"],
    )?;
    let failed_before = driver.failures.len();
    driver.run(20, true);
    let surfaced = driver.failures[failed_before..].iter().position(|f| f.contains("credentials"));
    let surfaced_after = changed.elapsed();
    let leaked = driver.failures.iter().filter(|f| f.contains(canary)).count() as u64
        + u64::from(driver.ledger.paused().is_some_and(|p| p.contains(canary)));
    crate::redis_server::cli(
        redis.port,
        &["--no-auth-warning", "-a", "rotated-elsewhere", "CONFIG", "SET", "requirepass", canary],
    )?;
    auth(&["CLIENT", "KILL", "TYPE", "normal"])?;
    let recovery = driver.until_answering(Duration::from_secs(5));
    driver.run(30, false);
    let mut report = RowReport::new("51", seed, RunKind::Liveness).fsync("none");
    report
        .fired("password changed under the engine", 1)
        .fired("calls refused for credentials", driver.failures_with("credentials"))
        .figure("sends while unauthenticated / N", driver.sent_during_fault, 20)
        .figure("errors showing the password / errors", leaked, driver.failures.len() as u64)
        .figure("messages undecided at the end / messages", driver.undecided(), driver.messages())
        .measure("error surfaced after ms", surfaced.map_or(-1, |_| surfaced_after.as_millis() as i64))
        .measure("recovered after the fix ms", recovery.as_millis() as u64);
    common_figures(&mut report, &driver);
    report.emit();
    Ok(())
}

/// Row 52: the gate on a local three-node Redis Cluster: every script's keys share the
/// user's slot, so no call fails with `CROSSSLOT`.
#[test]
fn row_52_the_gate_on_a_cluster_never_crosses_slots() -> Result<(), Error> {
    let seed = 52;
    let cluster = Cluster::start()?;
    let mut driver = Driver::new(RedisLedger::connect(&cluster.url(), PREFIX)?, seed, 500);
    driver.run(1_500, false);
    let mut report = RowReport::new("52", seed, RunKind::Safety).fsync("none");
    report
        .fired("gate calls on a 3-node cluster", driver.gate_calls)
        .figure("CROSSSLOT errors / gate calls", driver.failures_with("CROSSSLOT"), driver.gate_calls)
        .figure("failed gate calls / gate calls", driver.failures.len() as u64, driver.gate_calls);
    common_figures(&mut report, &driver);
    report.emit();
    Ok(())
}

/// Row 54: `SHUTDOWN SAVE` and a restart of a persistent Redis (`appendfsync always`) while
/// reservations are leased (some handed to the transport, some not): the running ledger
/// goes on, the leases survive, the sender's `confirm` after the restart counts them, none
/// can be sent a second time, and `recover` settles the rest.
#[test]
fn row_54_leases_survive_a_shutdown_and_restart() -> Result<(), Error> {
    let seed = 54;
    let mut redis = PrivateRedis::start(&["--appendonly", "yes", "--appendfsync", "always"])?;
    let url = redis.url();
    let mut driver = Driver::new(RedisLedger::connect(&url, PREFIX)?, seed, 200);
    driver.run(50, false);
    // Mid-burst: leases granted, half of them handed to the transport.
    let mut leased = Vec::new();
    for i in 0..40u64 {
        let message = 1_000_000 + i;
        let user = 1_000 + i;
        if now(driver.ledger.reserve(Reservation { message: MessageId(message), caps: caps(), ..request(0, user) }))?
            == Reserved::Granted
        {
            if i % 2 == 0 {
                now(driver.ledger.sending(MessageId(message)))?;
            }
            leased.push((message, user, i % 2 == 0));
        }
    }
    redis.shutdown_save()?;
    redis.restart()?;
    let mut survived = 0;
    for (message, user, _) in &leased {
        if now(driver.ledger.load(UserId(*user)))?.pending.iter().any(|(m, _)| m.0 == *message) {
            survived += 1;
        }
    }
    // The sends that went out are confirmed by their sender; the others may not go out.
    let mut confirm_refused = 0;
    for (message, _, sent) in &leased {
        if *sent && now(driver.ledger.confirm(MessageId(*message), Counted::Delivered)).is_err() {
            confirm_refused += 1;
        }
    }
    let recovered = now(driver.ledger.recover())?;
    let mut sent_twice = 0;
    for (message, _, _) in &leased {
        if now(driver.ledger.sending(MessageId(*message))).is_ok() {
            sent_twice += 1;
        }
    }
    driver.run(50, false);
    let leases = leased.len() as u64;
    let sent_leases = leased.iter().filter(|(_, _, sent)| *sent).count() as u64;
    let mut report = RowReport::new("54", seed, RunKind::Liveness).fsync("always");
    report
        .fired("SHUTDOWN SAVE and restart with leases held", leases)
        .fired("restarts the running ledger went through", driver.ledger.durable_restarts_total())
        .figure("leases lost / leases", leases - survived, leases)
        .figure("confirms refused after the restart / sent leases", confirm_refused, sent_leases)
        .figure("leases that could be sent again / leases", sent_twice, leases)
        .measure("leases released by recover", recovered.released);
    common_figures(&mut report, &driver);
    report.emit();
    Ok(())
}

/// `gavat events tail` on a private server's log, as a child whose output the test reads
/// when it ends.
fn tail_child(url: &str, args: &[&str]) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_gavat"))
        .args(["events", "tail", "--store", url, "--redis-prefix", PREFIX])
        .args(args)
        .env("GAVAT_LOG", "error")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("gavat starts")
}

/// The `at_unix` of every JSON line of `out`.
fn printed_times(out: &[u8]) -> Vec<i64> {
    String::from_utf8_lossy(out)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["at_unix"].as_i64())
        .collect()
}

/// Row 22: a `gavat events tail` reader `kill -9`ed while it holds taken, unacknowledged
/// records (its output blocked mid-batch); another reader of the group claims them
/// (`XAUTOCLAIM`, `--claim-idle 0`) and applies every record once; nothing is left in the
/// group's pending list.
#[test]
fn row_22_a_killed_readers_records_are_claimed_and_applied_once() -> Result<(), Error> {
    use gavat::store::{LogKind, RedisStore, Store as _};
    let redis = PrivateRedis::start(&[])?;
    let url = redis.url();
    let store = RedisStore::connect(&url, PREFIX)?;
    let produced = 2_000i64;
    for i in 0..produced {
        crate::redis_store::ready(store.append(&crate::redis_store::entry(LogKind::Send, 10_000 + i, i as u64 % 7)))?;
    }
    // Nobody reads the killed reader's standard output: its first batch blocks on the full
    // pipe before it is acknowledged.
    let mut dead = tail_child(&url, &["--group", "g", "--consumer", "dead", "--from-start"]);
    let mut held = 0;
    for _ in 0..100 {
        std::thread::sleep(Duration::from_millis(100));
        held = store.pending_count("g").unwrap_or(0);
        if held > 0 {
            break;
        }
    }
    // kill -9 (`Child::kill` sends SIGKILL); then reaped.
    let killed = dead.kill();
    let dead_out = dead.wait_with_output()?;
    killed?;
    let live = tail_child(&url, &["--group", "g", "--consumer", "live", "--claim-idle", "0", "--once"]);
    let out = live.wait_with_output()?;
    let times = printed_times(&out.stdout);
    let distinct: BTreeSet<i64> = times.iter().copied().collect();
    let orphaned = store.pending_count("g")?;
    let mut report = RowReport::new("22", 22, RunKind::Liveness).fsync("none");
    report
        .fired("reader kill -9 holding pending records", u64::from(held > 0))
        .fired("records held by the killed reader", held)
        .figure(
            "records not applied / produced",
            (produced as u64).saturating_sub(distinct.len() as u64),
            produced as u64,
        )
        .figure("records applied twice by the live reader / R", (times.len() - distinct.len()) as u64, produced as u64)
        .figure("orphaned pending entries / R", orphaned, produced as u64)
        .figure("live reader failed / runs", u64::from(!out.status.success()), 1)
        .measure(
            "lines the killed reader printed before it died (at least once)",
            printed_times(&dead_out.stdout).len() as u64,
        );
    report.emit();
    Ok(())
}

/// Row 53: a record nobody can read in the log: readers keep applying every other record,
/// and the bad one is parked (acknowledged, copied to the parked stream) once Redis has
/// delivered it `PARK_AFTER_DELIVERIES` times.
#[test]
fn row_53_a_poison_record_is_parked_after_k_deliveries() -> Result<(), Error> {
    use gavat::store::{LogKind, PARK_AFTER_DELIVERIES, RedisStore, Store as _};
    let redis = PrivateRedis::start(&[])?;
    let url = redis.url();
    let store = RedisStore::connect(&url, PREFIX)?;
    let good = 20i64;
    for i in 0..good {
        crate::redis_store::ready(store.append(&crate::redis_store::entry(LogKind::Send, 10_000 + i, i as u64 % 3)))?;
        if i == good / 2 {
            redis.cli(&["XADD", &format!("{PREFIX}log"), "*", "kind", "no-such-kind", "at", "1"])?;
        }
    }
    let mut applied = BTreeSet::new();
    let mut stuck = 0;
    let mut parked_after = None;
    for run in 1..=PARK_AFTER_DELIVERIES + 1 {
        let out = tail_child(&url, &["--group", "g", "--from-start", "--once"]).wait_with_output()?;
        stuck += u64::from(!out.status.success());
        applied.extend(printed_times(&out.stdout));
        if parked_after.is_none() && store.parked()? > 0 {
            parked_after = Some(run);
        }
    }
    let parked = store.parked()?;
    let mut report = RowReport::new("53", 53, RunKind::Liveness).fsync("none");
    report
        .fired("poison records injected", 1)
        .fired("poison records parked", parked)
        .figure("stuck readers / runs", stuck, PARK_AFTER_DELIVERIES + 1)
        .figure("good records not applied / produced", (good as u64).saturating_sub(applied.len() as u64), good as u64)
        .figure("poison records not parked / injected", 1u64.saturating_sub(parked), 1)
        .figure("entries left pending / R", store.pending_count("g")?, good as u64 + 1)
        .measure("parked after reader runs", parked_after.unwrap_or(0))
        .measure("deliveries before parking", PARK_AFTER_DELIVERIES);
    report.emit();
    Ok(())
}

/// Runs `scripts/check_caps.py` on the store's exported log: `(violations, sends checked)`.
fn export_and_count_violations(dir: &std::path::Path, store_args: &[&str]) -> Result<(u64, u64), Error> {
    let events = dir.join("events.jsonl");
    let mut args = vec!["events", "export", "--out", crate::common::s(&events)];
    args.extend_from_slice(store_args);
    let out = crate::common::gavat(&args);
    if !out.status.success() {
        return Err(format!("events export: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    let check = std::process::Command::new("python3")
        .args([concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/check_caps.py"), crate::common::s(&events)])
        .output()?;
    let report = String::from_utf8_lossy(&check.stdout);
    // "N sends checked, V violations, …"
    let number_before = |word: &str| -> Option<u64> {
        let at = report.find(word)?;
        report[..at].split_whitespace().last()?.parse().ok()
    };
    match (number_before(" violations"), number_before(" sends checked")) {
        (Some(violations), Some(sends)) => Ok((violations, sends)),
        _ => Err(format!("check_caps.py said: {report}{}", String::from_utf8_lossy(&check.stderr)).into()),
    }
}

/// Row 23: two, then four `gavat run` engines on one Redis with overlapping shares
/// (`0/1` twice; then `0/2`, `1/2`, `0/1`, `0/1`): the shared cap gate keeps every cap and
/// cooldown in the store's log, and no message id goes out twice.
#[test]
fn row_23_engines_with_overlapping_shares_keep_every_cap() -> Result<(), Error> {
    let redis = PrivateRedis::start(&[])?;
    let url = redis.url();
    let dir = crate::common::temp_dir();
    let store_args = ["--store", url.as_str(), "--redis-prefix", PREFIX];
    let (mut child, addr, rest) = crate::live_run::spawn_run_with_api(
        dir.path(),
        &["--store", &url, "--redis-prefix", PREFIX, "--time-scale", "60", "--quiet"],
    );
    crate::live_redis::put_users(addr, 120);
    std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status()?;
    let _ = child.wait();
    drop(rest);

    let mut ids = BTreeSet::new();
    let (mut sends, mut engines, mut failed) = (0u64, 0u64, 0u64);
    for (phase, shares) in [("two", vec!["0/1", "0/1"]), ("four", vec!["0/2", "1/2", "0/1", "0/1"])] {
        let children: Vec<(std::path::PathBuf, std::process::Child)> = shares
            .iter()
            .enumerate()
            .map(|(i, share)| {
                let engine_dir = dir.path().join(format!("{phase}-{i}"));
                std::fs::create_dir_all(&engine_dir).expect("an engine's directory");
                let mut args: Vec<&str> = store_args.to_vec();
                args.extend(["--time-scale", "7200", "--for", "1d", "--quiet", "--no-http", "--no-learn"]);
                args.extend(["--shard", share]);
                let child = crate::live_run::spawn_run(&engine_dir, &args);
                (engine_dir, child)
            })
            .collect();
        for (engine_dir, child) in children {
            let (ok, _, _) = crate::live_run::finish(child);
            engines += 1;
            failed += u64::from(!ok);
            for message in crate::live_run::outbox(&engine_dir.join("outbox.jsonl")) {
                sends += 1;
                ids.insert(message["id"].as_str().unwrap_or_default().to_string());
            }
        }
    }
    let (violations, checked) = export_and_count_violations(dir.path(), &store_args)?;
    let mut report = RowReport::new("23", 23, RunKind::Safety).fsync("none");
    report
        .fired("engines sharing users with another engine", engines)
        .fired("sends by engines on shared users", sends)
        .figure("cap and cooldown violations / sends checked", violations, checked)
        .figure("message ids sent twice / sends", sends - ids.len() as u64, sends)
        .figure("engines that failed / engines", failed, engines);
    report.emit();
    Ok(())
}

/// The Redis server's clock (`TIME`), seconds: the true time of the clock rows.
fn redis_time(conn: &mut redis::Connection) -> Result<i64, Error> {
    let (secs, _micros): (String, String) = redis::cmd("TIME").query(conn)?;
    Ok(secs.parse()?)
}

/// The caps of the clock rows: a 2 s cooldown, so real seconds tell a wrong decision.
fn clock_caps() -> Caps {
    Caps { daily_limit: 10_000, cooldown_secs: 2, allowed_hours: HourMask::ALL_DAY, period_days: 1 }
}

/// A ledger whose engine clock may differ from Redis's by at most 10 s.
fn bounded_ledger(url: &str) -> Result<RedisLedger, Error> {
    let options = RedisOptions { max_clock_skew: Some(Duration::from_secs(10)), ..RedisOptions::default() };
    Ok(RedisLedger::connect_with(url, PREFIX, options)?)
}

/// One message through a ledger at engine time `redis_now + offset`; a grant is sent at
/// `redis_now` (the true time) and confirmed. Whether the gate decided.
fn clock_step(
    ledger: &RedisLedger,
    message: u64,
    user: u64,
    redis_now: i64,
    offset: i64,
    sent: &mut Vec<Sent>,
) -> Result<bool, Error> {
    let reservation = Reservation {
        message: MessageId(message),
        at: Timestamp(redis_now + offset),
        caps: clock_caps(),
        ..request(0, user)
    };
    match now(ledger.reserve(reservation)) {
        Ok(Reserved::Granted) => {
            now(ledger.sending(MessageId(message)))?;
            sent.push(Sent { message, user, at: redis_now });
            now(ledger.confirm(MessageId(message), Counted::Delivered))?;
            Ok(true)
        }
        Ok(Reserved::Denied(_)) => Ok(true),
        Err(_) => Ok(false),
    }
}

/// Row 24: two engines on one Redis, one with its clock 90 s ahead (the test's clock
/// offset): the skewed engine's reservations are refused as clock skew and counted, the
/// other decides as usual, and in true (Redis) time no cooldown is ever broken. Checked at
/// the ledger level: `gavat run` does not yet pass a skew bound (see docs/architecture.md).
#[test]
fn row_24_an_engine_skewed_beyond_the_bound_takes_no_decision() -> Result<(), Error> {
    let seed = 24;
    let redis = PrivateRedis::start(&[])?;
    let url = redis.url();
    let (a, b) = (bounded_ledger(&url)?, bounded_ledger(&url)?);
    let mut conn = connection(&url)?;
    let mut rng = Pcg64Mcg::seed_from_u64(seed);
    let (mut sent, mut message, mut skewed_decisions, mut attempts) = (Vec::new(), 0u64, 0u64, 0u64);
    let end = wall() + Duration::from_millis(2_500);
    while wall() < end {
        for (ledger, offset) in [(&a, 0), (&b, 90)] {
            message += 1;
            let user = rng.random_range(0..5);
            let redis_now = redis_time(&mut conn)?;
            let decided = clock_step(ledger, message, user, redis_now, offset, &mut sent)?;
            if offset != 0 {
                attempts += 1;
                skewed_decisions += u64::from(decided);
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let (bad, user_days) = violations_of(&sent, clock_caps());
    let mut report = RowReport::new("24", seed, RunKind::Safety).fsync("none");
    report
        .fired("reservations by the engine 90 s ahead", attempts)
        .fired("clock-skew rejections counted", b.skew_rejections_total())
        .figure("decisions by the skewed engine / its reservations", skewed_decisions, attempts)
        .figure("cooldown violations in Redis time / user-days", bad, user_days)
        .measure("sends by the engine in time", sent.len() as u64)
        .measure("skew rejections of the engine in time", a.skew_rejections_total());
    report.emit();
    Ok(())
}

/// Row 41: the engine's clock jumps ±262 s (Jepsen's `bump`), forward and back, at least ten
/// times, between runs of normal time: while it is off no decision is taken (clock-skew
/// rejections), so a backward jump never shortens a cooldown and a forward jump never
/// opens a new day early; in true (Redis) time no cooldown is broken. A scripted engine
/// clock at the ledger level, not a live `gavat run` (see docs/architecture.md).
#[test]
fn row_41_clock_jumps_never_shorten_a_cooldown() -> Result<(), Error> {
    let seed = 41;
    let redis = PrivateRedis::start(&[])?;
    let url = redis.url();
    let ledger = bounded_ledger(&url)?;
    let mut conn = connection(&url)?;
    let mut rng = Pcg64Mcg::seed_from_u64(seed);
    let (mut sent, mut message, mut jumps, mut off_decisions, mut off_attempts) = (Vec::new(), 0u64, 0u64, 0u64, 0u64);
    for phase in 0..24 {
        // 0, +262, 0, −262, …: every odd phase is a jump away, every even one a jump back.
        let offset = match phase % 4 {
            1 => 262,
            3 => -262,
            _ => 0,
        };
        if phase > 0 {
            jumps += 1;
        }
        let end = wall() + Duration::from_millis(120);
        while wall() < end {
            message += 1;
            let user = rng.random_range(0..5);
            let redis_now = redis_time(&mut conn)?;
            let decided = clock_step(&ledger, message, user, redis_now, offset, &mut sent)?;
            if offset != 0 {
                off_attempts += 1;
                off_decisions += u64::from(decided);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let (bad, user_days) = violations_of(&sent, clock_caps());
    let mut report = RowReport::new("41", seed, RunKind::Safety).fsync("none");
    report
        .fired("clock jumps of ±262 s", jumps)
        .fired("clock-skew rejections counted", ledger.skew_rejections_total())
        .figure("decisions while the clock was off / reservations then", off_decisions, off_attempts)
        .figure("cooldown violations in Redis time / user-days", bad, user_days)
        .measure("sends", sent.len() as u64);
    report.emit();
    Ok(())
}
