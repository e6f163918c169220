//! Telegram updates (`getUpdates` results and webhook bodies), mutated: no panic in
//! `parse_update` or in reading what it means (`read_update`); every refusal names the
//! field at fault, and never echoes the user's name or text (RELIABILITY.md row 35).

use gavat::transport::telegram::{parse_update, read_update};

use super::mutate::{Shape, Target, Verdict, fuzz};

/// The user's words and name in the valid updates: an error must never show them.
const TEXT: &str = "canary words of Ayşe";
const NAME: &str = "AyşeCanary";

/// Keys Telegram may add, or a hostile sender may.
const UPDATE_UNKNOWN: &[&str] = &[
    r#""edited_message": {"message_id": 1}"#,
    r#""update_id": -1"#,
    r#""message": null"#,
    r#""poll": {"id": "x"}"#,
    r#""from": {"id": -5, "first_name": 7}"#,
    r#""chat": {"id": 1e400, "type": "private"}"#,
];

/// A private reply, a button press and a block, one per case's base.
fn valid_update() -> String {
    serde_json::json!({
        "update_id": 912_345_678,
        "message": {
            "message_id": 55,
            "from": {"id": 4242, "is_bot": false, "first_name": NAME, "username": "ayse_c", "language_code": "tr"},
            "chat": {"id": 4242, "type": "private", "title": null},
            "date": 1_800_000_000,
            "text": TEXT,
            "reply_to_message": {"message_id": 54}
        },
        "callback_query": {"id": "cb1", "from": {"id": 4242, "first_name": NAME}, "data": "unsubscribe"},
        "my_chat_member": {
            "chat": {"id": 4242, "type": "private"},
            "from": {"id": 4242, "first_name": NAME},
            "date": 1_800_000_001,
            "old_chat_member": {"status": "member", "user": {"id": 1, "is_bot": true, "first_name": "bot"}},
            "new_chat_member": {"status": "kicked", "user": {"id": 1, "is_bot": true, "first_name": "bot"}}
        }
    })
    .to_string()
}

/// Mutated updates never panic; refusals name their field and not the user's words.
#[test]
fn telegram_updates_survive_hostile_json() {
    let valid = valid_update();
    let target = Target {
        row: "28-telegram-update",
        seed: 2805,
        valid: valid.as_bytes(),
        shape: Shape::Json,
        unknown: UPDATE_UNKNOWN,
    };
    let huge = format!(
        "{{\"update_id\": 1, \"message\": {{\"message_id\": 1, \"chat\": {{\"id\": 1, \"type\": \"private\"}}, \"date\": 1, \"text\": \"{}\"}}}}",
        "x".repeat(super::mutate::TEN_MB)
    );
    let mut echoed = 0u64;
    let tally = fuzz(&target, Some(huge.into_bytes()), |bytes| match parse_update(bytes) {
        Ok(update) => {
            let _ = read_update(&update);
            Verdict::Accepted
        }
        Err(e) => {
            let message = e.to_string();
            if message.contains(TEXT) || message.contains(NAME) {
                echoed += 1;
                return Verdict::Broken(format!("the error shows the user's words: {message}"));
            }
            Verdict::Rejected { located: message.contains("field "), message }
        }
    });
    let mut report = tally.report(&target);
    report.figure("errors showing the user's name or text", echoed, tally.rejections + echoed);
    report.emit();
}
