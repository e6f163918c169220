//! `gavat simulate --faults FILE`: the simulated counterparts of the live faults
//! (RELIABILITY.md rule 9). The same engine runs behind faulty seams; the same seed gives the
//! same event log byte for byte (row 46); every fault kind fires; under every fault no cap
//! breaks and nothing is sent twice (row 44, over a seed sweep); when the faults stop,
//! everything drains (row 45).

use serde_json::Value;

use super::common::{gavat, s, simulate_json, temp_dir};
use super::fault_report::{RowReport, RunKind};

const SAFETY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/sim/scenarios/faults/safety.toml");
const LIVENESS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/sim/scenarios/faults/liveness.toml");

/// The safety figures every faulted run must keep at 0.
const SAFETY_FIGURES: [&str; 6] = [
    "cap_violations",
    "duplicate_sends",
    "unknown_resent",
    "early_retries",
    "sends_while_gate_down",
    "inbound_taken_twice",
];

fn faults(report: &Value) -> &Value {
    &report["faults"]
}

fn count(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

/// Reports every fault kind's firings and the given figures of a run's faults section.
fn record(row: &mut RowReport, section: &Value, figures: &[&str]) {
    for (kind, n) in section["fired"].as_object().expect("fired") {
        row.fired(kind, count(n));
    }
    for name in figures {
        let f = &section[*name];
        row.figure(name, count(&f["bad"]), count(&f["total"]));
    }
}

fn without_timing(mut report: Value) -> String {
    report.as_object_mut().expect("an object").remove("timing");
    serde_json::to_string_pretty(&report).expect("serialisable")
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Row 46: one seed twice gives the same event-log hash and the same events file, byte for
/// byte, whatever the threads; the hash is the file's SHA-256; the next seed differs.
#[test]
fn same_seed_same_event_log_next_seed_another() {
    let dir = temp_dir();
    let seed = 46u64;
    let run = |seed: u64, threads: &str, name: &str| {
        let events = dir.path().join(name);
        let seed = seed.to_string();
        let args =
            ["--users", "300", "--days", "3", "--seed", &seed, "--threads", threads, "--faults", SAFETY, "--events"];
        let mut args: Vec<&str> = args.to_vec();
        args.push(s(&events));
        let report = simulate_json(&args);
        let bytes = std::fs::read(&events).expect("the events file");
        (report, bytes)
    };
    let (first, first_events) = run(seed, "1", "a.jsonl");
    let (again, again_events) = run(seed, "3", "b.jsonl");
    let (next, next_events) = run(seed + 1, "1", "c.jsonl");
    let hash = |r: &Value| faults(r)["event_log_sha256"].as_str().expect("a hash").to_string();
    assert_eq!(hash(&first), sha256_hex(&first_events), "the hash is the events file's SHA-256");
    assert_eq!(count(&faults(&first)["events"]), first_events.iter().filter(|b| **b == b'\n').count() as u64);
    let identical = hash(&first) == hash(&again) && first_events == again_events;
    assert_eq!(without_timing(first.clone()), without_timing(again), "same seed, other threads: another report");
    let differing = hash(&first) != hash(&next) && first_events != next_events;
    let mut row = RowReport::new("46", seed, RunKind::Safety);
    record(&mut row, faults(&first), &SAFETY_FIGURES);
    row.figure("same seed, different event log", u64::from(!identical), 1)
        .figure("next seed, same event log", u64::from(!differing), 1)
        .measure("runs compared", 3)
        .measure("event_log_sha256", hash(&first))
        .measure("next_seed_sha256", hash(&next));
    row.emit();
    assert!(identical && differing);
}

/// Every fault kind of the example plan fires, every outcome happens, and nothing bad does:
/// no cap broken, nothing accepted sent twice, no unknown outcome resent, no send before its
/// `retry_after` or while the cap gate was down, no inbound event taken in twice.
#[test]
fn every_fault_fires_and_nothing_bad_happens() {
    let report = simulate_json(&["--users", "400", "--days", "4", "--seed", "7", "--faults", SAFETY]);
    let f = faults(&report);
    assert_eq!(f["run_kind"], "safety");
    for (kind, n) in f["fired"].as_object().expect("fired") {
        assert!(count(n) > 0, "fault {kind} never fired: {f}");
    }
    // `failed` (blocked, chat not found) comes only from the world's own blocks, not a fault.
    for outcome in ["delivered", "unknown", "retried", "suppressed", "held"] {
        assert!(count(&f["outcomes"][outcome]) > 0, "no {outcome} outcome: {f}");
    }
    for name in SAFETY_FIGURES {
        assert_eq!(count(&f[name]["bad"]), 0, "{name}: {f}");
        assert!(count(&f[name]["total"]) > 0, "{name} checked nothing: {f}");
    }
    assert_eq!(count(&f["cap_violations"]["total"]), 400 * 4, "user-days");
    assert!(count(&f["unknown_delivered"]) > 0, "ground truth: some unknowns were delivered");
    assert!(count(&f["unknown_delivered"]) < count(&f["outcomes"]["unknown"]), "and some were not");
    assert_eq!(report["cap_violations"], 0);
}

/// Unknown outcomes count against the caps and are never resent; the text report shows the
/// faults section with every figure as bad / total.
#[test]
fn unknown_outcomes_count_and_are_never_resent() {
    let dir = temp_dir();
    let plan = dir.path().join("hang.toml");
    std::fs::write(&plan, "[accept_then_hang]\nrate = 0.3\n[server_error]\nrate = 0.2\nunknown_share = 1.0\n")
        .expect("write");
    let report = simulate_json(&["--users", "300", "--days", "3", "--seed", "3", "--faults", s(&plan)]);
    let f = faults(&report);
    let unknown = count(&f["outcomes"]["unknown"]);
    assert!(unknown > 100, "{f}");
    assert_eq!(f["unknown_resent"]["bad"], 0, "{f}");
    assert_eq!(count(&f["unknown_resent"]["total"]), unknown);
    assert_eq!(f["duplicate_sends"]["bad"], 0, "{f}");
    // An unknown counts like a delivery: sends (delivered or unknown) are what the audit checked.
    assert_eq!(report["cap_violations"], 0);
    let out = gavat(&["simulate", "--users", "300", "--days", "3", "--seed", "3", "--faults", s(&plan)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("faults:") && text.contains("cap violations:  0 / 900 user-days"), "{text}");
    assert!(text.contains("unknown resent:  0 / "), "{text}");
}

/// While the cap gate is down nothing is sent: every reservation fails closed, the message is
/// held, and it goes out once the gate is back.
#[test]
fn nothing_is_sent_while_the_gate_is_down() {
    let dir = temp_dir();
    let plan = dir.path().join("gate.toml");
    std::fs::write(&plan, "[ledger_unavailable]\nwindows_per_day = 6\nduration_secs = [1800, 7200]\n").expect("write");
    let report = simulate_json(&["--users", "300", "--days", "3", "--seed", "5", "--faults", s(&plan)]);
    let f = faults(&report);
    assert!(count(&f["fired"]["ledger_unavailable"]) > 0, "{f}");
    assert!(count(&f["outcomes"]["held"]) > 0, "{f}");
    assert_eq!(f["sends_while_gate_down"]["bad"], 0, "{f}");
    assert!(count(&f["outcomes"]["delivered"]) > 0, "sends resumed after the outages: {f}");
    assert_eq!(report["total"]["suppressed"]["gate_unavailable"], f["outcomes"]["held"]);
}

/// Row 45's simulated counterpart: the faults stop after day 2; after the quiet period no
/// retried message is without a final state and no reservation is left open.
#[test]
fn a_liveness_run_drains() {
    let seed = 45u64;
    let report = simulate_json(&["--users", "400", "--days", "5", "--seed", &seed.to_string(), "--faults", LIVENESS]);
    let f = faults(&report);
    assert_eq!(f["run_kind"], "liveness");
    let mut row = RowReport::new("45-sim", seed, RunKind::Liveness);
    let mut figures = SAFETY_FIGURES.to_vec();
    figures.extend(["open_retries", "open_reservations"]);
    record(&mut row, f, &figures);
    row.emit();
    assert!(count(&f["open_retries"]["total"]) > 0, "something was retried: {f}");
}

/// A bad fault file is refused before anything runs, in one line naming the file, the line
/// and the field (exit 2); so is a liveness plan that leaves no quiet period.
#[test]
fn a_bad_fault_file_names_file_line_and_field() {
    let dir = temp_dir();
    let plan = dir.path().join("bad.toml");
    std::fs::write(&plan, "name = \"x\"\n\n[slow]\nrate = 0.1\nlatency = [1, 2]\n").expect("write");
    let out = gavat(&["simulate", "--users", "10", "--days", "2", "--seed", "1", "--faults", s(&plan)]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err.lines().find(|l| l.contains("bad.toml")).unwrap_or_else(|| panic!("{err}"));
    assert!(line.contains("bad.toml:5:") && line.contains("latency"), "{err}");
    assert!(out.stdout.is_empty(), "nothing ran");

    std::fs::write(&plan, "stop_after_days = 3\n[slow]\nrate = 0.1\n").expect("write");
    let out = gavat(&["simulate", "--users", "10", "--days", "3", "--seed", "1", "--faults", s(&plan)]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml:1: field stop_after_days"), "{err}");
}

/// Row 44's simulated counterpart, a seed sweep: 100 seeds × 1,000 users × 12 days (1.2
/// million user-days) with every fault on and never stopping; totals over all runs: no cap
/// violation per user-day, no duplicate send, no unknown resent. Then 10 seeds of the
/// liveness plan drain.
#[test]
fn seed_sweep_safety_and_liveness() {
    let sweep =
        |plan: &str, seeds: std::ops::Range<u64>, [users, days]: [&str; 2], row: &mut RowReport, figures: &[&str]| {
            let mut runs = 0u64;
            let mut totals: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
            let mut fired: std::collections::BTreeMap<String, u64> = Default::default();
            for seed in seeds {
                let seed = seed.to_string();
                let args = ["--users", users, "--days", days, "--seed", &seed, "--threads", "1", "--faults", plan];
                let report = simulate_json(&args);
                let f = faults(&report);
                for (kind, n) in f["fired"].as_object().expect("fired") {
                    *fired.entry(kind.clone()).or_default() += count(n);
                }
                for name in figures {
                    let t = totals.entry((*name).to_string()).or_default();
                    t.0 += count(&f[*name]["bad"]);
                    t.1 += count(&f[*name]["total"]);
                }
                runs += 1;
            }
            for (kind, n) in &fired {
                row.fired(kind, *n);
            }
            for (name, (bad, total)) in &totals {
                row.figure(name, *bad, *total);
            }
            row.measure("runs", runs);
            totals
        };
    let mut safety = RowReport::new("44-sim", 0, RunKind::Safety);
    let totals = sweep(SAFETY, 0..100, ["1000", "12"], &mut safety, &SAFETY_FIGURES);
    let text = |name: &str| {
        let (bad, total) = totals[name];
        gavat::faults::Figure { bad, total }.to_text()
    };
    println!(
        "seed sweep: cap violations {} user-days, duplicates {} sends, unknown resent {} unknown",
        text("cap_violations"),
        text("duplicate_sends"),
        text("unknown_resent")
    );
    safety.emit();
    let mut liveness = RowReport::new("45-sim-sweep", 0, RunKind::Liveness);
    let mut figures = SAFETY_FIGURES.to_vec();
    figures.extend(["open_retries", "open_reservations"]);
    sweep(LIVENESS, 1_000..1_010, ["500", "5"], &mut liveness, &figures);
    liveness.emit();
}
