//! What a Bot API answer — or a failed exchange — means for the engine, as issue 13 and
//! `docs/telegram.md` set out. A pure function of the status and body, so every row of the
//! table is unit-tested here.
//!
//! | Answer | Outcome |
//! |---|---|
//! | 2xx with `{"ok": true}` | delivered |
//! | 429 with `parameters.retry_after` (or `error_code` 429) | `RateLimited` for that long (30 s if unsaid); the bot is frozen |
//! | 403, `ok:false`, blocked / deactivated / kicked | `Blocked` |
//! | 400, `ok:false`, "chat not found" | `Fatal` |
//! | `ok:false` with `parameters.migrate_to_chat_id` | [`Answer::MovedTo`]: the sender saves the group's new chat id and resends there |
//! | any other `ok:false` body with a 4xx status | `Fatal`: not processed, and the same request would get the same answer |
//! | any other `ok:false` body, any other status (5xx) | `Transient`: the Bot API did not process it |
//! | 5xx without an `ok:false` body, any other status or unreadable body | `Unknown` |
//! | connection not made (nothing written) | `Transient` |
//! | timeout or reset after the request was written | `Unknown` |

use serde_json::Value;

use crate::transport::{DEFAULT_RETRY_AFTER_SECS, Delivered, TransportError};

/// Longest description kept from a reply, in characters.
const MAX_DESCRIPTION: usize = 200;

/// What an HTTP answer from the Bot API means to the sender: an outcome, or a group chat
/// that moved (the message was not processed; it may go to the new chat at once).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    /// The outcome of the send.
    Final(Result<Delivered, TransportError>),
    /// `ok:false` with `parameters.migrate_to_chat_id`: the group is now this chat.
    MovedTo {
        /// The new chat id.
        chat_id: i64,
    },
}

/// What an HTTP answer means, a migration told apart (see [`Answer`]).
pub(crate) fn answer(status: u16, body: &[u8], bot: &str) -> Answer {
    let reply: Option<Value> = serde_json::from_slice(body).ok();
    let refused = reply.as_ref().and_then(|r| r.get("ok")).and_then(Value::as_bool) == Some(false);
    let moved = reply
        .as_ref()
        .and_then(|r| r.get("parameters"))
        .and_then(|p| p.get("migrate_to_chat_id"))
        .and_then(Value::as_i64);
    match moved {
        Some(chat_id) if refused && status != 429 => Answer::MovedTo { chat_id },
        _ => Answer::Final(from_reply(status, body, bot)),
    }
}

/// What an HTTP answer from the Bot API means. `bot` names the bot (never its token).
pub(crate) fn from_reply(status: u16, body: &[u8], bot: &str) -> Result<Delivered, TransportError> {
    // Read leniently: a field of an unexpected type is as if absent, never a panic.
    let reply: Option<Value> = serde_json::from_slice(body).ok();
    let said = |what: &str| format!("bot {bot}: HTTP {status}: {what}");
    let Some(ok) = reply.as_ref().and_then(|r| r.get("ok")).and_then(Value::as_bool) else {
        return Err(TransportError::Unknown {
            reason: said(if (500..=599).contains(&status) {
                "the Bot API failed without saying whether it sent the message"
            } else {
                "not a Bot API answer; the message may have been sent"
            }),
        });
    };
    let reply = reply.unwrap_or(Value::Null);
    if ok {
        return if (200..=299).contains(&status) {
            Ok(Delivered)
        } else {
            Err(TransportError::Unknown { reason: said("`ok: true` with an error status") })
        };
    }
    let description: String = reply
        .get("description")
        .and_then(Value::as_str)
        .unwrap_or("no description")
        .chars()
        .take(MAX_DESCRIPTION)
        .collect();
    let error_code = reply.get("error_code").and_then(Value::as_i64);
    let parameter = |name: &str| reply.get("parameters").and_then(|p| p.get(name));
    let lower = description.to_ascii_lowercase();
    if status == 429 || error_code == Some(429) {
        let secs = parameter("retry_after").and_then(Value::as_u64).unwrap_or(u64::from(DEFAULT_RETRY_AFTER_SECS));
        return Err(TransportError::RateLimited { retry_after_secs: u32::try_from(secs).unwrap_or(u32::MAX) });
    }
    if status == 403 && ["blocked", "deactivated", "kicked"].iter().any(|word| lower.contains(word)) {
        return Err(TransportError::Blocked);
    }
    if status == 400 && lower.contains("chat not found") {
        return Err(TransportError::Fatal { reason: said(&description) });
    }
    // Refused by the Bot API itself: not processed. A 4xx says the request is wrong for
    // this chat or bot (an invalid token, "bot can't initiate conversation", entities that
    // do not parse): sending it again would get the same answer, so it is not retried. A
    // 5xx with an `ok:false` body is the Bot API failing on its side: worth a retry.
    if (400..=499).contains(&status) {
        return Err(TransportError::Fatal { reason: said(&format!("refused, not processed: {description}")) });
    }
    Err(TransportError::Transient { reason: said(&format!("not processed: {description}")) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(status: u16, body: &str) -> Result<Delivered, TransportError> {
        from_reply(status, body.as_bytes(), "news")
    }

    /// Every row of the table.
    #[test]
    fn each_answer_maps_as_documented() {
        assert_eq!(map(200, r#"{"ok":true,"result":{"message_id":1}}"#), Ok(Delivered));
        assert_eq!(
            map(
                429,
                r#"{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 7","parameters":{"retry_after":7}}"#
            ),
            Err(TransportError::RateLimited { retry_after_secs: 7 })
        );
        assert_eq!(
            map(429, r#"{"ok":false,"description":"Too Many Requests"}"#),
            Err(TransportError::RateLimited { retry_after_secs: DEFAULT_RETRY_AFTER_SECS })
        );
        for description in [
            "Forbidden: bot was blocked by the user",
            "Forbidden: user is deactivated",
            "Forbidden: bot was kicked from the group chat",
        ] {
            let body = format!(r#"{{"ok":false,"error_code":403,"description":"{description}"}}"#);
            assert_eq!(map(403, &body), Err(TransportError::Blocked), "{description}");
        }
        let not_found = map(400, r#"{"ok":false,"error_code":400,"description":"Bad Request: chat not found"}"#);
        assert!(matches!(not_found, Err(TransportError::Fatal { ref reason }) if reason.contains("chat not found")));
        assert_eq!(
            answer(400, br#"{"ok":false,"description":"Bad Request: group chat was upgraded to a supergroup chat","parameters":{"migrate_to_chat_id":-1001}}"#, "news"),
            Answer::MovedTo { chat_id: -1001 }
        );
        assert_eq!(answer(200, br#"{"ok":true}"#, "news"), Answer::Final(Ok(Delivered)));
        for status in [500, 502] {
            let body = r#"{"ok":false,"error_code":500,"description":"Internal Server Error"}"#;
            assert!(matches!(map(status, body), Err(TransportError::Transient { .. })), "ok:false with {status}");
        }
        for (status, description) in [
            (400, "Bad Request: can't parse entities"),
            (401, "Unauthorized"),
            (403, "Forbidden: bot can't initiate conversation with a user"),
            (404, "Not Found"),
        ] {
            let body = format!(r#"{{"ok":false,"error_code":{status},"description":"{description}"}}"#);
            assert!(matches!(map(status, &body), Err(TransportError::Fatal { .. })), "ok:false with {status}");
        }
        assert!(matches!(map(500, ""), Err(TransportError::Unknown { .. })));
        assert!(matches!(map(502, "<html>Bad Gateway</html>"), Err(TransportError::Unknown { .. })));
        assert!(matches!(map(200, "not json"), Err(TransportError::Unknown { .. })));
        assert!(matches!(map(500, r#"{"ok":true}"#), Err(TransportError::Unknown { .. })));
    }

    /// A huge `retry_after` or description does not panic; the description is cut short.
    #[test]
    fn hostile_replies_do_not_panic() {
        let huge = map(429, r#"{"ok":false,"parameters":{"retry_after":99999999999}}"#);
        assert_eq!(huge, Err(TransportError::RateLimited { retry_after_secs: u32::MAX }));
        let long = format!(r#"{{"ok":false,"description":"{}"}}"#, "x".repeat(10_000));
        let Err(TransportError::Transient { reason }) = map(500, &long) else { panic!("transient") };
        assert!(reason.len() < 400, "{}", reason.len());
        assert!(matches!(
            map(503, r#"{"ok":false,"parameters":{"retry_after":-1}}"#),
            Err(TransportError::Transient { .. })
        ));
        assert!(matches!(
            answer(400, br#"{"ok":false,"parameters":{"migrate_to_chat_id":"x"}}"#, "news"),
            Answer::Final(Err(TransportError::Fatal { .. }))
        ));
    }
}
