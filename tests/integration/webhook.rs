//! The webhook sender against a real HTTP receiver on 127.0.0.1 (a tokio `TcpListener`
//! answering each connection as told): the signature verifies with the secret of the named
//! variable, each status maps to the outcome `docs/transports.md` documents, a receiver
//! that never answers is an unknown outcome after the timeout, and a refused connection is
//! transient.

use std::net::SocketAddr;
use std::time::Duration;

use gavat::domain::{BotId, ContentKind, Destination, GroupId, OutboundMessage, Segment, Timestamp, UserId};
use gavat::transport::{
    DEFAULT_RETRY_AFTER_SECS, Delivered, Sender, TransportConfigError, TransportError, WebhookSecret, WebhookSender,
};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// What the receiver does with one connection, once it has read the whole request.
#[derive(Clone, Debug)]
enum Reply {
    /// Answers with this status and these headers.
    Status(u16, Vec<(&'static str, &'static str)>),
    /// Never answers; keeps the connection open.
    Silent,
    /// Closes the connection without answering.
    HangUp,
}

/// One request as the receiver read it.
#[derive(Debug)]
struct Received {
    /// `POST /path?query HTTP/1.1`.
    request_line: String,
    /// Header names in lowercase.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// Starts a receiver answering the n-th connection with `replies[n]`.
async fn receiver(replies: Vec<Reply>) -> std::io::Result<(SocketAddr, mpsc::UnboundedReceiver<Received>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        for reply in replies {
            let Ok((mut socket, _)) = listener.accept().await else { return };
            let Ok(received) = read_request(&mut socket).await else { return };
            let _ = tx.send(received);
            match reply {
                Reply::Status(status, headers) => {
                    let mut head = format!("HTTP/1.1 {status} Test\r\nContent-Length: 0\r\nConnection: close\r\n");
                    for (name, value) in headers {
                        head.push_str(&format!("{name}: {value}\r\n"));
                    }
                    head.push_str("\r\n");
                    let _ = socket.write_all(head.as_bytes()).await;
                    let _ = socket.shutdown().await;
                }
                Reply::Silent => {
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_secs(30)).await;
                        drop(socket);
                    });
                }
                Reply::HangUp => drop(socket),
            }
        }
    });
    Ok((addr, rx))
}

/// Reads one HTTP/1.1 request with a `Content-Length` body.
async fn read_request(socket: &mut TcpStream) -> std::io::Result<Received> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = socket.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default().to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize =
        headers.iter().find(|(n, _)| n == "content-length").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        let n = socket.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Ok(Received { request_line, headers, body })
}

fn message(id: u64, to: Destination) -> OutboundMessage {
    OutboundMessage {
        id,
        to,
        bot: BotId(1),
        content: ContentKind::Offer,
        segment: Segment::WarmLead,
        at: Timestamp(1_767_260_467),
    }
}

fn sender(addr: SocketAddr, timeout: Duration) -> WebhookSender {
    WebhookSender::with_secret(&format!("http://{addr}/hook"), WebhookSecret::new("s3cret"), timeout)
        .expect("a loopback URL")
}

/// The signing secret: the environment variable is named, and read. `PATH` stands in for a
/// real secret's variable because every test process has it, while setting one would be
/// unsound with the other tests' threads running.
const SECRET_VAR: &str = "PATH";

/// A 200 is a delivery; the body is the documented JSON; `X-Gavat-Signature` verifies
/// (in constant time, as a receiver should check it) with the value of the variable
/// named; the message id rides in `Idempotency-Key`; nothing prints the secret.
#[tokio::test]
async fn a_delivery_is_signed_with_the_named_variables_secret() -> TestResult {
    let (addr, mut requests) = receiver(vec![Reply::Status(200, vec![]), Reply::Status(204, vec![])]).await?;
    let secret = std::env::var(SECRET_VAR)?;
    let webhook = WebhookSender::new(&format!("http://{addr}/hook?token=abc"), SECRET_VAR, Duration::from_secs(5))?;
    assert!(!format!("{webhook:?}").contains(&secret), "Debug never shows the secret");

    assert_eq!(webhook.send(&message(42, Destination::User(UserId(17)))).await, Ok(Delivered));
    let got = requests.recv().await.ok_or("the receiver saw the request")?;
    assert_eq!(got.request_line, "POST /hook?token=abc HTTP/1.1");
    assert_eq!(got.header("content-type"), Some("application/json"));
    assert_eq!(got.header("idempotency-key"), Some("42"));
    let signature = got.header("x-gavat-signature").ok_or("signed")?;
    let hex = signature.strip_prefix("sha256=").ok_or("sha256=<hex>")?;
    let digest: Vec<u8> =
        (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16)).collect::<Result<_, _>>()?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())?;
    mac.update(&got.body);
    mac.verify_slice(&digest).map_err(|_| "the signature verifies with the variable's value")?;
    let mut wrong = Hmac::<Sha256>::new_from_slice(b"another secret")?;
    wrong.update(&got.body);
    assert!(wrong.verify_slice(&digest).is_err());
    let body: serde_json::Value = serde_json::from_slice(&got.body)?;
    assert_eq!(
        body,
        serde_json::json!({
            "id": "42", "to": {"user": 17}, "bot": 1, "content": "offer", "segment": "WARM_LEAD",
            "at": "2026-01-01T09:41:07Z", "at_unix": 1_767_260_467i64,
        })
    );

    assert_eq!(webhook.send(&message(43, Destination::Group(GroupId(3)))).await, Ok(Delivered), "any 2xx");
    let got = requests.recv().await.ok_or("the second request")?;
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&got.body)?["to"], serde_json::json!({"group": 3}));
    Ok(())
}

/// A missing or blank variable is an error naming the variable, never a value.
#[test]
fn a_missing_secret_names_its_variable() {
    let missing = WebhookSender::new("https://example.com/hook", "GAVAT_TEST_NO_SUCH_VARIABLE", Duration::from_secs(1));
    let e = missing.expect_err("no such variable");
    assert!(matches!(e, TransportConfigError::MissingSecret { .. }));
    assert_eq!(
        e.to_string(),
        "environment variable GAVAT_TEST_NO_SUCH_VARIABLE is not set: it must hold the webhook's signing secret"
    );
}

/// Each status the receiver can answer maps to its documented outcome: 2xx delivered;
/// 429 rate limited for its `Retry-After` (30 s without one); 410 blocked; 503 transient
/// (the receiver's promise that it did not act); other 5xx unknown; other 4xx and
/// redirects fatal.
#[tokio::test]
async fn each_status_maps_as_documented() -> TestResult {
    let cases: Vec<(Reply, Result<Delivered, &str>)> = vec![
        (Reply::Status(200, vec![]), Ok(Delivered)),
        (Reply::Status(202, vec![]), Ok(Delivered)),
        (Reply::Status(429, vec![("Retry-After", "7")]), Err("rate_limited 7")),
        (Reply::Status(429, vec![]), Err("rate_limited 30")),
        (Reply::Status(410, vec![]), Err("blocked")),
        (Reply::Status(400, vec![]), Err("fatal")),
        (Reply::Status(401, vec![]), Err("fatal")),
        (Reply::Status(404, vec![]), Err("fatal")),
        (Reply::Status(503, vec![]), Err("transient")),
        (Reply::Status(500, vec![]), Err("unknown")),
        (Reply::Status(502, vec![]), Err("unknown")),
        (Reply::Status(302, vec![("Location", "http://127.0.0.1:1/elsewhere")]), Err("fatal")),
    ];
    assert_eq!(DEFAULT_RETRY_AFTER_SECS, 30);
    let (addr, mut requests) = receiver(cases.iter().map(|(r, _)| r.clone()).collect()).await?;
    let webhook = sender(addr, Duration::from_secs(5));
    for (i, (reply, expected)) in cases.iter().enumerate() {
        let result = webhook.send(&message(i as u64, Destination::User(UserId(1)))).await;
        let seen = match &result {
            Ok(d) => Ok(*d),
            Err(TransportError::RateLimited { retry_after_secs }) => Err(format!("rate_limited {retry_after_secs}")),
            Err(e) => Err(e.kind().as_str().to_string()),
        };
        assert_eq!(seen.as_ref().copied().map_err(String::as_str), *expected, "{reply:?}: {result:?}");
        if let Err(
            TransportError::Fatal { reason }
            | TransportError::Unknown { reason }
            | TransportError::Transient { reason },
        ) = &result
        {
            assert!(
                reason.contains(&format!(
                    "HTTP {}",
                    match reply {
                        Reply::Status(s, _) => *s,
                        _ => 0,
                    }
                )),
                "{reason}"
            );
            assert!(!reason.contains("/hook"), "reasons name the origin, not the path: {reason}");
        }
        requests.recv().await.ok_or("every request reached the receiver")?;
    }
    Ok(())
}

/// A receiver that reads the request and never answers: unknown (it may have acted), no
/// sooner than the timeout and no later than twice it (the bound of a whole exchange).
#[tokio::test]
async fn an_answer_that_never_comes_is_unknown_after_the_timeout() -> TestResult {
    let (addr, mut requests) = receiver(vec![Reply::Silent]).await?;
    let timeout = Duration::from_millis(400);
    let webhook = sender(addr, timeout);
    let started = tokio::time::Instant::now();
    let result = webhook.send(&message(1, Destination::User(UserId(1)))).await;
    let waited = started.elapsed();
    assert!(matches!(&result, Err(TransportError::Unknown { reason }) if reason.contains("no answer")), "{result:?}");
    assert!(result.as_ref().is_err_and(TransportError::counts_against_caps));
    assert!(waited >= timeout && waited < 2 * timeout + Duration::from_secs(2), "waited {waited:?}");
    assert!(requests.recv().await.is_some(), "the request was written before the wait");
    Ok(())
}

/// A receiver that reads the request and hangs up without answering: unknown.
#[tokio::test]
async fn a_connection_dropped_after_sending_is_unknown() -> TestResult {
    let (addr, _requests) = receiver(vec![Reply::HangUp]).await?;
    let result = sender(addr, Duration::from_secs(5)).send(&message(1, Destination::User(UserId(1)))).await;
    assert!(matches!(&result, Err(TransportError::Unknown { .. })), "{result:?}");
    Ok(())
}

/// Nobody listening: the connection is refused, nothing was sent, transient.
#[tokio::test]
async fn a_refused_connection_is_transient() -> TestResult {
    let addr = {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        listener.local_addr()?
    };
    let result = sender(addr, Duration::from_secs(5)).send(&message(1, Destination::User(UserId(1)))).await;
    assert!(
        matches!(&result, Err(TransportError::Transient { reason }) if reason.contains("nothing sent")),
        "{result:?}"
    );
    assert!(result.as_ref().is_err_and(|e| !e.counts_against_caps()));
    Ok(())
}
