//! The Telegram sender against a fake Bot API on 127.0.0.1 (`fake_telegram`): each answer
//! maps to its documented outcome, the fake's own receive log shows Telegram's limits kept
//! under a burst, a 429's `retry_after` is honoured, and no error ever shows a token.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use gavat::contacts::{ContactBook, GroupChat, MemoryContacts};
use gavat::domain::{BotId, ContentKind, Destination, GroupId, OutboundMessage, Segment, Timestamp, UserId};
use gavat::transport::telegram::{
    Bot, BotToken, BuiltinText, Composed, Limits, OPT_OUT_LINE, TelegramOptions, TelegramSender, TextSource,
};
use gavat::transport::{Delivered, Sender, TransportError};

use crate::fake_telegram::{FakeBotApi, Reply};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Whether an error is the one a case expects.
type Expect = fn(&TransportError) -> bool;

const TOKENS: [&str; 2] = ["111111:first-SECRET_token", "222222:second-SECRET_token"];

fn bots() -> Result<Vec<Bot>, Box<dyn std::error::Error>> {
    Ok(vec![
        Bot { name: "news".into(), token: BotToken::new(TOKENS[0])? },
        Bot { name: "deals".into(), token: BotToken::new(TOKENS[1])? },
    ])
}

fn message(id: u64, bot: u32, to: Destination) -> OutboundMessage {
    OutboundMessage {
        id,
        to,
        bot: BotId(bot),
        content: ContentKind::Offer,
        segment: Segment::WarmLead,
        at: Timestamp(0),
    }
}

/// A text naming the message, so the fake's log shows which send arrived when.
#[derive(Debug)]
struct IdText;

impl TextSource for IdText {
    fn compose(&self, message: &OutboundMessage, _bot_name: &str) -> Composed {
        Composed { html: format!("m{}", message.id), buttons: Vec::new() }
    }
}

fn sender(
    url: &str,
    timeout: Duration,
    text: Arc<dyn TextSource>,
) -> Result<TelegramSender, Box<dyn std::error::Error>> {
    let options = TelegramOptions {
        api_base_url: url.to_string(),
        timeout,
        limits: Limits::TELEGRAM,
        max_queue_wait: Duration::from_secs(10),
    };
    Ok(TelegramSender::new(bots()?, options, text, club_book()?)?)
}

/// A contact book knowing group 1 as chat -1001 ("Club").
fn club_book() -> Result<Arc<MemoryContacts>, Box<dyn std::error::Error>> {
    let book = MemoryContacts::new();
    book.save_group_chat(&GroupChat { group: GroupId(1), chat_id: -1001, title: "Club".into() })?;
    Ok(Arc::new(book))
}

/// Fails if `text` holds a token.
fn assert_no_token(text: &str) {
    for token in TOKENS {
        assert!(!text.contains(token), "a token leaked: {text}");
        let secret = token.split(':').nth(1).unwrap_or(token);
        assert!(!text.contains(secret), "a token's secret part leaked: {text}");
    }
}

/// Each scripted answer maps as docs/telegram.md says: 200 delivered (a post goes to the
/// group's chat id from the contact book); 429 rate limited for its `retry_after`; 403
/// blocked; 400 chat not found fatal; another 400 `ok:false` fatal; 500 with an `ok:false`
/// body transient; a bare 500 and a reply past the timeout unknown; no server transient. The
/// request is the documented `sendMessage`; no error text nor the sender's Debug holds a
/// token.
#[tokio::test]
async fn each_bot_api_answer_maps_as_documented() -> TestResult {
    let fake = FakeBotApi::start(|seen| match seen.chat_id() {
        2 => Reply::RetryAfter(7),
        3 => Reply::Blocked,
        4 => Reply::ChatNotFound,
        5 => Reply::ServerErrorOkFalse,
        6 => Reply::ServerErrorBare,
        7 => Reply::Slow(Duration::from_secs(5)),
        8 => Reply::BadRequest("Bad Request: can't parse entities"),
        _ => Reply::Ok,
    })
    .await?;
    let telegram = sender(&fake.url, Duration::from_secs(2), Arc::new(BuiltinText))?;
    assert_no_token(&format!("{telegram:?}"));

    let to = |chat: u64| Destination::User(UserId(chat));
    assert_eq!(telegram.send(&message(1, 0, to(1))).await, Ok(Delivered));
    let first = fake.seen().pop().ok_or("the fake saw the request")?;
    assert_eq!(first.path, format!("/bot{}/sendMessage", TOKENS[0]));
    assert_eq!(first.body["parse_mode"], "HTML");
    assert_eq!(first.chat_id(), 1);
    assert!(first.text().starts_with("<b>news</b>: ") && first.text().ends_with(OPT_OUT_LINE), "{}", first.text());
    assert_eq!(telegram.send(&message(2, 1, Destination::Group(GroupId(1)))).await, Ok(Delivered), "a group post");
    let post = fake.seen().pop().ok_or("the post")?;
    assert_eq!((post.path.as_str(), post.chat()), (format!("/bot{}/sendMessage", TOKENS[1]).as_str(), -1001));

    let mut errors = Vec::new();
    // Bot 1 takes the 429, whose freeze would otherwise hold the cases after it.
    let limited = telegram.send(&message(3, 1, to(2))).await;
    assert_eq!(limited, Err(TransportError::RateLimited { retry_after_secs: 7 }));
    assert_eq!(telegram.send(&message(4, 0, to(3))).await, Err(TransportError::Blocked));
    let cases: [(u64, Expect); 5] = [
        (4, |e| matches!(e, TransportError::Fatal { reason } if reason.contains("chat not found"))),
        (8, |e| matches!(e, TransportError::Fatal { reason } if reason.contains("can't parse entities"))),
        (5, |e| matches!(e, TransportError::Transient { .. })),
        (6, |e| matches!(e, TransportError::Unknown { .. })),
        (7, |e| matches!(e, TransportError::Unknown { .. })),
    ];
    for (chat, expected) in cases {
        let got = telegram.send(&message(10 + chat, 0, to(chat))).await;
        let e = got.err().ok_or(format!("chat {chat}: not delivered"))?;
        assert!(expected(&e), "chat {chat}: {e:?}");
        errors.push(e);
    }
    assert_eq!(
        telegram.send(&message(20, 9, to(1))).await.map_err(|e| e.kind()),
        Err(gavat::transport::FailureKind::Fatal),
        "no bot 9"
    );

    // Nothing listens on a port just freed: not connected, nothing written.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let nowhere = sender(&format!("http://127.0.0.1:{port}"), Duration::from_secs(2), Arc::new(BuiltinText))?;
    let refused = nowhere.send(&message(30, 0, to(1))).await.err().ok_or("refused")?;
    assert!(matches!(refused, TransportError::Transient { .. }), "{refused:?}");
    errors.push(refused);

    for e in &errors {
        assert_no_token(&e.to_string());
        assert_no_token(&format!("{e:?}"));
    }
    Ok(())
}

/// A burst of 300 sends through two bots into 60 private chats: the fake's receive log shows
/// at most 30 a second per bot (any 31 consecutive arrivals span at least a second, less a
/// stated 400 ms allowance for scheduling jitter between the sender's clock and the fake's
/// reading) and at most one a second per chat (the same allowance), each chat's messages in
/// the order they were sent, and the burst taking the ~5 s those limits demand.
#[tokio::test]
async fn a_burst_stays_within_telegrams_limits() -> TestResult {
    const JITTER: Duration = Duration::from_millis(400);
    let fake = FakeBotApi::start(|_| Reply::Ok).await?;
    let telegram = sender(&fake.url, Duration::from_secs(5), Arc::new(IdText))?;
    let messages: Vec<OutboundMessage> =
        (0..300u64).map(|id| message(id, (id % 2) as u32, Destination::User(UserId(id % 60)))).collect();
    let started = tokio::time::Instant::now();
    let results = join_all(messages.iter().map(|m| telegram.send(m))).await;
    let took = started.elapsed();
    assert!(results.iter().all(|r| *r == Ok(Delivered)), "{:?}", results.iter().find(|r| r.is_err()));

    let seen = fake.seen();
    assert_eq!(seen.len(), 300);
    let mut per_bot: BTreeMap<&str, Vec<tokio::time::Instant>> = BTreeMap::new();
    let mut per_chat: BTreeMap<(&str, u64), Vec<(tokio::time::Instant, u64)>> = BTreeMap::new();
    for s in &seen {
        per_bot.entry(s.path.as_str()).or_default().push(s.at);
        let id: u64 = s.text().trim_start_matches('m').parse()?;
        per_chat.entry((s.path.as_str(), s.chat_id())).or_default().push((s.at, id));
    }
    assert_eq!(per_bot.len(), 2);
    for (bot, arrivals) in &per_bot {
        assert_eq!(arrivals.len(), 150);
        for w in arrivals.windows(31) {
            assert!(w[30] - w[0] >= Duration::from_secs(1) - JITTER, "bot {bot}: 31 arrivals in {:?}", w[30] - w[0]);
        }
    }
    assert_eq!(per_chat.len(), 60);
    for ((_, chat), arrivals) in &per_chat {
        assert_eq!(arrivals.len(), 5);
        for w in arrivals.windows(2) {
            assert!(w[1].0 - w[0].0 >= Duration::from_secs(1) - JITTER, "chat {chat}: {:?} apart", w[1].0 - w[0].0);
            assert!(w[0].1 < w[1].1, "chat {chat}: message {} overtook {}", w[1].1, w[0].1);
        }
    }
    // 150 per bot at 30/s: the last leaves 149/30 s after the first.
    assert!(took >= Duration::from_millis(4900), "the limits held the burst back: {took:?}");
    assert!(took < Duration::from_secs(10), "and not much longer: {took:?}");
    Ok(())
}

/// A 429 with `retry_after: 2` freezes that bot: a send asked for just after it reaches the
/// fake no sooner than 2 s after the 429 was answered; another bot is not held up.
#[tokio::test]
async fn retry_after_freezes_the_bot() -> TestResult {
    let fake = FakeBotApi::start(|seen| if seen.text() == "m1" { Reply::RetryAfter(2) } else { Reply::Ok }).await?;
    let telegram = sender(&fake.url, Duration::from_secs(5), Arc::new(IdText))?;
    let limited = telegram.send(&message(1, 0, Destination::User(UserId(1)))).await;
    assert_eq!(limited, Err(TransportError::RateLimited { retry_after_secs: 2 }));
    let held = telegram.send(&message(2, 0, Destination::User(UserId(2))));
    let other = telegram.send(&message(3, 1, Destination::User(UserId(2))));
    let (held, other) = futures::join!(held, other);
    assert_eq!((held, other), (Ok(Delivered), Ok(Delivered)));

    let seen = fake.seen();
    let at = |id: &str| seen.iter().find(|s| s.text() == id).map(|s| s.at).ok_or(format!("{id} arrived"));
    let (limited_at, held_at, other_at) = (at("m1")?, at("m2")?, at("m3")?);
    assert!(held_at - limited_at >= Duration::from_secs(2), "bot 0 sent {:?} after the 429", held_at - limited_at);
    assert!(other_at - limited_at < Duration::from_secs(1), "bot 1 was not frozen: {:?}", other_at - limited_at);
    // Beyond the queue's wait, a send into a frozen bot is refused at once, not sent.
    let short = TelegramSender::new(
        bots()?,
        TelegramOptions {
            api_base_url: fake.url.clone(),
            max_queue_wait: Duration::from_millis(500),
            ..Default::default()
        },
        Arc::new(IdText),
        Arc::new(MemoryContacts::new()),
    )?;
    let fake_before = fake.seen().len();
    assert_eq!(
        short.send(&message(1, 0, Destination::User(UserId(1)))).await,
        Err(TransportError::RateLimited { retry_after_secs: 2 })
    );
    let refused = short.send(&message(4, 0, Destination::User(UserId(4)))).await;
    assert!(matches!(refused, Err(TransportError::RateLimited { retry_after_secs: 1 | 2 })), "{refused:?}");
    assert_eq!(fake.seen().len(), fake_before + 1, "the refused send never reached the fake");
    Ok(())
}

/// Groups: a post goes to the chat id the contact book holds; a group without one is
/// `Fatal` naming the group, and nothing is sent; when Telegram answers that the group
/// became a supergroup, its new chat id is saved in the book and the post goes there at
/// once — the old id is asked once, the new one once, and the next post goes straight to
/// the new id.
#[tokio::test]
async fn a_migrated_group_is_posted_to_at_its_new_id() -> TestResult {
    const OLD: i64 = -1001;
    const NEW: i64 = -1_000_000_001_001;
    let fake = FakeBotApi::start(|seen| if seen.chat() == OLD { Reply::MigratedTo(NEW) } else { Reply::Ok }).await?;
    let book = club_book()?;
    let telegram = TelegramSender::new(
        bots()?,
        TelegramOptions { api_base_url: fake.url.clone(), ..Default::default() },
        Arc::new(IdText),
        book.clone(),
    )?;
    let unknown = telegram.send(&message(1, 0, Destination::Group(GroupId(2)))).await;
    assert!(matches!(&unknown, Err(TransportError::Fatal { reason }) if reason.contains("group 2")), "{unknown:?}");
    assert!(fake.seen().is_empty(), "nothing sent to a group without a chat id");

    assert_eq!(telegram.send(&message(2, 0, Destination::Group(GroupId(1)))).await, Ok(Delivered));
    assert_eq!(book.group_chat(GroupId(1))?.map(|g| g.chat_id), Some(NEW), "the new id is kept");
    assert_eq!(book.group_of_chat(NEW)?.map(|g| (g.group, g.title)), Some((GroupId(1), "Club".to_string())));
    assert_eq!(telegram.send(&message(3, 0, Destination::Group(GroupId(1)))).await, Ok(Delivered));
    let chats: Vec<(i64, String)> = fake.seen().iter().map(|s| (s.chat(), s.text().to_string())).collect();
    assert_eq!(chats, [(OLD, "m2".into()), (NEW, "m2".into()), (NEW, "m3".into())]);
    Ok(())
}

/// A bot writes only to users who started it: a direct message goes through the bot the
/// user's contact names, whatever bot the engine picked; without a contact, the engine's.
#[tokio::test]
async fn a_direct_message_goes_through_the_bot_the_user_started() -> TestResult {
    let fake = FakeBotApi::start(|_| Reply::Ok).await?;
    let book = club_book()?;
    let mut contact = gavat::contacts::Contact::new(UserId(42), "Ayşe");
    contact.bot = gavat::domain::BotId(1);
    book.save_contact(&contact)?;
    let options = TelegramOptions {
        api_base_url: fake.url.clone(),
        timeout: Duration::from_secs(2),
        limits: Limits::TELEGRAM,
        max_queue_wait: Duration::from_secs(10),
    };
    let telegram = TelegramSender::new(bots()?, options, Arc::new(BuiltinText), book)?;
    assert_eq!(telegram.send(&message(1, 0, Destination::User(UserId(42)))).await, Ok(Delivered));
    assert_eq!(telegram.send(&message(2, 0, Destination::User(UserId(43)))).await, Ok(Delivered));
    let paths: Vec<String> = fake.seen().into_iter().map(|s| s.path).collect();
    assert_eq!(
        paths,
        [format!("/bot{}/sendMessage", TOKENS[1]), format!("/bot{}/sendMessage", TOKENS[0])],
        "user 42 through the bot they started, user 43 through the engine's choice"
    );
    Ok(())
}
