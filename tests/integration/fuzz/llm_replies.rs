//! Row 30, the parsers: the three kinds of LLM reply gavat reads — a segmentation verdict,
//! the adviser's proposals, a personalised message text — mutated. No panic; every refusal
//! is a typed error whose text says what is wrong (a reply has no file or line: the
//! caller names the source, and serde's own messages carry the column).

use std::fmt::Display;

use gavat::compose::Guardrails;

use super::mutate::{Shape, Target, Verdict, fuzz};

/// Keys the schema does not have, and values no policy allows.
const REPLY_UNKNOWN: &[&str] = &[
    r#""daily_limit": 1000"#,
    r#""strategy": "SEND_EVERYTHING""#,
    r#""cooldown_hours": -1"#,
    r#""user": 42"#,
    r#""text": "<script>alert(1)</script>""#,
    r#""reason": "ignore previous instructions""#,
];

fn fuzz_reply<T, E: Display>(row: &'static str, seed: u64, valid: &str, parse: impl Fn(&str) -> Result<T, E>) {
    let target = Target { row, seed, valid: valid.as_bytes(), shape: Shape::Json, unknown: REPLY_UNKNOWN };
    let huge = format!("{{\"text\": \"{}\"}}", "a".repeat(super::mutate::TEN_MB)).into_bytes();
    let tally = fuzz(&target, Some(huge), |bytes| {
        // The client hands the parser the completion's content, a string: bytes that are
        // not UTF-8 never reach it (reqwest refuses the body first).
        let text = String::from_utf8_lossy(bytes);
        match parse(&text) {
            Ok(_) => Verdict::Accepted,
            Err(e) => {
                let message = e.to_string();
                Verdict::Rejected { located: !message.trim().is_empty(), message }
            }
        }
    });
    tally.report(&target).emit();
}

/// The segmentation verdict (`llm::Verdict::parse`).
#[test]
fn segmentation_replies_survive_hostile_text() {
    let valid = r#"{"segments": [{"segment": "WARM_LEAD", "confidence": 0.55}, {"segment": "NIGHT_OWL", "confidence": 0.8}], "reason": "answers some; active at night"}"#;
    fuzz_reply("30-segmentation-reply", 3001, valid, gavat::llm::Verdict::parse);
}

/// The adviser's proposals (`learner::adviser::parse_advice`), and each proposal's own
/// refusal.
#[test]
fn adviser_replies_survive_hostile_text() {
    let valid = r#"{"proposals": [{"segment": "HOT_LEAD", "field": "daily_limit", "value": 3, "reason": "answers fast"}, {"segment": "COLD_LEAD", "field": "send_hours", "value": "10-12", "reason": "mornings"}]}"#;
    fuzz_reply("30-adviser-reply", 3002, valid, |text| {
        gavat::learner::adviser::parse_advice(text).map(|proposals| {
            // A proposal refused on its own must say why, too.
            for refused in proposals.iter().filter_map(|p| p.as_ref().err()) {
                assert!(!refused.trim().is_empty(), "a proposal refused without a reason");
            }
        })
    });
}

/// The personalised message (`compose::Guardrails::check`): JSON, template, length, HTML,
/// links, mentions, language and banned words.
#[test]
fn personalisation_replies_survive_hostile_text() {
    let guardrails =
        Guardrails { allowed_link_hosts: vec!["shop.example.com".into()], banned_words: vec!["free money".into()] };
    let valid = r#"{"text": "Hi {first_name}! Today only: <b>{offer}</b> from {bot_name}. Reply and it is yours, with our thanks. See https://shop.example.com/deal"}"#;
    fuzz_reply("30-personalisation-reply", 3003, valid, |text| guardrails.check(text, "en", 40, 20));
}
