//! Rows 1–10, 39, 40, 43, 44 and 45: the fake Bot API misbehaves as a seeded schedule says,
//! the engine runs on, and the checker compares its records with the fake's ground truth.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use gavat_faults::{Findings, State, check};
use tokio::time::Instant;

use super::harness::{Rig, add_findings, panics, seed, sleep_ms};
use crate::fake_telegram::{FaultSchedule, Reply, Seen, max_rate};
use crate::fault_report::{RowReport, RunKind};

/// Requests already on their way when a 429 is answered may still arrive after it: the
/// allowance before one counts as early (as `telegram_run` allows).
const ON_THE_WAY: Duration = Duration::from_millis(300);

/// Scheduling jitter between the engine's clock and the fake's reading of an arrival (two
/// processes on a loaded two-core machine), as `telegram_run` allows.
const JITTER: Duration = Duration::from_millis(400);

/// One transport row's run.
struct Spec {
    row: &'static str,
    seed: u64,
    users: usize,
    faults: Vec<(u32, Reply)>,
    scale: u32,
    run_for: &'static str,
    /// Liveness: the faults stop after this many ms (then a quiet period); safety: `None`.
    faults_for_ms: Option<u64>,
    timeout_secs: u64,
    /// `Some(n)`: the faults in turn on every n-th request (each kind surely fires) instead
    /// of drawn by weight.
    every: Option<u64>,
}

/// What a run left: the rig, the checker's findings, the run's standard error and a
/// report with the checker's figures and every scheduled fault's firings.
struct Ran {
    rig: Rig,
    findings: Findings,
    err: String,
    report: RowReport,
    /// Wall ms from the faults' stop to the run's end (liveness runs).
    drain_ms: Option<u64>,
}

fn run(spec: Spec) -> Ran {
    let rig = match spec.every {
        Some(every) => {
            let faults = spec.faults.iter().map(|(_, reply)| reply.clone()).collect();
            Rig::with_schedule(spec.users, FaultSchedule::in_turn(spec.seed, every, faults), spec.timeout_secs)
        }
        None => Rig::new(spec.users, spec.seed, spec.faults.clone(), spec.timeout_secs),
    };
    run_on(rig, spec)
}

fn run_on(rig: Rig, spec: Spec) -> Ran {
    let child = rig.spawn(spec.scale, &["--for", spec.run_for], &[]);
    let mut drain_ms = None;
    if let Some(ms) = spec.faults_for_ms {
        sleep_ms(ms);
        // A loaded machine makes fewer requests in the window (a 429 freezes the bot, a
        // hang holds a send): the faults go on, for at most 30 s more, until each kind has
        // fired, so that the quiet period follows every fault.
        let kinds: Vec<&str> = spec.faults.iter().map(|(_, reply)| reply.kind()).collect();
        let mut extra_ms = 0;
        while extra_ms < 30_000 && !kinds.iter().all(|k| rig.fired().get(k).is_some_and(|n| *n > 0)) {
            sleep_ms(200);
            extra_ms += 200;
        }
        rig.schedule.stop();
        let stopped = Instant::now();
        let (ok, err) = child.finish();
        drain_ms = Some(stopped.elapsed().as_millis() as u64);
        return finish(rig, spec, ok, err, drain_ms);
    }
    let (ok, err) = child.finish();
    finish(rig, spec, ok, err, drain_ms)
}

fn finish(rig: Rig, spec: Spec, ok: bool, err: String, drain_ms: Option<u64>) -> Ran {
    assert!(ok, "row {}: the run ends well: {err}", spec.row);
    let liveness = spec.faults_for_ms.is_some();
    let findings = check(&rig.history(&[]), liveness);
    let kind = if liveness { RunKind::Liveness } else { RunKind::Safety };
    let mut report = RowReport::new(spec.row, spec.seed, kind);
    let fired = rig.fired();
    for (_, reply) in &spec.faults {
        report.fired(reply.kind(), 0);
    }
    for (kind, n) in &fired {
        if spec.faults.iter().any(|(_, r)| r.kind() == *kind) {
            report.fired(kind, *n);
        }
    }
    add_findings(&mut report, &findings);
    report
        .figure("engine panics", panics(&err), 1)
        .measure("users", spec.users as u64)
        .measure("requests at the fake", rig.fake.sends().iter().filter(|s| s.msg_id.is_some()).count() as u64);
    if let Some(ms) = drain_ms {
        report.measure("drain ms after the faults stopped", ms);
    }
    Ran { rig, findings, err, report, drain_ms }
}

/// Every request with a message id, by id, in arrival order.
fn by_message(rig: &Rig) -> BTreeMap<u64, Vec<Seen>> {
    let mut by: BTreeMap<u64, Vec<Seen>> = BTreeMap::new();
    for seen in rig.fake.sends() {
        if let Some(id) = seen.msg_id {
            by.entry(id).or_default().push(seen);
        }
    }
    by
}

/// Messages the fake answered with a reply of `kind` whose ledger state is not `expected`:
/// (bad, total).
fn classified(rig: &Rig, kind: &str, expected: State) -> (u64, u64) {
    let states: BTreeMap<u64, State> = rig.records().into_iter().map(|r| (r.message, r.state)).collect();
    let mut bad = 0;
    let mut total = 0;
    for (id, seen) in by_message(rig) {
        if seen.iter().any(|s| s.reply.as_ref().is_some_and(|r| r.kind() == kind)) {
            total += 1;
            bad += u64::from(states.get(&id) != Some(&expected));
        }
    }
    (bad, total)
}

/// Requests to a 429's scope (the chat for a chat-scoped one, the bot for a bot-scoped
/// one) arriving before its `retry_after` ran out (after the allowance for requests on
/// their way): (early, 429s, delays of the next request beyond the wait in ms).
fn early_retries(seen: &[Seen]) -> (u64, u64, Vec<u64>) {
    let sends: Vec<&Seen> = seen.iter().filter(|s| s.msg_id.is_some()).collect();
    let (mut early, mut limited, mut delays) = (0, 0, Vec::new());
    for r in &sends {
        let (secs, chat_scoped) = match r.reply {
            Some(Reply::RetryAfter(secs)) => (secs, false),
            Some(Reply::ChatRetryAfter(secs)) => (secs, true),
            _ => continue,
        };
        let Some(answered) = r.answered else { continue };
        limited += 1;
        let until = answered + Duration::from_secs(u64::from(secs));
        let in_scope = |o: &&&Seen| !chat_scoped || o.chat() == r.chat();
        early += sends.iter().filter(in_scope).filter(|o| o.at > answered + ON_THE_WAY && o.at < until).count() as u64;
        if let Some(next) = sends.iter().filter(in_scope).find(|o| o.at >= until) {
            delays.push((next.at - until).as_millis() as u64);
        }
    }
    delays.sort_unstable();
    (early, limited, delays)
}

/// The `q`-quantile of sorted `values` (0 when empty).
fn quantile(values: &[u64], q: f64) -> u64 {
    if values.is_empty() {
        return 0;
    }
    values[((values.len() - 1) as f64 * q).round() as usize]
}

/// Row 1: a 429 on every fifth call (20 %; retry_after 1–2 s, bot- or chat-scoped, in
/// turn) for 12 s of an 18 s run. No request to the scope before its wait ran out, a 429
/// never counts against the user's cap, and after the faults stop every planned message
/// reaches a final state.
#[test]
fn row_01_429s_are_waited_out_and_never_counted() {
    let seed = seed(1);
    let mut ran = run(Spec {
        row: "1",
        seed,
        users: 300,
        faults: vec![
            (0, Reply::RetryAfter(1)),
            (0, Reply::ChatRetryAfter(1)),
            (0, Reply::RetryAfter(2)),
            (0, Reply::ChatRetryAfter(2)),
        ],
        scale: 7_200,
        run_for: "36h",
        faults_for_ms: Some(12_000),
        timeout_secs: 1,
        every: Some(5),
    });
    let (early, limited, delays) = early_retries(&ran.rig.fake.sends());
    let (counted, total) = {
        let (a, n) = classified(&ran.rig, "429-bot", State::Released);
        let (b, m) = classified(&ran.rig, "429-chat", State::Released);
        (a + b, n + m)
    };
    ran.report
        .figure("early retries", early, limited)
        .figure("429s counted against the cap", counted, total)
        .measure("p50 delay beyond retry_after ms", quantile(&delays, 0.5))
        .measure("p99 delay beyond retry_after ms", quantile(&delays, 0.99));
    ran.report.emit();
}

/// Row 2: 5xx on 20 % (500 with an `ok:false` body, 502 with HTML). `ok:false` is not sent
/// (released, retried under a new id), a 502 without a Bot API body is unknown (counted,
/// never resent); no message id reaches the fake twice; everything ends in a final state.
#[test]
fn row_02_server_errors_retry_only_what_was_not_processed() {
    let seed = seed(2);
    let mut ran = run(Spec {
        row: "2",
        seed,
        users: 300,
        faults: vec![(1_000, Reply::ServerErrorOkFalse), (1_000, Reply::BadGateway)],
        scale: 7_200,
        run_for: "1d",
        faults_for_ms: Some(8_000),
        timeout_secs: 1,
        every: None,
    });
    let (ok_false, n_ok_false) = classified(&ran.rig, "500-ok-false", State::Released);
    let (gateway, n_gateway) = classified(&ran.rig, "502-html", State::Unknown);
    let attempts = by_message(&ran.rig).values().map(Vec::len).max().unwrap_or(0);
    ran.report
        .figure("500 ok:false not released", ok_false, n_ok_false)
        .figure("502 HTML not unknown", gateway, n_gateway)
        .figure("message ids sent more than once", u64::from(attempts > 1), by_message(&ran.rig).len() as u64)
        .measure("max attempts per message id", attempts as u64);
    ran.report.emit();
}

/// Rows 3, 5 and 43 in one shape: a fault that is processed and then never answered
/// (`hang`: past the client's timeout; `reset`: the connection reset) must be recorded
/// unknown, counted, and never resent.
fn unknown_row(row: &'static str, default_seed: u64, faults: Vec<(u32, Reply)>, users: usize, every: Option<u64>) {
    let seed = seed(default_seed);
    let kinds: Vec<&'static str> = faults.iter().map(|(_, r)| r.kind()).collect();
    let mut ran = run(Spec {
        row,
        seed,
        users,
        faults,
        scale: 7_200,
        run_for: "1d",
        faults_for_ms: Some(8_000),
        timeout_secs: 1,
        every,
    });
    let (mut bad, mut total) = (0, 0);
    for kind in kinds {
        let (b, n) = classified(&ran.rig, kind, State::Unknown);
        (bad, total) = (bad + b, total + n);
    }
    let findings = ran.findings.clone();
    ran.report
        .figure("injected unknowns not classified unknown", bad, total)
        .measure("unknown → delivered at the fake", format!("{} / {}", findings.unknown_delivered, findings.unknown));
    assert!(ran.err.contains("cap violations found by the audit: 0"), "{}", ran.err);
    ran.report.emit();
}

/// Row 3: 5 % of requests processed, then hung past the client's timeout: each is unknown,
/// counted, never resent.
#[test]
fn row_03_a_timeout_after_acceptance_is_unknown_and_never_resent() {
    unknown_row("3", 3, vec![(500, Reply::Hang(Duration::from_millis(2_600)))], 300, None);
}

/// Row 5: 5 % of requests processed, then the connection reset: as row 3.
#[test]
fn row_05_a_reset_after_the_body_was_read_is_unknown_and_never_resent() {
    unknown_row("5", 5, vec![(500, Reply::Reset)], 300, None);
}

/// Row 43: rows 3 and 5 together on every 20th request (5 %), in turn: the unknowns
/// ledger, with the ground truth of how many were in fact delivered.
#[test]
fn row_43_unknowns_are_counted_and_never_resent() {
    let faults = vec![(0, Reply::Hang(Duration::from_millis(2_600))), (0, Reply::Reset)];
    unknown_row("43", 43, faults, 600, Some(20));
}

/// Row 9: malformed answers — JSON cut short, HTML with 200, the wrong content type, 200
/// with `ok:false` — are typed errors chosen as rows 2–3 say (unreadable → unknown; a
/// readable `ok:true` → delivered; `ok:false` → not sent), never a panic.
#[test]
fn row_09_malformed_answers_are_classified_without_panics() {
    let seed = seed(9);
    let mut ran = run(Spec {
        row: "9",
        seed,
        users: 300,
        faults: vec![
            (500, Reply::Truncated),
            (500, Reply::HtmlOk),
            (500, Reply::WrongContentType),
            (500, Reply::OkFalse200),
        ],
        scale: 7_200,
        run_for: "1d",
        faults_for_ms: Some(8_000),
        timeout_secs: 1,
        every: None,
    });
    let mut bad = 0;
    let mut total = 0;
    for (kind, expected) in [
        ("malformed-truncated", State::Unknown),
        ("malformed-html", State::Unknown),
        ("malformed-content-type", State::Delivered),
        ("malformed-200-ok-false", State::Released),
    ] {
        let (b, n) = classified(&ran.rig, kind, expected);
        (bad, total) = (bad + b, total + n);
    }
    ran.report.figure("unclassified or misclassified answers", bad, total);
    ran.report.emit();
}

/// The chats flagged in a rig: every `every`-th user from `offset`.
fn flag_users(rig: &Rig, every: u64, offset: u64, reply: Reply) -> Vec<i64> {
    let flagged: Vec<i64> = rig.users().into_iter().filter(|u| u % every == offset).map(|u| u as i64).collect();
    for chat in &flagged {
        rig.schedule.flag(*chat, reply.clone());
    }
    flagged
}

/// Requests to each of `chats` after its first answer of `kind`: (requests after, chats
/// that met it).
fn after_first(rig: &Rig, chats: &[i64], kind: &str) -> (u64, u64) {
    let sends = rig.fake.sends();
    let (mut after, mut met) = (0, 0);
    for chat in chats {
        let to_chat: Vec<&Seen> = sends.iter().filter(|s| s.msg_id.is_some() && s.chat() == *chat).collect();
        if let Some(first) = to_chat.iter().position(|s| s.reply.as_ref().is_some_and(|r| r.kind() == kind)) {
            met += 1;
            after += (to_chat.len() - first - 1) as u64;
        }
    }
    (after, met)
}

/// Row 6: a fifth of the users blocked the bot. The first 403 ends messaging them for
/// good — no request after it — and their opt-out is in the store's log.
#[test]
fn row_06_a_block_suppresses_the_user_at_once_and_for_good() {
    let seed = seed(6);
    let rig = Rig::new(300, seed, Vec::new(), 1);
    let blocked = flag_users(&rig, 5, 0, Reply::Blocked);
    let spec = Spec {
        row: "6",
        seed,
        users: 300,
        faults: Vec::new(),
        scale: 7_200,
        run_for: "1d",
        faults_for_ms: None,
        timeout_secs: 1,
        every: None,
    };
    let mut ran = run_on(rig, spec);
    let (after, met) = after_first(&ran.rig, &blocked, "403-blocked");
    let history = ran.rig.history(&[]);
    let opted: std::collections::BTreeSet<u64> = history.opt_outs_logged.iter().map(|(u, _)| *u).collect();
    let hit: Vec<i64> = blocked
        .iter()
        .copied()
        .filter(|c| ran.rig.fake.sends().iter().any(|s| s.chat() == *c && s.msg_id.is_some()))
        .collect();
    let unrecorded = hit.iter().filter(|c| !opted.contains(&(**c as u64))).count() as u64;
    ran.report.fired("403-blocked", met).figure("sends after the 403", after, met).figure(
        "blocked users without an opt-out record",
        unrecorded,
        hit.len() as u64,
    );
    ran.report.emit();
}

/// Row 7: a fifth of the chats are not found. Each is asked once: the 400 marks it
/// unreachable and nothing is retried.
#[test]
fn row_07_an_unreachable_chat_is_never_retried() {
    let seed = seed(7);
    let rig = Rig::new(300, seed, Vec::new(), 1);
    let missing = flag_users(&rig, 5, 1, Reply::ChatNotFound);
    let spec = Spec {
        row: "7",
        seed,
        users: 300,
        faults: Vec::new(),
        scale: 7_200,
        run_for: "1d",
        faults_for_ms: None,
        timeout_secs: 1,
        every: None,
    };
    let mut ran = run_on(rig, spec);
    let (after, met) = after_first(&ran.rig, &missing, "400-chat-not-found");
    ran.report.fired("400-chat-not-found", met).figure("retries to unreachable chats", after, met);
    ran.report.emit();
}

/// Row 4: the fake goes down (its listener and every connection closed) for 3 s — the
/// matrix's 30 s scaled down — and comes back on the same port. Sends meanwhile fail to
/// connect (nothing sent, retried later); nothing is lost or sent twice, and sends flow
/// again after the recovery.
#[test]
fn row_04_the_fake_down_then_back_loses_nothing() {
    let seed = seed(4);
    let rig = Rig::new(300, seed, Vec::new(), 1);
    let child = rig.spawn(7_200, &["--for", "1d"], &[]);
    sleep_ms(2_000);
    rig.fake.stop_listening();
    let down = Instant::now();
    sleep_ms(3_000);
    rig.fake.restart_listening().expect("the fake listens again on its port");
    let up = Instant::now();
    let (ok, err) = child.finish();
    assert!(ok, "{err}");
    let findings = check(&rig.history(&[]), true);
    let sends = rig.fake.sends();
    let during = sends.iter().filter(|s| s.at > down && s.at < up).count() as u64;
    let after = rig.fake.accepted().iter().filter(|s| s.at >= up).count() as u64;
    let mut report = RowReport::new("4", seed, RunKind::Liveness);
    report
        .fired("refuse-connection", rig.fake.outages())
        .figure("requests served while down", during, sends.len() as u64)
        .figure("no delivery after the recovery", u64::from(after == 0), 1)
        .measure("delivered after the recovery", after)
        .measure("outage s", 3);
    add_findings(&mut report, &findings);
    report.figure("engine panics", panics(&err), 1);
    report.emit();
}

/// Row 10: a 429 storm — every call answered 429 (retry_after 2 s) for 6 s. The engine
/// freezes and backs off: at most one request per `retry_after` per scope (after the
/// allowance for requests on their way), no tight loop; after the storm everything drains.
/// Peak RSS is sampled from /proc.
#[test]
fn row_10_a_429_storm_freezes_the_sender_without_a_tight_loop() {
    let seed = seed(10);
    let rig = Rig::new(300, seed, vec![(10_000, Reply::RetryAfter(2))], 1);
    let child = rig.spawn(7_200, &["--for", "1d"], &[]);
    let pid = child.child.id();
    let mut peak_rss_kb = 0u64;
    for _ in 0..30 {
        sleep_ms(200);
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let rss = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        peak_rss_kb = peak_rss_kb.max(rss);
    }
    rig.schedule.stop();
    let (ok, err) = child.finish();
    assert!(ok, "{err}");
    let sends = rig.fake.sends();
    let (early, limited, _) = early_retries(&sends);
    let storm: Vec<&Seen> =
        sends.iter().filter(|s| s.msg_id.is_some() && matches!(s.reply, Some(Reply::RetryAfter(_)))).collect();
    let findings = check(&rig.history(&[]), true);
    let mut report = RowReport::new("10", seed, RunKind::Liveness);
    report
        .fired("429-bot", limited)
        .figure("requests during a freeze", early, storm.len() as u64)
        .measure("requests in the 6 s storm", storm.len() as u64)
        .measure("peak RSS kB during the storm", peak_rss_kb);
    add_findings(&mut report, &findings);
    report.emit();
}

/// Row 40: one chat gets a 429 with `retry_after` 3,600 s. That chat parks — no request
/// to it again within the run — while the bot's other chats flow again after the bot's
/// short freeze (`BOT_FREEZE_CAP`): their throughput after it, against before the 429.
#[test]
fn row_40_a_parked_chat_does_not_hold_the_others() {
    let seed = seed(40);
    let schedule = FaultSchedule::new(seed, Vec::new());
    let count = Arc::new(AtomicU64::new(0));
    let parked = Arc::new(AtomicU64::new(u64::MAX));
    let behaviour = {
        let (count, parked) = (count.clone(), parked.clone());
        move |seen: &Seen| {
            if seen.msg_id.is_none() {
                return Reply::Ok;
            }
            let n = count.fetch_add(1, Ordering::SeqCst) + 1;
            let chat = seen.chat() as u64;
            if n == 60 {
                parked.store(chat, Ordering::SeqCst);
            }
            if parked.load(Ordering::SeqCst) == chat { Reply::ChatRetryAfter(3_600) } else { Reply::Ok }
        }
    };
    let rig = Rig::with_behaviour(400, schedule, behaviour, 1);
    let (ok, err) = rig.spawn(4_800, &["--for", "1d"], &[]).finish();
    assert!(ok, "{err}");
    let chat = parked.load(Ordering::SeqCst) as i64;
    let sends: Vec<Seen> = rig.fake.sends().into_iter().filter(|s| s.msg_id.is_some()).collect();
    let first = sends.iter().find(|s| s.chat() == chat).expect("the parked chat was asked");
    let answered = first.answered.expect("answered");
    let again = sends.iter().filter(|s| s.chat() == chat && s.at > first.at).count() as u64;
    let start = sends.first().map(|s| s.at).expect("sends");
    let end = sends.last().map(|s| s.at).expect("sends");
    let resume = answered + gavat::transport::telegram::BOT_FREEZE_CAP;
    let before = sends.iter().filter(|s| s.at < first.at).count() as f64 / (first.at - start).as_secs_f64().max(0.1);
    let after_n = sends.iter().filter(|s| s.at >= resume).count();
    let after = after_n as f64 / (end.saturating_duration_since(resume)).as_secs_f64().max(0.1);
    let findings = check(&rig.history(&[]), false);
    let mut report = RowReport::new("40", seed, RunKind::Safety);
    let parked_429s = sends.iter().filter(|s| matches!(s.reply, Some(Reply::ChatRetryAfter(3_600)))).count() as u64;
    report
        .fired("429-chat (3600 s)", parked_429s)
        .figure("requests to the parked chat before expiry", again, sends.len() as u64)
        .figure("other chats stalled after the bot's freeze", u64::from(after_n == 0), 1)
        .measure("other chats' throughput after vs before (%)", (100.0 * after / before.max(0.001)).round())
        .measure("bot freeze cap s", gavat::transport::telegram::BOT_FREEZE_CAP.as_secs());
    add_findings(&mut report, &findings);
    report.emit();
}

/// Row 8, scaled down: 1,500 users, one bot, answers delayed 0.3–1.9 s, two days at 7200×
/// (24 s). Telegram's limits hold **at the fake**: one request a second per chat and 30 a
/// second per bot (less the stated jitter allowance); the maxima are reported. (Groups are
/// not in this run.)
#[test]
fn row_08_telegrams_limits_hold_at_the_fake_under_load() {
    let seed = seed(8);
    let mut ran = run(Spec {
        row: "8",
        seed,
        users: 1_500,
        faults: vec![
            (3_000, Reply::Slow(Duration::from_millis(300))),
            (2_000, Reply::Slow(Duration::from_millis(1_000))),
            (1_000, Reply::Slow(Duration::from_millis(1_900))),
        ],
        scale: 7_200,
        run_for: "2d",
        faults_for_ms: None,
        timeout_secs: 2,
        every: None,
    });
    let sends: Vec<Seen> = ran.rig.fake.sends().into_iter().filter(|s| s.msg_id.is_some()).collect();
    let times: Vec<Instant> = sends.iter().map(|s| s.at).collect();
    let mut per_chat: BTreeMap<i64, Vec<Instant>> = BTreeMap::new();
    for s in &sends {
        per_chat.entry(s.chat()).or_default().push(s.at);
    }
    let chat_pairs: u64 = per_chat.values().map(|t| t.len().saturating_sub(1) as u64).sum();
    let close_pairs: u64 = per_chat
        .values()
        .map(|t| t.windows(2).filter(|w| w[1] - w[0] < Duration::from_secs(1) - JITTER).count() as u64)
        .sum();
    let bursts = times.windows(31).filter(|w| w[30] - w[0] < Duration::from_secs(1) - JITTER).count() as u64;
    let max_chat = per_chat.values().map(|t| max_rate(t, Duration::from_secs(1))).max().unwrap_or(0);
    ran.report
        .figure("per-chat pairs under 1 s apart (less jitter)", close_pairs, chat_pairs)
        .figure("31 requests within 1 s per bot (less jitter)", bursts, times.len().saturating_sub(30) as u64)
        .measure("max per-chat requests in 1 s", max_chat as u64)
        .measure("max per-bot requests in 1 s", max_rate(&times, Duration::from_secs(1)) as u64)
        .measure("chats", per_chat.len() as u64);
    ran.report.emit();
}

/// Every transport fault of §7.1 at once, each at 2.5 % (hang, reset, 429 both scopes,
/// 500, 502, 403, 400 not found, malformed bodies), plus an outage.
fn every_fault() -> Vec<(u32, Reply)> {
    vec![
        (250, Reply::RetryAfter(1)),
        (250, Reply::ChatRetryAfter(2)),
        (250, Reply::ServerErrorOkFalse),
        (250, Reply::BadGateway),
        (250, Reply::Blocked),
        (250, Reply::ChatNotFound),
        (250, Reply::Hang(Duration::from_millis(2_600))),
        (250, Reply::Reset),
        (250, Reply::Truncated),
        (250, Reply::HtmlOk),
        (250, Reply::WrongContentType),
        (250, Reply::OkFalse200),
    ]
}

/// Row 44: a safety run — every transport fault on (in turn on every third request), an
/// outage, the run ending while the faults still fire (no quiet period). Only safety is checked: no duplicate, no record
/// lost, no cap broken (liveness not claimed).
#[test]
fn row_44_a_safety_run_under_every_fault_breaks_nothing() {
    let seed = seed(44);
    let in_turn = every_fault().into_iter().map(|(_, reply)| reply).collect();
    let rig = Rig::with_schedule(400, FaultSchedule::in_turn(seed, 3, in_turn), 1);
    let child = rig.spawn(7_200, &["--for", "1d"], &[]);
    sleep_ms(4_000);
    rig.fake.stop_listening();
    sleep_ms(1_500);
    rig.fake.restart_listening().expect("the fake listens again");
    let spec = Spec {
        row: "44",
        seed,
        users: 400,
        faults: every_fault(),
        scale: 7_200,
        run_for: "1d",
        faults_for_ms: None,
        timeout_secs: 1,
        every: None,
    };
    let (ok, err) = child.finish();
    let mut ran = finish(rig, spec, ok, err, None);
    let (violations, checked) = ran.rig.python_cap_check();
    let outages = ran.rig.fake.outages();
    ran.report.fired("refuse-connection", outages).figure("check_caps.py violations", violations, checked);
    ran.report.emit();
}

/// Row 45: a liveness run — every transport fault for 6 s (in turn on every third request,
/// and on until each kind has fired), then none: after the quiet period every planned message has a final state (none still
/// reserved or sending), and nothing was lost or sent twice. The drain time is reported.
#[test]
fn row_45_after_the_faults_stop_everything_drains() {
    let seed = seed(45);
    let ran = run(Spec {
        row: "45",
        seed,
        users: 400,
        faults: every_fault(),
        scale: 7_200,
        run_for: "1d",
        faults_for_ms: Some(6_000),
        timeout_secs: 1,
        every: Some(3),
    });
    let pending = ran.rig.records().iter().filter(|r| r.state.pending()).count() as u64;
    let planned = ran.rig.records().len() as u64;
    let mut report = ran.report;
    report.figure("planned without final state after the quiet period", pending, planned);
    let _ = ran.drain_ms;
    report.emit();
}

/// Row 39: a group the engine posts to became a supergroup — Telegram answers its old chat
/// id 400 with `migrate_to_chat_id`. The new id is saved once, the refused post goes there
/// at once (once), later posts go straight to the new id, and the group's spacing (20 a
/// minute) holds across both ids.
#[test]
fn row_39_a_migrated_group_is_posted_to_once_at_its_new_id() {
    const OLD: i64 = -1_001;
    const NEW: i64 = -1_000_000_001_001;
    let seed = seed(39);
    let rig = Rig::new(300, seed, Vec::new(), 1);
    let members: Vec<String> = rig.users().iter().take(60).map(u64::to_string).collect();
    let groups = rig.dir.path().join("groups.csv");
    std::fs::write(&groups, format!("id,title,utc_offset,members\n1,Club,0,{}\n", members.join(";"))).expect("groups");
    let import =
        crate::common::gavat(&["import", "groups", crate::common::s(&groups), "--store", crate::common::s(&rig.store)]);
    assert!(import.status.success(), "{}", String::from_utf8_lossy(&import.stderr));
    // The chat id a bot would have learned from the group's updates.
    rusqlite::Connection::open(&rig.store)
        .and_then(|c| {
            c.execute("INSERT OR REPLACE INTO group_chats (group_id, chat_id, title) VALUES (1, ?1, 'Club')", [OLD])
        })
        .expect("the group's chat id");
    rig.schedule.flag(OLD, Reply::MigratedTo(NEW));
    let (ok, err) = rig.spawn(7_200, &["--for", "2d"], &[]).finish();
    assert!(ok, "{err}");
    let posts: Vec<Seen> = rig.fake.sends().into_iter().filter(|s| s.chat() < 0).collect();
    let migrations = posts.iter().filter(|s| s.chat() == OLD).count() as u64;
    let to_new: Vec<&Seen> = posts.iter().filter(|s| s.chat() == NEW).collect();
    let mut per_post: BTreeMap<u64, u64> = BTreeMap::new();
    for post in &to_new {
        *per_post.entry(post.msg_id.unwrap_or_default()).or_default() += 1;
    }
    let duplicate_posts = per_post.values().map(|n| n - 1).sum::<u64>();
    let saved: i64 = rusqlite::Connection::open(&rig.store)
        .and_then(|c| c.query_row("SELECT chat_id FROM group_chats WHERE group_id = 1", [], |r| r.get(0)))
        .expect("the group's chat id");
    let times: Vec<Instant> = posts.iter().map(|s| s.at).collect();
    let close = times.windows(2).filter(|w| w[1] - w[0] < Duration::from_secs(3) - JITTER).count() as u64;
    let mut report = RowReport::new("39", seed, RunKind::Safety);
    report
        .fired("400-migrate", migrations)
        .figure("posts to the old id after the migration", migrations.saturating_sub(1), posts.len() as u64)
        .figure("duplicate posts", duplicate_posts, to_new.len() as u64)
        .figure("new chat id not saved", u64::from(saved != NEW), 1)
        .figure(
            "group posts under 3 s apart across both ids (less jitter)",
            close,
            times.len().saturating_sub(1) as u64,
        )
        .measure("posts to the new id", to_new.len() as u64);
    let findings = check(&rig.history(&[]), false);
    add_findings(&mut report, &findings);
    report.emit();
}
