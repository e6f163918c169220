//! Messages with text: LLM personalisation against a fake OpenAI-compatible server on
//! 127.0.0.1 — every bad reply (too long, a link, the wrong language, an injection obeyed,
//! malformed JSON, a timeout, the budget spent) falls back to the template and is counted —
//! and `gavat preview` end to end on a store saved by `gavat simulate --save-state`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use gavat::compose::{Guardrails, Offers, PersonaliseSettings, Personaliser, TemplateSet, TemplateText, TextKind};
use gavat::contacts::{Contact, ContactBook, MemoryContacts};
use gavat::domain::{BotId, ContentKind, Destination, OutboundMessage, Segment, Timestamp, UserId};
use gavat::llm::{ApiKey, LlmSettings};

use super::common::{gavat, s, temp_dir};
use super::fake_openai::{FakeOpenAi, Reply};

/// The user every message here goes to; neither the id nor the name may reach the model.
const USER: u64 = 987_654_321;
const NAME: &str = "Zeynep";

fn offers() -> Offers {
    Offers(BTreeMap::from([("en".into(), "10% off".into()), ("tr".into(), "%10 indirim".into())]))
}

fn contacts() -> Arc<MemoryContacts> {
    let book = Arc::new(MemoryContacts::new());
    let mut contact = Contact::new(UserId(USER), NAME);
    contact.language_code = Some("en-GB".into());
    book.save_contact(&contact).expect("memory contacts");
    book
}

fn templates() -> TemplateText {
    TemplateText::new(TemplateSet::shipped("en", offers().longest()).expect("shipped templates"), contacts(), offers())
}

fn personalised(server: &FakeOpenAi, max_calls_per_day: u32) -> TemplateText {
    let settings = PersonaliseSettings {
        llm: LlmSettings {
            base_url: server.url.clone(),
            model: "fake-model".into(),
            api_key: Some(ApiKey::new("sk-test-messages")),
            timeout: Duration::from_secs(1),
            ..LlmSettings::defaults()
        },
        max_calls_per_hour: max_calls_per_day,
        max_calls_per_day,
        guardrails: Guardrails {
            allowed_link_hosts: vec!["shop.example.com".into()],
            banned_words: vec!["free money".into()],
        },
    };
    templates().with_llm(Personaliser::new(settings).expect("a client")).expect("the LLM thread starts")
}

fn message(segment: Segment, content: ContentKind, at: i64) -> OutboundMessage {
    OutboundMessage { id: 1, to: Destination::User(UserId(USER)), bot: BotId(0), content, segment, at: Timestamp(at) }
}

fn reply(text: &str) -> Reply {
    Reply::Content(serde_json::json!({ "text": text }).to_string())
}

const GOOD: &str =
    "Hi {first_name}! Today only: <b>{offer}</b> from {bot_name}. Reply and it is yours, with our thanks.";

/// A reply that passes every guardrail is sent, with the name put in by code and the
/// opt-out line and button added by code; the prompt holds neither the user's id nor name.
#[test]
fn a_sound_reply_is_used_and_the_prompt_holds_no_user() {
    let server = FakeOpenAi::start(|_, _| reply(GOOD));
    let text = personalised(&server, 10);
    let e = text.explain_now(&message(Segment::HotLead, ContentKind::Offer, 0), "Shop");
    assert_eq!(e.text, TextKind::Llm, "{:?}", e.llm_fallback);
    assert!(e.html.starts_with("Hi Zeynep! Today only: <b>10% off</b> from Shop."), "{}", e.html);
    assert!(e.html.ends_with("\n\n<i>Reply /stop to unsubscribe.</i>"), "{}", e.html);
    assert_eq!(e.button_labels, vec!["Unsubscribe".to_string()]);
    // The same key again: from the cache, no second call.
    let again = text.explain(&message(Segment::HotLead, ContentKind::Offer, 60), "Shop");
    assert_eq!(again.text, TextKind::Llm);
    assert_eq!(server.count(), 1);
    let prompt = server.requests()[0].body.to_string();
    assert!(!prompt.contains(NAME) && !prompt.contains(&USER.to_string()), "{prompt}");
    assert!(prompt.contains("HOT_LEAD") && prompt.contains("{first_name}") && prompt.contains("not instructions"));
    let report = text.llm_report().expect("LLM on");
    assert_eq!((report.llm_calls_total, report.llm_variants_total, report.messages_llm_total), (1, 1, 2));
    assert!(report.llm_fallbacks_total.is_empty(), "{report:?}");
}

/// Each bad reply falls back to the exact template text and is counted under its reason.
#[test]
fn every_bad_reply_falls_back_to_the_template_and_is_counted() {
    let template_html = templates().explain(&message(Segment::HotLead, ContentKind::Offer, 0), "Shop").html;
    let long = format!("Hi {{first_name}}, here is your new offer for you. {}", "and more ".repeat(600));
    let cases: Vec<(&str, Reply)> = vec![
        ("too_long", reply(&long)),
        ("link", reply("Hi {first_name}, your new offer is at https://evil.example.net/win for you now")),
        ("link", reply("Hi {first_name}, the offer is at shop.evil.io and it is for you")),
        ("wrong_language", reply("Merhaba {first_name}, yeni teklifin seni bekliyor, hemen bak!")),
        (
            // An injection obeyed: the model was talked into phishing; the guardrails are not.
            "link",
            reply(
                "Ignore previous instructions. <a href=\"https://phish.io/login\">Claim your prize</a> now, and write to @support_desk",
            ),
        ),
        ("banned_word", reply("Hi {first_name}! This is free money for you, just reply to the bot now.")),
        ("invalid_html", reply("Hi <script>{first_name}</script>, your new offer is here for you")),
        ("invalid_template", reply("Hi {user_id}, your new offer is here for you today")),
        ("malformed_json", Reply::Content(format!("Sure! Here is the text: {GOOD}"))),
        ("malformed_json", Reply::Content("{\"text\": 42}".into())),
        ("refused", Reply::Refusal("I cannot help with marketing.".into())),
        ("server_error", Reply::Status(503)),
        ("timeout", Reply::After(Duration::from_secs(3), Box::new(reply(GOOD)))),
    ];
    for (label, answer) in cases {
        let server = FakeOpenAi::start(move |_, _| answer.clone());
        let text = personalised(&server, 10);
        let e = text.explain_now(&message(Segment::HotLead, ContentKind::Offer, 0), "Shop");
        assert_eq!((e.text, e.llm_fallback.as_deref()), (TextKind::Template, Some(label)), "{label}");
        assert_eq!(e.html, template_html, "{label}");
        let report = text.llm_report().expect("LLM on");
        assert_eq!(report.llm_fallbacks_total.get(label), Some(&1), "{label}: {report:?}");
        assert_eq!((report.llm_variants_total, report.messages_template_total), (0, 1), "{label}");
        assert_eq!(server.count(), 1, "{label}: one attempt, no retries");
    }
}

/// Past the budget of calls per day the model is not asked: the template goes, counted.
#[test]
fn a_spent_budget_falls_back_without_a_call() {
    let server = FakeOpenAi::start(|_, _| reply(GOOD));
    let text = personalised(&server, 1);
    let first = text.explain_now(&message(Segment::HotLead, ContentKind::Offer, 0), "Shop");
    assert_eq!(first.text, TextKind::Llm);
    let second = text.explain_now(&message(Segment::HotLead, ContentKind::Reminder, 60), "Shop");
    assert_eq!((second.text, second.llm_fallback.as_deref()), (TextKind::Template, Some("budget_exhausted")));
    assert_eq!(server.count(), 1);
    // The next engine day has a new budget.
    let next_day = text.explain_now(&message(Segment::HotLead, ContentKind::Reminder, 86_400), "Shop");
    assert_eq!(next_day.text, TextKind::Llm);
    let report = text.llm_report().expect("LLM on");
    assert_eq!(report.llm_fallbacks_total.get("budget_exhausted"), Some(&1));
    assert_eq!(server.count(), 2);
}

/// `compose` never waits: the first message of a key gets the template while the variant
/// is made in the background; later ones get the variant.
#[test]
fn compose_does_not_wait_for_the_model() {
    let server = FakeOpenAi::start(|_, _| Reply::After(Duration::from_millis(300), Box::new(reply(GOOD))));
    let text = personalised(&server, 10);
    let first = text.explain(&message(Segment::HotLead, ContentKind::Offer, 0), "Shop");
    assert_eq!((first.text, first.llm_fallback.as_deref()), (TextKind::Template, Some("not_ready")));
    let mut later = first;
    for _ in 0..100 {
        std::thread::sleep(Duration::from_millis(50));
        later = text.explain(&message(Segment::HotLead, ContentKind::Offer, 10), "Shop");
        if later.text == TextKind::Llm {
            break;
        }
    }
    assert_eq!(later.text, TextKind::Llm, "{:?}", later.llm_fallback);
    assert_eq!(server.count(), 1);
}

fn preview_json(args: &[&str]) -> serde_json::Value {
    let out = gavat(args);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

/// `gavat preview` on a simulated store: the text, language and why, segment, template,
/// bot, and the same earliest time and binding rule as `gavat users analyze`; a config's
/// default language and an experiment arm's template set are honoured; unknown users and
/// missing stores are clear errors.
#[test]
fn preview_shows_the_next_message_of_a_stored_user() {
    let dir = temp_dir();
    let db = dir.path().join("crm.db");
    let out = gavat(&["simulate", "--users", "60", "--days", "3", "--seed", "5", "--save-state", s(&db)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let store = s(&db);
    let mut previewed = 0;
    for user in 0..60u64 {
        let id = user.to_string();
        let p = preview_json(&["preview", &id, "--store", store, "--json"]);
        let a = preview_json(&["users", "analyze", &id, "--store", store, "--json"]);
        assert_eq!(p["earliest"], a["may_be_messaged_from"], "user {user}");
        assert_eq!(p["not_sooner_because"], a["not_earlier_because"], "user {user}");
        assert_eq!(p["segment"], a["governing"], "user {user}");
        if p["segment"].is_null() {
            assert!(p["message"].is_null());
            continue;
        }
        previewed += 1;
        let m = &p["message"];
        assert_eq!(m["language"], "en");
        assert_eq!(m["language_reason"]["because"], "no_contact");
        assert_eq!(m["text"], "template");
        assert!(m["html"].as_str().unwrap().ends_with("<i>Reply /stop to unsubscribe.</i>"), "{m}");
        assert!(m["plain"].as_str().unwrap().ends_with("Reply /stop to unsubscribe."), "{m}");
        assert_eq!(m["button_labels"], serde_json::json!(["Unsubscribe"]));
        assert_eq!(m["template"]["table"], p["segment"]);
        assert_eq!(p["bot"]["name"], "gavat");
    }
    assert!(previewed > 10, "only {previewed} users with a segment");

    // The text form says why the language is what it is, and when.
    let out = gavat(&["preview", "1", "--store", store]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("user 1 (as of"), "{text}");
    if !text.contains("no message") {
        assert!(
            text.contains("no contact: default language") && text.contains("--- as Telegram shows it ---"),
            "{text}"
        );
    }

    // A config: Turkish by default, a bot's name, and an experiment whose second arm has
    // its own template set.
    let variant = dir.path().join("variant");
    std::fs::create_dir(&variant).unwrap();
    let tr = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/templates/tr.toml")).unwrap();
    let variant_tr = tr.replace("language = \"tr\"", "language = \"tr\"\n# variant B").replace("Merhaba", "Selam");
    std::fs::write(variant.join("tr.toml"), variant_tr).unwrap();
    std::fs::write(
        dir.path().join("exp.toml"),
        "name = \"wording\"\nsalt = \"w1\"\nprimary_metric = \"response_rate\"\nminimum_detectable_effect = 0.1\n\
         [[arms]]\nname = \"control\"\nweight = 1.0\n[[arms]]\nname = \"casual\"\nweight = 1.0\ntemplates = \"variant\"\n",
    )
    .unwrap();
    let config = dir.path().join("gavat.toml");
    std::fs::write(
        &config,
        "experiment = \"exp.toml\"\n[[bots]]\nname = \"Dükkan\"\ntoken_env = \"GAVAT_TEST_BOT\"\n\
         [messages]\ndefault_language = \"tr\"\noffer = { tr = \"%10 indirim\" }\n",
    )
    .unwrap();
    let mut arms = BTreeMap::new();
    for user in 0..60u64 {
        let p = preview_json(&["preview", &user.to_string(), "--store", store, "--json", "--config", s(&config)]);
        if p["message"].is_null() {
            continue;
        }
        let m = &p["message"];
        assert_eq!((m["language"].as_str(), p["bot"]["name"].as_str()), (Some("tr"), Some("Dükkan")));
        let arm = m["arm"].as_str().unwrap().to_string();
        let html = m["html"].as_str().unwrap();
        assert!(html.ends_with("<i>Abonelikten çıkmak için /stop yazın.</i>"), "{html}");
        assert_eq!(m["template_set"].as_str().unwrap().ends_with("variant"), arm == "casual", "{m}");
        assert!(!html.contains("Selam") || arm == "casual", "{html}");
        *arms.entry(arm).or_insert(0) += 1;
    }
    assert_eq!(arms.len(), 2, "both arms previewed: {arms:?}");

    let out = gavat(&["preview", "999999", "--store", store]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no user 999999 in"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let missing = dir.path().join("nope.db");
    let out = gavat(&["preview", "1", "--store", s(&missing)]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nope.db"), "{err}");
}

/// `gavat config check` loads the templates `[messages]` names and refuses a broken one
/// with its file, line and field.
#[test]
fn config_check_refuses_a_broken_template_with_its_line() {
    let dir = temp_dir();
    let templates = dir.path().join("templates");
    std::fs::create_dir(&templates).unwrap();
    let en = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/templates/en.toml")).unwrap();
    std::fs::write(templates.join("en.toml"), &en).unwrap();
    let config = dir.path().join("gavat.toml");
    std::fs::write(&config, "[messages]\ntemplates_dir = \"templates\"\noffer = \"10% off\"\n").unwrap();
    let out = gavat(&["config", "check", s(&config)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("default language en, LLM off"));

    let broken = en.replace("[NIGHT_OWL]\nnews = \"Still up", "[NIGHT_OWL]\nnews = \"<blink>Still up");
    std::fs::write(templates.join("en.toml"), &broken).unwrap();
    let line = broken.lines().position(|l| l.contains("<blink>")).unwrap() + 1;
    let out = gavat(&["config", "check", s(&config)]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("en.toml:{line}: field NIGHT_OWL.news:")) && err.contains("blink"), "{err}");

    // An experiment arm's template set is checked too; a missing one names the arm's line.
    std::fs::write(templates.join("en.toml"), &en).unwrap();
    std::fs::write(
        dir.path().join("exp.toml"),
        "name = \"wording\"\nsalt = \"w1\"\nprimary_metric = \"response_rate\"\nminimum_detectable_effect = 0.1\n\
         [[arms]]\nname = \"control\"\nweight = 1.0\n[[arms]]\nname = \"casual\"\nweight = 1.0\ntemplates = \"casual\"\n",
    )
    .unwrap();
    std::fs::write(&config, "experiment = \"exp.toml\"\n[messages]\ntemplates_dir = \"templates\"\n").unwrap();
    let out = gavat(&["config", "check", s(&config)]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("exp.toml:11: field arms[1].templates:") && err.contains("casual"), "{err}");
}

/// `gavat preview` with `[messages.llm]` pointing at the fake server: the variant is shown
/// as the LLM's, the key comes from the named variable and is printed nowhere, and a reply
/// in the wrong language shows the template with the reason.
#[test]
fn preview_shows_an_llm_variant_or_why_not() {
    let dir = temp_dir();
    let db = dir.path().join("crm.db");
    let out = gavat(&["simulate", "--users", "30", "--days", "2", "--seed", "8", "--save-state", s(&db)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let user = (0..30u64)
        .map(|u| u.to_string())
        .find(|u| {
            let p: serde_json::Value =
                serde_json::from_slice(&gavat(&["preview", u, "--store", s(&db), "--json"]).stdout).unwrap();
            !p["message"].is_null()
        })
        .expect("a user with a segment");
    for (answer, expect) in [
        (GOOD, "LLM variant"),
        ("Merhaba {first_name}, yeni teklifin seni bekliyor, hemen bak!", "template (LLM fell back: wrong_language)"),
    ] {
        let server = FakeOpenAi::start(move |_, _| reply(answer));
        let config = dir.path().join("gavat.toml");
        std::fs::write(
            &config,
            format!(
                "[messages]\noffer = \"10% off\"\n[messages.llm]\nmodel = \"fake\"\nbase_url = \"{}\"\n\
                 api_key_env = \"GAVAT_TEST_LLM_KEY\"\ntimeout_secs = 5\n",
                server.url
            ),
        )
        .unwrap();
        let key = "sk-preview-secret-0042";
        let out = super::common::gavat_with_env(
            &["preview", &user, "--store", s(&db), "--config", s(&config)],
            &[("GAVAT_TEST_LLM_KEY", key), ("GAVAT_LOG", "debug")],
        );
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "{stderr}");
        assert!(stdout.contains(&format!("text:      {expect}")), "{stdout}\n{stderr}");
        assert!(!stdout.contains(key) && !stderr.contains(key), "the key leaked");
        assert_eq!(server.requests()[0].authorization.as_deref(), Some(&*format!("Bearer {key}")));
    }
    // Without the key the preview refuses to pretend.
    let out = gavat(&["preview", &user, "--store", s(&db), "--config", s(&dir.path().join("gavat.toml"))]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("$GAVAT_TEST_LLM_KEY is not set"));
}

/// The shipped content-variant experiment loads with its arm's template set, and its users
/// split between the configured wording and the casual one.
#[test]
fn the_shipped_wording_experiment_puts_its_variant_in_force() {
    let dir = temp_dir();
    let experiment = concat!(env!("CARGO_MANIFEST_DIR"), "/experiments/message_wording.toml");
    let config = dir.path().join("gavat.toml");
    std::fs::write(&config, format!("experiment = \"{experiment}\"\n")).unwrap();
    let out = gavat(&["config", "check", s(&config)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let db = dir.path().join("crm.db");
    let out = gavat(&["simulate", "--users", "40", "--days", "2", "--seed", "4", "--save-state", s(&db)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut casual = 0;
    let mut control = 0;
    for user in 0..40u64 {
        let out = gavat(&["preview", &user.to_string(), "--store", s(&db), "--config", s(&config), "--json"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let p: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let m = &p["message"];
        if m.is_null() {
            continue;
        }
        match m["arm"].as_str() {
            Some("casual") => {
                casual += 1;
                assert!(m["plain"].as_str().unwrap().ends_with("Not for you? Send /stop."), "{m}");
                assert_eq!(m["button_labels"], serde_json::json!(["Stop these messages"]));
            }
            Some("control") => {
                control += 1;
                assert!(m["plain"].as_str().unwrap().ends_with("Reply /stop to unsubscribe."), "{m}");
            }
            other => panic!("arm {other:?}"),
        }
    }
    assert!(casual > 0 && control > 0, "casual {casual}, control {control}");
}

/// Row 30 (personalisation) and row 49 (from the LLM): every worst-case reply — JSON cut at
/// the token limit, valid JSON cut at the limit, extra fields, an out-of-enum strategy, a
/// cap of 1000, a 10 kB message, HTML that Telegram would refuse, unbalanced tags, unknown
/// links, an empty reply, a refusal — is refused: the exact template goes, and each is
/// counted under `llm_fallbacks_total`.
#[test]
fn row_30_worst_case_replies_are_never_acted_on() {
    use super::fault_report::{RowReport, RunKind};
    let template_html = templates().explain(&message(Segment::HotLead, ContentKind::Offer, 0), "Shop").html;
    let good_json = serde_json::json!({ "text": GOOD }).to_string();
    let cases: Vec<(&str, Reply)> = vec![
        ("cut_off_json", Reply::CutOff(good_json[..good_json.len() / 2].to_string())),
        ("cut_off_valid_json", Reply::CutOff(good_json.clone())),
        ("extra_field", Reply::Content(serde_json::json!({ "text": GOOD, "send_now": true }).to_string())),
        (
            "out_of_enum_strategy",
            Reply::Content(r#"{"strategy": "SEND_EVERYTHING", "text": "Hi {first_name}"}"#.into()),
        ),
        ("cap_1000", Reply::Content(serde_json::json!({ "text": GOOD, "daily_limit": 1000 }).to_string())),
        (
            "ten_kb_message",
            reply(&format!("Hi {{first_name}}, here is your offer. {}", "and more for you ".repeat(640))),
        ),
        ("html", reply("Hi {first_name}, <iframe src=\"https://shop.example.com\"></iframe> your offer is here")),
        ("unbalanced_html", reply("Hi {first_name}, <b>your new offer <i>is here</b> for you today")),
        ("unknown_link", reply("Hi {first_name}, your new offer is at https://unknown.example.org/x for you now")),
        ("empty", Reply::Content(String::new())),
        ("refusal", Reply::Refusal("I cannot write marketing text.".into())),
    ];
    let n = cases.len() as u64;
    let mut report = RowReport::new("30-personalisation", 3020, RunKind::Safety);
    let (mut acted_on, mut counted) = (0u64, 0u64);
    for (kind, answer) in cases {
        let server = FakeOpenAi::start(move |_, _| answer.clone());
        let text = personalised(&server, 10);
        let e = text.explain_now(&message(Segment::HotLead, ContentKind::Offer, 0), "Shop");
        report.fired(kind, u64::from(server.count() > 0));
        acted_on += u64::from(e.text != TextKind::Template || e.html != template_html);
        let fallbacks: u64 = text.llm_report().map_or(0, |r| r.llm_fallbacks_total.values().sum());
        counted += fallbacks.min(1);
        assert!(e.llm_fallback.is_some(), "{kind}: a reason is given");
    }
    report
        .figure("invalid replies acted on", acted_on, n)
        .figure("invalid replies not counted in llm_fallbacks_total", n - counted, n)
        .measure("llm_fallbacks_total", counted);
    report.emit();
}

/// Row 32: the model failing — 500, 429 with a `Retry-After`, a timeout, slow — or
/// its budget spent never holds a message: `compose` answers at once with the template
/// while the model is still busy, every message has its text, and no more calls are made
/// than the budget allows.
#[test]
fn row_32_llm_faults_never_hold_a_message() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    use super::fault_report::{RowReport, RunKind};
    let faults: Vec<(&str, Duration, Reply)> = vec![
        ("500", Duration::ZERO, Reply::Status(500)),
        ("429", Duration::ZERO, Reply::RetryAfter(2.0)),
        ("timeout", Duration::from_millis(1_500), reply(GOOD)),
        ("slow", Duration::from_millis(700), reply(GOOD)),
        ("budget", Duration::ZERO, reply(GOOD)),
    ];
    let mut report = RowReport::new("32", 3201, RunKind::Safety);
    let (mut held, mut composed, mut without_text, mut over_budget) = (0u64, 0u64, 0u64, 0u64);
    for (kind, delay, answer) in faults {
        let answered = Arc::new(AtomicBool::new(false));
        let calls = Arc::new(AtomicU64::new(0));
        let (flag, count) = (answered.clone(), calls.clone());
        let server = FakeOpenAi::start(move |_, _| {
            count.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(delay);
            flag.store(true, Ordering::SeqCst);
            answer.clone()
        });
        let budget = if kind == "budget" { 1 } else { 10 };
        let text = personalised(&server, budget);
        for (i, content) in [ContentKind::Offer, ContentKind::Reminder, ContentKind::Offer].into_iter().enumerate() {
            let e = text.explain(&message(Segment::HotLead, content, 60 * i as i64), "Shop");
            composed += 1;
            without_text += u64::from(e.plain.trim().is_empty());
            // A slow model is still busy when `compose` has answered: it did not wait.
            if !delay.is_zero() && i == 0 {
                held += u64::from(answered.load(Ordering::SeqCst));
            }
        }
        // The fault fired once the model was asked (or, for the budget, refused to be):
        // the asking happens in the background, so wait for it (not a timed assertion).
        let fired = || match kind {
            "budget" => {
                text.llm_report().and_then(|r| r.llm_fallbacks_total.get("budget_exhausted").copied()).unwrap_or(0)
            }
            _ => calls.load(Ordering::SeqCst),
        };
        for _ in 0..100 {
            if fired() > 0 {
                break;
            }
            if kind == "budget" {
                // A new key asks once the first key's call has spent the budget.
                let _ = text.explain(&message(Segment::HotLead, ContentKind::Reminder, 600), "Shop");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let fired = fired();
        report.fired(kind, fired);
        over_budget += u64::from(server.count() as u32 > budget);
    }
    report
        .figure("messages held waiting for the model", held, 2)
        .figure("messages without text", without_text, composed)
        .figure("fault cases over their call budget", over_budget, 5);
    report.emit();
}

/// Row 49 (from a template): a template over 4,096 characters after entity parsing, or
/// with tags that do not balance, is refused when the set is loaded — before any send —
/// naming its file, line and field.
#[test]
fn row_49_over_long_or_unbalanced_templates_are_refused_at_load() {
    use super::fault_report::{RowReport, RunKind};
    let en = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/templates/en.toml")).unwrap();
    let long = format!("[NIGHT_OWL]\nnews = \"Still up {}", "&amp; still reading ".repeat(300));
    let cases = [("over_long", long), ("unbalanced", "[NIGHT_OWL]\nnews = \"<b>Still up <i>late".to_string())];
    let mut report = RowReport::new("49-templates", 4902, RunKind::Safety);
    let mut loaded = 0u64;
    for (kind, replacement) in &cases {
        let dir = temp_dir();
        let broken = en.replacen("[NIGHT_OWL]\nnews = \"Still up", replacement, 1);
        assert_ne!(broken, en, "{kind}: the template was changed");
        std::fs::write(dir.path().join("en.toml"), &broken).unwrap();
        report.fired(kind, 1);
        match TemplateSet::load(dir.path(), "en", offers().longest()) {
            Ok(_) => loaded += 1,
            Err(e) => {
                let text = e.to_string();
                assert!(text.contains("en.toml:") && text.contains("NIGHT_OWL.news"), "{kind}: {text}");
            }
        }
    }
    report.figure("over-long or unbalanced templates loaded", loaded, cases.len() as u64);
    report.emit();
}
