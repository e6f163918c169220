//! Scenario files: the population's make-up and the behaviour model's parameters, parsed
//! from TOML and validated, with errors naming the file, line and field.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::content::ContentKind;
use crate::population::UserType;
use crate::toml_text::{TomlFault, toml_fault, written_at};
use crate::zone::{EDGE_ZONES, TimeZone};

/// The scenario shipped with gavat-sim.
pub const DEFAULT_SCENARIO: &str = include_str!("../scenarios/default.toml");

/// Longest scenario name, in characters (it is printed in every report).
pub const MAX_NAME_CHARS: usize = 64;
/// Most timezones a population may list.
const MAX_TIMEZONES: usize = 64;

/// Why a scenario could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("{path}: cannot read: {cause}")]
    Read {
        /// The file.
        path: String,
        /// Why (part of the message, so not also reported as a source).
        cause: std::io::Error,
    },
    /// Not about one field: broken TOML syntax, a duplicate or an unknown table.
    #[error("{path}:{line}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// 1-based line.
        line: usize,
        /// What is wrong, e.g. `duplicate table [groups]`.
        message: String,
    },
    /// A wrong type, a missing or unknown field, or a value outside its range (a
    /// probability of 1.5, `posts_per_minute = 0`, an empty range…).
    #[error("{path}:{line}: field {field}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// 1-based line of the value.
        line: usize,
        /// The field, e.g. `types.hot_lead.base_response.mean`.
        field: String,
        /// What is wrong, starting with the value as written.
        message: String,
    },
}

/// A Beta distribution given by its mean and concentration (α + β).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BetaParam {
    /// Mean, in (0, 1).
    pub mean: f64,
    /// α + β, > 0: higher is tighter around the mean.
    pub concentration: f64,
}

/// Timezone weight: an IANA zone (`zone = "Europe/Berlin"`) or a fixed offset
/// (`offset = 180`), exactly one of them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimezoneWeight {
    /// Offset from UTC, minutes, fixed all year.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<i32>,
    /// An IANA zone name: its offset follows DST.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// Relative weight.
    pub weight: f64,
}

impl TimezoneWeight {
    /// The zone it names (checked by validation: an unknown name reads as UTC here).
    pub fn time_zone(&self) -> TimeZone {
        match (&self.zone, self.offset) {
            (Some(name), _) => name.parse().map(TimeZone::Named).unwrap_or(TimeZone::Offset(0)),
            (None, offset) => TimeZone::Offset(offset.unwrap_or(0)),
        }
    }
}

/// Where the population's time zones come from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ZonePreset {
    /// The weighted `timezones` list.
    #[default]
    Listed,
    /// Every user in one of the calendar-edge zones ([`crate::zone::EDGE_ZONES`]), evenly:
    /// DST in New York and Berlin, +5:30, +5:45, +14, −12, no local midnight, a skipped day.
    Edges,
}

/// Who is in the population.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PopulationParams {
    /// Weights of the latent types.
    pub mix: TypeTable<f64>,
    /// Zones (or offsets) and their weights (may be left out with `zones = "edges"`).
    #[serde(default)]
    pub timezones: Vec<TimezoneWeight>,
    /// `"listed"` (default): draw from `timezones`; `"edges"`: pack the population at the
    /// calendar edges.
    #[serde(default)]
    pub zones: ZonePreset,
}

/// One value per latent type.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TypeTable<T> {
    /// Hot leads.
    pub hot_lead: T,
    /// Warm leads.
    pub warm_lead: T,
    /// Cold leads.
    pub cold_lead: T,
    /// Engaged users.
    pub engaged: T,
    /// Bot lovers.
    pub bot_lover: T,
    /// Night owls.
    pub night_owl: T,
    /// New users.
    pub new_user: T,
    /// Premium potentials.
    pub premium_potential: T,
}

impl<T> TypeTable<T> {
    /// The value for one type.
    pub fn get(&self, t: UserType) -> &T {
        match t {
            UserType::HotLead => &self.hot_lead,
            UserType::WarmLead => &self.warm_lead,
            UserType::ColdLead => &self.cold_lead,
            UserType::Engaged => &self.engaged,
            UserType::BotLover => &self.bot_lover,
            UserType::NightOwl => &self.night_owl,
            UserType::NewUser => &self.new_user,
            UserType::PremiumPotential => &self.premium_potential,
        }
    }
}

/// Affinity per content kind.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContentAffinity {
    /// Offers.
    pub offer: f64,
    /// Reminders.
    pub reminder: f64,
    /// Educational content.
    pub educational: f64,
    /// News.
    pub news: f64,
    /// Premium offers.
    pub premium: f64,
    /// Community content.
    pub community: f64,
}

impl ContentAffinity {
    /// In [`ContentKind::ALL`] order.
    pub fn as_array(&self) -> [f64; 6] {
        [self.offer, self.reminder, self.educational, self.news, self.premium, self.community]
    }
}

/// How one latent type is drawn.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TypeParams {
    /// P(reply) at the best hour and content, unfatigued.
    pub base_response: BetaParam,
    /// Mean spontaneous sessions a day.
    pub activity_per_day: f64,
    /// Local hour of peak activity.
    pub peak_hour: f64,
    /// Spread of activity around the peak, hours.
    pub hour_spread: f64,
    /// Bots followed, inclusive range.
    pub bots: [u32; 2],
    /// P(purchase | reply).
    pub purchase_propensity: BetaParam,
    /// Purchases before the simulation, inclusive range.
    pub prior_purchases: [u32; 2],
    /// Messages received in the 30 days before, inclusive range.
    pub prior_messages: [u32; 2],
    /// Days since joining, inclusive range.
    pub joined_days_ago: [u32; 2],
    /// Content affinities.
    pub content: ContentAffinity,
    /// k in exp(−k · load).
    pub fatigue_sensitivity: f64,
    /// P(opt out | message), unfatigued.
    pub opt_out_base: f64,
}

/// The behaviour model's parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BehaviourParams {
    /// Time constant of the fatigue load, hours.
    pub fatigue_tau_hours: f64,
    /// Response factor at the least active hour.
    pub hour_floor: f64,
    /// Response factor at zero content affinity.
    pub content_floor: f64,
    /// Multiplier of P(reply) for group posts.
    pub group_response_factor: f64,
    /// Multiplier of P(opt out) for group posts.
    pub group_opt_out_factor: f64,
    /// Growth of opt-out risk per unit of load past the tolerance.
    pub opt_out_fatigue_gain: f64,
    /// Load tolerated without extra opt-out risk.
    pub opt_out_tolerance: f64,
    /// Median reply delay, minutes.
    pub response_delay_median_minutes: f64,
    /// Log-normal sigma of the reply delay.
    pub response_delay_sigma: f64,
    /// Mean delay from reply to purchase, minutes.
    pub conversion_delay_mean_minutes: f64,
    /// Opt-outs arrive uniformly within this many minutes.
    pub opt_out_delay_max_minutes: f64,
}

/// Groups.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupParams {
    /// Groups per 1,000 users.
    pub per_thousand_users: f64,
    /// Members per group, inclusive range.
    pub members: [u32; 2],
    /// Posts a day by others in the group.
    pub activity_per_day: f64,
    /// Telegram's limit of posts per minute to groups.
    pub posts_per_minute: u32,
    /// Posts per group per local day.
    pub daily_limit: u32,
    /// Least hours between posts to one group.
    pub cooldown_hours: f64,
    /// How often a post to a group is considered, hours.
    pub post_interval_hours: f64,
    /// Group posts one member may see per local day, over all groups (the member-exposure
    /// limit; a group post is not a direct message and does not count against the member's
    /// direct caps). Optional, default 3.
    #[serde(default = "default_member_exposure_limit")]
    pub member_exposure_limit: u32,
}

/// At most 3 group posts a member sees per local day, unless the scenario says otherwise.
fn default_member_exposure_limit() -> u32 {
    3
}

/// Telegram as the simulated transport models it: our sender's limits (as in a live run)
/// and the platform's own, which answers 429 with `retry_after` when a bot goes past it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelegramParams {
    /// Our sender's limit: messages a second through one bot (Telegram publishes 30).
    pub per_bot_per_second: u32,
    /// Our sender's limit: messages a minute from one bot into one private chat (60).
    pub per_private_chat_per_minute: u32,
    /// Our sender's limit: messages a minute from one bot into one group (20).
    pub per_group_per_minute: u32,
    /// What the platform tolerates through one bot in any one second before it answers
    /// 429 (default: the published 30; set lower to rehearse a platform throttling harder
    /// than it says).
    pub platform_per_bot_per_second: u32,
    /// The `retry_after` of the platform's 429, seconds: the bot is frozen that long.
    pub retry_after_secs: u32,
}

impl Default for TelegramParams {
    fn default() -> TelegramParams {
        TelegramParams {
            per_bot_per_second: 30,
            per_private_chat_per_minute: 60,
            per_group_per_minute: 20,
            platform_per_bot_per_second: 30,
            retry_after_secs: 5,
        }
    }
}

/// A whole scenario.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Its name.
    pub name: String,
    /// Who is in the population.
    pub population: PopulationParams,
    /// How each type is drawn.
    pub types: TypeTable<TypeParams>,
    /// How users react.
    pub behaviour: BehaviourParams,
    /// Groups.
    pub groups: GroupParams,
    /// Telegram's limits (optional: the published ones by default).
    #[serde(default)]
    pub telegram: TelegramParams,
    /// When the simulation starts, RFC 3339 (`"2026-03-06T00:00:00Z"`); optional, default
    /// 2026-01-01T00:00:00Z. Put it before a DST change to simulate across it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
}

impl Scenario {
    /// The start the scenario asks for (unix seconds), if it names one.
    pub fn start_unix(&self) -> Option<i64> {
        self.start.as_deref().and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok()).map(|t| t.timestamp())
    }

    /// The zones users are drawn from, with their weights.
    pub fn zone_weights(&self) -> Vec<(TimeZone, f64)> {
        match self.population.zones {
            ZonePreset::Listed => self.population.timezones.iter().map(|t| (t.time_zone(), t.weight)).collect(),
            ZonePreset::Edges => {
                EDGE_ZONES.iter().filter_map(|name| name.parse().ok()).map(|tz| (TimeZone::Named(tz), 1.0)).collect()
            }
        }
    }

    /// The shipped default scenario.
    pub fn default_scenario() -> Scenario {
        Scenario::from_toml_str(DEFAULT_SCENARIO, "sim/scenarios/default.toml")
            .expect("the shipped scenario is valid (checked by a test)")
    }

    /// Reads and validates a scenario file.
    pub fn from_path(path: &Path) -> Result<Scenario, ScenarioError> {
        let display = path.display().to_string();
        let text =
            std::fs::read_to_string(path).map_err(|cause| ScenarioError::Read { path: display.clone(), cause })?;
        Scenario::from_toml_str(&text, &display)
    }

    /// Parses and validates scenario TOML; `origin` names the file in errors, with the line
    /// and the value as written. Every number has a range (see `sim/README.md`): a rate
    /// that would hang the run at 0 must be positive, and every count is bounded so that
    /// a run cannot explode.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Scenario, ScenarioError> {
        let path = || origin.to_string();
        let scenario: Scenario = toml::from_str(text).map_err(|e| match toml_fault(text, &e) {
            TomlFault::File { line, message } => ScenarioError::Parse { path: path(), line, message },
            TomlFault::Field { line, field, message } => ScenarioError::Invalid { path: path(), line, field, message },
        })?;
        scenario.validate().map_err(|(field, message)| {
            let (line, message) = match written_at(text, &field) {
                Some((line, Some(value))) => (line, format!("{value} {message}")),
                Some((line, None)) => (line, message),
                None => (1, message),
            };
            ScenarioError::Invalid { path: path(), line, field, message }
        })?;
        Ok(scenario)
    }

    /// The range checks; an error is the field's path and what is wrong (to follow the
    /// value as written).
    fn validate(&self) -> Result<(), (String, String)> {
        type Check = Result<(), (String, String)>;
        // [lo, hi]
        let within = |field: String, v: f64, lo: f64, hi: f64| -> Check {
            if v >= lo && v <= hi { Ok(()) } else { Err((field, format!("must be in [{lo}, {hi}]"))) }
        };
        // (lo, hi]: zero (or lo) would divide by zero or hang the run.
        let above = |field: String, v: f64, lo: f64, hi: f64| -> Check {
            if v > lo && v <= hi { Ok(()) } else { Err((field, format!("must be in ({lo}, {hi}]"))) }
        };
        let count = |field: String, v: u32, lo: u32, hi: u32| -> Check {
            if (lo..=hi).contains(&v) { Ok(()) } else { Err((field, format!("must be {lo}–{hi}"))) }
        };
        // [min, max] with lo ≤ min ≤ max ≤ hi.
        let range = |field: String, r: [u32; 2], lo: u32, hi: u32| -> Check {
            if r[0] > r[1] {
                Err((field, "has its min above its max".into()))
            } else if r[0] < lo || r[1] > hi {
                Err((field, format!("must lie within [{lo}, {hi}]")))
            } else {
                Ok(())
            }
        };
        let beta = |field: &str, b: BetaParam| -> Check {
            if !(b.mean > 0.0 && b.mean < 1.0) {
                return Err((format!("{field}.mean"), "must be strictly between 0 and 1".into()));
            }
            above(format!("{field}.concentration"), b.concentration, 0.0, 10_000.0)
        };

        if self.name.trim().is_empty() || self.name.chars().count() > MAX_NAME_CHARS {
            return Err(("name".into(), format!("must be 1–{MAX_NAME_CHARS} characters")));
        }
        if self.name.chars().any(char::is_control) {
            return Err(("name".into(), "holds a control character (a newline, a tab…)".into()));
        }
        let mut total = 0.0;
        for t in UserType::ALL {
            let w = *self.population.mix.get(t);
            within(format!("population.mix.{}", t.as_str()), w, 0.0, 1e6)?;
            total += w;
        }
        if total <= 0.0 {
            return Err(("population.mix".into(), "has weights that are all zero".into()));
        }
        let zones = &self.population.timezones;
        let listed = self.population.zones == ZonePreset::Listed;
        if (listed && zones.is_empty()) || zones.len() > MAX_TIMEZONES {
            return Err(("population.timezones".into(), format!("must list 1–{MAX_TIMEZONES} timezones")));
        }
        let mut tz_total = 0.0;
        for (i, tz) in zones.iter().enumerate() {
            within(format!("population.timezones[{i}].weight"), tz.weight, 0.0, 1e6)?;
            match (&tz.zone, tz.offset) {
                (Some(_), Some(_)) | (None, None) => {
                    return Err((
                        format!("population.timezones[{i}]"),
                        "must give exactly one of zone (an IANA name) and offset (minutes)".into(),
                    ));
                }
                (Some(name), None) => {
                    if name.parse::<chrono_tz::Tz>().is_err() {
                        return Err((
                            format!("population.timezones[{i}].zone"),
                            "is not an IANA time zone (e.g. Europe/Berlin, Asia/Kolkata)".into(),
                        ));
                    }
                }
                (None, Some(offset)) => {
                    if !(-720..=840).contains(&offset) {
                        return Err((
                            format!("population.timezones[{i}].offset"),
                            "is not a UTC offset in minutes, -720 to 840".into(),
                        ));
                    }
                }
            }
            tz_total += tz.weight;
        }
        if listed && tz_total <= 0.0 {
            return Err(("population.timezones".into(), "has weights that are all zero".into()));
        }
        if let Some(start) = &self.start {
            match chrono::DateTime::parse_from_rfc3339(start) {
                Ok(t) if (0..=4_102_444_800).contains(&t.timestamp()) => {}
                _ => {
                    return Err((
                        "start".into(),
                        "is not an RFC 3339 time from 1970 to 2100, like \"2026-03-06T00:00:00Z\"".into(),
                    ));
                }
            }
        }
        for t in UserType::ALL {
            let p = self.types.get(t);
            let f = format!("types.{}", t.as_str());
            beta(&format!("{f}.base_response"), p.base_response)?;
            beta(&format!("{f}.purchase_propensity"), p.purchase_propensity)?;
            within(format!("{f}.activity_per_day"), p.activity_per_day, 0.0, 100.0)?;
            if !(p.peak_hour >= 0.0 && p.peak_hour < 24.0) {
                return Err((format!("{f}.peak_hour"), "is not an hour in [0, 24)".into()));
            }
            within(format!("{f}.hour_spread"), p.hour_spread, 0.1, 24.0)?;
            range(format!("{f}.bots"), p.bots, 1, 1_000)?;
            range(format!("{f}.prior_purchases"), p.prior_purchases, 0, 1_000)?;
            range(format!("{f}.prior_messages"), p.prior_messages, 0, 1_000)?;
            range(format!("{f}.joined_days_ago"), p.joined_days_ago, 0, 3_650)?;
            for (k, v) in ContentKind::ALL.iter().zip(p.content.as_array()) {
                within(format!("{f}.content.{}", k.as_str()), v, 0.0, 1.0)?;
            }
            within(format!("{f}.fatigue_sensitivity"), p.fatigue_sensitivity, 0.0, 10.0)?;
            within(format!("{f}.opt_out_base"), p.opt_out_base, 0.0, 1.0)?;
        }
        let b = &self.behaviour;
        above("behaviour.fatigue_tau_hours".into(), b.fatigue_tau_hours, 0.0, 8_760.0)?;
        within("behaviour.hour_floor".into(), b.hour_floor, 0.0, 1.0)?;
        within("behaviour.content_floor".into(), b.content_floor, 0.0, 1.0)?;
        within("behaviour.group_response_factor".into(), b.group_response_factor, 0.0, 1.0)?;
        within("behaviour.group_opt_out_factor".into(), b.group_opt_out_factor, 0.0, 1.0)?;
        within("behaviour.opt_out_fatigue_gain".into(), b.opt_out_fatigue_gain, 0.0, 10.0)?;
        within("behaviour.opt_out_tolerance".into(), b.opt_out_tolerance, 0.0, 1_000.0)?;
        above("behaviour.response_delay_median_minutes".into(), b.response_delay_median_minutes, 0.0, 2_880.0)?;
        within("behaviour.response_delay_sigma".into(), b.response_delay_sigma, 0.0, 5.0)?;
        above("behaviour.conversion_delay_mean_minutes".into(), b.conversion_delay_mean_minutes, 0.0, 43_200.0)?;
        above("behaviour.opt_out_delay_max_minutes".into(), b.opt_out_delay_max_minutes, 0.0, 1_440.0)?;
        let g = &self.groups;
        within("groups.per_thousand_users".into(), g.per_thousand_users, 0.0, 100.0)?;
        range("groups.members".into(), g.members, 1, 10_000)?;
        within("groups.activity_per_day".into(), g.activity_per_day, 0.0, 10_000.0)?;
        count("groups.posts_per_minute".into(), g.posts_per_minute, 1, 1_000)?;
        count("groups.daily_limit".into(), g.daily_limit, 0, 24)?;
        within("groups.cooldown_hours".into(), g.cooldown_hours, 0.0, 720.0)?;
        within("groups.post_interval_hours".into(), g.post_interval_hours, 1.0, 720.0)?;
        count("groups.member_exposure_limit".into(), g.member_exposure_limit, 0, 100)?;
        let t = &self.telegram;
        // Our limits may be set lower than Telegram's, never higher (as in gavat.toml).
        count("telegram.per_bot_per_second".into(), t.per_bot_per_second, 1, 30)?;
        count("telegram.per_private_chat_per_minute".into(), t.per_private_chat_per_minute, 1, 60)?;
        count("telegram.per_group_per_minute".into(), t.per_group_per_minute, 1, 20)?;
        count("telegram.platform_per_bot_per_second".into(), t.platform_per_bot_per_second, 1, 1_000)?;
        count("telegram.retry_after_secs".into(), t.retry_after_secs, 1, 3_600)?;
        Ok(())
    }

    /// Telegram's limit on posts per minute to groups.
    pub fn group_posts_per_minute(&self) -> u32 {
        self.groups.posts_per_minute
    }

    /// A group's own cap on posts per local day.
    pub fn group_daily_limit(&self) -> u32 {
        self.groups.daily_limit
    }

    /// Least seconds between two posts to one group.
    pub fn group_cooldown_secs(&self) -> i64 {
        (self.groups.cooldown_hours * 3_600.0).round() as i64
    }

    /// Group posts one member may see per local day, over all groups.
    pub fn group_member_exposure_limit(&self) -> u32 {
        self.groups.member_exposure_limit
    }

    /// How often a post to a group is considered, seconds.
    pub fn group_post_interval_secs(&self) -> i64 {
        (self.groups.post_interval_hours * 3_600.0).round() as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shipped scenario parses and validates.
    #[test]
    fn default_parses() {
        let s = Scenario::default_scenario();
        assert_eq!(s.name, "default");
        assert_eq!(s.group_posts_per_minute(), 20);
    }

    /// Zones: the shipped scenario lists IANA zones; an unknown name, or a zone and an
    /// offset in one entry, is named with its field; `zones = "edges"` with a `start` packs
    /// the population at the edge zones from that instant; a bad `start` is named.
    #[test]
    fn zones_and_start() {
        let shipped = Scenario::default_scenario();
        assert!(shipped.zone_weights().iter().all(|(z, _)| matches!(z, TimeZone::Named(_))));
        assert_eq!(shipped.start_unix(), None);
        let with = |from: &str, to: &str| DEFAULT_SCENARIO.replacen(from, to, 1);
        let err = |text: String| Scenario::from_toml_str(&text, "s.toml").expect_err("invalid").to_string();
        let unknown = err(with("Europe/Moscow", "Mars/Olympus"));
        assert!(unknown.contains("field population.timezones[0].zone") && unknown.contains("IANA"), "{unknown}");
        let both = err(with(r#"{ zone = "Europe/Moscow","#, r#"{ zone = "Europe/Moscow", offset = 180,"#));
        assert!(both.contains("population.timezones[0]") && both.contains("exactly one"), "{both}");
        let edges = with("[population]\n", "start = \"2026-03-06T00:00:00Z\"\n\n[population]\nzones = \"edges\"\n");
        let s = Scenario::from_toml_str(&edges, "s.toml").expect("valid");
        assert_eq!(s.start_unix(), Some(1_772_755_200));
        assert_eq!(s.zone_weights().len(), EDGE_ZONES.len());
        let bad_start = err(with("[population]\n", "start = \"March\"\n\n[population]\n"));
        assert!(bad_start.contains("field start"), "{bad_start}");
    }

    /// Broken syntax reports the right line.
    #[test]
    fn malformed_toml_reports_its_line() {
        let text = DEFAULT_SCENARIO.replacen("peak_hour = 19", "peak_hour = = 19", 1);
        let line = text.lines().position(|l| l.contains("= = 19")).unwrap() + 1;
        let err = Scenario::from_toml_str(&text, "s.toml").unwrap_err().to_string();
        assert!(err.starts_with(&format!("s.toml:{line}:")), "{err}");
    }

    /// An unknown field is named.
    #[test]
    fn unknown_field_is_named() {
        let text = DEFAULT_SCENARIO.replacen("peak_hour = 19", "peak_hour = 19\npeek_hour = 3", 1);
        let err = Scenario::from_toml_str(&text, "s.toml").unwrap_err().to_string();
        assert!(err.contains("peek_hour"), "{err}");
    }

    /// A probability out of range names the line, the field path and the value as written.
    #[test]
    fn out_of_range_probability_names_the_field() {
        let text = DEFAULT_SCENARIO.replacen("mean = 0.45", "mean = 1.5", 1);
        let line = text.lines().position(|l| l.contains("mean = 1.5")).unwrap() + 1;
        let err = Scenario::from_toml_str(&text, "s.toml").unwrap_err().to_string();
        assert_eq!(
            err,
            format!("s.toml:{line}: field types.hot_lead.base_response.mean: 1.5 must be strictly between 0 and 1")
        );
    }

    fn with(old: &str, new: &str) -> String {
        assert!(DEFAULT_SCENARIO.contains(old), "{old}");
        DEFAULT_SCENARIO.replacen(old, new, 1)
    }

    fn error_of(text: &str) -> String {
        Scenario::from_toml_str(text, "s.toml").unwrap_err().to_string()
    }

    fn line_of(text: &str, needle: &str) -> usize {
        text.lines().position(|l| l.contains(needle)).unwrap() + 1
    }

    /// The rates that hung or exploded a run (issue 10) are refused with file:line: field
    /// and the value as written — `1e6`, not a long expansion.
    #[test]
    fn hanging_and_exploding_rates_are_refused() {
        let text = with("posts_per_minute = 20", "posts_per_minute = 0");
        let line = line_of(&text, "posts_per_minute = 0");
        assert_eq!(error_of(&text), format!("s.toml:{line}: field groups.posts_per_minute: 0 must be 1–1000"));
        let text = with("per_thousand_users = 5.0", "per_thousand_users = 1e6");
        let line = line_of(&text, "1e6");
        assert_eq!(error_of(&text), format!("s.toml:{line}: field groups.per_thousand_users: 1e6 must be in [0, 100]"));
        let text = with("post_interval_hours = 12.0", "post_interval_hours = 1e-9");
        assert!(error_of(&text).contains("field groups.post_interval_hours: 1e-9 must be in [1, 720]"));
        let text = with("activity_per_day = 1.2", "activity_per_day = 1e300");
        assert!(error_of(&text).contains("field types.hot_lead.activity_per_day: 1e300 must be in [0, 100]"));
        let text = with("members = [5, 40]", "members = [5, 4000000]");
        assert!(error_of(&text).contains("field groups.members: [5, 4000000] must lie within [1, 10000]"));
        let text = with("prior_messages = [5, 10]", "prior_messages = [10, 5]");
        assert!(error_of(&text).contains("field types.hot_lead.prior_messages: [10, 5] has its min above its max"));
        let text = with(r#"{ zone = "Europe/London", weight = 0.04 }"#, r#"{ zone = "Europe/London", weight = nan }"#);
        assert!(error_of(&text).contains("field population.timezones[6].weight: nan must be in [0, 1000000]"));
        let text = with("hot_lead = 0.06", "hot_lead = -0.06");
        assert!(error_of(&text).contains("field population.mix.hot_lead: -0.06 must be in"));
    }

    /// Type errors name the field and the value as written; duplicate and unknown tables are
    /// named as tables; a long name is refused without being repeated in full.
    #[test]
    fn structure_errors_name_what_is_written() {
        let text = with("daily_limit = 2 ", "daily_limit = 1e300 ");
        let line = line_of(&text, "1e300");
        assert_eq!(
            error_of(&text),
            format!("s.toml:{line}: field groups.daily_limit: 1e300 is not a whole number 0–4294967295")
        );
        let text = format!("{DEFAULT_SCENARIO}\n[behaviour]\nhour_floor = 0.1\n");
        let line = text.lines().enumerate().filter(|(_, l)| *l == "[behaviour]").last().unwrap().0 + 1;
        assert_eq!(error_of(&text), format!("s.toml:{line}: duplicate table [behaviour]"));
        let text = format!("{DEFAULT_SCENARIO}\n[vip]\nx = 1\n");
        let err = error_of(&text);
        assert!(err.contains("unknown table [vip]") && err.contains("`groups`"), "{err}");
        let text = format!("{DEFAULT_SCENARIO}\n[types.vip]\nx = 1\n");
        assert!(error_of(&text).contains("unknown table [types.vip]"));
        let long = "n".repeat(100_000);
        let text = with("name = \"default\"", &format!("name = \"{long}\""));
        let err = error_of(&text);
        assert!(err.starts_with("s.toml:4: field name: \"nnnn") && err.contains("must be 1–64 characters"), "{err}");
        assert!(err.len() < 200, "{err}");
        let text = with("peak_hour = 19", "peak_hour = \"seven\"");
        assert!(error_of(&text).contains("field types.hot_lead.peak_hour: \"seven\" is not a number"));
    }

    /// Every field at the low or the high edge of its range.
    fn at_edge(high: bool) -> Scenario {
        let mut s = Scenario::default_scenario();
        let pick = |lo: f64, hi: f64| if high { hi } else { lo };
        let span = |lo: u32, hi: u32| if high { [hi, hi] } else { [lo, lo] };
        s.name = if high { "x".repeat(MAX_NAME_CHARS) } else { "x".into() };
        s.population.timezones = (0..if high { MAX_TIMEZONES } else { 1 })
            .map(|i| TimezoneWeight {
                offset: Some(if high { 840 } else { -720 } - i as i32),
                zone: None,
                weight: pick(1e-9, 1e6),
            })
            .collect();
        for t in UserType::ALL {
            let mix = match t {
                UserType::HotLead => &mut s.population.mix.hot_lead,
                UserType::WarmLead => &mut s.population.mix.warm_lead,
                UserType::ColdLead => &mut s.population.mix.cold_lead,
                UserType::Engaged => &mut s.population.mix.engaged,
                UserType::BotLover => &mut s.population.mix.bot_lover,
                UserType::NightOwl => &mut s.population.mix.night_owl,
                UserType::NewUser => &mut s.population.mix.new_user,
                UserType::PremiumPotential => &mut s.population.mix.premium_potential,
            };
            *mix = pick(if t == UserType::HotLead { 1e-9 } else { 0.0 }, 1e6);
        }
        let beta = BetaParam { mean: pick(1e-9, 1.0 - 1e-9), concentration: pick(1e-9, 10_000.0) };
        let content = pick(0.0, 1.0);
        let params = TypeParams {
            base_response: beta,
            activity_per_day: pick(0.0, 100.0),
            peak_hour: pick(0.0, 23.999),
            hour_spread: pick(0.1, 24.0),
            bots: span(1, 1_000),
            purchase_propensity: beta,
            prior_purchases: span(0, 1_000),
            prior_messages: span(0, 1_000),
            joined_days_ago: span(0, 3_650),
            content: ContentAffinity {
                offer: content,
                reminder: content,
                educational: content,
                news: content,
                premium: content,
                community: content,
            },
            fatigue_sensitivity: pick(0.0, 10.0),
            opt_out_base: pick(0.0, 1.0),
        };
        s.types = TypeTable {
            hot_lead: params.clone(),
            warm_lead: params.clone(),
            cold_lead: params.clone(),
            engaged: params.clone(),
            bot_lover: params.clone(),
            night_owl: params.clone(),
            new_user: params.clone(),
            premium_potential: params,
        };
        let tiny = 1e-9;
        s.behaviour = BehaviourParams {
            fatigue_tau_hours: pick(tiny, 8_760.0),
            hour_floor: pick(0.0, 1.0),
            content_floor: pick(0.0, 1.0),
            group_response_factor: pick(0.0, 1.0),
            group_opt_out_factor: pick(0.0, 1.0),
            opt_out_fatigue_gain: pick(0.0, 10.0),
            opt_out_tolerance: pick(0.0, 1_000.0),
            response_delay_median_minutes: pick(tiny, 2_880.0),
            response_delay_sigma: pick(0.0, 5.0),
            conversion_delay_mean_minutes: pick(tiny, 43_200.0),
            opt_out_delay_max_minutes: pick(tiny, 1_440.0),
        };
        s.groups = GroupParams {
            per_thousand_users: pick(0.0, 100.0),
            members: span(1, 10_000),
            activity_per_day: pick(0.0, 10_000.0),
            posts_per_minute: if high { 1_000 } else { 1 },
            daily_limit: if high { 24 } else { 0 },
            cooldown_hours: pick(0.0, 720.0),
            post_interval_hours: pick(1.0, 720.0),
            member_exposure_limit: if high { 100 } else { 0 },
        };
        s
    }

    /// A scenario at the low or the high edge of every range is accepted (read back from
    /// its TOML) and a small population lives through two simulated days of messages and
    /// activity with a bounded number of events: no range lets a run hang or explode.
    #[test]
    fn every_range_edge_runs_a_tiny_simulation() {
        use crate::behaviour::{BehaviourModel, Exposure, UserMemory};
        use crate::rng::{Purpose, stream};
        for high in [false, true] {
            let edge = at_edge(high);
            let text = toml::to_string(&edge).unwrap();
            let scenario = Scenario::from_toml_str(&text, "edge.toml").unwrap_or_else(|e| panic!("high={high}: {e}"));
            let population = crate::generate(&scenario, 200, 7, 1_700_000_000);
            assert_eq!(population.groups.len(), if high { 20 } else { 0 });
            let model = BehaviourModel::new(&scenario);
            let mut events = 0usize;
            for user in &population.users {
                let mut rng = stream(7, user.id, Purpose::Behaviour);
                let mut memory = UserMemory::default();
                for i in 0..20 {
                    let at = 1_700_000_000 + i * 3_600;
                    let e = Exposure { at, content: ContentKind::Offer, via_group: i % 2 == 0 };
                    let _ = model.react(user, &mut memory, &mut rng, e);
                }
                let mut rng = stream(7, user.id, Purpose::Activity);
                let mut at = 1_700_000_000;
                while let Some(next) = model.next_activity(user, &mut rng, at, 2 * 86_400 - (at - 1_700_000_000)) {
                    assert!(next > at);
                    at = next;
                    events += 1;
                }
            }
            assert!(events <= 200 * 100 * 4, "high={high}: {events} sessions");
        }
    }
}
