//! The live fault harness (RELIABILITY.md §7.1): `gavat run` as a child process on a SQLite
//! store, sending through one bot to the fake Bot API on 127.0.0.1 (its seeded
//! [`FaultSchedule`] deciding each request's fate), under the test profile
//! (`GAVAT_TEST_PROFILE=1`: every configured host loopback). After the runs, the engine's
//! records (the ledger's messages, the store log's export) and the fake's ground truth are
//! put together as a [`History`] for the checker (`gavat_faults`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use gavat_faults::{Accepted, Arrival, EngineRecord, Findings, History, OptOutHanded, State};

use crate::common::{gavat, s, temp_dir};
use crate::fake_telegram::{FakeBotApi, FaultSchedule, Reply, Seen};
use crate::fault_report::RowReport;

/// The bot's token variable and its (fake) token.
pub const TOKEN_ENV: &str = "GAVAT_TEST_BOT_FAULTS";
const TOKEN: &str = "710001:faults-SECRET_dddddddddddddddddddd";

/// The seed of a row: `GAVAT_FAULT_SEED` when set (to replay or sweep), else the row's own.
pub fn seed(default: u64) -> u64 {
    std::env::var("GAVAT_FAULT_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

/// One row's rig: a store of simulated users who follow exactly one bot, a fake Bot API
/// answering as `schedule` says, and a `gavat.toml` joining them.
pub struct Rig {
    /// The scratch directory (store, config, each run's standard error).
    pub dir: tempfile::TempDir,
    /// The SQLite store.
    pub store: PathBuf,
    /// The fake Bot API.
    pub fake: FakeBotApi,
    /// Its fault schedule.
    pub schedule: Arc<FaultSchedule>,
    config: PathBuf,
    runs: AtomicUsize,
}

/// A `gavat run` child and the file its standard error goes to.
pub struct Run {
    /// The child.
    pub child: Child,
    /// Its standard error.
    pub stderr: PathBuf,
}

/// A run never outlives its test: a failed assertion leaves no engine behind.
impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Run {
    /// Waits for the child to end; (exit success, standard error).
    pub fn finish(mut self) -> (bool, String) {
        let ok = self.child.wait().map(|s| s.success()).unwrap_or(false);
        (ok, std::fs::read_to_string(&self.stderr).unwrap_or_default())
    }

    /// Waits up to `limit` for the child to end on its own; kills it if it has not.
    /// (ended on its own, success, standard error).
    pub fn finish_within(mut self, limit: Duration) -> (bool, bool, String) {
        let step = Duration::from_millis(50);
        let mut waited = Duration::ZERO;
        let status = loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                break Some(status);
            }
            if waited >= limit {
                break None;
            }
            std::thread::sleep(step);
            waited += step;
        };
        let ended = status.is_some();
        if !ended {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let ok = status.is_some_and(|s| s.success());
        (ended, ok, std::fs::read_to_string(&self.stderr).unwrap_or_default())
    }

    /// `kill -9`, then waits for it.
    pub fn kill_9(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Sends the signal `name` (`STOP`, `CONT`, `TERM`).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill").args([&format!("-{name}"), &self.child.id().to_string()]).status();
        assert!(status.is_ok_and(|s| s.success()), "kill -{name} runs");
    }
}

impl Rig {
    /// A rig of `users` simulated users, the fake drawing `faults` with `seed`; sends time
    /// out after `timeout_secs` to connect (twice that for the exchange).
    pub fn new(users: usize, seed: u64, faults: Vec<(u32, Reply)>, timeout_secs: u64) -> Rig {
        let schedule = FaultSchedule::new(seed, faults);
        Rig::with_behaviour(users, schedule.clone(), schedule.behaviour(), timeout_secs)
    }

    /// A rig whose fake answers as `schedule` says.
    pub fn with_schedule(users: usize, schedule: Arc<FaultSchedule>, timeout_secs: u64) -> Rig {
        let behaviour = schedule.behaviour();
        Rig::with_behaviour(users, schedule, behaviour, timeout_secs)
    }

    /// A rig whose fake answers with `behaviour` (which may consult `schedule`).
    pub fn with_behaviour(
        users: usize,
        schedule: Arc<FaultSchedule>,
        behaviour: impl Fn(&Seen) -> Reply + Send + Sync + 'static,
        timeout_secs: u64,
    ) -> Rig {
        let dir = temp_dir();
        let store = one_bot_store(dir.path(), users);
        let fake = fake_in_background(behaviour);
        let config = dir.path().join("gavat.toml");
        std::fs::write(
            &config,
            format!(
                "store = \"sqlite:{}\"\nlog_dir = \"{}\"\nlearn = false\n[transport]\nkind = \"telegram\"\n\
                 api_base_url = \"{}\"\ntimeout_secs = {timeout_secs}\npoll_timeout_secs = 1\n[http]\nenabled = false\n\
                 [[bots]]\nname = \"news\"\ntoken_env = \"{TOKEN_ENV}\"\n",
                s(&store),
                s(&dir.path().join("logs")),
                fake.url
            ),
        )
        .expect("config written");
        Rig { dir, store, fake, schedule, config, runs: AtomicUsize::new(0) }
    }

    /// `gavat run` on the rig at `--time-scale scale`, with `args` after, and `env` (e.g.
    /// `FAILPOINTS`) set.
    pub fn spawn(&self, scale: u32, args: &[&str], env: &[(&str, &str)]) -> Run {
        let n = self.runs.fetch_add(1, Ordering::Relaxed);
        let stderr = self.dir.path().join(format!("run-{n}.stderr"));
        let file = std::fs::File::create(&stderr).expect("stderr file");
        let child = Command::new(env!("CARGO_BIN_EXE_gavat"))
            .args(["run", "--config", s(&self.config), "--threads", "1", "--time-scale", &scale.to_string()])
            .args(args)
            .current_dir(self.dir.path())
            .env("GAVAT_LOG", "error")
            .env("GAVAT_TEST_PROFILE", "1")
            .env(TOKEN_ENV, TOKEN)
            .env_remove("FAILPOINTS")
            .env_remove("GAVAT_API_TOKEN")
            .env_remove("OPENAI_API_KEY")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(file))
            .spawn()
            .expect("gavat runs");
        Run { child, stderr }
    }

    /// The users of the store, by id.
    pub fn users(&self) -> Vec<u64> {
        let conn = self.open();
        let mut statement = conn.prepare("SELECT id FROM users ORDER BY id").expect("the users table");
        let rows = statement.query_map([], |r| r.get::<_, i64>(0)).expect("users");
        rows.map(|r| r.expect("a user") as u64).collect()
    }

    fn open(&self) -> rusqlite::Connection {
        rusqlite::Connection::open_with_flags(&self.store, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("the store opens")
    }

    /// Every direct message of the ledger with its state.
    pub fn records(&self) -> Vec<EngineRecord> {
        let conn = self.open();
        let mut statement =
            conn.prepare("SELECT message, user_id, state FROM ledger_messages ORDER BY seq").expect("ledger table");
        let rows = statement
            .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, String>(2)?)))
            .expect("ledger rows");
        rows.map(|r| r.expect("a ledger row"))
            // Group shares have the top bit set (negative here); the harness sends none.
            .filter(|(message, _, _)| *message >= 0)
            .map(|(message, user, state)| EngineRecord {
                message: message as u64,
                user: user as u64,
                state: State::parse(&state).unwrap_or_else(|| panic!("a ledger state: {state}")),
            })
            .collect()
    }

    /// The store's log exported (`gavat events export`): the file.
    pub fn export_events(&self) -> PathBuf {
        let events = self.dir.path().join("events.jsonl");
        let out = gavat(&["events", "export", "--store", s(&self.store), "--out", s(&events)]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        events
    }

    /// The engine's records and the fake's ground truth; `opt_outs` are the `/stop`
    /// updates pushed, as `(chat, update_id)`.
    pub fn history(&self, opt_outs: &[(i64, i64)]) -> History {
        let text = std::fs::read_to_string(self.export_events()).expect("the export");
        let gavat_faults::Events { sends, opt_outs: opt_outs_logged } =
            gavat_faults::read_events(&text).expect("the export reads");
        // Group posts (negative chat ids) are checked by their own row (39): their ledger
        // rows are the members' shares, not the post. (User 0's chat is 0.)
        let accepted = self
            .fake
            .accepted()
            .iter()
            .filter(|s| s.chat() >= 0)
            .map(|s| Accepted { message: s.msg_id.unwrap_or_default(), chat: s.chat(), at_ms: self.fake.millis(s.at) })
            .collect();
        let arrivals = self
            .fake
            .sends()
            .iter()
            .filter(|s| s.msg_id.is_some() && s.chat() >= 0)
            .map(|s| Arrival { chat: s.chat(), at_ms: self.fake.millis(s.at) })
            .collect();
        let opt_outs_handed = opt_outs
            .iter()
            .filter_map(|&(chat, update)| {
                self.fake.handed(update).map(|at| OptOutHanded { chat, at_ms: self.fake.millis(at) })
            })
            .collect();
        History { records: self.records(), accepted, arrivals, sends, opt_outs_logged, opt_outs_handed }
    }

    /// `scripts/check_caps.py` on the store log's export: (violations, sends checked).
    pub fn python_cap_check(&self) -> (u64, u64) {
        let events = self.export_events();
        let check = Command::new("python3")
            .args([concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/check_caps.py"), s(&events)])
            .output()
            .expect("python3 runs");
        let report = String::from_utf8_lossy(&check.stdout);
        let mut words = report.split_whitespace();
        let sends = words.next().and_then(|w| w.parse().ok()).expect("N sends checked");
        let violations = report
            .split(", ")
            .nth(1)
            .and_then(|p| p.split_whitespace().next())
            .and_then(|w| w.parse().ok())
            .expect("M violations");
        (violations, sends)
    }

    /// How many requests with a message id the fake answered with each kind of reply.
    pub fn fired(&self) -> BTreeMap<&'static str, u64> {
        let mut fired = BTreeMap::new();
        for seen in self.fake.sends().iter().filter(|s| s.msg_id.is_some()) {
            if let Some(reply) = &seen.reply {
                *fired.entry(reply.kind()).or_default() += 1;
            }
        }
        fired
    }
}

/// The checker's figures into `report`, and the fate of the unknowns as measures.
pub fn add_findings(report: &mut RowReport, findings: &Findings) {
    for (name, bad, total) in findings.figures() {
        report.figure(name, bad, total);
    }
    for line in findings
        .duplicates
        .iter()
        .chain(&findings.resent_unknowns)
        .chain(&findings.lost)
        .chain(&findings.cap_violations)
        .chain(&findings.late_opt_out_sends)
        .chain(&findings.delivered_unaccepted)
        .take(10)
    {
        eprintln!("checker: {line}");
    }
    report
        .measure("sends counted", findings.sends)
        .measure("accepted at the fake", findings.accepted)
        .measure("unknown", findings.unknown)
        .measure("unknown but delivered (ground truth)", findings.unknown_delivered);
}

/// Panics of the engine in a run's standard error, a fail point's own (`failpoint NAME
/// panic`) excluded.
pub fn panics(stderr: &str) -> u64 {
    let all = stderr.matches("panicked at").count();
    let planted = stderr.matches("failpoint ").count();
    all.saturating_sub(planted) as u64
}

/// A `/stop` from `user` in their private chat, as update `update_id`.
pub fn stop_update(update_id: i64, user: u64) -> serde_json::Value {
    serde_json::json!({ "update_id": update_id, "message": {
        "message_id": update_id, "date": 1_700_000_000, "text": "/stop",
        "from": { "id": user, "is_bot": false, "first_name": format!("User{user}") },
        "chat": { "id": user, "type": "private" } } })
}

/// A store of `users` simulated users, each following exactly one bot (the default
/// scenario's users follow one to eight, and a message through an unconfigured bot is
/// fatal for its user).
fn one_bot_store(dir: &Path, users: usize) -> PathBuf {
    let scenario = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/sim/scenarios/default.toml"))
        .expect("the shipped scenario");
    let lines: Vec<String> = scenario
        .lines()
        .map(|l| if l.starts_with("bots = [") { "bots = [1, 1]".to_string() } else { l.to_string() })
        .collect();
    let path = dir.join("one_bot.toml");
    std::fs::write(&path, lines.join("\n")).expect("scenario written");
    let store = dir.join("faults.db");
    let out = gavat(&[
        "simulate",
        "--users",
        &users.to_string(),
        "--days",
        "2",
        "--seed",
        "11",
        "--scenario",
        s(&path),
        "--save-state",
        s(&store),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    store
}

/// The fake Bot API on a thread of its own (a current-thread runtime driven for the rest
/// of the test binary's life), so that the test can block on child processes.
fn fake_in_background(behaviour: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> FakeBotApi {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        runtime.block_on(async move {
            let started = FakeBotApi::start(behaviour).await;
            let _ = tx.send(started);
            std::future::pending::<()>().await
        });
    });
    rx.recv().expect("the fake starts").expect("the fake listens")
}

/// Milliseconds, for sleeps drawn from a seed.
pub fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}
