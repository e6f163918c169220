//! [`TemplateText`], the [`TextSource`] of a live engine: for each message, the user's
//! language from their contact, the template by the fallback chain (of the user's
//! experiment arm's set, if the arm names one), the values escaped, and the opt-out line
//! and Unsubscribe button of that language — or, when LLM personalisation is on and a
//! variant for the same (set, audience, kind, language, bot) has passed the guardrails,
//! that variant in place of the template.
//!
//! `compose` stays synchronous and never waits for the model: a variant depends on no user
//! (the prompt holds aggregates only), so one is made per key in the background, on a
//! thread of its own, the first time a message needs it; until it is ready, and after it
//! failed (retried after an engine hour), the template is sent. `explain_now` (used by
//! `gavat preview` and the tests) waits for the variant instead.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::contacts::{Contact, ContactBook};
use crate::domain::{Destination, HOUR, OutboundMessage, Timestamp, UserId};
use crate::simulation::ArmAssignment;
use crate::transport::telegram::{BuiltinText, Button, Composed, TextSource};

use super::catalog::{Audience, TemplateOrigin, TemplateSet};
use super::html::{self, MAX_MESSAGE_LEN, utf16_len};
use super::language::{CHECKED_LANGUAGES, LanguageReason, pick_language};
use super::personalise::{PersonaliseReport, Personaliser, VariantKey, VariantRequest};
use super::template::{Template, Values, display_name};

/// How long after a failed variant the model is asked again, in engine time.
pub const VARIANT_RETRY_SECS: i64 = HOUR;

/// The offer text, per language (`*`: any language).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Offers(pub BTreeMap<String, String>);

impl Offers {
    /// The offer for `language`: its own, else the one for every language, else the
    /// default language's.
    pub fn for_language(&self, language: &str, default: &str) -> &str {
        self.0.get(language).or_else(|| self.0.get("*")).or_else(|| self.0.get(default)).map_or("", String::as_str)
    }

    /// The longest offer, UTF-16 units.
    pub fn longest(&self) -> usize {
        self.0.values().map(|o| utf16_len(o)).max().unwrap_or(0)
    }
}

/// Which template set each experiment arm's users get.
#[derive(Clone, Debug)]
pub struct ArmTemplates {
    /// The experiment's assignment (the same hash as the engine's).
    pub assignment: ArmAssignment,
    /// For each arm (in assignment order, the holdout last), the index of its set in
    /// [`TemplateText`]'s sets (0: the configured one).
    pub set_of_arm: Vec<usize>,
    /// Each arm's name, for `gavat preview`.
    pub names: Vec<String>,
}

/// Whether a message's text is the template or an LLM variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TextKind {
    /// The template.
    Template,
    /// An LLM variant of it that passed the guardrails.
    Llm,
}

/// A composed message and how it came about.
#[derive(Clone, Debug, Serialize)]
pub struct Explained {
    /// The HTML sent.
    pub html: String,
    /// What Telegram shows (tags removed, entities decoded).
    pub plain: String,
    /// The buttons (one per row).
    #[serde(skip)]
    pub buttons: Vec<Button>,
    /// Their labels, for `gavat preview --json`.
    pub button_labels: Vec<String>,
    /// The language written in.
    pub language: String,
    /// Why that language.
    pub language_reason: LanguageReason,
    /// Which template.
    pub template: TemplateOrigin,
    /// The template set (a directory, `shipped templates`).
    pub template_set: String,
    /// The experiment arm whose set it is, if an experiment names sets.
    pub arm: Option<String>,
    /// Template or LLM.
    pub text: TextKind,
    /// Why not the LLM, when it is on and the template was sent.
    pub llm_fallback: Option<String>,
    /// Whether the user's first name was known.
    pub first_name_known: bool,
}

/// A variant's state.
#[derive(Clone, Debug)]
enum Variant {
    /// Asked for; not back yet.
    Pending,
    /// Passed the guardrails.
    Ready(Template),
    /// Failed at this engine time, for this reason.
    Failed(Timestamp, &'static str),
}

type Variants = Arc<Mutex<BTreeMap<VariantKey, Variant>>>;

/// A job for the background thread; `reply` is for a caller that waits.
struct Job {
    request: VariantRequest,
    reply: Option<mpsc::Sender<()>>,
}

/// The personaliser, its variants and the thread that makes them.
struct Llm {
    personaliser: Arc<Personaliser>,
    variants: Variants,
    jobs: Mutex<mpsc::Sender<Job>>,
}

impl Llm {
    fn start(personaliser: Personaliser) -> std::io::Result<Llm> {
        let personaliser = Arc::new(personaliser);
        let variants: Variants = Arc::default();
        let (jobs, inbox) = mpsc::channel::<Job>();
        let (p, v) = (personaliser.clone(), variants.clone());
        std::thread::Builder::new().name("gavat-llm-text".into()).spawn(move || {
            // A runtime of its own, built and dropped on this thread: never inside the
            // engine's. Without one, the inbox closes and every message gets the template.
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(runtime) => runtime,
                Err(e) => {
                    tracing::error!(error = %e, "LLM text: no runtime; every message gets its template.");
                    return;
                }
            };
            // Ends when every sender is gone (the TemplateText was dropped).
            for job in inbox {
                let outcome = runtime.block_on(p.generate(&job.request));
                let variant = match outcome {
                    Ok(template) => Variant::Ready(template),
                    Err(label) => Variant::Failed(job.request.at, label),
                };
                lock(&v).insert(job.request.key, variant);
                if let Some(reply) = job.reply {
                    let _ = reply.send(());
                }
            }
        })?;
        Ok(Llm { personaliser, variants, jobs: Mutex::new(jobs) })
    }

    /// The variant for `request`'s key if ready; otherwise asks for one (unless one is on
    /// its way or failed within the hour) and says why not.
    fn lookup(&self, request: &VariantRequest) -> Result<Template, &'static str> {
        let mut variants = lock(&self.variants);
        match variants.get(&request.key) {
            Some(Variant::Ready(t)) => return Ok(t.clone()),
            Some(Variant::Pending) => return Err("not_ready"),
            Some(Variant::Failed(at, label)) if request.at.secs() < at.secs() + VARIANT_RETRY_SECS => {
                return Err(label);
            }
            _ => {}
        }
        if lock(&self.jobs).send(Job { request: request.clone(), reply: None }).is_err() {
            variants.insert(request.key.clone(), Variant::Failed(request.at, "worker_stopped"));
            self.personaliser.count_fallback(&request.key, "worker_stopped");
            return Err("worker_stopped");
        }
        variants.insert(request.key.clone(), Variant::Pending);
        Err("not_ready")
    }

    /// Makes the variant for `request`'s key now, waiting for it, unless it is ready.
    fn wait_for(&self, request: &VariantRequest) -> Result<Template, &'static str> {
        if let Some(Variant::Ready(t)) = lock(&self.variants).get(&request.key) {
            return Ok(t.clone());
        }
        let (reply, done) = mpsc::channel();
        if lock(&self.jobs).send(Job { request: request.clone(), reply: Some(reply) }).is_err() {
            return Err("worker_stopped");
        }
        // The client's own timeout bounds the wait; a lost reply is a stopped worker.
        let wait = self.personaliser.timeout() + std::time::Duration::from_secs(5);
        if done.recv_timeout(wait).is_err() {
            return Err("timeout");
        }
        match lock(&self.variants).get(&request.key) {
            Some(Variant::Ready(t)) => Ok(t.clone()),
            Some(Variant::Failed(_, label)) => Err(label),
            _ => Err("not_ready"),
        }
    }
}

/// Messages from templates (see the module doc).
pub struct TemplateText {
    sets: Vec<TemplateSet>,
    arms: Option<ArmTemplates>,
    contacts: Arc<dyn ContactBook>,
    offers: Offers,
    llm: Option<Llm>,
}

impl fmt::Debug for TemplateText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TemplateText")
            .field("sets", &self.sets.iter().map(|s| s.origin.as_str()).collect::<Vec<_>>())
            .field("arms", &self.arms.as_ref().map(|a| &a.names))
            .field("llm", &self.llm.is_some())
            .finish()
    }
}

impl TemplateText {
    /// Messages from `set`, in the languages of `contacts`, with `offers`.
    pub fn new(set: TemplateSet, contacts: Arc<dyn ContactBook>, offers: Offers) -> TemplateText {
        TemplateText { sets: vec![set], arms: None, contacts, offers, llm: None }
    }

    /// With experiment arms' sets: `sets` are appended after the configured one, and
    /// `arms.set_of_arm` indexes the whole list.
    pub fn with_arms(mut self, sets: Vec<TemplateSet>, arms: ArmTemplates) -> TemplateText {
        self.sets.extend(sets);
        self.arms = Some(arms);
        self
    }

    /// With LLM personalisation (a background thread starts).
    pub fn with_llm(mut self, personaliser: Personaliser) -> std::io::Result<TemplateText> {
        self.llm = Some(Llm::start(personaliser)?);
        Ok(self)
    }

    /// The personaliser's counts (`None` when it is off).
    pub fn llm_report(&self) -> Option<PersonaliseReport> {
        self.llm.as_ref().map(|l| l.personaliser.report())
    }

    /// The message and how it came about; an LLM variant only if one is ready.
    pub fn explain(&self, message: &OutboundMessage, bot_name: &str) -> Explained {
        self.explain_with(message, bot_name, |llm, request| llm.lookup(request))
    }

    /// As [`TemplateText::explain`], but waits for the LLM variant (at most its timeout).
    pub fn explain_now(&self, message: &OutboundMessage, bot_name: &str) -> Explained {
        self.explain_with(message, bot_name, |llm, request| llm.wait_for(request))
    }

    fn explain_with(
        &self,
        message: &OutboundMessage,
        bot_name: &str,
        variant: impl Fn(&Llm, &VariantRequest) -> Result<Template, &'static str>,
    ) -> Explained {
        let (set_index, arm) = self.set_of(message.to);
        let set = &self.sets[set_index];
        let (contact, audience) = match message.to {
            Destination::User(user) => (self.contact(user), Audience::Direct(message.segment)),
            Destination::Group(_) => (None, Audience::Group),
        };
        let (language, language_reason) = match (message.to, &contact) {
            (Destination::Group(_), _) => (set.default_language.clone(), LanguageReason::Group),
            (_, Some(c)) => pick_language(c.language_code.as_deref(), true, |l| set.has(l), &set.default_language),
            (_, None) => pick_language(None, false, |l| set.has(l), &set.default_language),
        };
        let resolved = set.resolve(audience, message.content, &language);
        let lang = resolved.language;
        let shown_name = contact.as_ref().and_then(|c| display_name(&c.first_name));
        let values = Values {
            first_name: shown_name.clone().unwrap_or_else(|| lang.unknown_name.clone()),
            bot_name: display_name(bot_name).unwrap_or_default(),
            offer: self.offers.for_language(&lang.language, &set.default_language).to_string(),
        };
        let tail = format!("\n\n{}", lang.opt_out_line.render(&values));
        let mut body = resolved.template;
        let mut text = TextKind::Template;
        let mut llm_fallback = None;
        let llm_variant;
        if let Some(llm) = &self.llm {
            let request = VariantRequest {
                key: VariantKey {
                    set: set_index,
                    audience,
                    kind: message.content,
                    language: lang.language.clone(),
                    bot_name: bot_name.to_string(),
                },
                base: resolved.template.clone(),
                tail_len: utf16_len(&tail),
                offer_len: self.offers.longest(),
                at: message.at,
            };
            let outcome = if CHECKED_LANGUAGES.contains(&lang.language.as_str()) {
                variant(llm, &request)
            } else {
                Err("language_not_checkable")
            };
            match outcome {
                Ok(t) => {
                    llm_variant = t;
                    body = &llm_variant;
                    text = TextKind::Llm;
                }
                Err(label) => llm_fallback = Some(label.to_string()),
            }
            llm.personaliser.count_message(text == TextKind::Llm);
        }
        let html = format!("{}{tail}", body.render(&values));
        let mut explained = Explained {
            plain: String::new(),
            html,
            buttons: vec![Button::unsubscribe(lang.unsubscribe_label.clone())],
            button_labels: vec![lang.unsubscribe_label.clone()],
            language: lang.language.clone(),
            language_reason,
            template: resolved.origin(message.content),
            template_set: set.origin.clone(),
            arm,
            text,
            llm_fallback,
            first_name_known: shown_name.is_some(),
        };
        match html::check(&explained.html) {
            Ok(checked) if checked.len() <= MAX_MESSAGE_LEN => explained.plain = checked.visible,
            // Cannot happen: every template's longest rendering was checked at load.
            outcome => {
                tracing::error!(error = ?outcome.err(), "A rendered message failed its check; sending the built-in text.");
                let fallback = BuiltinText.compose(message, bot_name);
                explained.plain = html::check(&fallback.html).map(|c| c.visible).unwrap_or_default();
                explained.html = fallback.html;
                explained.button_labels = fallback.buttons.iter().map(|b| b.label.clone()).collect();
                explained.buttons = fallback.buttons;
            }
        }
        explained
    }

    /// The template set for a message to `to`, and the arm's name when an experiment names
    /// sets.
    fn set_of(&self, to: Destination) -> (usize, Option<String>) {
        match (to, &self.arms) {
            (Destination::User(user), Some(arms)) => {
                let arm = usize::from(arms.assignment.arm_of(user));
                (arms.set_of_arm.get(arm).copied().unwrap_or(0), arms.names.get(arm).cloned())
            }
            _ => (0, None),
        }
    }

    /// The user's contact; a store that cannot answer is logged and treated as no contact.
    fn contact(&self, user: UserId) -> Option<Contact> {
        match self.contacts.contact(user) {
            Ok(contact) => contact,
            Err(e) => {
                tracing::warn!(user = %user, error = %e, "Contact unavailable; writing in the default language.");
                None
            }
        }
    }
}

impl Drop for TemplateText {
    /// Says once, at the end of a run, what the LLM did (when it was on).
    fn drop(&mut self) {
        if let Some(r) = self.llm_report() {
            let fallbacks: Vec<String> = r.llm_fallbacks_total.iter().map(|(k, n)| format!("{k}={n}")).collect();
            tracing::info!(
                llm_calls_total = r.llm_calls_total,
                llm_variants_total = r.llm_variants_total,
                messages_llm_total = r.messages_llm_total,
                messages_template_total = r.messages_template_total,
                llm_fallbacks_total = %fallbacks.join(","),
                "LLM text personalisation summary."
            );
        }
    }
}

impl TextSource for TemplateText {
    fn compose(&self, message: &OutboundMessage, bot_name: &str) -> Composed {
        let explained = self.explain(message, bot_name);
        Composed { html: explained.html, buttons: explained.buttons }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contacts::MemoryContacts;
    use crate::domain::{BotId, ContentKind, GroupId, Segment};
    use crate::transport::telegram::UNSUBSCRIBE_CALLBACK;

    fn message(to: Destination, segment: Segment, content: ContentKind) -> OutboundMessage {
        OutboundMessage { id: 1, to, bot: BotId(0), content, segment, at: Timestamp(0) }
    }

    fn hostile_offers() -> Offers {
        let offer = format!("<b>50%</b> & \"more\" {{first_name}} {}", "ü".repeat(460));
        Offers(BTreeMap::from([(
            "*".to_string(),
            offer.chars().take(super::super::settings::MAX_OFFER_CHARS).collect(),
        )]))
    }

    /// Every shipped template (the configured set and the example experiment's casual
    /// variant), in every shipped language, for every segment and the group, with hostile
    /// names, bot name and offer: valid Bot API HTML, at most 4096 characters after entity
    /// parsing, the names escaped, the opt-out line last and the Unsubscribe button present.
    #[test]
    fn every_template_renders_safely_with_hostile_values() {
        let offers = hostile_offers();
        let casual = concat!(env!("CARGO_MANIFEST_DIR"), "/experiments/templates/casual");
        for set in [
            TemplateSet::shipped("en", offers.longest()).unwrap(),
            TemplateSet::load(std::path::Path::new(casual), "en", offers.longest()).unwrap(),
        ] {
            renders_safely(set, offers.clone());
        }
    }

    fn renders_safely(set: TemplateSet, offers: Offers) {
        let names = [
            "<script>alert(1)</script> & \"Bobby\"".to_string(),
            "A".repeat(5000),
            "\u{202E}مريم\u{202C} عبد الله".to_string(),
            "🙂👩‍👩‍👧🇹🇷".repeat(30),
            "{first_name}{offer}{{bot_name}}".to_string(),
            "\u{0000}\n\t".to_string(),
        ];
        let contacts = Arc::new(MemoryContacts::new());
        let text = TemplateText::new(set.clone(), contacts.clone(), offers);
        let bot_name = format!("<i>{}</i>", "B".repeat(5000));
        let empty = Values { first_name: String::new(), bot_name: String::new(), offer: String::new() };
        for lang in set.languages() {
            for (n, name) in names.iter().enumerate() {
                let user = UserId(n as u64 + 1);
                let mut contact = Contact::new(user, name.clone());
                contact.language_code = Some(lang.language.clone());
                contacts.save_contact(&contact).unwrap();
                let mut destinations: Vec<(Destination, Segment)> =
                    Segment::ALL.iter().map(|s| (Destination::User(user), *s)).collect();
                destinations.push((Destination::Group(GroupId(3)), Segment::Engaged));
                for (to, segment) in destinations {
                    for kind in ContentKind::ALL {
                        let e = text.explain(&message(to, segment, kind), &bot_name);
                        let checked = html::check(&e.html).unwrap_or_else(|err| panic!("{err}: {}", e.html));
                        assert!(checked.len() <= MAX_MESSAGE_LEN, "{} units", checked.len());
                        // A group post is in the default language; a direct message in the user's.
                        let written_in = set.languages().find(|l| l.language == e.language).unwrap();
                        let opt_out = written_in.opt_out_line.render(&empty);
                        assert!(e.html.ends_with(&format!("\n\n{opt_out}")), "{}", e.html);
                        assert_eq!(e.buttons, vec![Button::unsubscribe(written_in.unsubscribe_label.clone())]);
                        assert_eq!(e.buttons[0].callback_data, UNSUBSCRIBE_CALLBACK);
                        assert!(!e.html.contains("<script>") && !e.html.contains("\u{202E}"), "{}", e.html);
                        if matches!(to, Destination::User(_)) {
                            assert_eq!(e.language, lang.language);
                        }
                    }
                }
            }
        }
    }

    /// A name is put in once: `{first_name}` inside it stays text; an unknown contact gets
    /// the default language and the language's word for an unknown name.
    #[test]
    fn names_are_text_and_unknown_contacts_get_the_default() {
        let contacts = Arc::new(MemoryContacts::new());
        let mut ayse = Contact::new(UserId(1), "{offer} Ayşe");
        ayse.language_code = Some("tr-TR".into());
        contacts.save_contact(&ayse).unwrap();
        let offers = Offers(BTreeMap::from([("en".into(), "10% off".into()), ("tr".into(), "%10 indirim".into())]));
        let text = TemplateText::new(TemplateSet::shipped("en", offers.longest()).unwrap(), contacts, offers);
        let e = text.explain(&message(Destination::User(UserId(1)), Segment::HotLead, ContentKind::Offer), "Shop");
        assert_eq!(e.language, "tr");
        assert_eq!(e.language_reason, LanguageReason::PrimarySubtag { code: "tr-TR".into() });
        assert!(e.plain.starts_with("{offer} Ayşe, bu fırsat tam size göre: %10 indirim."), "{}", e.plain);
        assert!(e.plain.ends_with("Abonelikten çıkmak için /stop yazın."), "{}", e.plain);
        assert_eq!((e.text, e.template.table, e.template.fallback_steps), (TextKind::Template, "HOT_LEAD", 0));
        let e = text.explain(&message(Destination::User(UserId(2)), Segment::ColdLead, ContentKind::Premium), "Shop");
        assert_eq!((e.language.as_str(), &e.language_reason), ("en", &LanguageReason::NoContact));
        assert_eq!((e.template.table, e.template.fallback_steps), ("default", 1));
        assert!(e.plain.starts_with("Hi there! Premium"), "{}", e.plain);
        assert!(!e.first_name_known);
    }
}
