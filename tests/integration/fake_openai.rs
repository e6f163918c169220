//! A small OpenAI-compatible chat-completions server on 127.0.0.1 for the tests: each
//! request is answered by a closure (a reply text, an HTTP status, or a delay first), and
//! every request is recorded so tests can count calls and read the prompts sent.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How the server answers one request.
#[derive(Clone, Debug)]
pub enum Reply {
    /// A chat completion whose message content is this text.
    Content(String),
    /// A chat completion with a refusal.
    Refusal(String),
    /// A chat completion cut at the token limit (`finish_reason: "length"`) with this text.
    CutOff(String),
    /// An error status with an OpenAI-style error body.
    Status(u16),
    /// A 429 with a `Retry-After` of this many seconds.
    RetryAfter(f64),
    /// Wait, then answer.
    After(Duration, Box<Reply>),
}

/// One request as the server saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    /// The `Authorization` header.
    pub authorization: Option<String>,
    /// The JSON body.
    pub body: serde_json::Value,
}

type Behaviour = dyn Fn(usize, &serde_json::Value) -> Reply + Send + Sync;

/// The running server; stops when dropped.
pub struct FakeOpenAi {
    /// Base URL, e.g. `http://127.0.0.1:40123/v1`.
    pub url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    addr: std::net::SocketAddr,
}

impl FakeOpenAi {
    /// Starts a server answering request number `n` (from 0) with `behaviour(n, body)`.
    pub fn start(behaviour: impl Fn(usize, &serde_json::Value) -> Reply + Send + Sync + 'static) -> FakeOpenAi {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let behaviour: Arc<Behaviour> = Arc::new(behaviour);
        {
            let (seen, stop) = (seen.clone(), stop.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let (seen, behaviour) = (seen.clone(), behaviour.clone());
                    std::thread::spawn(move || serve(stream, &seen, &*behaviour));
                }
            });
        }
        FakeOpenAi { url: format!("http://{addr}/v1"), seen, stop, addr }
    }

    /// Always answers with `content`.
    pub fn always(content: &str) -> FakeOpenAi {
        let content = content.to_string();
        FakeOpenAi::start(move |_, _| Reply::Content(content.clone()))
    }

    /// Requests received so far.
    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// How many requests arrived.
    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

impl Drop for FakeOpenAi {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

fn serve(stream: TcpStream, seen: &Mutex<Vec<Seen>>, behaviour: &Behaviour) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut content_length = 0usize;
    let mut authorization = None;
    let mut line = String::new();
    let mut first = true;
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if first {
            first = false;
            continue;
        }
        if let Some((name, value)) = header.split_once(':') {
            match name.trim().to_ascii_lowercase().as_str() {
                "content-length" => content_length = value.trim().parse().unwrap_or(0),
                "authorization" => authorization = Some(value.trim().to_string()),
                _ => {}
            }
        }
    }
    let mut body = vec![0u8; content_length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    let n = {
        let mut seen = seen.lock().unwrap();
        seen.push(Seen { authorization, body: body.clone() });
        seen.len() - 1
    };
    let mut reply = behaviour(n, &body);
    while let Reply::After(wait, then) = reply {
        std::thread::sleep(wait);
        reply = *then;
    }
    let mut extra = String::new();
    if let Reply::RetryAfter(secs) = reply {
        extra = format!("retry-after: {secs}\r\n");
        reply = Reply::Status(429);
    }
    let (status, payload) = match reply {
        Reply::Content(content) => (200, completion(serde_json::json!({"role": "assistant", "content": content}))),
        Reply::CutOff(content) => {
            let mut payload = completion(serde_json::json!({"role": "assistant", "content": content}));
            payload["choices"][0]["finish_reason"] = "length".into();
            (200, payload)
        }
        Reply::Refusal(text) => {
            (200, completion(serde_json::json!({"role": "assistant", "content": null, "refusal": text})))
        }
        Reply::Status(code) => (
            code,
            serde_json::json!({"error": {"message": format!("fake error {code}"), "type": "fake", "param": null, "code": null}}),
        ),
        Reply::After(..) | Reply::RetryAfter(_) => unreachable!(),
    };
    let text = payload.to_string();
    let mut stream = stream;
    let _ = write!(
        stream,
        "HTTP/1.1 {status} FAKE\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{extra}connection: close\r\n\r\n{text}",
        text.len()
    );
    let _ = stream.flush();
}

fn completion(message: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 0,
        "model": "fake-model",
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 90, "completion_tokens": 30, "total_tokens": 120}
    })
}
