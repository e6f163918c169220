//! `gavat simulate --llm-adviser`: the learner consults a fake OpenAI-compatible server on
//! 127.0.0.1. A sound proposal reaches its simulation (and is applied only if it wins); a
//! malformed reply, a cap lifted past the hard maximum and a proposal to reach opted-out
//! users are refused and recorded; the model sees aggregates only; the key never shows.

use super::common::gavat_with_env;
use super::fake_openai::{FakeOpenAi, Reply};

const KEY: &str = "sk-adviser-test-secret";

/// Four proposals: one sound, one past the hard maximum, one about opted-out users, one
/// for a segment that does not exist.
const ADVICE: &str = r#"{"proposals": [
  {"segment": "ENGAGED", "field": "send_hours", "value": "18-21", "reason": "evening sends answer best"},
  {"segment": "HOT_LEAD", "field": "daily_limit", "value": 4, "reason": "hot leads can take more"},
  {"segment": "COLD_LEAD", "field": "include_opted_out", "value": true, "reason": "win back churned users"},
  {"segment": "VIP", "field": "daily_limit", "value": 2, "reason": "x"}
]}"#;

fn run(server: &FakeOpenAi, extra: &[&str]) -> (serde_json::Value, String) {
    let mut args = vec![
        "simulate",
        "--json",
        "--users",
        "1200",
        "--days",
        "3",
        "--seed",
        "4",
        "--llm-adviser",
        "--llm-base-url",
        &server.url,
        "--llm-retries",
        "0",
    ];
    args.extend_from_slice(extra);
    let out = gavat_with_env(&args, &[("OPENAI_API_KEY", KEY)]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(!stdout.contains(KEY) && !stderr.contains(KEY), "the key never shows");
    (serde_json::from_str(&stdout).unwrap(), stderr)
}

fn llm_changes(report: &serde_json::Value) -> Vec<serde_json::Value> {
    report["strategy_changes"].as_array().unwrap().iter().filter(|c| c["source"] == "llm").cloned().collect()
}

#[test]
fn only_a_sound_proposal_that_wins_its_simulation_may_pass() {
    // Every other reply is prose around the JSON: refused whole.
    let server = FakeOpenAi::start(|n, _| {
        if n % 2 == 1 { Reply::Content(format!("Here are my ideas: {ADVICE}")) } else { Reply::Content(ADVICE.into()) }
    });
    let (report, _) = run(&server, &[]);
    let adviser = &report["adviser"];
    let asked = adviser["asked"].as_u64().unwrap();
    assert!(asked >= 4, "asked at every look after the first day: {adviser}");
    assert_eq!(server.count() as u64, asked);
    assert_eq!(adviser["malformed_replies"].as_u64().unwrap(), asked / 2);
    assert_eq!(adviser["replies"].as_u64().unwrap(), asked - asked / 2);
    let notes = report["learner_notes"].as_array().unwrap();
    assert!(notes.iter().any(|n| n[1].as_str().unwrap().contains("llm reply refused whole")), "{notes:?}");
    assert!(notes.iter().any(|n| n[1].as_str().unwrap().contains("unknown segment \"VIP\"")), "{notes:?}");

    let changes = llm_changes(&report);
    let of = |segment: &str| changes.iter().filter(|c| c["segment"] == segment).collect::<Vec<_>>();
    for c in of("HOT_LEAD") {
        assert_eq!(c["action"], "rejected");
        assert!(c["evidence"].as_str().unwrap().contains("above the hard maximum 3"), "{c}");
        assert!(c["proof"].is_null(), "a cap past the maximum is refused before any simulation");
    }
    for c in of("COLD_LEAD") {
        assert_eq!((c["action"].as_str(), c["field"].as_str()), (Some("rejected"), Some("audience")));
        assert!(c["evidence"].as_str().unwrap().contains("opt-outs are final"), "{c}");
    }
    assert!(!of("HOT_LEAD").is_empty() && !of("COLD_LEAD").is_empty());
    let sound = of("ENGAGED");
    assert!(!sound.is_empty());
    for c in &sound {
        // The sound proposal always reaches its simulation; it passes only if it wins.
        let proof = &c["proof"];
        assert!(!proof.is_null() || c["evidence"].as_str().unwrap().contains("already in force"), "{c}");
        if c["action"] == "applied" {
            assert_eq!(proof["won"], true, "{c}");
        }
    }
    // Whatever passed, no cap was broken and nothing but the sound proposal was applied.
    assert_eq!(report["cap_violations"], 0);
    assert!(changes.iter().filter(|c| c["action"] == "applied").all(|c| c["segment"] == "ENGAGED"));

    // The model saw aggregates only: no user id, no profile.
    let request = &server.requests()[0];
    assert_eq!(request.authorization.as_deref(), Some(format!("Bearer {KEY}").as_str()));
    let prompt = request.body["messages"][1]["content"].as_str().unwrap();
    assert!(prompt.contains("\"segment\":\"ENGAGED\"") && prompt.contains("by_hour"), "{prompt}");
    assert!(!prompt.contains("user_id") && !prompt.contains("\"user\""), "{prompt}");

    // The same seed and the same replies give the same run.
    let server = FakeOpenAi::start(|n, _| {
        if n % 2 == 1 { Reply::Content(format!("Here are my ideas: {ADVICE}")) } else { Reply::Content(ADVICE.into()) }
    });
    let (again, _) = run(&server, &[]);
    assert_eq!(report["strategy_changes"], again["strategy_changes"]);
}

#[test]
fn a_wrong_key_disables_the_adviser_and_the_statistics_go_on() {
    let server = FakeOpenAi::start(|_, _| Reply::Status(401));
    let (report, _) = run(&server, &[]);
    assert_eq!(server.count(), 1, "not asked again after a 401");
    assert_eq!(report["adviser"]["disabled"], true);
    assert_eq!(report["adviser"]["call_errors"]["unauthorized"], 1);
    assert!(llm_changes(&report).is_empty());
    assert!(!report["strategy_changes"].as_array().unwrap().is_empty(), "the statistics still decide");
}

#[test]
fn the_adviser_needs_a_key() {
    let out = gavat_with_env(&["simulate", "--users", "100", "--days", "2", "--llm-adviser"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--llm-adviser needs OPENAI_API_KEY"));
}
