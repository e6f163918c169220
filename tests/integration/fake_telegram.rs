//! A fake Telegram Bot API on 127.0.0.1 for the tests: a tokio `TcpListener` speaking
//! hand-written HTTP/1.1 (keep-alive, `Content-Length` bodies), answering each request as a
//! closure says and recording every request with the instant it arrived, what it answered
//! and when (on tokio's clock, the fake's own), so tests measure rates where Telegram would.

use std::net::SocketAddr;
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
}

impl FakeBotApi {
    /// Starts a fake answering each request with `behaviour(request)`.
    pub async fn start(behaviour: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> std::io::Result<FakeBotApi> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr: SocketAddr = listener.local_addr()?;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let behaviour: Arc<Behaviour> = Arc::new(behaviour);
        {
            let seen = seen.clone();
            tokio::spawn(async move {
                while let Ok((socket, _)) = listener.accept().await {
                    tokio::spawn(serve(socket, seen.clone(), behaviour.clone()));
                }
            });
        }
        Ok(FakeBotApi { url: format!("http://{addr}"), seen })
    }

    /// Every request so far, in arrival order.
    pub fn seen(&self) -> Vec<Seen> {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
        seen.sort_by_key(|s| s.at);
        seen
    }
}

/// Serves one keep-alive connection until the client closes it.
async fn serve(mut socket: TcpStream, seen: Arc<Mutex<Vec<Seen>>>, behaviour: Arc<Behaviour>) {
    let mut buf = Vec::new();
    while let Ok(Some(request)) = read_request(&mut socket, &mut buf).await {
        let index = {
            let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
            seen.push(request.clone());
            seen.len() - 1
        };
        let reply = behaviour(&request);
        let (status, body) = match reply.clone() {
            Reply::Ok => (200, r#"{"ok":true,"result":{"message_id":1}}"#.to_string()),
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
                (200, r#"{"ok":true,"result":{"message_id":1}}"#.into())
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
        let head = format!(
            "HTTP/1.1 {status} Fake\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let written =
            socket.write_all(head.as_bytes()).await.is_ok() && socket.write_all(body.as_bytes()).await.is_ok();
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
