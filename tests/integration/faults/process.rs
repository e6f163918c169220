//! Rows 11, 12, 13, 26, 27, 48 and 55: faults of the engine process itself — `kill -9` at
//! seeded times and at every named fail point, SIGSTOP, SIGTERM, updates replayed, opt-outs
//! while sends are queued, a restart inside a 429's wait.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use gavat_faults::{FAIL_POINTS, check};
use rand::{RngExt as _, SeedableRng as _};
use rand_pcg::Pcg64Mcg;
use tokio::time::Instant;

use super::harness::{Rig, add_findings, panics, seed, sleep_ms, stop_update};
use crate::fake_telegram::{FaultSchedule, Reply, Seen};
use crate::fault_report::{RowReport, RunKind};

/// Transport faults under the process faults, in turn on every fourth request: every kind
/// of §7.1 fires during row 11, which row 48 counts.
fn faults_in_turn() -> Vec<Reply> {
    vec![
        Reply::RetryAfter(1),
        Reply::ChatRetryAfter(2),
        Reply::ServerErrorOkFalse,
        Reply::BadGateway,
        Reply::Blocked,
        Reply::ChatNotFound,
        Reply::Hang(Duration::from_millis(2_600)),
        Reply::Reset,
        Reply::Truncated,
        Reply::HtmlOk,
        Reply::WrongContentType,
        Reply::OkFalse200,
    ]
}

/// Rows 11 and 48: a first run under every transport fault (each in turn on every fourth
/// request), then `gavat run` is crashed once at every named fail point (`FAILPOINTS=
/// NAME=K*off->panic`, K drawn from the seed: the process aborts there, as a `kill -9`
/// would leave it), then `kill -9`ed at 20 seeded times across restarts, the fake
/// meanwhile still answering with the faults and going down once; then
/// the faults stop and a last run drains (the quiet period). Against the fake's ground
/// truth: no duplicate, no lost record, no cap broken (the checker and
/// `scripts/check_caps.py`), no send after an opt-out beyond the one on the wire. Row 48
/// reports every fault type's and fail point's firings over the same run.
#[test]
fn row_11_kill_9_and_every_fail_point_lose_and_duplicate_nothing() {
    let seed = seed(11);
    let mut rng = Pcg64Mcg::seed_from_u64(seed);
    let rig = Rig::with_schedule(400, FaultSchedule::in_turn(seed, 4, faults_in_turn()), 1);
    let users = rig.users();
    let (ok, err) = rig.spawn(7_200, &["--for", "12h"], &[]).finish();
    assert!(ok, "the faulted first run: {err}");
    let mut report = RowReport::new("11", seed, RunKind::Liveness);
    let mut coverage = RowReport::new("48", seed, RunKind::Liveness);
    let mut opt_outs = Vec::new();
    let mut next_update = 1;
    let mut stderr = err;
    for name in FAIL_POINTS {
        let skip: u32 = rng.random_range(0..3);
        if name == "inbound-after-store-before-offset" {
            for _ in 0..=skip {
                let user = users[rng.random_range(0..users.len())];
                rig.fake.push_update(stop_update(next_update, user));
                opt_outs.push((user as i64, next_update));
                next_update += 1;
            }
        }
        let actions = format!("{name}={skip}*off->panic");
        let run = rig.spawn(3_600, &[], &[("FAILPOINTS", &actions)]);
        let (ended, _, err) = run.finish_within(Duration::from_secs(40));
        let hit = ended && err.contains(&format!("failpoint {name} panic"));
        report.failpoint(name, u64::from(hit));
        coverage.failpoint(name, u64::from(hit));
        stderr.push_str(&err);
    }
    let mut kills = 0;
    for i in 0..20 {
        let mut run = rig.spawn(3_600, &[], &[]);
        sleep_ms(rng.random_range(300..1_500));
        if i == 10 {
            // The fake goes down under a running engine once (refused connections).
            rig.fake.stop_listening();
            sleep_ms(500);
            rig.fake.restart_listening().expect("the fake listens again");
        }
        let running = run.child.try_wait().ok().flatten().is_none();
        stderr.push_str(&run.kill_9());
        kills += u64::from(running);
    }
    // The quiet period: no more faults, one last run that ends by itself.
    rig.schedule.stop();
    let (ok, err) = rig.spawn(3_600, &["--for", "2h"], &[]).finish();
    assert!(ok, "the last run drains: {err}");
    stderr.push_str(&err);
    let findings = check(&rig.history(&opt_outs), true);
    let (violations, checked) = rig.python_cap_check();
    report
        .fired("kill -9", kills)
        .figure("check_caps.py violations", violations, checked)
        .figure("engine panics", panics(&stderr), 1)
        .measure("runs", 1 + 5 + 20 + 1);
    add_findings(&mut report, &findings);
    coverage.fired("kill -9", kills).fired("refuse-connection", rig.fake.outages());
    let fired = rig.fired();
    for reply in faults_in_turn() {
        coverage.fired(reply.kind(), fired.get(reply.kind()).copied().unwrap_or(0));
    }
    report.emit();
    coverage.emit();
}

/// Opt-outs pushed as `/stop` updates for `n` users drawn from the seed, as `(chat,
/// update_id)` from `first_update` on.
fn push_stops(rig: &Rig, rng: &mut Pcg64Mcg, n: usize, first_update: i64) -> Vec<(i64, i64)> {
    let users = rig.users();
    let mut chosen = BTreeSet::new();
    while chosen.len() < n.min(users.len()) {
        chosen.insert(users[rng.random_range(0..users.len())]);
    }
    chosen
        .into_iter()
        .enumerate()
        .map(|(i, user)| {
            let update = first_update + i as i64;
            rig.fake.push_update(stop_update(update, user));
            (user as i64, update)
        })
        .collect()
}

/// Pushed opt-outs without an `opt_out` in the store's log: (missing, pushed).
fn unrecorded(rig: &Rig, opt_outs: &[(i64, i64)]) -> (u64, u64) {
    let history = rig.history(opt_outs);
    let logged: BTreeSet<u64> = history.opt_outs_logged.iter().map(|(u, _)| *u).collect();
    let missing = opt_outs.iter().filter(|(chat, _)| !logged.contains(&(*chat as u64))).count();
    (missing as u64, opt_outs.len() as u64)
}

/// Row 12, scaled down: the engine is SIGSTOPped for 3 s (the matrix's 60 s) while 30
/// users send `/stop`; after SIGCONT, no chat gets more than the one request that may
/// already have been on its way, and every opt-out is recorded. (The SQLite ledger has no
/// lease: the opt-out is checked when the user's send is decided.)
#[test]
fn row_12_a_paused_engine_sends_nothing_new_after_opt_outs() {
    let seed = seed(12);
    let mut rng = Pcg64Mcg::seed_from_u64(seed);
    let rig = Rig::new(400, seed, vec![(3_000, Reply::Slow(Duration::from_millis(500)))], 1);
    let run = rig.spawn(3_600, &[], &[]);
    sleep_ms(2_000);
    run.signal("STOP");
    let opt_outs = push_stops(&rig, &mut rng, 30, 1);
    sleep_ms(3_000);
    run.signal("CONT");
    sleep_ms(4_000);
    run.signal("TERM");
    let (ok, err) = run.finish();
    assert!(ok, "{err}");
    let findings = check(&rig.history(&opt_outs), true);
    let (missing, pushed) = unrecorded(&rig, &opt_outs);
    let mut report = RowReport::new("12", seed, RunKind::Liveness);
    report
        .fired("SIGSTOP 3 s", 1)
        .fired("opt-outs during the stop", pushed)
        .figure("opt-outs not recorded", missing, pushed)
        .measure("stale reservations dropped / found", "n/a: the SQLite ledger has no lease");
    add_findings(&mut report, &findings);
    report.emit();
}

/// Row 27: 40 users send `/stop` at seeded moments while their sends are queued; no chat
/// gets more than the one request that may have been on its way after its opt-out was
/// handed over, and every opt-out is recorded.
#[test]
fn row_27_opt_outs_while_sends_are_queued_stop_them() {
    let seed = seed(27);
    let mut rng = Pcg64Mcg::seed_from_u64(seed);
    let rig = Rig::new(400, seed, vec![(3_000, Reply::Slow(Duration::from_millis(700)))], 1);
    let run = rig.spawn(7_200, &["--for", "1d"], &[]);
    let mut opt_outs = Vec::new();
    for round in 0..8 {
        sleep_ms(rng.random_range(500..1_200));
        opt_outs.extend(push_stops(&rig, &mut rng, 5, 1 + 5 * round));
    }
    let (ok, err) = run.finish();
    assert!(ok, "{err}");
    let findings = check(&rig.history(&opt_outs), true);
    let (missing, pushed) = unrecorded(&rig, &opt_outs);
    let mut report = RowReport::new("27", seed, RunKind::Liveness);
    report.fired("opt-outs while sending", pushed).figure("opt-outs not recorded", missing, pushed);
    add_findings(&mut report, &findings);
    report.emit();
}

/// Row 13: SIGTERM mid-run, with sends in flight (a third answered after 1.5 s): the engine
/// drains and exits 0 within 10 s, and nothing is left unsettled or lost.
#[test]
fn row_13_sigterm_drains_and_exits_cleanly() {
    let seed = seed(13);
    let rig = Rig::new(400, seed, vec![(3_300, Reply::Slow(Duration::from_millis(1_500)))], 2);
    let run = rig.spawn(3_600, &[], &[]);
    sleep_ms(3_000);
    let in_flight = rig.fake.sends().iter().filter(|s| s.msg_id.is_some() && s.answered.is_none()).count();
    let asked = Instant::now();
    run.signal("TERM");
    let (ended, ok, err) = run.finish_within(Duration::from_secs(30));
    let drain = asked.elapsed();
    let findings = check(&rig.history(&[]), true);
    let mut report = RowReport::new("13", seed, RunKind::Liveness);
    report
        .fired("SIGTERM", 1)
        .figure("exit not 0", u64::from(!(ended && ok)), 1)
        .figure("drain over 10 s", u64::from(drain > Duration::from_secs(10)), 1)
        .measure("drain ms", drain.as_millis() as u64)
        .measure("requests in flight at the SIGTERM", in_flight as u64);
    add_findings(&mut report, &findings);
    assert!(err.contains("gavat run: stopped at"), "{err}");
    report.emit();
}

/// Row 26: five `/stop` updates, each queued twice at the fake (a replay of the same
/// `update_id`), and the engine crashed after storing the first but before its offset
/// moved (`inbound-after-store-before-offset`), so it comes again after the restart. Each
/// opt-out is recorded exactly once.
#[test]
fn row_26_replayed_updates_are_recorded_once() {
    let seed = seed(26);
    let mut rng = Pcg64Mcg::seed_from_u64(seed);
    let rig = Rig::new(200, seed, Vec::new(), 1);
    let opt_outs = push_stops(&rig, &mut rng, 5, 1);
    for (chat, update) in &opt_outs {
        rig.fake.push_update(stop_update(*update, *chat as u64));
    }
    let crash = rig.spawn(3_600, &[], &[("FAILPOINTS", "inbound-after-store-before-offset=panic")]);
    let (ended, _, err) = crash.finish_within(Duration::from_secs(30));
    let hit = ended && err.contains("failpoint inbound-after-store-before-offset panic");
    let (ok, err) = rig.spawn(3_600, &["--for", "3h"], &[]).finish();
    assert!(ok, "{err}");
    let history = rig.history(&opt_outs);
    let mut per_user: BTreeMap<u64, u64> = BTreeMap::new();
    for (user, _) in &history.opt_outs_logged {
        *per_user.entry(*user).or_default() += 1;
    }
    let pushed = opt_outs.len() as u64;
    let duplicates: u64 =
        opt_outs.iter().map(|(c, _)| per_user.get(&(*c as u64)).copied().unwrap_or(0).saturating_sub(1)).sum();
    let lost = opt_outs.iter().filter(|(c, _)| !per_user.contains_key(&(*c as u64))).count() as u64;
    let replays = rig.fake.calls("getUpdates").len() as u64;
    let mut report = RowReport::new("26", seed, RunKind::Liveness);
    report
        .failpoint("inbound-after-store-before-offset", u64::from(hit))
        .fired("update replayed (same update_id queued twice)", pushed)
        .figure("duplicate records", duplicates, pushed)
        .figure("lost updates", lost, pushed)
        .measure("getUpdates calls", replays);
    report.emit();
}

/// Row 55: the first message meets a chat-scoped 429 (`retry_after` 6 s); the engine is
/// `kill -9`ed inside the wait and restarted at once. The wait was kept in the store
/// (`telegram_freezes`) and is honoured: no request to that chat — nor through the bot,
/// whose freeze the same 429 set — before it runs out.
#[test]
fn row_55_a_restart_inside_a_429_wait_honours_it() {
    let seed = seed(55);
    let schedule = FaultSchedule::new(seed, Vec::new());
    let first = Arc::new(AtomicU64::new(u64::MAX));
    let behaviour = {
        let first = first.clone();
        move |seen: &Seen| {
            if seen.msg_id.is_none() {
                return Reply::Ok;
            }
            let chat = seen.chat() as u64;
            let parked = first.compare_exchange(u64::MAX, chat, Ordering::SeqCst, Ordering::SeqCst).is_ok();
            if parked { Reply::ChatRetryAfter(6) } else { Reply::Ok }
        }
    };
    let rig = Rig::with_behaviour(300, schedule, behaviour, 1);
    let run = rig.spawn(3_600, &[], &[]);
    let mut waited = 0;
    let answered_429 = |rig: &Rig| {
        rig.fake.sends().iter().any(|s| matches!(s.reply, Some(Reply::ChatRetryAfter(_))) && s.answered.is_some())
    };
    while !answered_429(&rig) && waited < 400 {
        sleep_ms(25);
        waited += 1;
    }
    // Inside the wait, once the engine has had the answer.
    sleep_ms(300);
    let killed = run.kill_9();
    let (ok, err) = rig.spawn(3_600, &["--for", "8h"], &[]).finish();
    assert!(ok, "{killed}{err}");
    let sends: Vec<Seen> = rig.fake.sends().into_iter().filter(|s| s.msg_id.is_some()).collect();
    let limited = sends.iter().find(|s| matches!(s.reply, Some(Reply::ChatRetryAfter(_))));
    let mut report = RowReport::new("55", seed, RunKind::Safety);
    report.fired("429-chat then kill -9", u64::from(limited.is_some()));
    if let Some(limited) = limited {
        let answered = limited.answered.expect("answered");
        let until = answered + Duration::from_secs(6);
        let after: Vec<&Seen> = sends.iter().filter(|s| s.at > answered + Duration::from_millis(300)).collect();
        let chat_early = after.iter().filter(|s| s.chat() == limited.chat() && s.at < until).count() as u64;
        let bot_early = after.iter().filter(|s| s.at < until).count() as u64;
        report.figure("requests to that chat before retry_after", chat_early, after.len() as u64).figure(
            "requests through the bot before retry_after",
            bot_early,
            after.len() as u64,
        );
    }
    let findings = check(&rig.history(&[]), true);
    add_findings(&mut report, &findings);
    report.emit();
}
