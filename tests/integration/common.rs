//! Helpers shared by the integration tests.

use std::path::Path;
use std::process::{Command, Output};

/// Runs the `gavat` binary with `args`, with no LLM configured whatever the environment.
pub fn gavat(args: &[&str]) -> Output {
    gavat_with_env(args, &[])
}

/// Runs the `gavat` binary with `args` and exactly these LLM-related variables: tests never
/// reach a real endpoint because the developer's shell happens to hold a key.
pub fn gavat_with_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_gavat"));
    command
        .args(args)
        .env("GAVAT_LOG", "error")
        // Run logs go under the build's scratch space, not the working tree.
        .env("GAVAT_LOG_DIR", concat!(env!("CARGO_TARGET_TMPDIR"), "/logs"))
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_BASE_URL")
        .env_remove("GAVAT_LLM_MODEL");
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().expect("the gavat binary runs")
}

/// Runs `gavat simulate … --json` and parses the report, failing with stderr on error.
pub fn simulate_json(args: &[&str]) -> serde_json::Value {
    let mut full = vec!["simulate", "--json"];
    full.extend_from_slice(args);
    let out = gavat(&full);
    assert!(out.status.success(), "gavat {full:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("--json prints JSON")
}

/// A fresh temporary directory.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("a temporary directory")
}

/// The path as a `&str`.
pub fn s(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 temp path")
}

/// A warm lead (every 2 days, 2 a day, 12 h cooldown, 9–21 local) in UTC: joined 100 days
/// before `start`, last active the day before, one bot, no purchase, no reply history.
pub fn warm_lead(id: u64, start: gavat::domain::Timestamp) -> gavat::domain::UserProfile {
    use gavat::domain::{ActivitySummary, DAY, ResponseHistory, UserId, UserProfile, Zone};
    UserProfile {
        id: UserId(id),
        joined_at: start.plus(-100 * DAY),
        zone: Zone::UTC,
        activity: ActivitySummary { last_active: start.plus(-DAY), ..ActivitySummary::default() },
        bots_followed: 1,
        purchases: 0,
        responses: ResponseHistory::default(),
    }
}
