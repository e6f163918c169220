//! The Redis store keeps what the engine writes: users read back with their cap state, in
//! id order and a page at a time; the log read back by time range and by user, paged, in
//! append order within a second. Runs on the shared server under a key prefix of its own.

use std::sync::Arc;

use gavat::domain::{
    ActivitySummary, BotId, Caps, ContentKind, GroupId, HourMask, ResponseHistory, Segment, SendOutcome, Timestamp,
    UserId, UserProfile, UtcOffset, Zone,
};
use gavat::policy::CapState;
use gavat::segmentation::Explained;
use gavat::store::{
    EventLog, EventQuery, LogEntry, LogKind, LoggedCaps, RedisStore, RunRecord, Store, StoreError, UserRecord,
    UserRepository,
};

use crate::redis_server::{Error, Prefix, shared};

pub fn ready<T>(f: gavat::store::StoreFuture<T>) -> Result<T, StoreError> {
    futures::FutureExt::now_or_never(f).expect("a Redis store future is ready at once")
}

fn record(id: u64) -> UserRecord {
    let mut by_local_hour = [0u16; 24];
    by_local_hour[20] = 7;
    UserRecord {
        profile: UserProfile {
            id: UserId(id),
            joined_at: Timestamp(1_000 + id as i64),
            zone: if id.is_multiple_of(2) { Zone::fixed(180) } else { "Asia/Kolkata".parse().expect("a zone") },
            activity: ActivitySummary {
                by_local_hour,
                sessions: 3,
                last_active: Timestamp(5_000),
                weekly_sessions: 1.25,
            },
            bots_followed: 2,
            purchases: 1,
            responses: ResponseHistory { received: 5, responded: 2, recent: 0b10010, recent_len: 5 },
        },
        caps: CapState {
            opted_out: id == 3,
            last_sent: (id != 2).then_some(Timestamp(4_000 + id as i64)),
            last_send_day: if id == 2 { 0 } else { 12 },
            sent_on_last_day: if id == 2 { 0 } else { 2 },
        },
        segments: vec![Explained { segment: Segment::WarmLead, confidence: 0.6, reasons: vec!["answered".into()] }],
        governing: Some(Segment::WarmLead),
        caps_in_force: Caps {
            daily_limit: 2,
            cooldown_secs: 43_200,
            allowed_hours: HourMask::window(9, 21),
            period_days: 2,
        },
        next_send: Some(Timestamp(90_000)),
    }
}

pub fn entry(kind: LogKind, at: i64, user: u64) -> LogEntry {
    let send = kind == LogKind::Send;
    LogEntry {
        kind,
        at: Timestamp(at),
        user: UserId(user),
        utc_offset: UtcOffset(-300),
        zone: if user == 1 { "America/New_York".parse().expect("a zone") } else { Zone::fixed(-300) },
        group: (user == 2).then_some(GroupId(9)),
        segment: Some(Segment::WarmLead),
        caps: send.then_some(LoggedCaps {
            daily_limit: 2,
            cooldown_secs: 3_600,
            allowed_hours: HourMask::window(9, 21),
            period_days: 1,
        }),
        bot: send.then_some(BotId(1)),
        content: send.then_some(ContentKind::Reminder),
        strategy: Arc::from("defaults-v1"),
        arm: (user == 1).then(|| Arc::from("b")),
        outcome: send.then_some(if user == 3 { SendOutcome::Unknown } else { SendOutcome::Delivered }),
    }
}

/// Users saved (and saved again) read back with their cap state, in id order, paged — ids
/// above 2^53 included.
#[test]
fn users_round_trip_with_their_caps() -> Result<(), Error> {
    let (url, _own) = shared()?;
    let prefix = Prefix::new(&url, "store-users");
    let store = RedisStore::connect(&url, &prefix.text)?;
    let ids = [5u64, 1, 3, 2, 4, u64::MAX - 1, 1 << 60];
    for id in ids {
        ready(store.save_user(&record(id)))?;
    }
    let mut changed = record(4);
    changed.caps.opted_out = true;
    ready(store.save_user(&changed))?;
    assert_eq!(store.count_users()?, ids.len() as u64);

    let all = store.load_users()?;
    let mut sorted = ids.to_vec();
    sorted.sort();
    assert_eq!(all.iter().map(|u| u.profile.id.0).collect::<Vec<_>>(), sorted);
    for user in &all {
        let expected = if user.profile.id.0 == 4 { changed.clone() } else { record(user.profile.id.0) };
        assert_eq!(user.profile, expected.profile);
        assert_eq!(user.caps, expected.caps);
    }
    let page = store.users_after(Some(UserId(2)), 2)?;
    assert_eq!(page.iter().map(|u| u.profile.id.0).collect::<Vec<_>>(), vec![3, 4]);
    assert!(store.users_after(Some(UserId(u64::MAX - 1)), 10)?.is_empty());
    Ok(())
}

/// The log reads back by time range and by user, a page at a time, in time order with the
/// entries of one second in append order; every field survives.
#[test]
fn the_log_reads_back_by_time_and_by_user_paged() -> Result<(), Error> {
    let (url, _own) = shared()?;
    let prefix = Prefix::new(&url, "store-log");
    let store = RedisStore::connect(&url, &prefix.text)?;
    let mut appended = Vec::new();
    for i in 0..50i64 {
        // Three entries share each second.
        let e = entry(if i % 4 == 0 { LogKind::Response } else { LogKind::Send }, 10_000 + i / 3, (i % 4) as u64);
        ready(store.append(&e))?;
        appended.push(e);
    }
    ready(store.flush())?;

    let all: Vec<LogEntry> = store.events_between(Timestamp(0), Timestamp(1 << 40)).collect::<Result<_, _>>()?;
    assert_eq!(all, appended);

    let (from, to) = (Timestamp(10_003), Timestamp(10_010));
    let expected: Vec<&LogEntry> = appended.iter().filter(|e| e.at >= from && e.at < to).collect();
    let mut paged = Vec::new();
    let mut after = None;
    loop {
        let page = store.page(&EventQuery { from, to, user: None }, after, 4)?;
        assert!(page.entries.len() <= 4);
        paged.extend(page.entries);
        match page.next {
            Some(c) => after = Some(c),
            None => break,
        }
    }
    assert_eq!(paged.iter().collect::<Vec<_>>(), expected);

    let of_user: Vec<LogEntry> =
        store.events_of(UserId(1), Timestamp(10_004), Timestamp(10_012)).collect::<Result<_, _>>()?;
    let expected: Vec<LogEntry> = appended
        .iter()
        .filter(|e| e.user == UserId(1) && e.at >= Timestamp(10_004) && e.at < Timestamp(10_012))
        .cloned()
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(of_user, expected);

    // An entry older than the newest (a second instance's) is kept, after the newest, with
    // its own time.
    let late = entry(LogKind::Send, 9_000, 1);
    ready(store.append(&late))?;
    let everything: Vec<LogEntry> =
        store.events_between(Timestamp(0), Timestamp(i64::MAX / 1_000)).collect::<Result<_, _>>()?;
    assert_eq!(everything.last(), Some(&late), "filed after the newest, its time kept");
    assert_eq!(everything.len(), appended.len() + 1);
    Ok(())
}

/// What a run leaves behind is recorded.
#[test]
fn save_run_records_the_run() -> Result<(), Error> {
    let (url, _own) = shared()?;
    let prefix = Prefix::new(&url, "store-run");
    let store = RedisStore::connect(&url, &prefix.text)?;
    assert_eq!(store.saved_run()?, None);
    let run = RunRecord {
        ended_at: Timestamp(77),
        strategy: "defaults".into(),
        seed: Some(42),
        suppressed: vec![(Segment::HotLead, gavat::policy::SuppressReason::Cooldown, 3)],
        strategies: Vec::new(),
        strategy_changes: Vec::new(),
        simulation: None,
    };
    ready(store.save_run(&run))?;
    let saved = store.saved_run()?.expect("a run");
    assert_eq!(saved.get("ended_at").map(String::as_str), Some("77"));
    assert_eq!(saved.get("seed").map(String::as_str), Some("42"));
    assert!(saved.get("suppressed").is_some_and(|s| s.contains("cooldown")), "{saved:?}");
    Ok(())
}
