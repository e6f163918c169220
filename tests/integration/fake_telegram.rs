//! A fake Telegram Bot API on 127.0.0.1 for the tests: a tokio `TcpListener` speaking
//! hand-written HTTP/1.1 (keep-alive, `Content-Length` bodies), answering each request as a
//! closure says and recording every request with the instant it arrived, what it answered
//! and when (on tokio's clock, the fake's own), so tests measure rates where Telegram would.
//!
//! Besides `sendMessage` (answered as the closure says, each accepted message with a new
//! `message_id`), it speaks the inbound side: `getUpdates` as a long poll over a queue of
//! updates the test pushes (honouring `offset` and `timeout`; updates below the offset are
//! kept, so a client that forgot its offset would see them again), and `setWebhook`,
//! `deleteWebhook`, `answerCallbackQuery` and `getMe`, each answered `ok`.
//!
//! For the fault harness (RELIABILITY.md §7.1) it also keeps the **ground-truth ledger**:
//! each `sendMessage` carries the engine's message id in the test-only `X-Gavat-Msg-Id`
//! header, and [`FakeBotApi::accepted`] lists the requests the fake processed (the user got
//! the message) by that id, with their arrival times. A seeded [`FaultSchedule`] picks each
//! request's fault, the listener can be stopped and restarted on the same port
//! ([`FakeBotApi::stop_listening`]), and [`max_rate`] measures rates where Telegram would.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

/// How the fake answers one request.
#[derive(Clone, Debug)]
pub enum Reply {
    /// 200 `{"ok": true, ...}`.
    Ok,
    /// 429 with `parameters.retry_after` of this many seconds.
    RetryAfter(u32),
    /// 403 "Forbidden: bot was blocked by the user".
    Blocked,
    /// 400 "Bad Request: chat not found".
    ChatNotFound,
    /// 500 with an `ok:false` body.
    ServerErrorOkFalse,
    /// 500 with an empty body.
    ServerErrorBare,
    /// Wait this long, then 200 ok.
    Slow(Duration),
    /// 400 "group chat was upgraded to a supergroup chat" with `migrate_to_chat_id`.
    MigratedTo(i64),
    /// 400 `ok:false` with this description (a refusal the fake makes up).
    BadRequest(&'static str),
    /// 429 like [`Reply::RetryAfter`], the fake counting it against the chat, not the bot
    /// (the wire cannot tell them apart).
    ChatRetryAfter(u32),
    /// 502 with an HTML body from a proxy in front of the Bot API (not processed here).
    BadGateway,
    /// Processed, then no answer for this long (past the client's timeout), then closed.
    Hang(Duration),
    /// Processed, then the connection reset (RST) without an answer.
    Reset,
    /// Processed, then 200 with JSON cut short.
    Truncated,
    /// Processed, then 200 with an HTML page.
    HtmlOk,
    /// Processed, then 200 `ok:true` labelled `text/plain`.
    WrongContentType,
    /// 200 with an `ok:false` body (not processed).
    OkFalse200,
}

impl Reply {
    /// Whether the fake processed the request: the user got the message (the ground truth
    /// an `unknown` is judged by).
    pub fn delivers(&self) -> bool {
        matches!(
            self,
            Reply::Ok
                | Reply::Slow(_)
                | Reply::ServerErrorBare
                | Reply::Hang(_)
                | Reply::Reset
                | Reply::Truncated
                | Reply::HtmlOk
                | Reply::WrongContentType
        )
    }

    /// The fault's name in reports (`ok` for none).
    pub fn kind(&self) -> &'static str {
        match self {
            Reply::Ok => "ok",
            Reply::RetryAfter(_) => "429-bot",
            Reply::ChatRetryAfter(_) => "429-chat",
            Reply::Blocked => "403-blocked",
            Reply::ChatNotFound => "400-chat-not-found",
            Reply::ServerErrorOkFalse => "500-ok-false",
            Reply::ServerErrorBare => "500-bare",
            Reply::Slow(_) => "slow",
            Reply::MigratedTo(_) => "400-migrate",
            Reply::BadRequest(_) => "400-other",
            Reply::BadGateway => "502-html",
            Reply::Hang(_) => "accept-then-hang",
            Reply::Reset => "accept-then-reset",
            Reply::Truncated => "malformed-truncated",
            Reply::HtmlOk => "malformed-html",
            Reply::WrongContentType => "malformed-content-type",
            Reply::OkFalse200 => "malformed-200-ok-false",
        }
    }
}

/// One request as the fake received it.
#[derive(Clone, Debug)]
pub struct Seen {
    /// When its head and body were read.
    pub at: Instant,
    /// The request path, e.g. `/bot123:abc/sendMessage` (it holds the token).
    pub path: String,
    /// The JSON body (`Null` if it was not JSON).
    pub body: serde_json::Value,
    /// What the fake answered (`None` until it did).
    pub reply: Option<Reply>,
    /// When the answer was written (`None` until it was).
    pub answered: Option<Instant>,
    /// The `X-Gavat-Msg-Id` header: the engine's id of the message (test builds send it).
    pub msg_id: Option<u64>,
}

impl Seen {
    /// The body's `chat_id`.
    pub fn chat_id(&self) -> u64 {
        self.body["chat_id"].as_u64().unwrap_or(u64::MAX)
    }

    /// The body's `chat_id`, signed (a group's is negative).
    pub fn chat(&self) -> i64 {
        self.body["chat_id"].as_i64().unwrap_or(i64::MIN)
    }

    /// The bot's token, from the path `/bot{token}/method`.
    pub fn token(&self) -> &str {
        self.path.trim_start_matches("/bot").split('/').next().unwrap_or_default()
    }

    /// The body's `text`.
    pub fn text(&self) -> &str {
        self.body["text"].as_str().unwrap_or_default()
    }
}

type Behaviour = dyn Fn(&Seen) -> Reply + Send + Sync;

/// The running fake; its tasks end with the runtime.
pub struct FakeBotApi {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    updates: Arc<Updates>,
    /// What the listener needs to start again on the same port.
    listening: Arc<Listening>,
}

/// The listener's task and every connection's, so that [`FakeBotApi::stop_listening`] can
/// end them all (a refused connection, RELIABILITY.md row 4).
struct Listening {
    addr: SocketAddr,
    runtime: tokio::runtime::Handle,
    behaviour: Arc<Behaviour>,
    tasks: Mutex<Vec<tokio::task::AbortHandle>>,
    /// How many times the fake went down.
    outages: std::sync::atomic::AtomicU64,
    /// When the fake started: the zero of [`FakeBotApi::millis`].
    started: Instant,
}

/// The updates a test pushed, and the next `message_id` to give.
#[derive(Default)]
struct Updates {
    queue: Mutex<Vec<serde_json::Value>>,
    added: tokio::sync::Notify,
    next_message_id: AtomicI64,
    /// Each update's id and when it was first handed out by `getUpdates`.
    handed: Mutex<BTreeMap<i64, Instant>>,
}

impl Seen {
    /// The Bot API method called (the last path segment).
    pub fn method(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or_default()
    }
}

impl FakeBotApi {
    /// Starts a fake answering each request with `behaviour(request)`.
    pub async fn start(behaviour: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> std::io::Result<FakeBotApi> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr: SocketAddr = listener.local_addr()?;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let updates = Arc::new(Updates::default());
        let listening = Arc::new(Listening {
            addr,
            runtime: tokio::runtime::Handle::current(),
            behaviour: Arc::new(behaviour),
            tasks: Mutex::new(Vec::new()),
            outages: std::sync::atomic::AtomicU64::new(0),
            started: Instant::now(),
        });
        accept_on(listener, &listening, &seen, &updates);
        Ok(FakeBotApi { url: format!("http://{addr}"), seen, updates, listening })
    }

    /// Closes the listener and every open connection: a connection to the fake is refused
    /// until [`FakeBotApi::restart_listening`]. Callable from any thread.
    pub fn stop_listening(&self) {
        for task in self.listening.tasks.lock().unwrap_or_else(|p| p.into_inner()).drain(..) {
            task.abort();
        }
        self.listening.outages.fetch_add(1, Ordering::Relaxed);
    }

    /// Listens again on the same port. Callable from any thread but the fake's own.
    pub fn restart_listening(&self) -> std::io::Result<()> {
        let std_listener = std::net::TcpListener::bind(self.listening.addr)?;
        std_listener.set_nonblocking(true)?;
        let _entered = self.listening.runtime.enter();
        let listener = TcpListener::from_std(std_listener)?;
        accept_on(listener, &self.listening, &self.seen, &self.updates);
        Ok(())
    }

    /// How many times the fake stopped listening.
    pub fn outages(&self) -> u64 {
        self.listening.outages.load(Ordering::Relaxed)
    }

    /// `at` as milliseconds since the fake started (the clock of its ledger).
    pub fn millis(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.listening.started).as_millis() as u64
    }

    /// The ground-truth ledger: every `sendMessage` carrying a message id that the fake
    /// processed (see [`Reply::delivers`]), in arrival order.
    pub fn accepted(&self) -> Vec<Seen> {
        self.sends()
            .into_iter()
            .filter(|s| s.msg_id.is_some() && s.reply.as_ref().is_some_and(Reply::delivers))
            .collect()
    }

    /// When the update with `update_id` was first handed out by `getUpdates`, if it was.
    pub fn handed(&self, update_id: i64) -> Option<Instant> {
        self.updates.handed.lock().unwrap_or_else(|p| p.into_inner()).get(&update_id).copied()
    }

    /// Queues an update for `getUpdates` (any JSON: a malformed one too).
    pub fn push_update(&self, update: serde_json::Value) {
        self.updates.queue.lock().unwrap_or_else(|p| p.into_inner()).push(update);
        self.updates.added.notify_waiters();
    }

    /// The requests to Bot API method `method`, in arrival order.
    pub fn calls(&self, method: &str) -> Vec<Seen> {
        self.seen().into_iter().filter(|s| s.method() == method).collect()
    }

    /// Every request so far, in arrival order.
    pub fn seen(&self) -> Vec<Seen> {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
        seen.sort_by_key(|s| s.at);
        seen
    }

    /// The `sendMessage` requests only, in the order they arrived (a run also polls
    /// `getUpdates`).
    pub fn sends(&self) -> Vec<Seen> {
        self.seen().into_iter().filter(|s| s.path.ends_with("/sendMessage")).collect()
    }
}

/// Accepts connections on `listener` until [`FakeBotApi::stop_listening`], each served by a
/// task of its own that a stop ends too.
fn accept_on(listener: TcpListener, listening: &Arc<Listening>, seen: &Arc<Mutex<Vec<Seen>>>, updates: &Arc<Updates>) {
    let (seen, updates, inner) = (seen.clone(), updates.clone(), listening.clone());
    let task = listening.runtime.spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let served = inner.runtime.spawn(serve(socket, seen.clone(), inner.behaviour.clone(), updates.clone()));
            let mut tasks = inner.tasks.lock().unwrap_or_else(|p| p.into_inner());
            tasks.retain(|t| !t.is_finished());
            tasks.push(served.abort_handle());
        }
    });
    listening.tasks.lock().unwrap_or_else(|p| p.into_inner()).push(task.abort_handle());
}

/// The most requests in any window of `window` among `times` (sorted or not).
pub fn max_rate(times: &[Instant], window: Duration) -> usize {
    let mut sorted = times.to_vec();
    sorted.sort();
    let mut most = 0;
    let mut first = 0;
    for (last, at) in sorted.iter().enumerate() {
        while *at - sorted[first] >= window {
            first += 1;
        }
        most = most.max(last - first + 1);
    }
    most
}

/// A seeded fault schedule: each `sendMessage` gets a fault drawn from weighted kinds (the
/// rest `ok`) by one PCG stream from the seed, until [`FaultSchedule::stop`]; chats can be
/// flagged blocked, not found or migrated. Its [`FaultSchedule::behaviour`] is the fake's.
pub struct FaultSchedule {
    rng: Mutex<rand_pcg::Pcg64Mcg>,
    /// `(weight in 10,000ths, fault)`.
    faults: Vec<(u32, Reply)>,
    /// Instead of weights: every `.0`-th request gets the next fault of `faults` in turn
    /// (from a place the seed picks), so that each kind surely fires.
    every: Option<u64>,
    /// Requests with a message id so far.
    requests: AtomicI64,
    stopped: std::sync::atomic::AtomicBool,
    /// Chats answered this reply every time (blocked, not found, migrated).
    flagged: Mutex<BTreeMap<i64, Reply>>,
}

impl FaultSchedule {
    /// A schedule drawing from `faults` — `(weight in 10,000ths, reply)` — with `seed`.
    pub fn new(seed: u64, faults: Vec<(u32, Reply)>) -> Arc<FaultSchedule> {
        use rand::SeedableRng as _;
        Arc::new(FaultSchedule {
            rng: Mutex::new(rand_pcg::Pcg64Mcg::seed_from_u64(seed)),
            faults,
            every: None,
            requests: AtomicI64::new(0),
            stopped: std::sync::atomic::AtomicBool::new(false),
            flagged: Mutex::new(BTreeMap::new()),
        })
    }

    /// A schedule giving every `every`-th request the next of `faults` in turn, starting at
    /// a place `seed` picks: each kind fires once per `every × faults.len()` requests.
    pub fn in_turn(seed: u64, every: u64, faults: Vec<Reply>) -> Arc<FaultSchedule> {
        use rand::SeedableRng as _;
        let weighted = faults.into_iter().map(|f| (0, f)).collect();
        Arc::new(FaultSchedule {
            rng: Mutex::new(rand_pcg::Pcg64Mcg::seed_from_u64(seed)),
            faults: weighted,
            every: Some(every.max(1)),
            requests: AtomicI64::new((seed % 1_000) as i64),
            stopped: std::sync::atomic::AtomicBool::new(false),
            flagged: Mutex::new(BTreeMap::new()),
        })
    }

    /// From now on, every request is answered `ok` (but flagged chats): the liveness run's
    /// quiet period.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
    }

    /// From now on, requests to `chat` get `reply`.
    pub fn flag(&self, chat: i64, reply: Reply) {
        self.flagged.lock().unwrap_or_else(|p| p.into_inner()).insert(chat, reply);
    }

    /// The answer to one request.
    pub fn pick(&self, seen: &Seen) -> Reply {
        use rand::RngExt as _;
        if let Some(reply) = self.flagged.lock().unwrap_or_else(|p| p.into_inner()).get(&seen.chat()) {
            return reply.clone();
        }
        // Requests outside the outbox (a `/stop` confirmation) carry no message id: no fault.
        if seen.msg_id.is_none() {
            return Reply::Ok;
        }
        if let Some(every) = self.every {
            let n = self.requests.fetch_add(1, Ordering::SeqCst) as u64;
            if self.stopped.load(Ordering::SeqCst) || !n.is_multiple_of(every) || self.faults.is_empty() {
                return Reply::Ok;
            }
            return self.faults[(n / every) as usize % self.faults.len()].1.clone();
        }
        let draw: u32 = self.rng.lock().unwrap_or_else(|p| p.into_inner()).random_range(0..10_000);
        if self.stopped.load(Ordering::SeqCst) {
            return Reply::Ok;
        }
        let mut at = 0;
        for (weight, reply) in &self.faults {
            at += weight;
            if draw < at {
                return reply.clone();
            }
        }
        Reply::Ok
    }

    /// The fake's behaviour: [`FaultSchedule::pick`].
    pub fn behaviour(self: &Arc<FaultSchedule>) -> impl Fn(&Seen) -> Reply + Send + Sync + 'static {
        let schedule = self.clone();
        move |seen| schedule.pick(seen)
    }
}

/// Serves one keep-alive connection until the client closes it.
async fn serve(mut socket: TcpStream, seen: Arc<Mutex<Vec<Seen>>>, behaviour: Arc<Behaviour>, updates: Arc<Updates>) {
    let mut buf = Vec::new();
    while let Ok(Some(request)) = read_request(&mut socket, &mut buf).await {
        let index = {
            let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
            seen.push(request.clone());
            seen.len() - 1
        };
        let sent = |updates: &Updates| {
            let id = updates.next_message_id.fetch_add(1, Ordering::Relaxed) + 1;
            format!(r#"{{"ok":true,"result":{{"message_id":{id},"date":0,"chat":{{"id":0,"type":"private"}}}}}}"#)
        };
        let reply = match request.method() {
            "getUpdates" => {
                let body = get_updates(&request, &updates).await;
                if !answer(&mut socket, 200, &body).await {
                    return;
                }
                continue;
            }
            "setWebhook" | "deleteWebhook" | "answerCallbackQuery" => {
                if !answer(&mut socket, 200, r#"{"ok":true,"result":true}"#).await {
                    return;
                }
                continue;
            }
            "getMe" => {
                let me = r#"{"ok":true,"result":{"id":1,"is_bot":true,"first_name":"Fake","username":"fake_bot"}}"#;
                if !answer(&mut socket, 200, me).await {
                    return;
                }
                continue;
            }
            _ => behaviour(&request),
        };
        {
            let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
            seen[index].reply = Some(reply.clone());
        }
        let ok_json = |updates: &Updates| sent(updates);
        let (status, body, content_type) = match reply.clone() {
            Reply::Ok => (200, sent(&updates), JSON),
            Reply::RetryAfter(secs) | Reply::ChatRetryAfter(secs) => (
                429,
                format!(
                    r#"{{"ok":false,"error_code":429,"description":"Too Many Requests: retry after {secs}","parameters":{{"retry_after":{secs}}}}}"#
                ),
                JSON,
            ),
            Reply::Blocked => (
                403,
                r#"{"ok":false,"error_code":403,"description":"Forbidden: bot was blocked by the user"}"#.into(),
                JSON,
            ),
            Reply::ChatNotFound => {
                (400, r#"{"ok":false,"error_code":400,"description":"Bad Request: chat not found"}"#.into(), JSON)
            }
            Reply::ServerErrorOkFalse => {
                (500, r#"{"ok":false,"error_code":500,"description":"Internal Server Error"}"#.into(), JSON)
            }
            Reply::ServerErrorBare => (500, String::new(), JSON),
            Reply::Slow(delay) => {
                tokio::time::sleep(delay).await;
                (200, sent(&updates), JSON)
            }
            Reply::MigratedTo(chat) => (
                400,
                format!(
                    r#"{{"ok":false,"error_code":400,"description":"Bad Request: group chat was upgraded to a supergroup chat","parameters":{{"migrate_to_chat_id":{chat}}}}}"#
                ),
                JSON,
            ),
            Reply::BadRequest(description) => {
                (400, format!(r#"{{"ok":false,"error_code":400,"description":"{description}"}}"#), JSON)
            }
            Reply::BadGateway => (502, "<html><body><h1>502 Bad Gateway</h1></body></html>".into(), "text/html"),
            Reply::Hang(delay) => {
                ok_json(&updates);
                tokio::time::sleep(delay).await;
                return;
            }
            Reply::Reset => {
                ok_json(&updates);
                // SO_LINGER 0: closing sends a reset, not a polite FIN.
                let _ = socket.set_zero_linger();
                return;
            }
            Reply::Truncated => {
                let full = sent(&updates);
                (200, full[..full.len() / 2].to_string(), JSON)
            }
            Reply::HtmlOk => (200, "<html><body>ok</body></html>".into(), "text/html"),
            Reply::WrongContentType => (200, sent(&updates), "text/plain"),
            Reply::OkFalse200 => (200, r#"{"ok":false,"description":"strange"}"#.into(), JSON),
        };
        let written = answer_as(&mut socket, status, &body, content_type).await;
        {
            let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
            seen[index].answered = Some(Instant::now());
        }
        if !written {
            return;
        }
    }
}

const JSON: &str = "application/json";

/// Writes one answer with `content_type`; `false` when the client is gone.
async fn answer_as(socket: &mut TcpStream, status: u16, body: &str, content_type: &str) -> bool {
    let head =
        format!("HTTP/1.1 {status} Fake\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n", body.len());
    socket.write_all(head.as_bytes()).await.is_ok() && socket.write_all(body.as_bytes()).await.is_ok()
}

/// Writes one answer; `false` when the client is gone.
async fn answer(socket: &mut TcpStream, status: u16, body: &str) -> bool {
    let head =
        format!("HTTP/1.1 {status} Fake\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", body.len());
    socket.write_all(head.as_bytes()).await.is_ok() && socket.write_all(body.as_bytes()).await.is_ok()
}

/// `getUpdates`: the queued updates with `update_id >= offset` (a malformed one without an
/// id too), waiting up to `timeout` seconds for one to come.
async fn get_updates(request: &Seen, updates: &Updates) -> String {
    let offset = request.body["offset"].as_i64().unwrap_or(i64::MIN);
    let timeout = Duration::from_secs(request.body["timeout"].as_u64().unwrap_or(0));
    let deadline = Instant::now() + timeout;
    loop {
        let added = updates.added.notified();
        let due: Vec<serde_json::Value> = updates
            .queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|u| u["update_id"].as_i64().is_none_or(|id| id >= offset))
            .cloned()
            .collect();
        if !due.is_empty() || Instant::now() >= deadline {
            let mut handed = updates.handed.lock().unwrap_or_else(|p| p.into_inner());
            for id in due.iter().filter_map(|u| u["update_id"].as_i64()) {
                handed.entry(id).or_insert_with(Instant::now);
            }
            return serde_json::json!({ "ok": true, "result": due }).to_string();
        }
        let _ = tokio::time::timeout_at(deadline, added).await;
    }
}

/// Reads one request from `socket`, `buf` holding bytes read past the previous one.
/// `None` when the client closed the connection between requests.
async fn read_request(socket: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<Option<Seen>> {
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = socket.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let path = lines.next().unwrap_or_default().split(' ').nth(1).unwrap_or_default().to_string();
    let headers: Vec<(&str, &str)> = lines.filter_map(|l| l.split_once(':')).collect();
    let header = |name: &str| headers.iter().find(|(n, _)| n.trim().eq_ignore_ascii_case(name)).map(|(_, v)| v.trim());
    let length: usize = header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    let msg_id: Option<u64> = header("x-gavat-msg-id").and_then(|v| v.parse().ok());
    while buf.len() < head_end + 4 + length {
        let n = socket.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = serde_json::from_slice(&buf[head_end + 4..head_end + 4 + length]).unwrap_or(serde_json::Value::Null);
    buf.drain(..head_end + 4 + length);
    Ok(Some(Seen { at: Instant::now(), path, body, reply: None, answered: None, msg_id }))
}
