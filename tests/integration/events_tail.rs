//! `gavat events tail`: a Redis store's log read through a consumer group — every record
//! once per group, the group's position kept by Redis across readers, a new group from the
//! start on request.

use gavat::store::{LogKind, RedisStore, Store as _};

use super::common::gavat;
use super::redis_server::{Prefix, shared};
use super::redis_store::{entry, ready};

fn tail(url: &str, prefix: &str, extra: &[&str]) -> Vec<serde_json::Value> {
    let mut args = vec!["events", "tail", "--store", url, "--redis-prefix", prefix, "--once"];
    args.extend_from_slice(extra);
    let out = gavat(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect()
}

#[test]
fn a_group_takes_every_record_once_and_goes_on_where_it_stopped() {
    let (url, _own) = shared().expect("a Redis server");
    let prefix = Prefix::new(&url, "events-tail");
    let store = RedisStore::connect(&url, &prefix.text).expect("the store");
    for (i, kind) in
        [LogKind::Send, LogKind::Response, LogKind::Send, LogKind::OptOut, LogKind::Send].iter().enumerate()
    {
        ready(store.append(&entry(*kind, 10_000 + i as i64, i as u64 % 2))).expect("appended");
    }
    let first = tail(&url, &prefix.text, &["--group", "a", "--from-start"]);
    assert_eq!(first.len(), 5);
    assert_eq!(first[3]["kind"], "opt_out");
    assert_eq!(first[0]["at_unix"], 10_000);
    // Nothing new: nothing printed.
    assert!(tail(&url, &prefix.text, &["--group", "a"]).is_empty());
    ready(store.append(&entry(LogKind::Conversion, 10_010, 1))).expect("appended");
    let second = tail(&url, &prefix.text, &["--group", "a", "--consumer", "another"]);
    assert_eq!(second.len(), 1, "the group goes on where it stopped, whichever reader");
    assert_eq!(second[0]["kind"], "conversion");
    // Another group from the start sees everything; one started now sees nothing old.
    assert_eq!(tail(&url, &prefix.text, &["--group", "b", "--from-start"]).len(), 6);
    assert!(tail(&url, &prefix.text, &["--group", "c"]).is_empty());
    // SQLite is refused with a pointer to export.
    let out = gavat(&["events", "tail", "--store", "sqlite:x.db", "--once"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("events export"));
}
