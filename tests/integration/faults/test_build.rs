//! The test build itself: `cargo test` builds gavat with the `failpoints` feature (through
//! the `gavat-faults` dev-dependency), so the `gavat` binary the tests run has the fail
//! points and sends the `X-Gavat-Msg-Id` header; and under `GAVAT_TEST_PROFILE=1` it
//! refuses any host that is not loopback.

use std::time::Duration;

use super::harness::{Rig, TOKEN_ENV};
use crate::common::{s, temp_dir};
use crate::fake_telegram::Reply;

/// A fail point set through `FAILPOINTS` stops the child exactly there: with
/// `transport-after-write=panic` the first request reaches the fake — carrying its message
/// id in `X-Gavat-Msg-Id` — and the process aborts as its answer comes, before any send is
/// confirmed: every message the fake saw is still `sending` in the ledger.
#[test]
fn a_fail_point_stops_the_child_where_it_is_named() {
    let rig = Rig::new(100, 1, vec![(0, Reply::Ok)], 1);
    assert!(rig.fake.sends().is_empty());
    let run = rig.spawn(3_600, &[], &[("FAILPOINTS", "transport-after-write=panic")]);
    let (ended, ok, err) = run.finish_within(Duration::from_secs(40));
    assert!(ended && !ok, "the child died: {err}");
    assert!(err.contains("failpoint transport-after-write panic"), "{err}");
    let sends: Vec<_> = rig.fake.sends().into_iter().filter(|s| s.msg_id.is_some()).collect();
    assert!(!sends.is_empty(), "a request with its message id reached the fake");
    let records = rig.records();
    for seen in &sends {
        let record = records.iter().find(|r| Some(r.message) == seen.msg_id).expect("the message is in the ledger");
        assert_eq!(record.state, gavat_faults::State::Sending, "aborted before the confirm");
    }
}

/// Under the test profile a Bot API base URL that is not loopback is refused before
/// anything starts (exit 2), naming the setting.
#[test]
fn the_test_profile_refuses_a_host_that_is_not_loopback() {
    let dir = temp_dir();
    let config = dir.path().join("gavat.toml");
    std::fs::write(
        &config,
        format!(
            "store = \"sqlite:{}\"\n[transport]\nkind = \"telegram\"\napi_base_url = \"https://api.telegram.org\"\n\
             [http]\nenabled = false\n[[bots]]\nname = \"news\"\ntoken_env = \"{TOKEN_ENV}\"\n",
            s(&dir.path().join("x.db"))
        ),
    )
    .expect("config");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gavat"))
        .args(["run", "--config", s(&config), "--for", "1h"])
        .current_dir(dir.path())
        .env("GAVAT_TEST_PROFILE", "1")
        .env(TOKEN_ENV, "1:x")
        .output()
        .expect("gavat runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("transport.api_base_url") && err.contains("not a loopback host"), "{err}");
}
