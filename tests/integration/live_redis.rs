//! `gavat run` on Redis: end to end with users created through the API and a responder;
//! a private Redis restarted or flushed mid-run (sending stops, the run says why, nothing
//! is sent on empty state); two instances misconfigured with the same share on one Redis
//! and on one SQLite file (no message id twice, no cap broken).

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::common::{s, temp_dir};
use super::live_run::{
    OptOuts, demo_store, export_and_check_caps, finish, http, outbox, respond_until_exit, spawn_run,
    spawn_run_with_api, wait_for_outbox,
};
use super::redis_server::{Prefix, PrivateRedis, shared};

/// Creates users `0..n` through the API (offsets spread over −5 h … +6 h, two bots each).
pub fn put_users(addr: std::net::SocketAddr, n: u64) {
    for id in 0..n {
        let offset = (id as i64 % 12 - 5) * 60;
        let body = format!("{{\"utc_offset_minutes\": {offset}, \"bots_followed\": 2}}");
        let (status, reply) = http(addr, "PUT", &format!("/v1/users/{id}"), Some(&body), None);
        assert!(matches!(status, 200 | 201), "PUT user {id}: {status} {reply}");
    }
}

/// Three days at 3600× on Redis: 200 users created through the API, a responder posting
/// replies and opt-outs; the store's log exported from Redis keeps every cap and opt-out.
#[test]
fn gavat_run_on_redis_end_to_end() {
    let (url, _own) = shared().expect("a Redis server");
    let prefix = Prefix::new(&url, "live-e2e");
    let dir = temp_dir();
    let store = format!("{}/0", url.trim_end_matches('/'));
    let args = ["--store", &store, "--redis-prefix", &prefix.text, "--time-scale", "3600", "--for", "3d", "--quiet"];
    let (mut child, addr, rest) = spawn_run_with_api(dir.path(), &args);
    put_users(addr, 200);
    let (opted_out, replies) = respond_until_exit(&mut child, addr, &dir.path().join("outbox.jsonl"));
    let status = child.wait().expect("gavat ends");
    let err = rest.join().expect("stderr");
    assert!(status.success(), "{err}");
    assert!(err.contains("200 users joined"), "{err}");
    assert!(err.contains("cap violations found by the audit: 0"), "{err}");
    assert!(opted_out > 0 && replies > 0, "the responder answered: {err}");
    export_and_check_caps(dir.path(), &["--store", &store, "--redis-prefix", &prefix.text], OptOuts::Expected);
}

/// Runs on a private Redis until messages flow, then `disturb`s it: sending must stop
/// within a second or two, the run must say why, and nothing more goes out.
fn disturbed_run(name: &str, disturb: impl FnOnce(&mut PrivateRedis), expect: &str) {
    let mut redis = PrivateRedis::start(&[]).expect("a private redis-server");
    let dir = temp_dir();
    let url = redis.url();
    let args = ["--store", &url, "--redis-prefix", "gavat-test:", "--time-scale", "3600", "--quiet"];
    let (mut child, addr, rest) = spawn_run_with_api(dir.path(), &args);
    put_users(addr, 100);
    let outbox_path = dir.path().join("outbox.jsonl");
    assert!(wait_for_outbox(&outbox_path, 10, Duration::from_secs(60)) >= 10, "{name}: messages flow first");
    disturb(&mut redis);
    // Whatever was in flight settles; from then on nothing more may go out.
    std::thread::sleep(Duration::from_secs(2));
    let settled = outbox(&outbox_path).len();
    std::thread::sleep(Duration::from_secs(4));
    let after = outbox(&outbox_path).len();
    let (ready, body) = http(addr, "GET", "/readyz", None, None);
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill runs");
    let _ = child.wait();
    let err = rest.join().expect("stderr");
    assert_eq!(after, settled, "{name}: nothing is sent after the disturbance (4 h of run time): {err}");
    assert_eq!(ready, 503, "{name}: /readyz fails while paused: {body}");
    assert!(err.contains("sending paused"), "{name}: the run says sending paused: {err}");
    assert!(err.to_lowercase().contains(expect), "{name}: the reason mentions {expect:?}: {err}");
}

/// A restart loses everything a Redis without persistence held: the run pauses for good.
#[test]
fn a_redis_restart_mid_run_stops_sending_and_says_why() {
    disturbed_run("restart", |r| r.restart().expect("redis restarts"), "restart");
}

/// FLUSHALL wipes the epoch and every cap: nothing is sent on empty state.
#[test]
fn a_flushall_mid_run_stops_sending_and_says_why() {
    disturbed_run("flushall", |r| drop(r.cli(&["FLUSHALL"]).expect("FLUSHALL")), "epoch");
}

/// Two instances misconfigured with the same share on one store: the cap gate decides, so
/// no message id goes out twice and no cap is broken.
fn two_instances(store_args: &[&str], dir: &Path) {
    let a_dir = dir.join("a");
    let b_dir = dir.join("b");
    std::fs::create_dir_all(&a_dir).expect("dir a");
    std::fs::create_dir_all(&b_dir).expect("dir b");
    let mut args: Vec<&str> = store_args.to_vec();
    args.extend(["--time-scale", "3600", "--for", "2d", "--quiet", "--no-http", "--shard", "0/1"]);
    let a = spawn_run(&a_dir, &args);
    let b = spawn_run(&b_dir, &args);
    let (a_ok, _, a_err) = finish(a);
    let (b_ok, _, b_err) = finish(b);
    assert!(a_ok && b_ok, "{a_err}\n{b_err}");
    let sent_a = outbox(&a_dir.join("outbox.jsonl"));
    let sent_b = outbox(&b_dir.join("outbox.jsonl"));
    assert!(!sent_a.is_empty() && !sent_b.is_empty(), "both instances sent:\n{a_err}\n{b_err}");
    let ids: HashSet<&str> = sent_a.iter().chain(&sent_b).map(|m| m["id"].as_str().expect("id")).collect();
    assert_eq!(ids.len(), sent_a.len() + sent_b.len(), "no message id twice");
}

/// Two instances on one SQLite file, both with share 0/1.
#[test]
fn two_instances_on_one_sqlite_file_keep_every_cap() {
    let dir = temp_dir();
    let store = demo_store(dir.path(), "150");
    two_instances(&["--store", s(&store)], dir.path());
    export_and_check_caps(dir.path(), &["--store", s(&store)], OptOuts::NotExpected);
}

/// Two instances on one Redis, both with share 0/1; the users come from a first short run.
#[test]
fn two_instances_on_one_redis_keep_every_cap() {
    let (url, _own) = shared().expect("a Redis server");
    let prefix = Prefix::new(&url, "live-two");
    let dir = temp_dir();
    let store = format!("{}/0", url.trim_end_matches('/'));
    let (mut child, addr, rest) =
        spawn_run_with_api(dir.path(), &["--store", &store, "--redis-prefix", &prefix.text, "--time-scale", "60"]);
    put_users(addr, 150);
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill runs");
    let _ = child.wait();
    drop(rest);
    two_instances(&["--store", &store, "--redis-prefix", &prefix.text], dir.path());
    export_and_check_caps(dir.path(), &["--store", &store, "--redis-prefix", &prefix.text], OptOuts::NotExpected);
}
