//! Row 47: the checker is itself tested — a bug of each kind planted into a recorded
//! history (a real run's) must be flagged, by `gavat_faults::check` and, for the cap
//! violation, by `scripts/check_caps.py` too.

use std::time::Duration;

use gavat_faults::{Accepted, State, check};

use super::harness::{Rig, add_findings, seed};
use crate::fake_telegram::Reply;
use crate::fault_report::{RowReport, RunKind};

/// A short run with some sends hung past the timeout (unknowns) is recorded; then a
/// duplicate, a cap violation, a lost record and a resent unknown are each planted into
/// it, and the checker flags all four (4 / 4), each under its own name.
#[test]
fn row_47_the_checker_flags_each_planted_bug() {
    let seed = seed(47);
    let rig = Rig::new(150, seed, vec![(1_500, Reply::Hang(Duration::from_millis(2_600)))], 1);
    let (ok, err) = rig.spawn(7_200, &["--for", "6h"], &[]).finish();
    assert!(ok, "{err}");
    let recorded = rig.history(&[]);
    let clean = check(&recorded, true);
    let mut report = RowReport::new("47", seed, RunKind::Liveness);
    report.figure("recorded history flagged before planting", u64::from(!clean.clean()), 1);
    let delivered = recorded.records.iter().find(|r| r.state == State::Delivered).copied();
    let unknown = recorded.records.iter().find(|r| r.state == State::Unknown).copied();
    let (Some(delivered), Some(unknown)) = (delivered, unknown) else {
        panic!("the run recorded a delivered and an unknown message: {err}");
    };
    let mut caught = 0;

    let mut duplicate = recorded.clone();
    let first = duplicate.accepted.iter().find(|a| a.message == delivered.message).copied();
    duplicate.accepted.push(first.expect("the delivered message is at the fake"));
    caught += u64::from(check(&duplicate, true).duplicates.len() == 1);

    let mut over_cap = recorded.clone();
    let send = over_cap.sends.first().cloned().expect("a logged send");
    over_cap.sends.push(gavat_faults::LoggedSend { at: send.at + 60, ..send });
    let rust_flags = check(&over_cap, true).cap_violations.len() == 1;
    // The same planted send in the export, for scripts/check_caps.py.
    let events = rig.export_events();
    let text = std::fs::read_to_string(&events).expect("the export");
    let line = text.lines().find(|l| l.contains("\"kind\":\"send\"")).expect("a send line");
    let mut planted: serde_json::Value = serde_json::from_str(line).expect("JSON");
    planted["at_unix"] = (planted["at_unix"].as_i64().expect("at_unix") + 60).into();
    std::fs::write(&events, format!("{text}{planted}\n")).expect("planted");
    let python = std::process::Command::new("python3")
        .args([concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/check_caps.py"), crate::common::s(&events)])
        .output()
        .expect("python3 runs");
    let python_flags = !python.status.success();
    caught += u64::from(rust_flags && python_flags);

    let mut lost = recorded.clone();
    lost.records.retain(|r| r.message != delivered.message);
    caught += u64::from(check(&lost, true).lost.len() == 1);

    let mut resent = recorded.clone();
    let chat = unknown.user as i64;
    resent.accepted.extend([Accepted { message: unknown.message, chat, at_ms: 1 }; 2]);
    caught += u64::from(check(&resent, true).resent_unknowns.len() == 1);

    report.fired("planted bugs", 4).figure("planted bugs missed", 4 - caught, 4);
    add_findings(&mut report, &clean);
    report.emit();
}
