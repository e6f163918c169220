//! Telegram updates reaching a running `gavat run` (a child process) from the fake Bot API
//! (`fake_telegram`): `/start` of a new user mid-run gets them messaged within their caps;
//! `/stop`, the Unsubscribe button and a block each end messaging at once (confirmed once,
//! a block silently); a re-`/start` re-activates; a duplicate `update_id` is taken in once;
//! a malformed update is named, counted and passed; the offset survives a restart; the
//! webhook refuses a missing or wrong secret and takes in an update with the right one.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use super::common::temp_dir;
use super::fake_telegram::{FakeBotApi, Reply};
use super::live_run::outbox;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const TOKEN_ENV: &str = "GAVAT_TEST_INBOUND_TOKEN";
const TOKEN: &str = "424242:inbound-SECRET_token";
const SECRET_ENV: &str = "GAVAT_TEST_WEBHOOK_SECRET";
const SECRET: &str = "webhook-secret_0123456789";
const CONFIRMATION: &str = gavat::transport::telegram::STOP_CONFIRMATION;

/// A runtime driven by a thread of its own: it serves the fake while the test thread waits
/// on the child (`handle.block_on` runs a future there).
fn runtime() -> std::io::Result<tokio::runtime::Handle> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let handle = rt.handle().clone();
    std::thread::spawn(move || rt.block_on(std::future::pending::<()>()));
    Ok(handle)
}

/// `gavat.toml` in `dir`: SQLite, the dry-run sender (its outbox shows who is messaged),
/// Telegram updates from the fake through one bot.
fn write_config(dir: &Path, fake: &str, inbound: &str) -> std::io::Result<PathBuf> {
    let path = dir.join("gavat.toml");
    std::fs::write(
        &path,
        format!(
            r#"store = "sqlite:crm.db"
learn = false
[transport]
kind = "dry-run"
outbox = "outbox.jsonl"
api_base_url = "{fake}"
poll_timeout_secs = 1
{inbound}
[http]
listen = "127.0.0.1:0"
[[bots]]
name = "news"
token_env = "{TOKEN_ENV}"
"#
        ),
    )?;
    Ok(path)
}

/// `gavat run` on `config`, ten hours of engine time a second, with the bot's token and the
/// webhook secret in its environment.
fn spawn(dir: &Path, config: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_gavat"))
        .args(["run", "--config"])
        .arg(config)
        .args(["--time-scale", "36000", "--quiet", "--threads", "1"])
        .current_dir(dir)
        .env("GAVAT_LOG", "error")
        .env("GAVAT_LOG_DIR", dir.join("logs"))
        .env(TOKEN_ENV, TOKEN)
        .env(SECRET_ENV, SECRET)
        .env_remove("GAVAT_API_TOKEN")
        .env_remove("OPENAI_API_KEY")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gavat runs")
}

/// Collects the child's stderr on a thread; the API address once it is printed.
struct Stderr {
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    thread: std::thread::JoinHandle<()>,
}

impl Stderr {
    fn of(child: &mut Child) -> Stderr {
        let stream = child.stderr.take().expect("stderr is piped");
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = lines.clone();
        let thread = std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                sink.lock().unwrap_or_else(|p| p.into_inner()).push(line);
            }
        });
        Stderr { lines, thread }
    }

    fn text(&self) -> String {
        self.lines.lock().unwrap_or_else(|p| p.into_inner()).join("\n")
    }

    fn api_address(&self, limit: Duration) -> Option<String> {
        let found = wait_until(limit, || self.text().contains("HTTP API on http://"));
        let text = self.text();
        let rest = text.split("HTTP API on http://").nth(1)?;
        found.then(|| rest.split_whitespace().next().unwrap_or_default().to_string())
    }
}

/// SIGTERM, then the exit status and everything the child wrote on stderr.
fn stop(mut child: Child, stderr: Stderr) -> (bool, String) {
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill runs");
    let ok = child.wait().map(|s| s.success()).unwrap_or(false);
    let Stderr { lines, thread } = stderr;
    let _ = thread.join();
    let text = lines.lock().unwrap_or_else(|p| p.into_inner()).join("\n");
    (ok, text)
}

/// Polls `check` every 50 ms until it holds or `limit` has passed.
fn wait_until(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let step = Duration::from_millis(50);
    let mut waited = Duration::ZERO;
    loop {
        if check() {
            return true;
        }
        if waited >= limit {
            return false;
        }
        std::thread::sleep(step);
        waited += step;
    }
}

fn now() -> i64 {
    std::time::SystemTime::UNIX_EPOCH.elapsed().map(|d| d.as_secs() as i64).unwrap_or(0)
}

fn from(user: u64) -> Value {
    json!({ "id": user, "is_bot": false, "first_name": format!("User{user}"), "language_code": "tr" })
}

/// A text message from `user` in their private chat.
fn text(update_id: i64, user: u64, text: &str) -> Value {
    json!({ "update_id": update_id, "message": {
        "message_id": update_id, "date": now(), "text": text, "from": from(user),
        "chat": { "id": user, "type": "private" } } })
}

/// A press of the button with `data` under one of our messages.
fn button(update_id: i64, user: u64, data: &str) -> Value {
    json!({ "update_id": update_id, "callback_query": { "id": format!("q{update_id}"), "from": from(user), "data": data } })
}

/// The user blocked the bot.
fn block(update_id: i64, user: u64) -> Value {
    json!({ "update_id": update_id, "my_chat_member": {
        "chat": { "id": user, "type": "private" }, "from": from(user), "date": now(),
        "old_chat_member": { "status": "member", "user": { "id": 1, "is_bot": true, "first_name": "Bot" } },
        "new_chat_member": { "status": "kicked", "user": { "id": 1, "is_bot": true, "first_name": "Bot" } } } })
}

/// Messages per user in the outbox.
fn sends(dir: &Path) -> BTreeMap<u64, usize> {
    let mut count = BTreeMap::new();
    for message in outbox(&dir.join("outbox.jsonl")) {
        if let Some(user) = message["to"]["user"].as_u64() {
            *count.entry(user).or_default() += 1;
        }
    }
    count
}

/// The opt-out confirmations the fake received, per chat.
fn confirmations(fake: &FakeBotApi) -> BTreeMap<u64, usize> {
    let mut count = BTreeMap::new();
    for call in fake.calls("sendMessage").iter().filter(|c| c.text() == CONFIRMATION) {
        *count.entry(call.chat_id()).or_default() += 1;
    }
    count
}

fn sql_i64(db: &Path, query: &str) -> rusqlite::Result<i64> {
    rusqlite::Connection::open(db)?.query_row(query, [], |r| r.get(0))
}

const LIMIT: Duration = Duration::from_secs(30);
const A: u64 = 5001;
const B: u64 = 5002;
const C: u64 = 5003;
const D: u64 = 5004;

/// The whole life of four users through `getUpdates`, and a restart: /start of new users
/// mid-run → each messaged; /stop (A), the Unsubscribe button (B) and a block (C) → no send
/// after, A and B confirmed once (a second /stop is not confirmed again), C never written
/// to, the button answered; D, untouched, keeps being messaged meanwhile (so the silence of
/// A, B and C is the opt-out, not a lull); a duplicate update_id counts once; a malformed
/// update is named and passed; A's re-/start re-activates A. After a restart the poll
/// resumes at the stored offset: nothing is taken in twice, and the update that came
/// meanwhile is not lost. The token appears nowhere in what gavat wrote.
#[test]
fn updates_by_polling_drive_the_running_engine() -> TestResult {
    let rt = runtime()?;
    let fake = rt.block_on(FakeBotApi::start(|_| Reply::Ok))?;
    let dir = temp_dir();
    let config = write_config(dir.path(), &fake.url, "inbound = \"poll\"")?;
    let mut child = spawn(dir.path(), &config);
    let stderr = Stderr::of(&mut child);

    for (id, user) in [(1, A), (2, B), (3, C), (4, D)] {
        fake.push_update(text(id, user, "/start"));
    }
    let all_messaged = wait_until(LIMIT, || [A, B, C, D].iter().all(|u| sends(dir.path()).contains_key(u)));
    assert!(all_messaged, "new users messaged: {:?}\n{}", sends(dir.path()), stderr.text());

    fake.push_update(text(5, A, "/stop"));
    fake.push_update(button(6, B, gavat::transport::telegram::UNSUBSCRIBE_CALLBACK));
    fake.push_update(block(7, C));
    let mut malformed = text(8, D, "hi");
    malformed["message"]["chat"]["id"] = json!("not-a-number");
    fake.push_update(malformed);
    // A reply from D, delivered twice under one update_id.
    fake.push_update(text(9, D, "yes please"));
    fake.push_update(text(9, D, "yes please"));
    let confirmed =
        wait_until(LIMIT, || confirmations(&fake).len() == 2 && !fake.calls("answerCallbackQuery").is_empty());
    assert!(confirmed, "confirmations: {:?}\n{}", confirmations(&fake), stderr.text());
    let at_opt_out = sends(dir.path());
    fake.push_update(text(10, A, "/stop"));
    let d_before = at_opt_out[&D];
    let time_passed = wait_until(LIMIT, || sends(dir.path())[&D] >= d_before + 2);
    assert!(time_passed, "D is still messaged: {:?}", sends(dir.path()));
    let after = sends(dir.path());
    for user in [A, B, C] {
        assert_eq!(after[&user], at_opt_out[&user], "user {user} messaged after opting out");
    }
    assert_eq!(confirmations(&fake), BTreeMap::from([(A, 1), (B, 1)]), "confirmed once each; C (a block) never");
    assert_eq!(fake.calls("answerCallbackQuery").len(), 1);
    assert_eq!(fake.calls("answerCallbackQuery")[0].body["callback_query_id"], "q6");

    fake.push_update(text(11, A, "/start"));
    let back = wait_until(LIMIT, || sends(dir.path())[&A] > at_opt_out[&A]);
    assert!(back, "A re-activated by /start: {:?}\n{}", sends(dir.path()), stderr.text());

    let (ok, err) = stop(child, stderr);
    assert!(ok, "{err}");
    assert!(err.contains("malformed Telegram update: field message.chat.id"), "{err}");
    assert!(!err.contains("not-a-number"), "the bad value is not echoed: {err}");
    let db = dir.path().join("crm.db");
    assert_eq!(sql_i64(&db, "SELECT next_update FROM telegram_offsets WHERE bot = 'news'")?, 12);
    assert_eq!(sql_i64(&db, &format!("SELECT responded FROM users WHERE id = {D}"))?, 1, "the duplicate counted once");
    assert_eq!(sql_i64(&db, &format!("SELECT opted_out FROM users WHERE id = {A}"))?, 0, "A came back");
    assert_eq!(sql_i64(&db, &format!("SELECT opted_out FROM users WHERE id = {B}"))?, 1);
    assert_eq!(sql_i64(&db, &format!("SELECT opted_out FROM ledger_users WHERE user_id = {A}"))?, 0);
    assert_eq!(sql_i64(&db, "SELECT COUNT(*) FROM contacts WHERE language_code = 'tr'")?, 4);

    // Meanwhile D sends /stop; the restarted run picks it up, and only it.
    let polls_before = fake.calls("getUpdates").len();
    fake.push_update(text(12, D, "/stop"));
    let mut child = spawn(dir.path(), &config);
    let stderr = Stderr::of(&mut child);
    let d_stopped = wait_until(LIMIT, || confirmations(&fake).get(&D) == Some(&1));
    // The offset moves once the update is done (after its confirmation went out).
    let offset = "SELECT next_update FROM telegram_offsets WHERE bot = 'news'";
    let moved = wait_until(LIMIT, || sql_i64(&db, offset).is_ok_and(|next| next == 13));
    let (ok, err) = stop(child, stderr);
    assert!(moved, "the offset moved past D's /stop: {:?}", sql_i64(&db, offset));
    assert!(ok && d_stopped, "D's /stop after the restart: {:?}\n{err}", confirmations(&fake));
    let first_poll = &fake.calls("getUpdates")[polls_before];
    assert_eq!(first_poll.body["offset"], 12, "the poll resumes at the stored offset");
    assert_eq!(confirmations(&fake), BTreeMap::from([(A, 1), (B, 1), (D, 1)]), "nothing taken in twice");
    assert_eq!(fake.calls("answerCallbackQuery").len(), 1, "nothing taken in twice");
    for path in [dir.path().join("crm.db"), dir.path().join("outbox.jsonl")] {
        let bytes = std::fs::read(&path)?;
        assert!(!String::from_utf8_lossy(&bytes).contains("inbound-SECRET"), "token in {}", path.display());
    }
    assert!(!err.contains("inbound-SECRET"));
    Ok(())
}

/// The webhook: `setWebhook` is called at the start with the secret; a POST without the
/// secret or with a wrong one is 401 (the secret never echoed); with the right one the
/// update is taken in (the new user is in the store) before the 200; a malformed update is
/// 400 naming its field.
#[test]
fn the_webhook_checks_its_secret_and_takes_updates_in() -> TestResult {
    let rt = runtime()?;
    let fake = rt.block_on(FakeBotApi::start(|_| Reply::Ok))?;
    let dir = temp_dir();
    let inbound = format!(
        "inbound = \"webhook\"\nwebhook_secret_env = \"{SECRET_ENV}\"\nwebhook_url = \"https://gavat.example/hooks\""
    );
    let config = write_config(dir.path(), &fake.url, &inbound)?;
    let mut child = spawn(dir.path(), &config);
    let stderr = Stderr::of(&mut child);
    let address = stderr.api_address(LIMIT).ok_or_else(|| format!("no API address:\n{}", stderr.text()))?;
    let url = format!("http://{address}/telegram/news");
    // rustls needs one process-wide crypto provider for reqwest's client.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let post = |secret: Option<&str>, body: Value| {
        let url = url.clone();
        let secret = secret.map(str::to_string);
        rt.block_on(async move {
            let mut request = reqwest::Client::new().post(url).json(&body);
            if let Some(secret) = secret {
                request = request.header("X-Telegram-Bot-Api-Secret-Token", secret);
            }
            let response = request.send().await?;
            Ok::<_, reqwest::Error>((response.status().as_u16(), response.text().await?))
        })
    };
    // The API listens first (Telegram will POST to it), then the webhook is set: wait for it.
    wait_until(LIMIT, || !fake.calls("setWebhook").is_empty());
    let set = fake.calls("setWebhook");
    assert_eq!(set.len(), 1, "setWebhook at the start");
    assert_eq!(set[0].body["url"], "https://gavat.example/hooks/telegram/news");
    assert_eq!(set[0].body["secret_token"], SECRET);
    assert!(fake.calls("getUpdates").is_empty(), "no polling in webhook mode");

    let (status, body) = post(None, text(1, 6001, "/start"))?;
    assert_eq!(status, 401, "{body}");
    let (status, body) = post(Some("wrong-secret-guess"), text(1, 6001, "/start"))?;
    assert_eq!(status, 401, "{body}");
    assert!(!body.contains("wrong-secret-guess") && !body.contains(SECRET), "{body}");

    let (status, body) = post(Some(SECRET), text(1, 6001, "/start"))?;
    assert_eq!(status, 200, "{body}");
    let db = dir.path().join("crm.db");
    assert_eq!(sql_i64(&db, "SELECT COUNT(*) FROM users WHERE id = 6001")?, 1, "stored before the 200");

    let mut malformed = text(2, 6001, "hi");
    malformed["message"]["date"] = json!("yesterday");
    let (status, body) = post(Some(SECRET), malformed)?;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("message.date"), "{body}");

    let (status, body) = post(Some(SECRET), text(3, 6001, "/stop"))?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(sql_i64(&db, "SELECT opted_out FROM users WHERE id = 6001")?, 1, "stored before the 200");
    let (ok, err) = stop(child, stderr);
    assert!(ok, "{err}");
    assert_eq!(confirmations(&fake), BTreeMap::from([(6001, 1)]));
    assert!(!err.contains(SECRET) && !err.contains("inbound-SECRET"), "{err}");
    Ok(())
}
