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
}

/// The updates a test pushed, and the next `message_id` to give.
#[derive(Default)]
struct Updates {
    queue: Mutex<Vec<serde_json::Value>>,
    added: tokio::sync::Notify,
    next_message_id: AtomicI64,
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
        let behaviour: Arc<Behaviour> = Arc::new(behaviour);
        let updates = Arc::new(Updates::default());
        {
            let (seen, updates) = (seen.clone(), updates.clone());
            tokio::spawn(async move {
                while let Ok((socket, _)) = listener.accept().await {
                    tokio::spawn(serve(socket, seen.clone(), behaviour.clone(), updates.clone()));
                }
            });
        }
        Ok(FakeBotApi { url: format!("http://{addr}"), seen, updates })
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
        let (status, body) = match reply.clone() {
            Reply::Ok => (200, sent(&updates)),
            Reply::RetryAfter(secs) => (
                429,
                format!(
                    r#"{{"ok":false,"error_code":429,"description":"Too Many Requests: retry after {secs}","parameters":{{"retry_after":{secs}}}}}"#
                ),
            ),
            Reply::Blocked => {
                (403, r#"{"ok":false,"error_code":403,"description":"Forbidden: bot was blocked by the user"}"#.into())
            }
            Reply::ChatNotFound => {
                (400, r#"{"ok":false,"error_code":400,"description":"Bad Request: chat not found"}"#.into())
            }
            Reply::ServerErrorOkFalse => {
                (500, r#"{"ok":false,"error_code":500,"description":"Internal Server Error"}"#.into())
            }
            Reply::ServerErrorBare => (500, String::new()),
            Reply::Slow(delay) => {
                tokio::time::sleep(delay).await;
                (200, sent(&updates))
            }
            Reply::MigratedTo(chat) => (
                400,
                format!(
                    r#"{{"ok":false,"error_code":400,"description":"Bad Request: group chat was upgraded to a supergroup chat","parameters":{{"migrate_to_chat_id":{chat}}}}}"#
                ),
            ),
            Reply::BadRequest(description) => {
                (400, format!(r#"{{"ok":false,"error_code":400,"description":"{description}"}}"#))
            }
        };
        let written = answer(&mut socket, status, &body).await;
        {
            let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
            seen[index].reply = Some(reply);
            seen[index].answered = Some(Instant::now());
        }
        if !written {
            return;
        }
    }
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
    let length: usize = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| n.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + 4 + length {
        let n = socket.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = serde_json::from_slice(&buf[head_end + 4..head_end + 4 + length]).unwrap_or(serde_json::Value::Null);
    buf.drain(..head_end + 4 + length);
    Ok(Some(Seen { at: Instant::now(), path, body, reply: None, answered: None }))
}
