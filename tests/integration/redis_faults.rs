//! The Redis cap ledger fails closed (RELIABILITY.md rules 3 and 6): every test runs on a
//! private `redis-server` of its own, never on the shared one.

use std::process::{Command, Stdio};
use std::time::Duration;

use gavat::ledger::{CapLedger, LedgerError, MessageId, RedisLedger, Reserved};
use gavat::redis_link::RedisOptions;

use crate::redis_ledger::{now, request};
use crate::redis_server::{Error, PrivateRedis};

fn unavailable<T: std::fmt::Debug>(answer: Result<T, LedgerError>) -> String {
    match answer {
        Err(LedgerError::Unavailable { reason }) => reason,
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

/// Row 15: Redis restarted without persistence under a running ledger. The next call fails
/// with a reason naming the restart, and the ledger stays paused: it never decides on the
/// emptied data, however long one waits.
#[test]
fn a_restart_pauses_the_ledger_for_good() -> Result<(), Error> {
    let mut redis = PrivateRedis::start(&[])?;
    let ledger = RedisLedger::connect(&redis.url(), "t:")?;
    assert_eq!(now(ledger.reserve(request(1, 1)))?, Reserved::Granted);
    redis.restart()?;
    let reason = unavailable(now(ledger.reserve(request(2, 2))));
    assert!(reason.contains("restarted"), "{reason}");
    std::thread::sleep(Duration::from_millis(300));
    for _ in 0..3 {
        let reason = unavailable(now(ledger.reserve(request(3, 3))));
        assert!(reason.contains("restarted"), "{reason}");
    }
    assert!(ledger.paused().is_some_and(|p| p.contains("restarted")), "{:?}", ledger.paused());
    assert_eq!(ledger.pauses_total(), 1);
    Ok(())
}

/// Row 15 (FLUSHALL): the epoch key is gone, so no reservation is granted on the empty
/// state, and the pause does not end by itself.
#[test]
fn flushall_pauses_the_ledger_for_good() -> Result<(), Error> {
    let redis = PrivateRedis::start(&[])?;
    let ledger = RedisLedger::connect(&redis.url(), "t:")?;
    assert_eq!(now(ledger.reserve(request(1, 1)))?, Reserved::Granted);
    redis.cli(&["FLUSHALL"])?;
    let reason = unavailable(now(ledger.reserve(request(2, 1))));
    assert!(reason.contains("epoch"), "{reason}");
    std::thread::sleep(Duration::from_millis(300));
    unavailable(now(ledger.reserve(request(2, 1))));
    unavailable(now(ledger.load(gavat::domain::UserId(1))));
    unavailable(now(ledger.opt_out(gavat::domain::UserId(1))));
    assert!(ledger.paused().is_some_and(|p| p.contains("FLUSHALL")), "{:?}", ledger.paused());
    let keys = redis.cli(&["KEYS", "*"])?;
    assert!(!keys.contains(":m:2"), "no reservation was written on the empty state: {keys}");
    Ok(())
}

/// Row 19: a server that may evict keys is refused at connect, with a message naming the
/// setting and the fix.
#[test]
fn an_evicting_server_is_refused_at_connect() -> Result<(), Error> {
    let redis = PrivateRedis::start(&["--maxmemory-policy", "allkeys-lru"])?;
    let err = RedisLedger::connect(&redis.url(), "t:").expect_err("allkeys-lru must be refused");
    let text = err.to_string();
    assert!(text.contains("maxmemory-policy is allkeys-lru") && text.contains("noeviction"), "{text}");
    Ok(())
}

/// Row 17: our connection killed (`CLIENT KILL`) is a blip: the next call reconnects,
/// checks that it is the same server with the same data, and succeeds.
#[test]
fn a_killed_connection_is_a_blip() -> Result<(), Error> {
    let redis = PrivateRedis::start(&[])?;
    let ledger = RedisLedger::connect(&redis.url(), "t:")?;
    assert_eq!(now(ledger.reserve(request(1, 1)))?, Reserved::Granted);
    for round in 0..3u64 {
        let killed = redis.cli(&["CLIENT", "KILL", "TYPE", "normal"])?;
        assert!(killed.trim() != "0", "nothing was killed");
        assert_eq!(now(ledger.reserve(request(10 + round, 2 + round)))?, Reserved::Granted);
    }
    assert_eq!(ledger.paused(), None);
    assert!(ledger.reconnects_total() >= 3, "{}", ledger.reconnects_total());
    Ok(())
}

/// Row 18: out of memory under noeviction fails the gate closed; it resumes by itself once
/// memory is raised.
#[test]
fn out_of_memory_pauses_until_memory_is_raised() -> Result<(), Error> {
    let redis = PrivateRedis::start(&[])?;
    let ledger = RedisLedger::connect(&redis.url(), "t:")?;
    redis.cli(&["CONFIG", "SET", "maxmemory", "1"])?;
    let reason = unavailable(now(ledger.reserve(request(1, 1))));
    assert!(reason.contains("out of memory"), "{reason}");
    assert!(ledger.paused().is_some());
    redis.cli(&["CONFIG", "SET", "maxmemory", "0"])?;
    assert_eq!(now(ledger.reserve(request(1, 1)))?, Reserved::Granted);
    assert_eq!(ledger.paused(), None);
    assert_eq!(ledger.pauses_total(), 1);
    Ok(())
}

/// Row 37: a long script makes Redis answer `BUSY`: no decision, the gate fails closed, and
/// resumes once the script is killed.
#[test]
fn busy_pauses_until_the_script_ends() -> Result<(), Error> {
    let redis = PrivateRedis::start(&["--busy-reply-threshold", "100"])?;
    let ledger = RedisLedger::connect(&redis.url(), "t:")?;
    let mut spinner = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &redis.port.to_string()])
        .args(["EVAL", "local i = 0 while true do i = i + 1 end", "0"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    std::thread::sleep(Duration::from_millis(400));
    let reason = unavailable(now(ledger.reserve(request(1, 1))));
    assert!(reason.contains("BUSY"), "{reason}");
    redis.cli(&["SCRIPT", "KILL"])?;
    let _ = spinner.wait();
    assert_eq!(now(ledger.reserve(request(1, 1)))?, Reserved::Granted);
    assert_eq!(ledger.paused(), None);
    Ok(())
}

/// Row 20: `SCRIPT FLUSH` on the same server is not a restart: the scripts are loaded again
/// and the call succeeds.
#[test]
fn script_flush_reloads_the_scripts() -> Result<(), Error> {
    let redis = PrivateRedis::start(&[])?;
    let ledger = RedisLedger::connect(&redis.url(), "t:")?;
    redis.cli(&["SCRIPT", "FLUSH"])?;
    assert_eq!(now(ledger.reserve(request(1, 1)))?, Reserved::Granted);
    redis.cli(&["SCRIPT", "FLUSH"])?;
    now(ledger.confirm(MessageId(1), gavat::ledger::Counted::Delivered))?;
    assert_eq!(ledger.paused(), None);
    Ok(())
}

/// Rows 21, 33: with the server gone, calls fail within the call timeout (fail closed, no
/// hang), and no reason or error ever shows the URL's password.
#[test]
fn an_unreachable_server_fails_fast_and_never_shows_the_password() -> Result<(), Error> {
    let canary = "canary-s3cret-4242";
    let mut redis = PrivateRedis::start(&["--requirepass", canary])?;
    let url = format!("redis://:{canary}@127.0.0.1:{}", redis.port);
    let wrong = format!("redis://:wrong-{canary}@127.0.0.1:{}", redis.port);
    let refused = RedisLedger::connect(&wrong, "t:").expect_err("a wrong password is refused");
    assert!(!refused.to_string().contains(canary), "{refused}");
    let options = RedisOptions { call_timeout: Duration::from_millis(300), ..RedisOptions::default() };
    let ledger = RedisLedger::connect_with(&url, "t:", options)?;
    assert_eq!(now(ledger.reserve(request(1, 1)))?, Reserved::Granted);
    redis.kill();
    for id in 2..6 {
        let reason = unavailable(now(ledger.reserve(request(id, 1))));
        assert!(!reason.contains(canary), "{reason}");
    }
    let paused = ledger.paused().unwrap_or_default();
    assert!(!paused.is_empty() && !paused.contains(canary), "{paused}");
    assert!(!format!("{ledger:?}").contains(canary), "Debug shows no password");
    Ok(())
}
