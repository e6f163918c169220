//! Rule-based segmentation: from what a profile shows to the segments a user holds, each
//! with a confidence and the reasons that produced it. The thresholds live in
//! `config/segmentation.toml` (shipped; `--rules FILE` replaces them). Pure and cheap: the
//! user actor re-runs it on every event without building any reason text; `explain` runs
//! the very same rules and keeps the reasons.
//!
//! | segment | rule (defaults) | confidence |
//! |---|---|---|
//! | NEW_USER | joined less than 7 days ago | 0.95 falling to 0.6 at 7 days |
//! | HOT_LEAD | answered ≥ 40% of the last (≤ 8, ≥ 3) messages | 0.5 + 0.5 × share |
//! | WARM_LEAD | answered 10–40% of the last (≥ 3) messages, or fewer than 3 messages and active in the last 7 days | 0.6 / 0.45 |
//! | COLD_LEAD | answered < 10% of the last (≥ 5) messages, or inactive for 14 days | 0.6 (0.8 with a full window) / 0.8 |
//! | ENGAGED | ≥ 5 sessions in about the last week | 0.6 + sessions/100, at most 0.95 |
//! | BOT_LOVER | follows ≥ 3 of our bots | 0.7 + 0.05 per extra bot, at most 0.95 |
//! | NIGHT_OWL | ≥ 50% of ≥ 10 sessions between 22:00 and 04:00 local | the share, at most 0.95 |
//! | PREMIUM_POTENTIAL | ≥ 1 purchase and answers ≥ 20% (or no messages yet), or ≥ 3 purchases | 0.6 + 0.1 per purchase, at most 0.9 |
//!
//! A user no rule matches is a COLD_LEAD with confidence 0.3.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::config::{FieldError, SettingsFileError, parse_hours, parse_settings_toml, read_settings_file};
use crate::domain::{DAY, HourMask, Segment, SegmentSet, Timestamp, UserProfile};

/// The rules shipped with gavat (`config/segmentation.toml`).
pub const DEFAULT_RULES: &str = include_str!("../config/segmentation.toml");

/// Why a rules file could not be used.
pub type RulesError = SettingsFileError;

/// `[new_user]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUserRule {
    /// Joined less than this many days ago.
    pub max_age_days: f32,
}

/// `[hot_lead]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HotLeadRule {
    /// How many of the last messages to look at (at most 16).
    pub window: u8,
    /// At least this many of them.
    pub min_messages: u32,
    /// Answered at least this share.
    pub min_response_share: f32,
}

/// `[warm_lead]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WarmLeadRule {
    /// Answered at least this share (and less than the hot share).
    pub min_response_share: f32,
    /// Or, with few messages, active within this many days.
    pub recently_active_days: f32,
}

/// `[cold_lead]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColdLeadRule {
    /// At least this many messages ...
    pub min_messages: u32,
    /// ... answered less than this share.
    pub max_response_share: f32,
    /// Or no activity for this many days.
    pub inactive_days: f32,
}

/// `[engaged]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngagedRule {
    /// Sessions in about the last week.
    pub min_weekly_sessions: f32,
}

/// `[bot_lover]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BotLoverRule {
    /// Follows at least this many bots.
    pub min_bots: u32,
}

/// `[night_owl]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NightOwlRule {
    /// Local hours that count as night, e.g. `"22-4"`.
    pub night_hours: String,
    /// Sessions needed before judging.
    pub min_sessions: u32,
    /// Share of sessions at night.
    pub min_night_share: f32,
}

/// `[premium_potential]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PremiumRule {
    /// Bought at least this often ...
    pub min_purchases: u32,
    /// ... and answers at least this share.
    pub min_response_share: f32,
    /// Or bought at least this often, whatever the answers.
    pub purchases_alone: u32,
}

/// `[fallback]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FallbackRule {
    /// Confidence of the COLD_LEAD given to a user no rule matches.
    pub confidence: f32,
}

/// All the thresholds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentationRules {
    /// NEW_USER.
    pub new_user: NewUserRule,
    /// HOT_LEAD.
    pub hot_lead: HotLeadRule,
    /// WARM_LEAD.
    pub warm_lead: WarmLeadRule,
    /// COLD_LEAD.
    pub cold_lead: ColdLeadRule,
    /// ENGAGED.
    pub engaged: EngagedRule,
    /// BOT_LOVER.
    pub bot_lover: BotLoverRule,
    /// NIGHT_OWL.
    pub night_owl: NightOwlRule,
    /// PREMIUM_POTENTIAL.
    pub premium_potential: PremiumRule,
    /// No rule matched.
    pub fallback: FallbackRule,
    /// `night_owl.night_hours`, parsed.
    #[serde(skip)]
    night: HourMask,
}

impl SegmentationRules {
    /// The shipped rules.
    pub fn defaults() -> SegmentationRules {
        SegmentationRules::from_toml_str(DEFAULT_RULES, "config/segmentation.toml")
            .expect("the shipped segmentation.toml is valid (checked by a test)")
    }

    /// Reads and validates a rules file.
    pub fn from_path(path: &Path) -> Result<SegmentationRules, RulesError> {
        read_settings_file(path, SegmentationRules::from_toml_str)
    }

    /// Parses and validates rules TOML; `origin` names the file in errors.
    ///
    /// Every threshold has a range, and a threshold that the others make impossible to
    /// meet (HOT_LEAD needing 50 messages of a window of 8) is refused, naming both fields.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<SegmentationRules, RulesError> {
        let mut rules: SegmentationRules = parse_settings_toml(text, origin)?;
        rules.night = rules.check().map_err(|e| SettingsFileError::invalid(origin, text, e))?;
        Ok(rules)
    }

    /// The checks of [`SegmentationRules::from_toml_str`]; the parsed night hours if all pass.
    fn check(&self) -> Result<HourMask, FieldError> {
        fn fail<T>(field: &str, message: String) -> Result<T, FieldError> {
            Err(FieldError::new(field, message))
        }
        let share = |field: &str, v: f32, zero_ok: bool| -> Result<(), FieldError> {
            let low_ok = if zero_ok { v >= 0.0 } else { v > 0.0 };
            if low_ok && v <= 1.0 {
                Ok(())
            } else {
                let low = if zero_ok { "[0" } else { "(0" };
                fail(field, format!("is not a share in {low}, 1]"))
            }
        };
        let days = |field: &str, v: f32| -> Result<(), FieldError> {
            if v > 0.0 && v <= MAX_DAYS {
                Ok(())
            } else {
                fail(field, format!("must be more than 0 and at most {MAX_DAYS} days"))
            }
        };
        days("new_user.max_age_days", self.new_user.max_age_days)?;

        let hot = &self.hot_lead;
        if !(1..=MAX_WINDOW).contains(&hot.window) {
            return fail("hot_lead.window", format!("must be 1–{MAX_WINDOW} messages (the history kept per user)"));
        }
        if hot.min_messages == 0 {
            return fail("hot_lead.min_messages", "must be at least 1: a share of no messages means nothing".into());
        }
        if hot.min_messages > u32::from(hot.window) {
            return fail(
                "hot_lead.min_messages",
                format!(
                    "is more than hot_lead.window = {}: only the last {} messages are counted, so HOT_LEAD could never be met",
                    hot.window, hot.window
                ),
            );
        }
        share("hot_lead.min_response_share", hot.min_response_share, false)?;

        let warm = &self.warm_lead;
        share("warm_lead.min_response_share", warm.min_response_share, true)?;
        if warm.min_response_share >= hot.min_response_share {
            return fail(
                "warm_lead.min_response_share",
                format!(
                    "is not below hot_lead.min_response_share = {}: WARM_LEAD by responses could never be met",
                    hot.min_response_share
                ),
            );
        }
        days("warm_lead.recently_active_days", warm.recently_active_days)?;

        let cold = &self.cold_lead;
        if cold.min_messages == 0 {
            return fail("cold_lead.min_messages", "must be at least 1: a share of no messages means nothing".into());
        }
        if cold.min_messages > u32::from(hot.window) {
            return fail(
                "cold_lead.min_messages",
                format!(
                    "is more than hot_lead.window = {}: only the last {} messages are counted, so COLD_LEAD by responses could never be met",
                    hot.window, hot.window
                ),
            );
        }
        share("cold_lead.max_response_share", cold.max_response_share, false)?;
        days("cold_lead.inactive_days", cold.inactive_days)?;

        let weekly = self.engaged.min_weekly_sessions;
        if !(weekly > 0.0 && weekly <= MAX_WEEKLY_SESSIONS) {
            return fail(
                "engaged.min_weekly_sessions",
                format!("must be more than 0 and at most {MAX_WEEKLY_SESSIONS} sessions"),
            );
        }
        if !(1..=MAX_BOTS).contains(&self.bot_lover.min_bots) {
            return fail("bot_lover.min_bots", format!("must be 1–{MAX_BOTS} bots"));
        }

        let owl = &self.night_owl;
        let night = parse_hours(&owl.night_hours).map_err(|m| FieldError::new("night_owl.night_hours", m))?;
        if night == HourMask::ALL_DAY {
            return fail("night_owl.night_hours", "is the whole day: every active user would be a NIGHT_OWL".into());
        }
        if !(1..=MAX_SESSIONS).contains(&owl.min_sessions) {
            return fail("night_owl.min_sessions", format!("must be 1–{MAX_SESSIONS} sessions"));
        }
        share("night_owl.min_night_share", owl.min_night_share, false)?;

        let premium = &self.premium_potential;
        if !(1..=MAX_PURCHASES).contains(&premium.min_purchases) {
            return fail("premium_potential.min_purchases", format!("must be 1–{MAX_PURCHASES} purchases"));
        }
        share("premium_potential.min_response_share", premium.min_response_share, true)?;
        if !(premium.min_purchases..=MAX_PURCHASES).contains(&premium.purchases_alone) {
            return fail(
                "premium_potential.purchases_alone",
                format!(
                    "must be from premium_potential.min_purchases = {} to {MAX_PURCHASES}: fewer purchases alone would make the response share pointless",
                    premium.min_purchases
                ),
            );
        }
        share("fallback.confidence", self.fallback.confidence, false)?;
        Ok(night)
    }
}

/// Most messages a rule may look back over: [`crate::domain::ResponseHistory`] keeps 16.
const MAX_WINDOW: u8 = 16;
/// Longest span of days a rule may speak of (ten years).
const MAX_DAYS: f32 = 3_650.0;
/// Most sessions a week ENGAGED may ask for (a hundred a day).
const MAX_WEEKLY_SESSIONS: f32 = 700.0;
/// Most bots BOT_LOVER may ask for.
const MAX_BOTS: u32 = 1_000;
/// Most sessions NIGHT_OWL may ask for before judging.
const MAX_SESSIONS: u32 = 100_000;
/// Most purchases PREMIUM_POTENTIAL may ask for.
const MAX_PURCHASES: u32 = 100_000;

/// One segment a user holds, with its confidence and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Explained {
    /// The segment.
    pub segment: Segment,
    /// Confidence in [0, 1].
    pub confidence: f32,
    /// What made the rules decide, in words.
    pub reasons: Vec<String>,
}

/// Where the rules put their reasons; the hot path passes one that ignores them.
trait Reasons {
    fn add(&mut self, segment: Segment, reason: impl FnOnce() -> String);
}

struct Silent;

impl Reasons for Silent {
    fn add(&mut self, _: Segment, _: impl FnOnce() -> String) {}
}

struct Collected(Vec<(Segment, String)>);

impl Reasons for Collected {
    fn add(&mut self, segment: Segment, reason: impl FnOnce() -> String) {
        self.0.push((segment, reason()));
    }
}

/// The segments `profile` holds at `now`.
pub fn segment(profile: &UserProfile, now: Timestamp, rules: &SegmentationRules) -> SegmentSet {
    evaluate(profile, now, rules, &mut Silent)
}

/// The same decision with its reasons, highest confidence first.
pub fn explain(profile: &UserProfile, now: Timestamp, rules: &SegmentationRules) -> Vec<Explained> {
    let mut reasons = Collected(Vec::new());
    let set = evaluate(profile, now, rules, &mut reasons);
    set.by_confidence()
        .into_iter()
        .map(|a| Explained {
            segment: a.segment,
            confidence: a.confidence,
            reasons: reasons.0.iter().filter(|(s, _)| *s == a.segment).map(|(_, r)| r.clone()).collect(),
        })
        .collect()
}

fn evaluate(profile: &UserProfile, now: Timestamp, rules: &SegmentationRules, why: &mut impl Reasons) -> SegmentSet {
    let mut set = SegmentSet::default();
    let days = |t: Timestamp| (now.secs() - t.secs()) as f32 / DAY as f32;

    let age_days = days(profile.joined_at);
    let max_age = rules.new_user.max_age_days;
    if (0.0..max_age).contains(&age_days) {
        set.insert(Segment::NewUser, 0.95 - 0.35 * age_days / max_age);
        why.add(Segment::NewUser, || format!("joined {age_days:.1} days ago (under {max_age})"));
    }

    let hot = &rules.hot_lead;
    let (answered, window) = profile.responses.last_n(hot.window);
    let share = if window > 0 { answered as f32 / window as f32 } else { 0.0 };
    let inactive_days = days(profile.activity.last_active);
    let answered_text = || format!("answered {answered} of the last {window} messages");
    if window >= hot.min_messages && share >= hot.min_response_share {
        set.insert(Segment::HotLead, 0.5 + 0.5 * share);
        why.add(Segment::HotLead, answered_text);
    } else if window >= hot.min_messages && share >= rules.warm_lead.min_response_share {
        set.insert(Segment::WarmLead, 0.6);
        why.add(Segment::WarmLead, answered_text);
    } else if window < hot.min_messages
        && inactive_days < rules.warm_lead.recently_active_days
        && set.get(Segment::NewUser).is_none()
    {
        set.insert(Segment::WarmLead, 0.45);
        why.add(Segment::WarmLead, || format!("active {inactive_days:.1} days ago with only {window} messages so far"));
    }
    let cold = &rules.cold_lead;
    if window >= cold.min_messages && share < cold.max_response_share {
        set.insert(Segment::ColdLead, if window >= hot.window.into() { 0.8 } else { 0.6 });
        why.add(Segment::ColdLead, answered_text);
    } else if inactive_days >= cold.inactive_days {
        set.insert(Segment::ColdLead, 0.8);
        why.add(Segment::ColdLead, || format!("no activity for {inactive_days:.0} days"));
    }

    let weekly = profile.activity.weekly_sessions_at(now);
    if weekly >= rules.engaged.min_weekly_sessions {
        set.insert(Segment::Engaged, (0.6 + weekly / 100.0).min(0.95));
        why.add(Segment::Engaged, || format!("about {weekly:.1} sessions in the last week"));
    }

    let bots = profile.bots_followed;
    if bots >= rules.bot_lover.min_bots {
        let extra = (bots - rules.bot_lover.min_bots) as f32;
        set.insert(Segment::BotLover, (0.7 + 0.05 * extra).min(0.95));
        why.add(Segment::BotLover, || format!("follows {bots} of our bots"));
    }

    let owl = &rules.night_owl;
    let sessions: u32 = profile.activity.by_local_hour.iter().map(|&c| u32::from(c)).sum();
    if sessions >= owl.min_sessions && sessions > 0 {
        let night: u32 = rules.night.hours().map(|h| u32::from(profile.activity.by_local_hour[usize::from(h)])).sum();
        let night_share = night as f32 / sessions as f32;
        if night_share >= owl.min_night_share {
            set.insert(Segment::NightOwl, night_share.min(0.95));
            why.add(Segment::NightOwl, || {
                format!("{:.0}% of {sessions} sessions between {} local", 100.0 * night_share, owl.night_hours)
            });
        }
    }

    let premium = &rules.premium_potential;
    let purchases = profile.purchases;
    if (purchases >= premium.min_purchases && (window == 0 || share >= premium.min_response_share))
        || purchases >= premium.purchases_alone
    {
        set.insert(Segment::PremiumPotential, (0.6 + 0.1 * purchases as f32).min(0.9));
        why.add(Segment::PremiumPotential, || {
            if window == 0 {
                format!("{purchases} purchases, no messages yet")
            } else {
                format!("{purchases} purchases, answered {answered} of the last {window} messages")
            }
        });
    }

    if set.is_empty() {
        set.insert(Segment::ColdLead, rules.fallback.confidence);
        why.add(Segment::ColdLead, || "no rule matched".to_string());
    }
    set
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ActivitySummary, ResponseHistory, UserId, Zone};

    const NOW: Timestamp = Timestamp(20_000 * DAY);

    fn rules() -> SegmentationRules {
        SegmentationRules::defaults()
    }

    fn profile() -> UserProfile {
        UserProfile {
            id: UserId(1),
            joined_at: Timestamp(NOW.secs() - 100 * DAY),
            zone: Zone::fixed(180),
            activity: ActivitySummary { last_active: Timestamp(NOW.secs() - DAY), ..Default::default() },
            bots_followed: 1,
            purchases: 0,
            responses: ResponseHistory::default(),
        }
    }

    fn with_responses(p: &mut UserProfile, answered: &[bool]) {
        for &a in answered {
            p.responses.record_received();
            if a {
                p.responses.record_response();
            }
        }
    }

    /// New users age out at exactly 7 days.
    #[test]
    fn new_user_ages_out_at_seven_days() {
        let mut p = profile();
        p.joined_at = Timestamp(NOW.secs() - 7 * DAY + 1);
        assert!(segment(&p, NOW, &rules()).get(Segment::NewUser).is_some());
        p.joined_at = Timestamp(NOW.secs() - 7 * DAY);
        assert!(segment(&p, NOW, &rules()).get(Segment::NewUser).is_none());
    }

    /// 40% answered makes a hot lead; just under is warm; under 10% over 5 is cold.
    #[test]
    fn response_share_thresholds() {
        let mut p = profile();
        with_responses(&mut p, &[true, true, false, false, false]); // 2 of 5 = 40%
        let s = segment(&p, NOW, &rules());
        assert!(s.get(Segment::HotLead).is_some() && s.get(Segment::WarmLead).is_none());

        let mut p = profile();
        with_responses(&mut p, &[true, false, false, false, false, false, false, false]); // 12.5%
        let s = segment(&p, NOW, &rules());
        assert!(s.get(Segment::WarmLead).is_some() && s.get(Segment::HotLead).is_none());

        let mut p = profile();
        with_responses(&mut p, &[false; 5]);
        assert_eq!(segment(&p, NOW, &rules()).get(Segment::ColdLead), Some(0.6));
    }

    /// A responsive user becomes a hot lead as answers arrive.
    #[test]
    fn responses_promote_a_user() {
        let mut p = profile();
        with_responses(&mut p, &[false, false, false]);
        assert!(segment(&p, NOW, &rules()).get(Segment::HotLead).is_none());
        with_responses(&mut p, &[true, true]);
        assert!(segment(&p, NOW, &rules()).get(Segment::HotLead).is_some());
    }

    /// Night owls, bot lovers, engaged and premium users at their thresholds.
    #[test]
    fn activity_based_segments() {
        let mut p = profile();
        p.activity.by_local_hour[23] = 5;
        p.activity.by_local_hour[14] = 5;
        assert_eq!(segment(&p, NOW, &rules()).get(Segment::NightOwl), Some(0.5));
        p.activity.by_local_hour[14] = 6;
        assert!(segment(&p, NOW, &rules()).get(Segment::NightOwl).is_none());

        p.bots_followed = 3;
        assert_eq!(segment(&p, NOW, &rules()).get(Segment::BotLover), Some(0.7));

        p.activity.weekly_sessions = 5.0;
        p.activity.last_active = NOW;
        assert!(segment(&p, NOW, &rules()).get(Segment::Engaged).is_some());
        assert!(segment(&p, Timestamp(NOW.secs() + DAY), &rules()).get(Segment::Engaged).is_none(), "decays");

        p.purchases = 1;
        assert!(segment(&p, NOW, &rules()).get(Segment::PremiumPotential).is_some());
        with_responses(&mut p, &[false; 5]);
        assert!(segment(&p, NOW, &rules()).get(Segment::PremiumPotential).is_none());
    }

    /// Reasons say what the rules saw, and `explain` agrees with `segment`.
    #[test]
    fn explanations_carry_reasons() {
        let mut p = profile();
        with_responses(&mut p, &[true, true, true, true, false]);
        p.bots_followed = 5;
        let explained = explain(&p, NOW, &rules());
        let hot = explained.iter().find(|e| e.segment == Segment::HotLead).unwrap();
        assert_eq!(hot.reasons, vec!["answered 4 of the last 5 messages".to_string()]);
        let bots = explained.iter().find(|e| e.segment == Segment::BotLover).unwrap();
        assert_eq!(bots.reasons, vec!["follows 5 of our bots".to_string()]);
        let set = segment(&p, NOW, &rules());
        assert_eq!(explained.len(), set.iter().count());
        assert!(explained.windows(2).all(|w| w[0].confidence >= w[1].confidence));
    }

    /// The thresholds come from the file: a changed threshold changes the decision, and a
    /// bad value names its field.
    #[test]
    fn thresholds_come_from_the_file() {
        let mut p = profile();
        p.bots_followed = 2;
        assert!(segment(&p, NOW, &rules()).get(Segment::BotLover).is_none());
        let text = DEFAULT_RULES.replace("min_bots = 3", "min_bots = 2");
        let two = SegmentationRules::from_toml_str(&text, "r.toml").unwrap();
        assert!(segment(&p, NOW, &two).get(Segment::BotLover).is_some());
        let text = DEFAULT_RULES.replace("min_night_share = 0.5", "min_night_share = 1.5");
        let err = SegmentationRules::from_toml_str(&text, "r.toml").unwrap_err().to_string();
        assert!(err.contains("field night_owl.min_night_share"), "{err}");
        let text = DEFAULT_RULES.replace("night_hours = \"22-4\"", "night_hours = \"late\"");
        let err = SegmentationRules::from_toml_str(&text, "r.toml").unwrap_err().to_string();
        assert!(err.contains("field night_owl.night_hours"), "{err}");
    }

    fn rules_error(old: &str, new: &str) -> String {
        assert!(DEFAULT_RULES.contains(old), "{old}");
        let text = DEFAULT_RULES.replacen(old, new, 1);
        SegmentationRules::from_toml_str(&text, "r.toml").unwrap_err().to_string()
    }

    /// Thresholds that the others make impossible to meet are refused naming both fields,
    /// at the line of the first, with the value as written (issue 10).
    #[test]
    fn impossible_thresholds_name_both_fields() {
        let line = DEFAULT_RULES.lines().position(|l| l.starts_with("min_messages = 3")).unwrap() + 1;
        assert_eq!(
            rules_error("min_messages = 3 ", "min_messages = 50 "),
            format!(
                "r.toml:{line}: field hot_lead.min_messages: 50 is more than hot_lead.window = 8: only the last 8 \
                 messages are counted, so HOT_LEAD could never be met"
            )
        );
        let err = rules_error("min_messages = 5 ", "min_messages = 9 ");
        assert!(err.contains("field cold_lead.min_messages: 9 is more than hot_lead.window = 8"), "{err}");
        let err = rules_error("min_response_share = 0.1 ", "min_response_share = 0.4 ");
        assert!(err.contains("field warm_lead.min_response_share: 0.4 is not below hot_lead.min_response_share"));
        let err = rules_error("purchases_alone = 3 ", "purchases_alone = 0 ");
        assert!(
            err.contains("field premium_potential.purchases_alone: 0 must be from premium_potential.min_purchases")
        );
    }

    /// Every threshold has a range: shares in [0, 1], counts and days positive and bounded,
    /// a night that is not the whole day; values are shown as written.
    #[test]
    fn every_threshold_has_a_range() {
        for (old, new, says) in [
            ("window = 8 ", "window = 17 ", "field hot_lead.window: 17 must be 1–16"),
            ("window = 8 ", "window = 0 ", "field hot_lead.window: 0 must be 1–16"),
            ("min_messages = 3 ", "min_messages = 0 ", "field hot_lead.min_messages: 0 must be at least 1"),
            (
                "min_response_share = 0.4 ",
                "min_response_share = 0 ",
                "field hot_lead.min_response_share: 0 is not a share in (0, 1]",
            ),
            (
                "max_response_share = 0.1 ",
                "max_response_share = 0.0 ",
                "field cold_lead.max_response_share: 0.0 is not",
            ),
            ("min_night_share = 0.5 ", "min_night_share = nan ", "field night_owl.min_night_share: nan is not a share"),
            (
                "max_age_days = 7.0 ",
                "max_age_days = 1e300 ",
                "field new_user.max_age_days: 1e300 must be more than 0 and at most 3650 days",
            ),
            ("inactive_days = 14.0 ", "inactive_days = -1 ", "field cold_lead.inactive_days: -1 must be"),
            (
                "min_weekly_sessions = 5.0 ",
                "min_weekly_sessions = inf ",
                "field engaged.min_weekly_sessions: inf must be",
            ),
            ("min_bots = 3 ", "min_bots = 0 ", "field bot_lover.min_bots: 0 must be 1–1000"),
            ("min_sessions = 10 ", "min_sessions = 0 ", "field night_owl.min_sessions: 0 must be"),
            (
                "night_hours = \"22-4\"",
                "night_hours = \"0-24\"",
                "field night_owl.night_hours: \"0-24\" is the whole day",
            ),
            ("night_hours = \"22-4\"", "night_hours = \"22-22\"", "field night_owl.night_hours: \"22-22\" has `22-22`"),
            ("min_purchases = 1 ", "min_purchases = 0 ", "field premium_potential.min_purchases: 0 must be"),
            ("confidence = 0.3 ", "confidence = 0 ", "field fallback.confidence: 0 is not a share in (0, 1]"),
            ("window = 8 ", "window = 1e300 ", "field hot_lead.window: 1e300 is not a whole number 0–255"),
        ] {
            let err = rules_error(old, new);
            assert!(err.contains(says), "{new}: {err}");
            assert!(err.starts_with("r.toml:") && !err.starts_with("r.toml:1:"), "{err}");
        }
        let text = format!("{DEFAULT_RULES}\n[hot_lead]\nwindow = 8\n");
        let err = SegmentationRules::from_toml_str(&text, "r.toml").unwrap_err().to_string();
        assert!(err.ends_with(": duplicate table [hot_lead]"), "{err}");
        let text = format!("{DEFAULT_RULES}\n[vip]\nmin = 8\n");
        let err = SegmentationRules::from_toml_str(&text, "r.toml").unwrap_err().to_string();
        assert!(err.contains("unknown table [vip]; expected one of") && err.contains("`night_owl`"), "{err}");
    }

    /// Everyone holds at least one segment; long silence makes a cold lead.
    #[test]
    fn fallback_and_inactivity() {
        let mut p = profile();
        p.activity.last_active = Timestamp(NOW.secs() - 20 * DAY);
        let s = segment(&p, NOW, &rules());
        assert_eq!(s.get(Segment::ColdLead), Some(0.8));
        assert!(!s.is_empty());
    }
}
