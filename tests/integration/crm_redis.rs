//! The management commands on a Redis store answer exactly as on SQLite: a small seeded
//! simulation saved to SQLite is copied into Redis through the library (users, log, run
//! record with a learner's audit trail, written to both), and every command's output on
//! Redis is compared byte for byte with its output on SQLite; `strategy rollback` writes
//! the same record on both. Runs on the shared server under a key prefix of its own.

use std::path::Path;
use std::process::Output;

use gavat::domain::{DeliveryStrategy, Segment, Timestamp};
use gavat::learner::{Action, StrategyChange, describe_field};
use gavat::policy::SuppressReason;
use gavat::store::{
    CrmReader, EventLog, RedisStore, RunRecord, SqliteStore, Store, StoreError, StoreFuture, UserRecord,
};

use crate::common::{gavat, s, temp_dir};
use crate::redis_server::{Cluster, Error, Prefix, shared};

fn ready<T>(f: StoreFuture<T>) -> Result<T, StoreError> {
    futures::FutureExt::now_or_never(f).expect("a store future is ready at once")
}

/// The learner's audit trail added to the copied run: an applied change of HOT_LEAD's
/// daily limit, a kept verdict on it and a rejected proposal for WARM_LEAD; returns the
/// strategies in force after it.
fn audit_trail(configured: &[DeliveryStrategy], at: Timestamp) -> (Vec<StrategyChange>, Vec<DeliveryStrategy>) {
    let find = |seg: Segment| configured.iter().find(|s| s.segment == seg).cloned().expect("every segment");
    let hot = find(Segment::HotLead);
    let mut learned = hot.clone();
    learned.daily_limit = if hot.daily_limit > 1 { hot.daily_limit - 1 } else { hot.daily_limit + 1 };
    let warm = find(Segment::WarmLead);
    let mut proposed = warm.clone();
    proposed.cooldown_secs += 3_600;
    let change =
        |id, at: Timestamp, action, before: &DeliveryStrategy, after: &DeliveryStrategy, field| StrategyChange {
            id,
            at,
            segment: before.segment,
            source: "statistics",
            action,
            field,
            before: describe_field(before, field),
            after: describe_field(after, field),
            evidence: format!("test evidence #{id}"),
            proof: None,
            strategy_before: before.clone(),
            strategy_after: after.clone(),
            arm: 0,
        };
    let changes = vec![
        change(1, at.plus(-7_200), Action::Applied, &hot, &learned, "daily_limit"),
        change(2, at.plus(-3_600), Action::Kept, &learned, &learned, "daily_limit"),
        change(3, at.plus(-1_800), Action::Rejected, &warm, &proposed, "cooldown_hours"),
    ];
    let strategies = configured.iter().map(|s| if s.segment == Segment::HotLead { learned.clone() } else { s.clone() });
    (changes, strategies.collect())
}

/// Copies the simulated SQLite store into a Redis store and gives both the same audit
/// trail. Returns the user with the most log entries.
fn copy_into_redis(db: &Path, redis: &RedisStore) -> Result<u64, Error> {
    let sqlite = SqliteStore::open_existing(db)?;
    let mut users = Vec::new();
    sqlite.for_each_user(|u| users.push(u))?;
    for u in &users {
        ready(redis.save_user(&UserRecord {
            profile: u.profile.clone(),
            caps: u.caps,
            segments: u.segments.clone(),
            governing: u.governing,
            caps_in_force: u.caps_in_force,
            next_send: u.next_send,
        }))?;
    }
    let mut entries_of = std::collections::BTreeMap::<u64, u64>::new();
    for e in sqlite.events_between(Timestamp(0), Timestamp(i64::MAX / 1_000)) {
        let e = e?;
        *entries_of.entry(e.user.0).or_default() += 1;
        ready(redis.append(&e))?;
    }
    let ended_at = CrmReader::ended_at(&sqlite)?.ok_or("the simulation saved no end time")?;
    let suppressed = CrmReader::suppressions(&sqlite)?
        .into_iter()
        .map(|(seg, reason, n)| {
            let seg: Segment = seg.parse()?;
            let reason = SuppressReason::ALL.into_iter().find(|r| r.as_str() == reason).ok_or("unknown reason")?;
            Ok((seg, reason, n))
        })
        .collect::<Result<Vec<_>, Error>>()?;
    let configured: Vec<DeliveryStrategy> =
        CrmReader::strategies_in_force(&sqlite)?.into_iter().map(|s| s.strategy).collect();
    let (strategy_changes, strategies) = audit_trail(&configured, ended_at);
    let run = RunRecord {
        ended_at,
        strategy: CrmReader::strategy_name(&sqlite)?.ok_or("the simulation saved no strategy name")?,
        seed: Some(3),
        suppressed,
        strategies,
        strategy_changes,
        simulation: None,
    };
    ready(sqlite.save_run(&run))?;
    ready(sqlite.flush())?;
    ready(redis.save_run(&run))?;
    // A repeat of the same call (as after a lost reply) appends nothing twice.
    ready(redis.save_run(&run))?;
    let (&busiest, _) = entries_of.iter().max_by_key(|(_, n)| **n).ok_or("an empty log")?;
    Ok(busiest)
}

fn run(args: &[&str], store: &[&str]) -> Output {
    let mut full = args.to_vec();
    full.extend_from_slice(store);
    gavat(&full)
}

/// Runs `args` on both stores and requires the same exit code and the same bytes out.
fn same(args: &[&str], sqlite: &[&str], redis: &[&str]) -> Result<Output, Error> {
    let (a, b) = (run(args, sqlite), run(args, redis));
    let err = |o: &Output| String::from_utf8_lossy(&o.stderr).into_owned();
    if a.status.code() != b.status.code() || a.stdout != b.stdout {
        return Err(format!(
            "{args:?} differs:\n--- SQLite ({:?}) ---\n{}{}\n--- Redis ({:?}) ---\n{}{}",
            a.status.code(),
            String::from_utf8_lossy(&a.stdout),
            err(&a),
            b.status.code(),
            String::from_utf8_lossy(&b.stdout),
            err(&b)
        )
        .into());
    }
    Ok(b)
}

/// The activity over time (the dashboard's read, not a command's) is the same on both
/// stores, per hour, per day and since a time, and adds up to the log.
fn same_activity(db: &Path, redis: &RedisStore) -> Result<(), Error> {
    let sqlite = SqliteStore::open_existing(db)?;
    let ended_at = CrmReader::ended_at(&sqlite)?.ok_or("the simulation saved no end time")?;
    let sends = sqlite
        .events_between(Timestamp(0), Timestamp(i64::MAX / 1_000))
        .filter(|e| e.as_ref().is_ok_and(|e| e.kind == gavat::store::LogKind::Send))
        .count() as u64;
    for (bucket, since) in [(3_600, None), (86_400, None), (900, Some(ended_at.plus(-6 * 3_600)))] {
        let on_sqlite = CrmReader::activity(&sqlite, bucket, since)?;
        let on_redis = CrmReader::activity(redis, bucket, since)?;
        assert!(!on_sqlite.is_empty(), "a simulation's log has activity");
        assert_eq!(on_sqlite, on_redis, "bucket {bucket} s since {since:?}");
        if since.is_none() {
            assert_eq!(on_sqlite.iter().map(|b| b.sent).sum::<u64>(), sends, "every send in one bucket");
        }
    }
    Ok(())
}

/// Every management command prints the same on Redis as on SQLite for the same data, JSON
/// and tables; a rollback on each writes the same change and leaves the same strategies.
#[test]
fn every_command_answers_on_redis_as_on_sqlite() -> Result<(), Error> {
    let (url, _guard) = shared()?;
    every_command_on(&url)
}

/// The same on a three-node Redis Cluster: the profile reads are pipelined per node, and
/// the strategy scripts' keys share one hash tag.
#[test]
fn every_command_answers_on_a_cluster_too() -> Result<(), Error> {
    let cluster = Cluster::start()?;
    every_command_on(&cluster.url())
}

fn every_command_on(url: &str) -> Result<(), Error> {
    let dir = temp_dir();
    let db = dir.path().join("s.db");
    let out = gavat(&["simulate", "--users", "100", "--days", "2", "--seed", "3", "--save-state", s(&db)]);
    assert!(out.status.success(), "simulate: {}", String::from_utf8_lossy(&out.stderr));
    let url = url.to_string();
    let prefix = Prefix::new(&url, "crm-redis");
    let redis = RedisStore::connect(&url, &prefix.text)?;
    let busiest = copy_into_redis(&db, &redis)?.to_string();
    same_activity(&db, &redis)?;
    let sqlite_args = ["--store", s(&db)];
    let redis_args = ["--store", url.as_str(), "--redis-prefix", prefix.text.as_str()];
    let (sq, rd) = (&sqlite_args[..], &redis_args[..]);

    // `sqlite:PATH` is the bare path.
    let spelled = format!("sqlite:{}", s(&db));
    same(&["delivery", "status", "--json"], &["--store", spelled.as_str()], sq)?;

    let mut checked = Vec::new();
    for user in [busiest.as_str(), "0", "57", "99"] {
        checked.push(same(&["users", "analyze", user, "--json"], sq, rd)?);
        same(&["users", "analyze", user], sq, rd)?;
    }
    assert!(String::from_utf8_lossy(&checked[0].stdout).contains("\"recent\""));
    for args in [
        &["segments", "report", "--json"][..],
        &["segments", "report"],
        &["segments", "report", "--since", "24h", "--json"],
        &["segments", "report", "--since", "6h"],
        &["delivery", "status", "--json"],
        &["delivery", "status"],
        &["strategy", "show", "--json"],
        &["strategy", "show", "--toml"],
        &["strategy", "show"],
        &["strategy", "history", "--json"],
        &["strategy", "history"],
        &["strategy", "history", "--segment", "HOT_LEAD", "--action", "applied"],
    ] {
        let out = same(args, sq, rd)?;
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let mut members = 0;
    for segment in Segment::ALL {
        let list = same(&["segments", "list", segment.as_str(), "--limit", "1000", "--json"], sq, rd)?;
        members += serde_json::from_slice::<serde_json::Value>(&list.stdout)?.as_array().map_or(0, Vec::len);
        same(&["segments", "list", segment.as_str(), "--limit", "3", "--min-confidence", "0.5"], sq, rd)?;
    }
    // The outputs compared are not empty ones.
    assert!(members >= 100, "every user holds a segment: {members}");
    let json =
        |args: &[&str]| -> Result<serde_json::Value, Error> { Ok(serde_json::from_slice(&run(args, rd).stdout)?) };
    let report = json(&["segments", "report", "--json"])?;
    assert_eq!(report["total"]["users"].as_u64(), Some(100));
    assert!(report["total"]["sent"].as_u64().unwrap_or(0) > 0);
    let status = json(&["delivery", "status", "--json"])?;
    assert!(status["queue_depth"].as_u64().unwrap_or(0) > 0);
    let analysis = json(&["users", "analyze", &busiest, "--json"])?;
    assert!(analysis["recent"].as_array().is_some_and(|r| !r.is_empty()));
    assert_eq!(json(&["strategy", "history", "--json"])?.as_array().map(Vec::len), Some(3));

    // The rollback: the same record on both, then the same strategies and history.
    let rolled = same(&["strategy", "rollback", "1", "--json"], sq, rd)?;
    assert_eq!(rolled.status.code(), Some(0), "{}", String::from_utf8_lossy(&rolled.stderr));
    let change: serde_json::Value = serde_json::from_slice(&rolled.stdout)?;
    assert_eq!((change["id"].as_i64(), change["action"].as_str()), (Some(4), Some("rolled_back")));
    for args in [&["strategy", "show", "--json"][..], &["strategy", "history", "--json"], &["strategy", "show"]] {
        same(args, sq, rd)?;
    }
    let shown: serde_json::Value = serde_json::from_slice(&run(&["strategy", "show", "--json"], rd).stdout)?;
    let hot = shown.as_array().ok_or("a list")?.iter().find(|s| s["segment"] == "HOT_LEAD").ok_or("HOT_LEAD")?;
    assert_eq!((hot["version"].as_i64(), hot["learned"].as_bool()), (Some(4), Some(false)));
    // Refusals: the same message and exit code 2, nothing written.
    for id in ["1", "2", "3", "99"] {
        let out = same(&["strategy", "rollback", id], sq, rd)?;
        assert_eq!(out.status.code(), Some(2), "rollback {id}");
        assert_eq!(run(&["strategy", "rollback", id], sq).stderr, out.stderr, "rollback {id}");
    }
    same(&["strategy", "history", "--json"], sq, rd)?;
    Ok(())
}

/// A prefix holding no store, and the commands that work on SQLite only, are one-line
/// errors with exit code 2, as a missing file is.
#[test]
fn redis_refusals_exit_2() -> Result<(), Error> {
    let (url, _guard) = shared()?;
    let prefix = Prefix::new(&url, "crm-redis-empty");
    for args in [
        vec!["delivery", "status", "--store", url.as_str(), "--redis-prefix", prefix.text.as_str()],
        vec!["segment", "--store", url.as_str()],
        vec!["segments", "report", "--store", "postgres://db/x"],
    ] {
        let out = gavat(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
    }
    Ok(())
}
